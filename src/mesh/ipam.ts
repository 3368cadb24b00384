/**
 * IPAM by agreement: a peer's share of the pod range (ring.ts), carried over the mesh's
 * authenticated TCP connections.
 *
 *   RING     the whole ring (range and entries). Sent to a new neighbour, to every
 *            neighbour every gossip period, and at once after any change of ours
 *            (an allocation, a donation, a reclaim). A ring that changes ours goes on
 *            to the other neighbours; a ring for another range, or one that is not a
 *            ring, is dropped and counted; a ring that teaches nothing is counted stale.
 *   REQUEST  { from, to, ttl }: `from` asks `to` for space. Sent to the reachable peer
 *            with the most free addresses, through the unicast next hop (a peer that
 *            is not `to` passes it on, TTL taken one), once a second while an
 *            allocation waits. The donor answers by donating (ring.ts) and gossiping
 *            its ring: the asker sees a range named after it.
 *
 * Allocations wait (bounded) until the peer has an address to give: a ring heard or
 * seeded, then space owned or donated. What the ring and our allocations are is
 * written (one JSON line per change, to a file opened at start) so a restarted peer
 * keeps the ranges and addresses its previous life had; a peer without that file that
 * restarts must not be a seed (its seeded ring would not know what it gave away).
 */
import fs from "node:fs";
import { ipString, Ring, type RingState } from "./ring.js";
import { PEER_NAME } from "./topology.js";
import { MSG } from "./wire.js";

/** Where a node keeps its ring: beside its journal (NODE.journal -> NODE.ipam). */
export function meshStateFile(journal: string): string {
  return `${journal.replace(/\.journal$/, "")}.ipam`;
}

/**
 * Opens the ring's file for appending. A peer added to a running node (`mesh.add`) opens
 * it under the node's seccomp filter, which refuses O_APPEND and O_CREAT: the node made
 * the file at start (reserveMeshState), and the writes go at the end all the same (the
 * whole file is read first, and nothing else writes it).
 */
function openState(file: string): number {
  try {
    return fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_APPEND | fs.constants.O_CREAT, 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM" || !fs.existsSync(file)) throw e;
    return fs.openSync(file, fs.constants.O_RDWR);
  }
}

/** Makes the ring's file beside a node's journal, so a peer added after the seccomp filter can open it. */
export function reserveMeshState(journal: string): void {
  fs.closeSync(fs.openSync(meshStateFile(journal), fs.constants.O_RDWR | fs.constants.O_APPEND | fs.constants.O_CREAT, 0o600));
}

export interface IpamConfig {
  /** The pod range, e.g. 10.32.0.0/12. */
  range: string;
  /** The peers that own the range at first (split evenly among them). */
  seed: string[];
  /** Where the ring and allocations are kept across restarts (none: not kept). */
  stateFile?: string;
}

/** What the agent lends the allocator: its neighbours and routes. */
export interface IpamLinks {
  /** Names of the peers we hold a handshaken connection with. */
  neighbours(): string[];
  /** Sends a message to a neighbour; false when there is no connection to it. */
  send(peer: string, type: number, body: unknown): boolean;
  /** The neighbour through which a peer is reached, if any. */
  nextHop(peer: string): string | undefined;
  /** Peers reachable now (not ourselves). */
  reachable(): string[];
  log(line: string): void;
}

const COUNTERS = [
  "ringReceived",
  "ringTaken",
  "ringStale",
  "ringMalformed",
  "ringWrongRange",
  "requestsSent",
  "requestsReceived",
  "requestsForwarded",
  "requestsMalformed",
  "donations",
  "allocations",
  "persistFailures",
] as const;
export type IpamCounter = (typeof COUNTERS)[number];

interface Waiter {
  owner: string;
  resolve: (ip: string) => void;
  reject: (e: Error) => void;
  deadline: number;
}

export interface IpamView {
  range: string;
  ready: boolean;
  free: number;
  allocations: Record<string, string>;
  peers: ReturnType<Ring["summary"]>;
}

export class MeshIpam {
  readonly ring: Ring;
  readonly counters = Object.fromEntries(COUNTERS.map((n) => [n, 0])) as Record<IpamCounter, number>;
  private waiters: Waiter[] = [];
  private fd = -1;
  private lastRequest = 0;

  constructor(
    readonly self: string,
    readonly config: IpamConfig,
    private readonly links: IpamLinks,
  ) {
    this.ring = new Ring(self, config.range, config.seed);
    let restored = false;
    if (config.stateFile) {
      this.fd = openState(config.stateFile);
      const lines = fs.readFileSync(this.fd, "utf8").split("\n").filter(Boolean);
      for (let i = lines.length - 1; i >= 0 && !restored; i--) {
        try {
          restored = this.ring.restore(JSON.parse(lines[i]) as RingState);
        } catch {
          // a line cut short by a crash: the one before it
        }
      }
      if (restored) links.log(`mesh ipam: ring and ${this.ring.allocations.size} allocation(s) restored from ${config.stateFile}`);
    }
    if (!restored) this.ring.seed();
  }

  stop(): void {
    for (const w of this.waiters) w.reject(new Error("the mesh peer stopped"));
    this.waiters = [];
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }

  private persist(): void {
    if (this.fd < 0) return;
    try {
      fs.writeSync(this.fd, `${JSON.stringify(this.ring.state())}\n`);
    } catch (e) {
      // A full disk must not take the peer down; a restart would then re-read an older line.
      if (this.counters.persistFailures++ === 0) this.links.log(`mesh ipam: cannot keep the ring in ${this.config.stateFile}: ${(e as Error).message}`);
    }
  }

  /** Our ring to one neighbour (a new one), or to all of them but `except`. */
  sendRing(to?: string, except?: string): void {
    if (!this.ring.ready) return;
    const m = this.ring.message();
    for (const n of to === undefined ? this.links.neighbours() : [to]) if (n !== except) this.links.send(n, MSG.RING, m);
  }

  /** Ours changed: keep it, tell everyone, serve who waits. */
  private changed(): void {
    this.persist();
    this.sendRing();
    this.pump();
  }

  onRing(from: string, body: unknown): void {
    this.counters.ringReceived++;
    const r = this.ring.merge(body);
    if (r === "malformed") this.counters.ringMalformed++;
    else if (r === "wrongRange") {
      this.counters.ringWrongRange++;
      if (this.counters.ringWrongRange === 1)
        this.links.log(`mesh ipam: ${from} gossips another ring (range or seeds) than ${this.config.range} seeded by ${this.config.seed.join(",")}: refused`);
    } else if (r === "stale") this.counters.ringStale++;
    else {
      this.counters.ringTaken++;
      this.persist();
      this.sendRing(undefined, from);
      this.pump();
    }
  }

  onRequest(from: string, body: unknown): void {
    const b = typeof body === "object" && body !== null ? (body as Record<string, unknown>) : {};
    const asker = b.from;
    const to = b.to;
    const ttl = b.ttl;
    if (
      typeof asker !== "string" ||
      !PEER_NAME.test(asker) ||
      typeof to !== "string" ||
      !PEER_NAME.test(to) ||
      typeof ttl !== "number" ||
      !Number.isInteger(ttl)
    ) {
      this.counters.requestsMalformed++;
      return;
    }
    if (to !== this.self) {
      const hop = this.links.nextHop(to);
      if (ttl <= 1 || hop === undefined || hop === from) return;
      this.counters.requestsForwarded++;
      this.links.send(hop, MSG.IPAM_REQUEST, { from: asker, to, ttl: ttl - 1 });
      return;
    }
    this.counters.requestsReceived++;
    if (!this.ring.ready || !this.links.reachable().includes(asker)) return;
    // One who asks and already has free space is not given more.
    if (this.ring.summary().some((p) => p.peer === asker && p.free > 0)) return this.sendRing();
    const got = this.ring.donate(asker);
    if (got === null) return;
    this.counters.donations++;
    this.links.log(`mesh ipam: gave ${asker} ${ipString(got.start)}-${ipString(got.end - 1)} (${got.end - got.start} addresses)`);
    this.changed();
  }

  /** An address for `owner` (a host), waiting up to `timeoutMs` for space. */
  allocate(owner: string, timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      this.waiters.push({ owner, resolve, reject, deadline: Date.now() + timeoutMs });
      this.pump();
    });
  }

  release(owner: string): boolean {
    const ok = this.ring.release(owner);
    if (ok) this.changed();
    return ok;
  }

  /** Takes over a gone peer's ranges (refused while it is reachable). */
  rmpeer(name: string): number {
    if (name === this.self) throw new Error("rmpeer: a peer cannot remove itself");
    if (this.links.reachable().includes(name)) throw new Error(`rmpeer: peer ${name} is still in the mesh (reachable): stop it first`);
    const n = this.ring.reclaim(name);
    if (n === 0) throw new Error(`rmpeer: peer ${name} owns no range in the ring`);
    this.links.log(`mesh ipam: took over ${n} range(s) of ${name} (rmpeer)`);
    this.changed();
    return n;
  }

  /** Serves waiting allocations; asks for space when they cannot be served. Called on changes and every second. */
  pump(): void {
    const now = Date.now();
    let served = false;
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      const a = this.ring.ready ? this.ring.allocate(w.owner) : null;
      if (a !== null) {
        this.counters.allocations++;
        served = true;
        w.resolve(`${ipString(a)}/${this.ring.prefixLen}`);
      } else if (now >= w.deadline) {
        w.reject(
          new Error(
            this.ring.ready
              ? `mesh ipam: no free address for ${w.owner}: no peer donated space (reachable peers: ${this.links.reachable().join(", ") || "none"})`
              : `mesh ipam: no ring yet for ${w.owner} (no seed and no peer gossiped one)`,
          ),
        );
      } else still.push(w);
    }
    this.waiters = still;
    if (served) {
      this.persist();
      this.sendRing();
    }
    if (still.length > 0 && this.ring.ready && now - this.lastRequest >= 1000) this.request();
  }

  /** Asks the reachable peer with the most free addresses for space. */
  private request(): void {
    const reach = new Set(this.links.reachable());
    const donor = this.ring
      .summary()
      .filter((p) => p.peer !== this.self && reach.has(p.peer) && p.free > 0)
      .sort((a, b) => b.free - a.free || (a.peer < b.peer ? -1 : 1))[0];
    if (donor === undefined) return;
    const hop = this.links.nextHop(donor.peer);
    if (hop === undefined) return;
    this.lastRequest = Date.now();
    this.counters.requestsSent++;
    this.links.send(hop, MSG.IPAM_REQUEST, { from: this.self, to: donor.peer, ttl: 16 });
  }

  view(): IpamView {
    return {
      range: this.config.range,
      ready: this.ring.ready,
      free: this.ring.freeHere(),
      allocations: Object.fromEntries([...this.ring.allocations].map(([o, a]) => [o, ipString(a)])),
      peers: this.ring.summary(),
    };
  }
}
