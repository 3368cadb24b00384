/**
 * IPAM by delegation (CNI SPEC.md, "Section 4: Plugin Delegation"): the plugin named by
 * `ipam.type` is found on CNI_PATH and run with the same environment (CNI_COMMAND set to
 * the operation) and the same network configuration on stdin; its result (ADD) or its
 * error object is read from stdout. The addresses come from host-local, dhcp or static
 * as installed by containernetworking-plugins; tapnet keeps no allocator of its own.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { CniError, ERR, parseResult, type Result } from "./spec.js";

/** The IPAM plugin's executable: the first `type` on CNI_PATH (colon-separated). */
export function findPlugin(type: string, cniPath: string): string {
  const dirs = cniPath.split(":").filter(Boolean);
  for (const d of dirs) {
    const f = path.join(d, type);
    try {
      fs.accessSync(f, fs.constants.X_OK);
      if (fs.statSync(f).isFile()) return f;
    } catch {
      // not in this directory
    }
  }
  throw new CniError(ERR.invalidConfig, `failed to find IPAM plugin "${type}" in path [${dirs.join(" ")}]`, "ipam.type names a plugin that is not on CNI_PATH");
}

/**
 * Runs the IPAM plugin for `command` (ADD, DEL or CHECK) and returns its result (ADD) or
 * null. A failure becomes a CniError keeping the delegate's code and message.
 */
export function delegate(command: "ADD" | "DEL" | "CHECK", type: string, stdin: string, env: NodeJS.ProcessEnv): Result | null {
  const file = findPlugin(type, env.CNI_PATH ?? "");
  // The dhcp plugin asks its daemon, which may wait for a lease for tens of seconds.
  const r = spawnSync(file, [], { input: stdin, env: { ...env, CNI_COMMAND: command }, encoding: "utf8", timeout: 120_000 });
  if (r.error) throw new CniError(ERR.io, `IPAM plugin ${file}: ${r.error.message}`);
  const out = (r.stdout ?? "").trim();
  if (r.status !== 0) {
    let e: { code?: unknown; msg?: unknown; details?: unknown } = {};
    try {
      e = JSON.parse(out) as typeof e;
    } catch {
      // not an error object: report what it printed
    }
    const code = typeof e.code === "number" ? e.code : ERR.ipam;
    const msg = typeof e.msg === "string" ? e.msg : out || (r.stderr ?? "").trim() || `exit status ${r.status}`;
    const details = typeof e.details === "string" ? e.details : undefined;
    throw new CniError(code, `IPAM plugin ${type} (${command}): ${msg}`, details);
  }
  if (command !== "ADD") return null;
  let j: unknown;
  try {
    j = JSON.parse(out);
  } catch {
    throw new CniError(ERR.decode, `IPAM plugin ${type} printed no JSON result: ${out.slice(0, 200)}`);
  }
  const res = parseResult(j, `IPAM plugin ${type}'s result`);
  if (!res.ips || res.ips.length === 0) throw new CniError(ERR.ipam, `IPAM plugin ${type} gave no address`);
  return res;
}
