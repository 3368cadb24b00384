/**
 * The tapnet node process: one engine, its ports, a learning switch, a control
 * socket. Started by `tapnet lab up` (inside the node's network namespace) or by
 * hand with `tapnet node run CONFIG.json`.
 */
import fs from "node:fs";
import type net from "node:net";
import { Engine } from "../core/engine.js";
import type { Port } from "../core/port.js";
import { CaptureSession } from "../control/capture.js";
import { ControlServer } from "../control/server.js";
import type { Request } from "../control/protocol.js";
import { LearningSwitch, type SwitchPortMode } from "../elements/learning-switch.js";
import { PcapPort } from "../io/pcap-port.js";
import { TapPort } from "../io/tap-port.js";
import { macToString, parseMac } from "../wire/mac.js";
import type { NodeConfig } from "./config.js";

export class TapnetNode {
  readonly engine = new Engine();
  readonly sw: LearningSwitch;
  private readonly control: ControlServer;
  private ageTimer: NodeJS.Timeout | null = null;
  private readonly modes: Record<string, SwitchPortMode> = {};
  readonly startedAt = Date.now();

  constructor(readonly config: NodeConfig) {
    for (const pc of config.ports) {
      const port: Port =
        pc.kind === "tap"
          ? new TapPort(pc.name, pc.ifname)
          : new PcapPort(pc.name, pc.ifname);
      this.engine.addPort(port);
      this.modes[pc.name] = pc.vlan;
    }
    this.sw = new LearningSwitch(this.engine.ports, {
      ageingTime: config.switch.ageingTime,
      maxEntries: config.switch.maxEntries,
      ports: this.modes,
      static: config.switch.static.map((s) => ({ mac: parseMac(s.mac), vlan: s.vlan, port: s.port })),
    });
    this.engine.pipeline = this.sw;
    const scratch = this.sw.scratchBytes(256);
    this.engine.reserve(scratch, "switch scratch", (base) => this.sw.setScratch(base, scratch));
    this.control = new ControlServer(config.controlSocket, {
      status: () => this.status(),
      fdb: () => this.fdb(),
      ports: () => this.ports(),
      stats: () => this.stats(),
      capture: (req, sock) => this.capture(req, sock),
      "fdb-flush": () => {
        this.sw.flush();
        return null;
      },
    });
  }

  async start(): Promise<void> {
    this.engine.start();
    try {
      await this.control.listen();
    } catch (e) {
      this.engine.stop();
      throw e;
    }
    // Sweep often enough that an entry outlives its ageing time by at most a quarter of it.
    const every = Math.min(Math.max(this.sw.ageingMs / 4, 250), 10_000);
    this.ageTimer = setInterval(() => this.sw.age(performance.now()), every);
  }

  stop(): void {
    if (this.ageTimer) clearInterval(this.ageTimer);
    this.control.close();
    this.engine.stop();
  }

  status(): unknown {
    return {
      lab: this.config.lab,
      node: this.config.node,
      pid: process.pid,
      uptime: Math.round((Date.now() - this.startedAt) / 1000),
      ports: this.engine.ports.map((p) => p.name),
    };
  }

  fdb(): unknown {
    const now = performance.now();
    return this.sw.entries(now).map((e) => ({
      mac: macToString(e.mac),
      vlan: e.vlan,
      port: this.engine.ports[e.port].name,
      static: e.isStatic,
      age: e.isStatic ? null : Math.round((now - e.lastSeen) / 100) / 10,
    }));
  }

  ports(): unknown {
    return this.engine.ports.map((p) => {
      const info = p.info();
      const v = this.sw.portVlans(p.index);
      const mode = this.modes[p.name];
      return {
        name: p.name,
        kind: p.kind,
        ifname: info.ifname,
        mac: macToString(info.mac),
        mtu: info.mtu,
        mode: mode.mode,
        pvid: v.pvid > 0 ? v.pvid : null,
        tagged: v.tagged,
        untagged: v.untagged,
        ...p.counters(),
      };
    });
  }

  stats(): unknown {
    return {
      switch: this.sw.counters(),
      fdbEntries: this.sw.dynamicCount,
      engine: { passes: this.engine.passes, internalErrors: this.engine.internalErrors, lastError: this.engine.lastError },
      ports: Object.fromEntries(this.engine.ports.map((p) => [p.name, p.counters()])),
      memory: { rss: process.memoryUsage().rss, pool: this.engine.pool?.size ?? 0 },
    };
  }

  private capture(req: Request, sock: net.Socket): "stream" {
    const names = Array.isArray(req.ports) ? (req.ports as unknown[]).map(String) : [];
    if (names.length === 0) throw new Error("capture needs at least one port");
    const ports = names.map((n) => {
      const p = this.engine.port(n);
      if (!p) {
        throw new Error(`node ${this.config.node} has no port '${n}' (ports: ${this.engine.ports.map((x) => x.name).join(", ")})`);
      }
      return p;
    });
    const count = typeof req.count === "number" && req.count > 0 ? Math.floor(req.count) : 0;
    sock.write(JSON.stringify({ ok: true, data: null }) + "\n");
    new CaptureSession(ports, sock, count);
    return "stream";
  }
}

/** Entry point of `tapnet node run CONFIG`: runs until SIGTERM/SIGINT. */
export async function runNode(configPath: string): Promise<void> {
  const config = JSON.parse(fs.readFileSync(configPath, "utf8")) as NodeConfig;
  const node = new TapnetNode(config);
  await node.start();
  const bye = (): void => {
    node.stop();
    process.exit(0);
  };
  process.on("SIGTERM", bye);
  process.on("SIGINT", bye);
  console.log(`tapnet node ${config.node} (lab ${config.lab}) up: ${config.ports.map((p) => p.name).join(", ")}`);
}
