/* core/listener.h: listening sockets and their accepts.
 *
 * Every worker has its own socket per port, all bound to the same
 * [address]:port with SO_REUSEPORT, so the kernel spreads new connections
 * over the workers. Sockets are dual-stack: IPv4 clients arrive as
 * v4-mapped addresses.
 */
#ifndef VMGATE_CORE_LISTENER_H
#define VMGATE_CORE_LISTENER_H

#include <netinet/in.h>
#include <stdint.h>

#include "core/worker.h"

/* listener_open binds and listens on [|addr|]:|port|. Returns the fd or
 * -errno. */
int listener_open(const struct in6_addr *addr, uint16_t port);

/* listener_arm keeps w->accepts accepts in flight on every
 * listener of |w| (unless it is backing off after an error). With
 * CONFIG_DIRECT_DESCRIPTORS they accept into the ring's file table. */
void listener_arm(struct worker *w);

/* listener_close_all stops accepting: cancels the accepts in flight and
 * closes every listener of |w| (SIGTERM's drain). */
void listener_close_all(struct worker *w);

/* listener_complete handles an accept completion. */
void listener_complete(struct worker *w, const struct io_uring_cqe *cqe);

#endif
