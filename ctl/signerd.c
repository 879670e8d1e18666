/* ctl/signerd.c: see signerd.h. */
#include "ctl/signerd.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/kconfig.h"
#include "core/log.h"
#include "core/timer.h"
#include "signer/keyop.h"
#include "tls/ctx.h"

extern char **environ;

#define SIGNERD_ANSWER_MS 3000
#define SIGNERD_BACKOFF_MIN_MS 100
#define SIGNERD_BACKOFF_MAX_MS 5000
/* An external signer's reconnection: a refused connect is one system
 * call, and the workers' own channels come back within 100 ms
 * (core/signer.c): their keys must not lag seconds behind them. */
#define SIGNERD_RECONNECT_MAX_MS 200
#define SIGNERD_STABLE_MS 10000
/* How often our child is asked whether it still answers (ping_child). */
#define SIGNERD_PING_MS 1000

/* A back-off doubled, up to |max|. */
static uint64_t grow(uint64_t ms, uint64_t max)
{
	return ms * 2 < max ? ms * 2 : max;
}

static struct {
	bool on;
	bool external;
	char dir[PATH_MAX];
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char tmp[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char bin[PATH_MAX];
	pid_t pid;      /* the child, or 0 */
	unsigned threads; /* the child's: one per worker */
	uint64_t hold_ms; /* a freed store's keys stay this long */
	size_t failed;    /* keys the last best-effort load could not load */
	int cfd;        /* control connection: LOADs, UNLOADs; -1 if none */
	uint64_t next_id;
	uint64_t started_ms, restart_ms, backoff_ms;
	uint64_t ping_ms; /* when our child is asked next */
	/* The stores vmgate holds (published, retired or being built): the
	 * keys the signer must keep are theirs. */
	const struct tls_ctx **stores;
	size_t stores_len, stores_cap;
	/* Keys of freed stores, to UNLOAD at due_ms unless a store still
	 * names them; kept while the signer cannot be reached. A signer
	 * that came back gets them again from |path| (NULL: no memory for
	 * it) until then. */
	struct gone_key {
		uint64_t id, due_ms;
		char *path;
	} *gone;
	size_t gone_len, gone_cap;
} sd = { .cfd = -1 };

static int connect_to(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = SIGNERD_ANSWER_MS / 1000 };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int e = -errno;

		close(fd);
		return e;
	}
	return fd;
}

/* Sends |m| (with |kfd| passed along, if not -1) on the control
 * connection and reads its answer. */
static int ask(struct keyop_msg *m, int kfd, uint8_t *out_status)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	uint8_t frame[KEYOP_FRAME_MAX], in[KEYOP_FRAME_MAX];
	struct iovec iov;
	struct msghdr mh = { 0 };
	struct cmsghdr *cm;
	size_t len, got = 0, used;
	ssize_t n;

	m->id = ++sd.next_id;
	if (!keyop_encode(frame, &len, sizeof(frame), m))
		return -ENAMETOOLONG;
	iov.iov_base = frame;
	iov.iov_len = len;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (kfd >= 0) {
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &kfd, sizeof(int));
	}
	do
		n = sendmsg(sd.cfd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)len)
		return n < 0 ? -errno : -EIO;
	for (;;) {
		struct keyop_msg a;

		switch (keyop_decode(&a, &used, in, got)) {
		case KEYOP_OK:
			if (a.type != KEYOP_ANSWER || a.id != sd.next_id)
				return -EPROTO;
			*out_status = a.status;
			return 0;
		case KEYOP_BAD:
			return -EPROTO;
		case KEYOP_NEED_MORE:
			break;
		}
		n = recv(sd.cfd, in + got, sizeof(in) - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? (errno == EAGAIN ? -ETIMEDOUT : -errno)
				     : -ECONNRESET;
		got += (size_t)n;
	}
}

/* One LOAD, with |kfd| passed along, and its answer. */
static int load_one(uint64_t key_id, const char *path, int kfd,
		    uint8_t *out_status)
{
	struct keyop_msg m = {
		.type = KEYOP_LOAD, .key_id = key_id,
		.data = (const uint8_t *)path, .data_len = strlen(path),
	};

	return ask(&m, kfd, out_status);
}

/* The connection is in an unknown state: a fresh one next time. */
static void cfd_close(void)
{
	if (sd.cfd >= 0)
		close(sd.cfd);
	sd.cfd = -1;
}

/* A control connection to our child, which runs and has its keys, after
 * an error closed the last one. (An external signer is reconnected by
 * signerd_tick, which loads the keys again: it may have restarted.) */
static void cfd_ensure(void)
{
	if (sd.cfd < 0 && !sd.external && sd.pid > 0)
		sd.cfd = connect_to(sd.path);
	if (sd.cfd < 0)
		sd.cfd = -1;
}

static int store_add(const struct tls_ctx *tls)
{
	size_t i;

	for (i = 0; i < sd.stores_len; i++)
		if (sd.stores[i] == tls)
			return 0;
	if (sd.stores_len == sd.stores_cap) {
		size_t cap = sd.stores_cap ? 2 * sd.stores_cap : 4;
		const struct tls_ctx **n = realloc(sd.stores,
						   cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		sd.stores = n;
		sd.stores_cap = cap;
	}
	sd.stores[sd.stores_len++] = tls;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The key ids the held stores name, sorted: false if there is no
 * memory for them. */
static bool live_ids(uint64_t **out, size_t *out_len)
{
	size_t i, j, n = 0;

	*out = NULL;
	*out_len = 0;
	for (i = 0; i < sd.stores_len; i++)
		n += tls_ctx_signer_keys(sd.stores[i]);
	if (!n)
		return true;
	*out = malloc(n * sizeof(**out));
	if (!*out)
		return false;
	for (i = 0; i < sd.stores_len; i++)
		for (j = 0; j < tls_ctx_signer_keys(sd.stores[i]); j++) {
			const char *path;

			tls_ctx_signer_key(sd.stores[i], j,
					   &(*out)[(*out_len)++], &path);
		}
	qsort(*out, *out_len, sizeof(**out), cmp_u64);
	return true;
}

/* How many distinct keys the held stores name. */
static size_t held_keys(void)
{
	size_t i, distinct = 0, len;
	uint64_t *ids;

	if (!live_ids(&ids, &len))
		return 0;
	for (i = 0; i < len; i++)
		distinct += !i || ids[i] != ids[i - 1];
	free(ids);
	return distinct;
}

/* The held keys the last best-effort load got into the signer. */
static size_t loaded_keys(void)
{
	size_t held = held_keys();

	return held > sd.failed ? held - sd.failed : 0;
}

/* UNLOADs every gone key that is due and that no held store names. A
 * key the signer does not have (it restarted since) is no error. While
 * there is no connection the keys wait for the next one, and one whose
 * UNLOAD got no answer in time is tried again with the next. */
/* Whether another superseded entry of key |id| is due after |due_ms|. */
static bool gone_later(uint64_t id, uint64_t due_ms)
{
	size_t i;

	for (i = 0; i < sd.gone_len; i++)
		if (sd.gone[i].id == id && sd.gone[i].due_ms > due_ms)
			return true;
	return false;
}

static void flush_gone(void)
{
	size_t i, kept = 0, dropped = 0, live_len, distinct = 0;
	uint64_t now = timer_now_ms(), *live;

	if (!sd.gone_len)
		return;
	/* Without the list, nothing: a key still named must stay. */
	if (!live_ids(&live, &live_len))
		return;
	for (i = 0; i < live_len; i++)
		distinct += !i || live[i] != live[i - 1];
	for (i = 0; i < sd.gone_len; i++) {
		struct gone_key g = sd.gone[i];
		struct keyop_msg m = { .type = KEYOP_UNLOAD, .key_id = g.id };
		uint8_t status = KEYOP_STATUS_FAILED;
		int ret;

		if (g.due_ms > now) {
			sd.gone[kept++] = g;
			continue;
		}
		/* Still named by a store held, or superseded again by a
		 * store freed later, whose handshakes may still sign with it
		 * until that entry is due: not now. */
		if ((live_len && bsearch(&g.id, live, live_len, sizeof(*live),
					 cmp_u64)) ||
		    gone_later(g.id, g.due_ms)) {
			free(g.path);
			continue;
		}
		cfd_ensure();
		if (sd.cfd < 0) {
			sd.gone[kept++] = g;
			continue;
		}
		ret = ask(&m, -1, &status);
		if (ret) {
			log_warn("signer", "cannot drop key_id=%016llx: %s%s",
				 (unsigned long long)g.id, strerror(-ret),
				 ret == -ETIMEDOUT ? " (tried again on the "
				 "next connection)" : "");
			cfd_close();
			/* No answer in time: again on the next connection.
			 * Closed at once: a signer too old to know UNLOAD,
			 * which closes the socket at each; not again. */
			if (ret == -ETIMEDOUT)
				sd.gone[kept++] = g;
			else
				free(g.path);
			continue;
		}
		dropped += status == KEYOP_STATUS_OK;
		free(g.path);
	}
	sd.gone_len = kept;
	free(live);
	if (dropped)
		log_info("signer", "keys_dropped=%zu keys=%zu", dropped,
			 distinct);
}

/* LOADs the key |key_id| from |path|: 0, or an error in |err|, with
 * |*out_broken| set when it was the connection that failed (then closed;
 * nothing more can load). */
static int load_path(uint64_t key_id, const char *path, bool *out_broken,
		     char *err, size_t err_len)
{
	char abs[PATH_MAX];
	uint8_t status = KEYOP_STATUS_FAILED;
	int kfd = -1, ret;

	*out_broken = false;
	/* Our own signer gets the open file: it may run as a user that
	 * cannot open it. An external one (tls.signer) runs as the user the
	 * keys belong to and opens them by path itself, so that vmgate's
	 * user need not be able to read them: with a descriptor from vmgate
	 * it could. Its working directory is not ours: the path goes
	 * absolute. */
	if (sd.external) {
		if (path[0] != '/' && realpath(path, abs))
			path = abs;
	} else {
		kfd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
		if (kfd < 0) {
			ret = -errno;
			snprintf(err, err_len, "%s: cannot open private key: "
				 "%s", path, strerror(errno));
			return ret;
		}
	}
	ret = sd.cfd >= 0 ? load_one(key_id, path, kfd, &status) : -ENOTCONN;
	if (kfd >= 0)
		close(kfd);
	if (ret) {
		snprintf(err, err_len, "%s: signer: %s", path, strerror(-ret));
		cfd_close();
		*out_broken = true;
		return ret;
	}
	if (status == KEYOP_STATUS_MISMATCH) {
		snprintf(err, err_len, "%s: private key does not match the "
			 "certificate", path);
		return -EINVAL;
	}
	if (status != KEYOP_STATUS_OK) {
		snprintf(err, err_len, "%s: the signer cannot load this private "
			 "key (%s; its log says why)", path, sd.external ?
			 "readable by the signer's user, PEM" : "PEM");
		return -EINVAL;
	}
	return 0;
}

/* LOADs |tls|'s keys. Strict (|best_effort| false: startup, a reload),
 * the first key that fails stops it with |err|, so that no store is
 * published without its keys. Best effort (a signer that came back, with
 * every store vmgate holds): a key that fails is an ERROR line naming
 * its file and the others still load, so one bad file takes down its
 * certificate's full handshakes, not every one; only a broken connection
 * stops it. */
static int load_keys(const struct tls_ctx *tls, bool best_effort, char *err,
		     size_t err_len)
{
	size_t i, n = tls_ctx_signer_keys(tls);

	for (i = 0; i < n; i++) {
		uint64_t key_id;
		const char *path;
		bool broken;
		int ret;

		tls_ctx_signer_key(tls, i, &key_id, &path);
		ret = load_path(key_id, path, &broken, err, err_len);
		if (!ret)
			continue;
		if (!best_effort || broken)
			return ret;
		sd.failed++;
		log_error("signer", "key_id=%016llx %s: full handshakes with "
			  "its certificate fail until the file is fixed and "
			  "vmgate reloads", (unsigned long long)key_id, err);
	}
	return 0;
}

/* A signer that came back (restarted, or an external one reconnected)
 * also gets the keys of freed stores that handshakes begun on them may
 * still sign with, until they are due to leave, best effort: a key that
 * fails is a WARN line (those handshakes fail, as they would have), only
 * a broken connection stops it. Keys a held store names are loaded with
 * it. */
static int load_gone(void)
{
	size_t i, j, live_len;
	uint64_t *live;
	char err[512];

	if (!sd.gone_len || !live_ids(&live, &live_len))
		return 0;
	for (i = 0; i < sd.gone_len; i++) {
		const struct gone_key *g = &sd.gone[i];
		bool broken, again = false;
		int ret;

		for (j = 0; j < i; j++)
			again |= sd.gone[j].id == g->id;
		if (again || !g->path || (live_len && bsearch(&g->id, live,
				live_len, sizeof(*live), cmp_u64)))
			continue;
		ret = load_path(g->id, g->path, &broken, err, sizeof(err));
		if (broken) {
			free(live);
			return ret;
		}
		if (ret)
			log_warn("signer", "key_id=%016llx %s: the handshakes "
				 "begun before the reload that superseded it "
				 "fail", (unsigned long long)g->id, err);
	}
	free(live);
	return 0;
}

/* After a (re)start or a reconnection: every store vmgate holds, best
 * effort (see load_keys), then the superseded keys (load_gone). */
static int load_held(char *err, size_t err_len)
{
	size_t i;
	int ret;

	sd.failed = 0;
	for (i = 0; i < sd.stores_len; i++) {
		ret = load_keys(sd.stores[i], true, err, err_len);
		if (ret)
			return ret;
	}
	return load_gone();
}

static void child_kill(void)
{
	if (sd.pid > 0) {
		kill(sd.pid, SIGKILL);
		waitpid(sd.pid, NULL, 0);
	}
	sd.pid = 0;
}

/* Starts a child on signer.sock.new, loads the keys, then publishes the
 * socket under its real name. At startup (|first|, the first store) a
 * key that cannot be loaded stops vmgate; a restart loads every store
 * vmgate holds, best effort (load_keys). */
static int spawn(const struct tls_ctx *first, char *err, size_t err_len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	/* Its lines go to vmgate's stderr: at vmgate's level. */
	char threads[16];
	char *argv[] = { sd.bin, "--listen-fd", "3", "--supervised",
			 "--threads", threads,
			 log_enabled(LOG_INFO) ? NULL : "--quiet", NULL };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, dflt;
	int lfd, ret;

	snprintf(threads, sizeof(threads), "%u", sd.threads);
	strcpy(sa.sun_path, sd.tmp);
	unlink(sd.tmp);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd >= 0 && lfd <= 3) {
		/* dup2 onto itself would keep close-on-exec. */
		int hi = fcntl(lfd, F_DUPFD_CLOEXEC, 10);

		close(lfd);
		lfd = hi;
	}
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(lfd, 1024)) {
		ret = -errno;
		snprintf(err, err_len, "signer socket %s: %s", sd.tmp,
			 strerror(errno));
		goto err_lfd;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, lfd, 3);
	/* vmgate blocks its signals for its signalfd: the child must not
	 * inherit that, nor SIGPIPE ignored. */
	sigemptyset(&none);
	sigemptyset(&dflt);
	sigaddset(&dflt, SIGTERM);
	sigaddset(&dflt, SIGINT);
	sigaddset(&dflt, SIGHUP);
	sigaddset(&dflt, SIGPIPE);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dflt);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
					       POSIX_SPAWN_SETSIGDEF);
	ret = -posix_spawn(&sd.pid, sd.bin, &fa, &attr, argv, environ);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	if (ret) {
		sd.pid = 0;
		snprintf(err, err_len, "cannot start %s: %s", sd.bin,
			 strerror(-ret));
		goto err_lfd;
	}
	sd.started_ms = timer_now_ms();
	close(lfd); /* the child's now */
	lfd = -1;
	if (sd.cfd >= 0)
		close(sd.cfd);
	sd.cfd = connect_to(sd.tmp);
	if (sd.cfd < 0) {
		ret = sd.cfd;
		snprintf(err, err_len, "signer: %s", strerror(-ret));
		goto err_child;
	}
	ret = first ? load_keys(first, false, err, err_len)
		    : load_held(err, err_len);
	if (ret)
		goto err_child;
	if (rename(sd.tmp, sd.path)) {
		ret = -errno;
		snprintf(err, err_len, "signer socket %s: %s", sd.path,
			 strerror(errno));
		goto err_child;
	}
	if (first || !sd.failed)
		log_info("signer", "pid=%d socket=%s keys=%zu", (int)sd.pid,
			 sd.path, held_keys());
	else
		log_warn("signer", "pid=%d socket=%s keys=%zu failed=%zu",
			 (int)sd.pid, sd.path, loaded_keys(),
			 sd.failed);
	return 0;

err_child:
	child_kill();
err_lfd:
	if (lfd >= 0)
		close(lfd);
	unlink(sd.tmp);
	return ret;
}

static int find_bin(char *err, size_t err_len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n < 0) {
		snprintf(err, err_len, "/proc/self/exe: %s", strerror(errno));
		return -errno;
	}
	self[n] = '\0';
	snprintf(sd.bin, sizeof(sd.bin), "%s/vmgate-signer", dirname(self));
	if (access(sd.bin, X_OK)) {
		snprintf(err, err_len, "%s: %s (vmgate-signer is installed "
			 "beside vmgate)", sd.bin, strerror(errno));
		return -errno;
	}
	return 0;
}

int signerd_start(const char *external, const struct tls_ctx *tls,
		  unsigned threads, uint32_t handshake_ms,
		  const char **out_path, char *err, size_t err_len)
{
	const char *base = getenv("RUNTIME_DIRECTORY");
	int ret;

	sd.on = true;
	sd.threads = threads < SIGNER_THREADS_MAX ? threads
						  : SIGNER_THREADS_MAX;
	/* A handshake that began on a store now freed may still sign with
	 * its key (its SSL holds the old context): until it has ended or
	 * timed out, waiting on the signer at most that long. */
	sd.hold_ms = (uint64_t)handshake_ms + CONFIG_KEY_SIGNER_TIMEOUT_MS;
	sd.backoff_ms = SIGNERD_BACKOFF_MIN_MS;
	if (store_add(tls)) {
		snprintf(err, err_len, "out of memory");
		return -ENOMEM;
	}
	if (external) {
		sd.external = true;
		snprintf(sd.path, sizeof(sd.path), "%s", external);
		*out_path = sd.path;
		sd.cfd = connect_to(sd.path);
		if (sd.cfd < 0) {
			snprintf(err, err_len, "tls.signer %s: %s", sd.path,
				 strerror(-sd.cfd));
			return sd.cfd;
		}
		return load_keys(tls, false, err, err_len);
	}
	ret = find_bin(err, err_len);
	if (ret)
		return ret;
	snprintf(sd.dir, sizeof(sd.dir), "%s/vmgate-signer.XXXXXX",
		 base && *base ? base : "/tmp");
	if (!mkdtemp(sd.dir)) {
		snprintf(err, err_len, "%s: %s", sd.dir, strerror(errno));
		sd.dir[0] = '\0';
		return -errno;
	}
	if ((size_t)snprintf(sd.path, sizeof(sd.path), "%s/signer.sock",
			     sd.dir) >= sizeof(sd.path) ||
	    (size_t)snprintf(sd.tmp, sizeof(sd.tmp), "%s/signer.sock.new",
			     sd.dir) >= sizeof(sd.tmp)) {
		snprintf(err, err_len, "%s: path too long for a socket",
			 sd.dir);
		return -ENAMETOOLONG;
	}
	*out_path = sd.path;
	return spawn(tls, err, err_len);
}

/* An external signer, once its control connection is gone: connect
 * again (after the back-off) and load every held store; it may have
 * restarted and lost them. */
static void reconnect(uint64_t now)
{
	char err[512];

	if (now < sd.restart_ms)
		return;
	cfd_close();
	sd.cfd = connect_to(sd.path);
	if (sd.cfd >= 0 && !load_held(err, sizeof(err))) {
		if (sd.failed)
			log_warn("signer", "connected socket=%s keys=%zu "
				 "failed=%zu", sd.path,
				 loaded_keys(), sd.failed);
		else
			log_info("signer", "connected socket=%s keys=%zu",
				 sd.path, held_keys());
		sd.backoff_ms = SIGNERD_BACKOFF_MIN_MS;
		return;
	}
	cfd_close();
	sd.restart_ms = now + sd.backoff_ms;
	sd.backoff_ms = grow(sd.backoff_ms, SIGNERD_RECONNECT_MAX_MS);
}

int signerd_load(const struct tls_ctx *tls, char *err, size_t err_len)
{
	if (!sd.on)
		return 0;
	if (store_add(tls)) {
		snprintf(err, err_len, "out of memory");
		return -ENOMEM;
	}
	/* A signer down now gets the keys when it is back (signerd_tick
	 * loads every held store, this one among them). One back already
	 * (it may have restarted and lost every key) is reconnected now,
	 * back-off or not, and given what signerd_tick would give it:
	 * every held store and the superseded keys; this store's keys are
	 * then checked strictly below. Loading this store's only would
	 * leave the published ones out for good if this reload fails: the
	 * connection is up, and signerd_tick reconnects only one that is
	 * not. */
	if (sd.cfd < 0 && sd.external) {
		sd.restart_ms = 0;
		reconnect(timer_now_ms());
	}
	cfd_ensure();
	if (sd.cfd < 0 && !sd.external && sd.pid > 0) {
		/* Our child runs (so nothing will load them later) but
		 * cannot be reached: the store must not be published. */
		snprintf(err, err_len, "signer: cannot connect to %s",
			 sd.path);
		return -ENOTCONN;
	}
	if (sd.cfd < 0)
		return 0;
	return load_keys(tls, false, err, err_len);
}

void signerd_forget(const struct tls_ctx *tls)
{
	size_t i, n;

	for (i = 0; i < sd.stores_len; i++)
		if (sd.stores[i] == tls)
			break;
	if (!sd.on || i == sd.stores_len)
		return;
	sd.stores[i] = sd.stores[--sd.stores_len];
	n = tls_ctx_signer_keys(tls);
	if (sd.gone_cap - sd.gone_len < n) {
		size_t cap = sd.gone_len + n;
		struct gone_key *g = realloc(sd.gone, cap * sizeof(*g));

		if (!g) {
			log_warn("signer", "out of memory: %zu superseded keys "
				 "stay in the signer", n);
			return;
		}
		sd.gone = g;
		sd.gone_cap = cap;
	}
	for (i = 0; i < n; i++) {
		struct gone_key *g = &sd.gone[sd.gone_len++];
		const char *path;

		tls_ctx_signer_key(tls, i, &g->id, &path);
		g->due_ms = timer_now_ms() + sd.hold_ms;
		g->path = strdup(path);
	}
}

/* An external signer's control connection: closed by the peer? */
static bool cfd_dead(void)
{
	uint8_t b;
	ssize_t n = recv(sd.cfd, &b, 1, MSG_PEEK | MSG_DONTWAIT);

	return n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
}

/* Our child answers, or is killed, and then restarted as one that died:
 * a signer alive but not answering (stopped, deadlocked) would fail
 * every full handshake after its wait for as long as it stayed so. Once
 * a second, an UNLOAD of key id 0, which no key has (the first 8 bytes
 * of a SHA-256): a signer that serves answers NO_KEY at once. */
static void ping_child(uint64_t now)
{
	struct keyop_msg m = { .type = KEYOP_UNLOAD, .key_id = 0 };
	uint8_t status;
	int ret;

	if (now < sd.ping_ms)
		return;
	sd.ping_ms = now + SIGNERD_PING_MS;
	cfd_ensure();
	if (sd.cfd < 0)
		return;
	ret = ask(&m, -1, &status);
	if (!ret)
		return;
	cfd_close();
	if (ret != -ETIMEDOUT)
		return;
	log_error("signer", "pid=%d did not answer in %d ms: killed, to be "
		  "restarted", (int)sd.pid, SIGNERD_ANSWER_MS);
	kill(sd.pid, SIGKILL);
}

void signerd_tick(void)
{
	uint64_t now = timer_now_ms();
	char err[512];
	size_t i;
	int status;

	if (!sd.on)
		return;
	if (sd.external) {
		if (sd.cfd < 0 || cfd_dead())
			reconnect(now);
	} else if (sd.pid > 0) {
		if (waitpid(sd.pid, &status, WNOHANG) == sd.pid) {
			/* Gone: no worker may reach its socket any more,
			 * so new handshakes fail at once instead of
			 * waiting. */
			unlink(sd.path);
			cfd_close();
			sd.pid = 0;
			if (now - sd.started_ms >= SIGNERD_STABLE_MS)
				sd.backoff_ms = SIGNERD_BACKOFF_MIN_MS;
			sd.restart_ms = now + sd.backoff_ms;
			log_warn("signer_exit", "%s=%d restart_in_ms=%llu",
				 WIFSIGNALED(status) ? "signal" : "status",
				 WIFSIGNALED(status) ? WTERMSIG(status)
						     : WEXITSTATUS(status),
				 (unsigned long long)sd.backoff_ms);
			sd.backoff_ms = grow(sd.backoff_ms, SIGNERD_BACKOFF_MAX_MS);
			return;
		}
		ping_child(now);
	} else if (now >= sd.restart_ms) {
		if (spawn(NULL, err, sizeof(err))) {
			log_error("signer", "restart failed: %s", err);
			sd.restart_ms = now + sd.backoff_ms;
			sd.backoff_ms = grow(sd.backoff_ms, SIGNERD_BACKOFF_MAX_MS);
			return;
		}
	}
	for (i = 0; i < sd.gone_len; i++)
		if (sd.gone[i].due_ms <= now) {
			flush_gone();
			break;
		}
}

void signerd_stop(void)
{
	if (!sd.on)
		return;
	if (sd.cfd >= 0)
		close(sd.cfd);
	sd.cfd = -1;
	if (sd.pid > 0) {
		/* Not SIGTERM: a supervised signer ignores it (see
		 * signer/main.c --supervised). */
		kill(sd.pid, SIGUSR1);
		waitpid(sd.pid, NULL, 0);
		sd.pid = 0;
	}
	if (!sd.external && sd.dir[0]) {
		unlink(sd.path);
		unlink(sd.tmp);
		rmdir(sd.dir);
	}
	free(sd.stores);
	for (size_t i = 0; i < sd.gone_len; i++)
		free(sd.gone[i].path);
	free(sd.gone);
	sd.stores = NULL;
	sd.gone = NULL;
	sd.stores_len = sd.stores_cap = sd.gone_len = sd.gone_cap = 0;
	sd.on = false;
}
