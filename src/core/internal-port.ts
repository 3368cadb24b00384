/**
 * InternalPort — a port with an element on each side instead of a device: the
 * switch on one side, the router on the other (a router interface on a VLAN, an
 * SVI). Frames the switch sends out of it (txq) go to the element; frames the
 * element sends (inq) enter the switch as if received on it. The engine pumps
 * internal ports until they are quiet, within the same pass, so a frame can cross
 * switch -> router -> switch before the pass's one flush per device port.
 *
 * Counters follow the switch's view: rx = element -> switch, tx = switch -> element.
 * Captures on an internal port see both directions like any other port.
 */
import { type FrameList, TxQueue } from "./batch.js";
import type { FrameSink } from "./element.js";
import type { PacketPool } from "./pool.js";
import { Port, type RxHandler } from "./port.js";

export class InternalPort extends Port {
  readonly kind = "internal";
  /** Frames the element sends into the switch. */
  inq: TxQueue;
  private spareTx: TxQueue;
  private spareIn: TxQueue;
  private switchSide: FrameSink | null = null;
  private elementSide: FrameSink | null = null;

  constructor(
    name: string,
    private readonly mac: number,
    private readonly mtu: number,
    batchSize = 1024,
  ) {
    super(name, batchSize, 0);
    this.inq = new TxQueue(batchSize);
    this.spareTx = new TxQueue(this.txq.capacity);
    this.spareIn = new TxQueue(batchSize);
  }

  /** Joins the two elements (the graph builder's call): the switch, and the element behind. */
  link(switchSide: FrameSink, elementSide: FrameSink): void {
    this.switchSide = switchSide;
    this.elementSide = elementSide;
  }

  /** What the two sides are, for `show graph`. */
  get sides(): { switchSide: FrameSink | null; elementSide: FrameSink | null } {
    return { switchSide: this.switchSide, elementSide: this.elementSide };
  }

  /** Frames stay in the pool with their virtio-net header; the elements handle it. */
  override get deviceOffload(): boolean {
    return true;
  }

  override rxRegionBytes(): number {
    return 0;
  }

  open(_pool: PacketPool, _onRx: RxHandler): void {
    // Nothing to open: the engine pumps this port.
  }

  close(): void {}

  protected transmit(_pool: Buffer, q: TxQueue): number {
    // Never flushed as a device; pump() moves its frames.
    return q.count;
  }

  info(): { mac: number; mtu: number; ifname: string } {
    return { mac: this.mac, mtu: this.mtu, ifname: this.name };
  }

  /** Moves what is queued in either direction; true when anything moved. */
  pump(pool: Buffer, now: number): boolean {
    if (!this.adminUp && (this.txq.count !== 0 || this.inq.count !== 0)) {
      // A router interface that is down: nothing crosses it, either way.
      this.txDrops += this.txq.count;
      this.rxDrops += this.inq.count;
      this.txq.count = 0;
      this.inq.count = 0;
      return false;
    }
    let moved = false;
    if (this.txq.count !== 0) {
      const q = this.txq;
      this.txq = this.spareTx;
      this.spareTx = q;
      this.count(pool, q, 1);
      (this.elementSide as FrameSink).process(this, q, pool, now);
      q.count = 0;
      moved = true;
    }
    this.txDrops += takeDrops(this.txq, this.spareTx);
    if (this.inq.count !== 0) {
      const q = this.inq;
      this.inq = this.spareIn;
      this.spareIn = q;
      this.received(pool, q);
      (this.switchSide as FrameSink).process(this, q, pool, now);
      q.count = 0;
      moved = true;
    }
    this.rxDrops += takeDrops(this.inq, this.spareIn);
    return moved;
  }

  /** Drops whatever is queued (after an internal error). */
  reset(): void {
    this.txq.count = 0;
    this.inq.count = 0;
    this.spareTx.count = 0;
    this.spareIn.count = 0;
  }

  private count(pool: Buffer, q: FrameList, dir: 0 | 1): void {
    const n = q.count;
    let bytes = 0;
    for (let i = 0; i < n; i++) bytes += q.lengths[i];
    this.txFrames += n;
    this.txBytes += bytes;
    if (this.taps.length !== 0) {
      for (const t of this.taps) {
        for (let i = 0; i < n; i++) t.frame(this, dir, pool, q.offsets[i], q.lengths[i]);
      }
    }
  }
}

/** The frames the two queues of one direction dropped (full) since the last pump; their counts start again. */
function takeDrops(a: TxQueue, b: TxQueue): number {
  const n = a.drops + b.drops;
  if (n !== 0) {
    a.drops = 0;
    b.drops = 0;
  }
  return n;
}
