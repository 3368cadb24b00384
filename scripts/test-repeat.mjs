#!/usr/bin/env node
// npm run test:repeat -- N [vitest filters…]
// Runs the test suite (or the files named) N times in a row and reports, per test, how
// many runs it failed in: a test that fails in any run is flaky, and a flaky test is a
// broken test. Exits non-zero when any test failed in any run.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const [nArg, ...filters] = process.argv.slice(2);
const n = Number(nArg ?? 3);
if (!Number.isInteger(n) || n < 1 || n > 100) {
  console.error(`test:repeat: the number of runs must be an integer 1..100, got '${nArg}'`);
  process.exit(2);
}
const fails = new Map(); // "file > test" -> [run numbers]
const runs = [];
for (let i = 1; i <= n; i++) {
  const out = path.join(os.tmpdir(), `tapnet-repeat-${process.pid}-${i}.json`);
  const t0 = Date.now();
  const r = spawnSync(
    process.execPath,
    [
      path.join(root, "node_modules/vitest/vitest.mjs"),
      "run",
      "--config",
      "test/vitest.config.ts",
      "--reporter=default",
      "--reporter=json",
      `--outputFile.json=${out}`,
      ...filters,
    ],
    { cwd: root, stdio: ["ignore", "inherit", "inherit"], env: process.env },
  );
  const secs = (Date.now() - t0) / 1000;
  let report = null;
  try {
    report = JSON.parse(fs.readFileSync(out, "utf8"));
  } catch {
    // vitest died before writing its report: count the whole run as failed
  }
  fs.rmSync(out, { force: true });
  let failed = 0;
  let passed = 0;
  for (const file of report?.testResults ?? []) {
    const rel = path.relative(root, file.name);
    if (file.status === "failed" && (file.assertionResults ?? []).length === 0) {
      const key = `${rel} > (the file itself: ${String(file.message ?? "").split("\n")[0]})`;
      fails.set(key, [...(fails.get(key) ?? []), i]);
      failed++;
    }
    for (const t of file.assertionResults ?? []) {
      if (t.status === "failed") {
        const key = `${rel} > ${t.fullName}`;
        fails.set(key, [...(fails.get(key) ?? []), i]);
        failed++;
      } else if (t.status === "passed") passed++;
    }
  }
  if (report === null) {
    fails.set(`(run ${i}: vitest exited ${r.status} without a report)`, [i]);
    failed++;
  }
  runs.push({ i, secs, passed, failed, status: r.status });
  console.log(`\ntest:repeat: run ${i}/${n}: ${passed} passed, ${failed} failed, ${secs.toFixed(0)} s`);
}
console.log(`\ntest:repeat: ${n} run(s)`);
for (const r of runs) console.log(`  run ${r.i}: ${r.passed} passed, ${r.failed} failed, ${r.secs.toFixed(0)} s`);
if (fails.size === 0) {
  console.log("  every test passed in every run");
  process.exit(0);
}
console.log("  failures (test: runs it failed in):");
for (const [k, v] of [...fails].sort((a, b) => b[1].length - a[1].length)) console.log(`    ${k}: ${v.length}/${n} (runs ${v.join(", ")})`);
process.exit(1);
