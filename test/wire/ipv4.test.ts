import { describe, expect, it } from "vitest";
import {
  CHECK_BAD_CHECKSUM,
  CHECK_BAD_IHL,
  CHECK_BAD_TOTAL_LEN,
  CHECK_BAD_VERSION,
  CHECK_OK,
  CHECK_TOO_SHORT,
  IP_PROTO_ICMP,
  IPV4_FLAG_DF,
  IPV4_FLAG_MF,
  IPV4_HEADER_LEN,
  emitIpv4,
  internetChecksum,
  readI32,
  readU16,
  ipv4Check,
  ipv4ChecksumValid,
  ipv4ComputeChecksum,
  ipv4DecrementTtl,
  ipv4FillChecksum,
  ipv4GetDf,
  ipv4GetDstAddr,
  ipv4GetFragOffset,
  ipv4GetHeaderLen,
  ipv4GetIdent,
  ipv4GetMf,
  ipv4GetProtocol,
  ipv4GetSrcAddr,
  ipv4GetTotalLen,
  ipv4GetTtl,
  ipv4IsFragment,
  ipv4SetDstAddrWithChecksumUpdate,
  ipv4SetFlags,
  ipv4SetFragOffset,
  ipv4SetSrcAddrWithChecksumUpdate,
  parseIp,
  parseIpv4,
  type Ipv4Repr,
} from "../../src/wire/index.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

// Captured on a veth in a test namespace (Linux 6.x), checked with tshark
// (-o ip.check_checksum:TRUE).
//
// Frame 7, ICMP echo request. tshark: ip.version 4, ip.hdr_len 20, dscp 0, ecn 0,
// ip.len 84, ip.id 0xf949, DF 1, MF 0, frag_offset 0, ttl 64, proto 1,
// ip.checksum 0x299b (good), src 10.99.1.1, dst 10.99.1.254.
const FIXTURE = hex(`
  020000000afe 020000000a01 0800
  45 00 0054 f949 4000 40 01 299b 0a630101 0a6301fe
  0800112311a40001b22f026b0000000053ca0e0000000000
  101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637
`);
const IP = FIXTURE.subarray(14);
// Frame 13, `ping -R`: 40 bytes of Record Route option. tshark: ip.hdr_len 60, ip.len 124,
// ip.id 0xf94c, ip.checksum 0xebfc (good), options NOP, RR 10.99.1.1.
const WITH_OPTIONS = hex(`
  4f 00 007c f94c 4000 40 01 ebfc 0a630101 0a6301fe
  01 07 27 08 0a630101 0000000000000000000000000000000000000000000000000000000000000000
  0800eeef11a70001b22f026b0000000075fa0e0000000000
  101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637
`);
// Frame 10, ICMP time exceeded from the router. tshark: dscp 48 (CS6), ecn 0,
// ip.len 112, ip.id 0x1698, flags none, ttl 64, ip.checksum 0x4b71 (good).
const TOS_HEADER = hex("45c000701698000040014b710a6301fe0a630101");

const A = 0x0a630101; // 10.99.1.1
const R = 0x0a6301fe; // 10.99.1.254

describe("ipv4", () => {
  it("reads every field of a captured header", () => {
    expect(ipv4Check(IP, 0, IP.length)).toBe(CHECK_OK);
    expect(ipv4GetHeaderLen(IP, 0)).toBe(20);
    expect(ipv4GetTotalLen(IP, 0)).toBe(84);
    expect(ipv4GetIdent(IP, 0)).toBe(0xf949);
    expect(ipv4GetDf(IP, 0)).toBe(true);
    expect(ipv4GetMf(IP, 0)).toBe(false);
    expect(ipv4GetFragOffset(IP, 0)).toBe(0);
    expect(ipv4IsFragment(IP, 0)).toBe(false);
    expect(ipv4GetTtl(IP, 0)).toBe(64);
    expect(ipv4GetProtocol(IP, 0)).toBe(IP_PROTO_ICMP);
    expect(readU16(IP, 10)).toBe(0x299b);
    expect(ipv4ComputeChecksum(IP, 0)).toBe(0x299b);
    expect(ipv4ChecksumValid(IP, 0)).toBe(true);
    expect(ipv4GetSrcAddr(IP, 0)).toBe(parseIp("10.99.1.1"));
    expect(ipv4GetDstAddr(IP, 0)).toBe(parseIp("10.99.1.254"));

    expect(ipv4Check(TOS_HEADER, 0, 20, true)).toBe(CHECK_BAD_TOTAL_LEN); // header only, totalLen 112
    expect(ipv4ChecksumValid(TOS_HEADER, 0)).toBe(true);
    // With the 92 bytes its totalLen announces after it (zeros here), it parses.
    expect(parseIpv4(Buffer.concat([TOS_HEADER, Buffer.alloc(92)]), 0, 112)).toMatchObject({ dscp: 48, ecn: 0, df: false, mf: false, totalLen: 112 });
  });

  it("parses a captured header into a repr", () => {
    expect(parseIpv4(FIXTURE, 14, FIXTURE.length - 14)).toEqual({
      dscp: 0,
      ecn: 0,
      totalLen: 84,
      ident: 0xf949,
      df: true,
      mf: false,
      fragOffset: 0,
      ttl: 64,
      protocol: 1,
      srcAddr: A,
      dstAddr: R,
      options: new Uint8Array(0),
    });
  });

  it("parses a captured header with options", () => {
    expect(ipv4Check(WITH_OPTIONS, 0, WITH_OPTIONS.length)).toBe(CHECK_OK);
    expect(ipv4GetHeaderLen(WITH_OPTIONS, 0)).toBe(60);
    expect(ipv4ComputeChecksum(WITH_OPTIONS, 0)).toBe(0xebfc);
    const r = parseIpv4(WITH_OPTIONS, 0, WITH_OPTIONS.length);
    expect(r).not.toBeNull();
    expect(r!.totalLen).toBe(124);
    expect(Buffer.from(r!.options).toString("hex")).toBe(WITH_OPTIONS.subarray(20, 60).toString("hex"));
    // The options are a copy, not a view into the packet.
    WITH_OPTIONS[20] = 0;
    expect(r!.options[0]).toBe(1);
    WITH_OPTIONS[20] = 1;
  });

  it("emits into a 0xa5-filled buffer at an offset (checksum included)", () => {
    const repr: Ipv4Repr = {
      dscp: 0,
      ecn: 0,
      totalLen: 84,
      ident: 0xf949,
      df: true,
      mf: false,
      fragOffset: 0,
      ttl: 64,
      protocol: IP_PROTO_ICMP,
      srcAddr: A,
      dstAddr: R,
      options: new Uint8Array(0),
    };
    const off = 33;
    const out = Buffer.alloc(off + 20 + 11, 0xa5);
    const n = emitIpv4(repr, out, off);
    expect(n).toBe(IPV4_HEADER_LEN);
    expect(out.subarray(off, off + n).toString("hex")).toBe(IP.subarray(0, 20).toString("hex"));
    expect(out.subarray(0, off).every((b) => b === 0xa5)).toBe(true);
    expect(out.subarray(off + n).every((b) => b === 0xa5)).toBe(true);

    const withOpts = Buffer.alloc(off + 60 + 3, 0xa5);
    const parsed = parseIpv4(WITH_OPTIONS, 0, WITH_OPTIONS.length)!;
    expect(emitIpv4(parsed, withOpts, off)).toBe(60);
    expect(withOpts.subarray(off, off + 60).toString("hex")).toBe(WITH_OPTIONS.subarray(0, 60).toString("hex"));

    const tos = Buffer.alloc(off + 20, 0xa5);
    emitIpv4({ ...repr, dscp: 48, totalLen: 112, ident: 0x1698, df: false, srcAddr: R, dstAddr: A }, tos, off);
    expect(tos.subarray(off).toString("hex")).toBe(TOS_HEADER.toString("hex"));
  });

  it("emit refuses malformed options", () => {
    const repr = parseIpv4(IP, 0, IP.length)!;
    expect(() => emitIpv4({ ...repr, options: new Uint8Array(3) }, Buffer.alloc(64), 0)).toThrow(/multiple of 4/);
    expect(() => emitIpv4({ ...repr, options: new Uint8Array(44) }, Buffer.alloc(64), 0)).toThrow(/at most 40/);
  });

  it("fragment fields round-trip through setters", () => {
    const h = Buffer.from(IP.subarray(0, 20));
    ipv4SetFragOffset(h, 0, 185); // 1480 bytes
    ipv4SetFlags(h, 0, IPV4_FLAG_DF | IPV4_FLAG_MF);
    expect(h.subarray(6, 8).toString("hex")).toBe("60b9");
    expect(ipv4GetFragOffset(h, 0)).toBe(185);
    expect(ipv4GetDf(h, 0)).toBe(true);
    expect(ipv4GetMf(h, 0)).toBe(true);
    expect(ipv4IsFragment(h, 0)).toBe(true);
    ipv4SetFlags(h, 0, 0);
    expect(h.subarray(6, 8).toString("hex")).toBe("00b9");
    ipv4SetFragOffset(h, 0, 0x1fff);
    expect(h.subarray(6, 8).toString("hex")).toBe("1fff");
    ipv4FillChecksum(h, 0);
    expect(internetChecksum(h, 0, 20)).toBe(0);
  });

  it("decrements TTL with a valid incremental checksum", () => {
    const h = Buffer.from(IP);
    expect(ipv4DecrementTtl(h, 0)).toBe(63);
    expect(ipv4GetTtl(h, 0)).toBe(63);
    expect(readU16(h, 10)).toBe(ipv4ComputeChecksum(h, 0));
    expect(ipv4Check(h, 0, h.length)).toBe(CHECK_OK);
    const zero = Buffer.from(h);
    zero[8] = 0;
    ipv4FillChecksum(zero, 0);
    const before = Buffer.from(zero);
    expect(ipv4DecrementTtl(zero, 0)).toBe(0);
    expect(zero.equals(before)).toBe(true);
  });

  it("rewrites addresses with incremental checksum updates (gVisor style)", () => {
    const h = Buffer.from(IP);
    ipv4SetSrcAddrWithChecksumUpdate(h, 0, parseIp("192.168.255.254"));
    expect(ipv4GetSrcAddr(h, 0)).toBe(0xc0a8fffe);
    expect(readU16(h, 10)).toBe(ipv4ComputeChecksum(h, 0));
    ipv4SetDstAddrWithChecksumUpdate(h, 0, 0xffffffff);
    expect(ipv4GetDstAddr(h, 0)).toBe(0xffffffff);
    expect(readU16(h, 10)).toBe(ipv4ComputeChecksum(h, 0));
    // And back to the capture.
    ipv4SetSrcAddrWithChecksumUpdate(h, 0, A);
    ipv4SetDstAddrWithChecksumUpdate(h, 0, R);
    expect(h.equals(IP)).toBe(true);
  });

  it("address setters return the old address as int32 bits and leave an unchanged one alone", () => {
    const h = Buffer.from(IP);
    expect(ipv4SetDstAddrWithChecksumUpdate(h, 0, 0xffffffff)).toBe(R | 0);
    expect(ipv4SetDstAddrWithChecksumUpdate(h, 0, -1)).toBe(-1); // the same address as int32 bits
    expect(readU16(h, 10)).toBe(ipv4ComputeChecksum(h, 0));
    expect(ipv4SetDstAddrWithChecksumUpdate(h, 0, R)).toBe(-1);
    expect(ipv4SetSrcAddrWithChecksumUpdate(h, 0, A)).toBe(A | 0);
    expect(h.equals(IP)).toBe(true);
    expect(readI32(h, 12)).toBe(A | 0);
  });

  const mutated = (src: Buffer, f: (b: Buffer) => void, fix = true): Buffer => {
    const b = Buffer.from(src);
    f(b);
    if (fix) ipv4FillChecksum(b, 0);
    return b;
  };
  it.each([
    ["ok", IP, 0, 84, CHECK_OK],
    ["ok with options", WITH_OPTIONS, 0, 124, CHECK_OK],
    ["ok with Ethernet padding after totalLen", Buffer.concat([IP, Buffer.alloc(6)]), 0, 90, CHECK_OK],
    ["ok at an offset", FIXTURE, 14, 84, CHECK_OK],
    ["19 bytes", IP, 0, 19, CHECK_TOO_SHORT],
    ["0 bytes", Buffer.alloc(0), 0, 0, CHECK_TOO_SHORT],
    ["negative offset", IP, -1, 84, CHECK_TOO_SHORT],
    ["len beyond the buffer", IP, 1, 84, CHECK_TOO_SHORT],
    ["ihl 15 in 40 bytes", WITH_OPTIONS, 0, 40, CHECK_TOO_SHORT],
    ["version 6", mutated(IP, (b) => (b[0] = 0x65)), 0, 84, CHECK_BAD_VERSION],
    ["version 0", mutated(IP, (b) => (b[0] = 0x05)), 0, 84, CHECK_BAD_VERSION],
    ["ihl 4", mutated(IP, (b) => (b[0] = 0x44)), 0, 84, CHECK_BAD_IHL],
    ["ihl 0", mutated(IP, (b) => (b[0] = 0x40)), 0, 84, CHECK_BAD_IHL],
    ["totalLen 19 < header", mutated(IP, (b) => b.writeUInt16BE(19, 2)), 0, 84, CHECK_BAD_TOTAL_LEN],
    ["totalLen 40 < ihl*4 60", mutated(WITH_OPTIONS, (b) => b.writeUInt16BE(40, 2)), 0, 124, CHECK_BAD_TOTAL_LEN],
    ["totalLen beyond available (truncated)", IP, 0, 83, CHECK_BAD_TOTAL_LEN],
    ["totalLen 65535", mutated(IP, (b) => b.writeUInt16BE(65535, 2)), 0, 84, CHECK_BAD_TOTAL_LEN],
    ["checksum off by one bit", mutated(IP, (b) => (b[11] ^= 1), false), 0, 84, CHECK_BAD_CHECKSUM],
    ["ttl changed without checksum", mutated(IP, (b) => (b[8] = 63), false), 0, 84, CHECK_BAD_CHECKSUM],
    ["option byte changed", mutated(WITH_OPTIONS, (b) => (b[30] = 1), false), 0, 124, CHECK_BAD_CHECKSUM],
  ] as const)("check: %s", (_name, b, off, len, want) => {
    expect(ipv4Check(b, off, len)).toBe(want);
    if (want !== CHECK_OK) expect(parseIpv4(b, off, len)).toBeNull();
    if (want === CHECK_BAD_CHECKSUM) expect(ipv4Check(b, off, len, false)).toBe(CHECK_OK);
  });

  it("never throws on short or random input", () => {
    for (let n = 0; n < 20; n++) {
      const b = Buffer.from(IP.subarray(0, n));
      expect(ipv4Check(b, 0, n)).toBe(CHECK_TOO_SHORT);
      expect(parseIpv4(b, 0, n)).toBeNull();
      expect(ipv4Check(IP, 0, n)).toBe(CHECK_TOO_SHORT);
    }
    let seed = 12345;
    const next = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 24;
    for (let i = 0; i < 2000; i++) {
      const len = next() % 80;
      const b = Buffer.alloc(len);
      for (let j = 0; j < len; j++) b[j] = next();
      if (len > 0) b[0] = 0x40 | (b[0] & 0x0f);
      const off = next() % 4;
      expect(() => ipv4Check(b, off, len - off)).not.toThrow();
      expect(() => parseIpv4(b, off, len - off)).not.toThrow();
    }
  });
});
