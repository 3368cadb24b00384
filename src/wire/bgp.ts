/**
 * BGP-4 messages (RFC 4271 §4): the 19-byte header, OPEN with capabilities (RFC 5492:
 * multiprotocol RFC 4760, route refresh RFC 2918, 4-octet AS numbers RFC 6793), UPDATE
 * (withdrawn routes, path attributes, NLRI), KEEPALIVE, NOTIFICATION and ROUTE-REFRESH.
 *
 *   messageLength(buf, off, avail)  framing on a TCP stream: the length of the message at
 *                                   `off`, 0 when more bytes are needed, or a header error
 *   decodeMessage(msg, as4)         one whole message -> a typed message or a BgpError
 *   encodeOpen/Update/Keepalive/Notification/RouteRefresh -> the bytes to send
 *
 * Nothing here throws on what a peer sends. A decoding problem comes back as a BgpError
 * naming the NOTIFICATION code and subcode (RFC 4271 §6) and the action RFC 7606 asks
 * for: "session-reset" (send the NOTIFICATION, close), "treat-as-withdraw" (the UPDATE's
 * NLRI are withdrawn instead of announced, §2) or "attribute-discard" (the attribute is
 * dropped, the route kept). An UPDATE that decodes with treat-as-withdraw or discarded
 * attributes is still returned as an UPDATE, with those errors attached.
 *
 * Prefixes are { addr, len } with addr a uint32; only IPv4 unicast is spoken (MP_REACH /
 * MP_UNREACH for AFI 1 SAFI 1 are decoded as the classic fields would be).
 */

export const BGP_PORT = 179;
export const HEADER_LEN = 19;
export const MAX_MESSAGE_LEN = 4096;
/** RFC 6793 §9: the 2-octet AS a 4-octet speaker puts where an old field has no room. */
export const AS_TRANS = 23456;

export const MSG_OPEN = 1;
export const MSG_UPDATE = 2;
export const MSG_NOTIFICATION = 3;
export const MSG_KEEPALIVE = 4;
export const MSG_ROUTE_REFRESH = 5;

/** NOTIFICATION error codes (RFC 4271 §4.5, RFC 4486 for Cease subcodes). */
export const ERR_HEADER = 1;
export const ERR_OPEN = 2;
export const ERR_UPDATE = 3;
export const ERR_HOLD_TIMER = 4;
export const ERR_FSM = 5;
export const ERR_CEASE = 6;
/** Header subcodes. */
export const HDR_NOT_SYNC = 1;
export const HDR_BAD_LENGTH = 2;
export const HDR_BAD_TYPE = 3;
/** OPEN subcodes. */
export const OPEN_BAD_VERSION = 1;
export const OPEN_BAD_PEER_AS = 2;
export const OPEN_BAD_BGP_ID = 3;
export const OPEN_UNSUPPORTED_OPTIONAL = 4;
export const OPEN_BAD_HOLD_TIME = 6;
export const OPEN_UNSUPPORTED_CAPABILITY = 7;
/** UPDATE subcodes. */
export const UPD_MALFORMED_ATTR_LIST = 1;
export const UPD_UNRECOGNIZED_WELL_KNOWN = 2;
export const UPD_MISSING_WELL_KNOWN = 3;
export const UPD_ATTR_FLAGS = 4;
export const UPD_ATTR_LENGTH = 5;
export const UPD_INVALID_ORIGIN = 6;
export const UPD_INVALID_NEXT_HOP = 8;
export const UPD_OPTIONAL_ATTR = 9;
export const UPD_INVALID_NETWORK = 10;
export const UPD_MALFORMED_AS_PATH = 11;
/** Cease subcodes (RFC 4486). */
export const CEASE_ADMIN_SHUTDOWN = 2;
export const CEASE_PEER_DECONFIGURED = 3;
export const CEASE_ADMIN_RESET = 4;
export const CEASE_CONNECTION_REJECTED = 5;
export const CEASE_COLLISION = 7;

/** Path attribute type codes. */
export const ATTR_ORIGIN = 1;
export const ATTR_AS_PATH = 2;
export const ATTR_NEXT_HOP = 3;
export const ATTR_MED = 4;
export const ATTR_LOCAL_PREF = 5;
export const ATTR_ATOMIC_AGGREGATE = 6;
export const ATTR_AGGREGATOR = 7;
export const ATTR_ORIGINATOR_ID = 9;
export const ATTR_CLUSTER_LIST = 10;
export const ATTR_MP_REACH = 14;
export const ATTR_MP_UNREACH = 15;
export const ATTR_AS4_PATH = 17;
export const ATTR_AS4_AGGREGATOR = 18;

export const FLAG_OPTIONAL = 0x80;
export const FLAG_TRANSITIVE = 0x40;
export const FLAG_PARTIAL = 0x20;
export const FLAG_EXTENDED = 0x10;

/** Capability codes (IANA). */
export const CAP_MP = 1;
export const CAP_ROUTE_REFRESH = 2;
export const CAP_AS4 = 65;

export const ORIGIN_IGP = 0;
export const ORIGIN_EGP = 1;
export const ORIGIN_INCOMPLETE = 2;

export const AS_SET = 1;
export const AS_SEQUENCE = 2;

export type ErrorAction = "session-reset" | "treat-as-withdraw" | "attribute-discard";

export interface BgpError {
  code: number;
  subcode: number;
  /** The NOTIFICATION's data field (RFC 4271 §6 says what each error carries). */
  data: Uint8Array;
  action: ErrorAction;
  /** What was wrong and where, for logs and `show bgp`. */
  reason: string;
}

export interface Prefix {
  addr: number;
  len: number;
}

export interface Capability {
  code: number;
  value: Uint8Array;
}

export interface OpenMessage {
  type: typeof MSG_OPEN;
  version: number;
  /** The 4-octet AS when the peer sent the capability, else the 2-octet My AS field. */
  asn: number;
  holdTime: number;
  bgpId: number;
  capabilities: Capability[];
  /** Decoded capabilities. */
  as4: boolean;
  ipv4Unicast: boolean;
  routeRefresh: boolean;
}

export interface AsPathSegment {
  type: number;
  asns: number[];
}

export interface PathAttributes {
  origin?: number;
  asPath?: AsPathSegment[];
  nextHop?: number;
  med?: number;
  localPref?: number;
  atomicAggregate?: boolean;
  originatorId?: number;
  clusterList?: number[];
  /** Attributes we do not interpret (kept for optional transitive pass-through). */
  unknown: Array<{ flags: number; type: number; value: Uint8Array }>;
}

export interface UpdateMessage {
  type: typeof MSG_UPDATE;
  withdrawn: Prefix[];
  attrs: PathAttributes;
  nlri: Prefix[];
  /** Set when RFC 7606 says: withdraw what this UPDATE announces. */
  treatAsWithdraw?: BgpError;
  /** Attributes dropped (RFC 7606 attribute-discard). */
  discarded: BgpError[];
}

export interface NotificationMessage {
  type: typeof MSG_NOTIFICATION;
  code: number;
  subcode: number;
  data: Uint8Array;
}

export interface KeepaliveMessage {
  type: typeof MSG_KEEPALIVE;
}

export interface RouteRefreshMessage {
  type: typeof MSG_ROUTE_REFRESH;
  afi: number;
  safi: number;
}

export type BgpMessage = OpenMessage | UpdateMessage | NotificationMessage | KeepaliveMessage | RouteRefreshMessage;

export type Decoded = { ok: true; msg: BgpMessage } | { ok: false; error: BgpError };

function err(code: number, subcode: number, reason: string, data: Uint8Array = new Uint8Array(0), action: ErrorAction = "session-reset"): BgpError {
  return { code, subcode, data, action, reason };
}

const u16 = (b: Uint8Array, o: number): number => (b[o] << 8) | b[o + 1];
const u32 = (b: Uint8Array, o: number): number => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
const be16 = (v: number): number[] => [(v >>> 8) & 255, v & 255];
const be32 = (v: number): number[] => [(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];

export function prefixToString(p: Prefix): string {
  return `${p.addr >>> 24}.${(p.addr >>> 16) & 255}.${(p.addr >>> 8) & 255}.${p.addr & 255}/${p.len}`;
}

/**
 * Framing (RFC 4271 §4.1, §6.1): at `off` with `avail` bytes buffered, the whole
 * message's length, 0 when the header or the body is not all there yet, or the
 * Message Header Error to send.
 */
export function messageLength(buf: Uint8Array, off: number, avail: number): number | BgpError {
  if (avail < HEADER_LEN) return 0;
  for (let i = 0; i < 16; i++) if (buf[off + i] !== 0xff) return err(ERR_HEADER, HDR_NOT_SYNC, "the marker is not all ones");
  const len = u16(buf, off + 16);
  const type = buf[off + 18];
  const min = [0, 29, 23, 21, 19, 23][type];
  if (min === undefined) return err(ERR_HEADER, HDR_BAD_TYPE, `message type ${type} is unknown`, Uint8Array.of(type));
  if (len < min || len > MAX_MESSAGE_LEN || (type === MSG_KEEPALIVE && len !== HEADER_LEN))
    return err(ERR_HEADER, HDR_BAD_LENGTH, `length ${len} is impossible for a message of type ${type}`, Uint8Array.from(be16(len)));
  return avail < len ? 0 : len;
}

/** Decodes one whole message (as messageLength framed it). `as4`: both sides announced 4-octet AS numbers. */
export function decodeMessage(msg: Uint8Array, as4: boolean): Decoded {
  const len = messageLength(msg, 0, msg.length);
  if (typeof len !== "number") return { ok: false, error: len };
  if (len !== msg.length) return { ok: false, error: err(ERR_HEADER, HDR_BAD_LENGTH, `header says ${len} bytes, message has ${msg.length}`) };
  const body = msg.subarray(HEADER_LEN);
  switch (msg[18]) {
    case MSG_OPEN:
      return decodeOpen(body);
    case MSG_UPDATE:
      return decodeUpdate(body, as4);
    case MSG_NOTIFICATION:
      return { ok: true, msg: { type: MSG_NOTIFICATION, code: body[0], subcode: body[1], data: body.slice(2) } };
    case MSG_KEEPALIVE:
      return { ok: true, msg: { type: MSG_KEEPALIVE } };
    default:
      // ROUTE-REFRESH (RFC 2918 §3): AFI, reserved, SAFI.
      if (body.length !== 4) return { ok: false, error: err(ERR_HEADER, HDR_BAD_LENGTH, "a ROUTE-REFRESH body is 4 bytes", Uint8Array.from(be16(msg.length))) };
      return { ok: true, msg: { type: MSG_ROUTE_REFRESH, afi: u16(body, 0), safi: body[3] } };
  }
}

/** OPEN (RFC 4271 §4.2) with optional parameters of type 2, capabilities (RFC 5492 §4). */
function decodeOpen(b: Uint8Array): Decoded {
  const version = b[0];
  if (version !== 4) return { ok: false, error: err(ERR_OPEN, OPEN_BAD_VERSION, `BGP version ${version}; this speaker speaks 4`, Uint8Array.from(be16(4))) };
  const myAs = u16(b, 1);
  const holdTime = u16(b, 3);
  const bgpId = u32(b, 5);
  const optLen = b[9];
  if (10 + optLen !== b.length) return { ok: false, error: err(ERR_OPEN, 0, `optional parameters length ${optLen} does not match the message`) };
  // §6.2: a hold time of one or two seconds MUST be rejected.
  if (holdTime === 1 || holdTime === 2)
    return { ok: false, error: err(ERR_OPEN, OPEN_BAD_HOLD_TIME, `hold time ${holdTime} s is not allowed (0 or at least 3)`) };
  if (bgpId === 0 || bgpId === 0xffffffff) return { ok: false, error: err(ERR_OPEN, OPEN_BAD_BGP_ID, "BGP identifier is not a valid unicast address") };
  const capabilities: Capability[] = [];
  let p = 10;
  while (p < b.length) {
    if (p + 2 > b.length || p + 2 + b[p + 1] > b.length) return { ok: false, error: err(ERR_OPEN, 0, "an optional parameter runs past the OPEN") };
    const ptype = b[p];
    const plen = b[p + 1];
    if (ptype !== 2) return { ok: false, error: err(ERR_OPEN, OPEN_UNSUPPORTED_OPTIONAL, `optional parameter type ${ptype} is not supported`) };
    let q = p + 2;
    const end = p + 2 + plen;
    while (q < end) {
      if (q + 2 > end || q + 2 + b[q + 1] > end) return { ok: false, error: err(ERR_OPEN, 0, "a capability runs past its parameter") };
      capabilities.push({ code: b[q], value: b.slice(q + 2, q + 2 + b[q + 1]) });
      q += 2 + b[q + 1];
    }
    p = end;
  }
  let asn = myAs;
  let as4 = false;
  let ipv4Unicast = false;
  let routeRefresh = false;
  for (const c of capabilities) {
    if (c.code === CAP_AS4 && c.value.length === 4) {
      as4 = true;
      asn = u32(c.value, 0);
    } else if (c.code === CAP_MP && c.value.length === 4 && u16(c.value, 0) === 1 && c.value[3] === 1) ipv4Unicast = true;
    else if (c.code === CAP_ROUTE_REFRESH) routeRefresh = true;
  }
  return { ok: true, msg: { type: MSG_OPEN, version, asn, holdTime, bgpId, capabilities, as4, ipv4Unicast, routeRefresh } };
}

/** Prefixes in the <length, prefix> encoding (RFC 4271 §4.3); null when malformed. */
function decodePrefixes(b: Uint8Array, off: number, end: number): Prefix[] | null {
  const out: Prefix[] = [];
  let p = off;
  while (p < end) {
    const len = b[p];
    const n = (len + 7) >> 3;
    if (len > 32 || p + 1 + n > end) return null;
    let addr = 0;
    for (let i = 0; i < 4; i++) addr = (addr << 8) | (i < n ? b[p + 1 + i] : 0);
    // Trailing bits beyond the length are ignored (§4.3: "irrelevant").
    addr = len === 0 ? 0 : (addr & (0xffffffff << (32 - len))) >>> 0;
    out.push({ addr, len });
    p += 1 + n;
  }
  return out;
}

/** The attributes that are one 32-bit value (RFC 4271 §5.1.3, §5.1.4, §5.1.5; RFC 4456 §8): their name and field. */
const U32_ATTRS: Record<number, [string, "nextHop" | "med" | "localPref" | "originatorId"]> = {
  [ATTR_NEXT_HOP]: ["NEXT_HOP", "nextHop"],
  [ATTR_MED]: ["MULTI_EXIT_DISC", "med"],
  [ATTR_LOCAL_PREF]: ["LOCAL_PREF", "localPref"],
  [ATTR_ORIGINATOR_ID]: ["ORIGINATOR_ID", "originatorId"],
};

/**
 * UPDATE (RFC 4271 §4.3) with RFC 7606's error handling: the withdrawn routes and the
 * attribute list's total length must be consistent (else session reset, §5.3 / §4), and
 * each attribute's problem gets the action of its section (§7.1–7.11).
 */
function decodeUpdate(b: Uint8Array, as4: boolean): Decoded {
  const wlen = u16(b, 0);
  if (2 + wlen + 2 > b.length) return { ok: false, error: err(ERR_UPDATE, UPD_MALFORMED_ATTR_LIST, `withdrawn routes length ${wlen} runs past the UPDATE`) };
  const withdrawn = decodePrefixes(b, 2, 2 + wlen);
  if (withdrawn === null) return { ok: false, error: err(ERR_UPDATE, UPD_INVALID_NETWORK, "a withdrawn prefix is malformed") };
  const alen = u16(b, 2 + wlen);
  const aoff = 4 + wlen;
  if (aoff + alen > b.length) return { ok: false, error: err(ERR_UPDATE, UPD_MALFORMED_ATTR_LIST, `total path attribute length ${alen} runs past the UPDATE`) };
  // §5.3: the NLRI field is located by the total attribute length; if it cannot be
  // parsed, nothing of the UPDATE can be trusted.
  const nlri = decodePrefixes(b, aoff + alen, b.length);
  if (nlri === null) return { ok: false, error: err(ERR_UPDATE, UPD_INVALID_NETWORK, "an NLRI prefix is malformed") };
  const attrs: PathAttributes = { unknown: [] };
  const discarded: BgpError[] = [];
  let withdraw: BgpError | undefined;
  const seen = new Set<number>();
  const twa = (subcode: number, reason: string): void => {
    withdraw ??= err(ERR_UPDATE, subcode, reason, new Uint8Array(0), "treat-as-withdraw");
  };
  let p = aoff;
  const end = aoff + alen;
  while (p < end) {
    if (p + 3 > end) {
      twa(UPD_MALFORMED_ATTR_LIST, "an attribute header runs past the attribute list");
      break;
    }
    const flags = b[p];
    const type = b[p + 1];
    const ext = (flags & FLAG_EXTENDED) !== 0;
    if (ext && p + 4 > end) {
      twa(UPD_MALFORMED_ATTR_LIST, "an attribute header runs past the attribute list");
      break;
    }
    const len = ext ? u16(b, p + 2) : b[p + 2];
    const v = p + (ext ? 4 : 3);
    // RFC 7606 §4: an attribute that overruns the list: treat-as-withdraw, and the
    // total length (already checked) still locates the NLRI.
    if (v + len > end) {
      twa(UPD_ATTR_LENGTH, `attribute ${type} of length ${len} runs past the attribute list`);
      break;
    }
    p = v + len;
    // §3(g): a repeated attribute: all but the first are discarded (MP_* are worse).
    if (seen.has(type)) {
      if (type === ATTR_MP_REACH || type === ATTR_MP_UNREACH)
        return { ok: false, error: err(ERR_UPDATE, UPD_MALFORMED_ATTR_LIST, `attribute ${type} appears twice`) };
      continue;
    }
    seen.add(type);
    const wellKnown = type === ATTR_ORIGIN || type === ATTR_AS_PATH || type === ATTR_NEXT_HOP || type === ATTR_LOCAL_PREF || type === ATTR_ATOMIC_AGGREGATE;
    const known = wellKnown || type === ATTR_MED || type === ATTR_AGGREGATOR || type === ATTR_ORIGINATOR_ID || type === ATTR_CLUSTER_LIST;
    if (known || type === ATTR_MP_REACH || type === ATTR_MP_UNREACH) {
      // §3(c): Optional/Transitive flags that conflict with the attribute's definition.
      const want = wellKnown ? FLAG_TRANSITIVE : type === ATTR_AGGREGATOR ? FLAG_OPTIONAL | FLAG_TRANSITIVE : FLAG_OPTIONAL;
      if ((flags & (FLAG_OPTIONAL | FLAG_TRANSITIVE)) !== want) {
        if (type === ATTR_MP_REACH || type === ATTR_MP_UNREACH)
          return { ok: false, error: err(ERR_UPDATE, UPD_ATTR_FLAGS, `attribute ${type} has flags 0x${flags.toString(16)}`) };
        twa(UPD_ATTR_FLAGS, `attribute ${type} has flags 0x${flags.toString(16)} that conflict with its definition`);
        continue;
      }
    }
    switch (type) {
      case ATTR_ORIGIN:
        if (len !== 1) twa(UPD_ATTR_LENGTH, `ORIGIN of length ${len}`);
        else if (b[v] > ORIGIN_INCOMPLETE) twa(UPD_INVALID_ORIGIN, `ORIGIN value ${b[v]} is undefined`);
        else attrs.origin = b[v];
        break;
      case ATTR_AS_PATH: {
        const path = decodeAsPath(b, v, len, as4 ? 4 : 2);
        if (path === null) twa(UPD_MALFORMED_AS_PATH, "AS_PATH is malformed");
        else attrs.asPath = path;
        break;
      }
      case ATTR_NEXT_HOP:
      case ATTR_MED:
      case ATTR_LOCAL_PREF:
      case ATTR_ORIGINATOR_ID: {
        const [name, field] = U32_ATTRS[type];
        if (len !== 4) twa(UPD_ATTR_LENGTH, `${name} of length ${len}`);
        else attrs[field] = u32(b, v);
        break;
      }
      case ATTR_ATOMIC_AGGREGATE:
        if (len !== 0) discarded.push(err(ERR_UPDATE, UPD_ATTR_LENGTH, `ATOMIC_AGGREGATE of length ${len}`, new Uint8Array(0), "attribute-discard"));
        else attrs.atomicAggregate = true;
        break;
      case ATTR_AGGREGATOR:
        // §7.7: a malformed AGGREGATOR is discarded; we do not use it anyway.
        if (len !== (as4 ? 8 : 6)) discarded.push(err(ERR_UPDATE, UPD_ATTR_LENGTH, `AGGREGATOR of length ${len}`, new Uint8Array(0), "attribute-discard"));
        break;
      case ATTR_CLUSTER_LIST:
        if (len % 4 !== 0) twa(UPD_ATTR_LENGTH, `CLUSTER_LIST of length ${len}`);
        else attrs.clusterList = Array.from({ length: len / 4 }, (_, i) => u32(b, v + 4 * i));
        break;
      case ATTR_MP_REACH:
      case ATTR_MP_UNREACH: {
        // RFC 4760 §3/§4 for AFI 1 SAFI 1; RFC 7606 §7.11: malformed -> session reset.
        const r = decodeMp(b, v, len, type === ATTR_MP_REACH);
        if (typeof r === "string") return { ok: false, error: err(ERR_UPDATE, UPD_OPTIONAL_ATTR, r) };
        if (r === null) break; // another address family: not negotiated, ignored
        if (type === ATTR_MP_REACH) {
          attrs.nextHop ??= r.nextHop;
          nlri.push(...r.prefixes);
        } else withdrawn.push(...r.prefixes);
        break;
      }
      default:
        if (!(flags & FLAG_OPTIONAL)) {
          // RFC 4271 §6.3: a well-known attribute we do not recognise. RFC 7606 leaves
          // this case as it was: Unrecognized Well-known Attribute, the session resets.
          return {
            ok: false,
            error: err(ERR_UPDATE, UPD_UNRECOGNIZED_WELL_KNOWN, `unrecognized well-known attribute ${type}`, b.slice(v - (ext ? 4 : 3), v + len)),
          };
        }
        // Optional: transitive ones travel on (with Partial set, §5), others are dropped.
        if (flags & FLAG_TRANSITIVE) attrs.unknown.push({ flags: flags | FLAG_PARTIAL, type, value: b.slice(v, v + len) });
    }
  }
  // §3(d): mandatory attributes missing from an UPDATE that announces something.
  if (nlri.length > 0 && withdraw === undefined) {
    if (attrs.origin === undefined) twa(UPD_MISSING_WELL_KNOWN, "ORIGIN is missing");
    else if (attrs.asPath === undefined) twa(UPD_MISSING_WELL_KNOWN, "AS_PATH is missing");
    else if (attrs.nextHop === undefined) twa(UPD_MISSING_WELL_KNOWN, "NEXT_HOP is missing");
  }
  return { ok: true, msg: { type: MSG_UPDATE, withdrawn, attrs, nlri, treatAsWithdraw: withdraw, discarded } };
}

/** AS_PATH segments (RFC 4271 §4.3, RFC 6793 §3 for 4-octet); null when malformed (RFC 7606 §7.2). */
function decodeAsPath(b: Uint8Array, off: number, len: number, size: 2 | 4): AsPathSegment[] | null {
  const out: AsPathSegment[] = [];
  let p = off;
  const end = off + len;
  while (p < end) {
    if (p + 2 > end) return null;
    const type = b[p];
    const n = b[p + 1];
    if ((type !== AS_SET && type !== AS_SEQUENCE) || n === 0 || p + 2 + n * size > end) return null;
    const asns: number[] = [];
    for (let i = 0; i < n; i++) asns.push(size === 4 ? u32(b, p + 2 + 4 * i) : u16(b, p + 2 + 2 * i));
    out.push({ type, asns });
    p += 2 + n * size;
  }
  return out;
}

function decodeMp(b: Uint8Array, off: number, len: number, reach: boolean): { nextHop?: number; prefixes: Prefix[] } | null | string {
  if (len < 3) return "MP attribute too short";
  const afi = u16(b, off);
  const safi = b[off + 2];
  if (afi !== 1 || safi !== 1) return null;
  let p = off + 3;
  const end = off + len;
  let nextHop: number | undefined;
  if (reach) {
    if (p + 1 > end) return "MP_REACH_NLRI too short";
    const nhLen = b[p];
    if (nhLen !== 4 || p + 1 + nhLen + 1 > end) return `MP_REACH_NLRI next hop length ${nhLen}`;
    nextHop = u32(b, p + 1);
    p += 1 + nhLen + 1; // next hop, reserved octet
  }
  const prefixes = decodePrefixes(b, p, end);
  if (prefixes === null) return "an MP prefix is malformed";
  return { nextHop, prefixes };
}

// ---------------------------------------------------------------------------
// Encoding.

function message(type: number, body: number[] | Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER_LEN + body.length);
  out.fill(0xff, 0, 16);
  out[16] = out.length >>> 8;
  out[17] = out.length & 255;
  out[18] = type;
  out.set(body, HEADER_LEN);
  return out;
}

export function encodeKeepalive(): Uint8Array {
  return message(MSG_KEEPALIVE, []);
}

export function encodeNotification(code: number, subcode: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  return message(MSG_NOTIFICATION, [code, subcode, ...data]);
}

export function encodeRouteRefresh(afi = 1, safi = 1): Uint8Array {
  return message(MSG_ROUTE_REFRESH, [...be16(afi), 0, safi]);
}

/** OPEN announcing IPv4 unicast, route refresh and the 4-octet AS (My AS is AS_TRANS above 65535). */
export function encodeOpen(o: { asn: number; holdTime: number; bgpId: number }): Uint8Array {
  const caps = [CAP_MP, 4, 0, 1, 0, 1, CAP_ROUTE_REFRESH, 0, CAP_AS4, 4, ...be32(o.asn)];
  return message(MSG_OPEN, [4, ...be16(o.asn > 0xffff ? AS_TRANS : o.asn), ...be16(o.holdTime), ...be32(o.bgpId), caps.length + 2, 2, caps.length, ...caps]);
}

function encodePrefixes(list: Prefix[]): number[] {
  const out: number[] = [];
  for (const p of list) {
    out.push(p.len);
    const n = (p.len + 7) >> 3;
    for (let i = 0; i < n; i++) out.push((p.addr >>> (24 - 8 * i)) & 255);
  }
  return out;
}

function attr(flags: number, type: number, value: number[] | Uint8Array): number[] {
  if (value.length > 255) return [flags | FLAG_EXTENDED, type, ...be16(value.length), ...value];
  return [flags, type, value.length, ...value];
}

/** Path attributes in type order (RFC 4271 §5 recommends ascending order). */
export function encodeAttributes(a: PathAttributes, as4: boolean): number[] {
  const out: number[] = [];
  if (a.origin !== undefined) out.push(...attr(FLAG_TRANSITIVE, ATTR_ORIGIN, [a.origin]));
  if (a.asPath !== undefined) {
    const v: number[] = [];
    for (const s of a.asPath) {
      v.push(s.type, s.asns.length);
      for (const n of s.asns) v.push(...(as4 ? be32(n) : be16(n > 0xffff ? AS_TRANS : n)));
    }
    out.push(...attr(FLAG_TRANSITIVE, ATTR_AS_PATH, v));
  }
  if (a.nextHop !== undefined) out.push(...attr(FLAG_TRANSITIVE, ATTR_NEXT_HOP, be32(a.nextHop)));
  if (a.med !== undefined) out.push(...attr(FLAG_OPTIONAL, ATTR_MED, be32(a.med)));
  if (a.localPref !== undefined) out.push(...attr(FLAG_TRANSITIVE, ATTR_LOCAL_PREF, be32(a.localPref)));
  if (a.atomicAggregate) out.push(...attr(FLAG_TRANSITIVE, ATTR_ATOMIC_AGGREGATE, []));
  if (a.originatorId !== undefined) out.push(...attr(FLAG_OPTIONAL, ATTR_ORIGINATOR_ID, be32(a.originatorId)));
  if (a.clusterList !== undefined) out.push(...attr(FLAG_OPTIONAL, ATTR_CLUSTER_LIST, a.clusterList.flatMap(be32)));
  for (const u of a.unknown) out.push(...attr(u.flags & ~FLAG_EXTENDED, u.type, u.value));
  return out;
}

/** One UPDATE; the caller keeps it under 4096 bytes (updatesFor splits long lists). */
export function encodeUpdate(u: { withdrawn: Prefix[]; attrs?: PathAttributes; nlri: Prefix[] }, as4: boolean): Uint8Array {
  const w = encodePrefixes(u.withdrawn);
  const a = u.attrs && u.nlri.length ? encodeAttributes(u.attrs, as4) : [];
  return message(MSG_UPDATE, [...be16(w.length), ...w, ...be16(a.length), ...a, ...encodePrefixes(u.nlri)]);
}

/** UPDATEs for many prefixes sharing attributes, each within the 4096-byte limit. */
export function updatesFor(withdrawn: Prefix[], attrs: PathAttributes | undefined, nlri: Prefix[], as4: boolean): Uint8Array[] {
  const out: Uint8Array[] = [];
  const room = MAX_MESSAGE_LEN - HEADER_LEN - 4 - (attrs ? encodeAttributes(attrs, as4).length : 0);
  for (let i = 0; i < withdrawn.length; i += 500) out.push(encodeUpdate({ withdrawn: withdrawn.slice(i, i + 500), nlri: [] }, as4));
  const per = Math.max(1, Math.floor(room / 5));
  for (let i = 0; i < nlri.length; i += per) out.push(encodeUpdate({ withdrawn: [], attrs, nlri: nlri.slice(i, i + per) }, as4));
  return out;
}
