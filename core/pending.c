/* core/pending.c: TEMPORARY weak fallbacks while the admin API
 * (core/admin.c) is being written in parallel; the real definitions
 * override these. Delete this file once it has landed. */
#include <errno.h>
#include <stddef.h>

#include "core/admin.h"
#include "core/log.h"

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
