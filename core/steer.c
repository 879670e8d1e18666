/* core/steer.c: see steer.h. */
#include "core/steer.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "core/listener.h"
#include "core/log.h"
#include "core/steer-t.h"

/* The compiled program (build/bpf/steer.bpf.o), embedded by the
 * Makefile's STEER_BPF_OBJ so that the binary needs no file beside it. */
__asm__(".section .rodata\n"
	".balign 8\n"
	"steer_bpf_obj:\n"
	".incbin \"" STEER_BPF_OBJ "\"\n"
	"steer_bpf_obj_end:\n"
	".previous\n");
extern const unsigned char steer_bpf_obj[], steer_bpf_obj_end[];

static const char *const steer_maps[] = { "steer_addrs", "steer_ports",
					  "steer_socks", "steer_meta" };

struct steer {
	struct bpf_object *obj;
	struct bpf_link *link;
	int addrs_fd, ports_fd, socks_fd, meta_fd;
	uint64_t bits[STEER_PORT_WORDS]; /* what steer_ports holds */
	bool dirty;            /* steer_apply failed part way */
	char pin[256];         /* the pin directory, or "" */
	struct steer_meta old; /* the owner before us (takeover) */
	/* Taking over: our listeners, fd + 1 by slot (0: none), put over
	 * the old process's only at steer_commit (an empty slot takes ours
	 * at once). Until then the old process's listeners serve, and a new
	 * process that fails first leaves them there. */
	int pending[STEER_SOCKS_MAX];
};

/* libbpf's last warning, for the error that follows it. Startup only,
 * one thread. */
static char steer_libbpf_msg[256];

static int steer_print(enum libbpf_print_level level, const char *fmt,
		       va_list ap)
{
	if (level == LIBBPF_WARN) {
		vsnprintf(steer_libbpf_msg, sizeof(steer_libbpf_msg), fmt, ap);
		steer_libbpf_msg[strcspn(steer_libbpf_msg, "\n")] = '\0';
	}
	return 0;
}

static const char *steer_why(int err)
{
	if (err == -EPERM || err == -EACCES)
		return "no permission: attaching needs CAP_BPF and "
		       "CAP_NET_ADMIN (or CAP_SYS_ADMIN)";
	if (err == -EINVAL || err == -EOPNOTSUPP || err == -ENOTSUP)
		return "this kernel lacks sk_lookup programs or bpf_link on "
		       "a network namespace (Linux 5.9)";
	return strerror(-err);
}

/* Whether |pid| is a running vmgate (not a reused pid). */
static bool steer_pid_alive(uint32_t pid)
{
	char path[64], comm[32] = "";
	FILE *f;

	if (!pid || pid == (uint32_t)getpid())
		return false;
	snprintf(path, sizeof(path), "/proc/%u/comm", pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	if (!fgets(comm, sizeof(comm), f))
		comm[0] = '\0';
	fclose(f);
	return !strncmp(comm, "vmgate", 6);
}

static int steer_pin_setup(struct steer *s, const char *pin_dir, char *err,
			   size_t err_len)
{
	char path[320];
	struct statfs fs;
	size_t i;

	if (strlen(pin_dir) >= sizeof(s->pin)) {
		snprintf(err, err_len, "pin directory name too long");
		return -ENAMETOOLONG;
	}
	if (mkdir(pin_dir, 0700) && errno != EEXIST) {
		snprintf(err, err_len, "cannot make %s: %s", pin_dir,
			 strerror(errno));
		return -errno;
	}
	if (statfs(pin_dir, &fs) || fs.f_type != BPF_FS_MAGIC) {
		snprintf(err, err_len, "%s is not on a bpf filesystem (mount "
			 "-t bpf bpf /sys/fs/bpf)", pin_dir);
		return -ENOTSUP;
	}
	snprintf(s->pin, sizeof(s->pin), "%s", pin_dir);
	for (i = 0; i < sizeof(steer_maps) / sizeof(steer_maps[0]); i++) {
		struct bpf_map *m = bpf_object__find_map_by_name(s->obj,
								 steer_maps[i]);

		snprintf(path, sizeof(path), "%s/%s", pin_dir, steer_maps[i]);
		if (!m || bpf_map__set_pin_path(m, path)) {
			snprintf(err, err_len, "cannot pin %s", path);
			return -EINVAL;
		}
	}
	return 0;
}

/* Reads the owner of pinned maps and what the port map holds. */
static int steer_adopt(struct steer *s, bool takeover, char *err,
		       size_t err_len)
{
	uint32_t k = 0, w;

	if (bpf_map_lookup_elem(s->meta_fd, &k, &s->old))
		return -errno;
	for (w = 0; w < STEER_PORT_WORDS; w++)
		if (bpf_map_lookup_elem(s->ports_fd, &w, &s->bits[w]))
			return -errno;
	if (!steer_pid_alive(s->old.pid)) {
		/* Gone (killed, or stopped while taken over): start anew,
		 * its closed listeners have left the map. */
		memset(&s->old, 0, sizeof(s->old));
		return 0;
	}
	if (!takeover) {
		snprintf(err, err_len, "vmgate pid %u already steers with "
			 "these maps (%s): stop it, or start this one with "
			 "--takeover", s->old.pid, s->pin);
		return -EBUSY;
	}
	return 0;
}

int steer_open(struct steer **out, const char *pin_dir, bool takeover,
	       char *err, size_t err_len)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = "vmgate_steer");
	struct bpf_program *prog;
	struct steer *s;
	int ret, ns;

	*out = NULL;
	steer_libbpf_msg[0] = '\0';
	libbpf_set_print(steer_print);
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, err_len, "out of memory");
		return -ENOMEM;
	}
	s->obj = bpf_object__open_mem(steer_bpf_obj,
				      (size_t)(steer_bpf_obj_end - steer_bpf_obj),
				      &opts);
	ret = libbpf_get_error(s->obj);
	if (ret) {
		s->obj = NULL;
		snprintf(err, err_len, "cannot open the BPF object: %s",
			 strerror(-ret));
		goto err;
	}
	if (pin_dir) {
		ret = steer_pin_setup(s, pin_dir, err, err_len);
		if (ret)
			goto err;
	}
	ret = bpf_object__load(s->obj);
	if (ret) {
		snprintf(err, err_len, "cannot load the sk_lookup program: "
			 "%s%s%s", steer_why(ret),
			 steer_libbpf_msg[0] ? "; libbpf: " : "",
			 steer_libbpf_msg);
		goto err;
	}
	prog = bpf_object__find_program_by_name(s->obj, "steer");
	s->addrs_fd = bpf_object__find_map_fd_by_name(s->obj, "steer_addrs");
	s->ports_fd = bpf_object__find_map_fd_by_name(s->obj, "steer_ports");
	s->socks_fd = bpf_object__find_map_fd_by_name(s->obj, "steer_socks");
	s->meta_fd = bpf_object__find_map_fd_by_name(s->obj, "steer_meta");
	if (!prog || s->addrs_fd < 0 || s->ports_fd < 0 || s->socks_fd < 0 ||
	    s->meta_fd < 0) {
		ret = -ENOENT;
		snprintf(err, err_len, "the BPF object lacks its program or "
			 "maps");
		goto err;
	}
	if (s->pin[0]) {
		ret = steer_adopt(s, takeover, err, err_len);
		if (ret) {
			/* Not ours: leave the pins to their owner. */
			s->pin[0] = '\0';
			if (ret != -EBUSY)
				snprintf(err, err_len, "cannot read the pinned "
					 "maps: %s", strerror(-ret));
			goto err;
		}
	}
	ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (ns < 0) {
		ret = -errno;
		snprintf(err, err_len, "cannot open /proc/self/ns/net: %s",
			 strerror(errno));
		goto err;
	}
	s->link = bpf_program__attach_netns(prog, ns);
	ret = libbpf_get_error(s->link);
	close(ns);
	if (ret) {
		s->link = NULL;
		snprintf(err, err_len, "cannot attach the sk_lookup program "
			 "to the network namespace: %s", steer_why(ret));
		goto err;
	}
	*out = s;
	return 0;

err:
	steer_free(s);
	return ret;
}

static int steer_put_listener(struct steer *s, unsigned i, int fd,
			      uint64_t flags)
{
	uint32_t key = i;
	uint64_t val = (uint64_t)fd;

	if (bpf_map_update_elem(s->socks_fd, &key, &val, flags))
		return -errno;
	return 0;
}

int steer_add_listener(struct steer *s, unsigned i, int fd)
{
	int ret;

	if (i >= STEER_SOCKS_MAX)
		return -ENOSPC;
	if (!s->old.pid)
		return steer_put_listener(s, i, fd, BPF_ANY);
	ret = steer_put_listener(s, i, fd, BPF_NOEXIST);
	if (ret == -EEXIST) {
		s->pending[i] = fd + 1;
		ret = 0;
	}
	return ret;
}

static void steer_key(struct steer_addr *k, const struct in6_addr *a)
{
	memcpy(k->w, a->s6_addr, sizeof(k->w));
}

static bool steer_wanted(const struct config *cfg, const struct steer_addr *k)
{
	struct steer_addr w;
	size_t i;

	for (i = 0; i < cfg->addrs_len; i++) {
		steer_key(&w, &cfg->addrs[i]);
		if (!memcmp(&w, k, sizeof(w)))
			return true;
	}
	return false;
}

bool steer_dirty(const struct steer *s)
{
	return s->dirty;
}

/* Removes from the address map what |cfg| does not list. */
static void steer_prune(struct steer *s, const struct config *cfg)
{
	struct steer_addr k, next, gone[STEER_ADDRS_MAX];
	size_t i, ngone = 0;
	void *prev = NULL;

	while (ngone < STEER_ADDRS_MAX &&
	       !bpf_map_get_next_key(s->addrs_fd, prev, &next)) {
		if (!steer_wanted(cfg, &next))
			gone[ngone++] = next;
		k = next;
		prev = &k;
	}
	for (i = 0; i < ngone; i++)
		bpf_map_delete_elem(s->addrs_fd, &gone[i]);
}

/* Adds |cfg|'s addresses to the map; 0 or -errno. */
static int steer_add_addrs(struct steer *s, const struct config *cfg)
{
	struct steer_addr k;
	uint8_t one = 1;

	for (size_t i = 0; i < cfg->addrs_len; i++) {
		steer_key(&k, &cfg->addrs[i]);
		if (bpf_map_update_elem(s->addrs_fd, &k, &one, BPF_ANY))
			return -errno;
	}
	return 0;
}

static int steer_apply_maps(struct steer *s, const struct config *cfg);

int steer_apply(struct steer *s, const struct config *cfg)
{
	int ret = steer_apply_maps(s, cfg);

	s->dirty = ret != 0;
	return ret;
}

static int steer_apply_maps(struct steer *s, const struct config *cfg)
{
	uint64_t bits[STEER_PORT_WORDS] = { 0 };
	uint32_t w;
	int ret;

	if (cfg->addrs_len > STEER_ADDRS_MAX)
		return -E2BIG;
	/* Added first, then removed: an address in both sets is steered
	 * throughout. A map too full for that (old and new together past
	 * STEER_ADDRS_MAX) takes the removals first. */
	ret = steer_add_addrs(s, cfg);
	if (ret == -E2BIG || ret == -ENOSPC) {
		steer_prune(s, cfg);
		ret = steer_add_addrs(s, cfg);
	}
	if (ret)
		return ret;
	steer_prune(s, cfg);

	for (size_t i = 0; i < cfg->ports_len; i++)
		bits[cfg->ports[i] / 64] |= 1ULL << (cfg->ports[i] % 64);
	/* Never the admin API's own port on a steered address: it would
	 * be shadowed by the data plane. An admin API on "::" or
	 * "0.0.0.0" listens on every address, steered ones too. (One port
	 * map serves every address: the port is then left on all of
	 * them.) */
	for (size_t i = 0; i < cfg->addrs_len; i++)
		if (listener_admin_covers(cfg, &cfg->addrs[i])) {
			uint16_t p = ntohs(cfg->admin.listen.sin6_port);

			bits[p / 64] &= ~(1ULL << (p % 64));
			break;
		}
	for (w = 0; w < STEER_PORT_WORDS; w++) {
		if (bits[w] == s->bits[w])
			continue;
		if (bpf_map_update_elem(s->ports_fd, &w, &bits[w], BPF_ANY))
			return -errno;
		s->bits[w] = bits[w];
	}
	return 0;
}

int steer_check_writable(struct steer *s)
{
	uint32_t w = 0;

	if (bpf_map_update_elem(s->ports_fd, &w, &s->bits[0], BPF_ANY))
		return -errno;
	return 0;
}

uint16_t steer_old_port(const struct steer *s)
{
	return s->old.pid ? s->old.listen_port : 0;
}

int steer_old_pid(const struct steer *s)
{
	return (int)s->old.pid;
}

/* A process taken over that stopped before steer_commit named this one
 * the owner still owned the pins, and took them (and their directory)
 * with it: pinned again, so the next --takeover finds the maps. */
static void steer_repin(struct steer *s)
{
	char path[320];
	size_t i;

	if (!s->pin[0] || (mkdir(s->pin, 0700) && errno != EEXIST))
		return;
	for (i = 0; i < sizeof(steer_maps) / sizeof(steer_maps[0]); i++) {
		struct bpf_map *m = bpf_object__find_map_by_name(s->obj,
								 steer_maps[i]);

		snprintf(path, sizeof(path), "%s/%s", s->pin, steer_maps[i]);
		if (m && access(path, F_OK) && errno == ENOENT &&
		    bpf_obj_pin(bpf_map__fd(m), path))
			log_warn("steer", "cannot pin %s again: %s", path,
				 strerror(errno));
	}
}

int steer_commit(struct steer *s, unsigned n, uint16_t port)
{
	struct steer_meta m = { .pid = (uint32_t)getpid(),
				.listen_port = port,
				.listeners = (uint16_t)n };
	uint32_t k;
	int ret;

	/* Ours in, slot by slot over the old process's: each slot serves
	 * throughout. */
	for (k = 0; k < STEER_SOCKS_MAX; k++)
		if (s->pending[k]) {
			ret = steer_put_listener(s, k, s->pending[k] - 1,
						 BPF_ANY);
			if (ret)
				return ret;
			s->pending[k] = 0;
		}
	/* The old process's listeners past ours would still be picked
	 * first by no one, but would keep it busy: out. */
	for (k = n; k < s->old.listeners && k < STEER_SOCKS_MAX; k++)
		bpf_map_delete_elem(s->socks_fd, &k);
	k = 0;
	if (bpf_map_update_elem(s->meta_fd, &k, &m, BPF_ANY))
		return -errno;
	/* Gone since steer_adopt saw it (it was draining already, or
	 * crashed): what it was told is done. */
	if (s->old.pid && kill((pid_t)s->old.pid, SIGTERM) && errno != ESRCH)
		return -errno;
	steer_repin(s);
	return 0;
}

/* The pins go with their last owner, unless a newer one took over. */
static void steer_unpin(struct steer *s)
{
	struct steer_meta m;
	uint32_t k = 0;
	char path[320];
	size_t i;

	if (!s->pin[0] || bpf_map_lookup_elem(s->meta_fd, &k, &m) ||
	    m.pid != (uint32_t)getpid())
		return;
	for (i = 0; i < sizeof(steer_maps) / sizeof(steer_maps[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", s->pin, steer_maps[i]);
		unlink(path);
	}
	rmdir(s->pin);
}

uint32_t steer_link_id(const struct steer *s)
{
	struct bpf_link_info info;
	uint32_t len = sizeof(info);

	memset(&info, 0, sizeof(info));
	if (!s || !s->link ||
	    bpf_obj_get_info_by_fd(bpf_link__fd(s->link), &info, &len))
		return 0;
	return info.id;
}

void steer_free(struct steer *s)
{
	if (!s)
		return;
	if (s->obj && s->meta_fd > 0)
		steer_unpin(s);
	bpf_link__destroy(s->link);
	bpf_object__close(s->obj);
	free(s);
}

/* ::ffff:127.0.0.1: loopback, so that nothing reaches it unsteered but
 * a local client, and v4-mapped, because a socket bound to any other
 * specific IPv6 address is IPv6-only and the kernel refuses to assign
 * one to IPv4 connections. The program hands it IPv6 connections all the
 * same: an assignment checks the family, not the address. */
const struct in6_addr steer_listener_ip = { .s6_addr = {
	[10] = 0xff, [11] = 0xff, [12] = 127, [15] = 1 } };

int steer_listener_open(uint16_t *port)
{
	struct sockaddr_in6 sa;
	socklen_t len = sizeof(sa);
	int fd, one = 1, zero = 0, err;

	fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	memset(&sa, 0, sizeof(sa));
	sa.sin6_family = AF_INET6;
	sa.sin6_addr = steer_listener_ip;
	sa.sin6_port = htons(*port);
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) ||
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero))) {
		err = -errno;
		goto err;
	}
	err = listener_listen(fd, &sa, 4096, "listener=steer");
	if (err)
		goto err;
	if (!*port) {
		if (getsockname(fd, (struct sockaddr *)&sa, &len)) {
			err = -errno;
			goto err;
		}
		*port = ntohs(sa.sin6_port);
	}
	return fd;

err:
	close(fd);
	return err;
}
