/**
 * Nodes that survive a crash (src/lab/supervisor.ts): `kill -9` of a node during a
 * fast ping costs at most a second of replies, the routes changed at runtime are back
 * (journal replay), a TAP host added at runtime is re-attached, `lab status` shows the
 * restart and how the node ended, and `lab down` afterwards leaves nothing.
 *   lab tcrash: r1 routes h1 10.61.1.0/24 <-> h2 10.61.2.0/24 (and, through a route
 *               added at runtime, 10.69.0.0/24 behind h2);
 *               s2 switches h3, h4 10.62.0.0/24 (and h5, added at runtime)
 * r1 keeps a standby (standby: true, src/node/standby.ts) that takes over when it dies;
 * s2 has none and is started anew (a cold start).
 * r1's TAP I/O is the default (readv()/write(), or TAPNET_IO's); s2's is io_uring, whose
 * rings hold the hosts' TAPs for a while after a kill -9 (the supervisor waits for them).
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { request } from "../../src/control/client.js";
import { readState, writeState } from "../../src/lab/state.js";
import { background, canRunLabs, inNs, netnsList, ping, tapnet, tapnetOk, waitFor, writeLabFile } from "./harness.js";

const LAB = "tcrash";
const ns = (n: string): string => `tn.${LAB}.${n}`;
const file = writeLabFile(
  LAB,
  `
name: ${LAB}
nodes:
  r1:
    standby: true
    interfaces:
      eth1: { port: h1, address: 10.61.1.1/24 }
      eth2: { port: h2, address: 10.61.2.1/24 }
  s2: { io: uring }
hosts:
  h1: { node: r1, ip: 10.61.1.10/24, gateway: 10.61.1.1 }
  h2: { node: r1, ip: 10.61.2.10/24, gateway: 10.61.2.1 }
  h3: { node: s2, ip: 10.62.0.3/24 }
  h4: { node: s2, ip: 10.62.0.4/24 }
`,
);

interface NodeRow {
  name: string;
  pid: number | null;
  running: boolean;
  ports?: string[];
  restarts: number;
  lastExit: { code: number | null; signal: string | null; at: string } | null;
  supervisor: {
    pid: number | null;
    running: boolean;
    state: string | null;
    lastRecoveryMs: number | null;
    standby?: number | null;
    lastRestart?: "standby" | "cold";
  };
}

function node(name: string): NodeRow {
  const labs = JSON.parse(tapnet(["lab", "status", "--json"]).stdout) as Array<{ lab: string; nodes: NodeRow[] }>;
  const n = labs.find((l) => l.lab === LAB)?.nodes.find((x) => x.name === name);
  if (!n) throw new Error(`lab status has no node ${name}`);
  return n;
}

/** True while /proc shows `pid` as a live process (not a zombie). */
function alive(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").length > 0;
  } catch {
    return false;
  }
}

/** PIDs of processes whose command line mentions `text`. */
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

/** Waits until the supervisor of `name` has a standby parked; returns its PID. */
async function parkedStandby(name: string, other?: number): Promise<number> {
  return waitFor(
    `a standby of ${name}`,
    () => {
      const pid = node(name).supervisor.standby;
      return typeof pid === "number" && pid !== other && alive(pid) ? pid : undefined;
    },
    30_000,
    50,
  );
}

/** Kills a node with -9 and waits until its supervisor has a new one answering; returns the new row. */
async function killAndWait(name: string): Promise<{ before: NodeRow; after: NodeRow }> {
  const before = node(name);
  expect(before.running).toBe(true);
  process.kill(before.pid as number, "SIGKILL");
  const after = await waitFor(
    `node ${name} to be restarted`,
    () => {
      const n = node(name);
      return n.running && n.restarts === before.restarts + 1 && n.pid !== before.pid ? n : undefined;
    },
    20_000,
    50,
  );
  return { before, after };
}

/**
 * From the output of `ping -D`: requests sent, replies missing (transmitted - received),
 * and the longest time without a reply (ms between the arrivals of consecutive replies).
 * The gap is what a host lives through: requests a host sends while its node is down
 * wait in its eth0's queue (the TAP persists) and are answered late rather than lost,
 * so the count alone would understate an outage.
 */
function outage(out: string): { sent: number; missing: number; gapMs: number } {
  const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
  if (!m) throw new Error(`no summary in ping's output:\n${out.slice(-400)}`);
  const at = [...out.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from/gm)].map((x) => Number(x[1]) * 1000);
  let gapMs = 0;
  for (let i = 1; i < at.length; i++) gapMs = Math.max(gapMs, at[i] - at[i - 1]);
  return { sent: Number(m[1]), missing: Number(m[1]) - Number(m[2]), gapMs: Math.round(gapMs) };
}

describe.skipIf(!canRunLabs())("a node killed with -9 comes back", () => {
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

  it("kill -9 during ping -i 0.01: at most 1 s of replies lost, the runtime route back, the other node untouched", async () => {
    // 10.69.0.1 lives behind h2 and is reachable only through a route added at runtime.
    expect(inNs(ns("h2"), ["ip", "address", "add", "10.69.0.1/32", "dev", "lo"]).status).toBe(0);
    expect(ping(ns("h1"), "10.69.0.1", 1).status).not.toBe(0);
    tapnetOk(["route", "add", "10.69.0.0/24", "via", "10.61.2.10", "--node", "r1", "--lab", LAB]);
    const p0 = ping(ns("h1"), "10.69.0.1", 1);
    expect(p0.status, p0.stdout).toBe(0);
    expect(ping(ns("h3"), "10.62.0.4", 1).status).toBe(0);

    const through = background(ns("h1"), ["timeout", "-k", "2", "30", "ping", "-D", "-n", "-i", "0.01", "-c", "600", "-W", "1", "10.69.0.1"]);
    const beside = background(ns("h3"), ["timeout", "-k", "2", "30", "ping", "-D", "-n", "-i", "0.01", "-c", "600", "-W", "1", "10.62.0.4"]);
    try {
      // A steady stream first and r1's standby parked, then the kill.
      await through.waitFor(/icmp_seq=50 /, 15_000);
      await beside.waitFor(/icmp_seq=50 /, 15_000);
      const standby = await parkedStandby("r1");
      // Parked, it holds none of the node's TAPs, sockets or journal: its files are its log
      // (stdout, stderr), Node.js's own (no socket among them) and its socket to the supervisor.
      const held = fs.readdirSync(`/proc/${standby}/fd`).map((fd) => fs.readlinkSync(`/proc/${standby}/fd/${fd}`));
      expect(held.filter((l) => l.includes("tun") || (l.includes("/run/tapnet/") && !l.endsWith("/r1.log")))).toEqual([]);
      expect(held.filter((l) => l.startsWith("socket:"))).toHaveLength(1);
      const { before, after } = await killAndWait("r1");
      expect(await through.exited).toBe(0);
      expect(await beside.exited).toBe(0);
      const t = outage(through.out());
      const b = outage(beside.out());
      // At 10 ms intervals, 100 missing replies are one second; and no second passes
      // without a reply (the requests held in the host's queue meanwhile come back late).
      expect(t.sent).toBe(600);
      expect(t.missing, through.out().slice(-300)).toBeLessThanOrEqual(100);
      expect(t.gapMs).toBeLessThanOrEqual(1000);
      expect(b.missing, "s2 was not killed").toBe(0);
      // lab status: the new PID, one restart, the signal; the supervisor measured the recovery.
      expect(after.pid).not.toBe(before.pid);
      expect(after.restarts).toBe(1);
      expect(after.lastExit?.signal).toBe("SIGKILL");
      expect(after.supervisor.running).toBe(true);
      expect(after.supervisor.lastRecoveryMs).toBeGreaterThan(0);
      // The standby took over (no Node.js start-up in the outage), and a new one is parked.
      expect(after.pid).toBe(standby);
      expect(after.supervisor.lastRestart).toBe("standby");
      expect(await parkedStandby("r1", standby)).not.toBe(after.pid);
      const text = tapnetOk(["lab", "status"]);
      expect(text).toMatch(new RegExp(`r1\\s+${after.pid}\\s+running\\s+1\\s+SIGKILL at \\d\\d:\\d\\d:\\d\\d\\s+h1,h2`));
      expect(text).toMatch(/s2\s+\d+\s+running\s+0\s+-\s+h3,h4/);
      console.log(
        `r1 back after kill -9: ${t.missing} of ${t.sent} replies missing at 10 ms intervals, longest time without a reply ${t.gapMs} ms; ` +
          `the supervisor saw the new node answer ${after.supervisor.lastRecoveryMs} ms after the exit (${after.supervisor.lastRestart}); ` +
          `standby RSS ${/VmRSS:\s*(\d+ kB)/.exec(fs.readFileSync(`/proc/${node("r1").supervisor.standby}/status`, "utf8"))?.[1]}; load ${fs.readFileSync("/proc/loadavg", "utf8").split(" ")[0]}`,
      );
    } finally {
      await through.stop();
      await beside.stop();
    }
    // The journal's route is back, and so is the forwarding it gives.
    expect(tapnetOk(["show", "route", "--node", "r1", "--lab", LAB])).toMatch(/10\.69\.0\.0\/24 via 10\.61\.2\.10 dev eth2/);
    expect(ping(ns("h1"), "10.69.0.1", 1).status).toBe(0);
    // The hosts kept their interfaces (persistent TAPs): same eth0, still configured.
    expect(inNs(ns("h1"), ["ip", "-o", "-4", "addr", "show", "eth0"]).stdout).toContain("10.61.1.10/24");
  }, 90_000);

  it("a TAP host added at runtime is handed back to the restarted node", async () => {
    // What `lab host add` does: a TAP port on the node, moved into the host's
    // namespace as eth0, and the host recorded in the lab state.
    const socket = `/run/tapnet/${LAB}/s2.sock`;
    await request(socket, { cmd: "change", op: "port.add", args: { name: "h5", kind: "tap", vlan: 1 } });
    const st = readState(LAB);
    if (!st) throw new Error("no lab state");
    st.namespaces.push(ns("h5"));
    writeState(st);
    for (const argv of [
      ["ip", "netns", "add", ns("h5")],
      ["ip", "-n", ns("s2"), "link", "set", "h5", "netns", ns("h5")],
      ["ip", "-n", ns("h5"), "link", "set", "h5", "name", "eth0"],
      ["ip", "-n", ns("h5"), "address", "add", "10.62.0.5/24", "dev", "eth0"],
      ["ip", "-n", ns("h5"), "link", "set", "eth0", "up"],
      ["ip", "-n", ns("h5"), "link", "set", "lo", "up"],
    ]) {
      const x = spawnSync(argv[0], argv.slice(1), { encoding: "utf8" });
      expect(x.status, `${argv.join(" ")}: ${x.stderr}`).toBe(0);
    }
    const st2 = readState(LAB);
    if (!st2) throw new Error("no lab state");
    st2.hosts.h5 = { namespace: ns("h5"), node: "s2", ip: "10.62.0.5/24", vlan: 1, link: "tap" };
    writeState(st2);
    expect(ping(ns("h3"), "10.62.0.5", 1).status).toBe(0);

    const { after } = await killAndWait("s2");
    expect(after.ports).toEqual(["h3", "h4", "h5"]);
    expect(after.supervisor.standby, "s2 keeps no standby").toBeUndefined();
    // The hosts' eth0 adopted again, with io_uring (the rings of the killed node held them).
    const ports = JSON.parse(tapnetOk(["show", "ports", "--node", "s2", "--lab", LAB, "--json"])) as Array<{ name: string; io?: string }>;
    expect(ports.filter((x) => x.name !== "h5").map((x) => [x.name, x.io])).toEqual([
      ["h3", "uring"],
      ["h4", "uring"],
    ]);
    const p = ping(ns("h3"), "10.62.0.5", 2);
    expect(p.status, p.stdout).toBe(0);
    // The node has the host's eth0 itself (not a TAP of its own named h5).
    expect(inNs(ns("s2"), ["ip", "-o", "link", "show", "h5"]).status).not.toBe(0);
    expect(fs.readFileSync(`/run/tapnet/${LAB}/s2.supervisor.json`, "utf8")).toMatch(/"reattached": \[\s*"h3",\s*"h4",\s*"h5"\s*\]/);

    // And removed again (what `lab host del` does): the port goes, and with it the
    // host's eth0 — a persistent TAP stops being one when its port is removed.
    await request(socket, { cmd: "change", op: "port.del", args: { name: "h5" } });
    expect(inNs(ns("h5"), ["ip", "link", "show", "eth0"]).status).not.toBe(0);
    expect(spawnSync("ip", ["netns", "del", ns("h5")]).status).toBe(0);
    const st3 = readState(LAB);
    if (!st3) throw new Error("no lab state");
    delete st3.hosts.h5;
    st3.namespaces = st3.namespaces.filter((n) => n !== ns("h5"));
    writeState(st3);
  }, 60_000);

  it("a standby killed while parked is replaced, the node untouched; node and standby killed together: the node still comes back", async () => {
    const r1 = node("r1");
    const standby = await parkedStandby("r1");
    process.kill(standby, "SIGKILL");
    const next = await parkedStandby("r1", standby);
    expect(node("r1")).toMatchObject({ pid: r1.pid, restarts: r1.restarts, running: true });
    // Both at once: whichever way the supervisor hears of them (the standby's death
    // first: a new standby, or a cold start; the handover refused: a cold start; the
    // handover taken by the dying standby: its exit is one more restart, a cold one).
    process.kill(next, "SIGKILL");
    process.kill(r1.pid as number, "SIGKILL");
    const after = await waitFor(
      "r1 to be restarted",
      () => {
        const n = node("r1");
        return n.running && n.restarts >= r1.restarts + 1 && n.restarts <= r1.restarts + 2 && n.pid !== r1.pid && n.pid !== next ? n : undefined;
      },
      20_000,
      50,
    );
    expect(["standby", "cold"]).toContain(after.supervisor.lastRestart);
    const p = ping(ns("h1"), "10.69.0.1", 2);
    expect(p.status, p.stdout).toBe(0);
    await parkedStandby("r1", next);
  }, 60_000);

  it("a crash loop is slowed down; lab down then removes every namespace, TAP, supervisor and node process", async () => {
    // Six deaths in a row, each as soon as the supervisor has started the next node:
    // beyond five within 10 s, the next restart waits.
    const status = (): { pid: number | null; restarts: number } => JSON.parse(fs.readFileSync(`/run/tapnet/${LAB}/s2.supervisor.json`, "utf8"));
    for (let i = 0; i < 6; i++) {
      const s = await waitFor("s2 to have a node process", () => {
        const x = status();
        return x.pid !== null ? x : undefined;
      });
      process.kill(s.pid as number, "SIGKILL");
      await waitFor("the supervisor to see it", () => status().restarts > s.restarts, 10_000, 5);
    }
    const logText = fs.readFileSync(`/run/tapnet/${LAB}/s2.log`, "utf8");
    expect(logText).toMatch(/restart \d+ in (500|1000|2000) ms \(\d+ exits within 10 s\)/);
    await waitFor("s2 to come back after the back-off", () => node("s2").running, 20_000);
    expect(ping(ns("h3"), "10.62.0.4", 1).status).toBe(0);
    // Each restart replayed h5's port.add and port.del: no TAP of that name is left.
    expect(node("s2").ports).toEqual(["h3", "h4"]);
    expect(inNs(ns("s2"), ["ip", "-o", "link", "show", "h5"]).status).not.toBe(0);

    const sup = [node("r1").supervisor.pid, node("s2").supervisor.pid] as number[];
    const pids = [node("r1").pid, node("s2").pid, await parkedStandby("r1")] as number[];
    const down = tapnet(["lab", "down", file]);
    expect(down.status, down.stderr).toBe(0);
    expect(netnsList().filter((x) => x.startsWith(`tn.${LAB}.`))).toEqual([]);
    expect(fs.existsSync(`/run/tapnet/${LAB}`)).toBe(false);
    for (const pid of [...sup, ...pids]) expect(alive(pid), `pid ${pid}`).toBe(false);
    expect(pidsWith(`/run/tapnet/${LAB}/`)).toEqual([]);
    // No TAP of the lab anywhere we can see (the namespaces' devices went with them).
    expect(fs.readdirSync("/sys/class/net").filter((d) => fs.existsSync(`/sys/class/net/${d}/tun_flags`))).toEqual([]);
  }, 90_000);
});
