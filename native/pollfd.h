/*
 * The handle every part of the addon that watches one fd with uv_poll is made of
 * (TapHandle in tap.c; UdpHandle and RawHandle in udp.c): its lifecycle, its JS
 * class, its counters (one stats shape for every kind) and the values it keeps
 * referenced while open (the pool, the caller's arrays, onBatch).
 *
 * Why a poll and not fs streams or uv_queue_work: each blocked read would hold a
 * libuv thread-pool thread, and a JavaScript call per frame costs microseconds; one
 * wake-up is one batch of frames and one call.
 *
 * Lifetime rules:
 *   - the JS handle object owns the handle through napi_wrap; the finalizer
 *     closes it, so a forgotten handle does not leak its fd (or its interface,
 *     or its bound port);
 *   - while polling, the handle is strongly referenced (self_ref), like an
 *     active socket: frames keep arriving, so it must not be collected under
 *     our feet; weakly otherwise;
 *   - the uv_poll_t lives in a separately allocated box, closed with uv_close
 *     and freed in its close callback, so the handle can go away independently
 *     of the loop;
 *   - each box registers an *async* env cleanup hook, removed only by the
 *     poll's close callback. Node then keeps spinning the loop at environment
 *     teardown until that callback has run. This matters for workers: Node
 *     dlcloses a worker's addons after teardown, and a close callback still
 *     queued on the worker's loop would jump into unmapped code (a plain
 *     napi_add_env_cleanup_hook crashed in uv__finish_close).
 *
 * A handle type embeds a pollfd_t as its FIRST member and is allocated as one
 * block with malloc/calloc: the wrap's finalizer frees the pollfd_t pointer.
 * Its kind (pollfd_kind_t) gives the kind-specific names, the receive callback
 * and the release of what the kind allocated.
 */
#ifndef TAPNET_POLLFD_H
#define TAPNET_POLLFD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <node_api.h>
#include <uv.h>

#include "napi_util.h"

typedef struct pollfd_s pollfd_t;
typedef struct pollfd_box_s pollfd_box_t; /* the uv_poll_t and the cleanup hook */

typedef struct {
  const char *class_name;     /* "TapHandle": the JS class, and ERR_INVALID_THIS messages */
  const char *what;           /* "TAP", "UDP socket": names the handle in messages */
  const char *closed_code;    /* the code of the error a method of a closed handle throws */
  const char *rx_dropped_key; /* the stats key of rx_dropped: rxOversize, rxTruncated */
  const char *start_hint;     /* start() without onBatch: how to open it to receive */
  uv_poll_cb on_readable;
  /* Kind-specific release (arrays) at close, after the poll and the fd are
   * closed and the kept references deleted; from_hook: during environment
   * teardown. NULL: nothing to release. */
  void (*on_close)(pollfd_t *p, bool from_hook);
} pollfd_kind_t;

/* What every handle counts; stats() returns these under the same keys for every
 * kind (rx_dropped under the kind's rx_dropped_key). */
typedef struct {
  uint64_t rx_errors;   /* receive failures other than EAGAIN, and poll errors */
  uint64_t rx_dropped;  /* received but did not fit a slot (or empty) */
  uint64_t rx_messages; /* frames, datagrams or packets delivered through onBatch */
  uint64_t tx_errors;   /* messages the device or the kernel refused */
  uint64_t wakeups;     /* uv_poll wake-ups */
  uint64_t batches;     /* onBatch calls (wake-ups that delivered something) */
  int last_tx_errno;    /* errno of the last refused message, 0 if none yet */
} pollfd_stats_t;

#define POLLFD_KEEP_MAX 8

struct pollfd_s {
  const pollfd_kind_t *kind;
  napi_env env;
  int fd;
  int watch_fd; /* the fd uv_poll watches when it is not `fd` (an io_uring's eventfd); -1: fd */
  bool closed;
  bool polling;
  pollfd_box_t *box;            /* NULL until watched, and again once closed */
  napi_ref self_ref;            /* weak while stopped, strong while polling */
  napi_async_context async_ctx; /* for napi_make_callback */
  napi_ref cb_ref;              /* onBatch; NULL for a send-only handle */
  napi_ref keep[POLLFD_KEEP_MAX];
  size_t n_keep;
  pollfd_stats_t stats;
  char name[48]; /* the interface or the address, for messages */
};

/* Sets up a fresh (zeroed) pollfd_t: not yet watching anything. */
void pollfd_init(pollfd_t *p, napi_env env, const pollfd_kind_t *kind);

/*
 * Turns p, with its open fd, into a new instance of the class `ctor_ref`:
 * watches fd on the env's loop, wraps p, keeps `keep` (the pool, the arrays:
 * NULL entries skipped) and `cb` (onBatch, may be NULL) referenced until close,
 * and defines `props` on the object. Returns it, or NULL with an exception
 * pending (`fn` names the call) and the fd closed, p released (before the wrap:
 * freed here; after: closed, and freed by GC).
 */
napi_value pollfd_open(napi_env env, pollfd_t *p, int fd, napi_ref ctor_ref, const char *fn, const napi_value *keep,
                       size_t n_keep, napi_value cb, const named_value_t *props, size_t n_props);

/* Defines the class of a kind: start, stop, `io_name` (write or send), stats,
 * close and the fd getter, each checking `this` against the kind. */
bool pollfd_define_class(napi_env env, const pollfd_kind_t *kind, const char *io_name, napi_callback io,
                         napi_ref *ctor_ref);

/* The start of a kind's on_readable: the handle of the poll, counted as a
 * wake-up, or NULL when there is nothing to read (the handle is closed, or the
 * poll failed: counted in rx_errors; libuv has stopped the watcher then). */
pollfd_t *pollfd_wakeup(uv_poll_t *h, int status);

/* Closes the poll, the fd, the kept references and (through kind->on_close)
 * the rest; idempotent. */
void pollfd_close(pollfd_t *p, bool from_hook);

/* Calls onBatch with the handle as `this` and argc uint32 arguments under the
 * handle's async context; an exception it throws is raised as uncaught. The
 * handle may be closed when this returns. */
void pollfd_call(pollfd_t *p, size_t argc, const uint32_t *args);

/* The handle of a method call: napi_get_cb_info into argc/argv, then the
 * wrapped pollfd_t of `this`, which must be of the kind given as the method's
 * data (ERR_INVALID_THIS otherwise) and, with need_open, not closed (the
 * kind's closed error). NULL with an exception pending on failure. */
pollfd_t *pollfd_this(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv, bool need_open,
                      const char *method);

#endif
