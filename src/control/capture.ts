/**
 * CaptureSession — streams what crosses a set of ports as pcapng over a control
 * connection: one Interface Description Block per port (named after the port), one
 * Enhanced Packet Block per frame with its direction. The dataplane never waits for
 * a slow reader: when the socket's buffer is over its limit, frames are dropped from
 * the capture (not from the network) and counted (src/control/pcapng-stream.ts).
 */
import type net from "node:net";
import type { FrameTap, Port } from "../core/port.js";
import { PcapngStream } from "./pcapng-stream.js";

export class CaptureSession implements FrameTap {
  private readonly ifIndex = new Map<Port, number>();
  private readonly stream: PcapngStream;

  constructor(
    private readonly ports: Port[],
    sock: net.Socket,
    limit: number,
  ) {
    ports.forEach((p, i) => this.ifIndex.set(p, i));
    this.stream = new PcapngStream(
      sock,
      limit,
      ports.map((p) => ({ name: p.name, description: `${p.kind} ${p.info().ifname}` })),
      () => {
        for (const p of this.ports) p.taps = p.taps.filter((t) => t !== this);
      },
    );
    for (const p of ports) p.taps = [...p.taps, this];
  }

  get captured(): number {
    return this.stream.captured;
  }
  /** Frames left out of the capture while the reader was behind. */
  get dropped(): number {
    return this.stream.overflowed;
  }

  frame(port: Port, dir: 0 | 1, buf: Buffer, off: number, len: number): void {
    if (!this.stream.accepts()) return;
    this.stream.packet(this.ifIndex.get(port) as number, buf, off, len, dir === 0 ? "in" : "out");
  }

  stop(): void {
    this.stream.stop();
  }
}
