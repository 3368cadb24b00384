// The `bgp` scenario of scripts/bench.mjs: BIRD announces 100,000 prefixes (--prefixes N)
// to tapnet's BGP speaker (src/bgp/), and to a second BIRD that puts them in its Linux
// kernel: the reference, fed by the same BIRD over the same kind of iBGP session in the
// same run. One lab, up once: scripts/labs/calico-bgp.yaml without node3, plus a BIRD
// router peer2 (192.168.0.11) that peers with peer1 (the bench adds that session to both
// BIRDs' configurations and `birdc configure`s them). peer1 also gets a static protocol
// `bench` of N blackhole /24s (64.0.0.0/24 up), disabled; `birdc enable bench` starts a
// load, `birdc disable bench` withdraws it. Per repetition:
//   load      idle: `enable bench`, then the time until node1's speaker has all N in its
//             FIB (`installed` of its `bgp` control request, polled every 20 ms: a route
//             is counted once route.replace has put it in the node's FIB) against the time
//             until peer2's BIRD has exported all N to its kernel (`birdc show protocols
//             all kernel1`, same polling); node1's RSS (VmRSS) before and with them, and
//             the growth per prefix against peer2's BIRD's (first repetition only: the
//             lab is fresh then).
//   check     with the load in: node1's `show route --json` has each of the N routes,
//             each `proto bgp` via 192.168.0.10, and peer2's kernel table (/proc/net/route) has
//             them too. A mismatch fails the scenario.
//   withdraw  `disable bench`: the time until node1 has none of them left, against peer2's
//             kernel.
//   forward   a 64-byte trafgen flood pod1a -> pod2a (through node1 and node2): the rate at
//             pod2a's interface for D s idle, then during a load of N (from `enable` until
//             node1 has them all, at least 1 s): rate during / idle.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { startLoad } from "./control.mjs";
import { median, ratio } from "./stats.mjs";

const LAB = "bench-bgp";
const PEER1 = "192.168.0.10";
const PEER2 = "192.168.0.11";
const POLL_MS = 20;
/** The i-th prefix peer1 announces: a /24 from 64.0.0.0/24 up. */
const prefixOf = (i) => `${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}.0/24`;

/** birdc on a BIRD of the lab; throws with BIRD's words on failure. */
function birdc(c, name, args) {
  return c.sh(["birdc", "-s", `/run/tapnet/${LAB}/${name}.bird.ctl`, ...args]);
}

/** Routes peer2's BIRD has exported to its kernel (its `protocol kernel`, named kernel1). */
function kernelExported(c) {
  return exportedOf(birdc(c, "peer2", ["show", "protocols", "all", "kernel1"]));
}

/** The same, without blocking the event loop (the race polls both sides at once). */
async function kernelExportedAsync(c) {
  const r = await c.runAsync(["birdc", "-s", `/run/tapnet/${LAB}/peer2.bird.ctl`, "show", "protocols", "all", "kernel1"], 30);
  return exportedOf(r.stdout);
}

function exportedOf(text) {
  const m = /Routes:\s+\d+ imported, (\d+) exported/.exec(text);
  if (!m) throw new Error("birdc show protocols all kernel1 on peer2: no route counts");
  return Number(m[1]);
}

/** Routes via a gateway (hex, as /proc/net/route writes it) in the main table of the namespace of `pid`. */
function kernelRoutesVia(pid, hexGw) {
  const text = fs.readFileSync(`/proc/${pid}/net/route`, "utf8");
  let n = 0;
  for (const line of text.split("\n")) if (line.split("\t")[2] === hexGw) n++;
  return n;
}

function vmRssKiB(pid) {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : null;
}

export async function runBgp(c) {
  const { opts, say } = c;
  const N = opts.prefixes;
  const D = opts.duration;
  const { request } = await import(pathToFileURL(path.join(c.ROOT, "dist/control/client.js")).href);
  const sock = `/run/tapnet/${LAB}/node1.sock`;
  const installed = async () => (await request(sock, { cmd: "bgp" }, 30_000)).installed;

  const labFile = await c.labVariant(path.join(c.LABS, "calico-bgp.yaml"), LAB, (doc) => {
    doc.deleteIn(["nodes", "node3"]);
    doc.deleteIn(["hosts", "pod3a"]);
    doc.setIn(["underlay", "routers", "peer2"], doc.createNode({ net: `${PEER2}/24` }));
    doc.setIn(["overlay", "bird", "peer2"], doc.createNode({}));
  });
  say(`bgp: lab up (${path.basename(labFile)})…`);
  const ns = await c.labUp(labFile);
  const notes = [];
  const samples = {
    tapnetLoadS: [],
    kernelLoadS: [],
    tapnetWithdrawS: [],
    kernelWithdrawS: [],
    rssIdleMiB: [],
    rssLoadedMiB: [],
    tapnetGrowthB: [],
    birdGrowthB: [],
    kppsIdle: [],
    kppsLoad: [],
  };
  const checks = [];
  const checkFailures = [];
  let birdRssMiB = null;
  try {
    // The reference's session and the load, added to the BIRDs' own configurations.
    const conf = (name) => `/run/tapnet/${LAB}/${name}.bird.conf`;
    fs.appendFileSync(conf("peer1"), `protocol bgp ref from tapnet { local ${PEER1}; neighbor ${PEER2} as 64512; }\n`);
    fs.appendFileSync(conf("peer2"), `protocol bgp ref from tapnet { local ${PEER2}; neighbor ${PEER1} as 64512; }\n`);
    const routes = [];
    for (let i = 0; i < N; i++) routes.push(`route ${prefixOf(i)} blackhole;`);
    fs.appendFileSync(conf("peer1"), `protocol static bench { disabled yes; ipv4; ${routes.join("\n")} }\n`);
    for (const b of ["peer1", "peer2"]) {
      const out = birdc(c, b, ["configure"]);
      if (!/Reconfigured|Reconfiguration in progress/.test(out)) throw new Error(`birdc configure on ${b}: ${out.trim()}`);
    }
    await c.waitFor(
      "every session of peer1 and peer2 Established",
      () =>
        ["peer1", "peer2"].every((b) => {
          const bgp = birdc(c, b, ["show", "protocols"])
            .split("\n")
            .filter((l) => /\sBGP\s/.test(l));
          return bgp.length === 3 && bgp.every((l) => /Established/.test(l));
        }),
      60_000,
      200,
    );
    await c.waitFor(
      "node1's sessions Established",
      async () => (await request(sock, { cmd: "bgp" })).peers.every((p) => p.state === "Established"),
      60_000,
      200,
    );
    const base = await installed();
    const kBase = kernelExported(c);
    const pid1 = JSON.parse(fs.readFileSync(`/run/tapnet/${LAB}/state.json`, "utf8")).nodes.node1.pid;
    const birdPid = JSON.parse(fs.readFileSync(`/run/tapnet/${LAB}/state.json`, "utf8")).daemons.peer2.pid;
    const hexGw = PEER1.split(".")
      .reverse()
      .map((x) => Number(x).toString(16).padStart(2, "0").toUpperCase())
      .join("");

    /** Enables or disables the load; resolves when node1 and peer2's kernel both reach their target, with the times. */
    const race = async (enable, capS) => {
      const tTarget = enable ? base + N : base;
      const kTarget = enable ? kBase + N : kBase;
      const t0 = performance.now();
      const out = birdc(c, "peer1", [enable ? "enable" : "disable", "bench"]);
      if (!/bench: (enabled|disabled)/.test(out)) throw new Error(`birdc ${enable ? "enable" : "disable"} bench: ${out.trim()}`);
      // Two loops, one per side, each polling every POLL_MS: neither waits for the other's poll.
      const until = async (what, read, target) => {
        for (;;) {
          if ((await read()) === target) return (performance.now() - t0) / 1000;
          if ((performance.now() - t0) / 1000 > capS) throw new Error(`${what}: not done after ${capS} s (${await read()} of ${target})`);
          await c.sleep(POLL_MS);
        }
      };
      const [tT, tK] = await Promise.all([until("node1's FIB", installed, tTarget), until("peer2's kernel", () => kernelExportedAsync(c), kTarget)]);
      return { tT, tK };
    };

    // The flood path: pod1a -> pod2a through node1 and node2.
    const client = ns("pod1a");
    const server = ns("pod2a");
    await c.waitReachable(client, "10.244.2.2");
    const rx = () => Number(JSON.parse(c.sh(["ip", "-n", server, "-s", "-j", "link", "show", "dev", "eth0"]))[0].stats64.rx.packets);

    for (let rep = 0; rep < opts.repeat; rep++) {
      say(`bgp: repetition ${rep + 1}: loading ${N.toLocaleString("en")} prefixes, idle…`);
      const rss0 = vmRssKiB(pid1);
      const bird0 = vmRssKiB(birdPid);
      const up = await race(true, 600);
      const rss1 = vmRssKiB(pid1);
      const bird1 = vmRssKiB(birdPid);
      if (rep === 0) {
        // RSS only from the fresh lab: after a load and the check's `show route` the node's
        // heap keeps garbage that V8 returns to the OS when it pleases.
        samples.tapnetGrowthB.push(((rss1 - rss0) * 1024) / N);
        samples.birdGrowthB.push(((bird1 - bird0) * 1024) / N);
        samples.rssIdleMiB.push(rss0 / 1024);
        samples.rssLoadedMiB.push(rss1 / 1024);
      }
      samples.tapnetLoadS.push(up.tT);
      samples.kernelLoadS.push(up.tK);
      birdRssMiB = vmRssKiB(birdPid) / 1024;
      say(
        `bgp: tapnet ${up.tT.toFixed(2)} s, kernel (BIRD) ${up.tK.toFixed(2)} s; node1 RSS ${(rss0 / 1024).toFixed(0)} -> ${(rss1 / 1024).toFixed(0)} MiB, peer2's BIRD ${(bird0 / 1024).toFixed(0)} -> ${(bird1 / 1024).toFixed(0)} MiB`,
      );

      // The FIBs hold exactly the load.
      const r = await c.runAsync([process.execPath, c.CLI, "show", "route", "--lab", LAB, "--node", "node1", "--json"], 120);
      if (r.status !== 0) throw new Error(`tapnet show route --node node1 --json: ${(r.stderr || "").trim().slice(0, 300)}`);
      const want = new Set(routes.map((_, i) => prefixOf(i)));
      let good = 0;
      for (const x of JSON.parse(r.stdout)) if (want.has(x.prefix) && x.kind === "bgp" && x.via === PEER1) good++;
      const kHave = kernelRoutesVia(birdPid, hexGw);
      const ok = good === N && kHave >= N;
      checks.push({ tapnetRoutes: good, kernelRoutes: kHave, want: N, ok });
      if (!ok) checkFailures.push(`node1 has ${good} of ${N} as proto bgp via ${PEER1}, peer2's kernel ${kHave}`);

      const down = await race(false, 600);
      samples.tapnetWithdrawS.push(down.tT);
      samples.kernelWithdrawS.push(down.tK);
      say(`bgp: withdrawn: tapnet ${down.tT.toFixed(2)} s, kernel (BIRD) ${down.tK.toFixed(2)} s`);

      // Forwarding, idle and during a load.
      say(`bgp: forwarding ${D} s idle, then during a load…`);
      const fl = await startLoad(c, "flood", client, server, D * 3 + 660, "10.244.2.2");
      try {
        const a0 = rx();
        const t0 = performance.now();
        await c.sleep(D * 1000);
        const idle = (rx() - a0) / ((performance.now() - t0) / 1000);
        const b0 = rx();
        const t1 = performance.now();
        const tBurst = performance.now();
        const out = birdc(c, "peer1", ["enable", "bench"]);
        if (!/bench: enabled/.test(out)) throw new Error(`birdc enable bench: ${out.trim()}`);
        await c.waitFor("node1 to install the load under the flood", async () => (await installed()) === base + N, 600_000, 50);
        const loadS = (performance.now() - tBurst) / 1000;
        if (loadS < 1) await c.sleep(1000 - loadS * 1000);
        const during = (rx() - b0) / ((performance.now() - t1) / 1000);
        samples.kppsIdle.push(idle / 1000);
        samples.kppsLoad.push(during / 1000);
        say(
          `bgp: forwarding ${(idle / 1000).toFixed(1)} kpps idle, ${(during / 1000).toFixed(1)} kpps during the load (${loadS.toFixed(1)} s under the flood)`,
        );
      } finally {
        await fl.stop();
      }
      const off = birdc(c, "peer1", ["disable", "bench"]);
      if (!/bench: disabled/.test(off)) throw new Error(`birdc disable bench: ${off.trim()}`);
      await c.waitFor("node1 to drop the load", async () => (await installed()) === base, 600_000, 100);
    }
  } finally {
    c.labDown(labFile);
  }
  const metric = (label, unit, t, referenceName, r) => ({
    scenario: "bgp",
    label,
    unit,
    tapnet: median(samples[t]),
    referenceName,
    reference: median(samples[r]),
    ratio: ratio(median(samples[t]), median(samples[r])),
    better: unit === "kpps" ? "higher" : "lower",
    samples: { tapnet: samples[t], reference: samples[r] },
  });
  const n = N.toLocaleString("en");
  const metrics = [
    metric(`${n} prefixes into the FIB`, "s", "tapnetLoadS", "BIRD into its kernel", "kernelLoadS"),
    metric(`${n} prefixes withdrawn`, "s", "tapnetWithdrawS", "BIRD from its kernel", "kernelWithdrawS"),
    metric("node RSS with them", "MiB", "rssLoadedMiB", "the node idle", "rssIdleMiB"),
    metric("RSS growth per prefix", "B", "tapnetGrowthB", "BIRD (peer2)", "birdGrowthB"),
    metric("64B forwarded during the load", "kpps", "kppsLoad", "the same flood idle", "kppsIdle"),
  ];
  notes.push(
    `BIRD (peer1) announces ${N.toLocaleString("en")} /24s over iBGP to tapnet's node1 and to a second BIRD (peer2) that exports them to its kernel, both at once; times from \`birdc enable bench\` (each side polled every ${POLL_MS} ms, tapnet: its speaker's \`installed\` count; the kernel: BIRD's kernel protocol's exported count, checked against /proc/net/route after); RSS growth per prefix: VmRSS after the load minus before, over N (peer2's BIRD holds them in its RIB and exports them; tapnet's node holds them in its Adj-RIB-In, Loc-RIB and FIB), from the first repetition only (fresh lab); ${opts.repeat > 1 ? `medians of ${opts.repeat}` : "one repetition"}.`,
  );
  if (birdRssMiB !== null) notes.push(`for scale: peer2's BIRD had an RSS of ${birdRssMiB.toFixed(0)} MiB with the load in.`);
  return { prefixes: N, repeat: opts.repeat, metrics, notes, samples, checks, checkFailures };
}
