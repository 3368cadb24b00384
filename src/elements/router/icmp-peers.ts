/**
 * IcmpPeers — Linux's per-destination ICMP rate limit (inet_peer_xrlim_allow, governed by
 * net.ipv4.icmp_ratelimit and icmp_ratemask; RFC 1812 §4.3.2.8):
 *
 *   - a type whose bit is set in the mask (default 6168: destination unreachable, source
 *     quench, time exceeded, parameter problem), except fragmentation needed (path MTU
 *     discovery must not be starved), is limited; every other type is not, neither here
 *     nor by the global bucket (icmpv4_mask_allow);
 *   - each destination has a bucket of milliseconds: it gains one per millisecond up to
 *     6 × ratelimit (XRLIM_BURST_FACTOR) and an error costs `ratelimit`. A destination
 *     seen for the first time has a full bucket: six errors at once, then one per second
 *     with the defaults;
 *   - ratelimit 0 turns the per-destination limit off.
 *
 * The table is fixed (no allocation per packet): 1024 slots, open addressing over 8
 * probes; a new destination takes the first free slot or the least recently used of
 * the 8. A destination pushed out starts again with a full bucket, as a Linux inet_peer
 * that was garbage-collected does.
 *
 * The same table keeps Linux's redirect back-off per destination (ip_rt_send_redirect):
 * the first redirect goes at once, the n-th only after 20 ms << n, at most 9, and the
 * count starts again after 20 ms << 10 of silence.
 */

/** XRLIM_BURST_FACTOR: a bucket holds six errors. */
const BURST_FACTOR = 6;
const SLOTS = 1024;
const PROBES = 8;
/** ip_rt_redirect_load (HZ/50), ip_rt_redirect_number, ip_rt_redirect_silence. */
const REDIRECT_LOAD_MS = 20;
const REDIRECT_NUMBER = 9;
const REDIRECT_SILENCE_MS = REDIRECT_LOAD_MS << (REDIRECT_NUMBER + 1);

/** ip_rt_error_cost, ip_rt_error_burst. */
const ROUTE_ERROR_COST_MS = 1000;
const ROUTE_ERROR_BURST_MS = 5000;
/** Linux backdates a new peer's last update by 60 s: its bucket starts full. */
const NEW_PEER_TOKENS_MS = 60_000;

/** Linux's default icmp_ratemask: types 3, 4, 11, 12. */
export const ICMP_RATEMASK_DEFAULT = 6168;
/** Linux's default icmp_ratelimit, in milliseconds. */
export const ICMP_RATELIMIT_DEFAULT_MS = 1000;

/** True when ICMP `type`/`code` is rate-limited under `mask` (Linux's icmpv4_mask_allow, negated). */
export function icmpTypeLimited(mask: number, type: number, code: number): boolean {
  if (type > 18) return false;
  // Destination unreachable, fragmentation needed.
  if (type === 3 && code === 4) return false;
  return ((mask >>> type) & 1) === 1;
}

export class IcmpPeers {
  private readonly keys = new Int32Array(SLOTS);
  private readonly used = new Uint8Array(SLOTS);
  private readonly tokens = new Float64Array(SLOTS);
  private readonly last = new Float64Array(SLOTS);
  private readonly redirects = new Uint8Array(SLOTS);
  private readonly redirectLast = new Float64Array(SLOTS);
  private readonly seen = new Float64Array(SLOTS);

  /** `ratelimitMs`: milliseconds an error costs (Linux's icmp_ratelimit); 0: no limit. */
  constructor(public ratelimitMs: number = ICMP_RATELIMIT_DEFAULT_MS) {
    if (!Number.isFinite(ratelimitMs) || ratelimitMs < 0) throw new Error(`icmp ratelimit must be a number of milliseconds >= 0, got ${String(ratelimitMs)}`);
  }

  /** Spends one error's worth of `dst`'s bucket at `now` (ms); false when it is empty. */
  allow(dst: number, now: number): boolean {
    const cost = this.ratelimitMs;
    if (cost === 0) return true;
    return this.take(dst, now, cost, BURST_FACTOR * cost);
  }

  /**
   * Linux's ip_error, before an unreachable for a packet without a route: 1 s per error,
   * burst 5 s (ip_rt_error_cost, ip_rt_error_burst), from the same bucket as allow() —
   * so a burst without a route gets two errors, not five.
   */
  allowRouteError(dst: number, now: number): boolean {
    return this.take(dst, now, ROUTE_ERROR_COST_MS, ROUTE_ERROR_BURST_MS);
  }

  private take(dst: number, now: number, cost: number, burst: number): boolean {
    const k = this.slot(dst, now);
    let t = this.tokens[k] + (now - this.last[k]);
    if (t > burst) t = burst;
    this.last[k] = now;
    if (t >= cost) {
      this.tokens[k] = t - cost;
      return true;
    }
    this.tokens[k] = Math.max(t, 0);
    return false;
  }

  /** Linux's redirect back-off for `dst` at `now` (ms): true when a redirect may go now. */
  allowRedirect(dst: number, now: number): boolean {
    const k = this.slot(dst, now);
    if (now - this.redirectLast[k] > REDIRECT_SILENCE_MS) this.redirects[k] = 0;
    const n = this.redirects[k];
    if (n >= REDIRECT_NUMBER) {
      this.redirectLast[k] = now;
      return false;
    }
    if (n === 0 || now - this.redirectLast[k] > REDIRECT_LOAD_MS * (1 << n)) {
      this.redirectLast[k] = now;
      this.redirects[k] = n + 1;
      return true;
    }
    return false;
  }

  /** The slot of `dst`, made (full bucket, no redirects) when it has none. */
  private slot(dst: number, now: number): number {
    const key = dst | 0;
    const h = Math.imul(key, 0x9e3779b1) >>> 22;
    let victim = h;
    for (let i = 0; i < PROBES; i++) {
      const k = (h + i) & (SLOTS - 1);
      if (this.used[k] === 0) {
        victim = k;
        break;
      }
      if (this.keys[k] === key) {
        this.seen[k] = now;
        return k;
      }
      if (this.seen[k] < this.seen[victim]) victim = k;
    }
    this.used[victim] = 1;
    this.keys[victim] = key;
    this.seen[victim] = now;
    // A new peer's bucket is full (Linux backdates rate_last by 60 s; take() caps it).
    this.tokens[victim] = NEW_PEER_TOKENS_MS;
    this.last[victim] = now;
    this.redirects[victim] = 0;
    this.redirectLast[victim] = Number.NEGATIVE_INFINITY;
    return victim;
  }
}
