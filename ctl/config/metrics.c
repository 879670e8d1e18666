/* ctl/config/metrics.c: the metrics: section (per_vm, per_vm_max). */
#include <string.h>

#include "ctl/config/ld.h"

static void key_metrics_per_vm(struct ld *ld, yaml_node_t *v)
{
	struct show_buf b;
	const char *s;

	if (!ld_get_str(ld, v, "metrics.per_vm", &s))
		return;
	if (!strcmp(s, "true"))
		ld->c->metrics.per_vm = true;
	else if (!strcmp(s, "false"))
		ld->c->metrics.per_vm = false;
	else
		ld_err(ld, v, "metrics.per_vm: expected true or false, got "
		       "'%s'", ld_show(&b, s, ld_slen(v)));
}

static void key_metrics_per_vm_max(struct ld *ld, yaml_node_t *v)
{
	long long n;

	/* Each VM is 6 series: a scrape of the cap's worth stays a few
	 * megabytes. */
	if (ld_get_int(ld, v, "metrics.per_vm_max", 1, 100000, &n))
		ld->c->metrics.per_vm_max = (uint32_t)n;
}

static const struct config_key metrics_keys[] = {
	{ "per_vm", key_metrics_per_vm, false },
	{ "per_vm_max", key_metrics_per_vm_max, false },
};

void ld_key_metrics(struct ld *ld, yaml_node_t *v)
{
	ld_walk_map(ld, v, "metrics", metrics_keys,
		    sizeof(metrics_keys) / sizeof(metrics_keys[0]), NULL);
}
