/**
 * LearningSwitch — an IEEE 802.1Q learning bridge (what the Linux bridge / cni0 does).
 *
 * What it does: learns (VLAN, source MAC) -> ingress port; sends known unicast out
 * of the one port that owns the destination; floods broadcast, multicast and unknown
 * unicast to every other member port of the frame's VLAN; never sends a frame back
 * out of its ingress port; follows station moves; ages entries (802.1D default
 * 300 s); keeps a bounded table: when maxEntries dynamic entries are held, a new
 * station evicts the least recently seen entry of the port that holds the most
 * (`evicted`; Open vSwitch's policy), so a port flooding random source MACs evicts its
 * own entries, not other ports' stations, and a new station is still learned at its
 * first frame; holds static entries that never age, move or get evicted. When static
 * entries fill the table beyond their reserve, a new station is not learned (`macLimit`;
 * its frames are still forwarded, by flooding).
 *
 * VLANs (802.1Q): an access port carries one VLAN untagged; a trunk port carries an
 * allowed list tagged, and optionally one native VLAN untagged. A frame is classified
 * once at ingress and only ever leaves through members of its VLAN. Tags are pushed
 * or popped in place for unicast; a flooded frame that needs both forms gets a
 * rewritten copy in the switch's scratch region, made once per frame. It is a C-VLAN
 * bridge (Linux's vlan_protocol 802.1Q): a frame with an 802.1ad S-tag (0x88a8) is an
 * untagged frame of EtherType 0x88a8 to it, as to the Linux bridge.
 *
 * Layer-2 safety: with spanning tree (stp.ts) the switch hands BPDUs to 01:80:c2:00:00:00
 * to it (before VLAN classification: BPDUs are untagged and VLAN-blind) and consults
 * each port's state per frame — blocking/listening ports neither learn nor forward,
 * learning ports learn only, frames never leave by a port that is not forwarding; while
 * STP is off BPDUs stop here like every reserved group (`linkLocal`). Per port guards
 * (switch-guards.ts): ARP inspection and port security before learning, storm control
 * before flooding; a port shut by port security drops everything.
 *
 * Inputs/outputs: every port of the node (one input and one output each).
 * Config: ageingTime (s), maxEntries, per-port mode/vlans, static entries, offload
 *   (frames carry virtio-net headers: TSO super-frames pass whole, the header's offsets
 *   follow a pushed or popped tag), bridgeHook (br_netfilter's hook, below), stp (a
 *   SpanningTree), guards (storm control, port security, ARP inspection).
 * Table: an FdbTable (fdb-table.ts), open addressing on typed arrays keyed by
 *   (VLAN, MAC), sized for maxEntries dynamic entries plus room for static ones; its
 *   whole-table operations in fdb-sweep.ts. VLAN membership: switch-vlans.ts.
 * Counters: SWITCH_COUNTERS (switch-counters.ts).
 */
import type { FrameList } from "../core/batch.js";
import { Element, type ElementInfo, type FrameSink } from "../core/element.js";
import { ipTuple, natStep } from "../core/trace.js";
import type { Port } from "../core/port.js";
import { readU32 } from "../wire/bytes.js";
import { ETHERTYPE_IPV4, ETHERTYPE_VLAN } from "../wire/ethernet.js";
import { vlanGetVid, vlanSetVid, VLAN_TAG_LEN, vlanWriteTag } from "../wire/vlan.js";
import { VNET_HDR_LEN, vnetCopy, vnetIsGso, vnetNeedsCsum, vnetShiftL3 } from "../wire/vnet.js";
import { isStpGroup } from "../wire/bpdu.js";
import type { SpanningTree } from "./stp.js";
import { F_STORM, GATE_DISCARD, GATE_FORWARD, GATE_LEARN, GATE_SHUT, GUARD_SEC_SHUTDOWN, type GuardConfig, SwitchGuards } from "./switch-guards.js";
import { STORM_BROADCAST, STORM_MULTICAST, STORM_UNKNOWN_UNICAST } from "./storm-control.js";
import { FdbTable } from "./fdb-table.js";
import { type FdbEntry, liveEntries, removeEntries, sweepAged, walkLive } from "./fdb-sweep.js";
import { SWITCH_COUNTERS, type SwitchCounter } from "./switch-counters.js";
import { checkMode, checkVid, PortVlans, type SwitchPortMode, VLANS } from "./switch-vlans.js";

export type { SwitchPortMode };

export interface StaticFdbEntry {
  mac: number;
  vlan: number;
  port: string;
}

/**
 * br_netfilter's hook: IPv4 unicast bridged between two device ports of one of `vlans`
 * is shown to `sink` (the router's NAT, which puts a service's VIP back as the source of
 * a backend's reply to a client on its own segment).
 */
export interface BridgeHook {
  vlans: number[];
  sink(buf: Buffer, ipOff: number, ipLen: number, now: number, csumPartial: boolean): void;
  /** A trace step about what the last sink call did with conntrack (asked only while a trace is armed). */
  traceStep?(): string | null;
}

export interface LearningSwitchConfig {
  /** Seconds an entry lives without being refreshed (802.1D default 300). */
  ageingTime?: number;
  /** Most dynamic entries the table holds. */
  maxEntries?: number;
  ports?: Record<string, SwitchPortMode>;
  static?: StaticFdbEntry[];
  /** Frames carry virtio-net headers (src/wire/vnet.ts). */
  offload?: boolean;
  bridgeHook?: BridgeHook;
  /** Spanning tree: takes the BPDUs, sets the ports' states. */
  stp?: SpanningTree;
  /** Storm control, port security, ARP inspection. */
  guards?: GuardConfig;
}

export type { FdbEntry };

export { SWITCH_COUNTERS, type SwitchCounter };
const C = SWITCH_COUNTERS.id;
/** Switch counter of each guard verdict (switch-guards.ts GUARD_*). */
const GUARD_DROP = [-1, C.arpInvalid, C.arpSpoofed, C.secViolation, C.secViolation];

/** Static entries the table holds beyond maxEntries (they do not count against it). */
const STATIC_RESERVE = 4096;
const ETH_HLEN = 14;
/** Largest frame accepted: 1500 bytes of payload, Ethernet header and one tag. */
const DEFAULT_MAX_FRAME = 1500 + ETH_HLEN + 4;
/** Rewritten flooded copies one pass may make (a frame of 64 KiB each with offloads). */
const SCRATCH_FRAMES_OFFLOAD = 32;
const SCRATCH_FRAMES = 256;

export class LearningSwitch extends Element<SwitchCounter> implements FrameSink {
  readonly kind = "LearningSwitch";
  /** Ageing in use: the configured one, or forward delay during a topology change. */
  ageingMs: number;
  readonly baseAgeingMs: number;
  readonly maxEntries: number;
  maxFrame = DEFAULT_MAX_FRAME;

  /** VLAN membership per port (switch-vlans.ts). */
  private readonly vl = new PortVlans();
  /** The table: (VLAN, MAC) -> port, last seen, static. */
  readonly fdb: FdbTable;
  private bridgeHook: BridgeHook["sink"] | null;
  private bridgeTrace: BridgeHook["traceStep"] | null;
  private readonly hookVlans = new Uint8Array(VLANS);
  private scratchBase = -1;
  private scratchSlots = 0;
  private scratchUsed = 0;
  private readonly scratchSlot: number;
  /** Frames carry virtio-net headers: see the config. */
  readonly offload: boolean;
  /** Spanning tree's port states and the guards: storm control, port security, ARP inspection. */
  readonly guards: SwitchGuards;

  constructor(
    readonly ports: readonly Port[],
    config: LearningSwitchConfig = {},
    name = "switch",
  ) {
    super(name, SWITCH_COUNTERS);
    this.offload = config.offload ?? false;
    this.scratchSlot = this.offload ? 65536 + 256 : 2048;
    this.bridgeHook = config.bridgeHook?.sink ?? null;
    this.bridgeTrace = config.bridgeHook?.traceStep ?? null;
    for (const v of config.bridgeHook?.vlans ?? []) this.hookVlans[v] = 1;
    this.ageingMs = (config.ageingTime ?? 300) * 1000;
    this.baseAgeingMs = this.ageingMs;
    this.maxEntries = config.maxEntries ?? 8192;
    this.fdb = new FdbTable(this.maxEntries + Math.max(STATIC_RESERVE, config.static?.length ?? 0));
    const modes = config.ports ?? {};
    for (const name of Object.keys(modes)) {
      if (!ports.some((p) => p.name === name)) throw new Error(`switch config names unknown port '${name}'`);
    }
    this.vl.grow(ports.length);
    for (const p of ports) this.vl.set(p, modes[p.name] ?? { mode: "access", vlan: 1 });
    this.vl.rebuildFlood(ports);
    for (const s of config.static ?? []) this.addStatic(s);
    this.guards = new SwitchGuards(ports, config.guards ?? {}, this.fdb, config.stp ?? null, (ms) => (this.ageingMs = ms ?? this.baseAgeingMs));
    for (const [n, sc] of Object.entries(config.guards?.security ?? {})) {
      const p = ports.find((x) => x.name === n) as Port;
      for (const mac of sc.macs ?? []) {
        this.addStatic({ mac, vlan: this.vl.pvid[p.index], port: n });
        this.guards.security.addSecure(p.index);
      }
    }
  }

  get stp(): SpanningTree | null {
    return this.guards.stp;
  }

  /** Trace steps of the bridge hook: the translation, then what conntrack made of the frame. */
  private traceBridged(before: string, buf: Buffer, l3: number): void {
    this.tr?.add(this.name, natStep("bridged (br_netfilter)", before, ipTuple(buf, l3)));
    const ct = this.bridgeTrace?.() ?? null;
    if (ct !== null) this.tr?.add(this.name, ct);
  }

  /** The graph builder installs the hook when a running node gets its first service. */
  setBridgeHook(hook: BridgeHook): void {
    this.bridgeHook = hook.sink;
    this.bridgeTrace = hook.traceStep ?? null;
    this.hookVlans.fill(0);
    for (const v of hook.vlans) this.hookVlans[v] = 1;
  }

  /** Whether bridged frames are shown to a bridge hook (the NAT). */
  get hasBridgeHook(): boolean {
    return this.bridgeHook !== null;
  }

  /** Dynamic entries in the table (static ones are not counted against maxEntries). */
  get dynamicCount(): number {
    return this.fdb.dynamicSize;
  }

  /** Pool bytes for rewritten copies of flooded frames. */
  scratchBytes(): number {
    return (this.offload ? SCRATCH_FRAMES_OFFLOAD : SCRATCH_FRAMES) * this.scratchSlot;
  }

  attachScratch(_pool: Buffer, base: number, bytes: number): void {
    this.scratchBase = base;
    this.scratchSlots = Math.floor(bytes / this.scratchSlot);
  }

  /** A port added to the node while it runs (already in the engine's port list). */
  addPort(p: Port, m: SwitchPortMode): void {
    this.vl.grow(p.index + 1);
    // Validate before changing anything: the mode is applied whole or not at all.
    checkMode(p.name, m);
    this.vl.set(p, m);
    removeEntries(this.fdb, -1, p.index, true);
    this.guards.addPort(p.index);
    this.vl.rebuildFlood(this.ports);
  }

  /** A port leaves: its membership and every table entry on it (static ones too). */
  removePort(p: Port): void {
    this.vl.clear(p.index);
    removeEntries(this.fdb, -1, p.index, true);
    this.vl.rebuildFlood(this.ports);
  }

  /** A port's VLAN mode changes: its learned entries go (they were learned on old VLANs). */
  setPortMode(p: Port, m: SwitchPortMode): void {
    checkMode(p.name, m);
    this.vl.set(p, m);
    removeEntries(this.fdb, -1, p.index, false);
    this.vl.rebuildFlood(this.ports);
  }

  /** The port's VLAN mode, as set. */
  portMode(port: number): SwitchPortMode {
    return this.vl.mode(port);
  }

  /** Removes a static entry (`bridge fdb del`); false when there is none. */
  removeStatic(mac: number, vlan: number): boolean {
    const slot = this.fdb.findMac(vlan, mac);
    if (slot < 0 || !this.fdb.isStatic(slot)) return false;
    this.fdb.removeSlot(slot);
    return true;
  }

  addStatic(s: StaticFdbEntry): void {
    const p = this.ports.find((x) => x.name === s.port);
    if (!p) throw new Error(`static fdb entry names unknown port '${s.port}'`);
    checkVid(s.vlan, "static fdb entry vlan");
    if (this.vl.membership[p.index * VLANS + s.vlan] === 0) {
      throw new Error(`static fdb entry: port '${s.port}' is not a member of vlan ${s.vlan}`);
    }
    if ((Math.floor(s.mac / 2 ** 40) & 1) !== 0) throw new Error("static fdb entry: MAC is a group address");
    if (this.fdb.insert(s.vlan, Math.floor(s.mac / 2 ** 32), s.mac % 2 ** 32, p.index, 0, true) < 0) {
      throw new Error(`static fdb entry: the table is full (${this.fdb.maxEntries} entries)`);
    }
  }

  override beginPass(): void {
    this.scratchUsed = 0;
  }

  describe(): ElementInfo {
    const names = this.ports.filter((p) => !p.removed).map((p) => p.name);
    return { name: this.name, kind: this.kind, inputs: names, outputs: names, counters: [...this.spec.names] };
  }

  process(inPort: Port, batch: FrameList, buf: Buffer, now: number): void {
    const n = batch.count;
    const offsets = batch.offsets;
    const lengths = batch.lengths;
    const inIdx = inPort.index;
    const maxFrame = this.maxFrame;
    // Per port state, read once per batch: these arrays are replaced only when a port
    // with a new index is added, never while a batch is processed.
    const gates = this.guards.gate;
    const guardFlags = this.guards.flags;
    const { access, pvid, membership } = this.vl;
    for (let i = 0; i < n; i++) {
      const off = offsets[i];
      const len = lengths[i];
      if (this.tr !== null) this.tr.add(this.name, `in ${inPort.name}, ${len} bytes`);
      if (len < ETH_HLEN) {
        this.drop(inPort, C.runt, now, buf, off, len);
        continue;
      }
      // A TSO super-frame (virtio-net gso_type set) is one unit of up to 64 KiB.
      if (len > maxFrame && !(this.offload && vnetIsGso(buf, off))) {
        this.drop(inPort, C.oversize, now, buf, off, len);
        continue;
      }
      const gate = gates[inIdx];
      const guard = guardFlags[inIdx];
      // Spanning tree BPDUs are untagged and belong to no VLAN (802.1D 7.12.3).
      if (buf[off] === 0x01 && this.stp !== null && gate !== GATE_SHUT && isStpGroup(buf, off) && this.stp.takes(inIdx)) {
        this.count(C.bpdu, now);
        this.stp.receive(inIdx, buf, off, len, now);
        continue;
      }
      // Ingress classification (802.1Q §8.6.1 in spirit).
      let tagged = false;
      let vlan: number;
      if (((buf[off + 12] << 8) | buf[off + 13]) === ETHERTYPE_VLAN) {
        if (len < ETH_HLEN + VLAN_TAG_LEN) {
          this.drop(inPort, C.runt, now, buf, off, len);
          continue;
        }
        tagged = true;
        vlan = vlanGetVid(buf, off);
        if (vlan !== 0 && access[inIdx] === 1) {
          // An access port carries its VLAN untagged; a VLAN tag there is foreign.
          this.drop(inPort, C.vlanFiltered, now, buf, off, len);
          continue;
        }
        if (vlan === 0) {
          // Priority-tagged: belongs to the port's untagged VLAN; keep the PCP.
          vlan = pvid[inIdx];
          if (vlan > 0) vlanSetVid(buf, off, vlan);
        }
        if (vlan <= 0 || vlan === 4095 || membership[inIdx * VLANS + vlan] === 0) {
          this.drop(inPort, C.vlanFiltered, now, buf, off, len);
          continue;
        }
      } else {
        vlan = pvid[inIdx];
        if (vlan < 0) {
          this.drop(inPort, C.vlanFiltered, now, buf, off, len);
          continue;
        }
      }
      // A group or all-zero source is not a station (802.1D; the Linux bridge drops it).
      const s0 = buf[off + 6];
      if ((s0 & 1) !== 0) {
        this.drop(inPort, C.badSrcMac, now, buf, off, len);
        continue;
      }
      const srcHi = (s0 << 8) | buf[off + 7];
      const srcLo = readU32(buf, off + 8);
      if (srcHi === 0 && srcLo === 0) {
        this.drop(inPort, C.badSrcMac, now, buf, off, len);
        continue;
      }
      const d0 = buf[off];
      if (this.tr !== null) this.tr.add(this.name, `VLAN ${vlan} (${tagged ? "tagged" : "untagged"}), ${traceMac(buf, off + 6)} > ${traceMac(buf, off)}`);
      if (d0 === 0x01 && buf[off + 1] === 0x80 && buf[off + 2] === 0xc2 && buf[off + 3] === 0 && buf[off + 4] === 0 && (buf[off + 5] & 0xf0) === 0) {
        // IEEE 802.1D reserved group addresses (STP, LACP, LLDP …) stop at a bridge.
        this.drop(inPort, C.linkLocal, now, buf, off, len);
        continue;
      }
      if ((gate | guard) !== 0) {
        // A port not forwarding (spanning tree, or shut by port security), or with guards.
        if (gate >= GATE_DISCARD) {
          this.drop(inPort, gate === GATE_SHUT ? C.portShutdown : C.stpDiscarded, now, buf, off, len);
          continue;
        }
        const v = guard !== 0 ? this.guards.ingress(inIdx, buf, off, len, tagged, vlan, srcHi, srcLo, now) : 0;
        if (v !== 0) {
          this.drop(inPort, GUARD_DROP[v], now, buf, off, len);
          if (v === GUARD_SEC_SHUTDOWN) {
            this.c[C.portsShut]++;
            this.guards.shut(inIdx, now);
          }
          continue;
        }
      }
      this.learn(vlan, srcHi, srcLo, inIdx, now);
      if (gate === GATE_LEARN) {
        this.drop(inPort, C.stpLearning, now, buf, off, len);
        continue;
      }

      if ((d0 & 1) !== 0) {
        if ((guard & F_STORM) !== 0) {
          const bcast = d0 === 0xff && buf[off + 1] === 0xff && readU32(buf, off + 2) === 0xffffffff;
          if (!this.guards.storm.allow(inIdx, bcast ? STORM_BROADCAST : STORM_MULTICAST, now)) {
            this.drop(inPort, bcast ? C.stormBroadcast : C.stormMulticast, now, buf, off, len);
            continue;
          }
        }
        this.flood(buf, off, len, tagged, vlan, inIdx);
        continue;
      }
      const fdb = this.fdb;
      const slot = fdb.find(vlan, (d0 << 8) | buf[off + 1], readU32(buf, off + 2));
      if (slot >= 0) {
        const outIdx = fdb.port(slot);
        if (fdb.isStatic(slot) || now - fdb.lastSeen(slot) < this.ageingMs) {
          if (outIdx === inIdx) {
            this.drop(inPort, C.filtered, now, buf, off, len);
          } else if (gates[outIdx] !== GATE_FORWARD) {
            this.drop(inPort, C.stpEgress, now, buf, off, len);
          } else {
            this.c[C.forwarded]++;
            if (this.hookVlans[vlan] === 1 && this.bridgeHook !== null && this.vl.internal[outIdx] === 0) {
              const l3 = tagged ? off + ETH_HLEN + VLAN_TAG_LEN : off + ETH_HLEN;
              if (((buf[l3 - 2] << 8) | buf[l3 - 1]) === ETHERTYPE_IPV4) {
                // With offloads, a pending checksum must stay a partial sum.
                const before = this.tr !== null ? ipTuple(buf, l3) : "";
                this.bridgeHook(buf, l3, off + len - l3, now, this.offload && vnetNeedsCsum(buf, off));
                if (this.tr !== null) this.traceBridged(before, buf, l3);
              }
            }
            if (this.tr !== null) this.tr.add(this.name, `FDB: ${traceMac(buf, off)} in VLAN ${vlan} is on ${this.ports[outIdx].name}: forwarded there`);
            this.unicast(buf, off, len, tagged, vlan, outIdx);
          }
          continue;
        }
        fdb.removeSlot(slot);
        this.c[C.aged]++;
      }
      if ((guard & F_STORM) !== 0 && !this.guards.storm.allow(inIdx, STORM_UNKNOWN_UNICAST, now)) {
        this.drop(inPort, C.stormUnknownUnicast, now, buf, off, len);
        continue;
      }
      this.flood(buf, off, len, tagged, vlan, inIdx);
    }
  }

  private learn(vlan: number, macHi: number, macLo: number, port: number, now: number): void {
    const fdb = this.fdb;
    const slot = fdb.find(vlan, macHi, macLo);
    if (slot >= 0) {
      if (fdb.isStatic(slot)) return;
      fdb.touch(slot, now);
      if (fdb.port(slot) !== port) {
        fdb.setPort(slot, port);
        this.c[C.stationMoves]++;
      }
      return;
    }
    if (fdb.dynamicSize >= this.maxEntries) {
      // Full: the busiest port gives up its least recently seen entry (evictLru gives
      // -1 only with maxEntries 0: nothing dynamic to take).
      if (fdb.evictLru() < 0) {
        this.c[C.macLimit]++;
        return;
      }
      this.c[C.evicted]++;
    }
    // The table holds room for the static entries beyond maxEntries, so insert() fails
    // only when statics took more than that room.
    if (fdb.insertNew(vlan, macHi, macLo, port, now, false) < 0) {
      this.c[C.macLimit]++;
      return;
    }
    this.c[C.learned]++;
  }

  private unicast(buf: Buffer, off: number, len: number, tagged: boolean, vlan: number, out: number): void {
    const wantTagged = this.vl.membership[out * VLANS + vlan] === 1;
    const q = this.ports[out].txq;
    // With offloads, the 12-byte virtio-net header before the frame moves with it.
    const h = this.offload ? VNET_HDR_LEN : 0;
    if (wantTagged === tagged) {
      q.push(off, len);
    } else if (tagged) {
      // Pop in place: the MACs move 4 bytes toward the payload over the tag.
      buf.copyWithin(off + 4 - h, off - h, off + 12);
      if (h !== 0) vnetShiftL3(buf, off + 4, -4);
      q.push(off + 4, len - 4);
    } else {
      // Push in place into the headroom the port left before the frame.
      buf.copyWithin(off - 4 - h, off - h, off + 12);
      if (h !== 0) vnetShiftL3(buf, off - 4, 4);
      vlanWriteTag(buf, off + 8, vlan);
      q.push(off - 4, len + 4);
    }
  }

  private flood(buf: Buffer, off: number, len: number, tagged: boolean, vlan: number, inIdx: number): void {
    const list = this.vl.floodList[vlan];
    if (this.tr !== null) this.traceFlood(buf, off, vlan, inIdx, list);
    if (list === null) return;
    this.c[C.flooded]++;
    const membership = this.vl.membership;
    let altOff = -1;
    let altLen = 0;
    const gate = this.guards.gate;
    for (let k = 0; k < list.length; k++) {
      const p = list[k];
      if (p === inIdx || gate[p] !== GATE_FORWARD) continue;
      const wantTagged = membership[p * VLANS + vlan] === 1;
      if (wantTagged === tagged) {
        this.ports[p].txq.push(off, len);
        continue;
      }
      if (altOff < 0) {
        if (this.scratchUsed >= this.scratchSlots) {
          this.c[C.scratchFull]++;
          this.ports[p].txDrops++;
          continue;
        }
        // Frames in scratch start 16 bytes into their slot: room for a virtio-net header.
        const base = this.scratchBase + this.scratchUsed * this.scratchSlot + 16;
        this.scratchUsed++;
        if (this.offload) {
          vnetCopy(buf, off, base);
          vnetShiftL3(buf, base, tagged ? -4 : 4);
        }
        if (tagged) {
          // Untagged copy: MACs, then everything after the tag.
          buf.copyWithin(base, off, off + 12);
          buf.copyWithin(base + 12, off + 16, off + len);
          altOff = base;
          altLen = len - 4;
        } else {
          buf.copyWithin(base, off, off + 12);
          vlanWriteTag(buf, base + 12, vlan);
          buf.copyWithin(base + 16, off + 12, off + len);
          altOff = base;
          altLen = len + 4;
        }
      }
      this.ports[p].txq.push(altOff, altLen);
    }
  }

  /** Removes entries idle longer than the ageing time; returns how many went. */
  age(now: number): number {
    const removed = sweepAged(this.fdb, this.ageingMs, now);
    this.c[C.aged] += removed;
    return removed;
  }

  /** Current entries (expired ones left out), by VLAN then MAC, for `show fdb`. */
  entries(now: number): FdbEntry[] {
    return liveEntries(this.fdb, this.ageingMs, now);
  }

  /** entries() unsorted and step by step, for a listing that pauses (fdb-sweep.ts walkLive). */
  walkEntries(clock: () => number): Generator<FdbEntry | null, { resized: boolean }, void> {
    return walkLive(this.fdb, () => this.ageingMs, clock);
  }

  /** Removes the dynamic entries (of one VLAN, or all); static ones stay. */
  flush(vlan?: number): void {
    removeEntries(this.fdb, vlan === undefined ? -1 : vlan, -1, false);
  }

  /** Port membership summary, for `show ports`. */
  portVlans(port: number): { pvid: number; tagged: number[]; untagged: number[] } {
    return this.vl.summary(port);
  }

  /** Counts a frame dropped at ingress: the element's counter and the port's rxDrops. */
  /** The trace step of a flood (only while a trace is armed). */
  private traceFlood(buf: Buffer, off: number, vlan: number, inIdx: number, list: ArrayLike<number> | null): void {
    const to = list === null ? [] : Array.from(list).filter((p) => p !== inIdx && this.guards.gate[p] === GATE_FORWARD);
    const what = (buf[off] & 1) !== 0 ? "group address" : "unknown unicast";
    this.tr?.add(this.name, `${traceMac(buf, off)} (${what}) in VLAN ${vlan}: flooded to ${to.map((p) => this.ports[p].name).join(", ") || "no port"}`);
  }

  private drop(inPort: Port, id: number, now: number, buf: Buffer, off: number, len: number): void {
    this.countDrop(id, now, buf, off, len);
    inPort.rxDrops++;
  }
}

/** The destination MAC of the frame at `off`, as text (trace steps only). */
function traceMac(buf: Buffer, off: number): string {
  const b: string[] = [];
  for (let i = 0; i < 6; i++) b.push(buf[off + i].toString(16).padStart(2, "0"));
  return b.join(":");
}
