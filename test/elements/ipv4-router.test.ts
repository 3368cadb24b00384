/**
 * Ipv4Router element tests: the node's graph (switch + internal ports + router) over
 * MemoryPorts, frames built with src/wire emitters, every output parsed and compared
 * byte for byte. Time is driven explicitly: router.tick(now) runs inside an engine
 * pass with a `now` chosen by the test.
 */
import { describe, expect, it } from "vitest";
import { emitTcp, ipv4Check, TCP_ACK, TCP_PSH, TCP_RST, TCP_SYN, tcpChecksumValid, tcpFillChecksum } from "../../src/wire/index.js";
import { ROUTER_COUNTERS, type RouterCounter } from "../../src/elements/router/ipv4-router.js";
import {
  ARP_OPER_REPLY,
  ARP_OPER_REQUEST,
  CHECK_OK,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  IP_PROTO_ICMP,
  IP_PROTO_TCP,
  IP_PROTO_UDP,
  emitIpv4,
  icmpCheck,
  ipv4ChecksumValid,
  ipv4FillChecksum,
} from "../../src/wire/index.js";
import {
  BCAST,
  ETH1_IP,
  ETH1_MAC,
  ETH2_IP,
  ETH2_MAC,
  H1,
  H2,
  arpFrame,
  arpReplyFrame,
  arpRequestFrame,
  buildRig,
  counterDelta,
  describeAll,
  echoRequest,
  ethFrame,
  icmpMessage,
  ip,
  ipFrame,
  ipPacket,
  parseFrame,
  prng,
  routedRig,
  type Rig,
} from "./router-rig.js";

// -----------------------------------------------------------------------------
// Expected frames

/** The frame a router puts on the wire for `pkt` forwarded one hop: TTL - 1, fresh checksum. */
function forwardedFrame(pkt: Buffer, dstMac: number, srcMac: number): Buffer {
  const b = Buffer.from(pkt);
  b[8] -= 1;
  ipv4FillChecksum(b, 0);
  return ipFrame(dstMac, srcMac, b);
}

/** An ICMP error as the router builds it: TOS 0xc0, TTL 64, DF clear, `quote` after the header. */
function icmpErrorFrame(o: {
  dstMac: number;
  srcMac: number;
  src: number;
  dst: number;
  type: number;
  code: number;
  rest?: number;
  quote: Buffer;
  ident: number;
}): Buffer {
  const msg = icmpMessage({ type: o.type, code: o.code, rest: o.rest ?? 0 }, o.quote);
  const pkt = ipPacket({ src: o.src, dst: o.dst, ttl: 64, protocol: IP_PROTO_ICMP, dscp: 0x30, ident: o.ident, payload: msg });
  return ipFrame(o.dstMac, o.srcMac, pkt);
}

function arpRequestOut(srcMac: number, spa: number, tpa: number, ethDst = BCAST): Buffer {
  return arpFrame({ ethDst, ethSrc: srcMac, oper: ARP_OPER_REQUEST, sha: srcMac, spa, tha: 0, tpa });
}

/** The host behind `port` ARPs for its gateway (so the router learns it); returns the reply. */
function hostArps(r: Rig, port: string, host: { mac: number; ip: number }, gw: number): Buffer {
  r.ports[port].inject([arpRequestFrame(host.mac, host.ip, gw)]);
  const out = r.drain();
  expect(out[port]).toHaveLength(1);
  return out[port][0];
}

const ZERO = Object.fromEntries(ROUTER_COUNTERS.names.map((k) => [k, 0])) as Record<RouterCounter, number>;

function expectNoInternalErrors(r: Rig): void {
  expect(r.engine.lastError).toBe("");
  expect(r.engine.internalErrors).toBe(0);
  expect(r.engine.roundsExceeded).toBe(0);
}

// -----------------------------------------------------------------------------

describe("Ipv4Router: ARP", () => {
  it("answers a request for the ingress interface's address out of that port only, and learns the sender STALE", () => {
    const r = routedRig();
    r.ports.h1.inject([arpRequestFrame(H1.mac, H1.ip, ETH1_IP)]);
    const out = r.drain();
    expect(out.h2).toEqual([]);
    expect(out.h1).toHaveLength(1);
    const reply = out.h1[0];
    expect(reply).toEqual(arpFrame({ ethDst: H1.mac, ethSrc: ETH1_MAC, oper: ARP_OPER_REPLY, sha: ETH1_MAC, spa: ETH1_IP, tha: H1.mac, tpa: H1.ip }));
    const p = parseFrame(reply);
    expect(p.eth).toEqual({ dstAddr: H1.mac, srcAddr: ETH1_MAC, etherType: ETHERTYPE_ARP });
    expect(p.arp).toEqual({ oper: ARP_OPER_REPLY, sha: ETH1_MAC, spa: ETH1_IP, tha: H1.mac, tpa: H1.ip });
    expect(r.router.neighbours(performance.now())).toEqual([
      expect.objectContaining({ address: "10.0.1.10", dev: "eth1", mac: "02:aa:00:00:01:0a", state: "STALE", queued: 0 }),
    ]);
    expect(counterDelta(ZERO, r.counters())).toEqual({ arpIn: 1, arpRepliesSent: 1 });
    expectNoInternalErrors(r);
  });

  it("answers on h1 for eth2's address too, with eth1's MAC (Linux's arp_ignore=0: addresses belong to the host)", () => {
    const r = routedRig();
    r.ports.h1.inject([arpRequestFrame(H1.mac, H1.ip, ETH2_IP)]);
    const out = r.drain();
    expect(out.h2).toEqual([]);
    expect(out.h1).toEqual([arpFrame({ ethDst: H1.mac, ethSrc: ETH1_MAC, oper: ARP_OPER_REPLY, sha: ETH1_MAC, spa: ETH2_IP, tha: H1.mac, tpa: H1.ip })]);
    expect(r.counters().arpIn).toBe(1);
    expect(r.counters().arpRepliesSent).toBe(1);
    // A request for one of its addresses: the sender will talk to it, so an entry is made.
    expect(r.router.neighbours(performance.now())).toEqual([expect.objectContaining({ address: "10.0.1.10", dev: "eth1", state: "STALE" })]);
  });

  it("with proxyArp on eth1 answers for addresses routed via eth2 with eth1's MAC, not for eth1's own subnet", () => {
    const r = routedRig({ proxyArp1: true });
    const target = ip("10.0.2.50");
    r.ports.h1.inject([arpRequestFrame(H1.mac, H1.ip, target)]);
    let out = r.drain();
    expect(out.h2).toEqual([]);
    expect(out.h1).toEqual([arpFrame({ ethDst: H1.mac, ethSrc: ETH1_MAC, oper: ARP_OPER_REPLY, sha: ETH1_MAC, spa: target, tha: H1.mac, tpa: H1.ip })]);
    // Inside eth1's own subnet the real host answers, not the router.
    r.ports.h1.inject([arpRequestFrame(H1.mac, H1.ip, ip("10.0.1.77"))]);
    out = r.drain();
    expect(out.h1).toEqual([]);
    expect(out.h2).toEqual([]);
    // Nowhere to route it: no answer either.
    r.ports.h1.inject([arpRequestFrame(H1.mac, H1.ip, ip("10.99.0.1"))]);
    out = r.drain();
    expect(out.h1).toEqual([]);
    // A gratuitous ARP (spa == tpa) is never proxied.
    r.ports.h1.inject([arpRequestFrame(H1.mac, target, target)]);
    expect(r.drain().h1).toEqual([]);
    expect(r.counters().arpRepliesSent).toBe(1);
    expect(r.counters().arpIn).toBe(4);
  });

  it("an unsolicited reply addressed to the router creates no entry (Linux, arp_accept=0) and is not answered", () => {
    const r = routedRig();
    r.ports.h2.inject([arpReplyFrame(H2.mac, H2.ip, ETH2_MAC, ETH2_IP)]);
    expect(r.drain()).toEqual({ h1: [], h2: [] });
    expect(r.router.neighbours(performance.now())).toEqual([]);
    expect(r.counters().arpRepliesSent).toBe(0);
    // A request for the router's address does create one (its sender is about to talk to us).
    r.ports.h2.inject([arpRequestFrame(H2.mac, H2.ip, ETH2_IP)]);
    expect(r.drain().h2).toHaveLength(1);
    expect(r.router.neighbours(performance.now())).toEqual([
      expect.objectContaining({ address: "10.0.2.10", dev: "eth2", state: "STALE", mac: "02:bb:00:00:02:0a" }),
    ]);
    // Now a reply to the router confirms it.
    r.ports.h2.inject([arpReplyFrame(H2.mac, H2.ip, ETH2_MAC, ETH2_IP)]);
    expect(r.router.neighbours(performance.now())).toEqual([expect.objectContaining({ address: "10.0.2.10", dev: "eth2", state: "REACHABLE" })]);
  });

  it("announce() sends one gratuitous request per address (spa == tpa) out of each interface's ports", () => {
    const SECOND = ip("192.168.50.1");
    const r = buildRig({
      devices: [
        { name: "h1", vlan: 4094 },
        { name: "h2", vlan: 4093 },
      ],
      ifaces: [
        { name: "eth1", mac: ETH1_MAC, addrs: ["10.0.1.1/24", "192.168.50.1/24"], vlan: 4094 },
        { name: "eth2", mac: ETH2_MAC, addrs: ["10.0.2.1/24"], vlan: 4093 },
      ],
    });
    r.engine.runPass(() => r.router.announce());
    const out = r.drain();
    expect(out.h1).toEqual([arpRequestOut(ETH1_MAC, ETH1_IP, ETH1_IP), arpRequestOut(ETH1_MAC, SECOND, SECOND)]);
    expect(out.h2).toEqual([arpRequestOut(ETH2_MAC, ETH2_IP, ETH2_IP)]);
    for (const f of [...out.h1, ...out.h2]) {
      const a = parseFrame(f).arp;
      expect(a).not.toBeNull();
      expect(a?.spa).toBe(a?.tpa);
      expect(a?.tha).toBe(0);
    }
    expect(r.counters().arpRequestsSent).toBe(3);
    expectNoInternalErrors(r);
  });
});

describe("Ipv4Router: local delivery", () => {
  it("answers an echo request to 10.0.1.1 with a valid echo reply out of h1", () => {
    const r = routedRig();
    hostArps(r, "h1", H1, ETH1_IP);
    const data = Buffer.from("0123456789abcdefghijklmnopqrstuvwxyz!");
    const req = echoRequest({ src: H1.ip, dst: ETH1_IP, ttl: 57, id: 0x77, seq: 9, ident: 0x3344, data });
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, req)]);
    const out = r.drain();
    expect(out.h2).toEqual([]);
    expect(out.h1).toHaveLength(1);
    const f = out.h1[0];
    expect(f.length).toBe(14 + req.length);
    expect(ipv4ChecksumValid(f, 14)).toBe(true);
    expect(icmpCheck(f, 34, req.length - 20, true)).toBe(CHECK_OK);
    const p = parseFrame(f);
    expect(p.eth).toEqual({ dstAddr: H1.mac, srcAddr: ETH1_MAC, etherType: ETHERTYPE_IPV4 });
    expect(p.ip).toMatchObject({ ttl: 64, srcAddr: ETH1_IP, dstAddr: H1.ip, protocol: IP_PROTO_ICMP, totalLen: req.length });
    expect(p.icmp).toEqual({ type: 0, code: 0, rest: ((0x77 << 16) | 9) >>> 0 });
    expect(p.icmpData).toEqual(data);
    // Byte for byte: identification kept (as Linux does), everything else a fresh reply.
    const expected = ipPacket({
      src: ETH1_IP,
      dst: H1.ip,
      ttl: 64,
      protocol: IP_PROTO_ICMP,
      ident: 0x3344,
      payload: icmpMessage({ type: 0, code: 0, rest: ((0x77 << 16) | 9) >>> 0 }, data),
    });
    expect(f).toEqual(ipFrame(H1.mac, ETH1_MAC, expected));
    expect(r.counters().echoReplies).toBe(1);
    expect(r.counters().delivered).toBe(1);
  });

  it("answers a ping to eth2's address arriving on h1 from 10.0.2.1, out of h1", () => {
    const r = routedRig();
    hostArps(r, "h1", H1, ETH1_IP);
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, echoRequest({ src: H1.ip, dst: ETH2_IP }))]);
    const out = r.drain();
    expect(out.h2).toEqual([]);
    expect(out.h1).toHaveLength(1);
    expect(parseFrame(out.h1[0]).ip).toMatchObject({ srcAddr: ETH2_IP, dstAddr: H1.ip });
    expect(parseFrame(out.h1[0]).icmp?.type).toBe(0);
  });

  it("UDP to the router gets port unreachable, an unknown protocol protocol unreachable, TCP is dropped", () => {
    const r = routedRig();
    hostArps(r, "h1", H1, ETH1_IP);
    const udp = ipPacket({ src: H1.ip, dst: ETH1_IP, protocol: IP_PROTO_UDP, ident: 1 });
    const gre = ipPacket({ src: H1.ip, dst: ETH1_IP, protocol: 47, ident: 2 });
    const tcp = ipPacket({ src: H1.ip, dst: ETH1_IP, protocol: IP_PROTO_TCP, ident: 3 });
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, udp)]);
    let out = r.drain();
    expect(out.h1).toHaveLength(1);
    const ident1 = parseFrame(out.h1[0]).ip?.ident ?? -1;
    expect(out.h1[0]).toEqual(icmpErrorFrame({ dstMac: H1.mac, srcMac: ETH1_MAC, src: ETH1_IP, dst: H1.ip, type: 3, code: 3, quote: udp, ident: ident1 }));
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, gre)]);
    out = r.drain();
    expect(out.h1).toHaveLength(1);
    const ident2 = parseFrame(out.h1[0]).ip?.ident ?? -1;
    expect(out.h1[0]).toEqual(icmpErrorFrame({ dstMac: H1.mac, srcMac: ETH1_MAC, src: ETH1_IP, dst: H1.ip, type: 3, code: 2, quote: gre, ident: ident2 }));
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, tcp)]);
    expect(r.drain()).toEqual({ h1: [], h2: [] });
    expect(r.counters().portUnreachable).toBe(1);
    expect(r.counters().protoUnreachable).toBe(1);
    expect(r.counters().localDropped).toBe(1);
    expect(r.counters().delivered).toBe(3);
  });

  it("ignores an echo request sent to the router as a link-layer broadcast", () => {
    const r = routedRig();
    hostArps(r, "h1", H1, ETH1_IP);
    r.ports.h1.inject([ipFrame(BCAST, H1.mac, echoRequest({ src: H1.ip, dst: ETH1_IP }))]);
    expect(r.drain()).toEqual({ h1: [], h2: [] });
    expect(r.counters().localDropped).toBe(1);
    expect(r.counters().echoReplies).toBe(0);
  });
});

describe("Ipv4Router: forwarding", () => {
  it("resolves the next hop with ARP, queues the first packet, releases it on the reply, then goes straight", () => {
    const r = routedRig();
    const pkt1 = ipPacket({ src: H1.ip, dst: H2.ip, ttl: 64, ident: 0x0101, payload: Buffer.alloc(100, 0x11) });
    // Padded like a short frame from a NIC: the padding must not travel.
    const short = ipPacket({ src: H1.ip, dst: H2.ip, ttl: 30, ident: 0x0202, payload: Buffer.from("hi") });
    const padded = Buffer.concat([ipFrame(ETH1_MAC, H1.mac, short), Buffer.alloc(60 - 14 - short.length, 0xee)]);
    expect(padded.length).toBe(60);

    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, pkt1)]);
    let out = r.drain();
    expect(out.h1).toEqual([]);
    expect(out.h2).toEqual([arpRequestOut(ETH2_MAC, ETH2_IP, H2.ip)]);
    const arp = parseFrame(out.h2[0]);
    expect(arp.eth.dstAddr).toBe(BCAST);
    expect(arp.arp).toEqual({ oper: ARP_OPER_REQUEST, sha: ETH2_MAC, spa: ETH2_IP, tha: 0, tpa: H2.ip });
    expect(r.router.neighbours(performance.now())).toEqual([
      expect.objectContaining({ address: "10.0.2.10", dev: "eth2", mac: null, state: "INCOMPLETE", queued: 1, probes: 1 }),
    ]);

    r.ports.h2.inject([arpReplyFrame(H2.mac, H2.ip, ETH2_MAC, ETH2_IP)]);
    out = r.drain();
    expect(out.h1).toEqual([]);
    expect(out.h2).toHaveLength(1);
    const f = out.h2[0];
    expect(f).toEqual(forwardedFrame(pkt1, H2.mac, ETH2_MAC));
    const p = parseFrame(f);
    expect(p.eth).toEqual({ dstAddr: H2.mac, srcAddr: ETH2_MAC, etherType: ETHERTYPE_IPV4 });
    expect(p.ip?.ttl).toBe(63);
    expect(ipv4ChecksumValid(f, 14)).toBe(true);
    expect(r.router.neighbours(performance.now())).toEqual([
      expect.objectContaining({ address: "10.0.2.10", mac: "02:bb:00:00:02:0a", state: "REACHABLE", queued: 0 }),
    ]);

    const pkt2 = ipPacket({ src: H1.ip, dst: H2.ip, ttl: 2, ident: 0x0102, payload: Buffer.alloc(33, 0x22) });
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, pkt2), padded]);
    out = r.drain();
    expect(out.h1).toEqual([]);
    expect(out.h2).toEqual([forwardedFrame(pkt2, H2.mac, ETH2_MAC), forwardedFrame(short, H2.mac, ETH2_MAC)]);
    expect(counterDelta(ZERO, r.counters())).toEqual({ forwarded: 3, arpRequestsSent: 1, arpIn: 1 });
    expectNoInternalErrors(r);
  });

  it("TTL 1 and TTL 0 get time exceeded from 10.0.1.1 out of h1, quoting the original; nothing out of h2", () => {
    const r = routedRig();
    hostArps(r, "h1", H1, ETH1_IP);
    // A resolved next hop, so that anything forwarded would show at once.
    hostArps(r, "h2", H2, ETH2_IP);
    for (const ttl of [1, 0]) {
      const pkt = ipPacket({ src: H1.ip, dst: H2.ip, ttl, ident: 0x5500 + ttl, payload: Buffer.alloc(40, 0x33) });
      r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, pkt)]);
      const out = r.drain();
      expect(out.h2).toEqual([]);
      expect(out.h1).toHaveLength(1);
      const f = out.h1[0];
      const p = parseFrame(f);
      expect(p.ip).toMatchObject({ srcAddr: ETH1_IP, dstAddr: H1.ip, ttl: 64, protocol: IP_PROTO_ICMP, df: false });
      expect(p.icmp).toEqual({ type: 11, code: 0, rest: 0 });
      expect(ipv4ChecksumValid(f, 14)).toBe(true);
      // The quote is the datagram as it arrived: TTL and checksum untouched.
      expect(p.icmpData).toEqual(pkt);
      expect(f).toEqual(
        icmpErrorFrame({ dstMac: H1.mac, srcMac: ETH1_MAC, src: ETH1_IP, dst: H1.ip, type: 11, code: 0, quote: pkt, ident: p.ip?.ident ?? -1 }),
      );
    }
    expect(r.counters().ttlExpired).toBe(2);
    expect(r.counters().icmpErrors).toBe(2);
    expect(r.counters().forwarded).toBe(0);
  });

  it("no route gets net unreachable; with a default route via a neighbour on eth2 the same packet is forwarded", () => {
    const r = routedRig();
    hostArps(r, "h1", H1, ETH1_IP);
    const pkt = ipPacket({ src: H1.ip, dst: ip("10.99.0.1"), ident: 0x0909, payload: Buffer.alloc(64, 0x44) });
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, pkt)]);
    let out = r.drain();
    expect(out.h2).toEqual([]);
    expect(out.h1).toHaveLength(1);
    const p = parseFrame(out.h1[0]);
    expect(p.icmp).toEqual({ type: 3, code: 0, rest: 0 });
    expect(out.h1[0]).toEqual(
      icmpErrorFrame({ dstMac: H1.mac, srcMac: ETH1_MAC, src: ETH1_IP, dst: H1.ip, type: 3, code: 0, quote: pkt, ident: p.ip?.ident ?? -1 }),
    );
    expect(r.counters().noRoute).toBe(1);

    const GW = { mac: 0x02cc000002fe, ip: ip("10.0.2.254") };
    r.router.addRoute({ prefix: 0, prefixLen: 0, gateway: GW.ip, ifIndex: r.router.connectedIf(GW.ip) });
    expect(r.router.routes()).toContainEqual({ prefix: "0.0.0.0/0", via: "10.0.2.254", dev: "eth2", kind: "static", src: null });
    hostArps(r, "h2", GW, ETH2_IP);
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, pkt)]);
    out = r.drain();
    expect(out.h1).toEqual([]);
    expect(out.h2).toEqual([forwardedFrame(pkt, GW.mac, ETH2_MAC)]);
    expect(r.counters().noRoute).toBe(1);
    expect(r.counters().forwarded).toBe(1);
  });

  it("a packet over eth2's MTU with DF set gets frag-needed carrying next-hop MTU 1400", () => {
    const r = routedRig({ eth2Mtu: 1400 });
    hostArps(r, "h1", H1, ETH1_IP);
    hostArps(r, "h2", H2, ETH2_IP);
    const pkt = ipPacket({ src: H1.ip, dst: H2.ip, df: true, ident: 0x0d0d, payload: patterned(1460) });
    expect(pkt.length).toBe(1480);
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, pkt)]);
    const out = r.drain();
    expect(out.h2).toEqual([]);
    expect(out.h1).toHaveLength(1);
    const f = out.h1[0];
    const p = parseFrame(f);
    expect(p.icmp).toEqual({ type: 3, code: 4, rest: 1400 });
    expect(f.readUInt16BE(14 + 20 + 6)).toBe(1400); // next-hop MTU field (RFC 1191)
    // RFC 1812 §4.3.2.3: the error is at most 576 bytes, the quote cut to fit.
    expect(p.ip?.totalLen).toBe(576);
    expect(p.icmpData).toEqual(pkt.subarray(0, 576 - 28));
    expect(f).toEqual(
      icmpErrorFrame({
        dstMac: H1.mac,
        srcMac: ETH1_MAC,
        src: ETH1_IP,
        dst: H1.ip,
        type: 3,
        code: 4,
        rest: 1400,
        quote: pkt.subarray(0, 548),
        ident: p.ip?.ident ?? -1,
      }),
    );
    expect(r.counters().fragNeeded).toBe(1);
    expect(r.counters().forwarded).toBe(0);
  });

  it("a packet over eth2's MTU with DF clear is fragmented out of h2 and reassembles to the original", () => {
    const r = routedRig({ eth2Mtu: 1400 });
    hostArps(r, "h2", H2, ETH2_IP);
    const payload = patterned(1460);
    const pkt = ipPacket({ src: H1.ip, dst: H2.ip, ttl: 20, ident: 0xabcd, payload });
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, pkt)]);
    const out = r.drain();
    expect(out.h1).toEqual([]);
    const frags = checkFragments(out.h2, pkt, 1400, H2.mac, ETH2_MAC);
    expect(frags.map((x) => [x.offset, x.mf, x.len])).toEqual([
      [0, true, 1396],
      [1376 / 8, false, 104],
    ]);
    expect(counterDelta(ZERO, r.counters())).toEqual({
      forwarded: 1,
      fragmented: 1,
      fragmentsOut: 2,
      arpIn: 1,
      arpRepliesSent: 1,
    });
  });

  it("fragments into several pieces on a small MTU, every one but the last with MF and 8-byte-aligned data", () => {
    const r = routedRig({ eth2Mtu: 576 });
    hostArps(r, "h2", H2, ETH2_IP);
    const pkt = ipPacket({ src: H1.ip, dst: H2.ip, ident: 0x7777, payload: patterned(1480 - 20) });
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, pkt)]);
    const frags = checkFragments(r.drain().h2, pkt, 576, H2.mac, ETH2_MAC);
    expect(frags.map((x) => [x.offset, x.mf, x.len])).toEqual([
      [0, true, 572],
      [69, true, 572],
      [138, false, 20 + 1460 - 2 * 552],
    ]);
    expect(r.counters().fragmentsOut).toBe(3);
  });

  it("fragments of a packet to an unresolved next hop wait for ARP together and leave in order", () => {
    const r = routedRig({ eth2Mtu: 1000 });
    const pkt = ipPacket({ src: H1.ip, dst: H2.ip, ident: 0xf00d, payload: patterned(1400) });
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, pkt)]);
    expect(r.drain().h2).toEqual([arpRequestOut(ETH2_MAC, ETH2_IP, H2.ip)]);
    expect(r.router.neighbours(performance.now())).toEqual([expect.objectContaining({ address: "10.0.2.10", queued: 2 })]);
    r.ports.h2.inject([arpReplyFrame(H2.mac, H2.ip, ETH2_MAC, ETH2_IP)]);
    const frags = checkFragments(r.drain().h2, pkt, 1000, H2.mac, ETH2_MAC);
    expect(frags.map((x) => x.offset)).toEqual([0, 122]);
    expect(r.counters().arpRequestsSent).toBe(1);
  });

  it("an ICMP error to a host the router has not resolved waits for ARP, then goes out", () => {
    const r = routedRig();
    const pkt = ipPacket({ src: H1.ip, dst: H2.ip, ttl: 1, ident: 0x0e0e });
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, pkt)]);
    expect(r.drain()).toEqual({ h1: [arpRequestOut(ETH1_MAC, ETH1_IP, H1.ip)], h2: [] });
    r.ports.h1.inject([arpReplyFrame(H1.mac, H1.ip, ETH1_MAC, ETH1_IP)]);
    const out = r.drain();
    expect(out.h2).toEqual([]);
    expect(out.h1).toHaveLength(1);
    const p = parseFrame(out.h1[0]);
    expect(out.h1[0]).toEqual(
      icmpErrorFrame({ dstMac: H1.mac, srcMac: ETH1_MAC, src: ETH1_IP, dst: H1.ip, type: 11, code: 0, quote: pkt, ident: p.ip?.ident ?? -1 }),
    );
  });

  it("static neighbours: forwarded with no ARP at all, PERMANENT, and surviving a tick far in the future", () => {
    const r = routedRig();
    const S = { mac: 0x02dd00000214, ip: ip("10.0.2.20") };
    r.router.addStaticNeighbour(1, S.ip, S.mac);
    const pkt = ipPacket({ src: H1.ip, dst: S.ip, ident: 0x0a0a });
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, pkt)]);
    let out = r.drain();
    expect(out.h1).toEqual([]);
    expect(out.h2).toEqual([forwardedFrame(pkt, S.mac, ETH2_MAC)]);
    expect(r.counters().arpRequestsSent).toBe(0);
    const entry = { address: "10.0.2.20", dev: "eth2", mac: "02:dd:00:00:02:14", state: "PERMANENT", age: null, queued: 0, probes: 0 };
    expect(r.router.neighbours(performance.now())).toEqual([entry]);
    const far = performance.now() + 1e10;
    r.tick(far);
    r.tick(far + 1e6);
    expect(r.drain()).toEqual({ h1: [], h2: [] });
    expect(r.router.neighbours(far)).toEqual([entry]);
    // An ARP packet from the address cannot change a static entry either.
    r.ports.h2.inject([arpRequestFrame(0x02ee00000001, S.ip, ETH2_IP)]);
    r.drain();
    expect(r.router.neighbours(performance.now())).toEqual([entry]);
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, pkt)]);
    out = r.drain();
    expect(out.h2).toEqual([forwardedFrame(pkt, S.mac, ETH2_MAC)]);
    expect(r.counters().arpRequestsSent).toBe(0);
  });

  it("bounds the packets waiting for ARP per neighbour and releases them in order on the reply", () => {
    const r = routedRig({ neighbour: { queuePerEntry: 4 } });
    const pkts = Array.from({ length: 6 }, (_, i) => ipPacket({ src: H1.ip, dst: H2.ip, ident: 0x100 + i }));
    r.ports.h1.inject(pkts.map((p) => ipFrame(ETH1_MAC, H1.mac, p)));
    let out = r.drain();
    expect(out.h2).toEqual([arpRequestOut(ETH2_MAC, ETH2_IP, H2.ip)]);
    expect(r.counters().arpQueueFull).toBe(2);
    r.ports.h2.inject([arpReplyFrame(H2.mac, H2.ip, ETH2_MAC, ETH2_IP)]);
    out = r.drain();
    expect(out.h2).toEqual(pkts.slice(0, 4).map((p) => forwardedFrame(p, H2.mac, ETH2_MAC)));
  });
});

describe("Ipv4Router: neighbour timers", () => {
  it("ARP failure: 3 requests one second apart, then host unreachable for the queued packet, and the entry goes", () => {
    const r = routedRig();
    hostArps(r, "h1", H1, ETH1_IP);
    const DEAD = ip("10.0.2.99");
    const pkt = ipPacket({ src: H1.ip, dst: DEAD, ttl: 64, ident: 0x9999, payload: Buffer.alloc(50, 0x55) });
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, pkt)]);
    const t0 = Math.ceil(performance.now()); // integral: t0 + a + b === t0 + (a + b) exactly
    const requests: Buffer[] = [];
    let out = r.drain();
    expect(out.h1).toEqual([]);
    requests.push(...out.h2);

    r.tick(t0 + 500); // before the retransmit interval: nothing
    expect(r.drain()).toEqual({ h1: [], h2: [] });
    for (const dt of [1000, 2000]) {
      r.tick(t0 + dt);
      out = r.drain();
      expect(out.h1).toEqual([]);
      requests.push(...out.h2);
      expect(r.router.neighbours(t0 + dt)).toContainEqual(expect.objectContaining({ address: "10.0.2.99", state: "INCOMPLETE", queued: 1 }));
    }
    expect(requests).toEqual([1, 2, 3].map(() => arpRequestOut(ETH2_MAC, ETH2_IP, DEAD)));

    r.tick(t0 + 3000);
    out = r.drain();
    expect(out.h2).toEqual([]); // no fourth request
    expect(out.h1).toHaveLength(1);
    const f = out.h1[0];
    const p = parseFrame(f);
    expect(p.icmp).toEqual({ type: 3, code: 1, rest: 0 });
    expect(p.ip).toMatchObject({ srcAddr: ETH1_IP, dstAddr: H1.ip, ttl: 64 });
    // The quote is the packet as it waited: already forwarded, TTL 63.
    const waited = Buffer.from(pkt);
    waited[8] = 63;
    ipv4FillChecksum(waited, 0);
    expect(p.icmpData).toEqual(waited);
    expect(f).toEqual(
      icmpErrorFrame({ dstMac: H1.mac, srcMac: ETH1_MAC, src: ETH1_IP, dst: H1.ip, type: 3, code: 1, quote: waited, ident: p.ip?.ident ?? -1 }),
    );
    expect(r.router.neighbours(t0 + 3000).map((n) => n.address)).toEqual(["10.0.1.10"]);
    expect(r.counters().hostUnreachable).toBe(1);
    expect(r.counters().arpRequestsSent).toBe(3);
    r.tick(t0 + 10_000);
    expect(r.drain().h2).toEqual([]); // nothing more about 10.0.2.99
    expectNoInternalErrors(r);
  });

  it("a STALE neighbour in use is probed by unicast; no answer after 3 probes forgets it", () => {
    const r = routedRig();
    hostArps(r, "h2", H2, ETH2_IP); // STALE
    const pkt = ipPacket({ src: H1.ip, dst: H2.ip });
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, pkt)]);
    const t0 = Math.ceil(performance.now()); // integral: t0 + a + b === t0 + (a + b) exactly
    expect(r.drain().h2).toEqual([forwardedFrame(pkt, H2.mac, ETH2_MAC)]);
    const probes: Buffer[] = [];
    for (const dt of [1000, 2000, 3000]) {
      r.tick(t0 + dt);
      const out = r.drain();
      expect(out.h1).toEqual([]);
      probes.push(...out.h2);
    }
    expect(probes).toEqual([1, 2, 3].map(() => arpRequestOut(ETH2_MAC, ETH2_IP, H2.ip, H2.mac)));
    r.tick(t0 + 4000);
    expect(r.drain()).toEqual({ h1: [], h2: [] });
    expect(r.router.neighbours(t0 + 4000)).toEqual([]);
  });

  it("a STALE neighbour that answers the unicast probe becomes REACHABLE and stays", () => {
    const r = routedRig();
    hostArps(r, "h2", H2, ETH2_IP);
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, ipPacket({ src: H1.ip, dst: H2.ip }))]);
    const t0 = Math.ceil(performance.now()); // integral: t0 + a + b === t0 + (a + b) exactly
    r.drain();
    r.tick(t0 + 1000);
    expect(r.drain().h2).toEqual([arpRequestOut(ETH2_MAC, ETH2_IP, H2.ip, H2.mac)]);
    r.ports.h2.inject([arpReplyFrame(H2.mac, H2.ip, ETH2_MAC, ETH2_IP)]);
    r.drain();
    expect(r.router.neighbours(performance.now())).toEqual([expect.objectContaining({ address: "10.0.2.10", state: "REACHABLE" })]);
    r.tick(t0 + 5000);
    expect(r.drain()).toEqual({ h1: [], h2: [] });
  });
});

describe("Ipv4Router: bad input", () => {
  it("counts and drops malformed frames by reason, never throws, and keeps forwarding", () => {
    const r = routedRig();
    hostArps(r, "h1", H1, ETH1_IP);
    hostArps(r, "h2", H2, ETH2_IP);
    const good = (o: Partial<Parameters<typeof ipPacket>[0]> = {}): Buffer => ipPacket({ src: H1.ip, dst: H2.ip, ...o });
    const toRouter = (pkt: Buffer): Buffer => ipFrame(ETH1_MAC, H1.mac, pkt);

    const badSum = good();
    badSum[10] ^= 0xff;
    const longTotal = good();
    longTotal.writeUInt16BE(longTotal.length + 100, 2);
    ipv4FillChecksum(longTotal, 0);
    const ihl4 = good();
    ihl4[0] = 0x44;
    const v6 = good();
    v6[0] = 0x65;
    const badArp = arpRequestFrame(H1.mac, H1.ip, ETH1_IP);
    badArp[14 + 4] = 8; // hardware address length 8
    const groupSha = arpFrame({ ethDst: BCAST, ethSrc: H1.mac, oper: ARP_OPER_REQUEST, sha: 0x01005e000001, spa: H1.ip, tpa: ETH1_IP });

    const cases: Array<[string, Buffer, Record<string, number>]> = [
      ["bad header checksum", toRouter(badSum), { badChecksum: 1 }],
      ["total length beyond the frame", toRouter(longTotal), { badTotalLen: 1 }],
      ["IHL 4", toRouter(ihl4), { badIhl: 1 }],
      ["version 6 under the IPv4 ethertype", toRouter(v6), { badVersion: 1 }],
      ["truncated IPv4 header", toRouter(good()).subarray(0, 14 + 19), { tooShort: 1 }],
      ["ARP with hlen 8", badArp, { arpIn: 1, badArp: 1 }],
      ["ARP with a group sender MAC", groupSha, { arpIn: 1, badArp: 1 }],
      ["unicast for another MAC (flooded to the router)", ipFrame(0x02999999999a, H1.mac, good()), { otherHost: 1 }],
      ["martian source 127.0.0.1", toRouter(good({ src: ip("127.0.0.1") })), { martianSource: 1 }],
      ["multicast source 224.0.0.5", toRouter(good({ src: ip("224.0.0.5") })), { martianSource: 1 }],
      ["multicast destination 239.1.1.1", toRouter(good({ dst: ip("239.1.1.1") })), { broadcastDropped: 1 }],
      ["IPv6 ethertype", ethFrame(ETH1_MAC, H1.mac, 0x86dd, Buffer.alloc(60)), { unknownEtherType: 1 }],
    ];
    const total: Record<string, number> = {};
    for (const [name, frame, delta] of cases) {
      const before = r.counters();
      r.ports.h1.inject([frame]);
      expect(counterDelta(before, r.counters()), name).toEqual(delta);
      expect(r.drain(), name).toEqual({ h1: [], h2: [] });
      for (const [k, v] of Object.entries(delta)) total[k] = (total[k] ?? 0) + v;
    }
    expect(total).toEqual({
      badChecksum: 1,
      badTotalLen: 1,
      badIhl: 1,
      badVersion: 1,
      tooShort: 1,
      arpIn: 2,
      badArp: 2,
      otherHost: 1,
      martianSource: 2,
      broadcastDropped: 1,
      unknownEtherType: 1,
    });
    expect(r.router.neighbours(performance.now()).map((n) => [n.address, n.mac])).toEqual([
      ["10.0.1.10", "02:aa:00:00:01:0a"],
      ["10.0.2.10", "02:bb:00:00:02:0a"],
    ]);
    expectNoInternalErrors(r);

    const pkt = good({ ident: 0x600d });
    r.ports.h1.inject([toRouter(pkt)]);
    expect(r.drain()).toEqual({ h1: [], h2: [forwardedFrame(pkt, H2.mac, ETH2_MAC)] });
  });

  // RFC 1812 §5.3.5.2 / RFC 2644: directed broadcasts are not forwarded: the host bits,
  // all ones, make 10.0.2.255 a broadcast (not forwarded, not ARPed for).
  it("drops directed broadcasts to a connected subnet (10.0.2.255 and the ingress subnet's 10.0.1.255)", () => {
    const r = routedRig();
    hostArps(r, "h1", H1, ETH1_IP);
    hostArps(r, "h2", H2, ETH2_IP);
    for (const dst of ["10.0.2.255", "10.0.1.255"]) {
      const before = r.counters();
      r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, ipPacket({ src: H1.ip, dst: ip(dst) }))]);
      expect(describeAll(r.drain()), dst).toEqual({ h1: [], h2: [] });
      expect(counterDelta(before, r.counters()), dst).toEqual({ broadcastDropped: 1 });
    }
    expect(r.router.neighbours(performance.now()).map((n) => n.address)).toEqual(["10.0.1.10", "10.0.2.10"]);
  });

  // RFC 1812 §5.3.7 / RFC 1122 §3.2.1.3: 0/8, 127/8 and 240/4 are never destinations on a
  // wire; Linux drops them as martian destinations, and so does the router
  // (src/elements/router/ip-input.ts, the martian checks), default route or not.
  it("does not forward packets to martian destinations (0/8, 127/8, 240/4), even with a default route", () => {
    const r = routedRig();
    hostArps(r, "h1", H1, ETH1_IP);
    const GW = { mac: 0x02cc000002fe, ip: ip("10.0.2.254") };
    r.router.addRoute({ prefix: 0, prefixLen: 0, gateway: GW.ip, ifIndex: 1 });
    hostArps(r, "h2", GW, ETH2_IP);
    for (const dst of ["127.0.0.1", "0.1.2.3", "240.0.0.1"]) {
      r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, ipPacket({ src: H1.ip, dst: ip(dst) }))]);
      expect(describeAll(r.drain()), dst).toEqual({ h1: [], h2: [] });
    }
    expect(r.counters().forwarded).toBe(0);
  });

  // RFC 1812 §5.3.7: a source that is one of the router's own addresses or a subnet
  // broadcast is invalid (Linux: "martian source"); §4.3.2.7: no ICMP error to a source
  // that is not a single host. Otherwise 10.0.2.255 -> H2 would be forwarded, a TTL-1
  // packet "from" 10.0.1.255 would get a time-exceeded (ARPed for 10.0.1.255), and one
  // "from" 10.0.1.1 would make the router ARP for its own address to deliver an ICMP
  // error to itself.
  it("drops packets whose source is the router's own address or a connected subnet's broadcast", () => {
    const r = routedRig();
    hostArps(r, "h1", H1, ETH1_IP);
    hostArps(r, "h2", H2, ETH2_IP);
    const cases: Array<[string, Buffer]> = [
      ["src 10.0.1.1 (own) ttl 1", ipPacket({ src: ETH1_IP, dst: H2.ip, ttl: 1 })],
      ["src 10.0.2.1 (own)", ipPacket({ src: ETH2_IP, dst: H2.ip })],
      ["src 10.0.1.255 ttl 1", ipPacket({ src: ip("10.0.1.255"), dst: H2.ip, ttl: 1 })],
      ["src 10.0.2.255", ipPacket({ src: ip("10.0.2.255"), dst: H2.ip })],
    ];
    for (const [name, pkt] of cases) {
      const before = r.counters();
      r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, pkt)]);
      expect(describeAll(r.drain()), name).toEqual({ h1: [], h2: [] });
      expect(counterDelta(before, r.counters()), name).toEqual({ martianSource: 1 });
    }
  });

  it("survives random garbage (deterministic seed) on both ports and still forwards", () => {
    const r = routedRig();
    hostArps(r, "h1", H1, ETH1_IP);
    hostArps(r, "h2", H2, ETH2_IP);
    const rnd = prng(0x7a9e7);
    const byte = (): number => Math.floor(rnd() * 256);
    const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)];
    const garbage = (ingress: "h1" | "h2"): Buffer => {
      const routerMac = ingress === "h1" ? ETH1_MAC : ETH2_MAC;
      const host = ingress === "h1" ? H1 : H2;
      const len = Math.floor(rnd() * 1600);
      const f = Buffer.alloc(len);
      for (let i = 0; i < len; i++) f[i] = byte();
      const kind = rnd();
      if (len >= 14 && kind < 0.7) {
        // Make most of them reach the router and its parsers.
        const dst = pick([routerMac, routerMac, BCAST]);
        f.writeUIntBE(dst, 0, 6);
        f.writeUIntBE(host.mac, 6, 6);
        const et = pick([ETHERTYPE_IPV4, ETHERTYPE_IPV4, ETHERTYPE_ARP, 0x86dd]);
        f.writeUInt16BE(et, 12);
        if (et === ETHERTYPE_IPV4 && len >= 34 && rnd() < 0.6) {
          // A header that passes the checks, with random fields and a random destination.
          f[14] = 0x45;
          f.writeUInt16BE(len - 14 - Math.floor(rnd() * Math.min(8, len - 34)), 16);
          if (rnd() < 0.7) f.writeUInt32BE(pick([ip("10.0.1.0"), ip("10.0.2.0"), ip("10.99.0.0"), 0]) | byte(), 30);
          if (rnd() < 0.5) f.writeUInt32BE(host.ip, 26);
          ipv4FillChecksum(f, 14);
        } else if (et === ETHERTYPE_ARP && len >= 42 && rnd() < 0.6) {
          f.writeUInt16BE(1, 14);
          f.writeUInt16BE(0x0800, 16);
          f[18] = 6;
          f[19] = 4;
          f.writeUInt16BE(pick([1, 2, 3]), 20);
        }
      }
      return f;
    };
    for (let round = 0; round < 4; round++) {
      r.ports.h1.inject(Array.from({ length: 300 }, () => garbage("h1")));
      r.ports.h2.inject(Array.from({ length: 300 }, () => garbage("h2")));
      r.tick(performance.now() + round * 1500);
    }
    expectNoInternalErrors(r);
    r.drain();
    // H2 speaks up again (its entry may have been probed away meanwhile), then a real packet goes through.
    r.ports.h2.inject([arpRequestFrame(H2.mac, H2.ip, ETH2_IP)]);
    r.drain();
    const pkt = ipPacket({ src: H1.ip, dst: H2.ip, ident: 0x600d });
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, pkt)]);
    expect(r.drain()).toEqual({ h1: [], h2: [forwardedFrame(pkt, H2.mac, ETH2_MAC)] });
    expectNoInternalErrors(r);
  });
});

describe("Ipv4Router: ICMP error rules", () => {
  it("never sends an ICMP error about an ICMP error, a non-initial fragment, or a packet from 0.0.0.0", () => {
    const r = routedRig();
    hostArps(r, "h1", H1, ETH1_IP);
    hostArps(r, "h2", H2, ETH2_IP);
    const quoted = ipPacket({ src: H2.ip, dst: H1.ip, ident: 7 });
    const icmpErr = ipPacket({
      src: H1.ip,
      dst: H2.ip,
      ttl: 1,
      protocol: IP_PROTO_ICMP,
      payload: icmpMessage({ type: 3, code: 3, rest: 0 }, quoted),
    });
    const laterFrag = ipPacket({ src: H1.ip, dst: H2.ip, ttl: 1, fragOffset: 185, mf: true, payload: Buffer.alloc(64, 1) });
    const lastFrag = ipPacket({ src: H1.ip, dst: H2.ip, ttl: 1, fragOffset: 370, payload: Buffer.alloc(24, 1) });
    const fromZero = ipPacket({ src: 0, dst: H2.ip, ttl: 1 });
    const fromZeroNoRoute = ipPacket({ src: 0, dst: ip("10.99.0.1") });

    const before = r.counters();
    r.ports.h1.inject([icmpErr, laterFrag, lastFrag, fromZero, fromZeroNoRoute].map((p) => ipFrame(ETH1_MAC, H1.mac, p)));
    expect(r.drain()).toEqual({ h1: [], h2: [] });
    expect(counterDelta(before, r.counters())).toEqual({ ttlExpired: 3, icmpSuppressed: 3, martianSource: 2 });

    // Contrast: an ICMP echo request (not an error) with TTL 1 gets its time exceeded (traceroute -I).
    const probe = echoRequest({ src: H1.ip, dst: H2.ip, ttl: 1 });
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, probe)]);
    const out = r.drain();
    expect(out.h2).toEqual([]);
    expect(out.h1).toHaveLength(1);
    expect(parseFrame(out.h1[0]).icmp).toEqual({ type: 11, code: 0, rest: 0 });
    expect(parseFrame(out.h1[0]).icmpData).toEqual(probe);
  });

  it("rate-limits ICMP errors with the token bucket: burst 2 of 5 in one pass", () => {
    const r = routedRig({ icmpRate: 1, icmpBurst: 2 });
    hostArps(r, "h1", H1, ETH1_IP);
    const pkts = Array.from({ length: 5 }, (_, i) => ipPacket({ src: H1.ip, dst: H2.ip, ttl: 1, ident: 0x4000 + i }));
    r.ports.h1.inject(pkts.map((p) => ipFrame(ETH1_MAC, H1.mac, p)));
    const out = r.drain();
    expect(out.h2).toEqual([]);
    expect(out.h1).toHaveLength(2);
    expect(out.h1.map((f) => parseFrame(f).icmpData)).toEqual([pkts[0], pkts[1]]);
    expect(r.counters().icmpErrors).toBe(2);
    expect(r.counters().icmpRateLimited).toBe(3);
    expect(r.counters().ttlExpired).toBe(5);
  });

  it("sources an error from the interface the offending packet came in on", () => {
    const r = routedRig();
    hostArps(r, "h2", H2, ETH2_IP);
    const pkt = ipPacket({ src: H2.ip, dst: H1.ip, ttl: 1 });
    r.ports.h2.inject([ipFrame(ETH2_MAC, H2.mac, pkt)]);
    const out = r.drain();
    expect(out.h1).toEqual([]);
    expect(out.h2).toHaveLength(1);
    expect(parseFrame(out.h2[0]).ip).toMatchObject({ srcAddr: ETH2_IP, dstAddr: H2.ip });
  });
});

describe("Ipv4Router: inter-VLAN routing through SVIs", () => {
  const SVI10_MAC = 0x02000000000a;
  const SVI20_MAC = 0x020000000014;
  const SVI10_IP = ip("10.0.10.1");
  const SVI20_IP = ip("10.0.20.1");
  const A1 = { mac: 0x02a100000001, ip: ip("10.0.10.5") };
  const A2 = { mac: 0x02a200000002, ip: ip("10.0.10.6") };
  const B2 = { mac: 0x02b200000002, ip: ip("10.0.20.7") };
  const sviRig = (): Rig =>
    buildRig({
      devices: [
        { name: "a1", vlan: 10 },
        { name: "a2", vlan: 10 },
        { name: "b1", vlan: 20 },
        { name: "b2", vlan: 20 },
      ],
      ifaces: [
        { name: "svi10", mac: SVI10_MAC, addrs: ["10.0.10.1/24"], vlan: 10 },
        { name: "svi20", mac: SVI20_MAC, addrs: ["10.0.20.1/24"], vlan: 20 },
      ],
    });

  it("routes VLAN 10 -> VLAN 20 through switch -> router -> switch to the right VLAN 20 port only", () => {
    const r = sviRig();
    const pkt = ipPacket({ src: A1.ip, dst: B2.ip, ident: 0x1020, payload: Buffer.alloc(80, 0x66) });
    r.ports.a1.inject([ipFrame(SVI10_MAC, A1.mac, pkt)]);
    let out = r.drain();
    // The router resolves 10.0.20.7: its broadcast request floods VLAN 20 only.
    const req = arpRequestOut(SVI20_MAC, SVI20_IP, B2.ip);
    expect(out).toEqual({ a1: [], a2: [], b1: [req], b2: [req] });
    r.ports.b2.inject([arpReplyFrame(B2.mac, B2.ip, SVI20_MAC, SVI20_IP)]);
    out = r.drain();
    expect(out).toEqual({ a1: [], a2: [], b1: [], b2: [forwardedFrame(pkt, B2.mac, SVI20_MAC)] });
    const pkt2 = ipPacket({ src: A1.ip, dst: B2.ip, ident: 0x1021 });
    r.ports.a1.inject([ipFrame(SVI10_MAC, A1.mac, pkt2)]);
    expect(r.drain()).toEqual({ a1: [], a2: [], b1: [], b2: [forwardedFrame(pkt2, B2.mac, SVI20_MAC)] });
    expect(r.counters().forwarded).toBe(2);
    expectNoInternalErrors(r);
  });

  it("a broadcast in VLAN 10 reaches the VLAN 10 members and the SVI, and no VLAN 20 port", () => {
    const r = sviRig();
    const svi10Before = r.internal.svi10.txFrames;
    const svi20Before = r.internal.svi20.txFrames;
    const bcast = ipFrame(BCAST, A1.mac, ipPacket({ src: A1.ip, dst: 0xffffffff, protocol: IP_PROTO_UDP }));
    r.ports.a1.inject([bcast]);
    expect(r.drain()).toEqual({ a1: [], a2: [bcast], b1: [], b2: [] });
    expect(r.internal.svi10.txFrames - svi10Before).toBe(1);
    expect(r.internal.svi20.txFrames - svi20Before).toBe(0);
    expect(r.counters().broadcastDropped).toBe(1);

    // ARP for the SVI: the request floods VLAN 10, the reply goes back to a1 alone.
    const arpReq = arpRequestFrame(A1.mac, A1.ip, SVI10_IP);
    r.ports.a1.inject([arpReq]);
    expect(r.drain()).toEqual({
      a1: [arpFrame({ ethDst: A1.mac, ethSrc: SVI10_MAC, oper: ARP_OPER_REPLY, sha: SVI10_MAC, spa: SVI10_IP, tha: A1.mac, tpa: A1.ip })],
      a2: [arpReq],
      b1: [],
      b2: [],
    });
    // Asking VLAN 10 for VLAN 20's gateway: answered by VLAN 10's SVI with its own MAC
    // (Linux's arp_ignore=0: the address is the router's), nothing in VLAN 20.
    r.ports.a2.inject([arpRequestFrame(A2.mac, A2.ip, SVI20_IP)]);
    expect(r.drain()).toEqual({
      a1: [arpRequestFrame(A2.mac, A2.ip, SVI20_IP)],
      a2: [arpFrame({ ethDst: A2.mac, ethSrc: SVI10_MAC, oper: ARP_OPER_REPLY, sha: SVI10_MAC, spa: SVI20_IP, tha: A2.mac, tpa: A2.ip })],
      b1: [],
      b2: [],
    });
    expect(r.internal.svi20.txFrames - svi20Before).toBe(0);
  });
});

// -----------------------------------------------------------------------------

function patterned(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + (i >> 8)) & 0xff;
  return b;
}

/**
 * Checks a fragment train against the original packet: every fragment valid, at most
 * `mtu` bytes of IP, header fields copied, TTL one less, MF on all but the last, data
 * 8-aligned; the pieces tile the original payload exactly. Returns offset/MF/length.
 */
function checkFragments(frames: Buffer[], orig: Buffer, mtu: number, dstMac: number, srcMac: number): Array<{ offset: number; mf: boolean; len: number }> {
  const o = parseFrame(ipFrame(0, 0, orig)).ip;
  if (o === null) throw new Error("original does not parse");
  const payload = orig.subarray(20);
  const rebuilt = Buffer.alloc(payload.length, 0);
  const covered = new Uint8Array(payload.length);
  const res: Array<{ offset: number; mf: boolean; len: number }> = [];
  expect(frames.length).toBeGreaterThan(1);
  frames.forEach((f, i) => {
    const p = parseFrame(f);
    expect(p.eth).toEqual({ dstAddr: dstMac, srcAddr: srcMac, etherType: ETHERTYPE_IPV4 });
    expect(p.ip).not.toBeNull();
    const h = p.ip as NonNullable<typeof p.ip>;
    expect(f.length).toBe(14 + h.totalLen);
    expect(h.totalLen).toBeLessThanOrEqual(mtu);
    expect(ipv4ChecksumValid(f, 14)).toBe(true);
    expect(h).toMatchObject({ ident: o.ident, ttl: o.ttl - 1, protocol: o.protocol, srcAddr: o.srcAddr, dstAddr: o.dstAddr, df: false });
    const last = i === frames.length - 1;
    expect(h.mf).toBe(!last);
    const data = f.subarray(14 + 20 + h.options.length, 14 + h.totalLen);
    if (!last) expect(data.length % 8).toBe(0);
    const at = h.fragOffset * 8;
    data.copy(rebuilt, at);
    for (let k = at; k < at + data.length; k++) {
      expect(covered[k]).toBe(0);
      covered[k] = 1;
    }
    res.push({ offset: h.fragOffset, mf: h.mf, len: h.totalLen });
  });
  expect(covered.every((c) => c === 1)).toBe(true);
  expect(rebuilt).toEqual(payload);
  return res;
}

describe("TCP to the router itself (RFC 793 reset generation)", () => {
  function segment(flags: number, seq: number, ack: number, data = 0): Buffer {
    const t = Buffer.alloc(20 + data);
    emitTcp({ srcPort: 40000, dstPort: 22, seq, ack, flags, window: 64240, urgent: 0, options: new Uint8Array(0) }, t, 0);
    const p = ipPacket({ src: H1.ip, dst: ETH1_IP, protocol: IP_PROTO_TCP, payload: t, df: true });
    tcpFillChecksum(p, 20, 20 + data, H1.ip, ETH1_IP);
    return p;
  }

  it("answers a SYN with RST+ACK (ack = seq + 1), an ACK segment with RST (seq = its ack), and never a RST", () => {
    const r = routedRig();
    hostArps(r, "h1", H1, ETH1_IP);
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, segment(TCP_SYN, 1000, 0))]);
    let out = r.drain();
    expect(out.h1).toHaveLength(1);
    let f = out.h1[0];
    expect(ipv4Check(f, 14, f.length - 14, true)).toBe(CHECK_OK);
    expect(f.readUInt32BE(14 + 12)).toBe(ETH1_IP);
    expect(f.readUInt32BE(14 + 16)).toBe(H1.ip);
    expect(tcpChecksumValid(f, 34, 20, ETH1_IP, H1.ip)).toBe(true);
    expect(f.readUInt16BE(34)).toBe(22);
    expect(f.readUInt16BE(36)).toBe(40000);
    expect(f.readUInt32BE(34 + 4)).toBe(0);
    expect(f.readUInt32BE(34 + 8)).toBe(1001);
    expect(f[34 + 13]).toBe(TCP_RST | TCP_ACK);
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, segment(TCP_ACK | TCP_PSH, 5000, 777, 10))]);
    out = r.drain();
    f = out.h1[0];
    expect(f[34 + 13]).toBe(TCP_RST);
    expect(f.readUInt32BE(34 + 4)).toBe(777);
    expect(tcpChecksumValid(f, 34, 20, ETH1_IP, H1.ip)).toBe(true);
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, segment(TCP_RST, 1, 0))]);
    expect(r.drain()).toEqual({ h1: [], h2: [] });
    expect(r.counters().tcpResets).toBe(2);
  });
});

describe("one disposition per received packet", () => {
  it("an error that cannot be routed back counts in outNoRoute, not as a second noRoute", () => {
    const r = routedRig();
    const before = r.counters();
    // TTL 1 from a source the router has no route to: time exceeded, which has nowhere to go.
    const pkt = ipPacket({ src: ip("203.0.113.9"), dst: H2.ip, ttl: 1 });
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, pkt)]);
    expect(counterDelta(before, r.counters())).toEqual({ ttlExpired: 1, icmpErrors: 1, outNoRoute: 1 });
    expect(r.drain()).toEqual({ h1: [], h2: [] });
    expectNoInternalErrors(r);
  });

  it("a packet to forward with malformed options is not fragmented: parameter problem, pointer at the option, counted in paramProblems", () => {
    const r = routedRig({ eth2Mtu: 1400 });
    hostArps(r, "h1", H1, ETH1_IP);
    const before = r.counters();
    // 1500 bytes, DF clear, over eth2's MTU; a copied option (LSRR) whose length runs past the header.
    const pkt = Buffer.alloc(1500, 0x55);
    emitIpv4(
      {
        dscp: 0,
        ecn: 0,
        totalLen: 1500,
        ident: 7,
        df: false,
        mf: false,
        fragOffset: 0,
        ttl: 64,
        protocol: 17,
        srcAddr: H1.ip,
        dstAddr: H2.ip,
        options: Uint8Array.from([0x83, 0xff, 0, 0]),
      },
      pkt,
      0,
    );
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, pkt)]);
    expect(counterDelta(before, r.counters())).toEqual({ paramProblems: 1, icmpErrors: 1 });
    const out = r.drain();
    expect(out.h2).toEqual([]);
    expect(out.h1).toHaveLength(1);
    const e = parseFrame(out.h1[0]);
    expect(e.ip).toMatchObject({ srcAddr: ETH1_IP, dstAddr: H1.ip, protocol: 1 });
    // RFC 792: the pointer (top byte of the rest) is the option's offset in the header, 20.
    expect(e.icmp).toEqual({ type: 12, code: 0, rest: (20 << 24) >>> 0 });
    expectNoInternalErrors(r);
  });
});
