/**
 * Shared helpers for the integration tests: they build labs of network namespaces
 * and tapnet node processes and drive the real tools (ping, tcpdump, tshark) in them.
 *
 * These tests need root, /dev/net/tun and the built addon. Outside CI they are
 * skipped when those are missing; with CI=true a missing prerequisite fails the run.
 */
import { spawn, spawnSync, type SpawnSyncReturns } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const CLI = path.join(ROOT, "dist/cli/main.js");

export function labPrerequisites(): string | null {
  if (process.getuid?.() !== 0) return "not root";
  if (!fs.existsSync("/dev/net/tun")) return "no /dev/net/tun";
  if (!fs.existsSync(CLI)) return `not built (${CLI} missing: run npm run build)`;
  if (!fs.existsSync(path.join(ROOT, "native/build/Release/tapnet.node"))) return "native addon not built";
  return null;
}

/** True when integration tests can run; throws under CI when they cannot. */
export function canRunLabs(): boolean {
  const why = labPrerequisites();
  if (why === null) return true;
  if (process.env.CI) throw new Error(`integration tests must run in CI but cannot: ${why}`);
  return false;
}

export interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

function result(r: SpawnSyncReturns<string>): Result {
  return { status: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

/** Runs the tapnet CLI (the built one, as a user would). */
export function tapnet(args: string[], timeoutMs = 60_000): Result {
  return result(spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: timeoutMs }));
}

export function tapnetOk(args: string[]): string {
  const r = tapnet(args);
  if (r.status !== 0) throw new Error(`tapnet ${args.join(" ")} exited ${r.status}:\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** Runs a command in a namespace; never throws, returns the result. */
export function inNs(ns: string, argv: string[], timeoutMs = 30_000): Result {
  return result(spawnSync("ip", ["netns", "exec", ns, ...argv], { encoding: "utf8", timeout: timeoutMs }));
}

export function ping(ns: string, dst: string, count = 2, extra: string[] = []): Result {
  return inNs(ns, ["ping", "-n", "-c", String(count), "-i", "0.2", "-W", "1", ...extra, dst]);
}

export function macOf(ns: string, ifname = "eth0"): string {
  const r = inNs(ns, ["cat", `/sys/class/net/${ifname}/address`]);
  if (r.status !== 0) throw new Error(`no ${ifname} in ${ns}: ${r.stderr}`);
  return r.stdout.trim();
}

export function netnsList(): string[] {
  const r = spawnSync("ip", ["netns", "list"], { encoding: "utf8" });
  return (r.stdout ?? "")
    .split("\n")
    .map((l) => l.trim().split(/\s+/)[0])
    .filter(Boolean);
}

/**
 * A tcpdump running in a namespace, writing a pcap; `stop()` ends it and returns the
 * decoded lines (tcpdump -r -nn -e). Waits until tcpdump is really listening.
 */
export async function tcpdump(ns: string, ifname: string, filter: string[] = []): Promise<{ stop: () => Promise<string[]>; lines: () => string[] }> {
  const file = path.join(os.tmpdir(), `tn-test-${process.pid}-${Math.random().toString(16).slice(2)}.pcap`);
  const child = spawn("ip", ["netns", "exec", ns, "tcpdump", "-i", ifname, "--immediate-mode", "-U", "-n", "-w", file, ...filter], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`tcpdump in ${ns} did not start: ${err}`)), 10_000);
    child.stderr.on("data", (c: Buffer) => {
      err += c.toString();
      if (err.includes("listening on")) {
        clearTimeout(t);
        resolve();
      }
    });
    child.on("exit", () => {
      clearTimeout(t);
      reject(new Error(`tcpdump in ${ns} exited: ${err}`));
    });
  });
  return {
    // What the capture holds so far (-U writes every packet as it comes): wait on it
    // before stop(), which may lose what tcpdump has not read yet.
    lines: () => (spawnSync("tcpdump", ["-r", file, "-nn", "-e"], { encoding: "utf8" }).stdout ?? "").split("\n").filter(Boolean),
    stop: async () => {
      await new Promise<void>((resolve) => {
        child.removeAllListeners("exit");
        child.on("exit", () => resolve());
        child.kill("SIGINT");
        setTimeout(() => child.kill("SIGKILL"), 3000).unref();
      });
      const r = spawnSync("tcpdump", ["-r", file, "-nn", "-e"], { encoding: "utf8" });
      fs.rmSync(file, { force: true });
      return (r.stdout ?? "").split("\n").filter(Boolean);
    },
  };
}

/** Sends raw Ethernet frames (hex strings) out of an interface in a namespace. */
export function sendRaw(ns: string, ifname: string, framesHex: string[]): Result {
  const py = [
    "import socket,sys",
    "s=socket.socket(socket.AF_PACKET, socket.SOCK_RAW)",
    `s.bind((${JSON.stringify(ifname)},0))`,
    ...framesHex.map((h) => `s.send(bytes.fromhex(${JSON.stringify(h)}))`),
  ].join("\n");
  return inNs(ns, ["python3", "-c", py]);
}

export function writeLabFile(name: string, yaml: string): string {
  const file = path.join(os.tmpdir(), `tapnet-test-${name}-${process.pid}.yaml`);
  fs.writeFileSync(file, yaml);
  return file;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Polls `check` every `everyMs` until it returns a value other than undefined/false, and
 * returns that value; throws naming `what` when `timeoutMs` passes first. The one way
 * tests wait: for a signal, with a bound.
 */
export async function waitFor<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 10_000,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** The kernel's SNMP counters of a namespace (/proc/net/snmp), as "Udp.InDatagrams" -> value. */
export function snmp(ns: string): Record<string, number> {
  const r = inNs(ns, ["cat", "/proc/net/snmp"]);
  const out: Record<string, number> = {};
  const lines = r.stdout.split("\n");
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const [proto, ...names] = lines[i].split(/\s+/);
    const values = lines[i + 1].split(/\s+/).slice(1);
    names.forEach((n, k) => (out[`${proto.replace(/:$/, "")}.${n}`] = Number(values[k])));
  }
  return out;
}

/** Waits until the SNMP counter `name` of `ns` has grown by at least `by` from `from`. */
export async function waitSnmp(ns: string, name: string, from: number, by: number, timeoutMs = 5000): Promise<number> {
  return waitFor(
    `${name} in ${ns} to grow by ${by}`,
    () => {
      const v = snmp(ns)[name];
      return v - from >= by ? v : undefined;
    },
    timeoutMs,
    20,
  );
}

/** Waits until something listens on `port` (tcp or udp) in namespace `ns`. */
export async function waitListening(ns: string, port: number, proto: "tcp" | "udp" = "tcp", timeoutMs = 10_000): Promise<void> {
  await waitFor(
    `${proto} port ${port} listening in ${ns}`,
    () => {
      const r = inNs(ns, ["ss", "-Hn", proto === "tcp" ? "-lt" : "-lu", `sport = :${port}`]);
      return r.status === 0 && r.stdout.trim() !== "";
    },
    timeoutMs,
  );
}

/** Waits until `stream` (a child's stdout/stderr) has printed text matching `re`; returns all it printed. */
export function waitOutput(stream: NodeJS.ReadableStream, re: RegExp, what: string, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    const t = setTimeout(() => {
      stream.off("data", on);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; it printed: ${text.slice(-500)}`));
    }, timeoutMs);
    const on = (c: Buffer): void => {
      text += c.toString();
      if (re.test(text)) {
        clearTimeout(t);
        stream.off("data", on);
        resolve(text);
      }
    };
    stream.on("data", on);
  });
}

/**
 * Captures on `ifname` in `ns` with tcpdump while `fn` runs, then reads the capture
 * with tshark (IP/UDP checksum validation on; tshark 4 always checks ICMP) and
 * returns one line per frame: the fields joined by "|".
 */
export async function captureFields(
  ns: string,
  ifname: string,
  fn: () => void | Promise<void>,
  fields: string[],
  tsharkArgs: string[] = [],
): Promise<string[]> {
  const file = path.join(os.tmpdir(), `tn-cap-${process.pid}-${Date.now()}-${Math.random().toString(16).slice(2)}.pcap`);
  const child = spawn("ip", ["netns", "exec", ns, "tcpdump", "-i", ifname, "--immediate-mode", "-U", "-n", "-w", file], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  try {
    await new Promise<void>((resolve, reject) => {
      let err = "";
      const t = setTimeout(() => reject(new Error(`tcpdump in ${ns} did not start: ${err}`)), 10_000);
      child.stderr.on("data", (c: Buffer) => {
        err += c.toString();
        if (err.includes("listening on")) {
          clearTimeout(t);
          resolve();
        }
      });
      child.on("exit", () => reject(new Error(`tcpdump in ${ns} exited: ${err}`)));
    });
    await fn();
  } finally {
    await new Promise<void>((r) => {
      if (child.exitCode !== null) return r();
      child.removeAllListeners("exit");
      child.on("exit", () => r());
      child.kill("SIGINT");
      setTimeout(() => child.kill("SIGKILL"), 3000).unref();
    });
  }
  const r = spawnSync(
    "tshark",
    [
      "-r",
      file,
      "-o",
      "ip.check_checksum:TRUE",
      "-o",
      "udp.check_checksum:TRUE",
      ...tsharkArgs,
      "-T",
      "fields",
      "-E",
      "separator=|",
      ...fields.flatMap((f) => ["-e", f]),
    ],
    { encoding: "utf8" },
  );
  fs.rmSync(file, { force: true });
  if (r.status !== 0) throw new Error(`tshark: ${r.stderr}`);
  return r.stdout.split("\n").filter(Boolean);
}

/** iperf3 TCP from `client` to `serverIp` (server in `server`) for `seconds`; returns bits/s received. */
export async function iperf(server: string, client: string, serverIp: string, seconds = 2): Promise<number> {
  const srv = spawn("ip", ["netns", "exec", server, "iperf3", "-s", "-1", "-J"], { stdio: ["ignore", "pipe", "pipe"] });
  try {
    await waitListening(server, 5201);
    const r = inNs(client, ["timeout", "-k", "2", String(seconds + 15), "iperf3", "-c", serverIp, "-t", String(seconds), "-J"], (seconds + 20) * 1000);
    if (r.status !== 0) throw new Error(`iperf3 client failed (${r.status}): ${r.stdout.slice(-500)} ${r.stderr}`);
    const j = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } };
    return j.end.sum_received.bits_per_second;
  } finally {
    if (srv.exitCode === null) srv.kill("SIGKILL");
  }
}

/** A process running in a namespace in the background (a load generator, a pinger, a client). */
export interface Background {
  readonly pid: number;
  /** Everything it printed so far on stdout. */
  out(): string;
  err(): string;
  /** Still running? */
  running(): boolean;
  /** Resolves with the exit code (null when killed) once it has exited. */
  readonly exited: Promise<number | null>;
  /** Waits until stdout matches `re` (a readiness line); throws after `ms` or if it exits first. */
  waitFor(re: RegExp, ms?: number): Promise<void>;
  /** Writes to its stdin (started with `stdin: true`); `end` closes it after. */
  send(text: string, end?: boolean): void;
  /** Signals it (by PID) and waits for it to exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Starts `argv` in namespace `ns` (ip netns exec execs it: the PID is the command's).
 * Bound load generators with `timeout -k 2 N …`; stop() the rest in a finally.
 */
export function background(ns: string, argv: string[], opts: { stdin?: boolean } = {}): Background {
  const child = spawn("ip", ["netns", "exec", ns, ...argv], { stdio: [opts.stdin ? "pipe" : "ignore", "pipe", "pipe"] });
  if (child.pid === undefined) throw new Error(`could not start ${argv.join(" ")} in ${ns}`);
  let out = "";
  let err = "";
  child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  let done = false;
  void exited.then(() => (done = true));
  return {
    pid: child.pid,
    out: () => out,
    err: () => err,
    exited,
    running: () => !done,
    send(text: string, end = false): void {
      if (!child.stdin) throw new Error(`${argv.join(" ")}: started without stdin`);
      if (end) child.stdin.end(text);
      else child.stdin.write(text);
    },
    async waitFor(re: RegExp, ms = 10_000): Promise<void> {
      const t0 = Date.now();
      while (!re.test(out)) {
        if (done) throw new Error(`${argv.join(" ")} in ${ns} exited before printing ${re}: ${out.slice(-500)} ${err.slice(-500)}`);
        if (Date.now() - t0 > ms) throw new Error(`${argv.join(" ")} in ${ns} did not print ${re} within ${ms} ms: ${out.slice(-500)} ${err.slice(-500)}`);
        await sleep(20);
      }
    },
    async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
      if (done) return;
      try {
        process.kill(child.pid as number, signal);
      } catch {
        // already gone
      }
      const t = setTimeout(() => {
        try {
          process.kill(child.pid as number, "SIGKILL");
        } catch {
          // gone
        }
      }, 5000);
      await exited;
      clearTimeout(t);
    },
  };
}
