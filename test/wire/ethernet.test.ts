import { describe, expect, it } from "vitest";
import {
  ETH_HEADER_LEN,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  emitEthernet,
  ethDstIsMulticast,
  ethGetDstAddr,
  ethGetEtherType,
  ethSetDstAddr,
  ethSetEtherType,
  ethSetSrcAddr,
  parseEthernet,
} from "../../src/wire/index.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

// ICMP echo request 10.99.1.1 -> 10.99.1.254, captured on a veth in a test namespace
// (frame 7). tshark: eth.dst 02:00:00:00:0a:fe, eth.src 02:00:00:00:0a:01, eth.type 0x0800.
const FIXTURE = hex(`
  020000000afe 020000000a01 0800
  45000054f94940004001299b0a6301010a6301fe
  0800112311a40001b22f026b0000000053ca0e0000000000
  101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637
`);
// ARP request broadcast (frame 5). tshark: eth.dst ff:ff:ff:ff:ff:ff, eth.type 0x0806.
const ARP_FRAME = hex(`
  ffffffffffff 020000000a01 0806
  0001080006040001020000000a010a6301010000000000000a6301fe
`);

describe("ethernet", () => {
  it("parses every field of a real frame", () => {
    expect(FIXTURE.length).toBe(98);
    expect(ethGetDstAddr(FIXTURE, 0)).toBe(0x020000000afe);
    expect(ethGetEtherType(FIXTURE, 0)).toBe(ETHERTYPE_IPV4);
    expect(ethDstIsMulticast(FIXTURE, 0)).toBe(false);
    expect(parseEthernet(FIXTURE, 0, FIXTURE.length)).toEqual({
      dstAddr: 0x020000000afe,
      srcAddr: 0x020000000a01,
      etherType: 0x0800,
    });
    expect(parseEthernet(ARP_FRAME, 0, ARP_FRAME.length)).toEqual({
      dstAddr: 0xffffffffffff,
      srcAddr: 0x020000000a01,
      etherType: ETHERTYPE_ARP,
    });
    expect(ethDstIsMulticast(ARP_FRAME, 0)).toBe(true);
  });

  it("emits into a 0xa5-filled buffer at an offset", () => {
    const off = 37;
    const out = Buffer.alloc(off + ETH_HEADER_LEN + 9, 0xa5);
    const n = emitEthernet({ dstAddr: 0x020000000afe, srcAddr: 0x020000000a01, etherType: ETHERTYPE_IPV4 }, out, off);
    expect(n).toBe(ETH_HEADER_LEN);
    expect(out.subarray(off, off + n).toString("hex")).toBe(FIXTURE.subarray(0, 14).toString("hex"));
    expect(out.subarray(0, off).every((b) => b === 0xa5)).toBe(true);
    expect(out.subarray(off + n).every((b) => b === 0xa5)).toBe(true);
  });

  it("setters write in place", () => {
    const f = Buffer.from(FIXTURE);
    ethSetDstAddr(f, 0, 0xffffffffffff);
    ethSetSrcAddr(f, 0, 0x020000000a01);
    ethSetEtherType(f, 0, ETHERTYPE_ARP);
    expect(f.subarray(0, 14).toString("hex")).toBe(ARP_FRAME.subarray(0, 14).toString("hex"));
    expect(f.subarray(14).equals(FIXTURE.subarray(14))).toBe(true);
  });

  it("rejects short input without throwing", () => {
    for (let n = 0; n < ETH_HEADER_LEN; n++) {
      expect(parseEthernet(FIXTURE, 0, n)).toBeNull();
      expect(parseEthernet(FIXTURE.subarray(0, n), 0, n)).toBeNull();
    }
    expect(parseEthernet(FIXTURE, 90, 14)).toBeNull(); // len beyond the buffer
    expect(parseEthernet(FIXTURE, -1, 14)).toBeNull();
    expect(parseEthernet(Buffer.alloc(0), 0, 14)).toBeNull();
  });
});
