/** ControlServer — answers `tapnet show …` and `tapnet capture …` for one node. */
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import type { Reply, Request } from "./protocol.js";

export type Handler = (req: Request, sock: net.Socket) => unknown | "stream";

export class ControlServer {
  private server: net.Server | null = null;

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
        if (buf.length > 65536) sock.destroy();
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
          if (data === "stream") streaming = true;
          reply = { ok: true, data: streaming ? null : data };
        }
      } catch (e) {
        reply = { ok: false, error: e instanceof Error ? e.message : String(e) };
        streaming = false;
      }
      if (streaming) return; // the handler owns the socket now and has written its reply
      sock.end(JSON.stringify(reply) + "\n");
    };
    sock.on("data", onData);
    sock.on("error", () => sock.destroy());
  }
}
