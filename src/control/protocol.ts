/**
 * The control protocol of a node: a Unix stream socket (mode 0600 in a 0700
 * directory, so only root can talk to the dataplane). The client sends one JSON
 * line; the node answers in one of three forms:
 *
 *   one reply   one JSON line, `{"ok":true,"data":…}` or `{"ok":false,"error":"…"}`,
 *               for small answers (status, stats, ports, …) and for every error
 *               found before an answer starts (a bad filter, say);
 *   rows        for tables that can be large (conntrack, fdb, neigh, route), NDJSON:
 *               a header line `{"ok":true,"stream":"rows",…}`, then one JSON object
 *               per row and line, then an end line `{"end":{"rows":N,…}}` with the
 *               number of rows sent and totals of the listing; `"error"` in it
 *               when the listing failed part way. A row is never an object whose
 *               first key is `end`, so a reader tells the end line by its prefix.
 *               The node produces rows in slices between event-loop turns and
 *               waits for the socket to drain, so a listing never holds up the
 *               dataplane or buffers the table (see server.ts);
 *   capture     one JSON line, then a pcapng byte stream until the count is reached
 *               or the client leaves.
 */
export interface Request {
  cmd: string;
  [key: string]: unknown;
}

export type Reply = { ok: true; data: unknown } | { ok: false; error: string };

/** The header line of a row stream. */
export interface RowsHeader {
  ok: true;
  stream: "rows";
  [key: string]: unknown;
}

/** The end line of a row stream: `{"end": RowsEnd}`. */
export interface RowsEnd {
  rows: number;
  error?: string;
  [key: string]: unknown;
}

/** How the end line of a row stream starts (rows never start so). */
export const END_PREFIX = '{"end":';

/** Where a lab keeps its state and its nodes' sockets (tmpfs, gone at reboot). */
export const RUN_DIR = process.env.TAPNET_RUN_DIR ?? "/run/tapnet";
