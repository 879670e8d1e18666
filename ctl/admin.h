/* ctl/admin.h: the operators' HTTP API (admin: in appliance.yaml).
 *
 * Its own thread and its own io_uring serve plain HTTP/1.1 on a TCP
 * listener and/or a Unix socket; requests become calls into ctl/control.h.
 * GET /health needs no token; every other endpoint needs
 * "Authorization: Bearer <token>" (token_file's contents, trailing
 * whitespace removed), compared in constant time.
 */
#ifndef VMGATE_CTL_ADMIN_H
#define VMGATE_CTL_ADMIN_H

#include "ctl/control.h"
#include "route/config-t.h"

struct admin;

/* admin_start opens the listeners of |cfg| and starts serving; the token
 * is read now. Returns 0 or -errno, having logged why. */
int admin_start(struct admin **out, const struct config_admin *cfg,
		struct control *ctl);

/* admin_stop stops the thread and frees everything; NULL is fine. */
void admin_stop(struct admin *a);

#endif
