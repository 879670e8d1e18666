/* tests/unit/test_watch.c: ctl/watch.c on a real inotify descriptor: a
 * certificate named in directories that do not exist yet is watched for
 * from the nearest one that does, one step at a time; a directory that
 * arrived before its watch asks for one more reload (watch_caught_up),
 * once; a watched directory deleted and made again is watched anew. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl/control_int.h"

static char tmp[] = "/tmp/vmgate-test-watch-XXXXXX";
static char yaml[PATH_MAX], cert[PATH_MAX], key[PATH_MAX];
static struct config_cert certs[1];
static struct config cfg;
static struct control ctl;

static const char *at(const char *rel)
{
	static char p[4][PATH_MAX];
	static int k;

	k = (k + 1) % 4;
	snprintf(p[k], sizeof(p[k]), "%s/%s", tmp, rel);
	return p[k];
}

static const struct watch *find(const char *dir)
{
	for (size_t i = 0; i < ctl.watches_len; i++)
		if (!strcmp(ctl.watches[i].dir, dir))
			return &ctl.watches[i];
	return NULL;
}

static bool awaits(const struct watch *w, const char *name)
{
	for (size_t i = 0; w && i < w->names_len; i++)
		if (!strcmp(w->names[i], name))
			return w->subdir[i];
	return false;
}

/* The events queued so far, as control_run hands them over. */
static bool events_hit(void)
{
	_Alignas(struct inotify_event) uint8_t buf[4096];
	bool hit = false;
	ssize_t n;

	while ((n = read(ctl.ifd, buf, sizeof(buf))) > 0)
		hit |= control_events_match(&ctl, buf, (size_t)n);
	return hit;
}

static void touch(const char *path)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs("x\n", f);
	assert_int_equal(fclose(f), 0);
}

static int setup(void **state)
{
	(void)state;
	if (!mkdtemp(tmp))
		return -1;
	snprintf(yaml, sizeof(yaml), "%s/appliance.yaml", tmp);
	snprintf(cert, sizeof(cert), "%s/a/b/vm.pem", tmp);
	snprintf(key, sizeof(key), "%s/a/b/vm.key", tmp);
	touch(yaml);
	certs[0].cert_path = cert;
	certs[0].key_path = key;
	cfg.certs = certs;
	cfg.certs_len = 1;
	ctl.path = yaml;
	ctl.cfg = &cfg;
	pthread_mutex_init(&ctl.lock, NULL);
	ctl.ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	return ctl.ifd < 0 ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	control_watches_free(&ctl);
	close(ctl.ifd);
	unlink(cert);
	unlink(key);
	rmdir(at("a/b"));
	rmdir(at("a"));
	unlink(yaml);
	rmdir(tmp);
	return 0;
}

static void rewatch(void)
{
	pthread_mutex_lock(&ctl.lock);
	control_rewatch_locked(&ctl, NULL, NULL, 0);
	pthread_mutex_unlock(&ctl.lock);
}

/* One test, in steps: each depends on the last. */
static void test_a_directory_made_later(void **state)
{
	const struct watch *w;

	(void)state;
	/* Neither a nor a/b: tmp is watched for "a". */
	rewatch();
	w = find(at("a/b"));
	assert_non_null(w);
	assert_int_equal(w->wd, -1);
	assert_string_equal(w->via, tmp);
	assert_true(awaits(find(tmp), "a"));
	assert_true(find(tmp)->wd >= 0);
	assert_false(ctl.watch_caught_up);
	assert_false(events_hit());

	/* a made: seen; the next rewatch waits in a for "b". */
	assert_int_equal(mkdir(at("a"), 0700), 0);
	assert_true(events_hit());
	rewatch();
	assert_string_equal(find(at("a/b"))->via, at("a"));
	assert_true(awaits(find(at("a")), "b"));
	assert_true(find(at("a"))->wd >= 0);
	assert_false(ctl.watch_caught_up);

	/* a/b and its files made before any rewatch (events not read, as
	 * when they come while a reload runs): once a/b is watched, one
	 * more reload is asked for, and only once. */
	assert_int_equal(mkdir(at("a/b"), 0700), 0);
	touch(cert);
	touch(key);
	rewatch();
	w = find(at("a/b"));
	assert_true(w->wd >= 0);
	assert_null(w->via);
	assert_true(ctl.watch_caught_up);
	ctl.watch_caught_up = false;
	events_hit();
	rewatch();
	assert_false(ctl.watch_caught_up);
	assert_false(awaits(find(tmp), "a")); /* nothing awaited there now */

	/* A file written in the watched directory is seen. */
	touch(cert);
	assert_true(events_hit());

	/* a/b deleted and made again: its old watch is gone with it, and it
	 * is watched anew (it kept the dead descriptor before). */
	assert_int_equal(unlink(cert), 0);
	assert_int_equal(unlink(key), 0);
	assert_int_equal(rmdir(at("a/b")), 0);
	assert_true(events_hit());
	assert_int_equal(find(at("a/b"))->wd, -1);
	rewatch();
	assert_string_equal(find(at("a/b"))->via, at("a"));
	assert_int_equal(mkdir(at("a/b"), 0700), 0);
	assert_true(events_hit());
	rewatch();
	assert_true(find(at("a/b"))->wd >= 0);
	events_hit();
	touch(key);
	assert_true(events_hit());
}

/* A missing file handed in (a reload that could not find it) is watched
 * for; one that exists by the time its watch is set asks for a reload. */
static void test_missing_files_handed_in(void **state)
{
	char *missing[1];
	char path[PATH_MAX];

	(void)state;
	snprintf(path, sizeof(path), "%s/later.pem", tmp);
	missing[0] = path;
	ctl.watch_caught_up = false;
	pthread_mutex_lock(&ctl.lock);
	control_rewatch_locked(&ctl, NULL, missing, 1);
	pthread_mutex_unlock(&ctl.lock);
	assert_non_null(find(tmp));
	assert_false(ctl.watch_caught_up);
	touch(path);
	assert_true(events_hit());
	pthread_mutex_lock(&ctl.lock);
	control_rewatch_locked(&ctl, NULL, missing, 1);
	pthread_mutex_unlock(&ctl.lock);
	assert_true(ctl.watch_caught_up);
	ctl.watch_caught_up = false;
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_directory_made_later),
		cmocka_unit_test(test_missing_files_handed_in),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
