// ARP (RFC 826) for Ethernet and IPv4 only: hardware type 1, protocol type 0x0800,
// address lengths 6 and 4, so the packet is always 28 bytes and every field has a fixed
// offset.
//
//   0 hwType | 2 protoType | 4 hwLen | 5 protoLen | 6 oper
//   8 sha (6) | 14 spa (4) | 18 tha (6) | 24 tpa (4)

import { readU16, readU32, writeU16, writeU32 } from "./bytes.js";
import { ETH_DST_ADDR_OFF, ETH_ETHER_TYPE_OFF, ETH_HEADER_LEN, ETH_MIN_FRAME_LEN, ETH_SRC_ADDR_OFF, ETHERTYPE_ARP, ETHERTYPE_IPV4 } from "./ethernet.js";
import { readMac, writeMac } from "./mac.js";
import { CHECK_BAD_HW_LEN, CHECK_BAD_HW_TYPE, CHECK_BAD_PROTO_LEN, CHECK_BAD_PROTO_TYPE, CHECK_OK, CHECK_TOO_SHORT } from "./reason.js";

export const ARP_HW_TYPE_OFF = 0;
export const ARP_PROTO_TYPE_OFF = 2;
export const ARP_HW_LEN_OFF = 4;
export const ARP_PROTO_LEN_OFF = 5;
export const ARP_OPER_OFF = 6;
export const ARP_SHA_OFF = 8;
export const ARP_SPA_OFF = 14;
export const ARP_THA_OFF = 18;
export const ARP_TPA_OFF = 24;
/** Length of an Ethernet/IPv4 ARP packet. */
export const ARP_LEN = 28;

/** ares_hrd$Ethernet (RFC 826; IANA ARP hardware types). */
export const ARP_HW_TYPE_ETHERNET = 1;
export const ARP_OPER_REQUEST = 1;
export const ARP_OPER_REPLY = 2;

/**
 * Validates an Ethernet/IPv4 ARP packet. The opcode is deliberately not checked: RFC 826's
 * reception algorithm merges the sender's addresses before it looks at the opcode
 * ("NOW look at the opcode!!"), so that decision belongs to the caller.
 */
export function arpCheck(buf: Uint8Array, off: number, len: number): number {
  if (off < 0 || len < ARP_LEN || off + len > buf.length) return CHECK_TOO_SHORT;
  if (readU16(buf, off + ARP_HW_TYPE_OFF) !== ARP_HW_TYPE_ETHERNET) return CHECK_BAD_HW_TYPE;
  if (readU16(buf, off + ARP_PROTO_TYPE_OFF) !== ETHERTYPE_IPV4) return CHECK_BAD_PROTO_TYPE;
  if (buf[off + ARP_HW_LEN_OFF] !== 6) return CHECK_BAD_HW_LEN;
  if (buf[off + ARP_PROTO_LEN_OFF] !== 4) return CHECK_BAD_PROTO_LEN;
  return CHECK_OK;
}

export function arpGetOper(buf: Uint8Array, off: number): number {
  return readU16(buf, off + ARP_OPER_OFF);
}
/** Sender hardware address. */
export function arpGetSha(buf: Uint8Array, off: number): number {
  return readMac(buf, off + ARP_SHA_OFF);
}
/** Sender protocol (IPv4) address. */
export function arpGetSpa(buf: Uint8Array, off: number): number {
  return readU32(buf, off + ARP_SPA_OFF);
}
/** Target protocol (IPv4) address. */
export function arpGetTpa(buf: Uint8Array, off: number): number {
  return readU32(buf, off + ARP_TPA_OFF);
}

export interface ArpRepr {
  oper: number;
  sha: number;
  spa: number;
  tha: number;
  tpa: number;
}

/** The packet as a plain object, or null when arpCheck() fails. */
export function parseArp(buf: Uint8Array, off: number, len: number): ArpRepr | null {
  if (arpCheck(buf, off, len) !== CHECK_OK) return null;
  return {
    oper: arpGetOper(buf, off),
    sha: arpGetSha(buf, off),
    spa: arpGetSpa(buf, off),
    tha: readMac(buf, off + ARP_THA_OFF),
    tpa: arpGetTpa(buf, off),
  };
}

/** Writes a 28-byte Ethernet/IPv4 ARP packet; returns 28. */
export function emitArp(repr: ArpRepr, buf: Uint8Array, off: number): number {
  return emitArpFields(buf, off, repr.oper, repr.sha, repr.spa, repr.tha, repr.tpa);
}

/**
 * Writes a request "who has tpa? tell spa". The target hardware address is zero: RFC 826
 * leaves it undefined in a request, RFC 5227 section 2.1.1 says it SHOULD be zero.
 */
export function emitArpRequest(buf: Uint8Array, off: number, sha: number, spa: number, tpa: number): number {
  return emitArpFields(buf, off, ARP_OPER_REQUEST, sha, spa, 0, tpa);
}

/** Writes a reply "spa is at sha" addressed to (tha, tpa). */
export function emitArpReply(buf: Uint8Array, off: number, sha: number, spa: number, tha: number, tpa: number): number {
  return emitArpFields(buf, off, ARP_OPER_REPLY, sha, spa, tha, tpa);
}

// No repr object on the request/reply path: these two run per packet in a responder.
function emitArpFields(buf: Uint8Array, off: number, oper: number, sha: number, spa: number, tha: number, tpa: number): number {
  writeU16(buf, off + ARP_HW_TYPE_OFF, ARP_HW_TYPE_ETHERNET);
  writeU16(buf, off + ARP_PROTO_TYPE_OFF, ETHERTYPE_IPV4);
  buf[off + ARP_HW_LEN_OFF] = 6;
  buf[off + ARP_PROTO_LEN_OFF] = 4;
  writeU16(buf, off + ARP_OPER_OFF, oper);
  writeMac(buf, off + ARP_SHA_OFF, sha);
  writeU32(buf, off + ARP_SPA_OFF, spa);
  writeMac(buf, off + ARP_THA_OFF, tha);
  writeU32(buf, off + ARP_TPA_OFF, tpa);
  return ARP_LEN;
}

/**
 * Writes a whole ARP frame at `frameOff`: the Ethernet header (`ethDst`, `ethSrc`,
 * EtherType ARP), the packet, and zeros up to the Ethernet minimum; returns its length,
 * 60 (ETH_MIN_FRAME_LEN). For a request, `tha` is 0 (RFC 5227 section 2.1.1).
 */
export function emitArpFrame(
  buf: Uint8Array,
  frameOff: number,
  ethDst: number,
  ethSrc: number,
  oper: number,
  sha: number,
  spa: number,
  tha: number,
  tpa: number,
): number {
  writeMac(buf, frameOff + ETH_DST_ADDR_OFF, ethDst);
  writeMac(buf, frameOff + ETH_SRC_ADDR_OFF, ethSrc);
  writeU16(buf, frameOff + ETH_ETHER_TYPE_OFF, ETHERTYPE_ARP);
  const end = frameOff + ETH_HEADER_LEN + emitArpFields(buf, frameOff + ETH_HEADER_LEN, oper, sha, spa, tha, tpa);
  buf.fill(0, end, frameOff + ETH_MIN_FRAME_LEN);
  return ETH_MIN_FRAME_LEN;
}
