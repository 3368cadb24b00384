/**
 * Many `ip` commands in many namespaces, run by one `ip -batch` process.
 *
 * Building a lab is hundreds of small commands (a namespace, its sysctls, a host's
 * address, a TAP moved into its host…). Run one process each from Node.js, every
 * command costs a fork of this whole process (about 5 ms); `ip -batch` runs them in
 * one small process instead. Commands for the caller's namespace are batch lines as
 * they are; commands for another namespace become `netns exec NS ip -batch FILE` (iproute2
 * forks for `netns exec` in batch mode and switches namespace in the child only), with
 * the consecutive commands for one namespace grouped in one file, or `netns exec NS ip
 * CMD` when there is only one. Programs (sysctl, ethtool) run through `netns exec` too.
 * Order is kept: the batch stops at the first command that fails, and the error names it.
 */
import fs from "node:fs";
import path from "node:path";
import { CommandError, run } from "./sys.js";

type Step = { ns: string | undefined; ip: string[] } | { ns: string; exec: string[] };

export class IpPlan {
  private readonly steps: Step[] = [];

  /** `dir`: where the per-namespace batch files are written (and removed after the run). */
  constructor(private readonly dir: string) {}

  /** An `ip` command (without the leading `ip`) in namespace `ns`, or in the caller's when undefined. */
  ip(ns: string | undefined, line: string): this {
    const last = this.steps[this.steps.length - 1];
    if (last !== undefined && "ip" in last && last.ns === ns) last.ip.push(line);
    else this.steps.push({ ns, ip: [line] });
    return this;
  }

  /** A program run in namespace `ns` (`ip netns exec`); its words must hold no blanks. */
  exec(ns: string, argv: string[]): this {
    this.steps.push({ ns, exec: argv });
    return this;
  }

  get empty(): boolean {
    return this.steps.length === 0;
  }

  /** Runs every command in order; throws CommandError naming the failed one. */
  run(): void {
    if (this.steps.length === 0) return;
    const files: string[] = [];
    const lines: string[] = [];
    const groups = new Map<string, string[]>();
    try {
      for (const s of this.steps) {
        if ("exec" in s) lines.push(`netns exec ${s.ns} ${s.exec.join(" ")}`);
        else if (s.ns === undefined) lines.push(...s.ip);
        else if (s.ip.length === 1) lines.push(`netns exec ${s.ns} ip ${s.ip[0]}`);
        else {
          const file = path.join(this.dir, `.ip-plan-${process.pid}-${files.length}.batch`);
          fs.writeFileSync(file, `${s.ip.join("\n")}\n`);
          files.push(file);
          groups.set(file, s.ip);
          lines.push(`netns exec ${s.ns} ip -batch ${file}`);
        }
      }
      try {
        run(["ip", "-batch", "-"], `${lines.join("\n")}\n`);
      } catch (e) {
        if (!(e instanceof CommandError)) throw e;
        // "Command failed FILE:N" (inside a namespace's file), then "Command failed -:K".
        const inner = /Command failed (\S+):(\d+)/.exec(e.stderr);
        const outer = /Command failed -:(\d+)/.exec(e.stderr);
        const what = inner && inner[1] !== "-" ? groups.get(inner[1])?.[Number(inner[2]) - 1] : undefined;
        const where = outer ? lines[Number(outer[1]) - 1] : undefined;
        const msg = e.stderr.replace(/^Command failed .*$/gm, "").trim() || "no message";
        const detail = what !== undefined ? `ip ${what}' (${where})` : `${where ?? "ip -batch"}'`;
        throw new Error(`'${detail} failed: ${msg}`);
      }
    } finally {
      for (const f of files) fs.rmSync(f, { force: true });
      this.steps.length = 0;
    }
  }
}
