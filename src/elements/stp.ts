/**
 * SpanningTree — IEEE 802.1D spanning tree (802.1D-1998 clause 8) for the learning
 * switch, interoperable with the Linux bridge's (stp_state 1): the element that carries
 * StpProtocol's state machine (stp-protocol.ts) to and from the wire.
 *
 * Inputs: BPDUs the switch hands over (receive(); the switch counts them `bpdu` and only
 *   hands over frames to 01:80:c2:00:00:00 on ports that take part while STP is on).
 *   Config BPDUs and TCNs are acted on; RST BPDUs are ignored (a legacy bridge: an RSTP
 *   neighbour falls back to 802.1D), as is our own BPDU looped back.
 * Outputs: config BPDUs (every hello time from the root, relayed by each bridge out of
 *   its designated ports when one arrives on its root port, at most one per hold time
 *   per port) and TCNs, written into the element's scratch in the pool and queued on
 *   the switch's ports — always inside an engine pass (receive() is called in one, the
 *   node runs tick() through engine.runPass). Port states go to the switch (StpHost):
 *   blocking/listening ports neither learn nor forward, learning ports learn only.
 * Config (StpConfig): enabled, bridge priority, MAC, hello time, forward delay, max age
 *   (s; the Linux bridge's ranges), per port path cost and priority (802.1D-2004 9.2.7:
 *   a 4-bit priority, 0-240 in steps of 16, above a 12-bit port number = switch port
 *   index + 1). Ports not named (router interfaces, routed ports) always forward.
 * Per port state is an array indexed by the switch port index, grown by addPort() and
 *   cleared by resetPort() (an index may be reused).
 * Counters: STP_COUNTERS (stp-protocol.ts). `show stp`: stp-view.ts.
 */
import type { ElementInfo } from "../core/element.js";
import type { Port } from "../core/port.js";
import {
  BPDU_FRAME_OFF,
  BPDU_TYPE_CONFIG,
  BPDU_TYPE_TCN,
  bpduFrameCheck,
  bpduGetBridgeMac,
  bpduGetBridgePriority,
  bpduGetMaxAge,
  bpduGetMessageAge,
  bpduGetPortId,
  bpduGetType,
  emitConfigBpdu,
  emitTcnBpdu,
} from "../wire/bpdu.js";
import { CHECK_OK } from "../wire/reason.js";
import { VNET_HDR_LEN } from "../wire/vnet.js";
import { STP_BLOCKING, STP_COUNTERS, STP_DEFAULTS, STP_DISABLED, STP_FORWARDING, STP_LIMITS, StpPort, StpProtocol, type StpHost } from "./stp-protocol.js";

export * from "./stp-protocol.js";

export interface StpPortConfig {
  /** Path cost (1-200000000; default 2, what the Linux bridge gives a 10 Gb/s veth). */
  cost?: number;
  /** Port priority, 0-240 in steps of 16 (default 128). */
  priority?: number;
}

export interface StpConfig {
  enabled?: boolean;
  /** Bridge priority 0-65535 (default 32768). */
  priority?: number;
  /** The bridge's MAC (the low part of its bridge id). */
  mac: number;
  /** Seconds (802.1D: 2, 15, 20). */
  helloTime?: number;
  forwardDelay?: number;
  maxAge?: number;
  /** The ports that take part, by name, with their settings; other ports always forward. */
  ports: Record<string, StpPortConfig>;
  /** Frames carry virtio-net headers (the node's offload): BPDUs get a zeroed one. */
  offload?: boolean;
}

const C = STP_COUNTERS.id;
/** Scratch: slots of 128 bytes (room for a zeroed virtio-net header, then a 60-byte frame). */
const SLOT = 128;
const SLOTS = 256;
const HDR_ROOM = 16;

const toUnits = (ms: number): number => Math.min(0xffff, Math.round((ms * 256) / 1000));

export class SpanningTree extends StpProtocol {
  readonly kind = "SpanningTree";
  private pool: Buffer | null = null;
  private scratchBase = -1;
  private scratchSlots = 0;
  private scratchUsed = 0;
  private readonly hdr: number;

  constructor(
    readonly ports: readonly Port[],
    config: StpConfig,
    name = "stp",
  ) {
    const prio = config.priority ?? STP_DEFAULTS.priority;
    checkRange(prio, 0, 65535, "stp priority");
    const hello = config.helloTime ?? STP_DEFAULTS.helloTime;
    const fd = config.forwardDelay ?? STP_DEFAULTS.forwardDelay;
    const maxAge = config.maxAge ?? STP_DEFAULTS.maxAge;
    checkRange(hello, ...STP_LIMITS.helloTime, "stp helloTime (s)");
    checkRange(fd, ...STP_LIMITS.forwardDelay, "stp forwardDelay (s)");
    checkRange(maxAge, ...STP_LIMITS.maxAge, "stp maxAge (s)");
    super(name, config.enabled ?? true, prio, config.mac, hello * 1000, fd * 1000, maxAge * 1000);
    this.hdr = config.offload ? VNET_HDR_LEN : 0;
    for (const [n, pc] of Object.entries(config.ports)) {
      const p = ports.find((x) => x.name === n);
      if (!p) throw new Error(`stp config names unknown port '${n}'`);
      this.addPort(p.index, pc);
    }
  }

  /** The switch this tree runs for: it applies port states from now on (all start blocked). */
  bind(host: StpHost): void {
    this.host = host;
    for (const p of this.sp) if (p !== null && this.enabled) host.stpPortState(p.index, STP_BLOCKING);
  }

  /** Whether BPDUs received on `port` are the protocol's (STP on and the port takes part). */
  takes(port: number): boolean {
    return this.enabled && port < this.sp.length && this.sp[port] !== null;
  }

  /** Adds switch port `index` to the tree (a port added at run time starts blocking). */
  addPort(index: number, pc: StpPortConfig = {}, now = -1): void {
    const prio = pc.priority ?? STP_DEFAULTS.portPriority;
    if (!Number.isInteger(prio) || prio < 0 || prio > 240 || prio % 16 !== 0) throw new Error(`stp port priority ${prio}: 0-240 in steps of 16`);
    const cost = pc.cost ?? STP_DEFAULTS.cost;
    checkRange(cost, 1, 200_000_000, "stp port cost");
    if (index >= 4095) throw new Error(`stp: port number ${index + 1} does not fit a port id (at most 4095)`);
    while (this.sp.length <= index) this.sp.push(null);
    // Source MAC: the bridge's MAC with the port number in the last 12 bits (distinct per port).
    const mac = this.mac - (this.mac % 4096) + ((this.mac % 4096) ^ (index + 1));
    const p = new StpPort(index, (prio << 8) | (index + 1), cost, prio, mac);
    this.sp[index] = p;
    if (this.started && now >= 0) this.enablePort(p, now);
    else if (this.enabled && this.host !== null) this.host.stpPortState(index, STP_BLOCKING);
  }

  /** Removes switch port `index` from the tree (the port goes away, or its index is reused). */
  resetPort(index: number, now: number): void {
    const p = this.sp[index];
    if (!p) return;
    if (this.started) this.disablePort(p, now);
    this.sp[index] = null;
    this.host?.stpPortState(index, STP_FORWARDING);
  }

  /** Turns the protocol on (all ports start over from blocking) or off (all ports forward). */
  setEnabled(on: boolean, now: number): void {
    if (on === this.enabled) return;
    this.enabled = on;
    this.started = false;
    this.setTopologyChange(false);
    for (const p of this.sp) {
      if (p === null) continue;
      p.state = on ? STP_BLOCKING : STP_DISABLED;
      this.host?.stpPortState(p.index, on ? STP_BLOCKING : STP_FORWARDING);
    }
    if (on) this.begin(now);
  }

  scratchBytes(): number {
    return SLOTS * SLOT;
  }

  attachScratch(pool: Buffer, base: number, bytes: number): void {
    this.pool = pool;
    this.scratchBase = base;
    this.scratchSlots = Math.floor(bytes / SLOT);
  }

  override beginPass(): void {
    this.scratchUsed = 0;
  }

  describe(): ElementInfo {
    const names = this.sp.flatMap((p) => (p === null ? [] : [this.ports[p.index].name]));
    return { name: this.name, kind: this.kind, inputs: ["BPDUs from the switch"], outputs: names, counters: [...this.spec.names] };
  }

  /** Takes a port out of the tree or puts it back, as its link going down and up (port security's shutdown). */
  setPortEnabled(index: number, on: boolean, now: number): void {
    const p = this.sp[index];
    if (!p || !this.enabled) return;
    if (!this.started) this.begin(now);
    if (on && p.state === STP_DISABLED) this.enablePort(p, now);
    else if (!on && p.state !== STP_DISABLED) this.disablePort(p, now);
  }

  /** A BPDU the switch took on `port` (frame at `off`). Never throws on what a peer sends. */
  receive(port: number, buf: Buffer, off: number, len: number, now: number): void {
    const p = this.sp[port];
    if (!this.enabled || !p) {
      this.count(C.ignored, now);
      return;
    }
    if (!this.started) this.begin(now);
    if (p.state === STP_DISABLED || bpduFrameCheck(buf, off, len) !== CHECK_OK) {
      this.count(p.state === STP_DISABLED ? C.ignored : C.malformed, now);
      return;
    }
    const b = off + BPDU_FRAME_OFF;
    const type = bpduGetType(buf, b);
    if (type === BPDU_TYPE_TCN) {
      this.count(C.tcn, now);
      p.rx++;
      this.receivedTcn(p, now);
      return;
    }
    if (type !== BPDU_TYPE_CONFIG) {
      this.count(C.ignored, now);
      return;
    }
    const age = bpduGetMessageAge(buf, b);
    const maxAge = bpduGetMaxAge(buf, b);
    if (age >= maxAge) {
      this.count(C.malformed, now);
      return;
    }
    const bPrio = bpduGetBridgePriority(buf, b);
    const bMac = bpduGetBridgeMac(buf, b);
    const portId = bpduGetPortId(buf, b);
    if (bPrio === this.prio && bMac === this.mac && portId === p.portId) {
      // Our own BPDU came back to the port that sent it (802.1D-2004 9.3.4 a).
      this.count(C.ignored, now);
      return;
    }
    this.count(C.config, now);
    p.rx++;
    this.receivedConfig(p, buf, b, bPrio, bMac, portId, age, maxAge, now);
  }

  protected sendConfig(p: StpPort, flags: number, ageMs: number, now: number): boolean {
    const at = this.slot(now);
    if (at < 0) return false;
    const len = emitConfigBpdu(
      this.pool as Buffer,
      at,
      p.mac,
      flags,
      this.rootPrio,
      this.rootMac,
      this.rootPathCost,
      this.prio,
      this.mac,
      p.portId,
      toUnits(ageMs),
      toUnits(this.maxAge),
      toUnits(this.helloTime),
      toUnits(this.forwardDelay),
    );
    this.ports[p.index].txq.push(at, len);
    this.c[C.txConfig]++;
    return true;
  }

  protected sendTcn(p: StpPort, now: number): boolean {
    const at = this.slot(now);
    if (at < 0) return false;
    this.ports[p.index].txq.push(at, emitTcnBpdu(this.pool as Buffer, at, p.mac));
    this.c[C.txTcn]++;
    return true;
  }

  /** Offset of a free scratch frame (its virtio-net header zeroed), or -1. */
  private slot(now: number): number {
    if (this.pool === null || this.scratchUsed >= this.scratchSlots) {
      this.count(C.scratchFull, now);
      return -1;
    }
    const at = this.scratchBase + this.scratchUsed++ * SLOT + HDR_ROOM;
    if (this.hdr !== 0) this.pool.fill(0, at - this.hdr, at);
    return at;
  }
}

function checkRange(v: number, lo: number, hi: number, what: string): void {
  if (!Number.isFinite(v) || v < lo || v > hi) throw new Error(`${what}: ${v} is outside ${lo}-${hi}`);
}
