// IPv4 fragmentation (RFC 791 section 3.2 "Fragmentation and Reassembly", RFC 1812
// section 5.2.6): cutting a datagram into fragments that fit a link's MTU. Reassembly is
// stateful and lives with the router (src/elements/ipv4-reassembly.ts).

import { readU16, writeU16 } from "./bytes.js";
import { IPV4_FLAGS_FRAG_OFF, IPV4_HEADER_LEN, IPV4_OPTIONS_OFF, IPV4_TOTAL_LEN_OFF, ipv4Check, ipv4FillChecksum } from "./ipv4.js";
import { CHECK_OK } from "./reason.js";

/** fragmentIpv4: DF is set and the datagram does not fit; send Fragmentation Needed. */
export const FRAG_DF_SET = -1;
/** fragmentIpv4: more than maxFrags fragments needed, or mtu < header length + 8. */
export const FRAG_TOO_MANY = -2;
/**
 * fragmentIpv4: malformed input (bad header, malformed options, a fragment offset that
 * would pass 65528) or bad arguments (stride < mtu, outLens or dst too small).
 */
export const FRAG_BAD_INPUT = -3;

/** IP option type bits (RFC 791 section 3.1): copied flag, and the two one-byte options. */
const IPOPT_COPIED = 0x80;
const IPOPT_END = 0;
const IPOPT_NOOP = 1;

/**
 * Walks the options in src[from, end) and returns the length of those whose copied flag
 * is set (RFC 791 section 3.1: they go into every fragment), writing them at `dst[w…]`
 * when `dst` is given. -1 for malformed options (a length below 2 or past the header).
 */
function copiedOptions(src: Uint8Array, from: number, end: number, dst: Uint8Array | null, w: number): number {
  let len = 0;
  for (let i = from; i < end; ) {
    const t = src[i];
    if (t === IPOPT_END) break;
    if (t === IPOPT_NOOP) {
      i++;
      continue;
    }
    if (i + 1 >= end) return -1;
    const n = src[i + 1];
    if (n < 2 || i + n > end) return -1;
    if ((t & IPOPT_COPIED) !== 0) {
      if (dst !== null) for (let k = 0; k < n; k++) dst[w + len + k] = src[i + k];
      len += n;
    }
    i += n;
  }
  return len;
}

/**
 * Fragments the datagram at `ipOff` (`ipLen` bytes available) for a link of `mtu` bytes
 * (RFC 791 section 3.2, RFC 1812 section 5.2.6). Fragment k is written at
 * dstOff + k*stride, its length in outLens[k]. Returns the number of fragments, or
 * FRAG_DF_SET (-1), FRAG_TOO_MANY (-2), FRAG_BAD_INPUT (-3).
 *
 * - A datagram that already fits (total length <= mtu) is copied as the single fragment,
 *   DF or not.
 * - The first fragment carries the whole header with every option; later ones only the
 *   options whose copied flag (0x80) is set, in order, padded with End of Option List to
 *   a 4-byte boundary, IHL adjusted. NOP and EOL are not copied.
 * - Every fragment's data but the last is a multiple of 8 bytes and as large as the mtu
 *   allows; offsets are added to the original's (fragmenting a fragment); MF is set on all
 *   but the last, and on the last when the original had it. Identification, TOS, TTL,
 *   protocol, addresses and the reserved flag are copied. Total length and header
 *   checksum are written for each.
 *
 * The header checksum of the input is not verified (the router verified it at ingress,
 * and every fragment gets a fresh one). `src` and the output regions must not overlap.
 */
export function fragmentIpv4(
  src: Buffer,
  ipOff: number,
  ipLen: number,
  mtu: number,
  dst: Buffer,
  dstOff: number,
  stride: number,
  maxFrags: number,
  outLens: Uint32Array,
): number {
  if (ipv4Check(src, ipOff, ipLen, false) !== CHECK_OK) return FRAG_BAD_INPUT;
  if (dstOff < 0 || stride < mtu || maxFrags < 1 || outLens.length < 1) return FRAG_BAD_INPUT;
  const hlen = (src[ipOff] & 0x0f) << 2;
  const totalLen = readU16(src, ipOff + IPV4_TOTAL_LEN_OFF);
  if (totalLen <= mtu) {
    if (dstOff + totalLen > dst.length) return FRAG_BAD_INPUT;
    src.copy(dst, dstOff, ipOff, ipOff + totalLen);
    outLens[0] = totalLen;
    return 1;
  }
  const flagsFrag = readU16(src, ipOff + IPV4_FLAGS_FRAG_OFF);
  if ((flagsFrag & 0x4000) !== 0) return FRAG_DF_SET;
  if (mtu < hlen + 8) return FRAG_TOO_MANY;

  // Length of the copied options, measured before anything is written.
  const optStart = ipOff + IPV4_OPTIONS_OFF;
  const optEnd = ipOff + hlen;
  const copiedLen = copiedOptions(src, optStart, optEnd, null, 0);
  if (copiedLen < 0) return FRAG_BAD_INPUT;
  const laterHlen = IPV4_HEADER_LEN + ((copiedLen + 3) & ~3);

  const payloadLen = totalLen - hlen;
  const firstData = (mtu - hlen) & ~7;
  const laterData = (mtu - laterHlen) & ~7;
  const remaining = payloadLen - firstData; // > 0: the datagram does not fit
  const count = 1 + Math.ceil(remaining / laterData);
  if (count > maxFrags) return FRAG_TOO_MANY;
  if (count > outLens.length) return FRAG_BAD_INPUT;
  const lastData = remaining - (count - 2) * laterData;
  if (dstOff + (count - 1) * stride + laterHlen + lastData > dst.length) return FRAG_BAD_INPUT;
  const origOffset = flagsFrag & 0x1fff;
  // RFC 791: offsets are 13 bits of 8-byte units; a peer's fragment near the top must not wrap.
  if (origOffset + ((payloadLen - lastData) >>> 3) > 0x1fff) return FRAG_BAD_INPUT;
  const keepFlags = flagsFrag & 0x8000; // the reserved bit travels as it is
  const origMf = flagsFrag & 0x2000;

  // First fragment: the whole header, then data.
  src.copy(dst, dstOff, ipOff, ipOff + hlen + firstData);
  writeFragHeader(dst, dstOff, hlen + firstData, keepFlags | 0x2000 | origOffset);
  outLens[0] = hlen + firstData;

  // Header of the later fragments, built once in fragment 1's slot and copied from there.
  const h1 = dstOff + stride;
  src.copy(dst, h1, ipOff, ipOff + IPV4_HEADER_LEN);
  dst[h1] = 0x40 | (laterHlen >>> 2);
  const hEnd = h1 + laterHlen;
  dst.fill(IPOPT_END, h1 + IPV4_OPTIONS_OFF + copiedOptions(src, optStart, optEnd, dst, h1 + IPV4_OPTIONS_OFF), hEnd);

  let dataOff = firstData;
  for (let k = 1; k < count; k++) {
    const f = dstOff + k * stride;
    const last = k === count - 1;
    const data = last ? lastData : laterData;
    if (k > 1) dst.copy(dst, f, h1, hEnd);
    src.copy(dst, f + laterHlen, ipOff + hlen + dataOff, ipOff + hlen + dataOff + data);
    writeFragHeader(dst, f, laterHlen + data, keepFlags | (last ? origMf : 0x2000) | (origOffset + (dataOff >>> 3)));
    outLens[k] = laterHlen + data;
    dataOff += data;
  }
  return count;
}

/** A fragment's total length, flags and offset, and its header checksum. */
function writeFragHeader(dst: Buffer, ip: number, totalLen: number, flagsFrag: number): void {
  writeU16(dst, ip + IPV4_TOTAL_LEN_OFF, totalLen);
  writeU16(dst, ip + IPV4_FLAGS_FRAG_OFF, flagsFrag);
  ipv4FillChecksum(dst, ip);
}
