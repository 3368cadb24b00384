/** A tapnet node's config (NodeConfig, the JSON its process reads) from the topology. */
import path from "node:path";
import type { NodeConfig, NodePortConfig } from "../node/config.js";
import { bgpNodeConfig, sharedUnderlayFilter } from "./bgp.js";
import { labDir } from "./state.js";
import { bridgeMac, ifaceMac, ifAddresses, MESH_PORT_NAME, offloadCapable, UNDERLAY_PORT, usesUnderlayPort, type Topology } from "./topology.js";

export function nodeConfig(t: Topology, node: string): NodeConfig {
  const spec = t.nodes[node];
  const ports: NodePortConfig[] = [];
  const mtuOf: Record<string, number> = {};
  const used = new Set<number>();
  for (const [h, hs] of Object.entries(t.hosts)) {
    if (hs.node !== node) continue;
    ports.push({
      name: h,
      kind: hs.link === "tap" ? "tap" : hs.link === "veth-xdp" ? "xdp" : "pcap",
      ifname: h,
      vlan: { mode: "access", vlan: hs.vlan ?? 1 },
      stp: hs.stp,
      stormControl: hs.stormControl ?? spec.stormControl,
      portSecurity: hs.portSecurity,
      ...(hs.impair ? { impair: hs.impair } : {}),
    });
    mtuOf[h] = hs.mtu ?? 1500;
    used.add(hs.vlan ?? 1);
  }
  for (const l of t.links) {
    const i = l.between.indexOf(node);
    if (i < 0) continue;
    const peer = l.between[1 - i];
    ports.push({
      name: peer,
      kind: "pcap",
      ifname: peer,
      vlan: l.trunk ? { mode: "trunk", allowed: l.trunk.vlans, native: l.trunk.native } : { mode: "access", vlan: l.vlan ?? 1 },
      stp: l.stp,
      stormControl: l.stormControl ?? spec.stormControl,
      trusted: true,
      ...((l.impairAt?.[node] ?? l.impair) ? { impair: l.impairAt?.[node] ?? l.impair } : {}),
    });
    mtuOf[peer] = l.mtu;
    for (const v of l.trunk?.vlans ?? [l.vlan ?? 1]) used.add(v);
    if (l.trunk?.native) used.add(l.trunk.native);
  }
  const ul = spec.underlay;
  const localAddr = ul ? ul.address.split("/")[0] : "";
  for (const [name, v] of Object.entries(spec.vxlan)) {
    ports.push({
      name,
      kind: "vxlan",
      ifname: name,
      vlan: { mode: "access", vlan: v.vlan ?? 1 },
      trusted: true,
      vxlan: {
        vni: v.vni,
        dstPort: v.port,
        localAddr,
        remotes: v.remotes,
        fdb: v.fdb,
        arpSuppress: v.arpSuppress,
        learning: v.learning,
        udpChecksum: v.udpChecksum,
        underlayMtu: ul?.mtu ?? 1500,
      },
    });
    mtuOf[name] = (ul?.mtu ?? 1500) - 50;
    used.add(v.vlan ?? 1);
  }
  for (const [name, v] of Object.entries(spec.ipip)) {
    ports.push({
      name,
      kind: "ipip",
      ifname: name,
      vlan: { mode: "access", vlan: 1 },
      ipip: { localAddr, peers: v.peers, underlayMtu: ul?.mtu ?? 1500 },
      trusted: true,
    });
    mtuOf[name] = (ul?.mtu ?? 1500) - 20;
  }
  if (spec.mesh) {
    const m = spec.mesh;
    const addresses = ul ? [ul.address, ...ul.also.map((a) => a.address)].map((a) => a.split("/")[0]) : [];
    ports.push({
      name: MESH_PORT_NAME,
      kind: "mesh",
      ifname: MESH_PORT_NAME,
      vlan: { mode: "access", vlan: 1 },
      mesh: { name: node, port: m.port, password: m.password, peers: m.peers, addresses, underlayMtu: ul?.mtu ?? 1500, ...(m.ipam ? { ipam: m.ipam } : {}) },
      trusted: true,
    });
    mtuOf[MESH_PORT_NAME] = (ul?.mtu ?? 1500) - 60;
  }
  if (usesUnderlayPort(spec)) {
    ports.push({ name: UNDERLAY_PORT, kind: "pcap", ifname: "ul0", vlan: { mode: "access", vlan: 1 }, trusted: true });
    mtuOf[UNDERLAY_PORT] = ul?.mtu ?? 1500;
  }
  const ifaces = Object.entries(spec.interfaces);
  for (const [, i] of ifaces) if (i.vlan !== undefined) used.add(i.vlan);
  // A routed port is a VLAN of its own inside the switch, taken from the top down.
  let internalVlan = 4094;
  const router = ifaces.length
    ? {
        interfaces: ifaces.map(([name, i], n) => {
          let vlan = i.vlan;
          if (vlan === undefined) {
            while (used.has(internalVlan)) internalVlan--;
            vlan = internalVlan--;
            const p = ports.find((x) => x.name === i.port) as NodePortConfig;
            p.vlan = { mode: "access", vlan };
            p.routed = name;
          }
          return {
            name,
            vlan,
            mac: i.mac ?? ifaceMac(t.name, node, n + 1),
            mtu: i.mtu ?? (i.port !== undefined ? mtuOf[i.port] : 1500),
            addresses: ifAddresses(i),
            proxyArp: i.proxyArp,
            ...(i.sendRedirects === false ? { sendRedirects: false } : {}),
            ...(i.acceptSourceRoute ? { acceptSourceRoute: true } : {}),
            ...(i.dhcp ? { dhcp: i.dhcp } : {}),
          };
        }),
        routes: spec.routes.map((r) => ({ to: r.to === "default" ? "0.0.0.0/0" : r.to, via: r.via, dev: r.dev, onlink: r.onlink, proto: r.proto })),
        neighbors: spec.neighbors,
        ...(spec.icmp ? { icmp: spec.icmp } : {}),
        nat: spec.nat,
        services: Object.entries(spec.services).map(([name, sv]) => ({ name, ...sv })),
        ...(spec.clusterDns ? { clusterDns: spec.clusterDns } : {}),
      }
    : undefined;
  const cfg: NodeConfig = {
    lab: t.name,
    node,
    controlSocket: path.join(labDir(t.name), `${node}.sock`),
    journal: path.join(labDir(t.name), `${node}.journal`),
    persistentTaps: true,
    ports,
    offload: spec.offload ?? offloadCapable(t, node),
    ...(spec.io !== undefined ? { io: spec.io } : {}),
    ...(spec.busyPoll !== undefined ? { busyPoll: spec.busyPoll } : {}),
    ...(spec.standby === true ? { standby: true } : {}),
    switch: {
      ageingTime: spec.ageingTime,
      maxEntries: spec.maxEntries,
      static: spec.static,
      stp: spec.stp ? { ...spec.stp, mac: bridgeMac(t.name, node) } : undefined,
      arpInspection: spec.arpInspection,
    },
    router,
  };
  bgpNodeConfig(t, node, cfg);
  sharedUnderlayFilter(t, node, cfg);
  return cfg;
}
