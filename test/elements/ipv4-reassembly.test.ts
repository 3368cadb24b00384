/**
 * IPv4 reassembly in front of NAT (nf_defrag_ipv4): fragments reach the router on h1,
 * the router (NAT on) reassembles, DNATs a UDP service and sends the datagram on to
 * the backend behind h2 in fragments no larger than the largest received.
 */
import { describe, expect, it } from "vitest";
import { Nat } from "../../src/elements/nat.js";
import { checksumFold, ipv4FillChecksum, pseudoHeaderSum, readU16, writeU16 } from "../../src/wire/index.js";
import { ETH1_MAC, H1, H2, ip, ipFrame, parseFrame, prng, routedRig, type Rig } from "./router-rig.js";
import { udpPacket } from "./nat-packets.js";

const VIP = ip("10.96.0.10");

function natRig(): Rig {
  const rig = routedRig({
    nat: () =>
      new Nat(
        {
          snat: [],
          services: [{ name: "dns", vip: VIP, proto: 17, port: 53, backends: [{ addr: H2.ip, port: 5353 }], algorithm: "random" }],
          hashSeed: 7,
        },
        prng(3),
      ),
  });
  rig.router.addStaticNeighbour(1, H2.ip, H2.mac);
  rig.router.addStaticNeighbour(0, H1.ip, H1.mac);
  return rig;
}

/** Cuts an IPv4 packet (20-byte header) into fragments at the given payload offsets (multiples of 8). */
function fragments(pkt: Buffer, cuts: number[], ident = 0x4321): Buffer[] {
  const data = pkt.subarray(20);
  const bounds = [0, ...cuts, data.length];
  const out: Buffer[] = [];
  for (let i = 0; i + 1 < bounds.length; i++) {
    out.push(fragment(pkt, bounds[i], bounds[i + 1] - bounds[i], i + 2 < bounds.length, ident));
  }
  return out;
}

function fragment(pkt: Buffer, off: number, len: number, mf: boolean, ident = 0x4321): Buffer {
  const f = Buffer.alloc(20 + len);
  pkt.copy(f, 0, 0, 20);
  pkt.copy(f, 20, 20 + off, 20 + off + len);
  writeU16(f, 2, 20 + len);
  writeU16(f, 4, ident);
  writeU16(f, 6, (mf ? 0x2000 : 0) | (off >>> 3));
  ipv4FillChecksum(f, 0);
  return f;
}

function send(rig: Rig, pkts: Buffer[]): void {
  rig.ports.h1.inject(pkts.map((p) => ipFrame(ETH1_MAC, H1.mac, p)));
}

function ipv4HeaderOk(b: Buffer): boolean {
  let s = 0;
  for (let i = 0; i < 20; i += 2) s += readU16(b, i);
  return checksumFold(s) === 0xffff || checksumFold(s) === 0;
}

/** Reassembles what left (test-side), checking each fragment's header. */
function joinFragments(frames: Buffer[]): { whole: Buffer; sizes: number[] } {
  const parts = frames.map((f) => parseFrame(f)).map((p) => p.ipBytes as Buffer);
  const sizes = parts.map((p) => p.length);
  for (const p of parts) expect(ipv4HeaderOk(p)).toBe(true);
  const total = Math.max(...parts.map((p) => ((readU16(p, 6) & 0x1fff) << 3) + p.length - 20));
  const whole = Buffer.alloc(20 + total);
  for (const p of parts) {
    const off = (readU16(p, 6) & 0x1fff) << 3;
    if (off === 0) p.copy(whole, 0, 0, 20);
    p.copy(whole, 20 + off, 20);
  }
  writeU16(whole, 2, whole.length);
  return { whole, sizes };
}

function udpChecksumOk(pkt: Buffer): boolean {
  const len = pkt.length - 20;
  let s = pseudoHeaderSum(pkt.readUInt32BE(12), pkt.readUInt32BE(16), 17, len);
  for (let i = 20; i < pkt.length; i += 2) s += i + 1 < pkt.length ? readU16(pkt, i) : pkt[i] << 8;
  return checksumFold(s) === 0xffff;
}

describe("IPv4 reassembly before NAT", () => {
  it("a 3000-byte UDP datagram to a service VIP leaves toward the backend refragmented and translated", () => {
    const rig = natRig();
    const orig = udpPacket(H1.ip, 40000, VIP, 53, 3000 - 28);
    const frags = fragments(orig, [1000, 2000]); // largest fragment 1020 bytes
    send(rig, frags);
    const out = rig.drain();
    expect(out.h2.length).toBeGreaterThanOrEqual(3);
    const { whole, sizes } = joinFragments(out.h2);
    for (const s of sizes) expect(s).toBeLessThanOrEqual(1020);
    const first = parseFrame(out.h2[0]).ip!;
    expect(first.fragOffset).toBe(0);
    expect(first.df).toBe(false);
    expect(whole.readUInt32BE(16)).toBe(H2.ip);
    expect(readU16(whole, 20)).toBe(40000);
    expect(readU16(whole, 22)).toBe(5353);
    expect(udpChecksumOk(whole)).toBe(true);
    expect(whole.subarray(28)).toEqual(orig.subarray(28));
    const c = rig.counters();
    expect(c.fragsReceived).toBe(3);
    expect(c.reassembled).toBe(1);
    expect(c.refragmented).toBe(1);
  });

  it("out of order and duplicated fragments reassemble to the original bytes", () => {
    const rig = natRig();
    const orig = udpPacket(H1.ip, 40001, VIP, 53, 2500);
    const f = fragments(orig, [800, 1600, 2400]);
    send(rig, [f[3], f[1], f[1], f[0], f[2], f[0]]);
    const out = rig.drain();
    const { whole } = joinFragments(out.h2);
    expect(whole.subarray(28)).toEqual(orig.subarray(28));
    expect(udpChecksumOk(whole)).toBe(true);
    expect(rig.counters().reassembled).toBe(1);
    // The trailing duplicate of the first fragment starts a new datagram that never completes.
    expect(rig.router.reasm.inProgress()).toBe(1);
  });

  it("in order: the datagram leaves in pieces no larger than the largest received", () => {
    const rig = natRig();
    const orig = udpPacket(H1.ip, 40002, VIP, 53, 1200);
    send(rig, fragments(orig, [576]));
    const { whole, sizes } = joinFragments(rig.drain().h2);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(652); // the largest received: 20 + 632
    expect(sizes.length).toBeGreaterThanOrEqual(2);
    expect(whole.subarray(28)).toEqual(orig.subarray(28));
  });

  it("overlapping fragments drop the whole datagram, counted", () => {
    const rig = natRig();
    const orig = udpPacket(H1.ip, 40003, VIP, 53, 2000);
    send(rig, [fragment(orig, 0, 1000, true), fragment(orig, 504, 1000, true), fragment(orig, 1000, 1008, false)]);
    expect(rig.drain().h2.length).toBe(0);
    const c = rig.counters();
    expect(c.reasmOverlap).toBe(1);
    expect(c.reassembled).toBe(0);
  });

  it("timeout with the first fragment sends ICMP time exceeded 11/1 and frees the slot; without it, nothing", () => {
    const rig = natRig();
    const orig = udpPacket(H1.ip, 40004, VIP, 53, 2000);
    send(rig, [fragment(orig, 0, 1000, true, 1)]);
    send(rig, [fragment(orig, 1000, 1000, true, 2)]); // a datagram whose first fragment never came
    expect(rig.router.reasm.inProgress()).toBe(2);
    rig.drain();
    const t0 = performance.now();
    rig.tick(t0 + 10000);
    expect(rig.drain().h1.length).toBe(0);
    rig.tick(t0 + 60000);
    const back = rig.drain().h1.map(parseFrame);
    expect(back.length).toBe(1);
    expect(back[0].icmp).toMatchObject({ type: 11, code: 1 });
    expect(back[0].ip!.dstAddr).toBe(H1.ip);
    expect(rig.router.reasm.inProgress()).toBe(0);
    expect(rig.counters().reasmTimeout).toBe(2);
  });

  it("bad fragments: unaligned, beyond 65535, too many datagrams — dropped and counted, no throw", () => {
    const rig = natRig();
    const orig = udpPacket(H1.ip, 40005, VIP, 53, 2000);
    // Non-last fragment with 1001 bytes of data.
    send(rig, [fragment(orig, 0, 1001, true)]);
    expect(rig.counters().reasmDropped).toBe(1);
    // A last fragment ending past 65535.
    const big = Buffer.alloc(20 + 1000);
    orig.copy(big, 0, 0, 20);
    writeU16(big, 2, big.length);
    writeU16(big, 6, 8100); // offset 64800 + 1000 > 65515
    ipv4FillChecksum(big, 0);
    send(rig, [big]);
    expect(rig.counters().reasmDropped).toBe(2);
    // More datagrams in progress than slots.
    const slots = rig.router.reasm.slots;
    const many: Buffer[] = [];
    for (let i = 0; i < slots + 3; i++) many.push(fragment(orig, 0, 1000, true, 100 + i));
    send(rig, many);
    expect(rig.router.reasm.inProgress()).toBe(slots);
    expect(rig.counters().reasmDropped).toBe(5);
  });

  it("without NAT fragments are forwarded as they are", () => {
    const rig = routedRig();
    rig.router.addStaticNeighbour(1, H2.ip, H2.mac);
    const orig = udpPacket(H1.ip, 40006, H2.ip, 53, 2000);
    const f = fragments(orig, [1000]);
    send(rig, f);
    const out = rig.drain().h2.map((x) => parseFrame(x).ipBytes!);
    expect(out.length).toBe(2);
    expect(rig.counters().fragsReceived).toBe(0);
  });

  it("fuzz: random fragment soup never throws and never leaks slots past the timeout", () => {
    const rig = natRig();
    const rnd = prng(99);
    const t0 = performance.now();
    for (let round = 0; round < 300; round++) {
      const len = 100 + Math.floor(rnd() * 4000);
      const orig = udpPacket(H1.ip, 30000 + round, VIP, 53, len);
      const batch: Buffer[] = [];
      for (let k = 0; k < 6; k++) {
        const off = Math.floor(rnd() * (len + 8)) & ~7;
        const dlen = Math.max(0, Math.min(len + 8 - off, Math.floor(rnd() * 1500)));
        const f = fragment(orig, Math.min(off, len + 8), Math.min(dlen, len + 8 - Math.min(off, len + 8)), rnd() < 0.7, rnd() < 0.5 ? 1 : 2);
        if (rnd() < 0.1) f[6] = Math.floor(rnd() * 256);
        if (rnd() < 0.1) ipv4FillChecksum(f, 0);
        batch.push(f);
      }
      expect(() => send(rig, batch)).not.toThrow();
      if (round % 50 === 0) rig.tick(t0 + round * 1000);
      rig.drain();
    }
    rig.tick(t0 + 10_000_000);
    rig.drain();
    expect(rig.router.reasm.inProgress()).toBe(0);
    expect(rig.counters().fragsReceived).toBeGreaterThan(0);
  });
});
