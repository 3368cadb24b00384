/**
 * DropCaptureSession — streams the frames a node's elements drop as pcapng over a
 * control connection (`tapnet capture NODE --drops`): one interface per element, one
 * Enhanced Packet Block per dropped frame whose opt_comment (pcapng section 3.5) says
 * why — `router.ttlExpired: TTL 1 or 0: …` — so Wireshark and tshark (`frame.comment`)
 * show the reason with the packet. Elements call it through their drop tap
 * (src/core/element.ts), which is null while no drop capture runs. Like CaptureSession,
 * it never makes the dataplane wait: past the socket's buffer limit frames are left out
 * of the capture and counted (src/control/pcapng-stream.ts).
 */
import type net from "node:net";
import type { CounterSpec, DropTap, Element } from "../core/element.js";
import { PcapngStream } from "./pcapng-stream.js";

export class DropCaptureSession implements DropTap {
  private readonly ifIndex = new Map<Element, number>();
  /** Per element, the comment of each drop counter (built once, not per frame). */
  private readonly comments = new Map<Element, string[]>();
  private readonly stream: PcapngStream;

  constructor(
    private readonly elements: Element[],
    sock: net.Socket,
    limit: number,
  ) {
    for (const el of elements) {
      if (el.dropTap !== null) throw new Error(`a drop capture of ${el.name} is already running`);
    }
    elements.forEach((el, i) => {
      this.ifIndex.set(el, i);
      const spec = el.spec as CounterSpec;
      this.comments.set(
        el,
        spec.names.map((n) => `${el.name}.${n}: ${spec.decls[n].help}`),
      );
    });
    this.stream = new PcapngStream(
      sock,
      limit,
      elements.map((el) => ({ name: `drops.${el.name}`, description: `frames the ${el.kind} ${el.name} dropped` })),
      () => {
        for (const el of this.elements) if (el.dropTap === this) el.setDropTap(null);
      },
    );
    for (const el of elements) el.setDropTap(this);
  }

  get captured(): number {
    return this.stream.captured;
  }
  /** Frames left out of the capture while the reader was behind. */
  get overflowed(): number {
    return this.stream.overflowed;
  }

  dropped(element: Element, id: number, buf: Buffer, off: number, len: number): void {
    if (!this.stream.accepts()) return;
    const i = this.ifIndex.get(element);
    if (i === undefined) return;
    const start = Math.max(off, 0);
    const end = Math.min(off + len, buf.length);
    if (end <= start) return;
    this.stream.packet(i, buf, start, end - start, undefined, (this.comments.get(element) as string[])[id]);
  }

  stop(): void {
    this.stream.stop();
  }
}
