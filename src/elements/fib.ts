/**
 * Fib — the IPv4 forwarding table: longest-prefix match that stays fast with a
 * million routes (RFC 1812 §5.2.4.3: the longest matching prefix wins).
 *
 * What it does: maps prefix/len -> value (an int32 >= 0, the router's route id) and
 * answers lookup(addr) with the value of the longest prefix that contains addr, or -1.
 *
 * How: a three-level multibit trie with controlled prefix expansion (Srinivasan &
 * Varghese, "Faster IP lookups using controlled prefix expansion", 1999), strides
 * 16-8-8. It is DPDK's DIR-24-8 made memory-friendlier: instead of a fixed 2^24-entry
 * first table (64 MiB even for ten routes) the first level has 2^16 slots and a /16 block
 * gets a 256-slot second-level table only when it holds a route longer than /16; a /24
 * block gets a third-level table only when it holds a route longer than /24. A lookup is
 * at most three Int32Array reads, no allocation, no Map, no branch on prefix length.
 *
 * Slot encoding (one int32 per slot, the only thing lookup reads):
 *   >= 0   the value of the longest route covering the slot
 *   -1     no route
 *   <= -2  a child table at pool offset `-2 - slot` (offsets are multiples of 256)
 * Beside every slot a Uint8Array holds len+1 of the route that painted it (0 = none),
 * so that adding a shorter prefix later leaves longer ones in place, and removing a
 * route repaints exactly the slots it owned with the next covering route.
 *
 * Child tables are 256-slot chunks of one growable Int32Array pool (grown by 1.5x,
 * freed chunks kept on a free list and reused). Every chunk counts the routes longer
 * than its level's boundary inside its range (/17-/32 for a second-level chunk,
 * /25-/32 for a third-level one); when the count drops to zero the chunk is uniform
 * again, so it is folded back into its parent slot and freed. The pool therefore
 * holds exactly (number of /16 blocks with a route longer than /16) + (number of /24
 * blocks with a route longer than /24) chunks, whatever the history of adds/removes.
 *
 * The authoritative route set is one Map<number, number> per prefix length, keyed by
 * the prefix's network bits (prefix >>> (32 - len), small integers); it answers get(),
 * entries() and "which route covers this one" when a route is removed. Control-plane
 * operations (add/remove) cost the size of the range they repaint: a /24 add touches
 * one slot (plus its third-level table if there is one), a /0 touches every slot.
 *
 * Not a graph element: the Ipv4Router owns one and calls lookup() per packet.
 */
import { ipToString, maskFromPrefix } from "../wire/ipv4addr.js";

const L1_SIZE = 1 << 16;
const CHUNK_BITS = 8;
const CHUNK = 1 << CHUNK_BITS;
const EMPTY = -1;
/** Offsets are stored as -2 - offset in an int32, and offset = chunk << 8. */
const MAX_CHUNKS = (1 << 23) - 1;
const INITIAL_CHUNKS = 64;
const DEFAULT_MAX_ROUTES = 2_000_000;
/** Trie slots walk() looks at between two chances for its caller to pause. */
const WALK_STRIDE = 256;

export interface FibOptions {
  /** Most routes the table accepts (default 2,000,000); add() of one more throws. */
  maxRoutes?: number;
}

export interface FibEntry {
  prefix: number;
  prefixLen: number;
  value: number;
}

/** Memory accounting of the trie (the route maps are not included). */
export interface FibStats {
  routes: number;
  /** Child tables (256 slots each) currently linked into the trie. */
  chunksInUse: number;
  /** Child tables the pool has room for without growing. */
  chunkCapacity: number;
  /** Bytes held by the trie's typed arrays (first level, pool, depths, chunk counters). */
  trieBytes: number;
}

export class Fib {
  readonly maxRoutes: number;

  /** First level: one slot per /16. */
  private readonly l1 = new Int32Array(L1_SIZE).fill(EMPTY);
  private readonly l1Depth = new Uint8Array(L1_SIZE);
  /** Second- and third-level tables, 256 slots per chunk. */
  private pool: Int32Array;
  private poolDepth: Uint8Array;
  /** Per chunk: routes below it while in use; next free chunk while on the free list. */
  private chunkInfo: Int32Array;
  private chunkCap = 0;
  /** Chunks ever handed out (those at or above it were never used). */
  private chunkTop = 0;
  private freeHead = -1;
  private chunksInUse = 0;

  /** routes[len]: network bits (prefix >>> (32 - len)) -> value. */
  private readonly routes: Map<number, number>[] = [];
  private count = 0;

  constructor(opts: FibOptions = {}) {
    const max = opts.maxRoutes ?? DEFAULT_MAX_ROUTES;
    if (!Number.isInteger(max) || max < 0) throw new Error(`Fib: maxRoutes must be a non-negative integer, got ${max}`);
    this.maxRoutes = max;
    for (let len = 0; len <= 32; len++) this.routes.push(new Map());
    this.pool = new Int32Array(INITIAL_CHUNKS * CHUNK);
    this.poolDepth = new Uint8Array(INITIAL_CHUNKS * CHUNK);
    this.chunkInfo = new Int32Array(INITIAL_CHUNKS);
    this.chunkCap = INITIAL_CHUNKS;
  }

  get size(): number {
    return this.count;
  }

  /**
   * Hot path: value of the longest prefix containing addr, or -1. addr may be a uint32
   * or the int32 a bitwise expression produced; the shifts read the same bits.
   */
  lookup(addr: number): number {
    let e = this.l1[addr >>> 16];
    if (e < EMPTY) {
      const pool = this.pool;
      e = pool[(-2 - e) | ((addr >>> 8) & 0xff)];
      if (e < EMPTY) e = pool[(-2 - e) | (addr & 0xff)];
    }
    return e;
  }

  /** Adds or replaces prefix/len -> value. */
  add(prefix: number, prefixLen: number, value: number): void {
    const p = checkRoute(prefix, prefixLen, "add");
    if (!Number.isInteger(value) || value < 0 || value > 0x7fffffff) {
      throw new Error(`Fib.add: value must be an integer in 0..2147483647, got ${value}`);
    }
    const map = this.routes[prefixLen];
    const key = keyOf(p, prefixLen);
    // Room for the child tables comes first, so that a failure leaves the table as it
    // was; growing the pool for a route that turns out to be a replacement is harmless.
    if (prefixLen > 16) {
      const e1 = this.l1[p >>> 16];
      let need = 0;
      if (e1 >= EMPTY) need = prefixLen > 24 ? 2 : 1;
      else if (prefixLen > 24 && this.pool[(-2 - e1) | ((p >>> 8) & 0xff)] >= EMPTY) need = 1;
      if (need > 0) this.reserve(need);
    }
    // One hash operation for both "is it new?" and the store.
    const before = map.size;
    map.set(key, value);
    if (map.size !== before) {
      if (this.count >= this.maxRoutes) {
        map.delete(key);
        throw new Error(`Fib.add: table full (${this.maxRoutes} routes), cannot add ${fmtPrefix(p, prefixLen)}`);
      }
      this.count++;
      if (prefixLen > 16) {
        const i1 = p >>> 16;
        if (this.l1[i1] >= EMPTY) this.split(this.l1, this.l1Depth, i1);
        const base2 = -2 - this.l1[i1];
        this.chunkInfo[base2 >>> CHUNK_BITS]++;
        if (prefixLen > 24) {
          const s2 = base2 | ((p >>> 8) & 0xff);
          if (this.pool[s2] >= EMPTY) this.split(this.pool, this.poolDepth, s2);
          this.chunkInfo[(-2 - this.pool[s2]) >>> CHUNK_BITS]++;
        }
      }
    }
    this.paint(p, prefixLen, prefixLen + 1, value, prefixLen + 1, false);
  }

  /** Removes prefix/len; false if it was not there. Its addresses fall back to the next covering route. */
  remove(prefix: number, prefixLen: number): boolean {
    const p = checkRoute(prefix, prefixLen, "remove");
    if (!this.routes[prefixLen].delete(keyOf(p, prefixLen))) return false;
    this.count--;
    let coverValue = EMPTY;
    let coverDepth = 0;
    for (let len = prefixLen - 1; len >= 0; len--) {
      const m = this.routes[len];
      if (m.size === 0) continue;
      const v = m.get(keyOf(p, len));
      if (v !== undefined) {
        coverValue = v;
        coverDepth = len + 1;
        break;
      }
    }
    this.paint(p, prefixLen, prefixLen + 1, coverValue, coverDepth, true);
    if (prefixLen > 16) {
      const i1 = p >>> 16;
      const base2 = -2 - this.l1[i1];
      if (prefixLen > 24) {
        const s2 = base2 | ((p >>> 8) & 0xff);
        const base3 = -2 - this.pool[s2];
        if (--this.chunkInfo[base3 >>> CHUNK_BITS] === 0) {
          // Nothing longer than /24 is left in this /24: every slot holds the same route.
          this.pool[s2] = this.pool[base3];
          this.poolDepth[s2] = this.poolDepth[base3];
          this.freeChunk(base3 >>> CHUNK_BITS);
        }
      }
      if (--this.chunkInfo[base2 >>> CHUNK_BITS] === 0) {
        this.l1[i1] = this.pool[base2];
        this.l1Depth[i1] = this.poolDepth[base2];
        this.freeChunk(base2 >>> CHUNK_BITS);
      }
    }
    return true;
  }

  /** Exact match: the value stored for prefix/len, or -1. */
  get(prefix: number, prefixLen: number): number {
    const p = checkRoute(prefix, prefixLen, "get");
    const v = this.routes[prefixLen].get(keyOf(p, prefixLen));
    return v === undefined ? EMPTY : v;
  }

  /** Every route, sorted by prefix, then by length (for `show route`). */
  entries(): FibEntry[] {
    const out: FibEntry[] = [];
    for (let len = 0; len <= 32; len++) {
      for (const [key, value] of this.routes[len]) {
        out.push({ prefix: len === 0 ? 0 : (key << (32 - len)) >>> 0, prefixLen: len, value });
      }
    }
    out.sort((a, b) => a.prefix - b.prefix || a.prefixLen - b.prefixLen);
    return out;
  }

  /**
   * Every route in the order of entries() (by prefix, then by length), produced
   * step by step so a listing can pause between event-loop turns without copying
   * the table: walks the address space through the trie (first-level slots, and the
   * second- and third-level tables where they exist) and at each aligned position
   * asks the route maps for the lengths that can start there. Yields null after every
   * WALK_STRIDE slots looked at (a point to pause). Every step re-reads the trie, so
   * routes may change between steps: a route present for the whole walk is listed
   * exactly once, in order; one added or removed meanwhile may or may not be.
   */
  *walk(): Generator<FibEntry | null, void, void> {
    const routes = this.routes;
    let work = 0;
    const has = (lo: number, hi: number): boolean => {
      for (let len = lo; len <= hi; len++) if (routes[len].size !== 0) return true;
      return false;
    };
    for (let i = 0; i < L1_SIZE; i++) {
      if (++work % WALK_STRIDE === 0) yield null;
      const p1 = (i << 16) >>> 0;
      yield* this.routesAt(p1, i, 0, 16);
      if (this.l1[i] >= EMPTY || !has(17, 32)) continue;
      for (let j = 0; j < CHUNK; j++) {
        if (++work % WALK_STRIDE === 0) yield null;
        const c2 = this.l1[i];
        if (c2 >= EMPTY) break; // folded meanwhile: nothing longer than /16 left here
        const p2 = (p1 | (j << 8)) >>> 0;
        yield* this.routesAt(p2, j, 17, 24);
        if (this.pool[(-2 - c2) | j] >= EMPTY || !has(25, 32)) continue;
        for (let k = 0; k < CHUNK; k++) {
          if (++work % WALK_STRIDE === 0) yield null;
          const c2now = this.l1[i];
          if (c2now >= EMPTY || this.pool[(-2 - c2now) | j] >= EMPTY) break;
          yield* this.routesAt((p2 | k) >>> 0, k, 25, 32);
        }
      }
    }
  }

  /**
   * The routes of lengths lo..hi (one trie level) that start at `p`, whose slot at that
   * level is `slot`: a length starts there when p has no bits below it.
   */
  private *routesAt(p: number, slot: number, lo: number, hi: number): Generator<FibEntry, void, void> {
    for (let len = lo; len <= hi; len++) {
      if (len < hi && (slot & ((1 << (hi - len)) - 1)) !== 0) continue;
      const m = this.routes[len];
      if (m.size === 0) continue;
      const v = m.get(keyOf(p, len));
      if (v !== undefined) yield { prefix: p, prefixLen: len, value: v };
    }
  }

  /** Removes every route and gives the pool's memory back. */
  clear(): void {
    for (const m of this.routes) m.clear();
    this.count = 0;
    this.l1.fill(EMPTY);
    this.l1Depth.fill(0);
    this.pool = new Int32Array(INITIAL_CHUNKS * CHUNK);
    this.poolDepth = new Uint8Array(INITIAL_CHUNKS * CHUNK);
    this.chunkInfo = new Int32Array(INITIAL_CHUNKS);
    this.chunkCap = INITIAL_CHUNKS;
    this.chunkTop = 0;
    this.freeHead = -1;
    this.chunksInUse = 0;
  }

  stats(): FibStats {
    return {
      routes: this.count,
      chunksInUse: this.chunksInUse,
      chunkCapacity: this.chunkCap,
      trieBytes: this.l1.byteLength + this.l1Depth.byteLength + this.pool.byteLength + this.poolDepth.byteLength + this.chunkInfo.byteLength,
    };
  }

  /**
   * Writes (value, depth) into the slots prefix/len expands to, descending into child
   * tables. Add (exact = false): slots painted by a route of length <= len (depth <=
   * match) — never a longer one. Remove (exact = true): only the slots whose depth is
   * match, i.e. the removed route's own.
   */
  private paint(p: number, len: number, match: number, value: number, depth: number, exact: boolean): void {
    if (len <= 16) {
      const from = p >>> 16;
      const to = from + (1 << (16 - len));
      const l1 = this.l1;
      const d1 = this.l1Depth;
      for (let i = from; i < to; i++) {
        const e = l1[i];
        if (e < EMPTY) this.paintChunk(-2 - e, 0, CHUNK, match, value, depth, exact);
        else if (exact ? d1[i] === match : d1[i] <= match) {
          l1[i] = value;
          d1[i] = depth;
        }
      }
      return;
    }
    const base2 = -2 - this.l1[p >>> 16];
    if (len <= 24) {
      const from = (p >>> 8) & 0xff;
      this.paintChunk(base2, from, from + (1 << (24 - len)), match, value, depth, exact);
      return;
    }
    const base3 = -2 - this.pool[base2 | ((p >>> 8) & 0xff)];
    const from = p & 0xff;
    this.paintChunk(base3, from, from + (1 << (32 - len)), match, value, depth, exact);
  }

  private paintChunk(base: number, from: number, to: number, match: number, value: number, depth: number, exact: boolean): void {
    const pool = this.pool;
    const d = this.poolDepth;
    for (let i = base + from, end = base + to; i < end; i++) {
      const e = pool[i];
      // Only second-level chunks hold pointers, and they point at third-level ones.
      if (e < EMPTY) this.paintChunk(-2 - e, 0, CHUNK, match, value, depth, exact);
      else if (exact ? d[i] === match : d[i] <= match) {
        pool[i] = value;
        d[i] = depth;
      }
    }
  }

  /**
   * Gives slot i of a table (the first level: l1/l1Depth, or a second-level chunk in
   * pool/poolDepth) a child table that inherits its route.
   */
  private split(values: Int32Array, depths: Uint8Array, i: number): void {
    const base = this.allocChunk() << CHUNK_BITS;
    this.pool.fill(values[i], base, base + CHUNK);
    this.poolDepth.fill(depths[i], base, base + CHUNK);
    values[i] = -2 - base;
    depths[i] = 0;
  }

  /** Guarantees that `need` more chunks can be allocated without failing. */
  private reserve(need: number): void {
    if (this.chunkCap - this.chunksInUse >= need) return;
    const want = this.chunksInUse + need;
    if (want > MAX_CHUNKS) throw new Error(`Fib: child-table pool full (${MAX_CHUNKS} tables)`);
    const cap = Math.min(MAX_CHUNKS, Math.max(want, Math.ceil(this.chunkCap * 1.5)));
    let pool: Int32Array;
    let depth: Uint8Array;
    let info: Int32Array;
    try {
      pool = new Int32Array(cap * CHUNK);
      depth = new Uint8Array(cap * CHUNK);
      info = new Int32Array(cap);
    } catch (err) {
      throw new Error(`Fib: cannot grow the child-table pool to ${cap} tables: ${(err as Error).message}`);
    }
    pool.set(this.pool);
    depth.set(this.poolDepth);
    info.set(this.chunkInfo);
    this.pool = pool;
    this.poolDepth = depth;
    this.chunkInfo = info;
    this.chunkCap = cap;
  }

  private allocChunk(): number {
    let c: number;
    if (this.freeHead >= 0) {
      c = this.freeHead;
      this.freeHead = this.chunkInfo[c];
    } else {
      c = this.chunkTop++;
    }
    this.chunkInfo[c] = 0;
    this.chunksInUse++;
    return c;
  }

  private freeChunk(c: number): void {
    this.chunkInfo[c] = this.freeHead;
    this.freeHead = c;
    this.chunksInUse--;
  }
}

function keyOf(p: number, len: number): number {
  return len === 0 ? 0 : p >>> (32 - len);
}

/** Validates prefix/len and returns the prefix as a uint32. */
function checkRoute(prefix: number, prefixLen: number, op: string): number {
  if (!Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > 32) {
    throw new Error(`Fib.${op}: prefix length must be an integer in 0..32, got ${prefixLen}`);
  }
  if (!Number.isInteger(prefix) || prefix < -0x80000000 || prefix > 0xffffffff) {
    throw new Error(`Fib.${op}: prefix must be a 32-bit integer, got ${prefix}`);
  }
  const p = prefix >>> 0;
  const net = (p & maskFromPrefix(prefixLen)) >>> 0;
  if (net !== p) {
    throw new Error(`Fib.${op}: ${ipToString(p)}/${prefixLen} has host bits set (did you mean ${fmtPrefix(net, prefixLen)}?)`);
  }
  return p;
}

function fmtPrefix(p: number, len: number): string {
  return `${ipToString(p)}/${len}`;
}
