/**
 * Conntrack states and timeouts: what a tracked connection is doing and how long it is
 * remembered in that state, after Linux nf_conntrack (nf_conntrack_proto_tcp's state
 * machine without sequence/window tracking, the nf_conntrack_*_timeout_* sysctls).
 *
 * TCP follows the flags of each segment (tcpTransition below); UDP and ICMP have
 * pseudo states for their timeouts: UDP until a reply is seen (udp), UDP answered
 * (udpStream, ASSURED), ICMP echo (icmp). Timeouts are configured in seconds, like the
 * sysctls, and kept in milliseconds per state (timeoutTable) for the table's clock.
 * Used by the table (conntrack.ts) and the listing (conntrack-list.ts).
 */
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN } from "../wire/tcp.js";

/** Per-state timeouts in seconds (names after nf_conntrack_*_timeout_* sysctls). */
export interface Timeouts {
  tcpSynSent: number;
  tcpSynRecv: number;
  tcpEstablished: number;
  tcpFinWait: number;
  tcpCloseWait: number;
  tcpLastAck: number;
  tcpTimeWait: number;
  tcpClose: number;
  /** UDP until a reply is seen. */
  udp: number;
  /** UDP once replies have been seen (ASSURED). */
  udpStream: number;
  icmp: number;
}

/** Linux defaults (net.netfilter.nf_conntrack_*). */
export const DEFAULT_TIMEOUTS: Readonly<Timeouts> = Object.freeze({
  tcpSynSent: 120,
  tcpSynRecv: 60,
  tcpEstablished: 432000,
  tcpFinWait: 120,
  tcpCloseWait: 60,
  tcpLastAck: 30,
  tcpTimeWait: 120,
  tcpClose: 10,
  udp: 30,
  udpStream: 120,
  icmp: 30,
});

/** TCP states (nf_conntrack_proto_tcp, without SYN_SENT2). */
export const TCP_NONE = 0;
export const TCP_SYN_SENT = 1;
export const TCP_SYN_RECV = 2;
export const TCP_ESTABLISHED = 3;
export const TCP_FIN_WAIT = 4;
export const TCP_CLOSE_WAIT = 5;
export const TCP_LAST_ACK = 6;
export const TCP_TIME_WAIT = 7;
export const TCP_CLOSE = 8;
export const TCP_STATE_NAMES: readonly string[] = Object.freeze([
  "NONE",
  "SYN_SENT",
  "SYN_RECV",
  "ESTABLISHED",
  "FIN_WAIT",
  "CLOSE_WAIT",
  "LAST_ACK",
  "TIME_WAIT",
  "CLOSE",
]);
/** Pseudo states for the timeout table (UDP, ICMP). */
export const ST_UDP = 9;
export const ST_UDP_STREAM = 10;
export const ST_ICMP = 11;

/** Reads timeouts over the defaults; throws naming an unknown or bad one. */
export function checkTimeouts(given: Partial<Timeouts> = {}): Timeouts {
  const t: Timeouts = { ...DEFAULT_TIMEOUTS };
  for (const [k, v] of Object.entries(given)) {
    if (!(k in t)) throw new Error(`unknown conntrack timeout '${k}' (known: ${Object.keys(t).join(", ")})`);
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
      throw new Error(`conntrack timeout '${k}' must be a positive number of seconds, got ${String(v)}`);
    }
    t[k as keyof Timeouts] = v;
  }
  return t;
}

/** The timeout of each state, by state number (TCP_NONE waits like SYN_SENT). */
const STATE_TIMEOUT: ReadonlyArray<keyof Timeouts> = [
  "tcpSynSent",
  "tcpSynSent",
  "tcpSynRecv",
  "tcpEstablished",
  "tcpFinWait",
  "tcpCloseWait",
  "tcpLastAck",
  "tcpTimeWait",
  "tcpClose",
  "udp", // ST_UDP
  "udpStream", // ST_UDP_STREAM
  "icmp", // ST_ICMP
];

/** Milliseconds per state (TCP states, then ST_UDP, ST_UDP_STREAM, ST_ICMP). */
export function timeoutTable(t: Timeouts): Float64Array {
  return Float64Array.from(STATE_TIMEOUT, (k) => t[k] * 1000);
}

/** The `seen` bits of a TCP connection: which side sent a FIN, and who sent the first / the last. */
const FIN_ORIG = 1;
const FIN_REPLY = 2;
const FIRST_FIN_REPLY = 4;
const LAST_FIN_REPLY = 8;

/** tcpTransition() result bit: the connection became ASSURED (the handshake completed). */
export const TCP_BECAME_ASSURED = 0x10000;

/**
 * The next TCP state after a segment with `flags` in direction `dir` (0 original, 1
 * reply), from state `st` and `seen` bits; returned packed as
 * `st | seen << 8 | TCP_BECAME_ASSURED?` (plain numbers: nothing allocated).
 *
 *   RST either way                       -> CLOSE
 *   SYN (original)                       -> SYN_SENT (from NONE)
 *   SYN+ACK (reply) in SYN_SENT          -> SYN_RECV
 *   ACK (original) in SYN_RECV           -> ESTABLISHED, ASSURED
 *   FIN in SYN_RECV/ESTABLISHED          -> FIN_WAIT
 *   ACK from the other side in FIN_WAIT  -> CLOSE_WAIT (its FIN acknowledged)
 *   FIN from the other side after a FIN  -> LAST_ACK
 *   ACK from the other side in LAST_ACK  -> TIME_WAIT
 * Anything else keeps the state.
 */
export function tcpTransition(st: number, seen: number, dir: number, flags: number): number {
  if ((flags & TCP_RST) !== 0) return TCP_CLOSE | (seen << 8);
  if ((flags & TCP_SYN) !== 0) {
    if ((flags & TCP_ACK) === 0) {
      if (dir === 0 && st === TCP_NONE) st = TCP_SYN_SENT;
    } else if (dir === 1 && st === TCP_SYN_SENT) {
      st = TCP_SYN_RECV;
    }
    return st | (seen << 8);
  }
  if ((flags & TCP_FIN) !== 0) {
    const mine = dir === 0 ? FIN_ORIG : FIN_REPLY;
    const other = dir === 0 ? FIN_REPLY : FIN_ORIG;
    if (st === TCP_SYN_RECV || st === TCP_ESTABLISHED) {
      return TCP_FIN_WAIT | ((seen | mine | (dir === 1 ? FIRST_FIN_REPLY : 0)) << 8);
    }
    if ((st === TCP_FIN_WAIT || st === TCP_CLOSE_WAIT) && (seen & other) !== 0 && (seen & mine) === 0) {
      return TCP_LAST_ACK | ((seen | mine | (dir === 1 ? LAST_FIN_REPLY : 0)) << 8);
    }
    return st | (seen << 8);
  }
  if ((flags & TCP_ACK) !== 0) {
    if (st === TCP_SYN_RECV) {
      if (dir === 0) return TCP_ESTABLISHED | (seen << 8) | TCP_BECAME_ASSURED;
    } else if (st === TCP_FIN_WAIT) {
      if ((dir === 1) !== ((seen & FIRST_FIN_REPLY) !== 0)) st = TCP_CLOSE_WAIT;
    } else if (st === TCP_LAST_ACK) {
      if ((dir === 1) !== ((seen & LAST_FIN_REPLY) !== 0)) st = TCP_TIME_WAIT;
    }
  }
  return st | (seen << 8);
}
