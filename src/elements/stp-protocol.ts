/**
 * StpProtocol — the state machine of IEEE 802.1D spanning tree (802.1D-1998 clause 8,
 * what the Linux bridge runs with stp_state 1): the bridge and port variables (8.5),
 * the procedures (8.6) and the timers (8.7), named as there. It knows nothing of frames
 * or pools: SpanningTree (stp.ts) decodes what arrives, encodes what it sends
 * (sendConfig, sendTcn) and wires it to the switch.
 *
 * Root election: the lowest bridge id (priority, then MAC) wins. Port roles: the root
 * port has the best path to the root (root id, then path cost, then the designated
 * bridge's id, its port id, our port id); a port is designated when this bridge offers
 * its link a better path than the one heard there; every other port blocks (alternate,
 * or backup when the better one is our own). Root and designated ports go blocking ->
 * listening -> learning -> forwarding, forward delay per step; information not
 * refreshed within max age is dropped and the tree recomputed; a port that starts or
 * stops forwarding is a topology change: the root sets TC in its BPDUs for max age +
 * forward delay and every bridge ages its MAC table in forward delay (8.3.5).
 *
 * Times are milliseconds of the pass clock; timers are deadlines (-1: stopped) that
 * tick() checks.
 */
import { counters, Element } from "../core/element.js";
import { BPDU_FLAG_TC, BPDU_FLAG_TCA, type Bpdu } from "../wire/bpdu.js";

export const STP_DISABLED = 0;
export const STP_BLOCKING = 1;
export const STP_LISTENING = 2;
export const STP_LEARNING = 3;
export const STP_FORWARDING = 4;
export const STP_STATE_NAMES = ["disabled", "blocking", "listening", "learning", "forwarding"] as const;

/** 802.1D's defaults (Table 8-3) and the ranges the Linux bridge accepts. */
export const STP_DEFAULTS = { priority: 32768, helloTime: 2, forwardDelay: 15, maxAge: 20, portPriority: 128, cost: 2 };
export const STP_LIMITS = { helloTime: [1, 10], forwardDelay: [2, 30], maxAge: [6, 40] } as const;

/** What the switch does for the protocol: apply port states, age fast during a change. */
export interface StpHost {
  stpPortState(port: number, state: number): void;
  /** Ageing of dynamic MAC entries in ms during a topology change; null: the configured ageing. */
  stpFastAgeing(ms: number | null): void;
}

export const STP_COUNTERS = counters({
  deliver: {
    config: "configuration BPDUs processed",
    tcn: "topology change notification BPDUs processed",
  },
  drop: {
    ignored: "BPDUs not acted on: RST BPDUs (RSTP is not spoken), unknown types, our own BPDU looped back",
    malformed: "not a valid BPDU: short, bad length or LLC header, protocol id not 0, message age at or past max age",
  },
  event: {
    txConfig: "configuration BPDUs sent",
    txTcn: "topology change notifications sent",
    topologyChanges: "topology changes detected here (a port started or stopped forwarding)",
    scratchFull: "BPDUs not sent: the pass's scratch was used up",
  },
});
type StpCounter = (typeof STP_COUNTERS.names)[number];
const C = STP_COUNTERS.id;

/** 8.10.2: the hold time, the least time between two config BPDUs on a port. */
const HOLD_MS = 1000;
/** Added to the message age of relayed information (8.6.1.3.2, an overestimate): 1/256 s, as Linux. */
const MESSAGE_AGE_INCR_MS = 1000 / 256 + 1;
/** BPDU times are in 1/256 s (802.1D 9.2.8). */
const toMs = (units: number): number => (units * 1000) / 256;

/** Compares bridge ids (priority, MAC): <0, 0, >0. */
function cmpId(p1: number, m1: number, p2: number, m2: number): number {
  return p1 !== p2 ? p1 - p2 : m1 - m2;
}

/** Sets the designated information a port holds (8.5.5.1-8.5.5.4): the root, its cost, the bridge and port that offer it. */
function setDesignated(p: StpPort, rootPrio: number, rootMac: number, cost: number, bridgePrio: number, bridgeMac: number, port: number): void {
  p.rootPrio = rootPrio;
  p.rootMac = rootMac;
  p.cost = cost;
  p.bridgePrio = bridgePrio;
  p.bridgeMac = bridgeMac;
  p.port = port;
}

/** A port's protocol state (8.5.5): its own id and cost, and the designated information it holds. */
export class StpPort {
  state = STP_DISABLED;
  rootPrio = 0;
  rootMac = 0;
  cost = 0;
  bridgePrio = 0;
  bridgeMac = 0;
  port = 0;
  tcAck = false;
  configPending = false;
  /** Timer deadlines in ms; -1: not running. */
  messageAgeTimer = -1;
  forwardDelayTimer = -1;
  holdTimer = -1;
  /** When the designated information had message age 0 (reception time - message age). */
  ageBase = 0;
  rx = 0;
  tx = 0;
  /** Times the port went forwarding. */
  forwardTransitions = 0;

  constructor(
    readonly index: number,
    readonly portId: number,
    readonly pathCost: number,
    readonly priority: number,
    /** Source MAC of the BPDUs it sends. */
    readonly mac: number,
  ) {}
}

export abstract class StpProtocol extends Element<StpCounter> {
  /** Per switch port index; null: not taking part (internal, routed ports). */
  readonly sp: Array<StpPort | null> = [];
  rootPrio: number;
  rootMac: number;
  rootPathCost = 0;
  /** Switch port index of the root port; -1 when this is the root. */
  rootPort = -1;
  /** Current timer values (ms), learned from the root (8.5.3). */
  maxAge: number;
  helloTime: number;
  forwardDelay: number;
  topologyChange = false;
  topologyChangeDetected = false;
  helloTimer = -1;
  tcnTimer = -1;
  topologyChangeTimer = -1;
  /** Pass clock of the last topology change detected or signalled by the root; -1: never. */
  lastTopologyChange = -1;
  protected started = false;
  protected host: StpHost | null = null;

  /** The bridge's own priority, MAC and timers (ms), which it uses while it is the root. */
  constructor(
    name: string,
    public enabled: boolean,
    readonly prio: number,
    readonly mac: number,
    readonly bridgeHello: number,
    readonly bridgeForwardDelay: number,
    readonly bridgeMaxAge: number,
  ) {
    super(name, STP_COUNTERS);
    this.rootPrio = prio;
    this.rootMac = mac;
    this.maxAge = bridgeMaxAge;
    this.helloTime = bridgeHello;
    this.forwardDelay = bridgeForwardDelay;
  }

  /** This bridge is the root (8.6.8.3.1 with no better root port; 8.8.1). */
  private becomeRoot(): void {
    this.rootPort = -1;
    this.rootPrio = this.prio;
    this.rootMac = this.mac;
    this.rootPathCost = 0;
  }

  /** Sends a config BPDU out of `p` with these flags and message age (ms). */
  protected abstract sendConfig(p: StpPort, flags: number, ageMs: number, now: number): boolean;
  /** Sends a TCN out of `p`. */
  protected abstract sendTcn(p: StpPort, now: number): boolean;

  isRoot(): boolean {
    return this.rootPrio === this.prio && this.rootMac === this.mac;
  }

  isDesignated(p: StpPort): boolean {
    return p.bridgePrio === this.prio && p.bridgeMac === this.mac && p.port === p.portId;
  }

  /** Initialisation (8.8.1): this bridge the root, every port designated and blocking, then listening. */
  protected begin(now: number): void {
    this.started = true;
    this.becomeRoot();
    this.useBridgeTimes();
    this.topologyChangeDetected = false;
    this.setTopologyChange(false);
    this.tcnTimer = -1;
    this.topologyChangeTimer = -1;
    for (const p of this.sp) if (p !== null) this.initPort(p);
    this.portStateSelection(now);
    this.configBpduGeneration(now);
    this.helloTimer = now + this.helloTime;
  }

  /** Initialise port (8.8.2), or with `state` disabled the first half of disable port (8.8.3). */
  protected initPort(p: StpPort, state = STP_BLOCKING): void {
    this.becomeDesignated(p);
    this.setState(p, state);
    p.tcAck = false;
    p.configPending = false;
    p.messageAgeTimer = -1;
    p.forwardDelayTimer = -1;
    p.holdTimer = -1;
  }

  protected enablePort(p: StpPort, now: number): void {
    this.initPort(p);
    this.portStateSelection(now);
  }

  /** Disable port (8.8.3): its information goes, the rest of the tree is recomputed. */
  protected disablePort(p: StpPort, now: number): void {
    const wasRoot = this.isRoot();
    this.initPort(p, STP_DISABLED);
    this.configurationUpdate();
    this.portStateSelection(now);
    if (this.isRoot() && !wasRoot) this.becomeRootBridge(now);
  }

  /** Runs the timers (8.7); called in a pass every 100 ms or so. */
  tick(now: number): void {
    if (!this.enabled) return;
    if (!this.started) {
      this.begin(now);
      return;
    }
    if (this.helloTimer >= 0 && now >= this.helloTimer) {
      this.configBpduGeneration(now);
      this.helloTimer = now + this.helloTime;
    }
    if (this.tcnTimer >= 0 && now >= this.tcnTimer) {
      this.tcnTimer = -1;
      if (!this.isRoot()) {
        this.transmitTcn(now);
        this.tcnTimer = now + this.bridgeHello;
      }
    }
    if (this.topologyChangeTimer >= 0 && now >= this.topologyChangeTimer) {
      this.topologyChangeTimer = -1;
      this.topologyChangeDetected = false;
      this.setTopologyChange(false);
    }
    for (const p of this.sp) {
      if (p === null || p.state === STP_DISABLED) continue;
      if (p.messageAgeTimer >= 0 && now >= p.messageAgeTimer) {
        // 8.7.5: the information is too old; the port becomes designated, the tree is recomputed.
        p.messageAgeTimer = -1;
        const wasRoot = this.isRoot();
        this.becomeDesignated(p);
        this.configurationUpdate();
        this.portStateSelection(now);
        if (this.isRoot() && !wasRoot) this.becomeRootBridge(now);
      }
      if (p.forwardDelayTimer >= 0 && now >= p.forwardDelayTimer) {
        // 8.7.3: listening -> learning -> forwarding.
        if (p.state === STP_LISTENING) {
          this.setState(p, STP_LEARNING);
          p.forwardDelayTimer = now + this.forwardDelay;
        } else if (p.state === STP_LEARNING) {
          this.setState(p, STP_FORWARDING);
          p.forwardDelayTimer = -1;
          p.forwardTransitions++;
          if (this.designatedForSomePort()) this.topologyChangeDetection(now);
        } else {
          p.forwardDelayTimer = -1;
        }
      }
      if (p.holdTimer >= 0 && now >= p.holdTimer) {
        p.holdTimer = -1;
        if (p.configPending) this.transmitConfig(p, now);
      }
    }
  }

  // --- 8.6: the procedures --------------------------------------------------------

  /** A config BPDU `r` (message age below max age, not our own) arrived on `p`. */
  protected receivedConfig(p: StpPort, r: Bpdu, now: number): void {
    const wasRoot = this.isRoot();
    if (this.supersedes(p, r)) {
      // Record configuration (8.6.2).
      setDesignated(p, r.rootPriority, r.rootMac, r.rootPathCost, r.bridgePriority, r.bridgeMac, r.portId);
      p.ageBase = now - toMs(r.messageAge);
      p.messageAgeTimer = now + toMs(r.maxAge) - toMs(r.messageAge);
      this.configurationUpdate();
      this.portStateSelection(now);
      if (!this.isRoot() && wasRoot) {
        this.helloTimer = -1;
        if (this.topologyChangeDetected) {
          this.topologyChangeTimer = -1;
          this.transmitTcn(now);
          this.tcnTimer = now + this.bridgeHello;
        }
      }
      if (p.index === this.rootPort) {
        // Record configuration timeout values (8.6.3), relay (8.6.4).
        this.maxAge = toMs(r.maxAge);
        this.helloTime = toMs(r.helloTime);
        this.forwardDelay = toMs(r.forwardDelay);
        this.setTopologyChange((r.flags & BPDU_FLAG_TC) !== 0);
        if ((r.flags & BPDU_FLAG_TC) !== 0) this.lastTopologyChange = now;
        this.configBpduGeneration(now);
        if ((r.flags & BPDU_FLAG_TCA) !== 0) {
          this.topologyChangeDetected = false;
          this.tcnTimer = -1;
        }
      }
    } else if (this.isDesignated(p)) {
      // Reply (8.6.5): the sender learns this port is better.
      this.transmitConfig(p, now);
    }
  }

  protected receivedTcn(p: StpPort, now: number): void {
    if (!this.isDesignated(p)) return;
    this.topologyChangeDetection(now);
    p.tcAck = true;
    this.transmitConfig(p, now);
  }

  /** 8.6.2.2: the received information is better than what the port holds (or from the same port). */
  private supersedes(p: StpPort, r: Bpdu): boolean {
    let t = cmpId(r.rootPriority, r.rootMac, p.rootPrio, p.rootMac);
    if (t !== 0) return t < 0;
    if (r.rootPathCost !== p.cost) return r.rootPathCost < p.cost;
    t = cmpId(r.bridgePriority, r.bridgeMac, p.bridgePrio, p.bridgeMac);
    if (t !== 0) return t < 0;
    if (r.bridgePriority !== this.prio || r.bridgeMac !== this.mac) return true;
    return r.portId <= p.port;
  }

  /** The port holds what this bridge offers its link (8.6.10). */
  private becomeDesignated(p: StpPort): void {
    setDesignated(p, this.rootPrio, this.rootMac, this.rootPathCost, this.prio, this.mac, p.portId);
  }

  private configurationUpdate(): void {
    this.rootSelection();
    this.designatedPortSelection();
  }

  /** 8.6.8: the root port is the one with the best path to the best root (not a designated port). */
  private rootSelection(): void {
    let best: StpPort | null = null;
    for (const p of this.sp) {
      if (p === null || p.state === STP_DISABLED || this.isDesignated(p)) continue;
      if (cmpId(p.rootPrio, p.rootMac, this.prio, this.mac) >= 0) continue;
      if (best === null || this.betterRootPort(p, best)) best = p;
    }
    if (best === null) {
      this.becomeRoot();
    } else {
      this.rootPort = best.index;
      this.rootPrio = best.rootPrio;
      this.rootMac = best.rootMac;
      this.rootPathCost = best.cost + best.pathCost;
    }
  }

  private betterRootPort(p: StpPort, r: StpPort): boolean {
    const t = cmpId(p.rootPrio, p.rootMac, r.rootPrio, r.rootMac);
    if (t !== 0) return t < 0;
    const a = p.cost + p.pathCost;
    const b = r.cost + r.pathCost;
    if (a !== b) return a < b;
    const u = cmpId(p.bridgePrio, p.bridgeMac, r.bridgePrio, r.bridgeMac);
    if (u !== 0) return u < 0;
    if (p.port !== r.port) return p.port < r.port;
    return p.portId < r.portId;
  }

  /** 8.6.9: a port becomes designated when this bridge offers its link the better path. */
  private designatedPortSelection(): void {
    for (const p of this.sp) {
      if (p === null || p.state === STP_DISABLED) continue;
      if (this.shouldBecomeDesignated(p)) this.becomeDesignated(p);
    }
  }

  private shouldBecomeDesignated(p: StpPort): boolean {
    if (this.isDesignated(p)) return true;
    if (p.rootPrio !== this.rootPrio || p.rootMac !== this.rootMac) return true;
    if (this.rootPathCost !== p.cost) return this.rootPathCost < p.cost;
    const t = cmpId(this.prio, this.mac, p.bridgePrio, p.bridgeMac);
    if (t !== 0) return t < 0;
    return p.portId < p.port;
  }

  /** 8.6.11: root and designated ports head for forwarding, the others block. */
  private portStateSelection(now: number): void {
    for (const p of this.sp) {
      if (p === null || p.state === STP_DISABLED) continue;
      if (p.index === this.rootPort) {
        p.configPending = false;
        p.tcAck = false;
        this.makeForwarding(p, now);
      } else if (this.isDesignated(p)) {
        p.messageAgeTimer = -1;
        this.makeForwarding(p, now);
      } else {
        p.configPending = false;
        p.tcAck = false;
        this.makeBlocking(p, now);
      }
    }
  }

  private makeForwarding(p: StpPort, now: number): void {
    if (p.state !== STP_BLOCKING) return;
    this.setState(p, STP_LISTENING);
    p.forwardDelayTimer = now + this.forwardDelay;
  }

  private makeBlocking(p: StpPort, now: number): void {
    if (p.state === STP_DISABLED || p.state === STP_BLOCKING) return;
    if (p.state === STP_FORWARDING || p.state === STP_LEARNING) this.topologyChangeDetection(now);
    this.setState(p, STP_BLOCKING);
    p.forwardDelayTimer = -1;
  }

  private becomeRootBridge(now: number): void {
    this.useBridgeTimes();
    this.topologyChangeDetection(now);
    this.tcnTimer = -1;
    this.configBpduGeneration(now);
    this.helloTimer = now + this.helloTime;
  }

  /** The root's timers are this bridge's own settings (8.5.3). */
  private useBridgeTimes(): void {
    this.maxAge = this.bridgeMaxAge;
    this.helloTime = this.bridgeHello;
    this.forwardDelay = this.bridgeForwardDelay;
  }

  /** 8.6.14: the root signals the change in its BPDUs; another bridge tells the root (TCN). */
  private topologyChangeDetection(now: number): void {
    if (this.isRoot()) {
      this.setTopologyChange(true);
      this.topologyChangeTimer = now + this.bridgeForwardDelay + this.bridgeMaxAge;
    } else if (!this.topologyChangeDetected) {
      this.transmitTcn(now);
      this.tcnTimer = now + this.bridgeHello;
    }
    this.topologyChangeDetected = true;
    this.lastTopologyChange = now;
    this.count(C.topologyChanges, now);
  }

  protected setTopologyChange(on: boolean): void {
    if (on !== this.topologyChange) this.host?.stpFastAgeing(on ? this.forwardDelay : null);
    this.topologyChange = on;
  }

  private designatedForSomePort(): boolean {
    for (const p of this.sp) if (p !== null && p.state !== STP_DISABLED && p.bridgePrio === this.prio && p.bridgeMac === this.mac) return true;
    return false;
  }

  private configBpduGeneration(now: number): void {
    for (const p of this.sp) if (p !== null && p.state !== STP_DISABLED && this.isDesignated(p)) this.transmitConfig(p, now);
  }

  private setState(p: StpPort, state: number): void {
    if (p.state === state) return;
    p.state = state;
    this.host?.stpPortState(p.index, state);
  }

  // --- 8.6.1, 8.6.6: sending -------------------------------------------------------

  protected transmitConfig(p: StpPort, now: number): void {
    if (p.holdTimer >= 0 && now < p.holdTimer) {
      p.configPending = true;
      return;
    }
    let age = 0;
    if (!this.isRoot()) {
      const rp = this.sp[this.rootPort] as StpPort;
      age = now - rp.ageBase + MESSAGE_AGE_INCR_MS;
    }
    if (age >= this.maxAge) return;
    if (!this.sendConfig(p, (this.topologyChange ? BPDU_FLAG_TC : 0) | (p.tcAck ? BPDU_FLAG_TCA : 0), age, now)) return;
    p.tx++;
    p.tcAck = false;
    p.configPending = false;
    p.holdTimer = now + HOLD_MS;
  }

  private transmitTcn(now: number): void {
    if (this.rootPort < 0) return;
    const p = this.sp[this.rootPort] as StpPort;
    if (this.sendTcn(p, now)) p.tx++;
  }
}
