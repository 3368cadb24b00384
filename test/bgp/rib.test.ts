import { describe, expect, it } from "vitest";
import { best, better, exportFor, type Path, type PeerRef, type SpeakerIdentity, unusable } from "../../src/bgp/rib.js";
import type { PathAttributes } from "../../src/wire/bgp.js";
import { parseIp } from "../../src/wire/ipv4addr.js";

const ip = (s: string): number => parseIp(s) >>> 0;
const me: SpeakerIdentity = { asn: 64512, routerId: ip("192.168.0.1"), clusterId: ip("192.168.0.1"), localAddr: ip("192.168.0.1") };
const peer = (a: string, o: Partial<PeerRef> = {}): PeerRef => ({ addr: ip(a), asn: 64512, bgpId: ip(a), ibgp: true, rrClient: false, ...o });
const attrs = (o: Partial<PathAttributes> = {}): PathAttributes => ({ origin: 0, asPath: [], nextHop: ip("192.168.0.9"), localPref: 100, unknown: [], ...o });
const path = (from: PeerRef | null, o: Partial<PathAttributes> = {}): Path => ({ prefix: { addr: ip("10.9.0.0"), len: 24 }, attrs: attrs(o), from });
const all = () => true;

describe("usable paths (RFC 4271 §9.1.2, RFC 4456 §8)", () => {
  it("refuses AS loops, our ORIGINATOR_ID, our cluster id, our own next hop and next hops that do not resolve", () => {
    const p = peer("192.168.0.2");
    expect(unusable(path(p), me, all)).toBeNull();
    expect(unusable(path(p, { asPath: [{ type: 2, asns: [65000, 64512] }] }), me, all)).toMatch(/AS_PATH loop/);
    expect(unusable(path(p, { originatorId: me.routerId }), me, all)).toMatch(/ORIGINATOR_ID/);
    expect(unusable(path(p, { clusterList: [ip("1.1.1.1"), me.clusterId] }), me, all)).toMatch(/CLUSTER_LIST/);
    expect(unusable(path(p, { nextHop: me.localAddr }), me, all)).toMatch(/our own/);
    expect(unusable(path(p), me, () => false)).toMatch(/does not resolve/);
  });
});

describe("best path (RFC 4271 §9.1.2.2)", () => {
  const a = peer("192.168.0.2");
  const b = peer("192.168.0.3");
  it("prefers, in order: local, LOCAL_PREF, shorter AS_PATH, lower ORIGIN, lower MED, eBGP, lower id, shorter CLUSTER_LIST, lower address", () => {
    expect(better(path(null), path(a, { localPref: 1000 }))).toBe(true);
    expect(better(path(b, { localPref: 200 }), path(a))).toBe(true);
    expect(better(path(b), path(a, { asPath: [{ type: 2, asns: [1] }] }))).toBe(true);
    // An AS_SET counts one.
    expect(better(path(b, { asPath: [{ type: 1, asns: [1, 2, 3] }] }), path(a, { asPath: [{ type: 2, asns: [1, 2] }] }))).toBe(true);
    expect(better(path(b, { origin: 0 }), path(a, { origin: 2 }))).toBe(true);
    expect(better(path(b, { med: 5 }), path(a, { med: 10 }))).toBe(true);
    // MED compared only between paths from the same neighbouring AS.
    const e1 = path(peer("192.168.0.3", { ibgp: false, asn: 65001 }), { asPath: [{ type: 2, asns: [65001] }], med: 50 });
    const e2 = path(peer("192.168.0.2", { ibgp: false, asn: 65002 }), { asPath: [{ type: 2, asns: [65002] }], med: 10 });
    expect(better(e2, e1)).toBe(true); // lower address wins: MED not compared
    const i1 = path(a, { asPath: [{ type: 2, asns: [65001] }] });
    const eb = path(peer("192.168.0.3", { ibgp: false, asn: 65001 }), { asPath: [{ type: 2, asns: [65001] }] });
    expect(better(eb, i1)).toBe(true);
    expect(better(path(a), path(b))).toBe(true);
    expect(better(path(b, { originatorId: ip("1.0.0.1") }), path(a))).toBe(true);
    expect(better(path(b, { originatorId: ip("9.9.9.9") }), path(a, { originatorId: ip("9.9.9.9"), clusterList: [1, 2] }))).toBe(true);
    expect(best([path(b), path(a), path(b, { localPref: 50 })])?.from).toBe(a);
    expect(best([])).toBeNull();
  });
});

describe("what goes to whom (RFC 4271 §9.1.3, RFC 4456 §6)", () => {
  const client = peer("192.168.0.2", { rrClient: true });
  const client2 = peer("192.168.0.4", { rrClient: true });
  const nonClient = peer("192.168.0.3");
  const nonClient2 = peer("192.168.0.5");
  const ebgp = peer("10.0.0.1", { ibgp: false, asn: 65001 });

  it("our own routes go everywhere with next hop self; iBGP gets LOCAL_PREF, eBGP our AS", () => {
    const own = path(null, { nextHop: undefined, localPref: undefined });
    expect(exportFor(own, nonClient, me)).toMatchObject({ nextHop: me.localAddr, localPref: 100, asPath: [] });
    const e = exportFor(own, ebgp, me);
    expect(e).toMatchObject({ nextHop: me.localAddr, asPath: [{ type: 2, asns: [64512] }] });
    expect(e?.localPref).toBeUndefined();
  });

  it("iBGP routes are not passed between non-clients; a reflector passes client routes to all and others to clients", () => {
    expect(exportFor(path(nonClient), nonClient2, me)).toBeNull();
    expect(exportFor(path(nonClient), nonClient, me)).toBeNull();
    const r = exportFor(path(client), nonClient, me);
    expect(r).toMatchObject({ originatorId: client.bgpId, clusterList: [me.clusterId], nextHop: ip("192.168.0.9") });
    expect(exportFor(path(client), client2, me)).not.toBeNull();
    expect(exportFor(path(client), client, me)).toBeNull();
    expect(exportFor(path(nonClient, { clusterList: [7] }), client, me)).toMatchObject({ clusterList: [me.clusterId, 7] });
    expect(exportFor(path(nonClient, { originatorId: 42 }), client, me)?.originatorId).toBe(42);
  });

  it("iBGP routes go to eBGP peers with our AS prepended and next hop self", () => {
    expect(exportFor(path(nonClient, { asPath: [{ type: 2, asns: [65009] }], med: 3 }), ebgp, me)).toMatchObject({
      asPath: [{ type: 2, asns: [64512, 65009] }],
      nextHop: me.localAddr,
      med: undefined,
    });
  });
});
