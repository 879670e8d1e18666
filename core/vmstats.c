/* core/vmstats.c: see vmstats.h. */
#include "core/vmstats.h"

#include <stdlib.h>
#include <string.h>

/* FNV-1a: ids are short, and a VM id is no secret worth a keyed hash
 * (an attacker can only name VMs that exist). */
static uint32_t hash_id(const char *id, size_t len)
{
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < len; i++)
		h = (h ^ (uint8_t)id[i]) * 16777619u;
	return h;
}

static struct vmstats_entry *entry(const struct vmstats *t, uint32_t i)
{
	return &t->chunks[i / VMSTATS_CHUNK][i % VMSTATS_CHUNK];
}

/* The index at twice the entries at most half full: the owner's, so it
 * is rebuilt in place of the old one. */
static bool grow_index(struct vmstats *t, uint32_t len)
{
	uint32_t cap = t->index_cap ? t->index_cap * 2 : 64, i;
	uint32_t *index = calloc(cap, sizeof(*index));

	if (!index)
		return false;
	for (i = 0; i < len; i++) {
		const struct vmstats_entry *e = entry(t, i);
		uint32_t s = hash_id(e->id, strlen(e->id)) & (cap - 1);

		while (index[s])
			s = (s + 1) & (cap - 1);
		index[s] = i + 1;
	}
	free(t->index);
	t->index = index;
	t->index_cap = cap;
	return true;
}

struct vmstats_entry *vmstats_get(struct vmstats *t, const char *id,
				  size_t id_len)
{
	uint32_t len = atomic_load_explicit(&t->len, memory_order_relaxed);
	struct vmstats_entry *e;
	uint32_t s;

	if (id_len == 0 || id_len > VMSTATS_ID_MAX)
		goto lost;
	if (t->index_cap) {
		s = hash_id(id, id_len) & (t->index_cap - 1);
		for (; t->index[s]; s = (s + 1) & (t->index_cap - 1)) {
			e = entry(t, t->index[s] - 1);
			if (!strncmp(e->id, id, id_len) && !e->id[id_len])
				return e;
		}
	}
	if (len >= (uint32_t)VMSTATS_CHUNKS * VMSTATS_CHUNK)
		goto lost;
	if ((len + 1) * 2 > t->index_cap && !grow_index(t, len))
		goto lost;
	if (!t->chunks[len / VMSTATS_CHUNK]) {
		t->chunks[len / VMSTATS_CHUNK] =
			calloc(VMSTATS_CHUNK, sizeof(struct vmstats_entry));
		if (!t->chunks[len / VMSTATS_CHUNK])
			goto lost;
	}
	e = entry(t, len);
	memcpy(e->id, id, id_len);
	e->id[id_len] = '\0';
	s = hash_id(id, id_len) & (t->index_cap - 1);
	while (t->index[s])
		s = (s + 1) & (t->index_cap - 1);
	t->index[s] = len + 1;
	/* The id is written before a reader can see the entry. */
	atomic_store_explicit(&t->len, len + 1, memory_order_release);
	return e;
lost:
	metric_add(&t->lost, 1);
	return &t->lost_entry;
}

void vmstats_free(struct vmstats *t)
{
	size_t i;

	for (i = 0; i < VMSTATS_CHUNKS && t->chunks[i]; i++)
		free(t->chunks[i]);
	free(t->index);
	memset(t, 0, sizeof(*t));
}

uint32_t vmstats_len(const struct vmstats *t)
{
	return atomic_load_explicit(&t->len, memory_order_acquire);
}

const struct vmstats_entry *vmstats_at(const struct vmstats *t, uint32_t i)
{
	return entry(t, i);
}

void vmstats_add(struct vmstats_sum *s, const struct vmstats_entry *e)
{
	s->accepted += metric_get(&e->accepted);
	s->rejected += metric_get(&e->rejected);
	s->open += metric_get(&e->open);
	s->bytes_up += metric_get(&e->bytes_up);
	s->bytes_down += metric_get(&e->bytes_down);
	s->connect_errors += metric_get(&e->connect_errors);
}
