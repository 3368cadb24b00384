// The `cni` scenario of scripts/bench.mjs: a pod's network life through tapnet, against
// references on the same machine in the same run. One lab (written here): a router node n1
// with cni0 10.87.0.1/16, a service `web` (10.96.0.20) and the cluster DNS on 10.96.0.10,
// and one lab host `client` (10.87.255.200/16). Per repetition:
//   ADD/DEL  50 containers in sequence: 50 namespaces (made before, not timed), then
//            CNI ADD for each, one after the other, then CNI DEL for each; every call is
//            the plugin's executable run as a runtime runs it (CNI_* environment, the
//            config on stdin, result on stdout), timed from spawn to exit. tapnet: the
//            plugin `tapnet cni install` wrote (port.add on n1, the TAP moved into the
//            namespace). Reference: containernetworking-plugins' `bridge` (a kernel bridge
//            `tnbcni0` in the bench's namespace, no address on it; a veth pair per
//            container). Both: cniVersion 1.0.0, the same host-local IPAM config (own data
//            directories): 10.87.0.0/16, gateway 10.87.0.1, a default route via it. Each
//            result is checked (an address, exit 0), the first tapnet pod pings its
//            gateway, and host-local's directory must be empty after the DELs.
//   DNS      queries/s answered: scripts/bench/dns-load.mjs in `client` keeps 32 A queries
//            for web.default.svc.cluster.local outstanding for D s (after 0.5 s of warm-up),
//            counting correct answers (10.96.0.20). tapnet: the node's cluster DNS, through
//            the lab's switch port and router. Reference: scripts/bench/dns-ref.mjs, the same
//            answer from the same library (dns-packet) in a Node process on a kernel UDP
//            socket, reached by a veth between two namespaces of the bench's own.
// Ratios tapnet / reference: above 1 is worse for latency, better for queries/s.
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { median, percentile, ratio } from "./stats.mjs";

/** Containers per repetition, in sequence (the issue's benchmark). */
export const CONTAINERS = 50;
/** The reference bridge's name (in the bench's namespace; removed after, and by --cleanup). */
export const REF_BRIDGE = "tnbcni0";
const LAB = "bench-cni";
const SUBNET = "10.87.0.0/16";
const GW = "10.87.0.1";
const DNS = "10.96.0.10";
const VIP = "10.96.0.20";
const NAME = "web.default.svc.cluster.local";
const WINDOW = 32;

/** One plugin call as a runtime makes it; resolves with exit status, stdout and wall-clock ms. */
function pluginCall(plugin, command, conf, env) {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(plugin, [], {
      env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", CNI_COMMAND: command, ...env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("error", (e) => {
      clearTimeout(timer);
      resolve({ status: null, out, err: err + e.message, ms: 0 });
    });
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, out, err, ms: Number(process.hrtime.bigint() - t0) / 1e6 });
    });
    child.stdin.end(JSON.stringify(conf));
  });
}

/**
 * c: the bench's helpers (scripts/bench.mjs controlHelpers()). Returns per-metric records
 * (tapnet, reference, ratio, samples) and notes, in the shape of the control scenario's.
 */
export async function runCni(c) {
  const { opts, say } = c;
  const D = opts.duration;
  const tmp = c.tmpDir();
  const bin = path.join(tmp, "cni-bin");
  const labFile = path.join(tmp, `${LAB}.yaml`);
  fs.writeFileSync(
    labFile,
    `# The cni scenario's lab (scripts/bench/cni.mjs): pods join n1's VLAN 1; n1 routes and answers the cluster DNS.
name: ${LAB}
nodes:
  n1:
    interfaces:
      cni0: { vlan: 1, address: ${GW}/16 }
    services:
      web: { vip: ${VIP}, port: 80, backends: ["10.87.255.200:80"] }
    clusterDns: { address: ${DNS} }
hosts:
  client: { node: n1, ip: 10.87.255.200/16, gateway: ${GW} }
`,
  );
  c.sh([process.execPath, c.CLI, "cni", "install", "--bin-dir", bin]);
  const cniPath = `${bin}:/usr/lib/cni`;
  const impls = [
    { name: "tapnet", plugin: path.join(bin, "tapnet"), extra: { type: "tapnet", lab: LAB, node: "n1" } },
    { name: "bridge", plugin: "/usr/lib/cni/bridge", extra: { type: "bridge", bridge: REF_BRIDGE } },
  ];
  for (const impl of impls) {
    if (!fs.existsSync(impl.plugin)) throw new Error(`${impl.plugin} is missing (Debian: containernetworking-plugins)`);
  }
  const confOf = (impl, dataDir) => ({
    cniVersion: "1.0.0",
    name: "benchpods",
    ...impl.extra,
    ipam: { type: "host-local", subnet: SUBNET, gateway: GW, routes: [{ dst: "0.0.0.0/0" }], dataDir },
  });
  const held = (dataDir) =>
    fs.existsSync(path.join(dataDir, "benchpods")) ? fs.readdirSync(path.join(dataDir, "benchpods")).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [];

  const samples = { tapnetAddMs: [], tapnetDelMs: [], bridgeAddMs: [], bridgeDelMs: [], tapnetQps: [], refQps: [], tapnetDnsP99Us: [], refDnsP99Us: [] };
  /** Per repetition and implementation: p50 and p99 of ADD and DEL. */
  const runs = [];
  const dnsRuns = [];
  const pods = Array.from({ length: CONTAINERS }, (_, i) => `${c.NS_PREFIX}cni${i}`);
  const CLI_NS = `${c.NS_PREFIX}dnscli`;
  const SRV_NS = `${c.NS_PREFIX}dnsref`;
  let ref = null;

  await c.labUp(labFile);
  try {
    for (const ns of pods) c.addNs(ns);
    // ------------------------------------------------ ADD and DEL, 50 containers in sequence
    for (let rep = 0; rep < opts.repeat; rep++) {
      for (const impl of impls) {
        const dataDir = path.join(tmp, `ipam-${impl.name}`);
        const conf = confOf(impl, dataDir);
        const env = (i) => ({ CNI_CONTAINERID: `bench-${impl.name}-${rep}-${i}`, CNI_NETNS: `/run/netns/${pods[i]}`, CNI_IFNAME: "eth0", CNI_PATH: cniPath });
        const add = [];
        const del = [];
        let delFailure = null;
        say(`cni: ${impl.name}: ADD of ${CONTAINERS} containers in sequence, then DEL of each${opts.repeat > 1 ? ` (repetition ${rep + 1})` : ""}…`);
        try {
          for (let i = 0; i < CONTAINERS; i++) {
            const r = await pluginCall(impl.plugin, "ADD", conf, env(i));
            if (r.status !== 0) throw new Error(`${impl.name} ADD of container ${i} failed (exit ${r.status}): ${(r.out || r.err).trim()}`);
            const ip = JSON.parse(r.out).ips?.[0]?.address;
            if (!ip) throw new Error(`${impl.name} ADD of container ${i}: no address in the result: ${r.out.trim()}`);
            add.push(r.ms);
          }
          if (impl.name === "tapnet") {
            const p = spawnSync("ip", ["netns", "exec", pods[0], "ping", "-c", "1", "-W", "5", GW], { encoding: "utf8" });
            if (p.status !== 0) throw new Error(`the first tapnet pod does not ping its gateway ${GW}: ${p.stdout}${p.stderr}`);
          }
        } finally {
          // DEL everything ADD may have made, also after a failure (DEL of what is not there
          // succeeds); a failed DEL is remembered, not thrown here, so it cannot hide ADD's error.
          for (let i = 0; i < CONTAINERS; i++) {
            const r = await pluginCall(impl.plugin, "DEL", conf, env(i));
            if (r.status !== 0) delFailure ??= `${impl.name} DEL of container ${i} failed (exit ${r.status}): ${(r.out || r.err).trim()}`;
            else if (i < add.length) del.push(r.ms);
          }
        }
        if (delFailure) throw new Error(delFailure);
        const left = held(dataDir);
        if (left.length) throw new Error(`${impl.name}: host-local still holds ${left.join(" ")} after the DELs`);
        const run = {
          implementation: impl.name,
          repetition: rep,
          addP50Ms: percentile(add, 50),
          addP99Ms: percentile(add, 99),
          delP50Ms: percentile(del, 50),
          delP99Ms: percentile(del, 99),
          addMs: add,
          delMs: del,
        };
        runs.push(run);
        samples[`${impl.name}AddMs`].push(...add);
        samples[`${impl.name}DelMs`].push(...del);
        say(
          `cni: ${impl.name}: ADD p50 ${run.addP50Ms.toFixed(1)} p99 ${run.addP99Ms.toFixed(1)} ms, DEL p50 ${run.delP50Ms.toFixed(1)} p99 ${run.delP99Ms.toFixed(1)} ms`,
        );
      }
    }
    for (const ns of pods) c.quietly(() => c.delNs(ns));
    c.quietly(() => c.sh(["ip", "link", "del", REF_BRIDGE]));

    // ------------------------------------------------ DNS queries per second
    c.addNs(CLI_NS);
    c.addNs(SRV_NS);
    c.veth(CLI_NS, "eth0", SRV_NS, "eth0");
    c.ipn(CLI_NS, ["address add 10.86.0.2/24 dev eth0", "link set eth0 up"]);
    c.ipn(SRV_NS, ["address add 10.86.0.1/24 dev eth0", "link set eth0 up"]);
    ref = c.startDaemon(
      ["ip", "netns", "exec", SRV_NS, process.execPath, path.join(c.ROOT, "scripts/bench/dns-ref.mjs"), "10.86.0.1", NAME, VIP],
      "reference DNS responder",
    );
    await c.waitFor("the reference DNS responder", () => ref.output().includes("ready"), 15_000);
    const load = async (ns, server) => {
      const r = await c.runAsync(
        ["ip", "netns", "exec", ns, process.execPath, path.join(c.ROOT, "scripts/bench/dns-load.mjs"), server, NAME, VIP, "0.5", String(D), String(WINDOW)],
        D + 30,
      );
      if (r.status !== 0) throw new Error(`dns-load in ${ns} failed (exit ${r.status}): ${r.stderr.trim()}`);
      const j = JSON.parse(r.stdout.trim().split("\n").pop());
      if (j.correct === 0) throw new Error(`no correct answer from ${server}: ${r.stdout.trim()}`);
      return j;
    };
    for (let rep = 0; rep < opts.repeat; rep++) {
      say(`cni: DNS: ${WINDOW} queries outstanding for ${D} s, tapnet's cluster DNS, then the reference…`);
      const t = await load(`tn.${LAB}.client`, DNS);
      const r = await load(CLI_NS, "10.86.0.1");
      dnsRuns.push({ repetition: rep, tapnet: t, reference: r });
      samples.tapnetQps.push(t.qps);
      samples.refQps.push(r.qps);
      samples.tapnetDnsP99Us.push(t.p99Us);
      samples.refDnsP99Us.push(r.p99Us);
      say(
        `cni: DNS: tapnet ${Math.round(t.qps)} answers/s (${t.lost} lost, p99 ${Math.round(t.p99Us)} µs), reference ${Math.round(r.qps)}/s (${r.lost} lost, p99 ${Math.round(r.p99Us)} µs)`,
      );
    }
  } finally {
    if (ref) c.stopProc(ref.pid);
    for (const ns of [...pods, CLI_NS, SRV_NS]) c.quietly(() => c.delNs(ns));
    spawnSync("ip", ["link", "del", REF_BRIDGE], { encoding: "utf8" });
    c.quietly(() => c.labDown(labFile));
  }

  // ------------------------------------------------ records
  const metrics = [];
  const per = (impl, key) => median(runs.filter((r) => r.implementation === impl).map((r) => r[key]));
  const rec = (metric, label, unit, better, t, r, refName, s) => {
    metrics.push({
      scenario: "cni",
      metric,
      label,
      unit,
      better,
      implementation: "tapnet",
      referenceName: refName,
      tapnet: t,
      reference: r,
      ratio: ratio(t, r),
      samples: s,
    });
  };
  const by = (impl, key) => runs.filter((r) => r.implementation === impl).map((r) => r[key]);
  for (const [key, label] of [
    ["addP50Ms", "CNI ADD p50, ms"],
    ["addP99Ms", "CNI ADD p99, ms"],
    ["delP50Ms", "CNI DEL p50, ms"],
    ["delP99Ms", "CNI DEL p99, ms"],
  ]) {
    rec(key, label, "ms", "lower", per("tapnet", key), per("bridge", key), "bridge plugin", { tapnet: by("tapnet", key), reference: by("bridge", key) });
  }
  rec("dnsQps", "cluster DNS answers/s", "q/s", "higher", median(samples.tapnetQps), median(samples.refQps), "dns-packet on a kernel socket", {
    tapnet: samples.tapnetQps,
    reference: samples.refQps,
  });
  rec(
    "dnsP99Us",
    "cluster DNS p99 µs under that load",
    "µs",
    "lower",
    median(samples.tapnetDnsP99Us),
    median(samples.refDnsP99Us),
    "dns-packet on a kernel socket",
    {
      tapnet: samples.tapnetDnsP99Us,
      reference: samples.refDnsP99Us,
    },
  );
  const lost = (k) => dnsRuns.reduce((n, r) => n + r[k].lost, 0);
  return {
    repeat: opts.repeat,
    containers: CONTAINERS,
    durationS: D,
    metrics,
    runs,
    dnsRuns,
    notes: [
      `ADD/DEL: ${CONTAINERS} containers in sequence per repetition (${opts.repeat > 1 ? `medians of ${opts.repeat} repetitions' percentiles` : "one repetition"}; p99 of ${CONTAINERS} by nearest rank is the slowest call); each call is the plugin run as a runtime runs it, spawn to exit, cniVersion 1.0.0, host-local IPAM (${SUBNET}, gateway ${GW}, a default route via it). tapnet: port.add on a running router node over its control socket, the TAP moved into the container, addresses and routes by iproute2 (nsenter); reference: containernetworking-plugins' bridge (a kernel bridge without address, a veth pair per container). The tapnet plugin is a Node program: its start-up is part of every call.`,
      `DNS: ${WINDOW} A queries for ${NAME} outstanding from one UDP socket for ${D} s (after 0.5 s of warm-up), correct answers/s and their p99 latency; tapnet: lab host -> switch port -> n1's router -> cluster DNS (${DNS}); reference: the same answer from dns-packet in a Node process on a kernel UDP socket across a veth. Queries unanswered for 1 s written off: ${lost("tapnet")} (tapnet), ${lost("reference")} (reference). The load generator shares the two cores with the server.`,
    ],
  };
}
