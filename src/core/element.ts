/**
 * The element contract: what every stage of a node's data path (the learning switch, the
 * router, the NAT, …) declares, in one place, so the graph builder can wire it, `show
 * graph` can describe it and `show stats` can print it without knowing the element.
 *
 *   inputs/outputs  named, like Click's ports and VPP's next nodes (describe());
 *   counters        one declaration — names with one line of help, grouped by kind —
 *                   from which the storage (a Float64Array), the names and the JSON of
 *                   `show stats` are derived (VPP's foreach_*_error). Kinds say what a
 *                   counter means for a frame: every frame an element takes ends in
 *                   exactly one `forward`, `deliver` or `drop` counter; `event`
 *                   counters count what happened on the way (learned a MAC, sent an
 *                   ARP request);
 *   scratch         pool bytes it writes frames into (scratchBytes/attachScratch);
 *   passes          beginPass() at the start of every pass (reset scratch).
 *
 * Counting on the hot path is `this.c[C.name]++` with `C` the declaration's ids (plain
 * numbers, constant per module): no objects, no strings per frame.
 */
import type { FrameList } from "./batch.js";
import type { Port } from "./port.js";
import type { TraceRecorder } from "./trace.js";

export type CounterKind = "forward" | "deliver" | "drop" | "event";
const KINDS: readonly CounterKind[] = ["forward", "deliver", "drop", "event"];

export interface CounterDecl {
  readonly kind: CounterKind;
  /** One line: what the counter counts (shown by `show stats --help` and in docs). */
  readonly help: string;
}

/**
 * An element's counters, grouped by kind, each name with its one line of help:
 * `{ forward: { forwarded: "…" }, drop: { runt: "…", badSrcMac: "…" }, event: { … } }`.
 */
export type CounterGroups = { readonly [kind in CounterKind]?: Readonly<Record<string, string>> };

/** The counter names a CounterGroups declares. */
export type CounterNames<G extends CounterGroups> = { [kind in keyof G]-?: keyof NonNullable<G[kind]> }[keyof G] & string;

/** A declared counter list: names in declaration order, their ids, kinds and help. */
export class CounterSpec<K extends string = string> {
  readonly names: readonly K[];
  /** name -> index into the element's counter array. */
  readonly id: Readonly<Record<K, number>>;
  readonly decls: Readonly<Record<K, CounterDecl>>;

  constructor(decls: Record<K, CounterDecl>) {
    this.names = Object.freeze(Object.keys(decls) as K[]);
    // Built in one go (fromEntries), not by a store per name: V8 turns an object that
    // gets more than ~16 properties by keyed stores into a dictionary, and then every
    // `C.name` on the hot path is a hash lookup instead of a constant.
    this.id = Object.freeze(Object.fromEntries(this.names.map((n, i) => [n, i])) as Record<K, number>);
    this.decls = Object.freeze({ ...decls });
  }

  /** Fresh storage for one element instance. */
  create(): Float64Array {
    return new Float64Array(this.names.length);
  }

  /** The counters as an object, in declaration order (for `show stats`). */
  read(values: Float64Array): Record<K, number> {
    const out = {} as Record<K, number>;
    for (let i = 0; i < this.names.length; i++) out[this.names[i]] = values[i];
    return out;
  }

  /** Names of the counters of one kind. */
  ofKind(kind: CounterKind): K[] {
    return this.names.filter((n) => this.decls[n].kind === kind);
  }

  /**
   * This list followed by another element's, in a row (the router keeps the
   * reassembler's counters in its own storage: `other` starts at the id of its first
   * name). Throws when a name is in both.
   */
  concat<P extends string>(other: CounterSpec<P>): CounterSpec<K | P> {
    const decls: Record<string, CounterDecl> = { ...this.decls };
    for (const n of other.names) {
      if (Object.hasOwn(decls, n)) throw new Error(`counter ${n} declared twice`);
      decls[n] = other.decls[n];
    }
    return new CounterSpec<K | P>(decls as Record<K | P, CounterDecl>);
  }
}

/**
 * Declares an element's counters, grouped by kind, in the order `show stats` prints
 * them: `const S = counters({ forward: { forwarded: "…" }, drop: { runt: "…" } })`.
 * Throws when a name is in two groups or a group is not a kind (a slip in the
 * declaration, found when the module loads).
 */
export function counters<G extends CounterGroups>(groups: G): CounterSpec<CounterNames<G>> {
  const decls: Record<string, CounterDecl> = {};
  for (const [kind, names] of Object.entries(groups) as Array<[CounterKind, Record<string, string>]>) {
    if (!KINDS.includes(kind)) throw new Error(`counter group ${kind} is not a kind (${KINDS.join(", ")})`);
    for (const [name, help] of Object.entries(names)) {
      if (Object.hasOwn(decls, name)) throw new Error(`counter ${name} declared twice`);
      decls[name] = { kind, help };
    }
  }
  return new CounterSpec(decls as Record<CounterNames<G>, CounterDecl>);
}

/**
 * Receives the frames an element drops while a `capture --drops` is attached (the bytes
 * are only valid during the call: a tap copies what it keeps).
 */
export interface DropTap {
  dropped(element: Element, id: number, buf: Buffer, off: number, len: number): void;
}

/** Where an element takes frames: frames received on `from` (one of its ports). */
export interface FrameSink {
  process(from: Port, frames: FrameList, pool: Buffer, now: number): void;
}

/** What `show graph` says of an element. */
export interface ElementInfo {
  name: string;
  kind: string;
  inputs: string[];
  outputs: string[];
  /** Hooks it is called from or calls (the NAT's netfilter-style hooks). */
  hooks?: string[];
  counters: string[];
}

/**
 * The base of every element: its name in the node's graph, its counters, and the drop
 * bookkeeping `show drops` reads (how many, and when the last one was, per reason).
 */
export abstract class Element<K extends string = string> {
  abstract readonly kind: string;
  /** Counter values, indexed by the spec's ids. */
  readonly c: Float64Array;
  /** Per counter: the pass clock (ms) of the last frame counted there; 0 = never. */
  readonly last: Float64Array;
  /**
   * Set while a drop capture is attached; null otherwise, so a drop costs one
   * well-predicted branch on this field and nothing else when nobody captures.
   */
  dropTap: DropTap | null = null;
  /** The armed trace (src/core/trace.ts), or null: one branch where a decision is made. */
  tr: TraceRecorder | null = null;

  constructor(
    readonly name: string,
    readonly spec: CounterSpec<K>,
  ) {
    this.c = spec.create();
    this.last = spec.create();
  }

  /** Counts a frame dropped (or ending) at counter `id`, remembering when. */
  protected count(id: number, now: number): void {
    this.c[id]++;
    this.last[id] = now;
  }

  /** Counts a frame dropped at counter `id` and hands its bytes to the drop tap, if any. */
  protected countDrop(id: number, now: number, buf: Buffer, off: number, len: number): void {
    this.c[id]++;
    this.last[id] = now;
    if (this.dropTap !== null) this.dropTap.dropped(this, id, buf, off, len);
    if (this.tr !== null) this.tr.add(this.name, `drop ${this.spec.names[id]}: ${this.spec.decls[this.spec.names[id]].help}`);
  }

  /** Arms (or with null disarms) a trace on this element. */
  setTrace(tr: TraceRecorder | null): void {
    this.tr = tr;
  }

  /** Attaches (or with null detaches) the receiver of this element's dropped frames. */
  setDropTap(tap: DropTap | null): void {
    this.dropTap = tap;
  }

  beginPass(): void {}

  counters(): Record<K, number> {
    return this.spec.read(this.c);
  }

  abstract describe(): ElementInfo;
}
