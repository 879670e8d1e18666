/* ctl/fleet.c: see fleet.h.
 *
 * State under the control lock: |map|, the VMs etcd holds (id -> address
 * and ports, a hash table), the revision applied, and |ch|, the changes applied since
 * the fleet table (ctl->fbase: the file's VMs with the map's over them)
 * was last rebuilt. A snapshot is ctl->fbase derived with |ch|, so a batch
 * costs O(changes since the rebuild); once those pass a fraction of the
 * table, it is rebuilt (O(VMs)) and |ch| emptied.
 *
 * The thread: full read when needed, then one watch; events are parsed as
 * their lines arrive and applied in batches; registration and the
 * snapshot file are kept up from the same loop.
 */
#include "ctl/fleet.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/timer.h"
#include "ctl/config.h"
#include "ctl/control.h"
#include "ctl/control_int.h"
#include "ctl/etcd.h"
#include "ctl/fleet_parse.h"
#include "route/route.h"
#include "tls/ticket.h"

#define PAGE_LIMIT 10000
#define BATCH_MS 5             /* events wait at most this for a swap */
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 2000
#define LEASE_TTL_S 10
#define KEEPALIVE_MS 3000
#define KEEP_TICK_MS 100       /* the keeper looks at its clocks */
#define SNAPSHOT_EVERY_MS 1000
#define DOWN_LOG_EVERY_MS 30000
#define PUT_RETRIES 5

/* The map: ids to addresses and ports */

struct fent {
	struct fent *next;
	struct in6_addr addr;
	struct config_vm_ports *ports; /* owned; NULL: every port */
	char id[ROUTE_VM_ID_MAX + 1];
};

/* A copy of |p| in |*out| (NULL stays NULL); false when out of memory. */
static bool ports_dup(struct config_vm_ports **out,
		      const struct config_vm_ports *p)
{
	size_t size;

	*out = NULL;
	if (!p)
		return true;
	size = sizeof(*p) + p->len * sizeof(p->r[0]);
	*out = malloc(size);
	if (!*out)
		return false;
	memcpy(*out, p, size);
	return true;
}

/* |p| as JSON, [3000,"8000-8100"]: etcd's value and the snapshot file
 * write it so. */
static void ports_print(FILE *out, const struct config_vm_ports *p)
{
	size_t i;

	fputc('[', out);
	for (i = 0; i < p->len; i++) {
		if (p->r[i].from == p->r[i].to)
			fprintf(out, "%s%u", i ? "," : "", p->r[i].from);
		else
			fprintf(out, "%s\"%u-%u\"", i ? "," : "",
				p->r[i].from, p->r[i].to);
	}
	fputc(']', out);
}

struct fmap {
	struct fent **b;
	size_t nb, n;
};

static size_t fhash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ULL;
	return (size_t)h;
}

static struct fent **fmap_slot(struct fmap *m, const char *id)
{
	struct fent **p;

	if (!m->nb)
		return NULL;
	for (p = &m->b[fhash(id) & (m->nb - 1)]; *p; p = &(*p)->next)
		if (!strcmp((*p)->id, id))
			return p;
	return p;
}

static struct fent *fmap_get(struct fmap *m, const char *id)
{
	struct fent **p = fmap_slot(m, id);

	return p ? *p : NULL;
}

static bool fmap_grow(struct fmap *m)
{
	size_t nb = m->nb ? m->nb * 2 : 1024, i;
	struct fent **b = calloc(nb, sizeof(*b));

	if (!b)
		return false;
	for (i = 0; i < m->nb; i++) {
		struct fent *e = m->b[i], *next;

		for (; e; e = next) {
			size_t k = fhash(e->id) & (nb - 1);

			next = e->next;
			e->next = b[k];
			b[k] = e;
		}
	}
	free(m->b);
	m->b = b;
	m->nb = nb;
	return true;
}

/* Sets |id| to |addr| and |ports|, which it takes (freed on failure). */
static bool fmap_set(struct fmap *m, const char *id,
		     const struct in6_addr *addr, struct config_vm_ports *ports)
{
	struct fent **p, *e;

	if (m->n >= m->nb && !fmap_grow(m)) {
		free(ports);
		return false;
	}
	p = fmap_slot(m, id);
	if (*p) {
		(*p)->addr = *addr;
		free((*p)->ports);
		(*p)->ports = ports;
		return true;
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		free(ports);
		return false;
	}
	strcpy(e->id, id);
	e->addr = *addr;
	e->ports = ports;
	*p = e;
	m->n++;
	return true;
}

static bool fmap_del(struct fmap *m, const char *id)
{
	struct fent **p = fmap_slot(m, id), *e;

	if (!p || !*p)
		return false;
	e = *p;
	*p = e->next;
	free(e->ports);
	free(e);
	m->n--;
	return true;
}

static void fmap_free(struct fmap *m)
{
	size_t i;

	for (i = 0; i < m->nb; i++) {
		struct fent *e = m->b[i], *next;

		for (; e; e = next) {
			next = e->next;
			free(e->ports);
			free(e);
		}
	}
	free(m->b);
	memset(m, 0, sizeof(*m));
}

/* The module */

/* Its own copy of the ports: a later change of the same VM frees the
 * map's while this one still waits for the next derive. */
struct fchange {
	char id[ROUTE_VM_ID_MAX + 1];
	struct in6_addr addr;
	struct config_vm_ports *ports; /* owned; NULL: every port */
	bool removed;
};

/* An event parsed on arrival, waiting for its batch. */
struct pend {
	char id[ROUTE_VM_ID_MAX + 1];
	struct in6_addr addr;
	struct config_vm_ports *ports; /* owned until applied */
	bool removed;
};

enum fleet_state {
	FLEET_STARTING,
	FLEET_READING,
	FLEET_WATCHING,
	FLEET_DOWN,
};

static const char *const state_names[] = {
	"starting", "reading", "watching", "down",
};

struct fleet {
	struct control *ctl;
	const struct config_fleet *cfg;
	struct etcd etcd;
	char vms_dir[FLEET_KEY_MAX];  /* {prefix}vms/ */
	char apps_dir[FLEET_KEY_MAX]; /* {prefix}appliances/ */
	char app_key[FLEET_KEY_MAX];

	/* Under ctl->lock */
	struct fmap map;
	struct fchange *ch;
	size_t ch_len, ch_cap;
	int64_t revision;     /* highest seen in events or progress */
	int64_t vms_revision; /* of the last VM change applied */
	int64_t snap_revision; /* in the snapshot file */
	int64_t snap_vms_revision;
	enum fleet_state state;
	uint64_t skipped, full_reads, watch_restarts, batches, events,
		 watchdog_fires, compactions, fragments;
	char last_error[256];
	pthread_cond_t applied; /* revision moved */

	/* The thread's own */
	pthread_t thread;
	bool started;
	atomic_bool stop;
	bool need_full;
	struct pend *pend;
	size_t pend_len, pend_cap;
	int64_t pend_rev;
	uint64_t pend_since_ms;
	bool compacted, watch_failed;
	/* The last watch message was a fragment: what is pending is part of
	 * a response whose rest is still to come, and is not applied (nor
	 * the revision moved) before it is whole. */
	bool fragmented;
	unsigned fails;
	uint64_t down_log_ms;
	uint64_t snap_ms;
	struct snap_job *snap_job; /* a write running, or NULL */
	uint64_t snap_every_ms;
	pthread_t snap_thread;

	/* The keeper thread's own (keep_main): the registration and the
	 * session-ticket keys, whose etcd calls (each may take timeout_ms)
	 * never hold up the watch. */
	pthread_t keeper;
	bool keeper_started;
	int64_t lease;
	uint64_t keepalive_ms;
	int64_t reg_vms_revision;
	uint64_t reg_put_ms;
	uint64_t stek_ms;
	uint64_t stek_warn_ms; /* a key held back was logged */

	/* Session-ticket keys: what was installed, for /fleet (under
	 * ctl->lock) */
	size_t stek_len;
	bool stek_rotator;
	uint64_t stek_minted;
};

/* last_error = |msg|, cut between UTF-8 characters: the admin API
 * answers with it, and jansson refuses a broken character. Under the
 * lock. */
static void keep_error(struct fleet *f, const char *msg)
{
	size_t n = fleet_text_fit(msg, strlen(msg), sizeof(f->last_error));

	memcpy(f->last_error, msg, n);
	f->last_error[n] = '\0';
}

static void set_error(struct fleet *f, const char *msg)
{
	pthread_mutex_lock(&f->ctl->lock);
	keep_error(f, msg);
	pthread_mutex_unlock(&f->ctl->lock);
}

/* The fleet table */

static void changes_clear(struct fleet *f)
{
	size_t i;

	for (i = 0; i < f->ch_len; i++)
		free(f->ch[i].ports);
	f->ch_len = 0;
}

struct route_table *fleet_table_for_locked(struct fleet *f,
					    const struct config *fc)
{
	struct config tmp = *fc;
	struct config_vm *vms;
	struct route_table *t;
	size_t i, k = 0;

	vms = calloc(fc->vms_len + f->map.n + 1, sizeof(*vms));
	if (!vms)
		return NULL;
	for (i = 0; i < fc->vms_len; i++)
		if (!fmap_get(&f->map, fc->vms[i].id))
			vms[k++] = fc->vms[i];
	for (i = 0; i < f->map.nb; i++) {
		struct fent *e;

		for (e = f->map.b[i]; e; e = e->next) {
			vms[k].id = e->id;
			vms[k].ports = e->ports;
			vms[k++].addr = e->addr;
		}
	}
	tmp.vms = vms;
	tmp.vms_len = k;
	t = route_table_new(&tmp);
	free(vms);
	return t;
}

void fleet_changes_clear_locked(struct fleet *f)
{
	changes_clear(f);
}

int fleet_rebuild_locked(struct fleet *f)
{
	struct route_table *t =
		fleet_table_for_locked(f, file_cfg(f->ctl));

	if (!t)
		return -ENOMEM;
	changes_clear(f);
	return control_set_fbase_locked(f->ctl, t);
}

size_t fleet_changes_len_locked(const struct fleet *f)
{
	return f->ch_len;
}

struct route_table *fleet_derive_locked(struct fleet *f,
					struct route_table *base)
{
	struct route_vm_change *c = calloc(f->ch_len, sizeof(*c));
	struct route_table *t;
	size_t i;

	if (!c)
		return NULL;
	for (i = 0; i < f->ch_len; i++) {
		c[i].id = f->ch[i].id;
		c[i].addr = f->ch[i].addr;
		c[i].ports = f->ch[i].ports;
		c[i].removed = f->ch[i].removed;
	}
	t = route_table_derive(base, c, f->ch_len);
	free(c);
	return t;
}

/* Applies one change to the map (taking |p|'s ports) and records it for
 * the next snapshot: a VM deleted from etcd falls back to the file's
 * address and ports if it has them. */
static bool change_locked(struct fleet *f, struct pend *p)
{
	const struct config_vm_ports *file_ports = NULL;
	struct config_vm_ports *copy;
	struct fchange *c;

	if (!ports_dup(&copy, p->ports)) {
		free(p->ports);
		p->ports = NULL;
		return false;
	}
	if (p->removed) {
		if (!fmap_del(&f->map, p->id))
			return true;
	} else if (!fmap_set(&f->map, p->id, &p->addr, p->ports)) {
		p->ports = NULL;
		free(copy);
		return false;
	}
	p->ports = NULL;
	if (f->ch_len == f->ch_cap) {
		size_t cap = f->ch_cap ? 2 * f->ch_cap : 256;
		struct fchange *n = realloc(f->ch, cap * sizeof(*n));

		if (!n) {
			free(copy);
			return false;
		}
		f->ch = n;
		f->ch_cap = cap;
	}
	c = &f->ch[f->ch_len++];
	memset(c, 0, sizeof(*c));
	strcpy(c->id, p->id);
	c->addr = p->addr;
	c->ports = copy;
	c->removed = p->removed;
	if (p->removed &&
	    route_vm_get(f->ctl->base->t, &c->addr, p->id, strlen(p->id))) {
		route_vm_ports_get(f->ctl->base->t, &file_ports, p->id,
				   strlen(p->id));
		/* Out of memory: left removed, refused rather than open. */
		if (!ports_dup(&c->ports, file_ports))
			return false;
		c->removed = false;
	}
	return true;
}

/* One swap for a whole batch; a rebuild when the changes have grown past
 * an eighth of the table (or 4096), so a derive stays cheap. */
static int publish_batch_locked(struct fleet *f)
{
	size_t limit = f->map.n / 8 > 4096 ? f->map.n / 8 : 4096;

	f->batches++;
	if (f->ch_len > limit)
		return fleet_rebuild_locked(f);
	return control_republish_locked(f->ctl);
}

/* Snapshot file: {"version":1,"revision":N,"vms":{"id":"addr",...}}; a
 * VM with ports is "id":{"address":"addr","ports":[...]} instead, etcd's
 * value. */

/* Snapshot writes run on a thread of their own, from a flat copy of the
 * map: the fleet thread goes on applying events meanwhile (a million VMs
 * take a few hundred milliseconds to write), and the control lock is not
 * held for any of it. */
struct snap_ent {
	char id[ROUTE_VM_ID_MAX + 1];
	struct in6_addr addr;
	struct config_vm_ports *ports; /* owned copy */
};

struct snap_job {
	struct snap_ent *e;
	size_t n;
	int64_t revision, vms_revision;
	const char *path;
	int ret;
	uint64_t ms; /* how long the write took */
	atomic_bool done;
};

static void snap_job_free(struct snap_job *j)
{
	size_t i;

	for (i = 0; i < j->n; i++)
		free(j->e[i].ports);
	free(j->e);
	free(j);
}

/* The fleet thread is the only one that changes the map, so it reads it
 * here without the lock; |revision| is the one those VMs are at. */
static struct snap_job *snap_job_new(struct fleet *f)
{
	struct snap_job *j = calloc(1, sizeof(*j));
	size_t i, k = 0;

	if (!j)
		return NULL;
	j->e = malloc((f->map.n + 1) * sizeof(*j->e));
	if (!j->e) {
		free(j);
		return NULL;
	}
	for (i = 0; i < f->map.nb; i++) {
		struct fent *e;

		for (e = f->map.b[i]; e; e = e->next) {
			memcpy(j->e[k].id, e->id, sizeof(e->id));
			j->e[k].addr = e->addr;
			if (!ports_dup(&j->e[k++].ports, e->ports)) {
				j->n = k;
				snap_job_free(j);
				return NULL;
			}
		}
	}
	j->n = k;
	j->revision = f->revision;
	j->vms_revision = f->vms_revision;
	j->path = f->cfg->snapshot_file;
	return j;
}

/* Written whole to a temporary file, fsynced and renamed, then the
 * directory fsynced: a crash leaves the old file or the new one, never
 * half of a batch, and the revision inside is the one its VMs are at.
 * One VM a line (snapshot_load reads that shape without a JSON parser);
 * ids are DNS labels and addresses inet_ntop's: no JSON escaping. */
static int snap_write(struct snap_job *j)
{
	char tmp[4096], addr[INET6_ADDRSTRLEN];
	size_t i;
	FILE *out;
	int fd, ret = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp", j->path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || !(out = fdopen(fd, "w"))) {
		ret = -errno;
		if (fd >= 0)
			close(fd);
		goto err;
	}
	fprintf(out, "{\"version\":1,\"revision\":%lld,\"vms\":{",
		(long long)j->revision);
	for (i = 0; i < j->n; i++) {
		inet_ntop(AF_INET6, &j->e[i].addr, addr, sizeof(addr));
		if (!j->e[i].ports) {
			fprintf(out, "%s\n\"%s\":\"%s\"", i ? "," : "",
				j->e[i].id, addr);
			continue;
		}
		fprintf(out, "%s\n\"%s\":{\"address\":\"%s\",\"ports\":",
			i ? "," : "", j->e[i].id, addr);
		ports_print(out, j->e[i].ports);
		fputc('}', out);
	}
	fprintf(out, "\n}}\n");
	if (fflush(out) || fsync(fd)) {
		ret = -errno;
		fclose(out);
		goto err_unlink;
	}
	if (fclose(out)) {
		ret = -errno;
		goto err_unlink;
	}
	if (rename(tmp, j->path)) {
		ret = -errno;
		goto err_unlink;
	}
	control_fsync_dir(j->path);
	return 0;
err_unlink:
	unlink(tmp);
err:
	log_error("fleet_snapshot", "file=%s error=\"%s\"", j->path,
		  strerror(-ret));
	return ret;
}

static void *snap_main(void *arg)
{
	struct snap_job *j = arg;
	uint64_t t0 = timer_now_ms();

	j->ret = snap_write(j);
	j->ms = timer_now_ms() - t0;
	atomic_store(&j->done, true);
	return NULL;
}

/* Collects a finished write (|wait|: waits for it). Fleet thread. */
static void snap_reap(struct fleet *f, bool wait)
{
	struct snap_job *j = f->snap_job;

	if (!j || (!wait && !atomic_load(&j->done)))
		return;
	pthread_join(f->snap_thread, NULL);
	if (!j->ret) {
		pthread_mutex_lock(&f->ctl->lock);
		f->snap_revision = j->revision;
		f->snap_vms_revision = j->vms_revision;
		pthread_mutex_unlock(&f->ctl->lock);
	}
	/* A big table takes long to write: spend at most a tenth of the
	 * time writing it while VMs keep changing. */
	f->snap_every_ms = j->ms * 10 > SNAPSHOT_EVERY_MS ? j->ms * 10 :
							    SNAPSHOT_EVERY_MS;
	snap_job_free(j);
	f->snap_job = NULL;
}

/* Starts a write of the map as it is now; one at a time (a later tick
 * writes what this one missed). */
static void snapshot_kick(struct fleet *f)
{
	struct snap_job *j;

	snap_reap(f, false);
	if (f->snap_job)
		return;
	f->snap_ms = timer_now_ms();
	j = snap_job_new(f);
	if (!j) {
		log_error("fleet_snapshot", "out of memory: not written");
		return;
	}
	if (pthread_create(&f->snap_thread, NULL, snap_main, j)) {
		/* No thread: write it here. */
		snap_main(j);
		if (!j->ret) {
			pthread_mutex_lock(&f->ctl->lock);
			f->snap_revision = j->revision;
			f->snap_vms_revision = j->vms_revision;
			pthread_mutex_unlock(&f->ctl->lock);
		}
		snap_job_free(j);
		return;
	}
	f->snap_job = j;
}

/* snapshot_load's fast path: the shape snap_write makes, read line by
 * line (a million VMs in a fraction of the second jansson would take).
 * Anything else (an edited file, another writer) returns false and goes
 * to jansson. Each entry is checked as one from etcd would be. */
static bool snapshot_parse_fast(struct fmap *m, int64_t *out_rev,
				size_t *bad, const char *buf, size_t len)
{
	static const char head[] = "{\"version\":1,\"revision\":";
	const char *p = buf, *end = buf + len, *nl;
	long long rev;
	char *e;

	if (len < sizeof(head) || memcmp(p, head, sizeof(head) - 1))
		return false;
	p += sizeof(head) - 1;
	if (*p < '1' || *p > '9')
		return false;
	errno = 0;
	rev = strtoll(p, &e, 10);
	if (errno || rev <= 0 || (size_t)(end - e) < 9 ||
	    memcmp(e, ",\"vms\":{\n", 9))
		return false;
	for (p = e + 9;; p = nl + 1) {
		char norm[ROUTE_VM_ID_MAX + 1];
		struct config_vm_ports *ports;
		const char *lend, *id_end;
		struct in6_addr a;
		size_t n;
		bool ok;

		nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			return false;
		if (nl - p == 2 && !memcmp(p, "}}", 2))
			break;
		lend = nl;
		if (lend > p && lend[-1] == ',')
			lend--;
		/* "ID":"ADDR" or "ID":{etcd's value, with ports} */
		if (lend - p < 7 || *p != '"')
			return false;
		id_end = memchr(p + 1, '"', (size_t)(lend - p - 1));
		if (!id_end || lend - id_end < 4 || id_end[1] != ':')
			return false;
		ports = NULL;
		if (!memcmp(id_end, "\":{", 3) && lend[-1] == '}') {
			ok = fleet_vm_parse(&a, &ports,
					    (const uint8_t *)id_end + 2,
					    (size_t)(lend - id_end - 2)) ==
			     FLEET_VM_OK;
		} else if (!memcmp(id_end, "\":\"", 3) && lend[-1] == '"') {
			ok = route_parse_vm_addr(&a, id_end + 3,
						 (size_t)(lend - 1 -
							  (id_end + 3))) ==
			     ROUTE_ADDR_OK;
		} else {
			return false;
		}
		if (!ok ||
		    !route_vm_id_norm(norm, &n, p + 1, (size_t)(id_end - p - 1))) {
			free(ports);
			(*bad)++;
			continue;
		}
		if (!fmap_set(m, norm, &a, ports))
			return false;
	}
	if (nl + 1 != end)
		return false;
	*out_rev = rev;
	return true;
}

static char *read_file(const char *path, size_t *out_len)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) ||
	    !(buf = malloc((size_t)st.st_size + 1)))
		goto err;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n <= 0)
			goto err;
		got += (size_t)n;
	}
	buf[got] = '\0';
	close(fd);
	*out_len = got;
	return buf;
err:
	free(buf);
	close(fd);
	return NULL;
}

static void snapshot_load(struct fleet *f)
{
	const char *path = f->cfg->snapshot_file;
	json_error_t jerr;
	json_t *root, *vms, *v, *rev;
	const char *id;
	size_t bad = 0, len;
	int64_t r;
	char *buf;

	if (access(path, F_OK) != 0)
		return;
	buf = read_file(path, &len);
	if (buf && snapshot_parse_fast(&f->map, &r, &bad, buf, len)) {
		free(buf);
		goto loaded;
	}
	free(buf);
	fmap_free(&f->map);
	bad = 0;
	root = json_load_file(path, 0, &jerr);
	vms = root ? json_object_get(root, "vms") : NULL;
	rev = root ? json_object_get(root, "revision") : NULL;
	if (!json_is_object(vms) || !json_is_integer(rev) ||
	    json_integer_value(rev) <= 0) {
		log_warn("fleet_snapshot", "file=%s error=\"%s\" ignored: "
			 "starting from etcd", path,
			 root ? "not a fleet snapshot" : jerr.text);
		json_decref(root);
		return;
	}
	json_object_foreach(vms, id, v) {
		char norm[ROUTE_VM_ID_MAX + 1];
		struct config_vm_ports *ports = NULL;
		json_t *jaddr = json_is_object(v) ? json_object_get(v, "address")
						  : v;
		json_t *jports = json_is_object(v) ? json_object_get(v, "ports")
						   : NULL;
		struct in6_addr a;
		size_t n;

		if (!json_is_string(jaddr) ||
		    !route_vm_id_norm(norm, &n, id, strlen(id)) ||
		    route_parse_vm_addr(&a, json_string_value(jaddr),
					json_string_length(jaddr)) !=
			    ROUTE_ADDR_OK ||
		    (jports && !json_is_null(jports) &&
		     !fleet_parse_ports(&ports, &n, jports)) ||
		    !fmap_set(&f->map, norm, &a, ports))
			bad++;
	}
	r = json_integer_value(rev);
	json_decref(root);
loaded:
	f->revision = f->vms_revision = f->snap_revision =
		f->snap_vms_revision = r;
	log_info("fleet_snapshot", "file=%s loaded vms=%zu revision=%lld "
		 "skipped=%zu", path, f->map.n, (long long)f->revision, bad);
}

/* Values from etcd */

/* Parses one key-value into |p|; a bad one is logged (once per event,
 * naming the key) and counted. A key that is no VM's: false. A VM's key
 * with a bad value: the VM's removal, so that a watch leaves the table
 * as a full read of the same store would (without the VM: the file's
 * address, if it has one), whatever the VM's value was before. */
static bool kv_to_pend(struct fleet *f, struct pend *p,
		       const struct fleet_kv *kv)
{
	enum fleet_vm_status st = FLEET_VM_OK;
	char key[LOG_ESCAPED_MAX(128)];

	memset(p, 0, sizeof(*p));
	if (kv->key_truncated ||
	    !fleet_vm_key(p->id, kv->key, kv->key_len, f->vms_dir))
		st = FLEET_VM_BAD_ID;
	else if (kv->deleted)
		p->removed = true;
	else
		st = fleet_vm_parse(&p->addr, &p->ports, kv->value,
				    kv->value_len);
	if (st == FLEET_VM_OK)
		return true;
	/* Anything deeper than {prefix}vms/{id} is not a VM: not counted. */
	if (st == FLEET_VM_BAD_ID && kv->key_len > strlen(f->vms_dir) &&
	    memchr(kv->key + strlen(f->vms_dir), '/',
		   kv->key_len - strlen(f->vms_dir)))
		return false;
	if (st == FLEET_VM_BAD_ID && kv->deleted)
		return false;
	log_escape(key, sizeof(key), kv->key,
		   kv->key_len > 128 ? 128 : kv->key_len);
	log_warn("fleet_bad_value", "key=\"%s%s\" reason=%s revision=%lld "
		 "skipped", key, kv->key_len > 128 ? "..." : "",
		 fleet_vm_status_str(st), (long long)kv->mod_revision);
	pthread_mutex_lock(&f->ctl->lock);
	f->skipped++;
	pthread_mutex_unlock(&f->ctl->lock);
	if (st == FLEET_VM_BAD_ID)
		return false;
	p->removed = true;
	return true;
}

/* Backoff and the down state */

static void mark_down(struct fleet *f, const char *why)
{
	uint64_t now = timer_now_ms();

	pthread_mutex_lock(&f->ctl->lock);
	f->state = FLEET_DOWN;
	keep_error(f, why);
	pthread_mutex_unlock(&f->ctl->lock);
	if (f->fails == 0) {
		log_warn("fleet_down", "error=\"%s\" routing with the last "
			 "table revision=%lld", why, (long long)f->revision);
		f->down_log_ms = now;
	} else if (now - f->down_log_ms >= DOWN_LOG_EVERY_MS) {
		log_warn("fleet_down", "error=\"%s\" retries=%u still routing "
			 "with revision=%lld", why, f->fails,
			 (long long)f->revision);
		f->down_log_ms = now;
	} else {
		log_debug("fleet_down", "error=\"%s\" retries=%u", why,
			  f->fails);
	}
	f->fails++;
}

static void mark_up(struct fleet *f)
{
	if (f->fails)
		log_info("fleet_up", "retries=%u revision=%lld", f->fails,
			 (long long)f->revision);
	f->fails = 0;
}

static void nap(struct fleet *f, unsigned ms)
{
	uint64_t end = timer_now_ms() + ms;

	while (!atomic_load(&f->stop) && timer_now_ms() < end) {
		struct timespec ts = { 0, 10 * 1000000 };

		nanosleep(&ts, NULL);
	}
}

/* Capped exponential, with half of it random so that a fleet restarted
 * together does not retry together. */
static void backoff(struct fleet *f)
{
	unsigned shift = f->fails > 6 ? 6 : f->fails, ms, r = 0;

	ms = BACKOFF_MIN_MS << shift;
	if (ms > BACKOFF_MAX_MS)
		ms = BACKOFF_MAX_MS;
	if (getrandom(&r, sizeof(r), 0) != sizeof(r))
		r = (unsigned)timer_now_ms();
	nap(f, ms / 2 + r % (ms / 2 + 1));
}

/* Requests */

static bool b64key(char *out, size_t cap, const char *s, size_t len)
{
	return fleet_b64(out, cap, s, len);
}

/* The end of the range of keys starting with |dir|: its last byte + 1. */
static void range_end(char *out, const char *dir)
{
	size_t n = strlen(dir);

	memcpy(out, dir, n + 1);
	out[n - 1]++;
}

/* A full read of {prefix}vms/ at one revision, in pages. */
static int full_read(struct fleet *f)
{
	char key[FLEET_KEY_MAX + 1], end[FLEET_KEY_MAX], bkey[800], bend[800];
	char body[2048], err[300];
	struct fmap m = { 0 };
	int64_t pinned = 0;
	size_t key_len, skipped = 0;
	uint64_t t0 = timer_now_ms();
	int ret, limit = PAGE_LIMIT;

	key_len = strlen(f->vms_dir);
	memcpy(key, f->vms_dir, key_len);
	range_end(end, f->vms_dir);
	b64key(bend, sizeof(bend), end, strlen(end));
	for (;;) {
		struct fleet_range r;
		char *ans;
		size_t ans_len, i;

		if (atomic_load(&f->stop)) {
			ret = -ECANCELED;
			goto out;
		}
		b64key(bkey, sizeof(bkey), key, key_len);
		snprintf(body, sizeof(body), "{\"key\":\"%s\",\"range_end\":"
			 "\"%s\",\"limit\":%d,\"revision\":%lld}", bkey, bend,
			 limit, (long long)pinned);
		ret = etcd_call(&f->etcd, &ans, &ans_len, "kv/range", body,
				err, sizeof(err));
		if (ret == -E2BIG && limit > 1) {
			/* Big values (each up to etcd's request limit, and
			 * skipped here when over FLEET_VALUE_MAX): the same
			 * page in fewer keys, for the rest of this read. */
			limit = limit > 8 ? limit / 8 : 1;
			log_warn("fleet_read", "error=\"%s\" asking for "
				 "pages of %d keys", err, limit);
			continue;
		}
		if (ret == -ECANCELED) {
			/* Not etcd's fault: it is not down. */
			log_info("fleet_read", "error=\"%s\"", err);
			goto out;
		}
		if (ret) {
			mark_down(f, err);
			goto out;
		}
		if (!fleet_parse_range(&r, ans, ans_len)) {
			free(ans);
			mark_down(f, "kv/range: a malformed answer");
			ret = -EPROTO;
			goto out;
		}
		free(ans);
		if (!pinned) {
			/* "reading" once etcd answered: /health's etcd_up
			 * counts it, and a read that waits out timeout_ms on
			 * a mute endpoint is no sign of etcd. */
			pinned = r.revision;
			pthread_mutex_lock(&f->ctl->lock);
			f->state = FLEET_READING;
			pthread_mutex_unlock(&f->ctl->lock);
		}
		for (i = 0; i < r.kvs_len; i++) {
			struct pend p;

			if (!kv_to_pend(f, &p, &r.kvs[i]) || p.removed) {
				skipped++;
				continue;
			}
			if (!fmap_set(&m, p.id, &p.addr, p.ports)) {
				fleet_range_free(&r);
				ret = -ENOMEM;
				goto out;
			}
		}
		if (!r.more || !r.kvs_len) {
			fleet_range_free(&r);
			break;
		}
		/* The next page starts just after the last key, or after
		 * every key that begins as a truncated last key does (all
		 * longer than any VM's). */
		if (!fleet_next_key(key, &key_len, &r.kvs[r.kvs_len - 1])) {
			fleet_range_free(&r);
			ret = -EPROTO;
			goto out;
		}
		fleet_range_free(&r);
	}
	pthread_mutex_lock(&f->ctl->lock);
	fmap_free(&f->map);
	f->map = m;
	memset(&m, 0, sizeof(m));
	f->revision = f->vms_revision = pinned;
	f->full_reads++;
	ret = fleet_rebuild_locked(f);
	pthread_cond_broadcast(&f->applied);
	pthread_mutex_unlock(&f->ctl->lock);
	if (ret) {
		/* The map is in, the table not: read again (need_full
		 * stays). */
		log_error("fleet_read", "cannot build the table: %s; "
			  "re-reading", strerror(-ret));
		goto out;
	}
	snap_reap(f, true);
	snapshot_kick(f);
	log_info("fleet_read", "vms=%zu revision=%lld skipped=%zu ms=%llu",
		 f->map.n, (long long)pinned, skipped,
		 (unsigned long long)(timer_now_ms() - t0));
	f->need_full = false;
	mark_up(f);
out:
	fmap_free(&m);
	return ret;
}

/* The watch */

/* Drops what a watch left unapplied (it restarts from f->revision). */
static void pend_clear(struct fleet *f)
{
	size_t i;

	for (i = 0; i < f->pend_len; i++)
		free(f->pend[i].ports);
	f->pend_len = 0;
}

static void flush_pending(struct fleet *f)
{
	size_t i;

	if (!f->pend_len && f->pend_rev <= f->revision)
		return;
	pthread_mutex_lock(&f->ctl->lock);
	for (i = 0; i < f->pend_len; i++)
		if (!change_locked(f, &f->pend[i])) {
			/* A change lost: the store is read whole again. */
			log_error("fleet_apply", "out of memory; re-reading");
			f->need_full = true;
			f->watch_failed = true;
		}
	f->events += f->pend_len;
	if (f->pend_len) {
		if (!publish_batch_locked(f)) {
			f->vms_revision = f->pend_rev;
		} else {
			/* The table not published (out of memory): read the
			 * store whole again, which builds it anew; the
			 * revision stays, so no write waiting on it is told
			 * it is applied. */
			log_error("fleet_apply", "cannot publish the routes: "
				  "out of memory; re-reading");
			f->need_full = true;
			f->watch_failed = true;
			f->pend_rev = f->revision;
		}
	}
	if (f->pend_rev > f->revision)
		f->revision = f->pend_rev;
	pthread_cond_broadcast(&f->applied);
	pthread_mutex_unlock(&f->ctl->lock);
	f->pend_len = 0;
}

static bool on_line(void *arg, const char *line, size_t len)
{
	struct fleet *f = arg;
	struct fleet_watch_msg m;
	char esc[LOG_ESCAPED_MAX(80)];
	size_t i;

	if (!fleet_parse_watch(&m, line, len)) {
		log_escape(esc, sizeof(esc), line, len > 80 ? 80 : len);
		log_warn("fleet_watch", "malformed line \"%s\"; reconnecting",
			 esc);
		f->watch_failed = true;
		return false;
	}
	switch (m.kind) {
	case FLEET_WATCH_CREATED:
		/* etcd behind our revision: a snapshot from before the cluster
		 * was rebuilt or restored. A watch from the future would wait
		 * for it silently; only a full read can fix that. */
		if (m.revision > 0 && m.revision < f->revision) {
			log_warn("fleet_watch", "store_revision=%lld is behind "
				 "revision=%lld (etcd rebuilt?); re-reading",
				 (long long)m.revision, (long long)f->revision);
			f->compacted = true;
			fleet_watch_msg_free(&m);
			return false;
		}
		pthread_mutex_lock(&f->ctl->lock);
		f->state = FLEET_WATCHING;
		f->last_error[0] = '\0';
		pthread_mutex_unlock(&f->ctl->lock);
		mark_up(f);
		log_info("fleet_watch", "from=%lld store_revision=%lld",
			 (long long)f->revision + 1, (long long)m.revision);
		break;
	case FLEET_WATCH_EVENTS:
		if (m.fragment) {
			pthread_mutex_lock(&f->ctl->lock);
			f->fragments++;
			pthread_mutex_unlock(&f->ctl->lock);
		}
		f->fragmented = m.fragment;
		for (i = 0; i < m.events_len; i++) {
			struct pend p;

			if (m.events[i].mod_revision > f->pend_rev)
				f->pend_rev = m.events[i].mod_revision;
			if (!kv_to_pend(f, &p, &m.events[i]))
				continue;
			if (f->pend_len == f->pend_cap) {
				size_t cap = f->pend_cap ? 2 * f->pend_cap
							 : 256;
				struct pend *n = realloc(f->pend,
							 cap * sizeof(*n));

				if (!n) {
					/* This event is lost (pend_rev is
					 * past it): the store is read whole
					 * again. */
					log_error("fleet_watch", "out of memory; "
						  "re-reading");
					free(p.ports);
					f->need_full = true;
					f->watch_failed = true;
					fleet_watch_msg_free(&m);
					return false;
				}
				f->pend = n;
				f->pend_cap = cap;
			}
			if (!f->pend_len)
				f->pend_since_ms = timer_now_ms();
			f->pend[f->pend_len++] = p;
		}
		if (!f->pend_len)
			f->pend_since_ms = timer_now_ms();
		break;
	case FLEET_WATCH_PROGRESS:
		/* (A split response's last part has events: this one ends
		 * none, but says so all the same.) */
		f->fragmented = m.fragment;
		if (m.fragment)
			break;
		/* Everything up to the header's revision was sent. */
		if (m.revision > f->pend_rev)
			f->pend_rev = m.revision;
		if (!f->pend_len)
			f->pend_since_ms = timer_now_ms();
		break;
	case FLEET_WATCH_COMPACTED:
		log_warn("fleet_compacted", "from=%lld compact_revision=%lld "
			 "re-reading", (long long)f->revision + 1,
			 (long long)m.compact_revision);
		f->compacted = true;
		fleet_watch_msg_free(&m);
		return false;
	case FLEET_WATCH_CANCELED:
	case FLEET_WATCH_ERROR:
		/* A snapshot from before the cluster was rebuilt: its revision
		 * is ahead of etcd's. Only a full read can fix that. */
		if (strstr(m.reason, "future revision")) {
			log_warn("fleet_watch", "from=%lld is ahead of etcd; "
				 "re-reading", (long long)f->revision + 1);
			f->compacted = true;
			fleet_watch_msg_free(&m);
			return false;
		}
		/* A member restarted and forgot our token. */
		if (strstr(m.reason, "auth token"))
			etcd_forget_token(&f->etcd);
		log_escape(esc, sizeof(esc), m.reason, strlen(m.reason));
		log_warn("fleet_watch", "ended reason=\"%s\"", esc);
		f->watch_failed = true;
		set_error(f, m.reason);
		fleet_watch_msg_free(&m);
		return false;
	}
	fleet_watch_msg_free(&m);
	return true;
}

/* The snapshot file also follows the watch: written when the VMs
 * changed, at most once a second (or ten times as long as the last write
 * took), from the watch loop. */
static void snapshot_tick(struct fleet *f)
{
	uint64_t now = timer_now_ms();

	snap_reap(f, false);
	if (now - f->snap_ms >= f->snap_every_ms && !f->snap_job &&
	    f->vms_revision != f->snap_vms_revision)
		snapshot_kick(f);
}


/* One watch stream, until it fails, compacts, or the thread stops. */
static void watch(struct fleet *f)
{
	char bkey[800], bend[800], end[FLEET_KEY_MAX], body[2048], ep[300];
	uint64_t dog_ms = 3ull * f->cfg->progress_ms;
	struct etcd_watch w;
	int ret;

	range_end(end, f->vms_dir);
	b64key(bkey, sizeof(bkey), f->vms_dir, strlen(f->vms_dir));
	b64key(bend, sizeof(bend), end, strlen(end));
	snprintf(body, sizeof(body), "{\"create_request\":{\"key\":\"%s\","
		 "\"range_end\":\"%s\",\"start_revision\":%lld,"
		 "\"progress_notify\":true,\"fragment\":true}}", bkey, bend,
		 (long long)f->revision + 1);
	f->compacted = f->watch_failed = f->fragmented = false;
	pend_clear(f);
	f->pend_rev = f->revision;
	etcd_endpoint(&f->etcd, ep, sizeof(ep));
	ret = etcd_watch_start(&f->etcd, &w, body, on_line, f);
	if (ret == -ECANCELED)
		return;
	if (ret) {
		char why[600];

		snprintf(why, sizeof(why), "watch on %s: cannot start%s%s", ep,
			 w.error[0] ? ": " : "", w.error);
		mark_down(f, why);
		etcd_next_endpoint(&f->etcd);
		return;
	}
	while (!atomic_load(&f->stop)) {
		uint64_t now;

		ret = etcd_watch_step(&w, f->pend_len ? 1 : 50);
		now = timer_now_ms();
		if (f->fragmented)
			; /* the rest of the response first */
		else if (f->pend_len && now - f->pend_since_ms >= BATCH_MS)
			flush_pending(f);
		else if (!f->pend_len && f->pend_rev > f->revision)
			flush_pending(f);
		if (!ret || f->need_full)
			break;
		if (now - w.last_rx_ms > dog_ms) {
			log_warn("fleet_watchdog", "endpoint=%s silent_ms=%llu "
				 "reconnecting", ep,
				 (unsigned long long)(now - w.last_rx_ms));
			pthread_mutex_lock(&f->ctl->lock);
			f->watchdog_fires++;
			pthread_mutex_unlock(&f->ctl->lock);
			f->watch_failed = true;
			break;
		}
		snapshot_tick(f);
	}
	if (f->fragmented) {
		/* Ended inside a split response: what came of it is
		 * dropped, and the next watch gets it whole from
		 * f->revision + 1. */
		pend_clear(f);
		f->pend_rev = f->revision;
		f->fragmented = false;
	}
	flush_pending(f);
	if (f->compacted) {
		pthread_mutex_lock(&f->ctl->lock);
		f->compactions++;
		pthread_mutex_unlock(&f->ctl->lock);
		f->need_full = true;
	} else if (!atomic_load(&f->stop)) {
		char why[600];

		/* curl's own words name a TLS problem (an unknown CA, a
		 * certificate etcd refused); the codes alone do not. */
		snprintf(why, sizeof(why), "watch on %s ended%s%.*s (curl %d, "
			 "HTTP %ld)", ep, w.error[0] ? ": " : "",
			 (int)strcspn(w.error, "\r\n"), w.error, w.result,
			 w.http_status);
		pthread_mutex_lock(&f->ctl->lock);
		f->watch_restarts++;
		pthread_mutex_unlock(&f->ctl->lock);
		mark_down(f, why);
		etcd_next_endpoint(&f->etcd);
	}
	etcd_watch_stop(&w);
}

/* Registration: {prefix}appliances/{id} on a lease kept alive. */

static int put_json(struct fleet *f, const char *key, const char *value,
		    int64_t lease, int64_t *out_rev, char *err, size_t err_len)
{
	char *bk = NULL, *bv = NULL, *body = NULL, *ans = NULL;
	size_t kl = strlen(key), vl = strlen(value), ans_len;
	bool ok;
	int ret = -ENOMEM;

	bk = malloc(kl * 2 + 8);
	bv = malloc(vl * 2 + 8);
	body = malloc(kl * 2 + vl * 2 + 128);
	if (!bk || !bv || !body)
		goto out;
	fleet_b64(bk, kl * 2 + 8, key, kl);
	fleet_b64(bv, vl * 2 + 8, value, vl);
	sprintf(body, "{\"key\":\"%s\",\"value\":\"%s\",\"lease\":%lld}", bk,
		bv, (long long)lease);
	ret = etcd_call(&f->etcd, &ans, &ans_len, "kv/put", body, err,
			err_len);
	if (!ret && out_rev && !fleet_parse_txn(&ok, out_rev, ans, ans_len))
		*out_rev = 0;
out:
	/* The value may be a ticket key (stek_mint): its base64 copies go
	 * as the key itself does. */
	free(ans);
	free(bk);
	if (bv)
		explicit_bzero(bv, vl * 2 + 8);
	if (body)
		explicit_bzero(body, kl * 2 + vl * 2 + 128);
	free(bv);
	free(body);
	return ret;
}

static void register_tick(struct fleet *f)
{
	uint64_t now = timer_now_ms();
	char body[256], err[300], value[512], addr[INET6_ADDRSTRLEN], *ans;
	struct in6_addr listen_addr;
	size_t ans_len, n;
	int64_t id, ttl, vrev, rev;

	if (now - f->keepalive_ms < KEEPALIVE_MS &&
	    (f->lease || now - f->keepalive_ms < 500))
		goto maybe_put;
	f->keepalive_ms = now;
	if (f->lease) {
		snprintf(body, sizeof(body), "{\"ID\":%lld}",
			 (long long)f->lease);
		if (etcd_call(&f->etcd, &ans, &ans_len, "lease/keepalive",
			      body, err, sizeof(err)))
			return;
		if (!fleet_parse_lease(&id, &ttl, ans, ans_len) || ttl <= 0) {
			log_warn("fleet_register", "lease=%lld expired; "
				 "registering again", (long long)f->lease);
			f->lease = 0;
		}
		free(ans);
	}
	if (!f->lease) {
		snprintf(body, sizeof(body), "{\"TTL\":%d}", LEASE_TTL_S);
		if (etcd_call(&f->etcd, &ans, &ans_len, "lease/grant", body,
			      err, sizeof(err)))
			return;
		if (fleet_parse_lease(&id, &ttl, ans, ans_len))
			f->lease = id;
		free(ans);
		f->reg_vms_revision = -1;
	}
maybe_put:
	if (!f->lease)
		return;
	pthread_mutex_lock(&f->ctl->lock);
	vrev = f->vms_revision;
	rev = f->revision;
	n = f->map.n;
	/* Under the lock: a reload frees the file's config. */
	listen_addr = file_cfg(f->ctl)->listen_addr;
	pthread_mutex_unlock(&f->ctl->lock);
	/* Only when the VMs moved: a registration is a write, and writes
	 * move every appliance's revision. */
	if (vrev == f->reg_vms_revision || now - f->reg_put_ms < 1000)
		return;
	f->reg_put_ms = now;
	inet_ntop(AF_INET6, &listen_addr, addr, sizeof(addr));
	snprintf(value, sizeof(value), "{\"address\":\"%s\",\"version\":"
		 "\"%s\",\"revision\":%lld,\"vms_revision\":%lld,\"vms\":%zu}",
		 addr, VMGATE_VERSION, (long long)rev, (long long)vrev, n);
	if (!put_json(f, f->app_key, value, f->lease, NULL, err, sizeof(err)))
		f->reg_vms_revision = vrev;
}


/* Session-ticket keys: {prefix}stek/keys/{name} with a lease each, minted
 * by the one appliance holding {prefix}stek/lock (a key on its
 * registration lease, so a dead rotator's lock goes with it). Every
 * appliance reads them all and hands them to tls/ticket.h; they are never
 * written anywhere else. */

static void hex16(char out[33], const uint8_t in[16])
{
	static const char d[] = "0123456789abcdef";

	for (int i = 0; i < 16; i++) {
		out[2 * i] = d[in[i] >> 4];
		out[2 * i + 1] = d[in[i] & 15];
	}
	out[32] = '\0';
}

/* Takes the lock if nobody holds it; true when this appliance holds it. */
static bool stek_elect(struct fleet *f)
{
	char key[FLEET_KEY_MAX], bkey[800], bval[400], body[4096], err[300];
	char *ans;
	struct fleet_range r;
	size_t ans_len;
	bool mine = false, ok;
	int64_t rev;

	snprintf(key, sizeof(key), "%sstek/lock", f->cfg->prefix);
	b64key(bkey, sizeof(bkey), key, strlen(key));
	fleet_b64(bval, sizeof(bval), f->cfg->appliance_id,
		  strlen(f->cfg->appliance_id));
	snprintf(body, sizeof(body), "{\"compare\":[{\"key\":\"%s\","
		 "\"target\":\"CREATE\",\"result\":\"EQUAL\","
		 "\"create_revision\":0}],\"success\":[{\"request_put\":{"
		 "\"key\":\"%s\",\"value\":\"%s\",\"lease\":%lld}}],"
		 "\"failure\":[{\"request_range\":{\"key\":\"%s\"}}]}",
		 bkey, bkey, bval, (long long)f->lease, bkey);
	if (etcd_call(&f->etcd, &ans, &ans_len, "kv/txn", body, err,
		      sizeof(err)))
		return false;
	if (fleet_parse_txn(&ok, &rev, ans, ans_len) && ok) {
		free(ans);
		log_info("fleet_tickets", "rotator=%s", f->cfg->appliance_id);
		return true;
	}
	free(ans);
	/* Held: by us (an earlier tick) or by another appliance. */
	snprintf(body, sizeof(body), "{\"key\":\"%s\"}", bkey);
	if (etcd_call(&f->etcd, &ans, &ans_len, "kv/range", body, err,
		      sizeof(err)))
		return false;
	if (fleet_parse_range(&r, ans, ans_len)) {
		mine = r.kvs_len == 1 &&
		       r.kvs[0].value_len == strlen(f->cfg->appliance_id) &&
		       !memcmp(r.kvs[0].value, f->cfg->appliance_id,
			       r.kvs[0].value_len);
		fleet_range_free(&r);
	}
	free(ans);
	return mine;
}

static int stek_mint(struct fleet *f, int64_t not_before, int64_t now)
{
	struct tls_ticket_key k;
	char name[33], key[FLEET_KEY_MAX + 40], value[512], b64[128], body[64],
	     err[300], *ans;
	int64_t id, ttl;
	size_t ans_len;
	uint8_t raw[64];
	int ret;

	if (getrandom(&k, sizeof(k), 0) != sizeof(k))
		return -EIO;
	k.not_before = not_before;
	k.not_after = not_before + f->cfg->ticket_rotation_s +
		      f->cfg->ticket_lifetime_s;
	/* The key's lease ends with it, whatever happens to the rotator. */
	snprintf(body, sizeof(body), "{\"TTL\":%lld}",
		 (long long)(k.not_after - now + 1));
	ret = etcd_call(&f->etcd, &ans, &ans_len, "lease/grant", body, err,
			sizeof(err));
	if (ret)
		return ret;
	ret = fleet_parse_lease(&id, &ttl, ans, ans_len) ? 0 : -EPROTO;
	free(ans);
	if (ret)
		return ret;
	hex16(name, k.name);
	memcpy(raw, k.aes, 32);
	memcpy(raw + 32, k.hmac, 32);
	fleet_b64(b64, sizeof(b64), raw, sizeof(raw));
	explicit_bzero(raw, sizeof(raw));
	snprintf(key, sizeof(key), "%sstek/keys/%s", f->cfg->prefix, name);
	snprintf(value, sizeof(value), "{\"name\":\"%s\",\"key\":\"%s\","
		 "\"not_before\":%lld,\"not_after\":%lld}", name, b64,
		 (long long)k.not_before, (long long)k.not_after);
	ret = put_json(f, key, value, id, NULL, err, sizeof(err));
	explicit_bzero(value, sizeof(value));
	explicit_bzero(b64, sizeof(b64));
	explicit_bzero(&k, sizeof(k));
	if (!ret) {
		pthread_mutex_lock(&f->ctl->lock);
		f->stek_minted++;
		pthread_mutex_unlock(&f->ctl->lock);
		log_info("fleet_tickets", "minted=%s not_before=%lld "
			 "not_after=%lld", name, (long long)not_before,
			 (long long)(not_before + f->cfg->ticket_rotation_s +
				     f->cfg->ticket_lifetime_s));
	}
	return ret;
}

/* Reads every key (at most TLS_TICKET_KEYS_MAX, newest first kept). */
static int stek_read(struct fleet *f, struct tls_ticket_key *keys,
		     size_t *n, int64_t now)
{
	char dir[FLEET_KEY_MAX], end[FLEET_KEY_MAX], bkey[800], bend[800],
	     body[2048], err[300], *ans, first[160] = "";
	struct fleet_range r;
	size_t ans_len, i, held = 0, ignored = 0;
	int ret;

	*n = 0;
	snprintf(dir, sizeof(dir), "%sstek/keys/", f->cfg->prefix);
	range_end(end, dir);
	b64key(bkey, sizeof(bkey), dir, strlen(dir));
	b64key(bend, sizeof(bend), end, strlen(end));
	snprintf(body, sizeof(body), "{\"key\":\"%s\",\"range_end\":\"%s\","
		 "\"limit\":256}", bkey, bend);
	ret = etcd_call(&f->etcd, &ans, &ans_len, "kv/range", body, err,
			sizeof(err));
	if (ret)
		return ret;
	ret = fleet_parse_range(&r, ans, ans_len) ? 0 : -EPROTO;
	explicit_bzero(ans, ans_len);
	free(ans);
	if (ret)
		return ret;
	for (i = 0; i < r.kvs_len; i++) {
		struct tls_ticket_key k;
		bool clamped, keep;

		if (!fleet_parse_stek(&k, r.kvs[i].value, r.kvs[i].value_len))
			continue;
		keep = fleet_stek_bound(&k, now, f->cfg->ticket_rotation_s,
					f->cfg->ticket_lifetime_s, &clamped);
		held += clamped;
		ignored += !keep;
		if ((!keep || clamped) && !first[0])
			log_escape(first, sizeof(first),
				   (const char *)r.kvs[i].key,
				   r.kvs[i].key_len);
		if (keep && k.not_after > now)
			fleet_stek_keep(keys, n, TLS_TICKET_KEYS_MAX, &k);
		explicit_bzero(&k, sizeof(k));
	}
	/* What a rotator of this appliance would not have written: said
	 * once a minute at most (the keys are read every few seconds). */
	if ((held || ignored) && (!f->stek_warn_ms ||
				  timer_now_ms() - f->stek_warn_ms >= 60000)) {
		f->stek_warn_ms = timer_now_ms();
		log_warn("fleet_tickets", "held=%zu ignored=%zu first=\"%s\": "
			 "keys that decrypt past not_before + "
			 "ticket_rotation_s + ticket_lifetime_s are held to "
			 "it, keys more than two rotations ahead ignored",
			 held, ignored, first);
	}
	for (i = 0; i < r.kvs_len; i++)
		explicit_bzero(r.kvs[i].value, r.kvs[i].value_len);
	fleet_range_free(&r);
	return 0;
}

static void stek_tick(struct fleet *f)
{
	uint64_t now_ms = timer_now_ms(), every = KEEPALIVE_MS;
	struct tls_ticket_key keys[TLS_TICKET_KEYS_MAX];
	int64_t now = time(NULL), cur_nb = 0;
	bool rotator, cur = false, next = false;
	size_t n, i;

	if (f->cfg->ticket_rotation_s * 1000ull / 4 < every)
		every = f->cfg->ticket_rotation_s * 1000ull / 4;
	if (every < 200)
		every = 200;
	if (!f->lease || now_ms - f->stek_ms < every)
		return;
	f->stek_ms = now_ms;
	rotator = stek_elect(f);
	if (stek_read(f, keys, &n, now))
		return;
	for (i = 0; i < n; i++) {
		if (keys[i].not_before <= now) {
			if (!cur || keys[i].not_before > cur_nb)
				cur_nb = keys[i].not_before;
			cur = true;
		} else {
			next = true;
		}
	}
	/* The rotator keeps one key in use and the next one ahead of it, so
	 * every appliance holds a key before it starts encrypting. */
	if (rotator && (!cur || !next)) {
		if (!cur)
			stek_mint(f, now, now);
		if (!next)
			stek_mint(f, (cur ? cur_nb : now) +
					     f->cfg->ticket_rotation_s, now);
		if (stek_read(f, keys, &n, now)) {
			explicit_bzero(keys, sizeof(keys));
			return;
		}
	}
	tls_ticket_keys_set(keys, n);
	explicit_bzero(keys, sizeof(keys));
	pthread_mutex_lock(&f->ctl->lock);
	f->stek_len = n;
	f->stek_rotator = rotator;
	pthread_mutex_unlock(&f->ctl->lock);
}

/* The keeper: registration and session-ticket keys on a thread of their
 * own, so that an etcd slow to answer them holds up neither the watch nor
 * the route changes it brings (they waited behind a keepalive for up to
 * timeout_ms). */
static void *keep_main(void *arg)
{
	struct fleet *f = arg;

	while (!atomic_load(&f->stop)) {
		register_tick(f);
		stek_tick(f);
		nap(f, KEEP_TICK_MS);
	}
	return NULL;
}

static void *fleet_main(void *arg)
{
	struct fleet *f = arg;

	while (!atomic_load(&f->stop)) {
		if (f->need_full || !f->revision) {
			f->need_full = true;
			if (full_read(f)) {
				backoff(f);
				continue;
			}
		}
		watch(f);
		if (f->fails && !atomic_load(&f->stop))
			backoff(f);
	}
	return NULL;
}

/* Setup */

int fleet_new(struct fleet **out, struct control *ctl, char *err,
	      size_t err_len)
{
	const struct config_fleet *cfg = &ctl->shared->cfg->fleet;
	struct fleet *f = calloc(1, sizeof(*f));
	int ret;

	*out = NULL;
	if (!f)
		return -ENOMEM;
	f->ctl = ctl;
	f->cfg = cfg;
	f->snap_every_ms = SNAPSHOT_EVERY_MS;
	{
		pthread_condattr_t ca;

		/* Admin writes wait on it with a deadline: one a clock step
		 * cannot stretch. */
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&f->applied, &ca);
		pthread_condattr_destroy(&ca);
	}
	ret = etcd_init(&f->etcd, cfg, err, err_len);
	if (ret) {
		pthread_cond_destroy(&f->applied);
		free(f);
		return ret;
	}
	snprintf(f->vms_dir, sizeof(f->vms_dir), "%svms/", cfg->prefix);
	snprintf(f->apps_dir, sizeof(f->apps_dir), "%sappliances/",
		 cfg->prefix);
	snprintf(f->app_key, sizeof(f->app_key), "%s%s", f->apps_dir,
		 cfg->appliance_id);
	snapshot_load(f);
	*out = f;
	return 0;
}

int fleet_start(struct fleet *f)
{
	int ret = pthread_create(&f->thread, NULL, fleet_main, f);

	if (ret)
		return -ret;
	f->started = true;
	ret = pthread_create(&f->keeper, NULL, keep_main, f);
	if (ret)
		return -ret; /* fleet_free stops the watch thread */
	f->keeper_started = true;
	return 0;
}

void fleet_cancel(struct fleet *f)
{
	if (!f || etcd_cancelled(&f->etcd))
		return;
	atomic_store(&f->stop, true);
	etcd_cancel(&f->etcd);
	/* wait_applied looks at f->stop when woken. */
	pthread_mutex_lock(&f->ctl->lock);
	pthread_cond_broadcast(&f->applied);
	pthread_mutex_unlock(&f->ctl->lock);
	log_info("fleet_stop", "etcd calls %s", ETCD_CANCELLED);
}

bool fleet_cancelled(struct fleet *f)
{
	return etcd_cancelled(&f->etcd);
}

void fleet_free(struct fleet *f)
{
	if (!f)
		return;
	/* Whoever frees it is stopping: the thread is joined without
	 * waiting on etcd. */
	if (f->started) {
		fleet_cancel(f);
		pthread_join(f->thread, NULL);
	}
	if (f->keeper_started)
		pthread_join(f->keeper, NULL);
	snap_reap(f, true);
	etcd_free(&f->etcd);
	fmap_free(&f->map);
	changes_clear(f);
	free(f->ch);
	pend_clear(f);
	free(f->pend);
	pthread_cond_destroy(&f->applied);
	free(f);
}

/* Admin API writes */

/* The key's mod_revision (0: absent) and whether it holds a VM. */
static int key_revision(struct fleet *f, int64_t *out_rev, const char *key,
			char *err, size_t err_len)
{
	char bkey[800], body[1024], *ans;
	struct fleet_range r;
	size_t ans_len;
	int ret;

	*out_rev = 0;
	b64key(bkey, sizeof(bkey), key, strlen(key));
	snprintf(body, sizeof(body), "{\"key\":\"%s\"}", bkey);
	ret = etcd_call(&f->etcd, &ans, &ans_len, "kv/range", body, err,
			err_len);
	if (ret)
		return ret;
	if (!fleet_parse_range(&r, ans, ans_len)) {
		free(ans);
		snprintf(err, err_len, "etcd: a malformed answer");
		return -EPROTO;
	}
	free(ans);
	if (r.kvs_len)
		*out_rev = r.kvs[0].mod_revision;
	fleet_range_free(&r);
	return 0;
}

/* Waits (at most timeout_ms) until this appliance applied |rev|, or
 * until fleet_cancel: a stopping vmgate does not wait for it (the change
 * is committed in etcd all the same, and is acknowledged as such, as
 * after a wait that timed out). */
/* Whether this appliance applied revision |rev| within timeout_ms. */
static bool wait_applied(struct fleet *f, int64_t rev)
{
	struct timespec ts;
	bool applied;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += f->cfg->timeout_ms / 1000;
	ts.tv_nsec += (long)(f->cfg->timeout_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&f->ctl->lock);
	while (f->revision < rev && !atomic_load(&f->stop) &&
	       pthread_cond_timedwait(&f->applied, &f->ctl->lock, &ts) == 0)
		;
	applied = f->revision >= rev;
	pthread_mutex_unlock(&f->ctl->lock);
	return applied;
}

/* A txn: if the key's mod_revision is still |rev|, put |value| (or delete
 * when NULL). */
static int txn(struct fleet *f, bool *out_ok, int64_t *out_rev,
	       const char *key, int64_t rev, const char *value, char *err,
	       size_t err_len)
{
	char bkey[800], bval[FLEET_VALUE_MAX * 2], body[4096], *ans;
	size_t ans_len;
	int ret;

	b64key(bkey, sizeof(bkey), key, strlen(key));
	if (value) {
		fleet_b64(bval, sizeof(bval), value, strlen(value));
		snprintf(body, sizeof(body), "{\"compare\":[{\"key\":\"%s\","
			 "\"target\":\"MOD\",\"result\":\"EQUAL\","
			 "\"mod_revision\":%lld}],\"success\":[{"
			 "\"request_put\":{\"key\":\"%s\",\"value\":\"%s\"}}]}",
			 bkey, (long long)rev, bkey, bval);
	} else {
		snprintf(body, sizeof(body), "{\"compare\":[{\"key\":\"%s\","
			 "\"target\":\"MOD\",\"result\":\"EQUAL\","
			 "\"mod_revision\":%lld}],\"success\":[{"
			 "\"request_delete_range\":{\"key\":\"%s\"}}]}",
			 bkey, (long long)rev, bkey);
	}
	ret = etcd_call(&f->etcd, &ans, &ans_len, "kv/txn", body, err,
			err_len);
	if (ret)
		return ret;
	if (!fleet_parse_txn(out_ok, out_rev, ans, ans_len)) {
		free(ans);
		snprintf(err, err_len, "etcd: a malformed txn answer");
		return -EPROTO;
	}
	free(ans);
	return 0;
}

/* etcd's value for a VM, {"address":"fd00::10","ports":[3000]}, in
 * |*out| (malloc'd). -E2BIG when it is over FLEET_VALUE_MAX, which every
 * appliance would skip. */
static int vm_value(char **out, const struct in6_addr *a,
		    const struct config_vm_ports *ports)
{
	char addr[INET6_ADDRSTRLEN];
	size_t len;
	FILE *m;

	*out = NULL;
	m = open_memstream(out, &len);
	if (!m)
		return -ENOMEM;
	inet_ntop(AF_INET6, a, addr, sizeof(addr));
	fprintf(m, "{\"address\":\"%s\"", addr);
	if (ports) {
		fputs(",\"ports\":", m);
		ports_print(m, ports);
	}
	fputc('}', m);
	if (fclose(m) || !*out) {
		free(*out);
		*out = NULL;
		return -ENOMEM;
	}
	if (len > FLEET_VALUE_MAX) {
		free(*out);
		*out = NULL;
		return -E2BIG;
	}
	return 0;
}

int fleet_vm_put(struct fleet *f, bool *out_created, bool *out_applied,
		 const char *id, const char *address,
		 const struct config_vm_ports *ports, char *err, size_t err_len)
{
	char norm[ROUTE_VM_ID_MAX + 1], key[FLEET_KEY_MAX + 80], pbuf[128];
	char *value = NULL;
	struct in6_addr a;
	int64_t rev, done_rev;
	size_t len;
	int i, ret;

	if (!route_vm_id_norm(norm, &len, id, strlen(id))) {
		snprintf(err, err_len, "invalid VM id '%.64s': one DNS label "
			 "of letters, digits and hyphens", id);
		return -EINVAL;
	}
	if (route_parse_vm_addr(&a, address, strlen(address)) !=
	    ROUTE_ADDR_OK) {
		snprintf(err, err_len, "address '%.64s' is not an IPv6 "
			 "address", address);
		return -EINVAL;
	}
	snprintf(key, sizeof(key), "%s%s", f->vms_dir, norm);
	ret = vm_value(&value, &a, ports);
	if (ret == -E2BIG) {
		snprintf(err, err_len, "\"ports\": too many ranges for one "
			 "etcd value (%d bytes at most)", FLEET_VALUE_MAX);
		return -EINVAL;
	}
	if (ret)
		return ret;
	for (i = 0; i < PUT_RETRIES; i++) {
		bool ok;

		ret = key_revision(f, &rev, key, err, err_len);
		if (!ret)
			ret = txn(f, &ok, &done_rev, key, rev, value, err,
				  err_len);
		if (ret)
			goto out;
		if (ok) {
			*out_created = rev == 0;
			*out_applied = wait_applied(f, done_rev);
			log_info("vm_put", "vm=%s address=%s ports=%s "
				 "created=%d etcd_revision=%lld applied=%d",
				 norm, address,
				 route_vm_ports_fmt(pbuf, sizeof(pbuf), ports),
				 *out_created, (long long)done_rev,
				 *out_applied);
			goto out;
		}
	}
	snprintf(err, err_len, "VM '%s' changed under this write %d times; "
		 "retry", norm, PUT_RETRIES);
	ret = -EBUSY;
out:
	free(value);
	return ret;
}

int fleet_vm_delete(struct fleet *f, bool *out_applied, const char *id,
		    char *err, size_t err_len)
{
	char norm[ROUTE_VM_ID_MAX + 1], key[FLEET_KEY_MAX + 80];
	struct in6_addr a;
	int64_t rev, done_rev;
	size_t len;
	int i, ret;

	if (!route_vm_id_norm(norm, &len, id, strlen(id))) {
		snprintf(err, err_len, "no VM '%.64s'", id);
		return -ENOENT;
	}
	snprintf(key, sizeof(key), "%s%s", f->vms_dir, norm);
	for (i = 0; i < PUT_RETRIES; i++) {
		bool ok;

		ret = key_revision(f, &rev, key, err, err_len);
		if (ret)
			return ret;
		if (!rev) {
			bool in_file;

			pthread_mutex_lock(&f->ctl->lock);
			in_file = route_vm_get(f->ctl->base->t, &a, norm, len);
			pthread_mutex_unlock(&f->ctl->lock);
			snprintf(err, err_len, in_file ? "VM '%s' comes from "
				 "appliance.yaml, not etcd: change the file" :
				 "no VM '%s'", norm);
			return in_file ? -EPERM : -ENOENT;
		}
		ret = txn(f, &ok, &done_rev, key, rev, NULL, err, err_len);
		if (ret)
			return ret;
		if (ok) {
			*out_applied = wait_applied(f, done_rev);
			log_info("vm_delete", "vm=%s etcd_revision=%lld "
				 "applied=%d", norm, (long long)done_rev,
				 *out_applied);
			return 0;
		}
	}
	snprintf(err, err_len, "VM '%s' changed under this delete %d times; "
		 "retry", norm, PUT_RETRIES);
	return -EBUSY;
}

/* Status */

json_t *fleet_health_json(struct fleet *f)
{
	json_t *j;

	pthread_mutex_lock(&f->ctl->lock);
	j = json_pack("{s:s,s:b,s:I,s:s}", "watch", state_names[f->state],
		      "etcd_up", f->state == FLEET_WATCHING ||
				 f->state == FLEET_READING,
		      "revision", (json_int_t)f->revision, "error",
		      f->last_error);
	pthread_mutex_unlock(&f->ctl->lock);
	return j;
}

static json_t *other_appliances(struct fleet *f, char *err, size_t err_len)
{
	char bkey[800], bend[800], end[FLEET_KEY_MAX], body[2048], *ans;
	struct fleet_range r;
	json_t *list = json_array();
	size_t ans_len, i, id_len, dl = strlen(f->apps_dir);

	range_end(end, f->apps_dir);
	b64key(bkey, sizeof(bkey), f->apps_dir, dl);
	b64key(bend, sizeof(bend), end, strlen(end));
	snprintf(body, sizeof(body), "{\"key\":\"%s\",\"range_end\":\"%s\","
		 "\"limit\":1000}", bkey, bend);
	if (!list || etcd_call(&f->etcd, &ans, &ans_len, "kv/range", body,
			       err, err_len)) {
		json_decref(list);
		return NULL;
	}
	if (!fleet_parse_range(&r, ans, ans_len)) {
		free(ans);
		json_decref(list);
		return NULL;
	}
	free(ans);
	for (i = 0; i < r.kvs_len; i++) {
		const uint8_t *id = fleet_key_under(r.kvs[i].key,
						    r.kvs[i].key_len,
						    f->apps_dir, &id_len);
		json_error_t jerr;
		json_t *v, *o;

		if (!id)
			continue;
		v = json_loadb((const char *)r.kvs[i].value,
			       r.kvs[i].value_len, 0, &jerr);
		if (!json_is_object(v)) {
			json_decref(v);
			v = json_object();
		}
		o = json_pack("{s:s%}", "id", (const char *)id, id_len);
		if (o && v)
			json_object_update_missing(o, v);
		json_decref(v);
		if (o)
			json_array_append_new(list, o);
	}
	fleet_range_free(&r);
	return list;
}

json_t *fleet_status_json(struct fleet *f)
{
	char err[300] = "", ep[300];
	json_t *eps = json_array(), *apps, *j;
	size_t i;

	for (i = 0; eps && i < f->cfg->endpoints_len; i++)
		json_array_append_new(eps, json_string(f->cfg->endpoints[i]));
	apps = other_appliances(f, err, sizeof(err));
	etcd_endpoint(&f->etcd, ep, sizeof(ep));
	pthread_mutex_lock(&f->ctl->lock);
	j = json_pack("{s:s,s:o,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,"
		      "s:I,s:I,s:s}",
		      "appliance_id", f->cfg->appliance_id,
		      "endpoints", eps ? eps : json_array(),
		      "endpoint", ep,
		      "watch", state_names[f->state],
		      "revision", (json_int_t)f->revision,
		      "vms_revision", (json_int_t)f->vms_revision,
		      "snapshot_revision", (json_int_t)f->snap_revision,
		      "etcd_vms", (json_int_t)f->map.n,
		      "skipped_values", (json_int_t)f->skipped,
		      "full_reads", (json_int_t)f->full_reads,
		      "watch_restarts", (json_int_t)f->watch_restarts,
		      "watchdog_fires", (json_int_t)f->watchdog_fires,
		      "compactions", (json_int_t)f->compactions,
		      "batches", (json_int_t)f->batches,
		      "fragments", (json_int_t)f->fragments,
		      "error", f->last_error);
	pthread_mutex_unlock(&f->ctl->lock);
	if (j) {
		uint8_t name[16];
		char hex[33];
		bool shared = tls_ticket_current(name);

		hex16(hex, name);
		pthread_mutex_lock(&f->ctl->lock);
		json_object_set_new(j, "tickets", json_pack(
			"{s:I,s:b,s:s?,s:I}", "keys", (json_int_t)f->stek_len,
			"rotator", f->stek_rotator, "current",
			shared ? hex : NULL, "minted",
			(json_int_t)f->stek_minted));
		pthread_mutex_unlock(&f->ctl->lock);
		json_object_set_new(j, "appliances", apps ? apps : json_null());
	}
	else
		json_decref(apps);
	if (j && !apps)
		json_object_set_new(j, "appliances_error", json_string(err));
	return j;
}

void fleet_metrics(struct fleet *f, FILE *out)
{
	pthread_mutex_lock(&f->ctl->lock);
	fprintf(out,
		"# HELP vmgate_fleet_etcd_up Whether the fleet watch is "
		"connected to etcd.\n# TYPE vmgate_fleet_etcd_up gauge\n"
		"vmgate_fleet_etcd_up %d\n"
		"# HELP vmgate_fleet_revision The etcd revision applied.\n"
		"# TYPE vmgate_fleet_revision gauge\n"
		"vmgate_fleet_revision %lld\n"
		"# HELP vmgate_fleet_vms VMs from etcd.\n"
		"# TYPE vmgate_fleet_vms gauge\nvmgate_fleet_vms %zu\n"
		"# HELP vmgate_fleet_skipped_values_total Bad values in etcd "
		"skipped.\n# TYPE vmgate_fleet_skipped_values_total counter\n"
		"vmgate_fleet_skipped_values_total %llu\n"
		"# HELP vmgate_fleet_full_reads_total Full paged reads of "
		"the prefix.\n# TYPE vmgate_fleet_full_reads_total counter\n"
		"vmgate_fleet_full_reads_total %llu\n"
		"# HELP vmgate_fleet_watch_restarts_total Watch streams that "
		"ended and were reconnected.\n"
		"# TYPE vmgate_fleet_watch_restarts_total counter\n"
		"vmgate_fleet_watch_restarts_total %llu\n"
		"# HELP vmgate_fleet_batches_total Table swaps from watch "
		"events.\n# TYPE vmgate_fleet_batches_total counter\n"
		"vmgate_fleet_batches_total %llu\n",
		f->state == FLEET_WATCHING || f->state == FLEET_READING,
		(long long)f->revision, f->map.n,
		(unsigned long long)f->skipped,
		(unsigned long long)f->full_reads,
		(unsigned long long)f->watch_restarts,
		(unsigned long long)f->batches);
	pthread_mutex_unlock(&f->ctl->lock);
}
