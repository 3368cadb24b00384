/*
 * libFuzzer harness: offload_gso_segment (gsoSegment). Input: control byte, MSS,
 * prefix, lengths-array size, destination size, then the vnet header and the frame.
 * Most inputs are fixed up into a consistent TSO frame (fix_tcp_frame) so the cutting
 * loop runs; some keep their bytes as they are, some get raw argument values (the
 * range checks). Every segment written is checked: inside the destination, IPv4 and
 * TCP checksums valid, lengths consistent, payloads adding up to the super-frame's.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  reader_t r = {data, size};
  uint32_t ctrl = take8(&r);
  uint32_t mss = take16(&r);
  uint32_t prefix = take8(&r) % 40;
  size_t nlen = take16(&r) % 1100;
  uint32_t dspace = take16(&r);
  uint32_t a1 = take32(&r), a2 = take32(&r);
  if (r.n < VNET) return 0;
  size_t len = r.n - VNET;
  /* Room for every segment at the worst MSS this frame allows, unless asked to be short. */
  size_t dsize = (ctrl & 0x40) ? dspace : (size_t)(len + 1) * (prefix + 128) + nlen * 2 + dspace;
  if (dsize > (64u << 20)) dsize = 64u << 20;
  size_t total = VNET + len + dsize;
  uint8_t *pool = malloc(total);
  uint32_t *lengths = malloc(nlen * sizeof *lengths + 1);
  memcpy(pool, r.p, VNET + len);
  uint8_t *vh = pool, *f = pool + VNET;
  if (ctrl & 1) {
    size_t l2 = fix_tcp_frame(f, len, false);
    if (l2 != 0) {
      vh[0] = (ctrl & 8) ? 1 : (vh[0] & ~1);
      vh[1] = (uint8_t)(((ctrl & 2) ? 4 : 1) | ((ctrl & 4) ? 0x80 : 0));
      p16le(vh + 4, mss);
      p16le(vh + 6, (uint32_t)(l2 + (f[l2] & 0x0f) * 4));
      p16le(vh + 8, 16);
    }
  }
  uint8_t orig[VNET + 128];
  size_t olen = VNET + len < sizeof orig ? VNET + len : sizeof orig;
  memcpy(orig, pool, olen);
  uint32_t off = VNET, flen = (uint32_t)len, doff = (uint32_t)(VNET + len), dend = (uint32_t)total;
  if (ctrl & 0x80) {
    /* Raw arguments, near the buffer's bounds: the range checks. */
    off = a1 % (uint32_t)(total + 16);
    flen = a2 % (uint32_t)(total + 16);
    doff = (a1 >> 16) % (uint32_t)(total + 16);
    dend = (a2 >> 16) % (uint32_t)(total + 16);
  }
  int k = offload_gso_segment(pool, total, off, flen, pool, total, doff, dend, prefix, lengths, nlen);
  CHECK(k >= -3 && k != 0, "k=%d", k);
  if (k > 0 && !(ctrl & 0x80)) {
    CHECK((size_t)k <= nlen, "k=%d nlen=%zu", k, nlen);
    size_t l2 = l2_len(orig + VNET, len);
    const uint8_t *oip = orig + VNET + l2;
    bool v6 = (vh[1] & 0x7f) == 4;
    size_t ihl = v6 ? 40 : (size_t)(oip[0] & 0x0f) * 4;
    size_t l4 = l2 + ihl;
    CHECK(l4 + 20 <= len, "l4=%zu len=%zu", l4, len);
    size_t stride = k > 1 ? prefix + lengths[0] : 0;
    size_t payload = 0, h = 0;
    for (int j = 0; j < k; j++) {
      size_t at = VNET + len + (size_t)j * stride + prefix;
      CHECK(at + lengths[j] <= total, "segment %d ends at %zu > %zu", j, at + lengths[j], total);
      const uint8_t *s = pool + at;
      const uint8_t *ip = s + l2;
      size_t thl = (size_t)(s[l4 + 12] >> 4) * 4;
      h = l4 + thl;
      CHECK(lengths[j] >= h, "segment %d of %u bytes, headers %zu", j, lengths[j], h);
      size_t tcplen = lengths[j] - l4;
      if (!v6) {
        CHECK(g16(ip + 2) == lengths[j] - l2, "segment %d total length", j);
        CHECK(ipv4_csum_ok(ip, ihl), "segment %d IPv4 checksum", j);
        CHECK(ref_sum(s + l4, tcplen, ref_pseudo(ip, (uint32_t)tcplen)) == 0xffff, "segment %d TCP checksum", j);
      }
      if (j + 1 < k) CHECK(lengths[j] - h == mss, "segment %d payload %zu, mss %u", j, lengths[j] - h, mss);
      payload += lengths[j] - h;
    }
    CHECK(payload == len - h || (len == h && payload == 0), "payload %zu of %zu", payload, len - h);
  }
  free(lengths);
  free(pool);
  return 0;
}
