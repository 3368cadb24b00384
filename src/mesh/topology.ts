/**
 * The mesh's view of itself: every peer it has heard of, with the connections that peer
 * announced, merged from gossip, and what follows from it — the unicast next hop to each
 * peer and the broadcast tree of each origin. No sockets here: the agent (agent.ts)
 * feeds it what arrives and sends what merge() says is new.
 *
 * Entries. A peer announces itself as { name, uid, version, addresses, connections }:
 * its stable name (the node's), a UID drawn at random at every start, a version it
 * raises whenever its own entry changes, the underlay addresses others may connect to,
 * and the peers it holds an established connection with (TCP up and UDP heartbeats
 * answered). Versions start at the start time in milliseconds, so a restarted peer
 * (a new UID) announces a higher version than its previous life did, and every peer
 * takes the new entry over the stale one.
 *
 * Merge rules (applied the same way by every peer, so views converge):
 *   - an entry for an unknown name is taken;
 *   - for a known name, the higher version wins (same or different UID);
 *   - an entry about ourselves that is not ours (an older life, or a version at least
 *     ours) is refused, and our own version is raised above it so our entry wins
 *     everywhere it went.
 * merge() returns the entries it took, which the agent passes on to its neighbours
 * (they may already have them: they then refuse them, and the flood stops).
 *
 * Routing. A connection counts only when both ends announce it (an edge one end has
 * not confirmed may be half-open). Unicast: breadth-first search from ourselves,
 * neighbours visited in name order, so a path is a shortest one and ties break the
 * same way everywhere; the next hop to a peer is the first peer on its path.
 * Broadcast: the tree of origin O is the same breadth-first search started at O; a
 * peer forwards a broadcast from O to its children in O's tree. Every peer computes
 * the same tree from the same view, so each peer gets a broadcast once and it never
 * loops (a TTL on the wire bounds what views that still disagree could do).
 *
 * Garbage collection. A peer no path reaches (its connections gone from every
 * neighbour's announcement) is removed at the second collection that finds it
 * unreachable (the agent collects every second): one sweep of grace lets an entry
 * arrive before the announcement of the connection that reaches it. A removed entry's
 * version is remembered for TOMBSTONE_MS, so a neighbour that has not collected it yet
 * cannot gossip it back; a new life of that peer has a higher version and passes.
 */

const TOMBSTONE_MS = 60_000;

export interface ConnAnnounce {
  /** The peer at the other end. */
  peer: string;
  /** Its underlay address, as this peer reaches it. */
  addr: string;
  /** The connection's path MTU as this peer measured it (pmtu.ts), once known. */
  pmtu?: number;
}

export interface PeerEntry {
  name: string;
  uid: string;
  version: number;
  addresses: string[];
  conns: ConnAnnounce[];
}

/** A peer name: what a node name may be (the lab's rule), at most 63 characters. */
export const PEER_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

/**
 * Checks a gossiped entry's shape; returns it typed, or null (the agent counts it as
 * malformed). Nothing a peer sends may throw past here.
 */
export function checkEntry(x: unknown): PeerEntry | null {
  if (typeof x !== "object" || x === null) return null;
  const e = x as Record<string, unknown>;
  if (typeof e.name !== "string" || !PEER_NAME.test(e.name)) return null;
  if (typeof e.uid !== "string" || !/^[0-9a-f]{16}$/.test(e.uid)) return null;
  if (typeof e.version !== "number" || !Number.isSafeInteger(e.version) || e.version < 0) return null;
  if (!Array.isArray(e.addresses) || e.addresses.length > 16 || !e.addresses.every(isIpv4)) return null;
  if (!Array.isArray(e.conns) || e.conns.length > 1024) return null;
  const conns: ConnAnnounce[] = [];
  for (const c of e.conns as unknown[]) {
    if (typeof c !== "object" || c === null) return null;
    const cc = c as Record<string, unknown>;
    if (typeof cc.peer !== "string" || !PEER_NAME.test(cc.peer) || typeof cc.addr !== "string" || !isIpv4(cc.addr)) return null;
    if (cc.pmtu !== undefined && (typeof cc.pmtu !== "number" || !Number.isInteger(cc.pmtu) || cc.pmtu < 576 || cc.pmtu > 65535)) return null;
    conns.push(cc.pmtu === undefined ? { peer: cc.peer, addr: cc.addr } : { peer: cc.peer, addr: cc.addr, pmtu: cc.pmtu });
  }
  return { name: e.name, uid: e.uid, version: e.version, addresses: [...(e.addresses as string[])], conns };
}

function isIpv4(s: unknown): s is string {
  if (typeof s !== "string") return false;
  const p = s.split(".");
  return p.length === 4 && p.every((x) => /^\d{1,3}$/.test(x) && Number(x) <= 255);
}

/** The routes computed from a view: next hop per peer, broadcast children per origin. */
export interface Routes {
  /** Destination peer -> the neighbour to send through (itself when adjacent). */
  nextHop: Map<string, string>;
  /** Origin peer -> our children in its broadcast tree. */
  children: Map<string, string[]>;
  /** Peers reachable from us (ourselves included). */
  reachable: Set<string>;
}

export class MeshTopology {
  readonly peers = new Map<string, PeerEntry>();
  /** Peers found unreachable at the last collection (removed at the next one). */
  private doomed = new Set<string>();
  /** Removed peers: the version they had, and when (merge refuses that version or older). */
  private readonly tombstones = new Map<string, { version: number; at: number }>();

  constructor(
    readonly self: string,
    readonly uid: string,
    addresses: string[],
    startVersion = Date.now(),
  ) {
    this.peers.set(self, { name: self, uid, version: startVersion, addresses: [...addresses], conns: [] });
  }

  get me(): PeerEntry {
    return this.peers.get(this.self) as PeerEntry;
  }

  /** Our established connections changed: a new version of our entry (returned, to gossip). */
  setConnections(conns: ConnAnnounce[]): PeerEntry {
    const me = this.me;
    const sorted = [...conns].sort((a, b) => (a.peer < b.peer ? -1 : a.peer > b.peer ? 1 : 0));
    me.conns = sorted;
    me.version++;
    return me;
  }

  /** Merges what a neighbour sent; returns the entries taken (ours too, when it had to be raised). */
  merge(entries: PeerEntry[]): PeerEntry[] {
    const taken: PeerEntry[] = [];
    let raised = false;
    for (const e of entries) {
      if (e.name === this.self) {
        const me = this.me;
        if (e.uid !== me.uid || e.version > me.version) {
          if (e.version >= me.version) {
            me.version = e.version + 1;
            raised = true;
          }
        }
        continue;
      }
      const have = this.peers.get(e.name);
      if (have !== undefined && e.version <= have.version) continue;
      const tomb = this.tombstones.get(e.name);
      if (have === undefined && tomb !== undefined && e.version <= tomb.version) continue;
      const copy = { name: e.name, uid: e.uid, version: e.version, addresses: [...e.addresses], conns: e.conns.map((c) => ({ ...c })) };
      this.peers.set(e.name, copy);
      this.doomed.delete(e.name);
      taken.push(copy);
    }
    if (raised) taken.push(this.me);
    return taken;
  }

  /** True when both ends announce a connection between a and b. */
  private edge(a: PeerEntry, b: string): boolean {
    const pb = this.peers.get(b);
    if (pb === undefined) return false;
    return a.conns.some((c) => c.peer === b) && pb.conns.some((c) => c.peer === a.name);
  }

  /** Neighbours of a peer over confirmed edges, in name order. */
  private neighbours(name: string): string[] {
    const p = this.peers.get(name);
    if (p === undefined) return [];
    return p.conns
      .map((c) => c.peer)
      .filter((n) => this.edge(p, n))
      .sort();
  }

  /** Breadth-first search from `root`: each reached peer's parent (root's is ""). */
  private bfs(root: string): Map<string, string> {
    const parent = new Map<string, string>([[root, ""]]);
    const queue = [root];
    for (let i = 0; i < queue.length; i++) {
      for (const n of this.neighbours(queue[i])) {
        if (parent.has(n)) continue;
        parent.set(n, queue[i]);
        queue.push(n);
      }
    }
    return parent;
  }

  routes(): Routes {
    const parent = this.bfs(this.self);
    const nextHop = new Map<string, string>();
    for (const dst of parent.keys()) {
      if (dst === this.self) continue;
      let hop = dst;
      while (parent.get(hop) !== this.self) hop = parent.get(hop) as string;
      nextHop.set(dst, hop);
    }
    const children = new Map<string, string[]>();
    for (const origin of parent.keys()) {
      const tree = origin === this.self ? parent : this.bfs(origin);
      const mine: string[] = [];
      for (const [n, p] of tree) if (p === this.self) mine.push(n);
      children.set(origin, mine.sort());
    }
    return { nextHop, children, reachable: new Set(parent.keys()) };
  }

  /**
   * Removes peers unreachable at this collection and the one before; returns their
   * names. Peers unreachable now for the first time are kept until the next one.
   */
  collect(now = Date.now()): string[] {
    for (const [name, t] of this.tombstones) if (now - t.at > TOMBSTONE_MS) this.tombstones.delete(name);
    const reach = this.bfs(this.self);
    const removed: string[] = [];
    const next = new Set<string>();
    for (const name of this.peers.keys()) {
      if (reach.has(name)) continue;
      if (this.doomed.has(name)) {
        this.tombstones.set(name, { version: (this.peers.get(name) as PeerEntry).version, at: now });
        this.peers.delete(name);
        removed.push(name);
      } else next.add(name);
    }
    this.doomed = next;
    return removed;
  }

  /** Every entry (for a full gossip to a new neighbour). */
  all(): PeerEntry[] {
    return [...this.peers.values()];
  }
}
