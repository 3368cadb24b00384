/**
 * ConnTrack — the connection tracking table, in the spirit of Linux nf_conntrack.
 *
 * What it does: remembers every connection the NAT has seen as two tuples, the
 * original (what the initiator sent) and the reply (what the answer looks like on the
 * wire, after NAT), follows each through its states (conntrack-states.ts), and forgets
 * it when the timeout of its state runs out. The NAT (nat.ts) decides what the tuples
 * are; this file stores, finds, tracks and removes them; conntrack-list.ts lists them.
 *
 * Tuples: (protocol, srcAddr, srcPort, dstAddr, dstPort). For ICMP echo the identifier
 * is both ports. Like Linux, whose ICMP tuple holds the type, an ICMP echo request only
 * ever matches an original tuple and an echo reply only a reply tuple (the `dirMask` of
 * find()): a host pinging back with the same identifier is another connection, not a
 * reply.
 *
 * Table: struct-of-arrays on typed arrays, no objects per entry. Entry e owns tuple ids
 * 2e (original) and 2e+1 (reply). A chained hash table (bucket heads in an Int32Array,
 * chain links per tuple id) indexes confirmed tuples; its hash is seeded at random so
 * a peer cannot choose ports that pile into one chain. Nothing on the lookup/track path
 * allocates; the arrays grow by doubling (rehash) up to maxEntries, on new connections
 * only. Against nested Maps keyed by addr * 65536 + port (keys above 2^31 are
 * HeapNumbers) a hit took half the time with 1000 connections and a quarter with
 * 50000, allocating nothing.
 *
 * Lifecycle of an entry: alloc() (pending: not in the hash, invisible to find()) ->
 * setTuple() x2 -> confirm() (both tuples indexed) -> track() per packet -> remove()
 * by expire(), by a lookup that meets it expired, by eviction, or by the caller (TCP
 * reopen, `conntrack -D` / deleteTuple(), `conntrack -F` / flush()). A pending entry
 * is either confirmed or release()d; the NAT confirms after its SNAT decision
 * (netfilter confirms at POSTROUTING for the same reason). `pending` counts them;
 * releasePending() frees any a caller lost track of.
 *
 * Bounded: at most maxEntries entries (pending ones included). When full, alloc()
 * first reclaims expired entries from a small rolling window, then makes room the way
 * Linux's early_drop does: it evicts the oldest entry that carries no established
 * flow, and only when there is none gives -1 (the caller refuses the new connection
 * and counts it). Evictable are the entries that are not ASSURED — a TCP handshake
 * not completed (SYN_SENT, SYN_RECV), UDP never answered, every ICMP entry — and
 * ASSURED TCP entries in which no more data can flow (LAST_ACK, TIME_WAIT, CLOSE:
 * the states of Linux's tcp_can_early_drop that its conntrack GC reclaims on a
 * nearly full table; FIN_WAIT and CLOSE_WAIT are left out because a half-closed
 * connection may still carry data one way). ESTABLISHED and ASSURED UDP flows are
 * never evicted for a new connection.
 * The evictable entries are kept on an intrusive doubly linked FIFO (prev/next
 * Int32Arrays by entry index) in the order they became evictable: an entry joins
 * at confirm() or when it reaches a closing state, leaves when it becomes ASSURED
 * (and is not closing) or is removed, so eviction is O(1) and allocates nothing. A
 * SYN flood of spoofed sources therefore cycles through the FIFO, each flood entry
 * living maxEntries / rate seconds, while a real handshake (a round trip) completes,
 * turns ASSURED and leaves it. Pending entries are not on the FIFO: the NAT holds one
 * only while its packet is between PREROUTING and POSTROUTING.
 *
 * Time: `now` is the caller's clock in milliseconds. Timeouts stay Linux's (SYN_SENT
 * 120 s, SYN_RECV 60 s) and configurable: with eviction a table full of half-open
 * entries no longer refuses anyone, so there is no need to shorten them (which would
 * also cut off slow but real handshakes).
 */
import { grown } from "../core/grow.js";
import { IP_PROTO_TCP, IP_PROTO_UDP } from "../wire/ipv4.js";
import {
  ST_ICMP,
  ST_UDP,
  ST_UDP_STREAM,
  TCP_BECAME_ASSURED,
  TCP_CLOSE,
  TCP_LAST_ACK,
  TCP_NONE,
  checkTimeouts,
  tcpTransition,
  timeoutTable,
  type Timeouts,
} from "./conntrack-states.js";

export const DEFAULT_MAX_ENTRIES = 65536;

export const DIR_ORIGINAL = 0;
export const DIR_REPLY = 1;
/** find() masks: which tuple directions may match. */
export const MATCH_ORIGINAL = 1;
export const MATCH_REPLY = 2;
export const MATCH_ANY = 3;

/** Status bits (after IPS_*). */
export const CT_SEEN_REPLY = 1;
export const CT_ASSURED = 2;
export const CT_SNAT = 4;
export const CT_DNAT = 8;

const USE_FREE = 0;
const USE_PENDING = 1;
const USE_CONFIRMED = 2;

const NIL = -1;
const INITIAL_CAPACITY = 1024;
/** Entries examined for expiry by alloc() on a full table before it evicts one. */
const RECLAIM_WINDOW = 64;
/** evPrev value of an entry that is not on the evictable FIFO. */
const OFF_LIST = -2;

function randomSeed(): number {
  // Not a security boundary of its own; enough that chains cannot be predicted.
  return (Math.floor(Math.random() * 0x100000000) ^ Date.now()) >>> 0;
}

export interface ConnTrackOptions {
  maxEntries?: number;
  timeouts?: Partial<Timeouts>;
  /** Hash seed (tests); random by default. */
  seed?: number;
}

export class ConnTrack {
  readonly maxEntries: number;
  readonly timeouts: Readonly<Timeouts>;
  private readonly timeoutMs: Float64Array;
  private readonly seed: number;

  /** Allocated entry slots (grows by doubling up to maxEntries). */
  private cap = 0;
  // Per entry.
  proto = new Uint8Array(0);
  /** TCP state, or ST_UDP / ST_UDP_STREAM / ST_ICMP. */
  state = new Uint8Array(0);
  status = new Uint8Array(0);
  private tcpSeen = new Uint8Array(0);
  private use = new Uint8Array(0);
  expires = new Float64Array(0);
  // Per tuple id (2e + dir).
  /**
   * Addresses as signed int32 bits (`addr | 0`): every value is a Smi in V8, so
   * passing one to a function that is not inlined allocates no HeapNumber (a uint32
   * above 2^31 would be boxed on every call).
   */
  tSrc = new Int32Array(0);
  tDst = new Int32Array(0);
  tSport = new Uint16Array(0);
  tDport = new Uint16Array(0);
  private tNext = new Int32Array(0);
  packets = new Float64Array(0);
  bytes = new Float64Array(0);
  // Free entry slots (a stack) and the hash.
  private free = new Int32Array(0);
  private freeTop = 0;
  private buckets = new Int32Array(0);
  private mask = 0;
  private cursor = 0;
  // The FIFO of evictable confirmed entries (see the file comment).
  private evPrev = new Int32Array(0);
  private evNext = new Int32Array(0);
  private evHead = NIL;
  private evTail = NIL;

  // Counts: `count` entries in use, `pending` of those neither confirmed nor released
  // yet; `expired` entries removed when their timeout ran out (by expire() or a
  // lookup), `earlyDrops` evicted to make room for a new connection (Linux's
  // early_drop); `evictable` entries on the FIFO.
  count = 0;
  pending = 0;
  expired = 0;
  earlyDrops = 0;
  evictable = 0;

  constructor(opts: ConnTrackOptions = {}) {
    const max = opts.maxEntries ?? DEFAULT_MAX_ENTRIES;
    if (!Number.isInteger(max) || max < 1 || max > 1 << 24) {
      throw new Error(`conntrack maxEntries must be an integer 1..16777216, got ${String(max)}`);
    }
    this.maxEntries = max;
    this.timeouts = Object.freeze(checkTimeouts(opts.timeouts));
    this.timeoutMs = timeoutTable(this.timeouts);
    this.seed = (opts.seed ?? randomSeed()) | 0;
    this.grow(Math.min(max, INITIAL_CAPACITY));
  }

  // ---------------------------------------------------------------------------
  // Storage

  private grow(newCap: number): void {
    const old = this.cap;
    this.proto = grown(this.proto, newCap);
    this.state = grown(this.state, newCap);
    this.status = grown(this.status, newCap);
    this.tcpSeen = grown(this.tcpSeen, newCap);
    this.use = grown(this.use, newCap);
    this.expires = grown(this.expires, newCap);
    this.tSrc = grown(this.tSrc, 2 * newCap);
    this.tDst = grown(this.tDst, 2 * newCap);
    this.tSport = grown(this.tSport, 2 * newCap);
    this.tDport = grown(this.tDport, 2 * newCap);
    this.tNext = new Int32Array(2 * newCap).fill(NIL);
    this.packets = grown(this.packets, 2 * newCap);
    this.bytes = grown(this.bytes, 2 * newCap);
    this.evPrev = grown(this.evPrev, newCap, OFF_LIST);
    this.evNext = grown(this.evNext, newCap);
    const free = new Int32Array(newCap);
    free.set(this.free.subarray(0, this.freeTop));
    // New slots pushed so that the lowest index is taken first.
    let top = this.freeTop;
    for (let e = newCap - 1; e >= old; e--) free[top++] = e;
    this.free = free;
    this.freeTop = top;
    this.cap = newCap;
    // Two tuples per entry: a power of two >= 2 * capacity keeps chains ~1 long.
    let nb = 16;
    while (nb < 2 * newCap) nb <<= 1;
    this.buckets = new Int32Array(nb).fill(NIL);
    this.mask = nb - 1;
    for (let e = 0; e < old; e++) {
      if (this.use[e] === USE_CONFIRMED) {
        this.link(2 * e);
        this.link(2 * e + 1);
      }
    }
  }

  private hash(proto: number, src: number, sport: number, dst: number, dport: number): number {
    // murmur3-style mixing of the five fields, seeded.
    let h = Math.imul(this.seed ^ src, 0xcc9e2d51);
    h = Math.imul((h << 15) | (h >>> 17), 0x1b873593);
    h ^= dst;
    h = Math.imul((h << 13) | (h >>> 19), 5) + 0xe6546b64;
    h ^= ((sport << 16) | dport) ^ (proto << 8);
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    return h & this.mask;
  }

  private tupleHash(t: number): number {
    return this.hash(this.proto[t >> 1], this.tSrc[t], this.tSport[t], this.tDst[t], this.tDport[t]);
  }

  private link(t: number): void {
    const b = this.tupleHash(t);
    this.tNext[t] = this.buckets[b];
    this.buckets[b] = t;
  }

  private unlink(t: number): void {
    const b = this.tupleHash(t);
    let p = this.buckets[b];
    if (p === t) {
      this.buckets[b] = this.tNext[t];
      this.tNext[t] = NIL;
      return;
    }
    while (p !== NIL) {
      const n = this.tNext[p];
      if (n === t) {
        this.tNext[p] = this.tNext[t];
        this.tNext[t] = NIL;
        return;
      }
      p = n;
    }
  }

  // ---------------------------------------------------------------------------
  // Lookup

  /**
   * The tuple id (2 * entry + direction) of the confirmed tuple equal to the one
   * given, whose direction is in `dirMask`, or -1. An entry met expired is removed
   * and counts as absent. Addresses as int32 bits (`addr | 0`; uint32 works too).
   */
  find(proto: number, src: number, sport: number, dst: number, dport: number, dirMask: number, now: number): number {
    src |= 0;
    dst |= 0;
    let t = this.buckets[this.hash(proto, src, sport, dst, dport)];
    while (t !== NIL) {
      if (
        this.tSrc[t] === src &&
        this.tDst[t] === dst &&
        this.tSport[t] === sport &&
        this.tDport[t] === dport &&
        this.proto[t >> 1] === proto &&
        ((1 << (t & 1)) & dirMask) !== 0
      ) {
        const e = t >> 1;
        if (this.expires[e] <= now) {
          this.remove(e);
          this.expired++;
          return NIL;
        }
        return t;
      }
      t = this.tNext[t];
    }
    return NIL;
  }

  /** True when a live entry holds this tuple in a direction of `dirMask`. */
  taken(proto: number, src: number, sport: number, dst: number, dport: number, dirMask: number, now: number): boolean {
    return this.find(proto, src, sport, dst, dport, dirMask, now) !== NIL;
  }

  // ---------------------------------------------------------------------------
  // Entry lifecycle

  /**
   * A pending entry for protocol `proto`, or -1 when the table is full and no entry
   * can be evicted (see the file comment).
   */
  alloc(proto: number, now: number): number {
    if (this.freeTop === 0) {
      if (this.cap < this.maxEntries) this.grow(Math.min(this.maxEntries, this.cap * 2));
      else this.reclaim(now);
      if (this.freeTop === 0) {
        const v = this.evHead;
        if (v === NIL) return NIL;
        if (this.expires[v] <= now) this.expired++;
        else this.earlyDrops++;
        this.remove(v);
      }
    }
    const e = this.free[--this.freeTop];
    this.use[e] = USE_PENDING;
    this.proto[e] = proto;
    this.status[e] = 0;
    this.tcpSeen[e] = 0;
    this.state[e] = proto === IP_PROTO_TCP ? TCP_NONE : proto === IP_PROTO_UDP ? ST_UDP : ST_ICMP;
    this.expires[e] = now + this.timeoutMs[this.state[e]];
    this.packets[2 * e] = 0;
    this.packets[2 * e + 1] = 0;
    this.bytes[2 * e] = 0;
    this.bytes[2 * e + 1] = 0;
    this.count++;
    this.pending++;
    return e;
  }

  /** Sets tuple `dir` of a pending entry. */
  setTuple(e: number, dir: number, src: number, sport: number, dst: number, dport: number): void {
    const t = 2 * e + dir;
    this.tSrc[t] = src | 0;
    this.tSport[t] = sport;
    this.tDst[t] = dst | 0;
    this.tDport[t] = dport;
  }

  /** Indexes both tuples of a pending entry: from now on find() sees it. */
  confirm(e: number): void {
    if (this.use[e] !== USE_PENDING) return;
    this.use[e] = USE_CONFIRMED;
    this.pending--;
    this.link(2 * e);
    this.link(2 * e + 1);
    if (this.canEvict(e)) this.evAppend(e);
  }

  /** Frees a pending entry that will not be confirmed. */
  release(e: number): void {
    if (this.use[e] !== USE_PENDING) return;
    this.use[e] = USE_FREE;
    this.free[this.freeTop++] = e;
    this.count--;
    this.pending--;
  }

  /** Removes a confirmed entry (or frees a pending one). */
  remove(e: number): void {
    const u = this.use[e];
    if (u === USE_FREE) return;
    if (u === USE_CONFIRMED) {
      this.unlink(2 * e);
      this.unlink(2 * e + 1);
      if (this.evPrev[e] !== OFF_LIST) this.evUnlink(e);
    } else this.pending--;
    this.use[e] = USE_FREE;
    this.free[this.freeTop++] = e;
    this.count--;
  }

  isConfirmed(e: number): boolean {
    return this.use[e] === USE_CONFIRMED;
  }

  isPending(e: number): boolean {
    return this.use[e] === USE_PENDING;
  }

  /** May entry e be evicted for a new connection? (See the file comment.) */
  private canEvict(e: number): boolean {
    if ((this.status[e] & CT_ASSURED) === 0) return true;
    const st = this.state[e];
    return this.proto[e] === IP_PROTO_TCP && st >= TCP_LAST_ACK && st <= TCP_CLOSE;
  }

  private evAppend(e: number): void {
    const t = this.evTail;
    this.evPrev[e] = t;
    this.evNext[e] = NIL;
    if (t === NIL) this.evHead = e;
    else this.evNext[t] = e;
    this.evTail = e;
    this.evictable++;
  }

  private evUnlink(e: number): void {
    const p = this.evPrev[e];
    const n = this.evNext[e];
    if (p === NIL) this.evHead = n;
    else this.evNext[p] = n;
    if (n === NIL) this.evTail = p;
    else this.evPrev[n] = p;
    this.evPrev[e] = OFF_LIST;
    this.evictable--;
  }

  private reclaim(now: number): void {
    const cap = this.cap;
    for (let i = 0; i < RECLAIM_WINDOW; i++) {
      const e = this.cursor;
      this.cursor = e + 1 === cap ? 0 : e + 1;
      if (this.use[e] === USE_CONFIRMED && this.expires[e] <= now) {
        this.remove(e);
        this.expired++;
      }
    }
  }

  /**
   * Accounts one packet of `bytes` bytes in direction `dir` and moves the state
   * machine (conntrack-states.ts); for TCP `tcpFlags` is the flags byte. Refreshes the
   * timeout, and moves the entry on or off the evictable FIFO as its state says.
   */
  track(e: number, dir: number, tcpFlags: number, bytes: number, now: number): void {
    const t = 2 * e + dir;
    this.packets[t] += 1;
    this.bytes[t] += bytes;
    let st = this.state[e];
    if (dir === DIR_REPLY) this.status[e] |= CT_SEEN_REPLY;
    const p = this.proto[e];
    if (p === IP_PROTO_TCP) {
      const x = tcpTransition(st, this.tcpSeen[e], dir, tcpFlags);
      st = x & 0xff;
      this.state[e] = st;
      this.tcpSeen[e] = (x >> 8) & 0xff;
      if ((x & TCP_BECAME_ASSURED) !== 0) this.status[e] |= CT_ASSURED;
    } else if (p === IP_PROTO_UDP && (this.status[e] & CT_SEEN_REPLY) !== 0) {
      this.status[e] |= CT_ASSURED;
      st = ST_UDP_STREAM;
      this.state[e] = st;
    }
    this.expires[e] = now + this.timeoutMs[st];
    if (this.use[e] === USE_CONFIRMED && this.canEvict(e) !== (this.evPrev[e] !== OFF_LIST)) {
      if (this.evPrev[e] === OFF_LIST) this.evAppend(e);
      else this.evUnlink(e);
    }
  }

  // ---------------------------------------------------------------------------
  // Timer, removal and inspection

  /** Removes every confirmed entry whose timeout has run out; returns how many. */
  expire(now: number): number {
    let n = 0;
    const cap = this.cap;
    for (let e = 0; e < cap; e++) {
      if (this.use[e] === USE_CONFIRMED && this.expires[e] <= now) {
        this.remove(e);
        n++;
      }
    }
    this.expired += n;
    return n;
  }

  /** Releases every pending entry (their packets are gone); returns how many. */
  releasePending(): number {
    let n = 0;
    for (let e = 0; e < this.cap && this.pending > 0; e++) {
      if (this.use[e] === USE_PENDING) {
        this.release(e);
        n++;
      }
    }
    return n;
  }

  /** Removes every confirmed entry (`conntrack -F`); returns how many. */
  flush(): number {
    let n = 0;
    for (let e = 0; e < this.cap; e++) {
      if (this.use[e] === USE_CONFIRMED) {
        this.remove(e);
        n++;
      }
    }
    return n;
  }

  /**
   * Removes the connection one of whose tuples (original or reply) is the one given
   * (`conntrack -D` with a whole tuple); false when there is none (or it had expired).
   * For ICMP echo both ports are the identifier.
   */
  deleteTuple(proto: number, src: number, sport: number, dst: number, dport: number, now: number): boolean {
    const t = this.find(proto, src, sport, dst, dport, MATCH_ANY, now);
    if (t < 0) return false;
    this.remove(t >> 1);
    return true;
  }

  /** Entry slots allocated so far: entry indices are below this. */
  get capacity(): number {
    return this.cap;
  }

  /** Is entry e confirmed and not timed out at `now`? */
  isLive(e: number, now: number): boolean {
    return this.use[e] === USE_CONFIRMED && this.expires[e] > now;
  }

  /** Live confirmed entries, for callers that inspect them (services' connection counts). */
  forEachLive(now: number, fn: (e: number) => void): void {
    const cap = this.cap;
    for (let e = 0; e < cap; e++) if (this.isLive(e, now)) fn(e);
  }
}
