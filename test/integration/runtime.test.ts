/**
 * Runtime changes with the real tools: routes that make and break pings, a host joining
 * and leaving a running lab, a service's backends replaced under a curl loop, refused
 * changes that change nothing, and `lab save` → `lab down` → `lab up` of what was saved.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, canRunLabs, inNs, netnsList, ping, tapnet, tapnetOk, waitFor, writeLabFile } from "./harness.js";

const ROUTED = `name: rtc
nodes:
  r1:
    interfaces:
      eth1: { port: h1, address: 10.0.1.1/24 }
      to-r2: { port: r2, address: 10.1.12.1/30 }
  r2:
    interfaces:
      to-r1: { port: r1, address: 10.1.12.2/30 }
      eth1: { port: h2, address: 10.0.2.1/24 }
    routes:
      - { to: 10.0.1.0/24, via: 10.1.12.1 }
hosts:
  h1: { node: r1, ip: 10.0.1.10/24, gateway: 10.0.1.1 }
  h2: { node: r2, ip: 10.0.2.10/24, gateway: 10.0.2.1 }
links:
  - { between: [r1, r2] }
`;

const ns = (lab: string, n: string): string => `tn.${lab}.${n}`;

function json<T>(args: string[]): T {
  return JSON.parse(tapnetOk([...args, "--json"])) as T;
}

describe.skipIf(!canRunLabs())("runtime changes: routes", () => {
  const file = writeLabFile("rtc", ROUTED);
  beforeAll(() => {
    tapnet(["lab", "down", file]);
    const up = tapnet(["lab", "up", file]);
    if (up.status !== 0) throw new Error(up.stderr);
  });
  afterAll(() => {
    tapnet(["lab", "down", file]);
    fs.rmSync(file, { force: true });
    expect(netnsList().filter((n) => n.startsWith("tn.rtc."))).toEqual([]);
  });

  it("a route added at runtime makes a ping succeed; deleted, the router answers Net Unreachable; route get names the route", () => {
    const before = ping(ns("rtc", "h1"), "10.0.2.10", 1);
    expect(before.status).not.toBe(0);
    expect(before.stdout).toMatch(/Destination Net Unreachable/);
    const add = tapnet(["route", "add", "10.0.2.0/24", "via", "10.1.12.2", "--node", "r1", "--lab", "rtc"]);
    expect(add.status, add.stderr).toBe(0);
    expect(ping(ns("rtc", "h1"), "10.0.2.10", 2).stdout).toMatch(/2 received/);
    expect(tapnetOk(["show", "route", "--node", "r1", "--lab", "rtc"])).toMatch(/^10\.0\.2\.0\/24 via 10\.1\.12\.2 dev to-r2 proto static$/m);
    const get = json<{ prefix: string; via: string; dev: string; src: string }>(["route", "get", "10.0.2.77", "--node", "r1", "--lab", "rtc"]);
    expect(get).toMatchObject({ prefix: "10.0.2.0/24", via: "10.1.12.2", dev: "to-r2", src: "10.1.12.1" });
    expect(tapnetOk(["route", "get", "10.0.2.77", "--node", "r1", "--lab", "rtc"])).toMatch(/via 10\.1\.12\.2 dev to-r2 .*10\.0\.2\.0\/24 proto static/);
    expect(tapnet(["route", "del", "10.0.2.0/24", "--node", "r1", "--lab", "rtc"]).status).toBe(0);
    const after = ping(ns("rtc", "h1"), "10.0.2.10", 1);
    expect(after.stdout).toMatch(/From 10\.0\.1\.1 icmp_seq=1 Destination Net Unreachable/);
    const none = tapnet(["route", "get", "10.0.2.77", "--node", "r1", "--lab", "rtc"]);
    expect(none.status).toBe(1);
    expect(none.stderr).toMatch(/no route to 10\.0\.2\.77/);
  });

  it("a refused change (bad CIDR, unknown port, next hop on no connected subnet, duplicate) changes nothing", () => {
    tapnetOk(["route", "add", "10.0.2.0/24", "via", "10.1.12.2", "--node", "r1", "--lab", "rtc"]);
    const state = (): string =>
      JSON.stringify([
        json(["show", "route", "--node", "r1", "--lab", "rtc"]),
        json(["show", "interfaces", "--node", "r1", "--lab", "rtc"]),
        json<Array<Record<string, unknown>>>(["show", "ports", "--node", "r1", "--lab", "rtc"]).map((p) => [p.name, p.mode, p.pvid]),
      ]);
    const before = state();
    const refused: Array<[string[], RegExp]> = [
      [["route", "add", "10.0.300.0/24", "via", "10.1.12.2"], /invalid IPv4 address "10\.0\.300\.0"/],
      [["route", "add", "10.9.0.0/16", "via", "10.77.0.1"], /next hop 10\.77\.0\.1 is not on a connected subnet/],
      [["route", "add", "10.0.2.0/24", "via", "10.1.12.2"], /exists already \(use 'route replace'\)/],
      [["route", "add", "10.0.3.5/24", "via", "10.1.12.2"], /host bits set/],
      [["route", "del", "10.0.1.0/24"], /connected subnet of eth1: delete the address instead/],
      [["link", "set", "nosuch", "down"], /no port 'nosuch'/],
      [["link", "set", "h1", "vlan", "10"], /belongs to router interface eth1/],
      [["neigh", "add", "10.5.5.5", "lladdr", "02:00:00:00:00:05", "dev", "eth1"], /not on a connected subnet of eth1/],
      [["addr", "add", "10.0.1.77/24", "dev", "to-r2"], /overlaps the subnet of interface eth1/],
      [["route", "add", "10.9.0.0/16", "via", "10.1.12.2", "proto"], /'proto' needs a value/],
    ];
    for (const [args, re] of refused) {
      const r = tapnet([...args, "--node", "r1", "--lab", "rtc"]);
      expect(r.status, args.join(" ")).toBe(1);
      expect(r.stderr, args.join(" ")).toMatch(re);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    }
    expect(state()).toBe(before);
  });

  it("tapnet router set changes send_redirects, accept_source_route and the ICMP limit (lab save keeps them); bad words are refused with one line", () => {
    const at = ["--node", "r1", "--lab", "rtc"];
    const refused: Array<[string[], RegExp]> = [
      [["router", "set", "send_redirects", "0"], /sendRedirects: say which interface \(dev\)/],
      [["router", "set", "dev", "eth9", "send_redirects", "0"], /dev: no router interface 'eth9'/],
      [["router", "set", "dev", "eth1", "send_redirects", "no"], /send_redirects: 'no' is not 0 or 1/],
      [["router", "set", "icmp_ratelimit", "fast"], /icmp_ratelimit: 'fast' is not a whole number/],
      [["router", "set", "icmp_ratelimit", "-5"], /icmpRatelimit: -5 is not an integer 0-600000/],
      [["router", "set", "icmp_ratemask", "0xzz"], /icmp_ratemask: '0xzz' is not a number/],
      [["router", "set", "icmp_ratemask", "0x80000"], /icmpRatemask: 524288 is not an integer 0-524287/],
      [["router", "set", "icmp_burst", "3"], /unexpected 'icmp_burst'/],
      [["router", "set", "dev", "eth1"], /say send_redirects \(with dev\), icmp_ratelimit or icmp_ratemask/],
      [["router", "set", "icmp_ratelimit"], /'icmp_ratelimit' needs a value/],
    ];
    for (const [args, re] of refused) {
      const r = tapnet([...args, ...at]);
      expect(r.status, args.join(" ")).toBe(1);
      expect(r.stderr, args.join(" ")).toMatch(re);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    }
    const saved = path.join(os.tmpdir(), `rtc-router-set-${process.pid}.yaml`);
    try {
      tapnetOk(["lab", "save", "rtc", "-o", saved]);
      // The saved file without its first line (a comment with the time of saving).
      const body = (): string => fs.readFileSync(saved, "utf8").split("\n").slice(1).join("\n");
      const before = body();
      expect(before).not.toMatch(/sendRedirects|acceptSourceRoute|ratelimit/);
      tapnetOk(["router", "set", "dev", "eth1", "send_redirects", "0", "accept_source_route", "1", "icmp_ratelimit", "250", "icmp_ratemask", "0x1818", ...at]);
      tapnetOk(["lab", "save", "rtc", "-o", saved]);
      const r1 = body().split("\n  r2:")[0];
      expect(r1).toMatch(
        /\n {6}eth1:\n(?: {8}\w+: .*\n)* {8}sendRedirects: false\n {8}acceptSourceRoute: true\n {6}to-r2:\n(?: {8}\w+: .*\n)* {4}icmp:\n {6}ratelimit: 250\n {6}ratemask: 6168(\n|$)/,
      );
      expect(r1.split("to-r2:")[1]).not.toMatch(/sendRedirects|acceptSourceRoute/);
      tapnetOk(["router", "set", "dev", "eth1", "send_redirects", "1", "accept_source_route", "0", "icmp_ratelimit", "1000", ...at]);
      tapnetOk(["lab", "save", "rtc", "-o", saved]);
      expect(body()).toBe(before);
    } finally {
      fs.rmSync(saved, { force: true });
    }
  });

  it("addresses and neighbours change at runtime; an interface set down passes nothing", () => {
    tapnetOk(["addr", "add", "10.0.7.1/24", "dev", "eth1", "--node", "r1", "--lab", "rtc"]);
    expect(tapnetOk(["show", "route", "--node", "r1", "--lab", "rtc"])).toMatch(/^10\.0\.7\.0\/24 dev eth1 proto kernel scope link src 10\.0\.7\.1$/m);
    expect(ping(ns("rtc", "h1"), "10.0.7.1", 1).status).toBe(0);
    tapnetOk(["addr", "del", "10.0.7.1/24", "dev", "eth1", "--node", "r1", "--lab", "rtc"]);
    expect(tapnetOk(["show", "route", "--node", "r1", "--lab", "rtc"])).not.toMatch(/10\.0\.7\.0/);
    tapnetOk(["neigh", "add", "10.0.1.99", "lladdr", "02:00:00:00:00:99", "dev", "eth1", "--node", "r1", "--lab", "rtc"]);
    expect(tapnetOk(["show", "neigh", "--node", "r1", "--lab", "rtc"])).toMatch(/^10\.0\.1\.99 dev eth1 lladdr 02:00:00:00:00:99 PERMANENT$/m);
    tapnetOk(["neigh", "del", "10.0.1.99", "dev", "eth1", "--node", "r1", "--lab", "rtc"]);
    tapnetOk(["link", "set", "h1", "down", "--node", "r1", "--lab", "rtc"]);
    expect(ping(ns("rtc", "h1"), "10.0.1.1", 1).status).not.toBe(0);
    tapnetOk(["link", "set", "h1", "up", "--node", "r1", "--lab", "rtc"]);
    expect(ping(ns("rtc", "h1"), "10.0.1.1", 1).status).toBe(0);
  });

  it("lab save writes the link's impairments (one end: impairAt; both ends alike: impair); lab up of the saved file runs them again", () => {
    const saved = path.join(os.tmpdir(), `rtc-impair-${process.pid}.yaml`);
    const at = (node: string): string[] => ["--node", node, "--lab", "rtc"];
    /** The impairment settings of each node's port on the link, as show ports gives them. */
    const linkImpair = (): Record<string, unknown> => {
      const ports = json<Record<string, Array<{ name: string; impair: Record<string, Record<string, unknown>> | null }>>>(["show", "ports", "--lab", "rtc"]);
      const pick = (node: string, port: string): unknown => {
        const im = ports[node].find((p) => p.name === port)?.impair ?? {};
        return Object.fromEntries(
          Object.entries(im).map(([dir, v]) => [dir, Object.fromEntries(["delay", "jitter", "loss", "rate", "duplicate", "reorder"].map((k) => [k, v[k]]))]),
        );
      };
      return { r1: pick("r1", "r2"), r2: pick("r2", "r1") };
    };
    const links = (): string => fs.readFileSync(saved, "utf8").split("\nlinks:")[1] ?? "";
    try {
      tapnetOk(["link", "set", "r2", "delay", "20ms", "5ms", "rate", "50mbit", ...at("r1")]);
      tapnetOk(["lab", "save", "rtc", "-o", saved]);
      expect(links()).toMatch(/impairAt:\n\s+r1:\n\s+out:\n\s+delay: 20\n\s+jitter: 5\n\s+rate: 50000000\n/);
      expect(links()).not.toMatch(/\n\s+r2:/);
      tapnetOk(["link", "set", "r1", "delay", "20ms", "5ms", "rate", "50mbit", ...at("r2")]);
      tapnetOk(["lab", "save", "rtc", "-o", saved]);
      expect(links()).toMatch(/\n\s+impair:\n\s+out:\n\s+delay: 20\n\s+jitter: 5\n\s+rate: 50000000\n/);
      expect(links()).not.toMatch(/impairAt/);
      tapnetOk(["link", "set", "r1", "dir", "in", "loss", "2%", "duplicate", "1%", ...at("r2")]);
      tapnetOk(["lab", "save", "rtc", "-o", saved]);
      expect(links()).toMatch(/impairAt:\n\s+r1:\n[\s\S]*\n\s+r2:\n[\s\S]*in:\n\s+loss: 2\n\s+duplicate: 1\n/);
      const running = linkImpair();
      expect(running).toMatchObject({ r2: { in: { loss: 2, duplicate: 1 }, out: { delay: 20, jitter: 5 } }, r1: { out: { delay: 20 } } });
      expect(tapnet(["lab", "down", "rtc"]).status).toBe(0);
      const up = tapnet(["lab", "up", saved]);
      expect(up.status, up.stderr).toBe(0);
      expect(linkImpair()).toEqual(running);
      // Cleared at both ends, the link is saved without impairments.
      for (const [node, port] of [
        ["r1", "r2"],
        ["r2", "r1"],
      ])
        tapnetOk(["link", "set", port, "dir", "both", "clear", ...at(node)]);
      tapnetOk(["lab", "save", "rtc", "-o", saved]);
      expect(links()).not.toMatch(/impair/);
    } finally {
      fs.rmSync(saved, { force: true });
    }
  });
});

describe.skipIf(!canRunLabs())("runtime changes: a host joins and leaves a running switch lab", () => {
  const file = path.join(ROOT, "scripts/labs/switch.yaml");
  beforeAll(() => {
    tapnet(["lab", "down", file]);
    const up = tapnet(["lab", "up", file]);
    if (up.status !== 0) throw new Error(up.stderr);
  });
  afterAll(() => {
    tapnet(["lab", "down", file]);
    expect(netnsList().filter((n) => n.startsWith("tn.switch."))).toEqual([]);
  });

  it("an added host pings the others and shows in show fdb; removed, it leaves no namespace or TAP", () => {
    const add = tapnet(["lab", "host", "add", "switch", "h9", "--node", "sw1", "--ip", "10.0.0.9/24"]);
    expect(add.status, add.stderr).toBe(0);
    expect(ping(ns("switch", "h9"), "10.0.0.1", 2).stdout).toMatch(/2 received/);
    expect(ping(ns("switch", "h2"), "10.0.0.9", 1).status).toBe(0);
    const mac = inNs(ns("switch", "h9"), ["cat", "/sys/class/net/eth0/address"]).stdout.trim();
    const fdb = json<Array<{ mac: string; port: string }>>(["show", "fdb", "--node", "sw1"]);
    expect(fdb).toContainEqual(expect.objectContaining({ mac, port: "h9" }));
    expect(tapnet(["lab", "status", "--json"]).stdout).toMatch(/"h9"/);
    const del = tapnet(["lab", "host", "del", "switch", "h9"]);
    expect(del.status, del.stderr).toBe(0);
    expect(netnsList()).not.toContain(ns("switch", "h9"));
    expect(inNs(ns("switch", "sw1"), ["ip", "-br", "link"]).stdout).not.toMatch(/^h9\b/m);
    expect(json<Array<{ name: string }>>(["show", "ports", "--node", "sw1"]).map((p) => p.name)).toEqual(["h1", "h2", "h3"]);
    expect(ping(ns("switch", "h1"), "10.0.0.2", 1).status).toBe(0);
  });

  it("a host that cannot join is refused and leaves nothing", () => {
    for (const [args, re] of [
      [["--node", "sw1", "--ip", "10.0.0.1/24"], /already host h1's address/],
      [["--node", "sw9", "--ip", "10.0.0.20/24"], /no node 'sw9'/],
      [["--node", "sw1", "--ip", "10.0.0.20/24", "--gateway", "10.9.9.9"], /not inside 10\.0\.0\.20\/24/],
      [["--node", "sw1", "--ip", "10.0.0.20/24", "--vlan", "5000"], /not a VLAN id/],
    ] as Array<[string[], RegExp]>) {
      const r = tapnet(["lab", "host", "add", "switch", "h20", ...args]);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(re);
      expect(netnsList()).not.toContain(ns("switch", "h20"));
    }
    expect(json<Array<{ name: string }>>(["show", "ports", "--node", "sw1"]).map((p) => p.name)).toEqual(["h1", "h2", "h3"]);
  });
});

describe.skipIf(!canRunLabs())("runtime changes: services and lab save", () => {
  const lab = "svc-rt";
  const yaml = fs.readFileSync(path.join(ROOT, "scripts/labs/service-nat.yaml"), "utf8").replace("name: service-nat", `name: ${lab}`);
  const file = writeLabFile(lab, yaml);
  const saved = path.join(os.tmpdir(), `tn-saved-${process.pid}.yaml`);
  beforeAll(async () => {
    tapnet(["lab", "down", file]);
    const up = tapnet(["lab", "up", file]);
    if (up.status !== 0) throw new Error(up.stderr);
    await waitFor(
      "web1 and web2 to answer",
      () => ["10.244.1.2", "10.244.1.3"].every((a) => inNs(ns(lab, "client"), ["curl", "-s", "--max-time", "2", `http://${a}/`]).status === 0),
      20_000,
      200,
    );
  });
  afterAll(() => {
    tapnet(["lab", "down", file]);
    tapnet(["lab", "down", saved]);
    fs.rmSync(file, { force: true });
    fs.rmSync(saved, { force: true });
    expect(netnsList().filter((n) => n.startsWith(`tn.${lab}.`))).toEqual([]);
  });

  it("a service's backends replaced under a curl loop: no request fails, new connections reach only the new backend", async () => {
    // One new connection every 50 ms for 8 s, each line: its start time (ms) and the answer.
    const script = `end=$(( $(date +%s%3N) + 8000 )); while [ $(date +%s%3N) -lt $end ]; do t=$(date +%s%3N); r=$(curl -s --max-time 2 http://10.96.0.10/ || echo FAIL); echo "$t $r"; sleep 0.05; done`;
    const loop = spawn("ip", ["netns", "exec", ns(lab, "client"), "sh", "-c", script], { stdio: ["ignore", "pipe", "ignore"] });
    let out = "";
    loop.stdout.on("data", (c: Buffer) => (out += c.toString()));
    const done = new Promise<void>((r) => loop.on("exit", () => r()));
    await waitFor("the loop to have answers from both backends", () => out.includes("web1") && out.includes("web2"), 6000, 50);
    const set = tapnet(["service", "set", "web", "--backend", "10.244.1.3:80", "--lab", lab]);
    const changed = Date.now();
    expect(set.status, set.stderr).toBe(0);
    await done;
    const lines = out
      .trim()
      .split("\n")
      .map((l) => l.split(" "));
    expect(lines.length).toBeGreaterThan(40);
    expect(lines.filter(([, r]) => r === "FAIL")).toEqual([]);
    const after = lines.filter(([t]) => Number(t) > changed + 10);
    expect(after.length).toBeGreaterThan(10);
    expect(new Set(after.map(([, r]) => r))).toEqual(new Set(["web2"]));
    expect(
      json<Array<{ name: string; backends: string[] }>>(["show", "services", "--node", "node1", "--lab", lab]).find((s) => s.name === "web")?.backends,
    ).toEqual(["10.244.1.3:80"]);
  }, 30_000);

  it("lab save, then lab down, then lab up of the saved file gives the same show route and show services", () => {
    tapnetOk(["route", "add", "10.50.0.0/16", "via", "192.0.2.10", "--lab", lab]);
    tapnetOk(["service", "add", "api", "--vip", "10.96.0.20", "--port", "8080", "--backend", "10.244.1.2:80", "--lab", lab]);
    tapnetOk(["masquerade", "add", "--source", "10.245.0.0/16", "--interface", "eth0", "--lab", lab]);
    const services = (): unknown =>
      json<Array<Record<string, unknown>>>(["show", "services", "--node", "node1", "--lab", lab]).map(({ connections: _, ...s }) => s);
    const routes = tapnetOk(["show", "route", "--node", "node1", "--lab", lab]);
    const svc = services();
    expect(tapnet(["lab", "save", lab, "-o", saved]).status).toBe(0);
    expect(tapnet(["lab", "down", file]).status).toBe(0);
    const up = tapnet(["lab", "up", saved]);
    expect(up.status, up.stderr).toBe(0);
    expect(tapnetOk(["show", "route", "--node", "node1", "--lab", lab])).toBe(routes);
    expect(services()).toEqual(svc);
    expect(fs.readFileSync(saved, "utf8")).toMatch(/10\.245\.0\.0\/16/);
    expect(tapnet(["lab", "down", saved]).status).toBe(0);
  });
});
