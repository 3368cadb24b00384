/**
 * FdbTable — the learning switch's forwarding table: (VLAN, MAC) -> port, last seen,
 * static flag, with no object per entry.
 *
 * Why not a Map per VLAN: with a million random MACs a JS Map lookup is several
 * dependent cache misses (hash bucket, entry, then the entry object it points to).
 * Here a lookup hashes the key once and reads one 12-byte record that holds the key
 * and the port; linear probing keeps a collision's next candidate in the same cache
 * line, so a lookup of a port is one cache miss (two with the ageing check).
 *
 * Table: open addressing, linear probing, power-of-two capacity, load factor at most
 * 0.5, deletion by backward shift (Knuth 6.4, Algorithm R), so there are no
 * tombstones and a miss stops at the first empty slot however many deletions came
 * before. Layout:
 *   recs      Int32Array, 3 per slot: [hi, lo, meta] with hi = USED | vlan << 16 |
 *             mac >>> 32, lo = the MAC's low 32 bits, meta = port (bits 0-15) | static
 *             (bit 16); hi === 0 marks an empty slot (a real key always has the USED
 *             bit 31 set, and vlan needs only bits 16-27);
 *   lastSeen  Float64Array, 1 per slot: ms on the caller's clock.
 * Measured with 1 M random keys on this machine: find() alone 37 M/s; find() + port()
 * 15 M/s with the port in a separate array, which is why the port lives in the record.
 * Capacity starts at 1024 slots and doubles (rehash) when an insert would pass load
 * 0.5, up to the smallest power of two that holds maxEntries at load 0.5; insert()
 * gives -1 once maxEntries are held. 20 bytes per slot: 40-80 bytes per entry when
 * the table is between a quarter and half full. Ports are 0..65535.
 *
 * The hash is murmur3_32 of the two key words, seeded at random per table, so a peer
 * that chooses its source MACs cannot aim them at one probe run.
 *
 * Nothing on find/insert/touch/removeSlot allocates (growth aside, which happens at most
 * log2(capacity / 1024) times). Slot numbers are only valid until the next insert or
 * removal (growth rehashes; backward shift moves entries toward their home slot).
 *
 * Eviction when full (evictLru): the least recently seen dynamic entry of the port that
 * holds the most dynamic entries goes, as Open vSwitch's MAC learning does, so a port
 * that floods the table with random source MACs pays with its own entries and the
 * stations of the other ports stay. The table counts dynamic entries per port on every
 * change (insert, removeSlot, setPort, setStatic, clear): one typed-array increment.
 * The LRU order itself costs nothing until the first eviction: no per-entry links (they
 * would add 8 bytes per slot, need fixing up on every backward shift, and make each
 * refresh unlink and relink two random neighbours), no FIFO of keys written on every
 * learn. Instead, evictLru() keeps per port a list of candidates: the K least recently
 * seen entries of that port, as key and lastSeen, found by one walk over the table and
 * a radix sort on lastSeen (collect()). Candidates are taken oldest first; one whose
 * entry is gone, moved to another port, turned static or seen since the walk (lastSeen
 * changed) is skipped. The first one still unchanged is the port's least recently seen
 * entry: every entry of the port that was not a candidate had lastSeen >= the newest
 * candidate at the walk, and anything learned, moved or refreshed since was stamped
 * later. That needs lastSeen values given to insert and touch that do not go back (the
 * switch's clock is monotonic); setPort and setStatic, which keep an entry's lastSeen,
 * drop a list they would make wrong. Order is to the millisecond (see collect()).
 * Cost: a walk is O(capacity + the port's entries) and serves K = max(64, capacity / 4)
 * evictions (all of the port's entries when it holds at most a quarter of the slots),
 * a few slot reads per eviction amortized; a skipped candidate is paid for by the frame
 * that refreshed or moved it. The walk is one pause, as an ageing sweep is (measured
 * here: about 0.2-0.3 ms at the default 8192 entries, 80-100 ms with a million). Keys,
 * not slots, are kept, so backward shift and growth need no fix-ups. Memory, only once
 * evictions start: 16 bytes per candidate of each port evicted from, and 16 bytes per
 * entry of the largest port walked for the sort. Ties (equal counts, equal lastSeen) go
 * to the lowest port number / either entry.
 */

import { grown } from "../core/grow.js";
import { Candidates, TimeSort } from "./fdb-evict.js";

/** Marks a used slot in the key's high word (a VLAN id needs only bits 16-27). */
const USED = 0x80000000 | 0;
const PORT_MASK = 0xffff;
const F_STATIC = 0x10000;
const MIN_CAPACITY = 1024;
/** 2^27 slots: 3 GiB of arrays; far beyond any configured maxEntries (topology caps it at 10 M). */
const MAX_CAPACITY = 2 ** 27;
const TWO32 = 4294967296;
/** Slots walk() looks at between two chances for its caller to pause (at least). */
const WALK_STRIDE = 256;
/** Fewest candidates one walk of evictLru() collects for a port. */
const MIN_CANDIDATES = 64;

export interface FdbTableEntry {
  vlan: number;
  /** 48-bit MAC as a number. */
  mac: number;
  port: number;
  lastSeen: number;
  isStatic: boolean;
}

export interface FdbTableOptions {
  /** Hash seed (default: random). Fixed only by tests that want a repeatable layout. */
  seed?: number;
  /** First capacity in slots (power of two, default 1024; clamped to the maximum). */
  initialCapacity?: number;
}

export class FdbTable {
  /** Most entries the table holds (insert gives -1 beyond). */
  readonly maxEntries: number;
  /** Largest capacity it grows to: a power of two >= 2 * maxEntries. */
  readonly maxCapacity: number;
  size = 0;
  /** Entries that are not static. */
  dynamicSize = 0;
  private cap: number;
  private mask: number;
  private recs: Int32Array;
  private lastSeenArr: Float64Array;
  private readonly seed: number;
  /** Dynamic entries per port (grows to the highest port seen). */
  private perPort = new Int32Array(16);
  /** Ports 0..portLimit-1 have held a dynamic entry (the range evictLru looks at). */
  private portLimit = 0;
  /** Eviction candidates per port, made at a port's first eviction. */
  private readonly candidates: Array<Candidates | undefined> = [];
  /** collect()'s sort of a port's slots by lastSeen. */
  private readonly sorter = new TimeSort();

  constructor(maxEntries: number, opts: FdbTableOptions = {}) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1 || maxEntries > MAX_CAPACITY / 2) {
      throw new RangeError(`FdbTable maxEntries must be an integer 1..${MAX_CAPACITY / 2}, got ${String(maxEntries)}`);
    }
    this.maxEntries = maxEntries;
    this.maxCapacity = Math.max(MIN_CAPACITY, nextPow2(2 * maxEntries));
    this.seed = (opts.seed ?? Math.floor(Math.random() * TWO32)) | 0;
    const first = Math.min(this.maxCapacity, nextPow2(Math.max(opts.initialCapacity ?? MIN_CAPACITY, 2)));
    this.cap = first;
    this.mask = first - 1;
    this.recs = new Int32Array(3 * first);
    this.lastSeenArr = new Float64Array(first);
  }

  /** Slots in the table now (a power of two). */
  get capacity(): number {
    return this.cap;
  }

  /** Bytes of typed arrays behind the table now. */
  get bytes(): number {
    return 20 * this.cap;
  }

  /** Slot of (vlan, MAC) or -1; the MAC as its top 16 and low 32 bits, as a frame holds them. */
  find(vlan: number, macHi16: number, macLo32: number): number {
    return this.findKey(USED | (vlan << 16) | macHi16, macLo32 | 0);
  }

  /** find() with the MAC as one 48-bit number. */
  findMac(vlan: number, mac48: number): number {
    return this.find(vlan, Math.floor(mac48 / TWO32), mac48 % TWO32);
  }

  port(slot: number): number {
    return this.recs[3 * slot + 2] & PORT_MASK;
  }

  lastSeen(slot: number): number {
    return this.lastSeenArr[slot];
  }

  isStatic(slot: number): boolean {
    return (this.recs[3 * slot + 2] & F_STATIC) !== 0;
  }

  /** Whether a slot holds an entry (for walks over 0..capacity-1). */
  isUsed(slot: number): boolean {
    return this.recs[3 * slot] !== 0;
  }

  vlan(slot: number): number {
    return (this.recs[3 * slot] >>> 16) & 0xfff;
  }

  /** The entry's MAC as a 48-bit number. */
  mac(slot: number): number {
    return (this.recs[3 * slot] & 0xffff) * TWO32 + (this.recs[3 * slot + 1] >>> 0);
  }

  setPort(slot: number, port: number): void {
    const m = 3 * slot + 2;
    const meta = this.recs[m];
    if ((meta & F_STATIC) === 0) {
      this.perPort[meta & PORT_MASK]--;
      this.countPort(port & PORT_MASK);
      this.joined(port & PORT_MASK, this.lastSeenArr[slot]);
    }
    this.recs[m] = (meta & ~PORT_MASK) | (port & PORT_MASK);
  }

  touch(slot: number, now: number): void {
    this.lastSeenArr[slot] = now;
  }

  setStatic(slot: number, isStatic: boolean): void {
    const m = 3 * slot + 2;
    const meta = this.recs[m];
    const port = meta & PORT_MASK;
    if ((meta & F_STATIC) === 0 && isStatic) {
      this.perPort[port]--;
      this.dynamicSize--;
    } else if ((meta & F_STATIC) !== 0 && !isStatic) {
      this.countPort(port);
      this.dynamicSize++;
      this.joined(port, this.lastSeenArr[slot]);
    }
    this.recs[m] = port | (isStatic ? F_STATIC : 0);
  }

  /** Dynamic entries on a port. */
  portEntries(port: number): number {
    return port < this.perPort.length ? this.perPort[port] : 0;
  }

  /**
   * Adds (vlan, MAC) or, when it is already there, overwrites its values. Gives the
   * slot, or -1 when the table holds maxEntries and the key is new. May grow the table
   * (every earlier slot number is then stale).
   */
  insert(vlan: number, macHi16: number, macLo32: number, port: number, now: number, isStatic: boolean): number {
    const slot = this.find(vlan, macHi16, macLo32);
    if (slot < 0) return this.insertNew(vlan, macHi16, macLo32, port, now, isStatic);
    const old = this.recs[3 * slot + 2];
    if ((old & F_STATIC) === 0) {
      this.perPort[old & PORT_MASK]--;
      this.dynamicSize--;
    }
    this.fill(slot, port, now, isStatic);
    return slot;
  }

  /**
   * insert() of a key that is not in the table — find() just said so, with no insert
   * since (removals keep it absent) — without looking for it again: the switch learns
   * a new station this way. Gives the slot, or -1 when the table holds maxEntries.
   */
  insertNew(vlan: number, macHi16: number, macLo32: number, port: number, now: number, isStatic: boolean): number {
    if (this.size >= this.maxEntries) return -1;
    if (2 * (this.size + 1) > this.cap && this.cap < this.maxCapacity) this.resize(this.cap * 2);
    const slot = this.place(USED | (vlan << 16) | macHi16, macLo32 | 0);
    this.size++;
    this.fill(slot, port, now, isStatic);
    return slot;
  }

  /**
   * Removes the least recently seen dynamic entry of the port with the most dynamic
   * entries (see the head of this file: LRU per port to the millisecond, amortized
   * O(1)). Gives the port it was taken from, or -1 when the table holds no dynamic
   * entry. Static entries are never removed. Slot numbers are stale afterwards, as
   * after removeSlot(). Finding the port looks at every port number up to the highest
   * one used (a switch has tens of ports).
   */
  evictLru(): number {
    if (this.dynamicSize === 0) return -1;
    const perPort = this.perPort;
    let port = 0;
    for (let p = 1; p < this.portLimit; p++) if (perPort[p] > perPort[port]) port = p;
    let c = this.candidates[port];
    if (c === undefined) {
      c = new Candidates();
      this.candidates[port] = c;
    }
    const recs = this.recs;
    for (;;) {
      // A fresh walk finds at least one entry (the port holds some), and the first
      // candidate of a fresh walk is unchanged: the loop ends.
      if (c.next === c.len) {
        this.collect(port, c);
        // Only if the per-port counts were wrong; never loop on an empty list.
        if (c.len === 0) return -1;
      }
      const k = c.next++;
      const slot = this.findKey(c.hi[k], c.lo[k]);
      // meta === port: the entry is dynamic and still on this port.
      if (slot >= 0 && recs[3 * slot + 2] === port && this.lastSeenArr[slot] === c.seen[k]) {
        this.removeSlot(slot);
        return port;
      }
    }
  }

  /**
   * Removes the entry at `slot`, then shifts later entries of its probe run back into
   * the hole when their home slot allows it (no tombstones). After this the same slot
   * may hold another entry that has not been looked at yet: a walk that removes should
   * look at the slot again before moving on.
   */
  removeSlot(slot: number): void {
    const recs = this.recs;
    if (recs[3 * slot] === 0) return;
    const meta = recs[3 * slot + 2];
    if ((meta & F_STATIC) === 0) {
      this.perPort[meta & PORT_MASK]--;
      this.dynamicSize--;
    }
    const mask = this.mask;
    const lastSeen = this.lastSeenArr;
    let hole = slot;
    let j = slot;
    for (;;) {
      j = (j + 1) & mask;
      const hi = recs[3 * j];
      if (hi === 0) break;
      const lo = recs[3 * j + 1];
      const home = this.hash(hi, lo) & mask;
      // The entry at j may fill the hole unless its home lies cyclically in (hole, j].
      if (hole <= j ? hole < home && home <= j : hole < home || home <= j) continue;
      recs[3 * hole] = hi;
      recs[3 * hole + 1] = lo;
      recs[3 * hole + 2] = recs[3 * j + 2];
      lastSeen[hole] = lastSeen[j];
      hole = j;
    }
    recs[3 * hole] = 0;
    recs[3 * hole + 1] = 0;
    recs[3 * hole + 2] = 0;
    this.size--;
  }

  /** Removes every entry, or only the non-static ones; gives how many went. */
  clear(dynamicOnly = false): number {
    if (!dynamicOnly) {
      const n = this.size;
      this.recs.fill(0);
      this.size = 0;
      this.dynamicSize = 0;
      this.perPort.fill(0);
      return n;
    }
    let removed = 0;
    for (let i = 0; i < this.cap; ) {
      if (this.recs[3 * i] !== 0 && (this.recs[3 * i + 2] & F_STATIC) === 0) {
        this.removeSlot(i);
        removed++;
      } else {
        i++;
      }
    }
    return removed;
  }

  /** Every entry, sorted by VLAN then MAC (for `show fdb`; allocates). */
  entries(): FdbTableEntry[] {
    const out: FdbTableEntry[] = [];
    for (let i = 0; i < this.cap; i++) {
      if (this.recs[3 * i] === 0) continue;
      out.push(this.entry(i));
    }
    out.sort((a, b) => a.vlan - b.vlan || a.mac - b.mac);
    return out;
  }

  /** The entry at a used slot, as an object (for listings; allocates). */
  private entry(slot: number): FdbTableEntry {
    return { vlan: this.vlan(slot), mac: this.mac(slot), port: this.port(slot), lastSeen: this.lastSeen(slot), isStatic: this.isStatic(slot) };
  }

  /**
   * Every entry (a copy), produced step by step so a listing can pause between
   * event-loop turns without copying the table; yields null after about every
   * WALK_STRIDE slots (a point to pause). Returns `resized: true` when it stopped
   * because the table grew meanwhile (a rehash moves every entry: the rest of the
   * walk would miss and repeat entries at random).
   *
   * Otherwise an entry present for the whole walk is listed exactly once: the walk
   * goes once round the table starting after an empty slot, and reads a whole probe
   * run before it can pause, so it only ever pauses with an empty slot at its
   * cursor. An entry sits inside its probe run, after its home slot, and the only
   * move an entry makes is backward shift, back toward its home within the run; so
   * an entry ahead of the cursor (its home after the empty slot) never moves behind
   * it, and one behind never moves ahead. Entries added or removed during the walk
   * may or may not be listed. Table order, not sorted.
   */
  *walk(): Generator<FdbTableEntry | null, { resized: boolean }, void> {
    const cap = this.cap;
    const mask = cap - 1;
    let s0 = 0;
    while (s0 < cap && this.recs[3 * s0] !== 0) s0++;
    if (s0 === cap) s0 = 0; // no empty slot (never at load <= 0.5)
    const run: FdbTableEntry[] = [];
    let seen = 0;
    let n = 1;
    while (n <= cap) {
      if (this.cap !== cap) return { resized: true };
      let i = (s0 + n) & mask;
      if (this.recs[3 * i] === 0) {
        n++;
        if (++seen % WALK_STRIDE === 0) yield null;
        continue;
      }
      run.length = 0;
      while (n <= cap && this.recs[3 * i] !== 0) {
        run.push(this.entry(i));
        n++;
        seen++;
        i = (s0 + n) & mask;
      }
      for (const e of run) yield e;
    }
    return { resized: false };
  }

  /** Writes an entry's values into its (keyed) slot and counts it when dynamic. */
  private fill(slot: number, port: number, now: number, isStatic: boolean): void {
    this.recs[3 * slot + 2] = (port & PORT_MASK) | (isStatic ? F_STATIC : 0);
    this.lastSeenArr[slot] = now;
    if (!isStatic) {
      this.countPort(port & PORT_MASK);
      this.dynamicSize++;
    }
  }

  /** Counts one more dynamic entry on `port` (not in dynamicSize: the callers do that). */
  private countPort(port: number): void {
    if (port >= this.perPort.length) {
      this.perPort = grown(this.perPort, nextPow2(port + 1));
    }
    this.perPort[port]++;
    if (port >= this.portLimit) this.portLimit = port + 1;
  }

  /**
   * An entry joins `port`'s dynamic entries keeping its lastSeen (setPort without a
   * touch, setStatic(false)): if that is older than a candidate still to be taken, the
   * candidate list no longer holds the port's oldest entries; it is dropped (refilled at
   * the next eviction). The switch touches an entry before it moves it, so this never
   * fires there.
   */
  private joined(port: number, lastSeen: number): void {
    const c = this.candidates[port];
    if (c !== undefined && c.next < c.len && lastSeen < c.seen[c.len - 1]) c.next = c.len;
  }

  /** find() on a key as stored (hi with the USED bit, lo): its slot or -1. */
  private findKey(hi: number, lo: number): number {
    const recs = this.recs;
    const mask = this.mask;
    let i = this.hash(hi, lo) & mask;
    for (;;) {
      const k = recs[3 * i];
      if (k === hi) {
        if (recs[3 * i + 1] === lo) return i;
      } else if (k === 0) {
        return -1;
      }
      i = (i + 1) & mask;
    }
  }

  /**
   * Refills `c` with the least recently seen dynamic entries of `port`, oldest first:
   * one walk over the table notes the port's slots, TimeSort (fdb-evict.ts) orders them
   * by lastSeen, and the first K are decoded into keys, before anything moves.
   */
  private collect(port: number, c: Candidates): void {
    const n = this.perPort[port];
    const slots = this.sorter.room(n);
    const recs = this.recs;
    // Without a branch per slot (half of them would be mispredicted): every slot is
    // written at `found`, which moves on only for a used slot of this port (USED is the
    // sign bit of the key word; meta ^ port is 0 only for a dynamic entry of the port).
    const cap = this.cap;
    let found = 0;
    for (let i = 0; i < cap && found < n; i++) {
      const d = recs[3 * i + 2] ^ port;
      slots[found] = i;
      found += (recs[3 * i] >>> 31) & (((d | -d) >>> 31) ^ 1);
    }
    const sorted = this.sorter.sort(found, this.lastSeenArr);
    c.fill(sorted, Math.min(found, Math.max(MIN_CANDIDATES, this.cap >>> 2)), recs, this.lastSeenArr);
  }

  /** Where a new key goes: the first empty slot of its probe run (the key must be absent). */
  private place(hi: number, lo: number): number {
    const recs = this.recs;
    const mask = this.mask;
    let i = this.hash(hi, lo) & mask;
    while (recs[3 * i] !== 0) i = (i + 1) & mask;
    recs[3 * i] = hi;
    recs[3 * i + 1] = lo;
    return i;
  }

  private resize(newCap: number): void {
    const oldRecs = this.recs;
    const oldLastSeen = this.lastSeenArr;
    const oldCap = this.cap;
    this.cap = newCap;
    this.mask = newCap - 1;
    this.recs = new Int32Array(3 * newCap);
    this.lastSeenArr = new Float64Array(newCap);
    for (let i = 0; i < oldCap; i++) {
      const hi = oldRecs[3 * i];
      if (hi === 0) continue;
      const s = this.place(hi, oldRecs[3 * i + 1]);
      this.recs[3 * s + 2] = oldRecs[3 * i + 2];
      this.lastSeenArr[s] = oldLastSeen[i];
    }
  }

  /** murmur3_32 over the two key words (lo, then hi), seeded. */
  private hash(hi: number, lo: number): number {
    let k = Math.imul(lo, 0xcc9e2d51);
    k = Math.imul((k << 15) | (k >>> 17), 0x1b873593);
    let h = this.seed ^ k;
    h = (Math.imul((h << 13) | (h >>> 19), 5) + 0xe6546b64) | 0;
    k = Math.imul(hi, 0xcc9e2d51);
    k = Math.imul((k << 15) | (k >>> 17), 0x1b873593);
    h ^= k;
    h = (Math.imul((h << 13) | (h >>> 19), 5) + 0xe6546b64) | 0;
    h ^= 8;
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    return h ^ (h >>> 16);
  }
}

function nextPow2(n: number): number {
  let c = 1;
  while (c < n) c *= 2;
  return c;
}
