/**
 * The lab's lifecycle: `lab up` (checks, then build.ts makes it), `lab down` (stops what
 * the state recorded and removes it), `lab status`.
 */
import fs from "node:fs";
import path from "node:path";
import { request } from "../control/client.js";
import { RUN_DIR } from "../control/protocol.js";
import type { SandboxReport } from "../node/sandbox.js";
import { stopDaemons } from "./bgp.js";
import { build, labNamespaces } from "./build.js";
import { labDir, type LabState, listLabs, type Log, ownerOf, readState, writeState } from "./state.js";
import { cmdline, isAlive, netnsList, run, sleep } from "./sys.js";
import { loadTopology } from "./topology.js";

export { labNamespaces } from "./build.js";
export * from "./state.js";

/** What a lab can't be built without; says what to do about each. */
export function preflight(): void {
  if (process.getuid && process.getuid() !== 0) {
    throw new Error("tapnet lab needs root (it creates network namespaces and TAP devices): run it with sudo");
  }
  if (!fs.existsSync("/dev/net/tun")) throw new Error("/dev/net/tun does not exist: load the tun module (sudo modprobe tun)");
  try {
    run(["ip", "-V"]);
  } catch {
    throw new Error("the 'ip' command (iproute2) is missing: run sudo npm run setup");
  }
  try {
    run(["setpriv", "--version"]);
  } catch {
    throw new Error("the 'setpriv' command (util-linux) is missing: nodes are started through it to drop their capabilities (run sudo npm run setup)");
  }
}

/**
 * Brings a lab up; on any failure — or when `abort` fires (Ctrl-C) — removes everything
 * it made and rethrows. The state file is written before every step, so what was made
 * is always known, also to a `lab down` run after a crash of this process.
 */
export async function labUp(file: string, log: Log = () => undefined, abort?: AbortSignal): Promise<LabState> {
  const t = loadTopology(file);
  preflight();
  const lab = t.name;
  const existing = readState(lab);
  if (existing) {
    throw new Error(`lab '${lab}' is already up (from ${existing.file}): run 'tapnet lab down ${existing.file}' first`);
  }
  const names = labNamespaces(t);
  const clash = netnsList().filter((n) => names.includes(n));
  if (clash.length) {
    const owner = ownerOf(clash);
    throw new Error(
      owner
        ? `network namespace ${clash[0]} belongs to lab '${owner}', which is up: tapnet lab down ${owner}`
        : `network namespace${clash.length > 1 ? "s" : ""} ${clash.join(", ")} already exist${clash.length > 1 ? "" : "s"} and no lab records ${clash.length > 1 ? "them" : "it"} (left over from a crash?): 'tapnet lab down ${file}' removes ${clash.length > 1 ? "them" : "it"}`,
    );
  }
  const state: LabState = {
    lab,
    file: path.resolve(file),
    createdAt: new Date().toISOString(),
    namespaces: [],
    nodes: {},
    hosts: {},
  };
  fs.mkdirSync(RUN_DIR, { recursive: true, mode: 0o700 });
  writeState(state);
  try {
    await build(t, state, log, abort);
    return state;
  } catch (e) {
    log(abort?.aborted ? "interrupted: removing what was made" : "lab up failed; removing what was made");
    await teardown(state, () => undefined);
    if (abort?.aborted) throw new Error(`lab ${lab}: interrupted; everything it had created was removed`);
    const msg = e instanceof Error ? e.message : String(e);
    throw new Error(`lab ${lab} did not come up: ${msg}\n(everything it had created was removed)`);
  }
}

/** Stops a node process we started: only if /proc says it is still our node. */
async function stopNode(n: LabState["nodes"][string]): Promise<void> {
  if (n.pid === null) return;
  const cl = cmdline(n.pid);
  if (cl === null || !cl.includes(n.config)) return; // gone, or the PID was reused
  try {
    process.kill(n.pid, "SIGTERM");
  } catch {
    return;
  }
  for (let i = 0; i < 40; i++) {
    if (cmdline(n.pid) === null || !isAlive(n.pid)) return;
    await sleep(50);
  }
  try {
    process.kill(n.pid, "SIGKILL");
  } catch {
    // exited meanwhile
  }
  for (let i = 0; i < 40 && cmdline(n.pid) !== null; i++) await sleep(25);
}

/** Stops a host's command (its whole process group) if /proc still shows it. */
async function stopRun(r: { pid: number; command: string }): Promise<void> {
  const cl = cmdline(r.pid);
  if (cl === null || !cl.includes(r.command)) return;
  for (const sig of ["SIGTERM", "SIGKILL"] as const) {
    try {
      process.kill(-r.pid, sig);
    } catch {
      return;
    }
    for (let i = 0; i < 20; i++) {
      if (!isAlive(r.pid) || !cmdline(r.pid)) return;
      await sleep(50);
    }
  }
}

async function teardown(state: LabState, log: Log, extraNamespaces: string[] = []): Promise<string[]> {
  for (const h of Object.values(state.hosts)) if (h.run) await stopRun(h.run);
  await stopDaemons(state);
  for (const n of Object.values(state.nodes)) await stopNode(n);
  const present = new Set(netnsList());
  const removed: string[] = [];
  const failures: string[] = [];
  for (const ns of new Set([...state.namespaces, ...extraNamespaces])) {
    if (!present.has(ns)) continue;
    try {
      run(["ip", "netns", "del", ns]);
      removed.push(ns);
    } catch (e) {
      failures.push(e instanceof Error ? e.message : String(e));
    }
  }
  if (failures.length) throw new Error(`could not remove everything:\n${failures.join("\n")}`);
  fs.rmSync(labDir(state.lab), { recursive: true, force: true });
  log(`removed ${removed.length} namespaces`);
  return removed;
}

/**
 * Takes a lab down: stops its node processes (by the PIDs it recorded), deletes every
 * namespace its state recorded (which removes the veths in them; TAPs go with their
 * process). Works after a node was killed with -9 and after a half-finished `lab up`.
 * Given the topology file of a lab whose state is gone, it also removes the namespaces
 * that file names — never one that another lab's state records.
 */
export async function labDown(fileOrName: string, log: Log = () => undefined): Promise<{ lab: string; removed: string[] }> {
  let lab: string;
  let derived: string[] = [];
  if (fs.existsSync(fileOrName)) {
    const t = loadTopology(fileOrName);
    lab = t.name;
    derived = labNamespaces(t);
  } else {
    lab = fileOrName;
  }
  preflight();
  const recorded = readState(lab);
  const state: LabState = recorded ?? {
    lab,
    file: fileOrName,
    createdAt: "",
    namespaces: [],
    nodes: {},
    hosts: {},
  };
  const others = new Set(
    listLabs()
      .filter((s) => s.lab !== lab)
      .flatMap((s) => s.namespaces),
  );
  const foreign = state.namespaces.filter((n) => others.has(n));
  if (foreign.length) throw new Error(`lab ${lab}: its state names ${foreign.join(", ")}, which another lab's state records too; removing nothing`);
  const removed = await teardown(state, log, recorded ? [] : derived.filter((n) => !others.has(n)));
  return { lab, removed };
}

export async function labStatus(): Promise<
  Array<{
    lab: string;
    file: string;
    nodes: Array<{ name: string; pid: number | null; running: boolean; ports?: string[]; sandbox?: SandboxReport }>;
    hosts: LabState["hosts"];
  }>
> {
  const out = [];
  for (const s of listLabs()) {
    const nodes = [];
    for (const [name, n] of Object.entries(s.nodes)) {
      let ports: string[] | undefined;
      let sandbox: SandboxReport | undefined;
      let running = false;
      try {
        const st = await request<{ ports: string[]; sandbox: SandboxReport }>(n.socket, { cmd: "status" }, 2000);
        ports = st.ports;
        sandbox = st.sandbox;
        running = true;
      } catch {
        running = false;
      }
      nodes.push({ name, pid: n.pid, running, ports, sandbox });
    }
    out.push({ lab: s.lab, file: s.file, nodes, hosts: s.hosts });
  }
  return out;
}
