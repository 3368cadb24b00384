/** The node's device ports, made from their config: TAPs, libpcap ports, tunnels. */
import type { Port } from "../core/port.js";
import { IpipPort } from "../io/ipip-port.js";
import { PcapPort } from "../io/pcap-port.js";
import { TapPort } from "../io/tap-port.js";
import { VxlanPort } from "../io/vxlan-port.js";
import { SleevePort } from "../mesh/sleeve-port.js";
import { parseMac } from "../wire/mac.js";
import type { NodeConfig, NodePortConfig } from "./config.js";

export function makeDevicePort(pc: NodePortConfig, config: NodeConfig): Port {
  switch (pc.kind) {
    case "tap":
      return new TapPort(pc.name, pc.ifname, { offload: config.offload === true });
    case "pcap":
      return new PcapPort(pc.name, pc.ifname);
    case "vxlan": {
      const v = pc.vxlan;
      if (!v) throw new Error(`port ${pc.name}: vxlan settings missing`);
      return new VxlanPort(pc.name, {
        vni: v.vni,
        dstPort: v.dstPort,
        localAddr: v.localAddr,
        remotes: v.remotes,
        fdb: v.fdb,
        arpSuppress: v.arpSuppress,
        learning: v.learning,
        udpChecksum: v.udpChecksum,
        underlayMtu: v.underlayMtu,
      });
    }
    case "mesh": {
      const m = pc.mesh;
      if (!m) throw new Error(`port ${pc.name}: mesh settings missing`);
      return new SleevePort(pc.name, { port: m.port, underlayMtu: m.underlayMtu });
    }
    case "ipip": {
      const v = pc.ipip;
      if (!v) throw new Error(`port ${pc.name}: ipip settings missing`);
      const owner = config.router?.interfaces.find((i) => i.name === pc.routed);
      return new IpipPort(pc.name, { localAddr: v.localAddr, peers: v.peers, mac: owner ? parseMac(owner.mac) : 0, mtu: v.underlayMtu });
    }
  }
}
