/*
 * io_uring I/O for one TAP fd: many frames per system call each way (uring.h).
 *
 * Receive: one multishot read (IORING_OP_READ_MULTISHOT, Linux 6.7) with buffer
 * selection from a provided-buffer ring whose buffers are the port's receive slots
 * in the packet pool. Each time the TAP becomes readable the kernel reads frames
 * into free slots and posts one completion per frame, until the queue is empty or
 * the slots run out (then the read ends with ENOBUFS and is re-armed once the
 * slots come back). The ring's eventfd is what the event loop polls: one wake-up,
 * one eventfd read, then the whole batch from the completion queue (no further
 * system call). The kernel may read more frames while JavaScript looks at a batch,
 * but only into slots still in the buffer ring: a slot handed to the caller is out
 * of it until uring_io_rx_done, so the kernel never writes into a frame being
 * forwarded.
 *
 * A TAP read copies min(frame, buffer) bytes and a provided buffer is one iovec,
 * so a frame that fills its buffer exactly cannot be told from a truncated one:
 * such frames are dropped (rx_dropped), i.e. the largest frame is one byte shorter
 * than with readv() and its overflow probe.
 *
 * Transmit: a second ring (so that its completions never mix with the reads);
 * one WRITE per frame, one io_uring_submit_and_wait for the batch, then each
 * frame's result, so the caller learns synchronously which frames the device
 * refused, as with write(), and may reuse the pool as soon as the call returns.
 * A TAP write does not block (the frame goes to the receiving stack or is dropped
 * there), so the writes complete inline within that one call.
 *
 * Both rings are made with IORING_SETUP_R_DISABLED and restricted before they are
 * enabled (IORING_REGISTER_RESTRICTIONS): only READ_MULTISHOT, WRITE and
 * ASYNC_CANCEL, only on the registered TAP (IOSQE_FIXED_FILE required), and no
 * further io_uring_register. A node's seccomp filter refuses io_uring_setup and
 * io_uring_register; these rings, made before it, can do nothing but move frames
 * on their TAP, so io_uring_enter on them opens no way around the filter.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <liburing.h>

#include "uring.h"

/* The opcode of a multishot read (Linux 6.7); liburing 2.3's header predates it. */
#define URING_OP_READ_MULTISHOT 49
#define RX_TAG UINT64_MAX
#define CANCEL_TAG (UINT64_MAX - 1)
#define BGID 0

struct uring_io {
  struct io_uring rx, tx;
  bool rx_up, tx_up;
  bool armed; /* the multishot read is live */
  bool dead;  /* it ended with an error that re-arming would only repeat */
  int efd;
  struct io_uring_buf_ring *br;
  size_t br_bytes;
  uint32_t br_mask;
  uint8_t *region;
  uint32_t slots, slot_size, headroom, room;
  uint32_t tx_max;
  int tx_err; /* the errno that made the transmit ring unusable, 0 while it works */
  uint32_t n_held; /* slots taken out of the buffer ring since the last rx_done */
  uint32_t held[];
};

static int ring_init(struct io_uring *r, unsigned entries, unsigned cq) {
  struct io_uring_params p;
  memset(&p, 0, sizeof p);
  /* Not IORING_SETUP_DEFER_TASKRUN: with it the ring's eventfd did not fire when a
   * frame arrived (the read's task work waits for an io_uring_enter that a thread
   * sleeping in epoll never makes): ping through the C relay took 26 ms instead of
   * 0.2. COOP_TASKRUN: no interrupt, the reads run when the thread next enters
   * the kernel or sleeps. */
  p.flags = IORING_SETUP_R_DISABLED | IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN;
  p.cq_entries = cq;
  return io_uring_queue_init_params(entries, r, &p);
}

/* Restricts a disabled ring to frames on fixed file 0 (see the top), then enables it. */
static int ring_lock(struct io_uring *r) {
  /* Each rule: a restriction kind and its one-byte argument (sqe_op, sqe_flags and
   * register_op share that byte in struct io_uring_restriction). */
  static const struct {
    uint16_t kind;
    uint8_t arg;
  } rules[] = {
      {IORING_RESTRICTION_SQE_OP, URING_OP_READ_MULTISHOT},
      {IORING_RESTRICTION_SQE_OP, IORING_OP_WRITE},
      {IORING_RESTRICTION_SQE_OP, IORING_OP_ASYNC_CANCEL},
      {IORING_RESTRICTION_SQE_FLAGS_REQUIRED, IOSQE_FIXED_FILE},
      {IORING_RESTRICTION_SQE_FLAGS_ALLOWED, IOSQE_BUFFER_SELECT},
      /* uring_io_close lets go of the TAP at once rather than when the ring's teardown runs. */
      {IORING_RESTRICTION_REGISTER_OP, IORING_UNREGISTER_FILES},
  };
  enum { NRULES = sizeof rules / sizeof rules[0] };
  struct io_uring_restriction res[NRULES];
  memset(res, 0, sizeof res);
  for (int i = 0; i < NRULES; i++) {
    res[i].opcode = rules[i].kind;
    res[i].sqe_op = rules[i].arg;
  }
  /* Raw io_uring_register: Debian's liburing 2.3 declares these two calls but does not export them. */
  if (syscall(__NR_io_uring_register, r->ring_fd, IORING_REGISTER_RESTRICTIONS, res, NRULES) < 0) return -errno;
  if (syscall(__NR_io_uring_register, r->ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0) return -errno;
  return 0;
}

static int arm(uring_io_t *u) {
  struct io_uring_sqe *sqe = io_uring_get_sqe(&u->rx);
  if (sqe == NULL) return -EBUSY;
  io_uring_prep_rw(URING_OP_READ_MULTISHOT, sqe, 0, NULL, 0, 0);
  sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
  sqe->buf_group = BGID;
  io_uring_sqe_set_data64(sqe, RX_TAG);
  int rc = io_uring_submit(&u->rx);
  if (rc >= 0) u->armed = true;
  return rc < 0 ? rc : 0;
}

static void give_back(uring_io_t *u, uint32_t bid, int i) {
  io_uring_buf_ring_add(u->br, u->region + (size_t)bid * u->slot_size + u->headroom, u->room, (unsigned short)bid,
                        u->br_mask, i);
}

int uring_io_open(uring_io_t **out, int fd, uint8_t *region, uint32_t slots, uint32_t slot_size, uint32_t headroom,
                  uint32_t tx_max, const char **step) {
  *out = NULL;
  const char *fail = getenv("TAPNET_URING_FAIL");
  if (fail != NULL && strcmp(fail, "1") == 0) {
    *step = "io_uring_setup (TAPNET_URING_FAIL=1)";
    return ENOSYS;
  }
  if (slots == 0 || slots > 32768 || tx_max == 0 || slot_size <= headroom + 1) {
    *step = "uring_io_open (slots 1..32768, a batch, room in a slot)";
    return EINVAL;
  }
  uring_io_t *u = calloc(1, sizeof *u + (size_t)slots * sizeof(uint32_t));
  if (u == NULL) {
    *step = "calloc";
    return ENOMEM;
  }
  u->efd = -1;
  u->br = MAP_FAILED;
  u->region = region;
  u->slots = slots;
  u->slot_size = slot_size;
  u->headroom = headroom;
  u->room = slot_size - headroom;
  u->tx_max = tx_max > 4096 ? 4096 : tx_max;
  uint32_t entries = 1;
  while (entries < slots) entries <<= 1;
  u->br_mask = (uint32_t)io_uring_buf_ring_mask(entries);
  int rc;

  /* Receive ring: one SQE (the read, a cancel), a completion per slot and then some. */
  *step = "io_uring_setup";
  if ((rc = ring_init(&u->rx, 4, entries * 2)) < 0) goto fail;
  u->rx_up = true;
  *step = "io_uring_setup (transmit)";
  uint32_t txe = 1;
  while (txe < u->tx_max) txe <<= 1;
  if ((rc = ring_init(&u->tx, txe, txe * 2)) < 0) goto fail;
  u->tx_up = true;
  *step = "io_uring_register_files";
  if ((rc = io_uring_register_files(&u->rx, &fd, 1)) < 0 || (rc = io_uring_register_files(&u->tx, &fd, 1)) < 0) goto fail;
  *step = "eventfd";
  u->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (u->efd < 0) {
    rc = -errno;
    goto fail;
  }
  *step = "io_uring_register_eventfd";
  if ((rc = io_uring_register_eventfd(&u->rx, u->efd)) < 0) goto fail;
  *step = "mmap (buffer ring)";
  long page = sysconf(_SC_PAGESIZE);
  u->br_bytes = ((size_t)entries * sizeof(struct io_uring_buf) + (size_t)page - 1) & ~((size_t)page - 1);
  u->br = mmap(NULL, u->br_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (u->br == MAP_FAILED) {
    rc = -errno;
    goto fail;
  }
  struct io_uring_buf_reg reg;
  memset(&reg, 0, sizeof reg);
  reg.ring_addr = (unsigned long)u->br;
  reg.ring_entries = entries;
  reg.bgid = BGID;
  *step = "io_uring_register_buf_ring";
  if ((rc = io_uring_register_buf_ring(&u->rx, &reg, 0)) < 0) goto fail;
  io_uring_buf_ring_init(u->br);
  for (uint32_t i = 0; i < slots; i++) give_back(u, i, (int)i);
  io_uring_buf_ring_advance(u->br, (int)slots);
  /* A kernel before 6.7 refuses the restriction naming READ_MULTISHOT (an unknown opcode). */
  *step = "io_uring_register_restrictions (multishot reads need Linux 6.7)";
  if ((rc = ring_lock(&u->rx)) < 0 || (rc = ring_lock(&u->tx)) < 0) goto fail;
  *step = "io_uring_enter (multishot read)";
  if ((rc = arm(u)) < 0) goto fail;
  /* A kernel without multishot reads refuses the opcode in a completion, not in the submit. */
  io_uring_get_events(&u->rx);
  struct io_uring_cqe *cqe;
  if (io_uring_peek_cqe(&u->rx, &cqe) == 0 && cqe->user_data == RX_TAG && cqe->res < 0 && cqe->res != -ENOBUFS &&
      !(cqe->flags & IORING_CQE_F_MORE)) {
    *step = "IORING_OP_READ_MULTISHOT (needs Linux 6.7)";
    rc = cqe->res;
    u->armed = false;
    goto fail;
  }
  *out = u;
  return 0;
fail:
  uring_io_close(u);
  return -rc;
}

int uring_io_eventfd(const uring_io_t *u) { return u->efd; }

void uring_io_ring_fds(const uring_io_t *u, int out[2]) {
  out[0] = u->rx.ring_fd;
  out[1] = u->tx.ring_fd;
}

uint32_t uring_io_rx(uring_io_t *u, uint32_t *slot, uint32_t *len, uint32_t max, uring_io_stats_t *st) {
  uint64_t v;
  /* Cleared before the reads run: a frame arriving after this signals it again. */
  if (read(u->efd, &v, sizeof v) < 0) { /* EAGAIN: a wake-up for what the last call already took */
  }
  /* Reads whose task work was pending ran on the way back from that read(). */
  uint32_t n = 0;
  unsigned head, seen = 0;
  struct io_uring_cqe *cqe;
  io_uring_for_each_cqe(&u->rx, head, cqe) {
    /* Completions without a slot (the read's end: ENOBUFS) are taken past `max` too:
     * left behind, the read would never be re-armed. */
    if (n >= max && (cqe->flags & IORING_CQE_F_BUFFER)) break;
    seen++;
    if (cqe->user_data != RX_TAG) continue; /* a cancel's own completion */
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
      u->armed = false;
      /* ENOBUFS: every slot is out (rx_done re-arms); anything else would repeat. */
      if (cqe->res < 0 && cqe->res != -ENOBUFS && cqe->res != -EAGAIN && cqe->res != -EINTR) u->dead = true;
    }
    if (cqe->flags & IORING_CQE_F_BUFFER) {
      uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
      if (bid >= u->slots) continue; /* cannot happen: only slot ids are in the ring */
      u->held[u->n_held++] = bid;
      if (cqe->res <= 0 || (uint32_t)cqe->res >= u->room) {
        if (cqe->res < 0)
          st->rx_errors++;
        else
          st->rx_dropped++;
        continue;
      }
      slot[n] = bid;
      len[n] = (uint32_t)cqe->res;
      n++;
    } else if (cqe->res < 0 && cqe->res != -ENOBUFS) {
      st->rx_errors++;
    }
  }
  io_uring_cq_advance(&u->rx, seen);
  return n;
}

void uring_io_rx_done(uring_io_t *u) {
  for (uint32_t i = 0; i < u->n_held; i++) give_back(u, u->held[i], (int)i);
  if (u->n_held != 0) io_uring_buf_ring_advance(u->br, (int)u->n_held);
  u->n_held = 0;
  if (!u->armed && !u->dead && arm(u) < 0) u->dead = true;
  /* Completions left in the queue (more than `max`) would get no new wake-up. */
  if (io_uring_cq_ready(&u->rx) != 0) eventfd_write(u->efd, 1);
}

uint32_t uring_io_tx(uring_io_t *u, const uint8_t *base, const uint32_t *off, uint32_t *len, uint32_t count,
                     uring_io_stats_t *st) {
  uint32_t sent = 0, i = 0;
  while (i < count) {
    const uint32_t start = i;
    uint32_t queued = 0;
    for (; i < count && queued < u->tx_max; i++) {
      if (len[i] == 0) continue; /* refused by the caller already */
      struct io_uring_sqe *sqe = u->tx_err == 0 ? io_uring_get_sqe(&u->tx) : NULL;
      if (sqe == NULL) {
        /* The ring failed before (e.g. io_uring_enter refused): every frame is refused. */
        st->tx_errors++;
        st->last_tx_errno = u->tx_err != 0 ? u->tx_err : EBUSY;
        len[i] = 0;
        continue;
      }
      io_uring_prep_write(sqe, 0, base + off[i], len[i], 0);
      sqe->flags |= IOSQE_FIXED_FILE;
      io_uring_sqe_set_data64(sqe, i);
      queued++;
    }
    if (queued == 0) continue;
    int rc;
    do rc = io_uring_submit_and_wait(&u->tx, queued);
    while (rc == -EINTR);
    if (rc < 0) {
      u->tx_err = -rc;
      for (uint32_t j = start; j < i; j++) {
        if (len[j] == 0) continue;
        st->tx_errors++;
        len[j] = 0;
      }
      st->last_tx_errno = -rc;
      continue;
    }
    uint32_t got = 0;
    while (got < queued) {
      unsigned head, seen = 0;
      struct io_uring_cqe *cqe;
      io_uring_for_each_cqe(&u->tx, head, cqe) {
        seen++;
        uint64_t k = cqe->user_data;
        if (k >= count) continue;
        if (cqe->res < 0) {
          st->tx_errors++;
          st->last_tx_errno = -cqe->res;
          len[k] = 0;
        } else {
          sent++; /* tun writes are all-or-nothing */
        }
      }
      io_uring_cq_advance(&u->tx, seen);
      got += seen;
      if (got >= queued) break;
      do rc = io_uring_wait_cqe(&u->tx, &cqe);
      while (rc == -EINTR);
      if (rc < 0) {
        u->tx_err = -rc;
        break;
      }
    }
  }
  return sent;
}

void uring_io_close(uring_io_t *u) {
  if (u == NULL) return;
  if (u->rx_up && u->armed) {
    /* The read must end before the slots go back to whoever owns the pool. */
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->rx);
    if (sqe != NULL) {
      io_uring_prep_cancel64(sqe, RX_TAG, 0);
      sqe->flags |= IOSQE_FIXED_FILE;
      io_uring_sqe_set_data64(sqe, CANCEL_TAG);
      for (int tries = 0; tries < 64 && u->armed; tries++) {
        int rc = io_uring_submit_and_wait(&u->rx, 1);
        if (rc < 0 && rc != -EINTR) break;
        unsigned head, seen = 0;
        struct io_uring_cqe *cqe;
        io_uring_for_each_cqe(&u->rx, head, cqe) {
          seen++;
          if (cqe->user_data == RX_TAG && !(cqe->flags & IORING_CQE_F_MORE)) u->armed = false;
        }
        io_uring_cq_advance(&u->rx, seen);
      }
    }
  }
  /* The rings are torn down asynchronously, and the registered TAP file with them: it is
   * unregistered first, so that the device goes with the caller's close() as with
   * readv()/write() (a TAP of that name may be opened again right away). */
  if (u->rx_up) {
    io_uring_unregister_files(&u->rx);
    io_uring_queue_exit(&u->rx);
  }
  if (u->tx_up) {
    io_uring_unregister_files(&u->tx);
    io_uring_queue_exit(&u->tx);
  }
  if (u->br != MAP_FAILED) munmap(u->br, u->br_bytes);
  if (u->efd >= 0) close(u->efd);
  free(u);
}
