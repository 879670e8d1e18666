/* ctl/control.h: the control plane: reloads, VM changes made through the
 * admin API, their persistence, and the snapshots the workers route with.
 *
 * Workers route with an immutable snapshot {route table, certificate
 * store}. A change builds a new snapshot off the data path and publishes it
 * with one atomic pointer swap; a worker picks it up at the top of its next
 * loop (within one timer tick), and the old snapshot is freed once every
 * worker has moved past it. Established connections keep what they have.
 *
 * The VMs a snapshot routes to are the file's (appliance.yaml vms:) changed
 * by the API's (PUT and DELETE), which take precedence and persist in
 * admin.state_file: written to a temporary file, fsynced and renamed before
 * a change is acknowledged, so an acknowledged change survives a crash.
 *
 * Every function here may be called from any thread; they are serialised by
 * one mutex. All return 0 or -errno, with a message in |err| when they fail.
 */
#ifndef VMGATE_CTL_CONTROL_H
#define VMGATE_CTL_CONTROL_H

#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define VMGATE_VERSION "0.1.0"

struct config;
struct control;
struct fleet;
struct shared;
struct tls_ctx;

/* For ctl/main.c: control_new takes |tls| (built from shared->cfg, the
 * startup config) and publishes the first snapshot, applying the state
 * file's changes; control_run is the main thread's loop until SIGTERM or
 * SIGINT (returned), reloading on SIGHUP and on file changes; |sigs| are
 * blocked in every thread. */
int control_new(struct control **out, struct shared *shared, const char *path,
		struct tls_ctx *tls, bool verbose, char *err, size_t err_len);

/* control_loaded_at says when the startup file and what it names began to
 * be read (CLOCK_REALTIME): a watched file changed since (before its watch
 * began) is read again once control_run starts. Call before control_new;
 * without it, nothing is read again. */
void control_loaded_at(const struct timespec *t);
int control_run(struct control *ctl, const sigset_t *sigs);
void control_free(struct control *ctl); /* NULL is fine */

/* control_stopping: shutdown has begun (control_run returned). In fleet
 * mode every etcd call, running or to come, fails at once (fleet_cancel),
 * so that neither the admin API's writer nor the fleet thread holds up
 * joining them: limits.drain_timeout_ms bounds shutdown, not
 * fleet.etcd.timeout_ms. Call it before admin_stop; NULL is fine. */
void control_stopping(struct control *ctl);

/* control_reload re-reads appliance.yaml (and the certificates it names)
 * and the state file, and publishes the result. -EINVAL: the file is
 * invalid; |err| holds its errors, one "FILE:LINE:COL: message" per line,
 * and nothing changed. |why| names the trigger in the log line
 * ("SIGHUP", "file", "api"). */
int control_reload(struct control *ctl, const char *why, char *err,
		   size_t err_len);

/* control_on_reload registers |fn| (NULL: none), called with |arg| and
 * the new file's settings on the reloading thread, under the control's
 * lock, each time a reload has made a new file win: the admin API re-reads
 * its token file there. One at a time; the caller unregisters before
 * |arg| goes away. */
void control_on_reload(struct control *ctl,
		       void (*fn)(void *arg, const struct config *cfg),
		       void *arg);

/* control_vm_put sets VM |id| to |address| (an IPv6 literal) and |ports|
 * (copied; NULL: every port), persists the change and publishes it.
 * -EINVAL: |id| is not a valid label or |address| not an IPv6 address
 * (|err| says which); -EIO: the state file could not be written (nothing
 * changed). |*out_created| tells whether the VM was new to the routed
 * set. */
struct config_vm_ports;
int control_vm_put(struct control *ctl, bool *out_created, const char *id,
		   const char *address, const struct config_vm_ports *ports,
		   char *err, size_t err_len);

/* control_vm_ports_json reads a VM's ports as the API and the state file
 * write them, a JSON list of ports (1..65535) and "from-to" strings, into
 * |*out| (malloc'd). -EINVAL with |err| saying why. */
struct json_t;
int control_vm_ports_json(struct config_vm_ports **out,
			  const struct json_t *list, char *err,
			  size_t err_len);

/* control_vm_ports_get writes VM |id|'s ports (a copy to free(), NULL
 * for every port); -ENOENT if it is not routed. */
int control_vm_ports_get(struct control *ctl, struct config_vm_ports **out,
			 const char *id);

/* control_vm_delete removes VM |id| (whether it came from the file or the
 * API), persists and publishes. -ENOENT: no such VM; -EIO as above. */
int control_vm_delete(struct control *ctl, const char *id, char *err,
		      size_t err_len);

/* control_vm_get writes VM |id|'s address; -ENOENT if it is not routed. */
int control_vm_get(struct control *ctl, struct in6_addr *out, const char *id);

/* control_vm_foreach calls |fn| for every routed VM until it returns
 * false, on the current snapshot (consistent, however long it takes). */
void control_vm_foreach(struct control *ctl,
			bool (*fn)(void *arg, const char *id,
				   const struct in6_addr *addr),
			void *arg);

/* control_metrics returns the Prometheus text exposition of every counter
 * (malloc'd, NUL-terminated, length in |*out_len|), or NULL when out of
 * memory. */
char *control_metrics(struct control *ctl, size_t *out_len);

/* Per-VM counters (core/vmstats.h), summed over workers as of their last
 * store (ctl/vmstats.c). control_vm_stats sums VM |id|'s into |out| (its
 * id normalised) and returns 0, -EINVAL if |id| is not a VM id, or
 * -ENOENT if no worker counted it and it is not routed. control_vm_top
 * returns in |*out| (free()) the |n| VMs with the most bytes (both ways;
 * ties by id), |*out_len| of them, with |*counted| the VMs counted at
 * all: 0 or -ENOMEM. Both walk every worker's entries: O(VMs counted). */
struct vmstats_sum;
int control_vm_stats(struct control *ctl, struct vmstats_sum *out,
		     const char *id);
int control_vm_top(struct control *ctl, struct vmstats_sum **out,
		   size_t *out_len, size_t *counted, size_t n);
/* control_vm_stats_lost: lookups that found no room for a VM's entry,
 * and the VMs the last control_vm_top left out for want of room. */
uint64_t control_vm_stats_lost(struct control *ctl);

/* control_fleet returns the fleet (ctl/fleet.h) in fleet mode, else
 * NULL. */
struct fleet *control_fleet(struct control *ctl);

/* control_draining: SIGTERM came (a stop, or a newer vmgate taking over
 * with --takeover); vmgate drains. */
bool control_draining(struct control *ctl);

/* control_takeover: this vmgate takes over from the one of |old_pid|
 * (--takeover), which read the state file before the old one stopped
 * changing it. Until the old process has exited (or |wait_ms| has
 * passed), the admin API changes nothing (control_takeover_pending: its
 * writes answer 503); then the state file is read again, whole, and what
 * the old one persisted meanwhile is routed. Call before control_run. */
void control_takeover(struct control *ctl, int old_pid, uint32_t wait_ms);
bool control_takeover_pending(struct control *ctl);

/* control_healthy tells whether every worker has turned its loop within
 * the last two seconds. */
bool control_healthy(struct control *ctl);

#endif
