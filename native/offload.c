/*
 * N-API glue of the software offloads: JavaScript arguments in, one call into
 * the pure C core (offload_core.c) out. An argument of the wrong type throws a
 * TypeError (a caller bug); a number that is not an integer in 0..2^32-1 makes
 * the call return OFF_ERR_RANGE; every other check is the core's.
 */
#include <stdio.h>

#include "common.h"
#include "offload_core.h"

/* A Uint8Array (Buffer) argument; TypeError otherwise. */
static bool arg_bytes(napi_env env, napi_value v, const char *fn, const char *what, uint8_t **data,
                      size_t *len) {
  bool is_ta = false;
  napi_typedarray_type type;
  void *p = NULL;
  napi_value ab;
  size_t off;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, v, &type, len, &p, &ab, &off) != napi_ok ||
      type != napi_uint8_array) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s: %s must be a Buffer or Uint8Array", fn, what);
    throw_err(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", msg, 0, NULL);
    return false;
  }
  /* An empty or detached array may have a NULL data pointer; every length
   * check below then fails before it is used. */
  *data = (uint8_t *)p;
  return true;
}

/* A number argument: TypeError if it is not a number; *ok = false (not an
 * exception: the call returns ERR_RANGE) unless it is an integer in
 * 0..2^32-1. */
static bool arg_u32(napi_env env, napi_value v, const char *fn, const char *what, uint32_t *out,
                    bool *ok) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s: %s must be a number", fn, what);
    throw_err(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", msg, 0, NULL);
    return false;
  }
  if (d >= 0 && d <= 4294967295.0 && d == (double)(uint32_t)d) {
    *out = (uint32_t)d;
  } else {
    *out = 0;
    *ok = false;
  }
  return true;
}

static napi_value ret_int(napi_env env, int v) {
  napi_value r;
  NAPI_OK_OR_THROW(napi_create_int32(env, v, &r), "create_int32");
  return r;
}

static bool get_args(napi_env env, napi_callback_info info, const char *fn, size_t want,
                     napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    throw_err(env, ERR_PLAIN, "ERR_TAPNET_NAPI", "internal N-API failure: get_cb_info", 0, NULL);
    return false;
  }
  if (argc < want) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s: expected %zu arguments, got %zu", fn, want, argc);
    throw_err(env, ERR_TYPE, "ERR_MISSING_ARGS", msg, 0, NULL);
    return false;
  }
  return true;
}

/* gsoSegment(src, off, len, dst, dstOff, dstEnd, prefix, lengths) */
static napi_value js_gso_segment(napi_env env, napi_callback_info info) {
  static const char fn[] = "gsoSegment";
  napi_value argv[8];
  if (!get_args(env, info, fn, 8, argv)) return NULL;
  uint8_t *src, *dst;
  size_t src_len, dst_len, nlen;
  uint32_t off, len, dst_off, dst_end, prefix;
  uint32_t *lengths;
  bool ok = true;
  if (!arg_bytes(env, argv[0], fn, "src", &src, &src_len) ||
      !arg_u32(env, argv[1], fn, "off", &off, &ok) ||
      !arg_u32(env, argv[2], fn, "len", &len, &ok) ||
      !arg_bytes(env, argv[3], fn, "dst", &dst, &dst_len) ||
      !arg_u32(env, argv[4], fn, "dstOff", &dst_off, &ok) ||
      !arg_u32(env, argv[5], fn, "dstEnd", &dst_end, &ok) ||
      !arg_u32(env, argv[6], fn, "prefix", &prefix, &ok) ||
      !get_u32_array(env, argv[7], "gsoSegment: lengths", &lengths, &nlen))
    return NULL;
  if (!ok) return ret_int(env, OFF_ERR_RANGE);
  return ret_int(env, offload_gso_segment(src, src_len, off, len, dst, dst_len, dst_off, dst_end, prefix,
                                          lengths, nlen));
}

/* csumComplete(buf, off, len) */
static napi_value js_csum_complete(napi_env env, napi_callback_info info) {
  static const char fn[] = "csumComplete";
  napi_value argv[3];
  if (!get_args(env, info, fn, 3, argv)) return NULL;
  uint8_t *buf;
  size_t buf_len;
  uint32_t off, len;
  bool ok = true;
  if (!arg_bytes(env, argv[0], fn, "buf", &buf, &buf_len) ||
      !arg_u32(env, argv[1], fn, "off", &off, &ok) || !arg_u32(env, argv[2], fn, "len", &len, &ok))
    return NULL;
  if (!ok) return ret_int(env, OFF_ERR_RANGE);
  return ret_int(env, offload_csum_complete(buf, buf_len, off, len));
}

/* groCoalesce(src, srcOff, srcLen, segSize, skip, dst, slotBase, slotSize,
 *             headroom, maxSlots, offsets, lengths, outIndex) */
static napi_value js_gro_coalesce(napi_env env, napi_callback_info info) {
  static const char fn[] = "groCoalesce";
  napi_value argv[13];
  if (!get_args(env, info, fn, 13, argv)) return NULL;
  uint8_t *src, *dst;
  size_t src_buf_len, dst_len, noff, nlen;
  uint32_t src_off, src_len, seg_size, skip, slot_base, slot_size, headroom, max_slots, out;
  uint32_t *offsets, *lengths;
  bool ok = true;
  if (!arg_bytes(env, argv[0], fn, "src", &src, &src_buf_len) ||
      !arg_u32(env, argv[1], fn, "srcOff", &src_off, &ok) ||
      !arg_u32(env, argv[2], fn, "srcLen", &src_len, &ok) ||
      !arg_u32(env, argv[3], fn, "segSize", &seg_size, &ok) ||
      !arg_u32(env, argv[4], fn, "skip", &skip, &ok) ||
      !arg_bytes(env, argv[5], fn, "dst", &dst, &dst_len) ||
      !arg_u32(env, argv[6], fn, "slotBase", &slot_base, &ok) ||
      !arg_u32(env, argv[7], fn, "slotSize", &slot_size, &ok) ||
      !arg_u32(env, argv[8], fn, "headroom", &headroom, &ok) ||
      !arg_u32(env, argv[9], fn, "maxSlots", &max_slots, &ok) ||
      !get_u32_array(env, argv[10], "groCoalesce: offsets", &offsets, &noff) ||
      !get_u32_array(env, argv[11], "groCoalesce: lengths", &lengths, &nlen) ||
      !arg_u32(env, argv[12], fn, "outIndex", &out, &ok))
    return NULL;
  if (!ok) return ret_int(env, OFF_ERR_RANGE);
  return ret_int(env, offload_gro_coalesce(src, src_buf_len, src_off, src_len, seg_size, skip, dst, dst_len,
                                           slot_base, slot_size, headroom, max_slots, offsets, noff,
                                           lengths, nlen, out));
}

/* groFrames(pool, offsets, lengths, start, count, dst, dstOff, dstEnd, result) */
static napi_value js_gro_frames(napi_env env, napi_callback_info info) {
  static const char fn[] = "groFrames";
  napi_value argv[9];
  if (!get_args(env, info, fn, 9, argv)) return NULL;
  uint8_t *pool, *dst;
  size_t pool_len, dst_len, noff, nlen, nres;
  uint32_t start, count, dst_off, dst_end;
  uint32_t *offsets, *lengths, *result;
  bool ok = true;
  if (!arg_bytes(env, argv[0], fn, "pool", &pool, &pool_len) ||
      !get_u32_array(env, argv[1], "groFrames: offsets", &offsets, &noff) ||
      !get_u32_array(env, argv[2], "groFrames: lengths", &lengths, &nlen) ||
      !arg_u32(env, argv[3], fn, "start", &start, &ok) ||
      !arg_u32(env, argv[4], fn, "count", &count, &ok) ||
      !arg_bytes(env, argv[5], fn, "dst", &dst, &dst_len) ||
      !arg_u32(env, argv[6], fn, "dstOff", &dst_off, &ok) ||
      !arg_u32(env, argv[7], fn, "dstEnd", &dst_end, &ok) ||
      !get_u32_array(env, argv[8], "groFrames: result", &result, &nres))
    return NULL;
  if (!ok) return ret_int(env, OFF_ERR_RANGE);
  return ret_int(env, offload_gro_frames(pool, pool_len, offsets, noff, lengths, nlen, start, count, dst,
                                         dst_len, dst_off, dst_end, result, nres));
}

bool offload_init(napi_env env, napi_value exports) {
  napi_property_descriptor fns[] = {
      {"gsoSegment", NULL, js_gso_segment, NULL, NULL, NULL, napi_enumerable, NULL},
      {"csumComplete", NULL, js_csum_complete, NULL, NULL, NULL, napi_enumerable, NULL},
      {"groCoalesce", NULL, js_gro_coalesce, NULL, NULL, NULL, napi_enumerable, NULL},
      {"groFrames", NULL, js_gro_frames, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns) != napi_ok) {
    throw_err(env, ERR_PLAIN, "ERR_TAPNET_NAPI", "tapnet: cannot export the offload functions", 0, NULL);
    return false;
  }
  return true;
}
