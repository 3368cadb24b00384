/**
 * The learning switch's guards on in-memory ports with a virtual clock: storm control
 * (per class token buckets), port security (limit, sticky, static, restrict and
 * shutdown, recovery) and dynamic ARP inspection (bindings, trusted ports, VLANs).
 */
import { describe, expect, it } from "vitest";
import { Engine } from "../../src/core/engine.js";
import { LearningSwitch } from "../../src/elements/learning-switch.js";
import type { GuardConfig } from "../../src/elements/switch-guards.js";
import { SWITCH_COUNTERS } from "../../src/elements/switch-counters.js";
import { MemoryPort } from "../../src/io/memory-port.js";
import { emitArp, parseIp } from "../../src/wire/index.js";

const A = 0x020000000001;
const B = 0x020000000002;
const C = 0x020000000003;
const BCAST = 0xffffffffffff;
const MCAST = 0x01005e000001;

function frame(dst: number, src: number, etherType = 0x0800): Buffer {
  const f = Buffer.alloc(60, 0x5a);
  f.writeUIntBE(dst, 0, 6);
  f.writeUIntBE(src, 6, 6);
  f.writeUInt16BE(etherType, 12);
  return f;
}

function arp(oper: number, ethSrc: number, sha: number, spa: string, tpa: string, dst = BCAST): Buffer {
  const f = frame(dst, ethSrc, 0x0806);
  emitArp({ oper, sha, spa: parseIp(spa), tha: 0, tpa: parseIp(tpa) }, f, 14);
  return f;
}

function rig(guards: GuardConfig, names = ["p1", "p2", "p3", "up"]) {
  let t = 1000;
  const engine = new Engine();
  engine.clock = () => t;
  const ports = names.map((n) => new MemoryPort(n));
  for (const p of ports) engine.addPort(p);
  const sw = new LearningSwitch(engine.ports, { guards });
  for (const p of ports) engine.connect(p, sw);
  engine.addElement(sw);
  engine.start();
  const by = Object.fromEntries(ports.map((p) => [p.name, p])) as Record<string, MemoryPort>;
  const sent = (n: string): number => by[n].sent.splice(0).length;
  const ledger = (): void => {
    const c = sw.counters() as Record<string, number>;
    const rx = ports.reduce((s, p) => s + p.rxFrames, 0);
    expect(SWITCH_COUNTERS.names.filter((n) => SWITCH_COUNTERS.decls[n].kind !== "event").reduce((s, n) => s + c[n], 0)).toBe(rx);
  };
  return { sw, engine, ports: by, sent, ledger, advance: (ms: number) => (t += ms), now: () => t };
}

describe("storm control", () => {
  it("holds each class at its rate, separately, and leaves known unicast alone", () => {
    const r = rig({ storm: { p1: { broadcast: 100, multicast: 50, unknownUnicast: 20 } } });
    r.ports.p2.inject([frame(BCAST, B)]); // B known on p2
    r.sent("p1");
    r.sent("p3");
    let bc = 0;
    let mc = 0;
    let uu = 0;
    let uc = 0;
    // 2 s of a flood from p1: 1000 frames of each class a second, in 10 ms batches.
    for (let i = 0; i < 200; i++) {
      r.advance(10);
      r.ports.p1.inject([...Array(10).fill(frame(BCAST, A)), ...Array(10).fill(frame(MCAST, A)), ...Array(10).fill(frame(C, A)), frame(B, A)]);
      for (const f of r.ports.p3.sent.splice(0)) {
        if (f.readUIntBE(0, 6) === BCAST) bc++;
        else if (f.readUIntBE(0, 6) === MCAST) mc++;
        else uu++;
      }
      uc += r.ports.p2.sent.splice(0).filter((f) => f.readUIntBE(0, 6) === B).length;
    }
    // Rate x 2 s, plus the bucket's depth (a second's worth) at the start.
    expect(bc).toBeGreaterThanOrEqual(295);
    expect(bc).toBeLessThanOrEqual(200 + 100);
    expect(mc).toBeGreaterThanOrEqual(145);
    expect(mc).toBeLessThanOrEqual(100 + 50);
    expect(uu).toBeGreaterThanOrEqual(58);
    expect(uu).toBeLessThanOrEqual(40 + 20);
    expect(uc).toBe(200);
    const c = r.sw.counters();
    expect(c.stormBroadcast).toBe(2000 - bc);
    expect(c.stormMulticast).toBe(2000 - mc);
    expect(c.stormUnknownUnicast).toBe(2000 - uu);
    // Another port has no limit.
    r.ports.p2.inject(Array(50).fill(frame(BCAST, B)));
    expect(r.sent("p3")).toBe(50);
    expect(r.sw.guards.storm.portInfo(r.ports.p1.index)).toEqual({
      limits: { broadcast: 100, multicast: 50, unknownUnicast: 20 },
      dropped: { broadcast: 2000 - bc, multicast: 2000 - mc, unknownUnicast: 2000 - uu },
    });
    // Frames bunched in one batch: a second's worth passes, not more.
    r.advance(5000);
    r.ports.p1.inject(Array(300).fill(frame(BCAST, A)));
    expect(r.sent("p3")).toBe(100);
    r.ledger();
  });

  it("a limit of 0 drops the whole class", () => {
    const r = rig({ storm: { p1: { multicast: 0 } } });
    r.ports.p1.inject([frame(MCAST, A), frame(BCAST, A)]);
    expect(r.sent("p2")).toBe(1);
    expect(r.sw.counters().stormMulticast).toBe(1);
  });
});

describe("port security", () => {
  it("restrict: learns maxMacs stations, drops and counts frames from one more, keeps forwarding the others", () => {
    const r = rig({ security: { p1: { maxMacs: 2 } } });
    r.ports.p1.inject([frame(BCAST, A), frame(BCAST, B), frame(BCAST, C), frame(BCAST, C), frame(BCAST, A)]);
    expect(r.sent("p2")).toBe(3);
    const c = r.sw.counters();
    expect(c.secViolation).toBe(2);
    expect(c.learned).toBe(2);
    expect(
      r.sw
        .entries(r.now())
        .map((e) => e.mac)
        .sort(),
    ).toEqual([A, B]);
    expect(r.sw.guards.security.portInfo(r.ports.p1.index, r.sw.fdb.portEntries(r.ports.p1.index))).toMatchObject({
      maxMacs: 2,
      macs: 2,
      violations: 2,
      shut: false,
    });
    // A MAC flood: 1000 random sources, not one more learned.
    r.ports.p1.inject(Array.from({ length: 1000 }, (_, i) => frame(BCAST, 0x060000000000 + i)));
    expect(r.sw.dynamicCount).toBe(2);
    expect(r.sw.counters().secViolation).toBe(1002);
    // Stations age out: room again.
    r.advance(301_000);
    r.sw.age(r.now());
    r.ports.p1.inject([frame(BCAST, C)]);
    expect(r.sent("p2")).toBe(1);
    r.ledger();
  });

  it("sticky: learned MACs become static, never age and do not move; static MACs count", () => {
    const r = rig({ security: { p1: { maxMacs: 2, sticky: true, macs: [C] } } });
    r.ports.p1.inject([frame(BCAST, A), frame(BCAST, B)]);
    expect(r.sw.counters().secViolation).toBe(1);
    const e = r.sw.entries(r.now());
    expect(e.map((x) => [x.mac, x.isStatic])).toEqual(
      expect.arrayContaining([
        [A, true],
        [C, true],
      ]),
    );
    expect(e.some((x) => x.mac === B)).toBe(false);
    r.advance(400_000);
    r.sw.age(r.now());
    expect(r.sw.entries(r.now()).length).toBe(2);
    // A frame with A's MAC on p2 does not move A (its frames still flood, A stays on p1).
    r.ports.p2.inject([frame(BCAST, A)]);
    expect(r.sw.entries(r.now()).find((x) => x.mac === A)?.port).toBe(r.ports.p1.index);
  });

  it("shutdown: a violation shuts the port (nothing in or out) until it is recovered", () => {
    const r = rig({ security: { p1: { maxMacs: 1, violation: "shutdown" } } });
    r.ports.p1.inject([frame(BCAST, A)]);
    r.ports.p2.inject([frame(A, B)]);
    expect(r.sent("p1")).toBe(1);
    r.ports.p1.inject([frame(BCAST, C), frame(BCAST, A), frame(B, A)]);
    const c = r.sw.counters();
    expect(c.secViolation).toBe(1);
    expect(c.portShutdown).toBe(2);
    expect(c.portsShut).toBe(1);
    expect(r.sw.guards.portGate(r.ports.p1.index)).toBe("shutdown");
    expect(r.sw.entries(r.now()).some((x) => x.mac === A)).toBe(false);
    r.ports.p2.inject([frame(BCAST, B), frame(A, B)]);
    expect(r.sent("p1")).toBe(0);
    let was = false;
    r.engine.runPass((_p, now) => (was = r.sw.guards.recover(r.ports.p1.index, now)));
    expect(was).toBe(true);
    expect(r.sw.guards.portGate(r.ports.p1.index)).toBe("forwarding");
    r.sent("p2");
    r.ports.p1.inject([frame(B, A)]);
    expect(r.sent("p2")).toBe(1);
    r.ledger();
  });
});

describe("dynamic ARP inspection", () => {
  const guards = (): GuardConfig => ({
    arpInspection: { vlans: [1], bindings: [{ vlan: 1, ip: parseIp("10.0.0.1"), mac: A, source: "lab" }], trusted: ["up"] },
  });

  it("drops an ARP reply claiming another host's address, passes the true one and unbound addresses", () => {
    const r = rig(guards());
    // B claims 10.0.0.1 (A's): spoofed.
    r.ports.p2.inject([arp(2, B, B, "10.0.0.1", "10.0.0.3", C)]);
    r.ports.p2.inject([arp(1, B, B, "10.0.0.1", "10.0.0.3")]);
    expect(r.sent("p1") + r.sent("p3")).toBe(0);
    expect(r.sw.counters().arpSpoofed).toBe(2);
    // The spoofer was not learned from its spoofed frames.
    expect(r.sw.entries(r.now()).some((x) => x.mac === B)).toBe(false);
    expect(r.sw.guards.arp?.lastIp).toBe(parseIp("10.0.0.1") | 0);
    // A's own announcement passes; B with its own (unbound) address passes; a probe passes.
    r.ports.p1.inject([arp(1, A, A, "10.0.0.1", "10.0.0.1")]);
    r.ports.p2.inject([arp(1, B, B, "10.0.0.2", "10.0.0.1"), arp(1, B, B, "0.0.0.0", "10.0.0.2")]);
    expect(r.sent("p3")).toBe(3);
    // Sender MAC not the frame's source; a truncated ARP packet.
    r.ports.p2.inject([arp(1, B, C, "10.0.0.2", "10.0.0.1"), frame(BCAST, B, 0x0806).subarray(0, 30)]);
    expect(r.sw.counters().arpInvalid).toBe(2);
    // A trusted port is not inspected.
    r.ports.up.inject([arp(2, B, B, "10.0.0.1", "10.0.0.3", C)]);
    expect(r.sent("p3")).toBe(1);
    r.ledger();
  });

  it("takes bindings at run time (the lab's, DHCP's later) and inspects only its VLANs", () => {
    const r = rig(guards());
    const ai = r.sw.guards.arp!;
    ai.addBinding(1, parseIp("10.0.0.3"), C, "lab");
    r.ports.p2.inject([arp(2, B, B, "10.0.0.3", "10.0.0.1", A)]);
    expect(r.sw.counters().arpSpoofed).toBe(1);
    expect(ai.bindings().map((b) => b.source)).toEqual(["lab", "lab"]);
    expect(ai.removeBinding(1, parseIp("10.0.0.3"))).toBe(true);
    r.ports.p2.inject([arp(2, B, B, "10.0.0.3", "10.0.0.1", A)]);
    expect(r.sw.counters().arpSpoofed).toBe(1);
    // Many bindings: the table grows and every one is found.
    for (let i = 0; i < 500; i++) ai.addBinding(1 + (i % 3), parseIp(`10.1.${i >> 8}.${i & 255}`), 0x020000100000 + i, "dhcp");
    for (let i = 0; i < 500; i++) expect(ai.lookup(1 + (i % 3), parseIp(`10.1.${i >> 8}.${i & 255}`))).toBe(0x020000100000 + i);
    expect(ai.lookup(1, parseIp("10.0.0.1"))).toBe(A);
    expect(() => ai.addBinding(1, parseIp("10.0.0.9"), BCAST, "static")).toThrow(/unicast/);
    // VLAN 2 is not inspected (a rig with p1 on VLAN 2).
    const engine = new Engine();
    const ps = ["p1", "p2", "up"].map((n) => new MemoryPort(n));
    for (const p of ps) engine.addPort(p);
    const sw = new LearningSwitch(engine.ports, { ports: { p1: { mode: "access", vlan: 2 }, p2: { mode: "access", vlan: 2 } }, guards: guards() });
    for (const p of ps) engine.connect(p, sw);
    engine.addElement(sw);
    engine.start();
    ps[0].inject([arp(2, B, B, "10.0.0.1", "10.0.0.3", C)]);
    expect(ps[1].sent.length).toBe(1);
  });
});
