// Ethernet II header (IEEE 802.3 clause 3.2, DIX framing). The FCS is not present:
// TAP devices and packet sockets hand frames over without it.

import { readU16, writeU16 } from "./bytes.js";
import { readMac, writeMac } from "./mac.js";
import { CHECK_OK, CHECK_TOO_SHORT } from "./reason.js";

export const ETH_DST_ADDR_OFF = 0;
export const ETH_SRC_ADDR_OFF = 6;
export const ETH_ETHER_TYPE_OFF = 12;
export const ETH_HEADER_LEN = 14;
/** Shortest frame on the wire without FCS (64 - 4); TAP frames may be shorter (no padding). */
export const ETH_MIN_FRAME_LEN = 60;

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
/** IEEE 802.1Q customer VLAN tag. */
export const ETHERTYPE_VLAN = 0x8100;
/** IEEE 802.1ad service VLAN tag (Q-in-Q outer tag). */
export const ETHERTYPE_QINQ = 0x88a8;
export const ETHERTYPE_IPV6 = 0x86dd;
/** Values below this are an 802.3 length, not an EtherType (IEEE 802.3 clause 3.2.6). */
export const ETHERTYPE_MIN = 0x0600;

/** CHECK_OK, or CHECK_TOO_SHORT when fewer than 14 bytes are available. */
function ethCheck(buf: Uint8Array, off: number, len: number): number {
  if (off < 0 || len < ETH_HEADER_LEN || off + len > buf.length) return CHECK_TOO_SHORT;
  return CHECK_OK;
}

export function ethGetDstAddr(buf: Uint8Array, off: number): number {
  return readMac(buf, off);
}
export function ethSetDstAddr(buf: Uint8Array, off: number, mac: number): void {
  writeMac(buf, off, mac);
}
export function ethSetSrcAddr(buf: Uint8Array, off: number, mac: number): void {
  writeMac(buf, off + ETH_SRC_ADDR_OFF, mac);
}
export function ethGetEtherType(buf: Uint8Array, off: number): number {
  return readU16(buf, off + ETH_ETHER_TYPE_OFF);
}
export function ethSetEtherType(buf: Uint8Array, off: number, etherType: number): void {
  writeU16(buf, off + ETH_ETHER_TYPE_OFF, etherType);
}

/** I/G bit of the destination (multicast or broadcast), read from one byte. */
export function ethDstIsMulticast(buf: Uint8Array, off: number): boolean {
  return (buf[off] & 1) === 1;
}

export interface EthernetRepr {
  dstAddr: number;
  srcAddr: number;
  etherType: number;
}

/** The header as a plain object, or null when fewer than 14 bytes are available. */
export function parseEthernet(buf: Uint8Array, off: number, len: number): EthernetRepr | null {
  if (ethCheck(buf, off, len) !== CHECK_OK) return null;
  return {
    dstAddr: ethGetDstAddr(buf, off),
    srcAddr: readMac(buf, off + ETH_SRC_ADDR_OFF),
    etherType: ethGetEtherType(buf, off),
  };
}

/** Writes the 14-byte header at `off`; returns 14. */
export function emitEthernet(repr: EthernetRepr, buf: Uint8Array, off: number): number {
  ethSetDstAddr(buf, off, repr.dstAddr);
  ethSetSrcAddr(buf, off, repr.srcAddr);
  ethSetEtherType(buf, off, repr.etherType);
  return ETH_HEADER_LEN;
}
