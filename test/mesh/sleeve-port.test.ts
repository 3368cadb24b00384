/**
 * The mesh's data path (src/mesh/sleeve-port.ts) on a simulated kernel (test/fuzz/harness.ts
 * SimSocket): what it delivers, relays and forwards, and that garbage datagrams are
 * dropped at counters, never thrown.
 */
import { describe, expect, it } from "vitest";
import type { FrameSink } from "../../src/core/element.js";
import { Engine } from "../../src/core/engine.js";
import { SleevePort } from "../../src/mesh/sleeve-port.js";
import { SLEEVE_HEADER, SLEEVE_PROBE, SLEEVE_PROBE_ACK, shortId, writeSleeveHeader } from "../../src/mesh/wire.js";
import { ipv4FillChecksum } from "../../src/wire/ipv4.js";
import { Rng } from "../fuzz/gen.js";
import { SimSocket } from "../fuzz/harness.js";

const N1 = shortId("node1");
const N2 = shortId("node2");
const N3 = shortId("node3");
const A1 = 0xc0a80101; // 192.168.1.1
const A3 = 0xc0a80203; // 192.168.2.3

/** node2's port: node1 and node3 adjacent, node2 relays between them. */
function rig(): { port: SleevePort; sock: SimSocket; delivered: () => number; engine: Engine; frames: Buffer[] } {
  const socks: SimSocket[] = [];
  const port = new SleevePort("weave", {
    port: 6783,
    openSocket: (o) => {
      const s = new SimSocket(o, null);
      socks.push(s);
      return s;
    },
  });
  const engine = new Engine();
  engine.addPort(port);
  let delivered = 0;
  const frames: Buffer[] = [];
  const sink: FrameSink = {
    process: (_port, f, pool) => {
      delivered += f.count;
      for (let i = 0; i < f.count; i++) frames.push(Buffer.from(pool.subarray(f.offsets[i], f.offsets[i] + f.lengths[i])));
    },
  };
  for (const p of engine.ports) engine.connect(p, sink);
  engine.start();
  port.program({
    selfShort: N2,
    peers: [
      { short: N2, nextHop: 0, children: [A1, A3] },
      { short: N1, nextHop: A1, children: [A3] },
      { short: N3, nextHop: A3, children: [A1] },
    ],
    flushMacs: false,
    ownChildren: [A1, A3],
  });
  return { port, sock: socks[0], delivered: () => delivered, engine, frames };
}

function frame(src: number, dst: number, len = 60): Buffer {
  const f = Buffer.alloc(len, 0x44);
  f.writeUIntBE(dst, 0, 6);
  f.writeUIntBE(src, 6, 6);
  f.writeUInt16BE(0x88b5, 12);
  return f;
}

function datagram(sender: number, origin: number, dest: number, frames: Buffer[], ttl = 16): Buffer {
  const h = Buffer.alloc(SLEEVE_HEADER);
  writeSleeveHeader(h, 0, 1, ttl, sender, origin, dest);
  return Buffer.concat([h, ...frames.flatMap((f) => [Buffer.from([f.length >> 8, f.length & 0xff]), f])]);
}

describe("mesh sleeve port", () => {
  it("delivers the frames of a datagram for us, learns their MACs against the origin, relays one for another peer, forwards a broadcast once", () => {
    const { port, sock, delivered, engine } = rig();
    try {
      sock.land([{ data: datagram(N1, N1, N2, [frame(0x020000000001, 0x020000000002), frame(0x020000000011, 0x020000000002)]), from: A1, segs: 0 }]);
      expect(delivered()).toBe(2);
      expect(port.tunnelCounters()).toMatchObject({ received: 2, datagramsReceived: 1, learned: 2 });
      // For node3: sent on, not delivered.
      const sent0 = sock.sent;
      sock.land([{ data: datagram(N1, N1, N3, [frame(0x020000000001, 0x020000000003)]), from: A1, segs: 0 }]);
      expect(delivered()).toBe(2);
      expect(port.tunnelCounters().relayed).toBe(1);
      expect(sock.sent - sent0).toBe(1);
      // A broadcast of node1: delivered here and sent on to node2's child in node1's tree (node3).
      sock.land([{ data: datagram(N1, N1, 0, [frame(0x020000000001, 0xffffffffffff)]), from: A1, segs: 0 }]);
      expect(delivered()).toBe(3);
      expect(port.tunnelCounters().broadcastForwarded).toBe(1);
      expect(sock.sent - sent0).toBe(2);
      // TTL 1 for another peer: dropped.
      sock.land([{ data: datagram(N1, N1, N3, [frame(0x020000000001, 0x020000000003)], 1), from: A1, segs: 0 }]);
      expect(port.tunnelCounters().ttlExpired).toBe(1);
    } finally {
      engine.stop();
    }
  });

  it("20,000 mutated and random datagrams: no exception, each counted, and the port still delivers", () => {
    const { port, sock, delivered, engine } = rig();
    try {
      const rng = new Rng(20261205);
      const good = [
        datagram(N1, N1, N2, [frame(0x020000000001, 0x020000000002), frame(0x020000000001, 0x020000000002, 200)]),
        datagram(N3, N3, 0, [frame(0x020000000003, 0xffffffffffff)]),
        datagram(N1, N1, N3, [frame(0x020000000001, 0x020000000003)]),
      ];
      for (let round = 0; round < 200; round++) {
        const batch: Array<{ data: Buffer; from: number; segs: number }> = [];
        for (let i = 0; i < 100; i++) {
          let d: Buffer;
          if (rng.int(4) === 0) {
            d = Buffer.alloc(rng.int(80));
            for (let j = 0; j < d.length; j++) d[j] = rng.int(256);
            if (d.length > 0 && rng.int(2) === 0) d[0] = 0x57;
          } else {
            d = Buffer.from(good[rng.int(good.length)]);
            const flips = 1 + rng.int(4);
            for (let k = 0; k < flips; k++) d[rng.int(Math.min(d.length, 24))] = rng.int(256);
            if (rng.int(3) === 0) d = d.subarray(0, rng.int(d.length));
          }
          batch.push({ data: d, from: rng.int(2) === 0 ? A1 : A3, segs: 0 });
        }
        sock.land(batch);
      }
      const c = port.tunnelCounters() as Record<string, number>;
      const dropped = c.badHeader + c.badVersion + c.unknownPeer + c.badFrame + c.ttlExpired + c.ownOrigin;
      expect(dropped).toBeGreaterThan(5000);
      expect(c.badHeader).toBeGreaterThan(0);
      expect(c.badVersion).toBeGreaterThan(0);
      expect(c.unknownPeer).toBeGreaterThan(0);
      expect(c.badFrame).toBeGreaterThan(0);
      const before = delivered();
      sock.land([{ data: datagram(N1, N1, N2, [frame(0x020000000001, 0x020000000002)]), from: A1, segs: 0 }]);
      expect(delivered() - before).toBe(1);
    } finally {
      engine.stop();
    }
  });

  it("path-MTU probes and their acks go to the agent with sequence number and size; a short one is a bad header", () => {
    const { port, sock, engine } = rig();
    const heard: string[] = [];
    port.listener = {
      heartbeat: () => {},
      ack: () => {},
      probe: (from, addr, p, seq, size) => void heard.push(`probe ${from === N1} ${addr === A1} ${p} ${seq} ${size}`),
      probeAck: (from, seq, size) => void heard.push(`ack ${from === N3} ${seq} ${size}`),
    };
    try {
      const probe = Buffer.alloc(1300 - 28);
      writeSleeveHeader(probe, 0, SLEEVE_PROBE, 1, N1, N1, N2);
      probe.writeUInt32BE(77, SLEEVE_HEADER);
      probe.writeUInt16BE(1300, SLEEVE_HEADER + 4);
      const ack = Buffer.alloc(SLEEVE_HEADER + 6);
      writeSleeveHeader(ack, 0, SLEEVE_PROBE_ACK, 1, N3, N3, N2);
      ack.writeUInt32BE(78, SLEEVE_HEADER);
      ack.writeUInt16BE(1472, SLEEVE_HEADER + 4);
      sock.land([
        { data: probe, from: A1, segs: 0 },
        { data: ack, from: A3, segs: 0 },
        { data: ack.subarray(0, SLEEVE_HEADER + 3), from: A3, segs: 0 },
      ]);
      expect(heard).toEqual(["probe true true 8472 77 1300", "ack true 78 1472"]);
      expect(port.tunnelCounters()).toMatchObject({ probes: 1, probeAcks: 1, badHeader: 1 });
    } finally {
      engine.stop();
    }
  });

  it("the mesh MTU follows setPathMtu; an IPv4 frame with DF above it gets an ICMP frag-needed back, one without DF is only dropped", async () => {
    const { port, engine, frames } = rig();
    try {
      expect(port.mtu).toBe(1440);
      port.setPathMtu(1300);
      expect([port.pathMtu, port.maxDatagram, port.mtu]).toEqual([1300, 1272, 1240]);
      port.setPathMtu(9000); // never above the configured underlay MTU
      expect(port.mtu).toBe(1440);
      port.setPathMtu(1300);
      // A 1241-byte IPv4 packet from 10.32.0.2 to 10.44.0.2 behind a known MAC.
      const pool = (engine.pool as { buf: Buffer }).buf;
      const at = pool.length - 4096;
      const mk = (df: boolean): number => {
        const f = pool.subarray(at, at + 14 + 1241);
        f.fill(0);
        f.writeUIntBE(0x020000000003, 0, 6);
        f.writeUIntBE(0x020000000001, 6, 6);
        f.writeUInt16BE(0x0800, 12);
        f[14] = 0x45;
        f.writeUInt16BE(1241, 16);
        f[20] = df ? 0x40 : 0;
        f[22] = 64;
        f[23] = 17;
        f.writeUInt32BE(0x0a200002, 26);
        f.writeUInt32BE(0x0a2c0002, 30);
        ipv4FillChecksum(pool, at + 14);
        return 14 + 1241;
      };
      port.txq.push(at, mk(false));
      port.flush(pool);
      port.txq.push(at, mk(true));
      port.flush(pool);
      expect(port.tunnelCounters()).toMatchObject({ tooBig: 2, fragNeeded: 1 });
      await new Promise((r) => setImmediate(r));
      expect(frames).toHaveLength(1);
      const icmp = frames[0];
      expect(icmp.readUIntBE(0, 6)).toBe(0x020000000001);
      expect(icmp.readUIntBE(6, 6)).toBe(0x020000000003);
      expect(icmp.readUInt32BE(14 + 12)).toBe(0x0a2c0002); // from the destination
      expect(icmp.readUInt32BE(14 + 16)).toBe(0x0a200002); // to the sender
      expect([icmp[34], icmp[35], icmp.readUInt16BE(34 + 6)]).toEqual([3, 4, 1240]);
      // The quote: the original IP header.
      expect(icmp.readUInt32BE(34 + 8 + 12)).toBe(0x0a200002);
      // At the mesh MTU it is sent.
      const sent0 = port.tunnelCounters().sent;
      port.txq.push(at, mk(true) - 1);
      port.flush(pool);
      // (An unknown MAC: along our broadcast tree.)
      expect(port.tunnelCounters().sent - sent0).toBe(1);
      expect(port.tunnelCounters().tooBig).toBe(2);
    } finally {
      engine.stop();
    }
  });
});
