/* ctl/control.c: see control.h; the module's files are listed in
 * control_int.h.
 *
 * State: the last good appliance.yaml (cfg), the route table built from
 * its VMs (base), the certificate store built from it (tls), and the VM
 * changes made through the API (ov, persisted in the state file). A
 * snapshot is route_table_derive(base, ov) plus a reference to tls, so an
 * API change costs O(changes), and a file reload O(VMs).
 *
 * The main thread runs control_run(): signals (signalfd) and file changes
 * (inotify on the directories of appliance.yaml and of the certificate
 * files) arrive through its own small io_uring.
 */
#include "ctl/control.h"
#include "ctl/control_int.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/pidfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "core/kconfig.h"
#include "core/log.h"
#include "core/steer.h"
#include "core/timer.h"
#include "core/worker.h"
#include "ctl/config.h"
#include "ctl/fleet.h"
#include "ctl/sdnotify.h"
#include "ctl/signerd.h"
#include "route/route.h"
#include "tls/ctx.h"

/* Snapshots */

/* The last reference to a store goes once no snapshot (published or
 * retired) has it: its keys that no other store names leave the
 * signer. */
static void tls_ref_put(struct tls_ref *r)
{
	if (r && --r->refs == 0) {
		if (IS_ENABLED(CONFIG_KEY_SIGNER) && r->ctx)
			signerd_forget(r->ctx);
		tls_ctx_free(r->ctx);
		free(r);
	}
}

static void base_ref_put(struct base_ref *r)
{
	if (r && --r->refs == 0) {
		route_table_free(r->t);
		free(r);
	}
}

static struct base_ref *base_ref_new(struct route_table *t)
{
	struct base_ref *r = calloc(1, sizeof(*r));

	if (!r) {
		route_table_free(t);
		return NULL;
	}
	r->t = t;
	r->refs = 1;
	return r;
}

/* Without API changes a snapshot routes with the base table itself; with
 * some, with an overlay derived in O(changes). */
static struct route_table *derive(struct control *ctl)
{
	struct route_vm_change *ch = calloc(ctl->ov_len, sizeof(*ch));
	struct route_table *t;
	size_t i;

	if (ctl->fleet) {
		free(ch);
		return fleet_derive_locked(ctl->fleet, ctl->fbase->t);
	}
	if (!ch)
		return NULL;
	for (i = 0; i < ctl->ov_len; i++) {
		ch[i].id = ctl->ov[i].id;
		ch[i].addr = ctl->ov[i].addr;
		ch[i].ports = ctl->ov[i].ports;
		ch[i].removed = ctl->ov[i].removed;
	}
	t = route_table_derive(ctl->base->t, ch, ctl->ov_len);
	free(ch);
	return t;
}

static struct snapshot *snap_new(struct control *ctl)
{
	struct snapshot *s = calloc(1, sizeof(*s));
	struct snap_own *own = calloc(1, sizeof(*own));

	if (!s || !own)
		goto err;
	size_t changes = ctl->fleet ? fleet_changes_len_locked(ctl->fleet) :
				      ctl->ov_len;

	if (changes && !(own->derived = derive(ctl)))
		goto err;
	own->base = ctl->fleet ? ctl->fbase : ctl->base;
	own->tls = ctl->tls;
	own->base->refs++;
	ctl->tls->refs++;
	s->routes = own->derived ? own->derived : own->base->t;
	s->tls = own->tls->ctx;
	s->owner = own;
	return s;
err:
	free(own);
	free(s);
	return NULL;
}

static void snap_free(struct snapshot *s)
{
	struct snap_own *own;

	if (!s)
		return;
	own = s->owner;
	route_table_free(own->derived);
	base_ref_put(own->base);
	tls_ref_put(own->tls);
	free(own);
	free(s);
}

/* Frees retired snapshots that no worker can still be using: a worker
 * stores the epoch of the snapshot it took at the top of each loop, so
 * once every worker shows a newer epoch, older snapshots are unreachable. */
static void reclaim_locked(struct control *ctl)
{
	uint64_t min_seen = UINT64_MAX;
	size_t i, kept = 0;

	for (i = 0; i < ctl->shared->nworkers; i++) {
		uint64_t e = atomic_load_explicit(
			&ctl->shared->workers[i].seen_epoch,
			memory_order_acquire);

		if (e < min_seen)
			min_seen = e;
	}
	for (i = 0; i < ctl->retired_len; i++) {
		struct snapshot *s = ctl->retired[i];

		if (s->epoch < min_seen)
			snap_free(s);
		else
			ctl->retired[kept++] = s;
	}
	ctl->retired_len = kept;
}

static int publish_locked(struct control *ctl, struct snapshot *s)
{
	struct snapshot *old;

	if (ctl->retired_len == ctl->retired_cap) {
		size_t cap = ctl->retired_cap ? 2 * ctl->retired_cap : 8;
		struct snapshot **r = realloc(ctl->retired, cap * sizeof(*r));

		if (!r) {
			snap_free(s);
			return -ENOMEM;
		}
		ctl->retired = r;
		ctl->retired_cap = cap;
	}
	s->epoch = ++ctl->epoch;
	old = atomic_exchange_explicit(&ctl->shared->snap, s,
				       memory_order_acq_rel);
	if (old)
		ctl->retired[ctl->retired_len++] = old;
	reclaim_locked(ctl);
	return 0;
}

int control_republish_locked(struct control *ctl)
{
	struct snapshot *s = snap_new(ctl);

	return s ? publish_locked(ctl, s) : -ENOMEM;
}

int control_set_fbase_locked(struct control *ctl, struct route_table *t)
{
	struct base_ref *r = base_ref_new(t);

	if (!r)
		return -ENOMEM;
	base_ref_put(ctl->fbase);
	ctl->fbase = r;
	return control_republish_locked(ctl);
}

struct fleet *control_fleet(struct control *ctl)
{
	return ctl->fleet;
}

bool control_draining(struct control *ctl)
{
	return atomic_load(&ctl->shared->draining);
}

void control_takeover(struct control *ctl, int old_pid, uint32_t wait_ms)
{
	pthread_mutex_lock(&ctl->lock);
	ctl->takeover_pid = old_pid;
	ctl->takeover_until_ms = timer_now_ms() + wait_ms;
	ctl->takeover_pending = ctl->state_file != NULL;
	pthread_mutex_unlock(&ctl->lock);
}

bool control_takeover_pending(struct control *ctl)
{
	bool pending;

	pthread_mutex_lock(&ctl->lock);
	pending = ctl->takeover_pending;
	pthread_mutex_unlock(&ctl->lock);
	return pending;
}

/* The old vmgate has exited (|how|), or waiting for it took too long:
 * the state file is read again and the API may change VMs. */
static void takeover_done(struct control *ctl, const char *how)
{
	char err[512] = "";
	size_t changes;
	int ret = 0;

	pthread_mutex_lock(&ctl->lock);
	if (!ctl->takeover_pending) {
		pthread_mutex_unlock(&ctl->lock);
		return;
	}
	ret = control_reread_state_locked(ctl, err, sizeof(err));
	ctl->takeover_pending = false;
	changes = ctl->ov_len;
	pthread_mutex_unlock(&ctl->lock);
	if (ret)
		log_error("takeover", "old_pid=%d %s: the state file read "
			  "again could not be %s (%s); the admin API changes "
			  "VMs again", ctl->takeover_pid, how,
			  err[0] ? "read: the API's changes stay as read at "
				   "startup"
				 : "published: the routes stay as they were",
			  err[0] ? err : strerror(-ret));
	else
		log_msg(strcmp(how, "exited") ? LOG_WARN : LOG_INFO,
			"takeover", "old_pid=%d %s: state file read again, "
			"api_changes=%zu; the admin API changes VMs again",
			ctl->takeover_pid, how, changes);
}

/* The public operations */

static bool listen_same(const struct config *old, const struct config *new)
{
	return old->ports_len == new->ports_len &&
	       !memcmp(old->ports, new->ports,
		       old->ports_len * sizeof(*old->ports)) &&
	       old->addrs_len == new->addrs_len &&
	       !memcmp(old->addrs, new->addrs,
		       old->addrs_len * sizeof(*old->addrs)) &&
	       !memcmp(&old->listen_addr, &new->listen_addr,
		       sizeof(new->listen_addr));
}

/* Two optional strings (paths) alike. */
static bool same_str(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

/* Every key of fleet: runs as the startup file had it until a restart. */
static bool fleet_same(const struct config_fleet *a,
		       const struct config_fleet *b)
{
	size_t i;

	if (a->enabled != b->enabled)
		return false;
	if (!a->enabled)
		return true;
	if (a->endpoints_len != b->endpoints_len)
		return false;
	for (i = 0; i < a->endpoints_len; i++)
		if (strcmp(a->endpoints[i], b->endpoints[i]))
			return false;
	return same_str(a->prefix, b->prefix) &&
	       same_str(a->username, b->username) &&
	       same_str(a->password_file, b->password_file) &&
	       same_str(a->ca_file, b->ca_file) &&
	       same_str(a->cert_file, b->cert_file) &&
	       same_str(a->key_file, b->key_file) &&
	       a->timeout_ms == b->timeout_ms &&
	       a->progress_ms == b->progress_ms &&
	       same_str(a->appliance_id, b->appliance_id) &&
	       same_str(a->snapshot_file, b->snapshot_file) &&
	       a->ticket_rotation_s == b->ticket_rotation_s &&
	       a->ticket_lifetime_s == b->ticket_lifetime_s;
}

/* |old| is the running configuration (the startup file's, for what only a
 * restart applies), not the last file read: a change stays unapplied, and
 * said, until then, and one undone is not said. */
static void warn_restart(const struct control *ctl, const struct config *old,
			 const struct config *new)
{
	/* With sk_lookup the ports and addresses are map entries, changed
	 * in place (control_reload); listeners are sockets. */
	if (old->steering != new->steering)
		log_warn("reload", "listen.steering: changed; restart to "
			 "apply");
	if (!ctl->shared->steer && !listen_same(old, new))
		log_warn("reload", "listen: changed; restart to apply");
	if (old->workers != new->workers)
		log_warn("reload", "workers: changed; restart to apply");
	if (memcmp(&old->limits, &new->limits, sizeof(new->limits)))
		log_warn("reload", "limits: changed; restart to apply");
	if (old->admin.enabled != new->admin.enabled ||
	    old->admin.has_listen != new->admin.has_listen ||
	    memcmp(&old->admin.listen, &new->admin.listen,
		   sizeof(new->admin.listen)) ||
	    !same_str(old->admin.unix_path, new->admin.unix_path) ||
	    !old->admin.token_file != !new->admin.token_file ||
	    !same_str(old->admin.state_file, new->admin.state_file))
		log_warn("reload", "admin: changed; restart to apply");
	/* The signer is started (or its socket chosen) once. */
	if (!same_str(old->signer_path, new->signer_path))
		log_warn("reload", "tls.signer: changed; restart to apply");
}

/* When the startup files began to be read (control_loaded_at). */
static struct timespec loaded_at;

void control_loaded_at(const struct timespec *t)
{
	loaded_at = *t;
}

void control_on_reload(struct control *ctl,
		       void (*fn)(void *arg, const struct config *cfg),
		       void *arg)
{
	pthread_mutex_lock(&ctl->lock);
	ctl->on_reload = fn;
	ctl->on_reload_arg = arg;
	pthread_mutex_unlock(&ctl->lock);
}

int control_reload(struct control *ctl, const char *why, char *err,
		   size_t err_len)
{
	struct config_errors errs = {0};
	struct config *cfg = calloc(1, sizeof(*cfg));
	struct base_ref *base = NULL;
	struct base_ref *fbase = NULL;
	struct tls_ref *tls = NULL;
	bool parsed = false;
	char msg[512];
	size_t i, off = 0;
	int ret;

	if (!cfg)
		return -ENOMEM;
	pthread_mutex_lock(&ctl->lock);
	if (!config_load(cfg, &errs, ctl->path)) {
		if (err_len)
			err[0] = '\0';
		for (i = 0; i < errs.len; i++) {
			const struct config_error *e = &errs.v[i];

			if (e->line)
				snprintf(msg, sizeof(msg), "%s:%u:%u: %s",
					 errs.file, e->line, e->col, e->msg);
			else
				snprintf(msg, sizeof(msg), "%s: %s", errs.file,
					 e->msg);
			log_error("reload_error", "trigger=%s %s", why, msg);
			if (off < err_len)
				off += (size_t)snprintf(err + off, err_len - off,
							"%s\n", msg);
		}
		ret = -EINVAL;
		goto err;
	}
	parsed = true;
	tls = calloc(1, sizeof(*tls));
	if (!tls) {
		ret = -ENOMEM;
		goto err;
	}
	/* Before anything can fail: tls_ref_put on err frees it. */
	tls->refs = 1;
	{
		/* The fleet runs on the startup file's settings until a
		 * restart (below: "restart to apply"), its ticket keys with
		 * it: the new contexts take those too, not half the file's. */
		struct config running = *cfg;

		running.fleet = ctl->shared->cfg->fleet;
		tls->ctx = tls_ctx_new(&running, msg, sizeof(msg));
	}
	if (!tls->ctx) {
		log_error("reload_error", "trigger=%s %s", why, msg);
		snprintf(err, err_len, "%s\n", msg);
		ret = -EINVAL;
		goto err;
	}
	/* The new keys are in the signer before a worker can ask for them. */
	if (IS_ENABLED(CONFIG_KEY_SIGNER) &&
	    signerd_load(tls->ctx, msg, sizeof(msg))) {
		log_error("reload_error", "trigger=%s %s", why, msg);
		snprintf(err, err_len, "%s\n", msg);
		ret = -EINVAL;
		goto err;
	}
	base = base_ref_new(route_table_new(cfg));
	if (!base || !base->t) {
		ret = -ENOMEM;
		goto err;
	}
	/* In fleet mode the routes are the fleet table's: built now too,
	 * so that a failure leaves the old file in force whole (the new
	 * certificate store with the old table would pair domains by index
	 * across two files). */
	if (ctl->fleet) {
		fbase = base_ref_new(fleet_table_for_locked(ctl->fleet, cfg));
		if (!fbase || !fbase->t) {
			ret = -ENOMEM;
			goto err;
		}
	}
	warn_restart(ctl, ctl->shared->cfg, cfg);
	/* Not while draining: the listeners are closed, and after a
	 * takeover the maps are the new process's, whose view (its admin
	 * port among them) a late write of ours would undo. */
	if (ctl->shared->steer && !control_draining(ctl) &&
	    (!listen_same(file_cfg(ctl), cfg) ||
	     steer_dirty(ctl->shared->steer))) {
		/* Before the new file wins: a map update that fails leaves
		 * the old config in force (and the maps as they were, or
		 * partly updated: the next reload, even of the same file,
		 * puts them right). The admin API's port is left out as
		 * the running one's: its listener changes with a restart
		 * only. */
		struct config steered = *cfg;

		steered.admin = ctl->shared->cfg->admin;
		ret = steer_apply(ctl->shared->steer, &steered);
		if (ret) {
			snprintf(msg, sizeof(msg), "cannot update the "
				 "steering maps: %s", strerror(-ret));
			log_error("reload_error", "trigger=%s %s", why, msg);
			snprintf(err, err_len, "%s\n", msg);
			goto err;
		}
		log_info("reload", "trigger=%s steering=sk_lookup ports=%zu "
			 "addresses=%zu", why, cfg->ports_len, cfg->addrs_len);
	}
	if (!fleet_same(&ctl->shared->cfg->fleet, &cfg->fleet))
		log_warn("reload", "fleet: changed; restart to apply");

	/* Everything is built: from here the new file wins. */
	base_ref_put(ctl->base);
	ctl->base = base;
	tls_ref_put(ctl->tls);
	ctl->tls = tls;
	if (ctl->cfg) {
		config_free(ctl->cfg);
		free(ctl->cfg);
	}
	ctl->cfg = cfg;
	if (!ctl->verbose)
		log_set_level((enum log_level)cfg->log_level);
	if (ctl->on_reload)
		ctl->on_reload(ctl->on_reload_arg, cfg);
	/* The fleet table holds the file's VMs too: the new file's. A
	 * publication that fails (out of memory) leaves the workers on the
	 * last snapshot, old routes with old certificates; the next change
	 * publishes the new file, its table with its certificates. */
	if (ctl->fleet) {
		base_ref_put(ctl->fbase);
		ctl->fbase = fbase;
		fbase = NULL;
		fleet_changes_clear_locked(ctl->fleet);
	}
	/* Watched before it is published: a failure to publish leaves the
	 * new file in force (and its files watched), unpublished. */
	control_rewatch_locked(ctl, NULL, NULL, 0);
	ret = control_republish_locked(ctl);
	if (ret) {
		ctl->reloads_failed++;
		log_error("reload_error", "trigger=%s cannot publish the new "
			  "file: %s; the last published one still serves",
			  why, strerror(-ret));
		snprintf(err, err_len, "cannot publish: %s\n", strerror(-ret));
		goto out;
	}
	ctl->reloads_ok++;
	log_info("reload", "trigger=%s vms=%zu domains=%zu certificates=%zu "
		 "api_changes=%zu", why, route_vm_count(current(ctl)->routes),
		 cfg->domains_len, cfg->certs_len, ctl->ov_len);
	goto out;
err:
	ctl->reloads_failed++;
	/* A file that parsed but names what is not there yet (a new
	 * certificate): its files are watched too, so their arrival
	 * reloads; so are those it names that do not exist. */
	control_rewatch_locked(ctl, parsed ? cfg : NULL, errs.missing,
			       errs.missing_len);
	base_ref_put(base);
	tls_ref_put(tls);
	config_free(cfg);
	free(cfg);
	base_ref_put(fbase);
out:
	config_errors_free(&errs);
	pthread_mutex_unlock(&ctl->lock);
	return ret;
}

bool control_healthy(struct control *ctl)
{
	uint64_t now = timer_now_ms();
	unsigned i;

	for (i = 0; i < ctl->shared->nworkers; i++) {
		uint64_t t = atomic_load_explicit(
			&ctl->shared->workers[i].turned_ms,
			memory_order_relaxed);

		if (now > t + 2000)
			return false;
	}
	return true;
}

uint32_t control_live_connections(const struct control *ctl)
{
	uint32_t n = 0;
	unsigned i;

	for (i = 0; i < ctl->shared->nworkers; i++)
		n += atomic_load_explicit(&ctl->shared->workers[i].live,
					  memory_order_relaxed);
	return n;
}

/* Setup, the main thread's loop, teardown */

int control_new(struct control **out, struct shared *shared, const char *path,
		struct tls_ctx *tls, bool verbose, char *err, size_t err_len)
{
	struct control *ctl = calloc(1, sizeof(*ctl));
	int ret = -ENOMEM;

	*out = NULL;
	if (!ctl)
		goto err_tls;
	pthread_mutex_init(&ctl->lock, NULL);
	ctl->shared = shared;
	ctl->path = path;
	ctl->verbose = verbose;
	ctl->ifd = -1;
	ctl->tls = calloc(1, sizeof(*ctl->tls));
	if (!ctl->tls)
		goto err_tls;
	ctl->tls->ctx = tls;
	ctl->tls->refs = 1;
	/* In fleet mode the API writes to etcd: no state file. */
	if (shared->cfg->admin.enabled && !shared->cfg->fleet.enabled)
		ctl->state_file = shared->cfg->admin.state_file;
	ret = control_load_state(ctl, err, err_len);
	if (ret)
		goto err;
	ctl->base = base_ref_new(route_table_new(shared->cfg));
	if (!ctl->base || !ctl->base->t) {
		ret = -ENOMEM;
		goto err;
	}
	if (shared->cfg->fleet.enabled) {
		ret = fleet_new(&ctl->fleet, ctl, err, err_len);
		if (ret)
			goto err;
	}
	pthread_mutex_lock(&ctl->lock);
	/* The snapshot file's VMs are in the first table workers see. */
	ret = ctl->fleet ? fleet_rebuild_locked(ctl->fleet) :
			   control_republish_locked(ctl);
	pthread_mutex_unlock(&ctl->lock);
	if (ret)
		goto err;
	/* Watched from here on: an edit made once vmgate says ready (or
	 * once the admin socket answers) is never missed. Events wait in
	 * the inotify queue until control_run reads them. */
	ctl->ifd = inotify_init1(IN_CLOEXEC);
	if (ctl->ifd < 0)
		log_warn("watch", "inotify: %s: file changes need SIGHUP",
			 strerror(errno));
	pthread_mutex_lock(&ctl->lock);
	control_rewatch_locked(ctl, NULL, NULL, 0);
	/* What changed between reading the files and watching them (a
	 * certificate renewed while vmgate started) is read once more. */
	if (loaded_at.tv_sec &&
	    control_watched_changed_since(ctl, &loaded_at)) {
		log_info("watch", "a watched file changed while vmgate "
			 "started: reading it again");
		ctl->watch_caught_up = true;
	}
	pthread_mutex_unlock(&ctl->lock);
	if (ctl->fleet && (ret = fleet_start(ctl->fleet))) {
		snprintf(err, err_len, "cannot start the fleet thread: %s",
			 strerror(-ret));
		goto err;
	}
	*out = ctl;
	return 0;

err_tls:
	if (!ctl || !ctl->tls)
		tls_ctx_free(tls);
err:
	if (ret == -ENOMEM)
		snprintf(err, err_len, "out of memory");
	control_free(ctl);
	return ret;
}

void control_stopping(struct control *ctl)
{
	if (ctl)
		fleet_cancel(ctl->fleet);
}

void control_free(struct control *ctl)
{
	size_t i;

	if (!ctl)
		return;
	/* First: its thread publishes. */
	fleet_free(ctl->fleet);
	ctl->fleet = NULL;
	for (i = 0; i < ctl->retired_len; i++)
		snap_free(ctl->retired[i]);
	snap_free(atomic_exchange(&ctl->shared->snap, NULL));
	free(ctl->retired);
	base_ref_put(ctl->base);
	base_ref_put(ctl->fbase);
	tls_ref_put(ctl->tls);
	for (i = 0; i < ctl->ov_len; i++)
	{
		free(ctl->ov[i].id);
		free(ctl->ov[i].ports);
	}
	free(ctl->ov);
	if (ctl->cfg) {
		config_free(ctl->cfg);
		free(ctl->cfg);
	}
	control_watches_free(ctl);
	if (ctl->ifd >= 0)
		close(ctl->ifd);
	pthread_mutex_destroy(&ctl->lock);
	free(ctl);
}

enum { CTL_SIGNAL = 1, CTL_INOTIFY = 2, CTL_TAKEOVER = 3 };

static void post_read(struct io_uring *ring, int fd, void *buf, size_t len,
		      uint64_t ud)
{
	/* Full after one wake-up per worker (wake_workers): ring_sqe
	 * submits first. */
	struct io_uring_sqe *sqe = ring_sqe(ring);

	io_uring_prep_read(sqe, fd, buf, (unsigned)len, 0);
	io_uring_sqe_set_data64(sqe, ud);
}

/* SIGTERM: stop accepting and give established connections up to
 * limits.drain_timeout_ms to finish. Returns true when it is time to
 * stop: nothing left, the deadline passed, or a second signal. */
static bool drained(struct control *ctl, uint64_t deadline)
{
	uint32_t live = control_live_connections(ctl);

	if (!live) {
		log_info("shutdown", "drained");
		return true;
	}
	if (timer_now_ms() >= deadline) {
		log_warn("shutdown", "drain_timeout closing=%u", live);
		return true;
	}
	return false;
}

static void wake_workers(struct control *ctl, struct io_uring *ring)
{
	unsigned i;

	for (i = 0; i < ctl->shared->nworkers; i++)
		worker_wake(&ctl->shared->workers[i], ring);
	/* Submitted with the next wait; their completions are ignored. */
}

int control_run(struct control *ctl, const sigset_t *sigs)
{
	struct __kernel_timespec tick = { .tv_nsec = 50 * 1000000 };
	uint64_t term_ms = 0; /* when SIGTERM came */
	/* systemd's WatchdogSec=: pinged while every worker turns */
	uint64_t wd_ms = sdnotify_watchdog_ms(getenv("WATCHDOG_USEC"),
					      getenv("WATCHDOG_PID"), getpid());
	uint64_t wd_last = 0;
	int term = 0;
	_Alignas(struct inotify_event) uint8_t ibuf[4096];
	struct signalfd_siginfo si;
	struct io_uring ring;
	int sfd, sig = 0, ret, pidfd = -1;
	bool caught_up, takeover_late, takeover_gone, takeover_by_kill = false;
	bool rearm_signal = false, rearm_inotify = false;

	sfd = signalfd(-1, sigs, SFD_CLOEXEC);
	if (sfd < 0)
		return -errno;
	ret = io_uring_queue_init(16, &ring, 0);
	if (ret) {
		close(sfd);
		return ret;
	}
	post_read(&ring, sfd, &si, sizeof(si), CTL_SIGNAL);
	if (ctl->ifd >= 0)
		post_read(&ring, ctl->ifd, ibuf, sizeof(ibuf), CTL_INOTIFY);
	if (control_takeover_pending(ctl)) {
		/* Readable once the old process has exited. */
		pidfd = pidfd_open(ctl->takeover_pid, 0);
		if (pidfd >= 0) {
			struct io_uring_sqe *sqe = ring_sqe(&ring);

			io_uring_prep_poll_add(sqe, pidfd, POLLIN);
			io_uring_sqe_set_data64(sqe, CTL_TAKEOVER);
		} else if (errno == ESRCH) {
			takeover_done(ctl, "exited");
		} else {
			/* No pidfd (a seccomp filter): asked every tick. */
			takeover_by_kill = true;
		}
	}
	while (!sig) {
		struct io_uring_cqe *cqe;
		char err[2048];

		ret = io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &tick,
						       NULL);
		/* A read that failed last turn goes again once a wait has
		 * passed: an error that stays costs a read per tick. */
		if (rearm_signal)
			post_read(&ring, sfd, &si, sizeof(si), CTL_SIGNAL);
		if (rearm_inotify)
			post_read(&ring, ctl->ifd, ibuf, sizeof(ibuf),
				  CTL_INOTIFY);
		rearm_signal = rearm_inotify = false;
		if (ret == 0 || ret == -ETIME || ret == -EINTR) {
			unsigned head, n = 0;
			bool reload = false;

			io_uring_for_each_cqe(&ring, head, cqe) {
				uint64_t ud = io_uring_cqe_get_data64(cqe);

				n++;
				if (ud == CTL_SIGNAL && cqe->res != sizeof(si)) {
					rearm_signal = true;
				} else if (ud == CTL_SIGNAL) {
					if (si.ssi_signo == SIGHUP) {
						sdnotify_send("RELOADING=1");
						control_reload(ctl, "SIGHUP", err,
							       sizeof(err));
						sdnotify_send("READY=1");
					} else if (si.ssi_signo == SIGTERM &&
						   !term) {
						term = SIGTERM;
						term_ms = timer_now_ms();
						atomic_store(&ctl->shared->draining,
							     true);
						sdnotify_send("STOPPING=1");
						wake_workers(ctl, &ring);
						log_info("shutdown",
							 "signal=SIGTERM "
							 "draining=%u "
							 "timeout_ms=%u",
							 control_live_connections(ctl),
							 ctl->shared->cfg->limits
								 .drain_timeout_ms);
					} else {
						sig = (int)si.ssi_signo;
					}
					post_read(&ring, sfd, &si, sizeof(si),
						  CTL_SIGNAL);
				} else if (ud == CTL_TAKEOVER) {
					if (cqe->res >= 0)
						takeover_done(ctl, "exited");
					else
						takeover_by_kill = true;
				} else if (ud == CTL_INOTIFY && cqe->res > 0) {
					reload |= control_events_match(
						ctl, ibuf, (size_t)cqe->res);
					post_read(&ring, ctl->ifd, ibuf,
						  sizeof(ibuf), CTL_INOTIFY);
				} else if (ud == CTL_INOTIFY) {
					/* Events may be lost: the files
					 * are read anew. */
					log_warn("watch", "reading the file "
						 "events failed (%s): reloading",
						 strerror(-cqe->res));
					reload = rearm_inotify = true;
				}
			}
			io_uring_cq_advance(&ring, n);
			if (reload)
				control_reload(ctl, "file", err, sizeof(err));
		}
		pthread_mutex_lock(&ctl->lock);
		reclaim_locked(ctl);
		if (IS_ENABLED(CONFIG_KEY_SIGNER))
			signerd_tick();
		caught_up = ctl->watch_caught_up;
		ctl->watch_caught_up = false;
		takeover_late = ctl->takeover_pending &&
				timer_now_ms() >= ctl->takeover_until_ms;
		takeover_gone = ctl->takeover_pending && takeover_by_kill &&
				kill(ctl->takeover_pid, 0) && errno == ESRCH;
		pthread_mutex_unlock(&ctl->lock);
		if (takeover_gone)
			takeover_done(ctl, "exited");
		else if (takeover_late)
			takeover_done(ctl, "still running after the drain "
					   "timeout");
		/* A directory watched only now that it exists (ctl/watch.c):
		 * what was written in it before is read. */
		if (caught_up)
			control_reload(ctl, "file", err, sizeof(err));
		if (wd_ms && timer_now_ms() >= wd_last + wd_ms &&
		    control_healthy(ctl)) {
			sdnotify_send("WATCHDOG=1");
			wd_last = timer_now_ms();
		}
		/* Workers stop accepting as soon as the wake-up reaches them
		 * (and within one tick regardless); until all have, a count
		 * of zero could still grow. */
		if (term && !sig && timer_now_ms() >= term_ms + 200 &&
		    drained(ctl, term_ms + ctl->shared->cfg->limits
						   .drain_timeout_ms))
			sig = term;
	}
	io_uring_queue_exit(&ring);
	close(sfd);
	if (pidfd >= 0)
		close(pidfd);
	return sig;
}
