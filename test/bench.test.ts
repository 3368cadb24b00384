/**
 * Smoke tests of the benchmark (scripts/bench.mjs), not timing assertions:
 * - its helpers (medians, nearest-rank percentiles, the SVG ratio chart);
 * - one short run of the `switch` scenario must measure every implementation (kernel
 *   bridge, C relay, C relay with vnet headers, with two threads, tapnet with and without
 *   offloads) with numbers above zero — TCP, the
 *   64-byte trafgen flood (needs trafgen, Debian netsniff-ng), RTT p50/p99, and CPU per
 *   frame and peak RSS for the two that are processes — write them as JSON with the
 *   ratios and the per-metric records, draw the SVG, and leave no namespace or process
 *   behind (about 12 s);
 * - `switch --impls` with the two io_uring rows (C relay -u, tapnet with io: uring, which
 *   the bench checks the node really uses): both measured (about 20 s);
 * - `switch --impls 'OVS netdev (AF_PACKET)'`: Open vSwitch's userspace datapath started by the
 *   bench in a namespace of its own, measured with numbers above zero, its daemons and
 *   namespaces gone after (needs openvswitch-switch; about 8 s);
 * - a small `tables` run (FDB and FIB with 20,000 entries; no root needed; about 6 s);
 * - the control scenario's route-table check and ping parsing, on made-up listings;
 * - the trace scenario's paired ratios, on made-up samples;
 * - a short `control` run (5,000 routes per burst, 1 s windows, one host joining): every
 *   figure measured with its reference, every route-table check passed, nothing left
 *   behind (about 20 s);
 * - an `etcd` run (flannel-etcd.yaml: 30 single leases, 200 at once): every figure with its
 *   reference, every lease measured, nothing left behind (about 20 s).
 */
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { ROOT, canRunLabs, netnsList } from "./integration/harness.js";

const has = (cmd: string): boolean => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;
const canBench = (): boolean => canRunLabs() && has("iperf3") && has("gcc") && has("trafgen");
const built = (): boolean => fs.existsSync(path.join(ROOT, "dist/elements/learning-switch.js"));

interface Row {
  implementation: string;
  tcpGbps?: number;
  kpps?: number;
  sentKpps?: number;
  refusedKps?: number;
  lossPercent?: number;
  rttUs?: number;
  rttP50Us?: number;
  rttP99Us?: number;
  cpuSPerMFrames?: number | null;
  peakRssMiB?: number | null;
  error?: string;
  samples?: Record<string, Array<number | null>>;
  ratios?: Record<string, { tcp: number | null; kpps: number | null; rtt: number | null; rttP99: number | null; cpu: number | null }>;
}
interface MetricRecord {
  scenario: string;
  metric: string;
  referenceName: string;
  tapnet: number;
  reference: number;
  ratio: number;
  samples: { tapnet: number[]; reference: number[] };
}

function run(args: string[], timeoutMs: number): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(ROOT, "scripts/bench.mjs"), ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    // SIGINT: the bench's own handler removes what it made.
    const timer = setTimeout(() => child.kill("SIGINT"), timeoutMs);
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

// The helpers are plain .mjs modules of the bench: imported by URL, untyped.
const load = async (f: string): Promise<any> => import(pathToFileURL(path.join(ROOT, "scripts/bench", f)).href);

describe("bench helpers", () => {
  it("median and nearest-rank percentiles", async () => {
    const { median, percentile, ratio } = await load("stats.mjs");
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([null, 5])).toBe(5);
    expect(median([])).toBeNull();
    const xs = Array.from({ length: 1000 }, (_, i) => 1000 - i); // 1..1000, shuffled order
    expect(percentile(xs, 50)).toBe(500);
    expect(percentile(xs, 99)).toBe(990);
    expect(percentile([7], 99)).toBe(7);
    expect(ratio(1, 4)).toBe(0.25);
    expect(ratio(1, 0)).toBeNull();
    expect(ratio(null, 1)).toBeNull();
  });

  it("SVG ratio chart: a well-formed document with labels, values and a 1.0 line", async () => {
    const { ratioChart } = await load("svg.mjs");
    const svg: string = ratioChart(
      [
        { group: "switch", metric: "TCP Gbit/s", against: "kernel bridge", ratio: 0.11, better: "higher" },
        { group: "switch", metric: "RTT p50 µs", against: "C relay <x>", ratio: 2.5, better: "lower" },
        { group: "switch", metric: "CPU s/Mframe", against: "C relay", ratio: null, better: "lower" },
      ],
      { title: "t", subtitle: "s" },
    );
    expect(svg.startsWith("<?xml")).toBe(true);
    expect(svg.trimEnd().endsWith("</svg>")).toBe(true);
    expect(svg).toContain("TCP Gbit/s");
    expect(svg).toContain("C relay &lt;x&gt;");
    expect(svg).toContain("0.11x");
    expect(svg).toContain("2.50x");
    expect(svg).not.toContain("CPU s/Mframe"); // no ratio, no bar
    expect(svg).toMatch(/class="one"/);
    expect((svg.match(/<rect [^>]*class="(good|bad)"/g) ?? []).length).toBe(2 + 2); // 2 bars + 2 legend swatches
  });
});

describe("bench trace helpers", () => {
  it("summarize: medians per variant, ratios paired within each round with their quartiles", async () => {
    const { summarize } = await load("trace.mjs");
    const r = summarize({
      before: { kpps: [100, 50, 80], cpuSPerMFrames: [2, 4, null] },
      off: { kpps: [90, 55, 80], cpuSPerMFrames: [2, 4, 3] },
    });
    expect(r.medians).toEqual({ before: { kpps: 80, cpuSPerMFrames: 3 }, off: { kpps: 80, cpuSPerMFrames: 3 } });
    // Rounds: 0.9, 1.1, 1.0 -> median 1.0 (the ratio of medians would say 1.0 too, by luck).
    expect(r.ratios.off.vsBefore.kpps).toEqual({ median: 1, p25: 0.9, p75: 1.1, rounds: 3 });
    // A round without a CPU figure is left out of its pairs.
    expect(r.ratios.off.vsBefore.cpu).toMatchObject({ median: 1, rounds: 2 });
    expect(r.ratios.before.vsOff.kpps.median).toBe(1);
    // Without a `before` tree there is nothing to pair with.
    expect(summarize({ off: { kpps: [1], cpuSPerMFrames: [1] } }).ratios.off.vsBefore.kpps).toBeNull();
  });
});

describe("bench control helpers", () => {
  const own = [
    { prefix: "10.0.1.0/24", via: null, kind: "connected" },
    { prefix: "10.0.2.0/24", via: null, kind: "connected" },
  ];
  const added = (n: number, prefixOf: (i: number) => string): Set<string> => new Set(Array.from({ length: n }, (_, i) => prefixOf(i)));

  it("route prefixes: distinct /24s clear of the lab's subnets", async () => {
    const { prefixOf } = await load("control.mjs");
    const xs = [...added(200_000, prefixOf)];
    expect(new Set(xs).size).toBe(200_000);
    expect(xs[0]).toBe("64.0.0.0/24");
    expect(xs.every((x) => /^(6[4-9]|7\d)\.\d+\.\d+\.0\/24$/.test(x))).toBe(true);
  });

  it("route-table check: passes the exact table, names what is missing, wrong, foreign or doubled", async () => {
    const { prefixOf, routeTableProblems } = await load("control.mjs");
    const want = added(100, prefixOf);
    const rows = [...own, ...[...want].map((p) => ({ prefix: p, via: "10.0.2.10", kind: "static" }))];
    expect(routeTableProblems(rows, own, want, "10.0.2.10")).toEqual([]);
    expect(routeTableProblems(own, own, new Set(), "10.0.2.10")).toEqual([]);

    const missing: string[] = routeTableProblems(rows.slice(0, -3), own, want, "10.0.2.10");
    expect(missing).toContain("99 routes listed, 2 of its own + 100 added expected");
    expect(missing).toContain("3 of the 100 added routes missing");

    const wrongVia = rows.map((r, i) => (i === 5 ? { ...r, via: "10.0.1.10" } : r));
    expect(routeTableProblems(wrongVia, own, want, "10.0.2.10")).toEqual([
      `added routes not static via 10.0.2.10: 1 (e.g. ${rows[5].prefix} via 10.0.1.10 (static))`,
    ]);

    const foreign = [...rows.slice(0, -1), { prefix: "192.0.2.0/24", via: "10.0.2.10", kind: "static" }];
    const f: string[] = routeTableProblems(foreign, own, want, "10.0.2.10");
    expect(f).toContain("1 of the 100 added routes missing");
    expect(f).toContain("routes neither its own nor added: 1 (e.g. 192.0.2.0/24)");

    const doubled = [...rows.slice(0, -1), rows[2]];
    expect(routeTableProblems(doubled, own, want, "10.0.2.10")).toEqual([
      "1 of the 100 added routes missing",
      `prefixes listed twice: 1 (e.g. ${rows[2].prefix})`,
    ]);

    // After the deletion: a route left behind, or one of the node's own gone.
    expect(routeTableProblems([...own, rows[2]], own, new Set(), "10.0.2.10")).toEqual([
      "3 routes listed, 2 of its own + 0 added expected",
      `routes neither its own nor added: 1 (e.g. ${rows[2].prefix})`,
    ]);
    expect(routeTableProblems(own.slice(1), own, new Set(), "10.0.2.10")).toEqual([
      "1 route listed, 2 of its own + 0 added expected",
      "its own routes missing: 1 (e.g. 10.0.1.0/24)",
    ]);
  });

  it("ping parsing: max and p99 RTT, and replies missing between the first and the last", async () => {
    const { parsePing } = await load("control.mjs");
    const line = (seq: number, ms: number): string => `64 bytes from 10.0.2.10: icmp_seq=${seq} ttl=63 time=${ms} ms`;
    const text = ["PING 10.0.2.10 (10.0.2.10) 56(84) bytes of data.", line(1, 0.2), line(2, 0.3), line(4, 12.5), line(5, 0.25), ""].join("\n");
    const p = parsePing(text, "test");
    expect(p.replies).toBe(4);
    expect(p.lost).toBe(1);
    expect(p.maxUs).toBe(12500);
    expect(p.p99Us).toBe(12500);
    expect(p.p50Us).toBe(250);
    expect(() => parsePing("PING x\n", "test")).toThrow(/no reply/);
  });
});

describe.skipIf(!built())("bench tables (smoke)", () => {
  it("tables --table-size 20000: FDB and FIB rows with ratios and samples", async () => {
    const json = path.join(os.tmpdir(), `tapnet-bench-tables-${process.pid}.json`);
    try {
      const r = await run(["tables", "--table-size", "20000", "--json", json], 25_000);
      expect(r.status, r.stderr).toBe(0);
      const report = JSON.parse(fs.readFileSync(json, "utf8")) as {
        scenarios: unknown[];
        tables: { rows: Array<{ implementation: string; buildS: number; lookupMps: number; heapBytesPerEntry: number }>; metrics: MetricRecord[] };
      };
      expect(report.scenarios).toEqual([]);
      expect(report.tables.rows.map((x) => x.implementation)).toEqual([
        "tapnet LearningSwitch.process()",
        "Map<number, entry> (reference)",
        "tapnet Fib",
        "Map per prefix length (reference)",
      ]);
      for (const x of report.tables.rows) {
        expect(x.buildS, x.implementation).toBeGreaterThan(0);
        expect(x.lookupMps, x.implementation).toBeGreaterThan(0);
      }
      const lookups = report.tables.metrics.find((m) => m.metric === "lookupMps");
      expect(lookups?.ratio).toBeGreaterThan(0);
      expect(lookups?.samples.tapnet).toHaveLength(1);
      // FDB lookups straight on the switch's FdbTable vs Map.get() on the same keys.
      const direct = report.tables.metrics.find((m) => m.metric === "directLookupMps");
      expect(direct?.tapnet).toBeGreaterThan(0);
      expect(direct?.reference).toBeGreaterThan(0);
      expect(direct?.ratio).toBeGreaterThan(0);
      expect(r.stdout).toMatch(/direct M\/s/);
      expect(r.stdout).toMatch(/FDB, 20,000 MACs\s+tapnet LearningSwitch\.process\(\)/);
    } finally {
      fs.rmSync(json, { force: true });
    }
  }, 30_000);
});

describe.skipIf(!canBench())("bench (smoke)", () => {
  it("switch --duration 1: every implementation measured, JSON with ratios, SVG, nothing left behind", async () => {
    const json = path.join(os.tmpdir(), `tapnet-bench-smoke-${process.pid}.json`);
    const svg = path.join(os.tmpdir(), `tapnet-bench-smoke-${process.pid}.svg`);
    try {
      const r = await run(["switch", "--duration", "1", "--pings", "200", "--json", json, "--svg", svg], 85_000);
      expect(r.status, r.stderr).toBe(0);
      const report = JSON.parse(fs.readFileSync(json, "utf8")) as {
        repeat: number;
        scenarios: Array<{ name: string; reference: string; results: Row[]; metrics: MetricRecord[] }>;
      };
      expect(report.repeat).toBe(1);
      expect(report.scenarios.map((s) => s.name)).toEqual(["switch"]);
      const rows = report.scenarios[0].results;
      expect(rows.map((x) => x.implementation)).toEqual([
        "kernel bridge",
        "C relay",
        "C relay (vnet)",
        "C relay (vnet, 2 threads)",
        "tapnet",
        "tapnet (no offloads)",
      ]);
      for (const x of rows) {
        expect(x.error, x.implementation).toBeUndefined();
        expect(x.tcpGbps, x.implementation).toBeGreaterThan(0);
        // The trafgen flood: frames received at h2's interface, sent = taken by h1's.
        expect(x.kpps, x.implementation).toBeGreaterThan(0);
        expect(x.sentKpps, x.implementation).toBeGreaterThan(0);
        expect(x.refusedKps, x.implementation).toBeGreaterThanOrEqual(0);
        expect(x.lossPercent, x.implementation).toBeGreaterThanOrEqual(0);
        expect(x.lossPercent, x.implementation).toBeLessThanOrEqual(100);
        expect(x.rttP50Us, x.implementation).toBeGreaterThan(0);
        expect(x.rttP99Us, x.implementation).toBeGreaterThanOrEqual(x.rttP50Us ?? Infinity);
        expect(x.rttUs, x.implementation).toBe(x.rttP50Us);
        expect(x.samples?.tcpGbps, x.implementation).toHaveLength(1);
      }
      // Processes that forward: CPU per million frames and peak RSS; the kernel: none.
      for (const x of rows.slice(1)) {
        expect(x.cpuSPerMFrames, x.implementation).toBeGreaterThan(0);
        expect(x.peakRssMiB, x.implementation).toBeGreaterThan(0);
      }
      expect(rows[0].cpuSPerMFrames).toBeNull();
      const tapnet = rows[4];
      expect(Object.keys(rows[5].ratios ?? {}).sort()).toEqual(["C relay", "kernel bridge"]);
      expect(Object.keys(rows[3].ratios ?? {}).sort()).toEqual(["C relay (vnet)", "kernel bridge"]);
      expect(Object.keys(tapnet.ratios ?? {}).sort()).toEqual(["C relay", "C relay (vnet)", "kernel bridge"]);
      expect(tapnet.ratios?.["kernel bridge"].tcp).toBeGreaterThan(0);
      expect(tapnet.ratios?.["C relay"].cpu).toBeGreaterThan(0);
      // One record per metric and reference, of medians, with the raw samples.
      const recs = report.scenarios[0].metrics;
      const tcp = recs.find((m) => m.metric === "tcpGbps" && m.referenceName === "kernel bridge");
      expect(tcp?.tapnet).toBe(tapnet.tcpGbps);
      expect(tcp?.reference).toBe(rows[0].tcpGbps);
      expect(tcp?.ratio).toBeCloseTo((tapnet.tcpGbps ?? 0) / (rows[0].tcpGbps ?? 1), 9);
      expect(tcp?.samples.tapnet).toHaveLength(1);
      expect(recs.some((m) => m.metric === "cpuSPerMFrames" && m.referenceName === "C relay")).toBe(true);
      expect(r.stdout).toMatch(/switch\s+tapnet/);
      expect(r.stdout).toMatch(/RTT p50 µs\s+RTT p99 µs/);
      expect(fs.readFileSync(svg, "utf8")).toContain("vs kernel bridge");
      expect(netnsList().filter((n) => n.startsWith("tnb-") || n.startsWith("tn.bench-"))).toEqual([]);
    } finally {
      fs.rmSync(json, { force: true });
      fs.rmSync(svg, { force: true });
    }
  }, 90_000);
});

describe.skipIf(!canBench())("bench io_uring rows (smoke)", () => {
  it("switch --impls 'C relay (io_uring),tapnet (io_uring)': both rows measured, in that order", async () => {
    const json = path.join(os.tmpdir(), `tapnet-bench-uring-${process.pid}.json`);
    try {
      const r = await run(["switch", "--impls", "C relay (io_uring),tapnet (io_uring)", "--duration", "1", "--pings", "100", "--json", json], 60_000);
      expect(r.status, r.stderr).toBe(0);
      const report = JSON.parse(fs.readFileSync(json, "utf8")) as { scenarios: Array<{ results: Row[] }> };
      const rows = report.scenarios[0].results;
      expect(rows.map((x) => x.implementation)).toEqual(["C relay (io_uring)", "tapnet (io_uring)"]);
      for (const x of rows) {
        expect(x.error, x.implementation).toBeUndefined();
        expect(x.tcpGbps, x.implementation).toBeGreaterThan(0);
        expect(x.kpps, x.implementation).toBeGreaterThan(0);
        expect(x.cpuSPerMFrames, x.implementation).toBeGreaterThan(0);
      }
      expect(netnsList().filter((n) => n.startsWith("tnb-") || n.startsWith("tn.bench-"))).toEqual([]);
    } finally {
      fs.rmSync(json, { force: true });
    }
  }, 65_000);

  it("--impls with a name the scenario lacks is refused with the rows it has", async () => {
    const r = await run(["switch", "--impls", "C relay (xdp)", "--duration", "1"], 20_000);
    expect(r.status).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/--impls: switch has no row 'C relay \(xdp\)' \(rows: kernel bridge, C relay, .*C relay \(io_uring\)/);
  }, 25_000);
});

const hasOvs = (): boolean => fs.existsSync("/usr/sbin/ovs-vswitchd") && fs.existsSync("/usr/share/openvswitch/vswitch.ovsschema");
describe.skipIf(!canBench() || !hasOvs())("bench OVS row (smoke)", () => {
  it("switch --impls 'OVS netdev (AF_PACKET)': measured with numbers, daemons and namespaces gone after", async () => {
    const json = path.join(os.tmpdir(), `tapnet-bench-ovs-${process.pid}.json`);
    try {
      const r = await run(["switch", "--impls", "OVS netdev (AF_PACKET)", "--duration", "1", "--pings", "100", "--json", json], 60_000);
      expect(r.status, r.stderr).toBe(0);
      const report = JSON.parse(fs.readFileSync(json, "utf8")) as {
        scenarios: Array<{ results: Array<Row & { ovs?: { portType: string; ports: Record<string, { type: string }>; pids: Record<string, number> } }> }>;
      };
      const rows = report.scenarios[0].results;
      expect(rows.map((x) => x.implementation)).toEqual(["OVS netdev (AF_PACKET)"]);
      const x = rows[0];
      expect(x.error).toBeUndefined();
      expect(x.tcpGbps).toBeGreaterThan(0);
      expect(x.kpps).toBeGreaterThan(0);
      expect(x.rttP50Us).toBeGreaterThan(0);
      // ovs-vswitchd's CPU over the flood per million frames the hosts received, and its peak RSS.
      expect(x.cpuSPerMFrames).toBeGreaterThan(0);
      expect(x.peakRssMiB).toBeGreaterThan(0);
      // Ports of the netdev datapath's default kind ("system": AF_PACKET), not AF_XDP.
      expect(x.ovs?.portType).toBe("system");
      expect(Object.values(x.ovs?.ports ?? {}).map((p) => p.type)).toEqual(['""', '""']);
      const pids = Object.values(x.ovs?.pids ?? {});
      expect(pids).toHaveLength(2);
      for (const pid of pids) expect(fs.existsSync(`/proc/${pid}`), `pid ${pid}`).toBe(false);
      expect(netnsList().filter((n) => n.startsWith("tnb-"))).toEqual([]);
    } finally {
      fs.rmSync(json, { force: true });
    }
  }, 70_000);
});

describe.skipIf(!canBench())("bench control (smoke)", () => {
  it("control --duration 1 --routes 5000 --host-adds 1: every figure against its reference, route tables checked, nothing left behind", async () => {
    const json = path.join(os.tmpdir(), `tapnet-bench-control-${process.pid}.json`);
    try {
      const r = await run(["control", "--duration", "1", "--routes", "5000", "--host-adds", "1", "--json", json], 38_000);
      expect(r.status, r.stderr).toBe(0);
      const report = JSON.parse(fs.readFileSync(json, "utf8")) as {
        scenarios: unknown[];
        control: {
          routes: number;
          metrics: MetricRecord[];
          checks: Array<{ phase: string; ok: boolean; expected: number; listed: number; afterDelete: number }>;
          checkFailures: string[];
          samples: Record<string, number[]>;
        };
      };
      expect(report.scenarios).toEqual([]);
      const c = report.control;
      expect(c.routes).toBe(5000);
      // One burst per phase (the pings, idle, TCP, flood), each listed whole and then gone.
      expect(c.checks.map((x) => x.phase)).toEqual(["stall", "idle", "tcp", "flood"]);
      expect(c.checkFailures).toEqual([]);
      for (const x of c.checks) {
        expect(x.ok, x.phase).toBe(true);
        expect(x.listed, x.phase).toBe(x.expected);
        expect(x.listed - x.afterDelete, x.phase).toBeGreaterThanOrEqual(5000);
      }
      expect(c.metrics.map((m) => m.metric)).toEqual([
        "routeAddsBatchedTcp",
        "routeAddsBatchedFlood",
        "routeAddsSingleTcp",
        "routeAddsSingleFlood",
        "routeAddsBatchedIdle",
        "kppsDuringBurst",
        "tcpDuringBurst",
        "pingMaxDuringBurst",
        "pingP99DuringBurst",
        "hostAddFirstReplyMs",
        "hostAddVsKernelMs",
      ]);
      for (const m of c.metrics) {
        expect(m.reference, `${m.metric} ${m.referenceName}`).toBeGreaterThan(0);
        expect(m.samples.tapnet, m.metric).toHaveLength(1);
        // Forwarding during a short burst may be ~0; everything else was measured.
        if (m.metric === "kppsDuringBurst" || m.metric === "tcpDuringBurst") expect(m.tapnet, m.metric).toBeGreaterThanOrEqual(0);
        else {
          expect(m.tapnet, m.metric).toBeGreaterThan(0);
          expect(m.ratio, m.metric).toBeCloseTo(m.tapnet / m.reference, 9);
        }
      }
      expect(c.samples.labUpMs).toHaveLength(1);
      expect(c.samples.kernelHostMs).toHaveLength(1);
      expect(r.stdout).toMatch(/route adds\/s, batched, under 64B flood\s+[\d,]+\s+same node, idle/);
      expect(r.stdout).toMatch(/route table after each burst\s+correct, 4 of 4/);
      expect(netnsList().filter((n) => n.startsWith("tnb-") || n.startsWith("tn.bench-"))).toEqual([]);
    } finally {
      fs.rmSync(json, { force: true });
    }
  }, 40_000);
});

describe.skipIf(!canRunLabs() || !has("etcd") || !has("etcdctl"))("bench etcd (smoke)", () => {
  it("etcd: lease-to-route figures for 1 and 200 leases, expiry, the agents' CPU and RSS, each with its reference; nothing left behind", async () => {
    const json = path.join(os.tmpdir(), `tapnet-bench-etcd-${process.pid}.json`);
    try {
      const r = await run(["etcd", "--json", json], 90_000);
      expect(r.status, r.stderr).toBe(0);
      const report = JSON.parse(fs.readFileSync(json, "utf8")) as {
        etcd: { metrics: MetricRecord[]; samples: { single: { agent: number[]; watch: number[] }; burst: { agent: number[]; watch: number[] } } };
      };
      const e = report.etcd;
      expect(e.metrics.map((m) => m.metric)).toEqual(["lease1P50", "lease1P99", "lease200P50", "lease200P99", "lease200Last", "revoke200", "cpu200", "rss200"]);
      for (const m of e.metrics) {
        // CPU is counted in clock ticks (10 ms): a short window may hold none.
        if (m.metric === "cpu200") {
          expect(m.tapnet, m.metric).toBeGreaterThanOrEqual(0);
          continue;
        }
        expect(m.tapnet, m.metric).toBeGreaterThan(0);
        expect(m.reference, `${m.metric} ${m.referenceName}`).toBeGreaterThan(0);
        expect(m.ratio, m.metric).toBeCloseTo(m.tapnet / m.reference, 9);
      }
      // Every lease measured on every node, by the agents and by the watchers.
      expect(e.samples.single.agent).toHaveLength(30);
      expect(e.samples.single.watch).toHaveLength(30);
      expect(e.samples.burst.agent).toHaveLength(200);
      expect(e.samples.burst.watch).toHaveLength(200);
      expect(r.stdout).toMatch(/200 leases at once -> routes on 3 nodes, p50 ms\s+[\d.]+\s+etcdctl watch, same events/);
      expect(netnsList().filter((n) => n.startsWith("tn.bench-"))).toEqual([]);
    } finally {
      fs.rmSync(json, { force: true });
    }
  }, 120_000);
});
