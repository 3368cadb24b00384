/**
 * Nat / ConnTrack tests. Packets are built with the src/wire emitters (nat-packets.ts)
 * and pushed through the two hooks the way the router calls them (prerouting, TTL
 * decrement, postrouting). Time is explicit: every `now` is chosen by the test (ms).
 * After every rewrite every checksum is verified with the wire check functions, and a
 * sample of translated packets is checked by tshark as well.
 */
import { describe, expect, it } from "vitest";
import { ConnTrack, MATCH_ANY } from "../../src/elements/conntrack.js";
import { conntrackLine, parseConntrackQuery, walkConntrack, type ConnEntryView } from "../../src/elements/conntrack-list.js";
import { NAT_ACCEPT, NAT_DROP, NAT_REJECT, Nat, type NatConfig, type Service } from "../../src/elements/nat.js";
import { emitIcmpError } from "../../src/wire/icmp.js";
import { checksumFold, ipv4FillChecksum, pseudoHeaderSum, readU16, writeU16 } from "../../src/wire/index.js";
import {
  TCP_ACK,
  TCP_FIN,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
  checksumFailures,
  echoPacket,
  forward,
  hasTshark,
  icmpError,
  innerTupleOf,
  ip,
  localError,
  post,
  pre,
  prng,
  rawPacket,
  release,
  tcpPacket,
  tshark,
  tupleOf,
  udpPacket,
} from "./nat-packets.js";

// -----------------------------------------------------------------------------
// The lab: pods behind the router on interface 0, the uplink on interface 1.

const POD_IF = 0;
const UPLINK_IF = 1;
const C1 = ip("10.244.1.10");
const C2 = ip("10.244.1.11");
const POD_GW = ip("10.244.1.1"); // the router on the pod network (hairpin source)
const N = ip("192.0.2.1"); // the router on the uplink (masquerade address)
const S = ip("198.51.100.7"); // a server outside
const R = ip("203.0.113.1"); // a router outside
const VIP = ip("10.96.0.10");
const VIP_DNS = ip("10.96.0.53");
const VIP_EMPTY = ip("10.96.0.99");
const B1 = ip("10.244.1.20");
const B2 = ip("10.244.1.21");

const S_N = "192.0.2.1";
const S_C1 = "10.244.1.10";
const S_C2 = "10.244.1.11";
const S_S = "198.51.100.7";
const S_VIP = "10.96.0.10";
const S_B1 = "10.244.1.20";
const S_B2 = "10.244.1.21";
const S_GW = "10.244.1.1";

function web(algorithm: Service["algorithm"]): Service {
  return {
    name: "web",
    vip: VIP,
    proto: 6,
    port: 80,
    backends: [
      { addr: B1, port: 8080 },
      { addr: B2, port: 8080 },
    ],
    algorithm,
  };
}
const DNS: Service = { name: "dns", vip: VIP_DNS, proto: 17, port: 53, backends: [{ addr: B1, port: 5353 }], algorithm: "random" };
const EMPTY: Service = { name: "empty", vip: VIP_EMPTY, proto: 6, port: 443, backends: [], algorithm: "random" };

function makeNat(o: Partial<NatConfig> = {}, rng = prng(1)): Nat {
  return new Nat(
    {
      snat: [{ sources: [{ addr: ip("10.244.0.0"), prefixLen: 16 }], outIf: UPLINK_IF, toAddr: N }],
      services: [web("roundrobin"), DNS, EMPTY],
      hashSeed: 12345,
      ...o,
    },
    rng,
  );
}

function expectChecksumsGood(pkt: Buffer): void {
  expect(checksumFailures(pkt)).toEqual([]);
}

/** Protocols for the table-driven SNAT tests: an outgoing first packet and a reply to a given NAT port/id. */
const PROTOS = [
  {
    name: "tcp",
    dport: 80,
    out: (src: number, sport: number) => tcpPacket(src, sport, S, 80, { flags: TCP_SYN }),
    again: (src: number, sport: number) => tcpPacket(src, sport, S, 80, { flags: TCP_ACK, seq: 1001, ack: 5001, data: 100 }),
    back: (natPort: number) => tcpPacket(S, 80, N, natPort, { flags: TCP_SYN | TCP_ACK, seq: 5000, ack: 1001 }),
  },
  {
    name: "udp",
    dport: 53,
    out: (src: number, sport: number) => udpPacket(src, sport, S, 53, 30),
    again: (src: number, sport: number) => udpPacket(src, sport, S, 53, 31),
    back: (natPort: number) => udpPacket(S, 53, N, natPort, 60),
  },
  {
    name: "icmp echo",
    dport: undefined,
    out: (src: number, id: number) => echoPacket(src, S, id, 1),
    again: (src: number, id: number) => echoPacket(src, S, id, 2),
    back: (natId: number) => echoPacket(S, N, natId, 1, true),
  },
] as const;

// -----------------------------------------------------------------------------

describe("SNAT (masquerade of pods to the uplink address)", () => {
  for (const P of PROTOS) {
    it(`${P.name}: source rewritten, port kept when free, clashing clients get distinct ports, replies go back`, () => {
      const nat = makeNat();
      let now = 1000;
      const p1 = P.out(C1, 40000);
      expect(forward(nat, p1, POD_IF, UPLINK_IF, now)).toBe(NAT_ACCEPT);
      const t1 = tupleOf(p1);
      expect(t1.src).toBe(S_N);
      expect(t1.sport).toBe(40000); // kept: the reply tuple was free
      expect(t1.dst).toBe(S_S);
      expect(p1[8]).toBe(63);
      expectChecksumsGood(p1);

      // A second client with the same source port / ICMP identifier.
      const p2 = P.out(C2, 40000);
      expect(forward(nat, p2, POD_IF, UPLINK_IF, ++now)).toBe(NAT_ACCEPT);
      const t2 = tupleOf(p2);
      expect(t2.src).toBe(S_N);
      expect(t2.sport).not.toBe(40000);
      if (P.name !== "icmp echo") {
        expect(t2.sport).toBeGreaterThanOrEqual(32768);
        expect(t2.sport).toBeLessThanOrEqual(60999);
      }
      expectChecksumsGood(p2);

      // Later packets of each flow keep their translation.
      const a1 = P.again(C1, 40000);
      const a2 = P.again(C2, 40000);
      forward(nat, a1, POD_IF, UPLINK_IF, ++now);
      forward(nat, a2, POD_IF, UPLINK_IF, ++now);
      expect(tupleOf(a1)).toMatchObject({ src: S_N, sport: 40000 });
      expect(tupleOf(a2)).toMatchObject({ src: S_N, sport: t2.sport });
      expectChecksumsGood(a1);
      expectChecksumsGood(a2);

      // Replies, to the router's address, leave prerouting addressed to the right pod.
      const r2 = P.back(t2.sport);
      expect(pre(nat, r2, UPLINK_IF, ++now)).toBe(NAT_ACCEPT);
      expect(tupleOf(r2)).toMatchObject({ dst: S_C2, dport: 40000, src: S_S });
      expect(post(nat, r2, POD_IF, POD_GW, now)).toBe(NAT_ACCEPT);
      expectChecksumsGood(r2);
      const r1 = P.back(40000);
      expect(forward(nat, r1, UPLINK_IF, POD_IF, ++now)).toBe(NAT_ACCEPT);
      expect(tupleOf(r1)).toMatchObject({ dst: S_C1, dport: 40000, src: S_S });
      expectChecksumsGood(r1);

      const c = nat.counters();
      expect(c.new).toBe(2);
      expect(c.snat).toBe(2);
      expect(c.unsnat).toBe(2);
      expect(c.established).toBe(4);
      expect(c.invalid).toBe(0);
      const entries = nat.conntrackEntries(now);
      expect(entries).toHaveLength(2);
      for (const e of entries) expect(e.flags).toContain("SNAT");
    });
  }

  it("leaves alone sources outside the rule and other out interfaces (but tracks them)", () => {
    const nat = makeNat();
    const other = udpPacket(ip("172.16.0.5"), 40000, S, 53);
    const before = Buffer.from(other);
    expect(forward(nat, other, POD_IF, UPLINK_IF, 1)).toBe(NAT_ACCEPT);
    before[8] -= 1;
    ipv4FillChecksum(before, 0);
    expect(other.equals(before)).toBe(true);
    const east = udpPacket(C1, 40001, ip("10.244.7.7"), 53);
    forward(nat, east, POD_IF, 2, 2);
    expect(tupleOf(east).src).toBe(S_C1);
    expect(nat.counters()).toMatchObject({ new: 2, snat: 0 });
  });

  it("exceptDestinations: no masquerade toward the cluster CIDR", () => {
    const nat = makeNat({
      snat: [
        {
          sources: [{ addr: ip("10.244.0.0"), prefixLen: 16 }],
          outIf: -1,
          toAddr: N,
          exceptDestinations: [{ addr: ip("10.244.0.0"), prefixLen: 16 }],
        },
      ],
    });
    const inCluster = udpPacket(C1, 1234, ip("10.244.9.9"), 53);
    forward(nat, inCluster, POD_IF, UPLINK_IF, 1);
    expect(tupleOf(inCluster).src).toBe(S_C1);
    const out = udpPacket(C1, 1234, S, 53);
    forward(nat, out, POD_IF, UPLINK_IF, 1);
    expect(tupleOf(out).src).toBe(S_N);
  });

  it("privileged source ports stay privileged; an exhausted range drops and counts", () => {
    const nat = makeNat({ portRange: [40000, 40001] });
    const a = udpPacket(C1, 500, S, 53);
    const b = udpPacket(C2, 500, S, 53);
    forward(nat, a, POD_IF, UPLINK_IF, 1);
    forward(nat, b, POD_IF, UPLINK_IF, 1);
    expect(tupleOf(a).sport).toBe(500);
    expect(tupleOf(b).sport).toBeGreaterThanOrEqual(1);
    expect(tupleOf(b).sport).toBeLessThanOrEqual(511);
    expect(tupleOf(b).sport).not.toBe(500);

    const clients = [ip("10.244.3.1"), ip("10.244.3.2"), ip("10.244.3.3")];
    const out = clients.map((c) => udpPacket(c, 40000, S, 53));
    expect(forward(nat, out[0], POD_IF, UPLINK_IF, 2)).toBe(NAT_ACCEPT);
    expect(forward(nat, out[1], POD_IF, UPLINK_IF, 2)).toBe(NAT_ACCEPT);
    expect(new Set([tupleOf(out[0]).sport, tupleOf(out[1]).sport])).toEqual(new Set([40000, 40001]));
    const before = Buffer.from(out[2]);
    expect(forward(nat, out[2], POD_IF, UPLINK_IF, 2)).toBe(NAT_DROP);
    expect(nat.counters().portsExhausted).toBe(1);
    before[8] -= 1;
    ipv4FillChecksum(before, 0);
    expect(out[2].equals(before)).toBe(true); // dropped as it was
    expect(nat.conntrackEntries(2)).toHaveLength(4);
  });

  it("a zero UDP checksum (none) stays zero", () => {
    const nat = makeNat();
    const p = udpPacket(C1, 7000, S, 9, 20, { noChecksum: true });
    forward(nat, p, POD_IF, UPLINK_IF, 1);
    expect(tupleOf(p).src).toBe(S_N);
    expect(readU16(p, 26)).toBe(0);
    expectChecksumsGood(p);
  });

  it("ICMP echo: a request from outside with the same identifier is not a reply", () => {
    const nat = makeNat();
    const ping = echoPacket(C1, S, 7, 1);
    forward(nat, ping, POD_IF, UPLINK_IF, 1);
    expect(tupleOf(ping)).toMatchObject({ src: S_N, sport: 7 });
    // S pings the router with id 7: the tuple equals the reply tuple, but it is a request.
    const theirs = echoPacket(S, N, 7, 1);
    pre(nat, theirs, UPLINK_IF, 2);
    expect(tupleOf(theirs).dst).toBe(S_N);
    release(nat); // delivered to the router
    // The real reply still finds C1.
    const reply = echoPacket(S, N, 7, 1, true);
    forward(nat, reply, UPLINK_IF, POD_IF, 3);
    expect(tupleOf(reply).dst).toBe(S_C1);
    expectChecksumsGood(reply);
  });

  it("checksum offload (CHECKSUM_PARTIAL): the pseudo-header seed moves with the address, not with the port", () => {
    const nat = makeNat();
    pre(nat, udpPacket(C1, 40000, S, 53), POD_IF, 1, false, 0, 40);
    release(nat);
    // C2 clashes with nothing yet; C1 takes 40000 first so C2's port is remapped.
    for (const [client, proto] of [
      [C1, 6],
      [C2, 6],
      [C1, 17],
    ] as const) {
      const p = proto === 6 ? tcpPacket(client, 40000, S, 80, { flags: TCP_SYN, data: 10 }) : udpPacket(client, 40000, S, 53, 10);
      const csumOff = proto === 6 ? 36 : 26;
      const l4Len = p.length - 20;
      writeU16(p, csumOff, checksumFold(pseudoHeaderSum(client, S, proto, l4Len)));
      expect(pre(nat, p, POD_IF, 2, true)).toBe(NAT_ACCEPT);
      expect(post(nat, p, UPLINK_IF, 0, 2, true)).toBe(NAT_ACCEPT);
      expect(tupleOf(p).src).toBe(S_N);
      expect(readU16(p, csumOff)).toBe(checksumFold(pseudoHeaderSum(N, S, proto, l4Len)));
    }
  });
});

describe("DNAT to service backends (kube-proxy)", () => {
  for (const algorithm of ["random", "roundrobin"] as const) {
    it(`${algorithm}: 200 connections spread over both backends, sticky per connection, replies from the VIP`, () => {
      const nat = makeNat({ services: [web(algorithm)] }, prng(42));
      let now = 5000;
      const chosen: string[] = [];
      for (let i = 0; i < 200; i++) {
        const syn = tcpPacket(C1, 20000 + i, VIP, 80, { flags: TCP_SYN });
        expect(forward(nat, syn, POD_IF, POD_IF, ++now)).toBe(NAT_ACCEPT);
        const t = tupleOf(syn);
        expect(t.src).toBe(S_C1);
        expect(t.sport).toBe(20000 + i);
        expect(t.dport).toBe(8080);
        expect([S_B1, S_B2]).toContain(t.dst);
        expectChecksumsGood(syn);
        chosen.push(t.dst);
      }
      const n1 = chosen.filter((b) => b === S_B1).length;
      if (algorithm === "roundrobin") {
        chosen.forEach((b, i) => expect(b).toBe(i % 2 === 0 ? S_B1 : S_B2));
      } else {
        expect(n1).toBeGreaterThan(0);
        expect(n1).toBeLessThan(200);
      }
      // Every packet of a connection goes to its backend; every reply comes from the VIP.
      for (let i = 0; i < 200; i++) {
        const backend = chosen[i] === S_B1 ? B1 : B2;
        const synack = tcpPacket(backend, 8080, C1, 20000 + i, { flags: TCP_SYN | TCP_ACK, seq: 9000, ack: 1001 });
        expect(forward(nat, synack, POD_IF, POD_IF, ++now)).toBe(NAT_ACCEPT);
        expect(tupleOf(synack)).toMatchObject({ src: S_VIP, sport: 80, dst: S_C1, dport: 20000 + i });
        expectChecksumsGood(synack);
        for (const flags of [TCP_ACK, TCP_ACK | TCP_PSH]) {
          const p = tcpPacket(C1, 20000 + i, VIP, 80, { flags, seq: 1001, ack: 9001, data: flags & TCP_PSH ? 200 : 0 });
          forward(nat, p, POD_IF, POD_IF, ++now);
          expect(tupleOf(p)).toMatchObject({ dst: chosen[i], dport: 8080 });
          expectChecksumsGood(p);
        }
      }
      const svc = nat.services(now)[0];
      expect(svc).toMatchObject({ name: "web", vip: S_VIP, proto: "tcp", port: 80, backends: [`${S_B1}:8080`, `${S_B2}:8080`], algorithm });
      expect(svc.connections).toEqual([n1, 200 - n1]);
      const c = nat.counters();
      expect(c).toMatchObject({ new: 200, dnat: 200, snat: 0, undnat: 200, invalid: 0 });
      const states = new Set(nat.conntrackEntries(now).map((e) => e.state));
      expect(states).toEqual(new Set(["ESTABLISHED"]));
    });
  }

  it("UDP service: DNAT and un-DNAT", () => {
    const nat = makeNat();
    const q = udpPacket(C2, 33000, VIP_DNS, 53, 40);
    forward(nat, q, POD_IF, POD_IF, 1);
    expect(tupleOf(q)).toMatchObject({ dst: S_B1, dport: 5353, src: S_C2 });
    expectChecksumsGood(q);
    const a = udpPacket(B1, 5353, C2, 33000, 100);
    forward(nat, a, POD_IF, POD_IF, 2);
    expect(tupleOf(a)).toMatchObject({ src: "10.96.0.53", sport: 53, dst: S_C2 });
    expectChecksumsGood(a);
  });

  it("a service without backends: NAT_REJECT, packet untouched, nothing tracked", () => {
    const nat = makeNat();
    const syn = tcpPacket(C1, 30000, VIP_EMPTY, 443, { flags: TCP_SYN });
    const before = Buffer.from(syn);
    expect(pre(nat, syn, POD_IF, 1)).toBe(NAT_REJECT);
    expect(syn.equals(before)).toBe(true);
    expect(nat.counters().rejected).toBe(1);
    expect(nat.conntrackEntries(1)).toEqual([]);
    // Other ports of the VIP are not the service.
    const other = tcpPacket(C1, 30000, VIP_EMPTY, 444, { flags: TCP_SYN });
    expect(pre(nat, other, POD_IF, 1)).toBe(NAT_ACCEPT);
  });

  it("hairpin: a client sent to itself is masqueraded to the router and the reply path translates", () => {
    const nat = makeNat({ services: [web("roundrobin")] });
    // Round robin: the first connection goes to B1, which is the client itself.
    const syn = tcpPacket(B1, 45000, VIP, 80, { flags: TCP_SYN });
    expect(forward(nat, syn, POD_IF, POD_IF, 1, POD_GW)).toBe(NAT_ACCEPT);
    expect(tupleOf(syn)).toMatchObject({ src: S_GW, sport: 45000, dst: S_B1, dport: 8080 });
    expectChecksumsGood(syn);
    // The reply is addressed to the router: prerouting must un-SNAT it before the
    // router decides it is local.
    const synack = tcpPacket(B1, 8080, POD_GW, 45000, { flags: TCP_SYN | TCP_ACK, seq: 7000, ack: 1001 });
    expect(pre(nat, synack, POD_IF, 2)).toBe(NAT_ACCEPT);
    expect(tupleOf(synack)).toMatchObject({ dst: S_B1, dport: 45000 });
    expect(post(nat, synack, POD_IF, POD_GW, 2)).toBe(NAT_ACCEPT);
    expect(tupleOf(synack)).toMatchObject({ src: S_VIP, sport: 80, dst: S_B1, dport: 45000 });
    expectChecksumsGood(synack);
    const ack = tcpPacket(B1, 45000, VIP, 80, { flags: TCP_ACK, seq: 1001, ack: 7001 });
    forward(nat, ack, POD_IF, POD_IF, 3, POD_GW);
    expect(tupleOf(ack)).toMatchObject({ src: S_GW, sport: 45000, dst: S_B1, dport: 8080 });
    expectChecksumsGood(ack);
    // The second connection goes to B2: no hairpin, no masquerade.
    const syn2 = tcpPacket(B1, 45001, VIP, 80, { flags: TCP_SYN });
    forward(nat, syn2, POD_IF, POD_IF, 4, POD_GW);
    expect(tupleOf(syn2)).toMatchObject({ src: S_B1, sport: 45001, dst: S_B2 });
    expect(nat.counters()).toMatchObject({ hairpin: 1, snat: 1, dnat: 2, unsnat: 1, undnat: 1 });
    const e = nat.conntrackEntries(4).find((x) => x.original.sport === 45000);
    expect(e?.flags).toEqual(expect.arrayContaining(["SNAT", "DNAT", "ASSURED"]));
  });

  it("a direct connection whose reply tuple clashes with a DNATed one gets its source port remapped", () => {
    const nat = makeNat({ services: [web("roundrobin")] });
    const viaVip = tcpPacket(C1, 40000, VIP, 80, { flags: TCP_SYN });
    forward(nat, viaVip, POD_IF, POD_IF, 1);
    expect(tupleOf(viaVip).dst).toBe(S_B1);
    // The same client port straight to the backend: reply tuple B1:8080 -> C1:40000 is taken.
    const direct = tcpPacket(C1, 40000, B1, 8080, { flags: TCP_SYN });
    forward(nat, direct, POD_IF, POD_IF, 2);
    const t = tupleOf(direct);
    expect(t.src).toBe(S_C1);
    expect(t.sport).not.toBe(40000);
    expectChecksumsGood(direct);
    // Each reply finds its own connection.
    const r1 = tcpPacket(B1, 8080, C1, 40000, { flags: TCP_SYN | TCP_ACK });
    forward(nat, r1, POD_IF, POD_IF, 3);
    expect(tupleOf(r1)).toMatchObject({ src: S_VIP, sport: 80, dport: 40000 });
    const r2 = tcpPacket(B1, 8080, C1, t.sport, { flags: TCP_SYN | TCP_ACK });
    forward(nat, r2, POD_IF, POD_IF, 3);
    expect(tupleOf(r2)).toMatchObject({ src: S_B1, sport: 8080, dst: S_C1, dport: 40000 });
    expectChecksumsGood(r2);
    expect(nat.counters().clash).toBe(1);
  });
});

describe("related ICMP errors", () => {
  /** Sets up C1 and C2 flows with the same source port (C2's is remapped); returns what left. */
  function twoClients(nat: Nat, P: (typeof PROTOS)[number]): { sent1: Buffer; sent2: Buffer } {
    const sent1 = P.out(C1, 33434);
    const sent2 = P.out(C2, 33434);
    forward(nat, sent1, POD_IF, UPLINK_IF, 10);
    forward(nat, sent2, POD_IF, UPLINK_IF, 11);
    return { sent1, sent2 };
  }

  for (const P of PROTOS) {
    for (const [what, from, type, code] of [
      ["time exceeded from a router outside", R, 11, 0],
      ["port unreachable from the server", S, 3, 3],
    ] as const) {
      it(`${P.name}: ${what} about a SNATed packet goes to the right client, fully translated`, () => {
        const nat = makeNat();
        const { sent1, sent2 } = twoClients(nat, P);
        const natPort2 = tupleOf(sent2).sport;
        expect(natPort2).not.toBe(33434);
        for (const [sent, client, sClient] of [
          [sent2, C2, S_C2],
          [sent1, C1, S_C1],
        ] as const) {
          const err = icmpError(from, N, type, code, sent);
          expect(pre(nat, err, UPLINK_IF, 20)).toBe(NAT_ACCEPT);
          // Addressed to the pod before the router's local-address check.
          expect(tupleOf(err).dst).toBe(sClient);
          expect(post(nat, err, POD_IF, POD_GW, 20)).toBe(NAT_ACCEPT);
          expect(err[20]).toBe(type);
          const outer = tupleOf(err);
          expect(outer.src).toBe(from === R ? "203.0.113.1" : S_S);
          expect(outer.dst).toBe(sClient);
          const inner = innerTupleOf(err);
          expect(inner).toMatchObject({ src: sClient, sport: 33434, dst: S_S });
          if (P.dport !== undefined) expect(inner.dport).toBe(P.dport);
          expect(checksumFailures(err)).toEqual([]);
          void client;
        }
        expect(nat.counters().related).toBe(2);
      });
    }
  }

  it("a truncated quote (IP header + 8 bytes, RFC 792) is translated too", () => {
    const nat = makeNat();
    const { sent2 } = twoClients(nat, PROTOS[0]);
    const err = icmpError(R, N, 11, 0, sent2.subarray(0, 28));
    forward(nat, err, UPLINK_IF, POD_IF, 20);
    expect(tupleOf(err).dst).toBe(S_C2);
    expect(innerTupleOf(err)).toMatchObject({ src: S_C2, sport: 33434 });
    expect(checksumFailures(err)).toEqual([]);
  });

  it("an error about a DNATed packet comes back from the VIP with the VIP quoted (as Linux)", () => {
    const nat = makeNat({ services: [web("roundrobin")] });
    const syn = tcpPacket(C1, 41000, VIP, 80, { flags: TCP_SYN });
    forward(nat, syn, POD_IF, POD_IF, 1);
    expect(tupleOf(syn).dst).toBe(S_B1);
    const gw = ip("10.244.1.254");
    const err = icmpError(gw, C1, 3, 1, syn);
    expect(forward(nat, err, POD_IF, POD_IF, 2)).toBe(NAT_ACCEPT);
    expect(tupleOf(err)).toMatchObject({ src: S_VIP, dst: S_C1 });
    expect(innerTupleOf(err)).toMatchObject({ src: S_C1, sport: 41000, dst: S_VIP, dport: 80 });
    expect(checksumFailures(err)).toEqual([]);
  });

  it("localError: the router's own time exceeded about a DNATed packet quotes the VIP", () => {
    const nat = makeNat({ services: [web("roundrobin")] });
    const syn = tcpPacket(C1, 41001, VIP, 80, { flags: TCP_SYN, ttl: 1 });
    expect(pre(nat, syn, POD_IF, 1)).toBe(NAT_ACCEPT);
    expect(tupleOf(syn).dst).toBe(S_B1);
    // The router sees TTL 1 and builds Time Exceeded over the (DNATed) packet.
    const err = Buffer.alloc(600);
    const len = emitIcmpError(err, 0, syn, 0, syn.length, 11, 0, 0, POD_GW, 77);
    const pkt = err.subarray(0, len);
    localError(nat, pkt, len);
    expect(tupleOf(pkt)).toMatchObject({ src: S_VIP, dst: S_C1 });
    expect(innerTupleOf(pkt)).toMatchObject({ src: S_C1, sport: 41001, dst: S_VIP, dport: 80 });
    expect(checksumFailures(Buffer.from(pkt))).toEqual([]);
    // The router drops the packet after its error: the connection is never confirmed.
    release(nat);
    expect(nat.counters().unconfirmed).toBe(1);
    expect(nat.conntrackEntries(2)).toEqual([]);
  });

  it("localError about an un-SNATed reply quotes the masquerade address and speaks from it", () => {
    const nat = makeNat();
    forward(nat, udpPacket(C1, 6000, S, 53), POD_IF, UPLINK_IF, 1);
    const reply = udpPacket(S, 53, N, 6000, 12, { ttl: 1 });
    pre(nat, reply, UPLINK_IF, 2);
    expect(tupleOf(reply).dst).toBe(S_C1); // un-SNATed; now the router sees TTL 1
    const err = Buffer.alloc(600);
    const len = emitIcmpError(err, 0, reply, 0, reply.length, 11, 0, 0, N, 9);
    const pkt = Buffer.from(err.subarray(0, len));
    localError(nat, pkt, len);
    expect(tupleOf(pkt)).toMatchObject({ src: S_N, dst: S_S });
    expect(innerTupleOf(pkt)).toMatchObject({ src: S_S, sport: 53, dst: S_N, dport: 6000 });
    expect(checksumFailures(pkt)).toEqual([]);
  });

  it("errors about nothing tracked, or not addressed to the quoted source, pass untouched as invalid", () => {
    const nat = makeNat();
    const sent = udpPacket(C1, 5000, S, 53);
    forward(nat, sent, POD_IF, UPLINK_IF, 1);
    const cases = [
      icmpError(R, N, 11, 0, udpPacket(N, 5001, S, 53)), // unknown port
      icmpError(R, ip("192.0.2.99"), 11, 0, sent), // addressed elsewhere
      icmpError(R, N, 11, 0, sent.subarray(0, 24)), // quote too short for ports
    ];
    for (const err of cases) {
      const before = Buffer.from(err);
      expect(forward(nat, err, UPLINK_IF, POD_IF, 2)).toBe(NAT_ACCEPT);
      before[8] -= 1;
      ipv4FillChecksum(before, 0);
      expect(err.equals(before)).toBe(true);
    }
    expect(nat.counters().invalid).toBe(3);
    expect(nat.counters().related).toBe(0);
  });
});

describe("conntrack timeouts and TCP states", () => {
  it("a UDP entry disappears after its timeout; a replied one lives on as ASSURED", () => {
    const nat = makeNat({ timeouts: { udp: 30, udpStream: 120 } });
    const a = udpPacket(C1, 5000, S, 53);
    const b = udpPacket(C1, 5001, S, 53);
    forward(nat, a, POD_IF, UPLINK_IF, 1000);
    forward(nat, b, POD_IF, UPLINK_IF, 1000);
    expect(nat.conntrackEntries(1000).map((e) => e.timeout)).toEqual([30, 30]);
    // A reply to a at 30.999 s: still there, now assured with the stream timeout.
    const ra = udpPacket(S, 53, N, 5000);
    forward(nat, ra, UPLINK_IF, POD_IF, 30_999);
    expect(tupleOf(ra).dst).toBe(S_C1);
    const ea = nat.conntrackEntries(30_999).find((e) => e.original.sport === 5000);
    expect(ea?.flags).toContain("ASSURED");
    expect(ea?.timeout).toBe(120);
    // b timed out at 31.000 s: lookups treat it as absent even before expire() runs.
    const rb = udpPacket(S, 53, N, 5001);
    pre(nat, rb, UPLINK_IF, 31_000);
    expect(tupleOf(rb).dst).toBe(S_N);
    release(nat);
    expect(nat.expire(31_000)).toBe(0); // already removed by the lookup
    expect(nat.conntrackEntries(31_000)).toHaveLength(1);
    expect(nat.expire(30_999 + 120_000 - 1)).toBe(0);
    expect(nat.expire(30_999 + 120_000)).toBe(1);
    expect(nat.conntrackEntries(30_999 + 120_000)).toEqual([]);
    expect(nat.counters().expired).toBe(2);
  });

  it("expire() also discards a new connection that never reached postrouting", () => {
    const nat = makeNat();
    const p = udpPacket(C1, 6000, S, 53);
    pre(nat, p, POD_IF, 1);
    expect(nat.expire(2)).toBe(0);
    expect(nat.counters().unconfirmed).toBe(1);
    // The context names an entry that is gone: postrouting leaves the packet alone.
    expect(post(nat, p, UPLINK_IF, 0, 2)).toBe(NAT_ACCEPT);
    expect(tupleOf(p).src).toBe(S_C1);
    expect(nat.conntrackEntries(2)).toEqual([]);
  });

  it("ICMP echo entries live icmp seconds", () => {
    const nat = makeNat({ timeouts: { icmp: 5 } });
    forward(nat, echoPacket(C1, S, 9, 1), POD_IF, UPLINK_IF, 0);
    expect(nat.conntrackEntries(0)[0]).toMatchObject({ proto: "icmp", timeout: 5 });
    expect(nat.expire(4999)).toBe(0);
    expect(nat.expire(5000)).toBe(1);
  });

  interface Step {
    pkt: () => Buffer;
    dir: "out" | "back";
    state: string | null;
    timeout?: number;
  }
  const o =
    (flags: number, data = 0) =>
    () =>
      tcpPacket(C1, 40000, S, 80, { flags, data });
  const b =
    (flags: number, data = 0) =>
    () =>
      tcpPacket(S, 80, N, 40000, { flags, data });
  const cases: Array<{ name: string; steps: Step[]; goneAfter: number }> = [
    {
      name: "SYN, SYN+ACK, ACK, FIN, ACK, FIN, ACK -> TIME_WAIT -> gone",
      steps: [
        { pkt: o(TCP_SYN), dir: "out", state: "SYN_SENT", timeout: 120 },
        { pkt: b(TCP_SYN | TCP_ACK), dir: "back", state: "SYN_RECV", timeout: 60 },
        { pkt: o(TCP_ACK), dir: "out", state: "ESTABLISHED", timeout: 432000 },
        { pkt: o(TCP_ACK | TCP_PSH, 100), dir: "out", state: "ESTABLISHED" },
        { pkt: b(TCP_ACK | TCP_PSH, 300), dir: "back", state: "ESTABLISHED" },
        { pkt: o(TCP_FIN | TCP_ACK), dir: "out", state: "FIN_WAIT", timeout: 120 },
        { pkt: b(TCP_ACK), dir: "back", state: "CLOSE_WAIT", timeout: 60 },
        { pkt: b(TCP_FIN | TCP_ACK), dir: "back", state: "LAST_ACK", timeout: 30 },
        { pkt: o(TCP_ACK), dir: "out", state: "TIME_WAIT", timeout: 120 },
      ],
      goneAfter: 120,
    },
    {
      name: "both FINs before the ACKs (server closes first)",
      steps: [
        { pkt: o(TCP_SYN), dir: "out", state: "SYN_SENT" },
        { pkt: b(TCP_SYN | TCP_ACK), dir: "back", state: "SYN_RECV" },
        { pkt: o(TCP_ACK), dir: "out", state: "ESTABLISHED" },
        { pkt: b(TCP_FIN | TCP_ACK), dir: "back", state: "FIN_WAIT" },
        { pkt: o(TCP_FIN | TCP_ACK), dir: "out", state: "LAST_ACK" },
        { pkt: b(TCP_ACK), dir: "back", state: "TIME_WAIT", timeout: 120 },
      ],
      goneAfter: 120,
    },
    {
      name: "RST -> CLOSE",
      steps: [
        { pkt: o(TCP_SYN), dir: "out", state: "SYN_SENT" },
        { pkt: b(TCP_SYN | TCP_ACK), dir: "back", state: "SYN_RECV" },
        { pkt: o(TCP_ACK), dir: "out", state: "ESTABLISHED" },
        { pkt: b(TCP_RST), dir: "back", state: "CLOSE", timeout: 10 },
      ],
      goneAfter: 10,
    },
    {
      name: "RST to a SYN (port closed)",
      steps: [
        { pkt: o(TCP_SYN), dir: "out", state: "SYN_SENT" },
        { pkt: b(TCP_RST | TCP_ACK), dir: "back", state: "CLOSE", timeout: 10 },
      ],
      goneAfter: 10,
    },
  ];
  for (const c of cases) {
    it(`TCP: ${c.name}`, () => {
      const nat = makeNat();
      let now = 100_000;
      for (const s of c.steps) {
        now += 10;
        const p = s.pkt();
        const v = s.dir === "out" ? forward(nat, p, POD_IF, UPLINK_IF, now) : forward(nat, p, UPLINK_IF, POD_IF, now);
        expect(v).toBe(NAT_ACCEPT);
        expect(tupleOf(p)).toMatchObject(s.dir === "out" ? { src: S_N, sport: 40000 } : { dst: S_C1, dport: 40000 });
        expectChecksumsGood(p);
        const e = nat.conntrackEntries(now);
        expect(e).toHaveLength(1);
        expect(e[0].state).toBe(s.state);
        if (s.timeout !== undefined) expect(e[0].timeout).toBe(s.timeout);
      }
      expect(nat.expire(now + c.goneAfter * 1000 - 1)).toBe(0);
      expect(nat.expire(now + c.goneAfter * 1000)).toBe(1);
      expect(nat.conntrackEntries(now + c.goneAfter * 1000)).toEqual([]);
    });
  }

  it("TCP: a new SYN on a TIME_WAIT tuple opens a new connection", () => {
    const nat = makeNat({ services: [web("roundrobin")] });
    const seq: Array<[number, boolean]> = [
      [TCP_SYN, true],
      [TCP_SYN | TCP_ACK, false],
      [TCP_ACK, true],
      [TCP_FIN | TCP_ACK, true],
      [TCP_FIN | TCP_ACK, false],
      [TCP_ACK, true],
    ];
    let now = 0;
    let backend = "";
    for (const [flags, out] of seq) {
      const p = out ? tcpPacket(C1, 40000, VIP, 80, { flags }) : tcpPacket(backend === S_B1 ? B1 : B2, 8080, C1, 40000, { flags });
      forward(nat, p, POD_IF, POD_IF, ++now);
      if (flags === TCP_SYN) backend = tupleOf(p).dst;
    }
    expect(nat.conntrackEntries(now)[0].state).toBe("TIME_WAIT");
    const syn = tcpPacket(C1, 40000, VIP, 80, { flags: TCP_SYN });
    forward(nat, syn, POD_IF, POD_IF, ++now);
    expect(tupleOf(syn).dst).toBe(S_B2); // a new connection: round robin moved on
    const e = nat.conntrackEntries(now);
    expect(e).toHaveLength(1);
    expect(e[0].state).toBe("SYN_SENT");
    expect(nat.counters()).toMatchObject({ reopened: 1, new: 2 });
  });

  it("conntrack -L view: tuples, counters, flags", () => {
    const nat = makeNat();
    forward(nat, tcpPacket(C1, 40000, S, 80, { flags: TCP_SYN }), POD_IF, UPLINK_IF, 0);
    forward(nat, tcpPacket(S, 80, N, 40000, { flags: TCP_SYN | TCP_ACK }), UPLINK_IF, POD_IF, 1);
    forward(nat, tcpPacket(C1, 40000, S, 80, { flags: TCP_ACK }), POD_IF, UPLINK_IF, 2);
    forward(nat, echoPacket(C1, S, 77, 1), POD_IF, UPLINK_IF, 3);
    const [tcp, icmp] = nat
      .conntrackEntries(3)
      .sort((a, z) => a.protoNum - z.protoNum)
      .reverse();
    expect(tcp).toEqual({
      proto: "tcp",
      protoNum: 6,
      state: "ESTABLISHED",
      timeout: 431999, // 1 ms has passed since the last packet: seconds left, rounded down
      original: { src: S_C1, dst: S_S, sport: 40000, dport: 80, packets: 2, bytes: 80 },
      reply: { src: S_S, dst: S_N, sport: 80, dport: 40000, packets: 1, bytes: 40 },
      flags: ["ASSURED", "SNAT"],
    });
    expect(conntrackLine(tcp)).toBe(
      "tcp      6  431999 ESTABLISHED src=10.244.1.10 dst=198.51.100.7 sport=40000 dport=80 packets=2 bytes=80 " +
        "src=198.51.100.7 dst=192.0.2.1 sport=80 dport=40000 packets=1 bytes=40 [ASSURED] [SNAT]",
    );
    expect(icmp).toMatchObject({ proto: "icmp", state: null, flags: ["UNREPLIED", "SNAT"] });
    expect(conntrackLine(icmp)).toContain("type=8 code=0 id=77 packets=1 bytes=44 [UNREPLIED] src=198.51.100.7 dst=192.0.2.1 type=0 code=0 id=77");
    expect(JSON.parse(JSON.stringify(nat.conntrackEntries(3)))).toEqual(nat.conntrackEntries(3));
  });
});

describe("bounded table", () => {
  it("with maxEntries 3 held by answered (ASSURED) flows a 4th is refused and counted as drop; the 3 keep translating", () => {
    const nat = makeNat({ maxEntries: 3, timeouts: { udp: 30, udpStream: 30 } });
    const answered = (i: number, now: number): void => {
      const out = udpPacket(C1, 1000 + i, S, 53);
      expect(forward(nat, out, POD_IF, UPLINK_IF, now)).toBe(NAT_ACCEPT);
      expect(tupleOf(out)).toMatchObject({ src: S_N, sport: 1000 + i });
      const back = udpPacket(S, 53, N, 1000 + i);
      expect(forward(nat, back, UPLINK_IF, POD_IF, now)).toBe(NAT_ACCEPT);
      expect(tupleOf(back)).toMatchObject({ dst: S_C1, dport: 1000 + i });
    };
    for (let i = 0; i < 3; i++) answered(i, 0);
    expect(nat.counters()).toMatchObject({ entries: 3, evictable: 0, maxEntries: 3 });
    const fourth = udpPacket(C1, 1003, S, 53);
    expect(forward(nat, fourth, POD_IF, UPLINK_IF, 1)).toBe(NAT_DROP);
    expect(nat.counters().drop).toBe(1);
    expect(forward(nat, tcpPacket(C2, 1, S, 80, { flags: TCP_SYN }), POD_IF, UPLINK_IF, 1)).toBe(NAT_DROP);
    expect(nat.counters()).toMatchObject({ drop: 2, earlyDrop: 0 });
    for (let i = 0; i < 3; i++) answered(i, 2);
    expect(nat.conntrackEntries(2)).toHaveLength(3);
    // Once they time out there is room again (reclaimed on demand, no expire() needed).
    const later = udpPacket(C1, 1003, S, 53);
    expect(forward(nat, later, POD_IF, UPLINK_IF, 2 + 30_000)).toBe(NAT_ACCEPT);
    expect(tupleOf(later).src).toBe(S_N);
    expect(nat.counters()).toMatchObject({ drop: 2, earlyDrop: 0 });
  });

  it("early drop: a SYN flood evicts the oldest half-open entries, never an established or answered flow", () => {
    const nat = makeNat({ maxEntries: 6 });
    // An established TCP connection and an answered UDP flow, both ASSURED.
    forward(nat, tcpPacket(C1, 40000, S, 80, { flags: TCP_SYN }), POD_IF, UPLINK_IF, 0);
    forward(nat, tcpPacket(S, 80, N, 40000, { flags: TCP_SYN | TCP_ACK }), UPLINK_IF, POD_IF, 1);
    forward(nat, tcpPacket(C1, 40000, S, 80, { flags: TCP_ACK }), POD_IF, UPLINK_IF, 2);
    forward(nat, udpPacket(C1, 5353, S, 53), POD_IF, UPLINK_IF, 3);
    forward(nat, udpPacket(S, 53, N, 5353), UPLINK_IF, POD_IF, 4);
    expect(nat.counters()).toMatchObject({ entries: 2, evictable: 0 });
    // 200 SYNs from a spoofed source (distinct ports), never answered.
    const SPOOF = ip("10.244.1.99");
    for (let i = 0; i < 200; i++) {
      expect(forward(nat, tcpPacket(SPOOF, 1000 + i, S, 80, { flags: TCP_SYN }), POD_IF, UPLINK_IF, 10 + i)).toBe(NAT_ACCEPT);
    }
    // 4 slots cycled: the last 4 SYNs remain, the first 196 were evicted, oldest first.
    expect(nat.counters()).toMatchObject({ drop: 0, earlyDrop: 196, entries: 6, evictable: 4 });
    const synPorts = nat
      .conntrackEntries(300)
      .filter((e) => e.state === "SYN_SENT")
      .map((e) => e.original.sport)
      .sort();
    expect(synPorts).toEqual([1196, 1197, 1198, 1199]);
    // The established flows still translate both ways.
    const data = tcpPacket(C1, 40000, S, 80, { flags: TCP_ACK | TCP_PSH, data: 100 });
    expect(forward(nat, data, POD_IF, UPLINK_IF, 400)).toBe(NAT_ACCEPT);
    expect(tupleOf(data)).toMatchObject({ src: S_N, sport: 40000 });
    const dnsBack = udpPacket(S, 53, N, 5353);
    expect(forward(nat, dnsBack, UPLINK_IF, POD_IF, 400)).toBe(NAT_ACCEPT);
    expect(tupleOf(dnsBack)).toMatchObject({ dst: S_C1, dport: 5353 });
    // A real handshake during the flood: its SYN_SENT entry is the newest, the flood
    // evicts older ones first, the handshake completes and leaves the FIFO.
    expect(forward(nat, tcpPacket(C2, 41000, S, 80, { flags: TCP_SYN }), POD_IF, UPLINK_IF, 500)).toBe(NAT_ACCEPT);
    forward(nat, tcpPacket(SPOOF, 3000, S, 80, { flags: TCP_SYN }), POD_IF, UPLINK_IF, 501);
    forward(nat, tcpPacket(SPOOF, 3001, S, 80, { flags: TCP_SYN }), POD_IF, UPLINK_IF, 502);
    const synAck = tcpPacket(S, 80, N, 41000, { flags: TCP_SYN | TCP_ACK });
    expect(forward(nat, synAck, UPLINK_IF, POD_IF, 503)).toBe(NAT_ACCEPT);
    expect(tupleOf(synAck)).toMatchObject({ dst: S_C2, dport: 41000 });
    forward(nat, tcpPacket(C2, 41000, S, 80, { flags: TCP_ACK }), POD_IF, UPLINK_IF, 504);
    expect(nat.counters()).toMatchObject({ entries: 6, evictable: 3 });
    // Fill the rest with assured flows; then there is nothing to evict: refused.
    for (const port of [42000, 42001, 42002]) {
      forward(nat, tcpPacket(C2, port, S, 80, { flags: TCP_SYN }), POD_IF, UPLINK_IF, 600);
      forward(nat, tcpPacket(S, 80, N, port, { flags: TCP_SYN | TCP_ACK }), UPLINK_IF, POD_IF, 601);
      forward(nat, tcpPacket(C2, port, S, 80, { flags: TCP_ACK }), POD_IF, UPLINK_IF, 602);
    }
    expect(nat.counters()).toMatchObject({ entries: 6, evictable: 0, drop: 0 });
    const early = nat.counters().earlyDrop;
    expect(forward(nat, tcpPacket(SPOOF, 4000, S, 80, { flags: TCP_SYN }), POD_IF, UPLINK_IF, 700)).toBe(NAT_DROP);
    expect(nat.counters()).toMatchObject({ drop: 1, earlyDrop: early });
    expect(nat.conntrackEntries(700).every((e) => e.state === "ESTABLISHED" || e.proto === "udp")).toBe(true);
  });

  it("early drop takes closed connections (LAST_ACK, TIME_WAIT, CLOSE) but not half-closed ones (FIN_WAIT, CLOSE_WAIT)", () => {
    const nat = makeNat({ maxEntries: 2 });
    const open = (port: number, t: number): void => {
      forward(nat, tcpPacket(C1, port, S, 80, { flags: TCP_SYN }), POD_IF, UPLINK_IF, t);
      forward(nat, tcpPacket(S, 80, N, port, { flags: TCP_SYN | TCP_ACK }), UPLINK_IF, POD_IF, t);
      forward(nat, tcpPacket(C1, port, S, 80, { flags: TCP_ACK }), POD_IF, UPLINK_IF, t);
    };
    open(40001, 0);
    open(40002, 1);
    // 40001: the client sent FIN and it was acknowledged (CLOSE_WAIT: the server may still send).
    forward(nat, tcpPacket(C1, 40001, S, 80, { flags: TCP_FIN | TCP_ACK }), POD_IF, UPLINK_IF, 2);
    forward(nat, tcpPacket(S, 80, N, 40001, { flags: TCP_ACK }), UPLINK_IF, POD_IF, 3);
    // 40002: only the client's FIN so far (FIN_WAIT).
    forward(nat, tcpPacket(C1, 40002, S, 80, { flags: TCP_FIN | TCP_ACK }), POD_IF, UPLINK_IF, 4);
    const states = (): string[] =>
      nat
        .conntrackEntries(10)
        .map((e) => `${e.original.sport} ${e.state}`)
        .sort();
    expect(states()).toEqual(["40001 CLOSE_WAIT", "40002 FIN_WAIT"]);
    expect(forward(nat, tcpPacket(C2, 50000, S, 80, { flags: TCP_SYN }), POD_IF, UPLINK_IF, 5)).toBe(NAT_DROP);
    // 40001: the server's FIN, then the client's ACK: TIME_WAIT, evictable.
    forward(nat, tcpPacket(S, 80, N, 40001, { flags: TCP_FIN | TCP_ACK }), UPLINK_IF, POD_IF, 6);
    expect(states()).toEqual(["40001 LAST_ACK", "40002 FIN_WAIT"]);
    forward(nat, tcpPacket(C1, 40001, S, 80, { flags: TCP_ACK }), POD_IF, UPLINK_IF, 7);
    expect(states()).toEqual(["40001 TIME_WAIT", "40002 FIN_WAIT"]);
    expect(nat.counters().evictable).toBe(1);
    expect(forward(nat, tcpPacket(C2, 50000, S, 80, { flags: TCP_SYN }), POD_IF, UPLINK_IF, 8)).toBe(NAT_ACCEPT);
    expect(states()).toEqual(["40002 FIN_WAIT", "50000 SYN_SENT"]);
    expect(nat.counters()).toMatchObject({ drop: 1, earlyDrop: 1 });
  });

  it("the eviction FIFO stays consistent through growth, expiry, removal and reuse (random operations)", () => {
    const ct = new ConnTrack({ maxEntries: 1500, seed: 7, timeouts: { tcpSynSent: 5 } });
    const r = prng(9);
    const live = new Map<number, number>(); // entry -> 1 assured / 0 not
    let now = 0;
    for (let step = 0; step < 15_000; step++) {
      now += 1;
      const x = r();
      if (x < 0.6) {
        const e = ct.alloc(6, now);
        if (e < 0) {
          expect([...live.values()].every((a) => a === 1)).toBe(true);
          continue;
        }
        ct.setTuple(e, 0, step, step & 0xffff, 1, 80);
        ct.setTuple(e, 1, 1, 80, step, step & 0xffff);
        ct.track(e, 0, TCP_SYN, 40, now);
        ct.confirm(e);
        live.set(e, 0);
      } else if (x < 0.8 && live.size > 0) {
        // Complete a handshake of some entry still half open.
        const e = [...live.keys()][Math.floor(r() * live.size)];
        if (live.get(e) === 0 && ct.isConfirmed(e)) {
          ct.track(e, 1, TCP_SYN | TCP_ACK, 40, now);
          ct.track(e, 0, TCP_ACK, 40, now);
          live.set(e, 1);
        }
      } else if (x < 0.9 && live.size > 0) {
        const e = [...live.keys()][Math.floor(r() * live.size)];
        ct.remove(e);
        live.delete(e);
      } else {
        ct.expire(now);
      }
      // Entries removed behind our back (evicted, expired): forget them.
      if (ct.count !== live.size) for (const e of [...live.keys()]) if (!ct.isConfirmed(e)) live.delete(e);
      expect(ct.count).toBe(live.size);
      expect(ct.evictable).toBe([...live.values()].filter((a) => a === 0).length);
    }
    expect(ct.earlyDrops).toBeGreaterThan(100);
  });

  it("ConnTrack grows past its initial capacity and finds every tuple", () => {
    const ct = new ConnTrack({ maxEntries: 5000, seed: 3 });
    for (let i = 0; i < 5000; i++) {
      const e = ct.alloc(17, 0);
      expect(e).toBeGreaterThanOrEqual(0);
      ct.setTuple(e, 0, 0x0a000000 + i, 1000 + (i % 7), 0x08080808, 53);
      ct.setTuple(e, 1, 0x08080808, 53, 0xc0000201, 1000 + i);
      ct.confirm(e);
      ct.track(e, 1, 0, 40, 0); // answered: ASSURED, so nothing is evictable when full
    }
    expect(ct.evictable).toBe(0);
    expect(ct.alloc(17, 0)).toBe(-1);
    for (let i = 0; i < 5000; i += 97) {
      expect(ct.find(17, 0x0a000000 + i, 1000 + (i % 7), 0x08080808, 53, MATCH_ANY, 1) >> 1).toBeGreaterThanOrEqual(0);
      expect(ct.find(17, 0x08080808, 53, 0xc0000201, 1000 + i, MATCH_ANY, 1) & 1).toBe(1);
    }
    expect(ct.find(17, 0x0a000000, 999, 0x08080808, 53, MATCH_ANY, 1)).toBe(-1);
  });
});

describe("untracked, invalid and hostile input", () => {
  it("other protocols and fragments pass untouched (untracked)", () => {
    const nat = makeNat({ services: [web("random")] });
    const pkts = [
      rawPacket(47, C1, S, 60),
      rawPacket(17, C1, S, 60, { mf: true }),
      rawPacket(6, C1, VIP, 60, { fragOffset: 10 }),
      echoPacket(C1, S, 1, 1).fill(13, 20, 21), // ICMP timestamp-ish type: not echo, not error
    ];
    for (const p of pkts) {
      const before = Buffer.from(p);
      expect(pre(nat, p, POD_IF, 1)).toBe(NAT_ACCEPT);
      expect(post(nat, p, UPLINK_IF, 0, 1)).toBe(NAT_ACCEPT);
      expect(p.equals(before)).toBe(true);
    }
    expect(nat.counters().untracked).toBe(4);
    expect(nat.conntrackEntries(1)).toEqual([]);
  });

  it("a TCP segment that is not a SYN without an entry is INVALID: accepted untouched by default, dropped with invalidPolicy drop", () => {
    for (const [policy, verdict] of [
      ["accept", NAT_ACCEPT],
      ["drop", NAT_DROP],
    ] as const) {
      const nat = makeNat({ invalidPolicy: policy });
      for (const flags of [TCP_ACK, TCP_SYN | TCP_ACK, TCP_FIN | TCP_ACK, TCP_RST, TCP_SYN | TCP_FIN]) {
        const p = tcpPacket(C1, 40000, VIP, 80, { flags });
        const before = Buffer.from(p);
        expect(pre(nat, p, POD_IF, 1)).toBe(verdict);
        expect(p.equals(before)).toBe(true);
      }
      const reply = echoPacket(S, N, 5, 1, true);
      expect(pre(nat, reply, UPLINK_IF, 1)).toBe(verdict);
      expect(nat.counters().invalid).toBe(6);
      expect(nat.conntrackEntries(1)).toEqual([]);
    }
  });

  it("contexts travel with their packets: several packets between the hooks, postrouting in another order", () => {
    const nat = makeNat();
    forward(nat, udpPacket(C1, 4000, S, 53), POD_IF, UPLINK_IF, 1);
    const a = udpPacket(C1, 4001, S, 53); // new
    const b = udpPacket(C2, 4001, S, 53); // new, same port: whichever is confirmed second is remapped
    const r = udpPacket(S, 53, N, 4000); // a reply of the first flow
    const ca = nat.prerouting(a, 0, a.length, POD_IF, 2);
    const cb = nat.prerouting(b, 0, b.length, POD_IF, 2);
    const cr = nat.prerouting(r, 0, r.length, UPLINK_IF, 2);
    expect([ca, cb, cr].every((c) => c > NAT_ACCEPT)).toBe(true);
    expect(nat.postrouting(cr, r, 0, r.length, POD_IF, POD_GW, 2)).toBe(NAT_ACCEPT);
    expect(nat.postrouting(cb, b, 0, b.length, UPLINK_IF, 0, 2)).toBe(NAT_ACCEPT);
    expect(nat.postrouting(ca, a, 0, a.length, UPLINK_IF, 0, 2)).toBe(NAT_ACCEPT);
    expect(tupleOf(b)).toMatchObject({ src: S_N, sport: 4001 });
    expect(tupleOf(a).src).toBe(S_N);
    expect(tupleOf(a).sport).not.toBe(4001);
    expect(tupleOf(r)).toMatchObject({ src: S_S, dst: S_C1, dport: 4000 });
    for (const p of [a, b, r]) expectChecksumsGood(p);
    expect(nat.counters()).toMatchObject({ new: 3, unsnat: 1, unconfirmed: 0, entries: 3 });
  });

  it("release() frees a new connection's entry; postrouting with no context leaves the packet alone", () => {
    const nat = makeNat();
    const a = udpPacket(C1, 4000, S, 53);
    const ctx = nat.prerouting(a, 0, a.length, POD_IF, 1);
    expect(nat.counters()).toMatchObject({ entries: 1, new: 0 });
    nat.release(ctx);
    nat.release(ctx); // once only
    expect(nat.counters()).toMatchObject({ unconfirmed: 1, new: 0, entries: 0 });
    const before = Buffer.from(a);
    expect(nat.postrouting(NAT_ACCEPT, a, 0, a.length, UPLINK_IF, 0, 1)).toBe(NAT_ACCEPT);
    expect(a.equals(before)).toBe(true);
    // A known connection's context has nothing to release.
    forward(nat, a, POD_IF, UPLINK_IF, 2);
    const again = udpPacket(C1, 4000, S, 53);
    nat.release(nat.prerouting(again, 0, again.length, POD_IF, 3));
    expect(nat.counters()).toMatchObject({ unconfirmed: 1, new: 1, entries: 1 });
  });

  it("garbage, truncated and bit-flipped packets never throw", () => {
    const nat = makeNat({ services: [web("random"), DNS, EMPTY], maxEntries: 64 });
    const rnd = prng(99);
    const valid: Buffer[] = [
      tcpPacket(C1, 40000, S, 80, { flags: TCP_SYN, data: 20 }),
      tcpPacket(C1, 40001, VIP, 80, { flags: TCP_SYN }),
      udpPacket(C2, 5000, VIP_DNS, 53, 20),
      udpPacket(S, 53, N, 5000, 20),
      echoPacket(C1, S, 3, 1),
      icmpError(R, N, 11, 0, udpPacket(N, 40000, S, 53, 20)),
      icmpError(R, N, 3, 3, echoPacket(N, S, 3, 1)),
    ];
    const verdicts = new Set<number>();
    const run = (p: Buffer, off: number, len: number, now: number): void => {
      const v = pre(nat, p, rnd() < 0.5 ? POD_IF : UPLINK_IF, now, false, off, len);
      verdicts.add(v);
      if (v === NAT_ACCEPT) verdicts.add(post(nat, p, rnd() < 0.5 ? POD_IF : UPLINK_IF, POD_GW, now, false, off, len));
      if (rnd() < 0.1) {
        const err = Buffer.alloc(600);
        const n = emitIcmpError(err, 0, p, off, Math.max(0, Math.min(len, p.length - off)), 11, 0, 0, POD_GW, 1);
        if (n > 0) localError(nat, err, n);
      }
    };
    let now = 0;
    expect(() => {
      // Random bytes, random lengths and offsets (some lying about the length).
      for (let i = 0; i < 3000; i++) {
        const len = Math.floor(rnd() * 120);
        const p = Buffer.alloc(len);
        for (let k = 0; k < len; k++) p[k] = Math.floor(rnd() * 256);
        if (len > 0 && rnd() < 0.7) p[0] = 0x45;
        if (len > 9 && rnd() < 0.7) p[9] = [1, 6, 17][i % 3];
        const off = rnd() < 0.1 ? -1 : 0;
        run(p, off, rnd() < 0.1 ? len + 10 : len, ++now);
      }
      // Every truncation of valid packets, with and without a fixed-up total length.
      for (const v of valid) {
        for (let cut = 0; cut <= v.length; cut++) {
          const p = Buffer.from(v.subarray(0, cut));
          run(p, 0, cut, ++now);
          if (cut >= 20) {
            const q = Buffer.from(v.subarray(0, cut));
            writeU16(q, 2, cut);
            ipv4FillChecksum(q, 0);
            run(q, 0, cut, ++now);
          }
        }
      }
      // Bit flips in valid packets.
      for (let i = 0; i < 5000; i++) {
        const p = Buffer.from(valid[i % valid.length]);
        const flips = 1 + Math.floor(rnd() * 4);
        for (let k = 0; k < flips; k++) p[Math.floor(rnd() * p.length)] ^= 1 << Math.floor(rnd() * 8);
        if (rnd() < 0.5) ipv4FillChecksum(p, 0);
        run(p, 0, p.length, ++now);
      }
      nat.expire(now + 1e9);
    }).not.toThrow();
    for (const v of verdicts) expect([NAT_ACCEPT, NAT_DROP, NAT_REJECT]).toContain(v);
    expect(nat.conntrackEntries(now + 1e9)).toEqual([]);
  });

  it("configuration errors are clear", () => {
    expect(() => makeNat({ portRange: [100, 50] })).toThrow(/portRange/);
    expect(() => makeNat({ services: [web("random"), web("roundrobin")] })).toThrow(/defined twice/);
    expect(() => makeNat({ snat: [{ sources: [{ addr: 0, prefixLen: 33 }], outIf: 1, toAddr: N }] })).toThrow(/prefix length/);
    expect(() => makeNat({ timeouts: { tcpEstablishd: 5 } as never })).toThrow(/unknown conntrack timeout/);
    expect(() => makeNat({ maxEntries: 0 })).toThrow(/maxEntries/);
  });

  it("setServices: new backends for new connections, old connections keep theirs", () => {
    const nat = makeNat({ services: [web("roundrobin")] });
    const a = tcpPacket(C1, 50000, VIP, 80, { flags: TCP_SYN });
    forward(nat, a, POD_IF, POD_IF, 1);
    expect(tupleOf(a).dst).toBe(S_B1);
    nat.setServices([{ ...web("roundrobin"), backends: [{ addr: B2, port: 9090 }] }]);
    const again = tcpPacket(C1, 50000, VIP, 80, { flags: TCP_ACK });
    forward(nat, again, POD_IF, POD_IF, 2);
    expect(tupleOf(again)).toMatchObject({ dst: S_B1, dport: 8080 });
    const b = tcpPacket(C1, 50001, VIP, 80, { flags: TCP_SYN });
    forward(nat, b, POD_IF, POD_IF, 3);
    expect(tupleOf(b)).toMatchObject({ dst: S_B2, dport: 9090 });
    expect(nat.services(3)[0].connections).toEqual([1]);
  });
});

describe("runtime changes while traffic flows (services, masquerade rules, conntrack -F / -D)", () => {
  it("conntrack -F: confirmed entries go, a packet between the hooks keeps its pending entry", () => {
    const nat = makeNat();
    forward(nat, udpPacket(C1, 5000, S, 53), POD_IF, UPLINK_IF, 1);
    forward(nat, tcpPacket(C1, 40000, S, 80, { flags: TCP_SYN }), POD_IF, UPLINK_IF, 1);
    const between = udpPacket(C2, 5001, S, 53);
    const ctx = nat.prerouting(between, 0, between.length, POD_IF, 2);
    expect(nat.conntrackFlush()).toBe(2);
    expect(nat.counters()).toMatchObject({ entries: 1, evictable: 0 });
    expect(nat.postrouting(ctx, between, 0, between.length, UPLINK_IF, 0, 2)).toBe(NAT_ACCEPT);
    expect(tupleOf(between)).toMatchObject({ src: S_N, sport: 5001 });
    expect(nat.conntrackEntries(2).map((e) => e.original.sport)).toEqual([5001]);
    // The flushed flow's reply is nobody's now: a new connection to the router, not translated.
    const reply = udpPacket(S, 53, N, 5000);
    forward(nat, reply, UPLINK_IF, POD_IF, 3);
    expect(tupleOf(reply).dst).toBe(S_N);
    expect(nat.conntrackFlush()).toBe(2);
    expect(nat.conntrackFlush()).toBe(0);
  });

  it("conntrack -D: by the original or the reply tuple, TCP/UDP/ICMP; false for nothing", () => {
    const nat = makeNat();
    forward(nat, udpPacket(C1, 5000, S, 53), POD_IF, UPLINK_IF, 1);
    forward(nat, udpPacket(C2, 5000, S, 53), POD_IF, UPLINK_IF, 1); // reply tuple remapped
    forward(nat, tcpPacket(C1, 40000, S, 80, { flags: TCP_SYN }), POD_IF, UPLINK_IF, 1);
    forward(nat, echoPacket(C1, S, 9, 1), POD_IF, UPLINK_IF, 1);
    const remapped = nat.conntrackEntries(1).find((e) => e.original.src === S_C2)?.reply.dport ?? 0;
    expect(remapped).not.toBe(5000);
    expect(nat.conntrackDelete(17, C1, 5000, S, 53, 2)).toBe(true); // original tuple
    expect(nat.conntrackDelete(17, C1, 5000, S, 53, 2)).toBe(false);
    expect(nat.conntrackDelete(17, S, 53, N, remapped, 2)).toBe(true); // reply tuple
    expect(nat.conntrackDelete(6, C1, 40000, S, 81, 2)).toBe(false);
    expect(nat.conntrackDelete(1, C1, 9, S, 9, 2)).toBe(true); // ICMP echo: the identifier twice
    expect(nat.conntrackEntries(2).map((e) => e.proto)).toEqual(["tcp"]);
    // The deleted TCP flow's next segment is INVALID (not a SYN) and passes untranslated.
    expect(nat.conntrackDelete(6, C1, 40000, S, 80, 2)).toBe(true);
    const ack = tcpPacket(C1, 40000, S, 80, { flags: TCP_ACK });
    forward(nat, ack, POD_IF, UPLINK_IF, 3);
    expect(tupleOf(ack).src).toBe(S_C1);
    expect(nat.counters()).toMatchObject({ invalid: 1, entries: 0 });
  });

  it("services: add, replace backends, empty (REJECT) and delete, existing connections keep their backend", () => {
    const nat = makeNat({ services: [] });
    const syn = (port: number): Buffer => tcpPacket(C1, port, VIP, 80, { flags: TCP_SYN });
    const a = syn(50000);
    forward(nat, a, POD_IF, POD_IF, 1);
    expect(tupleOf(a).dst).toBe(S_VIP); // no service yet
    nat.addService(web("roundrobin"));
    expect(() => nat.addService(web("random"))).toThrow(/service web already exists/);
    expect(() => nat.addService({ ...web("random"), name: "web2" })).toThrow(/10\.96\.0\.10:80\/6 is defined twice/);
    const b = syn(50001);
    forward(nat, b, POD_IF, POD_IF, 2);
    expect(tupleOf(b)).toMatchObject({ dst: S_B1, dport: 8080 });
    nat.setServiceBackends("web", [{ addr: B2, port: 9090 }]);
    expect(() => nat.setServiceBackends("nope", [])).toThrow(/no service nope/);
    const c = syn(50002);
    forward(nat, c, POD_IF, POD_IF, 3);
    expect(tupleOf(c)).toMatchObject({ dst: S_B2, dport: 9090 });
    // b's connection still goes to B1, and its reply still comes from the VIP.
    const bAck = tcpPacket(C1, 50001, VIP, 80, { flags: TCP_ACK });
    forward(nat, bAck, POD_IF, POD_IF, 4);
    expect(tupleOf(bAck)).toMatchObject({ dst: S_B1, dport: 8080 });
    nat.setServiceBackends("web", []);
    expect(pre(nat, syn(50003), POD_IF, 5)).toBe(NAT_REJECT);
    expect(nat.services(5)).toMatchObject([{ name: "web", backends: [], connections: [] }]);
    expect(nat.deleteService("web")).toBe(true);
    expect(nat.deleteService("web")).toBe(false);
    const d = syn(50004);
    forward(nat, d, POD_IF, POD_IF, 6);
    expect(tupleOf(d).dst).toBe(S_VIP);
    const cBack = tcpPacket(B2, 9090, C1, 50002, { flags: TCP_SYN | TCP_ACK });
    forward(nat, cBack, POD_IF, POD_IF, 7);
    expect(tupleOf(cBack)).toMatchObject({ src: S_VIP, sport: 80 });
    expectChecksumsGood(cBack);
    expect(nat.counters()).toMatchObject({ dnat: 2, rejected: 1, undnat: 1 });
  });

  it("masquerade rules: add and delete (by an equal rule); existing connections keep their translation", () => {
    const nat = makeNat({ snat: [] });
    const rule = { sources: [{ addr: ip("10.244.0.0"), prefixLen: 16 }], outIf: UPLINK_IF, toAddr: N };
    const a = udpPacket(C1, 6000, S, 53);
    forward(nat, a, POD_IF, UPLINK_IF, 1);
    expect(tupleOf(a).src).toBe(S_C1);
    nat.addSnatRule(rule);
    expect(() => nat.addSnatRule({ ...rule, toAddr: 0 })).toThrow(/toAddr must be a non-zero IPv4 address/);
    const b = udpPacket(C1, 6001, S, 53);
    forward(nat, b, POD_IF, UPLINK_IF, 2);
    expect(tupleOf(b).src).toBe(S_N);
    expect(nat.snatRules()).toEqual([rule]);
    expect(nat.deleteSnatRule({ ...rule, outIf: 2 })).toBe(false);
    // The same prefix written from another address in it is the same rule.
    expect(nat.deleteSnatRule({ ...rule, sources: [{ addr: ip("10.244.3.4"), prefixLen: 16 }] })).toBe(true);
    expect(nat.snatRules()).toEqual([]);
    const c = udpPacket(C1, 6002, S, 53);
    forward(nat, c, POD_IF, UPLINK_IF, 3);
    expect(tupleOf(c).src).toBe(S_C1);
    // b's flow: still masqueraded both ways.
    const b2 = udpPacket(C1, 6001, S, 53);
    forward(nat, b2, POD_IF, UPLINK_IF, 4);
    expect(tupleOf(b2).src).toBe(S_N);
    const back = udpPacket(S, 53, N, 6001);
    forward(nat, back, UPLINK_IF, POD_IF, 4);
    expect(tupleOf(back).dst).toBe(S_C1);
  });
});

/**
 * A run through every kind of rewrite: SNAT and un-SNAT of TCP/UDP/ICMP echo (kept
 * and remapped ports), DNAT and un-DNAT, hairpin, related errors (SNAT and DNAT,
 * whole and truncated quotes), and the router's own error fixed by localError.
 */
function translatedSamples(): Buffer[] {
  const out: Buffer[] = [];
  const keep = (p: Buffer): void => {
    out.push(Buffer.from(p));
  };
  const nat = makeNat({ services: [web("roundrobin"), DNS] });
  let now = 1;
  for (const P of PROTOS) {
    const a = P.out(C1, 33434);
    const b = P.out(C2, 33434);
    forward(nat, a, POD_IF, UPLINK_IF, ++now);
    forward(nat, b, POD_IF, UPLINK_IF, ++now);
    keep(a);
    keep(b);
    const rb = P.back(tupleOf(b).sport);
    forward(nat, rb, UPLINK_IF, POD_IF, ++now);
    keep(rb);
    for (const [from, type, code, quote] of [
      [R, 11, 0, b],
      [S, 3, 3, b],
      [R, 11, 0, b.subarray(0, 28)],
    ] as const) {
      const err = icmpError(from, N, type, code, quote);
      forward(nat, err, UPLINK_IF, POD_IF, ++now);
      keep(err);
    }
  }
  const syn = tcpPacket(C1, 41000, VIP, 80, { flags: TCP_SYN, data: 7 });
  forward(nat, syn, POD_IF, POD_IF, ++now);
  keep(syn);
  const synack = tcpPacket(B1, 8080, C1, 41000, { flags: TCP_SYN | TCP_ACK, data: 9 });
  forward(nat, synack, POD_IF, POD_IF, ++now);
  keep(synack);
  const err = icmpError(ip("10.244.1.254"), C1, 3, 1, syn);
  forward(nat, err, POD_IF, POD_IF, ++now);
  keep(err);
  const q = udpPacket(C2, 33000, VIP_DNS, 53, 41);
  forward(nat, q, POD_IF, POD_IF, ++now);
  keep(q);
  const hair = tcpPacket(B2, 45000, VIP, 80, { flags: TCP_SYN }); // round robin: B2 is next
  forward(nat, hair, POD_IF, POD_IF, ++now, POD_GW);
  expect(tupleOf(hair)).toMatchObject({ src: S_GW, dst: S_B2 });
  keep(hair);
  const hairBack = tcpPacket(B2, 8080, POD_GW, 45000, { flags: TCP_SYN | TCP_ACK });
  forward(nat, hairBack, POD_IF, POD_IF, ++now, POD_GW);
  keep(hairBack);
  const ttl1 = tcpPacket(C2, 41001, VIP, 80, { flags: TCP_SYN, ttl: 1 });
  pre(nat, ttl1, POD_IF, ++now);
  const e = Buffer.alloc(600);
  const n = emitIcmpError(e, 0, ttl1, 0, ttl1.length, 11, 0, 0, POD_GW, 5);
  localError(nat, e, n);
  keep(e.subarray(0, n));
  for (const p of out) expect(checksumFailures(p)).toEqual([]);
  return out;
}

describe("tshark agrees with every checksum of the translated packets", () => {
  it.skipIf(!hasTshark)("IP, TCP, UDP and ICMP checksums (outer and quoted) are good", () => {
    const samples = translatedSamples();
    expect(samples.length).toBe(25);
    const rows = tshark(samples, ["ip.proto", "ip.checksum.status", "tcp.checksum.status", "udp.checksum.status", "icmp.checksum.status"]);
    expect(rows).toHaveLength(samples.length);
    if (process.env.NAT_TSHARK_DUMP) console.log(rows.map((r) => r.join(" | ")).join("\n"));
    rows.forEach((r, i) => {
      const [proto, ipSt, tcpSt, udpSt, icmpSt] = r;
      const where = `frame ${i + 1}: ${r.join(" | ")}`;
      const first = (s: string | undefined): string => (s ?? "").split(",")[0];
      // Outer and quoted IPv4 headers.
      expect(
        ipSt.split(",").every((s) => s === "1"),
        where,
      ).toBe(true);
      const mine = first(proto) === "6" ? tcpSt : first(proto) === "17" ? udpSt : icmpSt;
      expect(first(mine), where).toBe("1");
      for (const st of [tcpSt, udpSt, icmpSt]) expect((st ?? "").split(",").includes("0"), where).toBe(false);
    });
  });
});

describe("conntrack listing (show conntrack)", () => {
  function drain<T, R>(g: Generator<T | null, R, void>, between?: () => void): { rows: T[]; ret: R } {
    const rows: T[] = [];
    for (;;) {
      const r = g.next();
      if (r.done === true) return { rows, ret: r.value };
      if (r.value !== null) rows.push(r.value);
      between?.();
    }
  }

  function sample(): Nat {
    const nat = makeNat();
    forward(nat, tcpPacket(C1, 40000, S, 80, { flags: TCP_SYN }), POD_IF, UPLINK_IF, 0);
    forward(nat, tcpPacket(S, 80, N, 40000, { flags: TCP_SYN | TCP_ACK }), UPLINK_IF, POD_IF, 1);
    forward(nat, tcpPacket(C1, 40000, S, 80, { flags: TCP_ACK }), POD_IF, UPLINK_IF, 2);
    forward(nat, tcpPacket(C2, 40001, S, 443, { flags: TCP_SYN }), POD_IF, UPLINK_IF, 3);
    forward(nat, tcpPacket(C1, 40002, VIP, 80, { flags: TCP_SYN }), POD_IF, POD_IF, 3);
    forward(nat, udpPacket(C1, 5353, S, 53), POD_IF, UPLINK_IF, 4);
    forward(nat, echoPacket(C2, S, 77, 1), POD_IF, UPLINK_IF, 5);
    return nat;
  }

  const list = (nat: Nat, raw: Record<string, unknown>): string[] =>
    drain(nat.conntrackWalk(parseConntrackQuery(raw), () => 10))
      .rows.map((j) => JSON.parse(j) as ConnEntryView)
      .map((e) => `${e.proto} ${e.original.src}:${e.original.sport ?? e.original.id}>${e.original.dst}`)
      .sort();

  it("rows are the JSON of the entries' views, byte for byte", () => {
    const nat = sample();
    forward(nat, udpPacket(S, 53, N, 5353), UPLINK_IF, POD_IF, 6); // an answered (ASSURED) UDP flow
    const rows = drain(nat.conntrackWalk(parseConntrackQuery({}), () => 7.5)).rows;
    const views = nat.conntrackEntries(7.5);
    expect(rows).toEqual(views.map((v) => JSON.stringify(v)));
    expect(new Set(views.map((v) => v.flags.join(",")))).toEqual(new Set(["ASSURED,SNAT", "UNREPLIED,SNAT", "UNREPLIED,DNAT", "ASSURED,SNAT"]));
  });

  it("filters like conntrack -L on the original tuple; --limit, --count", () => {
    const nat = sample();
    expect(list(nat, {})).toHaveLength(5);
    expect(list(nat, { proto: "tcp" })).toEqual([`tcp ${S_C1}:40000>${S_S}`, `tcp ${S_C1}:40002>${S_VIP}`, `tcp ${S_C2}:40001>${S_S}`]);
    expect(list(nat, { proto: "udp" })).toEqual([`udp ${S_C1}:5353>${S_S}`]);
    expect(list(nat, { proto: "icmp" })).toEqual([`icmp ${S_C2}:77>${S_S}`]);
    expect(list(nat, { src: S_C2 })).toEqual([`icmp ${S_C2}:77>${S_S}`, `tcp ${S_C2}:40001>${S_S}`]);
    expect(list(nat, { src: "10.244.1.0/24", dst: S_VIP })).toEqual([`tcp ${S_C1}:40002>${S_VIP}`]);
    expect(list(nat, { dst: "198.51.100.0/24", dport: 80 })).toEqual([`tcp ${S_C1}:40000>${S_S}`]);
    expect(list(nat, { sport: "5353" })).toEqual([`udp ${S_C1}:5353>${S_S}`]);
    expect(list(nat, { state: "established" })).toEqual([`tcp ${S_C1}:40000>${S_S}`]);
    expect(list(nat, { state: "SYN_SENT", dport: 443 })).toEqual([`tcp ${S_C2}:40001>${S_S}`]);
    expect(list(nat, { dst: "192.0.2.77" })).toEqual([]);
    expect(list(nat, { limit: 2 })).toHaveLength(2);
    const c = drain(nat.conntrackWalk(parseConntrackQuery({ proto: "tcp", count: true }), () => 10));
    expect(c.rows).toEqual([]);
    expect(c.ret).toEqual({ matched: 3 });
  });

  it("rejects bad filters with the option and what it takes", () => {
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ proto: "sctp" }, /--proto: 'sctp' is not one of tcp, udp, icmp/],
      [{ src: "10.0.0" }, /--src: not an IPv4 address "10\.0\.0"/],
      [{ dst: "10.0.0.0/33" }, /--dst: .*prefix length must be an integer 0-32/],
      [{ sport: "70000" }, /--sport: '70000' is not a port number \(0-65535\)/],
      [{ dport: "http" }, /--dport: 'http' is not a port number/],
      [{ proto: "icmp", dport: "80" }, /ICMP has no ports/],
      [{ state: "OPEN" }, /--state: 'OPEN' is not a TCP state \(SYN_SENT, SYN_RECV, ESTABLISHED/],
      [{ state: "ESTABLISHED", proto: "udp" }, /--state: states are TCP's/],
      [{ limit: "0" }, /--limit: '0' is not a positive integer/],
      [{ limit: "-3" }, /--limit: '-3' is not a positive integer/],
      [{ count: "yes" }, /--count: expected true or false/],
      [{ src: { a: 1 } }, /--src: expected a string/],
    ];
    for (const [raw, re] of bad) expect(() => parseConntrackQuery(raw), JSON.stringify(raw)).toThrow(re);
  });

  it("a listing interleaved with new, removed and evicted entries lists every entry that lives throughout exactly once", () => {
    const ct = new ConnTrack({ maxEntries: 2500, seed: 5 });
    const r = prng(3);
    let next = 0;
    const add = (assured: boolean): number => {
      const e = ct.alloc(17, 0);
      if (e < 0) return -1;
      const id = next++;
      ct.setTuple(e, 0, 0x0a000000 + id, id & 0xffff, 0x08080808, 53);
      ct.setTuple(e, 1, 0x08080808, 53, 0x0a000000 + id, id & 0xffff);
      ct.confirm(e);
      if (assured) ct.track(e, 1, 0, 40, 0);
      return e;
    };
    // 400 stable (answered) flows, 400 that come and go; more come than go, so the
    // table grows past its first capacity (1024) during the listing, then fills and
    // evicts churning entries.
    const stable = new Set<number>();
    for (let i = 0; i < 400; i++) {
      stable.add(0x0a000000 + next);
      add(true);
    }
    const churn: number[] = [];
    for (let i = 0; i < 400; i++) churn.push(add(false));
    const listed: number[] = [];
    const g = walkConntrack(ct, parseConntrackQuery({}), () => 1);
    for (;;) {
      const x = g.next();
      if (x.done === true) break;
      if (x.value !== null) listed.push(ip((JSON.parse(x.value) as ConnEntryView).original.src));
      // Between steps: remove some churning entries, add new ones (growth, slot reuse, eviction).
      for (let k = 0; k < 5; k++) {
        if (churn.length > 0 && r() < 0.35) {
          const i = Math.floor(r() * churn.length);
          ct.remove(churn[i]);
          churn.splice(i, 1);
        } else {
          const e = add(false);
          if (e >= 0) churn.push(e);
        }
      }
    }
    expect(ct.earlyDrops).toBeGreaterThan(0); // it filled up (and grew on the way)
    const counts = new Map<number, number>();
    for (const a of listed) counts.set(a, (counts.get(a) ?? 0) + 1);
    for (const a of stable) expect(counts.get(a >>> 0), `stable ${a}`).toBe(1);
    for (const [a, n] of counts) expect(n, `listed twice: ${a}`).toBe(1);
  });
});
