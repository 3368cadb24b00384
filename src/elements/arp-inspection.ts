/**
 * ArpInspection — dynamic ARP inspection per VLAN (a switch's `ip arp inspection vlan
 * …`): an ARP packet that enters an untrusted port of an inspected VLAN is checked
 * against the IP -> MAC bindings the switch knows before it is learned from or
 * forwarded:
 *   - its sender hardware address must be the frame's Ethernet source (`arpInvalid`
 *     otherwise, as is a truncated or non-Ethernet/IPv4 ARP packet);
 *   - when the sender IP has a binding in the VLAN, the sender MAC must be the bound
 *     one (`arpSpoofed` otherwise): a reply claiming another host's address never
 *     reaches the hosts whose neighbour caches it would poison.
 * A sender IP with no binding passes (only contradictions are dropped); 0.0.0.0 (an
 * address probe, RFC 5227) passes. Trusted ports (links to other switches, trunks,
 * router interfaces: the switch decides) are not inspected.
 *
 * Bindings: static ones from the topology, the addresses the lab gave its hosts (told
 * to the node once each host's eth0 exists), later DHCP leases — addBinding() with a
 * source. Table: open addressing on typed arrays keyed by (VLAN, IPv4 address), MAC as
 * two integers: a check reads a few array slots and allocates nothing. The last
 * rejected packet is remembered (plain numbers) for `show security`.
 */
import { readU16, readU32 } from "../wire/bytes.js";
import { arpCheck, ARP_LEN } from "../wire/arp.js";
import { ETHERTYPE_ARP } from "../wire/ethernet.js";
import { CHECK_OK } from "../wire/reason.js";

export const ARP_PASS = 0;
export const ARP_INVALID = 1;
export const ARP_SPOOFED = 2;

export const BINDING_SOURCES = ["static", "lab", "dhcp"] as const;
export type BindingSource = (typeof BINDING_SOURCES)[number];

export interface ArpBinding {
  vlan: number;
  ip: number;
  mac: number;
  source: BindingSource;
}

const TWO32 = 4294967296;

export class ArpInspection {
  /** 1 for an inspected VLAN. */
  readonly vlans = new Uint8Array(4096);
  private cap = 64;
  /** vlan (0 = empty slot) */
  private kVlan = new Uint16Array(this.cap);
  private kIp = new Int32Array(this.cap);
  private mHi = new Uint16Array(this.cap);
  private mLo = new Int32Array(this.cap);
  private src = new Uint8Array(this.cap);
  size = 0;
  /** The last packet dropped: VLAN, sender IP, sender MAC (hi, lo), reason, pass clock. */
  lastVlan = 0;
  lastIp = 0;
  lastMacHi = 0;
  lastMacLo = 0;
  lastReason = 0;
  lastAt = -1;

  constructor(vlans: number[] = [], bindings: ArpBinding[] = []) {
    for (const v of vlans) {
      if (!Number.isInteger(v) || v < 1 || v > 4094) throw new Error(`arp inspection vlan ${v}: not a VLAN id (1-4094)`);
      this.vlans[v] = 1;
    }
    for (const b of bindings) this.addBinding(b.vlan, b.ip, b.mac, b.source);
  }

  /** Adds or replaces the binding of `ip` in `vlan`. */
  addBinding(vlan: number, ip: number, mac: number, source: BindingSource): void {
    if (!Number.isInteger(vlan) || vlan < 1 || vlan > 4094) throw new Error(`arp binding vlan ${vlan}: not a VLAN id (1-4094)`);
    if (!Number.isInteger(mac) || mac <= 0 || mac >= 2 ** 48 || Math.floor(mac / 2 ** 40) % 2 === 1)
      throw new Error("arp binding: the MAC must be a unicast address");
    if ((this.size + 1) * 2 > this.cap) this.rehash(this.cap * 2);
    const i = this.slotOf(vlan, ip | 0);
    if (this.kVlan[i] === 0) this.size++;
    this.kVlan[i] = vlan;
    this.kIp[i] = ip | 0;
    this.mHi[i] = Math.floor(mac / TWO32);
    this.mLo[i] = (mac % TWO32) | 0;
    this.src[i] = BINDING_SOURCES.indexOf(source);
  }

  /** Removes the binding of `ip` in `vlan` (a lease that ended); true when there was one. */
  removeBinding(vlan: number, ip: number): boolean {
    const i = this.slotOf(vlan, ip | 0);
    if (this.kVlan[i] === 0) return false;
    this.kVlan[i] = 0;
    this.size--;
    // Re-place the rest of the probe run so no lookup stops early.
    this.rehash(this.cap);
    return true;
  }

  /** The bound MAC of `ip` in `vlan`, or -1. */
  lookup(vlan: number, ip: number): number {
    const i = this.slotOf(vlan, ip | 0);
    return this.kVlan[i] === 0 ? -1 : this.mHi[i] * TWO32 + (this.mLo[i] >>> 0);
  }

  /**
   * Checks the frame at `off` (VLAN `vlan`, tagged or not) when it is ARP: ARP_PASS,
   * ARP_INVALID or ARP_SPOOFED.
   */
  inspect(buf: Buffer, off: number, len: number, tagged: boolean, vlan: number, now: number): number {
    const a = off + (tagged ? 18 : 14);
    if (readU16(buf, a - 2) !== ETHERTYPE_ARP) return ARP_PASS;
    if (off + len - a < ARP_LEN || arpCheck(buf, a, ARP_LEN) !== CHECK_OK) return this.reject(ARP_INVALID, vlan, 0, 0, 0, now);
    const shaHi = readU16(buf, a + 8);
    const shaLo = readU32(buf, a + 10) | 0;
    if (shaHi !== readU16(buf, off + 6) || shaLo !== (readU32(buf, off + 8) | 0))
      return this.reject(ARP_INVALID, vlan, readU32(buf, a + 14), shaHi, shaLo, now);
    const spa = readU32(buf, a + 14) | 0;
    if (spa === 0 || this.size === 0) return ARP_PASS;
    const i = this.slotOf(vlan, spa);
    if (this.kVlan[i] === 0 || (this.mHi[i] === shaHi && this.mLo[i] === shaLo)) return ARP_PASS;
    return this.reject(ARP_SPOOFED, vlan, spa, shaHi, shaLo, now);
  }

  /** The bindings, for `show security`. */
  bindings(): ArpBinding[] {
    const out: ArpBinding[] = [];
    for (let i = 0; i < this.cap; i++) {
      if (this.kVlan[i] === 0) continue;
      out.push({ vlan: this.kVlan[i], ip: this.kIp[i] >>> 0, mac: this.mHi[i] * TWO32 + (this.mLo[i] >>> 0), source: BINDING_SOURCES[this.src[i]] });
    }
    return out.sort((x, y) => x.vlan - y.vlan || x.ip - y.ip);
  }

  private reject(reason: number, vlan: number, ip: number, hi: number, lo: number, now: number): number {
    this.lastReason = reason;
    this.lastVlan = vlan;
    this.lastIp = ip;
    this.lastMacHi = hi;
    this.lastMacLo = lo;
    this.lastAt = now;
    return reason;
  }

  /** The slot holding (vlan, ip), or the empty slot where it would go. */
  private slotOf(vlan: number, ip: number): number {
    const mask = this.cap - 1;
    let i = (Math.imul(ip ^ Math.imul(vlan, 0x9e3779b1), 0x85ebca6b) >>> 16) & mask;
    while (this.kVlan[i] !== 0 && (this.kVlan[i] !== vlan || this.kIp[i] !== ip)) i = (i + 1) & mask;
    return i;
  }

  private rehash(cap: number): void {
    const old = { v: this.kVlan, ip: this.kIp, hi: this.mHi, lo: this.mLo, s: this.src, cap: this.cap };
    this.cap = cap;
    this.kVlan = new Uint16Array(cap);
    this.kIp = new Int32Array(cap);
    this.mHi = new Uint16Array(cap);
    this.mLo = new Int32Array(cap);
    this.src = new Uint8Array(cap);
    for (let j = 0; j < old.cap; j++) {
      if (old.v[j] === 0) continue;
      const i = this.slotOf(old.v[j], old.ip[j]);
      this.kVlan[i] = old.v[j];
      this.kIp[i] = old.ip[j];
      this.mHi[i] = old.hi[j];
      this.mLo[i] = old.lo[j];
      this.src[i] = old.s[j];
    }
  }
}
