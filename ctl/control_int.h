/* ctl/control_int.h: what the files of the control module share (see
 * control.h for its interface): its state, struct control, and the few
 * functions one file calls in another.
 *
 *   control.c     snapshots and their publishing, reload, setup, and the
 *                 main thread's loop (signals, drain on SIGTERM)
 *   overlay.c     the API's VM changes and the state file they persist in
 *   watch.c       inotify on the files a reload reads
 *   prometheus.c  the Prometheus text exposition of the workers' counters
 *   fleet.c       fleet mode: VMs from etcd (fleet.h)
 *
 * Nothing outside ctl/control*.c, overlay.c, watch.c, prometheus.c and fleet.c
 * includes it.
 */
#ifndef VMGATE_CTL_CONTROL_INT_H
#define VMGATE_CTL_CONTROL_INT_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/worker.h"
#include "ctl/control.h"

/* A certificate store shared by every snapshot built from one file load. */
struct tls_ref {
	struct tls_ctx *ctx;
	unsigned refs; /* under control.lock */
};

/* A route table built from one file load, shared by every snapshot that
 * routes with it (directly, or under an overlay of API changes). */
struct base_ref {
	struct route_table *t;
	unsigned refs; /* under control.lock */
};

/* What a snapshot owns, behind snapshot.owner. */
struct snap_own {
	struct tls_ref *tls;
	struct base_ref *base;
	struct route_table *derived; /* base + API changes, or NULL */
};

struct override {
	char *id; /* normalised */
	struct in6_addr addr;
	struct config_vm_ports *ports; /* owned; NULL: every port */
	bool removed;
};

struct watch {
	int wd;  /* -1: the directory could not be watched */
	char *dir;
	char **names; /* basenames that trigger a reload */
	bool *subdir; /* [names_cap]: the name is a directory awaited on the
		       * way to a watched one that does not exist yet */
	size_t names_cap;
	size_t names_len;
	char *via; /* this directory does not exist: the nearest one that
		    * does, watched for the next step towards it; or NULL */
	int err;   /* why inotify_add_watch failed (wd -1) */
};

struct control {
	pthread_mutex_t lock;
	struct shared *shared;
	/* VMs the last per-VM join (control_vm_top) had no room for. */
	_Atomic uint64_t vm_top_lost;
	const char *path;
	bool verbose; /* -v: debug logging whatever the file says */

	struct config *cfg; /* last good file; NULL: still the startup one */
	struct base_ref *base;
	struct tls_ref *tls;
	/* Fleet mode (ctl/fleet.c): the file's VMs with etcd's over them,
	 * which snapshots route with instead of |base|; NULL otherwise. */
	struct fleet *fleet;
	struct base_ref *fbase;
	struct override *ov;
	size_t ov_len, ov_cap;
	const char *state_file; /* NULL: API changes are not persisted */

	uint64_t epoch;
	struct snapshot **retired;
	size_t retired_len, retired_cap;

	uint64_t reloads_ok, reloads_failed;
	void (*on_reload)(void *arg, const struct config *cfg);
	void *on_reload_arg;

	/* --takeover (control_takeover): the old vmgate's pid until it has
	 * exited or takeover_until_ms passed; takeover_pending under lock. */
	int takeover_pid;
	uint64_t takeover_until_ms;
	bool takeover_pending;

	int ifd; /* inotify */
	struct watch *watches;
	size_t watches_len;
	/* A directory that did not exist is watched now: files written in
	 * it before its watch began were not seen (control_run reloads). */
	bool watch_caught_up;
};

static inline const struct config *file_cfg(const struct control *ctl)
{
	return ctl->cfg ? ctl->cfg : ctl->shared->cfg;
}

static inline struct snapshot *current(const struct control *ctl)
{
	return atomic_load(&ctl->shared->snap);
}

/* control.c: publishes a snapshot of the current base, certificates and
 * API changes (-ENOMEM); under the lock. */
int control_republish_locked(struct control *ctl);

/* control.c: makes |t| the fleet table (taken, freed on failure) and
 * publishes; under the lock. */
int control_set_fbase_locked(struct control *ctl, struct route_table *t);

/* control.c: the client connections the workers hold, as of their last
 * loop. */
uint32_t control_live_connections(const struct control *ctl);

/* overlay.c: reads the state file's VM changes into ctl->ov (0 when there
 * is none; -EINVAL with |err| when it is invalid). */
int control_load_state(struct control *ctl, char *err, size_t err_len);

/* overlay.c: the API's changes replaced by the state file's, whole (on
 * failure they stay as they were), and published. Under the lock. */
int control_reread_state_locked(struct control *ctl, char *err,
				size_t err_len);

/* overlay.c: fsync(2) of the folder holding |path|, so that a rename into
 * it survives a crash (the state file's and the fleet snapshot's last
 * step). 0 or -errno. */
int control_fsync_dir(const char *path);

/* watch.c: watches the files the current config names and, when not
 * NULL, those |also| names and the |missing_len| paths of |missing| (a
 * new file a reload could not use or find yet: the files it lacked are
 * watched for); nothing when ctl->ifd < 0. A directory that does not
 * exist is watched for from the nearest one that does. Under the lock. A
 * directory watched before keeps its watch, so events already queued for
 * it still count. */
void control_rewatch_locked(struct control *ctl, const struct config *also,
			    char *const *missing, size_t missing_len);

/* watch.c: has a watched file (or a link on the way to it) been written
 * or replaced at |t| or later (CLOCK_REALTIME_COARSE, the clock of file
 * times)? */
bool control_watched_changed_since(const struct control *ctl,
				   const struct timespec *t);

/* watch.c: frees the watch list (control_free). */
void control_watches_free(struct control *ctl);

/* watch.c: does this batch of inotify events name a watched file? Takes
 * the lock. */
bool control_events_match(struct control *ctl, const uint8_t *buf,
			  size_t len);

#endif
