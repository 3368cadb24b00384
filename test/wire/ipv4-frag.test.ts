import { afterAll, describe, expect, it } from "vitest";
import { CHECK_OK, FRAG_BAD_INPUT, FRAG_DF_SET, FRAG_TOO_MANY, fragmentIpv4, ipv4Check, ipv4FillChecksum, parseIpv4 } from "../../src/wire/index.js";
import { CK_GOOD, hasTshark, hex, removeTsharkFiles, tshark, udpPacket } from "./ip-test-util.js";

afterAll(removeTsharkFiles);

/** Option sets: [bytes of the whole option area (multiple of 4), what later fragments carry]. */
const OPTION_SETS: Array<{ name: string; options: Buffer; later: Buffer }> = [
  { name: "no options", options: hex(""), later: hex("") },
  // NOP + Record Route (7, not copied), as `ping -R` sends.
  {
    name: "NOP + record route (not copied)",
    options: Buffer.concat([hex("01072708 0a630101"), Buffer.alloc(32)]),
    later: hex(""),
  },
  // NOP, loose source route (0x83, copied) with 2 addresses, record route, EOL.
  {
    name: "NOP, LSRR (copied, 11 bytes), RR, EOL",
    options: hex("01 830b04 0a000003 0a000002 070704 00000000 00"),
    later: hex("830b04 0a000003 0a000002 00"),
  },
  // Router alert (0x94, copied) + timestamp (0x44, not copied) + security (0x82, copied).
  {
    name: "router alert, timestamp, security (copied)",
    options: hex("94040000 440c0501 00000000 00000000 820b 0000 0000 0000 0000 00 00"),
    later: hex("94040000 820b 0000 0000 0000 0000 00 00"),
  },
  // 40 bytes of copied options: later fragments carry the whole header too. The route
  // ends at the header's destination: tshark takes a source route's last address as the
  // UDP pseudo-header destination (RFC 768, "final destination").
  {
    name: "strict source route (0x89, copied) filling 40 bytes",
    options: hex("01 892704 0a000003 0a000004 0a000005 0a000006 0a000007 0a000008 0a000009 0a00000a 0a000002"),
    later: hex("892704 0a000003 0a000004 0a000005 0a000006 0a000007 0a000008 0a000009 0a00000a 0a000002 00"),
  },
];

interface Frags {
  n: number;
  pkts: Buffer[];
  dst: Buffer;
}

function frag(src: Buffer, mtu: number, maxFrags = 9000, stride = mtu + 8, off = 0): Frags {
  const lens = new Uint32Array(maxFrags);
  // Never more fragments than 8-byte blocks of payload, plus one.
  const slots = Math.min(maxFrags, Math.ceil(src.length / 8) + 1);
  const dst = Buffer.alloc(off + slots * stride, 0xa5);
  const n = fragmentIpv4(src, 0, src.length, mtu, dst, off, stride, maxFrags, lens);
  const pkts: Buffer[] = [];
  for (let k = 0; k < n; k++) pkts.push(dst.subarray(off + k * stride, off + k * stride + lens[k]));
  return { n, pkts, dst };
}

/** Checks every fragment against RFC 791 and puts the original payload back together. */
function checkAndReassemble(orig: Buffer, pkts: Buffer[], mtu: number, later: Buffer): Buffer {
  const o = parseIpv4(orig, 0, orig.length)!;
  const ohlen = 20 + o.options.length;
  const payload = Buffer.alloc(orig.length - ohlen, 0xee);
  let expectOff = o.fragOffset * 8;
  pkts.forEach((p, k) => {
    const last = k === pkts.length - 1;
    expect(p.length).toBeLessThanOrEqual(mtu);
    const f = parseIpv4(p, 0, p.length);
    expect(f).not.toBeNull();
    expect(f!.totalLen).toBe(p.length);
    const hl = 20 + f!.options.length;
    if (k === 0) expect(Buffer.from(f!.options).equals(Buffer.from(o.options))).toBe(true);
    else expect(Buffer.from(f!.options).toString("hex")).toBe(later.toString("hex"));
    const data = p.length - hl;
    if (!last) expect(data % 8).toBe(0);
    expect(data).toBeGreaterThan(0);
    expect(f!.fragOffset * 8).toBe(expectOff);
    expect(f!.mf).toBe(last ? o.mf : true);
    expect(f!).toMatchObject({ ident: o.ident, ttl: o.ttl, protocol: o.protocol, srcAddr: o.srcAddr, dstAddr: o.dstAddr, df: false, dscp: o.dscp });
    p.copy(payload, expectOff - o.fragOffset * 8, hl);
    expectOff += data;
  });
  expect(expectOff - o.fragOffset * 8).toBe(payload.length);
  return payload;
}

describe("fragmentIpv4 (RFC 791 section 3.2)", () => {
  const sizes = [100, 577, 1401, 1500, 3000, 8000, 65535];
  const mtus = [1400, 576, 68];
  for (const set of OPTION_SETS) {
    for (const mtu of mtus) {
      it(`${set.name}, mtu ${mtu}: sizes ${sizes.join(", ")}`, () => {
        for (const size of sizes) {
          const hlen = 20 + set.options.length;
          if (mtu < hlen + 8) continue;
          const orig = udpPacket(size - hlen - 8, { options: set.options, ttl: 17, ident: size });
          const r = frag(orig, mtu);
          if (size <= mtu) {
            expect(r.n).toBe(1);
            expect(r.pkts[0].equals(orig)).toBe(true);
            continue;
          }
          const firstData = (mtu - hlen) & ~7;
          const laterData = (mtu - 20 - set.later.length) & ~7;
          expect(r.n).toBe(1 + Math.ceil((size - hlen - firstData) / laterData));
          const payload = checkAndReassemble(orig, r.pkts, mtu, set.later);
          expect(payload.equals(orig.subarray(hlen))).toBe(true);
          // Nothing written between fragments (the slot past each fragment keeps 0xa5).
          for (let k = 0; k < r.n; k++) {
            const s = k * (mtu + 8) + r.pkts[k].length;
            expect(r.dst.subarray(s, (k + 1) * (mtu + 8)).every((x) => x === 0xa5)).toBe(true);
          }
        }
      });
    }
  }

  it("fragments a fragment: offsets added, MF kept on the last piece when the original had it", () => {
    const whole = udpPacket(4000, { options: hex("94040000") });
    const first = frag(whole, 1500);
    expect(first.n).toBe(3);
    // Re-fragment the middle one (MF set, offset > 0) and the last one (MF clear).
    const mid = Buffer.from(first.pkts[1]);
    const end = Buffer.from(first.pkts[2]);
    const midFr = frag(mid, 576);
    const endFr = frag(end, 576);
    expect(midFr.n).toBeGreaterThan(1);
    expect(parseIpv4(midFr.pkts[midFr.n - 1], 0, midFr.pkts[midFr.n - 1].length)!.mf).toBe(true);
    expect(parseIpv4(endFr.pkts[endFr.n - 1], 0, endFr.pkts[endFr.n - 1].length)!.mf).toBe(false);
    expect(parseIpv4(midFr.pkts[0], 0, midFr.pkts[0].length)!.fragOffset).toBe(parseIpv4(mid, 0, mid.length)!.fragOffset);
    checkAndReassemble(mid, midFr.pkts, 576, hex("94040000"));
    checkAndReassemble(end, endFr.pkts, 576, hex("94040000"));
    // Together they still make the original.
    const all = [first.pkts[0], ...midFr.pkts, ...endFr.pkts];
    const payload = Buffer.alloc(whole.length - 24);
    for (const p of all) {
      const hl = (p[0] & 15) * 4;
      p.copy(payload, (p.readUInt16BE(6) & 0x1fff) * 8, hl);
    }
    expect(payload.equals(whole.subarray(24))).toBe(true);
  });

  it("keeps the reserved flag and the TOS, writes at an offset, accepts trailing padding", () => {
    const orig = Buffer.concat([udpPacket(1000), Buffer.alloc(10, 0xcc)]);
    orig[1] = 0xb8; // EF
    orig[6] |= 0x80;
    ipv4FillChecksum(orig, 0);
    const lens = new Uint32Array(4);
    const dst = Buffer.alloc(3 * 600 + 7, 0xa5);
    expect(fragmentIpv4(orig, 0, orig.length, 576, dst, 7, 600, 4, lens)).toBe(2);
    expect(dst.subarray(0, 7).every((x) => x === 0xa5)).toBe(true);
    for (const k of [0, 1]) {
      const p = dst.subarray(7 + k * 600, 7 + k * 600 + lens[k]);
      expect(ipv4Check(p, 0, p.length)).toBe(CHECK_OK);
      expect(p[1]).toBe(0xb8);
      expect(p[6] & 0x80).toBe(0x80);
    }
    expect(lens[0] + lens[1] - 20).toBe(1028);
  });

  const errors: Array<{ name: string; run: () => number; want: number }> = [
    { name: "DF set and too big", run: () => frag(udpPacket(2000, { df: true }), 1500).n, want: FRAG_DF_SET },
    { name: "DF set but fits: copied", run: () => frag(udpPacket(1000, { df: true }), 1500).n, want: 1 },
    { name: "mtu 27 < 20 + 8", run: () => frag(udpPacket(100), 27).n, want: FRAG_TOO_MANY },
    { name: "mtu 28 = 20 + 8 works", run: () => frag(udpPacket(100), 28).n, want: 14 },
    { name: "mtu 67 < 60 + 8", run: () => frag(udpPacket(100, { options: OPTION_SETS[4].options }), 67).n, want: FRAG_TOO_MANY },
    { name: "more than maxFrags", run: () => frag(udpPacket(3000), 1400, 2).n, want: FRAG_TOO_MANY },
    { name: "exactly maxFrags", run: () => frag(udpPacket(3000), 1400, 3).n, want: 3 },
    { name: "stride < mtu", run: () => frag(udpPacket(3000), 1400, 4, 1399).n, want: FRAG_BAD_INPUT },
    {
      name: "outLens shorter than the fragments",
      run: () => fragmentIpv4(udpPacket(3000), 0, 3028, 1400, Buffer.alloc(6000), 0, 1500, 4, new Uint32Array(2)),
      want: FRAG_BAD_INPUT,
    },
    {
      name: "dst too small for the last fragment",
      run: () => fragmentIpv4(udpPacket(3000), 0, 3028, 1400, Buffer.alloc(3000), 0, 1400, 4, new Uint32Array(4)),
      want: FRAG_BAD_INPUT,
    },
    {
      name: "dst too small for a fitting datagram",
      run: () => fragmentIpv4(udpPacket(100), 0, 128, 1400, Buffer.alloc(100), 0, 1400, 4, new Uint32Array(4)),
      want: FRAG_BAD_INPUT,
    },
    { name: "empty input", run: () => fragmentIpv4(Buffer.alloc(0), 0, 0, 1400, Buffer.alloc(3000), 0, 1500, 2, new Uint32Array(2)), want: FRAG_BAD_INPUT },
    {
      name: "garbage input",
      run: () => fragmentIpv4(Buffer.alloc(2000, 0x99), 0, 2000, 576, Buffer.alloc(9000), 0, 600, 9, new Uint32Array(9)),
      want: FRAG_BAD_INPUT,
    },
    {
      name: "total length beyond ipLen",
      run: () => fragmentIpv4(udpPacket(3000), 0, 1000, 576, Buffer.alloc(9000), 0, 600, 9, new Uint32Array(9)),
      want: FRAG_BAD_INPUT,
    },
    { name: "option length 0", run: () => frag(udpPacket(1000, { options: hex("83000000") }), 576).n, want: FRAG_BAD_INPUT },
    { name: "option length 1", run: () => frag(udpPacket(1000, { options: hex("83010000") }), 576).n, want: FRAG_BAD_INPUT },
    { name: "option running past the header", run: () => frag(udpPacket(1000, { options: hex("01018305") }), 576).n, want: FRAG_BAD_INPUT },
    { name: "option type in the last byte, no length", run: () => frag(udpPacket(1000, { options: hex("01010183") }), 576).n, want: FRAG_BAD_INPUT },
    { name: "bytes after EOL ignored", run: () => frag(udpPacket(1000, { options: hex("00830000") }), 576).n, want: 2 },
    {
      name: "offset would pass 8191 units",
      run: () => frag(udpPacket(1000, { fragOffset: 0x1fff - 10, mf: true }), 576).n,
      want: FRAG_BAD_INPUT,
    },
    {
      name: "offset reaching exactly 8191 units",
      run: () => frag(udpPacket(1000, { fragOffset: 0x1fff - 69, mf: true }), 576).n,
      want: 2,
    },
  ];
  it.each(errors)("$name -> $want", ({ run, want }) => {
    expect(run()).toBe(want);
  });

  it.skipIf(!hasTshark)("tshark: every fragment checksum good, reassembles to the original (mtu 1400, 576, 68; with and without options)", () => {
    const pkts: Buffer[] = [];
    const expected: Array<{ lastFrame: number; orig: Buffer; hlen: number; count: number }> = [];
    let ident = 0x4000;
    for (const set of OPTION_SETS) {
      for (const mtu of mtus) {
        for (const size of [577, 1401, 3000, 8000, 20000]) {
          const hlen = 20 + set.options.length;
          if (mtu < hlen + 8) continue;
          const orig = udpPacket(size - hlen - 8, { options: set.options, ident: ident++ });
          const r = frag(orig, mtu);
          if (r.n < 2) continue;
          pkts.push(...r.pkts.map((p) => Buffer.from(p)));
          expected.push({ lastFrame: pkts.length, orig, hlen, count: r.n });
        }
      }
    }
    // A fragment of a fragment, also reassembled by tshark with its sibling fragments.
    const whole = udpPacket(5000, { options: OPTION_SETS[2].options, ident: ident++ });
    const first = frag(whole, 1500);
    const midFr = frag(Buffer.from(first.pkts[1]), 576);
    pkts.push(Buffer.from(first.pkts[0]), ...midFr.pkts.map((p) => Buffer.from(p)), ...first.pkts.slice(2).map((p) => Buffer.from(p)));
    expected.push({ lastFrame: pkts.length, orig: whole, hlen: 20 + OPTION_SETS[2].options.length, count: 1 + midFr.n + first.n - 2 });

    expect(expected.length).toBe(71); // 5 option sets x 3 MTUs x 5 sizes, less those that fit, + 1
    const rows = tshark(pkts, [
      "frame.number",
      "ip.checksum.status",
      "ip.reassembled.length",
      "ip.fragment.count",
      "udp.checksum.status",
      "ip.reassembled.data",
    ]);
    expect(rows).toHaveLength(pkts.length);
    for (const r of rows) expect(r[1]).toBe(CK_GOOD);
    const reassembled = rows.filter((r) => r[2] !== "");
    expect(reassembled.map((r) => Number(r[0]))).toEqual(expected.map((e) => e.lastFrame));
    reassembled.forEach((r, i) => {
      const e = expected[i];
      expect(Number(r[2])).toBe(e.orig.length - e.hlen);
      expect(Number(r[3])).toBe(e.count);
      expect(r[4]).toBe(CK_GOOD); // the UDP checksum over the reassembled datagram
      expect(r[5]).toBe(e.orig.subarray(e.hlen).toString("hex"));
    });
  });
});
