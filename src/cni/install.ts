/**
 * `tapnet cni install`: puts the plugin where a runtime looks for it (a runtime runs
 * `CNI_PATH/<type>`, so an executable named `tapnet` in the bin directory answers
 * `"type": "tapnet"`) and, given a lab, node and subnet, a conflist in the conf directory.
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { isCidr4, isIp4, SUPPORTED_VERSIONS } from "./spec.js";

export interface InstallOptions {
  binDir: string;
  confDir: string;
  lab?: string;
  node?: string;
  network: string;
  subnet?: string;
  gateway?: string;
  rangeStart?: string;
  rangeEnd?: string;
  dataDir?: string;
  vlan?: number;
  ipam: string;
  dns?: string;
  search?: string[];
  cniVersion: string;
  defaultGateway: boolean;
}

/** The conflist for a tapnet network (what podman or a kubelet reads). */
export function conflist(o: InstallOptions): Record<string, unknown> {
  if (!o.lab || !o.node) throw new Error("a conflist needs --lab and --node (the running tapnet node pods join)");
  if (!SUPPORTED_VERSIONS.includes(o.cniVersion)) throw new Error(`--cni-version ${o.cniVersion}: supported are ${SUPPORTED_VERSIONS.join(", ")}`);
  let ipam: Record<string, unknown>;
  if (o.ipam === "host-local") {
    if (!o.subnet || !isCidr4(o.subnet)) throw new Error(`--subnet ${o.subnet ?? "(missing)"}: host-local IPAM needs the pod subnet as a CIDR`);
    const range: Record<string, unknown> = { subnet: o.subnet };
    if (o.gateway) range.gateway = o.gateway;
    if (o.rangeStart) range.rangeStart = o.rangeStart;
    if (o.rangeEnd) range.rangeEnd = o.rangeEnd;
    ipam = { type: "host-local", ranges: [[range]], ...(o.dataDir ? { dataDir: o.dataDir } : {}) };
  } else if (o.ipam === "dhcp") {
    ipam = { type: "dhcp" };
  } else throw new Error(`--ipam ${o.ipam}: use host-local or dhcp`);
  for (const [k, v] of [
    ["--gateway", o.gateway],
    ["--range-start", o.rangeStart],
    ["--range-end", o.rangeEnd],
    ["--dns", o.dns],
  ] as const)
    if (v !== undefined && !isIp4(v)) throw new Error(`${k} ${v}: not an IPv4 address`);
  const plugin: Record<string, unknown> = { type: "tapnet", lab: o.lab, node: o.node, vlan: o.vlan ?? 1, isDefaultGateway: o.defaultGateway, ipam };
  if (o.dns) plugin.dns = { nameservers: [o.dns], ...(o.search?.length ? { search: o.search } : {}) };
  return { cniVersion: o.cniVersion, name: o.network, plugins: [plugin] };
}

const sh = (s: string): string => `'${s.replace(/'/g, "'\\''")}'`;

/** Installs the plugin (and the conflist when a lab and node are given); returns what it wrote. */
export function install(o: InstallOptions): string[] {
  const written: string[] = [];
  const main = path.join(path.dirname(fileURLToPath(import.meta.url)), "main.js");
  if (!fs.existsSync(main)) throw new Error(`${main} is missing: build tapnet first (npm run build)`);
  const list = o.lab || o.node ? conflist(o) : null;
  fs.mkdirSync(o.binDir, { recursive: true });
  const bin = path.join(o.binDir, "tapnet");
  const tmp = `${bin}.tmp-${process.pid}`;
  // The runtime runs this with a bare environment: name node and the plugin by absolute path.
  fs.writeFileSync(tmp, `#!/bin/sh\n# tapnet CNI plugin (installed by 'tapnet cni install')\nexec ${sh(process.execPath)} ${sh(main)} "$@"\n`, { mode: 0o755 });
  fs.renameSync(tmp, bin);
  written.push(bin);
  if (list) {
    fs.mkdirSync(o.confDir, { recursive: true });
    const f = path.join(o.confDir, `50-${o.network}.conflist`);
    fs.writeFileSync(f, `${JSON.stringify(list, null, 2)}\n`);
    written.push(f);
  }
  return written;
}
