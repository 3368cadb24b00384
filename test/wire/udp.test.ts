import { describe, expect, it } from "vitest";
import {
  CHECK_BAD_CHECKSUM,
  CHECK_BAD_LENGTH,
  CHECK_OK,
  CHECK_TOO_SHORT,
  ETHERTYPE_IPV4,
  IP_PROTO_UDP,
  UDP_HEADER_LEN,
  checksumFold,
  checksumSum,
  emitEthernet,
  emitIpv4,
  emitUdp,
  ipv4SetSrcAddrWithChecksumUpdate,
  ipv4Check,
  parseUdp,
  pseudoHeaderSum,
  udpCheck,
  udpChecksumValid,
  udpComputeChecksum,
  udpFillChecksum,
  udpGetChecksum,
  l4GetDstPort,
  l4GetSrcPort,
  L4_DST_PORT_OFF,
  L4_SRC_PORT_OFF,
  l4SetPortWithChecksumUpdate,
  l4UpdateChecksumAddr,
  writeU16,
} from "../../src/wire/index.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

// Frame 18, captured on a veth in a test namespace: python3 sendto(b"closed") from
// 10.99.1.1:40000 to 10.99.1.254:9 (tx checksum offload off, so the checksum is real).
// tshark (-o udp.check_checksum:TRUE): udp.srcport 40000, udp.dstport 9, udp.length 14,
// udp.checksum 0x1380, udp.checksum.status good.
const FIXTURE = hex(`
  020000000afe 020000000a01 0800
  4500002272d440004011b0320a6301010a6301fe
  9c40 0009 000e 1380
  636c6f736564
`);
const UDP_OFF = 34;
const UDP_LEN = 14;
const A = 0x0a630101;
const R = 0x0a6301fe;

describe("udp", () => {
  it("parses every field of a captured datagram", () => {
    expect(udpCheck(FIXTURE, UDP_OFF, UDP_LEN, A, R)).toBe(CHECK_OK);
    expect(l4GetSrcPort(FIXTURE, UDP_OFF)).toBe(40000);
    expect(l4GetDstPort(FIXTURE, UDP_OFF)).toBe(9);
    expect(udpGetChecksum(FIXTURE, UDP_OFF)).toBe(0x1380);
    expect(udpComputeChecksum(FIXTURE, UDP_OFF, A, R)).toBe(0x1380);
    expect(udpChecksumValid(FIXTURE, UDP_OFF, A, R)).toBe(true);
    expect(parseUdp(FIXTURE, UDP_OFF, UDP_LEN)).toEqual({ srcPort: 40000, dstPort: 9, length: 14 });
    expect(FIXTURE.subarray(UDP_OFF + 8).toString()).toBe("closed");
  });

  it("emits a whole frame into a 0xa5-filled buffer at an offset", () => {
    const off = 51;
    const out = Buffer.alloc(off + FIXTURE.length + 5, 0xa5);
    let p = off;
    p += emitEthernet({ dstAddr: 0x020000000afe, srcAddr: 0x020000000a01, etherType: ETHERTYPE_IPV4 }, out, p);
    p += emitIpv4(
      {
        dscp: 0,
        ecn: 0,
        totalLen: 34,
        ident: 0x72d4,
        df: true,
        mf: false,
        fragOffset: 0,
        ttl: 64,
        protocol: IP_PROTO_UDP,
        srcAddr: A,
        dstAddr: R,
        options: new Uint8Array(0),
      },
      out,
      p,
    );
    const udpOff = p;
    const n = emitUdp({ srcPort: 40000, dstPort: 9, length: UDP_LEN }, out, p);
    expect(n).toBe(UDP_HEADER_LEN);
    expect(udpGetChecksum(out, udpOff)).toBe(0); // "no checksum" until filled
    p += n;
    p += out.write("closed", p);
    udpFillChecksum(out, udpOff, A, R);
    expect(out.subarray(off, p).toString("hex")).toBe(FIXTURE.toString("hex"));
    expect(out.subarray(0, off).every((b) => b === 0xa5)).toBe(true);
    expect(out.subarray(p).every((b) => b === 0xa5)).toBe(true);
  });

  it("treats a zero checksum as none and sends a computed zero as 0xffff (RFC 768)", () => {
    const b = Buffer.from(FIXTURE.subarray(UDP_OFF));
    writeU16(b, 6, 0);
    expect(udpCheck(b, 0, UDP_LEN, A, R)).toBe(CHECK_OK);
    expect(udpCheck(b, 0, UDP_LEN, 1, 2)).toBe(CHECK_OK); // nothing to verify
    l4UpdateChecksumAddr(b, 0, IP_PROTO_UDP, A, 0x01020304, false); // stays "none"
    expect(udpGetChecksum(b, 0)).toBe(0);

    // Make the data sum to 0xffff so the computed checksum is 0.
    const d = Buffer.alloc(10);
    emitUdp({ srcPort: 40000, dstPort: 9, length: 10 }, d, 0);
    const s = checksumSum(d, 0, 10, pseudoHeaderSum(A, R, IP_PROTO_UDP, 10));
    writeU16(d, 8, ~s & 0xffff);
    expect(checksumSum(d, 0, 10, pseudoHeaderSum(A, R, IP_PROTO_UDP, 10))).toBe(0xffff);
    expect(udpComputeChecksum(d, 0, A, R)).toBe(0xffff);
    udpFillChecksum(d, 0, A, R);
    expect(udpGetChecksum(d, 0)).toBe(0xffff);
    expect(udpCheck(d, 0, 10, A, R)).toBe(CHECK_OK);
  });

  it("keeps the checksum right through NAT rewrites (RFC 1624)", () => {
    const f = Buffer.from(FIXTURE);
    const newSrc = 0xc0a80a02;
    ipv4SetSrcAddrWithChecksumUpdate(f, 14, newSrc);
    l4UpdateChecksumAddr(f, UDP_OFF, IP_PROTO_UDP, A, newSrc, false);
    l4SetPortWithChecksumUpdate(f, UDP_OFF, IP_PROTO_UDP, L4_SRC_PORT_OFF, 61000);
    l4SetPortWithChecksumUpdate(f, UDP_OFF, IP_PROTO_UDP, L4_DST_PORT_OFF, 53);
    expect(ipv4Check(f, 14, 34)).toBe(CHECK_OK);
    expect(udpCheck(f, UDP_OFF, UDP_LEN, newSrc, R)).toBe(CHECK_OK);
    expect(udpGetChecksum(f, UDP_OFF)).toBe(udpComputeChecksum(f, UDP_OFF, newSrc, R));
    expect(udpCheck(f, UDP_OFF, UDP_LEN, A, R)).toBe(CHECK_BAD_CHECKSUM);
  });

  it("NAT of a CHECKSUM_PARTIAL datagram: the seed follows the address, not the ports; a zero checksum stays zero", () => {
    const newSrc = 0xc0a80a02;
    const f = Buffer.from(FIXTURE.subarray(UDP_OFF));
    writeU16(f, 6, checksumFold(pseudoHeaderSum(A, R, IP_PROTO_UDP, UDP_LEN)));
    l4UpdateChecksumAddr(f, 0, IP_PROTO_UDP, A, newSrc, true);
    l4SetPortWithChecksumUpdate(f, 0, IP_PROTO_UDP, L4_SRC_PORT_OFF, 61000, true);
    expect(l4GetSrcPort(f, 0)).toBe(61000);
    expect(udpGetChecksum(f, 0) % 0xffff).toBe(checksumFold(pseudoHeaderSum(newSrc, R, IP_PROTO_UDP, UDP_LEN)) % 0xffff);
    // Full checksum, with the address as int32 bits.
    const g = Buffer.from(FIXTURE.subarray(UDP_OFF));
    l4UpdateChecksumAddr(g, 0, IP_PROTO_UDP, A, newSrc | 0, false); // int32 bits work too
    expect(udpCheck(g, 0, UDP_LEN, newSrc, R)).toBe(CHECK_OK);
    writeU16(g, 6, 0);
    l4UpdateChecksumAddr(g, 0, IP_PROTO_UDP, newSrc, A, false);
    l4SetPortWithChecksumUpdate(g, 0, IP_PROTO_UDP, L4_DST_PORT_OFF, 53);
    expect(udpGetChecksum(g, 0)).toBe(0);
    // An unchanged port leaves the datagram alone.
    const h = Buffer.from(FIXTURE.subarray(UDP_OFF));
    l4SetPortWithChecksumUpdate(h, 0, IP_PROTO_UDP, L4_DST_PORT_OFF, 9);
    expect(h.equals(FIXTURE.subarray(UDP_OFF))).toBe(true);
  });

  it.each([
    ["ok", FIXTURE, UDP_OFF, UDP_LEN, CHECK_OK],
    ["ok with bytes after length", Buffer.concat([FIXTURE, Buffer.alloc(4)]), UDP_OFF, UDP_LEN + 4, CHECK_OK],
    ["7 bytes", FIXTURE, UDP_OFF, 7, CHECK_TOO_SHORT],
    ["beyond the buffer", FIXTURE, UDP_OFF, UDP_LEN + 1, CHECK_TOO_SHORT],
    ["length beyond available", FIXTURE, UDP_OFF, UDP_LEN - 1, CHECK_BAD_LENGTH],
    [
      "length 7",
      (() => {
        const b = Buffer.from(FIXTURE);
        b.writeUInt16BE(7, UDP_OFF + 4);
        return b;
      })(),
      UDP_OFF,
      UDP_LEN,
      CHECK_BAD_LENGTH,
    ],
    [
      "payload flipped",
      (() => {
        const b = Buffer.from(FIXTURE);
        b[b.length - 1] ^= 1;
        return b;
      })(),
      UDP_OFF,
      UDP_LEN,
      CHECK_BAD_CHECKSUM,
    ],
  ] as const)("check: %s", (_name, b, off, len, want) => {
    expect(udpCheck(b, off, len, A, R)).toBe(want);
    if (want === CHECK_TOO_SHORT || want === CHECK_BAD_LENGTH) expect(parseUdp(b, off, len)).toBeNull();
  });

  it("never throws on short buffers", () => {
    for (let n = 0; n < UDP_HEADER_LEN; n++) {
      const b = Buffer.from(FIXTURE.subarray(UDP_OFF, UDP_OFF + n));
      expect(udpCheck(b, 0, n, A, R)).toBe(CHECK_TOO_SHORT);
      expect(parseUdp(b, 0, n)).toBeNull();
    }
  });
});
