/**
 * The graph builder: turns a node's config into its ports, elements and the edges
 * between them, and can describe what it built (`tapnet show graph`).
 *
 *   device port ──▶ switch ──▶ device port          (every port: one input, one output)
 *   switch ──[internal port IF]──▶ router ──[IF]──▶ switch   (a router interface)
 *   router.prerouting / router.postrouting ──▶ nat   (netfilter-style hooks)
 *   switch.bridged ──▶ nat                           (br_netfilter, with services)
 *   switch ──[BPDUs]──▶ stp ──▶ device port         (spanning tree, when the node runs it)
 *
 * The node process, the element test rigs and the benchmark build graphs only through
 * here: no element wires itself to another. What a device port is (a TAP, a libpcap
 * port, a tunnel, a test's memory port) is the caller's `makePort`.
 */
import type { ElementInfo } from "../core/element.js";
import { Engine } from "../core/engine.js";
import { InternalPort } from "../core/internal-port.js";
import type { Port } from "../core/port.js";
import { Ipv4Router, type RouterOptions } from "../elements/router/ipv4-router.js";
import { LearningSwitch, type SwitchPortMode } from "../elements/learning-switch.js";
import { SoftOffload } from "../io/soft-offload.js";
import { Nat, type NatConfig } from "../elements/nat.js";
import { SpanningTree, type StpPortConfig } from "../elements/stp.js";
import type { GuardConfig } from "../elements/switch-guards.js";
import { parseCidr, parseIp } from "../wire/ipv4addr.js";
import { parseMac } from "../wire/mac.js";
import type { NodeConfig, NodePortConfig } from "./config.js";

export interface GraphEnv {
  /** Makes a device port from its config (the node: TAPs, libpcap, tunnels). */
  makePort(pc: NodePortConfig, config: NodeConfig): Port;
  /** The pass clock (tests: a virtual one). */
  clock?: () => number;
  /** Router options the config does not carry (timers, rate limits: tests). */
  router?: Omit<RouterOptions, "nat" | "offload">;
  /** NAT options the config does not carry (hash seed, port range, INVALID policy). */
  nat?: Partial<Pick<NatConfig, "hashSeed" | "portRange" | "invalidPolicy">>;
  /**
   * A NAT made by the caller instead of from the config (tests that need rules the
   * topology cannot say); `ifIndex` gives a router interface's index by name.
   */
  makeNat?(ifIndex: (name: string) => number): Nat;
}

export interface GraphEdge {
  from: string;
  to: string;
  /** The port or hook the frames cross. */
  via?: string;
}

export interface GraphDescription {
  node: string;
  offload: boolean;
  ports: Array<{ name: string; kind: string; ifname: string; mode: string }>;
  elements: ElementInfo[];
  edges: GraphEdge[];
}

export class NodeGraph {
  readonly engine = new Engine();
  readonly sw: LearningSwitch;
  readonly stp: SpanningTree | null = null;
  readonly router: Ipv4Router | null = null;
  nat: Nat | null = null;
  /** The router's interfaces, as internal ports of the switch. */
  readonly internal: InternalPort[] = [];
  /** Each port's VLAN mode on the switch. */
  readonly modes: Record<string, SwitchPortMode> = {};

  constructor(
    readonly config: NodeConfig,
    private readonly env: GraphEnv,
  ) {
    const rc = config.router;
    const offload = config.offload === true;
    const engine = this.engine;
    engine.offload = offload;
    if (env.clock) engine.clock = env.clock;
    const devices: Port[] = [];
    for (const pc of config.ports) {
      const p = env.makePort(pc, config);
      // Offloads through a device that takes no virtio-net header: finished in software.
      if (offload && !p.deviceOffload) p.txOffload = new SoftOffload();
      engine.addPort(p);
      devices.push(p);
      this.modes[pc.name] = pc.vlan;
      if (pc.impair?.out) engine.setImpairment(p, "out", pc.impair.out);
      if (pc.impair?.in) engine.setImpairment(p, "in", pc.impair.in);
    }
    for (const i of rc?.interfaces ?? []) {
      const p = new InternalPort(i.name, parseMac(i.mac), i.mtu);
      engine.addPort(p);
      this.modes[i.name] = { mode: "access", vlan: i.vlan };
      this.internal.push(p);
    }
    const ifIndex = (name: string): number => {
      const k = (rc?.interfaces ?? []).findIndex((x) => x.name === name);
      if (k < 0) throw new Error(`no router interface '${name}'`);
      return k;
    };
    if (rc && (env.makeNat || rc.nat || rc.services.length)) this.nat = env.makeNat ? env.makeNat(ifIndex) : natFromConfig(rc, ifIndex, env.nat);
    const nat = this.nat;
    const sc = config.switch;
    if (sc.stp) {
      // Every switched device port takes part; routed ports and router interfaces are not bridge ports.
      const ports: Record<string, StpPortConfig> = {};
      for (const pc of config.ports) if (!pc.routed) ports[pc.name] = pc.stp ?? {};
      this.stp = new SpanningTree(engine.ports, { ...sc.stp, mac: parseMac(sc.stp.mac), ports, offload });
    }
    this.sw = new LearningSwitch(engine.ports, {
      ageingTime: config.switch.ageingTime,
      maxEntries: config.switch.maxEntries,
      offload,
      ports: this.modes,
      static: [
        ...config.switch.static.map((s) => ({ mac: parseMac(s.mac), vlan: s.vlan, port: s.port })),
        // The router's own MACs live on its ports: never flooded, never learned elsewhere.
        ...(rc?.interfaces ?? []).map((i) => ({ mac: parseMac(i.mac), vlan: i.vlan, port: i.name })),
      ],
      // Like br_netfilter under kube-proxy: replies a backend bridges straight to a
      // client on its own segment still get the VIP back as their source.
      bridgeHook:
        nat !== null && nat.services().length > 0
          ? {
              vlans: (rc?.interfaces ?? []).map((i) => i.vlan),
              sink: (buf, ipOff, ipLen, now, partial) => void nat.bridged(buf, ipOff, ipLen, now, partial),
              traceStep: () => nat.traceBridged(),
            }
          : undefined,
      stp: this.stp ?? undefined,
      guards: guardConfig(
        config,
        (rc?.interfaces ?? []).map((i) => i.name),
      ),
    });
    for (const p of devices) engine.connect(p, this.sw);
    engine.addElement(this.sw);
    if (this.stp) engine.addElement(this.stp);
    if (rc) {
      const router = new Ipv4Router(
        rc.interfaces.map((i, k) => ({
          name: i.name,
          mac: parseMac(i.mac),
          mtu: i.mtu,
          addresses: i.addresses.map((a) => {
            const c = parseCidr(a);
            return { addr: c.addr, prefixLen: c.prefixLen };
          }),
          proxyArp: i.proxyArp,
          sendRedirects: i.sendRedirects ?? true,
          acceptSourceRoute: i.acceptSourceRoute ?? false,
          port: this.internal[k],
          dhcp: i.dhcp,
        })),
        { ...env.router, ...(rc.icmp ? { icmpRatelimitMs: rc.icmp.ratelimit, icmpRatemask: rc.icmp.ratemask } : {}), nat, offload, clusterDns: rc.clusterDns },
      );
      for (const p of this.internal) p.link(this.sw, router);
      for (const r of rc.routes) {
        const to = parseCidr(r.to);
        const via = r.via === undefined ? 0 : parseIp(r.via);
        const k = r.dev !== undefined ? router.ifaces.findIndex((i) => i.name === r.dev) : router.connectedIf(via);
        if (k < 0)
          throw new Error(
            `route ${r.to}${r.via ? ` via ${r.via}` : ""}: ${r.dev !== undefined ? `no interface '${r.dev}'` : "the next hop is not on a connected subnet"}`,
          );
        router.addRoute({ prefix: to.network, prefixLen: to.prefixLen, gateway: via, ifIndex: k, onlink: r.onlink }, r.proto ?? "static");
        // A port with no ARP behind it (IPIP) names its next hops by static entries.
        const routed = config.ports.findIndex((p) => p.routed === router.ifaces[k].name);
        const mac = routed >= 0 && via !== 0 ? devices[routed].nextHopMac(via) : null;
        if (mac !== null) router.addStaticNeighbour(k, via, mac);
      }
      for (const nb of rc.neighbors) {
        const k = router.ifaces.findIndex((i) => i.name === nb.interface);
        if (k < 0) throw new Error(`neighbour ${nb.ip}: no interface '${nb.interface}'`);
        router.addStaticNeighbour(k, parseIp(nb.ip), parseMac(nb.mac));
      }
      engine.addElement(router);
      this.router = router;
    }
  }

  /**
   * Adds a device port to the running node (between passes): made like the ports the
   * node started with, opened in the pool's spare room, connected to the switch, a
   * member of its VLANs. On failure nothing is left of it.
   */
  addPort(pc: NodePortConfig): Port {
    const engine = this.engine;
    if (engine.port(pc.name)) throw new Error(`node ${this.config.node} already has a port '${pc.name}'`);
    const p = this.env.makePort(pc, this.config);
    if (engine.offload && !p.deviceOffload) p.txOffload = new SoftOffload();
    engine.addPort(p, this.sw);
    try {
      this.sw.addPort(p, pc.vlan);
      // A bridge port joins the spanning tree (blocking, then listening); BPDUs go in a pass.
      const stp = this.stp;
      if (stp && !pc.routed) engine.runPass((_pool, now) => stp.addPort(p.index, pc.stp ?? {}, now));
    } catch (e) {
      engine.removePort(p);
      throw e;
    }
    this.modes[pc.name] = pc.vlan;
    this.config.ports.push(pc);
    return p;
  }

  /**
   * The node's NAT, made now if it has none (its first service or masquerade rule at
   * runtime): given to the router's hooks, and with `services` to the switch's bridge hook.
   */
  ensureNat(services: boolean): Nat {
    const router = this.router;
    if (!router) throw new Error(`node ${this.config.node} has no router interfaces: NAT and services need one`);
    let nat = this.nat;
    if (nat === null) {
      nat = new Nat({ ...this.env.nat, snat: [], services: [] });
      router.attachNat(nat);
      this.nat = nat;
    }
    if (services && !this.sw.hasBridgeHook) {
      const n = nat;
      this.sw.setBridgeHook({
        vlans: router.ifaces.map((_, k) => this.modes[this.internal[k].name] as { vlan: number }).map((m) => m.vlan),
        sink: (buf, ipOff, ipLen, now, partial) => void n.bridged(buf, ipOff, ipLen, now, partial),
        traceStep: () => n.traceBridged(),
      });
    }
    return nat;
  }

  /** A port set administratively up or down: to spanning tree, a link coming and going (802.1D 8.8.2-8.8.3). */
  setPortUp(p: Port, up: boolean): void {
    p.adminUp = up;
    const stp = this.stp;
    if (stp?.takes(p.index)) this.engine.runPass((_pool, now) => stp.setPortEnabled(p.index, up, now));
  }

  /** Removes a device port from the running node; what the switch learned on it goes. */
  removePort(name: string): void {
    const p = this.engine.port(name);
    if (!p || p.kind === "internal") throw new Error(`node ${this.config.node} has no device port '${name}'`);
    const pc = this.config.ports.find((c) => c.name === name);
    if (pc?.routed) throw new Error(`port '${name}' is router interface ${pc.routed}'s routed port: it cannot be removed while the interface exists`);
    // Its guards and its place in the spanning tree go first (the tree may send BPDUs: a pass).
    this.engine.runPass((_pool, now) => this.sw.guards.resetPort(p.index, now));
    this.sw.removePort(p);
    this.engine.removePort(p);
    delete this.modes[name];
    this.config.ports = this.config.ports.filter((c) => c.name !== name);
  }

  /** Names, kinds and edges of what was built (`tapnet show graph`). */
  describe(): GraphDescription {
    const cfg = new Map(this.config.ports.map((p) => [p.name, p]));
    const ports = this.engine.livePorts().map((p) => {
      const m = this.modes[p.name];
      const routed = cfg.get(p.name)?.routed;
      const mode =
        p.kind === "internal"
          ? `router interface, vlan ${(m as { vlan: number }).vlan}`
          : routed
            ? `routed (${routed})`
            : m.mode === "access"
              ? `access vlan ${m.vlan}`
              : `trunk ${m.allowed.join(",")}${m.native !== undefined ? ` native ${m.native}` : ""}`;
      return { name: p.name, kind: p.kind, ifname: p.info().ifname, mode };
    });
    const elements: ElementInfo[] = [this.sw.describe()];
    const edges: GraphEdge[] = [];
    for (const p of this.engine.livePorts()) {
      if (p.kind === "internal") continue;
      edges.push({ from: `port:${p.name}`, to: this.sw.name }, { from: this.sw.name, to: `port:${p.name}` });
    }
    const stp = this.stp;
    if (stp) {
      const info = stp.describe();
      elements.push(info);
      edges.push({ from: this.sw.name, to: stp.name, via: "BPDUs" }, ...info.outputs.map((o) => ({ from: stp.name, to: `port:${o}` })));
    }
    const router = this.router;
    if (router) {
      elements.push(router.describe());
      for (const i of router.ifaces) {
        edges.push({ from: this.sw.name, to: router.name, via: i.name }, { from: router.name, to: this.sw.name, via: i.name });
      }
    }
    const nat = this.nat;
    if (nat && router) {
      const hooks = [`${router.name}.prerouting`, `${router.name}.postrouting`];
      if (this.sw.hasBridgeHook) hooks.push(`${this.sw.name}.bridged`);
      elements.push({ ...nat.describe(), hooks });
      for (const h of hooks) edges.push({ from: h.split(".")[0], to: nat.name, via: h.split(".")[1] });
    }
    return { node: this.config.node, offload: this.engine.offload, ports, elements, edges };
  }
}

/**
 * The switch's guards from the node's config: storm control and port security per port;
 * ARP inspection trusting ports that face other switches and the router's interfaces.
 */
function guardConfig(config: NodeConfig, routerIfaces: string[]): GuardConfig {
  const ai = config.switch.arpInspection;
  return {
    storm: Object.fromEntries(config.ports.flatMap((p) => (p.stormControl ? [[p.name, p.stormControl]] : []))),
    security: Object.fromEntries(
      config.ports.flatMap((p) => (p.portSecurity ? [[p.name, { ...p.portSecurity, macs: p.portSecurity.macs.map(parseMac) }]] : [])),
    ),
    arpInspection: ai && {
      vlans: ai.vlans,
      bindings: ai.bindings.map((b) => ({ vlan: b.vlan, ip: parseIp(b.ip), mac: parseMac(b.mac), source: "static" as const })),
      trusted: [...config.ports.filter((p) => p.trusted === true || p.routed !== undefined).map((p) => p.name), ...routerIfaces],
    },
  };
}

/** A NAT from the node's config: masquerade rules and services. */
function natFromConfig(rc: NonNullable<NodeConfig["router"]>, ifIndex: (name: string) => number, extra: GraphEnv["nat"] = {}): Nat {
  return new Nat({
    ...extra,
    snat: (rc.nat?.masquerade ?? []).map((m) => {
      const outIf = ifIndex(m.interface);
      return {
        sources: m.sources.map((c) => {
          const p = parseCidr(c);
          return { addr: p.network, prefixLen: p.prefixLen };
        }),
        outIf,
        // MASQUERADE: the out interface's (first) address.
        toAddr: parseCidr(rc.interfaces[outIf].addresses[0]).addr,
      };
    }),
    services: rc.services.map((sv) => ({
      name: sv.name,
      vip: parseIp(sv.vip),
      proto: sv.protocol === "tcp" ? 6 : 17,
      port: sv.port,
      backends: sv.backends.map((b) => {
        const [a, p] = b.split(":");
        return { addr: parseIp(a), port: Number(p) };
      }),
      algorithm: sv.algorithm,
    })),
    maxEntries: rc.nat?.maxEntries,
    timeouts: rc.nat?.timeouts,
  });
}

export function buildGraph(config: NodeConfig, env: GraphEnv): NodeGraph {
  return new NodeGraph(config, env);
}
