/* route/trie.h: a trie over reversed DNS labels. Internal to route/.
 *
 * "x.vm.vers.sh" is stored as sh -> vers -> vm -> x. A node may carry two
 * values: an exact one (the name itself) and a wildcard one (every name with
 * at least one more label in front: "*.vm.vers.sh"). Names given to
 * trie_insert() and trie_lookup() are normalised (route_host_normalize:
 * lowercase LDH labels); trie_lookup() tolerates anything without reading
 * out of bounds, it just finds no match for a malformed name.
 *
 * Build with trie_insert(), then only look up: lookup never writes, so any
 * number of threads may share a built trie. Children are kept in sorted
 * arrays and found by binary search; lookup is O(labels) and allocates
 * nothing. A zeroed struct trie is an empty trie; trie_free() on it is fine.
 */
#ifndef VMGATE_ROUTE_TRIE_H
#define VMGATE_ROUTE_TRIE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct trie_node {
	char *label;             /* owned; NULL at the root */
	struct trie_node *kids;  /* owned; sorted by (length, bytes) */
	uint32_t kids_len;
	uint32_t exact, wild;    /* values, valid when has_exact / has_wild */
	uint8_t label_len;
	bool has_exact, has_wild;
};

struct trie {
	struct trie_node root;
};

enum trie_kind {
	TRIE_EXACT,    /* the name itself */
	TRIE_WILDCARD, /* every name under it, not the name itself */
};

/* trie_insert adds |name| (|name_len| bytes, no "*." prefix) with |value|.
 * Returns 0, -EEXIST if |name| already has a value of that |kind| (the old
 * one is kept), -EINVAL for an empty name or label or a label longer than
 * 63 bytes, -ENOMEM (the trie stays valid). */
int trie_insert(struct trie *t, const char *name, size_t name_len,
		enum trie_kind kind, uint32_t value);

struct trie_match {
	uint32_t value;
	bool wildcard;         /* matched a wildcard suffix, not the name */
	size_t prefix_len;     /* bytes in front of the suffix, without the
	                        * dot that joins them; 0 for an exact match */
	unsigned prefix_labels; /* labels in those bytes; 0 for exact */
};

/* trie_lookup finds |name| itself if it was inserted as TRIE_EXACT, else
 * the longest TRIE_WILDCARD suffix with at least one label in front of it.
 * Returns false, leaving |out| untouched, when there is neither. */
bool trie_lookup(const struct trie *t, struct trie_match *out,
		 const char *name, size_t name_len);

void trie_free(struct trie *t); /* NULL and zero are fine */

#endif
