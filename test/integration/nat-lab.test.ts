/** scripts/labs/service-nat.yaml: masquerade, services (DNAT), hairpin, related ICMP, conntrack. */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, canRunLabs, captureFields, inNs, netnsList, sleep, tapnet, tapnetOk, writeLabFile } from "./harness.js";

const FILE = path.join(ROOT, "scripts/labs/service-nat.yaml");

function nsOf(lab: string): (n: string) => string {
  return (n) => `tn.${lab}.${n}`;
}

/** curl with a short timeout; returns [exit code, body]. */
function curl(ns: string, url: string, extra: string[] = []): [number | null, string] {
  const r = inNs(ns, ["curl", "-s", "--max-time", "3", ...extra, url]);
  return [r.status, r.stdout.trim()];
}

async function waitHttp(ns: string, url: string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    if (curl(ns, url)[0] === 0) return;
    await sleep(100);
  }
  throw new Error(`${url} never answered from ${ns}`);
}

function labUp(file: string, lab: string, removeFile = false): void {
  beforeAll(async () => {
    tapnet(["lab", "down", file]);
    tapnetOk(["lab", "up", file, "-q"]);
    const ns = nsOf(lab);
    await waitHttp(ns("client"), "http://10.244.1.2/");
    await waitHttp(ns("client"), "http://10.244.1.3/");
    await waitHttp(ns("client"), "http://192.0.2.10/");
  }, 120_000);
  afterAll(() => {
    const r = tapnet(["lab", "down", file]);
    if (removeFile) fs.rmSync(file, { force: true });
    expect(r.status, r.stderr).toBe(0);
    expect(netnsList().filter((n) => n.startsWith(`tn.${lab}.`))).toEqual([]);
  });
}

interface NatStats {
  nat: Record<string, number>;
  router: Record<string, number>;
}
const stats = (lab: string): NatStats => JSON.parse(tapnetOk(["show", "stats", "--node", "node1", "--lab", lab, "--json"])) as NatStats;

describe.skipIf(!canRunLabs())("service-nat.yaml", () => {
  const ns = nsOf("service-nat");
  labUp(FILE, "service-nat");

  it("a pod reaches the outside host through masquerade; the outside sees only the node's address", async () => {
    let body = "";
    // With checksum offload (the node's TAPs have it), TCP checksums on the wire are
    // partial sums the receiving kernel trusts, and tshark cannot judge them; the
    // client computes them itself here, so tshark checks what the NAT rewrote.
    // (The partial-sum path is covered by the NAT's unit tests.)
    inNs(ns("client"), ["ethtool", "-K", "eth0", "tx", "off"]);
    const seen = await captureFields(ns("ext"), "eth0", () => {
      const [code, b] = curl(ns("client"), "http://192.0.2.10/");
      expect(code).toBe(0);
      body = b;
      expect(inNs(ns("client"), ["ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", "192.0.2.10"]).status).toBe(0);
    }, ["ip.src", "ip.dst", "ip.checksum.status", "tcp.checksum.status", "icmp.checksum.status"], ["-o", "tcp.check_checksum:TRUE"]);
    inNs(ns("client"), ["ethtool", "-K", "eth0", "tx", "on"]);
    expect(body).toBe("ext 192.0.2.1");
    const sources = new Set(seen.map((l) => l.split("|")[0]));
    expect([...sources].sort()).toEqual(["192.0.2.1", "192.0.2.10"]);
    // Every checksum the NAT rewrote is good (tshark: 1 = good).
    for (const l of seen.filter((x) => x.startsWith("192.0.2.1|"))) {
      const [, , ipSt, tcpSt, icmpSt] = l.split("|");
      expect(ipSt).toBe("1");
      expect(tcpSt === "1" || icmpSt === "1", l).toBe(true);
    }
  });

  it("200 requests to the service spread over both backends, and each connection keeps one backend", async () => {
    const counts: Record<string, number> = {};
    const web1: string[] = [];
    const web2: string[] = [];
    const f1 = await captureFields(ns("web1"), "eth0", async () => {
      const f2 = await captureFields(ns("web2"), "eth0", () => {
        const r = inNs(ns("client"), ["sh", "-c", "for i in $(seq 200); do curl -s --max-time 3 http://10.96.0.10/; done"], 120_000);
        for (const line of r.stdout.split("\n").filter(Boolean)) counts[line] = (counts[line] ?? 0) + 1;
      }, ["tcp.srcport", "ip.src"]);
      web2.push(...f2);
    }, ["tcp.srcport", "ip.src"]);
    web1.push(...f1);
    expect((counts["web1 10.244.1.4"] ?? 0) + (counts["web2 10.244.1.4"] ?? 0)).toBe(200);
    expect(counts["web1 10.244.1.4"]).toBeGreaterThan(20);
    expect(counts["web2 10.244.1.4"]).toBeGreaterThan(20);
    // The client's source ports seen at each backend: no connection reached both.
    const ports = (lines: string[]): Set<string> => new Set(lines.filter((l) => l.endsWith("|10.244.1.4")).map((l) => l.split("|")[0]));
    const p1 = ports(web1);
    const p2 = ports(web2);
    // The 200 answers are counted at the client above; the captures are the check that
    // no connection reached both backends. tcpdump on a loaded two-core machine has
    // missed a connection's packets now and then (one run in several: 196 of 200), so
    // they only need to have seen nearly all of them.
    expect(p1.size + p2.size).toBeGreaterThanOrEqual(190);
    expect(p1.size + p2.size).toBeLessThanOrEqual(200);
    expect([...p1].filter((p) => p2.has(p))).toEqual([]);
    const svc = JSON.parse(tapnetOk(["show", "services", "--node", "node1", "--lab", "service-nat", "--json"])) as Array<{ name: string; backends: string[] }>;
    expect(svc.find((s) => s.name === "web")?.backends).toEqual(["10.244.1.2:80", "10.244.1.3:80"]);
  });

  it("the service with no backends refuses at once instead of hanging", () => {
    const t0 = Date.now();
    const r = inNs(ns("client"), ["curl", "-s", "--max-time", "5", "http://10.96.0.11/"]);
    expect(r.status).toBe(7); // curl: failed to connect (refused)
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(stats("service-nat").router.serviceRejected).toBeGreaterThanOrEqual(1);
  });

  it("hairpin: a pod reaching the service that picks the pod itself gets an answer", () => {
    const bodies = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const [code, body] = curl(ns("web1"), "http://10.96.0.10/");
      expect(code).toBe(0);
      bodies.add(body);
    }
    // web1 answering itself saw the router's address (masqueraded hairpin).
    expect(bodies).toContain("web1 10.244.1.1");
    expect(bodies).toContain("web2 10.244.1.2");
  });

  it("two pods pinging the outside with the same ICMP identifier both get replies", async () => {
    const ids = await captureFields(ns("ext"), "eth0", async () => {
      const a = spawn("ip", ["netns", "exec", ns("client"), "ping", "-n", "-e", "4242", "-c", "3", "-i", "0.2", "-W", "1", "192.0.2.10"], { stdio: ["ignore", "pipe", "ignore"] });
      const b = spawn("ip", ["netns", "exec", ns("web2"), "ping", "-n", "-e", "4242", "-c", "3", "-i", "0.2", "-W", "1", "192.0.2.10"], { stdio: ["ignore", "pipe", "ignore"] });
      const outs = await Promise.all(
        [a, b].map(
          (c) =>
            new Promise<string>((resolve) => {
              let o = "";
              c.stdout?.on("data", (d: Buffer) => (o += d.toString()));
              c.on("exit", () => resolve(o));
            }),
        ),
      );
      for (const o of outs) expect(o).toMatch(/3 packets transmitted, 3 received/);
    }, ["icmp.type", "icmp.ident"]);
    const requestIds = new Set(ids.filter((l) => l.startsWith("8|")).map((l) => l.split("|")[1]));
    expect(requestIds.size).toBe(2); // the NAT gave the second pod another identifier
  });

  it("traceroute through the NAT works (ICMP errors translated back)", () => {
    const r = inNs(ns("client"), ["traceroute", "-n", "-q", "1", "-w", "2", "192.0.2.10"], 60_000);
    const hops = r.stdout.split("\n").slice(1).map((l) => l.trim().split(/\s+/)[1]).filter(Boolean);
    expect(hops).toEqual(["10.244.1.1", "192.0.2.10"]);
    expect(stats("service-nat").nat.related ?? 0).toBeGreaterThanOrEqual(1);
  });

  it("a 4000-byte UDP datagram to a UDP service comes back whole (reassembled, NATed, refragmented)", async () => {
    const echoPy = [
      "import socket",
      "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
      's.bind(("0.0.0.0", 7007))',
      'print("ready", flush=True)',
      "while True:",
      "    d, a = s.recvfrom(65535)",
      "    s.sendto(d, a)",
    ].join("\n");
    // ip netns exec execs python3: the PID is the echo server's.
    const echo = spawn("ip", ["netns", "exec", ns("ext"), "python3", "-u", "-c", echoPy], { stdio: ["ignore", "pipe", "ignore"] });
    try {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error("UDP echo did not start")), 5000);
        echo.stdout.on("data", (d: Buffer) => {
          if (d.toString().includes("ready")) {
            clearTimeout(t);
            resolve();
          }
        });
      });
      const before = stats("service-nat").router;
      const clientPy = [
        "import socket",
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
        "s.settimeout(3)",
        "d = bytes((i * 7) % 251 for i in range(4000))",
        's.sendto(d, ("10.96.0.12", 7))',
        "r, a = s.recvfrom(65535)",
        'print("same" if r == d else "different", len(r), a[0], a[1])',
      ].join("\n");
      const r = inNs(ns("client"), ["python3", "-c", clientPy]);
      expect(r.stdout.trim(), r.stderr).toBe("same 4000 10.96.0.12 7");
      const after = stats("service-nat").router;
      // Both directions arrived in 3 fragments, were reassembled and left in fragments again.
      expect(after.reassembled - (before.reassembled ?? 0)).toBeGreaterThanOrEqual(2);
      expect(after.refragmented - (before.refragmented ?? 0)).toBeGreaterThanOrEqual(2);
    } finally {
      if (echo.pid !== undefined) process.kill(echo.pid);
    }
  });

  it("show conntrack lists the flows", () => {
    curl(ns("client"), "http://192.0.2.10/");
    const out = tapnetOk(["show", "conntrack", "--node", "node1", "--lab", "service-nat"]);
    expect(out).toMatch(/tcp .*10\.244\.1\.4.*192\.0\.2\.10.*192\.0\.2\.1/);
  });
});

describe.skipIf(!canRunLabs())("service-nat with a small table and short timeouts", () => {
  const lab = "nat-small";
  const ns = nsOf(lab);
  const yaml = fs
    .readFileSync(FILE, "utf8")
    .replace("name: service-nat", `name: ${lab}`)
    .replace("        - { sources: [10.244.1.0/24], interface: eth0 }", "        - { sources: [10.244.1.0/24], interface: eth0 }\n      maxEntries: 8\n      timeouts: { udp: 2, udpStream: 2, tcpTimeWait: 1, tcpClose: 1 }");
  const file = writeLabFile(lab, yaml);
  labUp(file, lab, true);

  it("a conntrack entry goes away after its timeout", async () => {
    inNs(ns("client"), ["sh", "-c", "echo hello | nc -u -w1 -p 4001 192.0.2.10 5000"]);
    const has = (): boolean => tapnetOk(["show", "conntrack", "--node", "node1", "--lab", lab, "--json"]).includes("4001");
    expect(has()).toBe(true);
    await sleep(3500); // 2 s timeout + the 200 ms expiry timer
    expect(has()).toBe(false);
  });

  it("a full table drops new flows and counts them while an established one continues", async () => {
    await sleep(2500); // let earlier flows expire
    const pinger = spawn("ip", ["netns", "exec", ns("web1"), "ping", "-n", "-c", "15", "-i", "0.2", "-W", "1", "192.0.2.10"], { stdio: ["ignore", "pipe", "ignore"] });
    let pingOut = "";
    pinger.stdout.on("data", (d: Buffer) => (pingOut += d.toString()));
    const pingDone = new Promise<void>((r) => pinger.on("exit", () => r()));
    await sleep(300);
    const before = stats(lab).nat.tableFull ?? 0;
    inNs(ns("client"), ["sh", "-c", "for p in $(seq 5001 5020); do echo x | nc -u -w0 -p $p 192.0.2.10 5000; done"]);
    expect((stats(lab).nat.tableFull ?? 0) - before).toBeGreaterThan(0);
    await pingDone;
    expect(pingOut).toMatch(/15 packets transmitted, 15 received/);
  });
});
