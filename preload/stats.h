/* Per-process statistics for tools/xtcp-stat, packet capture control and
 * the exit summary: the shim's side (stats.c).
 *
 * libxtcp.so publishes a snapshot of its engine into a POSIX shared-memory
 * segment /dev/shm/xtcp.<pid> (mode 0600: the socket table says who the
 * process talks to, so only its user and root read it, as with ss -p).  The
 * layout is stats_fmt.h, written by stats_seg.c.
 *
 * Cost: nothing on the data path beyond the engine's counters.  The
 * progress thread calls xp_stats_tick() once per loop, outside the engine
 * lock; it looks at two words of the segment and returns unless a reader
 * asked for a snapshot (hdr.req), asked to switch capture (hdr.pcap_ctl),
 * or XP_STATS_IDLE has passed.  It returns when it wants to look again
 * (every XP_STATS_POLL), which the progress thread sleeps no longer than.
 * A snapshot holds the engine lock for the time of copying the counters and
 * one xt_tcp_view() per socket.
 */
#ifndef XP_STATS_H
#define XP_STATS_H

#include "../stack/xtcp.h"
#include "../nic/nic.h"

#define XP_STATS_POLL XT_MS(200) /* how often the progress thread looks at the segment */
#define XP_STATS_IDLE XT_SEC(1)  /* a snapshot at least this often, asked or not */
#define XP_STATS_FD_SCAN 65536   /* fds looked at for the fd column */

/* At attach, after the engine exists, before the progress thread starts.
 * Returns 0, or -errno after one warning in the log (the engine runs
 * without a segment).  In a fork child that attaches again, replaces the
 * parent's mapping with the child's own segment. */
int xp_stats_open(void);
/* Progress thread, engine lock NOT held: publishes if due; returns when to
 * call again (engine clock), XT_TIME_NEVER when there is no segment. */
xt_time_t xp_stats_tick(xt_time_t now);
/* A socket went to the kernel for this reason: counted (and shown by
 * xtcp-stat -s).  Any thread, any lock state. */
void xp_stats_handoff(const char *reason);
/* XTCP_PCAP: wraps the freshly opened NIC in the capture wrapper (nic is
 * returned unchanged when capture is not configured or the file cannot be
 * created, after one log line). */
struct xt_nic *xp_pcap_setup(struct xt_nic *nic);
/* The backend under any capture wrapper (for its own statistics). */
struct xt_nic *xp_nic_base(struct xt_nic *nic);
/* At exit, after the exit drain (engine.c): the summary (XTCP_EXIT_SUMMARY),
 * the capture's last records, and the segment removed.  Idempotent; does
 * nothing in a process that did not create the segment. */
void xp_stats_exit(void);

#endif
