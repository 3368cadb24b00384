// The `lab` scenario of scripts/bench.mjs: how long labs take to make and unmake, how fast a
// node goes after SIGTERM, and how long the CLI takes to start. Mininet is the reference.
//
//   lab up / down  a single-switch lab of N hosts (N = 10 and 50: one tapnet node, N TAP
//                  hosts, 10.0.0.0/16), `tapnet lab up FILE -q` and `tapnet lab down FILE -q`,
//                  each timed from the command's start to its exit (lab up returns once the
//                  node answers on its control socket and every host is configured).
//                  Reference: Mininet, `mn --topo single,N --switch lxbr --controller none
//                  --test none` (Linux bridge, no OpenFlow controller: this machine has no
//                  Open vSwitch), timed from its start to its "*** Stopping" line (up) and
//                  from there to its exit (down). Mininet runs confined, in namespaces the
//                  bench makes for it (unshare: network, mount, PID with its own /proc), with
//                  /proc/sys/kernel and /proc/sys/fs read-only there, so its resource-limit
//                  sysctls cannot change this machine; when the bench stops it, the PID
//                  namespace takes every process it started along. tapnet and Mininet
//                  alternate, --repeat times per N.
//   node exit      SIGTERM to the running node of the 10-host lab, to the moment it has
//                  exited (/proc/PID/stat gone or a zombie, polled every ms); reference: the
//                  same after SIGKILL (the kernel alone closing its TAPs and sockets). Its
//                  supervisor starts it again each time, and lab down comes after that.
//   CLI start      `tapnet show ports --lab L --json` against the 10-host lab: run directly
//                  (node dist/cli/main.js) and through `npx tapnet` (from the repository), and
//                  `node -e 0` for the floor; 5 x --repeat times each, interleaved.
// Needs mininet and bridge-utils (Debian), installed here when missing (scripts/setup.sh --bench
// installs them too).
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { median, ratio } from "./stats.mjs";

export const SIZES = [10, 50];

/** The single-switch topology with n TAP hosts, as a lab file named `name`. */
export function singleSwitch(name, n) {
  const hosts = Array.from({ length: n }, (_, i) => `  h${i + 1}: { node: sw1, ip: 10.0.${(i + 1) >> 8}.${(i + 1) & 255}/16 }`);
  return `name: ${name}\nnodes:\n  sw1: {}\nhosts:\n${hosts.join("\n")}\n`;
}

const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;

/** Runs argv to its end; resolves with status, output and the wall time in ms. */
function timed(argv, opts = {}) {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "pipe"], ...opts });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.on("error", (e) => resolve({ status: null, out: out + e.message, ms: ms(t0) }));
    child.on("close", (status) => resolve({ status, out, ms: ms(t0) }));
  });
}

/** Mininet's PIDs still running (the unshare wrapper), so an interrupted bench stops them. */
const mnRunning = new Set();
process.on("exit", () => {
  for (const pid of mnRunning) {
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      // gone
    }
  }
});

/** One Mininet run, confined; resolves with the up and down times (ms). */
function mininet(n) {
  const inner =
    "set -e; for d in kernel fs; do mount --bind /proc/sys/$d /proc/sys/$d; mount -o remount,bind,ro /proc/sys/$d; done; ip link set lo up; " +
    `exec mn --topo single,${n} --switch lxbr --controller none --test none`;
  const argv = ["timeout", "-k", "2", "120", "unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc", "--propagation", "private", "sh", "-c", inner];
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "pipe"], detached: true, env: { ...process.env, PYTHONUNBUFFERED: "1" } });
    mnRunning.add(child.pid);
    let out = "";
    let upMs = null;
    const on = (d) => {
      out += d;
      if (upMs === null && /\*\*\* Stopping/.test(out)) upMs = ms(t0);
    };
    child.stdout.on("data", on);
    child.stderr.on("data", on);
    child.on("error", (e) => reject(e));
    child.on("close", (status) => {
      mnRunning.delete(child.pid);
      const total = ms(t0);
      if (status !== 0 || upMs === null || !/\*\*\* Done/.test(out)) {
        reject(new Error(`mn --topo single,${n} failed (exit ${status}): ${out.trim().split("\n").slice(-6).join(" | ")}`));
      } else resolve({ upMs, downMs: total - upMs });
    });
  });
}

/** Whether /proc says pid has exited (gone, or a zombie waiting for its parent). */
function exited(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "Z";
  } catch {
    return true;
  }
}

/** The lab's node PID and supervisor state (src/lab/supervisor.ts's status file). */
function supervisorStatus(lab) {
  try {
    return JSON.parse(fs.readFileSync(`/run/tapnet/${lab}/sw1.supervisor.json`, "utf8"));
  } catch {
    return null;
  }
}

/**
 * c: the bench's helpers (scripts/bench.mjs controlHelpers()). Returns per-metric records
 * (tapnet, reference, ratio, samples) and notes.
 */
export async function runLab(c) {
  const { opts, say } = c;
  const rounds = opts.repeat;
  const notes = [];
  ensureMininet(say);
  const samples = {};
  const push = (k, v) => {
    if (samples[k] === undefined) samples[k] = [];
    samples[k].push(v);
  };
  const cli = (args) => [process.execPath, c.CLI, ...args];
  for (const n of SIZES) {
    const lab = `bench-lab${n}`;
    const file = path.join(c.tmpDir(), `${lab}.yaml`);
    fs.writeFileSync(file, singleSwitch(lab, n));
    for (let r = 0; r < rounds; r++) {
      say(`lab: ${n} hosts: tapnet lab up / down${rounds > 1 ? ` (round ${r + 1})` : ""}…`);
      const up = await timed(cli(["lab", "up", file, "-q"]));
      if (up.status !== 0) {
        c.quietly(() => c.labDown(file));
        throw new Error(`tapnet lab up (${n} hosts) failed: ${up.out.trim()}`);
      }
      push(`tapnetUp${n}`, up.ms);
      try {
        if (n === SIZES[0]) await extras(c, lab, push);
      } catch (e) {
        c.quietly(() => c.labDown(file));
        throw e;
      }
      const down = await timed(cli(["lab", "down", file, "-q"]));
      if (down.status !== 0) throw new Error(`tapnet lab down (${n} hosts) failed: ${down.out.trim()}`);
      push(`tapnetDown${n}`, down.ms);
      say(`lab: ${n} hosts: Mininet…`);
      const m = await mininet(n);
      push(`mnUp${n}`, m.upMs);
      push(`mnDown${n}`, m.downMs);
      say(`lab: ${n} hosts: up ${up.ms.toFixed(0)} ms (Mininet ${m.upMs.toFixed(0)}), down ${down.ms.toFixed(0)} ms (Mininet ${m.downMs.toFixed(0)})`);
    }
  }
  const metrics = [];
  const rec = (metric, label, key, refName, refKey) => {
    const t = median(samples[key] ?? []);
    const ref = median(samples[refKey] ?? []);
    metrics.push({
      scenario: "lab",
      metric,
      label,
      unit: "ms",
      better: "lower",
      implementation: "tapnet",
      referenceName: refName,
      tapnet: t,
      reference: ref,
      ratio: ratio(t, ref),
      samples: { tapnet: samples[key] ?? [], reference: samples[refKey] ?? [] },
    });
  };
  for (const n of SIZES) {
    rec(`up${n}`, `lab up, ${n} hosts, ms`, `tapnetUp${n}`, "Mininet (lxbr)", `mnUp${n}`);
    rec(`down${n}`, `lab down, ${n} hosts, ms`, `tapnetDown${n}`, "Mininet (lxbr)", `mnDown${n}`);
  }
  rec("nodeExit", "node exit after SIGTERM, ms", "nodeExit", "after SIGKILL", "nodeKill");
  rec("cliDirect", "tapnet show ports (direct), ms", "cliDirect", "npx tapnet show ports", "cliNpx");
  rec("cliFloor", "tapnet show ports (direct), ms", "cliDirect", "node -e 0", "nodeFloor");
  notes.push(
    `${rounds > 1 ? `medians of ${rounds} rounds` : "one round"} per size, tapnet and Mininet alternating; CLI start: medians of ${5 * rounds} runs each, interleaved; node exit: ${rounds} SIGTERMs.`,
    "Mininet: mn --topo single,N --switch lxbr --controller none --test none (no Open vSwitch here), up = start to its '*** Stopping' line, down = from there to its exit; it checks no connectivity, tapnet's lab up waits until its node answers.",
  );
  return { metrics, notes, samples };
}

/**
 * Node exit after SIGTERM against SIGKILL (the kernel alone tearing the same process down:
 * its TAPs, sockets, memory), and CLI start, on the running 10-host lab.
 */
async function extras(c, lab, push) {
  for (const [sig, key] of [
    ["SIGTERM", "nodeExit"],
    ["SIGKILL", "nodeKill"],
  ]) {
    const before = supervisorStatus(lab);
    if (!before?.pid) throw new Error(`lab ${lab}: no node PID in its supervisor's status`);
    const pid = before.pid;
    const t0 = process.hrtime.bigint();
    process.kill(pid, sig);
    for (;;) {
      if (exited(pid)) break;
      if (ms(t0) > 10_000) throw new Error(`node ${pid} of ${lab} still there 10 s after ${sig}`);
      await c.sleep(1);
    }
    push(key, ms(t0));
    // The supervisor starts it again; wait until it answers before anything else is timed.
    await c.waitFor(
      `lab ${lab}: the node running again`,
      () => {
        const s = supervisorStatus(lab);
        return s?.state === "running" && s.pid !== pid;
      },
      15_000,
    );
  }
  for (let i = 0; i < 5 * c.opts.repeat; i++) {
    const direct = await timed([process.execPath, c.CLI, "show", "ports", "--lab", lab, "--json"]);
    if (direct.status !== 0) throw new Error(`tapnet show ports: ${direct.out.trim()}`);
    push("cliDirect", direct.ms);
    const npx = await timed(["npx", "tapnet", "show", "ports", "--lab", lab, "--json"], { cwd: c.ROOT });
    if (npx.status !== 0) throw new Error(`npx tapnet show ports: ${npx.out.trim()}`);
    push("cliNpx", npx.ms);
    push("nodeFloor", (await timed([process.execPath, "-e", "0"])).ms);
  }
}

/** mininet and brctl (Debian: mininet, bridge-utils), installed with apt-get when missing. */
function ensureMininet(say) {
  const missing = [
    ["mn", "mininet"],
    ["brctl", "bridge-utils"],
  ].filter(([cmd]) => spawnSync("sh", ["-c", `PATH="$PATH:/usr/sbin:/sbin" command -v ${cmd}`]).status !== 0);
  if (missing.length === 0) return;
  const pkgs = missing.map(([, p]) => p);
  say(`lab: installing ${pkgs.join(" ")} (the Mininet reference)`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const r = spawnSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...pkgs], { encoding: "utf8", env });
  if (r.status !== 0) throw new Error(`apt-get install ${pkgs.join(" ")} failed: ${(r.stderr || r.stdout).trim().split("\n").slice(-2).join(" ")}`);
}
