/* core/steer-t.h: what core/steer.bpf.c and its loader core/steer.c
 * share: the maps' sizes and key layout. No libc: the BPF side includes
 * it too. */
#ifndef VMGATE_CORE_STEER_T_H
#define VMGATE_CORE_STEER_T_H

#include <linux/types.h>

/* Steered addresses at most (listen.addresses). */
#define STEER_ADDRS_MAX 256
/* 65,536 port bits, 64 to a word. */
#define STEER_PORT_WORDS 1024
/* Listeners in the SOCKMAP at most: one per worker (Kconfig MAX_WORKERS
 * is at most 1024). */
#define STEER_SOCKS_MAX 1024

/* steer_meta's one entry: who steers with these (pinned) maps. */
struct steer_meta {
	__u32 pid;         /* the vmgate whose listeners are in steer_socks */
	__u16 listen_port; /* their port, on ::ffff:127.0.0.1 */
	__u16 listeners;   /* how many (slots 0..listeners-1) */
};

/* An address as the kernel holds it, in network byte order; IPv4 as
 * v4-mapped (::ffff:a.b.c.d). All zero ("::") steers every address. */
struct steer_addr {
	__u32 w[4];
};

#endif
