/* A listener's two queues (Linux's request and accept queues): SYN_RECV
 * children in the SYN queue, established ones waiting for accept(). */
#include "tcp.h"

void xt_synq_add(struct xt_sock *l, struct xt_sock *c)
{
	c->sq_prev = NULL;
	c->sq_next = l->synq;
	if (l->synq)
		l->synq->sq_prev = c;
	l->synq = c;
	c->in_synq = 1;
	l->synq_len++;
}

static void synq_remove(struct xt_sock *l, struct xt_sock *c)
{
	if (c->sq_prev)
		c->sq_prev->sq_next = c->sq_next;
	else
		l->synq = c->sq_next;
	if (c->sq_next)
		c->sq_next->sq_prev = c->sq_prev;
	c->sq_prev = c->sq_next = NULL;
	c->in_synq = 0;
	l->synq_len--;
}

void xt_acceptq_add(struct xt_stack *st, struct xt_sock *l, struct xt_sock *c)
{
	if (c->in_synq)
		synq_remove(l, c);
	c->aq_next = NULL;
	if (l->aq_tail)
		l->aq_tail->aq_next = c;
	else
		l->aq_head = c;
	l->aq_tail = c;
	c->in_aq = 1;
	l->aq_len++;
	l->ev_new = 1; /* every new connection is an edge (Linux sk_data_ready) */
	xt_sock_wake(st, l);
}

struct xt_sock *xt_acceptq_pop(struct xt_sock *l)
{
	struct xt_sock *c = l->aq_head;
	if (!c)
		return NULL;
	l->aq_head = c->aq_next;
	if (!l->aq_head)
		l->aq_tail = NULL;
	l->aq_len--;
	c->aq_next = NULL;
	c->in_aq = 0;
	c->parent = NULL;
	return c;
}

/* Takes a child off whichever queue of its listener holds it. */
void xt_listen_unlink(struct xt_sock *c)
{
	struct xt_sock *l = c->parent;
	if (c->in_synq)
		synq_remove(l, c);
	if (c->in_aq) {
		struct xt_sock **pp = &l->aq_head, *prev = NULL;
		while (*pp && *pp != c) {
			prev = *pp;
			pp = &(*pp)->aq_next;
		}
		if (*pp)
			*pp = c->aq_next;
		if (l->aq_tail == c)
			l->aq_tail = prev;
		l->aq_len--;
		c->in_aq = 0;
	}
	c->parent = NULL;
}
