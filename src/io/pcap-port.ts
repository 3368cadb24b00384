/**
 * PcapPort: an existing Linux interface (a veth end, a NIC) as a tapnet port, through
 * libpcap (the `cap` package): a PF_PACKET socket bound to the interface, in
 * promiscuous mode, with a BPF filter.
 *
 * Receive. cap emits one 'packet' event per frame, each from its own MakeCallback,
 * and overwrites one buffer every time. That buffer is a "bounce" area inside this
 * port's pool region, so each frame is moved into the next receive slot with
 * copyWithin (no allocation; Buffer.copy between two buffers makes a view per call on
 * Node 20), HEADROOM bytes into the slot as on a TAP port. The frames gathered during
 * one turn of the event loop go through the engine as one batch from a setImmediate
 * (microtasks would run after every frame); when the slots fill up first, the batch
 * goes at once and a new one starts.
 *
 * Direction. The port must not see what was sent out of the interface. Its own
 * transmissions never come back to it: the kernel does not loop a packet socket's
 * frames back to that socket (skb_loop_sk). What the kernel of the namespace sends out
 * of the interface carries the interface's MAC, so the default BPF filter is
 * `not ether src <the interface's MAC>`, run in the kernel. libpcap's `inbound` would
 * be exact (SKF_AD_PKTTYPE), but libpcap 1.10 filters the first frame after
 * pcap_setfilter again in userland, where the packet-type load cannot be evaluated, so
 * with `inbound` the first frame received after open is always lost (measured on this
 * kernel with a veth; libpcap issues #1254 / #1482). The MAC filter has no such load.
 * What it lets through that `inbound` would not: frames that another process's packet
 * socket sends out of the interface with a foreign source MAC (no lab does that). The
 * exact fix is PACKET_IGNORE_OUTGOING on the socket, which cap cannot set. `filter`
 * replaces the default.
 *
 * Transmit. cap.send(buffer, length) sends from the start of a Buffer, so each frame
 * is moved into the same bounce area with copyWithin and sent from there: one syscall
 * per frame (pcap_sendpacket), no allocation. A frame larger than the bounce area
 * (bigger than a slot) is sent from a view made for it.
 *
 * Pool region: batchSize slots of slotSize bytes, then one slot-sized bounce area;
 * rxRegionBytes() includes the bounce area so the engine sizes the pool for it.
 *
 * Counters: the Port counters, plus
 *   rxTooBig  - frames longer than a slot's room (slotSize - HEADROOM), or cut by
 *               cap because they did not fit the bounce area: dropped (also rxDrops).
 *               On a veth these include the peer's TSO/GSO super-frames (up to 64 KiB;
 *               a packet socket sees them unsegmented): the peer's end needs
 *               `ethtool -K PEER tso off gso off` for TCP to cross a pcap port.
 *   txRefused - frames the kernel refused (send threw: EMSGSIZE, ENETDOWN, ENOBUFS):
 *               their length is set to 0 and they count as txDrops
 * and lastTxError, the message of the latest refusal. Kernel-side drops (a full
 * capture ring) are not visible: cap does not expose pcap_stats().
 *
 * The interface must be in the process's network namespace (cap opens it by name).
 * info() reports the MAC and MTU read from /sys/class/net/IF at open.
 *
 * Hazard: cap 0.2.1 asserts that its poll callback never reports an error, and the
 * kernel raises one on the packet socket (ENETDOWN) when the interface is set down
 * or deleted: the whole process aborts. Close the port (stop the engine) before
 * taking its interface down or deleting it or its namespace. Loss of carrier (the
 * veth peer going down) is harmless.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import type { TxQueue } from "../core/batch.js";
import type { PacketPool } from "../core/pool.js";
import { HEADROOM, Port, type RxHandler } from "../core/port.js";

export interface PcapPortOptions {
  batchSize?: number;
  slotSize?: number;
  /** libpcap's kernel ring, in bytes (default 4 MiB). */
  bufferSize?: number;
  /** BPF filter (default: `not ether src <the interface's MAC>`, see above). */
  filter?: string;
}

/** What this file uses of cap's native Cap object. */
interface CapHandle {
  open(device: string, filter: string, bufSize: number, buffer: Buffer): string;
  send(buffer: Buffer, nBytes?: number): void;
  close(): boolean;
  on(event: "packet", fn: (nbytes: number, truncated: boolean) => void): unknown;
  removeAllListeners(event?: string): unknown;
}

let capCtor: (new () => CapHandle) | null = null;

function loadCap(): new () => CapHandle {
  if (capCtor === null) {
    const require = createRequire(import.meta.url);
    capCtor = (require("cap") as { Cap: new () => CapHandle }).Cap;
  }
  return capCtor;
}

/**
 * Every Cap object ever opened stays referenced for the life of the process, with the
 * buffer it writes frames into. cap 0.2.1 keeps only a raw pointer to that buffer: if
 * the buffer were collected while the handle is open, the next frame would be written
 * into freed memory (seen: a segfault on the first frame). Its destructor is unsafe
 * too: after a failed open() it calls uv_poll_stop on a handle that was never
 * initialised and Unref() on an object that was never Ref'd (seen: a segfault at the
 * next GC), and close() only stops its uv_poll handle without uv_close(), so freeing
 * a closed Cap would leave a dangling libuv handle. A few hundred bytes per opened
 * port is the price of never running that code.
 */
const pinnedCaps: Array<{ cap: CapHandle; buf: Buffer }> = [];

/**
 * Throws unless `ifname` is a Linux interface name: at most 15 bytes, no '/', ':' or white
 * space (it also becomes part of a /sys path). `what` names the port in the message.
 */
export function checkIfname(what: string, ifname: string): void {
  if (!/^[^\s/:]{1,15}$/.test(ifname) || ifname === "." || ifname === "..") {
    throw new RangeError(`${what}: '${ifname}' is not an interface name`);
  }
}

/** Parses "aa:bb:cc:dd:ee:ff" into a 48-bit number (0 when malformed). */
export function parseMac(s: string): number {
  const hex = s.trim().replace(/:/g, "");
  if (!/^[0-9a-fA-F]{12}$/.test(hex)) return 0;
  return parseInt(hex, 16);
}

/** Formats a 48-bit MAC as "aa:bb:cc:dd:ee:ff". */
export function formatMac(mac: number): string {
  const hex = mac.toString(16).padStart(12, "0");
  return hex.replace(/(..)(?!$)/g, "$1:");
}

export class PcapPort extends Port {
  readonly kind = "pcap";
  readonly bufferSize: number;
  /** The BPF filter in use (set at open). */
  filter = "";
  private readonly filterOption: string | undefined;
  rxTooBig = 0;
  txRefused = 0;
  lastTxError = "";
  private cap: CapHandle | null = null;
  private poolBuf: Buffer | null = null;
  private rxBase = 0;
  private bounceBase = 0;
  /** View of the bounce area: cap's receive buffer and the send staging buffer. */
  private bounce: Buffer | null = null;
  private pending = 0;
  private immediate: NodeJS.Immediate | null = null;
  private mac = 0;
  private mtu = 0;

  constructor(
    name: string,
    readonly ifname: string,
    opts: PcapPortOptions = {},
  ) {
    super(name, opts.batchSize, opts.slotSize);
    checkIfname(`pcap port '${name}'`, ifname);
    if (this.slotSize <= HEADROOM + 14) {
      throw new RangeError(`pcap port '${name}': slotSize ${this.slotSize} leaves no room for a frame`);
    }
    this.bufferSize = opts.bufferSize ?? 4 * 1024 * 1024;
    this.filterOption = opts.filter;
  }

  /** Largest frame the port receives. */
  get room(): number {
    return this.slotSize - HEADROOM;
  }

  get isOpen(): boolean {
    return this.cap !== null;
  }

  override rxRegionBytes(): number {
    return this.batchSize * this.slotSize + this.slotSize;
  }

  open(pool: PacketPool, onRx: RxHandler): void {
    if (this.cap !== null) throw new Error(`pcap port '${this.name}' is already open`);
    // Reading sysfs first also keeps a missing interface away from cap's failed-open
    // path (see pinnedCaps).
    const sys = `/sys/class/net/${this.ifname}`;
    let mac: number;
    let mtu: number;
    try {
      mac = parseMac(readFileSync(`${sys}/address`, "utf8"));
      mtu = parseInt(readFileSync(`${sys}/mtu`, "utf8"), 10) || 0;
    } catch {
      throw new Error(`pcap port '${this.name}': no interface '${this.ifname}' in this network namespace`);
    }
    const filter = this.filterOption ?? (mac !== 0 ? `not ether src ${formatMac(mac)}` : "");
    const Cap = loadCap();
    const base = pool.region(this.rxRegionBytes(), `pcap port '${this.name}' rx`);
    const bounceBase = base + this.batchSize * this.slotSize;
    const bounce = pool.buf.subarray(bounceBase, bounceBase + this.slotSize);
    const cap = new Cap();
    pinnedCaps.push({ cap, buf: bounce });
    let linkType: string;
    try {
      linkType = cap.open(this.ifname, filter, this.bufferSize, bounce);
    } catch (e) {
      // Never close() a Cap whose open() failed: see pinnedCaps.
      throw new Error(`pcap port '${this.name}': cannot capture on '${this.ifname}': ${(e as Error).message}`);
    }
    if (linkType !== "ETHERNET") {
      cap.close();
      throw new Error(`pcap port '${this.name}': '${this.ifname}' has link type ${linkType}, not Ethernet`);
    }
    this.mac = mac;
    this.mtu = mtu;
    this.filter = filter;
    this.poolBuf = pool.buf;
    this.rxBase = base;
    this.bounceBase = bounceBase;
    this.bounce = bounce;
    this.pending = 0;
    this.onRx = onRx;
    this.cap = cap;
    cap.on("packet", this.onPacket);
  }

  close(): void {
    const cap = this.cap;
    if (cap === null) return;
    this.cap = null;
    this.onRx = null;
    if (this.immediate !== null) {
      clearImmediate(this.immediate);
      this.immediate = null;
    }
    this.pending = 0;
    cap.removeAllListeners("packet");
    try {
      cap.close();
    } catch {
      // Closing is best effort; the Cap stays pinned either way.
    }
  }

  private readonly onPacket = (nbytes: number, truncated: boolean): void => {
    if (this.cap === null) return;
    if (truncated || nbytes > this.slotSize - HEADROOM) {
      this.rxTooBig++;
      this.rxDrops++;
      return;
    }
    const n = this.pending;
    const dst = this.rxBase + n * this.slotSize + HEADROOM;
    (this.poolBuf as Buffer).copyWithin(dst, this.bounceBase, this.bounceBase + nbytes);
    this.rx.offsets[n] = dst;
    this.rx.lengths[n] = nbytes;
    this.pending = n + 1;
    if (n + 1 === this.batchSize) {
      this.deliver();
    } else if (this.immediate === null) {
      this.immediate = setImmediate(this.onImmediate);
    }
  };

  private readonly onImmediate = (): void => {
    this.immediate = null;
    this.deliver();
  };

  private deliver(): void {
    this.rx.count = this.pending;
    this.pending = 0;
    this.deliverBatch(this.poolBuf as Buffer, this.rx);
  }

  protected transmit(pool: Buffer, q: TxQueue): number {
    const n = q.count;
    const cap = this.cap;
    if (cap === null) {
      for (let i = 0; i < n; i++) q.lengths[i] = 0;
      this.txRefused += n;
      this.lastTxError = "port is closed";
      return 0;
    }
    const bounce = this.bounce as Buffer;
    const bounceBase = this.bounceBase;
    const room = this.slotSize;
    let sent = 0;
    for (let i = 0; i < n; i++) {
      const off = q.offsets[i];
      const len = q.lengths[i];
      try {
        if (len <= room) {
          pool.copyWithin(bounceBase, off, off + len);
          cap.send(bounce, len);
        } else {
          cap.send(pool.subarray(off, off + len), len);
        }
        sent++;
      } catch (e) {
        q.lengths[i] = 0;
        this.txRefused++;
        this.lastTxError = e instanceof Error ? e.message : String(e);
      }
    }
    return sent;
  }

  info(): { mac: number; mtu: number; ifname: string } {
    return { mac: this.mac, mtu: this.mtu, ifname: this.ifname };
  }
}
