/* TCP_INFO in the layout of Linux's struct tcp_info (<linux/tcp.h>), filled
 * from xt_tcp_info.  The kernel fd answered first, so the user's buffer and
 * length are already checked and *len is what Linux reports (the running
 * kernel's struct size, or less); we overwrite those bytes. */
#define _GNU_SOURCE
#include <linux/tcp.h>
#include <string.h>

#include "shim.h"

int xp_tcp_info(int fd, struct xp_sock *s, void *val, socklen_t *len)
{
	(void)fd;
	struct xt_tcp_info t;
	struct tcp_info li;
	int r = -EBADF;

	xp_lock();
	if (s->esock >= 0)
		r = xt_tcp_info(xp_eng.st, s->esock, &t, xp_clock());
	xp_unlock_lazy();
	if (r < 0)
		return 0; /* keep the kernel's answer */
	memset(&li, 0, sizeof(li));
	li.tcpi_state = t.state;
	li.tcpi_ca_state = t.ca_state;
	li.tcpi_retransmits = t.retransmits;
	li.tcpi_probes = t.probes;
	li.tcpi_backoff = t.backoff;
	li.tcpi_options = t.options;
	li.tcpi_snd_wscale = t.snd_wscale & 15;
	li.tcpi_rcv_wscale = t.rcv_wscale & 15;
	li.tcpi_rto = t.rto_us;
	li.tcpi_ato = t.ato_us;
	li.tcpi_snd_mss = t.snd_mss;
	li.tcpi_rcv_mss = t.rcv_mss;
	li.tcpi_unacked = t.unacked;
	li.tcpi_sacked = t.sacked;
	li.tcpi_lost = t.lost;
	li.tcpi_retrans = t.retrans;
	li.tcpi_fackets = t.fackets;
	li.tcpi_last_data_sent = t.last_data_sent_ms;
	li.tcpi_last_data_recv = t.last_data_recv_ms;
	li.tcpi_last_ack_recv = t.last_ack_recv_ms;
	li.tcpi_pmtu = t.pmtu;
	li.tcpi_rcv_ssthresh = t.rcv_ssthresh;
	li.tcpi_rtt = t.rtt_us;
	li.tcpi_rttvar = t.rttvar_us;
	li.tcpi_snd_ssthresh = t.snd_ssthresh;
	li.tcpi_snd_cwnd = t.snd_cwnd;
	li.tcpi_advmss = t.advmss;
	li.tcpi_reordering = t.reordering;
	li.tcpi_rcv_space = t.rcv_space;
	li.tcpi_total_retrans = t.total_retrans;
	li.tcpi_pacing_rate = ~0ull;
	li.tcpi_max_pacing_rate = ~0ull;
	li.tcpi_bytes_acked = t.bytes_acked;
	li.tcpi_bytes_received = t.bytes_received;
	li.tcpi_segs_out = t.segs_out;
	li.tcpi_segs_in = t.segs_in;
	li.tcpi_notsent_bytes = t.notsent_bytes;
	li.tcpi_min_rtt = t.rtt_us;
	li.tcpi_snd_wnd = t.snd_wnd;
	/* What the kernel wrote is writable; beyond our struct it left its own
	 * (unconnected socket's) bytes, which are zeros for a fresh socket. */
	socklen_t l = *len < sizeof(li) ? *len : (socklen_t)sizeof(li);
	memcpy(val, &li, l);
	return 0;
}
