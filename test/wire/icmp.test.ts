import { describe, expect, it } from "vitest";
import {
  CHECK_BAD_CHECKSUM,
  CHECK_OK,
  CHECK_TOO_SHORT,
  ETHERTYPE_IPV4,
  ICMP_DEST_UNREACH,
  ICMP_ECHO_REQUEST,
  ICMP_HEADER_LEN,
  ICMP_TIME_EXCEEDED,
  ICMP_TIME_EXCEEDED_TTL,
  ICMP_UNREACH_FRAG_NEEDED,
  ICMP_UNREACH_PORT,
  IP_PROTO_ICMP,
  IP_PROTO_UDP,
  emitEthernet,
  emitIcmp,
  emitIpv4,
  icmpCheck,
  icmpComputeChecksum,
  icmpFillChecksum,
  icmpGetCode,
  icmpGetIdent,
  icmpGetType,
  icmpIsError,
  icmpRestEcho,
  icmpRestFragNeeded,
  icmpSetIdentWithChecksumUpdate,
  icmpUpdateChecksum16,
  icmpUpdateChecksum32,
  readU16,
  readU32,
  writeU16,
  writeU32,
  parseIcmp,
  parseIpv4,
} from "../../src/wire/index.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

// All captured on a veth in a test namespace (10.99.1.1 -> router 10.99.1.254 -> 10.99.2.1,
// the router's second link at MTU 1280), decoded with tshark.
//
// Frame 7, `ping 10.99.1.254`. tshark: icmp.type 8, code 0, icmp.checksum 0x1123 (good),
// icmp.ident 4516 (0x11a4, big endian), icmp.seq 1.
const FIXTURE = hex(`
  020000000afe 020000000a01 0800
  45000054f94940004001299b0a6301010a6301fe
  08 00 1123 11a4 0001
  b22f026b0000000053ca0e0000000000
  101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637
`);
const ICMP_OFF = 34;
const ICMP_LEN = 64;
// Frame 9, `ping -t 1 10.99.2.1`, and frame 10, the router's answer. tshark frame 10:
// icmp.type 11, code 0, icmp.checksum 0xf4ff (good); quotes all 84 bytes of frame 9's IP packet.
const TTL1_FRAME = hex(`
  020000000afe 020000000a01 0800
  450000540baa4000010156380a6301010a630201
  08002f1111a50001b22f026b0000000035db0e0000000000
  101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637
`);
const TIME_EXCEEDED = hex(`
  020000000a01 020000000afe 0800
  45c000701698000040014b710a6301fe0a630101
  0b 00 f4ff 00000000
  450000540baa4000010156380a6301010a630201
  08002f1111a50001b22f026b0000000035db0e0000000000
  101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637
`);
// Frame 19, UDP to a closed port on the router. tshark: icmp.type 3, code 3,
// icmp.checksum 0x14e1 (good).
const PORT_UNREACH = hex(`
  020000000a01 020000000afe 0800
  45c0003e1705000040014b360a6301fe0a630101
  03 03 14e1 00000000
  4500002272d440004011b0320a6301010a6301fe 9c400009000e1380 636c6f736564
`);
// Frame 12, `ping -M do -s 1400 10.99.2.1` into the 1280-byte link. tshark: icmp.type 3,
// code 4, icmp.checksum 0x0ec9 (good), icmp.mtu 1280. 576-byte IP datagram (RFC 1812 4.3.2.3).
const FRAG_NEEDED = hex(`
  020000000a01020000000afe080045c0024016990000400149a00a6301fe0a63
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

const A = 0x0a630101;
const R = 0x0a6301fe;
const MAC_A = 0x020000000a01;
const MAC_R = 0x020000000afe;

describe("icmp", () => {
  it("parses every field of a captured echo request", () => {
    expect(icmpCheck(FIXTURE, ICMP_OFF, ICMP_LEN)).toBe(CHECK_OK);
    expect(icmpGetType(FIXTURE, ICMP_OFF)).toBe(ICMP_ECHO_REQUEST);
    expect(icmpGetCode(FIXTURE, ICMP_OFF)).toBe(0);
    expect(readU16(FIXTURE, ICMP_OFF + 2)).toBe(0x1123);
    expect(icmpComputeChecksum(FIXTURE, ICMP_OFF, ICMP_LEN)).toBe(0x1123);
    expect(icmpGetIdent(FIXTURE, ICMP_OFF)).toBe(4516);
    expect(readU16(FIXTURE, ICMP_OFF + 6)).toBe(1);
    expect(icmpRestEcho(4516, 1)).toBe(0x11a40001);
    expect(parseIcmp(FIXTURE, ICMP_OFF, ICMP_LEN)).toEqual({ type: 8, code: 0, rest: icmpRestEcho(4516, 1) });
    expect(icmpIsError(ICMP_ECHO_REQUEST)).toBe(false);
  });

  it("parses captured errors, including the quoted datagram", () => {
    expect(icmpCheck(TIME_EXCEEDED, 34, 92)).toBe(CHECK_OK);
    expect(parseIcmp(TIME_EXCEEDED, 34, 92)).toEqual({ type: ICMP_TIME_EXCEEDED, code: ICMP_TIME_EXCEEDED_TTL, rest: 0 });
    expect(readU16(TIME_EXCEEDED, 36)).toBe(0xf4ff);
    expect(parseIpv4(TIME_EXCEEDED, 42, 84)).toMatchObject({ ttl: 1, srcAddr: A, dstAddr: 0x0a630201 });

    expect(parseIcmp(PORT_UNREACH, 34, 42)).toEqual({ type: ICMP_DEST_UNREACH, code: ICMP_UNREACH_PORT, rest: 0 });
    expect(readU16(PORT_UNREACH, 36)).toBe(0x14e1);
    expect(parseIpv4(PORT_UNREACH, 42, 34)).toMatchObject({ protocol: IP_PROTO_UDP, dstAddr: R });

    expect(FRAG_NEEDED.length).toBe(590);
    expect(icmpCheck(FRAG_NEEDED, 34, 556)).toBe(CHECK_OK);
    expect(icmpGetType(FRAG_NEEDED, 34)).toBe(ICMP_DEST_UNREACH);
    expect(icmpGetCode(FRAG_NEEDED, 34)).toBe(ICMP_UNREACH_FRAG_NEEDED);
    expect(readU16(FRAG_NEEDED, 36)).toBe(0x0ec9);
    expect(readU16(FRAG_NEEDED, 40)).toBe(1280);
    expect(parseIcmp(FRAG_NEEDED, 34, 556)?.rest).toBe(icmpRestFragNeeded(1280));
    // The quoted header says 1428 bytes; only part of it is quoted, so it is "truncated".
    expect(parseIpv4(FRAG_NEEDED, 42, 548)).toBeNull();

    for (const t of [3, 4, 5, 11, 12]) expect(icmpIsError(t)).toBe(true);
    for (const t of [0, 8, 13, 14]) expect(icmpIsError(t)).toBe(false);
  });

  it("emits a whole echo request frame into a 0xa5-filled buffer at an offset", () => {
    const off = 29;
    const out = Buffer.alloc(off + FIXTURE.length + 13, 0xa5);
    let p = off;
    p += emitEthernet({ dstAddr: MAC_R, srcAddr: MAC_A, etherType: ETHERTYPE_IPV4 }, out, p);
    p += emitIpv4(
      {
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
      },
      out,
      p,
    );
    const icmpOff = p;
    p += emitIcmp({ type: ICMP_ECHO_REQUEST, code: 0, rest: icmpRestEcho(4516, 1) }, out, p);
    expect(p - icmpOff).toBe(ICMP_HEADER_LEN);
    FIXTURE.copy(out, p, ICMP_OFF + 8);
    p += ICMP_LEN - 8;
    icmpFillChecksum(out, icmpOff, ICMP_LEN);
    expect(out.subarray(off, p).toString("hex")).toBe(FIXTURE.toString("hex"));
    expect(out.subarray(0, off).every((b) => b === 0xa5)).toBe(true);
    expect(out.subarray(p).every((b) => b === 0xa5)).toBe(true);
  });

  it("builds the router's Time Exceeded from the offending frame, as the kernel did", () => {
    const off = 6;
    const out = Buffer.alloc(off + TIME_EXCEEDED.length, 0xa5);
    const quoted = TTL1_FRAME.subarray(14); // whole datagram: 84 bytes < 576 - 28
    let p = off;
    p += emitEthernet({ dstAddr: MAC_A, srcAddr: MAC_R, etherType: ETHERTYPE_IPV4 }, out, p);
    p += emitIpv4(
      {
        dscp: 48,
        ecn: 0,
        totalLen: 20 + 8 + quoted.length,
        ident: 0x1698,
        df: false,
        mf: false,
        fragOffset: 0,
        ttl: 64,
        protocol: IP_PROTO_ICMP,
        srcAddr: R,
        dstAddr: A,
        options: new Uint8Array(0),
      },
      out,
      p,
    );
    const icmpOff = p;
    p += emitIcmp({ type: ICMP_TIME_EXCEEDED, code: ICMP_TIME_EXCEEDED_TTL, rest: 0 }, out, p);
    quoted.copy(out, p);
    p += quoted.length;
    icmpFillChecksum(out, icmpOff, p - icmpOff);
    expect(out.subarray(off).toString("hex")).toBe(TIME_EXCEEDED.toString("hex"));
  });

  it("rewrites the echo identifier with an incremental checksum (NAT)", () => {
    const b = Buffer.from(FIXTURE.subarray(ICMP_OFF));
    for (const ident of [0, 1, 0x8000, 0xffff, 4516]) {
      icmpSetIdentWithChecksumUpdate(b, 0, ident);
      expect(icmpGetIdent(b, 0)).toBe(ident);
      expect(readU16(b, 2)).toBe(icmpComputeChecksum(b, 0, ICMP_LEN));
      expect(icmpCheck(b, 0, ICMP_LEN)).toBe(CHECK_OK);
    }
    expect(b.equals(FIXTURE.subarray(ICMP_OFF))).toBe(true);
  });

  it("follows a changed word of the message (RFC 1624), 16 and 32 bits", () => {
    const b = Buffer.from(FIXTURE.subarray(ICMP_OFF));
    const old = readU32(b, 8);
    writeU32(b, 8, 0xc0a80001);
    icmpUpdateChecksum32(b, 0, old, 0xc0a80001);
    expect(icmpCheck(b, 0, ICMP_LEN)).toBe(CHECK_OK);
    writeU16(b, 12, 0xbeef);
    icmpUpdateChecksum16(b, 0, readU16(FIXTURE, ICMP_OFF + 12), 0xbeef);
    expect(readU16(b, 2)).toBe(icmpComputeChecksum(b, 0, ICMP_LEN));
  });

  it("check rejects short input and bad checksums without throwing", () => {
    for (let n = 0; n < ICMP_HEADER_LEN; n++) {
      expect(icmpCheck(FIXTURE, ICMP_OFF, n)).toBe(CHECK_TOO_SHORT);
      expect(parseIcmp(Buffer.from(FIXTURE.subarray(ICMP_OFF, ICMP_OFF + n)), 0, n)).toBeNull();
    }
    expect(icmpCheck(FIXTURE, ICMP_OFF, ICMP_LEN + 1)).toBe(CHECK_TOO_SHORT); // beyond the buffer
    expect(icmpCheck(FIXTURE, -2, 8)).toBe(CHECK_TOO_SHORT);
    // Checksum covers the data: dropping the last 2 bytes or flipping one breaks it.
    expect(icmpCheck(FIXTURE, ICMP_OFF, ICMP_LEN - 2)).toBe(CHECK_BAD_CHECKSUM);
    const b = Buffer.from(FIXTURE);
    b[b.length - 1] ^= 0x80;
    expect(icmpCheck(b, ICMP_OFF, ICMP_LEN)).toBe(CHECK_BAD_CHECKSUM);
    expect(icmpCheck(b, ICMP_OFF, ICMP_LEN, false)).toBe(CHECK_OK);
    expect(parseIcmp(b, ICMP_OFF, ICMP_LEN)).toBeNull();
  });
});
