/**
 * router-rig — the node's L3 graph (LearningSwitch over device ports and the router's
 * InternalPorts, Ipv4Router behind them) built by the node's graph builder
 * (src/node/graph.ts) over MemoryPorts instead of TAPs; plus frame builders and parsers for the tests that drive it.
 *
 * Hosts are not simulated: a test plays each host by injecting the frames it would
 * send and reading what came out of the MemoryPort it sits behind.
 */
import type { Engine } from "../../src/core/engine.js";
import type { InternalPort } from "../../src/core/internal-port.js";
import type { Ipv4Router, RouterCounter } from "../../src/elements/router/ipv4-router.js";
import type { LearningSwitch } from "../../src/elements/learning-switch.js";
import type { NodeConfig } from "../../src/node/config.js";
import { buildGraph } from "../../src/node/graph.js";
import type { NeighbourTimers } from "../../src/elements/neighbour-cache.js";
import type { Port } from "../../src/core/port.js";
import type { Nat } from "../../src/elements/nat.js";
import type { ReassemblyOptions } from "../../src/elements/ipv4-reassembly.js";
import { MemoryPort, type MemoryPortOptions } from "../../src/io/memory-port.js";
import {
  ARP_OPER_REPLY,
  ARP_OPER_REQUEST,
  ETH_HEADER_LEN,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  IP_PROTO_ICMP,
  emitArp,
  emitEthernet,
  emitIcmp,
  emitIpv4,
  icmpFillChecksum,
  ipToString,
  macToString,
  icmpRestEcho,
  parseArp,
  parseEthernet,
  parseIcmp,
  parseIpv4,
  parseIp,
  type ArpRepr,
  type EthernetRepr,
  type IcmpRepr,
  type Ipv4Repr,
} from "../../src/wire/index.js";

export const ip = parseIp;
export const BCAST = 0xffffffffffff;

export interface RigIface {
  name: string;
  mac: number;
  mtu?: number;
  /** CIDRs, e.g. "10.0.1.1/24"; the first is the primary. */
  addrs: string[];
  vlan: number;
  proxyArp?: boolean;
}

export interface RigConfig {
  /**
   * Device ports and the access VLAN each carries: MemoryPorts, or `port` (a tunnel
   * port, say) in the engine in its place (not in Rig.ports).
   */
  devices: Array<{ name: string; vlan: number; port?: Port }>;
  ifaces: RigIface[];
  router?: { icmpRate?: number; icmpBurst?: number; neighbour?: Partial<NeighbourTimers>; reassembly?: ReassemblyOptions };
  /**
   * Offloads on, as a node with `offload: true`: engine, switch and router carry
   * virtio-net headers; the MemoryPorts play TAPs with IFF_VNET_HDR (vnetHdr).
   */
  vnet?: boolean;
  /** MemoryPort options (slot size for super-frames, keepSent false for long runs). */
  memory?: MemoryPortOptions;
  /** Routes added after the connected ones ({ dev } names the interface, as a node's config may). */
  routes?: Array<{ to: string; via: string; dev?: string }>;
  neighbours?: Array<{ ip: string; mac: number; iface: string }>;
  /**
   * NAT, as the node sets it up when it has masquerade rules or services: the router's
   * hooks, and with services the switch's bridge hook on the router's VLANs. `ifIndex`
   * gives a router interface's index by name.
   */
  nat?: (ifIndex: (name: string) => number) => Nat;
  /** Set before the engine starts (a virtual clock). */
  clock?: () => number;
}

export interface Rig {
  engine: Engine;
  sw: LearningSwitch;
  router: Ipv4Router;
  ports: Record<string, MemoryPort>;
  internal: Record<string, InternalPort>;
  /** Takes (and clears) what every device port sent. */
  drain(): Record<string, Buffer[]>;
  /** Runs router.tick(now) inside an engine pass, as the node's timer does. */
  tick(now: number): void;
  /** Router counters as a plain object (for deltas). */
  counters(): Record<RouterCounter, number>;
}

/** Builds the graph with the node's graph builder, MemoryPorts for TAPs, and starts it. */
export function buildRig(cfg: RigConfig): Rig {
  const offload = cfg.vnet === true;
  const ports: Record<string, MemoryPort> = {};
  const given = new Map<string, Port>();
  for (const d of cfg.devices) if (d.port !== undefined) given.set(d.name, d.port);
  const config: NodeConfig = {
    lab: "rig",
    node: "rig",
    controlSocket: "",
    offload,
    ports: cfg.devices.map((d) => ({ name: d.name, kind: "tap", ifname: d.name, vlan: { mode: "access", vlan: d.vlan } })),
    switch: { ageingTime: 300, maxEntries: 8192, static: [] },
    router: {
      interfaces: cfg.ifaces.map((i) => ({
        name: i.name,
        vlan: i.vlan,
        mac: macToString(i.mac),
        mtu: i.mtu ?? 1500,
        addresses: i.addrs,
        proxyArp: i.proxyArp ?? false,
      })),
      routes: (cfg.routes ?? []).map((r) => ({ to: r.to, via: r.via, dev: r.dev })),
      neighbors: (cfg.neighbours ?? []).map((n) => ({ ip: n.ip, mac: macToString(n.mac), interface: n.iface })),
      services: [],
    },
  };
  const graph = buildGraph(config, {
    makePort: (pc) => {
      const p = given.get(pc.name);
      if (p !== undefined) return p;
      const m = new MemoryPort(pc.name, { ...cfg.memory, offload });
      ports[pc.name] = m;
      return m;
    },
    clock: cfg.clock,
    router: cfg.router,
    makeNat: cfg.nat,
  });
  const { engine, sw } = graph;
  const router = graph.router as Ipv4Router;
  engine.start();
  const drain = (): Record<string, Buffer[]> => {
    const out: Record<string, Buffer[]> = {};
    for (const [name, p] of Object.entries(ports)) out[name] = p.sent.splice(0);
    return out;
  };
  return {
    engine,
    sw,
    router,
    ports,
    internal: Object.fromEntries(graph.internal.map((p) => [p.name, p])),
    drain,
    tick: (now) => engine.runPass(() => router.tick(now)),
    counters: () => router.counters(),
  };
}

// -----------------------------------------------------------------------------
// The standard rig: two routed ports.

export const ETH1_MAC = 0x020000000101;
export const ETH2_MAC = 0x020000000201;
export const ETH1_IP = ip("10.0.1.1");
export const ETH2_IP = ip("10.0.2.1");
/** The host behind h1 and the host behind h2. */
export const H1 = { mac: 0x02aa0000010a, ip: ip("10.0.1.10") };
export const H2 = { mac: 0x02bb0000020a, ip: ip("10.0.2.10") };

export interface RoutedRigOptions {
  eth1Mtu?: number;
  eth2Mtu?: number;
  proxyArp1?: boolean;
  icmpRate?: number;
  icmpBurst?: number;
  neighbour?: Partial<NeighbourTimers>;
  nat?: RigConfig["nat"];
}

/**
 * h1 (access VLAN 4094) and h2 (access VLAN 4093) as routed ports: eth1 10.0.1.1/24
 * on VLAN 4094, eth2 10.0.2.1/24 on VLAN 4093.
 */
export function routedRig(o: RoutedRigOptions = {}): Rig {
  return buildRig({
    devices: [
      { name: "h1", vlan: 4094 },
      { name: "h2", vlan: 4093 },
    ],
    ifaces: [
      { name: "eth1", mac: ETH1_MAC, mtu: o.eth1Mtu, addrs: ["10.0.1.1/24"], vlan: 4094, proxyArp: o.proxyArp1 },
      { name: "eth2", mac: ETH2_MAC, mtu: o.eth2Mtu, addrs: ["10.0.2.1/24"], vlan: 4093 },
    ],
    router: { icmpRate: o.icmpRate, icmpBurst: o.icmpBurst, neighbour: o.neighbour },
    nat: o.nat,
  });
}

// -----------------------------------------------------------------------------
// Frame builders

export function ethFrame(dst: number, src: number, etherType: number, payload: Buffer): Buffer {
  const f = Buffer.alloc(ETH_HEADER_LEN + payload.length);
  emitEthernet({ dstAddr: dst, srcAddr: src, etherType }, f, 0);
  payload.copy(f, ETH_HEADER_LEN);
  return f;
}

/** An ARP frame padded to the 60-byte Ethernet minimum (as a NIC sends it). */
export function arpFrame(o: { ethDst: number; ethSrc: number; oper: number; sha: number; spa: number; tha?: number; tpa: number }): Buffer {
  const f = Buffer.alloc(60);
  emitEthernet({ dstAddr: o.ethDst, srcAddr: o.ethSrc, etherType: ETHERTYPE_ARP }, f, 0);
  emitArp({ oper: o.oper, sha: o.sha, spa: o.spa, tha: o.tha ?? 0, tpa: o.tpa }, f, ETH_HEADER_LEN);
  return f;
}

/** "who has tpa? tell (mac, addr)", broadcast. */
export function arpRequestFrame(mac: number, addr: number, tpa: number): Buffer {
  return arpFrame({ ethDst: BCAST, ethSrc: mac, oper: ARP_OPER_REQUEST, sha: mac, spa: addr, tpa });
}

/** "(mac, addr) is here", unicast to (toMac, toAddr). */
export function arpReplyFrame(mac: number, addr: number, toMac: number, toAddr: number): Buffer {
  return arpFrame({ ethDst: toMac, ethSrc: mac, oper: ARP_OPER_REPLY, sha: mac, spa: addr, tha: toMac, tpa: toAddr });
}

export interface IpOpts {
  src: number;
  dst: number;
  ttl?: number;
  protocol?: number;
  ident?: number;
  df?: boolean;
  mf?: boolean;
  fragOffset?: number;
  dscp?: number;
  payload?: Buffer;
}

/** An IPv4 packet (no link header) with a correct header checksum. */
export function ipPacket(o: IpOpts): Buffer {
  const payload = o.payload ?? Buffer.from("tapnet router test payload");
  const repr: Ipv4Repr = {
    dscp: o.dscp ?? 0,
    ecn: 0,
    totalLen: 20 + payload.length,
    ident: o.ident ?? 0x1234,
    df: o.df ?? false,
    mf: o.mf ?? false,
    fragOffset: o.fragOffset ?? 0,
    ttl: o.ttl ?? 64,
    protocol: o.protocol ?? 17,
    srcAddr: o.src,
    dstAddr: o.dst,
    options: new Uint8Array(0),
  };
  const p = Buffer.alloc(repr.totalLen);
  emitIpv4(repr, p, 0);
  payload.copy(p, 20);
  return p;
}

/** An ICMP message (header + data) with a correct checksum. */
export function icmpMessage(repr: IcmpRepr, data: Buffer): Buffer {
  const m = Buffer.alloc(8 + data.length);
  emitIcmp(repr, m, 0);
  data.copy(m, 8);
  icmpFillChecksum(m, 0, m.length);
  return m;
}

export function echoRequest(o: Omit<IpOpts, "protocol" | "payload"> & { id?: number; seq?: number; data?: Buffer }): Buffer {
  const msg = icmpMessage({ type: 8, code: 0, rest: icmpRestEcho(o.id ?? 0x4242, o.seq ?? 1) }, o.data ?? Buffer.from("abcdefghijklmnopqrstuvwxyz012345"));
  return ipPacket({ ...o, protocol: IP_PROTO_ICMP, payload: msg });
}

export function ipFrame(dstMac: number, srcMac: number, packet: Buffer): Buffer {
  return ethFrame(dstMac, srcMac, ETHERTYPE_IPV4, packet);
}

// -----------------------------------------------------------------------------
// Parsers

export interface Parsed {
  eth: EthernetRepr;
  arp: ArpRepr | null;
  ip: Ipv4Repr | null;
  /** The IPv4 packet bytes (totalLen of them), when ip is set. */
  ipBytes: Buffer | null;
  icmp: IcmpRepr | null;
  /** ICMP message bytes after its 8-byte header. */
  icmpData: Buffer | null;
}

export function parseFrame(f: Buffer): Parsed {
  const eth = parseEthernet(f, 0, f.length);
  if (eth === null) throw new Error(`frame of ${f.length} bytes has no Ethernet header`);
  const out: Parsed = { eth, arp: null, ip: null, ipBytes: null, icmp: null, icmpData: null };
  if (eth.etherType === ETHERTYPE_ARP) out.arp = parseArp(f, ETH_HEADER_LEN, f.length - ETH_HEADER_LEN);
  if (eth.etherType === ETHERTYPE_IPV4) {
    out.ip = parseIpv4(f, ETH_HEADER_LEN, f.length - ETH_HEADER_LEN);
    if (out.ip !== null) {
      out.ipBytes = f.subarray(ETH_HEADER_LEN, ETH_HEADER_LEN + out.ip.totalLen);
      const hl = 20 + out.ip.options.length;
      if (out.ip.protocol === IP_PROTO_ICMP && out.ip.fragOffset === 0 && !out.ip.mf) {
        out.icmp = parseIcmp(out.ipBytes, hl, out.ip.totalLen - hl);
        if (out.icmp !== null) out.icmpData = out.ipBytes.subarray(hl + 8);
      }
    }
  }
  return out;
}

/** A one-line summary of a frame, for readable failures ("ARP who-has 10.0.2.9 tell 10.0.2.1"). */
export function describeFrame(f: Buffer): string {
  const p = parseFrame(f);
  const e = `${macToString(p.eth.srcAddr)} > ${macToString(p.eth.dstAddr)}`;
  if (p.arp) {
    const a = p.arp;
    return a.oper === ARP_OPER_REQUEST
      ? `${e} ARP who-has ${ipToString(a.tpa)} tell ${ipToString(a.spa)}`
      : `${e} ARP ${ipToString(a.spa)} is-at ${macToString(a.sha)}`;
  }
  if (p.ip) {
    const i = p.ip;
    const icmp = p.icmp ? ` ICMP ${p.icmp.type}/${p.icmp.code}` : ` proto ${i.protocol}`;
    return `${e} IP ${ipToString(i.srcAddr)} > ${ipToString(i.dstAddr)} ttl ${i.ttl} len ${i.totalLen}${icmp}`;
  }
  return `${e} ethertype 0x${p.eth.etherType.toString(16)} len ${f.length}`;
}

/** Every port's frames as summaries. */
export function describeAll(out: Record<string, Buffer[]>): Record<string, string[]> {
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.map(describeFrame)]));
}

/** Counters that changed, with their deltas. */
export function counterDelta(before: Record<RouterCounter, number>, after: Record<RouterCounter, number>): Partial<Record<RouterCounter, number>> {
  const d: Partial<Record<RouterCounter, number>> = {};
  for (const k of Object.keys(after) as RouterCounter[]) if (after[k] !== before[k]) d[k] = after[k] - before[k];
  return d;
}

/** Deterministic PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
