/* ctl/config/vms.c: the vms: section (id, address, ports per entry) and its
 * fast path. */
#include <stdlib.h>
#include <string.h>

#include "ctl/config/ld.h"
#include "route/route.h"

struct vm_tmp {
	struct config_vm vm;
	const yaml_node_t *id_node;
	bool has_addr;
};

static void key_vm_id(struct ld *ld, yaml_node_t *v)
{
	struct vm_tmp *t = ld->obj;
	char name[ROUTE_VM_ID_MAX + 1];
	struct show_buf b;
	const char *s;
	size_t len;

	if (!ld_get_str(ld, v, "vm id", &s))
		return;
	if (!route_vm_id_norm(name, &len, s, ld_slen(v))) {
		ld_err(ld, v, "vm id '%s' is not one DNS label (1-63 letters, "
		       "digits, hyphens; no dots)", ld_show(&b, s, ld_slen(v)));
		return;
	}
	t->vm.id = strdup(name);
	if (!t->vm.id) {
		ld_oom(ld);
		return;
	}
	t->id_node = v;
}

static void key_vm_address(struct ld *ld, yaml_node_t *v)
{
	struct vm_tmp *t = ld->obj;
	struct show_buf b;
	const char *s;

	if (!ld_get_str(ld, v, "vm address", &s))
		return;
	switch (route_parse_vm_addr(&t->vm.addr, s, ld_slen(v))) {
	case ROUTE_ADDR_OK:
		t->has_addr = true;
		return;
	case ROUTE_ADDR_V4:
		ld_err(ld, v, "address '%s' is not IPv6: vmgate reaches VMs "
		       "over IPv6 only", ld_show(&b, s, ld_slen(v)));
		return;
	case ROUTE_ADDR_NOT_ONE:
		ld_err(ld, v, "address '%s' is not one host's: \"::\" "
		       "reaches this appliance itself, multicast no VM",
		       ld_show(&b, s, ld_slen(v)));
		return;
	case ROUTE_ADDR_BAD:
		break;
	}
	ld_err(ld, v, "address '%s' is not an IPv6 address",
	       ld_show(&b, s, ld_slen(v)));
}

static void key_vm_ports(struct ld *ld, yaml_node_t *v)
{
	struct vm_tmp *t = ld->obj;

	ld_parse_port_ranges(ld, v, "vm ports", &t->vm.ports);
}

static const struct config_key vm_keys[] = {
	{ "id", key_vm_id, true },
	{ "address", key_vm_address, true },
	{ "ports", key_vm_ports, false },
};

/* The vms: fast path.
 *
 * A fleet's appliance.yaml is mostly its vms: list, and libyaml takes
 * seconds and a gigabyte to turn a million entries into nodes. So before
 * libyaml sees the file, ld_vms_fast_scan() looks for the common shape of a
 * big list, a top-level "vms:" line followed by one flow mapping per line:
 *
 *   vms:
 *     - { id: 45a68069-defc-4233-9865-6298d87053af, address: "fd00::10" }
 *
 * (keys id and address once each, in either order; values plain, "double"
 * or 'single' quoted without escapes; blank and comment lines between;
 * ASCII only). It records where each value is and hands libyaml the file
 * with those lines emptied, so every other line and column is unchanged.
 * The recorded entries are used only if libyaml then reports "vms" as a
 * key of a block-style top-level mapping at exactly that line, with
 * nothing after it; they then go through the same handlers as nodes
 * would (key_vm_id, key_vm_address), with the same marks, so a config
 * loads with the same result and the same errors either way. Anything
 * that does not fit the shape, and any doubt (a YAML error, the entries
 * not used), means the whole file is loaded again the slow way. */

struct vms_fast_val {
	uint32_t off;       /* into the original buffer */
	uint16_t len, col;  /* col is 0-based, of the first byte or quote */
	uint8_t style;      /* yaml_scalar_style_t */
};

struct vms_fast_ent {
	uint32_t line;            /* 0-based, relative to the vms: line */
	struct vms_fast_val v[2]; /* in file order */
	bool addr_first;          /* v[0] is the address */
};

/* struct vms_fast, the scan's result, is in ld.h: load.c keeps one. */

#define VMS_FAST_VAL_MAX 255

static bool vf_plain(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
	       c == ':';
}

/* vf_value reads one scalar at |*p| (in a flow mapping, one line). */
static bool vf_value(struct vms_fast_val *out, const uint8_t *buf,
		     const uint8_t **p, const uint8_t *end,
		     const uint8_t *line)
{
	const uint8_t *s = *p, *q;

	if (s == end)
		return false;
	if (*s == '"' || *s == '\'') {
		for (q = s + 1; q < end && *q != *s; q++)
			if (*q < 0x20 || *q > 0x7e || *q == '\\')
				return false;
		/* '' inside single quotes is an escaped quote: not here. */
		if (q == end || (q + 1 < end && q[1] == *s))
			return false;
		out->style = *s == '"' ? YAML_DOUBLE_QUOTED_SCALAR_STYLE :
					 YAML_SINGLE_QUOTED_SCALAR_STYLE;
		out->off = (uint32_t)(s + 1 - buf);
		out->len = (uint16_t)(q - s - 1);
		*p = q + 1;
	} else {
		/* Plain: not starting with an indicator ('-' and ':' can be
		 * one), and not ending in ':' (":," and ": " end a key). */
		if (*s == '-' || *s == ':')
			return false;
		for (q = s; q < end && vf_plain(*q); q++)
			;
		if (q == s || q[-1] == ':')
			return false;
		out->style = YAML_PLAIN_SCALAR_STYLE;
		out->off = (uint32_t)(s - buf);
		out->len = (uint16_t)(q - s);
		*p = q;
	}
	if ((size_t)(*p - s) > VMS_FAST_VAL_MAX)
		return false;
	out->col = (uint16_t)(s - line);
	return true;
}

static const uint8_t *vf_spaces(const uint8_t *p, const uint8_t *end)
{
	while (p < end && *p == ' ')
		p++;
	return p;
}

/* vf_entry parses "INDENT- { K: V, K: V }" plus an optional comment;
 * |line|..|end| is one line without its newline. */
static bool vf_entry(struct vms_fast_ent *e, const uint8_t *buf,
		     const uint8_t *line, const uint8_t *end, size_t indent)
{
	const uint8_t *p = line + indent;
	bool seen[2] = { false, false };

	if (p + 2 > end || p[0] != '-' || p[1] != ' ')
		return false;
	p = vf_spaces(p + 1, end);
	if (p == end || *p != '{')
		return false;
	p = vf_spaces(p + 1, end);
	for (int i = 0; i < 2; i++) {
		int k;

		if ((size_t)(end - p) >= 4 && !memcmp(p, "id: ", 4)) {
			k = 0;
			p += 3;
		} else if ((size_t)(end - p) >= 9 &&
			   !memcmp(p, "address: ", 9)) {
			k = 1;
			p += 8;
		} else {
			return false;
		}
		if (seen[k])
			return false;
		seen[k] = true;
		if (i == 0)
			e->addr_first = k == 1;
		p = vf_spaces(p, end);
		if (!vf_value(&e->v[i], buf, &p, end, line))
			return false;
		p = vf_spaces(p, end);
		if (p == end || *p != (i == 0 ? ',' : '}'))
			return false;
		p = vf_spaces(p + 1, end);
	}
	/* A comment needs a space in front of its '#'. */
	return p == end || (p[-1] == ' ' && *p == '#');
}

static bool vf_blank(const uint8_t *p, const uint8_t *end)
{
	p = vf_spaces(p, end);
	return p == end || *p == '#';
}

void ld_vms_fast_free(struct vms_fast *f)
{
	free(f->ybuf);
	free(f->e);
	memset(f, 0, sizeof(*f));
}

/* ld_vms_fast_scan fills |f| and returns true when |buf| has a vms: list of
 * the shape above. */
bool ld_vms_fast_scan(struct vms_fast *f, const uint8_t *buf,
		      size_t buf_len)
{
	const uint8_t *p = buf, *end = buf + buf_len, *nl, *block, *q;
	size_t cap = 0, indent = SIZE_MAX, newlines = 0;
	unsigned rel = 0;

	memset(f, 0, sizeof(*f));
	f->buf = buf;
	if (buf_len > UINT32_MAX)
		return false;
	/* The "vms:" line. Lines are counted as libyaml counts them only
	 * if '\n' is the one line break before it. */
	for (;;) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			return false;
		if ((size_t)(nl - p) >= 4 && !memcmp(p, "vms:", 4) &&
		    vf_blank(p + 4, nl) && (p + 4 == nl || p[4] == ' '))
			break;
		f->line++;
		p = nl + 1;
	}
	for (q = buf; q < p; q++)
		if (*q == '\r' || *q == 0xc2 || *q == 0xe2)
			return false;

	block = nl + 1;
	for (p = block; p < end; p = nl + 1, rel++) {
		struct vms_fast_ent *e;
		size_t sp;

		nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			nl = end;
		for (q = p; q < nl; q++)
			if (*q < 0x20 || *q > 0x7e)
				goto fail;
		sp = (size_t)(vf_spaces(p, nl) - p);
		if (p + sp == nl || p[sp] == '#')
			goto next; /* blank or comment */
		if (sp == 0 && (p[0] != '-' || (indent != SIZE_MAX &&
						indent != 0)))
			break;     /* the next top-level key */
		if (indent == SIZE_MAX)
			indent = sp;
		if (sp != indent)
			goto fail;
		if (f->len == cap) {
			struct vms_fast_ent *ne;

			cap = cap ? cap * 2 : 1024;
			ne = realloc(f->e, cap * sizeof(*ne));
			if (!ne)
				goto fail;
			f->e = ne;
		}
		e = &f->e[f->len];
		memset(e, 0, sizeof(*e));
		e->line = rel + 1;
		if (!vf_entry(e, buf, p, nl, indent))
			goto fail;
		f->len++;
next:
		newlines += nl < end;
		if (nl == end) {
			p = end;
			break;
		}
	}
	if (f->len == 0)
		goto fail;

	/* Before the list, its lines' newlines, then the rest. */
	f->ybuf_len = (size_t)(block - buf) + newlines + (size_t)(end - p);
	f->ybuf = malloc(f->ybuf_len ? f->ybuf_len : 1);
	if (!f->ybuf)
		goto fail;
	memcpy(f->ybuf, buf, (size_t)(block - buf));
	memset(f->ybuf + (block - buf), '\n', newlines);
	memcpy(f->ybuf + (block - buf) + newlines, p, (size_t)(end - p));
	return true;

fail:
	ld_vms_fast_free(f);
	return false;
}

/* vms_fast_take says whether the recorded entries are this vms: key's. */
static bool vms_fast_take(struct ld *ld, const yaml_node_t *v)
{
	const yaml_node_t *root = yaml_document_get_root_node(ld->doc);
	struct vms_fast *f = ld->fast;

	if (!f || f->used || !ld->key || !root ||
	    root->data.mapping.style != YAML_BLOCK_MAPPING_STYLE ||
	    ld->key->start_mark.line != f->line ||
	    ld->key->start_mark.column != 0 ||
	    ld->key->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
	    !ld_is_null(v) || ld_slen(v) != 0)
		return false;
	f->used = true;
	return true;
}

/* vms_fast_node makes the node libyaml would have made for |fv|, its
 * value copied to |s| and NUL-terminated. */
static void vms_fast_node(yaml_node_t *n, char *s, const struct vms_fast *f,
			  const struct vms_fast_ent *e,
			  const struct vms_fast_val *fv)
{
	memcpy(s, f->buf + fv->off, fv->len);
	s[fv->len] = '\0';
	memset(n, 0, sizeof(*n));
	n->type = YAML_SCALAR_NODE;
	n->data.scalar.value = (yaml_char_t *)s;
	n->data.scalar.length = fv->len;
	n->data.scalar.style = (yaml_scalar_style_t)fv->style;
	n->start_mark.line = f->line + e->line;
	n->start_mark.column = fv->col;
}

void ld_key_vms(struct ld *ld, yaml_node_t *v)
{
	struct config *c = ld->c;
	struct vms_fast *f = ld->fast;
	struct dup_ent *dups;
	yaml_node_item_t *it;
	bool fast;
	size_t n;

	fast = vms_fast_take(ld, v);
	if (fast) {
		n = f->len;
	} else {
		if (ld_is_null(v) || !ld_get_seq(ld, v, "vms") ||
		    ld_seq_len(v) == 0)
			return;
		n = ld_seq_len(v);
	}
	c->vms = calloc(n, sizeof(*c->vms));
	dups = calloc(n, sizeof(*dups));
	if (!c->vms || !dups) {
		ld_oom(ld);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct vm_tmp t = { 0 };
		yaml_node_t nodes[2];

		if (fast) {
			char s[2][VMS_FAST_VAL_MAX + 1];
			const struct vms_fast_ent *e = &f->e[i];
			void *saved = ld->obj;

			ld->obj = &t;
			for (int j = 0; j < 2; j++) {
				vms_fast_node(&nodes[j], s[j], f, e, &e->v[j]);
				if ((j == 0) == e->addr_first)
					key_vm_address(ld, &nodes[j]);
				else
					key_vm_id(ld, &nodes[j]);
			}
			ld->obj = saved;
		} else {
			it = &v->data.sequence.items.start[i];
			ld_walk_map(ld, ld_node(ld, *it), "vms entry", vm_keys,
				    sizeof(vm_keys) / sizeof(vm_keys[0]), &t);
		}
		if (!t.vm.id) {
			free(t.vm.ports);
			continue;
		}
		/* An id without a valid address still takes part in the
		 * duplicate check, so both problems ld_show up in one run. */
		dups[c->vms_len] = (struct dup_ent){
			t.vm.id, (unsigned)t.id_node->start_mark.line,
			(unsigned)t.id_node->start_mark.column, c->vms_len };
		c->vms[c->vms_len++] = t.vm;
	}
	ld_check_dups(ld, dups, c->vms_len, "vm id");
out:
	free(dups);
}
