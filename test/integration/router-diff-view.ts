/**
 * What the differential router test compares (router-diff.test.ts): a frame seen by a
 * host, decoded without the code under test (plain byte reads, not src/wire) into named
 * fields, with what must differ between two runs made comparable:
 *
 *   - MAC addresses by role (R1, R2: the router's interfaces; H1, H2, H3; BC);
 *   - IP identification: compared when the packet is one a case crafted (its source is
 *     a case's address, or a quote of one) or has DF; else `*` (the router's and the
 *     hosts' own IDs are pseudo-random per destination in Linux);
 *   - timestamps (the Timestamp option's entries, in the packet or in a quote): `T` when
 *     within 2 minutes of the capture's time of day, else the number;
 *   - checksums: whether each is right (`ok`/`bad`); a quoted IPv4 header's checksum is
 *     compared as it is (a router may quote a header it changed).
 * Payloads are compared by length and a hash.
 */
import { createHash } from "node:crypto";

export type Fields = Record<string, string>;

const u16 = (b: Buffer, o: number): number => (b[o] << 8) | b[o + 1];
const u32 = (b: Buffer, o: number): number => b.readUInt32BE(o);
const ip4 = (b: Buffer, o: number): string => `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
const hex = (n: number, w: number): string => n.toString(16).padStart(w, "0");

function csumOk(b: Buffer, off: number, len: number, pseudo = 0): boolean {
  let s = pseudo;
  for (let i = 0; i + 1 < len; i += 2) s += u16(b, off + i);
  if (len & 1) s += b[off + len - 1] << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s === 0xffff;
}

function digest(b: Buffer): string {
  return `${b.length}:${createHash("sha1").update(b).digest("hex").slice(0, 12)}`;
}

/** Milliseconds since midnight UTC at capture time `t` (seconds). */
function msOfDay(t: number): number {
  return Math.floor(t * 1000) % 86_400_000;
}

function stamp(v: number, t: number): string {
  const d = Math.abs(v - msOfDay(t));
  return Math.min(d, 86_400_000 - d) < 120_000 ? "T" : String(v);
}

/** The options of the header at `ip` (IHL bytes), as text; timestamps written so far normalized. */
export function optionsText(b: Buffer, ip: number, end: number, t: number): string {
  const parts: string[] = [];
  let i = ip + 20;
  while (i < end) {
    const type = b[i];
    if (type === 0 || type === 1) {
      parts.push(type === 0 ? "EOL" : "NOP");
      i++;
      continue;
    }
    const len = i + 1 < end ? b[i + 1] : -1;
    if (len < 2 || i + len > end) {
      parts.push(`bad(${b.subarray(i, end).toString("hex")})`);
      break;
    }
    const body = b.subarray(i + 2, i + len);
    if (type === 68 && len >= 4) {
      const ptr = body[0];
      const flag = body[1] & 15;
      const entries: string[] = [];
      const step = flag === 0 ? 4 : 8;
      for (let e = 4; e + step <= len; e += step) {
        const at = i + e;
        const written = e + step <= ptr - 1;
        const time = u32(b, at + step - 4);
        const tv = written ? stamp(time, t) : String(time);
        entries.push(flag === 0 ? tv : `${ip4(b, at)}@${tv}`);
      }
      parts.push(`TS(ptr=${ptr},oflw=${body[1] >> 4},flag=${flag},${entries.join(" ")})`);
    } else if ((type === 7 || type === 131 || type === 137) && len >= 3) {
      const name = type === 7 ? "RR" : type === 131 ? "LSRR" : "SSRR";
      const addrs: string[] = [];
      for (let e = 3; e + 4 <= len; e += 4) addrs.push(ip4(b, i + e));
      parts.push(`${name}(ptr=${body[0]},${addrs.join(" ")})`);
    } else parts.push(`opt${type}(${body.toString("hex")})`);
    i += len;
  }
  return parts.join(" ");
}

/** The quoted datagram of an ICMP error (its IPv4 header as fields, timestamps masked in the bytes). */
function quoteFields(b: Buffer, q: number, end: number, t: number, f: Fields): void {
  f.quoteLen = String(end - q);
  if (end - q < 20) {
    f.quote = b.subarray(q, end).toString("hex");
    return;
  }
  const hl = (b[q] & 15) * 4;
  f.qSrc = ip4(b, q + 12);
  f.qDst = ip4(b, q + 16);
  f.qTos = hex(b[q + 1], 2);
  f.qTtl = String(b[q + 8]);
  f.qId = hex(u16(b, q + 4), 4);
  f.qFlags = hex(u16(b, q + 6), 4);
  f.qLen = String(u16(b, q + 2));
  f.qCsum = hex(u16(b, q + 10), 4);
  f.qProto = String(b[q + 9]);
  if (hl > 20 && q + hl <= end) f.qOpts = optionsText(b, q, q + hl, t);
  f.qRest = digest(b.subarray(Math.min(q + hl, end), end));
}

export interface View {
  /** The frame is ARP (else IPv4). */
  arp: boolean;
  src: string;
  dst: string;
  /** IPv4 identification (-1 for ARP) and, for ICMP errors, the quoted one. */
  id: number;
  quotedId: number;
  icmpId: number;
  fields: Fields;
}

/**
 * Decodes one Ethernet frame (hex) captured at time `t`; null for what the test does
 * not look at (IPv6, LLDP…). `macs` names MAC addresses; `caseAddrs` are the cases'
 * sources (their packets' IDs are compared as they are).
 */
export function view(frameHex: string, t: number, macs: Record<string, string>, caseAddrs: Set<string>): View | null {
  const b = Buffer.from(frameHex, "hex");
  if (b.length < 14) return null;
  const mac = (o: number): string => {
    const m = [...b.subarray(o, o + 6)].map((x) => hex(x, 2)).join(":");
    return macs[m] ?? m;
  };
  const et = u16(b, 12);
  const f: Fields = { ethDst: mac(0), ethSrc: mac(6) };
  if (et === 0x0806 && b.length >= 42) {
    f.arpOp = String(u16(b, 20));
    f.sha = mac(22);
    f.spa = ip4(b, 28);
    f.tha = mac(32);
    f.tpa = ip4(b, 38);
    return { arp: true, src: f.spa, dst: f.tpa, id: -1, quotedId: -1, icmpId: -1, fields: f };
  }
  if (et !== 0x0800 || b.length < 34) return null;
  const ip = 14;
  const hl = (b[ip] & 15) * 4;
  const total = u16(b, ip + 2);
  const end = Math.min(b.length, ip + total);
  const src = ip4(b, ip + 12);
  const dst = ip4(b, ip + 16);
  const id = u16(b, ip + 4);
  const flags = u16(b, ip + 6);
  const df = (flags & 0x4000) !== 0;
  f.src = src;
  f.dst = dst;
  f.tos = hex(b[ip + 1], 2);
  f.ttl = String(b[ip + 8]);
  f.len = String(total);
  f.ihl = String(hl / 4);
  f.flags = `${df ? "DF" : ""}${flags & 0x2000 ? "MF" : ""}${flags & 0x8000 ? "RES" : ""}` || "-";
  f.fragOff = String((flags & 0x1fff) * 8);
  f.id = caseAddrs.has(src) || df ? hex(id, 4) : "*";
  f.ipCsum = csumOk(b, ip, hl) ? "ok" : "bad";
  if (hl > 20) f.opts = optionsText(b, ip, ip + hl, t);
  const proto = b[ip + 9];
  f.proto = String(proto);
  const l4 = ip + hl;
  let quotedId = -1;
  let icmpId = -1;
  if ((flags & 0x1fff) !== 0) {
    f.payload = digest(b.subarray(l4, end));
  } else if (proto === 1 && end - l4 >= 8) {
    const type = b[l4];
    f.icmp = `${type}/${b[l4 + 1]}`;
    f.icmpCsum = flags & 0x2000 ? "-" : csumOk(b, l4, end - l4) ? "ok" : "bad";
    if (type === 3 || type === 4 || type === 5 || type === 11 || type === 12) {
      f.icmpRest = hex(u32(b, l4 + 4), 8);
      if (type === 5) f.gateway = ip4(b, l4 + 4);
      quoteFields(b, l4 + 8, end, t, f);
      if (end - (l4 + 8) >= 20) quotedId = u16(b, l4 + 8 + 4);
    } else {
      icmpId = u16(b, l4 + 4);
      f.icmpIdSeq = `${hex(icmpId, 4)}/${u16(b, l4 + 6)}`;
      f.payload = digest(b.subarray(l4 + 8, end));
    }
  } else if ((proto === 6 || proto === 17) && end - l4 >= 8) {
    const len = end - l4;
    const pseudo = u16(b, ip + 12) + u16(b, ip + 14) + u16(b, ip + 16) + u16(b, ip + 18) + proto + len;
    f.ports = `${u16(b, l4)}>${u16(b, l4 + 2)}`;
    if (proto === 6 && len >= 20) {
      const fl = b[l4 + 13];
      f.tcp = `flags=${hex(fl, 2)} seq=${u32(b, l4 + 4)} ack=${u32(b, l4 + 8)} win=${u16(b, l4 + 14)} off=${b[l4 + 12] >> 4}`;
    }
    f.l4Csum = flags & 0x2000 ? "-" : proto === 17 && u16(b, l4 + 6) === 0 ? "none" : csumOk(b, l4, len, pseudo) ? "ok" : "bad";
    f.payload = digest(b.subarray(l4 + (proto === 6 ? (b[l4 + 12] >> 4) * 4 : 8), end));
  } else f.payload = digest(b.subarray(l4, end));
  return { arp: false, src, dst, id, quotedId, icmpId, fields: f };
}

/** One line per field that differs between two frames' fields. */
export function fieldDiff(a: Fields, b: Fields): string[] {
  const out: string[] = [];
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    if (a[k] !== b[k]) out.push(`${k}: tapnet ${a[k] ?? "(none)"}, linux ${b[k] ?? "(none)"}`);
  }
  return out;
}

export function fieldsText(f: Fields): string {
  return Object.entries(f)
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
}
