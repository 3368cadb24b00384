/**
 * The routing information bases of a BGP speaker and its rules, without sockets or
 * timers (so they are tested on their own):
 *
 *   Adj-RIB-In    per peer, every path the peer announced (withdrawn ones removed)
 *   Loc-RIB       per prefix, the best of the usable paths (RFC 4271 §9.1.2)
 *   Adj-RIB-Out   per peer, what was last sent, so a change sends only the difference
 *
 *   usable(path)          RFC 4271 §9.1.2: AS loop, RFC 4456 §8: ORIGINATOR_ID / CLUSTER_LIST
 *                         loops, and a next hop that resolves
 *   better(a, b)          the decision process's tie breaks (§9.1.2.2, RFC 4456 §9)
 *   exportFor(route, to)  what (if anything) goes to a peer: iBGP routes go to iBGP
 *                         peers only when reflected (RFC 4456 §6), attributes per §5.1
 */
import { AS_SEQUENCE, AS_SET, type PathAttributes, type Prefix } from "../wire/bgp.js";

export interface PeerRef {
  /** The peer's address, as a uint32 (the session's key). */
  addr: number;
  asn: number;
  /** The BGP identifier it sent in its OPEN. */
  bgpId: number;
  ibgp: boolean;
  /** A route-reflection client of ours (RFC 4456 §2). */
  rrClient: boolean;
}

export interface Path {
  prefix: Prefix;
  attrs: PathAttributes;
  /** null: originated by this speaker. */
  from: PeerRef | null;
}

export interface SpeakerIdentity {
  asn: number;
  routerId: number;
  /** RFC 4456 §7: the cluster id (the router id unless set). */
  clusterId: number;
  /** The address sessions use: NEXT_HOP of what we announce ("next hop self"). */
  localAddr: number;
}

export const DEFAULT_LOCAL_PREF = 100;

/** AS_PATH length for the decision: an AS_SET counts 1 (RFC 4271 §9.1.2.2 a). */
export function pathLength(p: PathAttributes): number {
  let n = 0;
  for (const s of p.asPath ?? []) n += s.type === AS_SET ? 1 : s.asns.length;
  return n;
}

/** The AS a path was learned from (the first of the AS_PATH), 0 when empty. */
function neighbourAs(p: PathAttributes): number {
  const first = p.asPath?.[0];
  return first && first.type === AS_SEQUENCE ? first.asns[0] : 0;
}

/** Why a received path may not be used, or null when it may. */
export function unusable(path: Path, me: SpeakerIdentity, resolves: (nextHop: number) => boolean): string | null {
  const a = path.attrs;
  // RFC 4271 §9.1.2: a path with our AS in its AS_PATH is a loop.
  if (a.asPath?.some((s) => s.asns.includes(me.asn))) return "AS_PATH loop (our AS is in it)";
  // RFC 4456 §8: our own route reflected back, or a path that passed our cluster.
  if (a.originatorId !== undefined && a.originatorId === me.routerId) return "ORIGINATOR_ID is our router id";
  if (a.clusterList?.includes(me.clusterId)) return "CLUSTER_LIST holds our cluster id";
  if (a.nextHop === undefined) return "no NEXT_HOP";
  // RFC 4271 §5.1.3 / §9.1.2.1: the next hop must resolve (here: a connected subnet).
  if (a.nextHop === me.localAddr) return "NEXT_HOP is our own address";
  if (!resolves(a.nextHop)) return "NEXT_HOP does not resolve";
  return null;
}

/**
 * True when `a` is preferred over `b` (both usable, same prefix). Locally originated
 * paths win (as BIRD's static routes do over BGP, by preference); then RFC 4271
 * §9.1.2.2: LOCAL_PREF, AS_PATH length, ORIGIN, MED (only between paths from the same
 * neighbouring AS), eBGP over iBGP, lowest BGP identifier (ORIGINATOR_ID when present,
 * RFC 4456 §9), shortest CLUSTER_LIST, lowest peer address.
 */
export function better(a: Path, b: Path): boolean {
  if (a.from === null || b.from === null) return a.from === null && b.from !== null;
  const lp = (p: Path): number => p.attrs.localPref ?? DEFAULT_LOCAL_PREF;
  if (lp(a) !== lp(b)) return lp(a) > lp(b);
  if (pathLength(a.attrs) !== pathLength(b.attrs)) return pathLength(a.attrs) < pathLength(b.attrs);
  const oa = a.attrs.origin ?? 2;
  const ob = b.attrs.origin ?? 2;
  if (oa !== ob) return oa < ob;
  if (neighbourAs(a.attrs) === neighbourAs(b.attrs)) {
    const ma = a.attrs.med ?? 0;
    const mb = b.attrs.med ?? 0;
    if (ma !== mb) return ma < mb;
  }
  if (a.from.ibgp !== b.from.ibgp) return !a.from.ibgp;
  const ida = a.attrs.originatorId ?? a.from.bgpId;
  const idb = b.attrs.originatorId ?? b.from.bgpId;
  if (ida !== idb) return ida >>> 0 < idb >>> 0;
  const ca = a.attrs.clusterList?.length ?? 0;
  const cb = b.attrs.clusterList?.length ?? 0;
  if (ca !== cb) return ca < cb;
  return a.from.addr >>> 0 < b.from.addr >>> 0;
}

/** The best of a prefix's candidate paths (already filtered to usable ones), or null. */
export function best(paths: Iterable<Path>): Path | null {
  let out: Path | null = null;
  for (const p of paths) if (out === null || better(p, out)) out = p;
  return out;
}

/**
 * The attributes to send `to` for a Loc-RIB best path, or null when it must not go
 * there. RFC 4271 §9.1.3 / §9.2 and RFC 4456 §6:
 *   - never back to the peer it came from;
 *   - a path learned over iBGP goes to iBGP peers only by reflection: from a client to
 *     everyone, from a non-client to clients only; the reflector adds ORIGINATOR_ID
 *     (the originator's BGP id, unless present) and prepends its cluster id to
 *     CLUSTER_LIST (§8);
 *   - to eBGP: our AS prepended, NEXT_HOP ourselves, no LOCAL_PREF, and MED is not
 *     passed on (§5.1.4);
 *   - to iBGP: LOCAL_PREF always (§5.1.5), the path's NEXT_HOP kept, ourselves for what
 *     we originate.
 */
export function exportFor(path: Path, to: PeerRef, me: SpeakerIdentity): PathAttributes | null {
  const from = path.from;
  if (from !== null && from.addr === to.addr) return null;
  const a = path.attrs;
  if (to.ibgp) {
    let reflected = false;
    if (from?.ibgp) {
      if (!from.rrClient && !to.rrClient) return null;
      reflected = true;
    }
    return {
      origin: a.origin,
      asPath: a.asPath ?? [],
      nextHop: from === null ? me.localAddr : a.nextHop,
      med: a.med,
      localPref: a.localPref ?? DEFAULT_LOCAL_PREF,
      atomicAggregate: a.atomicAggregate,
      originatorId: reflected ? (a.originatorId ?? (from as PeerRef).bgpId) : undefined,
      clusterList: reflected ? [me.clusterId, ...(a.clusterList ?? [])] : undefined,
      unknown: a.unknown,
    };
  }
  const first = a.asPath?.[0];
  const asPath =
    first && first.type === AS_SEQUENCE && first.asns.length < 255
      ? [{ type: AS_SEQUENCE, asns: [me.asn, ...first.asns] }, ...(a.asPath ?? []).slice(1)]
      : [{ type: AS_SEQUENCE, asns: [me.asn] }, ...(a.asPath ?? [])];
  return { origin: a.origin, asPath, nextHop: me.localAddr, med: from === null ? a.med : undefined, atomicAggregate: a.atomicAggregate, unknown: a.unknown };
}

/** A stable text of attributes: equal texts send nothing new (Adj-RIB-Out). */
export function attrsKey(a: PathAttributes): string {
  return JSON.stringify([
    a.origin,
    a.asPath,
    a.nextHop,
    a.med,
    a.localPref,
    a.atomicAggregate,
    a.originatorId,
    a.clusterList,
    a.unknown.map((u) => [u.flags, u.type, Buffer.from(u.value).toString("hex")]),
  ]);
}

export function prefixKey(p: Prefix): string {
  return `${p.addr >>> 24}.${(p.addr >>> 16) & 255}.${(p.addr >>> 8) & 255}.${p.addr & 255}/${p.len}`;
}
