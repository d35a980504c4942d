/* xtcp statistics segment: the layout libxtcp.so publishes in
 * /dev/shm/xtcp.<pid> and tools/xtcp-stat reads.
 *
 * Self-describing: counter names travel in the segment (name tables written
 * once at open), so a reader never depends on the library's counter order;
 * every table is found by an offset and a count in the header, and every
 * socket entry by sock_entry_size, so fields may be appended in later
 * versions without breaking older readers.  A change that is not an append
 * bumps XTS_VERSION.
 *
 * Requests: a reader adds 1 to hdr.req and waits until hdr.req_done
 * reaches it (the progress thread looks every XP_STATS_POLL); it switches
 * capture through hdr.pcap_ctl the same way.
 *
 * Consistency: a seqlock on hdr.seq.  The writer (one at a time: it holds
 * the engine lock) makes seq odd, writes, makes it even again; a reader
 * copies the segment, and keeps the copy only if seq was the same even
 * value before and after.  Only the static part (magic .. name tables) is
 * written outside the seqlock, before the file is visible under its name.
 *
 * Everything is in host byte order (the reader runs on the same host);
 * addresses and ports too.
 */
#ifndef XTCP_STATS_FMT_H
#define XTCP_STATS_FMT_H

#include <stdint.h>

#define XTS_MAGIC 0x5441545350435458ull /* "XTCPSTAT" read as a little-endian u64 */
#define XTS_VERSION 1u
#define XTS_NAME_LEN 48    /* counter / NIC counter names, NUL-terminated */
#define XTS_REASON_LEN 96  /* hand-off reasons, NUL-terminated */
#define XTS_MAX_HANDOFF 16 /* distinct hand-off reasons kept (the rest: "other") */
#define XTS_SOCK_MAX 4096  /* socket table entries */
#define XTS_MAX_NIC 32
#define XTS_PATH_PREFIX "xtcp." /* <dir>/xtcp.<pid>; dir from XTCP_STAT_DIR, default /dev/shm */
#define XTS_DEFAULT_DIR "/dev/shm"

/* hdr.flags */
#define XTS_F_SOCK_TRUNCATED 1u  /* more sockets than the table holds */

/* hdr.pcap_ctl (written by a reader) and hdr.pcap_state (by the library) */
#define XTS_PCAP_NONE 0u /* ctl: nothing asked; state: no capture (XTCP_PCAP unset) */
#define XTS_PCAP_ON 1u
#define XTS_PCAP_OFF 2u
#define XTS_PCAP_FAILED 3u /* state: a write or open error stopped the capture */

struct xts_hdr {
	/* static part: written before the segment is published */
	uint64_t magic;            /* XTS_MAGIC */
	uint32_t version;          /* XTS_VERSION */
	uint32_t hdr_size;         /* sizeof(struct xts_hdr) of the writer */
	uint64_t total_size;       /* bytes of the whole segment */
	int32_t pid;
	uint32_t ip;               /* engine address, host order */
	uint32_t prefix;           /* its prefix length */
	uint32_t max_sockets;      /* engine's socket limit */
	uint64_t start_realtime_ns;/* when the engine attached (CLOCK_REALTIME) */
	uint64_t proc_start_ticks; /* field 22 of /proc/<pid>/stat: tells a reused pid apart (0: unknown) */
	char comm[32];             /* /proc/self/comm */
	char backend[32];          /* "packet", ... */
	char iface[64];
	char pcap_path[256];       /* XTCP_PCAP, "" when unset */
	uint64_t pcap_max_bytes;   /* XTCP_PCAP_SIZE_MB in bytes (0: no limit) */
	uint32_t pcap_files;       /* XTCP_PCAP_FILES */
	uint32_t ncounters, counter_names_off; /* ncounters x char[XTS_NAME_LEN] */
	uint32_t counters_off;                 /* ncounters x uint64_t */
	uint32_t nnic_max, nic_names_off;      /* nnic_max x char[XTS_NAME_LEN] */
	uint32_t nic_off;                      /* nnic_max x uint64_t */
	uint32_t handoff_off;                  /* XTS_MAX_HANDOFF x struct xts_handoff */
	uint32_t sock_off, sock_max, sock_entry_size; /* sock_max x struct xts_sock */

	/* written by readers (xtcp-stat), read by the library's progress thread */
	uint64_t req;              /* a reader adds 1 to ask for a snapshot now */
	uint32_t pcap_ctl;         /* XTS_PCAP_ON/OFF: switch capture; the library resets it to 0 */
	uint32_t pad1;

	/* dynamic part: written under the seqlock */
	uint64_t seq;              /* odd while a snapshot is being written */
	uint64_t req_done;         /* the value of req this snapshot answers */
	uint64_t publish_realtime_ns; /* time of the last snapshot (CLOCK_REALTIME) */
	uint64_t publish_engine_ns;/* engine clock of that snapshot */
	uint64_t publishes;        /* snapshots written so far */
	uint64_t mem_used;         /* socket buffer bytes in use (xt_stack_mem_used) */
	uint32_t nnic;             /* NIC counters filled (0: backend reports none) */
	uint32_t nhandoff;         /* hand-off reasons filled */
	uint32_t nsock;            /* entries filled */
	uint32_t nsock_total;      /* engine sockets (> nsock when truncated) */
	uint32_t flags;            /* XTS_F_* */
	uint32_t pcap_state;       /* XTS_PCAP_* */
	uint64_t pcap_frames, pcap_bytes, pcap_rotations;
	char nic_name[32];         /* backend whose counters nic_off holds */
};

struct xts_handoff {
	char reason[XTS_REASON_LEN];
	uint64_t count;
};

/* xts_sock.flags */
#define XTS_S_ORPHAN 1u  /* closed by the application; TCP runs it down */
#define XTS_S_PENDING 2u /* not accepted yet (SYN-RECV, or in an accept queue) */

struct xts_sock {
	int32_t fd;         /* the process's fd, -1 if none (orphan, not accepted, beyond the fd scan) */
	int32_t handle;     /* engine handle */
	uint8_t state;      /* enum xt_tcp_state (TIME_WAIT as such) */
	uint8_t ca_state;
	uint8_t retransmits;/* consecutive unrecovered RTOs */
	uint8_t options;    /* XT_TI_OPT_* */
	uint8_t snd_wscale, rcv_wscale;
	uint8_t flags;      /* XTS_S_* */
	uint8_t pad;
	uint32_t lip, rip;
	uint16_t lport, rport;
	/* ss semantics: LISTEN: accept queue length / backlog; otherwise unread
	 * bytes / bytes not yet acknowledged by the peer */
	uint32_t recv_q, send_q;
	uint32_t rtt_us, rttvar_us, rto_us;
	uint32_t snd_cwnd, snd_ssthresh; /* segments */
	uint32_t snd_mss, rcv_mss;
	uint32_t unacked, lost, retrans, total_retrans;
	uint32_t segs_out, segs_in;
	uint32_t snd_wnd, rcv_wnd, notsent_bytes;
	uint32_t pad2;
	uint64_t bytes_acked, bytes_received;
};

#endif
