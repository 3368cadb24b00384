#!/usr/bin/env node
// tapnet benchmark: every scenario measures tapnet and its reference(s) on the same work,
// in the same run, each on a lab brought up fresh and taken down after (DESIGN.md rule 5:
// a performance claim is a ratio against a reference measured in the same run).
//
//   sudo npm run bench                       # all scenarios (about 2.5 minutes)
//   sudo node scripts/bench.mjs switch router --duration 3 --json out.json --markdown
//   sudo node scripts/bench.mjs --cleanup    # remove what a killed (-9) bench left behind
//
// Scenarios and their references:
//   switch  two hosts on a tapnet switch (scripts/labs/switch.yaml, TAP ports)
//           vs the same hosts on a Linux bridge (scripts/bench/switch-kernel.yaml)
//           vs a minimal C relay between two TAPs (scripts/relay.c, built with gcc at run time)
//   router  two subnets through a tapnet router (scripts/labs/router.yaml)
//           vs a kernel router: a namespace with ip_forward=1 and two veths
//   vxlan   pod to pod across flannel-vxlan.yaml vs kernel VXLAN devices on kernel bridges
//           over the same underlay (scripts/bench/vxlan-kernel.yaml)
//   ipip    pod to pod across calico-ipip.yaml; the kernel has no reference when it has no
//           ipip module (probed): the ratio is then taken against the kernel VXLAN reference
//           of this run (measured here if the vxlan scenario did not run)
//   nat     client -> service VIP through scripts/labs/service-nat.yaml (with bench services
//           added: one backend, so iperf3's control and data connections meet the same pod)
//           vs the kernel doing DNAT: a bridge with br_netfilter and an nftables dnat rule
//           (kube-proxy's situation); needs `nft` (Debian: nftables), else n/a
//
// Metrics, per implementation: iperf3 TCP throughput (-t DURATION -J, one stream),
// small-packet rate (iperf3 -u -b 0 -l 64: 64-byte UDP payloads at the sender's maximum
// rate; packets/s received and the loss), and the average RTT of `ping -c 20 -i 0.05`
// (for nat: a UDP echo through the VIP, as a VIP does not answer ping). Ratios are
// tapnet / reference, per metric: above 1 is better for TCP and kpps, worse for RTT.
//
// Options: [scenario…] (default: all), --duration S (default 5), --json FILE,
// --markdown [FILE] (the table as markdown, on stdout or into FILE), --cleanup.
// Progress goes to stderr, the table to stdout. Needs root, a built tree (npm run build),
// iperf3, ping and gcc. Every namespace and process it makes is removed on exit, on
// failure and on Ctrl-C; processes are stopped by the PIDs it started.
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const CLI = path.join(ROOT, "dist/cli/main.js");
const LABS = path.join(ROOT, "scripts/labs");
const BENCH_LABS = path.join(ROOT, "scripts/bench");
const SCENARIOS = ["switch", "router", "vxlan", "ipip", "nat"];
/** Prefix of the namespaces the bench makes itself (labs' namespaces are tn-bench-…). */
const NS_PREFIX = "tnb-";
const IPERF_PORT = 5201;
const ECHO_PORT = 5202;

// ---------------------------------------------------------------- arguments

function usage(code) {
  const out = code ? process.stderr : process.stdout;
  out.write(
    `usage: node scripts/bench.mjs [${SCENARIOS.join("|")}…] [--duration S] [--json FILE] [--markdown [FILE]] [--cleanup]\n`,
  );
  process.exit(code);
}

const opts = { scenarios: [], duration: 5, json: null, markdown: false, markdownFile: null, cleanup: false };
{
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    if (x === "--duration" || x.startsWith("--duration=")) {
      opts.duration = Number(x === "--duration" ? a[++i] : x.slice(11));
      // iperf3 -t takes whole seconds.
      if (!Number.isInteger(opts.duration) || opts.duration < 1 || opts.duration > 600) {
        process.stderr.write("bench: --duration takes whole seconds, 1..600\n");
        process.exit(2);
      }
    } else if (x === "--json") {
      opts.json = a[++i];
      if (!opts.json) usage(2);
    } else if (x.startsWith("--json=")) {
      opts.json = x.slice(7);
    } else if (x === "--markdown") {
      opts.markdown = true;
      if (a[i + 1] !== undefined && !a[i + 1].startsWith("--") && !SCENARIOS.includes(a[i + 1])) opts.markdownFile = a[++i];
    } else if (x.startsWith("--markdown=")) {
      opts.markdown = true;
      opts.markdownFile = x.slice(11);
    } else if (x === "--cleanup") {
      opts.cleanup = true;
    } else if (x === "-h" || x === "--help") {
      usage(0);
    } else if (SCENARIOS.includes(x)) {
      if (!opts.scenarios.includes(x)) opts.scenarios.push(x);
    } else {
      process.stderr.write(`bench: unknown scenario or option '${x}' (scenarios: ${SCENARIOS.join(", ")})\n`);
      usage(2);
    }
  }
  if (opts.scenarios.length === 0) opts.scenarios = [...SCENARIOS];
  // Keep the scenarios in their canonical order: ipip reuses vxlan's kernel reference.
  opts.scenarios.sort((x, y) => SCENARIOS.indexOf(x) - SCENARIOS.indexOf(y));
}

const T0 = Date.now();
const say = (msg) => process.stderr.write(`bench [${((Date.now() - T0) / 1000).toFixed(0).padStart(3)}s] ${msg}\n`);

// ---------------------------------------------------------------- what we made, and undoing it

/** Everything alive that the bench made: undone by cleanup(), also from signal handlers. */
const made = {
  /** pid -> what it is; each started detached (its own process group). */
  procs: new Map(),
  /** lab files we ran `lab up` on and have not taken down yet. */
  labs: new Set(),
  /** namespaces we created ourselves. */
  namespaces: new Set(),
  tmp: null,
};

function sleepSync(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function alive(pid) {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie (exited, not yet reaped by us) counts as gone.
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/** Stops one process group we started: SIGTERM, then SIGKILL after a grace period. */
function stopProc(pid, graceMs = 2000) {
  if (!made.procs.has(pid)) return;
  for (const sig of ["SIGTERM", "SIGKILL"]) {
    try {
      process.kill(-pid, sig);
    } catch {
      // group gone; try the leader alone (it may have left its group)
      try {
        process.kill(pid, sig);
      } catch {
        break;
      }
    }
    const until = Date.now() + graceMs;
    while (alive(pid) && Date.now() < until) sleepSync(20);
    if (!alive(pid)) break;
  }
  made.procs.delete(pid);
}

function tapnetCli(args, timeoutMs = 90_000) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: timeoutMs, killSignal: "SIGKILL" });
}

function labDown(file) {
  const r = tapnetCli(["lab", "down", file, "-q"]);
  if (r.status !== 0) throw new Error(`tapnet lab down ${path.basename(file)}: ${(r.stderr || r.stdout || String(r.error)).trim()}`);
  made.labs.delete(file);
}

function delNs(ns) {
  const r = spawnSync("ip", ["netns", "del", ns], { encoding: "utf8" });
  if (r.status !== 0 && netnsList().includes(ns)) throw new Error(`ip netns del ${ns}: ${r.stderr.trim()}`);
  made.namespaces.delete(ns);
}

/** Runs an undo step; a failure is reported, not thrown (it must not hide the error that got us here). */
function quietly(fn) {
  try {
    fn();
  } catch (e) {
    process.stderr.write(`bench: ${e instanceof Error ? e.message : e}\n`);
  }
}

let cleaning = false;
/** Undoes everything still in `made`, synchronously; safe to call more than once. */
function cleanup() {
  if (cleaning) return;
  cleaning = true;
  const problems = [];
  for (const pid of [...made.procs.keys()]) stopProc(pid);
  for (const file of [...made.labs]) {
    try {
      labDown(file);
    } catch (e) {
      problems.push(e.message);
    }
  }
  for (const ns of [...made.namespaces]) {
    try {
      delNs(ns);
    } catch (e) {
      problems.push(e.message);
    }
  }
  if (made.tmp) fs.rmSync(made.tmp, { recursive: true, force: true });
  made.tmp = null;
  for (const p of problems) process.stderr.write(`bench: cleanup: ${p}\n`);
  cleaning = false;
}

for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, () => {
    if (cleaning) return;
    process.stderr.write(`\nbench: ${sig}: stopping and removing everything the bench made…\n`);
    cleanup();
    process.exit(sig === "SIGINT" ? 130 : 143);
  });
}
process.on("exit", cleanup);
process.on("uncaughtException", (e) => {
  process.stderr.write(`bench: ${e.stack ?? e}\n`);
  cleanup();
  process.exit(1);
});

// ---------------------------------------------------------------- commands

function netnsList() {
  const r = spawnSync("ip", ["netns", "list"], { encoding: "utf8" });
  return (r.stdout ?? "").split("\n").map((l) => l.trim().split(/\s+/)[0]).filter(Boolean);
}

/** Runs a short command synchronously; throws with its stderr on failure. */
function sh(argv, input) {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: "utf8", input, timeout: 30_000 });
  if (r.error) throw new Error(`${argv.join(" ")}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`'${argv.join(" ")}' failed (exit ${r.status}): ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}
const ipn = (ns, lines) => sh(["ip", "-n", ns, "-batch", "-"], lines.join("\n") + "\n");

/**
 * Runs a command to completion asynchronously (so signals are handled meanwhile), in its
 * own process group, tracked for cleanup; load generators go through `timeout -k`.
 */
function runAsync(argv, timeoutS) {
  return new Promise((resolve) => {
    const full = timeoutS ? ["timeout", "-k", "3", String(timeoutS), ...argv] : argv;
    const child = spawn(full[0], full.slice(1), { detached: true, stdio: ["ignore", "pipe", "pipe"] });
    made.procs.set(child.pid, argv.join(" "));
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", (e) => {
      made.procs.delete(child.pid);
      resolve({ status: null, stdout, stderr: stderr + e.message });
    });
    child.on("close", (status) => {
      made.procs.delete(child.pid);
      resolve({ status, stdout, stderr });
    });
  });
}

/** Starts a long-running command (a server) in its own process group; returns its PID. */
function startDaemon(argv, what) {
  const child = spawn(argv[0], argv.slice(1), { detached: true, stdio: ["ignore", "pipe", "pipe"] });
  if (child.pid === undefined) throw new Error(`could not start ${what}`);
  made.procs.set(child.pid, what);
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  child.on("close", () => made.procs.delete(child.pid));
  return { pid: child.pid, output: () => out, child };
}

async function waitFor(what, fn, timeoutMs = 10_000, stepMs = 100) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(stepMs);
  }
}

// ---------------------------------------------------------------- namespaces of our own

function addNs(ns) {
  if (netnsList().includes(ns)) {
    throw new Error(`namespace ${ns} already exists (left by an earlier bench? run: node scripts/bench.mjs --cleanup)`);
  }
  made.namespaces.add(ns);
  sh(["ip", "netns", "add", ns]);
  // As the lab builder does: IPv4 only, no router solicitations or MLD in the way.
  sh(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]);
  ipn(ns, ["link set lo up"]);
}

/** A veth between two namespaces: `aName` in `a`, `bName` in `b`. */
function veth(a, aName, b, bName) {
  sh(["ip", "link", "add", aName, "netns", a, "type", "veth", "peer", "name", bName, "netns", b]);
}

function hostAddr(ns, ifname, cidr, gateway, mtu) {
  const cmds = [];
  if (mtu) cmds.push(`link set ${ifname} mtu ${mtu}`);
  cmds.push(`address add ${cidr} dev ${ifname}`, `link set ${ifname} up`);
  if (gateway) cmds.push(`route add default via ${gateway} dev ${ifname}`);
  ipn(ns, cmds);
}

// ---------------------------------------------------------------- labs

function tmpDir() {
  if (!made.tmp) made.tmp = fs.mkdtempSync(path.join(os.tmpdir(), "tapnet-bench-"));
  return made.tmp;
}

/**
 * A copy of a lab file under another lab name (so the bench never meets a lab of the same
 * file that a user or the test suite has up), optionally edited as a YAML document.
 */
async function labVariant(file, labName, edit) {
  const text = fs.readFileSync(file, "utf8");
  let out;
  if (edit) {
    const YAML = await import("yaml");
    const doc = YAML.parseDocument(text);
    doc.set("name", labName);
    edit(doc);
    out = doc.toString();
  } else {
    if (!/^name:\s*\S+/m.test(text)) throw new Error(`${file}: no top-level 'name:' line`);
    out = text.replace(/^name:\s*\S+/m, `name: ${labName}`);
  }
  const dst = path.join(tmpDir(), `${labName}.yaml`);
  fs.writeFileSync(dst, out);
  return dst;
}

function labName(file) {
  const m = /^name:\s*(\S+)/m.exec(fs.readFileSync(file, "utf8"));
  return m ? m[1] : path.basename(file, ".yaml");
}

/** `tapnet lab up FILE -q`, fresh: returns a function that makes a namespace name. */
async function labUp(file) {
  const name = labName(file);
  made.labs.add(file);
  const r = await runAsync([process.execPath, CLI, "lab", "up", file, "-q"], 120);
  if (r.status !== 0) {
    const msg = (r.stderr || r.stdout || "").trim().split("\n").slice(0, 6).join("\n  ");
    labDown(file);
    throw new Error(`tapnet lab up ${path.basename(file)} failed: ${msg}`);
  }
  return (n) => `tn-${name}-${n}`;
}

// ---------------------------------------------------------------- measurements

async function waitReachable(ns, dst) {
  await waitFor(`${dst} to answer ping from ${ns}`, async () => {
    const r = await runAsync(["ip", "netns", "exec", ns, "ping", "-n", "-q", "-c", "1", "-W", "1", dst], 5);
    return r.status === 0;
  }, 15_000, 200);
}

async function pingRtt(ns, dst) {
  const r = await runAsync(["ip", "netns", "exec", ns, "ping", "-n", "-q", "-c", "20", "-i", "0.05", "-W", "1", dst], 20);
  const m = /= [\d.]+\/([\d.]+)\/([\d.]+)\/([\d.]+) ms/.exec(r.stdout);
  const sent = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
  if (!m) throw new Error(`ping ${dst}: no reply (${(r.stdout + r.stderr).trim().split("\n").pop()})`);
  return { rttUs: Number(m[1]) * 1000, method: "ping -c 20 -i 0.05", lost: sent ? Number(sent[1]) - Number(sent[2]) : null };
}

/** RTT of a UDP echo through `dst:port` (for a VIP, which does not answer ping). */
const UDP_RTT_PY = String.raw`
import json, socket, sys, time
dst, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
wrong = []  # replies from elsewhere than dst:port (a reply the NAT did not translate back)
def echo(payload, timeout):
    s.settimeout(timeout)
    t = time.perf_counter_ns()
    s.sendto(payload, (dst, port))
    end = time.monotonic() + timeout
    while True:
        try:
            _, src = s.recvfrom(2048)
        except OSError:
            return None
        if src == (dst, port):
            return (time.perf_counter_ns() - t) / 1000
        wrong.append("%s:%d" % src)
        s.settimeout(max(0.001, end - time.monotonic()))
ok = 0
for _ in range(20):  # warm-up: ARP, conntrack entry; at most ~10 s
    if echo(b"w", 0.5) is not None:
        ok += 1
        if ok >= 3:
            break
if ok == 0:
    why = "replies came from %s, not from the VIP" % wrong[0] if wrong else "no reply"
    print(json.dumps({"error": why})); sys.exit(0)
rtts, lost = [], 0
for _ in range(n):
    r = echo(b"x" * 56, 1.0)
    if r is None:
        lost += 1
    else:
        rtts.append(r)
    time.sleep(0.05)
print(json.dumps({"rtts": rtts, "lost": lost}))
`;
const UDP_ECHO_PY = String.raw`
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
while True:
    d, a = s.recvfrom(2048); s.sendto(d, a)
`;

async function udpEchoRtt(ns, dst, port) {
  const r = await runAsync(["ip", "netns", "exec", ns, "python3", "-c", UDP_RTT_PY, dst, String(port), "20"], 30);
  let j;
  try {
    j = JSON.parse(r.stdout);
  } catch {
    throw new Error(`UDP echo to ${dst}:${port}: ${(r.stderr || r.stdout).trim().split("\n").pop()}`);
  }
  if (j.error) throw new Error(`UDP echo to ${dst}:${port}: ${j.error}`);
  if (j.rtts.length === 0) throw new Error(`UDP echo to ${dst}:${port}: no reply`);
  return { rttUs: j.rtts.reduce((a, b) => a + b, 0) / j.rtts.length, method: "UDP echo x20 every 50 ms (python)", lost: j.lost };
}

function startIperfServer(ns) {
  const d = startDaemon(["ip", "netns", "exec", ns, "iperf3", "-s", "-p", String(IPERF_PORT)], `iperf3 server in ${ns}`);
  return d;
}

async function waitListening(ns, port, proto = "t") {
  await waitFor(`a server on port ${port} in ${ns}`, () => {
    const r = spawnSync("ip", ["netns", "exec", ns, "ss", "-Hln" + proto, `sport = :${port}`], { encoding: "utf8" });
    return (r.stdout ?? "").trim().length > 0;
  }, 5000, 50);
}

async function iperf(ns, dst, extra) {
  const d = opts.duration;
  const r = await runAsync(["ip", "netns", "exec", ns, "iperf3", "-c", dst, "-p", String(IPERF_PORT), "-t", String(d), "-J", ...extra], d + 20);
  let j;
  try {
    j = JSON.parse(r.stdout);
  } catch {
    throw new Error(`iperf3 ${extra.join(" ")} -> ${dst}: ${r.status === 124 ? "timed out" : (r.stderr || r.stdout).trim().slice(0, 300)}`);
  }
  if (j.error) throw new Error(`iperf3 ${extra.join(" ")} -> ${dst}: ${j.error}`);
  return j;
}

/**
 * The three measurements between `client` and `dst` (the iperf3 server runs in `server`).
 * `rtt` overrides how the RTT is measured (nat).
 */
async function measure({ client, server, dst, rtt }) {
  const res = {};
  // RTT first, while the path is idle.
  res.rtt = rtt ? await rtt() : await pingRtt(client, dst);
  const srv = startIperfServer(server);
  try {
    await waitListening(server, IPERF_PORT);
    const tcp = await iperf(client, dst, []);
    res.tcpGbps = tcp.end.sum_received.bits_per_second / 1e9;
    res.tcpRetransmits = tcp.end.sum_sent.retransmits ?? null;
    await sleep(300);
    const udp = await iperf(client, dst, ["-u", "-b", "0", "-l", "64"]);
    const rx = udp.end.sum_received ?? udp.end.sum;
    const tx = udp.end.sum_sent ?? udp.end.sum;
    const received = rx.packets - rx.lost_packets;
    res.udp = {
      sentPps: tx.packets / tx.seconds,
      receivedPps: received / rx.seconds,
      lossPercent: rx.lost_percent,
      packets: rx.packets,
      lostPackets: rx.lost_packets,
    };
  } finally {
    stopProc(srv.pid);
  }
  return {
    tcpGbps: res.tcpGbps,
    tcpRetransmits: res.tcpRetransmits,
    kpps: res.udp.receivedPps / 1000,
    sentKpps: res.udp.sentPps / 1000,
    lossPercent: res.udp.lossPercent,
    rttUs: res.rtt.rttUs,
    rttMethod: res.rtt.method,
    rttLost: res.rtt.lost,
  };
}

// ---------------------------------------------------------------- implementations

/** A tapnet (or kind: kernel) lab: up fresh, measured, down. */
function labImpl(file, { client, server, dst, reach, rtt, prepare }) {
  return async () => {
    const ns = await labUp(file);
    let undo = null;
    try {
      if (prepare) undo = await prepare(ns);
      await waitReachable(ns(client), reach ?? dst);
      return await measure({ client: ns(client), server: ns(server), dst, rtt: rtt && (() => rtt(ns)) });
    } finally {
      if (undo) undo();
      quietly(() => labDown(file)); // what fails here is left to the final cleanup
    }
  };
}

/** Namespaces of our own: `build` makes them (through addNs), all removed after. */
function customImpl(names, build) {
  return async () => {
    const mine = [];
    try {
      for (const n of names) {
        addNs(n);
        mine.push(n);
      }
      return await build();
    } finally {
      for (const n of mine.reverse()) quietly(() => delNs(n));
    }
  };
}

let relayBin = null;
function buildRelay() {
  if (relayBin) return relayBin;
  const out = path.join(tmpDir(), "relay");
  sh(["gcc", "-O2", "-Wall", "-o", out, path.join(ROOT, "scripts/relay.c")]);
  relayBin = out;
  return out;
}

/** Two hosts joined by scripts/relay.c: the relay runs in its own namespace, like a node. */
function relayImpl() {
  const N = `${NS_PREFIX}relay-node`;
  const H1 = `${NS_PREFIX}relay-h1`;
  const H2 = `${NS_PREFIX}relay-h2`;
  return customImpl([N, H1, H2], async () => {
    const bin = buildRelay();
    const relay = startDaemon(["ip", "netns", "exec", N, bin, "h1", "h2"], "C relay");
    try {
      await waitFor("the relay's TAPs", () => relay.output().includes("ready") || !alive(relay.pid), 5000, 20);
      if (!relay.output().includes("ready")) throw new Error(`relay did not start: ${relay.output().trim()}`);
      // The relay keeps the file descriptors; the TAPs become the hosts' eth0.
      for (const [h, ns, ip] of [["h1", H1, "10.0.0.1/24"], ["h2", H2, "10.0.0.2/24"]]) {
        ipn(N, [`link set ${h} netns ${ns}`]);
        ipn(ns, [`link set ${h} name eth0`]);
        hostAddr(ns, "eth0", ip);
      }
      await waitReachable(H1, "10.0.0.2");
      return await measure({ client: H1, server: H2, dst: "10.0.0.2" });
    } finally {
      stopProc(relay.pid);
    }
  });
}

/** A kernel router: a namespace with ip_forward=1 and one veth to each host. */
function kernelRouterImpl() {
  const R = `${NS_PREFIX}krouter-r`;
  const H1 = `${NS_PREFIX}krouter-h1`;
  const H2 = `${NS_PREFIX}krouter-h2`;
  return customImpl([R, H1, H2], async () => {
    sh(["ip", "netns", "exec", R, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    veth(R, "eth1", H1, "eth0");
    veth(R, "eth2", H2, "eth0");
    ipn(R, ["address add 10.0.1.1/24 dev eth1", "address add 10.0.2.1/24 dev eth2", "link set eth1 up", "link set eth2 up"]);
    hostAddr(H1, "eth0", "10.0.1.10/24", "10.0.1.1");
    hostAddr(H2, "eth0", "10.0.2.10/24", "10.0.2.1");
    await waitReachable(H1, "10.0.2.10");
    return await measure({ client: H1, server: H2, dst: "10.0.2.10" });
  });
}

const VIP = "10.96.0.20";
const BACKEND = "10.244.1.2";

/**
 * The kernel doing a service's DNAT with the pods on a bridge, as kube-proxy relies on:
 * the node's bridge holds the pods' gateway, br_netfilter sends bridged traffic through
 * conntrack so the backend's reply (straight to the client, on the same bridge) is
 * un-DNATed, and an nftables rule maps the VIP to the one backend.
 */
function kernelNatImpl() {
  const N = `${NS_PREFIX}knat-node`;
  const C = `${NS_PREFIX}knat-client`;
  const W = `${NS_PREFIX}knat-web1`;
  return customImpl([N, C, W], async () => {
    sh(["ip", "netns", "exec", N, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    ipn(N, ["link add br0 type bridge", "address add 10.244.1.1/24 dev br0", "link set br0 up"]);
    // br_netfilter's switch exists once a bridge exists in the namespace.
    sh(["ip", "netns", "exec", N, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"]);
    veth(N, "client", C, "eth0");
    veth(N, "web1", W, "eth0");
    ipn(N, ["link set client master br0", "link set client up", "link set web1 master br0", "link set web1 up"]);
    hostAddr(C, "eth0", "10.244.1.4/24", "10.244.1.1");
    hostAddr(W, "eth0", `${BACKEND}/24`, "10.244.1.1");
    sh(["ip", "netns", "exec", N, "nft", "-f", "-"], `
table ip nat {
  chain prerouting {
    type nat hook prerouting priority dstnat;
    ip daddr ${VIP} tcp dport ${IPERF_PORT} dnat to ${BACKEND}:${IPERF_PORT}
    ip daddr ${VIP} udp dport ${IPERF_PORT} dnat to ${BACKEND}:${IPERF_PORT}
    ip daddr ${VIP} udp dport ${ECHO_PORT} dnat to ${BACKEND}:${ECHO_PORT}
  }
  chain postrouting {
    type nat hook postrouting priority srcnat;
  }
}
`);
    const echo = startDaemon(["ip", "netns", "exec", W, "python3", "-c", UDP_ECHO_PY, String(ECHO_PORT)], "UDP echo server");
    try {
      await waitListening(W, ECHO_PORT, "u");
      await waitReachable(C, BACKEND);
      return await measure({ client: C, server: W, dst: VIP, rtt: () => udpEchoRtt(C, VIP, ECHO_PORT) });
    } finally {
      stopProc(echo.pid);
    }
  });
}

/** service-nat.yaml, plus services the bench needs: VIP → one backend, TCP and UDP iperf3, UDP echo. */
async function natLabImpl() {
  const file = await labVariant(path.join(LABS, "service-nat.yaml"), "bench-nat", (doc) => {
    const svc = (protocol, port) => doc.createNode({ vip: VIP, port, protocol, backends: [`${BACKEND}:${port}`] });
    doc.setIn(["nodes", "node1", "services", "bench-tcp"], svc("tcp", IPERF_PORT));
    doc.setIn(["nodes", "node1", "services", "bench-udp"], svc("udp", IPERF_PORT));
    doc.setIn(["nodes", "node1", "services", "bench-echo"], svc("udp", ECHO_PORT));
  });
  return labImpl(file, {
    client: "client",
    server: "web1",
    dst: VIP,
    // A VIP does not answer ping: reachability is the backend's; the UDP echo's warm-up
    // then waits for the path through the VIP.
    reach: BACKEND,
    prepare: async (ns) => {
      const echo = startDaemon(["ip", "netns", "exec", ns("web1"), "python3", "-c", UDP_ECHO_PY, String(ECHO_PORT)], "UDP echo server");
      await waitListening(ns("web1"), ECHO_PORT, "u");
      return () => stopProc(echo.pid);
    },
    rtt: (ns) => udpEchoRtt(ns("client"), VIP, ECHO_PORT),
  });
}

/** Whether this kernel can make an IPIP device (probed in a throwaway namespace). */
function kernelHasIpip() {
  const ns = `${NS_PREFIX}probe`;
  try {
    addNs(ns);
    return spawnSync("ip", ["-n", ns, "link", "add", "t0", "type", "ipip", "remote", "192.0.2.1"], { encoding: "utf8" }).status === 0;
  } catch {
    return false;
  } finally {
    try {
      delNs(ns);
    } catch {
      // reported by cleanup
    }
  }
}

// ---------------------------------------------------------------- scenarios

/**
 * Each scenario: implementations in the order measured; `ref` names the reference every
 * other row is divided by; `alsoVs` adds more ratios (switch: tapnet / C relay).
 */
async function scenarios() {
  const lab = (f) => path.join(LABS, f);
  const kernelVxlan = {
    name: "kernel vxlan",
    run: labImpl(path.join(BENCH_LABS, "vxlan-kernel.yaml"), { client: "pod1a", server: "pod2a", dst: "10.244.2.2" }),
  };
  return {
    switch: async () => ({
      ref: "kernel bridge",
      alsoVs: { tapnet: ["C relay"] },
      impls: [
        { name: "kernel bridge", run: labImpl(path.join(BENCH_LABS, "switch-kernel.yaml"), { client: "h1", server: "h2", dst: "10.0.0.2" }) },
        { name: "C relay", run: relayImpl() },
        { name: "tapnet", run: labImpl(await labVariant(lab("switch.yaml"), "bench-switch"), { client: "h1", server: "h2", dst: "10.0.0.2" }) },
      ],
    }),
    router: async () => ({
      ref: "kernel router",
      impls: [
        { name: "kernel router", run: kernelRouterImpl() },
        { name: "tapnet", run: labImpl(await labVariant(lab("router.yaml"), "bench-router"), { client: "h1", server: "h2", dst: "10.0.2.10" }) },
      ],
    }),
    vxlan: async () => ({
      ref: "kernel vxlan",
      notes: ["kernel vxlan: pods bridged across kernel VXLAN devices (L2); tapnet: flannel's routed VXLAN (cni0 -> flannel.1)"],
      impls: [kernelVxlan, { name: "tapnet", run: labImpl(await labVariant(lab("flannel-vxlan.yaml"), "bench-vxlan"), { client: "pod1a", server: "pod2a", dst: "10.244.2.2" }) }],
    }),
    ipip: async (done) => {
      const tapnet = { name: "tapnet", run: labImpl(await labVariant(lab("calico-ipip.yaml"), "bench-ipip"), { client: "pod1a", server: "pod2a", dst: "10.244.2.2" }) };
      const has = kernelHasIpip();
      const why = has
        ? "this kernel has IPIP, but the bench has no kernel IPIP reference yet"
        : "this kernel has no ipip module (ip link add type ipip: unknown device type)";
      const fromVxlan = done.vxlan?.results.find((r) => r.implementation === "kernel vxlan" && !r.error);
      return {
        ref: "kernel vxlan (stand-in)",
        notes: [`kernel ipip: n/a, ${why}; ratios are against the kernel VXLAN reference${fromVxlan ? " measured in this run's vxlan scenario" : ", measured here"}`],
        impls: [
          { name: "kernel ipip", na: why },
          fromVxlan ? { name: "kernel vxlan (stand-in)", reuse: fromVxlan } : { ...kernelVxlan, name: "kernel vxlan (stand-in)" },
          tapnet,
        ],
      };
    },
    nat: async () => {
      const file = path.join(LABS, "service-nat.yaml");
      if (!fs.existsSync(file)) return { skip: "scripts/labs/service-nat.yaml does not exist" };
      const hasNft = spawnSync("nft", ["--version"], { encoding: "utf8" }).status === 0;
      return {
        ref: "kernel nat",
        notes: [
          `client -> ${VIP} (a service added to service-nat.yaml with one backend, web1 ${BACKEND}) — RTT is a UDP echo through the VIP, not ping`,
          ...(hasNft ? [] : ["kernel nat: n/a, nft is not installed (Debian: apt-get install nftables)"]),
        ],
        impls: [
          hasNft ? { name: "kernel nat", run: kernelNatImpl() } : { name: "kernel nat", na: "nft (nftables) not installed" },
          { name: "tapnet", run: await natLabImpl(), skipOnLabFailure: true },
        ],
      };
    },
  };
}

function ratios(r, ref) {
  if (!ref || ref.error || ref.na || r.error || r.na) return null;
  const q = (a, b) => (a > 0 && b > 0 ? a / b : null);
  return { tcp: q(r.tcpGbps, ref.tcpGbps), kpps: q(r.kpps, ref.kpps), rtt: q(r.rttUs, ref.rttUs) };
}

// ---------------------------------------------------------------- output

const f1 = (x, d = 2) => (x === null || x === undefined || !Number.isFinite(x) ? "-" : x.toFixed(d));
const fr = (x) => (x === null || x === undefined ? "-" : x.toFixed(2));

/** The path carried (almost) all the sender offered: its capacity is at least this rate. */
const senderBound = (r) => r.lossPercent !== null && r.lossPercent < 1;

function rows(report) {
  const out = [];
  for (const s of report.scenarios) {
    if (s.skip) {
      out.push([s.name, "(skipped)", "", "", "", s.skip]);
      continue;
    }
    for (const r of s.results) {
      if (r.na || r.error) {
        out.push([s.name, r.implementation, "-", "-", "-", r.na ? `n/a: ${r.na}` : `failed: ${r.error.split("\n")[0].slice(0, 160)}`]);
        continue;
      }
      let ratio;
      if (r.implementation === s.reference) ratio = "reference";
      else if (r.ratios?.[s.reference]) {
        const q = r.ratios[s.reference];
        ratio = `${fr(q.tcp)} / ${fr(q.kpps)} / ${fr(q.rtt)} vs ${s.reference}`;
      } else ratio = "-";
      out.push([
        s.name,
        r.implementation + (r.reused ? " = vxlan's" : ""),
        f1(r.tcpGbps),
        `${f1(r.kpps, 1)}${senderBound(r) ? "*" : ""} (${f1(r.lossPercent, 1)}% lost)`,
        f1(r.rttUs, 0),
        ratio,
      ]);
      for (const [other, q] of Object.entries(r.ratios ?? {})) {
        if (other === s.reference) continue;
        out.push([s.name, `${r.implementation} ÷ ${other}`, "", "", "", `${fr(q.tcp)} / ${fr(q.kpps)} / ${fr(q.rtt)} vs ${other}`]);
      }
    }
  }
  return out;
}

const HEAD = ["scenario", "implementation", "TCP Gbit/s", "64B kpps (loss)", "RTT µs", "ratio TCP / kpps / RTT"];

function textTable(report) {
  const all = [HEAD, ...rows(report)];
  const w = HEAD.map((_, i) => Math.max(...all.map((r) => String(r[i]).length)));
  const line = (r) => r.map((c, i) => (i >= 2 && i <= 4 ? String(c).padStart(w[i]) : String(c).padEnd(w[i]))).join("  ").trimEnd();
  return [line(all[0]), w.map((n) => "-".repeat(n)).join("  "), ...all.slice(1).map(line)].join("\n") + "\n";
}

function markdownTable(report) {
  const esc = (c) => String(c).replace(/\|/g, "\\|");
  const lines = [
    `| ${HEAD.join(" | ")} |`,
    `|${HEAD.map((_, i) => (i >= 2 && i <= 4 ? "---:" : "---")).join("|")}|`,
    ...rows(report).map((r) => `| ${r.map(esc).join(" | ")} |`),
  ];
  return lines.join("\n") + "\n";
}

function footer(report) {
  const lines = [
    `ratios: tapnet (or the row) / reference, measured in this run; above 1 is better for TCP and kpps, worse for RTT.`,
    `TCP: iperf3 -t ${report.durationS} -J, one stream; 64B: iperf3 -u -b 0 -l 64 -t ${report.durationS}, packets/s received (the sender's maximum rate, one core); RTT: ping -c 20 -i 0.05 average.`,
    ...(report.scenarios.some((s) => (s.results ?? []).some((r) => !r.na && !r.error && senderBound(r)))
      ? ["* under 1% lost: the path carried all that the iperf3 sender could offer, so its capacity is at least this (and a kpps ratio against it is an upper bound)."]
      : []),
    `machine: ${report.host.cpus} CPUs, Linux ${report.host.kernel}, Node ${report.host.node}; load average ${report.loadavg.start.map((x) => x.toFixed(2)).join(" ")} at start, ${report.loadavg.end.map((x) => x.toFixed(2)).join(" ")} at end.`,
  ];
  for (const s of report.scenarios) for (const n of s.notes ?? []) lines.push(`${s.name}: ${n}`);
  return lines.join("\n") + "\n";
}

// ---------------------------------------------------------------- main

function preflight() {
  if (process.getuid?.() !== 0) throw new Error("the bench builds network namespaces and TAP devices: run it as root (sudo npm run bench)");
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: build first (npm run build)`);
  for (const [cmd, pkg] of [["iperf3", "iperf3"], ["ping", "iputils-ping"], ["gcc", "gcc"], ["timeout", "coreutils"], ["python3", "python3"], ["ss", "iproute2"]]) {
    if (spawnSync("sh", ["-c", `command -v ${cmd}`]).status !== 0) throw new Error(`${cmd} is not installed (Debian: ${pkg}; sudo npm run setup)`);
  }
}

/** --cleanup: what a bench killed with -9 may have left: its labs and its own namespaces. */
function cleanupLeftovers() {
  let n = 0;
  const benchLabs = fs.existsSync("/run/tapnet") ? fs.readdirSync("/run/tapnet").filter((l) => l.startsWith("bench-")) : [];
  const labsLeft = new Set([...benchLabs, ...netnsList().filter((x) => x.startsWith("tn-bench-")).map((x) => /^tn-(bench-[a-z0-9]+(?:-k)?)-/.exec(x)?.[1]).filter(Boolean)]);
  for (const l of labsLeft) {
    const r = tapnetCli(["lab", "down", l]);
    process.stderr.write(`bench: lab down ${l}: ${r.status === 0 ? "ok" : (r.stderr || "").trim()}\n`);
    n++;
  }
  for (const ns of netnsList().filter((x) => x.startsWith(NS_PREFIX) || x.startsWith("tn-bench-"))) {
    // Processes an earlier bench started there (an iperf3 server, the relay): by PID.
    const pids = sh(["ip", "netns", "pids", ns]).split(/\s+/).filter(Boolean).map(Number);
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        // gone
      }
    }
    for (let i = 0; i < 50 && pids.some(alive); i++) sleepSync(20);
    for (const pid of pids.filter(alive)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    if (pids.length) process.stderr.write(`bench: stopped ${pids.length} process(es) left in ${ns}: ${pids.join(" ")}\n`);
    sh(["ip", "netns", "del", ns]);
    process.stderr.write(`bench: removed namespace ${ns}\n`);
    n++;
  }
  process.stderr.write(`bench: ${n ? "cleaned up" : "nothing left behind"}\n`);
}

async function main() {
  preflight();
  if (opts.cleanup) return cleanupLeftovers();
  const report = {
    tool: "tapnet bench (scripts/bench.mjs)",
    command: `node scripts/bench.mjs ${process.argv.slice(2).join(" ")}`.trim(),
    date: new Date().toISOString(),
    durationS: opts.duration,
    host: { kernel: os.release(), cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? "", node: process.versions.node },
    loadavg: { start: os.loadavg(), end: null },
    scenarios: [],
  };
  if (report.loadavg.start[0] > 0.5) {
    say(`warning: load average ${report.loadavg.start[0].toFixed(2)} before the start: other work on this machine will lower every number (the ratios less)`);
  }
  const defs = await scenarios();
  const done = {};
  let failed = 0;
  for (const name of opts.scenarios) {
    let def;
    try {
      def = await defs[name](done);
    } catch (e) {
      def = { skip: `could not prepare: ${e.message}` };
    }
    if (def.skip) {
      say(`${name}: skipped: ${def.skip}`);
      report.scenarios.push({ name, skip: def.skip, notes: def.notes ?? [] });
      continue;
    }
    const s = { name, reference: def.ref, notes: [...(def.notes ?? [])], results: [] };
    for (const impl of def.impls) {
      if (impl.na) {
        say(`${name}: ${impl.name}: n/a (${impl.na})`);
        s.results.push({ implementation: impl.name, na: impl.na });
        continue;
      }
      if (impl.reuse) {
        say(`${name}: ${impl.name}: the vxlan scenario's measurement of this run`);
        s.results.push({ ...impl.reuse, implementation: impl.name, reused: true, ratios: undefined });
        continue;
      }
      say(`${name}: ${impl.name}: measuring (${opts.duration} s TCP + ${opts.duration} s UDP)…`);
      const t = Date.now();
      try {
        const m = await impl.run();
        s.results.push({ implementation: impl.name, ...m });
        say(`${name}: ${impl.name}: TCP ${f1(m.tcpGbps)} Gbit/s, 64B ${f1(m.kpps, 1)} kpps received of ${f1(m.sentKpps, 1)} sent, RTT ${f1(m.rttUs, 0)} µs (${((Date.now() - t) / 1000).toFixed(0)} s)`);
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        if (impl.skipOnLabFailure && /lab up .* failed/.test(msg)) {
          say(`${name}: ${impl.name}: skipped, the lab does not come up: ${msg.split("\n")[0]}`);
          s.results.push({ implementation: impl.name, na: `lab does not come up: ${msg.split("\n").slice(0, 2).join(" ")}` });
        } else {
          failed++;
          say(`${name}: ${impl.name}: FAILED: ${msg}`);
          s.results.push({ implementation: impl.name, error: msg });
        }
      }
    }
    const ref = s.results.find((r) => r.implementation === def.ref);
    for (const r of s.results) {
      if (r.implementation === def.ref || r.na || r.error) continue;
      const q = ratios(r, ref);
      r.ratios = {};
      if (q) r.ratios[def.ref] = q;
      for (const other of def.alsoVs?.[r.implementation] ?? []) {
        const q2 = ratios(r, s.results.find((x) => x.implementation === other));
        if (q2) r.ratios[other] = q2;
      }
    }
    done[name] = s;
    report.scenarios.push(s);
  }
  report.loadavg.end = os.loadavg();
  cleanup();
  const left = netnsList().filter((n) => n.startsWith(NS_PREFIX) || n.startsWith("tn-bench-"));
  if (left.length) say(`warning: namespaces still present: ${left.join(" ")}`);
  say(`done in ${((Date.now() - T0) / 1000).toFixed(0)} s`);

  process.stdout.write("\n" + (opts.markdown && !opts.markdownFile ? markdownTable(report) : textTable(report)) + "\n" + footer(report));
  if (opts.markdownFile) {
    fs.writeFileSync(opts.markdownFile, markdownTable(report) + "\n" + footer(report).split("\n").filter(Boolean).map((l) => `${l}  `).join("\n") + "\n");
    say(`markdown written to ${opts.markdownFile}`);
  }
  if (opts.json) {
    fs.writeFileSync(opts.json, JSON.stringify(report, null, 2) + "\n");
    say(`JSON written to ${opts.json}`);
  }
  if (failed) process.exitCode = 1;
}

main().catch((e) => {
  process.stderr.write(`bench: ${e instanceof Error ? e.message : e}\n`);
  cleanup();
  process.exit(1);
});
