// ICMP for IPv4 (RFC 792). Every message starts with the same 8 bytes:
//
//   0 type | 1 code | 2 checksum | 4 rest of header (4 bytes, meaning depends on type)
//
// The checksum covers the whole ICMP message, header and data (RFC 792, "Checksum").

import { readU16, readU32, writeU16, writeU32 } from "./bytes.js";
import { checksumSum, checksumUpdate16, checksumUpdate32, internetChecksum } from "./checksum.js";
import {
  IP_PROTO_ICMP,
  IPV4_DEFAULT_TTL,
  IPV4_DST_ADDR_OFF,
  IPV4_FLAGS_FRAG_OFF,
  IPV4_HEADER_LEN,
  IPV4_IDENT_OFF,
  IPV4_OPTIONS_OFF,
  IPV4_PROTOCOL_OFF,
  IPV4_SRC_ADDR_OFF,
  IPV4_TOS_OFF,
  IPV4_TOTAL_LEN_OFF,
  IPV4_TTL_OFF,
  ipv4Check,
  ipv4FillChecksum,
} from "./ipv4.js";
import { IP_BROADCAST } from "./ipv4addr.js";
import { CHECK_BAD_CHECKSUM, CHECK_OK, CHECK_TOO_SHORT } from "./reason.js";

export const ICMP_TYPE_OFF = 0;
export const ICMP_CODE_OFF = 1;
export const ICMP_CHECKSUM_OFF = 2;
export const ICMP_REST_OFF = 4;
/** Echo: identifier at 4 (the sequence number follows at 6). */
export const ICMP_IDENT_OFF = 4;
export const ICMP_HEADER_LEN = 8;
/**
 * Largest ICMP error datagram a router sends, IP header included: as much of the
 * offending datagram as fits in 576 bytes (RFC 1812 section 4.3.2.3).
 */
export const ICMP_ERROR_MAX_DATAGRAM_LEN = 576;

export const ICMP_ECHO_REPLY = 0;
export const ICMP_DEST_UNREACH = 3;
export const ICMP_SOURCE_QUENCH = 4;
export const ICMP_REDIRECT = 5;
export const ICMP_ECHO_REQUEST = 8;
export const ICMP_TIME_EXCEEDED = 11;
export const ICMP_PARAM_PROBLEM = 12;

/** Destination Unreachable codes (RFC 792). */
export const ICMP_UNREACH_NET = 0;
export const ICMP_UNREACH_HOST = 1;
export const ICMP_UNREACH_PROTOCOL = 2;
export const ICMP_UNREACH_PORT = 3;
export const ICMP_UNREACH_FRAG_NEEDED = 4;
export const ICMP_UNREACH_SR_FAILED = 5;

/** Time Exceeded codes (RFC 792). */
/** Redirect for Host (RFC 792): Linux's only kind. */
export const ICMP_REDIRECT_HOST = 1;
export const ICMP_TIME_EXCEEDED_TTL = 0;
export const ICMP_TIME_EXCEEDED_REASSEMBLY = 1;

/**
 * True for error messages, which must never be answered with another ICMP error
 * (RFC 1122 section 3.2.2, RFC 1812 section 4.3.2.7).
 */
export function icmpIsError(type: number): boolean {
  return type === ICMP_DEST_UNREACH || type === ICMP_SOURCE_QUENCH || type === ICMP_REDIRECT || type === ICMP_TIME_EXCEEDED || type === ICMP_PARAM_PROBLEM;
}

/**
 * Validates an ICMP message of `len` bytes (the IP payload: totalLen - ihl*4).
 * CHECK_TOO_SHORT below 8 bytes; CHECK_BAD_CHECKSUM when the checksum over all `len`
 * bytes is wrong and verifyChecksum is set.
 */
export function icmpCheck(buf: Uint8Array, off: number, len: number, verifyChecksum = true): number {
  if (off < 0 || len < ICMP_HEADER_LEN || off + len > buf.length) return CHECK_TOO_SHORT;
  if (verifyChecksum && checksumSum(buf, off, len) !== 0xffff) return CHECK_BAD_CHECKSUM;
  return CHECK_OK;
}

export function icmpGetType(buf: Uint8Array, off: number): number {
  return buf[off + ICMP_TYPE_OFF];
}
export function icmpGetCode(buf: Uint8Array, off: number): number {
  return buf[off + ICMP_CODE_OFF];
}
/** Echo / echo reply identifier. */
export function icmpGetIdent(buf: Uint8Array, off: number): number {
  return readU16(buf, off + ICMP_IDENT_OFF);
}

/** Checksum of the `len`-byte message as if the checksum field were zero. */
export function icmpComputeChecksum(buf: Uint8Array, off: number, len: number): number {
  return internetChecksum(buf, off + ICMP_REST_OFF, len - ICMP_REST_OFF, checksumSum(buf, off, 2));
}

/** Computes and stores the checksum of the `len`-byte message. */
export function icmpFillChecksum(buf: Uint8Array, off: number, len: number): void {
  writeU16(buf, off + ICMP_CHECKSUM_OFF, icmpComputeChecksum(buf, off, len));
}

/** Incremental update (RFC 1624) after a 16-bit word at an even offset of the message changed. */
export function icmpUpdateChecksum16(buf: Uint8Array, off: number, oldV: number, newV: number): void {
  const o = off + ICMP_CHECKSUM_OFF;
  writeU16(buf, o, checksumUpdate16(readU16(buf, o), oldV, newV));
}

/** As icmpUpdateChecksum16 for a 32-bit value at an even offset (an address in a quoted header). */
export function icmpUpdateChecksum32(buf: Uint8Array, off: number, oldV: number, newV: number): void {
  const o = off + ICMP_CHECKSUM_OFF;
  writeU16(buf, o, checksumUpdate32(readU16(buf, o), oldV, newV));
}

/** Sets the echo identifier and updates the checksum incrementally (NAT of ping); an unchanged one leaves the message alone. */
export function icmpSetIdentWithChecksumUpdate(buf: Uint8Array, off: number, ident: number): void {
  const old = readU16(buf, off + ICMP_IDENT_OFF);
  if (old === ident) return;
  writeU16(buf, off + ICMP_IDENT_OFF, ident);
  icmpUpdateChecksum16(buf, off, old, ident & 0xffff);
}

/** Rest of header for echo and echo reply. */
export function icmpRestEcho(ident: number, seq: number): number {
  return (((ident & 0xffff) << 16) | (seq & 0xffff)) >>> 0;
}

/** Rest of header for Fragmentation Needed: unused 16 bits, then the next-hop MTU. */
export function icmpRestFragNeeded(nextHopMtu: number): number {
  return nextHopMtu & 0xffff;
}

/** The 8-byte header. Data after it is not part of the repr. */
export interface IcmpRepr {
  type: number;
  code: number;
  /** Rest of header, unsigned 32-bit; see icmpRestEcho / icmpRestFragNeeded. */
  rest: number;
}

/** The header as a plain object, or null when icmpCheck() fails (checksum over `len` bytes included). */
export function parseIcmp(buf: Uint8Array, off: number, len: number): IcmpRepr | null {
  if (icmpCheck(buf, off, len, true) !== CHECK_OK) return null;
  return { type: icmpGetType(buf, off), code: icmpGetCode(buf, off), rest: readU32(buf, off + ICMP_REST_OFF) };
}

/**
 * Writes the 8-byte header with a zero checksum; returns 8. Put the data after it, then
 * call icmpFillChecksum(buf, off, 8 + dataLen).
 */
export function emitIcmp(repr: IcmpRepr, buf: Uint8Array, off: number): number {
  buf[off + ICMP_TYPE_OFF] = repr.type;
  buf[off + ICMP_CODE_OFF] = repr.code;
  writeU16(buf, off + ICMP_CHECKSUM_OFF, 0);
  writeU32(buf, off + ICMP_REST_OFF, repr.rest);
  return ICMP_HEADER_LEN;
}

// ---------------------------------------------------------------------------------------
// Answers to a received datagram: ICMP errors about it, the reply to an echo request.

/**
 * TOS of ICMP errors: precedence 6, internetwork control (RFC 1812 section 4.3.2.5 lets
 * a router use it; Linux sends errors with it, so tools see what they see from Linux).
 */
export const ICMP_ERROR_TOS = 0xc0;
/** IPv4 + ICMP headers in front of the quoted datagram. */
const ICMP_ERROR_HEADERS_LEN = IPV4_HEADER_LEN + ICMP_HEADER_LEN;
/**
 * Highest ICMP type Linux knows (NR_ICMP_TYPES = 18). Like Linux icmp_send(), an ICMP
 * message of an unknown type is treated as a possible error and never answered: unknown
 * types must be discarded by hosts (RFC 1122 section 3.2.2), and a loop of errors costs
 * more than a missing one.
 */
const ICMP_MAX_KNOWN_TYPE = 18;

/**
 * True when an ICMP error may be sent about the datagram at `ipOff` (`ipLen` bytes
 * available, trailing link padding allowed). RFC 1812 section 4.3.2.7 (RFC 1122 section
 * 3.2.2) forbids it for:
 *  - an ICMP error message (types 3, 4, 5, 11, 12; unknown types > 18 too, as Linux);
 *  - a datagram to the limited broadcast 255.255.255.255 or to a multicast group (224/4);
 *  - a datagram that arrived as a link-layer broadcast (`linkBroadcast`, the caller's
 *    knowledge: the Ethernet destination was ff:ff:ff:ff:ff:ff or a group address);
 *  - a non-initial fragment (fragment offset != 0);
 *  - a datagram whose source is not a unique host: 0.0.0.0, 255.255.255.255, 127/8,
 *    224/4, 240/4.
 * A directed broadcast to one of the router's own subnets is the caller's check too: only
 * it knows its subnets. False as well for a header that fails ipv4Check (checksum
 * included) and for an ICMP datagram too short to show its type.
 */
export function icmpErrorAllowed(buf: Uint8Array, ipOff: number, ipLen: number, linkBroadcast: boolean): boolean {
  if (linkBroadcast) return false;
  if (ipv4Check(buf, ipOff, ipLen, true) !== CHECK_OK) return false;
  if ((readU16(buf, ipOff + IPV4_FLAGS_FRAG_OFF) & 0x1fff) !== 0) return false;
  const dst = readU32(buf, ipOff + IPV4_DST_ADDR_OFF);
  if (dst === IP_BROADCAST || dst >>> 28 === 0xe) return false;
  const src = readU32(buf, ipOff + IPV4_SRC_ADDR_OFF);
  const srcTop = src >>> 24;
  // 224/4 and 240/4 (which holds 255.255.255.255) together are src >= 224.0.0.0.
  if (src === 0 || srcTop === 127 || srcTop >= 224) return false;
  if (buf[ipOff + IPV4_PROTOCOL_OFF] === IP_PROTO_ICMP) {
    const hlen = (buf[ipOff] & 0x0f) << 2;
    // An initial fragment of an ICMP message whose type byte is missing: cannot tell.
    if (readU16(buf, ipOff + IPV4_TOTAL_LEN_OFF) <= hlen) return false;
    const type = buf[ipOff + hlen];
    if (icmpIsError(type) || type > ICMP_MAX_KNOWN_TYPE) return false;
  }
  return true;
}

/**
 * Writes an ICMP error datagram (IPv4 header, `optLen` bytes of options the caller fills
 * (a multiple of 4, at most 40; zeroed here), then the ICMP message) at `dstOff` and
 * returns its length, at most 576 (RFC 1812 section 4.3.2.3: options shorten the quote),
 * or -1 when the original is shorter than an IPv4 header or `dst` has no room.
 *
 * The IPv4 header: TOS 0xc0 with the original's TOS bits (0x1e) kept, `ident`, DF clear, TTL 64, protocol ICMP, source `srcAddr`
 * (the caller picks it, RFC 1812 section 4.3.2.4: the address of the interface the error
 * leaves from), destination the original's source. The ICMP header: `type`, `code`, and
 * `rest`, the 32-bit rest of header: 0, or icmpRestFragNeeded(mtu) for Fragmentation
 * Needed (RFC 1191 section 4), or a Parameter Problem pointer in the top byte. Then as
 * much of the original datagram, from its IP header on, as fits: at most its total
 * length (not link padding) and at most `origIpLen` bytes.
 *
 * The caller checks icmpErrorAllowed() first and rate-limits. `dst` may be `orig` and the
 * two regions may overlap (the quote moves first, with memmove semantics), so an error
 * can be built over the offending frame in its slab slot.
 */
export function emitIcmpError(
  dst: Buffer,
  dstOff: number,
  orig: Buffer,
  origIpOff: number,
  origIpLen: number,
  type: number,
  code: number,
  rest: number,
  srcAddr: number,
  ident: number,
  optLen = 0,
): number {
  if (origIpOff < 0 || origIpLen < IPV4_HEADER_LEN || origIpOff + origIpLen > orig.length) return -1;
  if ((optLen & 3) !== 0 || optLen < 0 || optLen > 40) return -1;
  let quoteLen = origIpLen;
  const origTotalLen = readU16(orig, origIpOff + IPV4_TOTAL_LEN_OFF);
  if (origTotalLen >= IPV4_HEADER_LEN && origTotalLen < quoteLen) quoteLen = origTotalLen;
  const headers = ICMP_ERROR_HEADERS_LEN + optLen;
  if (quoteLen > ICMP_ERROR_MAX_DATAGRAM_LEN - headers) quoteLen = ICMP_ERROR_MAX_DATAGRAM_LEN - headers;
  const totalLen = headers + quoteLen;
  if (dstOff < 0 || dstOff + totalLen > dst.length) return -1;
  // Read everything needed from the original before anything is written: dst may overlap it.
  const origSrc = readU32(orig, origIpOff + IPV4_SRC_ADDR_OFF);
  // Linux's icmp_send: the original's TOS bits (RFC 1349, mask 0x1e) kept under precedence 6.
  const tos = ICMP_ERROR_TOS | (orig[origIpOff + IPV4_TOS_OFF] & 0x1e);
  orig.copy(dst, dstOff + headers, origIpOff, origIpOff + quoteLen);

  const ip = dstOff;
  dst[ip] = 0x45 + (optLen >>> 2);
  dst[ip + IPV4_TOS_OFF] = tos;
  writeU16(dst, ip + IPV4_TOTAL_LEN_OFF, totalLen);
  writeU16(dst, ip + IPV4_IDENT_OFF, ident);
  writeU16(dst, ip + IPV4_FLAGS_FRAG_OFF, 0);
  dst[ip + IPV4_TTL_OFF] = IPV4_DEFAULT_TTL;
  dst[ip + IPV4_PROTOCOL_OFF] = IP_PROTO_ICMP;
  writeU32(dst, ip + IPV4_SRC_ADDR_OFF, srcAddr);
  writeU32(dst, ip + IPV4_DST_ADDR_OFF, origSrc);
  // Options (optLen bytes after the header) are the caller's to write, and then the
  // header checksum; zeroed here so that a caller that writes none sends EOLs.
  dst.fill(0, ip + IPV4_HEADER_LEN, ip + IPV4_HEADER_LEN + optLen);
  ipv4FillChecksum(dst, ip);

  const icmp = ip + IPV4_HEADER_LEN + optLen;
  dst[icmp + ICMP_TYPE_OFF] = type;
  dst[icmp + ICMP_CODE_OFF] = code;
  writeU16(dst, icmp + ICMP_CHECKSUM_OFF, 0);
  writeU32(dst, icmp + ICMP_REST_OFF, rest);
  writeU16(dst, icmp + ICMP_CHECKSUM_OFF, ~checksumSum(dst, icmp, ICMP_HEADER_LEN + quoteLen) & 0xffff);
  return totalLen;
}

/**
 * Turns the echo request at `ipOff` into its echo reply in place (RFC 792, RFC 1122
 * section 3.2.2.6): source and destination swapped, type 8 -> 0 (code, identifier,
 * sequence number and data kept, as Linux does), TTL 64, both checksums right. The length
 * does not change; trailing link padding stays where it is.
 *
 * False, and the buffer untouched, unless it is a whole (unfragmented) ICMP echo request
 * with a valid IPv4 header and a valid ICMP checksum.
 *
 * IP options are overwritten with NOPs unless `keepOptions` (the caller then echoes
 * them itself; same header length, nothing moves): a source route
 * must not be reflected as it stands, and Record Route / Timestamp would need this host's
 * entries added, which RFC 1122 asks for only as a SHOULD. The reply's source is the
 * request's destination, so call it only for requests to one of the router's own unicast
 * addresses; a reply to a broadcast or multicast echo needs a unicast source (RFC 1122
 * section 3.2.2.6) and is built by the caller.
 */
export function emitIcmpEchoReplyInPlace(buf: Uint8Array, ipOff: number, ipLen: number, keepOptions = false): boolean {
  if (ipv4Check(buf, ipOff, ipLen, true) !== CHECK_OK) return false;
  if (buf[ipOff + IPV4_PROTOCOL_OFF] !== IP_PROTO_ICMP) return false;
  if ((readU16(buf, ipOff + IPV4_FLAGS_FRAG_OFF) & 0x3fff) !== 0) return false;
  const hlen = (buf[ipOff] & 0x0f) << 2;
  const icmp = ipOff + hlen;
  const icmpLen = readU16(buf, ipOff + IPV4_TOTAL_LEN_OFF) - hlen;
  if (icmpLen < ICMP_HEADER_LEN || buf[icmp] !== ICMP_ECHO_REQUEST) return false;
  if (checksumSum(buf, icmp, icmpLen) !== 0xffff) return false;

  const typeCode = readU16(buf, icmp + ICMP_TYPE_OFF);
  buf[icmp + ICMP_TYPE_OFF] = ICMP_ECHO_REPLY; // code kept
  icmpUpdateChecksum16(buf, icmp, typeCode, (ICMP_ECHO_REPLY << 8) | (typeCode & 0xff));
  const src = readU32(buf, ipOff + IPV4_SRC_ADDR_OFF);
  writeU32(buf, ipOff + IPV4_SRC_ADDR_OFF, readU32(buf, ipOff + IPV4_DST_ADDR_OFF));
  writeU32(buf, ipOff + IPV4_DST_ADDR_OFF, src);
  buf[ipOff + IPV4_TTL_OFF] = IPV4_DEFAULT_TTL;
  // A new datagram, not the request's: Linux's icmp_reply sends it without DF.
  writeU16(buf, ipOff + IPV4_FLAGS_FRAG_OFF, 0);
  if (!keepOptions) buf.fill(1, ipOff + IPV4_OPTIONS_OFF, ipOff + hlen); // IPOPT_NOOP
  // At most 60 bytes: recomputing costs no more than tracking every change.
  ipv4FillChecksum(buf, ipOff);
  return true;
}
