#!/usr/bin/env python3
"""Can the kernel segment an IPIP TCP super-frame that userspace hands it?

Sends one 10 KiB TCP super-frame (virtio-net header: NEEDS_CSUM, GSO TCPV4, MSS 1400)
through an AF_PACKET socket with PACKET_VNET_HDR on a veth, first plain
(Ethernet/IPv4/TCP), then inside an outer IPv4 header of protocol 4 (RFC 2003), and
reports what the send returned and what the veth pair counted.

    sudo python3 scripts/probes/ipip-gso.py

Makes two namespaces (tnprobe-a, tnprobe-b) and removes them on exit. See
docs/benchmarks.md ("Tunnels without the copies") for what it showed on Linux 6.18.
"""
import socket
import struct
import subprocess

A, B = "tnprobe-a", "tnprobe-b"
MSS = 1400
SOL_PACKET, PACKET_VNET_HDR = 263, 15


def sh(*a):
    return subprocess.run(a, check=True, capture_output=True, text=True).stdout


def stat(ns, dev, name):
    return int(sh("ip", "netns", "exec", ns, "cat", f"/sys/class/net/{dev}/statistics/{name}"))


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(proto, src, dst, payload_len, ident):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, ident, 0x4000, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:]


def frame(ipip):
    payload = bytes(range(256)) * 40
    src, dst = "10.9.1.1", "10.9.2.1"
    # CHECKSUM_PARTIAL: the TCP checksum field holds the pseudo-header seed (RFC 9293 3.1).
    seed = ~csum(socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, 20 + len(payload))) & 0xFFFF
    tcp = struct.pack("!HHIIBBHHH", 40000, 5201, 1000, 0, 5 << 4, 0x10, 65535, seed, 0)
    inner = ipv4(6, src, dst, 20 + len(payload), 1) + tcp + payload
    l3 = ipv4(4, "192.0.2.1", "192.0.2.2", len(inner), 7) + inner if ipip else inner
    start = 14 + (40 if ipip else 20)
    vnet = struct.pack("<BBHHHH", 1, 1, start + 20, MSS, start, 16)  # NEEDS_CSUM, GSO_TCPV4
    eth = bytes.fromhex("02aabbccdd02" "02aabbccdd01" "0800")
    return vnet + eth + l3


def main():
    sh("ip", "netns", "add", A)
    try:
        sh("ip", "netns", "add", B)
        sh("ip", "-n", A, "link", "add", "va", "type", "veth", "peer", "vb", "netns", B)
        sh("ip", "-n", A, "link", "set", "va", "up")
        sh("ip", "-n", B, "link", "set", "vb", "up")
        for ipip in (False, True):
            before = (stat(A, "va", "tx_packets"), stat(A, "va", "tx_dropped"), stat(B, "vb", "rx_bytes"))
            code = (
                "import socket,sys\n"
                "s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW,0)\n"
                f"s.setsockopt({SOL_PACKET},{PACKET_VNET_HDR},1)\n"
                "s.bind(('va',0))\n"
                "b=bytes.fromhex(sys.argv[1])\n"
                "try:\n print('sent', s.send(b))\n"
                "except OSError as e:\n print('refused:', e)\n"
            )
            r = sh("ip", "netns", "exec", A, "python3", "-c", code, frame(ipip).hex()).strip()
            after = (stat(A, "va", "tx_packets"), stat(A, "va", "tx_dropped"), stat(B, "vb", "rx_bytes"))
            print(f"{'IPIP' if ipip else 'plain TCP'} super-frame: {r}; va tx_packets +{after[0] - before[0]}, "
                  f"tx_dropped +{after[1] - before[1]}; vb rx_bytes +{after[2] - before[2]}")
    finally:
        subprocess.run(["ip", "netns", "del", A], capture_output=True)
        subprocess.run(["ip", "netns", "del", B], capture_output=True)


if __name__ == "__main__":
    main()
