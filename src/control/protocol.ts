/**
 * The control protocol of a node: a Unix stream socket (mode 0600 in a 0700
 * directory, so only root can talk to the dataplane). The client sends one JSON
 * line; the node answers with one JSON line, `{"ok":true,"data":…}` or
 * `{"ok":false,"error":"…"}`. A `capture` request is answered with one JSON line
 * and then a pcapng byte stream until the count is reached or the client leaves.
 */
export interface Request {
  cmd: string;
  [key: string]: unknown;
}

export type Reply = { ok: true; data: unknown } | { ok: false; error: string };

/** Where a lab keeps its state and its nodes' sockets (tmpfs, gone at reboot). */
export const RUN_DIR = process.env.TAPNET_RUN_DIR ?? "/run/tapnet";
