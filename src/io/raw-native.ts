/**
 * Typed access to the native batched raw IPv4 socket (openRaw in native/udp.c), for
 * the IPIP tunnel underlay (RFC 2003, src/io/ipip-port.ts). It is the UDP handle's
 * machinery (src/io/udp-native.ts) on a SOCK_RAW socket of one IP protocol.
 *
 * Receive: on each wake-up, one recvmmsg() of up to `slots` packets straight into the
 * caller's pool (packet i at `pool[rxBase + i*slotSize + rxOffset ..]`, at most
 * `slotSize - rxOffset` bytes), then one `onBatch(count, truncated)` call. Packet i of
 * a batch is at `pool[offsets[i] .. offsets[i] + lengths[i])` from `addrs[i]`, valid
 * until `onBatch` returns. A raw IPv4 socket delivers the whole packet, its IPv4
 * header (with options) included, and every packet of its protocol addressed to the
 * namespace (or, with `bindAddr`, to that address only); the kernel has reassembled
 * fragments and checked the header checksum. A packet longer than its slot is dropped
 * (MSG_TRUNC), counted in `rxTruncated` and in the `truncated` argument of that
 * wake-up's onBatch; a wake-up that only dropped truncated packets calls onBatch with
 * count 0, so the caller's counters stay current. Otherwise count is never 0.
 *
 * An open raw socket of a protocol also means the kernel no longer answers packets of
 * that protocol with ICMP protocol-unreachable (ip_local_deliver_finish sends one only
 * when no raw socket took the packet), and an unconnected raw socket without
 * IP_RECVERR ignores ICMP errors (raw_err): a peer's ICMP never turns into a socket
 * error.
 *
 * Send: `send()` takes a whole batch in one call (sendmmsg), never blocks and never
 * throws for a packet the kernel refuses: that packet's length becomes 0 and it is
 * counted in `txErrors` (`lastTxErrno` keeps the errno); on a full send buffer
 * (EAGAIN/ENOBUFS) the rest of the batch is dropped the same way. With `hdrIncl`
 * (IP_HDRINCL) each message is a whole IPv4 packet, sent as written except that the
 * kernel fills in the total length and the header checksum (and an ident when it is
 * 0), and never fragments: a packet longer than the route's MTU is refused with
 * EMSGSIZE. The destination is `addrs[i]` (the route is looked up for it; write the
 * same address into the header). Without `hdrIncl` the kernel builds the header.
 * There is no GSO: the `port` argument is ignored (pass 0) and `segs` must be null.
 *
 * Needs root or CAP_NET_RAW. Addresses are IPv4 as uint32 in host order.
 */
import { loadNative } from './native.js';
import type { UdpStats } from './udp-native.js';

export interface RawOptions {
  /** IP protocol number, 1..255 (4 = IPIP; 255 = IPPROTO_RAW: send only, always hdrIncl). */
  protocol: number;
  /** IP_HDRINCL: sent messages carry their own IPv4 header. */
  hdrIncl?: boolean;
  /** Receive only packets to this local address (host order); 0 or left out: every address of the namespace. */
  bindAddr?: number;
  /** Receive buffer in bytes (SO_RCVBUFFORCE, or SO_RCVBUF capped by net.core.rmem_max without CAP_NET_ADMIN). */
  rcvbuf?: number;
  /** Send buffer in bytes (SO_SNDBUFFORCE, or SO_SNDBUF). */
  sndbuf?: number;
  /** Packet memory (receive slots live here). */
  pool: Buffer;
  /** Byte offset in `pool` of this socket's receive region (`slots * slotSize` bytes). */
  rxBase: number;
  /** Most packets received per wake-up. */
  slots: number;
  /** Bytes per slot. */
  slotSize: number;
  /** Where a packet lands in its slot (default 0): slot i receives at `rxBase + i*slotSize + rxOffset`, at most `slotSize - rxOffset` bytes. */
  rxOffset?: number;
  /** Receives the absolute pool offset of packet i (length >= slots). */
  offsets: Uint32Array;
  /** Receives the length of packet i, IPv4 header included (length >= slots). */
  lengths: Uint32Array;
  /** Receives the source IPv4 (host order) of packet i (length >= slots). */
  addrs: Uint32Array;
  /**
   * Called once per wake-up that received something: `count` packets delivered, `truncated`
   * dropped for not fitting their slot (count is 0 only when truncated is not). Needed only
   * if `start()` is called. An exception thrown here becomes an uncaught exception.
   */
  onBatch?: (count: number, truncated: number) => void;
}

/** Same fields as the UDP handle's; `rxMessages` counts packets, `rxTruncated` packets longer than a slot. */
export type RawStats = UdpStats;

export interface RawHandle {
  /** The socket's file descriptor, -1 after close(). */
  readonly fd: number;
  readonly protocol: number;
  /** IP_HDRINCL is on (asked for, or protocol 255). */
  readonly hdrIncl: boolean;
  /** SO_RCVBUF as read back after opening (Linux reports twice what it grants). */
  readonly rcvbuf: number;
  /** SO_SNDBUF as read back after opening (Linux reports twice what it grants). */
  readonly sndbuf: number;
  /** Start delivering batches (uv_poll_start). While started, the handle is kept alive and keeps the event loop alive. Throws if opened without onBatch. */
  start(): void;
  /** Pause delivery: packets queue in the socket's receive buffer, then are dropped there. */
  stop(): void;
  /** Stop polling and close the socket; idempotent. A garbage-collected handle (not started) is closed too. */
  close(): void;
  /**
   * Sends packets 0..count-1: packet i is `pool[offsets[i] ..+ lengths[i])` to `addrs[i]`.
   * Returns how many the kernel accepted; a refused one (kernel error, outside the pool,
   * length 0) gets `lengths[i] = 0` and is counted. `port` is ignored (pass 0) and `segs`
   * must be null. Throws only for bad arguments (not arrays, count beyond an array, segs
   * not null) or after close() (code ERR_RAW_CLOSED).
   */
  send(
    pool: Buffer,
    offsets: Uint32Array,
    lengths: Uint32Array,
    addrs: Uint32Array,
    port: number,
    segs: null,
    count: number,
  ): number;
  stats(): RawStats;
}

interface RawBinding {
  openRaw(opts: RawOptions): RawHandle;
}

/**
 * Opens a raw IPv4 socket (SOCK_RAW|SOCK_NONBLOCK|SOCK_CLOEXEC, IPPROTO_`protocol`).
 * All options are checked before the socket is made (TypeError/RangeError), so a bad
 * call leaves no socket. A failed socket() or bind() throws an Error with `code`
 * (EPERM without CAP_NET_RAW, EADDRNOTAVAIL), `errno`, `syscall` and a message that
 * says what to do.
 */
export function openRaw(opts: RawOptions): RawHandle {
  return (loadNative() as unknown as RawBinding).openRaw(opts);
}
