/* tests/unit/test_trie.c: route/trie.c, the reversed-label trie. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "route/trie.h"

static int ins(struct trie *t, const char *name, enum trie_kind k,
	       uint32_t v)
{
	return trie_insert(t, name, strlen(name), k, v);
}

static bool look(const struct trie *t, struct trie_match *m, const char *n)
{
	return trie_lookup(t, m, n, strlen(n));
}

static void test_empty(void **state)
{
	struct trie t = { 0 };
	struct trie_match m;

	(void)state;
	assert_false(look(&t, &m, "a.b"));
	assert_false(trie_lookup(&t, &m, "", 0));
	trie_free(&t);
	trie_free(NULL);
}

static void test_exact(void **state)
{
	struct trie t = { 0 };
	struct trie_match m;

	(void)state;
	assert_int_equal(ins(&t, "api.vers.sh", TRIE_EXACT, 7), 0);
	assert_true(look(&t, &m, "api.vers.sh"));
	assert_int_equal(m.value, 7);
	assert_false(m.wildcard);
	assert_int_equal(m.prefix_len, 0);
	assert_int_equal(m.prefix_labels, 0);
	/* An exact name does not match anything under it or above it. */
	assert_false(look(&t, &m, "x.api.vers.sh"));
	assert_false(look(&t, &m, "vers.sh"));
	assert_false(look(&t, &m, "sh"));
	trie_free(&t);
}

static void test_wildcard(void **state)
{
	struct trie t = { 0 };
	struct trie_match m;

	(void)state;
	assert_int_equal(ins(&t, "vm.vers.sh", TRIE_WILDCARD, 1), 0);
	assert_true(look(&t, &m, "abc.vm.vers.sh"));
	assert_true(m.wildcard);
	assert_int_equal(m.value, 1);
	assert_int_equal(m.prefix_len, 3);
	assert_int_equal(m.prefix_labels, 1);

	assert_true(look(&t, &m, "a.b.c.vm.vers.sh"));
	assert_int_equal(m.prefix_len, 5);
	assert_int_equal(m.prefix_labels, 3);

	/* The wildcard needs something in front of it. */
	assert_false(look(&t, &m, "vm.vers.sh"));
	assert_false(look(&t, &m, ".vm.vers.sh"));
	assert_false(look(&t, &m, "xvm.vers.sh"));
	assert_false(look(&t, &m, "x.vm.vers.shx"));
	assert_false(look(&t, &m, "x.vm.vers"));
	trie_free(&t);
}

static void test_longest_suffix(void **state)
{
	struct trie t = { 0 };
	struct trie_match m;

	(void)state;
	assert_int_equal(ins(&t, "sh", TRIE_WILDCARD, 1), 0);
	assert_int_equal(ins(&t, "vers.sh", TRIE_WILDCARD, 2), 0);
	assert_int_equal(ins(&t, "vm.vers.sh", TRIE_WILDCARD, 3), 0);
	assert_int_equal(ins(&t, "vm.vers.sh", TRIE_EXACT, 4), 0);
	assert_int_equal(ins(&t, "x.vm.vers.sh", TRIE_EXACT, 5), 0);

	assert_true(look(&t, &m, "a.vm.vers.sh"));
	assert_int_equal(m.value, 3);
	assert_true(look(&t, &m, "a.b.vm.vers.sh"));
	assert_int_equal(m.value, 3);
	assert_int_equal(m.prefix_labels, 2);
	/* The exact value of the node wins over the wildcards above it. */
	assert_true(look(&t, &m, "vm.vers.sh"));
	assert_int_equal(m.value, 4);
	assert_false(m.wildcard);
	assert_true(look(&t, &m, "x.vm.vers.sh"));
	assert_int_equal(m.value, 5);
	/* Under an exact name the wildcard above it still applies. */
	assert_true(look(&t, &m, "y.x.vm.vers.sh"));
	assert_int_equal(m.value, 3);
	assert_int_equal(m.prefix_len, 3);
	assert_true(look(&t, &m, "a.vers.sh"));
	assert_int_equal(m.value, 2);
	assert_true(look(&t, &m, "vm2.vers.sh"));
	assert_int_equal(m.value, 2);
	assert_true(look(&t, &m, "vers.sh"));
	assert_int_equal(m.value, 1);
	assert_false(look(&t, &m, "sh"));
	assert_false(look(&t, &m, "com"));
	trie_free(&t);
}

static void test_insert_errors(void **state)
{
	struct trie t = { 0 };
	char long_label[80];

	(void)state;
	assert_int_equal(ins(&t, "a.b", TRIE_WILDCARD, 1), 0);
	assert_int_equal(ins(&t, "a.b", TRIE_WILDCARD, 2), -EEXIST);
	assert_int_equal(ins(&t, "a.b", TRIE_EXACT, 2), 0);
	assert_int_equal(ins(&t, "a.b", TRIE_EXACT, 3), -EEXIST);
	assert_int_equal(ins(&t, "", TRIE_EXACT, 1), -EINVAL);
	assert_int_equal(ins(&t, "a..b", TRIE_EXACT, 1), -EINVAL);
	assert_int_equal(ins(&t, ".a", TRIE_EXACT, 1), -EINVAL);
	assert_int_equal(ins(&t, "a.", TRIE_EXACT, 1), -EINVAL);
	memset(long_label, 'x', 64);
	long_label[64] = '\0';
	assert_int_equal(ins(&t, long_label, TRIE_EXACT, 1), -EINVAL);
	long_label[63] = '\0';
	assert_int_equal(ins(&t, long_label, TRIE_EXACT, 1), 0);
	trie_free(&t);
}

/* Malformed names must not match or read out of bounds. */
static void test_malformed_lookup(void **state)
{
	static const char *const names[] = {
		".", "..", "...", "a.", ".b", "b..", "..b", "a..b",
	};
	struct trie t = { 0 };
	struct trie_match m;

	(void)state;
	assert_int_equal(ins(&t, "b", TRIE_WILDCARD, 1), 0);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		bool got = look(&t, &m, names[i]);

		if (!strcmp(names[i], "a..b") || !strcmp(names[i], "..b")) {
			/* "a." or "." in front of "b": the trie does not
			 * judge the prefix, the caller counts its labels. */
			assert_true(got);
			assert_int_equal(m.prefix_labels, 2);
		} else if (got) {
			fail_msg("'%s' matched", names[i]);
		}
	}
	trie_free(&t);
}

/* Many siblings: the sorted array and its binary search. */
static void test_many_siblings(void **state)
{
	struct trie t = { 0 };
	struct trie_match m;
	char name[64];

	(void)state;
	for (uint32_t i = 0; i < 5000; i++) {
		/* Insert in a scrambled order to exercise the memmove. */
		uint32_t k = (i * 7919) % 5000;

		snprintf(name, sizeof(name), "d%u.example", k);
		assert_int_equal(ins(&t, name, TRIE_WILDCARD, k), 0);
	}
	for (uint32_t k = 0; k < 5000; k++) {
		snprintf(name, sizeof(name), "vm.d%u.example", k);
		if (!look(&t, &m, name))
			fail_msg("no match for %s", name);
		assert_int_equal(m.value, k);
	}
	assert_false(look(&t, &m, "vm.d5000.example"));
	trie_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_exact),
		cmocka_unit_test(test_wildcard),
		cmocka_unit_test(test_longest_suffix),
		cmocka_unit_test(test_insert_errors),
		cmocka_unit_test(test_malformed_lookup),
		cmocka_unit_test(test_many_siblings),
	};

	return cmocka_run_group_tests_name("trie", tests, NULL, NULL);
}
