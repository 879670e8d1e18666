/* ctl/main.c: command line, configuration, workers, signals.
 *
 *   vmgate -c FILE            run in the foreground
 *   vmgate --check -c FILE    validate FILE (and its certificates), exit
 *   vmgate --version
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <time.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <limits.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ctl/admin.h"
#include "ctl/control.h"
#include "core/kconfig.h"
#include "core/listener.h"
#include "core/log.h"
#include "core/peers.h"
#include "core/ring.h"
#include "core/sockmode.h"
#include "core/steer.h"
#include "core/timer.h"
#include "core/worker.h"
#include "ctl/config.h"
#include "ctl/etcd.h"
#include "ctl/sdnotify.h"
#include "ctl/signerd.h"
#include "route/route.h"
#include "tls/ctx.h"
#include "tls/x25519.h"


static void usage(FILE *f)
{
	fprintf(f,
		"usage: vmgate -c FILE [-v] [--takeover]\n"
		"                               run the appliance in the foreground\n"
		"       vmgate --check -c FILE  validate FILE and its certificates\n"
		"       vmgate --version\n"
		"  -c, --config FILE  appliance.yaml to use\n"
		"  -v, --verbose      log at debug level (overrides log_level)\n"
		"      --takeover     upgrade: take sk_lookup steering over from\n"
		"                     the vmgate running on FILE, which drains\n");
}

static bool load(struct config *cfg, struct tls_ctx **tls, const char *path)
{
	struct config_errors errs = {0};
	char err[512];

	if (!config_load(cfg, &errs, path)) {
		config_errors_print(stderr, &errs);
		fprintf(stderr, "%s: %zu error%s, not started\n", path,
			errs.len, errs.len == 1 ? "" : "s");
		config_errors_free(&errs);
		return false;
	}
	config_errors_free(&errs);
	*tls = tls_ctx_new(cfg, err, sizeof(err));
	if (!*tls) {
		fprintf(stderr, "%s\n", err);
		return false;
	}
	return true;
}

/* --check matches each key with its certificate by reading it. A key an
 * external signer (tls.signer) holds may be unreadable by vmgate's user,
 * as it should be: that signer opens it by path and checks it when vmgate
 * starts (a mismatch fails the start), so --check leaves it out and says
 * so instead of failing. Every other key is checked as before. */
static bool check_keys(struct config *cfg, char *err, size_t err_len)
{
	struct config_cert *all = cfg->certs, *readable;
	size_t n = cfg->certs_len, i, kept = 0;
	bool ok;

	if (!cfg->signer_path)
		return tls_ctx_check_keys(cfg, err, err_len);
	readable = calloc(n ? n : 1, sizeof(*readable));
	if (!readable) {
		snprintf(err, err_len, "out of memory");
		return false;
	}
	for (i = 0; i < n; i++) {
		if (access(all[i].key_path, R_OK) && errno == EACCES) {
			printf("%s: not readable by this user: the signer "
			       "(tls.signer %s) checks it against its "
			       "certificate when vmgate starts\n",
			       all[i].key_path, cfg->signer_path);
			continue;
		}
		readable[kept++] = all[i];
	}
	cfg->certs = readable;
	cfg->certs_len = kept;
	ok = tls_ctx_check_keys(cfg, err, err_len);
	cfg->certs = all;
	cfg->certs_len = n;
	free(readable);
	return ok;
}

/* workers (0: one per CPU), at most Kconfig MAX_WORKERS, and at most
 * limits.max_connections: each worker holds at least one connection, so
 * more workers would hold more than that limit says. Logged when it is
 * not what was asked. */
static unsigned worker_count(const struct config *cfg)
{
	long asked = cfg->workers, n;
	const char *why = NULL;

	if (!asked)
		asked = sysconf(_SC_NPROCESSORS_ONLN);
	if (asked < 1)
		asked = 1;
	n = asked;
	if (n > CONFIG_MAX_WORKERS) {
		n = CONFIG_MAX_WORKERS;
		why = "Kconfig MAX_WORKERS";
	}
	if (n > (long)cfg->limits.max_connections) {
		n = (long)cfg->limits.max_connections;
		why = "limits.max_connections: a worker holds at least one";
	}
	if (why)
		log_info("startup", "workers=%ld asked=%ld reason=\"at most "
			 "%ld: %s\"", n, asked, n, why);
	return (unsigned)n;
}

/* Connections hold file descriptors: take every one we are allowed. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Relaying connections allocate and free buffers of up to ~130 KiB with
 * every burst (TLS output, BoringSSL's record buffers). glibc's defaults
 * hand a freed top of heap back to the kernel once it passes ~2x the
 * largest block seen (and map blocks over 128 KiB on their own), so the
 * next burst faults the same pages in again. Measured on a fresh process
 * relaying 16 MiB downloads (4 at a time): ~110,000 page faults per GB
 * and 175-180 CPU ticks per GB; with up to 1 MiB of free heap kept per
 * thread (and blocks up to 1 MiB served from the heap): ~1,000 faults
 * and 115-135 ticks. A heap already grown by many connections faults
 * little either way (the bench's W3 runs after W1 and W2: no change). */
static void tune_malloc(void)
{
	mallopt(M_MMAP_THRESHOLD, 1 << 20);
	mallopt(M_TRIM_THRESHOLD, 1 << 20);
}

/* How this kernel lets connection sockets be held (core/sockmode.h).
 * VMGATE_PROBE_KERNEL=MAJOR.MINOR, for tests only, makes the probe report
 * no more than that Linux release has: `make e2e-oldkernel` runs the
 * default build as on Debian 12's 6.1. Returns false if vmgate cannot
 * run here (|out|->why says why); |out_forced| is the variable or NULL. */
static bool sockets_choose(struct sockmode_choice *out,
			   const char **out_forced)
{
	const struct sockmode_want want = {
		.direct = IS_ENABLED(CONFIG_DIRECT_DESCRIPTORS),
		.defer_taskrun = IS_ENABLED(CONFIG_RING_DEFER_TASKRUN),
	};
	const char *forced = getenv("VMGATE_PROBE_KERNEL");
	struct sockmode_kernel k;
	unsigned major, minor;

	*out_forced = forced;
	ring_probe(&k);
	if (forced) {
		if (!sockmode_parse_version(&major, &minor, forced)) {
			out->mode = SOCKMODE_FDS;
			out->fd_install = false;
			out->why = "VMGATE_PROBE_KERNEL is not a kernel "
				   "release like 6.1";
			return false;
		}
		sockmode_kernel_cap(&k, major, minor);
	}
	return sockmode_choose(out, &k, &want);
}

/* How connections reach the workers (listen.steering): sk_lookup when
 * asked or, for auto, when the program attaches; per-port listeners
 * otherwise, which cannot serve `ports: all` or more than
 * LISTENERS_PORTS_MAX ports. |why| (|why_len|) says what decided. Returns false
 * when neither can serve (|why| says so). */
/* Where the steering maps of this configuration in this network
 * namespace are pinned: $VMGATE_BPF_DIR (default /sys/fs/bpf/vmgate),
 * then "<netns inode>-<hash of the config's real path>", so that an
 * upgrade on the same file finds them and other vmgates do not. NULL
 * (no pinning, no upgrades) when that directory's filesystem is not a
 * bpffs and |takeover| was not asked for (it then fails, saying why). */
static const char *pin_dir(char *out, size_t cap, const char *cfg_path,
			   bool takeover)
{
	const char *base = getenv("VMGATE_BPF_DIR");
	char real[PATH_MAX];
	uint64_t h = 0xcbf29ce484222325ULL;
	struct statfs fs;
	struct stat ns;
	const char *p;

	if (!base)
		base = "/sys/fs/bpf/vmgate";
	if (!realpath(cfg_path, real) || stat("/proc/self/ns/net", &ns))
		return NULL;
	for (p = real; *p; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ULL;
	if (!takeover) {
		/* The base itself, or the bpffs it would be made on. */
		char parent[PATH_MAX];

		snprintf(parent, sizeof(parent), "%s", base);
		if (statfs(parent, &fs) && strrchr(parent, '/'))
			*strrchr(parent, '/') = '\0';
		if (statfs(parent[0] ? parent : "/", &fs) ||
		    fs.f_type != BPF_FS_MAGIC)
			return NULL;
	}
	if (mkdir(base, 0700) && errno != EEXIST)
		return NULL;
	snprintf(out, cap, "%s/%llu-%016llx", base,
		 (unsigned long long)ns.st_ino, (unsigned long long)h);
	return out;
}

static bool steering_choose(struct shared *shared, const struct config *cfg,
			    const char *cfg_path, bool takeover, char *why,
			    size_t why_len)
{
	char err[512], pin[PATH_MAX];
	const char *dir;
	int ret;

	if (cfg->steering == CFG_STEER_LISTENERS) {
		snprintf(why, why_len, "listen.steering: listeners");
		return true;
	}
	if (cfg->steering == CFG_STEER_AUTO && !cfg->ports_wide &&
	    ring_direct && !ring_fd_install) {
		/* sk_lookup would cost direct descriptors here (see main):
		 * listeners serve a short list with them. */
		snprintf(why, why_len, "auto: with direct descriptors the "
			 "dialled port needs IORING_OP_FIXED_FD_INSTALL (Linux "
			 "6.8), which this kernel lacks; per-port listeners "
			 "keep direct descriptors");
		return true;
	}
	dir = pin_dir(pin, sizeof(pin), cfg_path, takeover);
	if (takeover && !dir) {
		snprintf(why, why_len, "--takeover needs the steering maps "
			 "pinned: cannot make a pin directory under %s",
			 getenv("VMGATE_BPF_DIR") ? getenv("VMGATE_BPF_DIR")
						  : "/sys/fs/bpf/vmgate");
		return false;
	}
	ret = steer_open(&shared->steer, dir, takeover, err, sizeof(err));
	if (ret == -EBUSY) {
		snprintf(why, why_len, "%s", err);
		return false;
	}
	if (!ret) {
		snprintf(why, why_len, "%s",
			 cfg->steering == CFG_STEER_SK_LOOKUP
				 ? "listen.steering: sk_lookup"
				 : "auto: the sk_lookup program attached");
		return true;
	}
	if (cfg->steering == CFG_STEER_SK_LOOKUP || takeover) {
		snprintf(why, why_len, "%s and %s", takeover ? "--takeover"
			 : "listen.steering is sk_lookup", err);
		return false;
	}
	if (cfg->ports_wide) {
		snprintf(why, why_len, "listen.ports %s needs sk_lookup "
			 "steering (per-port listeners take at most %d ports) "
			 "and %s", cfg->ports_all ? "all" : "with that many "
			 "ports", LISTENERS_PORTS_MAX, err);
		return false;
	}
	snprintf(why, why_len, "auto: %s", err);
	return true;
}

/* The listening sockets of one worker into |fds| (|*out_len| of them,
 * |ports| beside): with sk_lookup one, in the steering map's slot |id|
 * and the group of |*steer_port| (0 for the first worker, which picks
 * it); else one per address and port. Returns 0 or -errno, having
 * logged. */
static int listeners_open(struct shared *shared, const struct config *cfg,
			  unsigned id, uint16_t *steer_port, int *fds,
			  uint16_t *ports, size_t *out_len)
{
	char addr[INET6_ADDRSTRLEN];
	size_t a, p, n = 0;
	int fd, ret;

	*out_len = 0;
	if (shared->steer) {
		fd = steer_listener_open(steer_port);
		if (fd < 0) {
			log_error("startup", "cannot open the steering "
				  "listener: %s", strerror(-fd));
			return fd;
		}
		ret = steer_add_listener(shared->steer, id, fd);
		if (ret) {
			log_error("startup", "cannot put listener %u in the "
				  "steering map: %s", id, strerror(-ret));
			close(fd);
			return ret;
		}
		fds[0] = fd;
		ports[0] = 0; /* every port: conn.c reads the dialled one */
		*out_len = 1;
		return 0;
	}
	for (a = 0; a < cfg->addrs_len; a++)
		for (p = 0; p < cfg->ports_len; p++) {
			/* The admin API's (a data listener there first
			 * would leave its bind EADDRINUSE). */
			if (ntohs(cfg->admin.listen.sin6_port) ==
				    cfg->ports[p] &&
			    listener_admin_covers(cfg, &cfg->addrs[a]))
				continue;
			fd = listener_open(&cfg->addrs[a], cfg->ports[p]);
			if (fd < 0) {
				inet_ntop(AF_INET6, &cfg->addrs[a], addr,
					  sizeof(addr));
				log_error("startup", "cannot listen on [%s]:%u: "
					  "%s", addr, cfg->ports[p],
					  strerror(-fd));
				while (n--)
					close(fds[n]);
				return fd;
			}
			fds[n] = fd;
			ports[n++] = cfg->ports[p];
		}
	*out_len = n;
	return 0;
}

/* Once sk_lookup is attached and every listener is open, the process
 * needs neither CAP_BPF nor CAP_NET_ADMIN (nor CAP_SYS_ADMIN, which
 * covers both, nor CAP_PERFMON): they leave the effective, permitted and
 * bounding sets, before any thread starts so that every thread is
 * without them. Reloads update the maps through the descriptors held,
 * which Linux 6.5 and later allow without a capability; where the kernel
 * still asks for one (a test update fails), they are kept and the log
 * says so. */
static void drop_bpf_caps(struct steer *steer)
{
	static const int caps[] = { CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN,
				    CAP_PERFMON };
	struct __user_cap_header_struct h = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct d[2], was[2];
	size_t i;
	int ret;

	if (syscall(SYS_capget, &h, d))
		return;
	memcpy(was, d, sizeof(d));
	for (i = 0; i < sizeof(caps) / sizeof(caps[0]); i++)
		d[caps[i] / 32].effective &= ~(1u << (caps[i] % 32));
	if (syscall(SYS_capset, &h, d))
		return;
	ret = steer_check_writable(steer);
	if (ret) {
		syscall(SYS_capset, &h, was);
		log_warn("capabilities", "kept=CAP_BPF,CAP_NET_ADMIN,"
			 "CAP_SYS_ADMIN reason=\"this kernel needs them to "
			 "update the steering maps on reload (%s)\"",
			 strerror(-ret));
		return;
	}
	for (i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		d[caps[i] / 32].permitted &= ~(1u << (caps[i] % 32));
		d[caps[i] / 32].inheritable &= ~(1u << (caps[i] % 32));
		prctl(PR_CAPBSET_DROP, caps[i], 0, 0, 0);
	}
	syscall(SYS_capset, &h, d);
	log_info("capabilities", "dropped=CAP_BPF,CAP_NET_ADMIN,CAP_SYS_ADMIN,"
		 "CAP_PERFMON reason=\"sk_lookup attached and listening\"");
}

/* Tests only (VMGATE_TEST_TAKEOVER_GATE=FIFO): a takeover waits here,
 * between reading the old process's maps and telling it to stop, until
 * the FIFO is opened for writing; the test makes the old process exit
 * meanwhile. */
static void test_takeover_gate(void)
{
	const char *path = getenv("VMGATE_TEST_TAKEOVER_GATE");
	int fd;

	if (!path)
		return;
	log_info("takeover", "test_gate=%s waiting", path);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0)
		close(fd);
}

/* On takeover: the old process gets SIGTERM once the new listeners are
 * in the map; what its listeners still queue moves to ours only with
 * net.ipv4.tcp_migrate_req (else those connections are reset). */
static void takeover_note(int old)
{
	char v[8] = "";
	FILE *f = fopen("/proc/sys/net/ipv4/tcp_migrate_req", "re");

	if (f) {
		if (!fgets(v, sizeof(v), f))
			v[0] = '\0';
		fclose(f);
	}
	if (v[0] != '1')
		log_warn("takeover", "old_pid=%d tcp_migrate_req=%c: "
			 "connections queued on the old listeners when they "
			 "close are reset; set net.ipv4.tcp_migrate_req=1", old,
			 v[0] ? v[0] : '?');
	else
		log_info("takeover", "old_pid=%d tcp_migrate_req=1", old);
}

/* The admin TCP port is never shared (see listener_listen): on takeover
 * it is the old process's until that one has drained and gone. The new
 * one serves connections meanwhile; its API waits. */
static void takeover_wait_admin(int old, uint32_t drain_ms)
{
	uint64_t end = timer_now_ms() + drain_ms + 1000;
	struct timespec ts = { 0, 20 * 1000000L };

	log_info("takeover", "old_pid=%d admin=waiting: the admin port is "
		 "the old process's until it has drained", old);
	while ((kill(old, 0) == 0 || errno != ESRCH) && timer_now_ms() < end)
		nanosleep(&ts, NULL);
}

static const char *ports_str(const struct config *cfg, char *out, size_t cap)
{
	size_t i, j, o = 0;
	int n;

	out[0] = '\0';
	if (cfg->ports_all) {
		snprintf(out, cap, "all");
		return out;
	}
	/* Runs as ranges: "1-2221,2223-65535". */
	for (i = 0; i < cfg->ports_len && o + 16 < cap; i = j) {
		for (j = i + 1; j < cfg->ports_len &&
				cfg->ports[j] == cfg->ports[j - 1] + 1;
		     j++)
			;
		if (j - i > 2)
			n = snprintf(out + o, cap - o, "%s%u-%u", i ? "," : "",
				     cfg->ports[i], cfg->ports[j - 1]);
		else
			n = snprintf(out + o, cap - o, "%s%u", i ? "," : "",
				     cfg->ports[i]), j = i + 1;
		o += (size_t)n;
	}
	return out;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 'k' },
		{ "takeover", no_argument, NULL, 'T' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct shared shared = {
		.test_vm_setup_fails = getenv("VMGATE_TEST_VM_SETUP_FAILS"),
	};
	struct config cfg = {0};
	struct tls_ctx *tls = NULL;
	struct sockmode_choice sockets;
	const char *forced = NULL, *x25519_why;
	enum tls_x25519_impl x25519;
	struct control *ctl = NULL;
	struct admin *admin = NULL;
	struct worker *workers = NULL;
	const char *path = NULL;
	bool check = false, verbose = false, takeover = false;
	unsigned nworkers = 0, started = 0, i;
	int opt, sig, status = 1, ret;
	char ports[256], err[1024], steer_why[768];
	uint16_t steer_port = 0, *lports = NULL;
	size_t lfds_cap;
	int *lfds = NULL;
	sigset_t sigs;

	while ((opt = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'k':
			check = true;
			break;
		case 'T':
			takeover = true;
			break;
		case 'v':
			verbose = true;
			break;
		case 'V':
			printf("vmgate %s (BoringSSL API %d; keys=%s; "
			       "sockets: %s; max ClientHello %d bytes)\n",
			       VMGATE_VERSION, BORINGSSL_API_VERSION,
			       IS_ENABLED(CONFIG_KEY_SIGNER) ? "signer"
							     : "in-process",
			       IS_ENABLED(CONFIG_DIRECT_DESCRIPTORS)
				       ? "direct descriptors where the kernel "
					 "has them (Linux 6.7), else fds"
				       : "fds",
			       CONFIG_MAX_CLIENTHELLO_BYTES);
			/* And what this kernel gives, as the startup line. */
			if (sockets_choose(&sockets, &forced))
				printf("this kernel: sockets mode=%s "
				       "reason=\"%s\"\n",
				       sockmode_name(sockets.mode),
				       sockets.why);
			else
				printf("this kernel: cannot run: %s\n",
				       sockets.why);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!path || optind != argc) {
		usage(stderr);
		return 2;
	}
	/* The clock file times are kept in (control_loaded_at). */
	{
		struct timespec now;

		clock_gettime(CLOCK_REALTIME_COARSE, &now);
		control_loaded_at(&now);
	}
	if (!load(&cfg, &tls, path))
		goto out;
	/* The signer checks each key against its certificate as it loads
	 * it; --check starts no signer, so it looks itself. */
	if (check && IS_ENABLED(CONFIG_KEY_SIGNER) &&
	    !check_keys(&cfg, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		tls_ctx_free(tls);
		goto out;
	}
	/* A fleet configuration needs libcurl, which only fleet mode loads:
	 * --check loads it too, so a missing one fails here, not at start. */
	if (check && cfg.fleet.enabled && etcd_curl_load(err, sizeof(err))) {
		fprintf(stderr, "%s: %s\n", path, err);
		tls_ctx_free(tls);
		goto out;
	}
	if (check) {
		printf("%s: ok (%zu ports, %zu domains, %zu vms, %zu names "
		       "on %zu certificates)\n",
		       path, cfg.ports_len, cfg.domains_len, cfg.vms_len,
		       tls_ctx_count_names(tls), cfg.certs_len);
		tls_ctx_free(tls);
		status = 0;
		goto out;
	}
	log_set_level(verbose ? LOG_DEBUG : (enum log_level)cfg.log_level);
	/* Once, before any worker reads ring_direct. */
	if (!sockets_choose(&sockets, &forced)) {
		log_error("startup", "cannot run on this kernel: %s%s%s",
			  sockets.why, forced ? "; VMGATE_PROBE_KERNEL=" : "",
			  forced ? forced : "");
		tls_ctx_free(tls);
		goto out;
	}
	ring_direct = sockets.mode == SOCKMODE_DIRECT;
	ring_fd_install = sockets.fd_install;
	if (!steering_choose(&shared, &cfg, path, takeover, steer_why,
			     sizeof(steer_why))) {
		log_error("startup", "steering: %s", steer_why);
		tls_ctx_free(tls);
		goto out;
	}
	if (shared.steer && ring_direct && !ring_fd_install) {
		/* The dialled port is read with getsockname(2) on an fd
		 * installed for it (conn.c). */
		ring_direct = false;
		sockets.mode = SOCKMODE_FDS;
		sockets.why = "sk_lookup steering reads the dialled port "
			      "with getsockname(2), and this kernel cannot "
			      "install a direct descriptor as an fd "
			      "(IORING_OP_FIXED_FD_INSTALL, Linux 6.8)";
	}
	log_info("sockets", "mode=%s half_close=%s%s%s reason=\"%s\"",
		 sockmode_name(sockets.mode),
		 !ring_direct ? "shutdown"
			      : ring_fd_install ? "fd_install"
						: "io_uring_shutdown",
		 forced ? " probe_kernel=" : "", forced ? forced : "",
		 sockets.why);
	log_info("steering", "steering=%s ports=%zu addresses=%zu "
		 "excluded=%zu link_id=%u reason=\"%s\"",
		 shared.steer ? "sk_lookup" : "listeners", cfg.ports_len,
		 cfg.addrs_len, cfg.exclude_ports_len,
		 steer_link_id(shared.steer), steer_why);
	/* Falling back costs every handshake ~17 µs: say so loudly. */
	x25519 = tls_x25519_init(&x25519_why);
	log_msg(x25519 == TLS_X25519_LIBSODIUM &&
				tls_x25519_keygen_impl() == TLS_X25519_LIBSODIUM
			? LOG_INFO
			: LOG_WARN,
		"x25519", "impl=%s keygen=%s reason=\"%s\"",
		tls_x25519_impl_name(x25519),
		tls_x25519_impl_name(tls_x25519_keygen_impl()), x25519_why);
	raise_nofile();
	tune_malloc();
	signal(SIGPIPE, SIG_IGN);
	/* Signals go to the main thread only, through control_run's
	 * signalfd: block them before any thread starts. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	nworkers = worker_count(&cfg);
	/* The keys go to the signer before any worker can need one. */
	if (IS_ENABLED(CONFIG_KEY_SIGNER) &&
	    signerd_start(cfg.signer_path, tls, nworkers,
			  cfg.limits.handshake_timeout_ms, &shared.signer_path,
			  err, sizeof(err))) {
		log_error("startup", "signer: %s", err);
		tls_ctx_free(tls);
		goto out;
	}
	workers = calloc(nworkers, sizeof(*workers));
	if (!workers)
		goto out;
	shared.cfg = &cfg;
	shared.workers = workers;
	shared.nworkers = nworkers;
	if (peers_init(&shared.peers, cfg.limits.max_connections_per_ip))
		goto out;
	ret = control_new(&ctl, &shared, path, tls, verbose, err, sizeof(err));
	if (ret) {
		log_error("startup", "%s", err);
		goto out;
	}
	/* Listeners: one per worker with sk_lookup (on the old process's
	 * port when taking over: one SO_REUSEPORT group), else one per
	 * address and port per worker. */
	if (shared.steer)
		steer_port = steer_old_port(shared.steer);
	lfds_cap = shared.steer ? 1 : cfg.addrs_len * cfg.ports_len;
	lfds = calloc(lfds_cap, sizeof(*lfds));
	lports = calloc(lfds_cap, sizeof(*lports));
	if (!lfds || !lports)
		goto out;
	for (i = 0; i < nworkers; i++) {
		uint32_t cap = (cfg.limits.max_connections + nworkers - 1) /
			       nworkers;
		size_t p, n;

		if (listeners_open(&shared, &cfg, i, &steer_port, lfds, lports,
				   &n))
			goto out;
		ret = worker_init(&workers[i], i, &shared, cap, lfds, lports,
				  (unsigned)n);
		if (ret) {
			log_error("startup", "worker %u: %s", i, strerror(-ret));
			for (p = 0; p < n; p++)
				close(lfds[p]);
			goto out;
		}
	}
	/* Steering starts once every worker's listener is in the map. */
	if (shared.steer) {
		ret = steer_apply(shared.steer, &cfg);
		if (ret) {
			log_error("startup", "cannot fill the steering maps: %s",
				  strerror(-ret));
			goto out;
		}
		if (steer_old_pid(shared.steer)) {
			takeover_note(steer_old_pid(shared.steer));
			/* It read the state file before the old one stopped
			 * writing it: read again once that one is gone. */
			control_takeover(ctl, steer_old_pid(shared.steer),
					 cfg.limits.drain_timeout_ms + 5000);
			test_takeover_gate();
		}
		shared.steer_port = steer_port;
		ret = steer_commit(shared.steer, nworkers, steer_port);
		if (ret) {
			log_error("startup", "cannot take the steering maps "
				  "over: %s", strerror(-ret));
			goto out;
		}
		drop_bpf_caps(shared.steer);
	}
	for (; started < nworkers; started++) {
		ret = worker_start(&workers[started]);
		if (ret) {
			log_error("startup", "cannot start worker: %s",
				  strerror(-ret));
			goto stop;
		}
	}
	if (cfg.admin.enabled && cfg.admin.has_listen && shared.steer &&
	    steer_old_pid(shared.steer))
		takeover_wait_admin(steer_old_pid(shared.steer),
				    cfg.limits.drain_timeout_ms);
	if (cfg.admin.enabled && admin_start(&admin, &cfg.admin, ctl))
		goto stop;
	log_info("ready", "version=%s ports=%s steering=%s workers=%u vms=%zu "
		 "domains=%zu certificates=%zu admin=%s", VMGATE_VERSION,
		 ports_str(&cfg, ports, sizeof(ports)),
		 shared.steer ? "sk_lookup" : "listeners", nworkers,
		 route_vm_count(atomic_load(&shared.snap)->routes),
		 cfg.domains_len, cfg.certs_len, admin ? "on" : "off");
	ret = sdnotify_send("READY=1\nSTATUS=serving");
	if (ret)
		log_warn("sd_notify", "socket=%s error=\"%s\"",
			 getenv("NOTIFY_SOCKET"), strerror(-ret));
	sig = control_run(ctl, &sigs);
	if (sig < 0) {
		log_error("control", "%s", strerror(-sig));
		goto stop;
	}
	log_info("shutdown", "signal=%s closing=%s", sigabbrev_np(sig),
		 sig == SIGINT ? "now" : "remaining");
	status = atomic_load(&shared.stop) ? 1 : 0;
stop:
	/* Before the admin writer and the fleet thread are joined: neither
	 * waits on etcd from here on. */
	control_stopping(ctl);
	admin_stop(admin);
	atomic_store(&shared.stop, true);
	for (i = 0; i < started; i++)
		worker_join(&workers[i]);
out:
	if (workers)
		for (i = 0; i < nworkers; i++)
			worker_free(&workers[i]);
	free(workers);
	free(lfds);
	free(lports);
	/* Before the stores are freed: an exiting vmgate drops no key from
	 * an external signer (a vmgate taking over may be using them), and
	 * its own signer goes anyway. */
	signerd_stop();
	control_free(ctl);
	/* After the workers: the program goes with its listeners. */
	steer_free(shared.steer);
	peers_free(&shared.peers);
	config_free(&cfg);
	return status;
}
