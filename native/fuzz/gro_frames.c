/*
 * libFuzzer harness: offload_gro_frames (groFrames), the egress GRO over a frame list.
 * Input: control byte, frame count, start, frame length, output room, raw argument
 * words, then for each frame its vnet header and bytes. Frames are laid out in the pool
 * one after another (or at raw offsets), mostly fixed up into a run of one TCP flow
 * with vnet headers saying partial, valid or nothing; the output region sits at the end
 * of the pool. Checks: 1, an error, or a merged count within the list; a merged frame
 * within the output region with a valid IPv4 header, its total length and a TCPV4
 * vnet header; frames of the list untouched.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  reader_t r = {data, size};
  uint32_t ctrl = take8(&r);
  uint32_t count = take8(&r) % 40 + 1;
  uint32_t start = take8(&r) % 48;
  uint32_t flen = take16(&r) % 2048;
  uint32_t room = take16(&r);
  uint32_t a1 = take32(&r), a2 = take32(&r);
  if (!(ctrl & 0x80)) start %= count;
  size_t per = VNET + flen;
  size_t nframes = per ? r.n / per : 0;
  if (nframes > count) nframes = count;
  if (nframes == 0) return 0;
  size_t list = nframes * per;
  size_t dst_off = list + (a1 & 15);
  size_t dst_end = dst_off + VNET + ((ctrl & 0x40) ? room % 256 : room + 3000);
  size_t total = dst_end + ((ctrl & 0x80) ? 64 : 0);
  uint8_t *pool = malloc(total);
  uint32_t *offs = malloc(count * sizeof *offs), *lens = malloc(count * sizeof *lens);
  uint32_t result[1] = {0};
  memcpy(pool, r.p, list);
  uint32_t seq = a2, ident = a1 & 0xffff;
  size_t h = 0, l2 = 0, ihl = 0;
  for (size_t i = 0; i < count; i++) {
    size_t k = i < nframes ? i : nframes - 1;
    offs[i] = (uint32_t)(k * per + VNET);
    lens[i] = flen;
    if ((ctrl & 0x80) && ((a2 >> (i % 32)) & 1)) {
      offs[i] = (a1 ^ (uint32_t)(i * 2654435761u)) % (uint32_t)(total + 32);
      lens[i] = (a2 ^ (uint32_t)(i * 40503u)) % (uint32_t)(total + 32);
    }
    if (!(ctrl & 1) || i >= nframes || (ctrl & 0x80)) continue;
    uint8_t *f = pool + offs[i], *vh = f - VNET;
    if (i == 0) {
      l2 = fix_tcp_frame(f, flen, true);
      if (l2 == 0) continue;
      ihl = (size_t)(f[l2] & 0x0f) * 4;
      h = l2 + ihl + (size_t)(f[l2 + ihl + 12] >> 4) * 4;
      if (h >= flen) {
        h = 0;
        continue;
      }
      f[l2 + ihl + 13] = 0x10;
    } else if (h != 0 && (ctrl & 2)) {
      memcpy(f, pool + offs[0], h);
      seq += (uint32_t)(flen - h);
      p32(f + l2 + ihl + 4, seq);
      p16(f + l2 + 4, ++ident);
    }
    if (h != 0 && i == 0) {
      seq = g32(f + l2 + ihl + 4);
      ident = g16(f + l2 + 4);
    }
    fix_tcp_frame(f, flen, true);
    uint32_t how = (vh[0] >> 4) & 3; /* the fuzzer picks each frame's vnet header */
    memset(vh, 0, VNET);
    if (how == 1 && h != 0) {
      vh[0] = 1;
      p16le(vh + 6, (uint32_t)(l2 + ihl));
      p16le(vh + 8, 16);
    } else if (how == 2) {
      vh[0] = 2;
    } else if (how == 3) {
      vh[1] = (uint8_t)(a1 >> 24);
    }
  }
  uint8_t *copy = malloc(list);
  memcpy(copy, pool, list);
  int n = offload_gro_frames(pool, total, offs, count, lens, count, start, count, pool, total,
                             (uint32_t)dst_off, (uint32_t)dst_end, result, 1);
  CHECK(n >= -3 && n != 0, "n=%d", n);
  CHECK(memcmp(copy, pool, list) == 0, "a frame of the list was written to");
  if (n >= 2) {
    CHECK((uint32_t)n <= count - start, "n=%d count=%u start=%u", n, count, start);
    CHECK(result[0] <= dst_end - dst_off - VNET, "merged %u bytes, room %zu", result[0], dst_end - dst_off - VNET);
    const uint8_t *vh = pool + dst_off, *f = vh + VNET;
    CHECK(vh[0] == 1 && vh[1] == 1, "vnet %02x/%02x", vh[0], vh[1]);
    size_t ml2 = l2_len(f, result[0]);
    const uint8_t *ip = f + ml2;
    size_t mihl = (size_t)(ip[0] & 0x0f) * 4;
    CHECK(g16(ip + 2) == result[0] - ml2, "merged total length");
    CHECK(ipv4_csum_ok(ip, mihl), "merged IPv4 checksum");
  }
  free(copy);
  free(offs);
  free(lens);
  free(pool);
  return 0;
}
