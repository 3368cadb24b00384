/**
 * NodeConfig — everything one tapnet process needs, as the lab builder writes it
 * (JSON). A node is one switch with its ports; later issues add a router, tunnels
 * and NAT to the same file.
 */
import type { SwitchPortMode } from "../elements/learning-switch.js";

export interface NodePortConfig {
  /** Port name as `show` and `capture` know it (the host or peer node's name). */
  name: string;
  /** tap: a TAP device the node creates; pcap: an existing interface opened with libpcap. */
  kind: "tap" | "pcap";
  /** Device name in the node's network namespace. */
  ifname: string;
  vlan: SwitchPortMode;
}

export interface NodeConfig {
  lab: string;
  node: string;
  controlSocket: string;
  ports: NodePortConfig[];
  switch: {
    ageingTime: number;
    maxEntries: number;
    static: Array<{ mac: string; vlan: number; port: string }>;
  };
}
