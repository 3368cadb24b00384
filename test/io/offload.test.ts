// Software offloads (native/offload.c through src/io/offload.ts): TSO segmentation,
// checksum completion and receive coalescing. Frames are built with src/wire codecs;
// checksums are verified both with the wire helpers and with an independent RFC 1071
// sum written here, and (when tshark is installed) by Wireshark's dissectors.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { nativeAvailable } from "../../src/io/native.js";
import {
  OFFLOAD_ERR_MALFORMED,
  OFFLOAD_ERR_NO_ROOM,
  OFFLOAD_ERR_RANGE,
  completeChecksum,
  csumComplete,
  groCoalesce,
  groFrames,
  gsoHeaders,
  gsoSegment,
} from "../../src/io/offload.js";
import {
  VIRTIO_NET_HDR_F_DATA_VALID as VNET_F_DATA_VALID,
  VIRTIO_NET_HDR_F_NEEDS_CSUM as VNET_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_ECN as VNET_GSO_ECN,
  VIRTIO_NET_HDR_GSO_NONE as VNET_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4 as VNET_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6 as VNET_GSO_TCPV6,
} from "../../src/wire/vnet.js";
import { PcapngWriter } from "../../src/io/pcapng.js";
import { SoftOffload } from "../../src/io/soft-offload.js";
import { TxQueue } from "../../src/core/batch.js";
import {
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  ETHERTYPE_QINQ,
  ETHERTYPE_VLAN,
  IP_PROTO_TCP,
  IP_PROTO_UDP,
  TCP_ACK,
  TCP_CWR,
  TCP_FIN,
  TCP_CHECKSUM_OFF,
  TCP_PSH,
  emitArpRequest,
  emitEthernet,
  emitIpv4,
  emitTcp,
  emitUdp,
  emitVlan,
  ipv4ChecksumValid,
  ipv4FillChecksum,
  ipv4GetIdent,
  ipv4GetTotalLen,
  parseIp,
  pseudoHeaderSum,
  readU16,
  readU32,
  tcpChecksumValid,
  tcpFillChecksum,
  tcpGetFlags,
  udpChecksumValid,
  writeU16,
  writeU32,
} from "../../src/wire/index.js";

const VNET = 12;
const MAC_A = 0x020000000001;
const MAC_B = 0x020000000002;
const IP_A = parseIp("10.78.0.1");
const IP_B = parseIp("10.78.0.2");
/** NOP, NOP, Timestamp (RFC 7323 appendix A layout): 12 option bytes. */
const TS_OPTIONS = Uint8Array.from([1, 1, 8, 10, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
const MSS = 1448;

// ---------------------------------------------------------------------------
// Independent checks (no src/wire code): RFC 1071 over explicit byte lists.

/** Ones' complement sum of the concatenation of `parts`, folded (RFC 1071 section 4.1). */
function onesSum(parts: Uint8Array[]): number {
  const all = Buffer.concat(parts);
  let sum = 0;
  for (let i = 0; i < all.length; i += 2) sum += (all[i] << 8) | (i + 1 < all.length ? all[i + 1] : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 65536);
  return sum;
}

function u16be(v: number): Uint8Array {
  return Uint8Array.from([(v >>> 8) & 0xff, v & 0xff]);
}

/** True when the TCP/UDP segment `seg` verifies against the IPv4 or IPv6 pseudo-header. */
function l4SumOk(src: Uint8Array, dst: Uint8Array, proto: number, seg: Uint8Array): boolean {
  const len = seg.length;
  const ph =
    src.length === 4
      ? [src, dst, Uint8Array.from([0, proto]), u16be(len)]
      : [src, dst, u16be(len >>> 16), u16be(len & 0xffff), Uint8Array.from([0, 0, 0, proto])];
  return onesSum([...ph, seg]) === 0xffff;
}

// ---------------------------------------------------------------------------
// Frame builders (src/wire codecs).

interface TcpSpec {
  srcPort?: number;
  dstPort?: number;
  seq: number;
  ack?: number;
  flags: number;
  window?: number;
  ident?: number;
  ttl?: number;
  df?: boolean;
  /** One 802.1Q / 802.1ad tag. */
  tpid?: number;
  vid?: number;
  options?: Uint8Array;
  srcMac?: number;
}

interface Built {
  len: number;
  l3: number;
  l4: number;
  hdrLen: number;
}

/** An Ethernet(+tag)/IPv4/TCP frame at `off`, TCP checksum left 0. */
function buildTcp4(buf: Buffer, off: number, payload: Uint8Array, s: TcpSpec): Built {
  const l3 =
    s.tpid !== undefined
      ? emitVlan({ dstAddr: MAC_B, srcAddr: s.srcMac ?? MAC_A, tpid: s.tpid, pcp: 0, dei: 0, vid: s.vid ?? 100, etherType: ETHERTYPE_IPV4 }, buf, off)
      : emitEthernet({ dstAddr: MAC_B, srcAddr: s.srcMac ?? MAC_A, etherType: ETHERTYPE_IPV4 }, buf, off);
  const options = s.options ?? TS_OPTIONS;
  const thl = 20 + options.length;
  const ihl = emitIpv4(
    {
      dscp: 0,
      ecn: 0,
      totalLen: 20 + thl + payload.length,
      ident: s.ident ?? 0x1234,
      df: s.df ?? true,
      mf: false,
      fragOffset: 0,
      ttl: s.ttl ?? 64,
      protocol: IP_PROTO_TCP,
      srcAddr: IP_A,
      dstAddr: IP_B,
      options: new Uint8Array(0),
    },
    buf,
    off + l3,
  );
  const l4 = l3 + ihl;
  emitTcp(
    {
      srcPort: s.srcPort ?? 40000,
      dstPort: s.dstPort ?? 5201,
      seq: s.seq,
      ack: s.ack ?? 0x01020304,
      flags: s.flags,
      window: s.window ?? 512,
      urgent: 0,
      options,
    },
    buf,
    off + l4,
  );
  buf.set(payload, off + l4 + thl);
  return { len: l4 + thl + payload.length, l3, l4, hdrLen: l4 + thl };
}

/** Writes a virtio_net_hdr_v1 at off - 12. */
function setVnet(
  buf: Buffer,
  off: number,
  v: { flags: number; gsoType: number; hdrLen?: number; gsoSize?: number; csumStart?: number; csumOffset?: number },
): void {
  const h = off - VNET;
  buf[h] = v.flags;
  buf[h + 1] = v.gsoType;
  buf.writeUInt16LE(v.hdrLen ?? 0, h + 2);
  buf.writeUInt16LE(v.gsoSize ?? 0, h + 4);
  buf.writeUInt16LE(v.csumStart ?? 0, h + 6);
  buf.writeUInt16LE(v.csumOffset ?? 0, h + 8);
  buf.writeUInt16LE(0, h + 10);
}

function readVnet(buf: Buffer, off: number) {
  const h = off - VNET;
  return {
    flags: buf[h],
    gsoType: buf[h + 1],
    hdrLen: buf.readUInt16LE(h + 2),
    gsoSize: buf.readUInt16LE(h + 4),
    csumStart: buf.readUInt16LE(h + 6),
    csumOffset: buf.readUInt16LE(h + 8),
    numBuffers: buf.readUInt16LE(h + 10),
  };
}

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

/** A TSO super-frame as Linux hands it to a TAP: CHECKSUM_PARTIAL with the pseudo-header seed. */
function buildTso4(buf: Buffer, off: number, payload: Uint8Array, s: TcpSpec, ecn = false): Built {
  const b = buildTcp4(buf, off, payload, s);
  writeU16(buf, off + b.l4 + TCP_CHECKSUM_OFF, pseudoHeaderSum(IP_A, IP_B, IP_PROTO_TCP, b.len - b.l4));
  setVnet(buf, off, {
    flags: VNET_F_NEEDS_CSUM,
    gsoType: VNET_GSO_TCPV4 | (ecn ? VNET_GSO_ECN : 0),
    hdrLen: b.hdrLen,
    gsoSize: MSS,
    csumStart: b.l4,
    csumOffset: 16,
  });
  return b;
}

const SRC6 = Buffer.from("fd00000000000000000000000000000a", "hex");
const DST6 = Buffer.from("fd00000000000000000000000000000b", "hex");

/** An Ethernet/IPv6/TCP TSO super-frame (src/wire has no IPv6 codec: fixed header by hand, RFC 8200 section 3). */
function buildTso6(buf: Buffer, off: number, payload: Uint8Array, seq: number, flags: number): Built {
  const l3 = emitEthernet({ dstAddr: MAC_B, srcAddr: MAC_A, etherType: ETHERTYPE_IPV6 }, buf, off);
  const ip = off + l3;
  const thl = 20 + TS_OPTIONS.length;
  writeU32(buf, ip, 0x60000000);
  writeU16(buf, ip + 4, thl + payload.length);
  buf[ip + 6] = IP_PROTO_TCP;
  buf[ip + 7] = 64;
  buf.set(SRC6, ip + 8);
  buf.set(DST6, ip + 24);
  const l4 = l3 + 40;
  emitTcp({ srcPort: 40000, dstPort: 5201, seq, ack: 7, flags, window: 512, urgent: 0, options: TS_OPTIONS }, buf, off + l4);
  buf.set(payload, off + l4 + thl);
  const len = l4 + thl + payload.length;
  setVnet(buf, off, {
    flags: VNET_F_NEEDS_CSUM,
    gsoType: VNET_GSO_TCPV6,
    hdrLen: l4 + thl,
    gsoSize: MSS,
    csumStart: l4,
    csumOffset: 16,
  });
  return { len, l3, l4, hdrLen: l4 + thl };
}

const ipBytes = (a: number): Uint8Array => Uint8Array.from([a >>> 24, (a >>> 16) & 0xff, (a >>> 8) & 0xff, a & 0xff]);

/** Segments `frame` (at off in src) into a fresh 0xa5-filled dst; returns what the checks need. */
function segment(src: Buffer, off: number, len: number, prefix: number, dstSize = 64 * 1024) {
  const dst = Buffer.alloc(dstSize, 0xa5);
  const lengths = new Uint32Array(64);
  const base = 16;
  const n = gsoSegment(src, off, len, dst, base, dst.length, prefix, lengths);
  return { dst, lengths, base, n };
}

const canRun = nativeAvailable();

describe.skipIf(!canRun)("gsoHeaders (scatter-gather): the gather entries carry gsoSegment's bytes", () => {
  const PREFIX = 8;
  /** gsoHeaders over `src` (frame at off): the header area follows at hdrOff; every segment gathered. */
  function gathered(src: Buffer, off: number, len: number, hdrOff: number, iovN = 256, first = 3) {
    const io = new Uint32Array(iovN);
    const il = new Uint32Array(iovN);
    const n = gsoHeaders(src, off, len, hdrOff, src.length, PREFIX, io, il, first);
    const segs: Buffer[] = [];
    for (let k = 0; k < n; k++) {
      const h = first + 2 * k;
      segs.push(Buffer.concat([src.subarray(io[h], io[h] + il[h]), src.subarray(io[h + 1], io[h + 1] + il[h + 1])]));
    }
    return { n, segs, io, il };
  }
  /** gsoSegment's segments, each behind its prefix (0xa5 bytes, as gathered() leaves them: not written). */
  function copied(src: Buffer, off: number, len: number) {
    const { dst, lengths, base, n } = segment(src, off, len, PREFIX, 256 * 1024);
    const stride = lengths[0] + PREFIX;
    const segs: Buffer[] = [];
    let at = base;
    for (let k = 0; k < n; k++) {
      segs.push(Buffer.from(dst.subarray(at, at + PREFIX + lengths[k])));
      at += stride;
    }
    return { n, segs };
  }
  const cases: [string, (b: Buffer, off: number) => Built][] = [
    [
      "TCPv4, 20000 bytes, CWR|PSH|FIN, ECN",
      (b, off) => buildTso4(b, off, pattern(20000, 3), { seq: 0xfffff000, ident: 0xfffa, flags: TCP_ACK | TCP_PSH | TCP_FIN | TCP_CWR }, true),
    ],
    ["TCPv4 in an 802.1Q tag, odd payload 12345", (b, off) => buildTso4(b, off, pattern(12345, 4), { seq: 9, flags: TCP_ACK, tpid: ETHERTYPE_VLAN, vid: 7 })],
    ["TCPv4, one segment (payload < MSS)", (b, off) => buildTso4(b, off, pattern(999, 5), { seq: 1, flags: TCP_ACK | TCP_PSH })],
    ["TCPv4, 64 KiB", (b, off) => buildTso4(b, off, pattern(65000, 6), { seq: 77, flags: TCP_ACK, options: new Uint8Array(0) })],
    ["TCPv6, 9000 bytes", (b, off) => buildTso6(b, off, pattern(9000, 8), 0x7fffffff, TCP_ACK | TCP_PSH)],
  ];
  for (const [name, build] of cases) {
    it(name, () => {
      const src = Buffer.alloc(160 * 1024, 0xa5);
      const off = 64;
      const b = build(src, off);
      const before = Buffer.from(src.subarray(0, off + b.len));
      const want = copied(src, off, b.len);
      const got = gathered(src, off, b.len, 80 * 1024);
      expect(got.n).toBe(want.n);
      expect(got.n).toBeGreaterThan(0);
      for (let k = 0; k < got.n; k++) expect(got.segs[k].equals(want.segs[k])).toBe(true);
      // The super-frame is only read: its payload is sent from where it is.
      expect(src.subarray(0, off + b.len).equals(before)).toBe(true);
      // Entry 2k+1 points into the super-frame; entry 2k into the header area, prefix + headers long.
      expect(got.io[4]).toBe(off + b.hdrLen);
      expect(got.il[3]).toBe(PREFIX + b.hdrLen);
      expect(got.io[3]).toBe(80 * 1024);
    });
  }
  it("reports no room (header area or entries), bad ranges and malformed frames without throwing", () => {
    const src = Buffer.alloc(64 * 1024);
    const b = buildTso4(src, 64, pattern(20000, 9), { seq: 1, flags: TCP_ACK });
    const io = new Uint32Array(64);
    const il = new Uint32Array(64);
    const n = Math.ceil(20000 / MSS);
    // Header area one byte short of n headers.
    const need = n * (PREFIX + b.hdrLen);
    expect(gsoHeaders(src, 64, b.len, 40000, 40000 + need - 1, PREFIX, io, il, 0)).toBe(OFFLOAD_ERR_NO_ROOM);
    expect(gsoHeaders(src, 64, b.len, 40000, 40000 + need, PREFIX, io, il, 0)).toBe(n);
    // Entries: 2 per segment from `first` on.
    expect(gsoHeaders(src, 64, b.len, 40000, 64 * 1024, PREFIX, io, il, 64 - 2 * n + 1)).toBe(OFFLOAD_ERR_NO_ROOM);
    expect(gsoHeaders(src, 64, b.len, 40000, 64 * 1024, PREFIX, io, il, 65)).toBe(OFFLOAD_ERR_RANGE);
    // The header area over the frame, outside the buffer, the frame without room for its vnet header.
    expect(gsoHeaders(src, 64, b.len, 100, 64 * 1024, PREFIX, io, il, 0)).toBe(OFFLOAD_ERR_RANGE);
    expect(gsoHeaders(src, 64, b.len, 40000, 64 * 1024 + 1, PREFIX, io, il, 0)).toBe(OFFLOAD_ERR_RANGE);
    expect(gsoHeaders(src, 4, b.len, 40000, 64 * 1024, PREFIX, io, il, 0)).toBe(OFFLOAD_ERR_RANGE);
    // Not a TSO frame (gso type none).
    src[64 - VNET + 1] = VNET_GSO_NONE;
    expect(gsoHeaders(src, 64, b.len, 40000, 64 * 1024, PREFIX, io, il, 0)).toBe(OFFLOAD_ERR_MALFORMED);
  });
});

describe.skipIf(!canRun)("gsoSegment", () => {
  const PAYLOAD = pattern(20000, 7);
  const SEQ0 = 0xfffff000; // wraps within the burst
  const ID0 = 0xfffa; // wraps too

  for (const prefix of [0, 8]) {
    it(`cuts a 20000-byte TCPv4 TSO frame (timestamps, CWR|PSH|FIN) at MSS ${MSS} with prefix ${prefix}`, () => {
      const src = Buffer.alloc(32 * 1024);
      const off = 64;
      const b = buildTso4(src, off, PAYLOAD, { seq: SEQ0, ident: ID0, flags: TCP_ACK | TCP_PSH | TCP_FIN | TCP_CWR }, true);
      const before = Buffer.from(src);
      const { dst, lengths, base, n } = segment(src, off, b.len, prefix);
      const count = Math.ceil(PAYLOAD.length / MSS);
      expect(n).toBe(count);
      expect(src.equals(before)).toBe(true); // the source is read-only
      const stride = prefix + b.hdrLen + MSS;
      const got: Buffer[] = [];
      for (let k = 0; k < n; k++) {
        const at = base + k * stride;
        const f = at + prefix;
        const segLen = k < n - 1 ? MSS : PAYLOAD.length - (n - 1) * MSS;
        expect(lengths[k]).toBe(b.hdrLen + segLen);
        // The caller's prefix bytes are not touched.
        for (let i = 0; i < prefix; i++) expect(dst[at + i]).toBe(0xa5);
        // Headers as the original, but for the per-segment fields.
        expect(dst.subarray(f, f + b.l3).equals(src.subarray(off, off + b.l3))).toBe(true);
        expect(ipv4GetTotalLen(dst, f + b.l3)).toBe(lengths[k] - b.l3);
        expect(ipv4GetIdent(dst, f + b.l3)).toBe((ID0 + k) & 0xffff);
        expect(ipv4ChecksumValid(dst, f + b.l3)).toBe(true);
        expect(onesSum([dst.subarray(f + b.l3, f + b.l4)])).toBe(0xffff);
        expect(readU32(dst, f + b.l4 + 4)).toBe((SEQ0 + k * MSS) >>> 0);
        const flags = tcpGetFlags(dst, f + b.l4);
        expect(flags & TCP_ACK).toBe(TCP_ACK);
        expect((flags & TCP_CWR) !== 0).toBe(k === 0);
        expect((flags & TCP_FIN) !== 0).toBe(k === n - 1);
        expect((flags & TCP_PSH) !== 0).toBe(k === n - 1);
        expect(dst.subarray(f + b.l4 + 20, f + b.hdrLen).equals(Buffer.from(TS_OPTIONS))).toBe(true);
        const seg = dst.subarray(f + b.l4, f + lengths[k]);
        expect(l4SumOk(ipBytes(IP_A), ipBytes(IP_B), IP_PROTO_TCP, seg)).toBe(true);
        expect(tcpChecksumValid(dst, f + b.l4, lengths[k] - b.l4, IP_A, IP_B)).toBe(true);
        got.push(dst.subarray(f + b.hdrLen, f + lengths[k]));
      }
      expect(Buffer.concat(got).equals(PAYLOAD)).toBe(true);
      // Nothing written after the last segment.
      const end = base + (n - 1) * stride + prefix + lengths[n - 1];
      expect(dst.subarray(end).every((x) => x === 0xa5)).toBe(true);
    });
  }

  for (const tpid of [ETHERTYPE_VLAN, ETHERTYPE_QINQ]) {
    it(`handles a TSO frame with one tag (TPID 0x${tpid.toString(16)})`, () => {
      const src = Buffer.alloc(16 * 1024);
      const payload = pattern(5000, 3);
      const b = buildTso4(src, 32, payload, { seq: 1000, flags: TCP_ACK | TCP_PSH, tpid, vid: 42 });
      expect(b.l4).toBe(38);
      const { dst, lengths, base, n } = segment(src, 32, b.len, 8);
      expect(n).toBe(4);
      const stride = 8 + b.hdrLen + MSS;
      for (let k = 0; k < n; k++) {
        const f = base + k * stride + 8;
        expect(dst.subarray(f, f + 18).equals(src.subarray(32, 50))).toBe(true);
        expect(ipv4ChecksumValid(dst, f + 18)).toBe(true);
        expect(l4SumOk(ipBytes(IP_A), ipBytes(IP_B), IP_PROTO_TCP, dst.subarray(f + b.l4, f + lengths[k]))).toBe(true);
      }
    });
  }

  it("cuts a TCPv6 TSO frame (payload length, checksum with the IPv6 pseudo-header)", () => {
    const src = Buffer.alloc(16 * 1024);
    const payload = pattern(4000, 11);
    const b = buildTso6(src, 12, payload, 0x7ffffff0, TCP_ACK | TCP_FIN);
    const { dst, lengths, base, n } = segment(src, 12, b.len, 0);
    expect(n).toBe(3);
    const stride = b.hdrLen + MSS;
    const got: Buffer[] = [];
    for (let k = 0; k < n; k++) {
      const f = base + k * stride;
      expect(readU16(dst, f + b.l3 + 4)).toBe(lengths[k] - b.l4);
      expect(readU32(dst, f + b.l4 + 4)).toBe((0x7ffffff0 + k * MSS) >>> 0);
      expect((tcpGetFlags(dst, f + b.l4) & TCP_FIN) !== 0).toBe(k === n - 1);
      expect(l4SumOk(SRC6, DST6, IP_PROTO_TCP, dst.subarray(f + b.l4, f + lengths[k]))).toBe(true);
      got.push(dst.subarray(f + b.hdrLen, f + lengths[k]));
    }
    expect(Buffer.concat(got).equals(payload)).toBe(true);
  });

  it("makes one segment with a full checksum when the payload fits in one MSS", () => {
    const src = Buffer.alloc(4096);
    const payload = pattern(MSS, 5);
    const b = buildTso4(src, 12, payload, { seq: 1, flags: TCP_ACK | TCP_PSH });
    const { dst, lengths, base, n } = segment(src, 12, b.len, 0);
    expect(n).toBe(1);
    expect(lengths[0]).toBe(b.len);
    expect(tcpChecksumValid(dst, base + b.l4, b.len - b.l4, IP_A, IP_B)).toBe(true);
    expect(tcpGetFlags(dst, base + b.l4)).toBe(TCP_ACK | TCP_PSH);
  });

  describe("rejects", () => {
    const payload = pattern(3000, 9);
    const fresh = () => {
      const src = Buffer.alloc(8192);
      const b = buildTso4(src, 12, payload, { seq: 1, flags: TCP_ACK });
      return { src, b };
    };
    const run = (src: Buffer, len: number, dstSize = 16 * 1024, lengths = new Uint32Array(64)) => {
      const dst = Buffer.alloc(dstSize, 0xa5);
      const n = gsoSegment(src, 12, len, dst, 0, dst.length, 0, lengths);
      return { n, dst };
    };

    it("a frame that is not GSO (gso_type NONE, or UDP GSO)", () => {
      const { src, b } = fresh();
      src[1] = VNET_GSO_NONE;
      expect(run(src, b.len).n).toBe(OFFLOAD_ERR_MALFORMED);
      src[1] = 5; // VIRTIO_NET_HDR_GSO_UDP_L4
      expect(run(src, b.len).n).toBe(OFFLOAD_ERR_MALFORMED);
      src[1] = VNET_GSO_TCPV6; // says IPv6, is IPv4
      expect(run(src, b.len).n).toBe(OFFLOAD_ERR_MALFORMED);
    });

    it("a truncated frame (shorter than its IP total length), and one with trailing bytes", () => {
      const { src, b } = fresh();
      expect(run(src, b.len - 1).n).toBe(OFFLOAD_ERR_MALFORMED);
      expect(run(src, b.len + 1).n).toBe(OFFLOAD_ERR_MALFORMED);
      expect(run(src, 40).n).toBe(OFFLOAD_ERR_MALFORMED); // inside the TCP header
      expect(run(src, 10).n).toBe(OFFLOAD_ERR_MALFORMED); // not even Ethernet
    });

    it("MSS 0", () => {
      const { src, b } = fresh();
      src.writeUInt16LE(0, 4);
      expect(run(src, b.len).n).toBe(OFFLOAD_ERR_MALFORMED);
    });

    it("csum_start not at the TCP header, or csum_offset not 16", () => {
      const { src, b } = fresh();
      src.writeUInt16LE(b.l4 + 4, 6);
      expect(run(src, b.len).n).toBe(OFFLOAD_ERR_MALFORMED);
      src.writeUInt16LE(b.l4, 6);
      src.writeUInt16LE(6, 8);
      expect(run(src, b.len).n).toBe(OFFLOAD_ERR_MALFORMED);
    });

    it("an IHL that lies (below 5, or past the end of the frame), a data offset past the end", () => {
      const { src, b } = fresh();
      const ip = 12 + b.l3;
      src[ip] = 0x44;
      ipv4FillChecksum(src, ip);
      expect(run(src, b.len).n).toBe(OFFLOAD_ERR_MALFORMED);
      // IHL 15 on a frame that ends inside those 60 bytes; csum_start agreeing with it.
      src[ip] = 0x4f;
      src.writeUInt16LE(14 + 60, 6);
      writeU16(src, ip + 2, 50);
      expect(run(src, 64).n).toBe(OFFLOAD_ERR_MALFORMED);
      const { src: s2, b: b2 } = fresh();
      s2[12 + b2.l4 + 12] = 0xf0; // doff 15: 60 bytes of TCP header, in a 74-byte frame
      writeU16(s2, 12 + b2.l3 + 2, 60);
      ipv4FillChecksum(s2, 12 + b2.l3);
      expect(run(s2, b2.l4 + 40).n).toBe(OFFLOAD_ERR_MALFORMED);
    });

    it("a fragment, a non-TCP protocol, IPv6 with an extension header", () => {
      const { src, b } = fresh();
      writeU16(src, 12 + b.l3 + 6, 0x2000); // MF
      expect(run(src, b.len).n).toBe(OFFLOAD_ERR_MALFORMED);
      const f2 = fresh();
      f2.src[12 + f2.b.l3 + 9] = IP_PROTO_UDP;
      expect(run(f2.src, f2.b.len).n).toBe(OFFLOAD_ERR_MALFORMED);
      const s6 = Buffer.alloc(8192);
      const b6 = buildTso6(s6, 12, payload, 1, TCP_ACK);
      s6[12 + b6.l3 + 6] = 0; // Hop-by-Hop Options
      expect(run(s6, b6.len).n).toBe(OFFLOAD_ERR_MALFORMED);
    });

    it("more segments than lengths can hold", () => {
      const { src, b } = fresh();
      expect(run(src, b.len, 16 * 1024, new Uint32Array(2)).n).toBe(OFFLOAD_ERR_MALFORMED);
      expect(run(src, b.len, 16 * 1024, new Uint32Array(3)).n).toBe(3);
    });

    it("-2 (no room) when the segments would pass dstEnd, writing nothing past it", () => {
      const { src, b } = fresh();
      const need = 2 * (b.hdrLen + MSS) + b.hdrLen + (3000 - 2 * MSS);
      expect(run(src, b.len, need - 1).n).toBe(OFFLOAD_ERR_NO_ROOM);
      expect(run(src, b.len, need).n).toBe(3);
      const dst = Buffer.alloc(need + 100, 0xa5);
      expect(gsoSegment(src, 12, b.len, dst, 0, need - 1, 0, new Uint32Array(8))).toBe(OFFLOAD_ERR_NO_ROOM);
      expect(dst.every((x) => x === 0xa5)).toBe(true);
    });

    it("-3 for arguments outside their buffers or overlapping, TypeError for wrong types", () => {
      const { src, b } = fresh();
      const dst = Buffer.alloc(16 * 1024);
      const L = new Uint32Array(8);
      expect(gsoSegment(src, 11, b.len, dst, 0, dst.length, 0, L)).toBe(OFFLOAD_ERR_RANGE);
      expect(gsoSegment(src, 12, src.length, dst, 0, dst.length, 0, L)).toBe(OFFLOAD_ERR_RANGE);
      expect(gsoSegment(src, 12, b.len, dst, 0, dst.length + 1, 0, L)).toBe(OFFLOAD_ERR_RANGE);
      expect(gsoSegment(src, 12, b.len, dst, 100, 99, 0, L)).toBe(OFFLOAD_ERR_RANGE);
      expect(gsoSegment(src, -1, b.len, dst, 0, dst.length, 0, L)).toBe(OFFLOAD_ERR_RANGE);
      expect(gsoSegment(src, 12.5, b.len, dst, 0, dst.length, 0, L)).toBe(OFFLOAD_ERR_RANGE);
      expect(gsoSegment(src, 12, b.len, src, 1000, src.length, 0, L)).toBe(OFFLOAD_ERR_RANGE); // overlap
      const bad = (fn: () => unknown) => expect(fn).toThrow(TypeError);
      bad(() => gsoSegment(src, "12" as unknown as number, b.len, dst, 0, dst.length, 0, L));
      bad(() => gsoSegment(src, 12, b.len, dst, 0, dst.length, 0, [] as unknown as Uint32Array));
      bad(() => gsoSegment(src, 12, b.len, new Uint16Array(8) as unknown as Buffer, 0, 8, 0, L));
      bad(() => (gsoSegment as unknown as (...a: unknown[]) => number)(src, 12));
    });
  });

  it("tshark agrees: every segment has a good IPv4 and TCP checksum", (ctx) => {
    let tshark = "";
    try {
      tshark = execFileSync("which", ["tshark"], { encoding: "utf8" }).trim();
    } catch {
      ctx.skip();
    }
    const src = Buffer.alloc(32 * 1024);
    const b = buildTso4(src, 64, PAYLOAD, { seq: SEQ0, ident: ID0, flags: TCP_ACK | TCP_PSH | TCP_FIN });
    const { dst, lengths, base, n } = segment(src, 64, b.len, 8);
    const stride = 8 + b.hdrLen + MSS;
    const dir = mkdtempSync(join(tmpdir(), "tapnet-offload-"));
    try {
      const write = (name: string, frames: [number, number][]) => {
        const chunks: Buffer[] = [];
        const w = new PcapngWriter((c) => chunks.push(c));
        w.header([{ name: "seg" }]);
        for (const [o, l] of frames) w.packet(0, dst, o, l, 1_700_000_000_000_000_000);
        w.flush();
        const file = join(dir, name);
        writeFileSync(file, Buffer.concat(chunks));
        return execFileSync(
          tshark,
          [
            "-r",
            file,
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
            "-T",
            "fields",
            "-e",
            "tcp.checksum.status",
            "-e",
            "ip.checksum.status",
          ],
          { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] },
        )
          .trim()
          .split("\n");
      };
      const frames: [number, number][] = [];
      for (let k = 0; k < n; k++) frames.push([base + k * stride + 8, lengths[k]]);
      // Wireshark's proto_checksum_status: 0 bad, 1 good, 2 unverified.
      expect(write("segs.pcapng", frames)).toEqual(Array(n).fill("1\t1"));
      // A control, so that "1" is known to mean something: one corrupted segment.
      dst[frames[1][0] + lengths[1] - 1] ^= 0xff;
      expect(write("bad.pcapng", frames.slice(0, 3))).toEqual(["1\t1", "0\t1", "1\t1"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!canRun)("SoftOffload (the TxOffload of ports whose device takes no virtio-net header)", () => {
  it("writes super-frames as segments, completes partial checksums, drops and counts malformed ones", () => {
    const pool = Buffer.alloc(1024 * 1024);
    const q = new TxQueue(8);
    // 1: a TSO super-frame; 2: a frame with a partial checksum; 3: a plain frame;
    // 4: a super-frame with an MSS of 0 (malformed); 5: another TSO super-frame.
    const payload = pattern(20000, 11);
    const tso = buildTso4(pool, 64, payload, { seq: 1000, flags: TCP_ACK | TCP_PSH });
    q.push(64, tso.len);
    const small = buildTcp4(pool, 32 * 1024, pattern(100, 2), { seq: 5, flags: TCP_ACK });
    writeU16(pool, 32 * 1024 + small.l4 + TCP_CHECKSUM_OFF, pseudoHeaderSum(IP_A, IP_B, IP_PROTO_TCP, small.len - small.l4));
    setVnet(pool, 32 * 1024, { flags: VNET_F_NEEDS_CSUM, gsoType: VNET_GSO_NONE, csumStart: small.l4, csumOffset: 16 });
    q.push(32 * 1024, small.len);
    const plain = buildTcp4(pool, 40 * 1024, pattern(60, 3), { seq: 9, flags: TCP_ACK });
    setVnet(pool, 40 * 1024, { flags: 0, gsoType: VNET_GSO_NONE });
    q.push(40 * 1024, plain.len);
    const bad = buildTso4(pool, 48 * 1024, pattern(3000, 4), { seq: 1, flags: TCP_ACK });
    pool.writeUInt16LE(0, 48 * 1024 - VNET + 4); // gso_size 0
    q.push(48 * 1024, bad.len);
    const tso2 = buildTso4(pool, 64 * 1024, payload, { seq: 90000, flags: TCP_ACK });
    q.push(64 * 1024, tso2.len);

    const soft = new SoftOffload();
    soft.attach(512 * 1024);
    const written: Buffer[] = [];
    let writes = 0;
    const dropped = soft.flush(pool, q, (buf, list) => {
      writes++;
      for (let i = 0; i < list.count; i++) written.push(Buffer.from(buf.subarray(list.offsets[i], list.offsets[i] + list.lengths[i])));
    });
    const k = Math.ceil(payload.length / MSS);
    expect(dropped).toBe(1);
    expect(writes).toBe(1); // one list for the whole queue: it fits the staging area
    expect(written).toHaveLength(2 * k + 2);
    expect(soft.counters()).toEqual({ segmented: 2, segments: 2 * k, csumCompleted: 1, badOffload: 1 });
    // In queue order; segments and the completed frame have good TCP checksums, the
    // plain frame (checksum left 0 by its builder) goes as it was.
    const segs1 = written.slice(0, k);
    const [fixed, asIs] = written.slice(k, k + 2);
    for (const f of [...segs1, fixed, ...written.slice(k + 2)]) expect(tcpChecksumValid(f, tso.l4, f.length - tso.l4, IP_A, IP_B)).toBe(true);
    expect(Buffer.concat(segs1.map((f) => f.subarray(tso.hdrLen))).equals(payload)).toBe(true);
    expect(fixed.length).toBe(small.len);
    expect(asIs.equals(pool.subarray(40 * 1024, 40 * 1024 + plain.len))).toBe(true);
    expect(readVnet(pool, 32 * 1024).flags & VNET_F_NEEDS_CSUM).toBe(0);
  });

  it("reuses its staging area when it fills: what is staged is written first", () => {
    const pool = Buffer.alloc(2 * 1024 * 1024);
    const q = new TxQueue(8);
    const payload = pattern(60000, 5);
    for (let i = 0; i < 6; i++) {
      const off = 64 + i * 65536;
      q.push(off, buildTso4(pool, off, payload, { seq: i * 100000, flags: TCP_ACK }).len);
    }
    const soft = new SoftOffload();
    soft.attach(1024 * 1024);
    const lists: number[] = [];
    soft.flush(pool, q, (_buf, list) => void lists.push(list.count));
    const k = Math.ceil(payload.length / MSS);
    // Six 60 KB super-frames do not fit 256 KiB of staging at once.
    expect(lists.length).toBeGreaterThan(1);
    expect(lists.reduce((a, b) => a + b, 0)).toBe(6 * k);
    expect(soft.counters()).toMatchObject({ segmented: 6, segments: 6 * k, badOffload: 0 });
  });
});

describe.skipIf(!canRun)("csumComplete", () => {
  it("finishes a CHECKSUM_PARTIAL TCP frame and clears NEEDS_CSUM (other flags kept)", () => {
    const buf = Buffer.alloc(4096);
    const b = buildTcp4(buf, 20, pattern(777, 1), { seq: 5, flags: TCP_ACK | TCP_PSH });
    writeU16(buf, 20 + b.l4 + TCP_CHECKSUM_OFF, pseudoHeaderSum(IP_A, IP_B, IP_PROTO_TCP, b.len - b.l4));
    setVnet(buf, 20, { flags: VNET_F_NEEDS_CSUM | VNET_F_DATA_VALID, gsoType: 0, csumStart: b.l4, csumOffset: 16 });
    expect(tcpChecksumValid(buf, 20 + b.l4, b.len - b.l4, IP_A, IP_B)).toBe(false);
    expect(csumComplete(buf, 20, b.len)).toBe(0);
    expect(tcpChecksumValid(buf, 20 + b.l4, b.len - b.l4, IP_A, IP_B)).toBe(true);
    expect(l4SumOk(ipBytes(IP_A), ipBytes(IP_B), IP_PROTO_TCP, buf.subarray(20 + b.l4, 20 + b.len))).toBe(true);
    expect(readVnet(buf, 20).flags).toBe(VNET_F_DATA_VALID);
    // Idempotent: the flag is gone, nothing changes.
    const snap = Buffer.from(buf);
    expect(csumComplete(buf, 20, b.len)).toBe(0);
    expect(buf.equals(snap)).toBe(true);
  });

  /** Ethernet/IPv4/UDP with an odd-length payload, CHECKSUM_PARTIAL. */
  function udpFrame(buf: Buffer, off: number, payload: Uint8Array): number {
    const l3 = emitEthernet({ dstAddr: MAC_B, srcAddr: MAC_A, etherType: ETHERTYPE_IPV4 }, buf, off);
    const ulen = 8 + payload.length;
    emitIpv4(
      {
        dscp: 0,
        ecn: 0,
        totalLen: 20 + ulen,
        ident: 1,
        df: false,
        mf: false,
        fragOffset: 0,
        ttl: 64,
        protocol: IP_PROTO_UDP,
        srcAddr: IP_A,
        dstAddr: IP_B,
        options: new Uint8Array(0),
      },
      buf,
      off + l3,
    );
    emitUdp({ srcPort: 4789, dstPort: 53, length: ulen }, buf, off + 34);
    buf.set(payload, off + 42);
    writeU16(buf, off + 34 + 6, pseudoHeaderSum(IP_A, IP_B, IP_PROTO_UDP, ulen));
    setVnet(buf, off, { flags: VNET_F_NEEDS_CSUM, gsoType: 0, csumStart: 34, csumOffset: 6 });
    return 34 + ulen;
  }

  it("finishes a CHECKSUM_PARTIAL UDP frame (odd length)", () => {
    const buf = Buffer.alloc(2048);
    const len = udpFrame(buf, 12, pattern(333, 2));
    expect(csumComplete(buf, 12, len)).toBe(0);
    expect(readU16(buf, 12 + 40)).not.toBe(0);
    expect(udpChecksumValid(buf, 12 + 34, IP_A, IP_B)).toBe(true);
    expect(l4SumOk(ipBytes(IP_A), ipBytes(IP_B), IP_PROTO_UDP, buf.subarray(12 + 34, 12 + len))).toBe(true);
    expect(readVnet(buf, 12).flags).toBe(0);
  });

  it("stores a computed UDP checksum of 0 as 0xffff (RFC 768)", () => {
    const buf = Buffer.alloc(2048);
    const payload = pattern(64, 4);
    payload[0] = payload[1] = 0;
    const len = udpFrame(buf, 12, payload);
    // Choose the first payload word so that the data sums to 0xffff: checksum 0.
    const seedless = onesSum([
      ipBytes(IP_A),
      ipBytes(IP_B),
      Uint8Array.from([0, IP_PROTO_UDP]),
      u16be(len - 34),
      buf.subarray(12 + 34, 12 + 40),
      buf.subarray(12 + 42, 12 + len),
    ]);
    writeU16(buf, 12 + 42, ~seedless & 0xffff);
    expect(csumComplete(buf, 12, len)).toBe(0);
    expect(readU16(buf, 12 + 40)).toBe(0xffff);
    expect(udpChecksumValid(buf, 12 + 34, IP_A, IP_B)).toBe(true);
  });

  it("completeChecksum (JavaScript for short spans) writes exactly what csumComplete writes", () => {
    // Short and long spans, odd and even lengths, the 0 -> 0xffff case, flags kept.
    let rnd = 12345;
    const next = (): number => (rnd = (Math.imul(rnd, 1103515245) + 12345) >>> 0);
    for (let k = 0; k < 400; k++) {
      const a = Buffer.alloc(2048);
      const plen = k === 0 ? 64 : next() % (k % 2 === 0 ? 300 : 1400);
      const payload = pattern(plen, k);
      const len = udpFrame(a, 12, payload);
      if (k === 0) {
        // Make the computed checksum 0: stored as 0xffff by both.
        a[12 + 42] = a[12 + 43] = 0;
        const seedless = onesSum([
          ipBytes(IP_A),
          ipBytes(IP_B),
          Uint8Array.from([0, IP_PROTO_UDP]),
          u16be(len - 34),
          a.subarray(12 + 34, 12 + 40),
          a.subarray(12 + 42, 12 + len),
        ]);
        writeU16(a, 12 + 42, ~seedless & 0xffff);
      }
      if (k % 3 === 0) a[0] |= VNET_F_DATA_VALID;
      const b = Buffer.from(a);
      expect(completeChecksum(a, 12, len)).toBe(csumComplete(b, 12, len));
      expect(a.equals(b)).toBe(true);
      expect(udpChecksumValid(a, 12 + 34, IP_A, IP_B)).toBe(true);
    }
    // Malformed and out-of-range frames give the same codes.
    const a = Buffer.alloc(2048);
    const len = udpFrame(a, 12, pattern(100, 6));
    setVnet(a, 12, { flags: VNET_F_NEEDS_CSUM, gsoType: 0, csumStart: len - 6, csumOffset: 5 });
    expect(completeChecksum(a, 12, len)).toBe(OFFLOAD_ERR_MALFORMED);
    expect(completeChecksum(a, 11, len)).toBe(OFFLOAD_ERR_RANGE);
    expect(completeChecksum(a, 12, a.length)).toBe(OFFLOAD_ERR_RANGE);
  });

  it("leaves a frame without NEEDS_CSUM alone; -1 when the field lies outside the frame", () => {
    const buf = Buffer.alloc(2048);
    const len = udpFrame(buf, 12, pattern(100, 6));
    buf[0] = 0;
    let snap = Buffer.from(buf);
    expect(csumComplete(buf, 12, len)).toBe(0);
    expect(buf.equals(snap)).toBe(true);
    setVnet(buf, 12, { flags: VNET_F_NEEDS_CSUM, gsoType: 0, csumStart: len - 6, csumOffset: 5 });
    snap = Buffer.from(buf);
    expect(csumComplete(buf, 12, len)).toBe(OFFLOAD_ERR_MALFORMED);
    setVnet(buf, 12, { flags: VNET_F_NEEDS_CSUM, gsoType: 0, csumStart: 0xffff, csumOffset: 0xffff });
    expect(csumComplete(buf, 12, len)).toBe(OFFLOAD_ERR_MALFORMED);
    setVnet(buf, 12, { flags: VNET_F_NEEDS_CSUM, gsoType: 0, csumStart: len - 6, csumOffset: 5 });
    expect(buf.equals(snap)).toBe(true);
    expect(csumComplete(buf, 11, len)).toBe(OFFLOAD_ERR_RANGE);
    expect(csumComplete(buf, 12, buf.length)).toBe(OFFLOAD_ERR_RANGE);
    expect(() => csumComplete(null as unknown as Buffer, 12, len)).toThrow(TypeError);
  });
});

describe.skipIf(!canRun)("groCoalesce", () => {
  const SLOT = 32 * 1024;
  const HEADROOM = 64;
  const SLOTS = 64;
  const VXLAN = Buffer.from("0800000000002a00", "hex"); // flags I, VNI 42

  function slots(n = SLOTS, slotSize = SLOT) {
    return {
      dst: Buffer.alloc(256 + n * slotSize, 0xa5),
      offsets: new Uint32Array(n),
      lengths: new Uint32Array(n),
      slotSize,
      n,
    };
  }

  /** Datagrams as UDP GRO returns them: each VXLAN header + frame, at a fixed stride. */
  class Datagrams {
    readonly buf = Buffer.alloc(256 * 1024);
    count = 0;
    constructor(readonly stride: number) {}
    /** Offset of datagram i's frame (after the 8-byte VXLAN header). */
    frameAt(i: number): number {
      return i * this.stride + 8;
    }
    addTcp(payload: Uint8Array, s: TcpSpec): number {
      const at = this.count * this.stride;
      this.buf.set(VXLAN, at);
      const b = buildTcp4(this.buf, at + 8, payload, s);
      tcpFillChecksum(this.buf, at + 8 + b.l4, b.len - b.l4, IP_A, IP_B);
      this.count++;
      this.last = 8 + b.len;
      return this.count - 1;
    }
    addRaw(frame: Uint8Array): void {
      const at = this.count * this.stride;
      this.buf.set(VXLAN, at);
      this.buf.set(frame, at + 8);
      this.count++;
      this.last = 8 + frame.length;
    }
    last = 0;
    get len(): number {
      return (this.count - 1) * this.stride + this.last;
    }
  }

  function gro(d: { buf: Buffer; len: number }, stride: number, s: ReturnType<typeof slots>, outIndex = 0): number {
    return groCoalesce(d.buf, 0, d.len, stride, 8, s.dst, 256, s.slotSize, HEADROOM, s.n, s.offsets, s.lengths, outIndex);
  }

  /** TSO super-frame -> gsoSegment with an 8-byte prefix -> the datagram train UDP GRO would deliver. */
  function train(payloadLen: number, flags: number) {
    const src = Buffer.alloc(80 * 1024);
    const off = 64;
    const payload = pattern(payloadLen, 21);
    const b = buildTso4(src, off, payload, { seq: 0xfffff800, ident: 0xfffe, flags });
    const seg = segment(src, off, b.len, 8, 128 * 1024);
    expect(seg.n).toBeGreaterThan(1);
    const stride = 8 + b.hdrLen + MSS;
    for (let k = 0; k < seg.n; k++) seg.dst.set(VXLAN, seg.base + k * stride);
    const len = (seg.n - 1) * stride + 8 + seg.lengths[seg.n - 1];
    const buf = seg.dst.subarray(seg.base, seg.base + len);
    return { src, off, b, payload, buf, len, stride, n: seg.n, lengths: seg.lengths };
  }

  it("round trip: the segments of a TSO frame coalesce into the original super-frame, vnet header and all", () => {
    const t = train(20000, TCP_ACK | TCP_PSH);
    const s = slots();
    expect(gro(t, t.stride, s, 3)).toBe(4);
    const o = s.offsets[3];
    expect(o).toBe(256 + 3 * SLOT + HEADROOM);
    expect(s.lengths[3]).toBe(t.b.len);
    // Byte for byte what Linux's TSO handed over, the vnet header included (ECN flag aside).
    expect(s.dst.subarray(o - VNET, o + t.b.len).equals(t.src.subarray(t.off - VNET, t.off + t.b.len))).toBe(true);
    expect(readVnet(s.dst, o)).toEqual({
      flags: VNET_F_NEEDS_CSUM,
      gsoType: VNET_GSO_TCPV4,
      hdrLen: t.b.hdrLen,
      gsoSize: MSS,
      csumStart: t.b.l4,
      csumOffset: 16,
      numBuffers: 0,
    });
    // Slots before outIndex and after the frame are untouched.
    expect(s.dst.subarray(0, o - VNET).every((x) => x === 0xa5)).toBe(true);
    expect(s.dst.subarray(o + t.b.len).every((x) => x === 0xa5)).toBe(true);
    // Finishing the checksum yields a segment that verifies.
    expect(csumComplete(s.dst, o, t.b.len)).toBe(0);
    expect(tcpChecksumValid(s.dst, o + t.b.l4, t.b.len - t.b.l4, IP_A, IP_B)).toBe(true);
  });

  it("a single datagram (segSize = srcLen) and a run ended by a FIN segment", () => {
    const t = train(4000, TCP_ACK | TCP_FIN);
    // The FIN (last) segment cannot join: segments 0..1 merge, 2 goes alone.
    const s = slots();
    expect(gro(t, t.stride, s)).toBe(2);
    expect(readVnet(s.dst, s.offsets[0]).gsoType).toBe(VNET_GSO_TCPV4);
    expect(s.lengths[0]).toBe(t.b.hdrLen + 2 * MSS);
    expect(readVnet(s.dst, s.offsets[1])).toMatchObject({ flags: 0, gsoType: 0, csumStart: 0 });
    expect(tcpGetFlags(s.dst, s.offsets[1] + t.b.l4)).toBe(TCP_ACK | TCP_FIN);
    const one = slots();
    expect(groCoalesce(t.buf, 0, 8 + t.lengths[0], 8 + t.lengths[0], 8, one.dst, 256, SLOT, HEADROOM, 4, one.offsets, one.lengths, 0)).toBe(1);
    expect(one.lengths[0]).toBe(t.lengths[0]);
    expect(readVnet(one.dst, one.offsets[0]).flags).toBe(0);
  });

  it("ends runs that would not fit in a slot, keeping every byte in order", () => {
    const t = train(20000, TCP_ACK);
    const s = slots(SLOTS, 8192);
    const end = gro(t, t.stride, s);
    expect(end).toBeGreaterThan(2);
    const got: Buffer[] = [];
    let seq = 0xfffff800;
    for (let j = 0; j < end; j++) {
      const o = s.offsets[j];
      expect(s.lengths[j]).toBeLessThanOrEqual(8192 - HEADROOM);
      expect(readU32(s.dst, o + t.b.l4 + 4)).toBe(seq >>> 0);
      const v = readVnet(s.dst, o);
      if (v.flags === VNET_F_NEEDS_CSUM) expect(csumComplete(s.dst, o, s.lengths[j])).toBe(0);
      expect(tcpChecksumValid(s.dst, o + t.b.l4, s.lengths[j] - t.b.l4, IP_A, IP_B)).toBe(true);
      expect(ipv4ChecksumValid(s.dst, o + t.b.l3)).toBe(true);
      got.push(s.dst.subarray(o + t.b.hdrLen, o + s.lengths[j]));
      seq += s.lengths[j] - t.b.hdrLen;
    }
    expect(Buffer.concat(got).equals(t.payload)).toBe(true);
  });

  it("a corrupted segment in the middle splits the run and passes through unmerged", () => {
    const t = train(20000, TCP_ACK | TCP_PSH);
    const bad = 5;
    t.buf[bad * t.stride + 8 + t.b.hdrLen + 100] ^= 0x40; // payload bit flip: TCP checksum now wrong
    const corrupted = Buffer.from(t.buf.subarray(bad * t.stride + 8, bad * t.stride + 8 + t.lengths[bad]));
    const s = slots();
    expect(gro(t, t.stride, s)).toBe(3);
    expect(s.lengths[0]).toBe(t.b.hdrLen + bad * MSS);
    expect(readVnet(s.dst, s.offsets[0]).gsoType).toBe(VNET_GSO_TCPV4);
    expect(s.dst.subarray(s.offsets[1] - VNET, s.offsets[1]).every((x) => x === 0)).toBe(true);
    expect(s.dst.subarray(s.offsets[1], s.offsets[1] + s.lengths[1]).equals(corrupted)).toBe(true);
    expect(s.lengths[2]).toBe(t.b.len - (bad + 1) * MSS);
    expect(readU32(s.dst, s.offsets[2] + t.b.l4 + 4)).toBe((0xfffff800 + (bad + 1) * MSS) >>> 0);
    expect(tcpGetFlags(s.dst, s.offsets[2] + t.b.l4)).toBe(TCP_ACK | TCP_PSH);
  });

  it("a segment with a bad IPv4 header checksum is not merged either", () => {
    const t = train(6000, TCP_ACK);
    t.buf[2 * t.stride + 8 + t.b.l3 + 8] -= 1; // TTL changed, checksum not updated
    const s = slots();
    // 0,1 merge; 2 alone (bad); 3,4 merge.
    expect(gro(t, t.stride, s)).toBe(3);
    expect(s.lengths.slice(0, 3)).toEqual(Uint32Array.from([t.b.hdrLen + 2 * MSS, t.lengths[2], t.b.len - 3 * MSS]));
    expect(readVnet(s.dst, s.offsets[1]).flags).toBe(0);
  });

  it("does not merge interleaved flows, merges each flow when grouped", () => {
    const stride = 8 + 66 + MSS;
    const a = { srcPort: 40000, seq: 1000, flags: TCP_ACK };
    const bb = { srcPort: 40001, seq: 9000, flags: TCP_ACK };
    const inter = new Datagrams(stride);
    for (let k = 0; k < 3; k++) {
      inter.addTcp(pattern(MSS, k), { ...a, seq: a.seq + k * MSS, ident: 10 + k });
      inter.addTcp(pattern(MSS, 10 + k), { ...bb, seq: bb.seq + k * MSS, ident: 20 + k });
    }
    const s = slots();
    expect(gro(inter, stride, s)).toBe(6);
    for (let j = 0; j < 6; j++) {
      expect(s.lengths[j]).toBe(66 + MSS);
      expect(readVnet(s.dst, s.offsets[j]).flags).toBe(0);
    }
    const grouped = new Datagrams(stride);
    for (let k = 0; k < 3; k++) grouped.addTcp(pattern(MSS, k), { ...a, seq: a.seq + k * MSS, ident: 10 + k });
    for (let k = 0; k < 3; k++) grouped.addTcp(pattern(MSS, 10 + k), { ...bb, seq: bb.seq + k * MSS, ident: 20 });
    const g = slots();
    expect(gro(grouped, stride, g)).toBe(2);
    expect([g.lengths[0], g.lengths[1]]).toEqual([66 + 3 * MSS, 66 + 3 * MSS]);
    expect(readU16(g.dst, g.offsets[1] + 14 + 2)).toBe(20 + 32 + 3 * MSS); // fixed ident accepted
  });

  it("stops at a sequence gap, a different ack, window, TTL, DF, TCP option or VLAN, an ident jump, URG", () => {
    const stride = 8 + 70 + MSS;
    const cases: [string, TcpSpec, number][] = [
      ["seq gap", { seq: 1000 + 2 * MSS + 1, flags: TCP_ACK }, MSS],
      ["ack", { seq: 1000 + 2 * MSS, ack: 99, flags: TCP_ACK }, MSS],
      ["vid", { seq: 1000 + 2 * MSS, flags: TCP_ACK, tpid: ETHERTYPE_VLAN, vid: 8 }, MSS],
      ["window", { seq: 1000 + 2 * MSS, flags: TCP_ACK, window: 1 }, MSS],
      ["ttl", { seq: 1000 + 2 * MSS, flags: TCP_ACK, ttl: 1 }, MSS],
      ["ident jump", { seq: 1000 + 2 * MSS, flags: TCP_ACK, ident: 40 }, MSS],
      ["DF", { seq: 1000 + 2 * MSS, flags: TCP_ACK, df: false }, MSS],
      ["TS option", { seq: 1000 + 2 * MSS, flags: TCP_ACK, options: Uint8Array.from([1, 1, 8, 10, 0x11, 0x22, 0x33, 0x45, 0x55, 0x66, 0x77, 0x88]) }, MSS],
      ["URG", { seq: 1000 + 2 * MSS, flags: TCP_ACK | 0x20 }, MSS],
    ];
    for (const [name, third, plen] of cases) {
      const d = new Datagrams(stride);
      const base = { tpid: ETHERTYPE_VLAN, vid: 7 };
      d.addTcp(pattern(MSS, 1), { ...base, seq: 1000, flags: TCP_ACK, ident: 1 });
      d.addTcp(pattern(MSS, 2), { ...base, seq: 1000 + MSS, flags: TCP_ACK, ident: 2 });
      d.addTcp(pattern(plen, 3), { ...base, ident: 3, ...third });
      const s = slots();
      expect(gro(d, stride, s), name).toBe(2);
      expect(s.lengths[0], name).toBe(70 + 2 * MSS);
    }
  });

  it("passes ARP, UDP, a pure ACK and a SYN through with a zeroed vnet header", () => {
    const f = Buffer.alloc(200);
    emitEthernet({ dstAddr: 0xffffffffffff, srcAddr: MAC_A, etherType: ETHERTYPE_ARP }, f, 0);
    emitArpRequest(f, 14, MAC_A, IP_A, IP_B);
    const arp = Buffer.from(f.subarray(0, 42));
    f.fill(0);
    emitEthernet({ dstAddr: MAC_B, srcAddr: MAC_A, etherType: ETHERTYPE_IPV4 }, f, 0);
    emitIpv4(
      {
        dscp: 0,
        ecn: 0,
        totalLen: 20 + 8 + 12,
        ident: 5,
        df: true,
        mf: false,
        fragOffset: 0,
        ttl: 64,
        protocol: IP_PROTO_UDP,
        srcAddr: IP_A,
        dstAddr: IP_B,
        options: new Uint8Array(0),
      },
      f,
      14,
    );
    emitUdp({ srcPort: 1, dstPort: 2, length: 20 }, f, 34);
    const udp = Buffer.from(f.subarray(0, 54));
    const tcp = (flags: number) => {
      const b = Buffer.alloc(100);
      const r = buildTcp4(b, 0, new Uint8Array(0), { seq: 1, flags, options: new Uint8Array(0) });
      tcpFillChecksum(b, r.l4, r.len - r.l4, IP_A, IP_B);
      return b.subarray(0, r.len);
    };
    const frames = [arp, udp, tcp(TCP_ACK), tcp(0x02 /* SYN */), tcp(TCP_ACK | TCP_PSH)];
    const s = slots();
    // One datagram per call (segSize = srcLen), as for datagrams without a GRO cmsg.
    frames.forEach((fr, j) => {
      const d = Buffer.concat([VXLAN, fr]);
      expect(groCoalesce(d, 0, d.length, d.length, 8, s.dst, 256, SLOT, HEADROOM, SLOTS, s.offsets, s.lengths, j)).toBe(j + 1);
      expect(s.offsets[j]).toBe(256 + j * SLOT + HEADROOM);
      expect(s.dst.subarray(s.offsets[j], s.offsets[j] + s.lengths[j]).equals(fr)).toBe(true);
      expect(s.dst.subarray(s.offsets[j] - VNET, s.offsets[j]).every((x) => x === 0)).toBe(true);
    });
  });

  it("does not output a last datagram too short for Ethernet", () => {
    const stride = 8 + 66 + MSS;
    const d = new Datagrams(stride);
    d.addTcp(pattern(MSS, 1), { seq: 1, flags: TCP_ACK });
    d.addRaw(Buffer.alloc(13, 0xee));
    const s = slots();
    expect(gro(d, stride, s)).toBe(1);
    expect(s.lengths[0]).toBe(66 + MSS);
    // Only the skip header: nothing either.
    expect(groCoalesce(VXLAN, 0, 8, 8, 8, s.dst, 256, SLOT, HEADROOM, SLOTS, s.offsets, s.lengths, 1)).toBe(1);
  });

  it("-2 without writing anything when the slots (or offsets) are short; -3 for bad arguments", () => {
    const t = train(6000, TCP_ACK);
    const s = slots(8);
    const snap = Buffer.from(s.dst);
    // 5 datagrams: need outIndex + 5 <= maxSlots.
    expect(groCoalesce(t.buf, 0, t.len, t.stride, 8, s.dst, 256, SLOT, HEADROOM, 8, s.offsets, s.lengths, 4)).toBe(OFFLOAD_ERR_NO_ROOM);
    expect(groCoalesce(t.buf, 0, t.len, t.stride, 8, s.dst, 256, SLOT, HEADROOM, 8, new Uint32Array(4), s.lengths, 0)).toBe(OFFLOAD_ERR_NO_ROOM);
    expect(s.dst.equals(snap)).toBe(true);
    expect(s.offsets.every((x) => x === 0)).toBe(true);
    expect(groCoalesce(t.buf, 0, t.len, t.stride, 8, s.dst, 256, SLOT, HEADROOM, 8, s.offsets, s.lengths, 3)).toBe(4);
    const r = (f: () => number) => expect(f()).toBe(OFFLOAD_ERR_RANGE);
    r(() => groCoalesce(t.buf, 0, t.buf.length + 1, t.stride, 8, s.dst, 256, SLOT, HEADROOM, 8, s.offsets, s.lengths, 0));
    r(() => groCoalesce(t.buf, 0, t.len, 0, 8, s.dst, 256, SLOT, HEADROOM, 8, s.offsets, s.lengths, 0));
    r(() => groCoalesce(t.buf, 0, t.len, t.stride, 8, s.dst, 256, SLOT, 11, 8, s.offsets, s.lengths, 0));
    r(() => groCoalesce(t.buf, 0, t.len, t.stride, 8, s.dst, 256, SLOT, SLOT, 8, s.offsets, s.lengths, 0));
    r(() => groCoalesce(t.buf, 0, t.len, t.stride, 8, s.dst, 257, SLOT, HEADROOM, 8, s.offsets, s.lengths, 0));
    r(() => groCoalesce(t.buf, 0, t.len, t.stride, 8, s.dst, 256, SLOT, HEADROOM, 8, s.offsets, s.lengths, 9));
    r(() => groCoalesce(s.dst, 256, t.len, t.stride, 8, s.dst, 256, SLOT, HEADROOM, 8, s.offsets, s.lengths, 0)); // overlap
    expect(() => groCoalesce(t.buf, 0, t.len, t.stride, 8, s.dst, 256, SLOT, HEADROOM, 8, s.offsets, s.lengths, undefined as unknown as number)).toThrow(
      TypeError,
    );
    // Nothing to do: outIndex comes back.
    expect(groCoalesce(t.buf, 0, 0, 1, 8, s.dst, 256, SLOT, HEADROOM, 8, s.offsets, s.lengths, 2)).toBe(2);
  });

  it("survives random garbage and random truncation (no crash, sane results)", () => {
    const t = train(6000, TCP_ACK);
    const s = slots(16);
    let seed = 12345;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let iter = 0; iter < 2000; iter++) {
      const buf = Buffer.from(t.buf);
      const flips = 1 + (rnd() % 8);
      for (let i = 0; i < flips; i++) buf[rnd() % t.len] = rnd() & 0xff;
      const len = rnd() % 4 === 0 ? rnd() % (t.len + 1) : t.len;
      const out = groCoalesce(buf, 0, len, t.stride, 8, s.dst, 256, SLOT, HEADROOM, 16, s.offsets, s.lengths, 0);
      expect(out).toBeGreaterThanOrEqual(0);
      expect(out).toBeLessThanOrEqual(Math.ceil(len / t.stride));
      // And the segmenter on a mangled super-frame (vnet header included in the mangling).
      const src = Buffer.from(t.src);
      for (let i = 0; i < flips; i++) src[t.off - VNET + (rnd() % 120)] = rnd() & 0xff;
      const slen = rnd() % 2 === 0 ? t.b.len : rnd() % (t.b.len + 1);
      const n = gsoSegment(src, t.off, slen, s.dst, 0, s.dst.length, 8, new Uint32Array(64));
      expect(n === OFFLOAD_ERR_MALFORMED || n === OFFLOAD_ERR_NO_ROOM || (n >= 1 && n <= 64)).toBe(true);
    }
  });
});

describe.skipIf(!canRun)("groFrames", () => {
  const POOL = 512 * 1024;

  /** A pool, 0xa5-filled, and a frame list: each frame placed at an offset given by the test, vnet header zeroed. */
  class FrameList {
    readonly pool = Buffer.alloc(POOL, 0xa5);
    readonly offsets = new Uint32Array(64);
    readonly lengths = new Uint32Array(64);
    count = 0;
    add(frame: Uint8Array, at: number): number {
      this.pool.fill(0, at - VNET, at);
      this.pool.set(frame, at);
      this.offsets[this.count] = at;
      this.lengths[this.count] = frame.length;
      return this.count++;
    }
    frame(i: number): Buffer {
      return this.pool.subarray(this.offsets[i], this.offsets[i] + this.lengths[i]);
    }
  }

  /** A TSO super-frame and its segments (full checksums), as copies. */
  function segments(payloadLen: number, flags: number, spec: Partial<TcpSpec> = {}) {
    const src = Buffer.alloc(80 * 1024);
    const off = 64;
    const payload = pattern(payloadLen, 33);
    const b = buildTso4(src, off, payload, { seq: 0xfffff000, ident: 0xfffd, flags, ...spec });
    const seg = segment(src, off, b.len, 0, 128 * 1024);
    expect(seg.n).toBeGreaterThan(1);
    const segs: Buffer[] = [];
    let at = seg.base;
    for (let k = 0; k < seg.n; k++) {
      segs.push(Buffer.from(seg.dst.subarray(at, at + seg.lengths[k])));
      at += seg.lengths[k];
    }
    return { src, off, b, payload, segs };
  }

  /** Scatters frames over the pool out of address order, with gaps that are not multiples of anything. */
  function scatter(frames: Uint8Array[]): FrameList {
    const l = new FrameList();
    frames.forEach((f, k) => l.add(f, 250_000 - k * 4_000 + (k % 3) * 777 + ((k * 13) % 7)));
    return l;
  }

  const DST_OFF = 1000;
  function out(size = 80 * 1024) {
    return { dst: Buffer.alloc(size, 0xa5), res: new Uint32Array(1) };
  }

  it("round trip: scattered segments of a TSO frame merge into the original super-frame, vnet header and all", () => {
    const t = segments(20000, TCP_ACK | TCP_PSH);
    const arp = Buffer.alloc(42, 0x11);
    const l = new FrameList();
    l.add(arp, 300_000);
    const frames = scatter(t.segs);
    for (let k = 0; k < t.segs.length; k++) l.add(t.segs[k], frames.offsets[k]);
    const o = out();
    const n = t.segs.length;
    expect(groFrames(l.pool, l.offsets, l.lengths, 0, l.count, o.dst, DST_OFF, o.dst.length, o.res)).toBe(1);
    expect(o.dst.every((x) => x === 0xa5)).toBe(true); // a frame alone: nothing written
    const snap = Buffer.from(l.pool);
    expect(groFrames(l.pool, l.offsets, l.lengths, 1, l.count, o.dst, DST_OFF, o.dst.length, o.res)).toBe(n);
    expect(o.res[0]).toBe(t.b.len);
    const f = DST_OFF + VNET;
    expect(o.dst.subarray(DST_OFF, f + t.b.len).equals(t.src.subarray(t.off - VNET, t.off + t.b.len))).toBe(true);
    expect(readVnet(o.dst, f)).toEqual({
      flags: VNET_F_NEEDS_CSUM,
      gsoType: VNET_GSO_TCPV4,
      hdrLen: t.b.hdrLen,
      gsoSize: MSS,
      csumStart: t.b.l4,
      csumOffset: 16,
      numBuffers: 0,
    });
    expect(o.dst.subarray(0, DST_OFF).every((x) => x === 0xa5)).toBe(true);
    expect(o.dst.subarray(f + t.b.len).every((x) => x === 0xa5)).toBe(true);
    expect(l.pool.equals(snap)).toBe(true); // the list is only read
    expect(csumComplete(o.dst, f, t.b.len)).toBe(0);
    expect(tcpChecksumValid(o.dst, f + t.b.l4, t.b.len - t.b.l4, IP_A, IP_B)).toBe(true);
    // The same frames, in the pool itself (dst = pool, region apart from the frames).
    const r = new Uint32Array(1);
    expect(groFrames(l.pool, l.offsets, l.lengths, 1, l.count, l.pool, 400_000, 480_000, r)).toBe(n);
    expect(l.pool.subarray(400_000, 400_000 + VNET + r[0]).equals(t.src.subarray(t.off - VNET, t.off + t.b.len))).toBe(true);
  });

  it("ends a run at count, at a short segment and at PSH; a run of exactly two", () => {
    const t = segments(5 * MSS + 100, TCP_ACK | TCP_PSH);
    const l = scatter(t.segs); // 6 segments, the last short with PSH
    const o = out();
    expect(groFrames(l.pool, l.offsets, l.lengths, 0, 2, o.dst, DST_OFF, o.dst.length, o.res)).toBe(2);
    expect(o.res[0]).toBe(t.b.hdrLen + 2 * MSS);
    expect(groFrames(l.pool, l.offsets, l.lengths, 3, 6, o.dst, DST_OFF, o.dst.length, o.res)).toBe(3);
    expect(o.res[0]).toBe(t.b.hdrLen + 2 * MSS + 100);
    expect(tcpGetFlags(o.dst, DST_OFF + VNET + t.b.l4)).toBe(TCP_ACK | TCP_PSH);
    expect(groFrames(l.pool, l.offsets, l.lengths, 5, 6, o.dst, DST_OFF, o.dst.length, o.res)).toBe(1); // the last
    // Out of order (segment 5's seq does not follow segment 0's): no run at all.
    const l2 = scatter([t.segs[0], t.segs[5], t.segs[1]]);
    expect(groFrames(l2.pool, l2.offsets, l2.lengths, 0, 3, o.dst, DST_OFF, o.dst.length, o.res)).toBe(1);
    // A retransmission of the same segment: no run either.
    const l3 = scatter([t.segs[0], t.segs[0], t.segs[1]]);
    expect(groFrames(l3.pool, l3.offsets, l3.lengths, 0, 3, o.dst, DST_OFF, o.dst.length, o.res)).toBe(1);
  });

  it("merges NEEDS_CSUM segments (partial checksums) without verifying them; DATA_VALID is trusted too", () => {
    const t = segments(8 * MSS, TCP_ACK);
    const l = scatter(t.segs);
    for (let k = 0; k < l.count; k++) {
      // What a local stack with checksum offload sends: the seed (here garbage, to show it is not read).
      const f = l.offsets[k];
      l.pool.writeUInt16BE(0xbeef + k, f + t.b.l4 + 16);
      setVnet(l.pool, f, { flags: k === 3 ? VNET_F_DATA_VALID : VNET_F_NEEDS_CSUM, gsoType: VNET_GSO_NONE, csumStart: t.b.l4, csumOffset: 16 });
    }
    const o = out();
    expect(groFrames(l.pool, l.offsets, l.lengths, 0, l.count, o.dst, DST_OFF, o.dst.length, o.res)).toBe(8);
    const f = DST_OFF + VNET;
    expect(o.dst.subarray(DST_OFF, f + t.b.len).equals(t.src.subarray(t.off - VNET, t.off + t.b.len))).toBe(true);
    // A partial checksum somewhere else than TCP's: not merged.
    setVnet(l.pool, l.offsets[2], { flags: VNET_F_NEEDS_CSUM, gsoType: VNET_GSO_NONE, csumStart: t.b.l3, csumOffset: 10 });
    expect(groFrames(l.pool, l.offsets, l.lengths, 0, l.count, o.dst, DST_OFF, o.dst.length, o.res)).toBe(2);
    expect(groFrames(l.pool, l.offsets, l.lengths, 2, l.count, o.dst, DST_OFF, o.dst.length, o.res)).toBe(1);
    // The IPv4 header checksum is verified even so.
    setVnet(l.pool, l.offsets[2], { flags: VNET_F_NEEDS_CSUM, gsoType: VNET_GSO_NONE, csumStart: t.b.l4, csumOffset: 16 });
    l.pool[l.offsets[5] + t.b.l3 + 8] -= 1; // TTL, checksum not updated
    expect(groFrames(l.pool, l.offsets, l.lengths, 0, l.count, o.dst, DST_OFF, o.dst.length, o.res)).toBe(5);
  });

  it("a bad TCP checksum on a segment without NEEDS_CSUM stops the run (or prevents it)", () => {
    const t = segments(10 * MSS, TCP_ACK);
    const l = scatter(t.segs);
    l.pool[l.offsets[4] + t.b.hdrLen + 7] ^= 0x10;
    const o = out();
    const snap = Buffer.from(o.dst);
    expect(groFrames(l.pool, l.offsets, l.lengths, 0, l.count, o.dst, DST_OFF, o.dst.length, o.res)).toBe(4);
    expect(o.res[0]).toBe(t.b.hdrLen + 4 * MSS);
    expect(groFrames(l.pool, l.offsets, l.lengths, 4, l.count, o.dst, DST_OFF, o.dst.length, o.res)).toBe(1);
    expect(groFrames(l.pool, l.offsets, l.lengths, 5, l.count, o.dst, DST_OFF, o.dst.length, o.res)).toBe(5);
    // A bad first segment: no run, nothing written.
    l.pool[l.offsets[0] + t.b.hdrLen] ^= 1;
    const o2 = out();
    expect(groFrames(l.pool, l.offsets, l.lengths, 0, l.count, o2.dst, DST_OFF, o2.dst.length, o2.res)).toBe(1);
    expect(o2.dst.equals(snap)).toBe(true);
  });

  it("does not merge interleaved flows; merges each flow when grouped", () => {
    const a = segments(3 * MSS, TCP_ACK, { srcPort: 40000 });
    const b = segments(3 * MSS, TCP_ACK, { srcPort: 40001 });
    const inter = scatter([a.segs[0], b.segs[0], a.segs[1], b.segs[1], a.segs[2], b.segs[2]]);
    const o = out();
    for (let i = 0; i < 6; i++) expect(groFrames(inter.pool, inter.offsets, inter.lengths, i, 6, o.dst, DST_OFF, o.dst.length, o.res)).toBe(1);
    const grouped = scatter([...a.segs, ...b.segs]);
    expect(groFrames(grouped.pool, grouped.offsets, grouped.lengths, 0, 6, o.dst, DST_OFF, o.dst.length, o.res)).toBe(3);
    expect(groFrames(grouped.pool, grouped.offsets, grouped.lengths, 3, 6, o.dst, DST_OFF, o.dst.length, o.res)).toBe(3);
    expect(o.dst.subarray(DST_OFF, DST_OFF + VNET + o.res[0]).equals(b.src.subarray(b.off - VNET, b.off + b.b.len))).toBe(true);
  });

  it("never merges a frame that is already a super-frame (any gso_type)", () => {
    const t = segments(6 * MSS, TCP_ACK);
    const l = scatter(t.segs);
    // Segment 3 claims to be a TSO frame (as a super-frame of one segment would).
    setVnet(l.pool, l.offsets[3], { flags: VNET_F_NEEDS_CSUM, gsoType: VNET_GSO_TCPV4, gsoSize: MSS, csumStart: t.b.l4, csumOffset: 16 });
    const o = out();
    expect(groFrames(l.pool, l.offsets, l.lengths, 0, l.count, o.dst, DST_OFF, o.dst.length, o.res)).toBe(3);
    expect(groFrames(l.pool, l.offsets, l.lengths, 3, l.count, o.dst, DST_OFF, o.dst.length, o.res)).toBe(1);
    expect(groFrames(l.pool, l.offsets, l.lengths, 2, l.count, o.dst, DST_OFF, o.dst.length, o.res)).toBe(1);
    expect(groFrames(l.pool, l.offsets, l.lengths, 4, l.count, o.dst, DST_OFF, o.dst.length, o.res)).toBe(2);
    // A real TSO super-frame in the list.
    const sup = segments(4 * MSS, TCP_ACK);
    const l2 = new FrameList();
    l2.pool.set(sup.src.subarray(sup.off - VNET, sup.off + sup.b.len), 10_000 - VNET);
    l2.offsets[0] = 10_000;
    l2.lengths[0] = sup.b.len;
    l2.count = 1;
    l2.add(sup.segs[0], 100_000);
    expect(groFrames(l2.pool, l2.offsets, l2.lengths, 0, 2, o.dst, DST_OFF, o.dst.length, o.res)).toBe(1);
  });

  it("writes nothing at or past dstEnd: a run is cut to fit, -2 when not even two segments fit", () => {
    const t = segments(10 * MSS, TCP_ACK);
    const l = scatter(t.segs);
    const o = out();
    const end = DST_OFF + VNET + t.b.hdrLen + 3 * MSS + 10; // room for 3 segments and a bit
    expect(groFrames(l.pool, l.offsets, l.lengths, 0, l.count, o.dst, DST_OFF, end, o.res)).toBe(3);
    expect(o.dst.subarray(DST_OFF + VNET + o.res[0]).every((x) => x === 0xa5)).toBe(true);
    expect(o.dst.subarray(0, DST_OFF).every((x) => x === 0xa5)).toBe(true);
    const o2 = out();
    const snap = Buffer.from(o2.dst);
    const tight = DST_OFF + VNET + t.b.hdrLen + 2 * MSS - 1;
    expect(groFrames(l.pool, l.offsets, l.lengths, 0, l.count, o2.dst, DST_OFF, tight, o2.res)).toBe(OFFLOAD_ERR_NO_ROOM);
    expect(o2.dst.equals(snap)).toBe(true);
    // Exactly two fit.
    expect(groFrames(l.pool, l.offsets, l.lengths, 0, l.count, o2.dst, DST_OFF, tight + 1, o2.res)).toBe(2);
    expect(o2.dst.subarray(tight + 1).every((x) => x === 0xa5)).toBe(true);
  });

  it("keeps a super-frame within 65535 bytes of IP (small MSS, many segments)", () => {
    // 60 segments of 1200 bytes: 54 fit under the limit.
    const l = new FrameList();
    for (let k = 0; k < 60; k++) {
      const b = Buffer.alloc(2000);
      const r = buildTcp4(b, 0, pattern(1200, k), { seq: 5000 + k * 1200, ident: k, flags: TCP_ACK });
      tcpFillChecksum(b, r.l4, r.len - r.l4, IP_A, IP_B);
      l.add(b.subarray(0, r.len), 64 + k * 4096);
    }
    const o = out(128 * 1024);
    const n = groFrames(l.pool, l.offsets, l.lengths, 0, l.count, o.dst, DST_OFF, o.dst.length, o.res);
    expect(n).toBe(Math.floor((65535 - 52) / 1200));
    expect(ipv4GetTotalLen(o.dst, DST_OFF + VNET + 14)).toBe(52 + n * 1200);
    expect(groFrames(l.pool, l.offsets, l.lengths, n, l.count, o.dst, DST_OFF, o.dst.length, o.res)).toBe(l.count - n);
  });

  it("-3 for bad arguments and frames outside the pool or overlapping dst; TypeError for wrong types", () => {
    const t = segments(4 * MSS, TCP_ACK);
    const l = scatter(t.segs);
    const o = out();
    const r = (f: () => number) => expect(f()).toBe(OFFLOAD_ERR_RANGE);
    const n = l.count;
    r(() => groFrames(l.pool, l.offsets, l.lengths, n, n, o.dst, DST_OFF, o.dst.length, o.res)); // start >= count
    r(() => groFrames(l.pool, l.offsets, l.lengths, 0, 65, o.dst, DST_OFF, o.dst.length, o.res)); // count > offsets.length
    r(() => groFrames(l.pool, l.offsets, new Uint32Array(2), 0, 3, o.dst, DST_OFF, o.dst.length, o.res));
    r(() => groFrames(l.pool, l.offsets, l.lengths, 0, n, o.dst, DST_OFF, o.dst.length, new Uint32Array(0)));
    r(() => groFrames(l.pool, l.offsets, l.lengths, 0, n, o.dst, DST_OFF, DST_OFF + 11, o.res)); // dstOff + 12 > dstEnd
    r(() => groFrames(l.pool, l.offsets, l.lengths, 0, n, o.dst, DST_OFF, o.dst.length + 1, o.res));
    r(() => groFrames(l.pool, l.offsets, l.lengths, -1, n, o.dst, DST_OFF, o.dst.length, o.res));
    r(() => groFrames(l.pool, l.offsets, l.lengths, 0.5, n, o.dst, DST_OFF, o.dst.length, o.res));
    // dst overlapping a frame it would read (the pool as dst).
    r(() => groFrames(l.pool, l.offsets, l.lengths, 0, n, l.pool, l.offsets[1] - 100, l.offsets[1] + 100, o.res));
    // A frame outside the pool, or too close to its start for a vnet header.
    const bad = Uint32Array.from(l.offsets);
    bad[0] = 4;
    r(() => groFrames(l.pool, bad, l.lengths, 0, n, o.dst, DST_OFF, o.dst.length, o.res));
    bad[0] = POOL - 10;
    r(() => groFrames(l.pool, bad, l.lengths, 0, n, o.dst, DST_OFF, o.dst.length, o.res));
    // A bad frame right after the first: -3; after a run of two: the run ends there.
    const bad2 = Uint32Array.from(l.offsets);
    bad2[1] = POOL;
    r(() => groFrames(l.pool, bad2, l.lengths, 0, n, o.dst, DST_OFF, o.dst.length, o.res));
    const bad3 = Uint32Array.from(l.offsets);
    bad3[2] = POOL;
    expect(groFrames(l.pool, bad3, l.lengths, 0, n, o.dst, DST_OFF, o.dst.length, o.res)).toBe(2);
    expect(() => groFrames(l.pool, l.offsets, l.lengths, 0, n, o.dst, DST_OFF, o.dst.length, [0] as unknown as Uint32Array)).toThrow(TypeError);
    expect(() => groFrames(l.pool, l.offsets, l.lengths, undefined as unknown as number, n, o.dst, 0, 100, o.res)).toThrow(TypeError);
    expect(() => groFrames("x" as unknown as Buffer, l.offsets, l.lengths, 0, n, o.dst, 0, 100, o.res)).toThrow(TypeError);
  });

  it("survives random garbage in frames and vnet headers (no crash, sane results)", () => {
    const t = segments(6 * MSS, TCP_ACK);
    let seed = 777;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    const o = out();
    for (let iter = 0; iter < 1000; iter++) {
      const l = scatter(t.segs);
      const flips = 1 + (rnd() % 8);
      for (let i = 0; i < flips; i++) {
        const k = rnd() % l.count;
        l.pool[l.offsets[k] - VNET + (rnd() % (VNET + 120))] = rnd() & 0xff;
      }
      if (rnd() % 4 === 0) l.lengths[rnd() % l.count] = rnd() % 1600;
      const start = rnd() % l.count;
      const k = groFrames(l.pool, l.offsets, l.lengths, start, l.count, o.dst, 0, o.dst.length, o.res);
      expect(k >= 1 && k <= l.count - start, `iter ${iter}: ${k}`).toBe(true);
      if (k >= 2) {
        expect(o.res[0]).toBeLessThanOrEqual(14 + 65535);
        expect(ipv4ChecksumValid(o.dst, VNET + 14)).toBe(true);
      }
    }
  });
});
