/**
 * The `mesh` overlay of a topology: every tapnet node with an underlay becomes a mesh
 * peer (port `weave` on its switch, the agent in its process), told to connect to the
 * nodes that share one of its underlay segments; the rest of the mesh it learns by
 * gossip. Pods sit on one flat subnet across the nodes (Weave's model): the mesh
 * bridges their frames, no router is involved.
 */
import { isKernelNode, type Topology } from "../lab/topology-schema.js";
import { MESH_PORT } from "./wire.js";

export function expandMesh(t: Topology): Topology {
  const o = t.overlay;
  if (!o) return t;
  const nodes = Object.entries(t.nodes).filter(([, s]) => !isKernelNode(s) && s.underlay);
  const segsOf = (s: (typeof nodes)[number][1]): Array<{ segment: string; addr: string }> => {
    const ul = s.underlay;
    if (!ul) return [];
    return [{ segment: ul.segment, address: ul.address }, ...ul.also].map((a) => ({ segment: a.segment, addr: a.address.split("/")[0] }));
  };
  for (const [n, s] of nodes) {
    const mine = new Set(segsOf(s).map((x) => x.segment));
    const peers: string[] = [];
    for (const [m, other] of nodes) {
      if (m === n) continue;
      const shared = segsOf(other).find((x) => mine.has(x.segment));
      if (shared) peers.push(shared.addr);
    }
    s.mesh ??= { port: o.port ?? MESH_PORT, password: o.password, peers };
  }
  return t;
}
