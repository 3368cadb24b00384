/**
 * The mesh of a node: its agent, made from its mesh port's config (one per node at most)
 * or added to a running node by `mesh.add`, and the control requests about it (`mesh`,
 * `mesh-ipam`, `mesh-mtu`).
 */
import type net from "node:net";
import type { Handler } from "../control/server.js";
import { type Args, applyChange } from "../node/changes.js";
import type { NodeGraph } from "../node/graph.js";
import { MeshAgent } from "./agent.js";
import { meshStateFile, reserveMeshState } from "./ipam.js";
import { MESH_ADD, MeshMtuWatch } from "./mesh-add.js";
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

/** A node's mesh peer, if it is one. */
export class NodeMesh {
  /** The mesh peer's control plane, when the node has a mesh port (from its config, or a `mesh.add`). */
  agent: MeshAgent | null;
  /** Who watches the mesh MTU (a lab node's supervisor, for its pods). */
  private readonly mtu = new MeshMtuWatch();

  constructor(private readonly graph: NodeGraph) {
    this.agent = meshAgentOf(graph);
  }

  /** The control requests about the mesh. */
  handlers(): Record<string, Handler> {
    const node = this.graph.config.node;
    return {
      mesh: () => {
        if (!this.agent) throw new Error(`node ${node} is no mesh peer (no mesh overlay)`);
        return this.agent.show();
      },
      // The mesh's address ring (src/mesh/ipam.ts): an address for a host, its release, rmpeer.
      "mesh-ipam": (req) => meshIpamRequest(node, this.agent, req),
      "mesh-mtu": (req, sock: net.Socket) => this.mtu.request(this.agent, req, sock),
    };
  }

  /** At the node's start, after its journal's replay and before the seccomp filter. */
  async start(): Promise<void> {
    // A mesh peer the journal adds (`mesh.add`) starts as one from the config does.
    this.agent ??= meshAgentOf(this.graph);
    if (this.agent) this.mtu.attach(this.agent);
    // The ring's file of a peer a later `mesh.add` makes: created now, before the seccomp filter.
    else if (this.graph.config.journal) {
      try {
        reserveMeshState(this.graph.config.journal);
      } catch (e) {
        console.error(`mesh: cannot make the ring's file beside the journal (a later mesh.add with a ring will fail): ${(e as Error).message}`);
      }
    }
    await this.agent?.start();
  }

  stop(): void {
    this.agent?.stop();
  }

  /** `mesh.add`: the sleeve port, then the agent (listening, connecting); undone whole if the agent cannot start. */
  async add(args: Args): Promise<unknown> {
    const result = applyChange(this.graph, MESH_ADD, args);
    let agent: MeshAgent | null = null;
    try {
      agent = meshAgentOf(this.graph);
      if (agent === null) throw new Error("no mesh port was added");
      await agent.start();
    } catch (e) {
      agent?.stop();
      this.graph.removePort(String((result as { port: string }).port));
      throw new Error(`${MESH_ADD}: ${e instanceof Error ? e.message : String(e)}`);
    }
    this.agent = agent;
    this.mtu.attach(agent);
    return result;
  }
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
