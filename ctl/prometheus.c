/* ctl/prometheus.c: control_metrics (see control.h), the Prometheus text
 * exposition of the counters the workers keep (core/metrics.h), summed
 * over workers, with the control plane's own (reloads, VMs routed), and
 * with metrics.per_vm the per-VM counters (core/vmstats.h).
 */
#include "ctl/control.h"
#include "ctl/control_int.h"
#include "ctl/fleet.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/metrics.h"
#include "core/vmstats.h"
#include "route/route.h"

static void sum(uint64_t *out, const metric_t *m, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		out[i] += metric_get(&m[i]);
}

/* metrics.per_vm: the series of the metrics.per_vm_max VMs with the most
 * bytes; how many VMs that leaves out is a gauge of its own. VM ids are
 * DNS labels: nothing in them needs escaping. Returns 0 or -ENOMEM. */
static int per_vm(struct control *ctl, FILE *f)
{
	static const struct {
		const char *name, *type, *help;
		size_t off;
	} series[] = {
		{ "vmgate_vm_connections_accepted_total", "counter",
		  "Client connections routed to the VM.",
		  offsetof(struct vmstats_sum, accepted) },
		{ "vmgate_vm_connections_rejected_total", "counter",
		  "Client connections for the VM refused (port denied, no "
		  "certificate signs).",
		  offsetof(struct vmstats_sum, rejected) },
		{ "vmgate_vm_connections_open", "gauge",
		  "Client connections to the VM open.",
		  offsetof(struct vmstats_sum, open) },
		{ "vmgate_vm_connect_errors_total", "counter",
		  "Connects to the VM that failed.",
		  offsetof(struct vmstats_sum, connect_errors) },
	};
	struct vmstats_sum *top;
	size_t len, counted, i, k;

	if (control_vm_top(ctl, &top, &len, &counted,
			   ctl->shared->cfg->metrics.per_vm_max))
		return -ENOMEM;
	for (k = 0; k < sizeof(series) / sizeof(series[0]); k++) {
		fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", series[k].name,
			series[k].help, series[k].name, series[k].type);
		for (i = 0; i < len; i++)
			fprintf(f, "%s{vm=\"%s\"} %llu\n", series[k].name,
				top[i].id, (unsigned long long)*(const uint64_t *)
				((const char *)&top[i] + series[k].off));
	}
	fprintf(f, "# HELP vmgate_vm_bytes_total Plaintext bytes relayed, by "
		"VM.\n# TYPE vmgate_vm_bytes_total counter\n");
	for (i = 0; i < len; i++)
		fprintf(f, "vmgate_vm_bytes_total{vm=\"%s\",direction="
			"\"client_to_vm\"} %llu\n"
			"vmgate_vm_bytes_total{vm=\"%s\",direction="
			"\"vm_to_client\"} %llu\n",
			top[i].id, (unsigned long long)top[i].bytes_up,
			top[i].id, (unsigned long long)top[i].bytes_down);
	fprintf(f, "# HELP vmgate_vm_series_dropped VMs counted but left out "
		"of the vmgate_vm_* series (metrics.per_vm_max, by bytes).\n"
		"# TYPE vmgate_vm_series_dropped gauge\n"
		"vmgate_vm_series_dropped %zu\n", counted - len);
	free(top);
	return 0;
}

char *control_metrics(struct control *ctl, size_t *out_len)
{
	uint64_t reasons[REASON_COUNT] = {0},
		 cerrs[METRIC_CONNECT_ERRORS] = {0}, v[8] = {0};
	uint64_t open;
	const char *name;
	char *buf = NULL;
	size_t i, len = 0;
	enum conn_reason r;
	FILE *f;

	for (i = 0; i < ctl->shared->nworkers; i++) {
		struct worker *w = &ctl->shared->workers[i];
		const struct metrics *m = &w->metrics;

		sum(reasons, m->reasons, REASON_COUNT);
		sum(cerrs, m->connect_errors, METRIC_CONNECT_ERRORS);
		v[0] += metric_get(&m->accepted);
		v[1] += metric_get(&m->bytes_up);
		v[2] += metric_get(&m->bytes_down);
		v[3] += metric_get(&m->handshakes_full);
		v[4] += metric_get(&m->handshakes_resumed);
		v[5] += metric_get(&m->overload_drops);
	}
	/* What the workers hold, as of their last loop (not accepted minus
	 * the ways connections end: those are summed over workers read at
	 * different moments, and a max_connections reject was never
	 * accepted). */
	open = control_live_connections(ctl);

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
	/* How the kernel spreads connections (SO_REUSEPORT, behind
	 * sk_lookup or not) shows here. */
	fprintf(f, "# HELP vmgate_worker_accepted_total Client connections "
		"accepted, by worker.\n"
		"# TYPE vmgate_worker_accepted_total counter\n");
	for (i = 0; i < ctl->shared->nworkers; i++)
		fprintf(f, "vmgate_worker_accepted_total{worker=\"%zu\"} %llu\n",
			i, (unsigned long long)metric_get(
				   &ctl->shared->workers[i].metrics.accepted));
	fprintf(f, "# HELP vmgate_connections_closed_total Relayed or "
		"half-made connections ended, by outcome.\n"
		"# TYPE vmgate_connections_closed_total counter\n");
	for (r = REASON_NONE + 1; r < REASON_COUNT; r++)
		if (reason_family(r) == REASON_CLOSE)
			fprintf(f, "vmgate_connections_closed_total"
				"{outcome=\"%s\"} %llu\n", reason_name(r),
				(unsigned long long)reasons[r]);
	fprintf(f, "# HELP vmgate_rejects_total Connections refused before "
		"the relay (the hello, the route, the VM connect, a limit), "
		"by reason.\n"
		"# TYPE vmgate_rejects_total counter\n");
	for (r = REASON_NONE + 1; r < REASON_COUNT; r++)
		if (reason_family(r) == REASON_REJECT)
			fprintf(f, "vmgate_rejects_total{reason=\"%s\"} %llu\n",
				reason_name(r), (unsigned long long)reasons[r]);
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
	fprintf(f, "# HELP vmgate_overload_drops_total Connections refused by "
		"an overload limit: max_connections (closed at once) or "
		"max_connections_per_ip (refused with an alert).\n"
		"# TYPE vmgate_overload_drops_total counter\n"
		"vmgate_overload_drops_total %llu\n", (unsigned long long)v[5]);
	fprintf(f, "# HELP vmgate_vm_stats_lost_total Connections not counted "
		"per VM: no room for the VM's entry.\n"
		"# TYPE vmgate_vm_stats_lost_total counter\n"
		"vmgate_vm_stats_lost_total %llu\n",
		(unsigned long long)control_vm_stats_lost(ctl));
	if (ctl->shared->cfg->metrics.per_vm && per_vm(ctl, f)) {
		fclose(f);
		free(buf);
		return NULL;
	}
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
	if (ctl->fleet)
		fleet_metrics(ctl->fleet, f);
	if (fclose(f)) {
		free(buf);
		return NULL;
	}
	*out_len = len;
	return buf;
}
