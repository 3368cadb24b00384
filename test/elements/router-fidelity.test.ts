/**
 * The router answers as a Linux router does (the differential test
 * test/integration/router-diff.test.ts holds it against a real one): per-destination
 * ICMP limits, reassembly of its own datagrams, errors from the address probed, TOS
 * precedence kept, redirects, IP options.
 */
import { describe, expect, it } from "vitest";
import { IcmpPeers, icmpTypeLimited } from "../../src/elements/router/icmp-peers.js";
import { OptionsResult, ipv4OptionsInput } from "../../src/elements/router/options.js";
import { ipv4Check } from "../../src/wire/ipv4.js";
import { CHECK_OK } from "../../src/wire/reason.js";
import { ETH1_IP, ETH1_MAC, ETH2_IP, H1, H2, type Rig, arpRequestFrame, echoRequest, ip, ipFrame, ipPacket, parseFrame, routedRig } from "./router-rig.js";

function hostArps(r: Rig, port: string, host: { mac: number; ip: number }, gw: number): void {
  r.ports[port].inject([arpRequestFrame(host.mac, host.ip, gw)]);
  expect(r.drain()[port]).toHaveLength(1);
}

/** `pkt` (20-byte header, checksum right) with `opts` inserted after its header; IHL, length, checksum fixed. */
function withOptions(pkt: Buffer, opts: number[]): Buffer {
  const o = Buffer.from(opts);
  const b = Buffer.concat([pkt.subarray(0, 20), o, pkt.subarray(20)]);
  b[0] = 0x40 | ((20 + o.length) >> 2);
  b.writeUInt16BE(b.length, 2);
  b.writeUInt16BE(0, 10);
  let sum = 0;
  for (let i = 0; i < 20 + o.length; i += 2) sum += b.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  b.writeUInt16BE(~sum & 0xffff, 10);
  return b;
}

describe("IcmpPeers: Linux's per-destination ICMP limit and redirect back-off", () => {
  it("six errors at once to one destination, then one a second; another destination has its own six", () => {
    const p = new IcmpPeers(1000);
    const a = ip("10.0.1.10");
    const b = ip("10.0.1.11");
    const got = Array.from({ length: 10 }, () => p.allow(a, 5000));
    expect(got.filter(Boolean)).toHaveLength(6);
    expect(p.allow(b, 5000)).toBe(true);
    expect(p.allow(a, 5999)).toBe(false);
    expect(p.allow(a, 6000)).toBe(true);
    expect(p.allow(a, 6001)).toBe(false);
  });

  it("ratelimit 0 limits nothing", () => {
    const p = new IcmpPeers(0);
    for (let i = 0; i < 100; i++) expect(p.allow(1, 0)).toBe(true);
    expect(() => new IcmpPeers(-1)).toThrow(/ratelimit/);
  });

  it("a route error spends the same bucket: five packets without a route get two errors (ip_error, then icmp_send)", () => {
    const p = new IcmpPeers(1000);
    let sent = 0;
    for (let i = 0; i < 5; i++) if (p.allowRouteError(7, 100) && p.allow(7, 100)) sent++;
    expect(sent).toBe(2);
  });

  it("the mask: unreachable, time exceeded, parameter problem limited; fragmentation needed, echo replies, redirects not", () => {
    expect([3, 4, 11, 12].map((t) => icmpTypeLimited(6168, t, 0))).toEqual([true, true, true, true]);
    expect(icmpTypeLimited(6168, 3, 4)).toBe(false);
    expect([0, 5, 8, 19].map((t) => icmpTypeLimited(6168, t, 0))).toEqual([false, false, false, false]);
    expect(icmpTypeLimited(0, 11, 0)).toBe(false);
  });

  it("redirects: the first at once, the n-th after 20 ms << n, at most nine, again after silence", () => {
    const p = new IcmpPeers();
    expect(p.allowRedirect(9, 0)).toBe(true);
    expect(p.allowRedirect(9, 10)).toBe(false);
    expect(p.allowRedirect(9, 41)).toBe(true); // 20 << 1 = 40 ms after the first
    expect(p.allowRedirect(9, 80)).toBe(false);
    expect(p.allowRedirect(9, 122)).toBe(true); // 20 << 2 = 80 ms after the second
    let t = 122;
    let n = 3;
    for (let i = 0; i < 200; i++) {
      t += 20 << n;
      if (p.allowRedirect(9, t + 1)) n++;
    }
    expect(n).toBe(9);
    // 20 ms << 10 without redirected packets: the count starts again.
    expect(p.allowRedirect(9, t + 1 + (20 << 10) + 1)).toBe(true);
  });

  it("a full table pushes out the least recently seen destination, which comes back with a full bucket", () => {
    const p = new IcmpPeers(1000);
    for (let i = 0; i < 6; i++) p.allow(1, 0);
    expect(p.allow(1, 0)).toBe(false);
    for (let d = 2; d < 5000; d++) p.allow(d, 1 + d);
    expect(p.allow(1, 6000)).toBe(true);
  });
});

describe("Ipv4Router answers as Linux does", () => {
  it("a TTL-1 burst from one sender: six time exceeded, the rest counted in icmpRateLimited; another sender still gets its six", () => {
    const r = routedRig();
    hostArps(r, "h1", H1, ETH1_IP);
    const other = { mac: 0x02aa0000010b, ip: ip("10.0.1.11") };
    hostArps(r, "h1", other, ETH1_IP);
    const burst = (h: { mac: number; ip: number }): Buffer[] =>
      Array.from({ length: 10 }, (_, i) => ipFrame(ETH1_MAC, h.mac, echoRequest({ src: h.ip, dst: ip("10.0.2.10"), ttl: 1, ident: i })));
    r.ports.h1.inject(burst(H1));
    expect(r.drain().h1.map((f) => parseFrame(f).icmp?.type)).toEqual([11, 11, 11, 11, 11, 11]);
    expect(r.counters().icmpRateLimited).toBe(4);
    r.ports.h1.inject(burst(other));
    expect(r.drain().h1).toHaveLength(6);
    expect(r.counters().icmpRateLimited).toBe(8);
  });

  it("ten echo requests to the router: ten replies (echo replies are not limited)", () => {
    const r = routedRig();
    hostArps(r, "h1", H1, ETH1_IP);
    r.ports.h1.inject(Array.from({ length: 10 }, (_, i) => ipFrame(ETH1_MAC, H1.mac, echoRequest({ src: H1.ip, dst: ETH1_IP, seq: i }))));
    expect(r.drain().h1).toHaveLength(10);
    expect(r.counters().icmpRateLimited).toBe(0);
  });

  it("UDP to the far address (traceroute -U 10.0.2.1): port unreachable from 10.0.2.1", () => {
    const r = routedRig();
    hostArps(r, "h1", H1, ETH1_IP);
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, ipPacket({ src: H1.ip, dst: ETH2_IP, protocol: 17 }))]);
    const out = r.drain().h1;
    expect(out).toHaveLength(1);
    const e = parseFrame(out[0]);
    expect(e.ip).toMatchObject({ srcAddr: ETH2_IP, dstAddr: H1.ip });
    expect(e.icmp).toMatchObject({ type: 3, code: 3 });
  });

  it("a time exceeded about TOS 0xb8 carries 0xd8: precedence 6 over the original's TOS bits", () => {
    const r = routedRig();
    hostArps(r, "h1", H1, ETH1_IP);
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, echoRequest({ src: H1.ip, dst: ip("10.0.2.10"), ttl: 1, dscp: 0xb8 >> 2 }))]);
    const e = parseFrame(r.drain().h1[0]);
    expect(e.icmp).toMatchObject({ type: 11, code: 0 });
    expect(e.ipBytes?.[1]).toBe(0xd8);
  });

  it("ping -s 2000 to the router: the two fragments are reassembled and answered, the reply in fragments (reassembledLocal)", () => {
    const r = routedRig();
    hostArps(r, "h1", H1, ETH1_IP);
    const data = Buffer.alloc(2000);
    for (let i = 0; i < data.length; i++) data[i] = i & 0xff;
    const whole = echoRequest({ src: H1.ip, dst: ETH1_IP, ident: 0x77, data });
    const payload = whole.subarray(20);
    const f1 = ipPacket({ src: H1.ip, dst: ETH1_IP, protocol: 1, ident: 0x77, mf: true, payload: payload.subarray(0, 1480) });
    const f2 = ipPacket({ src: H1.ip, dst: ETH1_IP, protocol: 1, ident: 0x77, fragOffset: 1480 / 8, payload: payload.subarray(1480) });
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, f2), ipFrame(ETH1_MAC, H1.mac, f1)]);
    const out = r.drain().h1.map(parseFrame);
    expect(out.map((p) => p.ip?.totalLen)).toEqual([1500, 20 + 2008 - 1480]);
    expect(out[0].ip).toMatchObject({ srcAddr: ETH1_IP, dstAddr: H1.ip, mf: true, fragOffset: 0 });
    expect(out[0].ipBytes?.[20]).toBe(0); // echo reply
    // The reply's data is the request's.
    const replyData = Buffer.concat([out[0].ipBytes?.subarray(28) as Buffer, out[1].ipBytes?.subarray(20) as Buffer]);
    expect(replyData.equals(data)).toBe(true);
    const c = r.counters();
    expect(c.reassembledLocal).toBe(1);
    expect(c.fragsReceived).toBe(2);
    expect(c.echoReplies).toBe(1);
  });

  it("a packet leaving by the interface it came in on toward a gateway there: forwarded, and a redirect 5/1 naming the gateway, once", () => {
    const r = routedRig();
    const gw = { mac: 0x02aa00000114, ip: ip("10.0.1.20") };
    hostArps(r, "h1", H1, ETH1_IP);
    hostArps(r, "h1", gw, ETH1_IP);
    r.router.state.addRoute({ prefix: ip("10.0.3.0"), prefixLen: 24, gateway: gw.ip, ifIndex: 0 });
    const pkt = (seq: number): Buffer => ipFrame(ETH1_MAC, H1.mac, echoRequest({ src: H1.ip, dst: ip("10.0.3.5"), seq }));
    r.ports.h1.inject([pkt(1), pkt(2)]);
    const out = r.drain().h1.map(parseFrame);
    const redirects = out.filter((p) => p.ip?.dstAddr === H1.ip);
    expect(redirects).toHaveLength(1);
    expect(redirects[0].ip).toMatchObject({ srcAddr: ETH1_IP });
    expect(redirects[0].icmp).toEqual({ type: 5, code: 1, rest: gw.ip });
    // The quote shows the packet as forwarded: TTL 63.
    expect(redirects[0].icmpData?.[8]).toBe(63);
    expect(out.filter((p) => p.eth.dstAddr === gw.mac)).toHaveLength(2);
    expect(r.counters().redirectsSent).toBe(1);
    expect(r.counters().forwarded).toBe(2);
  });

  it("sendRedirects off: forwarded, no redirect", () => {
    const r = routedRig();
    r.router.ifaces[0].sendRedirects = false;
    const gw = { mac: 0x02aa00000114, ip: ip("10.0.1.20") };
    hostArps(r, "h1", H1, ETH1_IP);
    hostArps(r, "h1", gw, ETH1_IP);
    r.router.state.addRoute({ prefix: ip("10.0.3.0"), prefixLen: 24, gateway: gw.ip, ifIndex: 0 });
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, echoRequest({ src: H1.ip, dst: ip("10.0.3.5") }))]);
    const out = r.drain().h1.map(parseFrame);
    expect(out.map((p) => p.eth.dstAddr)).toEqual([gw.mac]);
    expect(r.counters().redirectsSent).toBe(0);
  });

  it("Record Route through the router (ping -R): the address it leaves from, the pointer moved on", () => {
    const r = routedRig();
    hostArps(r, "h1", H1, ETH1_IP);
    const h2 = { mac: 0x02bb0000020a, ip: ip("10.0.2.10") };
    hostArps(r, "h2", h2, ETH2_IP);
    const pkt = withOptions(echoRequest({ src: H1.ip, dst: h2.ip }), [7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, pkt)]);
    const out = r.drain().h2;
    expect(out).toHaveLength(1);
    const b = parseFrame(out[0]).ipBytes as Buffer;
    expect(ipv4Check(b, 0, b.length)).toBe(CHECK_OK);
    expect([...b.subarray(20, 23)]).toEqual([7, 11, 8]);
    expect(b.readUInt32BE(23)).toBe(ETH2_IP);
    expect(b.readUInt32BE(27)).toBe(0);
  });

  it("an option whose length runs past the header: parameter problem 12/0 pointing at it, not forwarded (paramProblems)", () => {
    const r = routedRig();
    hostArps(r, "h1", H1, ETH1_IP);
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, withOptions(echoRequest({ src: H1.ip, dst: ip("10.0.2.10") }), [1, 7, 1, 0]))]);
    const out = r.drain();
    expect(out.h2).toEqual([]);
    const e = parseFrame(out.h1[0]);
    expect(e.icmp).toEqual({ type: 12, code: 0, rest: (21 << 24) >>> 0 });
    expect(e.ip?.srcAddr).toBe(ETH1_IP);
    expect(r.counters().paramProblems).toBe(1);
  });

  it("a loose source route, to the router or through it: dropped without an answer (sourceRouted)", () => {
    const r = routedRig();
    hostArps(r, "h1", H1, ETH1_IP);
    const lsrr = [1, 131, 7, 4, 10, 0, 2, 10];
    r.ports.h1.inject([
      ipFrame(ETH1_MAC, H1.mac, withOptions(echoRequest({ src: H1.ip, dst: ETH1_IP }), lsrr)),
      ipFrame(ETH1_MAC, H1.mac, withOptions(echoRequest({ src: H1.ip, dst: ip("10.0.2.10") }), lsrr)),
    ]);
    expect(r.drain()).toEqual({ h1: [], h2: [] });
    expect(r.counters().sourceRouted).toBe(2);
    expect(r.counters().echoReplies).toBe(0);
  });
});

/** A source route option (LSRR 131, SSRR 137) naming `addrs`, its pointer at `ptr`, after a NOP to align it. */
function sourceRouteOpt(type: number, addrs: number[], ptr = 4): number[] {
  const o = [1, type, 3 + 4 * addrs.length, ptr];
  for (const a of addrs) o.push(a >>> 24, (a >>> 16) & 0xff, (a >>> 8) & 0xff, a & 0xff);
  return o;
}

describe("acceptSourceRoute on (Linux's accept_source_route 1: ip_options_rcv_srr, ip_forward_options)", () => {
  const LSRR = 131;
  const SSRR = 137;
  function rig(): Rig {
    const r = routedRig();
    r.router.ifaces[0].acceptSourceRoute = true;
    hostArps(r, "h1", H1, ETH1_IP);
    hostArps(r, "h2", H2, ETH2_IP);
    return r;
  }
  const srr = (type: number, dst: number, addrs: number[], o: { ttl?: number; ptr?: number } = {}): Buffer =>
    ipFrame(ETH1_MAC, H1.mac, withOptions(echoRequest({ src: H1.ip, dst, ttl: o.ttl }), sourceRouteOpt(type, addrs, o.ptr)));

  it("a loose route to the router naming h2: forwarded to h2, the destination rewritten, the slot holding the address it left from", () => {
    const r = rig();
    r.ports.h1.inject([srr(LSRR, ETH1_IP, [H2.ip])]);
    const out = r.drain();
    expect(out.h1).toEqual([]);
    expect(out.h2).toHaveLength(1);
    const p = parseFrame(out.h2[0]);
    expect(p.eth.dstAddr).toBe(H2.mac);
    const b = p.ipBytes as Buffer;
    expect(ipv4Check(b, 0, b.length)).toBe(CHECK_OK);
    expect(p.ip).toMatchObject({ srcAddr: H1.ip, dstAddr: H2.ip, ttl: 63 });
    expect([...b.subarray(20, 24)]).toEqual([1, LSRR, 7, 8]);
    expect(b.readUInt32BE(24)).toBe(ETH2_IP);
    expect(r.counters().forwarded).toBe(1);
    expect(r.counters().sourceRouted).toBe(0);
  });

  it("the router's own addresses in the route are passed over: the next other one is the next hop, its slot takes the entry", () => {
    const r = rig();
    r.ports.h1.inject([srr(SSRR, ETH1_IP, [ETH2_IP, H2.ip])]);
    const out = r.drain();
    expect(out.h2).toHaveLength(1);
    const p = parseFrame(out.h2[0]);
    const b = p.ipBytes as Buffer;
    expect(ipv4Check(b, 0, b.length)).toBe(CHECK_OK);
    expect(p.ip?.dstAddr).toBe(H2.ip);
    expect([...b.subarray(20, 24)]).toEqual([1, SSRR, 11, 12]);
    expect([b.readUInt32BE(24), b.readUInt32BE(28)]).toEqual([ETH2_IP, ETH2_IP]);
  });

  it("a strict route whose next address is behind a gateway: destination unreachable 3/5 quoting the packet as sent (sourceRouteFailed)", () => {
    const r = rig();
    const gw = { mac: 0x02bb00000214, ip: ip("10.0.2.20") };
    hostArps(r, "h2", gw, ETH2_IP);
    r.router.state.addRoute({ prefix: ip("10.0.3.0"), prefixLen: 24, gateway: gw.ip, ifIndex: 1 });
    r.ports.h1.inject([srr(SSRR, ETH1_IP, [ip("10.0.3.5")])]);
    const out = r.drain();
    expect(out.h2).toEqual([]);
    expect(out.h1).toHaveLength(1);
    const e = parseFrame(out.h1[0]);
    expect(e.icmp).toMatchObject({ type: 3, code: 5 });
    expect(e.ip?.srcAddr).toBe(ETH1_IP);
    const q = e.icmpData as Buffer;
    expect(q.readUInt32BE(16)).toBe(ETH1_IP); // the original destination, before the route moved it
    expect(q[22 + 1]).toBe(4); // the route's pointer, not yet advanced
    expect(r.counters().sourceRouteFailed).toBe(1);
    // The same route loose: forwarded to the gateway, destination 10.0.3.5.
    r.ports.h1.inject([srr(LSRR, ETH1_IP, [ip("10.0.3.5")])]);
    const fwd = r.drain().h2.map(parseFrame);
    expect(fwd.map((p) => [p.eth.dstAddr, p.ip?.dstAddr])).toEqual([[gw.mac, ip("10.0.3.5")]]);
  });

  it("TTL 1: time exceeded quoting the original destination; a next address without a route: dropped silently (sourceRouteDropped)", () => {
    const r = rig();
    r.ports.h1.inject([srr(LSRR, ETH1_IP, [H2.ip], { ttl: 1 })]);
    let out = r.drain();
    expect(out.h2).toEqual([]);
    const e = parseFrame(out.h1[0]);
    expect(e.icmp).toMatchObject({ type: 11, code: 0 });
    expect((e.icmpData as Buffer).readUInt32BE(16)).toBe(ETH1_IP);
    r.ports.h1.inject([srr(LSRR, ETH1_IP, [ip("192.0.2.9")]), srr(LSRR, ETH1_IP, [ip("10.0.2.255")])]);
    out = r.drain();
    expect(out).toEqual({ h1: [], h2: [] });
    expect(r.counters().sourceRouteDropped).toBe(2);
  });

  it("through the router without naming it: loose forwarded unchanged, strict parameter problem pointing at the destination (16)", () => {
    const r = rig();
    r.ports.h1.inject([srr(LSRR, H2.ip, [ip("10.0.2.77")])]);
    const fwd = r.drain().h2.map(parseFrame);
    expect(fwd.map((p) => p.ip?.dstAddr)).toEqual([H2.ip]);
    expect([...(fwd[0].ipBytes as Buffer).subarray(20, 28)]).toEqual(sourceRouteOpt(LSRR, [ip("10.0.2.77")]));
    r.ports.h1.inject([srr(SSRR, H2.ip, [ip("10.0.2.77")])]);
    const out = r.drain();
    expect(out.h2).toEqual([]);
    expect(parseFrame(out.h1[0]).icmp).toEqual({ type: 12, code: 0, rest: (16 << 24) >>> 0 });
  });

  it("a route used up at the router that named only the sender: delivered, the reply straight back; a route leaving by the way it came: no redirect", () => {
    const r = rig();
    r.ports.h1.inject([srr(LSRR, ETH1_IP, [H1.ip], { ptr: 8 })]);
    const replies = r.drain().h1.map(parseFrame);
    expect(replies.map((p) => [p.icmp?.type, p.ip?.dstAddr])).toEqual([[0, H1.ip]]);
    expect([...(replies[0].ipBytes as Buffer).subarray(20, 28)]).toEqual([1, 1, 1, 1, 1, 1, 1, 1]);
    const gw = { mac: 0x02aa00000114, ip: ip("10.0.1.20") };
    hostArps(r, "h1", gw, ETH1_IP);
    r.ports.h1.inject([srr(LSRR, ETH1_IP, [gw.ip])]);
    const out = r.drain().h1.map(parseFrame);
    expect(out.map((p) => [p.eth.dstAddr, p.ip?.dstAddr])).toEqual([[gw.mac, gw.ip]]);
    expect(r.counters().redirectsSent).toBe(0);
  });

  it("an echo to the router whose route is used up: the reply goes to the last hop visited, the rest of the route reversed, the sender last", () => {
    const r = rig();
    const mid = ip("10.0.2.50");
    r.ports.h1.inject([srr(LSRR, ETH1_IP, [mid, H2.ip], { ptr: 12 })]);
    const out = r.drain();
    expect(out.h1).toEqual([]);
    const p = parseFrame(out.h2[0]);
    expect(p.eth.dstAddr).toBe(H2.mac);
    expect(p.icmp?.type).toBe(0);
    expect(p.ip).toMatchObject({ srcAddr: ETH1_IP, dstAddr: H2.ip });
    const b = p.ipBytes as Buffer;
    expect(ipv4Check(b, 0, b.length)).toBe(CHECK_OK);
    expect([...b.subarray(20, 23)]).toEqual([LSRR, 11, 4]);
    expect([b.readUInt32BE(23), b.readUInt32BE(27), b[31]]).toEqual([mid, H1.ip, 0]);
    // The sender itself as the route's first hop is left out (RFC 1812 §5.2.4.1).
    r.ports.h1.inject([srr(LSRR, ETH1_IP, [H1.ip, H2.ip], { ptr: 12 })]);
    const q = parseFrame(r.drain().h2[0]).ipBytes as Buffer;
    expect([...q.subarray(20, 23)]).toEqual([LSRR, 7, 4]);
    expect(q.readUInt32BE(23)).toBe(H1.ip);
  });

  it("off on the receiving interface (on elsewhere): dropped as before (sourceRouted)", () => {
    const r = routedRig();
    r.router.ifaces[1].acceptSourceRoute = true;
    hostArps(r, "h1", H1, ETH1_IP);
    hostArps(r, "h2", H2, ETH2_IP);
    r.ports.h1.inject([srr(LSRR, ETH1_IP, [H2.ip])]);
    expect(r.drain()).toEqual({ h1: [], h2: [] });
    expect(r.counters().sourceRouted).toBe(1);
  });
});

describe("ipv4OptionsInput (RFC 791 §3.1, Linux's ip_options_compile)", () => {
  const run = (opts: number[], specDst = 0x0a000101, local = (_: number): boolean => false): { fault: number; b: Buffer; res: OptionsResult } => {
    const b = withOptions(ipPacket({ src: H1.ip, dst: ip("10.0.2.10") }), opts);
    const res = new OptionsResult();
    const fault = ipv4OptionsInput(b, 0, specDst, local, 0x01020304, res);
    return { fault, b, res };
  };

  it("Timestamp only, with addresses, prespecified (ours and another's), full", () => {
    let x = run([68, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(x.fault).toBe(-1);
    expect([x.b[22], x.b.readUInt32BE(24)]).toEqual([9, 0x01020304]);
    x = run([68, 12, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect([x.b[22], x.b.readUInt32BE(24), x.b.readUInt32BE(28)]).toEqual([13, 0x0a000101, 0x01020304]);
    x = run([68, 12, 5, 3, 10, 0, 2, 1, 0, 0, 0, 0], 0, (a) => a === ETH2_IP);
    expect([x.b[22], x.b.readUInt32BE(28)]).toEqual([13, 0x01020304]);
    x = run([68, 12, 5, 3, 10, 9, 9, 9, 0, 0, 0, 0]);
    expect([x.b[22], x.b.readUInt32BE(28)]).toEqual([5, 0]);
    x = run([68, 8, 9, 0x30, 0, 0, 0, 0]);
    expect([x.fault, x.b[23]]).toEqual([-1, 0x40]);
    // Full and prespecified: the list ends, nothing counted.
    x = run([68, 12, 13, 0x03, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect([x.fault, x.b[23]]).toEqual([-1, 0x03]);
  });

  it.each([
    ["length past the header", [7, 39, 4, 0], 20],
    ["length 1", [1, 7, 1, 0], 21],
    ["Record Route pointer 3", [7, 7, 3, 0, 0, 0, 0, 0], 22],
    ["two Record Routes", [7, 7, 4, 0, 0, 0, 0, 7, 7, 4, 0, 0, 0, 0, 0, 0], 27],
    ["Timestamp overflow 15", [68, 8, 9, 0xf0, 0, 0, 0, 0], 23],
    ["Timestamp pointer 4", [68, 8, 4, 0, 0, 0, 0, 0], 22],
    ["Router Alert of length 2", [148, 2, 0, 0], 21],
  ])("%s: the pointer at the fault", (_, opts, pointer) => {
    expect(run(opts as number[]).fault).toBe(pointer);
  });

  it("End of Option List: what follows is zeroed; unknown options pass unchanged", () => {
    let x = run([1, 0, 7, 9]);
    expect([x.fault, ...x.b.subarray(20, 24)]).toEqual([-1, 1, 0, 0, 0]);
    expect(x.res.changed).toBe(true);
    x = run([30, 4, 0xab, 0xcd]);
    expect([x.fault, ...x.b.subarray(20, 24)]).toEqual([-1, 30, 4, 0xab, 0xcd]);
    expect(x.res.changed).toBe(false);
  });
});

describe("echo replies echo Record Route and Timestamp (ip_options_echo)", () => {
  it("ping -R to the router: its address on the way in and on the way back, the pointer at the third slot", () => {
    const r = routedRig();
    hostArps(r, "h1", H1, ETH1_IP);
    const pkt = withOptions(echoRequest({ src: H1.ip, dst: ETH1_IP }), [7, 15, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, pkt)]);
    const out = r.drain().h1;
    expect(out).toHaveLength(1);
    const b = parseFrame(out[0]).ipBytes as Buffer;
    expect(ipv4Check(b, 0, b.length)).toBe(CHECK_OK);
    expect(b[36]).toBe(0); // echo reply, after a 36-byte header
    expect([...b.subarray(20, 23)]).toEqual([7, 15, 12]);
    expect([b.readUInt32BE(23), b.readUInt32BE(27), b.readUInt32BE(31)]).toEqual([ETH1_IP, ETH1_IP, 0]);
  });

  it("other options of the request become NOPs; a full Record Route is echoed as it is", () => {
    const r = routedRig();
    hostArps(r, "h1", H1, ETH1_IP);
    const pkt = withOptions(echoRequest({ src: H1.ip, dst: ETH1_IP }), [30, 4, 0xab, 0xcd, 7, 7, 8, 10, 9, 9, 9, 0]);
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, pkt)]);
    const b = parseFrame(r.drain().h1[0]).ipBytes as Buffer;
    expect([...b.subarray(20, 32)]).toEqual([1, 1, 1, 1, 7, 7, 8, 10, 9, 9, 9, 0]);
  });
});

describe("errors echo Record Route (icmp_send through ip_options_echo)", () => {
  it("time exceeded for a packet with Record Route: the option with the router's entry twice, the quote shortened to fit 576", () => {
    const r = routedRig();
    hostArps(r, "h1", H1, ETH1_IP);
    const big = Buffer.alloc(1000, 0x61);
    const pkt = withOptions(echoRequest({ src: H1.ip, dst: ip("10.0.2.10"), ttl: 1, data: big }), [7, 15, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, pkt)]);
    const b = parseFrame(r.drain().h1[0]).ipBytes as Buffer;
    expect(ipv4Check(b, 0, b.length)).toBe(CHECK_OK);
    expect(b[0]).toBe(0x49);
    expect(b.length).toBe(576);
    expect([...b.subarray(20, 23)]).toEqual([7, 15, 12]);
    expect([b.readUInt32BE(23), b.readUInt32BE(27)]).toEqual([ETH1_IP, ETH1_IP]);
    expect([b[36], b[37]]).toEqual([11, 0]);
    // The quote: the packet as the router held it, its Record Route with the input entry.
    const q = b.subarray(44);
    expect([q[0], q[22], q.readUInt32BE(23)]).toEqual([0x49, 8, ETH1_IP]);
  });
});

describe("resets echo Record Route (ip_send_unicast_reply)", () => {
  it("a SYN with Record Route to the router: the reset carries it with the router's address twice", () => {
    const r = routedRig();
    hostArps(r, "h1", H1, ETH1_IP);
    const tcp = Buffer.alloc(20);
    tcp.writeUInt16BE(40000, 0);
    tcp.writeUInt16BE(80, 2);
    tcp.writeUInt32BE(7, 4);
    tcp[12] = 5 << 4;
    tcp[13] = 0x02; // SYN
    const pkt = ipPacket({ src: H1.ip, dst: ETH1_IP, protocol: 6, payload: tcp });
    // TCP checksum over the pseudo-header.
    let sum = (H1.ip >>> 16) + (H1.ip & 0xffff) + (ETH1_IP >>> 16) + (ETH1_IP & 0xffff) + 6 + 20;
    for (let i = 0; i < 20; i += 2) sum += pkt.readUInt16BE(20 + i);
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    pkt.writeUInt16BE(~sum & 0xffff, 36);
    r.ports.h1.inject([ipFrame(ETH1_MAC, H1.mac, withOptions(pkt, [7, 15, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))]);
    const out = r.drain().h1;
    expect(out).toHaveLength(1);
    const b = parseFrame(out[0]).ipBytes as Buffer;
    expect(ipv4Check(b, 0, b.length)).toBe(CHECK_OK);
    expect([b[0], b[9], b.length]).toEqual([0x49, 6, 56]);
    expect([...b.subarray(20, 23)]).toEqual([7, 15, 12]);
    expect([b.readUInt32BE(23), b.readUInt32BE(27)]).toEqual([ETH1_IP, ETH1_IP]);
    expect(b[36 + 13] & 0x04).toBe(0x04); // RST
    expect(r.counters().tcpResets).toBe(1);
  });
});
