/**
 * Batch: the frames of one wake-up of one port, as (offset, length) pairs into the
 * process's PacketPool. One wake-up = one batch = one pass through the graph.
 *
 * TxQueue: a bounded list of frames waiting to leave one port, filled during a pass
 * and written with one native call at the end of it. When it is full, further
 * frames are dropped and counted (a Snabb link).
 */
/** What elements read: frames as (offset, length) pairs into the pool. */
export interface FrameList {
  count: number;
  readonly offsets: Uint32Array;
  readonly lengths: Uint32Array;
}

export class Batch implements FrameList {
  count = 0;
  readonly offsets: Uint32Array;
  readonly lengths: Uint32Array;

  constructor(readonly capacity: number) {
    this.offsets = new Uint32Array(capacity);
    this.lengths = new Uint32Array(capacity);
  }
}

/** A Batch that is filled frame by frame, counting what did not fit. */
export class TxQueue extends Batch {
  drops = 0;

  /** Queues a frame; returns false (and counts) when the queue is full. */
  push(offset: number, length: number): boolean {
    const n = this.count;
    if (n === this.capacity) {
      this.drops++;
      return false;
    }
    this.offsets[n] = offset;
    this.lengths[n] = length;
    this.count = n + 1;
    return true;
  }
}
