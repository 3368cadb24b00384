// Reasons returned by every `xxxCheck()` in src/wire. One numbering for all protocols so
// an element can keep a single counter array indexed by reason and name its counters with
// CHECK_REASON_NAMES (DESIGN.md: failures are a destination with a named counter).

export const CHECK_OK = 0;
/** Fewer bytes than the fixed header, or than the header length the packet declares. */
export const CHECK_TOO_SHORT = 1;
/** IPv4 version field is not 4. */
export const CHECK_BAD_VERSION = 2;
/** IPv4 IHL below 5 (RFC 791 section 3.1: minimum header is 5 words). */
export const CHECK_BAD_IHL = 3;
/** IPv4 total length below the header length or beyond the bytes available. */
export const CHECK_BAD_TOTAL_LEN = 4;
export const CHECK_BAD_CHECKSUM = 5;
/** ARP hardware type is not Ethernet (1). */
export const CHECK_BAD_HW_TYPE = 6;
/** ARP protocol type is not IPv4 (0x0800). */
export const CHECK_BAD_PROTO_TYPE = 7;
/** ARP hardware address length is not 6. */
export const CHECK_BAD_HW_LEN = 8;
/** ARP protocol address length is not 4. */
export const CHECK_BAD_PROTO_LEN = 9;
/** UDP length field below 8 or beyond the bytes available. */
export const CHECK_BAD_LENGTH = 10;
/** TCP data offset below 5 or beyond the segment. */
export const CHECK_BAD_DATA_OFFSET = 11;
/** Frame has no 802.1Q/802.1ad tag where one was expected. */
export const CHECK_NOT_TAGGED = 12;

/** Counter names, indexed by reason code. */
export const CHECK_REASON_NAMES: readonly string[] = Object.freeze([
  "ok",
  "tooShort",
  "badVersion",
  "badIhl",
  "badTotalLen",
  "badChecksum",
  "badHwType",
  "badProtoType",
  "badHwLen",
  "badProtoLen",
  "badLength",
  "badDataOffset",
  "notTagged",
]);

/** Number of reason codes; size a counter array with it. */
export const CHECK_REASON_COUNT = CHECK_REASON_NAMES.length;

/** Name of a reason code ("ok", "tooShort", ...), or "unknown" for an unknown code. */
export function checkReasonName(reason: number): string {
  return CHECK_REASON_NAMES[reason] ?? "unknown";
}
