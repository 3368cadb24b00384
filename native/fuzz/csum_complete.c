/*
 * libFuzzer harness: offload_csum_complete (csumComplete). Input: control byte, two
 * raw argument words, then the vnet header and the frame (csum_start/csum_offset
 * pointed inside the frame most of the time). Checks: only 0 or an error comes back;
 * on 0 with NEEDS_CSUM set, the flag is cleared and the field holds the complement of
 * the reference sum over [csum_start, end) taken before the call (seed included), or
 * 0xffff where that is 0 (CSUM_MANGLED_0).
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  reader_t r = {data, size};
  uint32_t ctrl = take8(&r);
  uint32_t a1 = take32(&r), a2 = take32(&r);
  if (r.n < VNET) return 0;
  size_t len = r.n - VNET;
  size_t total = VNET + len;
  uint8_t *pool = malloc(total);
  memcpy(pool, r.p, total);
  uint8_t *vh = pool;
  if ((ctrl & 1) && len >= 2) {
    uint32_t start = a1 % (uint32_t)len;
    uint32_t field = (a2 % (uint32_t)(len - start)) & ~1u;
    if (start + field + 2 > len) field = 0;
    vh[0] |= 1;
    p16le(vh + 6, start);
    p16le(vh + 8, field);
  }
  bool pending = (vh[0] & 1) != 0;
  uint32_t start = g16le(vh + 6), field = start + g16le(vh + 8);
  uint32_t expect = 0;
  if (pending && field + 2 <= len) {
    expect = ~ref_sum(pool + VNET + start, len - start, 0) & 0xffff;
    if (expect == 0) expect = 0xffff;
  }
  uint32_t off = VNET, flen = (uint32_t)len;
  if (ctrl & 0x80) {
    off = a1 % (uint32_t)(total + 16);
    flen = a2 % (uint32_t)(total + 16);
  }
  int rc = offload_csum_complete(pool, total, off, flen);
  CHECK(rc == 0 || rc == OFF_ERR_MALFORMED || rc == OFF_ERR_RANGE, "rc=%d", rc);
  if (rc == 0 && pending && !(ctrl & 0x80)) {
    CHECK((vh[0] & 1) == 0, "NEEDS_CSUM still set");
    CHECK(field + 2 <= len, "field %u outside %zu", field, len);
    uint32_t stored = g16(pool + VNET + field);
    CHECK(stored == expect, "stored %04x, expected %04x", stored, expect);
  }
  free(pool);
  return 0;
}
