/**
 * The `mesh` overlay of a topology: every tapnet node with an underlay becomes a mesh
 * peer (port `weave` on its switch, the agent in its process), told to connect to the
 * nodes that share one of its underlay segments; the rest of the mesh it learns by
 * gossip. Pods sit on one flat subnet across the nodes (Weave's model): the mesh
 * bridges their frames, no router is involved.
 */
import { request } from "../control/client.js";
import { type HostSpec, ipToU32, isKernelNode, type Topology } from "../lab/topology-schema.js";
import { parseRange } from "./ring.js";
import { MESH_PORT } from "./wire.js";

/** Weave's default pod range. */
export const DEFAULT_IPAM_RANGE = "10.32.0.0/12";

/**
 * The address ring of a mesh topology: the range (Weave's when not given) and its first
 * owners (the lowest tapnet node name when not given: every peer builds the same ring).
 */
export function meshIpam(t: Topology): { range: string; seed: string[] } | null {
  const o = t.overlay;
  if (o?.backend !== "mesh") return null;
  const spec: { range?: string; seed?: string[] } = typeof o.ipam === "string" ? { range: o.ipam } : (o.ipam ?? {});
  const nodes = Object.keys(t.nodes)
    .filter((n) => !isKernelNode(t.nodes[n]))
    .sort();
  return { range: spec.range ?? DEFAULT_IPAM_RANGE, seed: spec.seed ?? nodes.slice(0, 1) };
}

/** Why a host without an address is wrong (null: a mesh node's ring gives it one). */
export function meshHostWithoutIp(t: Topology, h: HostSpec): string | null {
  const node = t.nodes[h.node];
  if (meshIpam(t) !== null && node !== undefined && !isKernelNode(node)) {
    return h.gateway === undefined ? null : "a gateway needs the host's address in the file (pods of the mesh are on one flat subnet)";
  }
  return "missing (required: only hosts of a mesh overlay's nodes get one from its address ring)";
}

/** The ring's range and seeds, and static host addresses the ring could hand out too. */
export function meshIpamChecks(t: Topology): Array<{ path: Array<string | number>; message: string }> {
  const m = meshIpam(t);
  if (m === null) return [];
  const at = ["overlay", "ipam"];
  const r = parseRange(m.range);
  if (r === null) return [{ path: at, message: `'${m.range}' is no range for the ring (a CIDR with prefix 8-30)` }];
  const out: Array<{ path: Array<string | number>; message: string }> = [];
  for (const s of m.seed) {
    const n = t.nodes[s];
    if (n === undefined || isKernelNode(n)) out.push({ path: [...at, "seed"], message: `seed '${s}' is no tapnet node of this lab` });
  }
  for (const [h, spec] of Object.entries(t.hosts)) {
    const ip = spec.ip ? ipToU32(spec.ip.split("/")[0]) : null;
    if (ip !== null && ip >= r.start && ip < r.end) {
      out.push({
        path: ["hosts", h, "ip"],
        message: `${spec.ip} is inside the mesh's address ring ${m.range}, which hands its addresses out: leave ip out, or use one outside it`,
      });
    }
  }
  return out;
}

export function expandMesh(t: Topology): Topology {
  const o = t.overlay;
  if (!o) return t;
  const nodes = Object.entries(t.nodes).filter(([, s]) => !isKernelNode(s) && s.underlay);
  const segsOf = (s: (typeof nodes)[number][1]): Array<{ segment: string; addr: string }> => {
    const ul = s.underlay;
    if (!ul) return [];
    return [{ segment: ul.segment, address: ul.address }, ...ul.also].map((a) => ({ segment: a.segment, addr: a.address.split("/")[0] }));
  };
  const ipam = meshIpam(t) ?? undefined;
  for (const [n, s] of nodes) {
    const mine = new Set(segsOf(s).map((x) => x.segment));
    const peers: string[] = [];
    for (const [m, other] of nodes) {
      if (m === n) continue;
      const shared = segsOf(other).find((x) => mine.has(x.segment));
      if (shared) peers.push(shared.addr);
    }
    s.mesh ??= { port: o.port ?? MESH_PORT, password: o.password, peers, ipam };
  }
  return t;
}

/** An address for host `owner` from its node's share of the ring (waits while the node asks for space). */
export async function meshAddress(socket: string, owner: string, timeoutMs = 30_000): Promise<string> {
  const r = await request<{ ip: string }>(socket, { cmd: "mesh-ipam", op: "allocate", owner, timeoutMs }, timeoutMs + 5000);
  return r.ip;
}

/** A node's mesh MTU now (null: the node is no mesh peer). */
export async function meshMtuOf(socket: string): Promise<number | null> {
  const r = await request<{ mtu: number } | null>(socket, { cmd: "mesh-mtu" });
  return r?.mtu ?? null;
}

/** The mesh MTU of each mesh node that has a pod without an MTU of its own (src/mesh/pod-mtu.ts). */
export async function podMeshMtus(t: Topology, state: { nodes: Record<string, { socket: string }> }): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const hs of Object.values(t.hosts)) {
    if (hs.mtu !== undefined || out.has(hs.node) || !t.nodes[hs.node]?.mesh || !state.nodes[hs.node]) continue;
    const m = await meshMtuOf(state.nodes[hs.node].socket);
    if (m !== null) out.set(hs.node, m);
  }
  return out;
}

/** For `lab save`: whether an address lies in the ring of a topology file's overlay (null: no mesh). */
export function meshRingOf(overlay: unknown): ((ip: string) => boolean) | null {
  const o = overlay as { backend?: unknown; ipam?: unknown } | undefined;
  if (o?.backend !== "mesh") return null;
  const i = o.ipam as string | { range?: string } | undefined;
  const r = parseRange(typeof i === "string" ? i : (i?.range ?? DEFAULT_IPAM_RANGE));
  if (r === null) return null;
  return (ip) => {
    const a = ipToU32(ip.split("/")[0]);
    return a !== null && a >= r.start && a < r.end;
  };
}
