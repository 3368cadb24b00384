/**
 * Prometheus metrics of a running lab (`tapnet metrics --lab LAB`), with prom-client.
 * Every scrape asks each node over its control socket — `status` (PID), `stats` (port
 * and element counters, FDB size, RSS), `tunnels`, and the row streams `route`,
 * `neigh` and `conntrack --count` for table sizes — and reads the node's CPU time from
 * /proc/PID/stat. Nothing is cached: the answer is the lab as it is at the scrape, and a
 * restarted node (new PID, counters from zero) shows as a counter reset, which
 * Prometheus handles.
 *
 * Element counters keep the kinds their element declares (src/core/element.ts): `drop`
 * counters become tapnet_element_drops_total{reason}, the others
 * tapnet_element_frames_total{counter, kind} with kind forward, deliver or event.
 */
import fs from "node:fs";
import http from "node:http";
import { Counter, Gauge, Registry } from "prom-client";
import { request, requestRows } from "../control/client.js";
import type { CounterSpec } from "../core/element.js";
import { NAT_COUNTERS } from "../elements/nat.js";
import { ROUTER_COUNTERS } from "../elements/router/counters.js";
import { STP_COUNTERS } from "../elements/stp-protocol.js";
import { SWITCH_COUNTERS } from "../elements/switch-counters.js";
import { IPIP_COUNTERS } from "../io/ipip-port.js";
import { VXLAN_COUNTERS } from "../io/vxlan-counters.js";
import { type LabState, readState } from "./state.js";

/** The elements of `stats` and the declarations of their counters. */
const ELEMENTS: Record<string, CounterSpec> = { switch: SWITCH_COUNTERS, stp: STP_COUNTERS, router: ROUTER_COUNTERS, nat: NAT_COUNTERS };
const TUNNELS: Record<string, CounterSpec> = { vxlan: VXLAN_COUNTERS, ipip: IPIP_COUNTERS };

type Counters = Record<string, number>;
interface Stats {
  switch: Counters;
  stp: Counters | null;
  router: Counters | null;
  nat: Counters | null;
  fdbEntries: number;
  ports: Record<string, Counters>;
  memory: { rss: number };
}

/** Clock ticks per second of /proc/PID/stat's utime and stime (sysconf(_SC_CLK_TCK), 100 on Linux). */
const CLK_TCK = 100;

/** User + system CPU seconds of a process, or null when it is gone. */
export function cpuSeconds(pid: number): number | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // Fields after the command name (which may hold spaces and parentheses): proc(5).
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

/** Rows of a row-stream listing, or null when the node has no such table (no router, no NAT). */
async function rowCount(
  socket: string,
  req: { cmd: string; [k: string]: unknown },
  timeoutMs: number,
): Promise<{ rows: number; end: Record<string, unknown> } | null> {
  try {
    const r = await requestRows(socket, req, () => undefined, timeoutMs);
    return { rows: r.end.rows, end: r.end };
  } catch {
    return null;
  }
}

/** The exposition of one scrape of the lab's nodes (text format 0.0.4). */
export async function collectLab(labName: string, timeoutMs = 3000): Promise<{ registry: Registry; text: string }> {
  const registry = new Registry();
  const reg = [registry];
  const gauge = (name: string, help: string, labelNames = ["node"]): Gauge => new Gauge({ name, help, labelNames, registers: reg });
  const counter = (name: string, help: string, labelNames = ["node"]): Counter => new Counter({ name, help, labelNames, registers: reg });
  const perPort = ["node", "port", "direction"];
  const nodeUp = gauge("tapnet_node_up", "1 when the node answered on its control socket at this scrape");
  const frames = counter("tapnet_port_frames_total", "frames through a node's port, by direction (rx, tx)", perPort);
  const bytes = counter("tapnet_port_bytes_total", "bytes through a node's port, by direction (rx, tx)", perPort);
  const portDrops = counter("tapnet_port_drops_total", "frames a port dropped: rx (could not take), tx (device refused or queue full)", perPort);
  const elFrames = counter("tapnet_element_frames_total", "frames an element forwarded or delivered, and events it counted (kind says which)", [
    "node",
    "element",
    "port",
    "counter",
    "kind",
  ]);
  const elDrops = counter("tapnet_element_drops_total", "frames an element dropped, by reason (its drop counter)", ["node", "element", "port", "reason"]);
  const fdb = gauge("tapnet_fdb_entries", "learned entries in the switch's forwarding table");
  const routes = gauge("tapnet_routes", "routes in the router's table");
  const neigh = gauge("tapnet_neighbours", "entries in the router's neighbour (ARP) cache");
  const ct = gauge("tapnet_conntrack_entries", "entries in the NAT's connection tracking table");
  const ctMax = gauge("tapnet_conntrack_max_entries", "capacity of the connection tracking table");
  const rss = gauge("tapnet_process_resident_memory_bytes", "resident memory of the node process");
  const cpu = counter("tapnet_process_cpu_seconds_total", "user and system CPU time of the node process");

  const elementCounters = (node: string, element: string, port: string, spec: CounterSpec | undefined, values: Counters | null): void => {
    if (!values) return;
    for (const [name, v] of Object.entries(values)) {
      const kind = spec?.decls[name]?.kind;
      if (kind === undefined || typeof v !== "number") continue; // a port counter mixed in (tunnels): counted per port
      if (kind === "drop") elDrops.inc({ node, element, port, reason: name }, v);
      else elFrames.inc({ node, element, port, counter: name, kind }, v);
    }
  };

  const state = readState(labName);
  if (!state) throw new Error(`lab ${labName} is not up`);
  // The nodes in parallel: a node that does not answer costs one timeout, not one per node.
  const scrapeNode = async (node: string, n: LabState["nodes"][string]): Promise<void> => {
    let stats: Stats;
    let pid: number;
    try {
      pid = ((await request(n.socket, { cmd: "status" }, timeoutMs)) as { pid: number }).pid;
      stats = (await request(n.socket, { cmd: "stats" }, timeoutMs)) as Stats;
    } catch {
      nodeUp.set({ node }, 0);
      return;
    }
    nodeUp.set({ node }, 1);
    for (const [port, c] of Object.entries(stats.ports)) {
      frames.inc({ node, port, direction: "rx" }, c.rxFrames);
      frames.inc({ node, port, direction: "tx" }, c.txFrames);
      bytes.inc({ node, port, direction: "rx" }, c.rxBytes);
      bytes.inc({ node, port, direction: "tx" }, c.txBytes);
      portDrops.inc({ node, port, direction: "rx" }, c.rxDrops);
      portDrops.inc({ node, port, direction: "tx" }, c.txDrops);
    }
    for (const [el, spec] of Object.entries(ELEMENTS)) elementCounters(node, el, "", spec, stats[el as "switch"]);
    try {
      const tunnels = (await request(n.socket, { cmd: "tunnels" }, timeoutMs)) as Array<{ port: string; kind?: string; counters: Counters }>;
      for (const t of tunnels) {
        const kind = t.kind ?? (t.port.startsWith("ipip") ? "ipip" : "vxlan");
        elementCounters(node, kind, t.port, TUNNELS[kind], t.counters);
      }
    } catch {
      // No tunnels on this node.
    }
    fdb.set({ node }, stats.fdbEntries);
    if (stats.router) {
      const r = await rowCount(n.socket, { cmd: "route" }, timeoutMs);
      if (r) routes.set({ node }, r.rows);
      const nb = await rowCount(n.socket, { cmd: "neigh" }, timeoutMs);
      if (nb) neigh.set({ node }, nb.rows);
    }
    if (stats.nat) {
      const c = await rowCount(n.socket, { cmd: "conntrack", count: true }, timeoutMs);
      if (c && typeof c.end.entries === "number") ct.set({ node }, c.end.entries);
      if (c && typeof c.end.maxEntries === "number") ctMax.set({ node }, c.end.maxEntries);
    }
    rss.set({ node }, stats.memory.rss);
    const s = cpuSeconds(pid);
    if (s !== null) cpu.inc({ node }, s);
  };
  await Promise.all(Object.entries(state.nodes).map(([node, n]) => scrapeNode(node, n)));
  return { registry, text: await registry.metrics() };
}

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|localhost)$/;

/** Parses `HOST:PORT` for --listen; only loopback addresses (the metrics carry the lab's insides). */
export function parseListen(s: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(s);
  if (!m) throw new Error(`--listen ${s}: expected HOST:PORT, like 127.0.0.1:9423`);
  const port = Number(m[2]);
  if (port > 65535) throw new Error(`--listen ${s}: port ${m[2]} is not 0-65535`);
  if (!LOOPBACK.test(m[1])) throw new Error(`--listen ${s}: metrics listen only on a loopback address (127.0.0.1, ::1), not ${m[1]}`);
  return { host: m[1], port };
}

/** Serves /metrics of a lab until closed; resolves once listening. */
export async function serveMetrics(labName: string, host: string, port: number): Promise<http.Server> {
  if (!readState(labName)) throw new Error(`lab ${labName} is not up (tapnet lab status lists the labs that are)`);
  const server = http.createServer((req, res) => {
    const url = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { Allow: "GET, HEAD" }).end();
      return;
    }
    if (url === "/") {
      res.writeHead(200, { "Content-Type": "text/plain; charset=utf-8" }).end(`tapnet metrics of lab ${labName}: /metrics\n`);
      return;
    }
    if (url !== "/metrics") {
      res.writeHead(404, { "Content-Type": "text/plain; charset=utf-8" }).end("not found: try /metrics\n");
      return;
    }
    collectLab(labName).then(
      ({ registry, text }) => res.writeHead(200, { "Content-Type": registry.contentType }).end(text),
      (e: unknown) => res.writeHead(503, { "Content-Type": "text/plain; charset=utf-8" }).end(`${e instanceof Error ? e.message : String(e)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e: NodeJS.ErrnoException) => reject(new Error(`--listen ${host}:${port}: ${e.code ?? e.message}`)));
    server.listen(port, host, () => resolve());
  });
  return server;
}
