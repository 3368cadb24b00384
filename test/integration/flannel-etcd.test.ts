/**
 * flannel's control plane on a real etcd (Debian's etcd-server, three members) with real
 * etcdctl: scripts/labs/flannel-etcd.yaml, its lease TTL shortened to 5 s so an expired
 * lease is seen within the test. Nothing in the lab file routes between the nodes: every
 * route, neighbour and FDB entry checked here was programmed by an agent from etcd.
 */
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Background, CLI, ROOT, background, canRunLabs, inNs, netnsList, ping, tapnet, tapnetOk, waitFor, writeLabFile } from "./harness.js";

const LAB = "fl-etcd-test";
const ns = (n: string): string => `tn.${LAB}.${n}`;
const PREFIX = "/coreos.com/network";
const ENDPOINTS = "http://192.168.0.11:2379,http://192.168.0.12:2379,http://192.168.0.13:2379";

/** etcdctl in the first member's namespace (the only place the lab's etcd is reachable from). */
function etcdctl(args: string[]): string {
  const r = inNs(ns("etcd1"), ["etcdctl", "--endpoints", ENDPOINTS, "--dial-timeout", "3s", "--command-timeout", "5s", ...args]);
  if (r.status !== 0) throw new Error(`etcdctl ${args.join(" ")} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/** `etcdctl get --prefix KEY` as key -> value. */
function leases(): Map<string, string> {
  const lines = etcdctl(["get", "--prefix", `${PREFIX}/subnets/`])
    .split("\n")
    .filter(Boolean);
  const out = new Map<string, string>();
  for (let i = 0; i + 1 < lines.length; i += 2) out.set(lines[i], lines[i + 1]);
  return out;
}

interface AgentView {
  lease: { subnet: string; renewedAt: string } | null;
  etcd: { reachable: boolean; endpoint: string | null };
  peers: Array<{ subnet: string; publicIp: string; vtepMac: string; since: string }>;
  badValues: number;
}
const agent = (node: string): AgentView => JSON.parse(tapnetOk(["show", "agent", "--lab", LAB, "--node", node, "--json"])) as AgentView;
const routes = (node: string): string => tapnetOk(["show", "route", "--lab", LAB, "--node", node]);
const neighs = (node: string): string => tapnetOk(["show", "neigh", "--lab", LAB, "--node", node]);
const fdb = (node: string): string => tapnetOk(["show", "fdb", "--lab", LAB, "--node", node]);

interface State {
  agents: Record<string, { pid: number; log: string }>;
  etcd: Record<string, { pid: number; namespace: string }>;
}
const state = (): State => JSON.parse(fs.readFileSync(`/run/tapnet/${LAB}/state.json`, "utf8")) as State;

describe.skipIf(!canRunLabs())("flannel-etcd.yaml: subnet leases in a real etcd", () => {
  const text = fs
    .readFileSync(path.join(ROOT, "scripts/labs/flannel-etcd.yaml"), "utf8")
    .replace(/^name: flannel-etcd$/m, `name: ${LAB}`)
    .replace(/leaseTtl: 15/, "leaseTtl: 5");
  const file = writeLabFile(LAB, text);
  const extra: Background[] = [];

  /** Each etcd member's command line, read at lab up (to start a killed member again). */
  const memberArgv = new Map<string, string[]>();

  beforeAll(() => {
    tapnet(["lab", "down", file]);
    tapnetOk(["lab", "up", file, "-q"]);
    for (const [name, m] of Object.entries(state().etcd)) memberArgv.set(name, fs.readFileSync(`/proc/${m.pid}/cmdline`, "utf8").split("\0").filter(Boolean));
  }, 180_000);
  afterAll(async () => {
    for (const b of extra) await b.stop("SIGKILL");
    const r = tapnet(["lab", "down", file]);
    fs.rmSync(file, { force: true });
    expect(r.status, r.stderr).toBe(0);
    expect(netnsList().filter((n) => n.startsWith(`tn.${LAB}.`))).toEqual([]);
  });

  it("etcdctl shows one lease per node in flanneld's JSON, the VtepMAC being the node's flannel.1", () => {
    const l = leases();
    expect([...l.keys()].sort()).toEqual([1, 2, 3].map((i) => `${PREFIX}/subnets/10.244.${i}.0-24`));
    for (const i of [1, 2, 3]) {
      const v = JSON.parse(l.get(`${PREFIX}/subnets/10.244.${i}.0-24`) as string);
      const ifaces = JSON.parse(tapnetOk(["show", "interfaces", "--lab", LAB, "--node", `node${i}`, "--json"])) as Array<{ name: string; mac: string }>;
      const mac = ifaces.find((x) => x.name === "flannel.1")?.mac;
      expect(v).toEqual({ PublicIP: `192.168.0.${i}`, BackendType: "vxlan", BackendData: { VNI: 1, VtepMAC: mac } });
    }
    // Each lease is held by an etcd lease with the lab's TTL.
    // (The lease ID is a 64-bit integer in etcdctl's JSON: read as text, not as a JS number.)
    const id = /"lease":(\d+)/.exec(etcdctl(["get", `${PREFIX}/subnets/10.244.1.0-24`, "-w", "json"]))?.[1];
    expect(id).toBeDefined();
    const ttl = etcdctl(["lease", "timetolive", BigInt(id as string).toString(16)]);
    expect(ttl).toMatch(/granted with TTL\(5s\)/);
    // flanneld's config as the lab wrote it.
    expect(JSON.parse(etcdctl(["get", `${PREFIX}/config`, "--print-value-only"]))).toEqual({
      Network: "10.244.0.0/16",
      Backend: { Type: "vxlan", VNI: 1, Port: 8472 },
    });
  });

  it("every node has the agent's routes, neighbours and FDB entries for the others, and every pod pings every other", () => {
    for (const i of [1, 2, 3]) {
      const r = routes(`node${i}`);
      for (const j of [1, 2, 3].filter((j) => j !== i)) {
        expect(r).toMatch(new RegExp(`10\\.244\\.${j}\\.0/24 via 10\\.244\\.${j}\\.0 dev flannel\\.1 proto flannel`));
        expect(neighs(`node${i}`)).toContain(`10.244.${j}.0`);
        expect(fdb(`node${i}`)).toContain(`192.168.0.${j}`);
      }
      expect(
        agent(`node${i}`)
          .peers.map((p) => p.subnet)
          .sort(),
      ).toEqual([1, 2, 3].filter((j) => j !== i).map((j) => `10.244.${j}.0/24`));
    }
    for (const a of [1, 2, 3])
      for (const b of [1, 2, 3].filter((b) => b !== a)) {
        const r = ping(ns(`pod${a}a`), `10.244.${b}.2`, 2);
        expect(r.status, `pod${a}a -> pod${b}a: ${r.stdout}`).toBe(0);
      }
  });

  it("a lease written with etcdctl is programmed on every node; deleted, its routes go", async () => {
    const key = `${PREFIX}/subnets/10.244.42.0-24`;
    etcdctl(["put", key, JSON.stringify({ PublicIP: "192.168.0.42", BackendType: "vxlan", BackendData: { VNI: 1, VtepMAC: "02:00:00:00:42:42" } })]);
    for (const n of ["node1", "node2", "node3"]) {
      await waitFor(`${n}: route to 10.244.42.0/24`, () => /10\.244\.42\.0\/24 via 10\.244\.42\.0 dev flannel\.1 proto flannel/.test(routes(n)), 10_000, 200);
      expect(fdb(n)).toMatch(/02:00:00:00:42:42.*192\.168\.0\.42/);
      expect(neighs(n)).toMatch(/10\.244\.42\.0 .*02:00:00:00:42:42/);
    }
    etcdctl(["del", key]);
    for (const n of ["node1", "node2", "node3"]) {
      await waitFor(`${n}: route to 10.244.42.0/24 withdrawn`, () => !routes(n).includes("10.244.42.0/24"), 10_000, 200);
      expect(fdb(n)).not.toContain("02:00:00:00:42:42");
      expect(neighs(n)).not.toContain("10.244.42.0 ");
    }
  });

  it("bad values under the subnets prefix are counted and ignored; the agents keep running and forwarding", async () => {
    const before = agent("node1").badValues;
    const bad = [
      [`${PREFIX}/subnets/not-a-subnet`, '{"PublicIP":"192.168.0.9","BackendType":"vxlan"}'],
      [`${PREFIX}/subnets/10.244.50.0-24`, "{not json"],
      [`${PREFIX}/subnets/10.244.51.0-24`, '{"PublicIP":"300.1.1.1","BackendType":"vxlan","BackendData":{"VtepMAC":"02:00:00:00:00:01"}}'],
      [`${PREFIX}/subnets/10.244.52.0-24`, '{"PublicIP":"192.168.0.52","BackendType":"vxlan","BackendData":{"VtepMAC":"zz"}}'],
    ];
    for (const [k, v] of bad) etcdctl(["put", k, v]);
    await waitFor("node1's agent to count the 4 bad values", () => agent("node1").badValues >= before + 4, 10_000, 200);
    const st = state();
    for (const n of ["node1", "node2", "node3"]) {
      expect(fs.existsSync(`/proc/${st.agents[n].pid}`), `${n}'s agent is alive`).toBe(true);
      expect(routes(n)).not.toMatch(/10\.244\.5[012]\.0/);
    }
    expect(ping(ns("pod1a"), "10.244.2.2").status).toBe(0);
    for (const [k] of bad) etcdctl(["del", k]);
  });

  /** A `tapnet agent` for node1 under another prefix, run to its end (it should fail). */
  function agentUnder(prefix: string): { status: number | null; stderr: string } {
    const r = inNs(
      ns("node1"),
      [
        process.execPath,
        CLI,
        "agent",
        "--node",
        "node1",
        "--etcd-endpoints",
        ENDPOINTS,
        "--etcd-prefix",
        prefix,
        "--socket",
        `/run/tapnet/${LAB}/node1.sock`,
        "--public-ip",
        "192.168.0.1",
        "--ttl",
        "5",
        "--subnet-file",
        `/run/tapnet/${LAB}/test${prefix.replace(/\//g, "-")}.env`,
      ],
      30_000,
    );
    return { status: r.status, stderr: r.stderr };
  }

  it("a config with a bad Network, or a range with no free subnet, stops the agent with a clear error", () => {
    etcdctl(["put", "/test-bad/config", '{"Network":"10.99.0.0/33","Backend":{"Type":"vxlan"}}']);
    let r = agentUnder("/test-bad");
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("/test-bad/config: Network: '10.99.0.0/33': a prefix length is 0-32");
    // 10.99.0.0/23 in /24s hands out one subnet (the first is left out): 10.99.1.0, taken.
    etcdctl(["put", "/test-full/config", '{"Network":"10.99.0.0/23","SubnetLen":24,"Backend":{"Type":"vxlan"}}']);
    etcdctl([
      "put",
      "/test-full/subnets/10.99.1.0-24",
      '{"PublicIP":"192.168.0.77","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:77"}}',
    ]);
    r = agentUnder("/test-full");
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("node node1: no free subnet: all 1 /24 subnets of 10.99.1.0-10.99.1.0 in Network 10.99.0.0/23 are leased");
    etcdctl(["del", "--prefix", "/test-"]);
    // node1 itself was not touched: its lease and its peers are as before.
    expect(agent("node1").lease?.subnet).toBe("10.244.1.0/24");
    expect(ping(ns("pod1a"), "10.244.3.2").status).toBe(0);
  });

  it("an agent restarted keeps its subnet (its lease is still in etcd)", async () => {
    const st = state();
    const pid = st.agents.node2.pid;
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
    const leaseBefore = leases().get(`${PREFIX}/subnets/10.244.2.0-24`);
    process.kill(pid, "SIGKILL");
    await waitFor("node2's agent to exit", () => !fs.existsSync(`/proc/${pid}`), 10_000);
    // The same command line, as the lab ran it (its status socket is the lab's).
    expect(argv).toContain("agent");
    const b = background(ns("node2"), argv);
    extra.push(b);
    await b.waitFor(/lease 10\.244\.2\.0\/24 \(kept/, 30_000);
    expect(leases().get(`${PREFIX}/subnets/10.244.2.0-24`)).toBe(leaseBefore);
    expect(ping(ns("pod1a"), "10.244.2.2").status).toBe(0);
  });

  /** `lab node add` (its agent holds its lease when it returns). */
  function joinNode(node: string, address: string, pod: string): void {
    const out = tapnetOk(["lab", "node", "add", LAB, node, "--address", address, "--pod-cidr", pod]);
    expect(out).toContain(`node ${node} joined lab ${LAB}: underlay ${address}, lease ${pod}`);
  }

  it("a node added at runtime is routed to by the others within 5 s; deleted, its routes go", async () => {
    const out = tapnetOk(["lab", "node", "add", LAB, "node4", "--address", "192.168.0.4/24", "--pod-cidr", "10.244.4.0/24"]);
    expect(out).toContain("node node4 joined lab fl-etcd-test: underlay 192.168.0.4/24, lease 10.244.4.0/24");
    // When node4's agent wrote its lease (its log), and when each other agent had programmed
    // the route (its peer's `since`, taken after the node accepted the changes): within 5 s.
    const leased = /^(\S+) node4: lease 10\.244\.4\.0\/24/m.exec(fs.readFileSync(`/run/tapnet/${LAB}/node4.agent.log`, "utf8"))?.[1];
    expect(leased).toBeDefined();
    for (const n of ["node1", "node2", "node3"]) {
      const since = await waitFor(`${n}'s agent to program node4's subnet`, () => agent(n).peers.find((p) => p.subnet === "10.244.4.0/24")?.since, 30_000, 100);
      expect(Date.parse(since) - Date.parse(leased as string), `${n}: lease to route`).toBeLessThan(5_000);
      expect(routes(n)).toContain("10.244.4.0/24 via 10.244.4.0 dev flannel.1 proto flannel");
    }
    expect(leases().has(`${PREFIX}/subnets/10.244.4.0-24`)).toBe(true);
    expect(
      agent("node4")
        .peers.map((p) => p.subnet)
        .sort(),
    ).toEqual(["10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"]);
    // A pod on the new node, reached from a pod on an old one.
    tapnetOk(["lab", "host", "add", LAB, "pod4a", "--node", "node4", "--ip", "10.244.4.2/24", "--gateway", "10.244.4.1"]);
    let r = ping(ns("pod1a"), "10.244.4.2", 2);
    expect(r.status, r.stdout).toBe(0);
    // A node with hosts is not deleted.
    r = tapnet(["lab", "node", "del", LAB, "node4"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("node node4 still has hosts (pod4a): tapnet lab host del them first");
    tapnetOk(["lab", "host", "del", LAB, "pod4a"]);
    expect(tapnetOk(["lab", "node", "del", LAB, "node4"])).toContain(`node node4 left lab ${LAB}; ${PREFIX}/subnets/10.244.4.0-24 deleted from etcd`);
    for (const n of ["node1", "node2", "node3"])
      await waitFor(`${n}: route to 10.244.4.0/24 withdrawn`, () => !routes(n).includes("10.244.4.0/24"), 15_000, 100);
    expect(netnsList()).not.toContain(ns("node4"));
    expect(Object.keys(state().agents)).not.toContain("node4");
  });

  it("an agent killed without cleanup: its lease expires and the other nodes withdraw its route, neighbour and FDB entry", async () => {
    const st = state();
    const pid = st.agents.node3.pid;
    expect(ping(ns("pod1a"), "10.244.3.2").status).toBe(0);
    process.kill(pid, "SIGKILL");
    await waitFor("node3's lease to expire in etcd", () => !leases().has(`${PREFIX}/subnets/10.244.3.0-24`), 30_000, 250);
    for (const n of ["node1", "node2"]) {
      await waitFor(`${n}: route to 10.244.3.0/24 withdrawn`, () => !routes(n).includes("10.244.3.0/24"), 10_000, 200);
      expect(neighs(n)).not.toContain("10.244.3.0 ");
      expect(fdb(n)).not.toContain("192.168.0.3");
      expect(agent(n).peers.map((p) => p.subnet)).not.toContain("10.244.3.0/24");
    }
    expect(ping(ns("pod1a"), "10.244.3.2", 1).status).not.toBe(0);
    // The others still reach each other.
    expect(ping(ns("pod1a"), "10.244.2.2").status).toBe(0);
  });
  it("the member the agents talk to killed: they go on with the other two (leases renew, a new node joins)", async () => {
    const m = state().etcd.etcd1;
    expect(agent("node1").etcd).toMatchObject({ reachable: true, endpoint: "http://192.168.0.11:2379" });
    process.kill(m.pid, "SIGKILL");
    await waitFor("etcd1 to exit", () => !fs.existsSync(`/proc/${m.pid}`), 10_000);
    const since = Date.now();
    for (const n of ["node1", "node2"]) {
      await waitFor(
        `${n}'s agent to renew its lease on another member`,
        () => {
          const a = agent(n);
          return a.etcd.reachable && a.etcd.endpoint !== "http://192.168.0.11:2379" && a.lease !== null && Date.parse(a.lease.renewedAt) > since;
        },
        30_000,
        250,
      );
    }
    // A new node joins with a member down.
    joinNode("node5", "192.168.0.5/24", "10.244.5.0/24");
    for (const n of ["node1", "node2"])
      await waitFor(`${n}: route to node5's 10.244.5.0/24`, () => routes(n).includes("10.244.5.0/24 via 10.244.5.0 dev flannel.1 proto flannel"), 30_000, 250);
    expect(ping(ns("pod1a"), "10.244.5.1").status).toBe(0);
    tapnetOk(["lab", "node", "del", LAB, "node5"]);
    expect(ping(ns("pod1a"), "10.244.2.2").status).toBe(0);
  });

  it("all of etcd stopped: pods keep talking, the agents say etcd is unreachable; etcd back: they renew and a new node joins", async () => {
    // etcd1 was killed by the test before; the other two now.
    const members = Object.entries(state().etcd);
    for (const [name, m] of members) if (name !== "etcd1") process.kill(m.pid, "SIGKILL");
    for (const [, m] of members) await waitFor(`etcd ${m.pid} to exit`, () => !fs.existsSync(`/proc/${m.pid}`), 10_000);
    await waitFor("node1's agent to notice etcd is gone", () => !agent("node1").etcd.reachable, 30_000, 250);
    const r = ping(ns("pod1a"), "10.244.2.2", 3);
    expect(r.status, r.stdout).toBe(0);
    expect(routes("node2")).toContain("10.244.1.0/24 via 10.244.1.0 dev flannel.1 proto flannel");
    // The same members again, from their data directories.
    for (const [name, m] of members) {
      const argv = memberArgv.get(name) as string[];
      expect(argv[0]).toMatch(/etcd$/);
      extra.push(background(m.namespace, argv));
    }
    const since = Date.now();
    await waitFor(
      "node1's agent to renew its lease after etcd returns",
      () => {
        const a = agent("node1");
        return a.etcd.reachable && a.lease !== null && Date.parse(a.lease.renewedAt) > since;
      },
      60_000,
      250,
    );
    expect(leases().has(`${PREFIX}/subnets/10.244.1.0-24`)).toBe(true);
    // A new node joins after etcd returned (the others' watches were set up anew).
    joinNode("node6", "192.168.0.6/24", "10.244.6.0/24");
    await waitFor(
      "node1: route to node6's 10.244.6.0/24",
      () => routes("node1").includes("10.244.6.0/24 via 10.244.6.0 dev flannel.1 proto flannel"),
      30_000,
      250,
    );
    expect(ping(ns("pod1a"), "10.244.6.1").status).toBe(0);
    tapnetOk(["lab", "node", "del", LAB, "node6"]);
    expect(ping(ns("pod2a"), "10.244.1.2").status).toBe(0);
  });
});
