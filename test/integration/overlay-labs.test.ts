/**
 * Overlays on real packets: flannel-style VXLAN, Calico-style IPIP, host-gw, the same
 * across a routed underlay, and tapnet's VTEP against the Linux kernel's VXLAN device.
 */
import path from "node:path";
import { spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, canRunLabs, captureFields, inNs, iperf, netnsList, ping, tapnet, tapnetOk } from "./harness.js";

const labFile = (n: string): string => path.join(ROOT, "scripts/labs", n);

function useLab(file: string, lab: string): void {
  beforeAll(() => {
    tapnet(["lab", "down", file]);
    tapnetOk(["lab", "up", file, "-q"]);
  }, 120_000);
  afterAll(() => {
    const r = tapnet(["lab", "down", file]);
    expect(r.status, r.stderr).toBe(0);
    expect(netnsList().filter((n) => n.startsWith(`tn.${lab}.`))).toEqual([]);
  });
}

interface Tunnel {
  port: string;
  kind: string;
  counters: Record<string, number>;
}
const tunnels = (node: string, lab: string): Tunnel[] => JSON.parse(tapnetOk(["show", "tunnels", "--node", node, "--lab", lab, "--json"])) as Tunnel[];

/** Sends raw bytes from a namespace with python3: UDP datagrams or raw IP packets. */
function sendUdp(ns: string, dst: string, port: number, payloadsHex: string[]): void {
  const py = [
    "import socket",
    "s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
    ...payloadsHex.map((h) => `s.sendto(bytes.fromhex(${JSON.stringify(h)}), (${JSON.stringify(dst)}, ${port}))`),
  ].join("\n");
  const r = inNs(ns, ["python3", "-c", py]);
  if (r.status !== 0) throw new Error(r.stderr);
}

const pods =
  (lab: string) =>
  (n: string): string =>
    `tn.${lab}.${n}`;

/**
 * The VXLAN port sends through a UDP socket: its kernel writes the outer UDP checksum,
 * and with the veth's checksum offload on, a capture beyond the veth sees it before it
 * is completed (CHECKSUM_PARTIAL: only the pseudo-header sum) and tshark calls it bad.
 * With offload off on the node's ul0, the kernel completes it before the packet leaves,
 * so the capture can check every checksum. Restored afterwards.
 */
async function withFullChecksums<T>(nodeNs: string, fn: () => Promise<T>): Promise<T> {
  const ethtool = (on: string): void => {
    const r = spawnSync("ip", ["netns", "exec", nodeNs, "ethtool", "-K", "ul0", "tx", on], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`ethtool -K ul0 tx ${on} in ${nodeNs}: ${r.stderr}`);
  };
  ethtool("off");
  try {
    return await fn();
  } finally {
    ethtool("on");
  }
}

describe.skipIf(!canRunLabs())("flannel-vxlan.yaml", () => {
  const ns = pods("flannel-vxlan");
  useLab(labFile("flannel-vxlan.yaml"), "flannel-vxlan");

  it("pods on different nodes ping each other through VXLAN (tshark: VNI 1, inner ICMP, good outer checksums)", async () => {
    let r = { status: 1 as number | null, stdout: "" };
    const lines = await withFullChecksums(ns("node1"), () =>
      captureFields(
        "tn.flannel-vxlan.ul",
        "node1",
        () => {
          r = ping(ns("pod1a"), "10.244.2.2", 3);
        },
        ["ip.src", "ip.dst", "udp.dstport", "vxlan.vni", "icmp.type", "ip.checksum.status", "udp.checksum.status"],
        ["-d", "udp.port==8472,vxlan"],
      ),
    );
    expect(r.status, r.stdout).toBe(0);
    expect(r.stdout).toMatch(/ttl=62/); // two routers: node1's and node2's
    const mine = lines.filter((l) => l.startsWith("192.168.0.1,10.244.1.2|"));
    expect(mine.length).toBe(3);
    for (const l of mine) {
      const [, dst, dport, vni, icmpType, ipSt, udpSt] = l.split("|");
      expect(dst).toBe("192.168.0.2,10.244.2.2");
      expect(dport).toBe("8472");
      expect(vni).toBe("1");
      expect(icmpType).toBe("8");
      expect(ipSt.split(",")[0]).toBe("1");
      expect(udpSt).toBe("1");
    }
    expect(ping(ns("pod2a"), "10.244.1.3", 2).status).toBe(0);
  });

  it("a trace of a pod-to-pod packet shows the VXLAN outer headers it leaves in", () => {
    const r = JSON.parse(tapnetOk(["trace", "node1", "--in", "pod1a", "--packet", "icmp 10.244.1.2 > 10.244.2.2", "--lab", "flannel-vxlan", "--json"])) as {
      steps: Array<{ element: string; what: string }>;
      out: Array<{ port: string; frame: string; encap?: string }>;
    };
    expect(r.steps.map((x) => x.what)).toContainEqual(
      expect.stringMatching(/^10\.244\.1\.2 > 10\.244\.2\.2: route 10\.244\.2\.0\/24 via 10\.244\.2\.0 dev \S+ \(\w+\), next hop 10\.244\.2\.0, TTL 64 -> 63$/),
    );
    expect(r.out).toHaveLength(1);
    expect(r.out[0].frame).toMatch(/IPv4 10\.244\.1\.2 > 10\.244\.2\.2 ttl 63, ICMP echo request$/);
    expect(r.out[0].encap).toBe("VXLAN vni 1: outer IPv4 192.168.0.1 > 192.168.0.2, UDP > 8472");
  });

  it("carries an iperf3 TCP run between pods: super-frames cut once at node1, merged again at node2", async () => {
    const tx0 = tunnels("node1", "flannel-vxlan")[0].counters;
    const rx0 = tunnels("node2", "flannel-vxlan")[0].counters;
    const bps = await iperf(ns("pod2a"), ns("pod1a"), "10.244.2.2", 2);
    expect(bps).toBeGreaterThan(1e6);
    const tx = tunnels("node1", "flannel-vxlan")[0].counters;
    const rx = tunnels("node2", "flannel-vxlan")[0].counters;
    // pod1a's TSO super-frames were segmented by node1's VXLAN port (UDP GSO trains) ...
    expect(tx.segmented - tx0.segmented).toBeGreaterThan(0);
    expect(tx.badOffload).toBe(0);
    // ... and node2 got them as GRO trains and coalesced them into super-frames for pod2a.
    expect(rx.coalesced - rx0.coalesced).toBeGreaterThan(0);
    expect(rx.decapsulated - rx0.decapsulated).toBeGreaterThan(rx.rxFrames - rx0.rxFrames);
  });

  it("a 1500-byte ping with DF gets frag-needed (mtu 1450); a 1400-byte one passes", () => {
    inNs(ns("pod1b"), ["ip", "route", "flush", "cache"]);
    const big = inNs(ns("pod1b"), ["ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1472", "10.244.2.2"]);
    expect(big.stdout).toMatch(/Frag needed and DF set \(mtu = 1450\)/);
    const ok = inNs(ns("pod1b"), ["ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1372", "10.244.2.2"]);
    expect(ok.status, ok.stdout).toBe(0);
  });

  it("drops and counts garbage sent to the VXLAN port, and keeps forwarding", () => {
    const before = tunnels("node1", "flannel-vxlan")[0].counters;
    sendUdp("tn.flannel-vxlan.node2", "192.168.0.1", 8472, [
      "0800", // too short for a VXLAN header
      `0000000000000100${"ff".repeat(60)}`, // I flag clear
      `0800000000000900${"ff".repeat(60)}`, // VNI 9, not ours
      "0800000000000100" + "ffffffff", // inner frame of 4 bytes
    ]);
    const after = tunnels("node1", "flannel-vxlan")[0].counters;
    expect(after.badHeader - before.badHeader).toBe(2);
    expect(after.vniMismatch - before.vniMismatch).toBe(1);
    expect(after.runt - before.runt).toBe(1);
    expect(ping(ns("pod1a"), "10.244.2.2", 1).status).toBe(0);
  });

  it("show route and show fdb look like flannel's", () => {
    const routes = tapnetOk(["show", "route", "--node", "node1", "--lab", "flannel-vxlan"]);
    expect(routes).toMatch(/^10\.244\.2\.0\/24 via 10\.244\.2\.0 dev flannel\.1 proto static$/m);
    const fdb = JSON.parse(tapnetOk(["show", "fdb", "--node", "node1", "--lab", "flannel-vxlan", "--json"])) as Array<{
      port: string;
      dst: string | null;
      static: boolean;
    }>;
    expect(fdb).toContainEqual(expect.objectContaining({ port: "vxlan0", dst: "192.168.0.2", static: true }));
  });
});

describe.skipIf(!canRunLabs())("calico-ipip.yaml", () => {
  const ns = pods("calico-ipip");
  useLab(labFile("calico-ipip.yaml"), "calico-ipip");

  it("pods ping through IPIP (tshark: protocol 4, inner ICMP, outer TTL 64, good checksums)", async () => {
    let r = { status: 1 as number | null, stdout: "" };
    const lines = await captureFields(
      "tn.calico-ipip.ul",
      "node1",
      () => {
        r = ping(ns("pod1a"), "10.244.2.2", 3);
      },
      ["ip.src", "ip.proto", "ip.ttl", "icmp.type", "ip.checksum.status"],
    );
    expect(r.status, r.stdout).toBe(0);
    const mine = lines.filter((l) => l.startsWith("192.168.0.1,10.244.1.2|"));
    expect(mine.length).toBe(3);
    for (const l of mine) {
      const [, proto, ttl, type, st] = l.split("|");
      expect(proto).toBe("4,1");
      expect(ttl.split(",")[0]).toBe("64");
      expect(type).toBe("8");
      expect(st).toBe("1,1");
    }
  });

  it("a trace shows the IPIP outer header; a packet above the tunnel MTU without DF is fragmented by the router, each fragment in IPIP", () => {
    type WhatIf = { steps: Array<{ element: string; what: string }>; out: Array<{ port: string; frame: string; encap?: string }> };
    const trace = (packet: string): WhatIf =>
      JSON.parse(tapnetOk(["trace", "node1", "--in", "pod1a", "--packet", packet, "--lab", "calico-ipip", "--json"])) as WhatIf;
    const small = trace("icmp 10.244.1.2 > 10.244.2.2");
    expect(small.out).toHaveLength(1);
    expect(small.out[0].frame).toMatch(/IPv4 10\.244\.1\.2 > 10\.244\.2\.2 ttl 63, ICMP echo request$/);
    expect(small.out[0].encap).toBe("IPIP: outer IPv4 192.168.0.1 > 192.168.0.2 proto 4 ttl 64 DF, 48 bytes");
    // 1500 bytes of IPv4 into the tunnel's 1480 (1500 - the outer 20), DF clear: two
    // fragments, the first with 1456 bytes of data (a multiple of 8, RFC 791 section 3.2).
    const big = trace("udp 10.244.1.2:4000 > 10.244.2.2:9 len 1472 df 0");
    const mtu = big.steps.map((x) => x.what).find((w) => w.startsWith("fragmented"));
    expect(mtu).toMatch(/^fragmented for MTU 1480 of \S+: 1500 bytes into 2 fragments of 1476, 44 bytes$/);
    expect(big.out.map((o) => o.frame.split(", ").at(-1))).toEqual(["UDP 4000 > 9 (first fragment)", "UDP fragment at offset 1456"]);
    expect(big.out.map((o) => o.encap)).toEqual([
      "IPIP: outer IPv4 192.168.0.1 > 192.168.0.2 proto 4 ttl 64, 1496 bytes",
      "IPIP: outer IPv4 192.168.0.1 > 192.168.0.2 proto 4 ttl 64, 64 bytes",
    ]);
    // With DF the router refuses instead (fragmentation needed), and says so.
    const df = trace("udp 10.244.1.2:4000 > 10.244.2.2:9 len 1472");
    expect(df.steps.map((x) => x.what)).toContainEqual(expect.stringMatching(/^drop fragNeeded/));
    expect(df.out.map((o) => o.frame)).toEqual([expect.stringMatching(/IPv4 10\.244\.1\.1 > 10\.244\.1\.2 ttl 64, ICMP destination unreachable code 4$/)]);
  });

  it("carries an iperf3 TCP run between pods: segmented in software at the tunnel, merged again at pod2a's TAP", async () => {
    const stats = (node: string): { offloads: Record<string, Record<string, number>> } =>
      JSON.parse(tapnetOk(["show", "stats", "--node", node, "--lab", "calico-ipip", "--json"])) as { offloads: Record<string, Record<string, number>> };
    const s1 = stats("node1").offloads;
    const s2 = stats("node2").offloads;
    expect(await iperf(ns("pod2a"), ns("pod1b"), "10.244.2.2", 2)).toBeGreaterThan(1e6);
    const e1 = stats("node1").offloads;
    const e2 = stats("node2").offloads;
    // The IPIP port takes no virtio-net header: pod1b's super-frames were cut at it ...
    expect(e1.ipip0.segmented - s1.ipip0.segmented).toBeGreaterThan(0);
    expect(e1.ipip0.badOffload).toBe(0);
    // ... and the segments were merged into super-frames at pod2a's TAP (egress GRO).
    expect(e2.pod2a.groMerged - s2.pod2a.groMerged).toBeGreaterThan(0);
  });

  it("a 1500-byte ping with DF gets frag-needed (mtu 1480); a 1400-byte one passes", () => {
    inNs(ns("pod1a"), ["ip", "route", "flush", "cache"]);
    const big = inNs(ns("pod1a"), ["ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1472", "10.244.2.2"]);
    expect(big.stdout).toMatch(/Frag needed and DF set \(mtu = 1480\)/);
    expect(inNs(ns("pod1a"), ["ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1372", "10.244.2.2"]).status).toBe(0);
  });

  it("drops and counts IPIP from an unknown peer", () => {
    const before = tunnels("node1", "calico-ipip")[0].counters;
    const node2 = "tn.calico-ipip.node2";
    inNs(node2, ["ip", "addr", "add", "192.168.0.9/24", "dev", "ul0"]);
    // Outer 192.168.0.9 -> 192.168.0.1 proto 4, inner a valid 10.244.2.9 -> 10.244.1.2 ICMP echo.
    const py = [
      "import socket,struct",
      "def csum(b):",
      "  s=sum(struct.unpack('!%dH'%(len(b)//2), b)); s=(s>>16)+(s&0xffff); s+=s>>16; return (~s)&0xffff",
      "def ip(src,dst,proto,payload):",
      "  h=struct.pack('!BBHHHBBH4s4s',0x45,0,20+len(payload),1,0,64,proto,0,socket.inet_aton(src),socket.inet_aton(dst))",
      "  return h[:10]+struct.pack('!H',csum(h))+h[12:]+payload",
      "icmp=struct.pack('!BBHHH',8,0,0,1,1)+b'x'*8",
      "icmp=icmp[:2]+struct.pack('!H',csum(icmp))+icmp[4:]",
      "pkt=ip('192.168.0.9','192.168.0.1',4,ip('10.244.2.9','10.244.1.2',1,icmp))",
      "s=socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)",
      "s.sendto(pkt,('192.168.0.1',0))",
    ].join("\n");
    const r = inNs(node2, ["python3", "-c", py]);
    expect(r.status, r.stderr).toBe(0);
    const after = tunnels("node1", "calico-ipip")[0].counters;
    expect(after.unknownPeer - before.unknownPeer).toBe(1);
    expect(after.decapsulated - before.decapsulated).toBe(0);
    expect(ping(ns("pod1a"), "10.244.2.2", 1).status).toBe(0);
  });
});

describe.skipIf(!canRunLabs())("host-gw.yaml", () => {
  const ns = pods("host-gw");
  useLab(labFile("host-gw.yaml"), "host-gw");

  it("pods ping and run iperf3 across host-gw routes (no outer header on the underlay)", async () => {
    let r = { status: 1 as number | null, stdout: "" };
    const lines = await captureFields(
      "tn.host-gw.ul",
      "node1",
      () => {
        r = ping(ns("pod1a"), "10.244.2.2", 2);
      },
      ["ip.src", "ip.dst", "ip.proto"],
    );
    expect(r.status, r.stdout).toBe(0);
    expect(lines).toContain("10.244.1.2|10.244.2.2|1");
    expect(await iperf(ns("pod2a"), ns("pod1a"), "10.244.2.2", 2)).toBeGreaterThan(1e6);
  });
});

describe.skipIf(!canRunLabs())("a routed underlay: host-gw fails, VXLAN and IPIP pass", () => {
  describe("host-gw-routed.yaml", () => {
    useLab(labFile("host-gw-routed.yaml"), "host-gw-routed");
    it("pod packets reach the router between the nodes bare, and it has no route for them", async () => {
      const ur = "tn.host-gw-routed.ur";
      const noRoutes = (): number => Number(inNs(ur, ["nstat", "-az", "IpExtInNoRoutes"]).stdout.match(/IpExtInNoRoutes\s+(\d+)/)?.[1] ?? NaN);
      const before = noRoutes();
      let r = { status: 0 as number | null, stdout: "" };
      const atRouter = await captureFields(
        ur,
        "net1",
        () => {
          r = inNs("tn.host-gw-routed.pod1a", ["ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", "10.244.2.2"]);
        },
        ["ip.src", "ip.dst", "ip.proto"],
      );
      expect(r.status).not.toBe(0);
      expect(r.stdout).toMatch(/2 packets transmitted, 0 received/);
      // No outer header: the kernel router sees pod addresses and has no route for them.
      expect(atRouter.filter((l) => l === "10.244.1.2|10.244.2.2|1").length).toBe(2);
      expect(noRoutes() - before).toBeGreaterThanOrEqual(2);
    });
  });
  describe("flannel-vxlan-routed.yaml", () => {
    useLab(labFile("flannel-vxlan-routed.yaml"), "flannel-vxlan-routed");
    it("VXLAN crosses the routed underlay", () => {
      const r = ping("tn.flannel-vxlan-routed.pod1a", "10.244.2.2", 2);
      expect(r.status, r.stdout).toBe(0);
    });
  });
  describe("calico-ipip-routed.yaml", () => {
    useLab(labFile("calico-ipip-routed.yaml"), "calico-ipip-routed");
    it("IPIP crosses the routed underlay", () => {
      const r = ping("tn.calico-ipip-routed.pod1a", "10.244.2.2", 2);
      expect(r.status, r.stdout).toBe(0);
    });
  });
});

for (const [file, lab, port] of [
  ["vxlan-kernel-peer.yaml", "vxlan-peer", 4789],
  ["vxlan-kernel-peer-8472.yaml", "vxlan-peer-8472", 8472],
] as const) {
  describe.skipIf(!canRunLabs())(`${file}: tapnet VTEP <-> Linux kernel VXLAN`, () => {
    const ns = pods(lab);
    useLab(labFile(file), lab);

    it(`ping works both ways over UDP ${port}, and tshark decodes VXLAN VNI 42 with good checksums`, async () => {
      let a = { status: 1 as number | null, stdout: "" };
      let b = { status: 1 as number | null, stdout: "" };
      const lines = await withFullChecksums(ns("vtep1"), () =>
        captureFields(
          `tn.${lab}.ul`,
          "vtep1",
          () => {
            a = ping(ns("t1"), "10.250.0.2", 2);
            b = ping(ns("k1"), "10.250.0.1", 2);
          },
          ["ip.src", "udp.srcport", "udp.dstport", "vxlan.vni", "icmp.type", "ip.checksum.status", "udp.checksum.status"],
          port === 8472 ? ["-d", "udp.port==8472,vxlan"] : [],
        ),
      );
      expect(a.status, a.stdout).toBe(0);
      expect(b.status, b.stdout).toBe(0);
      const fromTapnet = lines.filter(
        (l) => (l.startsWith("192.168.0.1,10.250.0.1|") && l.includes("|8|")) || (l.startsWith("192.168.0.1,10.250.0.1|") && l.includes("|0|")),
      );
      expect(fromTapnet.length).toBeGreaterThanOrEqual(4);
      for (const l of fromTapnet) {
        const [, , dport, vni, , ipSt, udpSt] = l.split("|");
        expect(dport).toBe(String(port));
        expect(vni).toBe("42");
        expect(ipSt.split(",")[0]).toBe("1");
        expect(udpSt).toBe("1");
      }
    });

    it("learns the kernel side's MAC from received packets", () => {
      ping(ns("k1"), "10.250.0.1", 1);
      const fdb = JSON.parse(tapnetOk(["show", "fdb", "--node", "vtep1", "--lab", lab, "--json"])) as Array<{
        mac: string;
        port: string;
        dst: string | null;
        static: boolean;
      }>;
      expect(fdb).toContainEqual(expect.objectContaining({ mac: "02:00:0a:fa:00:02", port: "vxlan0", dst: "192.168.0.2", static: false }));
      expect(tunnels("vtep1", lab)[0].counters.learned).toBeGreaterThanOrEqual(1);
    });
  });
}

describe.skipIf(!canRunLabs())("ARP suppression at the VTEP", () => {
  it("answers t1's ARP for k1 locally: no ARP request crosses the underlay", async () => {
    const { writeLabFile } = await import("./harness.js");
    const fs = await import("node:fs");
    const yaml = fs
      .readFileSync(labFile("vxlan-kernel-peer.yaml"), "utf8")
      .replace("name: vxlan-peer", "name: vxlan-sup")
      .replace(
        "vxlan0: { vni: 42, port: 4789, remotes: [192.168.0.2] }",
        'vxlan0: { vni: 42, port: 4789, remotes: [192.168.0.2], arpSuppress: [{ ip: 10.250.0.2, mac: "02:00:0a:fa:00:02" }] }',
      );
    const file = writeLabFile("vxlan-sup", yaml);
    tapnet(["lab", "down", file]);
    tapnetOk(["lab", "up", file, "-q"]);
    try {
      // k1 already knows t1, so the only ARP that could cross is t1's own request.
      const t1mac = inNs("tn.vxlan-sup.t1", ["cat", "/sys/class/net/eth0/address"]).stdout.trim();
      inNs("tn.vxlan-sup.k1", ["ip", "neigh", "replace", "10.250.0.1", "lladdr", t1mac, "dev", "eth0", "nud", "permanent"]);
      let r = { status: 1 as number | null, stdout: "" };
      const lines = await captureFields(
        "tn.vxlan-sup.ul",
        "vtep1",
        () => {
          r = ping("tn.vxlan-sup.t1", "10.250.0.2", 2);
        },
        ["arp.opcode", "arp.dst.proto_ipv4", "icmp.type"],
      );
      expect(r.status, r.stdout).toBe(0);
      // Overlay ARP only: the underlay's own (192.168.0.x, e.g. the kernel's unicast
      // re-probe of a neighbour in DELAY) may cross whenever its timers say so.
      expect(lines.filter((l) => /^[12]\|10\.250\./.test(l))).toEqual([]);
      expect(lines.filter((l) => l.endsWith("|8")).length).toBe(2);
      expect(tunnels("vtep1", "vxlan-sup")[0].counters.arpSuppressed).toBeGreaterThanOrEqual(1);
    } finally {
      const d = tapnet(["lab", "down", file]);
      fs.rmSync(file, { force: true });
      expect(d.status, d.stderr).toBe(0);
    }
  });
});
