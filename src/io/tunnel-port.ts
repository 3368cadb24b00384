/**
 * TunnelPort: what the tunnel ports (VXLAN: vxlan-port.ts; IPIP: ipip-port.ts) share —
 * a Port whose frames leave encapsulated through an underlay socket of the native
 * addon, with tunnel counters declared once (counters(), src/core/element.ts) and read
 * by `show tunnels` and `show stats` under their declared names, the latest refused
 * send in words (lastTxError), and the socket opener the fuzz tests replace with a
 * simulated kernel.
 */
import type { TxQueue } from "../core/batch.js";
import type { CounterSpec } from "../core/element.js";
import { Port } from "../core/port.js";

export abstract class TunnelPort<K extends string = string> extends Port {
  /** Tunnel counter values, indexed by the spec's ids. */
  readonly c: Float64Array;
  /** The latest refused send, in words. */
  lastTxError = "";

  constructor(
    name: string,
    readonly tunnelSpec: CounterSpec<K>,
    batchSize?: number,
    slotSize?: number,
  ) {
    super(name, batchSize, slotSize);
    this.c = tunnelSpec.create();
  }

  /** The tunnel counters, in declaration order (`show tunnels`, `show stats`). */
  tunnelCounters(): Record<K, number> {
    return this.tunnelSpec.read(this.c);
  }

  /** What the tunnel is (`show tunnels`): kind, addresses, MTU. */
  abstract tunnelInfo(): object;

  /**
   * transmit() of a port that is not open: every frame refused (length 0, the Port
   * contract) and counted at counter `txErrors`.
   */
  protected refuseClosed(q: TxQueue, txErrors: number): number {
    q.lengths.fill(0, 0, q.count);
    this.c[txErrors] += q.count;
    this.lastTxError = "port is closed";
    return 0;
  }
}

/**
 * The messages of one sendmmsg (its arguments: pool offset, length, destination,
 * segment size), each with the index in the TxQueue of the frame it carries and one
 * number the port keeps with it (VXLAN: the datagrams it becomes; IPIP: 1 when its
 * outer header was written in place over bytes to put back).
 */
export class SendList {
  count = 0;
  readonly offsets: Uint32Array;
  readonly lengths: Uint32Array;
  readonly addrs: Uint32Array;
  readonly segs: Uint32Array;
  readonly frame: Uint32Array;
  readonly extra: Uint32Array;

  constructor(readonly capacity: number) {
    this.offsets = new Uint32Array(capacity);
    this.lengths = new Uint32Array(capacity);
    this.addrs = new Uint32Array(capacity);
    this.segs = new Uint32Array(capacity);
    this.frame = new Uint32Array(capacity);
    this.extra = new Uint32Array(capacity);
  }

  add(off: number, len: number, addr: number, seg: number, frame: number, extra: number): void {
    const c = this.count;
    this.offsets[c] = off;
    this.lengths[c] = len;
    this.addrs[c] = addr;
    this.segs[c] = seg;
    this.frame[c] = frame;
    this.extra[c] = extra;
    this.count = c + 1;
  }
}
