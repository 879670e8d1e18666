/* core/steer.h: sk_lookup steering, the loader of core/steer.bpf.c.
 *
 * In sk_lookup mode each worker has one dual-stack listener, all of them
 * in one SO_REUSEPORT group on ::ffff:127.0.0.1 and an ephemeral port, and the BPF
 * program attached to the network namespace hands them every connection
 * to a steered address and port (see steer.bpf.c). The program is attached
 * with a bpf_link the process holds: it goes when the process does, so a
 * killed vmgate leaves nothing attached. The maps are updated in place on
 * reload; established connections never go through the program again.
 *
 * Upgrades: with a pin directory (on a bpffs) the maps are pinned there,
 * so that a new vmgate on the same configuration loads the same maps
 * (its own program and link beside the old one's, reading them). With
 * takeover it binds its listeners to the old process's listener port
 * (steer_meta), joining their SO_REUSEPORT group, puts them in the
 * listener map in place of the old ones (steer_commit) and sends the old
 * process SIGTERM: new connections go to the new listeners at once, the
 * old one drains, and what was queued on its listeners moves to the new
 * ones as they close (sysctl net.ipv4.tcp_migrate_req=1). The last owner
 * to stop normally removes the pins.
 *
 * Loading and attaching need CAP_BPF and CAP_NET_ADMIN (or CAP_SYS_ADMIN);
 * updating the maps through the descriptors held afterwards needs none.
 * Functions return 0 or -errno; an error of steer_open says why in |err|.
 */
#ifndef VMGATE_CORE_STEER_H
#define VMGATE_CORE_STEER_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "route/config-t.h"

struct steer;

/* steer_open loads the program and its maps and attaches it to the
 * calling thread's network namespace. |pin_dir|: where the maps are
 * pinned (created if missing; must be on a bpffs), or NULL for none.
 * Without |takeover| it refuses maps that a live vmgate steers with;
 * with it, it takes them over (see above). On failure *out is NULL. */
int steer_open(struct steer **out, const char *pin_dir, bool takeover,
	       char *err, size_t err_len);

/* steer_old_port is the listener port to join (the old process's, on
 * takeover) or 0; steer_old_pid the process taken over, or 0. */
uint16_t steer_old_port(const struct steer *s);
int steer_old_pid(const struct steer *s);

/* steer_commit records this process as the maps' owner with |n|
 * listeners on |port| (slots past |n| emptied), after steer_apply; on
 * takeover it then sends the old process SIGTERM. Returns 0 or -errno. */
int steer_commit(struct steer *s, unsigned n, uint16_t port);

/* steer_add_listener puts listener |fd| (a listening TCP socket) in slot
 * |i| (< STEER_SOCKS_MAX) of the listener map. */
int steer_add_listener(struct steer *s, unsigned i, int fd);

/* steer_apply makes the maps steer |cfg|'s listen.addresses and
 * listen.ports (already without listen.exclude_ports), less admin.listen's
 * port when its address is steered: entries that are no longer wanted are
 * removed, new ones added, the rest untouched. An address map too full
 * for the new addresses before the old ones go gives way: the old ones
 * are removed first then. */
int steer_apply(struct steer *s, const struct config *cfg);

/* steer_dirty: the last steer_apply failed part way, so the maps may hold
 * what no configuration asked for: the next one must run even for a
 * configuration that looks the same. */
bool steer_dirty(const struct steer *s);

/* steer_check_writable rewrites one entry of the port map with the
 * value it holds: whether this process may still update the maps (with
 * the capabilities it has now). Returns 0 or -errno. */
int steer_check_writable(struct steer *s);

/* steer_link_id is the kernel's id of the bpf_link (for logs and tests);
 * steer_free detaches and frees. NULL is fine. */
uint32_t steer_link_id(const struct steer *s);
void steer_free(struct steer *s);

/* The address the steering listeners are bound to (::ffff:127.0.0.1). */
extern const struct in6_addr steer_listener_ip;

/* steer_listener_open opens the listener of one worker: dual-stack,
 * SO_REUSEPORT, on [::ffff:127.0.0.1]:|*port|; with *port == 0 it picks an ephemeral
 * port and writes it to |*port| (the first worker), so that the others
 * join the same group. Returns the fd or -errno. */
int steer_listener_open(uint16_t *port);

#endif
