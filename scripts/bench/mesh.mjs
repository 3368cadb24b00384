// The `mesh` scenario of scripts/bench.mjs: tapnet's mesh (Weave's design: gossiping peers,
// frames in UDP through userspace, a relay around a broken path) against the VXLAN overlay.
//
//   data     two labs up side by side: scripts/labs/weave-mesh.yaml as bench-mesh (node1 and
//            node3 on segments that do not reach each other, node2 on both) and
//            scripts/labs/flannel-vxlan.yaml as bench-meshvx (two nodes, tapnet's VXLAN
//            ports and routers: the reference, the overlay the mesh stands beside; its pods
//            get the mesh pods' MTU, 1376). Paths:
//            mesh direct  pod1a (node1) -> pod2a (node2), one mesh hop;
//            mesh relay   pod1a (node1) -> pod3a (node3), relayed by node2;
//            vxlan        pod1a (node1) -> pod2a (node2) across flannel-vxlan.
//            Per repetition, interleaved path by path (so the machine's load falls on all
//            three alike): RTT (ping, opts.pings at 2 ms, p50 and p99), then iperf3 TCP (one
//            stream, opts.duration s, bounded by timeout -k). Medians of the repetitions;
//            ratios mesh / vxlan of medians.
//   gossip   in-process, no sockets (as test/mesh/topology.test.ts): N peers (3 and 50) as
//            MeshTopology objects (dist/mesh/topology.js), each linked to its ring
//            neighbour and, for N > 3, to the peer 7 places on (degree 4); links come up one
//            after another, each new pair exchanging whole views and both ends announcing
//            their connections, whatever a merge takes going on to the other neighbours
//            until nothing is new. Measured: merge messages and CPU time until every peer
//            knows every peer and routes to all of them (cold start), then the same for a
//            peer that joins the converged mesh through one link. Reference: the 3-peer
//            mesh (the ratio is how the cost grows from 3 to 50 peers). Time here is the
//            agents' own work only: on a network every hop adds its RTT (the lab test
//            measures a real join: under 5 s).
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { median, ratio } from "./stats.mjs";

const LAB = "bench-mesh";
const VLAB = "bench-meshvx";
/** Weave's default pod MTU, given to both labs' pods. */
const POD_MTU = 1376;

/** One simulated mesh of n peers: link by link to convergence, then one join. */
function simulate(MeshTopology, n) {
  const names = Array.from({ length: n }, (_, i) => `p${i + 1}`);
  const uid = (i) => (i + 1).toString(16).padStart(16, "0");
  const addr = (i) => `192.168.${i >> 8}.${i & 255}`;
  const t = new Map(names.map((name, i) => [name, new MeshTopology(name, uid(i), [addr(i)], 1000)]));
  const links = new Map(names.map((name) => [name, new Set()]));
  let messages = 0;
  const flood = (from, entries) => {
    const queue = [[from, entries]];
    while (queue.length > 0) {
      const [x, es] = queue.shift();
      for (const m of links.get(x)) {
        messages++;
        const taken = t.get(m).merge(es.map((e) => structuredClone(e)));
        if (taken.length > 0) queue.push([m, taken]);
      }
    }
  };
  const announce = (x) => flood(x, [t.get(x).setConnections([...links.get(x)].sort().map((m) => ({ peer: m, addr: addr(names.indexOf(m)) })))]);
  const link = (a, b) => {
    links.get(a).add(b);
    links.get(b).add(a);
    flood(a, t.get(a).all());
    flood(b, t.get(b).all());
    announce(a);
    announce(b);
  };
  const converged = () => [...t.values()].every((v) => v.peers.size === t.size && v.routes().reachable.size === t.size);
  const pairs = [];
  for (let i = 0; i < n; i++) {
    const j = (i + 1) % n;
    if (n > 1 && !(n === 2 && i === 1)) pairs.push([names[i], names[j]]);
    if (n > 3) pairs.push([names[i], names[(i + 7) % n]]);
  }
  const seen = new Set();
  const t0 = process.cpuUsage();
  const w0 = performance.now();
  for (const [a, b] of pairs) {
    const k = [a, b].sort().join("|");
    if (a === b || seen.has(k)) continue;
    seen.add(k);
    link(a, b);
  }
  const ok = converged();
  const cold = { messages, ms: performance.now() - w0, cpuMs: cpuMs(t0), links: seen.size, converged: ok };
  // A peer joins through one link.
  messages = 0;
  const joiner = `p${n + 1}`;
  names.push(joiner);
  t.set(joiner, new MeshTopology(joiner, uid(n), [addr(n)], 2000));
  links.set(joiner, new Set());
  const t1 = process.cpuUsage();
  const w1 = performance.now();
  link(joiner, names[0]);
  const join = { messages, ms: performance.now() - w1, cpuMs: cpuMs(t1), converged: converged() };
  return { cold, join };
}

function cpuMs(since) {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1000;
}

/**
 * c: the bench's helpers (scripts/bench.mjs meshHelpers()). Returns per-metric records
 * (tapnet, reference, ratio, samples) and notes.
 */
export async function runMesh(c) {
  const { opts, say } = c;
  const metrics = [];
  const rec = (metric, label, unit, better, tapnet, referenceName, reference, samples) =>
    metrics.push({
      scenario: "mesh",
      metric,
      label,
      unit,
      better,
      implementation: "tapnet",
      referenceName,
      tapnet,
      reference,
      ratio: ratio(tapnet, reference),
      samples,
    });

  // ---- gossip, in-process
  const { MeshTopology } = await import(pathToFileURL(path.join(c.ROOT, "dist/mesh/topology.js")).href);
  const gossip = { 3: [], 50: [] };
  for (let k = 0; k < Math.max(3, opts.repeat); k++) for (const n of [3, 50]) gossip[n].push(simulate(MeshTopology, n));
  for (const n of [3, 50])
    if (!gossip[n].every((g) => g.cold.converged && g.join.converged)) throw new Error(`gossip: the ${n}-peer simulation did not converge`);
  const g = (n, phase, key) => median(gossip[n].map((x) => x[phase][key]));
  const G3 = "3 peers (same simulation)";
  const gs = (phase, key) => ({ tapnet: gossip[50].map((x) => x[phase][key]), reference: gossip[3].map((x) => x[phase][key]) });
  rec(
    "gossipColdMsgs",
    "gossip, cold start to converged, 50 peers: merge messages",
    "",
    "lower",
    g(50, "cold", "messages"),
    G3,
    g(3, "cold", "messages"),
    gs("cold", "messages"),
  );
  rec(
    "gossipColdMs",
    "gossip, cold start to converged, 50 peers: CPU ms",
    "ms",
    "lower",
    g(50, "cold", "cpuMs"),
    G3,
    g(3, "cold", "cpuMs"),
    gs("cold", "cpuMs"),
  );
  rec(
    "gossipJoinMsgs",
    "gossip, one peer joins, 50 peers: merge messages",
    "",
    "lower",
    g(50, "join", "messages"),
    G3,
    g(3, "join", "messages"),
    gs("join", "messages"),
  );
  rec("gossipJoinMs", "gossip, one peer joins, 50 peers: CPU ms", "ms", "lower", g(50, "join", "cpuMs"), G3, g(3, "join", "cpuMs"), gs("join", "cpuMs"));
  say(`mesh: gossip simulated (3 and 50 peers, ${gossip[3].length} runs each)`);

  // ---- data, two labs
  // Both labs' pods get Weave's default MTU (1376; weave-mesh.yaml's pods follow the mesh
  // MTU otherwise), so a TCP segment carries as much on both.
  const meshFile = await c.labVariant(path.join(c.LABS, "weave-mesh.yaml"), LAB, (doc) => {
    for (const h of doc.get("hosts").items) h.value.set("mtu", POD_MTU);
  });
  const vxFile = await c.labVariant(path.join(c.LABS, "flannel-vxlan.yaml"), VLAB, (doc) => {
    for (const h of doc.get("hosts").items) h.value.set("mtu", POD_MTU);
  });
  say("mesh: labs up (weave-mesh as bench-mesh, flannel-vxlan as bench-meshvx)…");
  const mns = await c.labUp(meshFile);
  const vns = await c.labUp(vxFile);
  const servers = [];
  try {
    // The pods' addresses as the labs gave them (their state files).
    const ipOf = (lab, pod) => JSON.parse(fs.readFileSync(`/run/tapnet/${lab}/state.json`, "utf8")).hosts[pod].ip.split("/")[0];
    const paths = [
      { key: "direct", label: "mesh direct (pod1a -> pod2a)", client: mns("pod1a"), server: mns("pod2a"), dst: ipOf(LAB, "pod2a") },
      { key: "relay", label: "mesh relayed by node2 (pod1a -> pod3a)", client: mns("pod1a"), server: mns("pod3a"), dst: ipOf(LAB, "pod3a") },
      { key: "vxlan", label: "vxlan (pod1a -> pod2a)", client: vns("pod1a"), server: vns("pod2a"), dst: ipOf(VLAB, "pod2a") },
    ];
    for (const p of paths) {
      await c.waitReachable(p.client, p.dst);
      const s = c.startIperfServer(p.server);
      servers.push(s.pid);
      await c.waitListening(p.server, c.IPERF_PORT);
    }
    const s = Object.fromEntries(paths.map((p) => [p.key, { tcp: [], p50: [], p99: [] }]));
    for (let k = 0; k < opts.repeat; k++) {
      for (const p of paths) {
        const rt = await c.pingRtt(p.client, p.dst);
        const tcp = await c.iperf(p.client, p.dst, []);
        s[p.key].tcp.push(tcp.end.sum_received.bits_per_second / 1e9);
        s[p.key].p50.push(rt.p50Us);
        s[p.key].p99.push(rt.p99Us);
        say(
          `mesh: run ${k + 1}/${opts.repeat} ${p.label}: TCP ${(tcp.end.sum_received.bits_per_second / 1e9).toFixed(2)} Gbit/s, RTT p50 ${rt.p50Us.toFixed(0)} p99 ${rt.p99Us.toFixed(0)} µs`,
        );
      }
    }
    const V = "tapnet vxlan (flannel-vxlan.yaml)";
    for (const key of ["direct", "relay"]) {
      const name = key === "direct" ? "mesh direct" : "mesh relayed";
      rec(`${key}Tcp`, `${name}: TCP Gbit/s`, "Gbit/s", "higher", median(s[key].tcp), V, median(s.vxlan.tcp), { tapnet: s[key].tcp, reference: s.vxlan.tcp });
      rec(`${key}RttP50`, `${name}: RTT p50 µs`, "µs", "lower", median(s[key].p50), V, median(s.vxlan.p50), { tapnet: s[key].p50, reference: s.vxlan.p50 });
      rec(`${key}RttP99`, `${name}: RTT p99 µs`, "µs", "lower", median(s[key].p99), V, median(s.vxlan.p99), { tapnet: s[key].p99, reference: s.vxlan.p99 });
    }
    return {
      repeat: opts.repeat,
      metrics,
      samples: { paths: s, gossip },
      notes: [
        `data: ${opts.repeat} run(s), paths interleaved within each run (RTT: ping -c ${opts.pings} at 2 ms, then iperf3 -t ${opts.duration}, one stream); medians; ratios mesh / vxlan: above 1 is better for TCP, worse for RTT. Both labs' pods have MTU ${POD_MTU} (Weave's default, set on both), so a TCP segment carries as much on both; the mesh MTU is 1440 (1500 underlay - 60). The relayed path crosses three tapnet processes (node1, node2, node3), the direct and the vxlan paths two.`,
        `gossip: in-process simulation with the real merge and routing code, no sockets: the ring plus chords 7 apart (${gossip[50][0].cold.links} links for 50 peers, ${gossip[3][0].cold.links} for 3), brought up one after another; medians of ${gossip[3].length} runs; ratio 50 peers / 3 peers. CPU ms is the whole simulated mesh's work in one process (every peer's merges and route computations), not a network time.`,
      ],
    };
  } finally {
    for (const pid of servers) c.stopProc(pid);
    c.labDown(meshFile);
    c.labDown(vxFile);
  }
}
