/**
 * Ipv4Router — an IPv4 router on real frames (what the kernel's forwarding path,
 * its ARP and its ICMP do for a Linux router).
 *
 * Interfaces: each has a MAC, an MTU and one or more addresses; each sits on one
 * VLAN of the node's switch through an InternalPort (an SVI; a "routed port" is a
 * VLAN with one member port). Connected routes appear with the addresses.
 *
 * Per frame from an interface:
 *   ARP     answer requests for the interface's own addresses (and, with proxyArp,
 *           for addresses routed out of another interface), always out of the
 *           interface the request came in on; learn the sender (RFC 826 merge);
 *           replies complete pending resolutions.
 *   IPv4    check version, IHL, total length against the frame, header checksum;
 *           deliver what is for the router (echo -> reply, UDP -> port unreachable,
 *           other protocols -> protocol unreachable, TCP dropped); forward the rest:
 *           TTL (time exceeded at 1), longest-prefix match (net unreachable when
 *           none), MTU (frag-needed with the next-hop MTU when DF, else RFC 791
 *           fragmentation), TTL decrement with an RFC 1624 checksum update, next
 *           hop resolution through the neighbour cache (packets wait, bounded, and
 *           get host unreachable when ARP gives up).
 * ICMP errors follow RFC 1812 §4.3.2.7 (never about an ICMP error, a broadcast, a
 * non-initial fragment) and are rate-limited by a token bucket (§4.3.2.8); their
 * source is the address of the interface the offending packet came in on.
 *
 * Counters: see COUNTERS; IPv4 header failures are counted by reason
 * (tooShort, badVersion, badIhl, badTotalLen, badChecksum). Every frame the router
 * receives ends in exactly one of: runt, unknownEtherType, arpIn, otherHost, the
 * header reasons, martianSource, martianDestination, fragsReceived (taken by the
 * reassembler; a completed datagram then counts as one more frame), serviceRejected,
 * natDropped, delivered, broadcastDropped, ttlExpired, noRoute, fragNeeded, gsoDropped,
 * fragDropped, forwarded. What happens to the router's own packets (replies, errors)
 * is counted apart (outNoRoute, fragFailed, scratchFull …), never in those.
 */
import type { FrameList } from "../core/batch.js";
import type { ElementInfo } from "../core/element.js";
import type { InternalPort } from "../core/internal-port.js";
import type { Port } from "../core/port.js";
import {
  ARP_OPER_REPLY,
  ARP_OPER_REQUEST,
  arpCheck,
  arpGetOper,
  arpGetSha,
  arpGetSpa,
  arpGetTpa,
  emitArpReply,
  emitArpRequest,
} from "../wire/arp.js";
import { CHECK_BAD_CHECKSUM, CHECK_BAD_IHL, CHECK_BAD_TOTAL_LEN, CHECK_BAD_VERSION, CHECK_OK } from "../wire/reason.js";
import { readU32 } from "../wire/bytes.js";
import { ipv4Check, ipv4DecrementTtl, ipv4FillChecksum } from "../wire/ipv4.js";
import { ipToString } from "../wire/ipv4addr.js";
import { macToString, readMac, writeMac } from "../wire/mac.js";
import { Fib } from "./fib.js";
import { NAT_ACCEPT, NAT_REJECT, type Nat } from "./nat.js";
import { Ipv4Reassembly, type ReassemblyOptions } from "./ipv4-reassembly.js";
import { emitIcmpEchoReplyInPlace, emitIcmpError, emitTcpReset, fragmentIpv4, icmpErrorAllowed, TokenBucket } from "./ip-util.js";
import {
  NeighbourCache,
  NUD_INCOMPLETE,
  NUD_NAMES,
  NUD_PERMANENT,
  type Neighbour,
  type NeighbourTimers,
} from "./neighbour-cache.js";

export interface RouterInterfaceConfig {
  name: string;
  mac: number;
  mtu: number;
  /** [address, prefixLen] pairs; the first is the primary (source of ICMP errors). */
  addresses: Array<{ addr: number; prefixLen: number }>;
  proxyArp?: boolean;
  port: InternalPort;
}

/** One line of `show route`. */
export interface RouteRow {
  prefix: string;
  via: string | null;
  dev: string;
  kind: string;
  src: string | null;
}

/** One line of `show neigh`. */
export interface NeighbourRow {
  address: string;
  dev: string;
  mac: string | null;
  state: string;
  age: number | null;
  queued: number;
  probes: number;
}

export interface RouterOptions {
  icmpRate?: number;
  icmpBurst?: number;
  neighbour?: Partial<NeighbourTimers>;
  reassembly?: ReassemblyOptions;
  /** Connection tracking and NAT, called at PREROUTING and POSTROUTING. */
  nat?: Nat | null;
  /** Frames carry virtio-net headers (src/wire/vnet.ts). */
  offload?: boolean;
}

export interface RouteConfig {
  prefix: number;
  prefixLen: number;
  /** Next hop address; 0 = directly connected on `ifIndex`. */
  gateway: number;
  ifIndex: number;
}

export interface RouterInterface {
  index: number;
  name: string;
  mac: number;
  mtu: number;
  addrs: number[];
  prefixLens: number[];
  masks: number[];
  proxyArp: boolean;
  port: InternalPort;
}

export const COUNTERS = [
  "forwarded",
  "delivered",
  "echoReplies",
  "icmpErrors",
  "icmpRateLimited",
  "icmpSuppressed",
  "ttlExpired",
  "noRoute",
  "hostUnreachable",
  "fragNeeded",
  "fragmented",
  "fragmentsOut",
  "fragFailed",
  "tooShort",
  "badVersion",
  "badIhl",
  "badTotalLen",
  "badChecksum",
  "martianSource",
  "martianDestination",
  "broadcastDropped",
  "otherHost",
  "unknownEtherType",
  "protoUnreachable",
  "portUnreachable",
  "localDropped",
  "arpIn",
  "arpRepliesSent",
  "arpRequestsSent",
  "badArp",
  "arpQueueFull",
  "neighbourTableFull",
  "scratchFull",
  "runt",
  "serviceRejected",
  "natDropped",
  "gsoDropped",
  "tcpResets",
  "fragsReceived",
  "reassembled",
  "reasmTimeout",
  "reasmOverlap",
  "reasmDropped",
  "refragmented",
  "fragDropped",
  "outNoRoute",
] as const;
export type RouterCounter = (typeof COUNTERS)[number];

const ETH_HLEN = 14;
const VNET_HDR_LEN = 12;
const SLOT = 2048;
const MAX_FRAGS = 48;
const ICMP_DEST_UNREACH = 3;
const ICMP_TIME_EXCEEDED = 11;

export class Ipv4Router {
  readonly kind = "Ipv4Router";
  readonly ifaces: RouterInterface[] = [];
  readonly fib = new Fib();
  readonly neigh: NeighbourCache;
  /** Route table behind the FIB's values. */
  private readonly routeIf: number[] = [];
  private readonly routeGw: number[] = [];
  private readonly routeKind: string[] = [];
  private readonly routePrefix: number[] = [];
  private readonly routeLen: number[] = [];
  /**
   * The router's own addresses -> interface index, keyed by the address as a signed
   * 32-bit value (`addr | 0`): a Smi key never boxes, where addresses from 128.0.0.0
   * up would allocate a heap number per lookup.
   */
  private readonly local = new Map<number, number>();
  private readonly ifByPort = new Map<number, RouterInterface>();
  private readonly bucket: TokenBucket;
  private ident = 1;
  private pool: Buffer | null = null;
  private scratchBase = -1;
  private scratchSlots = 0;
  private scratchUsed = 0;
  private readonly fragLens = new Uint32Array(MAX_FRAGS);

  forwarded = 0;
  delivered = 0;
  echoReplies = 0;
  icmpErrors = 0;
  icmpRateLimited = 0;
  icmpSuppressed = 0;
  ttlExpired = 0;
  noRoute = 0;
  hostUnreachable = 0;
  fragNeeded = 0;
  fragmented = 0;
  fragmentsOut = 0;
  fragFailed = 0;
  tooShort = 0;
  badVersion = 0;
  badIhl = 0;
  badTotalLen = 0;
  badChecksum = 0;
  martianSource = 0;
  martianDestination = 0;
  broadcastDropped = 0;
  otherHost = 0;
  unknownEtherType = 0;
  protoUnreachable = 0;
  portUnreachable = 0;
  localDropped = 0;
  arpIn = 0;
  arpRepliesSent = 0;
  arpRequestsSent = 0;
  badArp = 0;
  arpQueueFull = 0;
  neighbourTableFull = 0;
  scratchFull = 0;
  runt = 0;
  serviceRejected = 0;
  natDropped = 0;
  /** Connection tracking and NAT, when the node has NAT rules or services. */
  readonly nat: Nat | null;
  /** Fragments are reassembled before PREROUTING while `nat` is set (nf_defrag_ipv4). */
  readonly reasm: Ipv4Reassembly;
  refragmented = 0;
  /**
   * The node's ports carry virtio-net headers (offloads): every frame has its header
   * in the 12 bytes before it; TSO super-frames are routed whole (MTU checks use their
   * segment size) and NAT keeps partial checksums partial.
   */
  readonly offload: boolean;
  /** TSO super-frames whose segments would need IP fragmentation: dropped. */
  gsoDropped = 0;
  /** TCP segments to the router's own addresses answered with a reset. */
  tcpResets = 0;
  /**
   * Packets to forward that needed fragmenting and could not be (no scratch slots, more
   * fragments than MAX_FRAGS, malformed options): dropped. (fragFailed and scratchFull
   * say why; they count the router's own packets too.)
   */
  fragDropped = 0;
  /**
   * Packets the router originates (echo replies, ICMP errors, resets) with no route to
   * their destination: Linux's OutNoRoutes, apart from noRoute (InNoRoutes, packets to
   * forward), so a received packet is never counted twice.
   */
  outNoRoute = 0;

  constructor(
    interfaces: RouterInterfaceConfig[],
    opts: RouterOptions = {},
    readonly name = "router",
  ) {
    this.nat = opts.nat ?? null;
    this.offload = opts.offload ?? false;
    this.reasm = new Ipv4Reassembly(opts.reassembly);
    for (const c of interfaces) {
      const ifc: RouterInterface = {
        index: this.ifaces.length,
        name: c.name,
        mac: c.mac,
        mtu: c.mtu,
        addrs: c.addresses.map((a) => a.addr >>> 0),
        prefixLens: c.addresses.map((a) => a.prefixLen),
        masks: c.addresses.map((a) => (a.prefixLen === 0 ? 0 : (0xffffffff << (32 - a.prefixLen)) >>> 0)),
        proxyArp: c.proxyArp ?? false,
        port: c.port,
      };
      this.ifaces.push(ifc);
      this.ifByPort.set(c.port.index, ifc);
      ifc.addrs.forEach((a, k) => {
        if (this.local.has(a | 0)) throw new Error(`address ${ipToString(a)} is on two interfaces`);
        this.local.set(a | 0, ifc.index);
        const m = ifc.masks[k];
        // Like Linux, a /32 gives the interface an address but no connected route.
        if (ifc.prefixLens[k] === 32) return;
        this.addRoute({ prefix: (a & m) >>> 0, prefixLen: ifc.prefixLens[k], gateway: 0, ifIndex: ifc.index }, "connected");
      });
    }
    this.neigh = new NeighbourCache(this.ifaces.length, opts.neighbour);
    this.bucket = new TokenBucket(opts.icmpRate ?? 1000, opts.icmpBurst ?? 50);
  }

  describe(): ElementInfo {
    const ifs = this.ifaces.map((i) => i.port.name);
    return { name: this.name, kind: this.kind, inputs: ifs, outputs: ifs, counters: [...COUNTERS] };
  }

  /** Frame slots, then the reassembly slots (used while NAT is on). */
  scratchBytes(): number {
    return 1024 * SLOT + this.reasm.bytes();
  }

  attachScratch(pool: Buffer, base: number, bytes: number): void {
    this.pool = pool;
    this.scratchBase = base;
    const frames = bytes - this.reasm.bytes();
    this.scratchSlots = Math.floor(frames / SLOT);
    this.reasm.attach(pool, base + this.scratchSlots * SLOT);
  }

  beginPass(): void {
    this.scratchUsed = 0;
    this.reasm.beginPass();
  }

  // Reassembly counters (kept by the reassembler).
  get fragsReceived(): number {
    return this.reasm.fragsReceived;
  }
  get reassembled(): number {
    return this.reasm.reassembled;
  }
  get reasmTimeout(): number {
    return this.reasm.reasmTimeout;
  }
  get reasmOverlap(): number {
    return this.reasm.reasmOverlap;
  }
  get reasmDropped(): number {
    return this.reasm.reasmDropped;
  }

  /** Adds a route; `kind` is what `show route` says (connected, static). */
  addRoute(r: RouteConfig, kind = "static"): void {
    const old = this.fib.get(r.prefix, r.prefixLen);
    if (old >= 0 && this.routeKind[old] === "connected" && kind !== "connected") {
      throw new Error(`route ${ipToString(r.prefix)}/${r.prefixLen} is a connected subnet`);
    }
    const id = old >= 0 ? old : this.routeIf.length;
    this.routeIf[id] = r.ifIndex;
    this.routeGw[id] = r.gateway >>> 0;
    this.routeKind[id] = kind;
    this.routePrefix[id] = r.prefix >>> 0;
    this.routeLen[id] = r.prefixLen;
    this.fib.add(r.prefix >>> 0, r.prefixLen, id);
  }

  /** The interface whose connected subnet holds `addr`, or -1. */
  connectedIf(addr: number): number {
    for (const ifc of this.ifaces) {
      for (let k = 0; k < ifc.addrs.length; k++) {
        if (((addr & ifc.masks[k]) >>> 0) === ((ifc.addrs[k] & ifc.masks[k]) >>> 0)) return ifc.index;
      }
    }
    return -1;
  }

  addStaticNeighbour(ifIndex: number, addr: number, mac: number): void {
    this.neigh.setStatic(ifIndex, addr >>> 0, mac);
  }

  // ---------------------------------------------------------------------------
  // Input

  process(port: Port, frames: FrameList, buf: Buffer, now: number): void {
    const ifc = this.ifByPort.get(port.index);
    if (ifc === undefined) return;
    const n = frames.count;
    for (let i = 0; i < n; i++) {
      const off = frames.offsets[i];
      const len = frames.lengths[i];
      if (len < ETH_HLEN) {
        this.runt++;
        continue;
      }
      const et = (buf[off + 12] << 8) | buf[off + 13];
      if (et === 0x0806) this.arpInput(ifc, buf, off, len, now);
      else if (et === 0x0800) this.ipInput(ifc, buf, off, len, now);
      else this.unknownEtherType++;
    }
  }

  private ipInput(ifc: RouterInterface, buf: Buffer, off: number, len: number, now: number): void {
    let ip = off + ETH_HLEN;
    const linkGroup = (buf[off] & 1) !== 0;
    if (!linkGroup && readMac(buf, off) !== ifc.mac) {
      // Flooded unicast for another station: not ours to route.
      this.otherHost++;
      return;
    }
    const reason = ipv4Check(buf, ip, len - ETH_HLEN, true);
    if (reason !== CHECK_OK) {
      this.countReason(reason);
      return;
    }
    let ipLen = (buf[ip + 2] << 8) | buf[ip + 3];
    const src = readU32(buf, ip + 12);
    let dst = readU32(buf, ip + 16);
    const s0 = src >>> 24;
    // RFC 1812 §5.3.7: no forwarding from or to addresses that cannot be hosts.
    if (s0 === 0 || s0 === 127 || s0 >= 224 || this.local.has(src | 0) || this.isSubnetBroadcast(src)) {
      this.martianSource++;
      return;
    }
    const d0 = dst >>> 24;
    if (d0 === 0 || d0 === 127 || (d0 >= 240 && dst !== 0xffffffff)) {
      this.martianDestination++;
      return;
    }
    // PREROUTING: connection tracking, service DNAT, and un-SNAT of replies — before
    // the router decides whether the packet is its own (a reply to a masqueraded flow
    // is addressed to the router's address until it is translated back).
    const nat = this.nat;
    // Largest fragment of a datagram reassembled here (Linux's IPCB frag_max_size), else 0.
    let fragMax = 0;
    if (nat !== null && !linkGroup && ((buf[ip + 6] & 0x3f) | buf[ip + 7]) !== 0) {
      // nf_defrag_ipv4: conntrack and NAT see whole datagrams.
      this.reasmExpire(now);
      const h = this.reasm.add(buf, ip, ipLen, ifc.index, now);
      if (h < 0) return;
      buf = this.pool as Buffer;
      ip = h;
      ipLen = this.reasm.lastLen;
      fragMax = this.reasm.lastMaxFrag;
    }
    // The packet's conntrack context, from PREROUTING to POSTROUTING (or release()).
    let ctx = NAT_ACCEPT;
    if (nat !== null && !linkGroup) {
      ctx = nat.prerouting(buf, ip, ipLen, ifc.index, now, this.csumPartial(buf, ip));
      if (ctx < 0) {
        if (ctx === NAT_REJECT) {
          // A service with no endpoints: refuse, as kube-proxy's REJECT does.
          this.serviceRejected++;
          this.icmpError(ifc, buf, ip, ipLen, ICMP_DEST_UNREACH, 3, 0, now, false);
        } else this.natDropped++;
        return;
      }
      dst = readU32(buf, ip + 16);
    }
    const localIf = this.local.get(dst | 0);
    if (localIf !== undefined) {
      // The router's own traffic is not tracked (it never reaches POSTROUTING).
      nat?.release(ctx);
      this.localInput(ifc, buf, ip, ipLen, now, linkGroup);
      return;
    }
    if (linkGroup || dst >>> 28 === 14 || dst === 0xffffffff || this.isSubnetBroadcast(dst)) {
      // RFC 1812 §5.3.4/§5.3.5: link-layer broadcasts, multicast and directed
      // broadcasts are not forwarded.
      this.broadcastDropped++;
      nat?.release(ctx);
      return;
    }
    if (buf[ip + 8] <= 1) {
      this.ttlExpired++;
      this.icmpError(ifc, buf, ip, ipLen, ICMP_TIME_EXCEEDED, 0, 0, now, false, ctx);
      nat?.release(ctx);
      return;
    }
    const r = this.fib.lookup(dst);
    if (r < 0) {
      this.noRoute++;
      this.icmpError(ifc, buf, ip, ipLen, ICMP_DEST_UNREACH, 0, 0, now, false, ctx);
      nat?.release(ctx);
      return;
    }
    const out = this.ifaces[this.routeIf[r]];
    const wire = fragMax > 0 ? fragMax : this.wireLen(buf, ip, ipLen);
    if (wire > out.mtu && (buf[ip + 6] & 0x40) !== 0) {
      this.fragNeeded++;
      this.icmpError(ifc, buf, ip, ipLen, ICMP_DEST_UNREACH, 4, out.mtu & 0xffff, now, false, ctx);
      nat?.release(ctx);
      return;
    }
    // POSTROUTING: source NAT (masquerade, hairpin) and un-DNAT of service replies.
    if (nat !== null && nat.postrouting(ctx, buf, ip, ipLen, out.index, this.sourceFor(out, dst), now, this.csumPartial(buf, ip)) !== NAT_ACCEPT) {
      this.natDropped++;
      return;
    }
    if (fragMax > 0) {
      // Leaves as it came: in fragments no larger than the largest received, nor the MTU.
      ipv4DecrementTtl(buf, ip);
      if ((buf[ip + 6] & 0x40) !== 0) {
        // Every fragment had DF (and none exceeds the MTU): the pieces keep it.
        buf[ip + 6] &= ~0x40;
        ipv4FillChecksum(buf, ip);
      }
      if (this.fragmentOut(ifc.index, out, this.routeGw[r] || dst, buf, ip, ipLen, now, Math.min(out.mtu, fragMax))) {
        this.refragmented++;
        this.forwarded++;
      } else this.fragDropped++;
      return;
    }
    if (wire !== ipLen && wire > out.mtu) {
      this.gsoDropped++;
      return;
    }
    if (ipLen > out.mtu && wire === ipLen) {
      ipv4DecrementTtl(buf, ip);
      if (this.fragmentOut(ifc.index, out, this.routeGw[r] || dst, buf, ip, ipLen, now)) this.forwarded++;
      else this.fragDropped++;
      return;
    }
    ipv4DecrementTtl(buf, ip);
    this.forwarded++;
    this.output(ifc.index, out, this.routeGw[r] || dst, buf, ip, ipLen, now);
  }

  private localInput(ifc: RouterInterface, buf: Buffer, ip: number, ipLen: number, now: number, linkGroup: boolean): void {
    this.delivered++;
    const hl = (buf[ip] & 0x0f) << 2;
    const proto = buf[ip + 9];
    if ((((buf[ip + 6] & 0x1f) << 8) | buf[ip + 7]) !== 0 || (buf[ip + 6] & 0x20) !== 0) {
      // Fragments for the router itself: it reassembles nothing.
      this.localDropped++;
      return;
    }
    if (linkGroup) {
      // Sent to a link-layer group address: the frame is shared with other ports,
      // and Linux ignores broadcast pings too (icmp_echo_ignore_broadcasts).
      this.localDropped++;
      return;
    }
    if (proto === 1) {
      if (ipLen >= hl + 8 && buf[ip + hl] === 8 && buf[ip + hl + 1] === 0) {
        if (emitIcmpEchoReplyInPlace(buf, ip, ipLen)) {
          this.echoReplies++;
          this.send(ifc.index, buf, ip, ipLen, now);
          return;
        }
      }
      this.localDropped++;
      return;
    }
    if (proto === 17) {
      this.portUnreachable++;
      this.icmpError(ifc, buf, ip, ipLen, ICMP_DEST_UNREACH, 3, 0, now, false);
      return;
    }
    if (proto === 6) {
      // No TCP listener on a router: refuse as Linux does, with a reset (RFC 793).
      this.tcpReset(ifc, buf, ip, ipLen, now);
      return;
    }
    this.protoUnreachable++;
    this.icmpError(ifc, buf, ip, ipLen, ICMP_DEST_UNREACH, 2, 0, now, false);
  }

  private isSubnetBroadcast(dst: number): boolean {
    for (const ifc of this.ifaces) {
      for (let k = 0; k < ifc.addrs.length; k++) {
        const m = ifc.masks[k];
        if (ifc.prefixLens[k] < 31 && ((dst & m) >>> 0) === ((ifc.addrs[k] & m) >>> 0) && ((dst | ~m) >>> 0) === dst) {
          return true;
        }
      }
    }
    return false;
  }

  private countReason(reason: number): void {
    if (reason === CHECK_BAD_VERSION) this.badVersion++;
    else if (reason === CHECK_BAD_IHL) this.badIhl++;
    else if (reason === CHECK_BAD_TOTAL_LEN) this.badTotalLen++;
    else if (reason === CHECK_BAD_CHECKSUM) this.badChecksum++;
    else this.tooShort++;
  }


  // ---------------------------------------------------------------------------
  // ARP

  private arpInput(ifc: RouterInterface, buf: Buffer, off: number, len: number, now: number): void {
    this.arpIn++;
    const a = off + ETH_HLEN;
    if (arpCheck(buf, a, len - ETH_HLEN) !== CHECK_OK) {
      this.badArp++;
      return;
    }
    const oper = arpGetOper(buf, a);
    const sha = arpGetSha(buf, a);
    const spa = arpGetSpa(buf, a) >>> 0;
    const tpa = arpGetTpa(buf, a) >>> 0;
    if ((Math.floor(sha / 1099511627776) & 1) === 1 || sha === 0) {
      this.badArp++;
      return;
    }
    const mine = this.ownsOn(ifc, tpa);
    // Learn senders on this interface's subnets only (no off-link entries). Entries are
    // created only by a request for one of our addresses (its sender will talk to us);
    // an unsolicited reply updates an entry but never creates one, as Linux does with
    // arp_accept=0 (RFC 826 would add it: that lets any station plant entries).
    if (spa !== 0 && this.onSubnet(ifc, spa) && !this.local.has(spa | 0)) {
      const confirmed = oper === ARP_OPER_REPLY && readMac(buf, off) === ifc.mac;
      const ready = this.neigh.learn(ifc.index, spa, sha, now, confirmed, mine && oper === ARP_OPER_REQUEST);
      if (ready !== null) this.sendQueued(ready, now);
    }
    if (oper !== ARP_OPER_REQUEST) return;
    let answer = mine;
    if (!answer && ifc.proxyArp && spa !== tpa) {
      const r = this.fib.lookup(tpa);
      answer = r >= 0 && this.routeIf[r] !== ifc.index;
    }
    if (!answer) return;
    const slot = this.alloc();
    if (slot < 0) return;
    const pool = this.pool as Buffer;
    writeMac(pool, slot, sha);
    writeMac(pool, slot + 6, ifc.mac);
    pool[slot + 12] = 0x08;
    pool[slot + 13] = 0x06;
    emitArpReply(pool, slot + ETH_HLEN, ifc.mac, tpa, sha, spa);
    pool.fill(0, slot + 42, slot + 60); // pad to the Ethernet minimum
    ifc.port.inq.push(slot, 60);
    this.arpRepliesSent++;
  }

  private ownsOn(ifc: RouterInterface, addr: number): boolean {
    for (let k = 0; k < ifc.addrs.length; k++) if (ifc.addrs[k] === addr) return true;
    return false;
  }

  private onSubnet(ifc: RouterInterface, addr: number): boolean {
    for (let k = 0; k < ifc.addrs.length; k++) {
      const m = ifc.masks[k];
      if (((addr & m) >>> 0) === ((ifc.addrs[k] & m) >>> 0)) return true;
    }
    return false;
  }

  /** The interface's address to speak from toward `peer` (same subnet first). */
  private sourceFor(ifc: RouterInterface, peer: number): number {
    for (let k = 0; k < ifc.addrs.length; k++) {
      const m = ifc.masks[k];
      if (((peer & m) >>> 0) === ((ifc.addrs[k] & m) >>> 0)) return ifc.addrs[k];
    }
    return ifc.addrs[0] ?? 0;
  }

  private arpRequest(ifc: RouterInterface, tpa: number, unicastTo: number): void {
    const slot = this.alloc();
    if (slot < 0) return;
    const pool = this.pool as Buffer;
    writeMac(pool, slot, unicastTo === 0 ? 0xffffffffffff : unicastTo);
    writeMac(pool, slot + 6, ifc.mac);
    pool[slot + 12] = 0x08;
    pool[slot + 13] = 0x06;
    emitArpRequest(pool, slot + ETH_HLEN, ifc.mac, this.sourceFor(ifc, tpa), tpa);
    pool.fill(0, slot + 42, slot + 60);
    ifc.port.inq.push(slot, 60);
    this.arpRequestsSent++;
  }

  /** Gratuitous ARP for every address (RFC 5227 §3 announcement), when interfaces come up. */
  announce(): void {
    for (const ifc of this.ifaces) {
      for (const a of ifc.addrs) {
        const slot = this.alloc();
        if (slot < 0) return;
        const pool = this.pool as Buffer;
        writeMac(pool, slot, 0xffffffffffff);
        writeMac(pool, slot + 6, ifc.mac);
        pool[slot + 12] = 0x08;
        pool[slot + 13] = 0x06;
        emitArpRequest(pool, slot + ETH_HLEN, ifc.mac, a, a);
        pool.fill(0, slot + 42, slot + 60);
        ifc.port.inq.push(slot, 60);
        this.arpRequestsSent++;
      }
    }
  }

  // ---------------------------------------------------------------------------
  // Output

  /** Routes a packet the router itself sends (a reply, an ICMP error). */
  private send(inIf: number, buf: Buffer, ip: number, ipLen: number, now: number): void {
    const dst = readU32(buf, ip + 16);
    const r = this.fib.lookup(dst);
    if (r < 0) {
      this.outNoRoute++;
      return;
    }
    const out = this.ifaces[this.routeIf[r]];
    const nh = this.routeGw[r] || dst;
    if (ipLen > out.mtu) this.fragmentOut(inIf, out, nh, buf, ip, ipLen, now);
    else this.output(inIf, out, nh, buf, ip, ipLen, now);
  }

  /**
   * Puts an IPv4 packet on the wire of `out` toward next hop `nh`: the Ethernet
   * header goes in the 14 bytes before `ip` (every packet the router handles has
   * them: its own frame's header, or room left in scratch).
   */
  private output(inIf: number, out: RouterInterface, nh: number, buf: Buffer, ip: number, ipLen: number, now: number): void {
    let n = this.neigh.get(out.index, nh);
    if (n !== undefined && n.state !== NUD_INCOMPLETE) {
      if (n.state !== NUD_PERMANENT) this.neigh.touch(n, now);
      const e = ip - ETH_HLEN;
      writeMac(buf, e, n.mac);
      writeMac(buf, e + 6, out.mac);
      buf[e + 12] = 0x08;
      buf[e + 13] = 0x00;
      out.port.inq.push(e, ipLen + ETH_HLEN);
      return;
    }
    if (n === undefined) {
      const made = this.neigh.create(out.index, nh, now);
      if (made === null) {
        this.neighbourTableFull++;
        return;
      }
      n = made;
      n.probes = 1;
      n.nextProbe = now + this.neigh.t.retransMs;
      this.arpRequest(out, nh, 0);
    }
    // Wait for ARP: the bytes must outlive this pass, so keep a copy.
    const vnet = this.offload ? Buffer.from(buf.subarray(ip - ETH_HLEN - VNET_HDR_LEN, ip - ETH_HLEN)) : undefined;
    if (!this.neigh.enqueue(n, { data: Buffer.from(buf.subarray(ip, ip + ipLen)), inIf, vnet })) this.arpQueueFull++;
  }

  private fragmentOut(inIf: number, out: RouterInterface, nh: number, buf: Buffer, ip: number, ipLen: number, now: number, mtu = out.mtu): boolean {
    const need = Math.ceil(ipLen / Math.max(mtu - 60, 8)) + 1;
    const first = this.alloc(Math.min(need, MAX_FRAGS));
    if (first < 0) return false;
    const pool = this.pool as Buffer;
    const k = fragmentIpv4(buf, ip, ipLen, mtu, pool, first + ETH_HLEN, SLOT, Math.min(need, MAX_FRAGS), this.fragLens);
    if (k <= 0) {
      // Too many fragments for the scratch space, or a malformed header/options.
      this.fragFailed++;
      return false;
    }
    this.fragmented++;
    this.fragmentsOut += k;
    for (let i = 0; i < k; i++) {
      this.output(inIf, out, nh, pool, first + i * SLOT + ETH_HLEN, this.fragLens[i], now);
    }
    return true;
  }

  private icmpError(
    ifc: RouterInterface,
    buf: Buffer,
    ip: number,
    ipLen: number,
    type: number,
    code: number,
    rest: number,
    now: number,
    linkBroadcast: boolean,
    natCtx = NAT_ACCEPT,
  ): void {
    if (!icmpErrorAllowed(buf, ip, ipLen, linkBroadcast)) {
      this.icmpSuppressed++;
      return;
    }
    if (!this.bucket.take(now)) {
      this.icmpRateLimited++;
      return;
    }
    const src = this.sourceFor(ifc, readU32(buf, ip + 12));
    if (src === 0) return;
    const slot = this.alloc();
    if (slot < 0) return;
    const pool = this.pool as Buffer;
    this.ident = (this.ident + 1) & 0xffff;
    const len = emitIcmpError(pool, slot + ETH_HLEN, buf, ip, ipLen, type, code, rest, src, this.ident);
    if (len < 0) return;
    // About a packet NAT has already rewritten (between its two hooks): quote what the
    // sender sent and speak from the VIP/masquerade address, as Linux does.
    if (this.nat !== null) this.nat.localError(natCtx, pool, slot + ETH_HLEN, len);
    this.icmpErrors++;
    this.send(ifc.index, pool, slot + ETH_HLEN, len, now);
  }

  private tcpReset(ifc: RouterInterface, buf: Buffer, ip: number, ipLen: number, now: number): void {
    const slot = this.alloc();
    if (slot < 0) return;
    const pool = this.pool as Buffer;
    this.ident = (this.ident + 1) & 0xffff;
    const len = emitTcpReset(pool, slot + ETH_HLEN, buf, ip, ipLen, this.ident);
    if (len < 0) {
      this.localDropped++;
      return;
    }
    this.tcpResets++;
    this.send(ifc.index, pool, slot + ETH_HLEN, len, now);
  }

  /** Sends what waited for a neighbour that has now resolved. */
  private sendQueued(n: Neighbour, now: number): void {
    const out = this.ifaces[n.ifIndex];
    for (const p of this.neigh.drain(n)) {
      const slot = this.alloc();
      if (slot < 0) return;
      const pool = this.pool as Buffer;
      p.data.copy(pool, slot + ETH_HLEN);
      if (p.vnet) p.vnet.copy(pool, slot - VNET_HDR_LEN);
      this.output(p.inIf, out, n.addr, pool, slot + ETH_HLEN, p.data.length, now);
    }
  }

  /** Timer work: ARP retries, refresh probes, failures (run inside an engine pass). */
  tick(now: number): void {
    this.nat?.expire(now);
    this.reasmExpire(now);
    this.neigh.tick(
      now,
      (n, unicastTo) => this.arpRequest(this.ifaces[n.ifIndex], n.addr, unicastTo),
      (n) => {
        for (const p of this.neigh.drain(n)) {
          this.hostUnreachable++;
          const inIf = p.inIf >= 0 ? this.ifaces[p.inIf] : this.ifaces[n.ifIndex];
          this.icmpError(inIf, p.data, 0, p.data.length, ICMP_DEST_UNREACH, 1, 0, now, false);
        }
      },
    );
  }

  /**
   * Expires datagrams whose fragments stopped coming (ip_expire): ICMP time exceeded,
   * fragment reassembly time exceeded, to the source when the first fragment arrived.
   */
  private reasmExpire(now: number): void {
    const r = this.reasm;
    for (let s = r.nextExpired(now); s >= 0; s = r.nextExpired(now)) {
      if (r.expired(s)) {
        this.icmpError(this.ifaces[r.inIfOf(s)], this.pool as Buffer, r.firstIp(s), r.firstFragLen(s), ICMP_TIME_EXCEEDED, 1, 0, now, false);
      }
      r.release(s);
    }
  }

  /**
   * Scratch slots for frames the router writes: returns where the first frame starts
   * (16 bytes into its slot; consecutive slots are SLOT apart), or -1 (and counted) when
   * out. The 12 bytes before each frame are a zeroed virtio-net header (no offload), so
   * a port with offloads can send it as it is.
   */
  private alloc(count = 1): number {
    if (this.scratchUsed + count > this.scratchSlots) {
      this.scratchFull++;
      return -1;
    }
    const base = this.scratchBase + this.scratchUsed * SLOT;
    this.scratchUsed += count;
    const pool = this.pool as Buffer;
    for (let i = 0; i < count; i++) pool.fill(0, base + i * SLOT + 4, base + i * SLOT + 16);
    return base + 16;
  }

  /**
   * The size the packet at `ip` has on a wire: its total length, or for a TSO
   * super-frame (offloads on) the size of the segments the kernel will cut it into.
   */
  private wireLen(buf: Buffer, ip: number, ipLen: number): number {
    if (!this.offload) return ipLen;
    const h = ip - ETH_HLEN - VNET_HDR_LEN;
    if (buf[h + 1] === 0) return ipLen;
    // IP and TCP headers as they are, plus gso_size. (The header's hdr_len is no measure:
    // Linux fills it with the skb's linear length, which may hold payload too.)
    const l4 = ip + ((buf[ip] & 0x0f) << 2);
    if (l4 + 13 > ip + ipLen) return ipLen;
    return l4 - ip + ((buf[l4 + 12] >>> 4) << 2) + buf.readUInt16LE(h + 4);
  }

  /** Offloads on and the packet's L4 checksum is a partial sum the kernel completes. */
  private csumPartial(buf: Buffer, ip: number): boolean {
    return this.offload && (buf[ip - ETH_HLEN - VNET_HDR_LEN] & 1) !== 0;
  }

  // ---------------------------------------------------------------------------
  // Inspection

  routes(): RouteRow[] {
    return this.fib.entries().map((e) => this.routeRow(e.value));
  }

  /** routes() step by step, in the same order (see Fib.walk); null marks a point to pause. */
  *routeWalk(): Generator<RouteRow | null, void, void> {
    for (const e of this.fib.walk()) yield e === null ? null : this.routeRow(e.value);
  }

  private routeRow(id: number): RouteRow {
    const ifc = this.ifaces[this.routeIf[id]];
    const kind = this.routeKind[id];
    return {
      prefix: `${ipToString(this.routePrefix[id])}/${this.routeLen[id]}`,
      via: this.routeGw[id] ? ipToString(this.routeGw[id]) : null,
      dev: ifc.name,
      kind,
      src: kind === "connected" ? ipToString(this.sourceFor(ifc, this.routePrefix[id])) : null,
    };
  }

  neighbours(now: number): NeighbourRow[] {
    return this.neigh.entries().map((n) => this.neighbourRow(n, now));
  }

  /** neighbours() step by step (see NeighbourCache.walk); null marks a point to pause, where the clock is read. */
  *neighbourWalk(clock: () => number): Generator<NeighbourRow | null, void, void> {
    let now = clock();
    for (const n of this.neigh.walk()) {
      if (n === null) {
        yield null;
        now = clock();
      } else yield this.neighbourRow(n, now);
    }
  }

  private neighbourRow(n: Neighbour, now: number): NeighbourRow {
    return {
      address: ipToString(n.addr),
      dev: this.ifaces[n.ifIndex].name,
      mac: n.state === NUD_INCOMPLETE ? null : macToString(n.mac),
      state: NUD_NAMES[n.state],
      age: n.state === NUD_PERMANENT || n.state === NUD_INCOMPLETE ? null : Math.round((now - n.confirmed) / 100) / 10,
      queued: n.queue.length,
      probes: n.probes,
    };
  }

  interfaces(): Array<{ name: string; mac: string; mtu: number; addresses: string[]; proxyArp: boolean; port: string }> {
    return this.ifaces.map((i) => ({
      name: i.name,
      mac: macToString(i.mac),
      mtu: i.mtu,
      addresses: i.addrs.map((a, k) => `${ipToString(a)}/${i.prefixLens[k]}`),
      proxyArp: i.proxyArp,
      port: i.port.name,
    }));
  }

  counters(): Record<RouterCounter, number> {
    const c = {} as Record<RouterCounter, number>;
    for (const k of COUNTERS) c[k] = this[k];
    return c;
  }
}

