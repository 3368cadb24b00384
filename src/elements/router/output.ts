/**
 * Output — how an IPv4 packet leaves the router (Linux's ip_output, ip_fragment and
 * neigh_output):
 *
 *   send()        routes a packet the router itself sends (an echo reply, an ICMP error,
 *                 a reset): a route lookup, then output() or fragmentOut();
 *   output()      puts a packet on the wire of an interface toward a next hop: the
 *                 Ethernet header from the neighbour cache; a next hop not yet resolved
 *                 gets an ARP request (arpRequest(); the retries and probes come from
 *                 the neighbour cache's timer) and the packet waits in its entry's
 *                 bounded queue (a copy, with its virtio-net header) until sendQueued();
 *   fragmentOut() cuts a packet for the MTU (RFC 791 §3.2, src/wire/ipv4-frag.ts) into
 *                 scratch slots and outputs every fragment;
 *   alloc()       scratch: per pass, SLOT-sized slots of the pool for the frames the
 *                 router writes (replies, errors, ARP, fragments), freed at beginPass().
 *
 * Every packet handed to output() has 14 free bytes before it for its Ethernet header
 * (its own frame's header, or room left in a scratch slot), and 12 more before those for
 * a virtio-net header.
 *
 * Counters: outNoRoute, neighbourTableFull, arpQueueFull, arpRequestsSent, fragmented,
 * fragmentsOut, fragFailed, scratchFull (all events: the packet's disposition was counted
 * where it was decided).
 */
import { ARP_OPER_REQUEST, emitArpFrame } from "../../wire/arp.js";
import { ETH_HEADER_LEN, ETHERTYPE_IPV4, ethSetDstAddr, ethSetEtherType, ethSetSrcAddr } from "../../wire/ethernet.js";
import { fragmentIpv4 } from "../../wire/ipv4-frag.js";
import { ipv4GetDstAddr, ipv4GetSrcAddr } from "../../wire/ipv4.js";
import { MAC_BROADCAST, macToString } from "../../wire/mac.js";
import { VNET_HDR_LEN, vnetClear, vnetCopyAcross } from "../../wire/vnet.js";
import { NUD_INCOMPLETE, NUD_NAMES, NUD_PERMANENT, type Neighbour } from "../neighbour-cache.js";
import { ipToString } from "../../wire/ipv4addr.js";
import { C } from "./counters.js";
import { sourceFor, type RouterInterface, type RouterState } from "./state.js";

/** Bytes of pool per scratch slot: a virtio-net header, then a frame of up to 2032 bytes. */
export const SLOT = 2048;
/** Scratch slots per pass. */
export const SCRATCH_SLOTS = 1024;
/** Where a frame starts in its slot: a virtio-net header (12 bytes) fits before it. */
const FRAME_IN_SLOT = 16;
/** Fragments one packet may be cut into. */
const MAX_FRAGS = 48;
/** The largest IPv4 header: fragments carry at least mtu - 60 bytes of data (for the slot estimate). */
const FRAG_HEADER_ROOM = 60;

export class Output {
  private base = -1;
  private slots = 0;
  private used = 0;
  private readonly fragLens = new Uint32Array(MAX_FRAGS);

  constructor(private readonly s: RouterState) {}

  /** Scratch: `slots` slots of the pool from `base`. */
  attach(base: number, slots: number): void {
    this.base = base;
    this.slots = slots;
  }

  beginPass(): void {
    this.used = 0;
  }

  /**
   * Scratch slots for frames the router writes: returns where the first frame starts
   * (consecutive slots are SLOT apart), or -1 (and counted) when out. The 12 bytes before
   * each frame are a zeroed virtio-net header (no offload), so a port with offloads can
   * send it as it is.
   */
  alloc(count = 1): number {
    if (this.used + count > this.slots) {
      this.s.c[C.scratchFull]++;
      return -1;
    }
    const first = this.base + this.used * SLOT + FRAME_IN_SLOT;
    this.used += count;
    for (let i = 0; i < count; i++) vnetClear(this.s.pool, first + i * SLOT);
    return first;
  }

  /** Routes a packet the router itself sends (a reply, an ICMP error, a reset). */
  send(inIf: number, buf: Buffer, ip: number, ipLen: number, now: number): void {
    const s = this.s;
    const dst = ipv4GetDstAddr(buf, ip);
    const r = s.fib.lookup(dst);
    if (r < 0) {
      s.c[C.outNoRoute]++;
      return;
    }
    const out = s.ifaces[s.routeIf[r]];
    const nh = s.routeGw[r] || dst;
    if (ipLen > out.mtu) this.fragmentOut(inIf, out, nh, buf, ip, ipLen, now, out.mtu);
    else this.output(inIf, out, nh, buf, ip, ipLen, now);
  }

  /**
   * Puts an IPv4 packet on the wire of `out` toward next hop `nh`. `inIf`: the interface
   * the packet (or the one it answers) came in on, whose address a later host
   * unreachable speaks from.
   */
  output(inIf: number, out: RouterInterface, nh: number, buf: Buffer, ip: number, ipLen: number, now: number): void {
    const neigh = this.s.neigh;
    const n = neigh.get(out.index, nh);
    if (this.s.tr !== null) {
      this.s.trace(
        `neighbour ${ipToString(nh)} dev ${out.name}: ${n === undefined ? "none (ARP request)" : `${NUD_NAMES[n.state]}${n.state === NUD_INCOMPLETE ? "" : ` ${macToString(n.mac)}`}`}`,
      );
      // What-if: nothing may outlive the pass — no packet queued for ARP (it would leave
      // later), no neighbour touched (a stale entry would be probed).
      if (this.s.tr.dry) {
        if (n === undefined || n.state === NUD_INCOMPLETE) return;
        const e = ip - ETH_HEADER_LEN;
        ethSetDstAddr(buf, e, n.mac);
        ethSetSrcAddr(buf, e, out.mac);
        ethSetEtherType(buf, e, ETHERTYPE_IPV4);
        out.port.inq.push(e, ipLen + ETH_HEADER_LEN);
        return;
      }
    }
    if (n === undefined || n.state === NUD_INCOMPLETE) {
      this.resolve(n, inIf, out, nh, buf, ip, ipLen, now);
      return;
    }
    if (n.state !== NUD_PERMANENT) neigh.touch(n, now);
    const e = ip - ETH_HEADER_LEN;
    ethSetDstAddr(buf, e, n.mac);
    ethSetSrcAddr(buf, e, out.mac);
    ethSetEtherType(buf, e, ETHERTYPE_IPV4);
    out.port.inq.push(e, ipLen + ETH_HEADER_LEN);
  }

  /**
   * The next hop is not resolved: a new entry asks for it, and the packet waits (a copy:
   * the bytes must outlive this pass). Apart from output() so that its common case stays
   * small enough for the compiler to inline into the forwarding path.
   */
  private resolve(n: Neighbour | undefined, inIf: number, out: RouterInterface, nh: number, buf: Buffer, ip: number, ipLen: number, now: number): void {
    const s = this.s;
    if (n === undefined) {
      const made = s.neigh.create(out.index, nh, now);
      if (made === null) {
        s.c[C.neighbourTableFull]++;
        return;
      }
      n = made;
      n.probes = 1;
      n.nextProbe = now + s.neigh.t.retransMs;
      // Linux's arp_solicit (arp_announce 0): the waiting packet's source when it is one of
      // the router's own addresses (a reply from a far address asks from that address).
      const src = ipv4GetSrcAddr(buf, ip);
      this.arpRequestOut(out, MAC_BROADCAST, s.local.has(src | 0) ? src : sourceFor(out, nh), nh);
    }
    let virtioHeader: Buffer | undefined;
    if (s.offload) {
      virtioHeader = Buffer.allocUnsafe(VNET_HDR_LEN);
      vnetCopyAcross(buf, ip - ETH_HEADER_LEN, virtioHeader, VNET_HDR_LEN);
    }
    if (!s.neigh.enqueue(n, { data: Buffer.from(buf.subarray(ip, ip + ipLen)), inIf, virtioHeader })) s.c[C.arpQueueFull]++;
  }

  /** Sends what waited for a neighbour that has now resolved. */
  sendQueued(n: Neighbour, now: number): void {
    const s = this.s;
    const out = s.ifaces[n.ifIndex];
    for (const p of s.neigh.drain(n)) {
      const frame = this.alloc();
      if (frame < 0) return;
      const pool = s.pool;
      p.data.copy(pool, frame + ETH_HEADER_LEN);
      if (p.virtioHeader) vnetCopyAcross(p.virtioHeader, VNET_HDR_LEN, pool, frame);
      this.output(p.inIf, out, n.addr, pool, frame + ETH_HEADER_LEN, p.data.length, now);
    }
  }

  /** The trace step of a packet cut in `k` fragments (RFC 791 §3.2): the MTU and each fragment's length. */
  private traceFragments(out: RouterInterface, ipLen: number, mtu: number, k: number): void {
    const lens: number[] = [];
    for (let i = 0; i < k; i++) lens.push(this.fragLens[i]);
    this.s.trace(`fragmented for MTU ${mtu} of ${out.name}: ${ipLen} bytes into ${k} fragments of ${lens.join(", ")} bytes`);
  }

  /**
   * Cuts the packet into fragments of at most `mtu` bytes in scratch and outputs them.
   * False when it could not (no scratch, too many fragments, malformed options: counted).
   */
  fragmentOut(inIf: number, out: RouterInterface, nh: number, buf: Buffer, ip: number, ipLen: number, now: number, mtu: number): boolean {
    const need = Math.min(Math.ceil(ipLen / Math.max(mtu - FRAG_HEADER_ROOM, 8)) + 1, MAX_FRAGS);
    const first = this.alloc(need);
    if (first < 0) return false;
    const s = this.s;
    const k = fragmentIpv4(buf, ip, ipLen, mtu, s.pool, first + ETH_HEADER_LEN, SLOT, need, this.fragLens);
    if (k <= 0) {
      // Too many fragments for the scratch space, or a malformed header/options.
      s.c[C.fragFailed]++;
      return false;
    }
    s.c[C.fragmented]++;
    s.c[C.fragmentsOut] += k;
    if (s.tr !== null) this.traceFragments(out, ipLen, mtu, k);
    for (let i = 0; i < k; i++) this.output(inIf, out, nh, s.pool, first + i * SLOT + ETH_HEADER_LEN, this.fragLens[i], now);
    return true;
  }

  /**
   * Asks who has `tpa` on `ifc`: broadcast, or unicast to `unicastTo` (a STALE entry's
   * probe, RFC 1122 §2.3.2.1), from the interface's address on tpa's subnet.
   */
  arpRequest(ifc: RouterInterface, tpa: number, unicastTo: number): void {
    this.arpRequestOut(ifc, unicastTo === 0 ? MAC_BROADCAST : unicastTo, sourceFor(ifc, tpa), tpa);
  }

  /** Sends an ARP request "who has tpa? tell spa" out of `ifc` to `ethDst`; false when out of scratch. */
  arpRequestOut(ifc: RouterInterface, ethDst: number, spa: number, tpa: number): boolean {
    const frame = this.alloc();
    if (frame < 0) return false;
    const len = emitArpFrame(this.s.pool, frame, ethDst, ifc.mac, ARP_OPER_REQUEST, ifc.mac, spa, 0, tpa);
    ifc.port.inq.push(frame, len);
    this.s.c[C.arpRequestsSent]++;
    return true;
  }
}
