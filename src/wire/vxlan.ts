// VXLAN (RFC 7348): the 8-byte header in front of an inner Ethernet frame, carried in
// UDP (destination port 4789), and the outer UDP source port that spreads flows.
//
//   0 flags (I = 0x08; the other bits reserved) | 1..3 reserved
//   4..6 VNI (24 bits)                           | 7 reserved
//
// Section 5: the I flag must be 1; reserved bits are sent as 0 and ignored on receipt.

import { readU16, readU32, writeU32 } from "./bytes.js";
import { ETHERTYPE_IPV4, ETHERTYPE_QINQ, ETHERTYPE_VLAN, ETH_HEADER_LEN } from "./ethernet.js";
import { ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST } from "./icmp.js";
import { IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP, IPV4_HEADER_LEN } from "./ipv4.js";
import { UDP_HEADER_LEN } from "./udp.js";

/** IANA's VXLAN port; flannel and old kernels use 8472. */
export const VXLAN_PORT = 4789;
export const VXLAN_HEADER_LEN = 8;
/** The I flag, first byte of the header (RFC 7348 section 5). */
export const VXLAN_FLAG_I = 0x08;
/** Outer IPv4 + UDP + VXLAN bytes before the inner frame. */
export const VXLAN_ENCAP_LEN = IPV4_HEADER_LEN + UDP_HEADER_LEN + VXLAN_HEADER_LEN;
/** What the overlay MTU loses to the tunnel: the encapsulation and the inner Ethernet header. */
export const VXLAN_OVERHEAD = VXLAN_ENCAP_LEN + ETH_HEADER_LEN;

/** Outer UDP source ports come from 49152..65535 (RFC 7348 section 5: the dynamic range). */
export const VXLAN_SRC_PORT_MIN = 49152;

const IP_PROTO_DCCP = 33;
const IP_PROTO_SCTP = 132;
const IP_PROTO_UDPLITE = 136;

/** A header in `len` bytes at `off` with the I flag set (RFC 7348 section 5). */
export function vxlanValid(buf: Uint8Array, off: number, len: number): boolean {
  return len >= VXLAN_HEADER_LEN && (buf[off] & VXLAN_FLAG_I) !== 0;
}

export function vxlanGetVni(buf: Uint8Array, off: number): number {
  return (buf[off + 4] << 16) | (buf[off + 5] << 8) | buf[off + 6];
}

/** Writes a header for `vni`: flags I, reserved bits 0. */
export function vxlanWriteHeader(buf: Uint8Array, off: number, vni: number): void {
  buf[off] = VXLAN_FLAG_I;
  buf[off + 1] = 0;
  buf[off + 2] = 0;
  buf[off + 3] = 0;
  writeU32(buf, off + 4, vni << 8);
}

// murmur3's 32-bit mixing: cheap, no allocation, and every input bit reaches the low
// 14 bits that pick the source port.
function mix(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/**
 * UDP source port for the inner frame at `off` (RFC 7348 section 5: a hash of the
 * inner headers, in 49152..65535). Ethernet addresses always; for IPv4 also the
 * addresses, the protocol and, unless the packet is a fragment (whose later pieces
 * carry no ports: all pieces must take one path), the TCP/UDP/SCTP/DCCP ports or the
 * ICMP echo identifier. One 802.1Q/802.1ad tag is looked through.
 */
export function vxlanSourcePort(buf: Uint8Array, off: number, len: number): number {
  let h = 0x7a70;
  h = mix(h, readU32(buf, off));
  h = mix(h, readU32(buf, off + 4));
  h = mix(h, readU32(buf, off + 8));
  let l3 = off + ETH_HEADER_LEN;
  let etherType = readU16(buf, off + 12);
  if ((etherType === ETHERTYPE_VLAN || etherType === ETHERTYPE_QINQ) && len >= ETH_HEADER_LEN + 4) {
    etherType = readU16(buf, off + 16);
    l3 += 4;
  }
  const end = off + len;
  if (etherType === ETHERTYPE_IPV4 && l3 + IPV4_HEADER_LEN <= end && buf[l3] >>> 4 === 4) {
    const proto = buf[l3 + 9];
    h = mix(h, readU32(buf, l3 + 12));
    h = mix(h, readU32(buf, l3 + 16));
    h = mix(h, proto);
    const l4 = l3 + ((buf[l3] & 0x0f) << 2);
    const fragment = (readU16(buf, l3 + 6) & 0x3fff) !== 0;
    if (!fragment && l4 + 8 <= end) {
      if (proto === IP_PROTO_TCP || proto === IP_PROTO_UDP || proto === IP_PROTO_SCTP || proto === IP_PROTO_UDPLITE || proto === IP_PROTO_DCCP) {
        h = mix(h, readU32(buf, l4));
      } else if (proto === IP_PROTO_ICMP && (buf[l4] === ICMP_ECHO_REQUEST || buf[l4] === ICMP_ECHO_REPLY)) {
        h = mix(h, readU16(buf, l4 + 4));
      }
    }
  }
  return VXLAN_SRC_PORT_MIN + (fmix(h) & 0x3fff);
}
