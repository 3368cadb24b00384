/**
 * The supervisor of one lab node (`tapnet node supervise CONFIG`, started by `lab up`
 * in place of the node): it runs the node and, when the node dies without being asked
 * to stop (a crash, `kill -9`), starts it again at once.
 *
 * Why a process of the lab's own and not systemd-run: a lab lives in namespaces and a
 * run directory that belong to whoever ran `lab up` (often a container or a test's
 * private mount namespace, where systemd is not PID 1 and /run/netns is not the
 * system's); a supervisor started beside the lab sees exactly what the lab sees,
 * needs nothing but Node.js, and goes with `lab down` by PID like the rest.
 *
 * What a restart must give back:
 *   - the hosts' interfaces: the node's TAPs are persistent (TUNSETPERSIST), so each
 *     host keeps its eth0 — addresses, routes, neighbours — while its node is down. A
 *     TAP host's eth0 lives in the host's namespace, where the node (no CAP_SYS_ADMIN,
 *     by design) cannot reach it by name; the supervisor, which runs with root's full
 *     capabilities, attaches to each (tapAttachIn: setns into the host's namespace on
 *     this thread, open /dev/net/tun, TUNSETIFF, setns back) and hands the fds to the
 *     new node in stdio slots 3…, named in TAPNET_TAP_FDS (src/node/ports.ts). The TAP
 *     hosts of the node are the lab state's (hosts added at runtime included); the ports
 *     the CNI plugin moved into containers are recorded in LAB/cni/PORT.json, each with
 *     its namespace's path and interface name, and attached to the same way;
 *   - the configuration changed at runtime: the node replays its journal;
 *   - what the node learned (FDB, neighbours, conntrack) is learned again.
 *
 * Beside that it sets the MTU of the node's mesh pods that follow the mesh MTU
 * (src/mesh/pod-mtu.ts): the node cannot reach their namespaces.
 *
 * With `standby: true` the supervisor also keeps a standby node (src/node/standby.ts):
 * started once the node answers, parked in the node's namespace with its modules
 * loaded (NODE.supervisor.json names it once it says it is parked on a pipe). A restart
 * hands it the attached TAPs (native/fdpass.c) instead of starting a process (before it
 * is parked too: it is further along than a new process), and starts the next standby
 * once the node answers again. A standby that
 * cannot be handed the TAPs (it died meanwhile) means a cold start, as without one; one
 * that dies parked STANDBY_FAILURES times in a row is not started again.
 *
 * A crash loop is slowed down: more than 5 restarts within 10 s and each further one
 * waits, 0.5 s doubling up to 5 s. What happened is in NODE.supervisor.json in the
 * lab's directory (SupervisorStatus: the node's PID, restarts, the last exit's code or
 * signal and time, how long the last recovery took), which `tapnet lab status` shows.
 *
 * SIGTERM (or SIGINT) stops the node — SIGTERM, then SIGKILL after 2 s — and exits.
 * The supervisor also exits when its lab is gone (config or namespace removed).
 */
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { request } from "../control/client.js";
import { type AttachedTap, fdPair, fdSend, tapAttachIn } from "../io/native.js";
import type { NodeConfig } from "../node/config.js";
import { PodMtuFollower } from "../mesh/pod-mtu.js";
import { nodeCapabilities, nodeEnvironment, nodeLauncher, STANDBY_FD_ENV, TAP_FDS_ENV } from "../node/sandbox.js";
import { labDir, nsName, readState, type SupervisorStatus, supervisorStatusPath } from "./state.js";

/** `node supervise` and `node run` without the rest of the CLI (src/cli/node-main.ts). */
const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../cli/node-main.js");
/** Where `ip netns` keeps its namespaces (iproute2's NETNS_RUN_DIR). */
const NETNS_DIR = "/run/netns";
/** Restarts within LOOP_WINDOW_MS beyond which the next one waits. */
const LOOP_RESTARTS = 5;
const LOOP_WINDOW_MS = 10_000;
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 5_000;
/** SIGTERM to the node, then SIGKILL after this long. */
const STOP_GRACE_MS = 2_000;
/**
 * How long a restart waits for a TAP that answers EBUSY, and how often it tries. A node
 * with io "uring" registered its TAPs' files in its rings (native/uring.c); when it dies
 * without closing them (SIGKILL, a crash) the kernel frees the rings, and lets go of the
 * files they hold, on a workqueue after the exit: for some milliseconds after the
 * supervisor hears of the exit the TAP is still attached, and TUNSETIFF refuses it.
 */
const ATTACH_BUSY_MAX_MS = 5_000;
const ATTACH_BUSY_POLL_MS = 5;
/** How often, and how long, to ask a starting node for its status. */
const READY_POLL_MS = 10;
const READY_MAX_MS = 30_000;

/** Standbys that die parked, in a row, after which no more are started. */
const STANDBY_FAILURES = 3;

const log = (msg: string): void => console.error(`supervisor: ${msg}`);

/**
 * The crash-loop back-off: given the times (ms) of the node's earlier deaths and the
 * time of this one, the deaths still inside the window (this one included) and how
 * long to wait before the restart: none for the first LOOP_RESTARTS within
 * LOOP_WINDOW_MS, then BACKOFF_FIRST_MS doubling up to BACKOFF_MAX_MS.
 */
export function restartDelay(deaths: number[], now: number): { deaths: number[]; waitMs: number } {
  const recent = [...deaths.filter((t) => now - t < LOOP_WINDOW_MS), now];
  const over = recent.length - LOOP_RESTARTS;
  return { deaths: recent, waitMs: over > 0 ? Math.min(BACKOFF_FIRST_MS * 2 ** (over - 1), BACKOFF_MAX_MS) : 0 };
}

class Supervisor {
  private child: ChildProcess | null = null;
  /** The parked standby and the supervisor's end of its socket (nodes with `standby: true`). */
  private spare: { child: ChildProcess; sock: number } | null = null;
  private spareFailures = 0;
  private stopping = false;
  private restartTimer: NodeJS.Timeout | null = null;
  private killTimer: NodeJS.Timeout | null = null;
  /** Times (performance.now()) of the recent deaths, for the crash-loop back-off. */
  private deaths: number[] = [];
  private readonly status: SupervisorStatus;
  private readonly namespace: string;
  private readonly podMtu: PodMtuFollower;

  constructor(
    private readonly configPath: string,
    private readonly config: NodeConfig,
  ) {
    this.namespace = nsName(config.lab, config.node);
    this.podMtu = new PodMtuFollower(config.lab, config.node, config.controlSocket, log);
    this.status = {
      lab: config.lab,
      node: config.node,
      supervisor: process.pid,
      pid: null,
      state: "starting",
      startedAt: new Date().toISOString(),
      restarts: 0,
      lastExit: null,
      lastRecoveryMs: null,
      reattached: [],
      ...(config.standby === true ? { standby: null } : {}),
    };
  }

  start(): void {
    for (const sig of ["SIGTERM", "SIGINT"] as const) process.on(sig, () => this.stop());
    process.on("SIGHUP", () => undefined);
    this.launch(null);
  }

  /** Writes the status file (whole, by rename); a lab being removed may have no directory any more. */
  private save(): void {
    const file = supervisorStatusPath(this.config.lab, this.config.node);
    try {
      fs.writeFileSync(`${file}.tmp`, JSON.stringify(this.status, null, 2));
      fs.renameSync(`${file}.tmp`, file);
    } catch {
      // lab down removed the directory: nothing to record into
    }
  }

  /** Why there is nothing to supervise any more, or null. */
  private labGone(): string | null {
    if (!fs.existsSync(this.configPath)) return `${this.configPath} is gone (lab down)`;
    if (!fs.existsSync(path.join(NETNS_DIR, this.namespace))) return `namespace ${this.namespace} is gone`;
    return null;
  }

  /**
   * Attaches to the eth0 of each TAP host of this node recorded in the lab state (lab
   * up makes them in the hosts' namespaces before the node's first start). A host that
   * cannot be attached is logged and skipped. A TAP still held by the dead node's rings
   * (EBUSY) is tried again until ATTACH_BUSY_MAX_MS after the first try.
   */
  private async attachHosts(): Promise<{ fds: number[]; spec: string; names: string[] }> {
    const state = readState(this.config.lab);
    const fds: number[] = [];
    const parts: string[] = [];
    const names: string[] = [];
    const begin = performance.now();
    let busy = 0;
    const attach = async (netns: string, name: string): Promise<AttachedTap> => {
      for (;;) {
        try {
          return tapAttachIn({ netns, name, offload: this.config.offload === true });
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "EBUSY" || performance.now() - begin >= ATTACH_BUSY_MAX_MS) throw e;
          busy++;
          await new Promise((r) => setTimeout(r, ATTACH_BUSY_POLL_MS));
        }
      }
    };
    for (const [host, h] of Object.entries(state?.hosts ?? {})) {
      if (h.node !== this.config.node || h.link !== "tap") continue;
      try {
        const t = await attach(path.join(NETNS_DIR, h.namespace), "eth0");
        parts.push(`${host}=${3 + fds.length}/${t.mtu}`);
        fds.push(t.fd);
        names.push(host);
      } catch (e) {
        log(`host ${host}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    // Container ports the CNI plugin moved into pods' namespaces (src/cni/plugin.ts PodPort).
    const podDir = path.join(labDir(this.config.lab), "cni");
    for (const f of fs.existsSync(podDir) ? fs.readdirSync(podDir) : []) {
      if (!f.endsWith(".json")) continue;
      const port = f.slice(0, -5);
      try {
        const p = JSON.parse(fs.readFileSync(path.join(podDir, f), "utf8")) as { node: string; netns: string; ifname: string };
        if (p.node !== this.config.node) continue;
        const t = await attach(p.netns, p.ifname);
        parts.push(`${port}=${3 + fds.length}/${t.mtu}`);
        fds.push(t.fd);
        names.push(port);
      } catch (e) {
        log(`pod port ${port}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    if (busy > 0) log(`the dead node's TAPs were busy for ${Math.round(performance.now() - begin)} ms (its io_uring rings let go of them after the exit)`);
    return { fds, spec: parts.join(","), names };
  }

  /** Starts the node; `diedAt` is when its predecessor died (null: the first start). */
  private launch(diedAt: number | null): void {
    this.restartTimer = null;
    if (this.stopping) return;
    const gone = this.labGone();
    if (gone !== null) {
      log(`${gone}: nothing to supervise, exiting`);
      this.stopSpare();
      this.status.state = "stopped";
      this.save();
      process.exit(0);
    }
    // The first start too: lab up made the hosts' TAPs in their namespaces.
    void this.attachHosts().then((taps) => (diedAt !== null && this.takeOver(diedAt, taps)) || this.spawnNode(diedAt, taps));
  }

  /** Spawns `node run` in the node's namespace through nodeLauncher(), with `fds` in slots 3… */
  private spawnRun(fds: Array<number | "pipe">, env: NodeJS.ProcessEnv): ChildProcess {
    const nodeArgs = (process.env.TAPNET_NODE_ARGS ?? "").split(/\s+/).filter((a) => a !== "");
    // `ip netns exec` and setpriv both exec, so child.pid is the node's PID, and both
    // leave inherited fds alone: slot 3+i is fds[i].
    const config = JSON.parse(fs.readFileSync(this.configPath, "utf8")) as NodeConfig;
    return spawn(
      "ip",
      ["netns", "exec", this.namespace, ...nodeLauncher(nodeCapabilities(config)), process.execPath, ...nodeArgs, CLI, "node", "run", this.configPath],
      {
        stdio: ["ignore", "inherit", "inherit", ...fds],
        env,
      },
    );
  }

  /** Starts a standby (src/node/standby.ts) if the node has that option and none is parked. */
  private startSpare(): void {
    if (this.config.standby !== true || this.spare !== null || this.stopping || this.spareFailures >= STANDBY_FAILURES) return;
    let pair: [number, number];
    try {
      pair = fdPair();
    } catch (e) {
      log(`no standby: ${e instanceof Error ? e.message : String(e)}`);
      this.spareFailures = STANDBY_FAILURES;
      return;
    }
    const env = nodeEnvironment();
    delete env[TAP_FDS_ENV];
    env[STANDBY_FD_ENV] = "3,4";
    const child = this.spawnRun([pair[1], "pipe"], env);
    fs.closeSync(pair[1]);
    const spare = { child, sock: pair[0] };
    this.spare = spare;
    // Recorded once it is parked (its modules loaded): it says so on slot 4.
    child.stdio[4]?.once("data", () => {
      if (this.spare !== spare) return;
      this.status.standby = child.pid ?? null;
      this.save();
    });
    child.stdio[4]?.on("error", () => undefined);
    let ended = false;
    const gone = (why: string): void => {
      if (ended) return;
      ended = true;
      if (this.spare !== spare) return; // it took over: the node's own handlers follow it
      this.spare = null;
      fs.closeSync(spare.sock);
      this.status.standby = null;
      this.spareFailures++;
      log(`standby (pid ${child.pid}) ${why}${this.spareFailures >= STANDBY_FAILURES ? `; ${this.spareFailures} in a row, no more standbys` : ""}`);
      this.save();
      if (!this.stopping && this.child !== null && this.status.state === "running") this.startSpare();
    };
    child.on("error", (e) => gone(`cannot start: ${e.message}`));
    child.on("exit", (code, signal) => gone(signal ? `was killed by ${signal}` : `exited with status ${code}`));
  }

  /**
   * Hands `taps` to the parked standby, which becomes the node; false (the fds still
   * ours) when there is none or it cannot take them (it died meanwhile).
   */
  private takeOver(diedAt: number, { fds, spec, names }: { fds: number[]; spec: string; names: string[] }): boolean {
    const spare = this.spare;
    if (spare === null || this.stopping) return false;
    this.spare = null;
    this.status.standby = null;
    try {
      fdSend(spare.sock, spec, fds);
    } catch (e) {
      log(`standby (pid ${spare.child.pid}) cannot take over (${e instanceof Error ? e.message : String(e)}): starting a new node`);
      fs.closeSync(spare.sock);
      spare.child.kill("SIGKILL");
      return false;
    }
    fs.closeSync(spare.sock);
    for (const fd of fds) fs.closeSync(fd); // the node has them now
    this.spareFailures = 0;
    this.status.lastRestart = "standby";
    log(`standby (pid ${spare.child.pid}) takes over node ${this.config.node}`);
    this.adopt(spare.child, diedAt, names);
    return true;
  }

  /** Starts the node process, handing it `taps` (attachHosts). */
  private spawnNode(diedAt: number | null, { fds, spec, names }: { fds: number[]; spec: string; names: string[] }): void {
    if (this.stopping) {
      for (const fd of fds) fs.closeSync(fd);
      return;
    }
    const env = nodeEnvironment();
    delete env[TAP_FDS_ENV];
    if (spec !== "") env[TAP_FDS_ENV] = spec;
    const child = this.spawnRun(fds, env);
    for (const fd of fds) fs.closeSync(fd); // the node has them now
    if (diedAt !== null && this.config.standby === true) this.status.lastRestart = "cold";
    this.adopt(child, diedAt, names);
  }

  /** Makes `child` (just spawned, or a standby that took over) the node. */
  private adopt(child: ChildProcess, diedAt: number | null, names: string[]): void {
    this.child = child;
    this.status.pid = child.pid ?? null;
    this.status.state = "starting";
    this.status.reattached = names;
    this.save();
    let ended = false;
    child.on("error", (e) => {
      log(`cannot start node ${this.config.node}: ${e.message}`);
      if (!ended && child.pid === undefined) {
        ended = true;
        this.exited(child, 1, null);
      }
    });
    child.on("exit", (code, signal) => {
      if (ended) return;
      ended = true;
      this.exited(child, code, signal);
    });
    if (child.pid !== undefined) void this.waitReady(child, diedAt);
  }

  /** Asks the new node for its status until it answers; records the recovery time. */
  private async waitReady(child: ChildProcess, diedAt: number | null): Promise<void> {
    const begin = performance.now();
    while (this.child === child && performance.now() - begin < READY_MAX_MS) {
      try {
        await request(this.config.controlSocket, { cmd: "status" }, 1000);
        if (this.child !== child || this.stopping) return;
        this.status.state = "running";
        void this.podMtu.watch();
        if (diedAt !== null) {
          this.status.lastRecoveryMs = Math.round(performance.now() - diedAt);
          log(`node ${this.config.node} (pid ${child.pid}) answers again, ${this.status.lastRecoveryMs} ms after the exit`);
        }
        this.save();
        this.startSpare();
        return;
      } catch {
        await new Promise((r) => setTimeout(r, READY_POLL_MS));
      }
    }
  }

  private exited(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.child !== child) return;
    const now = performance.now();
    this.child = null;
    this.status.pid = null;
    if (this.killTimer) clearTimeout(this.killTimer);
    if (this.stopping) {
      this.status.state = "stopped";
      this.save();
      process.exit(0);
    }
    this.status.lastExit = { code, signal, at: new Date().toISOString() };
    this.status.restarts++;
    const next = restartDelay(this.deaths, now);
    this.deaths = next.deaths;
    const wait = next.waitMs;
    log(
      `node ${this.config.node} (pid ${child.pid}) ${signal ? `was killed by ${signal}` : `exited with status ${code}`}; ` +
        `restart ${this.status.restarts}${wait ? ` in ${wait} ms (${this.deaths.length} exits within ${LOOP_WINDOW_MS / 1000} s)` : ""}`,
    );
    this.status.state = wait ? "waiting" : "starting";
    this.save();
    if (wait) this.restartTimer = setTimeout(() => this.launch(now), wait);
    else this.launch(now);
  }

  /** Ends the standby: it holds nothing, so SIGKILL at once. */
  private stopSpare(): void {
    const spare = this.spare;
    if (spare === null) return;
    this.spare = null;
    this.status.standby = null;
    spare.child.kill("SIGKILL");
    fs.closeSync(spare.sock);
  }

  /** SIGTERM to the node, SIGKILL after STOP_GRACE_MS; exits once it is gone. */
  private stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    this.podMtu.stop();
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.stopSpare();
    const child = this.child;
    if (child === null) {
      this.status.state = "stopped";
      this.save();
      process.exit(0);
    }
    this.status.state = "stopping";
    this.save();
    child.kill("SIGTERM");
    this.killTimer = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
  }
}

/** Entry point of `tapnet node supervise CONFIG`: runs until SIGTERM/SIGINT. */
export function runSupervisor(configPath: string): void {
  if (process.getuid?.() !== 0) throw new Error("tapnet node supervise needs root (it enters the hosts' namespaces to hand their TAPs to a restarted node)");
  const config = JSON.parse(fs.readFileSync(configPath, "utf8")) as NodeConfig;
  new Supervisor(path.resolve(configPath), config).start();
}
