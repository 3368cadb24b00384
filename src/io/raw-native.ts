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
import { loadNative } from "./native.js";
import type { SocketHandle, SocketRxOptions } from "./udp-native.js";

export interface RawOptions extends SocketRxOptions {
  /** IP protocol number, 1..255 (4 = IPIP; 255 = IPPROTO_RAW: send only, always hdrIncl). */
  protocol: number;
  /** IP_HDRINCL: sent messages carry their own IPv4 header. */
  hdrIncl?: boolean;
  /** Receive only packets to this local address (host order); 0 or left out: every address of the namespace. */
  bindAddr?: number;
  /**
   * Called once per wake-up that received something: `count` packets delivered, `truncated`
   * dropped for not fitting their slot (count is 0 only when truncated is not). Needed only
   * if `start()` is called. An exception thrown here becomes an uncaught exception.
   */
  onBatch?: (count: number, truncated: number) => void;
}

/** A raw socket (send(): `port` ignored, pass 0; `segs` null); its stats() are the UDP handle's: `rxMessages` counts packets, `rxTruncated` packets longer than a slot. */
export interface RawHandle extends SocketHandle<null> {
  readonly protocol: number;
  /** IP_HDRINCL is on (asked for, or protocol 255). */
  readonly hdrIncl: boolean;
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
