/**
 * Nat — connection tracking with source NAT (SNAT / MASQUERADE for pods) and
 * kube-proxy-style service DNAT, as Linux netfilter does them (nf_conntrack + nf_nat,
 * the iptables nat table kube-proxy and flannel/Calico program; RFC 3022 NAPT).
 *
 * An element without ports: it is called from hooks, on a packet's bytes in place,
 * one call per packet — router.prerouting, router.postrouting (Ipv4Router.ipInput) and
 * switch.bridged (br_netfilter). The router owns every frame's disposition, so the
 * NAT's counters are events; its refusals the router counts as natDropped or
 * serviceRejected.
 *
 *   prerouting(buf, ip, ipLen, inIf, now, partial) -> ctx
 *       before the local-address check and the route lookup. Tracks the packet; for a
 *       new connection to a service VIP:port picks a backend and rewrites the
 *       destination (DNAT); for a reply of a source-NATed connection rewrites the
 *       destination back to the client (un-SNAT), so a reply to the masquerade
 *       address is forwarded, not delivered locally; for an ICMP error about a
 *       tracked connection rewrites the outer destination and the quote (RELATED).
 *       Returns NAT_DROP or NAT_REJECT (negative: refuse; REJECT: a service with no
 *       backends, answer ICMP port unreachable about the untouched packet), NAT_ACCEPT
 *       (0: nothing more to do), or a context > 0 naming the conntrack entry, the
 *       packet's direction and what postrouting has to do.
 *   postrouting(ctx, buf, ip, ipLen, outIf, hairpinAddr, now, partial) -> verdict
 *       after the route lookup and TTL decrement, before fragmentation. For a new
 *       connection decides source NAT (nat-snat.ts) and confirms its entry; rewrites
 *       the source of an original packet of a SNATed connection and of a reply of a
 *       DNATed one (VIP:port). NAT_ACCEPT or NAT_DROP (no free source port).
 *   release(ctx)    the packet will not reach postrouting (delivered locally, dropped):
 *                   frees the pending entry of a new connection (`unconfirmed`).
 *   localError(ctx, err, ip, len)   an ICMP error the router built about the packet
 *                   between the hooks: quotes it as its sender sent it and speaks from
 *                   the address the sender talks to (the VIP, the masquerade address).
 *   bridged(buf, ip, ipLen, now, partial)   a backend's reply bridged straight to a
 *                   client on its segment gets VIP:port back as its source.
 * The context is the only thing that travels between the hooks: nothing about a
 * packet is kept in the NAT, so any number of packets may be between them. A pending
 * entry whose packet was neither passed to postrouting nor released is freed by the
 * next expire() (counted `unconfirmed` too).
 *
 * INVALID (Linux's ctstate): a packet conntrack cannot place — a TCP segment that is
 * not a SYN with no entry, an echo reply with no request, an ICMP error about nothing
 * tracked (or not addressed to the source of what it quotes), a truncated L4 header.
 * invalidPolicy "accept" (default) passes it untouched and counted, as Linux does
 * without a rule; "drop" is kube-proxy's `-m conntrack --ctstate INVALID -j DROP`.
 * Untracked (passed untouched, counted): protocols other than TCP/UDP/ICMP, ICMP types
 * other than echo and the errors, and fragments (the router reassembles before
 * PREROUTING while NAT is on, as nf_defrag_ipv4 does; see ipv4-reassembly.ts).
 *
 * Config: NatConfig. Runtime changes while traffic flows: services (addService,
 * setServiceBackends, deleteService, setServices), masquerade rules (addSnatRule,
 * deleteSnatRule, setSnatRules), conntrack (conntrackFlush, conntrackDelete); existing
 * connections keep their translation. Counters: NAT_COUNTERS, and the table's gauges
 * entries, evictable, maxEntries. Rewrites: nat-rewrite.ts (RFC 1624 updates).
 */
import { counters, Element, type ElementInfo } from "../core/element.js";
import { readI32, readU16 } from "../wire/bytes.js";
import { ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, icmpGetIdent, icmpGetType, icmpIsError } from "../wire/icmp.js";
import { IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP, ipv4Check, ipv4IsFragment } from "../wire/ipv4.js";
import { CHECK_OK } from "../wire/reason.js";
import { l4GetDstPort, l4GetSrcPort } from "../wire/l4.js";
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, tcpCheck, tcpGetFlags } from "../wire/tcp.js";
import { udpCheck } from "../wire/udp.js";
import { conntrackEntries, entryText, walkConntrack, type ConnEntryView, type ConntrackQuery } from "./conntrack-list.js";
import { TCP_CLOSE, TCP_TIME_WAIT, type Timeouts } from "./conntrack-states.js";
import { ConnTrack, CT_DNAT, CT_SEEN_REPLY, CT_SNAT, MATCH_ANY, MATCH_ORIGINAL, MATCH_REPLY } from "./conntrack.js";
import { rewrite, rewriteQuote, setAddr } from "./nat-rewrite.js";
import { ServiceTable, type Backend, type Service, type ServiceView } from "./nat-services.js";
import { BIND_CLASH, BIND_EXHAUSTED, BIND_HAIRPIN, BIND_SNAT, SourceNat, type SnatRule } from "./nat-snat.js";

export type { Backend, Service, ServiceView } from "./nat-services.js";
export type { SnatRule } from "./nat-snat.js";

export interface NatConfig {
  snat: SnatRule[];
  services: Service[];
  maxEntries?: number;
  timeouts?: Partial<Timeouts>;
  /** Source ports for SNAT when the original is taken; default 32768..60999. */
  portRange?: [number, number];
  /** What to do with INVALID packets; default "accept" (see the file comment). */
  invalidPolicy?: "accept" | "drop";
  /** Conntrack hash seed (tests); random by default. */
  hashSeed?: number;
}

/** Verdicts: prerouting's negative ones, postrouting's. NAT_ACCEPT is also the empty context. */
export const NAT_ACCEPT = 0;
export const NAT_DROP = -1;
export const NAT_REJECT = -2;

export const NAT_COUNTERS = counters({
  event: {
    new: "connections confirmed (new connections that reached postrouting)",
    established: "packets of known connections",
    translated: "packets of known connections rewritten",
    dnat: "new connections to a service, sent to a backend",
    snat: "new connections given another source address (masquerade, hairpin)",
    hairpin: "of those, a client a service sent to itself",
    clash: "source port remapped without a rule, to keep a reply tuple unique",
    unsnat: "replies of source-NATed connections sent back to the client",
    undnat: "replies of service connections given the VIP back as source",
    bridgedReplies: "of those, replies the switch bridged (br_netfilter)",
    related: "ICMP errors about a tracked connection",
    rejected: "new connections to a service without backends (router: serviceRejected)",
    drop: "new connections refused: table full, nothing evictable (router: natDropped)",
    earlyDrop: "entries evicted to make room for a new connection",
    portsExhausted: "new connections refused: no free source port (router: natDropped)",
    invalid: "packets conntrack cannot place; refused with invalidPolicy drop",
    untracked: "packets not tracked: other protocols, fragments, other ICMP types",
    unconfirmed: "new connections that never reached postrouting (local, dropped)",
    reopened: "a SYN on a TIME_WAIT/CLOSE tuple: the old entry replaced",
    expired: "entries removed after their timeout",
  },
});
export type NatCounter = (typeof NAT_COUNTERS.names)[number];
const C = NAT_COUNTERS.id;

// A context: the tuple id (2 * entry + direction) << 3 | kind.
const CTX_NEW = 1; // a new connection: its pending entry waits for postrouting
const CTX_KNOWN = 2; // a packet of a known connection, not rewritten at prerouting
const CTX_TRANSLATED = 3; // one rewritten at prerouting (DNAT, un-SNAT)
const CTX_RELATED = 4; // an ICMP error about a known connection

/** The flags that tell a first SYN from the rest of a connection. */
const TCP_FLAGS_NEW_MASK = TCP_FIN | TCP_SYN | TCP_RST | TCP_ACK;

export class Nat extends Element<NatCounter> {
  readonly kind = "Nat";
  readonly ct: ConnTrack;
  private readonly svc: ServiceTable;
  private readonly snat: SourceNat;
  private readonly rng: () => number;
  private readonly invalidDrop: boolean;
  /** The entry the last bridged() call translated while a trace was armed (traceBridged), else -1. */
  private bridgedEntry = -1;

  constructor(cfg: NatConfig, rng: () => number = Math.random) {
    super("nat", NAT_COUNTERS);
    this.ct = new ConnTrack({ maxEntries: cfg.maxEntries, timeouts: cfg.timeouts, seed: cfg.hashSeed });
    this.rng = rng;
    const [lo, hi] = cfg.portRange ?? [32768, 60999];
    this.snat = new SourceNat(cfg.snat, lo, hi, rng);
    const pol = cfg.invalidPolicy ?? "accept";
    if (pol !== "accept" && pol !== "drop") throw new Error(`NAT invalidPolicy must be "accept" or "drop", got ${String(pol)}`);
    this.invalidDrop = pol === "drop";
    this.svc = new ServiceTable(cfg.services);
  }

  // ---------------------------------------------------------------------------
  // Hooks (see the file comment)

  prerouting(buf: Buffer, ipOff: number, ipLen: number, inIf: number, now: number, csumPartial = false): number {
    void inIf;
    if (ipv4Check(buf, ipOff, ipLen, false) !== CHECK_OK) return this.invalidVerdict();
    if (ipv4IsFragment(buf, ipOff)) {
      this.c[C.untracked]++;
      return NAT_ACCEPT;
    }
    const ihl = (buf[ipOff] & 0x0f) << 2;
    const totalLen = readU16(buf, ipOff + 2);
    const proto = buf[ipOff + 9];
    const l4 = ipOff + ihl;
    const l4Len = totalLen - ihl;
    const src = readI32(buf, ipOff + 12);
    const dst = readI32(buf, ipOff + 16);
    let sport: number;
    let dport: number;
    let flags = 0;
    let mask = MATCH_ANY;
    if (proto === IP_PROTO_TCP || proto === IP_PROTO_UDP) {
      const tcp = proto === IP_PROTO_TCP;
      if ((tcp ? tcpCheck(buf, l4, l4Len, 0, 0, false) : udpCheck(buf, l4, l4Len, 0, 0, false)) !== CHECK_OK) return this.invalidVerdict();
      sport = l4GetSrcPort(buf, l4);
      dport = l4GetDstPort(buf, l4);
      if (tcp) flags = tcpGetFlags(buf, l4);
    } else if (proto === IP_PROTO_ICMP && l4Len >= 8) {
      const type = icmpGetType(buf, l4);
      if (icmpIsError(type)) return this.relatedIn(buf, ipOff, l4, l4Len, dst, now);
      if (type !== ICMP_ECHO_REQUEST && type !== ICMP_ECHO_REPLY) return this.untracked();
      sport = dport = icmpGetIdent(buf, l4);
      mask = type === ICMP_ECHO_REQUEST ? MATCH_ORIGINAL : MATCH_REPLY;
    } else {
      return proto === IP_PROTO_ICMP ? this.invalidVerdict() : this.untracked();
    }

    const ct = this.ct;
    let t = ct.find(proto, src, sport, dst, dport, mask, now);
    if (t >= 0 && proto === IP_PROTO_TCP && (t & 1) === 0 && (flags & TCP_FLAGS_NEW_MASK) === TCP_SYN) {
      // A new SYN on a closed connection's tuple: the client reuses its port. Linux
      // drops the old entry and tracks (and NATs) a new connection.
      const st = ct.state[t >> 1];
      if (st === TCP_TIME_WAIT || st === TCP_CLOSE) {
        ct.remove(t >> 1);
        this.c[C.reopened]++;
        t = -1;
      }
    }
    if (t >= 0) {
      const e = t >> 1;
      const d = t & 1;
      ct.track(e, d, flags, totalLen, now);
      this.c[C.established]++;
      // DST manip: an original packet of a DNATed connection goes to the backend; a
      // reply of a SNATed one to the client. The packet becomes the inverse of the
      // other direction's tuple.
      if ((ct.status[e] & (d === 0 ? CT_DNAT : CT_SNAT)) === 0) return (t << 3) | CTX_KNOWN;
      const o = 2 * e + 1 - d;
      rewrite(buf, ipOff, l4, proto, false, ct.tSrc[o], ct.tSport[o], csumPartial);
      if (d === 1) this.c[C.unsnat]++;
      return (t << 3) | CTX_TRANSLATED;
    }

    // A new connection.
    if (proto === IP_PROTO_TCP && (flags & TCP_FLAGS_NEW_MASK) !== TCP_SYN) return this.invalidVerdict();
    if (mask === MATCH_REPLY) return this.invalidVerdict(); // echo reply without a request
    const s = proto === IP_PROTO_ICMP ? -1 : this.svc.find(proto, dst, dport);
    if (s >= 0 && this.svc.backendCount(s) === 0) {
      this.c[C.rejected]++;
      return NAT_REJECT;
    }
    const e = ct.alloc(proto, now);
    if (e < 0) {
      this.c[C.drop]++;
      return NAT_DROP;
    }
    let rSrc = dst;
    let rSport = dport;
    if (s >= 0) {
      const b = this.svc.pick(s, this.rng);
      rSrc = this.svc.backendAddr(b);
      rSport = this.svc.backendPort(b);
      ct.status[e] = CT_DNAT;
      this.c[C.dnat]++;
    }
    ct.setTuple(e, 0, src, sport, dst, dport);
    ct.setTuple(e, 1, rSrc, rSport, src, sport);
    ct.track(e, 0, flags, totalLen, now);
    if (s >= 0) rewrite(buf, ipOff, l4, proto, false, rSrc, rSport, csumPartial);
    return ((2 * e) << 3) | CTX_NEW;
  }

  postrouting(ctx: number, buf: Buffer, ipOff: number, ipLen: number, outIf: number, hairpinAddr: number, now: number, csumPartial = false): number {
    void ipLen;
    const kind = ctx & 7;
    const t = ctx >> 3;
    const e = t >> 1;
    const d = t & 1;
    const ct = this.ct;
    // A context whose entry is gone (freed by expire() meanwhile) leaves the packet alone.
    const live = kind === CTX_NEW ? ct.isPending(e) : kind !== 0 && ct.isConfirmed(e);
    if (!live) return NAT_ACCEPT;
    const l4 = ipOff + ((buf[ipOff] & 0x0f) << 2);
    const proto = ct.proto[e];
    // SRC manip, in direction d: an original packet of a SNATed connection leaves from
    // the NAT address, a reply of a DNATed one from VIP:port (the other tuple's destination).
    const o = 2 * e + 1 - d;
    const srcManip = (ct.status[e] & (d === 0 ? CT_SNAT : CT_DNAT)) !== 0;
    if (kind === CTX_RELATED) {
      // An error: outer source and quoted destination (nf_nat_icmp_reply_translation).
      if (srcManip) {
        const inner = l4 + 8;
        const il4 = inner + ((buf[inner] & 0x0f) << 2);
        rewriteQuote(buf, l4, inner, il4, ipOff + readU16(buf, ipOff + 2) - il4, proto, false, ct.tDst[o], ct.tDport[o]);
        setAddr(buf, ipOff, true, ct.tDst[o]);
      }
      return NAT_ACCEPT;
    }
    if (kind === CTX_NEW) {
      const res = this.snat.bind(ct, e, outIf, hairpinAddr | 0, now);
      if ((res & BIND_CLASH) !== 0) this.c[C.clash]++;
      if ((res & BIND_EXHAUSTED) !== 0) {
        this.c[C.portsExhausted]++;
        ct.release(e);
        return NAT_DROP;
      }
      if ((res & BIND_SNAT) !== 0) this.c[C.snat]++;
      if ((res & BIND_HAIRPIN) !== 0) this.c[C.hairpin]++;
      ct.confirm(e);
      this.c[C.new]++;
      if ((ct.status[e] & CT_SNAT) !== 0) rewrite(buf, ipOff, l4, proto, true, ct.tDst[o], ct.tDport[o], csumPartial);
      return NAT_ACCEPT;
    }
    if (srcManip) {
      rewrite(buf, ipOff, l4, proto, true, ct.tDst[o], ct.tDport[o], csumPartial);
      if (d === 1) this.c[C.undnat]++;
      this.c[C.translated]++;
    } else if (kind === CTX_TRANSLATED) {
      this.c[C.translated]++;
    }
    return NAT_ACCEPT;
  }

  /** The packet of `ctx` will not reach postrouting: frees a new connection's pending entry. */
  release(ctx: number): void {
    if ((ctx & 7) !== CTX_NEW) return;
    const e = ctx >> 4;
    if (!this.ct.isPending(e)) return;
    this.ct.release(e);
    this.c[C.unconfirmed]++;
  }

  /**
   * What br_netfilter does for kube-proxy on a bridge: a backend's reply to a client
   * on the same segment is bridged by the switch, never routed, so the switch hands
   * it here. A reply of a DNATed connection gets its source put back to VIP:port and
   * the connection's state advances; anything else is left alone (no new entries are
   * made for bridged traffic). Returns true when it rewrote the packet.
   */
  bridged(buf: Buffer, ipOff: number, ipLen: number, now: number, csumPartial = false): boolean {
    if (ipLen < 20 || ipv4Check(buf, ipOff, ipLen, false) !== CHECK_OK || ipv4IsFragment(buf, ipOff)) return false;
    const proto = buf[ipOff + 9];
    if (proto !== IP_PROTO_TCP && proto !== IP_PROTO_UDP) return false;
    const ihl = (buf[ipOff] & 0x0f) << 2;
    const l4 = ipOff + ihl;
    const l4Len = readU16(buf, ipOff + 2) - ihl;
    if (l4Len < (proto === IP_PROTO_TCP ? 20 : 8)) return false;
    const ct = this.ct;
    const t = ct.find(proto, readI32(buf, ipOff + 12), l4GetSrcPort(buf, l4), readI32(buf, ipOff + 16), l4GetDstPort(buf, l4), MATCH_REPLY, now);
    if (t < 0 || (t & 1) !== 1) return false;
    const e = t >> 1;
    if ((ct.status[e] & CT_DNAT) === 0) return false;
    ct.track(e, 1, proto === IP_PROTO_TCP ? tcpGetFlags(buf, l4) : 0, readU16(buf, ipOff + 2), now);
    if (this.tr !== null) this.bridgedEntry = e;
    rewrite(buf, ipOff, l4, proto, true, ct.tDst[2 * e], ct.tDport[2 * e], csumPartial);
    this.c[C.undnat]++;
    this.c[C.translated]++;
    this.c[C.bridgedReplies]++;
    return true;
  }

  /**
   * For an ICMP error the router itself builds about the packet of `ctx` between
   * prerouting and postrouting (TTL exceeded, no route, fragmentation needed): makes
   * the quote show the packet as its sender sent it (undoing the DNAT / un-SNAT
   * prerouting did) and, like Linux, makes the error come from the address the sender
   * talks to when that address was translated (the VIP, the masquerade address).
   * `ipOff`/`ipLen`: the error datagram. Does nothing for other contexts or a
   * malformed error.
   */
  localError(ctx: number, buf: Buffer, ipOff: number, ipLen: number): void {
    const kind = ctx & 7;
    if (kind !== CTX_NEW && kind !== CTX_KNOWN && kind !== CTX_TRANSLATED) return;
    if (ipv4Check(buf, ipOff, ipLen, false) !== CHECK_OK || buf[ipOff + 9] !== IP_PROTO_ICMP) return;
    const icmp = ipOff + ((buf[ipOff] & 0x0f) << 2);
    const icmpLen = ipOff + readU16(buf, ipOff + 2) - icmp;
    if (icmpLen < 8 + 20 || !icmpIsError(icmpGetType(buf, icmp))) return;
    const inner = icmp + 8;
    const avail = icmpLen - 8;
    const ihl2 = (buf[inner] & 0x0f) << 2;
    if (buf[inner] >>> 4 !== 4 || ihl2 < 20 || ihl2 + 8 > avail) return;
    const ct = this.ct;
    const t = ctx >> 3;
    const e = t >> 1;
    const proto = ct.proto[e];
    if (buf[inner + 9] !== proto) return;
    const il4 = inner + ihl2;
    rewriteQuote(buf, icmp, inner, il4, avail - ihl2, proto, true, ct.tSrc[t], ct.tSport[t]);
    rewriteQuote(buf, icmp, inner, il4, avail - ihl2, proto, false, ct.tDst[t], ct.tDport[t]);
    setAddr(buf, ipOff, false, ct.tSrc[t]);
    if ((ct.status[e] & ((t & 1) === 0 ? CT_DNAT : CT_SNAT)) !== 0) setAddr(buf, ipOff, true, ct.tDst[t]);
    this.c[C.related]++;
  }

  private invalidVerdict(): number {
    this.c[C.invalid]++;
    return this.invalidDrop ? NAT_DROP : NAT_ACCEPT;
  }

  private untracked(): number {
    this.c[C.untracked]++;
    return NAT_ACCEPT;
  }

  /** An ICMP error in prerouting: find the connection its quote belongs to. */
  private relatedIn(buf: Buffer, ipOff: number, icmp: number, icmpLen: number, outerDst: number, now: number): number {
    if (icmpLen < 8 + 20) return this.invalidVerdict();
    const inner = icmp + 8;
    const avail = icmpLen - 8;
    const ihl2 = (buf[inner] & 0x0f) << 2;
    if (buf[inner] >>> 4 !== 4 || ihl2 < 20 || ihl2 + 8 > avail) return this.invalidVerdict();
    // About a later fragment: no ports quoted.
    if ((readU16(buf, inner + 6) & 0x1fff) !== 0) return this.untracked();
    const proto = buf[inner + 9];
    const il4 = inner + ihl2;
    const isrc = readI32(buf, inner + 12);
    const idst = readI32(buf, inner + 16);
    // An error goes to the source of the datagram it quotes (nf_conntrack_inet_error).
    if (isrc !== outerDst) return this.invalidVerdict();
    let is: number;
    let id: number;
    let mask = MATCH_ANY;
    if (proto === IP_PROTO_TCP || proto === IP_PROTO_UDP) {
      is = l4GetSrcPort(buf, il4);
      id = l4GetDstPort(buf, il4);
    } else if (proto === IP_PROTO_ICMP) {
      const type = icmpGetType(buf, il4);
      // The quote is the other direction's packet: a quoted request inverts to a reply tuple.
      if (type === ICMP_ECHO_REQUEST) mask = MATCH_REPLY;
      else if (type === ICMP_ECHO_REPLY) mask = MATCH_ORIGINAL;
      else return this.invalidVerdict();
      is = id = icmpGetIdent(buf, il4);
    } else {
      return this.untracked();
    }
    const ct = this.ct;
    const t = ct.find(proto, idst, id, isrc, is, mask, now);
    if (t < 0) return this.invalidVerdict();
    const e = t >> 1;
    const d = t & 1;
    this.c[C.related]++;
    // DST manip of an error travelling in direction d: outer destination and quoted
    // source become the other direction's.
    if ((ct.status[e] & (d === 0 ? CT_DNAT : CT_SNAT)) !== 0) {
      const o = 2 * e + 1 - d;
      rewriteQuote(buf, icmp, inner, il4, avail - ihl2, proto, true, ct.tSrc[o], ct.tSport[o]);
      setAddr(buf, ipOff, false, ct.tSrc[o]);
    }
    return (t << 3) | CTX_RELATED;
  }

  /**
   * A trace step (only while a trace is armed, never on the plain path): the conntrack
   * entry the context of `hook` stands for, with the packet's state as iptables'
   * `ctstate` names it — NEW until the connection has seen a reply, then ESTABLISHED;
   * RELATED for an ICMP error about it — and its direction. Null after POSTROUTING for
   * a packet of a known connection (PREROUTING said it all).
   */
  traceConntrack(hook: "PREROUTING" | "POSTROUTING", ctx: number): string | null {
    const kind = ctx & 7;
    if (ctx < 0) return null;
    if (kind === 0) return hook === "PREROUTING" ? "conntrack PREROUTING: untracked (a fragment, another protocol) or invalid: left alone" : null;
    if (hook === "POSTROUTING" && kind !== CTX_NEW) return null;
    const t = ctx >> 3;
    const e = t >> 1;
    const ct = this.ct;
    if (kind === CTX_NEW) {
      if (hook === "POSTROUTING") return ct.isConfirmed(e) ? `conntrack POSTROUTING: NEW entry confirmed: ${entryText(ct, e)}` : null;
      return `conntrack PREROUTING: NEW (original direction), entry ${entryText(ct, e)}`;
    }
    if (!ct.isConfirmed(e)) return null;
    const dir = (t & 1) === 0 ? "original direction" : "reply direction";
    const state = kind === CTX_RELATED ? "RELATED" : (t & 1) === 1 || (ct.status[e] & CT_SEEN_REPLY) !== 0 ? "ESTABLISHED" : "NEW";
    return `conntrack PREROUTING: ${state} (${dir}${kind === CTX_RELATED ? ", an ICMP error about it" : ""}), entry ${entryText(ct, e)}`;
  }

  /** The trace step of the last bridged() call (asked only while a trace is armed): its entry, or that it had none. */
  traceBridged(): string | null {
    const e = this.bridgedEntry;
    this.bridgedEntry = -1;
    if (e < 0 || !this.ct.isConfirmed(e)) return "conntrack bridged: no DNATed connection's reply: left alone";
    return `conntrack bridged: ESTABLISHED (reply direction), entry ${entryText(this.ct, e)}`;
  }

  // ---------------------------------------------------------------------------
  // Timer, runtime changes and inspection (not the hot path)

  /** Removes timed-out entries, and frees pending entries whose packets are gone. */
  expire(now: number): number {
    if (this.ct.pending > 0) this.c[C.unconfirmed] += this.ct.releasePending();
    return this.ct.expire(now);
  }

  /** Replaces the SNAT / masquerade rules. */
  setSnatRules(rules: SnatRule[]): void {
    this.snat.set(rules);
  }

  addSnatRule(rule: SnatRule): void {
    this.snat.add(rule);
  }

  /** Removes the rule equal to `rule`; false when there is none. */
  deleteSnatRule(rule: SnatRule): boolean {
    return this.snat.delete(rule);
  }

  snatRules(): SnatRule[] {
    return this.snat.rules();
  }

  /** Replaces the services (kube-proxy resyncing). */
  setServices(services: Service[]): void {
    this.svc.set(services);
  }

  addService(s: Service): void {
    this.svc.add(s);
  }

  /** New backends for new connections of service `name`; old connections keep theirs. */
  setServiceBackends(name: string, backends: Backend[]): void {
    this.svc.setBackends(name, backends);
  }

  /** False when there is no such service. */
  deleteService(name: string): boolean {
    return this.svc.delete(name);
  }

  /** Removes every tracked connection (`conntrack -F`); returns how many. */
  conntrackFlush(): number {
    return this.ct.flush();
  }

  /** Removes the connection with this tuple, either direction (`conntrack -D`); addresses uint32 or int32. */
  conntrackDelete(proto: number, src: number, sport: number, dst: number, dport: number, now: number): boolean {
    return this.ct.deleteTuple(proto, src, sport, dst, dport, now);
  }

  conntrackEntries(now: number): ConnEntryView[] {
    return conntrackEntries(this.ct, now);
  }

  /** A resumable listing of the table (see walkConntrack). */
  conntrackWalk(q: ConntrackQuery, clock: () => number): Generator<string | null, { matched: number }, void> {
    return walkConntrack(this.ct, q, clock);
  }

  services(now = Number.NEGATIVE_INFINITY): ServiceView[] {
    return this.svc.views(this.ct, now);
  }

  describe(): ElementInfo {
    return {
      name: this.name,
      kind: this.kind,
      inputs: [],
      outputs: [],
      hooks: ["router.prerouting", "router.postrouting", "switch.bridged"],
      counters: [...this.spec.names],
    };
  }

  /** The counters, then the table's gauges: entries, evictable, maxEntries. */
  override counters(): Record<NatCounter | "entries" | "evictable" | "maxEntries", number> {
    this.c[C.earlyDrop] = this.ct.earlyDrops;
    this.c[C.expired] = this.ct.expired;
    return { ...super.counters(), entries: this.ct.count, evictable: this.ct.evictable, maxEntries: this.ct.maxEntries };
  }
}
