/**
 * nat-packets — IPv4 packets for the NAT tests, built with the src/wire emitters,
 * parsers and checksum checkers over them, a router-like driver (prerouting, TTL
 * decrement, postrouting) and a tshark harness over a classic pcap (LINKTYPE_RAW).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NAT_ACCEPT, type Nat } from "../../src/elements/nat.js";
import {
  IP_PROTO_ICMP,
  IP_PROTO_TCP,
  IP_PROTO_UDP,
  emitIcmp,
  emitIpv4,
  emitTcp,
  emitUdp,
  icmpCheck,
  icmpFillChecksum,
  icmpRestEcho,
  ipv4ChecksumValid,
  ipv4DecrementTtl,
  parseIp,
  readU16,
  readU32,
  tcpChecksumValid,
  tcpFillChecksum,
  udpChecksumValid,
  udpFillChecksum,
  CHECK_OK,
  ipToString,
} from "../../src/wire/index.js";

export const ip = parseIp;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;

function ipv4(b: Buffer, protocol: number, src: number, dst: number, o: { ttl?: number; ident?: number; mf?: boolean; fragOffset?: number } = {}): void {
  emitIpv4(
    {
      dscp: 0,
      ecn: 0,
      totalLen: b.length,
      ident: o.ident ?? 0x4242,
      df: o.mf === undefined && o.fragOffset === undefined,
      mf: o.mf ?? false,
      fragOffset: o.fragOffset ?? 0,
      ttl: o.ttl ?? 64,
      protocol,
      srcAddr: src,
      dstAddr: dst,
      options: new Uint8Array(0),
    },
    b,
    0,
  );
}

function pattern(b: Buffer, off: number, len: number, seed: number): void {
  for (let i = 0; i < len; i++) b[off + i] = (i * 31 + seed) & 0xff;
}

export interface TcpOpts {
  flags: number;
  seq?: number;
  ack?: number;
  data?: number;
  ttl?: number;
}

export function tcpPacket(src: number, sport: number, dst: number, dport: number, o: TcpOpts): Buffer {
  const data = o.data ?? 0;
  const b = Buffer.alloc(20 + 20 + data);
  emitTcp({ srcPort: sport, dstPort: dport, seq: o.seq ?? 1000, ack: o.ack ?? 0, flags: o.flags, window: 64240, urgent: 0, options: new Uint8Array(0) }, b, 20);
  pattern(b, 40, data, sport);
  tcpFillChecksum(b, 20, 20 + data, src, dst);
  ipv4(b, IP_PROTO_TCP, src, dst, { ttl: o.ttl });
  return b;
}

export function udpPacket(src: number, sport: number, dst: number, dport: number, data = 12, o: { ttl?: number; noChecksum?: boolean } = {}): Buffer {
  const b = Buffer.alloc(20 + 8 + data);
  emitUdp({ srcPort: sport, dstPort: dport, length: 8 + data }, b, 20);
  pattern(b, 28, data, dport);
  if (!o.noChecksum) udpFillChecksum(b, 20, src, dst);
  ipv4(b, IP_PROTO_UDP, src, dst, { ttl: o.ttl });
  return b;
}

export function echoPacket(src: number, dst: number, id: number, seq: number, reply = false, o: { ttl?: number } = {}): Buffer {
  const b = Buffer.alloc(20 + 8 + 16);
  emitIcmp({ type: reply ? 0 : 8, code: 0, rest: icmpRestEcho(id, seq) }, b, 20);
  pattern(b, 28, 16, seq);
  icmpFillChecksum(b, 20, 24);
  ipv4(b, IP_PROTO_ICMP, src, dst, { ttl: o.ttl });
  return b;
}

/** An ICMP error from `from` to `to` quoting the whole of `quoted` (type 11 = time exceeded, 3 = unreachable). */
export function icmpError(from: number, to: number, type: number, code: number, quoted: Buffer): Buffer {
  const b = Buffer.alloc(20 + 8 + quoted.length);
  emitIcmp({ type, code, rest: 0 }, b, 20);
  quoted.copy(b, 28);
  icmpFillChecksum(b, 20, 8 + quoted.length);
  ipv4(b, IP_PROTO_ICMP, from, to, { ttl: 64 });
  return b;
}

/** A packet of another protocol (GRE 47) or a fragment. */
export function rawPacket(protocol: number, src: number, dst: number, len: number, o: { mf?: boolean; fragOffset?: number } = {}): Buffer {
  const b = Buffer.alloc(len);
  pattern(b, 20, len - 20, 3);
  ipv4(b, protocol, src, dst, o);
  return b;
}

export interface Tuple {
  proto: number;
  src: string;
  dst: string;
  sport: number;
  dport: number;
}

/** Addresses and ports (ICMP echo: the identifier as both ports). */
export function tupleOf(b: Buffer, off = 0): Tuple {
  const ihl = (b[off] & 0x0f) << 2;
  const proto = b[off + 9];
  const l4 = off + ihl;
  let sport = 0;
  let dport = 0;
  if (proto === IP_PROTO_TCP || proto === IP_PROTO_UDP) {
    sport = readU16(b, l4);
    dport = readU16(b, l4 + 2);
  } else if (proto === IP_PROTO_ICMP) {
    sport = dport = readU16(b, l4 + 4);
  }
  return { proto, src: ipToString(readU32(b, off + 12)), dst: ipToString(readU32(b, off + 16)), sport, dport };
}

/** The quoted datagram's tuple of an ICMP error. */
export function innerTupleOf(b: Buffer): Tuple {
  return tupleOf(b, ((b[0] & 0x0f) << 2) + 8);
}

/**
 * Every checksum of the packet: IPv4 header, TCP/UDP over the pseudo-header, ICMP; for
 * an ICMP error also the quoted IPv4 header and, when the quote holds the whole
 * datagram, its TCP/UDP/ICMP checksum. Returns the failures (empty: all good).
 */
export function checksumFailures(b: Buffer, off = 0, quoted = false): string[] {
  const bad: string[] = [];
  const ihl = (b[off] & 0x0f) << 2;
  const total = readU16(b, off + 2);
  const avail = b.length - off;
  if (!ipv4ChecksumValid(b, off)) bad.push(quoted ? "inner ip" : "ip");
  if (total > avail) return bad; // a truncated quote: the transport checksum cannot be checked
  const proto = b[off + 9];
  const l4 = off + ihl;
  const len = total - ihl;
  const src = readU32(b, off + 12);
  const dst = readU32(b, off + 16);
  if (proto === IP_PROTO_TCP && !tcpChecksumValid(b, l4, len, src, dst)) bad.push(quoted ? "inner tcp" : "tcp");
  if (proto === IP_PROTO_UDP && !udpChecksumValid(b, l4, src, dst)) bad.push(quoted ? "inner udp" : "udp");
  if (proto === IP_PROTO_ICMP) {
    if (icmpCheck(b, l4, len, true) !== CHECK_OK) bad.push(quoted ? "inner icmp" : "icmp");
    const type = b[l4];
    if (!quoted && (type === 3 || type === 11 || type === 12 || type === 4 || type === 5) && len >= 28) {
      const inner = Buffer.from(b.subarray(l4 + 8, off + total));
      bad.push(...checksumFailures(inner, 0, true));
    }
  }
  return bad;
}

/** What the router does with a forwarded packet: prerouting, TTL - 1, postrouting with prerouting's context. */
export function forward(nat: Nat, pkt: Buffer, inIf: number, outIf: number, now: number, hairpinAddr = 0): number {
  const ctx = nat.prerouting(pkt, 0, pkt.length, inIf, now);
  if (ctx < 0) return ctx;
  ipv4DecrementTtl(pkt, 0);
  return nat.postrouting(ctx, pkt, 0, pkt.length, outIf, hairpinAddr, now);
}

/**
 * The router's side of the two hooks, one step at a time, for tests that look at a
 * packet between them: pre() calls prerouting and keeps its context (as the router
 * keeps it in a local variable) for the next post(), localError() or release();
 * pre() answers with the verdict (NAT_ACCEPT for any context).
 */
let pendingCtx = NAT_ACCEPT;

export function pre(nat: Nat, pkt: Buffer, inIf: number, now: number, partial = false, off = 0, len = pkt.length): number {
  pendingCtx = nat.prerouting(pkt, off, len, inIf, now, partial);
  return pendingCtx >= 0 ? NAT_ACCEPT : pendingCtx;
}

export function post(nat: Nat, pkt: Buffer, outIf: number, hairpinAddr: number, now: number, partial = false, off = 0, len = pkt.length): number {
  const ctx = pendingCtx;
  pendingCtx = NAT_ACCEPT;
  return nat.postrouting(ctx, pkt, off, len, outIf, hairpinAddr, now, partial);
}

/** The router's own ICMP error (`err`, `len` bytes) about the packet between the hooks. */
export function localError(nat: Nat, err: Buffer, len: number): void {
  nat.localError(pendingCtx, err, 0, len);
}

/** The packet between the hooks goes no further (delivered locally, dropped). */
export function release(nat: Nat): void {
  nat.release(pendingCtx);
  pendingCtx = NAT_ACCEPT;
}

/** Deterministic PRNG in [0, 1) (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// -----------------------------------------------------------------------------
// tshark

export let hasTshark = true;
try {
  execFileSync("tshark", ["--version"], { stdio: "ignore" });
} catch {
  hasTshark = false;
}

/** Classic pcap, LINKTYPE_RAW (101): each record starts with its IPv4 header. */
export function pcapRaw(pkts: Buffer[]): Buffer {
  const parts: Buffer[] = [];
  const gh = Buffer.alloc(24);
  gh.writeUInt32LE(0xa1b2c3d4, 0);
  gh.writeUInt16LE(2, 4);
  gh.writeUInt16LE(4, 6);
  gh.writeUInt32LE(262144, 16);
  gh.writeUInt32LE(101, 20);
  parts.push(gh);
  pkts.forEach((p, i) => {
    const h = Buffer.alloc(16);
    h.writeUInt32LE(1_700_000_000 + i, 0);
    h.writeUInt32LE(p.length, 8);
    h.writeUInt32LE(p.length, 12);
    parts.push(h, p);
  });
  return Buffer.concat(parts);
}

/**
 * Writes the packets into a pcap and returns, per frame, the requested fields (every
 * occurrence, comma-separated: outer and quoted headers).
 */
export function tshark(pkts: Buffer[], fields: string[]): string[][] {
  const dir = mkdtempSync(join(tmpdir(), "tapnet-nat-"));
  try {
    const file = join(dir, "nat.pcap");
    writeFileSync(file, pcapRaw(pkts));
    const args = [
      "-r",
      file,
      "-o",
      "ip.check_checksum:TRUE",
      "-o",
      "udp.check_checksum:TRUE",
      "-o",
      "tcp.check_checksum:TRUE",
      "-T",
      "fields",
      "-E",
      "separator=/t",
      "-E",
      "occurrence=a",
      "-E",
      "aggregator=,",
    ];
    for (const f of fields) args.push("-e", f);
    const out = execFileSync("tshark", args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], maxBuffer: 64 << 20 });
    return out
      .split("\n")
      .filter((l) => l.length > 0)
      .map((l) => l.split("\t"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
