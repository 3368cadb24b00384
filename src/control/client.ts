/** Client side of the control protocol (see protocol.ts). */
import fs from "node:fs";
import net from "node:net";
import type { Reply, Request } from "./protocol.js";

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
    sock.write(JSON.stringify(req) + "\n");
  });
}

/**
 * Sends a streaming request: waits for the JSON line, then hands every following
 * byte to `onData`. Resolves when the node ends the stream; `abort()` stops early.
 */
export async function stream(
  socketPath: string,
  req: Request,
  onData: (chunk: Buffer) => void,
): Promise<{ done: Promise<void>; abort: () => void }> {
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
  sock.write(JSON.stringify(req) + "\n");
  await header;
  return { done, abort: () => sock.end() };
}
