/* ctl/fleet.h: fleet mode (README "Fleet mode"): VMs from etcd, merged
 * over appliance.yaml's vms: the way the admin API's changes are.
 *
 * At start the snapshot file (the last etcd VMs this appliance applied,
 * and their revision) is loaded and published before any worker runs, so
 * the appliance serves at once. Then a thread of its own (control plane:
 * the data path never waits on it) reads {prefix}vms/ from etcd in pages
 * at one pinned revision, or, when the snapshot's revision is still in
 * etcd's history, skips that and only watches from it. Watch events are
 * applied in batches, at most one table swap every few milliseconds. A
 * compaction means a full re-read and a swap; etcd down means routing on
 * with the last table, retrying with capped exponential backoff and
 * jitter across the endpoints.
 *
 * The appliance registers {prefix}appliances/{appliance_id} on a lease it
 * keeps alive. In fleet mode the admin API's PUT and DELETE /vms/ID write
 * to etcd (fleet_vm_put, fleet_vm_delete).
 */
#ifndef VMGATE_CTL_FLEET_H
#define VMGATE_CTL_FLEET_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct control;
struct fleet;
struct route_table;

/* For ctl/control.c, under the control lock. fleet_new loads the
 * snapshot file and builds the first fleet table (0, or -errno with
 * |err|: an unreadable snapshot is only a warning); fleet_start starts
 * the thread; fleet_free stops and frees (NULL is fine). */
int fleet_new(struct fleet **out, struct control *ctl, char *err,
	      size_t err_len);
int fleet_start(struct fleet *f);
void fleet_free(struct fleet *f);

/* fleet_cancel: vmgate is stopping. The thread stops, and every etcd call
 * of the fleet, its own and the admin API's writes (etcd_cancel), fails
 * at once with -ECANCELED and ETCD_CANCELLED, "cancelled: vmgate is
 * stopping", a running one within about a second; wait_applied stops
 * waiting. Any thread, before the threads that call into the fleet are
 * joined (fleet_free does it too); NULL is fine; not undone.
 * fleet_cancelled says whether it was called. */
void fleet_cancel(struct fleet *f);
bool fleet_cancelled(struct fleet *f);

/* The file's VMs with etcd's over them, rebuilt (under the lock; -ENOMEM
 * leaves the old one). */
int fleet_rebuild_locked(struct fleet *f);

/* The same in steps, for a reload that must not commit to a new file
 * before its table is built: the table of |fc|'s VMs with etcd's over
 * them (NULL: out of memory); once the caller has made it the fleet
 * table, the changes applied since the last rebuild (in it now) are
 * cleared. Under the lock. */
struct config;
struct route_table;
struct route_table *fleet_table_for_locked(struct fleet *f,
					    const struct config *fc);
void fleet_changes_clear_locked(struct fleet *f);

/* The changes applied since the last rebuild, for a snapshot: a table
 * derived from |base| (NULL when out of memory), and their count. */
size_t fleet_changes_len_locked(const struct fleet *f);
struct route_table *fleet_derive_locked(struct fleet *f,
					struct route_table *base);

/* Admin API writes, through etcd (a txn on the key's mod_revision),
 * acknowledged once etcd committed and this appliance applied it, or
 * after timeout_ms without that (|*out_applied| false: the watch applies
 * it when it catches up). |ports|
 * (NULL: every port) go into the value as "ports".
 * -EINVAL: bad id or address, or ports too many for a value (|err|); -ENOENT: no such VM in etcd;
 * -EPERM: the VM comes from appliance.yaml only; -EHOSTUNREACH: etcd
 * unreachable (nothing changed); -EBUSY: lost a race too many times. */
struct config_vm_ports;
int fleet_vm_put(struct fleet *f, bool *out_created, bool *out_applied,
		 const char *id, const char *address,
		 const struct config_vm_ports *ports, char *err, size_t err_len);
int fleet_vm_delete(struct fleet *f, bool *out_applied, const char *id,
		    char *err, size_t err_len);

/* GET /fleet's answer (asks etcd for the other appliances), and /health's
 * fleet detail; both new references. */
json_t *fleet_status_json(struct fleet *f);
json_t *fleet_health_json(struct fleet *f);

/* Prometheus lines for control_metrics. */
void fleet_metrics(struct fleet *f, FILE *out);

#endif
