/**
 * What a tapnet node process may do: its capabilities, no_new_privs and a seccomp
 * allow-list. A node parses frames any host in its lab sends, in TypeScript and in C;
 * if that parsing ever goes wrong, the process that went wrong should hold as little
 * as possible.
 *
 *   Capabilities  Linux keeps them per thread, and Node.js starts V8 and libuv threads
 *                 before any of our code runs, so dropping them in-process (capset)
 *                 would leave those threads privileged. Instead the node is exec'ed
 *                 through util-linux setpriv (`nodeLauncher()`): the bounding set
 *                 is cut to NODE_CAPABILITIES and the inheritable set emptied before
 *                 exec, so the exec of the node as uid 0 grants exactly the bounding
 *                 set as permitted and effective, to every thread it will ever have,
 *                 and nothing it execs could get more.
 *   no_new_privs  set by setpriv before that exec (and again by the seccomp filter).
 *   seccomp       `installSeccomp()` at the end of TapnetNode.start(), when the TAPs,
 *                 sockets and control socket are open: the filter allows the calls
 *                 syscallRules() lists, on every thread (native/seccomp.c, TSYNC).
 *
 * The node stays uid 0. It must read its code wherever the repository is (often a
 * root-only home directory), read its configuration and create its root-only control
 * socket in the lab's 0700 directory under /run/tapnet. The price: uid 0 without
 * capabilities still has an owner's rights on root-owned files. Without
 * CAP_DAC_OVERRIDE and CAP_FOWNER it cannot touch anything root does not own, and the
 * seccomp list refuses every call that creates, removes, renames, links, truncates or
 * re-permits a file, and opening one write-only; but a root-owned file that exists
 * can still be opened read-write (the call that opens /dev/net/tun for a TAP cannot
 * be told apart from it by a filter) and rewritten in place.
 *
 * Escape hatch for debugging: TAPNET_NO_SECCOMP=1 in the node's environment (it
 * passes through `tapnet lab up` and the supervisor) skips the filter; the node says so
 * in its status.
 */
import fs from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import { tapRingFds } from "../io/tap-port.js";

/**
 * The capabilities a running node keeps, and why each:
 *   net_admin        TUNSETIFF creating a TAP (attaching to an existing one without an
 *                    owner needs none), TUNSETPERSIST; SO_RCVBUFFORCE / SO_SNDBUFFORCE
 *                    for tunnel sockets larger than net.core.rmem_max. TAP ports added
 *                    at run time need it after start-up too.
 * Re-opening its hosts' TAPs after a restart would need more: they live in the hosts'
 * namespaces (as eth0), and reaching a device in another namespace takes setns, i.e.
 * CAP_SYS_ADMIN. A node never gets that; its supervisor (src/lab/supervisor.ts, root)
 * attaches to them and the node inherits the fds (TAPNET_TAP_FDS, src/node/ports.ts).
 *   net_raw          AF_PACKET sockets (libpcap ports: veth hosts, node-to-node links,
 *                    the underlay port) and SOCK_RAW IPPROTO_IPIP (IPIP tunnels).
 *   net_bind_service binding a port below 1024: a BGP speaker on TCP 179, or a
 *                    tunnel configured on a low UDP port.
 * Everything else is dropped, from the bounding set too: no sys_admin, no
 * dac_override/dac_read_search/fowner (root-owned files only by owner rights), no
 * sys_ptrace, no setuid/setgid/setpcap (the sets cannot be widened again), no
 * sys_module, no bpf/perfmon.
 *   bpf, ipc_lock    only a node with xdp ports (AF_XDP, src/io/xdp-port.ts) keeps them:
 *                    it creates an XSKMAP and loads an XDP program when it opens them, and
 *                    registers a UMEM, whose pinned pages would otherwise count against
 *                    RLIMIT_MEMLOCK (8 MiB, and summed over every root process without
 *                    ipc_lock: two or three ports). The seccomp filter refuses bpf(),
 *                    mlock and AF_XDP sockets once the node has started.
 */
export const NODE_CAPABILITIES = ["net_admin", "net_raw", "net_bind_service"] as const;

/** The capabilities of the node a configuration describes: NODE_CAPABILITIES, and bpf with xdp ports. */
export function nodeCapabilities(config: { ports: ReadonlyArray<{ kind: string }> } | null): string[] {
  return [...NODE_CAPABILITIES, ...(config?.ports.some((p) => p.kind === "xdp") ? ["bpf", "ipc_lock"] : [])];
}

/** Capability bit numbers (linux/capability.h) to names, as `capsh --decode` prints them. */
export const CAPABILITY_NAMES = [
  "chown",
  "dac_override",
  "dac_read_search",
  "fowner",
  "fsetid",
  "kill",
  "setgid",
  "setuid",
  "setpcap",
  "linux_immutable",
  "net_bind_service",
  "net_broadcast",
  "net_admin",
  "net_raw",
  "ipc_lock",
  "ipc_owner",
  "sys_module",
  "sys_rawio",
  "sys_chroot",
  "sys_ptrace",
  "sys_pacct",
  "sys_admin",
  "sys_boot",
  "sys_nice",
  "sys_resource",
  "sys_time",
  "sys_tty_config",
  "mknod",
  "lease",
  "audit_write",
  "audit_control",
  "setfcap",
  "mac_override",
  "mac_admin",
  "syslog",
  "wake_alarm",
  "block_suspend",
  "audit_read",
  "perfmon",
  "bpf",
  "checkpoint_restore",
] as const;

/** The capability mask of a list of names (CapEff etc. in /proc/PID/status are this, in hex). */
export function capabilityMask(names: readonly string[]): bigint {
  let m = 0n;
  for (const n of names) {
    const bit = (CAPABILITY_NAMES as readonly string[]).indexOf(n);
    if (bit < 0) throw new Error(`unknown capability '${n}'`);
    m |= 1n << BigInt(bit);
  }
  return m;
}

/** Names of the capabilities in a mask; bits beyond the table as cap_N. */
export function capabilityNames(mask: bigint): string[] {
  const out: string[] = [];
  for (let bit = 0; bit < 64; bit++) {
    if ((mask >> BigInt(bit)) & 1n) out.push(CAPABILITY_NAMES[bit] ?? `cap_${bit}`);
  }
  return out;
}

export const NODE_CAPABILITY_MASK = capabilityMask(NODE_CAPABILITIES);

/**
 * The command that execs a node with its capabilities cut: prepend it to the node's
 * argv. setpriv drops the bounding set to NODE_CAPABILITIES and empties the
 * inheritable (and with it the ambient) set; the exec that follows, as uid 0, makes
 * permitted = effective = bounding. no_new_privs keeps any later exec from gaining.
 */
export function nodeLauncher(caps: readonly string[] = NODE_CAPABILITIES): string[] {
  return ["setpriv", `--bounding-set=-all,${caps.map((c) => `+${c}`).join(",")}`, "--inh-caps=-all", "--no-new-privs", "--"];
}

/**
 * The environment variable naming the TAP fds a restarted node inherits (src/node/ports.ts
 * reads it; here so the supervisor sets it without loading every port's module).
 */
export const TAP_FDS_ENV = "TAPNET_TAP_FDS";
/** The environment variable naming the fd of a standby node's socket to its supervisor (src/node/standby.ts). */
export const STANDBY_FD_ENV = "TAPNET_STANDBY_FD";

/**
 * The environment of a node: libuv must not use io_uring. libuv 1.45+ sends file
 * operations through an io_uring when the kernel has one; a ring set up before the
 * seccomp filter would need io_uring_enter afterwards, and io_uring is a large kernel
 * attack surface that the filter refuses (io_uring_setup fails, libuv then uses its
 * thread pool, which is what UV_USE_IO_URING=0 asks for from the start).
 */
export function nodeEnvironment(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { ...env, UV_USE_IO_URING: "0" };
}

export interface ProcessPrivileges {
  uid: number;
  /** Capability names of CapEff, CapPrm, CapBnd. */
  effective: string[];
  permitted: string[];
  bounding: string[];
  capEff: string;
  capPrm: string;
  capBnd: string;
  noNewPrivs: boolean;
  /** 0 none, 1 strict, 2 filter (Seccomp: in /proc/PID/status). */
  seccomp: number;
}

/** Reads /proc/PID/status (or /proc/PID/task/TID/status): uid, capabilities, no_new_privs, seccomp. */
export function readPrivileges(statusPath = "/proc/self/status"): ProcessPrivileges {
  const text = fs.readFileSync(statusPath, "utf8");
  const field = (name: string): string => {
    const m = new RegExp(`^${name}:\\s*(.*)$`, "m").exec(text);
    if (!m) throw new Error(`${statusPath} has no '${name}' line`);
    return m[1].trim();
  };
  const hex = (name: string): bigint => BigInt(`0x${field(name)}`);
  return {
    uid: Number(field("Uid").split(/\s+/)[1]), // the effective uid
    effective: capabilityNames(hex("CapEff")),
    permitted: capabilityNames(hex("CapPrm")),
    bounding: capabilityNames(hex("CapBnd")),
    capEff: field("CapEff"),
    capPrm: field("CapPrm"),
    capBnd: field("CapBnd"),
    noNewPrivs: field("NoNewPrivs") === "1",
    seccomp: Number(field("Seccomp")),
  };
}

/** True when this process already runs as nodeLauncher() would start it. */
export function isConfined(p: ProcessPrivileges = readPrivileges(), caps: readonly string[] = NODE_CAPABILITIES): boolean {
  const bnd = BigInt(`0x${p.capBnd}`);
  return p.noNewPrivs && (bnd & ~capabilityMask(caps)) === 0n;
}

/* Constants for the argument rules: linux/socket.h, linux/sched.h, asm-generic/fcntl.h,
 * asm-generic/ioctls.h, linux/if_tun.h, linux/sockios.h, linux/if_packet.h, linux/prctl.h. */
const AF_UNIX = 1;
const AF_INET = 2;
const AF_INET6 = 10;
const AF_PACKET = 17;
const CLONE_THREAD = 0x10000;
const O_ACCMODE = 3;
const O_RDWR = 2;
const O_CREAT = 0x40;
const O_TRUNC = 0x200;
const O_APPEND = 0x400;
const PR_SET_NAME = 15;
const PR_GET_NAME = 16;
const PR_CAPBSET_READ = 23;
const ENOSYS = os.constants.errno.ENOSYS;

/** ioctl requests a node makes or will make when it adds ports at run time. */
export const IOCTLS: Record<string, number> = {
  TCGETS: 0x5401, // isatty() of stdout/stderr (the log file): answers ENOTTY
  TIOCGWINSZ: 0x5413, // the same, for a terminal (a node run by hand)
  FIONREAD: 0x541b,
  FIONBIO: 0x5421, // libuv: non-blocking fds
  FIONCLEX: 0x5450,
  FIOCLEX: 0x5451,
  TUNSETIFF: 0x400454ca, // create or re-attach a TAP (CAP_NET_ADMIN)
  TUNSETPERSIST: 0x400454cb, // a TAP added at runtime outlives the process; a removed one stops doing so
  TUNSETOFFLOAD: 0x400454d0,
  TUNSETVNETHDRSZ: 0x400454d8,
  TUNGETFEATURES: 0x800454cf,
  TUNGETIFF: 0x800454d2,
  SIOCGIFNAME: 0x8910, // libpcap, and the addon's interfaceInfo()
  SIOCGIFFLAGS: 0x8913,
  SIOCGIFADDR: 0x8915,
  SIOCGIFMTU: 0x8921,
  SIOCGIFHWADDR: 0x8927,
  SIOCGIFINDEX: 0x8933,
  SIOCETHTOOL: 0x8946, // libpcap reads the offloads of the interface it opens
};

/**
 * setsockopt (level, option) pairs: the tunnel sockets (native/udp.c), libpcap's
 * packet sockets, and what Node sets on TCP sockets (a BGP speaker). Everything else is
 * refused, in particular the x_tables/ebtables/arptables/IPVS replace calls
 * (IPT_SO_SET_REPLACE and friends on SOL_IP/SOL_IPV6), which CAP_NET_ADMIN would
 * otherwise open to the node.
 */
export const SOCKOPTS: Array<[level: number, option: number, what: string]> = [
  [1, 2, "SOL_SOCKET SO_REUSEADDR"],
  [1, 6, "SOL_SOCKET SO_BROADCAST"],
  [1, 7, "SOL_SOCKET SO_SNDBUF"],
  [1, 8, "SOL_SOCKET SO_RCVBUF"],
  [1, 9, "SOL_SOCKET SO_KEEPALIVE"],
  [1, 11, "SOL_SOCKET SO_NO_CHECK"],
  [1, 15, "SOL_SOCKET SO_REUSEPORT"],
  [1, 26, "SOL_SOCKET SO_ATTACH_FILTER"],
  [1, 32, "SOL_SOCKET SO_SNDBUFFORCE"],
  [1, 33, "SOL_SOCKET SO_RCVBUFFORCE"],
  [0, 1, "SOL_IP IP_TOS"],
  [0, 2, "SOL_IP IP_TTL"],
  [0, 3, "SOL_IP IP_HDRINCL"],
  [0, 10, "SOL_IP IP_MTU_DISCOVER"],
  [41, 26, "SOL_IPV6 IPV6_V6ONLY"],
  [6, 1, "SOL_TCP TCP_NODELAY"],
  [6, 4, "SOL_TCP TCP_KEEPIDLE"],
  [6, 5, "SOL_TCP TCP_KEEPINTVL"],
  [6, 6, "SOL_TCP TCP_KEEPCNT"],
  [6, 14, "SOL_TCP TCP_MD5SIG"],
  [17, 103, "SOL_UDP UDP_SEGMENT"],
  [17, 104, "SOL_UDP UDP_GRO"],
  [263, 1, "SOL_PACKET PACKET_ADD_MEMBERSHIP"],
  [263, 2, "SOL_PACKET PACKET_DROP_MEMBERSHIP"],
  [263, 5, "SOL_PACKET PACKET_RX_RING"],
  [263, 8, "SOL_PACKET PACKET_AUXDATA"],
  [263, 10, "SOL_PACKET PACKET_VERSION"],
  [263, 12, "SOL_PACKET PACKET_RESERVE"],
  [263, 23, "SOL_PACKET PACKET_IGNORE_OUTGOING"],
];

export interface SeccompRule {
  name: string;
  /** Fail with this errno instead of the default EPERM (for calls libc falls back from). */
  errno?: number;
  /** All must hold: (argument[index] & mask) === value. Several rules for one name: any. */
  args?: Array<{ index: number; mask: number; value: number }>;
}

const allow = (...names: string[]): SeccompRule[] => names.map((name) => ({ name }));
/** Allowed when argument `index`, compared on its low 32 bits, is one of `values`. */
const allowIf = (name: string, index: number, values: number[]): SeccompRule[] => values.map((value) => ({ name, args: [{ index, mask: 0xffffffff, value }] }));
/** open/openat: read-only, or read-write without creating, truncating or appending. */
const FLAGS = O_ACCMODE | O_CREAT | O_TRUNC | O_APPEND;
const openRules = (name: string, index: number): SeccompRule[] => [
  { name, args: [{ index, mask: FLAGS, value: 0 }] },
  { name, args: [{ index, mask: FLAGS, value: O_RDWR }] },
];

/**
 * The system calls a started node may make.
 *
 * How the list was found: strace -f on every node process (all threads, from its exec)
 * through the whole integration suite — switching, VLANs, routing, NAT, VXLAN and IPIP
 * labs, iperf3 TCP with offloads, captures, every `show` command, ageing and neighbour
 * timers, SIGTERM shutdown. After the filter is in place those nodes made 30 distinct
 * calls: accept4 brk close epoll_ctl epoll_pwait exit exit_group fcntl fstat futex
 * getpid ioctl(TCGETS) madvise mmap mprotect munmap openat(O_RDONLY) poll read readv
 * recvmmsg rt_sigaction rt_sigprocmask rt_sigreturn sendmmsg sendto
 * setsockopt(PACKET_RX_RING) shutdown unlink write. To those the list adds
 *   - what opening a port at run time takes (a TAP, a libpcap port, a tunnel socket),
 *     which the nodes did before the filter: socket, bind, the ioctls and socket
 *     options above, eventfd2, uname (libpcap), reading /sys/class/net;
 *   - what a thread needs when libuv or V8 starts one (clone, rseq, set_robust_list,
 *     sigaltstack, prctl(PR_SET_NAME)), and what the C library may use instead of
 *     the vDSO or a newer call (clock_gettime, statx, faccessat2, epoll_pwait2, ...);
 *   - TCP for a BGP speaker (listen, connect, accept).
 * test/integration/sandbox.test.ts opens every kind of port after the filter is in.
 *
 * Left out on purpose: process creation (fork, clone without CLONE_THREAD, execve),
 * file creation and metadata changes (open with O_CREAT/O_TRUNC/O_APPEND or write-only,
 * mkdir, rename, link, unlink, chmod, chown, truncate), signals to other processes
 * (kill; tgkill only to this process), netlink sockets (with CAP_NET_ADMIN they would
 * reach nf_tables, routes, links), io_uring (but for the restricted rings of io "uring"
 * TAP ports, see above), bpf, ptrace, perf_event_open, keyctl,
 * mount, namespaces, module loading, memfd_create, userfaultfd. The control socket is
 * therefore not unlinked at shutdown: the next listen() on that path removes it, and
 * `lab down` removes the lab's directory.
 *
 * Every call no rule allows fails with EPERM and the process goes on: a call we
 * missed then fails like any other refused operation (an error the caller handles:
 * a counted drop, an error reply) instead of killing a node that forwards a lab's
 * traffic. Killing would be more final against an exploit, but the allow-list is what
 * stops one; an EPERM gives an attacker nothing but a failed call.
 */
export function syscallRules(pid = process.pid, uring = tapRingFds().length > 0): SeccompRule[] {
  return [
    // TAP ports with io "uring": their rings, made before the filter, restricted to
    // reading and writing their own TAP (native/uring.c) and to letting go of it at
    // close. io_uring_setup stays refused, so no other ring can appear; a ring that
    // existed before (libuv's) makes installSeccomp refuse instead.
    ...(uring ? allow("io_uring_enter", "io_uring_register") : []),
    // fds: TAPs, packet and UDP sockets, the control socket, the log.
    ...allow("read", "readv", "pread64", "write", "writev", "close", "lseek", "fcntl"),
    // Files, read-only: Node loads modules lazily, the status reply and the stats
    // reply read /proc/self, libpcap reads /sys/class/net; /dev/net/tun is opened
    // read-write for a TAP.
    ...openRules("openat", 2),
    ...openRules("open", 1),
    ...allow("newfstatat", "fstat", "stat", "lstat", "statx", "readlink", "readlinkat", "access", "faccessat", "faccessat2", "getcwd"),
    // Memory: V8's heap, code space (W^X flips), GC; malloc.
    ...allow("mmap", "munmap", "mprotect", "pkey_mprotect", "mremap", "madvise", "brk"),
    // Threads. clone only with CLONE_THREAD: no new processes. clone3 keeps its flags in
    // memory a filter cannot read: it answers ENOSYS, and glibc falls back to clone.
    { name: "clone", args: [{ index: 0, mask: CLONE_THREAD, value: CLONE_THREAD }] },
    { name: "clone3", errno: ENOSYS },
    ...allow("futex", "set_robust_list", "rseq", "gettid", "getpid", "sched_yield", "sched_getaffinity"),
    // Thread names; Node.js reads its own capabilities (capget, PR_CAPBSET_READ) before
    // it trusts some environment variables.
    ...allowIf("prctl", 0, [PR_SET_NAME, PR_GET_NAME, PR_CAPBSET_READ]),
    ...allow("nanosleep", "clock_nanosleep", "clock_gettime", "clock_getres", "gettimeofday", "time", "getrandom"),
    // The event loop.
    ...allow("epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd2", "pipe2", "poll", "ppoll"),
    // Signals: SIGTERM/SIGINT handlers, V8's and libuv's own; tgkill only within this
    // process (abort(), raise()).
    ...allow("rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "restart_syscall"),
    ...allowIf("tgkill", 0, [pid]),
    // Sockets: UNIX (control socket), INET (tunnels, interface ioctls, BGP), INET6,
    // PACKET (libpcap). libpcap tries a netlink socket for its ioctls first and falls
    // back to the others when that is refused.
    ...allowIf("socket", 0, [AF_UNIX, AF_INET, AF_INET6, AF_PACKET]),
    ...allow("bind", "listen", "accept", "accept4", "connect", "shutdown", "getsockname", "getpeername", "getsockopt"),
    ...allow("sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg"),
    ...SOCKOPTS.map(([level, option]) => ({
      name: "setsockopt",
      args: [
        { index: 1, mask: 0xffffffff, value: level },
        { index: 2, mask: 0xffffffff, value: option },
      ],
    })),
    ...allowIf("ioctl", 1, Object.values(IOCTLS)),
    // Process information (resource limits of this process only), exit.
    ...allow("getuid", "geteuid", "getgid", "getegid", "capget", "uname"),
    ...allowIf("prlimit64", 0, [0]),
    ...allow("getrlimit", "exit", "exit_group"),
  ];
}

export interface SandboxState {
  /** Set when the filter is in place: how many system calls it allows. */
  seccompAllowed: number | null;
  /** Why there is no filter (TAPNET_NO_SECCOMP=1, or the error). */
  seccompSkipped: string | null;
}

const state: SandboxState = { seccompAllowed: null, seccompSkipped: "not installed yet" };

interface SeccompBinding {
  seccompInstall(rules: SeccompRule[]): { allowed: number; skipped: string[] };
}

/**
 * Loads the allow-list into every thread of this process (native/seccomp.c).
 * TAPNET_NO_SECCOMP=1 skips it. Throws when the filter cannot be loaded: a node that
 * was asked for a filter does not run without one.
 */
export function installSeccomp(rules: SeccompRule[] = syscallRules(), env: NodeJS.ProcessEnv = process.env): SandboxState {
  if (env.TAPNET_NO_SECCOMP === "1") {
    state.seccompAllowed = null;
    state.seccompSkipped = "TAPNET_NO_SECCOMP=1";
    return { ...state };
  }
  const own = new Set(tapRingFds().map(String));
  const rings = ioUringFds().filter((fd) => !own.has(fd));
  if (rings.length) {
    throw new Error(
      `libuv set up an io_uring (fd ${rings.join(", ")}) that the seccomp filter would cut off: run the node with UV_USE_IO_URING=0, or TAPNET_NO_SECCOMP=1`,
    );
  }
  const require = createRequire(import.meta.url);
  const b = require("../../native/build/Release/tapnet.node") as SeccompBinding;
  const r = b.seccompInstall(rules);
  state.seccompAllowed = r.allowed;
  state.seccompSkipped = null;
  return { ...state };
}

/** File descriptors of this process that are io_uring instances. */
function ioUringFds(): string[] {
  const out: string[] = [];
  for (const fd of fs.readdirSync("/proc/self/fd")) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`) === "anon_inode:[io_uring]") out.push(fd);
    } catch {
      // closed meanwhile (the readdir's own fd)
    }
  }
  return out;
}

export interface SandboxReport {
  uid: number;
  /** Effective capabilities, by name. */
  capabilities: string[];
  noNewPrivs: boolean;
  /** "filter", or "disabled (why)". */
  seccomp: string;
  /** System calls the filter allows (null without a filter). */
  seccompAllowed: number | null;
}

/** What the node runs with, for its status reply and `tapnet lab status`. */
export function sandboxReport(): SandboxReport {
  const p = readPrivileges();
  const mode = ["disabled", "strict", "filter"][p.seccomp] ?? String(p.seccomp);
  return {
    uid: p.uid,
    capabilities: p.effective,
    noNewPrivs: p.noNewPrivs,
    seccomp: p.seccomp === 0 && state.seccompSkipped !== null ? `disabled (${state.seccompSkipped})` : mode,
    seccompAllowed: state.seccompAllowed,
  };
}

/** One line: "uid 0, caps net_bind_service,net_admin,net_raw, no_new_privs, seccomp filter (87 syscalls)". */
export function sandboxLine(r: SandboxReport): string {
  const caps = r.capabilities.length === CAPABILITY_NAMES.length ? "all" : r.capabilities.join(",") || "none";
  const sc = r.seccomp === "filter" && r.seccompAllowed !== null ? `seccomp filter (${r.seccompAllowed} syscalls)` : `seccomp ${r.seccomp}`;
  return `uid ${r.uid}, caps ${caps}, ${r.noNewPrivs ? "no_new_privs" : "new privileges allowed"}, ${sc}`;
}
