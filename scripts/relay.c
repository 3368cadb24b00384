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
 * Build: gcc -O2 -Wall -o relay scripts/relay.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <unistd.h>

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

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "-v") == 0) {
    vnet = 1;
    argv++;
    argc--;
  }
  if (argc != 3) {
    fprintf(stderr, "usage: relay [-v] TAP_A TAP_B\n");
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
