/**
 * TraceRecorder — what the elements decided about one packet, step by step, for
 * `tapnet trace` (src/node/trace.ts). Elements hold a `tr` field that is null unless a
 * trace is armed, so tracing costs one well-predicted branch on a field where a decision
 * is made and nothing else; the strings are built only while a trace is armed.
 *
 * `dry`: a what-if trace (OVS's ofproto/trace): elements take no step that outlives the
 * pass (the router does not queue a packet for ARP), and the engine sends nothing.
 */
export interface TraceStep {
  element: string;
  what: string;
}

export class TraceRecorder {
  readonly steps: TraceStep[] = [];
  /** Steps kept at most: a trace is bounded however many frames a pass makes. */
  static readonly MAX_STEPS = 256;

  constructor(readonly dry: boolean) {}

  add(element: string, what: string): void {
    if (this.steps.length < TraceRecorder.MAX_STEPS) this.steps.push({ element, what });
  }
}

/** An IPv4 packet's addresses and ports as text, for NAT steps: `tcp 10.0.0.1:4000 > 10.96.0.10:80`. */
export function ipTuple(buf: Buffer, ip: number): string {
  const a = (o: number): string => `${buf[o]}.${buf[o + 1]}.${buf[o + 2]}.${buf[o + 3]}`;
  const proto = buf[ip + 9];
  const l4 = ip + (buf[ip] & 15) * 4;
  const fragment = (buf.readUInt16BE(ip + 6) & 0x1fff) !== 0;
  if ((proto === 6 || proto === 17) && !fragment && l4 + 4 <= buf.length) {
    return `${proto === 6 ? "tcp" : "udp"} ${a(ip + 12)}:${buf.readUInt16BE(l4)} > ${a(ip + 16)}:${buf.readUInt16BE(l4 + 2)}`;
  }
  if (proto === 1 && !fragment && l4 + 8 <= buf.length) return `icmp ${a(ip + 12)} > ${a(ip + 16)} type ${buf[l4]} id ${buf.readUInt16BE(l4 + 4)}`;
  return `proto ${proto} ${a(ip + 12)} > ${a(ip + 16)}`;
}

/** The step of a NAT hook: what it rewrote, or that it left the packet as it was. */
export function natStep(hook: string, before: string, after: string): string {
  return before === after ? `NAT ${hook}: ${after} unchanged` : `NAT ${hook}: ${before} -> ${after}`;
}
