/*
 * libFuzzer harness: offload_gso_segment (gsoSegment). Input: control byte, MSS,
 * prefix, lengths-array size, destination size, then the vnet header and the frame.
 * Most inputs are fixed up into a consistent TSO frame (fix_tcp_frame) so the cutting
 * loop runs; some keep their bytes as they are, some get raw argument values (the
 * range checks). Every segment written is checked: inside the destination, IPv4 and
 * TCP checksums valid, lengths consistent, payloads adding up to the super-frame's.
 * offload_gso_headers (gsoHeaders, the scatter-gather send) runs on the same frame and
 * its gather entries must yield gsoSegment's segments byte for byte.
 */
#include "fuzz_common.h"

/* Checks segments dst[0..) as written for the super-frame `orig` (vnet header first). */
static void check_segments(const uint8_t *orig, size_t len, const uint8_t *dst, size_t dsize, int k,
                           const uint32_t *lengths, uint32_t prefix, uint32_t mss) {
  size_t l2 = l2_len(orig + VNET, len);
  const uint8_t *oip = orig + VNET + l2;
  bool v6 = (orig[1] & 0x7f) == 4;
  size_t ihl = v6 ? 40 : (size_t)(oip[0] & 0x0f) * 4;
  size_t l4 = l2 + ihl;
  CHECK(l4 + 20 <= len, "l4=%zu len=%zu", l4, len);
  size_t stride = k > 1 ? prefix + lengths[0] : 0;
  size_t payload = 0, h = 0;
  for (int j = 0; j < k; j++) {
    size_t at = (size_t)j * stride + prefix;
    CHECK(at + lengths[j] <= dsize, "segment %d ends at %zu > %zu", j, at + lengths[j], dsize);
    const uint8_t *s = dst + at;
    const uint8_t *ip = s + l2;
    size_t thl = (size_t)(s[l4 + 12] >> 4) * 4;
    h = l4 + thl;
    CHECK(lengths[j] >= h, "segment %d of %u bytes, headers %zu", j, lengths[j], h);
    CHECK(memcmp(s + h, orig + VNET + h + payload, lengths[j] - h) == 0, "segment %d payload differs", j);
    size_t tcplen = lengths[j] - l4;
    if (!v6) {
      CHECK(g16(ip + 2) == lengths[j] - l2, "segment %d total length", j);
      CHECK(ipv4_csum_ok(ip, ihl), "segment %d IPv4 checksum", j);
      CHECK(ref_sum(s + l4, tcplen, ref_pseudo(ip, (uint32_t)tcplen)) == 0xffff, "segment %d TCP checksum", j);
    }
    if (j + 1 < k) CHECK(lengths[j] - h == mss, "segment %d payload %zu, mss %u", j, lengths[j] - h, mss);
    payload += lengths[j] - h;
  }
  CHECK(payload == len - h, "payload %zu of %zu", payload, len - h);
}

/* offload_gso_headers on the super-frame `orig` (vnet header first): the frame and a
 * header area of exactly the bytes it needs in one buffer (a byte written past it is a
 * report); the gathered segments must equal gsoSegment's k segments in dst. */
static void check_gather(const uint8_t *orig, size_t len, const uint8_t *dst, int k, const uint32_t *lengths,
                         uint32_t prefix) {
  size_t stride = k > 1 ? prefix + lengths[0] : 0;
  size_t niov = 2 * (size_t)k;
  uint32_t *io = malloc(niov * sizeof *io), *il = malloc(niov * sizeof *il);
  /* First with room for the largest headers (18 + 60 + 60), to learn the header length. */
  size_t room = (size_t)k * (prefix + 160);
  uint8_t *pool = malloc(VNET + len + room);
  memcpy(pool, orig, VNET + len);
  int g = offload_gso_headers(pool, VNET + len + room, VNET, (uint32_t)len, (uint32_t)(VNET + len),
                              (uint32_t)(VNET + len + room), prefix, io, niov, il, niov, 0);
  CHECK(g == k, "gsoHeaders gave %d segments, gsoSegment %d", g, k);
  size_t hs = il[0];
  free(pool);
  size_t exact = VNET + len + (size_t)k * hs;
  pool = malloc(exact);
  memcpy(pool, orig, VNET + len);
  g = offload_gso_headers(pool, exact, VNET, (uint32_t)len, (uint32_t)(VNET + len), (uint32_t)exact, prefix, io,
                          niov, il, niov, 0);
  CHECK(g == k, "gsoHeaders gave %d segments with an exact header area, gsoSegment %d", g, k);
  CHECK(memcmp(pool, orig, VNET + len) == 0, "gsoHeaders wrote into the super-frame");
  for (int j = 0; j < k; j++) {
    const uint8_t *want = dst + (size_t)j * stride + prefix;
    CHECK(il[2 * j] == hs, "segment %d: header entry of %u bytes, not %zu", j, il[2 * j], hs);
    CHECK(il[2 * j] - prefix + il[2 * j + 1] == lengths[j], "segment %d: %u + %u bytes, gsoSegment %u", j,
          il[2 * j] - prefix, il[2 * j + 1], lengths[j]);
    CHECK(memcmp(pool + io[2 * j] + prefix, want, il[2 * j] - prefix) == 0, "segment %d headers differ", j);
    CHECK(memcmp(pool + io[2 * j + 1], want + il[2 * j] - prefix, il[2 * j + 1]) == 0, "segment %d payload differs", j);
  }
  free(pool);
  free(io);
  free(il);
}

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
  /* The super-frame alone in an exactly-sized buffer: a byte read past it is a report. */
  uint8_t *src = malloc(VNET + len);
  memcpy(src, r.p, VNET + len);
  uint8_t *vh = src, *f = src + VNET;
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
  uint32_t *lengths = malloc(nlen * sizeof *lengths + 1);
  if (ctrl & 0x80) {
    /* One pool holding both, raw arguments near its bounds: the range and overlap checks. */
    size_t total = VNET + len + dspace;
    uint8_t *pool = malloc(total);
    memcpy(pool, src, VNET + len);
    uint32_t t = (uint32_t)total + 16;
    int k = offload_gso_segment(pool, total, a1 % t, a2 % t, pool, total, (a1 >> 16) % t, (a2 >> 16) % t,
                                prefix, lengths, nlen);
    CHECK(k >= -3 && k != 0, "k=%d", k);
    free(pool);
  } else {
    /* Room for every segment at the worst MSS this frame allows, unless asked to be short. */
    size_t dsize = (ctrl & 0x40) ? dspace : (size_t)(len + 1) * (prefix + 128) + dspace;
    if (dsize > (64u << 20)) dsize = 64u << 20;
    uint8_t *dst = malloc(dsize + 1);
    int k = offload_gso_segment(src, VNET + len, VNET, (uint32_t)len, dst, dsize, 0, (uint32_t)dsize, prefix,
                                lengths, nlen);
    CHECK(k >= -3 && k != 0, "k=%d", k);
    if (k > 0) {
      CHECK((size_t)k <= nlen, "k=%d nlen=%zu", k, nlen);
      check_segments(src, len, dst, dsize, k, lengths, prefix, mss);
      check_gather(src, len, dst, k, lengths, prefix);
      /* Again into a destination of exactly the bytes it needs: a byte written past it is a report. */
      size_t stride = k > 1 ? prefix + lengths[0] : 0;
      size_t exact = (size_t)(k - 1) * stride + prefix + lengths[k - 1];
      uint8_t *tight = malloc(exact);
      uint32_t *l2s = malloc(nlen * sizeof *l2s + 1);
      int k2 = offload_gso_segment(src, VNET + len, VNET, (uint32_t)len, tight, exact, 0, (uint32_t)exact,
                                   prefix, l2s, nlen);
      CHECK(k2 == k, "k=%d then %d with an exact destination", k, k2);
      check_segments(src, len, tight, exact, k, l2s, prefix, mss);
      free(l2s);
      free(tight);
    }
    free(dst);
  }
  free(lengths);
  free(src);
  return 0;
}
