/** Small helpers to run the system's own tools (ip, sysctl) with clear errors. */
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";

export class CommandError extends Error {
  constructor(
    readonly argv: string[],
    readonly stderr: string,
    readonly status: number | null,
  ) {
    super(`'${argv.join(" ")}' failed${status !== null ? ` (exit ${status})` : ""}: ${stderr.trim() || "no message"}`);
    this.name = "CommandError";
  }
}

/** Runs a command, returns its stdout; throws CommandError with its stderr on failure. */
export function run(argv: string[], input?: string): string {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: "utf8", input, stdio: ["pipe", "pipe", "pipe"] });
  if (r.error) {
    const e = r.error as NodeJS.ErrnoException;
    if (e.code === "ENOENT") throw new CommandError(argv, `${argv[0]} is not installed (run: sudo npm run setup)`, null);
    throw new CommandError(argv, e.message, null);
  }
  if (r.status !== 0) throw new CommandError(argv, r.stderr || r.stdout, r.status);
  return r.stdout;
}

/** Runs a batch of `ip` commands in one process (`ip -batch -`). */
export function ipBatch(lines: string[], netns?: string): void {
  if (lines.length === 0) return;
  const argv = netns ? ["ip", "-n", netns, "-batch", "-"] : ["ip", "-batch", "-"];
  run(argv, `${lines.join("\n")}\n`);
}

export function netnsList(): string[] {
  let out: string;
  try {
    out = execFileSync("ip", ["netns", "list"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch {
    return [];
  }
  return out
    .split("\n")
    .map((l) => l.trim().split(/\s+/)[0])
    .filter((n) => n.length > 0);
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The command line of a process, or null when it is gone. */
export function cmdline(pid: number): string | null {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ");
  } catch {
    return null;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Stops a process group a lab started (a host's command, a daemon) by the PID recorded,
 * only while /proc still shows its command (a PID reused by another process is left
 * alone): SIGTERM, then SIGKILL if it is still there after `waitMs`.
 */
export async function stopGroup(r: { pid: number; command: string }, waitMs: number): Promise<void> {
  const cl = cmdline(r.pid);
  if (cl === null || !cl.includes(r.command)) return;
  for (const sig of ["SIGTERM", "SIGKILL"] as const) {
    try {
      process.kill(-r.pid, sig);
    } catch {
      return;
    }
    for (let waited = 0; waited < waitMs; waited += 50) {
      if (!isAlive(r.pid) || cmdline(r.pid) === null) return;
      await sleep(50);
    }
  }
}
