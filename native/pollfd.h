/*
 * The lifecycle shared by every handle of the addon that watches one fd with
 * uv_poll (TapHandle in tap.c; UdpHandle and RawHandle in udp.c). The lifetime
 * rules it implements are explained at the top of tap.c:
 *   - the JS handle object owns the handle through napi_wrap; the finalizer
 *     closes it, so a forgotten handle does not leak its fd;
 *   - while polling, the handle is strongly referenced (self_ref), weakly
 *     otherwise;
 *   - the uv_poll_t lives in a separately allocated box, closed with uv_close
 *     and freed in its close callback, so the handle can go away independently
 *     of the loop;
 *   - each box registers an *async* env cleanup hook, removed only by the
 *     poll's close callback, so that environment teardown (worker exit) waits
 *     until no close callback is left queued on the loop of an addon about to
 *     be dlclosed.
 *
 * A handle type embeds a pollfd_t as its FIRST member and is allocated as one
 * block with malloc/calloc: the wrap's finalizer frees the pollfd_t pointer.
 * Its kind (pollfd_kind_t) gives the kind-specific messages and the freeing.
 */
#ifndef TAPNET_POLLFD_H
#define TAPNET_POLLFD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <node_api.h>
#include <uv.h>

typedef struct pollfd_s pollfd_t;
typedef struct pollfd_box_s pollfd_box_t; /* the uv_poll_t and the cleanup hook */

typedef struct {
  /* The message of ERR_INVALID_THIS. */
  const char *not_this_msg;
  /* Throws the kind's error for `method` called on a closed handle. */
  void (*throw_closed)(napi_env env, pollfd_t *p, const char *method);
  /* Kind-specific release (references, arrays) at close, after the poll is
   * closed and the fd too; from_hook: during environment teardown. */
  void (*on_close)(pollfd_t *p, bool from_hook);
} pollfd_kind_t;

struct pollfd_s {
  const pollfd_kind_t *kind;
  napi_env env;
  int fd;
  bool closed;
  bool polling;
  pollfd_box_t *box;            /* NULL until watched, and again once closed */
  napi_ref self_ref;            /* weak while stopped, strong while polling */
  napi_async_context async_ctx; /* for napi_make_callback */
};

/* Sets up a fresh (zeroed) pollfd_t: not yet watching anything. */
void pollfd_init(pollfd_t *p, napi_env env, const pollfd_kind_t *kind);

/* A poll box, or NULL when out of memory. pollfd_box_free is for a box that
 * was never handed to a successful pollfd_watch. */
pollfd_box_t *pollfd_box_new(void);
void pollfd_box_free(pollfd_box_t *box);

/* uv_poll_init of `fd` on the env's loop with `box`; 0, or a negative uv
 * error with nothing changed (the caller still owns box and fd). On success
 * p owns both: pollfd_close() closes them. */
int pollfd_watch(pollfd_t *p, pollfd_box_t *box, uv_loop_t *loop, int fd);

/* Registers the async cleanup hook, makes a new instance of `ctor` and wraps
 * p in it (the finalizer closes and frees p). False on failure, with p closed
 * and freed and nothing thrown. */
bool pollfd_wrap(napi_env env, pollfd_t *p, napi_value ctor, napi_value *obj);

/* The (weak) self reference and the async context named `resource`; false on
 * failure (nothing thrown; the caller closes p and lets GC free it). */
bool pollfd_setup(napi_env env, pollfd_t *p, napi_value obj, const char *resource);

/* Starts watching for readability (if not already) and references the
 * handle strongly; on failure throws throw_sys(..., "uv_poll_start", fmt, name)
 * and returns false. */
bool pollfd_start(napi_env env, pollfd_t *p, uv_poll_cb cb, const char *fmt, const char *name);
/* Stops watching (if watching); the handle becomes weak again. */
void pollfd_stop(pollfd_t *p);
/* libuv stopped the watcher itself (status < 0): just mark it stopped. */
void pollfd_lost(pollfd_t *p);

/* Closes the poll, the fd and (through kind->on_close) the rest; idempotent. */
void pollfd_close(pollfd_t *p, bool from_hook);

/* The handle of a poll callback, or NULL once it is closed. */
pollfd_t *pollfd_of(uv_poll_t *h);

/* Calls `cb` with the handle as `this` and argc uint32 arguments under the
 * handle's async context; an exception it throws is raised as uncaught. The
 * handle may be closed when this returns. */
void pollfd_call(pollfd_t *p, napi_ref cb, size_t argc, const uint32_t *args);

/* The handle of a method call: napi_get_cb_info into argc/argv, then the
 * wrapped pollfd_t of `this`, which must be of the kind given as the method's
 * data (ERR_INVALID_THIS otherwise) and, with need_open, not closed (the
 * kind's closed error). NULL with an exception pending on failure. */
pollfd_t *pollfd_this(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv, bool need_open,
                      const char *method);

/* Methods and getters every kind shares; define them with the kind as data. */
napi_value pollfd_js_stop(napi_env env, napi_callback_info info);
napi_value pollfd_js_close(napi_env env, napi_callback_info info);
napi_value pollfd_js_get_fd(napi_env env, napi_callback_info info);
napi_value pollfd_js_ctor(napi_env env, napi_callback_info info);

#endif
