import { describe, expect, it } from "vitest";
import {
  ETHERTYPE_IPV4,
  ETHERTYPE_QINQ,
  ETHERTYPE_VLAN,
  VLAN_HEADER_LEN,
  emitVlan,
  parseVlan,
  readU16,
  vlanGetTpid,
  vlanGetVid,
  vlanSetTci,
  vlanSetTpid,
  vlanSetVid,
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
    expect(vlanGetTpid(FIXTURE, 0)).toBe(ETHERTYPE_VLAN);
    expect(vlanGetVid(FIXTURE, 0)).toBe(100);
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

  it("parses an 802.1ad (Q-in-Q) outer tag", () => {
    const f = Buffer.from(FIXTURE);
    f.writeUInt16BE(ETHERTYPE_QINQ, 12);
    expect(parseVlan(f, 0, f.length)).toMatchObject({ tpid: ETHERTYPE_QINQ, vid: 100, etherType: ETHERTYPE_IPV4 });
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

  it.each([
    [0, 0, 1, 0x0001],
    [5, 0, 100, 0xa064],
    [7, 1, 4095, 0xffff],
    [0, 1, 0xfff, 0x1fff],
    [3, 0, 0, 0x6000],
  ])("emit packs PCP %i, DEI %i, VID %i into TCI %i, and parse reads them back", (pcp, dei, vid, tci) => {
    const out = Buffer.alloc(VLAN_HEADER_LEN);
    emitVlan({ dstAddr: 1, srcAddr: 2, tpid: ETHERTYPE_VLAN, pcp, dei, vid, etherType: ETHERTYPE_IPV4 }, out, 0);
    expect(readU16(out, 14)).toBe(tci);
    expect(parseVlan(out, 0, out.length)).toMatchObject({ pcp, dei, vid });
  });

  it("tag setters write in place: the untagged capture's bytes after the MACs become the tag", () => {
    // The untagged frame moved 4 bytes toward the start leaves room for a tag after its MACs.
    const buf = Buffer.alloc(UNTAGGED.length + 4);
    UNTAGGED.copy(buf, 0, 0, 12);
    UNTAGGED.copy(buf, 16, 12);
    vlanSetTpid(buf, 0, ETHERTYPE_VLAN);
    vlanSetTci(buf, 0, 0xa064);
    expect(buf.equals(FIXTURE)).toBe(true);
  });

  it("vlanSetVid changes only the VID bits", () => {
    const f = Buffer.from(FIXTURE);
    vlanSetVid(f, 0, 0xfff);
    expect(readU16(f, 14)).toBe(0xafff);
    expect(vlanGetVid(f, 0)).toBe(0xfff);
    vlanSetVid(f, 0, 100);
    expect(f.equals(FIXTURE)).toBe(true);
  });

  it("parse refuses what is not a tagged header, without throwing", () => {
    expect(parseVlan(UNTAGGED, 0, UNTAGGED.length)).toBeNull(); // not tagged
    for (let n = 0; n < VLAN_HEADER_LEN; n++) {
      expect(parseVlan(FIXTURE, 0, n)).toBeNull();
      expect(parseVlan(FIXTURE.subarray(0, n), 0, n)).toBeNull();
    }
    expect(parseVlan(Buffer.alloc(0), 0, 18)).toBeNull();
    expect(parseVlan(FIXTURE, -1, 18)).toBeNull();
  });
});
