/*
 * The handle lifecycle shared by tap.c and udp.c: see pollfd.h, and the
 * lifetime rules at the top of tap.c for why each piece exists.
 */
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
}

pollfd_box_t *pollfd_box_new(void) { return calloc(1, sizeof(pollfd_box_t)); }

void pollfd_box_free(pollfd_box_t *box) { free(box); }

int pollfd_watch(pollfd_t *p, pollfd_box_t *box, uv_loop_t *loop, int fd) {
  int rc = uv_poll_init(loop, &box->poll, fd);
  if (rc < 0) return rc;
  p->fd = fd;
  box->owner = p;
  p->box = box;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Closing                                                                  */

static void on_poll_closed(uv_handle_t *h) {
  pollfd_box_t *box = (pollfd_box_t *)h;
  /* Lets environment teardown proceed (see the lifetime rules in tap.c). */
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

bool pollfd_wrap(napi_env env, pollfd_t *p, napi_value ctor, napi_value *obj) {
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

bool pollfd_setup(napi_env env, pollfd_t *p, napi_value obj, const char *resource) {
  napi_value res_name;
  return napi_create_reference(env, obj, 0, &p->self_ref) == napi_ok &&
         napi_create_string_utf8(env, resource, NAPI_AUTO_LENGTH, &res_name) == napi_ok &&
         napi_async_init(env, obj, res_name, &p->async_ctx) == napi_ok;
}

/* ------------------------------------------------------------------------ */
/* Polling                                                                  */

bool pollfd_start(napi_env env, pollfd_t *p, uv_poll_cb cb, const char *fmt, const char *name) {
  if (p->polling) return true;
  int rc = uv_poll_start(&p->box->poll, UV_READABLE, cb);
  if (rc < 0) {
    throw_sys(env, -rc, "uv_poll_start", fmt, name);
    return false;
  }
  p->polling = true;
  napi_reference_ref(env, p->self_ref, NULL);
  return true;
}

void pollfd_stop(pollfd_t *p) {
  if (!p->polling) return;
  uv_poll_stop(&p->box->poll);
  p->polling = false;
  napi_reference_unref(p->env, p->self_ref, NULL);
}

void pollfd_lost(pollfd_t *p) {
  if (!p->polling) return;
  p->polling = false;
  napi_reference_unref(p->env, p->self_ref, NULL);
}

pollfd_t *pollfd_of(uv_poll_t *h) { return ((pollfd_box_t *)h)->owner; }

void pollfd_call(pollfd_t *p, napi_ref cb, size_t argc, const uint32_t *args) {
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value recv = NULL, fn = NULL, argv[4], result;
  bool ok = argc <= sizeof argv / sizeof argv[0] && napi_get_reference_value(env, p->self_ref, &recv) == napi_ok &&
            recv != NULL && napi_get_reference_value(env, cb, &fn) == napi_ok && fn != NULL;
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
    throw_err(env, ERR_TYPE, "ERR_INVALID_THIS", kind->not_this_msg, 0, NULL);
    return NULL;
  }
  if (need_open && p->closed) {
    kind->throw_closed(env, p, method);
    return NULL;
  }
  return p;
}

napi_value pollfd_js_stop(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  pollfd_t *p = pollfd_this(env, info, &argc, NULL, false, "stop");
  if (p != NULL) pollfd_stop(p);
  return NULL;
}

napi_value pollfd_js_close(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  pollfd_t *p = pollfd_this(env, info, &argc, NULL, false, "close");
  if (p != NULL) pollfd_close(p, false);
  return NULL;
}

napi_value pollfd_js_get_fd(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  pollfd_t *p = pollfd_this(env, info, &argc, NULL, false, "fd");
  if (p == NULL) return NULL;
  napi_value v;
  napi_create_int32(env, p->fd, &v);
  return v;
}

napi_value pollfd_js_ctor(napi_env env, napi_callback_info info) {
  napi_value self;
  napi_get_cb_info(env, info, NULL, NULL, &self, NULL);
  return self;
}
