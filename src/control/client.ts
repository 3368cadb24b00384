/** Client side of the control protocol (see protocol.ts). */
import fs from "node:fs";
import net from "node:net";
import { StringDecoder } from "node:string_decoder";
import { END_PREFIX, type Reply, type Request, type RowsEnd } from "./protocol.js";

export class ControlError extends Error {}

function connect(socketPath: string): Promise<net.Socket> {
  if (!fs.existsSync(socketPath)) {
    return Promise.reject(new ControlError(`no control socket at ${socketPath}: is the node running?`));
  }
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(socketPath);
    sock.once("connect", () => resolve(sock));
    sock.once("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "EACCES") reject(new ControlError(`${socketPath}: permission denied (the control socket is root-only: run as root)`));
      else if (e.code === "ECONNREFUSED") reject(new ControlError(`${socketPath}: connection refused (the node process is gone)`));
      else reject(new ControlError(`${socketPath}: ${e.message}`));
    });
  });
}

/** Sends one request and returns the reply's data (throws ControlError on {ok:false}). */
export async function request<T = unknown>(socketPath: string, req: Request, timeoutMs = 5000): Promise<T> {
  const sock = await connect(socketPath);
  return new Promise<T>((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new ControlError(`${socketPath}: no answer to '${req.cmd}' within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.on("data", (c) => (buf += c.toString("utf8")));
    sock.on("error", (e) => {
      clearTimeout(timer);
      reject(new ControlError(`${socketPath}: ${e.message}`));
    });
    sock.on("close", () => {
      clearTimeout(timer);
      const line = buf.split("\n")[0];
      if (!line) return reject(new ControlError(`${socketPath}: the node closed the connection without answering`));
      let reply: Reply;
      try {
        reply = JSON.parse(line) as Reply;
      } catch {
        return reject(new ControlError(`${socketPath}: unreadable answer`));
      }
      if (reply.ok) resolve(reply.data as T);
      else reject(new ControlError(reply.error));
    });
    sock.write(`${JSON.stringify(req)}\n`);
  });
}

export interface RowsResult {
  /** The header line's fields (beyond ok/stream); {} for a one-line reply. */
  header: Record<string, unknown>;
  /** The end line's totals; for a one-line reply, just the row count. */
  end: RowsEnd;
}

/**
 * Sends a request answered with rows (protocol.ts) and hands each row to `onRow`
 * as the JSON text of one object, in order, as it arrives: nothing is kept, so a
 * listing of any size takes constant memory here. A node that answers in one line
 * instead (`data` an array) works too: each element becomes a row. `onRow` runs
 * synchronously, so a consumer that blocks (stdout into a full pipe) holds the
 * socket's reading, and the node, seeing its socket full, waits. `idleMs`: the most
 * time without a byte before giving up. Rejects with ControlError on {ok:false},
 * on an end line with an error, or when the stream is cut short.
 */
export async function requestRows(socketPath: string, req: Request, onRow: (json: string) => void, idleMs = 10_000): Promise<RowsResult> {
  const sock = await connect(socketPath);
  return new Promise<RowsResult>((resolve, reject) => {
    let pending = "";
    const utf8 = new StringDecoder("utf8");
    let header: Record<string, unknown> | null = null;
    let single = false;
    let settled = false;
    const fail = (e: Error): void => {
      if (settled) return;
      settled = true;
      sock.destroy();
      reject(e);
    };
    const succeed = (r: RowsResult): void => {
      if (settled) return;
      settled = true;
      sock.destroy();
      resolve(r);
    };
    sock.setTimeout(idleMs, () => fail(new ControlError(`${socketPath}: '${req.cmd}' sent nothing for ${idleMs} ms`)));
    const onLine = (line: string): void => {
      if (header === null) {
        let first: (Reply & { stream?: string }) | null = null;
        try {
          first = JSON.parse(line) as Reply & { stream?: string };
        } catch {
          return fail(new ControlError(`${socketPath}: unreadable answer`));
        }
        if (!first.ok) return fail(new ControlError(first.error));
        if (first.stream !== "rows") {
          // The one-reply form: an array of rows (or nothing).
          single = true;
          const data = first.data;
          const rows = Array.isArray(data) ? data : [];
          for (const r of rows) onRow(JSON.stringify(r));
          return succeed({ header: {}, end: { rows: rows.length } });
        }
        const { ok: _ok, stream: _s, ...rest } = first as Record<string, unknown>;
        header = rest;
        return;
      }
      if (line.startsWith(END_PREFIX)) {
        let end: RowsEnd;
        try {
          end = (JSON.parse(line) as { end: RowsEnd }).end;
        } catch {
          return fail(new ControlError(`${socketPath}: unreadable end of '${req.cmd}'`));
        }
        if (typeof end.error === "string") return fail(new ControlError(`${req.cmd}: ${end.error} (after ${end.rows} rows)`));
        return succeed({ header, end });
      }
      onRow(line);
    };
    sock.on("data", (c: Buffer) => {
      if (settled) return;
      pending += utf8.write(c);
      let start = 0;
      for (;;) {
        const nl = pending.indexOf("\n", start);
        if (nl < 0) break;
        const line = pending.slice(start, nl);
        start = nl + 1;
        try {
          onLine(line);
        } catch (e) {
          return fail(e instanceof Error ? e : new Error(String(e)));
        }
        if (settled) return;
      }
      pending = pending.slice(start);
    });
    sock.on("error", (e) => fail(new ControlError(`${socketPath}: ${e.message}`)));
    sock.on("close", () => {
      if (settled || single) return;
      if (header === null) fail(new ControlError(`${socketPath}: the node closed the connection without answering`));
      else fail(new ControlError(`${socketPath}: the listing of '${req.cmd}' was cut short (no end line)`));
    });
    sock.write(`${JSON.stringify(req)}\n`);
  });
}

/**
 * Sends a streaming request: waits for the JSON line, then hands every following
 * byte to `onData`. Resolves when the node ends the stream; `abort()` stops early.
 */
export async function stream(socketPath: string, req: Request, onData: (chunk: Buffer) => void): Promise<{ done: Promise<void>; abort: () => void }> {
  const sock = await connect(socketPath);
  let head: Buffer = Buffer.alloc(0);
  let headerDone = false;
  let resolveHeader!: () => void;
  let rejectHeader!: (e: Error) => void;
  const header = new Promise<void>((res, rej) => {
    resolveHeader = res;
    rejectHeader = rej;
  });
  const done = new Promise<void>((resolve, reject) => {
    sock.on("data", (c: Buffer) => {
      if (headerDone) return onData(c);
      head = Buffer.concat([head, c]);
      const nl = head.indexOf(0x0a);
      if (nl < 0) return;
      headerDone = true;
      let reply: Reply;
      try {
        reply = JSON.parse(head.subarray(0, nl).toString("utf8")) as Reply;
      } catch {
        const e = new ControlError(`${socketPath}: unreadable answer`);
        rejectHeader(e);
        return reject(e);
      }
      if (!reply.ok) {
        const e = new ControlError(reply.error);
        rejectHeader(e);
        sock.destroy();
        return reject(e);
      }
      resolveHeader();
      if (head.length > nl + 1) onData(head.subarray(nl + 1));
    });
    sock.on("error", (e) => reject(new ControlError(`${socketPath}: ${e.message}`)));
    sock.on("close", () => {
      if (!headerDone) {
        const e = new ControlError(`${socketPath}: the node closed the connection without answering`);
        rejectHeader(e);
        reject(e);
      } else resolve();
    });
  });
  done.catch(() => undefined);
  sock.write(`${JSON.stringify(req)}\n`);
  await header;
  return { done, abort: () => sock.end() };
}
