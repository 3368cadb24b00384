/*
 * tapnet native addon: Linux TAP devices for a userspace dataplane.
 *
 * The only C in the project, kept deliberately thin: it opens /dev/net/tun,
 * watches the fd with uv_poll on the calling thread's loop, and on each
 * wake-up drains up to `slots` frames into a caller-provided slab, then calls
 * JavaScript once with the count. Transmit takes a whole batch in one call.
 * All policy (what to do with a frame, what a drop means) stays in TypeScript.
 *
 * Why not fs streams or uv_queue_work: each blocked read would hold a libuv
 * thread-pool thread, and a per-frame JS call costs ~3 us (see DESIGN.md).
 *
 * Lifetime rules:
 *   - The JS handle object owns a tap_t through napi_wrap; the finalizer closes
 *     the fd, so a forgotten handle does not leak its interface.
 *   - While polling, the handle is strongly referenced (like an active socket):
 *     frames keep arriving, so it must not be collected under our feet.
 *   - The uv_poll_t is a separate allocation (poll_box_t) closed with uv_close
 *     and freed in its close callback, so tap_t can go away independently of
 *     the loop.
 *   - Each box registers an *async* env cleanup hook, removed only by the
 *     poll's close callback. Node then keeps spinning the loop at environment
 *     teardown until that callback has run. This matters for workers: Node
 *     dlcloses a worker's addons after teardown, and a close callback still
 *     queued on the worker's loop would jump into unmapped code (measured:
 *     SIGSEGV in uv__finish_close with a plain napi_add_env_cleanup_hook).
 *
 * udp.c's handles follow the same rules; the code for them (fd, poll box,
 * cleanup hook, wrap, self reference, start/stop/close) is in pollfd.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/if_tun.h>

#include <node_api.h>
#include <uv.h>

#include "common.h"
#include "pollfd.h"

#define VNET_HDR_LEN 12 /* struct virtio_net_hdr_v1 (with num_buffers) */
#define ETH_HLEN_MIN 14

typedef struct {
  pollfd_t pf; /* first member (pollfd.h): env, fd, poll box, self reference */
  napi_ref pool_ref;
  napi_ref offsets_ref;
  napi_ref lengths_ref;
  napi_ref cb_ref;

  uint8_t *pool;
  size_t pool_len;
  uint32_t *offsets;
  uint32_t *lengths;
  uint32_t rx_base;
  uint32_t slots;
  uint32_t slot_size;
  uint32_t headroom;

  /* Catches the first byte beyond a slot: see on_readable. */
  uint8_t overflow_probe[16];

  uint64_t rx_oversize;
  uint64_t rx_errors;
  uint64_t tx_errors;
  uint64_t wakeups;
  uint64_t batches;

  char name[IFNAMSIZ];
} tap_t;


/* ------------------------------------------------------------------------ */
/* Errors                                                                   */

const char *errno_code(int err) {
  const char *s = strerrorname_np(err);
  return s != NULL ? s : "EUNKNOWN";
}

/* Throws an Error with `code`, and for syscall failures also `errno` (negative,
 * like Node's own system errors) and `syscall`. */
void throw_err(napi_env env, enum err_kind kind, const char *code,
                      const char *msg, int sys_errno, const char *syscall) {
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
    if (napi_create_int32(env, -sys_errno, &v) == napi_ok)
      napi_set_named_property(env, err, "errno", v);
    if (syscall != NULL && napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &v) == napi_ok)
      napi_set_named_property(env, err, "syscall", v);
  }
  napi_throw(env, err);
}

void throw_sys(napi_env env, int err, const char *syscall, const char *fmt, const char *name) {
  char msg[512];
  char head[384];
  snprintf(head, sizeof head, fmt, name);
  snprintf(msg, sizeof msg, "%s (%s: %s)", head, errno_code(err), strerror(err));
  throw_err(env, ERR_PLAIN, errno_code(err), msg, err, syscall);
}


/* ------------------------------------------------------------------------ */
/* Argument helpers (each throws and returns false on failure)              */

bool get_prop(napi_env env, napi_value obj, const char *key, napi_value *out, napi_valuetype *type) {
  if (napi_get_named_property(env, obj, key, out) != napi_ok) return false;
  if (napi_typeof(env, *out, type) != napi_ok) return false;
  return true;
}

bool get_uint_prop(napi_env env, napi_value obj, const char *key, bool required,
                          uint32_t def, uint32_t *out) {
  napi_value v;
  napi_valuetype t;
  if (!get_prop(env, obj, key, &v, &t)) return false;
  if (t == napi_undefined && !required) {
    *out = def;
    return true;
  }
  char msg[256];
  if (t != napi_number) {
    snprintf(msg, sizeof msg, "openTap: option '%s' must be a non-negative integer", key);
    throw_err(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", msg, 0, NULL);
    return false;
  }
  double d;
  napi_get_value_double(env, v, &d);
  if (!(d >= 0) || d > 4294967295.0 || d != (double)(uint64_t)d) {
    snprintf(msg, sizeof msg, "openTap: option '%s' must be an integer in 0..4294967295, got %g", key, d);
    throw_err(env, ERR_RANGE, "ERR_OUT_OF_RANGE", msg, 0, NULL);
    return false;
  }
  *out = (uint32_t)d;
  return true;
}

bool get_bool_prop(napi_env env, napi_value obj, const char *key, bool *out) {
  napi_value v;
  napi_valuetype t;
  if (!get_prop(env, obj, key, &v, &t)) return false;
  if (t == napi_undefined) {
    *out = false;
    return true;
  }
  if (t != napi_boolean) {
    char msg[256];
    snprintf(msg, sizeof msg, "openTap: option '%s' must be a boolean", key);
    throw_err(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", msg, 0, NULL);
    return false;
  }
  napi_get_value_bool(env, v, out);
  return true;
}

/* A Uint32Array (any offset into any ArrayBuffer). */
bool get_u32_array(napi_env env, napi_value v, const char *what, uint32_t **data, size_t *len) {
  bool is_ta = false;
  napi_typedarray_type type;
  void *p = NULL;
  napi_value ab;
  size_t off;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, v, &type, len, &p, &ab, &off) != napi_ok ||
      type != napi_uint32_array) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s must be a Uint32Array", what);
    throw_err(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", msg, 0, NULL);
    return false;
  }
  *data = (uint32_t *)p;
  return true;
}

/* Reads an interface name: non-empty, at most IFNAMSIZ-1 bytes, and free of
 * the characters the kernel rejects (dev_valid_name), so that EINVAL from
 * TUNSETIFF keeps a single meaning. */
static bool get_ifname(napi_env env, napi_value v, const char *fn, char out[IFNAMSIZ]) {
  napi_valuetype t;
  char msg[320];
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) {
    snprintf(msg, sizeof msg, "%s: the interface name must be a string", fn);
    throw_err(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", msg, 0, NULL);
    return false;
  }
  size_t len = 0;
  napi_get_value_string_utf8(env, v, NULL, 0, &len);
  if (len == 0) {
    snprintf(msg, sizeof msg, "%s: the interface name is empty; give a name such as 'tap0' (or a template such as 'tap%%d')", fn);
    throw_err(env, ERR_PLAIN, "ERR_INVALID_ARG_VALUE", msg, 0, NULL);
    return false;
  }
  if (len > IFNAMSIZ - 1) {
    char shown[64];
    size_t got = 0;
    napi_get_value_string_utf8(env, v, shown, sizeof shown, &got);
    snprintf(msg, sizeof msg, "%s: TAP name too long: '%s%s' has %zu characters, Linux allows at most %d",
             fn, shown, len >= sizeof shown ? "..." : "", len, IFNAMSIZ - 1);
    throw_err(env, ERR_PLAIN, "ENAMETOOLONG", msg, 0, NULL);
    return false;
  }
  size_t got = 0;
  napi_get_value_string_utf8(env, v, out, IFNAMSIZ, &got);
  out[got] = '\0';
  bool bad = strcmp(out, ".") == 0 || strcmp(out, "..") == 0 || got != len;
  for (size_t i = 0; i < got && !bad; i++) {
    unsigned char c = (unsigned char)out[i];
    if (c == '/' || c == ':' || c <= ' ' || c == 0x7f) bad = true;
  }
  if (bad) {
    snprintf(msg, sizeof msg, "%s: invalid interface name '%s': it must not be '.' or '..' nor contain '/', ':', spaces or control characters",
             fn, out);
    throw_err(env, ERR_PLAIN, "ERR_INVALID_ARG_VALUE", msg, 0, NULL);
    return false;
  }
  return true;
}

/* ------------------------------------------------------------------------ */
/* Interface information (SIOCGIF* on an AF_INET datagram socket)           */

typedef struct {
  int ifindex;
  int mtu;
  double mac;
} ifinfo_t;

/* Returns 0, or an errno with *syscall naming the failed step. */
static int query_ifinfo(const char *name, ifinfo_t *info, const char **syscall) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) {
    *syscall = "socket";
    return errno;
  }
  struct ifreq ifr;
  int err = 0;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, name, strnlen(name, IFNAMSIZ - 1));
  if (ioctl(s, SIOCGIFINDEX, &ifr) < 0) {
    err = errno;
    *syscall = "ioctl(SIOCGIFINDEX)";
    goto out;
  }
  info->ifindex = ifr.ifr_ifindex;
  if (ioctl(s, SIOCGIFMTU, &ifr) < 0) {
    err = errno;
    *syscall = "ioctl(SIOCGIFMTU)";
    goto out;
  }
  info->mtu = ifr.ifr_mtu;
  if (ioctl(s, SIOCGIFHWADDR, &ifr) < 0) {
    err = errno;
    *syscall = "ioctl(SIOCGIFHWADDR)";
    goto out;
  }
  uint64_t mac = 0;
  for (int i = 0; i < 6; i++) mac = (mac << 8) | (unsigned char)ifr.ifr_hwaddr.sa_data[i];
  info->mac = (double)mac;
out:
  close(s);
  return err;
}

static napi_value make_ifinfo(napi_env env, const ifinfo_t *info) {
  napi_value obj, v;
  NAPI_OK_OR_THROW(napi_create_object(env, &obj), "create object");
  napi_create_double(env, info->mac, &v);
  napi_set_named_property(env, obj, "mac", v);
  napi_create_int32(env, info->mtu, &v);
  napi_set_named_property(env, obj, "mtu", v);
  napi_create_int32(env, info->ifindex, &v);
  napi_set_named_property(env, obj, "ifindex", v);
  return obj;
}

static napi_value js_interface_info(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_OK_OR_THROW(napi_get_cb_info(env, cbinfo, &argc, argv, NULL, NULL), "get_cb_info");
  if (argc < 1) napi_get_undefined(env, &argv[0]);
  char name[IFNAMSIZ];
  if (!get_ifname(env, argv[0], "interfaceInfo", name)) return NULL;
  ifinfo_t info;
  const char *syscall = NULL;
  int err = query_ifinfo(name, &info, &syscall);
  if (err == ENODEV) {
    throw_sys(env, err, syscall, "interfaceInfo: there is no network interface named '%s' in this process's network namespace (check with `ip link`)", name);
    return NULL;
  }
  if (err != 0) {
    throw_sys(env, err, syscall, "interfaceInfo: cannot read MAC/MTU/ifindex of '%s'", name);
    return NULL;
  }
  return make_ifinfo(env, &info);
}

/* ------------------------------------------------------------------------ */
/* Closing                                                                  */

/* pollfd_close() has closed the poll and the fd. */
static void tap_on_close(pollfd_t *p, bool from_hook) {
  (void)from_hook;
  tap_t *t = (tap_t *)p;
  napi_env env = p->env;
  napi_ref *refs[] = {&t->pool_ref, &t->offsets_ref, &t->lengths_ref, &t->cb_ref};
  for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++) {
    if (*refs[i] != NULL) {
      napi_delete_reference(env, *refs[i]);
      *refs[i] = NULL;
    }
  }
  t->pool = NULL;
  t->offsets = NULL;
  t->lengths = NULL;
}

static void tap_throw_closed(napi_env env, pollfd_t *p, const char *method) {
  char msg[128];
  snprintf(msg, sizeof msg, "TAP %s is closed: %s() is not possible after close()", ((tap_t *)p)->name, method);
  throw_err(env, ERR_PLAIN, "ERR_TAP_CLOSED", msg, 0, NULL);
}

static const pollfd_kind_t tap_kind = {
    .not_this_msg = "TapHandle method called on an object that is not a TapHandle",
    .throw_closed = tap_throw_closed,
    .on_close = tap_on_close,
};

/* ------------------------------------------------------------------------ */
/* Receive                                                                  */

static void on_readable(uv_poll_t *h, int status, int events) {
  (void)events;
  tap_t *t = (tap_t *)pollfd_of(h);
  if (t == NULL || t->pf.closed) return;
  t->wakeups++;
  if (status < 0) {
    /* libuv has already stopped the watcher (POLLERR): typically the device
     * was destroyed under us, e.g. its network namespace was deleted. */
    t->rx_errors++;
    pollfd_lost(&t->pf);
    return;
  }

  const int fd = t->pf.fd;
  const uint32_t slots = t->slots;
  const size_t slot_size = t->slot_size;
  const size_t room = t->slot_size - t->headroom;
  uint8_t *const base = t->pool + t->rx_base + t->headroom;
  uint32_t *const offsets = t->offsets;
  uint32_t *const lengths = t->lengths;
  const uint32_t first_off = t->rx_base + t->headroom;
  uint32_t count = 0;
  /* Dropped frames use up reads too, so that a flood of oversize frames
   * cannot hold the event loop: level-triggered polling brings us back. */
  uint32_t reads = 0;

  /* A read() on a tun fd copies what fits and returns min(frame length,
   * buffer length) (tun_chr_read_iter clamps), so a truncated frame looks like
   * one that exactly fills the buffer. The second iovec catches the first
   * byte past the slot: a result longer than `room` means "did not fit". */
  struct iovec iov[2];
  iov[0].iov_len = room;
  iov[1].iov_base = t->overflow_probe;
  iov[1].iov_len = sizeof t->overflow_probe;
  while (reads < slots) {
    iov[0].iov_base = base + (size_t)count * slot_size;
    ssize_t n = readv(fd, iov, 2);
    reads++;
    if (n < 0) {
      if (errno == EINTR) {
        reads--;
        continue;
      }
      if (errno != EAGAIN && errno != EWOULDBLOCK) t->rx_errors++;
      break;
    }
    if (n == 0 || (size_t)n > room) {
      t->rx_oversize++;
      continue;
    }
    offsets[count] = first_off + count * (uint32_t)slot_size;
    lengths[count] = (uint32_t)n;
    count++;
  }
  if (count == 0) return;
  t->batches++;

  pollfd_call(&t->pf, t->cb_ref, 1, &count);
  /* `t` may be closed now; it is not touched again. */
}

/* ------------------------------------------------------------------------ */
/* Handle methods                                                           */

static tap_t *this_tap(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv, bool need_open,
                       const char *method) {
  return (tap_t *)pollfd_this(env, info, argc, argv, need_open, method);
}

static napi_value js_start(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  tap_t *t = this_tap(env, info, &argc, NULL, true, "start");
  if (t == NULL) return NULL;
  pollfd_start(env, &t->pf, on_readable, "cannot watch TAP %s for readability", t->name);
  return NULL;
}

static napi_value js_write(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  tap_t *t = this_tap(env, info, &argc, argv, true, "write");
  if (t == NULL) return NULL;
  if (argc < 4) {
    throw_err(env, ERR_TYPE, "ERR_MISSING_ARGS", "write(pool, offsets, lengths, count) takes 4 arguments", 0, NULL);
    return NULL;
  }
  void *pool_p = NULL;
  size_t pool_len = 0;
  bool is_buf = false;
  if (napi_is_buffer(env, argv[0], &is_buf) != napi_ok || !is_buf ||
      napi_get_buffer_info(env, argv[0], &pool_p, &pool_len) != napi_ok) {
    throw_err(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", "write: pool must be a Buffer", 0, NULL);
    return NULL;
  }
  uint32_t *offs, *lens;
  size_t n_offs, n_lens;
  if (!get_u32_array(env, argv[1], "write: offsets", &offs, &n_offs)) return NULL;
  if (!get_u32_array(env, argv[2], "write: lengths", &lens, &n_lens)) return NULL;
  double dcount;
  if (napi_get_value_double(env, argv[3], &dcount) != napi_ok) {
    throw_err(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", "write: count must be a number", 0, NULL);
    return NULL;
  }
  if (!(dcount >= 0) || dcount != (double)(uint64_t)dcount || dcount > (double)n_offs || dcount > (double)n_lens) {
    char msg[200];
    snprintf(msg, sizeof msg, "write: count must be an integer in 0..min(offsets.length, lengths.length) = 0..%zu, got %g",
             n_offs < n_lens ? n_offs : n_lens, dcount);
    throw_err(env, ERR_RANGE, "ERR_OUT_OF_RANGE", msg, 0, NULL);
    return NULL;
  }
  const uint32_t count = (uint32_t)dcount;
  const uint8_t *pool = pool_p;
  const int fd = t->pf.fd;
  uint32_t sent = 0;
  for (uint32_t i = 0; i < count; i++) {
    const uint32_t off = offs[i], len = lens[i];
    if (len == 0 || (uint64_t)off + len > pool_len) {
      t->tx_errors++; /* outside the pool: never hand the kernel foreign memory */
      lens[i] = 0;    /* the contract: a refused frame's length becomes 0 */
      continue;
    }
    for (;;) {
      ssize_t n = write(fd, pool + off, len);
      if (n >= 0) {
        sent++; /* tun writes are all-or-nothing */
        break;
      }
      if (errno == EINTR) continue;
      t->tx_errors++;
      lens[i] = 0;
      if (errno == EBADF || errno == EBADFD || errno == EFAULT) {
        /* The device is gone (e.g. its namespace was deleted): every
         * remaining frame would fail the same way. */
        t->tx_errors += count - i - 1;
        for (uint32_t j = i + 1; j < count; j++) lens[j] = 0;
        i = count;
      }
      break; /* EAGAIN, ENOBUFS, EIO, EINVAL...: drop this frame, go on */
    }
  }
  napi_value result;
  napi_create_uint32(env, sent, &result);
  return result;
}

static napi_value js_stats(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  tap_t *t = this_tap(env, info, &argc, NULL, false, "stats");
  if (t == NULL) return NULL;
  napi_value obj, v;
  NAPI_OK_OR_THROW(napi_create_object(env, &obj), "create object");
  const struct {
    const char *k;
    uint64_t v;
  } f[] = {{"rxOversize", t->rx_oversize}, {"rxErrors", t->rx_errors}, {"txErrors", t->tx_errors},
           {"wakeups", t->wakeups},        {"batches", t->batches}};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
    napi_create_double(env, (double)f[i].v, &v);
    napi_set_named_property(env, obj, f[i].k, v);
  }
  return obj;
}

/* ------------------------------------------------------------------------ */
/* openTap                                                                  */

static int open_tap_fd(napi_env env, const char *name, bool vnet_hdr, bool multi_queue, char real_name[IFNAMSIZ]) {
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    switch (err) {
      case EACCES:
      case EPERM:
        throw_sys(env, err, "open", "opening /dev/net/tun needs root or CAP_NET_ADMIN (wanted TAP %s)", name);
        break;
      case ENOENT:
        throw_sys(env, err, "open", "/dev/net/tun does not exist: load the tun module (modprobe tun) or create the node (mknod /dev/net/tun c 10 200) (wanted TAP %s)", name);
        break;
      case ENODEV:
      case ENXIO:
        throw_sys(env, err, "open", "/dev/net/tun exists but the tun driver is missing: load the tun module (modprobe tun) (wanted TAP %s)", name);
        break;
      case EMFILE:
      case ENFILE:
        throw_sys(env, err, "open", "too many open files to open /dev/net/tun for TAP %s: close some or raise the limit (ulimit -n)", name);
        break;
      default:
        throw_sys(env, err, "open", "cannot open /dev/net/tun for TAP %s", name);
    }
    return -1;
  }

  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, name, strnlen(name, IFNAMSIZ - 1));
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet_hdr ? IFF_VNET_HDR : 0) | (multi_queue ? IFF_MULTI_QUEUE : 0);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    switch (err) {
      case EPERM:
      case EACCES:
        throw_sys(env, err, "ioctl(TUNSETIFF)", "creating or attaching TAP %s needs root or CAP_NET_ADMIN (or the TAP is persistent and owned by another user/group)", name);
        break;
      case EBUSY:
        throw_sys(env, err, "ioctl(TUNSETIFF)", "TAP %s is already attached to another process (or another handle): close that one first; only multiQueue TAPs accept several", name);
        break;
      case EINVAL:
        throw_sys(env, err, "ioctl(TUNSETIFF)", "an interface named %s already exists and is not a TAP (or its flags differ, e.g. multiQueue): pick another name or delete it (ip link del)", name);
        break;
      default:
        throw_sys(env, err, "ioctl(TUNSETIFF)", "cannot create or attach TAP %s", name);
    }
    return -1;
  }
  memcpy(real_name, ifr.ifr_name, IFNAMSIZ);
  real_name[IFNAMSIZ - 1] = '\0';

  if (vnet_hdr) {
    int sz = VNET_HDR_LEN;
    if (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0) {
      int err = errno;
      close(fd);
      throw_sys(env, err, "ioctl(TUNSETVNETHDRSZ)", "cannot set the virtio-net header size of TAP %s to 12", real_name);
      return -1;
    }
    unsigned int off = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
    if (ioctl(fd, TUNSETOFFLOAD, off) < 0) {
      int err = errno;
      close(fd);
      throw_sys(env, err, "ioctl(TUNSETOFFLOAD)", "cannot enable checksum/TSO offloads on TAP %s", real_name);
      return -1;
    }
  }
  return fd;
}

static napi_value js_open_tap(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_OK_OR_THROW(napi_get_cb_info(env, cbinfo, &argc, argv, NULL, NULL), "get_cb_info");
  napi_valuetype vt = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &vt);
  if (vt != napi_object) {
    throw_err(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", "openTap(options): options must be an object", 0, NULL);
    return NULL;
  }
  napi_value opts = argv[0];
  napi_value v;
  napi_valuetype t;

  /* Everything is validated before /dev/net/tun is touched, so a bad call
   * never leaves an interface behind. */
  char name[IFNAMSIZ];
  if (!get_prop(env, opts, "name", &v, &t)) return NULL;
  if (!get_ifname(env, v, "openTap", name)) return NULL;

  bool vnet_hdr, multi_queue;
  if (!get_bool_prop(env, opts, "vnetHdr", &vnet_hdr)) return NULL;
  if (!get_bool_prop(env, opts, "multiQueue", &multi_queue)) return NULL;

  napi_value pool_v;
  bool is_buf = false;
  void *pool = NULL;
  size_t pool_len = 0;
  if (!get_prop(env, opts, "pool", &pool_v, &t)) return NULL;
  if (napi_is_buffer(env, pool_v, &is_buf) != napi_ok || !is_buf ||
      napi_get_buffer_info(env, pool_v, &pool, &pool_len) != napi_ok) {
    throw_err(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", "openTap: option 'pool' must be a Buffer", 0, NULL);
    return NULL;
  }

  uint32_t rx_base, slots, slot_size, headroom;
  if (!get_uint_prop(env, opts, "rxBase", true, 0, &rx_base)) return NULL;
  if (!get_uint_prop(env, opts, "slots", true, 0, &slots)) return NULL;
  if (!get_uint_prop(env, opts, "slotSize", true, 0, &slot_size)) return NULL;
  if (!get_uint_prop(env, opts, "headroom", false, 0, &headroom)) return NULL;

  napi_value offsets_v, lengths_v, cb_v;
  uint32_t *offsets, *lengths;
  size_t n_offsets, n_lengths;
  if (!get_prop(env, opts, "offsets", &offsets_v, &t)) return NULL;
  if (!get_u32_array(env, offsets_v, "openTap: option 'offsets'", &offsets, &n_offsets)) return NULL;
  if (!get_prop(env, opts, "lengths", &lengths_v, &t)) return NULL;
  if (!get_u32_array(env, lengths_v, "openTap: option 'lengths'", &lengths, &n_lengths)) return NULL;
  if (!get_prop(env, opts, "onBatch", &cb_v, &t)) return NULL;
  if (t != napi_function) {
    throw_err(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", "openTap: option 'onBatch' must be a function (count: number) => void", 0, NULL);
    return NULL;
  }

  char msg[400];
  const uint32_t min_room = ETH_HLEN_MIN + (vnet_hdr ? VNET_HDR_LEN : 0);
  if (slots == 0) {
    throw_err(env, ERR_RANGE, "ERR_OUT_OF_RANGE", "openTap: 'slots' must be at least 1", 0, NULL);
    return NULL;
  }
  if ((uint64_t)headroom + min_room > slot_size) {
    snprintf(msg, sizeof msg, "openTap: slotSize %u leaves no room for a frame after headroom %u: need slotSize >= headroom + %u%s",
             slot_size, headroom, min_room, vnet_hdr ? " (12-byte virtio-net header + Ethernet header)" : " (Ethernet header)");
    throw_err(env, ERR_RANGE, "ERR_OUT_OF_RANGE", msg, 0, NULL);
    return NULL;
  }
  const uint64_t rx_end = (uint64_t)rx_base + (uint64_t)slots * slot_size;
  if (rx_end > pool_len) {
    snprintf(msg, sizeof msg, "openTap: the receive region rxBase + slots*slotSize = %u + %u*%u = %llu does not fit in the pool of %zu bytes",
             rx_base, slots, slot_size, (unsigned long long)rx_end, pool_len);
    throw_err(env, ERR_RANGE, "ERR_OUT_OF_RANGE", msg, 0, NULL);
    return NULL;
  }
  if (rx_end > (uint64_t)UINT32_MAX) {
    throw_err(env, ERR_RANGE, "ERR_OUT_OF_RANGE", "openTap: the receive region must end below 4 GiB (offsets are Uint32)", 0, NULL);
    return NULL;
  }
  if (n_offsets < slots || n_lengths < slots) {
    snprintf(msg, sizeof msg, "openTap: offsets (length %zu) and lengths (length %zu) must each hold at least slots = %u entries",
             n_offsets, n_lengths, slots);
    throw_err(env, ERR_RANGE, "ERR_OUT_OF_RANGE", msg, 0, NULL);
    return NULL;
  }

  addon_data_t *ad = NULL;
  napi_value ctor, obj;
  NAPI_OK_OR_THROW(napi_get_instance_data(env, (void **)&ad), "instance data");
  NAPI_OK_OR_THROW(napi_get_reference_value(env, ad->ctor, &ctor), "constructor");
  uv_loop_t *loop = NULL;
  NAPI_OK_OR_THROW(napi_get_uv_event_loop(env, &loop), "event loop");

  char real_name[IFNAMSIZ];
  int fd = open_tap_fd(env, name, vnet_hdr, multi_queue, real_name);
  if (fd < 0) return NULL;

  ifinfo_t ii;
  const char *syscall = NULL;
  int err = query_ifinfo(real_name, &ii, &syscall);
  if (err != 0) {
    close(fd);
    throw_sys(env, err, syscall, "cannot read MAC/MTU/ifindex of the new TAP %s", real_name);
    return NULL;
  }

  tap_t *tap = calloc(1, sizeof *tap);
  pollfd_box_t *box = pollfd_box_new();
  if (tap == NULL || box == NULL) {
    free(tap);
    pollfd_box_free(box);
    close(fd);
    throw_err(env, ERR_PLAIN, "ENOMEM", "openTap: out of memory", ENOMEM, NULL);
    return NULL;
  }
  pollfd_init(&tap->pf, env, &tap_kind);
  memcpy(tap->name, real_name, IFNAMSIZ);
  tap->pool = pool;
  tap->pool_len = pool_len;
  tap->offsets = offsets;
  tap->lengths = lengths;
  tap->rx_base = rx_base;
  tap->slots = slots;
  tap->slot_size = slot_size;
  tap->headroom = headroom;

  int rc = pollfd_watch(&tap->pf, box, loop, fd);
  if (rc < 0) {
    pollfd_box_free(box);
    free(tap);
    close(fd);
    throw_sys(env, -rc, "uv_poll_init", "cannot watch TAP %s", real_name);
    return NULL;
  }

  /* From here on pollfd_close() undoes whatever was set up. */
  if (!pollfd_wrap(env, &tap->pf, ctor, &obj)) {
    throw_err(env, ERR_PLAIN, "ERR_TAPNET_NAPI", "openTap: cannot create the handle object", 0, NULL);
    return NULL;
  }
  /* The wrap owns `tap` now: on any failure below, close and let GC free it. */
  bool ok = pollfd_setup(env, &tap->pf, obj, "tapnet:TapPort") &&
            napi_create_reference(env, pool_v, 1, &tap->pool_ref) == napi_ok &&
            napi_create_reference(env, offsets_v, 1, &tap->offsets_ref) == napi_ok &&
            napi_create_reference(env, lengths_v, 1, &tap->lengths_ref) == napi_ok &&
            napi_create_reference(env, cb_v, 1, &tap->cb_ref) == napi_ok;

  napi_value name_v, fd_v, ifindex_v, mac_v, mtu_v;
  ok = ok && napi_create_string_utf8(env, real_name, NAPI_AUTO_LENGTH, &name_v) == napi_ok &&
       napi_create_int32(env, ii.ifindex, &ifindex_v) == napi_ok && napi_create_double(env, ii.mac, &mac_v) == napi_ok &&
       napi_create_int32(env, ii.mtu, &mtu_v) == napi_ok;
  (void)fd_v;
  if (ok) {
    napi_property_descriptor props[] = {
        {"name", NULL, NULL, NULL, NULL, name_v, napi_enumerable, NULL},
        {"ifindex", NULL, NULL, NULL, NULL, ifindex_v, napi_enumerable, NULL},
        {"mac", NULL, NULL, NULL, NULL, mac_v, napi_enumerable, NULL},
        {"mtu", NULL, NULL, NULL, NULL, mtu_v, napi_enumerable, NULL},
    };
    ok = napi_define_properties(env, obj, sizeof props / sizeof props[0], props) == napi_ok;
  }
  if (!ok) {
    pollfd_close(&tap->pf, false);
    throw_err(env, ERR_PLAIN, "ERR_TAPNET_NAPI", "openTap: cannot set up the handle object", 0, NULL);
    return NULL;
  }
  return obj;
}

/* ------------------------------------------------------------------------ */
/* Module                                                                   */

static void addon_data_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  addon_data_t *ad = data;
  if (ad->ctor != NULL) napi_delete_reference(env, ad->ctor);
  if (ad->udp_ctor != NULL) napi_delete_reference(env, ad->udp_ctor);
  if (ad->raw_ctor != NULL) napi_delete_reference(env, ad->raw_ctor);
  free(ad);
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      /* data: the kind, which pollfd_this() checks `this` against */
      {"start", NULL, js_start, NULL, NULL, NULL, napi_default_method, (void *)&tap_kind},
      {"stop", NULL, pollfd_js_stop, NULL, NULL, NULL, napi_default_method, (void *)&tap_kind},
      {"write", NULL, js_write, NULL, NULL, NULL, napi_default_method, (void *)&tap_kind},
      {"stats", NULL, js_stats, NULL, NULL, NULL, napi_default_method, (void *)&tap_kind},
      {"close", NULL, pollfd_js_close, NULL, NULL, NULL, napi_default_method, (void *)&tap_kind},
      {"fd", NULL, NULL, pollfd_js_get_fd, NULL, NULL, napi_enumerable, (void *)&tap_kind},
  };
  napi_value ctor;
  NAPI_OK_OR_THROW(napi_define_class(env, "TapHandle", NAPI_AUTO_LENGTH, pollfd_js_ctor, NULL,
                                     sizeof methods / sizeof methods[0], methods, &ctor),
                   "define class");
  addon_data_t *ad = calloc(1, sizeof *ad);
  if (ad == NULL) {
    napi_throw_error(env, "ENOMEM", "tapnet: out of memory");
    return NULL;
  }
  if (napi_create_reference(env, ctor, 1, &ad->ctor) != napi_ok ||
      napi_set_instance_data(env, ad, addon_data_finalize, NULL) != napi_ok) {
    free(ad);
    napi_throw_error(env, "ERR_TAPNET_NAPI", "tapnet: cannot initialise the addon");
    return NULL;
  }
  napi_property_descriptor fns[] = {
      {"openTap", NULL, js_open_tap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"interfaceInfo", NULL, js_interface_info, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  NAPI_OK_OR_THROW(napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns), "exports");
  if (!offload_init(env, exports)) return NULL;
  if (!udp_init(env, exports, ad)) return NULL;
  if (!seccomp_init_exports(env, exports)) {
    napi_throw_error(env, "ERR_TAPNET_NAPI", "tapnet: cannot export seccompInstall");
    return NULL;
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
