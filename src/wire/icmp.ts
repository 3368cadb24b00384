// ICMP for IPv4 (RFC 792). Every message starts with the same 8 bytes:
//
//   0 type | 1 code | 2 checksum | 4 rest of header (4 bytes, meaning depends on type)
//
// The checksum covers the whole ICMP message, header and data (RFC 792, "Checksum").

import { readU16, readU32, writeU16, writeU32 } from './bytes.js';
import { checksumSum, checksumUpdate16, checksumUpdate32, internetChecksum } from './checksum.js';
import { CHECK_BAD_CHECKSUM, CHECK_OK, CHECK_TOO_SHORT } from './reason.js';

export const ICMP_TYPE_OFF = 0;
export const ICMP_CODE_OFF = 1;
export const ICMP_CHECKSUM_OFF = 2;
export const ICMP_REST_OFF = 4;
/** Echo: identifier at 4, sequence number at 6. */
export const ICMP_IDENT_OFF = 4;
export const ICMP_SEQ_OFF = 6;
/** Destination Unreachable code 4: next-hop MTU in the low 16 bits of the rest (RFC 1191 section 4). */
export const ICMP_NEXT_HOP_MTU_OFF = 6;
/** Parameter Problem: pointer in the first byte of the rest (RFC 792). */
export const ICMP_POINTER_OFF = 4;
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

/** Destination Unreachable codes (RFC 792; 13 from RFC 1812 section 5.2.7.1). */
export const ICMP_UNREACH_NET = 0;
export const ICMP_UNREACH_HOST = 1;
export const ICMP_UNREACH_PROTOCOL = 2;
export const ICMP_UNREACH_PORT = 3;
export const ICMP_UNREACH_FRAG_NEEDED = 4;
export const ICMP_UNREACH_ADMIN_PROHIBITED = 13;

/** Time Exceeded codes (RFC 792). */
export const ICMP_TIME_EXCEEDED_TTL = 0;
export const ICMP_TIME_EXCEEDED_REASSEMBLY = 1;

/**
 * True for error messages, which must never be answered with another ICMP error
 * (RFC 1122 section 3.2.2, RFC 1812 section 4.3.2.7).
 */
export function icmpIsError(type: number): boolean {
  return (
    type === ICMP_DEST_UNREACH ||
    type === ICMP_SOURCE_QUENCH ||
    type === ICMP_REDIRECT ||
    type === ICMP_TIME_EXCEEDED ||
    type === ICMP_PARAM_PROBLEM
  );
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
/** The 4 bytes after the checksum as an unsigned 32-bit number. */
export function icmpGetRest(buf: Uint8Array, off: number): number {
  return readU32(buf, off + ICMP_REST_OFF);
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

/** Sets type and code and updates the checksum incrementally (echo request -> reply in place). */
export function icmpSetTypeCodeWithChecksumUpdate(buf: Uint8Array, off: number, type: number, code: number): void {
  const old = readU16(buf, off);
  buf[off] = type;
  buf[off + 1] = code;
  icmpUpdateChecksum16(buf, off, old, ((type & 0xff) << 8) | (code & 0xff));
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
  return { type: icmpGetType(buf, off), code: icmpGetCode(buf, off), rest: icmpGetRest(buf, off) };
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
