// UDP (RFC 768).
//
//   0 srcPort | 2 dstPort | 4 length (header + data) | 6 checksum
//
// The checksum covers the IPv4 pseudo-header, the header and the data. A transmitted
// checksum of 0 means "none"; a computed 0 is sent as 0xffff (RFC 768, "Fields").

import { readU16, writeU16 } from "./bytes.js";
import { checksumSum, pseudoHeaderSum } from "./checksum.js";
import { IP_PROTO_UDP } from "./ipv4.js";
import { CHECK_BAD_CHECKSUM, CHECK_BAD_LENGTH, CHECK_OK, CHECK_TOO_SHORT } from "./reason.js";

export const UDP_SRC_PORT_OFF = 0;
export const UDP_DST_PORT_OFF = 2;
export const UDP_LENGTH_OFF = 4;
export const UDP_CHECKSUM_OFF = 6;
export const UDP_HEADER_LEN = 8;

/**
 * Validates a datagram in `len` available bytes (the IP payload). CHECK_TOO_SHORT below
 * 8 bytes; CHECK_BAD_LENGTH when the length field is below 8 or above `len` (bytes after
 * `length` are ignored, as Linux does); CHECK_BAD_CHECKSUM when verifyChecksum is set,
 * the checksum is not 0 ("none") and it does not verify against the pseudo-header.
 */
export function udpCheck(buf: Uint8Array, off: number, len: number, srcAddr: number, dstAddr: number, verifyChecksum = true): number {
  if (off < 0 || len < UDP_HEADER_LEN || off + len > buf.length) return CHECK_TOO_SHORT;
  const length = readU16(buf, off + UDP_LENGTH_OFF);
  if (length < UDP_HEADER_LEN || length > len) return CHECK_BAD_LENGTH;
  if (verifyChecksum && !udpChecksumValid(buf, off, srcAddr, dstAddr)) return CHECK_BAD_CHECKSUM;
  return CHECK_OK;
}

export function udpGetChecksum(buf: Uint8Array, off: number): number {
  return readU16(buf, off + UDP_CHECKSUM_OFF);
}

/**
 * Checksum over the pseudo-header and the `length` bytes the header declares, as if the
 * checksum field were zero. Never returns 0: a computed 0 becomes 0xffff (RFC 768).
 */
export function udpComputeChecksum(buf: Uint8Array, off: number, srcAddr: number, dstAddr: number): number {
  const length = readU16(buf, off + UDP_LENGTH_OFF);
  let sum = pseudoHeaderSum(srcAddr, dstAddr, IP_PROTO_UDP, length);
  sum = checksumSum(buf, off, UDP_CHECKSUM_OFF, sum);
  sum = checksumSum(buf, off + UDP_HEADER_LEN, length - UDP_HEADER_LEN, sum);
  const c = ~sum & 0xffff;
  return c === 0 ? 0xffff : c;
}

/** Computes and stores the checksum. Call after the data is in place. */
export function udpFillChecksum(buf: Uint8Array, off: number, srcAddr: number, dstAddr: number): void {
  writeU16(buf, off + UDP_CHECKSUM_OFF, udpComputeChecksum(buf, off, srcAddr, dstAddr));
}

/** True when the checksum is 0 (none, RFC 768) or verifies. Reads `length` bytes. */
export function udpChecksumValid(buf: Uint8Array, off: number, srcAddr: number, dstAddr: number): boolean {
  if (readU16(buf, off + UDP_CHECKSUM_OFF) === 0) return true;
  const length = readU16(buf, off + UDP_LENGTH_OFF);
  return checksumSum(buf, off, length, pseudoHeaderSum(srcAddr, dstAddr, IP_PROTO_UDP, length)) === 0xffff;
}

export interface UdpRepr {
  srcPort: number;
  dstPort: number;
  /** Header plus data, bytes. */
  length: number;
}

/**
 * The header as a plain object, or null when the structure is bad (udpCheck without the
 * checksum: the pseudo-header addresses are not known here; use udpCheck for that).
 */
export function parseUdp(buf: Uint8Array, off: number, len: number): UdpRepr | null {
  if (udpCheck(buf, off, len, 0, 0, false) !== CHECK_OK) return null;
  return { srcPort: readU16(buf, off + UDP_SRC_PORT_OFF), dstPort: readU16(buf, off + UDP_DST_PORT_OFF), length: readU16(buf, off + UDP_LENGTH_OFF) };
}

/**
 * Writes the 8-byte header with a zero checksum; returns 8. Put the data after it, then
 * call udpFillChecksum (or leave 0 for "no checksum").
 */
export function emitUdp(repr: UdpRepr, buf: Uint8Array, off: number): number {
  writeU16(buf, off + UDP_SRC_PORT_OFF, repr.srcPort);
  writeU16(buf, off + UDP_DST_PORT_OFF, repr.dstPort);
  writeU16(buf, off + UDP_LENGTH_OFF, repr.length);
  writeU16(buf, off + UDP_CHECKSUM_OFF, 0);
  return UDP_HEADER_LEN;
}
