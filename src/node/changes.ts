/**
 * Runtime changes to a running node: the operations the control socket's `change`
 * command carries (`tapnet route add …`, `tapnet lab host add …`, a control plane's
 * agent). Each is checked whole before anything changes, then applied — or refused with
 * a one-line reason and nothing changed. They run between passes (the control socket's
 * turn of the event loop), never in the middle of a batch. With `dryRun` only the checks
 * run: the CLI asks first when it must also change something outside the node (a host's
 * namespace).
 *
 * Operations (arguments as JSON; addresses and MACs as strings):
 *   route.add | route.replace   { to: CIDR|default, via?, dev?, onlink?, proto? }
 *   route.del                   { to }
 *   route.get                   { to: ADDRESS }                     (reads only)
 *   addr.add | addr.del         { address: CIDR, dev }
 *   neigh.add | neigh.replace   { ip, lladdr, dev }
 *   neigh.del                   { ip, dev }
 *   neigh.flush                 { dev? }                            (learned entries)
 *   fdb.add | fdb.del           { mac, port, vlan? } on a switch port (static entry);
 *                               { mac, port, dst } on a VXLAN port (bridge fdb append/del;
 *                               mac 00:00:00:00:00:00: a flood remote)
 *   fdb.flush                   { }                                 (learned entries)
 *   link.set                    { port, up?, mtu?, vlan?: access VLAN, trunk?: [VLANS], native?,
 *                                 impair?: { dir?: out|in|both, clear?, delay?, jitter?, loss?,
 *                                 duplicate?, reorder?, rate?, limit? } }  (src/core/impair.ts;
 *                               fields given change, others stay; clear: start from none)
 *   router.set                  { dev?, sendRedirects?, acceptSourceRoute?, icmpRatelimit?: ms, icmpRatemask? }
 *                               (Linux's conf.DEV.send_redirects, conf.DEV.accept_source_route,
 *                               icmp_ratelimit, icmp_ratemask)
 *   port.add                    { name, kind: tap, vlan?: N }
 *   port.del                    { name }
 *   service.add                 { name, vip, port, protocol?, backends?: [IP:PORT], algorithm? }
 *   service.set                 { name, backends: [IP:PORT] }
 *   service.del                 { name }
 *   masquerade.add | .del       { sources: [CIDR], interface }
 *   conntrack.flush             { }
 *   conntrack.del               { proto, src, dst, sport?, dport? }
 *   tunnel.peer.add | .del      { port, peer }                      (VXLAN flood remote, IPIP peer)
 *   mesh.add                    { name, peers, addresses?, port?, password?, underlayMtu?, ipam?, vlan? }
 *                               (a mesh peer: src/mesh/mesh-add.ts)
 */
import { impairActive, impairSettings, type ImpairSettings, noImpairment } from "../core/impair.js";
import type { Port } from "../core/port.js";
import type { SwitchPortMode } from "../elements/learning-switch.js";
import type { Nat } from "../elements/nat.js";
import type { Backend } from "../elements/nat-services.js";
import * as rc from "../elements/router/control.js";
import type { Ipv4Router } from "../elements/router/ipv4-router.js";
import { IpipPort } from "../io/ipip-port.js";
import { VxlanPort } from "../io/vxlan-port.js";
import { ipToString, parseCidr, parseIp } from "../wire/ipv4addr.js";
import { macIsUnicast, parseMac } from "../wire/mac.js";
import { meshAdd } from "../mesh/mesh-add.js";
import type { NodePortConfig } from "./config.js";
import type { NodeGraph } from "./graph.js";

export type Args = Record<string, unknown>;

/** An operation: checks `a`, and when `commit` applies it; gives what the caller shows. */
type Op = (g: NodeGraph, a: Args, commit: boolean) => unknown;

/** Operations that change the node's configuration: journaled, replayed after a restart, saved by `lab save`. */
export const JOURNALED = new Set([
  "route.add",
  "route.replace",
  "route.del",
  "addr.add",
  "addr.del",
  "neigh.add",
  "neigh.replace",
  "neigh.del",
  "fdb.add",
  "fdb.del",
  "link.set",
  "router.set",
  "port.add",
  "port.del",
  "service.add",
  "service.set",
  "service.del",
  "masquerade.add",
  "masquerade.del",
  "tunnel.peer.add",
  "tunnel.peer.del",
  "mesh.add",
]);

// ---------------------------------------------------------------------------
// Arguments: each says what is wrong and where.

function str(a: Args, k: string): string {
  const v = a[k];
  if (typeof v !== "string" || v === "") throw new Error(`${k}: missing (expected a string)`);
  return v;
}

function optStr(a: Args, k: string): string | undefined {
  return a[k] === undefined ? undefined : str(a, k);
}

function int(a: Args, k: string, lo: number, hi: number): number {
  const v = a[k];
  if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi) throw new Error(`${k}: ${JSON.stringify(v)} is not an integer ${lo}-${hi}`);
  return v;
}

function optInt(a: Args, k: string, lo: number, hi: number): number | undefined {
  return a[k] === undefined ? undefined : int(a, k, lo, hi);
}

function optBool(a: Args, k: string): boolean | undefined {
  const v = a[k];
  if (v === undefined) return undefined;
  if (typeof v !== "boolean") throw new Error(`${k}: expected true or false`);
  return v;
}

function strList(a: Args, k: string): string[] {
  const v = a[k];
  if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) throw new Error(`${k}: expected a list of strings`);
  return v as string[];
}

function router(g: NodeGraph): Ipv4Router {
  if (!g.router) throw new Error(`node ${g.config.node} has no router interfaces`);
  return g.router;
}

function nat(g: NodeGraph): Nat {
  if (!g.nat) throw new Error(`node ${g.config.node} has no NAT (no service or masquerade rule)`);
  return g.nat;
}

function port(g: NodeGraph, name: string): Port {
  return g.engine.requirePort(name, g.config.node);
}

function backends(list: string[]): Backend[] {
  return list.map((b) => {
    const m = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(b);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new Error(`backend '${b}' is not ADDRESS:PORT`);
    return { addr: parseIp(m[1]), port: Number(m[2]) };
  });
}

function vlanMode(a: Args, current: SwitchPortMode): SwitchPortMode | undefined {
  const vlan = optInt(a, "vlan", 1, 4094);
  if (a.trunk !== undefined) {
    const list = a.trunk;
    if (!Array.isArray(list) || list.length === 0 || list.some((v) => !Number.isInteger(v) || v < 1 || v > 4094))
      throw new Error("trunk: expected a list of VLAN ids 1-4094");
    if (vlan !== undefined) throw new Error("a port is an access port (vlan) or a trunk, not both");
    return { mode: "trunk", allowed: list as number[], native: optInt(a, "native", 1, 4094) };
  }
  if (vlan !== undefined) return { mode: "access", vlan };
  return a.native !== undefined && current.mode === "trunk" ? { ...current, native: int(a, "native", 1, 4094) } : undefined;
}

// ---------------------------------------------------------------------------
// The operations.

function routeOp(replace: boolean): Op {
  return (g, a, commit) => {
    const spec = { to: str(a, "to"), via: optStr(a, "via"), dev: optStr(a, "dev"), onlink: optBool(a, "onlink"), proto: optStr(a, "proto") };
    rc.addRoute(router(g), spec, replace, commit);
    return null;
  };
}

function portAdd(g: NodeGraph, a: Args, commit: boolean): unknown {
  const name = str(a, "name");
  if (!/^[a-z][a-z0-9-]{0,14}$/.test(name))
    throw new Error(`name: '${name}' must start with a letter, use a-z 0-9 and '-', at most 15 characters (it names a TAP)`);
  const kind = a.kind ?? "tap";
  if (kind !== "tap") throw new Error(`kind: '${String(kind)}': ports added at runtime are TAPs`);
  if (g.engine.port(name)) throw new Error(`node ${g.config.node} already has a port '${name}'`);
  const vlan = optInt(a, "vlan", 1, 4094) ?? 1;
  const pc: NodePortConfig = { name, kind: "tap", ifname: name, vlan: { mode: "access", vlan } };
  if (!commit) return { ifname: name };
  g.addPort(pc);
  return { ifname: name };
}

function linkSet(g: NodeGraph, a: Args, commit: boolean): unknown {
  const p = port(g, str(a, "port"));
  const up = optBool(a, "up");
  const mtu = optInt(a, "mtu", 68, 65535);
  const mode = vlanMode(a, g.modes[p.name]);
  const routedIf = g.router?.ifaces.find((i) => i.port === p || g.config.ports.find((c) => c.name === p.name)?.routed === i.name);
  if (mode && (p.kind === "internal" || routedIf))
    throw new Error(`port ${p.name} belongs to router interface ${routedIf?.name ?? p.name}: its VLAN is the router's`);
  const impair = impairChange(g, p, a.impair);
  if (up === undefined && mtu === undefined && mode === undefined && impair === undefined)
    throw new Error("link set: say up, down, mtu N, a VLAN mode or an impairment (delay, loss, rate, …)");
  if (!commit) return null;
  if (impair) {
    const pc = g.config.ports.find((c) => c.name === p.name);
    for (const [dir, s] of impair) {
      g.engine.setImpairment(p, dir, s);
      if (pc) {
        const cur = { ...pc.impair };
        if (impairActive(s)) cur[dir] = s;
        else delete cur[dir];
        pc.impair = Object.keys(cur).length ? cur : undefined;
      }
    }
  }
  if (mode) {
    g.sw.setPortMode(p, mode);
    g.modes[p.name] = mode;
    const pc = g.config.ports.find((c) => c.name === p.name);
    if (pc) pc.vlan = mode;
  }
  if (mtu !== undefined && routedIf) rc.setMtu(router(g), routedIf.name, mtu);
  else if (mtu !== undefined) {
    const pc = g.config.ports.find((c) => c.name === p.name);
    if (pc) pc.mtu = mtu;
  }
  if (up !== undefined) g.setPortUp(p, up);
  return null;
}

/** The impairments link.set asks for: per direction, the settings they become (checked whole). */
function impairChange(g: NodeGraph, p: Port, v: unknown): Array<["in" | "out", ImpairSettings]> | undefined {
  if (v === undefined) return undefined;
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error("impair: expected an object of impairments");
  const { dir = "out", clear, ...fields } = v as Record<string, unknown>;
  if (dir !== "in" && dir !== "out" && dir !== "both") throw new Error(`impair.dir: '${String(dir)}' is not in, out or both`);
  if (clear !== undefined && typeof clear !== "boolean") throw new Error("impair.clear: expected true or false");
  if (p.kind === "internal") throw new Error(`port ${p.name} is a router interface inside the node: impair the device port it is routed through`);
  if (!clear && Object.keys(fields).length === 0) throw new Error("impair: say what (delay, jitter, loss, duplicate, reorder, rate, limit) or clear");
  const dirs: Array<"in" | "out"> = dir === "both" ? ["out", "in"] : [dir];
  const current = g.engine.impairments(p);
  return dirs.map((d) => [d, impairSettings(fields, clear ? noImpairment() : (current[d]?.settings ?? noImpairment()))]);
}

function routerSet(g: NodeGraph, a: Args, commit: boolean): unknown {
  const r = router(g);
  const redirects = optBool(a, "sendRedirects");
  const srr = optBool(a, "acceptSourceRoute");
  const ratelimit = optInt(a, "icmpRatelimit", 0, 600_000);
  const ratemask = optInt(a, "icmpRatemask", 0, (1 << 19) - 1);
  const dev = optStr(a, "dev");
  const ifc = dev === undefined ? undefined : r.ifaces.find((i) => i.name === dev);
  if (dev !== undefined && !ifc) throw new Error(`dev: no router interface '${dev}'`);
  if (redirects !== undefined && !ifc) throw new Error("sendRedirects: say which interface (dev)");
  if (srr !== undefined && !ifc) throw new Error("acceptSourceRoute: say which interface (dev)");
  if (redirects === undefined && srr === undefined && ratelimit === undefined && ratemask === undefined)
    throw new Error("router set: say sendRedirects, acceptSourceRoute, icmpRatelimit or icmpRatemask");
  if (!commit) return null;
  if (ifc && redirects !== undefined) ifc.sendRedirects = redirects;
  if (ifc && srr !== undefined) ifc.acceptSourceRoute = srr;
  r.setIcmpLimit(ratelimit, ratemask);
  return null;
}

function fdbOp(add: boolean): Op {
  return (g, a, commit) => {
    const p = port(g, str(a, "port"));
    const mac = parseMac(str(a, "mac"));
    if (p instanceof VxlanPort) {
      const dst = str(a, "dst");
      parseIp(dst);
      if (!commit) return null;
      if (mac === 0) {
        if (!(add ? p.fdb.addRemote(dst) : p.fdb.removeRemote(dst)) && !add) throw new Error(`${p.name} has no flood remote ${dst}`);
      } else if (add) p.fdb.add(str(a, "mac"), dst);
      else if (!p.fdb.remove(str(a, "mac"), dst)) throw new Error(`${p.name} has no entry ${str(a, "mac")} dst ${dst}`);
      return null;
    }
    if (a.dst !== undefined) throw new Error(`dst: ${p.name} is not a VXLAN port (dst names a remote VTEP)`);
    if (!macIsUnicast(mac) || mac === 0) throw new Error(`mac: ${str(a, "mac")} is not a unicast address (static entries are for stations)`);
    const m = g.modes[p.name];
    const vlan = optInt(a, "vlan", 1, 4094) ?? (m.mode === "access" ? m.vlan : (m.native ?? 0));
    if (vlan === 0) throw new Error(`vlan: port ${p.name} is a trunk with no native VLAN: say which VLAN`);
    if (!commit) return null;
    if (add) g.sw.addStatic({ mac, vlan, port: p.name });
    else if (!g.sw.removeStatic(mac, vlan)) throw new Error(`no static entry ${str(a, "mac")} vlan ${vlan}`);
    return null;
  };
}

function serviceAdd(g: NodeGraph, a: Args, commit: boolean): unknown {
  const name = str(a, "name");
  if (!/^[a-z][a-z0-9-]{0,62}$/.test(name)) throw new Error(`name: '${name}' must start with a letter and use a-z, 0-9 and '-'`);
  const protocol = a.protocol ?? "tcp";
  if (protocol !== "tcp" && protocol !== "udp") throw new Error(`protocol: '${String(protocol)}' is not tcp or udp`);
  const algorithm = a.algorithm ?? "random";
  if (algorithm !== "random" && algorithm !== "roundrobin") throw new Error(`algorithm: '${String(algorithm)}' is not random or roundrobin`);
  const svc = {
    name,
    vip: parseIp(str(a, "vip")),
    port: int(a, "port", 1, 65535),
    proto: (protocol === "tcp" ? 6 : 17) as 6 | 17,
    backends: backends(a.backends === undefined ? [] : strList(a, "backends")),
    algorithm: algorithm as "random" | "roundrobin",
  };
  router(g);
  if (g.nat?.services().some((s) => s.name === name)) throw new Error(`a service named '${name}' exists already (use 'service set')`);
  if (!commit) return null;
  g.ensureNat(true).addService(svc);
  return null;
}

function masqRule(g: NodeGraph, a: Args): { sources: Array<{ addr: number; prefixLen: number }>; outIf: number; toAddr: number } {
  const r = router(g);
  const dev = str(a, "interface");
  const outIf = r.ifaces.findIndex((i) => i.name === dev);
  if (outIf < 0) throw new Error(`interface: no interface '${dev}'`);
  const out = r.ifaces[outIf];
  if (out.addrs.length === 0) throw new Error(`interface: ${dev} has no address to masquerade to`);
  const sources = strList(a, "sources").map((c) => {
    const p = parseCidr(c);
    return { addr: p.network, prefixLen: p.prefixLen };
  });
  if (sources.length === 0) throw new Error("sources: at least one prefix");
  return { sources, outIf, toAddr: out.addrs[0] };
}

function tunnelPeer(add: boolean): Op {
  return (g, a, commit) => {
    const p = port(g, str(a, "port"));
    const peer = str(a, "peer");
    parseIp(peer);
    if (!(p instanceof VxlanPort) && !(p instanceof IpipPort)) throw new Error(`port ${p.name} is not a VXLAN or IPIP port`);
    if (!commit) return null;
    const done = p instanceof VxlanPort ? (add ? p.fdb.addRemote(peer) : p.fdb.removeRemote(peer)) : add ? p.addPeer(peer) : p.removePeer(peer);
    if (!done) throw new Error(add ? `${p.name} has ${peer} already` : `${p.name} has no peer ${peer}`);
    return null;
  };
}

const OPS: Record<string, Op> = {
  "route.add": routeOp(false),
  "route.replace": routeOp(true),
  "route.del": (g, a, commit) => rc.delRoute(router(g), str(a, "to"), commit),
  "route.get": (g, a) => rc.routeGet(router(g), str(a, "to")),
  "addr.add": (g, a, commit) => rc.addAddress(router(g), str(a, "address"), str(a, "dev"), commit),
  "addr.del": (g, a, commit) => ({ routesRemoved: rc.delAddress(router(g), str(a, "address"), str(a, "dev"), commit) }),
  "neigh.add": (g, a, commit) => rc.addNeighbour(router(g), str(a, "ip"), str(a, "lladdr"), str(a, "dev"), false, commit),
  "neigh.replace": (g, a, commit) => rc.addNeighbour(router(g), str(a, "ip"), str(a, "lladdr"), str(a, "dev"), true, commit),
  "neigh.del": (g, a, commit) => rc.delNeighbour(router(g), str(a, "ip"), str(a, "dev"), commit),
  "neigh.flush": (g, a, commit) => (commit ? { flushed: rc.flushNeighbours(router(g), optStr(a, "dev")) } : null),
  "fdb.add": fdbOp(true),
  "fdb.del": fdbOp(false),
  "fdb.flush": (g, _a, commit) => {
    if (commit) g.sw.flush();
    return null;
  },
  "link.set": linkSet,
  "router.set": routerSet,
  "port.add": portAdd,
  "port.del": (g, a, commit) => {
    const name = str(a, "name");
    if (port(g, name).kind === "mesh") throw new Error(`port ${name} is the node's mesh peer: it stays while the node runs`);
    if (commit) g.removePort(name);
    return null;
  },
  "service.add": serviceAdd,
  "service.set": (g, a, commit) => {
    const n = nat(g);
    const name = str(a, "name");
    const list = backends(strList(a, "backends"));
    if (!n.services().some((s) => s.name === name)) throw new Error(`no service named '${name}'`);
    if (commit) n.setServiceBackends(name, list);
    return null;
  },
  "service.del": (g, a, commit) => {
    const n = nat(g);
    const name = str(a, "name");
    if (!n.services().some((s) => s.name === name)) throw new Error(`no service named '${name}'`);
    if (commit) n.deleteService(name);
    return null;
  },
  "masquerade.add": (g, a, commit) => {
    const rule = masqRule(g, a);
    if (commit) g.ensureNat(false).addSnatRule(rule);
    return null;
  },
  "masquerade.del": (g, a, commit) => {
    const rule = masqRule(g, a);
    const n = nat(g);
    if (!n.snatRules().some((r) => r.outIf === rule.outIf && r.sources.length === rule.sources.length)) throw new Error("no such masquerade rule");
    if (commit && !n.deleteSnatRule(rule)) throw new Error("no such masquerade rule");
    return null;
  },
  "conntrack.flush": (g, _a, commit) => (commit ? { flushed: nat(g).conntrackFlush() } : null),
  "conntrack.del": (g, a, commit) => {
    const n = nat(g);
    const proto = { tcp: 6, udp: 17, icmp: 1 }[str(a, "proto")];
    if (proto === undefined) throw new Error(`proto: '${str(a, "proto")}' is not tcp, udp or icmp`);
    const src = parseIp(str(a, "src"));
    const dst = parseIp(str(a, "dst"));
    const sport = optInt(a, "sport", 0, 65535) ?? 0;
    const dport = optInt(a, "dport", 0, 65535) ?? 0;
    if (!commit) return null;
    if (!n.conntrackDelete(proto, src, sport, dst, dport, performance.now())) {
      throw new Error(`no tracked connection ${str(a, "proto")} ${ipToString(src)}:${sport} -> ${ipToString(dst)}:${dport}`);
    }
    return null;
  },
  "tunnel.peer.add": tunnelPeer(true),
  "tunnel.peer.del": tunnelPeer(false),
  "mesh.add": meshAdd,
};

export const OPERATIONS = Object.keys(OPS);

/** Checks, and unless `dryRun` applies, one operation; throws saying why it is refused. */
export function applyChange(g: NodeGraph, op: string, args: Args, dryRun = false): unknown {
  const f = OPS[op];
  if (!f) throw new Error(`unknown change '${op}' (changes: ${OPERATIONS.join(", ")})`);
  if (args === null || typeof args !== "object" || Array.isArray(args)) throw new Error(`${op}: arguments must be an object`);
  try {
    return f(g, args, !dryRun) ?? null;
  } catch (e) {
    throw new Error(`${op}: ${e instanceof Error ? e.message : String(e)}`);
  }
}
