/**
 * Icmp — what the router answers of its own (Linux's icmp_send, icmp_echo and the
 * reset of tcp_v4_send_reset):
 *
 *   error()     an ICMP error about a packet it received (time exceeded, unreachable,
 *               fragmentation needed): never about an ICMP error, a broadcast or
 *               multicast, a non-initial fragment or a source that is not a host
 *               (RFC 1812 §4.3.2.7, icmpErrorAllowed in src/wire/icmp.ts); limited, for
 *               the types in the rate mask, per destination (icmp-peers.ts, Linux's
 *               icmp_ratelimit: six at once, then one a second) and by a global token
 *               bucket (RFC 1812 §4.3.2.8, Linux's icmp_msgs_per_sec and icmp_msgs_burst);
 *               about a packet for one of the router's addresses, from that address
 *               (Linux's icmp_send: `traceroute -U` to a far address ends there), else
 *               from the address of the interface the packet came in on, on the
 *               sender's subnet when it has one (RFC 1812 §4.3.2.4); at most 576 bytes
 *               (§4.3.2.3); about a packet between the NAT's hooks, shown to the NAT
 *               before it leaves, so that it quotes what the sender sent (ip-input.ts);
 *   echoReply() the reply to an echo request for one of its addresses, in place
 *               (RFC 1122 §3.2.2.6);
 *   tcpReset()  a reset for a TCP segment to one of its addresses: a router listens on no
 *               port (RFC 793, "Reset Generation").
 * What it writes leaves through Output.send() (a route lookup: the packet's way back).
 *
 * Counters: icmpErrors, icmpSuppressed, icmpRateLimited, echoReplies, tcpResets,
 * localDropped (a reset that could not be built) — events: the packet answered was
 * counted where it ended.
 */
import { emitIcmpEchoReplyInPlace, emitIcmpError, icmpErrorAllowed } from "../../wire/icmp.js";
import { ETH_HEADER_LEN } from "../../wire/ethernet.js";
import { ipv4FillChecksum, ipv4GetDstAddr, ipv4GetSrcAddr } from "../../wire/ipv4.js";
import { emitTcpReset } from "../../wire/tcp.js";
import { NAT_ACCEPT } from "../nat.js";
import { C } from "./counters.js";
import { type OptionsResult, ipv4OptionsEcho, ipv4OptionsEchoSourceRoute, ipv4OptionsErrorLen, ipv4OptionsErrorWrite, timestampNow } from "./options.js";
import { ICMP_RATEMASK_DEFAULT, ICMP_RATELIMIT_DEFAULT_MS, IcmpPeers, icmpTypeLimited } from "./icmp-peers.js";
import type { Output } from "./output.js";
import { sourceFor, type RouterInterface, type RouterState } from "./state.js";

/** Linux's global ICMP limit: net.ipv4.icmp_msgs_per_sec = 1000 and icmp_msgs_burst = 50. */
export const ICMP_RATE_PER_SECOND = 1000;
export const ICMP_RATE_BURST = 50;

/**
 * A token bucket for ICMP rate limiting (RFC 1812 section 4.3.2.8): starts full with
 * `burst` tokens, gains `ratePerSecond` tokens per second up to `burst`, and take() spends
 * one. Time is the caller's monotonic clock in milliseconds (performance.now() or the
 * batch timestamp), passed in so that tests need no sleeping. A clock that steps back
 * gives no tokens and does not throw. take() allocates nothing.
 */
export class TokenBucket {
  private readonly ratePerMs: number;
  private readonly burst: number;
  private tokens: number;
  private lastMs: number;

  constructor(ratePerSecond: number = ICMP_RATE_PER_SECOND, burst: number = ICMP_RATE_BURST) {
    if (!Number.isFinite(ratePerSecond) || ratePerSecond < 0) {
      throw new Error(`TokenBucket rate must be a finite number >= 0 per second, got ${String(ratePerSecond)}`);
    }
    if (!Number.isFinite(burst) || burst < 1) {
      throw new Error(`TokenBucket burst must be a finite number >= 1, got ${String(burst)}`);
    }
    this.ratePerMs = ratePerSecond / 1000;
    this.burst = burst;
    this.tokens = burst;
    this.lastMs = Number.NEGATIVE_INFINITY;
  }

  /** Spends one token if there is one; true when the caller may send. */
  take(nowMs: number): boolean {
    if (nowMs > this.lastMs) {
      if (this.lastMs !== Number.NEGATIVE_INFINITY) {
        const t = this.tokens + (nowMs - this.lastMs) * this.ratePerMs;
        this.tokens = Math.min(t, this.burst);
      }
      this.lastMs = nowMs;
    }
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    return false;
  }
}

export class Icmp {
  private readonly bucket: TokenBucket;
  /** Per-destination limits and redirect back-off. */
  readonly peers: IcmpPeers;
  /** Linux's icmp_ratemask: bit n set, type n is rate-limited. */
  ratemask: number;
  /** IPv4 identification of the datagrams the router originates. */
  private ident = 1;
  private readonly isLocal = (addr: number): boolean => this.s.local.has(addr | 0);

  constructor(
    private readonly s: RouterState,
    private readonly out: Output,
    rate = ICMP_RATE_PER_SECOND,
    burst = ICMP_RATE_BURST,
    ratelimitMs = ICMP_RATELIMIT_DEFAULT_MS,
    ratemask = ICMP_RATEMASK_DEFAULT,
  ) {
    this.bucket = new TokenBucket(rate, burst);
    this.peers = new IcmpPeers(ratelimitMs);
    this.ratemask = ratemask;
  }

  /**
   * Sends ICMP `type`/`code` (`rest`: the 32-bit rest of header) about the packet at
   * `buf[ip, ip + ipLen)`, which came in on `ifc` (`linkBroadcast`: in a link-layer
   * group frame); true when it was sent. `from`: the source address (the router's address
   * the packet was for), or 0 to choose by the interface. `natCtx`: the packet's conntrack
   * context when it is between PREROUTING and POSTROUTING, which the NAT may have
   * rewritten: the quote then shows the packet as its sender sent it, and the error comes
   * from the VIP or masquerade address the sender talks to, as Linux does.
   */
  error(
    ifc: RouterInterface,
    buf: Buffer,
    ip: number,
    ipLen: number,
    type: number,
    code: number,
    rest: number,
    now: number,
    linkBroadcast: boolean,
    from = 0,
    opt: OptionsResult | null = null,
    natCtx = NAT_ACCEPT,
  ): boolean {
    const c = this.s.c;
    if (!icmpErrorAllowed(buf, ip, ipLen, linkBroadcast)) {
      c[C.icmpSuppressed]++;
      return false;
    }
    const peer = ipv4GetSrcAddr(buf, ip);
    // The destination's bucket first, then the global one (Linux ≥ 6.2: a sender over its
    // own limit spends none of the router's global credit).
    if (icmpTypeLimited(this.ratemask, type, code) && (!this.peers.allow(peer, now) || !this.bucket.take(now))) {
      c[C.icmpRateLimited]++;
      return false;
    }
    const src = from !== 0 ? from : sourceFor(ifc, peer);
    if (src === 0) return false;
    const frame = this.out.alloc();
    if (frame < 0) return false;
    const at = frame + ETH_HEADER_LEN;
    // The packet's Record Route and Timestamp, echoed with the error's entries (Linux's
    // icmp_send through ip_options_echo); they shorten the quote.
    const optLen = opt !== null && (opt.rr !== 0 || opt.ts !== 0) ? ipv4OptionsErrorLen(buf, ip, opt) : 0;
    const len = emitIcmpError(this.s.pool, at, buf, ip, ipLen, type, code, rest, src, this.nextIdent(), optLen);
    if (len < 0) return false;
    if (opt !== null && optLen > 0 && !this.echoOptions(at, optLen, buf, ip, opt)) return false;
    c[C.icmpErrors]++;
    if (natCtx !== NAT_ACCEPT) this.s.nat?.localError(natCtx, this.s.pool, at, len);
    this.out.send(ifc.index, this.s.pool, at, len, now);
    return true;
  }

  /** Answers the echo request at `ip` in place; false (nothing sent) when it is not a whole, valid one. */
  echoReply(ifc: RouterInterface, buf: Buffer, ip: number, ipLen: number, now: number, opt: OptionsResult, isLocal: (addr: number) => boolean): boolean {
    // Record Route and Timestamp are echoed with one more entry (RFC 1122 §3.2.2.6, as
    // Linux's ip_options_echo): `ping -R` to the router lists it.
    const echo = opt.rr !== 0 || opt.ts !== 0;
    // A source route alone goes back reversed (ip_options_echo); with Record Route or
    // Timestamp beside it, those are echoed and the route is not (a known difference).
    const reverse = !echo && opt.srr;
    if (!emitIcmpEchoReplyInPlace(buf, ip, ipLen, echo || reverse)) return false;
    if (echo && !ipv4OptionsEcho(buf, ip, ipv4GetSrcAddr(buf, ip), isLocal, timestampNow(), opt)) return false;
    if (reverse) ipv4OptionsEchoSourceRoute(buf, ip, ipv4GetDstAddr(buf, ip), opt);
    this.s.c[C.echoReplies]++;
    this.out.send(ifc.index, buf, ip, ipLen, now);
    return true;
  }

  /** Answers the TCP segment at `ip` with a reset (never a reset, a fragment, a malformed segment). */
  tcpReset(ifc: RouterInterface, buf: Buffer, ip: number, ipLen: number, now: number, opt: OptionsResult | null = null): void {
    const frame = this.out.alloc();
    if (frame < 0) return;
    const at = frame + ETH_HEADER_LEN;
    // Record Route and Timestamp echoed with the router's entry (Linux's
    // ip_send_unicast_reply through ip_options_echo).
    const optLen = opt !== null && (opt.rr !== 0 || opt.ts !== 0) ? ipv4OptionsErrorLen(buf, ip, opt) : 0;
    // IP ID 0, as Linux's resets (DF set: the ID identifies no fragments).
    const len = emitTcpReset(this.s.pool, at, buf, ip, ipLen, 0, optLen);
    if (len < 0 || (opt !== null && optLen > 0 && !this.echoOptions(at, optLen, buf, ip, opt))) {
      this.s.c[C.localDropped]++;
      return;
    }
    this.s.c[C.tcpResets]++;
    this.out.send(ifc.index, this.s.pool, at, len, now);
  }

  /** Writes the options echoed into the datagram at `at` (its source set) and its header checksum; false: none may be sent. */
  private echoOptions(at: number, optLen: number, buf: Buffer, ip: number, opt: OptionsResult): boolean {
    const pool = this.s.pool;
    if (!ipv4OptionsErrorWrite(pool, at + 20, optLen, buf, ip, ipv4GetSrcAddr(pool, at), this.isLocal, timestampNow(), opt)) return false;
    ipv4FillChecksum(pool, at);
    return true;
  }

  private nextIdent(): number {
    this.ident = (this.ident + 1) & 0xffff;
    return this.ident;
  }
}
