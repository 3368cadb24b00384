/**
 * Conntrack listing — what `tapnet show conntrack` (like `conntrack -L` / `-C`) reads
 * from the table (conntrack.ts): the filters as typed on the command line
 * (parseConntrackQuery), a listing that can pause between event-loop turns so a large
 * table never stalls forwarding (walkConntrack), one JSON row per entry built straight
 * from the table's arrays (entryJson), the object view (entryView) and the line
 * `conntrack -L` prints (conntrackLine). Filters select on the original tuple (what
 * the initiator sent), as conntrack's -s/-d/--sport/--dport do.
 */
import { IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP } from "../wire/ipv4.js";
import { ipToString, parseCidr, parseIp } from "../wire/ipv4addr.js";
import { TCP_NONE, TCP_STATE_NAMES } from "./conntrack-states.js";
import { CT_ASSURED, CT_DNAT, CT_SEEN_REPLY, CT_SNAT, DIR_ORIGINAL, DIR_REPLY, type ConnTrack } from "./conntrack.js";

/** Slots a listing looks at between two chances for its caller to pause. */
const WALK_STRIDE = 256;

export interface TupleView {
  src: string;
  dst: string;
  /** TCP/UDP. */
  sport?: number;
  dport?: number;
  /** ICMP echo: type 8 original, 0 reply; code 0; the identifier. */
  type?: number;
  code?: number;
  id?: number;
  packets: number;
  bytes: number;
}

export interface ConnEntryView {
  proto: "tcp" | "udp" | "icmp";
  protoNum: number;
  /** TCP state name; null for UDP and ICMP. */
  state: string | null;
  /** Seconds until the entry expires. */
  timeout: number;
  original: TupleView;
  reply: TupleView;
  /** ASSURED, UNREPLIED, SNAT, DNAT. */
  flags: string[];
}

/** One line as `conntrack -L` prints it (plus [SNAT]/[DNAT]). */
export function conntrackLine(v: ConnEntryView): string {
  const t = (x: TupleView, unreplied: boolean): string => {
    const l4 = v.proto === "icmp" ? `type=${x.type} code=${x.code} id=${x.id}` : `sport=${x.sport} dport=${x.dport}`;
    return `src=${x.src} dst=${x.dst} ${l4} packets=${x.packets} bytes=${x.bytes}${unreplied ? " [UNREPLIED]" : ""}`;
  };
  const unreplied = v.flags.includes("UNREPLIED");
  const parts = [v.proto.padEnd(8), String(v.protoNum).padEnd(2), String(v.timeout)];
  if (v.state !== null) parts.push(v.state);
  parts.push(t(v.original, unreplied), t(v.reply, false));
  for (const f of v.flags) if (f !== "UNREPLIED") parts.push(`[${f}]`);
  return parts.join(" ");
}

/** What a listing selects, like `conntrack -L`'s filters; all of them on the original tuple. */
export interface ConntrackFilter {
  /** 0: any. */
  proto: number;
  /** Original source in src/srcMask (srcMask 0: any). Unsigned. */
  src: number;
  srcMask: number;
  dst: number;
  dstMask: number;
  /** -1: any. A port filter matches TCP and UDP entries only. */
  sport: number;
  dport: number;
  /** TCP state (TCP_*), -1: any. */
  state: number;
}

export interface ConntrackQuery {
  filter: ConntrackFilter;
  /** Most rows to list (0: no limit). */
  limit: number;
  /** Count the matching entries instead of listing them (`conntrack -C`). */
  count: boolean;
}

const PROTO_NAMES: Record<string, number> = {
  tcp: IP_PROTO_TCP,
  udp: IP_PROTO_UDP,
  icmp: IP_PROTO_ICMP,
  "6": IP_PROTO_TCP,
  "17": IP_PROTO_UDP,
  "1": IP_PROTO_ICMP,
};

function optString(raw: Record<string, unknown>, key: string): string | undefined {
  const v = raw[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v === "number") return String(v);
  if (typeof v !== "string") throw new Error(`conntrack --${key}: expected a string, got ${typeof v}`);
  return v;
}

function addrFilter(key: string, v: string | undefined): [number, number] {
  if (v === undefined) return [0, 0];
  try {
    if (v.includes("/")) {
      const c = parseCidr(v);
      return [c.network, c.mask];
    }
    return [parseIp(v), 0xffffffff];
  } catch (e) {
    throw new Error(`conntrack --${key}: ${(e as Error).message.replace(/^invalid /, "not an ")} (an address like 10.244.1.4, or a prefix like 10.244.1.0/24)`);
  }
}

function portFilter(key: string, v: string | undefined): number {
  if (v === undefined) return -1;
  if (!/^(0|[1-9][0-9]{0,4})$/.test(v) || +v > 65535) throw new Error(`conntrack --${key}: '${v}' is not a port number (0-65535)`);
  return +v;
}

/**
 * Reads the filters of a `show conntrack` request (strings as typed on the command
 * line, or numbers); throws an Error naming the option and what it takes.
 */
export function parseConntrackQuery(raw: Record<string, unknown>): ConntrackQuery {
  const protoS = optString(raw, "proto");
  let proto = 0;
  if (protoS !== undefined) {
    const p = PROTO_NAMES[protoS.toLowerCase()];
    if (p === undefined) throw new Error(`conntrack --proto: '${protoS}' is not one of tcp, udp, icmp`);
    proto = p;
  }
  const [src, srcMask] = addrFilter("src", optString(raw, "src"));
  const [dst, dstMask] = addrFilter("dst", optString(raw, "dst"));
  const sport = portFilter("sport", optString(raw, "sport"));
  const dport = portFilter("dport", optString(raw, "dport"));
  if (proto === IP_PROTO_ICMP && (sport >= 0 || dport >= 0)) {
    throw new Error("conntrack --sport/--dport: ICMP has no ports (they select tcp and udp entries)");
  }
  const stateS = optString(raw, "state");
  let state = -1;
  if (stateS !== undefined) {
    state = TCP_STATE_NAMES.indexOf(stateS.toUpperCase());
    if (state <= TCP_NONE) {
      throw new Error(`conntrack --state: '${stateS}' is not a TCP state (${TCP_STATE_NAMES.slice(1).join(", ")})`);
    }
    if (proto !== 0 && proto !== IP_PROTO_TCP) throw new Error("conntrack --state: states are TCP's; it cannot go with --proto udp or icmp");
    proto = IP_PROTO_TCP;
  }
  const limitS = optString(raw, "limit");
  let limit = 0;
  if (limitS !== undefined) {
    if (!/^[1-9][0-9]{0,8}$/.test(limitS)) throw new Error(`conntrack --limit: '${limitS}' is not a positive integer`);
    limit = +limitS;
  }
  const c = raw.count;
  if (c !== undefined && c !== null && typeof c !== "boolean") throw new Error("conntrack --count: expected true or false");
  return { filter: { proto, src, srcMask, dst, dstMask, sport, dport, state }, limit, count: c === true };
}

/** Does confirmed entry e of `ct` match the filter? */
export function entryMatches(ct: ConnTrack, e: number, f: ConntrackFilter): boolean {
  const p = ct.proto[e];
  if (f.proto !== 0 && p !== f.proto) return false;
  if (f.state >= 0 && (p !== IP_PROTO_TCP || ct.state[e] !== f.state)) return false;
  const o = 2 * e;
  if (f.srcMask !== 0 && (ct.tSrc[o] & f.srcMask) >>> 0 !== f.src) return false;
  if (f.dstMask !== 0 && (ct.tDst[o] & f.dstMask) >>> 0 !== f.dst) return false;
  if (f.sport >= 0 || f.dport >= 0) {
    if (p === IP_PROTO_ICMP) return false;
    if (f.sport >= 0 && ct.tSport[o] !== f.sport) return false;
    if (f.dport >= 0 && ct.tDport[o] !== f.dport) return false;
  }
  return true;
}

/**
 * A listing that can be resumed between event-loop turns (`show conntrack`): yields
 * each live entry matching `q.filter` as the JSON text of its view (entryJson; none
 * when `q.count`), and null after every WALK_STRIDE slots looked at, so the caller can
 * stop a slice of work there; returns how many entries matched. `clock` gives the time
 * (read once per stride). Walks entry slots in index order, re-reading the table at
 * every step (it may be regrown meanwhile; indices stay). So an entry that lives
 * through the whole listing is listed exactly once; one created or removed meanwhile
 * may or may not be (a slot freed and reused by a new connection shows the new one).
 */
export function* walkConntrack(ct: ConnTrack, q: ConntrackQuery, clock: () => number): Generator<string | null, { matched: number }, void> {
  const f = q.filter;
  let now = clock();
  let matched = 0;
  for (let e = 0; e < ct.capacity; e++) {
    if ((e & (WALK_STRIDE - 1)) === WALK_STRIDE - 1) {
      yield null;
      now = clock();
    }
    if (!ct.isLive(e, now) || !entryMatches(ct, e, f)) continue;
    matched++;
    if (!q.count) {
      yield entryJson(ct, e, now);
      if (q.limit !== 0 && matched >= q.limit) break;
    }
  }
  return { matched };
}

function protoName(p: number): "tcp" | "udp" | "icmp" {
  return p === IP_PROTO_TCP ? "tcp" : p === IP_PROTO_UDP ? "udp" : "icmp";
}

/** UNREPLIED, ASSURED, SNAT, DNAT, as the status bits say. */
function flagNames(status: number): string[] {
  const flags: string[] = [];
  if ((status & CT_SEEN_REPLY) === 0) flags.push("UNREPLIED");
  if ((status & CT_ASSURED) !== 0) flags.push("ASSURED");
  if ((status & CT_SNAT) !== 0) flags.push("SNAT");
  if ((status & CT_DNAT) !== 0) flags.push("DNAT");
  return flags;
}

function secondsLeft(ct: ConnTrack, e: number, now: number): number {
  return Math.max(0, Math.floor((ct.expires[e] - now) / 1000));
}

/**
 * JSON.stringify(entryView(ct, e, now)), built straight from the arrays: a listing of
 * a large table makes one string per entry instead of five objects and an array (a
 * 65,536-entry listing made a ninth of the young-generation garbage this way).
 */
export function entryJson(ct: ConnTrack, e: number, now: number): string {
  const p = ct.proto[e];
  const tuple = (dir: number): string => {
    const t = 2 * e + dir;
    const a = `{"src":"${ipToString(ct.tSrc[t] >>> 0)}","dst":"${ipToString(ct.tDst[t] >>> 0)}",`;
    const l4 = p === IP_PROTO_ICMP ? `"type":${dir === DIR_ORIGINAL ? 8 : 0},"code":0,"id":${ct.tSport[t]}` : `"sport":${ct.tSport[t]},"dport":${ct.tDport[t]}`;
    return `${a}${l4},"packets":${ct.packets[t]},"bytes":${ct.bytes[t]}}`;
  };
  const state = p === IP_PROTO_TCP ? `"${TCP_STATE_NAMES[ct.state[e]]}"` : "null";
  const flags = JSON.stringify(flagNames(ct.status[e]));
  return `{"proto":"${protoName(p)}","protoNum":${p},"state":${state},"timeout":${secondsLeft(ct, e, now)},"original":${tuple(DIR_ORIGINAL)},"reply":${tuple(DIR_REPLY)},"flags":${flags}}`;
}

/** JSON-friendly view of one entry. */
export function entryView(ct: ConnTrack, e: number, now: number): ConnEntryView {
  const p = ct.proto[e];
  const tuple = (dir: number): TupleView => {
    const t = 2 * e + dir;
    const base = { src: ipToString(ct.tSrc[t] >>> 0), dst: ipToString(ct.tDst[t] >>> 0) };
    const counts = { packets: ct.packets[t], bytes: ct.bytes[t] };
    if (p === IP_PROTO_ICMP) return { ...base, type: dir === DIR_ORIGINAL ? 8 : 0, code: 0, id: ct.tSport[t], ...counts };
    return { ...base, sport: ct.tSport[t], dport: ct.tDport[t], ...counts };
  };
  return {
    proto: protoName(p),
    protoNum: p,
    state: p === IP_PROTO_TCP ? TCP_STATE_NAMES[ct.state[e]] : null,
    timeout: secondsLeft(ct, e, now),
    original: tuple(DIR_ORIGINAL),
    reply: tuple(DIR_REPLY),
    flags: flagNames(ct.status[e]),
  };
}

/** The table as `conntrack -L` would list it (confirmed, unexpired entries). */
export function conntrackEntries(ct: ConnTrack, now: number): ConnEntryView[] {
  const out: ConnEntryView[] = [];
  ct.forEachLive(now, (e) => out.push(entryView(ct, e, now)));
  return out;
}

/**
 * One entry on one line for a trace step: both tuples, the TCP state and the flags —
 * `tcp 10.244.1.4:40250 > 10.96.0.10:80, reply 10.244.1.2:80 > 10.244.1.4:40250, SYN_SENT [UNREPLIED DNAT]`.
 */
export function entryText(ct: ConnTrack, e: number): string {
  const p = ct.proto[e];
  const tuple = (dir: number): string => {
    const t = 2 * e + dir;
    const src = ipToString(ct.tSrc[t] >>> 0);
    const dst = ipToString(ct.tDst[t] >>> 0);
    return p === IP_PROTO_ICMP ? `${src} > ${dst} id ${ct.tSport[t]}` : `${src}:${ct.tSport[t]} > ${dst}:${ct.tDport[t]}`;
  };
  const state = p === IP_PROTO_TCP ? `, ${TCP_STATE_NAMES[ct.state[e]]}` : "";
  const flags = flagNames(ct.status[e]);
  return `${protoName(p)} ${tuple(DIR_ORIGINAL)}, reply ${tuple(DIR_REPLY)}${state}${flags.length ? ` [${flags.join(" ")}]` : ""}`;
}
