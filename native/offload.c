/*
 * N-API glue of the software offloads: JavaScript arguments in, one call into
 * the pure C core (offload_core.c) out. An argument of the wrong type throws a
 * TypeError (a caller bug); a number that is not an integer in 0..2^32-1 makes
 * the call return OFF_ERR_RANGE; every other check is the core's.
 */
#include "common.h"
#include "offload_core.h"

#define U32(name, out) {name, VAL_U32, VAL_REQUIRED, UINT32_MAX, NULL, out}
#define BYTES(name, out) {name, VAL_BYTES, VAL_REQUIRED, 0, " or Uint8Array", out}
#define U32S(name, out) {name, VAL_U32_ARRAY, VAL_REQUIRED, 0, NULL, out}

/* Reads the arguments of `fn` by `specs`; *result is the call's answer when
 * it must not go on: NULL with an exception pending, or OFF_ERR_RANGE. */
static bool offload_args(napi_env env, napi_callback_info info, const char *fn, const val_spec_t *specs, size_t n,
                         napi_value *result) {
  napi_value argv[16];
  bool in_range = true;
  *result = NULL;
  if (!get_args(env, info, fn, n, argv) || !read_args(env, fn, argv, n, specs, n, &in_range)) return false;
  if (in_range) return true;
  napi_create_int32(env, OFF_ERR_RANGE, result);
  return false;
}

/* gsoSegment(src, off, len, dst, dstOff, dstEnd, prefix, lengths) */
static napi_value js_gso_segment(napi_env env, napi_callback_info info) {
  val_view_t src, dst, lengths;
  uint32_t off, len, dst_off, dst_end, prefix;
  const val_spec_t a[] = {BYTES("src", &src),       U32("off", &off),         U32("len", &len),
                          BYTES("dst", &dst),       U32("dstOff", &dst_off),  U32("dstEnd", &dst_end),
                          U32("prefix", &prefix),   U32S("lengths", &lengths)};
  napi_value r;
  if (!offload_args(env, info, "gsoSegment", a, VAL_COUNT(a), &r)) return r;
  return ret_int(env, offload_gso_segment(src.data, src.len, off, len, dst.data, dst.len, dst_off, dst_end, prefix,
                                          lengths.data, lengths.len));
}

/* gsoHeaders(buf, off, len, hdrOff, hdrEnd, prefix, iovOffsets, iovLengths, first) */
static napi_value js_gso_headers(napi_env env, napi_callback_info info) {
  val_view_t buf, iov_off, iov_len;
  uint32_t off, len, hdr_off, hdr_end, prefix, first;
  const val_spec_t a[] = {BYTES("buf", &buf),          U32("off", &off),           U32("len", &len),
                          U32("hdrOff", &hdr_off),     U32("hdrEnd", &hdr_end),    U32("prefix", &prefix),
                          U32S("iovOffsets", &iov_off), U32S("iovLengths", &iov_len), U32("first", &first)};
  napi_value r;
  if (!offload_args(env, info, "gsoHeaders", a, VAL_COUNT(a), &r)) return r;
  return ret_int(env, offload_gso_headers(buf.data, buf.len, off, len, hdr_off, hdr_end, prefix, iov_off.data,
                                          iov_off.len, iov_len.data, iov_len.len, first));
}

/* csumComplete(buf, off, len) */
static napi_value js_csum_complete(napi_env env, napi_callback_info info) {
  val_view_t buf;
  uint32_t off, len;
  const val_spec_t a[] = {BYTES("buf", &buf), U32("off", &off), U32("len", &len)};
  napi_value r;
  if (!offload_args(env, info, "csumComplete", a, VAL_COUNT(a), &r)) return r;
  return ret_int(env, offload_csum_complete(buf.data, buf.len, off, len));
}

/* groCoalesce(src, srcOff, srcLen, segSize, skip, dst, slotBase, slotSize,
 *             headroom, maxSlots, offsets, lengths, outIndex) */
static napi_value js_gro_coalesce(napi_env env, napi_callback_info info) {
  val_view_t src, dst, offsets, lengths;
  uint32_t src_off, src_len, seg_size, skip, slot_base, slot_size, headroom, max_slots, out;
  const val_spec_t a[] = {BYTES("src", &src),           U32("srcOff", &src_off),       U32("srcLen", &src_len),
                          U32("segSize", &seg_size),    U32("skip", &skip),            BYTES("dst", &dst),
                          U32("slotBase", &slot_base),  U32("slotSize", &slot_size),   U32("headroom", &headroom),
                          U32("maxSlots", &max_slots),  U32S("offsets", &offsets),     U32S("lengths", &lengths),
                          U32("outIndex", &out)};
  napi_value r;
  if (!offload_args(env, info, "groCoalesce", a, VAL_COUNT(a), &r)) return r;
  return ret_int(env, offload_gro_coalesce(src.data, src.len, src_off, src_len, seg_size, skip, dst.data, dst.len,
                                           slot_base, slot_size, headroom, max_slots, offsets.data, offsets.len,
                                           lengths.data, lengths.len, out));
}

/* groFrames(pool, offsets, lengths, start, count, dst, dstOff, dstEnd, result) */
static napi_value js_gro_frames(napi_env env, napi_callback_info info) {
  val_view_t pool, dst, offsets, lengths, result;
  uint32_t start, count, dst_off, dst_end;
  const val_spec_t a[] = {BYTES("pool", &pool),       U32S("offsets", &offsets), U32S("lengths", &lengths),
                          U32("start", &start),       U32("count", &count),      BYTES("dst", &dst),
                          U32("dstOff", &dst_off),    U32("dstEnd", &dst_end),   U32S("result", &result)};
  napi_value r;
  if (!offload_args(env, info, "groFrames", a, VAL_COUNT(a), &r)) return r;
  return ret_int(env, offload_gro_frames(pool.data, pool.len, offsets.data, offsets.len, lengths.data, lengths.len,
                                         start, count, dst.data, dst.len, dst_off, dst_end, result.data, result.len));
}

bool offload_init(napi_env env, napi_value exports) {
  static const named_fn_t fns[] = {
      {"gsoSegment", js_gso_segment},
      {"gsoHeaders", js_gso_headers},
      {"csumComplete", js_csum_complete},
      {"groCoalesce", js_gro_coalesce},
      {"groFrames", js_gro_frames},
  };
  return export_functions(env, exports, fns, VAL_COUNT(fns), "the offload functions");
}
