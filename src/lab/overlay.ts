/**
 * The `overlay:` section of a topology expanded into plain per-node config: what
 * flanneld (VXLAN, host-gw) or Calico (IPIP) would configure on each node.
 */
import { ipInSubnet, ipToString, maskFromPrefix } from "../wire/ipv4addr.js";
import { expandBgpNode, underlayMac } from "./bgp.js";
import { ifaceMac, isKernelNode, type NodeSpec, splitCidr, type Topology, UNDERLAY_PORT } from "./topology-schema.js";
import { expandMesh } from "../mesh/lab.js";

/**
 * What flanneld or Calico would configure, written out as plain tapnet config: a
 * cni0-like SVI (the pod subnet's first address) on each node, plus per backend
 *   vxlan   (flannel): port vxlan0, interface flannel.1 on it = POD-NET/32 with MTU
 *           underlay - 50, routes "POD-NET(peer) via PEER-NET dev flannel.1 onlink",
 *           a static neighbour PEER-NET -> the peer's flannel.1 MAC, a static VTEP
 *           FDB entry that MAC -> the peer's underlay address, learning off; with
 *           directRouting (flannel's DirectRouting), an interface ul0 on the underlay port
 *           sharing the kernel's address and MAC (src/lab/bgp.ts), and a peer on the same
 *           underlay subnet gets "POD-NET(peer) via PEER-UNDERLAY" instead;
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
  if (o.backend === "mesh") return { topology: expandMesh(out), notes };
  const nodes = Object.entries(out.nodes).filter(([, s]) => !isKernelNode(s) && s.podCidr && s.underlay);
  const info = nodes.map(([n, s]) => {
    const pod = splitCidr(s.podCidr as string) as { addr: number; prefixLen: number };
    const ul = splitCidr((s.underlay as NonNullable<NodeSpec["underlay"]>).address) as { addr: number; prefixLen: number };
    const podNet = (pod.addr & maskFromPrefix(pod.prefixLen)) >>> 0;
    return { n, s, podNet, podLen: pod.prefixLen, ul, ulAddr: ipToString(ul.addr), tunnelMac: ifaceMac(t.name, n, 100) };
  });
  for (const me of info) {
    const s = me.s;
    const ulMtu = (s.underlay as NonNullable<NodeSpec["underlay"]>).mtu;
    s.interfaces.cni0 ??= { vlan: 1, address: `${ipToString(me.podNet + 1)}/${me.podLen}`, proxyArp: false };
    // A node with an agent learns its peers from etcd at run time (src/agent/flannel.ts).
    const peers = me.s.agent ? [] : info.filter((p) => p !== me && !p.s.agent);
    if (o.backend === "bgp" || o.backend === "bgp-ipip") {
      // Routes come from BGP, not from the file.
      expandBgpNode(out, me.n, s, me.podNet, me.podLen, peers);
    } else if (o.backend === "vxlan") {
      s.vxlan.vxlan0 = {
        vni: o.vni,
        port: o.port ?? 8472,
        remotes: [],
        fdb: peers.map((p) => ({ mac: p.tunnelMac, remote: p.ulAddr })),
        arpSuppress: [],
        learning: false,
        udpChecksum: true,
      };
      s.interfaces["flannel.1"] = { port: "vxlan0", address: `${ipToString(me.podNet)}/32`, mtu: ulMtu - 50, mac: me.tunnelMac, proxyArp: false };
      const mask = maskFromPrefix(me.ul.prefixLen);
      const direct = (p: (typeof info)[number]): boolean => o.directRouting && ipInSubnet(p.ul.addr, me.ul.addr & mask, mask);
      if (o.directRouting) {
        const ul = s.underlay as NonNullable<NodeSpec["underlay"]>;
        s.interfaces.ul0 = { port: UNDERLAY_PORT, address: ul.address, mtu: ulMtu, mac: underlayMac(t, me.n), proxyArp: false };
      }
      for (const p of peers.filter(direct)) s.routes.push({ to: `${ipToString(p.podNet)}/${p.podLen}`, via: p.ulAddr, onlink: false });
      (s.vxlan.vxlan0 as { fdb: Array<{ mac: string; remote: string }> }).fdb = peers
        .filter((p) => !direct(p))
        .map((p) => ({ mac: p.tunnelMac, remote: p.ulAddr }));
      for (const p of peers.filter((x) => !direct(x))) {
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
      const mask = maskFromPrefix(me.ul.prefixLen);
      for (const p of peers) {
        if (ipInSubnet(p.ul.addr, me.ul.addr & mask, mask)) {
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

/** What the overlay expansion had to say about a parsed topology (host-gw limits). */
export const overlayNotes = new WeakMap<Topology, string[]>();
