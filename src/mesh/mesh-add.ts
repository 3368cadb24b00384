/**
 * A mesh peer added to a running node: the `mesh.add` change (what `tapnet mesh --node
 * N --peer ADDRESS…` sends), and the mesh MTU told to whoever watches it.
 *
 *   mesh.add   { name, peers: [ADDRESS…], addresses?: [ADDRESS…], port?: 6783,
 *                password?, underlayMtu?: 1500, ipam?: { range, seed: [NAME…] }, vlan?: 1 }
 *              adds the sleeve port `weave` (an access port of `vlan` on the switch) as a
 *              topology's `mesh` overlay makes it; the node then starts the agent. A node
 *              has one mesh peer at most. Journaled like the other changes, so a
 *              restarted node comes back as the same peer (a new UID, its ring and
 *              allocations kept beside the journal). The password is kept in the
 *              journal as the lab keeps it in a node's config: in the root-only run
 *              directory.
 *   mesh-mtu   `{cmd: "mesh-mtu"}`: the mesh MTU and path MTU now (null: no mesh);
 *              `{cmd: "mesh-mtu", watch: true}`: a stream of `{"mtu": N}` lines, the
 *              first at once (or when a mesh is added), then one at each change. A lab
 *              node's supervisor watches it and sets its pods' eth0 MTU (pod-mtu.ts).
 */
import type net from "node:net";
import type { Args } from "../node/changes.js";
import type { NodePortConfig } from "../node/config.js";
import type { NodeGraph } from "../node/graph.js";
import { parseIp } from "../wire/ipv4addr.js";
import type { MeshAgent } from "./agent.js";
import { parseRange } from "./ring.js";
import { PEER_NAME } from "./topology.js";
import { MESH_PORT, MESH_PORT_NAME } from "./wire.js";

export const MESH_ADD = "mesh.add";

function addresses(a: Args, k: string): string[] {
  const v = a[k] ?? [];
  if (!Array.isArray(v)) throw new Error(`${k}: expected a list of IPv4 addresses`);
  for (const x of v) {
    if (typeof x !== "string" || !/^\d{1,3}(\.\d{1,3}){3}$/.test(x) || x.split(".").some((o) => Number(o) > 255))
      throw new Error(`${k}: '${String(x)}' is not an IPv4 address`);
    parseIp(x);
  }
  return [...new Set(v as string[])];
}

function int(a: Args, k: string, lo: number, hi: number, dflt: number): number {
  const v = a[k] ?? dflt;
  if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi) throw new Error(`${k}: ${JSON.stringify(v)} is not an integer ${lo}-${hi}`);
  return v;
}

/** Checks a `mesh.add`; with `commit` adds the sleeve port (the node starts the agent: startMesh). */
export function meshAdd(g: NodeGraph, a: Args, commit: boolean): unknown {
  const name = a.name;
  if (typeof name !== "string" || !PEER_NAME.test(name)) throw new Error(`name: '${String(name)}' is no peer name (a-z, 0-9, '-', at most 63)`);
  const peers = addresses(a, "peers");
  const own = addresses(a, "addresses");
  const port = int(a, "port", 1, 65535, MESH_PORT);
  const underlayMtu = int(a, "underlayMtu", 576, 9000, 1500);
  const vlan = int(a, "vlan", 1, 4094, 1);
  const password = a.password;
  if (password !== undefined && (typeof password !== "string" || password === "")) throw new Error("password: expected a non-empty string");
  let ipam: { range: string; seed: string[] } | undefined;
  if (a.ipam !== undefined) {
    const i = a.ipam as { range?: unknown; seed?: unknown } | null;
    if (i === null || typeof i !== "object" || typeof i.range !== "string" || parseRange(i.range) === null)
      throw new Error(`ipam.range: '${String(i?.range)}' is no range for the ring (a CIDR with prefix 8-30)`);
    const seed = i.seed;
    if (!Array.isArray(seed) || seed.length === 0 || seed.some((s) => typeof s !== "string" || !PEER_NAME.test(s)))
      throw new Error("ipam.seed: expected a list of peer names (the peers that own the range at first, the same on every peer)");
    ipam = { range: i.range, seed: seed as string[] };
  }
  const have = g.config.ports.find((p) => p.kind === "mesh");
  if (have) throw new Error(`node ${g.config.node} is a mesh peer already (port ${have.name}, peer ${have.mesh?.name ?? "?"})`);
  if (g.engine.port(MESH_PORT_NAME)) throw new Error(`node ${g.config.node} has a port '${MESH_PORT_NAME}' already`);
  if (!commit) return null;
  const pc: NodePortConfig = {
    name: MESH_PORT_NAME,
    kind: "mesh",
    ifname: MESH_PORT_NAME,
    vlan: { mode: "access", vlan },
    trusted: true,
    mesh: { name, port, ...(password === undefined ? {} : { password }), peers, addresses: own, underlayMtu, ...(ipam ? { ipam } : {}) },
  };
  g.addPort(pc);
  return { port: MESH_PORT_NAME, peer: name };
}

/** The `mesh-mtu` watchers of a node: sockets told the mesh MTU at each change. */
export class MeshMtuWatch {
  private readonly socks = new Set<net.Socket>();
  private mtu = 0;

  /** The node's agent (now, or when one is added at runtime): its MTU changes go to the watchers. */
  attach(agent: MeshAgent): void {
    agent.onMtu = (m) => this.changed(m);
    this.changed(agent.port.mtu);
  }

  request(agent: MeshAgent | null, req: Record<string, unknown>, sock: net.Socket): unknown {
    if (req.watch !== true) return agent ? { mtu: agent.port.mtu, pathMtu: agent.port.pathMtu } : null;
    sock.write(`${JSON.stringify({ ok: true, data: null })}\n`);
    this.socks.add(sock);
    const drop = (): void => void this.socks.delete(sock);
    sock.on("close", drop);
    sock.on("error", drop);
    if (agent) sock.write(`${JSON.stringify({ mtu: agent.port.mtu })}\n`);
    return "stream";
  }

  private changed(mtu: number): void {
    if (mtu === this.mtu) return;
    this.mtu = mtu;
    const line = `${JSON.stringify({ mtu })}\n`;
    for (const s of this.socks) if (!s.destroyed) s.write(line);
  }
}
