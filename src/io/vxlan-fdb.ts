/**
 * VxlanFdb: a VXLAN port's forwarding table (RFC 7348 section 4): which remote VTEP
 * (outer destination address) an inner destination MAC is behind, as the kernel
 * vxlan device's FDB (`bridge fdb show dev vxlan0`).
 *
 *   static entries   MAC -> remote, from the config or `add()` (as flanneld writes
 *                    them: `bridge fdb add/replace MAC dst REMOTE`); never age, never
 *                    moved by learning (the kernel goes further and drops such
 *                    packets; here they are delivered, only not learned);
 *   flood remotes    broadcast, multicast and unknown unicast go to each (head-end
 *                    replication): the all-zeros MAC's entries, `bridge fdb append
 *                    00:00:00:00:00:00 dst REMOTE`, or the config's `remotes`;
 *   learned entries  inner unicast source MAC -> outer source address of what the
 *                    port received (the kernel's `learning`), at most maxEntries
 *                    (a peer must not grow the table without bound; past that, new
 *                    MACs are not learned: learnLimit), ageing after ageingTime
 *                    seconds without traffic, checked lazily on lookup and in walks;
 *   ARP suppression  IPv4 address -> MAC the port answers ARP requests for (the
 *                    kernel's `proxy`; flanneld's neighbour entries).
 *
 * Everything can change at run time: add()/remove() (an entry, or a flood remote with
 * the all-zeros MAC), addRemote()/removeRemote(), addArpSuppress()/removeArpSuppress().
 * Bad input throws an Error that says what and where.
 *
 * Counters (in the port's VXLAN counters): learned (new or moved learned entries),
 * aged (learned entries expired), learnLimit.
 */
import { ipToString, parseIp } from "../wire/ipv4addr.js";
import { macIsUnicast, macToString, parseMac, readMac } from "../wire/mac.js";
import { V } from "./vxlan-counters.js";

export interface VxlanFdbOptions {
  /** Flood list: broadcast, multicast and unknown unicast go to each (head-end replication). */
  remotes?: string[];
  /** Static entries (as flanneld writes them); mac 00:00:00:00:00:00 adds a flood remote. */
  fdb?: Array<{ mac: string; remote: string }>;
  /** ARP requests for these addresses are answered by the port (the kernel's `proxy`). */
  arpSuppress?: Array<{ ip: string; mac: string }>;
  /** Learn inner source MAC -> outer source address (default true, as the kernel). */
  learning?: boolean;
  /** Seconds a learned entry lives without being refreshed (default 300). */
  ageingTime?: number;
  /** Most learned entries (default 8192). */
  maxEntries?: number;
}

/** A `show fdb` row of a VXLAN port. */
export interface VxlanFdbEntry {
  mac: string;
  remote: string;
  static: boolean;
  /** Seconds (to 0.1 s, as the switch shows them) since the entry was last refreshed; null for static entries. */
  age: number | null;
}

/** An entry of the table: where a MAC is. */
export interface FdbEntry {
  /** Outer destination (IPv4 as a number). */
  remoteAddr: number;
  lastSeen: number;
  isStatic: boolean;
}

export class VxlanFdb {
  readonly learning: boolean;
  readonly ageingMs: number;
  readonly maxEntries: number;
  /** Flood remotes, in the order they were added (read on every flooded frame). */
  readonly flood: number[] = [];
  private readonly table = new Map<number, FdbEntry>();
  private learnedCount = 0;
  /** ARP suppression: IPv4 address -> MAC. */
  private readonly suppress = new Map<number, number>();

  /**
   * @param where names the port in error messages ("vxlan port 'vx0'")
   * @param c the port's VXLAN counters (learned, aged, learnLimit are counted here)
   */
  constructor(
    opts: VxlanFdbOptions,
    private readonly where: string,
    private readonly c: Float64Array,
  ) {
    const ageing = opts.ageingTime ?? 300;
    if (!(ageing > 0)) throw new RangeError(`${where}: ageingTime must be > 0 seconds`);
    const maxEntries = opts.maxEntries ?? 8192;
    if (!Number.isInteger(maxEntries) || maxEntries < 0) {
      throw new RangeError(`${where}: maxEntries must be an integer >= 0`);
    }
    this.learning = opts.learning ?? true;
    this.ageingMs = ageing * 1000;
    this.maxEntries = maxEntries;
    for (const r of opts.remotes ?? []) this.addRemote(r);
    for (const f of opts.fdb ?? []) this.add(f.mac, f.remote);
    for (const s of opts.arpSuppress ?? []) this.addArpSuppress(s.ip, s.mac);
  }

  // ---------------------------------------------------------------------------
  // Changing the table

  /**
   * `bridge fdb append 00:00:00:00:00:00 dst REMOTE` (mac all-zeros: a flood remote),
   * or `bridge fdb replace MAC dst REMOTE` (a static entry, replacing a learned or
   * static one). Returns false when the table already said so.
   */
  add(mac: string, remote: string): boolean {
    const m = this.mac(mac, "fdb mac");
    const r = this.ip(remote, `fdb entry ${mac}`);
    if (m === 0) return this.addFlood(r);
    if (!macIsUnicast(m)) throw new Error(`${this.where}: fdb entry ${mac} is a group address`);
    const e = this.table.get(m);
    if (e?.isStatic && e.remoteAddr === r) return false;
    if (e !== undefined && !e.isStatic) this.learnedCount--;
    this.table.set(m, { remoteAddr: r, lastSeen: 0, isStatic: true });
    return true;
  }

  /**
   * `bridge fdb del MAC [dst REMOTE]`: the entry of a unicast MAC (static or learned;
   * with `remote`, only if it points there), or with the all-zeros MAC the flood remote
   * `remote` (every flood remote when `remote` is left out). Returns whether anything
   * was removed.
   */
  remove(mac: string, remote?: string): boolean {
    const m = this.mac(mac, "fdb mac");
    const r = remote === undefined ? -1 : this.ip(remote, `fdb entry ${mac}`);
    if (m === 0) {
      if (r >= 0) return this.removeFlood(r);
      const had = this.flood.length !== 0;
      this.flood.length = 0;
      return had;
    }
    const e = this.table.get(m);
    if (e === undefined || (r >= 0 && e.remoteAddr !== r)) return false;
    this.table.delete(m);
    if (!e.isStatic) this.learnedCount--;
    return true;
  }

  /** Adds a flood remote (as the config's `remotes`); false when it is one already. */
  addRemote(remote: string): boolean {
    return this.addFlood(this.ip(remote, "remotes"));
  }

  /** Removes a flood remote; false when it was none. */
  removeRemote(remote: string): boolean {
    return this.removeFlood(this.ip(remote, "remotes"));
  }

  /** Answers ARP requests for `ip` with `mac` from now on (replacing an older answer). */
  addArpSuppress(ip: string, mac: string): void {
    const m = this.mac(mac, `arpSuppress ${ip}`);
    if (!macIsUnicast(m)) throw new Error(`${this.where}: arpSuppress ${ip}: ${mac} is not a unicast MAC`);
    this.suppress.set(this.ip(ip, "arpSuppress ip"), m);
  }

  /** Stops answering ARP requests for `ip`; false when it was not answered. */
  removeArpSuppress(ip: string): boolean {
    return this.suppress.delete(this.ip(ip, "arpSuppress ip"));
  }

  private addFlood(r: number): boolean {
    if (this.flood.includes(r)) return false;
    this.flood.push(r);
    return true;
  }

  private removeFlood(r: number): boolean {
    const k = this.flood.indexOf(r);
    if (k < 0) return false;
    this.flood.splice(k, 1);
    return true;
  }

  private ip(s: string, what: string): number {
    try {
      return parseIp(s);
    } catch (e) {
      throw new Error(`${this.where}: ${what}: ${(e as Error).message}`);
    }
  }

  private mac(s: string, what: string): number {
    try {
      return parseMac(s);
    } catch (e) {
      throw new Error(`${this.where}: ${what}: ${(e as Error).message}`);
    }
  }

  // ---------------------------------------------------------------------------
  // The data path

  /** The entry for `mac`, unless none or aged out (then removed: lazy ageing). `now` in ms. */
  lookup(mac: number, now: number): FdbEntry | undefined {
    const e = this.table.get(mac);
    if (e === undefined || e.isStatic || now - e.lastSeen < this.ageingMs) return e;
    this.table.delete(mac);
    this.learnedCount--;
    this.c[V.aged]++;
    return undefined;
  }

  /** Learns the inner source MAC of the frame at `frame`, received from outer source `from`. */
  learn(pool: Buffer, frame: number, from: number, now: number): void {
    const src = readMac(pool, frame + 6);
    // A group or zero source is not a station (IEEE 802.1Q 8.7: never learned).
    if (src === 0 || (pool[frame + 6] & 1) === 1) return;
    const e = this.table.get(src);
    if (e !== undefined) {
      if (e.isStatic) return;
      e.lastSeen = now;
      if (e.remoteAddr === from) return;
      // Moved, or aged out and back: re-point it.
      e.remoteAddr = from;
      this.c[V.learned]++;
      return;
    }
    if (this.learnedCount >= this.maxEntries) {
      this.c[V.learnLimit]++;
      return;
    }
    this.table.set(src, { remoteAddr: from, lastSeen: now, isStatic: false });
    this.learnedCount++;
    this.c[V.learned]++;
  }

  /** True when some address has ARP suppression (a cheap test before looking at frames). */
  get suppressing(): boolean {
    return this.suppress.size !== 0;
  }

  /** The MAC to answer an ARP request for `ip` with, or undefined. */
  suppressedMac(ip: number): number | undefined {
    return this.suppress.get(ip);
  }

  // ---------------------------------------------------------------------------
  // Listing (`show fdb`, `show tunnels`)

  /** Flood remotes as dotted quads. */
  remotes(): string[] {
    return this.flood.map(ipToString);
  }

  /** Static entries and learned ones not yet aged (aged ones are removed). `now` in ms, performance.now(). */
  entries(now: number): VxlanFdbEntry[] {
    const out: VxlanFdbEntry[] = [];
    for (const e of this.walk(() => now)) if (e !== null) out.push(e);
    return out;
  }

  /**
   * entries() step by step for a listing that pauses between event-loop turns (null
   * every 256 entries; the clock is read there). The Map iterator is live: an entry
   * present for the whole walk is listed once.
   */
  *walk(clock: () => number): Generator<VxlanFdbEntry | null, void, void> {
    let now = clock();
    let n = 0;
    for (const [mac, e] of this.table) {
      if (++n % 256 === 0) {
        yield null;
        now = clock();
      }
      if (!e.isStatic && now - e.lastSeen >= this.ageingMs) {
        this.table.delete(mac);
        this.learnedCount--;
        this.c[V.aged]++;
        continue;
      }
      yield {
        mac: macToString(mac),
        remote: ipToString(e.remoteAddr),
        static: e.isStatic,
        age: e.isStatic ? null : Math.max(0, Math.round((now - e.lastSeen) / 100) / 10),
      };
    }
  }
}
