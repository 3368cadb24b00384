/**
 * The topology checks across fields, run after the schema: unknown nodes and ports,
 * addresses that clash or sit outside their subnet, next hops on no connected subnet,
 * what kernel nodes and overlays need. Each problem carries the path of its field.
 */
import { meshHostWithoutIp, meshIpamChecks } from "../mesh/lab.js";
import { DhcpServer } from "../elements/router/dhcp.js";
import { bgpChecks } from "./bgp.js";
import { ipInSubnet, ipToString, maskFromPrefix } from "../wire/ipv4addr.js";
import { IFNAME_MAX, ifAddresses, ipToU32, isKernelNode, nodePorts, offloadCapable, splitCidr, type Topology } from "./topology-schema.js";

export interface Problem {
  path: (string | number)[];
  message: string;
  line?: number;
  col?: number;
}

/** Checks of what `overlay`, `underlay` and kernel nodes need, before the overlay is expanded. */
export function fabricChecks(t: Topology): Problem[] {
  const problems: Problem[] = [];
  const segments = Object.keys(t.underlay?.segments ?? {});
  const reserved = new Set([...Object.keys(t.nodes), ...Object.keys(t.hosts), "ul"]);
  for (const [r, segs] of Object.entries(t.underlay?.routers ?? {})) {
    if (reserved.has(r)) problems.push({ path: ["underlay", "routers", r], message: `'${r}' is already a node, host or reserved name` });
    for (const [seg, addr] of Object.entries(segs)) {
      if (`${r}-${seg}`.length > IFNAME_MAX) {
        problems.push({
          path: ["underlay", "routers", r, seg],
          message: `'${r}-${seg}' names its bridge port: router and segment names together are at most ${IFNAME_MAX - 1} characters`,
        });
      }
      if (!segments.includes(seg))
        problems.push({ path: ["underlay", "routers", r, seg], message: `unknown segment '${seg}' (segments: ${segments.join(", ") || "none"})` });
      if (!splitCidr(addr)) problems.push({ path: ["underlay", "routers", r, seg], message: `'${addr}' is not a valid IPv4 address with prefix` });
    }
  }
  for (const [n, spec] of Object.entries(t.nodes)) {
    const at = ["nodes", n];
    if (spec.underlay) {
      if (!segments.includes(spec.underlay.segment)) {
        problems.push({
          path: [...at, "underlay", "segment"],
          message: `unknown segment '${spec.underlay.segment}' (underlay.segments: ${segments.join(", ") || "none"})`,
        });
      }
      spec.underlay.also.forEach((a, k) => {
        if (!segments.includes(a.segment))
          problems.push({
            path: [...at, "underlay", "also", k, "segment"],
            message: `unknown segment '${a.segment}' (underlay.segments: ${segments.join(", ") || "none"})`,
          });
        if (a.segment === spec.underlay?.segment)
          problems.push({ path: [...at, "underlay", "also", k, "segment"], message: `the node is already on segment '${a.segment}'` });
      });
      const c = splitCidr(spec.underlay.address);
      if (!c) problems.push({ path: [...at, "underlay", "address"], message: `'${spec.underlay.address}' is not a valid IPv4 address with prefix` });
      else if (spec.underlay.gateway) {
        const g = ipToU32(spec.underlay.gateway);
        const m = maskFromPrefix(c.prefixLen);
        if (g === null || (g & m) >>> 0 !== (c.addr & m) >>> 0) {
          problems.push({ path: [...at, "underlay", "gateway"], message: `gateway ${spec.underlay.gateway} is not inside ${spec.underlay.address}` });
        }
      }
    }
    const needsUnderlay = Object.keys(spec.vxlan).length > 0 || Object.keys(spec.ipip).length > 0 || spec.kernelVxlan !== undefined;
    if (needsUnderlay && !spec.underlay) problems.push({ path: at, message: `node ${n} has tunnels but no underlay (underlay: { segment, address })` });
    if (isKernelNode(spec)) {
      for (const k of ["interfaces", "routes", "neighbors", "static"] as const) {
        const v = spec[k];
        if ((Array.isArray(v) ? v.length : Object.keys(v).length) > 0)
          problems.push({ path: [...at, k], message: `a kernel node is a Linux bridge: it takes no ${k}` });
      }
      if (Object.keys(spec.vxlan).length || Object.keys(spec.ipip).length) {
        problems.push({ path: at, message: "a kernel node's VXLAN device is kernelVxlan; vxlan/ipip ports are for tapnet nodes" });
      }
      for (const k of ["stormControl", "arpInspection"] as const) {
        if (spec[k]) problems.push({ path: [...at, k], message: `a kernel node is a Linux bridge: ${k} is a tapnet switch's (stp is both's)` });
      }
    } else if (spec.kernelVxlan) {
      problems.push({ path: [...at, "kernelVxlan"], message: "kernelVxlan belongs to kind: kernel nodes" });
    }
  }
  for (const [h, hs] of Object.entries(t.hosts)) {
    const n = t.nodes[hs.node];
    if (n && isKernelNode(n) && hs.vlan !== undefined)
      problems.push({ path: ["hosts", h, "vlan"], message: "hosts of a kernel node are untagged on its bridge" });
    for (const k of ["stormControl", "portSecurity", "impair"] as const) {
      if (n && isKernelNode(n) && hs[k])
        problems.push({ path: ["hosts", h, k], message: `host ${h} is on kernel node ${hs.node}, a Linux bridge: ${k} is a tapnet switch's` });
    }
    if (n && hs.stp && !n.stp) problems.push({ path: ["hosts", h, "stp"], message: `node ${hs.node} runs no spanning tree (nodes.${hs.node}.stp)` });
  }
  t.links.forEach((l, i) => {
    if (l.between.some((n) => t.nodes[n] && isKernelNode(t.nodes[n])) && (l.trunk || l.vlan !== undefined)) {
      problems.push({ path: ["links", i], message: "a link to a kernel node is an untagged bridge port (no trunk or vlan)" });
    }
    if (l.stp && l.between.every((n) => t.nodes[n] && !t.nodes[n].stp)) {
      problems.push({ path: ["links", i, "stp"], message: `neither ${l.between[0]} nor ${l.between[1]} runs spanning tree (nodes.NAME.stp)` });
    }
    if (l.stormControl && l.between.every((n) => t.nodes[n] && isKernelNode(t.nodes[n]))) {
      problems.push({ path: ["links", i, "stormControl"], message: "storm control is a tapnet switch's; both ends of this link are kernel nodes" });
    }
    if (l.impair && l.between.every((n) => t.nodes[n] && isKernelNode(t.nodes[n]))) {
      problems.push({ path: ["links", i, "impair"], message: "impairments are a tapnet port's; both ends of this link are kernel nodes" });
    }
    for (const n of Object.keys(l.impairAt ?? {})) {
      if (!l.between.includes(n)) problems.push({ path: ["links", i, "impairAt", n], message: `${n} is not an end of this link (${l.between.join(", ")})` });
      else if (t.nodes[n] && isKernelNode(t.nodes[n]))
        problems.push({ path: ["links", i, "impairAt", n], message: `impairments are a tapnet port's; ${n} is a kernel node` });
    }
  });
  if (t.overlay) {
    const tapnetNodes = Object.entries(t.nodes).filter(([, s]) => !isKernelNode(s));
    for (const [n, spec] of tapnetNodes) {
      if (!spec.podCidr && t.overlay.backend !== "mesh")
        problems.push({ path: ["nodes", n, "podCidr"], message: `overlay ${t.overlay.backend} needs every node's pod subnet: missing (required)` });
      if (!spec.underlay)
        problems.push({ path: ["nodes", n, "underlay"], message: `overlay ${t.overlay.backend} needs every node on the underlay: missing (required)` });
    }
    problems.push(...bgpChecks(t), ...meshIpamChecks(t));
    if (t.overlay.directRouting && t.overlay.backend !== "vxlan")
      problems.push({ path: ["overlay", "directRouting"], message: `flannel's DirectRouting is a vxlan option; backend ${t.overlay.backend} has none` });
  }
  return problems;
}

/**
 * Names the file declares, also of entries that failed the schema: a host on a node whose
 * own spec is wrong is reported for the node's problem, not as "unknown node".
 */
export interface Declared {
  nodes: Set<string>;
  hosts: Set<string>;
}

export function semanticChecks(t: Topology, declared: Declared): Problem[] {
  const problems: Problem[] = [];
  const nodeNames = [...declared.nodes];
  for (const h of declared.hosts) {
    if (declared.nodes.has(h)) problems.push({ path: ["hosts", h], message: `'${h}' is also a node name; hosts and nodes need distinct names` });
  }
  const seenIp = new Map<number, string>();
  for (const [h, spec] of Object.entries(t.hosts)) {
    if (!declared.nodes.has(spec.node)) {
      problems.push({ path: ["hosts", h, "node"], message: `unknown node '${spec.node}' (nodes: ${nodeNames.join(", ")})` });
    }
    if (spec.ip === undefined) {
      const why = meshHostWithoutIp(t, spec);
      if (why) problems.push({ path: ["hosts", h, "ip"], message: why });
      continue;
    }
    const c = splitCidr(spec.ip);
    if (!c) {
      problems.push({ path: ["hosts", h, "ip"], message: `'${spec.ip}' is not a valid IPv4 address with prefix` });
      continue;
    }
    if (c.prefixLen < 31) {
      const m = maskFromPrefix(c.prefixLen);
      if ((c.addr & ~m) >>> 0 === 0 || (c.addr | ~m) >>> 0 === 0xffffffff) {
        problems.push({ path: ["hosts", h, "ip"], message: `${spec.ip} is the network or broadcast address of its subnet` });
      }
    }
    const other = seenIp.get(c.addr);
    if (other) problems.push({ path: ["hosts", h, "ip"], message: `${spec.ip.split("/")[0]} is already host ${other}'s address` });
    seenIp.set(c.addr, h);
    if (spec.gateway !== undefined) {
      const g = ipToU32(spec.gateway);
      const m = maskFromPrefix(c.prefixLen);
      if (g === null) problems.push({ path: ["hosts", h, "gateway"], message: `'${spec.gateway}' is not a valid IPv4 address` });
      else if ((g & m) >>> 0 !== (c.addr & m) >>> 0) {
        problems.push({ path: ["hosts", h, "gateway"], message: `gateway ${spec.gateway} is not inside ${spec.ip}` });
      } else if (g === c.addr) {
        problems.push({ path: ["hosts", h, "gateway"], message: `gateway ${spec.gateway} is the host's own address` });
      }
    }
    if (spec.mac !== undefined && (parseInt(spec.mac.slice(0, 2), 16) & 1) === 1) {
      problems.push({ path: ["hosts", h, "mac"], message: `${spec.mac} is a multicast address; a host needs a unicast MAC` });
    }
    const ps = spec.portSecurity;
    if (ps) {
      if (ps.macs.length > ps.maxMacs)
        problems.push({ path: ["hosts", h, "portSecurity", "macs"], message: `${ps.macs.length} static MACs, but maxMacs is ${ps.maxMacs}` });
      ps.macs.forEach((m, k) => {
        if ((parseInt(m.slice(0, 2), 16) & 1) === 1)
          problems.push({ path: ["hosts", h, "portSecurity", "macs", k], message: `${m} is a group address; secure MACs are stations` });
      });
      if (spec.mac !== undefined && ps.macs.length === ps.maxMacs && !ps.macs.some((m) => m.toLowerCase() === spec.mac?.toLowerCase())) {
        problems.push({ path: ["hosts", h, "portSecurity"], message: `the static MACs fill maxMacs and leave out the host's own ${spec.mac}` });
      }
    }
  }
  const pairs = new Set<string>();
  t.links.forEach((l, i) => {
    const [a, b] = l.between;
    for (const [k, n] of [a, b].entries()) {
      if (!declared.nodes.has(n)) problems.push({ path: ["links", i, "between", k], message: `unknown node '${n}' (nodes: ${nodeNames.join(", ")})` });
    }
    if (a === b) problems.push({ path: ["links", i, "between"], message: `a link joins two different nodes, not '${a}' to itself` });
    const key = [a, b].sort().join("\0");
    if (pairs.has(key)) problems.push({ path: ["links", i, "between"], message: `${a} and ${b} are already linked; one link per pair of nodes` });
    pairs.add(key);
    if (declared.hosts.has(a) || declared.hosts.has(b)) {
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
    if (spec.io !== undefined && isKernelNode(spec)) {
      problems.push({ path: ["nodes", n, "io"], message: "a kind: kernel node is a Linux bridge: it has no TAP ports for tapnet's io setting" });
    }
    if (spec.busyPoll !== undefined && isKernelNode(spec)) {
      problems.push({ path: ["nodes", n, "busyPoll"], message: "a kind: kernel node is a Linux bridge: it runs no tapnet event loop to busy-poll" });
    }
    (spec.arpInspection?.bindings ?? []).forEach((b, i) => {
      if ((parseInt(b.mac.slice(0, 2), 16) & 1) === 1)
        problems.push({ path: ["nodes", n, "arpInspection", "bindings", i, "mac"], message: `${b.mac} is a group address; a binding names a station` });
      if (ipToU32(b.ip) === null) problems.push({ path: ["nodes", n, "arpInspection", "bindings", i, "ip"], message: `'${b.ip}' is not a valid IPv4 address` });
    });
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
      const link = t.links.find((l) => l?.between.includes(node) && l.between.includes(i.port as string));
      if (link && (link.trunk || link.vlan !== undefined)) {
        problems.push({ path: [...at, "port"], message: `the link ${node}-${i.port} is a trunk or VLAN access link; a routed port takes an untagged link` });
      }
    }
    if (i.dhcp) {
      const c = splitCidr(ifAddresses(i)[0]);
      if (c) {
        try {
          new DhcpServer(ifn, i.dhcp, c.addr >>> 0, c.prefixLen);
        } catch (e) {
          problems.push({ path: [...at, "dhcp", "range"], message: (e as Error).message });
        }
      }
    }
    ifAddresses(i).forEach((a, k) => {
      const c = splitCidr(a);
      const where = Array.isArray(i.address) ? [...at, "address", k] : [...at, "address"];
      if (!c) return void problems.push({ path: where, message: `'${a}' is not a valid IPv4 address with prefix` });
      const mask = maskFromPrefix(c.prefixLen);
      if (c.prefixLen < 31 && ((c.addr & ~mask) >>> 0 === 0 || (c.addr | ~mask) >>> 0 === 0xffffffff)) {
        problems.push({ path: where, message: `${a} is the network or broadcast address of its subnet` });
      }
      const net = (c.addr & mask) >>> 0;
      // A /32 (flannel.1's, tunl0's) is a lone address, not a subnet: it may sit in another's.
      const clash = c.prefixLen === 32 ? undefined : subnets.find((s) => s.len < 32 && (ipInSubnet(net, s.net, s.mask) || ipInSubnet(s.net, net, mask)));
      if (clash) problems.push({ path: where, message: `${a} overlaps the subnet of interface ${clash.iface}` });
      subnets.push({ net, mask, len: c.prefixLen, iface: ifn });
    });
  }
  spec.routes.forEach((r, k) => {
    const at = ["nodes", node, "routes", k];
    if (r.to !== "default") {
      const c = splitCidr(r.to);
      if (!c) problems.push({ path: [...at, "to"], message: `'${r.to}' is not a valid prefix` });
      else if ((c.addr & ~maskFromPrefix(c.prefixLen)) >>> 0 !== 0) {
        problems.push({
          path: [...at, "to"],
          message: `${r.to} has host bits set (did you mean ${ipToString((c.addr & maskFromPrefix(c.prefixLen)) >>> 0)}/${c.prefixLen}?)`,
        });
      }
    }
    const via = r.via === undefined ? undefined : ipToU32(r.via);
    if (r.dev !== undefined && !spec.interfaces[r.dev]) {
      problems.push({ path: [...at, "dev"], message: `node ${node} has no interface '${r.dev}'` });
    }
    if (r.onlink && r.dev === undefined) problems.push({ path: [...at, "onlink"], message: "an onlink route names its interface (dev)" });
    if (via === null) problems.push({ path: [...at, "via"], message: `'${r.via}' is not a valid IPv4 address` });
    else if (via !== undefined && !r.onlink && !subnets.some((s) => (via & s.mask) >>> 0 === s.net)) {
      problems.push({ path: [...at, "via"], message: `next hop ${r.via} is not inside a subnet of any interface of ${node}` });
    }
  });
  for (const [k, m] of (spec.nat?.masquerade ?? []).entries()) {
    if (!spec.interfaces[m.interface])
      problems.push({ path: ["nodes", node, "nat", "masquerade", k, "interface"], message: `node ${node} has no interface '${m.interface}'` });
  }
  for (const [svc, sv] of Object.entries(spec.services)) {
    if (Object.keys(spec.interfaces).length === 0)
      problems.push({ path: ["nodes", node, "services", svc], message: "services need a router: give the node interfaces" });
    sv.backends.forEach((b, k) => {
      const [a, p] = b.split(":");
      if (ipToU32(a) === null || Number(p) < 1 || Number(p) > 65535)
        problems.push({ path: ["nodes", node, "services", svc, "backends", k], message: `'${b}' is not ADDRESS:PORT` });
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
    if (ip === null || (!onlinkVia && !subnets.some((s) => s.iface === nb.interface && (ip & s.mask) >>> 0 === s.net))) {
      problems.push({ path: [...at, "ip"], message: `${nb.ip} is not inside a subnet of interface ${nb.interface}` });
    }
  });
}
