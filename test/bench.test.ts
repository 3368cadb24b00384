/**
 * Smoke test of the benchmark (scripts/bench.mjs), not a timing assertion: one short
 * run of the `switch` scenario must measure all three implementations (kernel bridge,
 * C relay, tapnet) with numbers above zero, write them as JSON with the ratios, and
 * leave no namespace or process behind. About 20 s.
 */
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT, canRunLabs, netnsList } from "./integration/harness.js";

const has = (cmd: string): boolean => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;
const canBench = (): boolean => canRunLabs() && has("iperf3") && has("gcc");

interface Row {
  implementation: string;
  tcpGbps?: number;
  kpps?: number;
  rttUs?: number;
  error?: string;
  ratios?: Record<string, { tcp: number | null; kpps: number | null; rtt: number | null }>;
}

function run(args: string[], timeoutMs: number): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(ROOT, "scripts/bench.mjs"), ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    // SIGINT: the bench's own handler removes what it made.
    const timer = setTimeout(() => child.kill("SIGINT"), timeoutMs);
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

describe.skipIf(!canBench())("bench (smoke)", () => {
  it("switch --duration 1: every implementation measured, JSON with ratios, nothing left behind", async () => {
    const json = path.join(os.tmpdir(), `tapnet-bench-smoke-${process.pid}.json`);
    try {
      const r = await run(["switch", "--duration", "1", "--json", json], 50_000);
      expect(r.status, r.stderr).toBe(0);
      const report = JSON.parse(fs.readFileSync(json, "utf8")) as { scenarios: Array<{ name: string; reference: string; results: Row[] }> };
      expect(report.scenarios.map((s) => s.name)).toEqual(["switch"]);
      const rows = report.scenarios[0].results;
      expect(rows.map((x) => x.implementation)).toEqual(["kernel bridge", "C relay", "tapnet"]);
      for (const x of rows) {
        expect(x.error, x.implementation).toBeUndefined();
        expect(x.tcpGbps, x.implementation).toBeGreaterThan(0);
        expect(x.kpps, x.implementation).toBeGreaterThan(0);
        expect(x.rttUs, x.implementation).toBeGreaterThan(0);
      }
      const tapnet = rows[2];
      expect(Object.keys(tapnet.ratios ?? {}).sort()).toEqual(["C relay", "kernel bridge"]);
      expect(tapnet.ratios?.["kernel bridge"].tcp).toBeGreaterThan(0);
      expect(r.stdout).toMatch(/switch\s+tapnet/);
      expect(netnsList().filter((n) => n.startsWith("tnb-") || n.startsWith("tn-bench-"))).toEqual([]);
    } finally {
      fs.rmSync(json, { force: true });
    }
  }, 60_000);
});
