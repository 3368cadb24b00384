/**
 * NodeConfig — everything one tapnet process needs, as the lab builder writes it
 * (JSON): its ports, its switch, and when it routes its router, NAT and services.
 */
import type { NodeBgpConfig } from "../bgp/node-fib.js";
import type { ImpairSettings } from "../core/impair.js";
import type { SwitchPortMode } from "../elements/learning-switch.js";
import type { StormLimits } from "../elements/storm-control.js";
import type { StpPortConfig } from "../elements/stp.js";

export interface NodePortConfig {
  /** Port name as `show` and `capture` know it (the host or peer node's name). */
  name: string;
  /**
   * tap: a TAP device the node creates; pcap: an existing interface opened with
   * libpcap; xdp: an existing interface (a veth end) through an AF_XDP socket;
   * vxlan/ipip: a tunnel endpoint over the node namespace's kernel network.
   */
  kind: "tap" | "pcap" | "xdp" | "vxlan" | "ipip" | "mesh";
  /** Device name in the node's network namespace. */
  ifname: string;
  vlan: SwitchPortMode;
  /** Set when the port is a router's routed port: the interface that owns it. */
  routed?: string;
  /** The MTU of what is behind the port (a host's eth0), when set at runtime. */
  mtu?: number;
  vxlan?: {
    vni: number;
    dstPort: number;
    localAddr: string;
    remotes: string[];
    fdb: Array<{ mac: string; remote: string }>;
    arpSuppress: Array<{ ip: string; mac: string }>;
    learning: boolean;
    udpChecksum: boolean;
    underlayMtu: number;
  };
  ipip?: { localAddr: string; peers: string[]; underlayMtu: number };
  /** pcap ports: the BPF filter (default: not what the kernel sends out of the interface). */
  filter?: string;
  /** A mesh peer (src/mesh/): its name, TCP/UDP port, password, peers to connect to, own addresses. */
  mesh?: {
    name: string;
    port: number;
    password?: string;
    peers: string[];
    addresses: string[];
    underlayMtu: number;
    /** The address ring (src/mesh/ipam.ts): the pod range and the peers that own it at first. */
    ipam?: { range: string; seed: string[] };
  };
  /** Spanning tree port settings (the port takes part when the node runs STP and it is not routed). */
  stp?: StpPortConfig;
  /** Storm control: frames/s per class at the port's ingress. */
  stormControl?: StormLimits;
  /** Port security (a host's port). */
  portSecurity?: { maxMacs: number; violation: "restrict" | "shutdown"; sticky: boolean; macs: string[] };
  /** Faces another switch (a link, a tunnel, the underlay): ARP inspection trusts it. */
  trusted?: boolean;
  /** Link impairments (src/core/impair.ts) on what leaves the port (out) and what it receives (in). */
  impair?: { in?: ImpairSettings; out?: ImpairSettings };
}

export interface RouterInterfaceConfig {
  name: string;
  /** The switch VLAN the interface sits on (for a routed port, an internal VLAN). */
  vlan: number;
  mac: string;
  mtu: number;
  addresses: string[];
  proxyArp: boolean;
  /** Absent: on (Linux's default). */
  sendRedirects?: boolean;
  /** Absent: off (Linux's default accept_source_route 0). */
  acceptSourceRoute?: boolean;
  /** A DHCP server on this interface (src/elements/router/dhcp.ts). */
  dhcp?: { range: string; leaseTime: number; dns: string[] };
}

export interface NodeConfig {
  lab: string;
  node: string;
  controlSocket: string;
  /** Where accepted runtime changes are appended (and replayed from at start). */
  journal?: string;
  ports: NodePortConfig[];
  /** TAP ports with virtio-net headers and offloads; other ports segment super-frames in software. */
  offload?: boolean;
  /** How TAP ports move frames (TapPortOptions.io); absent: TAPNET_IO, else "rw". */
  io?: "rw" | "uring";
  /** Busy-poll window after each batch, in microseconds (native/busypoll.c); absent or 0: off. */
  busyPoll?: number;
  /** The supervisor keeps a standby node process parked to take over at once after a crash (src/node/standby.ts). */
  standby?: boolean;
  /**
   * The node's TAPs outlive the process (TUNSETPERSIST): set by `lab up`, whose
   * supervisor restarts a node that died and hands it its hosts' TAPs again.
   */
  persistentTaps?: boolean;
  switch: {
    ageingTime: number;
    maxEntries: number;
    static: Array<{ mac: string; vlan: number; port: string }>;
    /** IEEE 802.1D spanning tree; `mac` is the bridge's (its id's low 48 bits). Times in seconds. */
    stp?: { enabled: boolean; priority: number; helloTime: number; forwardDelay: number; maxAge: number; mac: string };
    /** Dynamic ARP inspection: the VLANs inspected, static bindings. */
    arpInspection?: { vlans: number[]; bindings: Array<{ ip: string; mac: string; vlan: number }> };
  };
  /** A BGP speaker (src/bgp): Calico's BGP modes. */
  bgp?: NodeBgpConfig;
  router?: {
    interfaces: RouterInterfaceConfig[];
    routes: Array<{ to: string; via?: string; dev?: string; onlink?: boolean; proto?: string }>;
    neighbors: Array<{ ip: string; mac: string; interface: string }>;
    /** Per-destination ICMP limit: ms per error (0: off) and the types limited (Linux's icmp_ratelimit, icmp_ratemask). */
    icmp?: { ratelimit: number; ratemask: number };
    nat?: { masquerade: Array<{ sources: string[]; interface: string }>; maxEntries?: number; timeouts: Record<string, number> };
    services: Array<{ name: string; vip: string; port: number; protocol: "tcp" | "udp"; backends: string[]; algorithm: "random" | "roundrobin" }>;
    /** The cluster DNS (src/elements/router/cluster-dns.ts). */
    clusterDns?: { address: string; domain: string };
  };
}
