/**
 * Shared by the tests of what a router writes (icmp-answers.test.ts, ipv4-frag.test.ts):
 * a UDP datagram builder (src/wire emitters) and a tshark harness that reads packets back
 * as Wireshark does, checksums verified.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { IP_PROTO_UDP, emitIpv4, emitUdp, parseIp, udpFillChecksum } from "../../src/wire/index.js";

export const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

export const H1 = parseIp("10.0.0.1");
export const H2 = parseIp("10.0.0.2");

export interface PktOpts {
  src?: number;
  dst?: number;
  options?: Uint8Array;
  df?: boolean;
  mf?: boolean;
  fragOffset?: number;
  ident?: number;
  ttl?: number;
  protocol?: number;
}

/** A UDP datagram 40000 -> 9 (discard) with `dataLen` bytes of a counting pattern. */
export function udpPacket(dataLen: number, o: PktOpts = {}): Buffer {
  const options = o.options ?? new Uint8Array(0);
  const hlen = 20 + options.length;
  const b = Buffer.alloc(hlen + 8 + dataLen);
  const src = o.src ?? H1;
  const dst = o.dst ?? H2;
  emitUdp({ srcPort: 40000, dstPort: 9, length: 8 + dataLen }, b, hlen);
  for (let i = 0; i < dataLen; i++) b[hlen + 8 + i] = (i * 7 + (i >>> 8)) & 0xff;
  udpFillChecksum(b, hlen, src, dst);
  emitIpv4(
    {
      dscp: 0,
      ecn: 0,
      totalLen: b.length,
      ident: o.ident ?? 0x1234,
      df: o.df ?? false,
      mf: o.mf ?? false,
      fragOffset: o.fragOffset ?? 0,
      ttl: o.ttl ?? 64,
      protocol: o.protocol ?? IP_PROTO_UDP,
      srcAddr: src,
      dstAddr: dst,
      options,
    },
    b,
    0,
  );
  return b;
}

export const hasTshark = ((): boolean => {
  try {
    execFileSync("tshark", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();
let tmp: string | undefined;
let pcapSeq = 0;

/** Removes the capture files tshark() wrote (call from afterAll). */
export function removeTsharkFiles(): void {
  if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true });
  tmp = undefined;
}

/** Classic pcap, LINKTYPE_RAW (101): each packet starts with its IPv4 header. */
function pcapRaw(pkts: Buffer[]): Buffer {
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

const TSHARK_CHECKS = ["-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE", "-o", "ip.defragment:TRUE"];

/**
 * Runs tshark over the packets and returns, per frame, the requested fields; a field that
 * occurs more than once (outer and quoted IP header) gives all values, comma-separated.
 * The ICMP checksum has no preference in tshark 4.0: it is always verified
 * (icmp.checksum.status) when the whole message was captured.
 */
export function tshark(pkts: Buffer[], fields: string[]): string[][] {
  tmp ??= mkdtempSync(join(tmpdir(), "tapnet-wire-"));
  const file = join(tmp, `p${pcapSeq++}.pcap`);
  writeFileSync(file, pcapRaw(pkts));
  const args = ["-r", file, ...TSHARK_CHECKS, "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,"];
  for (const f of fields) args.push("-e", f);
  const out = execFileSync("tshark", args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], maxBuffer: 64 << 20 });
  return out
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => l.split("\t"));
}

/** tshark checksum status values (proto_checksum_enum_e). */
export const CK_BAD = "0";
export const CK_GOOD = "1";
