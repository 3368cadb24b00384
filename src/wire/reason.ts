// Reasons returned by every `xxxCheck()` in src/wire: one numbering for all protocols. A
// check never throws; the element that called it counts the frame at the drop counter it
// names for the reason (the router's ip-input.ts: badVersion, badIhl, badChecksum, …).

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
