/**
 * The lab's lifecycle: `lab up` (checks, then build.ts makes it), `lab down` (stops what
 * the state recorded and removes it), `lab status`.
 */
import fs from "node:fs";
import path from "node:path";
import { request } from "../control/client.js";
import { RUN_DIR } from "../control/protocol.js";
import type { SandboxReport } from "../node/sandbox.js";
import type { EtcdState } from "./etcd.js";
import { present } from "./packages.js";
import { labDir, type LabState, listLabs, type Log, ownerOf, readState, readSupervisorStatus, type SupervisorStatus, writeState } from "./state.js";
import { cmdline, isAlive, netnsList, run, sleep, stopGroup } from "./sys.js";

export * from "./state.js";

// The builder, the topology parser (yaml, zod) and the daemons' modules are imported by
// the verbs that use them, not here: every CLI verb imports this module for findLab, and
// `tapnet show …` must not pay for loading them.

/** What a lab can't be built without; says what to do about each. */
export function preflight(): void {
  if (process.getuid && process.getuid() !== 0) {
    throw new Error("tapnet lab needs root (it creates network namespaces and TAP devices): run it with sudo");
  }
  if (!fs.existsSync("/dev/net/tun")) throw new Error("/dev/net/tun does not exist: load the tun module (sudo modprobe tun)");
  // Looked up on PATH, not run: each run is a fork of this process, on every lab up and down.
  if (!present("ip")) throw new Error("the 'ip' command (iproute2) is missing: run sudo npm run setup");
  if (!present("setpriv")) {
    throw new Error("the 'setpriv' command (util-linux) is missing: nodes are started through it to drop their capabilities (run sudo npm run setup)");
  }
}

/**
 * Brings a lab up; on any failure — or when `abort` fires (Ctrl-C) — removes everything
 * it made and rethrows. The state file is written before every step, so what was made
 * is always known, also to a `lab down` run after a crash of this process.
 */
export async function labUp(file: string, log: Log = () => undefined, abort?: AbortSignal): Promise<LabState> {
  const [{ loadTopology }, { build, labNamespaces }, { startMetrics }] = await Promise.all([
    import("./topology.js"),
    import("./build.js"),
    import("./metrics-daemon.js"),
  ]);
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
    await startMetrics(t, state, log);
    return state;
  } catch (e) {
    log(abort?.aborted ? "interrupted: removing what was made" : "lab up failed; removing what was made");
    await teardown(state, () => undefined);
    if (abort?.aborted) throw new Error(`lab ${lab}: interrupted; everything it had created was removed`);
    const msg = e instanceof Error ? e.message : String(e);
    throw new Error(`lab ${lab} did not come up: ${msg}\n(everything it had created was removed)`);
  }
}

/** Sends `sig` to `pid` and waits up to `ms` for it to go; true when it is gone. */
async function signalAndWait(pid: number, sig: NodeJS.Signals, still: () => boolean, ms: number): Promise<boolean> {
  try {
    process.kill(pid, sig);
  } catch {
    return true;
  }
  for (let waited = 0; waited < ms; waited += 5) {
    if (!still()) return true;
    await sleep(5);
  }
  return !still();
}

/** True while `pid` is a live process whose command line holds all of `words` (not a reused PID). */
function runs(pid: number, words: string[]): boolean {
  const cl = cmdline(pid);
  return cl !== null && cl !== "" && isAlive(pid) && words.every((w) => cl.includes(w));
}

/**
 * Stops a node: its supervisor first (SIGTERM: it stops the node — SIGTERM, then
 * SIGKILL after 2 s — and exits; SIGKILL if it takes longer), then whatever node
 * process is left (its supervisor was killed, or never existed): only processes /proc
 * still shows as ours.
 */
export async function stopNode(lab: string, name: string, n: LabState["nodes"][string]): Promise<void> {
  const sup = n.supervisor;
  if (sup !== undefined && runs(sup, ["supervise", n.config])) {
    const still = (): boolean => runs(sup, ["supervise", n.config]);
    if (!(await signalAndWait(sup, "SIGTERM", still, 4000))) await signalAndWait(sup, "SIGKILL", still, 1000);
  }
  const pid = readSupervisorStatus(lab, name)?.pid ?? n.pid;
  if (pid === null || !runs(pid, [" run ", n.config])) return;
  const still = (): boolean => runs(pid, [" run ", n.config]);
  if (!(await signalAndWait(pid, "SIGTERM", still, 2000))) await signalAndWait(pid, "SIGKILL", still, 1000);
}

async function teardown(state: LabState, log: Log, extraNamespaces: string[] = []): Promise<string[]> {
  for (const h of Object.values(state.hosts)) if (h.run) await stopGroup(h.run, 1000);
  // Their modules load only when the state records such processes (lab down's start-up).
  if (Object.keys(state.daemons ?? {}).length) await (await import("./bgp.js")).stopDaemons(state);
  const es = state as LabState & EtcdState;
  if (Object.keys({ ...es.etcd, ...es.agents }).length) await (await import("./etcd.js")).stopEtcdAndAgents(es);
  // The nodes stop side by side: each stop is mostly waiting.
  await Promise.all(Object.entries(state.nodes).map(([name, n]) => stopNode(state.lab, name, n)));
  const present = new Set(netnsList());
  const wanted = [...new Set([...state.namespaces, ...extraNamespaces])].filter((ns) => present.has(ns));
  // One ip process for all (-force: on past a failure); what is still listed after it failed.
  let message = "";
  try {
    if (wanted.length) run(["ip", "-force", "-batch", "-"], `${wanted.map((ns) => `netns del ${ns}`).join("\n")}\n`);
  } catch (e) {
    message = e instanceof Error ? e.message : String(e);
  }
  const left = new Set(netnsList());
  const removed = wanted.filter((ns) => !left.has(ns));
  const failed = wanted.filter((ns) => left.has(ns));
  if (failed.length) throw new Error(`could not remove everything: namespace${failed.length > 1 ? "s" : ""} ${failed.join(", ")} still there: ${message}`);
  fs.rmSync(labDir(state.lab), { recursive: true, force: true });
  log(`removed ${removed.length} namespaces`);
  return removed;
}

/**
 * Takes a lab down: stops its nodes' supervisors and node processes (by the PIDs it
 * recorded), deletes every namespace its state recorded (which removes the veths and
 * the persistent TAPs in them: a namespace's virtual devices are destroyed with it).
 * Works after a node or its supervisor was killed with -9 and after a half-finished `lab up`.
 * Given the topology file of a lab whose state is gone, it also removes the namespaces
 * that file names — never one that another lab's state records.
 */
export async function labDown(fileOrName: string, log: Log = () => undefined): Promise<{ lab: string; removed: string[] }> {
  let lab: string;
  let derived: string[] = [];
  // A lab up from this file is known by its state, which lists all it made: no need to
  // parse the file (its YAML and schema modules cost more than the rest of lab down).
  const upFromFile = fs.existsSync(fileOrName) ? listLabs().find((s) => s.file === path.resolve(fileOrName)) : undefined;
  if (upFromFile) {
    lab = upFromFile.lab;
  } else if (fs.existsSync(fileOrName)) {
    const [{ loadTopology }, { labNamespaces }] = await Promise.all([import("./topology.js"), import("./build.js")]);
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

/** A node as `lab status` shows it. */
export interface NodeStatus {
  name: string;
  /** The node process's current PID (null while it is down). */
  pid: number | null;
  /** It answers on its control socket. */
  running: boolean;
  ports?: string[];
  sandbox?: SandboxReport;
  /** Restarts by its supervisor, and how the node last ended. */
  restarts: number;
  lastExit: SupervisorStatus["lastExit"];
  supervisor: {
    pid: number | null;
    running: boolean;
    state: SupervisorStatus["state"] | null;
    lastRecoveryMs: number | null;
    /** The parked standby's PID (`standby: true` nodes), and how the last restart started the node. */
    standby?: number | null;
    lastRestart?: "standby" | "cold";
  };
}

export async function labStatus(): Promise<Array<{ lab: string; file: string; nodes: NodeStatus[]; hosts: LabState["hosts"] }>> {
  const out = [];
  for (const s of listLabs()) {
    const nodes: NodeStatus[] = [];
    for (const [name, n] of Object.entries(s.nodes)) {
      let ports: string[] | undefined;
      let sandbox: SandboxReport | undefined;
      let running = false;
      let pid = n.pid;
      try {
        const st = await request<{ pid: number; ports: string[]; sandbox: SandboxReport }>(n.socket, { cmd: "status" }, 2000);
        ports = st.ports;
        sandbox = st.sandbox;
        pid = st.pid;
        running = true;
      } catch {
        running = false;
      }
      const sup = readSupervisorStatus(s.lab, name);
      const supPid = n.supervisor ?? null;
      nodes.push({
        name,
        pid,
        running,
        ports,
        sandbox,
        restarts: sup?.restarts ?? 0,
        lastExit: sup?.lastExit ?? null,
        supervisor: {
          pid: supPid,
          running: supPid !== null && isAlive(supPid) && (cmdline(supPid) ?? "").includes("supervise"),
          state: sup?.state ?? null,
          lastRecoveryMs: sup?.lastRecoveryMs ?? null,
          ...(sup?.standby !== undefined ? { standby: sup.standby } : {}),
          ...(sup?.lastRestart !== undefined ? { lastRestart: sup.lastRestart } : {}),
        },
      });
    }
    out.push({ lab: s.lab, file: s.file, nodes, hosts: s.hosts });
  }
  return out;
}
