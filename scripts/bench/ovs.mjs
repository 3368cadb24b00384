// Open vSwitch's userspace datapath as a reference row of the switch scenario of
// scripts/bench.mjs (opt-in: --ovs, or --impls naming the rows).
//
//   OVS netdev (AF_PACKET)  a bridge with datapath_type=netdev and two veth ports of type
//                           "system" (netdev-linux: an AF_PACKET socket per port, polled by
//                           the daemon's main thread); the hosts send with `tx off`, as the
//                           netdev datapath does not finish a partial checksum.
//   OVS netdev (AF_XDP)     the same bridge with ports of type "afxdp" (an AF_XDP socket on
//                           the veth, XDP in native mode, copy mode: veth has no zero-copy),
//                           polled by one PMD thread pinned to CPU 1 that busy-polls
//                           (pmd-cpu-mask=0x2): the CPU per frame counts its spinning.
//
// Confinement: ovsdb-server and ovs-vswitchd run inside a network namespace the bench makes
// (tnb-ovs…-sw, holding the switch's ends of the hosts' veths), started through `ip netns exec`
// (so the PIDs the bench tracks are the daemons' own, and --cleanup finds them by namespace),
// in the foreground (no --detach, no --monitor), with every file in a private directory under
// the bench's temp dir: database, pidfiles, unixctl sockets, logs, and OVS_RUNDIR (the
// bridges' management sockets). The database listens on a Unix socket only (punix:), no
// TCP; no controller, no manager. Nothing uses /var/run/openvswitch or a system service.
// Needs openvswitch-switch (Debian), installed here with apt-get when missing (scripts/setup.sh
// --bench installs it too).
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

/** The rows, by name: the tag of their namespaces and files, the ports' Interface type. */
export const OVS_ROWS = {
  "OVS netdev (AF_PACKET)": { tag: "ovsp", type: "system" },
  "OVS netdev (AF_XDP)": { tag: "ovsx", type: "afxdp" },
};

const SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema";
const bin = (name) => [`/usr/sbin/${name}`, `/usr/bin/${name}`].find((f) => fs.existsSync(f)) ?? name;

/** openvswitch-switch, installed with apt-get when missing (as scripts/setup.sh --bench does). */
export function ensureOvs(say) {
  if (fs.existsSync("/usr/sbin/ovs-vswitchd") && fs.existsSync(SCHEMA)) return;
  say("switch: installing openvswitch-switch (the OVS reference)");
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const r = spawnSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", "openvswitch-switch"], { encoding: "utf8", env });
  if (r.status !== 0) throw new Error(`apt-get install openvswitch-switch failed: ${(r.stderr || r.stdout).trim().split("\n").slice(-2).join(" ")}`);
}

/**
 * Whether this ovs-vswitchd was built with AF_XDP: its interface types list "afxdp".
 * Asked of a running daemon (ovs-appctl dpif/show-dp-features does not list port types; the
 * Open_vSwitch table's iface_types does).
 */
function ifaceTypes(vsctl) {
  const out = vsctl(["get", "Open_vSwitch", ".", "iface_types"]);
  return out
    .replace(/[[\]\s]/g, "")
    .split(",")
    .filter(Boolean);
}

/**
 * One OVS row: c is the bench's helpers (controlHelpers() plus measure, cpuSeconds,
 * peakRssKiB, linkPackets). Returns measure()'s result.
 */
export function ovsImpl(c, name) {
  const row = OVS_ROWS[name];
  const N = `${c.NS_PREFIX}${row.tag}-sw`;
  const H1 = `${c.NS_PREFIX}${row.tag}-h1`;
  const H2 = `${c.NS_PREFIX}${row.tag}-h2`;
  return async () => {
    ensureOvs(c.say);
    const mine = [];
    const procs = [];
    try {
      for (const n of [N, H1, H2]) {
        c.addNs(n);
        mine.push(n);
      }
      const dir = path.join(c.tmpDir(), row.tag);
      fs.mkdirSync(dir, { recursive: true });
      const db = path.join(dir, "conf.db");
      const dbSock = path.join(dir, "db.sock");
      const vsCtl = path.join(dir, "ovs-vswitchd.ctl");
      // Every path OVS would otherwise take from its compiled-in /var/run, /etc, /var/log.
      const env = ["env", `OVS_RUNDIR=${dir}`, `OVS_DBDIR=${dir}`, `OVS_LOGDIR=${dir}`, `OVS_SYSCONFDIR=${dir}`, `OVS_PKGDATADIR=/usr/share/openvswitch`];
      c.sh([bin("ovsdb-tool"), "create", db, SCHEMA]);
      const ovsdb = c.startDaemon(
        [
          "ip",
          "netns",
          "exec",
          N,
          ...env,
          bin("ovsdb-server"),
          db,
          `--remote=punix:${dbSock}`,
          `--pidfile=${path.join(dir, "ovsdb-server.pid")}`,
          `--unixctl=${path.join(dir, "ovsdb-server.ctl")}`,
          `--log-file=${path.join(dir, "ovsdb-server.log")}`,
          "-vconsole:off",
        ],
        "ovsdb-server",
      );
      procs.push(ovsdb.pid);
      await c.waitFor("ovsdb-server's socket", () => fs.existsSync(dbSock) || !c.alive(ovsdb.pid), 10_000, 20);
      if (!c.alive(ovsdb.pid)) throw new Error(`ovsdb-server exited: ${ovsdb.output().trim().split("\n").slice(-3).join(" ")}`);
      const vsctl = (args) => c.sh(["ip", "netns", "exec", N, ...env, bin("ovs-vsctl"), `--db=unix:${dbSock}`, "--timeout=20", ...args]);
      vsctl(["--no-wait", "init"]);
      const vswitchd = c.startDaemon(
        [
          "ip",
          "netns",
          "exec",
          N,
          ...env,
          bin("ovs-vswitchd"),
          `unix:${dbSock}`,
          `--pidfile=${path.join(dir, "ovs-vswitchd.pid")}`,
          `--unixctl=${vsCtl}`,
          `--log-file=${path.join(dir, "ovs-vswitchd.log")}`,
          "-vconsole:off",
        ],
        "ovs-vswitchd",
      );
      procs.push(vswitchd.pid);
      await c.waitFor("ovs-vswitchd's control socket", () => fs.existsSync(vsCtl) || !c.alive(vswitchd.pid), 15_000, 20);
      if (!c.alive(vswitchd.pid)) throw new Error(`ovs-vswitchd exited: ${vswitchd.output().trim().split("\n").slice(-3).join(" ")}`);
      for (const [pid, comm] of [
        [ovsdb.pid, "ovsdb-server"],
        [vswitchd.pid, "ovs-vswitchd"],
      ]) {
        // `ip netns exec` and `env` exec: the PIDs we started are the daemons' own.
        const got = fs.readFileSync(`/proc/${pid}/comm`, "utf8").trim();
        if (got !== comm) throw new Error(`pid ${pid} is '${got}', not ${comm}`);
      }
      if (row.type === "afxdp") {
        const types = ifaceTypes(vsctl);
        if (!types.includes("afxdp")) {
          const e = new Error(`this ovs-vswitchd has no AF_XDP (iface_types: ${types.join(", ")})`);
          e.na = true;
          throw e;
        }
        // One PMD thread on CPU 1 (trafgen is pinned to CPU 0).
        vsctl(["set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x2"]);
      }
      vsctl(["add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev"]);
      for (const [ns, ip, port] of [
        [H1, "10.0.0.1/24", "p1"],
        [H2, "10.0.0.2/24", "p2"],
      ]) {
        c.veth(N, port, ns, "eth0");
        c.ipn(N, [`link set ${port} up`]);
        // The netdev datapath forwards a frame as it came: a partial checksum (CHECKSUM_PARTIAL
        // from the sender's stack) would reach the other host unfinished.
        c.sh(["ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "tx", "off"]);
        c.hostAddr(ns, "eth0", ip);
        const opt = row.type === "afxdp" ? ["--", "set", "interface", port, "type=afxdp", "options:xdp-mode=native"] : [];
        vsctl(["add-port", "br0", port, ...opt]);
      }
      // The ports' state as the daemon sees it: an AF_XDP port that failed to open says why here.
      const errs = vsctl(["--bare", "--columns=name,error", "find", "Interface", "error!=[]"]).trim();
      if (errs) throw new Error(`OVS ports failed: ${errs.replace(/\n+/g, " ")}`);
      // Kept in the JSON: each port's type and status (an afxdp port's status names its XDP mode).
      const ports = Object.fromEntries(
        ["p1", "p2"].map((p) => [p, { type: vsctl(["get", "Interface", p, "type"]).trim(), status: vsctl(["get", "Interface", p, "status"]).trim() }]),
      );
      await c.waitReachable(H1, "10.0.0.2");
      const frames = () => c.linkPackets(H1, "eth0").rx + c.linkPackets(H2, "eth0").rx;
      const probe = {
        read: async () => {
          const cpuS = c.cpuSeconds(vswitchd.pid);
          if (cpuS === null) throw new Error("ovs-vswitchd is gone");
          return { cpuS, frames: frames() };
        },
        peakRss: () => ({ kib: c.peakRssKiB(vswitchd.pid), what: "VmHWM KiB of ovs-vswitchd" }),
      };
      const m = await c.measure({ client: H1, server: H2, dst: "10.0.0.2", probe });
      return {
        ...m,
        ovs: {
          version: c.sh([bin("ovs-vswitchd"), "--version"]).split("\n")[0],
          portType: row.type,
          ports,
          pids: { ovsdbServer: ovsdb.pid, vswitchd: vswitchd.pid },
        },
      };
    } finally {
      // vswitchd first (it removes its ports from the database's view), then the database.
      for (const pid of procs.reverse()) c.stopProc(pid);
      for (const n of mine.reverse()) c.quietly(() => c.delNs(n));
    }
  };
}
