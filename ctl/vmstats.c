/* ctl/vmstats.c: control_vm_stats and control_vm_top (see control.h), the
 * per-VM counters of the workers (core/vmstats.h) summed for the admin
 * API and /metrics.
 *
 * A worker's entries are walked up to the count it published, without a
 * lock; the sums are of counters read at slightly different moments, like
 * the totals of ctl/prometheus.c.
 */
#include "ctl/control.h"
#include "ctl/control_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/vmstats.h"
#include "route/route.h"

int control_vm_stats(struct control *ctl, struct vmstats_sum *out,
		     const char *id)
{
	char norm[ROUTE_VM_ID_MAX + 1];
	struct in6_addr addr;
	bool found = false;
	size_t len, i;
	uint32_t j, n;

	if (!route_vm_id_norm(norm, &len, id, strlen(id)))
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	memcpy(out->id, norm, len + 1);
	for (i = 0; i < ctl->shared->nworkers; i++) {
		const struct vmstats *t = &ctl->shared->workers[i].vmstats;

		n = vmstats_len(t);
		for (j = 0; j < n; j++) {
			const struct vmstats_entry *e = vmstats_at(t, j);

			if (!strcmp(e->id, norm)) {
				vmstats_add(out, e);
				found = true;
				break;
			}
		}
	}
	if (!found && control_vm_get(ctl, &addr, norm) == -ENOENT)
		return -ENOENT;
	return 0;
}

static int by_bytes(const void *a, const void *b)
{
	const struct vmstats_sum *x = a, *y = b;
	uint64_t bx = x->bytes_up + x->bytes_down,
		 by = y->bytes_up + y->bytes_down;

	if (bx != by)
		return bx > by ? -1 : 1;
	return strcmp(x->id, y->id);
}

int control_vm_top(struct control *ctl, struct vmstats_sum **out,
		   size_t *out_len, size_t *counted, size_t n)
{
	/* The workers' entries joined by id in a table of the same kind,
	 * this thread's own. */
	struct vmstats *all = calloc(1, sizeof(*all));
	struct vmstats_sum *sums = NULL;
	size_t i, len;
	uint32_t j, m;
	int ret = -ENOMEM;

	*out = NULL;
	*out_len = *counted = 0;
	if (!all)
		return -ENOMEM;
	for (i = 0; i < ctl->shared->nworkers; i++) {
		const struct vmstats *t = &ctl->shared->workers[i].vmstats;

		m = vmstats_len(t);
		for (j = 0; j < m; j++) {
			const struct vmstats_entry *e = vmstats_at(t, j);
			struct vmstats_entry *a =
				vmstats_get(all, e->id, strlen(e->id));

			metric_add(&a->accepted, metric_get(&e->accepted));
			metric_add(&a->rejected, metric_get(&e->rejected));
			metric_add(&a->open, metric_get(&e->open));
			metric_add(&a->bytes_up, metric_get(&e->bytes_up));
			metric_add(&a->bytes_down, metric_get(&e->bytes_down));
			metric_add(&a->connect_errors,
				   metric_get(&e->connect_errors));
		}
	}
	/* VMs past the joined table's room (the workers' tables hold more
	 * than one can when their VMs differ): the rest is reported, and
	 * those left out counted, where failing took the whole exposition
	 * (totals too) and GET /stats/vms down with them. */
	atomic_store_explicit(&ctl->vm_top_lost, metric_get(&all->lost),
			      memory_order_relaxed);
	len = vmstats_len(all);
	sums = calloc(len ? len : 1, sizeof(*sums));
	if (!sums)
		goto out;
	for (j = 0; j < len; j++) {
		const struct vmstats_entry *e = vmstats_at(all, j);

		vmstats_add(&sums[j], e);
		memcpy(sums[j].id, e->id, sizeof(e->id));
	}
	qsort(sums, len, sizeof(*sums), by_bytes);
	*out = sums;
	*out_len = len < n ? len : n;
	*counted = len;
	ret = 0;
out:
	vmstats_free(all);
	free(all);
	return ret;
}

uint64_t control_vm_stats_lost(struct control *ctl)
{
	uint64_t lost = 0;
	size_t i;

	for (i = 0; i < ctl->shared->nworkers; i++)
		lost += metric_get(&ctl->shared->workers[i].vmstats.lost);
	return lost + atomic_load_explicit(&ctl->vm_top_lost,
					   memory_order_relaxed);
}
