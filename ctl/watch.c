/* ctl/watch.c: inotify on the directories of appliance.yaml and of the
 * certificate files; control_run (control.c) reads the events and reloads
 * when one names a watched file.
 *
 * A directory that does not exist yet (a certificate deployed to a new
 * directory, named in appliance.yaml first) cannot be watched: the
 * nearest directory above it that exists is watched for the next name on
 * the way, and its arrival reloads, which watches one step further. A
 * directory watched only once it existed may already hold the files
 * written in it since: ctl->watch_caught_up asks control_run for one more
 * reload.
 */
#include "ctl/control_int.h"

#include <errno.h>
#include <libgen.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <stdio.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "route/config-t.h"

/* What each directory is watched for: a file written (IN_CLOSE_WRITE),
 * renamed into place (IN_MOVED_TO: editors, deploy tools), a symlink
 * made anew (IN_CREATE: certbot replaces live/NAME.pem links), or its
 * mode or owner changed (IN_ATTRIB: a key vmgate could not read put
 * right with chmod or chown); and the directory itself moved away
 * (IN_MOVE_SELF; one deleted ends its watch with IN_IGNORED): it is then
 * watched anew at its path. */
#define WATCH_MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_ATTRIB | \
		    IN_MOVE_SELF)

static void watch_free(struct watch *w)
{
	size_t i;

	for (i = 0; i < w->names_len; i++)
		free(w->names[i]);
	free(w->names);
	free(w->subdir);
	free(w->dir);
	free(w->via);
}

void control_watches_free(struct control *ctl)
{
	size_t i;

	for (i = 0; i < ctl->watches_len; i++)
		watch_free(&ctl->watches[i]);
	free(ctl->watches);
	ctl->watches = NULL;
	ctl->watches_len = 0;
}

/* Adds |dir| and |base| in it (a directory awaited if |subdir|) to the
 * set |ws| (|*len| entries, wd -1 until watched). False when out of
 * memory. */
static bool want_name(struct watch **ws, size_t *len, const char *dir,
		      const char *base, bool subdir)
{
	struct watch *w = NULL;
	size_t i;

	for (i = 0; i < *len; i++)
		if (!strcmp((*ws)[i].dir, dir))
			w = &(*ws)[i];
	if (!w) {
		struct watch *n = realloc(*ws, (*len + 1) * sizeof(*n));

		if (!n)
			return false;
		*ws = n;
		w = &n[*len];
		memset(w, 0, sizeof(*w));
		w->wd = -1;
		if (!(w->dir = strdup(dir)))
			return false;
		++*len;
	}
	for (i = 0; i < w->names_len; i++)
		if (!strcmp(w->names[i], base)) {
			w->subdir[i] |= subdir;
			return true;
		}
	if (w->names_len == w->names_cap) {
		size_t cap = w->names_cap ? 2 * w->names_cap : 4;
		char **n = realloc(w->names, cap * sizeof(*n));
		bool *s;

		if (!n)
			return false;
		w->names = n;
		if (!(s = realloc(w->subdir, cap * sizeof(*s))))
			return false;
		w->subdir = s;
		w->names_cap = cap;
	}
	if (!(w->names[w->names_len] = strdup(base)))
		return false;
	w->subdir[w->names_len++] = subdir;
	return true;
}

/* Adds |path|'s directory and name to the set |ws|. */
static bool want_file(struct watch **ws, size_t *len, const char *path)
{
	char *dcopy = strdup(path), *bcopy = strdup(path);
	bool ok = dcopy && bcopy &&
		  want_name(ws, len, dirname(dcopy), basename(bcopy), false);

	free(dcopy);
	free(bcopy);
	return ok;
}

/* Every symlink on the way to |path|, in its directories or the file
 * itself, is watched by its name in the directory that holds it: a link
 * replaced (a Kubernetes Secret's or ConfigMap's ..data swapped by
 * rename, certbot's live/ links, a directory moved into place) reloads.
 * A write to the file a link leads to, where it lives, is not seen
 * (SIGHUP then): deploy tools replace links, not what they point at.
 * |path| itself is watched by the caller. Parts that do not exist end the
 * walk (want_way_to waits for them). False when out of memory. */
static bool want_links(struct watch **ws, size_t *len, const char *path)
{
	char cur[PATH_MAX] = "", rest[PATH_MAX], next[PATH_MAX],
	     link[PATH_MAX];
	int hops = 0;

	/* A relative path (vmgate -c appliance.yaml) from the working
	 * directory, as the files are opened. */
	if (path[0] != '/') {
		char cwd[PATH_MAX];

		if (!getcwd(cwd, sizeof(cwd)) ||
		    (size_t)snprintf(rest, sizeof(rest), "%s/%s", cwd, path) >=
			    sizeof(rest))
			return true;
	} else if ((size_t)snprintf(rest, sizeof(rest), "%s", path) >=
		   sizeof(rest)) {
		return true;
	}
	for (;;) {
		char *r = rest, *comp;
		size_t n;
		struct stat st;
		ssize_t ln;

		while (*r == '/')
			r++;
		if (!*r)
			break;
		comp = r;
		n = strcspn(r, "/");
		r += n;
		if (*r)
			*r++ = '\0';
		if (!strcmp(comp, ".")) {
			memmove(rest, r, strlen(r) + 1);
			continue;
		}
		if (!strcmp(comp, "..")) {
			char *slash = strrchr(cur, '/');

			if (slash)
				*slash = '\0';
			memmove(rest, r, strlen(r) + 1);
			continue;
		}
		if ((size_t)snprintf(next, sizeof(next), "%s/%s", cur, comp) >=
			    sizeof(next) ||
		    lstat(next, &st))
			return true;
		if (!S_ISLNK(st.st_mode)) {
			memcpy(cur, next, strlen(next) + 1);
			memmove(rest, r, strlen(r) + 1);
			continue;
		}
		if (!want_file(ws, len, next))
			return false;
		ln = readlink(next, link, sizeof(link) - 1);
		if (ln <= 0 || ++hops > 40)
			return true;
		link[ln] = '\0';
		/* The link's target, then what was left after it. */
		if ((size_t)snprintf(next, sizeof(next), "%s%s%s", link,
				     *r ? "/" : "", r) >= sizeof(next))
			return true;
		memcpy(rest, next, strlen(next) + 1);
		if (link[0] == '/')
			cur[0] = '\0';
	}
	return true;
}

static bool is_dir(const char *path)
{
	struct stat st;

	return !stat(path, &st) && S_ISDIR(st.st_mode);
}

static bool no_such_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) && errno == ENOENT;
}

/* |ws|[|i|]'s directory does not exist: the nearest one above it that
 * does is watched for the next name on the way (ws[i].via says which).
 * False when out of memory. */
static bool want_way_to(struct watch **ws, size_t *len, size_t i)
{
	char cur[PATH_MAX], up[PATH_MAX], name[PATH_MAX];
	const char *d;

	if ((size_t)snprintf(cur, sizeof(cur), "%s", (*ws)[i].dir) >=
	    sizeof(cur))
		return true; /* too long to walk: SIGHUP then */
	for (;;) {
		memcpy(up, cur, strlen(cur) + 1);
		d = dirname(up);
		if (!strcmp(d, cur))
			return true; /* "/" or "." itself is missing */
		if (is_dir(d))
			break;
		memmove(cur, d, strlen(d) + 1);
	}
	memcpy(name, cur, strlen(cur) + 1);
	if (!((*ws)[i].via = strdup(d)))
		return false;
	return want_name(ws, len, (*ws)[i].via, basename(name), true);
}

/* A file a configuration names: its directory, and the links on the way
 * to it. */
static bool want_path(struct watch **ws, size_t *len, const char *path)
{
	return want_file(ws, len, path) && want_links(ws, len, path);
}

static bool want_config(struct watch **ws, size_t *len,
			const struct config *cfg)
{
	bool ok = true;
	size_t i;

	for (i = 0; i < cfg->certs_len; i++) {
		ok &= want_path(ws, len, cfg->certs[i].cert_path);
		ok &= want_path(ws, len, cfg->certs[i].key_path);
		if (cfg->certs[i].ocsp_path)
			ok &= want_path(ws, len, cfg->certs[i].ocsp_path);
	}
	for (i = 0; i < cfg->domains_len; i++)
		if (cfg->domains[i].client_ca_path)
			ok &= want_path(ws, len,
					cfg->domains[i].client_ca_path);
	/* A new token written to it reloads, and the admin API reads it. */
	if (cfg->admin.enabled && cfg->admin.token_file)
		ok &= want_path(ws, len, cfg->admin.token_file);
	return ok;
}

/* Says why |w| has no watch, and what stands in for it. */
static void warn_unwatched(const struct watch *ws, size_t len,
			   const struct watch *w)
{
	size_t i;

	for (i = 0; w->via && i < len; i++)
		if (!strcmp(ws[i].dir, w->via) && ws[i].wd >= 0) {
			log_warn("watch", "dir=%s error=\"%s\": watched for in "
				 "%s", w->dir, strerror(w->err), w->via);
			return;
		}
	log_warn("watch", "dir=%s error=\"%s\": changes there need SIGHUP",
		 w->dir, strerror(w->err));
}

/* Is |name| in |w|'s directory a directory? */
static bool has_dir(const struct watch *w, const char *name)
{
	char path[PATH_MAX];

	return (size_t)snprintf(path, sizeof(path), "%s/%s", w->dir, name) <
		       sizeof(path) && is_dir(path);
}

void control_rewatch_locked(struct control *ctl, const struct config *also,
			    char *const *missing, size_t missing_len)
{
	struct watch *ws = NULL;
	size_t len = 0, named, i, j;
	bool ok;

	if (ctl->ifd < 0)
		return;
	ok = want_path(&ws, &len, ctl->path) &&
	     want_config(&ws, &len, file_cfg(ctl)) &&
	     (!also || want_config(&ws, &len, also));
	for (i = 0; ok && i < missing_len; i++)
		ok = want_file(&ws, &len, missing[i]);
	named = len;
	for (i = 0; ok && i < named; i++)
		if (no_such_dir(ws[i].dir))
			ok = want_way_to(&ws, &len, i);
	if (!ok) {
		/* The old set stays, as it was. */
		log_warn("watch", "out of memory: the watched files stay as "
			 "they were");
		for (i = 0; i < len; i++)
			watch_free(&ws[i]);
		free(ws);
		return;
	}
	/* A directory watched already keeps its watch descriptor: events
	 * queued for it while a reload ran still name it (one that is gone
	 * now does not: its watch is gone with it; inotify_add_watch on the
	 * same inode gives the same descriptor back). The directories watched
	 * for one that does not exist come last in |ws| and are watched
	 * first, so that a step made meanwhile is seen by one or the other
	 * (or by the look below). */
	for (i = len; i-- > 0;) {
		bool missed = false;
		int prev = -1;

		for (j = 0; j < ctl->watches_len; j++)
			if (!strcmp(ctl->watches[j].dir, ws[i].dir)) {
				if (!ws[i].via)
					prev = ctl->watches[j].wd;
				missed = ctl->watches[j].via != NULL;
			}
		/* Asked again even when watched: the same directory gives
		 * back its descriptor, and a path that leads elsewhere now
		 * (a directory symlink swapped) a new one, whose files
		 * written before it are read. */
		ws[i].wd = inotify_add_watch(ctl->ifd, ws[i].dir, WATCH_MASK);
		if (ws[i].wd >= 0)
			ctl->watch_caught_up |=
				missed || (prev >= 0 && ws[i].wd != prev);
		else
			ws[i].err = errno;
	}
	for (i = 0; i < len; i++)
		if (ws[i].wd < 0)
			warn_unwatched(ws, len, &ws[i]);
	/* Arrived before their watches: a reload reads them. */
	for (i = 0; i < len; i++)
		for (j = 0; j < ws[i].names_len; j++)
			if (ws[i].subdir[j] && has_dir(&ws[i], ws[i].names[j]))
				ctl->watch_caught_up = true;
	/* Only one that can be read now: a file that is there but refused
	 * (EACCES) would fail the reload again, and again every tick; its
	 * mode put right comes as an event (IN_ATTRIB). */
	for (i = 0; i < missing_len; i++)
		if (!access(missing[i], R_OK))
			ctl->watch_caught_up = true;
	/* One no longer needed goes, unless another path names the same
	 * directory (one inode, one watch descriptor). */
	for (j = 0; j < ctl->watches_len; j++) {
		bool kept = ctl->watches[j].wd < 0;

		for (i = 0; !kept && i < len; i++)
			kept = ws[i].wd == ctl->watches[j].wd;
		if (!kept)
			inotify_rm_watch(ctl->ifd, ctl->watches[j].wd);
	}
	control_watches_free(ctl);
	ctl->watches = ws;
	ctl->watches_len = len;
}

/* A created name counts only as a symlink (a link replaced whole); a file
 * created is seen when it is written and closed. */
static bool created_link(const struct watch *w, const char *name)
{
	char path[PATH_MAX];
	struct stat st;

	return (size_t)snprintf(path, sizeof(path), "%s/%s", w->dir, name) <
		       sizeof(path) &&
	       !lstat(path, &st) && S_ISLNK(st.st_mode);
}

/* Does this batch of inotify events name a watched file? */
bool control_events_match(struct control *ctl, const uint8_t *buf, size_t len)
{
	size_t off = 0, i, j;
	bool hit = false;

	pthread_mutex_lock(&ctl->lock);
	while (off + sizeof(struct inotify_event) <= len) {
		const struct inotify_event *ev =
			(const struct inotify_event *)(buf + off);

		off += sizeof(*ev) + ev->len;
		if (off > len)
			break;
		if (ev->mask & IN_Q_OVERFLOW) {
			hit = true; /* events were lost: read everything */
			continue;
		}
		if (ev->mask & (IN_IGNORED | IN_MOVE_SELF)) {
			/* A watched directory deleted or moved away: the
			 * reload's rewatch watches its path anew. */
			for (i = 0; i < ctl->watches_len; i++)
				if (ctl->watches[i].wd == ev->wd) {
					if (ev->mask & IN_MOVE_SELF)
						inotify_rm_watch(ctl->ifd,
								 ev->wd);
					ctl->watches[i].wd = -1;
					hit = true;
				}
			continue;
		}
		if (!ev->len)
			continue;
		for (i = 0; i < ctl->watches_len; i++) {
			if (ctl->watches[i].wd != ev->wd)
				continue;
			for (j = 0; j < ctl->watches[i].names_len; j++)
				if (!strcmp(ctl->watches[i].names[j],
					    ev->name) &&
				    (ctl->watches[i].subdir[j] ||
				     !(ev->mask & IN_CREATE) ||
				     created_link(&ctl->watches[i],
						  ev->name)))
					hit = true;
		}
	}
	pthread_mutex_unlock(&ctl->lock);
	return hit;
}

static bool at_or_after(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec > b->tv_sec ||
	       (a->tv_sec == b->tv_sec && a->tv_nsec >= b->tv_nsec);
}

bool control_watched_changed_since(const struct control *ctl,
				   const struct timespec *t)
{
	char path[PATH_MAX];
	struct stat st;

	for (size_t i = 0; i < ctl->watches_len; i++) {
		const struct watch *w = &ctl->watches[i];

		for (size_t j = 0; j < w->names_len; j++) {
			if ((size_t)snprintf(path, sizeof(path), "%s/%s",
					     w->dir, w->names[j]) >=
			    sizeof(path))
				continue;
			/* The name itself (a link replaced) and what it
			 * leads to. */
			if (!lstat(path, &st) &&
			    (at_or_after(&st.st_mtim, t) ||
			     at_or_after(&st.st_ctim, t)))
				return true;
			if (!stat(path, &st) &&
			    (at_or_after(&st.st_mtim, t) ||
			     at_or_after(&st.st_ctim, t)))
				return true;
		}
	}
	return false;
}
