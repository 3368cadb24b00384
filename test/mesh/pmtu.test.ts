/**
 * The path-MTU probe's state machine (src/mesh/pmtu.ts) on a simulated path and clock:
 * what it finds, how many rounds it takes, what a lost probe, a refusal (EMSGSIZE), a
 * path that shrinks or grows and a stray ack do to it; and MeshPmtu's mesh-wide minimum.
 */
import { describe, expect, it } from "vitest";
import { MeshPmtu, PmtuProbe, type PmtuProbeMsg } from "../../src/mesh/pmtu.js";

/** A path: probes up to `mtu` arrive (unless `lose` says otherwise) and are acked at the next step. */
interface Path {
  mtu: number;
  /** Datagrams above this are refused by the sender's kernel (EMSGSIZE) instead of lost. */
  localMtu?: number;
  lose?: (m: PmtuProbeMsg, n: number) => boolean;
}

/** Runs the probe on a 100 ms clock for `ms`; returns the rounds it sent. */
function run(p: PmtuProbe, path: Path, from: number, ms: number): { rounds: number[][]; now: number; foundAfter: number | null } {
  const rounds: number[][] = [];
  let foundAfter: number | null = null;
  let inFlight: PmtuProbeMsg[] = [];
  let n = 0;
  let now = from;
  for (; now < from + ms; now += 100) {
    for (const m of inFlight) p.ack(m.seq, m.size);
    inFlight = [];
    const msgs = p.poll(now);
    if (foundAfter === null && p.pmtu !== null) foundAfter = rounds.length;
    if (msgs.length > 0) rounds.push([...new Set(msgs.map((m) => m.size))]);
    for (const m of msgs) {
      if (path.localMtu !== undefined && m.size > path.localMtu) {
        p.refused(m.seq);
        continue;
      }
      if (m.size <= path.mtu && !(path.lose?.(m, n++) ?? false)) inFlight.push(m);
    }
  }
  return { rounds, now, foundAfter };
}

describe("PmtuProbe", () => {
  it("a clean 1500 path: one round, the largest size first, found at once", () => {
    const p = new PmtuProbe({ max: 1500 });
    const { rounds } = run(p, { mtu: 1500 }, 0, 500);
    expect(p.pmtu).toBe(1500);
    expect(p.state).toBe("verifying");
    expect(rounds).toHaveLength(1);
    expect(rounds[0][0]).toBe(1500);
    expect(rounds[0]).toEqual([...rounds[0]].sort((a, b) => b - a));
  });

  it("finds every MTU from 576 to 1500 exactly: 1500 alone first, then at most 4 rounds of 8 sizes", () => {
    for (let mtu = 576; mtu <= 1500; mtu += 7) {
      const p = new PmtuProbe({ max: 1500 });
      const { rounds, foundAfter } = run(p, { mtu }, 0, 10_000);
      expect(p.pmtu, `path ${mtu}`).toBe(mtu);
      expect(rounds[0]).toEqual([1500]);
      expect(foundAfter, `path ${mtu}: ${JSON.stringify(rounds)}`).toBeLessThanOrEqual(5);
      expect(rounds.every((r) => r.length <= 8)).toBe(true);
    }
  });

  it("a size refused by the kernel (EMSGSIZE) settles the round at once, with no wait", () => {
    const p = new PmtuProbe({ max: 1500, roundMs: 60_000 });
    // Every size above 1300 is refused locally; the path itself carries 1300.
    run(p, { mtu: 1300, localMtu: 1300 }, 0, 2_000);
    expect(p.pmtu).toBe(1300);
  });

  it("one lost copy of a probe does not lower the PMTU", () => {
    const p = new PmtuProbe({ max: 1500 });
    // Lose the first copy of every probe.
    run(p, { mtu: 1500, lose: (_m, n) => n % 2 === 0 }, 0, 3_000);
    expect(p.pmtu).toBe(1500);
  });

  it("a path that shrinks: two failed verifications, then a new search finds the new PMTU", () => {
    const p = new PmtuProbe({ max: 1500, verifyMs: 5_000, researchMs: 600_000 });
    const path: Path = { mtu: 1500 };
    let { now } = run(p, path, 0, 1_000);
    expect(p.pmtu).toBe(1500);
    path.mtu = 1300;
    const searches = p.searches;
    // Within verifyMs + two rounds the search restarts; the old PMTU holds meanwhile.
    ({ now } = run(p, path, now, 5_000 + 2_100));
    expect(p.searches).toBe(searches + 1);
    expect(p.state).toBe("searching");
    expect(p.pmtu).toBe(1500);
    run(p, path, now, 6_000);
    expect(p.pmtu).toBe(1300);
    expect(p.state).toBe("verifying");
  });

  it("a single failed verification is retried, not a new search", () => {
    const p = new PmtuProbe({ max: 1500, verifyMs: 5_000 });
    const { now } = run(p, { mtu: 1500 }, 0, 1_000);
    const sent = p.probesSent;
    // Both copies of the first verification are lost; the retry gets through.
    run(p, { mtu: 1500, lose: (_m, n) => n < 2 }, now, 10_000);
    expect(p.searches).toBe(1);
    expect(p.pmtu).toBe(1500);
    // The lost verification (2 copies) and its retry (2), no search rounds.
    expect(p.probesSent - sent).toBe(4);
  });

  it("a path that grows is found by the periodic search", () => {
    const p = new PmtuProbe({ max: 1500, verifyMs: 1_000, researchMs: 10_000 });
    const path: Path = { mtu: 1400 };
    const { now } = run(p, path, 0, 5_000);
    expect(p.pmtu).toBe(1400);
    path.mtu = 1500;
    run(p, path, now, 12_000);
    expect(p.pmtu).toBe(1500);
    expect(p.searches).toBeGreaterThanOrEqual(2);
  });

  it("stray acks (never sent, wrong size, duplicate) are counted and change nothing; a late one is told apart", () => {
    const p = new PmtuProbe({ max: 1500 });
    const msgs = p.poll(0);
    expect(msgs).toHaveLength(2); // 1500, twice
    expect(p.ack(msgs[0].seq + 1000, 1500)).toBe(false);
    expect(p.ack(msgs[0].seq, msgs[0].size - 1)).toBe(false);
    expect(p.strayAcks).toBe(2);
    expect(p.pmtu).toBeNull();
    expect(p.ack(msgs[0].seq, msgs[0].size)).toBe(true);
    expect(p.ack(msgs[0].seq, msgs[0].size)).toBe(false);
    expect(p.strayAcks).toBe(3);
    p.poll(1);
    expect(p.pmtu).toBe(1500);
    // The second copy's ack, after the round settled: late, not stray.
    expect(p.ack(msgs[1].seq, msgs[1].size)).toBe(true);
    expect([p.lateAcks, p.strayAcks]).toEqual([1, 3]);
  });

  it("restart() keeps the PMTU found until the new search ends", () => {
    const p = new PmtuProbe({ max: 1500 });
    run(p, { mtu: 1200 }, 0, 6_000);
    expect(p.pmtu).toBe(1200);
    p.restart();
    expect(p.pmtu).toBe(1200);
    run(p, { mtu: 1000 }, 10_000, 6_000);
    expect(p.pmtu).toBe(1000);
  });
});

describe("MeshPmtu", () => {
  /** A port whose path to each address has an MTU; acks come back through ack(). */
  function rig(paths: Record<string, number>) {
    const sent: Array<{ addr: string; seq: number; size: number; short: number }> = [];
    let applied = 0;
    const port = {
      underlayMtu: 1500,
      sendProbe: (addr: string, _port: number, short: number, seq: number, size: number) => {
        if (size <= (paths[addr] ?? 0)) sent.push({ addr, seq, size, short });
        return true;
      },
      setPathMtu: (m: number) => void (applied = m),
    };
    let changes = 0;
    const m = new MeshPmtu(port, 6783, {}, () => changes++);
    const deliver = (now: number): void => {
      const batch = sent.splice(0);
      for (const s of batch) m.ack(s.short, s.seq, s.size, now);
    };
    return { m, deliver, applied: () => applied, changes: () => changes };
  }

  it("each connection gets its own PMTU; the mesh takes the smallest, announced ones too", () => {
    const r = rig({ "192.168.1.2": 1500, "192.168.2.3": 1300 });
    r.m.start("node2", 2, "192.168.1.2", 0);
    r.m.start("node3", 3, "192.168.2.3", 0);
    for (let t = 0; t < 10_000; t += 100) {
      r.deliver(t);
      r.m.tick(t);
    }
    expect(r.m.pmtuOf("node2")).toBe(1500);
    expect(r.m.pmtuOf("node3")).toBe(1300);
    expect(r.changes()).toBe(2);
    expect(r.m.apply([])).toBe(1300);
    expect(r.applied()).toBe(1300);
    expect(r.m.apply([1500, 1200])).toBe(1200);
    r.m.stop("node3");
    expect(r.m.pmtuOf("node3")).toBeNull();
    expect(r.m.apply([])).toBe(1500);
  });

  it("acks from a peer with no probe are refused", () => {
    const r = rig({});
    expect(r.m.ack(7, 1, 1500, 0)).toBe(false);
  });
});
