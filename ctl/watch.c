/* ctl/watch.c: inotify on the directories of appliance.yaml and of the
 * certificate files; control_run (control.c) reads the events and reloads
 * when one names a watched file.
 */
#include "ctl/control_int.h"

#include <errno.h>
#include <libgen.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>

#include "core/log.h"
#include "route/config-t.h"

/* Watches: the directory of each file a reload reads, so that a file
 * replaced by rename (as editors and deploy tools do) is seen too. */
static void watch_file(struct control *ctl, const char *path)
{
	char *dcopy = strdup(path), *bcopy = strdup(path);
	const char *dir, *base;
	struct watch *w = NULL;
	size_t i;

	if (!dcopy || !bcopy)
		goto out;
	dir = dirname(dcopy);
	base = basename(bcopy);
	for (i = 0; i < ctl->watches_len; i++)
		if (!strcmp(ctl->watches[i].dir, dir))
			w = &ctl->watches[i];
	if (!w) {
		if (ctl->watches_len == WATCH_MAX)
			goto out;
		w = &ctl->watches[ctl->watches_len];
		w->wd = inotify_add_watch(ctl->ifd, dir,
					  IN_CLOSE_WRITE | IN_MOVED_TO);
		if (w->wd < 0) {
			log_warn("watch", "dir=%s error=\"%s\": changes there "
				 "need SIGHUP", dir, strerror(errno));
			goto out;
		}
		w->dir = strdup(dir);
		if (!w->dir)
			goto out;
		w->names_len = 0;
		ctl->watches_len++;
	}
	for (i = 0; i < w->names_len; i++)
		if (!strcmp(w->names[i], base))
			goto out;
	if (w->names_len < WATCH_MAX && (w->names[w->names_len] = strdup(base)))
		w->names_len++;
out:
	free(dcopy);
	free(bcopy);
}

void control_rewatch_locked(struct control *ctl)
{
	const struct config *cfg = file_cfg(ctl);
	size_t i, j;

	if (ctl->ifd < 0)
		return;
	for (i = 0; i < ctl->watches_len; i++) {
		inotify_rm_watch(ctl->ifd, ctl->watches[i].wd);
		for (j = 0; j < ctl->watches[i].names_len; j++)
			free(ctl->watches[i].names[j]);
		free(ctl->watches[i].dir);
	}
	ctl->watches_len = 0;
	watch_file(ctl, ctl->path);
	for (i = 0; i < cfg->certs_len; i++) {
		watch_file(ctl, cfg->certs[i].cert_path);
		watch_file(ctl, cfg->certs[i].key_path);
		if (cfg->certs[i].ocsp_path)
			watch_file(ctl, cfg->certs[i].ocsp_path);
	}
	for (i = 0; i < cfg->domains_len; i++)
		if (cfg->domains[i].client_ca_path)
			watch_file(ctl, cfg->domains[i].client_ca_path);
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
		if (!ev->len || off > len)
			continue;
		for (i = 0; i < ctl->watches_len; i++) {
			if (ctl->watches[i].wd != ev->wd)
				continue;
			for (j = 0; j < ctl->watches[i].names_len; j++)
				if (!strcmp(ctl->watches[i].names[j], ev->name))
					hit = true;
		}
	}
	pthread_mutex_unlock(&ctl->lock);
	return hit;
}
