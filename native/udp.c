/*
 * Batched UDP sockets for the tunnel underlay (VXLAN): recvmmsg/sendmmsg,
 * UDP GSO (UDP_SEGMENT) and GRO (UDP_GRO); and, on the same machinery, batched
 * raw IPv4 sockets of one protocol (openRaw, for IPIP: RFC 2003).
 *
 * `dgram` makes one syscall and one JavaScript call per datagram (~250 k/s at
 * a full core, see DESIGN.md); here one uv_poll wake-up is one recvmmsg of up
 * to `slots` datagrams straight into the caller's pool and one onBatch(count)
 * call, and one send() is one (or a few) sendmmsg calls for a whole batch.
 * With GSO one sendmmsg entry of up to ~64 KiB leaves as many datagrams; with
 * GRO the kernel may hand a train of datagrams up as one buffer plus the
 * segment size. All policy stays in TypeScript (src/io/udp-native.ts).
 *
 * A raw handle (openRaw, src/io/raw-native.ts) is the same udp_t with `raw`
 * set: SOCK_RAW of one IP protocol, optionally IP_HDRINCL. A raw IPv4 socket
 * delivers each packet whole, outer IPv4 header included, and every packet of
 * its protocol addressed to the namespace (a bound address narrows that); it
 * has no ports, no GSO and no GRO, so its batches carry offsets, lengths and
 * source addresses only, send() ignores the port and refuses segs, and
 * onBatch gets a second argument: the packets of the wake-up dropped as
 * truncated (MSG_TRUNC), since the caller counts drops per reason. Truncation
 * is the one receive error a raw socket reports per packet.
 *
 * The architecture is tap.c's, for the same reasons (read the comment at the
 * top of tap.c for the why), and so is the code for it (pollfd.c):
 *   - the JS handle object owns a udp_t through napi_wrap; the finalizer closes
 *     the socket, so a forgotten handle does not keep its port bound;
 *   - while polling, the handle is strongly referenced;
 *   - the uv_poll_t lives in a separately allocated box closed with uv_close
 *     and freed in its close callback;
 *   - each box registers an async env cleanup hook, removed only by the
 *     poll's close callback (worker teardown would otherwise run a queued
 *     close callback in an unloaded addon).
 *
 * Nothing is allocated per message: the mmsghdr/iovec/sockaddr/cmsg arrays
 * for receive are made at open (one entry per slot, iovecs pointing at the
 * slots for good), those for send on the first send() (SEND_BATCH entries;
 * bigger batches go out in chunks).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <node_api.h>
#include <uv.h>

#include "common.h"
#include "pollfd.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103 /* linux/udp.h, kernel >= 4.18 */
#endif
#ifndef UDP_GRO
#define UDP_GRO 104 /* linux/udp.h, kernel >= 5.0 */
#endif
#ifndef SO_NO_CHECK
#define SO_NO_CHECK 11
#endif

/* Entries of the preallocated send arrays; send() takes bigger batches in chunks. */
#define SEND_BATCH 1024

/* One control buffer per message, aligned for struct cmsghdr. Receive: the
 * UDP_GRO cmsg carries an int (udp_cmsg_recv); send: UDP_SEGMENT a uint16_t. */
typedef union {
  char buf[CMSG_SPACE(sizeof(int))];
  struct cmsghdr align;
} udp_cmsg_t;

typedef struct {
  pollfd_t pf; /* first member (pollfd.h): env, fd, poll box, self reference */
  bool gro;
  bool raw;      /* openRaw: SOCK_RAW, no ports/segs/GSO/GRO */
  bool hdr_incl; /* raw with IP_HDRINCL */
  uint8_t protocol;
  napi_ref pool_ref;
  napi_ref offsets_ref;
  napi_ref lengths_ref;
  napi_ref addrs_ref;
  napi_ref ports_ref;
  napi_ref segs_ref;
  napi_ref cb_ref; /* NULL: a send-only socket, start() refuses */

  uint8_t *pool;
  uint32_t *offsets;
  uint32_t *lengths;
  uint32_t *addrs;
  uint32_t *ports;
  uint32_t *segs;
  uint32_t rx_base;
  uint32_t slots;
  uint32_t slot_size;
  uint32_t rx_offset; /* a message lands this many bytes into its slot */

  /* Receive arrays, `slots` entries each. */
  struct mmsghdr *rx_msgs;
  struct iovec *rx_iov;
  struct sockaddr_in *rx_names;
  udp_cmsg_t *rx_ctrl;
  uint32_t rx_dirty; /* entries the last recvmmsg filled in (namelen/controllen to reset) */

  /* Send arrays, SEND_BATCH entries each, made on the first send(). */
  struct mmsghdr *tx_msgs;
  struct iovec *tx_iov;
  struct sockaddr_in *tx_names;
  udp_cmsg_t *tx_ctrl;
  uint32_t *tx_index; /* tx entry -> message index of the caller's batch */

  uint64_t rx_errors;
  uint64_t rx_truncated;
  uint64_t rx_messages;
  uint64_t tx_errors;
  uint64_t wakeups;
  uint64_t batches;
  int last_tx_errno;

  uint32_t bind_addr; /* host order */
  uint16_t port;      /* bound port, host order */
  char where[48];     /* "a.b.c.d:port" (UDP) or "protocol N on a.b.c.d" (raw), for messages */
} udp_t;

static void format_addr(char *out, size_t n, uint32_t addr, uint32_t port) {
  snprintf(out, n, "%u.%u.%u.%u:%u", addr >> 24, (addr >> 16) & 0xff, (addr >> 8) & 0xff, addr & 0xff, port);
}

/* ------------------------------------------------------------------------ */
/* Options                                                                  */

/* Like common.h's get_uint_prop/get_bool_prop, whose messages name openTap:
 * errors here must name openUdp or openRaw (`fn`), so these read the value
 * with get_prop and check it themselves. */
static bool opt_uint(napi_env env, const char *fn, napi_value obj, const char *key, bool required, uint32_t def,
                     uint32_t max, uint32_t *out) {
  napi_value v;
  napi_valuetype t;
  if (!get_prop(env, obj, key, &v, &t)) return false;
  if (t == napi_undefined && !required) {
    *out = def;
    return true;
  }
  char msg[256];
  if (t != napi_number) {
    snprintf(msg, sizeof msg, "%s: option '%s' must be an integer in 0..%u%s", fn, key, max,
             t == napi_undefined ? " (it is required)" : "");
    throw_err(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", msg, 0, NULL);
    return false;
  }
  double d;
  napi_get_value_double(env, v, &d);
  if (!(d >= 0) || d > (double)max || d != (double)(uint64_t)d) {
    snprintf(msg, sizeof msg, "%s: option '%s' must be an integer in 0..%u, got %g", fn, key, max, d);
    throw_err(env, ERR_RANGE, "ERR_OUT_OF_RANGE", msg, 0, NULL);
    return false;
  }
  *out = (uint32_t)d;
  return true;
}

/* rcvbuf and sndbuf (0 or left out: the system default), in that order. */
static bool opt_bufs(napi_env env, const char *fn, napi_value obj, uint32_t *rcvbuf, uint32_t *sndbuf) {
  return opt_uint(env, fn, obj, "rcvbuf", false, 0, INT32_MAX, rcvbuf) &&
         opt_uint(env, fn, obj, "sndbuf", false, 0, INT32_MAX, sndbuf);
}

static bool opt_bool(napi_env env, const char *fn, napi_value obj, const char *key, bool *out) {
  napi_value v;
  napi_valuetype t;
  if (!get_prop(env, obj, key, &v, &t)) return false;
  if (t == napi_undefined) {
    *out = false;
    return true;
  }
  if (t != napi_boolean) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s: option '%s' must be a boolean", fn, key);
    throw_err(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", msg, 0, NULL);
    return false;
  }
  napi_get_value_bool(env, v, out);
  return true;
}

/* ------------------------------------------------------------------------ */
/* Closing                                                                  */

static void free_arrays(udp_t *u) {
  free(u->rx_msgs);
  free(u->rx_iov);
  free(u->rx_names);
  free(u->rx_ctrl);
  free(u->tx_msgs);
  free(u->tx_iov);
  free(u->tx_names);
  free(u->tx_ctrl);
  free(u->tx_index);
  u->rx_msgs = NULL;
  u->rx_iov = NULL;
  u->rx_names = NULL;
  u->rx_ctrl = NULL;
  u->tx_msgs = NULL;
  u->tx_iov = NULL;
  u->tx_names = NULL;
  u->tx_ctrl = NULL;
  u->tx_index = NULL;
}

/* pollfd_close() has closed the poll and the socket. */
static void udp_on_close(pollfd_t *p, bool from_hook) {
  (void)from_hook;
  udp_t *u = (udp_t *)p;
  napi_env env = p->env;
  napi_ref *refs[] = {&u->pool_ref, &u->offsets_ref, &u->lengths_ref, &u->addrs_ref,
                      &u->ports_ref, &u->segs_ref, &u->cb_ref};
  for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++) {
    if (*refs[i] != NULL) {
      napi_delete_reference(env, *refs[i]);
      *refs[i] = NULL;
    }
  }
  u->pool = NULL;
  u->offsets = NULL;
  u->lengths = NULL;
  u->addrs = NULL;
  u->ports = NULL;
  u->segs = NULL;
  /* No recvmmsg/sendmmsg can run any more (closed is checked first), and
   * neither holds these across a call into JavaScript. */
  free_arrays(u);
}

static void udp_throw_closed(napi_env env, pollfd_t *p, const char *method) {
  udp_t *u = (udp_t *)p;
  char msg[160];
  snprintf(msg, sizeof msg,
           u->raw ? "raw IPv4 socket (%s) is closed: %s() is not possible after close()"
                  : "UDP socket %s is closed: %s() is not possible after close()",
           u->where, method);
  throw_err(env, ERR_PLAIN, u->raw ? "ERR_RAW_CLOSED" : "ERR_UDP_CLOSED", msg, 0, NULL);
}

/* One kind for both classes: a raw handle is a udp_t with `raw` set. */
static const pollfd_kind_t udp_kind = {
    .not_this_msg = "UdpHandle/RawHandle method called on an object that is neither a UdpHandle nor a RawHandle",
    .throw_closed = udp_throw_closed,
    .on_close = udp_on_close,
};

/* A udp_t (and box) that never got as far as pollfd_watch(). */
static void discard_udp(udp_t *u, pollfd_box_t *box) {
  free_arrays(u);
  free(u);
  pollfd_box_free(box);
}

/* ------------------------------------------------------------------------ */
/* Receive                                                                  */

/* Gives receive entry j back its full name and control lengths: recvmmsg
 * overwrites them with what it filled in. */
static inline void rx_reset(udp_t *u, uint32_t j) {
  struct msghdr *h = &u->rx_msgs[j].msg_hdr;
  h->msg_namelen = sizeof(struct sockaddr_in);
  h->msg_controllen = u->gro ? sizeof(udp_cmsg_t) : 0;
  h->msg_flags = 0;
}

static void on_readable(uv_poll_t *h, int status, int events) {
  (void)events;
  udp_t *u = (udp_t *)pollfd_of(h);
  if (u == NULL || u->pf.closed) return;
  u->wakeups++;
  if (status < 0) {
    /* libuv has already stopped the watcher (POLLERR). */
    u->rx_errors++;
    pollfd_lost(&u->pf);
    return;
  }

  for (uint32_t j = 0; j < u->rx_dirty; j++) rx_reset(u, j);
  u->rx_dirty = 0;

  /* One recvmmsg per wake-up, then one JavaScript call: if more datagrams
   * are queued, level-triggered polling brings us back after other work of
   * the loop has had its turn. */
  int n;
  do {
    n = recvmmsg(u->pf.fd, u->rx_msgs, u->slots, MSG_DONTWAIT, NULL);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) {
    /* An unconnected socket has no pending ICMP errors to report here
     * (no IP_RECVERR), so anything but EAGAIN is unexpected. */
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) u->rx_errors++;
    return;
  }
  u->rx_dirty = (uint32_t)n;

  uint32_t *const offsets = u->offsets, *const lengths = u->lengths;
  uint32_t *const addrs = u->addrs, *const ports = u->ports, *const segs = u->segs;
  const bool raw = u->raw;
  uint32_t count = 0, truncated = 0;
  for (uint32_t j = 0; j < (uint32_t)n; j++) {
    const struct msghdr *mh = &u->rx_msgs[j].msg_hdr;
    /* MSG_TRUNC: the datagram (or, with GRO, the coalesced train; or the raw
     * packet) was longer than the slot; the rest is lost, so none of it is
     * delivered. */
    if (mh->msg_flags & MSG_TRUNC) {
      truncated++;
      continue;
    }
    if (raw) {
      offsets[count] = u->rx_base + j * u->slot_size + u->rx_offset;
      lengths[count] = u->rx_msgs[j].msg_len;
      addrs[count] = ntohl(u->rx_names[j].sin_addr.s_addr);
      count++;
      continue;
    }
    const uint32_t len = u->rx_msgs[j].msg_len;
    uint32_t seg = 0;
    if (u->gro) {
      for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c != NULL; c = CMSG_NXTHDR((struct msghdr *)mh, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
          int gs;
          memcpy(&gs, CMSG_DATA(c), sizeof gs);
          if (gs > 0) seg = (uint32_t)gs;
        }
      }
      if (seg >= len) seg = 0; /* one datagram: no train to split */
    }
    offsets[count] = u->rx_base + j * u->slot_size + u->rx_offset;
    lengths[count] = len;
    addrs[count] = ntohl(u->rx_names[j].sin_addr.s_addr);
    ports[count] = ntohs(u->rx_names[j].sin_port);
    segs[count] = seg;
    count++;
  }
  u->rx_truncated += truncated;
  /* A raw handle's caller also hears of a wake-up that only dropped
   * truncated packets (count 0), so its drop counters stay current. */
  if (count == 0 && (!raw || truncated == 0)) return;
  if (count != 0) u->batches++;
  u->rx_messages += count;

  /* A raw handle's onBatch also gets the truncated count. */
  const uint32_t args[2] = {count, truncated};
  pollfd_call(&u->pf, u->cb_ref, raw ? 2 : 1, args);
  /* `u` may be closed now; it is not touched again. */
}

/* ------------------------------------------------------------------------ */
/* Handle methods                                                           */

static udp_t *this_udp(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv, bool need_open,
                       const char *method) {
  return (udp_t *)pollfd_this(env, info, argc, argv, need_open, method);
}

static napi_value js_start(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  udp_t *u = this_udp(env, info, &argc, NULL, true, "start");
  if (u == NULL) return NULL;
  if (u->cb_ref == NULL) {
    throw_err(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE",
              u->raw ? "start(): this raw socket was opened without onBatch; pass openRaw({ onBatch: (count, truncated) => "
                       "... }) to receive"
                     : "start(): this UDP socket was opened without onBatch; pass openUdp({ onBatch: (count) => ... }) to "
                       "receive",
              0, NULL);
    return NULL;
  }
  pollfd_start(env, &u->pf, on_readable,
               u->raw ? "cannot watch raw IPv4 socket %s for readability" : "cannot watch UDP socket %s for readability",
               u->where);
  return NULL;
}

/* Makes the send arrays on first use. False (nothing thrown) when out of memory. */
static bool tx_arrays(udp_t *u) {
  if (u->tx_msgs != NULL) return true;
  u->tx_msgs = calloc(SEND_BATCH, sizeof *u->tx_msgs);
  u->tx_iov = calloc(SEND_BATCH, sizeof *u->tx_iov);
  u->tx_names = calloc(SEND_BATCH, sizeof *u->tx_names);
  u->tx_ctrl = calloc(SEND_BATCH, sizeof *u->tx_ctrl);
  u->tx_index = calloc(SEND_BATCH, sizeof *u->tx_index);
  if (u->tx_msgs == NULL || u->tx_iov == NULL || u->tx_names == NULL || u->tx_ctrl == NULL || u->tx_index == NULL) {
    free(u->tx_msgs);
    free(u->tx_iov);
    free(u->tx_names);
    free(u->tx_ctrl);
    free(u->tx_index);
    u->tx_msgs = NULL;
    u->tx_iov = NULL;
    u->tx_names = NULL;
    u->tx_ctrl = NULL;
    u->tx_index = NULL;
    return false;
  }
  for (uint32_t k = 0; k < SEND_BATCH; k++) {
    struct msghdr *h = &u->tx_msgs[k].msg_hdr;
    h->msg_name = &u->tx_names[k];
    h->msg_namelen = sizeof(struct sockaddr_in);
    h->msg_iov = &u->tx_iov[k];
    h->msg_iovlen = 1;
    u->tx_names[k].sin_family = AF_INET;
    struct cmsghdr *c = &u->tx_ctrl[k].align;
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
  }
  return true;
}

static inline void tx_refuse(udp_t *u, uint32_t *lens, uint32_t i, int err) {
  lens[i] = 0; /* the contract: a refused message's length becomes 0 */
  u->tx_errors++;
  u->last_tx_errno = err;
}

static napi_value js_send(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  udp_t *u = this_udp(env, info, &argc, argv, true, "send");
  if (u == NULL) return NULL;
  if (argc < 7) {
    throw_err(env, ERR_TYPE, "ERR_MISSING_ARGS",
              "send(pool, offsets, lengths, addrs, port, segs, count) takes 7 arguments (segs may be null)", 0, NULL);
    return NULL;
  }
  void *pool_p = NULL;
  size_t pool_len = 0;
  bool is_buf = false;
  if (napi_is_buffer(env, argv[0], &is_buf) != napi_ok || !is_buf ||
      napi_get_buffer_info(env, argv[0], &pool_p, &pool_len) != napi_ok) {
    throw_err(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", "send: pool must be a Buffer", 0, NULL);
    return NULL;
  }
  uint32_t *offs, *lens, *addrs, *segs = NULL;
  size_t n_offs, n_lens, n_addrs, n_segs = SIZE_MAX;
  if (!get_u32_array(env, argv[1], "send: offsets", &offs, &n_offs)) return NULL;
  if (!get_u32_array(env, argv[2], "send: lengths", &lens, &n_lens)) return NULL;
  if (!get_u32_array(env, argv[3], "send: addrs", &addrs, &n_addrs)) return NULL;
  double dport = 0, dcount;
  /* Raw sockets have no ports: the argument is ignored (pass 0). */
  if (!u->raw && (napi_get_value_double(env, argv[4], &dport) != napi_ok || !(dport >= 1) || dport > 65535 ||
                  dport != (double)(uint32_t)dport)) {
    throw_err(env, ERR_RANGE, "ERR_OUT_OF_RANGE", "send: port must be an integer in 1..65535", 0, NULL);
    return NULL;
  }
  napi_valuetype st;
  napi_typeof(env, argv[5], &st);
  if (u->raw && st != napi_null && st != napi_undefined) {
    /* No GSO on a raw socket: one message is one packet. */
    throw_err(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", "send: segs must be null for a raw socket (one message is one packet)",
              0, NULL);
    return NULL;
  }
  if (st != napi_null && st != napi_undefined &&
      !get_u32_array(env, argv[5], "send: segs (or null)", &segs, &n_segs))
    return NULL;
  if (napi_get_value_double(env, argv[6], &dcount) != napi_ok) {
    throw_err(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", "send: count must be a number", 0, NULL);
    return NULL;
  }
  size_t limit = n_offs;
  if (n_lens < limit) limit = n_lens;
  if (n_addrs < limit) limit = n_addrs;
  if (n_segs < limit) limit = n_segs;
  if (!(dcount >= 0) || dcount != (double)(uint64_t)dcount || dcount > (double)limit) {
    char msg[240];
    snprintf(msg, sizeof msg,
             "send: count must be an integer in 0..%zu (the shortest of offsets, lengths, addrs%s), got %g", limit,
             segs != NULL ? ", segs" : "", dcount);
    throw_err(env, ERR_RANGE, "ERR_OUT_OF_RANGE", msg, 0, NULL);
    return NULL;
  }
  const uint32_t count = (uint32_t)dcount;
  const uint16_t port_be = htons((uint16_t)dport);
  uint8_t *const pool = pool_p;
  if (count > 0 && !tx_arrays(u)) {
    throw_err(env, ERR_PLAIN, "ENOMEM", "send: out of memory for the send arrays", ENOMEM, NULL);
    return NULL;
  }

  uint32_t sent = 0;
  uint32_t i = 0;
  bool full = false;
  while (i < count && !full) {
    /* Fill up to SEND_BATCH entries with the messages that may go out. */
    uint32_t n = 0;
    for (; i < count && n < SEND_BATCH; i++) {
      const uint32_t off = offs[i], len = lens[i];
      if (len == 0 || (uint64_t)off + len > pool_len) {
        /* Never hand the kernel memory outside the pool. Zero-length
         * datagrams are refused too: length 0 is the "refused" marker. */
        tx_refuse(u, lens, i, len == 0 ? EINVAL : EFAULT);
        continue;
      }
      struct msghdr *h = &u->tx_msgs[n].msg_hdr;
      u->tx_iov[n].iov_base = pool + off;
      u->tx_iov[n].iov_len = len;
      u->tx_names[n].sin_addr.s_addr = htonl(addrs[i]);
      u->tx_names[n].sin_port = port_be;
      h->msg_flags = 0;
      const uint32_t seg = segs != NULL ? segs[i] : 0;
      if (seg > 0 && len > seg) {
        if (seg > 0xffff) {
          tx_refuse(u, lens, i, EINVAL);
          continue;
        }
        const uint16_t s16 = (uint16_t)seg;
        memcpy(CMSG_DATA(&u->tx_ctrl[n].align), &s16, sizeof s16);
        h->msg_control = u->tx_ctrl[n].buf;
        h->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
      } else {
        h->msg_control = NULL;
        h->msg_controllen = 0;
      }
      u->tx_index[n++] = i;
    }

    /* sendmmsg stops at the first message that fails and reports only what
     * went before it (the error surfaces only if nothing was sent), so the
     * failing one is the first of the next call: refuse it and go on. */
    uint32_t k = 0;
    while (k < n) {
      int r = sendmmsg(u->pf.fd, u->tx_msgs + k, n - k, MSG_DONTWAIT);
      if (r > 0) {
        sent += (uint32_t)r;
        k += (uint32_t)r;
        continue;
      }
      int err = r < 0 ? errno : EIO;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) {
        /* The socket's send buffer (or the device queue) is full: what is
         * left of the batch would fail the same way, and blocking the loop
         * is never an option. Drop it all. */
        for (; k < n; k++) tx_refuse(u, lens, u->tx_index[k], err);
        full = true;
        break;
      }
      /* EMSGSIZE, ENETUNREACH, EHOSTUNREACH, EINVAL (e.g. GSO with noCheck,
       * too many segments; a raw IP_HDRINCL message shorter than its header),
       * EACCES (broadcast)...: only this message. */
      tx_refuse(u, lens, u->tx_index[k], err);
      k++;
    }
  }
  if (full) {
    for (; i < count; i++) tx_refuse(u, lens, i, u->last_tx_errno);
  }
  napi_value result;
  napi_create_uint32(env, sent, &result);
  return result;
}

static napi_value js_stats(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  udp_t *u = this_udp(env, info, &argc, NULL, false, "stats");
  if (u == NULL) return NULL;
  napi_value obj, v;
  NAPI_OK_OR_THROW(napi_create_object(env, &obj), "create object");
  const struct {
    const char *k;
    uint64_t v;
  } f[] = {{"rxErrors", u->rx_errors},   {"rxTruncated", u->rx_truncated},
           {"txErrors", u->tx_errors},   {"lastTxErrno", (uint64_t)u->last_tx_errno},
           {"wakeups", u->wakeups},      {"batches", u->batches},
           {"rxMessages", u->rx_messages}};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
    napi_create_double(env, (double)f[i].v, &v);
    napi_set_named_property(env, obj, f[i].k, v);
  }
  return obj;
}

/* ------------------------------------------------------------------------ */
/* openUdp, openRaw                                                         */

/* Socket buffer size: the *FORCE option ignores net.core.[rw]mem_max but
 * needs CAP_NET_ADMIN; without it the plain option is capped silently. */
static int set_buf(int fd, int force_opt, int opt, uint32_t bytes) {
  int v = bytes > INT32_MAX ? INT32_MAX : (int)bytes;
  if (setsockopt(fd, SOL_SOCKET, force_opt, &v, sizeof v) == 0) return 0;
  if (errno != EPERM) return errno;
  return setsockopt(fd, SOL_SOCKET, opt, &v, sizeof v) == 0 ? 0 : errno;
}

/* rcvbuf and sndbuf, each unless 0: 0, or an errno with *fail naming the option. */
static int set_bufs(int fd, uint32_t rcvbuf, uint32_t sndbuf, const char **fail) {
  int err;
  if (rcvbuf != 0 && (err = set_buf(fd, SO_RCVBUFFORCE, SO_RCVBUF, rcvbuf)) != 0) {
    *fail = "setsockopt(SO_RCVBUF)";
    return err;
  }
  if (sndbuf != 0 && (err = set_buf(fd, SO_SNDBUFFORCE, SO_SNDBUF, sndbuf)) != 0) {
    *fail = "setsockopt(SO_SNDBUF)";
    return err;
  }
  return 0;
}

/* Returns the socket, or -1 with an exception pending. */
static int open_udp_fd(napi_env env, uint32_t bind_addr, uint32_t port, uint32_t rcvbuf, uint32_t sndbuf, bool gro,
                       bool no_check, bool no_df, char *where, uint16_t *bound_port) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    int err = errno;
    if (err == EMFILE || err == ENFILE)
      throw_sys(env, err, "socket", "too many open files to open a UDP socket for %s: close some or raise the limit (ulimit -n)", where);
    else
      throw_sys(env, err, "socket", "cannot open a UDP socket for %s", where);
    return -1;
  }
  int err;
  const char *fail = NULL;
  const int one = 1;
  if ((err = set_bufs(fd, rcvbuf, sndbuf, &fail)) != 0) goto sockopt_failed;
  if (gro && setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) < 0) {
    err = errno;
    close(fd);
    throw_sys(env, err, "setsockopt(UDP_GRO)",
              "cannot enable UDP GRO on the socket for %s: it needs Linux >= 5.0; open without gro", where);
    return -1;
  }
  if (no_check && setsockopt(fd, SOL_SOCKET, SO_NO_CHECK, &one, sizeof one) < 0) {
    err = errno;
    fail = "setsockopt(SO_NO_CHECK)";
    goto sockopt_failed;
  }
  /* Outer DF clear, as the kernel's vxlan sends (IP_PMTUDISC_DONT). */
  const int dont = IP_PMTUDISC_DONT;
  if (no_df && setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &dont, sizeof dont) < 0) {
    err = errno;
    fail = "setsockopt(IP_MTU_DISCOVER)";
    goto sockopt_failed;
  }

  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(bind_addr);
  sa.sin_port = htons((uint16_t)port);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    err = errno;
    close(fd);
    switch (err) {
      case EADDRNOTAVAIL:
        throw_sys(env, err, "bind",
                  "cannot bind UDP %s: that address is not on any interface in this process's network namespace; "
                  "add it (ip addr add) or bind to 0.0.0.0 (bindAddr 0)", where);
        break;
      case EADDRINUSE:
        throw_sys(env, err, "bind",
                  "cannot bind UDP %s: another socket already has that port; close it, pick another port, or use "
                  "port 0 for an ephemeral one", where);
        break;
      case EACCES:
        throw_sys(env, err, "bind", "cannot bind UDP %s: ports below 1024 need root or CAP_NET_BIND_SERVICE", where);
        break;
      default:
        throw_sys(env, err, "bind", "cannot bind UDP %s", where);
    }
    return -1;
  }
  socklen_t sl = sizeof sa;
  if (getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
    err = errno;
    close(fd);
    throw_sys(env, err, "getsockname", "cannot read the port the UDP socket for %s was bound to", where);
    return -1;
  }
  *bound_port = ntohs(sa.sin_port);
  return fd;

sockopt_failed:
  close(fd);
  throw_sys(env, err, fail, "cannot set a socket option on the UDP socket for %s", where);
  return -1;
}

/* Returns a raw IPv4 socket of `protocol`, or -1 with an exception pending. */
static int open_raw_fd(napi_env env, uint32_t protocol, bool hdr_incl, uint32_t bind_addr, uint32_t rcvbuf,
                       uint32_t sndbuf, const char *where) {
  int fd = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, (int)protocol);
  if (fd < 0) {
    int err = errno;
    if (err == EPERM || err == EACCES)
      throw_sys(env, err, "socket", "cannot open a raw IPv4 socket of %s: it needs root or CAP_NET_RAW", where);
    else if (err == EMFILE || err == ENFILE)
      throw_sys(env, err, "socket", "too many open files to open a raw IPv4 socket of %s: close some or raise the limit (ulimit -n)", where);
    else
      throw_sys(env, err, "socket", "cannot open a raw IPv4 socket of %s", where);
    return -1;
  }
  int err;
  const char *fail = NULL;
  const int one = 1;
  if ((err = set_bufs(fd, rcvbuf, sndbuf, &fail)) != 0) goto sockopt_failed;
  /* IPPROTO_RAW (255) implies IP_HDRINCL; setting it again is harmless. */
  if (hdr_incl && setsockopt(fd, IPPROTO_IP, IP_HDRINCL, &one, sizeof one) < 0) {
    err = errno;
    fail = "setsockopt(IP_HDRINCL)";
    goto sockopt_failed;
  }
  if (bind_addr != 0) {
    /* A bound raw socket receives only packets to that address, and sends
     * (without IP_HDRINCL) from it. */
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(bind_addr);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
      err = errno;
      close(fd);
      if (err == EADDRNOTAVAIL)
        throw_sys(env, err, "bind",
                  "cannot bind the raw IPv4 socket of %s: that address is not on any interface in this process's network "
                  "namespace; add it (ip addr add) or leave bindAddr out (0) to receive on every address",
                  where);
      else
        throw_sys(env, err, "bind", "cannot bind the raw IPv4 socket of %s", where);
      return -1;
    }
  }
  return fd;

sockopt_failed:
  close(fd);
  throw_sys(env, err, fail, "cannot set a socket option on the raw IPv4 socket of %s", where);
  return -1;
}

/* What openUdp and openRaw share: the pool, the receive region and arrays,
 * onBatch. `fn` names the function in messages. */
#define MAX_ARRAYS 5
typedef struct {
  const char *fn;
  napi_value pool_v;
  void *pool;
  size_t pool_len;
  uint32_t rx_base, slots, slot_size, rx_offset;
  int n_arrays; /* offsets, lengths, addrs[, ports, segs] */
  napi_value arr_v[MAX_ARRAYS];
  uint32_t *arr[MAX_ARRAYS];
  napi_value cb_v;
  bool has_cb;
} common_opts_t;

static const char *const arr_keys[MAX_ARRAYS] = {"offsets", "lengths", "addrs", "ports", "segs"};

/* Reads and checks the shared options; false with an exception pending. */
static bool read_common(napi_env env, napi_value opts, common_opts_t *c) {
  const char *fn = c->fn;
  char msg[400];
  napi_valuetype t;
  bool is_buf = false;
  if (!get_prop(env, opts, "pool", &c->pool_v, &t)) return false;
  if (napi_is_buffer(env, c->pool_v, &is_buf) != napi_ok || !is_buf ||
      napi_get_buffer_info(env, c->pool_v, &c->pool, &c->pool_len) != napi_ok) {
    snprintf(msg, sizeof msg, "%s: option 'pool' must be a Buffer", fn);
    throw_err(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", msg, 0, NULL);
    return false;
  }
  if (!opt_uint(env, fn, opts, "rxBase", true, 0, UINT32_MAX, &c->rx_base)) return false;
  if (!opt_uint(env, fn, opts, "slots", true, 0, UINT32_MAX, &c->slots)) return false;
  if (!opt_uint(env, fn, opts, "slotSize", true, 0, UINT32_MAX, &c->slot_size)) return false;
  if (!opt_uint(env, fn, opts, "rxOffset", false, 0, UINT32_MAX, &c->rx_offset)) return false;

  size_t arr_n[MAX_ARRAYS];
  for (int k = 0; k < c->n_arrays; k++) {
    char what[64];
    snprintf(what, sizeof what, "%s: option '%s'", fn, arr_keys[k]);
    if (!get_prop(env, opts, arr_keys[k], &c->arr_v[k], &t)) return false;
    if (!get_u32_array(env, c->arr_v[k], what, &c->arr[k], &arr_n[k])) return false;
  }
  if (!get_prop(env, opts, "onBatch", &c->cb_v, &t)) return false;
  if (t != napi_function && t != napi_undefined) {
    snprintf(msg, sizeof msg,
             "%s: option 'onBatch' must be a function %s => void, or left out for a send-only socket", fn,
             c->n_arrays == 3 ? "(count: number, truncated: number)" : "(count: number)");
    throw_err(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", msg, 0, NULL);
    return false;
  }
  c->has_cb = t == napi_function;

  if (c->slots == 0) {
    snprintf(msg, sizeof msg, "%s: 'slots' must be at least 1", fn);
    throw_err(env, ERR_RANGE, "ERR_OUT_OF_RANGE", msg, 0, NULL);
    return false;
  }
  if (c->slots > 1u << 20) {
    snprintf(msg, sizeof msg, "%s: 'slots' must be at most 1048576", fn);
    throw_err(env, ERR_RANGE, "ERR_OUT_OF_RANGE", msg, 0, NULL);
    return false;
  }
  if (c->slot_size == 0) {
    snprintf(msg, sizeof msg,
             "%s: 'slotSize' must be at least 1 (a %s longer than the slot is dropped and counted in rxTruncated)", fn,
             c->n_arrays == 3 ? "packet" : "datagram");
    throw_err(env, ERR_RANGE, "ERR_OUT_OF_RANGE", msg, 0, NULL);
    return false;
  }
  if (c->rx_offset >= c->slot_size) {
    snprintf(msg, sizeof msg, "%s: 'rxOffset' (%u) must be less than 'slotSize' (%u): a slot holds slotSize - rxOffset bytes",
             fn, c->rx_offset, c->slot_size);
    throw_err(env, ERR_RANGE, "ERR_OUT_OF_RANGE", msg, 0, NULL);
    return false;
  }
  const uint64_t rx_end = (uint64_t)c->rx_base + (uint64_t)c->slots * c->slot_size;
  if (rx_end > c->pool_len) {
    snprintf(msg, sizeof msg,
             "%s: the receive region rxBase + slots*slotSize = %u + %u*%u = %llu does not fit in the pool of %zu bytes", fn,
             c->rx_base, c->slots, c->slot_size, (unsigned long long)rx_end, c->pool_len);
    throw_err(env, ERR_RANGE, "ERR_OUT_OF_RANGE", msg, 0, NULL);
    return false;
  }
  if (rx_end > (uint64_t)UINT32_MAX) {
    snprintf(msg, sizeof msg, "%s: the receive region must end below 4 GiB (offsets are Uint32)", fn);
    throw_err(env, ERR_RANGE, "ERR_OUT_OF_RANGE", msg, 0, NULL);
    return false;
  }
  for (int k = 0; k < c->n_arrays; k++) {
    if (arr_n[k] < c->slots) {
      snprintf(msg, sizeof msg, "%s: option '%s' has %zu entries; it must hold at least slots = %u", fn, arr_keys[k],
               arr_n[k], c->slots);
      throw_err(env, ERR_RANGE, "ERR_OUT_OF_RANGE", msg, 0, NULL);
      return false;
    }
  }
  return true;
}

/* A udp_t with its receive arrays (and a poll box), or NULL with ENOMEM thrown. */
static udp_t *alloc_udp(napi_env env, const common_opts_t *c, bool gro, pollfd_box_t **box_out) {
  udp_t *u = calloc(1, sizeof *u);
  pollfd_box_t *box = pollfd_box_new();
  if (u != NULL) {
    u->rx_msgs = calloc(c->slots, sizeof *u->rx_msgs);
    u->rx_iov = calloc(c->slots, sizeof *u->rx_iov);
    u->rx_names = calloc(c->slots, sizeof *u->rx_names);
    u->rx_ctrl = gro ? calloc(c->slots, sizeof *u->rx_ctrl) : NULL;
  }
  if (u == NULL || box == NULL || u->rx_msgs == NULL || u->rx_iov == NULL || u->rx_names == NULL ||
      (gro && u->rx_ctrl == NULL)) {
    if (u != NULL) free_arrays(u);
    free(u);
    pollfd_box_free(box);
    char msg[64];
    snprintf(msg, sizeof msg, "%s: out of memory", c->fn);
    throw_err(env, ERR_PLAIN, "ENOMEM", msg, ENOMEM, NULL);
    return NULL;
  }
  pollfd_init(&u->pf, env, &udp_kind);
  *box_out = box;
  return u;
}

/* Points the receive entries at the slots, watches the socket and wraps `u`
 * in a new object of class `ctor_ref`; returns it, or NULL with an exception
 * pending (the socket closed, nothing leaked). */
static napi_value finish_handle(napi_env env, const common_opts_t *c, udp_t *u, pollfd_box_t *box, int fd,
                                napi_ref ctor_ref, const char *resource) {
  napi_value ctor, obj;
  uv_loop_t *loop = NULL;
  char msg[128];
  if (napi_get_reference_value(env, ctor_ref, &ctor) != napi_ok || napi_get_uv_event_loop(env, &loop) != napi_ok) {
    close(fd);
    discard_udp(u, box);
    snprintf(msg, sizeof msg, "%s: internal N-API failure (constructor, event loop)", c->fn);
    throw_err(env, ERR_PLAIN, "ERR_TAPNET_NAPI", msg, 0, NULL);
    return NULL;
  }
  u->pool = c->pool;
  u->offsets = c->arr[0];
  u->lengths = c->arr[1];
  u->addrs = c->arr[2];
  u->ports = c->n_arrays > 3 ? c->arr[3] : NULL;
  u->segs = c->n_arrays > 4 ? c->arr[4] : NULL;
  u->rx_base = c->rx_base;
  u->slots = c->slots;
  u->slot_size = c->slot_size;
  u->rx_offset = c->rx_offset;
  for (uint32_t j = 0; j < c->slots; j++) {
    struct msghdr *h = &u->rx_msgs[j].msg_hdr;
    u->rx_iov[j].iov_base = (uint8_t *)c->pool + c->rx_base + (size_t)j * c->slot_size + c->rx_offset;
    u->rx_iov[j].iov_len = c->slot_size - c->rx_offset;
    h->msg_iov = &u->rx_iov[j];
    h->msg_iovlen = 1;
    h->msg_name = &u->rx_names[j];
    h->msg_control = u->gro ? u->rx_ctrl[j].buf : NULL;
    rx_reset(u, j);
  }

  int rc = pollfd_watch(&u->pf, box, loop, fd);
  if (rc < 0) {
    throw_sys(env, -rc, "uv_poll_init", u->raw ? "cannot watch raw IPv4 socket %s" : "cannot watch UDP socket %s",
              u->where);
    close(fd);
    discard_udp(u, box);
    return NULL;
  }

  /* From here on pollfd_close() undoes whatever was set up. */
  if (!pollfd_wrap(env, &u->pf, ctor, &obj)) {
    snprintf(msg, sizeof msg, "%s: cannot create the handle object", c->fn);
    throw_err(env, ERR_PLAIN, "ERR_TAPNET_NAPI", msg, 0, NULL);
    return NULL;
  }
  /* The wrap owns `u` now: on any failure below, close and let GC free it. */
  napi_ref *arr_refs[MAX_ARRAYS] = {&u->offsets_ref, &u->lengths_ref, &u->addrs_ref, &u->ports_ref, &u->segs_ref};
  bool ok = pollfd_setup(env, &u->pf, obj, resource) &&
            napi_create_reference(env, c->pool_v, 1, &u->pool_ref) == napi_ok;
  for (int k = 0; ok && k < c->n_arrays; k++) ok = napi_create_reference(env, c->arr_v[k], 1, arr_refs[k]) == napi_ok;
  ok = ok && (!c->has_cb || napi_create_reference(env, c->cb_v, 1, &u->cb_ref) == napi_ok);

  /* What the kernel granted: Linux reports twice the size asked for (the
   * bookkeeping overhead it allows for). */
  int rcv = 0, snd = 0;
  socklen_t il = sizeof rcv;
  getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, &il);
  il = sizeof snd;
  getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, &il);
  napi_value v1, v2, rcv_v, snd_v;
  ok = ok && napi_create_int32(env, rcv, &rcv_v) == napi_ok && napi_create_int32(env, snd, &snd_v) == napi_ok;
  if (ok && u->raw) {
    ok = napi_create_uint32(env, u->protocol, &v1) == napi_ok && napi_get_boolean(env, u->hdr_incl, &v2) == napi_ok;
    if (ok) {
      napi_property_descriptor props[] = {
          {"protocol", NULL, NULL, NULL, NULL, v1, napi_enumerable, NULL},
          {"hdrIncl", NULL, NULL, NULL, NULL, v2, napi_enumerable, NULL},
          {"rcvbuf", NULL, NULL, NULL, NULL, rcv_v, napi_enumerable, NULL},
          {"sndbuf", NULL, NULL, NULL, NULL, snd_v, napi_enumerable, NULL},
      };
      ok = napi_define_properties(env, obj, sizeof props / sizeof props[0], props) == napi_ok;
    }
  } else if (ok) {
    ok = napi_create_uint32(env, u->port, &v1) == napi_ok;
    if (ok) {
      napi_property_descriptor props[] = {
          {"port", NULL, NULL, NULL, NULL, v1, napi_enumerable, NULL},
          {"rcvbuf", NULL, NULL, NULL, NULL, rcv_v, napi_enumerable, NULL},
          {"sndbuf", NULL, NULL, NULL, NULL, snd_v, napi_enumerable, NULL},
      };
      ok = napi_define_properties(env, obj, sizeof props / sizeof props[0], props) == napi_ok;
    }
  }
  if (!ok) {
    pollfd_close(&u->pf, false);
    snprintf(msg, sizeof msg, "%s: cannot set up the handle object", c->fn);
    throw_err(env, ERR_PLAIN, "ERR_TAPNET_NAPI", msg, 0, NULL);
    return NULL;
  }
  return obj;
}

/* The options object of openUdp/openRaw, or NULL with a TypeError thrown. */
static napi_value options_arg(napi_env env, napi_callback_info cbinfo, const char *fn) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_OK_OR_THROW(napi_get_cb_info(env, cbinfo, &argc, argv, NULL, NULL), "get_cb_info");
  napi_valuetype vt = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &vt);
  if (vt != napi_object) {
    char msg[80];
    snprintf(msg, sizeof msg, "%s(options): options must be an object", fn);
    throw_err(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", msg, 0, NULL);
    return NULL;
  }
  return argv[0];
}

static napi_value js_open_udp(napi_env env, napi_callback_info cbinfo) {
  const char *fn = "openUdp";
  napi_value opts = options_arg(env, cbinfo, fn);
  if (opts == NULL) return NULL;

  /* Everything is validated before the socket is made, so a bad call never
   * leaves a socket (or a bound port) behind. */
  uint32_t bind_addr, port, rcvbuf, sndbuf;
  bool gro, no_check, no_df;
  if (!opt_uint(env, fn, opts, "bindAddr", true, 0, UINT32_MAX, &bind_addr)) return NULL;
  if (!opt_uint(env, fn, opts, "port", true, 0, 65535, &port)) return NULL;
  if (!opt_bufs(env, fn, opts, &rcvbuf, &sndbuf)) return NULL;
  if (!opt_bool(env, fn, opts, "gro", &gro)) return NULL;
  if (!opt_bool(env, fn, opts, "noCheck", &no_check)) return NULL;
  if (!opt_bool(env, fn, opts, "noDf", &no_df)) return NULL;
  common_opts_t c = {.fn = fn, .n_arrays = 5};
  if (!read_common(env, opts, &c)) return NULL;

  addon_data_t *ad = NULL;
  NAPI_OK_OR_THROW(napi_get_instance_data(env, (void **)&ad), "instance data");
  pollfd_box_t *box = NULL;
  udp_t *u = alloc_udp(env, &c, gro, &box);
  if (u == NULL) return NULL;
  format_addr(u->where, sizeof u->where, bind_addr, port);
  uint16_t bound_port = 0;
  int fd = open_udp_fd(env, bind_addr, port, rcvbuf, sndbuf, gro, no_check, no_df, u->where, &bound_port);
  if (fd < 0) {
    discard_udp(u, box);
    return NULL;
  }
  u->gro = gro;
  u->bind_addr = bind_addr;
  u->port = bound_port;
  format_addr(u->where, sizeof u->where, bind_addr, bound_port);
  return finish_handle(env, &c, u, box, fd, ad->udp_ctor, "tapnet:UdpSocket");
}

static napi_value js_open_raw(napi_env env, napi_callback_info cbinfo) {
  const char *fn = "openRaw";
  napi_value opts = options_arg(env, cbinfo, fn);
  if (opts == NULL) return NULL;

  uint32_t protocol, bind_addr, rcvbuf, sndbuf;
  bool hdr_incl;
  if (!opt_uint(env, fn, opts, "protocol", true, 0, 255, &protocol)) return NULL;
  if (protocol == 0) {
    /* 0 is IPPROTO_IP, which the kernel refuses for SOCK_RAW (EPROTONOSUPPORT). */
    throw_err(env, ERR_RANGE, "ERR_OUT_OF_RANGE",
              "openRaw: option 'protocol' must be an IP protocol number in 1..255 (4 = IPIP, 255 = IPPROTO_RAW, send only)",
              0, NULL);
    return NULL;
  }
  if (!opt_bool(env, fn, opts, "hdrIncl", &hdr_incl)) return NULL;
  if (!opt_uint(env, fn, opts, "bindAddr", false, 0, UINT32_MAX, &bind_addr)) return NULL;
  if (!opt_bufs(env, fn, opts, &rcvbuf, &sndbuf)) return NULL;
  common_opts_t c = {.fn = fn, .n_arrays = 3};
  if (!read_common(env, opts, &c)) return NULL;

  addon_data_t *ad = NULL;
  NAPI_OK_OR_THROW(napi_get_instance_data(env, (void **)&ad), "instance data");
  pollfd_box_t *box = NULL;
  udp_t *u = alloc_udp(env, &c, false, &box);
  if (u == NULL) return NULL;
  snprintf(u->where, sizeof u->where, "protocol %u on %u.%u.%u.%u", protocol, bind_addr >> 24, (bind_addr >> 16) & 0xff,
           (bind_addr >> 8) & 0xff, bind_addr & 0xff);
  int fd = open_raw_fd(env, protocol, hdr_incl, bind_addr, rcvbuf, sndbuf, u->where);
  if (fd < 0) {
    discard_udp(u, box);
    return NULL;
  }
  u->raw = true;
  /* IPPROTO_RAW sockets always have IP_HDRINCL. */
  u->hdr_incl = hdr_incl || protocol == IPPROTO_RAW;
  u->protocol = (uint8_t)protocol;
  u->bind_addr = bind_addr;
  return finish_handle(env, &c, u, box, fd, ad->raw_ctor, "tapnet:RawSocket");
}

/* ------------------------------------------------------------------------ */
/* Module part                                                              */

bool udp_init(napi_env env, napi_value exports, addon_data_t *ad) {
  napi_property_descriptor methods[] = {
      /* data: the kind, which pollfd_this() checks `this` against */
      {"start", NULL, js_start, NULL, NULL, NULL, napi_default_method, (void *)&udp_kind},
      {"stop", NULL, pollfd_js_stop, NULL, NULL, NULL, napi_default_method, (void *)&udp_kind},
      {"send", NULL, js_send, NULL, NULL, NULL, napi_default_method, (void *)&udp_kind},
      {"stats", NULL, js_stats, NULL, NULL, NULL, napi_default_method, (void *)&udp_kind},
      {"close", NULL, pollfd_js_close, NULL, NULL, NULL, napi_default_method, (void *)&udp_kind},
      {"fd", NULL, NULL, pollfd_js_get_fd, NULL, NULL, napi_enumerable, (void *)&udp_kind},
  };
  /* Two classes over one implementation: a raw handle is a udp_t with `raw` set. */
  napi_value ctor, raw_ctor;
  if (napi_define_class(env, "UdpHandle", NAPI_AUTO_LENGTH, pollfd_js_ctor, NULL, sizeof methods / sizeof methods[0], methods,
                        &ctor) != napi_ok ||
      napi_create_reference(env, ctor, 1, &ad->udp_ctor) != napi_ok ||
      napi_define_class(env, "RawHandle", NAPI_AUTO_LENGTH, pollfd_js_ctor, NULL, sizeof methods / sizeof methods[0], methods,
                        &raw_ctor) != napi_ok ||
      napi_create_reference(env, raw_ctor, 1, &ad->raw_ctor) != napi_ok) {
    throw_err(env, ERR_PLAIN, "ERR_TAPNET_NAPI", "tapnet: cannot define UdpHandle and RawHandle", 0, NULL);
    return false;
  }
  napi_property_descriptor fns[] = {
      {"openUdp", NULL, js_open_udp, NULL, NULL, NULL, napi_enumerable, NULL},
      {"openRaw", NULL, js_open_raw, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns) != napi_ok) {
    throw_err(env, ERR_PLAIN, "ERR_TAPNET_NAPI", "tapnet: cannot export openUdp and openRaw", 0, NULL);
    return false;
  }
  return true;
}
