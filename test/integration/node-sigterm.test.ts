/**
 * SIGTERM to a running node: it exits by itself (status 0, not killed) and what it
 * opened goes with it — its TAPs (not persistent here, as for a node run by hand), its
 * control socket — and the veth its libpcap port captured on stays. The node runs as a lab's supervisor
 * runs it (`ip netns exec NS setpriv … node run`), so the PID signalled is the node's.
 * How fast it exits is measured by `npm run bench -- lab`, not asserted here.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { request } from "../../src/control/client.js";
import { nodeConfig } from "../../src/lab/node-config.js";
import { parseTopology } from "../../src/lab/topology.js";
import { nodeEnvironment, nodeLauncher } from "../../src/node/sandbox.js";
import { CLI, canRunLabs, inNs, waitFor, waitOutput } from "./harness.js";

const NS = "tn.sigterm.sw1";
const TAPS = ["h1", "h2", "h3", "h4"];

/** The interface names in the namespace. */
function links(): string[] {
  const r = inNs(NS, ["ip", "-o", "link", "show"]);
  return [...r.stdout.matchAll(/^\d+: ([^:@]+)[:@]/gm)].map((m) => m[1]);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe.skipIf(!canRunLabs())("a node stopped with SIGTERM", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tapnet-sigterm-"));
  let child: ChildProcess | undefined;

  beforeAll(() => {
    fs.chmodSync(dir, 0o755); // the node runs as root without CAP_DAC_OVERRIDE
    spawnOk(["ip", "netns", "add", NS]);
    spawnOk(["ip", "-n", NS, "link", "add", "p0", "type", "veth", "peer", "name", "p1"]);
    spawnOk(["ip", "-n", NS, "link", "set", "p0", "up"]);
    spawnOk(["ip", "-n", NS, "link", "set", "p1", "up"]);
  });

  afterAll(() => {
    if (child?.pid !== undefined && alive(child.pid)) child.kill("SIGKILL");
    spawnOk(["ip", "netns", "del", NS], true);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("exits with status 0, its TAPs and control socket gone, the veth it captured on left alone", async () => {
    const hosts = TAPS.map((h, i) => `  ${h}: { node: sw1, ip: 10.0.0.${i + 1}/24 }`).join("\n");
    const t = parseTopology(`name: sigterm\nnodes:\n  sw1: {}\nhosts:\n${hosts}\n`, "sigterm.yaml");
    const cfg = nodeConfig(t, "sw1");
    cfg.persistentTaps = false;
    cfg.journal = undefined;
    cfg.controlSocket = path.join(dir, "sw1.sock");
    cfg.ports.push({ ...cfg.ports[0], name: "p0", kind: "pcap", ifname: "p0" });
    const cfgPath = path.join(dir, "sw1.json");
    fs.writeFileSync(cfgPath, JSON.stringify(cfg));

    // ip netns exec and setpriv exec: the PID is the node's.
    const node = spawn("ip", ["netns", "exec", NS, ...nodeLauncher(), process.execPath, CLI, "node", "run", cfgPath], {
      stdio: ["ignore", "pipe", "pipe"],
      env: nodeEnvironment(),
    });
    child = node;
    let stderr = "";
    node.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      node.on("exit", (code, signal) => resolve({ code, signal })),
    );
    if (node.stdout === null || node.pid === undefined) throw new Error("could not start the node");
    await waitOutput(node.stdout, /tapnet node sw1 \(lab sigterm\) up/, "the node's start-up line", 30_000).catch((e: Error) => {
      throw new Error(`${e.message}\nstderr: ${stderr}`);
    });
    const st = await request<{ ports: string[] }>(cfg.controlSocket, { cmd: "status" });
    expect(st.ports.sort()).toEqual([...TAPS, "p0"].sort());
    expect(links()).toEqual(expect.arrayContaining([...TAPS, "p0", "p1"]));

    node.kill("SIGTERM");
    const end = await Promise.race([exited, new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 15_000))]);
    expect(end, `the node did not exit within 15 s of SIGTERM; stderr: ${stderr}`).not.toBe("timeout");
    expect(end).toEqual({ code: 0, signal: null });
    expect(alive(node.pid)).toBe(false);
    // Non-persistent TAPs go with their last fd, which went with the process.
    await waitFor("the TAPs to be gone", () => !links().some((l) => TAPS.includes(l)), 5000);
    expect(links().filter((l) => TAPS.includes(l))).toEqual([]);
    expect(links()).toEqual(expect.arrayContaining(["p0", "p1"]));
    // The socket file stays (the seccomp filter refuses unlink: src/node/sandbox.ts); nothing answers on it.
    await expect(request(cfg.controlSocket, { cmd: "status" }, 2000)).rejects.toThrow();
  }, 60_000);
});

function spawnOk(argv: string[], quiet = false): void {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: "utf8" });
  if (r.status !== 0 && !quiet) throw new Error(`${argv.join(" ")}: ${r.stderr}`);
}
