/**
 * Topology files: the YAML a user writes to describe a lab, its schema, and the
 * checks that say exactly where a mistake is (file:line:col, the path of the field,
 * what is wrong). Nothing is built from a file that fails any check.
 *
 * ```yaml
 * name: vlan                      # lab name: namespaces are tn-<name>-<host|node>
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
import fs from "node:fs";
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document } from "yaml";
import { z } from "zod";
import { DEFAULT_TIMEOUTS, type Timeouts } from "../elements/conntrack.js";
import { ipToString } from "../wire/ipv4addr.js";

const NAME = /^[a-z][a-z0-9-]*$/;
/** Linux interface names are at most 15 bytes (IFNAMSIZ - 1); ports are named after hosts and nodes. */
const IFNAME_MAX = 15;

const name = (what: string) =>
  z
    .string()
    .regex(NAME, `${what} must start with a letter and use only a-z, 0-9 and '-'`)
    .max(IFNAME_MAX, `${what} is too long: at most ${IFNAME_MAX} characters (it names a Linux interface)`);

const vid = z.number().int().min(1, "VLAN ids run from 1 to 4094").max(4094, "VLAN ids run from 1 to 4094");
const cidr = z.string().regex(/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/, "expected an IPv4 address with prefix, like 10.0.0.1/24");
const ipv4 = z.string().regex(/^\d{1,3}(\.\d{1,3}){3}$/, "expected an IPv4 address, like 10.0.0.254");
const mac = z
  .string()
  .regex(/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/, "expected a MAC address like 02:00:00:00:00:01");

const StaticEntry = z.strictObject({ mac, vlan: vid.default(1), port: z.string() });

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
  })
  .refine((i) => (i.port === undefined) !== (i.vlan === undefined), {
    message: "an interface sits either on a port (port: NAME, a routed port) or on a VLAN (vlan: N, an SVI)",
  });

const RouteSpec = z.strictObject({
  to: z.union([z.literal("default"), cidr]),
  via: ipv4,
  /** With `onlink`, the next hop is on this interface even outside its subnet (flannel's routes). */
  dev: z.string().optional(),
  onlink: z.boolean().default(false),
});

const UnderlaySpec = z.strictObject({
  /** The underlay segment (a kernel bridge of the lab) this node's `ul0` joins. */
  segment: z.string(),
  address: cidr,
  gateway: ipv4.optional(),
  mtu: z.number().int().min(576).max(9000).default(1500),
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
      Object.fromEntries(
        Object.keys(DEFAULT_TIMEOUTS).map((k) => [k, z.number().positive(`${k} is in seconds and must be > 0`).optional()]),
      ) as Record<keyof Timeouts, z.ZodOptional<z.ZodNumber>>,
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
  nat: NatSpec.optional(),
  services: z.record(name("a service name"), ServiceSpec).default({}),
  /** switch/router: a tapnet process. kernel: a Linux bridge (and kernel VXLAN) instead, for comparison and interop. */
  kind: z.enum(["switch", "router", "kernel"]).optional(),
  underlay: UnderlaySpec.optional(),
  /** The node's pod subnet, for `overlay` (what flanneld/Calico hand out). */
  podCidr: cidr.optional(),
  vxlan: z.record(name("a VXLAN port name"), VxlanSpec).default({}),
  ipip: z.record(name("an IPIP port name"), IpipSpec).default({}),
  /** kind: kernel only: the kernel VXLAN device on its bridge. */
  kernelVxlan: KernelVxlanSpec.optional(),
  ageingTime: z.number().positive("ageingTime is in seconds and must be > 0").max(1_000_000).default(300),
  maxEntries: z.number().int().min(1).max(1_000_000).default(8192),
  static: z.array(StaticEntry).default([]),
  interfaces: z.record(name("an interface name"), InterfaceSpec).default({}),
  routes: z.array(RouteSpec).default([]),
  neighbors: z.array(NeighbourSpec).default([]),
});

const HostSpec = z.strictObject({
  node: z.string(),
  ip: cidr,
  gateway: ipv4.optional(),
  vlan: vid.optional(),
  link: z.enum(["tap", "veth"]).default("tap"),
  mtu: z.number().int().min(68).max(1500).default(1500),
  mac: mac.optional(),
  /** A command started in the host when the lab is up (a server, say); stopped by lab down. */
  run: z.string().optional(),
});

const LinkSpec = z
  .strictObject({
    between: z.tuple([z.string(), z.string()]),
    vlan: vid.optional(),
    mtu: z.number().int().min(68).max(1500).default(1500),
    trunk: z.strictObject({ vlans: z.array(vid).min(1, "a trunk carries at least one VLAN"), native: vid.optional() }).optional(),
  })
  .refine((l) => !(l.vlan !== undefined && l.trunk !== undefined), {
    message: "a link is either an access link (vlan) or a trunk, not both",
  });

const TopologySchema = z.strictObject({
  name: z
    .string()
    .regex(NAME, "the lab name must start with a letter and use only a-z, 0-9 and '-'")
    .max(24, "the lab name is at most 24 characters"),
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
  /** What a CNI's agent would set up between the nodes' pod subnets (flanneld, Calico). */
  overlay: z
    .strictObject({
      backend: z.enum(["vxlan", "ipip", "host-gw"]),
      vni: z.number().int().min(1).max(16777215).default(1),
      port: z.number().int().min(1).max(65535).default(8472),
    })
    .optional(),
});

export type Topology = z.infer<typeof TopologySchema>;
export type HostSpec = z.infer<typeof HostSpec>;
export type NodeSpec = z.infer<typeof NodeSpec>;
export type LinkSpec = z.infer<typeof LinkSpec>;
export type InterfaceSpec = z.infer<typeof InterfaceSpec>;
export type VxlanSpec = z.infer<typeof VxlanSpec>;

export interface Problem {
  path: (string | number)[];
  message: string;
  line?: number;
  col?: number;
}

export class TopologyError extends Error {
  constructor(
    readonly file: string,
    readonly problems: Problem[],
  ) {
    super(
      `${file}: ${problems.length} problem${problems.length === 1 ? "" : "s"} in the topology file:\n` +
        problems
          .map((p) => {
            const where = p.line !== undefined ? `${file}:${p.line}:${p.col}` : file;
            const path = p.path.length ? p.path.join(".") : "(top level)";
            return `  ${where}: ${path}: ${p.message}`;
          })
          .join("\n"),
    );
    this.name = "TopologyError";
  }
}

function ipToU32(s: string): number | null {
  const parts = s.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) return null;
  return ((parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]) >>> 0;
}

function maskOf(len: number): number {
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
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
    if (l.between[0] === node) out.push(l.between[1]);
    else if (l.between[1] === node) out.push(l.between[0]);
  }
  const spec = t.nodes[node];
  if (spec) {
    out.push(...Object.keys(spec.vxlan), ...Object.keys(spec.ipip));
    if (usesUnderlayPort(spec)) out.push(UNDERLAY_PORT);
  }
  return out;
}

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

/** Checks of what `overlay`, `underlay` and kernel nodes need, before the overlay is expanded. */
function fabricChecks(t: Topology): Problem[] {
  const problems: Problem[] = [];
  const segments = Object.keys(t.underlay?.segments ?? {});
  const reserved = new Set([...Object.keys(t.nodes), ...Object.keys(t.hosts), "ul"]);
  for (const [r, segs] of Object.entries(t.underlay?.routers ?? {})) {
    if (reserved.has(r)) problems.push({ path: ["underlay", "routers", r], message: `'${r}' is already a node, host or reserved name` });
    for (const [seg, addr] of Object.entries(segs)) {
      if (`${r}-${seg}`.length > IFNAME_MAX) {
        problems.push({ path: ["underlay", "routers", r, seg], message: `'${r}-${seg}' names its bridge port: router and segment names together are at most ${IFNAME_MAX - 1} characters` });
      }
      if (!segments.includes(seg)) problems.push({ path: ["underlay", "routers", r, seg], message: `unknown segment '${seg}' (segments: ${segments.join(", ") || "none"})` });
      if (!splitCidr(addr)) problems.push({ path: ["underlay", "routers", r, seg], message: `'${addr}' is not a valid IPv4 address with prefix` });
    }
  }
  for (const [n, spec] of Object.entries(t.nodes)) {
    const at = ["nodes", n];
    if (spec.underlay) {
      if (!segments.includes(spec.underlay.segment)) {
        problems.push({ path: [...at, "underlay", "segment"], message: `unknown segment '${spec.underlay.segment}' (underlay.segments: ${segments.join(", ") || "none"})` });
      }
      const c = splitCidr(spec.underlay.address);
      if (!c) problems.push({ path: [...at, "underlay", "address"], message: `'${spec.underlay.address}' is not a valid IPv4 address with prefix` });
      else if (spec.underlay.gateway) {
        const g = ipToU32(spec.underlay.gateway);
        const m = maskOf(c.prefixLen);
        if (g === null || ((g & m) >>> 0) !== ((c.addr & m) >>> 0)) {
          problems.push({ path: [...at, "underlay", "gateway"], message: `gateway ${spec.underlay.gateway} is not inside ${spec.underlay.address}` });
        }
      }
    }
    const needsUnderlay = Object.keys(spec.vxlan).length > 0 || Object.keys(spec.ipip).length > 0 || spec.kernelVxlan !== undefined;
    if (needsUnderlay && !spec.underlay) problems.push({ path: at, message: `node ${n} has tunnels but no underlay (underlay: { segment, address })` });
    if (isKernelNode(spec)) {
      for (const k of ["interfaces", "routes", "neighbors", "static"] as const) {
        const v = spec[k];
        if ((Array.isArray(v) ? v.length : Object.keys(v).length) > 0) problems.push({ path: [...at, k], message: `a kernel node is a Linux bridge: it takes no ${k}` });
      }
      if (Object.keys(spec.vxlan).length || Object.keys(spec.ipip).length) {
        problems.push({ path: at, message: "a kernel node's VXLAN device is kernelVxlan; vxlan/ipip ports are for tapnet nodes" });
      }
    } else if (spec.kernelVxlan) {
      problems.push({ path: [...at, "kernelVxlan"], message: "kernelVxlan belongs to kind: kernel nodes" });
    }
  }
  for (const [h, hs] of Object.entries(t.hosts)) {
    const n = t.nodes[hs.node];
    if (n && isKernelNode(n) && hs.vlan !== undefined) problems.push({ path: ["hosts", h, "vlan"], message: "hosts of a kernel node are untagged on its bridge" });
  }
  t.links.forEach((l, i) => {
    if (l.between.some((n) => t.nodes[n] && isKernelNode(t.nodes[n])) && (l.trunk || l.vlan !== undefined)) {
      problems.push({ path: ["links", i], message: "a link to a kernel node is an untagged bridge port (no trunk or vlan)" });
    }
  });
  if (t.overlay) {
    const tapnetNodes = Object.entries(t.nodes).filter(([, s]) => !isKernelNode(s));
    for (const [n, spec] of tapnetNodes) {
      if (!spec.podCidr) problems.push({ path: ["nodes", n, "podCidr"], message: `overlay ${t.overlay.backend} needs every node's pod subnet: missing (required)` });
      if (!spec.underlay) problems.push({ path: ["nodes", n, "underlay"], message: `overlay ${t.overlay.backend} needs every node on the underlay: missing (required)` });
    }
  }
  return problems;
}

/**
 * What flanneld or Calico would configure, written out as plain tapnet config: a
 * cni0-like SVI (the pod subnet's first address) on each node, plus per backend
 *   vxlan   (flannel): port vxlan0, interface flannel.1 on it = POD-NET/32 with MTU
 *           underlay - 50, routes "POD-NET(peer) via PEER-NET dev flannel.1 onlink",
 *           a static neighbour PEER-NET -> the peer's flannel.1 MAC, a static VTEP
 *           FDB entry that MAC -> the peer's underlay address, learning off;
 *   ipip    (Calico): port ipip0, interface tunl0 on it = POD-NET/32 with MTU underlay - 20,
 *           routes "POD-NET(peer) via PEER-UNDERLAY dev tunl0 onlink";
 *   host-gw (flannel): an interface ul0 on the underlay port with the node's underlay
 *           address, routes "POD-NET(peer) via PEER-UNDERLAY" — only where the peer is
 *           on the same underlay subnet (flannel's rule: otherwise there is no route,
 *           and traffic takes the node's default route, if any).
 */
export function expandOverlay(t: Topology): { topology: Topology; notes: string[] } {
  const notes: string[] = [];
  if (!t.overlay) return { topology: t, notes };
  const o = t.overlay;
  const out: Topology = structuredClone(t);
  const nodes = Object.entries(out.nodes).filter(([, s]) => !isKernelNode(s) && s.podCidr && s.underlay);
  const info = nodes.map(([n, s]) => {
    const pod = splitCidr(s.podCidr as string) as { addr: number; prefixLen: number };
    const ul = splitCidr((s.underlay as NonNullable<NodeSpec["underlay"]>).address) as { addr: number; prefixLen: number };
    const podNet = (pod.addr & maskOf(pod.prefixLen)) >>> 0;
    return { n, s, podNet, podLen: pod.prefixLen, ul, ulAddr: ipToString(ul.addr), tunnelMac: ifaceMac(t.name, n, 100) };
  });
  for (const me of info) {
    const s = me.s;
    const ulMtu = (s.underlay as NonNullable<NodeSpec["underlay"]>).mtu;
    s.interfaces.cni0 ??= { vlan: 1, address: `${ipToString(me.podNet + 1)}/${me.podLen}`, proxyArp: false };
    const peers = info.filter((p) => p !== me);
    if (o.backend === "vxlan") {
      s.vxlan.vxlan0 = {
        vni: o.vni,
        port: o.port,
        remotes: [],
        fdb: peers.map((p) => ({ mac: p.tunnelMac, remote: p.ulAddr })),
        arpSuppress: [],
        learning: false,
        udpChecksum: true,
      };
      s.interfaces["flannel.1"] = { port: "vxlan0", address: `${ipToString(me.podNet)}/32`, mtu: ulMtu - 50, mac: me.tunnelMac, proxyArp: false };
      for (const p of peers) {
        s.routes.push({ to: `${ipToString(p.podNet)}/${p.podLen}`, via: ipToString(p.podNet), dev: "flannel.1", onlink: true });
        s.neighbors.push({ ip: ipToString(p.podNet), mac: p.tunnelMac, interface: "flannel.1" });
      }
    } else if (o.backend === "ipip") {
      s.ipip.ipip0 = { peers: peers.map((p) => p.ulAddr) };
      s.interfaces.tunl0 = { port: "ipip0", address: `${ipToString(me.podNet)}/32`, mtu: ulMtu - 20, proxyArp: false };
      for (const p of peers) s.routes.push({ to: `${ipToString(p.podNet)}/${p.podLen}`, via: p.ulAddr, dev: "tunl0", onlink: true });
    } else {
      const ul = s.underlay as NonNullable<NodeSpec["underlay"]>;
      s.interfaces.ul0 = { port: UNDERLAY_PORT, address: ul.address, mtu: ulMtu, proxyArp: false };
      const mask = maskOf(me.ul.prefixLen);
      for (const p of peers) {
        if (((p.ul.addr & mask) >>> 0) === ((me.ul.addr & mask) >>> 0)) {
          s.routes.push({ to: `${ipToString(p.podNet)}/${p.podLen}`, via: p.ulAddr, onlink: false });
        } else {
          notes.push(
            `host-gw: ${p.n} (${p.ulAddr}) is not on ${me.n}'s underlay subnet, so ${me.n} gets no route to ${ipToString(p.podNet)}/${p.podLen} (flannel refuses the same route)`,
          );
        }
      }
      if (ul.gateway) s.routes.push({ to: "default", via: ul.gateway, onlink: false });
    }
  }
  return { topology: out, notes };
}

function semanticChecks(t: Topology): Problem[] {
  const problems: Problem[] = [];
  const nodeNames = Object.keys(t.nodes);
  for (const h of Object.keys(t.hosts)) {
    if (t.nodes[h]) problems.push({ path: ["hosts", h], message: `'${h}' is also a node name; hosts and nodes need distinct names` });
  }
  const seenIp = new Map<number, string>();
  for (const [h, spec] of Object.entries(t.hosts)) {
    if (!t.nodes[spec.node]) {
      problems.push({ path: ["hosts", h, "node"], message: `unknown node '${spec.node}' (nodes: ${nodeNames.join(", ")})` });
    }
    const c = splitCidr(spec.ip);
    if (!c) {
      problems.push({ path: ["hosts", h, "ip"], message: `'${spec.ip}' is not a valid IPv4 address with prefix` });
      continue;
    }
    if (c.prefixLen < 31) {
      const m = maskOf(c.prefixLen);
      if ((c.addr & ~m) >>> 0 === 0 || (c.addr | ~m) >>> 0 === 0xffffffff) {
        problems.push({ path: ["hosts", h, "ip"], message: `${spec.ip} is the network or broadcast address of its subnet` });
      }
    }
    const other = seenIp.get(c.addr);
    if (other) problems.push({ path: ["hosts", h, "ip"], message: `${spec.ip.split("/")[0]} is already host ${other}'s address` });
    seenIp.set(c.addr, h);
    if (spec.gateway !== undefined) {
      const g = ipToU32(spec.gateway);
      const m = maskOf(c.prefixLen);
      if (g === null) problems.push({ path: ["hosts", h, "gateway"], message: `'${spec.gateway}' is not a valid IPv4 address` });
      else if (((g & m) >>> 0) !== ((c.addr & m) >>> 0)) {
        problems.push({ path: ["hosts", h, "gateway"], message: `gateway ${spec.gateway} is not inside ${spec.ip}` });
      } else if (g === c.addr) {
        problems.push({ path: ["hosts", h, "gateway"], message: `gateway ${spec.gateway} is the host's own address` });
      }
    }
    if (spec.mac !== undefined && (parseInt(spec.mac.slice(0, 2), 16) & 1) === 1) {
      problems.push({ path: ["hosts", h, "mac"], message: `${spec.mac} is a multicast address; a host needs a unicast MAC` });
    }
  }
  const pairs = new Set<string>();
  t.links.forEach((l, i) => {
    const [a, b] = l.between;
    for (const [k, n] of [a, b].entries()) {
      if (!t.nodes[n]) problems.push({ path: ["links", i, "between", k], message: `unknown node '${n}' (nodes: ${nodeNames.join(", ")})` });
    }
    if (a === b) problems.push({ path: ["links", i, "between"], message: `a link joins two different nodes, not '${a}' to itself` });
    const key = [a, b].sort().join("\0");
    if (pairs.has(key)) problems.push({ path: ["links", i, "between"], message: `${a} and ${b} are already linked; one link per pair of nodes` });
    pairs.add(key);
    if (t.hosts[a] || t.hosts[b]) {
      problems.push({ path: ["links", i, "between"], message: "links join nodes; a host is attached with hosts.NAME.node" });
    }
  });
  for (const [n, spec] of Object.entries(t.nodes)) {
    const ports = nodePorts(t, n);
    const seen = new Set<string>();
    for (const p of ports) {
      if (seen.has(p)) problems.push({ path: ["nodes", n], message: `two ports of node ${n} would both be named '${p}'` });
      seen.add(p);
    }
    routerChecks(t, n, ports, problems);
    if (spec.offload === true && !offloadCapable(t, n)) {
      problems.push({ path: ["nodes", n, "offload"], message: "a kind: kernel node is a Linux bridge: tapnet's offload setting does not apply to it" });
    }
    spec.static.forEach((s, i) => {
      if (!ports.includes(s.port)) {
        problems.push({ path: ["nodes", n, "static", i, "port"], message: `node ${n} has no port '${s.port}' (ports: ${ports.join(", ") || "none"})` });
      }
      if ((parseInt(s.mac.slice(0, 2), 16) & 1) === 1) {
        problems.push({ path: ["nodes", n, "static", i, "mac"], message: `${s.mac} is a group address; static entries are for stations` });
      }
    });
  }
  return problems;
}

/** Addresses of an interface as a list. */
export function ifAddresses(i: InterfaceSpec): string[] {
  return Array.isArray(i.address) ? i.address : [i.address];
}

function routerChecks(t: Topology, node: string, ports: string[], problems: Problem[]): void {
  const spec = t.nodes[node];
  const subnets: Array<{ net: number; mask: number; len: number; iface: string }> = [];
  const usedPorts = new Map<string, string>();
  for (const [ifn, i] of Object.entries(spec.interfaces)) {
    const at = ["nodes", node, "interfaces", ifn];
    if (ports.includes(ifn)) problems.push({ path: at, message: `'${ifn}' is also the name of a port of ${node}; pick another interface name` });
    if (i.port !== undefined) {
      if (!ports.includes(i.port)) {
        problems.push({ path: [...at, "port"], message: `node ${node} has no port '${i.port}' (ports: ${ports.join(", ") || "none"})` });
      } else if (usedPorts.has(i.port)) {
        problems.push({ path: [...at, "port"], message: `port '${i.port}' already belongs to interface ${usedPorts.get(i.port)}` });
      } else usedPorts.set(i.port, ifn);
      const host = t.hosts[i.port];
      if (host && host.node === node && host.vlan !== undefined) {
        problems.push({ path: ["hosts", i.port, "vlan"], message: `host ${i.port} is on routed port ${node}/${ifn}: a routed port has no VLAN` });
      }
      const link = t.links.find((l) => l.between.includes(node) && l.between.includes(i.port as string));
      if (link && (link.trunk || link.vlan !== undefined)) {
        problems.push({ path: [...at, "port"], message: `the link ${node}-${i.port} is a trunk or VLAN access link; a routed port takes an untagged link` });
      }
    }
    ifAddresses(i).forEach((a, k) => {
      const c = splitCidr(a);
      const where = Array.isArray(i.address) ? [...at, "address", k] : [...at, "address"];
      if (!c) return void problems.push({ path: where, message: `'${a}' is not a valid IPv4 address with prefix` });
      const mask = maskOf(c.prefixLen);
      if (c.prefixLen < 31 && ((c.addr & ~mask) >>> 0 === 0 || (c.addr | ~mask) >>> 0 === 0xffffffff)) {
        problems.push({ path: where, message: `${a} is the network or broadcast address of its subnet` });
      }
      const net = (c.addr & mask) >>> 0;
      // A /32 (flannel.1's, tunl0's) is a lone address, not a subnet: it may sit in another's.
      const clash = c.prefixLen === 32 ? undefined : subnets.find((s) => s.len < 32 && (((net & s.mask) >>> 0) === s.net || ((s.net & mask) >>> 0) === net));
      if (clash) problems.push({ path: where, message: `${a} overlaps the subnet of interface ${clash.iface}` });
      subnets.push({ net, mask, len: c.prefixLen, iface: ifn });
    });
  }
  spec.routes.forEach((r, k) => {
    const at = ["nodes", node, "routes", k];
    if (r.to !== "default") {
      const c = splitCidr(r.to);
      if (!c) problems.push({ path: [...at, "to"], message: `'${r.to}' is not a valid prefix` });
      else if (((c.addr & ~maskOf(c.prefixLen)) >>> 0) !== 0) {
        problems.push({ path: [...at, "to"], message: `${r.to} has host bits set (did you mean ${ipToString((c.addr & maskOf(c.prefixLen)) >>> 0)}/${c.prefixLen}?)` });
      }
    }
    const via = ipToU32(r.via);
    if (r.dev !== undefined && !spec.interfaces[r.dev]) {
      problems.push({ path: [...at, "dev"], message: `node ${node} has no interface '${r.dev}'` });
    }
    if (r.onlink && r.dev === undefined) problems.push({ path: [...at, "onlink"], message: "an onlink route names its interface (dev)" });
    if (via === null) problems.push({ path: [...at, "via"], message: `'${r.via}' is not a valid IPv4 address` });
    else if (!r.onlink && !subnets.some((s) => ((via & s.mask) >>> 0) === s.net)) {
      problems.push({ path: [...at, "via"], message: `next hop ${r.via} is not inside a subnet of any interface of ${node}` });
    }
  });
  for (const [k, m] of (spec.nat?.masquerade ?? []).entries()) {
    if (!spec.interfaces[m.interface]) problems.push({ path: ["nodes", node, "nat", "masquerade", k, "interface"], message: `node ${node} has no interface '${m.interface}'` });
  }
  for (const [svc, sv] of Object.entries(spec.services)) {
    if (Object.keys(spec.interfaces).length === 0) problems.push({ path: ["nodes", node, "services", svc], message: "services need a router: give the node interfaces" });
    sv.backends.forEach((b, k) => {
      const [a, p] = b.split(":");
      if (ipToU32(a) === null || Number(p) < 1 || Number(p) > 65535) problems.push({ path: ["nodes", node, "services", svc, "backends", k], message: `'${b}' is not ADDRESS:PORT` });
    });
  }
  spec.neighbors.forEach((nb, k) => {
    const at = ["nodes", node, "neighbors", k];
    if (!spec.interfaces[nb.interface]) {
      problems.push({ path: [...at, "interface"], message: `node ${node} has no interface '${nb.interface}'` });
      return;
    }
    const ip = ipToU32(nb.ip);
    const onlinkVia = spec.routes.some((r) => r.onlink && r.dev === nb.interface && r.via === nb.ip);
    if (ip === null || (!onlinkVia && !subnets.some((s) => s.iface === nb.interface && ((ip & s.mask) >>> 0) === s.net))) {
      problems.push({ path: [...at, "ip"], message: `${nb.ip} is not inside a subnet of interface ${nb.interface}` });
    }
  });
}

function locate(doc: Document, lc: LineCounter, path: (string | number)[]): { line?: number; col?: number } {
  // Walk the path as far as the file has it; point at the key of the deepest field
  // found (or the item, in a list), which is where the mistake shows.
  let node: unknown = doc.contents;
  let at = (node as { range?: [number, number, number] } | null)?.range?.[0];
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) break;
      at = (pair.key as { range?: [number, number, number] }).range?.[0] ?? at;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === "number" && seg < node.items.length) {
      node = node.items[seg];
      at = (node as { range?: [number, number, number] } | null)?.range?.[0] ?? at;
    } else break;
  }
  if (at === undefined) return {};
  const pos = lc.linePos(at);
  return { line: pos.line, col: pos.col };
}

/** Parses and checks a topology text; throws TopologyError listing every problem. */
export function parseTopology(text: string, file: string): Topology {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length) {
    throw new TopologyError(
      file,
      doc.errors.map((e) => {
        const pos = lc.linePos(e.pos[0]);
        return { path: [], message: `YAML: ${e.message.split("\n")[0]}`, line: pos.line, col: pos.col };
      }),
    );
  }
  if (!isMap(doc.contents)) {
    throw new TopologyError(file, [{ path: [], message: "expected a mapping with name, nodes, hosts and links" }]);
  }
  const raw = doc.toJS() as unknown;
  const r = TopologySchema.safeParse(raw);
  if (!r.success) {
    throw new TopologyError(
      file,
      r.error.issues.map((i) => {
        const path = i.path.map((p) => (typeof p === "symbol" ? String(p) : p));
        let message = i.message;
        // A bad key of a record (a host or node name): report the key's own problem.
        if (i.code === "invalid_key" && i.issues.length) message = i.issues[0].message;
        if (i.code === "unrecognized_keys") message = `unknown field${i.keys.length > 1 ? "s" : ""} ${i.keys.map((k) => `'${k}'`).join(", ")}`;
        if (i.code === "invalid_type" && /received undefined/.test(i.message)) message = "missing (required)";
        return { path, message, ...locate(doc, lc, path) };
      }),
    );
  }
  const fabric = fabricChecks(r.data);
  if (fabric.length) throw new TopologyError(file, fabric.map((p) => ({ ...p, ...locate(doc, lc, p.path) })));
  const { topology, notes } = expandOverlay(r.data);
  const problems = semanticChecks(topology);
  if (problems.length) {
    throw new TopologyError(
      file,
      problems.map((p) => ({ ...p, ...locate(doc, lc, p.path) })),
    );
  }
  overlayNotes.set(topology, notes);
  return topology;
}

/** What the overlay expansion had to say about a parsed topology (host-gw limits). */
export const overlayNotes = new WeakMap<Topology, string[]>();

export function loadTopology(file: string): Topology {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new Error(`${file}: cannot read the topology file (${err.code ?? err.message})`);
  }
  return parseTopology(text, file);
}
