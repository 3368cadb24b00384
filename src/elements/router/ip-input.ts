/**
 * IpInput — an IPv4 packet from an interface, from its checks to its forwarding
 * decision (Linux's ip_rcv, ip_route_input, ip_local_deliver and ip_forward):
 *
 *   1. the frame is for the router: its MAC, or a link-layer group address (otherHost);
 *   2. the header: version, IHL, total length against the frame, checksum (counted by
 *      reason: tooShort, badVersion, badIhl, badTotalLen, badChecksum);
 *   2a. DHCP to the interface's server (dhcp.ts), before the martian check: clients
 *      without an address send from 0.0.0.0;
 *   3. martians (RFC 1812 §5.3.7): sources that cannot be hosts, destinations 0/8, 127/8
 *      and 240/4;
 *   3a. DNS to the cluster DNS address (cluster-dns.ts), before the NAT;
 *   4. with NAT: fragments are reassembled first (nf_defrag_ipv4, ipv4-reassembly.ts),
 *      then PREROUTING (conntrack, service DNAT, un-SNAT of replies) — before the router
 *      decides whether the packet is its own, since a reply to a masqueraded flow is
 *      addressed to the router until translated back;
 *   5. local delivery (one of its addresses): echo -> reply, UDP -> port unreachable,
 *      TCP -> reset, anything else -> protocol unreachable, errors from the address the
 *      packet was for; fragments are reassembled first; link broadcasts are ignored;
 *   6. forwarding: no broadcast, multicast or directed broadcast (RFC 1812 §5.3.4,
 *      §5.3.5); TTL (time exceeded at 1, §5.3.1); longest-prefix match (net unreachable
 *      when none); MTU (fragmentation needed with the next-hop MTU when DF, RFC 1191;
 *      else fragmentation, RFC 791 §3.2); TTL decrement with an RFC 1624 checksum
 *      update; a redirect when the packet leaves by the interface it came in on
 *      (RFC 1812 §5.2.7.2); POSTROUTING (source NAT, un-DNAT of service replies); Output.
 * Every packet ends in exactly one disposition counter (forwarded, delivered, or a drop
 * by reason; see counters.ts). IP options are checked and processed before 5 and 6
 * (options.ts): Record Route and Timestamp take the router's entries, malformed ones get
 * Parameter Problem, source routes are dropped unless the receiving interface accepts
 * them (acceptSourceRoute), then followed: the next address becomes the destination.
 *
 * The router's calls into the NAT are all in the section "NAT hooks" below.
 */
import { ipToString } from "../../wire/ipv4addr.js";
import { ipTuple, natStep } from "../../core/trace.js";
import { CHECK_BAD_CHECKSUM, CHECK_BAD_IHL, CHECK_BAD_TOTAL_LEN, CHECK_BAD_VERSION, CHECK_OK } from "../../wire/reason.js";
import { ETH_HEADER_LEN, ethDstIsMulticast, ethGetDstAddr } from "../../wire/ethernet.js";
import {
  ICMP_DEST_UNREACH,
  ICMP_ECHO_REQUEST,
  ICMP_HEADER_LEN,
  ICMP_PARAM_PROBLEM,
  ICMP_REDIRECT,
  ICMP_REDIRECT_HOST,
  ICMP_TIME_EXCEEDED,
  ICMP_TIME_EXCEEDED_REASSEMBLY,
  ICMP_TIME_EXCEEDED_TTL,
  ICMP_UNREACH_FRAG_NEEDED,
  ICMP_UNREACH_NET,
  ICMP_UNREACH_PORT,
  ICMP_UNREACH_PROTOCOL,
  ICMP_UNREACH_SR_FAILED,
  icmpGetCode,
  icmpGetType,
  icmpRestFragNeeded,
} from "../../wire/icmp.js";
import {
  IP_PROTO_ICMP,
  IP_PROTO_TCP,
  IP_PROTO_UDP,
  ipv4Check,
  ipv4DecrementTtl,
  ipv4FillChecksum,
  ipv4GetDf,
  ipv4GetDstAddr,
  ipv4GetHeaderLen,
  ipv4GetProtocol,
  ipv4GetSrcAddr,
  ipv4GetTotalLen,
  ipv4GetTtl,
  ipv4IsFragment,
  ipv4SetDf,
} from "../../wire/ipv4.js";
import { IP_BROADCAST, ipIsMulticast } from "../../wire/ipv4addr.js";
import { TCP_DATA_OFFSET_OFF, tcpGetHeaderLen } from "../../wire/tcp.js";
import { vnetGetGsoSize, vnetIsGso, vnetNeedsCsum } from "../../wire/vnet.js";
import { NAT_ACCEPT, NAT_REJECT } from "../nat.js";
import { C } from "./counters.js";
import { DHCP_SERVER_PORT, type DhcpSink } from "./dhcp.js";
import { type ClusterDns, DNS_PORT } from "./cluster-dns.js";
import { udpComputeChecksum } from "../../wire/udp.js";
import type { Icmp } from "./icmp.js";
import type { Output } from "./output.js";
import { OptionsResult, SRR_DROP, SRR_OK, SRR_STRICT_PASS, ipv4OptionsForward, ipv4OptionsInput, ipv4SourceRoute, timestampNow } from "./options.js";
import { onSubnet, sourceFor, type RouterInterface, type RouterState } from "./state.js";

export class IpInput {
  /** The options of the packet being handled (reused: nothing is allocated per packet). */
  private readonly opt = new OptionsResult();
  private readonly isLocal = (addr: number): boolean => this.s.local.has(addr | 0);
  /** A source route's next address can be forwarded to: a unicast address with a route (Linux's RTN_UNICAST). */
  private readonly routable = (addr: number): boolean => {
    const s = this.s;
    const a0 = addr >>> 24;
    if (a0 === 0 || a0 === 127 || a0 >= 224 || s.isSubnetBroadcast(addr)) return false;
    return s.fib.lookup(addr) >= 0;
  };
  /** The interface and time of the DHCP message being answered (for dhcpSink). */
  private dhcpIf: RouterInterface | null = null;
  private dhcpNow = 0;
  /** How the interfaces' DHCP servers send (one object, made once). */
  private readonly dhcpSink: DhcpSink;

  constructor(
    private readonly s: RouterState,
    private readonly icmp: Icmp,
    private readonly out: Output,
  ) {
    this.dhcpSink = {
      alloc: () => out.alloc(),
      get pool() {
        return s.pool;
      },
      push: (frame, len) => this.dhcpIf?.port.inq.push(frame, len),
      unicast: (ip, ipLen, dst) => {
        const ifc = this.dhcpIf;
        if (ifc !== null) out.output(ifc.index, ifc, dst, s.pool, ip, ipLen, this.dhcpNow);
      },
    };
  }

  /**
   * IP options (options.ts), for every packet whose header has them, before it is
   * delivered or forwarded (Linux's ip_rcv_options): Record Route and Timestamp take the
   * router's entry; a malformed option is answered with Parameter Problem 12/0 pointing
   * at it and the packet dropped (RFC 1812 §5.2.5, §4.3.2.4); a source-routed packet is
   * dropped unless its interface accepts source routes (Linux's accept_source_route 0
   * default: RFC 1812 §5.2.4.1 lets a router refuse them, and they bypass the routing a
   * network expects); accepted, it is followed (sourceRoute()). False when dropped.
   */
  private options(ifc: RouterInterface, buf: Buffer, ip: number, ipLen: number, dst: number, linkGroup: boolean, now: number, ctx: number): boolean {
    const s = this.s;
    const local = s.local.has(dst | 0);
    const specDst = local ? dst : sourceFor(ifc, ipv4GetSrcAddr(buf, ip));
    const fault = ipv4OptionsInput(buf, ip, specDst, this.isLocal, timestampNow(), this.opt);
    if (fault >= 0) {
      s.dropFrame(C.paramProblems, now, buf, ip, ipLen);
      this.icmp.error(ifc, buf, ip, ipLen, ICMP_PARAM_PROBLEM, 0, (fault << 24) >>> 0, now, false, local ? dst : 0);
      this.notForwarded(ctx);
      return false;
    }
    if (this.opt.srr && !this.sourceRoute(ifc, buf, ip, ipLen, local, linkGroup, now, ctx)) return false;
    if (this.opt.changed) ipv4FillChecksum(buf, ip);
    return true;
  }

  /**
   * A loose or strict source route (Linux's ip_rcv_options and ip_options_rcv_srr,
   * RFC 791 §3.1, RFC 1812 §5.2.4.1): refused unless the interface accepts source
   * routes; addressed to the router with addresses left, the next one not the router's
   * own is where the packet goes (forward() makes it the destination and records the
   * outgoing address in its slot); a strict route through the router that does not name
   * it gets Parameter Problem pointing at the destination (16). False when dropped.
   */
  private sourceRoute(ifc: RouterInterface, buf: Buffer, ip: number, ipLen: number, local: boolean, linkGroup: boolean, now: number, ctx: number): boolean {
    const s = this.s;
    if (!ifc.acceptSourceRoute) {
      s.dropFrame(C.sourceRouted, now, buf, ip, ipLen);
      this.notForwarded(ctx);
      return false;
    }
    const r = linkGroup ? SRR_DROP : ipv4SourceRoute(buf, ip, local, this.isLocal, this.routable, this.opt);
    if (r === SRR_OK) return true;
    if (r === SRR_DROP) {
      s.dropFrame(C.sourceRouteDropped, now, buf, ip, ipLen);
      this.notForwarded(ctx);
      return false;
    }
    s.dropFrame(C.paramProblems, now, buf, ip, ipLen);
    const pointer = r === SRR_STRICT_PASS ? 16 : r;
    this.icmp.error(ifc, buf, ip, ipLen, ICMP_PARAM_PROBLEM, 0, (pointer << 24) >>> 0, now, false, local ? ipv4GetDstAddr(buf, ip) : 0);
    this.notForwarded(ctx);
    return false;
  }

  /** The IPv4 frame at `buf[off, off + len)`, received on `ifc`. */
  input(ifc: RouterInterface, buf: Buffer, off: number, len: number, now: number): void {
    const s = this.s;
    let ip = off + ETH_HEADER_LEN;
    const linkGroup = ethDstIsMulticast(buf, off);
    if (!linkGroup && ethGetDstAddr(buf, off) !== ifc.mac) {
      // Flooded unicast for another station: not ours to route.
      s.dropFrame(C.otherHost, now, buf, ip, len - ETH_HEADER_LEN);
      return;
    }
    const reason = ipv4Check(buf, ip, len - ETH_HEADER_LEN, true);
    if (reason !== CHECK_OK) {
      s.dropFrame(headerDrop(reason), now, buf, ip, len - ETH_HEADER_LEN);
      return;
    }
    let ipLen = ipv4GetTotalLen(buf, ip);
    const src = ipv4GetSrcAddr(buf, ip);
    let dst = ipv4GetDstAddr(buf, ip);
    // DHCP (RFC 2131 §4.1): a client without an address sends from 0.0.0.0, which the
    // martian check below would drop; the interface's server takes it first.
    if (ifc.dhcp !== null && ipv4GetProtocol(buf, ip) === IP_PROTO_UDP && !ipv4IsFragment(buf, ip)) {
      const udp = ip + ipv4GetHeaderLen(buf, ip);
      if (udp + 8 <= ip + ipLen && buf.readUInt16BE(udp + 2) === DHCP_SERVER_PORT && (dst === IP_BROADCAST || s.local.get(dst | 0) === ifc.index)) {
        s.c[C.delivered]++;
        this.dhcpIf = ifc;
        this.dhcpNow = now;
        ifc.dhcp.input(buf, udp, ip + ipLen, ifc.mac, this.dhcpSink, now);
        return;
      }
    }
    const s0 = src >>> 24;
    // RFC 1812 §5.3.7: no forwarding from or to addresses that cannot be hosts.
    if (s0 === 0 || s0 === 127 || s0 >= 224 || s.local.has(src | 0) || s.isSubnetBroadcast(src)) {
      s.dropFrame(C.martianSource, now, buf, ip, ipLen);
      return;
    }
    const d0 = dst >>> 24;
    if (d0 === 0 || d0 === 127 || (d0 >= 240 && dst !== IP_BROADCAST)) {
      s.dropFrame(C.martianDestination, now, buf, ip, ipLen);
      return;
    }
    if (s.dns !== null && dst === s.dns.addr && !linkGroup && ipv4GetProtocol(buf, ip) === IP_PROTO_UDP && !ipv4IsFragment(buf, ip)) {
      const udp = ip + ipv4GetHeaderLen(buf, ip);
      if (udp + 8 <= ip + ipLen && buf.readUInt16BE(udp + 2) === DNS_PORT) {
        // The cluster DNS address is the router's own for DNS, before any service NAT.
        s.c[C.delivered]++;
        this.dnsReply(ifc, buf, ip, udp, ipLen, now);
        return;
      }
    }
    const nat = s.nat !== null && !linkGroup;
    // Largest fragment of a datagram reassembled here (Linux's IPCB frag_max_size), else 0.
    let fragMax = 0;
    if (nat && ipv4IsFragment(buf, ip)) {
      // nf_defrag_ipv4: conntrack and NAT see whole datagrams.
      this.reasmExpire(now);
      const h = s.reasm.add(buf, ip, ipLen, ifc.index, now);
      if (h < 0) return;
      buf = s.pool;
      ip = h;
      ipLen = s.reasm.lastLen;
      fragMax = s.reasm.lastMaxFrag;
    }
    // The packet's conntrack context, from PREROUTING to POSTROUTING (or release).
    let ctx = NAT_ACCEPT;
    if (nat) {
      ctx = this.prerouting(ifc, buf, ip, ipLen, now);
      if (ctx < 0) return;
      dst = ipv4GetDstAddr(buf, ip);
    }
    this.opt.clear();
    if (buf[ip] !== 0x45) {
      if (!this.options(ifc, buf, ip, ipLen, dst, linkGroup, now, ctx)) return;
      // A source route followed: the next hop is where the packet goes (or, the route
      // used up on the router's own addresses, the last of them).
      if (this.opt.srr) dst = this.opt.srrHit ? this.opt.nexthop : ipv4GetDstAddr(buf, ip);
    }
    if (s.local.has(dst | 0)) {
      this.local(ifc, buf, ip, ipLen, now, linkGroup, ctx);
      return;
    }
    this.forward(ifc, buf, ip, ipLen, dst, linkGroup, fragMax, now, ctx);
  }

  /**
   * Forwarding (ip_forward), for a packet not addressed to the router. Apart from input()
   * so that each stays small enough for the compiler to inline what it calls.
   * `fragMax`: the largest fragment of a datagram reassembled here, else 0; `ctx`: the
   * packet's conntrack context (NAT_ACCEPT without one).
   */
  private forward(
    ifc: RouterInterface,
    buf: Buffer,
    ip: number,
    ipLen: number,
    dst: number,
    linkGroup: boolean,
    fragMax: number,
    now: number,
    ctx: number,
  ): void {
    const s = this.s;
    if (linkGroup || ipIsMulticast(dst) || dst === IP_BROADCAST || s.isSubnetBroadcast(dst)) {
      // RFC 1812 §5.3.4/§5.3.5: link-layer broadcasts, multicast and directed
      // broadcasts are not forwarded.
      s.dropFrame(C.broadcastDropped, now, buf, ip, ipLen);
      this.notForwarded(ctx);
      return;
    }
    if (ipv4GetTtl(buf, ip) <= 1) {
      s.dropFrame(C.ttlExpired, now, buf, ip, ipLen);
      this.icmp.error(ifc, buf, ip, ipLen, ICMP_TIME_EXCEEDED, ICMP_TIME_EXCEEDED_TTL, 0, now, false, 0, this.opt, ctx);
      this.notForwarded(ctx);
      return;
    }
    const r = s.fib.lookup(dst);
    if (r < 0) {
      s.dropFrame(C.noRoute, now, buf, ip, ipLen);
      if (this.icmp.peers.allowRouteError(ipv4GetSrcAddr(buf, ip), now)) {
        this.icmp.error(ifc, buf, ip, ipLen, ICMP_DEST_UNREACH, ICMP_UNREACH_NET, 0, now, false, 0, this.opt, ctx);
        this.notForwarded(ctx);
      } else {
        s.c[C.icmpRateLimited]++;
        this.notForwarded(ctx);
      }
      return;
    }
    const out = s.ifaces[s.routeIf[r]];
    const nh = s.routeGw[r] || dst;
    if (this.opt.srrHit && this.opt.strict && s.routeGw[r] !== 0) {
      // RFC 791 §3.1: a strict route's next address must be directly reachable (Linux's
      // ip_forward sr_failed, after the TTL check and before the MTU's).
      s.dropFrame(C.sourceRouteFailed, now, buf, ip, ipLen);
      this.icmp.error(ifc, buf, ip, ipLen, ICMP_DEST_UNREACH, ICMP_UNREACH_SR_FAILED, 0, now, false, 0, this.opt, ctx);
      this.notForwarded(ctx);
      return;
    }
    const wire = fragMax > 0 ? fragMax : s.offload ? this.wireLen(buf, ip, ipLen) : ipLen;
    const df = ipv4GetDf(buf, ip);
    if (wire > out.mtu && df) {
      s.dropFrame(C.fragNeeded, now, buf, ip, ipLen);
      this.icmp.error(ifc, buf, ip, ipLen, ICMP_DEST_UNREACH, ICMP_UNREACH_FRAG_NEEDED, icmpRestFragNeeded(out.mtu), now, false, 0, this.opt, ctx);
      this.notForwarded(ctx);
      return;
    }
    // The TTL goes down before the redirect, which quotes the packet as it is forwarded
    // (Linux's ip_forward), and before POSTROUTING, as there.
    ipv4DecrementTtl(buf, ip);
    if (s.tr !== null) this.traceRoute(r, out, nh, buf, ip);
    // No redirect for a source-routed packet: its sender chose the way (Linux's ip_forward).
    if (out === ifc && ifc.sendRedirects && !this.opt.srr) this.redirect(ifc, buf, ip, ipLen, s.routeGw[r], now, ctx);
    // Record Route names the address the packet leaves from (Linux's ip_forward_options).
    if (this.opt.rrAddr || this.opt.srrHit) ipv4OptionsForward(buf, ip, sourceFor(out, nh), this.opt);
    if (s.nat !== null && !this.postrouting(ctx, out, buf, ip, ipLen, dst, now)) return;
    if (fragMax > 0) {
      this.refragment(ifc, out, nh, buf, ip, ipLen, df, fragMax, now);
      return;
    }
    if (wire !== ipLen && wire > out.mtu) {
      s.dropFrame(C.gsoDropped, now, buf, ip, ipLen);
      return;
    }
    if (ipLen > out.mtu && wire === ipLen) {
      if (this.out.fragmentOut(ifc.index, out, nh, buf, ip, ipLen, now, out.mtu)) s.c[C.forwarded]++;
      else s.dropFrame(C.fragDropped, now, buf, ip, ipLen);
      return;
    }
    s.c[C.forwarded]++;
    this.out.output(ifc.index, out, nh, buf, ip, ipLen, now);
  }

  /**
   * RFC 1812 §5.2.7.2, Linux's ip_rt_send_redirect: a packet that leaves by the interface
   * it came in on, from a sender on that interface's subnet toward a gateway (`gw`, 0 for
   * a directly connected destination) on it too, could have gone straight there: the
   * sender hears Redirect for Host (5/1) naming the next hop (source-routed packets
   * never get here: their sender chose the way). Backed off per sender (icmp-peers.ts:
   * 20 ms << n, at most 9); the packet is forwarded all the same.
   */
  private redirect(ifc: RouterInterface, buf: Buffer, ip: number, ipLen: number, gw: number, now: number, ctx: number): void {
    const src = ipv4GetSrcAddr(buf, ip);
    if (!onSubnet(ifc, src) || (gw !== 0 && !onSubnet(ifc, gw))) return;
    if (!this.icmp.peers.allowRedirect(src, now)) return;
    const nh = gw !== 0 ? gw : ipv4GetDstAddr(buf, ip);
    // The quote shows the packet as its sender sent it (un-DNAT), as for every error in flight.
    if (this.icmp.error(ifc, buf, ip, ipLen, ICMP_REDIRECT, ICMP_REDIRECT_HOST, nh, now, false, 0, this.opt, ctx)) this.s.c[C.redirectsSent]++;
  }

  /**
   * A datagram reassembled here leaves as it came: in fragments no larger than the
   * largest received, nor the MTU (Linux's frag_max_size).
   */
  private refragment(
    ifc: RouterInterface,
    out: RouterInterface,
    nh: number,
    buf: Buffer,
    ip: number,
    ipLen: number,
    df: boolean,
    fragMax: number,
    now: number,
  ): void {
    const s = this.s;
    if (df) {
      // Every fragment had DF (and none exceeds the MTU): the pieces keep it.
      ipv4SetDf(buf, ip, false);
      ipv4FillChecksum(buf, ip);
    }
    if (this.out.fragmentOut(ifc.index, out, nh, buf, ip, ipLen, now, Math.min(out.mtu, fragMax))) {
      s.c[C.refragmented]++;
      s.c[C.forwarded]++;
    } else s.dropFrame(C.fragDropped, now, buf, ip, ipLen);
  }

  /**
   * Answers a query to the cluster DNS: the reply datagram is written into scratch, from
   * the DNS address back to the asker, and routed (Output.send). A reply that would not
   * fit a datagram without fragmenting is not sent (the answers here are a few dozen bytes).
   */
  private dnsReply(ifc: RouterInterface, buf: Buffer, ip: number, udp: number, ipLen: number, now: number): void {
    const s = this.s;
    const dns = s.dns as ClusterDns;
    const reply = dns.answer(buf.subarray(udp + 8, ip + ipLen));
    if (reply === null || reply.length > 1400) return;
    const frame = this.out.alloc();
    if (frame < 0) return;
    const p = s.pool;
    const rip = frame + ETH_HEADER_LEN;
    const rudp = rip + 20;
    const len = 28 + reply.length;
    const client = ipv4GetSrcAddr(buf, ip);
    p[rip] = 0x45;
    p[rip + 1] = 0;
    p.writeUInt16BE(len, rip + 2);
    p.writeUInt32BE(0, rip + 4);
    p[rip + 8] = 64;
    p[rip + 9] = IP_PROTO_UDP;
    p.writeUInt32BE(dns.addr, rip + 12);
    p.writeUInt32BE(client >>> 0, rip + 16);
    ipv4FillChecksum(p, rip);
    p.writeUInt16BE(DNS_PORT, rudp);
    p.writeUInt16BE(buf.readUInt16BE(udp), rudp + 2);
    p.writeUInt16BE(8 + reply.length, rudp + 4);
    p.writeUInt16BE(0, rudp + 6);
    reply.copy(p, rudp + 8);
    p.writeUInt16BE(udpComputeChecksum(p, rudp, dns.addr, client >>> 0), rudp + 6);
    this.out.send(ifc.index, p, rip, len, now);
  }

  /** A packet for one of the router's addresses. */
  private local(ifc: RouterInterface, buf: Buffer, ip: number, ipLen: number, now: number, linkGroup: boolean, ctx: number): void {
    const s = this.s;
    this.notForwarded(ctx);
    if (!linkGroup && ipv4IsFragment(buf, ip)) {
      // A fragment for the router itself (NAT off: with it, input() reassembled already):
      // ip_local_deliver reassembles (RFC 1122 §3.3.2). The fragment is counted by the
      // reassembler (fragsReceived); the datagram it completes is delivered as one frame.
      this.reasmExpire(now);
      const h = s.reasm.add(buf, ip, ipLen, ifc.index, now);
      if (h < 0) return;
      s.c[C.reassembledLocal]++;
      // What options input found belongs to the last fragment's header, not the
      // datagram's (its first fragment's): nothing of it is echoed.
      this.opt.clear();
      buf = s.pool;
      ip = h;
      ipLen = s.reasm.lastLen;
    }
    s.c[C.delivered]++;
    if (linkGroup) {
      // A link-layer group address: the frame is shared with other ports, and Linux
      // ignores broadcast pings too (icmp_echo_ignore_broadcasts).
      s.c[C.localDropped]++;
      return;
    }
    const proto = ipv4GetProtocol(buf, ip);
    if (proto === IP_PROTO_ICMP) {
      const icmp = ip + ipv4GetHeaderLen(buf, ip);
      const isEcho = ipLen >= icmp - ip + ICMP_HEADER_LEN && icmpGetType(buf, icmp) === ICMP_ECHO_REQUEST && icmpGetCode(buf, icmp) === 0;
      if (!isEcho || !this.icmp.echoReply(ifc, buf, ip, ipLen, now, this.opt, this.isLocal)) s.c[C.localDropped]++;
      return;
    }
    // Errors about a packet for one of its addresses come from that address (icmp_send).
    const to = ipv4GetDstAddr(buf, ip);
    if (proto === IP_PROTO_UDP) {
      s.c[C.portUnreachable]++;
      this.icmp.error(ifc, buf, ip, ipLen, ICMP_DEST_UNREACH, ICMP_UNREACH_PORT, 0, now, false, to, this.opt);
      return;
    }
    if (proto === IP_PROTO_TCP) {
      // No TCP listener on a router: refuse as Linux does, with a reset (RFC 793).
      this.icmp.tcpReset(ifc, buf, ip, ipLen, now, this.opt);
      return;
    }
    s.c[C.protoUnreachable]++;
    this.icmp.error(ifc, buf, ip, ipLen, ICMP_DEST_UNREACH, ICMP_UNREACH_PROTOCOL, 0, now, false, to, this.opt);
  }

  /** Timer work of IPv4 input: conntrack expiry, reassembly timeouts. */
  tick(now: number): void {
    this.conntrackExpire(now);
    this.reasmExpire(now);
  }

  /**
   * Expires datagrams whose fragments stopped coming (ip_expire): ICMP time exceeded,
   * fragment reassembly time exceeded, to the source when the first fragment arrived.
   */
  private reasmExpire(now: number): void {
    const s = this.s;
    const r = s.reasm;
    for (let k = r.nextExpired(now); k >= 0; k = r.nextExpired(now)) {
      if (r.expired(k)) {
        this.icmp.error(s.ifaces[r.inIfOf(k)], s.pool, r.firstIp(k), r.firstFragLen(k), ICMP_TIME_EXCEEDED, ICMP_TIME_EXCEEDED_REASSEMBLY, 0, now, false);
      }
      r.release(k);
    }
  }

  /**
   * The size the packet at `ip` has on a wire: its total length, or for a TSO
   * super-frame (offloads on) the size of the segments the kernel will cut it into.
   */
  private wireLen(buf: Buffer, ip: number, ipLen: number): number {
    const frame = ip - ETH_HEADER_LEN;
    if (!vnetIsGso(buf, frame)) return ipLen;
    // IP and TCP headers as they are, plus gso_size. (The header's hdr_len is no measure:
    // Linux fills it with the skb's linear length, which may hold payload too.)
    const l4 = ip + ipv4GetHeaderLen(buf, ip);
    if (l4 + TCP_DATA_OFFSET_OFF >= ip + ipLen) return ipLen;
    return l4 - ip + tcpGetHeaderLen(buf, l4) + vnetGetGsoSize(buf, frame);
  }

  // ---------------------------------------------------------------------------
  // NAT hooks: every call the router makes into the NAT.

  /** The trace step of a forwarding decision (only while a trace is armed). */
  private traceRoute(r: number, out: RouterInterface, nh: number, buf: Buffer, ip: number): void {
    const s = this.s;
    const ttl = ipv4GetTtl(buf, ip);
    const via = s.routeGw[r] ? ` via ${ipToString(s.routeGw[r])}` : "";
    s.trace(
      `${ipToString(ipv4GetSrcAddr(buf, ip))} > ${ipToString(ipv4GetDstAddr(buf, ip))}: route ${ipToString(s.routePrefix[r])}/${s.routeLen[r]}${via} dev ${out.name} (${s.routeKind[r]}), next hop ${ipToString(nh)}, TTL ${ttl + 1} -> ${ttl}`,
    );
  }

  /**
   * PREROUTING: the packet's conntrack context (>= 0, for POSTROUTING or release), or a
   * negative verdict when the packet ends here (counted).
   */
  private prerouting(ifc: RouterInterface, buf: Buffer, ip: number, ipLen: number, now: number): number {
    const s = this.s;
    const before = s.tr !== null && s.nat !== null ? ipTuple(buf, ip) : "";
    const ctx = s.nat === null ? NAT_ACCEPT : s.nat.prerouting(buf, ip, ipLen, ifc.index, now, this.csumPartial(buf, ip));
    if (s.tr !== null && s.nat !== null) s.trace(natStep("PREROUTING", before, ipTuple(buf, ip)));
    if (ctx >= 0) return ctx;
    if (ctx === NAT_REJECT) {
      // A service with no endpoints: refuse, as kube-proxy's REJECT does.
      s.dropFrame(C.serviceRejected, now, buf, ip, ipLen);
      this.icmp.error(ifc, buf, ip, ipLen, ICMP_DEST_UNREACH, ICMP_UNREACH_PORT, 0, now, false);
    } else s.dropFrame(C.natDropped, now, buf, ip, ipLen);
    return ctx;
  }

  /** POSTROUTING, toward `out` (its address on dst's subnet is the hairpin source); false when dropped (counted). */
  private postrouting(ctx: number, out: RouterInterface, buf: Buffer, ip: number, ipLen: number, dst: number, now: number): boolean {
    const s = this.s;
    const before = s.tr !== null && s.nat !== null ? ipTuple(buf, ip) : "";
    const v = s.nat === null ? NAT_ACCEPT : s.nat.postrouting(ctx, buf, ip, ipLen, out.index, sourceFor(out, dst), now, this.csumPartial(buf, ip));
    if (s.tr !== null && s.nat !== null) s.trace(natStep("POSTROUTING", before, ipTuple(buf, ip)));
    if (v === NAT_ACCEPT) return true;
    s.dropFrame(C.natDropped, now, buf, ip, ipLen);
    return false;
  }

  /** Connection tracking's timeouts (from the element's timer). */
  private conntrackExpire(now: number): void {
    this.s.nat?.expire(now);
  }

  /** The packet PREROUTING saw will not reach POSTROUTING (for the router, or dropped). */
  private notForwarded(ctx: number): void {
    if (ctx !== NAT_ACCEPT) this.s.nat?.release(ctx);
  }

  /** Offloads on and the packet's L4 checksum is a partial sum the kernel completes. */
  private csumPartial(buf: Buffer, ip: number): boolean {
    return this.s.offload && vnetNeedsCsum(buf, ip - ETH_HEADER_LEN);
  }
}

/** The drop counter of an ipv4Check() failure. */
function headerDrop(reason: number): number {
  if (reason === CHECK_BAD_VERSION) return C.badVersion;
  if (reason === CHECK_BAD_IHL) return C.badIhl;
  if (reason === CHECK_BAD_TOTAL_LEN) return C.badTotalLen;
  if (reason === CHECK_BAD_CHECKSUM) return C.badChecksum;
  return C.tooShort;
}
