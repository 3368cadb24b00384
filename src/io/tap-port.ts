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
import { openTap, type TapHandle } from "./native.js";

export interface TapPortOptions {
  batchSize?: number;
  slotSize?: number;
  vnetHdr?: boolean;
}

export class TapPort extends Port {
  readonly kind = "tap";
  private handle: TapHandle | null = null;
  readonly vnetHdr: boolean;

  constructor(
    name: string,
    readonly ifname: string,
    opts: TapPortOptions = {},
  ) {
    super(name, opts.batchSize ?? DEFAULT_BATCH, opts.slotSize ?? DEFAULT_SLOT);
    this.vnetHdr = opts.vnetHdr ?? false;
  }

  open(pool: PacketPool, onRx: RxHandler): void {
    const base = pool.region(this.rxRegionBytes(), `port ${this.name} receive slots`);
    const rx = this.rx;
    const buf = pool.buf;
    this.onRx = onRx;
    this.handle = openTap({
      name: this.ifname,
      vnetHdr: this.vnetHdr,
      pool: buf,
      rxBase: base,
      slots: this.batchSize,
      slotSize: this.slotSize,
      headroom: HEADROOM,
      offsets: rx.offsets,
      lengths: rx.lengths,
      onBatch: (count: number) => {
        rx.count = count;
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
    return h.write(pool, q.offsets, q.lengths, q.count);
  }

  info(): { mac: number; mtu: number; ifname: string } {
    const h = this.handle;
    return { mac: h ? h.mac : 0, mtu: h ? h.mtu : 0, ifname: this.ifname };
  }

  deviceStats(): Record<string, number> {
    return this.handle ? { ...this.handle.stats() } : {};
  }
}
