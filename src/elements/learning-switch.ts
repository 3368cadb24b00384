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
 * Inputs/outputs: every port of the node (one input and one output each).
 * Config: ageingTime (s), maxEntries, per-port mode/vlans, static entries, offload
 *   (frames carry virtio-net headers: TSO super-frames pass whole, the header's offsets
 *   follow a pushed or popped tag), bridgeHook (br_netfilter's hook, below).
 * Table: an FdbTable (fdb-table.ts), open addressing on typed arrays keyed by
 *   (VLAN, MAC), sized for maxEntries dynamic entries plus room for static ones.
 * Counters: SWITCH_COUNTERS below.
 */
import type { FrameList } from "../core/batch.js";
import { counters, Element, type ElementInfo, type FrameSink } from "../core/element.js";
import type { Port } from "../core/port.js";
import { readU32 } from "../wire/bytes.js";
import { ETH_HEADER_LEN, ETHERTYPE_IPV4, ETHERTYPE_VLAN } from "../wire/ethernet.js";
import { VLAN_TAG_LEN, VLAN_VID_MAX, vlanGetTpid, vlanGetVid, vlanSetTci, vlanSetTpid, vlanSetVid } from "../wire/vlan.js";
import { VNET_HDR_LEN, vnetCopy, vnetIsGso, vnetNeedsCsum, vnetShiftL3 } from "../wire/vnet.js";
import { FdbTable } from "./fdb-table.js";

export type SwitchPortMode = { mode: "access"; vlan: number } | { mode: "trunk"; allowed: number[]; native?: number };

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
}

export interface FdbEntry {
  mac: number;
  vlan: number;
  port: number;
  lastSeen: number;
  isStatic: boolean;
}

export const SWITCH_COUNTERS = counters({
  forward: {
    forwarded: "known unicast sent out of the one port that owns the destination",
    flooded: "broadcast, multicast and unknown unicast sent to every other member of the VLAN",
  },
  drop: {
    filtered: "destination is on the port the frame came in on",
    runt: "shorter than an Ethernet (or tagged) header",
    oversize: "longer than the largest frame, and not a TSO super-frame",
    badSrcMac: "group or all-zero source address",
    vlanFiltered: "VLAN not allowed on the port, or a tag on an access port",
    linkLocal: "802.1D reserved group address 01:80:c2:00:00:0X (never forwarded)",
  },
  event: {
    learned: "new (VLAN, MAC) entries",
    stationMoves: "a known MAC seen on another port",
    aged: "entries removed after the ageing time",
    evicted: "entries evicted to learn a new station in a full table",
    macLimit: "stations not learned: static entries fill the table",
    scratchFull: "flooded copies not made: the pass's scratch was used up",
  },
});
export type SwitchCounter = (typeof SWITCH_COUNTERS.names)[number];
const C = SWITCH_COUNTERS.id;

const VLANS = 4096;
/** Static entries the table holds beyond maxEntries (they do not count against it). */
const STATIC_RESERVE = 4096;
/** Largest frame accepted: 1500 bytes of payload, Ethernet header and one tag. */
const DEFAULT_MAX_FRAME = 1500 + ETH_HEADER_LEN + 4;
/** Rewritten flooded copies one pass may make (a frame of 64 KiB each with offloads). */
const SCRATCH_FRAMES_OFFLOAD = 32;
const SCRATCH_FRAMES = 256;

export class LearningSwitch extends Element<SwitchCounter> implements FrameSink {
  readonly kind = "LearningSwitch";
  readonly ageingMs: number;
  readonly maxEntries: number;
  maxFrame = DEFAULT_MAX_FRAME;

  private readonly nPorts: number;
  /** VLAN an untagged frame belongs to, per ingress port; -1 = untagged not accepted. */
  private readonly pvid: Int32Array;
  /** 1 for a router's internal port (an SVI): bridged frames to it are not shown to the bridge hook. */
  private readonly internal: Uint8Array;
  /** 1 for access ports: they take untagged (and priority-tagged) frames only. */
  private readonly access: Uint8Array;
  /** membership[port * 4096 + vlan]: 0 = not a member, 1 = tagged, 2 = untagged. */
  private readonly membership: Uint8Array;
  /** Member ports per VLAN, for flooding. */
  private readonly floodList: Array<Int32Array | null> = new Array(VLANS).fill(null);
  /** The table: (VLAN, MAC) -> port, last seen, static. */
  readonly fdb: FdbTable;
  private readonly bridgeHook: BridgeHook["sink"] | null;
  private readonly hookVlans = new Uint8Array(VLANS);
  private scratchBase = -1;
  private scratchSlots = 0;
  private scratchUsed = 0;
  private readonly scratchSlot: number;
  /** Frames carry virtio-net headers: see the config. */
  readonly offload: boolean;

  constructor(
    readonly ports: readonly Port[],
    config: LearningSwitchConfig = {},
    name = "switch",
  ) {
    super(name, SWITCH_COUNTERS);
    this.offload = config.offload ?? false;
    this.scratchSlot = this.offload ? 65536 + 256 : 2048;
    this.bridgeHook = config.bridgeHook?.sink ?? null;
    for (const v of config.bridgeHook?.vlans ?? []) this.hookVlans[v] = 1;
    this.ageingMs = (config.ageingTime ?? 300) * 1000;
    this.maxEntries = config.maxEntries ?? 8192;
    this.fdb = new FdbTable(this.maxEntries + Math.max(STATIC_RESERVE, config.static?.length ?? 0));
    this.nPorts = ports.length;
    this.pvid = new Int32Array(this.nPorts).fill(-1);
    this.membership = new Uint8Array(this.nPorts * VLANS);
    this.access = new Uint8Array(this.nPorts);
    this.internal = Uint8Array.from(ports, (p) => (p.kind === "internal" ? 1 : 0));
    const modes = config.ports ?? {};
    for (const name of Object.keys(modes)) {
      if (!ports.some((p) => p.name === name)) throw new Error(`switch config names unknown port '${name}'`);
    }
    const members: number[][] = Array.from({ length: VLANS }, () => []);
    for (const p of ports) {
      const m: SwitchPortMode = modes[p.name] ?? { mode: "access", vlan: 1 };
      const base = p.index * VLANS;
      if (m.mode === "access") {
        checkVid(m.vlan, `port ${p.name} vlan`);
        this.pvid[p.index] = m.vlan;
        this.access[p.index] = 1;
        this.membership[base + m.vlan] = 2;
        members[m.vlan].push(p.index);
      } else {
        for (const v of m.allowed) {
          checkVid(v, `port ${p.name} allowed vlan`);
          if (this.membership[base + v] === 0) members[v].push(p.index);
          this.membership[base + v] = 1;
        }
        if (m.native !== undefined) {
          checkVid(m.native, `port ${p.name} native vlan`);
          if (this.membership[base + m.native] === 0) members[m.native].push(p.index);
          this.membership[base + m.native] = 2;
          this.pvid[p.index] = m.native;
        }
      }
    }
    for (let v = 0; v < VLANS; v++) {
      if (members[v].length !== 0) this.floodList[v] = Int32Array.from(members[v]);
    }
    for (const s of config.static ?? []) this.addStatic(s);
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

  addStatic(s: StaticFdbEntry): void {
    const p = this.ports.find((x) => x.name === s.port);
    if (!p) throw new Error(`static fdb entry names unknown port '${s.port}'`);
    checkVid(s.vlan, "static fdb entry vlan");
    if (this.membership[p.index * VLANS + s.vlan] === 0) {
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
    const names = this.ports.map((p) => p.name);
    return { name: this.name, kind: this.kind, inputs: names, outputs: names, counters: [...this.spec.names] };
  }

  process(inPort: Port, batch: FrameList, buf: Buffer, now: number): void {
    const n = batch.count;
    const offsets = batch.offsets;
    const lengths = batch.lengths;
    const inIdx = inPort.index;
    const maxFrame = this.maxFrame;
    for (let i = 0; i < n; i++) {
      const off = offsets[i];
      const len = lengths[i];
      if (len < ETH_HEADER_LEN) {
        this.drop(inPort, C.runt, now);
        continue;
      }
      // A TSO super-frame (virtio-net gso_type set) is one unit of up to 64 KiB.
      if (len > maxFrame && !(this.offload && vnetIsGso(buf, off))) {
        this.drop(inPort, C.oversize, now);
        continue;
      }
      // Ingress classification (802.1Q §8.6.1 in spirit).
      let tagged = false;
      let vlan: number;
      if (vlanGetTpid(buf, off) === ETHERTYPE_VLAN) {
        if (len < ETH_HEADER_LEN + VLAN_TAG_LEN) {
          this.drop(inPort, C.runt, now);
          continue;
        }
        tagged = true;
        vlan = vlanGetVid(buf, off);
        if (vlan !== 0 && this.access[inIdx] === 1) {
          // An access port carries its VLAN untagged; a VLAN tag there is foreign.
          this.drop(inPort, C.vlanFiltered, now);
          continue;
        }
        if (vlan === 0) {
          // Priority-tagged: belongs to the port's untagged VLAN; keep the PCP.
          vlan = this.pvid[inIdx];
          if (vlan > 0) vlanSetVid(buf, off, vlan);
        }
        if (vlan <= 0 || vlan > VLAN_VID_MAX || this.membership[inIdx * VLANS + vlan] === 0) {
          this.drop(inPort, C.vlanFiltered, now);
          continue;
        }
      } else {
        vlan = this.pvid[inIdx];
        if (vlan < 0) {
          this.drop(inPort, C.vlanFiltered, now);
          continue;
        }
      }
      // A group or all-zero source is not a station (802.1D; the Linux bridge drops it).
      const s0 = buf[off + 6];
      if ((s0 & 1) !== 0) {
        this.drop(inPort, C.badSrcMac, now);
        continue;
      }
      const srcHi = (s0 << 8) | buf[off + 7];
      const srcLo = readU32(buf, off + 8);
      if (srcHi === 0 && srcLo === 0) {
        this.drop(inPort, C.badSrcMac, now);
        continue;
      }
      const d0 = buf[off];
      if (d0 === 0x01 && buf[off + 1] === 0x80 && buf[off + 2] === 0xc2 && buf[off + 3] === 0 && buf[off + 4] === 0 && (buf[off + 5] & 0xf0) === 0) {
        // IEEE 802.1D reserved group addresses (STP, LACP, LLDP …) stop at a bridge.
        this.drop(inPort, C.linkLocal, now);
        continue;
      }
      this.learn(vlan, srcHi, srcLo, inIdx, now);

      if ((d0 & 1) !== 0) {
        this.flood(buf, off, len, tagged, vlan, inIdx);
        continue;
      }
      const fdb = this.fdb;
      const slot = fdb.find(vlan, (d0 << 8) | buf[off + 1], readU32(buf, off + 2));
      if (slot >= 0) {
        const outIdx = fdb.port(slot);
        if (fdb.isStatic(slot) || now - fdb.lastSeen(slot) < this.ageingMs) {
          if (outIdx === inIdx) {
            this.drop(inPort, C.filtered, now);
          } else {
            this.c[C.forwarded]++;
            if (this.hookVlans[vlan] === 1 && this.bridgeHook !== null && this.internal[outIdx] === 0) {
              const l3 = tagged ? off + ETH_HEADER_LEN + VLAN_TAG_LEN : off + ETH_HEADER_LEN;
              if (((buf[l3 - 2] << 8) | buf[l3 - 1]) === ETHERTYPE_IPV4) {
                // With offloads, a pending checksum must stay a partial sum.
                this.bridgeHook(buf, l3, off + len - l3, now, this.offload && vnetNeedsCsum(buf, off));
              }
            }
            this.unicast(buf, off, len, tagged, vlan, outIdx);
          }
          continue;
        }
        fdb.removeSlot(slot);
        this.c[C.aged]++;
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
    const wantTagged = this.membership[out * VLANS + vlan] === 1;
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
      writeTag(buf, off - 4, vlan);
      q.push(off - 4, len + 4);
    }
  }

  private flood(buf: Buffer, off: number, len: number, tagged: boolean, vlan: number, inIdx: number): void {
    const list = this.floodList[vlan];
    if (list === null) return;
    this.c[C.flooded]++;
    const membership = this.membership;
    let altOff = -1;
    let altLen = 0;
    for (let k = 0; k < list.length; k++) {
      const p = list[k];
      if (p === inIdx) continue;
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
          writeTag(buf, base, vlan);
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
    const fdb = this.fdb;
    let removed = 0;
    // removeSlot() may shift a later entry into the slot: look at it again.
    for (let i = 0; i < fdb.capacity; ) {
      if (fdb.isUsed(i) && !fdb.isStatic(i) && now - fdb.lastSeen(i) >= this.ageingMs) {
        fdb.removeSlot(i);
        removed++;
      } else {
        i++;
      }
    }
    this.c[C.aged] += removed;
    return removed;
  }

  /** Current entries (expired ones left out), by VLAN then MAC, for `show fdb`. */
  entries(now: number): FdbEntry[] {
    const out: FdbEntry[] = [];
    for (const e of this.fdb.entries()) {
      if (e.isStatic || now - e.lastSeen < this.ageingMs) {
        out.push({ mac: e.mac, vlan: e.vlan, port: e.port, lastSeen: e.lastSeen, isStatic: e.isStatic });
      }
    }
    return out;
  }

  /**
   * entries() unsorted and step by step, for a listing that pauses between event-loop
   * turns (see FdbTable.walk for what it promises; null marks a point to pause, and
   * the clock is read there). Returns whether the table grew meanwhile.
   */
  *walkEntries(clock: () => number): Generator<FdbEntry | null, { resized: boolean }, void> {
    let now = clock();
    const it = this.fdb.walk();
    for (;;) {
      const r = it.next();
      if (r.done === true) return r.value;
      const e = r.value;
      if (e === null) {
        yield null;
        now = clock();
      } else if (e.isStatic || now - e.lastSeen < this.ageingMs) {
        yield e;
      }
    }
  }

  /** Removes the dynamic entries (of one VLAN, or all); static ones stay. */
  flush(vlan?: number): void {
    const fdb = this.fdb;
    if (vlan === undefined) {
      fdb.clear(true);
      return;
    }
    for (let i = 0; i < fdb.capacity; ) {
      if (fdb.isUsed(i) && !fdb.isStatic(i) && fdb.vlan(i) === vlan) {
        fdb.removeSlot(i);
      } else {
        i++;
      }
    }
  }

  /** Port membership summary, for `show ports`. */
  portVlans(port: number): { pvid: number; tagged: number[]; untagged: number[] } {
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

  /** Counts a frame dropped at ingress: the element's counter and the port's rxDrops. */
  private drop(inPort: Port, id: number, now: number): void {
    this.count(id, now);
    inPort.rxDrops++;
  }
}

/** Writes an 802.1Q tag (TPID 0x8100, PCP 0, DEI 0, VID `vlan`) after the MACs of the frame at `frameOff`. */
function writeTag(buf: Buffer, frameOff: number, vlan: number): void {
  vlanSetTpid(buf, frameOff, ETHERTYPE_VLAN);
  vlanSetTci(buf, frameOff, vlan);
}

function checkVid(v: number, what: string): void {
  if (!Number.isInteger(v) || v < 1 || v > VLAN_VID_MAX) throw new Error(`${what}: ${v} is not a VLAN id (1-${VLAN_VID_MAX})`);
}
