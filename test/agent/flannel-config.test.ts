/** flannel's etcd values: the config flanneld reads, lease keys and values, subnet.env, the free-subnet pick. */
import { describe, expect, it } from "vitest";
import { prefixEnd } from "../../src/agent/etcd.js";
import {
  freeSubnet,
  leaseValue,
  parseFlannelConfig,
  parseLeaseValue,
  parseSubnetKey,
  subnetEnv,
  subnetFromEnv,
  subnetKey,
  subnetText,
} from "../../src/agent/flannel-config.js";
import { parseIp } from "../../src/wire/ipv4addr.js";

const W = "/coreos.com/network/config";

describe("parseFlannelConfig", () => {
  it("takes flanneld's defaults: SubnetLen 24, the first subnet left out, the last one in", () => {
    const c = parseFlannelConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}', W);
    expect(c.subnetLen).toBe(24);
    expect(c.subnetMin).toBe(parseIp("10.244.1.0"));
    expect(c.subnetMax).toBe(parseIp("10.244.255.0"));
    expect(c.backend).toEqual({ type: "vxlan", vni: 1, port: 8472, directRouting: false });
  });

  it("reads SubnetLen, SubnetMin, SubnetMax, VNI, Port and host-gw", () => {
    const c = parseFlannelConfig(
      '{"Network":"10.0.0.0/8","SubnetLen":20,"SubnetMin":"10.1.0.0","SubnetMax":"10.2.0.0","Backend":{"Type":"host-gw","VNI":7,"Port":4789}}',
      W,
    );
    expect([c.subnetLen, c.subnetMin, c.subnetMax]).toEqual([20, parseIp("10.1.0.0"), parseIp("10.2.0.0")]);
    expect(c.backend.type).toBe("host-gw");
  });

  it.each([
    ["not JSON", "{Network", /config: not JSON/],
    ["no Network", "{}", /config: Network: missing/],
    ["a bad Network", '{"Network":"10.244.0.0/33"}', /Network: '10.244.0.0\/33': a prefix length is 0-32/],
    ["host bits in Network", '{"Network":"10.244.1.0/16"}', /Network: '10.244.1.0\/16' has host bits set \(the network is 10.244.0.0\/16\)/],
    ["a Network that is no address", '{"Network":"banana"}', /Network: 'banana' is not an IPv4 CIDR/],
    ["SubnetLen not longer than Network", '{"Network":"10.244.0.0/16","SubnetLen":16}', /SubnetLen: \/16 is not longer than Network/],
    ["SubnetMin outside Network", '{"Network":"10.244.0.0/16","SubnetMin":"10.9.0.0"}', /SubnetMin: 10.9.0.0 is outside Network/],
    ["SubnetMin above SubnetMax", '{"Network":"10.244.0.0/16","SubnetMin":"10.244.9.0","SubnetMax":"10.244.2.0"}', /no subnet to hand out/],
    ["an unknown backend", '{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}', /Backend.Type: 'udp' is not a backend/],
    ["a bad VNI", '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":0}}', /Backend.VNI: 0 is not an integer 1-16777215/],
  ])("refuses %s, naming the key and the field", (_what, text, re) => {
    expect(() => parseFlannelConfig(text, W)).toThrow(re);
    expect(() => parseFlannelConfig(text, W)).toThrow(/^\/coreos.com\/network\/config: /);
  });
});

describe("subnets", () => {
  const c = parseFlannelConfig('{"Network":"10.244.0.0/22","SubnetLen":24,"Backend":{"Type":"vxlan"}}', W);

  it("picks a free subnet of the range and says when the range is exhausted", () => {
    // The range is 10.244.1.0 - 10.244.3.0 (the first /24 is left out).
    const taken = new Set([parseIp("10.244.1.0"), parseIp("10.244.3.0")]);
    expect(subnetText(freeSubnet(c, taken, () => 0.99) as { addr: number; len: number })).toBe("10.244.2.0/24");
    taken.add(parseIp("10.244.2.0"));
    expect(freeSubnet(c, taken)).toBeNull();
  });

  it("reads lease keys like 10.244.1.0-24 and nothing else", () => {
    expect(parseSubnetKey("10.244.1.0-24")).toEqual({ addr: parseIp("10.244.1.0"), len: 24 });
    expect(subnetKey({ addr: parseIp("10.244.1.0"), len: 24 })).toBe("10.244.1.0-24");
    for (const k of ["10.244.1.1-24", "10.244.1.0/24", "10.244.1.0-33", "x", "300.0.0.0-8"]) expect(parseSubnetKey(k)).toBeNull();
  });

  it("writes and reads flanneld's lease value", () => {
    const v = leaseValue("192.168.0.1", c, "02:00:00:00:00:01");
    expect(JSON.parse(v)).toEqual({ PublicIP: "192.168.0.1", BackendType: "vxlan", BackendData: { VNI: 1, VtepMAC: "02:00:00:00:00:01" } });
    expect(parseLeaseValue(v)).toEqual({ value: JSON.parse(v) });
    expect(parseLeaseValue("{")).toEqual({ error: "not JSON" });
    expect(parseLeaseValue("null")).toEqual({ error: "not an object" });
    expect(parseLeaseValue('{"PublicIP":"1.2.3","BackendType":"host-gw"}')).toEqual({ error: 'PublicIP "1.2.3" is not an IPv4 address' });
    expect(parseLeaseValue('{"PublicIP":"1.2.3.4","BackendType":"vxlan"}')).toEqual({ error: "BackendData.VtepMAC undefined is not a MAC address" });
  });

  it("writes subnet.env and reads the subnet back from it", () => {
    const env = subnetEnv(c, { addr: parseIp("10.244.2.0"), len: 24 }, 1450);
    expect(env).toBe("FLANNEL_NETWORK=10.244.0.0/22\nFLANNEL_SUBNET=10.244.2.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n");
    expect(subnetFromEnv(env)).toEqual({ addr: parseIp("10.244.2.0"), len: 24 });
    expect(subnetFromEnv("FLANNEL_MTU=1450\n")).toBeNull();
  });
});

describe("prefixEnd", () => {
  it("is etcd's prefix range end: the last byte plus one (base64)", () => {
    expect(Buffer.from(prefixEnd("/coreos.com/network/subnets/"), "base64").toString()).toBe("/coreos.com/network/subnets0");
    // On UTF-8 bytes: "aÿ" is 61 c3 bf, so its range ends at 61 c3 c0.
    expect([...Buffer.from(prefixEnd("a\u00ff"), "base64")]).toEqual([0x61, 0xc3, 0xc0]);
  });
});
