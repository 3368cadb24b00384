/**
 * PortSecurity — how many stations a switch port may have (a switch's `switchport
 * port-security maximum N`): a port with a limit learns at most `maxMacs` source MACs
 * (static secure MACs and sticky ones included); a frame from one more MAC is a
 * violation. `restrict`: the frame is dropped and counted (`secViolation`), the port
 * stays up. `shutdown`: the port is also shut (err-disabled: every frame in or out is
 * dropped, `portShutdown`, spanning tree sees it as down) until `tapnet security reset`.
 * `sticky`: learned MACs become static entries that never age or move, as a sticky
 * secure address. `macs`: static secure MACs, set up as static entries of the port.
 *
 * So a host that floods random source MACs fills its own port's quota and no more:
 * the table, and the other ports' stations, are untouched.
 *
 * This holds the per port settings and counts; the switch (learning-switch.ts) asks
 * it when a frame's source is new on a limited port. Per port arrays grow with the
 * highest port configured; resetPort() clears one (an index may be reused).
 */
import { grown } from "../core/grow.js";

export interface PortSecurityConfig {
  /** Most MACs the port may hold (static and sticky ones included). */
  maxMacs: number;
  /** restrict (default): drop and count; shutdown: drop, count and shut the port. */
  violation?: "restrict" | "shutdown";
  /** Learned MACs become static (sticky secure addresses). */
  sticky?: boolean;
  /** Static secure MACs of the port (48-bit numbers). */
  macs?: number[];
}

export class PortSecurity {
  /** Per port: the limit, or -1 for none. */
  private max = new Int32Array(0);
  private shutdownMode = new Uint8Array(0);
  private stickyMode = new Uint8Array(0);
  /** Per port: static and sticky secure MACs held. */
  private secure = new Int32Array(0);
  private violations = new Float64Array(0);
  /** Per port: 1 while shut by a violation. */
  private shutFlag = new Uint8Array(0);

  configure(port: number, cfg: PortSecurityConfig): void {
    if (!Number.isInteger(cfg.maxMacs) || cfg.maxMacs < 1) throw new Error(`port security maxMacs: ${cfg.maxMacs} is not a count of 1 or more`);
    if ((cfg.macs?.length ?? 0) > cfg.maxMacs) throw new Error(`port security: ${cfg.macs?.length} static MACs exceed maxMacs ${cfg.maxMacs}`);
    this.grow(port + 1);
    this.max[port] = cfg.maxMacs;
    this.shutdownMode[port] = cfg.violation === "shutdown" ? 1 : 0;
    this.stickyMode[port] = cfg.sticky === true ? 1 : 0;
    this.secure[port] = 0;
    this.violations[port] = 0;
    this.shutFlag[port] = 0;
  }

  /** Forgets port `port` entirely. */
  resetPort(port: number): void {
    if (port >= this.max.length) return;
    this.max[port] = -1;
    this.secure[port] = 0;
    this.violations[port] = 0;
    this.shutFlag[port] = 0;
  }

  limited(port: number): boolean {
    return port < this.max.length && this.max[port] >= 0;
  }

  /** Whether the port may take one more MAC, given the dynamic entries it holds. */
  hasRoom(port: number, dynamicEntries: number): boolean {
    return this.secure[port] + dynamicEntries < this.max[port];
  }

  isSticky(port: number): boolean {
    return this.stickyMode[port] === 1;
  }

  /** A static or sticky MAC was added to the port. */
  addSecure(port: number): void {
    this.secure[port]++;
  }

  /** Counts a violation; true when the port is to be shut now. */
  violation(port: number): boolean {
    this.violations[port]++;
    if (this.shutdownMode[port] === 1 && this.shutFlag[port] === 0) {
      this.shutFlag[port] = 1;
      return true;
    }
    return false;
  }

  isShut(port: number): boolean {
    return port < this.shutFlag.length && this.shutFlag[port] === 1;
  }

  /** Clears a port's violations and brings it back from shutdown; true when it was shut. */
  recover(port: number): boolean {
    if (port >= this.max.length) return false;
    const was = this.shutFlag[port] === 1;
    this.shutFlag[port] = 0;
    this.violations[port] = 0;
    return was;
  }

  /** A port's settings and state, for `show security`; null when it has no limit. */
  portInfo(
    port: number,
    dynamicEntries: number,
  ): { maxMacs: number; violation: string; sticky: boolean; macs: number; violations: number; shut: boolean } | null {
    if (!this.limited(port)) return null;
    return {
      maxMacs: this.max[port],
      violation: this.shutdownMode[port] === 1 ? "shutdown" : "restrict",
      sticky: this.stickyMode[port] === 1,
      macs: this.secure[port] + dynamicEntries,
      violations: this.violations[port],
      shut: this.shutFlag[port] === 1,
    };
  }

  private grow(ports: number): void {
    if (ports <= this.max.length) return;
    const n = Math.max(ports, this.max.length * 2);
    this.max = grown(this.max, n, -1);
    this.shutdownMode = grown(this.shutdownMode, n);
    this.stickyMode = grown(this.stickyMode, n);
    this.shutFlag = grown(this.shutFlag, n);
    this.secure = grown(this.secure, n);
    this.violations = grown(this.violations, n);
  }
}
