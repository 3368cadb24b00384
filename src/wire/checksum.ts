// The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//
// Sums are carried as plain non-negative numbers. A JavaScript number holds integers up
// to 2^53 exactly, so summing 16-bit words of even a 64 KiB super-frame (< 2^31) needs no
// folding inside the loop; the end-around carry is applied once at the end (RFC 1071
// section 2(C), "deferred carries").
//
// Vocabulary:
//   sum      - ones' complement sum of the data, folded to 16 bits, NOT complemented.
//              Chain sums by passing one as `initial` to the next.
//   checksum - what goes on the wire: ~sum & 0xffff.

/**
 * Folds a non-negative integer sum (< 2^53) to 16 bits with end-around carry.
 * Works because 2^16 = 1 (mod 0xffff): adding the high part to the low part keeps the
 * value mod 0xffff.
 */
export function checksumFold(sum: number): number {
  while (sum > 0xffffffff) sum = (sum >>> 0) + Math.floor(sum / 4294967296);
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/**
 * Ones' complement sum of `len` bytes at `off`, plus `initial`, folded to 16 bits.
 * An odd trailing byte is padded with a zero byte on the right (RFC 1071 section 4.1).
 * When chaining ranges, every range but the last must have an even length.
 */
export function checksumSum(buf: Uint8Array, off: number, len: number, initial = 0): number {
  let sum = initial;
  let i = off;
  const end = off + len;
  const end8 = end - 7;
  while (i < end8) {
    sum += ((buf[i] << 8) | buf[i + 1]) + ((buf[i + 2] << 8) | buf[i + 3]) + ((buf[i + 4] << 8) | buf[i + 5]) + ((buf[i + 6] << 8) | buf[i + 7]);
    i += 8;
  }
  while (i < end - 1) {
    sum += (buf[i] << 8) | buf[i + 1];
    i += 2;
  }
  if (i < end) sum += buf[i] << 8;
  return checksumFold(sum);
}

/**
 * RFC 1071 Internet checksum of `len` bytes at `off`, starting from the sum `initial`.
 * Over a range that includes a correct checksum field the result is 0.
 */
export function internetChecksum(buf: Uint8Array, off: number, len: number, initial = 0): number {
  return ~checksumSum(buf, off, len, initial) & 0xffff;
}

/**
 * Sum of the IPv4 pseudo-header used by UDP (RFC 768) and TCP (RFC 9293 section 3.1):
 * source address, destination address, zero, protocol, and the UDP/TCP length.
 */
export function pseudoHeaderSum(srcAddr: number, dstAddr: number, protocol: number, length: number): number {
  return checksumFold((srcAddr >>> 16) + (srcAddr & 0xffff) + (dstAddr >>> 16) + (dstAddr & 0xffff) + protocol + length);
}

/**
 * New checksum after a 16-bit word covered by checksum `hc` changes from `oldV` to `newV`.
 * RFC 1624 section 3, eqn. 3: HC' = ~(~HC + ~m + m'). Unlike RFC 1141's form it never
 * yields 0xffff (-0) where a full recomputation gives 0x0000: for any data that is not
 * all zeros the result equals a full recomputation (both folded sums lie in 1..0xffff and
 * agree mod 0xffff).
 */
export function checksumUpdate16(hc: number, oldV: number, newV: number): number {
  return ~checksumFold((~hc & 0xffff) + (~oldV & 0xffff) + (newV & 0xffff)) & 0xffff;
}

/**
 * As checksumUpdate16 for a 32-bit field (an IPv4 address, a TCP sequence number): two
 * words at once. `oldV`/`newV` may be uint32 or int32 bits: only shifts and masks.
 */
export function checksumUpdate32(hc: number, oldV: number, newV: number): number {
  return ~checksumFold((~hc & 0xffff) + (~oldV >>> 16) + (~oldV & 0xffff) + (newV >>> 16) + (newV & 0xffff)) & 0xffff;
}

/**
 * Update for a field holding a partial, not complemented, sum: the pseudo-header seed
 * that a sender with checksum offload (virtio-net/TAP with VIRTIO_NET_HDR_F_NEEDS_CSUM,
 * Linux CHECKSUM_PARTIAL) leaves in a UDP/TCP checksum field. When NAT rewrites an
 * address of such a packet, the seed must move by +m' - m, not by the RFC 1624 formula;
 * ports and data are not in the seed (the device sums them), so only addresses move it.
 */
export function partialChecksumUpdate32(sum: number, oldV: number, newV: number): number {
  return checksumFold((sum & 0xffff) + (~oldV >>> 16) + (~oldV & 0xffff) + (newV >>> 16) + (newV & 0xffff));
}
