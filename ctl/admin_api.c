/* ctl/admin_api.c: the admin API's handlers (see admin.h): /health, /vms,
 * /vms/ID, /vms/ID/stats, /stats/vms, /reload and /metrics, behind the
 * HTTP server of admin_http.c. Each answers one complete request through admin_respond*().
 */
#include "ctl/admin_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/mem.h>
#include <openssl/sha.h>

#include "ctl/control.h"
#include "ctl/fleet.h"
#include "core/vmstats.h"
#include "route/route.h"

/* ------------------------------------------------------------ requests */

/* authorized checks "Bearer <token>" in constant time: both sides are
 * hashed first, so neither the length nor any prefix of the token shows
 * in the time taken. */
static bool authorized(struct admin *a, const struct aconn *c)
{
	uint8_t digest[SHA256_DIGEST_LENGTH];
	const char *tok;
	size_t len;
	bool ok;

	if (!a->have_token)
		return true;
	if (!c->req.auth_seen || c->req.auth_bad ||
	    !admin_bearer(c->req.auth, c->req.auth_len, &tok, &len))
		return false;
	SHA256((const uint8_t *)tok, len, digest);
	pthread_mutex_lock(&a->tlock);
	ok = CRYPTO_memcmp(digest, a->token_digest, sizeof(digest)) == 0;
	pthread_mutex_unlock(&a->tlock);
	return ok;
}

static json_t *vm_json(const char *id, const struct in6_addr *addr)
{
	char s[INET6_ADDRSTRLEN];

	inet_ntop(AF_INET6, addr, s, sizeof(s));
	return json_pack("{s:s,s:s}", "id", id, "address", s);
}

/* vm_json with "ports" ("22,8000-8099") for one VM's answer, when the
 * VM has vms[].ports (none: every port). */
static json_t *vm_json_ports(struct admin *a, const char *id,
			     const struct in6_addr *addr)
{
	struct config_vm_ports *p = NULL;
	json_t *j = vm_json(id, addr);
	char *s = NULL;

	if (j && !control_vm_ports_get(a->ctl, &p, id) && p) {
		/* Every range whole: "65535-65535," at most each. */
		size_t cap = p->len * sizeof("65535-65535,") + 1;

		s = malloc(cap);
		if (!s || json_object_set_new(j, "ports", json_string(
				route_vm_ports_fmt(s, cap, p)))) {
			json_decref(j);
			j = NULL;
		}
	}
	free(s);
	free(p);
	return j;
}

struct listing {
	struct buf *b;
	json_t *id; /* reused for every VM: escaping by jansson */
	size_t n;
	bool failed;
};

static bool list_one(void *arg, const char *id, const struct in6_addr *addr)
{
	struct listing *l = arg;
	char s[INET6_ADDRSTRLEN + 16];
	int n;

	if (json_string_set(l->id, id) ||
	    !admin_obuf_add(l->b, l->n ? ",{\"id\":" : "{\"id\":",
			    l->n ? 7 : 6) ||
	    !admin_obuf_json(l->b, l->id))
		goto fail;
	inet_ntop(AF_INET6, addr, s, INET6_ADDRSTRLEN);
	n = (int)strlen(s);
	/* inet_ntop's output never needs escaping */
	if (!admin_obuf_add(l->b, ",\"address\":\"", 12) ||
	    !admin_obuf_add(l->b, s, (size_t)n) ||
	    !admin_obuf_add(l->b, "\"}", 2) ||
	    l->b->len > ADMIN_LIST_MAX)
		goto fail;
	l->n++;
	return true;
fail:
	l->failed = true;
	return false;
}

static void do_list(struct admin *a, struct aconn *c)
{
	struct listing l = { .b = &c->out };

	if (a->out_bytes > ADMIN_OUT_BUDGET) {
		admin_respond_error(a, c, 503, "busy: too many answers "
				    "queued, retry", "Retry-After: 1\r\n");
		return;
	}
	l.id = json_string("");
	if (!l.id || !admin_obuf_add(&c->out, "{\"vms\":[", 8)) {
		json_decref(l.id);
		admin_respond_error(a, c, 500, "out of memory", NULL);
		return;
	}
	control_vm_foreach(a->ctl, list_one, &l);
	json_decref(l.id);
	if (l.failed || !admin_obuf_add(&c->out, "]}", 2)) {
		buf_free(&c->out);
		admin_respond_error(a, c, 500, "out of memory listing VMs",
				    NULL);
		return;
	}
	admin_respond(a, c, 200, "application/json", NULL);
}

/* norm_id lowercases VM id |id| in place for an answer, if it is one. */
static void norm_id(char *id)
{
	char norm[ROUTE_VM_ID_MAX + 1];
	size_t len;

	if (route_vm_id_norm(norm, &len, id, strlen(id)))
		memcpy(id, norm, len + 1);
}

static void do_vm_get(struct admin *a, struct aconn *c, char *id)
{
	struct in6_addr addr;
	int ret = control_vm_get(a->ctl, &addr, id);

	norm_id(id);
	if (ret == -ENOENT)
		admin_respond_error(a, c, 404, "no such VM", NULL);
	else if (ret)
		admin_respond_error(a, c, 400, strerror(-ret), NULL);
	else
		admin_respond_json(a, c, 200, vm_json_ports(a, id, &addr),
				   NULL);
}

static json_t *stats_json(const struct vmstats_sum *s)
{
	return json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "id", s->id,
			 "accepted", (json_int_t)s->accepted,
			 "rejected", (json_int_t)s->rejected,
			 "open", (json_int_t)s->open,
			 "bytes_client_to_vm", (json_int_t)s->bytes_up,
			 "bytes_vm_to_client", (json_int_t)s->bytes_down,
			 "connect_errors", (json_int_t)s->connect_errors);
}

static void do_vm_stats(struct admin *a, struct aconn *c, const char *id)
{
	struct vmstats_sum s;
	int ret = control_vm_stats(a->ctl, &s, id);

	if (ret == -ENOENT)
		admin_respond_error(a, c, 404, "no such VM", NULL);
	else if (ret)
		admin_respond_error(a, c, 400, "not a VM id (one DNS label)",
				    NULL);
	else
		admin_respond_json(a, c, 200, stats_json(&s), NULL);
}

static void do_stats_vms(struct admin *a, struct aconn *c, const char *q,
			 size_t q_len)
{
	struct vmstats_sum *top;
	size_t n, len, counted, i;
	json_t *list, *j;

	if (!admin_parse_top(&n, q, q_len)) {
		admin_respond_error(a, c, 400, "expected ?top=N, N from 1 to "
				    "10000", NULL);
		return;
	}
	if (control_vm_top(a->ctl, &top, &len, &counted, n)) {
		admin_respond_error(a, c, 500, "out of memory", NULL);
		return;
	}
	list = json_array();
	for (i = 0; list && i < len; i++)
		if (json_array_append_new(list, stats_json(&top[i]))) {
			json_decref(list);
			list = NULL;
		}
	free(top);
	j = list ? json_pack("{s:o,s:I}", "vms", list, "vms_counted",
			     (json_int_t)counted) : NULL;
	admin_respond_json(a, c, 200, j, NULL);
}

/* A failed PUT or DELETE: in fleet mode etcd may be unreachable (503,
 * nothing changed: retry) or the key may have moved under us (409). */
static void respond_write_error(struct admin *a, struct aconn *c, int ret,
				const char *err)
{
	switch (ret) {
	case -EINVAL:
		admin_respond_error(a, c, 400, err, NULL);
		break;
	case -ENOENT:
		admin_respond_error(a, c, 404, err, NULL);
		break;
	case -EPERM:
	case -EBUSY:
		admin_respond_error(a, c, 409, err, NULL);
		break;
	case -EHOSTUNREACH:
	case -ECANCELED: /* vmgate is stopping: another one may answer */
		admin_respond_error(a, c, 503, err, "Retry-After: 1\r\n");
		break;
	default:
		admin_respond_error(a, c, 500, err, NULL);
	}
}

/* A fleet write etcd committed and this appliance has not applied
 * within timeout_ms: 202 and "applied": false (the watch applies it when
 * it catches up). */
static void write_done(struct admin *a, struct aconn *c, int status,
		       bool applied, json_t *body)
{
	if (!applied && body)
		json_object_set_new(body, "applied", json_false());
	admin_respond_json(a, c, applied ? status : 202, body, NULL);
}

static void put_answer(struct admin *a, struct aconn *c, char *id,
		       const char *addr_s, int ret, bool created,
		       bool applied, char *err, size_t err_len)
{
	struct in6_addr addr;

	if (ret) {
		if (!err[0])
			snprintf(err, err_len, "%s", strerror(-ret));
		respond_write_error(a, c, ret, err);
		return;
	}
	/* Answer with the address as routed (normalised), when it still is. */
	if (control_vm_get(a->ctl, &addr, id) &&
	    route_parse_vm_addr(&addr, addr_s, strlen(addr_s)) !=
		    ROUTE_ADDR_OK) {
		norm_id(id);
		write_done(a, c, created ? 201 : 200, applied,
			   json_pack("{s:s,s:s}", "id", id, "address",
				     addr_s));
		return;
	}
	norm_id(id);
	write_done(a, c, created ? 201 : 200, applied,
		   vm_json_ports(a, id, &addr));
}

static void delete_answer(struct admin *a, struct aconn *c, char *id,
			  int ret, bool applied, char *err, size_t err_len)
{
	if (!err[0] && ret)
		snprintf(err, err_len, "%s", ret == -ENOENT ? "no such VM" :
			 strerror(-ret));
	norm_id(id);
	if (ret)
		respond_write_error(a, c, ret, err);
	else
		write_done(a, c, 200, applied,
			   json_pack("{s:s}", "deleted", id));
}

/* queue_write hands a job that asks etcd (a PUT with |addr_s|, a DELETE,
 * GET /fleet) to the writer thread (admin_write.c), taking |*ports|: the
 * connection waits there while the others are served, and
 * admin_write_answer answers it. A full queue is a 503 at once. */
static void queue_write(struct admin *a, struct aconn *c,
			enum admin_job_kind kind, const char *id,
			const char *addr_s, struct config_vm_ports **ports)
{
	struct admin_job *j = calloc(1, sizeof(*j));
	int ret;

	if (!j || (addr_s && !(j->address = strdup(addr_s)))) {
		admin_job_free(j);
		admin_respond_error(a, c, 500, "out of memory", NULL);
		return;
	}
	snprintf(j->id, sizeof(j->id), "%s", id);
	j->kind = kind;
	if (ports) {
		j->ports = *ports;
		*ports = NULL;
	}
	ret = admin_write_submit(a, c, j);
	if (ret) {
		char msg[96];

		admin_job_free(j);
		if (ret == -EBUSY)
			snprintf(msg, sizeof(msg), "busy: %d requests already "
				 "wait for etcd; retry", ADMIN_WRITE_QUEUE);
		else
			snprintf(msg, sizeof(msg), "shutting down; retry");
		admin_respond_error(a, c, 503, msg, "Retry-After: 1\r\n");
	}
}

/* A draining vmgate makes no change of its own (not in fleet mode: that
 * goes to etcd): a newer one taking over (--takeover) read the state file
 * when it started and would never see it, and its first write would
 * overwrite it. 503: the client asks again, and reaches the new one. */
static bool refuse_stopping(struct admin *a, struct aconn *c)
{
	if (control_takeover_pending(a->ctl)) {
		/* The newer one's side of it: the old one may still persist
		 * a change this one has not read (control_takeover). */
		admin_respond_error(a, c, 503, "an upgrade is taking over: "
				    "changes wait until the old vmgate has "
				    "exited; nothing changed; ask again",
				    "Retry-After: 1\r\n");
		return true;
	}
	if (!control_draining(a->ctl))
		return false;
	admin_respond_error(a, c, 503, "vmgate is stopping (a stop, or an "
			    "upgrade taking over): nothing changed; ask again",
			    "Retry-After: 1\r\n");
	return true;
}

static void do_vm_put(struct admin *a, struct aconn *c, char *id)
{
	json_error_t jerr;
	json_t *body, *jaddr, *jports;
	struct config_vm_ports *ports = NULL;
	const char *addr_s;
	char err[512] = "";
	bool created = false;
	int ret;

	if (!c->req.body_len) {
		admin_respond_error(a, c, 400, "missing JSON body "
				    "({\"address\": \"<IPv6>\"})", NULL);
		return;
	}
	body = json_loadb((const char *)c->req.body, c->req.body_len,
			  JSON_REJECT_DUPLICATES, &jerr);
	if (!body) {
		char msg[300];

		snprintf(msg, sizeof(msg), "invalid JSON: %s", jerr.text);
		admin_respond_error(a, c, 400, msg, NULL);
		return;
	}
	jaddr = json_is_object(body) ? json_object_get(body, "address") : NULL;
	if (!json_is_object(body)) {
		admin_respond_error(a, c, 400, "the body must be a JSON "
				    "object", NULL);
		goto out;
	}
	if (!json_is_string(jaddr)) {
		admin_respond_error(a, c, 400, jaddr ?
				    "\"address\" must be a string" :
				    "missing \"address\"", NULL);
		goto out;
	}
	addr_s = json_string_value(jaddr);
	/* "ports": [22, "8000-8099"] restricts the VM; absent: every port. */
	jports = json_object_get(body, "ports");
	if (jports && control_vm_ports_json(&ports, jports, err,
					    sizeof(err))) {
		admin_respond_error(a, c, 400, err, NULL);
		goto out;
	}
	if (control_fleet(a->ctl)) {
		queue_write(a, c, JOB_PUT, id, addr_s, &ports);
		goto out;
	}
	if (refuse_stopping(a, c))
		goto out;
	/* Not fleet mode: a state-file write and an fsync, no network, so
	 * on this thread. */
	ret = control_vm_put(a->ctl, &created, id, addr_s, ports, err,
			     sizeof(err));
	put_answer(a, c, id, addr_s, ret, created, true, err, sizeof(err));
out:
	free(ports);
	json_decref(body);
}

static void do_vm_delete(struct admin *a, struct aconn *c, char *id)
{
	char err[512] = "";
	int ret;

	if (control_fleet(a->ctl)) {
		queue_write(a, c, JOB_DELETE, id, NULL, NULL);
		return;
	}
	if (refuse_stopping(a, c))
		return;
	/* Not fleet mode: synchronous, as do_vm_put. */
	ret = control_vm_delete(a->ctl, id, err, sizeof(err));
	delete_answer(a, c, id, ret, true, err, sizeof(err));
}

void admin_write_answer(struct admin *a, struct aconn *c,
			struct admin_job *j)
{
	switch (j->kind) {
	case JOB_PUT:
		put_answer(a, c, j->id, j->address, j->ret, j->created,
			   j->applied, j->err, sizeof(j->err));
		break;
	case JOB_DELETE:
		delete_answer(a, c, j->id, j->ret, j->applied, j->err,
			      sizeof(j->err));
		break;
	case JOB_FLEET:
		if (j->ret) {
			respond_write_error(a, c, j->ret, j->err);
			break;
		}
		admin_respond_json(a, c, 200, j->status, NULL);
		j->status = NULL; /* admin_respond_json took it */
		break;
	}
}

static void do_reload(struct admin *a, struct aconn *c)
{
	size_t err_len = 16384;
	char *err = calloc(1, err_len);
	json_t *list, *j;
	char *line, *save = NULL;
	int ret;

	if (!err) {
		admin_respond_error(a, c, 500, "out of memory", NULL);
		return;
	}
	ret = control_reload(a->ctl, "api", err, err_len);
	if (!ret) {
		admin_respond_json(a, c, 200, json_pack("{s:b}", "reloaded", 1),
				   NULL);
		goto out;
	}
	if (ret != -EINVAL) {
		admin_respond_error(a, c, 500, err[0] ? err : strerror(-ret),
				    NULL);
		goto out;
	}
	list = json_array();
	for (line = strtok_r(err, "\n", &save); line && list;
	     line = strtok_r(NULL, "\n", &save))
		json_array_append_new(list, json_string(line));
	j = list ? json_pack("{s:s,s:o}", "error",
			     "invalid configuration; nothing changed",
			     "errors", list) : NULL;
	admin_respond_json(a, c, 422, j, NULL);
out:
	free(err);
}

/* The fleet writer's queue (admin_write.c), after control_metrics'. */
static bool metrics_writer(struct admin *a, struct buf *b)
{
	char s[768];
	uint64_t refused;
	size_t queued;
	bool running;
	int n;

	admin_write_stats(a, &queued, &running, &refused);
	n = snprintf(s, sizeof(s),
		     "# HELP vmgate_admin_fleet_writes_queued Admin API writes "
		     "waiting for etcd behind the one running.\n"
		     "# TYPE vmgate_admin_fleet_writes_queued gauge\n"
		     "vmgate_admin_fleet_writes_queued %zu\n"
		     "# HELP vmgate_admin_fleet_write_running 1 while an "
		     "admin API write waits on etcd.\n"
		     "# TYPE vmgate_admin_fleet_write_running gauge\n"
		     "vmgate_admin_fleet_write_running %d\n"
		     "# HELP vmgate_admin_fleet_writes_refused_total Admin API "
		     "writes refused (503) as the queue was full.\n"
		     "# TYPE vmgate_admin_fleet_writes_refused_total counter\n"
		     "vmgate_admin_fleet_writes_refused_total %llu\n",
		     queued, running, (unsigned long long)refused);
	return n > 0 && (size_t)n < sizeof(s) &&
	       admin_obuf_add(b, s, (size_t)n);
}

static void do_metrics(struct admin *a, struct aconn *c)
{
	size_t len = 0;
	char *m = control_metrics(a->ctl, &len);

	if (!m || !admin_obuf_add(&c->out, m, len)) {
		free(m);
		buf_free(&c->out);
		admin_respond_error(a, c, 500, "out of memory", NULL);
		return;
	}
	free(m);
	if (control_fleet(a->ctl) && !metrics_writer(a, &c->out)) {
		buf_free(&c->out);
		admin_respond_error(a, c, 500, "out of memory", NULL);
		return;
	}
	admin_respond(a, c, 200, "text/plain; version=0.0.4", NULL);
}

/* /health: the workers' liveness decides the status; in fleet mode etcd
 * is only detail (an appliance routes on without it). */
static void do_health(struct admin *a, struct aconn *c)
{
	bool ok = control_healthy(a->ctl);
	json_t *j = json_pack("{s:s}", "status", ok ? "ok" : "stalled");

	if (j && control_fleet(a->ctl))
		json_object_set_new(j, "fleet",
				    fleet_health_json(control_fleet(a->ctl)));
	admin_respond_json(a, c, ok ? 200 : 503, j, NULL);
}

static void do_fleet(struct admin *a, struct aconn *c)
{
	if (!control_fleet(a->ctl)) {
		admin_respond_error(a, c, 404, "not in fleet mode (no fleet: "
				    "section)", NULL);
		return;
	}
	/* It lists the other appliances from etcd: on the writer thread. */
	queue_write(a, c, JOB_FLEET, "", NULL, NULL);
}

static void method_not_allowed(struct admin *a, struct aconn *c,
			       const char *allow)
{
	char extra[64];

	snprintf(extra, sizeof(extra), "Allow: %s\r\n", allow);
	admin_respond_error(a, c, 405, "method not allowed", extra);
}

void admin_handle_request(struct admin *a, struct aconn *c)
{
	enum http_method m = (enum http_method)c->req.parser.method;
	struct admin_target t;

	if (c->req.url_long) {
		c->close_after = true;
		admin_respond_error(a, c, 414, "request target too long", NULL);
		return;
	}
	admin_route(&t, m, c->req.url, c->req.url_len);
	if (t.ep == AEP_BAD_URL) {
		admin_respond_error(a, c, 404, "not found", NULL);
		return;
	}
	if (t.ep != AEP_HEALTH && !authorized(a, c)) {
		/* Not kept alive: a client without the token holds no slot
		 * past its answer (64 kept-alive 401s locked everyone out). */
		c->close_after = true;
		admin_respond_error(a, c, 401, c->req.auth_seen ?
				    "invalid bearer token" :
				    "missing bearer token (Authorization: "
				    "Bearer <token>)",
				    "WWW-Authenticate: Bearer\r\n");
		return;
	}
	if (t.ep == AEP_NOT_FOUND) {
		admin_respond_error(a, c, 404, "not found", NULL);
		return;
	}
	if (!t.allowed) {
		method_not_allowed(a, c, t.allow);
		return;
	}
	switch (t.ep) {
	case AEP_HEALTH:
		do_health(a, c);
		break;
	case AEP_VMS:
		do_list(a, c);
		break;
	case AEP_VM:
		if (m == HTTP_GET)
			do_vm_get(a, c, t.id);
		else if (m == HTTP_PUT)
			do_vm_put(a, c, t.id);
		else
			do_vm_delete(a, c, t.id);
		break;
	case AEP_VM_STATS:
		do_vm_stats(a, c, t.id);
		break;
	case AEP_STATS_VMS:
		do_stats_vms(a, c, t.query, t.query_len);
		break;
	case AEP_RELOAD:
		do_reload(a, c);
		break;
	case AEP_FLEET:
		do_fleet(a, c);
		break;
	case AEP_METRICS:
		do_metrics(a, c);
		break;
	case AEP_BAD_URL:
	case AEP_NOT_FOUND:
		break;
	}
}
