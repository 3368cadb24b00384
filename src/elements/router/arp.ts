/**
 * Arp — the router's side of ARP (RFC 826) on an interface (Linux's arp_process):
 *
 *   input()     takes every ARP frame from an interface. A valid Ethernet/IPv4 packet
 *               from a unicast sender first updates the neighbour cache (RFC 826's merge,
 *               before looking at the opcode), on the interface's own subnets only and
 *               never for one of the router's addresses: an entry is made only by a
 *               request for one of its addresses (that sender will talk to it); a reply
 *               or someone else's request only updates an entry that exists (Linux's
 *               arp_accept=0: RFC 826 would add it, which lets any station plant
 *               entries). A reply to the router's MAC confirms the entry (REACHABLE).
 *               An entry that resolves sends what waited for it (Output.sendQueued).
 *               Then a request is answered, out of the interface it came in on, when it
 *               asks for any of the router's addresses, on whichever interface (Linux's
 *               arp_ignore=0 default: addresses belong to the host, not the interface),
 *               or, with proxyArp, for an address routed out of another interface
 *               (RFC 1027).
 *   announce()  gratuitous ARP for every address (RFC 5227 §3), when interfaces come up.
 * Requests for next hops (resolution, retries, unicast probes) are Output.arpRequest().
 *
 * Counters: arpIn (deliver: every ARP frame ends here), badArp, arpRepliesSent,
 * arpRequestsSent (events).
 */
import { ARP_OPER_REPLY, ARP_OPER_REQUEST, arpCheck, arpGetOper, arpGetSha, arpGetSpa, arpGetTpa, emitArpFrame } from "../../wire/arp.js";
import { ETH_HEADER_LEN, ethGetDstAddr } from "../../wire/ethernet.js";
import { MAC_BROADCAST, macIsUnicast } from "../../wire/mac.js";
import { CHECK_OK } from "../../wire/reason.js";
import { C } from "./counters.js";
import type { Output } from "./output.js";
import { onSubnet, type RouterInterface, type RouterState } from "./state.js";

export class Arp {
  constructor(
    private readonly s: RouterState,
    private readonly out: Output,
  ) {}

  /** The ARP frame at `buf[off, off + len)`, received on `ifc`. */
  input(ifc: RouterInterface, buf: Buffer, off: number, len: number, now: number): void {
    const s = this.s;
    s.c[C.arpIn]++;
    const a = off + ETH_HEADER_LEN;
    if (arpCheck(buf, a, len - ETH_HEADER_LEN) !== CHECK_OK) {
      s.c[C.badArp]++;
      return;
    }
    const oper = arpGetOper(buf, a);
    const sha = arpGetSha(buf, a);
    const spa = arpGetSpa(buf, a);
    const tpa = arpGetTpa(buf, a);
    if (!macIsUnicast(sha)) {
      s.c[C.badArp]++;
      return;
    }
    const mine = s.local.has(tpa | 0);
    if (spa !== 0 && onSubnet(ifc, spa) && !s.local.has(spa | 0)) {
      const confirmed = oper === ARP_OPER_REPLY && ethGetDstAddr(buf, off) === ifc.mac;
      const ready = s.neigh.learn(ifc.index, spa, sha, now, confirmed, mine && oper === ARP_OPER_REQUEST);
      if (ready !== null) this.out.sendQueued(ready, now);
    }
    if (oper !== ARP_OPER_REQUEST) return;
    let answer = mine;
    if (!answer && ifc.proxyArp && spa !== tpa) {
      const r = s.fib.lookup(tpa);
      answer = r >= 0 && s.routeIf[r] !== ifc.index;
    }
    if (!answer) return;
    const frame = this.out.alloc();
    if (frame < 0) return;
    ifc.port.inq.push(frame, emitArpFrame(s.pool, frame, sha, ifc.mac, ARP_OPER_REPLY, ifc.mac, tpa, sha, spa));
    s.c[C.arpRepliesSent]++;
  }

  /** Gratuitous ARP for every address (RFC 5227 §3 announcement), when interfaces come up. */
  announce(): void {
    for (const ifc of this.s.ifaces) for (const a of ifc.addrs) if (!this.out.arpRequestOut(ifc, MAC_BROADCAST, a, a)) return;
  }
}
