// IEEE 802.1Q VLAN tag, read at its place in a single-tagged Ethernet frame: every
// offset argument here is the offset of the FRAME, not of the tag.
//
//   0      6      12     14     16         18
//   | dst  | src  | TPID | TCI  | etherType | payload
//
// TCI (802.1Q-2018 section 9.6): PCP 3 bits | DEI 1 bit | VID 12 bits.

import { readU16, writeU16 } from "./bytes.js";
import { ETHERTYPE_QINQ, ETHERTYPE_VLAN } from "./ethernet.js";
import { readMac, writeMac } from "./mac.js";
import { CHECK_NOT_TAGGED, CHECK_OK, CHECK_TOO_SHORT } from "./reason.js";

export const VLAN_TPID_OFF = 12;
export const VLAN_TCI_OFF = 14;
/** The inner EtherType, what the frame carries. */
export const VLAN_ETHER_TYPE_OFF = 16;
export const VLAN_TAG_LEN = 4;
/** Ethernet header with one tag. */
export const VLAN_HEADER_LEN = 18;
/** VID 0 means "priority tag only", 0xfff is reserved (802.1Q-2018 Table 9-2). */
export const VLAN_VID_MAX = 4094;

/** True when the EtherType position (12) holds an 802.1Q or 802.1ad TPID. Needs 14 bytes. */
export function vlanIsTagged(buf: Uint8Array, frameOff: number): boolean {
  const t = readU16(buf, frameOff + VLAN_TPID_OFF);
  return t === ETHERTYPE_VLAN || t === ETHERTYPE_QINQ;
}

/** CHECK_OK, CHECK_TOO_SHORT (< 18 bytes) or CHECK_NOT_TAGGED. */
export function vlanCheck(buf: Uint8Array, frameOff: number, frameLen: number): number {
  if (frameOff < 0 || frameLen < VLAN_HEADER_LEN || frameOff + frameLen > buf.length) return CHECK_TOO_SHORT;
  if (!vlanIsTagged(buf, frameOff)) return CHECK_NOT_TAGGED;
  return CHECK_OK;
}

/** Builds a TCI from its parts. */
export function vlanTci(pcp: number, dei: number, vid: number): number {
  return ((pcp & 7) << 13) | ((dei & 1) << 12) | (vid & 0xfff);
}

export function vlanGetTpid(buf: Uint8Array, frameOff: number): number {
  return readU16(buf, frameOff + VLAN_TPID_OFF);
}
export function vlanSetTpid(buf: Uint8Array, frameOff: number, tpid: number): void {
  writeU16(buf, frameOff + VLAN_TPID_OFF, tpid);
}
export function vlanGetTci(buf: Uint8Array, frameOff: number): number {
  return readU16(buf, frameOff + VLAN_TCI_OFF);
}
export function vlanSetTci(buf: Uint8Array, frameOff: number, tci: number): void {
  writeU16(buf, frameOff + VLAN_TCI_OFF, tci);
}
/** Priority Code Point, 0-7. */
export function vlanGetPcp(buf: Uint8Array, frameOff: number): number {
  return buf[frameOff + VLAN_TCI_OFF] >>> 5;
}
export function vlanSetPcp(buf: Uint8Array, frameOff: number, pcp: number): void {
  const o = frameOff + VLAN_TCI_OFF;
  buf[o] = (buf[o] & 0x1f) | ((pcp & 7) << 5);
}
/** Drop Eligible Indicator, 0 or 1. */
export function vlanGetDei(buf: Uint8Array, frameOff: number): number {
  return (buf[frameOff + VLAN_TCI_OFF] >>> 4) & 1;
}
export function vlanSetDei(buf: Uint8Array, frameOff: number, dei: number): void {
  const o = frameOff + VLAN_TCI_OFF;
  buf[o] = (buf[o] & 0xef) | ((dei & 1) << 4);
}
/** VLAN identifier, 0-4095. */
export function vlanGetVid(buf: Uint8Array, frameOff: number): number {
  return readU16(buf, frameOff + VLAN_TCI_OFF) & 0xfff;
}
export function vlanSetVid(buf: Uint8Array, frameOff: number, vid: number): void {
  const o = frameOff + VLAN_TCI_OFF;
  buf[o] = (buf[o] & 0xf0) | ((vid >>> 8) & 0x0f);
  buf[o + 1] = vid;
}
/** EtherType of what the tagged frame carries. */
export function vlanGetEtherType(buf: Uint8Array, frameOff: number): number {
  return readU16(buf, frameOff + VLAN_ETHER_TYPE_OFF);
}
export function vlanSetEtherType(buf: Uint8Array, frameOff: number, etherType: number): void {
  writeU16(buf, frameOff + VLAN_ETHER_TYPE_OFF, etherType);
}

/** Writes an 802.1Q tag (TPID 0x8100, PCP 0, VID `vid`) at `at`. */
export function vlanWriteTag(buf: Uint8Array, at: number, vid: number): void {
  buf[at] = ETHERTYPE_VLAN >>> 8;
  buf[at + 1] = ETHERTYPE_VLAN & 0xff;
  buf[at + 2] = (vid >> 8) & 0x0f;
  buf[at + 3] = vid & 0xff;
}

/**
 * Inserts a tag in place: moves the 12 address bytes 4 bytes toward the start and writes
 * TPID and TCI into the gap; the original EtherType becomes the inner one. The caller
 * guarantees 4 bytes of headroom before `frameOff`. Returns the new frame offset
 * (frameOff - 4; the frame is now frameLen + 4 long), or -1 without touching anything
 * when there is no headroom or the frame is shorter than an Ethernet header.
 */
export function vlanPush(buf: Uint8Array, frameOff: number, frameLen: number, vid: number, pcp = 0, dei = 0, tpid = ETHERTYPE_VLAN): number {
  if (frameOff < VLAN_TAG_LEN || frameLen < 14 || frameOff + frameLen > buf.length) return -1;
  const n = frameOff - VLAN_TAG_LEN;
  // Destination is before the source: a forward copy never reads a byte it overwrote.
  for (let i = 0; i < 12; i++) buf[n + i] = buf[frameOff + i];
  writeU16(buf, n + VLAN_TPID_OFF, tpid);
  writeU16(buf, n + VLAN_TCI_OFF, vlanTci(pcp, dei, vid));
  return n;
}

/**
 * Removes the outer tag in place: moves the 12 address bytes 4 bytes toward the end, over
 * TPID and TCI, so the inner EtherType follows them. Returns the new frame offset
 * (frameOff + 4; the frame is now frameLen - 4 long), or -1 without touching anything
 * when the frame is shorter than 18 bytes or not tagged.
 */
export function vlanPop(buf: Uint8Array, frameOff: number, frameLen: number): number {
  if (vlanCheck(buf, frameOff, frameLen) !== CHECK_OK) return -1;
  const n = frameOff + VLAN_TAG_LEN;
  // Destination is after the source: copy backward.
  for (let i = 11; i >= 0; i--) buf[n + i] = buf[frameOff + i];
  return n;
}

/** A single-tagged Ethernet header (18 bytes). */
export interface VlanRepr {
  dstAddr: number;
  srcAddr: number;
  tpid: number;
  pcp: number;
  dei: number;
  vid: number;
  /** Inner EtherType. */
  etherType: number;
}

/** The tagged header as a plain object, or null when short or not tagged. */
export function parseVlan(buf: Uint8Array, frameOff: number, frameLen: number): VlanRepr | null {
  if (vlanCheck(buf, frameOff, frameLen) !== CHECK_OK) return null;
  return {
    dstAddr: readMac(buf, frameOff),
    srcAddr: readMac(buf, frameOff + 6),
    tpid: vlanGetTpid(buf, frameOff),
    pcp: vlanGetPcp(buf, frameOff),
    dei: vlanGetDei(buf, frameOff),
    vid: vlanGetVid(buf, frameOff),
    etherType: vlanGetEtherType(buf, frameOff),
  };
}

/** Writes the 18-byte tagged header at `frameOff`; returns 18. */
export function emitVlan(repr: VlanRepr, buf: Uint8Array, frameOff: number): number {
  writeMac(buf, frameOff, repr.dstAddr);
  writeMac(buf, frameOff + 6, repr.srcAddr);
  vlanSetTpid(buf, frameOff, repr.tpid);
  vlanSetTci(buf, frameOff, vlanTci(repr.pcp, repr.dei, repr.vid));
  vlanSetEtherType(buf, frameOff, repr.etherType);
  return VLAN_HEADER_LEN;
}
