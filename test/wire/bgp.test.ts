import { describe, expect, it } from "vitest";
import {
  type BgpError,
  type Decoded,
  decodeMessage,
  encodeKeepalive,
  encodeNotification,
  encodeOpen,
  encodeRouteRefresh,
  encodeUpdate,
  messageLength,
  type OpenMessage,
  type UpdateMessage,
  updatesFor,
} from "../../src/wire/bgp.js";
import { parseIp } from "../../src/wire/ipv4addr.js";
import { BIRD } from "./bgp-fixtures.js";

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, "hex"));
const ok = (d: Decoded) => {
  if (!d.ok) throw new Error(`decode failed: ${d.error.reason}`);
  return d.msg;
};
const fail = (d: Decoded): BgpError => {
  if (d.ok) throw new Error("decoded, expected an error");
  return d.error;
};
const ip = (s: string): number => parseIp(s) >>> 0;
const pfx = (s: string) => ({ addr: ip(s.split("/")[0]), len: Number(s.split("/")[1]) });

/** An UPDATE around a raw attribute list (and NLRI 10.9.0.0/16). */
function rawUpdate(attrs: number[], nlri = [16, 10, 9]): Uint8Array {
  const body = [0, 0, attrs.length >> 8, attrs.length & 255, ...attrs, ...nlri];
  const len = 19 + body.length;
  return Uint8Array.from([...Array(16).fill(0xff), len >> 8, len & 255, 2, ...body]);
}
const ORIGIN = [0x40, 1, 1, 0];
const ASPATH_EMPTY = [0x40, 2, 0];
const NEXTHOP = [0x40, 3, 4, 192, 168, 0, 9];

describe("BGP messages captured from BIRD", () => {
  it("decodes BIRD's OPEN as tshark did", () => {
    const m = ok(decodeMessage(hex(BIRD.open), false)) as OpenMessage;
    expect(m.type).toBe(1);
    expect(m).toMatchObject({ version: 4, asn: 64512, holdTime: 9, bgpId: ip("192.168.77.1"), as4: true, ipv4Unicast: true, routeRefresh: true });
    expect(m.capabilities.map((c) => c.code)).toEqual([1, 2, 64, 65, 70, 71]);
  });

  it("decodes BIRD's UPDATE, End-of-RIB and withdraw", () => {
    const u = ok(decodeMessage(hex(BIRD.update), true)) as UpdateMessage;
    expect(u.nlri).toEqual([pfx("10.250.0.0/24"), pfx("10.251.0.0/16")]);
    expect(u.attrs).toMatchObject({ origin: 0, asPath: [], nextHop: ip("192.168.77.1"), localPref: 100 });
    expect(u.treatAsWithdraw).toBeUndefined();
    const eor = ok(decodeMessage(hex(BIRD.endOfRib), true)) as UpdateMessage;
    expect(eor.nlri).toEqual([]);
    expect(eor.withdrawn).toEqual([]);
    const w = ok(decodeMessage(hex(BIRD.withdraw), true)) as UpdateMessage;
    expect(w.withdrawn).toEqual([pfx("10.250.0.0/24"), pfx("10.251.0.0/16")]);
    expect(w.nlri).toEqual([]);
  });

  it("decodes a reflected route (ORIGINATOR_ID, CLUSTER_LIST) and a 4-octet AS_PATH with MED", () => {
    const r = ok(decodeMessage(hex(BIRD.reflected), true)) as UpdateMessage;
    expect(r.attrs).toMatchObject({ nextHop: ip("192.168.78.1"), originatorId: ip("192.168.78.1"), clusterList: [ip("192.168.78.3")], localPref: 100 });
    expect(r.nlri).toEqual([pfx("10.250.0.0/24")]);
    const e = ok(decodeMessage(hex(BIRD.ebgp), true)) as UpdateMessage;
    expect(e.attrs).toMatchObject({ asPath: [{ type: 2, asns: [4200000001] }], nextHop: ip("192.168.78.5"), med: 7, localPref: 100 });
  });

  it("KEEPALIVE and NOTIFICATION", () => {
    expect(ok(decodeMessage(hex(BIRD.keepalive), true))).toEqual({ type: 4 });
    expect(ok(decodeMessage(hex(BIRD.notification), true))).toMatchObject({ type: 3, code: 6, subcode: 2 });
  });

  it("encodes BIRD's UPDATE, withdraw, keepalive and notification byte for byte", () => {
    const attrs = { origin: 0, asPath: [], nextHop: ip("192.168.77.1"), localPref: 100, unknown: [] };
    expect(Buffer.from(encodeUpdate({ withdrawn: [], attrs, nlri: [pfx("10.250.0.0/24"), pfx("10.251.0.0/16")] }, true)).toString("hex")).toBe(BIRD.update);
    expect(Buffer.from(encodeUpdate({ withdrawn: [pfx("10.250.0.0/24"), pfx("10.251.0.0/16")], nlri: [] }, true)).toString("hex")).toBe(BIRD.withdraw);
    const refl = { ...attrs, nextHop: ip("192.168.78.1"), originatorId: ip("192.168.78.1"), clusterList: [ip("192.168.78.3")] };
    expect(Buffer.from(encodeUpdate({ withdrawn: [], attrs: refl, nlri: [pfx("10.250.0.0/24")] }, true)).toString("hex")).toBe(BIRD.reflected);
    const eb = { origin: 0, asPath: [{ type: 2, asns: [4200000001] }], nextHop: ip("192.168.78.5"), med: 7, localPref: 100, unknown: [] };
    expect(Buffer.from(encodeUpdate({ withdrawn: [], attrs: eb, nlri: [pfx("10.252.0.0/24")] }, true)).toString("hex")).toBe(BIRD.ebgp);
    expect(Buffer.from(encodeKeepalive()).toString("hex")).toBe(BIRD.keepalive);
    expect(Buffer.from(encodeNotification(6, 2)).toString("hex")).toBe(BIRD.notification);
  });

  it("our OPEN decodes back, with AS_TRANS in My AS for a 4-octet AS", () => {
    const m = ok(decodeMessage(encodeOpen({ asn: 4200000001, holdTime: 90, bgpId: ip("10.0.0.1") }), false)) as OpenMessage;
    expect(m).toMatchObject({ asn: 4200000001, holdTime: 90, as4: true, ipv4Unicast: true, routeRefresh: true });
    const raw = encodeOpen({ asn: 4200000001, holdTime: 90, bgpId: ip("10.0.0.1") });
    expect((raw[20] << 8) | raw[21]).toBe(23456);
    expect(ok(decodeMessage(encodeRouteRefresh(), true))).toEqual({ type: 5, afi: 1, safi: 1 });
  });
});

describe("framing and header errors (RFC 4271 §6.1)", () => {
  it("waits for a whole message, then gives its length", () => {
    const two = Buffer.concat([hex(BIRD.keepalive), hex(BIRD.update)]);
    expect(messageLength(two, 0, 10)).toBe(0);
    expect(messageLength(two, 0, two.length)).toBe(19);
    expect(messageLength(two, 19, 30)).toBe(0);
    expect(messageLength(two, 19, two.length - 19)).toBe(51);
  });

  it("a bad marker, a bad length and an unknown type are header errors", () => {
    const bad = hex(BIRD.keepalive);
    bad[3] = 0;
    expect(messageLength(bad, 0, 19)).toMatchObject({ code: 1, subcode: 1, action: "session-reset" });
    const long = hex(BIRD.keepalive);
    long[17] = 20;
    expect(messageLength(long, 0, 19)).toMatchObject({ code: 1, subcode: 2 });
    const huge = hex(BIRD.update);
    huge[16] = 0x20;
    expect(messageLength(huge, 0, 19)).toMatchObject({ code: 1, subcode: 2, data: Uint8Array.of(0x20, 0x33) });
    const type = hex(BIRD.keepalive);
    type[18] = 9;
    expect(messageLength(type, 0, 19)).toMatchObject({ code: 1, subcode: 3, data: Uint8Array.of(9) });
  });
});

describe("OPEN errors (RFC 4271 §6.2)", () => {
  it("version, hold time 1-2, BGP identifier, optional parameters", () => {
    const v = hex(BIRD.open);
    v[19] = 3;
    expect(fail(decodeMessage(v, false))).toMatchObject({ code: 2, subcode: 1 });
    const h = hex(BIRD.open);
    h[23] = 2;
    expect(fail(decodeMessage(h, false))).toMatchObject({ code: 2, subcode: 6 });
    const id = hex(BIRD.open);
    id.fill(0, 24, 28);
    expect(fail(decodeMessage(id, false))).toMatchObject({ code: 2, subcode: 3 });
    const opt = hex(BIRD.open);
    opt[29] = 1; // parameter type 1 (authentication, deprecated)
    expect(fail(decodeMessage(opt, false))).toMatchObject({ code: 2, subcode: 4 });
    const cap = hex(BIRD.open);
    cap[32] = 40; // a capability longer than its parameter
    expect(fail(decodeMessage(cap, false))).toMatchObject({ code: 2 });
  });
});

describe("UPDATE errors, RFC 7606", () => {
  it("a well-formed raw UPDATE decodes", () => {
    const u = ok(decodeMessage(rawUpdate([...ORIGIN, ...ASPATH_EMPTY, ...NEXTHOP]), true)) as UpdateMessage;
    expect(u.nlri).toEqual([pfx("10.9.0.0/16")]);
    expect(u.treatAsWithdraw).toBeUndefined();
  });

  it("an attribute whose length overruns the list: treat-as-withdraw, NLRI still found (§4)", () => {
    const u = ok(decodeMessage(rawUpdate([...ORIGIN, ...ASPATH_EMPTY, 0x40, 3, 9, 192, 168, 0, 9]), true)) as UpdateMessage;
    expect(u.treatAsWithdraw).toMatchObject({ code: 3, action: "treat-as-withdraw" });
    expect(u.nlri).toEqual([pfx("10.9.0.0/16")]);
  });

  it("bad lengths of ORIGIN, NEXT_HOP, LOCAL_PREF, MED, ORIGINATOR_ID, CLUSTER_LIST: treat-as-withdraw (§7)", () => {
    const cases: number[][] = [
      [0x40, 1, 2, 0, 0, ...ASPATH_EMPTY, ...NEXTHOP],
      [...ORIGIN, ...ASPATH_EMPTY, 0x40, 3, 3, 1, 2, 3],
      [...ORIGIN, ...ASPATH_EMPTY, ...NEXTHOP, 0x40, 5, 2, 0, 1],
      [...ORIGIN, ...ASPATH_EMPTY, ...NEXTHOP, 0x80, 4, 1, 7],
      [...ORIGIN, ...ASPATH_EMPTY, ...NEXTHOP, 0x80, 9, 3, 1, 2, 3],
      [...ORIGIN, ...ASPATH_EMPTY, ...NEXTHOP, 0x80, 10, 5, 1, 2, 3, 4, 5],
      [0x40, 1, 1, 7, ...ASPATH_EMPTY, ...NEXTHOP], // ORIGIN 7 is undefined
      [...ORIGIN, 0x40, 2, 6, 2, 2, 0, 0, 0xfc], // AS_PATH segment shorter than its count
      [0xc0, 1, 1, 0, ...ASPATH_EMPTY, ...NEXTHOP], // ORIGIN flagged optional
    ];
    for (const c of cases) {
      const u = ok(decodeMessage(rawUpdate(c), true)) as UpdateMessage;
      expect(u.treatAsWithdraw?.action, JSON.stringify(c)).toBe("treat-as-withdraw");
    }
  });

  it("a missing mandatory attribute: treat-as-withdraw (§3 d)", () => {
    const u = ok(decodeMessage(rawUpdate([...ORIGIN, ...NEXTHOP]), true)) as UpdateMessage;
    expect(u.treatAsWithdraw).toMatchObject({ code: 3, subcode: 3 });
  });

  it("a bad ATOMIC_AGGREGATE is discarded, the route kept (§7.6)", () => {
    const u = ok(decodeMessage(rawUpdate([...ORIGIN, ...ASPATH_EMPTY, ...NEXTHOP, 0x40, 6, 1, 0]), true)) as UpdateMessage;
    expect(u.treatAsWithdraw).toBeUndefined();
    expect(u.discarded).toHaveLength(1);
    expect(u.discarded[0].action).toBe("attribute-discard");
  });

  it("an unrecognised well-known attribute resets the session with 3/2 (RFC 4271 §6.3)", () => {
    const e = fail(decodeMessage(rawUpdate([...ORIGIN, ...ASPATH_EMPTY, ...NEXTHOP, 0x40, 99, 1, 5]), true));
    expect(e).toMatchObject({ code: 3, subcode: 2, action: "session-reset", data: Uint8Array.of(0x40, 99, 1, 5) });
  });

  it("an unknown optional transitive attribute travels on marked partial; a repeated attribute keeps the first", () => {
    const u = ok(decodeMessage(rawUpdate([...ORIGIN, ...ASPATH_EMPTY, ...NEXTHOP, 0xc0, 99, 1, 5, 0x40, 1, 1, 2]), true)) as UpdateMessage;
    expect(u.attrs.unknown).toEqual([{ flags: 0xe0, type: 99, value: Uint8Array.of(5) }]);
    expect(u.attrs.origin).toBe(0);
  });

  it("withdrawn routes or NLRI that cannot be parsed, or an overlong total: session reset", () => {
    const badNlri = rawUpdate([...ORIGIN, ...ASPATH_EMPTY, ...NEXTHOP], [40, 10]);
    expect(fail(decodeMessage(badNlri, true))).toMatchObject({ code: 3, subcode: 10, action: "session-reset" });
    const total = rawUpdate([...ORIGIN]);
    total[22] = 200;
    expect(fail(decodeMessage(total, true))).toMatchObject({ code: 3, subcode: 1 });
    const wd = rawUpdate([]);
    wd[20] = 99;
    expect(fail(decodeMessage(wd, true))).toMatchObject({ code: 3, subcode: 1 });
  });

  it("MP_REACH_NLRI for IPv4 unicast adds to the NLRI; a malformed one resets", () => {
    const mp = [0x80, 14, 13, 0, 1, 1, 4, 192, 168, 0, 7, 0, 24, 10, 8, 1];
    const u = ok(decodeMessage(rawUpdate([...ORIGIN, ...ASPATH_EMPTY, ...mp], []), true)) as UpdateMessage;
    expect(u.nlri).toEqual([pfx("10.8.1.0/24")]);
    expect(u.attrs.nextHop).toBe(ip("192.168.0.7"));
    const bad = [0x80, 14, 8, 0, 1, 1, 9, 192, 168, 0, 7];
    expect(fail(decodeMessage(rawUpdate([...ORIGIN, ...ASPATH_EMPTY, ...bad], []), true))).toMatchObject({ code: 3, action: "session-reset" });
  });

  it("random bytes never throw", () => {
    let seed = 7;
    const rnd = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed >>> 24;
    };
    for (let n = 0; n < 3000; n++) {
      const base = hex([BIRD.update, BIRD.reflected, BIRD.ebgp, BIRD.open][n % 4]);
      for (let k = 0; k < 3; k++) base[19 + (rnd() % (base.length - 19))] = rnd();
      expect(() => decodeMessage(base, n % 2 === 0)).not.toThrow();
    }
  });

  it("updatesFor splits long lists under 4096 bytes", () => {
    const many = Array.from({ length: 3000 }, (_, i) => ({ addr: (0x0a000000 + (i << 8)) >>> 0, len: 24 }));
    const msgs = updatesFor(many, { origin: 0, asPath: [], nextHop: 1, unknown: [] }, many, true);
    expect(msgs.every((m) => m.length <= 4096)).toBe(true);
    let n = 0;
    let w = 0;
    for (const m of msgs) {
      const u = ok(decodeMessage(m, true)) as UpdateMessage;
      n += u.nlri.length;
      w += u.withdrawn.length;
    }
    expect([n, w]).toEqual([3000, 3000]);
  });
});
