/*
 * N-API helpers shared by the addon's parts: see napi_util.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "napi_util.h"

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */

const char *errno_code(int err) {
  const char *s = strerrorname_np(err);
  return s != NULL ? s : "EUNKNOWN";
}

void throw_err(napi_env env, enum err_kind kind, const char *code, const char *msg, int sys_errno,
               const char *syscall) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return;
  napi_value code_v, msg_v, err;
  if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_v) != napi_ok ||
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &msg_v) != napi_ok) {
    napi_throw_error(env, code, msg);
    return;
  }
  napi_status st;
  switch (kind) {
    case ERR_TYPE: st = napi_create_type_error(env, code_v, msg_v, &err); break;
    case ERR_RANGE: st = napi_create_range_error(env, code_v, msg_v, &err); break;
    default: st = napi_create_error(env, code_v, msg_v, &err); break;
  }
  if (st != napi_ok) {
    napi_throw_error(env, code, msg);
    return;
  }
  if (sys_errno != 0) {
    napi_value v;
    if (napi_create_int32(env, -sys_errno, &v) == napi_ok) napi_set_named_property(env, err, "errno", v);
    if (syscall != NULL && napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &v) == napi_ok)
      napi_set_named_property(env, err, "syscall", v);
  }
  napi_throw(env, err);
}

void throw_fmt(napi_env env, enum err_kind kind, const char *code, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  throw_err(env, kind, code, msg, 0, NULL);
}

void throw_sys(napi_env env, int err, const char *syscall, const char *fmt, const char *name) {
  char msg[512];
  char head[384];
  snprintf(head, sizeof head, fmt, name);
  snprintf(msg, sizeof msg, "%s (%s: %s)", head, errno_code(err), strerror(err));
  throw_err(env, ERR_PLAIN, errno_code(err), msg, err, syscall);
}

void throw_sys_table(napi_env env, int err, const char *syscall, const errno_msg_t *msgs, const char *name) {
  while (msgs->err != 0 && msgs->err != err) msgs++;
  throw_sys(env, err, syscall, msgs->fmt, name);
}

/* ------------------------------------------------------------------------ */
/* Reading values                                                           */

/* A typed array of `type` into *view; false (nothing thrown) if v is not one. */
static bool typed_view(napi_env env, napi_value v, napi_typedarray_type want, val_view_t *view) {
  bool is_ta = false;
  napi_typedarray_type type;
  napi_value ab;
  size_t off;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, v, &type, &view->len, &view->data, &ab, &off) != napi_ok || type != want)
    return false;
  /* An empty or detached array may have a NULL data pointer; every length
   * check a caller makes then fails before it is used. */
  view->v = v;
  return true;
}

/* Reads one value by its spec; `what` names it in messages. */
static bool read_value(napi_env env, const char *fn, const char *what, napi_value v, const val_spec_t *s,
                       bool *in_range) {
  napi_valuetype t = napi_undefined;
  if (v != NULL && napi_typeof(env, v, &t) != napi_ok) {
    throw_fmt(env, ERR_PLAIN, "ERR_TAPNET_NAPI", "%s: internal N-API failure reading %s", fn, what);
    return false;
  }
  const bool absent = t == napi_undefined;
  const char *hint = s->hint != NULL ? s->hint : "";
  const char *req = absent && (s->flags & VAL_REQUIRED) ? " (it is required)" : "";
  switch (s->kind) {
    case VAL_IGNORED:
      return true;
    case VAL_U32: {
      if (absent && !(s->flags & VAL_REQUIRED)) return true;
      double d = 0;
      if (t != napi_number || napi_get_value_double(env, v, &d) != napi_ok) {
        throw_fmt(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", "%s: %s must be an integer in 0..%u%s", fn, what, s->max, req);
        return false;
      }
      if (d >= 0 && d <= (double)s->max && d == (double)(uint32_t)d) {
        *(uint32_t *)s->out = (uint32_t)d;
        return true;
      }
      if (in_range != NULL) {
        *(uint32_t *)s->out = 0;
        *in_range = false;
        return true;
      }
      throw_fmt(env, ERR_RANGE, "ERR_OUT_OF_RANGE", "%s: %s must be an integer in 0..%u, got %g", fn, what, s->max, d);
      return false;
    }
    case VAL_U64: {
      if (absent && !(s->flags & VAL_REQUIRED)) return true;
      double d = -1;
      if (t == napi_number) napi_get_value_double(env, v, &d);
      if (!(d >= 0) || d > 9007199254740992.0 || d != (double)(uint64_t)d) {
        throw_fmt(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", "%s: %s must be an integer in 0..2^53%s", fn, what, req);
        return false;
      }
      *(uint64_t *)s->out = (uint64_t)d;
      return true;
    }
    case VAL_BOOL:
      if (absent && !(s->flags & VAL_REQUIRED)) return true;
      if (t != napi_boolean) {
        throw_fmt(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", "%s: %s must be a boolean%s", fn, what, req);
        return false;
      }
      napi_get_value_bool(env, v, (bool *)s->out);
      return true;
    case VAL_BYTES:
      if (!typed_view(env, v, napi_uint8_array, (val_view_t *)s->out)) {
        throw_fmt(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", "%s: %s must be a Buffer%s", fn, what, hint);
        return false;
      }
      return true;
    case VAL_U32_ARRAY:
      if ((s->flags & VAL_NULLABLE) && (absent || t == napi_null)) {
        *(val_view_t *)s->out = (val_view_t){NULL, NULL, 0};
        return true;
      }
      if (!typed_view(env, v, napi_uint32_array, (val_view_t *)s->out)) {
        throw_fmt(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", "%s: %s must be a Uint32Array%s", fn, what,
                  (s->flags & VAL_NULLABLE) ? " (or null)" : "");
        return false;
      }
      return true;
    case VAL_FUNCTION:
      if (absent && !(s->flags & VAL_REQUIRED)) {
        *(napi_value *)s->out = NULL;
        return true;
      }
      if (t != napi_function) {
        throw_fmt(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", "%s: %s must be a function%s%s", fn, what, hint,
                  (s->flags & VAL_REQUIRED) ? "" : ", or left out");
        return false;
      }
      *(napi_value *)s->out = v;
      return true;
  }
  return false;
}

bool read_options(napi_env env, const char *fn, napi_value obj, const val_spec_t *specs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char what[64];
    napi_value v;
    snprintf(what, sizeof what, "option '%s'", specs[i].name);
    if (napi_get_named_property(env, obj, specs[i].name, &v) != napi_ok) {
      throw_fmt(env, ERR_PLAIN, "ERR_TAPNET_NAPI", "%s: internal N-API failure reading %s", fn, what);
      return false;
    }
    if (!read_value(env, fn, what, v, &specs[i], NULL)) return false;
  }
  return true;
}

bool read_args(napi_env env, const char *fn, const napi_value *argv, size_t argc, const val_spec_t *specs, size_t n,
               bool *in_range) {
  for (size_t i = 0; i < n; i++) {
    if (!read_value(env, fn, specs[i].name, i < argc ? argv[i] : NULL, &specs[i], in_range)) return false;
  }
  return true;
}

bool get_args(napi_env env, napi_callback_info info, const char *fn, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    throw_err(env, ERR_PLAIN, "ERR_TAPNET_NAPI", "internal N-API failure: get_cb_info", 0, NULL);
    return false;
  }
  if (argc < want) {
    throw_fmt(env, ERR_TYPE, "ERR_MISSING_ARGS", "%s: expected %zu arguments, got %zu", fn, want, argc);
    return false;
  }
  return true;
}

napi_value options_arg(napi_env env, napi_callback_info info, const char *fn) {
  napi_value argv[1];
  if (!get_args(env, info, fn, 1, argv)) return NULL;
  napi_valuetype vt = napi_undefined;
  napi_typeof(env, argv[0], &vt);
  if (vt != napi_object) {
    throw_fmt(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", "%s(options): options must be an object", fn);
    return NULL;
  }
  return argv[0];
}

bool check_count(napi_env env, const char *fn, uint32_t count, size_t limit, const char *arrays) {
  if (count <= limit) return true;
  throw_fmt(env, ERR_RANGE, "ERR_OUT_OF_RANGE", "%s: count must be an integer in 0..%zu (the shortest of %s), got %u", fn,
            limit, arrays, count);
  return false;
}

bool check_rx_region(napi_env env, const char *fn, size_t pool_len, uint32_t rx_base, uint32_t slots,
                     uint32_t slot_size, const val_view_t *arrays, const char *const *names, size_t n) {
  if (slots == 0) {
    throw_fmt(env, ERR_RANGE, "ERR_OUT_OF_RANGE", "%s: 'slots' must be at least 1", fn);
    return false;
  }
  const uint64_t rx_end = (uint64_t)rx_base + (uint64_t)slots * slot_size;
  if (rx_end > pool_len) {
    throw_fmt(env, ERR_RANGE, "ERR_OUT_OF_RANGE",
              "%s: the receive region rxBase + slots*slotSize = %u + %u*%u = %llu does not fit in the pool of %zu bytes",
              fn, rx_base, slots, slot_size, (unsigned long long)rx_end, pool_len);
    return false;
  }
  if (rx_end > (uint64_t)UINT32_MAX) {
    throw_fmt(env, ERR_RANGE, "ERR_OUT_OF_RANGE", "%s: the receive region must end below 4 GiB (offsets are Uint32)", fn);
    return false;
  }
  for (size_t k = 0; k < n; k++) {
    if (arrays[k].len < slots) {
      throw_fmt(env, ERR_RANGE, "ERR_OUT_OF_RANGE", "%s: option '%s' has %zu entries; it must hold at least slots = %u",
                fn, names[k], arrays[k].len, slots);
      return false;
    }
  }
  return true;
}

/* ------------------------------------------------------------------------ */
/* Making values                                                            */

bool define_values(napi_env env, napi_value obj, const named_value_t *vals, size_t n) {
  napi_property_descriptor props[8];
  if (n > sizeof props / sizeof props[0]) return false;
  for (size_t i = 0; i < n; i++) {
    if (vals[i].v == NULL) return false; /* its napi_create_* failed */
    props[i] = (napi_property_descriptor){vals[i].name, NULL, NULL, NULL, NULL, vals[i].v, napi_enumerable, NULL};
  }
  return napi_define_properties(env, obj, n, props) == napi_ok;
}

bool export_functions(napi_env env, napi_value exports, const named_fn_t *fns, size_t n, const char *what) {
  napi_property_descriptor props[8];
  bool ok = n <= sizeof props / sizeof props[0];
  for (size_t i = 0; ok && i < n; i++)
    props[i] = (napi_property_descriptor){fns[i].name, NULL, fns[i].fn, NULL, NULL, NULL, napi_enumerable, NULL};
  if (!ok || napi_define_properties(env, exports, n, props) != napi_ok) {
    throw_fmt(env, ERR_PLAIN, "ERR_TAPNET_NAPI", "tapnet: cannot export %s", what);
    return false;
  }
  return true;
}

napi_value ret_int(napi_env env, int v) {
  napi_value r;
  NAPI_OK_OR_THROW(napi_create_int32(env, v, &r), "create_int32");
  return r;
}

napi_value ret_u32(napi_env env, uint32_t v) {
  napi_value r;
  NAPI_OK_OR_THROW(napi_create_uint32(env, v, &r), "create_uint32");
  return r;
}

bool read_frame_batch(napi_env env, const char *fn, const napi_value *argv, size_t argc, frame_batch_t *b) {
  const val_spec_t args[] = {
      {"pool", VAL_BYTES, VAL_REQUIRED, 0, NULL, &b->pool},
      {"offsets", VAL_U32_ARRAY, VAL_REQUIRED, 0, NULL, &b->offsets},
      {"lengths", VAL_U32_ARRAY, VAL_REQUIRED, 0, NULL, &b->lengths},
      {"count", VAL_U32, VAL_REQUIRED, UINT32_MAX, NULL, &b->count},
  };
  return read_args(env, fn, argv, argc, args, VAL_COUNT(args), NULL) &&
         check_count(env, fn, b->count, b->offsets.len < b->lengths.len ? b->offsets.len : b->lengths.len,
                     "offsets, lengths");
}
