/**
 * The fuzz generator: deterministic, seeded frames built with the wire codecs of
 * src/wire, then mutated where parsers look (lengths, IHL, options, flags, offsets,
 * tags, checksums), so that most frames get past the first checks and reach the
 * deeper paths of an element.
 *
 * Valid frames: Ethernet with no tag, one 802.1Q tag, a priority tag, an 802.1ad
 * (0x88a8) outer tag over an 802.1Q one (QinQ), or a stack of three; ARP requests,
 * replies and announcements; IPv4 with options (NOP, EOL, record route, timestamp,
 * loose/strict source route, router alert) carrying ICMP echo, ICMP errors quoting a
 * packet, UDP, TCP (with options), other protocols; fragments of a datagram (in order,
 * reordered, duplicated, overlapping); non-IP EtherTypes and 802.3 lengths; VXLAN and
 * IPIP outer headers (gen.vxlanDatagram, gen.ipipPacket); with offloads, a virtio-net
 * header in front of the frame (zero, a correct partial checksum, a correct TSO
 * super-frame, or random fields).
 *
 * Everything comes from one Rng: the same seed gives the same frames, byte for byte.
 * Frames are fresh Buffers (the generator is test code: it allocates freely).
 */
import {
  ARP_OPER_REPLY,
  ARP_OPER_REQUEST,
  ETH_HEADER_LEN,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_QINQ,
  ETHERTYPE_VLAN,
  IP_PROTO_ICMP,
  IP_PROTO_IPIP,
  IP_PROTO_TCP,
  IP_PROTO_UDP,
  checksumFold,
  BPDU_TYPE_CONFIG,
  BPDU_TYPE_RST,
  BPDU_TYPE_TCN,
  emitArp,
  emitBpdu,
  emitEthernet,
  emitIcmp,
  emitIpv4,
  emitTcp,
  emitUdp,
  icmpFillChecksum,
  icmpRestEcho,
  ipv4FillChecksum,
  pseudoHeaderSum,
  readU16,
  tcpFillChecksum,
  udpFillChecksum,
  writeMac,
  writeU16,
  writeU32,
} from "../../src/wire/index.js";

/** xoshiro128** seeded through splitmix32: fast, 2^128 period, reproducible from one number. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(readonly seed: number) {
    let s = seed >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next() | 1;
  }

  /** A uniform uint32. */
  u32(): number {
    const r = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return r;
  }

  /** [0, 1). */
  float(): number {
    return this.u32() / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.float() < p;
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }

  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }

  /** A length skewed toward small values (most of the bytes parsers read are near the start). */
  skewed(max: number): number {
    const f = this.float();
    return Math.floor(f * f * f * (max + 1));
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** What the element under test knows: the addresses, MACs and ports that lead somewhere. */
export interface World {
  /** Interesting MACs: stations, router interfaces. Group, zero and reserved ones are added here. */
  macs: number[];
  /** Interesting IPv4 addresses: hosts, router addresses, VIPs, subnet broadcasts, remote ones. */
  addrs: number[];
  /** Interesting L4 ports (services, backends). */
  ports: number[];
  /** VLAN ids configured on the switch. */
  vlans: number[];
  /** Service VIP -> backends: a reply to a flow toward a VIP comes from one of them. */
  backends?: Map<number, Array<{ addr: number; port: number }>>;
  /** Masquerade: flows from `net/len` leave from `addr`; replies come back to it. */
  masq?: { net: number; len: number; addr: number };
}

/** Where a frame enters: the stations behind that port and the router MAC on its VLAN. */
export interface Where {
  macs: number[];
  /** Router interface MAC on the port's VLAN, 0 when none. */
  gw: number;
  /** Addresses of the stations behind the port. */
  addrs: number[];
}

const BCAST = 0xffffffffffff;
/** Group, zero, IEEE 802.1D reserved (STP, LLDP), IPv4 multicast MACs. */
const ODD_MACS = [BCAST, 0, 0x0180c2000000, 0x0180c200000e, 0x01005e000001, 0x333300000001, 0x0180c2000010];
const ODD_ADDRS = [0, 0xffffffff, 0x7f000001, 0xe0000001, 0xe00000fb, 0xf0000001, 0x08080808, 0xc0a80001, 0x0a000000, 0xa9fe0001];
const TCP_FIN = 0x01;
const TCP_SYN = 0x02;
const TCP_RST = 0x04;
const TCP_PSH = 0x08;
const TCP_ACK = 0x10;
const TCP_FLAG_SETS = [TCP_SYN, TCP_SYN | TCP_ACK, TCP_ACK, TCP_ACK | TCP_PSH, TCP_FIN | TCP_ACK, TCP_RST, TCP_RST | TCP_ACK, 0, 0xff];

/** A remembered flow, so that replies (established, un-NAT paths) are generated too. */
interface Flow {
  src: number;
  dst: number;
  proto: number;
  sport: number;
  dport: number;
}

/** Frames with the parts they were built from (for descriptions in failures). */
export interface GenFrame {
  /** The frame (no vnet header). */
  frame: Buffer;
  /** The 12-byte virtio-net header, when offloads are on. */
  vnet: Buffer | null;
  /** One line: what was built and which mutations were applied. */
  what: string;
}

export interface GenOptions {
  /** Offloads: frames get a virtio-net header (and may be TSO super-frames). */
  vnet: boolean;
  /** Longest frame the port takes (slot room). */
  maxLen: number;
  /** Probability that a frame is mutated at all (default 0.6). */
  mutateRate?: number;
  /** Make spanning tree BPDUs too (config, TCN, RST, unknown types; the switch's harness). */
  bpdus?: boolean;
}

export class FrameGen {
  private readonly flows: Flow[] = [];
  private readonly fragQueue: Array<{ frame: Buffer; what: string }> = [];
  /** Where the queued fragments come from: the harness sends them in through that port. */
  fragWhere: Where | null = null;
  private ident = 1;
  readonly vnet: boolean;
  readonly maxLen: number;
  readonly mutateRate: number;
  readonly bpdus: boolean;

  constructor(
    readonly rng: Rng,
    readonly world: World,
    opts: GenOptions,
  ) {
    this.vnet = opts.vnet;
    this.maxLen = opts.maxLen;
    this.mutateRate = opts.mutateRate ?? 0.5;
    this.bpdus = opts.bpdus ?? false;
  }

  // ---------------------------------------------------------------------------
  // Picks

  mac(where: Where | null, role: "src" | "dst"): number {
    const r = this.rng;
    const x = r.float();
    if (where !== null) {
      if (role === "src" && x < 0.75 && where.macs.length !== 0) return r.pick(where.macs);
      if (role === "dst" && x < 0.5 && where.gw !== 0) return where.gw;
    }
    if (x < 0.85) return r.pick(this.world.macs);
    if (x < 0.95) return r.pick(ODD_MACS);
    return r.u32() * 65536 + (r.u32() & 0xffff);
  }

  addr(where: Where | null, role: "src" | "dst"): number {
    const r = this.rng;
    const x = r.float();
    if (where !== null && role === "src" && x < 0.6 && where.addrs.length !== 0) return r.pick(where.addrs);
    if (x < 0.85) return r.pick(this.world.addrs);
    if (x < 0.93) return r.pick(ODD_ADDRS);
    return r.u32();
  }

  port(): number {
    const r = this.rng;
    const x = r.float();
    if (x < 0.4 && this.world.ports.length !== 0) return r.pick(this.world.ports);
    if (x < 0.5) return r.pick([0, 1, 7, 53, 80, 443, 1023, 1024, 32768, 60999, 65535]);
    return r.range(1024, 65535);
  }

  // ---------------------------------------------------------------------------
  // Frames

  /** True while fragments of a datagram are waiting to be sent. */
  get fragPending(): boolean {
    return this.fragQueue.length !== 0;
  }

  /** One Ethernet frame for a port (with its vnet header when offloads are on). */
  frame(where: Where | null): GenFrame {
    const r = this.rng;
    // Fragments of an earlier datagram come out one by one, interleaved with the rest.
    // One datagram's fragments at a time, mostly back to back: the reassembler holds 16
    // datagrams, and interleaving many sets would keep it full of unfinished ones.
    if (this.fragQueue.length !== 0 && r.chance(0.8)) {
      const q = this.fragQueue.shift() as { frame: Buffer; what: string };
      return this.finish(q.frame, q.what, where, 0.05);
    }
    if (this.bpdus && r.chance(0.06)) return this.finish(this.bpduFrame(where), "bpdu", where);
    const x = r.float();
    let f: Buffer;
    let what: string;
    if (x < 0.04) {
      f = r.bytes(r.skewed(Math.min(this.maxLen, 200)));
      what = "random bytes";
    } else if (x < 0.14) {
      f = this.arpFrame(where);
      what = "arp";
    } else if (x < 0.19) {
      f = this.otherFrame(where);
      what = "non-ip";
    } else if (x < 0.27 && this.fragQueue.length === 0) {
      const g = this.fragments(where);
      return this.finish(g.frame, g.what, where, 0.05);
    } else if (this.vnet && x < 0.35) {
      const g = this.superFrame(where);
      return g;
    } else {
      const p = this.ipPacket(where);
      f = this.ethWrap(p.pkt, where, ETHERTYPE_IPV4);
      what = p.what;
    }
    return this.finish(f, what, where);
  }

  /** Tags, mutations, length cap, vnet header. */
  private finish(f: Buffer, what: string, _where: Where | null, mutate = this.mutateRate): GenFrame {
    const r = this.rng;
    if (r.chance(mutate === this.mutateRate ? 0.25 : 0.05)) {
      const t = this.tag(f);
      f = t.frame;
      what += ` ${t.what}`;
    }
    if (r.chance(mutate)) {
      const m = this.mutateFrame(f);
      f = m.frame;
      what += ` [${m.what}]`;
    }
    if (f.length > this.maxLen) f = f.subarray(0, this.maxLen);
    return { frame: f, vnet: this.vnet ? this.vnetHeader(f) : null, what };
  }

  private ethWrap(payload: Buffer, where: Where | null, etherType: number): Buffer {
    const f = Buffer.alloc(ETH_HEADER_LEN + payload.length);
    emitEthernet({ dstAddr: this.mac(where, "dst"), srcAddr: this.mac(where, "src"), etherType }, f, 0);
    payload.copy(f, ETH_HEADER_LEN);
    // Ethernet padding to 60 bytes, as a NIC adds it (some of the time: TAPs do not).
    if (f.length < 60 && this.rng.chance(0.4)) return Buffer.concat([f, Buffer.alloc(60 - f.length)]);
    return f;
  }

  /** Pushes one tag, a QinQ pair, a priority tag or a stack of three, after the MACs. */
  private tag(f: Buffer): { frame: Buffer; what: string } {
    const r = this.rng;
    if (f.length < 12) return { frame: f, what: "" };
    const vid = (): number => (r.chance(0.8) ? r.pick(this.world.vlans.length ? this.world.vlans : [1]) : r.pick([0, 1, 4094, 4095, r.int(4096)]));
    const tags: Array<[number, number]> = [];
    const x = r.float();
    if (x < 0.55) tags.push([ETHERTYPE_VLAN, vid()]);
    else if (x < 0.7) tags.push([ETHERTYPE_VLAN, 0]);
    else if (x < 0.85) tags.push([ETHERTYPE_QINQ, vid()], [ETHERTYPE_VLAN, vid()]);
    else if (x < 0.92) tags.push([ETHERTYPE_QINQ, vid()]);
    else tags.push([ETHERTYPE_VLAN, vid()], [ETHERTYPE_VLAN, vid()], [ETHERTYPE_QINQ, vid()]);
    const out = Buffer.alloc(f.length + 4 * tags.length);
    f.copy(out, 0, 0, 12);
    let p = 12;
    for (const [tpid, v] of tags) {
      writeU16(out, p, tpid);
      writeU16(out, p + 2, (r.int(8) << 13) | (r.chance(0.05) ? 0x1000 : 0) | v);
      p += 4;
    }
    f.copy(out, p, 12);
    return { frame: out, what: tags.map(([t, v]) => `${t === ETHERTYPE_QINQ ? "ad" : "q"}${v}`).join("/") };
  }

  arpFrame(where: Where | null): Buffer {
    const r = this.rng;
    const oper = r.chance(0.1) ? r.int(5) : r.chance(0.6) ? ARP_OPER_REQUEST : ARP_OPER_REPLY;
    const sha = this.mac(where, "src");
    const spa = this.addr(where, "src");
    const tpa = r.chance(0.1) ? spa : this.addr(where, "dst");
    const a = Buffer.alloc(28);
    emitArp({ oper, sha, spa, tha: r.chance(0.5) ? 0 : this.mac(where, "dst"), tpa }, a, 0);
    const f = Buffer.alloc(ETH_HEADER_LEN + 28);
    const dst = oper === ARP_OPER_REQUEST && r.chance(0.8) ? BCAST : this.mac(where, "dst");
    emitEthernet({ dstAddr: dst, srcAddr: r.chance(0.9) ? sha : this.mac(where, "src"), etherType: ETHERTYPE_ARP }, f, 0);
    a.copy(f, ETH_HEADER_LEN);
    if (r.chance(0.5)) return Buffer.concat([f, Buffer.alloc(60 - f.length)]);
    return f;
  }

  /** A BPDU (802.1D 9.3): priorities, ids, costs and timers from small sets and at random. */
  private bpduFrame(where: Where | null): Buffer {
    const r = this.rng;
    const f = Buffer.alloc(60);
    const prio = (): number => r.pick([0, 4096, 32768, 61440, 65535, r.int(65536)]);
    const id = (): number => (r.chance(0.5) ? r.pick(this.world.macs) : r.pick([0x020000000001, 0x0273000000ff, r.u32() * 65536 + r.int(65536)]));
    const units = (): number => r.pick([0, 1, 256, 512, 1536, 3840, 5120, 65535, r.int(65536)]);
    const type = r.pick([BPDU_TYPE_CONFIG, BPDU_TYPE_CONFIG, BPDU_TYPE_CONFIG, BPDU_TYPE_TCN, BPDU_TYPE_RST, r.int(256)]);
    emitBpdu(
      {
        src: this.mac(where, "src"),
        version: 0,
        type: type === BPDU_TYPE_TCN ? BPDU_TYPE_TCN : BPDU_TYPE_CONFIG,
        tc: r.chance(0.3),
        tca: r.chance(0.2),
        rootPriority: prio(),
        rootMac: id(),
        rootPathCost: r.pick([0, 2, 4, 19, 100, r.u32()]),
        bridgePriority: prio(),
        bridgeMac: id(),
        portId: r.pick([0x8001, 0x8002, 0x0001, 0xf00f, r.int(65536)]),
        messageAge: 0,
        maxAge: 0,
        helloTime: 0,
        forwardDelay: 0,
      },
      f,
      0,
    );
    if (type !== BPDU_TYPE_TCN) {
      for (const at of [27, 29, 31, 33]) writeU16(f, 17 + at, units());
      f[17 + 3] = type;
      if (type === BPDU_TYPE_RST) {
        f[17 + 2] = 2;
        writeU16(f, 12, 39);
      }
    }
    return r.chance(0.3) ? f.subarray(0, r.pick([17, 21, 38, 52])) : f;
  }

  private otherFrame(where: Where | null): Buffer {
    const r = this.rng;
    const et = r.pick([0x86dd, 0x88cc, 0x8863, 0x0842, 0x88e5, 0x0000, 0x002e, 0x05dc, 0x0600, 0xffff]);
    const f = Buffer.alloc(ETH_HEADER_LEN + r.skewed(200));
    for (let i = ETH_HEADER_LEN; i < f.length; i++) f[i] = r.u32() & 0xff;
    emitEthernet({ dstAddr: this.mac(where, "dst"), srcAddr: this.mac(where, "src"), etherType: et }, f, 0);
    return f;
  }

  // ---------------------------------------------------------------------------
  // IPv4

  /** IPv4 options of `len` bytes (a multiple of 4): well formed, or bogus lengths. */
  private ipOptions(len: number): Uint8Array {
    const r = this.rng;
    const o = new Uint8Array(len);
    let p = 0;
    while (p < len) {
      const room = len - p;
      const x = r.float();
      if (x < 0.2) {
        o[p++] = 1; // NOP
      } else if (x < 0.25) {
        o[p++] = 0; // EOL: the rest is padding
        while (p < len) o[p++] = r.chance(0.8) ? 0 : r.u32() & 0xff;
      } else if (x < 0.75 && room >= 3) {
        // A well-formed option: RR (7), TS (68), LSRR (131), SSRR (137), RA (148), security (130).
        const t = r.pick([7, 68, 131, 137, 148, 130, 0x19]);
        const l = t === 148 ? 4 : Math.min(room, r.pick([3, 7, 11, 4 * r.range(1, 9) + 3]));
        if (l > room) {
          o[p++] = 1;
          continue;
        }
        o[p] = t;
        o[p + 1] = l;
        if (l >= 3) o[p + 2] = r.chance(0.7) ? 4 : r.u32() & 0xff; // pointer
        for (let i = 3; i < l; i++) o[p + i] = r.u32() & 0xff;
        p += l;
      } else {
        // Bogus: a length of 0, 1, or past the header; or a type alone at the end.
        o[p] = r.pick([7, 68, 131, 137, 148, 0x83, r.u32() & 0xff]);
        if (p + 1 < len) o[p + 1] = r.pick([0, 1, 2, 255, room + 4, r.u32() & 0xff]);
        p += 2;
      }
    }
    return o;
  }

  /** An IPv4 packet (no link header): a fresh flow, or a reply to a remembered one. */
  ipPacket(where: Where | null): { pkt: Buffer; what: string } {
    const r = this.rng;
    let flow: Flow | null = null;
    if (this.flows.length !== 0 && r.chance(0.35)) {
      // A reply, preferably one whose sender sits behind this port (it must come in there).
      for (let tries = 0; tries < 8 && flow === null; tries++) {
        const f = this.reply(r.pick(this.flows));
        if (where === null || where.addrs.includes(f.src) || tries === 7) flow = f;
      }
    }
    const x = r.float();
    const proto = flow?.proto ?? (x < 0.3 ? IP_PROTO_TCP : x < 0.6 ? IP_PROTO_UDP : x < 0.9 ? IP_PROTO_ICMP : r.pick([IP_PROTO_IPIP, 47, 50, 132, 2, 0, 255]));
    const src = flow?.src ?? this.addr(where, "src");
    const dst = flow?.dst ?? this.addr(where, "dst");
    const optLen = r.chance(0.15) ? 4 * r.range(1, 10) : 0;
    let l4: Buffer;
    let what: string;
    const sport = flow?.sport ?? this.port();
    const dport = flow?.dport ?? this.port();
    if (proto === IP_PROTO_TCP) {
      const tcpOpt = r.chance(0.3) ? this.tcpOptions(4 * r.range(1, 10)) : new Uint8Array(0);
      const data = r.bytes(r.skewed(Math.max(0, Math.min(1500, this.maxLen - 100))));
      // New flows mostly open with SYN, replies answer SYN|ACK or carry ACKs, so conntrack
      // sees connections, not just segments it cannot place.
      const flags = r.chance(0.4)
        ? flow === null
          ? TCP_SYN
          : r.pick([TCP_SYN | TCP_ACK, TCP_ACK, TCP_ACK | TCP_PSH, TCP_FIN | TCP_ACK])
        : r.pick(TCP_FLAG_SETS);
      l4 = Buffer.alloc(20 + tcpOpt.length + data.length);
      emitTcp({ srcPort: sport, dstPort: dport, seq: r.u32(), ack: r.u32(), flags, window: r.int(65536), urgent: 0, options: tcpOpt }, l4, 0);
      data.copy(l4, 20 + tcpOpt.length);
      tcpFillChecksum(l4, 0, l4.length, src, dst);
      what = `tcp ${flags.toString(16)}`;
    } else if (proto === IP_PROTO_UDP) {
      const data = r.bytes(r.skewed(Math.max(0, Math.min(1500, this.maxLen - 80))));
      l4 = Buffer.alloc(8 + data.length);
      emitUdp({ srcPort: sport, dstPort: dport, length: l4.length }, l4, 0);
      data.copy(l4, 8);
      if (r.chance(0.85)) udpFillChecksum(l4, 0, src, dst);
      what = "udp";
    } else if (proto === IP_PROTO_ICMP) {
      const t = this.icmpMessage(src, dst, flow);
      l4 = t.msg;
      what = t.what;
    } else {
      l4 = r.bytes(r.skewed(300));
      what = `proto ${proto}`;
    }
    const pkt = Buffer.alloc(20 + optLen + l4.length);
    emitIpv4(
      {
        dscp: r.chance(0.1) ? r.int(64) : 0,
        ecn: r.chance(0.1) ? r.int(4) : 0,
        totalLen: pkt.length,
        ident: this.ident++ & 0xffff,
        df: r.chance(0.4),
        mf: false,
        fragOffset: 0,
        ttl: r.chance(0.1) ? r.pick([0, 1, 2]) : 64,
        protocol: proto,
        srcAddr: src,
        dstAddr: dst,
        options: optLen !== 0 ? this.ipOptions(optLen) : new Uint8Array(0),
      },
      pkt,
      0,
    );
    l4.copy(pkt, 20 + optLen);
    if (proto === IP_PROTO_TCP || proto === IP_PROTO_UDP || (proto === IP_PROTO_ICMP && (l4[0] === 8 || l4[0] === 0))) {
      this.remember({ src, dst, proto, sport: proto === IP_PROTO_ICMP ? readU16(l4, 4) : sport, dport: proto === IP_PROTO_ICMP ? readU16(l4, 4) : dport });
    }
    if (r.chance(0.3)) {
      const m = this.mutateIp(pkt, 0);
      return { pkt: m.pkt, what: `${what}${optLen ? ` opt${optLen}` : ""} [${m.what}]` };
    }
    return { pkt, what: `${what}${optLen ? ` opt${optLen}` : ""}${flow ? " reply" : ""}` };
  }

  private remember(f: Flow): void {
    if (this.flows.length >= 64) this.flows[this.rng.int(64)] = f;
    else this.flows.push(f);
  }

  /** The reply of a flow as the other end sends it (a backend for a VIP, to the masquerade address). */
  private reply(f: Flow): Flow {
    const r = this.rng;
    let src = f.dst;
    let sport = f.dport;
    let dst = f.src;
    const b = this.world.backends?.get(f.dst);
    if (b !== undefined && b.length !== 0 && r.chance(0.8)) {
      const k = r.pick(b);
      src = k.addr;
      sport = f.proto === IP_PROTO_ICMP ? f.sport : k.port;
    }
    const m = this.world.masq;
    if (m !== undefined && r.chance(0.8)) {
      const mask = m.len === 0 ? 0 : (0xffffffff << (32 - m.len)) >>> 0;
      if ((f.src & mask) >>> 0 === m.net && (f.dst & mask) >>> 0 !== m.net) dst = m.addr;
    }
    return { src, dst, proto: f.proto, sport, dport: f.sport };
  }

  private tcpOptions(len: number): Uint8Array {
    const r = this.rng;
    const o = new Uint8Array(len);
    let p = 0;
    while (p < len) {
      const room = len - p;
      const x = r.float();
      if (x < 0.3) o[p++] = 1;
      else if (x < 0.35) {
        o[p++] = 0;
        while (p < len) o[p++] = 0;
      } else if (x < 0.8 && room >= 4) {
        const [t, l] = r.pick([
          [2, 4],
          [3, 3],
          [4, 2],
          [8, 10],
          [5, 10],
          [30, 8],
        ] as Array<[number, number]>);
        if (l > room) {
          o[p++] = 1;
          continue;
        }
        o[p] = t;
        o[p + 1] = l;
        for (let i = 2; i < l; i++) o[p + i] = r.u32() & 0xff;
        p += l;
      } else {
        o[p] = r.u32() & 0xff;
        if (p + 1 < len) o[p + 1] = r.pick([0, 1, 255, room + 1]);
        p += 2;
      }
    }
    return o;
  }

  /** Echo request/reply, an error quoting a packet (often one of a remembered flow), or another type. */
  private icmpMessage(src: number, dst: number, flow: Flow | null): { msg: Buffer; what: string } {
    const r = this.rng;
    const x = r.float();
    if (flow !== null || x < 0.5) {
      const type = flow !== null ? 0 : r.chance(0.85) ? 8 : 0;
      const data = r.bytes(r.skewed(Math.max(0, Math.min(1400, this.maxLen - 100))));
      const m = Buffer.alloc(8 + data.length);
      const id = flow?.sport ?? (r.chance(0.5) ? this.port() : r.int(65536));
      emitIcmp({ type, code: 0, rest: icmpRestEcho(id, r.int(65536)) }, m, 0);
      data.copy(m, 8);
      icmpFillChecksum(m, 0, m.length);
      if (r.chance(0.05)) m[2] ^= 0xff;
      return { msg: m, what: `icmp echo${type === 8 ? "" : " reply"}` };
    }
    if (x < 0.85) {
      // An error about a packet the destination sent to the source (the inverse of src->dst),
      // often one of the flows the elements have seen.
      const type = r.pick([3, 3, 3, 11, 12, 4, 5]);
      const code = type === 3 ? r.pick([0, 1, 3, 4, 13]) : r.int(2);
      let q: Flow;
      if (this.flows.length !== 0 && r.chance(0.7)) {
        const f = r.pick(this.flows);
        q = r.chance(0.5) ? f : this.reply(f);
      } else q = { src: dst, dst: r.chance(0.5) ? src : this.addr(null, "dst"), proto: r.pick([6, 17, 1, 47]), sport: this.port(), dport: this.port() };
      const inner = this.quote(q);
      const m = Buffer.alloc(8 + inner.length);
      emitIcmp({ type, code, rest: type === 3 && code === 4 ? r.pick([0, 68, 576, 1400, 1500]) : 0 }, m, 0);
      inner.copy(m, 8);
      icmpFillChecksum(m, 0, m.length);
      if (r.chance(0.05)) m[2] ^= 0x55;
      return { msg: m, what: `icmp error ${type}/${code}` };
    }
    const m = r.bytes(r.range(0, 40));
    if (m.length >= 8) {
      m[0] = r.pick([13, 14, 15, 17, 18, 19, 30, 40, 200]);
      icmpFillChecksum(m, 0, m.length);
    }
    return { msg: m, what: "icmp other" };
  }

  /** The first bytes of a quoted packet (IPv4 header + 8 bytes or more), sometimes malformed. */
  private quote(q: Flow): Buffer {
    const r = this.rng;
    const optLen = r.chance(0.1) ? 4 * r.range(1, 4) : 0;
    const l4len = r.pick([8, 8, 20, 28, 0, 4]);
    const b = Buffer.alloc(20 + optLen + l4len);
    emitIpv4(
      {
        dscp: 0,
        ecn: 0,
        totalLen: r.chance(0.8) ? b.length + r.skewed(1000) : r.int(65536),
        ident: r.int(65536),
        df: r.chance(0.5),
        mf: r.chance(0.05),
        fragOffset: r.chance(0.05) ? r.int(8192) : 0,
        ttl: r.range(0, 64),
        protocol: q.proto,
        srcAddr: q.src,
        dstAddr: q.dst,
        options: optLen ? this.ipOptions(optLen) : new Uint8Array(0),
      },
      b,
      0,
    );
    const l4 = 20 + optLen;
    if (l4len >= 4) {
      if (q.proto === IP_PROTO_ICMP) {
        b[l4] = r.pick([8, 0, 3]);
        if (l4len >= 8) writeU16(b, l4 + 4, q.sport);
      } else {
        writeU16(b, l4, q.sport);
        writeU16(b, l4 + 2, q.dport);
      }
      if (l4len >= 8) writeU16(b, l4 + 6, r.int(65536));
    }
    if (r.chance(0.1)) b[0] = r.u32() & 0xff;
    return b;
  }

  /**
   * A datagram cut into fragments: the first is returned, the others queued (reordered,
   * duplicated, overlapping or missing some of the time).
   */
  private fragments(where: Where | null): { frame: Buffer; what: string } {
    const r = this.rng;
    const p = this.ipPacket(where).pkt;
    const hl = (p[0] & 0x0f) << 2;
    if (p[0] >> 4 !== 4 || hl < 20 || p.length < hl + 16 || readU16(p, 2) !== p.length) {
      return { frame: this.ethWrap(p, where, ETHERTYPE_IPV4), what: "frag-source malformed" };
    }
    // Grow it first sometimes so that reassembly sees big datagrams (up to the header limit).
    let data = p.subarray(hl);
    if (r.chance(0.3)) data = Buffer.concat([data, r.bytes(r.range(1000, 4000))]);
    const header = Buffer.from(p.subarray(0, hl));
    // Mostly MTU-sized pieces, sometimes small ones; never more than 64 of them.
    const units = Math.max(1, Math.floor(Math.min(1400, this.maxLen - 60 - hl) / 8));
    let step = 8 * (r.chance(0.85) ? r.range(Math.max(1, units >> 1), units) : r.range(1, units));
    step = Math.max(step, 8 * Math.ceil(data.length / 64 / 8));
    const frags: Buffer[] = [];
    const mfBase = r.chance(0.05) ? 0x2000 : 0; // a fragment of a fragment
    const offBase = r.chance(0.05) ? r.int(8000) : 0;
    for (let at = 0; at < data.length; at += step) {
      const end = Math.min(data.length, at + step);
      const last = end === data.length;
      const ov = r.chance(0.05) ? 8 * r.range(1, 3) : 0; // overlap the previous piece
      const from = Math.max(0, at - ov);
      const f = Buffer.alloc(hl + end - from);
      header.copy(f);
      data.copy(f, hl, from, end);
      writeU16(f, 2, f.length);
      writeU16(f, 6, ((f[6] & 0x40) << 8) | (last ? mfBase : 0x2000) | ((offBase + (from >> 3)) & 0x1fff));
      ipv4FillChecksum(f, 0);
      frags.push(f);
    }
    if (r.chance(0.3)) frags.reverse();
    // biome-ignore lint/suspicious/noDuplicateElseIf: each chance() is a new draw
    else if (r.chance(0.3)) frags.sort(() => r.float() - 0.5);
    if (r.chance(0.1)) frags.push(frags[r.int(frags.length)]);
    if (r.chance(0.1) && frags.length > 1) frags.splice(r.int(frags.length), 1);
    const eth = frags.map((f) => this.ethWrap(f, where, ETHERTYPE_IPV4));
    // All pieces share the first one's MACs (one sender), as a host sends them.
    for (let i = 1; i < eth.length; i++) eth[0].copy(eth[i], 0, 0, 12);
    for (let i = 1; i < eth.length; i++) this.fragQueue.push({ frame: eth[i], what: `fragment ${i}/${eth.length}` });
    this.fragWhere = where;
    while (this.fragQueue.length > 200) this.fragQueue.shift();
    return { frame: eth[0], what: `fragment 0/${eth.length}` };
  }

  /** A TCP super-frame with a correct TSO vnet header (or a slightly wrong one). */
  private superFrame(where: Where | null): GenFrame {
    const r = this.rng;
    const mss = r.pick([1448, 1460, 536, 1400, 100, r.range(1, 9000)]);
    const payload = r.range(1, Math.max(1, Math.min(65535 - 60, this.maxLen - 100)));
    const src = this.addr(where, "src");
    const dst = this.addr(where, "dst");
    const tcp = Buffer.alloc(32 + payload);
    emitTcp(
      {
        srcPort: this.port(),
        dstPort: this.port(),
        seq: r.u32(),
        ack: r.u32(),
        flags: r.pick([TCP_ACK, TCP_ACK | TCP_PSH, TCP_SYN, TCP_ACK | TCP_FIN]),
        window: 512,
        urgent: 0,
        options: Uint8Array.from([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]),
      },
      tcp,
      0,
    );
    r.bytes(payload).copy(tcp, 32);
    const ip = Buffer.alloc(20 + tcp.length);
    emitIpv4(
      {
        dscp: 0,
        ecn: 0,
        totalLen: ip.length,
        ident: this.ident++ & 0xffff,
        df: r.chance(0.9),
        mf: false,
        fragOffset: 0,
        ttl: 64,
        protocol: IP_PROTO_TCP,
        srcAddr: src,
        dstAddr: dst,
        options: new Uint8Array(0),
      },
      ip,
      0,
    );
    tcp.copy(ip, 20);
    // CHECKSUM_PARTIAL: the field holds the pseudo-header seed.
    writeU16(ip, 36, checksumFold(pseudoHeaderSum(src, dst, IP_PROTO_TCP, tcp.length)));
    let f = this.ethWrap(ip, where, ETHERTYPE_IPV4);
    let what = `tso ${payload}/${mss}`;
    if (r.chance(0.2)) {
      const t = this.tag(f);
      f = t.frame;
      what += ` ${t.what}`;
    }
    const l3 = readU16(f, 12) === ETHERTYPE_VLAN || readU16(f, 12) === ETHERTYPE_QINQ ? 18 : 14;
    const v = Buffer.alloc(12);
    v[0] = 1; // NEEDS_CSUM
    v[1] = r.chance(0.9) ? 1 : r.pick([4, 0x81, 3, 0xff]); // TCPV4, or TCPV6/ECN/bogus
    writeU16le(v, 2, l3 + 20 + 32);
    writeU16le(v, 4, mss);
    writeU16le(v, 6, l3 + 20);
    writeU16le(v, 8, 16);
    if (r.chance(0.3)) {
      const m = this.mutateVnet(v, f.length);
      what += ` [${m}]`;
    }
    if (r.chance(0.2)) {
      const m = this.mutateFrame(f);
      f = m.frame;
      what += ` [${m.what}]`;
    }
    if (f.length > this.maxLen) f = f.subarray(0, this.maxLen);
    return { frame: f, vnet: v, what };
  }

  /** The vnet header of a frame: none, a correct partial checksum, or random fields. */
  private vnetHeader(f: Buffer): Buffer {
    const r = this.rng;
    const v = Buffer.alloc(12);
    const x = r.float();
    if (x < 0.6) return v;
    if (x < 0.9) {
      // A correct CHECKSUM_PARTIAL for TCP/UDP when the frame has one, else a made-up one.
      const l3 = f.length >= 18 && (readU16(f, 12) === ETHERTYPE_VLAN || readU16(f, 12) === ETHERTYPE_QINQ) ? 18 : 14;
      if (f.length >= l3 + 20 && f[l3] >> 4 === 4) {
        const hl = (f[l3] & 0x0f) << 2;
        const proto = f[l3 + 9];
        const l4 = l3 + hl;
        const tot = readU16(f, l3 + 2);
        const field = proto === IP_PROTO_TCP ? 16 : proto === IP_PROTO_UDP ? 6 : 2;
        if (l4 + field + 2 <= f.length && tot > hl && l3 + tot <= f.length) {
          v[0] = 1;
          writeU16le(v, 6, l4);
          writeU16le(v, 8, field);
          if (proto === IP_PROTO_TCP || proto === IP_PROTO_UDP) {
            writeU16(f, l4 + field, checksumFold(pseudoHeaderSum(readU32be(f, l3 + 12), readU32be(f, l3 + 16), proto, tot - hl)));
          }
          return v;
        }
      }
      v[0] = r.chance(0.5) ? 1 : 2;
      writeU16le(v, 6, r.skewed(f.length + 10));
      writeU16le(v, 8, r.pick([6, 16, 2, r.int(65536)]));
      return v;
    }
    this.mutateVnet(v, f.length);
    return v;
  }

  private mutateVnet(v: Buffer, len: number): string {
    const r = this.rng;
    const k = r.int(6);
    switch (k) {
      case 0:
        v[1] = r.pick([1, 4, 0x81, 0x84, 3, 5, 0xff]);
        writeU16le(v, 4, r.pick([0, 1, 8, 536, 1448, 65535, r.int(65536)]));
        return "vnet gso";
      case 1:
        writeU16le(v, 6, r.pick([0, 14, 18, 34, 38, len, len + 100, 65535, r.int(65536)]));
        return "vnet csumStart";
      case 2:
        writeU16le(v, 8, r.pick([0, 6, 16, 65535, r.int(65536)]));
        return "vnet csumOffset";
      case 3:
        writeU16le(v, 2, r.pick([0, 14, 54, 65535, r.int(65536)]));
        return "vnet hdrLen";
      case 4:
        v[0] = r.u32() & 0xff;
        return "vnet flags";
      default:
        for (let i = 0; i < 12; i++) v[i] = r.u32() & 0xff;
        return "vnet random";
    }
  }

  // ---------------------------------------------------------------------------
  // Mutations

  /** 1-3 structure-aware mutations of an Ethernet frame. */
  mutateFrame(f: Buffer): { frame: Buffer; what: string } {
    const r = this.rng;
    const done: string[] = [];
    const n = r.chance(0.7) ? 1 : r.range(2, 3);
    for (let k = 0; k < n; k++) {
      const x = r.float();
      const l3 = this.l3Offset(f);
      if (x < 0.45 && l3 >= 0 && f.length >= l3 + 20 && f[l3] >> 4 === 4 && readU16(f, l3 - 2) === ETHERTYPE_IPV4) {
        const m = this.mutateIp(f, l3);
        f = m.pkt;
        done.push(m.what);
      } else if (x < 0.55) {
        // Truncate, often right at or inside a header.
        const cut = r.chance(0.5) ? r.pick([0, 1, 13, 14, 17, 18, 21, 33, 34, 38, 41, 42, 53, 54]) : r.int(f.length + 1);
        f = f.subarray(0, Math.min(cut, f.length));
        done.push(`truncate ${f.length}`);
      } else if (x < 0.62) {
        f = Buffer.concat([f, r.bytes(r.range(1, 64))]);
        done.push("trailing bytes");
      } else if (x < 0.72 && f.length >= 14) {
        // Tag games: change a TPID, a VID, an EtherType.
        const at = r.pick([12, 16, 20]);
        if (at + 4 <= f.length) {
          const y = r.int(4);
          if (y === 0) writeU16(f, at, r.pick([ETHERTYPE_VLAN, ETHERTYPE_QINQ, ETHERTYPE_IPV4, ETHERTYPE_ARP, 0x9100, 0]));
          else if (y === 1) writeU16(f, at + 2, ((f[at + 2] & 0xf0) << 8) | r.pick([0, 1, 4094, 4095, r.int(4096)]));
          else if (y === 2 && readU16(f, 12) !== ETHERTYPE_VLAN) {
            // Strip everything between the MACs and the payload: an untagged frame with a tagged body.
            f = Buffer.concat([f.subarray(0, 12), f.subarray(Math.min(f.length, 16))]);
          } else writeU16(f, 12, r.pick([ETHERTYPE_VLAN, ETHERTYPE_QINQ]));
          done.push("tag");
        }
      } else if (x < 0.8 && f.length >= 12) {
        writeMac(f, r.chance(0.5) ? 0 : 6, r.chance(0.5) ? r.pick(ODD_MACS) : r.pick(this.world.macs));
        done.push("mac");
      } else if (x < 0.86 && l3 >= 0 && readU16(f, l3 - 2) === ETHERTYPE_ARP && f.length >= l3 + 8) {
        const at = l3 + r.pick([0, 2, 4, 5, 6, 8, 14, 24]);
        if (at + 2 <= f.length) writeU16(f, at, r.chance(0.5) ? r.int(65536) : r.pick([0, 1, 2, 3, 0x0800, 0x0604]));
        done.push("arp field");
      } else {
        const flips = r.range(1, 4);
        for (let i = 0; i < flips && f.length > 0; i++) f[r.skewed(f.length - 1)] ^= 1 << r.int(8);
        done.push(`flip ${flips}`);
      }
    }
    return { frame: f, what: done.join(",") };
  }

  /** Where the L3 header of an Ethernet frame starts (after any tags), -1 when it has none. */
  private l3Offset(f: Buffer): number {
    let p = 12;
    while (p + 2 <= f.length) {
      const t = readU16(f, p);
      if (t !== ETHERTYPE_VLAN && t !== ETHERTYPE_QINQ) return p + 2;
      p += 4;
    }
    return -1;
  }

  /** One mutation of the IPv4 header at `ip` (and its L4 header); the header checksum fixed up most of the time. */
  mutateIp(b: Buffer, ip: number): { pkt: Buffer; what: string } {
    const r = this.rng;
    let what: string;
    const hl = (b[ip] & 0x0f) << 2;
    const l4 = ip + hl;
    const x = r.float();
    if (x < 0.1) {
      b[ip] = (b[ip] & 0x0f) | (r.pick([0, 5, 6, 15, 4]) << 4);
      what = "version";
    } else if (x < 0.22) {
      b[ip] = 0x40 | r.pick([0, 1, 4, 5, 6, 15, r.int(16)]);
      what = `ihl ${b[ip] & 15}`;
    } else if (x < 0.36) {
      const tot = readU16(b, ip + 2);
      writeU16(b, ip + 2, r.pick([0, 1, 19, hl - 1, hl, hl + 1, tot - 1, tot + 1, tot + 100, 65535, r.int(65536)]) & 0xffff);
      what = `totalLen ${readU16(b, ip + 2)}`;
    } else if (x < 0.48) {
      // Most of the time only DF and the reserved bit: a bogus fragment would hold a
      // reassembly slot for 30 s, and a few of those already keep the slots full.
      writeU16(
        b,
        ip + 6,
        r.chance(0.6) ? r.pick([0x4000, 0x8000, 0xc000, 0]) : (r.int(8) << 13) | (r.chance(0.5) ? r.pick([0, 1, 0x1fff, 0x1ffe, 185]) : r.int(8192)),
      );
      what = `flags/offset ${readU16(b, ip + 6).toString(16)}`;
    } else if (x < 0.54) {
      b[ip + 8] = r.pick([0, 1, 2, 255]);
      what = `ttl ${b[ip + 8]}`;
    } else if (x < 0.6) {
      b[ip + 9] = r.pick([0, 1, 4, 6, 17, 41, 47, 255]);
      what = `proto ${b[ip + 9]}`;
    } else if (x < 0.7 && hl > 20 && ip + hl <= b.length) {
      const o = this.ipOptions(hl - 20);
      for (let i = 0; i < o.length; i++) b[ip + 20 + i] = o[i];
      what = "options";
    } else if (x < 0.82 && l4 + 8 <= b.length) {
      const proto = b[ip + 9];
      if (proto === IP_PROTO_UDP) {
        writeU16(b, l4 + r.pick([4, 6]), r.pick([0, 1, 7, 8, 9, 0xffff, r.int(65536)]));
        what = "udp len/csum";
      } else if (proto === IP_PROTO_TCP && l4 + 14 <= b.length) {
        if (r.chance(0.5)) b[l4 + 12] = r.pick([0, 1, 4, 5, 15, r.int(16)]) << 4;
        else b[l4 + 13] = r.pick(TCP_FLAG_SETS);
        what = "tcp doff/flags";
      } else if (proto === IP_PROTO_ICMP) {
        const y = r.int(3);
        if (y === 0) b[l4] = r.pick([0, 3, 8, 11, 12, 5, 4, 18, 19, 255]);
        else if (y === 1 && l4 + 9 <= b.length)
          b[l4 + 8] = r.pick([0x45, 0x46, 0x4f, 0x40, 0x35, 0x00]); // quoted version/IHL
        else writeU16(b, l4 + 2, r.int(65536));
        what = "icmp";
      } else {
        b[l4 + r.int(8)] ^= 0xff;
        what = "l4 byte";
      }
    } else if (x < 0.88) {
      writeU32(b, ip + r.pick([12, 16]), r.chance(0.5) ? r.pick(ODD_ADDRS) : r.pick(this.world.addrs));
      what = "address";
    } else {
      b[ip + r.skewed(Math.min(59, b.length - ip - 1))] ^= 1 << r.int(8);
      what = "header bit";
    }
    // Most of the time the header checksum is made right again, so the mutation reaches
    // past the checksum check; sometimes it is zeroed or left wrong.
    const y = r.float();
    const nhl = (b[ip] & 0x0f) << 2;
    if (y < 0.75 && nhl >= 20 && ip + nhl <= b.length) ipv4FillChecksum(b, ip);
    else if (y < 0.85 && ip + 12 <= b.length) writeU16(b, ip + 10, 0);
    return { pkt: b, what };
  }

  // ---------------------------------------------------------------------------
  // Tunnels

  /** A VXLAN datagram (UDP payload): the 8-byte header, then an inner frame. */
  vxlanDatagram(vni: number, inner: Buffer): { dgram: Buffer; what: string } {
    const r = this.rng;
    const h = Buffer.alloc(8);
    h[0] = 0x08;
    writeU32(h, 4, vni << 8);
    let what = "vxlan";
    const x = r.float();
    if (x < 0.03) {
      h[0] = r.pick([0, 0x80, 0xf7]);
      what += " no-I";
    } else if (x < 0.06) {
      writeU32(h, 4, (r.chance(0.5) ? vni + 1 : r.int(1 << 24)) << 8);
      what += " vni";
    } else if (x < 0.1) {
      h[1] = r.u32() & 0xff; // reserved bits: ignored
      h[7] = r.u32() & 0xff;
      what += " reserved";
    }
    let d = Buffer.concat([h, inner]);
    if (r.chance(0.03)) {
      d = d.subarray(0, r.int(Math.min(d.length, 30)));
      what += ` cut ${d.length}`;
    }
    return { dgram: d, what };
  }

  /** An IPIP packet as the raw socket hands it: outer IPv4 (protocol 4) then `inner`. */
  ipipPacket(inner: Buffer, peers: number[], local: number): { pkt: Buffer; what: string } {
    const r = this.rng;
    const optLen = r.chance(0.05) ? 4 * r.range(1, 3) : 0;
    const p = Buffer.alloc(20 + optLen + inner.length);
    const src = r.chance(0.9) ? r.pick(peers) : this.addr(null, "src");
    const dst = r.chance(0.93) ? local : this.addr(null, "dst");
    emitIpv4(
      {
        dscp: 0,
        ecn: r.chance(0.1) ? r.int(4) : 0,
        totalLen: p.length,
        ident: r.int(65536),
        df: r.chance(0.5),
        mf: false,
        fragOffset: 0,
        ttl: 64,
        protocol: r.chance(0.97) ? IP_PROTO_IPIP : r.pick([0, 41, 17]),
        srcAddr: src,
        dstAddr: dst,
        options: optLen ? this.ipOptions(optLen) : new Uint8Array(0),
      },
      p,
      0,
    );
    inner.copy(p, 20 + optLen);
    let what = "ipip";
    if (r.chance(0.15)) {
      const m = this.mutateIp(p, 0);
      what += ` [outer ${m.what}]`;
    }
    if (r.chance(0.03)) {
      return { pkt: p.subarray(0, r.int(Math.min(p.length, 44))), what: `${what} cut` };
    }
    return { pkt: p, what };
  }

  /**
   * A train of TCP segments of one flow, as UDP GRO would hand several VXLAN datagrams
   * to the receiver: equal sizes, sequence numbers following on, valid checksums (each
   * an inner Ethernet frame). Sometimes one is spoiled (bad checksum, other flags).
   */
  tcpTrain(where: Where | null, count: number, mss: number): Buffer[] {
    const r = this.rng;
    const src = this.addr(where, "src");
    const dst = this.addr(where, "dst");
    const sport = this.port();
    const dport = this.port();
    const dmac = this.mac(where, "dst");
    const smac = this.mac(where, "src");
    let seq = r.u32();
    let ident = r.int(65536);
    const out: Buffer[] = [];
    for (let k = 0; k < count; k++) {
      const f = Buffer.alloc(14 + 20 + 20 + mss);
      emitEthernet({ dstAddr: dmac, srcAddr: smac, etherType: ETHERTYPE_IPV4 }, f, 0);
      emitIpv4(
        {
          dscp: 0,
          ecn: 0,
          totalLen: 40 + mss,
          ident: ident++ & 0xffff,
          df: true,
          mf: false,
          fragOffset: 0,
          ttl: 64,
          protocol: IP_PROTO_TCP,
          srcAddr: src,
          dstAddr: dst,
          options: new Uint8Array(0),
        },
        f,
        14,
      );
      emitTcp(
        {
          srcPort: sport,
          dstPort: dport,
          seq,
          ack: 1,
          flags: k === count - 1 && r.chance(0.3) ? TCP_ACK | TCP_PSH : TCP_ACK,
          window: 1000,
          urgent: 0,
          options: new Uint8Array(0),
        },
        f,
        34,
      );
      r.bytes(mss).copy(f, 54);
      tcpFillChecksum(f, 34, 20 + mss, src, dst);
      seq = (seq + mss) >>> 0;
      if (r.chance(0.03)) f[54 + r.int(mss)] ^= 1; // a corrupt segment: must not be merged
      out.push(f);
    }
    return out;
  }
}

function writeU16le(b: Buffer, off: number, v: number): void {
  b[off] = v & 0xff;
  b[off + 1] = (v >>> 8) & 0xff;
}

function readU32be(b: Buffer, off: number): number {
  return ((b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0;
}

/** A frame's bytes as hex (with its vnet header first, when it has one), for reproducing a failure. */
export function frameHex(g: GenFrame): string {
  return (g.vnet ? `vnet ${g.vnet.toString("hex")} ` : "") + g.frame.toString("hex");
}
