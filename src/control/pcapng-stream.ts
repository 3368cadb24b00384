/**
 * PcapngStream — the life of one pcapng capture streamed over a control connection:
 * the section header with its interfaces, one block per frame, a flush once per pass
 * (not per frame), the frame limit, and the end when the reader goes away. The dataplane
 * never waits for a slow reader: while the socket's buffer is over its limit, frames are
 * left out of the capture (not of the network) and counted in `overflowed`.
 * CaptureSession (ports) and DropCaptureSession (element drops) each stream through one.
 */
import type net from "node:net";
import { nowNs, type PcapngInterface, PcapngWriter } from "../io/pcapng.js";

const MAX_BUFFERED = 16 * 1024 * 1024;

export class PcapngStream {
  captured = 0;
  overflowed = 0;
  closed = false;
  private readonly writer: PcapngWriter;
  private flushPending: NodeJS.Immediate | null = null;

  /** `onStop` runs once, when the stream ends: the session takes its taps away there. */
  constructor(
    private readonly sock: net.Socket,
    private readonly limit: number,
    interfaces: PcapngInterface[],
    private readonly onStop: () => void,
  ) {
    this.writer = new PcapngWriter((chunk) => {
      sock.write(chunk);
    });
    this.writer.header(interfaces);
    this.writer.flush();
    sock.on("close", () => this.stop());
    sock.on("error", () => this.stop());
  }

  /** Whether a frame can be written now; false (and counted) while the reader is behind or after the end. */
  accepts(): boolean {
    if (this.closed) return false;
    if (this.sock.writableLength > MAX_BUFFERED) {
      this.overflowed++;
      return false;
    }
    return true;
  }

  /** Writes one frame (the caller asked accepts() first); ends the stream at the limit. */
  packet(ifIndex: number, buf: Buffer, off: number, len: number, dir?: "in" | "out", comment?: string): void {
    this.writer.packet(ifIndex, buf, off, len, nowNs(), dir, comment);
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
    this.onStop();
    this.writer.flush();
    this.sock.end();
  }
}
