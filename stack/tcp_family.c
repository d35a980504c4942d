/* Fork families: several engines, one per process, behind one address.
 *
 * After fork() each process of a family runs its own copy of the engine on
 * its own NIC queue, and every queue sees every frame for the address
 * (AF_PACKET copies them all).  An engine then owns only its connections:
 * the input path (tcp_input.c) drops what matches none of them as
 * drop_tcp_family instead of answering RST, and asks cfg.syn_owner which
 * engine takes each new connection.  The child's copy starts by forgetting
 * every connection it inherited: they are the parent's. */
#include "tcp.h"

void xt_stack_set_family(struct xt_stack *st, int on)
{
	st->family = on ? 1 : 0;
}

int xt_stack_family(const struct xt_stack *st)
{
	return st->family;
}

uint32_t xt_stack_forget_connections(struct xt_stack *st,
				     void (*each)(void *ctx, int sock, void *udata, int kept), void *ctx)
{
	uint32_t n = 0;

	/* Listeners first let go of their children, so freeing a child below
	 * never follows a parent pointer. */
	for (uint32_t i = 0; i < st->sock_cap; i++) {
		struct xt_sock *l = st->socks[i];
		if (!l || l->state != XT_LISTEN)
			continue;
		if (each && !l->orphan && l->udata)
			each(ctx, l->id, l->udata, 1);
		while (l->synq)
			xt_listen_unlink(l->synq);
		while (l->aq_head)
			xt_listen_unlink(l->aq_head);
		l->aq_tail = NULL;
		l->synq_overflow_t = 0;
	}
	for (uint32_t i = 0; i < st->sock_cap; i++) {
		struct xt_sock *s = st->socks[i];
		if (!s || s->state == XT_LISTEN)
			continue;
		if (each && !s->orphan && s->udata)
			each(ctx, s->id, s->udata, 0);
		s->parent = NULL;
		xt_sock_free(st, s);
		n++;
	}
	st->ntx = 0; /* batched by the parent: its copy sends them */
	(void)xt_arp_forget_queued(st);
	return n;
}

void xt_stack_reseed_ports(struct xt_stack *st, uint64_t seed)
{
	st->port_hint = (uint32_t)xt_siphash(st->cfg.secret, &seed, sizeof(seed));
}
