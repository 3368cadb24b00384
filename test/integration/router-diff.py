#!/usr/bin/python3
"""
router-diff.py -- the packet side of the differential router test
(router-diff.test.ts): the same crafted IPv4 packets (scapy) go through a tapnet router
and through a Linux router with the same addressing; the test compares what each lets
through and what each answers.

  router-diff.py cases PHASE
      prints the phase's cases as JSON: name, what it shows, its source address
  router-diff.py send IFACE GWMAC PHASE
      (in h1) opens a capture on IFACE, sends every case of PHASE to the router's MAC
      GWMAC, then a marker echo to h2 through the router, and stops when the marker's
      reply is back (everything the router did about the cases is in by then); cases
      that wait for something slow (an ARP failure) wait for it, bounded. Prints each
      frame received on IFACE as a JSON line {"t": seconds, "hex": frame}.
  router-diff.py capture IFACE
      (in h2, h3) prints "ready", then every frame received on IFACE as JSON lines
      until a line arrives on stdin; it drains what the socket holds first.
  router-diff.py burst IFACE GWMAC SRC N SECONDS
      N echo requests with TTL 1 from SRC in SECONDS, then counts the time-exceeded
      answers for 1.5 s: prints {"sent": N, "took": s, "answers": k}.

Each case speaks from its own address of h1 (10.0.1.100 + its number), so each has its
own per-destination ICMP rate limit bucket in both routers, and what comes back is
told apart by address. Packets from a case that cannot carry its address (martian
sources) are told apart by their IP identification: 0xC000 | case << 4 | packet.
"""
import json
import select
import socket
import struct
import sys
import time

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
GW1, GW2 = "10.0.1.1", "10.0.2.1"
H1, H2, H3 = "10.0.1.10", "10.0.2.10", "10.0.1.20"
FAR = "10.0.3.5"  # routed via h3 (10.0.1.20): the redirect cases
SILENT = "10.0.2.99"  # on eth2's subnet, nobody answers ARP
MARK_ID = 0xBEEF
FIRST_CASE_ADDR = 100

CASES = []


def case(name, phase=1, wait=None):
    """Registers a case: a function (k, src) -> list of IPv4 packets (bytes) or Ethernet frames (Ether)."""

    def reg(fn):
        CASES.append({"name": name, "phase": phase, "doc": (fn.__doc__ or "").strip(), "fn": fn, "wait": wait})
        return fn

    return reg


def ident(k, j=0):
    return 0xC000 | (k << 4) | (j & 0xF)


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def fix(h):
    """Recomputes the IPv4 header checksum of bytearray h (IHL from h)."""
    hl = (h[0] & 15) * 4
    h[10:12] = b"\0\0"
    h[10:12] = struct.pack("!H", csum(bytes(h[:hl])))
    return h


def with_options(pkt, opts):
    """The packet with `opts` (a multiple of 4 bytes) after its 20-byte header; IHL, length, checksum fixed."""
    b = bytearray(bytes(pkt))
    assert len(opts) % 4 == 0 and (b[0] & 15) == 5
    out = b[:20] + opts + b[20:]
    out[0] = 0x40 | ((20 + len(opts)) // 4)
    out[2:4] = struct.pack("!H", len(out))
    return bytes(fix(out))


def echo(src, dst, k, j=0, ttl=64, tos=0, df=False, size=8, icmp_id=None, seq=None):
    return IP(src=src, dst=dst, id=ident(k, j), ttl=ttl, tos=tos, flags="DF" if df else 0) / ICMP(
        id=icmp_id if icmp_id is not None else 0x1000 + k, seq=seq if seq is not None else j + 1
    ) / (bytes(range(256)) * 256)[:size]


def udp(src, dst, k, j=0, ttl=64, size=16, dport=33434):
    return IP(src=src, dst=dst, id=ident(k, j), ttl=ttl) / UDP(sport=40000 + k, dport=dport) / (b"u" * size)


def rr(slots, ptr=4, filled=()):
    """Record Route (RFC 791): type 7, `slots` addresses, pointer; padded with EOL to 4 bytes."""
    body = b"".join(socket.inet_aton(a) for a in filled) + b"\0" * 4 * (slots - len(filled))
    o = bytes([7, 3 + 4 * slots, ptr]) + body
    return o + b"\0" * (-len(o) % 4)


def ts(flag, entries, ptr=5, overflow=0, addrs=()):
    """Timestamp (RFC 791): type 68; `entries` slots of 4 (flag 0) or 8 bytes (flags 1, 3)."""
    size = 4 if flag == 0 else 8
    body = bytearray(size * entries)
    for i, a in enumerate(addrs):
        body[i * 8 : i * 8 + 4] = socket.inet_aton(a)
    o = bytes([68, 4 + len(body), ptr, (overflow << 4) | flag]) + bytes(body)
    return o + b"\0" * (-len(o) % 4)


def srr(kind, route, ptr=4):
    """Loose (131) or strict (137) source route, `route` the addresses still to visit from ptr."""
    o = bytes([kind, 3 + 4 * len(route), ptr]) + b"".join(socket.inet_aton(a) for a in route)
    return b"\1" + o  # a NOP in front: the option list stays a multiple of 4 for 2 hops


def fragments(pkt, sizes, later=None):
    """
    Cuts the IPv4 packet into fragments carrying `sizes` bytes of data each (the last
    takes the rest). `later`: options bytes of the later fragments (None: as the first).
    """
    b = bytes(pkt)
    hl = (b[0] & 15) * 4
    head, data = bytearray(b[:hl]), b[hl:]
    out, off = [], 0
    for i, n in enumerate(sizes + [len(data)]):
        piece = data[off : off + n] if i < len(sizes) else data[off:]
        if not piece:
            break
        h = bytearray(head) if i == 0 or later is None else bytearray(head[:20]) + bytearray(later)
        h[0] = 0x40 | (len(h) // 4)
        last = off + len(piece) >= len(data)
        flags = (struct.unpack("!H", bytes(head[6:8]))[0] & 0x4000) | (0 if last else 0x2000)
        h[6:8] = struct.pack("!H", flags | (off // 8))
        h[2:4] = struct.pack("!H", len(h) + len(piece))
        out.append(bytes(fix(h)) + piece)
        off += len(piece)
    return out


def tweak(pkt, **f):
    """The packet's bytes with header fields overwritten (checksum recomputed unless given)."""
    b = bytearray(bytes(pkt))
    if "version" in f:
        b[0] = (f["version"] << 4) | (b[0] & 15)
    if "ihl" in f:
        b[0] = (b[0] & 0xF0) | f["ihl"]
    if "total" in f:
        b[2:4] = struct.pack("!H", f["total"])
    b[10:12] = b"\0\0"
    b[10:12] = struct.pack("!H", f["checksum"] if "checksum" in f else csum(bytes(b[:20])))
    return bytes(b)


# --------------------------------------------------------------------------------------
# Phase 1: the routers as Linux sets them up by default (accept_source_route 0,
# send_redirects 1).


@case("echo-far")
def _(k, s):
    """an echo request through the router to h2: forwarded with TTL 63, h2's reply comes back"""
    return [echo(s, H2, k)]


@case("ttl1")
def _(k, s):
    """TTL 1 toward h2: time exceeded 11/0 quoting the packet"""
    return [echo(s, H2, k, ttl=1)]


@case("ttl0")
def _(k, s):
    """TTL 0 toward h2: time exceeded"""
    return [echo(s, H2, k, ttl=0)]


@case("ttl1-tos-b8")
def _(k, s):
    """TTL 1 with TOS 0xb8 (EF): the error's TOS keeps the TOS bits and sets precedence 6"""
    return [echo(s, H2, k, ttl=1, tos=0xB8)]


@case("ttl1-tos-ff")
def _(k, s):
    """TTL 1 with TOS 0xff: ECN bits and precedence of the error"""
    return [echo(s, H2, k, ttl=1, tos=0xFF)]


@case("ttl1-df")
def _(k, s):
    """TTL 1 with DF: the error itself carries no DF"""
    return [echo(s, H2, k, ttl=1, df=True)]


@case("ttl1-big")
def _(k, s):
    """TTL 1, a 1028-byte UDP datagram: the quote stops at 576 bytes in all"""
    return [udp(s, H2, k, ttl=1, size=1000)]


@case("ttl-burst")
def _(k, s):
    """ten TTL-1 packets at once from one sender: six time exceeded (per-destination bucket, burst 6)"""
    return [echo(s, H2, k, j, ttl=1) for j in range(10)]


@case("mtu-df")
def _(k, s):
    """1450 bytes with DF toward eth2 (MTU 1400): fragmentation needed 3/4, next-hop MTU 1400"""
    return [echo(s, H2, k, df=True, size=1450 - 28)]


@case("mtu-frag")
def _(k, s):
    """1500 bytes without DF toward eth2 (MTU 1400): fragmented; h2's reply comes back"""
    return [echo(s, H2, k, size=1500 - 28)]


@case("frags-fwd")
def _(k, s):
    """a UDP datagram in three fragments, the last first: each forwarded as it is"""
    f = fragments(udp(s, H2, k, size=2000), [1000, 504])
    return [f[2], f[0], f[1]]


@case("frags-refrag")
def _(k, s):
    """fragments of 1480 bytes (too big for eth2): each cut again at 1400"""
    return fragments(udp(s, H2, k, size=2900), [1480])


@case("noroute")
def _(k, s):
    """no route to 10.99.0.1: net unreachable 3/0"""
    return [echo(s, "10.99.0.1", k)]


@case("noroute-burst")
def _(k, s):
    """five packets without a route: Linux's route error limit (1 s per error, burst 5) and the ICMP limit share one bucket"""
    return [echo(s, "10.99.0.2", k, j) for j in range(5)]


@case("martian-src-loopback")
def _(k, s):
    """source 127.0.0.1: dropped (RFC 1812 5.3.7)"""
    return [echo("127.0.0.1", H2, k)]


@case("martian-src-zero")
def _(k, s):
    """source 0.0.0.0: dropped"""
    return [echo("0.0.0.0", H2, k)]


@case("martian-src-router")
def _(k, s):
    """the router's own address as source: dropped"""
    return [echo(GW1, H2, k)]


@case("martian-src-multicast")
def _(k, s):
    """a multicast source: dropped"""
    return [echo("224.0.0.1", H2, k)]


@case("martian-dst-zero")
def _(k, s):
    """destination in 0/8: dropped"""
    return [echo(s, "0.1.2.3", k)]


@case("martian-dst-loopback")
def _(k, s):
    """destination 127.0.0.1: dropped"""
    return [echo(s, "127.0.0.1", k)]


@case("martian-dst-class-e")
def _(k, s):
    """destination 240.0.0.1: dropped"""
    return [echo(s, "240.0.0.1", k)]


@case("dst-directed-broadcast")
def _(k, s):
    """to eth2's subnet broadcast 10.0.2.255: not forwarded"""
    return [echo(s, "10.0.2.255", k)]


@case("dst-multicast")
def _(k, s):
    """to 224.0.0.9 in a frame to the router's MAC: not forwarded"""
    return [echo(s, "224.0.0.9", k)]


@case("bad-header")
def _(k, s):
    """bad checksum, total length past the frame or below the header, IHL 4, version 6: dropped, nothing answered"""
    p = echo(s, H2, k)
    return [
        tweak(p, checksum=0x1234),
        tweak(p, total=1500),
        tweak(p, total=12),
        tweak(p, ihl=4),
        tweak(p, version=6),
    ]


@case("error-about-error")
def _(k, s):
    """TTL 1 on an ICMP error (port unreachable): no error about an error"""
    inner = bytes(udp(H2, s, k))[:28]
    return [IP(src=s, dst=H2, id=ident(k), ttl=1) / ICMP(type=3, code=3) / inner]


@case("error-about-fragment")
def _(k, s):
    """TTL 1 on a non-initial fragment: no error"""
    return [fragments(udp(s, H2, k, ttl=1, size=64), [32])[1]]


@case("udp-local")
def _(k, s):
    """UDP to the router's near address: port unreachable from it"""
    return [udp(s, GW1, k)]


@case("udp-local-far")
def _(k, s):
    """UDP to the router's far address (traceroute -U): port unreachable from the address probed"""
    return [udp(s, GW2, k)]


@case("udp-local-burst")
def _(k, s):
    """ten UDP probes to the router: six port unreachable"""
    return [udp(s, GW1, k, j) for j in range(10)]


@case("tcp-syn-local")
def _(k, s):
    """a SYN to the router: RST|ACK, DF, IP ID 0"""
    return [IP(src=s, dst=GW1, id=ident(k), tos=0xB9) / TCP(sport=40000 + k, dport=80, flags="S", seq=1000)]


@case("tcp-syn-local-far")
def _(k, s):
    """a SYN to the router's far address: the reset comes from that address"""
    return [IP(src=s, dst=GW2, id=ident(k)) / TCP(sport=40000 + k, dport=22, flags="S", seq=1000)]


@case("tcp-ack-local")
def _(k, s):
    """an ACK with data to the router: RST with the ACK's number"""
    return [IP(src=s, dst=GW1, id=ident(k)) / TCP(sport=40000 + k, dport=80, flags="A", seq=5, ack=77) / b"data"]


@case("tcp-rst-local")
def _(k, s):
    """a RST to the router: nothing"""
    return [IP(src=s, dst=GW1, id=ident(k)) / TCP(sport=40000 + k, dport=80, flags="R", seq=5)]


@case("proto-local")
def _(k, s):
    """protocol 253 to the router: protocol unreachable 3/2"""
    return [IP(src=s, dst=GW1, id=ident(k), proto=253) / (b"p" * 12)]


@case("echo-local")
def _(k, s):
    """echo to the router with TOS 0xb8, DF and TTL 5: the reply's TOS, DF, TTL and IP ID"""
    return [echo(s, GW1, k, ttl=5, tos=0xB8, df=True)]


@case("echo-local-far")
def _(k, s):
    """echo to the router's far address: the reply comes from it"""
    return [echo(s, GW2, k)]


@case("echo-local-burst")
def _(k, s):
    """ten echo requests to the router: ten replies (echo replies are not rate-limited)"""
    return [echo(s, GW1, k, j) for j in range(10)]


@case("echo-local-frag")
def _(k, s):
    """ping -s 2000 to the router: the request in two fragments, reassembled; the reply in fragments"""
    return fragments(echo(s, GW1, k, size=2000), [1480])


@case("echo-local-broadcast")
def _(k, s):
    """echo to eth1's broadcast address: ignored (icmp_echo_ignore_broadcasts)"""
    return [echo(s, "10.0.1.255", k)]


@case("rr-far")
def _(k, s):
    """Record Route (ping -R) through the router: it records its outgoing address"""
    return [with_options(echo(s, H2, k), rr(9))]


@case("rr-far-full")
def _(k, s):
    """Record Route with no room left: forwarded unchanged"""
    return [with_options(echo(s, H2, k), rr(2, ptr=12, filled=["10.9.9.1", "10.9.9.2"]))]


@case("rr-local")
def _(k, s):
    """Record Route on an echo to the router: the reply's route"""
    return [with_options(echo(s, GW1, k), rr(9))]


@case("ts-far-tsonly")
def _(k, s):
    """Timestamp, timestamps only (flag 0): the router adds one"""
    return [with_options(echo(s, H2, k), ts(0, 9))]


@case("ts-far-tsaddr")
def _(k, s):
    """Timestamp with addresses (flag 1): the router adds its outgoing address and a timestamp"""
    return [with_options(echo(s, H2, k), ts(1, 4))]


@case("ts-far-prespec")
def _(k, s):
    """prespecified Timestamp (flag 3) naming 10.0.2.1 then h2: the router stamps its entry only"""
    return [with_options(echo(s, H2, k), ts(3, 2, addrs=[GW2, H2]))]


@case("ts-far-prespec-other")
def _(k, s):
    """prespecified Timestamp naming another address first: left alone"""
    return [with_options(echo(s, H2, k), ts(3, 2, addrs=["10.9.9.9", H2]))]


@case("ts-far-full")
def _(k, s):
    """Timestamp with no room: the overflow count goes up"""
    return [with_options(echo(s, H2, k), ts(0, 2, ptr=13, overflow=3))]


@case("ts-far-overflow15")
def _(k, s):
    """Timestamp with no room and overflow 15: parameter problem pointing at the overflow byte"""
    return [with_options(echo(s, H2, k), ts(0, 2, ptr=13, overflow=15))]


@case("ts-local")
def _(k, s):
    """Timestamp with addresses on an echo to the router"""
    return [with_options(echo(s, GW1, k), ts(1, 4))]


@case("opt-len-past-header")
def _(k, s):
    """an option whose length (39) runs past the header: parameter problem 12/0, pointer 20"""
    return [with_options(echo(s, H2, k), bytes([7, 39, 4, 0]))]


@case("opt-len-one")
def _(k, s):
    """an option of length 1: parameter problem, pointer at the option"""
    return [with_options(echo(s, H2, k), bytes([1, 7, 1, 0]))]


@case("opt-rr-pointer-3")
def _(k, s):
    """Record Route with pointer 3: parameter problem, pointer at the pointer"""
    return [with_options(echo(s, H2, k), rr(2, ptr=3))]


@case("opt-rr-twice")
def _(k, s):
    """two Record Route options: parameter problem at the second"""
    return [with_options(echo(s, H2, k), rr(1) + rr(1))]


@case("opt-bad-local")
def _(k, s):
    """a bad option on an echo to the router: parameter problem from the router's address"""
    return [with_options(echo(s, GW1, k), bytes([7, 39, 4, 0]))]


@case("opt-eol-garbage")
def _(k, s):
    """End of Option List followed by other bytes: forwarded with the bytes after it zeroed"""
    return [with_options(echo(s, H2, k), bytes([1, 0, 7, 9]))]


@case("opt-router-alert")
def _(k, s):
    """Router Alert (RFC 2113): forwarded"""
    return [with_options(echo(s, H2, k), bytes([0x94, 4, 0, 0]))]


@case("opt-unknown")
def _(k, s):
    """an option type the router does not know (30): forwarded as it is"""
    return [with_options(echo(s, H2, k), bytes([30, 4, 0xAB, 0xCD]))]


@case("opt-ttl1-rr")
def _(k, s):
    """TTL 1 with Record Route: the time exceeded, its options and its quote"""
    return [with_options(echo(s, H2, k, ttl=1), rr(3))]


@case("opt-noroute-rr")
def _(k, s):
    """no route, with Record Route"""
    return [with_options(echo(s, "10.99.0.3", k), rr(3))]


@case("opt-udp-local-rr")
def _(k, s):
    """UDP to the router's far address with Record Route: the port unreachable's options"""
    return [with_options(udp(s, GW2, k), rr(3))]


@case("opt-syn-local-rr")
def _(k, s):
    """a SYN to the router with Record Route: the reset's options"""
    return [with_options(IP(src=s, dst=GW1, id=ident(k)) / TCP(sport=40000 + k, dport=80, flags="S", seq=7), rr(3))]


@case("opt-mtu-df-rr")
def _(k, s):
    """fragmentation needed for a packet with Record Route"""
    return [with_options(echo(s, H2, k, df=True, size=1450 - 28 - 16), rr(3))]


@case("lsrr-local")
def _(k, s):
    """loose source route to the router with a hop left (h2): dropped (accept_source_route 0)"""
    return [with_options(echo(s, GW1, k), srr(131, [H2]))]


@case("ssrr-local")
def _(k, s):
    """strict source route to the router with a hop left: dropped"""
    return [with_options(echo(s, GW1, k), srr(137, [H2]))]


@case("lsrr-transit")
def _(k, s):
    """a loose source route through the router to h2 (the router not named): dropped"""
    return [with_options(echo(s, H2, k), srr(131, ["10.9.9.9"]))]


@case("opt-frags-in")
def _(k, s):
    """a fragmented datagram whose first fragment has Record Route and Timestamp, the later ones NOPs"""
    p = with_options(udp(s, H2, k, size=1200), rr(3) + ts(0, 3))
    return fragments(IP(p), [600], later=b"\1" * 32)


@case("opt-frags-in-short")
def _(k, s):
    """a fragmented datagram with Record Route in the first fragment only (later headers without options)"""
    p = with_options(udp(s, H2, k, size=1200), rr(3))
    return fragments(IP(p), [600], later=b"")


@case("opt-frags-out")
def _(k, s):
    """1500 bytes with Router Alert and Record Route, fragmented by the router: which options later fragments keep"""
    return [with_options(echo(s, H2, k, size=1500 - 28 - 20), bytes([0x94, 4, 0, 0]) + rr(3))]


@case("opt-frag-later-bad")
def _(k, s):
    """a non-initial fragment with a bad option: dropped without an error"""
    f = fragments(udp(s, H2, k, size=64), [32])[1]
    return [with_options(IP(f), bytes([7, 39, 4, 0]))]


@case("redirect")
def _(k, s):
    """to 10.0.3.5, routed via h3 on the sender's own subnet: forwarded, and redirect 5/1 (gateway 10.0.1.20)"""
    return [echo(s, FAR, k)]


@case("redirect-onlink")
def _(k, s):
    """to h3 (10.0.1.20) through the router: forwarded, and a redirect to h3 itself"""
    return [echo(s, H3, k)]


@case("redirect-burst")
def _(k, s):
    """five packets to redirect at once: one redirect (Linux backs off, 20 ms << n)"""
    return [echo(s, FAR, k, j) for j in range(5)]


@case("redirect-ttl1")
def _(k, s):
    """TTL 1 to a destination that would be redirected: time exceeded, no redirect"""
    return [echo(s, FAR, k, ttl=1)]


@case("arp-request")
def _(k, s):
    """ARP who-has 10.0.1.1 from the case's address: a reply"""
    return [ARP(op=1, psrc=s, pdst=GW1)]


@case("arp-request-far")
def _(k, s):
    """ARP who-has 10.0.2.1 (the router's address on another interface) asked on eth1"""
    return [ARP(op=1, psrc=s, pdst=GW2)]


@case("arp-request-other")
def _(k, s):
    """ARP who-has an address nobody has: no reply"""
    return [ARP(op=1, psrc=s, pdst="10.0.1.77")]


@case("host-unreachable", wait=(3, 1))
def _(k, s):
    """to 10.0.2.99, which never answers ARP: host unreachable after the ARP tries"""
    return [echo(s, SILENT, k)]


# --------------------------------------------------------------------------------------
# Phase 2: eth1 with accept_source_route 1 and send_redirects 0.


@case("lsrr-local-accepted", phase=2)
def _(k, s):
    """accept_source_route on: a loose source route via the router to h2 goes on, the router recorded in it"""
    return [with_options(echo(s, GW1, k), srr(131, [H2]))]


@case("ssrr-local-accepted", phase=2)
def _(k, s):
    """accept_source_route on: a strict source route to h2, a neighbour"""
    return [with_options(echo(s, GW1, k), srr(137, [H2]))]


@case("ssrr-via-gateway", phase=2)
def _(k, s):
    """accept_source_route on: a strict source route to 10.0.3.5, reachable only via a gateway: source route failed 3/5"""
    return [with_options(echo(s, GW1, k), srr(137, [FAR]))]


@case("lsrr-transit-accepted", phase=2)
def _(k, s):
    """accept_source_route on: a loose source route through the router, not naming it"""
    return [with_options(echo(s, H2, k), srr(131, ["10.9.9.9"]))]


@case("lsrr-ttl1", phase=2)
def _(k, s):
    """accept_source_route on: TTL 1 on a source-routed packet: the error goes back along the reversed route"""
    return [with_options(echo(s, GW1, k, ttl=1), srr(131, [H2]))]


@case("lsrr-local-used-up", phase=2)
def _(k, s):
    """accept_source_route on: an echo to the router whose loose route is used up (h2 visited): the reply goes back by h2, the route reversed"""
    return [with_options(echo(s, GW1, k), srr(131, [H2], ptr=8))]


@case("redirect-off", phase=2)
def _(k, s):
    """send_redirects off: forwarded to h3 without a redirect"""
    return [echo(s, FAR, k)]


def numbered(phase):
    """The cases of a phase with their numbers (over all phases) and source addresses."""
    out = []
    for k, c in enumerate(CASES):
        if c["phase"] == phase:
            out.append((k, f"10.0.1.{FIRST_CASE_ADDR + k}", c))
    return out


def ipv4_of(frame):
    """(IPv4 header offset, protocol) of an Ethernet frame, or None."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return None
    return 14


def is_marker_reply(f):
    o = ipv4_of(f)
    if o is None or f[o + 9] != 1:
        return False
    i = o + (f[o] & 15) * 4
    return len(f) >= i + 8 and f[i] == 0 and struct.unpack("!H", f[i + 4 : i + 6])[0] == MARK_ID


def icmp_to(f, addr, typ, code):
    o = ipv4_of(f)
    if o is None or f[o + 9] != 1 or f[o + 16 : o + 20] != socket.inet_aton(addr):
        return False
    i = o + (f[o] & 15) * 4
    return len(f) > i + 1 and f[i] == typ and f[i + 1] == code


def capture_socket(iface):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((iface, 0))
    return s


def emit(frame, t):
    sys.stdout.write(json.dumps({"t": t, "hex": frame.hex()}) + "\n")


def read_frames(s, timeout):
    """Frames received (not sent) on s within timeout seconds: [(time, bytes)]."""
    out = []
    r, _, _ = select.select([s], [], [], timeout)
    while r:
        data, meta = s.recvfrom(65535)
        if meta[2] != PACKET_OUTGOING:
            out.append((time.time(), data))
        r, _, _ = select.select([s], [], [], 0)
    return out


def mac_of(iface):
    with open(f"/sys/class/net/{iface}/address") as f:
        return f.read().strip()


def cmd_send(iface, gwmac, phase):
    me = mac_of(iface)
    cap = capture_socket(iface)
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    tx.bind((iface, 0))
    waits = []
    for k, src, c in numbered(phase):
        for p in c["fn"](k, src):
            if isinstance(p, ARP):
                frame = Ether(dst="ff:ff:ff:ff:ff:ff", src=me) / ARP(op=p.op, hwsrc=me, psrc=p.psrc, pdst=p.pdst)
            else:
                frame = Ether(dst=gwmac, src=me, type=0x0800) / bytes(p)
            tx.send(bytes(frame))
        if c["wait"]:
            waits.append((src, c["wait"]))
        # Keep the cases apart in time a little: a case's answers are decided before the next starts.
        time.sleep(0.002)
    got = []
    # Slow answers (ARP failure: about 3 s) are waited for, each at most 8 s.
    deadline = time.time() + 8
    for src, (typ, code) in waits:
        while not any(icmp_to(f, src, typ, code) for _, f in got) and time.time() < deadline:
            got += read_frames(cap, 0.1)
    marker = Ether(dst=gwmac, src=me, type=0x0800) / IP(src=H1, dst=H2, id=MARK_ID) / ICMP(id=MARK_ID, seq=phase)
    tx.send(bytes(marker))
    deadline = time.time() + 10
    while not any(is_marker_reply(f) for _, f in got):
        if time.time() > deadline:
            sys.stderr.write("router-diff: the marker's echo reply never came back\n")
            sys.exit(2)
        got += read_frames(cap, 0.1)
    for t, f in got:
        emit(f, t)


def cmd_capture(iface):
    cap = capture_socket(iface)
    print("ready", flush=True)
    got = []
    while True:
        r, _, _ = select.select([cap, sys.stdin], [], [])
        if sys.stdin in r:
            break
        got += read_frames(cap, 0)
    got += read_frames(cap, 0)
    for t, f in got:
        emit(f, t)


def cmd_burst(iface, gwmac, src, n, seconds):
    me = mac_of(iface)
    cap = capture_socket(iface)
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    tx.bind((iface, 0))
    frames = [bytes(Ether(dst=gwmac, src=me, type=0x0800) / echo(src, H2, 0, j, ttl=1)) for j in range(n)]
    t0 = time.time()
    for j, f in enumerate(frames):
        tx.send(f)
        pause = t0 + seconds * (j + 1) / n - time.time()
        if pause > 0:
            time.sleep(pause)
    took = time.time() - t0
    answers = sum(1 for _, f in read_frames(cap, 1.5) if icmp_to(f, src, 11, 0))
    print(json.dumps({"sent": n, "took": took, "answers": answers}))


def main():
    a = sys.argv[1:]
    if a[:1] == ["cases"]:
        print(json.dumps([{"k": k, "name": c["name"], "src": src, "doc": c["doc"]} for k, src, c in numbered(int(a[1]))]))
    elif a[:1] == ["send"]:
        cmd_send(a[1], a[2], int(a[3]))
    elif a[:1] == ["capture"]:
        cmd_capture(a[1])
    elif a[:1] == ["burst"]:
        cmd_burst(a[1], a[2], a[3], int(a[4]), float(a[5]))
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
