/*
 * Shared by the libFuzzer harnesses of the offload core (native/fuzz/): an input
 * reader, a reference Internet checksum (RFC 1071, byte by byte: nothing shared with
 * the code under test) and a "fixer" that makes fuzzed bytes a consistent
 * Ethernet/IPv4/TCP frame (lengths, protocol, checksums), so that the fuzzer reaches
 * the segmentation and coalescing loops instead of stopping at the first check.
 *
 * Each harness lays its buffers out in one exactly-sized malloc (a pool, as the
 * process has one) so that AddressSanitizer sees any byte read or written past it,
 * and checks what the call returns against what its contract promises: a broken
 * promise aborts, and libFuzzer reports it like a crash.
 */
#ifndef TAPNET_FUZZ_COMMON_H
#define TAPNET_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../offload_core.h"

#define VNET 12

typedef struct {
  const uint8_t *p;
  size_t n;
} reader_t;

static inline uint32_t take8(reader_t *r) {
  if (r->n == 0) return 0;
  r->n--;
  return *r->p++;
}
static inline uint32_t take16(reader_t *r) {
  uint32_t lo = take8(r);
  return lo | take8(r) << 8;
}
static inline uint32_t take32(reader_t *r) {
  uint32_t lo = take16(r);
  return lo | take16(r) << 16;
}

#define CHECK(cond, ...)                                        \
  do {                                                          \
    if (!(cond)) {                                              \
      fprintf(stderr, "contract broken: %s: ", #cond);          \
      fprintf(stderr, __VA_ARGS__);                             \
      fprintf(stderr, "\n");                                    \
      abort();                                                  \
    }                                                           \
  } while (0)

static inline uint32_t g16(const uint8_t *p) { return (uint32_t)(p[0] << 8 | p[1]); }
static inline void p16(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static inline uint32_t g32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void p32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}
static inline uint32_t g16le(const uint8_t *p) { return (uint32_t)(p[0] | p[1] << 8); }
static inline void p16le(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}

/* Ones' complement sum of n bytes plus `init`, folded (not complemented). */
static inline uint32_t ref_sum(const uint8_t *p, size_t n, uint32_t init) {
  uint64_t s = init;
  for (size_t i = 0; i + 1 < n; i += 2) s += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (n & 1) s += (uint32_t)p[n - 1] << 8;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return (uint32_t)s;
}

static inline uint32_t ref_pseudo(const uint8_t *ip, uint32_t l4len) {
  uint32_t s = 6 + l4len;
  for (int i = 12; i < 20; i += 2) s += g16(ip + i);
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return s;
}

/* Offset of the IPv4 header after Ethernet and at most one tag, or 0 when too short. */
static inline size_t l2_len(const uint8_t *f, size_t len) {
  if (len < 14) return 0;
  uint32_t t = g16(f + 12);
  if (t == 0x8100 || t == 0x88a8) return len < 18 ? 0 : 18;
  return 14;
}

/*
 * Makes f[0..len) an Ethernet/IPv4/TCP frame whose lengths agree (EtherType 0x0800,
 * IHL >= 5 and within the frame, total length = the rest of the frame, protocol 6,
 * no fragment, TCP data offset within the segment) with a valid IPv4 header checksum
 * and, when tcp_csum, a valid TCP checksum. Returns the L2 length, or 0 when the frame
 * is too short to be one.
 */
static inline size_t fix_tcp_frame(uint8_t *f, size_t len, bool tcp_csum) {
  size_t l2 = l2_len(f, len);
  if (l2 == 0 || len < l2 + 40) return 0;
  p16(f + l2 - 2, 0x0800);
  uint8_t *ip = f + l2;
  size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
  if (ihl < 20 || l2 + ihl + 20 > len) ihl = 20;
  ip[0] = (uint8_t)(0x40 | ihl / 4);
  p16(ip + 2, (uint32_t)(len - l2));
  p16(ip + 6, g16(ip + 6) & 0x4000);
  ip[9] = 6;
  ip[10] = ip[11] = 0;
  p16(ip + 10, ~ref_sum(ip, ihl, 0) & 0xffff);
  uint8_t *th = ip + ihl;
  size_t tcplen = len - l2 - ihl;
  size_t thl = (size_t)(th[12] >> 4) * 4;
  if (thl < 20 || thl > tcplen) th[12] = 5 << 4;
  if (tcp_csum) {
    th[16] = th[17] = 0;
    p16(th + 16, ~ref_sum(th, tcplen, ref_pseudo(ip, (uint32_t)tcplen)) & 0xffff);
  }
  return l2;
}

/* True when the IPv4 header at ip (ihl bytes) has a valid checksum. */
static inline bool ipv4_csum_ok(const uint8_t *ip, size_t ihl) { return ref_sum(ip, ihl, 0) == 0xffff; }

#endif
