/*
 * The handle every fd-watching part of the addon is made of: see pollfd.h for
 * what each piece is for (the lifetime rules).
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common.h"
#include "pollfd.h"

struct pollfd_box_s {
  uv_poll_t poll; /* first member: the uv_handle_t* in callbacks is the box */
  napi_async_cleanup_hook_handle hook;
  pollfd_t *owner; /* NULL once the handle side is closed */
};

void pollfd_init(pollfd_t *p, napi_env env, const pollfd_kind_t *kind) {
  p->kind = kind;
  p->env = env;
  p->fd = -1;
  p->watch_fd = -1;
}

/* uv_poll_init of fd with a new box: 0 (p owns both), or a negative uv error
 * (nothing changed). */
static int watch(pollfd_t *p, uv_loop_t *loop, int fd) {
  pollfd_box_t *box = calloc(1, sizeof *box);
  if (box == NULL) return UV_ENOMEM;
  int rc = uv_poll_init(loop, &box->poll, p->watch_fd >= 0 ? p->watch_fd : fd);
  if (rc < 0) {
    free(box);
    return rc;
  }
  p->fd = fd;
  box->owner = p;
  p->box = box;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Closing                                                                  */

static void on_poll_closed(uv_handle_t *h) {
  pollfd_box_t *box = (pollfd_box_t *)h;
  /* Lets environment teardown proceed (the lifetime rules in pollfd.h). */
  if (box->hook != NULL) napi_remove_async_cleanup_hook(box->hook);
  free(box);
}

void pollfd_close(pollfd_t *p, bool from_hook) {
  if (p->closed) return;
  napi_env env = p->env;
  p->closed = true;
  if (p->box != NULL) {
    uv_poll_stop(&p->box->poll);
    p->box->owner = NULL;
    uv_close((uv_handle_t *)&p->box->poll, on_poll_closed);
    p->box = NULL;
  }
  if (p->polling) {
    p->polling = false;
    napi_reference_unref(env, p->self_ref, NULL);
  }
  if (p->fd >= 0) {
    close(p->fd);
    p->fd = -1;
  }
  for (size_t i = 0; i < p->n_keep; i++) napi_delete_reference(env, p->keep[i]);
  p->n_keep = 0;
  if (p->cb_ref != NULL) {
    napi_delete_reference(env, p->cb_ref);
    p->cb_ref = NULL;
  }
  if (p->kind->on_close != NULL) p->kind->on_close(p, from_hook);
  if (p->async_ctx != NULL) {
    /* During environment teardown async hooks may no longer be usable. */
    if (!from_hook) napi_async_destroy(env, p->async_ctx);
    p->async_ctx = NULL;
  }
}

/* Environment teardown (process end, worker exit). If the handle is already
 * closed, its poll's close callback is pending and will remove the hook. */
static void async_cleanup_hook(napi_async_cleanup_hook_handle handle, void *arg) {
  (void)handle;
  pollfd_box_t *box = arg;
  if (box->owner != NULL) pollfd_close(box->owner, true);
}

static void pollfd_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  pollfd_t *p = data;
  pollfd_close(p, false);
  if (p->self_ref != NULL) napi_delete_reference(env, p->self_ref);
  free(p); /* the whole handle: p is its first member */
}

/* ------------------------------------------------------------------------ */
/* The handle object                                                        */

/* Wraps p in a new instance of ctor (the finalizer closes and frees p). False
 * on failure, with p closed and freed and nothing thrown. */
static bool wrap(napi_env env, pollfd_t *p, napi_value ctor, napi_value *obj) {
  /* From here on pollfd_close() undoes whatever was set up. */
  napi_status st = napi_add_async_cleanup_hook(env, async_cleanup_hook, p->box, &p->box->hook);
  if (st == napi_ok) st = napi_new_instance(env, ctor, 0, NULL, obj);
  if (st == napi_ok) st = napi_wrap(env, *obj, p, pollfd_finalize, NULL, NULL);
  if (st != napi_ok) {
    pollfd_close(p, false);
    free(p);
    return false;
  }
  return true;
}

napi_value pollfd_open(napi_env env, pollfd_t *p, int fd, napi_ref ctor_ref, const char *fn, const napi_value *keep,
                       size_t n_keep, napi_value cb, const named_value_t *props, size_t n_props) {
  napi_value ctor, obj, res_name;
  uv_loop_t *loop = NULL;
  int rc = UV_EINVAL;
  if (n_keep > POLLFD_KEEP_MAX || napi_get_reference_value(env, ctor_ref, &ctor) != napi_ok ||
      napi_get_uv_event_loop(env, &loop) != napi_ok || (rc = watch(p, loop, fd)) < 0) {
    char head[128];
    snprintf(head, sizeof head, "%s: cannot watch %s %%s", fn, p->kind->what);
    throw_sys(env, -rc, "uv_poll_init", head, p->name);
    close(fd);
    pollfd_close(p, false);
    free(p);
    return NULL;
  }
  if (!wrap(env, p, ctor, &obj)) {
    throw_fmt(env, ERR_PLAIN, "ERR_TAPNET_NAPI", "%s: cannot create the handle object", fn);
    return NULL;
  }
  /* The wrap owns p now: on any failure below, close it and let GC free it. */
  bool ok = napi_create_reference(env, obj, 0, &p->self_ref) == napi_ok &&
            napi_create_string_utf8(env, p->kind->class_name, NAPI_AUTO_LENGTH, &res_name) == napi_ok &&
            napi_async_init(env, obj, res_name, &p->async_ctx) == napi_ok;
  for (size_t i = 0; ok && i < n_keep; i++) {
    if (keep[i] != NULL) ok = napi_create_reference(env, keep[i], 1, &p->keep[p->n_keep++]) == napi_ok;
  }
  ok = ok && (cb == NULL || napi_create_reference(env, cb, 1, &p->cb_ref) == napi_ok);
  ok = ok && define_values(env, obj, props, n_props);
  if (!ok) {
    pollfd_close(p, false);
    throw_fmt(env, ERR_PLAIN, "ERR_TAPNET_NAPI", "%s: cannot set up the handle object", fn);
    return NULL;
  }
  return obj;
}

/* ------------------------------------------------------------------------ */
/* Polling                                                                  */

static void unpoll(pollfd_t *p) {
  if (!p->polling) return;
  p->polling = false;
  napi_reference_unref(p->env, p->self_ref, NULL);
}

pollfd_t *pollfd_wakeup(uv_poll_t *h, int status) {
  pollfd_t *p = ((pollfd_box_t *)h)->owner;
  if (p == NULL || p->closed) return NULL;
  p->stats.wakeups++;
  if (status < 0) {
    p->stats.rx_errors++;
    unpoll(p); /* libuv has already stopped the watcher (POLLERR) */
    return NULL;
  }
  return p;
}

void pollfd_call(pollfd_t *p, size_t argc, const uint32_t *args) {
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value recv = NULL, fn = NULL, argv[4], result;
  bool ok = argc <= sizeof argv / sizeof argv[0] && napi_get_reference_value(env, p->self_ref, &recv) == napi_ok &&
            recv != NULL && napi_get_reference_value(env, p->cb_ref, &fn) == napi_ok && fn != NULL;
  for (size_t i = 0; ok && i < argc; i++) ok = napi_create_uint32(env, args[i], &argv[i]) == napi_ok;
  if (ok) {
    /* `recv` (a local) keeps the handle, and so `p`, alive for this call even
     * if JS closes and drops the handle inside the callback. */
    napi_status st = napi_make_callback(env, p->async_ctx, recv, fn, argc, argv, &result);
    if (st == napi_pending_exception) {
      /* napi_make_callback leaves the exception pending on the env; with no
       * JS frame below us nobody would see it, so raise it as uncaught. */
      napi_value exc;
      if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) napi_fatal_exception(env, exc);
    }
  }
  napi_close_handle_scope(env, scope);
  /* `p` may be closed now; it is not touched again. */
  busypoll_kick(env);
}

/* ------------------------------------------------------------------------ */
/* Shared methods                                                           */

pollfd_t *pollfd_this(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv, bool need_open,
                      const char *method) {
  napi_value self;
  void *data = NULL;
  if (napi_get_cb_info(env, info, argc, argv, &self, &data) != napi_ok) return NULL;
  const pollfd_kind_t *kind = data;
  pollfd_t *p = NULL;
  /* The kind check keeps one class's methods off another class's handles. */
  if (napi_unwrap(env, self, (void **)&p) != napi_ok || p == NULL || p->kind != kind) {
    throw_fmt(env, ERR_TYPE, "ERR_INVALID_THIS", "%s method called on an object that is not a %s", kind->class_name,
              kind->class_name);
    return NULL;
  }
  if (need_open && p->closed) {
    throw_fmt(env, ERR_PLAIN, kind->closed_code, "%s %s is closed: %s() is not possible after close()", kind->what,
              p->name, method);
    return NULL;
  }
  return p;
}

static napi_value js_start(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  pollfd_t *p = pollfd_this(env, info, &argc, NULL, true, "start");
  if (p == NULL || p->polling) return NULL;
  if (p->cb_ref == NULL) {
    throw_fmt(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", "start(): this %s was opened without onBatch; %s", p->kind->what,
              p->kind->start_hint);
    return NULL;
  }
  int rc = uv_poll_start(&p->box->poll, UV_READABLE, p->kind->on_readable);
  if (rc < 0) {
    char head[96];
    snprintf(head, sizeof head, "cannot watch %s %%s for readability", p->kind->what);
    throw_sys(env, -rc, "uv_poll_start", head, p->name);
    return NULL;
  }
  p->polling = true;
  napi_reference_ref(env, p->self_ref, NULL);
  return NULL;
}

static napi_value js_stop(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  pollfd_t *p = pollfd_this(env, info, &argc, NULL, false, "stop");
  if (p != NULL && p->polling) uv_poll_stop(&p->box->poll);
  if (p != NULL) unpoll(p); /* stopped: weak again */
  return NULL;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  pollfd_t *p = pollfd_this(env, info, &argc, NULL, false, "close");
  if (p != NULL) pollfd_close(p, false);
  return NULL;
}

static napi_value js_get_fd(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  pollfd_t *p = pollfd_this(env, info, &argc, NULL, false, "fd");
  if (p == NULL) return NULL;
  napi_value v;
  napi_create_int32(env, p->fd, &v);
  return v;
}

static napi_value js_stats(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  pollfd_t *p = pollfd_this(env, info, &argc, NULL, false, "stats");
  if (p == NULL) return NULL;
  const pollfd_stats_t *s = &p->stats;
  const struct {
    const char *k;
    double v;
  } f[] = {{"rxErrors", (double)s->rx_errors},     {p->kind->rx_dropped_key, (double)s->rx_dropped},
           {"rxMessages", (double)s->rx_messages}, {"txErrors", (double)s->tx_errors},
           {"lastTxErrno", s->last_tx_errno},      {"wakeups", (double)s->wakeups},
           {"batches", (double)s->batches}};
  napi_value obj, v;
  NAPI_OK_OR_THROW(napi_create_object(env, &obj), "create object");
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
    if (napi_create_double(env, f[i].v, &v) != napi_ok || napi_set_named_property(env, obj, f[i].k, v) != napi_ok) {
      throw_err(env, ERR_PLAIN, "ERR_TAPNET_NAPI", "stats(): cannot make the object", 0, NULL);
      return NULL;
    }
  }
  return obj;
}

static napi_value js_ctor(napi_env env, napi_callback_info info) {
  napi_value self;
  napi_get_cb_info(env, info, NULL, NULL, &self, NULL);
  return self;
}

bool pollfd_define_class(napi_env env, const pollfd_kind_t *kind, const char *io_name, napi_callback io,
                         napi_ref *ctor_ref) {
  void *k = (void *)kind; /* method data: the kind pollfd_this() checks `this` against */
  napi_property_descriptor methods[] = {
      {"start", NULL, js_start, NULL, NULL, NULL, napi_default_method, k},
      {"stop", NULL, js_stop, NULL, NULL, NULL, napi_default_method, k},
      {io_name, NULL, io, NULL, NULL, NULL, napi_default_method, k},
      {"stats", NULL, js_stats, NULL, NULL, NULL, napi_default_method, k},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default_method, k},
      {"fd", NULL, NULL, js_get_fd, NULL, NULL, napi_enumerable, k},
  };
  napi_value ctor;
  return napi_define_class(env, kind->class_name, NAPI_AUTO_LENGTH, js_ctor, NULL, sizeof methods / sizeof methods[0],
                           methods, &ctor) == napi_ok &&
         napi_create_reference(env, ctor, 1, ctor_ref) == napi_ok;
}
