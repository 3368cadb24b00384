/**
 * The mesh's address ring without a lab: the merge rules (a CRDT), allocations among
 * simulated peers whose messages arrive in random order, a gone peer's ranges, and what a
 * peer may send.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ipToU32 } from "../../src/lab/topology-schema.js";
import { type IpamLinks, MeshIpam } from "../../src/mesh/ipam.js";
import { parseRange, Ring, type RingEntry, type RingMessage } from "../../src/mesh/ring.js";
import { MSG } from "../../src/mesh/wire.js";

/** A seeded random generator (mulberry32): failures are reproducible. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const canon = (r: Ring): string => JSON.stringify(r.message().entries);

/** Rings with some history: seeded, then donations and allocations among the peers. */
function histories(seed: number): RingMessage[] {
  const rand = rng(seed);
  const names = ["a", "b", "c", "d"];
  const rings = names.map((n) => new Ring(n, "10.32.0.0/20", ["a"]));
  for (const r of rings) r.seed();
  const out: RingMessage[] = [];
  for (let k = 0; k < 60; k++) {
    const i = Math.floor(rand() * rings.length);
    const r = rings[i];
    const op = rand();
    if (op < 0.3) r.allocate(`h${k}`);
    else if (op < 0.6) r.donate(names[Math.floor(rand() * names.length)]);
    else r.merge(rings[Math.floor(rand() * rings.length)].message());
    out.push(r.message());
  }
  return out;
}

describe("the ring's merge (a CRDT)", () => {
  it("is commutative, associative and idempotent over states with real histories", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const msgs = histories(seed);
      const rand = rng(seed * 7);
      for (let k = 0; k < 20; k++) {
        const pick = (): RingMessage => msgs[Math.floor(rand() * msgs.length)];
        const [a, b, c] = [pick(), pick(), pick()];
        const merged = (...ms: RingMessage[]): string => {
          const r = new Ring("x", "10.32.0.0/20", ["a"]);
          for (const m of ms) r.merge(m);
          return canon(r);
        };
        // Not vacuous: the merges take the rings.
        expect(JSON.parse(merged(a, b)).length).toBeGreaterThanOrEqual(a.entries.length);
        expect(merged(a, b)).toBe(merged(b, a));
        expect(merged(a, b, c)).toBe(merged(c, b, a));
        expect(merged(a, b, c)).toBe(merged(b, c, a));
        expect(merged(a, a, b, b)).toBe(merged(a, b));
        // A merge that teaches nothing says so.
        const r = new Ring("x", "10.32.0.0/20", ["a"]);
        r.merge(a);
        expect(r.merge(a)).toBe("stale");
      }
    }
  });

  it("the higher version wins a token; an older ring cannot undo a newer one", () => {
    const a = new Ring("a", "10.32.0.0/24", ["a"]);
    a.seed();
    const old = a.message();
    expect(a.donate("b")).toEqual({ start: parseRange("10.32.0.128/25")?.start, end: parseRange("10.32.0.128/25")?.end });
    const b = new Ring("b", "10.32.0.0/24", ["a"]);
    b.merge(a.message());
    expect(b.merge(old)).toBe("stale");
    expect(b.summary().map((p) => [p.peer, p.ranges.map((r) => `${r.start}-${r.end}`), p.free])).toEqual([
      ["a", ["10.32.0.0-10.32.0.127"], 127],
      ["b", ["10.32.0.128-10.32.0.255"], 127],
    ]);
  });
});

/** Simulated peers on a line a - b - c - d - e, their messages in a queue delivered in random order. */
class Sim {
  readonly peers = new Map<string, MeshIpam>();
  readonly dead = new Set<string>();
  queue: Array<{ from: string; to: string; type: number; body: unknown }> = [];
  readonly logs: string[] = [];

  constructor(
    readonly names: string[],
    range: string,
    readonly rand: () => number,
  ) {
    for (const n of names) this.peers.set(n, new MeshIpam(n, { range, seed: [names[0]] }, this.links(n)));
  }

  private links(self: string): IpamLinks {
    const i = this.names.indexOf(self);
    const alive = (n: string): boolean => !this.dead.has(n);
    return {
      neighbours: () => [this.names[i - 1], this.names[i + 1]].filter((n): n is string => n !== undefined && alive(n)),
      send: (peer, type, body) => {
        if (!alive(peer) || !alive(self)) return false;
        this.queue.push({ from: self, to: peer, type, body: JSON.parse(JSON.stringify(body)) });
        return true;
      },
      nextHop: (peer) => {
        const j = this.names.indexOf(peer);
        if (j < 0 || !alive(peer)) return undefined;
        // The line is cut where a peer is dead.
        const step = j > i ? 1 : -1;
        for (let k = i + step; k !== j; k += step) if (!alive(this.names[k])) return undefined;
        return this.names[i + step];
      },
      reachable: () => this.names.filter((n) => n !== self && this.links2(self, n)),
      log: (l) => this.logs.push(l),
    };
  }

  private links2(a: string, b: string): boolean {
    const [i, j] = [this.names.indexOf(a), this.names.indexOf(b)].sort((x, y) => x - y);
    for (let k = i; k <= j; k++) if (this.dead.has(this.names[k])) return false;
    return true;
  }

  /** Delivers up to n messages in random order: some twice, some lost. */
  deliver(n: number): void {
    for (let k = 0; k < n && this.queue.length > 0; k++) {
      const i = Math.floor(this.rand() * this.queue.length);
      const m = this.queue[i];
      const dup = this.rand() < 0.1;
      if (!dup) this.queue.splice(i, 1);
      if (this.rand() < 0.03 || this.dead.has(m.to)) continue;
      const p = this.peers.get(m.to) as MeshIpam;
      if (m.type === MSG.RING) p.onRing(m.from, m.body);
      else p.onRequest(m.from, m.body);
    }
  }

  /** A second passes: every live peer gossips its ring and serves who waits. */
  second(): void {
    vi.setSystemTime(Date.now() + 1100);
    for (const [n, p] of this.peers) {
      if (this.dead.has(n)) continue;
      p.sendRing();
      p.pump();
    }
  }

  async settle(rounds: number): Promise<void> {
    for (let r = 0; r < rounds; r++) {
      this.deliver(50);
      this.second();
      await Promise.resolve();
    }
    while (this.queue.length > 0) this.deliver(this.queue.length);
    await Promise.resolve();
  }
}

const u32 = (ip: string): number => ipToU32(ip.split("/")[0]) as number;

describe("allocations among simulated peers", () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(1_000_000);
  });
  afterEach(() => vi.useRealTimers());

  it("200 allocations over 5 peers, requests and donations in random order, never collide", async () => {
    for (const seed of [1, 2, 3]) {
      const rand = rng(seed);
      const sim = new Sim(["a", "b", "c", "d", "e"], "10.32.0.0/12", rand);
      const got = new Map<string, string>();
      const pending: Array<Promise<void>> = [];
      for (let k = 0; k < 200; k++) {
        const peer = sim.names[Math.floor(rand() * sim.names.length)];
        const owner = `pod${k}`;
        pending.push(
          (sim.peers.get(peer) as MeshIpam).allocate(owner, 600_000).then((ip) => {
            got.set(`${peer}/${owner}`, ip);
          }),
        );
        if (k % 10 === 0) await sim.settle(1);
      }
      for (let r = 0; r < 200 && got.size < 200; r++) await sim.settle(1);
      await Promise.all(pending);
      expect(got.size).toBe(200);
      const addrs = [...got.values()];
      expect(new Set(addrs).size, `seed ${seed}: an address handed out twice`).toBe(200);
      for (const a of addrs) expect(a).toMatch(/^10\.(3[2-9]|4[0-7])\.\d+\.\d+\/12$/);
      // Every peer that allocated got space: the seed donated, requests crossed the line.
      const donations = [...sim.peers.values()].reduce((n, p) => n + p.counters.donations, 0);
      expect(donations).toBeGreaterThanOrEqual(4);
      expect([...sim.peers.values()].reduce((n, p) => n + p.counters.requestsForwarded, 0)).toBeGreaterThan(0);
      // The rings converge to one, and every address lies in a range its allocator owns.
      await sim.settle(5);
      const rings = [...sim.peers.values()].map((p) => canon(p.ring));
      expect(new Set(rings).size).toBe(1);
      const ring = [...sim.peers.values()][0].ring;
      for (const [key, ip] of got) {
        const owner = ring.entries.filter((e) => e.token <= u32(ip)).pop() as RingEntry;
        expect(owner.peer, `${ip} of ${key}`).toBe(key.split("/")[0]);
      }
    }
  });

  it("a gone peer's ranges are not handed out until rmpeer gives them to the peer it runs on", async () => {
    const sim = new Sim(["a", "b", "c"], "10.32.0.0/26", rng(9));
    // Each peer takes addresses until the seed has split the range among the three.
    const first = await Promise.all(
      ["a", "b", "c", "a", "b", "c"].map(async (p, k) => {
        const pr = (sim.peers.get(p) as MeshIpam).allocate(`x${k}`, 600_000);
        await sim.settle(3);
        return pr;
      }),
    );
    await sim.settle(5);
    expect(new Set(first).size).toBe(6);
    const cRanges = sim.peers
      .get("a")
      ?.ring.summary()
      .find((p) => p.peer === "c");
    expect(cRanges?.size).toBeGreaterThan(0);
    // c is killed: a and b take every address they can; none is in c's ranges.
    sim.dead.add("c");
    const owners = (sim.peers.get("a") as MeshIpam).ring.entries.filter((e) => e.peer === "c").map((e) => e.token);
    const inC = (ip: string): boolean => {
      const ring = (sim.peers.get("a") as MeshIpam).ring;
      const e = ring.entries.filter((x) => x.token <= u32(ip)).pop() as RingEntry;
      return owners.includes(e.token);
    };
    const more: string[] = [];
    const waits: Array<Promise<unknown>> = [];
    for (let k = 0; k < 70; k++) {
      waits.push(
        (sim.peers.get(k % 2 ? "a" : "b") as MeshIpam)
          .allocate(`y${k}`, 20_000)
          .then((ip) => more.push(ip))
          .catch(() => undefined),
      );
      await sim.settle(1);
    }
    await sim.settle(30);
    await Promise.all(waits);
    expect(more.some(inC)).toBe(false);
    const total = 62; // a /26 less network and broadcast
    const cSize = (cRanges?.free ?? 0) + 2; // c's two allocations
    expect(more.length).toBe(total - 6 - (cSize - 2));
    // rmpeer is refused while the peer is reachable, then given to a.
    expect(() => sim.peers.get("a")?.rmpeer("b")).toThrow(/still in the mesh/);
    expect(sim.peers.get("a")?.rmpeer("c")).toBeGreaterThan(0);
    await sim.settle(3);
    expect(
      sim.peers
        .get("b")
        ?.ring.summary()
        .some((p) => p.peer === "c"),
    ).toBe(false);
    const after = await Promise.all(
      [0, 1].map(async (k) => {
        const pr = (sim.peers.get("a") as MeshIpam).allocate(`z${k}`, 20_000);
        await sim.settle(2);
        return pr;
      }),
    );
    expect(after.every(inC)).toBe(true);
    expect(sim.logs.some((l) => /took over \d+ range\(s\) of c \(rmpeer\)/.test(l))).toBe(true);
  });
});

describe("what a peer may send", () => {
  it("malformed, wrong-range and stale rings and requests are dropped and counted, never thrown", () => {
    const logs: string[] = [];
    const links: IpamLinks = { neighbours: () => ["b"], send: () => true, nextHop: () => "b", reachable: () => ["b"], log: (l) => logs.push(l) };
    const p = new MeshIpam("a", { range: "10.32.0.0/12", seed: ["a"] }, links);
    const good = p.ring.message();
    const before = canon(p.ring);
    const bad: unknown[] = [
      null,
      7,
      "ring",
      { range: "10.32.0.0/12" },
      { range: "10.32.0.0/12", entries: good.entries }, // no seeds
      { range: "10.32.0.0/12", seed: ["a"], entries: [] },
      { range: "10.32.0.0/12", seed: ["a"], entries: [{ token: 1, peer: "b", version: 9, free: 1 }] }, // no token at the start
      { range: "10.32.0.0/12", seed: ["a"], entries: [{ ...good.entries[0], version: 0 }] },
      { range: "10.32.0.0/12", seed: ["a"], entries: [{ ...good.entries[0], peer: "Bad Name" }] },
      { range: "10.32.0.0/12", seed: ["a"], entries: [{ ...good.entries[0], token: 2 ** 33 }] },
      { range: "10.32.0.0/12", seed: ["a"], entries: [{ ...good.entries[0], free: -1 }] },
      { range: "10.32.0.0/12", seed: ["a"], entries: [good.entries[0], good.entries[0]] },
      { range: "10.32.0.0/12", seed: ["a"], entries: new Array(5000).fill(good.entries[0]) },
    ];
    for (const b of bad) p.onRing("b", b);
    p.onRing("b", { range: "10.0.0.0/8", seed: ["a"], entries: good.entries });
    // Seeded differently: b would think it owns the start too.
    p.onRing("b", { range: "10.32.0.0/12", seed: ["b"], entries: good.entries.map((e) => ({ ...e, peer: "b", version: 5 })) });
    p.onRing("b", good);
    for (const b of [null, {}, { from: "b", to: "a" }, { from: "B!", to: "a", ttl: 3 }, { from: "b", to: "a", ttl: "x" }]) p.onRequest("b", b);
    expect(p.counters).toMatchObject({ ringMalformed: bad.length, ringWrongRange: 2, ringStale: 1, ringTaken: 0, requestsMalformed: 5 });
    expect(canon(p.ring)).toBe(before);
    expect(logs.some((l) => l.includes("another ring"))).toBe(true);
  });

  it("5,000 mutated rings: no exception, the ring stays whole (sorted, starting at the range's start)", () => {
    const rand = rng(42);
    const msgs = histories(5);
    const p = new Ring("a", "10.32.0.0/20", ["a"]);
    p.seed();
    const values = [0, -1, 1, 2 ** 31, 2 ** 32, 1.5, Number.NaN, null, "x", {}, [], true, p.start, p.end, p.end - 1];
    let broken = 0;
    for (let k = 0; k < 5_000; k++) {
      const m = JSON.parse(JSON.stringify(msgs[Math.floor(rand() * msgs.length)])) as Record<string, unknown>;
      const es = m.entries as Array<Record<string, unknown>>;
      const e = es[Math.floor(rand() * es.length)];
      const field = ["token", "peer", "version", "free", "range", "seed", "entries"][Math.floor(rand() * 7)];
      const v = values[Math.floor(rand() * values.length)];
      if (field === "range" || field === "seed" || field === "entries") m[field] = v;
      else e[field] = v;
      p.merge(m); // throws: the test fails
      if (p.entries[0].token !== p.start) broken++;
      for (let i = 1; i < p.entries.length; i++) if (p.entries[i].token <= p.entries[i - 1].token) broken++;
    }
    expect(broken).toBe(0);
    expect(p.entries.length).toBeGreaterThan(1);
  });
});
