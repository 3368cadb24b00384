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
import { Batch, type FrameList, TxQueue } from "./batch.js";
import type { FrameSink } from "./element.js";
import type { PacketPool } from "./pool.js";
import { Port, type RxHandler } from "./port.js";

export class InternalPort extends Port {
  readonly kind = "internal";
  /** Frames the element sends into the switch. */
  readonly inq: TxQueue;
  /**
   * What pump() hands to a side: a queue's frames are moved here first, so the queue
   * takes new frames while they are processed (the element answering through inq) and
   * those wait for the engine's next round instead of joining a list being read.
   */
  private readonly work: Batch;
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
    this.work = new Batch(Math.max(this.txq.capacity, batchSize));
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
    const toElement = this.move(this.txq, 1, this.elementSide, pool, now);
    const toSwitch = this.move(this.inq, 0, this.switchSide, pool, now);
    this.txDrops += this.txq.drops;
    this.rxDrops += this.inq.drops;
    this.txq.drops = 0;
    this.inq.drops = 0;
    return toElement || toSwitch;
  }

  /** Drops whatever is queued (after an internal error). */
  reset(): void {
    this.txq.count = 0;
    this.inq.count = 0;
  }

  /**
   * Moves the frames of `q` to the work list and hands them to `side`, counted and
   * shown to capture taps as `dir` (1: the switch sent them, 0: the port received
   * them). False when `q` is empty.
   */
  private move(q: TxQueue, dir: 0 | 1, side: FrameSink | null, pool: Buffer, now: number): boolean {
    const n = q.count;
    if (n === 0) return false;
    const w = this.work;
    for (let i = 0; i < n; i++) {
      w.offsets[i] = q.offsets[i];
      w.lengths[i] = q.lengths[i];
    }
    w.count = n;
    q.count = 0;
    if (dir === 0) this.received(pool, w);
    else this.sent(pool, w);
    (side as FrameSink).process(this, w, pool, now);
    return true;
  }

  /** Counts frames the switch sent to the element and shows them to capture taps. */
  private sent(pool: Buffer, q: FrameList): void {
    const n = q.count;
    let bytes = 0;
    for (let i = 0; i < n; i++) bytes += q.lengths[i];
    this.txFrames += n;
    this.txBytes += bytes;
    if (this.taps.length !== 0) {
      for (const t of this.taps) {
        for (let i = 0; i < n; i++) t.frame(this, 1, pool, q.offsets[i], q.lengths[i]);
      }
    }
  }
}
