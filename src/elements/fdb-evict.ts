/**
 * What the FDB table needs to evict the least recently seen entry of a port (fdb-table.ts,
 * evictLru): a port's candidates, oldest first, and the sort that orders a port's slots by
 * when they were last seen.
 */

/** collect()'s radix sort: digits of 11 bits, two of them at most (keys below 2^22). */
const RADIX_BITS = 11;
const RADIX_MASK = (1 << RADIX_BITS) - 1;
const RADIX_RANGE = 2 ** (2 * RADIX_BITS);

/** A port's eviction candidates, oldest first: keys as the table stores them, lastSeen at the walk. */
export class Candidates {
  hi = new Int32Array(0);
  lo = new Int32Array(0);
  seen = new Float64Array(0);
  /** Next to take; the list is hi/lo/seen[next..len). */
  next = 0;
  len = 0;

  /** Takes the keys of the first `want` of `slots` (table records `recs`, 3 words a slot). */
  fill(slots: Int32Array, want: number, recs: Int32Array, lastSeen: Float64Array): void {
    if (this.hi.length < want) {
      this.hi = new Int32Array(want);
      this.lo = new Int32Array(want);
      this.seen = new Float64Array(want);
    }
    for (let k = 0; k < want; k++) {
      const slot = slots[k];
      this.hi[k] = recs[3 * slot];
      this.lo[k] = recs[3 * slot + 1];
      this.seen[k] = lastSeen[slot];
    }
    this.next = 0;
    this.len = want;
  }
}

/**
 * Orders slots by lastSeen: an LSD radix sort (stable, two passes of 11 bits at most,
 * O(n)) on whole clock units since the oldest entry — to the millisecond while the
 * entries span less than 2^22 ms (70 minutes), in coarser units beyond (ties keep table
 * order). A comparison sort costs several times as much here: ~80 ns per entry for
 * Float64Array.prototype.sort of 8192 numbers on this machine, more for a heap in JS.
 */
export class TimeSort {
  private slots = new Int32Array(0);
  private keys = new Int32Array(0);
  private slots2 = new Int32Array(0);
  private keys2 = new Int32Array(0);
  private readonly count = new Int32Array(RADIX_MASK + 1);

  /** An array with room for `n` slots, for the caller to fill before sort(). */
  room(n: number): Int32Array {
    if (this.slots.length <= n) {
      let len = 1;
      while (len < n + 1) len *= 2;
      this.slots = new Int32Array(len);
      this.keys = new Int32Array(len);
      this.slots2 = new Int32Array(len);
      this.keys2 = new Int32Array(len);
    }
    return this.slots;
  }

  /** Sorts the first `found` slots given to room() by lastSeen; returns them sorted. */
  sort(found: number, lastSeen: Float64Array): Int32Array {
    let slots = this.slots;
    let keys = this.keys;
    let oldest = Infinity;
    let newest = -Infinity;
    for (let j = 0; j < found; j++) {
      const t = lastSeen[slots[j]];
      if (t < oldest) oldest = t;
      if (t > newest) newest = t;
    }
    const base = Math.floor(oldest);
    const unit = Math.max(1, Math.ceil((Math.floor(newest) - base + 1) / RADIX_RANGE));
    for (let j = 0; j < found; j++) keys[j] = Math.floor((Math.floor(lastSeen[slots[j]]) - base) / unit);
    const top = Math.floor((Math.floor(newest) - base) / unit);
    const count = this.count;
    let slots2 = this.slots2;
    let keys2 = this.keys2;
    for (let shift = 0; shift === 0 || top >>> shift !== 0; shift += RADIX_BITS) {
      // One stable counting pass on the digit at `shift`.
      count.fill(0);
      for (let j = 0; j < found; j++) count[(keys[j] >>> shift) & RADIX_MASK]++;
      let sum = 0;
      for (let d = 0; d <= RADIX_MASK; d++) {
        const k = count[d];
        count[d] = sum;
        sum += k;
      }
      for (let j = 0; j < found; j++) {
        const at = count[(keys[j] >>> shift) & RADIX_MASK]++;
        keys2[at] = keys[j];
        slots2[at] = slots[j];
      }
      const ks = keys;
      keys = keys2;
      keys2 = ks;
      const ss = slots;
      slots = slots2;
      slots2 = ss;
    }
    // The sorted run ends in whichever pair of arrays the last pass wrote.
    this.slots = slots;
    this.keys = keys;
    this.slots2 = slots2;
    this.keys2 = keys2;
    return slots;
  }
}
