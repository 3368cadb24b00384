/**
 * A lab's state: what `lab up` made, recorded in /run/tapnet/LAB/state.json before each
 * step so `lab down` can always undo it, and how commands find a lab, a node or a host.
 */
import fs from "node:fs";
import path from "node:path";
import { RUN_DIR } from "../control/protocol.js";

export interface LabState {
  lab: string;
  file: string;
  createdAt: string;
  namespaces: string[];
  /**
   * pid: the node process's PID as readState() gives it — the current one, from the
   * supervisor's status file (a restarted node has a new PID), null while it is down.
   * supervisor: the PID of the node's supervisor (src/lab/supervisor.ts).
   */
  nodes: Record<string, { namespace: string; pid: number | null; supervisor?: number; socket: string; config: string; log: string }>;
  hosts: Record<
    string,
    {
      namespace: string;
      node: string;
      ip: string;
      gateway?: string;
      vlan: number;
      link: string;
      run?: { pid: number; command: string; log: string };
      /** A mesh pod without an MTU of its own: its eth0 follows the mesh MTU (src/mesh/pod-mtu.ts). */
      mtuFromMesh?: boolean;
    }
  >;
  /** Daemons the lab runs in its namespaces (BIRD), stopped by PID at lab down. */
  daemons?: Record<string, { namespace: string; pid: number; command: string; log: string }>;
  /** kind: kernel nodes: a Linux bridge br0 in the namespace. */
  kernel?: Record<string, { namespace: string }>;
}

export const nsName = (lab: string, name: string): string => `tn.${lab}.${name}`;
export const labDir = (lab: string): string => path.join(RUN_DIR, lab);
const statePath = (lab: string): string => path.join(labDir(lab), "state.json");

export type Log = (msg: string) => void;

/** What a node's supervisor says of it, in /run/tapnet/LAB/NODE.supervisor.json (written by the supervisor alone). */
export interface SupervisorStatus {
  lab: string;
  node: string;
  /** The supervisor's PID. */
  supervisor: number;
  /** The node process's PID; null while it is down. */
  pid: number | null;
  /** starting: spawned, not answering yet; waiting: backing off before a restart. */
  state: "starting" | "running" | "waiting" | "stopping" | "stopped";
  startedAt: string;
  /** Restarts after the node died without being asked to stop. */
  restarts: number;
  /** How the node last ended: exit code or signal name, and when (ISO 8601). */
  lastExit: { code: number | null; signal: string | null; at: string } | null;
  /** The last restart: ms from the node's death to its successor answering on the control socket. */
  lastRecoveryMs: number | null;
  /** Hosts whose TAPs the last start handed to the node. */
  reattached: string[];
  /** The parked standby process's PID (nodes with `standby: true`), null while there is none. */
  standby?: number | null;
  /** How the last restart started the node: "standby" (the parked process took over) or "cold" (a new process). */
  lastRestart?: "standby" | "cold";
}

export const supervisorStatusPath = (lab: string, node: string): string => path.join(labDir(lab), `${node}.supervisor.json`);

export function readSupervisorStatus(lab: string, node: string): SupervisorStatus | null {
  try {
    return JSON.parse(fs.readFileSync(supervisorStatusPath(lab, node), "utf8")) as SupervisorStatus;
  } catch {
    return null;
  }
}

export function readState(lab: string): LabState | null {
  let s: LabState;
  try {
    s = JSON.parse(fs.readFileSync(statePath(lab), "utf8")) as LabState;
  } catch {
    return null;
  }
  // The node's current PID is the supervisor's to know (it restarts the node).
  for (const [name, n] of Object.entries(s.nodes)) {
    const st = readSupervisorStatus(lab, name);
    if (st !== null) n.pid = st.pid;
  }
  return s;
}

export function writeState(s: LabState): void {
  fs.mkdirSync(labDir(s.lab), { recursive: true, mode: 0o700 });
  const tmp = `${statePath(s.lab)}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(s, null, 2));
  fs.renameSync(tmp, statePath(s.lab));
}

export function listLabs(): LabState[] {
  let names: string[] = [];
  try {
    names = fs.readdirSync(RUN_DIR);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EACCES" || code === "EPERM") {
      throw new Error(`${RUN_DIR}: permission denied (labs and their control sockets are root-only: run with sudo)`);
    }
    return [];
  }
  return names.map(readState).filter((s): s is LabState => s !== null);
}

/** The lab (other than `except`) whose state records one of `namespaces`, if any. */
export function ownerOf(namespaces: string[], except?: string): string | null {
  for (const s of listLabs()) {
    if (s.lab === except) continue;
    if (s.namespaces.some((n) => namespaces.includes(n))) return s.lab;
  }
  return null;
}

/** Finds the lab that has `name` as a host (what = "host") or node (what = "node"). */
export function findLab(name: string | undefined, what: "host" | "node", lab?: string): LabState {
  const labs = listLabs();
  if (lab) {
    const s = labs.find((l) => l.lab === lab);
    if (!s) throw new Error(`no lab named '${lab}' is up (tapnet lab status lists them)`);
    return s;
  }
  if (labs.length === 0) throw new Error("no lab is up (start one with: tapnet lab up FILE)");
  if (name === undefined) {
    if (labs.length > 1) throw new Error(`several labs are up (${labs.map((l) => l.lab).join(", ")}): say which with --lab`);
    return labs[0];
  }
  const has = labs.filter((l) => (what === "host" ? l.hosts[name] : l.nodes[name]));
  if (has.length === 0) {
    const known = labs.flatMap((l) => Object.keys(what === "host" ? l.hosts : l.nodes));
    throw new Error(`no ${what} named '${name}' in the labs that are up (${what}s: ${known.join(", ") || "none"})`);
  }
  if (has.length > 1) throw new Error(`${what} '${name}' exists in labs ${has.map((l) => l.lab).join(", ")}: say which with --lab`);
  return has[0];
}
