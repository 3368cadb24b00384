import { describe, expect, it } from "vitest";
import { Engine } from "../../src/core/engine.js";
import { FdbTable } from "../../src/elements/fdb-table.js";
import { LearningSwitch } from "../../src/elements/learning-switch.js";
import { MemoryPort } from "../../src/io/memory-port.js";

const TWO32 = 2 ** 32;
const hi16 = (mac: number): number => Math.floor(mac / TWO32);
const lo32 = (mac: number): number => mac % TWO32;

/** A repeatable generator (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / TWO32;
  };
}

function insertMac(t: FdbTable, vlan: number, mac: number, port: number, now = 1, isStatic = false): number {
  return t.insert(vlan, hi16(mac), lo32(mac), port, now, isStatic);
}

/** Every used slot's key is reachable from its home: find() gives that very slot. */
function checkAllFindable(t: FdbTable): number {
  let n = 0;
  for (let i = 0; i < t.capacity; i++) {
    if (!t.isUsed(i)) continue;
    n++;
    expect(t.findMac(t.vlan(i), t.mac(i))).toBe(i);
  }
  return n;
}

describe("FdbTable", () => {
  it("inserts, finds by halves and by 48-bit number, reads and updates values", () => {
    const t = new FdbTable(100, { seed: 1 });
    const mac = 0x0200deadbeef;
    expect(t.findMac(1, mac)).toBe(-1);
    const s = insertMac(t, 1, mac, 3, 1234.5);
    expect(s).toBeGreaterThanOrEqual(0);
    expect(t.find(1, 0x0200, 0xdeadbeef)).toBe(s);
    expect(t.findMac(1, mac)).toBe(s);
    expect(t.size).toBe(1);
    expect([t.port(s), t.lastSeen(s), t.isStatic(s), t.vlan(s), t.mac(s)]).toEqual([3, 1234.5, false, 1, mac]);
    t.setPort(s, 7);
    t.touch(s, 99);
    expect([t.port(s), t.lastSeen(s)]).toEqual([7, 99]);
    // Inserting an existing key overwrites, does not add.
    expect(insertMac(t, 1, mac, 5, 7, true)).toBe(s);
    expect(t.size).toBe(1);
    expect([t.port(s), t.lastSeen(s), t.isStatic(s)]).toEqual([5, 7, true]);
    t.removeSlot(s);
    expect(t.findMac(1, mac)).toBe(-1);
    expect(t.size).toBe(0);
  });

  it("the same MAC on different VLANs is a different key", () => {
    const t = new FdbTable(100, { seed: 2 });
    const mac = 0x020000000001;
    const a = insertMac(t, 1, mac, 1);
    const b = insertMac(t, 2, mac, 2);
    const c = insertMac(t, 4094, mac, 3);
    expect(new Set([a, b, c]).size).toBe(3);
    expect(t.size).toBe(3);
    expect(t.port(t.findMac(1, mac))).toBe(1);
    expect(t.port(t.findMac(2, mac))).toBe(2);
    expect(t.port(t.findMac(4094, mac))).toBe(3);
    expect(t.findMac(3, mac)).toBe(-1);
    t.removeSlot(t.findMac(2, mac));
    expect(t.findMac(2, mac)).toBe(-1);
    expect(t.port(t.findMac(1, mac))).toBe(1);
    expect(t.port(t.findMac(4094, mac))).toBe(3);
  });

  it("edge keys: MAC ff:ff:ff:ff:ff:ff, MAC 0, VLAN 0 and 4095", () => {
    const t = new FdbTable(100, { seed: 3 });
    const keys: Array<[number, number]> = [
      [0, 0],
      [0, 0xffffffffffff],
      [4095, 0xffffffffffff],
      [4095, 0],
      [1, 0xffff00000000],
      [1, 0x0000ffffffff],
      [1, 0x800000000000],
      [1, 0x000080000000],
    ];
    keys.forEach(([v, m], i) => expect(insertMac(t, v, m, i)).toBeGreaterThanOrEqual(0));
    expect(t.size).toBe(keys.length);
    keys.forEach(([v, m], i) => {
      const s = t.findMac(v, m);
      expect(s, `${v} ${m.toString(16)}`).toBeGreaterThanOrEqual(0);
      expect([t.port(s), t.vlan(s), t.mac(s)]).toEqual([i, v, m]);
    });
    expect(t.find(4095, 0xffff, 0xffffffff)).toBe(t.findMac(4095, 0xffffffffffff));
    expect(t.entries().map((e) => [e.vlan, e.mac])).toEqual([...keys].sort((a, b) => a[0] - b[0] || a[1] - b[1]));
  });

  it("collisions: many keys in a small table, all findable; removals keep the rest findable", () => {
    // 500 keys in 1024 slots (load ~0.49, maxEntries 512: no growth): long probe runs.
    const t = new FdbTable(512, { seed: 4 });
    expect(t.capacity).toBe(1024);
    const macs = Array.from({ length: 500 }, (_, i) => 0x020000000000 + i * 1024); // differ only above bit 10
    for (const [i, m] of macs.entries()) expect(insertMac(t, 1, m, i)).toBeGreaterThanOrEqual(0);
    expect(t.capacity).toBe(1024);
    // Some keys must have landed away from their home slot for this test to mean anything.
    let displaced = 0;
    for (const m of macs) {
      const s = t.findMac(1, m);
      const probe = new FdbTable(512, { seed: 4 });
      if (insertMac(probe, 1, m, 0) !== s) displaced++;
    }
    expect(displaced).toBeGreaterThan(50);
    expect(checkAllFindable(t)).toBe(500);
    for (let i = 0; i < macs.length; i += 2) t.removeSlot(t.findMac(1, macs[i]));
    expect(t.size).toBe(250);
    for (const [i, m] of macs.entries()) {
      const s = t.findMac(1, m);
      if (i % 2 === 0) expect(s).toBe(-1);
      else expect(t.port(s)).toBe(i);
    }
    expect(checkAllFindable(t)).toBe(250);
  });

  it("backward-shift deletion across the end of the array (a probe run that wraps to slot 0)", () => {
    const seed = 21;
    const home = (m: number): number => insertMac(new FdbTable(512, { seed }), 1, m, 0); // slot in an empty table
    // Keys whose home is one of the last 3 slots or the first 3, several per home.
    const byHome = new Map<number, number[]>();
    for (let i = 0; byHome.size < 6 || [...byHome.values()].some((v) => v.length < 2); i++) {
      const m = 0x020000000000 + i;
      const h = home(m);
      if (h >= 1021 || h <= 2) {
        const v = byHome.get(h) ?? [];
        if (v.length < 2) v.push(m);
        byHome.set(h, v);
      }
    }
    const macs = [...byHome.entries()].sort((x, y) => ((x[0] + 512) % 1024) - ((y[0] + 512) % 1024)).flatMap(([, v]) => v);
    const r = rng(seed);
    for (let round = 0; round < 200; round++) {
      const t = new FdbTable(512, { seed });
      for (const [i, m] of macs.entries()) insertMac(t, 1, m, i);
      // One run from slot 1021 across 1023 into the first slots.
      expect(t.findMac(1, macs[0])).toBe(1021);
      expect(t.isUsed(0) && t.isUsed(1023)).toBe(true);
      const order = [...macs.keys()].sort(() => r() - 0.5);
      const gone = new Set<number>();
      for (const k of order.slice(0, 1 + Math.floor(r() * (macs.length - 1)))) {
        t.removeSlot(t.findMac(1, macs[k]));
        gone.add(k);
        for (const [i, m] of macs.entries()) {
          const s = t.findMac(1, m);
          if (gone.has(i)) expect(s).toBe(-1);
          else expect(t.port(s), `round ${round}: key ${i} after removing ${[...gone]}`).toBe(i);
        }
      }
      expect(checkAllFindable(t)).toBe(macs.length - gone.size);
    }
  });

  it("backward-shift deletion: random inserts, updates and deletes agree with a Map", () => {
    for (const seed of [11, 12, 13]) {
      const r = rng(seed);
      const t = new FdbTable(3000, { seed });
      const model = new Map<string, { vlan: number; mac: number; port: number; lastSeen: number }>();
      const live: string[] = [];
      // A small key space, so inserts hit existing keys and deletes hit present ones.
      const key = (): [number, number] => [1 + Math.floor(r() * 3), 0x020000000000 + Math.floor(r() * 4000) * 0x10001];
      for (let op = 0; op < 20_000; op++) {
        const x = r();
        if (x < 0.55) {
          const [v, m] = key();
          const k = `${v}/${m}`;
          const port = Math.floor(r() * 64);
          const s = insertMac(t, v, m, port, op);
          if (model.size >= 3000 && !model.has(k)) {
            expect(s).toBe(-1);
            continue;
          }
          expect(s).toBeGreaterThanOrEqual(0);
          if (!model.has(k)) live.push(k);
          model.set(k, { vlan: v, mac: m, port, lastSeen: op });
        } else if (x < 0.9 && live.length > 0) {
          const at = Math.floor(r() * live.length);
          const k = live[at];
          live[at] = live[live.length - 1];
          live.pop();
          const e = model.get(k)!;
          model.delete(k);
          const s = t.findMac(e.vlan, e.mac);
          expect(s).toBeGreaterThanOrEqual(0);
          t.removeSlot(s);
        } else {
          const [v, m] = key();
          const e = model.get(`${v}/${m}`);
          const s = t.findMac(v, m);
          if (e === undefined) expect(s).toBe(-1);
          else expect([t.port(s), t.lastSeen(s)]).toEqual([e.port, e.lastSeen]);
        }
        expect(t.size).toBe(model.size);
        if (op % 2000 === 1999) {
          for (const e of model.values()) {
            const s = t.findMac(e.vlan, e.mac);
            expect(s).toBeGreaterThanOrEqual(0);
            expect(t.port(s)).toBe(e.port);
          }
          expect(checkAllFindable(t)).toBe(model.size);
        }
      }
      const want = [...model.values()].sort((a, b) => a.vlan - b.vlan || a.mac - b.mac);
      expect(t.entries()).toEqual(want.map((e) => ({ ...e, isStatic: false })));
    }
  });

  it("grows by doubling, keeps every entry, and stops at the capacity for maxEntries", () => {
    const t = new FdbTable(5000, { seed: 5 });
    expect(t.capacity).toBe(1024);
    expect(t.maxCapacity).toBe(16384);
    const caps = new Set<number>();
    for (let i = 0; i < 5000; i++) {
      expect(insertMac(t, 1 + (i % 7), 0x020000000000 + i * 7919, i % 100, i, i % 10 === 0)).toBeGreaterThanOrEqual(0);
      caps.add(t.capacity);
      expect(t.size * 2).toBeLessThanOrEqual(t.capacity);
    }
    expect([...caps]).toEqual([1024, 2048, 4096, 8192, 16384]);
    for (let i = 0; i < 5000; i++) {
      const s = t.findMac(1 + (i % 7), 0x020000000000 + i * 7919);
      expect([t.port(s), t.lastSeen(s), t.isStatic(s)]).toEqual([i % 100, i, i % 10 === 0]);
    }
    expect(checkAllFindable(t)).toBe(5000);
  });

  it("full at maxEntries: new keys give -1, existing ones still update, a removal makes room", () => {
    const t = new FdbTable(10, { seed: 6 });
    for (let i = 0; i < 10; i++) expect(insertMac(t, 1, 0x020000000000 + i, i)).toBeGreaterThanOrEqual(0);
    expect(insertMac(t, 1, 0x0200000000ff, 1)).toBe(-1);
    expect(insertMac(t, 2, 0x020000000000, 1)).toBe(-1);
    expect(t.size).toBe(10);
    const s = insertMac(t, 1, 0x020000000003, 42);
    expect(t.port(s)).toBe(42);
    t.removeSlot(t.findMac(1, 0x020000000005));
    expect(insertMac(t, 1, 0x0200000000ff, 1)).toBeGreaterThanOrEqual(0);
    expect(t.size).toBe(10);
    expect(t.capacity).toBe(1024); // never beyond what maxEntries needs (1024 is the floor)
  });

  it("static flags survive growth and removals; clear(dynamicOnly) keeps them", () => {
    const t = new FdbTable(2000, { seed: 7 });
    for (let i = 0; i < 1500; i++) insertMac(t, 1, 0x020000000000 + i, i % 4, i, i % 3 === 0);
    expect(t.size).toBe(1500);
    expect(t.clear(true)).toBe(1000);
    expect(t.size).toBe(500);
    for (let i = 0; i < 1500; i++) {
      const s = t.findMac(1, 0x020000000000 + i);
      if (i % 3 === 0) expect(t.isStatic(s)).toBe(true);
      else expect(s).toBe(-1);
    }
    expect(checkAllFindable(t)).toBe(500);
    t.setStatic(t.findMac(1, 0x020000000000), false);
    expect(t.isStatic(t.findMac(1, 0x020000000000))).toBe(false);
    expect(t.clear()).toBe(500);
    expect(t.size).toBe(0);
    expect(t.entries()).toEqual([]);
    expect(t.findMac(1, 0x020000000003)).toBe(-1);
  });

  it("different seeds place keys differently, and find works with any", () => {
    const a = new FdbTable(100, { seed: 1 });
    const b = new FdbTable(100, { seed: 2 });
    const c = new FdbTable(100); // random seed
    const slotsA: number[] = [];
    const slotsB: number[] = [];
    for (let i = 0; i < 50; i++) {
      slotsA.push(insertMac(a, 1, 0x020000000000 + i, i));
      slotsB.push(insertMac(b, 1, 0x020000000000 + i, i));
      insertMac(c, 1, 0x020000000000 + i, i);
    }
    expect(slotsA).not.toEqual(slotsB);
    for (let i = 0; i < 50; i++) expect(c.port(c.findMac(1, 0x020000000000 + i))).toBe(i);
  });

  it("rejects a maxEntries it cannot hold", () => {
    expect(() => new FdbTable(0)).toThrow(RangeError);
    expect(() => new FdbTable(1.5)).toThrow(RangeError);
    expect(() => new FdbTable(2 ** 27)).toThrow(RangeError);
  });
});

describe("FdbTable eviction (evictLru) and per-port counts", () => {
  const M = 0x020000000000;

  it("takes the least recently seen entry of the port with the most dynamic entries", () => {
    const t = new FdbTable(100, { seed: 31 });
    // Port 1: 3 entries; port 2: 5 entries (seen at 50..54); port 3: 10 statics (seen at 0).
    for (let i = 0; i < 3; i++) insertMac(t, 1, M + 0x100 + i, 1, 10 + i);
    for (let i = 0; i < 5; i++) insertMac(t, 1, M + 0x200 + i, 2, 54 - i); // 0x204 is the oldest
    for (let i = 0; i < 10; i++) insertMac(t, 1, M + 0x300 + i, 3, 0, true);
    expect([t.portEntries(1), t.portEntries(2), t.portEntries(3), t.dynamicSize, t.size]).toEqual([3, 5, 0, 8, 18]);
    expect(t.evictLru()).toBe(2);
    expect(t.findMac(1, M + 0x204)).toBe(-1);
    expect([t.portEntries(2), t.dynamicSize, t.size]).toEqual([4, 7, 17]);
    // The next oldest on port 2 (0x203, seen at 51) is seen again: 0x202 goes instead.
    t.touch(t.findMac(1, M + 0x203), 100);
    expect(t.evictLru()).toBe(2);
    expect(t.findMac(1, M + 0x202)).toBe(-1);
    expect(t.findMac(1, M + 0x203)).toBeGreaterThanOrEqual(0);
    // Port 2 is down to 3, as many as port 1: the tie goes to the lower port number,
    // whose oldest (0x100, seen at 10) goes.
    expect(t.evictLru()).toBe(1);
    expect(t.findMac(1, M + 0x100)).toBe(-1);
    // Port 2 (3) now holds more than port 1 (2); its oldest left is 0x201 (seen at 53).
    expect(t.evictLru()).toBe(2);
    expect(t.findMac(1, M + 0x201)).toBe(-1);
    // A station that moves keeps its count right: 0x200 (port 2) moves to port 1 when seen.
    const s = t.findMac(1, M + 0x200);
    t.touch(s, 101);
    t.setPort(s, 1);
    expect([t.portEntries(1), t.portEntries(2)]).toEqual([3, 1]);
    // Port 1's oldest now is 0x101 (seen at 11); the moved one is the newest there.
    expect(t.evictLru()).toBe(1);
    expect(t.findMac(1, M + 0x101)).toBe(-1);
    expect(t.findMac(1, M + 0x200)).toBeGreaterThanOrEqual(0);
    // Statics are never taken: after the dynamic ones, nothing.
    while (t.dynamicSize > 0) expect(t.evictLru()).toBeGreaterThan(0);
    expect(t.evictLru()).toBe(-1);
    expect([t.size, t.dynamicSize]).toEqual([10, 0]);
    for (let i = 0; i < 10; i++) expect(t.isStatic(t.findMac(1, M + 0x300 + i))).toBe(true);
  });

  it("a table of statics only gives -1; a static over a dynamic entry stops counting it", () => {
    const t = new FdbTable(20, { seed: 32 });
    for (let i = 0; i < 20; i++) insertMac(t, 1, M + i, i % 3, 0, true);
    expect(t.evictLru()).toBe(-1);
    expect(t.size).toBe(20);
    t.removeSlot(t.findMac(1, M + 19));
    insertMac(t, 1, M + 100, 4, 5);
    expect([t.portEntries(4), t.dynamicSize]).toEqual([1, 1]);
    insertMac(t, 1, M + 100, 4, 6, true); // made static: no longer dynamic
    expect([t.portEntries(4), t.dynamicSize]).toEqual([0, 0]);
    expect(t.evictLru()).toBe(-1);
    t.setStatic(t.findMac(1, M + 100), false);
    expect([t.portEntries(4), t.dynamicSize]).toEqual([1, 1]);
    expect(t.evictLru()).toBe(4);
    expect(t.size).toBe(19);
  });

  it("a port's candidate list survives growth and backward shifts (it holds keys, not slots)", () => {
    // 600 entries on port 0 (seen at i), 100 on port 1; evict some, then grow the table
    // and remove entries so that others shift; the next evictions are still port 0's oldest.
    const t = new FdbTable(4000, { seed: 33, initialCapacity: 1024 });
    for (let i = 0; i < 600; i++) insertMac(t, 1, M + i * 0x10001, 0, i);
    for (let i = 0; i < 100; i++) insertMac(t, 2, M + i * 0x10001, 1, 1000 + i);
    expect(t.evictLru()).toBe(0); // builds port 0's list
    expect(t.findMac(1, M)).toBe(-1);
    const cap = t.capacity;
    for (let i = 0; i < 1500; i++) insertMac(t, 3, M + i * 0x10001, 1, 2000 + i);
    expect(t.capacity).toBeGreaterThan(cap);
    for (let i = 0; i < 1500; i += 3) t.removeSlot(t.findMac(3, M + i * 0x10001));
    expect(t.portEntries(1)).toBe(1100);
    // Port 1 is the biggest now: its oldest, on VLAN 2, go first.
    for (let k = 0; k < 500; k++) expect(t.evictLru()).toBe(1);
    for (let i = 0; i < 100; i++) expect(t.findMac(2, M + i * 0x10001)).toBe(-1);
    expect([t.portEntries(0), t.portEntries(1)]).toEqual([599, 600]);
    expect(t.evictLru()).toBe(1);
    // Equal at 599: port 0's next oldest (i = 1, 2, …).
    for (let i = 1; i <= 3; i++) {
      expect(t.evictLru()).toBe(0);
      expect(t.findMac(1, M + i * 0x10001)).toBe(-1);
      expect(t.findMac(1, M + (i + 1) * 0x10001)).toBeGreaterThanOrEqual(0);
      expect(t.evictLru()).toBe(1);
    }
    expect(checkAllFindable(t)).toBe(t.size);
  });

  it("orders by lastSeen over long spans too (radix keys in coarser units), and across ports' lists", () => {
    // 1000 entries of port 0 seen at k * 1000 ms (k shuffled) and one at 5e8 ms: the span
    // needs units of 120 ms for the sort keys, still finer than the spacing.
    const t = new FdbTable(2000, { seed: 34 });
    const r = rng(34);
    const ks = Array.from({ length: 1000 }, (_, k) => k).sort(() => r() - 0.5);
    for (const k of ks) insertMac(t, 1, M + k * 0x10001, 0, k * 1000 + 0.5);
    insertMac(t, 1, M + 0xabcdef, 0, 5e8);
    for (let k = 0; k < 1000; k++) {
      expect(t.evictLru()).toBe(0);
      expect(t.findMac(1, M + k * 0x10001), `k = ${k}`).toBe(-1);
      if (k < 999) expect(t.findMac(1, M + (k + 1) * 0x10001)).toBeGreaterThanOrEqual(0);
    }
    expect(t.evictLru()).toBe(0);
    expect(t.size).toBe(0);
  });

  it("randomized against a reference model: counts per port, and what evictLru takes", () => {
    interface E {
      vlan: number;
      mac: number;
      port: number;
      lastSeen: number;
      isStatic: boolean;
    }
    const MAX = 400;
    let evictions = 0;
    let fullEvictions = 0;
    let resizes = 0;
    for (const seed of [41, 42, 43, 44]) {
      const r = rng(seed);
      // Start tiny: the table grows (rehash) many times along the way.
      const t = new FdbTable(MAX, { seed, initialCapacity: 2 });
      const model = new Map<string, E>();
      const keyOf = (vlan: number, mac: number): string => `${vlan}/${mac}`;
      const keys = (): E[] => [...model.values()];
      const pick = (): E | undefined => {
        const all = keys();
        return all.length === 0 ? undefined : all[Math.floor(r() * all.length)];
      };
      // Port 0 learns most (a flooding port); 9 ports in all, one of them 40000.
      const randPort = (): number => (r() < 0.5 ? 0 : r() < 0.9 ? 1 + Math.floor(r() * 7) : 40000);
      let lastCap = t.capacity;
      for (let now = 1; now <= 12_000; now++) {
        const x = r();
        if (x < 0.55) {
          // Learn (a small key space: some are already there and are refreshed instead).
          const vlan = 1 + Math.floor(r() * 2);
          const mac = M + Math.floor(r() * 1000) * 0x10001;
          const e = model.get(keyOf(vlan, mac));
          const s = t.findMac(vlan, mac);
          if (e !== undefined) {
            expect(s).toBeGreaterThanOrEqual(0);
            if (!e.isStatic) {
              const port = r() < 0.8 ? e.port : randPort();
              t.touch(s, now);
              if (port !== e.port) t.setPort(s, port);
              e.port = port;
              e.lastSeen = now;
            }
            continue;
          }
          expect(s).toBe(-1);
          const isStatic = r() < 0.05;
          const port = randPort();
          if (model.size >= MAX) {
            // Full: take the model's answer and compare.
            const dyn = keys().filter((k) => !k.isStatic);
            if (dyn.length === 0) {
              expect(t.evictLru()).toBe(-1);
              continue;
            }
            const counts = new Map<number, number>();
            for (const k of dyn) counts.set(k.port, (counts.get(k.port) ?? 0) + 1);
            const most = Math.max(...counts.values());
            const victimPort = Math.min(...[...counts].filter(([, n]) => n === most).map(([p]) => p));
            const oldest = Math.min(...dyn.filter((k) => k.port === victimPort).map((k) => k.lastSeen));
            expect(t.evictLru(), `seed ${seed} at ${now}`).toBe(victimPort);
            fullEvictions++;
            const gone = dyn.filter((k) => t.findMac(k.vlan, k.mac) < 0);
            expect(gone.length).toBe(1);
            expect(gone[0].port).toBe(victimPort);
            expect(gone[0].lastSeen, `seed ${seed} at ${now}: evicted one seen at ${gone[0].lastSeen}, oldest ${oldest}`).toBe(oldest);
            model.delete(keyOf(gone[0].vlan, gone[0].mac));
          }
          expect(insertMac(t, vlan, mac, port, now, isStatic)).toBeGreaterThanOrEqual(0);
          model.set(keyOf(vlan, mac), { vlan, mac, port, lastSeen: now, isStatic });
        } else if (x < 0.6) {
          // Remove one (backward shift).
          const e = pick();
          if (e === undefined) continue;
          t.removeSlot(t.findMac(e.vlan, e.mac));
          model.delete(keyOf(e.vlan, e.mac));
        } else if (x < 0.67) {
          // Move without a refresh (setPort keeps lastSeen).
          const e = pick();
          if (e === undefined) continue;
          const port = randPort();
          t.setPort(t.findMac(e.vlan, e.mac), port);
          e.port = port;
        } else if (x < 0.69) {
          // Flip static.
          const e = pick();
          if (e === undefined) continue;
          e.isStatic = !e.isStatic;
          t.setStatic(t.findMac(e.vlan, e.mac), e.isStatic);
        } else if (x < 0.695) {
          // Ageing walk, as the switch does it: entries idle for 3000 go.
          for (let i = 0; i < t.capacity; ) {
            if (t.isUsed(i) && !t.isStatic(i) && now - t.lastSeen(i) >= 3000) {
              model.delete(keyOf(t.vlan(i), t.mac(i)));
              t.removeSlot(i);
            } else {
              i++;
            }
          }
        } else if (x < 0.6953) {
          expect(t.clear(true)).toBe(keys().filter((k) => !k.isStatic).length);
          for (const e of keys()) if (!e.isStatic) model.delete(keyOf(e.vlan, e.mac));
        } else if (x < 0.6955) {
          t.clear();
          model.clear();
        } else if (x < 0.72) {
          // An eviction now and then even when not full.
          const dyn = keys().filter((k) => !k.isStatic);
          const got = t.evictLru();
          if (dyn.length === 0) {
            expect(got).toBe(-1);
            continue;
          }
          const gone = dyn.filter((k) => t.findMac(k.vlan, k.mac) < 0);
          expect(gone.length).toBe(1);
          expect(got).toBe(gone[0].port);
          expect(gone[0].lastSeen).toBe(Math.min(...dyn.filter((k) => k.port === got).map((k) => k.lastSeen)));
          model.delete(keyOf(gone[0].vlan, gone[0].mac));
          evictions++;
        } else {
          // A station seen again.
          const e = pick();
          if (e === undefined || e.isStatic) continue;
          t.touch(t.findMac(e.vlan, e.mac), now);
          e.lastSeen = now;
        }
        if (t.capacity !== lastCap) {
          resizes++;
          lastCap = t.capacity;
        }
        const dyn = keys().filter((k) => !k.isStatic);
        expect(t.size).toBe(model.size);
        expect(t.dynamicSize).toBe(dyn.length);
        if (now % 50 === 0) {
          for (const p of [0, 1, 2, 3, 4, 5, 6, 7, 40000]) expect(t.portEntries(p), `port ${p}`).toBe(dyn.filter((k) => k.port === p).length);
        }
        if (now % 1000 === 0) {
          for (const e of model.values()) {
            const s = t.findMac(e.vlan, e.mac);
            expect([t.port(s), t.lastSeen(s), t.isStatic(s)]).toEqual([e.port, e.lastSeen, e.isStatic]);
          }
          expect(checkAllFindable(t)).toBe(model.size);
        }
      }
    }
    // The run must have exercised what it claims to.
    expect(evictions).toBeGreaterThan(500);
    expect(fullEvictions).toBeGreaterThan(500);
    expect(resizes).toBeGreaterThan(20);
  });
});

describe("LearningSwitch on FdbTable: walks that remove (flush, age)", () => {
  function tagged(dst: number, src: number, vlan: number): Buffer {
    const f = Buffer.alloc(64, 0x5a);
    f.writeUIntBE(dst, 0, 6);
    f.writeUIntBE(src, 6, 6);
    f.writeUInt16BE(0x8100, 12);
    f.writeUInt16BE(vlan, 14);
    f.writeUInt16BE(0x0800, 16);
    return f;
  }

  it("flush(vlan) and age() remove exactly their entries from a table thousands strong", () => {
    const engine = new Engine();
    const ports = ["p1", "p2"].map((n) => new MemoryPort(n));
    for (const p of ports) engine.addPort(p);
    const trunk = { mode: "trunk" as const, allowed: [10, 20] };
    const sw = new LearningSwitch(engine.ports, { ports: { p1: trunk, p2: trunk }, static: [{ mac: 0x02aa00000001, vlan: 10, port: "p2" }] });
    for (const p of ports) engine.connect(p, sw);
    engine.addElement(sw);
    engine.start();
    const mac = (i: number): number => 0x020000000000 + i * 0x10001;
    const frames: Buffer[] = [];
    for (let i = 0; i < 1500; i++) frames.push(tagged(0xffffffffffff, mac(i), 10), tagged(0xffffffffffff, mac(i), 20));
    ports[0].inject(frames);
    expect(sw.counters().learned).toBe(3000);
    expect(sw.dynamicCount).toBe(3000);
    expect(sw.fdb.size).toBe(3001);

    sw.flush(10);
    expect(sw.dynamicCount).toBe(1500);
    const now = performance.now();
    let rows = sw.entries(now);
    expect(rows.length).toBe(1501);
    expect(rows[0]).toMatchObject({ vlan: 10, mac: 0x02aa00000001, isStatic: true });
    expect(rows.slice(1).every((e) => e.vlan === 20 && !e.isStatic)).toBe(true);

    // Every other station of VLAN 20 is refreshed far in the future; ageing at that time removes the rest.
    const later = now + 1e9;
    for (let i = 0; i < 1500; i += 2) sw.fdb.touch(sw.fdb.findMac(20, mac(i)), later);
    expect(sw.age(later)).toBe(750);
    expect(sw.dynamicCount).toBe(750);
    rows = sw.entries(later);
    expect(rows.length).toBe(751);
    for (let i = 0; i < 1500; i++) expect(sw.fdb.findMac(20, mac(i)) >= 0, `station ${i}`).toBe(i % 2 === 0);
    expect(checkAllFindable(sw.fdb)).toBe(751);

    sw.flush();
    expect(sw.dynamicCount).toBe(0);
    expect(sw.entries(later)).toEqual([expect.objectContaining({ mac: 0x02aa00000001, vlan: 10, port: ports[1].index, isStatic: true })]);
  });
});

describe("FdbTable.walk (show fdb, paused between event-loop turns)", () => {
  /**
   * A table near load 0.5 (capacity at its maximum from the start: no resize) of
   * 1000 stable entries and 1000 churning ones, and a churn step that removes
   * churning entries right around `slot` (where a walk's cursor is: the removals
   * that shift entries across it) and adds new ones.
   */
  function churnRig(seed: number): { t: FdbTable; stable: number[]; churnAt: (slot: number) => void } {
    const t = new FdbTable(2000, { seed, initialCapacity: 4096 });
    const r = rng(seed);
    const stable: number[] = [];
    const churn = new Set<number>();
    let mac = 0x020000000000;
    for (let i = 0; i < 1000; i++) {
      insertMac(t, 1, ++mac, 1);
      stable.push(mac);
      insertMac(t, 1, ++mac, 2);
      churn.add(mac);
    }
    const churnAt = (slot: number): void => {
      const mask = t.capacity - 1;
      for (let d = -6; d <= 6; d++) {
        const i = (slot + d) & mask;
        if (t.isUsed(i) && churn.has(t.mac(i)) && r() < 0.3) {
          churn.delete(t.mac(i));
          t.removeSlot(i);
        }
      }
      while (t.size < 2000 && r() < 0.9) {
        insertMac(t, 1, ++mac, 2);
        churn.add(mac);
      }
    };
    return { t, stable, churnAt };
  }

  it("lists every entry present throughout exactly once while others are added and removed around its cursor", () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const { t, stable, churnAt } = churnRig(seed);
      const seen = new Map<number, number>();
      const g = t.walk();
      let resized = true;
      for (;;) {
        const r = g.next();
        if (r.done === true) {
          resized = r.value.resized;
          break;
        }
        if (r.value !== null) {
          seen.set(r.value.mac, (seen.get(r.value.mac) ?? 0) + 1);
          const slot = t.findMac(1, r.value.mac);
          if (slot >= 0) churnAt(slot);
        }
      }
      expect(resized).toBe(false);
      expect(t.capacity).toBe(4096);
      for (const m of stable) expect(seen.get(m), `seed ${seed} mac ${m.toString(16)}`).toBe(1);
      for (const [m, n] of seen) expect(n, `seed ${seed} mac ${m.toString(16)} listed twice`).toBe(1);
    }
  });

  it("the same churn makes a naive slot-order walk miss or repeat entries (so the test above can fail)", () => {
    let bad = 0;
    for (const seed of [1, 2, 3, 4, 5]) {
      const { t, stable, churnAt } = churnRig(seed);
      const seen = new Map<number, number>();
      for (let i = 0; i < t.capacity; i++) {
        if (!t.isUsed(i)) continue;
        seen.set(t.mac(i), (seen.get(t.mac(i)) ?? 0) + 1);
        churnAt(i);
      }
      for (const m of stable) if (seen.get(m) !== 1) bad++;
    }
    expect(bad).toBeGreaterThan(0);
  });

  it("stops and says so when the table grows during the walk", () => {
    const t = new FdbTable(100_000, { seed: 9 });
    let mac = 0x020000000000;
    for (let i = 0; i < 400; i++) insertMac(t, 1, ++mac, 1);
    const seen = new Map<number, number>();
    const g = t.walk();
    let resized = false;
    for (;;) {
      const r = g.next();
      if (r.done === true) {
        resized = r.value.resized;
        break;
      }
      if (r.value !== null) seen.set(r.value.mac, (seen.get(r.value.mac) ?? 0) + 1);
      for (let k = 0; k < 10; k++) insertMac(t, 1, ++mac, 1);
    }
    expect(resized).toBe(true);
    expect(t.capacity).toBeGreaterThan(1024);
    for (const n of seen.values()) expect(n).toBe(1);
    // Undisturbed: every entry once, in one go.
    const all = [...t.walk()].filter((e) => e !== null);
    expect(all.length).toBe(t.size);
    expect(new Set(all.map((e) => e?.mac)).size).toBe(t.size);
  });
});
