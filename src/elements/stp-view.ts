/**
 * What `tapnet show stp` prints of a SpanningTree: the bridge (its id, the root it
 * follows, the root port and path cost, the timers in use, topology change), and per
 * port its role, state, cost, priority and the designated information it holds — the
 * fields of `bridge -d link`, /sys/class/net/br0/bridge and `mstpctl showport`. Bridge
 * ids are written as Linux's sysfs writes them (`8000.020000000001`), so they compare
 * with a kernel bridge's root_id as strings.
 */
import { bridgeIdString } from "../wire/bpdu.js";
import { type SpanningTree, STP_DISABLED, STP_STATE_NAMES, type StpPort } from "./stp.js";

export type StpRole = "root" | "designated" | "alternate" | "backup" | "disabled";

export interface StpPortView {
  name: string;
  /** `8.001`: priority nibble, then the port number, as mstpctl prints a port id. */
  portId: string;
  priority: number;
  cost: number;
  role: StpRole;
  state: (typeof STP_STATE_NAMES)[number];
  designatedRoot: string;
  designatedBridge: string;
  designatedPort: string;
  designatedCost: number;
  /** BPDUs received and sent on the port. */
  rx: number;
  tx: number;
  /** Times the port went forwarding. */
  forwardTransitions: number;
}

export interface StpView {
  enabled: boolean;
  bridgeId: string;
  priority: number;
  rootId: string;
  isRoot: boolean;
  /** Name of the root port; null at the root. */
  rootPort: string | null;
  rootPathCost: number;
  /** Timers in use (learned from the root), seconds. */
  helloTime: number;
  maxAge: number;
  forwardDelay: number;
  /** This bridge's own timer settings, seconds. */
  bridgeHelloTime: number;
  bridgeMaxAge: number;
  bridgeForwardDelay: number;
  topologyChange: boolean;
  topologyChangeDetected: boolean;
  /** Seconds since the last topology change seen here; null: never. */
  sinceTopologyChange: number | null;
  ports: StpPortView[];
}

const portIdString = (id: number): string => `${(id >> 12).toString(16)}.${(id & 0xfff).toString(16).padStart(3, "0")}`;

export function stpRole(stp: SpanningTree, p: StpPort): StpRole {
  if (p.state === STP_DISABLED) return "disabled";
  if (p.index === stp.rootPort) return "root";
  if (stp.isDesignated(p)) return "designated";
  // Blocked: another bridge is designated on the link (alternate), or another of our ports (backup).
  return p.bridgePrio === stp.prio && p.bridgeMac === stp.mac ? "backup" : "alternate";
}

export function showStp(stp: SpanningTree, now: number): StpView {
  const s = (ms: number): number => Math.round(ms / 10) / 100;
  const ports: StpPortView[] = [];
  for (const p of stp.sp) {
    if (p === null) continue;
    ports.push({
      name: stp.ports[p.index].name,
      portId: portIdString(p.portId),
      priority: p.priority,
      cost: p.pathCost,
      role: stp.enabled ? stpRole(stp, p) : "disabled",
      state: stp.enabled ? STP_STATE_NAMES[p.state] : "forwarding",
      designatedRoot: bridgeIdString(p.rootPrio, p.rootMac),
      designatedBridge: bridgeIdString(p.bridgePrio, p.bridgeMac),
      designatedPort: portIdString(p.port),
      designatedCost: p.cost,
      rx: p.rx,
      tx: p.tx,
      forwardTransitions: p.forwardTransitions,
    });
  }
  return {
    enabled: stp.enabled,
    bridgeId: bridgeIdString(stp.prio, stp.mac),
    priority: stp.prio,
    rootId: bridgeIdString(stp.rootPrio, stp.rootMac),
    isRoot: stp.isRoot(),
    rootPort: stp.rootPort >= 0 ? stp.ports[stp.rootPort].name : null,
    rootPathCost: stp.rootPathCost,
    helloTime: s(stp.helloTime),
    maxAge: s(stp.maxAge),
    forwardDelay: s(stp.forwardDelay),
    bridgeHelloTime: s(stp.bridgeHello),
    bridgeMaxAge: s(stp.bridgeMaxAge),
    bridgeForwardDelay: s(stp.bridgeForwardDelay),
    topologyChange: stp.topologyChange,
    topologyChangeDetected: stp.topologyChangeDetected,
    sinceTopologyChange: stp.lastTopologyChange < 0 ? null : Math.round((now - stp.lastTopologyChange) / 100) / 10,
    ports,
  };
}
