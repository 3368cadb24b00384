/*
 * TAP devices (openTap), interface information (interfaceInfo), and the few calls made
 * from inside another network namespace (tapAttachIn, sysctlIn).
 *
 * Kept deliberately thin: it opens /dev/net/tun, watches the fd with uv_poll on the
 * calling thread's loop (the handle: pollfd.c), and on each wake-up drains up to
 * `slots` frames into a caller-provided slab, then calls JavaScript once with the
 * count. Transmit takes a whole batch in one call. All policy (what to do with a
 * frame, what a drop means) stays in TypeScript (src/io/native.ts, tap-port.ts).
 *
 * With `offload` the TAP has IFF_VNET_HDR: every frame read or written starts with
 * a 12-byte struct virtio_net_hdr_v1 (TUNSETVNETHDRSZ; virtio 1.1 section 5.1.6),
 * and the kernel may hand over TSO super-frames and partial checksums
 * (TUNSETOFFLOAD: CSUM, TSO4, TSO6, TSO_ECN).
 *
 * Surviving the process (a lab node restarted after a crash):
 *   - `persist` makes the TAP persistent (TUNSETPERSIST): it outlives its last fd, so
 *     a host whose eth0 it is keeps its interface, addresses and routes while the
 *     node is down; tapPersist(fd, false) undoes it before a port is removed for good;
 *   - tapAttachIn({ netns, name, offload }) re-attaches to a TAP that lives in another
 *     network namespace (a host's eth0): setns(2) on the calling thread into that
 *     namespace, open /dev/net/tun there (TUNSETIFF looks the name up in the namespace
 *     the tun file was opened in), attach, setns back. It needs CAP_SYS_ADMIN (setns),
 *     which only the lab's supervisor and lab up have; the node gets the fd by
 *     inheritance. With `create` a TAP that is not there is made (persistent) instead of refused: lab up
 *     makes each host's eth0 in the host's namespace this way, so that no TAP has to
 *     move between namespaces (each move waits for the kernel's RCU grace periods);
 *   - openTap({ fd }) adopts such an inherited fd instead of opening a new one.
 * sysctlIn({ netns, names, value }) writes sysctls of another namespace the same way.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
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
#include "uring.h"

#define VNET_HDR_LEN 12 /* struct virtio_net_hdr_v1 (with num_buffers) */
#define ETH_HLEN_MIN 14

typedef struct {
  pollfd_t pf; /* first member (pollfd.h): fd, poll, references, counters */
  uint8_t *pool;
  uint32_t *offsets;
  uint32_t *lengths;
  uint32_t rx_base;
  uint32_t slots;
  uint32_t slot_size;
  uint32_t headroom;
  /* io "uring" (uring.c): receive and transmit through io_uring; NULL: readv()/write(). */
  uring_io_t *uring;

  /* Catches the first byte beyond a slot: see on_readable. */
  uint8_t overflow_probe[16];
} tap_t;

/* ------------------------------------------------------------------------ */
/* Names and interface information                                          */

/* Reads an interface name: non-empty, at most IFNAMSIZ-1 bytes, and free of
 * the characters the kernel rejects (dev_valid_name), so that EINVAL from
 * TUNSETIFF keeps a single meaning. */
static bool get_ifname(napi_env env, napi_value v, const char *fn, char out[IFNAMSIZ]) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) {
    throw_fmt(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", "%s: the interface name must be a string", fn);
    return false;
  }
  size_t len = 0;
  napi_get_value_string_utf8(env, v, NULL, 0, &len);
  if (len == 0) {
    throw_fmt(env, ERR_PLAIN, "ERR_INVALID_ARG_VALUE",
              "%s: the interface name is empty; give a name such as 'tap0' (or a template such as 'tap%%d')", fn);
    return false;
  }
  if (len > IFNAMSIZ - 1) {
    char shown[64];
    size_t got = 0;
    napi_get_value_string_utf8(env, v, shown, sizeof shown, &got);
    throw_fmt(env, ERR_PLAIN, "ENAMETOOLONG", "%s: TAP name too long: '%s%s' has %zu characters, Linux allows at most %d",
              fn, shown, len >= sizeof shown ? "..." : "", len, IFNAMSIZ - 1);
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
    throw_fmt(env, ERR_PLAIN, "ERR_INVALID_ARG_VALUE",
              "%s: invalid interface name '%s': it must not be '.' or '..' nor contain '/', ':', spaces or control characters",
              fn, out);
    return false;
  }
  return true;
}

/* Interface information: SIOCGIF* on an AF_INET datagram socket. */
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

static const errno_msg_t ifinfo_errors[] = {
    {ENODEV, "interfaceInfo: there is no network interface named '%s' in this process's network namespace (check with `ip link`)"},
    {0, "interfaceInfo: cannot read MAC/MTU/ifindex of '%s'"},
};

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
  if (err != 0) {
    throw_sys_table(env, err, syscall, ifinfo_errors, name);
    return NULL;
  }
  named_value_t vals[] = {{"mac", NULL}, {"mtu", NULL}, {"ifindex", NULL}};
  napi_value obj;
  NAPI_OK_OR_THROW(napi_create_object(env, &obj), "create object");
  NAPI_OK_OR_THROW(napi_create_double(env, info.mac, &vals[0].v), "mac");
  NAPI_OK_OR_THROW(napi_create_int32(env, info.mtu, &vals[1].v), "mtu");
  NAPI_OK_OR_THROW(napi_create_int32(env, info.ifindex, &vals[2].v), "ifindex");
  NAPI_OK_OR_THROW(define_values(env, obj, vals, 3) ? napi_ok : napi_generic_failure, "properties");
  return obj;
}

/* pollfd_close() has closed the poll and the fd, and dropped the references. */
static void tap_on_close(pollfd_t *p, bool from_hook) {
  (void)from_hook;
  tap_t *t = (tap_t *)p;
  if (t->uring != NULL) {
    uring_io_close(t->uring);
    t->uring = NULL;
  }
  t->pool = NULL;
  t->offsets = NULL;
  t->lengths = NULL;
}

/* ------------------------------------------------------------------------ */
/* Receive                                                                  */

static void add_uring_stats(tap_t *t, const uring_io_stats_t *us) {
  t->pf.stats.rx_errors += us->rx_errors;
  t->pf.stats.rx_dropped += us->rx_dropped;
  t->pf.stats.tx_errors += us->tx_errors;
  if (us->last_tx_errno != 0) t->pf.stats.last_tx_errno = us->last_tx_errno;
}

/* io "uring": the ring's eventfd woke us; the frames are in the slots already. */
static void on_uring_readable(tap_t *t) {
  uring_io_stats_t us = {0, 0, 0, 0};
  uint32_t *const offsets = t->offsets;
  /* uring_io_rx gives slot indexes in offsets[]: turned into pool offsets here. */
  uint32_t count = uring_io_rx(t->uring, offsets, t->lengths, t->slots, &us);
  add_uring_stats(t, &us);
  const uint32_t first_off = t->rx_base + t->headroom;
  for (uint32_t i = 0; i < count; i++) offsets[i] = first_off + offsets[i] * t->slot_size;
  if (count != 0) {
    t->pf.stats.batches++;
    t->pf.stats.rx_messages += count;
    pollfd_call(&t->pf, 1, &count);
  }
  /* JS may have closed the handle in onBatch (that freed the rings, not `t`: the
   * wrap's finalizer frees it, and no GC runs between the call and here). */
  if (!t->pf.closed && t->uring != NULL) uring_io_rx_done(t->uring);
}

static void on_readable(uv_poll_t *h, int status, int events) {
  (void)events;
  /* A poll error typically means the device was destroyed under us (its
   * network namespace was deleted). */
  tap_t *t = (tap_t *)pollfd_wakeup(h, status);
  if (t == NULL) return;
  if (t->uring != NULL) {
    on_uring_readable(t);
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
      if (errno != EAGAIN && errno != EWOULDBLOCK) t->pf.stats.rx_errors++;
      break;
    }
    if (n == 0 || (size_t)n > room) {
      t->pf.stats.rx_dropped++;
      continue;
    }
    offsets[count] = first_off + count * (uint32_t)slot_size;
    lengths[count] = (uint32_t)n;
    count++;
  }
  if (count == 0) return;
  t->pf.stats.batches++;
  t->pf.stats.rx_messages += count;

  pollfd_call(&t->pf, 1, &count);
  /* `t` may be closed now; it is not touched again. */
}

/* ------------------------------------------------------------------------ */
/* write(pool, offsets, lengths, count)                                     */

static napi_value js_write(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  tap_t *t = (tap_t *)pollfd_this(env, info, &argc, argv, true, "write");
  if (t == NULL) return NULL;
  frame_batch_t b;
  if (!read_frame_batch(env, "write", argv, argc, &b)) return NULL;
  const val_view_t pool = b.pool, offsets = b.offsets, lengths = b.lengths;
  const uint32_t count = b.count;
  uint32_t *const offs = offsets.data, *const lens = lengths.data;
  const int fd = t->pf.fd;
  uint32_t sent = 0;
  if (t->uring != NULL) {
    for (uint32_t i = 0; i < count; i++) {
      if (lens[i] == 0 || (uint64_t)offs[i] + lens[i] > pool.len) {
        t->pf.stats.tx_errors++;
        t->pf.stats.last_tx_errno = lens[i] == 0 ? EINVAL : EFAULT;
        lens[i] = 0;
      }
    }
    uring_io_stats_t us = {0, 0, 0, 0};
    sent = uring_io_tx(t->uring, pool.data, offs, lens, count, &us);
    add_uring_stats(t, &us);
    napi_value r;
    napi_create_uint32(env, sent, &r);
    return r;
  }
  for (uint32_t i = 0; i < count; i++) {
    const uint32_t off = offs[i], len = lens[i];
    if (len == 0 || (uint64_t)off + len > pool.len) {
      /* Outside the pool: never hand the kernel foreign memory. */
      t->pf.stats.tx_errors++;
      t->pf.stats.last_tx_errno = len == 0 ? EINVAL : EFAULT;
      lens[i] = 0; /* the contract: a refused frame's length becomes 0 */
      continue;
    }
    for (;;) {
      ssize_t n = write(fd, (const uint8_t *)pool.data + off, len);
      if (n >= 0) {
        sent++; /* tun writes are all-or-nothing */
        break;
      }
      if (errno == EINTR) continue;
      t->pf.stats.tx_errors++;
      t->pf.stats.last_tx_errno = errno;
      lens[i] = 0;
      if (errno == EBADF || errno == EBADFD || errno == EFAULT) {
        /* The device is gone (e.g. its namespace was deleted): every
         * remaining frame would fail the same way. */
        t->pf.stats.tx_errors += count - i - 1;
        for (uint32_t j = i + 1; j < count; j++) lens[j] = 0;
        i = count;
      }
      break; /* EAGAIN, ENOBUFS, EIO, EINVAL...: drop this frame, go on */
    }
  }
  return ret_u32(env, sent);
}

/* What open("/dev/net/tun") and TUNSETIFF failing mean, and what to do. */
static const errno_msg_t open_errors[] = {
    {EACCES, "opening /dev/net/tun needs root or CAP_NET_ADMIN (wanted TAP %s)"},
    {EPERM, "opening /dev/net/tun needs root or CAP_NET_ADMIN (wanted TAP %s)"},
    {ENOENT, "/dev/net/tun does not exist: load the tun module (modprobe tun) or create the node (mknod /dev/net/tun c 10 200) (wanted TAP %s)"},
    {ENODEV, "/dev/net/tun exists but the tun driver is missing: load the tun module (modprobe tun) (wanted TAP %s)"},
    {ENXIO, "/dev/net/tun exists but the tun driver is missing: load the tun module (modprobe tun) (wanted TAP %s)"},
    {EMFILE, "too many open files to open /dev/net/tun for TAP %s: close some or raise the limit (ulimit -n)"},
    {ENFILE, "too many open files to open /dev/net/tun for TAP %s: close some or raise the limit (ulimit -n)"},
    {0, "cannot open /dev/net/tun for TAP %s"},
};
static const errno_msg_t tunsetiff_errors[] = {
    {EPERM, "creating or attaching TAP %s needs root or CAP_NET_ADMIN (or the TAP is persistent and owned by another user/group)"},
    {EACCES, "creating or attaching TAP %s needs root or CAP_NET_ADMIN (or the TAP is persistent and owned by another user/group)"},
    {EBUSY, "TAP %s is already attached to another process (or another handle): close that one first; only multiQueue TAPs accept several"},
    {EINVAL, "an interface named %s already exists and is not a TAP (or its flags differ, e.g. multiQueue): pick another name or delete it (ip link del)"},
    {0, "cannot create or attach TAP %s"},
};

/* The virtio-net header size and the offloads of a TAP opened or adopted with
 * `offload`; 0, or -1 with an exception pending (the fd is left to the caller). */
static int set_offloads(napi_env env, int fd, const char *name) {
  int sz = VNET_HDR_LEN;
  if (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0) {
    throw_sys(env, errno, "ioctl(TUNSETVNETHDRSZ)", "cannot set the virtio-net header size of TAP %s to 12", name);
    return -1;
  }
  unsigned int off = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
  if (ioctl(fd, TUNSETOFFLOAD, off) < 0) {
    throw_sys(env, errno, "ioctl(TUNSETOFFLOAD)", "cannot enable checksum/TSO offloads on TAP %s", name);
    return -1;
  }
  return 0;
}

static int open_tap_fd(napi_env env, const char *name, bool offload, bool multi_queue, bool persist,
                       char real_name[IFNAMSIZ]) {
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    throw_sys_table(env, errno, "open", open_errors, name);
    return -1;
  }

  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, name, strnlen(name, IFNAMSIZ - 1));
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (offload ? IFF_VNET_HDR : 0) | (multi_queue ? IFF_MULTI_QUEUE : 0);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    throw_sys_table(env, err, "ioctl(TUNSETIFF)", tunsetiff_errors, name);
    return -1;
  }
  memcpy(real_name, ifr.ifr_name, IFNAMSIZ);
  real_name[IFNAMSIZ - 1] = '\0';

  if (offload && set_offloads(env, fd, real_name) < 0) {
    close(fd);
    return -1;
  }
  /* Last: a TAP this call created and could not set up goes away with the close above. */
  if (persist && ioctl(fd, TUNSETPERSIST, 1) < 0) {
    int err = errno;
    close(fd);
    throw_sys(env, err, "ioctl(TUNSETPERSIST)", "cannot make TAP %s persistent", real_name);
    return -1;
  }
  return fd;
}

/*
 * An inherited fd that is attached to a TAP (tapAttachIn in the parent): checks it
 * is one, with the header mode the caller expects, makes it non-blocking and
 * close-on-exec, sets the offloads again. Fills the device's name (as its own
 * namespace knows it) and MAC; 0, or -1 with an exception pending (fd left open:
 * it is the caller's).
 */
static int adopt_tap_fd(napi_env env, int fd, const char *port, bool offload, bool persist, char real_name[IFNAMSIZ],
                        double *mac) {
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  if (ioctl(fd, TUNGETIFF, &ifr) < 0) {
    int err = errno;
    char what[64];
    snprintf(what, sizeof what, "%d", fd);
    throw_sys(env, err, "ioctl(TUNGETIFF)",
              "openTap: fd %s is not a /dev/net/tun file attached to a TAP (was it inherited from the supervisor?)", what);
    return -1;
  }
  memcpy(real_name, ifr.ifr_name, IFNAMSIZ);
  real_name[IFNAMSIZ - 1] = '\0';
  const bool vnet = (ifr.ifr_flags & IFF_VNET_HDR) != 0;
  if (!(ifr.ifr_flags & IFF_TAP) || !(ifr.ifr_flags & IFF_NO_PI) || vnet != offload) {
    throw_fmt(env, ERR_PLAIN, "EINVAL",
              "openTap: the fd for port %s is attached to %s with flags 0x%x, expected a TAP without packet information%s",
              port, real_name, (unsigned)ifr.ifr_flags & 0xffff,
              offload ? " and with virtio-net headers (IFF_VNET_HDR)" : " and without virtio-net headers");
    return -1;
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
    throw_sys(env, errno, "fcntl", "openTap: cannot make the fd of TAP %s non-blocking", real_name);
    return -1;
  }
  if (offload && set_offloads(env, fd, real_name) < 0) return -1;
  if (persist && ioctl(fd, TUNSETPERSIST, 1) < 0) {
    throw_sys(env, errno, "ioctl(TUNSETPERSIST)", "cannot make TAP %s persistent", real_name);
    return -1;
  }
  /* tun answers SIOCGIFHWADDR on its own fd: the MAC without a socket in the TAP's
   * namespace (which is not ours). */
  memset(&ifr, 0, sizeof ifr);
  uint64_t m = 0;
  if (ioctl(fd, SIOCGIFHWADDR, &ifr) == 0)
    for (int i = 0; i < 6; i++) m = (m << 8) | (unsigned char)ifr.ifr_hwaddr.sa_data[i];
  *mac = (double)m;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* openTap(options)                                                         */

/* `rings`: the io_uring fds of the handle ([] for readv()/write()). */
static bool ring_fds_value(napi_env env, const uring_io_t *u, napi_value *out) {
  if (napi_create_array(env, out) != napi_ok) return false;
  if (u == NULL) return true;
  int fds[2];
  uring_io_ring_fds(u, fds);
  for (uint32_t i = 0; i < 2; i++) {
    napi_value v;
    if (napi_create_int32(env, fds[i], &v) != napi_ok || napi_set_element(env, *out, i, v) != napi_ok) return false;
  }
  return true;
}

static const pollfd_kind_t tap_kind = {"TapHandle", "TAP", "ERR_TAP_CLOSED", "rxOversize",
                                       "pass openTap({ onBatch: (count) => ... })", on_readable, tap_on_close};

static napi_value js_open_tap(napi_env env, napi_callback_info cbinfo) {
  const char *fn = "openTap";
  napi_value opts = options_arg(env, cbinfo, fn);
  if (opts == NULL) return NULL;

  /* Everything is validated before /dev/net/tun is touched, so a bad call
   * never leaves an interface behind. */
  char name[IFNAMSIZ];
  napi_value name_v;
  NAPI_OK_OR_THROW(napi_get_named_property(env, opts, "name", &name_v), "name");
  if (!get_ifname(env, name_v, fn, name)) return NULL;
  bool offload = false, multi_queue = false, persist = false, want_uring = false;
  val_view_t pool, arrays[2];
  uint32_t rx_base = 0, slots = 0, slot_size = 0, headroom = 0;
  uint32_t adopt_fd = UINT32_MAX; /* absent: create or attach by name */
  napi_value cb = NULL;
  const val_spec_t spec[] = {
      {"offload", VAL_BOOL, 0, 0, NULL, &offload},
      {"multiQueue", VAL_BOOL, 0, 0, NULL, &multi_queue},
      {"persist", VAL_BOOL, 0, 0, NULL, &persist},
      {"uring", VAL_BOOL, 0, 0, NULL, &want_uring},
      {"fd", VAL_U32, 0, INT_MAX, NULL, &adopt_fd},
      {"pool", VAL_BYTES, VAL_REQUIRED, 0, NULL, &pool},
      {"rxBase", VAL_U32, VAL_REQUIRED, UINT32_MAX, NULL, &rx_base},
      {"slots", VAL_U32, VAL_REQUIRED, UINT32_MAX, NULL, &slots},
      {"slotSize", VAL_U32, VAL_REQUIRED, UINT32_MAX, NULL, &slot_size},
      {"headroom", VAL_U32, 0, UINT32_MAX, NULL, &headroom},
      {"offsets", VAL_U32_ARRAY, VAL_REQUIRED, 0, NULL, &arrays[0]},
      {"lengths", VAL_U32_ARRAY, VAL_REQUIRED, 0, NULL, &arrays[1]},
      {"onBatch", VAL_FUNCTION, VAL_REQUIRED, 0, " (count: number) => void", &cb},
  };
  static const char *const array_names[] = {"offsets", "lengths"};
  if (!read_options(env, fn, opts, spec, VAL_COUNT(spec))) return NULL;
  if (adopt_fd <= STDERR_FILENO) {
    throw_fmt(env, ERR_RANGE, "ERR_OUT_OF_RANGE", "openTap: option 'fd' must be an inherited fd >= 3 (0-2 are stdio), got %u",
              adopt_fd);
    return NULL;
  }
  /* From here an adopted fd is this call's: closed on every failure. */
  const int given_fd = adopt_fd != UINT32_MAX ? (int)adopt_fd : -1;
  const uint32_t min_room = ETH_HLEN_MIN + (offload ? VNET_HDR_LEN : 0);
  if ((uint64_t)headroom + min_room > slot_size) {
    throw_fmt(env, ERR_RANGE, "ERR_OUT_OF_RANGE",
              "openTap: slotSize %u leaves no room for a frame after headroom %u: need slotSize >= headroom + %u%s",
              slot_size, headroom, min_room,
              offload ? " (12-byte virtio-net header + Ethernet header)" : " (Ethernet header)");
    if (given_fd >= 0) close(given_fd);
    return NULL;
  }
  if (!check_rx_region(env, fn, pool.len, rx_base, slots, slot_size, arrays, array_names, 2)) {
    if (given_fd >= 0) close(given_fd);
    return NULL;
  }

  addon_data_t *ad = NULL;
  NAPI_OK_OR_THROW(napi_get_instance_data(env, (void **)&ad), "instance data");
  char real_name[IFNAMSIZ];
  ifinfo_t ii = {0, 0, 0};
  int fd;
  if (given_fd >= 0) {
    if (multi_queue) {
      close(given_fd);
      throw_fmt(env, ERR_PLAIN, "ERR_INVALID_ARG_VALUE", "openTap: fd and multiQueue do not go together (an fd is one queue)");
      return NULL;
    }
    /* The TAP lives in another namespace (a host's eth0): no ifindex or MTU from
     * here (0: unknown). */
    fd = given_fd;
    if (adopt_tap_fd(env, fd, name, offload, persist, real_name, &ii.mac) < 0) {
      close(fd);
      return NULL;
    }
  } else {
    fd = open_tap_fd(env, name, offload, multi_queue, persist, real_name);
    if (fd < 0) return NULL;
    const char *syscall = NULL;
    int err = query_ifinfo(real_name, &ii, &syscall);
    if (err != 0) {
      if (persist) ioctl(fd, TUNSETPERSIST, 0);
      close(fd);
      throw_sys(env, err, syscall, "cannot read MAC/MTU/ifindex of the new TAP %s", real_name);
      return NULL;
    }
  }
  named_value_t props[] = {{"name", NULL}, {"ifindex", NULL}, {"mac", NULL}, {"mtu", NULL}, {"io", NULL}, {"ioFallback", NULL}, {"rings", NULL}};
  tap_t *tap = calloc(1, sizeof *tap);
  /* io_uring when asked for and the kernel allows it; otherwise readv()/write(),
   * with the reason in ioFallback for the caller to log. */
  char why[160] = "";
  if (tap != NULL && want_uring) {
    const char *step = "io_uring";
    int err = uring_io_open(&tap->uring, fd, (uint8_t *)pool.data + rx_base, slots, slot_size, headroom, 256, &step);
    if (err != 0) snprintf(why, sizeof why, "%s failed: %s", step, strerror(err));
  }
  if (tap == NULL || napi_create_string_utf8(env, real_name, NAPI_AUTO_LENGTH, &props[0].v) != napi_ok ||
      napi_create_int32(env, ii.ifindex, &props[1].v) != napi_ok || napi_create_double(env, ii.mac, &props[2].v) != napi_ok ||
      napi_create_int32(env, ii.mtu, &props[3].v) != napi_ok ||
      napi_create_string_utf8(env, tap->uring != NULL ? "uring" : "rw", NAPI_AUTO_LENGTH, &props[4].v) != napi_ok ||
      (why[0] != '\0' ? napi_create_string_utf8(env, why, NAPI_AUTO_LENGTH, &props[5].v) : napi_get_null(env, &props[5].v)) !=
          napi_ok ||
      !ring_fds_value(env, tap->uring, &props[6].v)) {
    if (tap != NULL) uring_io_close(tap->uring);
    free(tap);
    close(fd);
    throw_err(env, ERR_PLAIN, "ENOMEM", "openTap: out of memory", ENOMEM, NULL);
    return NULL;
  }
  pollfd_init(&tap->pf, env, &tap_kind);
  if (tap->uring != NULL) tap->pf.watch_fd = uring_io_eventfd(tap->uring);
  memcpy(tap->pf.name, real_name, IFNAMSIZ);
  tap->pool = pool.data;
  tap->offsets = arrays[0].data;
  tap->lengths = arrays[1].data;
  tap->rx_base = rx_base;
  tap->slots = slots;
  tap->slot_size = slot_size;
  tap->headroom = headroom;
  const napi_value keep[] = {pool.v, arrays[0].v, arrays[1].v};
  return pollfd_open(env, &tap->pf, fd, ad->tap_ctor, fn, keep, 3, cb, props, 7);
}

/* ------------------------------------------------------------------------ */
/* tapPersist(fd, on) and tapAttachIn({ netns, name, offload, create })     */

static napi_value js_tap_persist(napi_env env, napi_callback_info cbinfo) {
  napi_value argv[2];
  if (!get_args(env, cbinfo, "tapPersist", 2, argv)) return NULL;
  uint32_t fd = 0;
  bool on = false;
  const val_spec_t args[] = {
      {"fd", VAL_U32, VAL_REQUIRED, INT_MAX, NULL, &fd},
      {"on", VAL_BOOL, VAL_REQUIRED, 0, NULL, &on},
  };
  if (!read_args(env, "tapPersist", argv, 2, args, VAL_COUNT(args), NULL)) return NULL;
  if (ioctl((int)fd, TUNSETPERSIST, on ? 1 : 0) < 0) {
    char what[16];
    snprintf(what, sizeof what, "%u", fd);
    throw_sys(env, errno, "ioctl(TUNSETPERSIST)", "tapPersist: cannot change the persistence of the TAP on fd %s", what);
    return NULL;
  }
  return NULL;
}

static const errno_msg_t setns_errors[] = {
    {EPERM, "entering network namespace %s needs CAP_SYS_ADMIN"},
    {ENOENT, "there is no network namespace %s"},
    {0, "cannot enter network namespace %s"},
};

/* Back to the namespace the thread came from; a thread left elsewhere would open
 * everything after this in a host's namespace, so failing here is fatal. */
static void setns_back(int self) {
  if (setns(self, CLONE_NEWNET) < 0) {
    fprintf(stderr, "tapnet: cannot return to the original network namespace (%s)\n", strerror(errno));
    abort();
  }
  close(self);
}

/* The options object of a call made in another namespace, with its option `netns` (the
 * path of a network namespace) read into buf; NULL with an exception pending. */
static napi_value netns_options(napi_env env, napi_callback_info cbinfo, const char *fn, char buf[PATH_MAX]) {
  napi_value opts = options_arg(env, cbinfo, fn);
  if (opts == NULL) return NULL;
  napi_value v;
  napi_valuetype t;
  size_t len = 0;
  if (napi_get_named_property(env, opts, "netns", &v) != napi_ok || napi_typeof(env, v, &t) != napi_ok || t != napi_string ||
      napi_get_value_string_utf8(env, v, buf, PATH_MAX, &len) != napi_ok || len == 0 || len >= PATH_MAX - 1) {
    throw_fmt(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", "%s: option 'netns' must be the path of a network namespace (/run/netns/NAME)", fn);
    return NULL;
  }
  return opts;
}

/* Moves the calling thread into the network namespace at `netns`; returns an fd of the
 * namespace it came from (for setns_back), or -1 with an exception pending. */
static int enter_netns(napi_env env, const char *fn, const char *netns) {
  int target = open(netns, O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    throw_sys_table(env, errno, "open", setns_errors, netns);
    return -1;
  }
  int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) {
    int err = errno;
    close(target);
    throw_sys(env, err, "open", "%s: cannot open this thread's network namespace", fn);
    return -1;
  }
  if (setns(target, CLONE_NEWNET) < 0) {
    int err = errno;
    close(target);
    close(self);
    throw_sys_table(env, err, "setns", setns_errors, netns);
    return -1;
  }
  close(target);
  return self;
}

static napi_value js_tap_attach_in(napi_env env, napi_callback_info cbinfo) {
  const char *fn = "tapAttachIn";
  char netns[PATH_MAX];
  napi_value opts = netns_options(env, cbinfo, fn, netns);
  if (opts == NULL) return NULL;
  napi_value v;
  char name[IFNAMSIZ];
  NAPI_OK_OR_THROW(napi_get_named_property(env, opts, "name", &v), "name");
  if (!get_ifname(env, v, fn, name)) return NULL;
  bool offload = false;
  bool create = false;
  const val_spec_t spec[] = {{"offload", VAL_BOOL, 0, 0, NULL, &offload}, {"create", VAL_BOOL, 0, 0, NULL, &create}};
  if (!read_options(env, fn, opts, spec, VAL_COUNT(spec))) return NULL;
  int self = enter_netns(env, fn, netns);
  if (self < 0) return NULL;
  /* In the TAP's namespace now: open, attach, read what the node will report. */
  int err = 0;
  const char *syscall = NULL;
  const char *what = NULL;
  ifinfo_t ii = {0, 0, 0};
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    err = errno;
    syscall = "open";
    what = "tapAttachIn: cannot open /dev/net/tun to attach to %s";
  } else {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, name, strnlen(name, IFNAMSIZ - 1));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (offload ? IFF_VNET_HDR : 0);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
      err = errno;
      syscall = "ioctl(TUNSETIFF)";
      what = "tapAttachIn: cannot attach to TAP %s (busy: another process has it; EINVAL: not a TAP)";
    } else if (ioctl(fd, TUNGETIFF, &ifr) < 0) {
      err = errno;
      syscall = "ioctl(TUNGETIFF)";
      what = "tapAttachIn: cannot read the flags of TAP %s";
    } else if (!(ifr.ifr_flags & IFF_PERSIST) && !create) {
      /* TUNSETIFF creates a TAP when the name is free: one that is not persistent
       * was made just now, and goes again with this close. */
      err = ENODEV;
      syscall = "ioctl(TUNSETIFF)";
      what = "tapAttachIn: there is no persistent TAP named %s in that namespace";
    } else if (!(ifr.ifr_flags & IFF_PERSIST) && ioctl(fd, TUNSETPERSIST, 1) < 0) {
      err = errno;
      syscall = "ioctl(TUNSETPERSIST)";
      what = "tapAttachIn: cannot make the new TAP %s persistent";
    } else if ((err = query_ifinfo(name, &ii, &syscall)) != 0) {
      what = "tapAttachIn: cannot read MAC/MTU/ifindex of TAP %s";
    }
    if (err != 0) close(fd);
  }
  setns_back(self);
  if (err != 0) {
    throw_sys(env, err, syscall, what, name);
    return NULL;
  }
  named_value_t vals[] = {{"fd", NULL}, {"mtu", NULL}, {"ifindex", NULL}, {"mac", NULL}};
  napi_value obj;
  if (napi_create_object(env, &obj) != napi_ok || napi_create_int32(env, fd, &vals[0].v) != napi_ok ||
      napi_create_int32(env, ii.mtu, &vals[1].v) != napi_ok || napi_create_int32(env, ii.ifindex, &vals[2].v) != napi_ok ||
      napi_create_double(env, ii.mac, &vals[3].v) != napi_ok || !define_values(env, obj, vals, 4)) {
    close(fd);
    throw_err(env, ERR_PLAIN, "ERR_TAPNET_NAPI", "tapAttachIn: internal N-API failure", 0, NULL);
    return NULL;
  }
  return obj;
}

/* ------------------------------------------------------------------------ */
/* sysctlIn({ netns, names, value })                                        */

/*
 * Writes `value` to each sysctl of `names` (dotted, "net.ipv6.conf.all.disable_ipv6") as
 * the network namespace at `netns` sees them: /proc/sys/net is looked up in the
 * namespace of the task that opens it, so setns on this thread, open and write, setns
 * back. What `ip netns exec NS sysctl -w` does without two processes per namespace.
 */
static napi_value js_sysctl_in(napi_env env, napi_callback_info cbinfo) {
  const char *fn = "sysctlIn";
  char netns[PATH_MAX];
  napi_value opts = netns_options(env, cbinfo, fn, netns);
  if (opts == NULL) return NULL;
  char value[64];
  size_t vlen = 0;
  napi_value v;
  napi_valuetype t;
  if (napi_get_named_property(env, opts, "value", &v) != napi_ok || napi_typeof(env, v, &t) != napi_ok || t != napi_string ||
      napi_get_value_string_utf8(env, v, value, sizeof value, &vlen) != napi_ok || vlen == 0 || vlen >= sizeof value - 1) {
    throw_fmt(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", "%s: option 'value' must be a string of 1 to 62 characters", fn);
    return NULL;
  }
  napi_value arr;
  bool is_arr = false;
  uint32_t n = 0;
  if (napi_get_named_property(env, opts, "names", &arr) != napi_ok || napi_is_array(env, arr, &is_arr) != napi_ok || !is_arr ||
      napi_get_array_length(env, arr, &n) != napi_ok || n == 0 || n > 16) {
    throw_fmt(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", "%s: option 'names' must be an array of 1 to 16 sysctl names", fn);
    return NULL;
  }
  char paths[16][128];
  for (uint32_t i = 0; i < n; i++) {
    char name[100];
    size_t len = 0;
    napi_value e;
    bool ok = napi_get_element(env, arr, i, &e) == napi_ok && napi_typeof(env, e, &t) == napi_ok && t == napi_string &&
              napi_get_value_string_utf8(env, e, name, sizeof name, &len) == napi_ok && len > 0 && len < sizeof name - 1 &&
              name[0] != '.' && name[len - 1] != '.' && strstr(name, "..") == NULL;
    for (size_t k = 0; ok && k < len; k++) {
      const char c = name[k];
      ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
    }
    if (!ok) {
      throw_fmt(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", "%s: names[%u] must be a dotted sysctl name (a-z 0-9 _ - .)", fn, i);
      return NULL;
    }
    snprintf(paths[i], sizeof paths[i], "/proc/sys/%s", name);
    for (char *c = paths[i] + 10; *c; c++)
      if (*c == '.') *c = '/';
  }
  int self = enter_netns(env, fn, netns);
  if (self < 0) return NULL;
  int err = 0;
  uint32_t failed = 0;
  for (uint32_t i = 0; i < n && err == 0; i++) {
    int fd = open(paths[i], O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, value, vlen) != (ssize_t)vlen) {
      err = errno != 0 ? errno : EIO;
      failed = i;
    }
    if (fd >= 0) close(fd);
  }
  setns_back(self);
  if (err != 0) {
    throw_sys(env, err, "write", "sysctlIn: cannot write %s", paths[failed]);
    return NULL;
  }
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* Module part                                                              */

bool tap_init(napi_env env, napi_value exports, addon_data_t *ad) {
  static const named_fn_t fns[] = {
      {"openTap", js_open_tap},
      {"interfaceInfo", js_interface_info},
      {"tapPersist", js_tap_persist},
      {"tapAttachIn", js_tap_attach_in},
      {"sysctlIn", js_sysctl_in},
  };
  if (!pollfd_define_class(env, &tap_kind, "write", js_write, &ad->tap_ctor)) {
    throw_err(env, ERR_PLAIN, "ERR_TAPNET_NAPI", "tapnet: cannot define TapHandle", 0, NULL);
    return false;
  }
  return export_functions(env, exports, fns, VAL_COUNT(fns), "openTap, interfaceInfo, tapPersist and tapAttachIn");
}
