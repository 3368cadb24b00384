/**
 * TapPort — a Linux TAP device opened through tapnet's native addon.
 *
 * The addon drains up to `batchSize` frames per wake-up straight into this port's
 * region of the packet pool and calls back once per batch; transmit hands the whole
 * TxQueue to one native call. The device is created if missing and disappears when
 * the process exits (it is not persistent), which is what makes `lab down` work
 * after a node was killed with -9.
 */
import type { TxQueue } from "../core/batch.js";
import type { PacketPool } from "../core/pool.js";
import { DEFAULT_BATCH, DEFAULT_SLOT, HEADROOM, Port, type RxHandler } from "../core/port.js";
import { openTap, type TapHandle, VNET_HDR_LEN } from "./native.js";

export interface TapPortOptions {
  batchSize?: number;
  slotSize?: number;
  vnetHdr?: boolean;
}

/** Slot for a TAP with offloads: a 64 KiB TSO super-frame, its virtio-net header, headroom. */
export const VNET_SLOT = 65536 + 256;
/** Batch for such a TAP: 64 slots of 64 KiB are 4 MiB of pool per port. */
export const VNET_BATCH = 64;

export class TapPort extends Port {
  readonly kind = "tap";
  private handle: TapHandle | null = null;
  /**
   * With IFF_VNET_HDR (and TSO/checksum offloads), each frame travels with its 12-byte
   * virtio-net header, which sits in the 12 bytes before the frame in the pool:
   * elements see plain Ethernet at the frame's offset, and a TSO super-frame (up to
   * 64 KiB) goes through as one unit; the kernel segments it at the last hop.
   */
  readonly vnetHdr: boolean;

  constructor(
    name: string,
    readonly ifname: string,
    opts: TapPortOptions = {},
  ) {
    const vnet = opts.vnetHdr ?? false;
    super(name, opts.batchSize ?? (vnet ? VNET_BATCH : DEFAULT_BATCH), opts.slotSize ?? (vnet ? VNET_SLOT : DEFAULT_SLOT));
    this.vnetHdr = vnet;
  }

  override get vnetNative(): boolean {
    return this.vnetHdr;
  }

  open(pool: PacketPool, onRx: RxHandler): void {
    const base = pool.region(this.rxRegionBytes(), `port ${this.name} receive slots`);
    const rx = this.rx;
    const buf = pool.buf;
    const vnet = this.vnetHdr;
    this.onRx = onRx;
    this.handle = openTap({
      name: this.ifname,
      vnetHdr: vnet,
      pool: buf,
      rxBase: base,
      slots: this.batchSize,
      slotSize: this.slotSize,
      // The kernel writes header + frame; the frame itself starts at HEADROOM.
      headroom: vnet ? HEADROOM - VNET_HDR_LEN : HEADROOM,
      offsets: rx.offsets,
      lengths: rx.lengths,
      onBatch: (count: number) => {
        rx.count = count;
        if (vnet) {
          const offsets = rx.offsets;
          const lengths = rx.lengths;
          for (let i = 0; i < count; i++) {
            offsets[i] += VNET_HDR_LEN;
            lengths[i] -= VNET_HDR_LEN;
          }
        }
        this.deliverBatch(buf, rx);
      },
    });
    this.handle.start();
  }

  close(): void {
    if (this.handle) {
      this.handle.close();
      this.handle = null;
    }
  }

  protected transmit(pool: Buffer, q: TxQueue): number {
    const h = this.handle;
    if (h === null) {
      q.lengths.fill(0, 0, q.count);
      return 0;
    }
    if (!this.vnetHdr) return h.write(pool, q.offsets, q.lengths, q.count);
    // Hand the kernel each frame with the virtio-net header in front of it.
    const n = q.count;
    const offsets = q.offsets;
    const lengths = q.lengths;
    for (let i = 0; i < n; i++) {
      offsets[i] -= VNET_HDR_LEN;
      lengths[i] += VNET_HDR_LEN;
    }
    const sent = h.write(pool, offsets, lengths, n);
    for (let i = 0; i < n; i++) if (lengths[i] !== 0) lengths[i] -= VNET_HDR_LEN;
    return sent;
  }

  info(): { mac: number; mtu: number; ifname: string } {
    const h = this.handle;
    return { mac: h ? h.mac : 0, mtu: h ? h.mtu : 0, ifname: this.ifname };
  }

  deviceStats(): Record<string, number> {
    return this.handle ? { ...this.handle.stats() } : {};
  }
}
