import { describe, expect, it } from "vitest";
import { Fib } from "../../src/elements/fib.js";

/** Dotted quad -> uint32. */
function ip(s: string): number {
  const [a, b, c, d] = s.split(".").map(Number);
  return ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
}

function maskOf(len: number): number {
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

/** Deterministic PRNG (mulberry32): the same seed gives the same table every run. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The obviously correct reference: a list of routes and a linear scan for the longest match. */
class NaiveFib {
  readonly routes = new Map<number, { prefix: number; len: number; value: number }>();
  private static key(prefix: number, len: number): number {
    return len * 2 ** 32 + prefix;
  }
  add(prefix: number, len: number, value: number): void {
    this.routes.set(NaiveFib.key(prefix, len), { prefix, len, value });
  }
  remove(prefix: number, len: number): boolean {
    return this.routes.delete(NaiveFib.key(prefix, len));
  }
  has(prefix: number, len: number): boolean {
    return this.routes.has(NaiveFib.key(prefix, len));
  }
  lookup(addr: number): number {
    let bestLen = -1;
    let best = -1;
    for (const r of this.routes.values()) {
      if (r.len > bestLen && (addr & maskOf(r.len)) >>> 0 === r.prefix) {
        bestLen = r.len;
        best = r.value;
      }
    }
    return best;
  }
  sorted(): Array<{ prefix: number; prefixLen: number; value: number }> {
    return [...this.routes.values()]
      .map((r) => ({ prefix: r.prefix, prefixLen: r.len, value: r.value }))
      .sort((a, b) => a.prefix - b.prefix || a.prefixLen - b.prefixLen);
  }
}

/** Child tables the trie must hold for this route set: one per /16 with a route longer than /16, one per /24 with a route longer than /24. */
function expectedChunks(routes: Iterable<{ prefix: number; len: number }>): number {
  const l2 = new Set<number>();
  const l3 = new Set<number>();
  for (const r of routes) {
    if (r.len > 16) l2.add(r.prefix >>> 16);
    if (r.len > 24) l3.add(r.prefix >>> 8);
  }
  return l2.size + l3.size;
}

describe("Fib basics", () => {
  // One table, then a list of (address, expected value).
  const table: Array<[string, number, number]> = [
    ["0.0.0.0", 0, 1],
    ["10.0.0.0", 8, 2],
    ["10.1.0.0", 16, 3],
    ["10.1.2.0", 24, 4],
    ["10.1.2.128", 25, 5],
    ["10.1.2.200", 32, 6],
    ["10.1.3.0", 24, 7],
    ["192.168.0.0", 16, 8],
    ["192.168.1.0", 24, 9],
    ["255.255.255.255", 32, 10],
    ["172.16.0.0", 12, 11],
    ["172.16.5.0", 24, 12],
  ];
  const cases: Array<[string, number, string]> = [
    ["0.0.0.0", 1, "default route covers 0.0.0.0"],
    ["1.2.3.4", 1, "default route"],
    ["10.0.0.1", 2, "/8"],
    ["10.255.255.255", 2, "last address of the /8"],
    ["11.0.0.0", 1, "first address after the /8"],
    ["9.255.255.255", 1, "last address before the /8"],
    ["10.1.0.0", 3, "/16"],
    ["10.1.255.255", 3, "last of /16"],
    ["10.2.0.0", 2, "after /16 falls back to /8"],
    ["10.1.2.0", 4, "/24"],
    ["10.1.2.127", 4, "just below the /25"],
    ["10.1.2.128", 5, "first of /25"],
    ["10.1.2.199", 5, "just below the /32"],
    ["10.1.2.200", 6, "/32"],
    ["10.1.2.201", 5, "just above the /32"],
    ["10.1.2.255", 5, "last of /25"],
    ["10.1.3.0", 7, "neighbouring /24"],
    ["10.1.4.0", 3, "after the /24s, the /16"],
    ["192.168.1.77", 9, "/24 in /16"],
    ["192.168.2.1", 8, "/16 outside the /24"],
    ["192.169.0.0", 1, "after the /16"],
    ["255.255.255.255", 10, "broadcast /32"],
    ["255.255.255.254", 1, "next to the /32"],
    ["172.16.5.5", 12, "/24 inside a /12"],
    ["172.31.255.255", 11, "last of the /12"],
    ["172.32.0.0", 1, "after the /12"],
  ];

  const fib = new Fib();
  for (const [p, len, v] of table) fib.add(ip(p), len, v);

  it.each(cases)("lookup %s -> %i (%s)", (addr, want) => {
    expect(fib.lookup(ip(addr))).toBe(want);
  });

  it("answers get() by exact match and size", () => {
    expect(fib.size).toBe(table.length);
    for (const [p, len, v] of table) expect(fib.get(ip(p), len)).toBe(v);
    expect(fib.get(ip("10.1.2.0"), 23)).toBe(-1);
    expect(fib.get(ip("10.1.2.0"), 26)).toBe(-1);
  });

  it("lists entries sorted by prefix then length", () => {
    const e = fib.entries();
    expect(e.length).toBe(table.length);
    for (let i = 1; i < e.length; i++) {
      const a = e[i - 1];
      const b = e[i];
      expect(a.prefix < b.prefix || (a.prefix === b.prefix && a.prefixLen < b.prefixLen)).toBe(true);
    }
    expect(e[0]).toEqual({ prefix: 0, prefixLen: 0, value: 1 });
    expect(e[e.length - 1]).toEqual({ prefix: 0xffffffff, prefixLen: 32, value: 10 });
    expect(e.find((x) => x.prefixLen === 25)).toEqual({ prefix: ip("10.1.2.128"), prefixLen: 25, value: 5 });
  });

  it("returns -1 on an empty table, for 0.0.0.0 and 255.255.255.255 too", () => {
    const f = new Fib();
    expect(f.lookup(0)).toBe(-1);
    expect(f.lookup(0xffffffff)).toBe(-1);
    expect(f.lookup(ip("10.1.2.3"))).toBe(-1);
  });

  it("treats a signed int32 address like its uint32", () => {
    const f = new Fib();
    f.add(ip("255.255.255.0"), 24, 3);
    f.add(ip("128.0.0.0"), 1, 4);
    expect(f.lookup(-1)).toBe(3);
    expect(f.lookup(0x80000000 | 0)).toBe(4);
    f.add(0xffffff80 | 0, 25, 5); // a signed prefix is accepted too
    expect(f.lookup(0xffffffff)).toBe(5);
    expect(f.get(0xffffff80, 25)).toBe(5);
  });

  it("replaces a route's value in place", () => {
    const f = new Fib();
    f.add(ip("10.0.0.0"), 8, 1);
    f.add(ip("10.1.0.0"), 24, 2);
    f.add(ip("10.0.0.0"), 8, 7);
    expect(f.size).toBe(2);
    expect(f.lookup(ip("10.9.9.9"))).toBe(7);
    expect(f.lookup(ip("10.1.0.9"))).toBe(2);
    f.add(ip("10.1.0.0"), 24, 8);
    expect(f.lookup(ip("10.1.0.9"))).toBe(8);
    expect(f.lookup(ip("10.1.1.9"))).toBe(7);
  });

  it("keeps longer routes when a shorter one is added later (into existing child tables)", () => {
    const f = new Fib();
    f.add(ip("10.1.2.0"), 24, 1);
    f.add(ip("10.1.2.64"), 26, 2);
    f.add(ip("10.1.2.65"), 32, 3);
    f.add(ip("10.0.0.0"), 8, 4);
    expect(f.lookup(ip("10.1.2.1"))).toBe(1);
    expect(f.lookup(ip("10.1.2.64"))).toBe(2);
    expect(f.lookup(ip("10.1.2.65"))).toBe(3);
    expect(f.lookup(ip("10.1.3.0"))).toBe(4); // same /16 child table, slot painted by the /8
    expect(f.lookup(ip("10.200.0.0"))).toBe(4);
    f.add(0, 0, 5);
    expect(f.lookup(ip("10.1.2.65"))).toBe(3);
    expect(f.lookup(ip("10.1.2.128"))).toBe(1);
    expect(f.lookup(ip("10.1.3.0"))).toBe(4);
    expect(f.lookup(ip("11.0.0.0"))).toBe(5);
    expect(f.lookup(0xffffffff)).toBe(5);
    expect(f.lookup(0)).toBe(5);
  });

  it("falls back to the next covering route on remove, and never clobbers longer routes", () => {
    const f = new Fib();
    f.add(0, 0, 0);
    f.add(ip("10.0.0.0"), 8, 1);
    f.add(ip("10.1.0.0"), 16, 2);
    f.add(ip("10.1.2.0"), 24, 3);
    f.add(ip("10.1.2.128"), 25, 4);
    f.add(ip("10.1.2.130"), 32, 5);

    expect(f.remove(ip("10.1.2.128"), 25)).toBe(true);
    expect(f.lookup(ip("10.1.2.129"))).toBe(3);
    expect(f.lookup(ip("10.1.2.130"))).toBe(5);

    expect(f.remove(ip("10.1.0.0"), 16)).toBe(true);
    expect(f.lookup(ip("10.1.3.1"))).toBe(1);
    expect(f.lookup(ip("10.1.2.1"))).toBe(3);
    expect(f.lookup(ip("10.1.2.130"))).toBe(5);

    expect(f.remove(ip("10.0.0.0"), 8)).toBe(true);
    expect(f.lookup(ip("10.1.3.1"))).toBe(0);
    expect(f.lookup(ip("10.1.2.1"))).toBe(3);

    expect(f.remove(0, 0)).toBe(true);
    expect(f.lookup(ip("10.1.3.1"))).toBe(-1);
    expect(f.lookup(ip("10.1.2.1"))).toBe(3);
    expect(f.lookup(ip("10.1.2.130"))).toBe(5);

    expect(f.remove(ip("10.1.2.130"), 32)).toBe(true);
    expect(f.lookup(ip("10.1.2.130"))).toBe(3);
    expect(f.remove(ip("10.1.2.0"), 24)).toBe(true);
    expect(f.lookup(ip("10.1.2.130"))).toBe(-1);
    expect(f.size).toBe(0);
  });

  it("returns false when removing an absent route and changes nothing", () => {
    const f = new Fib();
    f.add(ip("10.0.0.0"), 8, 1);
    expect(f.remove(ip("10.0.0.0"), 16)).toBe(false);
    expect(f.remove(ip("11.0.0.0"), 8)).toBe(false);
    expect(f.size).toBe(1);
    expect(f.lookup(ip("10.0.0.1"))).toBe(1);
  });

  it("frees child tables once nothing needs them, and reuses them", () => {
    const f = new Fib();
    f.add(ip("10.0.0.0"), 8, 1);
    f.add(ip("10.1.2.0"), 24, 2);
    f.add(ip("10.1.2.3"), 32, 3);
    expect(f.stats().chunksInUse).toBe(2);
    f.remove(ip("10.1.2.3"), 32);
    expect(f.stats().chunksInUse).toBe(1);
    expect(f.lookup(ip("10.1.2.3"))).toBe(2);
    f.remove(ip("10.1.2.0"), 24);
    expect(f.stats().chunksInUse).toBe(0);
    expect(f.lookup(ip("10.1.2.3"))).toBe(1);
    const cap = f.stats().chunkCapacity;
    for (let i = 0; i < 1000; i++) {
      f.add(ip("10.1.2.3"), 32, i);
      f.remove(ip("10.1.2.3"), 32);
    }
    expect(f.stats().chunkCapacity).toBe(cap);
    expect(f.lookup(ip("10.1.2.3"))).toBe(1);
  });

  it("clear() empties the table", () => {
    const f = new Fib();
    f.add(0, 0, 1);
    f.add(ip("10.1.2.3"), 32, 2);
    f.clear();
    expect(f.size).toBe(0);
    expect(f.lookup(ip("10.1.2.3"))).toBe(-1);
    expect(f.lookup(0)).toBe(-1);
    expect(f.entries()).toEqual([]);
    expect(f.stats().chunksInUse).toBe(0);
    f.add(ip("10.1.2.3"), 32, 4);
    expect(f.lookup(ip("10.1.2.3"))).toBe(4);
  });

  it.each<[string, () => void, RegExp]>([
    ["host bits set", () => new Fib().add(ip("10.0.0.1"), 8, 1), /host bits set.*10\.0\.0\.0\/8/],
    ["host bits set in /0", () => new Fib().add(1, 0, 1), /host bits/],
    ["host bits set on remove", () => new Fib().remove(ip("10.1.0.0"), 8), /host bits/],
    ["length 33", () => new Fib().add(ip("10.0.0.0"), 33, 1), /prefix length must be an integer in 0\.\.32, got 33/],
    ["length -1", () => new Fib().add(0, -1, 1), /prefix length/],
    ["fractional length", () => new Fib().add(0, 8.5, 1), /prefix length/],
    ["negative value", () => new Fib().add(ip("10.0.0.0"), 8, -1), /value must be/],
    ["value beyond int32", () => new Fib().add(ip("10.0.0.0"), 8, 2 ** 31), /value must be/],
    ["prefix beyond 32 bits", () => new Fib().add(2 ** 32, 32, 1), /32-bit integer/],
    ["NaN prefix", () => new Fib().get(NaN, 32), /32-bit integer/],
  ])("throws on %s", (_name, fn, msg) => {
    expect(fn).toThrow(msg);
  });

  it("throws when the table is full, but still replaces existing routes", () => {
    const f = new Fib({ maxRoutes: 2 });
    f.add(ip("10.0.0.0"), 8, 1);
    f.add(ip("10.1.2.3"), 32, 2);
    expect(() => f.add(ip("10.1.2.4"), 32, 3)).toThrow(/table full \(2 routes\)/);
    expect(f.size).toBe(2);
    expect(f.lookup(ip("10.1.2.4"))).toBe(1);
    expect(f.stats().chunksInUse).toBe(2);
    f.add(ip("10.1.2.3"), 32, 9);
    expect(f.lookup(ip("10.1.2.3"))).toBe(9);
  });

  it("grows the pool past its first allocation without losing slots", () => {
    const f = new Fib();
    // 500 /25s in distinct /16s: 1000 child tables, several pool growths.
    for (let i = 0; i < 500; i++) f.add(((i << 16) | 0x0180) >>> 0, 25, i);
    expect(f.stats().chunksInUse).toBe(1000);
    for (let i = 0; i < 500; i++) {
      expect(f.lookup(((i << 16) | 0x0181) >>> 0)).toBe(i);
      expect(f.lookup(((i << 16) | 0x017f) >>> 0)).toBe(-1);
    }
  });
});

describe("Fib differential test against a linear-scan reference", () => {
  const clusters = [
    ip("0.0.0.0"),
    ip("10.0.0.0"),
    ip("10.1.0.0"),
    ip("10.255.255.0"),
    ip("172.16.0.0"),
    ip("192.168.0.0"),
    ip("255.255.0.0"),
    ip("127.255.255.0"), // straddles 127/128 at every level
  ];

  function run(seed: number, shortBias: number): void {
    const r = rng(seed);
    const int = (n: number) => Math.floor(r() * n);
    const fib = new Fib();
    const ref = new NaiveFib();

    const randomLen = (): number => {
      const x = r();
      if (x < shortBias) return int(9); // 0..8: rare, wide, cover everything
      if (x < 0.35) return 9 + int(8); // 9..16
      if (x < 0.7) return 17 + int(8); // 17..24
      return 25 + int(8); // 25..32
    };
    // An address near a cluster: random low bits of varying width so prefixes overlap a lot.
    const nearCluster = (): number => {
      const c = clusters[int(clusters.length)];
      const spread = [4, 8, 12, 18, 24][int(5)];
      const off = int(2 ** spread) - (r() < 0.3 ? int(2 ** spread) : 0);
      return (c + off) >>> 0;
    };
    const randomRoute = (): [number, number] => {
      const len = randomLen();
      return [(nearCluster() & maskOf(len)) >>> 0, len];
    };
    const pickExisting = (): { prefix: number; len: number } | undefined => {
      const n = ref.routes.size;
      if (n === 0) return undefined;
      // Map iteration order is insertion order; a random index is good enough.
      let i = int(n);
      for (const v of ref.routes.values()) if (i-- === 0) return v;
      return undefined;
    };

    const check = (addr: number): void => {
      const a = addr >>> 0;
      const want = ref.lookup(a);
      const got = fib.lookup(a);
      if (got !== want) {
        throw new Error(`seed ${seed}: lookup ${a.toString(16)} = ${got}, reference ${want}`);
      }
    };

    let checked = 0;
    for (let batch = 0; batch < 120; batch++) {
      // Grow for the first half, shrink for the second, so both directions get exercised at size.
      const addBias = batch < 60 ? 0.65 : 0.3;
      for (let op = 0; op < 40; op++) {
        const x = r();
        if (x < addBias) {
          const [p, len] = randomRoute();
          const v = int(1 << 20);
          fib.add(p, len, v);
          ref.add(p, len, v);
        } else if (x < addBias + 0.1) {
          const e = pickExisting();
          if (e) {
            const v = int(1 << 20);
            fib.add(e.prefix, e.len, v);
            ref.add(e.prefix, e.len, v);
          }
        } else if (x < 0.95) {
          const e = pickExisting();
          if (e) expect(fib.remove(e.prefix, e.len)).toBe(ref.remove(e.prefix, e.len));
        } else {
          const [p, len] = randomRoute();
          expect(fib.remove(p, len)).toBe(ref.remove(p, len));
        }
      }

      expect(fib.size).toBe(ref.routes.size);
      expect(fib.stats().chunksInUse).toBe(expectedChunks(ref.routes.values()));
      // Range edges of every route: first, last, and one either side.
      for (const rt of ref.routes.values()) {
        const last = (rt.prefix + (2 ** (32 - rt.len) - 1)) >>> 0;
        check(rt.prefix);
        check(last);
        check(rt.prefix - 1);
        check(last + 1);
        check(rt.prefix + int(2 ** (32 - rt.len)));
        if (fib.get(rt.prefix, rt.len) !== rt.value) throw new Error(`seed ${seed}: get ${rt.prefix.toString(16)}/${rt.len}`);
        checked += 5;
      }
      for (let i = 0; i < 1000; i++) check(nearCluster());
      for (let i = 0; i < 200; i++) check(int(2 ** 32));
      check(0);
      check(0xffffffff);
      checked += 1202;
      if (batch % 10 === 9) expect(fib.entries()).toEqual(ref.sorted());
    }

    // Drain: everything removed, nothing left behind in the trie.
    for (const rt of [...ref.routes.values()]) {
      expect(fib.remove(rt.prefix, rt.len)).toBe(true);
      ref.remove(rt.prefix, rt.len);
      check(rt.prefix);
    }
    expect(fib.size).toBe(0);
    expect(fib.stats().chunksInUse).toBe(0);
    for (let i = 0; i < 1000; i++) check(nearCluster());
    expect(checked).toBeGreaterThan(100_000);
  }

  it("agrees with the reference (seed 1, few short prefixes)", () => run(1, 0.03));
  it("agrees with the reference (seed 2, many short prefixes incl. /0)", () => run(2, 0.15));
  it("agrees with the reference (seed 3)", () => run(3, 0.06));
});

describe("Fib at scale", () => {
  it("loads 1,000,000 random routes in bounded memory and answers like a per-length Map reference", () => {
    const r = rng(42);
    const fib = new Fib();
    // A real table's shape: mostly /24, some /16-/23, a few /8-/15 and /25-/32.
    const lens: number[] = [];
    const cdf: Array<[number, number]> = [
      [0.6, 24],
      [0.7, 23],
      [0.82, 22],
      [0.87, 21],
      [0.91, 20],
      [0.935, 19],
      [0.95, 18],
      [0.96, 17],
      [0.975, 16],
      [0.98, -1],
      [1, -2],
    ];
    const pickLen = (): number => {
      const x = r();
      for (const [p, len] of cdf) {
        if (x < p) {
          if (len === -1) return 8 + Math.floor(r() * 8); // 8..15
          if (len === -2) return 25 + Math.floor(r() * 8); // 25..32
          return len;
        }
      }
      return 24;
    };
    const N = 1_000_000;
    const byLen: Array<Map<number, number>> = Array.from({ length: 33 }, () => new Map());
    for (let i = 0; i < N; i++) {
      const len = pickLen();
      lens.push(len);
      const p = (Math.floor(r() * 2 ** 32) & maskOf(len)) >>> 0;
      fib.add(p, len, i);
      byLen[len].set(p, i);
    }
    let distinct = 0;
    let longer24 = 0;
    const routes: Array<{ prefix: number; len: number }> = [];
    for (let len = 0; len <= 32; len++) {
      distinct += byLen[len].size;
      if (len > 24) longer24 += byLen[len].size;
      for (const p of byLen[len].keys()) routes.push({ prefix: p, len });
    }
    expect(fib.size).toBe(distinct);

    const s = fib.stats();
    // Exactly one child table per /16 holding a route longer than /16 and per /24 holding one longer than /24.
    expect(s.chunksInUse).toBe(expectedChunks(routes));
    // Which is at most every /16 plus one per route longer than /24, whatever the addresses.
    expect(s.chunksInUse).toBeLessThanOrEqual(65536 + longer24);
    // Growth by 1.5x wastes at most a third of the pool.
    expect(s.chunkCapacity).toBeLessThanOrEqual(Math.ceil(s.chunksInUse * 1.5) + 64);
    const bound = 65536 * 5 + s.chunkCapacity * (256 * 5 + 4);
    expect(s.trieBytes).toBeLessThanOrEqual(bound);
    // In absolute terms (this mix: ~65.5k + ~20k tables, 1,284 bytes each): well under DIR-24-8's 64 MiB tbl24 plus its tbl8s.
    expect(s.trieBytes).toBeLessThan(200 * 2 ** 20);

    // Spot-check lookups against the obvious per-length Map reference.
    const present = [];
    for (let len = 32; len >= 0; len--) if (byLen[len].size) present.push(len);
    for (let i = 0; i < 20_000; i++) {
      const a = Math.floor(r() * 2 ** 32);
      let want = -1;
      for (const len of present) {
        const v = byLen[len].get((a & maskOf(len)) >>> 0);
        if (v !== undefined) {
          want = v;
          break;
        }
      }
      expect(fib.lookup(a)).toBe(want);
    }
  });
});

describe("Fib.walk (show route, paused between event-loop turns)", () => {
  /** Random routes clustered so that every trie level is used, /0 and /32 included. */
  function randomRoutes(seed: number, n: number): Array<[number, number]> {
    const r = rng(seed);
    const bases = [0, ip("10.0.0.0"), ip("10.1.2.0"), ip("192.168.255.0"), ip("255.255.255.0"), ip("127.255.255.0")];
    const out: Array<[number, number]> = [[0, 0]];
    for (let i = 0; i < n; i++) {
      const len = Math.floor(r() * 33);
      const base = bases[Math.floor(r() * bases.length)];
      const addr = (base + Math.floor(r() * 65536 * (r() < 0.3 ? 65536 : 1))) >>> 0;
      out.push([(addr & maskOf(len)) >>> 0, len]);
    }
    out.push([0xffffffff, 32]);
    return out;
  }

  it("gives entries() exactly, in the same order", () => {
    for (const seed of [1, 2, 3]) {
      const fib = new Fib();
      randomRoutes(seed, 3000).forEach(([p, l], i) => fib.add(p, l, i));
      const walked = [...fib.walk()].filter((e) => e !== null);
      expect(walked).toEqual(fib.entries());
    }
    expect([...new Fib().walk()].filter((e) => e !== null)).toEqual([]);
  });

  it("pauses often (null steps) and lists routes present throughout once, in order, while others come and go", () => {
    const fib = new Fib();
    const stable = randomRoutes(4, 1500);
    stable.forEach(([p, l], i) => fib.add(p, l, i));
    const key = (p: number, l: number): string => `${p}/${l}`;
    const stableKeys = new Set(stable.map(([p, l]) => key(p, l)));
    const extra = randomRoutes(5, 1500).filter(([p, l]) => !stableKeys.has(key(p, l)));
    let k = 0;
    let pauses = 0;
    const seen: Array<{ prefix: number; prefixLen: number }> = [];
    for (const e of fib.walk()) {
      if (e === null) pauses++;
      else seen.push(e);
      // Between steps: add a route not in the stable set, or remove one added before.
      const [p, l] = extra[k % extra.length];
      if (Math.floor(k / extra.length) % 2 === 0) fib.add(p, l, 99999);
      else fib.remove(p, l);
      k++;
    }
    expect(pauses).toBeGreaterThan(100);
    const counts = new Map<string, number>();
    for (const e of seen) counts.set(key(e.prefix, e.prefixLen), (counts.get(key(e.prefix, e.prefixLen)) ?? 0) + 1);
    for (const s of stableKeys) expect(counts.get(s), s).toBe(1);
    for (const [s, n] of counts) expect(n, s).toBe(1);
    for (let i = 1; i < seen.length; i++) {
      const a = seen[i - 1];
      const b = seen[i];
      expect(a.prefix < b.prefix || (a.prefix === b.prefix && a.prefixLen < b.prefixLen)).toBe(true);
    }
  });
});
