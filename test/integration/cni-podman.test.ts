/**
 * A real runtime calls the tapnet CNI plugin: Debian's podman, with the CNI network backend
 * and the conflist `tapnet cni install` writes (cniVersion 0.4.0, as podman reads it), runs
 * a container from a local busybox-static root filesystem (no registry is reachable). The
 * container gets a port of the lab's node with an address from host-local and pings a lab
 * host; removing the container by its ID removes the port and frees the address.
 *
 * podman's own state (storage, runroot, network configs, containers.conf) stays in a
 * temporary directory; runc because crun refuses hybrid cgroups; explicit ulimits because
 * podman's default open-files limit is not allowed on these machines.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { portName } from "../../src/cni/plugin.js";
import { canRunLabs, netnsList, tapnet, tapnetOk, writeLabFile } from "./harness.js";

const LAB = `name: cnipod
nodes:
  n1:
    interfaces:
      cni0: { vlan: 1, address: 10.89.0.1/24 }
    services:
      web: { vip: 10.96.0.20, port: 80, backends: ["10.89.0.200:80"] }
    clusterDns: { address: 10.96.0.10 }
hosts:
  h1: { node: n1, ip: 10.89.0.200/24, gateway: 10.89.0.1 }
`;

const present = (f: string): boolean => fs.existsSync(f);
const havePodman = present("/usr/bin/podman") && present("/usr/sbin/runc") && present("/bin/busybox") && present("/usr/lib/cni/host-local");

const TMP = fs.mkdtempSync(path.join(os.tmpdir(), "tapnet-cnipod-"));
const BIN = path.join(TMP, "bin");
const CONF = path.join(TMP, "net.d");
const DATA = path.join(TMP, "ipam");
const ROOTFS = path.join(TMP, "rootfs");
const CONTAINERS_CONF = path.join(TMP, "containers.conf");
const NAME = "tnpod-c1";

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function podman(args: string[], timeoutMs = 120_000): Run {
  const r = spawnSync(
    "timeout",
    [
      "-k",
      "5",
      String(Math.ceil(timeoutMs / 1000)),
      "podman",
      "--root",
      path.join(TMP, "storage"),
      "--runroot",
      path.join(TMP, "runroot"),
      "--runtime",
      "runc",
      "--cgroup-manager",
      "cgroupfs",
      ...args,
    ],
    { env: { ...process.env, CONTAINERS_CONF }, encoding: "utf8", timeout: timeoutMs + 10_000 },
  );
  return { status: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

const RUN_OPTS = ["--network", "tnpod", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"];

function nodePorts(): string[] {
  return (JSON.parse(tapnetOk(["show", "ports", "--node", "n1", "--lab", "cnipod", "--json"])) as Array<{ name: string }>).map((p) => p.name);
}

const leases = (): string[] =>
  fs.existsSync(path.join(DATA, "tnpod")) ? fs.readdirSync(path.join(DATA, "tnpod")).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [];

describe.skipIf(!canRunLabs() || !havePodman)("podman runs a container on a tapnet CNI network", () => {
  const file = writeLabFile("cnipod", LAB);

  beforeAll(() => {
    tapnet(["lab", "down", file]);
    const up = tapnet(["lab", "up", file]);
    if (up.status !== 0) throw new Error(up.stderr);
    tapnetOk([
      "cni",
      "install",
      "--bin-dir",
      BIN,
      "--conf-dir",
      CONF,
      "--lab",
      "cnipod",
      "--node",
      "n1",
      "--network",
      "tnpod",
      "--subnet",
      "10.89.0.0/24",
      "--gateway",
      "10.89.0.1",
      "--range-end",
      "10.89.0.100",
      "--data-dir",
      DATA,
      "--cni-version",
      "0.4.0",
      "--dns",
      "10.96.0.10",
      "--search",
      "default.svc.cluster.local,svc.cluster.local,cluster.local",
    ]);
    // A root filesystem from busybox-static: the binary, its applet links, empty mount points.
    for (const d of ["bin", "etc", "proc", "sys", "dev", "tmp"]) fs.mkdirSync(path.join(ROOTFS, d), { recursive: true });
    fs.copyFileSync("/bin/busybox", path.join(ROOTFS, "bin", "busybox"));
    fs.chmodSync(path.join(ROOTFS, "bin", "busybox"), 0o755);
    for (const a of ["sh", "ping", "ip", "cat", "sleep", "nslookup"]) fs.symlinkSync("busybox", path.join(ROOTFS, "bin", a));
    fs.writeFileSync(CONTAINERS_CONF, `[network]\nnetwork_backend = "cni"\ncni_plugin_dirs = ["${BIN}", "/usr/lib/cni"]\nnetwork_config_dir = "${CONF}"\n`);
  });

  afterAll(() => {
    podman(["rm", "-f", "-t", "0", NAME], 60_000);
    tapnet(["lab", "down", file]);
    fs.rmSync(file, { force: true });
    // podman's storage may hold root-owned overlay mounts: unmount what is under TMP first.
    spawnSync("sh", ["-c", `grep -o ' ${TMP}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l`]);
    fs.rmSync(TMP, { recursive: true, force: true });
    expect(netnsList().filter((n) => n.startsWith("tn.cnipod."))).toEqual([]);
  });

  it("podman sees the tapnet network from the conflist tapnet cni install wrote", () => {
    const ls = podman(["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    expect(ls.status, ls.stderr).toBe(0);
    expect(ls.stdout).toMatch(/^tnpod tapnet$/m);
  });

  it("a container run with --rm gets a node port and an address, pings a lab host, and leaves nothing behind", () => {
    const before = nodePorts();
    const r = podman(["run", "--rm", ...RUN_OPTS, "--rootfs", ROOTFS, "/bin/sh", "-c", "ip -4 addr show dev eth0; ip route; ping -c 2 10.89.0.200"]);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/inet 10\.89\.0\.2\/24/);
    expect(r.stdout).toMatch(/^default via 10\.89\.0\.1 dev eth0/m);
    expect(r.stdout).toMatch(/2 packets transmitted, 2 packets received/);
    expect(nodePorts()).toEqual(before);
    expect(leases()).toEqual([]);
  });

  it("the container gets the CNI result's DNS as its resolv.conf and resolves a service by FQDN and short name; an unknown one gets NXDOMAIN", () => {
    const script =
      "cat /etc/resolv.conf; nslookup web.default.svc.cluster.local; echo ==short; nslookup web; echo ==unknown; nslookup nosuch.default.svc.cluster.local; echo rc=$?";
    const r = podman(["run", "--rm", ...RUN_OPTS, "--rootfs", ROOTFS, "/bin/sh", "-c", script]);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^nameserver 10\.96\.0\.10$/m);
    expect(r.stdout).toMatch(/^search .*default\.svc\.cluster\.local svc\.cluster\.local cluster\.local/m);
    const [full, short, unknown] = r.stdout.split(/^==\w+$/m);
    expect(full).toMatch(/Name:\s+web\.default\.svc\.cluster\.local\s+Address: 10\.96\.0\.20/);
    // busybox nslookup walks resolv.conf's search path for a name without dots.
    expect(short).toMatch(/Name:\s+web\.default\.svc\.cluster\.local\s+Address: 10\.96\.0\.20/);
    expect(unknown).toMatch(/NXDOMAIN/);
    expect(unknown).toMatch(/^rc=1$/m);
  });

  it("a detached container's port is named after its ID, it pings a lab host and another container pings it; podman rm by ID removes the port and frees the address", () => {
    const before = nodePorts();
    const r = podman(["run", "-d", "--name", NAME, ...RUN_OPTS, "--rootfs", ROOTFS, "/bin/sleep", "600"]);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const id = r.stdout.trim().split("\n").pop() as string;
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    // The plugin was called with CNI_CONTAINERID = the container's ID and CNI_IFNAME eth0.
    expect(nodePorts().filter((p) => !before.includes(p))).toEqual([portName(id, "eth0")]);
    const held = leases();
    expect(held).toHaveLength(1);
    expect(fs.readFileSync(path.join(DATA, "tnpod", held[0]), "utf8")).toMatch(new RegExp(`^${id}`));
    const p = podman(["exec", id, "/bin/ping", "-c", "2", "10.89.0.200"]);
    expect(p.status, p.stdout + p.stderr).toBe(0);
    expect(p.stdout).toMatch(/2 packets received/);
    // Another pod, a second container, reaches the first through the node's switch.
    const other = podman(["run", "--rm", ...RUN_OPTS, "--rootfs", ROOTFS, "/bin/ping", "-c", "2", held[0]]);
    expect(other.status, other.stdout + other.stderr).toBe(0);
    expect(other.stdout).toMatch(/2 packets transmitted, 2 packets received/);
    expect(leases()).toEqual(held);
    const rm = podman(["rm", "-f", "-t", "0", id]);
    expect(rm.status, rm.stdout + rm.stderr).toBe(0);
    expect(nodePorts()).toEqual(before);
    expect(leases()).toEqual([]);
  });
});
