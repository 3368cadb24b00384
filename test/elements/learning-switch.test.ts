import { describe, expect, it, vi } from "vitest";
import { Engine } from "../../src/core/engine.js";
import { LearningSwitch, type LearningSwitchConfig } from "../../src/elements/learning-switch.js";
import { MemoryPort } from "../../src/io/memory-port.js";

const A = 0x020000000001;
const B = 0x020000000002;
const C = 0x020000000003;
const BCAST = 0xffffffffffff;

function mac6(m: number): Buffer {
  const b = Buffer.alloc(6);
  b.writeUIntBE(m, 0, 6);
  return b;
}

/** An untagged (vlan undefined) or 802.1Q-tagged frame with a recognisable payload. */
function frame(dst: number, src: number, opts: { vlan?: number; pcp?: number; payload?: number; size?: number } = {}): Buffer {
  const size = opts.size ?? 60;
  const f = Buffer.alloc(size + (opts.vlan !== undefined ? 4 : 0), opts.payload ?? 0x5a);
  mac6(dst).copy(f, 0);
  mac6(src).copy(f, 6);
  let p = 12;
  if (opts.vlan !== undefined) {
    f.writeUInt16BE(0x8100, 12);
    f.writeUInt16BE(((opts.pcp ?? 0) << 13) | opts.vlan, 14);
    p = 16;
  }
  f.writeUInt16BE(0x0800, p);
  return f;
}

function rig(names: string[], config: Omit<LearningSwitchConfig, "ports"> & { ports?: LearningSwitchConfig["ports"] } = {}) {
  const engine = new Engine();
  const ports = names.map((n) => new MemoryPort(n));
  for (const p of ports) engine.addPort(p);
  const sw = new LearningSwitch(engine.ports, config);
  for (const p of ports) engine.connect(p, sw);
  engine.addElement(sw);
  engine.start();
  const by = Object.fromEntries(ports.map((p) => [p.name, p])) as Record<string, MemoryPort>;
  const drain = (): Record<string, Buffer[]> => {
    const out: Record<string, Buffer[]> = {};
    for (const p of ports) out[p.name] = p.sent.splice(0);
    return out;
  };
  return { engine, sw, ports: by, drain };
}

describe("LearningSwitch", () => {
  it("floods unknown unicast to every other port, then forwards known unicast to one", () => {
    const { ports, drain, sw } = rig(["p1", "p2", "p3"]);
    ports.p1.inject([frame(B, A)]);
    let out = drain();
    expect(out.p1).toEqual([]);
    expect(out.p2.length).toBe(1);
    expect(out.p3.length).toBe(1);
    // B answers: A is known on p1, so only p1 gets it.
    ports.p2.inject([frame(A, B)]);
    out = drain();
    expect(out.p1.length).toBe(1);
    expect(out.p3).toEqual([]);
    expect(out.p1[0]).toEqual(frame(A, B));
    // And now A -> B goes only to p2.
    ports.p1.inject([frame(B, A)]);
    out = drain();
    expect(out.p2.length).toBe(1);
    expect(out.p3).toEqual([]);
    expect(sw.counters().flooded).toBe(1);
    expect(sw.counters().forwarded).toBe(2);
    expect(sw.counters().learned).toBe(2);
  });

  it("floods broadcast and multicast, never back out of the ingress port", () => {
    const { ports, drain, sw } = rig(["p1", "p2", "p3"]);
    ports.p2.inject([frame(BCAST, A), frame(0x01005e000001, A)]);
    const out = drain();
    expect(out.p2).toEqual([]);
    expect(out.p1.length).toBe(2);
    expect(out.p3.length).toBe(2);
    expect(sw.counters().flooded).toBe(2);
  });

  it("drops a frame whose destination lives on its ingress port", () => {
    const { ports, drain, sw } = rig(["p1", "p2"]);
    ports.p1.inject([frame(BCAST, A), frame(BCAST, B)]); // A and B both on p1
    drain();
    ports.p1.inject([frame(B, A)]);
    expect(drain().p2).toEqual([]);
    expect(sw.counters().filtered).toBe(1);
    expect(ports.p1.rxDrops).toBe(1);
  });

  it("follows a station that moves to another port", () => {
    const { ports, drain, sw } = rig(["p1", "p2", "p3"]);
    ports.p1.inject([frame(BCAST, A)]);
    ports.p3.inject([frame(BCAST, A)]); // A moved to p3
    drain();
    ports.p2.inject([frame(A, B)]);
    const out = drain();
    expect(out.p3.length).toBe(1);
    expect(out.p1).toEqual([]);
    expect(sw.counters().stationMoves).toBe(1);
    expect(sw.entries(performance.now()).find((e) => e.mac === A)?.port).toBe(ports.p3.index);
  });

  it("ages entries out and floods again afterwards", () => {
    const { ports, drain, sw } = rig(["p1", "p2", "p3"], { ageingTime: 10 });
    ports.p1.inject([frame(BCAST, A)]);
    drain();
    const now = performance.now();
    expect(sw.entries(now).length).toBe(1);
    expect(sw.entries(now + 11_000)).toEqual([]); // expired entries are not shown
    expect(sw.age(now + 5_000)).toBe(0);
    expect(sw.age(now + 11_000)).toBe(1);
    expect(sw.dynamicCount).toBe(0);
    ports.p2.inject([frame(A, B)]);
    const out = drain();
    expect(out.p1.length).toBe(1);
    expect(out.p3.length).toBe(1); // unknown again: flooded
  });

  it("keeps a bounded table: when full, a new station evicts the busiest port's oldest entry and is learned", () => {
    const { ports, drain, sw } = rig(["p1", "p2", "p3"], { maxEntries: 2 });
    ports.p1.inject([frame(BCAST, A)]);
    ports.p2.inject([frame(BCAST, B)]);
    ports.p3.inject([frame(BCAST, C)]); // table full: p1 and p2 hold one each, the lower port gives A up
    drain();
    expect([sw.counters().learned, sw.counters().evicted, sw.counters().macLimit, sw.dynamicCount]).toEqual([3, 1, 0, 2]);
    expect(sw.entries(performance.now()).map((e) => e.mac)).toEqual([B, C]);
    // C is known at once: B -> C goes to p3 only.
    ports.p2.inject([frame(C, B)]);
    let out = drain();
    expect([out.p1.length, out.p3.length]).toEqual([0, 1]);
    // A is unknown now: flooded, and still reaches p1.
    ports.p2.inject([frame(A, B)]);
    out = drain();
    expect([out.p1.length, out.p3.length]).toEqual([1, 1]);
  });

  it("with the table full of static entries, a new station is not learned (macLimit) and is flooded", () => {
    // 4096 statics fill the room the table keeps for them; two more added later take the
    // dynamic room too: nothing dynamic is there to evict.
    const statics = Array.from({ length: 4096 }, (_, i) => ({ mac: 0x02aa00000000 + i, vlan: 1, port: "p3" }));
    const { ports, drain, sw } = rig(["p1", "p2", "p3"], { maxEntries: 2, static: statics });
    sw.addStatic({ mac: 0x02bb00000001, vlan: 1, port: "p3" });
    sw.addStatic({ mac: 0x02bb00000002, vlan: 1, port: "p3" });
    expect(() => sw.addStatic({ mac: 0x02bb00000003, vlan: 1, port: "p3" })).toThrow(/table is full/);
    ports.p1.inject([frame(BCAST, A)]);
    drain();
    expect([sw.counters().learned, sw.counters().evicted, sw.counters().macLimit, sw.dynamicCount]).toEqual([0, 0, 1, 0]);
    ports.p2.inject([frame(A, B)]);
    const out = drain();
    expect([out.p1.length, out.p3.length]).toEqual([1, 1]);
    // Statics still forward.
    ports.p1.inject([frame(0x02bb00000002, A)]);
    expect(drain().p3.length).toBe(1);
  });

  it("a flood of random source MACs from one port evicts that port's own oldest entries, not other ports' stations", () => {
    // A clock the test controls: each inject() is one pass at its own time, so the order
    // of lastSeen is exact.
    let t = 1000;
    const clock = vi.spyOn(performance, "now").mockImplementation(() => t);
    try {
      const { ports, drain, sw } = rig(["p1", "p2", "p3"], { maxEntries: 64 });
      const X = 0x02000000000a; // a station on the flooding port that keeps talking
      const step = (p: MemoryPort, f: Buffer): void => {
        t += 1;
        p.inject([f]);
      };
      step(ports.p2, frame(BCAST, B));
      step(ports.p3, frame(BCAST, C));
      step(ports.p1, frame(BCAST, X));
      const flood = Array.from({ length: 3000 }, (_, i) => 0x060000000000 + ((i * 2654435761) % 2 ** 32) * 256 + (i & 0xff));
      expect(new Set(flood).size).toBe(3000);
      for (const [i, m] of flood.entries()) {
        step(ports.p1, frame(0x02ffffffffff, m));
        if (i % 40 === 39) step(ports.p1, frame(BCAST, X));
      }
      drain();
      // 64 entries: B, C, X and the newest 61 of the flood.
      expect(sw.dynamicCount).toBe(64);
      expect(sw.counters().evicted).toBe(3000 - 61);
      expect(sw.counters().macLimit).toBe(0);
      expect(sw.fdb.portEntries(ports.p1.index)).toBe(62);
      const now = t;
      const learned = new Set(sw.entries(now).map((e) => e.mac));
      for (const m of [B, C, X]) expect(learned.has(m), m.toString(16)).toBe(true);
      for (const [i, m] of flood.entries()) expect(learned.has(m), `flood MAC ${i}`).toBe(i >= 3000 - 61);
      // B and C still reach each other without flooding.
      const flooded = sw.counters().flooded;
      step(ports.p2, frame(C, B));
      expect(sw.counters().flooded).toBe(flooded);
      expect(drain()).toMatchObject({ p1: [], p3: [frame(C, B)] });
      // A new station on p2 is learned at its first frame (p1's oldest goes), and the
      // answer to it is not flooded to p1.
      step(ports.p2, frame(C, A));
      expect(sw.counters().evicted).toBe(3000 - 60);
      expect(sw.entries(t).find((e) => e.mac === A)).toMatchObject({ port: ports.p2.index, isStatic: false });
      expect(sw.fdb.portEntries(ports.p1.index)).toBe(61);
      expect(sw.fdb.findMac(1, flood[3000 - 61])).toBe(-1);
      drain();
      step(ports.p3, frame(A, C));
      expect(sw.counters().flooded).toBe(flooded);
      expect(drain()).toMatchObject({ p1: [], p2: [frame(A, C)] });
    } finally {
      clock.mockRestore();
    }
  });

  it("static entries neither move nor age", () => {
    const { ports, drain, sw } = rig(["p1", "p2", "p3"], {
      ageingTime: 1,
      static: [{ mac: C, vlan: 1, port: "p3" }],
    });
    ports.p1.inject([frame(BCAST, C)]); // C claims to be on p1: ignored
    drain();
    ports.p2.inject([frame(C, B)]);
    const out = drain();
    expect(out.p3.length).toBe(1);
    expect(out.p1).toEqual([]);
    expect(sw.age(performance.now() + 1e9)).toBe(1); // B goes, C stays
    expect(sw.entries(performance.now() + 1e9)).toEqual([expect.objectContaining({ mac: C, isStatic: true })]);
  });

  it("counts per-port frames and bytes", () => {
    const { ports, drain } = rig(["p1", "p2"]);
    ports.p1.inject([frame(BCAST, A), frame(BCAST, A, { size: 100 })]);
    drain();
    expect(ports.p1.counters()).toMatchObject({ rxFrames: 2, rxBytes: 160, rxDrops: 0 });
    expect(ports.p2.counters()).toMatchObject({ txFrames: 2, txBytes: 160, txDrops: 0 });
  });

  it("counts frames the device refuses as tx drops", () => {
    const { ports, drain } = rig(["p1", "p2"]);
    ports.p2.refuse = (i) => i === 0;
    ports.p1.inject([frame(BCAST, A), frame(BCAST, A, { size: 80 })]);
    drain();
    expect(ports.p2.counters()).toMatchObject({ txFrames: 1, txBytes: 80, txDrops: 1 });
  });

  describe("malformed frames are dropped, counted, and forwarding goes on", () => {
    const cases: Array<[string, Buffer, string]> = [
      ["runt (10 bytes)", Buffer.alloc(10, 1), "runt"],
      ["802.1Q header cut short", frame(B, A, { vlan: 1 }).subarray(0, 16), "runt"],
      ["oversized (1600 bytes)", frame(B, A, { size: 1600 }), "oversize"],
      ["group source address", frame(B, 0x01005e000001), "badSrcMac"],
      ["zero source address", frame(B, 0), "badSrcMac"],
      ["STP BPDU (01:80:c2:00:00:00)", frame(0x0180c2000000, A), "linkLocal"],
      ["LLDP (01:80:c2:00:00:0e)", frame(0x0180c200000e, A), "linkLocal"],
    ];
    it.each(cases)("%s", (_name, bad, counter) => {
      const { ports, drain, sw } = rig(["p1", "p2"]);
      ports.p1.inject([bad, frame(BCAST, A)]);
      const out = drain();
      expect(out.p2).toEqual([frame(BCAST, A)]);
      expect(sw.counters()[counter as keyof ReturnType<typeof sw.counters>]).toBe(1);
      expect(ports.p1.rxDrops).toBe(1);
    });

    it("survives random garbage of every length", () => {
      const { ports, drain, engine } = rig(["p1", "p2", "p3"]);
      let seed = 12345;
      const rnd = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
      const frames: Buffer[] = [];
      for (let i = 0; i < 2000; i++) {
        const f = Buffer.alloc(Math.floor(rnd() * 1900));
        for (let j = 0; j < f.length; j++) f[j] = Math.floor(rnd() * 256);
        if (i % 3 === 0 && f.length >= 16) f.writeUInt16BE(0x8100, 12);
        frames.push(f);
      }
      ports.p1.inject(frames);
      drain();
      expect(engine.internalErrors).toBe(0);
      ports.p2.inject([frame(BCAST, B)]);
      expect(drain().p1.length).toBe(1);
    });
  });

  describe("802.1Q", () => {
    const vlans: LearningSwitchConfig["ports"] = {
      a10: { mode: "access", vlan: 10 },
      b10: { mode: "access", vlan: 10 },
      c20: { mode: "access", vlan: 20 },
      trunk: { mode: "trunk", allowed: [10, 20] },
    };

    it("keeps VLANs apart and tags frames on the trunk", () => {
      const { ports, drain } = rig(["a10", "b10", "c20", "trunk"], { ports: vlans });
      const f = frame(BCAST, A);
      ports.a10.inject([f]);
      const out = drain();
      expect(out.c20).toEqual([]);
      expect(out.b10).toEqual([f]); // untagged on the access port
      expect(out.trunk).toEqual([frame(BCAST, A, { vlan: 10 })]); // tagged on the trunk
    });

    it("untags frames from the trunk for access ports, and never leaks into another VLAN", () => {
      const { ports, drain, sw } = rig(["a10", "b10", "c20", "trunk"], { ports: vlans });
      ports.trunk.inject([frame(BCAST, B, { vlan: 20, payload: 0x20 })]);
      let out = drain();
      expect(out.c20).toEqual([frame(BCAST, B, { payload: 0x20 })]);
      expect(out.a10).toEqual([]);
      expect(out.b10).toEqual([]);
      // B is known in VLAN 20 only: a frame for B in VLAN 10 is flooded in VLAN 10.
      ports.a10.inject([frame(B, A)]);
      out = drain();
      expect(out.c20).toEqual([]);
      expect(out.b10.length).toBe(1);
      expect(out.trunk).toEqual([frame(B, A, { vlan: 10 })]);
      // Known unicast from the trunk to an access port is untagged in place.
      ports.trunk.inject([frame(A, C, { vlan: 10, payload: 0x33 })]);
      out = drain();
      expect(out.a10).toEqual([frame(A, C, { payload: 0x33 })]);
      expect(sw.counters().forwarded).toBe(1);
    });

    it("tags known unicast toward the trunk in place", () => {
      const { ports, drain } = rig(["a10", "b10", "c20", "trunk"], { ports: vlans });
      ports.trunk.inject([frame(BCAST, B, { vlan: 10 })]);
      drain();
      ports.a10.inject([frame(B, A, { payload: 0x77 })]);
      const out = drain();
      expect(out.trunk).toEqual([frame(B, A, { vlan: 10, payload: 0x77 })]);
      expect(out.b10).toEqual([]);
    });

    it("drops tagged frames on access ports and disallowed VLANs on trunks", () => {
      const { ports, drain, sw } = rig(["a10", "b10", "c20", "trunk"], { ports: vlans });
      ports.a10.inject([frame(BCAST, A, { vlan: 10 })]);
      ports.trunk.inject([frame(BCAST, B, { vlan: 30 }), frame(BCAST, B)]); // 30 not allowed; untagged without native
      const out = drain();
      expect(Object.values(out).flat()).toEqual([]);
      expect(sw.counters().vlanFiltered).toBe(3);
    });

    it("carries the native VLAN untagged on a trunk", () => {
      const { ports, drain } = rig(["a10", "c20", "trunk"], {
        ports: { a10: { mode: "access", vlan: 10 }, c20: { mode: "access", vlan: 20 }, trunk: { mode: "trunk", allowed: [20], native: 10 } },
      });
      ports.trunk.inject([frame(BCAST, B)]);
      let out = drain();
      expect(out.a10).toEqual([frame(BCAST, B)]);
      expect(out.c20).toEqual([]);
      ports.a10.inject([frame(BCAST, A)]);
      out = drain();
      expect(out.trunk).toEqual([frame(BCAST, A)]);
      ports.c20.inject([frame(BCAST, C)]);
      expect(drain().trunk).toEqual([frame(BCAST, C, { vlan: 20 })]);
    });

    it("treats priority-tagged frames (VID 0) as the port's VLAN and keeps the PCP", () => {
      const { ports, drain } = rig(["a10", "b10", "c20", "trunk"], { ports: vlans });
      ports.a10.inject([frame(BCAST, A, { vlan: 0, pcp: 5 })]);
      const out = drain();
      expect(out.trunk).toEqual([frame(BCAST, A, { vlan: 10, pcp: 5 })]);
      expect(out.b10).toEqual([frame(BCAST, A)]);
      expect(out.c20).toEqual([]);
    });

    it("rejects bad VLAN configuration", () => {
      expect(() => rig(["p1"], { ports: { p1: { mode: "access", vlan: 4095 } } })).toThrow(/not a VLAN id/);
      expect(() => rig(["p1"], { ports: { p9: { mode: "access", vlan: 10 } } })).toThrow(/unknown port 'p9'/);
      expect(() => rig(["p1"], { static: [{ mac: A, vlan: 20, port: "p1" }] })).toThrow(/not a member of vlan 20/);
    });
  });
});

describe("LearningSwitch with offloads (virtio-net headers)", () => {
  /** A switch whose ports play TAPs with IFF_VNET_HDR: p1 access VLAN 10, p2 trunk of VLAN 10. */
  function vnetRig() {
    const engine = new Engine();
    engine.offload = true;
    const ports = ["p1", "p2"].map((n) => new MemoryPort(n, { offload: true }));
    for (const p of ports) engine.addPort(p);
    const sw = new LearningSwitch(engine.ports, {
      offload: true,
      ports: { p1: { mode: "access", vlan: 10 }, p2: { mode: "trunk", allowed: [10] } },
    });
    for (const p of ports) engine.connect(p, sw);
    engine.addElement(sw);
    engine.start();
    return { engine, sw, p1: ports[0], p2: ports[1] };
  }

  /** A virtio-net header: NEEDS_CSUM with csum_start `start`, csum_offset 16. */
  function vnetHdr(start: number): Buffer {
    const v = Buffer.alloc(12);
    v[0] = 1;
    v.writeUInt16LE(start, 6);
    v.writeUInt16LE(16, 8);
    return v;
  }

  it("a csum_start the tag's move takes past 0 or 65535 wraps around; nothing throws, the frame goes on", () => {
    const { engine, p1, p2 } = vnetRig();
    // Tagged in on the trunk, flooded untagged to p1: the tag is popped, csum_start 2 - 4.
    p2.inject([Buffer.concat([vnetHdr(2), frame(B, A, { vlan: 10 })])]);
    // Untagged in on p1, flooded tagged to the trunk: csum_start 65534 + 4.
    p1.inject([Buffer.concat([vnetHdr(65534), frame(A, C)])]);
    expect(engine.internalErrors, engine.lastError).toBe(0);
    expect(p1.sent).toEqual([frame(B, A)]);
    expect(p2.sent).toEqual([frame(A, C, { vlan: 10 })]);
  });
});
