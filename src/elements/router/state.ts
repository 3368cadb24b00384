/**
 * RouterState — what the router's stages share: its interfaces and their addresses, the
 * routes (the FIB and the table behind its values), the neighbour cache, the reassembler,
 * the NAT, the packet pool and the counters. The stages (ip-input.ts, arp.ts, icmp.ts,
 * output.ts) read and change it; the element (ipv4-router.ts) builds it and answers
 * `show route`, `show neigh` and `show interfaces` from it.
 *
 * Addresses are unsigned 32-bit numbers (`>>> 0`); lookups that key a Map by address use
 * the signed value (`addr | 0`), a Smi that never boxes.
 */
import { ClusterDns, type ClusterDnsOptions } from "./cluster-dns.js";
import { DhcpServer, type DhcpOptions } from "./dhcp.js";
import type { InternalPort } from "../../core/internal-port.js";
import type { DropTap, Element } from "../../core/element.js";
import type { TraceRecorder } from "../../core/trace.js";
import { ipToString, parseIp } from "../../wire/ipv4addr.js";
import { Fib } from "../fib.js";
import { Ipv4Reassembly, REASM_COUNTERS, type ReassemblyOptions } from "../ipv4-reassembly.js";
import type { Nat } from "../nat.js";
import { NeighbourCache, type NeighbourTimers } from "../neighbour-cache.js";
import { REASM_FIRST } from "./counters.js";

export interface RouterInterfaceConfig {
  name: string;
  mac: number;
  mtu: number;
  /** [address, prefixLen] pairs; the first is the primary (source of ICMP errors). */
  addresses: Array<{ addr: number; prefixLen: number }>;
  proxyArp?: boolean;
  /** ICMP redirects for packets that leave by the interface they came in on (Linux's send_redirects, default on). */
  sendRedirects?: boolean;
  /** Loose and strict source routes received here are followed (Linux's accept_source_route, default off: dropped). */
  acceptSourceRoute?: boolean;
  port: InternalPort;
  /** A DHCP server for this interface's segment (dhcp.ts). */
  dhcp?: DhcpOptions;
}

export interface RouterOptions {
  /** Global ICMP error limit (Linux's icmp_msgs_per_sec, icmp_msgs_burst). */
  icmpRate?: number;
  icmpBurst?: number;
  /** Per-destination ICMP limit in ms (Linux's icmp_ratelimit, default 1000; 0: off). */
  icmpRatelimitMs?: number;
  /** Types limited (Linux's icmp_ratemask, default 6168). */
  icmpRatemask?: number;
  neighbour?: Partial<NeighbourTimers>;
  reassembly?: ReassemblyOptions;
  /** Connection tracking and NAT, called at PREROUTING and POSTROUTING. */
  nat?: Nat | null;
  /** Frames carry virtio-net headers (src/wire/vnet.ts). */
  offload?: boolean;
  /** The cluster DNS answered on an address of its own (cluster-dns.ts). */
  clusterDns?: ClusterDnsOptions;
}

export interface RouteConfig {
  prefix: number;
  prefixLen: number;
  /** Next hop address; 0 = directly connected on `ifIndex`. */
  gateway: number;
  ifIndex: number;
  /** The next hop is on `ifIndex` even outside its subnets (flannel's routes). */
  onlink?: boolean;
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
  sendRedirects: boolean;
  acceptSourceRoute: boolean;
  port: InternalPort;
  dhcp: DhcpServer | null;
}

export class RouterState {
  readonly ifaces: RouterInterface[] = [];
  readonly fib = new Fib();
  readonly neigh: NeighbourCache;
  /** Route table behind the FIB's values (route id -> …). */
  readonly routeIf: number[] = [];
  readonly routeGw: number[] = [];
  readonly routeKind: string[] = [];
  readonly routePrefix: number[] = [];
  readonly routeLen: number[] = [];
  readonly routeOnlink: boolean[] = [];
  /** Route ids of deleted routes, for the next one added. */
  private readonly freeIds: number[] = [];
  /** The router's own addresses (`addr | 0`) -> interface index. */
  readonly local = new Map<number, number>();
  private readonly ifByPort = new Map<number, RouterInterface>();
  /** Connection tracking and NAT, when the node has NAT rules or services (the graph builder may add one later). */
  nat: Nat | null;
  /** The cluster DNS, when the node answers one (cluster-dns.ts). */
  readonly dns: ClusterDns | null;
  /** Fragments are reassembled before PREROUTING while `nat` is set (nf_defrag_ipv4). */
  readonly reasm: Ipv4Reassembly;
  /**
   * The node's ports carry virtio-net headers (offloads): every frame has its header
   * in the 12 bytes before it; TSO super-frames are routed whole (MTU checks use their
   * segment size) and NAT keeps partial checksums partial.
   */
  readonly offload: boolean;
  /** The packet pool (frames, the router's scratch, the reassembly slots); set when attached. */
  pool: Buffer = Buffer.alloc(0);

  /**
   * `c` and `last`: the element's counter storage (ROUTER_COUNTERS), shared with the
   * reassembler for its counters.
   */
  constructor(
    interfaces: RouterInterfaceConfig[],
    opts: RouterOptions,
    readonly c: Float64Array,
    private readonly last: Float64Array,
  ) {
    this.nat = opts.nat ?? null;
    this.dns = opts.clusterDns
      ? new ClusterDns(opts.clusterDns, (name) => {
          const v = this.nat?.services().find((x) => x.name === name);
          return v === undefined ? undefined : parseIp(v.vip) >>> 0;
        })
      : null;
    this.offload = opts.offload ?? false;
    this.reasm = new Ipv4Reassembly(opts.reassembly, c.subarray(REASM_FIRST, REASM_FIRST + REASM_COUNTERS.names.length));
    for (const cf of interfaces) {
      const ifc: RouterInterface = {
        index: this.ifaces.length,
        name: cf.name,
        mac: cf.mac,
        mtu: cf.mtu,
        addrs: cf.addresses.map((a) => a.addr >>> 0),
        prefixLens: cf.addresses.map((a) => a.prefixLen),
        masks: cf.addresses.map((a) => (a.prefixLen === 0 ? 0 : (0xffffffff << (32 - a.prefixLen)) >>> 0)),
        proxyArp: cf.proxyArp ?? false,
        sendRedirects: cf.sendRedirects ?? true,
        acceptSourceRoute: cf.acceptSourceRoute ?? false,
        port: cf.port,
        dhcp: cf.dhcp ? new DhcpServer(cf.name, cf.dhcp, cf.addresses[0].addr >>> 0, cf.addresses[0].prefixLen) : null,
      };
      this.ifaces.push(ifc);
      this.ifByPort.set(cf.port.index, ifc);
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
  }

  /** Where dropped packets go while a drop capture is attached (Element.setDropTap), and the element to name. */
  dropTap: DropTap | null = null;
  dropOwner: Element | null = null;
  /** The armed trace, or null (Element.setTrace). */
  tr: TraceRecorder | null = null;

  /**
   * Counts a packet's end at drop counter `id` like drop(), and hands the frame (the
   * Ethernet header in front of the IPv4 packet at `ip`) to the drop tap, if any.
   */
  dropFrame(id: number, now: number, buf: Buffer, ip: number, ipLen: number): void {
    this.c[id]++;
    this.last[id] = now;
    if (this.dropTap !== null) this.dropTap.dropped(this.dropOwner as Element, id, buf, ip - 14, ipLen + 14);
    if (this.tr !== null) this.traceDrop(id);
  }

  /** A trace step of the router (only while a trace is armed). */
  trace(what: string): void {
    this.tr?.add((this.dropOwner as Element).name, what);
  }

  /** A trace step for a drop at counter `id` (only while a trace is armed). */
  traceDrop(id: number): void {
    const spec = (this.dropOwner as Element).spec;
    const n = spec.names[id];
    this.tr?.add((this.dropOwner as Element).name, `drop ${n}: ${spec.decls[n].help}`);
  }

  /** Counts a frame's end at drop counter `id`, remembering when (for `show drops`). */
  drop(id: number, now: number): void {
    this.c[id]++;
    this.last[id] = now;
  }

  /** The interface behind an internal port, or undefined. */
  ifOfPort(portIndex: number): RouterInterface | undefined {
    return this.ifByPort.get(portIndex);
  }

  /**
   * Adds a route, or replaces the one for the same prefix; `kind` is what `show route`
   * says it came from (connected, static, and the control planes': bgp, flannel, …).
   */
  addRoute(r: RouteConfig, kind = "static"): void {
    const old = this.fib.get(r.prefix, r.prefixLen);
    if (old >= 0 && this.routeKind[old] === "connected" && kind !== "connected") {
      throw new Error(`route ${ipToString(r.prefix)}/${r.prefixLen} is a connected subnet`);
    }
    const id = old >= 0 ? old : (this.freeIds.pop() ?? this.routeIf.length);
    this.routeIf[id] = r.ifIndex;
    this.routeGw[id] = r.gateway >>> 0;
    this.routeKind[id] = kind;
    this.routePrefix[id] = r.prefix >>> 0;
    this.routeLen[id] = r.prefixLen;
    this.routeOnlink[id] = r.onlink ?? false;
    this.fib.add(r.prefix >>> 0, r.prefixLen, id);
  }

  /** Deletes the route for exactly this prefix; its id, or -1 when there is none. */
  removeRoute(prefix: number, prefixLen: number): number {
    const id = this.fib.get(prefix >>> 0, prefixLen);
    if (id < 0) return -1;
    this.fib.remove(prefix >>> 0, prefixLen);
    this.freeIds.push(id);
    return id;
  }

  /** Adds an address to an interface: it becomes local, with its connected route (not a /32). */
  addAddress(ifc: RouterInterface, addr: number, prefixLen: number): void {
    const mask = prefixLen === 0 ? 0 : (0xffffffff << (32 - prefixLen)) >>> 0;
    ifc.addrs.push(addr >>> 0);
    ifc.prefixLens.push(prefixLen);
    ifc.masks.push(mask);
    this.local.set(addr | 0, ifc.index);
    if (prefixLen < 32 && this.fib.get((addr & mask) >>> 0, prefixLen) < 0) {
      this.addRoute({ prefix: (addr & mask) >>> 0, prefixLen, gateway: 0, ifIndex: ifc.index }, "connected");
    }
  }

  /**
   * Removes an address. Its connected route goes when no other address keeps that
   * subnet, and so do the routes whose next hop was only reachable through it (Linux's
   * fib_sync_down_addr); gives how many routes went.
   */
  removeAddress(ifc: RouterInterface, k: number): number {
    const addr = ifc.addrs[k];
    const mask = ifc.masks[k];
    const len = ifc.prefixLens[k];
    ifc.addrs.splice(k, 1);
    ifc.prefixLens.splice(k, 1);
    ifc.masks.splice(k, 1);
    this.local.delete(addr | 0);
    let gone = 0;
    const net = (addr & mask) >>> 0;
    const id = this.fib.get(net, len);
    const kept = this.ifaces.some((i) => i.addrs.some((a, j) => i.prefixLens[j] === len && (a & i.masks[j]) >>> 0 === net));
    if (len < 32 && id >= 0 && this.routeKind[id] === "connected" && !kept) {
      this.removeRoute(net, len);
      gone++;
    }
    for (const e of this.fib.entries()) {
      const r = e.value;
      if (this.routeGw[r] !== 0 && !this.routeOnlink[r] && this.connectedIf(this.routeGw[r]) < 0) {
        this.removeRoute(this.routePrefix[r], this.routeLen[r]);
        gone++;
      }
    }
    return gone;
  }

  /** The interface whose connected subnet holds `addr`, or -1. */
  connectedIf(addr: number): number {
    for (const ifc of this.ifaces) if (onSubnet(ifc, addr)) return ifc.index;
    return -1;
  }

  /** A directed broadcast of one of the router's subnets (not /31, /32: RFC 3021). */
  isSubnetBroadcast(dst: number): boolean {
    // At least two host bits, all ones: most addresses fail here, without the loop.
    if ((dst & 3) !== 3) return false;
    for (const ifc of this.ifaces) {
      for (let k = 0; k < ifc.addrs.length; k++) {
        const m = ifc.masks[k];
        if (ifc.prefixLens[k] < 31 && (dst & m) >>> 0 === (ifc.addrs[k] & m) >>> 0 && (dst | ~m) >>> 0 === dst) {
          return true;
        }
      }
    }
    return false;
  }
}

/** `addr` is one of the interface's own addresses. */
export function ownsOn(ifc: RouterInterface, addr: number): boolean {
  for (let k = 0; k < ifc.addrs.length; k++) if (ifc.addrs[k] === addr) return true;
  return false;
}

/** `addr` is on one of the interface's connected subnets. */
export function onSubnet(ifc: RouterInterface, addr: number): boolean {
  return subnetAddr(ifc, addr) >= 0;
}

/** The interface's address to speak from toward `peer` (same subnet first; 0 if it has none). */
export function sourceFor(ifc: RouterInterface, peer: number): number {
  const k = subnetAddr(ifc, peer);
  return k >= 0 ? ifc.addrs[k] : (ifc.addrs[0] ?? 0);
}

/** Index of the interface's address whose subnet holds `addr`, or -1. */
function subnetAddr(ifc: RouterInterface, addr: number): number {
  for (let k = 0; k < ifc.addrs.length; k++) {
    const m = ifc.masks[k];
    if ((addr & m) >>> 0 === (ifc.addrs[k] & m) >>> 0) return k;
  }
  return -1;
}
