/* core/steer.bpf.c: the sk_lookup program (BPF_PROG_TYPE_SK_LOOKUP) that
 * steers every port of the steered addresses to the workers' listeners.
 *
 * The kernel runs it for each new TCP connection (each SYN that finds no
 * established socket) in the network namespace it is attached to, before
 * the listener lookup. A connection whose local address is in
 * steer_addrs (IPv4 as v4-mapped; "::" steers every address) and whose
 * local port is set in steer_ports goes to a listener of steer_socks: the
 * first one still open. bpf_sk_assign without BPF_SK_LOOKUP_F_NO_REUSEPORT
 * then lets the kernel's SO_REUSEPORT selection pick among that listener's
 * group, so connections spread over the workers. Everything else is left
 * to the normal lookup (SK_PASS without an assignment): the host keeps its
 * own services on other addresses and on excluded ports.
 *
 * Built with clang -target bpf and embedded in vmgate (core/steer.c loads
 * it with libbpf).
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "core/steer-t.h"

#define AF_INET 2

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STEER_ADDRS_MAX);
	__type(key, struct steer_addr);
	__type(value, __u8);
} steer_addrs SEC(".maps");

/* Bit p of the 65,536-bit port bitmap is bit p % 64 of word p / 64. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, STEER_PORT_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} steer_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, STEER_SOCKS_MAX);
	__type(key, __u32);
	__type(value, __u64);
} steer_socks SEC(".maps");

/* Not read by the program: the owner of the maps, for an upgrade
 * (core/steer.c). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct steer_meta);
} steer_meta SEC(".maps");

SEC("sk_lookup")
int steer(struct bpf_sk_lookup *ctx)
{
	struct steer_addr a = { 0 };
	__u32 port = ctx->local_port & 0xffff, word = port / 64, i, ip4;
	struct bpf_sock *sk;
	__u64 *bits;

	if (ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	/* Every field read, at its own offset, before choosing: the
	 * verifier refuses a context pointer the compiler would otherwise
	 * offset by the branch taken. */
	ip4 = ctx->local_ip4;
	a.w[0] = ctx->local_ip6[0];
	a.w[1] = ctx->local_ip6[1];
	a.w[2] = ctx->local_ip6[2];
	a.w[3] = ctx->local_ip6[3];
	if (ctx->family == AF_INET) {
		a.w[0] = 0;
		a.w[1] = 0;
		a.w[2] = bpf_htonl(0xffff);
		a.w[3] = ip4;
	}
	if (!bpf_map_lookup_elem(&steer_addrs, &a)) {
		struct steer_addr any = { 0 };

		if (!bpf_map_lookup_elem(&steer_addrs, &any))
			return SK_PASS;
	}
	bits = bpf_map_lookup_elem(&steer_ports, &word);
	if (!bits || !(*bits & (1ULL << (port % 64))))
		return SK_PASS;
	/* Every worker's listener is in the map, so that one closing (its
	 * worker gone) does not stop steering; a closed socket leaves the
	 * map by itself. */
	for (i = 0; i < STEER_SOCKS_MAX; i++) {
		long err;

		sk = bpf_map_lookup_elem(&steer_socks, &i);
		if (!sk)
			continue;
		err = bpf_sk_assign(ctx, sk, 0);
		bpf_sk_release(sk);
		if (!err)
			break;
	}
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
