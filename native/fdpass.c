/*
 * Handing open fds from one process to another over a Unix socket (SCM_RIGHTS,
 * unix(7)), which Node.js cannot do with a file that is not a socket: the
 * supervisor (src/lab/supervisor.ts) gives a parked standby node (src/node/standby.ts)
 * the TAPs it attached to in the hosts' namespaces.
 *
 *   fdPair()                 -> [a, b]: a SOCK_SEQPACKET socketpair, both close-on-exec
 *                               (a child gets its end through a stdio slot, which dup2 keeps)
 *   fdSend(sock, text, fds)  sends `text` (at most FDPASS_TEXT_MAX bytes) and the fds as one
 *                               message; throws on failure (EPIPE: the other end is gone)
 *   fdRecv(sock)             -> { text, fds } | null: blocks until one message comes (null:
 *                               the other end closed); the fds arrive close-on-exec
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

/* More TAP hosts and pod ports than one node ever has in a lab. */
#define FDPASS_MAX_FDS 250
#define FDPASS_TEXT_MAX 16384

static napi_value js_fd_pair(napi_env env, napi_callback_info info) {
  (void)info;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
    throw_sys(env, errno, "socketpair", "fdPair: cannot make a socket pair%s", "");
    return NULL;
  }
  napi_value arr, a, b;
  if (napi_create_array_with_length(env, 2, &arr) != napi_ok || napi_create_int32(env, sv[0], &a) != napi_ok ||
      napi_create_int32(env, sv[1], &b) != napi_ok || napi_set_element(env, arr, 0, a) != napi_ok ||
      napi_set_element(env, arr, 1, b) != napi_ok) {
    close(sv[0]);
    close(sv[1]);
    throw_err(env, ERR_PLAIN, "ERR_TAPNET_NAPI", "fdPair: internal N-API failure", 0, NULL);
    return NULL;
  }
  return arr;
}

static bool get_int(napi_env env, napi_value v, const char *what, int32_t *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number || napi_get_value_int32(env, v, out) != napi_ok || *out < 0) {
    throw_fmt(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", "%s must be a file descriptor (an integer >= 0)", what);
    return false;
  }
  return true;
}

static napi_value js_fd_send(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t sock;
  if (!get_args(env, info, "fdSend", 3, argv) || !get_int(env, argv[0], "fdSend: sock", &sock)) return NULL;
  char text[FDPASS_TEXT_MAX + 1];
  size_t len = 0;
  if (napi_get_value_string_utf8(env, argv[1], text, sizeof text, &len) != napi_ok) {
    throw_fmt(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", "fdSend: text must be a string");
    return NULL;
  }
  if (len >= FDPASS_TEXT_MAX) {
    throw_fmt(env, ERR_RANGE, "ERR_OUT_OF_RANGE", "fdSend: text longer than %d bytes", FDPASS_TEXT_MAX - 1);
    return NULL;
  }
  bool is_array = false;
  uint32_t n = 0;
  if (napi_is_array(env, argv[2], &is_array) != napi_ok || !is_array || napi_get_array_length(env, argv[2], &n) != napi_ok) {
    throw_fmt(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", "fdSend: fds must be an array of file descriptors");
    return NULL;
  }
  if (n > FDPASS_MAX_FDS) {
    throw_fmt(env, ERR_RANGE, "ERR_OUT_OF_RANGE", "fdSend: at most %d fds in one message (got %u)", FDPASS_MAX_FDS, n);
    return NULL;
  }
  int fds[FDPASS_MAX_FDS];
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    NAPI_OK_OR_THROW(napi_get_element(env, argv[2], i, &v), "fdSend fds");
    if (!get_int(env, v, "fdSend: each of fds", &fds[i])) return NULL;
  }
  /* At least one byte of data, so that the receiver can tell a message from the end. */
  char one = '\n';
  struct iovec iov = {.iov_base = len ? text : &one, .iov_len = len ? len : 1};
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int) * FDPASS_MAX_FDS)];
  } ctl;
  memset(&ctl, 0, sizeof ctl);
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (n > 0) {
    msg.msg_control = ctl.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * n);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
  }
  ssize_t r;
  do r = sendmsg(sock, &msg, MSG_NOSIGNAL);
  while (r < 0 && errno == EINTR);
  if (r < 0) throw_sys(env, errno, "sendmsg", "fdSend: cannot send the fds%s", "");
  return NULL;
}

static napi_value js_fd_recv(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t sock;
  if (!get_args(env, info, "fdRecv", 1, argv) || !get_int(env, argv[0], "fdRecv: sock", &sock)) return NULL;
  char *text = malloc(FDPASS_TEXT_MAX);
  if (text == NULL) {
    napi_throw_error(env, "ENOMEM", "fdRecv: out of memory");
    return NULL;
  }
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int) * FDPASS_MAX_FDS)];
  } ctl;
  struct iovec iov = {.iov_base = text, .iov_len = FDPASS_TEXT_MAX};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
  ssize_t r;
  do r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    free(text);
    throw_sys(env, errno, "recvmsg", "fdRecv: cannot receive%s", "");
    return NULL;
  }
  int fds[FDPASS_MAX_FDS];
  size_t n = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    if (n + k > FDPASS_MAX_FDS) k = FDPASS_MAX_FDS - n;
    memcpy(fds + n, CMSG_DATA(c), k * sizeof(int));
    n += k;
  }
  if (r == 0 || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
    for (size_t i = 0; i < n; i++) close(fds[i]);
    free(text);
    if (r == 0) {
      napi_value nul;
      NAPI_OK_OR_THROW(napi_get_null(env, &nul), "fdRecv null");
      return nul;
    }
    throw_fmt(env, ERR_RANGE, "ERR_OUT_OF_RANGE", "fdRecv: the message or its fds did not fit (truncated)");
    return NULL;
  }
  napi_value out, str, arr;
  bool ok = napi_create_object(env, &out) == napi_ok && napi_create_string_utf8(env, text, (size_t)r, &str) == napi_ok &&
            napi_set_named_property(env, out, "text", str) == napi_ok && napi_create_array_with_length(env, n, &arr) == napi_ok;
  for (size_t i = 0; ok && i < n; i++) {
    napi_value v;
    ok = napi_create_int32(env, fds[i], &v) == napi_ok && napi_set_element(env, arr, (uint32_t)i, v) == napi_ok;
  }
  ok = ok && napi_set_named_property(env, out, "fds", arr) == napi_ok;
  free(text);
  if (!ok) {
    for (size_t i = 0; i < n; i++) close(fds[i]);
    throw_err(env, ERR_PLAIN, "ERR_TAPNET_NAPI", "fdRecv: internal N-API failure", 0, NULL);
    return NULL;
  }
  return out;
}

bool fdpass_init(napi_env env, napi_value exports) {
  static const named_fn_t fns[] = {
      {"fdPair", js_fd_pair},
      {"fdSend", js_fd_send},
      {"fdRecv", js_fd_recv},
  };
  return export_functions(env, exports, fns, VAL_COUNT(fns), "fdPair, fdSend and fdRecv");
}
