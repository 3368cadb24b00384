/** table()'s lines, each indented by `indent` (a section inside a longer report). */
export function indentedTable(headers: string[], rows: Array<Array<string | number | null | undefined>>, indent = "    "): string[] {
  return table(headers, rows)
    .split("\n")
    .map((l) => indent + l);
}

/** Plain text tables for `show` and `lab status`, aligned like iproute2's output. */
export function table(headers: string[], rows: Array<Array<string | number | null | undefined>>): string {
  const cells = [headers, ...rows.map((r) => r.map((c) => (c === null || c === undefined ? "-" : String(c))))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => r[i].length)));
  return cells
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i])))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

export function vlanList(v: number[]): string {
  // 10,11,12,20 -> 10-12,20
  const out: string[] = [];
  for (let i = 0; i < v.length; ) {
    let j = i;
    while (j + 1 < v.length && v[j + 1] === v[j] + 1) j++;
    out.push(j > i ? `${v[i]}-${v[j]}` : `${v[i]}`);
    i = j + 1;
  }
  return out.join(",");
}

/** Commander's parser for `-c, --count <n>`: a positive integer, else a clear error. */
export function parseCount(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--count: '${v}' is not a positive integer`);
  return n;
}
