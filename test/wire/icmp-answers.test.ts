import { afterAll, describe, expect, it } from "vitest";
import {
  CHECK_OK,
  ICMP_DEST_UNREACH,
  ICMP_ECHO_REPLY,
  ICMP_ECHO_REQUEST,
  ICMP_PARAM_PROBLEM,
  ICMP_TIME_EXCEEDED,
  ICMP_TIME_EXCEEDED_TTL,
  ICMP_UNREACH_FRAG_NEEDED,
  ICMP_UNREACH_PORT,
  IP_PROTO_ICMP,
  emitIcmp,
  emitIcmpEchoReplyInPlace,
  emitIcmpError,
  emitIpv4,
  icmpCheck,
  icmpComputeChecksum,
  icmpErrorAllowed,
  icmpFillChecksum,
  icmpRestEcho,
  icmpRestFragNeeded,
  ipv4Check,
  ipv4ChecksumValid,
  parseIcmp,
  parseIp,
  parseIpv4,
} from "../../src/wire/index.js";
import { CK_BAD, CK_GOOD, H1, H2, hasTshark, hex, removeTsharkFiles, tshark, udpPacket, type PktOpts } from "./ip-test-util.js";

afterAll(removeTsharkFiles);

// ---------------------------------------------------------------------------------------
// Fixtures: real frames from test/wire (a veth in a test namespace, 10.99.1.1 -> Linux
// router 10.99.1.254 -> 10.99.2.1, the router's second link at MTU 1280), checked with tshark.

// `ping 10.99.1.254`, echo request (IP packet, Ethernet header removed).
const ECHO_REQUEST = hex(`
  45000054f94940004001299b0a6301010a6301fe
  0800112311a40001b22f026b0000000053ca0e0000000000
  101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637
`);
// The kernel's echo reply, ICMP part. tshark: icmp.checksum 0x1923 (good).
const KERNEL_REPLY_ICMP = hex(`
  00 00 1923 11a4 0001
  b22f026b0000000053ca0e0000000000
  101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637
`);
// `ping -R`: NOP + 39 bytes of Record Route.
const ECHO_REQUEST_RR = hex(`
  4f00007cf94c40004001ebfc0a6301010a6301fe
  01072708 0a630101 0000000000000000000000000000000000000000000000000000000000000000
  0800eeef11a70001b22f026b0000000075fa0e0000000000
  101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637
`);
// `ping -t 1 10.99.2.1` and the Linux router's Time Exceeded (IP packets).
const TTL1 = hex(`
  450000540baa4000010156380a6301010a630201
  08002f1111a50001b22f026b0000000035db0e0000000000
  101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637
`);
const LINUX_TIME_EXCEEDED = hex(`
  45c000701698000040014b710a6301fe0a630101
  0b00f4ff00000000
  450000540baa4000010156380a6301010a630201
  08002f1111a50001b22f026b0000000035db0e0000000000
  101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637
`);
// UDP to a closed port on the router, and its Port Unreachable.
const UDP_CLOSED = hex("4500002272d440004011b0320a6301010a6301fe 9c400009000e1380 636c6f736564");
const LINUX_PORT_UNREACH = hex(`
  45c0003e1705000040014b360a6301fe0a630101
  030314e100000000
  4500002272d440004011b0320a6301010a6301fe9c400009000e1380636c6f736564
`);
// `ping -M do -s 1400 10.99.2.1` into the 1280-byte link: Fragmentation Needed, 576 bytes.
const LINUX_FRAG_NEEDED = hex(`
  45c0024016990000400149a00a6301fe0a63
  010103040ec900000500450005940000400040011da20a6301010a6302010800
  3db611a60001b22f026b000000007aeb0e000000000010111213141516171819
  1a1b1c1d1e1f202122232425262728292a2b2c2d2e2f30313233343536373839
  3a3b3c3d3e3f404142434445464748494a4b4c4d4e4f50515253545556575859
  5a5b5c5d5e5f606162636465666768696a6b6c6d6e6f70717273747576777879
  7a7b7c7d7e7f808182838485868788898a8b8c8d8e8f90919293949596979899
  9a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9
  babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9
  dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9
  fafbfcfdfeff000102030405060708090a0b0c0d0e0f10111213141516171819
  1a1b1c1d1e1f202122232425262728292a2b2c2d2e2f30313233343536373839
  3a3b3c3d3e3f404142434445464748494a4b4c4d4e4f50515253545556575859
  5a5b5c5d5e5f606162636465666768696a6b6c6d6e6f70717273747576777879
  7a7b7c7d7e7f808182838485868788898a8b8c8d8e8f90919293949596979899
  9a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9
  babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9
  dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9
  fafbfcfdfeff0001020304050607
`);

const R = parseIp("10.99.1.254");
const A = parseIp("10.99.1.1");

// ---------------------------------------------------------------------------------------
// Packet builders (wire emitters).

/** An IPv4 header with `totalLen - 20` bytes after it, the first of them `first`. */
function headerOnly(protocol: number, totalLen: number, first: number): Buffer {
  const b = Buffer.alloc(totalLen);
  if (totalLen > 20) b[20] = first;
  emitIpv4(
    { dscp: 0, ecn: 0, totalLen, ident: 5, df: false, mf: false, fragOffset: 0, ttl: 64, protocol, srcAddr: H1, dstAddr: H2, options: new Uint8Array(0) },
    b,
    0,
  );
  return b;
}

/** An ICMP message of `type`/`code` with 8 bytes of data in an IP packet. */
function icmpPacket(type: number, code: number, o: PktOpts = {}): Buffer {
  const b = Buffer.alloc(36);
  emitIcmp({ type, code, rest: icmpRestEcho(7, 1) }, b, 20);
  b.fill(0x5a, 28);
  icmpFillChecksum(b, 20, 16);
  emitIpv4(
    {
      dscp: 0,
      ecn: 0,
      totalLen: b.length,
      ident: 1,
      df: false,
      mf: o.mf ?? false,
      fragOffset: o.fragOffset ?? 0,
      ttl: 64,
      protocol: IP_PROTO_ICMP,
      srcAddr: o.src ?? H1,
      dstAddr: o.dst ?? H2,
      options: new Uint8Array(0),
    },
    b,
    0,
  );
  return b;
}

// ---------------------------------------------------------------------------------------

describe("icmpErrorAllowed (RFC 1812 section 4.3.2.7)", () => {
  const cases: Array<{ name: string; pkt: () => Buffer; link?: boolean; ipLen?: number; want: boolean }> = [
    { name: "unicast UDP", pkt: () => udpPacket(20), want: true },
    { name: "captured TTL-1 echo request", pkt: () => Buffer.from(TTL1), want: true },
    { name: "ICMP echo request", pkt: () => icmpPacket(8, 0), want: true },
    { name: "ICMP echo reply", pkt: () => icmpPacket(0, 0), want: true },
    { name: "ICMP timestamp (13)", pkt: () => icmpPacket(13, 0), want: true },
    { name: "ICMP destination unreachable (3)", pkt: () => icmpPacket(3, 1), want: false },
    { name: "ICMP source quench (4)", pkt: () => icmpPacket(4, 0), want: false },
    { name: "ICMP redirect (5)", pkt: () => icmpPacket(5, 1), want: false },
    { name: "ICMP time exceeded (11)", pkt: () => icmpPacket(11, 0), want: false },
    { name: "ICMP parameter problem (12)", pkt: () => icmpPacket(12, 0), want: false },
    { name: "ICMP unknown type 42 (as Linux)", pkt: () => icmpPacket(42, 0), want: false },
    { name: "captured Linux time exceeded", pkt: () => Buffer.from(LINUX_TIME_EXCEEDED), want: false },
    { name: "ICMP with no ICMP byte", pkt: () => headerOnly(IP_PROTO_ICMP, 20, 0), want: false },
    { name: "ICMP with only the type byte (echo)", pkt: () => headerOnly(IP_PROTO_ICMP, 21, ICMP_ECHO_REQUEST), want: true },
    { name: "link-layer broadcast", pkt: () => udpPacket(20), link: true, want: false },
    { name: "dst 255.255.255.255", pkt: () => udpPacket(20, { dst: 0xffffffff }), want: false },
    { name: "dst 224.0.0.1", pkt: () => udpPacket(20, { dst: parseIp("224.0.0.1") }), want: false },
    { name: "dst 239.255.255.250", pkt: () => udpPacket(20, { dst: parseIp("239.255.255.250") }), want: false },
    { name: "dst 10.0.0.255 (directed broadcast: caller knows its subnets)", pkt: () => udpPacket(20, { dst: parseIp("10.0.0.255") }), want: true },
    { name: "first fragment (MF, offset 0)", pkt: () => udpPacket(20, { mf: true }), want: true },
    { name: "non-initial fragment (offset 1)", pkt: () => udpPacket(20, { fragOffset: 1 }), want: false },
    { name: "non-initial fragment (offset 185, MF)", pkt: () => udpPacket(20, { fragOffset: 185, mf: true }), want: false },
    { name: "non-initial ICMP error fragment", pkt: () => icmpPacket(8, 0, { fragOffset: 3 }), want: false },
    { name: "src 0.0.0.0", pkt: () => udpPacket(20, { src: 0 }), want: false },
    { name: "src 255.255.255.255", pkt: () => udpPacket(20, { src: 0xffffffff }), want: false },
    { name: "src 224.0.0.5", pkt: () => udpPacket(20, { src: parseIp("224.0.0.5") }), want: false },
    { name: "src 239.1.2.3", pkt: () => udpPacket(20, { src: parseIp("239.1.2.3") }), want: false },
    { name: "src 240.0.0.1", pkt: () => udpPacket(20, { src: parseIp("240.0.0.1") }), want: false },
    { name: "src 127.0.0.1", pkt: () => udpPacket(20, { src: parseIp("127.0.0.1") }), want: false },
    { name: "src 127.255.255.254", pkt: () => udpPacket(20, { src: parseIp("127.255.255.254") }), want: false },
    { name: "src 223.255.255.254", pkt: () => udpPacket(20, { src: parseIp("223.255.255.254") }), want: true },
    { name: "src 126.255.255.255", pkt: () => udpPacket(20, { src: parseIp("126.255.255.255") }), want: true },
    { name: "src 1.0.0.0", pkt: () => udpPacket(20, { src: parseIp("1.0.0.0") }), want: true },
    {
      name: "bad header checksum",
      pkt: () => {
        const b = udpPacket(20);
        b[10] ^= 1;
        return b;
      },
      want: false,
    },
    {
      name: "version 6",
      pkt: () => {
        const b = udpPacket(20);
        b[0] = 0x65;
        return b;
      },
      want: false,
    },
    { name: "total length beyond the bytes", pkt: () => udpPacket(20), ipLen: 40, want: false },
    { name: "19 bytes", pkt: () => udpPacket(20), ipLen: 19, want: false },
    { name: "empty", pkt: () => Buffer.alloc(0), want: false },
    { name: "garbage", pkt: () => Buffer.from("deadbeefdeadbeefdeadbeefdeadbeefdeadbeef", "hex"), want: false },
    { name: "trailing link padding allowed", pkt: () => Buffer.concat([udpPacket(2), Buffer.alloc(16)]), want: true },
  ];
  it.each(cases)("$name -> $want", ({ pkt, link, ipLen, want }) => {
    const b = pkt();
    expect(icmpErrorAllowed(b, 0, ipLen ?? b.length, link ?? false)).toBe(want);
  });

  it("reads at an offset and never throws on bad offsets", () => {
    const b = Buffer.concat([Buffer.alloc(14, 0xee), udpPacket(20)]);
    expect(icmpErrorAllowed(b, 14, b.length - 14, false)).toBe(true);
    expect(icmpErrorAllowed(b, -1, b.length, false)).toBe(false);
    expect(icmpErrorAllowed(b, 14, b.length, false)).toBe(false);
    expect(icmpErrorAllowed(b, 1000, 48, false)).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------

describe("emitIcmpError", () => {
  const errCases = [
    {
      name: "time exceeded",
      orig: TTL1,
      type: ICMP_TIME_EXCEEDED,
      code: ICMP_TIME_EXCEEDED_TTL,
      rest: 0,
      ident: 0x1698,
      linux: LINUX_TIME_EXCEEDED,
    },
    {
      name: "port unreachable",
      orig: UDP_CLOSED,
      type: ICMP_DEST_UNREACH,
      code: ICMP_UNREACH_PORT,
      rest: 0,
      ident: 0x1705,
      linux: LINUX_PORT_UNREACH,
    },
    {
      name: "fragmentation needed, quote cut at 576",
      // The 1428-byte original: the 548 bytes Linux quoted, then more of ping's pattern.
      orig: Buffer.concat([LINUX_FRAG_NEEDED.subarray(28), Buffer.alloc(1428 - 548, 0x77)]),
      type: ICMP_DEST_UNREACH,
      code: ICMP_UNREACH_FRAG_NEEDED,
      rest: icmpRestFragNeeded(1280),
      ident: 0x1699,
      linux: LINUX_FRAG_NEEDED,
    },
  ];

  it.each(errCases)("$name: byte for byte what the Linux router sent", ({ orig, type, code, rest, ident, linux }) => {
    const out = Buffer.alloc(700, 0xa5);
    const n = emitIcmpError(out, 50, orig, 0, orig.length, type, code, rest, R, ident);
    expect(n).toBe(linux.length);
    expect(out.subarray(50, 50 + n).toString("hex")).toBe(linux.toString("hex"));
    expect(out.subarray(0, 50).every((x) => x === 0xa5)).toBe(true);
    expect(out.subarray(50 + n).every((x) => x === 0xa5)).toBe(true);
    // And the wire parsers agree.
    const ip = parseIpv4(out, 50, n);
    expect(ip).not.toBeNull();
    expect(ip).toMatchObject({ dscp: 48, totalLen: n, ident, df: false, mf: false, fragOffset: 0, ttl: 64, protocol: 1, srcAddr: R, dstAddr: A });
    expect(parseIcmp(out, 70, n - 20)).toEqual({ type, code, rest });
  });

  it("quotes the datagram up to its total length, not link padding, and at most 548 bytes", () => {
    const small = Buffer.concat([udpPacket(10), Buffer.alloc(8, 0xee)]); // 38 + 8 bytes padding
    const out = Buffer.alloc(576);
    expect(emitIcmpError(out, 0, small, 0, small.length, 3, 3, 0, R, 1)).toBe(28 + 38);
    expect(out.subarray(28, 66).equals(small.subarray(0, 38))).toBe(true);

    for (const len of [547, 548, 549, 1500, 65535]) {
      const big = udpPacket(len - 28);
      const n = emitIcmpError(out, 0, big, 0, big.length, 11, 0, 0, R, 2);
      expect(n).toBe(28 + Math.min(len, 548));
      expect(out.subarray(28, n).equals(big.subarray(0, n - 28))).toBe(true);
      expect(ipv4Check(out, 0, n)).toBe(CHECK_OK);
      expect(icmpCheck(out, 20, n - 20)).toBe(CHECK_OK);
    }
    // Only origIpLen bytes are ever read, even if the total length claims more.
    const cut = udpPacket(200);
    expect(emitIcmpError(out, 0, cut, 0, 100, 11, 0, 0, R, 3)).toBe(128);
  });

  it("may write over the offending datagram itself (overlapping regions)", () => {
    const orig = udpPacket(300);
    const want = Buffer.alloc(576);
    const n = emitIcmpError(want, 0, orig, 0, orig.length, 3, 1, 0, R, 9);
    for (const [origOff, dstOff] of [
      [100, 0],
      [100, 72],
      [100, 100],
      [100, 128],
      [100, 150],
    ]) {
      const slab = Buffer.alloc(1200, 0x33);
      orig.copy(slab, origOff);
      expect(emitIcmpError(slab, dstOff, slab, origOff, orig.length, 3, 1, 0, R, 9)).toBe(n);
      expect(slab.subarray(dstOff, dstOff + n).equals(want.subarray(0, n))).toBe(true);
    }
  });

  it("writes the 32-bit rest of header as given (parameter problem pointer)", () => {
    const out = Buffer.alloc(576);
    const n = emitIcmpError(out, 0, UDP_CLOSED, 0, UDP_CLOSED.length, ICMP_PARAM_PROBLEM, 0, 0x09000000, R, 4);
    expect(parseIcmp(out, 20, n - 20)).toEqual({ type: 12, code: 0, rest: 0x09000000 });
  });

  const badCases: Array<{ name: string; run: () => number }> = [
    { name: "original shorter than an IP header", run: () => emitIcmpError(Buffer.alloc(576), 0, Buffer.alloc(19), 0, 19, 3, 1, 0, R, 1) },
    { name: "origIpLen past the buffer", run: () => emitIcmpError(Buffer.alloc(576), 0, Buffer.alloc(40), 10, 40, 3, 1, 0, R, 1) },
    { name: "negative origIpOff", run: () => emitIcmpError(Buffer.alloc(576), 0, Buffer.alloc(40), -1, 20, 3, 1, 0, R, 1) },
    { name: "no room in dst", run: () => emitIcmpError(Buffer.alloc(60), 0, UDP_CLOSED, 0, UDP_CLOSED.length, 3, 1, 0, R, 1) },
    { name: "negative dstOff", run: () => emitIcmpError(Buffer.alloc(576), -4, UDP_CLOSED, 0, UDP_CLOSED.length, 3, 1, 0, R, 1) },
  ];
  it.each(badCases)("returns -1: $name", ({ run }) => {
    expect(run()).toBe(-1);
  });

  it.skipIf(!hasTshark)("tshark: good IP and ICMP checksums, right fields, quoted header decoded", () => {
    const pkts: Buffer[] = [];
    const quoted: Buffer[] = [
      Buffer.from(TTL1),
      Buffer.from(UDP_CLOSED),
      udpPacket(2000),
      udpPacket(5, { options: hex("94040000") }),
      Buffer.concat([udpPacket(33), Buffer.alloc(9)]),
    ];
    const kinds: Array<[number, number, number]> = [
      [11, 0, 0],
      [3, 3, 0],
      [3, 4, icmpRestFragNeeded(1400)],
      [3, 1, 0],
      [12, 0, 0x14000000],
    ];
    quoted.forEach((q, i) => {
      const out = Buffer.alloc(576);
      const [type, code, rest] = kinds[i];
      const n = emitIcmpError(out, 0, q, 0, q.length, type, code, rest, R, 0x100 + i);
      pkts.push(out.subarray(0, n));
    });
    const rows = tshark(pkts, [
      "ip.len",
      "ip.dsfield",
      "ip.flags.df",
      "ip.ttl",
      "ip.src",
      "ip.dst",
      "ip.checksum.status",
      "icmp.type",
      "icmp.code",
      "icmp.checksum.status",
      "icmp.mtu",
    ]);
    expect(rows).toHaveLength(pkts.length);
    rows.forEach((r, i) => {
      const [len, ds, df, ttl, src, dst, ipck, type, code, icmpck, mtu] = r;
      const outer = (s: string): string => s.split(",")[0];
      expect(outer(len)).toBe(String(pkts[i].length));
      expect(outer(ds)).toBe("0xc0");
      expect(outer(df)).toBe("0");
      expect(outer(ttl)).toBe("64");
      expect(src.split(",")).toEqual(["10.99.1.254", i < 2 ? "10.99.1.1" : "10.0.0.1"]);
      expect(dst.split(",")).toEqual([i < 2 ? "10.99.1.1" : "10.0.0.1", i < 2 ? (i === 0 ? "10.99.2.1" : "10.99.1.254") : "10.0.0.2"]);
      // Both the error's header and the quoted header verify.
      expect(ipck.split(",")).toEqual([CK_GOOD, CK_GOOD]);
      expect(outer(type)).toBe(String(kinds[i][0]));
      expect(outer(code)).toBe(String(kinds[i][1]));
      expect(outer(icmpck)).toBe(CK_GOOD);
      expect(icmpck.split(",")).not.toContain(CK_BAD);
      if (i === 2) expect(mtu).toBe("1400");
    });
  });
});

// ---------------------------------------------------------------------------------------

describe("emitIcmpEchoReplyInPlace", () => {
  it("turns the captured request into the reply the kernel sent", () => {
    const b = Buffer.concat([Buffer.alloc(14, 0xee), ECHO_REQUEST]);
    expect(emitIcmpEchoReplyInPlace(b, 14, ECHO_REQUEST.length)).toBe(true);
    // ICMP part equal to the kernel's reply, checksum 0x1923 included.
    expect(b.subarray(34).toString("hex")).toBe(KERNEL_REPLY_ICMP.toString("hex"));
    const ip = parseIpv4(b, 14, ECHO_REQUEST.length);
    // DF cleared: the kernel the differential router test (router-diff.test.ts) runs
    // against sends echo replies without it, whatever the request had.
    expect(ip).toMatchObject({ srcAddr: R, dstAddr: A, ttl: 64, totalLen: 84, ident: 0xf949, df: false, protocol: 1 });
    expect(parseIcmp(b, 34, 64)).toEqual({ type: ICMP_ECHO_REPLY, code: 0, rest: icmpRestEcho(0x11a4, 1) });
    expect(b.subarray(0, 14).every((x) => x === 0xee)).toBe(true);
  });

  it("neutralises options with NOPs and keeps the length (ping -R)", () => {
    const b = Buffer.from(ECHO_REQUEST_RR);
    expect(emitIcmpEchoReplyInPlace(b, 0, b.length)).toBe(true);
    expect(ipv4Check(b, 0, b.length)).toBe(CHECK_OK);
    expect(b[0]).toBe(0x4f);
    expect(b.subarray(20, 60).every((x) => x === 1)).toBe(true);
    expect(icmpCheck(b, 60, 64)).toBe(CHECK_OK);
    expect(b[60]).toBe(ICMP_ECHO_REPLY);
    expect(b.subarray(64).equals(ECHO_REQUEST_RR.subarray(64))).toBe(true);
  });

  it("incremental ICMP checksum equals a full recomputation (random payloads, codes, TTLs)", () => {
    let seed = 12345;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 16;
    for (let t = 0; t < 500; t++) {
      const dataLen = rnd() % 200;
      const b = Buffer.alloc(28 + dataLen + (t & 7));
      emitIcmp({ type: ICMP_ECHO_REQUEST, code: t % 3 === 0 ? rnd() & 0xff : 0, rest: (rnd() << 16) | rnd() }, b, 20);
      for (let i = 0; i < dataLen; i++) b[28 + i] = rnd() & 0xff;
      icmpFillChecksum(b, 20, 8 + dataLen);
      emitIpv4(
        {
          dscp: rnd() & 63,
          ecn: 0,
          totalLen: 28 + dataLen,
          ident: rnd(),
          df: (t & 1) === 1,
          mf: false,
          fragOffset: 0,
          ttl: rnd() & 0xff,
          protocol: 1,
          srcAddr: (rnd() << 16) | rnd(),
          dstAddr: (rnd() << 16) | rnd(),
          options: new Uint8Array(0),
        },
        b,
        0,
      );
      const code = b[21];
      expect(emitIcmpEchoReplyInPlace(b, 0, b.length)).toBe(true);
      expect(b[20]).toBe(0);
      expect(b[21]).toBe(code);
      expect(b.readUInt16BE(22)).toBe(icmpComputeChecksum(b, 20, 8 + dataLen));
      expect(ipv4ChecksumValid(b, 0)).toBe(true);
    }
  });

  const notEcho: Array<{ name: string; pkt: () => Buffer; ipLen?: number }> = [
    { name: "echo reply", pkt: () => icmpPacket(0, 0) },
    { name: "time exceeded", pkt: () => Buffer.from(LINUX_TIME_EXCEEDED) },
    { name: "UDP", pkt: () => udpPacket(30) },
    { name: "first fragment of an echo request", pkt: () => icmpPacket(8, 0, { mf: true }) },
    { name: "later fragment", pkt: () => icmpPacket(8, 0, { fragOffset: 2 }) },
    {
      name: "bad ICMP checksum",
      pkt: () => {
        const b = Buffer.from(ECHO_REQUEST);
        b[40] ^= 0x10;
        return b;
      },
    },
    {
      name: "bad IP checksum",
      pkt: () => {
        const b = Buffer.from(ECHO_REQUEST);
        b[11] ^= 0x01;
        return b;
      },
    },
    { name: "ICMP shorter than 8 bytes", pkt: () => headerOnly(IP_PROTO_ICMP, 27, ICMP_ECHO_REQUEST) },
    { name: "truncated capture", pkt: () => Buffer.from(ECHO_REQUEST), ipLen: 60 },
    { name: "garbage", pkt: () => Buffer.alloc(84, 0x08) },
    { name: "empty", pkt: () => Buffer.alloc(0) },
  ];
  it.each(notEcho)("false and untouched: $name", ({ pkt, ipLen }) => {
    const b = pkt();
    const before = Buffer.from(b);
    expect(emitIcmpEchoReplyInPlace(b, 0, ipLen ?? b.length)).toBe(false);
    expect(b.equals(before)).toBe(true);
  });

  it.skipIf(!hasTshark)("tshark: replies have good checksums and are echo replies", () => {
    const a = Buffer.from(ECHO_REQUEST);
    const b = Buffer.from(ECHO_REQUEST_RR);
    emitIcmpEchoReplyInPlace(a, 0, a.length);
    emitIcmpEchoReplyInPlace(b, 0, b.length);
    const rows = tshark(
      [a, b],
      ["ip.checksum.status", "icmp.checksum.status", "icmp.type", "ip.src", "ip.dst", "ip.ttl", "icmp.ident", "icmp.seq", "ip.opt.type"],
    );
    expect(rows.map((r) => r.slice(0, 8))).toEqual([
      [CK_GOOD, CK_GOOD, "0", "10.99.1.254", "10.99.1.1", "64", "4516", "1"],
      [CK_GOOD, CK_GOOD, "0", "10.99.1.254", "10.99.1.1", "64", "4519", "1"],
    ]);
    expect(rows[1][8].split(",").every((t) => t === "1")).toBe(true);
  });
});
