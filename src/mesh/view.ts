/** `tapnet show mesh` as data: a peer's connections, its view of the mesh, its routes, its address ring. */
import type { MeshAgent } from "./agent.js";
import type { IpamView } from "./ipam.js";

export interface MeshView {
  name: string;
  uid: string;
  port: number;
  password: boolean;
  /** The mesh's path MTU (the smallest connection PMTU in the view) and the mesh MTU it leaves for pods' IP packets. */
  pathMtu: number;
  mtu: number;
  /** pathMtu - mtu: IP, UDP, sleeve header, frame length, Ethernet header. */
  overhead: number;
  /** pmtu: an established connection's path MTU as probed, null while the first search runs. */
  connections: Array<{ peer: string | null; address: string; direction: "outbound" | "inbound"; state: string; error?: string; pmtu?: number | null }>;
  peers: Array<{
    name: string;
    uid: string;
    version: number;
    addresses: string[];
    connections: string[];
    reachable: boolean;
    nextHop: string | null;
    via: string;
  }>;
  /** Origin -> our children in its broadcast tree. */
  broadcast: Record<string, string[]>;
  /** The address ring (absent when the peer runs no IPAM). */
  ipam?: IpamView;
  counters: Record<string, number>;
}

export function meshView(a: MeshAgent): MeshView {
  const r = a.routes;
  const me = a.config.name;
  const ownerOf = (addr: string) => [...a.topology.peers.values()].find((p) => p.addresses.includes(addr));
  // A failed target whose peer we hold a connection with by another address is no failure.
  const ownerConnected = (addr: string): boolean => {
    const owner = ownerOf(addr);
    return owner !== undefined && [...a.conns].some((c) => c.peer?.name === owner.name && c.state !== "handshake");
  };
  return {
    name: me,
    uid: a.uid,
    port: a.config.port,
    password: a.key !== null,
    pathMtu: a.port.pathMtu,
    mtu: a.port.mtu,
    overhead: a.port.pathMtu - a.port.mtu,
    connections: [...a.conns]
      .map((c): MeshView["connections"][number] => ({
        peer: c.peer?.name ?? null,
        address: c.addr,
        direction: c.outbound ? ("outbound" as const) : ("inbound" as const),
        state: c.state,
        ...(c.peer !== null && c.state === "established" ? { pmtu: a.pmtu.pmtuOf(c.peer.name) } : {}),
      }))
      .concat(
        [...a.targets.values()]
          .filter((t) => t.conn === null && t.state === "failed" && !ownerConnected(t.addr))
          .map((t) => ({
            peer: ownerOf(t.addr)?.name ?? null,
            address: t.addr,
            direction: "outbound" as const,
            state: "failed",
            error: t.lastError,
          })),
      ),
    peers: [...a.topology.peers.values()]
      .map((p) => {
        const hop = r.nextHop.get(p.name) ?? null;
        return {
          name: p.name,
          uid: p.uid,
          version: p.version,
          addresses: p.addresses,
          connections: p.conns.map((c) => c.peer),
          reachable: r.reachable.has(p.name),
          nextHop: p.name === me ? null : hop,
          via: p.name === me ? "self" : hop === null ? "unreachable" : hop === p.name ? "direct" : `relay ${hop}`,
        };
      })
      .sort((x, y) => (x.name < y.name ? -1 : 1)),
    broadcast: Object.fromEntries([...r.children].sort().map(([o, ch]) => [o, ch])),
    ...(a.ipam ? { ipam: a.ipam.view() } : {}),
    counters: { ...a.counters, ...(a.ipam?.counters ?? {}), ...a.port.tunnelCounters() },
  };
}
