/*
 * Busy polling after a batch (a node's `busyPoll` setting, off by default).
 *
 * A node that sleeps in epoll_wait between frames pays, for the first frame after a
 * pause, the scheduler's wake-up and a pass over cold caches: on this project's
 * 2-vCPU machine that is most of the round-trip time a node adds (docs/benchmarks.md,
 * "Latency per crossing"). With a window of W microseconds, every batch any handle of
 * this environment delivers (pollfd_call: TAPs, UDP and raw sockets, io_uring rings;
 * not libpcap ports, whose frames come through the `cap` module)
 * keeps a uv_idle_t active until W has passed since the last one. An active idle handle
 * makes libuv poll with a zero timeout, so the loop keeps turning (epoll_wait returns at
 * once, timers and the control socket are served as usual) and a frame that arrives
 * within the window is read without a wake-up, by a process whose caches are warm. When
 * the window ends the idle handle stops and the loop sleeps again: an idle node costs
 * nothing, a node under steady load never sleeps anyway, and traffic with gaps costs at
 * most W of CPU per gap.
 *
 * Like Linux's net.core.busy_poll (microseconds a socket read may spin), it trades CPU
 * for latency; unlike it, one window serves every port of the process.
 *
 * Lifetime: the idle handle belongs to the environment's loop. It is unreferenced (it
 * never keeps the loop alive), and an async cleanup hook closes it at environment
 * teardown; its close callback frees it and removes the hook (the rules in pollfd.h).
 */
#include <sched.h>
#include <stdlib.h>

#include <uv.h>

#include "common.h"

struct busypoll_s {
  uv_idle_t idle; /* first member: the uv_handle_t* in callbacks is the struct */
  napi_async_cleanup_hook_handle hook;
  /* Where the environment's data points at this struct (cleared when either goes first). */
  busypoll_t **slot;
  uint64_t window_ns;
  uint64_t until_ns; /* uv_hrtime() at which polling stops */
  bool active;
  bool closing;
  uint64_t windows; /* windows opened: batches that found the loop about to sleep */
  uint64_t turns;   /* loop turns spent polling (epoll_wait with a zero timeout) */
};

static void on_idle(uv_idle_t *h) {
  busypoll_t *bp = (busypoll_t *)h;
  bp->turns++;
  if (uv_hrtime() >= bp->until_ns) {
    uv_idle_stop(h);
    bp->active = false;
    return;
  }
  /* Polite polling: another runnable thread on this CPU (the host that sends, the
   * receiving stack's process, another node) runs first; with none, this returns at
   * once and the loop turns again. */
  sched_yield();
}

static void on_closed(uv_handle_t *h) {
  busypoll_t *bp = (busypoll_t *)h;
  if (bp->slot != NULL) *bp->slot = NULL;
  if (bp->hook != NULL) napi_remove_async_cleanup_hook(bp->hook);
  free(bp);
}

static void close_busypoll(busypoll_t *bp) {
  if (bp->closing) return;
  bp->closing = true;
  bp->active = false;
  uv_idle_stop(&bp->idle);
  uv_close((uv_handle_t *)&bp->idle, on_closed);
}

static void cleanup_hook(napi_async_cleanup_hook_handle handle, void *arg) {
  (void)handle;
  close_busypoll(arg);
}

void busypoll_release(addon_data_t *ad) {
  /* The environment's data goes first: the handle is closed by its hook. */
  if (ad->busy != NULL) ad->busy->slot = NULL;
  ad->busy = NULL;
}

void busypoll_kick(napi_env env) {
  addon_data_t *ad = NULL;
  if (napi_get_instance_data(env, (void **)&ad) != napi_ok || ad == NULL) return;
  busypoll_t *bp = ad->busy;
  if (bp == NULL || bp->window_ns == 0 || bp->closing) return;
  bp->until_ns = uv_hrtime() + bp->window_ns;
  if (!bp->active) {
    if (uv_idle_start(&bp->idle, on_idle) == 0) {
      bp->active = true;
      bp->windows++;
    }
  }
}

/* Longest window: a second of spinning per batch is no longer "a short while". */
#define BUSYPOLL_MAX_US 1000000

/* setBusyPoll(us): the window in microseconds, 0 to stop (the counters stay). */
static napi_value js_set_busy_poll(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, "setBusyPoll", 1, argv)) return NULL;
  uint32_t us = 0;
  const val_spec_t args[] = {{"microseconds", VAL_U32, VAL_REQUIRED, BUSYPOLL_MAX_US, NULL, &us}};
  if (!read_args(env, "setBusyPoll", argv, 1, args, 1, NULL)) return NULL;
  addon_data_t *ad = NULL;
  NAPI_OK_OR_THROW(napi_get_instance_data(env, (void **)&ad), "instance data");
  busypoll_t *bp = ad->busy;
  if (bp == NULL && us != 0) {
    uv_loop_t *loop = NULL;
    NAPI_OK_OR_THROW(napi_get_uv_event_loop(env, &loop), "event loop");
    bp = calloc(1, sizeof *bp);
    if (bp == NULL) {
      throw_err(env, ERR_PLAIN, "ENOMEM", "setBusyPoll: out of memory", 0, NULL);
      return NULL;
    }
    int rc = uv_idle_init(loop, &bp->idle);
    if (rc < 0) {
      free(bp);
      throw_sys(env, -rc, "uv_idle_init", "setBusyPoll: cannot make the idle handle%s", "");
      return NULL;
    }
    uv_unref((uv_handle_t *)&bp->idle);
    if (napi_add_async_cleanup_hook(env, cleanup_hook, bp, &bp->hook) != napi_ok) {
      bp->hook = NULL;
      close_busypoll(bp);
      throw_err(env, ERR_PLAIN, "ERR_TAPNET_NAPI", "setBusyPoll: cannot register the cleanup hook", 0, NULL);
      return NULL;
    }
    bp->slot = &ad->busy;
    ad->busy = bp;
  }
  if (bp == NULL) return NULL;
  bp->window_ns = (uint64_t)us * 1000;
  if (us == 0 && bp->active) {
    uv_idle_stop(&bp->idle);
    bp->active = false;
  }
  return NULL;
}

/* busyPollStats(): { windowUs, windows, turns, polling } (zeros when never set). */
static napi_value js_busy_poll_stats(napi_env env, napi_callback_info info) {
  (void)info;
  addon_data_t *ad = NULL;
  NAPI_OK_OR_THROW(napi_get_instance_data(env, (void **)&ad), "instance data");
  const busypoll_t *bp = ad->busy;
  named_value_t vals[] = {{"windowUs", NULL}, {"windows", NULL}, {"turns", NULL}, {"polling", NULL}};
  napi_value obj;
  NAPI_OK_OR_THROW(napi_create_object(env, &obj), "object");
  NAPI_OK_OR_THROW(napi_create_double(env, bp ? (double)(bp->window_ns / 1000) : 0, &vals[0].v), "windowUs");
  NAPI_OK_OR_THROW(napi_create_double(env, bp ? (double)bp->windows : 0, &vals[1].v), "windows");
  NAPI_OK_OR_THROW(napi_create_double(env, bp ? (double)bp->turns : 0, &vals[2].v), "turns");
  NAPI_OK_OR_THROW(napi_get_boolean(env, bp != NULL && bp->active, &vals[3].v), "polling");
  NAPI_OK_OR_THROW(define_values(env, obj, vals, 4) ? napi_ok : napi_generic_failure, "properties");
  return obj;
}

bool busypoll_init(napi_env env, napi_value exports) {
  static const named_fn_t fns[] = {
      {"setBusyPoll", js_set_busy_poll},
      {"busyPollStats", js_busy_poll_stats},
  };
  return export_functions(env, exports, fns, VAL_COUNT(fns), "setBusyPoll and busyPollStats");
}
