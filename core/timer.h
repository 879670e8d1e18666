/* core/timer.h: per-worker deadlines.
 *
 * Every timeout of one kind (handshake, idle) has the same duration, so
 * deadlines armed in time order are also sorted: each kind is a FIFO list,
 * arming appends at the tail and expiry pops from the head, both O(1). A
 * node is on at most one list at a time. Connect timeouts are not here:
 * they are io_uring linked timeouts on the connect itself.
 *
 * Times are milliseconds of CLOCK_MONOTONIC. Nothing here is thread-safe;
 * each worker owns its lists.
 */
#ifndef VMGATE_CORE_TIMER_H
#define VMGATE_CORE_TIMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct timer_node {
	struct timer_node *prev, *next;
	uint64_t deadline_ms;
};

struct timer_list {
	struct timer_node head; /* sentinel; list empty when head.next == &head */
	uint64_t duration_ms;
};

uint64_t timer_now_ms(void);

void timer_list_init(struct timer_list *l, uint64_t duration_ms);

/* timer_arm (re)arms |n| on |l| to expire duration_ms after |now_ms|,
 * taking it off any list it was on. */
void timer_arm(struct timer_list *l, struct timer_node *n, uint64_t now_ms);

/* timer_disarm takes |n| off its list; a no-op if it is on none (also for
 * an all-zero node). */
void timer_disarm(struct timer_node *n);

static inline bool timer_armed(const struct timer_node *n)
{
	return n->next != NULL;
}

/* timer_pop_expired takes the head of |l| off and returns it if its
 * deadline is at or before |now_ms|, else NULL. */
struct timer_node *timer_pop_expired(struct timer_list *l, uint64_t now_ms);

#endif
