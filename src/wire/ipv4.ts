// IPv4 header (RFC 791 section 3.1).
//
//   0 version(4) ihl(4) | 1 dscp(6) ecn(2) | 2 totalLen
//   4 ident             | 6 flags(3) fragOffset(13)
//   8 ttl | 9 protocol  | 10 checksum
//  12 srcAddr | 16 dstAddr | 20 options (ihl*4 - 20 bytes)

import { readI32, readU16, readU32, writeU16, writeU32, copyBytes } from "./bytes.js";
import { checksumSum, checksumUpdate16, checksumUpdate32, internetChecksum } from "./checksum.js";
import { CHECK_BAD_CHECKSUM, CHECK_BAD_IHL, CHECK_BAD_TOTAL_LEN, CHECK_BAD_VERSION, CHECK_OK, CHECK_TOO_SHORT } from "./reason.js";

export const IPV4_TOS_OFF = 1;
export const IPV4_TOTAL_LEN_OFF = 2;
export const IPV4_IDENT_OFF = 4;
export const IPV4_FLAGS_FRAG_OFF = 6;
export const IPV4_TTL_OFF = 8;
export const IPV4_PROTOCOL_OFF = 9;
export const IPV4_CHECKSUM_OFF = 10;
export const IPV4_SRC_ADDR_OFF = 12;
export const IPV4_DST_ADDR_OFF = 16;
export const IPV4_OPTIONS_OFF = 20;
/** Header without options. */
export const IPV4_HEADER_LEN = 20;
/** ihl = 15. */
export const IPV4_MAX_HEADER_LEN = 60;
/** TTL of datagrams a node originates: replies, errors, resets (Linux net.ipv4.ip_default_ttl). */
export const IPV4_DEFAULT_TTL = 64;

/** The 3 flag bits as ipv4SetFlags takes them: bit 0 reserved, bit 1 DF, bit 2 MF (RFC 791 numbering, MSB first). */
export const IPV4_FLAG_DF = 0b010;
export const IPV4_FLAG_MF = 0b001;

/** Assigned Internet Protocol numbers (IANA). */
export const IP_PROTO_ICMP = 1;
export const IP_PROTO_IPIP = 4;
export const IP_PROTO_TCP = 6;
export const IP_PROTO_UDP = 17;

/**
 * Validates the header in `len` available bytes. Returns CHECK_OK or, in this order:
 * CHECK_TOO_SHORT (< 20 bytes, or fewer than ihl*4), CHECK_BAD_VERSION, CHECK_BAD_IHL
 * (ihl < 5), CHECK_BAD_TOTAL_LEN (totalLen < ihl*4 or > len; bytes after totalLen,
 * such as Ethernet padding, are allowed), CHECK_BAD_CHECKSUM (only when verifyChecksum).
 */
export function ipv4Check(buf: Uint8Array, off: number, len: number, verifyChecksum = true): number {
  if (off < 0 || len < IPV4_HEADER_LEN || off + len > buf.length) return CHECK_TOO_SHORT;
  const vi = buf[off];
  if (vi >>> 4 !== 4) return CHECK_BAD_VERSION;
  const hlen = (vi & 0x0f) << 2;
  if (hlen < IPV4_HEADER_LEN) return CHECK_BAD_IHL;
  if (hlen > len) return CHECK_TOO_SHORT;
  const totalLen = readU16(buf, off + IPV4_TOTAL_LEN_OFF);
  if (totalLen < hlen || totalLen > len) return CHECK_BAD_TOTAL_LEN;
  // RFC 1071: the sum over a header holding a correct checksum is 0xffff (-0).
  if (verifyChecksum && checksumSum(buf, off, hlen) !== 0xffff) return CHECK_BAD_CHECKSUM;
  return CHECK_OK;
}

/** Header length in bytes (ihl * 4). */
export function ipv4GetHeaderLen(buf: Uint8Array, off: number): number {
  return (buf[off] & 0x0f) << 2;
}
export function ipv4GetTotalLen(buf: Uint8Array, off: number): number {
  return readU16(buf, off + IPV4_TOTAL_LEN_OFF);
}
export function ipv4SetTotalLen(buf: Uint8Array, off: number, v: number): void {
  writeU16(buf, off + IPV4_TOTAL_LEN_OFF, v);
}
export function ipv4GetIdent(buf: Uint8Array, off: number): number {
  return readU16(buf, off + IPV4_IDENT_OFF);
}
/** Sets the 3 flag bits (IPV4_FLAG_DF | IPV4_FLAG_MF). */
export function ipv4SetFlags(buf: Uint8Array, off: number, flags: number): void {
  const o = off + IPV4_FLAGS_FRAG_OFF;
  buf[o] = (buf[o] & 0x1f) | ((flags & 7) << 5);
}
/** Don't Fragment. */
export function ipv4GetDf(buf: Uint8Array, off: number): boolean {
  return (buf[off + IPV4_FLAGS_FRAG_OFF] & 0x40) !== 0;
}
export function ipv4SetDf(buf: Uint8Array, off: number, df: boolean): void {
  const o = off + IPV4_FLAGS_FRAG_OFF;
  buf[o] = df ? buf[o] | 0x40 : buf[o] & 0xbf;
}
/** More Fragments. */
export function ipv4GetMf(buf: Uint8Array, off: number): boolean {
  return (buf[off + IPV4_FLAGS_FRAG_OFF] & 0x20) !== 0;
}
/** Fragment offset in 8-octet units, as on the wire (multiply by 8 for bytes). */
export function ipv4GetFragOffset(buf: Uint8Array, off: number): number {
  return readU16(buf, off + IPV4_FLAGS_FRAG_OFF) & 0x1fff;
}
export function ipv4SetFragOffset(buf: Uint8Array, off: number, units: number): void {
  const o = off + IPV4_FLAGS_FRAG_OFF;
  writeU16(buf, o, ((buf[o] & 0xe0) << 8) | (units & 0x1fff));
}
/** True for any fragment: MF set or a non-zero offset (RFC 791 section 3.2). */
export function ipv4IsFragment(buf: Uint8Array, off: number): boolean {
  return (readU16(buf, off + IPV4_FLAGS_FRAG_OFF) & 0x3fff) !== 0;
}
export function ipv4GetTtl(buf: Uint8Array, off: number): number {
  return buf[off + IPV4_TTL_OFF];
}
export function ipv4GetProtocol(buf: Uint8Array, off: number): number {
  return buf[off + IPV4_PROTOCOL_OFF];
}
export function ipv4GetSrcAddr(buf: Uint8Array, off: number): number {
  return readU32(buf, off + IPV4_SRC_ADDR_OFF);
}
export function ipv4GetDstAddr(buf: Uint8Array, off: number): number {
  return readU32(buf, off + IPV4_DST_ADDR_OFF);
}

/** Header checksum computed over ihl*4 bytes as if the checksum field were zero. */
export function ipv4ComputeChecksum(buf: Uint8Array, off: number): number {
  const hlen = (buf[off] & 0x0f) << 2;
  // Sum the 10 bytes before the field and the rest after it: no need to zero it first.
  return internetChecksum(buf, off + 12, hlen - 12, checksumSum(buf, off, 10));
}

/** Computes and stores the header checksum. */
export function ipv4FillChecksum(buf: Uint8Array, off: number): void {
  writeU16(buf, off + IPV4_CHECKSUM_OFF, ipv4ComputeChecksum(buf, off));
}

/** True when the stored header checksum is correct (RFC 1071 verification). */
export function ipv4ChecksumValid(buf: Uint8Array, off: number): boolean {
  return checksumSum(buf, off, (buf[off] & 0x0f) << 2) === 0xffff;
}

/**
 * Decrements the TTL and updates the checksum incrementally (RFC 1624; TTL and protocol
 * share one 16-bit word). Returns the new TTL. A TTL of 0 is left alone and 0 returned;
 * a router checks `ipv4GetTtl() <= 1` first and sends Time Exceeded instead of
 * forwarding (RFC 1812 section 5.3.1).
 */
export function ipv4DecrementTtl(buf: Uint8Array, off: number): number {
  const o = off + IPV4_TTL_OFF;
  const ttl = buf[o];
  if (ttl === 0) return 0;
  const oldWord = (ttl << 8) | buf[o + 1];
  buf[o] = ttl - 1;
  const hc = readU16(buf, off + IPV4_CHECKSUM_OFF);
  writeU16(buf, off + IPV4_CHECKSUM_OFF, checksumUpdate16(hc, oldWord, oldWord - 0x100));
  return ttl - 1;
}

/**
 * Rewrites the address at `fieldOff` (IPV4_SRC_ADDR_OFF or IPV4_DST_ADDR_OFF) and updates
 * the header checksum incrementally (RFC 1624); an unchanged address leaves the header
 * alone. Returns the old address as int32 bits (readI32), for the transport checksum's
 * pseudo-header. `addr` may be uint32 or int32 bits.
 */
function setAddr(buf: Uint8Array, off: number, fieldOff: number, addr: number): number {
  const old = readI32(buf, off + fieldOff);
  if (old === (addr | 0)) return old;
  writeU32(buf, off + fieldOff, addr);
  const hc = readU16(buf, off + IPV4_CHECKSUM_OFF);
  writeU16(buf, off + IPV4_CHECKSUM_OFF, checksumUpdate32(hc, old, addr));
  return old;
}

/** Rewrites the source address, header checksum updated (NAT); returns the old one (int32 bits). */
export function ipv4SetSrcAddrWithChecksumUpdate(buf: Uint8Array, off: number, addr: number): number {
  return setAddr(buf, off, IPV4_SRC_ADDR_OFF, addr);
}

/** Rewrites the destination address, header checksum updated (NAT); returns the old one (int32 bits). */
export function ipv4SetDstAddrWithChecksumUpdate(buf: Uint8Array, off: number, addr: number): number {
  return setAddr(buf, off, IPV4_DST_ADDR_OFF, addr);
}

export interface Ipv4Repr {
  dscp: number;
  ecn: number;
  /** Header plus payload, bytes. */
  totalLen: number;
  ident: number;
  df: boolean;
  mf: boolean;
  /** In 8-octet units. */
  fragOffset: number;
  ttl: number;
  protocol: number;
  srcAddr: number;
  dstAddr: number;
  /** Option bytes, a multiple of 4 up to 40 (padding included); empty for ihl 5. */
  options: Uint8Array;
}

/** The header as a plain object (options copied), or null when ipv4Check() fails, including a bad checksum. */
export function parseIpv4(buf: Uint8Array, off: number, len: number): Ipv4Repr | null {
  if (ipv4Check(buf, off, len, true) !== CHECK_OK) return null;
  return {
    dscp: buf[off + IPV4_TOS_OFF] >>> 2,
    ecn: buf[off + IPV4_TOS_OFF] & 0x03,
    totalLen: ipv4GetTotalLen(buf, off),
    ident: ipv4GetIdent(buf, off),
    df: ipv4GetDf(buf, off),
    mf: ipv4GetMf(buf, off),
    fragOffset: ipv4GetFragOffset(buf, off),
    ttl: ipv4GetTtl(buf, off),
    protocol: ipv4GetProtocol(buf, off),
    srcAddr: ipv4GetSrcAddr(buf, off),
    dstAddr: ipv4GetDstAddr(buf, off),
    options: copyBytes(buf, off + IPV4_OPTIONS_OFF, ipv4GetHeaderLen(buf, off) - IPV4_HEADER_LEN),
  };
}

/**
 * The length of an IPv4 or TCP header carrying `options`: both are 20 bytes and give
 * their length in 32-bit words (at most 15), so options are a multiple of 4 bytes up to
 * 40. Throws on anything else: emitting such options is a bug in the caller, not
 * something a peer can cause.
 */
export function headerLenWithOptions(protocol: string, options: Uint8Array): number {
  const n = options.length;
  if ((n & 3) !== 0 || n > IPV4_MAX_HEADER_LEN - IPV4_HEADER_LEN) {
    throw new Error(`${protocol} options must be a multiple of 4 bytes and at most 40, got ${n}`);
  }
  return IPV4_HEADER_LEN + n;
}

/**
 * Writes the header with its options and checksum at `off`; returns the header length.
 * Throws when options are not a multiple of 4 bytes or longer than 40 (headerLenWithOptions).
 */
export function emitIpv4(repr: Ipv4Repr, buf: Uint8Array, off: number): number {
  const hlen = headerLenWithOptions("IPv4", repr.options);
  buf[off] = 0x40 | (hlen >>> 2);
  buf[off + IPV4_TOS_OFF] = ((repr.dscp & 0x3f) << 2) | (repr.ecn & 3);
  writeU16(buf, off + IPV4_TOTAL_LEN_OFF, repr.totalLen);
  writeU16(buf, off + IPV4_IDENT_OFF, repr.ident);
  writeU16(buf, off + IPV4_FLAGS_FRAG_OFF, (repr.df ? 0x4000 : 0) | (repr.mf ? 0x2000 : 0) | (repr.fragOffset & 0x1fff));
  buf[off + IPV4_TTL_OFF] = repr.ttl;
  buf[off + IPV4_PROTOCOL_OFF] = repr.protocol;
  writeU32(buf, off + IPV4_SRC_ADDR_OFF, repr.srcAddr);
  writeU32(buf, off + IPV4_DST_ADDR_OFF, repr.dstAddr);
  buf.set(repr.options, off + IPV4_OPTIONS_OFF);
  ipv4FillChecksum(buf, off);
  return hlen;
}
