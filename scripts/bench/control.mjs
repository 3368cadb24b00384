// The `control` scenario of scripts/bench.mjs: how fast a running tapnet router node takes
// runtime changes over its control socket (src/node/changes.ts), what a burst of them costs
// its forwarding, and how long a host takes to join a running lab. One lab, up once:
// scripts/labs/router.yaml (h1 10.0.1.10 -- r1 -- h2 10.0.2.10) plus an SVI on VLAN 100
// (10.3.0.1/16) for hosts that join. Per repetition:
//   routes    with the node idle, under an iperf3 TCP stream h1 -> h2, and under a 64-byte
//             trafgen flood h1 -> h2 (both through r1, bounded by `timeout -k`):
//             - a burst of N route additions (/24s via h2) in `changes` requests of at most
//               20,000 (the node applies each in slices of ~2 ms between packet batches):
//               additions/s = N / (first request's connect .. last reply);
//             - then one `change` request per route (a new connection each, what a naive
//               client gets) for D s: additions/s;
//             under load, the forwarding rate at h2's interface (rx counters) during the
//             burst against a D s window just before it (no changes).
//             Ratios: under load / idle; during the burst / without.
//   check     after every burst `tapnet show route --json` must list the lab's own routes
//             plus exactly the routes added, each via h2; after the batched deletion, only
//             the lab's own. A mismatch fails the scenario (exit 1).
//   stall     ping -i 0.01 h1 -> h2 for D s; then again across a burst: max and p99 RTT,
//             replies lost (missing icmp_seq).
//   host add  `tapnet lab host add` of a host on VLAN 100, then ping -D its gateway every
//             10 ms until the first reply: the command's start to that reply (wall clock);
//             `lab host del` after. K times.
// References: the same node idle; the same load without the burst; `lab up` of a one-host
// lab of the same shape (a router node with the VLAN 100 SVI, one host on it) until its
// host's first ping reply, K times; and, for scale, the kernel: `ip -batch` adding the same
// N routes in a namespace, and a host joined by hand to a kernel bridge with the steps
// host add takes (ip netns add, the same sysctls, a veth, address, route) until its first
// ping reply.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { median, percentile, ratio } from "./stats.mjs";

/** The most changes the node takes in one `changes` request (src/node/node.ts). */
export const MAX_BATCH = 20_000;
/** h2: every added route's next hop, and the destination of the loads and pings. */
const VIA = "10.0.2.10";
/** The SVI that joining hosts use as their gateway. */
const LAN_GW = "10.3.0.1";
const LAN_VLAN = 100;
/** Routes of the one-request-per-change runs: indices from here (80.0.0.0/24 up), apart from the bursts'. */
const SINGLE_BASE = 1 << 20;

/** The i-th route the scenario adds: a /24 from 64.0.0.0/24 up (4 M of them before 127/8). */
export const prefixOf = (i) => `${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}.0/24`;

/** A joining host's address: 10.3.1.1/16, 10.3.1.2/16, … (never reused: no stale ARP entry at the node). */
const joinAddr = (k) => `10.3.${1 + (k >> 8)}.${k & 255}`;

/**
 * c: the bench's helpers (scripts/bench.mjs controlHelpers()). opts: duration (D), repeat,
 * routes (N), hostAdds (K). Returns per-metric records (tapnet, reference, ratio, samples),
 * notes and every sample; route-table mismatches are in `checkFailures` (the caller fails
 * the run).
 */
export async function runControl(c) {
  const { opts, say } = c;
  const D = opts.duration;
  const N = opts.routes;
  const K = opts.hostAdds;
  const { request } = await import(pathToFileURL(path.join(c.ROOT, "dist/control/client.js")).href);

  const labFile = await c.labVariant(path.join(c.LABS, "router.yaml"), "bench-control", (doc) => {
    doc.setIn(["nodes", "r1", "interfaces", "lan"], doc.createNode({ vlan: LAN_VLAN, address: `${LAN_GW}/16` }));
  });
  const lab = "bench-control";
  const refFile = path.join(c.tmpDir(), "bench-ctlref.yaml");
  fs.writeFileSync(
    refFile,
    `# The control scenario's reference for a host joining: a lab of one router node with the
# VLAN ${LAN_VLAN} SVI and one host on it, as \`lab host add\` places a host in bench-control.
name: bench-ctlref
nodes:
  r1:
    kind: router
    interfaces:
      lan: { vlan: ${LAN_VLAN}, address: ${LAN_GW}/16 }
hosts:
  h1: { node: r1, ip: 10.3.0.10/16, gateway: ${LAN_GW}, vlan: ${LAN_VLAN} }
`,
  );

  const samples = {
    batchIdle: [],
    batchTcp: [],
    batchFlood: [],
    singleIdle: [],
    singleTcp: [],
    singleFlood: [],
    kppsNoBurst: [],
    kppsBurst: [],
    tcpNoBurst: [],
    tcpBurst: [],
    rttMaxNoBurst: [],
    rttMaxBurst: [],
    rttP99NoBurst: [],
    rttP99Burst: [],
    lostNoBurst: [],
    lostBurst: [],
    delIdle: [],
    hostAddMs: [],
    hostAddCmdMs: [],
    hostDelMs: [],
    labUpMs: [],
    labUpCmdMs: [],
    kernelBatch: [],
    kernelHostMs: [],
  };
  const checks = [];
  const runs = [];

  // ------------------------------------------------------------ the tapnet lab
  const ns = await c.labUp(labFile);
  try {
    const H1 = ns("h1");
    const H2 = ns("h2");
    await c.waitReachable(H1, VIA);
    const sock = labSocket(lab, "r1");
    const own = await routeRows(c, lab);
    if (own.some((r) => r.kind === "static")) throw new Error(`lab ${lab}: static routes before the scenario added any`);

    /** Builds the `changes` requests for route indices [from, to) before the clock starts. */
    const requests = (op, from, to) => {
      const out = [];
      for (let a = from; a < to; a += MAX_BATCH) {
        const ops = [];
        for (let i = a; i < Math.min(to, a + MAX_BATCH); i++) ops.push({ op, args: op === "route.del" ? { to: prefixOf(i) } : { to: prefixOf(i), via: VIA } });
        out.push({ cmd: "changes", ops });
      }
      return out;
    };
    /** The requests in turn, timed from the first connect to the last reply; every change must apply. */
    const sendBatches = async (reqs) => {
      let applied = 0;
      let total = 0;
      const t0 = performance.now();
      for (const req of reqs) {
        const r = await request(sock, req, 300_000);
        total += req.ops.length;
        applied += r.applied;
        const bad = r.errors.findIndex((e) => e !== null);
        if (bad >= 0) throw new Error(`${req.ops[bad].op} ${req.ops[bad].args.to}: refused: ${r.errors[bad]}`);
      }
      const s = (performance.now() - t0) / 1000;
      if (applied !== total) throw new Error(`the node applied ${applied} of ${total} changes`);
      return { n: total, s, perS: total / s };
    };
    /** One `change` request per route, for `seconds`: the routes added, and the rate. */
    const sendSingles = async (seconds) => {
      let n = 0;
      const t0 = performance.now();
      const until = t0 + seconds * 1000;
      while (performance.now() < until) {
        await request(sock, { cmd: "change", op: "route.add", args: { to: prefixOf(SINGLE_BASE + n), via: VIA } }, 30_000);
        n++;
      }
      const s = (performance.now() - t0) / 1000;
      return { n, s, perS: n / s };
    };
    /** After a burst (and singles): every added route listed, via h2; then all deleted, and checked gone. */
    const checkAndDelete = async (phase, k, singles) => {
      const want = new Set();
      for (let i = 0; i < N; i++) want.add(prefixOf(i));
      for (let i = 0; i < singles; i++) want.add(prefixOf(SINGLE_BASE + i));
      const rows = await routeRows(c, lab);
      const problems = routeTableProblems(rows, own, want, VIA);
      const del = await sendBatches([...requests("route.del", 0, N), ...requests("route.del", SINGLE_BASE, SINGLE_BASE + singles)]);
      const after = await routeRows(c, lab);
      for (const x of routeTableProblems(after, own, new Set(), VIA)) problems.push(`after deleting them: ${x}`);
      const check = {
        phase,
        repetition: k + 1,
        ok: problems.length === 0,
        expected: own.length + want.size,
        listed: rows.length,
        afterDelete: after.length,
        problems: problems.slice(0, 5),
      };
      checks.push(check);
      if (!check.ok) say(`control: ROUTE TABLE WRONG after the ${phase} burst: ${check.problems.join("; ")}`);
      return del;
    };

    const server = { ns: H2, dev: "eth0" };
    for (let k = 0; k < opts.repeat; k++) {
      const tag = opts.repeat > 1 ? ` (${k + 1}/${opts.repeat})` : "";
      const run = {};
      // The longest stall: pings every 10 ms, without and across a burst. First in each
      // repetition: the quiet window does not follow the deletion of a burst (whose garbage
      // the node collects a moment later).
      say(`control: ping -i 0.01 for ${D} s, then across a burst of ${N.toLocaleString("en")}${tag}…`);
      const quiet = await pingFor(c, H1, VIA, D);
      const p = startPing(c, H1, VIA, D + 180);
      let burst;
      let across;
      try {
        await c.waitFor("the first ping reply", () => /bytes from/.test(p.output()) || !c.alive(p.pid), 10_000, 10);
        burst = await sendBatches(requests("route.add", 0, N));
      } finally {
        across = await p.stop();
      }
      await checkAndDelete("stall", k, 0);
      samples.rttMaxNoBurst.push(quiet.maxUs);
      samples.rttMaxBurst.push(across.maxUs);
      samples.rttP99NoBurst.push(quiet.p99Us);
      samples.rttP99Burst.push(across.p99Us);
      samples.lostNoBurst.push(quiet.lost);
      samples.lostBurst.push(across.lost);
      run.stall = { noBurst: quiet, burst: { ...across, burstS: burst.s, perS: burst.perS } };
      say(
        `control: ping max RTT ${fmt(across.maxUs)} µs across the burst (${burst.s.toFixed(2)} s, ${across.lost} lost of ${across.replies + across.lost}) vs ${fmt(quiet.maxUs)} µs without (${quiet.lost} lost)`,
      );

      for (const kind of ["idle", "tcp", "flood"]) {
        say(
          `control: ${N.toLocaleString("en")} route additions in batches, then ${D} s of one request each, ${kind === "idle" ? "node idle" : `under ${kind === "tcp" ? "an iperf3 TCP stream" : "a 64-byte flood"}`}${tag}…`,
        );
        // The load outlasts the measurement; it is stopped by PID once done.
        const load = kind === "idle" ? null : await startLoad(c, kind, H1, H2, 2 * D + 180);
        let base = null;
        let during = null;
        let burst;
        let singles;
        const burstReqs = requests("route.add", 0, N);
        try {
          if (load) {
            const a = counters(c, server);
            await c.sleep(D * 1000);
            base = rate(a, counters(c, server));
          }
          const a = counters(c, server);
          burst = await sendBatches(burstReqs);
          const b = counters(c, server);
          during = rate(a, b);
          singles = await sendSingles(D);
          if (load && !load.alive()) throw new Error(`the ${kind} load ended before the measurement did`);
        } finally {
          if (load) await load.stop();
        }
        const del = await checkAndDelete(kind, k, singles.n);
        const Kind = kind[0].toUpperCase() + kind.slice(1);
        samples[`batch${Kind}`].push(burst.perS);
        samples[`single${Kind}`].push(singles.perS);
        if (kind === "idle") samples.delIdle.push(del.perS);
        if (kind === "flood") {
          samples.kppsNoBurst.push(base.kpps);
          samples.kppsBurst.push(during.kpps);
        }
        if (kind === "tcp") {
          samples.tcpNoBurst.push(base.gbps);
          samples.tcpBurst.push(during.gbps);
        }
        run[kind] = { burst, singles, deleted: del, forwardingNoBurst: base, forwardingDuringBurst: during };
        say(
          `control: ${kind}: batched ${fmt(burst.perS)}/s (${N.toLocaleString("en")} in ${burst.s.toFixed(2)} s), one request each ${fmt(singles.perS)}/s${
            base
              ? `; forwarding during the burst ${kind === "flood" ? `${during.kpps.toFixed(1)} vs ${base.kpps.toFixed(1)} kpps` : `${during.gbps.toFixed(2)} vs ${base.gbps.toFixed(2)} Gbit/s`} without`
              : ""
          }`,
        );
      }

      // Hosts joining the running lab.
      say(`control: ${K} host(s) joining with lab host add${tag}…`);
      run.hostAdd = [];
      for (let j = 0; j < K; j++) {
        const idx = k * K + j + 1;
        const name = `j${idx}`;
        const t0 = Date.now();
        const r = await c.runAsync(
          [
            process.execPath,
            c.CLI,
            "lab",
            "host",
            "add",
            lab,
            name,
            "--node",
            "r1",
            "--ip",
            `${joinAddr(idx)}/16`,
            "--gateway",
            LAN_GW,
            "--vlan",
            String(LAN_VLAN),
            "-q",
          ],
          60,
        );
        const cmdMs = Date.now() - t0;
        if (r.status !== 0) throw new Error(`lab host add ${lab} ${name}: ${(r.stderr || r.stdout).trim().split("\n")[0]}`);
        const reply = await firstReply(c, ns(name), LAN_GW);
        const t1 = Date.now();
        const d = await c.runAsync([process.execPath, c.CLI, "lab", "host", "del", lab, name, "-q"], 60);
        if (d.status !== 0) throw new Error(`lab host del ${lab} ${name}: ${(d.stderr || d.stdout).trim().split("\n")[0]}`);
        const delMs = Date.now() - t1;
        const ms = Math.round(reply - t0);
        samples.hostAddMs.push(ms);
        samples.hostAddCmdMs.push(cmdMs);
        samples.hostDelMs.push(delMs);
        run.hostAdd.push({ host: name, ip: joinAddr(idx), firstReplyMs: ms, commandMs: cmdMs, delMs });
      }
      say(`control: host add -> first ping reply: ${run.hostAdd.map((x) => `${x.firstReplyMs} ms`).join(", ")}`);
      runs.push(run);
    }
  } finally {
    c.quietly(() => c.labDown(labFile));
  }

  // ------------------------------------------------------------ references
  say(`control: reference: lab up of a one-host lab until its host's first ping reply, ${K * opts.repeat} time(s)…`);
  const labUps = [];
  for (let j = 0; j < K * opts.repeat; j++) {
    const t0 = Date.now();
    const refNs = await c.labUp(refFile);
    const cmdMs = Date.now() - t0;
    try {
      const reply = await firstReply(c, refNs("h1"), LAN_GW);
      const ms = Math.round(reply - t0);
      samples.labUpMs.push(ms);
      samples.labUpCmdMs.push(cmdMs);
      labUps.push({ firstReplyMs: ms, commandMs: cmdMs });
    } finally {
      c.labDown(refFile);
    }
  }
  say(`control: lab up -> first ping reply: ${labUps.map((x) => `${x.firstReplyMs} ms`).join(", ")}`);

  say(`control: reference: the kernel, ip -batch with ${N.toLocaleString("en")} route additions, and hosts joined by hand to a bridge…`);
  const KNS = `${c.NS_PREFIX}ctl-kernel`;
  const kernelRuns = [];
  const mine = [];
  try {
    c.addNs(KNS);
    c.ipn(KNS, [
      // A veth pair with both ends here: a link with a carrier for the routes' next hop.
      "link add v0 type veth peer name v1",
      "address add 10.0.2.1/24 dev v0",
      "link set v1 up",
      "link set v0 up",
      "link add br0 type bridge",
      `address add ${LAN_GW}/16 dev br0`,
      "link set br0 up",
    ]);
    const lines = [];
    for (let i = 0; i < N; i++) lines.push(`route add ${prefixOf(i)} via ${VIA}`);
    const input = `${lines.join("\n")}\n`;
    const count = () => {
      const r = spawnSync("ip", ["-n", KNS, "route", "show"], { encoding: "utf8", maxBuffer: 1 << 28, timeout: 60_000 });
      if (r.status !== 0) throw new Error(`ip -n ${KNS} route show: ${r.error?.message ?? r.stderr.trim()}`);
      return r.stdout.split("\n").filter(Boolean).length;
    };
    const before = count();
    for (let k = 0; k < opts.repeat; k++) {
      const t0 = performance.now();
      c.sh(["ip", "-n", KNS, "-batch", "-"], input);
      const s = (performance.now() - t0) / 1000;
      const n = count() - before;
      if (n !== N) throw new Error(`kernel reference: ${n} routes in the table after adding ${N}`);
      c.sh(["ip", "-n", KNS, "route", "flush", "proto", "boot"]);
      samples.kernelBatch.push(N / s);
      kernelRuns.push({ routes: N, s, perS: N / s });
    }
    for (let j = 0; j < K * opts.repeat; j++) {
      const h = `${c.NS_PREFIX}ctl-kh${j + 1}`;
      const addr = joinAddr(j + 1);
      const t0 = Date.now();
      c.addNs(h);
      mine.push(h);
      c.veth(KNS, `kh${j + 1}`, h, "eth0");
      c.ipn(KNS, [`link set kh${j + 1} master br0`, `link set kh${j + 1} up`]);
      c.ipn(h, ["link set eth0 mtu 1500", `address add ${addr}/16 dev eth0`, "link set eth0 up", `route add default via ${LAN_GW} dev eth0`]);
      const reply = await firstReply(c, h, LAN_GW);
      samples.kernelHostMs.push(Math.round(reply - t0));
      c.delNs(h);
      mine.pop();
    }
  } finally {
    for (const h of mine) c.quietly(() => c.delNs(h));
    c.quietly(() => c.delNs(KNS));
  }

  // ------------------------------------------------------------ records
  const metrics = [];
  const rec = (metric, label, unit, better, tapnetKey, referenceName, refKey) => {
    const t = median(samples[tapnetKey]);
    const r = median(samples[refKey]);
    const m = {
      scenario: "control",
      metric,
      label,
      unit,
      better,
      implementation: "tapnet",
      referenceName,
      tapnet: t,
      reference: r,
      ratio: ratio(t, r),
      samples: { tapnet: samples[tapnetKey], reference: samples[refKey] },
    };
    metrics.push(m);
    return m;
  };
  const nTxt = N.toLocaleString("en");
  rec("routeAddsBatchedTcp", "route adds/s, batched, under TCP", "routes/s", "higher", "batchTcp", "same node, idle", "batchIdle");
  rec("routeAddsBatchedFlood", "route adds/s, batched, under 64B flood", "routes/s", "higher", "batchFlood", "same node, idle", "batchIdle");
  rec("routeAddsSingleTcp", "route adds/s, 1 request each, under TCP", "routes/s", "higher", "singleTcp", "same node, idle", "singleIdle");
  rec("routeAddsSingleFlood", "route adds/s, 1 request each, under 64B flood", "routes/s", "higher", "singleFlood", "same node, idle", "singleIdle");
  rec("routeAddsBatchedIdle", "route adds/s, batched, idle", "routes/s", "higher", "batchIdle", "kernel, ip -batch", "kernelBatch");
  rec("kppsDuringBurst", `64B kpps during a ${nTxt}-route burst`, "kpps", "higher", "kppsBurst", "same flood, no burst", "kppsNoBurst");
  rec("tcpDuringBurst", `TCP Gbit/s during a ${nTxt}-route burst`, "Gbit/s", "higher", "tcpBurst", "same stream, no burst", "tcpNoBurst");
  rec("pingMaxDuringBurst", `ping max RTT µs across a ${nTxt}-route burst`, "µs", "lower", "rttMaxBurst", "same pings, no burst", "rttMaxNoBurst");
  rec("pingP99DuringBurst", `ping p99 RTT µs across a ${nTxt}-route burst`, "µs", "lower", "rttP99Burst", "same pings, no burst", "rttP99NoBurst");
  rec("hostAddFirstReplyMs", "host add -> first ping reply, ms", "ms", "lower", "hostAddMs", "lab up, one-host lab", "labUpMs");
  rec("hostAddVsKernelMs", "host add -> first ping reply, ms", "ms", "lower", "hostAddMs", "kernel, by hand", "kernelHostMs");

  const failures = checks.filter((x) => !x.ok).map((x) => `${x.phase} burst, repetition ${x.repetition}: ${x.problems.join("; ")}`);
  const med = (k) => median(samples[k]);
  return {
    repeat: opts.repeat,
    routes: N,
    hostAdds: K,
    durationS: D,
    metrics,
    checks,
    checkFailures: failures,
    samples,
    runs,
    references: { labUp: labUps, kernel: kernelRuns },
    notes: [
      `routes: /24s from 64.0.0.0/24 up, each via h2 (${VIA}), added to r1 of router.yaml (h1 -- r1 -- h2); "batched": ${nTxt} route.add in \`changes\` requests of at most ${MAX_BATCH.toLocaleString("en")} (the node applies them in slices of ~2 ms between packet batches), timed from the first request's connect to the last reply, client's JSON encoding included; "1 request each": one \`change\` request per route on a new connection each, sequentially, for ${D} s. Every accepted change is also appended to the node's journal (one write each). Loads: iperf3 -c h2, one TCP stream, and a trafgen 64-byte flood h1 -> h2 (as in the router scenario), each running from ${D} s before the burst until the one-request-each run ends; "idle": no traffic. Batched deletion of the same routes, idle: ${fmt(med("delIdle"))}/s.`,
      `forwarding during the burst: h2's eth0 rx counters over the burst (64B: frames/s; TCP: frame bytes/s) against a ${D} s window just before it, same load, no changes. ping: -i 0.01 h1 -> h2, ${D} s without changes, then from its first reply across the burst (stopped by SIGINT when the burst's last reply is in); lost = icmp_seq missing between the first and the last reply (median ${fmt(med("lostBurst"))} across the burst, ${fmt(med("lostNoBurst"))} without).`,
      `route table: after each of the ${checks.length} bursts \`tapnet show route --json\` listed the lab's own routes plus exactly the added ones via h2 and, after the batched deletion, only the lab's own: ${failures.length ? `FAILED ${failures.length} time(s): ${failures.join(" | ")}` : "correct every time"}.`,
      `host add: \`tapnet lab host add bench-control jN --node r1 --ip 10.3.x.y/16 --gateway ${LAN_GW} --vlan ${LAN_VLAN}\` (a new address each time), then ping -D -i 0.01 ${LAN_GW} from the new host until the first reply; time = the command's start to that reply's timestamp (wall clock); the command alone ${fmt(med("hostAddCmdMs"))} ms, \`lab host del\` ${fmt(med("hostDelMs"))} ms (medians of ${samples.hostAddMs.length}). Reference: \`tapnet lab up\` of a lab with one router node (the same SVI) and one host on it (the command alone ${fmt(med("labUpCmdMs"))} ms), to its host's first reply from ${LAN_GW}, ${samples.labUpMs.length} time(s); kernel, by hand: ip netns add, the same sysctls, a veth on a kernel bridge holding ${LAN_GW}, address and route (iproute2 from the bench process, no CLI start-up), to the first reply.`,
      `kernel, ip -batch: the same ${nTxt} \`route add … via ${VIA}\` in one \`ip -n NS -batch -\` (a veth holding 10.0.2.1/24), no traffic; for scale, not a like-for-like (no control socket, no journal).`,
    ],
  };
}

// ---------------------------------------------------------------- helpers

/**
 * What is wrong with a routing table as `tapnet show route --json` lists it ([{prefix,
 * via, kind}]) that should hold the node's own routes (`own`, listed before any change)
 * plus exactly the prefixes in `added`, each a static route via `via`: [] when nothing.
 * Counts, with one example each, not a line per route.
 */
export function routeTableProblems(rows, own, added, via) {
  const ownPrefixes = new Set(own.map((r) => r.prefix));
  const seen = new Set();
  const bad = { twice: [], wrong: [], foreign: [] };
  let found = 0;
  for (const r of rows) {
    if (seen.has(r.prefix)) {
      bad.twice.push(r.prefix);
      continue;
    }
    seen.add(r.prefix);
    if (added.has(r.prefix)) {
      found++;
      if (r.via !== via || r.kind !== "static") bad.wrong.push(`${r.prefix} via ${r.via} (${r.kind})`);
    } else if (!ownPrefixes.has(r.prefix)) bad.foreign.push(r.prefix);
  }
  const problems = [];
  const some = (xs) => `${xs.length} (e.g. ${xs[0]})`;
  if (rows.length !== own.length + added.size) {
    problems.push(`${rows.length} route${rows.length === 1 ? "" : "s"} listed, ${own.length} of its own + ${added.size} added expected`);
  }
  if (found < added.size) problems.push(`${added.size - found} of the ${added.size} added routes missing`);
  const lost = own.filter((r) => !seen.has(r.prefix)).map((r) => r.prefix);
  if (lost.length) problems.push(`its own routes missing: ${some(lost)}`);
  if (bad.wrong.length) problems.push(`added routes not static via ${via}: ${some(bad.wrong)}`);
  if (bad.foreign.length) problems.push(`routes neither its own nor added: ${some(bad.foreign)}`);
  if (bad.twice.length) problems.push(`prefixes listed twice: ${some(bad.twice)}`);
  return problems;
}

const fmt = (x) => (x === null || x === undefined || !Number.isFinite(x) ? "-" : Math.round(x).toLocaleString("en"));

/** The control socket of a lab's node, from /run/tapnet/LAB/state.json. */
function labSocket(lab, node) {
  const st = JSON.parse(fs.readFileSync(`/run/tapnet/${lab}/state.json`, "utf8"));
  const s = st.nodes?.[node]?.socket;
  if (typeof s !== "string") throw new Error(`lab ${lab}: no control socket for node ${node} in its state`);
  return s;
}

/** The node's routing table as `tapnet show route --json` lists it. */
async function routeRows(c, lab) {
  const r = await c.runAsync([process.execPath, c.CLI, "show", "route", "--lab", lab, "--node", "r1", "--json"], 120);
  try {
    return JSON.parse(r.stdout);
  } catch {
    throw new Error(`tapnet show route --lab ${lab} --node r1 --json: ${(r.stderr || r.stdout).trim().slice(0, 300)}`);
  }
}

/** rx counters of the receiving host's interface, and when they were read (performance.now() ms, mid-read). */
function counters(c, { ns, dev }) {
  const t0 = performance.now();
  const j = JSON.parse(c.sh(["ip", "-n", ns, "-s", "-j", "link", "show", "dev", dev]));
  const t1 = performance.now();
  return { at: (t0 + t1) / 2, packets: j[0].stats64.rx.packets, bytes: j[0].stats64.rx.bytes };
}

function rate(a, b) {
  const s = (b.at - a.at) / 1000;
  return { s, kpps: (b.packets - a.packets) / s / 1000, gbps: ((b.bytes - a.bytes) * 8) / s / 1e9 };
}

/**
 * A forwarding load h1 -> h2 through the node, bounded by `timeout -k` at capS: "tcp" (one
 * iperf3 stream; its server started here and stopped after) or "flood" (trafgen, 64-byte
 * frames, as the bench's 64B test sends them). Resolves once traffic flows, after a warm-up.
 */
export async function startLoad(c, kind, client, server, capS, dst = VIA) {
  if (kind === "tcp") {
    const srv = c.startDaemon(["ip", "netns", "exec", server, "iperf3", "-s", "-p", String(c.IPERF_PORT)], `iperf3 server in ${server}`);
    let cli = null;
    const stop = async () => {
      if (cli) c.stopProc(cli.pid);
      c.stopProc(srv.pid);
    };
    try {
      await c.waitListening(server, c.IPERF_PORT);
      cli = c.startDaemon(
        ["timeout", "-k", "3", String(capS + 10), "ip", "netns", "exec", client, "iperf3", "-c", dst, "-p", String(c.IPERF_PORT), "-t", String(capS)],
        `iperf3 client in ${client}`,
      );
      const first = counters(c, { ns: server, dev: "eth0" });
      await c.waitFor(
        "the TCP stream to flow",
        () => counters(c, { ns: server, dev: "eth0" }).bytes - first.bytes > 10_000_000 || !c.alive(cli.pid),
        10_000,
        50,
      );
      if (!c.alive(cli.pid)) throw new Error(`iperf3 ended at once: ${cli.output().trim().split("\n").slice(-2).join(" ")}`);
      await c.sleep(500); // past slow start
    } catch (e) {
      await stop();
      throw e;
    }
    return { alive: () => c.alive(cli.pid), stop };
  }
  const p = await c.floodPath(client, server, dst);
  const cfg = path.join(c.tmpDir(), `control-flood-${client}.cfg`);
  fs.writeFileSync(cfg, c.trafgenConfig(p, c.IPERF_PORT));
  const argv = [
    "timeout",
    "-k",
    "3",
    "-s",
    "INT",
    String(capS),
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
  const tg = c.startDaemon(argv, `trafgen in ${client}`);
  const exited = new Promise((resolve) => tg.child.on("close", () => resolve(true)));
  const stop = async () => {
    try {
      process.kill(-tg.pid, "SIGINT");
    } catch {
      // gone
    }
    if ((await Promise.race([exited, c.sleep(5000).then(() => false)])) === false) c.stopProc(tg.pid);
  };
  try {
    await c.waitFor(`trafgen in ${client} to start`, () => tg.output().includes("Running!") || !c.alive(tg.pid), 10_000, 20);
    if (!tg.output().includes("Running!")) throw new Error(`trafgen did not start: ${tg.output().trim().split("\n").slice(-3).join(" ")}`);
    await c.sleep(500); // its ring fills, the path settles
  } catch (e) {
    await stop();
    throw e;
  }
  return { alive: () => c.alive(tg.pid), stop };
}

/**
 * ping's per-reply lines: replies, RTT max/p99/p50 (µs), and lost = icmp_seq numbers
 * missing between the first and the last reply (a reply still in flight when ping was
 * stopped is not a loss).
 */
export function parsePing(text, what) {
  const rtts = [];
  const seqs = new Set();
  for (const m of text.matchAll(/icmp_seq=(\d+) .*time=([\d.]+) ms/g)) {
    seqs.add(Number(m[1]));
    rtts.push(Number(m[2]) * 1000);
  }
  if (rtts.length === 0) throw new Error(`${what}: no reply (${text.trim().split("\n").pop()})`);
  const lo = Math.min(...seqs);
  const hi = Math.max(...seqs);
  return { replies: rtts.length, lost: hi - lo + 1 - seqs.size, maxUs: Math.max(...rtts), p99Us: percentile(rtts, 99), p50Us: percentile(rtts, 50) };
}

/** ping -i 0.01 for `seconds`, nothing else going on. */
async function pingFor(c, ns, dst, seconds) {
  const n = seconds * 100;
  const r = await c.runAsync(["ip", "netns", "exec", ns, "ping", "-n", "-i", "0.01", "-c", String(n), "-W", "1", dst], seconds * 3 + 20);
  return parsePing(r.stdout, `ping ${dst} from ${ns}`);
}

/** ping -i 0.01 until stopped (SIGINT to its group, `timeout -k` at capS): stop() resolves its figures. */
function startPing(c, ns, dst, capS) {
  const p = c.startDaemon(
    ["timeout", "-k", "3", "-s", "INT", String(capS), "ip", "netns", "exec", ns, "ping", "-n", "-i", "0.01", "-W", "1", dst],
    `ping in ${ns}`,
  );
  const exited = new Promise((resolve) => p.child.on("close", () => resolve(true)));
  return {
    pid: p.pid,
    output: p.output,
    stop: async () => {
      try {
        process.kill(-p.pid, "SIGINT");
      } catch {
        // gone
      }
      if ((await Promise.race([exited, c.sleep(5000).then(() => false)])) === false) c.stopProc(p.pid);
      return parsePing(p.output(), `ping ${dst} from ${ns}`);
    },
  };
}

/** Wall-clock time (ms since the epoch) of the first echo reply from `dst`: ping -D every 10 ms, at most 10 s. */
async function firstReply(c, ns, dst) {
  const r = await c.runAsync(["ip", "netns", "exec", ns, "ping", "-D", "-n", "-i", "0.01", "-c", "1", "-w", "10", dst], 20);
  const m = /^\[(\d+\.\d+)\] \d+ bytes from/m.exec(r.stdout);
  if (!m) throw new Error(`no ping reply from ${dst} in ${ns} within 10 s: ${(r.stdout + r.stderr).trim().split("\n").pop()}`);
  return Number(m[1]) * 1000;
}
