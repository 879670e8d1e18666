/* tests/unit/test_vmstats.c: the per-VM counter table (core/vmstats.h).
 *
 * Cases: an id gets one entry, found again by lookup, and the entry
 * never moves while the table grows over several chunks and index
 * rehashes; bad ids (empty, too long) count as lost and get no entry;
 * open goes up and down; summing two workers' tables by id gives the
 * totals; a reader walking the table while its owner adds entries never
 * sees an entry before its id; vmstats_free leaves a zero table.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/vmstats.h"

static struct vmstats_entry *get(struct vmstats *t, const char *id)
{
	return vmstats_get(t, id, strlen(id));
}

/* Enough entries for three chunks and several index rehashes. */
#define MANY (2 * VMSTATS_CHUNK + 500)

static void test_grow_and_lookup(void **state)
{
	struct vmstats *t = calloc(1, sizeof(*t));
	struct vmstats_entry **first = calloc(MANY, sizeof(*first));
	char id[32];
	uint32_t i;

	(void)state;
	assert_non_null(t);
	assert_non_null(first);
	for (i = 0; i < MANY; i++) {
		snprintf(id, sizeof(id), "vm%u", i);
		first[i] = get(t, id);
		assert_ptr_not_equal(first[i], &t->lost_entry);
		assert_string_equal(first[i]->id, id);
		metric_add(&first[i]->bytes_up, i);
		assert_int_equal(vmstats_len(t), i + 1);
	}
	/* Found again, at the same address, with what was counted. */
	for (i = 0; i < MANY; i++) {
		snprintf(id, sizeof(id), "vm%u", i);
		if (get(t, id) != first[i])
			fail_msg("%s moved or was added twice", id);
		assert_int_equal(metric_get(&first[i]->bytes_up), i);
		assert_ptr_equal(vmstats_at(t, i), first[i]);
	}
	assert_int_equal(vmstats_len(t), MANY);
	/* A prefix of an id is another VM. */
	assert_ptr_not_equal(get(t, "vm1"), get(t, "vm10"));
	assert_int_equal(vmstats_len(t), MANY);
	assert_int_equal(metric_get(&t->lost), 0);
	vmstats_free(t);
	assert_int_equal(vmstats_len(t), 0);
	assert_null(t->chunks[0]);
	free(first);
	free(t);
}

static void test_bad_ids_lost(void **state)
{
	struct vmstats *t = calloc(1, sizeof(*t));
	char id[VMSTATS_ID_MAX + 2];

	(void)state;
	assert_non_null(t);
	memset(id, 'a', sizeof(id));
	assert_ptr_equal(vmstats_get(t, id, 0), &t->lost_entry);
	assert_ptr_equal(vmstats_get(t, id, VMSTATS_ID_MAX + 1),
			 &t->lost_entry);
	assert_int_equal(metric_get(&t->lost), 2);
	assert_int_equal(vmstats_len(t), 0);
	/* The longest id is fine. */
	assert_ptr_not_equal(vmstats_get(t, id, VMSTATS_ID_MAX),
			     &t->lost_entry);
	assert_int_equal(strlen(vmstats_at(t, 0)->id), VMSTATS_ID_MAX);
	vmstats_free(t);
	free(t);
}

static void test_open_and_sum(void **state)
{
	struct vmstats *w[2];
	struct vmstats_sum s;
	struct vmstats_entry *e;
	uint32_t i, j;

	(void)state;
	w[0] = calloc(1, sizeof(*w[0]));
	w[1] = calloc(1, sizeof(*w[1]));
	assert_non_null(w[0]);
	assert_non_null(w[1]);
	/* Worker 0: two connections to a, one closed; worker 1: one to a
	 * and a refusal for b. */
	e = get(w[0], "a");
	vmstats_open(e);
	vmstats_open(e);
	metric_add(&e->bytes_up, 100);
	metric_add(&e->bytes_down, 7);
	vmstats_closed(e);
	e = get(w[1], "a");
	vmstats_open(e);
	metric_add(&e->bytes_up, 11);
	metric_add(&e->connect_errors, 1);
	metric_add(&get(w[1], "b")->rejected, 1);

	memset(&s, 0, sizeof(s));
	for (i = 0; i < 2; i++)
		for (j = 0; j < vmstats_len(w[i]); j++)
			if (!strcmp(vmstats_at(w[i], j)->id, "a"))
				vmstats_add(&s, vmstats_at(w[i], j));
	assert_int_equal(s.accepted, 3);
	assert_int_equal(s.open, 2);
	assert_int_equal(s.bytes_up, 111);
	assert_int_equal(s.bytes_down, 7);
	assert_int_equal(s.connect_errors, 1);
	assert_int_equal(s.rejected, 0);
	/* The open count of worker 0 went 1, 2, 1: never below zero. */
	assert_int_equal(metric_get(&get(w[0], "a")->open), 1);
	assert_int_equal(metric_get(&get(w[1], "b")->rejected), 1);
	assert_int_equal(metric_get(&get(w[1], "b")->accepted), 0);
	for (i = 0; i < 2; i++) {
		vmstats_free(w[i]);
		free(w[i]);
	}
}

#define RACE_VMS (6 * VMSTATS_CHUNK)

static void *owner(void *arg)
{
	struct vmstats *t = arg;
	char id[32];
	uint32_t i;

	for (i = 0; i < RACE_VMS; i++) {
		snprintf(id, sizeof(id), "race-%u", i);
		metric_add(&vmstats_get(t, id, strlen(id))->bytes_down, 1);
	}
	return NULL;
}

static void test_reader_sees_whole_entries(void **state)
{
	struct vmstats *t = calloc(1, sizeof(*t));
	uint32_t len = 0, prev = 0, i, walks = 0;
	pthread_t th;

	(void)state;
	assert_non_null(t);
	assert_int_equal(pthread_create(&th, NULL, owner, t), 0);
	while (len < RACE_VMS) {
		len = vmstats_len(t);
		assert_true(len >= prev);
		for (i = prev; i < len; i++) {
			char want[32];

			snprintf(want, sizeof(want), "race-%u", i);
			if (strcmp(vmstats_at(t, i)->id, want))
				fail_msg("entry %u published before its id "
					 "(\"%s\")", i, vmstats_at(t, i)->id);
		}
		prev = len;
		walks++;
	}
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(vmstats_len(t), RACE_VMS);
	assert_true(walks > 0);
	vmstats_free(t);
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grow_and_lookup),
		cmocka_unit_test(test_bad_ids_lost),
		cmocka_unit_test(test_open_and_sum),
		cmocka_unit_test(test_reader_sees_whole_entries),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
