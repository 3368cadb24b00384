/**
 * The path-MTU probe of one mesh connection: the largest IPv4 datagram that crosses the
 * underlay between two peers unfragmented, found by sending probes (heartbeats padded
 * to a size, with DF set: the sleeve socket uses IP_PMTUDISC_DO) and seeing which come
 * back acknowledged — packetization-layer PMTU discovery in the manner of RFC 4821,
 * which needs no ICMP from the path (a bridge that drops an oversized frame sends none).
 * No sockets here: the agent sends what poll() returns and reports acks and local
 * refusals (EMSGSIZE: the kernel already knows the datagram is too big).
 *
 * Sizes are IP datagram sizes (UDP payload + 28), the PMTU itself. The search keeps
 * `lo`, a size known to pass (at first `min`, 576: the smallest underlay the mesh takes;
 * the 16-byte heartbeats that made the connection established passed), and `hi`, the
 * largest size not yet known to fail (at first `max`, the configured underlay MTU).
 * The first round sends `max` alone (most paths carry it); if it is lost, each round
 * sends `perRound` sizes spread over (lo, hi], the largest first — heartbeats of
 * decreasing size, all at once. Every probe goes `copies` times so one lost datagram
 * does not lower the PMTU. The round ends when its largest size is acked, when every size is
 * acked or refused, or after `roundMs`; then lo = the largest size acked and hi = the
 * smallest size lost above it, minus one. When lo = hi the PMTU is lo: at most
 * 1 + ceil(log_(perRound+1)(max - min)) rounds, 5 for 576..1500 with 8 per round.
 *
 * Once found, the PMTU is verified every `verifyMs` (copies of one probe at the PMTU);
 * two verifications in a row that get no ack start a new search (the path shrank), and
 * a new search runs every `researchMs` anyway (the path may have grown). The PMTU found
 * stays in force while a later search runs, and changes only when it ends. The agent
 * calls restart() when the connection's path changes (established again after it was
 * pending).
 */

export interface PmtuOptions {
  /** The largest size tried: the configured underlay MTU. */
  max: number;
  /** A size assumed to pass (576). */
  min?: number;
  /** Sizes per round (8). */
  perRound?: number;
  /** Copies of each probe (2). */
  copies?: number;
  /** How long a round waits for acks (1000 ms). */
  roundMs?: number;
  /** Verification interval once found (5000 ms). */
  verifyMs?: number;
  /** A full search again after this long (60 s). */
  researchMs?: number;
}

export interface PmtuProbeMsg {
  seq: number;
  size: number;
}

export type PmtuState = "searching" | "verifying";

export const PMTU_MIN = 576;
const RECENT = 64;

export class PmtuProbe {
  /** The PMTU found (IP bytes); null until the first search ends. */
  pmtu: number | null = null;
  state: PmtuState = "searching";
  readonly max: number;
  readonly min: number;
  private readonly perRound: number;
  private readonly copies: number;
  private readonly roundMs: number;
  private readonly verifyMs: number;
  private readonly researchMs: number;
  private lo: number;
  private hi: number;
  private seq = 0;
  /** Probes in flight: seq -> size. */
  private readonly outstanding = new Map<number, number>();
  /** This round's sizes: size -> copies not yet refused; and the sizes acked. */
  private readonly roundSizes = new Map<number, number>();
  private readonly acked = new Set<number>();
  private inRound = false;
  private triedMax = false;
  private roundEnd = 0;
  private nextVerify = 0;
  private nextResearch = 0;
  private verifyFailures = 0;
  /** Counters for `show mesh`. */
  searches = 0;
  probesSent = 0;
  acks = 0;
  /** Acks of a probe whose round had ended (the round settled before they came). */
  lateAcks = 0;
  /** Acks for no probe we sent (a wrong sequence number or size, a duplicate). */
  strayAcks = 0;
  /** The last RECENT probes sent (seq -> size), to tell a late ack from a stray one. */
  private readonly recent = new Map<number, number>();

  constructor(opts: PmtuOptions) {
    this.max = opts.max;
    this.min = Math.min(opts.min ?? PMTU_MIN, opts.max);
    this.perRound = Math.max(1, opts.perRound ?? 8);
    this.copies = Math.max(1, opts.copies ?? 2);
    this.roundMs = opts.roundMs ?? 1000;
    this.verifyMs = opts.verifyMs ?? 5000;
    this.researchMs = opts.researchMs ?? 60_000;
    this.lo = this.min;
    this.hi = this.max;
    this.searches = 1;
  }

  /** A new search from scratch (the PMTU found so far stays until it ends). */
  restart(): void {
    this.state = "searching";
    this.lo = this.min;
    this.hi = this.max;
    this.inRound = false;
    this.outstanding.clear();
    this.roundSizes.clear();
    this.acked.clear();
    this.verifyFailures = 0;
    this.triedMax = false;
    this.searches++;
  }

  /** The probes to send now (often none); ends rounds whose time is up. */
  poll(now: number): PmtuProbeMsg[] {
    if (this.inRound && (now >= this.roundEnd || this.roundSettled())) this.endRound(now);
    if (this.inRound) return [];
    if (this.state === "verifying") {
      if (now >= this.nextResearch) this.restart();
      else if (now >= this.nextVerify) return this.startRound(now, [this.pmtu as number]);
      else return [];
    }
    if (this.lo >= this.hi) {
      this.found(now);
      return [];
    }
    // A search starts with the largest size alone (most paths carry it: one round, two
    // datagrams); only when it is lost are the sizes below spread over the range.
    if (this.hi === this.max && this.lo === this.min && !this.triedMax) {
      this.triedMax = true;
      return this.startRound(now, [this.max]);
    }
    const n = Math.min(this.perRound, this.hi - this.lo);
    const sizes: number[] = [];
    for (let i = n; i >= 1; i--) sizes.push(this.lo + Math.ceil(((this.hi - this.lo) * i) / n));
    return this.startRound(now, sizes);
  }

  /**
   * An ack for probe `seq` that arrived as a datagram of `size` bytes: true when it
   * is one of our recent probes (counted, and used when its round is still open),
   * false when it matches none (counted as stray).
   */
  ack(seq: number, size: number): boolean {
    const want = this.outstanding.get(seq);
    if (want === undefined || want !== size) {
      if (want === undefined && this.recent.get(seq) === size) {
        this.recent.delete(seq);
        this.lateAcks++;
        return true;
      }
      this.strayAcks++;
      return false;
    }
    this.outstanding.delete(seq);
    this.recent.delete(seq);
    this.acks++;
    this.acked.add(size);
    return true;
  }

  /** The kernel refused to send probe `seq` (EMSGSIZE: above the MTU it knows). */
  refused(seq: number): void {
    const size = this.outstanding.get(seq);
    if (size === undefined) return;
    this.outstanding.delete(seq);
    const left = (this.roundSizes.get(size) ?? 1) - 1;
    this.roundSizes.set(size, left);
  }

  private startRound(now: number, sizes: number[]): PmtuProbeMsg[] {
    const out: PmtuProbeMsg[] = [];
    this.roundSizes.clear();
    this.acked.clear();
    this.outstanding.clear();
    for (const size of sizes) {
      this.roundSizes.set(size, this.copies);
      for (let k = 0; k < this.copies; k++) {
        this.seq = (this.seq + 1) >>> 0;
        this.outstanding.set(this.seq, size);
        this.recent.set(this.seq, size);
        out.push({ seq: this.seq, size });
      }
    }
    this.probesSent += out.length;
    // Maps iterate in insertion order: the oldest go first.
    for (const k of this.recent.keys()) {
      if (this.recent.size <= RECENT) break;
      this.recent.delete(k);
    }
    this.inRound = true;
    this.roundEnd = now + this.roundMs;
    return out;
  }

  /** Nothing left to learn from this round: its largest size acked, or every size acked or refused. */
  private roundSettled(): boolean {
    let largest = 0;
    let open = false;
    for (const [size, left] of this.roundSizes) {
      if (size > largest) largest = size;
      if (!this.acked.has(size) && left > 0) open = true;
    }
    return this.acked.has(largest) || !open;
  }

  private endRound(now: number): void {
    this.inRound = false;
    this.outstanding.clear();
    if (this.state === "verifying") {
      if (this.acked.size > 0) {
        this.verifyFailures = 0;
        this.nextVerify = now + this.verifyMs;
      } else if (++this.verifyFailures >= 2) this.restart();
      // One failure: poll() verifies again at once (nextVerify is in the past).
      return;
    }
    let best = this.lo;
    for (const s of this.acked) if (s > best) best = s;
    let lostAbove = this.hi + 1;
    for (const s of this.roundSizes.keys()) if (s > best && !this.acked.has(s) && s < lostAbove) lostAbove = s;
    this.lo = best;
    this.hi = Math.max(best, lostAbove - 1);
    if (this.lo >= this.hi) this.found(now);
  }

  private found(now: number): void {
    this.pmtu = this.lo;
    this.state = "verifying";
    this.verifyFailures = 0;
    this.nextVerify = now + this.verifyMs;
    this.nextResearch = now + this.researchMs;
  }
}

/** What the probes need of the sleeve port. */
export interface PmtuPort {
  readonly underlayMtu: number;
  sendProbe(addr: string, port: number, destShort: number, seq: number, size: number): boolean;
  setPathMtu(pathMtu: number): void;
}

/**
 * The probes of a peer's connections (one per neighbour with an established
 * connection), driven by the agent's timer, and the mesh's path MTU: the smallest PMTU
 * of any connection in the view — ours as measured, the others' as their peers announce
 * them — so a frame that fits the mesh MTU fits every hop, relays included.
 */
export class MeshPmtu {
  private readonly probes = new Map<string, { probe: PmtuProbe; addr: string; short: number }>();

  constructor(
    private readonly port: PmtuPort,
    private readonly udpPort: number,
    private readonly opts: Omit<PmtuOptions, "max">,
    /** Called when a connection's PMTU changed (the agent announces it and reprograms). */
    private readonly onChange: () => void,
  ) {}

  /** A connection became established: a search (a new one when it was known: its path may have changed). */
  start(peer: string, short: number, addr: string, now: number): void {
    const had = this.probes.get(peer);
    if (had !== undefined && had.addr === addr) had.probe.restart();
    else this.probes.set(peer, { probe: new PmtuProbe({ ...this.opts, max: this.port.underlayMtu }), addr, short });
    this.poll(peer, now);
  }

  /** The connection is gone (the agent re-announces and reprograms if it was established). */
  stop(peer: string): void {
    this.probes.delete(peer);
  }

  /** The PMTU found for our connection with `peer`, null while unknown. */
  pmtuOf(peer: string): number | null {
    return this.probes.get(peer)?.probe.pmtu ?? null;
  }

  probeOf(peer: string): PmtuProbe | undefined {
    return this.probes.get(peer)?.probe;
  }

  tick(now: number): void {
    for (const peer of this.probes.keys()) this.poll(peer, now);
  }

  /** A probe ack from the peer with short id `from`; false when it matches no probe of ours. */
  ack(from: number, seq: number, size: number, now: number): boolean {
    for (const [peer, p] of this.probes) {
      if (p.short !== from) continue;
      const ok = p.probe.ack(seq, size);
      this.poll(peer, now);
      return ok;
    }
    return false;
  }

  private poll(peer: string, now: number): void {
    const p = this.probes.get(peer);
    if (p === undefined) return;
    const before = p.probe.pmtu;
    // Refusals (EMSGSIZE) settle a round at once: then the next round goes now.
    for (let round = 0; round < 16; round++) {
      let refused = false;
      for (const m of p.probe.poll(now)) {
        if (this.port.sendProbe(p.addr, this.udpPort, p.short, m.seq, m.size)) continue;
        p.probe.refused(m.seq);
        refused = true;
      }
      if (!refused) break;
    }
    if (p.probe.pmtu !== before) this.onChange();
  }

  /**
   * The mesh's path MTU from our probes and the PMTUs announced in the view, into the
   * port; returns it. The configured underlay MTU while nothing is known.
   */
  apply(announced: Iterable<number>): number {
    let m = this.port.underlayMtu;
    for (const p of this.probes.values()) if (p.probe.pmtu !== null && p.probe.pmtu < m) m = p.probe.pmtu;
    for (const x of announced) if (x < m) m = x;
    this.port.setPathMtu(m);
    return m;
  }
}
