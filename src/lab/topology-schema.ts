/**
 * The topology file's schema (zod) and the model helpers every part of the lab builder
 * shares: ports of a node, the underlay port, kernel nodes, router interface MACs.
 * Parsing and error reporting are in topology.ts, the checks across fields in
 * topology-checks.ts, the overlay expansion in overlay.ts.
 *
 * ```yaml
 * name: vlan                      # lab name: namespaces are tn.<name>.<host|node>
 * nodes:                          # tapnet processes, one per node
 *   sw1: { ageingTime: 300, maxEntries: 8192 }
 *   sw2: {}
 * hosts:                          # network namespaces with one interface, eth0
 *   h1: { node: sw1, ip: 10.0.0.1/24, vlan: 10 }       # a TAP (default)
 *   h9: { node: sw1, ip: 10.0.0.9/24, link: veth }     # a kernel veth, through libpcap
 * links:                          # node-to-node links (a veth pair)
 *   - { between: [sw1, sw2], trunk: { vlans: [10, 20] } }
 * ```
 */
import { z } from "zod";
import { MESH_PORT_NAME } from "../mesh/wire.js";
import { impairSettings } from "../core/impair.js";
import { DEFAULT_TIMEOUTS, type Timeouts } from "../elements/conntrack-states.js";

export const NAME = /^[a-z][a-z0-9-]*$/;
/** Linux interface names are at most 15 bytes (IFNAMSIZ - 1); ports are named after hosts and nodes. */
export const IFNAME_MAX = 15;

const name = (what: string) =>
  z
    .string()
    .regex(NAME, `${what} must start with a letter and use only a-z, 0-9 and '-'`)
    .max(IFNAME_MAX, `${what} is too long: at most ${IFNAME_MAX} characters (it names a Linux interface)`);

const vid = z.number().int().min(1, "VLAN ids run from 1 to 4094").max(4094, "VLAN ids run from 1 to 4094");
const cidr = z.string().regex(/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/, "expected an IPv4 address with prefix, like 10.0.0.1/24");
const ipv4 = z.string().regex(/^\d{1,3}(\.\d{1,3}){3}$/, "expected an IPv4 address, like 10.0.0.254");
const mac = z.string().regex(/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/, "expected a MAC address like 02:00:00:00:00:01");

const StaticEntry = z.strictObject({ mac, vlan: vid.default(1), port: z.string() });

const seconds = (what: string, lo: number, hi: number) =>
  z.number().min(lo, `${what} is at least ${lo} s (the Linux bridge's minimum)`).max(hi, `${what} is at most ${hi} s`);

/** A node's spanning tree (IEEE 802.1D; on a kind: kernel node, the Linux bridge's STP). */
const StpSpec = z.strictObject({
  enabled: z.boolean().default(true),
  priority: z.number().int().min(0).max(65535, "a bridge priority is 0-65535").default(32768),
  helloTime: seconds("helloTime", 1, 10).default(2),
  forwardDelay: seconds("forwardDelay", 2, 30).default(15),
  maxAge: seconds("maxAge", 6, 40).default(20),
});

/** A port's spanning tree settings (on a host: the node's port to it; on a link: both ends). */
const PortStpSpec = z.strictObject({
  cost: z.number().int().min(1).max(200_000_000).optional(),
  priority: z.number().int().min(0).max(240).multipleOf(16, "a port priority is 0-240 in steps of 16").optional(),
});

/** Storm control: frames/s per class at the port's ingress. */
const rate = z.number().int().min(0, "a rate is frames/s, 0 or more");
const StormSpec = z.strictObject({ broadcast: rate.optional(), multicast: rate.optional(), unknownUnicast: rate.optional() });

const PortSecuritySpec = z.strictObject({
  maxMacs: z.number().int().min(1, "maxMacs is at least 1").max(1_000_000),
  violation: z.enum(["restrict", "shutdown"]).default("restrict"),
  sticky: z.boolean().default(false),
  macs: z.array(mac).default([]),
});

/** One direction's impairments in tc's words (delay: 50ms, loss: 1%, rate: 10mbit) or numbers (ms, %, bit/s). */
const word = z.union([z.string(), z.number()]).optional();
const ImpairDirSpec = z
  .strictObject({ delay: word, jitter: word, loss: word, duplicate: word, reorder: word, rate: word, limit: z.number().int().optional() })
  .transform((v, ctx) => {
    try {
      return impairSettings(Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined)));
    } catch (e) {
      ctx.addIssue({ code: "custom", message: e instanceof Error ? e.message : String(e) });
      return z.NEVER;
    }
  });
/** Link impairments on the node's port: `out` what the node sends out of it, `in` what it receives. */
const ImpairSpec = z.strictObject({ out: ImpairDirSpec.optional(), in: ImpairDirSpec.optional() });

const ArpInspectionSpec = z.strictObject({
  vlans: z.array(vid).min(1, "inspect at least one VLAN").default([1]),
  bindings: z.array(z.strictObject({ ip: ipv4, mac, vlan: vid.default(1) })).default([]),
});

const InterfaceSpec = z
  .strictObject({
    /** A routed port: the node port (a host or a linked node) this interface owns. */
    port: z.string().optional(),
    /** An SVI: the switch VLAN this interface sits on. */
    vlan: vid.optional(),
    address: z.union([cidr, z.array(cidr).min(1, "at least one address")]),
    mtu: z.number().int().min(68).max(1500).optional(),
    mac: mac.optional(),
    proxyArp: z.boolean().default(false),
    /** ICMP redirects for packets that leave by the interface they came in on (Linux's send_redirects); absent: on. */
    sendRedirects: z.boolean().optional(),
    /** Loose and strict source routes received here are followed (Linux's accept_source_route); absent: off, dropped. */
    acceptSourceRoute: z.boolean().optional(),
    /** A DHCP server for the segment: addresses FIRST-LAST of the interface's subnet. */
    dhcp: z
      .strictObject({
        range: z.string().regex(/^\d+\.\d+\.\d+\.\d+-\d+\.\d+\.\d+\.\d+$/, "FIRST-LAST, e.g. 10.0.0.100-10.0.0.150"),
        leaseTime: z.number().int().min(60).default(3600),
        dns: z.array(ipv4).max(8, "at most 8 DNS servers").default([]),
      })
      .optional(),
  })
  .refine((i) => (i.port === undefined) !== (i.vlan === undefined), {
    message: "an interface sits either on a port (port: NAME, a routed port) or on a VLAN (vlan: N, an SVI)",
  });

const IcmpSpec = z.strictObject({
  ratelimit: z.number().int("ratelimit is whole milliseconds").min(0).max(600_000).default(1000),
  ratemask: z
    .number()
    .int()
    .min(0)
    .max((1 << 19) - 1, "ratemask has one bit per ICMP type 0-18")
    .default(6168),
});

const RouteSpec = z
  .strictObject({
    to: z.union([z.literal("default"), cidr]),
    /** The next hop; without one, the route sends straight out of `dev` (a device route). */
    via: ipv4.optional(),
    /** With `onlink`, the next hop is on this interface even outside its subnet (flannel's routes). */
    dev: z.string().optional(),
    onlink: z.boolean().default(false),
    /** Where the route came from, as `show route` says it (static unless a control plane's). */
    proto: z
      .string()
      .regex(/^[a-z][a-z0-9-]{0,15}$/, "a protocol name like static, bgp, flannel")
      .optional(),
  })
  .refine((r) => r.via !== undefined || r.dev !== undefined, { message: "a route needs a next hop (via) or an interface (dev)" });

const UnderlaySpec = z.strictObject({
  /** The underlay segment (a kernel bridge of the lab) this node's `ul0` joins. */
  segment: z.string(),
  address: cidr,
  gateway: ipv4.optional(),
  mtu: z.number().int().min(576).max(9000).default(1500),
  /** More underlay segments the node joins (ul1, ul2, … with these addresses): a node on two networks. */
  also: z
    .array(z.strictObject({ segment: z.string(), address: cidr }))
    .max(4, "at most 4 more underlay segments")
    .default([]),
});

/** A mesh peer on the node (the `mesh` overlay writes it): src/mesh/. */
const MeshSpec = z.strictObject({
  port: z.number().int().min(1).max(65535).default(6783),
  password: z.string().min(1).optional(),
  /** Underlay addresses to connect to at start (more are learned by gossip). */
  peers: z.array(ipv4).default([]),
  /** The address ring this peer shares (src/mesh/ipam.ts). */
  ipam: z.strictObject({ range: cidr, seed: z.array(z.string()).min(1) }).optional(),
});

const VxlanSpec = z.strictObject({
  vni: z.number().int().min(1, "a VNI is 24 bits: 1..16777215").max(16777215, "a VNI is 24 bits: 1..16777215"),
  port: z.number().int().min(1).max(65535).default(4789),
  remotes: z.array(ipv4).default([]),
  fdb: z.array(z.strictObject({ mac, remote: ipv4 })).default([]),
  arpSuppress: z.array(z.strictObject({ ip: ipv4, mac })).default([]),
  learning: z.boolean().default(true),
  udpChecksum: z.boolean().default(true),
  vlan: vid.optional(),
});

const IpipSpec = z.strictObject({
  peers: z.array(ipv4).min(1, "an IPIP tunnel needs at least one peer"),
});

/** A Linux kernel VXLAN device on a kernel node's bridge (for interop with the kernel). */
const KernelVxlanSpec = z.strictObject({
  vni: z.number().int().min(1).max(16777215),
  port: z.number().int().min(1).max(65535).default(4789),
  remote: ipv4,
  learning: z.boolean().default(true),
});

const NeighbourSpec = z.strictObject({ ip: ipv4, mac, interface: z.string() });

const NatSpec = z.strictObject({
  /** MASQUERADE: traffic from these sources leaving by `interface` takes its address. */
  masquerade: z.array(z.strictObject({ sources: z.array(cidr).min(1), interface: z.string() })).default([]),
  maxEntries: z.number().int().min(1).max(10_000_000).optional(),
  /** Seconds per state, names as in the conntrack element (tcpSynSent, udpStream, icmp, …); defaults are Linux's. */
  timeouts: z
    .strictObject(
      Object.fromEntries(Object.keys(DEFAULT_TIMEOUTS).map((k) => [k, z.number().positive(`${k} is in seconds and must be > 0`).optional()])) as Record<
        keyof Timeouts,
        z.ZodOptional<z.ZodNumber>
      >,
    )
    .default({}),
});

const ServiceSpec = z.strictObject({
  vip: ipv4,
  port: z.number().int().min(1).max(65535),
  protocol: z.enum(["tcp", "udp"]).default("tcp"),
  backends: z.array(z.string().regex(/^\d{1,3}(\.\d{1,3}){3}:\d{1,5}$/, "a backend is ADDRESS:PORT, like 10.244.1.2:80")).default([]),
  algorithm: z.enum(["random", "roundrobin"]).default("random"),
});

const NodeSpec = z.strictObject({
  /**
   * TAPs with IFF_VNET_HDR (checksum offload, TSO super-frames through the switch and
   * the router; ports without offloads segment in software). Default: on. `false`
   * gives plain TAPs: the hosts' kernels segment and checksum every frame themselves.
   */
  offload: z.boolean().optional(),
  /**
   * How the node's TAP ports move frames: `rw` (readv()/write(), one system call per
   * frame; the default) or `uring` (io_uring: many frames per system call; falls back
   * to `rw` with a log line when the kernel refuses it). TAPNET_IO sets the default.
   */
  io: z.enum(["rw", "uring"]).optional(),
  /**
   * Busy polling: after each batch the node's event loop keeps polling (no sleep) for
   * this many microseconds, so a frame that follows within the window is forwarded
   * without a wake-up (native/busypoll.c). 0 or absent: off. Costs up to that much CPU
   * per gap in the traffic; see docs/benchmarks.md, "Latency per crossing".
   */
  busyPoll: z.number().int().min(0).max(1_000_000).optional(),
  /**
   * Keep a standby process for the node (src/node/standby.ts): started, modules loaded,
   * in the node's namespace and confined, parked until the node dies, then handed the
   * hosts' TAPs to take over — a crash costs no Node.js start-up. Costs the memory of
   * one more Node.js process per node. Default: off.
   */
  standby: z.boolean().optional(),
  nat: NatSpec.optional(),
  services: z.record(name("a service name"), ServiceSpec).default({}),
  /** The cluster DNS the router answers on `address` for SERVICE.default.svc.DOMAIN. */
  clusterDns: z
    .strictObject({
      address: ipv4,
      domain: z
        .string()
        .regex(/^[a-z0-9-]+(\.[a-z0-9-]+)*$/, "a domain like cluster.local")
        .default("cluster.local"),
    })
    .optional(),
  /** switch/router: a tapnet process. kernel: a Linux bridge (and kernel VXLAN) instead, for comparison and interop. */
  kind: z.enum(["switch", "router", "kernel"]).optional(),
  underlay: UnderlaySpec.optional(),
  /** The node's pod subnet, for `overlay` (what flanneld/Calico hand out). */
  podCidr: cidr.optional(),
  vxlan: z.record(name("a VXLAN port name"), VxlanSpec).default({}),
  ipip: z.record(name("an IPIP port name"), IpipSpec).default({}),
  mesh: MeshSpec.optional(),
  /** kind: kernel only: the kernel VXLAN device on its bridge. */
  kernelVxlan: KernelVxlanSpec.optional(),
  ageingTime: z.number().positive("ageingTime is in seconds and must be > 0").max(1_000_000).default(300),
  maxEntries: z.number().int().min(1).max(1_000_000).default(8192),
  static: z.array(StaticEntry).default([]),
  stp: StpSpec.optional(),
  /** Storm control for every port of the node (a host or link may set its own). */
  stormControl: StormSpec.optional(),
  arpInspection: ArpInspectionSpec.optional(),
  interfaces: z.record(name("an interface name"), InterfaceSpec).default({}),
  routes: z.array(RouteSpec).default([]),
  /** The router's per-destination ICMP error limit (Linux's icmp_ratelimit in ms, icmp_ratemask). */
  icmp: IcmpSpec.optional(),
  neighbors: z.array(NeighbourSpec).default([]),
  /** A control-plane agent beside the node (src/agent/): flannel leases its pod subnet from the lab's etcd. */
  agent: z.enum(["flannel"]).optional(),
  /** host-gw agents: the node kernel's own address on the etcd segment (the underlay address is the router's). */
  control: cidr.optional(),
});

/** An etcd cluster of the lab (src/lab/etcd.ts): each member a namespace on an underlay segment. */
const EtcdSpec = z.strictObject({
  segment: z.string(),
  /** member name -> its address on the segment (1, 3 or 5 members). */
  members: z.record(name("an etcd member name"), cidr).refine((m) => [1, 3, 5].includes(Object.keys(m).length), "an etcd cluster has 1, 3 or 5 members"),
  gateway: ipv4.optional(),
  /** flannel's etcd prefix; the lab writes <prefix>/config from network, subnetLen and the overlay. */
  prefix: z
    .string()
    .regex(/^\/[A-Za-z0-9._/-]*[^/]$/, "a key prefix like /coreos.com/network")
    .default("/coreos.com/network"),
  network: cidr,
  subnetLen: z.number().int().min(1).max(30).optional(),
  /** Seconds a subnet lease lives without renewal (flanneld's is a day; a lab's is short so a dead node's lease goes). */
  leaseTtl: z.number().int().min(2).max(86400).default(60),
});

const HostSpec = z.strictObject({
  node: z.string(),
  /** Left out on a node of a mesh overlay: the node's share of the address ring gives one (src/mesh/ipam.ts). */
  ip: cidr.optional(),
  gateway: ipv4.optional(),
  vlan: vid.optional(),
  link: z.enum(["tap", "veth", "veth-xdp"]).default("tap"),
  /** Left out: 1500, or on a mesh node the mesh MTU, which the pod then follows (src/mesh/pod-mtu.ts). */
  mtu: z.number().int().min(68).max(1500).optional(),
  mac: mac.optional(),
  /** A command started in the host when the lab is up (a server, say); stopped by lab down. */
  run: z.string().optional(),
  stp: PortStpSpec.optional(),
  stormControl: StormSpec.optional(),
  portSecurity: PortSecuritySpec.optional(),
  /** netem-like impairments on the node's port to the host (out: towards the host). */
  impair: ImpairSpec.optional(),
});

const LinkSpec = z
  .strictObject({
    between: z.tuple([z.string(), z.string()]),
    vlan: vid.optional(),
    mtu: z.number().int().min(68).max(1500).default(1500),
    trunk: z.strictObject({ vlans: z.array(vid).min(1, "a trunk carries at least one VLAN"), native: vid.optional() }).optional(),
    stp: PortStpSpec.optional(),
    stormControl: StormSpec.optional(),
    /** netem-like impairments on each tapnet end's port (out: what that end sends). */
    impair: ImpairSpec.optional(),
    /** One end's impairments, by node name, in place of `impair` at that end (ends set differently, as `lab save` writes them). */
    impairAt: z.record(z.string(), ImpairSpec).optional(),
  })
  .refine((l) => !(l.vlan !== undefined && l.trunk !== undefined), {
    message: "a link is either an access link (vlan) or a trunk, not both",
  });

const TopologySchema = z.strictObject({
  name: z.string().regex(NAME, "the lab name must start with a letter and use only a-z, 0-9 and '-'").max(24, "the lab name is at most 24 characters"),
  description: z.string().optional(),
  nodes: z.record(name("a node name"), NodeSpec).refine((n) => Object.keys(n).length > 0, "a lab needs at least one node"),
  hosts: z.record(name("a host name"), HostSpec).default({}),
  links: z.array(LinkSpec).default([]),
  underlay: z
    .strictObject({
      /** Kernel bridges in the lab's underlay namespace; nodes join them with `underlay.segment`. */
      segments: z.record(name("a segment name"), z.strictObject({})).default({}),
      /** Kernel routers (namespaces with forwarding on) joining segments: `{ SEGMENT: ADDRESS/LEN }`. */
      routers: z.record(name("a router name"), z.record(z.string(), cidr)).default({}),
    })
    .optional(),
  etcd: EtcdSpec.optional(),
  /** Prometheus metrics of the lab, served while it is up (src/lab/metrics-daemon.ts); loopback only. */
  metrics: z
    .strictObject({
      listen: z
        .string()
        .regex(/^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|\[::1\]):\d{1,5}$/, "metrics listen on a loopback address only: HOST:PORT like 127.0.0.1:9423")
        .default("127.0.0.1:9423"),
    })
    .optional(),
  /** What a CNI's agent would set up between the nodes' pod subnets (flanneld, Calico). */
  overlay: z
    .strictObject({
      backend: z.enum(["vxlan", "ipip", "host-gw", "bgp", "bgp-ipip", "mesh"]),
      vni: z.number().int().min(1).max(16777215).default(1),
      /** UDP port: 8472 (flannel) for vxlan, 6783 (TCP and UDP) for mesh. */
      port: z.number().int().min(1).max(65535).optional(),
      /**
       * vxlan: flannel's DirectRouting — a peer on the node's underlay subnet gets a plain
       * route via its underlay address (as host-gw), the others VXLAN. The node's router then
       * shares ul0 with its kernel (src/lab/bgp.ts says how).
       */
      directRouting: z.boolean().default(false),
      /** mesh: a shared password; peers prove they know it (src/mesh/auth.ts). */
      password: z.string().min(1).optional(),
      /**
       * mesh: the pod range the peers split among themselves (src/mesh/ipam.ts): a CIDR
       * (Weave's 10.32.0.0/12 when left out), and the peers that own it at first (the
       * lowest node name when left out).
       */
      ipam: z.union([cidr, z.strictObject({ range: cidr.default("10.32.0.0/12"), seed: z.array(z.string()).min(1).optional() })]).optional(),
      // BGP backends (src/lab/bgp.ts): Calico's settings, and BIRD routers of the underlay.
      asNumber: z.number().int().min(1).max(4294967295).default(64512),
      ipipMode: z.enum(["Always", "CrossSubnet"]).default("Always"),
      holdTime: z
        .number()
        .int()
        .refine((h) => h === 0 || (h >= 3 && h <= 65535), "a hold time is 0 or 3-65535 seconds (RFC 4271 §4.2)")
        .default(90),
      connectRetryTime: z.number().int().min(1).max(3600).default(5),
      routeReflectors: z.array(z.string()).default([]),
      bird: z.record(z.string(), z.strictObject({ routes: z.array(cidr).default([]) })).default({}),
    })
    .optional(),
});

export type Topology = z.infer<typeof TopologySchema>;
export type HostSpec = z.infer<typeof HostSpec>;
export type NodeSpec = z.infer<typeof NodeSpec>;
export type LinkSpec = z.infer<typeof LinkSpec>;
export type InterfaceSpec = z.infer<typeof InterfaceSpec>;
export type VxlanSpec = z.infer<typeof VxlanSpec>;
export type EtcdSpec = z.infer<typeof EtcdSpec>;
export type StpSpec = z.infer<typeof StpSpec>;

export function ipToU32(s: string): number | null {
  const parts = s.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) return null;
  return ((parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]) >>> 0;
}

/** Host address and prefix of `10.0.0.1/24`, or null when it is not one. */
export function splitCidr(s: string): { addr: number; prefixLen: number } | null {
  const [a, l] = s.split("/");
  const addr = ipToU32(a);
  const prefixLen = Number(l);
  if (addr === null || !Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > 32) return null;
  return { addr, prefixLen };
}

/** Port names of a node: its hosts and its link peers. */
/** Port names of a tapnet node: its hosts, its link peers, its tunnels, its underlay. */
export function nodePorts(t: Topology, node: string): string[] {
  const out: string[] = [];
  for (const [h, spec] of Object.entries(t.hosts)) if (spec.node === node) out.push(h);
  for (const l of t.links) {
    if (l === undefined) continue; // a link that failed the schema (salvage)
    if (l.between[0] === node) out.push(l.between[1]);
    else if (l.between[1] === node) out.push(l.between[0]);
  }
  const spec = t.nodes[node];
  if (spec) {
    out.push(...Object.keys(spec.vxlan), ...Object.keys(spec.ipip));
    if (spec.mesh) out.push(MESH_PORT_NAME);
    if (usesUnderlayPort(spec)) out.push(UNDERLAY_PORT);
  }
  return out;
}

export { MESH_PORT_NAME };

/** The port name of a node's underlay link when tapnet itself sits on it (host-gw). */
export const UNDERLAY_PORT = "underlay";

export function usesUnderlayPort(spec: NodeSpec): boolean {
  return spec.underlay !== undefined && Object.values(spec.interfaces).some((i) => i.port === UNDERLAY_PORT);
}

export const isKernelNode = (spec: NodeSpec): boolean => spec.kind === "kernel";

/**
 * Whether a node runs with offloads by default: every tapnet node does. Its TAPs take
 * TSO super-frames and partial checksums (virtio-net headers), the switch and router
 * pass them whole, and ports without offloads (libpcap, links, VXLAN and IPIP
 * underlays) segment them in software once, on the way out.
 */
export function offloadCapable(t: Topology, node: string): boolean {
  const spec = t.nodes[node];
  return spec !== undefined && !isKernelNode(spec);
}

/** A stable, locally administered MAC for a router interface: 02:74:<hash of lab/node>:<n>. */
export function ifaceMac(lab: string, node: string, n: number): string {
  let h = 0x811c9dc5;
  for (const c of `${lab}/${node}`) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0;
  const b = [0x02, 0x74, (h >>> 16) & 255, (h >>> 8) & 255, h & 255, n & 255];
  return b.map((x) => x.toString(16).padStart(2, "0")).join(":");
}

/** The bridge MAC of a node's spanning tree: 02:73:<hash of lab/node>:00 (ports: low 12 bits = port number). */
export function bridgeMac(lab: string, node: string): string {
  return ifaceMac(lab, node, 0).replace(/^02:74:/, "02:73:");
}

/** Addresses of an interface as a list. */
export function ifAddresses(i: InterfaceSpec): string[] {
  return Array.isArray(i.address) ? i.address : [i.address];
}

/** The schemas, for the checker's entry-by-entry salvage of a file that failed. */
export const schemas = { Topology: TopologySchema, Node: NodeSpec, Host: HostSpec, Link: LinkSpec };
