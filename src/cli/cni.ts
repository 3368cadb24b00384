/** `tapnet cni install`: the CNI plugin and a conflist for a container runtime (src/cni/). */
import type { Command } from "commander";

export function registerCni(program: Command): void {
  const cni = program.command("cni").description("the CNI plugin container runtimes call (podman, a kubelet)");
  cni
    .command("install")
    .description("install the plugin as BIN-DIR/tapnet and, with --lab/--node, a conflist in CONF-DIR")
    .option("--bin-dir <dir>", "where the runtime finds plugins (CNI_PATH)", "/opt/cni/bin")
    .option("--conf-dir <dir>", "where the runtime reads network configs", "/etc/cni/net.d")
    .option("--lab <lab>", "the running lab pods join")
    .option("--node <node>", "the tapnet node whose switch gets the pods' ports")
    .option("--network <name>", "the network's name", "tapnet")
    .option("--ipam <type>", "IPAM plugin: host-local or dhcp", "host-local")
    .option("--subnet <cidr>", "pod subnet (host-local)")
    .option("--gateway <ip>", "the pods' gateway: a router address of the node")
    .option("--range-start <ip>", "first address host-local hands out")
    .option("--range-end <ip>", "last address host-local hands out")
    .option("--data-dir <dir>", "where host-local keeps its leases (default /var/lib/cni/networks)")
    .option("--vlan <n>", "access VLAN of the pods' ports", (v) => Number(v))
    .option("--dns <ip>", "nameserver for the pods (the cluster DNS address)")
    .option("--search <domains>", "comma-separated resolv.conf search path", (v) => v.split(",").filter(Boolean))
    .option("--no-default-gateway", "no default route via the gateway in pods")
    .option("--cni-version <v>", "cniVersion of the conflist (podman 4 writes 0.4.0)", "1.0.0")
    .action(async (o: Record<string, unknown>) => {
      const { install } = await import("../cni/install.js");
      const files = install({
        binDir: o.binDir as string,
        confDir: o.confDir as string,
        lab: o.lab as string | undefined,
        node: o.node as string | undefined,
        network: o.network as string,
        ipam: o.ipam as string,
        subnet: o.subnet as string | undefined,
        gateway: o.gateway as string | undefined,
        rangeStart: o.rangeStart as string | undefined,
        rangeEnd: o.rangeEnd as string | undefined,
        dataDir: o.dataDir as string | undefined,
        vlan: o.vlan as number | undefined,
        dns: o.dns as string | undefined,
        search: o.search as string[] | undefined,
        cniVersion: o.cniVersion as string,
        defaultGateway: o.defaultGateway as boolean,
      });
      for (const f of files) console.log(`installed ${f}`);
    });
}
