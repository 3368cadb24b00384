/**
 * Engine: owns the packet pool, the ports and the elements of one tapnet process, and
 * runs passes.
 *
 * A pass starts when a port delivers a batch (or a timer has something to send): every
 * element is told a pass begins (scratch space is reset), the batch goes to the input
 * the port is connected to (the switch), which queues frames on output ports; internal
 * ports (switch <-> router) are pumped until quiet; then every device port with queued
 * frames is flushed once. Nothing is carried between passes: a frame's bytes live in its
 * ingress port's receive region only until that port's next wake-up, which cannot come
 * before the pass has ended; what must wait longer (a packet waiting for ARP) is copied
 * out by the element that keeps it.
 *
 * The graph builder (src/node/graph.ts) is the one caller that wires an engine: it adds
 * ports with the input each feeds and elements with the scratch they need.
 */
import type { FrameList } from "./batch.js";
import type { FrameSink } from "./element.js";
import { Batch } from "./batch.js";
import { IMPAIR_RING_BYTES, type ImpairSettings, ImpairStage, impairActive } from "./impair.js";
import { InternalPort } from "./internal-port.js";
import { PacketPool } from "./pool.js";
import { impairOffer, type Port } from "./port.js";

/** A port's impairment stages, kept (with their pool bytes) while the port lives. */
interface PortStages {
  in: ImpairStage | null;
  out: ImpairStage | null;
}

/** Pool bytes of the what-if slot: headroom (tags, a virtio-net header) and a frame. */
const WHATIF_SLOT = 64 + 9216;
const WHATIF_HEADROOM = 64;

/** What the engine needs of an element: a name, the start of each pass, pool scratch. */
export interface EngineElement {
  readonly name: string;
  beginPass(): void;
  /** Pool bytes the element writes frames into (0 or absent: none). */
  scratchBytes?(): number;
  /** Where those bytes are, once the pool exists (before any pass). */
  attachScratch?(pool: Buffer, base: number, bytes: number): void;
}

/** How many times internal ports are pumped in one pass before the rest is dropped. */
const MAX_ROUNDS = 16;

export class Engine {
  readonly ports: Port[] = [];
  readonly elements: EngineElement[] = [];
  pool: PacketPool | null = null;
  passes = 0;
  /**
   * Offloads on: every frame in the pool has a virtio-net header in front of it
   * (src/wire/vnet.ts). Ports whose device has none get a TxOffload (the graph
   * builder installs them). Set before start().
   */
  offload = false;
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
  /** Per port index: where its received batches go. */
  private readonly inputs: Array<FrameSink | null> = [];
  /** Impairments (src/core/impair.ts): the stages of each port that has had one. */
  private readonly stages = new Map<Port, PortStages>();
  /** Settings given before start(): their stages are made with the pool. */
  private readonly pendingImpair: Array<{ port: Port; dir: "in" | "out"; settings: ImpairSettings }> = [];
  /** The one timer that releases delayed frames, armed for the earliest of them. */
  private impairTimer: NodeJS.Timeout | null = null;
  private impairAt = Number.POSITIVE_INFINITY;
  /** Frames an ingress stage releases, delivered as one batch. */
  private readonly impairRx = new Batch(256);

  /**
   * Adds a port; `input` is the element its received frames go to (device ports). A port
   * added while the engine runs (between passes) is opened at once, in the pool's spare
   * room, and takes the index of a removed port when there is one.
   */
  addPort(port: Port, input: FrameSink | null = null): number {
    if (this.ports.some((p) => p.name === port.name && !p.removed)) {
      throw new Error(`duplicate port name '${port.name}'`);
    }
    const free = this.ports.findIndex((p) => p.removed);
    port.index = free >= 0 ? free : this.ports.length;
    this.ports[port.index] = port;
    this.inputs[port.index] = input;
    if (port instanceof InternalPort) this.internal.push(port);
    else this.devices.push(port);
    if (this.pool !== null) {
      try {
        this.openPort(this.pool, port);
      } catch (e) {
        this.forget(port);
        throw e;
      }
    }
    return port.index;
  }

  /**
   * Disposes of a port (closed, and a device made to outlive the process goes with it:
   * Port.dispose) and takes it out of the passes (between passes); its pool regions go
   * back to the pool and its index to the next port added.
   */
  removePort(port: Port): void {
    if (this.ports[port.index] !== port || port.removed) throw new Error(`port '${port.name}' is not in this engine`);
    port.dispose();
    this.pool?.release(port);
    this.forget(port);
  }

  /** The ports that are in the engine (not removed). */
  livePorts(): Port[] {
    return this.ports.filter((p) => !p.removed);
  }

  private forget(port: Port): void {
    port.removed = true;
    port.impairIn = null;
    port.impairOut = null;
    this.stages.delete(port);
    this.inputs[port.index] = null;
    const list: Port[] = port instanceof InternalPort ? this.internal : this.devices;
    const k = list.indexOf(port);
    if (k >= 0) list.splice(k, 1);
  }

  private openPort(pool: PacketPool, p: Port): void {
    p.offload = this.offload;
    if (pool.spare === 0 && this.pool !== null) throw new Error(`port ${p.name}: the node keeps no pool room for ports added at runtime`);
    pool.withOwner(p, () => {
      const o = p.txOffload;
      if (o !== null && o.regionBytes !== 0) o.attach(pool.region(o.regionBytes, `port ${p.name} offloads`));
      p.open(pool, this.onRx);
    });
  }

  /** Sends what `port` receives to `input` from now on. */
  connect(port: Port, input: FrameSink): void {
    if (this.ports[port.index] !== port) throw new Error(`port '${port.name}' is not in this engine`);
    this.inputs[port.index] = input;
  }

  port(name: string): Port | undefined {
    return this.ports.find((p) => p.name === name && !p.removed);
  }
  /** The live port `name`; an error naming `node` and the ports it has when there is none. */
  requirePort(name: string, node: string): Port {
    const p = this.port(name);
    if (!p) {
      throw new Error(
        `node ${node} has no port '${name}' (ports: ${this.livePorts()
          .map((x) => x.name)
          .join(", ")})`,
      );
    }
    return p;
  }

  /** Adds an element: told of every pass, given its scratch when the pool is made. */
  addElement(el: EngineElement): void {
    if (this.elements.some((e) => e.name === el.name)) throw new Error(`duplicate element name '${el.name}'`);
    this.elements.push(el);
  }

  /**
   * Allocates the pool and opens every port. On failure, closes what was opened.
   * `spare`: pool bytes kept for ports added while the engine runs.
   */
  start(spare = 0): void {
    const unwired = this.devices.filter((p) => this.inputs[p.index] === null);
    if (unwired.length) throw new Error(`ports with no input: ${unwired.map((p) => p.name).join(", ")}`);
    let size = 0;
    for (const p of this.ports) p.offload = this.offload;
    for (const p of this.ports) size += p.rxRegionBytes() + (p.txOffload?.regionBytes ?? 0) + 128;
    const scratch = this.elements.map((e) => e.scratchBytes?.() ?? 0);
    for (const s of scratch) size += s + 64;
    size += this.pendingImpair.length * (IMPAIR_RING_BYTES + 64);
    size += WHATIF_SLOT + 64;
    const pool = new PacketPool(size, spare);
    this.elements.forEach((e, i) => {
      if (scratch[i] > 0) e.attachScratch?.(pool.buf, pool.region(scratch[i], `${e.name} scratch`), scratch[i]);
    });
    const opened: Port[] = [];
    try {
      for (const p of this.ports) {
        this.openPort(pool, p);
        opened.push(p);
      }
    } catch (e) {
      for (const p of opened) p.close();
      throw e;
    }
    // After the ports: their regions start where they always did.
    this.whatIfBase = pool.region(WHATIF_SLOT, "what-if trace slot");
    this.pool = pool;
    for (const x of this.pendingImpair.splice(0)) if (!x.port.removed) this.setImpairment(x.port, x.dir, x.settings);
  }

  stop(): void {
    if (this.impairTimer !== null) clearTimeout(this.impairTimer);
    this.impairTimer = null;
    for (const p of this.ports) if (!p.removed) p.close();
  }

  /**
   * Sets (or with null / nothing active, clears) one direction's impairments on a port.
   * The stage's pool bytes are taken once, from the pool's spare room on a running
   * engine, and kept while the port lives; frames still waiting when impairments are
   * cleared leave at once.
   */
  setImpairment(port: Port, dir: "in" | "out", settings: ImpairSettings | null): void {
    const pool = this.pool;
    if (pool === null) {
      const k = this.pendingImpair.findIndex((x) => x.port === port && x.dir === dir);
      if (k >= 0) this.pendingImpair.splice(k, 1);
      if (settings !== null && impairActive(settings)) this.pendingImpair.push({ port, dir, settings });
      return;
    }
    let ps = this.stages.get(port);
    if (settings === null || !impairActive(settings)) {
      const st = ps?.[dir] ?? null;
      if (st !== null && (dir === "out" ? port.impairOut : port.impairIn) !== null) {
        this.releaseStage(port, dir, Number.POSITIVE_INFINITY);
        if (dir === "out") port.impairOut = null;
        else port.impairIn = null;
      }
      return;
    }
    if (ps === undefined) {
      ps = { in: null, out: null };
      this.stages.set(port, ps);
    }
    let st = ps[dir];
    if (st === null) {
      const base = pool.withOwner(port, () => pool.region(IMPAIR_RING_BYTES, `port ${port.name} impairments (${dir})`));
      let seed = dir === "out" ? 0x5bd1e995 : 0x1b873593;
      for (const c of port.name) seed = Math.imul(seed ^ c.charCodeAt(0), 0x01000193);
      st = new ImpairStage(pool.buf, base, IMPAIR_RING_BYTES, settings, seed);
      ps[dir] = st;
    }
    st.settings = settings;
    if (dir === "out") port.impairOut = st;
    else port.impairIn = st;
  }

  /** A port's impairment stages (show ports), null where a direction has none set. */
  impairments(port: Port): { in: ImpairStage | null; out: ImpairStage | null } {
    return { in: port.impairIn, out: port.impairOut };
  }

  /** Writes (egress) or delivers in a pass (ingress) what one stage has due at `now`. */
  private releaseStage(port: Port, dir: "in" | "out", now: number): void {
    const pool = (this.pool as PacketPool).buf;
    if (dir === "out") {
      port.releaseImpaired(pool, now);
      return;
    }
    const st = port.impairIn;
    if (st === null) return;
    const rx = this.impairRx;
    for (;;) {
      rx.count = 0;
      const n = st.queue.popDue(now, rx, rx.capacity);
      if (n === 0) break;
      st.c.released += n;
      const input = this.inputs[port.index];
      if (!port.adminUp || input === null || input === undefined) port.rxDrops += n;
      else {
        this.rxPort = port;
        this.rxFrames = rx;
        this.runPass(this.rxWork);
      }
      st.queue.reclaim();
      if (n < rx.capacity) break;
    }
  }

  /** Releases what is due on every impaired port, then arms the timer for the next. */
  private readonly impairTick = (): void => {
    this.impairTimer = null;
    this.impairAt = Number.POSITIVE_INFINITY;
    const now = this.clock();
    for (const [port, ps] of this.stages) {
      if (ps.out !== null && port.impairOut !== null) this.releaseStage(port, "out", now);
      if (ps.in !== null && port.impairIn !== null) this.releaseStage(port, "in", now);
    }
    this.armImpair();
  };

  /** Arms the release timer for the earliest waiting frame (one timer for the node). */
  private armImpair(): void {
    let t = Number.POSITIVE_INFINITY;
    for (const [port, ps] of this.stages) {
      if (ps.out !== null && port.impairOut !== null) t = Math.min(t, ps.out.queue.nextTime());
      if (ps.in !== null && port.impairIn !== null) t = Math.min(t, ps.in.queue.nextTime());
    }
    if (t === Number.POSITIVE_INFINITY) return;
    if (this.impairTimer !== null) {
      if (t >= this.impairAt) return;
      clearTimeout(this.impairTimer);
    }
    this.impairAt = t;
    this.impairTimer = setTimeout(this.impairTick, Math.max(0, Math.ceil(t - this.clock())));
    this.impairTimer.unref();
  }

  /**
   * Runs one pass: `work` queues frames (an input on a received batch, or an element
   * with something to send from a timer); then the pass settles and flushes.
   */
  runPass(work: (pool: Buffer, now: number) => void): void {
    const pool = (this.pool as PacketPool).buf;
    const now = this.clock();
    this.passes++;
    const els = this.elements;
    for (let i = 0; i < els.length; i++) els[i].beginPass();
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
      // Nothing a peer sends may stop the process. An exception here is our bug:
      // count it, keep the message, drop the pass.
      this.internalErrors++;
      this.lastError = e instanceof Error ? (e.stack ?? e.message) : String(e);
      for (const p of this.ports) p.txq.count = 0;
      for (const p of this.internal) p.reset();
      return;
    }
    const devices = this.devices;
    if (this.discard !== null) {
      // A traced pass: what leaves is shown; a what-if pass sends nothing.
      for (let i = 0; i < devices.length; i++) {
        const q = devices[i].txq;
        for (let k = 0; k < q.count; k++) this.discard(devices[i], pool, q.offsets[k], q.lengths[k]);
        if (this.discardSends) continue;
        q.count = 0;
        q.drops = 0;
      }
      if (!this.discardSends) return;
    }
    let impaired = false;
    for (let i = 0; i < devices.length; i++) {
      const p = devices[i];
      if (p.txq.count !== 0 || p.txq.drops !== 0) {
        if (p.impairOut !== null) {
          p.flush(pool, now);
          // What is due already (no delay: loss only, reordered frames) leaves now.
          p.releaseImpaired(pool, now);
          impaired = true;
        } else p.flush(pool);
      }
    }
    if (impaired) this.armImpair();
  }

  /** Pool offset of the what-if slot (a synthetic frame for `tapnet trace --packet`). */
  private whatIfBase = -1;
  /** Set only during a traced pass: gets each frame that would leave a device port. */
  private discard: ((port: Port, pool: Buffer, off: number, len: number) => void) | null = null;
  /** The traced pass is live: its frames are sent after `discard` saw them. */
  private discardSends = false;

  /**
   * A live trace (`tapnet trace NODE FILTER`): while set, each received batch is split so
   * that every frame `match` takes runs in a pass of its own, with the trace armed by
   * `begin` and what leaves handed to `sent` — the one test per batch when no trace runs.
   */
  liveTrace: {
    match(port: Port, buf: Buffer, off: number, len: number): boolean;
    begin(port: Port, buf: Buffer, off: number, len: number): void;
    sent(port: Port, buf: Buffer, off: number, len: number): void;
    end(): void;
  } | null = null;

  private rxTraced(port: Port, batch: FrameList): void {
    const lt = this.liveTrace as NonNullable<Engine["liveTrace"]>;
    const pool = (this.pool as PacketPool).buf;
    const input = this.inputs[port.index] as FrameSink;
    const n = batch.count;
    let start = 0;
    const run = (from: number, to: number): void => {
      if (to <= from) return;
      const sub: FrameList = { count: to - from, offsets: batch.offsets.subarray(from, to), lengths: batch.lengths.subarray(from, to) };
      this.runPass((p, now) => input.process(port, sub, p, now));
    };
    for (let i = 0; i < n && this.liveTrace !== null; i++) {
      const off = batch.offsets[i];
      const len = batch.lengths[i];
      if (!lt.match(port, pool, off, len)) continue;
      run(start, i);
      lt.begin(port, pool, off, len);
      this.discard = lt.sent;
      this.discardSends = true;
      try {
        run(i, i + 1);
      } finally {
        this.discard = null;
        this.discardSends = false;
        lt.end();
      }
      start = i + 1;
    }
    run(start, n);
  }

  /**
   * Runs one pass with `frame` as if `port` had received it, and sends nothing: every
   * frame the pass would write to a device port goes to `out` instead (OVS's
   * ofproto/trace). Elements keep their usual state changes (counters, a learned
   * source); a router armed with a dry trace queues nothing for ARP.
   */
  whatIf(port: Port, frame: Buffer, out: (port: Port, pool: Buffer, off: number, len: number) => void): void {
    if (this.pool === null) throw new Error("the engine is not started");
    const input = this.inputs[port.index];
    if (this.ports[port.index] !== port || input === null || input === undefined) throw new Error(`port '${port.name}' takes no frames`);
    if (frame.length > WHATIF_SLOT - WHATIF_HEADROOM) throw new Error(`frame of ${frame.length} bytes: at most ${WHATIF_SLOT - WHATIF_HEADROOM}`);
    const pool = this.pool.buf;
    const off = this.whatIfBase + WHATIF_HEADROOM;
    // A zeroed virtio-net header before the frame, as a port with offloads leaves it.
    pool.fill(0, off - 16, off);
    frame.copy(pool, off);
    const batch: FrameList = { count: 1, offsets: Uint32Array.of(off), lengths: Uint32Array.of(frame.length) };
    this.discard = out;
    try {
      this.runPass((p, now) => input.process(port, batch, p, now));
    } finally {
      this.discard = null;
    }
  }

  private rxPort: Port | null = null;
  private rxFrames: FrameList | null = null;
  private readonly rxWork = (pool: Buffer, now: number): void => {
    const port = this.rxPort as Port;
    (this.inputs[port.index] as FrameSink).process(port, this.rxFrames as FrameList, pool, now);
  };
  private readonly onRx = (port: Port, batch: FrameList): void => {
    if (!port.adminUp) {
      port.rxDrops += batch.count;
      return;
    }
    const st = port.impairIn;
    if (st !== null) {
      const pool = (this.pool as PacketPool).buf;
      const now = this.clock();
      port.rxDrops += impairOffer(st, pool, batch, port.offload, now);
      this.releaseStage(port, "in", now);
      this.armImpair();
      return;
    }
    if (this.liveTrace !== null) {
      this.rxTraced(port, batch);
      return;
    }
    this.rxPort = port;
    this.rxFrames = batch;
    this.runPass(this.rxWork);
  };
}
