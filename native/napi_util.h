/*
 * N-API helpers every part of the addon uses (tap.c, udp.c, offload.c, seccomp.c,
 * pollfd.c): errors with Node's shape (code, errno, syscall), and one table-driven
 * reader for what JavaScript passes in, both an options object's properties
 * (openTap, openUdp, openRaw) and a call's positional arguments (write, send, the
 * offload functions). A reader checks every value before the caller touches a
 * resource, so a bad call throws and leaves nothing behind.
 */
#ifndef TAPNET_NAPI_UTIL_H
#define TAPNET_NAPI_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <node_api.h>

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */

enum err_kind { ERR_PLAIN, ERR_TYPE, ERR_RANGE };

/* "EAGAIN" etc. for an errno value. */
const char *errno_code(int err);
/* Throws an Error (or TypeError/RangeError) with `code`; for syscall failures
 * also `errno` (negative, as Node's own) and `syscall`. No-op if an exception
 * is pending. */
void throw_err(napi_env env, enum err_kind kind, const char *code, const char *msg, int sys_errno,
               const char *syscall);
/* throw_err with a printf-style message and no errno. */
void throw_fmt(napi_env env, enum err_kind kind, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Throws a system error: fmt (with one %s for name), then "(CODE: strerror)". */
void throw_sys(napi_env env, int err, const char *syscall, const char *fmt, const char *name);

/* What an errno means for one call, as a table ending with {0, the message for
 * any other errno}; each message has one %s for `name`. */
typedef struct {
  int err;
  const char *fmt;
} errno_msg_t;
void throw_sys_table(napi_env env, int err, const char *syscall, const errno_msg_t *msgs, const char *name);

#define NAPI_OK_OR_THROW(call, what)                                                         \
  do {                                                                                       \
    if ((call) != napi_ok) {                                                                 \
      throw_err(env, ERR_PLAIN, "ERR_TAPNET_NAPI", "internal N-API failure: " what, 0, NULL); \
      return NULL;                                                                           \
    }                                                                                        \
  } while (0)

/* ------------------------------------------------------------------------ */
/* Reading values                                                           */

typedef enum {
  VAL_U32,       /* an integer in 0..max; out: uint32_t* (left as it is when optional and absent) */
  VAL_U64,       /* an integer in 0..2^53; out: uint64_t* (left as it is when optional and absent) */
  VAL_BOOL,      /* out: bool* (left as it is when absent) */
  VAL_BYTES,     /* a Buffer (any Uint8Array); out: val_view_t* (data: uint8_t*, len: bytes) */
  VAL_U32_ARRAY, /* a Uint32Array; out: val_view_t* (data: uint32_t*, len: elements) */
  VAL_FUNCTION,  /* out: napi_value* (NULL when optional and absent) */
  VAL_IGNORED,   /* read past: an argument a variant of the call does not use */
} val_kind_t;

enum {
  VAL_REQUIRED = 1, /* undefined is an error */
  VAL_NULLABLE = 2, /* VAL_U32_ARRAY: null or undefined gives an empty view */
};

/* A typed array (or Buffer) as C sees it, and the JS value behind it. */
typedef struct {
  napi_value v;
  void *data;
  size_t len;
} val_view_t;

typedef struct {
  const char *name;
  val_kind_t kind;
  unsigned flags;
  uint32_t max;     /* VAL_U32 */
  const char *hint; /* appended to a type error (a callback's signature, " or Uint8Array") */
  void *out;
} val_spec_t;

#define VAL_COUNT(table) (sizeof(table) / sizeof((table)[0]))

/* The properties of an options object, in table order; errors say
 * "fn: option 'name' must be …". False with an exception pending. */
bool read_options(napi_env env, const char *fn, napi_value obj, const val_spec_t *specs, size_t n);
/* A call's first n arguments (missing ones are undefined); errors say
 * "fn: name must be …". With `in_range` non-NULL, a VAL_U32 that is a number
 * but not an integer in 0..max is no exception: it reads as 0 and clears
 * *in_range (the offload functions answer such calls with a return code). */
bool read_args(napi_env env, const char *fn, const napi_value *argv, size_t argc, const val_spec_t *specs, size_t n,
               bool *in_range);
/* napi_get_cb_info for a function of `want` arguments; TypeError ERR_MISSING_ARGS
 * when fewer were passed. */
bool get_args(napi_env env, napi_callback_info info, const char *fn, size_t want, napi_value *argv);
/* The one options object of fn(options), or NULL with a TypeError thrown. */
napi_value options_arg(napi_env env, napi_callback_info info, const char *fn);
/* A count argument already read: at most `limit` (the shortest of the arrays
 * `arrays` names); RangeError otherwise. */
bool check_count(napi_env env, const char *fn, uint32_t count, size_t limit, const char *arrays);

/* The arguments of a batch write, (pool, offsets, lengths, count): TAP write(), AF_XDP
 * send(). count is checked against both arrays. False with an exception pending. */
typedef struct {
  val_view_t pool, offsets, lengths;
  uint32_t count;
} frame_batch_t;
bool read_frame_batch(napi_env env, const char *fn, const napi_value *argv, size_t argc, frame_batch_t *b);

/* A receive region of `slots` slots of `slot_size` bytes at `rx_base` in a pool
 * of `pool_len` bytes, described to the kernel by Uint32 offsets: slots >= 1,
 * inside the pool, ending below 4 GiB, and each of the n arrays (named in
 * `names`) holding an entry per slot. RangeError otherwise. */
bool check_rx_region(napi_env env, const char *fn, size_t pool_len, uint32_t rx_base, uint32_t slots,
                     uint32_t slot_size, const val_view_t *arrays, const char *const *names, size_t n);

/* ------------------------------------------------------------------------ */
/* Making values                                                            */

typedef struct {
  const char *name;
  napi_value v;
} named_value_t;

/* Defines read-only enumerable properties on obj (at most 8); false on failure,
 * also when a value is NULL (its napi_create_* failed); nothing thrown. */
bool define_values(napi_env env, napi_value obj, const named_value_t *vals, size_t n);

/* A function the addon exports, by its JavaScript name. */
typedef struct {
  const char *name;
  napi_callback fn;
} named_fn_t;

/* Defines the functions of `fns` (at most 8) as enumerable properties of exports;
 * false with "tapnet: cannot export <what>" thrown when N-API refuses. */
bool export_functions(napi_env env, napi_value exports, const named_fn_t *fns, size_t n, const char *what);

/* A call's number result (send counts, offload results); NULL with an exception
 * pending if N-API cannot make it. */
napi_value ret_int(napi_env env, int v);
napi_value ret_u32(napi_env env, uint32_t v);

#endif
