// The `etcd` scenario of scripts/bench.mjs: flannel's control plane on a real etcd. How long
// from a subnet lease written in etcd to the route programmed on every other node, and
// what the agent costs with 200 peers. One lab, up once: scripts/labs/flannel-etcd.yaml
// (3 etcd members, node1-node3 with their `tapnet agent`s, vxlan backend).
//
//   1 lease   S times: a flanneld-shaped lease (vxlan, a VtepMAC, a PublicIP) put under
//             /coreos.com/network/subnets/, timed from just before the put is sent to the
//             moment each agent's node acknowledged the route, neighbour and FDB entry (the
//             peer's `since` in `show agent`, stamped when the node's `changes` reply
//             arrived); latency = the slowest of the 3 nodes. Then deleted, and the bench
//             waits until all 3 agents have withdrawn it before the next one.
//   200       200 such leases put at once (one request each, all sent together), under one
//             etcd lease of the writer's (the agent sends what arrived while its previous
//             `changes` request was in flight together); per lease, the slowest node; p50, p99 and the
//             last (all 200 on all 3 nodes). Then the etcd lease is revoked (etcd deletes
//             the 200 keys in one revision: 200 leases expiring at once) until every node
//             has withdrawn all 200.
//   cost      each agent's utime+stime from just before the 200 puts to the last route
//             programmed, and its resident set (VmRSS) with 200 peers.
// Reference, in the same run, on the same events: `etcdctl watch --prefix` (etcd's own
// client, gRPC) in each node's namespace; an event's time = when its key line reached the
// bench (the bench is otherwise idle, waiting). So a ratio says what the agent adds over
// being told: its JSON-gateway watch, parsing, the control-socket request and the node
// applying it. CPU: the etcd member the writer and the watches talk to (etcd1), over the
// same window (the etcdctl watchers use less than one clock tick); memory: the watchers'.
// The writer is scripts/bench/etcd-writer.mjs in etcd1's namespace (the agent's own etcd
// client). Fake leases: 10.244.100.0/24 up, PublicIP 192.168.100.x (no such node: the
// FDB entries point nowhere; nothing is sent to them).
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { percentile, ratio } from "./stats.mjs";

const LAB = "bench-etcd";
const NODES = ["node1", "node2", "node3"];
const PREFIX = "/coreos.com/network/subnets/";
const BURST = 200;

/** The i-th fake lease's subnet: 10.244.10.0/24 up (Network 10.244.0.0/16; the lab's nodes have 10.244.1-3.0/24). */
const subnetOf = (i) => `10.244.${10 + i}.0/24`;

const mac = (i) => `0e:be:00:00:${((i >> 8) & 255).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`;
const leaseKv = (i) => {
  const s = subnetOf(i);
  return [
    `${PREFIX}${s.replace("/", "-")}`,
    JSON.stringify({ PublicIP: `192.168.100.${1 + (i % 250)}`, BackendType: "vxlan", BackendData: { VNI: 1, VtepMAC: mac(i) } }),
  ];
};

/**
 * c: the bench's helpers (scripts/bench.mjs etcdHelpers()). Returns per-metric records
 * (tapnet, reference, ratio, samples) and notes.
 */
export async function runEtcd(c) {
  const { opts, say } = c;
  const S = 30 * opts.repeat;
  const { request } = await import(pathToFileURL(path.join(c.ROOT, "dist/control/client.js")).href);
  const labFile = await c.labVariant(path.join(c.LABS, "flannel-etcd.yaml"), LAB);
  say(`etcd: lab up (3 etcd members, 3 nodes with agents)…`);
  const ns = await c.labUp(labFile);
  const procs = [];
  try {
    const state = JSON.parse(fs.readFileSync(`/run/tapnet/${LAB}/state.json`, "utf8"));
    const endpoints = Object.values(state.etcd).map((m) => m.endpoint);
    const agents = Object.fromEntries(NODES.map((n) => [n, state.agents[n]]));
    const nodePids = c.labNodePids(LAB);
    /** The member the writer talks to (and, first in their endpoint lists, the agents' watches). */
    const etcdPid = state.etcd.etcd1.pid;

    // ---- the reference watchers
    const seen = Object.fromEntries(NODES.map((n) => [n, new Map()])); // key -> {put, del}
    const watchers = {};
    for (const n of NODES) {
      const w = c.startDaemon(
        ["ip", "netns", "exec", ns(n), "etcdctl", "--endpoints", endpoints.join(","), "watch", "--prefix", PREFIX],
        `etcdctl watch in ${n}`,
      );
      procs.push(w.pid);
      watchers[n] = w.pid;
      // etcdctl watch prints each event as three lines: PUT|DELETE, the key, the value.
      let buf = "";
      let kind = null;
      w.child.stdout.on("data", (d) => {
        const now = performance.timeOrigin + performance.now();
        buf += d;
        for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line === "PUT" || line === "DELETE") kind = line;
          else if (kind && line.startsWith(PREFIX)) {
            const e = seen[n].get(line) ?? {};
            if (kind === "PUT") e.put = now;
            else e.del = now;
            seen[n].set(line, e);
            kind = null;
          }
        }
      });
    }

    // ---- the writer
    const writer = c.startDaemon([process.execPath, path.join(c.ROOT, "scripts/bench/etcd-writer.mjs"), endpoints.join(",")], "etcd lease writer", {
      netns: ns("etcd1"),
      stdin: true,
    });
    procs.push(writer.pid);
    const answers = [];
    const waiting = [];
    let wbuf = "";
    writer.child.stdout.on("data", (d) => {
      wbuf += d;
      for (let nl = wbuf.indexOf("\n"); nl >= 0; nl = wbuf.indexOf("\n")) {
        const a = JSON.parse(wbuf.slice(0, nl));
        wbuf = wbuf.slice(nl + 1);
        const w = waiting.shift();
        if (w) w(a);
        else answers.push(a);
      }
    });
    const write = (cmd) =>
      new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`etcd writer: no answer to ${cmd.op} within 30 s: ${writer.output().slice(-400)}`)), 30_000);
        waiting.push((a) => {
          clearTimeout(t);
          if (a.error) reject(new Error(`etcd writer: ${cmd.op}: ${a.error}`));
          else resolve(a);
        });
        writer.child.stdin.write(`${JSON.stringify(cmd)}\n`);
      });

    const status = async (n) => request(agents[n].statusSocket, { cmd: "status" });
    /** Per node: subnet -> since (ms), of the peers its agent holds. */
    const peersOf = async () => {
      const out = {};
      for (const n of NODES) {
        const s = await status(n);
        out[n] = new Map(s.peers.map((p) => [p.subnet, p.sinceMs]));
      }
      return out;
    };
    /** Waits until every node's agent holds (present) or no longer holds (!present) each subnet. */
    const waitPeers = async (subnets, present, what, stepMs, timeoutMs) => {
      let last = null;
      await c.waitFor(
        what,
        async () => {
          last = await peersOf();
          return NODES.every((n) => subnets.every((s) => last[n].has(s) === present));
        },
        timeoutMs,
        stepMs,
      );
      return last;
    };
    const watchersSaw = (keys, field) => NODES.every((n) => keys.every((k) => seen[n].get(k)?.[field] !== undefined));
    const waitWatchers = (keys, field, what) => c.waitFor(what, async () => watchersSaw(keys, field), 15_000, 20);

    // Warm-up (and readiness of the watchers): one lease in and out.
    {
      const [k, v] = leaseKv(BURST);
      for (let tries = 0; ; tries++) {
        await write({ op: "put", kvs: [[k, v]] });
        try {
          await c.waitFor("the etcdctl watchers to see the warm-up lease", async () => watchersSaw([k], "put"), 3000, 50);
          break;
        } catch (e) {
          if (tries >= 5) throw e; // a watcher not yet watching misses a put: put again
        }
      }
      await waitPeers([subnetOf(BURST)], true, "the agents to program the warm-up lease", 50, 15_000);
      await write({ op: "del", keys: [k] });
      await waitPeers([subnetOf(BURST)], false, "the agents to withdraw the warm-up lease", 50, 15_000);
      for (const n of NODES) seen[n].clear();
    }

    // ---- 1 lease at a time
    say(`etcd: ${S} single leases, each put, programmed on 3 nodes, deleted…`);
    const single = { agent: [], watch: [], perNode: [] };
    for (let r = 0; r < S; r++) {
      const i = r % BURST;
      const [k, v] = leaseKv(i);
      const { t } = await write({ op: "put", kvs: [[k, v]] });
      const p = await waitPeers([subnetOf(i)], true, `lease ${subnetOf(i)} on every node`, 10, 15_000);
      await waitWatchers([k], "put", `the etcdctl watchers to see ${k}`);
      const per = NODES.map((n) => p[n].get(subnetOf(i)) - t[0]);
      single.perNode.push(per);
      single.agent.push(Math.max(...per));
      single.watch.push(Math.max(...NODES.map((n) => seen[n].get(k).put - t[0])));
      await write({ op: "del", keys: [k] });
      await waitPeers([subnetOf(i)], false, `lease ${subnetOf(i)} withdrawn on every node`, 10, 15_000);
      await waitWatchers([k], "del", `the etcdctl watchers to see ${k} deleted`);
      for (const n of NODES) seen[n].delete(k);
    }

    // ---- 200 at once
    const burst = { agent: [], watch: [], last: [], lastWatch: [], revoke: [], revokeWatch: [], cpuAgentMs: [], cpuWatchMs: [], cpuNodeMs: [], cpuEtcdMs: [] };
    const rss = { agentBeforeKiB: [], agentKiB: [], watchKiB: [] };
    for (let r = 0; r < opts.repeat; r++) {
      say(`etcd: ${BURST} leases at once${opts.repeat > 1 ? ` (${r + 1}/${opts.repeat})` : ""}…`);
      const { lease } = await write({ op: "grant", ttl: 600 });
      const kvs = Array.from({ length: BURST }, (_, i) => leaseKv(i));
      const subnets = Array.from({ length: BURST }, (_, i) => subnetOf(i));
      for (const a of Object.values(agents)) rss.agentBeforeKiB.push(c.rssKiB(a.pid));
      const cpu0 = {
        agent: NODES.map((n) => c.cpuSeconds(agents[n].pid)),
        watch: NODES.map((n) => c.cpuSeconds(watchers[n])),
        node: NODES.map((n) => c.cpuSeconds(nodePids[n])),
        etcd: c.cpuSeconds(etcdPid),
      };
      const { t } = await write({ op: "put", kvs, lease });
      const p = await waitPeers(subnets, true, `${BURST} leases on every node`, 250, 120_000);
      await waitWatchers(
        kvs.map(([k]) => k),
        "put",
        `the etcdctl watchers to see ${BURST} leases`,
      );
      // The CPU window ends at the last route programmed; the status polls inside it are few (every 250 ms).
      const cpu1 = {
        agent: NODES.map((n) => c.cpuSeconds(agents[n].pid)),
        watch: NODES.map((n) => c.cpuSeconds(watchers[n])),
        node: NODES.map((n) => c.cpuSeconds(nodePids[n])),
        etcd: c.cpuSeconds(etcdPid),
      };
      burst.cpuEtcdMs.push((cpu1.etcd - cpu0.etcd) * 1000);
      for (let j = 0; j < NODES.length; j++) {
        burst.cpuAgentMs.push((cpu1.agent[j] - cpu0.agent[j]) * 1000);
        burst.cpuWatchMs.push((cpu1.watch[j] - cpu0.watch[j]) * 1000);
        burst.cpuNodeMs.push((cpu1.node[j] - cpu0.node[j]) * 1000);
      }
      for (const n of NODES) {
        rss.agentKiB.push(c.rssKiB(agents[n].pid));
        rss.watchKiB.push(c.rssKiB(watchers[n]));
      }
      const agentLat = subnets.map((s, i) => Math.max(...NODES.map((n) => p[n].get(s) - t[i])));
      const watchLat = kvs.map(([k], i) => Math.max(...NODES.map((n) => seen[n].get(k).put - t[i])));
      burst.agent.push(...agentLat);
      burst.watch.push(...watchLat);
      burst.last.push(Math.max(...agentLat));
      burst.lastWatch.push(Math.max(...watchLat));

      // All 200 expire at once: the writer's etcd lease revoked.
      const rv = await write({ op: "revoke", lease });
      const revokedAt = rv.t[0];
      await waitPeers(subnets, false, `${BURST} leases withdrawn on every node`, 20, 120_000);
      const gone = performance.timeOrigin + performance.now();
      await waitWatchers(
        kvs.map(([k]) => k),
        "del",
        `the etcdctl watchers to see ${BURST} deletions`,
      );
      burst.revoke.push(gone - revokedAt);
      burst.revokeWatch.push(Math.max(...NODES.flatMap((n) => kvs.map(([k]) => seen[n].get(k).del - revokedAt))));
      for (const n of NODES) seen[n].clear();
    }

    // ---- records
    const metrics = [];
    const rec = (metric, label, unit, better, tapnet, referenceName, reference, samples) => {
      metrics.push({
        scenario: "etcd",
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
    };
    const W = "etcdctl watch, same events";
    const p = (xs, q) => percentile(xs, q);
    rec("lease1P50", "1 lease -> route on 3 nodes, p50 ms", "ms", "lower", p(single.agent, 50), W, p(single.watch, 50), {
      tapnet: single.agent,
      reference: single.watch,
    });
    rec("lease1P99", "1 lease -> route on 3 nodes, p99 ms", "ms", "lower", p(single.agent, 99), W, p(single.watch, 99), {
      tapnet: single.agent,
      reference: single.watch,
    });
    rec("lease200P50", `${BURST} leases at once -> routes on 3 nodes, p50 ms`, "ms", "lower", p(burst.agent, 50), W, p(burst.watch, 50), {
      tapnet: burst.agent,
      reference: burst.watch,
    });
    rec("lease200P99", `${BURST} leases at once -> routes on 3 nodes, p99 ms`, "ms", "lower", p(burst.agent, 99), W, p(burst.watch, 99), {
      tapnet: burst.agent,
      reference: burst.watch,
    });
    rec("lease200Last", `${BURST} leases at once -> the last route on 3 nodes, ms`, "ms", "lower", p(burst.last, 50), W, p(burst.lastWatch, 50), {
      tapnet: burst.last,
      reference: burst.lastWatch,
    });
    rec("revoke200", `${BURST} leases expiring at once -> all withdrawn on 3 nodes, ms`, "ms", "lower", p(burst.revoke, 50), W, p(burst.revokeWatch, 50), {
      tapnet: burst.revoke,
      reference: burst.revokeWatch,
    });
    rec(
      "cpu200",
      `agent CPU ms for ${BURST} new peers (per agent)`,
      "ms",
      "lower",
      p(burst.cpuAgentMs, 50),
      "etcd member etcd1, same window",
      p(burst.cpuEtcdMs, 50),
      { tapnet: burst.cpuAgentMs, reference: burst.cpuEtcdMs },
    );
    rec("rss200", `agent RSS MiB with ${BURST + 2} peers`, "MiB", "lower", p(rss.agentKiB, 50) / 1024, "etcdctl watch RSS MiB", p(rss.watchKiB, 50) / 1024, {
      tapnet: rss.agentKiB,
      reference: rss.watchKiB,
    });
    const med = (xs) => p(xs, 50);
    return {
      repeat: opts.repeat,
      metrics,
      samples: { single, burst, rss },
      notes: [
        `lab: scripts/labs/flannel-etcd.yaml as ${LAB} (3 etcd 3.4 members, heartbeat 200 ms; node1-node3 with their agents watching through the v3 JSON gateway). Leases: flanneld's vxlan value, put by scripts/bench/etcd-writer.mjs (the agent's etcd client) in etcd1's namespace; times from just before the put is sent (so etcd's raft commit is in both tapnet's and the reference's figure) to the peer's \`since\` in each agent's \`show agent\` (stamped when its node acknowledged the route, neighbour and FDB entry); per lease the slowest of the 3 nodes.`,
        `1 lease: ${S} samples, each put, programmed on all 3 nodes, then deleted and withdrawn before the next (per node, p50 ${NODES.map((n, j) => `${n} ${fmt(med(single.perNode.map((x) => x[j])))}`).join(", ")} ms). ${BURST} at once: one put request each, all sent together, under one etcd lease of the writer's; the agent sends the leases that arrived while its previous \`changes\` request was in flight together in the next one; p50/p99 over ${BURST} leases x ${opts.repeat} run(s). Expiry: that etcd lease revoked (etcd deletes the ${BURST} keys in one revision), to every node's agent holding none of them (polled every 20 ms).`,
        `reference: \`etcdctl watch --prefix ${PREFIX}\` (gRPC) in each node's namespace; an event's time = its key line reaching the bench. It is the floor (being told), not a competitor: the ratio is what the agent adds (its own watch over the JSON gateway, parsing, the control socket, the node applying route + neighbour + FDB entry).`,
        `cost: utime+stime of each agent (and of each node process: median ${fmt(med(burst.cpuNodeMs))} ms; of each etcdctl watcher: ${fmt(med(burst.cpuWatchMs))} ms, in ${1000 / c.CLK_TCK} ms ticks) and of etcd1 (commits the ${BURST} puts, serves the watches) from just before the ${BURST} puts to the last route programmed, status polls every 250 ms included; RSS: VmRSS with ${BURST + 2} peers (before the burst, with 2: ${fmt(med(rss.agentBeforeKiB) / 1024)} MiB).`,
      ],
    };
  } finally {
    for (const pid of procs) c.stopProc(pid);
    c.quietly(() => c.labDown(labFile));
  }
}

const fmt = (x) => (x === null || x === undefined || !Number.isFinite(x) ? "-" : Math.abs(x) >= 100 ? x.toFixed(0) : x.toPrecision(3));
