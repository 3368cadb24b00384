// The `rfc2544` and `rfc2889` scenarios of scripts/bench.mjs: the benchmarking methodology
// of RFC 2544 (throughput, latency, frame loss rate) and RFC 2889 (LAN switch address
// caching capacity and learning rate), on virtual links inside lab namespaces.
//
// rfc2544, per device under test (DUT) and frame size (64, 128, 256, 512, 1024, 1280, 1518
// bytes on the wire with the FCS; --sizes to choose), all in one run:
//   DUTs     tapnet's switch (scripts/labs/switch.yaml) and router (router.yaml); the C
//            relay (scripts/relay.c: one read() and one write() per frame, no offloads);
//            the kernel bridge (scripts/bench/switch-kernel.yaml) and a kernel router (a
//            namespace with ip_forward=1 and two veths): the references; tapnet's switch
//            and router again with veth-xdp hosts (AF_XDP). --impls picks devices by name.
//   frames   trafgen (netsniff-ng) in the client's namespace, one process, sends IPv4/UDP
//            frames of the size (TTL 64, header checksum by trafgen, UDP checksum 0,
//            8 source ports, destination port 5201 where nothing listens, so the
//            receiver's stack drops them after the socket lookup) to the server, the MAC
//            of the next hop (the server's, or the router's) as destination.
//   trial    trafgen runs unthrottled, or throttled with `--rate Npps`, for the trial time
//            (--trial S, default 2 s after a 0.2 s start; RFC 2544 §24 says 60 s:
//            --rfc-trials) and is stopped by SIGINT to its PID (`timeout -k` bounds it).
//            Counted at the interfaces' kernel counters inside the lab namespaces:
//            sent = the client interface's tx_packets, received = the server interface's
//            rx_packets once it stops moving (RFC 2544 §23: frames in flight after the
//            sender stops are waited for, up to 2 s). The offered rate is the client's
//            count over the timed window / its length (trafgen's rate limit is only
//            approximate). A TAP whose queue is full does not drop: it pauses the sender
//            (the send fails, tx_dropped counts the attempt, trafgen retries it), which a
//            wire would not do. So a trial passes when received >= sent and the sender
//            was never paused or still achieved 97% of the target rate (a sender short of
//            its target without a pause was short of CPU, not held back: the DUT is
//            credited with the rate achieved); the loss rate (§26.3) after a pause is the
//            wire's view: 1 - delivered rate / target rate over the same timed window
//            (frames lost, or never taken, count alike). A veth client link (veth-xdp
//            hosts, the kernel's DUTs) drops instead, counted in its tx_dropped: there
//            those frames were sent and lost.
//   §26.1    throughput: the unthrottled trial first (the most the sender offers on this
//            path: the stand-in for the medium's maximum rate; if nothing is lost there,
//            the row is sender-bound, `≥`), then a binary search on the target rate down
//            to --resolution (default 4%) of that maximum (scripts/bench/rfc-search.mjs).
//   §26.2    latency: ping RTT (round trip through the DUT twice, not one-way timestamped
//            frames) every 10 ms during a trial at the throughput's target rate: p50/p99.
//   §26.3    frame loss rate: trials at 100%, 90%, … of the maximum rate until two in a
//            row lose nothing.
//
// rfc2889, the switches (tapnet's and the kernel bridge, three hosts each):
//   §5.7     address caching capacity: the FDB is flushed (tapnet: the fdb.flush change;
//            kernel: the bridge's fdb_flush), h2 and h3 are learned (a ping), then h1 sends N
//            learning frames from N distinct locally administered source MACs to h2 at
//            --learn-rate (default 10,000 frames/s), then h2 sends one frame to each of the
//            N addresses at the same rate: a frame for an address the switch holds goes to
//            h1 only, one for an address it lost is flooded, so it also reaches h3.
//            Learned = N - frames h3 received (its rx_packets); h1 must receive all N.
//            Binary search on N up to --max-addresses (default 16384), exact.
//   §5.8     address learning rate: with N = the capacity found (at most --max-addresses),
//            binary search on the rate of the learning frames (unthrottled first) for the
//            highest rate at which all N are learned.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { lossSeries, searchCapacity, searchZeroLoss } from "./rfc-search.mjs";
import { percentile } from "./stats.mjs";

export const FRAME_SIZES = [64, 128, 256, 512, 1024, 1280, 1518];
const DPORT = 5201;
/** From trafgen's "Running!" to the timed window: its socket and the path settle. */
const WARMUP_MS = 200;
/** A trial passes only when the sender achieved this share of its target rate (the rest: counter timing). */
const KEPT_UP = 0.97;
/** Ethertype of the RFC 2889 frames: IEEE 802 local experimental (nothing on a host takes it). */
const ETH_EXP = 0x88b5;

const hex = (b) => `0x${b.toString(16).padStart(2, "0")}`;
const macBytes = (m) =>
  m
    .split(":")
    .map((b) => `0x${b}`)
    .join(", ");

/** One IPv4/UDP frame of `size` bytes on the wire (FCS included: trafgen sends size - 4). */
export function udpFrameConfig(p, size) {
  if (!Number.isInteger(size) || size < 64 || size > 1518) throw new Error(`frame size ${size}: 64..1518`);
  const ipLen = size - 4 - 14;
  const ip = (a) => a.split(".").join(", ");
  return `/* tapnet bench rfc2544: ${size}-byte frames ${p.srcAddr} -> ${p.dstAddr}:${DPORT} via ${p.dstMac} */
{
  ${macBytes(p.dstMac)}, ${macBytes(p.srcMac)}, c16(0x0800),
  0x45, 0x00, c16(${ipLen}), c16(0), c16(0), 64, 17, csumip(14, 33),
  ${ip(p.srcAddr)}, ${ip(p.dstAddr)},
  0x9c, dinc(0x40, 0x47), c16(${DPORT}), c16(${ipLen - 20}), c16(0),
  fill(0x00, ${size - 46})
}
`;
}

/** The i-th RFC 2889 test address: 02:54:4e:TT:HH:LL (locally administered unicast; TT: the trial). */
export const testMac = (tag, i) => [0x02, 0x54, 0x4e, tag & 0xff, (i >> 8) & 0xff, i & 0xff];

/** N 64-byte frames, one per packet block (trafgen sends them in order): src or dst = test address i. */
function addressFramesConfig(n, tag, otherMac, asSource) {
  const other = macBytes(otherMac);
  const out = [];
  for (let i = 0; i < n; i++) {
    const t = testMac(tag, i).map(hex).join(", ");
    out.push(`{ ${asSource ? `${other}, ${t}` : `${t}, ${other}`}, c16(${ETH_EXP}), fill(0x00, 46) }`);
  }
  return `${out.join("\n")}\n`;
}

/**
 * c: the bench's helpers (scripts/bench.mjs controlHelpers()). Returns the RFC 2544 report:
 * per DUT and frame size the throughput search, latency and loss series.
 */
export async function runRfc2544(c) {
  const { opts, say } = c;
  const sizes = opts.sizes ?? FRAME_SIZES;
  const report = {
    trialS: opts.trial,
    resolution: opts.resolution,
    sizes,
    duts: [],
    notes: [],
  };
  const all = rfc2544Duts(c);
  const unknown = (opts.impls ?? []).filter((n) => !all.some((d) => d.name === n));
  if (unknown.length)
    throw new Error(`--impls: rfc2544 has no device ${unknown.map((n) => `'${n}'`).join(", ")} (devices: ${all.map((d) => d.name).join(", ")})`);
  for (const dut of opts.impls ? all.filter((d) => opts.impls.includes(d.name)) : all) {
    const t0 = Date.now();
    say(`rfc2544: ${dut.name}: setting up`);
    const d = { name: dut.name, kind: dut.kind, sizes: [] };
    report.duts.push(d);
    let env;
    try {
      env = await dut.setup();
      const p = await c.floodPath(env.client, env.server, env.dst);
      const drops = isVeth(env.client, p.dev);
      for (const size of sizes) {
        const cfg = path.join(c.tmpDir(), `rfc2544-${size}.cfg`);
        fs.writeFileSync(cfg, udpFrameConfig(p, size));
        const one = (target, during) => trial(c, { client: env.client, dev: p.dev, server: env.server, serverDev: p.serverDev, cfg, target, during, drops });
        const search = await searchZeroLoss(one, { resolution: opts.resolution });
        const pingK = Math.max(100, Math.round(opts.trial * 100));
        let latency = null;
        // At the throughput's rate; none when no rate passed.
        const lat =
          search.senderBound || search.targetPps !== null
            ? await one(search.targetPps, async () => {
                latency = await pingDuring(c, env.client, env.dst, pingK);
              })
            : null;
        // Throttled trials at f x the unthrottled rate (a bisection trial at the same rate is reused).
        const cache = new Map(search.trials.filter((t) => t.targetPps !== null).map((t) => [Number((t.targetPps / search.maxPps).toFixed(3)), t]));
        const loss = await lossSeries(async (f) => {
          const t = cache.get(f) ?? (await one(f * search.maxPps));
          // The series stops after two trials in a row with nothing lost (pass), as §26.3 says.
          return { ...t, lossPercent: t.pass ? 0 : Math.max(t.wireLossPercent, t.lossPercent) };
        });
        const row = {
          size,
          throughputPps: search.throughputPps,
          throughputMbps: (search.throughputPps * size * 8) / 1e6,
          senderBound: search.senderBound,
          maxPps: search.maxPps,
          below: search.below,
          latency: latency && lat ? { ...latency, trialOfferedPps: lat.offeredPps, trialLossPercent: lat.lossPercent } : null,
          loss: loss.map((l) => ({
            fraction: l.fraction,
            targetPps: l.fraction * search.maxPps,
            offeredPps: l.offeredPps,
            deliveredPps: l.deliveredPps,
            lossPercent: l.lossPercent,
            lostTaken: l.offered - l.received,
            pauses: l.pauses,
          })),
          trials: search.trials,
        };
        d.sizes.push(row);
        say(
          `rfc2544: ${dut.name}: ${size} B: ${search.senderBound ? "≥ " : ""}${(row.throughputPps / 1000).toFixed(1)} kpps zero-loss (max offered ${(search.maxPps / 1000).toFixed(1)} kpps, ${search.trials.length} trials), RTT p50 ${latency?.p50Us != null ? latency.p50Us.toFixed(0) : "-"} µs, loss at 100% ${loss[0].lossPercent.toFixed(1)}%`,
        );
      }
    } catch (e) {
      d.error = e instanceof Error ? e.message : String(e);
      say(`rfc2544: ${dut.name}: FAILED: ${d.error}`);
    } finally {
      if (env?.teardown) c.quietly(env.teardown);
    }
    say(`rfc2544: ${dut.name}: ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
  report.notes.push(
    `trials of ${opts.trial} s${opts.trial < 60 ? " (RFC 2544 §24 asks 60 s: --rfc-trials)" : ""}; throughput resolution ${(opts.resolution * 100).toFixed(0)}% of the unthrottled rate; latency: ping RTT every 10 ms during a trial at the throughput rate (round trip, not one-way tagged frames); frames counted at the hosts' interface counters in the lab namespaces.`,
  );
  return report;
}

/** A lab edit: every host on a veth-xdp link. */
function vethXdp(doc) {
  for (const h of doc.get("hosts").items) doc.setIn(["hosts", h.key.value, "link"], "veth-xdp");
}

/** The DUTs of rfc2544, in the order measured; each setup() returns { client, server, dst, teardown }. */
function rfc2544Duts(c) {
  const lab = (file, name, client, server, dst, edit) => async () => {
    const f = await c.labVariant(file, name, edit);
    const ns = await c.labUp(f);
    const teardown = () => c.labDown(f);
    try {
      await c.waitReachable(ns(client), dst);
    } catch (e) {
      c.quietly(teardown);
      throw e;
    }
    return { client: ns(client), server: ns(server), dst, teardown };
  };
  return [
    { name: "kernel bridge", kind: "switch", setup: lab(path.join(c.BENCH_LABS, "switch-kernel.yaml"), "bench-rfcsw-k", "h1", "h2", "10.0.0.2") },
    { name: "C relay", kind: "switch", setup: () => relaySetup(c) },
    { name: "tapnet switch", kind: "switch", setup: lab(path.join(c.LABS, "switch.yaml"), "bench-rfcsw", "h1", "h2", "10.0.0.2") },
    { name: "kernel router", kind: "router", setup: () => kernelRouterSetup(c) },
    { name: "tapnet router", kind: "router", setup: lab(path.join(c.LABS, "router.yaml"), "bench-rfcrt", "h1", "h2", "10.0.2.10") },
    // The same two with veth-xdp hosts (AF_XDP ports, src/io/xdp-port.ts).
    { name: "tapnet switch (veth-xdp hosts)", kind: "switch", setup: lab(path.join(c.LABS, "switch.yaml"), "bench-rfcsw-x", "h1", "h2", "10.0.0.2", vethXdp) },
    { name: "tapnet router (veth-xdp hosts)", kind: "router", setup: lab(path.join(c.LABS, "router.yaml"), "bench-rfcrt-x", "h1", "h2", "10.0.2.10", vethXdp) },
  ];
}

/** Namespaces of our own, removed by the returned teardown (and by the bench's cleanup). */
function ownNamespaces(c, names) {
  const mine = [];
  const teardown = () => {
    for (const n of mine.reverse()) c.quietly(() => c.delNs(n));
  };
  try {
    for (const n of names) {
      c.addNs(n);
      mine.push(n);
    }
  } catch (e) {
    teardown();
    throw e;
  }
  return teardown;
}

async function relaySetup(c) {
  const N = `${c.NS_PREFIX}rfcrelay-node`;
  const H1 = `${c.NS_PREFIX}rfcrelay-h1`;
  const H2 = `${c.NS_PREFIX}rfcrelay-h2`;
  const dropNs = ownNamespaces(c, [N, H1, H2]);
  let relay = null;
  const teardown = () => {
    if (relay) c.stopProc(relay.pid);
    dropNs();
  };
  try {
    const bin = c.buildRelay();
    relay = c.startDaemon(["ip", "netns", "exec", N, bin, "h1", "h2"], "C relay");
    await c.waitFor("the relay's TAPs", () => relay.output().includes("ready") || !c.alive(relay.pid), 5000, 20);
    if (!relay.output().includes("ready")) throw new Error(`relay did not start: ${relay.output().trim()}`);
    for (const [h, ns, ip] of [
      ["h1", H1, "10.0.0.1/24"],
      ["h2", H2, "10.0.0.2/24"],
    ]) {
      c.ipn(N, [`link set ${h} netns ${ns}`]);
      c.ipn(ns, [`link set ${h} name eth0`]);
      c.hostAddr(ns, "eth0", ip);
    }
    await c.waitReachable(H1, "10.0.0.2");
    return { client: H1, server: H2, dst: "10.0.0.2", teardown };
  } catch (e) {
    teardown();
    throw e;
  }
}

async function kernelRouterSetup(c) {
  const R = `${c.NS_PREFIX}rfckr-r`;
  const H1 = `${c.NS_PREFIX}rfckr-h1`;
  const H2 = `${c.NS_PREFIX}rfckr-h2`;
  const teardown = ownNamespaces(c, [R, H1, H2]);
  try {
    c.sh(["ip", "netns", "exec", R, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    c.veth(R, "eth1", H1, "eth0");
    c.veth(R, "eth2", H2, "eth0");
    c.ipn(R, ["address add 10.0.1.1/24 dev eth1", "address add 10.0.2.1/24 dev eth2", "link set eth1 up", "link set eth2 up"]);
    c.hostAddr(H1, "eth0", "10.0.1.10/24", "10.0.1.1");
    c.hostAddr(H2, "eth0", "10.0.2.10/24", "10.0.2.1");
    await c.waitReachable(H1, "10.0.2.10");
    return { client: H1, server: H2, dst: "10.0.2.10", teardown };
  } catch (e) {
    teardown();
    throw e;
  }
}

/** Reads `ns`/`dev`'s rx_packets until two reads 50 ms apart agree (frames in flight land), at most 2 s. */
async function settledRx(c, ns, dev) {
  let last = c.linkStats(ns, dev).rxPackets;
  const until = Date.now() + 2000;
  while (Date.now() < until) {
    await c.sleep(50);
    const now = c.linkStats(ns, dev).rxPackets;
    if (now === last) return now;
    last = now;
  }
  return last;
}

/** Starts trafgen (bounded by timeout -k) and resolves once it prints "Running!". */
async function startTrafgen(c, ns, dev, cfg, ratePps, count, boundS) {
  const argv = ["timeout", "-k", "3", "-s", "INT", String(Math.ceil(boundS)), "ip", "netns", "exec", ns, "trafgen", "--dev", dev, "--conf", cfg];
  // CPU stats stay on: their line is the send loop's wall time (gettimeofday around it).
  argv.push("--cpus", "1", "--no-sock-mem", "--notouch-irq");
  if (ratePps) argv.push("--rate", `${Math.max(1, Math.round(ratePps))}pps`);
  if (count) argv.push("--num", String(count));
  const tg = c.startDaemon(argv, `trafgen in ${ns}`);
  const exited = new Promise((resolve) => tg.child.on("close", (code, signal) => resolve({ code, signal })));
  try {
    await c.waitFor(`trafgen in ${ns} to start`, () => tg.output().includes("Running!") || !c.alive(tg.pid), 30_000, 20);
  } catch (e) {
    c.stopProc(tg.pid);
    throw e;
  }
  return { tg, exited };
}

/** SIGINT to trafgen's group; SIGKILL through stopProc if it is not gone within 5 s. */
async function stopTrafgen(c, { tg, exited }) {
  try {
    process.kill(-tg.pid, "SIGINT");
  } catch {
    // gone
  }
  if ((await Promise.race([exited, c.sleep(5000).then(() => null)])) === null) c.stopProc(tg.pid);
}

/**
 * True when `dev` in namespace `ns` is a veth. A veth does not push back: what its peer
 * cannot take is dropped and counted in its tx_dropped (where a full TAP refuses the send,
 * which trafgen retries), so on a veth tx_dropped is frames lost, not pauses.
 */
function isVeth(ns, dev) {
  const r = spawnSync("ip", ["-n", ns, "-d", "-j", "link", "show", "dev", dev], { encoding: "utf8" });
  try {
    return JSON.parse(r.stdout)[0]?.linkinfo?.info_kind === "veth";
  } catch {
    return false;
  }
}

/**
 * One RFC 2544 trial: trafgen at `target` pps (null: unthrottled) for opts.trial s (or
 * while `during` runs), counted as the file's header says. With `drops` (the client's link
 * is a veth) the frames its tx_dropped counts were sent and lost. Resolves to { pass,
 * offeredPps, lossPercent, offered, received, refused }.
 */
async function trial(c, { client, dev, server, serverDev, cfg, target, during, drops = false }) {
  const k0 = c.linkStats(client, dev);
  const s0 = c.linkStats(server, serverDev).rxPackets;
  let ra;
  let rb;
  const run = await startTrafgen(c, client, dev, cfg, target, 0, c.opts.trial + 60);
  let a;
  let b;
  try {
    if (!run.tg.output().includes("Running!")) throw new Error(`trafgen did not start: ${run.tg.output().trim().split("\n").slice(-3).join(" ")}`);
    await c.sleep(WARMUP_MS);
    a = c.linkStats(client, dev);
    ra = c.linkStats(server, serverDev);
    if (during) await during();
    else await c.sleep(c.opts.trial * 1000);
    b = c.linkStats(client, dev);
    rb = c.linkStats(server, serverDev);
  } finally {
    await stopTrafgen(c, run);
  }
  const k1 = c.linkStats(client, dev);
  const s1 = await settledRx(c, server, serverDev);
  // Frames the DUT's input took (a refused send is retried by trafgen: tx_dropped counts attempts).
  const sent = (k) => k.txPackets + (drops ? k.txDropped : 0);
  const offered = sent(k1) - sent(k0);
  const pauses = drops ? 0 : k1.txDropped - k0.txDropped;
  const received = s1 - s0;
  if (offered <= 0) throw new Error(`trafgen in ${client} sent nothing on ${dev}: ${run.tg.output().trim().split("\n").slice(-3).join(" ")}`);
  const windowS = (b.at - a.at) / 1000;
  const offeredPps = (sent(b) - sent(a)) / windowS;
  const deliveredPps = (rb.rxPackets - ra.rxPackets) / ((rb.at - ra.at) / 1000);
  const lost = Math.max(0, offered - received);
  // The DUT held the sender back only if it paused it; a sender that fell short of its target
  // without a pause was short of CPU itself (the DUT forwarded all it got, at the rate achieved).
  const keptUp = pauses === 0 || (target !== null && offeredPps >= KEPT_UP * target);
  // As on a wire, where a full input queue drops what arrives: of the frames the target
  // rate puts on the link, the share that did not come out (lost, or never taken).
  const wireLossPercent =
    lost === 0 && keptUp ? 0 : target === null || pauses === 0 ? (100 * lost) / offered : Math.max((100 * lost) / offered, 100 * (1 - deliveredPps / target));
  return { pass: lost === 0 && keptUp, offeredPps, deliveredPps, lossPercent: (100 * lost) / offered, wireLossPercent, offered, received, pauses, keptUp };
}

/** `k` pings every 10 ms from `ns` to `dst`: RTT p50/p99 (nearest rank) and replies lost. */
async function pingDuring(c, ns, dst, k) {
  const r = await c.runAsync(["ip", "netns", "exec", ns, "ping", "-n", "-c", String(k), "-i", "0.01", "-W", "1", dst], Math.ceil(k * 0.01) + 20);
  const us = [];
  for (const m of r.stdout.matchAll(/ time=([\d.]+) ms/g)) us.push(Number(m[1]) * 1000);
  if (us.length === 0) return { p50Us: null, p99Us: null, replies: 0, lost: k, method: `ping -c ${k} -i 0.01` };
  return { p50Us: percentile(us, 50), p99Us: percentile(us, 99), replies: us.length, lost: k - us.length, method: `ping -c ${k} -i 0.01` };
}

// ---------------------------------------------------------------- RFC 2889

/** rfc2889: address caching capacity and learning rate of tapnet's switch and the kernel bridge. */
export async function runRfc2889(c) {
  const { opts, say } = c;
  const { request } = await import(pathToFileURL(path.join(c.ROOT, "dist/control/client.js")).href);
  const report = { maxAddresses: opts.maxAddresses, learnRatePps: opts.learnRate, duts: [], notes: [] };
  const duts = [
    {
      name: "kernel bridge",
      file: path.join(c.BENCH_LABS, "switch-kernel.yaml"),
      lab: "bench-rfcsw-k",
      edit: (doc) => doc.setIn(["hosts", "h3"], doc.createNode({ node: "br1", ip: "10.0.0.3/24" })),
      flush: (ns) => c.sh(["ip", "-n", ns("br1"), "link", "set", "dev", "br0", "type", "bridge", "fdb_flush"]),
    },
    {
      name: "tapnet switch",
      file: path.join(c.LABS, "switch.yaml"),
      lab: "bench-rfcsw",
      edit: null,
      flush: async () => {
        await request(`/run/tapnet/bench-rfcsw/sw1.sock`, { cmd: "change", op: "fdb.flush", args: {} });
      },
    },
  ];
  let tag = 0;
  for (const dut of duts) {
    const t0 = Date.now();
    const d = { name: dut.name };
    report.duts.push(d);
    let file = null;
    try {
      file = await c.labVariant(dut.file, dut.lab, dut.edit ?? ((doc) => doc));
      const ns = await c.labUp(file);
      const [h1, h2, h3] = ["h1", "h2", "h3"].map(ns);
      await c.waitReachable(h1, "10.0.0.2");
      await c.waitReachable(h2, "10.0.0.3");
      const macOf = (n) => JSON.parse(c.sh(["ip", "-n", n, "-j", "link", "show", "dev", "eth0"]))[0].address;
      const h2Mac = macOf(h2);
      /** One trial: N addresses learned at `rate` (null: unthrottled), then probed. */
      const learnTrial = async (n, rate, strictRate) => {
        tag = (tag + 1) & 0xff;
        const learnCfg = path.join(c.tmpDir(), "rfc2889-learn.cfg");
        const probeCfg = path.join(c.tmpDir(), "rfc2889-probe.cfg");
        fs.writeFileSync(learnCfg, addressFramesConfig(n, tag, h2Mac, true));
        fs.writeFileSync(probeCfg, addressFramesConfig(n, tag, h2Mac, false));
        await dut.flush(ns);
        // h2 and h3 learned again (and their ARP entries fresh): the probe's only unknowns are the test addresses.
        await c.runAsync(["ip", "netns", "exec", h2, "ping", "-n", "-q", "-c", "1", "-W", "1", "10.0.0.3"], 5);
        const l0 = c.linkStats(h1, "eth0");
        const learn = await startTrafgen(c, h1, "eth0", learnCfg, rate, n, n / Math.min(rate ?? opts.learnRate, opts.learnRate) + 60);
        await learn.exited;
        // trafgen's "S sec, U usec on CPU0": the wall time of its send loop.
        const loop = /(\d+) sec, (\d+) usec on CPU0/.exec(learn.tg.output());
        if (!loop) throw new Error(`trafgen in ${h1}: no timing line: ${learn.tg.output().trim().split("\n").slice(-3).join(" ")}`);
        const learnS = Math.max(1e-6, Number(loop[1]) + Number(loop[2]) / 1e6);
        const l1 = c.linkStats(h1, "eth0");
        const learnSent = l1.txPackets - l0.txPackets;
        const learnRefused = l1.txDropped - l0.txDropped;
        const r1 = c.linkStats(h1, "eth0").rxPackets;
        const r3 = c.linkStats(h3, "eth0").rxPackets;
        const probe = await startTrafgen(c, h2, "eth0", probeCfg, opts.learnRate, n, n / opts.learnRate + 60);
        await probe.exited;
        const got1 = (await settledRx(c, h1, "eth0")) - r1;
        const flooded = (await settledRx(c, h3, "eth0")) - r3;
        const learned = Math.max(0, n - flooded);
        // h1 gets every probe, forwarded or flooded; fewer means the probe itself lost frames.
        const complete = got1 >= n;
        // The rate the learning frames went out at (trafgen's limit is only approximate).
        const ratePps = learnSent / learnS;
        // For the rate (§5.8), as in rfc2544's trials: the switch's TAP may pause the sender
        // (its queue full); the trial then counts only if the sender still made 97% of the target.
        const keptUp = learnRefused === 0 || (rate !== null && ratePps >= KEPT_UP * rate);
        return {
          pass: complete && flooded === 0 && (!strictRate || keptUp),
          ratePps,
          offeredPps: ratePps,
          learned,
          flooded,
          probeReceived: got1,
          learnSent,
          learnRefused,
        };
      };
      say(`rfc2889: ${dut.name}: address caching capacity (up to ${opts.maxAddresses}, learning at ${opts.learnRate} frames/s)…`);
      const cap = await searchCapacity((n) => learnTrial(n, opts.learnRate, false), opts.maxAddresses);
      d.capacity = cap.capacity;
      d.capacityAtLeast = cap.atLeast;
      d.capacityTrials = cap.trials;
      say(`rfc2889: ${dut.name}: capacity ${cap.atLeast ? "≥ " : ""}${cap.capacity} addresses (${cap.trials.length} trials)`);
      if (cap.capacity > 0) {
        const n = cap.capacity;
        const rate = await searchZeroLoss((r) => learnTrial(n, r, true), { resolution: opts.resolution });
        d.learningAddresses = n;
        d.learningRatePps = rate.throughputPps;
        d.learningRateSenderBound = rate.senderBound;
        d.learningRateTrials = rate.trials;
        say(
          `rfc2889: ${dut.name}: learning rate ${rate.senderBound ? "≥ " : ""}${(rate.throughputPps / 1000).toFixed(1)} k addresses/s for ${n} (${rate.trials.length} trials)`,
        );
      }
    } catch (e) {
      d.error = e instanceof Error ? e.message : String(e);
      say(`rfc2889: ${dut.name}: FAILED: ${d.error}`);
    } finally {
      if (file) c.quietly(() => c.labDown(file));
    }
    say(`rfc2889: ${dut.name}: ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
  report.notes.push(
    `learning frames and probes: 64-byte frames of ethertype 0x88b5 from h1 (N source MACs) to h2, then from h2 to each of the N; probes at ${opts.learnRate} frames/s; learned = N - probes h3 received (flooded); a trial passes when all N are learned and h1 received every probe; for the learning rate also when h1's TAP never paused the sender (its queue full); if h1's TAP paused the sender (queue full), the rate achieved (N / trafgen's send-loop time) must still be 97% of the target.`,
  );
  return report;
}

// ---------------------------------------------------------------- output

const kpps = (x) => (typeof x === "number" ? (x / 1000).toFixed(1) : "-");

/** Rows of the RFC 2544 tables: throughput per size and DUT, latency, loss at 100%. */
export function rfc2544Tables(r, fmt) {
  const duts = r.duts.filter((d) => !d.error);
  const parts = [];
  const cell = (d, size, fn) => {
    const row = d.sizes.find((x) => x.size === size);
    return row ? fn(row) : "-";
  };
  const tput = (row) => `${row.senderBound ? "≥ " : ""}${kpps(row.throughputPps)}`;
  const ratio = (a, b, size) => {
    const x = duts.find((d) => d.name === a)?.sizes.find((s) => s.size === size);
    const y = duts.find((d) => d.name === b)?.sizes.find((s) => s.size === size);
    return x && y && x.throughputPps > 0 && y.throughputPps > 0 ? (x.throughputPps / y.throughputPps).toFixed(2) : "-";
  };
  const ratios = [
    ["tapnet switch", "C relay"],
    ["tapnet switch", "kernel bridge"],
    ["tapnet router", "kernel router"],
  ].filter(([a, b]) => duts.some((d) => d.name === a) && duts.some((d) => d.name === b));
  const head = ["RFC 2544 throughput, kpps (frame size B)", ...duts.map((d) => d.name), ...ratios.map(([a, b]) => `${a.replace("tapnet ", "")} / ${b}`)];
  const body = r.sizes.map((size) => [String(size), ...duts.map((d) => cell(d, size, tput)), ...ratios.map(([a, b]) => ratio(a, b, size))]);
  parts.push(fmt(head, body, (i) => i >= 1));
  const lat = (row) => (row.latency?.p50Us != null ? `${row.latency.p50Us.toFixed(0)} / ${row.latency.p99Us.toFixed(0)}` : "-");
  parts.push(
    fmt(
      ["RFC 2544 latency at throughput, RTT p50 / p99 µs", ...duts.map((d) => d.name)],
      r.sizes.map((size) => [String(size), ...duts.map((d) => cell(d, size, lat))]),
      (i) => i >= 1,
    ),
  );
  const loss = (row) =>
    row.loss.map((l) => `${(l.fraction * 100).toFixed(0)}%:${l.lossPercent.toFixed(l.lossPercent > 0 && l.lossPercent < 1 ? 2 : 0)}`).join(" ");
  parts.push(
    fmt(
      ["RFC 2544 frame loss %, at % of max offered", ...duts.map((d) => d.name)],
      r.sizes.map((size) => [String(size), ...duts.map((d) => cell(d, size, loss))]),
      () => false,
    ),
  );
  for (const d of r.duts.filter((x) => x.error)) parts.push(`rfc2544: ${d.name}: failed: ${d.error}\n`);
  return parts.join("\n");
}

export function rfc2889Table(r, fmt) {
  const body = r.duts.map((d) =>
    d.error
      ? [d.name, "failed", d.error.slice(0, 80)]
      : [
          d.name,
          `${d.capacityAtLeast ? "≥ " : ""}${d.capacity}`,
          d.learningRatePps !== undefined ? `${d.learningRateSenderBound ? "≥ " : ""}${kpps(d.learningRatePps)} (N = ${d.learningAddresses})` : "-",
        ],
  );
  return fmt(["RFC 2889", "§5.7 address caching capacity", "§5.8 learning rate, k addresses/s"], body, (i) => i >= 1);
}

/** The chart's series: zero-loss throughput (frames/s) against frame size, one per DUT. */
export function rfc2544Series(r) {
  return r.duts
    .filter((d) => !d.error && d.sizes.length)
    .map((d) => ({ name: d.name, points: d.sizes.map((s) => ({ x: s.size, y: s.throughputPps, atLeast: s.senderBound })) }));
}
