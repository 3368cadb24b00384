/*
 * Software offloads: TSO segmentation, checksum completion and receive
 * coalescing (GRO) over frames in the packet pool. The pure C core, without
 * N-API (offload.c wraps it for JavaScript; native/fuzz builds it alone, under
 * libFuzzer and the sanitizers).
 *
 * Why in C: these touch every payload byte (a copy and a checksum), up to
 * 64 KiB per call, which is where JavaScript's per-byte cost shows; the
 * policy (when to segment, where frames go next) stays in TypeScript.
 *
 * Frames carry a 12-byte struct virtio_net_hdr_v1 right before them (at
 * off - 12) when a TAP has IFF_VNET_HDR; its fields are little-endian
 * (virtio 1.x), the packet's own fields are big-endian.
 *
 * Safety rules for every entry point:
 *   - every offset and length coming from JavaScript is checked against its
 *     Buffer before any byte is touched (ERR_RANGE);
 *   - every offset derived from packet bytes is checked against the frame
 *     length before it is used (ERR_MALFORMED): a peer controls those bytes;
 *   - nothing is allocated and nothing is thrown for bad packets; only an
 *     argument of the wrong type throws a TypeError (a caller bug).
 *   - source and destination regions must not overlap (memcpy), checked.
 */
#include <string.h>

#include "offload_core.h"

/* Return codes shared with src/io/offload.ts. */
#define VNET_HDR_LEN 12
#define VNET_F_NEEDS_CSUM 1
#define VNET_F_DATA_VALID 2
#define VNET_GSO_TCPV4 1
#define VNET_GSO_TCPV6 4
#define VNET_GSO_ECN 0x80

#define ETH_HLEN 14
#define VLAN_HLEN 18
#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_IPV6 0x86dd
#define ETHERTYPE_VLAN 0x8100
#define ETHERTYPE_QINQ 0x88a8

#define IPV4_HLEN 20
#define IPV6_HLEN 40
#define IP_PROTO_TCP 6
#define IPV4_DF 0x4000
#define IPV4_MF_OFFSET 0x3fff /* MF flag and fragment offset */

#define TCP_HLEN 20
#define TCP_CSUM_OFF 16
#define TCP_FIN 0x01
#define TCP_PSH 0x08
#define TCP_ACK 0x10
#define TCP_CWR 0x80

/* ------------------------------------------------------------------------ */
/* Byte access (packets are big-endian, the vnet header little-endian)      */

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t rd32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline void wr16(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static inline void wr32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}
static inline uint16_t rd16le(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline void wr16le(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}

/* True when [a, a+alen) and [b, b+blen) share a byte. */
static bool overlaps(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen) {
  return alen > 0 && blen > 0 && a < b + blen && b < a + alen;
}

/* ------------------------------------------------------------------------ */
/* Internet checksum (RFC 1071)                                             */

/* Folds with end-around carry. Never yields 0 for a non-zero input, so a
 * folded pseudo-header sum is always a usable CHECKSUM_PARTIAL seed. */
static inline uint16_t csum_fold(uint64_t s) {
  s = (s & 0xffffffffu) + (s >> 32);
  s = (s & 0xffffffffu) + (s >> 32);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return (uint16_t)s;
}

/*
 * Ones' complement sum of n bytes as big-endian 16-bit words, folded, not
 * complemented; an odd last byte is padded with a zero on its right (RFC 1071
 * section 4.1), so when chaining ranges all but the last must be even.
 *
 * It adds native 32-bit words into a 64-bit accumulator (deferred carries,
 * RFC 1071 section 2(C)) and swaps the folded result once: the sum is
 * independent of byte order up to a final swap (section 2(B)). memcpy keeps
 * the loads legal at any alignment; compilers turn it into plain loads.
 */
static uint16_t csum_bytes(const uint8_t *p, size_t n) {
  uint64_t acc = 0;
  while (n >= 16) {
    uint32_t w[4];
    memcpy(w, p, sizeof w);
    acc += (uint64_t)w[0] + w[1] + w[2] + w[3];
    p += 16;
    n -= 16;
  }
  while (n >= 4) {
    uint32_t w;
    memcpy(&w, p, sizeof w);
    acc += w;
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    uint16_t h;
    memcpy(&h, p, sizeof h);
    acc += h;
    p += 2;
    n -= 2;
  }
  if (n == 1) {
    uint8_t t[2] = {p[0], 0};
    uint16_t h;
    memcpy(&h, t, sizeof h);
    acc += h;
  }
  uint16_t s = csum_fold(acc);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  s = __builtin_bswap16(s);
#endif
  return s;
}

/* Pseudo-header sum for TCP/UDP over IPv4 (RFC 9293 section 3.1) or IPv6
 * (RFC 8200 section 8.1); `ip` points at the IP header. */
static uint32_t pseudo_sum(const uint8_t *ip, bool v6, uint32_t proto, uint32_t l4len) {
  uint32_t s = proto + (l4len >> 16) + (l4len & 0xffff);
  const uint8_t *a = ip + (v6 ? 8 : 12);
  size_t n = v6 ? 32 : 8;
  for (size_t i = 0; i < n; i += 2) s += rd16(a + i);
  return s;
}

/* Fills the IPv4 header checksum (RFC 791) over `ihl` bytes. */
static void ipv4_fill_csum(uint8_t *ip, size_t ihl) {
  ip[10] = ip[11] = 0;
  wr16(ip + 10, (uint16_t)~csum_bytes(ip, ihl));
}

/* ------------------------------------------------------------------------ */
/* Parsing                                                                  */

/* EtherType after Ethernet and at most one 802.1Q/802.1ad tag, with *l3 the
 * network header offset; -1 when the frame is too short for its L2 header. */
static int eth_l3(const uint8_t *f, size_t len, size_t *l3) {
  if (len < ETH_HLEN) return -1;
  uint16_t t = rd16(f + 12);
  if (t == ETHERTYPE_VLAN || t == ETHERTYPE_QINQ) {
    if (len < VLAN_HLEN) return -1;
    *l3 = VLAN_HLEN;
    return rd16(f + 16);
  }
  *l3 = ETH_HLEN;
  return t;
}

/* ------------------------------------------------------------------------ */
/* TSO segmentation                                                         */

/*
 * Splits the super-frame f[0..len) (vnet header at f - 12) as Linux's
 * tcp_gso_segment does (net/ipv4/tcp_offload.c): the same headers on every
 * segment, sequence numbers advanced by MSS, IPv4 ident incremented per
 * segment (the kernel's "fixed id" mode is not used by a TSO sender here),
 * CWR kept only on the first segment, FIN and PSH only on the last. Each
 * checksum is computed in full, because the segments leave in a tunnel and
 * nobody downstream will finish a partial one.
 */
/* What segmenting a TSO super-frame needs to know, from gso_parse. */
typedef struct {
  bool v6;
  size_t l3, l4, thl;
  size_t h;      /* all headers: l4 + thl */
  size_t mss;    /* payload bytes per segment but the last */
  size_t nseg;   /* segments */
  size_t last_p; /* payload bytes of the last segment */
} gso_plan_t;

/* Checks the super-frame f[0..len) (vnet header at f - 12) and plans its
 * segments: 0, or OFF_ERR_MALFORMED (also when it has more than nmax). */
static int gso_parse(const uint8_t *f, size_t len, size_t nmax, gso_plan_t *g) {
  const uint8_t *vh = f - VNET_HDR_LEN;
  uint8_t vflags = vh[0];
  int gso = vh[1] & ~VNET_GSO_ECN;
  uint32_t mss = rd16le(vh + 4);
  uint32_t csum_start = rd16le(vh + 6);
  uint32_t csum_offset = rd16le(vh + 8);
  if (gso != VNET_GSO_TCPV4 && gso != VNET_GSO_TCPV6) return OFF_ERR_MALFORMED;
  if (mss == 0) return OFF_ERR_MALFORMED;

  /* Headers are measured from the packet; hdr_len is only a hint (the
   * kernel's virtio_net_hdr_to_skb does not trust it either). */
  size_t l3 = 0;
  int et = eth_l3(f, len, &l3);
  bool v6 = gso == VNET_GSO_TCPV6;
  size_t l4;
  if (!v6) {
    if (et != ETHERTYPE_IPV4 || len < l3 + IPV4_HLEN) return OFF_ERR_MALFORMED;
    const uint8_t *ip = f + l3;
    size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
    if ((ip[0] >> 4) != 4 || ihl < IPV4_HLEN || l3 + ihl > len) return OFF_ERR_MALFORMED;
    if (ip[9] != IP_PROTO_TCP) return OFF_ERR_MALFORMED;
    /* A super-frame carries exactly its IP datagram (no Ethernet padding). */
    if (rd16(ip + 2) != len - l3) return OFF_ERR_MALFORMED;
    if (rd16(ip + 6) & IPV4_MF_OFFSET) return OFF_ERR_MALFORMED;
    l4 = l3 + ihl;
  } else {
    if (et != ETHERTYPE_IPV6 || len < l3 + IPV6_HLEN) return OFF_ERR_MALFORMED;
    const uint8_t *ip = f + l3;
    /* No extension headers: TCP must follow the fixed header directly. */
    if ((ip[0] >> 4) != 6 || ip[6] != IP_PROTO_TCP) return OFF_ERR_MALFORMED;
    if (rd16(ip + 4) != len - l3 - IPV6_HLEN) return OFF_ERR_MALFORMED;
    l4 = l3 + IPV6_HLEN;
  }
  if (len < l4 + TCP_HLEN) return OFF_ERR_MALFORMED;
  size_t thl = (size_t)(f[l4 + 12] >> 4) * 4;
  if (thl < TCP_HLEN || l4 + thl > len) return OFF_ERR_MALFORMED;
  if (csum_start != l4) return OFF_ERR_MALFORMED;
  if ((vflags & VNET_F_NEEDS_CSUM) && csum_offset != TCP_CSUM_OFF) return OFF_ERR_MALFORMED;

  size_t h = l4 + thl;
  size_t payload = len - h;
  /* P <= MSS is not an error: the kernel would send such a frame as is;
   * one segment with a full checksum is the same thing on the wire. */
  size_t nseg = payload == 0 ? 1 : (payload + mss - 1) / mss;
  if (nseg > nmax) return OFF_ERR_MALFORMED;
  g->v6 = v6;
  g->l3 = l3;
  g->l4 = l4;
  g->thl = thl;
  g->h = h;
  g->mss = mss;
  g->nseg = nseg;
  g->last_p = payload - (nseg - 1) * mss;
  return 0;
}

/* Writes segment k's headers at d (a copy of f's h header bytes, then the
 * per-segment fields) and its full TCP checksum over those headers and the
 * payload p[0..seg_p), which need not follow the headers in memory. */
static void gso_seg_headers(const uint8_t *f, const gso_plan_t *g, size_t k, uint8_t *d, const uint8_t *p,
                            size_t seg_p) {
  memcpy(d, f, g->h);
  uint8_t *ip = d + g->l3;
  if (!g->v6) {
    wr16(ip + 2, (uint32_t)(g->h - g->l3 + seg_p));
    wr16(ip + 4, (uint32_t)(rd16(f + g->l3 + 4) + k));
    ipv4_fill_csum(ip, g->l4 - g->l3);
  } else {
    wr16(ip + 4, (uint32_t)(g->h - g->l4 + seg_p));
  }
  uint8_t *th = d + g->l4;
  wr32(th + 4, rd32(f + g->l4 + 4) + (uint32_t)(k * g->mss));
  uint8_t fl = f[g->l4 + 13];
  if (k > 0) fl &= (uint8_t)~TCP_CWR;
  if (k + 1 < g->nseg) fl &= (uint8_t)~(TCP_FIN | TCP_PSH);
  th[13] = fl;
  th[16] = th[17] = 0;
  uint32_t tcplen = (uint32_t)(g->thl + seg_p);
  /* The TCP header is a multiple of 4 bytes long, so its sum chains with the
   * payload's (RFC 1071 section 2(B): sums of even-length ranges add). */
  uint32_t s = pseudo_sum(ip, g->v6, IP_PROTO_TCP, tcplen) + csum_bytes(th, g->thl) + csum_bytes(p, seg_p);
  wr16(th + TCP_CSUM_OFF, (uint16_t)~csum_fold(s));
}

/*
 * Splits the super-frame f[0..len) (vnet header at f - 12) as Linux's
 * tcp_gso_segment does (net/ipv4/tcp_offload.c): the same headers on every
 * segment, sequence numbers advanced by MSS, IPv4 ident incremented per
 * segment (the kernel's "fixed id" mode is not used by a TSO sender here),
 * CWR kept only on the first segment, FIN and PSH only on the last. Each
 * checksum is computed in full, because the segments leave in a tunnel and
 * nobody downstream will finish a partial one.
 */
static int gso_segment_impl(const uint8_t *f, size_t len, uint8_t *dst, uint64_t dst_off,
                            uint64_t dst_end, uint64_t prefix, uint32_t *lengths, size_t nlengths) {
  gso_plan_t g;
  int e = gso_parse(f, len, nlengths, &g);
  if (e < 0) return e;
  uint64_t stride = prefix + g.h + g.mss;
  uint64_t need = dst_off + (uint64_t)(g.nseg - 1) * stride + prefix + g.h + g.last_p;
  if (need > dst_end) return OFF_ERR_NO_ROOM;
  for (size_t k = 0; k < g.nseg; k++) {
    uint8_t *d = dst + dst_off + k * stride + prefix;
    size_t seg_p = k + 1 < g.nseg ? g.mss : g.last_p;
    memcpy(d + g.h, f + g.h + k * g.mss, seg_p);
    gso_seg_headers(f, &g, k, d, d + g.h, seg_p);
    lengths[k] = (uint32_t)(g.h + seg_p);
  }
  return (int)g.nseg;
}

/*
 * gso_segment_impl without the payload copy: only segment k's headers are
 * written, at buf[hdr_off + k*(prefix + h) + prefix], and the segment is
 * described by two gather entries from iov index `first` on: (its prefix and
 * headers) and (its payload, where it lies in the super-frame). The bytes the
 * entries gather are exactly gso_segment_impl's segment k behind its prefix.
 */
static int gso_headers_impl(const uint8_t *f, size_t len, uint8_t *buf, uint64_t f_off, uint64_t hdr_off,
                            uint64_t hdr_end, uint64_t prefix, uint32_t *iov_off, uint32_t *iov_len, size_t niov,
                            size_t first) {
  gso_plan_t g;
  int e = gso_parse(f, len, SIZE_MAX / 2, &g);
  if (e < 0) return e;
  uint64_t stride = prefix + g.h;
  if (hdr_off + (uint64_t)g.nseg * stride > hdr_end || first + 2 * g.nseg > niov) return OFF_ERR_NO_ROOM;
  if (hdr_end > UINT32_MAX || f_off + len > UINT32_MAX) return OFF_ERR_RANGE;
  for (size_t k = 0; k < g.nseg; k++) {
    uint64_t at = hdr_off + k * stride;
    size_t seg_p = k + 1 < g.nseg ? g.mss : g.last_p;
    size_t p_off = g.h + k * g.mss;
    gso_seg_headers(f, &g, k, buf + at + prefix, f + p_off, seg_p);
    iov_off[first + 2 * k] = (uint32_t)at;
    iov_len[first + 2 * k] = (uint32_t)stride;
    iov_off[first + 2 * k + 1] = (uint32_t)(f_off + p_off);
    iov_len[first + 2 * k + 1] = (uint32_t)seg_p;
  }
  return (int)g.nseg;
}

/* ------------------------------------------------------------------------ */
/* Checksum completion                                                      */

/*
 * Finishes a CHECKSUM_PARTIAL frame as skb_checksum_help does: the field
 * holds the pseudo-header seed, so summing [csum_start, end) with the field
 * included gives the full sum. A result of 0 is stored as 0xffff
 * (CSUM_MANGLED_0): required for UDP (0 means "no checksum", RFC 768) and
 * equivalent for TCP, so the protocol need not be known.
 */
static int csum_complete_impl(uint8_t *f, size_t len) {
  uint8_t *vh = f - VNET_HDR_LEN;
  if (!(vh[0] & VNET_F_NEEDS_CSUM)) return 0;
  size_t start = rd16le(vh + 6);
  size_t field = start + rd16le(vh + 8);
  if (field + 2 > len) return OFF_ERR_MALFORMED;
  uint16_t c = (uint16_t)~csum_bytes(f + start, len - start);
  wr16(f + field, c == 0 ? 0xffff : c);
  vh[0] &= (uint8_t)~VNET_F_NEEDS_CSUM;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Receive coalescing                                                       */

/* What GRO needs to know about an Ethernet/IPv4/TCP segment. */
typedef struct {
  size_t l2;      /* Ethernet header, with the tag if any */
  size_t ihl;     /* IPv4 header */
  size_t thl;     /* TCP header */
  size_t plen;    /* TCP payload */
  uint32_t seq;
  uint16_t ident;
  uint8_t flags;
} gro_seg_t;

/*
 * True when f[0..len) is an IPv4 TCP segment GRO may merge, judged from its
 * headers: payload, flags exactly ACK or ACK|PSH (anything else, like SYN,
 * FIN, RST, URG or the ECN bits, must reach the stack as sent), not a
 * fragment, no Ethernet padding (it would be taken for payload), a valid IPv4
 * header checksum (20-60 bytes: cheap). The TCP checksum, a pass over the
 * payload, is gro_tcp_csum_ok's job, so that a caller can first find out
 * whether there is a run at all.
 */
static bool gro_parse(const uint8_t *f, size_t len, gro_seg_t *s) {
  size_t l2 = 0;
  if (eth_l3(f, len, &l2) != ETHERTYPE_IPV4 || len < l2 + IPV4_HLEN) return false;
  const uint8_t *ip = f + l2;
  size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
  if ((ip[0] >> 4) != 4 || ihl < IPV4_HLEN || l2 + ihl > len) return false;
  size_t tot = rd16(ip + 2);
  if (tot != len - l2 || tot < ihl + TCP_HLEN) return false;
  if (ip[9] != IP_PROTO_TCP || (rd16(ip + 6) & IPV4_MF_OFFSET)) return false;
  if (csum_bytes(ip, ihl) != 0xffff) return false;
  const uint8_t *th = ip + ihl;
  size_t tcplen = tot - ihl;
  size_t thl = (size_t)(th[12] >> 4) * 4;
  if (thl < TCP_HLEN || thl >= tcplen) return false; /* >=: no payload, nothing to merge */
  uint8_t flags = th[13];
  if (flags != TCP_ACK && flags != (TCP_ACK | TCP_PSH)) return false;
  s->l2 = l2;
  s->ihl = ihl;
  s->thl = thl;
  s->plen = tcplen - thl;
  s->seq = rd32(th + 4);
  s->ident = rd16(ip + 4);
  s->flags = flags;
  return true;
}

/*
 * True when the TCP checksum of a segment gro_parse accepted verifies. Every
 * segment that is not vouched for must pass it: once merged, the frame leaves
 * with NEEDS_CSUM and the receiver will not look again, so a corrupt segment
 * would be laundered into a valid one.
 */
static bool gro_tcp_csum_ok(const uint8_t *f, const gro_seg_t *s) {
  const uint8_t *ip = f + s->l2;
  uint32_t tcplen = (uint32_t)(s->thl + s->plen);
  uint32_t sum = pseudo_sum(ip, false, IP_PROTO_TCP, tcplen) + csum_bytes(ip + s->ihl, tcplen);
  return csum_fold(sum) == 0xffff;
}

/* gro_parse and a verified TCP checksum: what a segment from a tunnel needs. */
static bool gro_parse_verified(const uint8_t *f, size_t len, gro_seg_t *s) {
  return gro_parse(f, len, s) && gro_tcp_csum_ok(f, s);
}

/*
 * True when segment g (parsed as gs) continues the run that started with
 * frame f (fs) and last took prev: the flow and every header field that a
 * super-frame can carry only once must be the same (inet_gro_receive and
 * tcp_gro_receive compare the same things), and the bytes must follow on.
 */
static bool gro_continues(const uint8_t *f, const gro_seg_t *fs, const gro_seg_t *prev,
                          const uint8_t *g, const gro_seg_t *gs, size_t mss) {
  if (gs->l2 != fs->l2 || gs->ihl != fs->ihl || gs->thl != fs->thl) return false;
  if (memcmp(f, g, fs->l2) != 0) return false; /* MACs, tag, EtherType */
  const uint8_t *a = f + fs->l2, *b = g + gs->l2;
  if (a[1] != b[1] || a[8] != b[8]) return false;          /* TOS, TTL (protocol is TCP) */
  if ((rd16(a + 6) ^ rd16(b + 6)) & IPV4_DF) return false; /* DF */
  if (memcmp(a + 12, b + 12, 8) != 0) return false;        /* addresses */
  if (memcmp(a + IPV4_HLEN, b + IPV4_HLEN, fs->ihl - IPV4_HLEN) != 0) return false; /* options */
  /* Linux accepts an ident that increments per segment or stays fixed. */
  if (gs->ident != prev->ident && gs->ident != (uint16_t)(prev->ident + 1)) return false;
  const uint8_t *ta = a + fs->ihl, *tb = b + gs->ihl;
  if (memcmp(ta, tb, 4) != 0) return false;      /* ports */
  if (memcmp(ta + 8, tb + 8, 5) != 0) return false; /* ack, data offset */
  if (memcmp(ta + 14, tb + 14, 2) != 0) return false; /* window */
  if (memcmp(ta + TCP_HLEN, tb + TCP_HLEN, fs->thl - TCP_HLEN) != 0) return false; /* options */
  if (gs->seq != prev->seq + (uint32_t)prev->plen) return false;
  return gs->plen <= mss;
}

static void vnet_clear(uint8_t *vh) { memset(vh, 0, VNET_HDR_LEN); }

/*
 * Turns frame[0..flen) -- the first segment's headers followed by the payloads
 * of a run of segs >= 2 -- into a super-frame as tcp4_gro_complete leaves it:
 * IP total length and header checksum updated, PSH if any segment had it,
 * CHECKSUM_PARTIAL with the pseudo-header seed in the TCP checksum field (the
 * kernel, or a segmenter, finishes it), and the vnet header at frame - 12
 * NEEDS_CSUM / TCPV4 / hdrLen / gsoSize = mss / csumStart = TCP offset / 16.
 */
static void gro_finish(uint8_t *frame, size_t flen, const gro_seg_t *first, uint8_t psh, size_t mss) {
  uint8_t *vh = frame - VNET_HDR_LEN;
  uint8_t *ip = frame + first->l2;
  uint8_t *th = ip + first->ihl;
  uint32_t tot = (uint32_t)(flen - first->l2);
  wr16(ip + 2, tot);
  ipv4_fill_csum(ip, first->ihl);
  th[13] = (uint8_t)(first->flags | psh);
  wr16(th + TCP_CSUM_OFF, csum_fold(pseudo_sum(ip, false, IP_PROTO_TCP, tot - (uint32_t)first->ihl)));
  vh[0] = VNET_F_NEEDS_CSUM;
  vh[1] = VNET_GSO_TCPV4;
  wr16le(vh + 2, (uint32_t)(first->l2 + first->ihl + first->thl));
  wr16le(vh + 4, (uint32_t)mss);
  wr16le(vh + 6, (uint32_t)(first->l2 + first->ihl));
  wr16le(vh + 8, TCP_CSUM_OFF);
  wr16le(vh + 10, 0);
}

/*
 * Coalesces n datagrams (each `skip` bytes then an Ethernet frame) into
 * slots, see groCoalesce in src/io/offload.ts. Slot range and overlap were
 * checked by the caller; outIndex + n <= slot limit as well.
 */
static int gro_impl(const uint8_t *src, size_t src_len, size_t seg_size, size_t skip, uint8_t *dst,
                    size_t slot_base, size_t slot_size, size_t headroom, uint32_t *offsets,
                    uint32_t *lengths, uint32_t out) {
  size_t n = src_len == 0 ? 0 : (src_len + seg_size - 1) / seg_size;
  size_t room = slot_size - headroom;
  size_t i = 0;
  while (i < n) {
    size_t at = i * seg_size;
    size_t dlen = src_len - at < seg_size ? src_len - at : seg_size;
    i++;
    /* Too short for Ethernet, or too long for a slot: not output (the caller
     * sees it from the count). */
    if (dlen < skip + ETH_HLEN || dlen - skip > room) continue;
    const uint8_t *f = src + at + skip;
    size_t flen = dlen - skip;
    uint8_t *frame = dst + slot_base + (size_t)out * slot_size + headroom;
    uint8_t *vh = frame - VNET_HDR_LEN;
    memcpy(frame, f, flen);
    offsets[out] = (uint32_t)(frame - dst);

    gro_seg_t first, prev;
    if (!gro_parse_verified(f, flen, &first) || (first.flags & TCP_PSH)) {
      /* Not mergeable, or PSH on the first: it would end a run of one. */
      vnet_clear(vh);
      lengths[out++] = (uint32_t)flen;
      continue;
    }
    prev = first;
    size_t mss = first.plen;
    size_t hlen = first.l2 + first.ihl + first.thl;
    size_t flen_out = flen; /* no padding: flen == hlen + first.plen */
    size_t segs = 1;
    uint8_t psh = 0;
    while (i < n) {
      size_t at2 = i * seg_size;
      size_t dlen2 = src_len - at2 < seg_size ? src_len - at2 : seg_size;
      if (dlen2 < skip + ETH_HLEN) break;
      const uint8_t *g = src + at2 + skip;
      gro_seg_t gs;
      /* Headers first: the checksum pass only for a segment that would join. */
      if (!gro_parse(g, dlen2 - skip, &gs) || !gro_continues(f, &first, &prev, g, &gs, mss) ||
          !gro_tcp_csum_ok(g, &gs))
        break;
      if (flen_out + gs.plen > room || flen_out + gs.plen - first.l2 > 65535) break;
      memcpy(frame + flen_out, g + hlen, gs.plen);
      flen_out += gs.plen;
      segs++;
      i++;
      psh |= gs.flags & TCP_PSH;
      prev = gs;
      if (psh || gs.plen < mss) break; /* PSH or a short segment ends a run */
    }
    if (segs == 1) {
      vnet_clear(vh);
      lengths[out++] = (uint32_t)flen;
      continue;
    }
    gro_finish(frame, flen_out, &first, psh, mss);
    lengths[out++] = (uint32_t)flen_out;
  }
  return (int)out;
}


/*
 * A frame list as the TxQueue holds it: frame i at pool[offs[i]], lens[i]
 * bytes, its vnet header at offs[i] - 12; frames anywhere in the pool. The
 * output region dst[lo, hi) is recorded so no frame read overlaps it.
 */
typedef struct {
  const uint8_t *pool;
  size_t pool_len;
  const uint32_t *offs;
  const uint32_t *lens;
  const uint8_t *out;
  size_t out_len;
} frame_list_t;

/* Frame i, checked against the pool and the output region (ERR_RANGE). */
static int frame_at(const frame_list_t *l, size_t i, const uint8_t **f, size_t *len) {
  uint32_t off = l->offs[i], n = l->lens[i];
  if (off < VNET_HDR_LEN || (uint64_t)off + n > l->pool_len) return OFF_ERR_RANGE;
  if (overlaps(l->pool + off - VNET_HDR_LEN, (size_t)n + VNET_HDR_LEN, l->out, l->out_len))
    return OFF_ERR_RANGE;
  *f = l->pool + off;
  *len = n;
  return 0;
}

/*
 * What the vnet header in front of a parsed segment allows: false when the
 * frame is already a super-frame (any gso_type) or its partial checksum is
 * not the TCP one; *trusted when its TCP checksum needs no verification:
 * NEEDS_CSUM (a local stack left the checksum to the device; the bytes came
 * straight from it through a TAP) or DATA_VALID (the sender's side verified
 * it: CHECKSUM_UNNECESSARY, which Linux's GRO trusts as well).
 */
static bool gro_vnet_ok(const uint8_t *f, const gro_seg_t *s, bool *trusted) {
  const uint8_t *vh = f - VNET_HDR_LEN;
  if (vh[1] != 0) return false;
  if (vh[0] & VNET_F_NEEDS_CSUM) {
    if (rd16le(vh + 6) != s->l2 + s->ihl || rd16le(vh + 8) != TCP_CSUM_OFF) return false;
    *trusted = true;
    return true;
  }
  *trusted = (vh[0] & VNET_F_DATA_VALID) != 0;
  return true;
}

/*
 * The run of mergeable segments starting at frame `start` of the list (see
 * groFrames in src/io/offload.ts): returns how many frames it merged into
 * dst (the vnet header at out, the frame at out + 12, its length in
 * *out_len), 1 when frame `start` does not begin a run of two or more
 * (nothing written), or an error. `room` is the frame bytes out can take.
 */
static int gro_frames_impl(const frame_list_t *l, size_t start, size_t count, uint8_t *out,
                           size_t room, uint32_t *out_len) {
  const uint8_t *f;
  size_t flen;
  int rc = frame_at(l, start, &f, &flen);
  if (rc < 0) return rc;
  if (start + 1 >= count) return 1;
  gro_seg_t first, prev;
  bool trust_first;
  /* PSH on the first would end a run of one. */
  if (!gro_parse(f, flen, &first) || (first.flags & TCP_PSH) || !gro_vnet_ok(f, &first, &trust_first))
    return 1;
  prev = first;
  size_t mss = first.plen;
  size_t hlen = first.l2 + first.ihl + first.thl;
  size_t flen_out = flen;
  size_t segs = 1;
  uint8_t psh = 0;
  uint8_t *frame = out + VNET_HDR_LEN;
  for (size_t i = start + 1; i < count; i++) {
    const uint8_t *g;
    size_t glen;
    rc = frame_at(l, i, &g, &glen);
    if (rc < 0) {
      if (segs > 1) break; /* what was merged is good; the caller meets this frame next */
      return rc;
    }
    gro_seg_t gs;
    bool trust_g;
    if (!gro_parse(g, glen, &gs) || !gro_continues(f, &first, &prev, g, &gs, mss) ||
        !gro_vnet_ok(g, &gs, &trust_g))
      break;
    if (flen_out + gs.plen - first.l2 > 65535) break;
    if (flen_out + gs.plen > room) {
      if (segs == 1) return OFF_ERR_NO_ROOM;
      break;
    }
    /* Checksum passes only now that the frames would be merged. */
    if (segs == 1 && !trust_first && !gro_tcp_csum_ok(f, &first)) return 1;
    if (!trust_g && !gro_tcp_csum_ok(g, &gs)) break;
    if (segs == 1) memcpy(frame, f, flen);
    memcpy(frame + flen_out, g + hlen, gs.plen);
    flen_out += gs.plen;
    segs++;
    psh |= gs.flags & TCP_PSH;
    prev = gs;
    if (psh || gs.plen < mss) break; /* PSH or a short segment ends a run */
  }
  if (segs == 1) return 1;
  gro_finish(frame, flen_out, &first, psh, mss);
  *out_len = (uint32_t)flen_out;
  return (int)segs;
}


/* ------------------------------------------------------------------------ */
/* Entry points: the argument checks, then the work                         */

int offload_gso_segment(const uint8_t *src, size_t src_len, uint32_t off, uint32_t len, uint8_t *dst,
                        size_t dst_len, uint32_t dst_off, uint32_t dst_end, uint32_t prefix,
                        uint32_t *lengths, size_t nlengths) {
  if (off < VNET_HDR_LEN || (uint64_t)off + len > src_len || dst_off > dst_end || dst_end > dst_len)
    return OFF_ERR_RANGE;
  const uint8_t *f = src + off;
  if (overlaps(f - VNET_HDR_LEN, (size_t)len + VNET_HDR_LEN, dst + dst_off, dst_end - dst_off))
    return OFF_ERR_RANGE;
  return gso_segment_impl(f, len, dst, dst_off, dst_end, prefix, lengths, nlengths);
}

int offload_gso_headers(uint8_t *buf, size_t buf_len, uint32_t off, uint32_t len, uint32_t hdr_off,
                        uint32_t hdr_end, uint32_t prefix, uint32_t *iov_off, size_t noff, uint32_t *iov_len,
                        size_t nlen, uint32_t first) {
  if (off < VNET_HDR_LEN || (uint64_t)off + len > buf_len || hdr_off > hdr_end || hdr_end > buf_len)
    return OFF_ERR_RANGE;
  const uint8_t *f = buf + off;
  if (overlaps(f - VNET_HDR_LEN, (size_t)len + VNET_HDR_LEN, buf + hdr_off, hdr_end - hdr_off)) return OFF_ERR_RANGE;
  size_t niov = noff < nlen ? noff : nlen;
  if (first > niov) return OFF_ERR_RANGE;
  return gso_headers_impl(f, len, buf, off, hdr_off, hdr_end, prefix, iov_off, iov_len, niov, first);
}

int offload_csum_complete(uint8_t *buf, size_t buf_len, uint32_t off, uint32_t len) {
  if (off < VNET_HDR_LEN || (uint64_t)off + len > buf_len) return OFF_ERR_RANGE;
  return csum_complete_impl(buf + off, len);
}

int offload_gro_coalesce(const uint8_t *src, size_t src_buf_len, uint32_t src_off, uint32_t src_len,
                         uint32_t seg_size, uint32_t skip, uint8_t *dst, size_t dst_len,
                         uint32_t slot_base, uint32_t slot_size, uint32_t headroom, uint32_t max_slots,
                         uint32_t *offsets, size_t noff, uint32_t *lengths, size_t nlen, uint32_t out) {
  if ((uint64_t)src_off + src_len > src_buf_len || seg_size == 0 || headroom < VNET_HDR_LEN ||
      headroom >= slot_size || (uint64_t)slot_base + (uint64_t)max_slots * slot_size > dst_len ||
      out > max_slots)
    return OFF_ERR_RANGE;
  uint64_t n = src_len == 0 ? 0 : ((uint64_t)src_len + seg_size - 1) / seg_size;
  uint64_t limit = max_slots;
  if (noff < limit) limit = noff;
  if (nlen < limit) limit = nlen;
  if (out + n > limit) return OFF_ERR_NO_ROOM;
  /* Absolute offsets are reported in a Uint32Array. */
  if ((uint64_t)slot_base + (out + n) * slot_size > 0xffffffffu) return OFF_ERR_RANGE;
  uint8_t *slots = dst + slot_base + (size_t)out * slot_size;
  if (overlaps(src + src_off, src_len, slots, (size_t)n * slot_size)) return OFF_ERR_RANGE;
  return gro_impl(src + src_off, src_len, seg_size, skip, dst, slot_base, slot_size, headroom, offsets,
                  lengths, out);
}

int offload_gro_frames(const uint8_t *pool, size_t pool_len, const uint32_t *offsets, size_t noff,
                       const uint32_t *lengths, size_t nlen, uint32_t start, uint32_t count, uint8_t *dst,
                       size_t dst_len, uint32_t dst_off, uint32_t dst_end, uint32_t *result, size_t nres) {
  if (start >= count || count > noff || count > nlen || nres < 1 ||
      (uint64_t)dst_off + VNET_HDR_LEN > dst_end || dst_end > dst_len)
    return OFF_ERR_RANGE;
  frame_list_t l = {pool, pool_len, offsets, lengths, dst + dst_off, dst_end - dst_off};
  return gro_frames_impl(&l, start, count, dst + dst_off, dst_end - dst_off - VNET_HDR_LEN, result);
}
