/**
 * MemoryPort: a port with no device behind it, for tests and benchmarks.
 *
 * inject() plays the device's receive side: it copies frames into the port's receive
 * region (slot i at rxBase + i*slotSize + HEADROOM, as a TAP port lays them out) and
 * runs one pass per batchSize frames, synchronously. transmit() plays the device's
 * send side: it copies every frame it accepts into `sent`, which tests read.
 *
 * Options: batchSize, slotSize, mac and mtu (what info() reports), ifname,
 * `refuse(i)`, called for the i-th frame of each flush, to make the "device" refuse
 * frames (they get length 0 and count as txDrops, per the contract of Port.transmit),
 * keepSent: false for benchmarks, where transmit() only counts (no copy, no
 * growing `sent`), and offload: the port plays a TAP with IFF_VNET_HDR — each buffer
 * given to inject() starts with the 12-byte virtio-net header, which lands in front of
 * the frame (super-frames and partial checksums reach the elements as a TAP hands them
 * over), and frames are sent with their header as they are (no software offloads).
 *
 * It is a test helper: misuse (injecting while closed, a frame that does not fit a
 * slot, injecting from inside a pass over this port's own region) throws.
 */
import type { TxQueue } from "../core/batch.js";
import type { PacketPool } from "../core/pool.js";
import { HEADROOM, Port, type RxHandler } from "../core/port.js";
import { VNET_HDR_LEN } from "../wire/vnet.js";

export interface MemoryPortOptions {
  batchSize?: number;
  slotSize?: number;
  /** 48-bit MAC that info() reports (default 0). */
  mac?: number;
  /** MTU that info() reports (default 1500). */
  mtu?: number;
  /** Interface name that info() reports (default: the port's name). */
  ifname?: string;
  /** Returns true to refuse the i-th frame of a flush. */
  refuse?: (i: number) => boolean;
  /** Keep a copy of every transmitted frame in `sent` (default true). */
  keepSent?: boolean;
  /** The port plays a TAP with IFF_VNET_HDR: injected buffers start with a 12-byte virtio-net header. */
  offload?: boolean;
}

export class MemoryPort extends Port {
  readonly kind = "memory";
  /** Copies of the frames the port accepted for transmission, in order. */
  readonly sent: Buffer[] = [];
  refuse: ((i: number) => boolean) | null;
  keepSent: boolean;
  mac: number;
  mtu: number;
  readonly ifname: string;
  /** `offload`: buffers given to inject() and frames sent carry virtio-net headers. */
  private readonly headers: boolean;
  private pool: PacketPool | null = null;
  private rxBase = 0;
  private delivering = false;

  constructor(name: string, opts: MemoryPortOptions = {}) {
    super(name, opts.batchSize, opts.slotSize);
    this.refuse = opts.refuse ?? null;
    this.keepSent = opts.keepSent ?? true;
    this.mac = opts.mac ?? 0;
    this.mtu = opts.mtu ?? 1500;
    this.ifname = opts.ifname ?? name;
    this.headers = opts.offload ?? false;
  }

  /** With `offload` the port itself carries the virtio-net headers, as a TAP does. */
  override get deviceOffload(): boolean {
    return this.headers;
  }

  /** Largest frame inject() accepts. */
  get room(): number {
    return this.slotSize - HEADROOM;
  }

  get isOpen(): boolean {
    return this.onRx !== null;
  }

  open(pool: PacketPool, onRx: RxHandler): void {
    if (this.onRx !== null) throw new Error(`memory port '${this.name}' is already open`);
    this.rxBase = pool.region(this.rxRegionBytes(), `memory port '${this.name}' rx`);
    this.pool = pool;
    this.onRx = onRx;
  }

  close(): void {
    this.onRx = null;
    this.pool = null;
  }

  /**
   * Delivers `frames` as received frames: batches of at most batchSize, each one
   * pass through the engine before the next is copied in.
   */
  inject(frames: Buffer[]): void {
    const onRx = this.onRx;
    const pool = this.pool;
    if (onRx === null || pool === null) {
      throw new Error(`memory port '${this.name}' is not open`);
    }
    if (this.delivering) {
      throw new Error(`memory port '${this.name}': inject() from inside a pass over its own frames`);
    }
    const room = this.room;
    const hdr = this.headers ? VNET_HDR_LEN : 0;
    for (let i = 0; i < frames.length; i++) {
      if (frames[i].length < hdr) {
        throw new Error(`memory port '${this.name}': buffer ${i} is shorter than its virtio-net header`);
      }
      if (frames[i].length - hdr > room) {
        throw new Error(`memory port '${this.name}': frame ${i} is ${frames[i].length - hdr} bytes, a slot holds ${room}`);
      }
    }
    const buf = pool.buf;
    const rx = this.rx;
    this.delivering = true;
    try {
      for (let start = 0; start < frames.length; start += this.batchSize) {
        const n = Math.min(this.batchSize, frames.length - start);
        for (let i = 0; i < n; i++) {
          const f = frames[start + i];
          const off = this.rxBase + i * this.slotSize + HEADROOM;
          f.copy(buf, off - hdr);
          rx.offsets[i] = off;
          rx.lengths[i] = f.length - hdr;
        }
        rx.count = n;
        this.received(buf, rx);
        onRx(this, rx);
      }
    } finally {
      this.delivering = false;
    }
  }

  protected transmit(pool: Buffer, q: TxQueue): number {
    const n = q.count;
    let sent = 0;
    for (let i = 0; i < n; i++) {
      if (this.refuse?.(i)) {
        q.lengths[i] = 0;
        continue;
      }
      if (this.keepSent) {
        const off = q.offsets[i];
        this.sent.push(Buffer.from(pool.subarray(off, off + q.lengths[i])));
      }
      sent++;
    }
    return sent;
  }

  info(): { mac: number; mtu: number; ifname: string } {
    return { mac: this.mac, mtu: this.mtu, ifname: this.ifname };
  }
}
