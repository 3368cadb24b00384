/** `tapnet lab` as a user drives it: mistakes in topology files, lifecycle, kill -9. */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CLI, ROOT, canRunLabs, netnsList, ping, sleep, tapnet, tapnetOk, waitFor, waitOutput, writeLabFile } from "./harness.js";

const SWITCH = path.join(ROOT, "scripts/labs/switch.yaml");

const bad: Array<[string, string, RegExp]> = [
  ["unknown node", "name: tbad\nnodes:\n  sw1: {}\nhosts:\n  h1: { node: sw9, ip: 10.0.0.1/24 }\n", /:5:\d+: hosts\.h1\.node: unknown node 'sw9'/],
  [
    "bad address",
    "name: tbad\nnodes:\n  sw1: {}\nhosts:\n  h1: { node: sw1, ip: 10.0.0.300/24 }\n",
    /hosts\.h1\.ip: '10\.0\.0\.300\/24' is not a valid IPv4 address/,
  ],
  [
    "name too long",
    "name: tbad\nnodes:\n  sw1: {}\nhosts:\n  averyveryverylonghost: { node: sw1, ip: 10.0.0.1/24 }\n",
    /hosts\.averyveryverylonghost: .*too long: at most 15/,
  ],
  ["unknown field", "name: tbad\nnodes:\n  sw1: { ageing: 3 }\n", /:3:\d+: nodes\.sw1: unknown field 'ageing'/],
  [
    "VLAN out of range",
    "name: tbad\nnodes:\n  sw1: {}\nhosts:\n  h1: { node: sw1, ip: 10.0.0.1/24, vlan: 5000 }\n",
    /hosts\.h1\.vlan: VLAN ids run from 1 to 4094/,
  ],
  [
    "duplicate address",
    "name: tbad\nnodes:\n  sw1: {}\nhosts:\n  h1: { node: sw1, ip: 10.0.0.1/24 }\n  h2: { node: sw1, ip: 10.0.0.1/24 }\n",
    /hosts\.h2\.ip: 10\.0\.0\.1 is already host h1's address/,
  ],
  [
    "gateway outside",
    "name: tbad\nnodes:\n  sw1: {}\nhosts:\n  h1: { node: sw1, ip: 10.0.0.1/24, gateway: 10.0.1.1 }\n",
    /hosts\.h1\.gateway: gateway 10\.0\.1\.1 is not inside 10\.0\.0\.1\/24/,
  ],
  ["YAML syntax", "name: tbad\nnodes:\n  sw1: {\n", /:\d+:\d+: \(top level\): YAML: /],
  ["missing nodes", "name: tbad\nhosts: {}\n", /nodes: missing \(required\)/],
  [
    "route via an unconnected next hop",
    "name: tbad\nnodes:\n  r1:\n    interfaces:\n      eth1: { vlan: 10, address: 10.0.1.1/24 }\n    routes:\n      - { to: 10.0.2.0/24, via: 10.0.9.1 }\n",
    /:7:\d+: nodes\.r1\.routes\.0\.via: next hop 10\.0\.9\.1 is not inside a subnet of any interface of r1/,
  ],
  [
    "route with host bits",
    "name: tbad\nnodes:\n  r1:\n    interfaces:\n      eth1: { vlan: 10, address: 10.0.1.1/24 }\n    routes:\n      - { to: 10.0.2.5/24, via: 10.0.1.2 }\n",
    /routes\.0\.to: 10\.0\.2\.5\/24 has host bits set \(did you mean 10\.0\.2\.0\/24\?\)/,
  ],
  [
    "overlapping interfaces",
    "name: tbad\nnodes:\n  r1:\n    interfaces:\n      a: { vlan: 10, address: 10.0.1.1/24 }\n      b: { vlan: 20, address: 10.0.1.129/25 }\n",
    /interfaces\.b\.address: 10\.0\.1\.129\/25 overlaps the subnet of interface a/,
  ],
  [
    "routed port that is not a port",
    "name: tbad\nnodes:\n  r1:\n    interfaces:\n      eth1: { port: h9, address: 10.0.1.1/24 }\n",
    /interfaces\.eth1\.port: node r1 has no port 'h9'/,
  ],
  [
    "interface on neither port nor vlan",
    "name: tbad\nnodes:\n  r1:\n    interfaces:\n      eth1: { address: 10.0.1.1/24 }\n",
    /interfaces\.eth1: an interface sits either on a port/,
  ],
  ["link to itself", "name: tbad\nnodes:\n  sw1: {}\nlinks:\n  - between: [sw1, sw1]\n", /links\.0\.between: a link joins two different nodes/],
];

describe.skipIf(!canRunLabs())("tapnet lab: errors and lifecycle", () => {
  afterAll(() => {
    tapnet(["lab", "down", SWITCH]);
    expect(netnsList().filter((n) => n.startsWith("tn.switch.") || n.startsWith("tn.tbad."))).toEqual([]);
  });

  it.each(bad)("a topology with a mistake (%s) is refused with its place, and nothing is built", (_what, yaml, re) => {
    const file = writeLabFile("tbad", yaml);
    try {
      const r = tapnet(["lab", "up", file]);
      expect(r.status).toBe(1);
      expect(r.stderr).toContain(file);
      expect(r.stderr).toMatch(re);
      expect(netnsList().filter((n) => n.startsWith("tn.tbad."))).toEqual([]);
      expect(fs.existsSync("/run/tapnet/tbad")).toBe(false);
    } finally {
      fs.rmSync(file, { force: true });
    }
  });

  it("brings switch.yaml up, runs commands in hosts, refuses a second up, and shows status", () => {
    tapnet(["lab", "down", SWITCH]);
    const up = tapnet(["lab", "up", SWITCH]);
    expect(up.status, up.stderr).toBe(0);
    expect(up.stdout).toMatch(/lab switch is up: 1 node\(s\), 3 host\(s\)/);
    for (const h of ["h1", "h2", "h3"]) expect(netnsList()).toContain(`tn.switch.${h}`);
    const p = tapnet(["lab", "exec", "h1", "--", "ping", "-n", "-c", "1", "-W", "2", "10.0.0.3"]);
    expect(p.status, p.stdout + p.stderr).toBe(0);
    expect(tapnet(["lab", "exec", "h2", "--", "ip", "-4", "-o", "addr", "show", "eth0"]).stdout).toMatch(/inet 10\.0\.0\.2\/24/);
    expect(tapnet(["lab", "exec", "h2", "--", "false"]).status).toBe(1);
    const again = tapnet(["lab", "up", SWITCH]);
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/lab 'switch' is already up/);
    const st = JSON.parse(tapnetOk(["lab", "status", "--json"])) as Array<{ lab: string; nodes: Array<{ name: string; running: boolean; ports: string[] }> }>;
    const sw = st.find((l) => l.lab === "switch");
    expect(sw?.nodes).toEqual([expect.objectContaining({ name: "sw1", running: true, ports: ["h1", "h2", "h3"] })]);
    expect(tapnetOk(["lab", "status"])).toMatch(/sw1\s+\d+\s+running/);
  });

  it("a node killed with -9 comes back; killed with its supervisor it stays down, and lab down still removes everything", async () => {
    interface Row {
      name: string;
      pid: number | null;
      running: boolean;
      restarts: number;
      lastExit: { signal: string | null } | null;
      supervisor: { pid: number | null };
    }
    const sw1 = (): Row =>
      (JSON.parse(tapnet(["lab", "status", "--json"]).stdout) as Array<{ lab: string; nodes: Row[] }>).find((l) => l.lab === "switch")?.nodes[0] as Row;
    const state = JSON.parse(fs.readFileSync("/run/tapnet/switch/state.json", "utf8")) as { nodes: Record<string, { pid: number; supervisor: number }> };
    const pid = state.nodes.sw1.pid;
    const supervisor = state.nodes.sw1.supervisor;
    expect(sw1()).toMatchObject({ pid, running: true, restarts: 0, lastExit: null, supervisor: { pid: supervisor } });
    process.kill(pid, "SIGKILL");
    // Its supervisor starts it again: a new PID, one restart, the signal it died of.
    const back = await waitFor("the node to be restarted", () => {
      const n = sw1();
      return n.running && n.pid !== pid ? n : undefined;
    });
    expect(back).toMatchObject({ restarts: 1, lastExit: { signal: "SIGKILL" } });
    expect(running(pid)).toBe(false);
    const p = ping("tn.switch.h1", "10.0.0.2", 1);
    expect(p.status, p.stdout).toBe(0);
    expect(tapnetOk(["lab", "status"])).toMatch(new RegExp(`sw1\\s+${back.pid}\\s+running\\s+1\\s+SIGKILL at `));
    // Without its supervisor, a killed node stays down: lab status says so, and exits
    // non-zero (also with --json).
    process.kill(supervisor, "SIGKILL");
    await waitFor("the supervisor to go", () => !running(supervisor));
    process.kill(back.pid as number, "SIGKILL");
    await waitFor("the killed node to go", () => !running(back.pid as number));
    expect(ping("tn.switch.h1", "10.0.0.2", 1).status).not.toBe(0);
    const st = tapnet(["lab", "status"]);
    expect(st.status).toBe(1);
    expect(st.stdout).toMatch(/NOT RUNNING, unsupervised/);
    expect(tapnet(["lab", "status", "--json"]).status).toBe(1);
    const down = tapnet(["lab", "down", SWITCH]);
    expect(down.status, down.stderr).toBe(0);
    expect(netnsList().filter((n) => n.startsWith("tn.switch."))).toEqual([]);
    expect(fs.existsSync("/run/tapnet/switch")).toBe(false);
    expect(pidsWith("/run/tapnet/switch/")).toEqual([]);
    // And a second down is harmless.
    const again = tapnet(["lab", "down", SWITCH]);
    expect(again.status).toBe(0);
    expect(again.stdout).toMatch(/was not up/);
  });
});

/** Gone (or a zombie waiting for init to reap it: no command line any more). */
function running(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").length > 0;
  } catch {
    return false;
  }
}

/** PIDs of processes whose command line mentions `text` (a lab's config path). */
function pidsWith(text: string): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (fs.readFileSync(`/proc/${d}/cmdline`, "utf8").includes(text)) out.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

describe.skipIf(!canRunLabs())("tapnet lab: names, interruptions", () => {
  // Under the old naming (tn-LAB-NAME) these two labs both made tn-service-nat-node1.
  const a = writeLabFile(
    "svc",
    "name: service\nnodes:\n  nat-node1: {}\nhosts:\n  h1: { node: nat-node1, ip: 10.7.0.1/24 }\n  h2: { node: nat-node1, ip: 10.7.0.2/24 }\n",
  );
  const b = writeLabFile(
    "svcnat",
    "name: service-nat\nnodes:\n  node1: {}\nhosts:\n  h1: { node: node1, ip: 10.7.0.1/24 }\n  h2: { node: node1, ip: 10.7.0.2/24 }\n",
  );
  const slow = writeLabFile(
    "sigint",
    `name: sigint\nnodes:\n  s1: {}\n  s2: {}\nhosts:\n${Array.from({ length: 8 }, (_, i) => `  h${i}: { node: s${1 + (i % 2)}, ip: 10.8.0.${i + 1}/24 }\n`).join("")}links:\n  - { between: [s1, s2] }\n`,
  );
  afterAll(() => {
    for (const f of [a, b, slow]) {
      tapnet(["lab", "down", f]);
      fs.rmSync(f, { force: true });
    }
    expect(netnsList().filter((n) => /^tn\.(service|service-nat|sigint)\./.test(n))).toEqual([]);
  });

  it("two labs whose names would have collided come up side by side and go down independently", () => {
    for (const f of [a, b]) {
      const up = tapnet(["lab", "up", f]);
      expect(up.status, up.stderr).toBe(0);
    }
    expect(netnsList()).toEqual(expect.arrayContaining(["tn.service.nat-node1", "tn.service-nat.node1", "tn.service.h1", "tn.service-nat.h1"]));
    expect(tapnet(["lab", "exec", "h1", "--lab", "service", "--", "ping", "-n", "-c", "1", "-W", "2", "10.7.0.2"]).status).toBe(0);
    expect(tapnet(["lab", "exec", "h1", "--lab", "service-nat", "--", "ping", "-n", "-c", "1", "-W", "2", "10.7.0.2"]).status).toBe(0);
    const down = tapnet(["lab", "down", b]);
    expect(down.status, down.stderr).toBe(0);
    expect(netnsList().filter((n) => n.startsWith("tn.service-nat."))).toEqual([]);
    // The other lab is whole and still forwards.
    expect(
      netnsList()
        .filter((n) => n.startsWith("tn.service."))
        .sort(),
    ).toEqual(["tn.service.h1", "tn.service.h2", "tn.service.nat-node1"]);
    expect(tapnet(["lab", "exec", "h1", "--lab", "service", "--", "ping", "-n", "-c", "1", "-W", "2", "10.7.0.2"]).status).toBe(0);
    expect(tapnet(["lab", "down", a]).status).toBe(0);
    expect(netnsList().filter((n) => n.startsWith("tn.service."))).toEqual([]);
  });

  it.each([
    ["namespaces", /namespaces: /],
    ["node processes", /nodes up: /],
  ])(
    "SIGINT during lab up, once it has made its %s, leaves nothing behind",
    async (_what, marker) => {
      const child = spawn(process.execPath, [CLI, "lab", "up", slow], { stdio: ["ignore", "pipe", "pipe"] });
      let err = "";
      child.stderr.on("data", (c: Buffer) => (err += c.toString()));
      const exited = new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
      await waitOutput(child.stdout, marker, "lab up to reach the step", 30_000);
      child.kill("SIGINT");
      const code = await Promise.race([exited, sleep(30_000).then(() => "timeout")]);
      expect(code, err).toBe(1);
      expect(err).toMatch(/interrupted; everything it had created was removed/);
      expect(netnsList().filter((n) => n.startsWith("tn.sigint."))).toEqual([]);
      expect(fs.existsSync("/run/tapnet/sigint")).toBe(false);
      expect(pidsWith("/run/tapnet/sigint/")).toEqual([]);
      // And the lab comes up cleanly afterwards.
      const up = tapnet(["lab", "up", slow]);
      expect(up.status, up.stderr).toBe(0);
      expect(tapnet(["lab", "down", slow]).status).toBe(0);
    },
    90_000,
  );
});
