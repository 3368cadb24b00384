import { describe, expect, it } from "vitest";
import { VNET_HDR_LEN, vnetCopyAcross, vnetGetGsoSize, vnetNeedsCsum, vnetSetFlags, VIRTIO_NET_HDR_F_NEEDS_CSUM } from "../../src/wire/vnet.js";

describe("vnet", () => {
  it("vnetCopyAcross saves a frame's header into a buffer of its own and puts it back in front of another frame", () => {
    const pool = Buffer.alloc(200, 0xa5);
    const frame = 40;
    pool.fill(0, frame - VNET_HDR_LEN, frame);
    vnetSetFlags(pool, frame, VIRTIO_NET_HDR_F_NEEDS_CSUM);
    pool.writeUInt16LE(1448, frame - 8); // gso_size (virtio 1.1 section 5.1.6, little-endian)
    const saved = Buffer.alloc(VNET_HDR_LEN, 0xee);
    vnetCopyAcross(pool, frame, saved, VNET_HDR_LEN);
    expect(saved.equals(pool.subarray(frame - VNET_HDR_LEN, frame))).toBe(true);

    const other = Buffer.alloc(100, 0x5a);
    vnetCopyAcross(saved, VNET_HDR_LEN, other, 50);
    expect(other.subarray(50 - VNET_HDR_LEN, 50).equals(saved)).toBe(true);
    expect(vnetNeedsCsum(other, 50)).toBe(true);
    expect(vnetGetGsoSize(other, 50)).toBe(1448);
    // Nothing outside the header's 12 bytes is touched.
    expect(other.subarray(0, 50 - VNET_HDR_LEN).every((b) => b === 0x5a)).toBe(true);
    expect(other.subarray(50).every((b) => b === 0x5a)).toBe(true);
  });
});
