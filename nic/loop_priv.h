/* Extra introspection for the in-memory wire (loop.c), for tests and tools.
 *
 * Kept apart from nic.h because only callers that know they hold a loop nic
 * need it; the vtable contract stays the same for every backend.
 */
#ifndef XT_LOOP_PRIV_H
#define XT_LOOP_PRIV_H

#include <stdint.h>
#include "nic.h"

/* Counters of one direction: frames sent by one end toward the other. */
struct xt_loop_stats {
	uint64_t tx_frames, tx_bytes;   /* accepted onto the wire */
	uint64_t rx_frames, rx_bytes;   /* handed to the receiver by rx_burst */
	uint64_t drop_queue;            /* tail drop: the queue was full */
	uint64_t drop_oversize;         /* longer than mtu + 14 */
	uint64_t drop_peer_closed;      /* the other end was already closed */
	uint32_t queue_max;             /* highest queue occupancy seen */
};

/* Counters of the frames that nic (one end of an xt_loop_pair) sent.
 * Returns NULL when nic is not a loop nic. */
const struct xt_loop_stats *xt_loop_stats(struct xt_nic *nic);

#endif
