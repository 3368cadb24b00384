/**
 * Link impairments, as Linux's netem qdisc gives them, on one direction of one port:
 *
 *   delay D [jitter J]   each frame waits D ± J ms (uniform, like netem without a
 *                        distribution table); with jitter, frames may overtake each other
 *   loss P               each frame is dropped with probability P %
 *   duplicate P          each frame is sent twice with probability P % (the copy waits
 *                        its own delay)
 *   reorder P            with a delay: P % of frames go at once, the others wait, so the
 *                        early ones overtake (netem's reorder with gap 1)
 *   rate R               bit/s: a frame leaves only when the one before it has finished
 *                        on a link of R bit/s (netem's rate: a token bucket holding one
 *                        frame); a TSO super-frame counts as the segments it stands for
 *   limit N              at most N frames wait (netem's default: 1000)
 *
 * A port's egress stage takes the frames a pass queued on the port (Port.flush) and an
 * ingress stage the frames a wake-up received (Engine.onRx); both copy each frame into a
 * ring of preallocated pool bytes and index it in a binary heap by the time it may leave.
 * The engine releases what is due from one timer for the whole node (armed for the
 * earliest frame, never one per frame), with one device write per port (egress) or one
 * pass per port (ingress). A frame that finds the ring or the limit full is a counted
 * drop (overflow), as is one `loss` took. A port without impairments has no stage:
 * its flush and receive paths are the ones they were.
 *
 * Ring storage: records are allocated in arrival order and their bytes reclaimed from
 * the oldest one once it has left; a frame released out of order (jitter, reorder) keeps
 * its bytes until the ones before it have gone, which bounds the waste by the jitter.
 */
import type { FrameList } from "./batch.js";

/** What one direction of a port does to its frames; 0 means off for every field. */
export interface ImpairSettings {
  /** ms */
  delay: number;
  /** ms, uniform ± around delay */
  jitter: number;
  /** percent */
  loss: number;
  /** percent */
  duplicate: number;
  /** percent (needs a delay) */
  reorder: number;
  /** bit/s */
  rate: number;
  /** frames that may wait */
  limit: number;
}

export const IMPAIR_FIELDS = ["delay", "jitter", "loss", "duplicate", "reorder", "rate", "limit"] as const;
export const DEFAULT_LIMIT = 1000;
/** The most frames one stage can hold (its index arrays are made this large). */
export const MAX_LIMIT = 16384;
/** Bytes of pool one stage holds frames in (a 50 ms delay at 1 Gbit/s is 6.25 MB in flight). */
export const IMPAIR_RING_BYTES = 8 * 1024 * 1024;
/** Bytes kept before each frame in the ring: room for a virtio-net header and a pushed tag (the port's HEADROOM). */
export const IMPAIR_HEADROOM = 64;

export function noImpairment(): ImpairSettings {
  return { delay: 0, jitter: 0, loss: 0, duplicate: 0, reorder: 0, rate: 0, limit: DEFAULT_LIMIT };
}

export function impairActive(s: ImpairSettings): boolean {
  return s.delay > 0 || s.jitter > 0 || s.loss > 0 || s.duplicate > 0 || s.reorder > 0 || s.rate > 0;
}

// ---------------------------------------------------------------------------
// tc's words: 20ms, 1.5s, 500us; 1%, 0.1%; 10mbit, 1gbit, 100kbit, 1mbps (bytes).

/** A time in ms from "20ms", "1s", "500us" or a number (ms). */
export function parseTime(v: unknown, what: string): number {
  if (typeof v === "number" && Number.isFinite(v) && v >= 0) return v;
  const m = typeof v === "string" ? /^(\d+(?:\.\d+)?)(us|ms|s)?$/.exec(v.trim()) : null;
  if (!m) throw new Error(`${what}: '${String(v)}' is not a time (like 20ms, 1.5s, 500us)`);
  const n = Number(m[1]);
  const ms = m[2] === "s" ? n * 1000 : m[2] === "us" ? n / 1000 : n;
  if (ms > 60_000) throw new Error(`${what}: ${String(v)} is more than 60 s`);
  return ms;
}

/** A percentage 0-100 from "1%", "0.5%" or a number. */
export function parsePercent(v: unknown, what: string): number {
  const m = typeof v === "string" ? /^(\d+(?:\.\d+)?)%?$/.exec(v.trim()) : null;
  const n = typeof v === "number" ? v : m ? Number(m[1]) : Number.NaN;
  if (!Number.isFinite(n) || n < 0 || n > 100) throw new Error(`${what}: '${String(v)}' is not a percentage 0-100 (like 1%)`);
  return n;
}

const RATE_UNITS: Record<string, number> = {
  bit: 1,
  kbit: 1e3,
  mbit: 1e6,
  gbit: 1e9,
  bps: 8,
  kbps: 8e3,
  mbps: 8e6,
  gbps: 8e9,
};

/** A rate in bit/s from "10mbit", "1gbit", "500kbit", "1mbps" (bytes/s, as tc reads it) or a number (bit/s). */
export function parseRate(v: unknown, what: string): number {
  if (typeof v === "number" && Number.isFinite(v) && v >= 0) return v;
  const m = typeof v === "string" ? /^(\d+(?:\.\d+)?)([a-z]+)?$/i.exec(v.trim()) : null;
  const unit = m ? (m[2] ?? "bit").toLowerCase() : "";
  if (!m || RATE_UNITS[unit] === undefined) throw new Error(`${what}: '${String(v)}' is not a rate (like 10mbit, 1gbit, 500kbit)`);
  const r = Number(m[1]) * RATE_UNITS[unit];
  if (r !== 0 && r < 8000) throw new Error(`${what}: ${String(v)} is below 8kbit`);
  return r;
}

/** Settings from a partial description in tc's words or numbers; fields absent keep `base`'s. */
export function impairSettings(a: Record<string, unknown>, base: ImpairSettings = noImpairment()): ImpairSettings {
  const s = { ...base };
  for (const k of Object.keys(a))
    if (!(IMPAIR_FIELDS as readonly string[]).includes(k)) throw new Error(`${k}: not an impairment (${IMPAIR_FIELDS.join(", ")})`);
  if (a.delay !== undefined) s.delay = parseTime(a.delay, "delay");
  if (a.jitter !== undefined) s.jitter = parseTime(a.jitter, "jitter");
  if (a.loss !== undefined) s.loss = parsePercent(a.loss, "loss");
  if (a.duplicate !== undefined) s.duplicate = parsePercent(a.duplicate, "duplicate");
  if (a.reorder !== undefined) s.reorder = parsePercent(a.reorder, "reorder");
  if (a.rate !== undefined) s.rate = parseRate(a.rate, "rate");
  if (a.limit !== undefined) {
    const n = a.limit;
    if (typeof n !== "number" && typeof n !== "string") throw new Error("limit: expected a number of frames");
    const l = Number(n);
    if (!Number.isInteger(l) || l < 1 || l > MAX_LIMIT) throw new Error(`limit: '${String(n)}' is not a whole number of frames 1-${MAX_LIMIT}`);
    s.limit = l;
  }
  if (s.reorder > 0 && s.delay === 0) throw new Error("reorder needs a delay (the frames not sent at once are the delayed ones)");
  return s;
}

/** One line, in tc's words: "delay 50ms jitter 5ms loss 1% rate 10mbit". */
export function impairText(s: ImpairSettings): string {
  const out: string[] = [];
  if (s.delay) out.push(`delay ${s.delay}ms`);
  if (s.jitter) out.push(`jitter ${s.jitter}ms`);
  if (s.loss) out.push(`loss ${s.loss}%`);
  if (s.duplicate) out.push(`duplicate ${s.duplicate}%`);
  if (s.reorder) out.push(`reorder ${s.reorder}%`);
  if (s.rate)
    out.push(
      `rate ${s.rate >= 1e9 && s.rate % 1e9 === 0 ? `${s.rate / 1e9}gbit` : s.rate >= 1e6 && s.rate % 1e6 === 0 ? `${s.rate / 1e6}mbit` : s.rate % 1e3 === 0 ? `${s.rate / 1e3}kbit` : `${s.rate}bit`}`,
    );
  if (out.length && s.limit !== DEFAULT_LIMIT) out.push(`limit ${s.limit}`);
  return out.join(" ");
}

// ---------------------------------------------------------------------------

/** xorshift32 (Marsaglia 2003): a fast, allocation-free source of u32s; seeded per stage. */
export class Prng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s;
  }
  /** True with probability pct/100. */
  chance(pct: number): boolean {
    return pct > 0 && this.next() < pct * 42949672.96;
  }
  /** Uniform in [0, 1). */
  unit(): number {
    return this.next() / 4294967296;
  }
}

/**
 * The bounded, time-ordered queue of frames in a byte ring: push copies a frame in with
 * the time it may leave; popDue hands out, earliest first, those whose time has come, as
 * (offset, length) pairs into the same buffer; reclaim gives their bytes back.
 */
export class DelayQueue {
  /** Per record (a ring of `limit` slots in arrival order). */
  private readonly recStart: Uint32Array;
  private readonly recEnd: Uint32Array;
  private readonly recOff: Uint32Array;
  private readonly recLen: Uint32Array;
  private readonly recTime: Float64Array;
  private readonly recGone: Uint8Array;
  /** Binary min-heap of record slots by time (ties: arrival order by sequence). */
  private readonly heap: Uint32Array;
  private readonly recSeq: Float64Array;
  private heapSize = 0;
  private seq = 0;
  /** Records in the ring (released ones not yet reclaimed included). */
  private first = 0;
  private live = 0;
  /** Byte ring: head (next write), tail (oldest byte still held). */
  private head: number;
  private tail: number;
  /** Frames waiting (not released). */
  get waiting(): number {
    return this.heapSize;
  }

  constructor(
    readonly buf: Buffer,
    readonly base: number,
    readonly bytes: number,
    readonly capacity: number,
  ) {
    this.recStart = new Uint32Array(capacity);
    this.recEnd = new Uint32Array(capacity);
    this.recOff = new Uint32Array(capacity);
    this.recLen = new Uint32Array(capacity);
    this.recTime = new Float64Array(capacity);
    this.recSeq = new Float64Array(capacity);
    this.recGone = new Uint8Array(capacity);
    this.heap = new Uint32Array(capacity);
    this.head = base;
    this.tail = base;
  }

  /** The earliest time a frame may leave (Infinity when none waits). */
  nextTime(): number {
    return this.heapSize === 0 ? Infinity : this.recTime[this.heap[0]];
  }

  /**
   * Copies src[off - pre, off + len) in, the frame IMPAIR_HEADROOM bytes into its record;
   * false when the ring or `limit` (≤ capacity) is full.
   */
  push(src: Buffer, off: number, len: number, pre: number, time: number, limit: number): boolean {
    if (this.live === this.capacity || this.heapSize >= limit) return false;
    const need = (IMPAIR_HEADROOM + len + 63) & ~63;
    const end = this.base + this.bytes;
    let at: number;
    if (this.live === 0) {
      this.head = this.tail = this.base;
      at = need <= this.bytes ? this.base : -1;
    } else if (this.head >= this.tail) {
      // [tail, head) in use: room after head, or wrap to the start (before tail).
      if (end - this.head >= need) at = this.head;
      else if (this.tail - this.base > need) at = this.base;
      else at = -1;
    } else {
      at = this.tail - this.head > need ? this.head : -1;
    }
    if (at < 0) return false;
    const frame = at + IMPAIR_HEADROOM;
    src.copy(this.buf, frame - pre, off - pre, off + len);
    const slot = (this.first + this.live) % this.capacity;
    this.live++;
    this.recStart[slot] = at;
    this.recEnd[slot] = at + need;
    this.recOff[slot] = frame;
    this.recLen[slot] = len;
    this.recTime[slot] = time;
    this.recSeq[slot] = this.seq++;
    this.recGone[slot] = 0;
    this.head = at + need;
    this.heapPush(slot);
    return true;
  }

  /** Moves up to `max` frames due at `now` (earliest first) into out (from out.count on); returns how many. */
  popDue(now: number, out: FrameList, max: number): number {
    let n = 0;
    while (this.heapSize !== 0 && n < max) {
      const slot = this.heap[0];
      if (this.recTime[slot] > now) break;
      this.heapPop();
      this.recGone[slot] = 1;
      const k = out.count++;
      out.offsets[k] = this.recOff[slot];
      out.lengths[k] = this.recLen[slot];
      n++;
    }
    return n;
  }

  /** Gives back the bytes of the oldest records that have left (call once what popDue gave is written). */
  reclaim(): void {
    while (this.live !== 0 && this.recGone[this.first] === 1) {
      this.tail = this.recEnd[this.first];
      this.first = (this.first + 1) % this.capacity;
      this.live--;
    }
    if (this.live === 0) this.head = this.tail = this.base;
    else this.tail = this.recStart[this.first];
  }

  private less(a: number, b: number): boolean {
    const ta = this.recTime[a];
    const tb = this.recTime[b];
    return ta < tb || (ta === tb && this.recSeq[a] < this.recSeq[b]);
  }

  private heapPush(slot: number): void {
    const h = this.heap;
    let i = this.heapSize++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(slot, h[p])) break;
      h[i] = h[p];
      i = p;
    }
    h[i] = slot;
  }

  private heapPop(): void {
    const h = this.heap;
    const last = h[--this.heapSize];
    let i = 0;
    const n = this.heapSize;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && this.less(h[c + 1], h[c])) c++;
      if (!this.less(h[c], last)) break;
      h[i] = h[c];
      i = c;
    }
    if (n > 0) h[i] = last;
  }
}

/** What a stage counts (shown by `show ports`). */
export interface ImpairCounters {
  queued: number;
  released: number;
  lost: number;
  duplicated: number;
  reordered: number;
  overflow: number;
}

/**
 * One direction of one port: the settings, the queue, the PRNG and the rate's clock.
 * offer() decides a frame's fate and time; the engine releases with popDue().
 */
export class ImpairStage {
  settings: ImpairSettings;
  readonly queue: DelayQueue;
  readonly prng: Prng;
  readonly c: ImpairCounters = { queued: 0, released: 0, lost: 0, duplicated: 0, reordered: 0, overflow: 0 };
  /** When the rate's link is free again (ms, pass clock). */
  private linkFree = 0;

  constructor(buf: Buffer, base: number, bytes: number, settings: ImpairSettings, seed: number) {
    this.settings = settings;
    this.queue = new DelayQueue(buf, base, bytes, MAX_LIMIT);
    this.prng = new Prng(seed);
  }

  /**
   * A frame at src[off, off + len) (with `pre` bytes before it to keep: its virtio-net
   * header), bound for `wireBytes` on the wire: lost, queued (once or twice), or an
   * overflow. Returns the frames it drops (0, 1 or 2).
   */
  offer(src: Buffer, off: number, len: number, pre: number, wireBytes: number, now: number): number {
    const s = this.settings;
    if (this.prng.chance(s.loss)) {
      this.c.lost++;
      return 1;
    }
    let drops = this.enqueue(src, off, len, pre, wireBytes, now);
    if (s.duplicate > 0 && this.prng.chance(s.duplicate)) {
      this.c.duplicated++;
      drops += this.enqueue(src, off, len, pre, wireBytes, now);
    }
    return drops;
  }

  private enqueue(src: Buffer, off: number, len: number, pre: number, wireBytes: number, now: number): number {
    const s = this.settings;
    let delay = s.delay;
    if (s.reorder > 0 && this.prng.chance(s.reorder)) {
      delay = 0;
      this.c.reordered++;
    } else if (s.jitter > 0) {
      delay += (this.prng.unit() * 2 - 1) * s.jitter;
      if (delay < 0) delay = 0;
    }
    let t = now + delay;
    if (s.rate > 0) {
      // netem: the frame starts when the link is free (or after its delay), and leaves
      // once its bits are out.
      const start = Math.max(t, this.linkFree);
      t = start + (wireBytes * 8 * 1000) / s.rate;
    }
    if (!this.queue.push(src, off, len, pre, t, s.limit)) {
      this.c.overflow++;
      return 1;
    }
    if (s.rate > 0) this.linkFree = t;
    this.c.queued++;
    return 0;
  }
}
