/**
 * Nat — connection tracking with source NAT (SNAT / MASQUERADE for pods) and
 * kube-proxy-style service DNAT, as Linux netfilter does them (nf_conntrack +
 * nf_nat, the iptables nat table that kube-proxy and flannel/Calico program).
 *
 * Not an element with ports: the router calls two hooks for every IPv4 packet it
 * forwards, on the packet's bytes in place, one packet at a time:
 *
 *   prerouting(pkt)   before the local-address check and the route lookup (netfilter
 *                     PREROUTING). Tracks the packet; for a new connection to a
 *                     service VIP:port picks a backend and rewrites the destination
 *                     (DNAT); for a reply of a source-NATed connection rewrites the
 *                     destination back to the client (un-SNAT), so a reply addressed
 *                     to the router's own (masquerade) address leaves prerouting
 *                     addressed to the pod and is forwarded, not delivered locally;
 *                     for an ICMP error about a tracked connection rewrites the outer
 *                     destination and the quoted header (RELATED).
 *   postrouting(pkt)  after the route lookup and the TTL decrement, before
 *                     fragmentation (netfilter POSTROUTING). For a new connection
 *                     decides SNAT (a rule for the out interface, or a hairpin: the
 *                     service sent the client to itself) and allocates the source
 *                     port/ICMP identifier (kept when free, else from portRange),
 *                     then confirms the conntrack entry; for an original-direction
 *                     packet of a SNATed connection rewrites the source; for a reply
 *                     of a DNATed connection rewrites the source back to VIP:port.
 *
 * The entry found or made by prerouting is kept in fields for postrouting (no
 * allocation); postrouting checks that it is given the same packet (buffer, offset,
 * addresses) and otherwise leaves the packet alone (counted `mismatch`). A new
 * connection that never reaches postrouting (delivered locally, dropped by the
 * router) is discarded at the next prerouting or expire() (`unconfirmed`).
 *
 * Checksums are updated incrementally (RFC 1624): IPv4 header, TCP/UDP including the
 * pseudo-header (a zero UDP checksum stays zero), ICMP echo identifier, and for ICMP
 * errors the quoted IPv4 header, the quoted TCP/UDP/ICMP checksum (when quoted) and
 * the ICMP checksum over the quote. With `csumPartial` (a TAP frame with
 * VIRTIO_NET_HDR_F_NEEDS_CSUM, Linux CHECKSUM_PARTIAL) the TCP/UDP field holds the
 * pseudo-header seed: addresses move it by +new - old, ports not at all.
 *
 * Verdicts: NAT_ACCEPT; NAT_DROP (counted: drop, portsExhausted, and `invalid`
 * when invalidPolicy is "drop"); NAT_REJECT (a service with no backends: the router
 * answers ICMP port unreachable about the untouched packet, as kube-proxy's REJECT).
 *
 * INVALID (Linux's ctstate): a packet conntrack cannot place — a TCP segment that is
 * not a SYN with no entry, an echo reply with no request, an ICMP error about nothing
 * tracked (or not addressed to the source of what it quotes), a truncated L4 header.
 * Default "accept": passed untouched and counted, as Linux does without a rule;
 * "drop" is kube-proxy's `-m conntrack --ctstate INVALID -j DROP`. Nothing tracked is
 * created for them. Untracked (passed untouched, counted): protocols other than
 * TCP/UDP/ICMP, a fragment (the router reassembles fragments before PREROUTING
 * while NAT is on, as Linux's nf_defrag_ipv4 does before conntrack — see
 * ipv4-reassembly.ts — so only what it could not reassemble, e.g. a fragment handed
 * here directly, is seen as one), ICMP types other than echo and the errors.
 *
 * Router integration (Ipv4Router.ipInput), in this order:
 *   1. header checks, martian source/destination (as now);
 *   2. v = prerouting(buf, ip, ipLen, ifc.index, now): NAT_DROP -> drop (counted
 *      here); NAT_REJECT -> ICMP port unreachable (3/3) about the packet, untouched;
 *   3. only now the local-address check: a reply to the masquerade address has been
 *      un-SNATed to the pod and is forwarded; what stays local (pings to the router)
 *      may call abort(), else its unconfirmed entry goes at the next prerouting;
 *   4. broadcast/multicast drop, TTL check, route lookup, MTU check: an ICMP error
 *      built here about the packet goes through localError() before it is sent;
 *   5. TTL decrement, then postrouting(buf, ip, ipLen, out.index, addr of `out`
 *      toward the next hop, now): NAT_DROP -> drop; then fragmentation and output
 *      (NAT before fragmentation, as Linux's POSTROUTING precedes ip_fragment).
 * Packets the router originates (echo replies, errors) skip both hooks. Errors it
 * builds later about packets already translated (host unreachable after ARP gives
 * up) can be fed through prerouting/postrouting like a received error: the quote is
 * fully translated, so the RELATED lookup finds the connection.
 * Addresses are passed as numbers; `addr | 0` (int32 bits) avoids a HeapNumber per
 * call for addresses >= 128.0.0.0 (see readI32 below); uint32 is accepted too.
 *
 * Config: NatConfig below. Counters (NAT_COUNTERS): connections new (confirmed),
 * dnat, snat (hairpin included), hairpin, clash (port remapped to keep a reply tuple
 * unique without a SNAT rule); packets established (of known connections),
 * translated (of known connections, rewritten), unsnat, undnat, related (ICMP errors
 * matched, localError included); refusals rejected, drop (a new connection refused:
 * the conntrack table was full and held nothing evictable; Linux's conntrack -S
 * `drop`), portsExhausted; earlyDrop (entries evicted to make room for a new
 * connection, Linux's `early_drop`; see conntrack.ts); passed untouched invalid,
 * untracked; unconfirmed (new connections that never reached postrouting), mismatch
 * (postrouting given another packet), reopened (SYN on a TIME_WAIT/CLOSE tuple);
 * expired (entries timed out). Gauges beside them in counters(): entries (in the
 * table), evictable (of those, on the eviction FIFO), maxEntries.
 */
import type { ElementInfo } from "../core/element.js";
import {
  ConnTrack,
  CT_DNAT,
  CT_SNAT,
  MATCH_ANY,
  MATCH_ORIGINAL,
  MATCH_REPLY,
  PROTO_ICMP,
  PROTO_TCP,
  PROTO_UDP,
  TCP_CLOSE,
  TCP_TIME_WAIT,
  type ConnEntryView,
  type ConntrackQuery,
  type Timeouts,
} from "./conntrack.js";
import { readU16, writeU16, writeU32 } from "../wire/bytes.js";
import { checksumFold, checksumUpdate16, checksumUpdate32, partialChecksumUpdate32 } from "../wire/checksum.js";
import { icmpIsError, icmpSetIdentWithChecksumUpdate } from "../wire/icmp.js";
import { ipToString } from "../wire/ipv4addr.js";
import { ipv4Check } from "../wire/ipv4.js";
import { CHECK_OK } from "../wire/reason.js";
import { tcpCheck, tcpUpdateChecksum16, tcpUpdateChecksum32 } from "../wire/tcp.js";
import { udpCheck, udpUpdateChecksum16, udpUpdateChecksum32 } from "../wire/udp.js";

export interface SnatRule {
  /** Connections whose original source is in one of these prefixes. */
  sources: Array<{ addr: number; prefixLen: number }>;
  /** Leaving by this router interface index (-1: any). */
  outIf: number;
  /** Address to translate to; MASQUERADE: the out interface's address. */
  toAddr: number;
  /** Not when the (post-DNAT) destination is in one of these (flannel's `! -d cluster-cidr`). */
  exceptDestinations?: Array<{ addr: number; prefixLen: number }>;
}

export interface Service {
  name: string;
  vip: number;
  proto: 6 | 17;
  port: number;
  backends: Array<{ addr: number; port: number }>;
  algorithm: "random" | "roundrobin";
}

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

export const NAT_ACCEPT = 0;
export const NAT_DROP = 1;
export const NAT_REJECT = 2;

export const NAT_COUNTERS = [
  "new",
  "established",
  "translated",
  "dnat",
  "snat",
  "hairpin",
  "clash",
  "unsnat",
  "undnat",
  "bridgedReplies",
  "related",
  "rejected",
  "drop",
  "earlyDrop",
  "portsExhausted",
  "invalid",
  "untracked",
  "unconfirmed",
  "mismatch",
  "reopened",
  "expired",
] as const;
export type NatCounter = (typeof NAT_COUNTERS)[number];

export interface ServiceView {
  name: string;
  vip: string;
  proto: "tcp" | "udp";
  port: number;
  backends: string[];
  algorithm: "random" | "roundrobin";
  /** Live conntrack entries per backend (same order as `backends`). */
  connections: number[];
}

const NIL = -1;
const TCP_SYN = 0x02;
const TCP_FLAGS_NEW_MASK = 0x17; // FIN | SYN | RST | ACK
const ICMP_ECHO_REPLY = 0;
const ICMP_ECHO_REQUEST = 8;
/** Linux nf_nat: attempts in the first round of a port search, then halved (NF_NAT_MAX_ATTEMPTS). */
const PORT_ATTEMPTS = 128;

const CTX_NONE = 0;
const CTX_NEW = 1;
const CTX_EXISTING = 2;
const CTX_RELATED = 3;

function maskOf(prefixLen: number): number {
  return prefixLen === 0 ? 0 : (0xffffffff << (32 - prefixLen)) >>> 0;
}

function checkPrefix(what: string, p: { addr: number; prefixLen: number }): void {
  if (!Number.isInteger(p.prefixLen) || p.prefixLen < 0 || p.prefixLen > 32) {
    throw new Error(`${what}: prefix length must be an integer 0-32, got ${String(p.prefixLen)}`);
  }
  if (!Number.isInteger(p.addr) || p.addr < 0 || p.addr > 0xffffffff) {
    throw new Error(`${what}: address must be a uint32, got ${String(p.addr)}`);
  }
}

function checkPort(what: string, port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`${what}: port must be an integer 1-65535, got ${String(port)}`);
  }
}

// -----------------------------------------------------------------------------
// In-place rewrites with incremental checksum updates. Plain functions: no closures.
//
// Addresses travel as signed int32 bits (`| 0`), not as the wire module's uint32: in
// V8 an int32 is a Smi, while a uint32 above 2^31 (every address from 128.0.0.0 on)
// becomes a HeapNumber each time it is passed to a function that is not inlined,
// which measured one allocation per packet per such address. The wire checksum
// helpers take either form (they only shift and mask).

/** An IPv4 address at `off` as int32 bits. */
function readI32(buf: Buffer, off: number): number {
  return (buf[off] << 24) | (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3];
}

/** Sets the IPv4 source (12) or destination (16) address, header checksum updated (RFC 1624). */
function setIpAddr(buf: Buffer, ip: number, fieldOff: number, oldA: number, addr: number): void {
  writeU32(buf, ip + fieldOff, addr);
  writeU16(buf, ip + 10, checksumUpdate32(readU16(buf, ip + 10), oldA, addr));
}

/** TCP/UDP checksum after an address of the pseudo-header changed. */
function l4AddrChanged(buf: Buffer, l4: number, proto: number, oldA: number, newA: number, partial: boolean): void {
  if (proto === PROTO_TCP) {
    if (partial) writeU16(buf, l4 + 16, partialChecksumUpdate32(readU16(buf, l4 + 16), oldA, newA));
    else tcpUpdateChecksum32(buf, l4, oldA, newA);
  } else if (proto === PROTO_UDP) {
    if (partial) writeU16(buf, l4 + 6, partialChecksumUpdate32(readU16(buf, l4 + 6), oldA, newA));
    else udpUpdateChecksum32(buf, l4, oldA, newA);
  }
}

/** Rewrites the source (src: true) or destination address and port / ICMP identifier. */
function rewrite(buf: Buffer, ip: number, l4: number, proto: number, src: boolean, addr: number, port: number, partial: boolean): void {
  const fieldOff = src ? 12 : 16;
  const oldA = readI32(buf, ip + fieldOff);
  if (oldA !== addr) {
    setIpAddr(buf, ip, fieldOff, oldA, addr);
    l4AddrChanged(buf, l4, proto, oldA, addr, partial);
  }
  if (proto === PROTO_ICMP) {
    if (readU16(buf, l4 + 4) !== port) icmpSetIdentWithChecksumUpdate(buf, l4, port);
    return;
  }
  const pOff = l4 + (src ? 0 : 2);
  const oldP = readU16(buf, pOff);
  if (oldP === port) return;
  writeU16(buf, pOff, port);
  // With a partial checksum the ports are summed by the device, not in the seed.
  if (partial) return;
  if (proto === PROTO_TCP) tcpUpdateChecksum16(buf, l4, oldP, port);
  else udpUpdateChecksum16(buf, l4, oldP, port);
}

/** Rewrites the outer address of an ICMP error (header checksum only: ICMP has no pseudo-header). */
function rewriteOuterAddr(buf: Buffer, ip: number, src: boolean, addr: number): void {
  const fieldOff = src ? 12 : 16;
  const oldA = readI32(buf, ip + fieldOff);
  if (oldA !== addr) setIpAddr(buf, ip, fieldOff, oldA, addr);
}

/** ~old + new for one 16-bit word (a term of RFC 1624 eqn. 3). */
function delta16(oldV: number, newV: number): number {
  return (~oldV & 0xffff) + (newV & 0xffff);
}

/**
 * Rewrites a 16-bit checksum field at `off` after a covered value changed, and returns
 * the delta of the field itself (it lies inside the ICMP message too).
 */
function innerCsum(buf: Buffer, off: number, oldV: number, newV: number, wide: boolean, udp: boolean): number {
  const oc = readU16(buf, off);
  if (udp && oc === 0) return 0; // no checksum
  let nc = wide ? checksumUpdate32(oc, oldV, newV) : checksumUpdate16(oc, oldV, newV);
  if (udp && nc === 0) nc = 0xffff;
  writeU16(buf, off, nc);
  return delta16(oc, nc);
}

/**
 * Rewrites the source or destination of the datagram quoted in an ICMP error at
 * `icmp` (quoted IPv4 header at `inner`, its transport header at `l4` with `l4Avail`
 * bytes quoted), keeping every checksum right: the quoted IPv4 header checksum, the
 * quoted TCP/UDP/ICMP checksum when it is in the quote, and the ICMP error's own
 * checksum over the changed words (all at even offsets from `icmp`).
 */
function rewriteInner(
  buf: Buffer,
  icmp: number,
  inner: number,
  l4: number,
  l4Avail: number,
  proto: number,
  src: boolean,
  addr: number,
  port: number,
): void {
  let acc = 0;
  const aOff = inner + (src ? 12 : 16);
  const oldA = readI32(buf, aOff);
  if (oldA !== addr) {
    writeU32(buf, aOff, addr);
    acc += delta16(oldA >>> 16, addr >>> 16) + delta16(oldA & 0xffff, addr & 0xffff);
    acc += innerCsum(buf, inner + 10, oldA, addr, true, false);
    if (proto === PROTO_TCP && l4Avail >= 18) acc += innerCsum(buf, l4 + 16, oldA, addr, true, false);
    else if (proto === PROTO_UDP) acc += innerCsum(buf, l4 + 6, oldA, addr, true, true);
  }
  const pOff = proto === PROTO_ICMP ? l4 + 4 : l4 + (src ? 0 : 2);
  const oldP = readU16(buf, pOff);
  if (oldP !== port) {
    writeU16(buf, pOff, port);
    acc += delta16(oldP, port);
    if (proto === PROTO_TCP) {
      if (l4Avail >= 18) acc += innerCsum(buf, l4 + 16, oldP, port, false, false);
    } else if (proto === PROTO_UDP) acc += innerCsum(buf, l4 + 6, oldP, port, false, true);
    else acc += innerCsum(buf, l4 + 2, oldP, port, false, false);
  }
  if (acc === 0) return;
  const hc = readU16(buf, icmp + 2);
  writeU16(buf, icmp + 2, ~checksumFold((~hc & 0xffff) + acc) & 0xffff);
}

// -----------------------------------------------------------------------------

export class Nat {
  readonly kind = "Nat";
  readonly name = "nat";
  readonly ct: ConnTrack;
  private readonly rng: () => number;
  private readonly portLo: number;
  private readonly portHi: number;
  private readonly invalidDrop: boolean;

  // SNAT rules, flattened.
  private ruleOutIf = new Int32Array(0);
  private ruleTo = new Int32Array(0);
  private ruleSrcStart = new Int32Array(0);
  private ruleSrcEnd = new Int32Array(0);
  private ruleExStart = new Int32Array(0);
  private ruleExEnd = new Int32Array(0);
  private srcNet = new Int32Array(0);
  private srcMask = new Int32Array(0);

  // Services: open addressing on (proto, vip, port), backends flattened.
  private svcList: Service[] = [];
  private svcSlots = new Int32Array(0);
  private svcSlotMask = 0;
  private svcVip = new Int32Array(0);
  private svcPP = new Int32Array(0);
  private svcBackStart = new Int32Array(0);
  private svcBackCount = new Int32Array(0);
  private svcRandom = new Uint8Array(0);
  private svcRr = new Int32Array(0);
  private backAddr = new Int32Array(0);
  private backPort = new Uint16Array(0);

  // The packet between prerouting and postrouting.
  private ctxKind = CTX_NONE;
  private ctxEntry = NIL;
  private ctxDir = 0;
  private ctxBuf: Buffer | null = null;
  private ctxOff = -1;
  private ctxSrc = 0;
  private ctxDst = 0;
  private ctxInner = 0;
  private ctxTranslated = false;
  /** A new entry waiting for postrouting to confirm it. */
  private pending = NIL;

  newConns = 0;
  established = 0;
  translated = 0;
  dnat = 0;
  snat = 0;
  hairpin = 0;
  clash = 0;
  unsnat = 0;
  undnat = 0;
  bridgedReplies = 0;
  related = 0;
  rejected = 0;
  drop = 0;
  portsExhausted = 0;
  invalid = 0;
  untracked = 0;
  unconfirmed = 0;
  mismatch = 0;
  reopened = 0;

  constructor(cfg: NatConfig, rng: () => number = Math.random) {
    this.ct = new ConnTrack({ maxEntries: cfg.maxEntries, timeouts: cfg.timeouts, seed: cfg.hashSeed });
    this.rng = rng;
    const [lo, hi] = cfg.portRange ?? [32768, 60999];
    checkPort("NAT portRange", lo);
    checkPort("NAT portRange", hi);
    if (lo > hi) throw new Error(`NAT portRange: ${lo} > ${hi}`);
    this.portLo = lo;
    this.portHi = hi;
    const pol = cfg.invalidPolicy ?? "accept";
    if (pol !== "accept" && pol !== "drop") throw new Error(`NAT invalidPolicy must be "accept" or "drop", got ${String(pol)}`);
    this.invalidDrop = pol === "drop";
    this.setSnatRules(cfg.snat);
    this.setServices(cfg.services);
  }

  // ---------------------------------------------------------------------------
  // Configuration (not the hot path)

  /** Replaces the SNAT rules. Existing connections keep their translation. */
  setSnatRules(rules: SnatRule[]): void {
    const n = rules.length;
    const outIf = new Int32Array(n);
    const to = new Int32Array(n);
    const ss = new Int32Array(n);
    const se = new Int32Array(n);
    const es = new Int32Array(n);
    const ee = new Int32Array(n);
    const nets: number[] = [];
    const masks: number[] = [];
    rules.forEach((r, i) => {
      if (!Number.isInteger(r.outIf) || r.outIf < -1) throw new Error(`SNAT rule ${i}: outIf must be an interface index or -1`);
      if (!Number.isInteger(r.toAddr) || r.toAddr <= 0 || r.toAddr > 0xffffffff) {
        throw new Error(`SNAT rule ${i}: toAddr must be a non-zero IPv4 address`);
      }
      if (r.sources.length === 0) throw new Error(`SNAT rule ${i}: no sources`);
      outIf[i] = r.outIf;
      to[i] = r.toAddr | 0;
      ss[i] = nets.length;
      for (const s of r.sources) {
        checkPrefix(`SNAT rule ${i} source`, s);
        const m = maskOf(s.prefixLen);
        nets.push(s.addr & m);
        masks.push(m | 0);
      }
      se[i] = nets.length;
      es[i] = nets.length;
      for (const x of r.exceptDestinations ?? []) {
        checkPrefix(`SNAT rule ${i} exceptDestinations`, x);
        const m = maskOf(x.prefixLen);
        nets.push(x.addr & m);
        masks.push(m | 0);
      }
      ee[i] = nets.length;
    });
    this.ruleOutIf = outIf;
    this.ruleTo = to;
    this.ruleSrcStart = ss;
    this.ruleSrcEnd = se;
    this.ruleExStart = es;
    this.ruleExEnd = ee;
    this.srcNet = Int32Array.from(nets);
    this.srcMask = Int32Array.from(masks);
  }

  /**
   * Replaces the services (kube-proxy resyncing endpoints). Existing connections
   * keep their backend until they end, as Linux conntrack entries do.
   */
  setServices(services: Service[]): void {
    const n = services.length;
    let nb = 0;
    const seen = new Set<string>();
    for (const s of services) {
      if (s.proto !== 6 && s.proto !== 17) throw new Error(`service ${s.name}: proto must be 6 (tcp) or 17 (udp)`);
      checkPort(`service ${s.name}`, s.port);
      checkPrefix(`service ${s.name} vip`, { addr: s.vip, prefixLen: 32 });
      if (s.algorithm !== "random" && s.algorithm !== "roundrobin") {
        throw new Error(`service ${s.name}: algorithm must be "random" or "roundrobin"`);
      }
      const key = `${s.proto}/${s.vip >>> 0}/${s.port}`;
      if (seen.has(key)) throw new Error(`service ${s.name}: ${ipToString(s.vip)}:${s.port}/${s.proto} is defined twice`);
      seen.add(key);
      for (const b of s.backends) {
        checkPrefix(`service ${s.name} backend`, { addr: b.addr, prefixLen: 32 });
        checkPort(`service ${s.name} backend ${ipToString(b.addr)}`, b.port);
      }
      nb += s.backends.length;
    }
    let size = 8;
    while (size < 2 * n) size <<= 1;
    const slots = new Int32Array(size).fill(NIL);
    const vip = new Int32Array(n);
    const pp = new Int32Array(n);
    const bs = new Int32Array(n);
    const bc = new Int32Array(n);
    const rnd = new Uint8Array(n);
    const ba = new Int32Array(nb);
    const bp = new Uint16Array(nb);
    let k = 0;
    services.forEach((s, i) => {
      vip[i] = s.vip | 0;
      pp[i] = (s.proto << 16) | s.port;
      bs[i] = k;
      bc[i] = s.backends.length;
      rnd[i] = s.algorithm === "random" ? 1 : 0;
      for (const b of s.backends) {
        ba[k] = b.addr | 0;
        bp[k] = b.port;
        k++;
      }
      let h = this.svcHash(vip[i], pp[i]) & (size - 1);
      while (slots[h] !== NIL) h = (h + 1) & (size - 1);
      slots[h] = i;
    });
    this.svcList = services.map((s) => ({ ...s, backends: s.backends.map((b) => ({ ...b })) }));
    this.svcSlots = slots;
    this.svcSlotMask = size - 1;
    this.svcVip = vip;
    this.svcPP = pp;
    this.svcBackStart = bs;
    this.svcBackCount = bc;
    this.svcRandom = rnd;
    this.svcRr = new Int32Array(n);
    this.backAddr = ba;
    this.backPort = bp;
  }

  private svcHash(vip: number, pp: number): number {
    let h = Math.imul(vip, 0x9e3779b1) ^ Math.imul(pp, 0x85ebca6b);
    h ^= h >>> 15;
    return Math.imul(h, 0xc2b2ae35) ^ (h >>> 13);
  }

  /** Service index for (proto, vip, port), or -1. */
  private findService(proto: number, vip: number, port: number): number {
    const pp = (proto << 16) | port;
    const mask = this.svcSlotMask;
    let h = this.svcHash(vip, pp) & mask;
    for (;;) {
      const s = this.svcSlots[h];
      if (s === NIL) return NIL;
      if (this.svcVip[s] === vip && this.svcPP[s] === pp) return s;
      h = (h + 1) & mask;
    }
  }

  // ---------------------------------------------------------------------------
  // Hooks

  /**
   * Before the route lookup: track, DNAT new connections to services, un-SNAT
   * replies, translate related ICMP errors. See the file comment.
   */
  prerouting(buf: Buffer, ipOff: number, ipLen: number, inIf: number, now: number, csumPartial = false): number {
    void inIf;
    this.clearContext();
    if (ipv4Check(buf, ipOff, ipLen, false) !== CHECK_OK) return this.invalidVerdict();
    if ((readU16(buf, ipOff + 6) & 0x3fff) !== 0) {
      this.untracked++;
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
    if (proto === PROTO_TCP) {
      if (tcpCheck(buf, l4, l4Len, 0, 0, false) !== CHECK_OK) return this.invalidVerdict();
      sport = readU16(buf, l4);
      dport = readU16(buf, l4 + 2);
      flags = buf[l4 + 13];
    } else if (proto === PROTO_UDP) {
      if (udpCheck(buf, l4, l4Len, 0, 0, false) !== CHECK_OK) return this.invalidVerdict();
      sport = readU16(buf, l4);
      dport = readU16(buf, l4 + 2);
    } else if (proto === PROTO_ICMP) {
      if (l4Len < 8) return this.invalidVerdict();
      const type = buf[l4];
      if (type === ICMP_ECHO_REQUEST || type === ICMP_ECHO_REPLY) {
        sport = dport = readU16(buf, l4 + 4);
        mask = type === ICMP_ECHO_REQUEST ? MATCH_ORIGINAL : MATCH_REPLY;
      } else if (icmpIsError(type)) {
        return this.relatedIn(buf, ipOff, l4, l4Len, dst, now);
      } else {
        this.untracked++;
        return NAT_ACCEPT;
      }
    } else {
      this.untracked++;
      return NAT_ACCEPT;
    }

    const ct = this.ct;
    let t = ct.find(proto, src, sport, dst, dport, mask, now);
    if (t >= 0 && proto === PROTO_TCP && (t & 1) === 0 && (flags & TCP_FLAGS_NEW_MASK) === TCP_SYN) {
      // A new SYN on a closed connection's tuple: the client reuses its port. Linux
      // drops the old entry and tracks (and NATs) a new connection.
      const st = ct.state[t >> 1];
      if (st === TCP_TIME_WAIT || st === TCP_CLOSE) {
        ct.remove(t >> 1);
        this.reopened++;
        t = NIL;
      }
    }
    if (t >= 0) {
      const e = t >> 1;
      const d = t & 1;
      ct.track(e, d, flags, totalLen, now);
      this.established++;
      const o = 2 * e + 1 - d;
      // DST manip: an original packet of a DNATed connection goes to the backend; a
      // reply of a SNATed one to the client. The packet becomes the inverse of the
      // other direction's tuple.
      if ((ct.status[e] & (d === 0 ? CT_DNAT : CT_SNAT)) !== 0) {
        rewrite(buf, ipOff, l4, proto, false, ct.tSrc[o], ct.tSport[o], csumPartial);
        if (d === 1) this.unsnat++;
        this.ctxTranslated = true;
      }
      this.setContext(CTX_EXISTING, e, d, buf, ipOff);
      return NAT_ACCEPT;
    }

    // A new connection.
    if (proto === PROTO_TCP && (flags & TCP_FLAGS_NEW_MASK) !== TCP_SYN) return this.invalidVerdict();
    if (mask === MATCH_REPLY) return this.invalidVerdict(); // echo reply without a request
    let svc = NIL;
    if (proto !== PROTO_ICMP) {
      svc = this.findService(proto, dst, dport);
      if (svc >= 0 && this.svcBackCount[svc] === 0) {
        this.rejected++;
        return NAT_REJECT;
      }
    }
    const e = ct.alloc(proto, now);
    if (e < 0) {
      this.drop++;
      return NAT_DROP;
    }
    let rSrc = dst;
    let rSport = dport;
    if (svc >= 0) {
      const n = this.svcBackCount[svc];
      let k: number;
      if (this.svcRandom[svc] === 1) {
        k = Math.floor(this.rng() * n);
        if (!(k >= 0 && k < n)) k = 0;
      } else {
        k = this.svcRr[svc];
        this.svcRr[svc] = k + 1 === n ? 0 : k + 1;
      }
      const b = this.svcBackStart[svc] + k;
      rSrc = this.backAddr[b];
      rSport = this.backPort[b];
      ct.status[e] = CT_DNAT;
      this.dnat++;
    }
    ct.setTuple(e, 0, src, sport, dst, dport);
    ct.setTuple(e, 1, rSrc, rSport, src, sport);
    ct.track(e, 0, flags, totalLen, now);
    if (svc >= 0) rewrite(buf, ipOff, l4, proto, false, rSrc, rSport, csumPartial);
    this.pending = e;
    this.setContext(CTX_NEW, e, 0, buf, ipOff);
    return NAT_ACCEPT;
  }

  /**
   * After the route lookup (and TTL decrement), before fragmentation, for the packet
   * prerouting saw last. `hairpinAddr`: the address of the interface the packet
   * leaves by (the masquerade source for a hairpin connection).
   */
  postrouting(
    buf: Buffer,
    ipOff: number,
    ipLen: number,
    outIf: number,
    hairpinAddr: number,
    now: number,
    csumPartial = false,
  ): number {
    void ipLen;
    const kind = this.ctxKind;
    if (kind === CTX_NONE) return NAT_ACCEPT;
    const e = this.ctxEntry;
    const d = this.ctxDir;
    const translated = this.ctxTranslated;
    const same =
      buf === this.ctxBuf &&
      ipOff === this.ctxOff &&
      readI32(buf, ipOff + 12) === this.ctxSrc &&
      readI32(buf, ipOff + 16) === this.ctxDst;
    const inner = this.ctxInner;
    this.ctxKind = CTX_NONE;
    this.ctxBuf = null;
    if (!same) {
      // Not the packet prerouting saw (the router's own reply built in place, say).
      this.mismatch++;
      this.dropPending();
      return NAT_ACCEPT;
    }
    const ct = this.ct;
    const l4 = ipOff + ((buf[ipOff] & 0x0f) << 2);
    const proto = ct.proto[e];
    if (kind === CTX_RELATED) {
      // SRC manip of an error travelling in direction d: outer source and quoted
      // destination become the other direction's (Linux nf_nat_icmp_reply_translation).
      if ((ct.status[e] & (d === 0 ? CT_SNAT : CT_DNAT)) !== 0) {
        const o = 2 * e + 1 - d;
        const il4 = inner + ((buf[inner] & 0x0f) << 2);
        const il4Avail = ipOff + readU16(buf, ipOff + 2) - il4;
        rewriteInner(buf, l4, inner, il4, il4Avail, proto, false, ct.tDst[o], ct.tDport[o]);
        rewriteOuterAddr(buf, ipOff, true, ct.tDst[o]);
      }
      return NAT_ACCEPT;
    }
    if (kind === CTX_NEW) {
      this.pending = NIL;
      if (!this.bindSource(e, outIf, hairpinAddr | 0, now)) {
        ct.release(e);
        return NAT_DROP;
      }
      ct.confirm(e);
      this.newConns++;
      if ((ct.status[e] & CT_SNAT) !== 0) {
        const r = 2 * e + 1;
        rewrite(buf, ipOff, l4, proto, true, ct.tDst[r], ct.tDport[r], csumPartial);
      }
      return NAT_ACCEPT;
    }
    // SRC manip: an original packet of a SNATed connection leaves from the NAT
    // address; a reply of a DNATed one from VIP:port.
    if ((ct.status[e] & (d === 0 ? CT_SNAT : CT_DNAT)) !== 0) {
      const o = 2 * e + 1 - d;
      rewrite(buf, ipOff, l4, proto, true, ct.tDst[o], ct.tDport[o], csumPartial);
      if (d === 1) this.undnat++;
      this.translated++;
    } else if (translated) {
      this.translated++;
    }
    return NAT_ACCEPT;
  }

  /**
   * What br_netfilter does for kube-proxy on a bridge: a backend's reply to a client
   * on the same segment is bridged by the switch, never routed, so the switch hands
   * it here. A reply of a DNATed connection gets its source put back to VIP:port and
   * the connection's state advances; anything else is left alone (no new entries are
   * made for bridged traffic). Returns true when it rewrote the packet.
   */
  bridged(buf: Buffer, ipOff: number, ipLen: number, now: number, csumPartial = false): boolean {
    if (ipLen < 20 || ipv4Check(buf, ipOff, ipLen, false) !== CHECK_OK) return false;
    if ((readU16(buf, ipOff + 6) & 0x3fff) !== 0) return false;
    const proto = buf[ipOff + 9];
    if (proto !== PROTO_TCP && proto !== PROTO_UDP) return false;
    const ihl = (buf[ipOff] & 0x0f) << 2;
    const l4 = ipOff + ihl;
    const l4Len = readU16(buf, ipOff + 2) - ihl;
    if (l4Len < (proto === PROTO_TCP ? 20 : 8)) return false;
    const ct = this.ct;
    const t = ct.find(proto, readI32(buf, ipOff + 12), readU16(buf, l4), readI32(buf, ipOff + 16), readU16(buf, l4 + 2), MATCH_REPLY, now);
    if (t < 0 || (t & 1) !== 1) return false;
    const e = t >> 1;
    if ((ct.status[e] & CT_DNAT) === 0) return false;
    ct.track(e, 1, proto === PROTO_TCP ? buf[l4 + 13] : 0, readU16(buf, ipOff + 2), now);
    const o = 2 * e;
    rewrite(buf, ipOff, l4, proto, true, ct.tDst[o], ct.tDport[o], csumPartial);
    this.undnat++;
    this.translated++;
    this.bridgedReplies++;
    return true;
  }

  /**
   * For an ICMP error the router itself builds about the packet between prerouting
   * and postrouting (TTL exceeded, no route, fragmentation needed): makes the quote
   * show the packet as its sender sent it (undoing the DNAT / un-SNAT prerouting did)
   * and, like Linux, makes the error come from the address the sender talks to when
   * that address was translated (the VIP, the masquerade address). `ipOff`/`ipLen`:
   * the error datagram. Does nothing without such a packet or for a malformed error.
   */
  localError(buf: Buffer, ipOff: number, ipLen: number): void {
    const kind = this.ctxKind;
    if (kind !== CTX_NEW && kind !== CTX_EXISTING) return;
    if (ipv4Check(buf, ipOff, ipLen, false) !== CHECK_OK || buf[ipOff + 9] !== PROTO_ICMP) return;
    const icmp = ipOff + ((buf[ipOff] & 0x0f) << 2);
    const icmpLen = ipOff + readU16(buf, ipOff + 2) - icmp;
    if (icmpLen < 8 + 20 || !icmpIsError(buf[icmp])) return;
    const inner = icmp + 8;
    const avail = icmpLen - 8;
    const ihl2 = (buf[inner] & 0x0f) << 2;
    if (buf[inner] >>> 4 !== 4 || ihl2 < 20 || ihl2 + 8 > avail) return;
    const ct = this.ct;
    const e = this.ctxEntry;
    const d = this.ctxDir;
    const proto = ct.proto[e];
    if (buf[inner + 9] !== proto) return;
    const il4 = inner + ihl2;
    const t = 2 * e + d;
    rewriteInner(buf, icmp, inner, il4, avail - ihl2, proto, true, ct.tSrc[t], ct.tSport[t]);
    rewriteInner(buf, icmp, inner, il4, avail - ihl2, proto, false, ct.tDst[t], ct.tDport[t]);
    rewriteOuterAddr(buf, ipOff, false, ct.tSrc[t]);
    if ((ct.status[e] & (d === 0 ? CT_DNAT : CT_SNAT)) !== 0) rewriteOuterAddr(buf, ipOff, true, ct.tDst[t]);
    this.related++;
  }

  /** Drops the context of a packet the router will not pass to postrouting. */
  abort(): void {
    this.clearContext();
  }

  // ---------------------------------------------------------------------------
  // Internals

  private invalidVerdict(): number {
    this.invalid++;
    return this.invalidDrop ? NAT_DROP : NAT_ACCEPT;
  }

  private setContext(kind: number, e: number, d: number, buf: Buffer, ipOff: number): void {
    this.ctxKind = kind;
    this.ctxEntry = e;
    this.ctxDir = d;
    this.ctxBuf = buf;
    this.ctxOff = ipOff;
    this.ctxSrc = readI32(buf, ipOff + 12);
    this.ctxDst = readI32(buf, ipOff + 16);
  }

  private clearContext(): void {
    this.ctxKind = CTX_NONE;
    this.ctxBuf = null;
    this.ctxTranslated = false;
    this.dropPending();
  }

  private dropPending(): void {
    if (this.pending !== NIL) {
      this.ct.release(this.pending);
      this.pending = NIL;
      this.unconfirmed++;
    }
  }

  /** An ICMP error in prerouting: find the connection its quote belongs to. */
  private relatedIn(buf: Buffer, ipOff: number, icmp: number, icmpLen: number, outerDst: number, now: number): number {
    if (icmpLen < 8 + 20) return this.invalidVerdict();
    const inner = icmp + 8;
    const avail = icmpLen - 8;
    const ihl2 = (buf[inner] & 0x0f) << 2;
    if (buf[inner] >>> 4 !== 4 || ihl2 < 20 || ihl2 + 8 > avail) return this.invalidVerdict();
    if ((readU16(buf, inner + 6) & 0x1fff) !== 0) {
      // About a later fragment: no ports quoted.
      this.untracked++;
      return NAT_ACCEPT;
    }
    const proto = buf[inner + 9];
    const il4 = inner + ihl2;
    const isrc = readI32(buf, inner + 12);
    const idst = readI32(buf, inner + 16);
    // An error goes to the source of the datagram it quotes (nf_conntrack_inet_error).
    if (isrc !== outerDst) return this.invalidVerdict();
    let is: number;
    let id: number;
    let mask = MATCH_ANY;
    if (proto === PROTO_TCP || proto === PROTO_UDP) {
      is = readU16(buf, il4);
      id = readU16(buf, il4 + 2);
    } else if (proto === PROTO_ICMP) {
      const type = buf[il4];
      // The quote is the other direction's packet: a quoted request inverts to a reply tuple.
      if (type === ICMP_ECHO_REQUEST) mask = MATCH_REPLY;
      else if (type === ICMP_ECHO_REPLY) mask = MATCH_ORIGINAL;
      else return this.invalidVerdict();
      is = id = readU16(buf, il4 + 4);
    } else {
      this.untracked++;
      return NAT_ACCEPT;
    }
    const ct = this.ct;
    const t = ct.find(proto, idst, id, isrc, is, mask, now);
    if (t < 0) return this.invalidVerdict();
    const e = t >> 1;
    const d = t & 1;
    this.related++;
    // DST manip of an error travelling in direction d: outer destination and quoted
    // source become the other direction's.
    if ((ct.status[e] & (d === 0 ? CT_DNAT : CT_SNAT)) !== 0) {
      const o = 2 * e + 1 - d;
      rewriteInner(buf, icmp, inner, il4, avail - ihl2, proto, true, ct.tSrc[o], ct.tSport[o]);
      rewriteOuterAddr(buf, ipOff, false, ct.tSrc[o]);
    }
    this.setContext(CTX_RELATED, e, d, buf, ipOff);
    this.ctxInner = inner;
    return NAT_ACCEPT;
  }

  /** The SNAT rule's address for a connection from `src` to `dst` leaving by `outIf`, or 0. */
  private matchSnat(src: number, dst: number, outIf: number): number {
    const n = this.ruleOutIf.length;
    for (let r = 0; r < n; r++) {
      const oi = this.ruleOutIf[r];
      if (oi !== -1 && oi !== outIf) continue;
      let hit = false;
      for (let k = this.ruleSrcStart[r]; k < this.ruleSrcEnd[r]; k++) {
        if ((src & this.srcMask[k]) === this.srcNet[k]) {
          hit = true;
          break;
        }
      }
      if (!hit) continue;
      for (let k = this.ruleExStart[r]; k < this.ruleExEnd[r]; k++) {
        if ((dst & this.srcMask[k]) === this.srcNet[k]) {
          hit = false;
          break;
        }
      }
      if (hit) return this.ruleTo[r];
    }
    return 0;
  }

  /**
   * Decides the source side of the reply tuple of pending entry `e`: SNAT by rule or
   * hairpin, or, without SNAT, a port remap when the plain reply tuple is taken
   * (netfilter's null binding keeps tuples unique). False when no port is free.
   */
  private bindSource(e: number, outIf: number, hairpinAddr: number, now: number): boolean {
    const ct = this.ct;
    const o = 2 * e;
    const r = o + 1;
    const proto = ct.proto[e];
    const origSrc = ct.tSrc[o];
    const origSport = ct.tSport[o];
    const rSrc = ct.tSrc[r];
    const rSport = ct.tSport[r];
    let natAddr = 0;
    let hair = false;
    if ((ct.status[e] & CT_DNAT) !== 0 && rSrc === origSrc && hairpinAddr !== 0) {
      // The service sent the client to itself: without masquerade the backend would
      // answer itself directly and the reply would never be un-DNATed.
      natAddr = hairpinAddr;
      hair = true;
    } else {
      natAddr = this.matchSnat(origSrc, rSrc, outIf);
    }
    if (natAddr === 0) {
      if (!this.portTaken(proto, rSrc, rSport, origSrc, origSport, now)) return true;
      natAddr = origSrc;
      this.clash++;
    }
    const port = this.pickPort(proto, rSrc, rSport, natAddr, origSport, now);
    if (port < 0) {
      this.portsExhausted++;
      return false;
    }
    ct.setTuple(e, 1, rSrc, proto === PROTO_ICMP ? port : rSport, natAddr, port);
    ct.status[e] |= CT_SNAT;
    if (natAddr !== origSrc || hair) {
      this.snat++;
      if (hair) this.hairpin++;
    }
    return true;
  }

  /** Is the reply tuple (rSrc:rSport -> natAddr:port) in use? ICMP: both ids are `port`. */
  private portTaken(proto: number, rSrc: number, rSport: number, natAddr: number, port: number, now: number): boolean {
    if (proto === PROTO_ICMP) return this.ct.taken(proto, rSrc, port, natAddr, port, MATCH_REPLY, now);
    return this.ct.taken(proto, rSrc, rSport, natAddr, port, MATCH_ANY, now);
  }

  /**
   * A source port (ICMP identifier) for the reply tuple: `keep` when free, else a
   * search of the range like Linux nf_nat_l4proto_unique_tuple: ports below 512 map
   * into 1..511 and below 1024 into 600..1023 (privileged stays privileged); others
   * into portRange; ICMP identifiers into 0..65535. Rounds of 128, 64, 32, 16 tries
   * from random offsets (the whole range when it is small). -1 when none is free.
   */
  private pickPort(proto: number, rSrc: number, rSport: number, natAddr: number, keep: number, now: number): number {
    if (!this.portTaken(proto, rSrc, rSport, natAddr, keep, now)) return keep;
    let lo: number;
    let hi: number;
    if (proto === PROTO_ICMP) {
      lo = 0;
      hi = 65535;
    } else if (keep < 512) {
      lo = 1;
      hi = 511;
    } else if (keep < 1024) {
      lo = 600;
      hi = 1023;
    } else {
      lo = this.portLo;
      hi = this.portHi;
    }
    const size = hi - lo + 1;
    let attempts = size < PORT_ATTEMPTS ? size : PORT_ATTEMPTS;
    let off = Math.floor(this.rng() * size) | 0;
    for (;;) {
      for (let i = 0; i < attempts; i++) {
        const p = lo + ((off + i) % size);
        if (!this.portTaken(proto, rSrc, rSport, natAddr, p, now)) return p;
      }
      if (attempts >= size || attempts < 16) return NIL;
      attempts >>= 1;
      off = Math.floor(this.rng() * size) | 0;
    }
  }

  // ---------------------------------------------------------------------------
  // Timer and inspection

  /** Removes timed-out entries (and a pending entry left by a packet that never reached postrouting). */
  expire(now: number): number {
    this.clearContext();
    return this.ct.expire(now);
  }

  conntrackEntries(now: number): ConnEntryView[] {
    return this.ct.entries(now);
  }

  /** A resumable listing of the table (see ConnTrack.walk). */
  conntrackWalk(q: ConntrackQuery, clock: () => number): Generator<string | null, { matched: number }, void> {
    return this.ct.walk(q, clock);
  }

  services(now = Number.NEGATIVE_INFINITY): ServiceView[] {
    const counts = this.svcList.map((s) => new Array<number>(s.backends.length).fill(0));
    const ct = this.ct;
    ct.forEachLive(now, (e) => {
      if ((ct.status[e] & CT_DNAT) === 0) return;
      const o = 2 * e;
      const s = this.findService(ct.proto[e], ct.tDst[o], ct.tDport[o]);
      if (s < 0) return;
      const r = o + 1;
      const start = this.svcBackStart[s];
      for (let k = 0; k < this.svcBackCount[s]; k++) {
        if (this.backAddr[start + k] === ct.tSrc[r] && this.backPort[start + k] === ct.tSport[r]) {
          counts[s][k]++;
          break;
        }
      }
    });
    return this.svcList.map((s, i) => ({
      name: s.name,
      vip: ipToString(s.vip >>> 0),
      proto: s.proto === 6 ? ("tcp" as const) : ("udp" as const),
      port: s.port,
      backends: s.backends.map((b) => `${ipToString(b.addr >>> 0)}:${b.port}`),
      algorithm: s.algorithm,
      connections: counts[i],
    }));
  }

  describe(): ElementInfo {
    return { name: this.name, kind: this.kind, inputs: [], outputs: [], counters: [...NAT_COUNTERS] };
  }

  counters(): Record<NatCounter | "entries" | "evictable" | "maxEntries", number> {
    return {
      new: this.newConns,
      established: this.established,
      translated: this.translated,
      dnat: this.dnat,
      snat: this.snat,
      hairpin: this.hairpin,
      clash: this.clash,
      unsnat: this.unsnat,
      undnat: this.undnat,
      bridgedReplies: this.bridgedReplies,
      related: this.related,
      rejected: this.rejected,
      drop: this.drop,
      earlyDrop: this.ct.earlyDrops,
      portsExhausted: this.portsExhausted,
      invalid: this.invalid,
      untracked: this.untracked,
      unconfirmed: this.unconfirmed,
      mismatch: this.mismatch,
      reopened: this.reopened,
      expired: this.ct.expired,
      entries: this.ct.count,
      evictable: this.ct.evictable,
      maxEntries: this.ct.maxEntries,
    };
  }
}
