/*
 * io_uring I/O for one TAP fd (uring.c): many frames per system call each way.
 * Plain C, no N-API: tap.c uses it for TAP ports opened with io "uring", and
 * scripts/relay.c (-u) for the C reference relay, so both measure the same code.
 */
#ifndef TAPNET_URING_H
#define TAPNET_URING_H

#include <stdint.h>

typedef struct uring_io uring_io_t;

/* What uring_io_rx and uring_io_tx count (added to, never reset). */
typedef struct {
  uint64_t rx_errors;  /* read completions with an error other than ENOBUFS */
  uint64_t rx_dropped; /* frames that did not fit a buffer (or were empty) */
  uint64_t tx_errors;  /* writes the device refused */
  int last_tx_errno;
} uring_io_stats_t;

/*
 * Sets up the rings for `fd` (a non-blocking TAP): receive slots are `slots`
 * buffers of `slot_size` bytes at `region`, the frame written `headroom` bytes
 * into each; `tx_max` is the largest batch uring_io_tx will be given. Returns 0
 * and *out, or an errno with *step naming the call that failed. The environment
 * variable TAPNET_URING_FAIL=1 makes it fail with ENOSYS (tests of the fallback).
 */
int uring_io_open(uring_io_t **out, int fd, uint8_t *region, uint32_t slots, uint32_t slot_size, uint32_t headroom,
                  uint32_t tx_max, const char **step);

/* The two rings' fds (receive, transmit): a seccomp check tells them from foreign rings. */
void uring_io_ring_fds(const uring_io_t *u, int out[2]);

/* The eventfd to poll for readability: it fires when frames may be waiting. */
int uring_io_eventfd(const uring_io_t *u);

/*
 * Harvests received frames: up to `max` of them, slot index in slot[i] and
 * length in len[i]. The slots stay the caller's until uring_io_rx_done. One
 * system call per call: the eventfd read.
 */
uint32_t uring_io_rx(uring_io_t *u, uint32_t *slot, uint32_t *len, uint32_t max, uring_io_stats_t *st);

/* Hands the slots of the last uring_io_rx back to the kernel and re-arms the read if it ended. */
void uring_io_rx_done(uring_io_t *u);

/*
 * Writes frames base[off[i] .. off[i]+len[i]) for i < count: one submission and
 * wait for the batch. A refused frame gets len[i] = 0 and is counted. Returns
 * how many the device accepted.
 */
uint32_t uring_io_tx(uring_io_t *u, const uint8_t *base, const uint32_t *off, uint32_t *len, uint32_t count,
                     uring_io_stats_t *st);

/* Cancels what is in flight and frees the rings (not the TAP fd). */
void uring_io_close(uring_io_t *u);

#endif
