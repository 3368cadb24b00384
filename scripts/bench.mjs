#!/usr/bin/env node
// tapnet benchmark: every scenario measures tapnet and its reference(s) on the same work,
// in the same run, each on a lab brought up fresh and taken down after (docs/architecture.md:
// a performance claim is a ratio against a reference measured in the same run).
//
//   sudo npm run bench                       # all network scenarios, once (about 4 minutes)
//   sudo npm run bench -- --repeat 3 --svg ratios.svg   # medians of 3 (about 9 minutes)
//   sudo node scripts/bench.mjs switch router --duration 3 --json out.json --markdown
//   npm run bench -- tables                  # FDB and FIB with 1 M entries (20 s; 1 min with --repeat 3)
//   sudo npm run bench -- control            # the control plane: route changes, a host joining (2 minutes)
//   sudo npm run bench -- cni                # CNI ADD/DEL vs the bridge plugin, cluster DNS answers/s (1 minute)
//   sudo npm run bench -- bgp                # BIRD announcing 100,000 prefixes to tapnet and to BIRD's kernel (about 2 minutes)
//   sudo npm run bench -- etcd               # flannel agents on etcd: lease to route, 200 peers (1 minute)
//   sudo npm run bench -- trace --before DIR --repeat 5   # tracing off / armed vs a tree without it (2-4 minutes)
//   sudo npm run bench -- rfc2544            # RFC 2544 throughput/latency/loss, 7 frame sizes, 7 devices (2 s trials)
//   sudo npm run bench -- rfc2889            # RFC 2889 address caching capacity and learning rate of the switches
//   sudo npm run bench -- lab                # lab up/down of 10 and 50 hosts vs Mininet, node exit, CLI start (1 minute)
//   sudo npm run bench -- mesh               # the mesh (direct, relayed) vs the VXLAN overlay; gossip with 3 and 50 peers (1 minute)
//   sudo node scripts/bench.mjs --cleanup    # remove what a killed (-9) bench left behind
//
// Scenarios and their references:
//   switch  two hosts on a tapnet switch (scripts/labs/switch.yaml, TAP ports)
//           vs the same hosts on a Linux bridge (scripts/bench/switch-kernel.yaml)
//           vs a minimal C relay between two TAPs (scripts/relay.c, built with gcc at run time),
//           plain, with virtio-net headers (TSO), and with one thread per direction (-t: the
//           multi-core experiment: what a second dataplane thread gains on this machine);
//           tapnet runs twice: with offloads (its default) and with plain TAPs (offload:
//           false), the plain relay's like-for-like
//           --uring adds both with io: uring (native/uring.c) and the two C relays with the
//           same I/O (-u); --impls A,B runs only the rows named, in that order (A/B repeats)
//           --ovs adds Open vSwitch's userspace datapath (datapath_type=netdev) with AF_PACKET
//           ports and with AF_XDP ports polled by one busy-polling PMD core, its daemons
//           started by the bench in a namespace of its own (scripts/bench/ovs.mjs), and
//           tapnet with veth-xdp hosts (AF_XDP sockets), without and with busy polling
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
//   etcd    flannel's control plane (scripts/bench/etcd.mjs, which says how): on
//           flannel-etcd.yaml (3 etcd members, 3 nodes with agents), a lease written in etcd
//           to the route programmed on every other node, p50/p99, one lease at a time and
//           200 at once, 200 expiring at once; the agents' CPU and RSS with 200 peers.
//           Reference: `etcdctl watch` in each node's namespace seeing the same events
//           (the agent's cost over being told). Its own table.
//   tables  (not in the default set; no network, no root) the FDB with 1 M MACs through the
//           real LearningSwitch.process() vs a Map<number, entry> (scripts/bench/fdb.mjs),
//           plus direct lookups on its FdbTable vs Map.get() ("direct M/s"),
//           and the FIB with 1 M routes vs a Map per prefix length (scripts/bench-fib.mjs):
//           build time, lookups/s, bytes per entry (JS heap and RSS growth)
//   cni     a pod's network life (scripts/bench/cni.mjs, which says how): CNI ADD and DEL
//           latency p50/p99 of 50 containers in sequence, the tapnet plugin vs
//           containernetworking-plugins' bridge with the same host-local IPAM; cluster DNS
//           answers/s of a node vs the same answers from dns-packet on a kernel socket.
//           Needs /usr/lib/cni (Debian: containernetworking-plugins). Its own table.
//   bgp     (not in the default set) BIRD announces --prefixes /24s (default 100,000) to tapnet's
//           BGP speaker and, at the same time, to a second BIRD that exports them to its kernel
//           (scripts/bench/bgp.mjs, which says how): time until all are in the FIB and until
//           all are withdrawn, tapnet vs BIRD+kernel; the node's RSS with them vs idle; the
//           64-byte forwarding rate during a load vs idle. Its own table.
//   trace   (not in the default set) what tracing costs forwarding (scripts/bench/trace.mjs, which
//           says how): the switch and router labs' 64-byte flood with tracing off and with a
//           live trace armed on a filter nothing matches, against --before DIR (a built tree
//           without tracing), interleaved rounds. Its own table.
//   rfc2544 (not in the default set) RFC 2544 §26.1-26.3 (scripts/bench/rfc2544.mjs, which says
//           how): zero-loss throughput by binary search on trafgen's rate, latency at it, frame
//           loss series, for 64..1518-byte frames, on tapnet's switch and router, the C relay,
//           the kernel bridge and a kernel router. Its own tables; --rfc-svg FILE: the chart.
//   rfc2889 (not in the default set) RFC 2889 §5.7/5.8: address caching capacity and learning
//           rate of tapnet's switch and the kernel bridge (same file). Its own table.
//   lab     (not in the default set) lab up and lab down of a single-switch lab of 10 and 50
//           hosts against Mininet (lxbr switch, no controller) confined in namespaces of its
//           own; a node's exit after SIGTERM against SIGKILL; `tapnet show ports` run directly
//           against npx and `node -e 0` (scripts/bench/lab.mjs, which says how). Its own table.
//   mesh    (not in the default set) the mesh of scripts/labs/weave-mesh.yaml against tapnet's
//           VXLAN overlay (flannel-vxlan.yaml), both labs up side by side (scripts/bench/mesh.mjs,
//           which says how): pod-to-pod TCP and RTT p50/p99, direct and relayed by a third
//           peer, interleaved per repetition; gossip convergence of 3 and 50 simulated peers
//           (in-process, the real merge code): messages and CPU time, cold and for a join.
//           Its own table.
//   control runtime changes to a router node (scripts/bench/control.mjs, which says how):
//           route additions/s over the control socket, batched (`changes`) and one request
//           each, idle and under a TCP stream / a 64-byte flood through the node (ratio:
//           under load / idle); the forwarding rate during a burst of --routes additions
//           against the same load without it; ping's max RTT across the burst; the route
//           table checked after every burst (a mismatch fails the run); `lab host add` to
//           the host's first ping reply against `lab up` of a one-host lab; for scale, the
//           kernel (ip -batch, a host joined by hand to a bridge). Its own table.
//
// Metrics, per implementation and repetition: iperf3 TCP throughput (-t DURATION -J,
// one stream); 64-byte frames/s forwarded under a flood: trafgen (Debian: netsniff-ng),
// in the client's namespace, one process (pinned by trafgen to CPU 0), TX_RING with the
// qdisc bypassed, no gap, sends 60-byte frames (64 on the wire with the FCS: Ethernet,
// IPv4 with TTL 64 and a correct header checksum, UDP with checksum 0 and 18 bytes of
// zeros) from the client's address to the server's (nat: to the VIP) on UDP port 5201,
// where nothing listens for UDP (nat: the DNAT'd service port), so the receiving stack
// drops them right after the socket lookup. The destination MAC is the next hop's from
// the client's neighbour table (the gateway's on routed paths, the server's on switched
// ones). The source port cycles over 8 values, so NAT and conntrack see a few flows,
// not one; nothing here spreads flows over cores (one forwarding process, veths without
// RPS), so more would change nothing else. trafgen runs DURATION s after a 0.5 s
// warm-up and is then stopped with SIGINT by PID; over the DURATION window, kpps = the
// server interface's rx_packets delta / window, sent = the client interface's
// tx_packets delta, loss = sent not received. A frame the client's interface refuses
// (full TAP queue, full veth backlog) counts as its tx_dropped but the packet socket
// sends it again: reported as `refusedKps` (attempts/s, in the JSON), not as loss. On
// the kernel paths the whole path runs in softirq on the sender's core, so sender and
// path share one core there; a TAP path's forwarder (and the receiving stack, which
// runs in its write()) has the other. RTT p50 and p99 over `ping -c 1000 -i 0.002`
// per-reply times (for nat: a UDP echo through the VIP, 1000 at the same interval, as a
// VIP does not answer ping). For processes that forward (tapnet's nodes, the C relay):
// CPU seconds (utime+stime from /proc/PID/stat, node PIDs from
// /run/tapnet/LAB/state.json) per million frames they sent during the 64-byte flood,
// read before trafgen starts and after it stops (tapnet: the nodes' device-port
// counters, `tapnet show ports --json`; relay: its TAPs' kernel counters), and their
// peak RSS (VmHWM) at the end of the scenario. With --repeat N the lab comes up once
// per implementation and the measurements run N times inside it; the table shows
// medians, the JSON keeps every sample. Ratios are of medians, tapnet / reference:
// above 1 is better for TCP and kpps, worse for RTT and CPU.
//
// Options: [scenario…] (default: the network ones), --duration S (default 5), --repeat
// N (default 1; use 3 for numbers worth quoting), --pings N (default 1000), --json
// FILE, --markdown [FILE] (the table as markdown, on stdout or into FILE), --svg FILE
// (a bar chart of the ratios), --table-size N (tables: MACs and routes, default
// 1000000), --routes N (control: route additions per burst, default 100000), --host-adds
// K (control: hosts joined, and reference labs brought up, per repetition, default 3),
// --cleanup. Progress goes to stderr, the table to stdout. Needs root, a
// built tree (npm run build), iperf3, trafgen (netsniff-ng), ping and gcc. Every
// namespace and process it makes is removed on exit, on failure and on Ctrl-C;
// processes are stopped by the PIDs it started.
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { median, percentile, ratio as ratioOf } from "./bench/stats.mjs";
import { REF_BRIDGE as CNI_REF_BRIDGE, runCni } from "./bench/cni.mjs";
import { runBgp } from "./bench/bgp.mjs";
import { runControl } from "./bench/control.mjs";
import { runEtcd } from "./bench/etcd.mjs";
import { runLab } from "./bench/lab.mjs";
import { runMesh } from "./bench/mesh.mjs";
import { OVS_ROWS, ovsImpl } from "./bench/ovs.mjs";
import { runTables } from "./bench/tables.mjs";
import { runTrace } from "./bench/trace.mjs";
import { FRAME_SIZES, rfc2544Series, rfc2544Tables, rfc2889Table, runRfc2544, runRfc2889 } from "./bench/rfc2544.mjs";
import { lineChart, ratioChart } from "./bench/svg.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const CLI = path.join(ROOT, "dist/cli/main.js");
const LABS = path.join(ROOT, "scripts/labs");
const BENCH_LABS = path.join(ROOT, "scripts/bench");
/** Scenarios measured the same way (measure(): TCP, 64B flood, RTT) on each implementation's path. */
const SCENARIOS = ["switch", "router", "vxlan", "ipip", "nat"];
/** The control plane's scenario (scripts/bench/control.mjs): network, in the default set, its own table. */
const CONTROL = "control";
/** A pod's network life (scripts/bench/cni.mjs): CNI ADD/DEL against the bridge plugin, cluster DNS answers/s. */
const CNI = "cni";
/** flannel's control plane on a real etcd (scripts/bench/etcd.mjs): network, in the default set, its own table. */
const ETCD = "etcd";
/** BGP: BIRD announcing --prefixes to tapnet's speaker and to BIRD's kernel (scripts/bench/bgp.mjs); runs when named. */
const BGP = "bgp";
/** What tracing costs (scripts/bench/trace.mjs): off and armed on an unrelated filter, against --before; runs when named. */
const TRACE = "trace";
const RFC2544 = "rfc2544";
const RFC2889 = "rfc2889";
/** Labs made and unmade against Mininet, node exit, CLI start (scripts/bench/lab.mjs); runs when named. */
const LAB = "lab";
/** The mesh against the VXLAN overlay, and gossip convergence (scripts/bench/mesh.mjs); runs when named. */
const MESH = "mesh";
/** Scenarios that run only when named. */
const EXTRA = ["tables", BGP, TRACE, RFC2544, RFC2889, LAB, MESH];
const ALL = [...SCENARIOS, CONTROL, CNI, ETCD, ...EXTRA];
/** Prefix of the namespaces the bench makes itself (labs' namespaces are tn.bench-…). */
const NS_PREFIX = "tnb-";
const IPERF_PORT = 5201;
const ECHO_PORT = 5202;

// ---------------------------------------------------------------- arguments

function usage(code) {
  const out = code ? process.stderr : process.stdout;
  out.write(
    `usage: node scripts/bench.mjs [${ALL.join("|")}…] [--duration S] [--repeat N] [--pings N]\n` +
      `                              [--json FILE] [--markdown [FILE]] [--svg FILE] [--table-size N] [--routes N] [--host-adds K] [--prefixes N] [--before DIR] [--cleanup]\n` +
      `  default: every network scenario (${[...SCENARIOS, CONTROL, CNI, ETCD].join(" ")}), --duration 5 --repeat 1 --pings 1000;\n` +
      `  'tables' (FDB and FIB with --table-size entries, default 1000000) runs only when named.\n` +
      `  --duration S: seconds of the iperf3 TCP test and of the 64-byte trafgen flood (after a 0.5 s warm-up).\n` +
      `  --repeat N: the measurements N times per lab, medians shown (use 3 for numbers worth quoting).\n` +
      `  --uring: also the io_uring rows of the switch scenario (tapnet with io: uring, the C relays with -u).\n` +
      `  --ovs: also the veth-host rows of the switch scenario: Open vSwitch's userspace datapath (AF_PACKET and AF_XDP ports; scripts/bench/ovs.mjs) and tapnet with veth-xdp hosts (AF_XDP), without and with busy polling.\n` +
      `  --impls A,B: only these rows, in this order (names as printed, e.g. 'tapnet,tapnet (io_uring)'); an unknown name is an error.\n` +
      `  --routes N, --host-adds K (control): route additions per burst (default 100000), hosts joined per repetition (default 3).\n` +
      `  'trace' (tracing off / armed on an unrelated filter; --before DIR: a built tree without tracing to hold them against) runs only when named.\n` +
      `  'rfc2544' / 'rfc2889' run only when named: --trial S (default 2; --rfc-trials: 60), --sizes 64,128,…,\n` +
      `    --resolution F (default 0.04 of the maximum rate), --max-addresses N (default 16384), --learn-rate PPS (default 10000), --rfc-svg FILE.\n` +
      `  'bgp' (BIRD announcing --prefixes N, default 100000, to tapnet's speaker and to a BIRD that feeds its kernel) runs only when named.\n` +
      `  'mesh' (the mesh direct and relayed vs the VXLAN overlay; gossip with 3 and 50 simulated peers) runs only when named.\n`,
  );
  process.exit(code);
}

const opts = {
  scenarios: [],
  duration: 5,
  repeat: 1,
  pings: 1000,
  tableSize: 1_000_000,
  routes: 100_000,
  prefixes: 100_000,
  hostAdds: 3,
  json: null,
  markdown: false,
  markdownFile: null,
  svg: null,
  cleanup: false,
  before: null,
  // rfc2544 / rfc2889
  trial: 2,
  sizes: FRAME_SIZES,
  resolution: 0.04,
  maxAddresses: 16384,
  learnRate: 10_000,
  rfcSvg: null,
  impls: null,
  uring: false,
  ovs: false,
};
{
  const a = process.argv.slice(2);
  /** A whole-number option in [lo, hi]: `--name V` or `--name=V`. */
  const intOpt = (x, name, lo, hi, i) => {
    const v = Number(x === `--${name}` ? a[i + 1] : x.slice(name.length + 3));
    if (!Number.isInteger(v) || v < lo || v > hi) {
      process.stderr.write(`bench: --${name} takes a whole number, ${lo}..${hi}\n`);
      process.exit(2);
    }
    return v;
  };
  const isOpt = (x, name) => x === `--${name}` || x.startsWith(`--${name}=`);
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const step = x.includes("=") ? 0 : 1;
    if (isOpt(x, "duration")) {
      // iperf3 -t takes whole seconds.
      opts.duration = intOpt(x, "duration", 1, 600, i);
      i += step;
    } else if (isOpt(x, "repeat")) {
      opts.repeat = intOpt(x, "repeat", 1, 50, i);
      i += step;
    } else if (isOpt(x, "pings")) {
      opts.pings = intOpt(x, "pings", 10, 100_000, i);
      i += step;
    } else if (isOpt(x, "table-size")) {
      opts.tableSize = intOpt(x, "table-size", 1000, 4_000_000, i);
      i += step;
    } else if (isOpt(x, "routes")) {
      opts.routes = intOpt(x, "routes", 1000, 1_000_000, i);
      i += step;
    } else if (isOpt(x, "prefixes")) {
      opts.prefixes = intOpt(x, "prefixes", 1000, 1_000_000, i);
      i += step;
    } else if (isOpt(x, "host-adds")) {
      opts.hostAdds = intOpt(x, "host-adds", 1, 50, i);
      i += step;
    } else if (isOpt(x, "trial")) {
      opts.trial = intOpt(x, "trial", 1, 600, i);
      i += step;
    } else if (x === "--rfc-trials") {
      opts.trial = 60;
    } else if (isOpt(x, "max-addresses")) {
      opts.maxAddresses = intOpt(x, "max-addresses", 2, 65536, i);
      i += step;
    } else if (isOpt(x, "learn-rate")) {
      opts.learnRate = intOpt(x, "learn-rate", 100, 1_000_000, i);
      i += step;
    } else if (isOpt(x, "resolution")) {
      const v = Number(x === "--resolution" ? a[i + 1] : x.slice(13));
      if (!(v >= 0.005 && v <= 0.5)) {
        process.stderr.write("bench: --resolution takes a fraction of the maximum rate, 0.005..0.5\n");
        process.exit(2);
      }
      opts.resolution = v;
      i += step;
    } else if (isOpt(x, "sizes")) {
      const v = (x === "--sizes" ? a[i + 1] : x.slice(8)) ?? "";
      const list = v.split(",").map(Number);
      if (!v || list.some((n) => !Number.isInteger(n) || n < 64 || n > 1518)) {
        process.stderr.write("bench: --sizes takes frame sizes in bytes, 64..1518, comma-separated (e.g. 64,512,1518)\n");
        process.exit(2);
      }
      opts.sizes = list;
      i += step;
    } else if (x === "--rfc-svg") {
      opts.rfcSvg = a[++i];
      if (!opts.rfcSvg) usage(2);
    } else if (x.startsWith("--rfc-svg=")) {
      opts.rfcSvg = x.slice(10);
    } else if (x === "--json") {
      opts.json = a[++i];
      if (!opts.json) usage(2);
    } else if (x.startsWith("--json=")) {
      opts.json = x.slice(7);
    } else if (x === "--svg") {
      opts.svg = a[++i];
      if (!opts.svg) usage(2);
    } else if (x.startsWith("--svg=")) {
      opts.svg = x.slice(6);
    } else if (x === "--markdown") {
      opts.markdown = true;
      if (a[i + 1] !== undefined && !a[i + 1].startsWith("--") && !ALL.includes(a[i + 1])) opts.markdownFile = a[++i];
    } else if (x.startsWith("--markdown=")) {
      opts.markdown = true;
      opts.markdownFile = x.slice(11);
    } else if (x === "--before") {
      opts.before = a[++i];
      if (!opts.before) usage(2);
    } else if (x.startsWith("--before=")) {
      opts.before = x.slice(9);
    } else if (x === "--impls" || x.startsWith("--impls=")) {
      // Only these rows of the scenarios (names as printed, comma-separated): a quick A/B.
      const v = x === "--impls" ? a[++i] : x.slice(8);
      if (!v) usage(2);
      opts.impls = v.split(/,(?![^(]*\))/).map((n) => n.trim()); // commas inside a name's parentheses stay
    } else if (x === "--uring") {
      opts.uring = true;
    } else if (x === "--ovs") {
      opts.ovs = true;
    } else if (x === "--cleanup") {
      opts.cleanup = true;
    } else if (x === "-h" || x === "--help") {
      usage(0);
    } else if (ALL.includes(x)) {
      if (!opts.scenarios.includes(x)) opts.scenarios.push(x);
    } else {
      process.stderr.write(`bench: unknown scenario or option '${x}' (scenarios: ${ALL.join(", ")})\n`);
      usage(2);
    }
  }
  if (opts.scenarios.length === 0) opts.scenarios = [...SCENARIOS, CONTROL, CNI, ETCD];
  // Keep the scenarios in their canonical order: ipip reuses vxlan's kernel reference.
  opts.scenarios.sort((x, y) => ALL.indexOf(x) - ALL.indexOf(y));
}
/** Whether any scenario needs namespaces (everything but `tables`). */
const NETWORK = opts.scenarios.some((x) => x !== "tables");

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
  return (r.stdout ?? "")
    .split("\n")
    .map((l) => l.trim().split(/\s+/)[0])
    .filter(Boolean);
}

/** Runs a short command synchronously; throws with its stderr on failure. */
function sh(argv, input) {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: "utf8", input, timeout: 30_000 });
  if (r.error) throw new Error(`${argv.join(" ")}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`'${argv.join(" ")}' failed (exit ${r.status}): ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}
const ipn = (ns, lines) => sh(["ip", "-n", ns, "-batch", "-"], `${lines.join("\n")}\n`);

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
function startDaemon(argv, what, o = {}) {
  const full = o.netns ? ["ip", "netns", "exec", o.netns, ...argv] : argv;
  const child = spawn(full[0], full.slice(1), { detached: true, stdio: [o.stdin ? "pipe" : "ignore", "pipe", "pipe"] });
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
  return (n) => `tn.${name}.${n}`;
}

// ---------------------------------------------------------------- measurements

async function waitReachable(ns, dst) {
  await waitFor(
    `${dst} to answer ping from ${ns}`,
    async () => {
      const r = await runAsync(["ip", "netns", "exec", ns, "ping", "-n", "-q", "-c", "1", "-W", "1", dst], 5);
      return r.status === 0;
    },
    15_000,
    200,
  );
}

/** p50/p99 (and more) of per-reply RTTs in µs. */
function rttStats(us, sent, method) {
  if (us.length === 0) throw new Error(`${method}: no reply`);
  return {
    p50Us: percentile(us, 50),
    p99Us: percentile(us, 99),
    meanUs: us.reduce((a, b) => a + b, 0) / us.length,
    minUs: Math.min(...us),
    maxUs: Math.max(...us),
    replies: us.length,
    lost: sent - us.length,
    method,
  };
}

/** The interval ping accepts: 2 ms as root; 10 ms if this ping refuses 2 ms. */
let pingInterval = "0.002";

/** `opts.pings` pings at 2 ms; per-reply times parsed from ping's normal (non -q) output. */
async function pingRtt(ns, dst) {
  const n = opts.pings;
  for (;;) {
    const argv = ["ip", "netns", "exec", ns, "ping", "-n", "-c", String(n), "-i", pingInterval, "-W", "1", dst];
    const r = await runAsync(argv, Math.ceil(n * Number(pingInterval) * 3) + 20);
    const us = [];
    for (const m of r.stdout.matchAll(/ time=([\d.]+) ms/g)) us.push(Number(m[1]) * 1000);
    if (us.length === 0 && pingInterval === "0.002" && /interval|flood/i.test(r.stderr)) {
      say(`ping refuses -i 0.002 (${r.stderr.trim().split("\n")[0]}): using -i 0.01`);
      pingInterval = "0.01";
      continue;
    }
    if (us.length === 0) throw new Error(`ping ${dst}: no reply (${(r.stdout + r.stderr).trim().split("\n").pop()})`);
    const sent = /(\d+) packets transmitted/.exec(r.stdout);
    return rttStats(us, sent ? Number(sent[1]) : n, `ping -c ${n} -i ${pingInterval}`);
  }
}

/** RTT of a UDP echo through `dst:port` (for a VIP, which does not answer ping). */
const UDP_RTT_PY = `
import json, socket, sys, time
dst, port, n, gap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
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
    time.sleep(gap)
print(json.dumps({"rtts": rtts, "lost": lost}))
`;
const UDP_ECHO_PY = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
while True:
    d, a = s.recvfrom(2048); s.sendto(d, a)
`;

async function udpEchoRtt(ns, dst, port) {
  const n = opts.pings;
  const r = await runAsync(["ip", "netns", "exec", ns, "python3", "-c", UDP_RTT_PY, dst, String(port), String(n), pingInterval], n + 30);
  let j;
  try {
    j = JSON.parse(r.stdout);
  } catch {
    throw new Error(`UDP echo to ${dst}:${port}: ${(r.stderr || r.stdout).trim().split("\n").pop()}`);
  }
  if (j.error) throw new Error(`UDP echo to ${dst}:${port}: ${j.error}`);
  if (j.rtts.length === 0) throw new Error(`UDP echo to ${dst}:${port}: no reply`);
  return rttStats(j.rtts, n, `UDP echo x${n} every ${Number(pingInterval) * 1000} ms (python)`);
}

function startIperfServer(ns) {
  const d = startDaemon(["ip", "netns", "exec", ns, "iperf3", "-s", "-p", String(IPERF_PORT)], `iperf3 server in ${ns}`);
  return d;
}

async function waitListening(ns, port, proto = "t") {
  await waitFor(
    `a server on port ${port} in ${ns}`,
    () => {
      const r = spawnSync("ip", ["netns", "exec", ns, "ss", `-Hln${proto}`, `sport = :${port}`], { encoding: "utf8" });
      return (r.stdout ?? "").trim().length > 0;
    },
    5000,
    50,
  );
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

// ---------------------------------------------------------------- the 64-byte flood

/** Source ports of the flood: 40000..40000+FLOOD_FLOWS-1, in turn (trafgen's dinc). */
const FLOOD_FLOWS = 8;
/** From trafgen's start to the counting window: its ring fills, the path settles. */
const FLOOD_WARMUP_MS = 500;

/** Kernel counters of an interface (stats64) and when they were read (performance.now() ms, mid-read). */
function linkStats(ns, ifname) {
  const t0 = performance.now();
  const j = JSON.parse(sh(["ip", "-n", ns, "-s", "-j", "link", "show", "dev", ifname]));
  const t1 = performance.now();
  const st = j[0].stats64;
  return { at: (t0 + t1) / 2, txPackets: st.tx.packets, txDropped: st.tx.dropped, rxPackets: st.rx.packets, rxDropped: st.rx.dropped };
}

/**
 * What a frame from `client` to `dst` must carry to be forwarded as the client's own
 * stack would send it: the route's device and source address, the next hop's MAC (the
 * gateway's on a routed path, the server's on a switched one: read from the client's
 * neighbour table, filled by the RTT and TCP tests before), and the server's interface
 * the frames arrive on (its route back to the client's address).
 */
async function floodPath(client, server, dst) {
  const rt = JSON.parse(sh(["ip", "-n", client, "-j", "route", "get", dst]))[0];
  if (!rt?.dev || !rt.prefsrc) throw new Error(`flood: no route from ${client} to ${dst}`);
  const nextHop = rt.gateway ?? dst;
  const lladdr = () => JSON.parse(sh(["ip", "-n", client, "-j", "neigh", "show", "to", nextHop, "dev", rt.dev]))[0]?.lladdr ?? null;
  let dstMac = lladdr();
  if (!dstMac) {
    // Aged out: one ping to the next hop (a gateway answers, an on-link server too) resolves it.
    await runAsync(["ip", "netns", "exec", client, "ping", "-n", "-q", "-c", "1", "-W", "1", nextHop], 5);
    dstMac = lladdr();
  }
  if (!dstMac) throw new Error(`flood: no MAC for ${nextHop} on ${rt.dev} in ${client}`);
  const srcMac = JSON.parse(sh(["ip", "-n", client, "-j", "link", "show", "dev", rt.dev]))[0].address;
  const back = JSON.parse(sh(["ip", "-n", server, "-j", "route", "get", rt.prefsrc]))[0];
  if (!back?.dev) throw new Error(`flood: no route from ${server} back to ${rt.prefsrc}`);
  return { dev: rt.dev, srcMac, dstMac, srcAddr: rt.prefsrc, dstAddr: dst, nextHop, serverDev: back.dev };
}

/**
 * A trafgen packet: 60 bytes (a 64-byte Ethernet frame with the FCS): Ethernet, IPv4
 * (20 bytes, TTL 64, no DF, header checksum by trafgen), UDP to `dport` with checksum 0
 * (none, RFC 768) and 18 bytes of zeros. The source port cycles over FLOOD_FLOWS values
 * (dinc on its low byte), so a NAT or conntrack sees a few flows, not one.
 */
function trafgenConfig(p, dport) {
  const mac = (m) =>
    m
      .split(":")
      .map((b) => `0x${b}`)
      .join(", ");
  const ip = (a) => a.split(".").join(", ");
  return `/* tapnet bench: ${p.srcAddr} -> ${p.dstAddr}:${dport} via ${p.nextHop} (${p.dstMac}) */
{
  ${mac(p.dstMac)}, ${mac(p.srcMac)}, c16(0x0800),
  0x45, 0x00, c16(46), c16(0), c16(0), 64, 17, csumip(14, 33),
  ${ip(p.srcAddr)}, ${ip(p.dstAddr)},
  0x9c, dinc(0x40, ${0x40 + FLOOD_FLOWS - 1}), c16(${dport}), c16(26), c16(0),
  fill(0x00, 18)
}
`;
}

/**
 * The 64-byte test: trafgen floods the path from the client's namespace at full speed
 * (TX_RING, qdisc bypassed, one process, which trafgen pins to CPU 0) for
 * FLOOD_WARMUP_MS + opts.duration s, then is stopped by SIGINT to its PID's group.
 * Counted over the opts.duration window in the middle: sent = the client interface's
 * tx_packets delta, received = the server interface's rx_packets delta. A frame the first
 * hop refuses (a TAP whose queue is full, a veth whose peer's backlog is full) counts as
 * tx_dropped, but the packet socket puts it back in its ring and sends it again: that is
 * backpressure, not loss, so tx_dropped is kept as `refused` (attempts) and loss is what
 * the first hop took and the server's interface never got. UDP to IPERF_PORT, where
 * nothing listens for UDP (the iperf3 server has its TCP listener only; the NAT services
 * DNAT it): the receiving stack drops each frame after the socket lookup (port
 * unreachables are rate-limited). `probe` is read before trafgen starts and after it
 * stops: the forwarders idle outside, and every frame of the run is in both counts.
 */
async function flood(client, server, dst, probe) {
  const p = await floodPath(client, server, dst);
  const cfg = path.join(tmpDir(), `flood-${client}.cfg`);
  fs.writeFileSync(cfg, trafgenConfig(p, IPERF_PORT));
  const before = probe ? await probe.read("before") : null;
  // --no-sock-mem: trafgen would otherwise raise the machine-wide net.core.[rw]mem_*
  // for the run; --notouch-irq: leave IRQ affinities alone. `timeout` is the safety net
  // (a TAP without a reader can make trafgen ignore SIGINT).
  const argv = [
    "timeout",
    "-k",
    "3",
    "-s",
    "INT",
    String(opts.duration + 20),
    "ip",
    "netns",
    "exec",
    client,
    "trafgen",
    "--dev",
    p.dev,
    "--conf",
    cfg,
    "--cpus",
    "1",
    "--no-sock-mem",
    "--notouch-irq",
    "--no-cpu-stats",
  ];
  const tg = startDaemon(argv, `trafgen in ${client}`);
  const exited = new Promise((resolve) => tg.child.on("close", (code, signal) => resolve({ code, signal })));
  let a;
  let b;
  try {
    await waitFor(`trafgen in ${client} to start`, () => tg.output().includes("Running!") || !alive(tg.pid), 10_000, 20);
    if (!tg.output().includes("Running!")) throw new Error(`trafgen did not start: ${tg.output().trim().split("\n").slice(-3).join(" ")}`);
    await sleep(FLOOD_WARMUP_MS);
    a = { c: linkStats(client, p.dev), s: linkStats(server, p.serverDev) };
    await sleep(opts.duration * 1000);
    b = { c: linkStats(client, p.dev), s: linkStats(server, p.serverDev) };
  } finally {
    try {
      process.kill(-tg.pid, "SIGINT");
    } catch {
      // gone
    }
    if ((await Promise.race([exited, sleep(5000).then(() => null)])) === null) stopProc(tg.pid);
  }
  const after = probe ? await probe.read("after") : null;
  const out = tg.output();
  const m = /(\d+) packets outgoing/.exec(out);
  const sent = b.c.txPackets - a.c.txPackets;
  const refused = b.c.txDropped - a.c.txDropped;
  const received = b.s.rxPackets - a.s.rxPackets;
  if (sent <= 0) throw new Error(`trafgen in ${client} sent nothing on ${p.dev}: ${out.trim().split("\n").slice(-3).join(" ")}`);
  const clientS = (b.c.at - a.c.at) / 1000;
  return {
    kpps: received / ((b.s.at - a.s.at) / 1000) / 1000,
    sentKpps: sent / clientS / 1000,
    refusedKps: refused / clientS / 1000,
    // Frames in flight at the window's edges can make it a hair negative: 0.
    lossPercent: Math.max(0, 100 * (1 - received / sent)),
    before,
    after,
    detail: {
      method: `trafgen, ${p.dev} ${p.srcAddr} -> ${p.dstAddr}:${IPERF_PORT} via ${p.dstMac}, counted at ${server}/${p.serverDev}`,
      windowS: (b.s.at - a.s.at) / 1000,
      sent,
      refused,
      received,
      serverRxDropped: b.s.rxDropped - a.s.rxDropped,
      // Frames trafgen put in its ring over the whole run (warm-up and stop included).
      trafgenSent: m ? Number(m[1]) : null,
    },
  };
}

/** The per-repetition numbers kept as samples, and their medians on the result. */
const SAMPLED = [
  "tcpGbps",
  "tcpRetransmits",
  "kpps",
  "sentKpps",
  "refusedKps",
  "lossPercent",
  "rttP50Us",
  "rttP99Us",
  "rttMeanUs",
  "rttLost",
  "cpuSPerMFrames",
  "cpuS",
  "framesSent",
];

/**
 * The measurements between `client` and `dst` (the iperf3 server runs in `server`),
 * opts.repeat times on the same path: RTT (1000 pings), TCP, a flood of 64-byte frames
 * (flood()). `rtt` overrides how the RTT is measured (nat). `probe` (processes that
 * forward: tapnet's nodes, the C relay) is read around each flood — { read(): {cpuS,
 * frames, …} } — and for the peak RSS at the end — { peakRss(): {kib, perProcess} }.
 */
async function measure({ client, server, dst, rtt, probe }) {
  const samples = Object.fromEntries(SAMPLED.map((k) => [k, []]));
  const detail = [];
  let method = null;
  const srv = startIperfServer(server);
  try {
    await waitListening(server, IPERF_PORT);
    for (let k = 0; k < opts.repeat; k++) {
      if (k > 0) await sleep(500);
      // RTT first, while the path is idle.
      const rt = rtt ? await rtt() : await pingRtt(client, dst);
      method = rt.method;
      // The forwarding processes' CPU over the TCP run, per GB received (tapnet: its nodes).
      const tcpCpu0 = probe ? await probe.read("before") : null;
      const tcp = await iperf(client, dst, []);
      const tcpCpu1 = probe ? await probe.read("after") : null;
      await sleep(300);
      const fl = await flood(client, server, dst, probe);
      const one = {
        tcpGbps: tcp.end.sum_received.bits_per_second / 1e9,
        tcpRetransmits: tcp.end.sum_sent.retransmits ?? null,
        kpps: fl.kpps,
        sentKpps: fl.sentKpps,
        refusedKps: fl.refusedKps,
        lossPercent: fl.lossPercent,
        rttP50Us: rt.p50Us,
        rttP99Us: rt.p99Us,
        rttMeanUs: rt.meanUs,
        rttLost: rt.lost,
        cpuS: null,
        framesSent: null,
        cpuSPerMFrames: null,
      };
      const { before, after } = fl;
      if (before && after) {
        one.cpuS = after.cpuS - before.cpuS;
        one.framesSent = after.frames - before.frames;
        one.cpuSPerMFrames = one.framesSent > 0 ? one.cpuS / (one.framesSent / 1e6) : null;
      }
      for (const key of SAMPLED) samples[key].push(one[key]);
      const tcpBytes = tcp.end.sum_received.bytes;
      const tcpCpuSPerGB = tcpCpu0 && tcpCpu1 && tcpBytes > 0 ? (tcpCpu1.cpuS - tcpCpu0.cpuS) / (tcpBytes / 1e9) : null;
      detail.push({ rtt: rt, flood: fl.detail, probe: before && after ? { before, after } : undefined, tcpCpuSPerGB });
      if (opts.repeat > 1) {
        say(
          `  run ${k + 1}/${opts.repeat}: TCP ${f1(one.tcpGbps)} Gbit/s, 64B ${f1(one.kpps, 1)} kpps, RTT p50 ${f1(one.rttP50Us, 0)} p99 ${f1(one.rttP99Us, 0)} µs${one.cpuSPerMFrames !== null ? `, CPU ${f1(one.cpuSPerMFrames)} s/Mframe` : ""}`,
        );
      }
    }
  } finally {
    stopProc(srv.pid);
  }
  const med = Object.fromEntries(SAMPLED.map((k) => [k, median(samples[k])]));
  const peak = probe ? probe.peakRss() : null;
  return {
    ...med,
    // The previous name of the RTT metric (JSON readers of earlier runs): the median p50.
    rttUs: med.rttP50Us,
    rttMethod: method,
    peakRssMiB: peak ? peak.kib / 1024 : null,
    peakRss: peak ?? undefined,
    repeat: opts.repeat,
    samples,
    runs: detail,
  };
}

// ---------------------------------------------------------------- CPU and memory of forwarding processes

/** utime+stime of a process (all its threads), in seconds; null if it is gone. */
function cpuSeconds(pid) {
  let st;
  try {
    st = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // Fields after "(comm)": state is field 3; utime and stime are fields 14 and 15.
  const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}
const CLK_TCK = (() => {
  const r = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" });
  const n = Number((r.stdout ?? "").trim());
  return n > 0 ? n : 100;
})();

/** VmHWM (peak resident set) of a process in KiB; null if it is gone. */
function peakRssKiB(pid) {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** VmRSS (resident set now) of a process in KiB; null if it is gone. */
function rssKiB(pid) {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** PIDs of a lab's tapnet node processes, from /run/tapnet/LAB/state.json (kernel nodes have none). */
function labNodePids(lab) {
  const file = `/run/tapnet/${lab}/state.json`;
  const st = JSON.parse(fs.readFileSync(file, "utf8"));
  const out = {};
  for (const [node, n] of Object.entries(st.nodes ?? {})) {
    if (typeof n.pid !== "number") continue;
    let comm = "";
    try {
      comm = fs.readFileSync(`/proc/${n.pid}/comm`, "utf8").trim();
    } catch {
      throw new Error(`${file}: node ${node}'s process ${n.pid} is not running`);
    }
    if (comm !== "node") throw new Error(`${file}: node ${node}'s pid ${n.pid} is '${comm}', not a node process`);
    out[node] = n.pid;
  }
  return out;
}

/**
 * Frames the lab's nodes sent out of their device ports (TAPs, tunnel underlays: the sum
 * of their txFrames, every node) and received on them. Internal ports (a router's
 * interface on the switch) are left out: a frame crosses them inside the process.
 */
/** A row that claims io_uring must measure it: every TAP port of the lab reports io "uring" (no fallback). */
async function expectTapIo(lab, io) {
  const r = await runAsync([process.execPath, CLI, "show", "ports", "--lab", lab, "--json"], 30);
  const j = JSON.parse(r.stdout);
  const wrong = Object.entries(j).flatMap(([node, ports]) => ports.filter((p) => p.kind === "tap" && p.io !== io).map((p) => `${node}/${p.name}: ${p.io}`));
  if (wrong.length) throw new Error(`expected TAP io ${io}, the node's log says why not: ${wrong.join(", ")}`);
}

async function labFrames(lab) {
  const r = await runAsync([process.execPath, CLI, "show", "ports", "--lab", lab, "--json"], 30);
  let j;
  try {
    j = JSON.parse(r.stdout);
  } catch {
    throw new Error(`tapnet show ports --lab ${lab} --json: ${(r.stderr || r.stdout).trim().slice(0, 300)}`);
  }
  let tx = 0;
  let rx = 0;
  for (const ports of Object.values(j)) {
    for (const p of ports) {
      if (p.kind === "internal") continue;
      tx += p.txFrames;
      rx += p.rxFrames;
    }
  }
  return { tx, rx };
}

/** CPU of the node processes and the frames they sent: the probe `measure` reads. */
function labProbe(lab) {
  const pids = labNodePids(lab);
  if (Object.keys(pids).length === 0) return null;
  const cpu = () => {
    let t = 0;
    for (const [node, pid] of Object.entries(pids)) {
      const c = cpuSeconds(pid);
      if (c === null) throw new Error(`lab ${lab}: node ${node} (pid ${pid}) is gone`);
      t += c;
    }
    return t;
  };
  return {
    pids,
    // The control request of `show ports` costs the node a little CPU: read the counters
    // outside the CPU interval (first before, last after).
    read: async (when) => {
      if (when === "before") {
        const f = await labFrames(lab);
        return { cpuS: cpu(), frames: f.tx, framesReceived: f.rx };
      }
      const cpuS = cpu();
      const f = await labFrames(lab);
      return { cpuS, frames: f.tx, framesReceived: f.rx };
    },
    peakRss: () => {
      const perProcess = {};
      for (const [node, pid] of Object.entries(pids)) perProcess[node] = peakRssKiB(pid);
      const v = Object.values(perProcess).filter((x) => x !== null);
      return { kib: v.length ? Math.max(...v) : null, perProcess, what: "VmHWM KiB; kib = the largest node process" };
    },
  };
}

/** Kernel counters of a TAP the hosts see as eth0: rx = frames its owner (the relay) wrote. */
function linkPackets(ns, ifname) {
  const j = JSON.parse(sh(["ip", "-n", ns, "-s", "-j", "link", "show", ifname]));
  return { rx: j[0].stats64.rx.packets, tx: j[0].stats64.tx.packets };
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
      const probe = labProbe(labName(file));
      return await measure({ client: ns(client), server: ns(server), dst, rtt: rtt && (() => rtt(ns)), probe });
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
  sh(["gcc", "-O2", "-Wall", "-pthread", "-o", out, path.join(ROOT, "scripts/relay.c"), path.join(ROOT, "native/uring.c"), "-luring"]);
  relayBin = out;
  return out;
}

/**
 * Two hosts joined by scripts/relay.c: the relay runs in its own namespace, like a node.
 * threads: one thread per direction (-t), the multi-core experiment; uring: io_uring (-u),
 * the same I/O code as tapnet's TAP ports with io "uring" (native/uring.c).
 */
function relayImpl(vnet = false, threads = false, uring = false) {
  const tag = (vnet ? "vrelay" : "relay") + (threads ? "2" : "") + (uring ? "u" : "");
  const extra = [...(vnet ? ["vnet"] : []), ...(threads ? ["2 threads"] : []), ...(uring ? ["io_uring"] : [])];
  const label = `C relay${extra.length ? ` (${extra.join(", ")})` : ""}`;
  const N = `${NS_PREFIX}${tag}-node`;
  const H1 = `${NS_PREFIX}${tag}-h1`;
  const H2 = `${NS_PREFIX}${tag}-h2`;
  return customImpl([N, H1, H2], async () => {
    const bin = buildRelay();
    const relay = startDaemon(
      ["ip", "netns", "exec", N, bin, ...(vnet ? ["-v"] : []), ...(threads ? ["-t"] : []), ...(uring ? ["-u"] : []), "h1", "h2"],
      label,
    );
    try {
      await waitFor("the relay's TAPs", () => relay.output().includes("ready") || !alive(relay.pid), 5000, 20);
      if (!relay.output().includes("ready")) throw new Error(`relay did not start: ${relay.output().trim()}`);
      // The relay keeps the file descriptors; the TAPs become the hosts' eth0.
      for (const [h, ns, ip] of [
        ["h1", H1, "10.0.0.1/24"],
        ["h2", H2, "10.0.0.2/24"],
      ]) {
        ipn(N, [`link set ${h} netns ${ns}`]);
        ipn(ns, [`link set ${h} name eth0`]);
        hostAddr(ns, "eth0", ip);
      }
      await waitReachable(H1, "10.0.0.2");
      // `ip netns exec` execs the relay: the PID we started is the relay's own.
      const comm = fs.readFileSync(`/proc/${relay.pid}/comm`, "utf8").trim();
      if (comm !== "relay") throw new Error(`the relay's pid ${relay.pid} is '${comm}'`);
      const frames = () => linkPackets(H1, "eth0").rx + linkPackets(H2, "eth0").rx;
      const probe = {
        read: async () => {
          const cpuS = cpuSeconds(relay.pid);
          if (cpuS === null) throw new Error("the relay is gone");
          return { cpuS, frames: frames() };
        },
        peakRss: () => ({ kib: peakRssKiB(relay.pid), what: "VmHWM KiB of the relay" }),
      };
      return await measure({ client: H1, server: H2, dst: "10.0.0.2", probe });
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
    sh(
      ["ip", "netns", "exec", N, "nft", "-f", "-"],
      `
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
`,
    );
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
      alsoVs: {
        tapnet: ["C relay", "C relay (vnet)", ...Object.keys(OVS_ROWS)],
        "C relay (vnet, 2 threads)": ["C relay (vnet)"],
        "tapnet (no offloads)": ["C relay"],
        // io_uring rows: against the read/write row of the same kind and the relay of the same method.
        "C relay (io_uring)": ["C relay"],
        "C relay (vnet, io_uring)": ["C relay (vnet)"],
        "tapnet (io_uring)": ["tapnet", "C relay (vnet, io_uring)"],
        "tapnet (no offloads, io_uring)": ["tapnet (no offloads)", "C relay (io_uring)"],
        "tapnet (busy-poll 50 µs)": ["tapnet"],
        "tapnet (busy-poll 2.5 ms)": ["tapnet"],
        // veth hosts through AF_XDP sockets: against the TAP path and OVS's AF_XDP ports.
        "tapnet (veth-xdp hosts)": ["tapnet", "C relay", ...Object.keys(OVS_ROWS)],
        "tapnet (veth-xdp hosts, busy-poll 50 µs)": ["tapnet (veth-xdp hosts)", "OVS netdev (AF_XDP)"],
        "tapnet (veth-xdp hosts, busy-poll 2.5 ms)": ["tapnet (veth-xdp hosts)", "OVS netdev (AF_XDP)"],
      },
      impls: [
        { name: "kernel bridge", run: labImpl(path.join(BENCH_LABS, "switch-kernel.yaml"), { client: "h1", server: "h2", dst: "10.0.0.2" }) },
        { name: "C relay", run: relayImpl() },
        // The relay with virtio-net headers and TSO: the ceiling for tapnet's TAPs with offloads.
        { name: "C relay (vnet)", run: relayImpl(true) },
        // The same with one thread per direction: does a second core pay on this machine?
        { name: "C relay (vnet, 2 threads)", run: relayImpl(true, true) },
        { name: "tapnet", run: labImpl(await labVariant(lab("switch.yaml"), "bench-switch"), { client: "h1", server: "h2", dst: "10.0.0.2" }) },
        // Plain TAPs (offload: false), the plain C relay's like: what the virtio-net header costs per frame.
        {
          name: "tapnet (no offloads)",
          run: labImpl(await labVariant(lab("switch.yaml"), "bench-switch-plain", (doc) => doc.setIn(["nodes", "sw1", "offload"], false)), {
            client: "h1",
            server: "h2",
            dst: "10.0.0.2",
          }),
        },
        // The same two with io: uring (native/uring.c), and the C relays with the same I/O:
        // only with --uring or when --impls names them (they add a minute to the scenario).
        { name: "C relay (io_uring)", optIn: true, run: relayImpl(false, false, true) },
        { name: "C relay (vnet, io_uring)", optIn: true, run: relayImpl(true, false, true) },
        {
          name: "tapnet (io_uring)",
          optIn: true,
          run: labImpl(await labVariant(lab("switch.yaml"), "bench-switch-uring", (doc) => doc.setIn(["nodes", "sw1", "io"], "uring")), {
            client: "h1",
            server: "h2",
            dst: "10.0.0.2",
            prepare: () => expectTapIo("bench-switch-uring", "uring"),
          }),
        },
        {
          name: "tapnet (no offloads, io_uring)",
          optIn: true,
          run: labImpl(
            await labVariant(lab("switch.yaml"), "bench-switch-plain-uring", (doc) => {
              doc.setIn(["nodes", "sw1", "offload"], false);
              doc.setIn(["nodes", "sw1", "io"], "uring");
            }),
            { client: "h1", server: "h2", dst: "10.0.0.2", prepare: () => expectTapIo("bench-switch-plain-uring", "uring") },
          ),
        },
        // Open vSwitch's userspace datapath (scripts/bench/ovs.mjs): only with --ovs or when
        // --impls names them.
        ...Object.keys(OVS_ROWS).map((name) => ({
          name,
          optIn: "ovs",
          run: ovsImpl({ ...controlHelpers(), alive, measure, cpuSeconds, peakRssKiB, linkPackets }, name),
        })),
        // The hosts on veths whose node ends are AF_XDP sockets (link: veth-xdp,
        // src/io/xdp-port.ts), without and with busy polling: with --ovs (the veth rows) or
        // when --impls names them.
        ...[
          ["", 0],
          [", busy-poll 50 µs", 50],
          [", busy-poll 2.5 ms", 2500],
        ].map(([label, us]) => ({
          name: `tapnet (veth-xdp hosts${label})`,
          optIn: "ovs",
          run: async () =>
            labImpl(
              await labVariant(lab("switch.yaml"), `bench-switch-xdp${us}`, (doc) => {
                for (const h of ["h1", "h2", "h3"]) doc.setIn(["hosts", h, "link"], "veth-xdp");
                if (us > 0) doc.setIn(["nodes", "sw1", "busyPoll"], us);
              }),
              { client: "h1", server: "h2", dst: "10.0.0.2" },
            )(),
        })),
        // The node's busyPoll setting (native/busypoll.c): a window shorter than ping's
        // 2 ms interval, and one longer (the node never sleeps while pinged). Only when
        // --impls names them.
        ...[
          ["50 µs", 50],
          ["2.5 ms", 2500],
        ].map(([label, us]) => ({
          name: `tapnet (busy-poll ${label})`,
          optIn: "impls",
          run: async () =>
            labImpl(await labVariant(lab("switch.yaml"), `bench-switch-bp${us}`, (doc) => doc.setIn(["nodes", "sw1", "busyPoll"], us)), {
              client: "h1",
              server: "h2",
              dst: "10.0.0.2",
            })(),
        })),
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
      impls: [
        kernelVxlan,
        { name: "tapnet", run: labImpl(await labVariant(lab("flannel-vxlan.yaml"), "bench-vxlan"), { client: "pod1a", server: "pod2a", dst: "10.244.2.2" }) },
      ],
    }),
    ipip: async (done) => {
      const tapnet = {
        name: "tapnet",
        run: labImpl(await labVariant(lab("calico-ipip.yaml"), "bench-ipip"), { client: "pod1a", server: "pod2a", dst: "10.244.2.2" }),
      };
      const has = kernelHasIpip();
      const why = has
        ? "this kernel has IPIP, but the bench has no kernel IPIP reference yet"
        : "this kernel has no ipip module (ip link add type ipip: unknown device type)";
      const fromVxlan = done.vxlan?.results.find((r) => r.implementation === "kernel vxlan" && !r.error);
      return {
        ref: "kernel vxlan (stand-in)",
        notes: [
          `kernel ipip: n/a, ${why}; ratios are against the kernel VXLAN reference${fromVxlan ? " measured in this run's vxlan scenario" : ", measured here"}`,
        ],
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

/**
 * The metrics a ratio is taken of (medians), with the direction that is better.
 * Peak RSS has no ratio: the only reference that has one, the C relay, holds no tables.
 */
const METRICS = [
  { key: "tcpGbps", ratio: "tcp", label: "TCP Gbit/s", unit: "Gbit/s", better: "higher" },
  { key: "kpps", ratio: "kpps", label: "64B kpps", unit: "kpps", better: "higher" },
  { key: "rttP50Us", ratio: "rttP50", label: "RTT p50 µs", unit: "µs", better: "lower" },
  { key: "rttP99Us", ratio: "rttP99", label: "RTT p99 µs", unit: "µs", better: "lower" },
  { key: "cpuSPerMFrames", ratio: "cpu", label: "CPU s/Mframe", unit: "CPU s per million frames", better: "lower" },
];

function ratios(r, ref) {
  if (!ref || ref.error || ref.na || r.error || r.na) return null;
  const q = {};
  for (const m of METRICS) q[m.ratio] = ratioOf(r[m.key], ref[m.key]);
  q.rtt = q.rttP50; // the previous name (p50 now; it was the mean of 20 pings)
  return q;
}

/** Per scenario and metric: tapnet against each reference it is held against. */
function metricRecords(s) {
  const out = [];
  const tapnet = s.results.find((r) => r.implementation === "tapnet" && !r.na && !r.error);
  if (!tapnet) return out;
  for (const refName of Object.keys(tapnet.ratios ?? {})) {
    const ref = s.results.find((r) => r.implementation === refName);
    for (const m of METRICS) {
      const q = tapnet.ratios[refName][m.ratio];
      if (q === null || q === undefined) continue;
      out.push({
        scenario: s.name,
        metric: m.key,
        label: m.label,
        unit: m.unit,
        better: m.better,
        implementation: "tapnet",
        referenceName: refName,
        tapnet: tapnet[m.key],
        reference: ref[m.key],
        ratio: q,
        samples: { tapnet: tapnet.samples?.[m.key] ?? [], reference: ref.samples?.[m.key] ?? [] },
      });
    }
  }
  return out;
}

// ---------------------------------------------------------------- output

const f1 = (x, d = 2) => (x === null || x === undefined || !Number.isFinite(x) ? "-" : x.toFixed(d));
const fr = (x) => (x === null || x === undefined ? "-" : x.toFixed(2));
const fq = (q) => `${fr(q.tcp)} / ${fr(q.kpps)} / ${fr(q.rttP50)} / ${fr(q.rttP99)} / ${fr(q.cpu)}`;

/**
 * The first hop refused (almost) nothing and (almost) nothing was lost: trafgen, not the
 * path, set the rate; the path's capacity is at least this.
 */
const senderBound = (r) =>
  r.lossPercent !== null && r.lossPercent !== undefined && r.lossPercent < 1 && typeof r.refusedKps === "number" && r.refusedKps < 0.01 * r.sentKpps;

const HEAD = [
  "scenario",
  "implementation",
  "TCP Gbit/s",
  "64B kpps (loss)",
  "RTT p50 µs",
  "RTT p99 µs",
  "CPU s/Mframe",
  "peak RSS MiB",
  "ratio TCP / kpps / p50 / p99 / CPU",
];
/** Columns aligned right (numbers). */
const NUMERIC = (i) => i >= 2 && i <= 7;

function rows(report) {
  const out = [];
  const blank = (s, impl, last) => [s, impl, ...Array(HEAD.length - 3).fill(""), last];
  for (const s of report.scenarios) {
    if (s.skip) {
      out.push(blank(s.name, "(skipped)", s.skip));
      continue;
    }
    for (const r of s.results) {
      if (r.na || r.error) {
        out.push([s.name, r.implementation, ...Array(HEAD.length - 3).fill("-"), r.na ? `n/a: ${r.na}` : `failed: ${r.error.split("\n")[0].slice(0, 160)}`]);
        continue;
      }
      let ratio;
      if (r.implementation === s.reference) ratio = "reference";
      else if (r.ratios?.[s.reference]) ratio = `${fq(r.ratios[s.reference])} vs ${s.reference}`;
      else ratio = "-";
      out.push([
        s.name,
        r.implementation + (r.reused ? " = vxlan's" : ""),
        f1(r.tcpGbps),
        `${f1(r.kpps, 1)}${senderBound(r) ? "*" : ""} (${f1(r.lossPercent, 1)}% lost)`,
        f1(r.rttP50Us, 0),
        f1(r.rttP99Us, 0),
        f1(r.cpuSPerMFrames, 2),
        f1(r.peakRssMiB, 1),
        ratio,
      ]);
      for (const [other, q] of Object.entries(r.ratios ?? {})) {
        if (other === s.reference) continue;
        out.push(blank(s.name, `${r.implementation} ÷ ${other}`, `${fq(q)} vs ${other}`));
      }
    }
  }
  return out;
}

const THEAD = [
  "structure",
  "implementation",
  "build s",
  "lookups M/s",
  "direct M/s",
  "heap B/entry",
  "RSS B/entry",
  "ratio build / lookups / direct / heap / RSS",
];
const TNUMERIC = (i) => i >= 2 && i <= 6;

function tableRows(t) {
  return t.rows.map((r) => [
    r.structure,
    r.implementation,
    f1(r.buildS, 3),
    f1(r.lookupMps, 2),
    f1(r.directLookupMps ?? null, 2),
    f1(r.heapBytesPerEntry, 0),
    f1(r.rssBytesPerEntry, 0),
    r.ratios
      ? `${fr(r.ratios.build)} / ${fr(r.ratios.lookup)} / ${fr(r.ratios.direct ?? null)} / ${fr(r.ratios.heap)} / ${fr(r.ratios.rss)} vs ${r.ratios.against}`
      : "reference",
  ]);
}

function textTable(head, body, numeric) {
  const all = [head, ...body];
  const w = head.map((_, i) => Math.max(...all.map((r) => String(r[i]).length)));
  const line = (r) =>
    r
      .map((c, i) => (numeric(i) ? String(c).padStart(w[i]) : String(c).padEnd(w[i])))
      .join("  ")
      .trimEnd();
  return `${[line(all[0]), w.map((n) => "-".repeat(n)).join("  "), ...all.slice(1).map(line)].join("\n")}\n`;
}

function markdownTable(head, body, numeric) {
  const esc = (c) => String(c).replace(/\|/g, "\\|");
  const lines = [
    `| ${head.join(" | ")} |`,
    `|${head.map((_, i) => (numeric(i) ? "---:" : "---")).join("|")}|`,
    ...body.map((r) => `| ${r.map(esc).join(" | ")} |`),
  ];
  return `${lines.join("\n")}\n`;
}

const CHEAD = ["control", "tapnet", "reference", "reference value", "ratio"];
const CNUMERIC = (i) => i === 1 || i === 3 || i === 4;

/** A control figure in its unit's precision. */
function controlValue(x, unit) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "-";
  if (unit === "kpps") return x.toFixed(1);
  if (unit === "Gbit/s") return x.toFixed(2);
  if (unit === "ms" && x < 100) return x.toFixed(1);
  return Math.round(x).toLocaleString("en");
}

/** One row per metric record: label, tapnet's value, the reference, its value, the ratio. */
const metricRows = (metrics) => metrics.map((m) => [m.label, controlValue(m.tapnet, m.unit), m.referenceName, controlValue(m.reference, m.unit), fr(m.ratio)]);

function controlRows(ctl) {
  const out = metricRows(ctl.metrics);
  const bad = ctl.checkFailures.length;
  out.push([
    "route table after each burst",
    bad ? `WRONG ${bad} of ${ctl.checks.length}` : `correct, ${ctl.checks.length} of ${ctl.checks.length}`,
    "show route --json",
    "",
    bad ? "FAILED" : "",
  ]);
  return out;
}

const BHEAD = ["bgp", "tapnet", "reference", "reference value", "ratio"];

function bgpRows(b) {
  const v = (x, unit) =>
    x === null || x === undefined || !Number.isFinite(x)
      ? "-"
      : unit === "s"
        ? `${x.toFixed(2)} s`
        : unit === "MiB"
          ? `${x.toFixed(0)} MiB`
          : unit === "B"
            ? `${x.toFixed(0)} B`
            : `${x.toFixed(1)} ${unit}`;
  const out = b.metrics.map((m) => [m.label, v(m.tapnet, m.unit), m.referenceName, v(m.reference, m.unit), fr(m.ratio)]);
  const bad = b.checkFailures.length;
  out.push([
    "FIBs with the load in",
    bad ? `WRONG ${bad} of ${b.checks.length}` : `correct, ${b.checks.length} of ${b.checks.length}`,
    "show route --json, /proc/net/route",
    "",
    bad ? "FAILED" : "",
  ]);
  return out;
}

const EHEAD = ["etcd (flannel agents)", "tapnet", "reference", "reference value", "ratio"];

function etcdRows(e) {
  const v = (x) => (x === null || x === undefined || !Number.isFinite(x) ? "-" : x.toFixed(1));
  return e.metrics.map((m) => [m.label, v(m.tapnet), m.referenceName, v(m.reference), fr(m.ratio)]);
}

/** The tables of a report, as text or markdown. */
const TRHEAD = ["trace", "variant", "64B kpps", "CPU s/Mframe", "kpps / off", "CPU / off", "kpps / before", "CPU / before"];
const TRNUMERIC = (i) => i >= 2;
/** A paired ratio: its median over the rounds, with the quartiles. */
const pairedText = (q) => (q ? `${q.median.toFixed(3)} (${q.p25.toFixed(2)}-${q.p75.toFixed(2)})` : "-");
function traceRows(t) {
  const out = [];
  for (const s of t.scenarios) {
    for (const [v, m] of Object.entries(s.medians)) {
      const q = s.ratios[v];
      const self = (x) => (x === v ? "1" : null);
      out.push([
        s.name,
        v,
        fmtNum(m.kpps),
        fmtNum(m.cpuSPerMFrames),
        self("off") ?? pairedText(q.vsOff.kpps),
        self("off") ?? pairedText(q.vsOff.cpu),
        self("before") ?? pairedText(q.vsBefore.kpps),
        self("before") ?? pairedText(q.vsBefore.cpu),
      ]);
    }
  }
  return out;
}

function tables(report, md) {
  const fmt = md ? markdownTable : textTable;
  const parts = [];
  if (report.scenarios.length) parts.push(fmt(HEAD, rows(report), NUMERIC));
  if (report.control) parts.push(fmt(CHEAD, controlRows(report.control), CNUMERIC));
  if (report.controlError) parts.push(`control: failed: ${report.controlError}\n`);
  if (report.cni) parts.push(fmt(["cni", "tapnet", "reference", "reference value", "ratio"], metricRows(report.cni.metrics), CNUMERIC));
  if (report.cniError) parts.push(`cni: failed: ${report.cniError}\n`);
  if (report.bgp) parts.push(fmt(BHEAD, bgpRows(report.bgp), CNUMERIC));
  if (report.bgpError) parts.push(`bgp: failed: ${report.bgpError}\n`);
  if (report.etcd) parts.push(fmt(EHEAD, etcdRows(report.etcd), CNUMERIC));
  if (report.etcdError) parts.push(`etcd: failed: ${report.etcdError}\n`);
  if (report.trace) parts.push(fmt(TRHEAD, traceRows(report.trace), TRNUMERIC));
  if (report.traceError) parts.push(`trace: failed: ${report.traceError}\n`);
  if (report.lab) parts.push(fmt(["lab", "tapnet", "reference", "reference value", "ratio"], metricRows(report.lab.metrics), CNUMERIC));
  if (report.labError) parts.push(`lab: failed: ${report.labError}\n`);
  if (report.mesh) parts.push(fmt(["mesh", "tapnet", "reference", "reference value", "ratio"], etcdRows(report.mesh), CNUMERIC));
  if (report.meshError) parts.push(`mesh: failed: ${report.meshError}\n`);
  if (report.tables) parts.push(fmt(THEAD, tableRows(report.tables), TNUMERIC));
  if (report.rfc2544) parts.push(rfc2544Tables(report.rfc2544, fmt));
  if (report.rfc2544Error) parts.push(`rfc2544: failed: ${report.rfc2544Error}\n`);
  if (report.rfc2889) parts.push(rfc2889Table(report.rfc2889, fmt));
  if (report.rfc2889Error) parts.push(`rfc2889: failed: ${report.rfc2889Error}\n`);
  if (report.tablesError) parts.push(`tables: failed: ${report.tablesError}\n`);
  return parts.join("\n");
}

function footer(report) {
  const results = report.scenarios.flatMap((s) => s.results ?? []).filter((r) => !r.na && !r.error);
  const methods = [...new Set(results.map((r) => r.rttMethod).filter(Boolean))];
  const lines = [];
  if (report.scenarios.length) {
    lines.push(
      `${report.repeat > 1 ? `medians of ${report.repeat} runs per implementation (one lab each, the runs inside it; every sample in the JSON)` : "one run per implementation (--repeat 3 for medians of three)"}; ratios: tapnet (or the row) / reference, measured in this run; above 1 is better for TCP and kpps, worse for RTT and CPU.`,
      `TCP: iperf3 -t ${report.durationS} -J, one stream; 64B: trafgen floods 64-byte UDP frames (8 source ports) from the client's namespace for ${report.durationS} s after a 0.5 s warm-up, kpps = the server interface's rx_packets / s, loss = the client interface's tx_packets not received (frames its full queue refused are sent again: backpressure, not loss); kernel paths run in softirq on the sender's core; RTT: p50 and p99 (nearest rank) of per-reply times, ${methods.join("; ") || `ping -c ${report.pings}`}.`,
      `CPU s/Mframe: utime+stime of the forwarding process(es) over the 64B flood / million frames they sent in it (tapnet: node PIDs from /run/tapnet/LAB/state.json, frames = txFrames of every device port (not internal ones) of every node, so a frame crossing two nodes counts twice; C relay: its PID, frames = its TAPs' kernel rx counters); it includes the kernel's work in the process's context (read()/write(), and a TAP write runs the receiving host's stack); kernel paths: not a process. peak RSS: VmHWM of the largest node process (of the relay) at the end of the scenario.`,
    );
    if (results.some(senderBound)) {
      lines.push(
        "* under 1% lost and nothing refused at the first hop: trafgen, not the path, set the rate, so the path's capacity is at least this (and a kpps ratio against it is an upper bound); on a kernel path that is one core doing both the sending and the forwarding.",
      );
    }
  }
  lines.push(
    `machine: ${report.host.cpus} CPUs, Linux ${report.host.kernel}, Node ${report.host.node}; load average ${report.loadavg.start.map((x) => x.toFixed(2)).join(" ")} at start, ${report.loadavg.end.map((x) => x.toFixed(2)).join(" ")} at end.`,
  );
  for (const s of report.scenarios) for (const n of s.notes ?? []) lines.push(`${s.name}: ${n}`);
  if (report.control) {
    const c = report.control;
    lines.push(
      `control: ${c.repeat > 1 ? `medians of ${c.repeat} repetitions in one lab (host add: of ${c.hostAdds * c.repeat} joins)` : `one repetition (host add: median of ${c.hostAdds} joins; --repeat 3 for medians of three)`}; ratios tapnet / reference: above 1 is better for rates, worse for RTT and times.`,
    );
    for (const n of c.notes) lines.push(`control: ${n}`);
  }
  if (report.cni) {
    for (const n of report.cni.notes) lines.push(`cni: ${n}`);
  }
  if (report.bgp) {
    lines.push("bgp: ratios tapnet / reference: above 1 is worse for times and RSS, better for kpps.");
    for (const n of report.bgp.notes) lines.push(`bgp: ${n}`);
  }
  if (report.etcd) {
    lines.push(`etcd: ratios tapnet / reference: above 1 is slower or costlier than the reference.`);
    for (const n of report.etcd.notes) lines.push(`etcd: ${n}`);
  }
  for (const name of [RFC2544, RFC2889]) for (const n of report[name]?.notes ?? []) lines.push(`${name}: ${n}`);
  if (report.lab) {
    lines.push("lab: ratios tapnet / reference: above 1 is slower.");
    for (const n of report.lab.notes) lines.push(`lab: ${n}`);
  }
  if (report.mesh) {
    lines.push("mesh: ratios tapnet / reference: above 1 is better for TCP, worse for RTT, messages and CPU.");
    for (const n of report.mesh.notes) lines.push(`mesh: ${n}`);
  }
  if (report.tables) {
    lines.push(
      `tables: ${report.tables.repeat > 1 ? `medians of ${report.tables.repeat} runs, each in a fresh process` : "one run (--repeat 3 for medians of three)"}; ratios tapnet / reference: above 1 is better for lookups, worse for build time and bytes.`,
    );
    for (const n of report.tables.notes) lines.push(`tables: ${n}`);
  }
  return `${lines.join("\n")}\n`;
}

function svgChart(report) {
  const recs = [
    ...report.scenarios.flatMap((s) => s.metrics ?? []),
    ...(report.control?.metrics ?? []),
    ...(report.cni?.metrics ?? []),
    ...(report.bgp?.metrics ?? []),
    ...(report.etcd?.metrics ?? []),
    ...(report.lab?.metrics ?? []),
    ...(report.mesh?.metrics ?? []),
    ...(report.tables?.metrics ?? []),
  ];
  return ratioChart(
    recs.map((m) => ({
      group: m.scenario === "tables" ? `tables (${m.structure.toUpperCase()}, ${report.tables.size.toLocaleString("en")} entries)` : m.scenario,
      metric: m.label,
      against: m.referenceName,
      ratio: m.ratio,
      better: m.better,
      detail: `tapnet ${fmtNum(m.tapnet)}, ${m.referenceName} ${fmtNum(m.reference)}${m.unit ? ` ${m.unit}` : ""}; samples ${m.samples.tapnet.length}`,
    })),
    {
      title: "tapnet / reference, per scenario and metric",
      subtitle: `${report.date.slice(0, 16).replace("T", " ")} UTC · ${report.host.cpus} CPUs, Linux ${report.host.kernel}, Node ${report.host.node} · ${report.repeat > 1 ? `medians of ${report.repeat} runs` : "one run"}, all in one bench run`,
      subtitle2: report.command,
    },
  );
}
const fmtNum = (x) => (x === null || x === undefined ? "-" : Math.abs(x) >= 100 ? x.toFixed(0) : x.toPrecision(3));

// ---------------------------------------------------------------- the control scenario

/** What scripts/bench/control.mjs uses of the bench: its lab, process and namespace handling. */
function controlHelpers() {
  return {
    opts,
    say,
    sleep,
    sh,
    ipn,
    addNs,
    delNs,
    veth,
    quietly,
    alive,
    runAsync,
    startDaemon,
    stopProc,
    waitFor,
    waitListening,
    waitReachable,
    floodPath,
    trafgenConfig,
    labVariant,
    labUp,
    labDown,
    tmpDir,
    ROOT,
    CLI,
    LABS,
    IPERF_PORT,
    NS_PREFIX,
    BENCH_LABS,
    buildRelay,
    linkStats,
    hostAddr,
  };
}

// ---------------------------------------------------------------- main

function preflight() {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: build first (npm run build)`);
  // `tables` alone needs neither root nor the network tools.
  if (!NETWORK && !opts.cleanup) return;
  if (process.getuid?.() !== 0) throw new Error("the bench builds network namespaces and TAP devices: run it as root (sudo npm run bench)");
  for (const [cmd, pkg] of [
    ["iperf3", "iperf3"],
    ["ping", "iputils-ping"],
    ["gcc", "gcc"],
    ["timeout", "coreutils"],
    ["python3", "python3"],
    ["ss", "iproute2"],
    ["trafgen", "netsniff-ng"],
  ]) {
    if (spawnSync("sh", ["-c", `command -v ${cmd}`]).status !== 0) throw new Error(`${cmd} is not installed (Debian: ${pkg}; sudo npm run setup)`);
  }
  if (opts.scenarios.includes(BGP) && spawnSync("sh", ["-c", "command -v bird && command -v birdc"]).status !== 0)
    throw new Error("bird and birdc are not installed (Debian: bird2)");
}

/** --cleanup: what a bench killed with -9 may have left: its labs and its own namespaces. */
function cleanupLeftovers() {
  let n = 0;
  const benchLabs = fs.existsSync("/run/tapnet") ? fs.readdirSync("/run/tapnet").filter((l) => l.startsWith("bench-")) : [];
  const labsLeft = new Set([
    ...benchLabs,
    ...netnsList()
      .filter((x) => x.startsWith("tn.bench-"))
      .map((x) => /^tn\.(bench-[a-z0-9]+(?:-k)?)\./.exec(x)?.[1])
      .filter(Boolean),
  ]);
  for (const l of labsLeft) {
    const r = tapnetCli(["lab", "down", l]);
    process.stderr.write(`bench: lab down ${l}: ${r.status === 0 ? "ok" : (r.stderr || "").trim()}\n`);
    n++;
  }
  for (const ns of netnsList().filter((x) => x.startsWith(NS_PREFIX) || x.startsWith("tn.bench-"))) {
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
  // The cni scenario's reference bridge (containernetworking-plugins' bridge makes it where it runs).
  if (spawnSync("ip", ["link", "show", CNI_REF_BRIDGE]).status === 0) {
    sh(["ip", "link", "del", CNI_REF_BRIDGE]);
    process.stderr.write(`bench: removed bridge ${CNI_REF_BRIDGE}\n`);
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
    repeat: opts.repeat,
    pings: opts.pings,
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
  for (const name of opts.scenarios.filter((x) => SCENARIOS.includes(x))) {
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
    if (opts.impls) {
      const known = def.impls.map((i) => i.name);
      const unknown = opts.impls.filter((n) => !known.includes(n));
      if (unknown.length) throw new Error(`--impls: ${name} has no row ${unknown.map((n) => `'${n}'`).join(", ")} (rows: ${known.join(", ")})`);
    }
    // --impls: in the order given, so that repeated runs can alternate A and B.
    for (const impl of opts.impls
      ? opts.impls.map((n) => def.impls.find((i) => i.name === n))
      : def.impls.filter((i) => (opts.uring && i.optIn === true) || (opts.ovs && i.optIn === "ovs") || !i.optIn)) {
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
      say(
        `${name}: ${impl.name}: measuring (${opts.pings} pings + ${opts.duration} s TCP + ${opts.duration} s 64B flood${opts.repeat > 1 ? `, ${opts.repeat} times` : ""})…`,
      );
      const t = Date.now();
      try {
        const m = await impl.run();
        s.results.push({ implementation: impl.name, ...m });
        const extra = m.cpuSPerMFrames !== null ? `, CPU ${f1(m.cpuSPerMFrames)} s/Mframe, peak RSS ${f1(m.peakRssMiB, 1)} MiB` : "";
        say(
          `${name}: ${impl.name}: ${opts.repeat > 1 ? "medians: " : ""}TCP ${f1(m.tcpGbps)} Gbit/s, 64B ${f1(m.kpps, 1)} kpps received of ${f1(m.sentKpps, 1)} sent, RTT p50 ${f1(m.rttP50Us, 0)} p99 ${f1(m.rttP99Us, 0)} µs${extra} (${((Date.now() - t) / 1000).toFixed(0)} s)`,
        );
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        if (e?.na) {
          // A reference this machine cannot run (OVS built without AF_XDP): why, not a failure.
          say(`${name}: ${impl.name}: n/a (${msg})`);
          s.results.push({ implementation: impl.name, na: msg });
        } else if (impl.skipOnLabFailure && /lab up .* failed/.test(msg)) {
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
        const q2 = ratios(
          r,
          s.results.find((x) => x.implementation === other),
        );
        if (q2) r.ratios[other] = q2;
      }
    }
    s.metrics = metricRecords(s);
    done[name] = s;
    report.scenarios.push(s);
  }
  if (opts.scenarios.includes(CONTROL)) {
    const t = Date.now();
    try {
      report.control = await runControl(controlHelpers());
      say(`control: done (${((Date.now() - t) / 1000).toFixed(0)} s)`);
      if (report.control.checkFailures.length) {
        failed++;
        say(`control: FAILED: the route table was wrong: ${report.control.checkFailures.join(" | ")}`);
      }
    } catch (e) {
      failed++;
      report.controlError = e instanceof Error ? e.message : String(e);
      say(`control: FAILED: ${report.controlError}`);
    }
  }
  if (opts.scenarios.includes(CNI)) {
    const t = Date.now();
    try {
      report.cni = await runCni(controlHelpers());
      say(`cni: done (${((Date.now() - t) / 1000).toFixed(0)} s)`);
    } catch (e) {
      failed++;
      report.cniError = e instanceof Error ? e.message : String(e);
      say(`cni: FAILED: ${report.cniError}`);
    }
  }
  if (opts.scenarios.includes(BGP)) {
    const t = Date.now();
    try {
      report.bgp = await runBgp(controlHelpers());
      say(`bgp: done (${((Date.now() - t) / 1000).toFixed(0)} s)`);
      if (report.bgp.checkFailures.length) {
        failed++;
        say(`bgp: FAILED: a FIB was wrong: ${report.bgp.checkFailures.join(" | ")}`);
      }
    } catch (e) {
      failed++;
      report.bgpError = e instanceof Error ? e.message : String(e);
      say(`bgp: FAILED: ${report.bgpError}`);
    }
  }
  if (opts.scenarios.includes(ETCD)) {
    const t = Date.now();
    try {
      report.etcd = await runEtcd({ ...controlHelpers(), cpuSeconds, rssKiB, labNodePids, CLK_TCK });
      say(`etcd: done (${((Date.now() - t) / 1000).toFixed(0)} s)`);
    } catch (e) {
      failed++;
      report.etcdError = e instanceof Error ? e.message : String(e);
      say(`etcd: FAILED: ${report.etcdError}`);
    }
  }
  if (opts.scenarios.includes(TRACE)) {
    const t = Date.now();
    try {
      report.trace = await runTrace({ ...controlHelpers(), flood, labProbe }, opts.before);
      say(`trace: done (${((Date.now() - t) / 1000).toFixed(0)} s)`);
    } catch (e) {
      failed++;
      report.traceError = e instanceof Error ? e.message : String(e);
      say(`trace: FAILED: ${report.traceError}`);
    }
  }
  for (const [name, run] of [
    [RFC2544, runRfc2544],
    [RFC2889, runRfc2889],
  ]) {
    if (!opts.scenarios.includes(name)) continue;
    const t = Date.now();
    try {
      report[name] = await run(controlHelpers());
      const bad = report[name].duts.filter((d) => d.error);
      if (bad.length) failed++;
      say(`${name}: done (${((Date.now() - t) / 1000).toFixed(0)} s)`);
    } catch (e) {
      failed++;
      report[`${name}Error`] = e instanceof Error ? e.message : String(e);
      say(`${name}: FAILED: ${report[`${name}Error`]}`);
    }
  }
  if (opts.scenarios.includes(LAB)) {
    const t = Date.now();
    try {
      report.lab = await runLab(controlHelpers());
      say(`lab: done (${((Date.now() - t) / 1000).toFixed(0)} s)`);
    } catch (e) {
      failed++;
      report.labError = e instanceof Error ? e.message : String(e);
      say(`lab: FAILED: ${report.labError}`);
    }
  }
  if (opts.scenarios.includes(MESH)) {
    const t = Date.now();
    try {
      report.mesh = await runMesh({ ...controlHelpers(), pingRtt, iperf, startIperfServer });
      say(`mesh: done (${((Date.now() - t) / 1000).toFixed(0)} s)`);
    } catch (e) {
      failed++;
      report.meshError = e instanceof Error ? e.message : String(e);
      say(`mesh: FAILED: ${report.meshError}`);
    }
  }
  if (opts.scenarios.includes("tables")) {
    const t = Date.now();
    try {
      report.tables = await runTables({ size: opts.tableSize, repeat: opts.repeat, run: runAsync, say });
      say(`tables: done (${((Date.now() - t) / 1000).toFixed(0)} s)`);
    } catch (e) {
      failed++;
      report.tablesError = e instanceof Error ? e.message : String(e);
      say(`tables: FAILED: ${report.tablesError}`);
    }
  }
  report.loadavg.end = os.loadavg();
  cleanup();
  const left = netnsList().filter((n) => n.startsWith(NS_PREFIX) || n.startsWith("tn.bench-"));
  if (left.length) say(`warning: namespaces still present: ${left.join(" ")}`);
  say(`done in ${((Date.now() - T0) / 1000).toFixed(0)} s`);

  process.stdout.write(`\n${tables(report, opts.markdown && !opts.markdownFile)}\n${footer(report)}`);
  if (opts.markdownFile) {
    fs.writeFileSync(
      opts.markdownFile,
      tables(report, true) +
        "\n" +
        footer(report)
          .split("\n")
          .filter(Boolean)
          .map((l) => `${l}  `)
          .join("\n") +
        "\n",
    );
    say(`markdown written to ${opts.markdownFile}`);
  }
  if (opts.svg) {
    fs.writeFileSync(opts.svg, svgChart(report));
    say(`SVG chart written to ${opts.svg}`);
  }
  if (opts.rfcSvg && report.rfc2544) {
    const r = report.rfc2544;
    const load = `load average ${report.loadavg.start[0].toFixed(2)} at start`;
    fs.writeFileSync(
      opts.rfcSvg,
      lineChart(rfc2544Series(r), {
        title: "RFC 2544 throughput: highest rate with zero frame loss, by frame size",
        subtitle: `${r.trialS} s trials${r.trialS < 60 ? " (RFC: 60 s)" : ""}, binary search on trafgen's rate to ${(r.resolution * 100).toFixed(0)}% of the unthrottled rate; ${report.host.cpus} CPUs, ${load}`,
        subtitle2: report.command,
        xLabel: "frame size, bytes (with FCS)",
        yLabel: "frames/s with zero loss (log)",
        yFormat: (v) => (v >= 1e6 ? `${v / 1e6}M` : v >= 1e3 ? `${v / 1e3}k` : String(v)),
      }),
    );
    say(`RFC 2544 chart written to ${opts.rfcSvg}`);
  }
  if (opts.json) {
    fs.writeFileSync(opts.json, `${JSON.stringify(report, null, 2)}\n`);
    say(`JSON written to ${opts.json}`);
  }
  if (failed) process.exitCode = 1;
}

main().catch((e) => {
  process.stderr.write(`bench: ${e instanceof Error ? e.message : e}\n`);
  cleanup();
  process.exit(1);
});
