/**
 * `tapnet metrics`: the exposition of a small running lab passes `promtool check
 * metrics`, a port's and the switch's counters rise after a ping, and a real Prometheus
 * (started here on 127.0.0.1 with its own config and storage) scrapes it: `up` is 1 and
 * a tapnet series is in its database.
 */
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RUN_DIR } from "../../src/control/protocol.js";
import { parseTopology } from "../../src/lab/topology.js";
import { SWITCH_COUNTERS } from "../../src/elements/switch-counters.js";
import { CLI, canRunLabs, ping, tapnet, tapnetOk, waitFor, writeLabFile } from "./harness.js";

const LAB = "tmetrics";
/** The lab serves its metrics itself (the topology's `metrics:` setting) on a port picked in beforeAll. */
let file = "";
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "tapnet-metrics-"));
const children: Array<{ pid: number; exited: Promise<unknown>; out: () => string }> = [];
let metricsUrl = "";

function start(argv: string[]): { pid: number; exited: Promise<unknown>; out: () => string } {
  const c = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
  if (c.pid === undefined) throw new Error(`could not start ${argv[0]}`);
  let out = "";
  c.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  c.stderr?.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise((r) => c.on("exit", r));
  const child = { pid: c.pid, exited, out: () => out };
  children.push(child);
  return child;
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** The value of one sample line (`name{labels} value`) of an exposition, or undefined. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return undefined;
}

const scrape = async (): Promise<string> => {
  const r = await fetch(metricsUrl);
  expect(r.status).toBe(200);
  expect(r.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return r.text();
};

describe.runIf(canRunLabs())("tapnet metrics", () => {
  beforeAll(async () => {
    const port = await freePort();
    file = writeLabFile(
      LAB,
      `
name: ${LAB}
metrics: { listen: "127.0.0.1:${port}" }
nodes:
  sw1: {}
hosts:
  h1: { node: sw1, ip: 10.0.0.1/24 }
  h2: { node: sw1, ip: 10.0.0.2/24 }
`,
    );
    // lab up returns once the exporter answers.
    tapnetOk(["lab", "up", file, "-q"]);
    metricsUrl = `http://127.0.0.1:${port}/metrics`;
  });

  afterAll(async () => {
    for (const c of children.reverse()) {
      try {
        process.kill(c.pid, "SIGTERM");
      } catch {
        // already gone
      }
      const gone = await Promise.race([c.exited.then(() => true), new Promise((r) => setTimeout(() => r(false), 10_000))]);
      if (!gone) {
        try {
          process.kill(c.pid, "SIGKILL");
        } catch {
          // exited meanwhile
        }
        await c.exited;
      }
    }
    tapnet(["lab", "down", LAB, "-q"]);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it("passes promtool check metrics", async () => {
    const text = await scrape();
    const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
    expect(`${r.stdout}${r.stderr}`).toBe("");
    expect(r.status).toBe(0);
    expect(sample(text, "tapnet_node_up", { node: "sw1" })).toBe(1);
    expect(text).toMatch(/^# TYPE tapnet_port_frames_total counter$/m);
    expect(text).toMatch(/^# TYPE tapnet_fdb_entries gauge$/m);
    // Every drop counter the switch declares is a reason; its other counters keep their kind.
    for (const reason of SWITCH_COUNTERS.ofKind("drop")) expect(sample(text, "tapnet_element_drops_total", { node: "sw1", element: "switch", reason })).toBe(0);
    for (const counter of SWITCH_COUNTERS.ofKind("forward"))
      expect(sample(text, "tapnet_element_frames_total", { element: "switch", counter, kind: "forward" })).toBeDefined();
    expect(text).not.toMatch(/tapnet_element_frames_total\{[^}]*kind="drop"/);
    expect(sample(text, "tapnet_process_resident_memory_bytes", { node: "sw1" })).toBeGreaterThan(1 << 20);
    expect(sample(text, "tapnet_process_cpu_seconds_total", { node: "sw1" })).toBeGreaterThan(0);
  });

  it("counters rise after a ping", async () => {
    const before = await scrape();
    const rx0 = sample(before, "tapnet_port_frames_total", { node: "sw1", port: "h1", direction: "rx" }) ?? 0;
    const fwd0 = sample(before, "tapnet_element_frames_total", { node: "sw1", element: "switch", counter: "forwarded", kind: "forward" }) ?? 0;
    expect(ping(`tn.${LAB}.h1`, "10.0.0.2", 3).status).toBe(0);
    const after = await scrape();
    expect(sample(after, "tapnet_port_frames_total", { node: "sw1", port: "h1", direction: "rx" })).toBeGreaterThanOrEqual(rx0 + 3);
    expect(sample(after, "tapnet_element_frames_total", { node: "sw1", element: "switch", counter: "forwarded", kind: "forward" })).toBeGreaterThanOrEqual(
      fwd0 + 3,
    );
    // Both hosts' MACs learned.
    expect(sample(after, "tapnet_fdb_entries", { node: "sw1" })).toBeGreaterThanOrEqual(2);
  });

  it("lab graph --live writes the port counters on the edges", () => {
    const dot = path.join(tmp, "live.dot");
    tapnetOk(["lab", "graph", file, "--live", "-o", dot]);
    const m = /"host:h1" -- "node:sw1" \[label="rx (\d+) \/ tx (\d+)"\]/.exec(fs.readFileSync(dot, "utf8"));
    expect(m).not.toBeNull();
    // After the pings above, h1's port has taken frames.
    expect(Number(m?.[1])).toBeGreaterThanOrEqual(3);
  });

  it("is scraped by a real Prometheus", async () => {
    const port = await freePort();
    const target = new URL(metricsUrl).host;
    const config = path.join(tmp, "prometheus.yml");
    fs.writeFileSync(
      config,
      `global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: tapnet\n    static_configs:\n      - targets: ["${target}"]\n`,
    );
    const data = path.join(tmp, "data");
    const prom = start(["prometheus", `--config.file=${config}`, `--storage.tsdb.path=${data}`, `--web.listen-address=127.0.0.1:${port}`, "--log.level=warn"]);
    const query = async (q: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>> => {
      try {
        const r = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(q)}`);
        if (r.status !== 200) return [];
        return ((await r.json()) as { data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } }).data.result;
      } catch {
        return []; // not listening yet
      }
    };
    const up = await waitFor(
      `Prometheus to scrape ${target} (its output: ${prom.out().slice(-300)})`,
      async () => {
        const r = await query('up{job="tapnet"}');
        return r.length === 1 && r[0].value[1] === "1" ? r : undefined;
      },
      60_000,
      250,
    );
    expect(up[0].metric.instance).toBe(target);
    const series = await waitFor(
      "a tapnet series in Prometheus",
      async () => {
        const r = await query('tapnet_port_frames_total{node="sw1",port="h1",direction="rx"}');
        return r.length === 1 ? r : undefined;
      },
      30_000,
      250,
    );
    expect(Number(series[0].value[1])).toBeGreaterThanOrEqual(3);
  });

  it("tapnet metrics serves the same lab on a port of its own", async () => {
    const m = start([process.execPath, CLI, "metrics", "--lab", LAB, "--listen", "127.0.0.1:0"]);
    const url = await waitFor("the metrics server's listening line", () => /http:\/\/127\.0\.0\.1:\d+\/metrics/.exec(m.out())?.[0], 20_000);
    expect(url).not.toBe(metricsUrl);
    const text = await (await fetch(url)).text();
    expect(sample(text, "tapnet_node_up", { node: "sw1" })).toBe(1);
    expect(sample(text, "tapnet_port_frames_total", { node: "sw1", port: "h1", direction: "rx" })).toBeGreaterThanOrEqual(3);
  });

  it("refuses to listen beyond loopback and a lab that is not up", () => {
    const wide = tapnet(["metrics", "--lab", LAB, "--listen", "0.0.0.0:9423"]);
    expect(wide.status).not.toBe(0);
    expect(wide.stderr).toMatch(/listen only on a loopback address/);
    const none = tapnet(["metrics", "--lab", "nosuchlab", "--listen", "127.0.0.1:0"]);
    expect(none.status).not.toBe(0);
    expect(none.stderr).toMatch(/lab nosuchlab is not up/);
    // The topology setting too: loopback only, said with the field's place.
    expect(() => parseTopology("name: t\nmetrics: { listen: 0.0.0.0:9423 }\nnodes:\n  sw1: {}\n", "t.yaml")).toThrow(
      /t\.yaml:2:\d+: metrics\.listen: metrics listen on a loopback address only/,
    );
  });

  it("lab down stops the lab's exporter", async () => {
    const state = JSON.parse(fs.readFileSync(path.join(RUN_DIR, LAB, "state.json"), "utf8")) as { daemons: Record<string, { pid: number }> };
    const pid = state.daemons["metrics:exporter"].pid;
    expect(fs.readFileSync(`/proc/${pid}/cmdline`, "utf8")).toMatch(/metrics\0--lab\0tmetrics/);
    tapnetOk(["lab", "down", LAB, "-q"]);
    // Gone (or a zombie not yet reaped by whoever inherited it: no command line).
    const cmdline = (): string => {
      try {
        return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
      } catch {
        return "";
      }
    };
    expect(cmdline()).toBe("");
    await expect(fetch(metricsUrl)).rejects.toThrow();
  });
});
