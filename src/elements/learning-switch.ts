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
 * rewritten copy in the switch's scratch region, made once per frame.
 *
 * Ports: one per engine port, all of them members of the switch.
 * Config: ageingTime (s), maxEntries, per-port mode/vlans, static entries.
 * Table: an FdbTable (fdb-table.ts), open addressing on typed arrays keyed by
 * (VLAN, MAC), sized for maxEntries dynamic entries plus room for static ones.
 *
 * Counters: forwarded, flooded, filtered (destination on the ingress port), learned,
 *   stationMoves, aged, evicted, macLimit, runt, oversize, badSrcMac, vlanFiltered,
 *   linkLocal (802.1D reserved group 01:80:c2:00:00:0X, never forwarded), scratchFull.
 */
import type { FrameList } from "../core/batch.js";
import type { PassAware, Pipeline } from "../core/engine.js";
import type { Port } from "../core/port.js";
import { FdbTable } from "./fdb-table.js";

export type SwitchPortMode =
  | { mode: "access"; vlan: number }
  | { mode: "trunk"; allowed: number[]; native?: number };

export interface StaticFdbEntry {
  mac: number;
  vlan: number;
  port: string;
}

export interface LearningSwitchConfig {
  /** Seconds an entry lives without being refreshed (802.1D default 300). */
  ageingTime?: number;
  /** Most dynamic entries the table holds. */
  maxEntries?: number;
  ports?: Record<string, SwitchPortMode>;
  static?: StaticFdbEntry[];
  /** All ports carry virtio-net headers (offloads): see LearningSwitch.vnet. */
  vnet?: boolean;
}

export interface FdbEntry {
  mac: number;
  vlan: number;
  port: number;
  lastSeen: number;
  isStatic: boolean;
}

export const COUNTERS = [
  "forwarded",
  "flooded",
  "filtered",
  "learned",
  "stationMoves",
  "aged",
  "evicted",
  "macLimit",
  "runt",
  "oversize",
  "badSrcMac",
  "vlanFiltered",
  "linkLocal",
  "scratchFull",
] as const;
export type SwitchCounter = (typeof COUNTERS)[number];

const VLANS = 4096;
/** Static entries the table holds beyond maxEntries (they do not count against it). */
const STATIC_RESERVE = 4096;
const ETH_HLEN = 14;
/** Largest frame accepted: 1500 bytes of payload, Ethernet header and one tag. */
const DEFAULT_MAX_FRAME = 1500 + ETH_HLEN + 4;

export class LearningSwitch implements Pipeline, PassAware {
  readonly kind = "LearningSwitch";
  readonly ageingMs: number;
  readonly maxEntries: number;
  forwarded = 0;
  flooded = 0;
  filtered = 0;
  learned = 0;
  stationMoves = 0;
  aged = 0;
  evicted = 0;
  macLimit = 0;
  runt = 0;
  oversize = 0;
  badSrcMac = 0;
  vlanFiltered = 0;
  linkLocal = 0;
  scratchFull = 0;

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
  /**
   * br_netfilter's hook: IPv4 unicast bridged between two ports of a VLAN marked in
   * `hookVlans` is shown to `bridgeHook` (the router's NAT, which translates replies
   * of service connections back to the VIP). Set by the node; null when unused.
   */
  bridgeHook: ((buf: Buffer, ipOff: number, ipLen: number, now: number, csumPartial: boolean) => void) | null = null;
  readonly hookVlans = new Uint8Array(VLANS);
  private scratchBase = -1;
  private scratchSlots = 0;
  private scratchUsed = 0;
  private readonly scratchSlot: number;
  /**
   * Ports carry virtio-net headers (TAPs with offloads): every frame has its 12-byte
   * header in the 12 bytes before it, TSO super-frames pass whole, and the header's
   * offsets follow the frame when a tag is pushed or popped.
   */
  readonly vnet: boolean;

  constructor(
    readonly ports: readonly Port[],
    config: LearningSwitchConfig = {},
  ) {
    this.vnet = config.vnet ?? false;
    this.scratchSlot = this.vnet ? 65536 + 256 : 2048;
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

  /** Dynamic entries in the table (static ones are not counted against maxEntries). */
  get dynamicCount(): number {
    return this.fdb.dynamicSize;
  }

  /** Where the switch may write rewritten copies of flooded frames (pool offset). */
  scratchBytes(batchSize: number): number {
    return batchSize * this.scratchSlot;
  }

  setScratch(base: number, bytes: number): void {
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

  beginPass(): void {
    this.scratchUsed = 0;
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
      if (len < ETH_HLEN) {
        this.runt++;
        inPort.rxDrops++;
        continue;
      }
      // A TSO super-frame (virtio-net gso_type set) is one unit of up to 64 KiB.
      if (len > maxFrame && !(this.vnet && buf[off - VNET_HDR_LEN + 1] !== 0)) {
        this.oversize++;
        inPort.rxDrops++;
        continue;
      }
      // Ingress classification (802.1Q §8.6.1 in spirit).
      let tagged = false;
      let vlan: number;
      if (buf[off + 12] === 0x81 && buf[off + 13] === 0x00) {
        if (len < ETH_HLEN + 4) {
          this.runt++;
          inPort.rxDrops++;
          continue;
        }
        tagged = true;
        vlan = ((buf[off + 14] & 0x0f) << 8) | buf[off + 15];
        if (vlan !== 0 && this.access[inIdx] === 1) {
          // An access port carries its VLAN untagged; a VLAN tag there is foreign.
          this.vlanFiltered++;
          inPort.rxDrops++;
          continue;
        }
        if (vlan === 0) {
          // Priority-tagged: belongs to the port's untagged VLAN; keep the PCP.
          vlan = this.pvid[inIdx];
          if (vlan > 0) {
            buf[off + 14] = (buf[off + 14] & 0xf0) | (vlan >> 8);
            buf[off + 15] = vlan & 0xff;
          }
        }
        if (vlan <= 0 || vlan === 4095 || this.membership[inIdx * VLANS + vlan] === 0) {
          this.vlanFiltered++;
          inPort.rxDrops++;
          continue;
        }
      } else {
        vlan = this.pvid[inIdx];
        if (vlan < 0) {
          this.vlanFiltered++;
          inPort.rxDrops++;
          continue;
        }
      }
      // A group or all-zero source is not a station (802.1D; the Linux bridge drops it).
      const s0 = buf[off + 6];
      if ((s0 & 1) !== 0) {
        this.badSrcMac++;
        inPort.rxDrops++;
        continue;
      }
      const srcHi = (s0 << 8) | buf[off + 7];
      const srcLo = buf.readUInt32BE(off + 8);
      if (srcHi === 0 && srcLo === 0) {
        this.badSrcMac++;
        inPort.rxDrops++;
        continue;
      }
      const d0 = buf[off];
      if (
        d0 === 0x01 &&
        buf[off + 1] === 0x80 &&
        buf[off + 2] === 0xc2 &&
        buf[off + 3] === 0 &&
        buf[off + 4] === 0 &&
        (buf[off + 5] & 0xf0) === 0
      ) {
        // IEEE 802.1D reserved group addresses (STP, LACP, LLDP …) stop at a bridge.
        this.linkLocal++;
        inPort.rxDrops++;
        continue;
      }
      this.learn(vlan, srcHi, srcLo, inIdx, now);

      if ((d0 & 1) !== 0) {
        this.flood(buf, off, len, tagged, vlan, inIdx);
        continue;
      }
      const fdb = this.fdb;
      const slot = fdb.find(vlan, (d0 << 8) | buf[off + 1], buf.readUInt32BE(off + 2));
      if (slot >= 0) {
        const outIdx = fdb.port(slot);
        if (fdb.isStatic(slot) || now - fdb.lastSeen(slot) < this.ageingMs) {
          if (outIdx === inIdx) {
            this.filtered++;
            inPort.rxDrops++;
          } else {
            this.forwarded++;
            if (this.hookVlans[vlan] === 1 && this.bridgeHook !== null && this.internal[outIdx] === 0) {
              const l3 = tagged ? off + 18 : off + 14;
              if (buf[l3 - 2] === 0x08 && buf[l3 - 1] === 0x00) {
                // With offloads, a pending checksum must stay a partial sum.
                this.bridgeHook(buf, l3, off + len - l3, now, this.vnet && (buf[off - VNET_HDR_LEN] & 1) !== 0);
              }
            }
            this.unicast(buf, off, len, tagged, vlan, outIdx);
          }
          continue;
        }
        fdb.removeSlot(slot);
        this.aged++;
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
        this.stationMoves++;
      }
      return;
    }
    if (fdb.dynamicSize >= this.maxEntries) {
      // Full: the busiest port gives up its least recently seen entry (evictLru gives
      // -1 only with maxEntries 0: nothing dynamic to take).
      if (fdb.evictLru() < 0) {
        this.macLimit++;
        return;
      }
      this.evicted++;
    }
    // The table holds room for the static entries beyond maxEntries, so insert() fails
    // only when statics took more than that room.
    if (fdb.insertNew(vlan, macHi, macLo, port, now, false) < 0) {
      this.macLimit++;
      return;
    }
    this.learned++;
  }

  private unicast(buf: Buffer, off: number, len: number, tagged: boolean, vlan: number, out: number): void {
    const wantTagged = this.membership[out * VLANS + vlan] === 1;
    const q = this.ports[out].txq;
    // With offloads, the 12-byte virtio-net header before the frame moves with it.
    const h = this.vnet ? VNET_HDR_LEN : 0;
    if (wantTagged === tagged) {
      q.push(off, len);
    } else if (tagged) {
      // Pop in place: the MACs move 4 bytes toward the payload over the tag.
      buf.copyWithin(off + 4 - h, off - h, off + 12);
      if (h !== 0) shiftVnetOffsets(buf, off + 4 - h, -4);
      q.push(off + 4, len - 4);
    } else {
      // Push in place into the headroom the port left before the frame.
      buf.copyWithin(off - 4 - h, off - h, off + 12);
      if (h !== 0) shiftVnetOffsets(buf, off - 4 - h, 4);
      writeTag(buf, off + 8, vlan);
      q.push(off - 4, len + 4);
    }
  }

  private flood(buf: Buffer, off: number, len: number, tagged: boolean, vlan: number, inIdx: number): void {
    const list = this.floodList[vlan];
    if (list === null) return;
    this.flooded++;
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
          this.scratchFull++;
          this.ports[p].txDrops++;
          continue;
        }
        // Frames in scratch start 16 bytes into their slot: room for a virtio-net header.
        const base = this.scratchBase + this.scratchUsed * this.scratchSlot + 16;
        this.scratchUsed++;
        if (this.vnet) {
          buf.copyWithin(base - VNET_HDR_LEN, off - VNET_HDR_LEN, off);
          shiftVnetOffsets(buf, base - VNET_HDR_LEN, tagged ? -4 : 4);
        }
        if (tagged) {
          // Untagged copy: MACs, then everything after the tag.
          buf.copyWithin(base, off, off + 12);
          buf.copyWithin(base + 12, off + 16, off + len);
          altOff = base;
          altLen = len - 4;
        } else {
          buf.copyWithin(base, off, off + 12);
          writeTag(buf, base + 12, vlan);
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
    this.aged += removed;
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

  counters(): Record<SwitchCounter, number> {
    const c = {} as Record<SwitchCounter, number>;
    for (const k of COUNTERS) c[k] = this[k];
    return c;
  }
}

const VNET_HDR_LEN = 12;
const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;

/**
 * A tag pushed (+4) or popped (-4) in front of the L3 header moves everything the
 * virtio-net header at `h` points into: csum_start when a checksum is pending, and
 * hdr_len (the headers the kernel repeats on each segment) of a TSO frame.
 *
 * The fields come from the sender: a csum_start below 4 or near 65535 wraps around
 * (16 bits, as the kernel's u16 would) instead of throwing, and the frame is then
 * refused where the offset is used (completeChecksum, gsoSegment, the kernel).
 */
function shiftVnetOffsets(buf: Buffer, h: number, delta: number): void {
  if ((buf[h] & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0) addU16le(buf, h + 6, delta);
  if (buf[h + 1] !== 0) addU16le(buf, h + 2, delta);
}

/** Adds `delta` to the little-endian u16 at `at`, modulo 2^16 (Buffer.writeUInt16LE throws out of range). */
function addU16le(buf: Buffer, at: number, delta: number): void {
  const v = (buf[at] | (buf[at + 1] << 8)) + delta;
  buf[at] = v & 0xff;
  buf[at + 1] = (v >>> 8) & 0xff;
}

function writeTag(buf: Buffer, at: number, vlan: number): void {
  buf[at] = 0x81;
  buf[at + 1] = 0x00;
  buf[at + 2] = (vlan >> 8) & 0x0f;
  buf[at + 3] = vlan & 0xff;
}

function checkVid(v: number, what: string): void {
  if (!Number.isInteger(v) || v < 1 || v > 4094) throw new Error(`${what}: ${v} is not a VLAN id (1-4094)`);
}
