/**
 * The learning switch's VLAN membership per port (802.1Q): the VLAN an untagged frame
 * belongs to (pvid), access ports (untagged frames only), router interfaces (internal
 * ports), membership[port * 4096 + vlan] (0 not a member, 1 tagged, 2 untagged) and the
 * member ports of each VLAN for flooding. Arrays grow when a port with a new index is
 * added (between passes, never during one: the switch reads them once per batch).
 */
import { grown } from "../core/grow.js";
import type { Port } from "../core/port.js";

export type SwitchPortMode = { mode: "access"; vlan: number } | { mode: "trunk"; allowed: number[]; native?: number };

export const VLANS = 4096;

export class PortVlans {
  /** Ports the arrays have room for. */
  private cap = 0;
  /** VLAN an untagged frame belongs to, per ingress port; -1 = untagged not accepted. */
  pvid = new Int32Array(0);
  /** 1 for access ports: they take untagged (and priority-tagged) frames only. */
  access = new Uint8Array(0);
  /** 1 for a router's internal port (an SVI): bridged frames to it are not shown to the bridge hook. */
  internal = new Uint8Array(0);
  /** membership[port * 4096 + vlan]: 0 = not a member, 1 = tagged, 2 = untagged. */
  membership = new Uint8Array(0);
  /** Member ports per VLAN, for flooding. */
  readonly floodList: Array<Int32Array | null> = new Array(VLANS).fill(null);

  /** Makes room for ports 0..n-1. */
  grow(n: number): void {
    if (n <= this.cap) return;
    const cap = Math.max(n, this.cap * 2, 8);
    this.pvid = grown(this.pvid, cap, -1);
    this.membership = grown(this.membership, cap * VLANS);
    this.access = grown(this.access, cap);
    this.internal = grown(this.internal, cap);
    this.cap = cap;
  }

  /** A port's membership from its mode (the flood lists are rebuilt by the caller). */
  set(p: Port, m: SwitchPortMode): void {
    this.clear(p.index);
    const base = p.index * VLANS;
    this.internal[p.index] = p.kind === "internal" ? 1 : 0;
    if (m.mode === "access") {
      checkVid(m.vlan, `port ${p.name} vlan`);
      this.pvid[p.index] = m.vlan;
      this.access[p.index] = 1;
      this.membership[base + m.vlan] = 2;
      return;
    }
    for (const v of m.allowed) {
      checkVid(v, `port ${p.name} allowed vlan`);
      this.membership[base + v] = 1;
    }
    if (m.native !== undefined) {
      checkVid(m.native, `port ${p.name} native vlan`);
      this.membership[base + m.native] = 2;
      this.pvid[p.index] = m.native;
    }
  }

  /** A port in no VLAN (it left). */
  clear(port: number): void {
    this.membership.fill(0, port * VLANS, (port + 1) * VLANS);
    this.pvid[port] = -1;
    this.access[port] = 0;
  }

  /** The member ports of every VLAN, for flooding, from the membership array. */
  rebuildFlood(ports: readonly Port[]): void {
    const members: number[][] = Array.from({ length: VLANS }, () => []);
    for (const p of ports) {
      if (p.removed) continue;
      const base = p.index * VLANS;
      for (let v = 1; v < VLANS; v++) if (this.membership[base + v] !== 0) members[v].push(p.index);
    }
    for (let v = 0; v < VLANS; v++) this.floodList[v] = members[v].length !== 0 ? Int32Array.from(members[v]) : null;
  }

  /** Port membership summary, for `show ports`. */
  summary(port: number): { pvid: number; tagged: number[]; untagged: number[] } {
    const tagged: number[] = [];
    const untagged: number[] = [];
    const base = port * VLANS;
    for (let v = 1; v < VLANS; v++) {
      const m = this.membership[base + v];
      if (m === 1) tagged.push(v);
      else if (m === 2) untagged.push(v);
    }
    return { pvid: this.pvid[port], tagged, untagged };
  }

  /** The port's mode, as set. */
  mode(port: number): SwitchPortMode {
    const v = this.summary(port);
    if (this.access[port] === 1) return { mode: "access", vlan: v.pvid };
    return v.pvid > 0 ? { mode: "trunk", allowed: v.tagged, native: v.pvid } : { mode: "trunk", allowed: v.tagged };
  }
}

export function checkMode(port: string, m: SwitchPortMode): void {
  if (m.mode === "access") checkVid(m.vlan, `port ${port} vlan`);
  else {
    for (const v of m.allowed) checkVid(v, `port ${port} allowed vlan`);
    if (m.native !== undefined) checkVid(m.native, `port ${port} native vlan`);
  }
}

export function checkVid(v: number, what: string): void {
  if (!Number.isInteger(v) || v < 1 || v > 4094) throw new Error(`${what}: ${v} is not a VLAN id (1-4094)`);
}
