/**
 * SwitchGuards — the learning switch's per port defences, in one place the switch asks
 * only for ports that have one (a flag byte per port, so other ports pay one array
 * read): storm control (storm-control.ts), port security (port-security.ts) and dynamic
 * ARP inspection (arp-inspection.ts).
 *
 * ingress() runs after the switch classified a frame (VLAN) and checked its source,
 * before it learns: ARP inspection on untrusted ports of inspected VLANs, then port
 * security when the source is new on a limited port (with sticky learning: the MAC is
 * entered as a static entry here). It returns a GUARD_* verdict; the switch counts
 * the drop. Storm control is asked by the switch itself where it knows the class
 * (broadcast, multicast, unknown unicast: after the table lookup).
 *
 * Config (GuardConfig): per port name storm limits and port security; ARP inspection's
 * VLANs, bindings and the ports it trusts. Per port state grows with the port index;
 * resetPort() clears a port of every guard.
 */
import type { Port } from "../core/port.js";
import { ArpInspection, type ArpBinding, ARP_INVALID, ARP_PASS } from "./arp-inspection.js";
import type { FdbTable } from "./fdb-table.js";
import { growU8, PortSecurity, type PortSecurityConfig } from "./port-security.js";

export { growU8 };
import { StormControl, type StormLimits } from "./storm-control.js";

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

export class SwitchGuards {
  readonly storm = new StormControl();
  readonly security = new PortSecurity();
  readonly arp: ArpInspection | null;
  /** Per port: F_SECURE | F_ARP | F_STORM; 0 for a port with no guard. */
  flags: Uint8Array;

  constructor(
    private readonly ports: readonly Port[],
    config: GuardConfig = {},
  ) {
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
  }

  setStorm(port: number, limits: StormLimits): void {
    this.setFlag(port, F_STORM, this.storm.configure(port, limits));
  }

  setSecurity(port: number, cfg: PortSecurityConfig): void {
    this.security.configure(port, cfg);
    this.setFlag(port, F_SECURE, true);
  }

  /** Clears every guard of a port (removed, or its index reused). */
  resetPort(port: number): void {
    this.storm.resetPort(port);
    this.security.resetPort(port);
    if (port < this.flags.length) this.flags[port] = 0;
  }

  /** ARP inspection and port security for a frame classified into `vlan` on `port`. */
  ingress(fdb: FdbTable, port: number, buf: Buffer, off: number, len: number, tagged: boolean, vlan: number, srcHi: number, srcLo: number, now: number): number {
    const f = this.flags[port];
    if ((f & F_ARP) !== 0 && this.arp !== null && this.arp.vlans[vlan] === 1) {
      const r = this.arp.inspect(buf, off, len, tagged, vlan, now);
      if (r !== ARP_PASS) return r === ARP_INVALID ? GUARD_ARP_INVALID : GUARD_ARP_SPOOFED;
    }
    if ((f & F_SECURE) === 0) return GUARD_PASS;
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

  /** What `show security` prints of a port; null when it has no guard. */
  portInfo(port: number, fdb: FdbTable): Record<string, unknown> | null {
    const f = port < this.flags.length ? this.flags[port] : 0;
    if (f === 0) return null;
    return {
      port: this.ports[port].name,
      arpInspected: (f & F_ARP) !== 0,
      storm: this.storm.portInfo(port),
      security: this.security.portInfo(port, fdb.portEntries(port)),
    };
  }

  private setFlag(port: number, flag: number, on: boolean): void {
    if (port >= this.flags.length) this.flags = growU8(this.flags, port + 1);
    this.flags[port] = on ? this.flags[port] | flag : this.flags[port] & ~flag;
  }
}
