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

/** CHECK_OK, CHECK_TOO_SHORT (< 18 bytes) or CHECK_NOT_TAGGED (no 802.1Q or 802.1ad TPID at 12). */
function vlanCheck(buf: Uint8Array, frameOff: number, frameLen: number): number {
  if (frameOff < 0 || frameLen < VLAN_HEADER_LEN || frameOff + frameLen > buf.length) return CHECK_TOO_SHORT;
  const tpid = readU16(buf, frameOff + VLAN_TPID_OFF);
  if (tpid !== ETHERTYPE_VLAN && tpid !== ETHERTYPE_QINQ) return CHECK_NOT_TAGGED;
  return CHECK_OK;
}

export function vlanGetTpid(buf: Uint8Array, frameOff: number): number {
  return readU16(buf, frameOff + VLAN_TPID_OFF);
}
export function vlanSetTpid(buf: Uint8Array, frameOff: number, tpid: number): void {
  writeU16(buf, frameOff + VLAN_TPID_OFF, tpid);
}
/** The whole TCI: PCP << 13 | DEI << 12 | VID. */
export function vlanSetTci(buf: Uint8Array, frameOff: number, tci: number): void {
  writeU16(buf, frameOff + VLAN_TCI_OFF, tci);
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
/** Writes an 802.1Q tag (TPID 0x8100, PCP 0, VID `vid`) at `at`. */
export function vlanWriteTag(buf: Uint8Array, at: number, vid: number): void {
  buf[at] = ETHERTYPE_VLAN >>> 8;
  buf[at + 1] = ETHERTYPE_VLAN & 0xff;
  buf[at + 2] = (vid >> 8) & 0x0f;
  buf[at + 3] = vid & 0xff;
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
    pcp: buf[frameOff + VLAN_TCI_OFF] >>> 5,
    dei: (buf[frameOff + VLAN_TCI_OFF] >>> 4) & 1,
    vid: vlanGetVid(buf, frameOff),
    etherType: readU16(buf, frameOff + VLAN_ETHER_TYPE_OFF),
  };
}

/** Writes the 18-byte tagged header at `frameOff`; returns 18. */
export function emitVlan(repr: VlanRepr, buf: Uint8Array, frameOff: number): number {
  writeMac(buf, frameOff, repr.dstAddr);
  writeMac(buf, frameOff + 6, repr.srcAddr);
  vlanSetTpid(buf, frameOff, repr.tpid);
  vlanSetTci(buf, frameOff, ((repr.pcp & 7) << 13) | ((repr.dei & 1) << 12) | (repr.vid & 0xfff));
  writeU16(buf, frameOff + VLAN_ETHER_TYPE_OFF, repr.etherType);
  return VLAN_HEADER_LEN;
}
