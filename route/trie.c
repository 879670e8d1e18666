/* route/trie.c: reversed-label trie, exact and wildcard. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "route/trie.h"

#define TRIE_LABEL_MAX 63

/* Order by length first: most comparisons then end before memcmp. Any
 * total order would do, insert and lookup only have to agree. */
static int trie_cmp(const struct trie_node *n, const char *label, size_t len)
{
	if (n->label_len != len)
		return n->label_len < len ? -1 : 1;
	return memcmp(n->label, label, len);
}

/* trie_find returns the index of |label| among |n|'s children, or, when it
 * is absent, false with the index it would be inserted at in |*at|. */
static bool trie_find(const struct trie_node *n, uint32_t *at,
		      const char *label, size_t len)
{
	uint32_t lo = 0, hi = n->kids_len;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c = trie_cmp(&n->kids[mid], label, len);

		if (c == 0) {
			*at = mid;
			return true;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*at = lo;
	return false;
}

static struct trie_node *trie_add_kid(struct trie_node *n, uint32_t at,
				      const char *label, size_t len)
{
	struct trie_node *kids, *k;
	char *copy;

	copy = malloc(len + 1);
	if (!copy)
		goto err;
	kids = realloc(n->kids, (n->kids_len + 1) * sizeof(*kids));
	if (!kids)
		goto err_copy;
	n->kids = kids;
	memmove(&kids[at + 1], &kids[at],
		(n->kids_len - at) * sizeof(*kids));
	n->kids_len++;

	memcpy(copy, label, len);
	copy[len] = '\0';
	k = &kids[at];
	memset(k, 0, sizeof(*k));
	k->label = copy;
	k->label_len = (uint8_t)len;
	return k;

err_copy:
	free(copy);
err:
	return NULL;
}

static bool trie_name_ok(const char *name, size_t name_len)
{
	size_t i, start = 0;

	if (name_len == 0)
		return false;
	for (i = 0; i <= name_len; i++) {
		if (i < name_len && name[i] != '.')
			continue;
		if (i == start || i - start > TRIE_LABEL_MAX)
			return false;
		start = i + 1;
	}
	return true;
}

int trie_insert(struct trie *t, const char *name, size_t name_len,
		enum trie_kind kind, uint32_t value)
{
	struct trie_node *n = &t->root;
	size_t end = name_len;

	/* Check first so that a bad name leaves no half-built path. */
	if (!trie_name_ok(name, name_len))
		return -EINVAL;

	for (;;) {
		size_t start = end;
		uint32_t at;

		while (start > 0 && name[start - 1] != '.')
			start--;
		if (trie_find(n, &at, name + start, end - start)) {
			n = &n->kids[at];
		} else {
			n = trie_add_kid(n, at, name + start, end - start);
			if (!n)
				return -ENOMEM;
		}
		if (start == 0)
			break;
		end = start - 1;
	}

	if (kind == TRIE_EXACT) {
		if (n->has_exact)
			return -EEXIST;
		n->has_exact = true;
		n->exact = value;
	} else {
		if (n->has_wild)
			return -EEXIST;
		n->has_wild = true;
		n->wild = value;
	}
	return 0;
}

bool trie_lookup(const struct trie *t, struct trie_match *out,
		 const char *name, size_t name_len)
{
	const struct trie_node *n = &t->root, *best = NULL;
	size_t end = name_len, best_prefix = 0;

	/* Stop at a leaf before scanning the next label: for the usual
	 * "{vmId}.{domain}" the vmId is then never walked byte by byte. */
	while (end > 0 && n->kids_len) {
		size_t start = end;
		uint32_t at;

		while (start > 0 && name[start - 1] != '.')
			start--;
		if (end - start > TRIE_LABEL_MAX ||
		    !trie_find(n, &at, name + start, end - start))
			break;
		n = &n->kids[at];
		if (start == 0) {
			if (n->has_exact) {
				out->value = n->exact;
				out->wildcard = false;
				out->prefix_len = 0;
				out->prefix_labels = 0;
				return true;
			}
			break;
		}
		/* name[start - 1] is the dot; a wildcard needs a non-empty
		 * prefix in front of it. */
		if (n->has_wild && start > 1) {
			best = n;
			best_prefix = start - 1;
		}
		end = start - 1;
	}
	if (!best)
		return false;

	out->value = best->wild;
	out->wildcard = true;
	out->prefix_len = best_prefix;
	out->prefix_labels = 1;
	for (const char *p = name, *e = name + best_prefix;
	     (p = memchr(p, '.', (size_t)(e - p))); p++)
		out->prefix_labels++;
	return true;
}

static void trie_node_free(struct trie_node *n)
{
	for (uint32_t i = 0; i < n->kids_len; i++)
		trie_node_free(&n->kids[i]);
	free(n->kids);
	free(n->label);
}

void trie_free(struct trie *t)
{
	if (!t)
		return;
	trie_node_free(&t->root);
	memset(t, 0, sizeof(*t));
}
