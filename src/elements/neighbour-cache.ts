/**
 * NeighbourCache — the IPv4 -> MAC table of a router (the kernel's `ip neigh`), per
 * interface, with the states of RFC 4861 §7.3.2 as Linux applies them to ARP:
 *
 *   INCOMPLETE  resolution in progress: requests sent, packets queued
 *   REACHABLE   confirmed within `reachableMs` (an ARP reply to us, or a request
 *               from that host for one of our addresses)
 *   STALE       older than that: still used; its next use sends a unicast probe
 *   PERMANENT   a static entry (as flanneld writes them); never ages or changes
 *
 * An INCOMPLETE entry is retried every `retransMs` up to `maxProbes` requests, then
 * fails: its queued packets get ICMP host unreachable from the router and the entry
 * goes. STALE entries unused for `gcStaleMs` are removed. Packets waiting for
 * resolution are bounded per entry and in total; what does not fit is dropped and
 * counted by the router.
 *
 * No I/O here: the router asks what to send (`due()`), and sends it.
 */

export const NUD_INCOMPLETE = 1;
export const NUD_REACHABLE = 2;
export const NUD_STALE = 3;
export const NUD_PERMANENT = 4;
export const NUD_NAMES: Record<number, string> = {
  [NUD_INCOMPLETE]: "INCOMPLETE",
  [NUD_REACHABLE]: "REACHABLE",
  [NUD_STALE]: "STALE",
  [NUD_PERMANENT]: "PERMANENT",
};

export interface QueuedPacket {
  /** A copy of the IPv4 packet (no Ethernet header). */
  data: Buffer;
  /** Interface it came in on (for the source of an ICMP error), -1 if generated. */
  inIf: number;
  /** Its virtio-net header, when the node runs with offloads. */
  virtioHeader?: Buffer;
}

export interface Neighbour {
  addr: number;
  ifIndex: number;
  mac: number;
  state: number;
  /** When the state last changed to REACHABLE/STALE (confirmation time), ms. */
  confirmed: number;
  used: number;
  probes: number;
  nextProbe: number;
  queue: QueuedPacket[];
}

export interface NeighbourTimers {
  reachableMs: number;
  retransMs: number;
  maxProbes: number;
  gcStaleMs: number;
  queuePerEntry: number;
  queueTotal: number;
  maxEntries: number;
}

export const DEFAULT_TIMERS: NeighbourTimers = {
  reachableMs: 30_000, // Linux base_reachable_time
  retransMs: 1_000, // Linux retrans_time
  maxProbes: 3, // Linux mcast_solicit
  gcStaleMs: 60_000, // Linux gc_stale_time
  queuePerEntry: 16,
  queueTotal: 1024,
  maxEntries: 16_384,
};

export class NeighbourCache {
  readonly t: NeighbourTimers;
  private readonly tables: Array<Map<number, Neighbour>> = [];
  queued = 0;
  size = 0;

  constructor(interfaces: number, timers: Partial<NeighbourTimers> = {}) {
    this.t = { ...DEFAULT_TIMERS, ...timers };
    for (let i = 0; i < interfaces; i++) this.tables.push(new Map());
  }

  get(ifIndex: number, addr: number): Neighbour | undefined {
    return this.tables[ifIndex].get(addr);
  }

  /** Creates an INCOMPLETE entry; null when the table is full. */
  create(ifIndex: number, addr: number, now: number): Neighbour | null {
    if (this.size >= this.t.maxEntries) return null;
    const n: Neighbour = {
      addr,
      ifIndex,
      mac: 0,
      state: NUD_INCOMPLETE,
      confirmed: 0,
      used: now,
      probes: 0,
      nextProbe: now,
      queue: [],
    };
    this.tables[ifIndex].set(addr, n);
    this.size++;
    return n;
  }

  setStatic(ifIndex: number, addr: number, mac: number): void {
    const old = this.tables[ifIndex].get(addr);
    if (old) {
      this.queued -= old.queue.length;
      old.queue = [];
    } else this.size++;
    this.tables[ifIndex].set(addr, {
      addr,
      ifIndex,
      mac,
      state: NUD_PERMANENT,
      confirmed: 0,
      used: 0,
      probes: 0,
      nextProbe: Infinity,
      queue: [],
    });
  }

  /**
   * Records what an ARP packet told us: `confirmed` (a reply to us) makes the entry
   * REACHABLE, otherwise STALE (RFC 826's merge; Linux does the same on requests).
   * Creates the entry only when `create` (the packet was for us). Returns the entry
   * whose queue the caller must now send, if it had one.
   */
  learn(ifIndex: number, addr: number, mac: number, now: number, confirmed: boolean, create: boolean): Neighbour | null {
    let n = this.tables[ifIndex].get(addr);
    if (n === undefined) {
      if (!create) return null;
      const made = this.create(ifIndex, addr, now);
      if (made === null) return null;
      n = made;
    }
    if (n.state === NUD_PERMANENT) return null;
    const changed = n.mac !== mac;
    n.mac = mac;
    if (confirmed || n.state === NUD_INCOMPLETE || changed) {
      n.state = confirmed ? NUD_REACHABLE : NUD_STALE;
      n.confirmed = now;
    }
    n.probes = 0;
    n.nextProbe = Infinity;
    return n.queue.length !== 0 ? n : null;
  }

  /** Takes an entry's queued packets (to send them now that it resolved, or to fail them). */
  drain(n: Neighbour): QueuedPacket[] {
    const q = n.queue;
    n.queue = [];
    this.queued -= q.length;
    return q;
  }

  /** Queues a packet copy on an unresolved entry; false (drop) when over the limits. */
  enqueue(n: Neighbour, p: QueuedPacket): boolean {
    if (n.queue.length >= this.t.queuePerEntry || this.queued >= this.t.queueTotal) return false;
    n.queue.push(p);
    this.queued++;
    return true;
  }

  /**
   * Ages and retries. Calls `probe` for entries that need an ARP request now
   * (broadcast for INCOMPLETE, unicast `to` MAC for a STALE refresh) and `fail` for
   * entries whose resolution gave up (then removes them).
   */
  tick(now: number, probe: (n: Neighbour, unicastTo: number) => void, fail: (n: Neighbour) => void): void {
    for (const table of this.tables) {
      for (const n of table.values()) {
        if (n.state === NUD_PERMANENT) continue;
        if (n.state === NUD_INCOMPLETE) {
          if (now < n.nextProbe) continue;
          if (n.probes >= this.t.maxProbes) {
            fail(n);
            this.remove(n);
            continue;
          }
          n.probes++;
          n.nextProbe = now + this.t.retransMs;
          probe(n, 0);
          continue;
        }
        if (n.state === NUD_REACHABLE && now - n.confirmed >= this.t.reachableMs) n.state = NUD_STALE;
        if (n.state === NUD_STALE) {
          if (now - n.used >= this.t.gcStaleMs && now - n.confirmed >= this.t.gcStaleMs) {
            this.remove(n);
            continue;
          }
          // A refresh probe that got no answer: after maxProbes, forget the entry.
          if (n.nextProbe !== Infinity && now >= n.nextProbe) {
            if (n.probes >= this.t.maxProbes) {
              this.remove(n);
              continue;
            }
            n.probes++;
            n.nextProbe = now + this.t.retransMs;
            probe(n, n.mac);
          }
        }
      }
    }
  }

  /** Marks a STALE entry as used: schedules a refresh probe if none is pending. */
  touch(n: Neighbour, now: number): void {
    n.used = now;
    if (n.state === NUD_STALE && n.nextProbe === Infinity) {
      // Linux waits delay_first_probe_time (5 s) for upper-layer confirmation first;
      // a router has none, so probe after one retransmit interval.
      n.probes = 0;
      n.nextProbe = now + this.t.retransMs;
    }
  }

  remove(n: Neighbour): void {
    if (this.tables[n.ifIndex].get(n.addr) === n) {
      this.tables[n.ifIndex].delete(n.addr);
      this.size--;
      this.queued -= n.queue.length;
      n.queue = [];
    }
  }

  /** The entry for (interface, address), removed; false when there was none. */
  removeAddr(ifIndex: number, addr: number): boolean {
    const n = this.tables[ifIndex].get(addr >>> 0);
    if (n === undefined) return false;
    this.remove(n);
    return true;
  }

  /** Removes the learned entries (of one interface, or all); static ones stay. Gives how many went. */
  flush(ifIndex?: number): number {
    let gone = 0;
    this.tables.forEach((t, k) => {
      if (ifIndex !== undefined && k !== ifIndex) return;
      for (const n of [...t.values()]) {
        if (n.state === NUD_PERMANENT) continue;
        this.remove(n);
        gone++;
      }
    });
    return gone;
  }

  /**
   * Every entry, interface by interface, step by step (null every 256 entries: a
   * point for a listing to pause). Map iterators are live: an entry present for the
   * whole walk is listed once; one removed before it is reached is not; one added
   * meanwhile is listed when its interface is not done yet.
   */
  *walk(): Generator<Neighbour | null, void, void> {
    let n = 0;
    for (const t of this.tables) {
      for (const e of t.values()) {
        yield e;
        if (++n % 256 === 0) yield null;
      }
    }
  }

  entries(): Neighbour[] {
    const out: Neighbour[] = [];
    for (const t of this.tables) for (const n of t.values()) out.push(n);
    return out;
  }
}
