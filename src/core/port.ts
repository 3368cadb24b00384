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
 */
import { completeChecksum, gsoSegment } from "../io/offload.js";
import { Batch, type FrameList, TxQueue } from "./batch.js";
import type { PacketPool } from "./pool.js";
import { VNET_HDR_LEN } from "../wire/vnet.js";

/** A consumer of the frames crossing a port (a capture session). */
export interface FrameTap {
  /** dir: 0 = received on the port, 1 = sent out of the port. */
  frame(port: Port, dir: 0 | 1, buf: Buffer, off: number, len: number): void;
}

export interface PortCounters {
  rxFrames: number;
  rxBytes: number;
  rxDrops: number;
  txFrames: number;
  txBytes: number;
  txDrops: number;
}

export type RxHandler = (port: Port, frames: FrameList) => void;

export const DEFAULT_BATCH = 256;
export const DEFAULT_SLOT = 2048;
/** Free bytes before each received frame, so an 802.1Q tag can be pushed in place. */
export const HEADROOM = 64;
export { VNET_HDR_LEN };
/** Software offload staging: room for the segments of at least three 64 KiB super-frames. */
const SOFT_STAGE_BYTES = 256 * 1024;
/** Most segments one super-frame may be cut into (an MSS of ~64 bytes). */
const SOFT_MAX_SEGS = 1024;
/** Free bytes before each software segment (a port may build a header there). */
const SOFT_PREFIX = 32;

/**
 * Software offloads for a port whose device cannot take virtio-net headers, on a node
 * that runs with offloads: TSO super-frames are cut into segments once, here, and
 * partial checksums completed (the kernel's GSO fallback, validate_xmit_skb).
 */
class SoftOffload {
  /** Frames to write: the queue's own frames and segments in the staging area. */
  readonly q = new TxQueue(SOFT_MAX_SEGS);
  readonly segLens = new Uint32Array(SOFT_MAX_SEGS);
  segmented = 0;
  segments = 0;
  csumCompleted = 0;
  /** Super-frames or partial checksums that could not be completed (malformed headers). */
  badOffload = 0;
  constructor(
    readonly base: number,
    readonly end: number,
  ) {}
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
  private soft: SoftOffload | null = null;

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
   * the port handles them (segmenting for its underlay). Ports that return false get
   * software offloads from the Port on a node with offloads: their received frames get
   * a zeroed header, and TSO super-frames / partial checksums are resolved before
   * transmit() sees them.
   */
  get deviceOffload(): boolean {
    return false;
  }

  /** Pool bytes for software offloads (0 unless the node has offloads and the device has none). */
  softRegionBytes(): number {
    return this.offload && !this.deviceOffload ? SOFT_STAGE_BYTES : 0;
  }

  /** Gives the port its software offload staging area (engine, before open()). */
  attachSoftRegion(base: number): void {
    this.soft = new SoftOffload(base, base + SOFT_STAGE_BYTES);
  }

  /** Software offload counters, or null when the port has none. */
  softCounters(): Record<string, number> | null {
    const s = this.soft;
    if (s === null) return null;
    return { segmented: s.segmented, segments: s.segments, csumCompleted: s.csumCompleted, badOffload: s.badOffload };
  }

  /**
   * Offload counters for `show stats`: the software offloads' by default; port kinds
   * with offloads of their own (a TAP's egress GRO) report theirs. Null when none.
   */
  offloadCounters(): Record<string, number> | null {
    return this.softCounters();
  }

  /**
   * For a port with no ARP behind it (an IPIP tunnel): the MAC a router writes for next
   * hop `addr` so the port knows where to send (static neighbour entries). Null: ARP.
   */
  nextHopMac(_addr: number): number | null {
    return null;
  }

  /** Opens the device and starts delivering batches to `onRx`. */
  abstract open(pool: PacketPool, onRx: RxHandler): void;
  abstract close(): void;
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
    if (this.soft !== null) {
      // Elements read the header in front of every frame: a plain frame has a zero one.
      const offsets = batch.offsets;
      for (let i = 0; i < n; i++) {
        const h = offsets[i] - VNET_HDR_LEN;
        for (let k = 0; k < VNET_HDR_LEN; k++) pool[h + k] = 0;
      }
    }
    if (this.taps.length !== 0) {
      const offsets = batch.offsets;
      for (const t of this.taps) {
        for (let i = 0; i < n; i++) t.frame(this, 0, pool, offsets[i], lengths[i]);
      }
    }
  }

  /** Writes what the pass queued; one device call per port per pass. */
  flush(pool: Buffer): void {
    const q = this.txq;
    const n = q.count;
    if (n === 0 && q.drops === 0) return;
    if (n !== 0) {
      if (this.soft !== null) this.flushSoft(pool, q, this.soft);
      else this.write(pool, q);
    }
    this.txDrops += q.drops;
    q.drops = 0;
    q.count = 0;
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

  /**
   * Resolves offloads in software, then transmits: plain frames go as they are (a
   * partial checksum completed in place), super-frames as the segments gsoSegment cut
   * into the staging area; when the staging area or the segment queue fills, what is
   * there is written and the area reused. Counters count wire frames (segments).
   */
  private flushSoft(pool: Buffer, q: TxQueue, s: SoftOffload): void {
    const n = q.count;
    const out = s.q;
    const offsets = q.offsets;
    const lengths = q.lengths;
    const segLens = s.segLens;
    out.count = 0;
    let used = s.base;
    for (let i = 0; i < n; i++) {
      const off = offsets[i];
      const len = lengths[i];
      const h = off - VNET_HDR_LEN;
      if (pool[h + 1] === 0) {
        if ((pool[h] & 1) !== 0) {
          if (completeChecksum(pool, off, len) < 0) {
            s.badOffload++;
            this.txDrops++;
            continue;
          }
          s.csumCompleted++;
        }
        if (out.count === out.capacity) {
          this.write(pool, out);
          out.count = 0;
          used = s.base;
        }
        out.push(off, len);
        continue;
      }
      let k = gsoSegment(pool, off, len, pool, used, s.end, SOFT_PREFIX, segLens);
      if (k === -2 || (k > 0 && out.count + k > out.capacity)) {
        // No room left: write what is staged, then cut this one at the start.
        this.write(pool, out);
        out.count = 0;
        used = s.base;
        k = gsoSegment(pool, off, len, pool, used, s.end, SOFT_PREFIX, segLens);
      }
      if (k <= 0) {
        s.badOffload++;
        this.txDrops++;
        continue;
      }
      const stride = k > 1 ? SOFT_PREFIX + segLens[0] : 0;
      for (let j = 0; j < k; j++) out.push(used + j * stride + SOFT_PREFIX, segLens[j]);
      used += (k - 1) * stride + SOFT_PREFIX + segLens[k - 1];
      s.segmented++;
      s.segments += k;
    }
    if (out.count !== 0) this.write(pool, out);
    out.count = 0;
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
