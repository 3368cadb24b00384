/**
 * The running configuration of a node: its NodeConfig as it is now, read from the live
 * graph after every runtime change (ports, switch statics, router interfaces and
 * addresses, routes, static neighbours, NAT rules and services, tunnel remotes). `lab
 * save` turns it back into a topology file; a node started from it needs no journal.
 */
import { IpipPort } from "../io/ipip-port.js";
import { VxlanPort } from "../io/vxlan-port.js";
import { ipToString } from "../wire/ipv4addr.js";
import { macToString } from "../wire/mac.js";
import type { NodeConfig, NodePortConfig } from "./config.js";
import type { NodeGraph } from "./graph.js";

export function runningConfig(g: NodeGraph): NodeConfig {
  const cfg = g.config;
  const ports: NodePortConfig[] = cfg.ports.map((pc) => {
    const p = g.engine.port(pc.name);
    const out: NodePortConfig = { ...pc, vlan: g.modes[pc.name] ?? pc.vlan };
    if (p instanceof VxlanPort && pc.vxlan) {
      const learnedOrStatic = p.fdb.entries(performance.now()).filter((e) => e.static);
      out.vxlan = { ...pc.vxlan, remotes: p.fdb.remotes(), fdb: learnedOrStatic.map((e) => ({ mac: e.mac, remote: e.remote })) };
    }
    if (p instanceof IpipPort && pc.ipip) out.ipip = { ...pc.ipip, peers: p.tunnelInfo().peers };
    return out;
  });
  const routerMacs = new Set((cfg.router?.interfaces ?? []).map((i) => i.mac));
  const statics = g.sw
    .entries(performance.now())
    .filter((e) => e.isStatic && !routerMacs.has(macToString(e.mac)))
    .map((e) => ({ mac: macToString(e.mac), vlan: e.vlan, port: g.engine.ports[e.port].name }));
  const r = g.router;
  let router: NodeConfig["router"];
  if (r && cfg.router) {
    const s = r.state;
    const routes: NonNullable<NodeConfig["router"]>["routes"] = [];
    for (const e of s.fib.entries()) {
      const id = e.value;
      if (s.routeKind[id] === "connected") continue;
      routes.push({
        to: `${ipToString(s.routePrefix[id])}/${s.routeLen[id]}`,
        via: s.routeGw[id] ? ipToString(s.routeGw[id]) : undefined,
        dev: s.routeOnlink[id] || !s.routeGw[id] ? s.ifaces[s.routeIf[id]].name : undefined,
        onlink: s.routeOnlink[id] || undefined,
        proto: s.routeKind[id] === "static" ? undefined : s.routeKind[id],
      });
    }
    const nat = g.nat;
    router = {
      interfaces: r.ifaces.map((i, k) => ({
        ...cfg.router!.interfaces[k],
        sendRedirects: i.sendRedirects ? undefined : false,
        acceptSourceRoute: i.acceptSourceRoute ? true : undefined,
        mtu: i.mtu,
        addresses: i.addrs.map((a, j) => `${ipToString(a)}/${i.prefixLens[j]}`),
      })),
      routes,
      icmp: r.icmpLimit.ratelimit === 1000 && r.icmpLimit.ratemask === 6168 ? undefined : r.icmpLimit,
      neighbors: r.neigh
        .entries()
        .filter((n) => n.state === 4)
        .map((n) => ({ ip: ipToString(n.addr), mac: macToString(n.mac), interface: r.ifaces[n.ifIndex].name })),
      nat:
        nat === null
          ? undefined
          : {
              masquerade: nat.snatRules().map((rule) => ({
                sources: rule.sources.map((p) => `${ipToString(p.addr)}/${p.prefixLen}`),
                interface: r.ifaces[rule.outIf].name,
              })),
              maxEntries: cfg.router.nat?.maxEntries,
              timeouts: cfg.router.nat?.timeouts ?? {},
            },
      services: (nat?.services() ?? []).map((v) => ({
        name: v.name,
        vip: v.vip,
        port: v.port,
        protocol: v.proto,
        backends: v.backends,
        algorithm: v.algorithm,
      })),
      ...(cfg.router.clusterDns ? { clusterDns: cfg.router.clusterDns } : {}),
    };
  }
  return { ...cfg, ports, switch: { ...cfg.switch, static: statics }, router };
}
