#!/usr/bin/env node
// npm run fuzz -- [--frames N] [--seed S] [--element switch|router|nat|vxlan|ipip[,…]]
//                 [--offload on|off|both] [--quiet]
//
// Long fuzz runs of test/fuzz (the suite runs 100,000 frames per element with a fixed
// seed): N frames per element (default 1,000,000), from seed S (default: a random one,
// printed first, so that any run can be repeated). A failure prints the batch that
// broke a check and the command that reproduces it.
import { spawnSync } from "node:child_process";
import { randomInt } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ELEMENTS = ["switch", "router", "nat", "vxlan", "ipip"];
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

function fail(msg) {
  process.stderr.write(`fuzz: ${msg}\n`);
  process.exit(2);
}

function value(args, i, flag) {
  const v = args[i + 1];
  if (v === undefined || v.startsWith("--")) fail(`${flag} needs a value`);
  return v;
}

const args = process.argv.slice(2);
let frames = 1_000_000;
let seed = randomInt(0, 2 ** 32);
let elements = null;
let offload = "both";
let verbose = true;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === "--frames") {
    const v = value(args, i++, a);
    if (!/^\d+$/.test(v) || Number(v) < 1) fail(`--frames ${v}: not a positive integer`);
    frames = Number(v);
  } else if (a === "--seed") {
    const v = value(args, i++, a);
    if (!/^\d+$/.test(v) || Number(v) >= 2 ** 32) fail(`--seed ${v}: not an integer 0..4294967295`);
    seed = Number(v);
  } else if (a === "--element") {
    const v = value(args, i++, a);
    elements = v.split(",");
    for (const e of elements) if (!ELEMENTS.includes(e)) fail(`--element ${e}: unknown (elements: ${ELEMENTS.join(", ")})`);
  } else if (a === "--offload") {
    const v = value(args, i++, a);
    if (!["on", "off", "both"].includes(v)) fail(`--offload ${v}: use on, off or both`);
    offload = v;
  } else if (a === "--quiet") {
    verbose = false;
  } else if (a === "--help" || a === "-h") {
    process.stdout.write("usage: npm run fuzz -- [--frames N] [--seed S] [--element switch|router|nat|vxlan|ipip[,…]] [--offload on|off|both] [--quiet]\n");
    process.exit(0);
  } else {
    fail(`unknown argument '${a}' (see --help)`);
  }
}

let failed = false;
for (const element of elements ?? ELEMENTS) {
  process.stdout.write(`fuzz: ${element}, ${frames} frames, seed ${seed}, offloads ${offload}\n`);
  const r = spawnSync(
    process.execPath,
    [path.join(repo, "node_modules/vitest/vitest.mjs"), "run", "--config", "test/vitest.config.ts", "test/fuzz/fuzz.test.ts"],
    {
      cwd: repo,
      stdio: "inherit",
      env: {
        ...process.env,
        FUZZ_FRAMES: String(frames),
        FUZZ_SEED: String(seed),
        FUZZ_ELEMENT: element,
        FUZZ_OFFLOAD: offload,
        ...(verbose ? { FUZZ_VERBOSE: "1" } : {}),
      },
    },
  );
  if (r.status !== 0) failed = true;
}
process.stdout.write(failed ? `fuzz: FAILED (seed ${seed})\n` : `fuzz: all passed (seed ${seed})\n`);
process.exit(failed ? 1 : 0);
