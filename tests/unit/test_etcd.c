/* tests/unit/test_etcd.c: ctl/etcd.c's cancel (etcd_cancel), against
 * loopback listeners that never answer, with fleet.etcd.timeout_ms at 30
 * s: a call waiting for an answer, or for a connect (the listener's
 * accept queue full, so the kernel drops the SYNs), ends within about a
 * second of etcd_cancel with -ECANCELED and "cancelled: vmgate is
 * stopping", tries no other endpoint, and leaves the endpoint that works
 * as it was; later calls and watches fail at once; a running watch ends.
 * Without a cancel the same call fails as unreachable, naming the
 * endpoint. libcurl is the real one (dlopened, as in vmgate). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <curl/curl.h>

#include "core/timer.h"
#include "ctl/etcd.h"
#include "route/config-t.h"

#define CANCEL_MS 3000 /* "about a second", with room for a loaded machine */

/* A listener on a free loopback port that never accepts: the kernel
 * completes connects into its queue (until |backlog| is full) and curl's
 * request waits for an answer that never comes. */
static int listener(uint16_t *out_port, int backlog)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, backlog), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*out_port = ntohs(sa.sin_port);
	return fd;
}

/* Whether a connection waits in |fd|'s accept queue. */
static bool pending(int fd, int wait_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, wait_ms) == 1;
}

/* Whether a socket of this process is connecting (SYN_SENT) to |port|. */
static bool syn_sent_to(uint16_t port)
{
	char line[512];
	bool found = false;
	FILE *f = fopen("/proc/net/tcp", "r");

	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned rport, st;

		if (sscanf(line, " %*d: %*x:%*x %*x:%x %x", &rport, &st) == 2 &&
		    rport == port && st == 2)
			found = true;
	}
	fclose(f);
	return found;
}

struct client {
	struct config_fleet cfg;
	char *eps[2];
	char ep_buf[2][64];
	struct etcd e;
};

static void client_init(struct client *c, const uint16_t *ports, size_t n,
			uint32_t timeout_ms)
{
	char err[512];
	size_t i;

	memset(c, 0, sizeof(*c));
	for (i = 0; i < n; i++) {
		snprintf(c->ep_buf[i], sizeof(c->ep_buf[i]),
			 "http://127.0.0.1:%u", ports[i]);
		c->eps[i] = c->ep_buf[i];
	}
	c->cfg.enabled = true;
	c->cfg.endpoints = c->eps;
	c->cfg.endpoints_len = n;
	c->cfg.timeout_ms = timeout_ms;
	if (etcd_init(&c->e, &c->cfg, err, sizeof(err)))
		fail_msg("etcd_init: %s", err);
}

/* etcd_call on a thread of its own. */
struct call {
	struct etcd *e;
	pthread_t thread;
	int ret;
	char err[512];
	uint64_t ms;
};

static void *call_main(void *arg)
{
	struct call *c = arg;
	uint64_t t0 = timer_now_ms();
	char *out;
	size_t out_len;

	c->ret = etcd_call(c->e, &out, &out_len, "kv/range", "{\"key\":\"eA==\"}",
			   c->err, sizeof(c->err));
	free(out);
	c->ms = timer_now_ms() - t0;
	return NULL;
}

static void call_start(struct call *c, struct etcd *e)
{
	memset(c, 0, sizeof(*c));
	c->e = e;
	assert_int_equal(pthread_create(&c->thread, NULL, call_main, c), 0);
}

/* Polls |ok| every 5 ms for at most |ms|. */
static bool wait_for(bool (*ok)(void *), void *arg, int ms)
{
	uint64_t end = timer_now_ms() + (uint64_t)ms;

	while (!ok(arg)) {
		struct timespec ts = { 0, 5 * 1000000 };

		if (timer_now_ms() > end)
			return false;
		nanosleep(&ts, NULL);
	}
	return true;
}

static int first_fd;
static uint16_t first_port;

static bool first_pending(void *arg)
{
	return pending(first_fd, 0);
}

static bool first_syn_sent(void *arg)
{
	return syn_sent_to(first_port);
}

/* An answer awaited: cancelled, not retried on the second endpoint. */
static void test_cancel_waiting_for_an_answer(void **state)
{
	uint16_t ports[2];
	int fds[2] = { listener(&ports[0], 16), listener(&ports[1], 16) };
	struct client cl;
	struct call c;
	char ep[300];
	uint64_t t0;

	client_init(&cl, ports, 2, 30000);
	first_fd = fds[0];
	call_start(&c, &cl.e);
	assert_true(wait_for(first_pending, NULL, 5000));
	t0 = timer_now_ms();
	etcd_cancel(&cl.e);
	assert_true(etcd_cancelled(&cl.e));
	pthread_join(c.thread, NULL);
	print_message("cancelled %llu ms after etcd_cancel\n",
		      (unsigned long long)(timer_now_ms() - t0));
	assert_int_equal(c.ret, -ECANCELED);
	assert_string_equal(c.err, ETCD_CANCELLED);
	assert_true(timer_now_ms() - t0 < CANCEL_MS);
	/* Not retried on the next endpoint, which stays untried. */
	assert_false(pending(fds[1], 0));
	etcd_endpoint(&cl.e, ep, sizeof(ep));
	assert_string_equal(ep, cl.eps[0]);

	/* Later calls fail at once, without a connect. */
	call_start(&c, &cl.e);
	pthread_join(c.thread, NULL);
	assert_int_equal(c.ret, -ECANCELED);
	assert_string_equal(c.err, ETCD_CANCELLED);
	assert_true(c.ms < 100);
	assert_false(pending(fds[1], 0));
	etcd_free(&cl.e);
	close(fds[0]);
	close(fds[1]);
}

/* A connect that hangs (SYNs dropped: a black hole): cancelled too. */
static void test_cancel_waiting_for_a_connect(void **state)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	uint16_t port;
	int fd = listener(&port, 0), filler;
	struct client cl;
	struct call c;
	uint64_t t0;

	/* One connection fills a backlog of 0: later SYNs are dropped. */
	filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons(port);
	assert_int_equal(connect(filler, (struct sockaddr *)&sa, sizeof(sa)),
			 0);
	client_init(&cl, &port, 1, 30000);
	first_port = port;
	call_start(&c, &cl.e);
	assert_true(wait_for(first_syn_sent, NULL, 5000));
	t0 = timer_now_ms();
	etcd_cancel(&cl.e);
	pthread_join(c.thread, NULL);
	print_message("connect cancelled %llu ms after etcd_cancel\n",
		      (unsigned long long)(timer_now_ms() - t0));
	assert_int_equal(c.ret, -ECANCELED);
	assert_string_equal(c.err, ETCD_CANCELLED);
	assert_true(timer_now_ms() - t0 < CANCEL_MS);
	etcd_free(&cl.e);
	close(filler);
	close(fd);
}

/* Without a cancel: unreachable, naming the endpoint, after the timeout. */
static void test_timeout_is_not_cancelled(void **state)
{
	uint16_t port;
	int fd = listener(&port, 16);
	struct client cl;
	struct call c;
	char want[128];

	client_init(&cl, &port, 1, 300);
	call_start(&c, &cl.e);
	pthread_join(c.thread, NULL);
	assert_int_equal(c.ret, -EHOSTUNREACH);
	snprintf(want, sizeof(want), "etcd %s: ", cl.eps[0]);
	assert_memory_equal(c.err, want, strlen(want));
	assert_null(strstr(c.err, "cancelled"));
	assert_true(c.ms >= 300);
	assert_false(etcd_cancelled(&cl.e));
	etcd_free(&cl.e);
	close(fd);
}

static bool on_line(void *arg, const char *line, size_t len)
{
	return true;
}

/* A watch waiting for its stream ends on a cancel; a new one cannot
 * start. */
static void test_cancel_watch(void **state)
{
	uint16_t port;
	int fd = listener(&port, 16), ret = 1;
	struct client cl;
	struct etcd_watch w;
	uint64_t t0, end;

	client_init(&cl, &port, 1, 30000);
	assert_int_equal(etcd_watch_start(&cl.e, &w, "{}", on_line, NULL), 0);
	for (end = timer_now_ms() + 5000; !pending(fd, 0) &&
	     timer_now_ms() < end;)
		assert_int_equal(etcd_watch_step(&w, 10), 1);
	assert_true(pending(fd, 0));
	t0 = timer_now_ms();
	etcd_cancel(&cl.e);
	while (ret && timer_now_ms() - t0 < CANCEL_MS)
		ret = etcd_watch_step(&w, 50);
	assert_int_equal(ret, 0);
	assert_int_equal(w.result, CURLE_ABORTED_BY_CALLBACK);
	assert_string_equal(w.error, ETCD_CANCELLED);
	etcd_watch_stop(&w);

	assert_int_equal(etcd_watch_start(&cl.e, &w, "{}", on_line, NULL),
			 -ECANCELED);
	assert_string_equal(w.error, ETCD_CANCELLED);
	etcd_watch_stop(&w);
	etcd_free(&cl.e);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cancel_waiting_for_an_answer),
		cmocka_unit_test(test_cancel_waiting_for_a_connect),
		cmocka_unit_test(test_timeout_is_not_cancelled),
		cmocka_unit_test(test_cancel_watch),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
