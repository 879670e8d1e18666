/* ctl/sdnotify.c: see sdnotify.h. */
#include "ctl/sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int sdnotify_send(const char *msg)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len;
	ssize_t n;
	int fd, ret = 0;

	if (!path || !*path)
		return 0;
	len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sa.sun_path))
		return -EINVAL;
	memcpy(sa.sun_path, path, len);
	/* "@name" is the abstract socket "\0name" */
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	n = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
	if (n < 0)
		ret = -errno;
	close(fd);
	return ret;
}

static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (!s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return !errno && !*end;
}

uint64_t sdnotify_watchdog_ms(const char *usec, const char *pid, pid_t self)
{
	uint64_t us, p;

	if (!parse_u64(usec, &us) || !us)
		return 0;
	/* WATCHDOG_PID, when set, names the one process systemd watches */
	if (pid && (!parse_u64(pid, &p) || p != (uint64_t)self))
		return 0;
	/* at least every millisecond, twice per timeout */
	return us / 2000 ? us / 2000 : 1;
}
