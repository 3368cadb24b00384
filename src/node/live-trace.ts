/**
 * A live trace (`tapnet trace NODE [FILTER] -c N`): the next N frames received on the
 * node's ports (or on one port) that match FILTER (src/node/trace-filter.ts) each run
 * through the graph in a pass of their own with a TraceRecorder armed (Engine.liveTrace),
 * and each is streamed to the client as one JSON line: when, the port, the frame, the
 * elements' steps, and the frames that left which port. The frames are forwarded as
 * usual. While no live trace runs, the engine's receive path tests one field per batch.
 */
import type net from "node:net";
import type { Engine } from "../core/engine.js";
import type { Element } from "../core/element.js";
import type { Port } from "../core/port.js";
import { TraceRecorder } from "../core/trace.js";
import { describeFrame } from "./trace.js";
import type { FramePredicate } from "./trace-filter.js";

export interface LiveTraceRecord {
  /** Wall time the frame was received (ISO 8601). */
  time: string;
  /** The same, in milliseconds since the epoch with a fraction (merging nodes' traces). */
  at: number;
  node: string;
  in: string;
  packet: string;
  steps: Array<{ element: string; what: string }>;
  /** What left which port; `encap`: a tunnel port's outer headers. */
  out: Array<{ port: string; frame: string; encap?: string }>;
}

export class LiveTraceSession {
  private n = 0;
  private tr: TraceRecorder | null = null;
  private cur: LiveTraceRecord | null = null;
  private closed = false;

  constructor(
    private readonly engine: Engine,
    private readonly elements: Element[],
    private readonly node: string,
    private readonly port: Port | null,
    private readonly filter: FramePredicate,
    private readonly limit: number,
    private readonly sock: net.Socket,
  ) {
    if (engine.liveTrace !== null) throw new Error("a live trace already runs on this node");
    engine.liveTrace = this;
    sock.on("close", () => this.stop());
    sock.on("error", () => this.stop());
  }

  readonly match = (port: Port, buf: Buffer, off: number, len: number): boolean => (this.port === null || port === this.port) && this.filter(buf, off, len);

  readonly begin = (port: Port, buf: Buffer, off: number, len: number): void => {
    this.tr = new TraceRecorder(false);
    for (const e of this.elements) e.setTrace(this.tr);
    const at = performance.timeOrigin + performance.now();
    this.cur = { time: new Date(at).toISOString(), at, node: this.node, in: port.name, packet: describeFrame(buf, off, len), steps: [], out: [] };
  };

  readonly sent = (port: Port, buf: Buffer, off: number, len: number): void => {
    const encap = port.traceTx(buf, off, len);
    this.cur?.out.push({ port: port.name, frame: describeFrame(buf, off, len), ...(encap === null ? {} : { encap }) });
  };

  readonly end = (): void => {
    for (const e of this.elements) e.setTrace(null);
    const r = this.cur;
    if (r === null || this.tr === null) return;
    r.steps = this.tr.steps;
    this.cur = null;
    this.tr = null;
    if (this.closed) return;
    this.sock.write(`${JSON.stringify(r)}\n`);
    this.n++;
    if (this.limit > 0 && this.n >= this.limit) this.stop();
  };

  stop(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.engine.liveTrace === this) this.engine.liveTrace = null;
    this.sock.end();
  }
}
