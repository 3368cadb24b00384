import { describe, expect, it } from "vitest";
import {
  ARP_LEN,
  ARP_OPER_REPLY,
  ARP_OPER_REQUEST,
  CHECK_BAD_HW_LEN,
  CHECK_BAD_HW_TYPE,
  CHECK_BAD_PROTO_LEN,
  CHECK_BAD_PROTO_TYPE,
  CHECK_OK,
  CHECK_TOO_SHORT,
  ETHERTYPE_ARP,
  arpCheck,
  arpGetOper,
  arpGetSha,
  arpGetSpa,
  arpGetTpa,
  emitArp,
  emitArpFrame,
  emitArpReply,
  emitArpRequest,
  emitEthernet,
  parseArp,
} from "../../src/wire/index.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

// Captured on a veth in a test namespace when 10.99.1.1 pinged 10.99.1.254 (frames 5 and 6).
// tshark request: arp.hw.type 1, arp.proto.type 0x0800, arp.hw.size 6, arp.proto.size 4,
//   arp.opcode 1, sha 02:00:00:00:0a:01, spa 10.99.1.1, tha 00:00:00:00:00:00, tpa 10.99.1.254.
// tshark reply: arp.opcode 2, sha 02:00:00:00:0a:fe, spa 10.99.1.254, tha 02:00:00:00:0a:01, tpa 10.99.1.1.
const REQUEST = hex(`
  ffffffffffff 020000000a01 0806
  0001 0800 06 04 0001 020000000a01 0a630101 000000000000 0a6301fe
`);
const REPLY = hex(`
  020000000a01 020000000afe 0806
  0001 0800 06 04 0002 020000000afe 0a6301fe 020000000a01 0a630101
`);
const MAC_A = 0x020000000a01;
const MAC_R = 0x020000000afe;
const IP_A = 0x0a630101;
const IP_R = 0x0a6301fe;

describe("arp", () => {
  it("parses every field of a captured request", () => {
    // arpCheck passing means hardware type 1, protocol type 0x0800, lengths 6 and 4.
    expect(arpCheck(REQUEST, 14, REQUEST.length - 14)).toBe(CHECK_OK);
    expect(arpGetOper(REQUEST, 14)).toBe(ARP_OPER_REQUEST);
    expect(arpGetSha(REQUEST, 14)).toBe(MAC_A);
    expect(arpGetSpa(REQUEST, 14)).toBe(IP_A);
    expect(arpGetTpa(REQUEST, 14)).toBe(IP_R);
    expect(parseArp(REQUEST, 14, REQUEST.length - 14)).toEqual({ oper: ARP_OPER_REQUEST, sha: MAC_A, spa: IP_A, tha: 0, tpa: IP_R });
  });

  it("parses a captured reply into a repr", () => {
    expect(parseArp(REPLY, 14, REPLY.length - 14)).toEqual({
      oper: ARP_OPER_REPLY,
      sha: MAC_R,
      spa: IP_R,
      tha: MAC_A,
      tpa: IP_A,
    });
  });

  it("emits request and reply into a 0xa5-filled buffer at an offset", () => {
    const off = 19;
    for (const [fixture, write] of [
      [REQUEST, (b: Buffer, o: number) => emitArpRequest(b, o, MAC_A, IP_A, IP_R)],
      [REPLY, (b: Buffer, o: number) => emitArpReply(b, o, MAC_R, IP_R, MAC_A, IP_A)],
      [REQUEST, (b: Buffer, o: number) => emitArp({ oper: 1, sha: MAC_A, spa: IP_A, tha: 0, tpa: IP_R }, b, o)],
    ] as const) {
      const out = Buffer.alloc(off + fixture.length + 6, 0xa5);
      const eth = fixture === REQUEST ? { dstAddr: 0xffffffffffff, srcAddr: MAC_A } : { dstAddr: MAC_A, srcAddr: MAC_R };
      const e = emitEthernet({ ...eth, etherType: ETHERTYPE_ARP }, out, off);
      const n = write(out, off + e);
      expect(n).toBe(ARP_LEN);
      expect(out.subarray(off, off + e + n).toString("hex")).toBe(fixture.toString("hex"));
      expect(out.subarray(0, off).every((b) => b === 0xa5)).toBe(true);
      expect(out.subarray(off + e + n).every((b) => b === 0xa5)).toBe(true);
    }
  });

  it("emits whole frames (Ethernet header, packet, zero padding to 60) as captured", () => {
    const off = 7;
    for (const [fixture, write] of [
      [REQUEST, (b: Buffer, o: number) => emitArpFrame(b, o, 0xffffffffffff, MAC_A, ARP_OPER_REQUEST, MAC_A, IP_A, 0, IP_R)],
      [REPLY, (b: Buffer, o: number) => emitArpFrame(b, o, MAC_A, MAC_R, ARP_OPER_REPLY, MAC_R, IP_R, MAC_A, IP_A)],
    ] as const) {
      const out = Buffer.alloc(off + 60 + 5, 0xa5);
      expect(write(out, off)).toBe(60);
      expect(out.subarray(off, off + fixture.length).toString("hex")).toBe(fixture.toString("hex"));
      expect(out.subarray(off + fixture.length, off + 60).every((b) => b === 0)).toBe(true);
      expect(out.subarray(0, off).every((b) => b === 0xa5)).toBe(true);
      expect(out.subarray(off + 60).every((b) => b === 0xa5)).toBe(true);
    }
  });

  const bad = (mutate: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(REQUEST.subarray(14));
    mutate(b);
    return b;
  };
  it.each([
    ["ok", bad(() => {}), 28, CHECK_OK],
    ["ok with trailing padding", Buffer.concat([REQUEST.subarray(14), Buffer.alloc(18)]), 46, CHECK_OK],
    ["27 bytes", bad(() => {}), 27, CHECK_TOO_SHORT],
    ["0 bytes", Buffer.alloc(0), 0, CHECK_TOO_SHORT],
    ["len beyond buffer", Buffer.from(REQUEST.subarray(14, 30)), 28, CHECK_TOO_SHORT],
    ["hwType 6 (IEEE 802)", bad((b) => b.writeUInt16BE(6, 0)), 28, CHECK_BAD_HW_TYPE],
    ["protoType IPv6", bad((b) => b.writeUInt16BE(0x86dd, 2)), 28, CHECK_BAD_PROTO_TYPE],
    ["hwLen 8", bad((b) => (b[4] = 8)), 28, CHECK_BAD_HW_LEN],
    ["protoLen 16", bad((b) => (b[5] = 16)), 28, CHECK_BAD_PROTO_LEN],
    ["unknown oper passes (RFC 826 merges before the opcode)", bad((b) => b.writeUInt16BE(9, 6)), 28, CHECK_OK],
  ])("check: %s", (_name, b, len, want) => {
    expect(arpCheck(b, 0, len)).toBe(want);
    if (want !== CHECK_OK) expect(parseArp(b, 0, len)).toBeNull();
  });

  it("never throws on short buffers", () => {
    for (let n = 0; n < ARP_LEN; n++) {
      const b = Buffer.from(REQUEST.subarray(14, 14 + n));
      expect(arpCheck(b, 0, n)).toBe(CHECK_TOO_SHORT);
      expect(parseArp(b, 0, n)).toBeNull();
    }
  });
});
