// The `trace` scenario of scripts/bench.mjs: what tracing costs the forwarding path.
// Three ways of running the same switch and router labs (scripts/labs/switch.yaml h1 ->
// h2, scripts/labs/router.yaml h1 -> h2), measured with the bench's 64-byte trafgen flood
// (flood(): frames/s received at h2, and the node's CPU seconds per million frames it sent):
//   before  a tapnet tree built from a commit without tracing (--before DIR: a checkout
//           with `npm run build` done; its own CLI brings its lab up, so its nodes run
//           its code); left out when --before is not given
//   off     this tree, no trace armed (tracing compiled in, off: null tests on fields)
//   armed   this tree, the same lab as `off`, with a live trace armed on a filter no
//           frame of the flood matches (`tapnet trace NODE host 192.0.2.99`): every
//           received batch is checked against the filter, frame by frame
// Both labs stay up for the whole scenario and the runs interleave, before, off, armed,
// before, off, armed … (--repeat N rounds), so a change in the machine's load meets every
// variant alike. The table gives medians, and ratios to `off` and to `before` taken
// within each round (paired): their median and quartiles over the rounds. On a shared machine the absolute numbers move with the load; the ratios
// are what to read, and several rounds matter.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { median, percentile, ratio } from "./stats.mjs";

/** A filter no frame of the flood (UDP 10.0.x.x -> 10.0.x.x) or of ARP matches. */
export const UNRELATED_FILTER = ["host", "192.0.2.99"];

const LABS = [
  { scenario: "switch", file: "switch.yaml", node: "sw1", client: "h1", server: "h2", dst: "10.0.0.2" },
  { scenario: "router", file: "router.yaml", node: "r1", client: "h1", server: "h2", dst: "10.0.2.10" },
];

/**
 * c: the bench's helpers (controlHelpers() of scripts/bench.mjs) plus flood and labProbe;
 * before: the directory of a built tree without tracing, or null.
 */
export async function runTrace(c, before) {
  const { opts, say } = c;
  const beforeCli = before ? path.join(path.resolve(before), "dist/cli/main.js") : null;
  if (beforeCli && !fs.existsSync(beforeCli)) {
    throw new Error(`--before ${before}: ${beforeCli} does not run (build that tree first: npm run build)`);
  }
  const beforeCommit = before ? spawnSync("git", ["-C", before, "log", "-1", "--format=%h %s"], { encoding: "utf8" }).stdout.trim() : null;
  const out = { filter: UNRELATED_FILTER.join(" "), before: before ? { dir: path.resolve(before), commit: beforeCommit } : null, scenarios: [] };
  for (const l of LABS) {
    const variants = [];
    const cleanups = [];
    try {
      if (beforeCli) {
        const file = await c.labVariant(path.join(c.LABS, l.file), `bench-trb-${l.scenario.slice(0, 2)}`);
        const ns = await labUpWith(c, beforeCli, file);
        cleanups.push(() => labDownWith(beforeCli, file));
        variants.push({ name: "before", ns, lab: path.basename(file, ".yaml"), armed: false });
      }
      const file = await c.labVariant(path.join(c.LABS, l.file), `bench-tr-${l.scenario.slice(0, 2)}`);
      const ns = await c.labUp(file);
      cleanups.push(() => c.labDown(file));
      const lab = path.basename(file, ".yaml");
      variants.push({ name: "off", ns, lab, armed: false }, { name: "armed", ns, lab, armed: true });
      for (const v of variants) await c.waitReachable(v.ns(l.client), l.dst);
      const samples = Object.fromEntries(variants.map((v) => [v.name, { kpps: [], cpuSPerMFrames: [] }]));
      for (let r = 0; r < opts.repeat; r++) {
        for (const v of variants) {
          const trace = v.armed ? await arm(c, l.node, v.lab) : null;
          try {
            const probe = c.labProbe(v.lab);
            const f = await c.flood(v.ns(l.client), v.ns(l.server), l.dst, probe);
            const frames = f.after.frames - f.before.frames;
            const cpu = frames > 0 ? (f.after.cpuS - f.before.cpuS) / (frames / 1e6) : null;
            samples[v.name].kpps.push(f.kpps);
            samples[v.name].cpuSPerMFrames.push(cpu);
            say(
              `trace: ${l.scenario} ${v.name} (round ${r + 1}/${opts.repeat}): ${f.kpps.toFixed(1)} kpps, CPU ${cpu === null ? "-" : cpu.toFixed(2)} s/Mframe`,
            );
          } finally {
            if (trace) await disarm(c, trace);
          }
        }
      }
      out.scenarios.push({ name: l.scenario, ...summarize(samples), samples });
    } finally {
      for (const f of cleanups.reverse()) c.quietly(f);
    }
  }
  return out;
}

/** `lab up` with another tree's CLI (its nodes run that tree's code). */
async function labUpWith(c, cli, file) {
  const name = path.basename(file, ".yaml");
  const r = await c.runAsync([process.execPath, cli, "lab", "up", file, "-q"], 120);
  if (r.status !== 0) {
    labDownWith(cli, file);
    throw new Error(`lab up ${name} with ${cli} failed: ${(r.stderr || r.stdout || "").trim().split("\n").slice(0, 4).join(" ")}`);
  }
  return (n) => `tn.${name}.${n}`;
}

function labDownWith(cli, file) {
  const r = spawnSync(process.execPath, [cli, "lab", "down", file, "-q"], { encoding: "utf8", timeout: 90_000, killSignal: "SIGKILL" });
  if (r.status !== 0) throw new Error(`lab down ${path.basename(file)}: ${(r.stderr || r.stdout || "").trim()}`);
}

/** Arms a live trace on `node` with the unrelated filter; resolves once the node says it is on. */
async function arm(c, node, lab) {
  const d = c.startDaemon([process.execPath, c.CLI, "trace", node, ...UNRELATED_FILTER, "-c", "1", "--lab", lab], `tapnet trace ${node}`);
  await c.waitFor(`tapnet trace ${node} to arm`, () => /tracing on/.test(d.output()) || !c.alive(d.pid), 15_000, 20);
  if (!/tracing on/.test(d.output())) throw new Error(`tapnet trace ${node} did not arm: ${d.output().trim().slice(-300)}`);
  return d;
}

/** Stops the trace client by its PID; the node disarms when its socket closes. */
async function disarm(c, d) {
  c.stopProc(d.pid);
}

/**
 * Medians per variant, and each variant against `off` and `before` as paired ratios: the
 * ratio within each round (the runs of one round are seconds apart, so a slow minute of
 * the machine weighs on both), their median and quartiles (p25-p75) over the rounds.
 */
export function summarize(samples) {
  const medians = Object.fromEntries(
    Object.entries(samples).map(([k, s]) => [k, { kpps: median(s.kpps), cpuSPerMFrames: median(s.cpuSPerMFrames.filter((x) => x !== null)) }]),
  );
  const paired = (a, b, key) => {
    if (!a || !b) return null;
    const q = a[key].map((x, i) => ratio(x, b[key][i])).filter((x) => x !== null);
    return q.length ? { median: median(q), p25: percentile(q, 25), p75: percentile(q, 75), rounds: q.length } : null;
  };
  const ratios = {};
  for (const v of Object.keys(samples)) {
    ratios[v] = {
      vsOff: { kpps: paired(samples[v], samples.off, "kpps"), cpu: paired(samples[v], samples.off, "cpuSPerMFrames") },
      vsBefore: { kpps: paired(samples[v], samples.before, "kpps"), cpu: paired(samples[v], samples.before, "cpuSPerMFrames") },
    };
  }
  return { medians, ratios };
}
