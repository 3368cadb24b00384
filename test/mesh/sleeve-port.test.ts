/**
 * The mesh's data path (src/mesh/sleeve-port.ts) on a simulated kernel (test/fuzz/harness.ts
 * SimSocket): what it delivers, relays and forwards, and that garbage datagrams are
 * dropped at counters, never thrown.
 */
import { describe, expect, it } from "vitest";
import type { FrameSink } from "../../src/core/element.js";
import { Engine } from "../../src/core/engine.js";
import { SleevePort } from "../../src/mesh/sleeve-port.js";
import { SLEEVE_HEADER, shortId, writeSleeveHeader } from "../../src/mesh/wire.js";
import { Rng } from "../fuzz/gen.js";
import { SimSocket } from "../fuzz/harness.js";

const N1 = shortId("node1");
const N2 = shortId("node2");
const N3 = shortId("node3");
const A1 = 0xc0a80101; // 192.168.1.1
const A3 = 0xc0a80203; // 192.168.2.3

/** node2's port: node1 and node3 adjacent, node2 relays between them. */
function rig(): { port: SleevePort; sock: SimSocket; delivered: () => number; engine: Engine } {
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
  const sink: FrameSink = { process: (_p, f) => void (delivered += f.count) };
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
  return { port, sock: socks[0], delivered: () => delivered, engine };
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
});
