/**
 * Typed access to the native addon (native/tap.c): Linux TAP devices.
 *
 * The addon opens /dev/net/tun, watches the fd with uv_poll on the calling
 * thread's event loop and, on each wake-up, drains up to `slots` frames into
 * the caller's pool, then calls `onBatch(count)` once. Frame i of a batch is at
 * `pool[offsets[i] .. offsets[i] + lengths[i])`; those bytes stay valid only
 * until `onBatch` returns (the next wake-up reuses the slots). `headroom` bytes
 * before each frame are free, so a header can be pushed in place and the frame
 * written out with `write()` inside the same `onBatch` call.
 *
 * With `offload`, every received and written frame starts with a 12-byte
 * virtio_net_hdr_v1 (VNET_HDR_LEN, src/wire/vnet.ts) and the kernel may hand
 * over TCP frames up to 64 KiB (TSO) and frames with a partial checksum (flag
 * NEEDS_CSUM).
 *
 * The addon is loaded lazily, so importing this module never fails on a
 * machine where it was not built; the first call does, with instructions.
 */
import { createRequire } from "node:module";

/** Longest interface name Linux accepts (IFNAMSIZ - 1). */
export const IFNAME_MAX = 15;

export interface TapOptions {
  /** Interface name (at most 15 bytes; `tap%d` lets the kernel pick). Created if missing; goes away when the fd closes unless it is persistent. */
  name: string;
  /** IFF_VNET_HDR with a 12-byte header and checksum/TSO offloads (TUN_F_CSUM|TSO4|TSO6|TSO_ECN). */
  offload?: boolean;
  /** IFF_MULTI_QUEUE: several fds may attach to one TAP. */
  multiQueue?: boolean;
  /** TUNSETPERSIST: the TAP outlives its last fd (a lab node restarted after a crash re-attaches to it). */
  persist?: boolean;
  /**
   * Receive and transmit through io_uring (native/uring.c): a multishot read into the
   * receive slots and one submission per transmitted batch. When the kernel (or a
   * seccomp filter) refuses it, the handle uses readv()/write() and says why in
   * `ioFallback`. Under io_uring a frame must be at least one byte shorter than
   * `slotSize - headroom` (one filling the slot exactly counts in rxOversize).
   */
  uring?: boolean;
  /**
   * Adopt this inherited fd, already attached to a TAP (tapAttachIn in a parent), instead
   * of opening one by `name` (which then only names the port in messages). Its header
   * mode must match `offload`. The call owns the fd: closed on failure too. The handle's
   * ifindex and mtu are 0 (the TAP is in another namespace); its name is the device's.
   */
  fd?: number;
  /** Packet memory shared by all ports of the process. */
  pool: Buffer;
  /** Byte offset in `pool` of this port's receive region (`slots * slotSize` bytes). */
  rxBase: number;
  /** Most frames drained per wake-up. */
  slots: number;
  /** Bytes per slot, headroom included. Frames longer than `slotSize - headroom` are dropped and counted in `rxOversize`. */
  slotSize: number;
  /** Bytes left free before each received frame. */
  headroom: number;
  /** Receives the absolute pool offset of frame i (length >= slots). */
  offsets: Uint32Array;
  /** Receives the length of frame i (length >= slots). */
  lengths: Uint32Array;
  /** Called once per wake-up with the number of frames (never 0). An exception thrown here becomes an uncaught exception. */
  onBatch: (count: number) => void;
}

/**
 * What every handle of the addon counts (native/pollfd.h): the same keys for a TAP,
 * a UDP and a raw socket, but for the one that counts what did not fit a slot.
 */
export interface HandleStats {
  /** Receive failures other than EAGAIN, and poll errors (a TAP: the device was destroyed). */
  rxErrors: number;
  /** Frames, datagrams or packets delivered through onBatch. */
  rxMessages: number;
  /** Messages the device or the kernel refused (EAGAIN, ENOBUFS, EMSGSIZE, outside the pool...). */
  txErrors: number;
  /** errno of the last refused message (e.g. 101 ENETUNREACH, 90 EMSGSIZE, 11 EAGAIN), 0 if none yet. */
  lastTxErrno: number;
  /** uv_poll wake-ups. */
  wakeups: number;
  /** onBatch calls (wake-ups that delivered something). */
  batches: number;
}

export interface TapStats extends HandleStats {
  /** Frames dropped because they did not fit in a slot (or were empty). */
  rxOversize: number;
}

export interface TapHandle {
  /** The kernel's name for the device (a `%d` template is filled in). */
  readonly name: string;
  /** File descriptor of /dev/net/tun, or -1 after close(). */
  readonly fd: number;
  /** Values read when the TAP was opened, in the opener's network namespace; moving the device to another namespace may change its ifindex. */
  readonly ifindex: number;
  /** 48-bit MAC as a number, e.g. 0x020000000001. */
  readonly mac: number;
  readonly mtu: number;
  /** The I/O method in use: "uring" or "rw" (readv()/write()). */
  readonly io: "uring" | "rw";
  /** Why io_uring was asked for and not used (the failed call and its error), else null. */
  readonly ioFallback: string | null;
  /** The handle's io_uring fds (receive, transmit); [] with "rw". */
  readonly rings: number[];
  /** Start delivering batches (uv_poll_start). While started, the handle is kept alive and keeps the event loop alive. */
  start(): void;
  /** Pause delivery (backpressure): frames queue in the kernel (up to txqueuelen, then dropped there). */
  stop(): void;
  /** Writes frames 0..count-1 (one write() each, or one io_uring submission for all) in one call; returns how many the kernel accepted. A rejected frame gets its length set to 0 and is counted in stats().txErrors, never thrown. */
  write(pool: Buffer, offsets: Uint32Array, lengths: Uint32Array, count: number): number;
  stats(): TapStats;
  /** Stop polling and close the fd; idempotent. A garbage-collected handle (not started) is closed too. */
  close(): void;
}

export interface InterfaceInfo {
  mac: number;
  mtu: number;
  ifindex: number;
}

/** A TAP in another network namespace, attached by tapAttachIn: its fd and what the namespace says of it. */
export interface AttachedTap extends InterfaceInfo {
  fd: number;
}

/** tapAttachIn's options: the namespace's path (/run/netns/NAME), the TAP's name there. */
export interface TapAttachOptions {
  netns: string;
  name: string;
  /** Attach with virtio-net headers (IFF_VNET_HDR). */
  offload?: boolean;
  /** Make the TAP (persistent) when the namespace has none of that name, instead of failing. */
  create?: boolean;
}

interface NativeBinding {
  openTap(opts: TapOptions): TapHandle;
  interfaceInfo(name: string): InterfaceInfo;
  tapPersist(fd: number, on: boolean): void;
  tapAttachIn(opts: TapAttachOptions): AttachedTap;
  sysctlIn(opts: { netns: string; names: string[]; value: string }): void;
  setBusyPoll(microseconds: number): void;
  busyPollStats(): BusyPollStats;
  fdPair(): [number, number];
  fdSend(sock: number, text: string, fds: number[]): void;
  fdRecv(sock: number): { text: string; fds: number[] } | null;
}

/** Busy polling after a batch (native/busypoll.c): the window and what it did. */
export interface BusyPollStats {
  /** The window in microseconds (0: off). */
  windowUs: number;
  /** Windows opened: batches that found the loop about to sleep. */
  windows: number;
  /** Loop turns spent polling (epoll_wait with a zero timeout). */
  turns: number;
  /** A window is open now (the loop does not sleep). */
  polling: boolean;
}

/**
 * After every batch a native handle of this thread delivers, the event loop keeps
 * polling instead of sleeping for `microseconds` (0: off, the default). See
 * native/busypoll.c.
 */
export function setBusyPoll(microseconds: number): void {
  loadNative().setBusyPoll(microseconds);
}

/** The busy-poll window of this thread and its counters (zeros when never set). */
export function busyPollStats(): BusyPollStats {
  return loadNative().busyPollStats();
}

const ADDON_PATH = "../../native/build/Release/tapnet.node";

let binding: NativeBinding | undefined;

/** Loads the addon (once). Throws an Error with code ERR_TAPNET_NATIVE_MISSING if it was not built. */
export function loadNative(): NativeBinding {
  if (binding !== undefined) return binding;
  const require = createRequire(import.meta.url);
  try {
    binding = require(ADDON_PATH) as NativeBinding;
  } catch (cause) {
    const err = new Error(
      `tapnet native addon could not be loaded from native/build/Release/tapnet.node: ` +
        `build it with \`npm run install\` in the repository root (needs a C compiler and the Node headers)` +
        (cause instanceof Error ? ` [${cause.message}]` : ""),
      { cause },
    ) as Error & { code: string };
    err.code = "ERR_TAPNET_NATIVE_MISSING";
    throw err;
  }
  return binding;
}

/** True when the addon is built and loadable (for skipping tests). */
export function nativeAvailable(): boolean {
  try {
    loadNative();
    return true;
  } catch {
    return false;
  }
}

/**
 * Opens (creating if needed) a TAP device. Throws an Error with a `code`
 * (ENAMETOOLONG, EACCES, EPERM, ENOENT, EBUSY, EINVAL, ...) and a message
 * that says what to do; RangeError/TypeError for bad options. All options are
 * checked before /dev/net/tun is opened, so a bad call leaves no interface.
 */
export function openTap(opts: TapOptions): TapHandle {
  return loadNative().openTap(opts);
}

/** MAC, MTU and ifindex of an interface in this process's network namespace. */
export function interfaceInfo(name: string): InterfaceInfo {
  return loadNative().interfaceInfo(name);
}

/** Makes the TAP on `fd` persistent (it outlives its last fd) or not (it goes with its last fd). */
export function tapPersist(fd: number, on: boolean): void {
  loadNative().tapPersist(fd, on);
}

/**
 * Attaches to the persistent TAP `name` in the network namespace at `netns` (a path such
 * as /run/netns/tn.LAB.HOST): setns there on the calling thread, open /dev/net/tun,
 * TUNSETIFF (IFF_TAP|IFF_NO_PI, IFF_VNET_HDR with `offload`), setns back. Needs
 * CAP_SYS_ADMIN. Refuses (ENODEV) when there is no persistent TAP of that name, unless
 * `create` asks for one (made persistent). The fd is blocking and close-on-exec; a child
 * given it in a stdio slot adopts it with openTap({ fd }).
 */
export function tapAttachIn(opts: TapAttachOptions): AttachedTap {
  return loadNative().tapAttachIn(opts);
}

/**
 * Writes `value` to the sysctls `names` ("net.ipv6.conf.all.disable_ipv6") of the network
 * namespace at `netns` (a path such as /run/netns/tn.LAB.HOST), from this thread (setns
 * there and back, as tapAttachIn): `ip netns exec NS sysctl -qw NAME=VALUE…` without its
 * two processes. Needs CAP_SYS_ADMIN.
 */
export function sysctlIn(opts: { netns: string; names: string[]; value: string }): void {
  loadNative().sysctlIn(opts);
}

/**
 * Passing open fds between processes (native/fdpass.c, SCM_RIGHTS): fdPair() makes a
 * close-on-exec SOCK_SEQPACKET socket pair; fdSend(sock, text, fds) sends one message;
 * fdRecv(sock) blocks until one arrives ({ text, fds }, the fds close-on-exec) or the
 * other end is closed (null).
 */
export function fdPair(): [number, number] {
  return loadNative().fdPair();
}
export function fdSend(sock: number, text: string, fds: number[]): void {
  loadNative().fdSend(sock, text, fds);
}
export function fdRecv(sock: number): { text: string; fds: number[] } | null {
  return loadNative().fdRecv(sock);
}
