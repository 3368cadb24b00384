// TCP header (RFC 9293 section 3.1), enough to rewrite ports and addresses and to
// segment: no state machine here.
//
//   0 srcPort | 2 dstPort | 4 seq | 8 ack
//  12 dataOffset(4) reserved(4) | 13 flags | 14 window | 16 checksum | 18 urgent
//  20 options (dataOffset*4 - 20 bytes)

import { readU16, readU32, writeU16, writeU32, copyBytes } from "./bytes.js";
import { checksumSum, internetChecksum, pseudoHeaderSum } from "./checksum.js";
import {
  IP_PROTO_TCP,
  IPV4_DEFAULT_TTL,
  IPV4_DST_ADDR_OFF,
  IPV4_FLAGS_FRAG_OFF,
  IPV4_HEADER_LEN,
  IPV4_IDENT_OFF,
  IPV4_PROTOCOL_OFF,
  IPV4_SRC_ADDR_OFF,
  IPV4_TOTAL_LEN_OFF,
  IPV4_TTL_OFF,
  headerLenWithOptions,
  ipv4Check,
  ipv4FillChecksum,
} from "./ipv4.js";
import { CHECK_BAD_CHECKSUM, CHECK_BAD_DATA_OFFSET, CHECK_OK, CHECK_TOO_SHORT } from "./reason.js";

export const TCP_SRC_PORT_OFF = 0;
export const TCP_DST_PORT_OFF = 2;
export const TCP_SEQ_OFF = 4;
export const TCP_ACK_OFF = 8;
export const TCP_DATA_OFFSET_OFF = 12;
export const TCP_FLAGS_OFF = 13;
export const TCP_WINDOW_OFF = 14;
export const TCP_CHECKSUM_OFF = 16;
export const TCP_URGENT_OFF = 18;
export const TCP_OPTIONS_OFF = 20;
/** Header without options. */
export const TCP_HEADER_LEN = 20;

/** Control bits in byte 13 (RFC 9293 section 3.1; ECE and CWR from RFC 3168 section 23.2). */
export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
export const TCP_URG = 0x20;
export const TCP_ECE = 0x40;
export const TCP_CWR = 0x80;

/**
 * Validates a segment of `len` bytes (the IP payload: totalLen - ihl*4). CHECK_TOO_SHORT
 * below 20 bytes; CHECK_BAD_DATA_OFFSET when dataOffset < 5 or dataOffset*4 > len;
 * CHECK_BAD_CHECKSUM when verifyChecksum is set and the checksum over the pseudo-header
 * and all `len` bytes is wrong.
 */
export function tcpCheck(buf: Uint8Array, off: number, len: number, srcAddr: number, dstAddr: number, verifyChecksum = true): number {
  if (off < 0 || len < TCP_HEADER_LEN || off + len > buf.length) return CHECK_TOO_SHORT;
  const hlen = (buf[off + TCP_DATA_OFFSET_OFF] >>> 4) << 2;
  if (hlen < TCP_HEADER_LEN || hlen > len) return CHECK_BAD_DATA_OFFSET;
  if (verifyChecksum && !tcpChecksumValid(buf, off, len, srcAddr, dstAddr)) return CHECK_BAD_CHECKSUM;
  return CHECK_OK;
}

/** Header length in bytes (dataOffset * 4). */
export function tcpGetHeaderLen(buf: Uint8Array, off: number): number {
  return (buf[off + TCP_DATA_OFFSET_OFF] >>> 4) << 2;
}
/** The 8 control bits (TCP_FIN | TCP_SYN | ...). */
export function tcpGetFlags(buf: Uint8Array, off: number): number {
  return buf[off + TCP_FLAGS_OFF];
}

/** Checksum over the pseudo-header and the `len`-byte segment, as if the checksum field were zero. */
export function tcpComputeChecksum(buf: Uint8Array, off: number, len: number, srcAddr: number, dstAddr: number): number {
  const sum = checksumSum(buf, off, TCP_CHECKSUM_OFF, pseudoHeaderSum(srcAddr, dstAddr, IP_PROTO_TCP, len));
  return internetChecksum(buf, off + TCP_URGENT_OFF, len - TCP_URGENT_OFF, sum);
}

/** Computes and stores the checksum of the `len`-byte segment. Call after the data is in place. */
export function tcpFillChecksum(buf: Uint8Array, off: number, len: number, srcAddr: number, dstAddr: number): void {
  writeU16(buf, off + TCP_CHECKSUM_OFF, tcpComputeChecksum(buf, off, len, srcAddr, dstAddr));
}

/** True when the stored checksum verifies over the pseudo-header and `len` bytes. */
export function tcpChecksumValid(buf: Uint8Array, off: number, len: number, srcAddr: number, dstAddr: number): boolean {
  return checksumSum(buf, off, len, pseudoHeaderSum(srcAddr, dstAddr, IP_PROTO_TCP, len)) === 0xffff;
}

export interface TcpRepr {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  /** TCP_FIN | TCP_SYN | ... */
  flags: number;
  window: number;
  urgent: number;
  /** Option bytes, a multiple of 4 up to 40 (padding included); dataOffset follows from it. */
  options: Uint8Array;
}

/**
 * The header as a plain object (options copied), or null when the structure is bad
 * (tcpCheck without the checksum: the pseudo-header addresses are not known here).
 */
export function parseTcp(buf: Uint8Array, off: number, len: number): TcpRepr | null {
  if (tcpCheck(buf, off, len, 0, 0, false) !== CHECK_OK) return null;
  return {
    srcPort: readU16(buf, off + TCP_SRC_PORT_OFF),
    dstPort: readU16(buf, off + TCP_DST_PORT_OFF),
    seq: readU32(buf, off + TCP_SEQ_OFF),
    ack: readU32(buf, off + TCP_ACK_OFF),
    flags: tcpGetFlags(buf, off),
    window: readU16(buf, off + TCP_WINDOW_OFF),
    urgent: readU16(buf, off + TCP_URGENT_OFF),
    options: copyBytes(buf, off + TCP_OPTIONS_OFF, tcpGetHeaderLen(buf, off) - TCP_HEADER_LEN),
  };
}

/**
 * Writes the header and options with a zero checksum and zero reserved bits; returns the
 * header length. Put the data after it, then call tcpFillChecksum. Throws when options
 * are not a multiple of 4 bytes or longer than 40 (headerLenWithOptions: a caller bug).
 */
export function emitTcp(repr: TcpRepr, buf: Uint8Array, off: number): number {
  const hlen = headerLenWithOptions("TCP", repr.options);
  writeU16(buf, off + TCP_SRC_PORT_OFF, repr.srcPort);
  writeU16(buf, off + TCP_DST_PORT_OFF, repr.dstPort);
  writeU32(buf, off + TCP_SEQ_OFF, repr.seq);
  writeU32(buf, off + TCP_ACK_OFF, repr.ack);
  buf[off + TCP_DATA_OFFSET_OFF] = (hlen >>> 2) << 4;
  buf[off + TCP_FLAGS_OFF] = repr.flags;
  writeU16(buf, off + TCP_WINDOW_OFF, repr.window);
  writeU16(buf, off + TCP_CHECKSUM_OFF, 0);
  writeU16(buf, off + TCP_URGENT_OFF, repr.urgent);
  buf.set(repr.options, off + TCP_OPTIONS_OFF);
  return hlen;
}

/**
 * Writes at `dstOff` the TCP reset that answers the segment at `origIpOff` (RFC 793,
 * "Reset Generation", for a connection that does not exist: a router listens on no
 * port): from the segment's destination to its source, ports swapped; if the segment
 * had ACK, <SEQ=SEG.ACK><CTL=RST>, else <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>, where
 * SYN and FIN count one each. Never answers a RST. Returns the packet's length (40), or
 * -1 (nothing written) for a reset, a fragment or a malformed segment.
 */
export function emitTcpReset(dst: Uint8Array, dstOff: number, orig: Uint8Array, origIpOff: number, origIpLen: number, ident: number): number {
  if (ipv4Check(orig, origIpOff, origIpLen, false) !== CHECK_OK) return -1;
  if (orig[origIpOff + IPV4_PROTOCOL_OFF] !== IP_PROTO_TCP) return -1;
  if ((readU16(orig, origIpOff + IPV4_FLAGS_FRAG_OFF) & 0x3fff) !== 0) return -1;
  const hl = (orig[origIpOff] & 0x0f) << 2;
  const t = origIpOff + hl;
  const segLen = readU16(orig, origIpOff + IPV4_TOTAL_LEN_OFF) - hl;
  if (tcpCheck(orig, t, segLen, 0, 0, false) !== CHECK_OK) return -1;
  const flags = orig[t + TCP_FLAGS_OFF];
  if ((flags & TCP_RST) !== 0) return -1;
  const rstLen = IPV4_HEADER_LEN + TCP_HEADER_LEN;
  if (dstOff < 0 || dstOff + rstLen > dst.length) return -1;
  const src = readU32(orig, origIpOff + IPV4_SRC_ADDR_OFF);
  const dstAddr = readU32(orig, origIpOff + IPV4_DST_ADDR_OFF);
  const sport = readU16(orig, t + TCP_SRC_PORT_OFF);
  const dport = readU16(orig, t + TCP_DST_PORT_OFF);
  const seq = readU32(orig, t + TCP_SEQ_OFF);
  const ack = readU32(orig, t + TCP_ACK_OFF);
  const dataLen = segLen - tcpGetHeaderLen(orig, t) + ((flags & TCP_SYN) !== 0 ? 1 : 0) + ((flags & TCP_FIN) !== 0 ? 1 : 0);

  const ip = dstOff;
  dst.fill(0, ip, ip + rstLen);
  dst[ip] = 0x45;
  writeU16(dst, ip + IPV4_TOTAL_LEN_OFF, rstLen);
  writeU16(dst, ip + IPV4_IDENT_OFF, ident);
  writeU16(dst, ip + IPV4_FLAGS_FRAG_OFF, 0x4000); // DF, as Linux sends resets
  dst[ip + IPV4_TTL_OFF] = IPV4_DEFAULT_TTL;
  dst[ip + IPV4_PROTOCOL_OFF] = IP_PROTO_TCP;
  writeU32(dst, ip + IPV4_SRC_ADDR_OFF, dstAddr);
  writeU32(dst, ip + IPV4_DST_ADDR_OFF, src);
  ipv4FillChecksum(dst, ip);
  const r = ip + IPV4_HEADER_LEN;
  writeU16(dst, r + TCP_SRC_PORT_OFF, dport);
  writeU16(dst, r + TCP_DST_PORT_OFF, sport);
  if ((flags & TCP_ACK) !== 0) {
    writeU32(dst, r + TCP_SEQ_OFF, ack);
    dst[r + TCP_FLAGS_OFF] = TCP_RST;
  } else {
    writeU32(dst, r + TCP_ACK_OFF, (seq + dataLen) >>> 0);
    dst[r + TCP_FLAGS_OFF] = TCP_RST | TCP_ACK;
  }
  dst[r + TCP_DATA_OFFSET_OFF] = (TCP_HEADER_LEN >>> 2) << 4;
  tcpFillChecksum(dst, r, TCP_HEADER_LEN, dstAddr, src);
  return rstLen;
}
