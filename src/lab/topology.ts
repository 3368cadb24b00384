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
});

const NeighbourSpec = z.strictObject({ ip: ipv4, mac, interface: z.string() });

const NodeSpec = z.strictObject({
  kind: z.enum(["switch", "router"]).optional(),
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
});

export type Topology = z.infer<typeof TopologySchema>;
export type HostSpec = z.infer<typeof HostSpec>;
export type NodeSpec = z.infer<typeof NodeSpec>;
export type LinkSpec = z.infer<typeof LinkSpec>;
export type InterfaceSpec = z.infer<typeof InterfaceSpec>;

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
export function nodePorts(t: Topology, node: string): string[] {
  const out: string[] = [];
  for (const [h, spec] of Object.entries(t.hosts)) if (spec.node === node) out.push(h);
  for (const l of t.links) {
    if (l.between[0] === node) out.push(l.between[1]);
    else if (l.between[1] === node) out.push(l.between[0]);
  }
  return out;
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
      const clash = subnets.find((s) => ((net & s.mask) >>> 0) === s.net || ((s.net & mask) >>> 0) === net);
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
    if (via === null) problems.push({ path: [...at, "via"], message: `'${r.via}' is not a valid IPv4 address` });
    else if (!subnets.some((s) => ((via & s.mask) >>> 0) === s.net)) {
      problems.push({ path: [...at, "via"], message: `next hop ${r.via} is not inside a subnet of any interface of ${node}` });
    }
  });
  spec.neighbors.forEach((nb, k) => {
    const at = ["nodes", node, "neighbors", k];
    if (!spec.interfaces[nb.interface]) {
      problems.push({ path: [...at, "interface"], message: `node ${node} has no interface '${nb.interface}'` });
      return;
    }
    const ip = ipToU32(nb.ip);
    if (ip === null || !subnets.some((s) => s.iface === nb.interface && ((ip & s.mask) >>> 0) === s.net)) {
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
  const problems = semanticChecks(r.data);
  if (problems.length) {
    throw new TopologyError(
      file,
      problems.map((p) => ({ ...p, ...locate(doc, lc, p.path) })),
    );
  }
  return r.data;
}

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
