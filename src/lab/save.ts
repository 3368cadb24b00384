/**
 * `tapnet lab save`: a running lab written back out as a topology file that `lab up`
 * reproduces. The nodes say how they run now (the `config` control command: their
 * NodeConfig after every runtime change); the hosts are the lab's state (those added at
 * runtime included); the underlay, links and kernel nodes come from the lab's file, the
 * links with the impairments their ends run now. An
 * `overlay:` section is written out expanded: as the interfaces, routes, neighbours and
 * FDB entries it made, plus whatever changed since.
 */
import { meshRingOf } from "../mesh/lab.js";
import { isMap, parseDocument, stringify } from "yaml";
import fs from "node:fs";
import { request } from "../control/client.js";
import type { NodeConfig } from "../node/config.js";
import { DEFAULT_LIMIT } from "../core/impair.js";
import { readState } from "./state.js";

type Obj = Record<string, unknown>;

function nodeSpec(raw: Obj, c: NodeConfig): Obj {
  const out: Obj = {};
  // Layer-2 safety settings are the file's (runtime changes do not touch them).
  for (const k of ["kind", "offload", "io", "busyPoll", "underlay", "stp", "stormControl", "arpInspection"]) if (raw[k] !== undefined) out[k] = raw[k];
  out.ageingTime = c.switch.ageingTime;
  out.maxEntries = c.switch.maxEntries;
  if (c.switch.static.length) out.static = c.switch.static;
  const vxlan: Obj = {};
  const ipip: Obj = {};
  for (const p of c.ports) {
    if (p.kind === "vxlan" && p.vxlan) {
      const v = p.vxlan;
      vxlan[p.name] = {
        vni: v.vni,
        port: v.dstPort,
        remotes: v.remotes,
        fdb: v.fdb,
        arpSuppress: v.arpSuppress,
        learning: v.learning,
        udpChecksum: v.udpChecksum,
        ...(p.vlan.mode === "access" && p.vlan.vlan !== 1 ? { vlan: p.vlan.vlan } : {}),
      };
    }
    if (p.kind === "ipip" && p.ipip) ipip[p.name] = { peers: p.ipip.peers };
  }
  if (Object.keys(vxlan).length) out.vxlan = vxlan;
  if (Object.keys(ipip).length) out.ipip = ipip;
  const r = c.router;
  if (r) {
    const ifs: Obj = {};
    for (const i of r.interfaces) {
      const routed = c.ports.find((p) => p.routed === i.name);
      ifs[i.name] = {
        ...(routed ? { port: routed.name } : { vlan: i.vlan }),
        address: i.addresses.length === 1 ? i.addresses[0] : i.addresses,
        mtu: i.mtu,
        mac: i.mac,
        ...(i.proxyArp ? { proxyArp: true } : {}),
        ...(i.sendRedirects === false ? { sendRedirects: false } : {}),
        ...(i.acceptSourceRoute ? { acceptSourceRoute: true } : {}),
        ...(i.dhcp ? { dhcp: i.dhcp } : {}),
      };
    }
    out.interfaces = ifs;
    if (r.icmp) out.icmp = r.icmp;
    if (r.routes.length)
      out.routes = r.routes.map((x) =>
        Object.fromEntries(Object.entries({ ...x, to: x.to === "0.0.0.0/0" ? "default" : x.to }).filter(([, v]) => v !== undefined)),
      );
    if (r.neighbors.length) out.neighbors = r.neighbors;
    if (r.nat && (r.nat.masquerade.length || r.nat.maxEntries !== undefined || Object.keys(r.nat.timeouts).length)) {
      out.nat = Object.fromEntries(Object.entries(r.nat).filter(([k, v]) => v !== undefined && !(k === "timeouts" && Object.keys(v as Obj).length === 0)));
    }
    if (r.services.length) out.services = Object.fromEntries(r.services.map(({ name, ...sv }) => [name, sv]));
    if (r.clusterDns) out.clusterDns = r.clusterDns;
  }
  return out;
}

/** A port's impairments as the topology says them: the fields that are set, per direction. */
function impairSpec(im: NonNullable<NodeConfig["ports"][number]["impair"]>): Obj {
  const out: Obj = {};
  for (const dir of ["out", "in"] as const) {
    const x = im[dir];
    if (x) out[dir] = Object.fromEntries(Object.entries(x).filter(([k, v]) => v !== 0 && !(k === "limit" && v === DEFAULT_LIMIT)));
  }
  return out;
}

/**
 * A link of the file with the impairments its tapnet ends run now: `impair` when every
 * tapnet end has the same, else `impairAt` by node (an end set at runtime by itself).
 */
function linkSpec(raw: Obj, configs: Record<string, NodeConfig>): Obj {
  const between = raw.between as [string, string] | undefined;
  if (!Array.isArray(between) || between.length !== 2) return raw;
  const ends: Record<string, string> = {};
  const specs: Record<string, Obj> = {};
  for (const [i, node] of between.entries()) {
    const c = configs[node];
    if (!c) continue; // a kernel node's end has no impairments
    const p = c.ports.find((x) => x.name === between[1 - i]);
    const spec = p?.impair ? impairSpec(p.impair) : {};
    specs[node] = spec;
    ends[node] = JSON.stringify(spec);
  }
  const { impair: _impair, impairAt: _impairAt, ...rest } = raw;
  const texts = new Set(Object.values(ends));
  if (texts.size === 0) return raw;
  if (texts.size === 1) {
    const spec = Object.values(specs)[0];
    return Object.keys(spec).length ? { ...rest, impair: spec } : rest;
  }
  return { ...rest, impairAt: Object.fromEntries(Object.entries(specs).filter(([, v]) => Object.keys(v).length > 0)) };
}

export async function labSave(lab: string): Promise<string> {
  const s = readState(lab);
  if (!s) throw new Error(`no lab named '${lab}' is up (tapnet lab status lists them)`);
  let raw: Obj;
  try {
    const doc = parseDocument(fs.readFileSync(s.file, "utf8"));
    if (!isMap(doc.contents)) throw new Error("not a mapping");
    raw = doc.toJS() as Obj;
  } catch (e) {
    throw new Error(`${s.file}: cannot read the lab's topology file (${e instanceof Error ? e.message : String(e)})`);
  }
  const rawNodes = (raw.nodes ?? {}) as Record<string, Obj>;
  const rawHosts = (raw.hosts ?? {}) as Record<string, Obj>;
  const nodes: Obj = {};
  /** Each host's impairments as its node runs them now (runtime `link set` included). */
  const impairs: Record<string, Obj> = {};
  const configs: Record<string, NodeConfig> = {};
  for (const [name, spec] of Object.entries(rawNodes)) {
    const n = s.nodes[name];
    const c = n ? await request<NodeConfig>(n.socket, { cmd: "config" }) : null;
    if (c) configs[name] = c;
    nodes[name] = c ? nodeSpec(spec, c) : spec;
    for (const p of c?.ports ?? []) if (p.impair && s.hosts[p.name]?.node === name) impairs[p.name] = impairSpec(p.impair);
  }
  const hosts: Obj = {};
  const ring = meshRingOf(raw.overlay);
  for (const [name, h] of Object.entries(s.hosts)) {
    const r = rawHosts[name] ?? {};
    // An address the mesh's ring gave stays the ring's to give (a restarted lab asks again).
    const fromRing = ring !== null && (rawHosts[name] ? r.ip === undefined : ring(h.ip));
    hosts[name] = Object.fromEntries(
      Object.entries({
        node: h.node,
        ip: fromRing ? undefined : h.ip,
        gateway: h.gateway,
        vlan: h.vlan !== 1 ? h.vlan : undefined,
        link: h.link !== "tap" ? h.link : undefined,
        mtu: r.mtu,
        mac: r.mac,
        run: r.run,
        stp: r.stp,
        stormControl: r.stormControl,
        portSecurity: r.portSecurity,
        impair: impairs[name],
      }).filter(([, v]) => v !== undefined),
    );
  }
  const out: Obj = { name: lab };
  if (raw.description !== undefined) out.description = raw.description;
  if (raw.underlay !== undefined) out.underlay = raw.underlay;
  if (raw.metrics !== undefined) out.metrics = raw.metrics;
  out.nodes = nodes;
  out.hosts = hosts;
  if (Array.isArray(raw.links)) out.links = raw.links.map((l: Obj) => linkSpec(l, configs));
  else if (raw.links !== undefined) out.links = raw.links;
  return `# Saved from the running lab ${lab} (tapnet lab save), ${new Date().toISOString()}\n${stringify(out, { lineWidth: 0 })}`;
}
