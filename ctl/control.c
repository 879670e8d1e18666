/* ctl/control.c: see control.h.
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

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <liburing.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "core/log.h"
#include "core/timer.h"
#include "core/worker.h"
#include "route/config.h"
#include "route/route.h"
#include "tls/ctx.h"

/* A certificate store shared by every snapshot built from one file load. */
struct tls_ref {
	struct tls_ctx *ctx;
	unsigned refs; /* under control.lock */
};

/* A route table built from one file load, shared by every snapshot that
 * routes with it (directly, or under an overlay of API changes). */
struct base_ref {
	struct route_table *t;
	unsigned refs; /* under control.lock */
};

/* What a snapshot owns, behind snapshot.owner. */
struct snap_own {
	struct tls_ref *tls;
	struct base_ref *base;
	struct route_table *derived; /* base + API changes, or NULL */
};

struct override {
	char *id; /* normalised */
	struct in6_addr addr;
	bool removed;
};

#define WATCH_MAX 16

struct watch {
	int wd;
	char *dir;
	char *names[WATCH_MAX]; /* basenames that trigger a reload */
	size_t names_len;
};

struct control {
	pthread_mutex_t lock;
	struct shared *shared;
	const char *path;
	bool verbose; /* -v: debug logging whatever the file says */

	struct config *cfg; /* last good file; NULL: still the startup one */
	struct base_ref *base;
	struct tls_ref *tls;
	struct override *ov;
	size_t ov_len, ov_cap;
	const char *state_file; /* NULL: API changes are not persisted */

	uint64_t epoch;
	struct snapshot **retired;
	size_t retired_len, retired_cap;

	uint64_t reloads_ok, reloads_failed;

	int ifd; /* inotify */
	struct watch watches[WATCH_MAX];
	size_t watches_len;
};

static const struct config *file_cfg(const struct control *ctl)
{
	return ctl->cfg ? ctl->cfg : ctl->shared->cfg;
}

static struct snapshot *current(const struct control *ctl)
{
	return atomic_load(&ctl->shared->snap);
}

/* Snapshots */

static void tls_ref_put(struct tls_ref *r)
{
	if (r && --r->refs == 0) {
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

	if (!ch)
		return NULL;
	for (i = 0; i < ctl->ov_len; i++) {
		ch[i].id = ctl->ov[i].id;
		ch[i].addr = ctl->ov[i].addr;
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
	if (ctl->ov_len && !(own->derived = derive(ctl)))
		goto err;
	own->base = ctl->base;
	own->tls = ctl->tls;
	ctl->base->refs++;
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

static int republish_locked(struct control *ctl)
{
	struct snapshot *s = snap_new(ctl);

	return s ? publish_locked(ctl, s) : -ENOMEM;
}

/* The state file: {"version": 1, "vms": {"id": "addr"}, "removed": [id]} */

static int fsync_dir(const char *path)
{
	char *copy = strdup(path);
	int fd, ret = 0;

	if (!copy)
		return -ENOMEM;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(copy);
	if (fd < 0)
		return -errno;
	if (fsync(fd))
		ret = -errno;
	close(fd);
	return ret;
}

/* Written to a temporary file, fsynced and renamed over the old one, then
 * the directory fsynced: a crash leaves the old file or the new one. */
static int persist_locked(struct control *ctl, char *err, size_t err_len)
{
	json_t *root = json_object(), *vms = json_object(),
	       *removed = json_array();
	char tmp[4096], addr[INET6_ADDRSTRLEN];
	int fd = -1, ret = -ENOMEM;
	size_t i;

	if (!ctl->state_file)
		return 0;
	if (!root || !vms || !removed)
		goto out;
	for (i = 0; i < ctl->ov_len; i++) {
		const struct override *o = &ctl->ov[i];

		if (o->removed) {
			if (json_array_append_new(removed, json_string(o->id)))
				goto out;
			continue;
		}
		inet_ntop(AF_INET6, &o->addr, addr, sizeof(addr));
		if (json_object_set_new(vms, o->id, json_string(addr)))
			goto out;
	}
	if (json_object_set_new(root, "version", json_integer(1)) ||
	    json_object_set(root, "vms", vms) ||
	    json_object_set(root, "removed", removed))
		goto out;

	snprintf(tmp, sizeof(tmp), "%s.tmp", ctl->state_file);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || json_dumpfd(root, fd, JSON_INDENT(1) | JSON_SORT_KEYS) ||
	    write(fd, "\n", 1) != 1 || fsync(fd)) {
		ret = -errno ? -errno : -EIO;
		goto out_err;
	}
	close(fd);
	fd = -1;
	if (rename(tmp, ctl->state_file) || (ret = fsync_dir(ctl->state_file))) {
		ret = ret ? ret : -errno;
		goto out_err;
	}
	ret = 0;
	goto out;
out_err:
	snprintf(err, err_len, "cannot write state file %s: %s",
		 ctl->state_file, strerror(-ret));
	log_error("state_error", "file=%s error=\"%s\"", ctl->state_file,
		  strerror(-ret));
	ret = -EIO;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
out:
	json_decref(root);
	json_decref(vms);
	json_decref(removed);
	return ret;
}

static struct override *find_ov(struct control *ctl, const char *id)
{
	size_t i;

	for (i = 0; i < ctl->ov_len; i++)
		if (!strcmp(ctl->ov[i].id, id))
			return &ctl->ov[i];
	return NULL;
}

static struct override *add_ov(struct control *ctl, const char *id)
{
	struct override *o;

	if (ctl->ov_len == ctl->ov_cap) {
		size_t cap = ctl->ov_cap ? 2 * ctl->ov_cap : 16;

		o = realloc(ctl->ov, cap * sizeof(*o));
		if (!o)
			return NULL;
		ctl->ov = o;
		ctl->ov_cap = cap;
	}
	o = &ctl->ov[ctl->ov_len];
	memset(o, 0, sizeof(*o));
	o->id = strdup(id);
	if (!o->id)
		return NULL;
	ctl->ov_len++;
	return o;
}

/* A VM id: one valid DNS label, normalised to lowercase in |out|. */
static bool norm_id(char out[256], const char *id)
{
	size_t len;

	return route_host_normalize(out, &len, 256, (const uint8_t *)id,
				    strlen(id)) &&
	       !strchr(out, '.');
}

static bool parse_v6(struct in6_addr *out, const char *s, char *err,
		     size_t err_len)
{
	struct in_addr a4;

	if (inet_pton(AF_INET6, s, out) == 1 && !IN6_IS_ADDR_V4MAPPED(out))
		return true;
	if (inet_pton(AF_INET, s, &a4) == 1 || inet_pton(AF_INET6, s, out) == 1)
		snprintf(err, err_len, "address '%.64s' is not IPv6: vmgate "
			 "reaches VMs over IPv6 only", s);
	else
		snprintf(err, err_len, "address '%.64s' is not an IPv6 address",
			 s);
	return false;
}

static int load_state(struct control *ctl, char *err, size_t err_len)
{
	json_error_t jerr;
	json_t *root, *vms, *removed, *v;
	const char *id;
	char norm[256];
	size_t i;
	int ret = -EINVAL;

	if (!ctl->state_file || access(ctl->state_file, F_OK) != 0)
		return 0;
	root = json_load_file(ctl->state_file, 0, &jerr);
	if (!root) {
		snprintf(err, err_len, "%s:%d:%d: %s", ctl->state_file,
			 jerr.line, jerr.column, jerr.text);
		return -EINVAL;
	}
	vms = json_object_get(root, "vms");
	removed = json_object_get(root, "removed");
	if ((vms && !json_is_object(vms)) ||
	    (removed && !json_is_array(removed))) {
		snprintf(err, err_len, "%s: expected {\"vms\": {...}, "
			 "\"removed\": [...]}", ctl->state_file);
		goto out;
	}
	json_object_foreach(vms, id, v) {
		struct override *o;
		struct in6_addr a;

		if (!norm_id(norm, id) || !json_is_string(v) ||
		    !parse_v6(&a, json_string_value(v), err, err_len)) {
			snprintf(err, err_len, "%s: bad VM entry '%.64s'",
				 ctl->state_file, id);
			goto out;
		}
		o = find_ov(ctl, norm);
		if (!o && !(o = add_ov(ctl, norm)))
			goto oom;
		o->addr = a;
		o->removed = false;
	}
	json_array_foreach(removed, i, v) {
		struct override *o;

		if (!json_is_string(v) || !norm_id(norm, json_string_value(v))) {
			snprintf(err, err_len, "%s: bad removed entry",
				 ctl->state_file);
			goto out;
		}
		o = find_ov(ctl, norm);
		if (!o && !(o = add_ov(ctl, norm)))
			goto oom;
		o->removed = true;
	}
	ret = 0;
	goto out;
oom:
	snprintf(err, err_len, "out of memory reading %s", ctl->state_file);
	ret = -ENOMEM;
out:
	json_decref(root);
	return ret;
}

/* The public operations */

static void warn_restart(const struct config *old, const struct config *new)
{
	if (old->ports_len != new->ports_len ||
	    memcmp(old->ports, new->ports, old->ports_len * sizeof(*old->ports)) ||
	    memcmp(&old->listen_addr, &new->listen_addr, sizeof(new->listen_addr)))
		log_warn("reload", "listen: changed; restart to apply");
	if (old->workers != new->workers)
		log_warn("reload", "workers: changed; restart to apply");
	if (memcmp(&old->limits, &new->limits, sizeof(new->limits)))
		log_warn("reload", "limits: changed; restart to apply");
	if (old->admin.enabled != new->admin.enabled ||
	    old->admin.has_listen != new->admin.has_listen ||
	    memcmp(&old->admin.listen, &new->admin.listen,
		   sizeof(new->admin.listen)))
		log_warn("reload", "admin: changed; restart to apply");
}

static void rewatch_locked(struct control *ctl);

int control_reload(struct control *ctl, const char *why, char *err,
		   size_t err_len)
{
	struct config_errors errs = {0};
	struct config *cfg = calloc(1, sizeof(*cfg));
	struct base_ref *base = NULL;
	struct tls_ref *tls = NULL;
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
	tls = calloc(1, sizeof(*tls));
	if (!tls) {
		ret = -ENOMEM;
		goto err;
	}
	/* Before anything can fail: tls_ref_put on err frees it. */
	tls->refs = 1;
	tls->ctx = tls_ctx_new(cfg, msg, sizeof(msg));
	if (!tls->ctx) {
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
	warn_restart(file_cfg(ctl), cfg);

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
	ret = republish_locked(ctl);
	if (ret)
		goto out;
	rewatch_locked(ctl);
	ctl->reloads_ok++;
	log_info("reload", "trigger=%s vms=%zu domains=%zu certificates=%zu "
		 "api_changes=%zu", why, route_vm_count(current(ctl)->routes),
		 cfg->domains_len, cfg->certs_len, ctl->ov_len);
	goto out;
err:
	ctl->reloads_failed++;
	base_ref_put(base);
	tls_ref_put(tls);
	config_free(cfg);
	free(cfg);
out:
	config_errors_free(&errs);
	pthread_mutex_unlock(&ctl->lock);
	return ret;
}

/* Records an API change of VM |norm| (an address, or removed), persists
 * it and publishes it. A change that could not be persisted is not
 * acknowledged, so it is not applied either. Under the lock. */
static int change_locked(struct control *ctl, const char *norm,
			 const struct in6_addr *addr, char *err,
			 size_t err_len)
{
	struct override *o = find_ov(ctl, norm), saved;
	bool added = false;
	int ret;

	if (!o) {
		o = add_ov(ctl, norm);
		if (!o)
			return -ENOMEM;
		added = true;
	}
	saved = *o;
	o->removed = !addr;
	if (addr)
		o->addr = *addr;
	ret = persist_locked(ctl, err, err_len);
	if (ret) {
		if (added) {
			free(o->id);
			ctl->ov_len--;
		} else {
			*o = saved;
		}
		return ret;
	}
	return republish_locked(ctl);
}

int control_vm_put(struct control *ctl, bool *out_created, const char *id,
		   const char *address, char *err, size_t err_len)
{
	struct in6_addr addr, old;
	char norm[256];
	int ret;

	if (!norm_id(norm, id)) {
		snprintf(err, err_len, "invalid VM id '%.64s': one DNS label "
			 "of letters, digits and hyphens", id);
		return -EINVAL;
	}
	if (!parse_v6(&addr, address, err, err_len))
		return -EINVAL;

	pthread_mutex_lock(&ctl->lock);
	*out_created = !route_vm_get(current(ctl)->routes, &old, norm,
				     strlen(norm));
	ret = change_locked(ctl, norm, &addr, err, err_len);
	pthread_mutex_unlock(&ctl->lock);
	if (!ret)
		log_info("vm_put", "vm=%s address=%s created=%d", norm, address,
			 *out_created);
	return ret;
}

int control_vm_delete(struct control *ctl, const char *id, char *err,
		      size_t err_len)
{
	struct in6_addr old;
	char norm[256];
	int ret;

	if (!norm_id(norm, id)) {
		snprintf(err, err_len, "no VM '%.64s'", id);
		return -ENOENT;
	}
	pthread_mutex_lock(&ctl->lock);
	if (route_vm_get(current(ctl)->routes, &old, norm, strlen(norm))) {
		ret = change_locked(ctl, norm, NULL, err, err_len);
	} else {
		snprintf(err, err_len, "no VM '%s'", norm);
		ret = -ENOENT;
	}
	pthread_mutex_unlock(&ctl->lock);
	if (!ret)
		log_info("vm_delete", "vm=%s", norm);
	return ret;
}

int control_vm_get(struct control *ctl, struct in6_addr *out, const char *id)
{
	bool found;

	pthread_mutex_lock(&ctl->lock);
	found = route_vm_get(current(ctl)->routes, out, id, strlen(id));
	pthread_mutex_unlock(&ctl->lock);
	return found ? 0 : -ENOENT;
}

void control_vm_foreach(struct control *ctl,
			bool (*fn)(void *arg, const char *id,
				   const struct in6_addr *addr),
			void *arg)
{
	/* The lock keeps the snapshot from being reclaimed meanwhile. */
	pthread_mutex_lock(&ctl->lock);
	route_vm_foreach(current(ctl)->routes, fn, arg);
	pthread_mutex_unlock(&ctl->lock);
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

static void sum(uint64_t *out, const metric_t *m, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		out[i] += metric_get(&m[i]);
}

static uint32_t live_connections(const struct control *ctl)
{
	uint32_t n = 0;
	unsigned i;

	for (i = 0; i < ctl->shared->nworkers; i++)
		n += atomic_load_explicit(&ctl->shared->workers[i].live,
					  memory_order_relaxed);
	return n;
}

char *control_metrics(struct control *ctl, size_t *out_len)
{
	uint64_t closes[METRIC_CLOSE_REASONS] = {0},
		 rejects[METRIC_REJECT_REASONS] = {0},
		 cerrs[METRIC_CONNECT_ERRORS] = {0}, v[8] = {0};
	uint64_t open;
	const char *name;
	char *buf = NULL;
	size_t i, len = 0;
	FILE *f;

	for (i = 0; i < ctl->shared->nworkers; i++) {
		struct worker *w = &ctl->shared->workers[i];
		const struct metrics *m = &w->metrics;

		sum(closes, m->closes, METRIC_CLOSE_REASONS);
		sum(rejects, m->rejects, METRIC_REJECT_REASONS);
		sum(cerrs, m->connect_errors, METRIC_CONNECT_ERRORS);
		v[0] += metric_get(&m->accepted);
		v[1] += metric_get(&m->bytes_up);
		v[2] += metric_get(&m->bytes_down);
		v[3] += metric_get(&m->handshakes_full);
		v[4] += metric_get(&m->handshakes_resumed);
		v[5] += metric_get(&m->overload_drops);
	}
	/* What the workers hold, as of their last loop (not accepted minus
	 * the ways connections end: not every end is counted as one, e.g. a
	 * per-IP overload). */
	open = live_connections(ctl);

	f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	fprintf(f, "# HELP vmgate_connections_open Client connections open.\n"
		"# TYPE vmgate_connections_open gauge\n"
		"vmgate_connections_open %llu\n", (unsigned long long)open);
	fprintf(f, "# HELP vmgate_connections_accepted_total Client "
		"connections accepted.\n"
		"# TYPE vmgate_connections_accepted_total counter\n"
		"vmgate_connections_accepted_total %llu\n",
		(unsigned long long)v[0]);
	fprintf(f, "# HELP vmgate_connections_closed_total Relayed or "
		"half-made connections ended, by outcome.\n"
		"# TYPE vmgate_connections_closed_total counter\n");
	for (i = 0; (name = metrics_close_name(i)); i++)
		fprintf(f, "vmgate_connections_closed_total{outcome=\"%s\"} "
			"%llu\n", name, (unsigned long long)closes[i]);
	fprintf(f, "# HELP vmgate_rejects_total Connections refused before "
		"the handshake, by reason.\n"
		"# TYPE vmgate_rejects_total counter\n");
	for (i = 0; (name = metrics_reject_name(i)); i++)
		fprintf(f, "vmgate_rejects_total{reason=\"%s\"} %llu\n", name,
			(unsigned long long)rejects[i]);
	fprintf(f, "# HELP vmgate_connect_errors_total Connects to VMs that "
		"failed, by error.\n"
		"# TYPE vmgate_connect_errors_total counter\n");
	for (i = 0; (name = metrics_connect_error_name(i)); i++)
		fprintf(f, "vmgate_connect_errors_total{error=\"%s\"} %llu\n",
			name, (unsigned long long)cerrs[i]);
	fprintf(f, "# HELP vmgate_bytes_total Plaintext bytes relayed.\n"
		"# TYPE vmgate_bytes_total counter\n"
		"vmgate_bytes_total{direction=\"client_to_vm\"} %llu\n"
		"vmgate_bytes_total{direction=\"vm_to_client\"} %llu\n",
		(unsigned long long)v[1], (unsigned long long)v[2]);
	fprintf(f, "# HELP vmgate_handshakes_total TLS handshakes "
		"completed.\n# TYPE vmgate_handshakes_total counter\n"
		"vmgate_handshakes_total{kind=\"full\"} %llu\n"
		"vmgate_handshakes_total{kind=\"resumed\"} %llu\n",
		(unsigned long long)v[3], (unsigned long long)v[4]);
	fprintf(f, "# HELP vmgate_overload_drops_total Connections closed at "
		"once because max_connections was reached.\n"
		"# TYPE vmgate_overload_drops_total counter\n"
		"vmgate_overload_drops_total %llu\n", (unsigned long long)v[5]);
	pthread_mutex_lock(&ctl->lock);
	fprintf(f, "# HELP vmgate_reloads_total Configuration reloads.\n"
		"# TYPE vmgate_reloads_total counter\n"
		"vmgate_reloads_total{result=\"ok\"} %llu\n"
		"vmgate_reloads_total{result=\"failed\"} %llu\n",
		(unsigned long long)ctl->reloads_ok,
		(unsigned long long)ctl->reloads_failed);
	fprintf(f, "# HELP vmgate_vms VMs routed.\n# TYPE vmgate_vms gauge\n"
		"vmgate_vms %zu\n", route_vm_count(current(ctl)->routes));
	pthread_mutex_unlock(&ctl->lock);
	if (fclose(f)) {
		free(buf);
		return NULL;
	}
	*out_len = len;
	return buf;
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
	if (shared->cfg->admin.enabled)
		ctl->state_file = shared->cfg->admin.state_file;
	ret = load_state(ctl, err, err_len);
	if (ret)
		goto err;
	ctl->base = base_ref_new(route_table_new(shared->cfg));
	if (!ctl->base || !ctl->base->t) {
		ret = -ENOMEM;
		goto err;
	}
	pthread_mutex_lock(&ctl->lock);
	ret = republish_locked(ctl);
	pthread_mutex_unlock(&ctl->lock);
	if (ret)
		goto err;
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

void control_free(struct control *ctl)
{
	size_t i;

	if (!ctl)
		return;
	for (i = 0; i < ctl->retired_len; i++)
		snap_free(ctl->retired[i]);
	snap_free(atomic_exchange(&ctl->shared->snap, NULL));
	free(ctl->retired);
	base_ref_put(ctl->base);
	tls_ref_put(ctl->tls);
	for (i = 0; i < ctl->ov_len; i++)
		free(ctl->ov[i].id);
	free(ctl->ov);
	if (ctl->cfg) {
		config_free(ctl->cfg);
		free(ctl->cfg);
	}
	for (i = 0; i < ctl->watches_len; i++) {
		size_t j;

		for (j = 0; j < ctl->watches[i].names_len; j++)
			free(ctl->watches[i].names[j]);
		free(ctl->watches[i].dir);
	}
	if (ctl->ifd >= 0)
		close(ctl->ifd);
	pthread_mutex_destroy(&ctl->lock);
	free(ctl);
}

/* Watches: the directory of each file a reload reads, so that a file
 * replaced by rename (as editors and deploy tools do) is seen too. */
static void watch_file(struct control *ctl, const char *path)
{
	char *dcopy = strdup(path), *bcopy = strdup(path);
	const char *dir, *base;
	struct watch *w = NULL;
	size_t i;

	if (!dcopy || !bcopy)
		goto out;
	dir = dirname(dcopy);
	base = basename(bcopy);
	for (i = 0; i < ctl->watches_len; i++)
		if (!strcmp(ctl->watches[i].dir, dir))
			w = &ctl->watches[i];
	if (!w) {
		if (ctl->watches_len == WATCH_MAX)
			goto out;
		w = &ctl->watches[ctl->watches_len];
		w->wd = inotify_add_watch(ctl->ifd, dir,
					  IN_CLOSE_WRITE | IN_MOVED_TO);
		if (w->wd < 0) {
			log_warn("watch", "dir=%s error=\"%s\": changes there "
				 "need SIGHUP", dir, strerror(errno));
			goto out;
		}
		w->dir = strdup(dir);
		if (!w->dir)
			goto out;
		w->names_len = 0;
		ctl->watches_len++;
	}
	for (i = 0; i < w->names_len; i++)
		if (!strcmp(w->names[i], base))
			goto out;
	if (w->names_len < WATCH_MAX && (w->names[w->names_len] = strdup(base)))
		w->names_len++;
out:
	free(dcopy);
	free(bcopy);
}

static void rewatch_locked(struct control *ctl)
{
	const struct config *cfg = file_cfg(ctl);
	size_t i, j;

	if (ctl->ifd < 0)
		return;
	for (i = 0; i < ctl->watches_len; i++) {
		inotify_rm_watch(ctl->ifd, ctl->watches[i].wd);
		for (j = 0; j < ctl->watches[i].names_len; j++)
			free(ctl->watches[i].names[j]);
		free(ctl->watches[i].dir);
	}
	ctl->watches_len = 0;
	watch_file(ctl, ctl->path);
	for (i = 0; i < cfg->certs_len; i++) {
		watch_file(ctl, cfg->certs[i].cert_path);
		watch_file(ctl, cfg->certs[i].key_path);
		if (cfg->certs[i].ocsp_path)
			watch_file(ctl, cfg->certs[i].ocsp_path);
	}
}

/* Does this batch of inotify events name a watched file? */
static bool events_match(struct control *ctl, const uint8_t *buf, size_t len)
{
	size_t off = 0, i, j;
	bool hit = false;

	pthread_mutex_lock(&ctl->lock);
	while (off + sizeof(struct inotify_event) <= len) {
		const struct inotify_event *ev =
			(const struct inotify_event *)(buf + off);

		off += sizeof(*ev) + ev->len;
		if (!ev->len || off > len)
			continue;
		for (i = 0; i < ctl->watches_len; i++) {
			if (ctl->watches[i].wd != ev->wd)
				continue;
			for (j = 0; j < ctl->watches[i].names_len; j++)
				if (!strcmp(ctl->watches[i].names[j], ev->name))
					hit = true;
		}
	}
	pthread_mutex_unlock(&ctl->lock);
	return hit;
}

enum { CTL_SIGNAL = 1, CTL_INOTIFY = 2 };

static void post_read(struct io_uring *ring, int fd, void *buf, size_t len,
		      uint64_t ud)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	io_uring_prep_read(sqe, fd, buf, (unsigned)len, 0);
	io_uring_sqe_set_data64(sqe, ud);
}

/* SIGTERM: stop accepting and give established connections up to
 * limits.drain_timeout_ms to finish. Returns true when it is time to
 * stop: nothing left, the deadline passed, or a second signal. */
static bool drained(struct control *ctl, uint64_t deadline)
{
	uint32_t live = live_connections(ctl);

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
	int term = 0;
	_Alignas(struct inotify_event) uint8_t ibuf[4096];
	struct signalfd_siginfo si;
	struct io_uring ring;
	int sfd, sig = 0, ret;

	sfd = signalfd(-1, sigs, SFD_CLOEXEC);
	if (sfd < 0)
		return -errno;
	ret = io_uring_queue_init(16, &ring, 0);
	if (ret) {
		close(sfd);
		return ret;
	}
	ctl->ifd = inotify_init1(IN_CLOEXEC);
	if (ctl->ifd < 0)
		log_warn("watch", "inotify: %s: file changes need SIGHUP",
			 strerror(errno));
	pthread_mutex_lock(&ctl->lock);
	rewatch_locked(ctl);
	pthread_mutex_unlock(&ctl->lock);

	post_read(&ring, sfd, &si, sizeof(si), CTL_SIGNAL);
	if (ctl->ifd >= 0)
		post_read(&ring, ctl->ifd, ibuf, sizeof(ibuf), CTL_INOTIFY);
	while (!sig) {
		struct io_uring_cqe *cqe;
		char err[2048];

		ret = io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &tick,
						       NULL);
		if (ret == 0 || ret == -ETIME || ret == -EINTR) {
			unsigned head, n = 0;
			bool reload = false;

			io_uring_for_each_cqe(&ring, head, cqe) {
				uint64_t ud = io_uring_cqe_get_data64(cqe);

				n++;
				if (ud == CTL_SIGNAL && cqe->res == sizeof(si)) {
					if (si.ssi_signo == SIGHUP) {
						control_reload(ctl, "SIGHUP", err,
							       sizeof(err));
					} else if (si.ssi_signo == SIGTERM &&
						   !term) {
						term = SIGTERM;
						term_ms = timer_now_ms();
						atomic_store(&ctl->shared->draining,
							     true);
						wake_workers(ctl, &ring);
						log_info("shutdown",
							 "signal=SIGTERM "
							 "draining=%u "
							 "timeout_ms=%u",
							 live_connections(ctl),
							 ctl->shared->cfg->limits
								 .drain_timeout_ms);
					} else {
						sig = (int)si.ssi_signo;
					}
					post_read(&ring, sfd, &si, sizeof(si),
						  CTL_SIGNAL);
				} else if (ud == CTL_INOTIFY && cqe->res > 0) {
					reload |= events_match(ctl, ibuf,
							       (size_t)cqe->res);
					post_read(&ring, ctl->ifd, ibuf,
						  sizeof(ibuf), CTL_INOTIFY);
				}
			}
			io_uring_cq_advance(&ring, n);
			if (reload)
				control_reload(ctl, "file", err, sizeof(err));
		}
		pthread_mutex_lock(&ctl->lock);
		reclaim_locked(ctl);
		pthread_mutex_unlock(&ctl->lock);
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
	return sig;
}
