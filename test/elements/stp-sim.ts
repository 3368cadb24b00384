/**
 * A simulated layer-2 network for spanning tree tests: tapnet switches built by the
 * node's graph builder over MemoryPorts, their link ports joined by "cables" that carry
 * what one side sent to the other side's inject(), a virtual clock. step() advances the
 * clock by 100 ms, runs each switch's STP timers in a pass (as the node's timer does) and
 * carries frames until the network is quiet (or a round limit, which a loop hits).
 */
import type { Port } from "../../src/core/port.js";
import type { LearningSwitch } from "../../src/elements/learning-switch.js";
import type { SpanningTree } from "../../src/elements/stp.js";
import { MemoryPort } from "../../src/io/memory-port.js";
import type { NodeConfig, NodePortConfig } from "../../src/node/config.js";
import { buildGraph, type NodeGraph } from "../../src/node/graph.js";

export interface SimBridgeSpec {
  name: string;
  priority: number;
  /** Port names; ports named after another bridge are links, others hosts. */
  ports: string[];
  stp?: boolean;
  /** Per port extras (stp cost/priority, storm control, port security). */
  port?: Record<string, Partial<NodePortConfig>>;
  arpInspection?: NodeConfig["switch"]["arpInspection"];
}

export class SimBridge {
  readonly graph: NodeGraph;
  readonly ports: Record<string, MemoryPort> = {};
  constructor(
    readonly spec: SimBridgeSpec,
    clock: () => number,
  ) {
    const mac = `02:73:00:00:${spec.name.length.toString(16).padStart(2, "0")}:${spec.name
      .charCodeAt(spec.name.length - 1)
      .toString(16)
      .padStart(2, "0")}`;
    const config: NodeConfig = {
      lab: "sim",
      node: spec.name,
      controlSocket: "",
      ports: spec.ports.map((n) => ({ name: n, kind: "tap", ifname: n, vlan: { mode: "access", vlan: 1 }, ...(spec.port?.[n] ?? {}) })),
      switch: {
        ageingTime: 300,
        maxEntries: 1024,
        static: [],
        stp: spec.stp === false ? undefined : { enabled: true, priority: spec.priority, helloTime: 1, forwardDelay: 2, maxAge: 6, mac },
        arpInspection: spec.arpInspection,
      },
    };
    this.graph = buildGraph(config, {
      makePort: (pc) => (this.ports[pc.name] = new MemoryPort(pc.name)),
      clock,
    });
    // Room for a port added while it runs (the runtime test).
    this.graph.engine.start(4 << 20);
  }
  get sw(): LearningSwitch {
    return this.graph.sw;
  }
  get stp(): SpanningTree {
    return this.graph.stp as SpanningTree;
  }
  port(name: string): Port {
    return this.ports[name];
  }
}

export interface Cable {
  a: SimBridge;
  pa: string;
  b: SimBridge;
  pb: string;
  up: boolean;
}

export class SimNet {
  t = 1000;
  readonly bridges: Record<string, SimBridge> = {};
  readonly cables: Cable[] = [];
  /** Frames that left host ports (not cabled), per "bridge/port", since the last take(). */
  readonly hostRx: Record<string, Buffer[]> = {};
  /** Delivery rounds that hit the limit (frames still moving: a loop). */
  saturated = 0;

  add(spec: SimBridgeSpec): SimBridge {
    const b = new SimBridge(spec, () => this.t);
    this.bridges[spec.name] = b;
    return b;
  }

  /** Cables port `b2` of `b1` to port `b1` of `b2` (ports named after the peer). */
  cable(b1: string, b2: string): Cable {
    const c = { a: this.bridges[b1], pa: b2, b: this.bridges[b2], pb: b1, up: true };
    this.cables.push(c);
    return c;
  }

  /** Runs every bridge's STP timers at the current time, then carries frames. */
  tick(): void {
    for (const b of Object.values(this.bridges)) {
      const stp = b.graph.stp;
      if (stp) b.graph.engine.runPass((_pool, now) => stp.tick(now));
    }
    this.carry();
  }

  /** Advances by `ms` in 100 ms steps. */
  run(ms: number): void {
    for (let i = 0; i < ms / 100; i++) {
      this.t += 100;
      this.tick();
    }
  }

  /** Moves frames across cables until quiet; at most `rounds` rounds. */
  carry(rounds = 20): void {
    for (let r = 0; r < rounds; r++) {
      let moved = false;
      for (const c of this.cables) {
        const ab = c.a.ports[c.pa].sent.splice(0);
        const ba = c.b.ports[c.pb].sent.splice(0);
        if (!c.up) continue;
        if (ab.length) {
          c.b.ports[c.pb].inject(ab);
          moved = true;
        }
        if (ba.length) {
          c.a.ports[c.pa].inject(ba);
          moved = true;
        }
      }
      this.collectHosts();
      if (!moved) return;
    }
    this.saturated++;
  }

  private collectHosts(): void {
    for (const b of Object.values(this.bridges)) {
      for (const [n, p] of Object.entries(b.ports)) {
        if (this.bridges[n]) continue;
        const k = `${b.spec.name}/${n}`;
        (this.hostRx[k] ??= []).push(...p.sent.splice(0));
      }
    }
  }

  /** Takes the frames a host port sent so far: its data frames, or with `bpdus` everything. */
  take(bridge: string, port: string, bpdus = false): Buffer[] {
    this.collectHosts();
    const all = (this.hostRx[`${bridge}/${port}`] ?? []).splice(0);
    return bpdus ? all : all.filter((f) => !(f[0] === 0x01 && f[1] === 0x80 && f[2] === 0xc2 && f[5] === 0));
  }
}
