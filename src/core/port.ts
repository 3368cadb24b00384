/**
 * Port: where frames enter and leave a tapnet process (a TAP, an existing interface
 * through libpcap, later a tunnel underlay). A port receives into its own region of
 * the PacketPool and hands each wake-up's frames to the engine as one Batch; frames
 * to send are queued on its TxQueue during a pass and written at the end of the pass
 * with one call (flush).
 *
 * Counters, in the spirit of `ip -s link`: rx/tx frames and bytes, rxDrops (frames
 * that came in and were dropped by the dataplane, for any reason) and txDrops (queue
 * full or refused by the device).
 *
 * On a node with offloads, a port whose device takes no virtio-net header gets a
 * TxOffload (the graph builder installs the software one, src/io/soft-offload.ts):
 * its received frames get a zeroed header in front, and flush() hands the queue to
 * the TxOffload, which finishes super-frames and partial checksums before transmit()
 * sees them.
 */
import { Batch, type FrameList, TxQueue } from "./batch.js";
import type { PacketPool } from "./pool.js";
import type { ImpairStage } from "./impair.js";
import { VNET_HDR_LEN, vnetClear, vnetGetGsoSize, vnetIsGso } from "../wire/vnet.js";

/** A consumer of the frames crossing a port (a capture session). */
export interface FrameTap {
  /** dir: 0 = received on the port, 1 = sent out of the port. */
  frame(port: Port, dir: 0 | 1, buf: Buffer, off: number, len: number): void;
}

/** `ip -s link`'s counters, as `show ports` and `show stats` print them. */
export type PortCounters = Record<"rxFrames" | "rxBytes" | "rxDrops" | "txFrames" | "txBytes" | "txDrops", number>;

export type RxHandler = (port: Port, frames: FrameList) => void;

export const DEFAULT_BATCH = 256;
export const DEFAULT_SLOT = 2048;
/** Free bytes before each received frame, so an 802.1Q tag can be pushed in place. */
export const HEADROOM = 64;

/** Writes a list of frames out of the port (shows them to taps, transmits, counts). */
export type TxWriter = (pool: Buffer, q: TxQueue) => void;

/**
 * What a port's flush() hands its queue to when the frames carry offloads the device
 * cannot take (TSO super-frames, partial checksums): it resolves them and writes
 * the wire frames through `write`, as one list or several.
 */
export interface TxOffload {
  /** Pool bytes it needs (a staging area for segments); the engine reserves them. */
  readonly regionBytes: number;
  /** Where those bytes are, once the pool exists (before open()). */
  attach(base: number): void;
  /** Resolves and writes q[0..count); returns how many frames it dropped (malformed). */
  flush(pool: Buffer, q: TxQueue, write: TxWriter): number;
  /** Its counters, for `show stats` (offloads). */
  counters(): Record<string, number>;
}

export abstract class Port {
  abstract readonly kind: string;
  index = -1;
  rxFrames = 0;
  rxBytes = 0;
  rxDrops = 0;
  txFrames = 0;
  txBytes = 0;
  txDrops = 0;
  txq: TxQueue;
  readonly rx: Batch;
  taps: FrameTap[] = [];
  protected onRx: RxHandler | null = null;
  /**
   * Offloads on: frames in the pool carry a virtio-net header in the VNET_HDR_LEN bytes
   * before them. Set by the engine before open().
   */
  offload = false;
  /** Taken out of its engine while the node runs (its index may go to another port). */
  removed = false;
  /**
   * Administratively up (`tapnet link set PORT down` clears it): a port that is down
   * passes nothing — what it receives and what is queued for it are dropped and counted.
   */
  adminUp = true;
  /**
   * Resolves offloads the device cannot take, before transmit(); with one, received
   * frames get a zeroed virtio-net header. Installed by the graph builder.
   */
  txOffload: TxOffload | null = null;
  private readonly writeQueue: TxWriter = (pool, q) => this.write(pool, q);
  /**
   * Link impairments (src/core/impair.ts) on what leaves (out) and what arrives (in);
   * null: none, and the paths are the plain ones. Set by Engine.setImpairment.
   */
  impairOut: ImpairStage | null = null;
  impairIn: ImpairStage | null = null;
  /** Frames an egress stage releases, written as one list. */
  private impairTx: TxQueue | null = null;

  constructor(
    readonly name: string,
    readonly batchSize = DEFAULT_BATCH,
    readonly slotSize = DEFAULT_SLOT,
  ) {
    this.rx = new Batch(batchSize);
    // A pass can queue at most one batch of frames per ingress port on one egress
    // port; four batches of room absorbs floods from several ports in one tick.
    this.txq = new TxQueue(batchSize * 4);
  }

  /** Bytes this port needs in the pool for receiving. */
  rxRegionBytes(): number {
    return this.batchSize * this.slotSize;
  }

  /**
   * The device itself reads and writes virtio-net headers (a TAP with IFF_VNET_HDR), or
   * the port handles them (segmenting for its underlay). Ports that return false get a
   * TxOffload on a node with offloads: their received frames get a zeroed header, and
   * TSO super-frames / partial checksums are resolved before transmit() sees them.
   */
  get deviceOffload(): boolean {
    return false;
  }

  /**
   * Offload counters for `show stats`: the TxOffload's by default; port kinds with
   * offloads of their own (a TAP's egress GRO) report theirs. Null when none.
   */
  offloadCounters(): Record<string, number> | null {
    return this.txOffload === null ? null : this.txOffload.counters();
  }

  /**
   * For a port with no ARP behind it (an IPIP tunnel): the MAC a router writes for next
   * hop `addr` so the port knows where to send (static neighbour entries). Null: ARP.
   */
  nextHopMac(_addr: number): number | null {
    return null;
  }

  /**
   * For traces: what this port does to a frame it is about to send, beyond writing it
   * (a tunnel's outer headers). Null: it writes the frame as it is.
   */
  traceTx(_buf: Buffer, _off: number, _len: number): string | null {
    return null;
  }

  /** Opens the device and starts delivering batches to `onRx`. */
  abstract open(pool: PacketPool, onRx: RxHandler): void;
  abstract close(): void;
  /**
   * The port leaves the node for good (removed at runtime), as opposed to close() when
   * the process ends: a device made to outlive the process (a persistent TAP) goes too.
   */
  dispose(): void {
    this.close();
  }
  /**
   * Writes txq[0..count) from the pool; returns how many the device accepted and
   * sets the length of each refused frame to 0.
   */
  protected abstract transmit(pool: Buffer, q: TxQueue): number;
  /** MAC and MTU as the device reports them (0 when unknown). */
  abstract info(): { mac: number; mtu: number; ifname: string };

  /**
   * Hands frames the port has put in the pool to the engine as one batch (one pass):
   * counts them, shows them to capture taps, runs the pass. Every device port kind
   * receives through here.
   */
  protected deliverBatch(pool: Buffer, frames: FrameList): void {
    const onRx = this.onRx;
    if (frames.count === 0 || onRx === null) return;
    this.received(pool, frames);
    onRx(this, frames);
  }

  /** Counts a received batch and shows it to capture taps. */
  protected received(pool: Buffer, batch: FrameList): void {
    const n = batch.count;
    const lengths = batch.lengths;
    let bytes = 0;
    for (let i = 0; i < n; i++) bytes += lengths[i];
    this.rxFrames += n;
    this.rxBytes += bytes;
    if (this.txOffload !== null) {
      // Elements read the header in front of every frame: a plain frame has a zero one.
      const offsets = batch.offsets;
      for (let i = 0; i < n; i++) vnetClear(pool, offsets[i]);
    }
    if (this.taps.length !== 0) {
      const offsets = batch.offsets;
      for (const t of this.taps) {
        for (let i = 0; i < n; i++) t.frame(this, 0, pool, offsets[i], lengths[i]);
      }
    }
  }

  /** Writes what the pass queued; one device call per port per pass (an impaired port: into its delay queue). */
  flush(pool: Buffer, now = 0): void {
    const q = this.txq;
    const n = q.count;
    if (n === 0 && q.drops === 0) return;
    if (!this.adminUp) {
      this.txDrops += n + q.drops;
      q.count = 0;
      q.drops = 0;
      return;
    }
    if (n !== 0) {
      const st = this.impairOut;
      if (st !== null) this.txDrops += impairOffer(st, pool, q, this.offload, now);
      else if (this.txOffload !== null) this.txDrops += this.txOffload.flush(pool, q, this.writeQueue);
      else this.write(pool, q);
    }
    this.txDrops += q.drops;
    q.drops = 0;
    q.count = 0;
  }

  /** Writes what the egress stage has due at `now` (the engine's impairment timer, or right after a flush). */
  releaseImpaired(pool: Buffer, now: number): void {
    const st = this.impairOut;
    if (st === null) return;
    let q = this.impairTx;
    if (q === null) q = this.impairTx = new TxQueue(this.txq.capacity);
    for (;;) {
      q.count = 0;
      const n = st.queue.popDue(now, q, q.capacity);
      if (n === 0) break;
      st.c.released += n;
      if (!this.adminUp) this.txDrops += n;
      else if (this.txOffload !== null) this.txDrops += this.txOffload.flush(pool, q, this.writeQueue);
      else this.write(pool, q);
      q.count = 0;
      st.queue.reclaim();
      if (n < q.capacity) break;
    }
  }

  /** Shows q to capture taps, transmits it and counts. */
  private write(pool: Buffer, q: TxQueue): void {
    const n = q.count;
    if (this.taps.length !== 0) {
      for (const t of this.taps) {
        for (let i = 0; i < n; i++) t.frame(this, 1, pool, q.offsets[i], q.lengths[i]);
      }
    }
    const sent = this.transmit(pool, q);
    // transmit() zeroes the length of every frame the device refused.
    let bytes = 0;
    for (let i = 0; i < n; i++) bytes += q.lengths[i];
    this.txBytes += bytes;
    this.txFrames += sent;
    this.txDrops += n - sent;
  }

  counters(): PortCounters {
    return {
      rxFrames: this.rxFrames,
      rxBytes: this.rxBytes,
      rxDrops: this.rxDrops,
      txFrames: this.txFrames,
      txBytes: this.txBytes,
      txDrops: this.txDrops,
    };
  }
}

/**
 * Hands every frame of `frames` to an impairment stage; returns the frames it dropped
 * (loss, overflow). With offloads the virtio-net header before each frame goes along,
 * and a TSO super-frame counts on the wire as the segments it stands for.
 */
export function impairOffer(st: ImpairStage, pool: Buffer, frames: FrameList, offload: boolean, now: number): number {
  const n = frames.count;
  const offsets = frames.offsets;
  const lengths = frames.lengths;
  let drops = 0;
  for (let i = 0; i < n; i++) {
    const off = offsets[i];
    const len = lengths[i];
    let wire = len;
    if (offload && vnetIsGso(pool, off)) {
      // Headers up to the payload repeat in every segment: Ethernet, IPv4, TCP/UDP.
      const gso = vnetGetGsoSize(pool, off);
      const hdr = wireHeaderLen(pool, off, len);
      if (gso > 0 && hdr > 0 && len > hdr) wire = len + (Math.ceil((len - hdr) / gso) - 1) * hdr;
    }
    drops += st.offer(pool, off, len, offload ? VNET_HDR_LEN : 0, wire, now);
  }
  return drops;
}

/** Ethernet (+ one tag) + IPv4 + TCP/UDP header bytes of a frame; 0 when it is none of those. */
function wireHeaderLen(b: Buffer, off: number, len: number): number {
  let l3 = 14;
  let et = (b[off + 12] << 8) | b[off + 13];
  if (et === 0x8100) {
    et = (b[off + 16] << 8) | b[off + 17];
    l3 = 18;
  }
  if (et !== 0x0800 || len < l3 + 20) return 0;
  const l4 = l3 + ((b[off + l3] & 0x0f) << 2);
  const proto = b[off + l3 + 9];
  if (proto === 17) return l4 + 8;
  if (proto !== 6 || len < l4 + 20) return 0;
  return l4 + ((b[off + l4 + 12] >>> 4) << 2);
}
