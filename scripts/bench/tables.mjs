// The `tables` scenario of scripts/bench.mjs: tapnet's two big tables against the obvious
// reference, each in a fresh child process (node --expose-gc, so collections settle the
// memory numbers), R times:
//   FDB  scripts/bench/fdb.mjs: the real LearningSwitch through process() with N MACs,
//        vs a Map<number, {port, lastSeen}> doing the same per-frame work (see that file);
//        then, on the same tables, direct lookups: the switch's FdbTable.find() + port()
//        vs Map.get().port on the same keys (the "FDB lookups/s" figure);
//   FIB  scripts/bench-fib.mjs, called as it is (its own generator, seed and reference, a
//        Map per prefix length), with N routes and fewer lookups than its default.
// Returns rows for the table and per-metric records (tapnet, reference, ratio, samples).
import path from "node:path";
import { fileURLToPath } from "node:url";
import { median, ratio } from "./stats.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FDB = path.join(HERE, "fdb.mjs");
const FIB = path.join(HERE, "..", "bench-fib.mjs");

/**
 * Lookups per timed run: twice the entries, at most 2 M (bench-fib.mjs defaults to 10 M)
 * and, for the FIB, at least 1 M (bench-fib.mjs's agreement check reads 1 M addresses).
 */
const lookupsFor = (size) => Math.min(2 * size, 2_000_000);

function parseFib(text) {
  const row = (label) => {
    const re = new RegExp(`^${label.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\s+(-?[\\d.]+)\\s+(-?[\\d.]+)\\s`, "m");
    const m = re.exec(text);
    if (!m) throw new Error(`bench-fib.mjs: no '${label}' row in its output:\n${text.slice(0, 600)}`);
    return { tapnet: Number(m[1]), reference: Number(m[2]) };
  };
  const d = /\(([\d,]+) distinct\)/.exec(text);
  if (!d) throw new Error(`bench-fib.mjs: no route count in its output:\n${text.slice(0, 600)}`);
  const distinct = Number(d[1].replace(/,/g, ""));
  const own = row("own memory, MiB");
  const rss = row("RSS growth, MiB");
  const perEntry = (mib) => (mib * 2 ** 20) / distinct;
  return {
    distinct,
    insertS: { tapnet: row("insert, ms").tapnet / 1000, reference: row("insert, ms").reference / 1000 },
    lookupUniformMps: row("lookup uniform, M/s"),
    lookupInRoutesMps: row("lookup in routes, M/s"),
    lookupHotMps: row("lookup hot 4k dsts, M/s"),
    // "own memory": the Fib's JS heap growth plus its typed arrays (as it accounts for them);
    // the reference is all heap.
    heapBytesPerEntry: { tapnet: perEntry(own.tapnet), reference: perEntry(own.reference) },
    rssBytesPerEntry: { tapnet: perEntry(rss.tapnet), reference: perEntry(rss.reference) },
  };
}

/**
 * size: MACs and routes (1 M by default); repeat: runs of each child; run(argv, timeoutS)
 * runs a command and resolves {status, stdout, stderr} (the bench's tracked runner).
 */
export async function runTables({ size, repeat, run, say }) {
  const fdbRuns = [];
  const fibRuns = [];
  const fdbLookups = lookupsFor(size);
  const fibLookups = Math.max(lookupsFor(size), 1_000_000);
  for (let k = 0; k < repeat; k++) {
    const tag = repeat > 1 ? ` (${k + 1}/${repeat})` : "";
    say(`tables: FDB, ${size.toLocaleString("en")} MACs through LearningSwitch.process() and a Map reference${tag}…`);
    const f = await run([process.execPath, "--expose-gc", FDB, "--entries", String(size), "--lookups", String(fdbLookups)], 120);
    if (f.status !== 0) throw new Error(`fdb.mjs failed (exit ${f.status}): ${(f.stderr || f.stdout).trim().slice(0, 500)}`);
    const j = JSON.parse(f.stdout);
    fdbRuns.push({ switch: j.switch[0], reference: j.reference[0], lookups: j.lookups });
    say(`tables: FIB, ${size.toLocaleString("en")} routes, scripts/bench-fib.mjs --lookups ${fibLookups}${tag}…`);
    const b = await run([process.execPath, "--expose-gc", FIB, "--routes", String(size), "--lookups", String(fibLookups), "--repeat", "1"], 120);
    if (b.status !== 0) throw new Error(`bench-fib.mjs failed (exit ${b.status}): ${(b.stderr || b.stdout).trim().slice(0, 500)}`);
    fibRuns.push({ ...parseFib(b.stdout), text: b.stdout });
  }

  const metrics = [];
  const rec = (structure, metric, label, unit, better, tapnetSamples, refSamples, reference) => {
    const t = median(tapnetSamples);
    const r = median(refSamples);
    const m = {
      scenario: "tables",
      structure,
      metric,
      label,
      unit,
      better,
      implementation: "tapnet",
      referenceName: reference,
      tapnet: t,
      reference: r,
      ratio: ratio(t, r),
      samples: { tapnet: tapnetSamples, reference: refSamples },
    };
    metrics.push(m);
    return m;
  };
  const FDB_REF = "Map<number, entry>";
  const FIB_REF = "Map per prefix length";
  const fdbS = (k) => fdbRuns.map((x) => x.switch[k]);
  const fdbR = (k) => fdbRuns.map((x) => x.reference[k]);
  const fdb = {
    buildS: rec("fdb", "buildS", "FDB build s", "s", "lower", fdbS("buildS"), fdbR("buildS"), FDB_REF),
    lookupMps: rec("fdb", "lookupMps", "FDB lookups M/s", "M frames/s", "higher", fdbS("lookupMps"), fdbR("lookupMps"), FDB_REF),
    direct: rec("fdb", "directLookupMps", "FDB direct lookups M/s", "M lookups/s", "higher", fdbS("directLookupMps"), fdbR("directLookupMps"), FDB_REF),
    heap: rec("fdb", "heapBytesPerEntry", "FDB heap B/entry", "bytes", "lower", fdbS("heapBytesPerEntry"), fdbR("heapBytesPerEntry"), FDB_REF),
    rss: rec("fdb", "rssBytesPerEntry", "FDB RSS B/entry", "bytes", "lower", fdbS("rssBytesPerEntry"), fdbR("rssBytesPerEntry"), FDB_REF),
  };
  const fibT = (k) => fibRuns.map((x) => x[k].tapnet);
  const fibR = (k) => fibRuns.map((x) => x[k].reference);
  const fib = {
    buildS: rec("fib", "insertS", "FIB build s", "s", "lower", fibT("insertS"), fibR("insertS"), FIB_REF),
    lookupMps: rec("fib", "lookupUniformMps", "FIB lookups M/s (uniform)", "M/s", "higher", fibT("lookupUniformMps"), fibR("lookupUniformMps"), FIB_REF),
    inRoutes: rec("fib", "lookupInRoutesMps", "FIB lookups M/s (in routes)", "M/s", "higher", fibT("lookupInRoutesMps"), fibR("lookupInRoutesMps"), FIB_REF),
    hot: rec("fib", "lookupHotMps", "FIB lookups M/s (hot 4k)", "M/s", "higher", fibT("lookupHotMps"), fibR("lookupHotMps"), FIB_REF),
    heap: rec("fib", "heapBytesPerEntry", "FIB heap B/entry", "bytes", "lower", fibT("heapBytesPerEntry"), fibR("heapBytesPerEntry"), FIB_REF),
    rss: rec("fib", "rssBytesPerEntry", "FIB RSS B/entry", "bytes", "lower", fibT("rssBytesPerEntry"), fibR("rssBytesPerEntry"), FIB_REF),
  };
  const distinct = fibRuns[0].distinct;
  const row = (structure, implementation, m, side, reference) => ({
    structure,
    implementation,
    buildS: m.buildS[side],
    lookupMps: m.lookupMps[side],
    // Table lookups alone; the FIB's lookups column is that already.
    directLookupMps: m.direct ? m.direct[side] : null,
    heapBytesPerEntry: m.heap[side],
    rssBytesPerEntry: m.rss[side],
    ratios: reference
      ? { against: reference, build: m.buildS.ratio, lookup: m.lookupMps.ratio, direct: m.direct ? m.direct.ratio : null, heap: m.heap.ratio, rss: m.rss.ratio }
      : null,
  });
  const fdbName = `FDB, ${size.toLocaleString("en")} MACs`;
  const fibName = `FIB, ${size.toLocaleString("en")} routes`;
  return {
    size,
    repeat,
    rows: [
      row(fdbName, "tapnet LearningSwitch.process()", fdb, "tapnet", FDB_REF),
      row(fdbName, `${FDB_REF} (reference)`, fdb, "reference", null),
      row(fibName, "tapnet Fib", fib, "tapnet", FIB_REF),
      row(fibName, `${FIB_REF} (reference)`, fib, "reference", null),
    ],
    metrics,
    notes: [
      `FDB: the real LearningSwitch driven through process() (batches of 256 real 64-byte frames, ports' flush() after each pass; the switch's learn/lookup internals are not called directly); build = ${size.toLocaleString("en")} frames from new stations (learn + 1 destination lookup each); lookups = frames/s for ${fdbLookups.toLocaleString("en")} frames to uniformly drawn learned MACs (a source refresh + a destination lookup each); B/entry = growth of JS heap + ArrayBuffers / of RSS across the build / entries. Reference: a Map<number, {port, lastSeen}> doing the same per-frame work on the same frames and ports.`,
      `FDB direct lookups (the "FDB lookups/s" figure): the same ${fdbLookups.toLocaleString("en")} destination keys straight on the tables the runs above built, no frames: the switch's FdbTable.find(vlan, macHi16, macLo32) + port(slot) ${f2(fdb.direct.tapnet)} M/s vs the reference's Map.get(mac48).port ${f2(fdb.direct.reference)} M/s (x${f2(fdb.direct.ratio)}); all hits, one pass, random order. The FdbTable's own arrays: ${f1(median(fdbS("tableBytesPerEntry")))} B/entry.`,
      `FIB: scripts/bench-fib.mjs --routes ${size} --lookups ${fibLookups} (${distinct.toLocaleString("en")} distinct routes); lookups M/s for addresses uniform over the whole IPv4 space (inside the loaded routes ${f2(fib.inRoutes.tapnet)} vs ${f2(fib.inRoutes.reference)}, hot 4k destinations ${f2(fib.hot.tapnet)} vs ${f2(fib.hot.reference)}); heap B/entry = the Fib's own memory (JS heap + typed arrays) / distinct routes.`,
    ],
    fibOutput: fibRuns.map((x) => x.text),
  };
}
const f2 = (x) => (x === null ? "-" : x.toFixed(2));
const f1 = (x) => (x === null ? "-" : x.toFixed(1));
