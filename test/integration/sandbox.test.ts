/**
 * What a node process runs with (src/node/sandbox.ts): exactly net_admin, net_raw and
 * net_bind_service on every thread, no_new_privs, a seccomp filter on every thread;
 * and that the filter refuses what it must while the node keeps working.
 *   lab tsbx: sw1 with TAP hosts h1 h2 and a veth host h3 (a libpcap port)
 */
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { request } from "../../src/control/client.js";
import { readState } from "../../src/lab/state.js";
import { nodeEnvironment, nodeLauncher } from "../../src/node/sandbox.js";
import { CLI, ROOT, canRunLabs, inNs, netnsList, ping, sleep, tapnet, tapnetOk, waitFor, waitOutput, writeLabFile } from "./harness.js";

const LAB = "tsbx";
const ns = (n: string): string => `tn.${LAB}.${n}`;
const file = writeLabFile(
  LAB,
  `
name: ${LAB}
nodes:
  sw1: {}
hosts:
  h1: { node: sw1, ip: 10.0.0.1/24 }
  h2: { node: sw1, ip: 10.0.0.2/24 }
  h3: { node: sw1, ip: 10.0.0.3/24, link: veth }
`,
);

/** CAP_NET_BIND_SERVICE (10), CAP_NET_ADMIN (12), CAP_NET_RAW (13), as /proc prints a mask. */
const CAPS = ((1n << 10n) | (1n << 12n) | (1n << 13n)).toString(16).padStart(16, "0");
const CAP_NAMES = ["net_bind_service", "net_admin", "net_raw"];

interface Sandbox {
  uid: number;
  capabilities: string[];
  noNewPrivs: boolean;
  seccomp: string;
  seccompAllowed: number | null;
}

/** The fields of /proc/PID/status (or a task's) that say what a thread runs with. */
function privileges(statusFile: string): Record<string, string> {
  const text = fs.readFileSync(statusFile, "utf8");
  const get = (k: string): string => new RegExp(`^${k}:\\s*(.*)$`, "m").exec(text)?.[1].trim() ?? `no ${k}`;
  return {
    Uid: get("Uid"),
    CapInh: get("CapInh"),
    CapPrm: get("CapPrm"),
    CapEff: get("CapEff"),
    CapBnd: get("CapBnd"),
    CapAmb: get("CapAmb"),
    NoNewPrivs: get("NoNewPrivs"),
    Seccomp: get("Seccomp"),
  };
}

const CONFINED = {
  Uid: "0\t0\t0\t0",
  CapInh: "0000000000000000",
  CapPrm: CAPS,
  CapEff: CAPS,
  CapBnd: CAPS,
  CapAmb: "0000000000000000",
  NoNewPrivs: "1",
  Seccomp: "2",
};

/** The process and every one of its threads: each thread's fields, keyed by task id. */
function everyThread(pid: number): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = { [`process ${pid}`]: privileges(`/proc/${pid}/status`) };
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) out[`task ${t}`] = privileges(`/proc/${pid}/task/${t}/status`);
  return out;
}

function expectConfined(pid: number): void {
  const all = everyThread(pid);
  expect(Object.keys(all).length).toBeGreaterThan(2); // Node.js always has threads besides the main one
  for (const [who, p] of Object.entries(all)) expect(p, who).toEqual(CONFINED);
}

/** The node's current PID (its supervisor restarts it with a new one). */
const nodePid = (): number => {
  const pid = readState(LAB)?.nodes.sw1.pid;
  if (typeof pid !== "number") throw new Error(`lab ${LAB} has no running sw1`);
  return pid;
};

describe.skipIf(!canRunLabs())("a lab node runs with least privilege", () => {
  beforeAll(() => {
    tapnet(["lab", "down", file]);
    tapnetOk(["lab", "up", file, "-q"]);
  });
  afterAll(() => {
    const r = tapnet(["lab", "down", file]);
    fs.rmSync(file, { force: true });
    expect(r.status, r.stderr).toBe(0);
    expect(netnsList().filter((n) => n.startsWith(`tn.${LAB}.`))).toEqual([]);
  });

  it("the node and each of its threads: uid 0, net_admin+net_raw+net_bind_service only, no_new_privs, seccomp filter", () => {
    expectConfined(nodePid());
  });

  it("hosts still ping each other through TAP and libpcap ports, and a capture still works", async () => {
    for (const [from, to] of [
      ["h1", "10.0.0.2"],
      ["h1", "10.0.0.3"],
      ["h3", "10.0.0.2"],
    ]) {
      const r = ping(ns(from), to, 2);
      expect(r.status, `${from} -> ${to}\n${r.stdout}${r.stderr}`).toBe(0);
    }
    const out = path.join(os.tmpdir(), `tn-sbx-${process.pid}.pcapng`);
    try {
      const cap = spawn(process.execPath, [CLI, "capture", "sw1", "h1", "h3", "--lab", LAB, "-w", out, "-c", "4"], { stdio: ["ignore", "ignore", "pipe"] });
      const exited = new Promise<number | null>((r) => cap.on("exit", (c) => r(c)));
      await waitOutput(cap.stderr, /capturing on/, "tapnet capture to attach");
      ping(ns("h1"), "10.0.0.3", 1);
      const exit = await Promise.race([exited, sleep(10_000).then(() => "timeout")]);
      if (exit === "timeout") cap.kill("SIGKILL");
      expect(exit).toBe(0);
      const r = spawnSync("tshark", ["-r", out, "-T", "fields", "-e", "frame.interface_name", "-e", "icmp.type"], { encoding: "utf8" });
      const lines = r.stdout.split("\n").filter(Boolean);
      expect(lines.length, r.stderr).toBe(4);
      for (const l of lines) expect(l).toMatch(/^h[13]\t(0|8)$/);
    } finally {
      fs.rmSync(out, { force: true });
    }
    // Threads started while the node worked have the same restrictions.
    expectConfined(nodePid());
  });

  it("status, show status and lab status say what the node runs with", () => {
    const st = JSON.parse(tapnetOk(["show", "status", "--node", "sw1", "--lab", LAB, "--json"])) as { pid: number; sandbox: Sandbox };
    expect(st.pid).toBe(nodePid());
    expect(st.sandbox).toEqual({ uid: 0, capabilities: CAP_NAMES, noNewPrivs: true, seccomp: "filter", seccompAllowed: expect.any(Number) });
    const n = st.sandbox.seccompAllowed as number;
    expect(n).toBeGreaterThan(50);
    expect(n).toBeLessThan(120);
    const line = `uid 0, caps net_bind_service,net_admin,net_raw, no_new_privs, seccomp filter (${n} syscalls)`;
    expect(tapnetOk(["lab", "status"])).toContain(line);
    const text = tapnetOk(["show", "status", "--node", "sw1", "--lab", LAB]);
    expect(text).toMatch(/capabilities\s+net_bind_service,net_admin,net_raw/);
    expect(text).toMatch(/no_new_privs\s+yes/);
    expect(text).toContain(`filter, ${n} system calls allowed`);
    const labs = JSON.parse(tapnetOk(["lab", "status", "--json"])) as Array<{ lab: string; nodes: Array<{ sandbox: Sandbox }> }>;
    expect(labs.find((l) => l.lab === LAB)?.nodes[0].sandbox).toEqual(st.sandbox);
  });

  it("a node restarted after kill -9 runs confined the same way, and forwards through the TAPs its supervisor handed it", async () => {
    const before = nodePid();
    process.kill(before, "SIGKILL");
    const after = await waitFor(
      "sw1 to be restarted",
      async () => {
        try {
          const st = await request<{ pid: number }>(`/run/tapnet/${LAB}/sw1.sock`, { cmd: "status" }, 1000);
          return st.pid !== before ? st.pid : undefined;
        } catch {
          return undefined; // not answering yet
        }
      },
      20_000,
    );
    expect(nodePid()).toBe(after);
    expectConfined(after);
    // The supervisor (root, all capabilities) is its parent; the node has none of that.
    const ppid = Number(/^PPid:\s*(\d+)$/m.exec(fs.readFileSync(`/proc/${after}/status`, "utf8"))?.[1]);
    expect(fs.readFileSync(`/proc/${ppid}/cmdline`, "utf8")).toContain("supervise");
    for (const [from, to] of [
      ["h1", "10.0.0.2"],
      ["h1", "10.0.0.3"],
    ]) {
      const r = ping(ns(from), to, 2);
      expect(r.status, `${from} -> ${to}\n${r.stdout}${r.stderr}`).toBe(0);
    }
    expect(tapnetOk(["lab", "status"])).toContain("uid 0, caps net_bind_service,net_admin,net_raw, no_new_privs, seccomp filter");
  });
});

/** A namespace of this test's own, removed afterwards. */
function netns(name: string, setup: string[]): void {
  spawnSync("ip", ["netns", "del", name]);
  const r = spawnSync("ip", ["netns", "add", name], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip netns add ${name}: ${r.stderr}`);
  const b = spawnSync("ip", ["-n", name, "-batch", "-"], { input: `${["link set lo up", ...setup].join("\n")}\n`, encoding: "utf8" });
  if (b.status !== 0) throw new Error(`setting up ${name}: ${b.stderr}`);
}

function nodeConfig(dir: string, ports: unknown[]): string {
  const cfg = path.join(dir, "node.json");
  fs.writeFileSync(
    cfg,
    JSON.stringify({
      lab: "tsbxp",
      node: "n",
      controlSocket: path.join(dir, "n.sock"),
      ports,
      switch: { ageingTime: 300, maxEntries: 1024, static: [] },
    }),
  );
  return cfg;
}

const access1 = { mode: "access", vlan: 1 };

describe.skipIf(!canRunLabs())("tapnet node run started by hand", () => {
  const NS = "tn-tsbxh-n";
  let dir = "";
  let child: ReturnType<typeof spawn> | null = null;
  beforeAll(() => {
    netns(NS, []);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "tn-sbxh-"));
  });
  afterAll(() => {
    if (child?.pid !== undefined && child.exitCode === null) child.kill("SIGKILL");
    spawnSync("ip", ["netns", "del", NS]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("re-runs itself under setpriv: the forwarding process is confined; SIGTERM reaches it", async () => {
    const cfg = nodeConfig(dir, [{ name: "t0", kind: "tap", ifname: "tsbxh0", vlan: access1 }]);
    const env = { ...process.env };
    delete env.UV_USE_IO_URING;
    const c = spawn("ip", ["netns", "exec", NS, process.execPath, CLI, "node", "run", cfg], { stdio: ["ignore", "pipe", "pipe"], env });
    child = c;
    let out = "";
    c.stdout?.on("data", (b: Buffer) => (out += b.toString()));
    c.stderr?.on("data", (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((r) => c.on("exit", (code) => r(code)));
    const deadline = Date.now() + 20_000;
    while (!out.includes("tapnet node n (lab tsbxp) up") && c.exitCode === null && Date.now() < deadline) await sleep(50);
    expect(out).toContain("tapnet node n (lab tsbxp) up");
    const st = await request<{ pid: number; sandbox: Sandbox }>(path.join(dir, "n.sock"), { cmd: "status" });
    // The process we started waits; its child, under setpriv, is the node.
    expect(st.pid).not.toBe(c.pid);
    expect(fs.readFileSync(`/proc/${st.pid}/status`, "utf8")).toMatch(new RegExp(`^PPid:\\s*${c.pid}$`, "m"));
    expectConfined(st.pid);
    expect(st.sandbox).toMatchObject({ capabilities: CAP_NAMES, noNewPrivs: true, seccomp: "filter" });
    c.kill("SIGTERM");
    expect(await Promise.race([exited, sleep(10_000).then(() => "timeout")])).toBe(0);
    expect(fs.existsSync(`/proc/${st.pid}`)).toBe(false);
  });
});

interface Probe {
  installed: { seccompAllowed: number | null; seccompSkipped: string | null };
  self: { seccomp: number; noNewPrivs: boolean; effective: string[] };
  threads: number[];
  ports: string[] | string;
  spawn: string;
  mkdir: string;
  create: string;
  chmod: string;
  netlink: string;
  kill: string;
  read: string;
  worker: { mkdir?: string; seccomp?: number; error?: string };
}

describe.skipIf(!canRunLabs())("the seccomp filter", () => {
  const NS = "tn-tsbxp-n";
  let dir = "";
  let cfg = "";
  beforeAll(() => {
    netns(NS, ["link add vp0 type veth peer name vp1", "address add 10.77.0.1/24 dev vp1", "link set vp0 up", "link set vp1 up"]);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "tn-sbxp-"));
    cfg = nodeConfig(dir, [
      { name: "t0", kind: "tap", ifname: "tsbxp0", vlan: access1 },
      { name: "p0", kind: "pcap", ifname: "vp0", vlan: access1 },
      {
        name: "v0",
        kind: "vxlan",
        ifname: "v0",
        vlan: access1,
        vxlan: {
          vni: 7,
          dstPort: 4789,
          localAddr: "10.77.0.1",
          remotes: ["10.77.0.2"],
          fdb: [],
          arpSuppress: [],
          learning: true,
          udpChecksum: true,
          underlayMtu: 1500,
        },
      },
      { name: "i0", kind: "ipip", ifname: "i0", vlan: access1, ipip: { localAddr: "10.77.0.1", peers: ["10.77.0.2"], underlayMtu: 1500 } },
    ]);
  });
  afterAll(() => {
    spawnSync("ip", ["netns", "del", NS]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Runs sandbox-probe.mjs as a node is run: setpriv, in the namespace. */
  function probe(extraEnv: Record<string, string>, scratch: string): Probe {
    fs.mkdirSync(scratch, { recursive: true });
    const r = spawnSync("ip", ["netns", "exec", NS, ...nodeLauncher(), process.execPath, path.join(ROOT, "test/integration/sandbox-probe.mjs"), cfg, scratch], {
      encoding: "utf8",
      timeout: 30_000,
      env: { ...nodeEnvironment(), TAPNET_ROOT: ROOT, ...extraEnv },
    });
    expect(r.status, r.stderr).toBe(0);
    return JSON.parse(r.stdout.trim().split("\n").pop() as string) as Probe;
  }

  it("refuses what is not on the list with EPERM, on every thread, while every kind of port still opens", () => {
    const scratch = path.join(dir, "on");
    const p = probe({}, scratch);
    expect(p.installed.seccompSkipped).toBeNull();
    expect(p.installed.seccompAllowed).toBeGreaterThan(50);
    expect(p.self).toMatchObject({ seccomp: 2, noNewPrivs: true, effective: CAP_NAMES });
    expect(p.threads.length).toBeGreaterThan(2);
    expect(p.threads.every((s) => s === 2)).toBe(true);
    // TAP (TUNSETIFF), libpcap (AF_PACKET, its ioctls and socket options), VXLAN (UDP,
    // SO_RCVBUFFORCE) and IPIP (SOCK_RAW) ports, opened after the filter.
    expect(p.ports).toEqual(["t0:tap", "p0:pcap", "v0:vxlan", "i0:ipip"]);
    expect(p.spawn).toBe("EPERM"); // fork (clone without CLONE_THREAD), so no execve either
    expect(p.mkdir).toBe("EPERM");
    expect(p.create).toBe("EPERM"); // open with O_CREAT
    expect(p.chmod).toBe("EPERM");
    expect(p.netlink).not.toBe("ok"); // getifaddrs needs a netlink socket
    expect(p.kill).toBe("EPERM");
    expect(p.read).toBe("ok");
    expect(p.worker).toEqual({ mkdir: "EPERM", seccomp: 2 });
    expect(fs.readdirSync(scratch)).toEqual([]);
    // The TAP went away with the probe: nothing left in the namespace but lo and the veths.
    expect(inNs(NS, ["ip", "-o", "link"]).stdout).not.toContain("tsbxp0");
  });

  it("TAPNET_NO_SECCOMP=1 leaves the filter out (and says so)", () => {
    const scratch = path.join(dir, "off");
    const p = probe({ TAPNET_NO_SECCOMP: "1" }, scratch);
    expect(p.installed).toEqual({ seccompAllowed: null, seccompSkipped: "TAPNET_NO_SECCOMP=1" });
    expect(p.self).toMatchObject({ seccomp: 0, noNewPrivs: true, effective: CAP_NAMES });
    expect(p.spawn).toBe("ran");
    expect(p.mkdir).toBe("ok");
    expect(p.worker).toEqual({ mkdir: "ok", seccomp: 0 });
  });
});
