// TCP and UDP alike (RFC 768, RFC 9293 section 3.1): the source and destination ports
// are the first two words, and the checksum covers the IPv4 pseudo-header, the header
// and the data. It sits at 16 in TCP and at 6 in UDP, where 0 means "none" and a
// computed 0 is sent as 0xffff. Here: the ports, and the incremental checksum updates
// (RFC 1624) that rewriting a packet in place needs, for either protocol
// (`proto`: IP_PROTO_TCP or IP_PROTO_UDP).
//
// CHECKSUM_PARTIAL: a frame from a TAP with VIRTIO_NET_HDR_F_NEEDS_CSUM carries in its
// checksum field the folded pseudo-header sum (a seed) the device completes. Only the
// pseudo-header's fields move the seed, and by +new - old (partialChecksumUpdate32);
// ports and data do not.

import { readU16, writeU16 } from "./bytes.js";
import { checksumUpdate16, checksumUpdate32, partialChecksumUpdate32 } from "./checksum.js";
import { IP_PROTO_UDP } from "./ipv4.js";
import { TCP_CHECKSUM_OFF } from "./tcp.js";
import { UDP_CHECKSUM_OFF } from "./udp.js";

export const L4_SRC_PORT_OFF = 0;
export const L4_DST_PORT_OFF = 2;

export function l4GetSrcPort(buf: Uint8Array, off: number): number {
  return readU16(buf, off + L4_SRC_PORT_OFF);
}
export function l4GetDstPort(buf: Uint8Array, off: number): number {
  return readU16(buf, off + L4_DST_PORT_OFF);
}

/** Offset of the checksum field in the transport header. */
function csumOff(proto: number): number {
  return proto === IP_PROTO_UDP ? UDP_CHECKSUM_OFF : TCP_CHECKSUM_OFF;
}

/**
 * Stores checksum `c` computed from `hc`: UDP's "none" (0) stays none, a UDP result of
 * 0 is sent as 0xffff (RFC 768).
 */
function store(buf: Uint8Array, o: number, proto: number, hc: number, c: number): void {
  if (proto !== IP_PROTO_UDP) writeU16(buf, o, c);
  else if (hc !== 0) writeU16(buf, o, c === 0 ? 0xffff : c);
}

/** Incremental update after a 16-bit word covered by the checksum, header or pseudo-header, changed. */
function l4UpdateChecksum16(buf: Uint8Array, off: number, proto: number, oldV: number, newV: number): void {
  const o = off + csumOff(proto);
  const hc = readU16(buf, o);
  store(buf, o, proto, hc, checksumUpdate16(hc, oldV, newV));
}

/**
 * The checksum after a pseudo-header address changed from `oldAddr` to `newAddr`
 * (uint32 or int32 bits): updated incrementally (RFC 1624), or with `partial` the seed
 * moved.
 */
export function l4UpdateChecksumAddr(buf: Uint8Array, off: number, proto: number, oldAddr: number, newAddr: number, partial: boolean): void {
  const o = off + csumOff(proto);
  const hc = readU16(buf, o);
  if (partial) writeU16(buf, o, partialChecksumUpdate32(hc, oldAddr, newAddr));
  else store(buf, o, proto, hc, checksumUpdate32(hc, oldAddr, newAddr));
}

/**
 * Sets the port at `portOff` (L4_SRC_PORT_OFF or L4_DST_PORT_OFF) with the checksum
 * updated; an unchanged port leaves the packet alone. With `partial` only the port is
 * written.
 */
export function l4SetPortWithChecksumUpdate(buf: Uint8Array, off: number, proto: number, portOff: number, port: number, partial = false): void {
  const old = readU16(buf, off + portOff);
  if (old === port) return;
  writeU16(buf, off + portOff, port);
  if (!partial) l4UpdateChecksum16(buf, off, proto, old, port & 0xffff);
}
