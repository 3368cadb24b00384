/**
 * Ipv4Router — an IPv4 router on real frames (what the kernel's forwarding path, its
 * ARP and its ICMP do for a Linux router).
 *
 * Inputs/outputs: one per interface. Each interface has a MAC, an MTU and one or more
 * addresses, and sits on one VLAN of the node's switch through an InternalPort (an SVI;
 * a "routed port" is a VLAN with one member port); the graph builder links them.
 * Connected routes appear with the addresses; static routes and neighbours are added
 * by the builder.
 * Config (RouterOptions): the NAT (called at PREROUTING and POSTROUTING), offload
 * (frames carry virtio-net headers), ICMP rate and burst, neighbour timers, reassembly.
 *
 * The data path, a file per stage around one shared state (state.ts):
 *
 *   process()  frame from an interface ─┬─ ARP ──▶ arp.ts        (answers, RFC 826 merge)
 *                                       ├─ IPv4 ─▶ ip-input.ts   (checks, NAT, local, forward)
 *                                       └─ other: unknownEtherType
 *   ip-input.ts ──▶ icmp.ts    (errors, echo replies, resets: the router's own answers)
 *   ip-input.ts, icmp.ts, arp.ts ──▶ output.ts (neighbour resolution and its queue,
 *                                               fragmentation, scratch)
 *   tick()     timers: ARP retries and probes, neighbour failures (host unreachable),
 *              reassembly timeouts, conntrack expiry.
 *
 * Counters: counters.ts (every frame ends in exactly one forward, deliver or drop
 * counter; the reassembler's counters are among them).
 */
import type { DhcpLeaseRow, DhcpServer } from "./dhcp.js";
import type { FrameList } from "../../core/batch.js";
import type { TraceRecorder } from "../../core/trace.js";
import { type DropTap, Element, type ElementInfo, type FrameSink } from "../../core/element.js";
import type { Port } from "../../core/port.js";
import { ETH_HEADER_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, ethGetEtherType } from "../../wire/ethernet.js";
import { ICMP_DEST_UNREACH, ICMP_UNREACH_HOST } from "../../wire/icmp.js";
import { ipToString } from "../../wire/ipv4addr.js";
import { macToString } from "../../wire/mac.js";
import type { Fib } from "../fib.js";
import type { Ipv4Reassembly } from "../ipv4-reassembly.js";
import type { Nat } from "../nat.js";
import { NUD_INCOMPLETE, NUD_NAMES, NUD_PERMANENT, type Neighbour, type NeighbourCache } from "../neighbour-cache.js";
import { Arp } from "./arp.js";
import { C, ROUTER_COUNTERS, type RouterCounter } from "./counters.js";
import { Icmp } from "./icmp.js";
import { IpInput } from "./ip-input.js";
import { Output, SCRATCH_SLOTS, SLOT } from "./output.js";
import { RouterState, sourceFor, type RouteConfig, type RouterInterface, type RouterInterfaceConfig, type RouterOptions } from "./state.js";

export type { RouteConfig, RouterInterface, RouterInterfaceConfig, RouterOptions } from "./state.js";
export { ROUTER_COUNTERS, type RouterCounter } from "./counters.js";

/** One line of `show route`. */
export interface RouteRow {
  prefix: string;
  via: string | null;
  dev: string;
  /** Where the route came from: connected, static, or a control plane's name (bgp, flannel…). */
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

/** One line of `show interfaces`. */
export interface InterfaceRow {
  name: string;
  mac: string;
  mtu: number;
  /** ADDR/LEN */
  addresses: string[];
  proxyArp: boolean;
  /** The switch port it sits behind. */
  port: string;
}

export class Ipv4Router extends Element<RouterCounter> implements FrameSink {
  readonly kind = "Ipv4Router";
  private readonly s: RouterState;
  private readonly out: Output;
  private readonly icmp: Icmp;
  private readonly arp: Arp;
  private readonly ip: IpInput;
  readonly ifaces: readonly RouterInterface[];
  readonly fib: Fib;
  readonly neigh: NeighbourCache;
  readonly reasm: Ipv4Reassembly;

  constructor(interfaces: RouterInterfaceConfig[], opts: RouterOptions = {}, name = "router") {
    super(name, ROUTER_COUNTERS);
    const s = new RouterState(interfaces, opts, this.c, this.last);
    this.s = s;
    this.out = new Output(s);
    this.icmp = new Icmp(s, this.out, opts.icmpRate, opts.icmpBurst, opts.icmpRatelimitMs, opts.icmpRatemask);
    this.arp = new Arp(s, this.out);
    this.ip = new IpInput(s, this.icmp, this.out);
    this.ifaces = s.ifaces;
    this.fib = s.fib;
    this.neigh = s.neigh;
    this.reasm = s.reasm;
  }

  override setTrace(tr: TraceRecorder | null): void {
    this.tr = tr;
    this.s.dropOwner = this;
    this.s.tr = tr;
  }

  override setDropTap(tap: DropTap | null): void {
    this.dropTap = tap;
    this.s.dropOwner = this;
    this.s.dropTap = tap;
  }

  /** Connection tracking and NAT, when the node has NAT rules or services. */
  get nat(): Nat | null {
    return this.s.nat;
  }

  /** The graph builder gives a running router a NAT (the first service or masquerade rule). */
  attachNat(nat: Nat): void {
    if (this.s.nat !== null) throw new Error("the router has a NAT already");
    this.s.nat = nat;
  }

  /** The per-destination ICMP limit: ms per error (0: off) and the types limited. */
  get icmpLimit(): { ratelimit: number; ratemask: number } {
    return { ratelimit: this.icmp.peers.ratelimitMs, ratemask: this.icmp.ratemask };
  }

  /** Changes the per-destination ICMP limit (each given value; Linux's icmp_ratelimit, icmp_ratemask). */
  setIcmpLimit(ratelimit?: number, ratemask?: number): void {
    if (ratelimit !== undefined) this.icmp.peers.ratelimitMs = ratelimit;
    if (ratemask !== undefined) this.icmp.ratemask = ratemask;
  }

  /** The state its stages share, for the runtime changes (router-control.ts). */
  get state(): RouterState {
    return this.s;
  }

  describe(): ElementInfo {
    const ifs = this.ifaces.map((i) => i.port.name);
    return { name: this.name, kind: this.kind, inputs: ifs, outputs: ifs, counters: [...this.spec.names] };
  }

  /** Frame slots, then the reassembly slots (NAT on, and datagrams for the router itself). */
  scratchBytes(): number {
    return SCRATCH_SLOTS * SLOT + this.reasm.bytes();
  }

  attachScratch(pool: Buffer, base: number, bytes: number): void {
    this.s.pool = pool;
    const slots = Math.floor((bytes - this.reasm.bytes()) / SLOT);
    this.out.attach(base, slots);
    this.reasm.attach(pool, base + slots * SLOT);
  }

  override beginPass(): void {
    this.out.beginPass();
    this.reasm.beginPass();
  }

  /** Adds a route; `kind` is what `show route` says (connected, static). */
  addRoute(r: RouteConfig, kind = "static"): void {
    this.s.addRoute(r, kind);
  }

  /** The interface whose connected subnet holds `addr`, or -1. */
  connectedIf(addr: number): number {
    return this.s.connectedIf(addr);
  }

  addStaticNeighbour(ifIndex: number, addr: number, mac: number): void {
    this.neigh.setStatic(ifIndex, addr >>> 0, mac);
  }

  process(port: Port, frames: FrameList, buf: Buffer, now: number): void {
    const ifc = this.s.ifOfPort(port.index);
    if (ifc === undefined) return;
    const n = frames.count;
    for (let i = 0; i < n; i++) {
      const off = frames.offsets[i];
      const len = frames.lengths[i];
      if (len < ETH_HEADER_LEN) {
        this.countDrop(C.runt, now, buf, off, len);
        continue;
      }
      const et = ethGetEtherType(buf, off);
      if (et === ETHERTYPE_IPV4) this.ip.input(ifc, buf, off, len, now);
      else if (et === ETHERTYPE_ARP) this.arp.input(ifc, buf, off, len, now);
      else this.countDrop(C.unknownEtherType, now, buf, off, len);
    }
  }

  /** Gratuitous ARP for every address (RFC 5227 §3 announcement), when interfaces come up. */
  announce(): void {
    this.arp.announce();
  }

  /**
   * Timer work (run inside an engine pass): conntrack expiry and reassembly timeouts,
   * ARP retries, refresh probes, neighbour failures (host unreachable to what waited).
   */
  tick(now: number): void {
    this.ip.tick(now);
    this.neigh.tick(
      now,
      (n, unicastTo) => this.out.arpRequest(this.ifaces[n.ifIndex], n.addr, unicastTo),
      (n) => {
        for (const p of this.neigh.drain(n)) {
          this.c[C.hostUnreachable]++;
          const inIf = p.inIf >= 0 ? this.ifaces[p.inIf] : this.ifaces[n.ifIndex];
          this.icmp.error(inIf, p.data, 0, p.data.length, ICMP_DEST_UNREACH, ICMP_UNREACH_HOST, 0, now, false);
        }
      },
    );
  }

  // ---------------------------------------------------------------------------
  // Inspection: show route, show neigh, show interfaces

  routes(): RouteRow[] {
    return this.fib.entries().map((e) => this.routeRow(e.value));
  }

  /** routes() step by step, in the same order (see Fib.walk); null marks a point to pause. */
  *routeWalk(): Generator<RouteRow | null, void, void> {
    for (const e of this.fib.walk()) yield e === null ? null : this.routeRow(e.value);
  }

  private routeRow(id: number): RouteRow {
    const s = this.s;
    const ifc = s.ifaces[s.routeIf[id]];
    const kind = s.routeKind[id];
    return {
      prefix: `${ipToString(s.routePrefix[id])}/${s.routeLen[id]}`,
      via: s.routeGw[id] ? ipToString(s.routeGw[id]) : null,
      dev: ifc.name,
      kind,
      src: kind === "connected" ? ipToString(sourceFor(ifc, s.routePrefix[id])) : null,
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

  /** Every interface's DHCP leases and server counters (`tapnet show dhcp`). */
  dhcpLeases(now: number): { leases: DhcpLeaseRow[]; servers: Array<{ interface: string; range: string } & DhcpServer["stats"]> } {
    const on = this.ifaces.filter((i) => i.dhcp !== null).map((i) => i.dhcp as DhcpServer);
    return {
      leases: on.flatMap((d) => d.leases(now)),
      servers: on.map((d) => ({ interface: d.ifname, range: `${ipToString(d.first)}-${ipToString(d.last)}`, ...d.stats })),
    };
  }

  interfaces(): InterfaceRow[] {
    return this.ifaces.map((i) => ({
      name: i.name,
      mac: macToString(i.mac),
      mtu: i.mtu,
      addresses: i.addrs.map((a, k) => `${ipToString(a)}/${i.prefixLens[k]}`),
      proxyArp: i.proxyArp,
      port: i.port.name,
    }));
  }
}
