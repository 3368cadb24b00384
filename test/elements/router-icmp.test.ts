/** The router's ICMP rate limit (src/elements/router/icmp.ts). */
import { describe, expect, it } from "vitest";
import { ICMP_RATE_BURST, ICMP_RATE_PER_SECOND, TokenBucket } from "../../src/elements/router/icmp.js";

describe("TokenBucket (RFC 1812 section 4.3.2.8)", () => {
  it("lets a burst through, then the steady rate", () => {
    const tb = new TokenBucket(1000, 50);
    let n = 0;
    for (let i = 0; i < 100; i++) if (tb.take(5000)) n++;
    expect(n).toBe(50);
    expect(tb.take(5000)).toBe(false);
    expect(tb.take(5000.5)).toBe(false);
    expect(tb.take(5001)).toBe(true);
    expect(tb.take(5001)).toBe(false);
    // One second of asking every 0.1 ms: 1000 more, no burst on top.
    n = 0;
    for (let t = 5001; t <= 6001; t += 0.125) if (tb.take(t)) n++;
    expect(n).toBeGreaterThanOrEqual(999);
    expect(n).toBeLessThanOrEqual(1001);
  });

  it("refills up to the burst only, however long it was idle", () => {
    const tb = new TokenBucket(10, 5);
    for (let i = 0; i < 5; i++) expect(tb.take(0)).toBe(true);
    expect(tb.take(0)).toBe(false);
    expect(tb.take(99)).toBe(false);
    expect(tb.take(100)).toBe(true);
    let n = 0;
    for (let i = 0; i < 20; i++) if (tb.take(1_000_000)) n++;
    expect(n).toBe(5);
  });

  it("slow rates and a clock that steps back", () => {
    const tb = new TokenBucket(1, 1);
    expect(tb.take(1000)).toBe(true);
    expect(tb.take(1999)).toBe(false);
    expect(tb.take(500)).toBe(false); // back in time: nothing gained, nothing thrown
    expect(tb.take(2000)).toBe(true);
    expect(tb.take(Number.NaN)).toBe(false);
    expect(tb.take(3000)).toBe(true);
  });

  it("rate 0 gives the burst once", () => {
    const tb = new TokenBucket(0, 3);
    const got = [0, 1, 2, 3, 1e9].map((t) => tb.take(t));
    expect(got).toEqual([true, true, true, false, false]);
  });

  it("defaults to Linux icmp_msgs_per_sec / icmp_msgs_burst", () => {
    expect([ICMP_RATE_PER_SECOND, ICMP_RATE_BURST]).toEqual([1000, 50]);
    const tb = new TokenBucket();
    let n = 0;
    for (let i = 0; i < 60; i++) if (tb.take(0)) n++;
    expect(n).toBe(50);
  });

  it.each([
    [-1, 5],
    [Number.NaN, 5],
    [Number.POSITIVE_INFINITY, 5],
    [10, 0],
    [10, 0.5],
    [10, Number.NaN],
  ])("rejects a bad configuration (rate %s, burst %s)", (rate, burst) => {
    expect(() => new TokenBucket(rate, burst)).toThrow(/TokenBucket/);
  });
});
