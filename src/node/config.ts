/**
 * NodeConfig — everything one tapnet process needs, as the lab builder writes it
 * (JSON): its ports, its switch, and when it routes its router, NAT and services.
 */
import type { SwitchPortMode } from "../elements/learning-switch.js";

export interface NodePortConfig {
  /** Port name as `show` and `capture` know it (the host or peer node's name). */
  name: string;
  /**
   * tap: a TAP device the node creates; pcap: an existing interface opened with
   * libpcap; vxlan/ipip: a tunnel endpoint over the node namespace's kernel network.
   */
  kind: "tap" | "pcap" | "vxlan" | "ipip" | "mesh";
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
  /** A mesh peer (src/mesh/): its name, TCP/UDP port, password, peers to connect to, own addresses. */
  mesh?: { name: string; port: number; password?: string; peers: string[]; addresses: string[]; underlayMtu: number };
}

export interface RouterInterfaceConfig {
  name: string;
  /** The switch VLAN the interface sits on (for a routed port, an internal VLAN). */
  vlan: number;
  mac: string;
  mtu: number;
  addresses: string[];
  proxyArp: boolean;
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
  switch: {
    ageingTime: number;
    maxEntries: number;
    static: Array<{ mac: string; vlan: number; port: string }>;
  };
  router?: {
    interfaces: RouterInterfaceConfig[];
    routes: Array<{ to: string; via?: string; dev?: string; onlink?: boolean; proto?: string }>;
    neighbors: Array<{ ip: string; mac: string; interface: string }>;
    nat?: { masquerade: Array<{ sources: string[]; interface: string }>; maxEntries?: number; timeouts: Record<string, number> };
    services: Array<{ name: string; vip: string; port: number; protocol: "tcp" | "udp"; backends: string[]; algorithm: "random" | "roundrobin" }>;
  };
}
