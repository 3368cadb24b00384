// The virtio-net header (struct virtio_net_hdr_v1, virtio 1.1 section 5.1.6), which a TAP
// opened with IFF_VNET_HDR reads and writes in front of every frame. With offloads on, a
// node keeps it in the VNET_HDR_LEN bytes before each frame in the packet pool, so a TSO
// super-frame or a frame with a pending checksum carries what the kernel needs to finish
// it. Every offset argument here is the offset of the FRAME the header precedes.
//
//   frame - 12: flags (u8) | gso_type (u8) | hdr_len (le16) | gso_size (le16)
//               | csum_start (le16) | csum_offset (le16) | num_buffers (le16)
//
// The 16-bit fields are little-endian (virtio 1.x is little-endian on every host).

/** Bytes of the header in front of each frame (with num_buffers: TUNSETVNETHDRSZ 12). */
export const VNET_HDR_LEN = 12;

/** flags: the checksum at csum_start + csum_offset still has to be computed. */
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
/** flags: the checksum has been validated (receive side). */
export const VIRTIO_NET_HDR_F_DATA_VALID = 2;

export const VIRTIO_NET_HDR_GSO_NONE = 0;
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
export const VIRTIO_NET_HDR_GSO_TCPV6 = 4;
export const VIRTIO_NET_HDR_GSO_UDP_L4 = 5;
export const VIRTIO_NET_HDR_GSO_ECN = 0x80;

const FLAGS = -12;
const GSO_TYPE = -11;
/** hdr_len: length of the headers the segments repeat (Linux fills it with the linear length). */
const HDR_LEN = -10;
const GSO_SIZE = -8;
const CSUM_START = -6;
const CSUM_OFFSET = -4;

function le16(buf: Uint8Array, at: number): number {
  return buf[at] | (buf[at + 1] << 8);
}

function setLe16(buf: Uint8Array, at: number, v: number): void {
  buf[at] = v;
  buf[at + 1] = v >>> 8;
}

export function vnetGetFlags(buf: Uint8Array, frameOff: number): number {
  return buf[frameOff + FLAGS];
}
export function vnetSetFlags(buf: Uint8Array, frameOff: number, flags: number): void {
  buf[frameOff + FLAGS] = flags;
}
/** The frame's L4 checksum is a partial sum the last hop completes (Linux CHECKSUM_PARTIAL). */
export function vnetNeedsCsum(buf: Uint8Array, frameOff: number): boolean {
  return (buf[frameOff + FLAGS] & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0;
}
/** A segmentation-offload super-frame (gso_type other than NONE): one unit of up to 64 KiB. */
export function vnetIsGso(buf: Uint8Array, frameOff: number): boolean {
  return buf[frameOff + GSO_TYPE] !== VIRTIO_NET_HDR_GSO_NONE;
}
/** Payload bytes per segment (the MSS for TCP). */
export function vnetGetGsoSize(buf: Uint8Array, frameOff: number): number {
  return le16(buf, frameOff + GSO_SIZE);
}
/** Where, from the start of the frame, the checksummed data begins (the L4 header). */
export function vnetGetCsumStart(buf: Uint8Array, frameOff: number): number {
  return le16(buf, frameOff + CSUM_START);
}
/** Where, from csum_start, the checksum field is. */
export function vnetGetCsumOffset(buf: Uint8Array, frameOff: number): number {
  return le16(buf, frameOff + CSUM_OFFSET);
}

/** A header that asks nothing: a plain, complete frame. */
export function vnetClear(buf: Uint8Array, frameOff: number): void {
  for (let i = frameOff - VNET_HDR_LEN; i < frameOff; i++) buf[i] = 0;
}

/** Copies the header of the frame at `fromFrame` in front of the frame at `toFrame`. */
export function vnetCopy(buf: Uint8Array, fromFrame: number, toFrame: number): void {
  if (fromFrame === toFrame) return;
  const d = toFrame - fromFrame;
  if (d > 0) for (let i = -1; i >= -VNET_HDR_LEN; i--) buf[fromFrame + i + d] = buf[fromFrame + i];
  else for (let i = -VNET_HDR_LEN; i < 0; i++) buf[fromFrame + i + d] = buf[fromFrame + i];
}

/**
 * Copies the header of the frame at `fromFrame` in `from` in front of the frame at
 * `toFrame` in `to`: two buffers (a header saved while its frame waits elsewhere is a
 * VNET_HDR_LEN-byte buffer whose "frame" is at VNET_HDR_LEN).
 */
export function vnetCopyAcross(from: Uint8Array, fromFrame: number, to: Uint8Array, toFrame: number): void {
  for (let i = -VNET_HDR_LEN; i < 0; i++) to[toFrame + i] = from[fromFrame + i];
}

/**
 * The frame's L3 header moved by `delta` bytes (an 802.1Q tag pushed: +4, popped: -4):
 * csum_start (when a checksum is pending) and hdr_len (of a super-frame) follow it.
 */
export function vnetShiftL3(buf: Uint8Array, frameOff: number, delta: number): void {
  if ((buf[frameOff + FLAGS] & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0) {
    setLe16(buf, frameOff + CSUM_START, le16(buf, frameOff + CSUM_START) + delta);
  }
  if (buf[frameOff + GSO_TYPE] !== VIRTIO_NET_HDR_GSO_NONE) setLe16(buf, frameOff + HDR_LEN, le16(buf, frameOff + HDR_LEN) + delta);
}
