/* ctl/main.c: command line, configuration, workers, signals.
 *
 *   vmgate -c FILE            run in the foreground
 *   vmgate --check -c FILE    validate FILE (and its certificates), exit
 *   vmgate --version
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "ctl/admin.h"
#include "ctl/control.h"
#include "core/kconfig.h"
#include "core/listener.h"
#include "core/log.h"
#include "core/peers.h"
#include "core/ring.h"
#include "core/sockmode.h"
#include "core/worker.h"
#include "ctl/config.h"
#include "ctl/signerd.h"
#include "route/route.h"
#include "tls/ctx.h"

#define VMGATE_VERSION "0.1.0"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vmgate -c FILE [-v]     run the appliance in the foreground\n"
		"       vmgate --check -c FILE  validate FILE and its certificates\n"
		"       vmgate --version\n"
		"  -c, --config FILE  appliance.yaml to use\n"
		"  -v, --verbose      log at debug level (overrides log_level)\n");
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

static unsigned worker_count(const struct config *cfg)
{
	long n = cfg->workers;

	if (!n)
		n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	if (n > CONFIG_MAX_WORKERS)
		n = CONFIG_MAX_WORKERS;
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

static const char *ports_str(const struct config *cfg, char *out, size_t cap)
{
	size_t i, o = 0;

	out[0] = '\0';
	for (i = 0; i < cfg->ports_len && o + 8 < cap; i++)
		o += (size_t)snprintf(out + o, cap - o, "%s%u", i ? "," : "",
				      cfg->ports[i]);
	return out;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 'k' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct shared shared = {0};
	struct config cfg = {0};
	struct tls_ctx *tls = NULL;
	struct sockmode_choice sockets;
	const char *forced = NULL;
	struct control *ctl = NULL;
	struct admin *admin = NULL;
	struct worker *workers = NULL;
	const char *path = NULL;
	bool check = false, verbose = false;
	unsigned nworkers = 0, started = 0, i;
	int opt, sig, status = 1, ret;
	char ports[256], err[1024];
	sigset_t sigs;

	while ((opt = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'k':
			check = true;
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
	if (!load(&cfg, &tls, path))
		goto out;
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
	log_info("sockets", "mode=%s half_close=%s%s%s reason=\"%s\"",
		 sockmode_name(sockets.mode),
		 !ring_direct ? "shutdown"
			      : ring_fd_install ? "fd_install"
						: "io_uring_shutdown",
		 forced ? " probe_kernel=" : "", forced ? forced : "",
		 sockets.why);
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

	/* The keys go to the signer before any worker can need one. */
	if (IS_ENABLED(CONFIG_KEY_SIGNER) &&
	    signerd_start(cfg.signer_path, tls, &shared.signer_path, err,
			  sizeof(err))) {
		log_error("startup", "signer: %s", err);
		tls_ctx_free(tls);
		goto out;
	}
	nworkers = worker_count(&cfg);
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
	for (i = 0; i < nworkers; i++) {
		uint32_t cap = (cfg.limits.max_connections + nworkers - 1) /
			       nworkers;
		int fds[cfg.ports_len];
		size_t p;

		for (p = 0; p < cfg.ports_len; p++) {
			fds[p] = listener_open(&cfg.listen_addr, cfg.ports[p]);
			if (fds[p] < 0) {
				log_error("startup", "cannot listen on port %u: %s",
					  cfg.ports[p], strerror(-fds[p]));
				while (p--)
					close(fds[p]);
				goto out;
			}
		}
		ret = worker_init(&workers[i], i, &shared, cap, fds, cfg.ports,
				  (unsigned)cfg.ports_len);
		if (ret) {
			log_error("startup", "worker %u: %s", i, strerror(-ret));
			for (p = 0; p < cfg.ports_len; p++)
				close(fds[p]);
			goto out;
		}
	}
	for (; started < nworkers; started++) {
		ret = worker_start(&workers[started]);
		if (ret) {
			log_error("startup", "cannot start worker: %s",
				  strerror(-ret));
			goto stop;
		}
	}
	if (cfg.admin.enabled && admin_start(&admin, &cfg.admin, ctl))
		goto stop;
	log_info("ready", "version=%s ports=%s workers=%u vms=%zu domains=%zu "
		 "certificates=%zu admin=%s", VMGATE_VERSION,
		 ports_str(&cfg, ports, sizeof(ports)), nworkers,
		 route_vm_count(atomic_load(&shared.snap)->routes),
		 cfg.domains_len, cfg.certs_len, admin ? "on" : "off");
	sig = control_run(ctl, &sigs);
	if (sig < 0) {
		log_error("control", "%s", strerror(-sig));
		goto stop;
	}
	log_info("shutdown", "signal=%s closing=%s", sigabbrev_np(sig),
		 sig == SIGINT ? "now" : "remaining");
	status = atomic_load(&shared.stop) ? 1 : 0;
stop:
	admin_stop(admin);
	atomic_store(&shared.stop, true);
	for (i = 0; i < started; i++)
		worker_join(&workers[i]);
out:
	if (workers)
		for (i = 0; i < nworkers; i++)
			worker_free(&workers[i]);
	free(workers);
	control_free(ctl);
	signerd_stop();
	peers_free(&shared.peers);
	config_free(&cfg);
	return status;
}
