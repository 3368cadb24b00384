/**
 * The router's DHCP server (src/elements/router/dhcp.ts) message by message: the
 * exchanges of RFC 2131 §3.1 and §4.3, the replies' fields and options, where replies go
 * (§4.1), and what a malformed message does (counted, nothing sent, no exception).
 */
import { describe, expect, it } from "vitest";
import { DhcpServer, type DhcpSink, OFFER_HOLD_MS } from "../../src/elements/router/dhcp.js";
import { parseIp } from "../../src/wire/ipv4addr.js";

const SERVER = parseIp("10.0.0.1") >>> 0;
const MAC_A = 0x020000000a01;
const MAC_B = 0x020000000b02;

interface Sent {
  ethDst: string;
  ipSrc: string;
  ipDst: string;
  op: number;
  xid: number;
  yiaddr: string;
  flags: number;
  options: Map<number, Buffer>;
  unicastVia?: string;
}

const ip = (b: Buffer, o: number): string => [...b.subarray(o, o + 4)].join(".");

class Sink implements DhcpSink {
  readonly pool = Buffer.alloc(4096);
  sent: Sent[] = [];
  alloc(): number {
    return 16;
  }
  push(frame: number, len: number): void {
    this.sent.push(
      this.decode(frame + 14, len - 14, undefined, [...this.pool.subarray(frame, frame + 6)].map((x) => x.toString(16).padStart(2, "0")).join(":")),
    );
  }
  unicast(ipOff: number, ipLen: number, dst: number): void {
    this.sent.push(this.decode(ipOff, ipLen, [dst >>> 24, (dst >>> 16) & 255, (dst >>> 8) & 255, dst & 255].join("."), ""));
  }
  private decode(i: number, len: number, via: string | undefined, ethDst: string): Sent {
    const p = this.pool;
    expect(p.readUInt16BE(i + 2)).toBe(len);
    expect(p.readUInt16BE(i + 20)).toBe(67);
    expect(p.readUInt16BE(i + 22)).toBe(68);
    const b = i + 28;
    const options = new Map<number, Buffer>();
    let o = b + 240;
    while (p[o] !== 255) {
      options.set(p[o], Buffer.from(p.subarray(o + 2, o + 2 + p[o + 1])));
      o += 2 + p[o + 1];
    }
    return {
      ethDst,
      ipSrc: ip(p, i + 12),
      ipDst: ip(p, i + 16),
      op: p[b],
      xid: p.readUInt32BE(b + 4),
      flags: p.readUInt16BE(b + 10),
      yiaddr: ip(p, b + 16),
      options,
      unicastVia: via,
    };
  }
}

/** A DHCP message from a client, in a UDP datagram at offset 0 (8-byte UDP header first). */
function msg(type: number, mac: number, opts: { xid?: number; ciaddr?: string; requested?: string; serverId?: string; broadcast?: boolean } = {}): Buffer {
  const b = Buffer.alloc(8 + 300);
  const d = 8;
  b[d] = 1;
  b[d + 1] = 1;
  b[d + 2] = 6;
  b.writeUInt32BE(opts.xid ?? 0x1234, d + 4);
  if (opts.broadcast) b.writeUInt16BE(0x8000, d + 10);
  if (opts.ciaddr) b.writeUInt32BE(parseIp(opts.ciaddr) >>> 0, d + 12);
  b.writeUIntBE(mac, d + 28, 6);
  b.writeUInt32BE(0x63825363, d + 236);
  let o = d + 240;
  b[o++] = 53;
  b[o++] = 1;
  b[o++] = type;
  for (const [code, v] of [
    [50, opts.requested],
    [54, opts.serverId],
  ] as const) {
    if (v === undefined) continue;
    b[o++] = code;
    b[o++] = 4;
    b.writeUInt32BE(parseIp(v) >>> 0, o);
    o += 4;
  }
  b[o] = 255;
  return b;
}

function server(range = "10.0.0.100-10.0.0.101"): DhcpServer {
  return new DhcpServer("cni0", { range, leaseTime: 600, dns: ["10.96.0.10"] }, SERVER, 24);
}

const feed = (d: DhcpServer, sink: Sink, m: Buffer, now = 0): Sent | undefined => {
  sink.sent = [];
  d.input(m, 0, m.length, 0x02aabbccddee, sink, now);
  return sink.sent[0];
};

describe("DHCP server", () => {
  it("DISCOVER, OFFER, REQUEST, ACK: the lowest free address, the lease and its options, unicast to chaddr", () => {
    const d = server();
    const sink = new Sink();
    const offer = feed(d, sink, msg(1, MAC_A, { xid: 77 })) as Sent;
    expect(offer).toMatchObject({ op: 2, xid: 77, yiaddr: "10.0.0.100", ipSrc: "10.0.0.1", ipDst: "10.0.0.100", ethDst: "02:00:00:00:0a:01" });
    expect(offer.options.get(53)).toEqual(Buffer.from([2]));
    expect(ip(offer.options.get(54) as Buffer, 0)).toBe("10.0.0.1");
    const ack = feed(d, sink, msg(3, MAC_A, { xid: 78, requested: "10.0.0.100", serverId: "10.0.0.1" })) as Sent;
    expect(ack).toMatchObject({ op: 2, xid: 78, yiaddr: "10.0.0.100" });
    expect(ack.options.get(53)).toEqual(Buffer.from([5]));
    expect((ack.options.get(51) as Buffer).readUInt32BE(0)).toBe(600);
    expect((ack.options.get(58) as Buffer).readUInt32BE(0)).toBe(300);
    expect((ack.options.get(59) as Buffer).readUInt32BE(0)).toBe(525);
    expect(ip(ack.options.get(1) as Buffer, 0)).toBe("255.255.255.0");
    expect(ip(ack.options.get(3) as Buffer, 0)).toBe("10.0.0.1");
    expect(ip(ack.options.get(6) as Buffer, 0)).toBe("10.96.0.10");
    expect(d.leases(1000)).toEqual([{ interface: "cni0", mac: "02:00:00:00:0a:01", ip: "10.0.0.100", state: "bound", expiresInS: 599 }]);
    // The same client again gets the same address.
    expect(feed(d, sink, msg(1, MAC_A))?.yiaddr).toBe("10.0.0.100");
  });

  it("the broadcast flag, a NAK and a renewal go where RFC 2131 §4.1 says", () => {
    const d = server();
    const sink = new Sink();
    expect(feed(d, sink, msg(1, MAC_A, { broadcast: true }))).toMatchObject({ ethDst: "ff:ff:ff:ff:ff:ff", ipDst: "255.255.255.255", flags: 0x8000 });
    const nak = feed(d, sink, msg(3, MAC_A, { requested: "10.0.0.101", serverId: "10.0.0.1" })) as Sent;
    expect(nak).toMatchObject({ yiaddr: "0.0.0.0", ethDst: "ff:ff:ff:ff:ff:ff", ipDst: "255.255.255.255" });
    expect(nak.options.get(53)).toEqual(Buffer.from([6]));
    feed(d, sink, msg(3, MAC_A, { requested: "10.0.0.100", serverId: "10.0.0.1" }));
    const renew = feed(d, sink, msg(3, MAC_A, { ciaddr: "10.0.0.100" })) as Sent;
    expect(renew).toMatchObject({ unicastVia: "10.0.0.100", ipDst: "10.0.0.100", yiaddr: "10.0.0.100" });
    // Renewing an address it does not hold: NAK.
    expect(feed(d, sink, msg(3, MAC_B, { ciaddr: "10.0.0.100" }))?.options.get(53)).toEqual(Buffer.from([6]));
  });

  it("an offer is released when the client picks another server, or after the hold time; RELEASE frees a lease; the pool runs out", () => {
    const d = server();
    const sink = new Sink();
    feed(d, sink, msg(1, MAC_A));
    expect(feed(d, sink, msg(3, MAC_A, { requested: "10.0.0.100", serverId: "10.0.0.9" }))).toBeUndefined();
    expect(d.leases(0)).toEqual([]);
    feed(d, sink, msg(1, MAC_A));
    expect(d.leases(OFFER_HOLD_MS + 1)).toEqual([]);
    feed(d, sink, msg(1, MAC_A));
    feed(d, sink, msg(3, MAC_A, { requested: "10.0.0.100", serverId: "10.0.0.1" }));
    expect(feed(d, sink, msg(1, MAC_B))?.yiaddr).toBe("10.0.0.101");
    expect(feed(d, sink, msg(1, 0x020000000c03))).toBeUndefined();
    expect(d.stats.poolExhausted).toBe(1);
    expect(feed(d, sink, msg(7, MAC_A, { ciaddr: "10.0.0.100" }))).toBeUndefined();
    expect(d.leases(0).map((l) => l.ip)).toEqual(["10.0.0.101"]);
    expect(d.stats.releases).toBe(1);
  });

  it("malformed messages are counted and answered with nothing", () => {
    const d = server();
    const sink = new Sink();
    const good = msg(1, MAC_A);
    const cases: Buffer[] = [
      good.subarray(0, 100), // shorter than the fixed fields
      Buffer.from(good).fill(0, 8 + 236, 8 + 240), // no magic cookie
      (() => {
        const b = Buffer.from(good);
        b[8] = 2; // a BOOTREPLY
        return b;
      })(),
      (() => {
        const b = Buffer.from(good);
        b[8 + 240] = 12; // an option whose length runs past the end
        b[8 + 241] = 250;
        return b.subarray(0, 8 + 260);
      })(),
      (() => {
        const b = Buffer.from(good);
        b[8 + 240] = 255; // no message type
        return b;
      })(),
    ];
    for (const m of cases) expect(feed(d, sink, m)).toBeUndefined();
    expect(d.stats.malformed).toBe(cases.length);
    expect(d.leases(0)).toEqual([]);
  });

  it("a range outside the interface's subnet, holding its address, or reversed is refused saying so", () => {
    expect(() => server("10.0.1.5-10.0.1.9")).toThrow(/dhcp.range 10.0.1.5-10.0.1.9 is not inside 10.0.0.1\/24/);
    expect(() => server("10.0.0.1-10.0.0.9")).toThrow(/holds the interface's own address 10.0.0.1/);
    expect(() => server("10.0.0.9-10.0.0.5")).toThrow(/first address is above the last/);
    expect(() => server("10.0.0.5")).toThrow(/is not FIRST-LAST/);
  });
});
