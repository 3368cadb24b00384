/**
 * CaptureSession — streams what crosses a set of ports as pcapng over a control
 * connection: one Interface Description Block per port (named after the port), one
 * Enhanced Packet Block per frame with its direction. The dataplane never waits for
 * a slow reader: when the socket's buffer is over its limit, frames are dropped from
 * the capture (not from the network) and counted.
 */
import type net from "node:net";
import type { FrameTap, Port } from "../core/port.js";
import { nowNs, PcapngWriter } from "../io/pcapng.js";

const MAX_BUFFERED = 16 * 1024 * 1024;

export class CaptureSession implements FrameTap {
  captured = 0;
  dropped = 0;
  private readonly ifIndex = new Map<Port, number>();
  private readonly writer: PcapngWriter;
  private closed = false;
  private flushPending: NodeJS.Immediate | null = null;

  constructor(
    private readonly ports: Port[],
    private readonly sock: net.Socket,
    private readonly limit: number,
  ) {
    this.writer = new PcapngWriter((chunk) => {
      sock.write(chunk);
    });
    ports.forEach((p, i) => this.ifIndex.set(p, i));
    this.writer.header(ports.map((p) => ({ name: p.name, description: `${p.kind} ${p.info().ifname}` })));
    this.writer.flush();
    for (const p of ports) p.taps = [...p.taps, this];
    sock.on("close", () => this.stop());
    sock.on("error", () => this.stop());
  }

  frame(port: Port, dir: 0 | 1, buf: Buffer, off: number, len: number): void {
    if (this.closed) return;
    if (this.sock.writableLength > MAX_BUFFERED) {
      this.dropped++;
      return;
    }
    this.writer.packet(this.ifIndex.get(port) as number, buf, off, len, nowNs(), dir === 0 ? "in" : "out");
    this.captured++;
    if (this.limit > 0 && this.captured >= this.limit) return this.stop();
    // Hand the socket what a pass captured once the pass is over, not per frame.
    if (this.flushPending === null) this.flushPending = setImmediate(this.flush);
  }

  private readonly flush = (): void => {
    this.flushPending = null;
    if (!this.closed) this.writer.flush();
  };

  stop(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.flushPending !== null) clearImmediate(this.flushPending);
    for (const p of this.ports) p.taps = p.taps.filter((t) => t !== this);
    this.writer.flush();
    this.sock.end();
  }
}
