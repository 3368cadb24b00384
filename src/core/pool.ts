/**
 * PacketPool: the one block of packet memory of a tapnet process.
 *
 * Every frame the process holds lives somewhere in this buffer and is named by
 * (offset, length). Ports receive into regions of it and transmit from it, so a
 * batch can be handed from one port to another without copying and a port's
 * transmit is one native call over one buffer (Snabb's packet memory, DPDK's
 * mempool, without the free lists: regions are fixed per port and per element).
 */
export class PacketPool {
  readonly buf: Buffer;
  private next = 0;

  constructor(readonly size: number) {
    this.buf = Buffer.alloc(size);
  }

  /** Reserves `bytes` (aligned to 64) and returns the region's offset. */
  region(bytes: number, what: string): number {
    const base = (this.next + 63) & ~63;
    if (base + bytes > this.size) {
      throw new RangeError(`packet pool exhausted: ${what} needs ${bytes} bytes at ${base}, pool has ${this.size}`);
    }
    this.next = base + bytes;
    return base;
  }

  get used(): number {
    return this.next;
  }
}
