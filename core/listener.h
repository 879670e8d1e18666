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

/* listener_admin_covers: the admin API of |cfg| listens on [|addr|]
 * at its port, or on every address ("::", "0.0.0.0"), or |addr| is
 * "::" (every address). That port there is the API's, never the data
 * plane's: steering leaves it unsteered, per-port listeners unopened. */
bool listener_admin_covers(const struct config *cfg,
			   const struct in6_addr *addr);

/* listener_open binds and listens on [|addr|]:|port|. Returns the fd or
 * -errno. */
int listener_open(const struct in6_addr *addr, uint16_t port);

/* listener_listen binds |fd| to |sa| and listens with |backlog|. While the
 * address is in use (EADDRINUSE), it tries again with a back-off from 10
 * to 200 ms for up to 5 s, logging once that it waits and what holds the
 * port; after that it logs the holder again and returns -EADDRINUSE.
 * |what| ("listener=data") starts those log lines. Blocks the caller.
 * Returns 0 or -errno. */
int listener_listen(int fd, const struct sockaddr_in6 *sa, int backlog,
		    const char *what);

/* listener_arm keeps w->accepts accepts in flight on every
 * listener of |w| (unless it is backing off after an error). With
 * ring_direct they accept into the ring's file table. */
void listener_arm(struct worker *w);

/* listener_close_all stops accepting: cancels the accepts in flight and
 * closes every listener of |w| (SIGTERM's drain). */
void listener_close_all(struct worker *w);

/* listener_complete handles an accept completion. */
void listener_complete(struct worker *w, const struct io_uring_cqe *cqe);

#endif
