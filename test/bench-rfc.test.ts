/**
 * The RFC 2544/2889 scenarios' pure parts (scripts/bench/rfc-search.mjs, rfc2544.mjs,
 * svg.mjs), on made-up trials: no network, no root, no timing.
 * - the zero-loss throughput search (§26.1): converges on the DUT's limit within the
 *   resolution, credits a sender-bound path with the sender's rate, reports 0 when
 *   nothing passes;
 * - the address-capacity search (RFC 2889 §5.7): exact, `atLeast` when the maximum passes;
 * - the frame-loss series (§26.3): 10% steps down until two clean trials in a row;
 * - trafgen's frame config: the IPv4 and UDP lengths and the padding for each size;
 * - the throughput chart: one line per DUT, hollow points for sender-bound ones.
 */
import path from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { ROOT } from "./integration/harness.js";

// The helpers are plain .mjs modules of the bench: imported by URL, untyped.
const load = async (f: string): Promise<any> => import(pathToFileURL(path.join(ROOT, "scripts/bench", f)).href);

/** A DUT that forwards up to `limit` frames/s; the sender reaches at most `senderMax`. */
function fakeDut(limit: number, senderMax: number) {
  const asked: (number | null)[] = [];
  const trial = async (target: number | null) => {
    asked.push(target);
    const offeredPps = Math.min(target ?? senderMax, senderMax);
    return { pass: offeredPps <= limit, offeredPps };
  };
  return { trial, asked };
}

describe("RFC 2544 throughput search", () => {
  it("finds the highest passing rate within the resolution, unthrottled first", async () => {
    const { searchZeroLoss } = await load("rfc-search.mjs");
    const dut = fakeDut(123_456, 400_000);
    const r = await searchZeroLoss(dut.trial, { resolution: 0.01 });
    expect(dut.asked[0]).toBeNull();
    expect(r.senderBound).toBe(false);
    expect(r.maxPps).toBe(400_000);
    expect(r.throughputPps).toBeLessThanOrEqual(123_456);
    expect(r.throughputPps).toBeGreaterThan(123_456 - 0.01 * 400_000);
    // Every trial is recorded with its target; the answer is one that passed.
    expect(r.trials.length).toBe(dut.asked.length);
    expect(r.trials.some((t: any) => t.pass && t.offeredPps === r.throughputPps)).toBe(true);
  });

  it("stops at maxTrials", async () => {
    const { searchZeroLoss } = await load("rfc-search.mjs");
    const dut = fakeDut(100_000, 400_000);
    const r = await searchZeroLoss(dut.trial, { resolution: 0.0001, maxTrials: 5 });
    expect(r.trials.length).toBe(5);
    expect(r.throughputPps).toBeLessThanOrEqual(100_000);
  });

  it("a path that loses nothing unthrottled is sender-bound: one trial", async () => {
    const { searchZeroLoss } = await load("rfc-search.mjs");
    const dut = fakeDut(1e9, 250_000);
    const r = await searchZeroLoss(dut.trial);
    expect(r).toMatchObject({ throughputPps: 250_000, senderBound: true });
    expect(dut.asked).toEqual([null]);
  });

  it("nothing passes: throughput 0 and the lowest failing rate", async () => {
    const { searchZeroLoss } = await load("rfc-search.mjs");
    const dut = fakeDut(0, 400_000);
    const r = await searchZeroLoss(dut.trial, { resolution: 0.04 });
    expect(r.throughputPps).toBe(0);
    expect(r.targetPps).toBeNull();
    expect(r.below).toBeLessThanOrEqual(0.04 * 400_000);
  });
});

describe("RFC 2889 capacity search", () => {
  it("exact capacity by binary search; at least the maximum when it passes", async () => {
    const { searchCapacity } = await load("rfc-search.mjs");
    const asked: number[] = [];
    const table = (cap: number) => async (n: number) => {
      asked.push(n);
      return { pass: n <= cap };
    };
    const r = await searchCapacity(table(8190), 16384);
    expect(r).toMatchObject({ capacity: 8190, atLeast: false });
    expect(asked[0]).toBe(16384);
    expect(asked.length).toBeLessThanOrEqual(16);
    expect(await searchCapacity(table(1e9), 16384)).toMatchObject({ capacity: 16384, atLeast: true });
    expect((await searchCapacity(table(0), 100)).capacity).toBe(0);
  });

  it("a first trial that says how many it held settles the capacity in three trials", async () => {
    const { searchCapacity } = await load("rfc-search.mjs");
    const asked: number[] = [];
    const r = await searchCapacity(async (n: number) => {
      asked.push(n);
      return { pass: n <= 8190, learned: Math.min(n, 8190) };
    }, 16384);
    expect(r).toMatchObject({ capacity: 8190, atLeast: false });
    expect(asked).toEqual([16384, 8190, 8191]);
    // The held count failing on a retry (a dropped learning frame): the search goes on below it.
    const asked2: number[] = [];
    const r2 = await searchCapacity(async (n: number) => {
      asked2.push(n);
      return { pass: n <= 6000, learned: Math.min(n, 8190) };
    }, 16384);
    expect(r2.capacity).toBe(6000);
    expect(asked2.slice(0, 2)).toEqual([16384, 8190]);
  });
});

describe("RFC 2544 frame loss series", () => {
  it("100%, 90%, … until two trials in a row lose nothing", async () => {
    const { lossSeries } = await load("rfc-search.mjs");
    const loss = (f: number) => (f > 0.55 ? (f - 0.55) * 100 : 0);
    const s = await lossSeries(async (f: number) => ({ lossPercent: loss(f) }));
    expect(s.map((x: any) => x.fraction)).toEqual([1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4]);
    expect(s.at(-1).lossPercent).toBe(0);
    expect(s.at(-2).lossPercent).toBe(0);
    expect(s.at(-3).lossPercent).toBeGreaterThan(0);
    // A lossless DUT: two trials.
    expect((await lossSeries(async () => ({ lossPercent: 0 }))).length).toBe(2);
  });
});

describe("RFC 2544 frames and chart", () => {
  it("trafgen config: IPv4 total length, UDP length and padding follow the frame size", async () => {
    const { udpFrameConfig } = await load("rfc2544.mjs");
    const p = { srcMac: "02:00:00:00:00:01", dstMac: "02:00:00:00:00:02", srcAddr: "10.0.0.1", dstAddr: "10.0.0.2" };
    for (const [size, ipLen] of [
      [64, 46],
      [1518, 1500],
    ]) {
      const cfg: string = udpFrameConfig(p, size);
      expect(cfg).toContain(`c16(${ipLen}), c16(0), c16(0), 64, 17`);
      expect(cfg).toContain(`c16(${ipLen - 20}), c16(0)`);
      expect(cfg).toContain(`fill(0x00, ${size - 46})`);
      // Bytes before the padding: 14 Ethernet + 20 IPv4 + 8 UDP = 42; + padding + FCS = size.
      expect(42 + (size - 46) + 4).toBe(size);
    }
    expect(() => udpFrameConfig(p, 63)).toThrow(/64\.\.1518/);
    expect(() => udpFrameConfig(p, 1519)).toThrow(/64\.\.1518/);
  });

  it("test addresses are distinct, locally administered unicast", async () => {
    const { testMac } = await load("rfc2544.mjs");
    const seen = new Set<string>();
    for (let i = 0; i < 65536; i += 257) {
      const m: number[] = testMac(7, i);
      expect(m[0] & 0x03).toBe(0x02);
      seen.add(m.join(":"));
    }
    expect(seen.size).toBe(Math.ceil(65536 / 257));
  });

  it("line chart: a well-formed document with one line per series and hollow sender-bound points", async () => {
    const { lineChart } = await load("svg.mjs");
    const svg: string = lineChart(
      [
        {
          name: "tapnet <switch>",
          points: [
            { x: 64, y: 100_000 },
            { x: 1518, y: 80_000 },
          ],
        },
        {
          name: "kernel bridge",
          points: [
            { x: 64, y: 500_000, atLeast: true },
            { x: 1518, y: 0 },
          ],
        },
      ],
      { title: "t", xLabel: "frame size", yLabel: "frames/s" },
    );
    expect(svg.startsWith("<?xml")).toBe(true);
    expect(svg.trim().endsWith("</svg>")).toBe(true);
    expect(svg.match(/<polyline /g)?.length).toBe(2);
    // y = 0 is left out: three points drawn, one hollow.
    expect(svg.match(/<circle /g)?.length).toBe(3);
    expect(svg.match(/fill="#fff" stroke=/g)?.length).toBe(1);
    expect(svg).toContain("tapnet &lt;switch&gt;");
  });
});
