/*
 * relay: the smallest possible userspace L2 "switch" between two TAP devices, the
 * reference the benchmark (scripts/bench.mjs) holds tapnet's switch against.
 *
 *   relay TAP_A TAP_B
 *
 * Creates two TAP devices (IFF_TAP | IFF_NO_PI, no virtio-net header, no offloads:
 * the same kind of TAP a lab node opens), prints "ready" on stdout once both exist,
 * then copies every frame that arrives on one to the other: poll() on both, and for
 * each frame one read() and one write(). No learning, no batching, no copies beyond
 * the syscalls. The caller moves the two TAPs into the hosts' namespaces (the relay
 * keeps the file descriptors, so the hosts' interfaces stay its ports) and stops it
 * with SIGTERM; the TAPs vanish with the process. With PR_SET_PDEATHSIG the relay
 * also ends when the process that started it dies, so it cannot be left behind.
 *
 * On exit it prints its counters on stderr: frames and bytes each way, write errors.
 *
 * -t: two threads, one per direction (each polls one TAP and writes to the other):
 * what a dataplane gains from a second core when sender, receiver and dataplane share
 * the machine's two. The benchmark runs it as a reference to decide whether tapnet
 * should spread its ports over worker threads (only if it pays).
 *
 * -u: io_uring (native/uring.c, the same code as tapnet's TAP ports with io "uring"):
 * each TAP's frames arrive by a multishot read into 256 slots (64 with -v), the loop
 * polls the two rings' eventfds, and a batch goes out to the other TAP with one
 * submission. The like-for-like reference for tapnet with io "uring".
 *
 * Build: gcc -O2 -Wall -pthread -o relay scripts/relay.c native/uring.c -luring
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "../native/uring.h"

/* Frames drained from one TAP before looking at the other: keeps both directions
 * moving under load (a TCP flow's ACKs travel the other way). */
#define BURST 64

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

/* -v: IFF_VNET_HDR with checksum/TSO offloads, as tapnet's TAP ports use them: each
 * read() and write() carries a 12-byte virtio-net header and up to a 64 KiB super-frame. */
static int vnet = 0;

static int open_tap(const char *name) {
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "relay: open /dev/net/tun: %s\n", strerror(errno));
    exit(1);
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0);
  if (strlen(name) >= IFNAMSIZ) {
    fprintf(stderr, "relay: interface name too long: %s\n", name);
    exit(1);
  }
  strcpy(ifr.ifr_name, name);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    fprintf(stderr, "relay: TUNSETIFF %s: %s\n", name, strerror(errno));
    exit(1);
  }
  if (vnet) {
    int sz = 12;
    if (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0 ||
        ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN) < 0) {
      fprintf(stderr, "relay: vnet header/offloads on %s: %s\n", name, strerror(errno));
      exit(1);
    }
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
    fprintf(stderr, "relay: O_NONBLOCK: %s\n", strerror(errno));
    exit(1);
  }
  return fd;
}

/* One direction, for -t: frames from `in` to `out`. */
struct dir {
  int in, out;
  unsigned long long frames, bytes, werr;
};

static void *one_way(void *arg) {
  struct dir *d = arg;
  static __thread unsigned char tbuf[65536 + 256];
  struct pollfd p = {.fd = d->in, .events = POLLIN};
  while (!stop) {
    int n = poll(&p, 1, 200);
    if (n <= 0) continue;
    for (int k = 0; k < BURST; k++) {
      ssize_t r = read(d->in, tbuf, sizeof tbuf);
      if (r <= 0) break;
      if (write(d->out, tbuf, (size_t)r) != r) d->werr++;
      d->frames++;
      d->bytes += (unsigned long long)r;
    }
  }
  return NULL;
}

/* -u: both directions through io_uring, one thread. */
static int relay_uring(int fd[2], char **names) {
  const uint32_t slots = vnet ? 64 : 256, slot_size = vnet ? 65536 + 256 : 2048, headroom = 64;
  uint8_t *region[2];
  uring_io_t *u[2];
  static uint32_t slot[256], len[256], off[256];
  unsigned long long frames[2] = {0, 0}, bytes[2] = {0, 0};
  uring_io_stats_t st[2];
  memset(st, 0, sizeof st);
  for (int i = 0; i < 2; i++) {
    region[i] = malloc((size_t)slots * slot_size);
    const char *step = "malloc";
    int err = region[i] == NULL ? ENOMEM : uring_io_open(&u[i], fd[i], region[i], slots, slot_size, headroom, slots, &step);
    if (err != 0) {
      fprintf(stderr, "relay: io_uring on %s: %s: %s\n", names[i], step, strerror(err));
      return 1;
    }
  }
  struct pollfd p[2] = {{.fd = uring_io_eventfd(u[0]), .events = POLLIN}, {.fd = uring_io_eventfd(u[1]), .events = POLLIN}};
  while (!stop) {
    int n = poll(p, 2, 1000);
    if (n < 0) {
      if (errno == EINTR) continue;
      fprintf(stderr, "relay: poll: %s\n", strerror(errno));
      break;
    }
    for (int i = 0; i < 2; i++) {
      if (!(p[i].revents & POLLIN)) continue;
      uint32_t c = uring_io_rx(u[i], slot, len, slots, &st[i]);
      for (uint32_t k = 0; k < c; k++) {
        off[k] = slot[k] * slot_size + headroom;
        bytes[i] += len[k];
      }
      frames[i] += c;
      if (c != 0) uring_io_tx(u[1 - i], region[i], off, len, c, &st[1 - i]);
      uring_io_rx_done(u[i]);
    }
  }
  fprintf(stderr, "relay: %s->%s %llu frames %llu bytes (%llu write errors); %s->%s %llu frames %llu bytes (%llu write errors)\n",
          names[0], names[1], frames[0], bytes[0], (unsigned long long)st[1].tx_errors, names[1], names[0], frames[1], bytes[1],
          (unsigned long long)st[0].tx_errors);
  for (int i = 0; i < 2; i++) uring_io_close(u[i]);
  return 0;
}

int main(int argc, char **argv) {
  int threads = 0, uring = 0;
  while (argc > 1 && argv[1][0] == '-') {
    if (strcmp(argv[1], "-v") == 0) vnet = 1;
    else if (strcmp(argv[1], "-t") == 0) threads = 1;
    else if (strcmp(argv[1], "-u") == 0) uring = 1;
    else break;
    argv++;
    argc--;
  }
  if (argc != 3) {
    fprintf(stderr, "usage: relay [-v] [-t | -u] TAP_A TAP_B\n");
    return 2;
  }
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal; /* no SA_RESTART: poll() returns EINTR and the loop ends */
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  int fd[2] = {open_tap(argv[1]), open_tap(argv[2])};
  printf("ready\n");
  fflush(stdout);

  if (uring) return relay_uring(fd, argv + 1);

  if (threads) {
    /* Signals go to the main thread, which waits; the workers see `stop` within 200 ms. */
    struct dir d[2] = {{.in = fd[0], .out = fd[1]}, {.in = fd[1], .out = fd[0]}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
      if (pthread_create(&t[i], NULL, one_way, &d[i]) != 0) {
        fprintf(stderr, "relay: pthread_create failed\n");
        return 1;
      }
    }
    while (!stop) pause();
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    fprintf(stderr, "relay: %s->%s %llu frames %llu bytes (%llu write errors); %s->%s %llu frames %llu bytes (%llu write errors)\n",
            argv[1], argv[2], d[0].frames, d[0].bytes, d[0].werr, argv[2], argv[1], d[1].frames, d[1].bytes, d[1].werr);
    return 0;
  }

  static unsigned char buf[65536 + 256];
  unsigned long long frames[2] = {0, 0}, bytes[2] = {0, 0}, werr[2] = {0, 0};
  struct pollfd p[2] = {{.fd = fd[0], .events = POLLIN}, {.fd = fd[1], .events = POLLIN}};
  while (!stop) {
    int n = poll(p, 2, 1000);
    if (n < 0) {
      if (errno == EINTR) continue;
      fprintf(stderr, "relay: poll: %s\n", strerror(errno));
      break;
    }
    for (int i = 0; i < 2; i++) {
      if (!(p[i].revents & (POLLIN | POLLERR | POLLHUP))) continue;
      for (int k = 0; k < BURST; k++) {
        ssize_t r = read(fd[i], buf, sizeof buf);
        if (r < 0) {
          if (errno == EAGAIN || errno == EINTR) break;
          /* EIO etc. while a device is being moved or brought down: try later. */
          break;
        }
        if (r == 0) break;
        /* Both TAPs are non-blocking; a TAP write does not block anyway (the frame
         * is handed to the receiving stack or dropped by it), so a failed write
         * (EIO while the other side is down) is a lost frame, as on a wire. */
        if (write(fd[1 - i], buf, (size_t)r) != r) werr[i]++;
        frames[i]++;
        bytes[i] += (unsigned long long)r;
      }
    }
  }
  fprintf(stderr, "relay: %s->%s %llu frames %llu bytes (%llu write errors); %s->%s %llu frames %llu bytes (%llu write errors)\n",
          argv[1], argv[2], frames[0], bytes[0], werr[0], argv[2], argv[1], frames[1], bytes[1], werr[1]);
  return 0;
}
