/** The mesh agent of a node: made from its mesh port's config (one per node at most). */
import type { NodeGraph } from "../node/graph.js";
import { MeshAgent } from "./agent.js";
import { SleevePort } from "./sleeve-port.js";

export { MeshAgent };

export function meshAgentOf(graph: NodeGraph): MeshAgent | null {
  const pc = graph.config.ports.find((p) => p.kind === "mesh");
  if (pc === undefined) return null;
  const m = pc.mesh;
  const port = graph.engine.port(pc.name);
  if (!m || !(port instanceof SleevePort)) throw new Error(`port ${pc.name}: mesh settings missing`);
  return new MeshAgent({ name: m.name, port: m.port, password: m.password, peers: m.peers, addresses: m.addresses }, port);
}
