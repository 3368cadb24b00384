/**
 * NAT rewrites: the addresses and ports (ICMP echo identifiers) of a packet, and of the
 * datagram an ICMP error quotes, changed in place with every checksum kept right by
 * incremental updates (RFC 1624, RFC 3022 section 4.2) through the setters of src/wire:
 * the IPv4 header checksum, the TCP/UDP checksum with its pseudo-header (a zero UDP
 * checksum stays zero), the ICMP checksum. With `partial` (a frame with
 * VIRTIO_NET_HDR_F_NEEDS_CSUM, Linux CHECKSUM_PARTIAL) the TCP/UDP field holds the
 * pseudo-header seed: addresses move it, ports do not.
 *
 * Plain functions on (buf, offset), addresses as int32 bits (readI32): nothing
 * allocated per packet. Used by the NAT's hooks (nat.ts).
 */
import { readU16, writeU16 } from "../wire/bytes.js";
import { icmpSetIdentWithChecksumUpdate, icmpUpdateChecksum16, icmpUpdateChecksum32 } from "../wire/icmp.js";
import { IP_PROTO_ICMP, IP_PROTO_TCP, ipv4SetDstAddrWithChecksumUpdate, ipv4SetSrcAddrWithChecksumUpdate } from "../wire/ipv4.js";
import { L4_DST_PORT_OFF, L4_SRC_PORT_OFF, l4SetPortWithChecksumUpdate, l4UpdateChecksumAddr } from "../wire/l4.js";
import { udpGetChecksum } from "../wire/udp.js";

/** Sets the source (src: true) or destination address of the IPv4 header at `ip`; returns the old one. */
export function setAddr(buf: Buffer, ip: number, src: boolean, addr: number): number {
  return src ? ipv4SetSrcAddrWithChecksumUpdate(buf, ip, addr) : ipv4SetDstAddrWithChecksumUpdate(buf, ip, addr);
}

/**
 * Rewrites the source (src: true) or destination address and port / ICMP echo
 * identifier of the packet at `ip` (transport header at `l4`).
 */
export function rewrite(buf: Buffer, ip: number, l4: number, proto: number, src: boolean, addr: number, port: number, partial: boolean): void {
  const old = setAddr(buf, ip, src, addr);
  if (proto === IP_PROTO_ICMP) {
    icmpSetIdentWithChecksumUpdate(buf, l4, port);
    return;
  }
  if (old !== (addr | 0)) l4UpdateChecksumAddr(buf, l4, proto, old, addr, partial);
  l4SetPortWithChecksumUpdate(buf, l4, proto, src ? L4_SRC_PORT_OFF : L4_DST_PORT_OFF, port, partial);
}

/**
 * Rewrites the source or destination of the datagram quoted in the ICMP error at
 * `icmp` (quoted IPv4 header at `inner`, its transport header at `l4`, `l4Avail` bytes
 * of it quoted), keeping the quoted IPv4 checksum, the quoted TCP/UDP/ICMP checksum
 * (when quoted) and the error's own ICMP checksum right.
 *
 * The ICMP checksum: an RFC 1624 update moves a checksum by exactly the opposite of
 * the words it covers (HC' = HC + m - m', mod 0xffff), so a field changed together
 * with a checksum that covers it, both inside the ICMP message, leaves the message's
 * sum where it was. That holds for the quoted address with the quoted IPv4 checksum,
 * and for a quoted port or identifier with its transport checksum. What remains is
 * the transport checksum's move for the address (pseudo-header, RFC 768 / RFC 9293
 * section 3.1) when that checksum is quoted, or a port change when it is not.
 */
export function rewriteQuote(
  buf: Buffer,
  icmp: number,
  inner: number,
  l4: number,
  l4Avail: number,
  proto: number,
  src: boolean,
  addr: number,
  port: number,
): void {
  const old = setAddr(buf, inner, src, addr);
  if (proto === IP_PROTO_ICMP) {
    icmpSetIdentWithChecksumUpdate(buf, l4, port); // the quoted echo's checksum is in the quote
    return;
  }
  // Is the quoted transport checksum there (a TCP quote may stop at 8 bytes; UDP 0 = none)?
  const l4Csum = proto === IP_PROTO_TCP ? l4Avail >= 18 : udpGetChecksum(buf, l4) !== 0;
  const portOff = src ? L4_SRC_PORT_OFF : L4_DST_PORT_OFF;
  if (l4Csum) {
    if (old !== (addr | 0)) {
      l4UpdateChecksumAddr(buf, l4, proto, old, addr, false);
      icmpUpdateChecksum32(buf, icmp, addr, old); // the transport checksum moved by -(addr - old)
    }
    l4SetPortWithChecksumUpdate(buf, l4, proto, portOff, port, false);
    return;
  }
  const oldP = readU16(buf, l4 + portOff);
  if (oldP === port) return;
  writeU16(buf, l4 + portOff, port);
  icmpUpdateChecksum16(buf, icmp, oldP, port);
}
