#!/usr/bin/env node
// Benchmark of the FIB (src/elements/fib.ts) against the obvious reference, in one run.
//
//   npx tsc -p tsconfig.json && node --expose-gc scripts/bench-fib.mjs [--routes N] [--lookups N] [--seed N] [--repeat N]
//
// Takes about a minute with the defaults, most of it in the reference's lookups.
// Loads N random routes shaped like a real table (mostly /24, some /16-/23, a few /8-/15
// and /25-/32) into the Fib and into a reference — one Map<number, value> per prefix
// length, probing from the longest present length down — then times both over the same
// random addresses: uniform over the whole space; drawn from inside the loaded routes
// (where real traffic goes); and a hot set of 4,096 destinations, where the tables stay
// in the CPU caches and what is left is the cost of the code itself. Memory is measured per structure as the
// growth of RSS, JS heap and ArrayBuffer memory while it is built (run with --expose-gc
// so a collection settles the numbers in between). Not run by the tests.
import { Fib } from "../dist/elements/fib.js";

const args = process.argv.slice(2);
function opt(name, def) {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
}
const N_ROUTES = opt("routes", 1_000_000);
const N_LOOKUPS = opt("lookups", 10_000_000);
const SEED = opt("seed", 7);
const REPEAT = opt("repeat", 3);

// xorshift32: deterministic and cheap.
let s = SEED >>> 0 || 1;
function rand32() {
  s ^= s << 13;
  s ^= s >>> 17;
  s ^= s << 5;
  return s >>> 0;
}
const rand01 = () => rand32() / 4294967296;
const maskOf = (len) => (len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0);

// Length mix of a default-free-zone table, plus a tail of longer routes as an IGP adds.
const MIX = [
  [0.6, 24],
  [0.7, 23],
  [0.82, 22],
  [0.87, 21],
  [0.91, 20],
  [0.935, 19],
  [0.95, 18],
  [0.96, 17],
  [0.975, 16],
  [0.98, "8-15"],
  [1, "25-32"],
];
function pickLen() {
  const x = rand01();
  for (const [p, l] of MIX) {
    if (x < p) {
      if (l === "8-15") return 8 + (rand32() & 7);
      if (l === "25-32") return 25 + (rand32() & 7);
      return l;
    }
  }
  return 24;
}

const prefixes = new Uint32Array(N_ROUTES);
const lens = new Uint8Array(N_ROUTES);
for (let i = 0; i < N_ROUTES; i++) {
  const len = pickLen();
  lens[i] = len;
  prefixes[i] = (rand32() & maskOf(len)) >>> 0;
}

// Addresses: uniform, and inside a random loaded route.
const uniform = new Uint32Array(N_LOOKUPS);
for (let i = 0; i < N_LOOKUPS; i++) uniform[i] = rand32();
const inRoutes = new Uint32Array(N_LOOKUPS);
for (let i = 0; i < N_LOOKUPS; i++) {
  const r = rand32() % N_ROUTES;
  inRoutes[i] = (prefixes[r] | (rand32() & ~maskOf(lens[r]))) >>> 0;
}
const hot = new Uint32Array(N_LOOKUPS);
for (let i = 0; i < N_LOOKUPS; i++) hot[i] = inRoutes[rand32() & 4095];

// ---- the reference: one Map per prefix length, longest present length first ----
class MapPerLength {
  constructor() {
    this.maps = Array.from({ length: 33 }, () => new Map());
    this.present = new Int32Array(0);
  }
  add(prefix, len, value) {
    // Keyed by the network bits, not the masked address: small integers (Smis) up to /30.
    this.maps[len].set(len === 0 ? 0 : prefix >>> (32 - len), value);
  }
  /** Recomputes the probe order; call after loading. */
  seal() {
    const p = [];
    for (let len = 32; len >= 0; len--) if (this.maps[len].size > 0) p.push(len);
    this.present = Int32Array.from(p);
  }
  lookup(addr) {
    const present = this.present;
    const maps = this.maps;
    for (let k = 0; k < present.length; k++) {
      const len = present[k];
      const v = maps[len].get(len === 0 ? 0 : addr >>> (32 - len));
      if (v !== undefined) return v;
    }
    return -1;
  }
}

const gc = globalThis.gc ?? (() => {});
function mem() {
  gc();
  gc();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed, ab: m.arrayBuffers };
}
const MiB = (b) => (b / 2 ** 20).toFixed(1);

// ---- load ----
let m0 = mem();
let t0 = process.hrtime.bigint();
const fib = new Fib();
for (let i = 0; i < N_ROUTES; i++) fib.add(prefixes[i], lens[i], i);
const fibLoadMs = Number(process.hrtime.bigint() - t0) / 1e6;
let m1 = mem();
const fibMem = { rss: m1.rss - m0.rss, heap: m1.heap - m0.heap, ab: m1.ab - m0.ab };

m0 = mem();
t0 = process.hrtime.bigint();
const ref = new MapPerLength();
for (let i = 0; i < N_ROUTES; i++) ref.add(prefixes[i], lens[i], i);
ref.seal();
const refLoadMs = Number(process.hrtime.bigint() - t0) / 1e6;
m1 = mem();
const refMem = { rss: m1.rss - m0.rss, heap: m1.heap - m0.heap, ab: m1.ab - m0.ab };

// ---- agreement check before timing anything ----
let hits = 0;
for (const addrs of [uniform, inRoutes, hot]) {
  for (let i = 0; i < 1_000_000; i++) {
    const a = addrs[i];
    const want = ref.lookup(a);
    const got = fib.lookup(a);
    if (got !== want) {
      console.error(`MISMATCH at ${a.toString(16)}: fib ${got}, reference ${want}`);
      process.exit(1);
    }
    if (addrs === uniform && got >= 0) hits++;
  }
}

// ---- lookups ----
function runFib(addrs) {
  let acc = 0;
  for (let i = 0; i < addrs.length; i++) acc = (acc + fib.lookup(addrs[i])) | 0;
  return acc;
}
function runRef(addrs) {
  let acc = 0;
  for (let i = 0; i < addrs.length; i++) acc = (acc + ref.lookup(addrs[i])) | 0;
  return acc;
}
function timeIt(fn, addrs) {
  const t = process.hrtime.bigint();
  const acc = fn(addrs);
  const ns = Number(process.hrtime.bigint() - t);
  return { mps: addrs.length / (ns / 1e9) / 1e6, nsPer: ns / addrs.length, acc };
}
// Warm both up so they are compiled by the optimising tier before the timed runs.
runFib(uniform.subarray(0, 1_000_000));
runRef(uniform.subarray(0, 1_000_000));

const results = {};
for (const [name, addrs] of [
  ["uniform", uniform],
  ["inRoutes", inRoutes],
  ["hot", hot],
]) {
  const f = [];
  const r = [];
  for (let k = 0; k < REPEAT; k++) {
    // Interleaved, so both see the same machine state.
    f.push(timeIt(runFib, addrs));
    r.push(timeIt(runRef, addrs));
  }
  if (f[0].acc !== r[0].acc) {
    console.error(`checksum mismatch on ${name}: ${f[0].acc} vs ${r[0].acc}`);
    process.exit(1);
  }
  const median = (xs) => xs.map((x) => x.mps).sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  results[name] = { fib: median(f), ref: median(r) };
}

// ---- report ----
const st = fib.stats();
const pad = (x, n) => String(x).padStart(n);
console.log(
  `FIB benchmark — node ${process.version}, ${N_ROUTES.toLocaleString("en")} routes generated (${fib.size.toLocaleString("en")} distinct), ${N_LOOKUPS.toLocaleString("en")} lookups per run, median of ${REPEAT}, seed ${SEED}${globalThis.gc ? "" : " (no --expose-gc: memory numbers are rough)"}`,
);
console.log(
  `trie: ${st.chunksInUse.toLocaleString("en")} child tables in use, capacity ${st.chunkCapacity.toLocaleString("en")}, ${MiB(st.trieBytes)} MiB of typed arrays; uniform addresses with a route: ${(hits / 1e4).toFixed(1)}%`,
);
console.log("");
console.log(`${"".padEnd(28)}${pad("Fib", 12)}${pad("Map/length", 12)}${pad("Fib/ref", 10)}`);
const row = (label, a, b, fmt, ratio = a / b) => console.log(`${label.padEnd(28)}${pad(fmt(a), 12)}${pad(fmt(b), 12)}${pad(`${ratio.toFixed(2)}x`, 10)}`);
row("insert, ms", fibLoadMs, refLoadMs, (x) => x.toFixed(0));
row("insert, routes/s (M)", N_ROUTES / fibLoadMs / 1e3, N_ROUTES / refLoadMs / 1e3, (x) => x.toFixed(2));
row("lookup uniform, M/s", results.uniform.fib, results.uniform.ref, (x) => x.toFixed(2));
row("lookup in routes, M/s", results.inRoutes.fib, results.inRoutes.ref, (x) => x.toFixed(2));
row("lookup hot 4k dsts, M/s", results.hot.fib, results.hot.ref, (x) => x.toFixed(2));
row("lookup uniform, ns", 1e3 / results.uniform.fib, 1e3 / results.uniform.ref, (x) => x.toFixed(1));
row("lookup in routes, ns", 1e3 / results.inRoutes.fib, 1e3 / results.inRoutes.ref, (x) => x.toFixed(1));
row("lookup hot 4k dsts, ns", 1e3 / results.hot.fib, 1e3 / results.hot.ref, (x) => x.toFixed(1));
row("RSS growth, MiB", fibMem.rss, refMem.rss, MiB);
row("JS heap growth, MiB", fibMem.heap, refMem.heap, MiB);
row("ArrayBuffer growth, MiB", fibMem.ab, refMem.ab, MiB);
// Exact: the Fib's typed arrays as it accounts for them, plus its route maps on the heap.
row("own memory, MiB", fibMem.heap + st.trieBytes, refMem.heap, MiB);
const final = process.memoryUsage();
console.log("");
console.log(
  `process at the end: RSS ${MiB(final.rss)} MiB, heap used ${MiB(final.heapUsed)} MiB, ArrayBuffers ${MiB(final.arrayBuffers)} MiB (both structures and ${MiB(3 * N_LOOKUPS * 4 + N_ROUTES * 5)} MiB of generated inputs)`,
);
