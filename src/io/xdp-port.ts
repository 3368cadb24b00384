/**
 * XdpPort: an existing interface (a veth end) as a tapnet port through an AF_XDP socket
 * (native/xsk.c): frames cross the kernel in shared rings instead of one system call each.
 *
 * Receive. An XDP program on the interface redirects every frame it receives to the
 * socket; the kernel copies it (copy mode: a veth has no zero-copy) into a chunk of the
 * UMEM, which is a region of the node's packet pool, and the engine reads it there. One
 * wake-up is up to 8 batches of `batchSize` frames; a batch's chunks go back to the
 * kernel when the pass returns. The node's own kernel never sees what the host sends.
 *
 * Transmit. Each frame is copied into a free transmit chunk of the UMEM and the batch is
 * posted on the tx ring; one sendto() kicks the kernel per 32 frames (its copy-mode
 * budget). A frame that finds no free chunk is dropped (txDrops; `xdp.txNoFrame`).
 *
 * Config: `mode` native (XDP in the veth driver), generic (skb mode) or auto (native,
 * else generic); `rxFrames`, `txFrames`, chunks (powers of two, default 4096 and 1024: a
 * veth does not push back on its sender as a full TAP does, so the receive ring is what
 * absorbs a node that was not scheduled for a few milliseconds; 1024 lost frames at
 * 50 kpps); `frameSize`, the chunk size: 2048 bytes (an MTU up to 1710), or 4096 (a page:
 * XDP's limit).
 *
 * Offloads. AF_XDP carries no checksum or segmentation metadata: the host must send
 * complete frames (`ethtool -K eth0 tx off tso off gso off`, which `lab up` does for a
 * `link: veth-xdp` host); a frame longer than a chunk's room is dropped by the kernel
 * (`xdp.rxDropped`). Ports without device offloads get their transmitted frames
 * finished (segmented, checksummed) by the node, so what this port sends is complete.
 *
 * Counters: the Port counters, the handle's (rxMessages, batches, wakeups, txErrors) and
 * the kernel's (XDP_STATISTICS: rxDropped, rxRingFull, fillRingEmpty...) under `xdp`.
 * The socket, the rings and the XDP program are made at open(), before a node's seccomp
 * filter (which refuses bpf() and AF_XDP sockets): such a port cannot be added at run time.
 */
import { readdirSync, readFileSync } from "node:fs";
import type { TxQueue } from "../core/batch.js";
import type { PacketPool } from "../core/pool.js";
import { HEADROOM, Port, type RxHandler } from "../core/port.js";
import { type HandleStats, loadNative } from "./native.js";
import { checkIfname, parseMac } from "./pcap-port.js";

export type XdpMode = "auto" | "native" | "generic";

export interface XdpPortOptions {
  batchSize?: number;
  mode?: XdpMode;
  rxFrames?: number;
  txFrames?: number;
  /** UMEM chunk size: 2048 (default) or 4096. */
  frameSize?: 2048 | 4096;
}

/** The kernel's and this side's counters of an AF_XDP socket. */
export interface XskKernelStats {
  rxDropped: number;
  rxInvalidDescs: number;
  txInvalidDescs: number;
  rxRingFull: number;
  fillRingEmpty: number;
  txRingEmpty: number;
  txKicks: number;
  txNoFrame: number;
  /** Kicks that left descriptors on the tx ring for the next one. */
  txLeft: number;
  /** Descriptors on the tx ring now. */
  txQueued: number;
}

/** What native/xsk.c's openXsk() returns. */
export interface XskHandle {
  readonly fd: number;
  /** Offset of the UMEM (page-aligned) in the pool. */
  readonly umemOffset: number;
  readonly mode: "native" | "generic";
  /** Largest frame a receive chunk holds. */
  readonly frameRoom: number;
  readonly ifindex: number;
  start(): void;
  stop(): void;
  close(): void;
  send(pool: Buffer, offsets: Uint32Array, lengths: Uint32Array, count: number): number;
  stats(): HandleStats & { rxBadDescs: number };
  xdpStats(): XskKernelStats;
}

interface XskBinding {
  openXsk(opts: {
    ifname: string;
    pool: Buffer;
    region: number;
    regionBytes: number;
    frameSize: number;
    rxFrames: number;
    txFrames: number;
    headroom: number;
    mode: number;
    slots: number;
    offsets: Uint32Array;
    lengths: Uint32Array;
    onBatch: (count: number) => void;
  }): XskHandle;
}

const MODES: Record<XdpMode, number> = { auto: 0, native: 1, generic: 2 };
/** The kernel's headroom in front of a received frame (XDP_PACKET_HEADROOM). */
const XDP_HEADROOM = 256;
const PAGE = 4096;

export class XdpPort extends Port {
  readonly kind = "xdp";
  readonly mode: XdpMode;
  /** UMEM chunks for receiving and for sending. */
  readonly rxChunks: number;
  readonly txChunks: number;
  /** UMEM chunk size. */
  readonly frameSize: number;
  private handle: XskHandle | null = null;
  private mac = 0;
  private mtu = 0;

  constructor(
    name: string,
    readonly ifname: string,
    opts: XdpPortOptions = {},
  ) {
    super(name, opts.batchSize);
    checkIfname(`xdp port '${name}'`, ifname);
    this.mode = opts.mode ?? "auto";
    if (!(this.mode in MODES)) throw new RangeError(`xdp port '${name}': mode must be auto, native or generic, got '${this.mode}'`);
    this.frameSize = opts.frameSize ?? 2048;
    if (this.frameSize !== 2048 && this.frameSize !== PAGE) throw new RangeError(`xdp port '${name}': frameSize must be 2048 or 4096, got ${this.frameSize}`);
    this.rxChunks = opts.rxFrames ?? 4096;
    this.txChunks = opts.txFrames ?? 1024;
    for (const [k, v] of [
      ["rxFrames", this.rxChunks],
      ["txFrames", this.txChunks],
    ] as const) {
      if (!Number.isInteger(v) || v < 64 || v > 16384 || (v & (v - 1)) !== 0) {
        throw new RangeError(`xdp port '${name}': ${k} must be a power of two from 64 to 16384, got ${v}`);
      }
    }
  }

  get isOpen(): boolean {
    return this.handle !== null;
  }

  /** The UMEM and a page to align it. */
  override rxRegionBytes(): number {
    return (this.rxChunks + this.txChunks) * this.frameSize + PAGE;
  }

  open(pool: PacketPool, onRx: RxHandler): void {
    if (this.handle !== null) throw new Error(`xdp port '${this.name}' is already open`);
    const sys = `/sys/class/net/${this.ifname}`;
    let rxQueues: number;
    try {
      this.mac = parseMac(readFileSync(`${sys}/address`, "utf8"));
      this.mtu = parseInt(readFileSync(`${sys}/mtu`, "utf8"), 10) || 0;
      rxQueues = readdirSync(`${sys}/queues`).filter((q) => q.startsWith("rx-")).length;
    } catch {
      throw new Error(`xdp port '${this.name}': no interface '${this.ifname}' in this network namespace`);
    }
    if (rxQueues > 1) {
      throw new Error(`xdp port '${this.name}': '${this.ifname}' has ${rxQueues} receive queues; an xdp port binds one (make the veth with numrxqueues 1)`);
    }
    // A frame (with a VLAN tag) behind the kernel's headroom and ours.
    if (this.mtu + 18 + XDP_HEADROOM + HEADROOM > this.frameSize) {
      throw new Error(
        `xdp port '${this.name}': '${this.ifname}' has MTU ${this.mtu}, too large for ${this.frameSize}-byte chunks (frameSize 4096 takes up to ${PAGE - 18 - XDP_HEADROOM - HEADROOM})`,
      );
    }
    const base = pool.region(this.rxRegionBytes(), `xdp port '${this.name}' UMEM`);
    const rx = this.rx;
    const buf = pool.buf;
    this.onRx = onRx;
    const binding = loadNative() as unknown as XskBinding;
    try {
      this.handle = binding.openXsk({
        ifname: this.ifname,
        pool: buf,
        region: base,
        regionBytes: this.rxRegionBytes(),
        frameSize: this.frameSize,
        rxFrames: this.rxChunks,
        txFrames: this.txChunks,
        headroom: HEADROOM,
        mode: MODES[this.mode],
        slots: this.batchSize,
        offsets: rx.offsets,
        lengths: rx.lengths,
        onBatch: (count: number) => {
          rx.count = count;
          this.deliverBatch(buf, rx);
        },
      });
    } catch (e) {
      this.onRx = null;
      throw new Error(`xdp port '${this.name}': ${(e as Error).message}`);
    }
    this.handle.start();
  }

  close(): void {
    const h = this.handle;
    if (h === null) return;
    this.handle = null;
    this.onRx = null;
    h.close();
  }

  protected transmit(pool: Buffer, q: TxQueue): number {
    const h = this.handle;
    if (h === null) {
      for (let i = 0; i < q.count; i++) q.lengths[i] = 0;
      return 0;
    }
    return h.send(pool, q.offsets, q.lengths, q.count);
  }

  /** The socket's counters, for `show ports`: the handle's and the kernel's. */
  xdpCounters(): Record<string, number | string> {
    const h = this.handle;
    if (h === null) return {};
    return { mode: h.mode, frameSize: this.frameSize, ...h.stats(), ...h.xdpStats() };
  }

  info(): { mac: number; mtu: number; ifname: string } {
    return { mac: this.mac, mtu: this.mtu, ifname: this.ifname };
  }
}
