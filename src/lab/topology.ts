/**
 * Topology files: parsing the YAML a user writes to describe a lab and reporting every
 * problem in it at once, each with its place (file:line:col, the path of the field, what
 * is wrong). Nothing is built from a file that fails any check. The schema is in
 * topology-schema.ts, the checks across fields in topology-checks.ts.
 */
import fs from "node:fs";
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document } from "yaml";
import type { z } from "zod";
import { etcdChecks } from "./etcd.js";
import { expandOverlay, overlayNotes } from "./overlay.js";
import { type Declared, fabricChecks, type Problem, semanticChecks } from "./topology-checks.js";
import { IFNAME_MAX, NAME, schemas, type Topology } from "./topology-schema.js";

export * from "./topology-schema.js";
export { overlayNotes } from "./overlay.js";
export type { Problem } from "./topology-checks.js";

export class TopologyError extends Error {
  constructor(
    readonly file: string,
    readonly problems: Problem[],
  ) {
    super(
      `${file}: ${problems.length} problem${problems.length === 1 ? "" : "s"} in the topology file:\n` +
        problems
          .map((p) => {
            const where = p.line !== undefined ? `${file}:${p.line}:${p.col}` : file;
            const path = p.path.length ? p.path.join(".") : "(top level)";
            return `  ${where}: ${path}: ${p.message}`;
          })
          .join("\n"),
    );
    this.name = "TopologyError";
  }
}

function locate(doc: Document, lc: LineCounter, path: (string | number)[]): { line?: number; col?: number } {
  // Walk the path as far as the file has it; point at the key of the deepest field
  // found (or the item, in a list), which is where the mistake shows.
  let node: unknown = doc.contents;
  let at = (node as { range?: [number, number, number] } | null)?.range?.[0];
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) break;
      at = (pair.key as { range?: [number, number, number] }).range?.[0] ?? at;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === "number" && seg < node.items.length) {
      node = node.items[seg];
      at = (node as { range?: [number, number, number] } | null)?.range?.[0] ?? at;
    } else break;
  }
  if (at === undefined) return {};
  const pos = lc.linePos(at);
  return { line: pos.line, col: pos.col };
}

/** Parses and checks a topology text; throws TopologyError listing every problem. */
export function parseTopology(text: string, file: string): Topology {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length) {
    throw new TopologyError(
      file,
      doc.errors.map((e) => {
        const pos = lc.linePos(e.pos[0]);
        return { path: [], message: `YAML: ${e.message.split("\n")[0]}`, line: pos.line, col: pos.col };
      }),
    );
  }
  if (!isMap(doc.contents)) {
    throw new TopologyError(file, [{ path: [], message: "expected a mapping with name, nodes, hosts and links" }]);
  }
  const raw = doc.toJS() as unknown;
  // Every problem in one run: the schema's, then — on what the schema accepted, entry by
  // entry — the checks across fields (unknown nodes, overlapping subnets, bad next hops).
  const problems: Problem[] = [];
  let data: Topology;
  const r = schemas.Topology.safeParse(raw);
  if (r.success) data = r.data;
  else {
    problems.push(...r.error.issues.map((i) => schemaProblem(i)));
    data = salvage(raw as Record<string, unknown>);
  }
  const declared: Declared = {
    nodes: new Set(Object.keys(recordOf((raw as Record<string, unknown>).nodes))),
    hosts: new Set(Object.keys(recordOf((raw as Record<string, unknown>).hosts))),
  };
  const fabric = [...fabricChecks(data), ...etcdChecks(data)];
  problems.push(...fabric);
  // The overlay is expanded only from a sound fabric (it computes from those fields).
  const { topology, notes } = fabric.length === 0 ? expandOverlay(data) : { topology: data, notes: [] };
  problems.push(...semanticChecks(topology, declared));
  if (problems.length) {
    const seen = new Set<string>();
    const located = problems
      .map((p) => ({ ...p, ...locate(doc, lc, p.path) }))
      .filter((p) => {
        const key = `${p.path.join(".")}\0${p.message}`;
        if (seen.has(key)) return false;
        seen.add(key);
        return true;
      })
      .sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.col ?? 0) - (b.col ?? 0));
    throw new TopologyError(file, located);
  }
  overlayNotes.set(topology, notes);
  return topology;
}

function schemaProblem(i: z.core.$ZodIssue): Problem {
  const path = i.path.map((p) => (typeof p === "symbol" ? String(p) : p));
  let message = i.message;
  // A bad key of a record (a host or node name): report the key's own problem.
  if (i.code === "invalid_key" && i.issues.length) message = i.issues[0].message;
  if (i.code === "unrecognized_keys") message = `unknown field${i.keys.length > 1 ? "s" : ""} ${i.keys.map((k) => `'${k}'`).join(", ")}`;
  if (i.code === "invalid_type" && /received undefined/.test(i.message)) message = "missing (required)";
  return { path, message };
}

function recordOf(v: unknown): Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

/**
 * The entries of a file that failed the schema which pass it on their own, so the checks
 * across fields can still look at them. Lists keep their indices (holes where an entry
 * failed), so a problem found later still names the right `links[i]`.
 */
function salvage(raw: Record<string, unknown>): Topology {
  const keep = <T>(schema: z.ZodType<T>, rec: unknown, keyOk: (k: string) => boolean): Record<string, T> => {
    const out: Record<string, T> = {};
    for (const [k, v] of Object.entries(recordOf(rec))) {
      const p = schema.safeParse(v);
      if (p.success && keyOk(k)) out[k] = p.data;
    }
    return out;
  };
  const okName = (k: string): boolean => NAME.test(k) && k.length <= IFNAME_MAX;
  const links: Topology["links"] = [];
  if (Array.isArray(raw.links)) {
    raw.links.forEach((l, i) => {
      const p = schemas.Link.safeParse(l);
      if (p.success) links[i] = p.data;
    });
  }
  const underlay = schemas.Topology.shape.underlay.safeParse(raw.underlay);
  const overlay = schemas.Topology.shape.overlay.safeParse(raw.overlay);
  return {
    name: typeof raw.name === "string" && NAME.test(raw.name) ? raw.name : "lab",
    nodes: keep(schemas.Node, raw.nodes, okName),
    hosts: keep(schemas.Host, raw.hosts, okName),
    links,
    underlay: underlay.success ? underlay.data : undefined,
    overlay: overlay.success ? overlay.data : undefined,
  };
}

export function loadTopology(file: string): Topology {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new Error(`${file}: cannot read the topology file (${err.code ?? err.message})`);
  }
  return parseTopology(text, file);
}
