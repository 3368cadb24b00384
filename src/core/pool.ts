/**
 * PacketPool: the one block of packet memory of a tapnet process.
 *
 * Every frame the process holds lives somewhere in this buffer and is named by
 * (offset, length). Ports receive into regions of it and transmit from it, so a batch can
 * be handed from one port to another without copying and a port's transmit is one native
 * call over one buffer (Snabb's packet memory, DPDK's mempool).
 *
 * Regions are handed out at start-up for the ports and elements the node starts with.
 * Beyond `size`, the pool keeps `spare` bytes for ports added while the node runs. The
 * buffer is zeroed memory the kernel maps on first touch (Buffer.alloc of this size is a
 * calloc(), an anonymous mmap), so a page costs nothing until a frame lands on it: writing
 * zeros over the whole pool at start-up took a 10-port node 136 ms and made every page
 * resident. A removed port's regions go back to a free list, cleared when the next region
 * of the same size reuses them.
 */
export class PacketPool {
  readonly buf: Buffer;
  private next = 0;
  private owner: object | null = null;
  private readonly owned = new Map<object, Array<{ base: number; bytes: number }>>();
  private readonly free: Array<{ base: number; bytes: number }> = [];

  constructor(
    readonly size: number,
    readonly spare = 0,
  ) {
    this.buf = Buffer.alloc(size + spare);
  }

  /** Reserves `bytes` (aligned to 64) and returns the region's offset. */
  region(bytes: number, what: string): number {
    const k = this.free.findIndex((r) => r.bytes === bytes);
    let base: number;
    if (k >= 0) {
      base = this.free[k].base;
      this.free.splice(k, 1);
    } else {
      base = (this.next + 63) & ~63;
      if (base + bytes > this.buf.length) {
        throw new RangeError(
          `packet pool exhausted: ${what} needs ${bytes} bytes at ${base}, pool has ${this.buf.length} (${this.spare} of them for ports added at runtime)`,
        );
      }
      this.next = base + bytes;
    }
    if (k >= 0) this.buf.fill(0, base, base + bytes);
    if (this.owner !== null) {
      const list = this.owned.get(this.owner) ?? [];
      list.push({ base, bytes });
      this.owned.set(this.owner, list);
    }
    return base;
  }

  /** Runs `fn` (a port's open) so that the regions it reserves belong to `owner`. */
  withOwner<T>(owner: object, fn: () => T): T {
    const before = this.owner;
    this.owner = owner;
    try {
      return fn();
    } finally {
      this.owner = before;
    }
  }

  /** Gives back every region `owner` reserved (a port that was removed). */
  release(owner: object): void {
    for (const r of this.owned.get(owner) ?? []) this.free.push(r);
    this.owned.delete(owner);
  }

  get used(): number {
    return this.next;
  }
}
