/**
 * What a flannel lease asks of a tapnet node, and how the agent hands it over: the
 * `change` ops that make one peer reachable (and the ops that take them back), and the
 * `changes` requests that carry many peers' ops to the node's control socket in chunks.
 *
 * Per peer (vxlan): route SUBNET via SUBNET.0 dev flannel.1 onlink proto flannel, a static
 * neighbour SUBNET.0 -> the peer's VtepMAC, an FDB entry VtepMAC -> the peer's PublicIP on
 * the VXLAN port. Per peer (host-gw, or vxlan with DirectRouting to a peer on the node's
 * underlay subnet): route SUBNET via PublicIP proto flannel.
 */
import { request } from "../control/client.js";
import { ipToString } from "../wire/ipv4addr.js";
import { type Subnet, subnetText } from "./flannel-config.js";

export type Op = { op: string; args: Record<string, unknown> };

/** Changes for one peer, and what to record once the node has them. */
export interface Planned {
  ops: Op[];
  /** Undoing: a `del` of what is already gone is no error. */
  removing: boolean;
  what: string;
  done: (at: number) => void;
}

/** The most changes the node takes in one request (src/node/node.ts). */
const MAX_CHANGES = 20_000;

export interface PeerTarget {
  subnet: Subnet;
  publicIp: string;
  vtepMac: string | null;
  /** The peer's PublicIP is on this node's underlay subnet (a direct route reaches it). */
  direct: boolean;
}

/**
 * The ops that add a peer and the ops that take it away again, or a note saying why the
 * peer gets none (host-gw to a node off the underlay subnet: flannel refuses the same).
 */
export function peerOps(backend: string, p: PeerTarget, dev: string, vxlanPort: string): { add: Op[]; undo: Op[] } | { note: string } {
  const net = ipToString(p.subnet.addr);
  const to = subnetText(p.subnet);
  if (backend === "vxlan" && !p.direct) {
    const mac = p.vtepMac;
    return {
      add: [
        { op: "route.replace", args: { to, via: net, dev, onlink: true, proto: "flannel" } },
        { op: "neigh.replace", args: { ip: net, lladdr: mac, dev } },
        { op: "fdb.add", args: { mac, port: vxlanPort, dst: p.publicIp } },
      ],
      undo: [
        { op: "fdb.del", args: { mac, port: vxlanPort, dst: p.publicIp } },
        { op: "neigh.del", args: { ip: net, dev } },
        { op: "route.del", args: { to } },
      ],
    };
  }
  // host-gw, or vxlan with DirectRouting to a peer on this node's underlay subnet.
  if (!p.direct) {
    return { note: `host-gw: ${to}'s node ${p.publicIp} is not on this node's underlay subnet: no route to it (flannel refuses the same)` };
  }
  return {
    add: [{ op: "route.replace", args: { to, via: p.publicIp, proto: "flannel" } }],
    undo: [{ op: "route.del", args: { to } }],
  };
}

/**
 * Sends what was planned to the node in `changes` requests of at most MAX_CHANGES (each
 * through `retry`, which keeps trying while the node cannot be reached); logs the changes
 * it refuses; then each plan's done(). Returns how many changes the node applied.
 */
export async function programNode(
  socket: string,
  planned: Planned[],
  retry: <T>(what: string, f: () => Promise<T>) => Promise<T>,
  log: (m: string) => void,
): Promise<number> {
  let applied = 0;
  const ops = planned.flatMap((p) => p.ops);
  const owner = planned.flatMap((p) => p.ops.map(() => p));
  for (let i = 0; i < ops.length; i += MAX_CHANGES) {
    const chunk = ops.slice(i, i + MAX_CHANGES);
    const what = planned.length === 1 ? planned[0].what : `${planned.length} peers`;
    const r = await retry(`program the node (${what})`, () =>
      request<{ applied: number; errors: Array<string | null> }>(socket, { cmd: "changes", ops: chunk }),
    );
    applied += r.applied;
    r.errors.forEach((e, k) => {
      const p = owner[i + k];
      // Taking away what is already gone is no error.
      if (e !== null && !(p.removing && /^(route|neigh|fdb)\.del: no /.test(e))) log(`node refused ${chunk[k].op} for ${p.what}: ${e}`);
    });
  }
  const at = performance.timeOrigin + performance.now();
  for (const p of planned) p.done(at);
  return applied;
}
