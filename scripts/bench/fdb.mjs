#!/usr/bin/env node
// FDB micro-benchmark for `node scripts/bench.mjs tables` (run by it as a child process
// with --expose-gc; prints one JSON object on stdout). Not meant to be run by hand, but
// it can be: npx tsc -p tsconfig.json && node --expose-gc scripts/bench/fdb.mjs --entries 1000000
//
// What is measured: the real LearningSwitch (dist/elements/learning-switch.js) through
// its process() path — real 64-byte Ethernet frames in a buffer, handed over as batches
// of 256 (offsets and lengths, as a port's wake-up hands them), with every pass ended by
// the ports' real flush() (MemoryPorts with keepSent: false: no device write, the
// counting only). Nothing calls the switch's private learn()/table directly.
//   build:   N frames from port 0, each from a new station (source MAC i of N), all to
//            one station known on port 1: N learns of new MACs (Map insert + entry
//            object) plus N destination lookups, until the table holds N + 1 entries.
//   lookups: L frames from that one station on port 1 to destinations drawn uniformly
//            from the N learned MACs (random order: the table does not stay in cache).
//            Per frame: one lookup of the source (refresh) and one of the destination.
//            Reported as frames/s; each one is a hit and leaves as known unicast.
//   direct:  the "FDB lookups/s" figure proper: after the lookups above, the same L
//            destination keys looked up straight in the switch's FdbTable (sw.fdb.find()
//            on (VLAN 1, MAC top 16 bits, MAC low 32 bits), then port() of the slot), no
//            frames, no switch around it. Every one must hit. Reported as lookups/s.
//   memory:  growth of the JS heap (ArrayBuffer backing stores included: the FdbTable is
//            typed arrays, which heapUsed leaves out) and of RSS across the build, after
//            two collections, divided by N: bytes per entry. tableBytesPerEntry: the
//            FdbTable's own arrays / N (none for the reference).
// The reference does the same per-frame work with the least code: reads the two MACs
// from the same frames into 48-bit numbers, learns into one Map<number, {port,
// lastSeen}>, looks the destination up, pushes to the same ports' TxQueues and flushes
// them the same way; no VLANs, no ageing check, no validity checks. Its direct lookups
// are Map.get(mac).port on the same L keys as 48-bit numbers.
// Each of the R repetitions builds fresh tables (switch, then reference), so every
// number has R samples.
import { performance } from "node:perf_hooks";
import { LearningSwitch } from "../../dist/elements/learning-switch.js";
import { MemoryPort } from "../../dist/io/memory-port.js";
import { Batch } from "../../dist/core/batch.js";

const args = process.argv.slice(2);
function opt(name, def) {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
}
const N = opt("entries", 1_000_000);
const L = opt("lookups", Math.max(N, 2_000_000));
const REPEAT = opt("repeat", 1);
const BATCH = 256;
/** Frames are laid out every STRIDE bytes; the switch reads 14 of them (no tag). */
const STRIDE = 16;
const FRAME_LEN = 60;
const NOW = 1_000_000;

const gc = globalThis.gc;
if (!gc) {
  process.stderr.write("fdb.mjs: run with node --expose-gc\n");
  process.exit(2);
}
function mem() {
  gc();
  gc();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed + m.arrayBuffers };
}

// ---- inputs (allocated before any measurement) ----
// Distinct unicast, locally administered MACs: a 32-bit bijection of i in the low bits.
function mix32(x) {
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d);
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b);
  return (x ^ (x >>> 16)) >>> 0;
}
const PEER_HI = 0x02ff;
const PEER_LO = 0xfffffffe;
const macHi = new Uint16Array(N);
const macLo = new Uint32Array(N);
for (let i = 0; i < N; i++) {
  macHi[i] = 0x0200 | (mix32(i ^ 0x5bd1e995) & 0xfe); // byte 0 = 0x02: unicast, local
  macLo[i] = mix32(i);
  if (macHi[i] === PEER_HI && macLo[i] === PEER_LO) macLo[i] ^= 1;
}
function writeFrame(buf, off, dHi, dLo, sHi, sLo) {
  buf.writeUInt16BE(dHi, off);
  buf.writeUInt32BE(dLo, off + 2);
  buf.writeUInt16BE(sHi, off + 6);
  buf.writeUInt32BE(sLo, off + 8);
  buf[off + 12] = 0x08; // IPv4
  buf[off + 13] = 0x00;
}
// Build frames: station i -> the peer. Lookup frames: the peer -> a random station.
// One buffer; the last frame's 60 bytes must fit past its offset.
const buildBase = 0;
const lookBase = N * STRIDE;
const warmBase = lookBase + L * STRIDE;
const frames = Buffer.alloc(warmBase + 2 * STRIDE + FRAME_LEN);
for (let i = 0; i < N; i++) writeFrame(frames, buildBase + i * STRIDE, PEER_HI, PEER_LO, macHi[i], macLo[i]);
let seed = 12345;
// The lookup frames' destinations again, as key halves (FdbTable) and as 48-bit numbers (Map).
const lookHi = new Uint16Array(L);
const lookLo = new Uint32Array(L);
const lookMac = new Float64Array(L);
for (let i = 0; i < L; i++) {
  seed = mix32(seed + i);
  const k = seed % N;
  writeFrame(frames, lookBase + i * STRIDE, macHi[k], macLo[k], PEER_HI, PEER_LO);
  lookHi[i] = macHi[k];
  lookLo[i] = macLo[k];
  lookMac[i] = macHi[k] * 4294967296 + macLo[k];
}
// The peer announces itself on port 1 (a broadcast), before anything is timed.
writeFrame(frames, warmBase, 0xffff, 0xffffffff, PEER_HI, PEER_LO);

const batch = new Batch(BATCH);
const ports = [0, 1].map((i) => {
  const p = new MemoryPort(`p${i}`, { keepSent: false, batchSize: BATCH });
  p.index = i;
  // Room for a whole input batch per pass (a pass here is one batch from one port).
  return p;
});

/** Runs `count` frames starting at `base` through `fn(port, batch)` in batches of 256. */
function drive(base, count, inPort, fn) {
  const offsets = batch.offsets;
  const lengths = batch.lengths;
  lengths.fill(FRAME_LEN);
  for (let start = 0; start < count; start += BATCH) {
    const n = Math.min(BATCH, count - start);
    let off = base + start * STRIDE;
    for (let i = 0; i < n; i++, off += STRIDE) offsets[i] = off;
    batch.count = n;
    fn(inPort, batch);
    ports[0].flush(frames);
    ports[1].flush(frames);
  }
}

// ---- the reference ----
class MapFdb {
  constructor() {
    /** @type {Map<number, {port: number, lastSeen: number}>} */
    this.table = new Map();
    this.forwarded = 0;
    this.flooded = 0;
  }
  process(inPort, b, buf, now) {
    const t = this.table;
    const inIdx = inPort.index;
    for (let i = 0; i < b.count; i++) {
      const off = b.offsets[i];
      const len = b.lengths[i];
      const src = ((buf[off + 6] << 8) | buf[off + 7]) * 4294967296 + buf.readUInt32BE(off + 8);
      const s = t.get(src);
      if (s === undefined) t.set(src, { port: inIdx, lastSeen: now });
      else {
        s.port = inIdx;
        s.lastSeen = now;
      }
      const dst = ((buf[off] << 8) | buf[off + 1]) * 4294967296 + buf.readUInt32BE(off + 2);
      const d = (buf[off] & 1) === 0 ? t.get(dst) : undefined;
      if (d !== undefined && d.port !== inIdx) {
        this.forwarded++;
        ports[d.port].txq.push(off, len);
      } else {
        this.flooded++;
        ports[1 - inIdx].txq.push(off, len);
      }
    }
  }
  get size() {
    return this.table.size;
  }
}

function makeSwitch() {
  const sw = new LearningSwitch(ports, { maxEntries: N + 1024, ageingTime: 1e6 });
  // Flooding is not used here (everything is known unicast, the one broadcast goes to
  // an untagged access port), but the switch expects scratch space.
  sw.attachScratch(frames, frames.length, 0);
  const fn = (inPort, b) => {
    sw.beginPass();
    sw.process(inPort, b, frames, NOW);
  };
  return {
    table: sw,
    fn,
    size: () => sw.dynamicCount,
    forwarded: () => sw.counters().forwarded,
    bad: () => {
      const c = sw.counters();
      return c.macLimit + c.runt + c.badSrcMac;
    },
    direct: (from, to) => directFdb(sw.fdb, from, to),
    tableBytes: () => sw.fdb.bytes,
  };
}
/** Lookups from..to of the L keys straight in the FdbTable; gives [hits, sum of ports]. */
function directFdb(fdb, from, to) {
  let hits = 0;
  let sum = 0;
  for (let i = from; i < to; i++) {
    const s = fdb.find(1, lookHi[i], lookLo[i]);
    if (s >= 0) {
      hits++;
      sum += fdb.port(s);
    }
  }
  return [hits, sum];
}
/** The same on the reference's Map. */
function directMap(t, from, to) {
  let hits = 0;
  let sum = 0;
  for (let i = from; i < to; i++) {
    const e = t.get(lookMac[i]);
    if (e !== undefined) {
      hits++;
      sum += e.port;
    }
  }
  return [hits, sum];
}
function makeRef() {
  const ref = new MapFdb();
  return {
    table: ref,
    fn: (inPort, b) => ref.process(inPort, b, frames, NOW),
    size: () => ref.size,
    forwarded: () => ref.forwarded,
    bad: () => 0,
    direct: (from, to) => directMap(ref.table, from, to),
    tableBytes: () => null,
  };
}

/** A throwaway table, so the code is compiled by the optimising tier before timing. */
function warmUp(make) {
  const w = make();
  drive(warmBase, 1, ports[1], w.fn);
  drive(buildBase, Math.min(N, 50_000), ports[0], w.fn);
  drive(lookBase, Math.min(L, 50_000), ports[1], w.fn);
}

function runOne(make) {
  warmUp(make);
  const m0 = mem();
  const impl = make();
  drive(warmBase, 1, ports[1], impl.fn);
  let t = performance.now();
  drive(buildBase, N, ports[0], impl.fn);
  const buildS = (performance.now() - t) / 1000;
  const m1 = mem();
  if (impl.size() !== N + 1) throw new Error(`table holds ${impl.size()} entries after the build, not ${N + 1} (bad frames: ${impl.bad()})`);
  const fwd0 = impl.forwarded();
  t = performance.now();
  drive(lookBase, L, ports[1], impl.fn);
  const lookS = (performance.now() - t) / 1000;
  const hits = impl.forwarded() - fwd0;
  if (hits !== L) throw new Error(`${hits} of ${L} lookup frames forwarded as known unicast`);
  // Direct lookups: warm the loop up on a prefix, twice (the second call enters the
  // optimised code instead of replacing it on the stack), then time all L.
  impl.direct(0, Math.min(L, 100_000));
  impl.direct(0, Math.min(L, 100_000));
  t = performance.now();
  const [directHits, portSum] = impl.direct(0, L);
  const directS = (performance.now() - t) / 1000;
  if (directHits !== L) throw new Error(`${directHits} of ${L} direct lookups hit`);
  if (portSum !== 0) throw new Error(`direct lookups: every learned station is on port 0, ports summed to ${portSum}`);
  const tableBytes = impl.tableBytes();
  return {
    buildS,
    buildMps: N / buildS / 1e6,
    lookupMps: L / lookS / 1e6,
    directLookupMps: L / directS / 1e6,
    tableBytesPerEntry: tableBytes === null ? null : tableBytes / N,
    heapBytesPerEntry: (m1.heap - m0.heap) / N,
    rssBytesPerEntry: (m1.rss - m0.rss) / N,
  };
}

const out = { entries: N, lookups: L, repeat: REPEAT, switch: [], reference: [] };
for (let k = 0; k < REPEAT; k++) {
  out.switch.push(runOne(makeSwitch));
  out.reference.push(runOne(makeRef));
}
out.inputMiB = frames.length / 2 ** 20;
out.node = process.version;
process.stdout.write(`${JSON.stringify(out)}\n`);
