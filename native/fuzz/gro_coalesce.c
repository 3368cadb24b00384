/*
 * libFuzzer harness: offload_gro_coalesce (groCoalesce). Input: control byte, segment
 * size, skip, slot geometry, output index, raw argument words, then the datagrams back
 * to back. Most inputs are fixed up into TCP segments with valid checksums, many into a
 * run of one flow (headers copied from the first, sequence numbers following on) so
 * that merging happens; slots are small so "too long for a slot" happens too. Checks:
 * the return value within its bounds, every frame written where its slot is and no
 * longer than the slot's room, every merged super-frame with a valid IPv4 header, its
 * total length, the pseudo-header seed and a TCPV4 vnet header.
 */
#include "fuzz_common.h"

/* Makes the datagrams of src (each seg bytes, the last shorter) a run of one TCP flow. */
static void make_run(uint8_t *src, size_t src_len, size_t seg, size_t skip, uint32_t ctrl) {
  if (seg <= skip + 54) return;
  size_t n = (src_len + seg - 1) / seg;
  uint8_t *f0 = src + skip;
  size_t l0 = (src_len < seg ? src_len : seg) - skip;
  size_t l2 = fix_tcp_frame(f0, l0, true);
  if (l2 == 0) return;
  size_t ihl = (size_t)(f0[l2] & 0x0f) * 4;
  size_t thl = (size_t)(f0[l2 + ihl + 12] >> 4) * 4;
  size_t h = l2 + ihl + thl;
  if (h >= l0) return;
  f0[l2 + ihl + 13] = 0x10; /* ACK */
  uint32_t seq = g32(f0 + l2 + ihl + 4);
  uint32_t ident = g16(f0 + l2 + 4);
  fix_tcp_frame(f0, l0, true);
  for (size_t i = 1; i < n; i++) {
    size_t at = i * seg;
    size_t dl = src_len - at < seg ? src_len - at : seg;
    if (dl < skip + h) break;
    uint8_t *f = src + at + skip;
    size_t fl = dl - skip;
    memcpy(f, f0, h);
    seq += (uint32_t)(l0 - h) - ((ctrl & 0x20) && i == 3 ? 1 : 0);
    p32(f + l2 + ihl + 4, seq);
    if (!(ctrl & 0x08)) ident++;
    p16(f + l2 + 4, ident);
    if ((ctrl & 0x10) && i == n - 1) f[l2 + ihl + 13] = 0x18; /* ACK|PSH on the last */
    fix_tcp_frame(f, fl, true);
    if ((ctrl & 0x04) && i == 2) f[fl - 1] ^= 1; /* a corrupt one in the run */
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  reader_t r = {data, size};
  uint32_t ctrl = take8(&r);
  uint32_t seg = take16(&r);
  uint32_t skip = take8(&r) % 24;
  uint32_t slot_size = take16(&r) % 8192 + 1;
  uint32_t headroom = take8(&r);
  uint32_t max_slots = take8(&r) % 80;
  uint32_t noff = take8(&r) % 80, nlen = take8(&r) % 80;
  uint32_t out = take8(&r) % 80;
  uint32_t a1 = take32(&r);
  size_t src_len = r.n;
  if (!(ctrl & 0x80)) {
    /* Sane geometry (as the VXLAN port calls it), the fuzzer choosing sizes within it. */
    skip = (ctrl & 0x40) ? skip : 8;
    headroom = 12 + headroom % 64;
    slot_size = headroom + 14 + slot_size % 4096;
    if (max_slots == 0) max_slots = 1;
    noff = nlen = max_slots;
    out %= max_slots + 1;
    if (seg == 0 || seg > src_len) seg = (uint32_t)(src_len ? src_len : 1);
  }
  /* Sane geometry: the datagrams and the slots in two exactly-sized buffers (a byte read
   * or written past either is a report). Raw: one pool, as the port has, bounds fuzzed. */
  bool raw = (ctrl & 0x80) != 0;
  size_t slot_base = (raw ? src_len : 0) + (a1 & 63);
  size_t total = slot_base + (size_t)max_slots * slot_size + (raw ? (a1 >> 8) % 4096 : 0);
  if (total == 0) total = 1;
  uint8_t *pool = malloc(total);
  uint8_t *src = raw ? pool : malloc(src_len ? src_len : 1);
  uint32_t *offsets = malloc(noff * sizeof *offsets + 1), *lengths = malloc(nlen * sizeof *lengths + 1);
  memcpy(src, r.p, src_len);
  if ((ctrl & 1) && !raw) {
    if (ctrl & 2) {
      make_run(src, src_len, seg, skip, ctrl);
    } else {
      for (size_t at = 0; at < src_len; at += seg) {
        size_t dl = src_len - at < seg ? src_len - at : seg;
        if (dl > skip) fix_tcp_frame(src + at + skip, dl - skip, true);
      }
    }
  }
  int k = offload_gro_coalesce(src, raw ? total : src_len, 0, (uint32_t)src_len, seg, skip, pool, total,
                               (uint32_t)slot_base, slot_size, headroom, max_slots, offsets, noff, lengths,
                               nlen, out);
  CHECK(k >= -3, "k=%d", k);
  if (k >= 0) {
    CHECK((uint32_t)k >= out && (uint32_t)k <= max_slots && (uint32_t)k <= noff && (uint32_t)k <= nlen,
          "k=%d out=%u max=%u", k, out, max_slots);
    for (uint32_t j = out; j < (uint32_t)k; j++) {
      size_t at = slot_base + (size_t)j * slot_size + headroom;
      CHECK(offsets[j] == at, "frame %u at %u, slot says %zu", j, offsets[j], at);
      CHECK(lengths[j] >= 14 && lengths[j] <= slot_size - headroom, "frame %u of %u bytes, room %u", j,
            lengths[j], slot_size - headroom);
      const uint8_t *f = pool + at, *vh = f - VNET;
      if (vh[1] != 0) {
        CHECK(vh[1] == 1 && vh[0] == 1, "vnet %02x/%02x", vh[0], vh[1]);
        size_t l2 = l2_len(f, lengths[j]);
        const uint8_t *ip = f + l2;
        size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
        CHECK(g16(ip + 2) == lengths[j] - l2, "merged frame %u total length", j);
        CHECK(ipv4_csum_ok(ip, ihl), "merged frame %u IPv4 checksum", j);
        CHECK(g16le(vh + 6) == l2 + ihl && g16le(vh + 8) == 16, "merged frame %u csum_start", j);
        uint32_t tcplen = (uint32_t)(lengths[j] - l2 - ihl);
        CHECK(g16(ip + ihl + 16) == ref_pseudo(ip, tcplen), "merged frame %u seed", j);
        CHECK(g16le(vh + 4) > 0, "merged frame %u gso_size 0", j);
      }
    }
  }
  free(offsets);
  free(lengths);
  if (!raw) free(src);
  free(pool);
  return 0;
}
