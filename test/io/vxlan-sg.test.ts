// The VXLAN transmit path's two ways of sending a TSO super-frame put the same bytes on
// the wire: scatter-gather (gsoHeaders + UdpHandle.sendv: headers from the staging area,
// payloads from where the TAP put them) and the copying path (gsoSegment + send). Both
// run over real UDP sockets on this namespace's loopback, a plain socket receives every
// datagram, and the two captures are compared byte for byte. Also: sendv's refusals
// (entries outside the pool, lengths that do not add up) are counted, never thrown.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TxQueue } from "../../src/core/batch.js";
import { nativeAvailable } from "../../src/io/native.js";
import { openUdp, type UdpHandle } from "../../src/io/udp-native.js";
import { V, VXLAN_COUNTERS } from "../../src/io/vxlan-counters.js";
import { VxlanFdb } from "../../src/io/vxlan-fdb.js";
import { STAGE_BYTES, VxlanTx } from "../../src/io/vxlan-tx.js";
import {
  emitEthernet,
  emitIpv4,
  emitTcp,
  emitUdp,
  ETHERTYPE_IPV4,
  IP_PROTO_TCP,
  IP_PROTO_UDP,
  parseIp,
  pseudoHeaderSum,
  TCP_ACK,
  TCP_FIN,
  TCP_PSH,
  tcpChecksumValid,
  writeU16,
} from "../../src/wire/index.js";
import { VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4 } from "../../src/wire/vnet.js";

const LO = parseIp("127.0.0.1");
const IP_A = parseIp("10.244.1.2");
const IP_B = parseIp("10.244.2.2");
const MAC_A = 0x0a5800000001;
const MAC_B = 0x0a5800000002;
const MSS = 1398;
const VNI = 1;
const VNET = 12;

const canRun = nativeAvailable();

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** An Ethernet/IPv4/TCP TSO super-frame at off as a TAP hands it over (CHECKSUM_PARTIAL, vnet header at off - 12). */
function tso(pool: Buffer, off: number, dst: number, payload: Buffer, seq: number, flags: number): number {
  const l3 = emitEthernet({ dstAddr: dst, srcAddr: MAC_A, etherType: ETHERTYPE_IPV4 }, pool, off);
  const totalLen = 20 + 20 + payload.length;
  const ipBase = { dscp: 0, ecn: 0, totalLen, ident: 0xfff0, df: true, mf: false, fragOffset: 0, ttl: 64 };
  emitIpv4({ ...ipBase, protocol: IP_PROTO_TCP, srcAddr: IP_A, dstAddr: IP_B, options: new Uint8Array(0) }, pool, off + l3);
  const l4 = l3 + 20;
  emitTcp({ srcPort: 40000, dstPort: 5201, seq, ack: 7, flags, window: 512, urgent: 0, options: new Uint8Array(0) }, pool, off + l4);
  payload.copy(pool, off + l4 + 20);
  writeU16(pool, off + l4 + 16, pseudoHeaderSum(IP_A, IP_B, IP_PROTO_TCP, 20 + payload.length));
  const h = off - VNET;
  pool.fill(0, h, off);
  pool[h] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  pool[h + 1] = VIRTIO_NET_HDR_GSO_TCPV4;
  pool.writeUInt16LE(l4 + 20, h + 2);
  pool.writeUInt16LE(MSS, h + 4);
  pool.writeUInt16LE(l4, h + 6);
  pool.writeUInt16LE(16, h + 8);
  return l4 + 20 + payload.length;
}

/** A plain Ethernet/IPv4/UDP frame (vnet header all zero). */
function udpFrame(pool: Buffer, off: number, n: number): number {
  const l3 = emitEthernet({ dstAddr: MAC_B, srcAddr: MAC_A, etherType: ETHERTYPE_IPV4 }, pool, off);
  const ipBase = { dscp: 0, ecn: 0, totalLen: 20 + 8 + n, ident: 1, df: true, mf: false, fragOffset: 0, ttl: 64 };
  emitIpv4({ ...ipBase, protocol: IP_PROTO_UDP, srcAddr: IP_A, dstAddr: IP_B, options: new Uint8Array(0) }, pool, off + l3);
  emitUdp({ srcPort: 5353, dstPort: 53, length: 8 + n }, pool, off + l3 + 20);
  pattern(n, 11).copy(pool, off + l3 + 28);
  pool.fill(0, off - VNET, off);
  return l3 + 28 + n;
}

describe.skipIf(!canRun)("VXLAN transmit: scatter-gather and copying put the same bytes on the wire", () => {
  let rx: UdpHandle;
  const rxPool = Buffer.alloc(512 * 2048);
  const rxArr = {
    offsets: new Uint32Array(512),
    lengths: new Uint32Array(512),
    addrs: new Uint32Array(512),
    ports: new Uint32Array(512),
    segs: new Uint32Array(512),
  };
  const got: Buffer[] = [];

  beforeAll(() => {
    rx = openUdp({
      bindAddr: LO,
      port: 0,
      rcvbuf: 8 * 1024 * 1024,
      pool: rxPool,
      rxBase: 0,
      slots: 512,
      slotSize: 2048,
      ...rxArr,
      onBatch: (n) => {
        for (let i = 0; i < n; i++) got.push(Buffer.from(rxPool.subarray(rxArr.offsets[i], rxArr.offsets[i] + rxArr.lengths[i])));
      },
    });
    rx.start();
  });
  afterAll(() => rx?.close());

  /** Sends the same queue through a VxlanTx opened with TAPNET_VXLAN_SG as given; returns the datagrams received and the counters. */
  async function run(sg: boolean, udpChecksum = true): Promise<{ dgrams: Buffer[]; c: Float64Array; path: string; sent: number }> {
    const pool = Buffer.alloc(4 * 1024 * 1024);
    const q = new TxQueue(8);
    let off = 256;
    const push = (len: number, at: number) => {
      q.push(at, len);
      off = (at + len + 64 + 255) & ~255;
    };
    push(tso(pool, off, MAC_B, pattern(20000, 1), 0xfffff000, TCP_ACK | TCP_PSH), off); // 15 segments, wraps seq
    push(udpFrame(pool, off, 300), off);
    push(tso(pool, off, MAC_B, pattern(900, 2), 5, TCP_ACK | TCP_PSH | TCP_FIN), off); // one segment
    push(tso(pool, off, 0x0a58000000ff, pattern(5000, 3), 77, TCP_ACK), off); // unknown MAC: flooded
    push(tso(pool, off, MAC_B, pattern(64000, 4), 1, TCP_ACK), off); // 46 segments
    const stage = 2 * 1024 * 1024;
    expect(off).toBeLessThan(stage);
    const c = new Float64Array(VXLAN_COUNTERS.names.length);
    const fdb = new VxlanFdb({ learning: false, remotes: ["127.0.0.1"], fdb: [{ mac: "0a:58:00:00:00:02", remote: "127.0.0.1" }] }, "vxlan port 'sg'", c);
    const owner = { c, lastTxError: "" };
    const tx = new VxlanTx({ vni: VNI, dstPort: rx.port, udpChecksum, mtu: 1450, localAddr: LO }, fdb, owner, q.capacity, () => false);
    const prev = process.env.TAPNET_VXLAN_SG;
    if (sg) delete process.env.TAPNET_VXLAN_SG;
    else process.env.TAPNET_VXLAN_SG = "0";
    const one = () => new Uint32Array(1);
    try {
      tx.open(pool, stage, openUdp, { offsets: one(), lengths: one(), addrs: one(), ports: one(), segs: one() });
    } finally {
      if (prev === undefined) delete process.env.TAPNET_VXLAN_SG;
      else process.env.TAPNET_VXLAN_SG = prev;
    }
    expect(stage + STAGE_BYTES).toBeLessThanOrEqual(pool.length);
    got.length = 0;
    const want = 15 + 1 + 1 + 4 + 46;
    const sent = tx.send(pool, q, true);
    const path = tx.txPath;
    const until = Date.now() + 10_000;
    while (got.length < want && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    tx.close();
    return { dgrams: got.splice(0), c, path, sent };
  }

  it("the same datagrams, each a valid VXLAN packet with a valid inner TCP checksum", async () => {
    const a = await run(true);
    const b = await run(false);
    expect(a.path).toBe("scatter-gather");
    expect(b.path).toBe("copy (TAPNET_VXLAN_SG=0)");
    expect(a.sent).toBe(5);
    expect(b.sent).toBe(5);
    expect(a.dgrams.length).toBe(67);
    expect(b.dgrams.length).toBe(67);
    // Messages go out per send socket, so compare as multisets, then in order within a flow.
    const hex = (d: Buffer[]) => d.map((x) => x.toString("hex")).sort();
    expect(hex(a.dgrams)).toEqual(hex(b.dgrams));
    expect(a.dgrams.map((x) => x.toString("hex"))).toEqual(b.dgrams.map((x) => x.toString("hex")));
    for (const name of ["encapsulated", "segmented", "flooded", "txErrors", "badOffload", "tooBig"] as const) {
      expect(a.c[V[name]]).toBe(b.c[V[name]]);
    }
    expect(a.c[V.segmented]).toBe(4);
    expect(a.c[V.txErrors]).toBe(0);
    let tcp = 0;
    for (const d of a.dgrams) {
      expect(d[0]).toBe(0x08); // VXLAN I flag (RFC 7348 section 5)
      expect(d.readUIntBE(4, 3)).toBe(VNI);
      const ip = 8 + 14;
      expect(d.length).toBeLessThanOrEqual(8 + 14 + 1450);
      if (d[ip + 9] !== IP_PROTO_TCP) continue;
      tcp++;
      const ipLen = d.readUInt16BE(ip + 2);
      expect(ip + ipLen).toBe(d.length);
      expect(tcpChecksumValid(d, ip + 20, ipLen - 20, IP_A, IP_B)).toBe(true);
    }
    expect(tcp).toBe(66);
  });

  it("without outer UDP checksums (one message per segment, no UDP GSO): the same datagrams again", async () => {
    const a = await run(true, false);
    const b = await run(false, false);
    expect(a.path).toBe("scatter-gather");
    expect(a.dgrams.length).toBe(67);
    expect(a.dgrams.map((x) => x.toString("hex"))).toEqual(b.dgrams.map((x) => x.toString("hex")));
    expect(a.c[V.txErrors]).toBe(0);
    expect(a.c[V.encapsulated]).toBe(67);
  });

  it("sendv refuses entries outside the pool and lengths that do not add up: counted, never thrown", () => {
    const pool = Buffer.alloc(4096);
    const one = () => new Uint32Array(4);
    const s = openUdp({
      bindAddr: LO,
      port: 0,
      pool,
      rxBase: 0,
      slots: 1,
      slotSize: 1,
      offsets: one(),
      lengths: one(),
      addrs: one(),
      ports: one(),
      segs: one(),
    });
    try {
      const send = s.sendv;
      expect(typeof send).toBe("function");
      if (send === undefined) return;
      const io = Uint32Array.from([0, 100, 4000, 0]);
      const il = Uint32Array.from([8, 50, 200, 10]);
      const firsts = Uint32Array.from([0, 2, 0, 3]);
      const counts = Uint32Array.from([2, 1, 2, 1]);
      const lengths = Uint32Array.from([58, 200, 57, 10]);
      const addrs = Uint32Array.from([LO, LO, LO, LO]);
      const n = send.call(s, pool, io, il, firsts, counts, lengths, addrs, rx.port, null, 4);
      expect(n).toBe(2); // messages 0 and 3
      expect(Array.from(lengths)).toEqual([58, 0, 0, 10]);
      expect(s.stats().txErrors).toBe(2);
    } finally {
      s.close();
    }
  });
});
