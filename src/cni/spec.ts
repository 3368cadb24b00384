/**
 * The Container Network Interface as the tapnet plugin speaks it: the versions it accepts,
 * the error object with the specification's well-known codes, the network configuration
 * (checked field by field, saying which field is wrong), and results converted between
 * the 1.0.0 and 0.3.x/0.4.0 shapes (the older ones carry `"version": "4"` on each IP).
 * The specification is CNI SPEC.md, "Section 2: Execution Protocol" and "Section 5: Result
 * Types".
 */

/** Versions whose config and result shapes the plugin reads and writes. */
export const SUPPORTED_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

/** Well-known error codes (SPEC.md, "Error"); 100 and above are the plugin's own. */
export const ERR = {
  incompatibleVersion: 1,
  unsupportedField: 2,
  unknownContainer: 3,
  invalidEnv: 4,
  io: 5,
  decode: 6,
  invalidConfig: 7,
  tryAgainLater: 11,
  /** The lab's node refused a change or did not answer. */
  node: 100,
  /** CHECK found the container's interface, addresses or routes changed. */
  check: 101,
  /** The delegated IPAM plugin failed without an error object (one it prints keeps its own code). */
  ipam: 102,
} as const;

export class CniError extends Error {
  constructor(
    readonly code: number,
    msg: string,
    readonly details?: string,
  ) {
    super(msg);
  }

  toJSON(version: string): Record<string, unknown> {
    const o: Record<string, unknown> = { cniVersion: version, code: this.code, msg: this.message };
    if (this.details) o.details = this.details;
    return o;
  }
}

export interface Dns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface Ipam {
  type: string;
  [k: string]: unknown;
}

export interface NetConf {
  cniVersion: string;
  name: string;
  type: string;
  lab: string;
  node: string;
  vlan: number;
  mtu?: number;
  isGateway: boolean;
  isDefaultGateway: boolean;
  ipam: Ipam;
  dns?: Dns;
  prevResult?: Result;
  /** The whole config as read: passed unchanged to the IPAM plugin. */
  raw: Record<string, unknown>;
}

export interface IpConfig {
  address: string;
  gateway?: string;
  interface?: number;
}

export interface Route {
  dst: string;
  gw?: string;
}

export interface Result {
  cniVersion: string;
  interfaces?: Array<{ name: string; mac?: string; sandbox?: string }>;
  ips?: IpConfig[];
  routes?: Route[];
  dns?: Dns;
}

const CIDR4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;
const IP4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

export function isIp4(s: unknown): s is string {
  const m = typeof s === "string" ? IP4.exec(s) : null;
  if (!m) return false;
  return m.slice(1).every((x) => Number(x) <= 255);
}

export function isCidr4(s: unknown): s is string {
  const m = typeof s === "string" ? CIDR4.exec(s) : null;
  if (!m) return false;
  return m.slice(1, 5).every((x) => Number(x) <= 255) && Number(m[5]) <= 32;
}

function bad(field: string, why: string): CniError {
  return new CniError(ERR.invalidConfig, `network configuration: ${field}: ${why}`);
}

function strField(o: Record<string, unknown>, k: string, required: boolean): string | undefined {
  const v = o[k];
  if (v === undefined) {
    if (required) throw bad(k, "missing (expected a string)");
    return undefined;
  }
  if (typeof v !== "string" || v === "") throw bad(k, `${JSON.stringify(v)} is not a non-empty string`);
  return v;
}

function boolField(o: Record<string, unknown>, k: string): boolean {
  const v = o[k];
  if (v === undefined) return false;
  if (typeof v !== "boolean") throw bad(k, `${JSON.stringify(v)} is not true or false`);
  return v;
}

function intField(o: Record<string, unknown>, k: string, lo: number, hi: number): number | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi) throw bad(k, `${JSON.stringify(v)} is not an integer ${lo}-${hi}`);
  return v;
}

function strList(v: unknown, field: string): string[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) throw bad(field, "expected a list of strings");
  return v as string[];
}

export function parseDns(v: unknown, field: string): Dns | undefined {
  if (v === undefined) return undefined;
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw bad(field, "expected an object");
  const o = v as Record<string, unknown>;
  const d: Dns = {};
  const ns = strList(o.nameservers, `${field}.nameservers`);
  if (ns) d.nameservers = ns;
  if (o.domain !== undefined) {
    if (typeof o.domain !== "string") throw bad(`${field}.domain`, "expected a string");
    d.domain = o.domain;
  }
  const search = strList(o.search, `${field}.search`);
  if (search) d.search = search;
  const options = strList(o.options, `${field}.options`);
  if (options) d.options = options;
  return d;
}

/** Compares dotted versions ("0.4.0" < "1.0.0"). */
export function versionLess(a: string, b: string): boolean {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < 3; i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) < (pb[i] ?? 0);
  return false;
}

/** Reads the network configuration from the plugin's stdin; throws CniError 6 or 7 or 1. */
export function parseConfig(text: string): NetConf {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new CniError(ERR.decode, `network configuration on stdin is not JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw new CniError(ERR.decode, "network configuration on stdin is not a JSON object");
  const o = raw as Record<string, unknown>;
  const cniVersion = strField(o, "cniVersion", true) as string;
  if (!SUPPORTED_VERSIONS.includes(cniVersion))
    throw new CniError(
      ERR.incompatibleVersion,
      "incompatible CNI versions",
      `config is "${cniVersion}", plugin supports ${JSON.stringify(SUPPORTED_VERSIONS)}`,
    );
  const name = strField(o, "name", true) as string;
  const type = strField(o, "type", true) as string;
  const lab = strField(o, "lab", true) as string;
  const node = strField(o, "node", true) as string;
  const vlan = intField(o, "vlan", 1, 4094) ?? 1;
  const mtu = intField(o, "mtu", 68, 1500);
  if (o.ipMasq === true)
    throw new CniError(
      ERR.unsupportedField,
      "network configuration: ipMasq: tapnet masquerades with the node's own rules (tapnet masquerade add), not per pod",
    );
  const ipamV = o.ipam;
  if (ipamV === undefined) throw bad("ipam", "missing: the plugin delegates addressing to an IPAM plugin (host-local, dhcp, static…)");
  if (ipamV === null || typeof ipamV !== "object" || Array.isArray(ipamV)) throw bad("ipam", "expected an object");
  const ipamType = (ipamV as Record<string, unknown>).type;
  if (typeof ipamType !== "string" || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(ipamType))
    throw bad("ipam.type", `${JSON.stringify(ipamType)} is not a plugin name (a file on CNI_PATH)`);
  const conf: NetConf = {
    cniVersion,
    name,
    type,
    lab,
    node,
    vlan,
    mtu,
    isGateway: boolField(o, "isGateway"),
    isDefaultGateway: boolField(o, "isDefaultGateway"),
    ipam: ipamV as Ipam,
    dns: parseDns(o.dns, "dns"),
    raw: o,
  };
  if (o.prevResult !== undefined) conf.prevResult = parseResult(o.prevResult, "prevResult");
  return conf;
}

/** Reads a result (an IPAM plugin's, or prevResult) of any supported version; throws CniError naming `field`. */
export function parseResult(v: unknown, field: string): Result {
  const fail = (why: string): CniError => new CniError(ERR.decode, `${field}: ${why}`);
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw fail("expected a result object");
  const o = v as Record<string, unknown>;
  const r: Result = { cniVersion: typeof o.cniVersion === "string" ? o.cniVersion : "" };
  // Lists of objects: a required string `key`, and optional fields kept when of the right type.
  const list = (name: "interfaces" | "ips" | "routes", key: string, keyWhat: string, optional: Record<string, "string" | "number">): void => {
    const v = o[name];
    if (v === undefined) return;
    if (!Array.isArray(v)) throw fail(`${name}: expected a list`);
    (r as unknown as Record<string, unknown>)[name] = v.map((i, k) => {
      const x = i as Record<string, unknown>;
      if (typeof x?.[key] !== "string") throw fail(`${name}[${k}].${key}: expected ${keyWhat}`);
      const out: Record<string, unknown> = { [key]: x[key] };
      for (const [f, type] of Object.entries(optional)) if (typeof x[f] === type) out[f] = x[f];
      return out;
    });
  };
  list("interfaces", "name", "a string", { mac: "string", sandbox: "string" });
  list("ips", "address", "a CIDR", { gateway: "string", interface: "number" });
  list("routes", "dst", "a CIDR", { gw: "string" });
  if (o.dns !== undefined) r.dns = parseDns(o.dns, `${field}.dns`);
  return r;
}

/**
 * The result as printed for `version`: 0.3.x and 0.4.0 IPs carry `"version": "4"`
 * (SPEC.md 0.4.0, "Result"); 1.0.0 dropped it. Empty DNS is left out, as the reference
 * plugins do.
 */
export function formatResult(r: Result, version: string): Record<string, unknown> {
  const old = versionLess(version, "1.0.0");
  const out: Record<string, unknown> = { cniVersion: version };
  if (r.interfaces) out.interfaces = r.interfaces;
  if (r.ips) out.ips = r.ips.map((ip) => (old ? { version: ip.address.includes(":") ? "6" : "4", ...ip } : { ...ip }));
  if (r.routes) out.routes = r.routes;
  if (r.dns && Object.keys(r.dns).length > 0) out.dns = r.dns;
  return out;
}
