/**
 * SwitchGuards — the learning switch's per port layer-2 safety state, in one place the
 * switch reads with two array loads per frame:
 *   gate   what a port lets through: forwarding, learning (learn, do not forward),
 *          discarding (spanning tree blocking or listening: neither) or shut (port
 *          security shut it: nothing in or out). Spanning tree (stp.ts) sets it through
 *          this object, its StpHost; a port that stops forwarding forgets its stations;
 *          during a topology change the switch ages entries in forward delay.
 *   flags  which guards a port has: storm control (storm-control.ts), port security
 *          (port-security.ts), dynamic ARP inspection (arp-inspection.ts); 0 for none.
 *
 * ingress() runs after the switch classified a frame (VLAN) and checked its source,
 * before it learns: ARP inspection on untrusted ports of inspected VLANs, then port
 * security when the source is new on a limited port (with sticky learning the MAC is
 * entered as a static entry here). It returns a GUARD_* verdict; the switch counts the
 * drop. Storm control is asked by the switch itself where it knows the class
 * (broadcast, multicast, unknown unicast: after the table lookup).
 *
 * Config (GuardConfig): per port name storm limits and port security; ARP inspection's
 * VLANs, bindings and the ports it trusts. Per port arrays grow with the port index;
 * addPort() readies an index (a new port, or a reused one), resetPort() clears one of
 * every guard and of the tree (in a pass: the tree may send BPDUs).
 */
import { grownFor } from "../core/grow.js";
import type { Port } from "../core/port.js";
import { ArpInspection, type ArpBinding, ARP_INVALID, ARP_PASS } from "./arp-inspection.js";
import type { FdbTable } from "./fdb-table.js";
import { removeEntries } from "./fdb-sweep.js";
import { PortSecurity, type PortSecurityConfig } from "./port-security.js";
import { StormControl, type StormLimits } from "./storm-control.js";
import { STP_FORWARDING, STP_LEARNING, type SpanningTree, type StpHost } from "./stp.js";

export const GATE_FORWARD = 0;
export const GATE_LEARN = 1;
export const GATE_DISCARD = 2;
export const GATE_SHUT = 3;
const GATE_NAMES = ["forwarding", "learning", "discarding", "shutdown"] as const;

export const F_SECURE = 1;
export const F_ARP = 2;
export const F_STORM = 4;

export const GUARD_PASS = 0;
export const GUARD_ARP_INVALID = 1;
export const GUARD_ARP_SPOOFED = 2;
export const GUARD_SEC_VIOLATION = 3;
/** A violation that shuts the port (port security, violation: shutdown). */
export const GUARD_SEC_SHUTDOWN = 4;

export interface GuardConfig {
  storm?: Record<string, StormLimits>;
  security?: Record<string, PortSecurityConfig>;
  arpInspection?: {
    vlans: number[];
    bindings?: ArpBinding[];
    /** Ports not inspected (links to switches, trunks, router interfaces). */
    trusted: string[];
  };
}

export class SwitchGuards implements StpHost {
  readonly storm = new StormControl();
  readonly security = new PortSecurity();
  readonly arp: ArpInspection | null;
  /** Per port: GATE_*. */
  gate: Uint8Array;
  /** Per port: F_SECURE | F_ARP | F_STORM; 0 for a port with no guard. */
  flags: Uint8Array;

  constructor(
    private readonly ports: readonly Port[],
    config: GuardConfig,
    private readonly fdb: FdbTable,
    readonly stp: SpanningTree | null,
    /** Ageing of dynamic entries during a topology change (ms), or null: the configured one. */
    private readonly setAgeing: (ms: number | null) => void,
  ) {
    this.gate = new Uint8Array(Math.max(8, ports.length));
    this.flags = new Uint8Array(Math.max(8, ports.length));
    const at = (name: string, what: string): number => {
      const p = ports.find((x) => x.name === name);
      if (!p) throw new Error(`${what} names unknown port '${name}'`);
      return p.index;
    };
    for (const [n, l] of Object.entries(config.storm ?? {})) this.setStorm(at(n, "storm control"), l);
    for (const [n, s] of Object.entries(config.security ?? {})) this.setSecurity(at(n, "port security"), s);
    const ai = config.arpInspection;
    this.arp = ai ? new ArpInspection(ai.vlans, ai.bindings) : null;
    if (ai) {
      for (const n of ai.trusted) at(n, "arp inspection trusted port");
      for (const p of ports) if (!ai.trusted.includes(p.name)) this.setFlag(p.index, F_ARP, true);
    }
    stp?.bind(this);
  }

  setStorm(port: number, limits: StormLimits): void {
    this.setFlag(port, F_STORM, this.storm.configure(port, limits));
  }

  setSecurity(port: number, cfg: PortSecurityConfig): void {
    this.security.configure(port, cfg);
    this.setFlag(port, F_SECURE, true);
  }

  /** Readies index `port` for a port added at run time: no guard but ARP inspection (it faces a host). */
  addPort(port: number): void {
    this.clear(port);
    if (this.arp !== null) this.setFlag(port, F_ARP, true);
  }

  /** Clears a port of every guard, of the tree and of its stations (removed, or its index reused). In a pass. */
  resetPort(port: number, now: number): void {
    this.clear(port);
    this.stp?.resetPort(port, now);
    this.flushPort(port);
  }

  /** ARP inspection and port security for a frame classified into `vlan` on `port`. */
  ingress(port: number, buf: Buffer, off: number, len: number, tagged: boolean, vlan: number, srcHi: number, srcLo: number, now: number): number {
    const f = this.flags[port];
    if ((f & F_ARP) !== 0 && this.arp !== null && this.arp.vlans[vlan] === 1) {
      const r = this.arp.inspect(buf, off, len, tagged, vlan, now);
      if (r !== ARP_PASS) return r === ARP_INVALID ? GUARD_ARP_INVALID : GUARD_ARP_SPOOFED;
    }
    if ((f & F_SECURE) === 0) return GUARD_PASS;
    const fdb = this.fdb;
    const slot = fdb.find(vlan, srcHi, srcLo);
    if (slot >= 0 && fdb.port(slot) === port) return GUARD_PASS;
    const sec = this.security;
    // New on this port. A static (secure) MAC of another port does not move here.
    if ((slot >= 0 && fdb.isStatic(slot)) || !sec.hasRoom(port, fdb.portEntries(port))) {
      return sec.violation(port) ? GUARD_SEC_SHUTDOWN : GUARD_SEC_VIOLATION;
    }
    if (sec.isSticky(port) && fdb.insert(vlan, srcHi, srcLo, port, now, true) >= 0) sec.addSecure(port);
    return GUARD_PASS;
  }

  /** Spanning tree set a port's state (StpHost); a port that stops forwarding forgets its stations. */
  stpPortState(port: number, state: number): void {
    if (port >= this.gate.length) this.gate = grownFor(this.gate, port);
    if (this.gate[port] === GATE_SHUT) return;
    const g = state === STP_FORWARDING ? GATE_FORWARD : state === STP_LEARNING ? GATE_LEARN : GATE_DISCARD;
    if (this.gate[port] === GATE_FORWARD && g !== GATE_FORWARD) this.flushPort(port);
    this.gate[port] = g;
  }

  /** During a topology change entries age in forward delay (802.1D 8.3.5; StpHost). */
  stpFastAgeing(ms: number | null): void {
    this.setAgeing(ms);
  }

  /** Port security shuts a port: nothing in or out, spanning tree sees it down. In a pass. */
  shut(port: number, now: number): void {
    this.gate[port] = GATE_SHUT;
    this.flushPort(port);
    this.stp?.setPortEnabled(port, false, now);
  }

  /** `tapnet security reset`: clears a port's violations and brings it back from shutdown. In a pass. */
  recover(port: number, now: number): boolean {
    const wasShut = this.security.recover(port);
    if (wasShut) {
      this.gate[port] = this.stp?.takes(port) ? GATE_DISCARD : GATE_FORWARD;
      this.stp?.setPortEnabled(port, true, now);
    }
    return wasShut;
  }

  /** What a port lets through: forwarding, learning, discarding (spanning tree) or shutdown. */
  portGate(port: number): (typeof GATE_NAMES)[number] {
    return GATE_NAMES[port < this.gate.length ? this.gate[port] : 0];
  }

  /** What `show security` prints of a port; null when it has no guard. */
  portInfo(port: number): Record<string, unknown> | null {
    const f = port < this.flags.length ? this.flags[port] : 0;
    if (f === 0 && this.portGate(port) !== "shutdown") return null;
    return {
      port: this.ports[port].name,
      state: this.portGate(port),
      arpInspected: (f & F_ARP) !== 0,
      storm: this.storm.portInfo(port),
      security: this.security.portInfo(port, this.fdb.portEntries(port)),
    };
  }

  /** Removes a port's dynamic entries. */
  flushPort(port: number): void {
    if (this.fdb.portEntries(port) !== 0) removeEntries(this.fdb, -1, port, false);
  }

  private clear(port: number): void {
    this.storm.resetPort(port);
    this.security.resetPort(port);
    if (port < this.flags.length) this.flags[port] = 0;
    if (port >= this.gate.length) this.gate = grownFor(this.gate, port);
    this.gate[port] = GATE_FORWARD;
  }

  private setFlag(port: number, flag: number, on: boolean): void {
    if (port >= this.flags.length) this.flags = grownFor(this.flags, port);
    this.flags[port] = on ? this.flags[port] | flag : this.flags[port] & ~flag;
  }
}
