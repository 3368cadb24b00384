/** The mesh agent of a node: made from its mesh port's config (one per node at most). */
import type { NodeGraph } from "../node/graph.js";
import { MeshAgent } from "./agent.js";
import { meshStateFile } from "./ipam.js";
import { SleevePort } from "./sleeve-port.js";

export { MeshAgent };

export function meshAgentOf(graph: NodeGraph): MeshAgent | null {
  const pc = graph.config.ports.find((p) => p.kind === "mesh");
  if (pc === undefined) return null;
  const m = pc.mesh;
  const port = graph.engine.port(pc.name);
  if (!m || !(port instanceof SleevePort)) throw new Error(`port ${pc.name}: mesh settings missing`);
  // The ring is kept beside the node's journal, so a restarted node keeps its ranges and addresses.
  const stateFile = graph.config.journal ? meshStateFile(graph.config.journal) : undefined;
  const ipam = m.ipam ? { range: m.ipam.range, seed: m.ipam.seed, stateFile } : undefined;
  return new MeshAgent({ name: m.name, port: m.port, password: m.password, peers: m.peers, addresses: m.addresses, ipam }, port);
}

/**
 * `{cmd: "mesh-ipam", op}`: op `allocate` (an address for `owner`, waiting up to
 * `timeoutMs` for space), `release` (the owner's address goes back), `rmpeer` (the
 * ranges of `peer`, gone for good, become ours).
 */
export function meshIpamRequest(node: string, mesh: MeshAgent | null, req: Record<string, unknown>): unknown {
  const ipam = mesh?.ipam;
  if (!ipam) {
    if (req.optional === true) return null;
    throw new Error(`node ${node} has no mesh address ring (no mesh overlay)`);
  }
  const name = (k: string): string => {
    const v = req[k];
    if (typeof v !== "string" || !/^[a-z0-9][a-z0-9-]{0,62}$/.test(v)) throw new Error(`mesh-ipam: '${k}' must be a name (a-z, 0-9, '-')`);
    return v;
  };
  if (req.op === "allocate") {
    const t = typeof req.timeoutMs === "number" ? Math.min(Math.max(req.timeoutMs, 0), 120_000) : 30_000;
    return ipam.allocate(name("owner"), t).then((ip) => ({ ip }));
  }
  if (req.op === "release") return { released: ipam.release(name("owner")) };
  if (req.op === "rmpeer") return { peer: req.peer, ranges: ipam.rmpeer(name("peer")) };
  throw new Error(`mesh-ipam: op is allocate, release or rmpeer, not '${String(req.op)}'`);
}
