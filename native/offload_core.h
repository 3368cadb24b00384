/*
 * The pure C core of the software offloads (offload_core.c): no N-API, so that
 * it builds on its own (native/fuzz: libFuzzer with AddressSanitizer and
 * UndefinedBehaviorSanitizer). offload.c turns JavaScript arguments into these
 * calls; src/io/offload.ts documents what each does.
 *
 * Every entry point checks its offset and length arguments against the buffer
 * lengths it is given before touching memory (OFF_ERR_RANGE), and every offset
 * read from packet bytes against the frame (OFF_ERR_MALFORMED).
 */
#ifndef TAPNET_OFFLOAD_CORE_H
#define TAPNET_OFFLOAD_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Return codes shared with src/io/offload.ts. */
#define OFF_ERR_MALFORMED (-1) /* the packet is not what the call needs */
#define OFF_ERR_NO_ROOM (-2)   /* the output would not fit; nothing useful written */
#define OFF_ERR_RANGE (-3)     /* an offset/length argument lies outside its buffer */

/* gsoSegment: segments the TSO super-frame src[off, off+len) into dst[dst_off, dst_end). */
int offload_gso_segment(const uint8_t *src, size_t src_len, uint32_t off, uint32_t len, uint8_t *dst,
                        size_t dst_len, uint32_t dst_off, uint32_t dst_end, uint32_t prefix,
                        uint32_t *lengths, size_t nlengths);

/* gsoHeaders: gsoSegment's segments as gather entries: headers written to
 * buf[hdr_off, hdr_end), payloads left in the super-frame buf[off, off+len). */
int offload_gso_headers(uint8_t *buf, size_t buf_len, uint32_t off, uint32_t len, uint32_t hdr_off,
                        uint32_t hdr_end, uint32_t prefix, uint32_t *iov_off, size_t noff, uint32_t *iov_len,
                        size_t nlen, uint32_t first);

/* csumComplete: finishes the partial checksum of buf[off, off+len). */
int offload_csum_complete(uint8_t *buf, size_t buf_len, uint32_t off, uint32_t len);

/* groCoalesce: datagrams src[src_off, src_off+src_len) into slots of dst. */
int offload_gro_coalesce(const uint8_t *src, size_t src_buf_len, uint32_t src_off, uint32_t src_len,
                         uint32_t seg_size, uint32_t skip, uint8_t *dst, size_t dst_len,
                         uint32_t slot_base, uint32_t slot_size, uint32_t headroom, uint32_t max_slots,
                         uint32_t *offsets, size_t noff, uint32_t *lengths, size_t nlen, uint32_t out);

/* groFrames: a run of the frame list from `start` merged into dst[dst_off, dst_end). */
int offload_gro_frames(const uint8_t *pool, size_t pool_len, const uint32_t *offsets, size_t noff,
                       const uint32_t *lengths, size_t nlen, uint32_t start, uint32_t count, uint8_t *dst,
                       size_t dst_len, uint32_t dst_off, uint32_t dst_end, uint32_t *result, size_t nres);

#endif
