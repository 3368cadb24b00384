/**
 * The mesh's address ring: one pod range (10.32.0.0/12 by default) split among the peers
 * without a central store (Weave's allocator design, tapnet's implementation). No sockets
 * here: ipam.ts carries the ring in gossip and asks peers for space.
 *
 * The ring. Tokens are addresses in the range; the entry at token T names the peer that
 * owns [T, next token) (the last entry owns up to the end of the range), a version, and
 * the owner's count of free addresses in it. The first token is the range's start.
 *
 * The initial owner is agreed, not elected at run time: every peer is given the same
 * seed list (the lab names the lowest node), and every peer builds the same initial
 * ring from it alone — the range split evenly among the seeds, version 1. A peer that
 * is no seed owns nothing until a peer donates to it.
 *
 * Changes. Only the owner of a range changes its entries: it allocates from them
 * (counting free addresses down, version up), and it donates part of one to a peer
 * that asks (a new token naming that peer; a token after it keeps the rest its own).
 * The one exception is reclaim(): a peer that is gone for good (`tapnet mesh rmpeer`)
 * has its entries taken over by the peer the command runs on, version raised — the
 * operator's promise that the gone peer never comes back under that name.
 *
 * Merge (a state-based CRDT, applied alike by every peer): the union of the tokens;
 * for a token both hold, the entry with the higher version wins, and at an equal
 * version the higher peer name, then the higher free count (only a reclaim racing an
 * owner could make two entries meet like that; the tie-break keeps every peer's result
 * the same). Tokens are never removed, so merge is commutative, associative and
 * idempotent, and a stale ring cannot undo a newer one.
 *
 * Why no two peers hand out one address: a peer allocates only inside ranges its own
 * ring says it owns; a range changes owner only by its owner donating it (after which
 * the donor's ring no longer says it owns it) or by a reclaim of a gone peer.
 */
import { PEER_NAME } from "./topology.js";

export interface RingEntry {
  token: number;
  peer: string;
  version: number;
  free: number;
}

/** What a peer gossips: the ring's identity (range and seeds: peers with another refuse it) and the entries. */
export interface RingMessage {
  range: string;
  seed: string[];
  entries: RingEntry[];
}

/** What a peer keeps across restarts (ipam.ts writes it to the node's state directory). */
export interface RingState {
  range: string;
  seed: string[];
  entries: RingEntry[];
  allocations: Record<string, number>;
}

export type MergeResult = "taken" | "stale" | "malformed" | "wrongRange";

const MAX_ENTRIES = 4096;

export function ipString(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/** A CIDR's network start and end (exclusive); null when it is not one. */
export function parseRange(cidr: string): { start: number; end: number; prefixLen: number } | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr);
  if (!m) return null;
  const o = m.slice(1, 5).map(Number);
  const len = Number(m[5]);
  if (o.some((x) => x > 255) || len < 8 || len > 30) return null;
  const addr = ((o[0] << 24) | (o[1] << 16) | (o[2] << 8) | o[3]) >>> 0;
  const size = 2 ** (32 - len);
  const start = addr - (addr % size);
  return { start, end: start + size, prefixLen: len };
}

function wins(a: RingEntry, b: RingEntry): boolean {
  if (a.version !== b.version) return a.version > b.version;
  if (a.peer !== b.peer) return a.peer > b.peer;
  return a.free > b.free;
}

export class Ring {
  readonly start: number;
  readonly end: number;
  readonly prefixLen: number;
  /** Sorted by token. */
  entries: RingEntry[] = [];
  /** Our allocations: owner (a host name) -> address. */
  readonly allocations = new Map<string, number>();
  private readonly taken = new Set<number>();

  /** The seeds, sorted: with the range, what makes two rings the same ring. */
  readonly seeds: string[];

  constructor(
    readonly self: string,
    readonly range: string,
    seeds: string[] = [],
  ) {
    this.seeds = [...new Set(seeds)].sort();
    const r = parseRange(range);
    if (r === null) throw new Error(`mesh ipam: '${range}' is not a range like 10.32.0.0/12 (prefix 8-30)`);
    this.start = r.start;
    this.end = r.end;
    this.prefixLen = r.prefixLen;
  }

  get ready(): boolean {
    return this.entries.length > 0;
  }

  /** The initial ring every peer builds alike: the range split evenly among the seeds. */
  seed(): void {
    if (this.ready || this.seeds.length === 0) return;
    const size = this.end - this.start;
    const n = this.seeds.length;
    this.entries = this.seeds.map((peer, k) => ({ token: this.start + Math.floor((k * size) / n), peer, version: 1, free: 0 }));
    for (const e of this.entries) e.free = this.capacity(e);
  }

  /** End (exclusive) of entry i's range. */
  private endOf(i: number): number {
    return i + 1 < this.entries.length ? this.entries[i + 1].token : this.end;
  }

  /** The range's first and last addresses (network, broadcast) are never handed out. */
  private reserved(a: number): boolean {
    return a === this.start || a === this.end - 1;
  }

  /** Addresses of entry e's range that could ever be handed out. */
  private capacity(e: RingEntry): number {
    const i = this.entries.indexOf(e);
    const s = e.token;
    const t = this.endOf(i);
    return t - s - (this.reserved(s) ? 1 : 0) - (t - 1 !== s && this.reserved(t - 1) ? 1 : 0);
  }

  /** Our free count of entry i, from our allocations. */
  private ownFree(i: number): number {
    const s = this.entries[i].token;
    const t = this.endOf(i);
    let used = 0;
    for (const a of this.taken) if (a >= s && a < t) used++;
    return this.capacity(this.entries[i]) - used;
  }

  /** Recounts our entries' free addresses; a changed count is a new version. */
  private recount(): void {
    for (let i = 0; i < this.entries.length; i++) {
      const e = this.entries[i];
      if (e.peer !== this.self) continue;
      const f = this.ownFree(i);
      if (f !== e.free) {
        e.free = f;
        e.version++;
      }
    }
  }

  message(): RingMessage {
    return { range: this.range, seed: [...this.seeds], entries: this.entries.map((e) => ({ ...e })) };
  }

  /** Checks a gossiped ring's shape; the entries sorted, or a reason it is refused. */
  check(x: unknown): RingEntry[] | "malformed" | "wrongRange" {
    if (typeof x !== "object" || x === null) return "malformed";
    const m = x as Record<string, unknown>;
    if (typeof m.range !== "string" || !Array.isArray(m.seed) || m.seed.length > 64) return "malformed";
    // Peers seeded differently would each think they own the start: never merge them.
    if (m.range !== this.range || JSON.stringify(m.seed) !== JSON.stringify(this.seeds)) return "wrongRange";
    if (!Array.isArray(m.entries) || m.entries.length === 0 || m.entries.length > MAX_ENTRIES) return "malformed";
    const out: RingEntry[] = [];
    const seen = new Set<number>();
    for (const y of m.entries as unknown[]) {
      if (typeof y !== "object" || y === null) return "malformed";
      const e = y as Record<string, unknown>;
      const { token, peer, version, free } = e;
      if (typeof token !== "number" || !Number.isInteger(token) || token < this.start || token >= this.end || seen.has(token)) return "malformed";
      if (typeof peer !== "string" || !PEER_NAME.test(peer)) return "malformed";
      if (typeof version !== "number" || !Number.isSafeInteger(version) || version < 1) return "malformed";
      if (typeof free !== "number" || !Number.isInteger(free) || free < 0 || free > this.end - this.start) return "malformed";
      seen.add(token);
      out.push({ token, peer, version, free });
    }
    // A whole ring starts at the range's start.
    if (!seen.has(this.start)) return "malformed";
    return out.sort((a, b) => a.token - b.token);
  }

  /** Merges a gossiped ring (checked here: nothing a peer sends may throw). */
  merge(x: unknown): MergeResult {
    const got = this.check(x);
    if (typeof got === "string") return got;
    const byToken = new Map(this.entries.map((e) => [e.token, e]));
    let changed = false;
    for (const e of got) {
      const have = byToken.get(e.token);
      if (have !== undefined && !wins(e, have)) continue;
      byToken.set(e.token, e);
      changed = true;
    }
    if (!changed) return "stale";
    this.entries = [...byToken.values()].sort((a, b) => a.token - b.token);
    this.recount();
    return "taken";
  }

  /** Our ranges: [start, end) with their entry index. */
  owned(): Array<{ i: number; start: number; end: number }> {
    const out: Array<{ i: number; start: number; end: number }> = [];
    for (let i = 0; i < this.entries.length; i++) if (this.entries[i].peer === this.self) out.push({ i, start: this.entries[i].token, end: this.endOf(i) });
    return out;
  }

  /** An address for `owner` from our ranges (the same one again for the same owner), or null when we have none free. */
  allocate(owner: string): number | null {
    const had = this.allocations.get(owner);
    if (had !== undefined) return had;
    for (const r of this.owned()) {
      if (this.entries[r.i].free <= 0) continue;
      for (let a = r.start; a < r.end; a++) {
        if (this.reserved(a) || this.taken.has(a)) continue;
        this.allocations.set(owner, a);
        this.taken.add(a);
        this.recount();
        return a;
      }
    }
    return null;
  }

  release(owner: string): boolean {
    const a = this.allocations.get(owner);
    if (a === undefined) return false;
    this.allocations.delete(owner);
    this.taken.delete(a);
    this.recount();
    return true;
  }

  /** Addresses free in our ranges. */
  freeHere(): number {
    return this.owned().reduce((n, r) => n + this.entries[r.i].free, 0);
  }

  /**
   * Gives `to` part of our largest run of free addresses (an aligned block at its top
   * that leaves us at least half as much; all of it when it is one address): a new token naming `to`,
   * and a token after it keeping the rest ours.
   * Returns the donated [start, end), or null when we have nothing to give.
   */
  donate(to: string): { start: number; end: number } | null {
    if (to === this.self) return null;
    let best: { start: number; end: number } | null = null;
    for (const r of this.owned()) {
      // Runs of free addresses lie between the allocated ones (a reserved address at
      // either end of the range goes with its run: it belongs to some range).
      const used = [...this.taken].filter((a) => a >= r.start && a < r.end).sort((a, b) => a - b);
      let from = r.start;
      for (const u of [...used, r.end]) {
        if (u > from && (best === null || u - from > best.end - best.start)) best = { start: from, end: u };
        from = Math.max(from, u + 1);
      }
    }
    if (best === null) return null;
    // The largest aligned block at the top of the run that leaves us at least half as much
    // as it gives (CIDR-like ranges, as Weave's are): [10.32.0.3, 10.48.0.0) gives
    // 10.40.0.0/13. A run of one address is given whole.
    let give = { start: best.start, end: best.end };
    for (let k = 2 ** Math.floor(Math.log2(best.end - best.start)); k >= 1; k /= 2) {
      const d = Math.floor((best.end - k) / k) * k;
      if (d >= best.start && best.end - best.start - k >= k / 2) {
        give = { start: d, end: d + k };
        break;
      }
    }
    let usable = 0;
    for (let a = give.start; a < give.end && usable === 0; a++) if (!this.reserved(a)) usable++;
    if (usable === 0) return null;
    const byToken = new Map(this.entries.map((e) => [e.token, e]));
    // The rest after the donated run stays ours (unless a token is there already).
    if (give.end < this.end && !byToken.has(give.end)) byToken.set(give.end, { token: give.end, peer: this.self, version: 1, free: 0 });
    const at = byToken.get(give.start);
    if (at !== undefined) {
      at.peer = to;
      at.version++;
    } else byToken.set(give.start, { token: give.start, peer: to, version: 1, free: 0 });
    this.entries = [...byToken.values()].sort((a, b) => a.token - b.token);
    const donated = this.entries.find((e) => e.token === give.start) as RingEntry;
    donated.free = this.capacity(donated);
    this.recount();
    return give;
  }

  /** Takes over every range of a peer that is gone for good; returns how many. */
  reclaim(gone: string): number {
    if (gone === this.self) return 0;
    let n = 0;
    for (const e of this.entries) {
      if (e.peer !== gone) continue;
      e.peer = this.self;
      e.version++;
      e.free = -1; // recounted below
      n++;
    }
    if (n > 0) {
      for (let i = 0; i < this.entries.length; i++) {
        const e = this.entries[i];
        if (e.free === -1) e.free = this.ownFree(i);
      }
    }
    return n;
  }

  /** Per peer: its ranges, its addresses, its free count. */
  summary(): Array<{ peer: string; ranges: Array<{ start: string; end: string; size: number; free: number }>; size: number; free: number }> {
    const by = new Map<string, { peer: string; ranges: Array<{ start: string; end: string; size: number; free: number }>; size: number; free: number }>();
    for (let i = 0; i < this.entries.length; i++) {
      const e = this.entries[i];
      const end = this.endOf(i);
      let p = by.get(e.peer);
      if (p === undefined) {
        p = { peer: e.peer, ranges: [], size: 0, free: 0 };
        by.set(e.peer, p);
      }
      p.ranges.push({ start: ipString(e.token), end: ipString(end - 1), size: end - e.token, free: e.free });
      p.size += end - e.token;
      p.free += e.free;
    }
    return [...by.values()].sort((a, b) => (a.peer < b.peer ? -1 : 1));
  }

  state(): RingState {
    return { ...this.message(), allocations: Object.fromEntries(this.allocations) };
  }

  /** What a previous life of this peer kept; false when it does not fit this ring. */
  restore(s: unknown): boolean {
    if (typeof s !== "object" || s === null) return false;
    const st = s as Record<string, unknown>;
    const entries = this.check({ range: st.range, seed: st.seed, entries: st.entries });
    if (typeof entries === "string" || typeof st.allocations !== "object" || st.allocations === null) return false;
    const allocs = Object.entries(st.allocations as Record<string, unknown>);
    if (!allocs.every(([, a]) => typeof a === "number" && Number.isInteger(a) && a >= this.start && a < this.end)) return false;
    this.entries = entries;
    this.allocations.clear();
    this.taken.clear();
    for (const [o, a] of allocs) {
      this.allocations.set(o, a as number);
      this.taken.add(a as number);
    }
    return true;
  }
}
