/* bench/route_bench.c: the route table at fleet scale.
 *
 *   route_bench --gen FILE N   write an appliance.yaml with N VMs (UUID
 *                              ids, fd00::/8 addresses) to FILE
 *   route_bench FILE           load FILE and report:
 *     - config_load time and route_table_new time;
 *     - resident memory of the table per VM: the RSS delta (from
 *       /proc/self/statm) across route_table_new, divided by the VMs;
 *     - route_lookup latency for "{uuid}.vm.vers.sh", hits (every VM once,
 *       in a shuffled order, so nearly every lookup misses the caches as it
 *       would in a fleet) and misses (random UUIDs that are not there):
 *       median and p99 of per-lookup times read with rdtsc (fenced, so the
 *       lookups do not overlap; the timer's own cost is measured and
 *       subtracted), and the mean of an untimed loop for comparison, where
 *       the CPU may overlap consecutive lookups;
 *     - route_table_derive time for 1 and 1000 changes.
 *
 * The hostnames are prepared beforehand in the order they are looked up,
 * as a connection's SNI would be sitting in a buffer that was just
 * received. `make bench-route` generates 1M VMs and runs this.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include "ctl/config.h"
#include "route/route.h"

#define HOST_CAP 64
#define SUFFIX ".vm.vers.sh"

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
	/* splitmix64 */
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void uuid(char out[37])
{
	uint64_t a = rng(), b = rng();

	snprintf(out, 37, "%08x-%04x-4%03x-%04x-%012llx", (unsigned)(a >> 32),
		 (unsigned)(a >> 16) & 0xffff, (unsigned)a & 0xfff,
		 (unsigned)(0x8000 | ((b >> 48) & 0x3fff)),
		 (unsigned long long)(b & 0xffffffffffffULL));
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long rss_bytes(void)
{
	long size, res = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f)
		return 0;
	if (fscanf(f, "%ld %ld", &size, &res) != 2)
		res = 0;
	fclose(f);
	return res * sysconf(_SC_PAGESIZE);
}

static int gen(const char *path, long n)
{
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	FILE *f = fopen(path, "w");
	char id[37];

	if (!f) {
		perror(path);
		return 1;
	}
	/* Any readable file passes the loader's certificate check; the
	 * table does not look at certificates. */
	fprintf(f, "listen:\n  ports: [443, 3000, 8080]\n"
		   "tls:\n  certificates:\n"
		   "    - { cert: %s, key: %s }\n"
		   "domains:\n  - suffix: vm.vers.sh\n"
		   "    port_map: { 443: 22 }\n"
		   "    allowed_ports: [443, 3000, 8080]\n"
		   "vms:\n", base, base);
	for (long i = 0; i < n; i++) {
		uuid(id);
		fprintf(f, "  - { id: %s, address: \"fd00::%lx:%lx\" }\n", id,
			(i >> 16) & 0xffff, i & 0xffff);
	}
	if (fclose(f)) {
		perror(path);
		return 1;
	}
	return 0;
}

static double tsc_ghz(void)
{
	double t0 = now(), t1;
	uint64_t c0 = __rdtsc(), c1;

	do
		t1 = now();
	while (t1 - t0 < 0.2);
	c1 = __rdtsc();
	return (double)(c1 - c0) / ((t1 - t0) * 1e9);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* One fenced rdtsc pair around one lookup. */
static inline uint64_t timed_lookup(const struct route_table *t,
				    const char *host, size_t len,
				    enum route_verdict *v)
{
	struct route_match m;
	uint64_t c0, c1;

	_mm_lfence();
	c0 = __rdtsc();
	_mm_lfence();
	*v = route_lookup(t, &m, (const uint8_t *)host, len, 443);
	/* Make the result a dependency of the second read. */
	if (*v == ROUTE_OK)
		__asm__ volatile("" : : "r"(m.addr->s6_addr[0]));
	_mm_lfence();
	c1 = __rdtsc();
	_mm_lfence();
	return c1 - c0;
}

static void lat(const char *what, const struct route_table *t,
		const char *hosts, size_t n, enum route_verdict want,
		double ghz, uint64_t overhead)
{
	uint64_t *ticks = malloc(n * sizeof(*ticks));
	size_t bad = 0;
	double t0, mean;

	if (!ticks)
		abort();
	for (size_t i = 0; i < n; i++) {
		const char *h = hosts + i * HOST_CAP;
		enum route_verdict v;
		uint64_t c = timed_lookup(t, h, strlen(h), &v);

		ticks[i] = c > overhead ? c - overhead : 0;
		bad += v != want;
	}
	qsort(ticks, n, sizeof(*ticks), cmp_u64);

	/* The same lookups again, untimed one by one. The first pass warmed
	 * nothing useful: the table is far larger than the caches. */
	t0 = now();
	for (size_t i = 0; i < n; i++) {
		const char *h = hosts + i * HOST_CAP;
		struct route_match m;

		bad += route_lookup(t, &m, (const uint8_t *)h, strlen(h),
				    443) != want;
	}
	mean = (now() - t0) * 1e9 / (double)n;

	printf("lookup %-5s  p50 %4.0f ns  p99 %4.0f ns  p99.9 %4.0f ns  "
	       "max %6.0f ns  (mean untimed %3.0f ns, %zu lookups%s)\n",
	       what, (double)ticks[n / 2] / ghz,
	       (double)ticks[n * 99 / 100] / ghz,
	       (double)ticks[n * 999 / 1000] / ghz,
	       (double)ticks[n - 1] / ghz, mean, n,
	       bad ? ", WRONG VERDICTS" : "");
	free(ticks);
}

struct shuffle_ctx {
	char *ids; /* 37 bytes each */
	size_t len;
};

static bool collect(void *arg, const char *id, const struct in6_addr *addr)
{
	struct shuffle_ctx *c = arg;

	snprintf(c->ids + c->len * 37, 37, "%s", id);
	c->len++;
	return true;
}

static void derive(struct route_table *t, const char *ids, size_t n_ids,
		   size_t n)
{
	struct route_vm_change *ch = calloc(n, sizeof(*ch));
	char (*fresh)[37] = calloc(n, 37);
	struct route_table *d;
	double t0, dt;
	size_t want;

	if (!ch || !fresh)
		abort();
	/* A third new VMs, a third moved, a third removed. */
	for (size_t i = 0; i < n; i++) {
		if (i % 3 == 0) {
			uuid(fresh[i]);
			ch[i].id = fresh[i];
		} else {
			ch[i].id = ids + (rng() % n_ids) * 37;
			ch[i].removed = i % 3 == 2;
		}
		inet_pton(AF_INET6, "fd01::1", &ch[i].addr);
	}
	t0 = now();
	d = route_table_derive(t, ch, n);
	dt = now() - t0;
	if (!d)
		abort();
	want = route_vm_count(t);
	printf("derive %4zu changes  %8.1f us  (VMs %zu -> %zu)\n", n,
	       dt * 1e6, want, route_vm_count(d));
	t0 = now();
	route_table_free(d);
	printf("free derived         %8.1f us\n", (now() - t0) * 1e6);
	free(fresh);
	free(ch);
}

int main(int argc, char **argv)
{
	struct config_errors errs;
	struct shuffle_ctx sc = { 0 };
	struct route_table *t;
	struct config cfg;
	char *hits, *misses;
	uint64_t overhead = UINT64_MAX;
	double t0, t_load, t_new, ghz;
	long r0, r1;
	size_t n;

	if (argc == 4 && !strcmp(argv[1], "--gen"))
		return gen(argv[2], atol(argv[3]));
	if (argc != 2) {
		fprintf(stderr, "usage: %s --gen FILE N | %s FILE\n", argv[0],
			argv[0]);
		return 2;
	}

	t0 = now();
	if (!config_load(&cfg, &errs, argv[1])) {
		config_errors_print(stderr, &errs);
		return 1;
	}
	t_load = now() - t0;
	config_errors_free(&errs);

	r0 = rss_bytes();
	t0 = now();
	t = route_table_new(&cfg);
	t_new = now() - t0;
	r1 = rss_bytes();
	if (!t)
		return 1;
	n = route_vm_count(t);
	config_free(&cfg);
	printf("VMs %zu\n", n);
	printf("config_load      %6.3f s\n", t_load);
	printf("route_table_new  %6.3f s\n", t_new);
	printf("load total       %6.3f s\n", t_load + t_new);
	printf("table memory     %6.1f bytes/VM resident (%.1f MiB)\n",
	       (double)(r1 - r0) / (double)(n ? n : 1),
	       (double)(r1 - r0) / 1048576.0);
	if (n == 0)
		return 0;

	/* Hostnames: every VM once, shuffled; as many random misses. */
	sc.ids = malloc(n * 37);
	hits = malloc(n * HOST_CAP);
	misses = malloc(n * HOST_CAP);
	if (!sc.ids || !hits || !misses)
		return 1;
	route_vm_foreach(t, collect, &sc);
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = rng() % (i + 1);
		char tmp[37];

		memcpy(tmp, sc.ids + i * 37, 37);
		memcpy(sc.ids + i * 37, sc.ids + j * 37, 37);
		memcpy(sc.ids + j * 37, tmp, 37);
	}
	for (size_t i = 0; i < n; i++) {
		char id[37];

		snprintf(hits + i * HOST_CAP, HOST_CAP, "%s" SUFFIX,
			 sc.ids + i * 37);
		uuid(id);
		snprintf(misses + i * HOST_CAP, HOST_CAP, "%s" SUFFIX, id);
	}

	ghz = tsc_ghz();
	for (int i = 0; i < 100000; i++) {
		uint64_t c0, c1;

		_mm_lfence();
		c0 = __rdtsc();
		_mm_lfence();
		_mm_lfence();
		c1 = __rdtsc();
		_mm_lfence();
		if (c1 - c0 < overhead)
			overhead = c1 - c0;
	}
	printf("tsc %.2f GHz, timer overhead %llu ticks (subtracted)\n", ghz,
	       (unsigned long long)overhead);
	lat("hit", t, hits, n, ROUTE_OK, ghz, overhead);
	lat("miss", t, misses, n, ROUTE_UNKNOWN_VM, ghz, overhead);

	derive(t, sc.ids, n, 1);
	derive(t, sc.ids, n, 1000);

	free(misses);
	free(hits);
	free(sc.ids);
	route_table_free(t);
	return 0;
}
