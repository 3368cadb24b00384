/**
 * The tapnet node process: one engine, its ports, a learning switch, a control
 * socket. Started by `tapnet lab up` (inside the node's network namespace) or by
 * hand with `tapnet node run CONFIG.json`.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import type net from "node:net";
import os from "node:os";
import type { Engine } from "../core/engine.js";
import { impairText } from "../core/impair.js";
import type { Port } from "../core/port.js";
import { CaptureSession } from "../control/capture.js";
import { DropCaptureSession } from "../control/drop-capture.js";
import { type CounterSpec, Element } from "../core/element.js";
import { ControlServer, RowStream } from "../control/server.js";
import type { Request } from "../control/protocol.js";
import type { Ipv4Router } from "../elements/router/ipv4-router.js";
import type { Nat } from "../elements/nat.js";
import { parseConntrackQuery } from "../elements/conntrack-list.js";
import type { LearningSwitch, SwitchPortMode } from "../elements/learning-switch.js";
import { IpipPort } from "../io/ipip-port.js";
import { busyPollStats, setBusyPoll } from "../io/native.js";
import { TapPort } from "../io/tap-port.js";
import { XdpPort } from "../io/xdp-port.js";
import { VxlanPort } from "../io/vxlan-port.js";
import { MESH_ADD } from "../mesh/mesh-add.js";
import { NodeMesh } from "../mesh/node-mesh.js";
import { showStp } from "../elements/stp-view.js";
import { ipToString, parseIp } from "../wire/ipv4addr.js";
import { macToString, parseMac } from "../wire/mac.js";
import type { NodeConfig } from "./config.js";
import { buildGraph, type NodeGraph } from "./graph.js";
import { closeUnadoptedTaps, holdInheritedTaps, makeDevicePort, releaseInheritedTap } from "./ports.js";
import { type Args, applyChange, JOURNALED } from "./changes.js";
import { Journal, type JournalEntry } from "./journal.js";
import { runningConfig } from "./running-config.js";
import { dropsReport } from "./drops.js";
import { whatIfTrace } from "./trace.js";
import { compileFilter } from "./trace-filter.js";
import { LiveTraceSession } from "./live-trace.js";
import { NodeFib } from "../bgp/node-fib.js";
import { BgpSpeaker } from "../bgp/speaker.js";
import { installSeccomp, isConfined, nodeCapabilities, nodeEnvironment, nodeLauncher, sandboxReport } from "./sandbox.js";

/** Pool room kept for ports added at runtime: 64 TAPs with offloads (64 slots of 64 KiB each). */
const RUNTIME_POOL_BYTES = 64 * 64 * (65536 + 256);

/** Most changes in one `changes` request (clients send larger ones in several). */
const MAX_BATCH = 20_000;

/** For each port the journal adds, the index of its last `port.add`. */
function lastPortAdds(entries: JournalEntry[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const [i, e] of entries.entries()) if (e.op === "port.add" && typeof e.args.name === "string") out.set(e.args.name, i);
  return out;
}

/** A port's impairments for `show ports`: per direction, the settings in tc's words and the stage's counters. */
function impairView(p: Port): Record<string, unknown> | null {
  const out: Record<string, unknown> = {};
  for (const [dir, st] of [
    ["out", p.impairOut],
    ["in", p.impairIn],
  ] as const) {
    if (st !== null) out[dir] = { text: impairText(st.settings), ...st.settings, waiting: st.queue.waiting, ...st.c };
  }
  return Object.keys(out).length ? out : null;
}

/** The clock of the dataplane (ms), for listings that read it as they go. */
const clock = (): number => performance.now();

export class TapnetNode {
  readonly graph: NodeGraph;
  readonly engine: Engine;
  readonly sw: LearningSwitch;
  readonly router: Ipv4Router | null;
  private tickTimer: NodeJS.Timeout | null = null;
  private stpTimer: NodeJS.Timeout | null = null;
  private readonly control: ControlServer;
  private ageTimer: NodeJS.Timeout | null = null;
  private readonly modes: Record<string, SwitchPortMode>;
  readonly startedAt = Date.now();
  private journal: Journal | null = null;
  /** What the journal replay at start did. */
  private replayed = { applied: 0, failed: 0 };
  /** The BGP speaker (Calico's BGP modes), when the config has one. */
  readonly bgp: BgpSpeaker | null;
  /** The mesh peer (src/mesh/node-mesh.ts), when the node is one. */
  readonly mesh: NodeMesh;

  /**
   * @param sandbox install the seccomp allow-list at the end of start() (the node
   *   process does; tests that run a node inside their own process do not).
   */
  constructor(
    readonly config: NodeConfig,
    private readonly sandbox = false,
  ) {
    // A restarted node's inherited TAPs (src/node/ports.ts): a port the journal adds
    // again adopts its TAP at that (last) `port.add`, not before.
    if (config.journal) holdInheritedTaps(lastPortAdds(Journal.read(config.journal)).keys());
    this.graph = buildGraph(config, { makePort: makeDevicePort });
    this.engine = this.graph.engine;
    this.sw = this.graph.sw;
    this.router = this.graph.router;
    this.modes = this.graph.modes;
    this.bgp = config.bgp ? new BgpSpeaker(config.bgp, new NodeFib(this.graph, config.bgp.install)) : null;
    this.mesh = new NodeMesh(this.graph);
    this.control = new ControlServer(config.controlSocket, {
      status: () => this.status(),
      change: (req) => this.change(req),
      changes: (req) => this.changeBatch(req),
      config: () => runningConfig(this.graph),
      graph: () => this.graph.describe(),
      fdb: () => new RowStream(this.fdbWalk()),
      ports: () => this.ports(),
      tunnels: () => this.tunnels(),
      stats: () => this.stats(),
      trace: (req, sock) => {
        if (req.live === true) {
          const filter = compileFilter(typeof req.filter === "string" ? req.filter : "");
          const port = typeof req.port === "string" ? this.engine.requirePort(req.port, this.config.node) : null;
          if (this.engine.liveTrace !== null) throw new Error("a live trace already runs on this node");
          const count = typeof req.count === "number" && req.count > 0 ? Math.floor(req.count) : 0;
          sock.write(`${JSON.stringify({ ok: true, data: null })}\n`);
          new LiveTraceSession(
            this.engine,
            [this.sw, this.router, this.graph.nat as unknown as Element | null].filter((e): e is Element => e instanceof Element),
            this.config.node,
            port,
            filter,
            count,
            sock,
          );
          return "stream";
        }
        if (typeof req.in !== "string" || typeof req.packet !== "string") throw new Error("trace needs 'in' (a port) and 'packet'");
        return whatIfTrace(
          this.engine,
          [this.sw, this.router, this.graph.nat as unknown as Element | null],
          this.router,
          this.sw,
          this.config.node,
          req.in,
          req.packet,
        );
      },
      drops: () => dropsReport([this.sw, this.graph.stp, this.router, this.graph.nat], clock(), Date.now()),
      neigh: () => new RowStream(this.requireRouter().neighbourWalk(clock)),
      route: () => new RowStream(this.requireRouter().routeWalk()),
      interfaces: () => this.requireRouter().interfaces(),
      dhcp: () => this.requireRouter().dhcpLeases(performance.now()),
      conntrack: (req) => this.conntrack(req),
      services: () => this.requireNat().services(performance.now()),
      // Gratuitous ARP for every router address; `lab up` sends it once the hosts'
      // interfaces are up (announcing into TAPs that are still down reaches nobody).
      announce: () => {
        const r = this.requireRouter();
        this.engine.runPass(() => r.announce());
        return null;
      },
      capture: (req, sock) => this.capture(req, sock),
      bgp: (req) => {
        if (!this.bgp) throw new Error(`node ${this.config.node} runs no BGP speaker`);
        return req.routes === true ? this.bgp.routes() : this.bgp.status();
      },
      ...this.mesh.handlers(),
      "fdb-flush": () => {
        this.sw.flush();
        return null;
      },
      stp: () => this.stpView(),
      "stp-set": (req) => {
        const stp = this.requireStp();
        this.engine.runPass((_pool, now) => stp.setEnabled(req.enabled === true, now));
        return this.stpView();
      },
      security: () => this.security(),
      "security-reset": (req) => {
        const p = this.engine.port(String(req.port));
        if (!p) throw new Error(`node ${this.config.node} has no port '${String(req.port)}'`);
        let was = false;
        this.engine.runPass((_pool, now) => (was = this.sw.guards.recover(p.index, now)));
        return { port: p.name, wasShut: was };
      },
      // A binding for ARP inspection: the address the lab gave a host (later: DHCP leases);
      // `remove` when the host leaves; `optional`: a node that inspects nothing says nothing.
      "arp-binding": (req) => {
        const ai = this.sw.guards.arp;
        if (!ai) {
          if (req.optional === true) return null;
          throw new Error(`node ${this.config.node} does not inspect ARP (nodes.${this.config.node}.arpInspection)`);
        }
        if (req.remove === true) return { removed: ai.removeBinding(Number(req.vlan ?? 1), parseIp(String(req.ip))) };
        const source = req.source === "dhcp" ? "dhcp" : req.source === "static" ? "static" : "lab";
        ai.addBinding(Number(req.vlan ?? 1), parseIp(String(req.ip)), parseMac(String(req.mac)), source);
        return null;
      },
    });
  }

  async start(): Promise<void> {
    // Room in the pool for ports added while the node runs (pages cost nothing until used).
    this.engine.start(RUNTIME_POOL_BYTES);
    try {
      if ((this.config.busyPoll ?? 0) > 0) setBusyPoll(this.config.busyPoll as number);
      if (this.config.journal) this.replay(this.config.journal);
      const unadopted = closeUnadoptedTaps();
      if (unadopted.length) console.error(`inherited TAPs of ${unadopted.join(", ")} closed: the node has no such port`);
      // A tunnel's UDP socket binds after open(): wait, so a bad address fails start-up.
      for (const p of this.engine.livePorts()) {
        if (p instanceof VxlanPort) {
          await p.ready().catch((e: Error) => {
            throw new Error(`port ${p.name}: cannot receive VXLAN: ${e.message}`);
          });
        }
      }
      await this.mesh.start();
      await this.control.listen();
      // Port 179 is bound before the seccomp filter (bind and listen stay allowed after it).
      await this.bgp?.start();
    } catch (e) {
      this.mesh.stop();
      this.engine.stop();
      throw e;
    }
    // Everything the node opens at start-up is open: from here on, only the calls
    // src/node/sandbox.ts lists (on every thread). A node asked for a filter does not
    // run without one.
    if (this.sandbox) {
      try {
        installSeccomp();
      } catch (e) {
        this.control.close();
        this.engine.stop();
        throw e;
      }
    }
    // Sweep often enough that an entry outlives its ageing time by at most a quarter of it.
    const every = Math.min(Math.max(this.sw.ageingMs / 4, 250), 10_000);
    this.ageTimer = setInterval(() => this.sw.age(performance.now()), every);
    const stp = this.graph.stp;
    if (stp) {
      // The spanning tree's timers (hello, message age, forward delay, hold, TCN), to 0.1 s.
      this.engine.runPass((_pool, now) => stp.tick(now));
      this.stpTimer = setInterval(() => this.engine.runPass((_pool, now) => stp.tick(now)), 100);
    }
    const router = this.router;
    if (router) {
      this.tickTimer = setInterval(() => this.engine.runPass((_pool, now) => router.tick(now)), 200);
    }
  }

  /**
   * A runtime change (src/node/changes.ts): checked, applied whole or refused with the
   * reason; an accepted change to the configuration is appended to the journal.
   */
  private change(req: Request): unknown {
    const op = typeof req.op === "string" ? req.op : "";
    const args = (req.args ?? {}) as Args;
    const dryRun = req.dryRun === true;
    if (op === MESH_ADD && !dryRun) return this.addMesh(args);
    const result = applyChange(this.graph, op, args, dryRun);
    if (!dryRun && JOURNALED.has(op)) this.journal?.append(op, args);
    return result;
  }

  /** `mesh.add`: journaled once its agent has started. */
  private async addMesh(args: Args): Promise<unknown> {
    const result = await this.mesh.add(args);
    this.journal?.append(MESH_ADD, args);
    return result;
  }

  /**
   * A batch of changes (a control plane programming many routes): each change checked and
   * applied on its own, as `ip -batch -force` does, in slices of at most 2 ms between which
   * packet batches run, so a large batch never stalls forwarding. Answers, per change, null
   * or the reason it was refused.
   */
  private changeBatch(req: Request): Promise<{ applied: number; errors: Array<string | null> }> {
    const ops = Array.isArray(req.ops) ? (req.ops as Array<{ op?: unknown; args?: unknown }>) : null;
    if (ops === null) throw new Error("changes: 'ops' must be a list of {op, args}");
    if (ops.length > MAX_BATCH) throw new Error(`changes: at most ${MAX_BATCH} changes in one request (got ${ops.length})`);
    const errors: Array<string | null> = [];
    let applied = 0;
    let k = 0;
    return new Promise((resolve) => {
      const slice = (): void => {
        const t0 = performance.now();
        for (; k < ops.length && performance.now() - t0 < 2; k++) {
          const o = ops[k];
          try {
            errors.push(null);
            if (o?.op === MESH_ADD) throw new Error(`${MESH_ADD}: send it as a change of its own, not in a batch`);
            this.change({ cmd: "change", op: o?.op, args: o?.args });
            applied++;
          } catch (e) {
            errors[k] = e instanceof Error ? e.message : String(e);
          }
        }
        if (k < ops.length) setImmediate(slice);
        else resolve({ applied, errors });
      };
      slice();
    });
  }

  /** Opens the journal and applies what it holds (a node restarted after a crash). */
  private replay(path: string): void {
    const { journal, entries, bad } = Journal.open(path);
    this.journal = journal;
    let failed = bad;
    const adopts = lastPortAdds(entries);
    for (const [i, e] of entries.entries()) {
      try {
        if (e.op === "port.add" && adopts.get(e.args.name as string) === i) releaseInheritedTap(e.args.name as string);
        applyChange(this.graph, e.op, e.args);
      } catch (err) {
        failed++;
        console.error(`journal: ${e.op} no longer applies: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    this.replayed = { applied: entries.length - (failed - bad), failed };
    if (entries.length) console.log(`journal: replayed ${this.replayed.applied} change(s)${failed ? `, ${failed} did not apply` : ""}`);
  }

  private requireNat(): Nat {
    const nat = this.requireRouter().nat;
    if (!nat) throw new Error(`node ${this.config.node} has no NAT rules or services`);
    return nat;
  }

  private requireStp(): NonNullable<NodeGraph["stp"]> {
    if (!this.graph.stp) throw new Error(`node ${this.config.node} runs no spanning tree (nodes.${this.config.node}.stp in the topology)`);
    return this.graph.stp;
  }

  /** `show stp`: the bridge and its ports (null when the node runs no spanning tree). */
  private stpView(): unknown {
    const stp = this.graph.stp;
    return stp ? { ...showStp(stp, performance.now()), counters: stp.counters() } : null;
  }

  /** `show security`: per port guards, ARP inspection's VLANs, bindings and last drop. */
  private security(): unknown {
    const g = this.sw.guards;
    const ai = g.arp;
    return {
      ports: this.engine.livePorts().flatMap((p) => {
        const info = g.portInfo(p.index);
        return info ? [info] : [];
      }),
      arpInspection: ai && {
        vlans: Array.from(ai.vlans.keys()).filter((v) => ai.vlans[v] === 1),
        bindings: ai.bindings().map((b) => ({ vlan: b.vlan, ip: ipToString(b.ip), mac: macToString(b.mac), source: b.source })),
        lastDrop:
          ai.lastAt < 0
            ? null
            : {
                reason: ai.lastReason === 2 ? "spoofed" : "invalid",
                vlan: ai.lastVlan,
                ip: ipToString(ai.lastIp >>> 0),
                mac: macToString(ai.lastMacHi * 4294967296 + (ai.lastMacLo >>> 0)),
                ago: Math.round((performance.now() - ai.lastAt) / 100) / 10,
              },
      },
    };
  }

  private requireRouter(): Ipv4Router {
    if (!this.router) throw new Error(`node ${this.config.node} has no router interfaces`);
    return this.router;
  }

  stop(): void {
    this.bgp?.stop();
    if (this.ageTimer) clearInterval(this.ageTimer);
    if (this.tickTimer) clearInterval(this.tickTimer);
    if (this.stpTimer) clearInterval(this.stpTimer);
    this.journal?.close();
    this.mesh.stop();
    this.control.close();
    this.engine.stop();
  }

  status(): unknown {
    return {
      lab: this.config.lab,
      node: this.config.node,
      pid: process.pid,
      uptime: Math.round((Date.now() - this.startedAt) / 1000),
      ports: this.engine.livePorts().map((p) => p.name),
      // What the process runs with: uid, effective capabilities, no_new_privs, seccomp.
      sandbox: sandboxReport(),
      journal: { path: this.config.journal ?? null, ...this.replayed },
    };
  }

  /**
   * `show fdb` rows: the switch's table (in table order), then the remote VTEPs of
   * the VXLAN ports, as `bridge fdb show dev vxlan0` lists them (MAC -> underlay
   * address). The end line says `resized: true` when the switch's table grew during
   * the listing (entries may then be missing).
   */
  private *fdbWalk(): Generator<object | null, { resized: boolean }, void> {
    let now = performance.now();
    const sw = this.sw.walkEntries(clock);
    let r = sw.next();
    for (; r.done !== true; r = sw.next()) {
      const e = r.value;
      if (e === null) {
        now = performance.now();
        yield null;
        continue;
      }
      yield {
        mac: macToString(e.mac),
        vlan: e.vlan,
        port: this.engine.ports[e.port].name,
        static: e.isStatic,
        age: e.isStatic ? null : Math.round((now - e.lastSeen) / 100) / 10,
        dst: null,
      };
    }
    for (const p of this.engine.livePorts()) {
      if (p instanceof VxlanPort) {
        for (const e of p.fdb.walk(clock)) {
          yield e === null ? null : { mac: e.mac, vlan: null, port: p.name, static: e.static, age: e.age, dst: e.remote };
        }
      }
    }
    return r.value;
  }

  /**
   * `show conntrack`: the rows matching the request's filters (parseConntrackQuery),
   * or with `count` only how many match; the end line carries `matched`, the table's
   * `entries` (pending and not yet expired ones included) and `maxEntries`.
   */
  private conntrack(req: Request): RowStream {
    const nat = this.requireNat();
    const q = parseConntrackQuery(req);
    const walk = nat.conntrackWalk(q, clock);
    const ct = nat.ct;
    function* rows(): Generator<string | null, Record<string, unknown>, void> {
      const r = yield* walk;
      return { matched: r.matched, entries: ct.count, maxEntries: ct.maxEntries };
    }
    return new RowStream(rows(), { count: q.count });
  }

  tunnels(): unknown {
    return this.engine
      .livePorts()
      .filter((p): p is VxlanPort | IpipPort => p instanceof VxlanPort || p instanceof IpipPort)
      .map((p) => ({ port: p.name, ...p.tunnelInfo(), counters: { ...p.counters(), ...p.tunnelCounters() } }));
  }

  ports(): unknown {
    return this.engine.livePorts().map((p) => {
      const info = p.info();
      const v = this.sw.portVlans(p.index);
      const mode = this.modes[p.name];
      return {
        name: p.name,
        kind: p.kind,
        ifname: info.ifname,
        mac: macToString(info.mac),
        mtu: info.mtu,
        // A TAP port's I/O method: "uring" or "rw" (also after a fallback: the node's log says why).
        ...(p instanceof TapPort ? { io: p.io } : {}),
        // An AF_XDP port's socket: XDP mode, chunk size, the kernel's ring counters.
        ...(p instanceof XdpPort ? { xdp: p.xdpCounters() } : {}),
        mode: p.kind === "internal" ? "router" : this.config.ports.find((c) => c.name === p.name)?.routed ? "routed" : mode.mode,
        routed: this.config.ports.find((c) => c.name === p.name)?.routed ?? null,
        pvid: v.pvid > 0 ? v.pvid : null,
        tagged: v.tagged,
        untagged: v.untagged,
        ...p.counters(),
        impair: impairView(p),
      };
    });
  }

  stats(): unknown {
    const stp = this.graph.stp;
    return {
      // The node's monotonic clock when these counters were read, ms: a rate is
      // Δcounter / ΔclockMs between two reads, whatever the reader's own delays.
      clockMs: Math.round(performance.now() * 1000) / 1000,
      switch: this.sw.counters(),
      stp: stp?.counters() ?? null,
      drops: this.drops(),
      router: this.router?.counters() ?? null,
      nat: this.graph.nat?.counters() ?? null,
      fdbEntries: this.sw.dynamicCount,
      engine: {
        passes: this.engine.passes,
        internalErrors: this.engine.internalErrors,
        roundsExceeded: this.engine.roundsExceeded,
        lastError: this.engine.lastError,
        // Busy polling after a batch (the busyPoll setting): window, windows opened, loop turns spent.
        busyPoll: busyPollStats(),
      },
      ports: Object.fromEntries(this.engine.livePorts().map((p) => [p.name, p.counters()])),
      // Offloads: virtio-net headers on the TAPs. Per port: software TSO/checksum at
      // ports without vnet headers, egress GRO at TAPs.
      offload: this.config.offload === true,
      offloads: Object.fromEntries(
        this.engine.livePorts().flatMap((p) => {
          const c = p.offloadCounters();
          return c === null ? [] : [[p.name, c]];
        }),
      ),
      memory: { rss: process.memoryUsage().rss, pool: this.engine.pool?.size ?? 0 },
    };
  }

  /** Every frame dropped so far, by element and reason (drop counters that moved), with each reason's help. */
  private drops(): Array<{ counter: string; value: number; help: string }> {
    const out: Array<{ counter: string; value: number; help: string }> = [];
    // Elements that declare their counters (src/core/element.ts).
    for (const el of [this.sw, this.graph.stp, this.router, this.graph.nat]) {
      if (!(el instanceof Element)) continue;
      const spec = el.spec as CounterSpec;
      for (const n of spec.ofKind("drop")) {
        const v = el.c[spec.id[n]];
        if (v !== 0) out.push({ counter: `${el.name}.${n}`, value: v, help: spec.decls[n].help });
      }
    }
    return out;
  }

  private capture(req: Request, sock: net.Socket): "stream" {
    if (req.drops === true) {
      const count = typeof req.count === "number" && req.count > 0 ? Math.floor(req.count) : 0;
      const elements = [this.sw, this.router].filter((e): e is LearningSwitch | Ipv4Router => e !== null && e !== undefined);
      // Checked before answering: a second drop capture is refused with an error.
      for (const el of elements) if (el.dropTap !== null) throw new Error(`a drop capture of ${el.name} is already running`);
      sock.write(`${JSON.stringify({ ok: true, data: null })}\n`);
      new DropCaptureSession(elements, sock, count);
      return "stream";
    }
    const names = Array.isArray(req.ports) ? (req.ports as unknown[]).map(String) : [];
    if (names.length === 0) throw new Error("capture needs at least one port");
    const ports = names.map((n) => this.engine.requirePort(n, this.config.node));
    const count = typeof req.count === "number" && req.count > 0 ? Math.floor(req.count) : 0;
    sock.write(`${JSON.stringify({ ok: true, data: null })}\n`);
    new CaptureSession(ports, sock, count);
    return "stream";
  }
}

/**
 * Entry point of `tapnet node run CONFIG`: runs until SIGTERM/SIGINT.
 *
 * `tapnet lab up` starts nodes through nodeLauncher() already. Started any other way
 * (by hand), the node re-runs itself the same way and waits for that child, passing
 * SIGTERM/SIGINT on and exiting with its status: a node never forwards frames with
 * more than NODE_CAPABILITIES, whoever starts it.
 */
export async function runNode(configPath: string): Promise<void> {
  const config = JSON.parse(fs.readFileSync(configPath, "utf8")) as NodeConfig;
  const caps = nodeCapabilities(config);
  if (!isConfined(undefined, caps) || process.env.UV_USE_IO_URING !== "0") {
    if (process.getuid?.() !== 0) throw new Error("tapnet node run needs root (it creates TAP devices and opens packet sockets): run it with sudo");
    if (process.env.TAPNET_NODE_RELAUNCHED === "1") {
      throw new Error("the node is still not confined after re-running under setpriv (capability bounding set or no_new_privs not applied)");
    }
    return relaunch(caps);
  }
  const node = new TapnetNode(config, true);
  await node.start();
  const bye = (): void => {
    node.stop();
    process.exit(0);
  };
  process.on("SIGTERM", bye);
  process.on("SIGINT", bye);
  console.log(`tapnet node ${config.node} (lab ${config.lab}) up: ${config.ports.map((p) => p.name).join(", ")}`);
}

/** Runs this same command again under nodeLauncher(); resolves never (exits with the child). */
function relaunch(caps: readonly string[]): Promise<void> {
  const [cmd, ...args] = nodeLauncher(caps);
  const child = spawn(cmd, [...args, process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
    stdio: "inherit",
    env: { ...nodeEnvironment(), TAPNET_NODE_RELAUNCHED: "1" },
  });
  const pass = (sig: NodeJS.Signals) => (): void => {
    child.kill(sig);
  };
  process.on("SIGTERM", pass("SIGTERM"));
  process.on("SIGINT", pass("SIGINT"));
  return new Promise((_resolve, reject) => {
    child.on("error", (e: NodeJS.ErrnoException) => {
      reject(
        new Error(e.code === "ENOENT" ? "setpriv (util-linux) is not installed: the node cannot drop its capabilities" : `cannot run setpriv: ${e.message}`),
      );
    });
    child.on("exit", (code, signal) => process.exit(code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : 1)));
  });
}
