/**
 * ControlServer — answers `tapnet show …` and `tapnet capture …` for one node.
 *
 * Runs on the dataplane's thread, so no request may hold the event loop long: a
 * handler whose answer can be large returns a RowStream (a generator over its
 * table) instead of the data, and the server writes it as rows (protocol.ts) in
 * slices — at most SLICE_BYTES of output, SLICE_STEPS generator steps or SLICE_MS
 * of time each, one slice per event-loop turn (setImmediate), so the packet batches
 * that arrived meanwhile run between two slices. When the socket's buffer is full the next slice
 * waits for 'drain': a slow or stopped reader costs memory for one slice, never
 * the whole table. A client that goes away ends the walk (the generator is closed).
 */
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { END_PREFIX, type Reply, type Request, type RowsEnd } from "./protocol.js";

/**
 * A table walk: yields a row (a JSON-serializable object, or a string that already
 * is the JSON text of one, on one line), or null after a stretch of work that
 * produced no row (a chance to end the slice); its return value goes into the end
 * line beside `rows`.
 */
// biome-ignore lint/suspicious/noConfusingVoidType: a generator that returns nothing has return type void
export type RowGenerator = Generator<object | string | null, Record<string, unknown> | void, void>;

/** What a handler returns to answer with rows (see protocol.ts). */
export class RowStream {
  constructor(
    readonly rows: RowGenerator,
    /** Extra fields of the header line. */
    readonly header: Record<string, unknown> = {},
  ) {}
}

/** Largest request line (a batch of changes from a control plane). */
const MAX_REQUEST = 8 * 1024 * 1024;

export type Handler = (req: Request, sock: net.Socket) => unknown | "stream" | RowStream;

/** Output bytes after which a slice ends. */
const SLICE_BYTES = 32 * 1024;
/** Generator steps (rows and pauses) after which a slice ends. */
const SLICE_STEPS = 128;
/** Time after which a slice ends (a row costs some microseconds; this bounds a slow one). */
const SLICE_MS = 2;

export class ControlServer {
  private server: net.Server | null = null;
  /** Row streams being written now (for tests and `stats`). */
  activeStreams = 0;

  constructor(
    readonly socketPath: string,
    private readonly handlers: Record<string, Handler>,
  ) {}

  async listen(): Promise<void> {
    fs.mkdirSync(path.dirname(this.socketPath), { recursive: true, mode: 0o700 });
    fs.chmodSync(path.dirname(this.socketPath), 0o700);
    try {
      fs.unlinkSync(this.socketPath);
    } catch {
      // not there: fine
    }
    const server = net.createServer((sock) => this.onConnection(sock));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      // Created with a restrictive umask so there is no moment the socket is open to all.
      const old = process.umask(0o177);
      server.listen(this.socketPath, () => {
        process.umask(old);
        resolve();
      });
    });
    fs.chmodSync(this.socketPath, 0o600);
  }

  close(): void {
    this.server?.close();
    this.server = null;
    try {
      fs.unlinkSync(this.socketPath);
    } catch {
      // already gone
    }
  }

  private onConnection(sock: net.Socket): void {
    let buf = "";
    const onData = (chunk: Buffer): void => {
      buf += chunk.toString("utf8");
      const nl = buf.indexOf("\n");
      if (nl < 0) {
        if (buf.length > MAX_REQUEST) sock.destroy();
        return;
      }
      sock.off("data", onData);
      const line = buf.slice(0, nl);
      let reply: Reply;
      let streaming = false;
      try {
        const req = JSON.parse(line) as Request;
        const h = typeof req.cmd === "string" ? this.handlers[req.cmd] : undefined;
        if (!h) {
          reply = { ok: false, error: `unknown command '${String(req.cmd)}'` };
        } else {
          const data = h(req, sock);
          if (data instanceof RowStream) {
            this.writeRows(sock, data);
            return;
          }
          if (data instanceof Promise) {
            // A request served in slices (a batch of changes): answered when it is done.
            data.then(
              (d) => sock.end(`${JSON.stringify({ ok: true, data: d ?? null })}\n`),
              (e) => sock.end(`${JSON.stringify({ ok: false, error: e instanceof Error ? e.message : String(e) })}\n`),
            );
            return;
          }
          if (data === "stream") streaming = true;
          reply = { ok: true, data: streaming ? null : data };
        }
      } catch (e) {
        reply = { ok: false, error: e instanceof Error ? e.message : String(e) };
        streaming = false;
      }
      if (streaming) return; // the handler owns the socket now and has written its reply
      sock.end(`${JSON.stringify(reply)}\n`);
    };
    sock.on("data", onData);
    sock.on("error", () => sock.destroy());
  }

  private writeRows(sock: net.Socket, rs: RowStream): void {
    const gen = rs.rows;
    let rows = 0;
    let finished = false;
    this.activeStreams++;
    const finish = (tail: string): void => {
      if (finished) return;
      finished = true;
      this.activeStreams--;
      if (tail !== "") sock.end(tail);
    };
    // A reader that leaves stops the walk; the generator's finally blocks run.
    sock.once("close", () => {
      if (finished) return;
      finish("");
      gen.return(undefined);
    });
    const end = (totals: Record<string, unknown>): string => {
      const e: RowsEnd = { ...totals, rows };
      return `${END_PREFIX}${JSON.stringify(e)}}\n`;
    };
    const slice = (): void => {
      if (finished) return;
      if (sock.destroyed) {
        finish("");
        gen.return(undefined);
        return;
      }
      let out = "";
      const t0 = performance.now();
      try {
        for (let steps = 0; steps < SLICE_STEPS && out.length < SLICE_BYTES && performance.now() - t0 < SLICE_MS; steps++) {
          const r = gen.next();
          if (r.done === true) return finish(out + end(r.value ?? {}));
          if (r.value === null) continue;
          const line = typeof r.value === "string" ? r.value : JSON.stringify(r.value);
          if (line.startsWith(END_PREFIX)) throw new Error("a row may not start with the key 'end'");
          out += `${line}\n`;
          rows++;
        }
      } catch (e) {
        return finish(out + end({ error: e instanceof Error ? e.message : String(e) }));
      }
      // Backpressure: while the socket holds more than its high-water mark, the next
      // slice waits for the reader; otherwise it waits one event-loop turn.
      if (out === "" || sock.write(out)) setImmediate(slice);
      else sock.once("drain", slice);
    };
    sock.write(`${JSON.stringify({ ok: true, stream: "rows", ...rs.header })}\n`);
    setImmediate(slice);
  }
}
