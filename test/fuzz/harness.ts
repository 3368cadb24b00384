/**
 * Fuzz harnesses: the elements wired as a node wires them (test/elements/router-rig.ts
 * builds the switch + router graph as src/node/node.ts does), fed generated frames
 * (gen.ts) through their ports, with two checks after every batch:
 *
 *   1. no exception leaves an element: the switch and the router are called through
 *      guards that record what they throw (the Engine would only count it in
 *      internalErrors, which must stay 0 too), and the tunnel ports' receive paths
 *      and every port's transmit run outside the Engine's catch, so a throw there
 *      reaches the harness as it is;
 *   2. every frame is accounted for: per element, frames in = the sum of its terminal
 *      dispositions (forwarded, delivered, dropped by reason), exactly; see LEDGERS.
 *
 * Time is virtual (Engine.clock): a few ms per batch, now and then a jump of seconds,
 * so ageing, ARP retries and failures, ICMP rate limiting, conntrack expiry and
 * reassembly timeouts all happen, the same way on every run of a seed. The router's
 * timer runs every 200 ms of it, as the node's does.
 *
 * The tunnel ports get a simulated kernel instead of sockets (their openSocket option):
 * it lands datagrams (VXLAN, single or as UDP GRO trains) or raw IPIP packets in the
 * port's receive slots and calls onBatch, as the addon does; sends are accepted.
 */
import type { FrameList } from "../../src/core/batch.js";
import type { Element } from "../../src/core/element.js";
import { Engine } from "../../src/core/engine.js";
import type { InternalPort } from "../../src/core/internal-port.js";
import type { Port } from "../../src/core/port.js";
import type { Ipv4Router } from "../../src/elements/router/ipv4-router.js";
import { LearningSwitch } from "../../src/elements/learning-switch.js";
import { SpanningTree } from "../../src/elements/stp.js";
import { Nat } from "../../src/elements/nat.js";
import { IpipPort, ipipNeighbourMac } from "../../src/io/ipip-port.js";
import { MemoryPort } from "../../src/io/memory-port.js";
import type { RawHandle, RawOptions } from "../../src/io/raw-native.js";
import type { UdpHandle, UdpOptions, UdpStats } from "../../src/io/udp-native.js";
import { VxlanPort } from "../../src/io/vxlan-port.js";
import { parseIp } from "../../src/wire/index.js";
import { buildRig, type Rig } from "../elements/router-rig.js";
import { FrameGen, frameHex, type GenFrame, Rng, type Where, type World } from "./gen.js";

export const ELEMENTS = ["switch", "router", "nat", "vxlan", "ipip"] as const;
export type ElementName = (typeof ELEMENTS)[number];

/** frames in = sum of `out`, exactly. */
export interface Ledger {
  name: string;
  in: number;
  out: Record<string, number>;
}

export class FuzzFailure extends Error {}

/**
 * The ledgers (README, Tests): what a frame's disposition is. For the switch, the tree and the
 * router it is their declared counter kinds (src/core/element.ts): every frame an
 * element takes ends in exactly one `forward`, `deliver` or `drop` counter, so
 *
 *   out = the sum of the element's counters of those kinds
 *
 * and a ledger that does not balance means a kind is wrong (or a frame was lost or
 * counted twice). What goes in:
 *
 * switch  in  = rxFrames of every port of the switch (device and router ports)
 * stp     in  = the switch's bpdu (BPDUs it handed to spanning tree)
 * router  in  = frames the switch handed to the router's ports (their txFrames) +
 *               datagrams the reassembler completed (reassembled)
 * vxlan   in  = datagrams the kernel handed to the port (a GRO message counts each)
 *         out = decapsulated + badHeader + vniMismatch + runt + rxTooBig
 *         and frames the port delivered (rxFrames) = decapsulated - coalesced +
 *         arpSuppressed (answers to ARP requests, delivered as received frames)
 * ipip    in  = packets the kernel handed to the port, truncated ones included
 *         out = decapsulated + badOuter + unknownPeer + wrongDst + badInner + ecnDrop +
 *               rxTooBig
 *         and frames the port delivered (rxFrames) = decapsulated
 */
function dispositions(el: Element): Record<string, number> {
  const c = el.counters() as Record<string, number>;
  const out: Record<string, number> = {};
  for (const k of ["forward", "deliver", "drop"] as const) for (const name of el.spec.ofKind(k)) out[name] = c[name];
  return out;
}

function switchLedger(sw: LearningSwitch, ports: readonly Port[]): Ledger {
  let inFrames = 0;
  for (const p of ports) inFrames += p.rxFrames;
  return { name: "switch", in: inFrames, out: dispositions(sw) };
}

/** stp: in = BPDUs the switch handed over (its `bpdu`). */
function stpLedger(stp: SpanningTree, sw: LearningSwitch): Ledger {
  return { name: "stp", in: sw.counters().bpdu, out: dispositions(stp) };
}

function routerLedger(router: Ipv4Router, internal: readonly InternalPort[]): Ledger {
  let inFrames = router.counters().reassembled;
  for (const p of internal) inFrames += p.txFrames;
  return { name: "router", in: inFrames, out: dispositions(router) };
}

function sum(r: Record<string, number>): number {
  let s = 0;
  for (const v of Object.values(r)) s += v;
  return s;
}

// -----------------------------------------------------------------------------
// A simulated kernel for the tunnel ports' sockets.

function stats(): UdpStats {
  return { rxErrors: 0, rxTruncated: 0, txErrors: 0, lastTxErrno: 0, wakeups: 0, batches: 0, rxMessages: 0 };
}

/** A socket with no file behind it: sends are taken, receives come from land(). */
export class SimSocket implements UdpHandle, RawHandle {
  readonly fd = -1;
  readonly port: number;
  readonly protocol: number;
  readonly hdrIncl = true;
  readonly rcvbuf = 0;
  readonly sndbuf = 0;
  sent = 0;
  constructor(
    readonly udp: UdpOptions | null,
    readonly raw: RawOptions | null,
  ) {
    this.port = udp?.port ?? 0;
    this.protocol = raw?.protocol ?? 17;
  }
  start(): void {}
  stop(): void {}
  close(): void {}
  send(_pool: Buffer, _o: Uint32Array, _l: Uint32Array, _a: Uint32Array, _port: number, _s: Uint32Array | null, count: number): number {
    this.sent += count;
    return count;
  }
  stats(): UdpStats {
    return stats();
  }

  /**
   * Lands messages in the receive slots as recvmmsg would and calls onBatch once:
   * returns how many were too long for a slot (dropped, as MSG_TRUNC).
   */
  land(msgs: Array<{ data: Buffer; from: number; segs: number }>): number {
    const o = (this.udp ?? this.raw) as UdpOptions | RawOptions;
    const rxOffset = o.rxOffset ?? 0;
    const room = o.slotSize - rxOffset;
    let n = 0;
    let truncated = 0;
    for (const m of msgs) {
      if (m.data.length > room) {
        truncated++;
        continue;
      }
      const at = o.rxBase + n * o.slotSize + rxOffset;
      m.data.copy(o.pool, at);
      o.offsets[n] = at;
      o.lengths[n] = m.data.length;
      o.addrs[n] = m.from;
      if (this.udp !== null) {
        this.udp.ports[n] = 8472;
        this.udp.segs[n] = m.segs;
      }
      n++;
    }
    if (this.udp !== null) {
      if (n !== 0) (this.udp.onBatch as (c: number) => void)(n);
    } else if (n !== 0 || truncated !== 0) {
      ((this.raw as RawOptions).onBatch as (c: number, t: number) => void)(n, truncated);
    }
    return truncated;
  }
}

// -----------------------------------------------------------------------------

export interface HarnessOptions {
  element: ElementName;
  seed: number;
  vnet: boolean;
}

/** One element's graph, its generator and its ledgers. */
export class Harness {
  readonly rng: Rng;
  readonly gen: FrameGen;
  rig!: Rig;
  /** Frames (datagrams, packets) pushed so far. */
  frames = 0;
  steps = 0;
  /** Virtual time, ms. */
  t = 1000;
  private lastTick = 1000;
  private readonly thrown: string[] = [];
  private readonly inputs: Array<{ port: Port; where: Where; weight: number }> = [];
  private vxlan: VxlanPort | null = null;
  private ipip: IpipPort | null = null;
  private readonly socks: SimSocket[] = [];
  /** Datagrams/packets handed to the tunnel port. */
  private tunnelIn = 0;
  /** The frames of the current batch, for the failure report. */
  private batch: GenFrame[] = [];
  private batchPort = "";
  readonly world: World;
  private readonly maxLen: number;
  /** The switch harness's spanning tree. */
  private stp: SpanningTree | null = null;

  constructor(readonly opts: HarnessOptions) {
    this.rng = new Rng(opts.seed);
    const memory = opts.vnet ? { slotSize: 16384 + 128, batchSize: 32, keepSent: false } : { keepSent: false };
    this.maxLen = (memory.slotSize ?? 2048) - 64;
    this.world = { macs: [], addrs: [], ports: [], vlans: [] };
    switch (opts.element) {
      case "switch":
        this.buildSwitch(memory);
        break;
      case "router":
        this.buildRouter(memory);
        break;
      case "nat":
        this.buildNat(memory);
        break;
      case "vxlan":
        this.buildVxlan(memory);
        break;
      case "ipip":
        this.buildIpip(memory);
        break;
    }
    this.gen = new FrameGen(this.rng, this.world, { vnet: opts.vnet, maxLen: this.maxLen, bpdus: opts.element === "switch" });
    this.guard();
  }

  get engine(): Engine {
    return this.rig.engine;
  }

  // ---------------------------------------------------------------------------
  // Graphs

  /**
   * Switch only: access ports on VLANs 1, 10, 20, two trunks (one with a native VLAN);
   * spanning tree on every port but a4 (BPDUs in the mix move ports between states);
   * storm control on a1, port security on a2 (sticky) and a3 (shutdown, recovered now
   * and then by the timers), ARP inspection on VLANs 10 and 20 trusting the trunks.
   */
  private buildSwitch(memory: { slotSize?: number; batchSize?: number; keepSent: boolean }): void {
    const engine = new Engine();
    engine.offload = this.opts.vnet;
    engine.clock = () => this.t;
    const names = ["a1", "a2", "a3", "a4", "t1", "t2"];
    const ports = names.map((n) => new MemoryPort(n, { ...memory, offload: this.opts.vnet }));
    for (const p of ports) engine.addPort(p);
    const stations = Array.from({ length: 24 }, (_, i) => 0x020000000100 + i);
    const stp = new SpanningTree(engine.ports, {
      mac: 0x027300000100,
      priority: 32768,
      helloTime: 1,
      forwardDelay: 2,
      maxAge: 6,
      offload: this.opts.vnet,
      ports: { a1: {}, a2: {}, a3: {}, t1: { cost: 4 }, t2: { priority: 16 } },
    });
    this.stp = stp;
    const sw = new LearningSwitch(engine.ports, {
      stp,
      guards: {
        storm: { a1: { broadcast: 20, multicast: 20, unknownUnicast: 20 } },
        security: { a2: { maxMacs: 2, sticky: true }, a3: { maxMacs: 3, violation: "shutdown", macs: [0x0200000000bb] } },
        arpInspection: {
          vlans: [10, 20],
          bindings: [
            { vlan: 10, ip: parseIp("10.0.0.1"), mac: stations[0], source: "static" },
            { vlan: 20, ip: parseIp("10.0.0.2"), mac: stations[9], source: "lab" },
          ],
          trusted: ["t1", "t2"],
        },
      },
      offload: this.opts.vnet,
      // A small table and a short ageing time: the limit and ageing paths are taken.
      maxEntries: 16,
      ageingTime: 2,
      ports: {
        a1: { mode: "access", vlan: 10 },
        a2: { mode: "access", vlan: 10 },
        a3: { mode: "access", vlan: 20 },
        a4: { mode: "access", vlan: 1 },
        t1: { mode: "trunk", allowed: [10, 20, 30], native: 1 },
        t2: { mode: "trunk", allowed: [10, 20] },
      },
      static: [{ mac: 0x0200000000aa, vlan: 10, port: "a1" }],
    });
    for (const p of ports) engine.connect(p, sw);
    engine.addElement(sw);
    engine.addElement(stp);
    engine.start();
    this.world.macs.push(...stations, 0x0200000000aa, 0x0200000000bb);
    this.world.vlans.push(1, 10, 20, 30, 40);
    this.world.addrs.push(parseIp("10.0.0.1"), parseIp("10.0.0.2"), parseIp("10.0.0.255"));
    ports.forEach((p, i) => {
      this.inputs.push({ port: p, where: { macs: stations.slice(i * 4, i * 4 + 4), gw: 0, addrs: [] }, weight: 1 });
    });
    // Only the switch: a rig with no router interfaces.
    this.rig = {
      engine,
      sw,
      router: null as unknown as Ipv4Router,
      ports: Object.fromEntries(ports.map((p) => [p.name, p])),
      internal: {},
      drain: () => ({}),
      tick: () => {},
      counters: () => ({}) as ReturnType<Rig["counters"]>,
    };
  }

  /**
   * A router with two routed ports (eth2 with MTU 1400: fragmentation), an SVI with two
   * hosts and two subnets (proxy ARP on), a static route via a static neighbour and one
   * via a neighbour that never answers (ARP queue, host unreachable).
   */
  private buildRouter(memory: { slotSize?: number; batchSize?: number; keepSent: boolean }): void {
    this.rig = buildRig({
      devices: [
        { name: "h1", vlan: 100 },
        { name: "h2", vlan: 200 },
        { name: "s1", vlan: 300 },
        { name: "s2", vlan: 300 },
      ],
      ifaces: [
        { name: "eth1", mac: 0x020000000101, addrs: ["10.0.1.1/24"], vlan: 100 },
        { name: "eth2", mac: 0x020000000201, mtu: 1400, addrs: ["10.0.2.1/24"], vlan: 200 },
        { name: "svi", mac: 0x020000000301, addrs: ["10.0.3.1/24", "10.0.4.1/24"], vlan: 300, proxyArp: true },
      ],
      routes: [
        { to: "10.9.0.0/16", via: "10.0.2.20" },
        { to: "192.0.2.0/24", via: "10.0.1.20" },
      ],
      neighbours: [{ ip: "10.0.2.20", mac: 0x02bb00000214, iface: "eth2" }],
      vnet: this.opts.vnet,
      memory,
      clock: () => this.t,
    });
    const hosts = {
      h1: { macs: [0x02aa0000010a, 0x02aa0000010b], addrs: ["10.0.1.10", "10.0.1.11"], gw: 0x020000000101 },
      h2: { macs: [0x02bb0000020a, 0x02bb00000214], addrs: ["10.0.2.10", "10.0.2.20"], gw: 0x020000000201 },
      s1: { macs: [0x02cc0000030a], addrs: ["10.0.3.10", "10.0.4.10"], gw: 0x020000000301 },
      s2: { macs: [0x02cc0000030b], addrs: ["10.0.3.11"], gw: 0x020000000301 },
    };
    this.hostsWorld(hosts, ["10.0.1.1", "10.0.2.1", "10.0.3.1", "10.0.4.1", "10.0.1.255", "10.0.3.255", "10.9.1.1", "192.0.2.7", "10.0.3.99", "10.0.4.99"]);
    this.world.vlans.push(100, 200, 300, 1);
  }

  /** The service-nat lab's node: pods, two services and an empty one, masquerade to the outside. */
  private buildNat(memory: { slotSize?: number; batchSize?: number; keepSent: boolean }): void {
    const seed = this.opts.seed;
    const natRng = new Rng(seed ^ 0x5eed);
    const web = { addr: parseIp("10.96.0.10"), proto: 6 as const, port: 80 };
    const backends = [
      { addr: parseIp("10.244.1.2"), port: 80 },
      { addr: parseIp("10.244.1.3"), port: 80 },
    ];
    const echo = [{ addr: parseIp("192.0.2.10"), port: 7007 }];
    this.rig = buildRig({
      devices: [
        { name: "client", vlan: 10 },
        { name: "web1", vlan: 10 },
        { name: "web2", vlan: 10 },
        { name: "ext", vlan: 20 },
      ],
      ifaces: [
        { name: "cni0", mac: 0x020000000a01, addrs: ["10.244.1.1/24"], vlan: 10 },
        { name: "eth0", mac: 0x020000001401, mtu: 1400, addrs: ["192.0.2.1/24"], vlan: 20 },
      ],
      vnet: this.opts.vnet,
      memory,
      clock: () => this.t,
      // A 2 s reassembly timeout instead of 30: the slots that bogus fragments hold (the
      // generator makes many) free up within a run, so whole datagrams get reassembled too.
      router: { reassembly: { timeoutMs: 2000 } },
      nat: (ifIndex) =>
        new Nat(
          {
            snat: [{ sources: [{ addr: parseIp("10.244.1.0"), prefixLen: 24 }], outIf: ifIndex("eth0"), toAddr: parseIp("192.0.2.1") }],
            services: [
              { name: "web", vip: web.addr, proto: 6, port: 80, backends, algorithm: "random" },
              { name: "none", vip: parseIp("10.96.0.11"), proto: 6, port: 80, backends: [], algorithm: "random" },
              { name: "echo", vip: parseIp("10.96.0.12"), proto: 17, port: 7, backends: echo, algorithm: "roundrobin" },
            ],
            // Small: the table fills and entries expire within a run.
            maxEntries: 512,
            timeouts: { udp: 5, udpStream: 10, icmp: 5, tcpSynSent: 10, tcpEstablished: 60, tcpTimeWait: 5 },
            hashSeed: seed,
          },
          () => natRng.float(),
        ),
    });
    this.hostsWorld(
      {
        client: { macs: [0x02aa00000104], addrs: ["10.244.1.4"], gw: 0x020000000a01 },
        web1: { macs: [0x02aa00000102], addrs: ["10.244.1.2"], gw: 0x020000000a01 },
        web2: { macs: [0x02aa00000103], addrs: ["10.244.1.3"], gw: 0x020000000a01 },
        ext: { macs: [0x02bb0000140a], addrs: ["192.0.2.10", "198.51.100.1"], gw: 0x020000001401 },
      },
      ["10.244.1.1", "192.0.2.1", "10.96.0.10", "10.96.0.11", "10.96.0.12", "10.96.0.12", "10.96.0.10", "10.244.1.255"],
    );
    this.world.ports.push(80, 7, 7007, 80, 7);
    this.world.backends = new Map([
      [web.addr, backends],
      [parseIp("10.96.0.12"), [{ addr: parseIp("192.0.2.10"), port: 7007 }]],
    ]);
    this.world.masq = { net: parseIp("10.244.1.0"), len: 24, addr: parseIp("192.0.2.1") };
    this.world.vlans.push(10, 20);
  }

  /**
   * flannel's VXLAN node: pods on cni0, the VXLAN port flannel.1 (VNI 1, UDP 8472) behind
   * the router interface of the same name, a static FDB entry and neighbour for the other
   * node, one flood remote, ARP suppression for one address.
   */
  private buildVxlan(memory: { slotSize?: number; batchSize?: number; keepSent: boolean }): void {
    const node2Mac = 0x0e0000000002;
    const vx = new VxlanPort("vxlan0", {
      vni: 1,
      dstPort: 8472,
      localAddr: "192.168.0.1",
      remotes: ["192.168.0.3"],
      fdb: [{ mac: "0e:00:00:00:00:02", remote: "192.168.0.2" }],
      arpSuppress: [{ ip: "10.244.2.9", mac: "0e:00:00:00:00:09" }],
      maxEntries: 32,
      openSocket: (o) => this.sim(o, null),
    });
    this.vxlan = vx;
    this.rig = buildRig({
      devices: [
        { name: "pod1a", vlan: 10 },
        { name: "pod1b", vlan: 10 },
        { name: "vxlan0", vlan: 20, port: vx },
      ],
      ifaces: [
        { name: "cni0", mac: 0x020000000a01, addrs: ["10.244.1.1/24"], vlan: 10 },
        { name: "flannel.1", mac: 0x0e0000000001, addrs: ["10.244.1.0/32"], vlan: 20 },
      ],
      routes: [{ to: "10.244.2.0/24", via: "10.244.2.0", dev: "flannel.1" }],
      neighbours: [{ ip: "10.244.2.0", mac: node2Mac, iface: "flannel.1" }],
      vnet: this.opts.vnet,
      memory,
      clock: () => this.t,
    });
    this.hostsWorld(
      {
        pod1a: { macs: [0x02aa00000102], addrs: ["10.244.1.2"], gw: 0x020000000a01 },
        pod1b: { macs: [0x02aa00000103], addrs: ["10.244.1.3"], gw: 0x020000000a01 },
      },
      ["10.244.1.1", "10.244.1.0", "10.244.2.2", "10.244.2.3", "10.244.2.9", "10.244.2.0"],
    );
    this.world.macs.push(node2Mac, 0x0e0000000001, 0x0e0000000003);
    this.world.vlans.push(10, 20);
  }

  /** Calico's IPIP node: pods on cni0, tunl0 (IPIP port) with a route via the other node. */
  private buildIpip(memory: { slotSize?: number; batchSize?: number; keepSent: boolean }): void {
    const tunMac = 0x020000001401;
    const ip = new IpipPort("ipip0", {
      localAddr: "192.168.0.1",
      peers: ["192.168.0.2", "192.168.0.3"],
      mac: tunMac,
      openSocket: (o) => this.sim(null, o),
    });
    this.ipip = ip;
    this.rig = buildRig({
      devices: [
        { name: "pod1a", vlan: 10 },
        { name: "pod1b", vlan: 10 },
        { name: "ipip0", vlan: 20, port: ip },
      ],
      ifaces: [
        { name: "cni0", mac: 0x020000000a01, addrs: ["10.244.1.1/24"], vlan: 10 },
        { name: "tunl0", mac: tunMac, mtu: 1480, addrs: ["10.244.1.64/32"], vlan: 20 },
      ],
      routes: [
        { to: "10.244.2.0/24", via: "192.168.0.2", dev: "tunl0" },
        { to: "10.244.3.0/24", via: "192.168.0.3", dev: "tunl0" },
      ],
      // As the node does for routes through an IPIP port: static neighbours naming the remote node.
      neighbours: [
        { ip: "192.168.0.2", mac: ipipNeighbourMac(parseIp("192.168.0.2")), iface: "tunl0" },
        { ip: "192.168.0.3", mac: ipipNeighbourMac(parseIp("192.168.0.3")), iface: "tunl0" },
      ],
      vnet: this.opts.vnet,
      memory,
      clock: () => this.t,
    });
    this.hostsWorld(
      {
        pod1a: { macs: [0x02aa00000102], addrs: ["10.244.1.2"], gw: 0x020000000a01 },
        pod1b: { macs: [0x02aa00000103], addrs: ["10.244.1.3"], gw: 0x020000000a01 },
      },
      ["10.244.1.1", "10.244.1.64", "10.244.2.2", "10.244.3.3", "192.168.0.2"],
    );
    this.world.vlans.push(10, 20);
  }

  private sim(udp: UdpOptions | null, raw: RawOptions | null): SimSocket {
    const s = new SimSocket(udp, raw);
    this.socks.push(s);
    return s;
  }

  /** Inputs and world from the hosts behind the MemoryPorts. */
  private hostsWorld(hosts: Record<string, { macs: number[]; addrs: string[]; gw: number }>, extra: string[]): void {
    for (const [name, h] of Object.entries(hosts)) {
      const addrs = h.addrs.map(parseIp);
      this.inputs.push({ port: this.rig.ports[name], where: { macs: h.macs, gw: h.gw, addrs }, weight: 1 });
      this.world.macs.push(...h.macs, h.gw);
      this.world.addrs.push(...addrs);
    }
    this.world.addrs.push(...extra.map(parseIp));
  }

  /**
   * Routes every call into the switch and the router through a guard that records an
   * exception (element, message, stack) before the Engine's catch sees it.
   */
  private guard(): void {
    const sw = this.rig.sw;
    const thrown = this.thrown;
    const wrap = (name: string, el: { process(p: Port, f: FrameList, b: Buffer, now: number): void }) => ({
      process(p: Port, f: FrameList, b: Buffer, now: number): void {
        try {
          el.process(p, f, b, now);
        } catch (e) {
          thrown.push(`${name}.process threw: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
          throw e;
        }
      },
    });
    const gsw = wrap("LearningSwitch", sw);
    const engine = this.rig.engine;
    for (const p of engine.ports) if (p.kind !== "internal") engine.connect(p, gsw);
    for (const p of Object.values(this.rig.internal)) {
      if (this.rig.router) p.link(gsw, wrap("Ipv4Router", this.rig.router));
    }
  }

  // ---------------------------------------------------------------------------
  // Driving

  /** One batch: time moves on, timers run, then up to 32 frames enter one port. */
  step(maxFrames: number): void {
    const r = this.rng;
    this.steps++;
    this.t += r.chance(0.002) ? r.range(1000, 40_000) : r.range(0, 20);
    if (this.t - this.lastTick >= 200) {
      this.lastTick = this.t;
      const router = this.rig.router;
      const now = this.t;
      this.batch = [];
      this.batchPort = "(timers)";
      const stp = this.stp;
      const a3 = this.rig.ports.a3;
      const recover = stp !== null && a3 !== undefined && r.chance(0.1);
      this.run(() => {
        if (router) this.engine.runPass(() => router.tick(now));
        if (stp) this.engine.runPass((_p, t) => stp.tick(t));
        if (recover) this.engine.runPass((_p, t) => this.rig.sw.guards.recover(a3.index, t));
        this.rig.sw.age(now);
      });
      this.check();
    }
    const want = Math.min(maxFrames, r.chance(0.5) ? 1 + r.int(4) : 1 + r.int(32));
    const tunnel = this.vxlan ?? this.ipip;
    if (tunnel !== null && r.chance(0.6)) {
      this.stepTunnel(want);
    } else {
      // Fragments of a datagram mostly follow the first through its port (reassembly).
      const fw = this.gen.fragWhere;
      const input =
        this.gen.fragPending && fw !== null && r.chance(0.8) ? (this.inputs.find((x) => x.where === fw) ?? r.pick(this.inputs)) : r.pick(this.inputs);
      const frames: GenFrame[] = [];
      for (let i = 0; i < want; i++) frames.push(this.gen.frame(input.where));
      this.batch = frames;
      this.batchPort = input.port.name;
      const p = input.port as MemoryPort;
      this.frames += frames.length;
      this.run(() => p.inject(frames.map((g) => (g.vnet ? Buffer.concat([g.vnet, g.frame]) : g.frame))));
    }
    this.check();
  }

  /** Datagrams (VXLAN: some as GRO trains) or IPIP packets from the underlay. */
  private stepTunnel(want: number): void {
    const r = this.rng;
    const sock = this.socks.find((s) => (s.udp?.onBatch ?? s.raw?.onBatch) !== undefined) as SimSocket;
    const remote = {
      macs: [0x0e0000000002, 0x0e0000000003, 0x02dd00000001],
      gw: this.vxlan ? 0x0e0000000001 : 0,
      addrs: [parseIp("10.244.2.2"), parseIp("10.244.3.3")],
    };
    const msgs: Array<{ data: Buffer; from: number; segs: number }> = [];
    const frames: GenFrame[] = [];
    const peers = [parseIp("192.168.0.2"), parseIp("192.168.0.3")];
    const from = (): number => (r.chance(0.9) ? r.pick(peers) : r.u32());
    let count = 0;
    if (this.vxlan !== null) {
      const vni = this.vxlan.vni;
      for (let i = 0; i < want && msgs.length < 64; i++) {
        if (r.chance(0.15)) {
          // A UDP GRO message: datagrams of one size back to back (kernel: up to 64; more here).
          const n = r.chance(0.9) ? r.range(2, 20) : r.range(60, 80);
          const mss = r.pick([1398, 1448, 100, 8]);
          const parts = r.chance(0.7) ? this.gen.tcpTrain(remote, n, mss) : Array.from({ length: n }, () => this.gen.frame(remote).frame);
          const dgrams = parts.map((f) => this.gen.vxlanDatagram(vni, f).dgram);
          const seg = Math.max(...dgrams.map((d) => d.length));
          // Every datagram but the last is exactly `seg` bytes (pad or cut to it).
          const data = Buffer.concat(dgrams.map((d, k) => (k === dgrams.length - 1 ? d : Buffer.concat([d, Buffer.alloc(seg - d.length)]))));
          const body = data.length > 65507 ? data.subarray(0, 65507) : data;
          msgs.push({ data: body, from: from(), segs: seg });
          count += Math.ceil(body.length / seg) || 1;
          frames.push({ frame: body.subarray(0, 64), vnet: null, what: `gro train ${n}x${seg}` });
        } else {
          const g = this.gen.frame(remote);
          // Now and then an inner frame longer than an output slot holds.
          const inner = r.chance(0.01) ? Buffer.concat([g.frame, r.bytes(this.vxlan.room)]) : g.frame;
          const d = this.gen.vxlanDatagram(vni, inner);
          // A UDP datagram holds at most 65507 bytes: the kernel delivers nothing longer.
          if (d.dgram.length > 65507) d.dgram = d.dgram.subarray(0, 65507);
          msgs.push({ data: d.dgram, from: from(), segs: r.chance(0.02) ? r.int(d.dgram.length + 2) : 0 });
          const m = msgs[msgs.length - 1];
          const seg = m.segs !== 0 && m.segs < m.data.length ? m.segs : m.data.length;
          count += m.data.length === 0 ? 1 : Math.ceil(m.data.length / seg);
          frames.push({ frame: d.dgram, vnet: null, what: `${d.what} ${g.what}` });
        }
      }
    } else {
      const ip = this.ipip as IpipPort;
      for (let i = 0; i < want; i++) {
        let inner: Buffer;
        let what: string;
        if (r.chance(0.05)) {
          inner = r.bytes(r.skewed(100));
          what = "random inner";
        } else {
          const p = this.gen.ipPacket(remote);
          inner = p.pkt;
          what = p.what;
        }
        if (r.chance(0.02)) inner = Buffer.concat([inner, r.bytes(ip.slotSize)]); // too long for a slot
        const o = this.gen.ipipPacket(inner, peers, ip.localAddr);
        msgs.push({ data: o.pkt, from: r.chance(0.95) ? (o.pkt.length >= 16 ? o.pkt.readUInt32BE(12) : 0) : r.u32(), segs: 0 });
        frames.push({ frame: o.pkt, vnet: null, what: `${o.what} ${what}` });
        count++;
      }
    }
    this.batch = frames;
    this.batchPort = (this.vxlan ?? this.ipip)?.name ?? "";
    this.frames += count;
    this.tunnelIn += count;
    this.run(() => sock.land(msgs));
  }

  /** Runs `fn`; an exception from it is a finding (it left an element). */
  private run(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.thrown.push(`exception left the graph: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    }
  }

  /** ARP answers of the VXLAN port are delivered on the next turn of the event loop. */
  async settle(): Promise<void> {
    if (this.vxlan !== null) await new Promise<void>((res) => setImmediate(res));
  }

  // ---------------------------------------------------------------------------
  // Checks

  ledgers(): Ledger[] {
    const out: Ledger[] = [switchLedger(this.rig.sw, this.engine.ports)];
    if (this.stp !== null) out.push(stpLedger(this.stp, this.rig.sw));
    if (this.rig.router) out.push(routerLedger(this.rig.router, Object.values(this.rig.internal)));
    const vx = this.vxlan?.tunnelCounters() ?? null;
    if (vx !== null) {
      out.push({
        name: "vxlan decapsulation",
        in: this.tunnelIn,
        out: { decapsulated: vx.decapsulated, badHeader: vx.badHeader, vniMismatch: vx.vniMismatch, runt: vx.runt, rxTooBig: vx.rxTooBig },
      });
      out.push({
        name: "vxlan delivery",
        in: vx.decapsulated - vx.coalesced + vx.arpSuppressed,
        out: { rxFrames: (this.vxlan as VxlanPort).rxFrames },
      });
    }
    const ip = this.ipip?.tunnelCounters() ?? null;
    if (ip !== null) {
      out.push({
        name: "ipip decapsulation",
        in: this.tunnelIn,
        out: {
          decapsulated: ip.decapsulated,
          badOuter: ip.badOuter,
          unknownPeer: ip.unknownPeer,
          wrongDst: ip.wrongDst,
          badInner: ip.badInner,
          ecnDrop: ip.ecnDrop,
          rxTooBig: ip.rxTooBig,
        },
      });
      out.push({ name: "ipip delivery", in: ip.decapsulated, out: { rxFrames: (this.ipip as IpipPort).rxFrames } });
    }
    return out;
  }

  /** Throws a FuzzFailure describing the batch when an exception was seen or a ledger is off. */
  check(): void {
    const e = this.engine;
    const problems: string[] = [...this.thrown];
    if (e.internalErrors !== 0) problems.push(`Engine.internalErrors = ${e.internalErrors}: ${e.lastError}`);
    if (e.roundsExceeded !== 0) problems.push(`Engine.roundsExceeded = ${e.roundsExceeded} (frames dropped uncounted between elements)`);
    // The VXLAN port's ARP answers are still in flight until settle().
    for (const l of this.ledgers()) {
      if (l.name === "vxlan delivery" && this.vxlanRepliesPending()) continue;
      const s = sum(l.out);
      if (s !== l.in) problems.push(`${l.name}: ${l.in} in, ${s} accounted for (${fmt(l.out)})`);
    }
    if (problems.length === 0) return;
    this.thrown.length = 0;
    throw new FuzzFailure(this.report(problems));
  }

  private vxlanRepliesPending(): boolean {
    const vx = this.vxlan;
    return vx !== null && (vx as unknown as { replyCount: number }).replyCount !== 0;
  }

  report(problems: string[]): string {
    const o = this.opts;
    const lines = [
      `fuzz ${o.element}${o.vnet ? " (offloads on)" : ""}, seed ${o.seed}: after ${this.frames} frames, step ${this.steps}, t=${this.t} ms`,
      ...problems.map((p) => `  ${p}`),
      `  the batch (${this.batch.length} frames into ${this.batchPort}):`,
      ...this.batch.slice(0, 40).map((g, i) => `    #${i} ${g.frame.length} B ${g.what}: ${frameHex(g).slice(0, 400)}`),
      `  reproduce: npm run fuzz -- --element ${o.element} --seed ${o.seed} --frames ${this.frames}${o.vnet ? " --offload on" : " --offload off"}`,
    ];
    return lines.join("\n");
  }

  /** Counter totals, for the summary of a run. */
  summary(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    for (const l of this.ledgers()) out[l.name] = { in: l.in, ...l.out };
    // What the frames reached beyond the first checks (for a long run's report).
    const r = this.rig.router;
    if (r) {
      const c = r.counters();
      out["router detail"] = nonZero({
        echoReplies: c.echoReplies,
        icmpErrors: c.icmpErrors,
        icmpRateLimited: c.icmpRateLimited,
        icmpSuppressed: c.icmpSuppressed,
        fragmented: c.fragmented,
        fragFailed: c.fragFailed,
        reassembled: c.reassembled,
        reasmOverlap: c.reasmOverlap,
        reasmDropped: c.reasmDropped,
        reasmTimeout: c.reasmTimeout,
        refragmented: c.refragmented,
        tcpResets: c.tcpResets,
        arpRepliesSent: c.arpRepliesSent,
        hostUnreachable: c.hostUnreachable,
        arpQueueFull: c.arpQueueFull,
        outNoRoute: c.outNoRoute,
        scratchFull: c.scratchFull,
        localDropped: c.localDropped,
        protoUnreachable: c.protoUnreachable,
        portUnreachable: c.portUnreachable,
      });
      if (r.nat) out.nat = nonZero(r.nat.counters());
    }
    if (this.vxlan) out["vxlan detail"] = nonZero(this.vxlan.tunnelCounters());
    if (this.ipip) out["ipip detail"] = nonZero(this.ipip.tunnelCounters());
    const offl: Record<string, number> = {};
    for (const p of this.engine.ports) {
      const c = p.txOffload?.counters();
      if (c) for (const [k, v] of Object.entries(c)) offl[k] = (offl[k] ?? 0) + v;
    }
    if (Object.keys(offl).length) out["software offloads"] = nonZero(offl);
    return out;
  }
}

function nonZero(r: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(r).filter(([, v]) => v !== 0));
}

function fmt(r: Record<string, number>): string {
  return Object.entries(r)
    .filter(([, v]) => v !== 0)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
}

/**
 * Runs `frames` frames through one element's graph: half with offloads off, half on
 * (the node's default), each half from its own seed derived from `seed`. Returns the
 * ledgers of both halves; throws a FuzzFailure at the first problem.
 */
export async function fuzzElement(
  element: ElementName,
  seed: number,
  frames: number,
  modes: boolean[] = [false, true],
): Promise<Array<{ vnet: boolean; seed: number; steps: number; summary: Record<string, Record<string, number>> }>> {
  const out = [];
  for (let m = 0; m < modes.length; m++) {
    const vnet = modes[m];
    const s = (seed + m * 0x9e3779b1) >>> 0;
    const h = new Harness({ element, seed: s, vnet });
    const want = Math.ceil(frames / modes.length);
    while (h.frames < want) {
      h.step(want - h.frames);
      if ((h.steps & 255) === 0) await h.settle();
    }
    await h.settle();
    h.check();
    h.engine.stop();
    out.push({ vnet, seed: s, steps: h.steps, summary: h.summary() });
  }
  return out;
}
