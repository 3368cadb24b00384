// The bench's ratio chart (node scripts/bench.mjs --svg FILE), written by hand: one
// horizontal bar per scenario, metric and reference, on a log scale around a 1.0 line
// (tapnet equal to its reference). Green when tapnet is the better of the two for that
// metric (higher throughput, lower latency/CPU/memory), red when worse. No dependency;
// pure function (test/bench.test.ts checks it).

const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** 1-2-5 ticks covering [lo, hi] (both > 0). */
function ticks(lo, hi) {
  const out = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const t = m * 10 ** e;
      if (t >= lo * 0.999 && t <= hi * 1.001) out.push(Number(t.toPrecision(3)));
    }
  }
  return out;
}
const fmtTick = (t) => (t >= 1 ? String(t) : t.toPrecision(1).replace(/^0\./, "0."));
const fmtRatio = (r) => (r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2));

/**
 * records: [{ group, metric, against, ratio, better: "higher"|"lower", detail? }], in
 * display order (consecutive records of one group are drawn under one heading).
 * Records without a positive ratio are left out. Returns the SVG document as a string.
 */
export function ratioChart(records, { title = "tapnet / reference", subtitle = "", subtitle2 = "" } = {}) {
  const rs = records.filter((r) => typeof r.ratio === "number" && r.ratio > 0 && Number.isFinite(r.ratio));
  const W = 980;
  const LABEL_W = 330;
  const PLOT_W = 500;
  const x0 = LABEL_W + 10;
  const ROW = 20;
  const HEAD = 24;
  const TOP = 112;
  let lo = Math.min(1, ...rs.map((r) => r.ratio)) / 1.15;
  let hi = Math.max(1, ...rs.map((r) => r.ratio)) * 1.15;
  // Snap the domain out to the neighbouring 1-2-5 values.
  const steps = ticks(lo / 10, hi * 10);
  lo = [...steps].reverse().find((t) => t <= lo) ?? lo;
  hi = steps.find((t) => t >= hi) ?? hi;
  const L0 = Math.log10(lo);
  const L1 = Math.log10(hi);
  const x = (r) => x0 + ((Math.log10(r) - L0) / (L1 - L0)) * PLOT_W;

  const body = [];
  let y = TOP;
  let group = null;
  for (const r of rs) {
    if (r.group !== group) {
      group = r.group;
      y += 6;
      body.push(`<text x="10" y="${y + 15}" class="group">${esc(group)}</text>`);
      body.push(`<line x1="10" x2="${W - 10}" y1="${y + HEAD - 2}" y2="${y + HEAD - 2}" class="sep"/>`);
      y += HEAD;
    }
    const good = r.better === "higher" ? r.ratio >= 1 : r.ratio <= 1;
    const xa = Math.min(x(1), x(r.ratio));
    const w = Math.max(2, Math.abs(x(r.ratio) - x(1)));
    const tip = `${group}: ${r.metric} vs ${r.against}: ${fmtRatio(r.ratio)}x${r.detail ? ` (${r.detail})` : ""}`;
    body.push(
      `<g><title>${esc(tip)}</title>` +
        `<text x="${LABEL_W}" y="${y + 14}" class="label" text-anchor="end">${esc(r.metric)} <tspan class="vs">vs ${esc(r.against)}</tspan></text>` +
        `<rect x="${xa.toFixed(1)}" y="${y + 3}" width="${w.toFixed(1)}" height="${ROW - 6}" class="${good ? "good" : "bad"}"/>` +
        `<text x="${x0 + PLOT_W + 10}" y="${y + 14}" class="value">${fmtRatio(r.ratio)}x <tspan class="${good ? "vgood" : "vbad"}">${good ? "better" : "worse"}</tspan></text></g>`,
    );
    y += ROW;
  }
  const bottom = y + 10;
  const axis = [];
  for (const t of ticks(lo, hi)) {
    const xt = x(t).toFixed(1);
    axis.push(`<line x1="${xt}" x2="${xt}" y1="${TOP - 4}" y2="${bottom}" class="${t === 1 ? "one" : "grid"}"/>`);
    axis.push(`<text x="${xt}" y="${TOP - 10}" class="tick" text-anchor="middle">${fmtTick(t)}</text>`);
  }
  const H = bottom + 46;
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">
<style>
  .title { font-size: 17px; font-weight: bold; fill: #222; }
  .sub { font-size: 12px; fill: #555; }
  .group { font-size: 14px; font-weight: bold; fill: #222; }
  .label { font-size: 12px; fill: #222; }
  .vs { fill: #777; }
  .value { font-size: 12px; fill: #222; font-variant-numeric: tabular-nums; }
  .tick { font-size: 11px; fill: #555; }
  .grid { stroke: #e3e3e3; stroke-width: 1; }
  .one { stroke: #222; stroke-width: 1.5; }
  .sep { stroke: #ccc; stroke-width: 0.5; }
  .good { fill: #2e7d32; }
  .bad { fill: #c62828; }
  .legend { font-size: 12px; fill: #333; }
  .vgood { fill: #2e7d32; font-size: 11px; }
  .vbad { fill: #c62828; font-size: 11px; }
</style>
<rect width="100%" height="100%" fill="#fff"/>
<text x="10" y="24" class="title">${esc(title)}</text>
<text x="10" y="43" class="sub">${esc(subtitle)}</text>
<text x="10" y="59" class="sub">${esc(subtitle2.length > 150 ? `${subtitle2.slice(0, 149)}…` : subtitle2)}</text>
<rect x="10" y="${TOP - 39}" width="11" height="11" class="good"/><text x="26" y="${TOP - 29}" class="legend">tapnet better</text>
<rect x="130" y="${TOP - 39}" width="11" height="11" class="bad"/><text x="146" y="${TOP - 29}" class="legend">tapnet worse</text>
<text x="250" y="${TOP - 29}" class="legend">ratio = tapnet / reference (log scale); the black line is 1.0: equal</text>
${axis.join("\n")}
${body.join("\n")}
<text x="10" y="${bottom + 22}" class="sub">Higher is better for throughput and lookup rates; lower is better for RTT, CPU per frame, build time and bytes per entry.</text>
<text x="10" y="${bottom + 38}" class="sub">Bars start at 1.0: to the right, tapnet's number is the larger; to the left, the smaller.</text>
</svg>
`;
}

const PALETTE = ["#1565c0", "#c62828", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#5d4037"];

/**
 * A line chart of y against x for a few series (the RFC 2544 chart: zero-loss frames/s
 * against frame size, one line per device under test), y on a log scale (the rates span
 * decades), x at the measured values spaced evenly (frame sizes are not evenly spread).
 * series: [{ name, points: [{ x, y, atLeast? }] }]; a point with atLeast (the sender, not
 * the device, was the limit) is drawn hollow. Points without a positive y are left out.
 * Pure function; returns the SVG document as a string.
 */
export function lineChart(series, { title = "", subtitle = "", subtitle2 = "", xLabel = "", yLabel = "", yFormat = (v) => String(v) } = {}) {
  const ss = series
    .map((s) => ({ ...s, points: s.points.filter((p) => typeof p.y === "number" && p.y > 0 && Number.isFinite(p.y)) }))
    .filter((s) => s.points.length);
  const xs = [...new Set(ss.flatMap((s) => s.points.map((p) => p.x)))].sort((a, b) => a - b);
  const ys = ss.flatMap((s) => s.points.map((p) => p.y));
  const W = 900;
  const H = 520;
  const L = 90;
  const R = 200;
  const T = 80;
  const B = 90;
  let lo = ys.length ? Math.min(...ys) / 1.3 : 1;
  let hi = ys.length ? Math.max(...ys) * 1.3 : 10;
  const steps = ticks(lo / 10, hi * 10);
  lo = [...steps].reverse().find((t) => t <= lo) ?? lo;
  hi = steps.find((t) => t >= hi) ?? hi;
  const px = (x) => L + (xs.length > 1 ? (xs.indexOf(x) / (xs.length - 1)) * (W - L - R) : (W - L - R) / 2);
  const py = (y) => T + (1 - (Math.log10(y) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * (H - T - B);
  const out = [];
  for (const t of ticks(lo, hi)) {
    const y = py(t).toFixed(1);
    out.push(
      `<line x1="${L}" x2="${W - R}" y1="${y}" y2="${y}" class="grid"/><text x="${L - 8}" y="${Number(y) + 4}" class="tick" text-anchor="end">${esc(yFormat(t))}</text>`,
    );
  }
  for (const x of xs) {
    const X = px(x).toFixed(1);
    out.push(
      `<line x1="${X}" x2="${X}" y1="${T}" y2="${H - B}" class="grid"/><text x="${X}" y="${H - B + 18}" class="tick" text-anchor="middle">${esc(x)}</text>`,
    );
  }
  ss.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    const pts = s.points.map((p) => `${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`).join(" ");
    out.push(`<polyline points="${pts}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const p of s.points) {
      out.push(
        `<circle cx="${px(p.x).toFixed(1)}" cy="${py(p.y).toFixed(1)}" r="4" fill="${p.atLeast ? "#fff" : color}" stroke="${color}" stroke-width="2"><title>${esc(`${s.name}: ${p.x}: ${p.atLeast ? "≥ " : ""}${yFormat(p.y)}`)}</title></circle>`,
      );
    }
    const ly = T + 10 + i * 22;
    out.push(
      `<line x1="${W - R + 15}" x2="${W - R + 40}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="3"/><text x="${W - R + 46}" y="${ly + 4}" class="legend">${esc(s.name)}</text>`,
    );
  });
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">
<style>
  .title { font-size: 17px; font-weight: bold; fill: #222; }
  .sub { font-size: 12px; fill: #555; }
  .tick { font-size: 11px; fill: #555; }
  .axis { font-size: 12px; fill: #222; }
  .grid { stroke: #e3e3e3; stroke-width: 1; }
  .legend { font-size: 12px; fill: #222; }
</style>
<rect width="100%" height="100%" fill="#fff"/>
<text x="10" y="24" class="title">${esc(title)}</text>
<text x="10" y="43" class="sub">${esc(subtitle.length > 140 ? `${subtitle.slice(0, 139)}…` : subtitle)}</text>
<text x="10" y="59" class="sub">${esc(subtitle2.length > 140 ? `${subtitle2.slice(0, 139)}…` : subtitle2)}</text>
${out.join("\n")}
<text x="${(L + W - R) / 2}" y="${H - B + 40}" class="axis" text-anchor="middle">${esc(xLabel)}</text>
<text x="18" y="${(T + H - B) / 2}" class="axis" text-anchor="middle" transform="rotate(-90 18 ${(T + H - B) / 2})">${esc(yLabel)}</text>
<text x="10" y="${H - 20}" class="sub">Hollow points: the sender, not the device, set the rate (nothing was lost at its maximum), so the device's throughput is at least this.</text>
</svg>
`;
}
