#!/usr/bin/env node
// The VXLAN transmit path alone: CPU per GB of TSO super-frames sent by VxlanTx, the
// scatter-gather path (gsoHeaders + sendv) against the copying path (gsoSegment + send),
// in one process, interleaved round by round.
//
//   sudo node scripts/bench/vxlan-tx.mjs [--rounds 10] [--gb 1]
//
// It runs in a network namespace of its own (made and removed here) with a veth pair,
// vxa 10.99.0.1/24 and vxb (up, no address), and a permanent neighbour 10.99.0.2 on vxa:
// the datagrams to 10.99.0.2 go through the kernel's UDP send path (the copy from user
// memory, the UDP GSO packet, routing, the veth's transmit, which hands the GSO packet
// whole to vxb) and vxb's IPv4 input drops them (not local, no forwarding), so little
// receiving work is charged to the sender, the same for both paths. A round
// sends `gb` GB of 64 KiB super-frames (MSS 1398, 45 segments each) through each path, in
// alternating order; CPU is process.cpuUsage() (user + system) over the round. The two
// paths must send the same datagrams (test/io/vxlan-sg.test.ts); this says what each costs.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const ROUNDS = opt("rounds", 10);
const GB = opt("gb", 1);
const NS = `tnvxtx${process.pid}`;

if (process.env.TAPNET_VXLAN_TX_CHILD !== "1") {
  const sh = (...a) => {
    const r = spawnSync(a[0], a.slice(1), { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`${a.join(" ")}: ${r.stderr}`);
  };
  sh("ip", "netns", "add", NS);
  try {
    sh("ip", "-n", NS, "link", "set", "lo", "up");
    sh("ip", "-n", NS, "link", "add", "vxa", "type", "veth", "peer", "name", "vxb");
    sh("ip", "-n", NS, "addr", "add", "10.99.0.1/24", "dev", "vxa");
    sh("ip", "-n", NS, "link", "set", "vxa", "up");
    sh("ip", "-n", NS, "link", "set", "vxb", "up");
    sh("ip", "-n", NS, "neigh", "replace", "10.99.0.2", "lladdr", "02:99:00:00:00:02", "dev", "vxa", "nud", "permanent");
    const r = spawnSync("ip", ["netns", "exec", NS, process.execPath, fileURLToPath(import.meta.url), ...args], {
      stdio: "inherit",
      env: { ...process.env, TAPNET_VXLAN_TX_CHILD: "1" },
    });
    process.exitCode = r.status ?? 1;
  } finally {
    spawnSync("ip", ["netns", "del", NS]);
  }
} else {
  const { TxQueue } = await import("../../dist/core/batch.js");
  const { openUdp } = await import("../../dist/io/udp-native.js");
  const { V, VXLAN_COUNTERS } = await import("../../dist/io/vxlan-counters.js");
  const { VxlanFdb } = await import("../../dist/io/vxlan-fdb.js");
  const { VxlanTx } = await import("../../dist/io/vxlan-tx.js");
  const { emitEthernet, emitIpv4, emitTcp, parseIp, pseudoHeaderSum, writeU16 } = await import("../../dist/wire/index.js");

  const MSS = 1398;
  const FRAMES = 16; // super-frames per send() (one flush)
  const PAYLOAD = MSS * 45;
  const pool = Buffer.alloc(8 * 1024 * 1024);
  const q = new TxQueue(FRAMES);
  const offs = [];
  // Frames at 128 KiB strides; the staging area after them.
  for (let i = 0; i < FRAMES; i++) offs.push(256 + i * 128 * 1024);
  const STAGE = 256 + FRAMES * 128 * 1024;
  const IP_A = parseIp("10.244.1.2");
  const IP_B = parseIp("10.244.2.2");
  let frameLen = 0;
  for (const [i, off] of offs.entries()) {
    const l3 = emitEthernet({ dstAddr: 0x0a5800000002, srcAddr: 0x0a5800000001, etherType: 0x0800 }, pool, off);
    const ip = { dscp: 0, ecn: 0, totalLen: 40 + PAYLOAD, ident: 1, df: true, mf: false, fragOffset: 0, ttl: 64 };
    emitIpv4({ ...ip, protocol: 6, srcAddr: IP_A, dstAddr: IP_B, options: new Uint8Array(0) }, pool, off + l3);
    // One flow per frame: the frames spread over the send sockets as flows do.
    emitTcp({ srcPort: 40000 + i, dstPort: 5201, seq: 1, ack: 1, flags: 0x10, window: 512, urgent: 0, options: new Uint8Array(0) }, pool, off + l3 + 20);
    for (let j = 0; j < PAYLOAD; j++) pool[off + 54 + j] = (j * 7 + i) & 0xff;
    writeU16(pool, off + 34 + 16, pseudoHeaderSum(IP_A, IP_B, 6, 20 + PAYLOAD));
    const h = off - 12;
    pool.fill(0, h, off);
    pool[h] = 1; // NEEDS_CSUM
    pool[h + 1] = 1; // GSO TCPV4
    pool.writeUInt16LE(54, h + 2);
    pool.writeUInt16LE(MSS, h + 4);
    pool.writeUInt16LE(34, h + 6);
    pool.writeUInt16LE(16, h + 8);
    frameLen = 54 + PAYLOAD;
  }

  function open(sg) {
    const c = new Float64Array(VXLAN_COUNTERS.names.length);
    const fdb = new VxlanFdb({ learning: false, fdb: [{ mac: "0a:58:00:00:00:02", remote: "10.99.0.2" }] }, "bench", c);
    const tx = new VxlanTx(
      { vni: 1, dstPort: 8472, udpChecksum: true, mtu: 1450, localAddr: parseIp("10.99.0.1") },
      fdb,
      { c, lastTxError: "" },
      FRAMES,
      () => false,
    );
    if (sg) delete process.env.TAPNET_VXLAN_SG;
    else process.env.TAPNET_VXLAN_SG = "0";
    const one = () => new Uint32Array(1);
    tx.open(pool, STAGE, (o) => openUdp({ ...o, sndbuf: 64 * 1024 * 1024 }), { offsets: one(), lengths: one(), addrs: one(), ports: one(), segs: one() });
    return { tx, c };
  }
  const paths = { sg: open(true), copy: open(false) };
  const sends = Math.ceil((GB * 1e9) / (FRAMES * PAYLOAD));

  function round(name) {
    const { tx, c } = paths[name];
    const before = { err: c[V.txErrors], seg: c[V.segmented] };
    const t0 = process.cpuUsage();
    const w0 = performance.now();
    let sent = 0;
    for (let s = 0; s < sends; s++) {
      q.count = 0;
      for (const off of offs) q.push(off, frameLen);
      sent += tx.send(pool, q, true);
    }
    const t = process.cpuUsage(t0);
    const wall = (performance.now() - w0) / 1000;
    const bytes = sent * PAYLOAD;
    return {
      name,
      cpuSPerGB: (t.user + t.system) / 1e6 / (bytes / 1e9),
      userSPerGB: t.user / 1e6 / (bytes / 1e9),
      sysSPerGB: t.system / 1e6 / (bytes / 1e9),
      wall,
      sent,
      of: sends * FRAMES,
      txErrors: c[V.txErrors] - before.err,
      segmented: c[V.segmented] - before.seg,
    };
  }

  round("sg");
  round("copy"); // warm-up
  const res = { sg: [], copy: [] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const name of r % 2 === 0 ? ["sg", "copy"] : ["copy", "sg"]) {
      const x = round(name);
      res[name].push(x);
      console.log(
        `round ${r + 1} ${name.padEnd(4)} CPU ${x.cpuSPerGB.toFixed(3)} s/GB (user ${x.userSPerGB.toFixed(3)}, system ${x.sysSPerGB.toFixed(3)}), ${x.sent}/${x.of} frames sent, txErrors ${x.txErrors}`,
      );
    }
  }
  const med = (a) => {
    const s = [...a].sort((x, y) => x - y);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  const m = (name, k) => med(res[name].map((x) => x[k]));
  const ratios = res.sg.map((x, i) => x.cpuSPerGB / res.copy[i].cpuSPerGB);
  console.log(
    `median CPU s/GB: scatter-gather ${m("sg", "cpuSPerGB").toFixed(3)} (user ${m("sg", "userSPerGB").toFixed(3)}, system ${m("sg", "sysSPerGB").toFixed(3)}), ` +
      `copy ${m("copy", "cpuSPerGB").toFixed(3)} (user ${m("copy", "userSPerGB").toFixed(3)}, system ${m("copy", "sysSPerGB").toFixed(3)}); ` +
      `paired ratio sg/copy median ${med(ratios).toFixed(3)} (min ${Math.min(...ratios).toFixed(3)}, max ${Math.max(...ratios).toFixed(3)}); load ${(
        await import("node:os")
      )
        .loadavg()
        .map((x) => x.toFixed(2))
        .join(" ")}`,
  );
  paths.sg.tx.close();
  paths.copy.tx.close();
}
