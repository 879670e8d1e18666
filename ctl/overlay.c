/* ctl/overlay.c: the VM changes made through the admin API (PUT and
 * DELETE /vms/ID), which take precedence over the file's vms:, and the
 * state file they persist in (see control.h).
 */
#include "ctl/control.h"
#include "ctl/control_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/log.h"
#include "ctl/fleet_parse.h"
#include "route/route.h"

/* The state file: {"version": 1, "vms": {"id": "addr"}, "removed": [id]};
 * a VM with ports (vms[].ports) is {"address": "addr", "ports": [...]}
 * instead of "addr". */

/* Ports as JSON: [22, "8000-8099"]. NULL when out of memory. */
static json_t *ports_to_json(const struct config_vm_ports *p)
{
	json_t *list = json_array();
	char s[16];
	size_t i;

	for (i = 0; list && i < p->len; i++) {
		json_t *v;

		if (p->r[i].from == p->r[i].to) {
			v = json_integer(p->r[i].from);
		} else {
			snprintf(s, sizeof(s), "%u-%u", p->r[i].from,
				 p->r[i].to);
			v = json_string(s);
		}
		if (json_array_append_new(list, v)) {
			json_decref(list);
			return NULL;
		}
	}
	return list;
}

/* One parser for ports in JSON, pure and fuzzed: fleet_parse_ports. */
int control_vm_ports_json(struct config_vm_ports **out, const json_t *list,
			  char *err, size_t err_len)
{
	size_t bad;

	if (fleet_parse_ports(out, &bad, list))
		return 0;
	if (bad == SIZE_MAX) {
		snprintf(err, err_len, "out of memory");
		return -ENOMEM;
	}
	if (!json_is_array(list) || json_array_size(list) == 0)
		snprintf(err, err_len, "\"ports\" must be a non-empty list of "
			 "ports and \"from-to\" ranges");
	else
		snprintf(err, err_len, "\"ports\" entry %zu is not a port "
			 "1..65535 or a \"from-to\" range with from <= to",
			 bad);
	return -EINVAL;
}

int control_fsync_dir(const char *path)
{
	char *copy = strdup(path);
	int fd, ret = 0;

	if (!copy)
		return -ENOMEM;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(copy);
	if (fd < 0)
		return -errno;
	if (fsync(fd))
		ret = -errno;
	close(fd);
	return ret;
}

/* Written to a temporary file, fsynced and renamed over the old one, then
 * the directory fsynced: a crash leaves the old file or the new one. A
 * failure before the rename leaves the old file, and the change is
 * refused; after it the change is in the file and is kept. */
static int persist_locked(struct control *ctl, char *err, size_t err_len)
{
	json_t *root = json_object(), *vms = json_object(),
	       *removed = json_array();
	char tmp[4096], addr[INET6_ADDRSTRLEN];
	int fd = -1, ret = -ENOMEM;
	size_t i;

	if (!ctl->state_file)
		return 0;
	if (!root || !vms || !removed)
		goto out;
	for (i = 0; i < ctl->ov_len; i++) {
		const struct override *o = &ctl->ov[i];

		if (o->removed) {
			if (json_array_append_new(removed, json_string(o->id)))
				goto out;
			continue;
		}
		inet_ntop(AF_INET6, &o->addr, addr, sizeof(addr));
		if (o->ports) {
			json_t *p = ports_to_json(o->ports);

			if (!p || json_object_set_new(
					  vms, o->id,
					  json_pack("{s:s,s:o}", "address",
						    addr, "ports", p)))
				goto out;
			continue;
		}
		if (json_object_set_new(vms, o->id, json_string(addr)))
			goto out;
	}
	if (json_object_set_new(root, "version", json_integer(1)) ||
	    json_object_set(root, "vms", vms) ||
	    json_object_set(root, "removed", removed))
		goto out;

	/* A path too long for ".tmp" behind it: refused, where a cut one
	 * named the state file itself (emptied, then written in place). */
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", ctl->state_file) >=
	    sizeof(tmp)) {
		snprintf(err, err_len, "cannot write state file %s: %s",
			 ctl->state_file, strerror(ENAMETOOLONG));
		log_error("state_error", "file=%s error=\"%s\"",
			  ctl->state_file, strerror(ENAMETOOLONG));
		ret = -EIO;
		goto out; /* not out_err: no temporary file to remove */
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || json_dumpfd(root, fd, JSON_INDENT(1) | JSON_SORT_KEYS) ||
	    write(fd, "\n", 1) != 1 || fsync(fd)) {
		ret = -errno ? -errno : -EIO;
		goto out_err;
	}
	close(fd);
	fd = -1;
	if (rename(tmp, ctl->state_file)) {
		ret = -errno;
		goto out_err;
	}
	/* From here the file holds the change: it is kept, as the file
	 * will be read after a restart, even if the rename may not yet be
	 * on disk. */
	ret = control_fsync_dir(ctl->state_file);
	if (ret)
		log_error("state_error", "file=%s error=\"%s\": the change is "
			  "in the file, but its directory is not synced: a "
			  "power loss may lose it", ctl->state_file,
			  strerror(-ret));
	ret = 0;
	goto out;
out_err:
	snprintf(err, err_len, "cannot write state file %s: %s",
		 ctl->state_file, strerror(-ret));
	log_error("state_error", "file=%s error=\"%s\"", ctl->state_file,
		  strerror(-ret));
	ret = -EIO;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
out:
	json_decref(root);
	json_decref(vms);
	json_decref(removed);
	return ret;
}

static struct override *find_ov(struct control *ctl, const char *id)
{
	size_t i;

	for (i = 0; i < ctl->ov_len; i++)
		if (!strcmp(ctl->ov[i].id, id))
			return &ctl->ov[i];
	return NULL;
}

static struct override *add_ov(struct control *ctl, const char *id)
{
	struct override *o;

	if (ctl->ov_len == ctl->ov_cap) {
		size_t cap = ctl->ov_cap ? 2 * ctl->ov_cap : 16;

		o = realloc(ctl->ov, cap * sizeof(*o));
		if (!o)
			return NULL;
		ctl->ov = o;
		ctl->ov_cap = cap;
	}
	o = &ctl->ov[ctl->ov_len];
	memset(o, 0, sizeof(*o));
	o->id = strdup(id);
	if (!o->id)
		return NULL;
	ctl->ov_len++;
	return o;
}

/* A VM id: one valid DNS label, normalised to lowercase in |out|. */
static bool norm_id(char out[ROUTE_VM_ID_MAX + 1], const char *id)
{
	size_t len;

	return route_vm_id_norm(out, &len, id, strlen(id));
}

static bool parse_v6(struct in6_addr *out, const char *s, char *err,
		     size_t err_len)
{
	switch (route_parse_vm_addr(out, s, strlen(s))) {
	case ROUTE_ADDR_OK:
		return true;
	case ROUTE_ADDR_V4:
		snprintf(err, err_len, "address '%.64s' is not IPv6: vmgate "
			 "reaches VMs over IPv6 only", s);
		return false;
	case ROUTE_ADDR_NOT_ONE:
		snprintf(err, err_len, "address '%.64s' is not one host's: "
			 "\"::\" reaches this appliance itself, multicast no VM",
			 s);
		return false;
	case ROUTE_ADDR_BAD:
		break;
	}
	snprintf(err, err_len, "address '%.64s' is not an IPv6 address", s);
	return false;
}

int control_load_state(struct control *ctl, char *err, size_t err_len)
{
	json_error_t jerr;
	json_t *root, *vms, *removed, *v;
	const char *id;
	char norm[ROUTE_VM_ID_MAX + 1];
	struct stat lst, st;
	size_t i;
	int ret = -EINVAL;

	if (!ctl->state_file)
		return 0;
	/* None yet (first start) only when the path itself is not there:
	 * one that cannot be reached, or a link to where nothing is (a
	 * /data not mounted yet), is an error, not an empty state that the
	 * next write would make true over the link. */
	if (lstat(ctl->state_file, &lst) != 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, err_len, "%s: %s", ctl->state_file,
			 strerror(errno));
		return -errno;
	}
	if (stat(ctl->state_file, &st) != 0) {
		int e = errno;

		snprintf(err, err_len, "%s: %s%s", ctl->state_file,
			 strerror(e), S_ISLNK(lst.st_mode) && e == ENOENT
					      ? " (a link to a file not there)"
					      : "");
		return -e;
	}
	root = json_load_file(ctl->state_file, 0, &jerr);
	if (!root) {
		snprintf(err, err_len, "%s:%d:%d: %s", ctl->state_file,
			 jerr.line, jerr.column, jerr.text);
		return -EINVAL;
	}
	vms = json_object_get(root, "vms");
	removed = json_object_get(root, "removed");
	if ((vms && !json_is_object(vms)) ||
	    (removed && !json_is_array(removed))) {
		snprintf(err, err_len, "%s: expected {\"vms\": {...}, "
			 "\"removed\": [...]}", ctl->state_file);
		goto out;
	}
	json_object_foreach(vms, id, v) {
		struct config_vm_ports *ports = NULL;
		json_t *jaddr = json_is_object(v) ? json_object_get(v, "address")
						  : v;
		json_t *jports = json_is_object(v) ? json_object_get(v, "ports")
						   : NULL;
		struct override *o;
		struct in6_addr a;

		if (!norm_id(norm, id) || !json_is_string(jaddr) ||
		    !parse_v6(&a, json_string_value(jaddr), err, err_len) ||
		    (jports && control_vm_ports_json(&ports, jports, err,
						     err_len))) {
			snprintf(err, err_len, "%s: bad VM entry '%.64s'",
				 ctl->state_file, id);
			goto out;
		}
		o = find_ov(ctl, norm);
		if (!o && !(o = add_ov(ctl, norm))) {
			free(ports);
			goto oom;
		}
		o->addr = a;
		free(o->ports);
		o->ports = ports;
		o->removed = false;
	}
	json_array_foreach(removed, i, v) {
		struct override *o;

		if (!json_is_string(v) || !norm_id(norm, json_string_value(v))) {
			snprintf(err, err_len, "%s: bad removed entry",
				 ctl->state_file);
			goto out;
		}
		o = find_ov(ctl, norm);
		if (!o && !(o = add_ov(ctl, norm)))
			goto oom;
		o->removed = true;
		free(o->ports);
		o->ports = NULL;
	}
	ret = 0;
	goto out;
oom:
	snprintf(err, err_len, "out of memory reading %s", ctl->state_file);
	ret = -ENOMEM;
out:
	json_decref(root);
	return ret;
}

int control_reread_state_locked(struct control *ctl, char *err,
				size_t err_len)
{
	struct override *old = ctl->ov;
	size_t old_len = ctl->ov_len, old_cap = ctl->ov_cap, i;
	int ret;

	ctl->ov = NULL;
	ctl->ov_len = ctl->ov_cap = 0;
	ret = control_load_state(ctl, err, err_len);
	if (ret) {
		/* What was read so far goes; what was there stays. */
		for (i = 0; i < ctl->ov_len; i++) {
			free(ctl->ov[i].id);
			free(ctl->ov[i].ports);
		}
		free(ctl->ov);
		ctl->ov = old;
		ctl->ov_len = old_len;
		ctl->ov_cap = old_cap;
		return ret;
	}
	for (i = 0; i < old_len; i++) {
		free(old[i].id);
		free(old[i].ports);
	}
	free(old);
	return control_republish_locked(ctl);
}

/* Records an API change of VM |norm| (an address, or removed), persists
 * it and publishes it. A change that could not be persisted is not
 * acknowledged, so it is not applied either. Under the lock. */
/* Does appliance.yaml's vms: name |norm|? */
static bool in_file(const struct control *ctl, const char *norm)
{
	const struct config *cfg = file_cfg(ctl);
	size_t i;

	for (i = 0; i < cfg->vms_len; i++)
		if (!strcasecmp(cfg->vms[i].id, norm))
			return true;
	return false;
}

/* A VM the API made and now deletes, which the file does not name: its
 * entry goes (a "removed" one would only mask nothing, and API-made VMs
 * come and go all day: the overlay and the state file would grow for
 * ever). */
static int forget_locked(struct control *ctl, struct override *o, char *err,
			 size_t err_len)
{
	struct override saved = *o;
	size_t at = (size_t)(o - ctl->ov);
	int ret;

	ctl->ov[at] = ctl->ov[--ctl->ov_len];
	ret = persist_locked(ctl, err, err_len);
	if (ret) {
		ctl->ov[ctl->ov_len++] = ctl->ov[at];
		ctl->ov[at] = saved;
		return ret;
	}
	free(saved.id);
	free(saved.ports);
	return control_republish_locked(ctl);
}

static int change_locked(struct control *ctl, const char *norm,
			 const struct in6_addr *addr,
			 const struct config_vm_ports *ports, char *err,
			 size_t err_len)
{
	struct override *o = find_ov(ctl, norm), saved;
	struct config_vm_ports *copy = NULL;
	bool added = false;
	int ret;

	if (!addr && o && !in_file(ctl, norm))
		return forget_locked(ctl, o, err, err_len);

	if (addr && ports) {
		copy = malloc(sizeof(*ports) + ports->len * sizeof(ports->r[0]));
		if (!copy)
			return -ENOMEM;
		memcpy(copy, ports,
		       sizeof(*ports) + ports->len * sizeof(ports->r[0]));
	}
	if (!o) {
		o = add_ov(ctl, norm);
		if (!o) {
			free(copy);
			return -ENOMEM;
		}
		added = true;
	}
	saved = *o;
	o->removed = !addr;
	if (addr)
		o->addr = *addr;
	o->ports = copy;
	ret = persist_locked(ctl, err, err_len);
	if (ret) {
		free(copy);
		if (added) {
			free(o->id);
			ctl->ov_len--;
		} else {
			*o = saved;
		}
		return ret;
	}
	free(saved.ports);
	return control_republish_locked(ctl);
}

int control_vm_put(struct control *ctl, bool *out_created, const char *id,
		   const char *address, const struct config_vm_ports *ports,
		   char *err, size_t err_len)
{
	char pbuf[128];
	struct in6_addr addr, old;
	char norm[ROUTE_VM_ID_MAX + 1];
	int ret;

	if (!norm_id(norm, id)) {
		snprintf(err, err_len, "invalid VM id '%.64s': one DNS label "
			 "of letters, digits and hyphens", id);
		return -EINVAL;
	}
	if (!parse_v6(&addr, address, err, err_len))
		return -EINVAL;

	pthread_mutex_lock(&ctl->lock);
	*out_created = !route_vm_get(current(ctl)->routes, &old, norm,
				     strlen(norm));
	ret = change_locked(ctl, norm, &addr, ports, err, err_len);
	pthread_mutex_unlock(&ctl->lock);
	if (!ret)
		log_info("vm_put", "vm=%s address=%s ports=%s created=%d", norm,
			 address, route_vm_ports_fmt(pbuf, sizeof(pbuf), ports),
			 *out_created);
	return ret;
}

int control_vm_delete(struct control *ctl, const char *id, char *err,
		      size_t err_len)
{
	struct in6_addr old;
	char norm[ROUTE_VM_ID_MAX + 1];
	int ret;

	if (!norm_id(norm, id)) {
		snprintf(err, err_len, "no VM '%.64s'", id);
		return -ENOENT;
	}
	pthread_mutex_lock(&ctl->lock);
	if (route_vm_get(current(ctl)->routes, &old, norm, strlen(norm))) {
		ret = change_locked(ctl, norm, NULL, NULL, err, err_len);
	} else {
		snprintf(err, err_len, "no VM '%s'", norm);
		ret = -ENOENT;
	}
	pthread_mutex_unlock(&ctl->lock);
	if (!ret)
		log_info("vm_delete", "vm=%s", norm);
	return ret;
}

int control_vm_get(struct control *ctl, struct in6_addr *out, const char *id)
{
	bool found;

	pthread_mutex_lock(&ctl->lock);
	found = route_vm_get(current(ctl)->routes, out, id, strlen(id));
	pthread_mutex_unlock(&ctl->lock);
	return found ? 0 : -ENOENT;
}

int control_vm_ports_get(struct control *ctl, struct config_vm_ports **out,
			 const char *id)
{
	const struct config_vm_ports *p = NULL;
	bool found;

	*out = NULL;
	pthread_mutex_lock(&ctl->lock);
	found = route_vm_ports_get(current(ctl)->routes, &p, id, strlen(id));
	if (found && p) {
		*out = malloc(sizeof(*p) + p->len * sizeof(p->r[0]));
		if (*out)
			memcpy(*out, p, sizeof(*p) + p->len * sizeof(p->r[0]));
	}
	pthread_mutex_unlock(&ctl->lock);
	if (!found)
		return -ENOENT;
	return p && !*out ? -ENOMEM : 0;
}

void control_vm_foreach(struct control *ctl,
			bool (*fn)(void *arg, const char *id,
				   const struct in6_addr *addr),
			void *arg)
{
	/* The lock keeps the snapshot from being reclaimed meanwhile. */
	pthread_mutex_lock(&ctl->lock);
	route_vm_foreach(current(ctl)->routes, fn, arg);
	pthread_mutex_unlock(&ctl->lock);
}
