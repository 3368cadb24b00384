/**
 * ip-util — buffer-level helpers for the slow paths of an IPv4 router.
 *
 * What it does: decides whether an ICMP error may be sent about a datagram (RFC 1812
 * section 4.3.2.7), writes ICMP error datagrams (section 4.3.2.3), turns an echo request
 * into its reply in place (RFC 1122 section 3.2.2.6), fragments a datagram (RFC 791
 * section 3.2, RFC 1812 section 5.2.6) and rate-limits ICMP with a token bucket (RFC 1812
 * section 4.3.2.8).
 *
 * Not an element: no ports, no counters, no I/O. The router calls these functions and
 * counts what they return. Nothing here allocates or throws on what a peer can send;
 * malformed input gives false or a negative return code.
 */
import {
  CHECK_OK,
  ICMP_CHECKSUM_OFF,
  ICMP_ECHO_REPLY,
  ICMP_ECHO_REQUEST,
  ICMP_ERROR_MAX_DATAGRAM_LEN,
  ICMP_HEADER_LEN,
  IP_BROADCAST,
  IP_PROTO_ICMP,
  IPV4_DST_ADDR_OFF,
  IPV4_FLAGS_FRAG_OFF,
  IPV4_HEADER_LEN,
  IPV4_IDENT_OFF,
  IPV4_OPTIONS_OFF,
  IPV4_PROTOCOL_OFF,
  IPV4_SRC_ADDR_OFF,
  IPV4_TOS_OFF,
  IPV4_TOTAL_LEN_OFF,
  IPV4_TTL_OFF,
  checksumSum,
  icmpIsError,
  icmpSetTypeCodeWithChecksumUpdate,
  ipv4Check,
  ipv4FillChecksum,
  readU16,
  readU32,
  tcpFillChecksum,
  writeU16,
  writeU32,
} from '../wire/index.js';

/** TTL of datagrams this router originates (Linux net.ipv4.ip_default_ttl). */
export const ICMP_ORIGINATED_TTL = 64;
/**
 * TOS of ICMP errors: precedence 6, internetwork control (RFC 1812 section 4.3.2.5 lets
 * a router use it; Linux sends errors with it, so tools see what they see from Linux).
 */
export const ICMP_ERROR_TOS = 0xc0;
/** IPv4 + ICMP headers in front of the quoted datagram. */
const ICMP_ERROR_HEADERS_LEN = IPV4_HEADER_LEN + ICMP_HEADER_LEN;
/**
 * Highest ICMP type Linux knows (NR_ICMP_TYPES = 18). Like Linux icmp_send(), an ICMP
 * message of an unknown type is treated as a possible error and never answered: unknown
 * types must be discarded by hosts (RFC 1122 section 3.2.2), and a loop of errors costs
 * more than a missing one.
 */
const ICMP_MAX_KNOWN_TYPE = 18;

/**
 * True when an ICMP error may be sent about the datagram at `ipOff` (`ipLen` bytes
 * available, trailing link padding allowed). RFC 1812 section 4.3.2.7 (RFC 1122 section
 * 3.2.2) forbids it for:
 *  - an ICMP error message (types 3, 4, 5, 11, 12; unknown types > 18 too, as Linux);
 *  - a datagram to the limited broadcast 255.255.255.255 or to a multicast group (224/4);
 *  - a datagram that arrived as a link-layer broadcast (`linkBroadcast`, the caller's
 *    knowledge: the Ethernet destination was ff:ff:ff:ff:ff:ff or a group address);
 *  - a non-initial fragment (fragment offset != 0);
 *  - a datagram whose source is not a unique host: 0.0.0.0, 255.255.255.255, 127/8,
 *    224/4, 240/4.
 * A directed broadcast to one of the router's own subnets is the caller's check too: only
 * it knows its subnets. False as well for a header that fails ipv4Check (checksum
 * included) and for an ICMP datagram too short to show its type.
 */
export function icmpErrorAllowed(buf: Buffer, ipOff: number, ipLen: number, linkBroadcast: boolean): boolean {
  if (linkBroadcast) return false;
  if (ipv4Check(buf, ipOff, ipLen, true) !== CHECK_OK) return false;
  if ((readU16(buf, ipOff + IPV4_FLAGS_FRAG_OFF) & 0x1fff) !== 0) return false;
  const dst = readU32(buf, ipOff + IPV4_DST_ADDR_OFF);
  if (dst === IP_BROADCAST || dst >>> 28 === 0xe) return false;
  const src = readU32(buf, ipOff + IPV4_SRC_ADDR_OFF);
  const srcTop = src >>> 24;
  // 224/4 and 240/4 (which holds 255.255.255.255) together are src >= 224.0.0.0.
  if (src === 0 || srcTop === 127 || srcTop >= 224) return false;
  if (buf[ipOff + IPV4_PROTOCOL_OFF] === IP_PROTO_ICMP) {
    const hlen = (buf[ipOff] & 0x0f) << 2;
    // An initial fragment of an ICMP message whose type byte is missing: cannot tell.
    if (readU16(buf, ipOff + IPV4_TOTAL_LEN_OFF) <= hlen) return false;
    const type = buf[ipOff + hlen];
    if (icmpIsError(type) || type > ICMP_MAX_KNOWN_TYPE) return false;
  }
  return true;
}

/**
 * Writes an ICMP error datagram (IPv4 header without options, then the ICMP message) at
 * `dstOff` and returns its length, at most 576 (RFC 1812 section 4.3.2.3), or -1 when the
 * original is shorter than an IPv4 header or `dst` has no room.
 *
 * The IPv4 header: TOS 0xc0, `ident`, DF clear, TTL 64, protocol ICMP, source `srcAddr`
 * (the caller picks it, RFC 1812 section 4.3.2.4: the address of the interface the error
 * leaves from), destination the original's source. The ICMP header: `type`, `code`, and
 * `rest`, the 32-bit rest of header: 0, or icmpRestFragNeeded(mtu) for Fragmentation
 * Needed (RFC 1191 section 4), or a Parameter Problem pointer in the top byte. Then as
 * much of the original datagram, from its IP header on, as fits: at most its total
 * length (not link padding) and at most `origIpLen` bytes.
 *
 * The caller checks icmpErrorAllowed() first and rate-limits. `dst` may be `orig` and the
 * two regions may overlap (the quote moves first, with memmove semantics), so an error
 * can be built over the offending frame in its slab slot.
 */
export function emitIcmpError(
  dst: Buffer,
  dstOff: number,
  orig: Buffer,
  origIpOff: number,
  origIpLen: number,
  type: number,
  code: number,
  rest: number,
  srcAddr: number,
  ident: number,
): number {
  if (origIpOff < 0 || origIpLen < IPV4_HEADER_LEN || origIpOff + origIpLen > orig.length) return -1;
  let quoteLen = origIpLen;
  const origTotalLen = readU16(orig, origIpOff + IPV4_TOTAL_LEN_OFF);
  if (origTotalLen >= IPV4_HEADER_LEN && origTotalLen < quoteLen) quoteLen = origTotalLen;
  if (quoteLen > ICMP_ERROR_MAX_DATAGRAM_LEN - ICMP_ERROR_HEADERS_LEN) {
    quoteLen = ICMP_ERROR_MAX_DATAGRAM_LEN - ICMP_ERROR_HEADERS_LEN;
  }
  const totalLen = ICMP_ERROR_HEADERS_LEN + quoteLen;
  if (dstOff < 0 || dstOff + totalLen > dst.length) return -1;
  // Read everything needed from the original before anything is written: dst may overlap it.
  const origSrc = readU32(orig, origIpOff + IPV4_SRC_ADDR_OFF);
  orig.copy(dst, dstOff + ICMP_ERROR_HEADERS_LEN, origIpOff, origIpOff + quoteLen);

  const ip = dstOff;
  dst[ip] = 0x45;
  dst[ip + IPV4_TOS_OFF] = ICMP_ERROR_TOS;
  writeU16(dst, ip + IPV4_TOTAL_LEN_OFF, totalLen);
  writeU16(dst, ip + IPV4_IDENT_OFF, ident);
  writeU16(dst, ip + IPV4_FLAGS_FRAG_OFF, 0);
  dst[ip + IPV4_TTL_OFF] = ICMP_ORIGINATED_TTL;
  dst[ip + IPV4_PROTOCOL_OFF] = IP_PROTO_ICMP;
  writeU32(dst, ip + IPV4_SRC_ADDR_OFF, srcAddr);
  writeU32(dst, ip + IPV4_DST_ADDR_OFF, origSrc);
  ipv4FillChecksum(dst, ip);

  const icmp = ip + IPV4_HEADER_LEN;
  dst[icmp] = type;
  dst[icmp + 1] = code;
  writeU16(dst, icmp + ICMP_CHECKSUM_OFF, 0);
  writeU32(dst, icmp + 4, rest);
  writeU16(dst, icmp + ICMP_CHECKSUM_OFF, ~checksumSum(dst, icmp, ICMP_HEADER_LEN + quoteLen) & 0xffff);
  return totalLen;
}

/**
 * Writes at `dstOff` the TCP reset that answers the segment at `origIpOff` (RFC 793,
 * "Reset Generation", for a connection that does not exist: the router listens on no
 * port): from the segment's destination to its source, ports swapped; if the segment
 * had ACK, <SEQ=SEG.ACK><CTL=RST>, else <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>, where
 * SYN and FIN count one each. Never answers a RST. Returns the packet's length (40), or
 * -1 (nothing written) for a reset, a fragment or a malformed segment.
 */
export function emitTcpReset(dst: Buffer, dstOff: number, orig: Buffer, origIpOff: number, origIpLen: number, ident: number): number {
  if (ipv4Check(orig, origIpOff, origIpLen, false) !== CHECK_OK) return -1;
  if (orig[origIpOff + IPV4_PROTOCOL_OFF] !== 6) return -1;
  if ((readU16(orig, origIpOff + IPV4_FLAGS_FRAG_OFF) & 0x3fff) !== 0) return -1;
  const hl = (orig[origIpOff] & 0x0f) << 2;
  const totalLen = readU16(orig, origIpOff + IPV4_TOTAL_LEN_OFF);
  const t = origIpOff + hl;
  const segLen = totalLen - hl;
  if (segLen < 20) return -1;
  const tcpHl = (orig[t + 12] >> 4) << 2;
  if (tcpHl < 20 || tcpHl > segLen) return -1;
  const flags = orig[t + 13];
  if ((flags & 0x04) !== 0) return -1; // RST: never answered
  if (dstOff < 0 || dstOff + 40 > dst.length) return -1;
  const src = readU32(orig, origIpOff + IPV4_SRC_ADDR_OFF);
  const dstAddr = readU32(orig, origIpOff + IPV4_DST_ADDR_OFF);
  const sport = readU16(orig, t);
  const dport = readU16(orig, t + 2);
  const seq = readU32(orig, t + 4);
  const ack = readU32(orig, t + 8);
  const dataLen = segLen - tcpHl + ((flags & 0x02) !== 0 ? 1 : 0) + ((flags & 0x01) !== 0 ? 1 : 0);

  const ip = dstOff;
  dst.fill(0, ip, ip + 40);
  dst[ip] = 0x45;
  writeU16(dst, ip + IPV4_TOTAL_LEN_OFF, 40);
  writeU16(dst, ip + IPV4_IDENT_OFF, ident);
  writeU16(dst, ip + IPV4_FLAGS_FRAG_OFF, 0x4000); // DF, as Linux sends resets
  dst[ip + IPV4_TTL_OFF] = ICMP_ORIGINATED_TTL;
  dst[ip + IPV4_PROTOCOL_OFF] = 6;
  writeU32(dst, ip + IPV4_SRC_ADDR_OFF, dstAddr);
  writeU32(dst, ip + IPV4_DST_ADDR_OFF, src);
  ipv4FillChecksum(dst, ip);
  const r = ip + IPV4_HEADER_LEN;
  writeU16(dst, r, dport);
  writeU16(dst, r + 2, sport);
  if ((flags & 0x10) !== 0) {
    writeU32(dst, r + 4, ack);
    dst[r + 13] = 0x04; // RST
  } else {
    writeU32(dst, r + 8, (seq + dataLen) >>> 0);
    dst[r + 13] = 0x14; // RST, ACK
  }
  dst[r + 12] = 5 << 4;
  tcpFillChecksum(dst, r, 20, dstAddr, src);
  return 40;
}

/**
 * Turns the echo request at `ipOff` into its echo reply in place (RFC 792, RFC 1122
 * section 3.2.2.6): source and destination swapped, type 8 -> 0 (code, identifier,
 * sequence number and data kept, as Linux does), TTL 64, both checksums right. The length
 * does not change; trailing link padding stays where it is.
 *
 * False, and the buffer untouched, unless it is a whole (unfragmented) ICMP echo request
 * with a valid IPv4 header and a valid ICMP checksum.
 *
 * IP options are overwritten with NOPs (same header length, nothing moves): a source route
 * must not be reflected as it stands, and Record Route / Timestamp would need this host's
 * entries added, which RFC 1122 asks for only as a SHOULD. The reply's source is the
 * request's destination, so call it only for requests to one of the router's own unicast
 * addresses; a reply to a broadcast or multicast echo needs a unicast source (RFC 1122
 * section 3.2.2.6) and is built by the caller.
 */
export function emitIcmpEchoReplyInPlace(buf: Buffer, ipOff: number, ipLen: number): boolean {
  if (ipv4Check(buf, ipOff, ipLen, true) !== CHECK_OK) return false;
  if (buf[ipOff + IPV4_PROTOCOL_OFF] !== IP_PROTO_ICMP) return false;
  if ((readU16(buf, ipOff + IPV4_FLAGS_FRAG_OFF) & 0x3fff) !== 0) return false;
  const hlen = (buf[ipOff] & 0x0f) << 2;
  const icmp = ipOff + hlen;
  const icmpLen = readU16(buf, ipOff + IPV4_TOTAL_LEN_OFF) - hlen;
  if (icmpLen < ICMP_HEADER_LEN || buf[icmp] !== ICMP_ECHO_REQUEST) return false;
  if (checksumSum(buf, icmp, icmpLen) !== 0xffff) return false;

  icmpSetTypeCodeWithChecksumUpdate(buf, icmp, ICMP_ECHO_REPLY, buf[icmp + 1]);
  const src = readU32(buf, ipOff + IPV4_SRC_ADDR_OFF);
  writeU32(buf, ipOff + IPV4_SRC_ADDR_OFF, readU32(buf, ipOff + IPV4_DST_ADDR_OFF));
  writeU32(buf, ipOff + IPV4_DST_ADDR_OFF, src);
  buf[ipOff + IPV4_TTL_OFF] = ICMP_ORIGINATED_TTL;
  buf.fill(1, ipOff + IPV4_OPTIONS_OFF, ipOff + hlen); // IPOPT_NOOP
  // At most 60 bytes: recomputing costs no more than tracking every change.
  ipv4FillChecksum(buf, ipOff);
  return true;
}

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
 * Fragments the datagram at `ipOff` (`ipLen` bytes available) for a link of `mtu` bytes
 * (RFC 791 section 3.2 "Fragmentation and Reassembly", RFC 1812 section 5.2.6). Fragment k
 * is written at dstOff + k*stride, its length in outLens[k]. Returns the number of
 * fragments, or FRAG_DF_SET (-1), FRAG_TOO_MANY (-2), FRAG_BAD_INPUT (-3).
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
  let copiedLen = 0;
  const optEnd = ipOff + hlen;
  for (let i = ipOff + IPV4_OPTIONS_OFF; i < optEnd; ) {
    const t = src[i];
    if (t === IPOPT_END) break;
    if (t === IPOPT_NOOP) {
      i++;
      continue;
    }
    if (i + 1 >= optEnd) return FRAG_BAD_INPUT;
    const len = src[i + 1];
    if (len < 2 || i + len > optEnd) return FRAG_BAD_INPUT;
    if ((t & IPOPT_COPIED) !== 0) copiedLen += len;
    i += len;
  }
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
  writeU16(dst, dstOff + IPV4_TOTAL_LEN_OFF, hlen + firstData);
  writeU16(dst, dstOff + IPV4_FLAGS_FRAG_OFF, keepFlags | 0x2000 | origOffset);
  ipv4FillChecksum(dst, dstOff);
  outLens[0] = hlen + firstData;

  // Header of the later fragments, built once in fragment 1's slot and copied from there.
  const h1 = dstOff + stride;
  src.copy(dst, h1, ipOff, ipOff + IPV4_HEADER_LEN);
  dst[h1] = 0x40 | (laterHlen >>> 2);
  let w = h1 + IPV4_OPTIONS_OFF;
  for (let i = ipOff + IPV4_OPTIONS_OFF; i < optEnd; ) {
    const t = src[i];
    if (t === IPOPT_END) break;
    if (t === IPOPT_NOOP) {
      i++;
      continue;
    }
    const len = src[i + 1];
    if ((t & IPOPT_COPIED) !== 0) {
      src.copy(dst, w, i, i + len);
      w += len;
    }
    i += len;
  }
  const hEnd = h1 + laterHlen;
  while (w < hEnd) dst[w++] = IPOPT_END;

  let dataOff = firstData;
  for (let k = 1; k < count; k++) {
    const f = dstOff + k * stride;
    const last = k === count - 1;
    const data = last ? lastData : laterData;
    if (k > 1) dst.copy(dst, f, h1, hEnd);
    src.copy(dst, f + laterHlen, ipOff + hlen + dataOff, ipOff + hlen + dataOff + data);
    writeU16(dst, f + IPV4_TOTAL_LEN_OFF, laterHlen + data);
    writeU16(dst, f + IPV4_FLAGS_FRAG_OFF, keepFlags | (last ? origMf : 0x2000) | (origOffset + (dataOff >>> 3)));
    ipv4FillChecksum(dst, f);
    outLens[k] = laterHlen + data;
    dataOff += data;
  }
  return count;
}

/**
 * Linux's global ICMP limit: net.ipv4.icmp_msgs_per_sec = 1000 and icmp_msgs_burst = 50.
 * (Linux also keeps a per-destination limit, icmp_ratelimit = 1 s for unreachable, time
 * exceeded and parameter problem; a router wanting that keeps one bucket per peer.)
 */
export const ICMP_RATE_PER_SECOND = 1000;
export const ICMP_RATE_BURST = 50;

/**
 * A token bucket for ICMP rate limiting (RFC 1812 section 4.3.2.8): starts full with
 * `burst` tokens, gains `ratePerSecond` tokens per second up to `burst`, and take() spends
 * one. Time is the caller's monotonic clock in milliseconds (performance.now() or the
 * batch timestamp), passed in so that tests need no sleeping. A clock that steps back
 * gives no tokens and does not throw. take() allocates nothing.
 */
export class TokenBucket {
  private readonly ratePerMs: number;
  private readonly burst: number;
  private tokens: number;
  private lastMs: number;

  constructor(ratePerSecond: number = ICMP_RATE_PER_SECOND, burst: number = ICMP_RATE_BURST) {
    if (!Number.isFinite(ratePerSecond) || ratePerSecond < 0) {
      throw new Error(`TokenBucket rate must be a finite number >= 0 per second, got ${String(ratePerSecond)}`);
    }
    if (!Number.isFinite(burst) || burst < 1) {
      throw new Error(`TokenBucket burst must be a finite number >= 1, got ${String(burst)}`);
    }
    this.ratePerMs = ratePerSecond / 1000;
    this.burst = burst;
    this.tokens = burst;
    this.lastMs = Number.NEGATIVE_INFINITY;
  }

  /** Spends one token if there is one; true when the caller may send. */
  take(nowMs: number): boolean {
    if (nowMs > this.lastMs) {
      if (this.lastMs !== Number.NEGATIVE_INFINITY) {
        const t = this.tokens + (nowMs - this.lastMs) * this.ratePerMs;
        this.tokens = t < this.burst ? t : this.burst;
      }
      this.lastMs = nowMs;
    }
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    return false;
  }
}
