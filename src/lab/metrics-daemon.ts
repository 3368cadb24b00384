/**
 * The topology setting `metrics: { listen: 127.0.0.1:9423 }`: `lab up` starts
 * `tapnet metrics --lab LAB --listen ADDR` beside the lab (its own process group,
 * recorded among the lab's daemons, so `lab down` stops it by PID like BIRD) and
 * returns once it answers on /metrics.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { type LabState, type Log, labDir, writeState } from "./state.js";
import { isAlive, sleep } from "./sys.js";
import type { Topology } from "./topology-schema.js";

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../cli/main.js");

/** Its key among the lab's daemons (not a router name: those have no ':'). */
export const METRICS_DAEMON = "metrics:exporter";

export async function startMetrics(t: Topology, state: LabState, log: Log, timeoutMs = 20_000): Promise<void> {
  if (!t.metrics) return;
  const listen = t.metrics.listen;
  const logFile = path.join(labDir(t.name), "metrics.log");
  const out = fs.openSync(logFile, "a");
  const child = spawn(process.execPath, [CLI, "metrics", "--lab", t.name, "--listen", listen], { detached: true, stdio: ["ignore", out, out] });
  fs.closeSync(out);
  child.unref();
  if (child.pid === undefined) throw new Error("could not start tapnet metrics");
  state.daemons ??= {};
  // `command` is what lab down checks /proc/PID/cmdline for before it signals the PID.
  state.daemons[METRICS_DAEMON] = { namespace: "", pid: child.pid, command: `metrics --lab ${t.name} --listen ${listen}`, log: logFile };
  writeState(state);
  const url = `http://${listen}/metrics`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const r = await fetch(url);
      await r.arrayBuffer();
      if (r.status === 200) break;
    } catch {
      // not listening yet
    }
    if (!isAlive(child.pid)) throw new Error(`tapnet metrics exited at start: ${fs.readFileSync(logFile, "utf8").trim().split("\n").slice(-2).join(" ")}`);
    if (Date.now() > deadline) throw new Error(`tapnet metrics did not answer on ${url} within ${timeoutMs / 1000} s (see ${logFile})`);
    await sleep(100);
  }
  log(`metrics: ${url}`);
}
