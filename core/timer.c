/* core/timer.c: see timer.h. */
#include "core/timer.h"

#include <stddef.h>
#include <time.h>

uint64_t timer_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void timer_list_init(struct timer_list *l, uint64_t duration_ms)
{
	l->head.prev = l->head.next = &l->head;
	l->duration_ms = duration_ms;
}

void timer_disarm(struct timer_node *n)
{
	if (!n->next)
		return;
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = NULL;
}

void timer_arm(struct timer_list *l, struct timer_node *n, uint64_t now_ms)
{
	timer_disarm(n);
	n->deadline_ms = now_ms + l->duration_ms;
	n->prev = l->head.prev;
	n->next = &l->head;
	l->head.prev->next = n;
	l->head.prev = n;
}

struct timer_node *timer_pop_expired(struct timer_list *l, uint64_t now_ms)
{
	struct timer_node *n = l->head.next;

	if (n == &l->head || n->deadline_ms > now_ms)
		return NULL;
	timer_disarm(n);
	return n;
}
