import { describe, expect, it } from "vitest";
import {
  CHECK_NOT_TAGGED,
  CHECK_OK,
  CHECK_TOO_SHORT,
  ETHERTYPE_IPV4,
  ETHERTYPE_QINQ,
  ETHERTYPE_VLAN,
  VLAN_HEADER_LEN,
  emitVlan,
  ipv4Check,
  parseVlan,
  vlanCheck,
  vlanGetDei,
  vlanGetEtherType,
  vlanGetPcp,
  vlanGetTci,
  vlanGetTpid,
  vlanGetVid,
  vlanIsTagged,
  vlanPop,
  vlanPush,
  vlanSetDei,
  vlanSetPcp,
  vlanSetVid,
  vlanTci,
} from "../../src/wire/index.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

// This VM's kernel has no 8021q module (and no act_vlan), so the tagged fixture is the
// captured echo request UNTAGGED below, re-sent with an 802.1Q tag (VID 100, PCP 5)
// through an AF_PACKET socket in the test namespace and captured again with tcpdump
// (frame 40). tshark: vlan.priority 5, vlan.dei 0, vlan.id 100, vlan.etype 0x0800,
// ip.checksum.status good.
const FIXTURE = hex(`
  020000000afe 020000000a01 8100 a064 0800
  45000054f94940004001299b0a6301010a6301fe
  0800112311a40001b22f026b0000000053ca0e0000000000
  101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637
`);
// The same frame as the kernel sent it, untagged (frame 7).
const UNTAGGED = hex(`
  020000000afe 020000000a01 0800
  45000054f94940004001299b0a6301010a6301fe
  0800112311a40001b22f026b0000000053ca0e0000000000
  101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637
`);

describe("vlan (802.1Q)", () => {
  it("parses every field of a tagged frame", () => {
    expect(vlanCheck(FIXTURE, 0, FIXTURE.length)).toBe(CHECK_OK);
    expect(vlanIsTagged(FIXTURE, 0)).toBe(true);
    expect(vlanGetTpid(FIXTURE, 0)).toBe(ETHERTYPE_VLAN);
    expect(vlanGetTci(FIXTURE, 0)).toBe(0xa064);
    expect(vlanGetPcp(FIXTURE, 0)).toBe(5);
    expect(vlanGetDei(FIXTURE, 0)).toBe(0);
    expect(vlanGetVid(FIXTURE, 0)).toBe(100);
    expect(vlanGetEtherType(FIXTURE, 0)).toBe(ETHERTYPE_IPV4);
    expect(parseVlan(FIXTURE, 0, FIXTURE.length)).toEqual({
      dstAddr: 0x020000000afe,
      srcAddr: 0x020000000a01,
      tpid: 0x8100,
      pcp: 5,
      dei: 0,
      vid: 100,
      etherType: 0x0800,
    });
  });

  it("emits into a 0xa5-filled buffer at an offset", () => {
    const off = 41;
    const out = Buffer.alloc(off + VLAN_HEADER_LEN + 7, 0xa5);
    const n = emitVlan(
      { dstAddr: 0x020000000afe, srcAddr: 0x020000000a01, tpid: ETHERTYPE_VLAN, pcp: 5, dei: 0, vid: 100, etherType: ETHERTYPE_IPV4 },
      out,
      off,
    );
    expect(n).toBe(VLAN_HEADER_LEN);
    expect(out.subarray(off, off + n).toString("hex")).toBe(FIXTURE.subarray(0, 18).toString("hex"));
    expect(out.subarray(0, off).every((b) => b === 0xa5)).toBe(true);
    expect(out.subarray(off + n).every((b) => b === 0xa5)).toBe(true);
  });

  it("push turns the untagged capture into the tagged one, in place", () => {
    const off = 20;
    const buf = Buffer.alloc(off + UNTAGGED.length + 8, 0xa5);
    UNTAGGED.copy(buf, off);
    const n = vlanPush(buf, off, UNTAGGED.length, 100, 5);
    expect(n).toBe(off - 4);
    expect(buf.subarray(n, n + UNTAGGED.length + 4).toString("hex")).toBe(FIXTURE.toString("hex"));
    expect(buf.subarray(0, n).every((b) => b === 0xa5)).toBe(true);
    expect(buf.subarray(off + UNTAGGED.length).every((b) => b === 0xa5)).toBe(true);
    // The pushed frame parses, and the IP header behind it is untouched.
    expect(parseVlan(buf, n, UNTAGGED.length + 4)).toMatchObject({ vid: 100, pcp: 5, dei: 0, etherType: ETHERTYPE_IPV4 });
    expect(ipv4Check(buf, n + 18, UNTAGGED.length - 14)).toBe(CHECK_OK);
  });

  it("pop turns the tagged capture into the untagged one, in place", () => {
    const off = 3;
    const buf = Buffer.alloc(off + FIXTURE.length + 5, 0xa5);
    FIXTURE.copy(buf, off);
    const n = vlanPop(buf, off, FIXTURE.length);
    expect(n).toBe(off + 4);
    expect(buf.subarray(n, n + FIXTURE.length - 4).toString("hex")).toBe(UNTAGGED.toString("hex"));
  });

  it.each([
    [1, 0, 0],
    [100, 5, 0],
    [4094, 7, 1],
    [0, 3, 0],
    [0xabc, 0, 1],
  ])("push then pop restores the original bytes (vid %i pcp %i dei %i)", (vid, pcp, dei) => {
    const off = 8;
    const buf = Buffer.alloc(off + UNTAGGED.length + 4, 0xa5);
    UNTAGGED.copy(buf, off);
    const before = Buffer.from(buf);
    const pushed = vlanPush(buf, off, UNTAGGED.length, vid, pcp, dei);
    expect(vlanGetVid(buf, pushed)).toBe(vid);
    expect(vlanGetPcp(buf, pushed)).toBe(pcp);
    expect(vlanGetDei(buf, pushed)).toBe(dei);
    expect(vlanGetEtherType(buf, pushed)).toBe(ETHERTYPE_IPV4);
    const popped = vlanPop(buf, pushed, UNTAGGED.length + 4);
    expect(popped).toBe(off);
    expect(buf.subarray(off).equals(before.subarray(off))).toBe(true);
  });

  it("push can build an 802.1ad outer tag", () => {
    const buf = Buffer.alloc(4 + FIXTURE.length);
    FIXTURE.copy(buf, 4);
    const n = vlanPush(buf, 4, FIXTURE.length, 200, 0, 0, ETHERTYPE_QINQ);
    expect(n).toBe(0);
    expect(buf.subarray(12, 22).toString("hex")).toBe("88a800c88100a0640800");
  });

  it("TCI setters change only their bits", () => {
    const f = Buffer.from(FIXTURE);
    vlanSetVid(f, 0, 0xfff);
    expect(vlanGetTci(f, 0)).toBe(0xafff);
    vlanSetPcp(f, 0, 0);
    expect(vlanGetTci(f, 0)).toBe(0x0fff);
    vlanSetDei(f, 0, 1);
    expect(vlanGetTci(f, 0)).toBe(0x1fff);
    vlanSetVid(f, 0, 100);
    expect(vlanGetTci(f, 0)).toBe(0x1064);
    expect(vlanTci(5, 0, 100)).toBe(0xa064);
    expect(vlanTci(7, 1, 4095)).toBe(0xffff);
  });

  it("refuses what it cannot do, without throwing or writing", () => {
    const buf = Buffer.from(UNTAGGED);
    expect(vlanCheck(buf, 0, buf.length)).toBe(CHECK_NOT_TAGGED);
    expect(parseVlan(buf, 0, buf.length)).toBeNull();
    expect(vlanPop(buf, 0, buf.length)).toBe(-1); // not tagged
    expect(vlanPush(buf, 0, buf.length, 1, 0)).toBe(-1); // no headroom
    expect(vlanPush(buf, 4, 13, 1, 0)).toBe(-1); // shorter than an Ethernet header
    expect(buf.equals(UNTAGGED)).toBe(true);
    for (let n = 0; n < VLAN_HEADER_LEN; n++) {
      expect(vlanCheck(FIXTURE, 0, n)).toBe(CHECK_TOO_SHORT);
      expect(parseVlan(FIXTURE.subarray(0, n), 0, n)).toBeNull();
      expect(vlanPop(Buffer.from(FIXTURE.subarray(0, n)), 0, n)).toBe(-1);
    }
    expect(vlanCheck(Buffer.alloc(0), 0, 18)).toBe(CHECK_TOO_SHORT);
  });
});
