/**
 * Typed access to the native batched UDP socket (native/udp.c), for the tunnel
 * underlay (VXLAN).
 *
 * Receive: on each wake-up of the socket, one recvmmsg() of up to `slots`
 * datagrams lands directly in the caller's pool (message i in slot i, at
 * `pool[rxBase + i*slotSize + rxOffset ..]`), then `onBatch(count)` is called once.
 * Message i of a batch is at `pool[offsets[i] .. offsets[i] + lengths[i])`
 * from `addrs[i]:ports[i]`; like TAP batches, those bytes stay valid only until
 * `onBatch` returns. The slots of a batch need not be contiguous: a datagram
 * that did not fit its slot is dropped (counted in `rxTruncated`) and the
 * arrays are compacted over it.
 *
 * Send: `send()` takes a whole batch in one call (sendmmsg), never blocks and
 * never throws for a message the kernel refuses: that message's length
 * becomes 0 and it is counted in `txErrors` (`lastTxErrno` keeps the errno).
 *
 * UDP GSO (kernel >= 4.18): a message with `segs[i] > 0` and
 * `lengths[i] > segs[i]` leaves as datagrams of `segs[i]` bytes (the last one
 * shorter): at most UDP_MAX_SEGMENTS of them (128 on Linux 6.x, 64 on older
 * kernels), each `segs[i] + 28` bytes within the route's MTU, the whole
 * message at most 65507 bytes. The kernel refuses such a message with EINVAL when the socket
 * has `noCheck` (the kernel will not segment without checksums), and with
 * EINVAL when a segment does not fit the MTU or there are too many. A device
 * without checksum offload or UDP segmentation (`ethtool -K dev tx off`) is
 * fine on Linux 6.x: the kernel segments in software before the device.
 *
 * UDP GRO (`gro`, kernel >= 5.0): the kernel may hand up several datagrams of
 * one flow as one message with `segs[i]` = the size of each but the last; the
 * receiver splits at multiples of `segs[i]`. `slotSize` must then hold a whole
 * train (65535 bytes), or trains are dropped as truncated. What gets coalesced
 * depends on the path (Linux 6.18, veth, measured in test/io/udp-native.test.ts):
 * a GSO train sent over a veth arrives intact (the veth passes the GSO packet
 * through); a train the sender's veth segmented in software (tx off) arrives as
 * single datagrams unless the receiving veth does GRO (`ethtool -K dev gro on`,
 * which gives the veth a NAPI poll), and then it is coalesced again; datagrams
 * sent one by one (no GSO) were not coalesced even then: each reached the
 * receiving veth's poll on its own.
 *
 * Addresses are IPv4 as uint32 in host order (0x0a000001 = 10.0.0.1).
 */
import { constants as osConstants } from "node:os";
import { getSystemErrorMap } from "node:util";
import { ipToString, parseIp } from "../wire/ipv4addr.js";
import { type HandleStats, loadNative } from "./native.js";

/** Largest UDP payload over IPv4: 65535 - 20 (IPv4 header) - 8 (UDP header). */
export const UDP_MAX_PAYLOAD = 65507;

/** What openUdp and openRaw take alike: socket buffers, the receive region and its arrays. */
export interface SocketRxOptions {
  /** Receive buffer in bytes (SO_RCVBUFFORCE, or SO_RCVBUF capped by net.core.rmem_max without CAP_NET_ADMIN). */
  rcvbuf?: number;
  /** Send buffer in bytes (SO_SNDBUFFORCE, or SO_SNDBUF). */
  sndbuf?: number;
  /** Packet memory (receive slots live here). */
  pool: Buffer;
  /** Byte offset in `pool` of this socket's receive region (`slots * slotSize` bytes). */
  rxBase: number;
  /** Most messages received per wake-up. */
  slots: number;
  /** Bytes per slot. Longer messages (or GRO trains) are dropped and counted in `rxTruncated`. */
  slotSize: number;
  /** Where a message lands in its slot (default 0): slot i receives at `rxBase + i*slotSize + rxOffset`, at most `slotSize - rxOffset` bytes. */
  rxOffset?: number;
  /** Receives the absolute pool offset of message i (length >= slots). */
  offsets: Uint32Array;
  /** Receives the length of message i (a raw socket's: IPv4 header included) (length >= slots). */
  lengths: Uint32Array;
  /** Receives the source IPv4 (host order) of message i (length >= slots). */
  addrs: Uint32Array;
}

/** A tunnel port's landing: `slots` receive slots of `slotSize` bytes and the arrays recvmmsg reports them in (offsets, lengths, source address and port, GRO segment size), made once per socket. */
export interface Landing {
  slots: number;
  slotSize: number;
  offsets: Uint32Array;
  lengths: Uint32Array;
  addrs: Uint32Array;
  ports: Uint32Array;
  segs: Uint32Array;
}

export function landing(slots: number, slotSize: number): Landing {
  const n = slots;
  return {
    slots,
    slotSize,
    offsets: new Uint32Array(n),
    lengths: new Uint32Array(n),
    addrs: new Uint32Array(n),
    ports: new Uint32Array(n),
    segs: new Uint32Array(n),
  };
}

/**
 * Opens a tunnel port's listening socket over its landing (at `where.rxBase` in the pool).
 * Returns the handle, or why it could not be opened: not fatal for the port's open(), since
 * the port exists and its ready() reports the reason (the node prints it and exits; tests
 * look at lastError).
 */
export function listenLanded(
  openSocket: (opts: UdpOptions) => UdpHandle,
  land: Landing,
  where: Pick<UdpOptions, "bindAddr" | "port" | "rcvbuf" | "gro" | "df" | "pool" | "rxBase" | "onBatch">,
): UdpHandle | string {
  try {
    return openSocket({ ...land, ...where });
  } catch (e) {
    return (e as Error).message;
  }
}

export interface UdpOptions extends SocketRxOptions {
  /** Local IPv4 address as a host-order uint32; 0 = INADDR_ANY. Must be on an interface of the namespace (else EADDRNOTAVAIL). */
  bindAddr: number;
  /** Local port, 0..65535; 0 lets the kernel pick one (for send-only sockets). `handle.port` tells which. */
  port: number;
  /** UDP_GRO: receive coalesced datagram trains as one message with `segs[i]` set. Kernel >= 5.0. */
  gro?: boolean;
  /** SO_NO_CHECK: send without a UDP checksum (0). The kernel then refuses GSO sends (EINVAL, counted per message). */
  noCheck?: boolean;
  /** IP_MTU_DISCOVER = IP_PMTUDISC_DONT: datagrams leave with DF clear (as the kernel's vxlan sends). */
  noDf?: boolean;
  /** IP_MTU_DISCOVER = IP_PMTUDISC_DO: DF set and never fragmented here; a datagram above the path MTU the kernel knows (the route's, or learned from ICMP) is refused with EMSGSIZE. Not with noDf. */
  df?: boolean;
  /** Receives the source port of message i (length >= slots). */
  ports: Uint32Array;
  /** Receives the GRO segment size of message i, 0 when it is a single datagram (length >= slots). */
  segs: Uint32Array;
  /** Called once per wake-up with the number of messages (never 0). Needed only if `start()` is called. An exception thrown here becomes an uncaught exception. */
  onBatch?: (count: number) => void;
}

export interface UdpStats extends HandleStats {
  /** Datagrams (or GRO trains) dropped because they did not fit in a slot. */
  rxTruncated: number;
}

/**
 * What a UDP and a raw socket handle have alike. send() takes a whole batch in one
 * call (sendmmsg): message i is `pool[offsets[i] ..+ lengths[i])` to `addrs[i]` (a UDP
 * socket's: to `addrs[i]:port`, split by the kernel into datagrams of `segs[i]` bytes
 * when `segs` is given and `lengths[i] > segs[i] > 0`; a raw socket ignores `port` and
 * takes `segs` null). It returns how many messages the kernel accepted; a refused one
 * (kernel error, outside the pool, length 0) gets `lengths[i] = 0` and is counted; on a
 * full socket buffer (EAGAIN/ENOBUFS) the rest of the batch is dropped the same way. It
 * throws only for bad arguments (not arrays, count beyond an array, a UDP port not
 * 1..65535, a raw socket's segs not null) or after close().
 */
export interface SocketHandle<Segs = Uint32Array | null> {
  /** The socket's file descriptor, -1 after close(). */
  readonly fd: number;
  /** SO_RCVBUF as read back after opening (Linux reports twice what it grants). */
  readonly rcvbuf: number;
  /** SO_SNDBUF as read back after opening (Linux reports twice what it grants). */
  readonly sndbuf: number;
  /** Start delivering batches (uv_poll_start). While started, the handle is kept alive and keeps the event loop alive. Throws if opened without onBatch. */
  start(): void;
  /** Pause delivery: messages queue in the socket's receive buffer, then are dropped there. */
  stop(): void;
  /** Stop polling and close the socket; idempotent. A garbage-collected handle (not started) is closed too. */
  close(): void;
  send(pool: Buffer, offsets: Uint32Array, lengths: Uint32Array, addrs: Uint32Array, port: number, segs: Segs, count: number): number;
  /**
   * send() with gathered messages (sendmmsg with several iovecs per message): message i
   * is the pool ranges of gather entries `firsts[i] .. firsts[i] + counts[i] - 1` (entry
   * j: `pool[iovOffsets[j] ..+ iovLengths[j])`) in order, `lengths[i]` bytes in all, so
   * a header can be sent in front of a payload that stays where it is (one copy, the
   * kernel's). At most 1024 entries per message (UIO_MAXIOV). Refusals, segs and the
   * return value are send()'s; a message whose entries leave the pool or do not add up to
   * `lengths[i]` is refused (EFAULT, EINVAL). Absent on simulated sockets (tests).
   */
  sendv?(
    pool: Buffer,
    iovOffsets: Uint32Array,
    iovLengths: Uint32Array,
    firsts: Uint32Array,
    counts: Uint32Array,
    lengths: Uint32Array,
    addrs: Uint32Array,
    port: number,
    segs: Segs,
    count: number,
  ): number;
  stats(): UdpStats;
}

export interface UdpHandle extends SocketHandle {
  /** The bound local port (the one the kernel picked when `port` was 0). */
  readonly port: number;
}

interface UdpBinding {
  openUdp(opts: UdpOptions): UdpHandle;
}

/**
 * Opens a UDP socket (SOCK_DGRAM|SOCK_NONBLOCK|SOCK_CLOEXEC) bound to `bindAddr:port`.
 * All options are checked before the socket is made (TypeError/RangeError), so a bad
 * call leaves no socket. A failed bind throws an Error with `code` (EADDRNOTAVAIL,
 * EADDRINUSE, EACCES), `errno`, `syscall: 'bind'` and a message naming the address.
 */
export function openUdp(opts: UdpOptions): UdpHandle {
  return (loadNative() as unknown as UdpBinding).openUdp(opts);
}

const errnoNames = new Map<number, string>();
for (const [name, value] of Object.entries(osConstants.errno)) {
  if (!errnoNames.has(value)) errnoNames.set(value, name);
}

/** 'ENETUNREACH' for 101 etc. (for `lastTxErrno`); 'E?' followed by the number if unknown. */
export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? (errno === 0 ? "" : `E?${errno}`);
}

const errnoTexts = new Map<number, string>();

/** 'ENETUNREACH (network is unreachable)' for 101: a refused send in words (lastTxError). */
export function errnoText(errno: number): string {
  let t = errnoTexts.get(errno);
  if (t === undefined) {
    const e = getSystemErrorMap().get(-errno);
    t = errno === 0 ? "refused" : e === undefined ? errnoName(errno) : `${e[0]} (${e[1]})`;
    errnoTexts.set(errno, t);
  }
  return t;
}

/** 10.0.0.1 -> 0x0a000001 (host order), as src/wire's parseIp: throws on anything but a dotted quad. */
export const ipv4ToUint = parseIp;

/** 0x0a000001 -> '10.0.0.1', as src/wire's ipToString. */
export const uintToIpv4 = ipToString;
