/*
 * Shared by the addon's C files (tap.c, offload.c, udp.c, seccomp.c): error helpers,
 * argument helpers and the per-environment addon data.
 */
#ifndef TAPNET_COMMON_H
#define TAPNET_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <node_api.h>

enum err_kind { ERR_PLAIN, ERR_TYPE, ERR_RANGE };

/* Per-environment data (napi_set_instance_data): class constructors. */
typedef struct {
  napi_ref ctor;     /* TapHandle (tap.c) */
  napi_ref udp_ctor; /* UdpHandle (udp.c) */
  napi_ref raw_ctor; /* RawHandle (udp.c) */
} addon_data_t;

/* "EAGAIN" etc. for an errno value. */
const char *errno_code(int err);
/* Throws an Error (or TypeError/RangeError) with `code`; for syscall failures
 * also `errno` (negative) and `syscall`. No-op if an exception is pending. */
void throw_err(napi_env env, enum err_kind kind, const char *code, const char *msg, int sys_errno,
               const char *syscall);
/* Throws a system error: fmt (with one %s for name), then "(CODE: strerror)". */
void throw_sys(napi_env env, int err, const char *syscall, const char *fmt, const char *name);

bool get_prop(napi_env env, napi_value obj, const char *key, napi_value *out, napi_valuetype *type);
bool get_uint_prop(napi_env env, napi_value obj, const char *key, bool required, uint32_t def, uint32_t *out);
bool get_bool_prop(napi_env env, napi_value obj, const char *key, bool *out);
/* A Uint32Array (any offset into any ArrayBuffer); throws TypeError otherwise. */
bool get_u32_array(napi_env env, napi_value v, const char *what, uint32_t **data, size_t *len);

#define NAPI_OK_OR_THROW(call, what)                                                         \
  do {                                                                                       \
    if ((call) != napi_ok) {                                                                 \
      throw_err(env, ERR_PLAIN, "ERR_TAPNET_NAPI", "internal N-API failure: " what, 0, NULL); \
      return NULL;                                                                           \
    }                                                                                        \
  } while (0)

/* Module parts: each adds its functions to `exports`; false with an exception pending on failure. */
bool offload_init(napi_env env, napi_value exports);
bool udp_init(napi_env env, napi_value exports, addon_data_t *ad);
bool seccomp_init_exports(napi_env env, napi_value exports);

#endif
