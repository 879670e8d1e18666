/* core/pending.c: TEMPORARY weak fallbacks while the admin API
 * (core/admin.c) and route overlays (route/table.c) are being written in
 * parallel; the real definitions override these. Delete this file once
 * both have landed. */
#include <errno.h>
#include <stddef.h>

#include "core/admin.h"
#include "core/log.h"
#include "route/route.h"

__attribute__((weak)) int admin_start(struct admin **out,
				      const struct config_admin *cfg,
				      struct control *ctl)
{
	*out = NULL;
	log_warn("admin", "the admin API is not built in yet");
	return 0;
}

__attribute__((weak)) void admin_stop(struct admin *a)
{
}

__attribute__((weak)) struct route_table *
route_table_derive(struct route_table *base,
		   const struct route_vm_change *changes, size_t changes_len)
{
	return NULL;
}

__attribute__((weak)) bool route_vm_get(const struct route_table *t,
					struct in6_addr *out, const char *id,
					size_t id_len)
{
	return false;
}

__attribute__((weak)) size_t route_vm_count(const struct route_table *t)
{
	return 0;
}

__attribute__((weak)) void route_vm_foreach(
	const struct route_table *t,
	bool (*fn)(void *arg, const char *id, const struct in6_addr *addr),
	void *arg)
{
}
