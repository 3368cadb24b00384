import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  FRAG_BAD_INPUT,
  FRAG_DF_SET,
  FRAG_TOO_MANY,
  ICMP_RATE_BURST,
  ICMP_RATE_PER_SECOND,
  TokenBucket,
  emitIcmpEchoReplyInPlace,
  emitIcmpError,
  fragmentIpv4,
  icmpErrorAllowed,
} from '../../src/elements/ip-util.js';
import {
  CHECK_OK,
  ICMP_DEST_UNREACH,
  ICMP_ECHO_REPLY,
  ICMP_ECHO_REQUEST,
  ICMP_PARAM_PROBLEM,
  ICMP_TIME_EXCEEDED,
  ICMP_TIME_EXCEEDED_TTL,
  ICMP_UNREACH_FRAG_NEEDED,
  ICMP_UNREACH_PORT,
  IP_PROTO_ICMP,
  IP_PROTO_UDP,
  emitIcmp,
  emitIpv4,
  emitUdp,
  icmpCheck,
  icmpComputeChecksum,
  icmpFillChecksum,
  icmpRestEcho,
  icmpRestFragNeeded,
  ipv4Check,
  ipv4ChecksumValid,
  ipv4FillChecksum,
  parseIcmp,
  parseIp,
  parseIpv4,
  udpFillChecksum,
} from '../../src/wire/index.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// ---------------------------------------------------------------------------------------
// Fixtures: real frames from test/wire (a veth in a test namespace, 10.99.1.1 -> Linux
// router 10.99.1.254 -> 10.99.2.1, the router's second link at MTU 1280), checked with tshark.

// `ping 10.99.1.254`, echo request (IP packet, Ethernet header removed).
const ECHO_REQUEST = hex(`
  45000054f94940004001299b0a6301010a6301fe
  0800112311a40001b22f026b0000000053ca0e0000000000
  101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637
`);
// The kernel's echo reply, ICMP part. tshark: icmp.checksum 0x1923 (good).
const KERNEL_REPLY_ICMP = hex(`
  00 00 1923 11a4 0001
  b22f026b0000000053ca0e0000000000
  101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637
`);
// `ping -R`: NOP + 39 bytes of Record Route.
const ECHO_REQUEST_RR = hex(`
  4f00007cf94c40004001ebfc0a6301010a6301fe
  01072708 0a630101 0000000000000000000000000000000000000000000000000000000000000000
  0800eeef11a70001b22f026b0000000075fa0e0000000000
  101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637
`);
// `ping -t 1 10.99.2.1` and the Linux router's Time Exceeded (IP packets).
const TTL1 = hex(`
  450000540baa4000010156380a6301010a630201
  08002f1111a50001b22f026b0000000035db0e0000000000
  101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637
`);
const LINUX_TIME_EXCEEDED = hex(`
  45c000701698000040014b710a6301fe0a630101
  0b00f4ff00000000
  450000540baa4000010156380a6301010a630201
  08002f1111a50001b22f026b0000000035db0e0000000000
  101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637
`);
// UDP to a closed port on the router, and its Port Unreachable.
const UDP_CLOSED = hex('4500002272d440004011b0320a6301010a6301fe 9c400009000e1380 636c6f736564');
const LINUX_PORT_UNREACH = hex(`
  45c0003e1705000040014b360a6301fe0a630101
  030314e100000000
  4500002272d440004011b0320a6301010a6301fe9c400009000e1380636c6f736564
`);
// `ping -M do -s 1400 10.99.2.1` into the 1280-byte link: Fragmentation Needed, 576 bytes.
const LINUX_FRAG_NEEDED = hex(`
  45c0024016990000400149a00a6301fe0a63
  010103040ec900000500450005940000400040011da20a6301010a6302010800
  3db611a60001b22f026b000000007aeb0e000000000010111213141516171819
  1a1b1c1d1e1f202122232425262728292a2b2c2d2e2f30313233343536373839
  3a3b3c3d3e3f404142434445464748494a4b4c4d4e4f50515253545556575859
  5a5b5c5d5e5f606162636465666768696a6b6c6d6e6f70717273747576777879
  7a7b7c7d7e7f808182838485868788898a8b8c8d8e8f90919293949596979899
  9a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9
  babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9
  dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9
  fafbfcfdfeff000102030405060708090a0b0c0d0e0f10111213141516171819
  1a1b1c1d1e1f202122232425262728292a2b2c2d2e2f30313233343536373839
  3a3b3c3d3e3f404142434445464748494a4b4c4d4e4f50515253545556575859
  5a5b5c5d5e5f606162636465666768696a6b6c6d6e6f70717273747576777879
  7a7b7c7d7e7f808182838485868788898a8b8c8d8e8f90919293949596979899
  9a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9
  babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9
  dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9
  fafbfcfdfeff0001020304050607
`);

const R = parseIp('10.99.1.254');
const A = parseIp('10.99.1.1');
const H1 = parseIp('10.0.0.1');
const H2 = parseIp('10.0.0.2');

// ---------------------------------------------------------------------------------------
// Packet builders (wire emitters) and a tshark harness.

interface PktOpts {
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
function udpPacket(dataLen: number, o: PktOpts = {}): Buffer {
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

/** An IPv4 header with `totalLen - 20` bytes after it, the first of them `first`. */
function headerOnly(protocol: number, totalLen: number, first: number): Buffer {
  const b = Buffer.alloc(totalLen);
  if (totalLen > 20) b[20] = first;
  emitIpv4(
    { dscp: 0, ecn: 0, totalLen, ident: 5, df: false, mf: false, fragOffset: 0, ttl: 64, protocol, srcAddr: H1, dstAddr: H2, options: new Uint8Array(0) },
    b,
    0,
  );
  return b;
}

/** An ICMP message of `type`/`code` with 8 bytes of data in an IP packet. */
function icmpPacket(type: number, code: number, o: PktOpts = {}): Buffer {
  const b = Buffer.alloc(36);
  emitIcmp({ type, code, rest: icmpRestEcho(7, 1) }, b, 20);
  b.fill(0x5a, 28);
  icmpFillChecksum(b, 20, 16);
  emitIpv4(
    {
      dscp: 0,
      ecn: 0,
      totalLen: b.length,
      ident: 1,
      df: false,
      mf: o.mf ?? false,
      fragOffset: o.fragOffset ?? 0,
      ttl: 64,
      protocol: IP_PROTO_ICMP,
      srcAddr: o.src ?? H1,
      dstAddr: o.dst ?? H2,
      options: new Uint8Array(0),
    },
    b,
    0,
  );
  return b;
}

let hasTshark = true;
try {
  execFileSync('tshark', ['--version'], { stdio: 'ignore' });
} catch {
  hasTshark = false;
}
const tmp = mkdtempSync(join(tmpdir(), 'tapnet-ip-util-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let pcapSeq = 0;

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

const TSHARK_CHECKS = ['-o', 'ip.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE', '-o', 'ip.defragment:TRUE'];

/**
 * Runs tshark over the packets and returns, per frame, the requested fields; a field that
 * occurs more than once (outer and quoted IP header) gives all values, comma-separated.
 * The ICMP checksum has no preference in tshark 4.0: it is always verified
 * (icmp.checksum.status) when the whole message was captured.
 */
function tshark(pkts: Buffer[], fields: string[]): string[][] {
  const file = join(tmp, `p${pcapSeq++}.pcap`);
  writeFileSync(file, pcapRaw(pkts));
  const args = ['-r', file, ...TSHARK_CHECKS, '-T', 'fields', '-E', 'separator=/t', '-E', 'occurrence=a', '-E', 'aggregator=,'];
  for (const f of fields) args.push('-e', f);
  const out = execFileSync('tshark', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 64 << 20 });
  return out
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => l.split('\t'));
}

/** tshark checksum status values (proto_checksum_enum_e). */
const CK_BAD = '0';
const CK_GOOD = '1';

// ---------------------------------------------------------------------------------------

describe('icmpErrorAllowed (RFC 1812 section 4.3.2.7)', () => {
  const cases: Array<{ name: string; pkt: () => Buffer; link?: boolean; ipLen?: number; want: boolean }> = [
    { name: 'unicast UDP', pkt: () => udpPacket(20), want: true },
    { name: 'captured TTL-1 echo request', pkt: () => Buffer.from(TTL1), want: true },
    { name: 'ICMP echo request', pkt: () => icmpPacket(8, 0), want: true },
    { name: 'ICMP echo reply', pkt: () => icmpPacket(0, 0), want: true },
    { name: 'ICMP timestamp (13)', pkt: () => icmpPacket(13, 0), want: true },
    { name: 'ICMP destination unreachable (3)', pkt: () => icmpPacket(3, 1), want: false },
    { name: 'ICMP source quench (4)', pkt: () => icmpPacket(4, 0), want: false },
    { name: 'ICMP redirect (5)', pkt: () => icmpPacket(5, 1), want: false },
    { name: 'ICMP time exceeded (11)', pkt: () => icmpPacket(11, 0), want: false },
    { name: 'ICMP parameter problem (12)', pkt: () => icmpPacket(12, 0), want: false },
    { name: 'ICMP unknown type 42 (as Linux)', pkt: () => icmpPacket(42, 0), want: false },
    { name: 'captured Linux time exceeded', pkt: () => Buffer.from(LINUX_TIME_EXCEEDED), want: false },
    { name: 'ICMP with no ICMP byte', pkt: () => headerOnly(IP_PROTO_ICMP, 20, 0), want: false },
    { name: 'ICMP with only the type byte (echo)', pkt: () => headerOnly(IP_PROTO_ICMP, 21, ICMP_ECHO_REQUEST), want: true },
    { name: 'link-layer broadcast', pkt: () => udpPacket(20), link: true, want: false },
    { name: 'dst 255.255.255.255', pkt: () => udpPacket(20, { dst: 0xffffffff }), want: false },
    { name: 'dst 224.0.0.1', pkt: () => udpPacket(20, { dst: parseIp('224.0.0.1') }), want: false },
    { name: 'dst 239.255.255.250', pkt: () => udpPacket(20, { dst: parseIp('239.255.255.250') }), want: false },
    { name: 'dst 10.0.0.255 (directed broadcast: caller knows its subnets)', pkt: () => udpPacket(20, { dst: parseIp('10.0.0.255') }), want: true },
    { name: 'first fragment (MF, offset 0)', pkt: () => udpPacket(20, { mf: true }), want: true },
    { name: 'non-initial fragment (offset 1)', pkt: () => udpPacket(20, { fragOffset: 1 }), want: false },
    { name: 'non-initial fragment (offset 185, MF)', pkt: () => udpPacket(20, { fragOffset: 185, mf: true }), want: false },
    { name: 'non-initial ICMP error fragment', pkt: () => icmpPacket(8, 0, { fragOffset: 3 }), want: false },
    { name: 'src 0.0.0.0', pkt: () => udpPacket(20, { src: 0 }), want: false },
    { name: 'src 255.255.255.255', pkt: () => udpPacket(20, { src: 0xffffffff }), want: false },
    { name: 'src 224.0.0.5', pkt: () => udpPacket(20, { src: parseIp('224.0.0.5') }), want: false },
    { name: 'src 239.1.2.3', pkt: () => udpPacket(20, { src: parseIp('239.1.2.3') }), want: false },
    { name: 'src 240.0.0.1', pkt: () => udpPacket(20, { src: parseIp('240.0.0.1') }), want: false },
    { name: 'src 127.0.0.1', pkt: () => udpPacket(20, { src: parseIp('127.0.0.1') }), want: false },
    { name: 'src 127.255.255.254', pkt: () => udpPacket(20, { src: parseIp('127.255.255.254') }), want: false },
    { name: 'src 223.255.255.254', pkt: () => udpPacket(20, { src: parseIp('223.255.255.254') }), want: true },
    { name: 'src 126.255.255.255', pkt: () => udpPacket(20, { src: parseIp('126.255.255.255') }), want: true },
    { name: 'src 1.0.0.0', pkt: () => udpPacket(20, { src: parseIp('1.0.0.0') }), want: true },
    {
      name: 'bad header checksum',
      pkt: () => {
        const b = udpPacket(20);
        b[10] ^= 1;
        return b;
      },
      want: false,
    },
    {
      name: 'version 6',
      pkt: () => {
        const b = udpPacket(20);
        b[0] = 0x65;
        return b;
      },
      want: false,
    },
    { name: 'total length beyond the bytes', pkt: () => udpPacket(20), ipLen: 40, want: false },
    { name: '19 bytes', pkt: () => udpPacket(20), ipLen: 19, want: false },
    { name: 'empty', pkt: () => Buffer.alloc(0), want: false },
    { name: 'garbage', pkt: () => Buffer.from('deadbeefdeadbeefdeadbeefdeadbeefdeadbeef', 'hex'), want: false },
    { name: 'trailing link padding allowed', pkt: () => Buffer.concat([udpPacket(2), Buffer.alloc(16)]), want: true },
  ];
  it.each(cases)('$name -> $want', ({ pkt, link, ipLen, want }) => {
    const b = pkt();
    expect(icmpErrorAllowed(b, 0, ipLen ?? b.length, link ?? false)).toBe(want);
  });

  it('reads at an offset and never throws on bad offsets', () => {
    const b = Buffer.concat([Buffer.alloc(14, 0xee), udpPacket(20)]);
    expect(icmpErrorAllowed(b, 14, b.length - 14, false)).toBe(true);
    expect(icmpErrorAllowed(b, -1, b.length, false)).toBe(false);
    expect(icmpErrorAllowed(b, 14, b.length, false)).toBe(false);
    expect(icmpErrorAllowed(b, 1000, 48, false)).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------

describe('emitIcmpError', () => {
  const errCases = [
    {
      name: 'time exceeded',
      orig: TTL1,
      type: ICMP_TIME_EXCEEDED,
      code: ICMP_TIME_EXCEEDED_TTL,
      rest: 0,
      ident: 0x1698,
      linux: LINUX_TIME_EXCEEDED,
    },
    {
      name: 'port unreachable',
      orig: UDP_CLOSED,
      type: ICMP_DEST_UNREACH,
      code: ICMP_UNREACH_PORT,
      rest: 0,
      ident: 0x1705,
      linux: LINUX_PORT_UNREACH,
    },
    {
      name: 'fragmentation needed, quote cut at 576',
      // The 1428-byte original: the 548 bytes Linux quoted, then more of ping's pattern.
      orig: Buffer.concat([LINUX_FRAG_NEEDED.subarray(28), Buffer.alloc(1428 - 548, 0x77)]),
      type: ICMP_DEST_UNREACH,
      code: ICMP_UNREACH_FRAG_NEEDED,
      rest: icmpRestFragNeeded(1280),
      ident: 0x1699,
      linux: LINUX_FRAG_NEEDED,
    },
  ];

  it.each(errCases)('$name: byte for byte what the Linux router sent', ({ orig, type, code, rest, ident, linux }) => {
    const out = Buffer.alloc(700, 0xa5);
    const n = emitIcmpError(out, 50, orig, 0, orig.length, type, code, rest, R, ident);
    expect(n).toBe(linux.length);
    expect(out.subarray(50, 50 + n).toString('hex')).toBe(linux.toString('hex'));
    expect(out.subarray(0, 50).every((x) => x === 0xa5)).toBe(true);
    expect(out.subarray(50 + n).every((x) => x === 0xa5)).toBe(true);
    // And the wire parsers agree.
    const ip = parseIpv4(out, 50, n);
    expect(ip).not.toBeNull();
    expect(ip).toMatchObject({ dscp: 48, totalLen: n, ident, df: false, mf: false, fragOffset: 0, ttl: 64, protocol: 1, srcAddr: R, dstAddr: A });
    expect(parseIcmp(out, 70, n - 20)).toEqual({ type, code, rest });
  });

  it('quotes the datagram up to its total length, not link padding, and at most 548 bytes', () => {
    const small = Buffer.concat([udpPacket(10), Buffer.alloc(8, 0xee)]); // 38 + 8 bytes padding
    const out = Buffer.alloc(576);
    expect(emitIcmpError(out, 0, small, 0, small.length, 3, 3, 0, R, 1)).toBe(28 + 38);
    expect(out.subarray(28, 66).equals(small.subarray(0, 38))).toBe(true);

    for (const len of [547, 548, 549, 1500, 65535]) {
      const big = udpPacket(len - 28);
      const n = emitIcmpError(out, 0, big, 0, big.length, 11, 0, 0, R, 2);
      expect(n).toBe(28 + Math.min(len, 548));
      expect(out.subarray(28, n).equals(big.subarray(0, n - 28))).toBe(true);
      expect(ipv4Check(out, 0, n)).toBe(CHECK_OK);
      expect(icmpCheck(out, 20, n - 20)).toBe(CHECK_OK);
    }
    // Only origIpLen bytes are ever read, even if the total length claims more.
    const cut = udpPacket(200);
    expect(emitIcmpError(out, 0, cut, 0, 100, 11, 0, 0, R, 3)).toBe(128);
  });

  it('may write over the offending datagram itself (overlapping regions)', () => {
    const orig = udpPacket(300);
    const want = Buffer.alloc(576);
    const n = emitIcmpError(want, 0, orig, 0, orig.length, 3, 1, 0, R, 9);
    for (const [origOff, dstOff] of [
      [100, 0],
      [100, 72],
      [100, 100],
      [100, 128],
      [100, 150],
    ]) {
      const slab = Buffer.alloc(1200, 0x33);
      orig.copy(slab, origOff);
      expect(emitIcmpError(slab, dstOff, slab, origOff, orig.length, 3, 1, 0, R, 9)).toBe(n);
      expect(slab.subarray(dstOff, dstOff + n).equals(want.subarray(0, n))).toBe(true);
    }
  });

  it('writes the 32-bit rest of header as given (parameter problem pointer)', () => {
    const out = Buffer.alloc(576);
    const n = emitIcmpError(out, 0, UDP_CLOSED, 0, UDP_CLOSED.length, ICMP_PARAM_PROBLEM, 0, 0x09000000, R, 4);
    expect(parseIcmp(out, 20, n - 20)).toEqual({ type: 12, code: 0, rest: 0x09000000 });
  });

  const badCases: Array<{ name: string; run: () => number }> = [
    { name: 'original shorter than an IP header', run: () => emitIcmpError(Buffer.alloc(576), 0, Buffer.alloc(19), 0, 19, 3, 1, 0, R, 1) },
    { name: 'origIpLen past the buffer', run: () => emitIcmpError(Buffer.alloc(576), 0, Buffer.alloc(40), 10, 40, 3, 1, 0, R, 1) },
    { name: 'negative origIpOff', run: () => emitIcmpError(Buffer.alloc(576), 0, Buffer.alloc(40), -1, 20, 3, 1, 0, R, 1) },
    { name: 'no room in dst', run: () => emitIcmpError(Buffer.alloc(60), 0, UDP_CLOSED, 0, UDP_CLOSED.length, 3, 1, 0, R, 1) },
    { name: 'negative dstOff', run: () => emitIcmpError(Buffer.alloc(576), -4, UDP_CLOSED, 0, UDP_CLOSED.length, 3, 1, 0, R, 1) },
  ];
  it.each(badCases)('returns -1: $name', ({ run }) => {
    expect(run()).toBe(-1);
  });

  it.skipIf(!hasTshark)('tshark: good IP and ICMP checksums, right fields, quoted header decoded', () => {
    const pkts: Buffer[] = [];
    const quoted: Buffer[] = [
      Buffer.from(TTL1),
      Buffer.from(UDP_CLOSED),
      udpPacket(2000),
      udpPacket(5, { options: hex('94040000') }),
      Buffer.concat([udpPacket(33), Buffer.alloc(9)]),
    ];
    const kinds: Array<[number, number, number]> = [
      [11, 0, 0],
      [3, 3, 0],
      [3, 4, icmpRestFragNeeded(1400)],
      [3, 1, 0],
      [12, 0, 0x14000000],
    ];
    quoted.forEach((q, i) => {
      const out = Buffer.alloc(576);
      const [type, code, rest] = kinds[i];
      const n = emitIcmpError(out, 0, q, 0, q.length, type, code, rest, R, 0x100 + i);
      pkts.push(out.subarray(0, n));
    });
    const rows = tshark(pkts, [
      'ip.len',
      'ip.dsfield',
      'ip.flags.df',
      'ip.ttl',
      'ip.src',
      'ip.dst',
      'ip.checksum.status',
      'icmp.type',
      'icmp.code',
      'icmp.checksum.status',
      'icmp.mtu',
    ]);
    expect(rows).toHaveLength(pkts.length);
    rows.forEach((r, i) => {
      const [len, ds, df, ttl, src, dst, ipck, type, code, icmpck, mtu] = r;
      const outer = (s: string): string => s.split(',')[0];
      expect(outer(len)).toBe(String(pkts[i].length));
      expect(outer(ds)).toBe('0xc0');
      expect(outer(df)).toBe('0');
      expect(outer(ttl)).toBe('64');
      expect(src.split(',')).toEqual(['10.99.1.254', i < 2 ? '10.99.1.1' : '10.0.0.1']);
      expect(dst.split(',')).toEqual([i < 2 ? '10.99.1.1' : '10.0.0.1', i < 2 ? (i === 0 ? '10.99.2.1' : '10.99.1.254') : '10.0.0.2']);
      // Both the error's header and the quoted header verify.
      expect(ipck.split(',')).toEqual([CK_GOOD, CK_GOOD]);
      expect(outer(type)).toBe(String(kinds[i][0]));
      expect(outer(code)).toBe(String(kinds[i][1]));
      expect(outer(icmpck)).toBe(CK_GOOD);
      expect(icmpck.split(',')).not.toContain(CK_BAD);
      if (i === 2) expect(mtu).toBe('1400');
    });
  });
});

// ---------------------------------------------------------------------------------------

describe('emitIcmpEchoReplyInPlace', () => {
  it('turns the captured request into the reply the kernel sent', () => {
    const b = Buffer.concat([Buffer.alloc(14, 0xee), ECHO_REQUEST]);
    expect(emitIcmpEchoReplyInPlace(b, 14, ECHO_REQUEST.length)).toBe(true);
    // ICMP part equal to the kernel's reply, checksum 0x1923 included.
    expect(b.subarray(34).toString('hex')).toBe(KERNEL_REPLY_ICMP.toString('hex'));
    const ip = parseIpv4(b, 14, ECHO_REQUEST.length);
    expect(ip).toMatchObject({ srcAddr: R, dstAddr: A, ttl: 64, totalLen: 84, ident: 0xf949, df: true, protocol: 1 });
    expect(parseIcmp(b, 34, 64)).toEqual({ type: ICMP_ECHO_REPLY, code: 0, rest: icmpRestEcho(0x11a4, 1) });
    expect(b.subarray(0, 14).every((x) => x === 0xee)).toBe(true);
  });

  it('neutralises options with NOPs and keeps the length (ping -R)', () => {
    const b = Buffer.from(ECHO_REQUEST_RR);
    expect(emitIcmpEchoReplyInPlace(b, 0, b.length)).toBe(true);
    expect(ipv4Check(b, 0, b.length)).toBe(CHECK_OK);
    expect(b[0]).toBe(0x4f);
    expect(b.subarray(20, 60).every((x) => x === 1)).toBe(true);
    expect(icmpCheck(b, 60, 64)).toBe(CHECK_OK);
    expect(b[60]).toBe(ICMP_ECHO_REPLY);
    expect(b.subarray(64).equals(ECHO_REQUEST_RR.subarray(64))).toBe(true);
  });

  it('incremental ICMP checksum equals a full recomputation (random payloads, codes, TTLs)', () => {
    let seed = 12345;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 16;
    for (let t = 0; t < 500; t++) {
      const dataLen = rnd() % 200;
      const b = Buffer.alloc(28 + dataLen + (t & 7));
      emitIcmp({ type: ICMP_ECHO_REQUEST, code: t % 3 === 0 ? rnd() & 0xff : 0, rest: (rnd() << 16) | rnd() }, b, 20);
      for (let i = 0; i < dataLen; i++) b[28 + i] = rnd() & 0xff;
      icmpFillChecksum(b, 20, 8 + dataLen);
      emitIpv4(
        { dscp: rnd() & 63, ecn: 0, totalLen: 28 + dataLen, ident: rnd(), df: (t & 1) === 1, mf: false, fragOffset: 0, ttl: rnd() & 0xff, protocol: 1, srcAddr: (rnd() << 16) | rnd(), dstAddr: (rnd() << 16) | rnd(), options: new Uint8Array(0) },
        b,
        0,
      );
      const code = b[21];
      expect(emitIcmpEchoReplyInPlace(b, 0, b.length)).toBe(true);
      expect(b[20]).toBe(0);
      expect(b[21]).toBe(code);
      expect(b.readUInt16BE(22)).toBe(icmpComputeChecksum(b, 20, 8 + dataLen));
      expect(ipv4ChecksumValid(b, 0)).toBe(true);
    }
  });

  const notEcho: Array<{ name: string; pkt: () => Buffer; ipLen?: number }> = [
    { name: 'echo reply', pkt: () => icmpPacket(0, 0) },
    { name: 'time exceeded', pkt: () => Buffer.from(LINUX_TIME_EXCEEDED) },
    { name: 'UDP', pkt: () => udpPacket(30) },
    { name: 'first fragment of an echo request', pkt: () => icmpPacket(8, 0, { mf: true }) },
    { name: 'later fragment', pkt: () => icmpPacket(8, 0, { fragOffset: 2 }) },
    {
      name: 'bad ICMP checksum',
      pkt: () => {
        const b = Buffer.from(ECHO_REQUEST);
        b[40] ^= 0x10;
        return b;
      },
    },
    {
      name: 'bad IP checksum',
      pkt: () => {
        const b = Buffer.from(ECHO_REQUEST);
        b[11] ^= 0x01;
        return b;
      },
    },
    { name: 'ICMP shorter than 8 bytes', pkt: () => headerOnly(IP_PROTO_ICMP, 27, ICMP_ECHO_REQUEST) },
    { name: 'truncated capture', pkt: () => Buffer.from(ECHO_REQUEST), ipLen: 60 },
    { name: 'garbage', pkt: () => Buffer.alloc(84, 0x08) },
    { name: 'empty', pkt: () => Buffer.alloc(0) },
  ];
  it.each(notEcho)('false and untouched: $name', ({ pkt, ipLen }) => {
    const b = pkt();
    const before = Buffer.from(b);
    expect(emitIcmpEchoReplyInPlace(b, 0, ipLen ?? b.length)).toBe(false);
    expect(b.equals(before)).toBe(true);
  });

  it.skipIf(!hasTshark)('tshark: replies have good checksums and are echo replies', () => {
    const a = Buffer.from(ECHO_REQUEST);
    const b = Buffer.from(ECHO_REQUEST_RR);
    emitIcmpEchoReplyInPlace(a, 0, a.length);
    emitIcmpEchoReplyInPlace(b, 0, b.length);
    const rows = tshark([a, b], ['ip.checksum.status', 'icmp.checksum.status', 'icmp.type', 'ip.src', 'ip.dst', 'ip.ttl', 'icmp.ident', 'icmp.seq', 'ip.opt.type']);
    expect(rows.map((r) => r.slice(0, 8))).toEqual([
      [CK_GOOD, CK_GOOD, '0', '10.99.1.254', '10.99.1.1', '64', '4516', '1'],
      [CK_GOOD, CK_GOOD, '0', '10.99.1.254', '10.99.1.1', '64', '4519', '1'],
    ]);
    expect(rows[1][8].split(',').every((t) => t === '1')).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------

/** Option sets: [bytes of the whole option area (multiple of 4), what later fragments carry]. */
const OPTION_SETS: Array<{ name: string; options: Buffer; later: Buffer }> = [
  { name: 'no options', options: hex(''), later: hex('') },
  // NOP + Record Route (7, not copied), as `ping -R` sends.
  {
    name: 'NOP + record route (not copied)',
    options: Buffer.concat([hex('01072708 0a630101'), Buffer.alloc(32)]),
    later: hex(''),
  },
  // NOP, loose source route (0x83, copied) with 2 addresses, record route, EOL.
  {
    name: 'NOP, LSRR (copied, 11 bytes), RR, EOL',
    options: hex('01 830b04 0a000003 0a000002 070704 00000000 00'),
    later: hex('830b04 0a000003 0a000002 00'),
  },
  // Router alert (0x94, copied) + timestamp (0x44, not copied) + security (0x82, copied).
  {
    name: 'router alert, timestamp, security (copied)',
    options: hex('94040000 440c0501 00000000 00000000 820b 0000 0000 0000 0000 00 00'),
    later: hex('94040000 820b 0000 0000 0000 0000 00 00'),
  },
  // 40 bytes of copied options: later fragments carry the whole header too. The route
  // ends at the header's destination: tshark takes a source route's last address as the
  // UDP pseudo-header destination (RFC 768, "final destination").
  {
    name: 'strict source route (0x89, copied) filling 40 bytes',
    options: hex('01 892704 0a000003 0a000004 0a000005 0a000006 0a000007 0a000008 0a000009 0a00000a 0a000002'),
    later: hex('892704 0a000003 0a000004 0a000005 0a000006 0a000007 0a000008 0a000009 0a00000a 0a000002 00'),
  },
];

interface Frags {
  n: number;
  pkts: Buffer[];
  dst: Buffer;
}

function frag(src: Buffer, mtu: number, maxFrags = 9000, stride = mtu + 8, off = 0): Frags {
  const lens = new Uint32Array(maxFrags);
  // Never more fragments than 8-byte blocks of payload, plus one.
  const slots = Math.min(maxFrags, Math.ceil(src.length / 8) + 1);
  const dst = Buffer.alloc(off + slots * stride, 0xa5);
  const n = fragmentIpv4(src, 0, src.length, mtu, dst, off, stride, maxFrags, lens);
  const pkts: Buffer[] = [];
  for (let k = 0; k < n; k++) pkts.push(dst.subarray(off + k * stride, off + k * stride + lens[k]));
  return { n, pkts, dst };
}

/** Checks every fragment against RFC 791 and puts the original payload back together. */
function checkAndReassemble(orig: Buffer, pkts: Buffer[], mtu: number, later: Buffer): Buffer {
  const o = parseIpv4(orig, 0, orig.length)!;
  const ohlen = 20 + o.options.length;
  const payload = Buffer.alloc(orig.length - ohlen, 0xee);
  let expectOff = o.fragOffset * 8;
  pkts.forEach((p, k) => {
    const last = k === pkts.length - 1;
    expect(p.length).toBeLessThanOrEqual(mtu);
    const f = parseIpv4(p, 0, p.length);
    expect(f).not.toBeNull();
    expect(f!.totalLen).toBe(p.length);
    const hl = 20 + f!.options.length;
    if (k === 0) expect(Buffer.from(f!.options).equals(Buffer.from(o.options))).toBe(true);
    else expect(Buffer.from(f!.options).toString('hex')).toBe(later.toString('hex'));
    const data = p.length - hl;
    if (!last) expect(data % 8).toBe(0);
    expect(data).toBeGreaterThan(0);
    expect(f!.fragOffset * 8).toBe(expectOff);
    expect(f!.mf).toBe(last ? o.mf : true);
    expect(f!).toMatchObject({ ident: o.ident, ttl: o.ttl, protocol: o.protocol, srcAddr: o.srcAddr, dstAddr: o.dstAddr, df: false, dscp: o.dscp });
    p.copy(payload, expectOff - o.fragOffset * 8, hl);
    expectOff += data;
  });
  expect(expectOff - o.fragOffset * 8).toBe(payload.length);
  return payload;
}

describe('fragmentIpv4 (RFC 791 section 3.2)', () => {
  const sizes = [100, 577, 1401, 1500, 3000, 8000, 65535];
  const mtus = [1400, 576, 68];
  for (const set of OPTION_SETS) {
    for (const mtu of mtus) {
      it(`${set.name}, mtu ${mtu}: sizes ${sizes.join(', ')}`, () => {
        for (const size of sizes) {
          const hlen = 20 + set.options.length;
          if (mtu < hlen + 8) continue;
          const orig = udpPacket(size - hlen - 8, { options: set.options, ttl: 17, ident: size });
          const r = frag(orig, mtu);
          if (size <= mtu) {
            expect(r.n).toBe(1);
            expect(r.pkts[0].equals(orig)).toBe(true);
            continue;
          }
          const firstData = (mtu - hlen) & ~7;
          const laterData = (mtu - 20 - set.later.length) & ~7;
          expect(r.n).toBe(1 + Math.ceil((size - hlen - firstData) / laterData));
          const payload = checkAndReassemble(orig, r.pkts, mtu, set.later);
          expect(payload.equals(orig.subarray(hlen))).toBe(true);
          // Nothing written between fragments (the slot past each fragment keeps 0xa5).
          for (let k = 0; k < r.n; k++) {
            const s = k * (mtu + 8) + r.pkts[k].length;
            expect(r.dst.subarray(s, (k + 1) * (mtu + 8)).every((x) => x === 0xa5)).toBe(true);
          }
        }
      });
    }
  }

  it('fragments a fragment: offsets added, MF kept on the last piece when the original had it', () => {
    const whole = udpPacket(4000, { options: hex('94040000') });
    const first = frag(whole, 1500);
    expect(first.n).toBe(3);
    // Re-fragment the middle one (MF set, offset > 0) and the last one (MF clear).
    const mid = Buffer.from(first.pkts[1]);
    const end = Buffer.from(first.pkts[2]);
    const midFr = frag(mid, 576);
    const endFr = frag(end, 576);
    expect(midFr.n).toBeGreaterThan(1);
    expect(parseIpv4(midFr.pkts[midFr.n - 1], 0, midFr.pkts[midFr.n - 1].length)!.mf).toBe(true);
    expect(parseIpv4(endFr.pkts[endFr.n - 1], 0, endFr.pkts[endFr.n - 1].length)!.mf).toBe(false);
    expect(parseIpv4(midFr.pkts[0], 0, midFr.pkts[0].length)!.fragOffset).toBe(parseIpv4(mid, 0, mid.length)!.fragOffset);
    checkAndReassemble(mid, midFr.pkts, 576, hex('94040000'));
    checkAndReassemble(end, endFr.pkts, 576, hex('94040000'));
    // Together they still make the original.
    const all = [first.pkts[0], ...midFr.pkts, ...endFr.pkts];
    const payload = Buffer.alloc(whole.length - 24);
    for (const p of all) {
      const hl = (p[0] & 15) * 4;
      p.copy(payload, (p.readUInt16BE(6) & 0x1fff) * 8, hl);
    }
    expect(payload.equals(whole.subarray(24))).toBe(true);
  });

  it('keeps the reserved flag and the TOS, writes at an offset, accepts trailing padding', () => {
    const orig = Buffer.concat([udpPacket(1000), Buffer.alloc(10, 0xcc)]);
    orig[1] = 0xb8; // EF
    orig[6] |= 0x80;
    ipv4FillChecksum(orig, 0);
    const lens = new Uint32Array(4);
    const dst = Buffer.alloc(3 * 600 + 7, 0xa5);
    expect(fragmentIpv4(orig, 0, orig.length, 576, dst, 7, 600, 4, lens)).toBe(2);
    expect(dst.subarray(0, 7).every((x) => x === 0xa5)).toBe(true);
    for (const k of [0, 1]) {
      const p = dst.subarray(7 + k * 600, 7 + k * 600 + lens[k]);
      expect(ipv4Check(p, 0, p.length)).toBe(CHECK_OK);
      expect(p[1]).toBe(0xb8);
      expect(p[6] & 0x80).toBe(0x80);
    }
    expect(lens[0] + lens[1] - 20).toBe(1028);
  });

  const errors: Array<{ name: string; run: () => number; want: number }> = [
    { name: 'DF set and too big', run: () => frag(udpPacket(2000, { df: true }), 1500).n, want: FRAG_DF_SET },
    { name: 'DF set but fits: copied', run: () => frag(udpPacket(1000, { df: true }), 1500).n, want: 1 },
    { name: 'mtu 27 < 20 + 8', run: () => frag(udpPacket(100), 27).n, want: FRAG_TOO_MANY },
    { name: 'mtu 28 = 20 + 8 works', run: () => frag(udpPacket(100), 28).n, want: 14 },
    { name: 'mtu 67 < 60 + 8', run: () => frag(udpPacket(100, { options: OPTION_SETS[4].options }), 67).n, want: FRAG_TOO_MANY },
    { name: 'more than maxFrags', run: () => frag(udpPacket(3000), 1400, 2).n, want: FRAG_TOO_MANY },
    { name: 'exactly maxFrags', run: () => frag(udpPacket(3000), 1400, 3).n, want: 3 },
    { name: 'stride < mtu', run: () => frag(udpPacket(3000), 1400, 4, 1399).n, want: FRAG_BAD_INPUT },
    {
      name: 'outLens shorter than the fragments',
      run: () => fragmentIpv4(udpPacket(3000), 0, 3028, 1400, Buffer.alloc(6000), 0, 1500, 4, new Uint32Array(2)),
      want: FRAG_BAD_INPUT,
    },
    {
      name: 'dst too small for the last fragment',
      run: () => fragmentIpv4(udpPacket(3000), 0, 3028, 1400, Buffer.alloc(3000), 0, 1400, 4, new Uint32Array(4)),
      want: FRAG_BAD_INPUT,
    },
    {
      name: 'dst too small for a fitting datagram',
      run: () => fragmentIpv4(udpPacket(100), 0, 128, 1400, Buffer.alloc(100), 0, 1400, 4, new Uint32Array(4)),
      want: FRAG_BAD_INPUT,
    },
    { name: 'empty input', run: () => fragmentIpv4(Buffer.alloc(0), 0, 0, 1400, Buffer.alloc(3000), 0, 1500, 2, new Uint32Array(2)), want: FRAG_BAD_INPUT },
    { name: 'garbage input', run: () => fragmentIpv4(Buffer.alloc(2000, 0x99), 0, 2000, 576, Buffer.alloc(9000), 0, 600, 9, new Uint32Array(9)), want: FRAG_BAD_INPUT },
    { name: 'total length beyond ipLen', run: () => fragmentIpv4(udpPacket(3000), 0, 1000, 576, Buffer.alloc(9000), 0, 600, 9, new Uint32Array(9)), want: FRAG_BAD_INPUT },
    { name: 'option length 0', run: () => frag(udpPacket(1000, { options: hex('83000000') }), 576).n, want: FRAG_BAD_INPUT },
    { name: 'option length 1', run: () => frag(udpPacket(1000, { options: hex('83010000') }), 576).n, want: FRAG_BAD_INPUT },
    { name: 'option running past the header', run: () => frag(udpPacket(1000, { options: hex('01018305') }), 576).n, want: FRAG_BAD_INPUT },
    { name: 'option type in the last byte, no length', run: () => frag(udpPacket(1000, { options: hex('01010183') }), 576).n, want: FRAG_BAD_INPUT },
    { name: 'bytes after EOL ignored', run: () => frag(udpPacket(1000, { options: hex('00830000') }), 576).n, want: 2 },
    {
      name: 'offset would pass 8191 units',
      run: () => frag(udpPacket(1000, { fragOffset: 0x1fff - 10, mf: true }), 576).n,
      want: FRAG_BAD_INPUT,
    },
    {
      name: 'offset reaching exactly 8191 units',
      run: () => frag(udpPacket(1000, { fragOffset: 0x1fff - 69, mf: true }), 576).n,
      want: 2,
    },
  ];
  it.each(errors)('$name -> $want', ({ run, want }) => {
    expect(run()).toBe(want);
  });

  it.skipIf(!hasTshark)('tshark: every fragment checksum good, reassembles to the original (mtu 1400, 576, 68; with and without options)', () => {
    const pkts: Buffer[] = [];
    const expected: Array<{ lastFrame: number; orig: Buffer; hlen: number; count: number }> = [];
    let ident = 0x4000;
    for (const set of OPTION_SETS) {
      for (const mtu of mtus) {
        for (const size of [577, 1401, 3000, 8000, 20000]) {
          const hlen = 20 + set.options.length;
          if (mtu < hlen + 8) continue;
          const orig = udpPacket(size - hlen - 8, { options: set.options, ident: ident++ });
          const r = frag(orig, mtu);
          if (r.n < 2) continue;
          pkts.push(...r.pkts.map((p) => Buffer.from(p)));
          expected.push({ lastFrame: pkts.length, orig, hlen, count: r.n });
        }
      }
    }
    // A fragment of a fragment, also reassembled by tshark with its sibling fragments.
    const whole = udpPacket(5000, { options: OPTION_SETS[2].options, ident: ident++ });
    const first = frag(whole, 1500);
    const midFr = frag(Buffer.from(first.pkts[1]), 576);
    pkts.push(Buffer.from(first.pkts[0]), ...midFr.pkts.map((p) => Buffer.from(p)), ...first.pkts.slice(2).map((p) => Buffer.from(p)));
    expected.push({ lastFrame: pkts.length, orig: whole, hlen: 20 + OPTION_SETS[2].options.length, count: 1 + midFr.n + first.n - 2 });

    expect(expected.length).toBe(71); // 5 option sets x 3 MTUs x 5 sizes, less those that fit, + 1
    const rows = tshark(pkts, ['frame.number', 'ip.checksum.status', 'ip.reassembled.length', 'ip.fragment.count', 'udp.checksum.status', 'ip.reassembled.data']);
    expect(rows).toHaveLength(pkts.length);
    for (const r of rows) expect(r[1]).toBe(CK_GOOD);
    const reassembled = rows.filter((r) => r[2] !== '');
    expect(reassembled.map((r) => Number(r[0]))).toEqual(expected.map((e) => e.lastFrame));
    reassembled.forEach((r, i) => {
      const e = expected[i];
      expect(Number(r[2])).toBe(e.orig.length - e.hlen);
      expect(Number(r[3])).toBe(e.count);
      expect(r[4]).toBe(CK_GOOD); // the UDP checksum over the reassembled datagram
      expect(r[5]).toBe(e.orig.subarray(e.hlen).toString('hex'));
    });
  });
});

// ---------------------------------------------------------------------------------------

describe('TokenBucket (RFC 1812 section 4.3.2.8)', () => {
  it('lets a burst through, then the steady rate', () => {
    const tb = new TokenBucket(1000, 50);
    let n = 0;
    for (let i = 0; i < 100; i++) if (tb.take(5000)) n++;
    expect(n).toBe(50);
    expect(tb.take(5000)).toBe(false);
    expect(tb.take(5000.5)).toBe(false);
    expect(tb.take(5001)).toBe(true);
    expect(tb.take(5001)).toBe(false);
    // One second of asking every 0.1 ms: 1000 more, no burst on top.
    n = 0;
    for (let t = 5001; t <= 6001; t += 0.125) if (tb.take(t)) n++;
    expect(n).toBeGreaterThanOrEqual(999);
    expect(n).toBeLessThanOrEqual(1001);
  });

  it('refills up to the burst only, however long it was idle', () => {
    const tb = new TokenBucket(10, 5);
    for (let i = 0; i < 5; i++) expect(tb.take(0)).toBe(true);
    expect(tb.take(0)).toBe(false);
    expect(tb.take(99)).toBe(false);
    expect(tb.take(100)).toBe(true);
    let n = 0;
    for (let i = 0; i < 20; i++) if (tb.take(1_000_000)) n++;
    expect(n).toBe(5);
  });

  it('slow rates and a clock that steps back', () => {
    const tb = new TokenBucket(1, 1);
    expect(tb.take(1000)).toBe(true);
    expect(tb.take(1999)).toBe(false);
    expect(tb.take(500)).toBe(false); // back in time: nothing gained, nothing thrown
    expect(tb.take(2000)).toBe(true);
    expect(tb.take(Number.NaN)).toBe(false);
    expect(tb.take(3000)).toBe(true);
  });

  it('rate 0 gives the burst once', () => {
    const tb = new TokenBucket(0, 3);
    const got = [0, 1, 2, 3, 1e9].map((t) => tb.take(t));
    expect(got).toEqual([true, true, true, false, false]);
  });

  it('defaults to Linux icmp_msgs_per_sec / icmp_msgs_burst', () => {
    expect([ICMP_RATE_PER_SECOND, ICMP_RATE_BURST]).toEqual([1000, 50]);
    const tb = new TokenBucket();
    let n = 0;
    for (let i = 0; i < 60; i++) if (tb.take(0)) n++;
    expect(n).toBe(50);
  });

  it.each([
    [-1, 5],
    [Number.NaN, 5],
    [Number.POSITIVE_INFINITY, 5],
    [10, 0],
    [10, 0.5],
    [10, Number.NaN],
  ])('rejects a bad configuration (rate %s, burst %s)', (rate, burst) => {
    expect(() => new TokenBucket(rate, burst)).toThrow(/TokenBucket/);
  });
});
