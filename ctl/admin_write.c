/* ctl/admin_write.c: the admin API's fleet writer (see admin_http.h).
 *
 * In fleet mode PUT and DELETE /vms/ID are etcd round trips through
 * libcurl, each up to fleet.etcd.timeout_ms on every endpoint in turn,
 * then a wait until this appliance applied the change; GET /fleet reads
 * the other appliances from etcd. Run on the admin
 * thread, one slow etcd would stall every other admin request, /health
 * included (what a load balancer probes). So they run here, on a thread
 * of their own, one at a time and in order, from a bounded FIFO: the
 * handler queues a job holding copies of what the write needs, its
 * connection waits (admin_wait) while the others are served, and the
 * result comes back on a done list, with a write to the admin ring's
 * eventfd (AOP_WAKE), for the admin thread to answer.
 *
 * A job names its connection by slot and generation, never by pointer: a
 * connection closed meanwhile has another generation, and its answer is
 * dropped. The write itself still happens, as it would have had the
 * request been served at once (etcd cannot be told the client left).
 * Outside fleet mode writes stay synchronous: a state-file write and an
 * fsync, milliseconds, with no network in between.
 *
 * Stopping (admin_stop) does not wait on etcd: control_stopping has
 * cancelled every etcd call by then, so the job running ends within about
 * a second, with -ECANCELED. It and the jobs still queued are answered
 * 503 "cancelled: vmgate is stopping" before the admin thread closes the
 * connections.
 */
#include "ctl/admin_http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl/control.h"
#include "ctl/etcd.h"
#include "ctl/fleet.h"

void admin_job_free(struct admin_job *j)
{
	if (!j)
		return;
	free(j->address);
	free(j->ports);
	json_decref(j->status);
	free(j);
}

static void jobs_push(struct admin_jobs *q, struct admin_job *j)
{
	j->next = NULL;
	if (q->tail)
		q->tail->next = j;
	else
		q->head = j;
	q->tail = j;
	q->len++;
}

static struct admin_job *jobs_pop(struct admin_jobs *q)
{
	struct admin_job *j = q->head;

	if (!j)
		return NULL;
	q->head = j->next;
	if (!q->head)
		q->tail = NULL;
	q->len--;
	j->next = NULL;
	return j;
}

static void jobs_free(struct admin_jobs *q)
{
	struct admin_job *j;

	while ((j = jobs_pop(q)))
		admin_job_free(j);
}

static const char *job_method(const struct admin_job *j)
{
	return j->kind == JOB_PUT ? "PUT" : j->kind == JOB_DELETE ? "DELETE" :
	       "GET";
}

static void job_cancel(struct admin_job *j)
{
	j->ret = -ECANCELED;
	snprintf(j->err, sizeof(j->err), ETCD_CANCELLED);
	json_decref(j->status);
	j->status = NULL;
}

static void job_run(struct admin *a, struct admin_job *j)
{
	struct fleet *f = control_fleet(a->ctl);
	char id[LOG_ESCAPED_MAX(64)];

	switch (j->kind) {
	case JOB_PUT:
		j->ret = fleet_vm_put(f, &j->created, &j->applied, j->id,
				      j->address, j->ports, j->err,
				      sizeof(j->err));
		break;
	case JOB_DELETE:
		j->ret = fleet_vm_delete(f, &j->applied, j->id, j->err,
					 sizeof(j->err));
		break;
	case JOB_FLEET:
		j->status = fleet_status_json(f);
		/* Its list of appliances was cut short: a 503, not a status
		 * saying etcd failed. */
		if (fleet_cancelled(f))
			job_cancel(j);
		break;
	}
	if (j->ret == -ECANCELED)
		log_info("admin_write_cancelled", "method=%s vm=%s "
			 "error=\"%s\"", job_method(j),
			 j->kind == JOB_FLEET || !j->id
				 ? "-"
				 : log_escape(id, sizeof(id), j->id,
					      strnlen(j->id, 64)),
			 j->err);
}

static void *writer_main(void *arg)
{
	struct admin *a = arg;
	uint64_t one = 1;

	pthread_mutex_lock(&a->wlock);
	for (;;) {
		struct admin_job *j;

		while (!a->wstop && !a->wqueue.head)
			pthread_cond_wait(&a->wcond, &a->wlock);
		/* Stopping: what is still queued is dropped with its
		 * connection (admin_write_stop frees it). */
		if (a->wstop)
			break;
		j = jobs_pop(&a->wqueue);
		a->wrunning = true;
		pthread_mutex_unlock(&a->wlock);
		job_run(a, j);
		pthread_mutex_lock(&a->wlock);
		jobs_push(&a->wdone, j);
		a->wrunning = false;
		/* Under the lock: admin_free closes the eventfd only after
		 * this thread was joined, but keep the push and its wake
		 * together anyway. */
		(void)!write(a->efd, &one, sizeof(one));
	}
	pthread_mutex_unlock(&a->wlock);
	return NULL;
}

int admin_write_start(struct admin *a)
{
	int ret;

	if (!control_fleet(a->ctl))
		return 0;
	ret = pthread_create(&a->writer, NULL, writer_main, a);
	if (ret)
		return -ret;
	a->writer_started = true;
	return 0;
}

void admin_write_stop(struct admin *a)
{
	struct admin_job *j;
	uint64_t one = 1;

	if (!a->writer_started)
		return;
	pthread_mutex_lock(&a->wlock);
	a->wstop = true;
	pthread_cond_signal(&a->wcond);
	pthread_mutex_unlock(&a->wlock);
	pthread_join(a->writer, NULL);
	pthread_mutex_lock(&a->wlock);
	a->writer_started = false;
	/* Never run: answered as a cancelled etcd call would be. */
	while ((j = jobs_pop(&a->wqueue))) {
		job_cancel(j);
		jobs_push(&a->wdone, j);
	}
	if (a->wdone.head)
		(void)!write(a->efd, &one, sizeof(one));
	pthread_mutex_unlock(&a->wlock);
}

void admin_write_free(struct admin *a)
{
	admin_write_stop(a);
	jobs_free(&a->wqueue);
	jobs_free(&a->wdone);
}

int admin_write_submit(struct admin *a, struct aconn *c, struct admin_job *j)
{
	pthread_mutex_lock(&a->wlock);
	if (!a->writer_started || a->wstop) {
		pthread_mutex_unlock(&a->wlock);
		return -ESHUTDOWN;
	}
	if (a->wqueue.len >= ADMIN_WRITE_QUEUE) {
		a->wrefused++;
		pthread_mutex_unlock(&a->wlock);
		return -EBUSY;
	}
	j->slot = (uint32_t)(c - a->conns);
	j->gen = c->gen;
	jobs_push(&a->wqueue, j);
	pthread_cond_signal(&a->wcond);
	pthread_mutex_unlock(&a->wlock);
	admin_wait(a, c);
	return 0;
}

void admin_write_reap(struct admin *a)
{
	struct admin_jobs done;
	struct admin_job *j;
	char id[LOG_ESCAPED_MAX(64)];
	bool stopping;

	/* Also once the writer was joined: admin_write_stop leaves the
	 * cancelled jobs here. */
	pthread_mutex_lock(&a->wlock);
	done = a->wdone;
	a->wdone = (struct admin_jobs){ 0 };
	stopping = a->wstop;
	pthread_mutex_unlock(&a->wlock);
	while ((j = jobs_pop(&done))) {
		struct aconn *c = admin_conn_waiting(a, j->slot, j->gen);

		/* The connection is closed after this answer anyway. */
		if (c && stopping)
			c->close_after = true;
		if (c)
			admin_write_answer(a, c, j);
		else
			log_info("admin_write_dropped", "method=%s vm=%s "
				 "result=\"%s\": its client closed the "
				 "connection first", job_method(j),
				 j->id ? log_escape(id, sizeof(id), j->id,
						    strnlen(j->id, 64))
				       : "-",
				 j->ret ? strerror(-j->ret) : "done");
		admin_job_free(j);
	}
}

void admin_write_stats(struct admin *a, size_t *out_queued,
		       bool *out_running, uint64_t *out_refused)
{
	pthread_mutex_lock(&a->wlock);
	*out_queued = a->wqueue.len;
	*out_running = a->wrunning;
	*out_refused = a->wrefused;
	pthread_mutex_unlock(&a->wlock);
}
