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
