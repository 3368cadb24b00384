/**
 * Impairments without a device: the delay queue (time order, ring bounds, reclaim), the
 * rate (one frame's serialisation after another), loss/duplicate/reorder statistics with
 * the PRNG, parsing of tc's words, and a port's two directions through an engine with a
 * virtual clock (memory ports, frames released by the engine's timer).
 */
import { afterEach, describe, expect, it } from "vitest";
import { Batch } from "../../src/core/batch.js";
import { DelayQueue, IMPAIR_HEADROOM, ImpairStage, impairSettings, noImpairment, parseRate, parseTime, Prng } from "../../src/core/impair.js";
import type { FrameList } from "../../src/core/batch.js";
import type { Port } from "../../src/core/port.js";
import { Engine } from "../../src/core/engine.js";
import { MemoryPort } from "../../src/io/memory-port.js";

function frame(tag: number, len = 60): Buffer {
  const b = Buffer.alloc(len);
  b.writeUInt32BE(tag, 20);
  return b;
}

describe("DelayQueue", () => {
  it("hands frames out by time, not arrival, and only when due", () => {
    const buf = Buffer.alloc(1 << 16);
    const q = new DelayQueue(buf, 0, 1 << 16, 64);
    const src = Buffer.alloc(256);
    for (const [tag, t] of [
      [1, 30],
      [2, 10],
      [3, 20],
      [4, 10],
    ]) {
      src.writeUInt32BE(tag, 100);
      expect(q.push(src, 100, 60, 0, t, 64)).toBe(true);
    }
    const out = new Batch(8);
    expect(q.popDue(5, out, 8)).toBe(0);
    expect(q.nextTime()).toBe(10);
    expect(q.popDue(20, out, 8)).toBe(3);
    const tags = Array.from({ length: out.count }, (_, i) => buf.readUInt32BE(out.offsets[i]));
    expect(tags).toEqual([2, 4, 3]); // equal times keep arrival order
    expect(out.lengths[0]).toBe(60);
    q.reclaim();
    out.count = 0;
    expect(q.popDue(100, out, 8)).toBe(1);
    expect(buf.readUInt32BE(out.offsets[0])).toBe(1);
    expect(q.waiting).toBe(0);
  });

  it("keeps the bytes before a frame (its virtio-net header) and leaves headroom", () => {
    const buf = Buffer.alloc(4096);
    const q = new DelayQueue(buf, 128, 2048, 8);
    const src = Buffer.alloc(200);
    src.fill(7, 88, 100);
    src.fill(9, 100, 160);
    q.push(src, 100, 60, 12, 0, 8);
    const out = new Batch(1);
    q.popDue(0, out, 1);
    expect(out.offsets[0]).toBe(128 + IMPAIR_HEADROOM);
    expect([...buf.subarray(out.offsets[0] - 12, out.offsets[0])]).toEqual(Array(12).fill(7));
    expect([...buf.subarray(out.offsets[0], out.offsets[0] + 60)]).toEqual(Array(60).fill(9));
  });

  it("refuses what does not fit (ring bytes or limit) and reuses the ring after reclaim, wrapping", () => {
    const buf = Buffer.alloc(1024);
    // Records take 64 headroom + 60 bytes, rounded to 128: four fit in 512 bytes.
    const q = new DelayQueue(buf, 0, 512, 16);
    const src = frame(0, 200);
    let n = 0;
    while (q.push(src, 100, 60, 0, n, 16)) n++;
    expect(n).toBe(4);
    const out = new Batch(16);
    expect(q.popDue(1, out, 16)).toBe(2);
    // Released but not reclaimed: still no room.
    expect(q.push(src, 100, 60, 0, 9, 16)).toBe(false);
    q.reclaim();
    expect(q.push(src, 100, 60, 0, 9, 16)).toBe(true); // wraps to the start
    expect(q.push(src, 100, 60, 0, 9, 16)).toBe(false); // head would meet tail
    expect(q.push(src, 100, 60, 0, 9, 2)).toBe(false); // the limit
    out.count = 0;
    expect(q.popDue(100, out, 16)).toBe(3);
    q.reclaim();
    expect(q.waiting).toBe(0);
    for (let i = 0; i < 4; i++) expect(q.push(src, 100, 60, 0, i, 16)).toBe(true);
  });

  it("a frame released out of order keeps its bytes until the older ones go", () => {
    const buf = Buffer.alloc(1024);
    const q = new DelayQueue(buf, 0, 512, 16);
    const src = frame(0, 200);
    q.push(src, 100, 60, 0, 50, 16); // old, late
    q.push(src, 100, 60, 0, 1, 16); // young, early
    const out = new Batch(4);
    expect(q.popDue(2, out, 4)).toBe(1);
    q.reclaim();
    // Two records still hold bytes (the first has not left): two more fit, not three.
    expect(q.push(src, 100, 60, 0, 60, 16)).toBe(true);
    expect(q.push(src, 100, 60, 0, 60, 16)).toBe(true);
    expect(q.push(src, 100, 60, 0, 60, 16)).toBe(false);
  });
});

describe("ImpairStage", () => {
  const stage = (a: Record<string, unknown>, bytes = 1 << 22): { st: ImpairStage; buf: Buffer } => {
    const buf = Buffer.alloc(bytes);
    return { st: new ImpairStage(buf, 0, bytes, impairSettings(a), 12345), buf };
  };
  const src = frame(1, 2000);

  it("rate: frames leave one serialisation time after another (10 Mbit/s: 1500 bytes = 1.2 ms)", () => {
    const { st } = stage({ rate: "10mbit" });
    for (let i = 0; i < 100; i++) expect(st.offer(src, 100, 1500, 0, 1500, 0)).toBe(0);
    const out = new Batch(200);
    // After 60 ms, 50 frames have had their 1.2 ms each.
    expect(st.queue.popDue(60 + 1e-9, out, 200)).toBe(50);
    // A frame arriving later, when the link is idle, starts at once.
    out.count = 0;
    st.queue.popDue(1e9, out, 200);
    st.queue.reclaim();
    expect(st.offer(src, 100, 1500, 0, 1500, 1000)).toBe(0);
    expect(st.queue.nextTime()).toBeCloseTo(1001.2, 6);
  });

  it("rate with delay: the delay comes first, then the serialisation", () => {
    const { st } = stage({ rate: "1mbit", delay: "10ms" });
    st.offer(src, 100, 125, 0, 125, 0);
    expect(st.queue.nextTime()).toBeCloseTo(11, 6);
  });

  it("loss, duplicate and reorder happen at about their rates; delay + jitter stay in their bounds", () => {
    const { st } = stage({ loss: "20%", duplicate: "10%", reorder: "25%", delay: "50ms", jitter: "5ms", limit: 16384 }, 1 << 24);
    const N = 10_000;
    let drops = 0;
    for (let i = 0; i < N; i++) drops += st.offer(src, 100, 60, 0, 60, 0);
    expect(drops).toBe(st.c.lost);
    expect(st.c.lost / N).toBeGreaterThan(0.18);
    expect(st.c.lost / N).toBeLessThan(0.22);
    expect(st.c.duplicated / (N - st.c.lost)).toBeGreaterThan(0.08);
    expect(st.c.duplicated / (N - st.c.lost)).toBeLessThan(0.12);
    expect(st.c.reordered / st.c.queued).toBeGreaterThan(0.23);
    expect(st.c.reordered / st.c.queued).toBeLessThan(0.27);
    const out = new Batch(20_000);
    // Reordered frames leave at once; all the others between 45 and 55 ms.
    expect(st.queue.popDue(0, out, 20_000)).toBe(st.c.reordered);
    expect(st.queue.popDue(45 - 1e-9, out, 20_000)).toBe(0);
    st.queue.popDue(55, out, 20_000);
    expect(out.count).toBe(st.c.queued);
  });

  it("a full queue is a counted drop (overflow)", () => {
    const { st } = stage({ delay: "10ms", limit: 5 });
    let drops = 0;
    for (let i = 0; i < 8; i++) drops += st.offer(src, 100, 60, 0, 60, 0);
    expect(drops).toBe(3);
    expect(st.c.overflow).toBe(3);
    expect(st.queue.waiting).toBe(5);
  });

  it("the PRNG's chance is fair at the edges", () => {
    const p = new Prng(1);
    let n = 0;
    for (let i = 0; i < 1000; i++) if (p.chance(0)) n++;
    expect(n).toBe(0);
    for (let i = 0; i < 1000; i++) if (p.chance(100)) n++;
    expect(n).toBe(1000);
  });
});

describe("tc's words", () => {
  it("parses times, rates and percentages, and says what is wrong", () => {
    expect(parseTime("20ms", "delay")).toBe(20);
    expect(parseTime("1.5s", "delay")).toBe(1500);
    expect(parseTime("500us", "delay")).toBe(0.5);
    expect(parseRate("10mbit", "rate")).toBe(10e6);
    expect(parseRate("1gbit", "rate")).toBe(1e9);
    expect(parseRate("1mbps", "rate")).toBe(8e6);
    expect(impairSettings({ loss: "1%", delay: 20 })).toMatchObject({ loss: 1, delay: 20, limit: 1000 });
    expect(() => impairSettings({ delay: "20 parsecs" })).toThrow(/delay: '20 parsecs' is not a time/);
    expect(() => impairSettings({ loss: "120%" })).toThrow(/loss: '120%' is not a percentage 0-100/);
    expect(() => impairSettings({ rate: "10furlongs" })).toThrow(/rate: '10furlongs' is not a rate/);
    expect(() => impairSettings({ reorder: "25%" })).toThrow(/reorder needs a delay/);
    expect(() => impairSettings({ latency: "5ms" })).toThrow(/latency: not an impairment/);
    expect(impairSettings({ loss: 5 }, { ...noImpairment(), delay: 7 })).toMatchObject({ loss: 5, delay: 7 });
  });
});

describe("an engine's impaired port (virtual clock, memory ports)", () => {
  let engine: Engine | null = null;
  afterEach(() => {
    engine?.stop();
    engine = null;
  });

  /** An engine whose two ports forward to each other (a wire), and a clock the test moves. */
  function wire(): { e: Engine; a: MemoryPort; b: MemoryPort; clock: { t: number } } {
    const clock = { t: 1000 };
    const e = new Engine();
    e.clock = () => clock.t;
    const a = new MemoryPort("a");
    const b = new MemoryPort("b");
    const cross = {
      name: "cross",
      process(port: Port, frames: FrameList, _pool: Buffer, _now: number): void {
        const to = port === a ? b : a;
        for (let i = 0; i < frames.count; i++) to.txq.push(frames.offsets[i], frames.lengths[i]);
      },
    };
    e.addPort(a, cross);
    e.addPort(b, cross);
    e.start(1 << 25);
    engine = e;
    return { e, a, b, clock };
  }

  it("out: frames wait their delay and leave by the engine's timer, in one write; the other port is not held up", async () => {
    const { e, a, b, clock } = wire();
    e.setImpairment(b, "out", impairSettings({ delay: "50ms" }));
    a.inject([frame(1), frame(2)]);
    expect(b.sent.length).toBe(0);
    expect(b.impairOut?.queue.waiting).toBe(2);
    // The other direction is not delayed.
    b.inject([frame(3)]);
    expect(a.sent.map((f) => f.readUInt32BE(20))).toEqual([3]);
    clock.t += 49;
    await new Promise((r) => setTimeout(r, 80));
    expect(b.sent.length).toBe(0); // the timer fired (≥ 50 ms of real time) but the clock says 49 ms
    clock.t += 1;
    await new Promise((r) => setTimeout(r, 20));
    expect(b.sent.map((f) => f.readUInt32BE(20))).toEqual([1, 2]);
    expect(b.impairOut?.c).toMatchObject({ queued: 2, released: 2, lost: 0 });
  });

  it("in: received frames reach the graph after their delay; cleared, waiting frames leave at once and the path is the plain one", () => {
    const { e, a, b } = wire();
    e.setImpairment(a, "in", impairSettings({ delay: "10s" }));
    a.inject([frame(7)]);
    expect(b.sent.length).toBe(0);
    e.setImpairment(a, "in", null);
    expect(b.sent.map((f) => f.readUInt32BE(20))).toEqual([7]);
    expect(a.impairIn).toBeNull();
    a.inject([frame(8)]);
    expect(b.sent.map((f) => f.readUInt32BE(20))).toEqual([7, 8]);
  });

  it("loss 100% drops everything and counts it as the port's drops", () => {
    const { e, a, b } = wire();
    e.setImpairment(b, "out", impairSettings({ loss: "100%" }));
    a.inject([frame(1), frame(2), frame(3)]);
    expect(b.sent.length).toBe(0);
    expect(b.txDrops).toBe(3);
    expect(b.impairOut?.c.lost).toBe(3);
  });
});
