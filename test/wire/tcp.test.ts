import { describe, expect, it } from "vitest";
import {
  CHECK_BAD_CHECKSUM,
  CHECK_BAD_DATA_OFFSET,
  CHECK_OK,
  CHECK_TOO_SHORT,
  ETHERTYPE_IPV4,
  IP_PROTO_TCP,
  TCP_ACK,
  TCP_CWR,
  TCP_ECE,
  TCP_FIN,
  TCP_HEADER_LEN,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
  TCP_URG,
  emitEthernet,
  emitIpv4,
  emitTcp,
  ipv4Check,
  ipv4SetDstAddrWithChecksumUpdate,
  parseTcp,
  tcpCheck,
  tcpChecksumValid,
  tcpComputeChecksum,
  tcpFillChecksum,
  tcpGetFlags,
  tcpGetHeaderLen,
  l4GetDstPort,
  l4GetSrcPort,
  readU16,
  readU32,
  L4_DST_PORT_OFF,
  L4_SRC_PORT_OFF,
  l4SetPortWithChecksumUpdate,
  l4UpdateChecksumAddr,
  checksumFold,
  pseudoHeaderSum,
  writeU16,
  writeU32,
} from "../../src/wire/index.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

// Captured on a veth in a test namespace: python3 connect() from 10.99.1.1 to
// 10.99.2.1:8080 and send(b"hi"), tx checksum offload off. Decoded with tshark
// (-o tcp.check_checksum:TRUE -o tcp.relative_sequence_numbers:FALSE).
//
// Frame 23. tshark: srcport 60932, dstport 8080, seq 2647612784, ack 3958256072,
// hdr_len 32, flags 0x018 (PSH, ACK), window 63, checksum 0x74e9 (good), urgent 0, len 2.
const FIXTURE = hex(`
  020000000afe 020000000a01 0800
  45000036b0834000400672770a6301010a630201
  ee04 1f90 9dcf5d70 ebee31c8 80 18 003f 74e9 0000
  0101080a7f863a3357a6496e
  6869
`);
const TCP_OFF = 34;
const TCP_LEN = 34;
// Frame 20, the SYN. tshark: seq 2647612783, ack 0, hdr_len 40, flags 0x002, window 64480,
// checksum 0x72a3 (good); options MSS 1240, SACK_PERM, TS, NOP, WS 1024.
const SYN = hex(`
  ee04 1f90 9dcf5d6f 00000000 a0 02 fbe0 72a3 0000
  020404d8 0402080a 7f863a33 00000000 0103030a
`);
const A = 0x0a630101;
const B = 0x0a630201;

describe("tcp", () => {
  it("parses every field of a captured segment", () => {
    expect(tcpCheck(FIXTURE, TCP_OFF, TCP_LEN, A, B)).toBe(CHECK_OK);
    expect(l4GetSrcPort(FIXTURE, TCP_OFF)).toBe(60932);
    expect(l4GetDstPort(FIXTURE, TCP_OFF)).toBe(8080);
    expect(tcpGetHeaderLen(FIXTURE, TCP_OFF)).toBe(32);
    expect(tcpGetFlags(FIXTURE, TCP_OFF)).toBe(TCP_PSH | TCP_ACK);
    expect(readU16(FIXTURE, TCP_OFF + 16)).toBe(0x74e9);
    expect(tcpComputeChecksum(FIXTURE, TCP_OFF, TCP_LEN, A, B)).toBe(0x74e9);
    const r = parseTcp(FIXTURE, TCP_OFF, TCP_LEN)!;
    expect({ ...r, options: Buffer.from(r.options).toString("hex") }).toEqual({
      srcPort: 60932,
      dstPort: 8080,
      seq: 2647612784,
      ack: 3958256072,
      flags: 0x18,
      window: 63,
      urgent: 0,
      options: "0101080a7f863a3357a6496e",
    });
  });

  it("parses the captured SYN", () => {
    expect(tcpCheck(SYN, 0, SYN.length, A, B)).toBe(CHECK_OK);
    expect(tcpGetFlags(SYN, 0)).toBe(TCP_SYN);
    expect(tcpGetHeaderLen(SYN, 0)).toBe(40);
    expect(readU16(SYN, 16)).toBe(0x72a3);
    const r = parseTcp(SYN, 0, SYN.length)!;
    expect(r).toMatchObject({ flags: TCP_SYN, seq: 2647612783, ack: 0, window: 64480 });
    expect(Buffer.from(r.options).toString("hex")).toBe("020404d80402080a7f863a33000000000103030a");
    expect([TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK, TCP_URG, TCP_ECE, TCP_CWR]).toEqual([1, 2, 4, 8, 16, 32, 64, 128]);
  });

  it("emits a whole frame into a 0xa5-filled buffer at an offset", () => {
    const off = 23;
    const out = Buffer.alloc(off + FIXTURE.length + 9, 0xa5);
    let p = off;
    p += emitEthernet({ dstAddr: 0x020000000afe, srcAddr: 0x020000000a01, etherType: ETHERTYPE_IPV4 }, out, p);
    p += emitIpv4(
      {
        dscp: 0,
        ecn: 0,
        totalLen: 54,
        ident: 0xb083,
        df: true,
        mf: false,
        fragOffset: 0,
        ttl: 64,
        protocol: IP_PROTO_TCP,
        srcAddr: A,
        dstAddr: B,
        options: new Uint8Array(0),
      },
      out,
      p,
    );
    const tcpOff = p;
    const n = emitTcp(
      {
        srcPort: 60932,
        dstPort: 8080,
        seq: 2647612784,
        ack: 3958256072,
        flags: TCP_PSH | TCP_ACK,
        window: 63,
        urgent: 0,
        options: hex("0101080a7f863a3357a6496e"),
      },
      out,
      p,
    );
    expect(n).toBe(32);
    p += n;
    p += out.write("hi", p);
    tcpFillChecksum(out, tcpOff, p - tcpOff, A, B);
    expect(out.subarray(off, p).toString("hex")).toBe(FIXTURE.toString("hex"));
    expect(out.subarray(0, off).every((b) => b === 0xa5)).toBe(true);
    expect(out.subarray(p).every((b) => b === 0xa5)).toBe(true);

    const syn = Buffer.alloc(off + SYN.length, 0xa5);
    emitTcp(parseTcp(SYN, 0, SYN.length)!, syn, off);
    tcpFillChecksum(syn, off, SYN.length, A, B);
    expect(syn.subarray(off).toString("hex")).toBe(SYN.toString("hex"));
  });

  it("emit refuses malformed options", () => {
    const r = parseTcp(SYN, 0, SYN.length)!;
    expect(() => emitTcp({ ...r, options: new Uint8Array(2) }, Buffer.alloc(80), 0)).toThrow(/multiple of 4/);
  });

  it("keeps the checksum right through DNAT rewrites (RFC 1624)", () => {
    const f = Buffer.from(FIXTURE);
    const newDst = 0xac100005; // 172.16.0.5
    ipv4SetDstAddrWithChecksumUpdate(f, 14, newDst);
    l4UpdateChecksumAddr(f, TCP_OFF, IP_PROTO_TCP, B, newDst, false);
    l4SetPortWithChecksumUpdate(f, TCP_OFF, IP_PROTO_TCP, L4_DST_PORT_OFF, 80);
    l4SetPortWithChecksumUpdate(f, TCP_OFF, IP_PROTO_TCP, L4_SRC_PORT_OFF, 1024);
    expect(ipv4Check(f, 14, 54)).toBe(CHECK_OK);
    expect(tcpCheck(f, TCP_OFF, TCP_LEN, A, newDst)).toBe(CHECK_OK);
    expect(readU16(f, TCP_OFF + 16)).toBe(tcpComputeChecksum(f, TCP_OFF, TCP_LEN, A, newDst));
    // Any 32-bit word the checksum covers updates the same way: a sequence number, top bit set.
    const seq = readU32(f, TCP_OFF + 4);
    writeU32(f, TCP_OFF + 4, 0xfffffff0);
    l4UpdateChecksumAddr(f, TCP_OFF, IP_PROTO_TCP, seq, 0xfffffff0, false);
    expect(tcpChecksumValid(f, TCP_OFF, TCP_LEN, A, newDst)).toBe(true);
  });

  it("NAT of a CHECKSUM_PARTIAL segment: the seed follows the addresses, not the ports", () => {
    const newDst = 0xac100005;
    const f = Buffer.from(FIXTURE.subarray(TCP_OFF));
    writeU16(f, 16, checksumFold(pseudoHeaderSum(A, B, IP_PROTO_TCP, TCP_LEN)));
    l4UpdateChecksumAddr(f, 0, IP_PROTO_TCP, B, newDst, true);
    l4SetPortWithChecksumUpdate(f, 0, IP_PROTO_TCP, L4_DST_PORT_OFF, 80, true);
    l4SetPortWithChecksumUpdate(f, 0, IP_PROTO_TCP, L4_SRC_PORT_OFF, 1024, true);
    expect([l4GetSrcPort(f, 0), l4GetDstPort(f, 0)]).toEqual([1024, 80]);
    expect(readU16(f, 16) % 0xffff).toBe(checksumFold(pseudoHeaderSum(A, newDst, IP_PROTO_TCP, TCP_LEN)) % 0xffff);
    // Full checksum through the address update; an unchanged port changes nothing.
    const g = Buffer.from(FIXTURE.subarray(TCP_OFF));
    l4UpdateChecksumAddr(g, 0, IP_PROTO_TCP, B, newDst | 0, false);
    expect(tcpCheck(g, 0, TCP_LEN, A, newDst)).toBe(CHECK_OK);
    const before = Buffer.from(g);
    l4SetPortWithChecksumUpdate(g, 0, IP_PROTO_TCP, L4_SRC_PORT_OFF, 60932);
    expect(g.equals(before)).toBe(true);
  });

  const mut = (f: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(FIXTURE);
    f(b);
    return b;
  };
  it.each([
    ["ok", FIXTURE, TCP_LEN, CHECK_OK],
    ["19 bytes", FIXTURE, 19, CHECK_TOO_SHORT],
    ["beyond the buffer", FIXTURE, TCP_LEN + 1, CHECK_TOO_SHORT],
    ["dataOffset 4", mut((b) => (b[TCP_OFF + 12] = 0x40)), TCP_LEN, CHECK_BAD_DATA_OFFSET],
    ["dataOffset 15 > segment", mut((b) => (b[TCP_OFF + 12] = 0xf0)), TCP_LEN, CHECK_BAD_DATA_OFFSET],
    ["header but not data counted", FIXTURE, 32, CHECK_BAD_CHECKSUM],
    ["payload flipped", mut((b) => (b[b.length - 1] ^= 4)), TCP_LEN, CHECK_BAD_CHECKSUM],
  ] as const)("check: %s", (_name, b, len, want) => {
    expect(tcpCheck(b, TCP_OFF, len, A, B)).toBe(want);
    if (want === CHECK_BAD_CHECKSUM) expect(tcpCheck(b, TCP_OFF, len, A, B, false)).toBe(CHECK_OK);
    if (want === CHECK_TOO_SHORT || want === CHECK_BAD_DATA_OFFSET) expect(parseTcp(b, TCP_OFF, len)).toBeNull();
  });

  it("never throws on short buffers", () => {
    for (let n = 0; n < TCP_HEADER_LEN; n++) {
      const b = Buffer.from(FIXTURE.subarray(TCP_OFF, TCP_OFF + n));
      expect(tcpCheck(b, 0, n, A, B)).toBe(CHECK_TOO_SHORT);
      expect(parseTcp(b, 0, n)).toBeNull();
    }
  });
});
