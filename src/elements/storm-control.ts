/**
 * StormControl — per port and per traffic class rate limits at the switch's ingress, as
 * real switches' storm control (`storm-control broadcast level pps …`): broadcast,
 * multicast and unknown unicast (a unicast destination not in the MAC table: flooded),
 * each in frames per second. A class's excess is dropped (the switch counts it
 * `stormBroadcast`, `stormMulticast`, `stormUnknownUnicast`), the rest of the port's
 * traffic — known unicast above all — is untouched, so a broadcast storm or a flood
 * from one port cannot take the VLAN's bandwidth and every host's CPU.
 *
 * Each (port, class) is a token bucket: `rate` tokens a second, at most one second's
 * worth saved up, one token per frame — so over any stretch of time at most rate x
 * seconds + rate frames of the class pass, however they bunch up (a port's frames come
 * in batches), which is the per second count of a switch's storm control. A limit of 0
 * drops the whole class. Per port arrays grow with the highest port configured; resetPort()
 * clears one (an index may be reused). Used by the learning switch only when a port has
 * a limit (its flags); no allocation per frame.
 */
import { grown } from "../core/grow.js";

export const STORM_BROADCAST = 0;
export const STORM_MULTICAST = 1;
export const STORM_UNKNOWN_UNICAST = 2;
const CLASSES = 3;
export const STORM_CLASS_NAMES = ["broadcast", "multicast", "unknownUnicast"] as const;

/** Frames per second per class; absent: no limit. */
export interface StormLimits {
  broadcast?: number;
  multicast?: number;
  unknownUnicast?: number;
}

export class StormControl {
  /** Per (port, class): frames/s, or -1 for no limit. */
  private rate = new Float64Array(0);
  private depth = new Float64Array(0);
  private tokens = new Float64Array(0);
  private stamp = new Float64Array(0);
  /** Per (port, class): frames dropped. */
  private dropped = new Float64Array(0);

  /** Sets port `port`'s limits (replacing earlier ones); true when any class is limited. */
  configure(port: number, limits: StormLimits): boolean {
    this.grow(port + 1);
    const vals = [limits.broadcast, limits.multicast, limits.unknownUnicast];
    let any = false;
    for (let k = 0; k < CLASSES; k++) {
      const v = vals[k];
      const i = port * CLASSES + k;
      if (v === undefined) {
        this.rate[i] = -1;
        continue;
      }
      if (!Number.isFinite(v) || v < 0) throw new Error(`storm control ${STORM_CLASS_NAMES[k]}: ${v} is not a rate in frames/s`);
      this.rate[i] = v;
      this.depth[i] = v === 0 ? 0 : Math.max(1, v);
      this.tokens[i] = this.depth[i];
      this.stamp[i] = -1;
      any = true;
    }
    return any;
  }

  /** Forgets port `port` (limits and counts). */
  resetPort(port: number): void {
    if (port * CLASSES >= this.rate.length) return;
    for (let k = 0; k < CLASSES; k++) {
      const i = port * CLASSES + k;
      this.rate[i] = -1;
      this.dropped[i] = 0;
    }
  }

  /** Takes a token for one frame of class `cls` on `port`; false: over the limit (counted). */
  allow(port: number, cls: number, now: number): boolean {
    const i = port * CLASSES + cls;
    if (i >= this.rate.length) return true;
    const r = this.rate[i];
    if (r < 0) return true;
    let t = this.tokens[i];
    const last = this.stamp[i];
    if (last >= 0 && now > last) {
      t += ((now - last) * r) / 1000;
      if (t > this.depth[i]) t = this.depth[i];
    }
    this.stamp[i] = now;
    if (t >= 1) {
      this.tokens[i] = t - 1;
      return true;
    }
    this.tokens[i] = t;
    this.dropped[i]++;
    return false;
  }

  /** A port's limits and drops, for `show security`; null when none is set. */
  portInfo(port: number): { limits: StormLimits; dropped: Record<string, number> } | null {
    if (port * CLASSES >= this.rate.length) return null;
    const limits: Record<string, number> = {};
    const dropped: Record<string, number> = {};
    for (let k = 0; k < CLASSES; k++) {
      const i = port * CLASSES + k;
      if (this.rate[i] >= 0) {
        limits[STORM_CLASS_NAMES[k]] = this.rate[i];
        dropped[STORM_CLASS_NAMES[k]] = this.dropped[i];
      }
    }
    return Object.keys(limits).length ? { limits, dropped } : null;
  }

  private grow(ports: number): void {
    const n = ports * CLASSES;
    if (n <= this.rate.length) return;
    const size = Math.max(n, this.rate.length * 2);
    this.rate = grown(this.rate, size, -1);
    this.depth = grown(this.depth, size);
    this.tokens = grown(this.tokens, size);
    this.stamp = grown(this.stamp, size, -1);
    this.dropped = grown(this.dropped, size);
  }
}
