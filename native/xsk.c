/*
 * AF_XDP sockets (openXsk): an existing interface (a veth end) as a port whose
 * frames cross the kernel in rings, not one system call each.
 *
 * What is set up, all with plain system calls (no libbpf or libxdp):
 *   - the UMEM: a page-aligned piece of the caller's packet pool, in chunks of
 *     `frameSize` bytes; the first `rxFrames` chunks receive, the rest transmit.
 *     Received frames are written by the kernel straight into the pool, so the
 *     engine reads them where they land;
 *   - the four rings (fill, completion, rx, tx), mmap'd;
 *   - an XSKMAP holding this socket at the bound queue, and a six-instruction
 *     XDP program, `return bpf_redirect_map(&xsks, ctx->rx_queue_index,
 *     XDP_PASS)`, attached to the interface through a BPF link (native mode on
 *     a veth, or generic mode), so every frame the interface receives goes to
 *     the socket. Closing the handle (or the process ending) closes the link,
 *     which detaches the program: nothing is left on the interface.
 *
 * Receive: on each wake-up (POLLIN: the rx ring is not empty) up to
 * RX_ROUNDS batches of at most `slots` descriptors, each one onBatch(count)
 * call with offsets[i] (into the pool) and lengths[i]; when onBatch returns,
 * the batch's chunks go back to the fill ring. The frames are valid only until
 * onBatch returns.
 *
 * Send: send(pool, offsets, lengths, count) copies each frame into a free
 * transmit chunk (chunks come back through the completion ring once the kernel
 * has sent them), posts the descriptors, and kicks the kernel with sendto();
 * in copy mode each kick sends at most the kernel's budget (32 frames), so a
 * batch takes count/32 + 1 calls. What a kick leaves on the ring (the socket's
 * send buffer full) goes with the next send() or wake-up (xdpStats: txLeft).
 * A frame that cannot go (no free chunk, too long, outside the pool) gets
 * length 0 and counts in txErrors.
 *
 * The socket is a handle of pollfd.h (its lifetime rules), as a TAP is. The
 * kernel's own counters of the socket (XDP_STATISTICS) are read by xdpStats().
 * Needs CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF (root); opened before a node's
 * seccomp filter, which refuses bpf() and AF_XDP sockets.
 */
#include <errno.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <node_api.h>
#include <uv.h>

#include "common.h"
#include "pollfd.h"

#ifndef AF_XDP
#define AF_XDP 44
#endif
#ifndef SOL_XDP
#define SOL_XDP 283
#endif

/* Batches one wake-up delivers at most before the loop's other work has a turn. */
#define RX_ROUNDS 8
/* The kernel's headroom in front of every received frame (XDP_PACKET_HEADROOM). */
#define XDP_HEADROOM 256

typedef struct {
  uint32_t *producer;
  uint32_t *consumer;
  void *descs;
  uint32_t mask;
  uint32_t size;
  void *map;
  size_t map_len;
} ring_t;

typedef struct {
  pollfd_t pf; /* first member (pollfd.h) */
  uint8_t *umem;       /* the pool's data + umem_off */
  uint32_t umem_off;   /* the UMEM's offset in the pool (page-aligned address) */
  uint32_t frame_size; /* chunk size */
  uint32_t headroom;   /* the UMEM's headroom (ours), in front of the kernel's */
  uint32_t rx_frames;
  uint32_t tx_frames;
  uint32_t slots; /* at most this many descriptors per onBatch */
  uint32_t *offsets;
  uint32_t *lengths;
  uint64_t *pending; /* the chunks of the batch in onBatch, back to the fill ring after */
  uint64_t *free_tx; /* free transmit chunks (a stack) */
  uint32_t n_free;
  ring_t fill, comp, rx, tx;
  int map_fd, prog_fd, link_fd;
  bool native_mode;
  uint64_t tx_kicks, tx_no_frame, rx_bad_desc, tx_left;
} xsk_t;

/* ------------------------------------------------------------------------ */
/* Rings: we produce on fill and tx, consume on rx and completion.          */

static inline uint32_t ring_ready(const ring_t *r, uint32_t cons) {
  return __atomic_load_n(r->producer, __ATOMIC_ACQUIRE) - cons;
}
static inline uint32_t ring_room(const ring_t *r, uint32_t prod) {
  return r->size - (prod - __atomic_load_n(r->consumer, __ATOMIC_ACQUIRE));
}

/* Puts n chunk addresses on the fill ring (there is always room: it holds every receive chunk). */
static void fill_put(xsk_t *x, const uint64_t *addrs, uint32_t n) {
  ring_t *r = &x->fill;
  uint32_t prod = *r->producer;
  uint32_t room = ring_room(r, prod);
  if (n > room) n = room;
  uint64_t *d = r->descs;
  for (uint32_t i = 0; i < n; i++) d[(prod + i) & r->mask] = addrs[i];
  __atomic_store_n(r->producer, prod + n, __ATOMIC_RELEASE);
}

/* Takes the chunks the kernel has finished sending back onto the free stack. */
static void comp_reclaim(xsk_t *x) {
  ring_t *r = &x->comp;
  uint32_t cons = *r->consumer;
  uint32_t n = ring_ready(r, cons);
  const uint64_t *d = r->descs;
  const uint64_t mask = ~(uint64_t)(x->frame_size - 1);
  for (uint32_t i = 0; i < n && x->n_free < x->tx_frames; i++) x->free_tx[x->n_free++] = d[(cons + i) & r->mask] & mask;
  __atomic_store_n(r->consumer, cons + n, __ATOMIC_RELEASE);
}

/* Descriptors on the tx ring the kernel has not taken yet. */
static inline uint32_t tx_queued(const xsk_t *x) {
  return x->tx.size - ring_room(&x->tx, *x->tx.producer);
}

/* Kicks the kernel until the tx ring is drained, or it stops making progress. What is
 * left (the socket's send buffer full, the interface down) goes with the next kick: the
 * next send(), or the next wake-up. */
static void tx_kick(xsk_t *x, uint32_t queued) {
  uint32_t limit = queued / 16 + 4;
  for (uint32_t k = 0; k < limit; k++) {
    x->tx_kicks++;
    ssize_t r = sendto(x->pf.fd, NULL, 0, MSG_DONTWAIT, NULL, 0);
    if (r >= 0) {
      /* Copy mode returns 0 once the ring is empty. */
      if (tx_queued(x) == 0) return;
      continue;
    }
    if (errno == EINTR || errno == EAGAIN || errno == EBUSY) continue; /* the budget ran out: more to send */
    /* ENETDOWN (the interface went down), ENOBUFS, ENXIO. */
    x->pf.stats.last_tx_errno = errno;
    break;
  }
  if (tx_queued(x) != 0) x->tx_left++;
}

static void unmap_ring(ring_t *r) {
  if (r->map != NULL && r->map != MAP_FAILED) munmap(r->map, r->map_len);
  r->map = NULL;
}

static void xsk_on_close(pollfd_t *p, bool from_hook) {
  (void)from_hook;
  xsk_t *x = (xsk_t *)p;
  /* The link first: the program stops redirecting to a socket that is going. */
  int *fds[] = {&x->link_fd, &x->prog_fd, &x->map_fd};
  for (size_t i = 0; i < 3; i++) {
    if (*fds[i] >= 0) close(*fds[i]);
    *fds[i] = -1;
  }
  unmap_ring(&x->fill);
  unmap_ring(&x->comp);
  unmap_ring(&x->rx);
  unmap_ring(&x->tx);
  free(x->pending);
  free(x->free_tx);
  x->pending = x->free_tx = NULL;
  x->umem = NULL;
  x->offsets = x->lengths = NULL;
}

/* ------------------------------------------------------------------------ */
/* Receive                                                                  */

static void on_readable(uv_poll_t *h, int status, int events) {
  (void)events;
  xsk_t *x = (xsk_t *)pollfd_wakeup(h, status);
  if (x == NULL) return;
  const uint32_t left = tx_queued(x);
  if (left != 0) tx_kick(x, left);
  const uint64_t rx_end = (uint64_t)x->rx_frames * x->frame_size;
  const uint64_t mask = ~(uint64_t)(x->frame_size - 1);
  for (int round = 0; round < RX_ROUNDS; round++) {
    ring_t *r = &x->rx;
    uint32_t cons = *r->consumer;
    uint32_t n = ring_ready(r, cons);
    if (n == 0) return;
    if (n > x->slots) n = x->slots;
    const struct xdp_desc *d = r->descs;
    uint32_t count = 0, bad = 0;
    for (uint32_t i = 0; i < n; i++) {
      const struct xdp_desc *e = &d[(cons + i) & r->mask];
      const uint64_t chunk = e->addr & mask;
      x->pending[i] = chunk;
      /* The kernel only hands out what the fill ring gave it; checked anyway. */
      if (e->addr + e->len > chunk + x->frame_size || chunk >= rx_end || e->len == 0) {
        bad++;
        continue;
      }
      x->offsets[count] = x->umem_off + (uint32_t)e->addr;
      x->lengths[count] = e->len;
      count++;
    }
    __atomic_store_n(r->consumer, cons + n, __ATOMIC_RELEASE);
    x->rx_bad_desc += bad;
    x->pf.stats.rx_dropped += bad;
    if (count != 0) {
      x->pf.stats.batches++;
      x->pf.stats.rx_messages += count;
      const uint32_t args[1] = {count};
      pollfd_call(&x->pf, 1, args);
      if (x->pf.closed) return; /* onBatch closed the port: the rings are gone */
    }
    fill_put(x, x->pending, n);
  }
}

/* ------------------------------------------------------------------------ */
/* send(pool, offsets, lengths, count)                                      */

static inline void tx_refuse(xsk_t *x, uint32_t *lens, uint32_t i, int err) {
  lens[i] = 0;
  x->pf.stats.tx_errors++;
  x->pf.stats.last_tx_errno = err;
}

static napi_value js_send(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  size_t argc = 4;
  xsk_t *x = (xsk_t *)pollfd_this(env, info, &argc, argv, true, "send");
  if (x == NULL) return NULL;
  frame_batch_t b;
  if (!read_frame_batch(env, "send", argv, argc, &b)) return NULL;
  const val_view_t pool = b.pool;
  const uint32_t count = b.count;
  const uint8_t *src = pool.data;
  uint32_t *offs = b.offsets.data, *lens = b.lengths.data;
  const uint32_t room = x->frame_size;

  comp_reclaim(x);
  ring_t *r = &x->tx;
  uint32_t prod = *r->producer;
  uint32_t ring_free = ring_room(r, prod);
  struct xdp_desc *d = r->descs;
  uint32_t posted = 0;
  for (uint32_t i = 0; i < count; i++) {
    const uint32_t off = offs[i], len = lens[i];
    if (len == 0 || (uint64_t)off + len > pool.len) {
      tx_refuse(x, lens, i, len == 0 ? EINVAL : EFAULT);
      continue;
    }
    if (len > room) {
      tx_refuse(x, lens, i, EMSGSIZE);
      continue;
    }
    if (x->n_free == 0 || posted == ring_free) {
      x->tx_no_frame++;
      tx_refuse(x, lens, i, ENOBUFS);
      continue;
    }
    const uint64_t addr = x->free_tx[--x->n_free];
    memcpy(x->umem + addr, src + off, len);
    struct xdp_desc *e = &d[(prod + posted) & r->mask];
    e->addr = addr;
    e->len = len;
    e->options = 0;
    posted++;
  }
  if (posted != 0) __atomic_store_n(r->producer, prod + posted, __ATOMIC_RELEASE);
  const uint32_t queued = tx_queued(x);
  if (queued != 0) tx_kick(x, queued);
  return ret_u32(env, posted);
}

/* xdpStats(): the kernel's counters of the socket, and this side's. */
static napi_value js_xdp_stats(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  xsk_t *x = (xsk_t *)pollfd_this(env, info, &argc, NULL, true, "xdpStats");
  if (x == NULL) return NULL;
  struct xdp_statistics s;
  memset(&s, 0, sizeof s);
  socklen_t sl = sizeof s;
  if (getsockopt(x->pf.fd, SOL_XDP, XDP_STATISTICS, &s, &sl) != 0) {
    throw_sys(env, errno, "getsockopt", "xdpStats: cannot read the counters of %s", x->pf.name);
    return NULL;
  }
  napi_value obj;
  NAPI_OK_OR_THROW(napi_create_object(env, &obj), "object");
  const struct {
    const char *name;
    uint64_t v;
  } vals[] = {
      {"rxDropped", s.rx_dropped},
      {"rxInvalidDescs", s.rx_invalid_descs},
      {"txInvalidDescs", s.tx_invalid_descs},
      {"rxRingFull", s.rx_ring_full},
      {"fillRingEmpty", s.rx_fill_ring_empty_descs},
      {"txRingEmpty", s.tx_ring_empty_descs},
      {"txKicks", x->tx_kicks},
      {"txNoFrame", x->tx_no_frame},
      {"txLeft", x->tx_left},
      {"txQueued", tx_queued(x)},
  };
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
    napi_value v;
    NAPI_OK_OR_THROW(napi_create_double(env, (double)vals[i].v, &v), "number");
    NAPI_OK_OR_THROW(napi_set_named_property(env, obj, vals[i].name, v), "property");
  }
  return obj;
}

/* ------------------------------------------------------------------------ */
/* Opening                                                                  */

static int sys_bpf(int cmd, union bpf_attr *attr) {
  return (int)syscall(__NR_bpf, cmd, attr, sizeof *attr);
}

static bool map_ring(int fd, ring_t *r, uint32_t n, const struct xdp_ring_offset *o, size_t desc_size, off_t pgoff) {
  r->map_len = o->desc + (size_t)n * desc_size;
  r->map = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, pgoff);
  if (r->map == MAP_FAILED) {
    r->map = NULL;
    return false;
  }
  r->producer = (uint32_t *)((uint8_t *)r->map + o->producer);
  r->consumer = (uint32_t *)((uint8_t *)r->map + o->consumer);
  r->descs = (uint8_t *)r->map + o->desc;
  r->size = n;
  r->mask = n - 1;
  return true;
}

/* The XDP program: r2 = ctx->rx_queue_index; r1 = &xsks; r3 = XDP_PASS;
 * return bpf_redirect_map(r1, r2, r3) (the low bits of the flags are the
 * action when the queue has no socket). */
static int load_prog(int map_fd, char *log, size_t log_len) {
  struct bpf_insn insns[] = {
      {.code = BPF_LDX | BPF_MEM | BPF_W, .dst_reg = 2, .src_reg = 1, .off = offsetof(struct xdp_md, rx_queue_index)},
      {.code = BPF_LD | BPF_DW | BPF_IMM, .dst_reg = 1, .src_reg = BPF_PSEUDO_MAP_FD, .imm = map_fd},
      {.code = 0},
      {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 3, .imm = XDP_PASS},
      {.code = BPF_JMP | BPF_CALL, .imm = BPF_FUNC_redirect_map},
      {.code = BPF_JMP | BPF_EXIT},
  };
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.prog_type = BPF_PROG_TYPE_XDP;
  a.insns = (uint64_t)(uintptr_t)insns;
  a.insn_cnt = sizeof insns / sizeof insns[0];
  a.license = (uint64_t)(uintptr_t) "GPL";
  a.expected_attach_type = BPF_XDP;
  a.log_buf = (uint64_t)(uintptr_t)log;
  a.log_size = (uint32_t)log_len;
  a.log_level = 1;
  memcpy(a.prog_name, "tapnet_xsk", sizeof "tapnet_xsk");
  return sys_bpf(BPF_PROG_LOAD, &a);
}

static int attach(int prog_fd, int ifindex, uint32_t flags) {
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.link_create.prog_fd = (uint32_t)prog_fd;
  a.link_create.target_ifindex = (uint32_t)ifindex;
  a.link_create.attach_type = BPF_XDP;
  a.link_create.flags = flags;
  return sys_bpf(BPF_LINK_CREATE, &a);
}

enum { MODE_AUTO = 0, MODE_NATIVE = 1, MODE_GENERIC = 2 };

/* Sets up everything after the socket: false with an exception thrown. */
static bool setup(napi_env env, xsk_t *x, int fd, int ifindex, uint32_t queue, uint32_t mode) {
  const char *ifn = x->pf.name;
  struct xdp_umem_reg mr;
  memset(&mr, 0, sizeof mr);
  mr.addr = (uint64_t)(uintptr_t)x->umem;
  mr.len = (uint64_t)(x->rx_frames + x->tx_frames) * x->frame_size;
  mr.chunk_size = x->frame_size;
  mr.headroom = x->headroom;
  if (setsockopt(fd, SOL_XDP, XDP_UMEM_REG, &mr, sizeof mr) != 0) {
    static const errno_msg_t msgs[] = {
        {ENOBUFS, "openXsk: the UMEM for '%s' would pass RLIMIT_MEMLOCK (pinned pages; CAP_IPC_LOCK lifts the limit)"},
        {0, "openXsk: cannot register the UMEM for '%s'"},
    };
    throw_sys_table(env, errno, "setsockopt", msgs, ifn);
    return false;
  }
  const struct {
    int opt;
    uint32_t n;
  } sizes[] = {{XDP_UMEM_FILL_RING, x->rx_frames},
               {XDP_UMEM_COMPLETION_RING, x->tx_frames},
               {XDP_RX_RING, x->rx_frames},
               {XDP_TX_RING, x->tx_frames}};
  for (size_t i = 0; i < 4; i++) {
    if (setsockopt(fd, SOL_XDP, sizes[i].opt, &sizes[i].n, sizeof sizes[i].n) != 0) {
      throw_sys(env, errno, "setsockopt", "openXsk: cannot size the rings of '%s'", ifn);
      return false;
    }
  }
  struct xdp_mmap_offsets off;
  socklen_t ol = sizeof off;
  if (getsockopt(fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &ol) != 0) {
    throw_sys(env, errno, "getsockopt", "openXsk: cannot read the ring offsets of '%s'", ifn);
    return false;
  }
  if (!map_ring(fd, &x->fill, x->rx_frames, &off.fr, sizeof(uint64_t), XDP_UMEM_PGOFF_FILL_RING) ||
      !map_ring(fd, &x->comp, x->tx_frames, &off.cr, sizeof(uint64_t), XDP_UMEM_PGOFF_COMPLETION_RING) ||
      !map_ring(fd, &x->rx, x->rx_frames, &off.rx, sizeof(struct xdp_desc), XDP_PGOFF_RX_RING) ||
      !map_ring(fd, &x->tx, x->tx_frames, &off.tx, sizeof(struct xdp_desc), XDP_PGOFF_TX_RING)) {
    throw_sys(env, errno, "mmap", "openXsk: cannot map the rings of '%s'", ifn);
    return false;
  }
  for (uint32_t i = 0; i < x->rx_frames; i++) x->pending[i] = (uint64_t)i * x->frame_size;
  fill_put(x, x->pending, x->rx_frames);
  for (uint32_t i = 0; i < x->tx_frames; i++) x->free_tx[i] = (uint64_t)(x->rx_frames + x->tx_frames - 1 - i) * x->frame_size;
  x->n_free = x->tx_frames;

  struct sockaddr_xdp sa;
  memset(&sa, 0, sizeof sa);
  sa.sxdp_family = AF_XDP;
  sa.sxdp_ifindex = (uint32_t)ifindex;
  sa.sxdp_queue_id = queue;
  sa.sxdp_flags = XDP_COPY;
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    static const errno_msg_t msgs[] = {
        {EINVAL, "openXsk: cannot bind to '%s' (no such queue?)"},
        {EBUSY, "openXsk: '%s' already has an AF_XDP socket on this queue"},
        {0, "openXsk: cannot bind to '%s'"},
    };
    throw_sys_table(env, errno, "bind", msgs, ifn);
    return false;
  }
  union bpf_attr ma;
  memset(&ma, 0, sizeof ma);
  ma.map_type = BPF_MAP_TYPE_XSKMAP;
  ma.key_size = 4;
  ma.value_size = 4;
  ma.max_entries = queue + 1;
  x->map_fd = sys_bpf(BPF_MAP_CREATE, &ma);
  if (x->map_fd < 0) {
    throw_sys(env, errno, "bpf", "openXsk: cannot create the XSKMAP for '%s' (needs CAP_BPF)", ifn);
    return false;
  }
  uint32_t key = queue, val = (uint32_t)fd;
  memset(&ma, 0, sizeof ma);
  ma.map_fd = (uint32_t)x->map_fd;
  ma.key = (uint64_t)(uintptr_t)&key;
  ma.value = (uint64_t)(uintptr_t)&val;
  if (sys_bpf(BPF_MAP_UPDATE_ELEM, &ma) != 0) {
    throw_sys(env, errno, "bpf", "openXsk: cannot put the socket of '%s' in its XSKMAP", ifn);
    return false;
  }
  char log[1024] = "";
  x->prog_fd = load_prog(x->map_fd, log, sizeof log);
  if (x->prog_fd < 0) {
    int err = errno;
    char head[1200];
    char *nl = strchr(log, '\n');
    if (nl != NULL) *nl = '\0';
    snprintf(head, sizeof head, "openXsk: the kernel refused the XDP program for %%s (%s)", log[0] ? log : "no log");
    throw_sys(env, err, "bpf", head, ifn);
    return false;
  }
  int err = 0;
  if (mode != MODE_GENERIC) {
    x->link_fd = attach(x->prog_fd, ifindex, XDP_FLAGS_DRV_MODE);
    if (x->link_fd >= 0) x->native_mode = true;
    err = errno;
  }
  if (x->link_fd < 0 && mode != MODE_NATIVE && err != EBUSY && err != EEXIST) {
    x->link_fd = attach(x->prog_fd, ifindex, XDP_FLAGS_SKB_MODE);
    err = errno;
  }
  if (x->link_fd < 0) {
    static const errno_msg_t msgs[] = {
        {EBUSY, "openXsk: '%s' already has an XDP program attached"},
        {EEXIST, "openXsk: '%s' already has an XDP program attached"},
        {EOPNOTSUPP, "openXsk: '%s' does not support XDP in this mode"},
        {EINVAL, "openXsk: cannot attach XDP to '%s' (its MTU may be too large for XDP)"},
        {0, "openXsk: cannot attach the XDP program to '%s'"},
    };
    throw_sys_table(env, err, "bpf", msgs, ifn);
    return false;
  }
  return true;
}

static const pollfd_kind_t xsk_kind = {"XskHandle", "AF_XDP socket", "ERR_XSK_CLOSED", "rxBadDescs",
                                       "pass openXsk({ onBatch: (count) => ... }) to receive", on_readable,
                                       xsk_on_close};

static bool pow2(uint32_t v) {
  return v != 0 && (v & (v - 1)) == 0;
}

static napi_value js_open_xsk(napi_env env, napi_callback_info cbinfo) {
  const char *fn = "openXsk";
  napi_value opts = options_arg(env, cbinfo, fn);
  if (opts == NULL) return NULL;
  val_view_t pool, offsets, lengths;
  uint32_t region = 0, region_bytes = 0, frame_size = 2048, rx_frames = 1024, tx_frames = 1024, headroom = 0;
  uint32_t queue = 0, mode = MODE_AUTO, slots = 0;
  napi_value name_v = NULL, cb = NULL;
  bool has_name = false;
  NAPI_OK_OR_THROW(napi_has_named_property(env, opts, "ifname", &has_name), "ifname");
  if (has_name) NAPI_OK_OR_THROW(napi_get_named_property(env, opts, "ifname", &name_v), "ifname");
  char ifname[IF_NAMESIZE + 1] = "";
  size_t nl = 0;
  if (name_v == NULL || napi_get_value_string_utf8(env, name_v, ifname, sizeof ifname, &nl) != napi_ok || nl == 0 ||
      nl >= IF_NAMESIZE) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "openXsk: option 'ifname' must be an interface name (1-15 bytes)");
    return NULL;
  }
  const val_spec_t spec[] = {
      {"pool", VAL_BYTES, VAL_REQUIRED, 0, NULL, &pool},
      {"region", VAL_U32, VAL_REQUIRED, UINT32_MAX, NULL, &region},
      {"regionBytes", VAL_U32, VAL_REQUIRED, UINT32_MAX, NULL, &region_bytes},
      {"frameSize", VAL_U32, 0, 1u << 16, NULL, &frame_size},
      {"rxFrames", VAL_U32, 0, 1u << 16, NULL, &rx_frames},
      {"txFrames", VAL_U32, 0, 1u << 16, NULL, &tx_frames},
      {"headroom", VAL_U32, 0, 1024, NULL, &headroom}, /* a chunk (>= 2048) keeps room for a frame */
      {"queue", VAL_U32, 0, 1023, NULL, &queue},
      {"mode", VAL_U32, 0, 2, NULL, &mode},
      {"slots", VAL_U32, VAL_REQUIRED, 1u << 16, NULL, &slots},
      {"offsets", VAL_U32_ARRAY, VAL_REQUIRED, 0, NULL, &offsets},
      {"lengths", VAL_U32_ARRAY, VAL_REQUIRED, 0, NULL, &lengths},
      {"onBatch", VAL_FUNCTION, 0, 0, " (count: number) => void", &cb},
  };
  if (!read_options(env, fn, opts, spec, VAL_COUNT(spec))) return NULL;
  long page = sysconf(_SC_PAGESIZE);
  if (!pow2(frame_size) || frame_size < 2048 || frame_size > (uint32_t)page) {
    throw_fmt(env, ERR_RANGE, "ERR_OUT_OF_RANGE", "openXsk: 'frameSize' must be a power of two from 2048 to %ld, got %u", page,
              frame_size);
    return NULL;
  }
  if (!pow2(rx_frames) || !pow2(tx_frames)) {
    throw_fmt(env, ERR_RANGE, "ERR_OUT_OF_RANGE", "openXsk: 'rxFrames' and 'txFrames' must be powers of two (got %u, %u)",
              rx_frames, tx_frames);
    return NULL;
  }
  if (slots == 0 || offsets.len < slots || lengths.len < slots) {
    throw_fmt(env, ERR_RANGE, "ERR_OUT_OF_RANGE", "openXsk: 'slots' (%u) must be at least 1 and at most the length of 'offsets' and 'lengths'",
              slots);
    return NULL;
  }
  /* The UMEM: the first page-aligned address in the region. */
  const uint64_t umem_bytes = (uint64_t)(rx_frames + tx_frames) * frame_size;
  if ((uint64_t)region + region_bytes > pool.len) {
    throw_fmt(env, ERR_RANGE, "ERR_OUT_OF_RANGE", "openXsk: the region (%u + %u bytes) is outside the pool (%zu bytes)",
              region, region_bytes, pool.len);
    return NULL;
  }
  uintptr_t start = (uintptr_t)pool.data + region;
  uintptr_t aligned = (start + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
  if (aligned - start + umem_bytes > region_bytes) {
    throw_fmt(env, ERR_RANGE, "ERR_OUT_OF_RANGE",
              "openXsk: a region of %u bytes cannot hold %llu bytes of frames at a page boundary (give it a page more)",
              region_bytes, (unsigned long long)umem_bytes);
    return NULL;
  }
  int ifindex = (int)if_nametoindex(ifname);
  if (ifindex == 0) {
    throw_sys(env, errno, "if_nametoindex", "openXsk: no interface '%s' in this network namespace", ifname);
    return NULL;
  }

  addon_data_t *ad = NULL;
  NAPI_OK_OR_THROW(napi_get_instance_data(env, (void **)&ad), "instance data");
  xsk_t *x = calloc(1, sizeof *x);
  if (x != NULL) {
    x->pending = calloc(rx_frames > slots ? rx_frames : slots, sizeof(uint64_t));
    x->free_tx = calloc(tx_frames, sizeof(uint64_t));
  }
  if (x == NULL || x->pending == NULL || x->free_tx == NULL) {
    if (x != NULL) {
      free(x->pending);
      free(x->free_tx);
    }
    free(x);
    throw_fmt(env, ERR_PLAIN, "ENOMEM", "%s: out of memory", fn);
    return NULL;
  }
  pollfd_init(&x->pf, env, &xsk_kind);
  snprintf(x->pf.name, sizeof x->pf.name, "%s", ifname);
  x->map_fd = x->prog_fd = x->link_fd = -1;
  x->umem = (uint8_t *)aligned;
  x->umem_off = (uint32_t)(aligned - (uintptr_t)pool.data);
  x->frame_size = frame_size;
  x->headroom = headroom;
  x->rx_frames = rx_frames;
  x->tx_frames = tx_frames;
  x->slots = slots;
  x->offsets = offsets.data;
  x->lengths = lengths.data;

  int fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    static const errno_msg_t msgs[] = {
        {EAFNOSUPPORT, "openXsk: this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS) for '%s'"},
        {EPERM, "openXsk: not allowed to open an AF_XDP socket for '%s' (needs CAP_NET_RAW; a node's seccomp filter refuses it after start)"},
        {0, "openXsk: cannot open an AF_XDP socket for '%s'"},
    };
    throw_sys_table(env, errno, "socket", msgs, ifname);
    xsk_on_close(&x->pf, false);
    free(x);
    return NULL;
  }
  if (!setup(env, x, fd, ifindex, queue, mode)) {
    xsk_on_close(&x->pf, false);
    close(fd);
    free(x);
    return NULL;
  }
  named_value_t props[4] = {{"umemOffset", NULL}, {"mode", NULL}, {"frameRoom", NULL}, {"ifindex", NULL}};
  napi_create_uint32(env, x->umem_off, &props[0].v);
  napi_create_string_utf8(env, x->native_mode ? "native" : "generic", NAPI_AUTO_LENGTH, &props[1].v);
  napi_create_uint32(env, frame_size - XDP_HEADROOM - headroom, &props[2].v);
  napi_create_uint32(env, (uint32_t)ifindex, &props[3].v);
  napi_value keep[3] = {pool.v, offsets.v, lengths.v};
  return pollfd_open(env, &x->pf, fd, ad->xsk_ctor, fn, keep, 3, cb, props, 4);
}

bool xsk_init(napi_env env, napi_value exports, addon_data_t *ad) {
  static const named_fn_t fns[] = {{"openXsk", js_open_xsk}};
  napi_value ctor, proto;
  napi_property_descriptor m = {"xdpStats", NULL, js_xdp_stats, NULL, NULL, NULL, napi_default_method,
                                (void *)&xsk_kind};
  if (!pollfd_define_class(env, &xsk_kind, "send", js_send, &ad->xsk_ctor) ||
      napi_get_reference_value(env, ad->xsk_ctor, &ctor) != napi_ok ||
      napi_get_named_property(env, ctor, "prototype", &proto) != napi_ok ||
      napi_define_properties(env, proto, 1, &m) != napi_ok) {
    throw_err(env, ERR_PLAIN, "ERR_TAPNET_NAPI", "tapnet: cannot define XskHandle", 0, NULL);
    return false;
  }
  return export_functions(env, exports, fns, VAL_COUNT(fns), "openXsk");
}
