/**
 * Runtime changes to a router, as `ip route`, `ip neigh` and `ip addr` make them on Linux:
 * each is checked whole first and then applied, or refused with a reason and nothing
 * changed. They run between passes (the control socket's turn of the event loop), never
 * in the middle of a batch.
 *
 *   routes      add (refused when the prefix has one: replace), replace, del, get;
 *               a next hop must be on a connected subnet of its interface unless the
 *               route is `onlink` with a `dev` (flannel's routes); connected routes follow
 *               the addresses and cannot be deleted on their own
 *   addresses   add, del: the connected route comes and goes with the address, and a
 *               route whose next hop was reachable only through it goes too
 *   neighbours  add/replace a static entry (PERMANENT), del, flush the learned ones
 * With `commit` false a change only runs its checks (a dry run).
 */
import { ipToString, parseCidr, parseIp } from "../../wire/ipv4addr.js";
import { macIsUnicast, macToString, parseMac } from "../../wire/mac.js";
import { NUD_PERMANENT } from "../neighbour-cache.js";
import type { Ipv4Router } from "./ipv4-router.js";
import { onSubnet, type RouterInterface, sourceFor } from "./state.js";

export interface RouteSpec {
  /** CIDR or "default". */
  to: string;
  via?: string;
  dev?: string;
  onlink?: boolean;
  /** What `show route` says the route came from (static, bgp, flannel…). */
  proto?: string;
}

export interface RouteAnswer {
  prefix: string;
  via: string | null;
  dev: string;
  src: string | null;
  proto: string;
}

function prefixOf(to: string): { prefix: number; prefixLen: number; text: string } {
  if (to === "default") return { prefix: 0, prefixLen: 0, text: "0.0.0.0/0" };
  const c = parseCidr(to);
  if (c.addr !== c.network) throw new Error(`${to} has host bits set (did you mean ${ipToString(c.network)}/${c.prefixLen}?)`);
  return { prefix: c.network, prefixLen: c.prefixLen, text: `${ipToString(c.network)}/${c.prefixLen}` };
}

function iface(r: Ipv4Router, dev: string): RouterInterface {
  const i = r.ifaces.find((x) => x.name === dev);
  if (!i) throw new Error(`no interface '${dev}' (interfaces: ${r.ifaces.map((x) => x.name).join(", ") || "none"})`);
  return i;
}

/** Adds (`replace` false: refused when the prefix has a route) or replaces a route. */
export function addRoute(r: Ipv4Router, spec: RouteSpec, replace: boolean, commit = true): void {
  const s = r.state;
  const p = prefixOf(spec.to);
  const proto = spec.proto ?? "static";
  if (!/^[a-z][a-z0-9-]{0,15}$/.test(proto) || proto === "connected") throw new Error(`'${proto}' is not a route protocol name`);
  let ifIndex: number;
  let gateway = 0;
  if (spec.via !== undefined) {
    gateway = parseIp(spec.via);
    if (spec.dev !== undefined) {
      const ifc = iface(r, spec.dev);
      if (!spec.onlink && !onSubnet(ifc, gateway))
        throw new Error(`next hop ${spec.via} is not on a connected subnet of ${spec.dev} (add 'onlink' if it is on that link anyway)`);
      ifIndex = ifc.index;
    } else {
      if (spec.onlink) throw new Error("an onlink route names its interface (dev)");
      ifIndex = s.connectedIf(gateway);
      if (ifIndex < 0) throw new Error(`next hop ${spec.via} is not on a connected subnet of any interface`);
    }
    if (s.local.has(gateway | 0)) throw new Error(`next hop ${spec.via} is one of the router's own addresses`);
  } else {
    if (spec.dev === undefined) throw new Error("a route needs a next hop (via) or an interface (dev)");
    ifIndex = iface(r, spec.dev).index;
  }
  const old = s.fib.get(p.prefix, p.prefixLen);
  if (old >= 0) {
    if (s.routeKind[old] === "connected") throw new Error(`${p.text} is the connected subnet of ${s.ifaces[s.routeIf[old]].name}: change the address instead`);
    if (!replace) throw new Error(`a route to ${p.text} exists already (use 'route replace')`);
  }
  if (!commit) return;
  s.addRoute({ prefix: p.prefix, prefixLen: p.prefixLen, gateway, ifIndex, onlink: spec.onlink ?? false }, proto);
}

/** Deletes the route for exactly this prefix (not a connected one). */
export function delRoute(r: Ipv4Router, to: string, commit = true): void {
  const s = r.state;
  const p = prefixOf(to);
  const id = s.fib.get(p.prefix, p.prefixLen);
  if (id < 0) throw new Error(`no route to ${p.text}`);
  if (s.routeKind[id] === "connected") throw new Error(`${p.text} is the connected subnet of ${s.ifaces[s.routeIf[id]].name}: delete the address instead`);
  if (commit) s.removeRoute(p.prefix, p.prefixLen);
}

/** The route a destination takes (`ip route get`), or an error saying there is none. */
export function routeGet(r: Ipv4Router, addr: string): RouteAnswer {
  const s = r.state;
  const dst = parseIp(addr);
  const local = s.local.get(dst | 0);
  if (local !== undefined) return { prefix: `${addr}/32`, via: null, dev: s.ifaces[local].name, src: addr, proto: "local" };
  const id = s.fib.lookup(dst);
  if (id < 0) throw new Error(`no route to ${addr}: Network is unreachable`);
  const ifc = s.ifaces[s.routeIf[id]];
  const gw = s.routeGw[id];
  return {
    prefix: `${ipToString(s.routePrefix[id])}/${s.routeLen[id]}`,
    via: gw ? ipToString(gw) : null,
    dev: ifc.name,
    src: ifc.addrs.length ? ipToString(sourceFor(ifc, gw || dst)) : null,
    proto: s.routeKind[id],
  };
}

export function addAddress(r: Ipv4Router, cidr: string, dev: string, commit = true): void {
  const s = r.state;
  const c = parseCidr(cidr);
  const ifc = iface(r, dev);
  if (c.prefixLen < 31 && (c.addr === c.network || (c.addr | ~c.mask) >>> 0 === c.addr))
    throw new Error(`${cidr} is the network or broadcast address of its subnet`);
  const other = s.local.get(c.addr | 0);
  if (other !== undefined) throw new Error(`${ipToString(c.addr)} is already an address of ${s.ifaces[other].name}`);
  if (c.prefixLen < 32) {
    const id = s.fib.get(c.network, c.prefixLen);
    if (id >= 0 && s.routeKind[id] !== "connected")
      throw new Error(`a ${s.routeKind[id]} route to ${ipToString(c.network)}/${c.prefixLen} exists: delete it first`);
    for (const i of s.ifaces) {
      i.addrs.forEach((a, k) => {
        const len = Math.min(i.prefixLens[k], c.prefixLen);
        const m = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
        if (i.prefixLens[k] < 32 && i !== ifc && (a & m) >>> 0 === (c.addr & m) >>> 0) {
          throw new Error(`${cidr} overlaps the subnet of interface ${i.name} (${ipToString(a)}/${i.prefixLens[k]})`);
        }
      });
    }
  }
  if (commit) s.addAddress(ifc, c.addr, c.prefixLen);
}

export function delAddress(r: Ipv4Router, cidr: string, dev: string, commit = true): number {
  const c = parseCidr(cidr);
  const ifc = iface(r, dev);
  const k = ifc.addrs.findIndex((a, j) => a === c.addr && ifc.prefixLens[j] === c.prefixLen);
  if (k < 0)
    throw new Error(`${dev} has no address ${cidr} (addresses: ${ifc.addrs.map((a, j) => `${ipToString(a)}/${ifc.prefixLens[j]}`).join(", ") || "none"})`);
  return commit ? r.state.removeAddress(ifc, k) : 0;
}

/** A static (PERMANENT) neighbour entry; `replace` false refuses an existing static one. */
export function addNeighbour(r: Ipv4Router, ip: string, lladdr: string, dev: string, replace: boolean, commit = true): void {
  const s = r.state;
  const ifc = iface(r, dev);
  const addr = parseIp(ip);
  const mac = parseMac(lladdr);
  if (!macIsUnicast(mac) || mac === 0) throw new Error(`${lladdr} is not a unicast MAC address`);
  const onlinkVia = s.fib.entries().some((e) => s.routeIf[e.value] === ifc.index && s.routeOnlink[e.value] && s.routeGw[e.value] === addr);
  if (!onSubnet(ifc, addr) && !onlinkVia) throw new Error(`${ip} is not on a connected subnet of ${dev} (nor the next hop of an onlink route through it)`);
  if (s.local.has(addr | 0)) throw new Error(`${ip} is one of the router's own addresses`);
  const old = s.neigh.get(ifc.index, addr);
  if (old !== undefined && old.state === NUD_PERMANENT && !replace)
    throw new Error(`a static entry for ${ip} on ${dev} exists already (${macToString(old.mac)}; use 'neigh replace')`);
  if (commit) s.neigh.setStatic(ifc.index, addr >>> 0, mac);
}

export function delNeighbour(r: Ipv4Router, ip: string, dev: string, commit = true): void {
  const ifc = iface(r, dev);
  const addr = parseIp(ip);
  if (r.state.neigh.get(ifc.index, addr) === undefined) throw new Error(`no neighbour entry for ${ip} on ${dev}`);
  if (commit) r.state.neigh.removeAddr(ifc.index, addr);
}

export function flushNeighbours(r: Ipv4Router, dev?: string): number {
  return r.state.neigh.flush(dev === undefined ? undefined : iface(r, dev).index);
}

/** An interface's MTU (`ip link set DEV mtu N`): what forwarding and fragmentation use. */
export function setMtu(r: Ipv4Router, dev: string, mtu: number, commit = true): void {
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw new Error(`MTU ${mtu} is not 68-65535`);
  const ifc = iface(r, dev);
  if (commit) ifc.mtu = mtu;
}
