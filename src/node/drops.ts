/**
 * `show drops`: every drop counter of a node's elements that moved, by element and
 * reason, with the reason's one line of help and when the last frame was dropped there.
 * Elements remember, per counter, the pass clock of the last frame counted
 * (src/core/element.ts, `last`); the pass clock is monotonic, so the wall time of a drop
 * is the wall time now minus how long ago it was on that clock.
 */
import { type CounterSpec, Element } from "../core/element.js";

export interface DropRow {
  element: string;
  reason: string;
  frames: number;
  help: string;
  /** Wall time of the last frame dropped for this reason (ISO 8601), or null when not known. */
  last: string | null;
  /** Milliseconds between the last drop and the report, or null. */
  agoMs: number | null;
}

export interface DropsReport {
  total: number;
  drops: DropRow[];
}

/** The drops of `elements` (nulls and non-elements skipped), largest count first. */
export function dropsReport(elements: readonly unknown[], clockNow: number, wallNow: number): DropsReport {
  const drops: DropRow[] = [];
  for (const el of elements) {
    if (!(el instanceof Element)) continue;
    const spec = el.spec as CounterSpec;
    for (const n of spec.ofKind("drop")) {
      const id = spec.id[n];
      const v = el.c[id];
      if (v === 0) continue;
      const at = el.last[id];
      const ago = at > 0 ? Math.max(0, clockNow - at) : null;
      drops.push({
        element: el.name,
        reason: n,
        frames: v,
        help: spec.decls[n].help,
        last: ago === null ? null : new Date(wallNow - ago).toISOString(),
        agoMs: ago === null ? null : Math.round(ago),
      });
    }
  }
  drops.sort((a, b) => b.frames - a.frames || a.element.localeCompare(b.element) || a.reason.localeCompare(b.reason));
  return { total: drops.reduce((s, d) => s + d.frames, 0), drops };
}

/** The text of `show drops` for one node: a summary line, then one line per reason. */
export function renderDrops(r: DropsReport): string {
  if (r.drops.length === 0) return "  no frame dropped";
  const top = r.drops
    .slice(0, 3)
    .map((d) => `${d.element}.${d.reason} ${d.frames}`)
    .join(", ");
  const lines = [`  ${r.total} frame${r.total === 1 ? "" : "s"} dropped for ${r.drops.length} reason${r.drops.length === 1 ? "" : "s"} (${top})`];
  const w1 = Math.max(...r.drops.map((d) => `${d.element}.${d.reason}`.length), 6);
  const w2 = Math.max(...r.drops.map((d) => String(d.frames).length), 6);
  lines.push(`  ${"REASON".padEnd(w1)}  ${"FRAMES".padStart(w2)}  ${"LAST".padEnd(24)}  WHY`);
  for (const d of r.drops) {
    lines.push(`  ${`${d.element}.${d.reason}`.padEnd(w1)}  ${String(d.frames).padStart(w2)}  ${(d.last ?? "-").padEnd(24)}  ${d.help}`);
  }
  return lines.join("\n");
}
