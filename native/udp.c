/*
 * Batched UDP sockets for the tunnel underlay (VXLAN): recvmmsg/sendmmsg,
 * UDP GSO (UDP_SEGMENT) and GRO (UDP_GRO); and, on the same machinery, batched
 * raw IPv4 sockets of one protocol (openRaw, for IPIP: RFC 2003).
 *
 * `dgram` makes one syscall and one JavaScript call per datagram; here one
 * uv_poll wake-up is one recvmmsg of up to `slots` datagrams straight into
 * the caller's pool and one onBatch(count) call, and one send() is one (or a few) sendmmsg calls for a whole batch.
 * sendv() is send() with a gather list per message (header and payload from different
 * places in the pool: the payload is copied once, by the kernel).
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
 * Both are handles of pollfd.h (its lifetime rules: the JS object owns the
 * socket, a polling handle is strongly referenced, the uv_poll_t is closed
 * apart, environment teardown waits for it), as a TAP is.
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
/* Gather entries of one sendmmsg of sendv(); a message has at most
 * SEND_MAX_IOV (the kernel's UIO_MAXIOV). */
#define SEND_GATHER 8192
#define SEND_MAX_IOV 1024
/* send() and sendv() arguments, at most. */
#define SEND_MAX_ARGS 10

/* One control buffer per message, aligned for struct cmsghdr. Receive: the
 * UDP_GRO cmsg carries an int (udp_cmsg_recv); send: UDP_SEGMENT a uint16_t. */
typedef union {
  char buf[CMSG_SPACE(sizeof(int))];
  struct cmsghdr align;
} udp_cmsg_t;

/* The arrays of one recvmmsg or sendmmsg, n entries each, in one allocation. */
typedef struct {
  struct mmsghdr *msgs;
  struct iovec *iov;
  udp_cmsg_t *ctrl;
  struct sockaddr_in *names;
  uint32_t *index; /* send: entry -> message index of the caller's batch */
} msg_arrays_t;

typedef struct {
  pollfd_t pf; /* first member (pollfd.h): fd, poll, references, counters */
  bool gro;
  bool raw;      /* openRaw: SOCK_RAW, no ports/segs/GSO/GRO */
  bool hdr_incl; /* raw with IP_HDRINCL */
  uint8_t protocol;

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

  msg_arrays_t rx;   /* `slots` entries, made at open */
  uint32_t rx_dirty; /* entries the last recvmmsg filled in (namelen/controllen to reset) */
  msg_arrays_t tx;   /* SEND_BATCH entries, made on the first send() */
  struct iovec *gather; /* SEND_GATHER entries, made on the first sendv() */
} udp_t;

static void format_addr(char *out, size_t n, uint32_t addr, uint32_t port) {
  snprintf(out, n, "%u.%u.%u.%u:%u", addr >> 24, (addr >> 16) & 0xff, (addr >> 8) & 0xff, addr & 0xff, port);
}

static bool msg_arrays_alloc(msg_arrays_t *a, size_t n) {
  const size_t each = sizeof *a->msgs + sizeof *a->iov + sizeof *a->ctrl + sizeof *a->names + sizeof *a->index;
  uint8_t *b = calloc(n, each);
  if (b == NULL) return false;
  /* Largest alignment first: every array starts aligned for its type. */
  a->msgs = (struct mmsghdr *)b;
  a->iov = (struct iovec *)(a->msgs + n);
  a->ctrl = (udp_cmsg_t *)(a->iov + n);
  a->names = (struct sockaddr_in *)(a->ctrl + n);
  a->index = (uint32_t *)(a->names + n);
  return true;
}

static void msg_arrays_free(msg_arrays_t *a) {
  free(a->msgs);
  memset(a, 0, sizeof *a);
}

/* pollfd_close() has closed the poll and the socket, and dropped the references. */
static void udp_on_close(pollfd_t *p, bool from_hook) {
  (void)from_hook;
  udp_t *u = (udp_t *)p;
  u->pool = NULL;
  u->offsets = u->lengths = u->addrs = u->ports = u->segs = NULL;
  /* No recvmmsg/sendmmsg can run any more (closed is checked first), and
   * neither holds these across a call into JavaScript. */
  msg_arrays_free(&u->rx);
  msg_arrays_free(&u->tx);
  free(u->gather);
  u->gather = NULL;
}

/* ------------------------------------------------------------------------ */
/* Receive                                                                  */

/* Gives receive entry j back its full name and control lengths: recvmmsg
 * overwrites them with what it filled in. */
static inline void rx_reset(udp_t *u, uint32_t j) {
  struct msghdr *h = &u->rx.msgs[j].msg_hdr;
  h->msg_namelen = sizeof(struct sockaddr_in);
  h->msg_controllen = u->gro ? sizeof(udp_cmsg_t) : 0;
  h->msg_flags = 0;
}

static void on_readable(uv_poll_t *h, int status, int events) {
  (void)events;
  udp_t *u = (udp_t *)pollfd_wakeup(h, status);
  if (u == NULL) return;

  for (uint32_t j = 0; j < u->rx_dirty; j++) rx_reset(u, j);
  u->rx_dirty = 0;

  /* One recvmmsg per wake-up, then one JavaScript call: if more datagrams
   * are queued, level-triggered polling brings us back after other work of
   * the loop has had its turn. */
  int n;
  do {
    n = recvmmsg(u->pf.fd, u->rx.msgs, u->slots, MSG_DONTWAIT, NULL);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) {
    /* An unconnected socket has no pending ICMP errors to report here
     * (no IP_RECVERR), so anything but EAGAIN is unexpected. */
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) u->pf.stats.rx_errors++;
    return;
  }
  u->rx_dirty = (uint32_t)n;

  uint32_t *const offsets = u->offsets, *const lengths = u->lengths;
  uint32_t *const addrs = u->addrs, *const ports = u->ports, *const segs = u->segs;
  const bool raw = u->raw;
  uint32_t count = 0, truncated = 0;
  for (uint32_t j = 0; j < (uint32_t)n; j++) {
    const struct msghdr *mh = &u->rx.msgs[j].msg_hdr;
    /* MSG_TRUNC: the datagram (or, with GRO, the coalesced train; or the raw
     * packet) was longer than the slot; the rest is lost, so none of it is
     * delivered. */
    if (mh->msg_flags & MSG_TRUNC) {
      truncated++;
      continue;
    }
    if (raw) {
      offsets[count] = u->rx_base + j * u->slot_size + u->rx_offset;
      lengths[count] = u->rx.msgs[j].msg_len;
      addrs[count] = ntohl(u->rx.names[j].sin_addr.s_addr);
      count++;
      continue;
    }
    const uint32_t len = u->rx.msgs[j].msg_len;
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
    addrs[count] = ntohl(u->rx.names[j].sin_addr.s_addr);
    ports[count] = ntohs(u->rx.names[j].sin_port);
    segs[count] = seg;
    count++;
  }
  u->pf.stats.rx_dropped += truncated;
  /* A raw handle's caller also hears of a wake-up that only dropped
   * truncated packets (count 0), so its drop counters stay current. */
  if (count == 0 && (!raw || truncated == 0)) return;
  if (count != 0) u->pf.stats.batches++;
  u->pf.stats.rx_messages += count;

  /* A raw handle's onBatch also gets the truncated count. */
  const uint32_t args[2] = {count, truncated};
  pollfd_call(&u->pf, raw ? 2 : 1, args);
  /* `u` may be closed now; it is not touched again. */
}

/* ------------------------------------------------------------------------ */
/* send(pool, offsets, lengths, addrs, port, segs, count)                   */

/* Makes the send arrays on first use. False (nothing thrown) when out of memory. */
static bool tx_arrays(udp_t *u) {
  if (u->tx.msgs != NULL) return true;
  if (!msg_arrays_alloc(&u->tx, SEND_BATCH)) return false;
  for (uint32_t k = 0; k < SEND_BATCH; k++) {
    struct msghdr *h = &u->tx.msgs[k].msg_hdr;
    h->msg_name = &u->tx.names[k];
    h->msg_namelen = sizeof(struct sockaddr_in);
    h->msg_iov = &u->tx.iov[k];
    h->msg_iovlen = 1;
    u->tx.names[k].sin_family = AF_INET;
    struct cmsghdr *c = &u->tx.ctrl[k].align;
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
  }
  return true;
}

static inline void tx_refuse(udp_t *u, uint32_t *lens, uint32_t i, int err) {
  lens[i] = 0; /* the contract: a refused message's length becomes 0 */
  u->pf.stats.tx_errors++;
  u->pf.stats.last_tx_errno = err;
}

/* Sends the n prepared entries with sendmmsg, adding the accepted to *sent.
 * sendmmsg stops at the first message that fails and reports only what went
 * before it (the error surfaces only if nothing was sent), so the failing one
 * is the first of the next call: refuse it and go on. True when the send
 * buffer is full (the rest of the caller's batch is to be refused too). */
static bool tx_drain(udp_t *u, uint32_t n, uint32_t *lens, uint32_t *sent) {
  uint32_t k = 0;
  while (k < n) {
    int r = sendmmsg(u->pf.fd, u->tx.msgs + k, n - k, MSG_DONTWAIT);
    if (r > 0) {
      *sent += (uint32_t)r;
      k += (uint32_t)r;
      continue;
    }
    int err = r < 0 ? errno : EIO;
    if (err == EINTR) continue;
    if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) {
      /* The socket's send buffer (or the device queue) is full: what is
       * left of the batch would fail the same way, and blocking the loop
       * is never an option. Drop it all. */
      for (; k < n; k++) tx_refuse(u, lens, u->tx.index[k], err);
      return true;
    }
    /* EMSGSIZE, ENETUNREACH, EHOSTUNREACH, EINVAL (e.g. GSO with noCheck,
     * too many segments; a raw IP_HDRINCL message shorter than its header),
     * EACCES (broadcast)...: only this message. */
    tx_refuse(u, lens, u->tx.index[k], err);
    k++;
  }
  return false;
}

/* Sets entry n's UDP_SEGMENT control message (seg > 0 and len > seg) or none:
 * false when seg does not fit the option's 16 bits. */
static bool tx_segment(udp_t *u, uint32_t n, uint32_t seg, uint32_t len) {
  struct msghdr *h = &u->tx.msgs[n].msg_hdr;
  if (seg > 0 && len > seg) {
    if (seg > 0xffff) return false;
    const uint16_t s16 = (uint16_t)seg;
    memcpy(CMSG_DATA(&u->tx.ctrl[n].align), &s16, sizeof s16);
    h->msg_control = u->tx.ctrl[n].buf;
    h->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
  } else {
    h->msg_control = NULL;
    h->msg_controllen = 0;
  }
  return true;
}

/* send()/sendv(): a UDP socket needs a port; a raw socket sends one packet per
 * message (no GSO segments). Throws and returns false otherwise. */
static bool check_target(napi_env env, const udp_t *u, const char *fn, uint32_t port, bool has_segs) {
  char msg[128];
  if (!u->raw && port == 0) {
    snprintf(msg, sizeof msg, "%s: port must be an integer in 1..65535", fn);
    throw_err(env, ERR_RANGE, "ERR_OUT_OF_RANGE", msg, 0, NULL);
    return false;
  }
  if (u->raw && has_segs) {
    snprintf(msg, sizeof msg, "%s: segs must be null for a raw socket (one message is one packet)", fn);
    throw_err(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", msg, 0, NULL);
    return false;
  }
  return true;
}

/* The arguments send() and sendv() share: the pool first, then (after the call's
 * own arrays) addrs, port, segs and count. */
typedef struct {
  val_view_t pool, addrs, segs;
  uint32_t port, count;
} send_args_t;

/* Reads fn(pool, <own arrays>, addrs, port, segs, count) on a UdpHandle or
 * RawHandle: `own` gets the n_own Uint32Arrays named in `names`, of which the
 * last per_msg hold an entry per message (count is checked against them, addrs
 * and segs; `arrays` names them in the error). The socket, or NULL with an
 * exception pending. */
static udp_t *read_send_args(napi_env env, napi_callback_info info, const char *fn, const char *const *names,
                             val_view_t *own, size_t n_own, size_t per_msg, const char *arrays, send_args_t *a) {
  napi_value argv[SEND_MAX_ARGS];
  size_t argc = n_own + 5;
  udp_t *u = (udp_t *)pollfd_this(env, info, &argc, argv, true, fn);
  if (u == NULL) return NULL;
  *a = (send_args_t){0};
  val_spec_t specs[SEND_MAX_ARGS];
  size_t k = 0;
  specs[k++] = (val_spec_t){"pool", VAL_BYTES, VAL_REQUIRED, 0, NULL, &a->pool};
  for (size_t j = 0; j < n_own; j++) specs[k++] = (val_spec_t){names[j], VAL_U32_ARRAY, VAL_REQUIRED, 0, NULL, &own[j]};
  /* Raw sockets have no ports (the argument is ignored: pass 0) and no GSO
   * (one message is one packet: segs must be null). */
  specs[k++] = (val_spec_t){"addrs", VAL_U32_ARRAY, VAL_REQUIRED, 0, NULL, &a->addrs};
  specs[k++] = (val_spec_t){"port", u->raw ? VAL_IGNORED : VAL_U32, VAL_REQUIRED, 65535, NULL, &a->port};
  specs[k++] = (val_spec_t){"segs", VAL_U32_ARRAY, VAL_NULLABLE, 0, NULL, &a->segs};
  specs[k++] = (val_spec_t){"count", VAL_U32, VAL_REQUIRED, UINT32_MAX, NULL, &a->count};
  if (!read_args(env, fn, argv, argc, specs, k, NULL) || !check_target(env, u, fn, a->port, a->segs.v != NULL))
    return NULL;
  size_t limit = a->addrs.len;
  for (size_t j = n_own - per_msg; j < n_own; j++)
    if (own[j].len < limit) limit = own[j].len;
  if (a->segs.v != NULL && a->segs.len < limit) limit = a->segs.len;
  return check_count(env, fn, a->count, limit, arrays) ? u : NULL;
}

static napi_value js_send(napi_env env, napi_callback_info info) {
  static const char *const names[] = {"offsets", "lengths"};
  val_view_t own[2];
  send_args_t a;
  udp_t *u = read_send_args(env, info, "send", names, own, 2, 2, "offsets, lengths, addrs (and segs)", &a);
  if (u == NULL) return NULL;
  const uint32_t port = a.port, count = a.count;
  const val_view_t pool = a.pool, offsets = own[0], lengths = own[1], addrs = a.addrs, segs = a.segs;
  if (count > 0 && !tx_arrays(u)) {
    throw_err(env, ERR_PLAIN, "ENOMEM", "send: out of memory for the send arrays", ENOMEM, NULL);
    return NULL;
  }
  const uint16_t port_be = htons((uint16_t)port);
  uint8_t *const pool_p = pool.data;
  const size_t pool_len = pool.len;
  uint32_t *const offs = offsets.data, *const lens = lengths.data, *const dst = addrs.data;
  uint32_t *const seg_of = segs.data;

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
      struct msghdr *h = &u->tx.msgs[n].msg_hdr;
      u->tx.iov[n].iov_base = pool_p + off;
      u->tx.iov[n].iov_len = len;
      u->tx.names[n].sin_addr.s_addr = htonl(dst[i]);
      u->tx.names[n].sin_port = port_be;
      h->msg_flags = 0;
      h->msg_iov = &u->tx.iov[n];
      h->msg_iovlen = 1;
      if (!tx_segment(u, n, seg_of != NULL ? seg_of[i] : 0, len)) {
        tx_refuse(u, lens, i, EINVAL);
        continue;
      }
      u->tx.index[n++] = i;
    }

    full = tx_drain(u, n, lens, &sent);
  }
  if (full) {
    for (; i < count; i++) tx_refuse(u, lens, i, u->pf.stats.last_tx_errno);
  }
  return ret_u32(env, sent);
}

/* ------------------------------------------------------------------------ */
/* sendv(pool, iovOffsets, iovLengths, firsts, counts, lengths, addrs, port,  */
/*       segs, count)                                                       */

/* send() with gathered messages: message i is the concatenation of the pool
 * ranges iov firsts[i] .. firsts[i] + counts[i] - 1 (entry j: pool[iovOffsets[j]
 * ..+ iovLengths[j])), lengths[i] bytes in all; the kernel copies them in
 * order, so a header and a payload need not be next to each other in memory.
 * Everything else (segs, refusals, the return value) is send()'s. */
static napi_value js_sendv(napi_env env, napi_callback_info info) {
  static const char *const names[] = {"iovOffsets", "iovLengths", "firsts", "counts", "lengths"};
  val_view_t own[5];
  send_args_t a;
  udp_t *u = read_send_args(env, info, "sendv", names, own, 5, 3, "firsts, counts, lengths, addrs (and segs)", &a);
  if (u == NULL) return NULL;
  const uint32_t port = a.port, count = a.count;
  const val_view_t pool = a.pool, iov_offs = own[0], iov_lens = own[1], firsts = own[2], counts = own[3],
                   lengths = own[4], addrs = a.addrs, segs = a.segs;
  if (count > 0 && (!tx_arrays(u) || (u->gather == NULL && (u->gather = calloc(SEND_GATHER, sizeof *u->gather)) == NULL))) {
    throw_err(env, ERR_PLAIN, "ENOMEM", "sendv: out of memory for the send arrays", ENOMEM, NULL);
    return NULL;
  }
  const uint16_t port_be = htons((uint16_t)port);
  uint8_t *const pool_p = pool.data;
  const size_t pool_len = pool.len;
  const uint32_t *const io = iov_offs.data, *const il = iov_lens.data;
  const size_t niov = iov_offs.len < iov_lens.len ? iov_offs.len : iov_lens.len;
  const uint32_t *const fi = firsts.data, *const cn = counts.data;
  uint32_t *const lens = lengths.data, *const dst = addrs.data, *const seg_of = segs.data;

  uint32_t sent = 0;
  uint32_t i = 0;
  bool full = false;
  while (i < count && !full) {
    uint32_t n = 0, g = 0;
    for (; i < count && n < SEND_BATCH; i++) {
      const uint32_t first = fi[i], c = cn[i], len = lens[i];
      if (len == 0 || c == 0 || c > SEND_MAX_IOV || (uint64_t)first + c > niov) {
        tx_refuse(u, lens, i, EINVAL);
        continue;
      }
      if (g + c > SEND_GATHER) break; /* the next sendmmsg takes it */
      uint64_t total = 0;
      bool inside = true;
      for (uint32_t j = 0; j < c; j++) {
        const uint32_t o = io[first + j], l = il[first + j];
        /* Never hand the kernel memory outside the pool. */
        if ((uint64_t)o + l > pool_len) inside = false;
        u->gather[g + j].iov_base = pool_p + o;
        u->gather[g + j].iov_len = l;
        total += l;
      }
      if (!inside || total != len) {
        tx_refuse(u, lens, i, inside ? EINVAL : EFAULT);
        continue;
      }
      struct msghdr *h = &u->tx.msgs[n].msg_hdr;
      h->msg_iov = &u->gather[g];
      h->msg_iovlen = c;
      h->msg_flags = 0;
      u->tx.names[n].sin_addr.s_addr = htonl(dst[i]);
      u->tx.names[n].sin_port = port_be;
      if (!tx_segment(u, n, seg_of != NULL ? seg_of[i] : 0, len)) {
        tx_refuse(u, lens, i, EINVAL);
        continue;
      }
      g += c;
      u->tx.index[n++] = i;
    }
    full = tx_drain(u, n, lens, &sent);
  }
  if (full) {
    for (; i < count; i++) tx_refuse(u, lens, i, u->pf.stats.last_tx_errno);
  }
  return ret_u32(env, sent);
}

/* ------------------------------------------------------------------------ */
/* openUdp, openRaw                                                         */

/* What socket() and bind() failing mean, and what to do. */
static const errno_msg_t udp_socket_errors[] = {
    {EMFILE, "too many open files to open a UDP socket for %s: close some or raise the limit (ulimit -n)"},
    {ENFILE, "too many open files to open a UDP socket for %s: close some or raise the limit (ulimit -n)"},
    {0, "cannot open a UDP socket for %s"},
};
static const errno_msg_t udp_bind_errors[] = {
    {EADDRNOTAVAIL, "cannot bind UDP %s: that address is not on any interface in this process's network namespace; "
                    "add it (ip addr add) or bind to 0.0.0.0 (bindAddr 0)"},
    {EADDRINUSE, "cannot bind UDP %s: another socket already has that port; close it, pick another port, or use "
                 "port 0 for an ephemeral one"},
    {EACCES, "cannot bind UDP %s: ports below 1024 need root or CAP_NET_BIND_SERVICE"},
    {0, "cannot bind UDP %s"},
};
static const errno_msg_t raw_socket_errors[] = {
    {EPERM, "cannot open a raw IPv4 socket of %s: it needs root or CAP_NET_RAW"},
    {EACCES, "cannot open a raw IPv4 socket of %s: it needs root or CAP_NET_RAW"},
    {EMFILE, "too many open files to open a raw IPv4 socket of %s: close some or raise the limit (ulimit -n)"},
    {ENFILE, "too many open files to open a raw IPv4 socket of %s: close some or raise the limit (ulimit -n)"},
    {0, "cannot open a raw IPv4 socket of %s"},
};
static const errno_msg_t raw_bind_errors[] = {
    {EADDRNOTAVAIL, "cannot bind the raw IPv4 socket of %s: that address is not on any interface in this process's "
                    "network namespace; add it (ip addr add) or leave bindAddr out (0) to receive on every address"},
    {0, "cannot bind the raw IPv4 socket of %s"},
};

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

/* A socket option an open sets when `on`; `fmt` (one %s: where) says what its
 * failure means, NULL: a generic message. */
typedef struct {
  bool on;
  int level, name, value;
  const char *syscall;
  const char *fmt;
} sockopt_t;

/* A non-blocking AF_INET socket with its buffers and options set, or -1 with an
 * exception pending; `what` ("UDP socket for") and `where` name it in messages. */
static int open_socket(napi_env env, int type, int protocol, uint32_t rcvbuf, uint32_t sndbuf, const sockopt_t *opts,
                       size_t n, const errno_msg_t *socket_errors, const char *what, const char *where) {
  int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
  if (fd < 0) {
    throw_sys_table(env, errno, "socket", socket_errors, where);
    return -1;
  }
  const char *fail = NULL, *fmt = NULL;
  int err = set_bufs(fd, rcvbuf, sndbuf, &fail);
  for (size_t i = 0; err == 0 && i < n; i++) {
    if (opts[i].on && setsockopt(fd, opts[i].level, opts[i].name, &opts[i].value, sizeof opts[i].value) < 0) {
      err = errno;
      fail = opts[i].syscall;
      fmt = opts[i].fmt;
    }
  }
  if (err == 0) return fd;
  close(fd);
  char head[96];
  if (fmt == NULL) {
    snprintf(head, sizeof head, "cannot set a socket option on the %s %%s", what);
    fmt = head;
  }
  throw_sys(env, err, fail, fmt, where);
  return -1;
}

/* Binds fd to addr:port (host order): 0, or -1 with fd closed and the exception
 * `bind_errors` gives pending. */
static int bind_to(napi_env env, int fd, uint32_t addr, uint32_t port, const errno_msg_t *bind_errors, const char *where) {
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(addr);
  sa.sin_port = htons((uint16_t)port);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0) return 0;
  int err = errno;
  close(fd);
  throw_sys_table(env, err, "bind", bind_errors, where);
  return -1;
}

/* Returns the socket, or -1 with an exception pending. */
static int open_udp_fd(napi_env env, uint32_t bind_addr, uint32_t port, uint32_t rcvbuf, uint32_t sndbuf, bool gro,
                       bool no_check, bool no_df, bool df, const char *where, uint16_t *bound_port) {
  const sockopt_t opts[] = {
      {gro, SOL_UDP, UDP_GRO, 1, "setsockopt(UDP_GRO)",
       "cannot enable UDP GRO on the socket for %s: it needs Linux >= 5.0; open without gro"},
      {no_check, SOL_SOCKET, SO_NO_CHECK, 1, "setsockopt(SO_NO_CHECK)", NULL},
      /* Outer DF clear, as the kernel's vxlan sends. */
      {no_df, IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT, "setsockopt(IP_MTU_DISCOVER)", NULL},
      /* DF set and never fragmented locally: a datagram above the path MTU the kernel
       * knows is refused (EMSGSIZE), which a path-MTU probe needs (RFC 1191). */
      {df, IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO, "setsockopt(IP_MTU_DISCOVER)", NULL},
  };
  int fd = open_socket(env, SOCK_DGRAM, 0, rcvbuf, sndbuf, opts, 4, udp_socket_errors, "UDP socket for", where);
  if (fd < 0 || bind_to(env, fd, bind_addr, port, udp_bind_errors, where) < 0) return -1;
  struct sockaddr_in sa;
  socklen_t sl = sizeof sa;
  if (getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
    int err = errno;
    close(fd);
    throw_sys(env, err, "getsockname", "cannot read the port the UDP socket for %s was bound to", where);
    return -1;
  }
  *bound_port = ntohs(sa.sin_port);
  return fd;
}

/* Returns a raw IPv4 socket of `protocol`, or -1 with an exception pending. */
static int open_raw_fd(napi_env env, uint32_t protocol, bool hdr_incl, uint32_t bind_addr, uint32_t rcvbuf,
                       uint32_t sndbuf, const char *where) {
  /* IPPROTO_RAW (255) implies IP_HDRINCL; setting it again is harmless. */
  const sockopt_t opts[] = {{hdr_incl, IPPROTO_IP, IP_HDRINCL, 1, "setsockopt(IP_HDRINCL)", NULL}};
  int fd = open_socket(env, SOCK_RAW, (int)protocol, rcvbuf, sndbuf, opts, 1, raw_socket_errors, "raw IPv4 socket of",
                       where);
  /* A bound raw socket receives only packets to that address, and sends
   * (without IP_HDRINCL) from it. */
  if (fd < 0 || (bind_addr != 0 && bind_to(env, fd, bind_addr, 0, raw_bind_errors, where) < 0)) return -1;
  return fd;
}

/* What openUdp and openRaw share: the pool, the receive region and arrays,
 * onBatch. */
typedef struct {
  val_view_t pool;
  uint32_t rx_base, slots, slot_size, rx_offset;
  val_view_t arrays[5]; /* offsets, lengths, addrs[, ports, segs] */
  size_t n_arrays;
  napi_value cb;
} rx_opts_t;

static const char *const array_keys[5] = {"offsets", "lengths", "addrs", "ports", "segs"};

/* Reads and checks the shared options; false with an exception pending. */
static bool read_rx_opts(napi_env env, const char *fn, napi_value opts, rx_opts_t *c) {
  const bool raw = c->n_arrays == 3;
  const val_spec_t spec[] = {
      {"pool", VAL_BYTES, VAL_REQUIRED, 0, NULL, &c->pool},
      {"rxBase", VAL_U32, VAL_REQUIRED, UINT32_MAX, NULL, &c->rx_base},
      {"slots", VAL_U32, VAL_REQUIRED, 1u << 20, NULL, &c->slots},
      {"slotSize", VAL_U32, VAL_REQUIRED, UINT32_MAX, NULL, &c->slot_size},
      {"rxOffset", VAL_U32, 0, UINT32_MAX, NULL, &c->rx_offset},
      {"onBatch", VAL_FUNCTION, 0, 0, raw ? " (count: number, truncated: number) => void" : " (count: number) => void",
       &c->cb},
      {array_keys[0], VAL_U32_ARRAY, VAL_REQUIRED, 0, NULL, &c->arrays[0]},
      {array_keys[1], VAL_U32_ARRAY, VAL_REQUIRED, 0, NULL, &c->arrays[1]},
      {array_keys[2], VAL_U32_ARRAY, VAL_REQUIRED, 0, NULL, &c->arrays[2]},
      {array_keys[3], VAL_U32_ARRAY, VAL_REQUIRED, 0, NULL, &c->arrays[3]},
      {array_keys[4], VAL_U32_ARRAY, VAL_REQUIRED, 0, NULL, &c->arrays[4]},
  };
  if (!read_options(env, fn, opts, spec, 6 + c->n_arrays)) return false;
  if (c->slot_size == 0) {
    throw_fmt(env, ERR_RANGE, "ERR_OUT_OF_RANGE",
              "%s: 'slotSize' must be at least 1 (a %s longer than the slot is dropped and counted in rxTruncated)", fn,
              raw ? "packet" : "datagram");
    return false;
  }
  if (c->rx_offset >= c->slot_size) {
    throw_fmt(env, ERR_RANGE, "ERR_OUT_OF_RANGE",
              "%s: 'rxOffset' (%u) must be less than 'slotSize' (%u): a slot holds slotSize - rxOffset bytes", fn,
              c->rx_offset, c->slot_size);
    return false;
  }
  return check_rx_region(env, fn, c->pool.len, c->rx_base, c->slots, c->slot_size, c->arrays, array_keys, c->n_arrays);
}

/* A udp_t with its receive arrays, or NULL with ENOMEM thrown. */
static udp_t *alloc_udp(napi_env env, const char *fn, const pollfd_kind_t *kind, const rx_opts_t *c, bool gro) {
  udp_t *u = calloc(1, sizeof *u);
  if (u == NULL || !msg_arrays_alloc(&u->rx, c->slots)) {
    free(u);
    throw_fmt(env, ERR_PLAIN, "ENOMEM", "%s: out of memory", fn);
    return NULL;
  }
  pollfd_init(&u->pf, env, kind);
  u->gro = gro;
  u->pool = c->pool.data;
  u->offsets = c->arrays[0].data;
  u->lengths = c->arrays[1].data;
  u->addrs = c->arrays[2].data;
  u->ports = c->n_arrays > 3 ? c->arrays[3].data : NULL;
  u->segs = c->n_arrays > 4 ? c->arrays[4].data : NULL;
  u->rx_base = c->rx_base;
  u->slots = c->slots;
  u->slot_size = c->slot_size;
  u->rx_offset = c->rx_offset;
  for (uint32_t j = 0; j < c->slots; j++) {
    struct msghdr *h = &u->rx.msgs[j].msg_hdr;
    u->rx.iov[j].iov_base = (uint8_t *)c->pool.data + c->rx_base + (size_t)j * c->slot_size + c->rx_offset;
    u->rx.iov[j].iov_len = c->slot_size - c->rx_offset;
    h->msg_iov = &u->rx.iov[j];
    h->msg_iovlen = 1;
    h->msg_name = &u->rx.names[j];
    h->msg_control = gro ? u->rx.ctrl[j].buf : NULL;
    rx_reset(u, j);
  }
  return u;
}

/* The socket as a new handle of class `ctor`, with `props` (room for two more) and
 * its rcvbuf and sndbuf. */
static napi_value finish(napi_env env, const char *fn, udp_t *u, int fd, napi_ref ctor, const rx_opts_t *c,
                         named_value_t *props, size_t n_props) {
  /* What the kernel granted: Linux reports twice the size asked for (the
   * bookkeeping overhead it allows for). */
  int rcv = 0, snd = 0;
  socklen_t il = sizeof rcv;
  getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, &il);
  il = sizeof snd;
  getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, &il);
  props[n_props].name = "rcvbuf";
  props[n_props + 1].name = "sndbuf";
  napi_create_int32(env, rcv, &props[n_props].v);
  napi_create_int32(env, snd, &props[n_props + 1].v);
  napi_value keep[6] = {c->pool.v};
  for (size_t k = 0; k < c->n_arrays; k++) keep[k + 1] = c->arrays[k].v;
  return pollfd_open(env, &u->pf, fd, ctor, fn, keep, 1 + c->n_arrays, c->cb, props, n_props + 2);
}

/* Two classes over one implementation: a raw handle is a udp_t with `raw` set. */
static const pollfd_kind_t udp_kind = {"UdpHandle", "UDP socket", "ERR_UDP_CLOSED", "rxTruncated",
                                       "pass openUdp({ onBatch: (count) => ... }) to receive", on_readable, udp_on_close};
static const pollfd_kind_t raw_kind = {"RawHandle", "raw IPv4 socket", "ERR_RAW_CLOSED", "rxTruncated",
                                       "pass openRaw({ onBatch: (count, truncated) => ... }) to receive", on_readable,
                                       udp_on_close};

static napi_value js_open_udp(napi_env env, napi_callback_info cbinfo) {
  const char *fn = "openUdp";
  napi_value opts = options_arg(env, cbinfo, fn);
  if (opts == NULL) return NULL;

  /* Everything is validated before the socket is made, so a bad call never
   * leaves a socket (or a bound port) behind. */
  uint32_t bind_addr = 0, port = 0, rcvbuf = 0, sndbuf = 0;
  bool gro = false, no_check = false, no_df = false, df = false;
  const val_spec_t spec[] = {
      {"bindAddr", VAL_U32, VAL_REQUIRED, UINT32_MAX, NULL, &bind_addr},
      {"port", VAL_U32, VAL_REQUIRED, 65535, NULL, &port},
      {"rcvbuf", VAL_U32, 0, INT32_MAX, NULL, &rcvbuf},
      {"sndbuf", VAL_U32, 0, INT32_MAX, NULL, &sndbuf},
      {"gro", VAL_BOOL, 0, 0, NULL, &gro},
      {"noCheck", VAL_BOOL, 0, 0, NULL, &no_check},
      {"noDf", VAL_BOOL, 0, 0, NULL, &no_df},
      {"df", VAL_BOOL, 0, 0, NULL, &df},
  };
  rx_opts_t c = {.n_arrays = 5};
  if (!read_options(env, fn, opts, spec, VAL_COUNT(spec)) || !read_rx_opts(env, fn, opts, &c)) return NULL;
  if (no_df && df) {
    napi_throw_type_error(env, NULL, "openUdp: options.noDf and options.df exclude each other");
    return NULL;
  }

  addon_data_t *ad = NULL;
  NAPI_OK_OR_THROW(napi_get_instance_data(env, (void **)&ad), "instance data");
  udp_t *u = alloc_udp(env, fn, &udp_kind, &c, gro);
  if (u == NULL) return NULL;
  char where[48];
  format_addr(where, sizeof where, bind_addr, port);
  uint16_t bound_port = 0;
  int fd = open_udp_fd(env, bind_addr, port, rcvbuf, sndbuf, gro, no_check, no_df, df, where, &bound_port);
  if (fd < 0) {
    udp_on_close(&u->pf, false);
    free(u);
    return NULL;
  }
  format_addr(u->pf.name, sizeof u->pf.name, bind_addr, bound_port);
  named_value_t props[3] = {{"port", NULL}};
  napi_create_uint32(env, bound_port, &props[0].v);
  return finish(env, fn, u, fd, ad->udp_ctor, &c, props, 1);
}

static napi_value js_open_raw(napi_env env, napi_callback_info cbinfo) {
  const char *fn = "openRaw";
  napi_value opts = options_arg(env, cbinfo, fn);
  if (opts == NULL) return NULL;

  uint32_t protocol = 0, bind_addr = 0, rcvbuf = 0, sndbuf = 0;
  bool hdr_incl = false;
  const val_spec_t spec[] = {
      {"protocol", VAL_U32, VAL_REQUIRED, 255, NULL, &protocol},
      {"hdrIncl", VAL_BOOL, 0, 0, NULL, &hdr_incl},
      {"bindAddr", VAL_U32, 0, UINT32_MAX, NULL, &bind_addr},
      {"rcvbuf", VAL_U32, 0, INT32_MAX, NULL, &rcvbuf},
      {"sndbuf", VAL_U32, 0, INT32_MAX, NULL, &sndbuf},
  };
  rx_opts_t c = {.n_arrays = 3};
  if (!read_options(env, fn, opts, spec, VAL_COUNT(spec))) return NULL;
  if (protocol == 0) {
    /* 0 is IPPROTO_IP, which the kernel refuses for SOCK_RAW (EPROTONOSUPPORT). */
    throw_err(env, ERR_RANGE, "ERR_OUT_OF_RANGE",
              "openRaw: option 'protocol' must be an IP protocol number in 1..255 (4 = IPIP, 255 = IPPROTO_RAW, send only)",
              0, NULL);
    return NULL;
  }
  if (!read_rx_opts(env, fn, opts, &c)) return NULL;

  addon_data_t *ad = NULL;
  NAPI_OK_OR_THROW(napi_get_instance_data(env, (void **)&ad), "instance data");
  udp_t *u = alloc_udp(env, fn, &raw_kind, &c, false);
  if (u == NULL) return NULL;
  char where[40];
  snprintf(where, sizeof where, "protocol %u on %u.%u.%u.%u", protocol, bind_addr >> 24, (bind_addr >> 16) & 0xff,
           (bind_addr >> 8) & 0xff, bind_addr & 0xff);
  snprintf(u->pf.name, sizeof u->pf.name, "(%s)", where);
  int fd = open_raw_fd(env, protocol, hdr_incl, bind_addr, rcvbuf, sndbuf, where);
  if (fd < 0) {
    udp_on_close(&u->pf, false);
    free(u);
    return NULL;
  }
  u->raw = true;
  /* IPPROTO_RAW sockets always have IP_HDRINCL. */
  u->hdr_incl = hdr_incl || protocol == IPPROTO_RAW;
  u->protocol = (uint8_t)protocol;
  named_value_t props[4] = {{"protocol", NULL}, {"hdrIncl", NULL}};
  napi_create_uint32(env, u->protocol, &props[0].v);
  napi_get_boolean(env, u->hdr_incl, &props[1].v);
  return finish(env, fn, u, fd, ad->raw_ctor, &c, props, 2);
}

/* ------------------------------------------------------------------------ */
/* Module part                                                              */

/* Adds sendv to the prototype of the class `ctor_ref` (pollfd_define_class
 * defines one I/O method; its data is the kind, as pollfd_this() checks). */
static bool add_sendv(napi_env env, napi_ref ctor_ref, const pollfd_kind_t *kind) {
  napi_value ctor, proto;
  napi_property_descriptor m = {"sendv", NULL, js_sendv, NULL, NULL, NULL, napi_default_method, (void *)kind};
  return napi_get_reference_value(env, ctor_ref, &ctor) == napi_ok &&
         napi_get_named_property(env, ctor, "prototype", &proto) == napi_ok &&
         napi_define_properties(env, proto, 1, &m) == napi_ok;
}

bool udp_init(napi_env env, napi_value exports, addon_data_t *ad) {
  static const named_fn_t fns[] = {
      {"openUdp", js_open_udp},
      {"openRaw", js_open_raw},
  };
  if (!pollfd_define_class(env, &udp_kind, "send", js_send, &ad->udp_ctor) ||
      !pollfd_define_class(env, &raw_kind, "send", js_send, &ad->raw_ctor) ||
      !add_sendv(env, ad->udp_ctor, &udp_kind) || !add_sendv(env, ad->raw_ctor, &raw_kind)) {
    throw_err(env, ERR_PLAIN, "ERR_TAPNET_NAPI", "tapnet: cannot define UdpHandle and RawHandle (send, sendv)", 0, NULL);
    return false;
  }
  return export_functions(env, exports, fns, VAL_COUNT(fns), "openUdp and openRaw");
}
