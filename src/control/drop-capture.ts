/**
 * DropCaptureSession — streams the frames a node's elements drop as pcapng over a
 * control connection (`tapnet capture NODE --drops`): one interface per element, one
 * Enhanced Packet Block per dropped frame whose opt_comment (pcapng section 3.5) says
 * why — `router.ttlExpired: TTL 1 or 0: …` — so Wireshark and tshark (`frame.comment`)
 * show the reason with the packet. Elements call it through their drop tap
 * (src/core/element.ts), which is null while no drop capture runs. Like CaptureSession,
 * it never makes the dataplane wait: past the socket's buffer limit frames are left out
 * of the capture and counted.
 */
import type net from "node:net";
import type { CounterSpec, DropTap, Element } from "../core/element.js";
import { nowNs, PcapngWriter } from "../io/pcapng.js";

const MAX_BUFFERED = 16 * 1024 * 1024;

export class DropCaptureSession implements DropTap {
  captured = 0;
  overflowed = 0;
  private readonly ifIndex = new Map<Element, number>();
  /** Per element, the comment of each drop counter (built once, not per frame). */
  private readonly comments = new Map<Element, string[]>();
  private readonly writer: PcapngWriter;
  private closed = false;
  private flushPending: NodeJS.Immediate | null = null;

  constructor(
    private readonly elements: Element[],
    private readonly sock: net.Socket,
    private readonly limit: number,
  ) {
    for (const el of elements) {
      if (el.dropTap !== null) throw new Error(`a drop capture of ${el.name} is already running`);
    }
    this.writer = new PcapngWriter((chunk) => {
      sock.write(chunk);
    });
    elements.forEach((el, i) => {
      this.ifIndex.set(el, i);
      const spec = el.spec as CounterSpec;
      this.comments.set(
        el,
        spec.names.map((n) => `${el.name}.${n}: ${spec.decls[n].help}`),
      );
    });
    this.writer.header(elements.map((el) => ({ name: `drops.${el.name}`, description: `frames the ${el.kind} ${el.name} dropped` })));
    this.writer.flush();
    for (const el of elements) el.setDropTap(this);
    sock.on("close", () => this.stop());
    sock.on("error", () => this.stop());
  }

  dropped(element: Element, id: number, buf: Buffer, off: number, len: number): void {
    if (this.closed) return;
    if (this.sock.writableLength > MAX_BUFFERED) {
      this.overflowed++;
      return;
    }
    const i = this.ifIndex.get(element);
    if (i === undefined) return;
    const start = Math.max(off, 0);
    const end = Math.min(off + len, buf.length);
    if (end <= start) return;
    this.writer.packet(i, buf, start, end - start, nowNs(), undefined, (this.comments.get(element) as string[])[id]);
    this.captured++;
    if (this.limit > 0 && this.captured >= this.limit) return this.stop();
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
    for (const el of this.elements) if (el.dropTap === this) el.setDropTap(null);
    this.writer.flush();
    this.sock.end();
  }
}
