/**
 * Software offloads (native/offload.c): TSO segmentation, checksum completion and
 * receive coalescing (GRO) over frames in the packet pool.
 *
 * With IFF_VNET_HDR a TAP hands over TCP super-frames (up to 64 KiB) and frames whose
 * checksum is only seeded (CHECKSUM_PARTIAL). Where a frame leaves through something
 * that cannot carry that state (a tunnel underlay), it is segmented or finished here,
 * once, at the last stage before the wire; on the way in (groCoalesce, at the tunnel) and on
 * the way out to a TAP (groFrames, over a TxQueue), a burst of segments of one TCP flow
 * is merged back into a super-frame so the TAP's kernel side takes one frame, not 45.
 *
 * Frames use the layout of the TAP receive slots: the 12-byte virtio_net_hdr_v1
 * (src/wire/vnet.ts: its fields, flags and GSO types) sits right before the frame, at
 * `off - 12`. `csumStart` counts from the start of the Ethernet header.
 *
 * None of these functions allocates or throws for a bad packet: each returns a negative
 * OFFLOAD_ERR_* code instead (a peer controls the bytes). They throw a TypeError only
 * when an argument has the wrong type, which is a bug in the caller. Every offset and
 * length, given or read from the packet, is checked before C touches memory.
 *
 * The addon is loaded on the first call, so importing this module never fails where
 * the addon was not built.
 */
import { checksumSum } from "../wire/checksum.js";
import { VIRTIO_NET_HDR_F_NEEDS_CSUM, VNET_HDR_LEN, vnetGetCsumOffset, vnetGetCsumStart, vnetGetFlags, vnetNeedsCsum, vnetSetFlags } from "../wire/vnet.js";
import { loadNative } from "./native.js";

/** The packet is not what the call needs (not a TSO frame, truncated, inconsistent lengths, checksum field outside the frame...). */
export const OFFLOAD_ERR_MALFORMED = -1;
/** The output would not fit (dst region or slots too small); the caller makes room and calls again. */
export const OFFLOAD_ERR_NO_ROOM = -2;
/** An offset or length argument lies outside its buffer (or is not an integer in 0..2^32-1), or the regions overlap: a caller bug, reported without throwing. */
export const OFFLOAD_ERR_RANGE = -3;

/** What the addon exports (native/offload.c): the functions below, each one call. */
interface OffloadBinding {
  gsoSegment: typeof gsoSegment;
  gsoHeaders: typeof gsoHeaders;
  csumComplete: typeof csumComplete;
  groCoalesce: typeof groCoalesce;
  groFrames: typeof groFrames;
}

let binding: OffloadBinding | undefined;

function bind(): OffloadBinding {
  const b = loadNative() as unknown as Partial<OffloadBinding>;
  if (
    typeof b.gsoSegment !== "function" ||
    typeof b.gsoHeaders !== "function" ||
    typeof b.csumComplete !== "function" ||
    typeof b.groCoalesce !== "function" ||
    typeof b.groFrames !== "function"
  ) {
    const err = new Error(
      "tapnet native addon has no offload functions: it was built from older sources; " + "rebuild it with `npm run install` in the repository root",
    ) as Error & { code: string };
    err.code = "ERR_TAPNET_NATIVE_STALE";
    throw err;
  }
  binding = b as OffloadBinding;
  return binding;
}

/**
 * Segments the TSO super-frame `src[off, off+len)` (vnet header at `off - 12`, gsoType
 * TCPV4 or TCPV6, with or without ECN) as Linux's tcp_gso_segment does.
 *
 * The header length H (Ethernet with at most one 802.1Q/802.1ad tag, IPv4 by IHL or the
 * fixed IPv6 header without extension headers, TCP by data offset) is measured from the
 * packet; hdrLen is ignored, csumStart must equal the TCP offset. The payload is cut
 * into gsoSize (MSS) pieces; segment k goes to `dst[dstOff + k*S + prefix]` with stride
 * `S = prefix + H + MSS`, the last may be shorter: the layout a UDP GSO send with
 * UDP_SEGMENT = S takes, `prefix` bytes (a VXLAN header, say) before each frame left
 * untouched for the caller. `lengths[k]` receives segment k's frame length (prefix not
 * included). Each segment gets: IPv4 total length, ident + k, a new header checksum (or
 * IPv6 payload length); TCP seq + k*MSS, CWR only on the first, FIN and PSH only on the
 * last; a full TCP checksum. Frames carry no vnet header. A super-frame with payload <=
 * MSS yields one segment.
 *
 * @returns the number of segments; OFFLOAD_ERR_MALFORMED (not a TCP GSO frame,
 *   truncated, lengths inconsistent with the IP header, a fragment, MSS 0, csumStart or
 *   csumOffset wrong, more segments than `lengths.length`); OFFLOAD_ERR_NO_ROOM when the
 *   last segment would end after `dstEnd`; OFFLOAD_ERR_RANGE when `off < 12`, the frame
 *   is outside `src`, `dstOff > dstEnd`, `dstEnd > dst.length`, or the source (with its
 *   vnet header) overlaps `dst[dstOff, dstEnd)`.
 */
export function gsoSegment(
  src: Uint8Array,
  off: number,
  len: number,
  dst: Uint8Array,
  dstOff: number,
  dstEnd: number,
  prefix: number,
  lengths: Uint32Array,
): number {
  return (binding ?? bind()).gsoSegment(src, off, len, dst, dstOff, dstEnd, prefix, lengths);
}

/**
 * gsoSegment without the payload copy, for a scatter-gather send (UdpHandle.sendv): the
 * super-frame `buf[off, off+len)` (as gsoSegment takes it) is planned into the same
 * segments, but only each segment's headers are written, into the header area
 * `buf[hdrOff, hdrEnd)`: segment k's at `hdrOff + k*(prefix + H) + prefix` (H: the
 * frame's Ethernet, IP and TCP headers), `prefix` bytes left in front of each for the
 * caller (a VXLAN header). Segment k is then two gather entries from `first` on:
 * `iovOffsets/iovLengths[first + 2k]` = its prefix and headers (prefix + H bytes) and
 * `[first + 2k + 1]` = its payload where it lies in the super-frame. Concatenated,
 * the entries of segment k are byte for byte gsoSegment's segment k behind its prefix
 * (the TCP checksum is computed over the headers and the payload in place).
 *
 * The super-frame is only read and must stay unchanged until the send.
 *
 * @returns the number of segments; OFFLOAD_ERR_MALFORMED as gsoSegment;
 *   OFFLOAD_ERR_NO_ROOM when the headers do not fit `[hdrOff, hdrEnd)` or the entries
 *   do not fit the arrays from `first` on (nothing useful written: make room and call
 *   again); OFFLOAD_ERR_RANGE when `[off - 12, off + len)` or the header area lies
 *   outside `buf`, they overlap, or `first` is beyond the arrays.
 */
export function gsoHeaders(
  buf: Uint8Array,
  off: number,
  len: number,
  hdrOff: number,
  hdrEnd: number,
  prefix: number,
  iovOffsets: Uint32Array,
  iovLengths: Uint32Array,
  first: number,
): number {
  return (binding ?? bind()).gsoHeaders(buf, off, len, hdrOff, hdrEnd, prefix, iovOffsets, iovLengths, first);
}

/**
 * Finishes a frame whose vnet header (at `off - 12`) has NEEDS_CSUM, as Linux's
 * skb_checksum_help does: the checksum field at csumStart + csumOffset holds the folded
 * pseudo-header sum; the one's-complement sum over `[csumStart, len)` (field included) is
 * folded, complemented and stored (a result of 0 is stored as 0xffff, which UDP needs
 * and TCP accepts), then NEEDS_CSUM is cleared. A frame without the flag is left alone.
 *
 * @returns 0 (done or nothing to do); OFFLOAD_ERR_MALFORMED when csumStart + csumOffset
 *   + 2 > len; OFFLOAD_ERR_RANGE when `off < 12` or the frame is outside `buf`.
 */
export function csumComplete(buf: Uint8Array, off: number, len: number): number {
  return (binding ?? bind()).csumComplete(buf, off, len);
}

/** Partial checksums over at most this many bytes are finished in JavaScript. */
const JS_CSUM_MAX = 256;

/**
 * csumComplete for the forwarding path, where it runs once per frame: a short span (a
 * pure TCP ACK, a small datagram) is summed here with src/wire's checksumSum, which
 * costs less than a call into the addon; a long one, and anything out of range or
 * malformed, goes to csumComplete. Same result, same return codes.
 */
export function completeChecksum(buf: Uint8Array, off: number, len: number): number {
  if (off < VNET_HDR_LEN || off + len > buf.length) return csumComplete(buf, off, len);
  if (!vnetNeedsCsum(buf, off)) return 0;
  const start = vnetGetCsumStart(buf, off);
  const field = start + vnetGetCsumOffset(buf, off);
  if (field + 2 > len || len - start > JS_CSUM_MAX) return csumComplete(buf, off, len);
  let c = ~checksumSum(buf, off + start, len - start) & 0xffff;
  if (c === 0) c = 0xffff;
  buf[off + field] = c >>> 8;
  buf[off + field + 1] = c & 0xff;
  vnetSetFlags(buf, off, vnetGetFlags(buf, off) & ~VIRTIO_NET_HDR_F_NEEDS_CSUM);
  return 0;
}

/**
 * Receive coalescing for the tunnel underlay, modelled on Linux's inet_gro_receive and
 * tcp_gro_receive. `src[srcOff, srcOff+srcLen)` holds n = ceil(srcLen/segSize)
 * datagrams back to back, each `segSize` bytes but the last (what a UDP socket with
 * UDP_GRO returns; segSize = srcLen for one datagram), each `skip` bytes (the VXLAN
 * header, validated by the caller) then an Ethernet frame.
 *
 * Output frames fill slots from `outIndex` on: slot j is `dst[slotBase + j*slotSize,
 * +slotSize)`, its frame at `headroom` into the slot with the vnet header 12 bytes
 * before; `offsets[j]` gets the absolute frame offset in `dst`, `lengths[j]` its length.
 *
 * A run starts at an IPv4 TCP segment with payload and flags exactly ACK (ACK|PSH makes
 * a run of one). Following datagrams join while they belong to the same flow and headers
 * (Ethernet header and tag, IHL and options, TOS, TTL, DF, addresses, ports, ack,
 * window, data offset and TCP options), are not fragments, have no Ethernet padding, an
 * ident equal to the previous one or one more, flags ACK or ACK|PSH, seq following on,
 * a payload as long as the first's (a shorter one, or one with PSH, joins last), valid
 * IPv4 and TCP checksums (every segment is verified), and the super-frame stays within
 * 65535 bytes of IP and within `slotSize - headroom`. A run of two or more becomes one
 * frame: the first's headers, the payloads in order, IP total length and checksum
 * updated, PSH if any had it, the TCP checksum field set to the pseudo-header seed, and
 * a vnet header NEEDS_CSUM / TCPV4 / hdrLen H / gsoSize = first payload length /
 * csumStart = TCP offset / csumOffset 16. Every other datagram is copied as one frame
 * with an all-zero vnet header. Datagrams with fewer than 14 bytes after `skip`, or
 * longer than a slot can hold, are not output; the caller counts them by comparison.
 *
 * @returns the new outIndex (outIndex + frames written); OFFLOAD_ERR_NO_ROOM, writing
 *   nothing, when outIndex + n exceeds maxSlots, offsets.length or lengths.length;
 *   OFFLOAD_ERR_RANGE when the source is outside `src`, segSize is 0, headroom < 12 or
 *   >= slotSize, slots 0..maxSlots-1 do not fit in `dst`, outIndex > maxSlots, a frame
 *   offset would not fit in 32 bits, or the source overlaps the slots to be written.
 */
export function groCoalesce(
  src: Uint8Array,
  srcOff: number,
  srcLen: number,
  segSize: number,
  skip: number,
  dst: Uint8Array,
  slotBase: number,
  slotSize: number,
  headroom: number,
  maxSlots: number,
  offsets: Uint32Array,
  lengths: Uint32Array,
  outIndex: number,
): number {
  return (binding ?? bind()).groCoalesce(src, srcOff, srcLen, segSize, skip, dst, slotBase, slotSize, headroom, maxSlots, offsets, lengths, outIndex);
}

/**
 * Receive coalescing over a frame list (a TxQueue's offsets and lengths: frame i at
 * `pool[offsets[i]]`, `lengths[i]` bytes, its vnet header at `offsets[i] - 12`; frames
 * anywhere in the pool, in any order): the GRO a TAP's egress does for segments that
 * crossed the node one by one (from a tunnel, libpcap, a host without TSO).
 *
 * Looks at frames `start, start+1, …` (up to `count - 1`) and, when they form a run of
 * two or more, writes one TCPv4 super-frame to `dst`: its vnet header at
 * `dst[dstOff, dstOff+12)`, the frame at `dstOff + 12`, its length in `result[0]`;
 * nothing is written at or past `dstEnd`. The run rules are groCoalesce's (same flow and
 * headers, seq following on, ident equal or +1, flags ACK or ACK|PSH with PSH ending the
 * run, a payload as long as the first's with a shorter one ending it, no fragment, no
 * Ethernet padding, a valid IPv4 header checksum, at most 65535 bytes of IP), plus what
 * each frame's own vnet header says:
 *   - gsoType != NONE: already a super-frame, never merged (a run stops before it);
 *   - NEEDS_CSUM: the TCP checksum is a partial one from a local stack (its bytes came
 *     straight from a TAP), so it is trusted, not verified; csumStart must be the TCP
 *     offset and csumOffset 16, else the frame is not merged;
 *   - DATA_VALID: verified by the sender's side (CHECKSUM_UNNECESSARY), trusted;
 *   - otherwise the TCP checksum is verified, and a bad one ends the run (or prevents it).
 * The super-frame is built as groCoalesce builds it (NEEDS_CSUM / TCPV4 / gsoSize = first
 * payload length). Frames in the list are only read.
 *
 * Frames are checked as they are examined (offset >= 12, inside `pool`, not overlapping
 * `dst[dstOff, dstEnd)`); frames after the run are not looked at.
 *
 * @returns the number of frames merged (>= 2; the caller goes on at `start + n`); 1 when
 *   frame `start` does not begin a run (nothing written: send it as it is);
 *   OFFLOAD_ERR_NO_ROOM when a run begins here but its first two frames do not fit in
 *   `dst[dstOff + 12, dstEnd)` (nothing written: make room and call again);
 *   OFFLOAD_ERR_RANGE when `start >= count`, `count` exceeds `offsets.length` or
 *   `lengths.length`, `result` is empty, `dstOff + 12 > dstEnd`, `dstEnd > dst.length`,
 *   or an examined frame lies outside `pool` or overlaps the output region (a frame after
 *   a run of two or more that fails these checks just ends the run).
 */
export function groFrames(
  pool: Uint8Array,
  offsets: Uint32Array,
  lengths: Uint32Array,
  start: number,
  count: number,
  dst: Uint8Array,
  dstOff: number,
  dstEnd: number,
  result: Uint32Array,
): number {
  return (binding ?? bind()).groFrames(pool, offsets, lengths, start, count, dst, dstOff, dstEnd, result);
}
