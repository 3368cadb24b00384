/**
 * Engine: owns the packet pool and the ports of one tapnet process and runs passes.
 *
 * A pass starts when a port delivers a batch (or a timer has something to send):
 * every element is told a pass begins (scratch space is reset), the batch goes
 * through the pipeline (the switch), which queues frames on output ports; internal
 * ports (switch <-> router) are pumped until quiet; then every device port with
 * queued frames is flushed once. Nothing is carried between passes: a frame's bytes
 * live in its ingress port's receive region only until that port's next wake-up,
 * which cannot come before the pass has ended; what must wait longer (a packet
 * waiting for ARP) is copied out by the element that keeps it.
 */
import type { FrameList } from "./batch.js";
import { InternalPort } from "./internal-port.js";
import { PacketPool } from "./pool.js";
import type { Port } from "./port.js";

export interface Pipeline {
  /**
   * Processes frames received on `port`, whose bytes are in `pool`; `now` is the
   * pass's clock in ms (read once per pass, not per frame).
   */
  process(port: Port, frames: FrameList, pool: Buffer, now: number): void;
}

export interface PassAware {
  /** Called at the start of every pass, before any frame of it is seen. */
  beginPass(): void;
}

/** How many times internal ports are pumped in one pass before the rest is dropped. */
const MAX_ROUNDS = 16;

export class Engine {
  readonly ports: Port[] = [];
  pool: PacketPool | null = null;
  pipeline: Pipeline | null = null;
  readonly passAware: PassAware[] = [];
  passes = 0;
  /**
   * Offloads on: every frame in the pool has a virtio-net header in front of it. Ports
   * whose device has none get software offloads (Port.vnetPool). Set before start().
   */
  vnet = false;
  /** Errors thrown by an element (a bug, never a peer's doing); the pass is dropped. */
  internalErrors = 0;
  /** Passes that still had frames moving between elements after MAX_ROUNDS (a loop). */
  roundsExceeded = 0;
  lastError = "";
  /**
   * The pass clock in ms (monotonic). performance.now() on a node; tests and the fuzzer
   * put a virtual clock here so that timers (ageing, ICMP rate limit, reassembly) run
   * the same way on every run of a seed.
   */
  clock: () => number = performance.now.bind(performance);
  private readonly internal: InternalPort[] = [];
  /** Ports with a device behind them: the ones a pass flushes. */
  private readonly devices: Port[] = [];
  private readonly scratch: Array<{ bytes: number; what: string; set: (base: number) => void }> = [];

  addPort(port: Port): number {
    if (this.ports.some((p) => p.name === port.name)) {
      throw new Error(`duplicate port name '${port.name}'`);
    }
    port.index = this.ports.length;
    this.ports.push(port);
    if (port instanceof InternalPort) this.internal.push(port);
    else this.devices.push(port);
    return port.index;
  }

  port(name: string): Port | undefined {
    return this.ports.find((p) => p.name === name);
  }

  /** Reserves pool memory for an element (scratch space for frames it writes). */
  reserve(bytes: number, what: string, set: (base: number) => void): void {
    this.scratch.push({ bytes, what, set });
  }

  /** Allocates the pool and opens every port. On failure, closes what was opened. */
  start(): void {
    if (!this.pipeline) throw new Error("engine has no pipeline");
    const pa = this.pipeline as Partial<PassAware>;
    if (typeof pa.beginPass === "function" && !this.passAware.includes(pa as PassAware)) {
      this.passAware.unshift(pa as PassAware);
    }
    let size = 0;
    for (const p of this.ports) {
      p.vnetPool = this.vnet;
      size += p.rxRegionBytes() + p.softRegionBytes() + 128;
    }
    for (const s of this.scratch) size += s.bytes + 64;
    const pool = new PacketPool(size);
    this.pool = pool;
    for (const s of this.scratch) s.set(pool.region(s.bytes, s.what));
    for (const p of this.ports) {
      const soft = p.softRegionBytes();
      if (soft !== 0) p.attachSoftRegion(pool.region(soft, `port ${p.name} software offloads`));
    }
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

  /**
   * Runs one pass: `work` queues frames (the pipeline on a received batch, or an
   * element with something to send from a timer); then the pass settles and flushes.
   */
  runPass(work: (pool: Buffer, now: number) => void): void {
    const pool = (this.pool as PacketPool).buf;
    const now = this.clock();
    this.passes++;
    const aware = this.passAware;
    for (let i = 0; i < aware.length; i++) aware[i].beginPass();
    try {
      work(pool, now);
      const internal = this.internal;
      let round = 0;
      for (; round < MAX_ROUNDS; round++) {
        let moved = false;
        for (let i = 0; i < internal.length; i++) if (internal[i].pump(pool, now)) moved = true;
        if (!moved) break;
      }
      if (round === MAX_ROUNDS) {
        this.roundsExceeded++;
        for (const p of internal) p.reset();
      }
    } catch (e) {
      // Rule 3 of the hot path: nothing a peer sends may stop the process. An
      // exception here is our bug; count it, keep the message, drop the pass.
      this.internalErrors++;
      this.lastError = e instanceof Error ? (e.stack ?? e.message) : String(e);
      for (const p of this.ports) p.txq.count = 0;
      for (const p of this.internal) p.reset();
      return;
    }
    const devices = this.devices;
    for (let i = 0; i < devices.length; i++) {
      const p = devices[i];
      if (p.txq.count !== 0 || p.txq.drops !== 0) p.flush(pool);
    }
  }

  private rxPort: Port | null = null;
  private rxFrames: FrameList | null = null;
  private readonly rxWork = (pool: Buffer, now: number): void => {
    (this.pipeline as Pipeline).process(this.rxPort as Port, this.rxFrames as FrameList, pool, now);
  };
  private readonly onRx = (port: Port, batch: FrameList): void => {
    this.rxPort = port;
    this.rxFrames = batch;
    this.runPass(this.rxWork);
  };
}
