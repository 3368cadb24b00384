/**
 * Engine: owns the packet pool and the ports of one tapnet process and runs one pass
 * per received batch: the batch goes through the pipeline (the graph of elements),
 * which queues frames on output ports, then every port with queued frames is
 * flushed once. Nothing is carried between passes: a frame's bytes live in its
 * ingress port's receive region only until that port's next wake-up, which cannot
 * come before the pass has ended.
 */
import type { Batch } from "./batch.js";
import { PacketPool } from "./pool.js";
import type { Port } from "./port.js";

export interface Pipeline {
  /**
   * Processes one batch received on `port`, whose frames are in `pool`; `now` is the
   * pass's clock in ms (read once per pass, not per frame).
   */
  process(port: Port, batch: Batch, pool: Buffer, now: number): void;
}

export class Engine {
  readonly ports: Port[] = [];
  pool: PacketPool | null = null;
  pipeline: Pipeline | null = null;
  passes = 0;
  /** Errors thrown by the pipeline (a bug, never a peer's doing); the pass is dropped. */
  internalErrors = 0;
  lastError = "";
  private readonly scratch: Array<{ bytes: number; what: string; set: (base: number) => void }> = [];

  addPort(port: Port): number {
    if (this.ports.some((p) => p.name === port.name)) {
      throw new Error(`duplicate port name '${port.name}'`);
    }
    port.index = this.ports.length;
    this.ports.push(port);
    return port.index;
  }

  port(name: string): Port | undefined {
    return this.ports.find((p) => p.name === name);
  }

  /** Reserves pool memory for an element (scratch space for rewritten frames). */
  reserve(bytes: number, what: string, set: (base: number) => void): void {
    this.scratch.push({ bytes, what, set });
  }

  /** Allocates the pool and opens every port. On failure, closes what was opened. */
  start(): void {
    if (!this.pipeline) throw new Error("engine has no pipeline");
    let size = 0;
    for (const p of this.ports) size += p.rxRegionBytes() + 64;
    for (const s of this.scratch) size += s.bytes + 64;
    const pool = new PacketPool(size);
    this.pool = pool;
    for (const s of this.scratch) s.set(pool.region(s.bytes, s.what));
    const opened: Port[] = [];
    try {
      for (const p of this.ports) {
        p.open(pool, this.onRx);
        opened.push(p);
      }
    } catch (e) {
      for (const p of opened) p.close();
      throw e;
    }
  }

  stop(): void {
    for (const p of this.ports) p.close();
  }

  private readonly onRx = (port: Port, batch: Batch): void => {
    const pool = (this.pool as PacketPool).buf;
    this.passes++;
    try {
      (this.pipeline as Pipeline).process(port, batch, pool, performance.now());
    } catch (e) {
      // Rule 3 of the hot path: nothing a peer sends may stop the process. An
      // exception here is our bug; count it, keep the message, drop the pass.
      this.internalErrors++;
      this.lastError = e instanceof Error ? (e.stack ?? e.message) : String(e);
      for (const p of this.ports) p.txq.count = 0;
      return;
    }
    const ports = this.ports;
    for (let i = 0; i < ports.length; i++) {
      const p = ports[i];
      if (p.txq.count !== 0 || p.txq.drops !== 0) p.flush(pool);
    }
  };
}
