/**
 * A small etcd v3 client over etcd's JSON gateway (grpc-gateway: `POST /v3/<service>/<call>`
 * with the protobuf messages as JSON) and Node's own http module — no dependency, and the
 * same requests a person makes with curl. What it uses:
 *
 *   POST /v3/kv/range          { key, range_end }                       -> { header.revision, kvs }
 *   POST /v3/kv/txn            { compare, success, failure }            -> { succeeded, responses }
 *   POST /v3/lease/grant       { TTL }                                  -> { ID, TTL }
 *   POST /v3/lease/keepalive   { ID }   one message, one answer          -> { result: { TTL } } (no TTL: the lease is gone)
 *   POST /v3/lease/revoke      { ID }
 *   POST /v3/watch             { create_request: { key, range_end, start_revision } }
 *                              a stream of newline-separated { result: { events, compact_revision, canceled } }
 *
 * In the gateway's JSON, keys and values are base64 and 64-bit integers are decimal strings
 * (the protobuf JSON mapping); fields at their zero value are left out.
 *
 * Endpoints are tried in turn: a request that fails on one (connection refused, timeout,
 * an HTTP 5xx such as "etcdserver: no leader") goes to the next, and the one that answered
 * is used first from then on.
 */
import http from "node:http";

export interface KeyValue {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  lease: string;
}

export interface WatchEvent {
  type: "PUT" | "DELETE";
  kv: KeyValue;
}

export class EtcdError extends Error {}

const b64 = (s: string): string => Buffer.from(s, "utf8").toString("base64");
const unb64 = (s: string | undefined): string => (s === undefined ? "" : Buffer.from(s, "base64").toString("utf8"));

/** The end of the range of every key that starts with `prefix` (etcd's prefix range: last byte + 1). */
export function prefixEnd(prefix: string): string {
  const b = Buffer.from(prefix, "utf8");
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i] < 0xff) {
      const out = Buffer.from(b.subarray(0, i + 1));
      out[i]++;
      return out.toString("base64");
    }
  }
  return Buffer.from([0]).toString("base64");
}

interface RawKv {
  key?: string;
  value?: string;
  create_revision?: string;
  mod_revision?: string;
  lease?: string;
}

function kvOf(r: RawKv): KeyValue {
  return {
    key: unb64(r.key),
    value: unb64(r.value),
    createRevision: Number(r.create_revision ?? 0),
    modRevision: Number(r.mod_revision ?? 0),
    lease: r.lease ?? "0",
  };
}

export interface Watch {
  /** Stops the watch (closes its stream). */
  close(): void;
}

export interface WatchHandlers {
  events(ev: WatchEvent[], revision: number): void;
  /** The revision asked for was compacted away: list again and watch from there. */
  compacted(compactRevision: number): void;
  /** The stream ended or failed (the member went away): list again and watch from there. */
  lost(why: string): void;
}

export class EtcdClient {
  private current = 0;
  /** The endpoint of the last request that answered, and of the last failure. */
  lastEndpoint: string | null = null;
  lastError: string | null = null;
  lastOk = 0;

  constructor(
    readonly endpoints: string[],
    private readonly timeoutMs = 3000,
  ) {
    if (endpoints.length === 0) throw new EtcdError("no etcd endpoints");
    for (const e of endpoints) {
      let u: URL;
      try {
        u = new URL(e);
      } catch {
        throw new EtcdError(`etcd endpoint '${e}' is not a URL like http://192.168.0.10:2379`);
      }
      if (u.protocol !== "http:") throw new EtcdError(`etcd endpoint '${e}': only http:// is spoken (the lab's etcd has no TLS)`);
    }
  }

  private post(endpoint: string, path: string, body: unknown): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const data = JSON.stringify(body);
      const req = http.request(
        new URL(path, endpoint),
        { method: "POST", headers: { "content-type": "application/json", "content-length": Buffer.byteLength(data) }, timeout: this.timeoutMs, agent: false },
        (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (c: string) => (text += c));
          res.on("end", () => {
            let parsed: { error?: string; message?: string } & Record<string, unknown>;
            try {
              parsed = JSON.parse(text);
            } catch {
              return reject(new EtcdError(`${endpoint}${path}: HTTP ${res.statusCode}, not JSON: ${text.slice(0, 200)}`));
            }
            if ((res.statusCode ?? 500) >= 400 || parsed.error !== undefined) {
              return reject(new EtcdError(`${endpoint}${path}: HTTP ${res.statusCode}: ${parsed.message ?? parsed.error ?? text.slice(0, 200)}`));
            }
            resolve(parsed);
          });
          res.on("error", (e) => reject(new EtcdError(`${endpoint}${path}: ${e.message}`)));
        },
      );
      req.on("timeout", () => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
      req.on("error", (e) => reject(new EtcdError(`${endpoint}${path}: ${e.message}`)));
      req.end(data);
    });
  }

  /** One call, on each endpoint in turn until one answers. */
  async call<T>(path: string, body: unknown): Promise<T> {
    const errors: string[] = [];
    for (let i = 0; i < this.endpoints.length; i++) {
      const k = (this.current + i) % this.endpoints.length;
      const ep = this.endpoints[k];
      try {
        const r = (await this.post(ep, path, body)) as T;
        this.current = k;
        this.lastEndpoint = ep;
        this.lastOk = Date.now();
        this.lastError = null;
        return r;
      } catch (e) {
        errors.push(e instanceof Error ? e.message : String(e));
      }
    }
    this.lastError = errors.join("; ");
    throw new EtcdError(`etcd unreachable: ${this.lastError}`);
  }

  async get(key: string): Promise<{ kv: KeyValue | null; revision: number }> {
    const r = await this.call<{ header: { revision: string }; kvs?: RawKv[] }>("/v3/kv/range", { key: b64(key) });
    return { kv: r.kvs?.length ? kvOf(r.kvs[0]) : null, revision: Number(r.header.revision) };
  }

  async list(prefix: string): Promise<{ kvs: KeyValue[]; revision: number }> {
    const r = await this.call<{ header: { revision: string }; kvs?: RawKv[] }>("/v3/kv/range", { key: b64(prefix), range_end: prefixEnd(prefix) });
    return { kvs: (r.kvs ?? []).map(kvOf), revision: Number(r.header.revision) };
  }

  async put(key: string, value: string, lease?: string): Promise<void> {
    await this.call("/v3/kv/put", { key: b64(key), value: b64(value), ...(lease ? { lease } : {}) });
  }

  /**
   * Puts `key` only when its create revision is `createRevision` (0: only when the key is
   * absent) — the compare-and-swap flanneld acquires and renews subnets with. Returns
   * whether it was written, and else what the key holds now.
   */
  async putIf(key: string, value: string, lease: string, modRevision: number | 0): Promise<{ ok: boolean; current: KeyValue | null }> {
    const compare =
      modRevision === 0
        ? { key: b64(key), target: "CREATE", result: "EQUAL", create_revision: "0" }
        : { key: b64(key), target: "MOD", result: "EQUAL", mod_revision: String(modRevision) };
    const r = await this.call<{ succeeded?: boolean; responses?: Array<{ response_range?: { kvs?: RawKv[] } }> }>("/v3/kv/txn", {
      compare: [compare],
      success: [{ request_put: { key: b64(key), value: b64(value), lease } }],
      failure: [{ request_range: { key: b64(key) } }],
    });
    if (r.succeeded) return { ok: true, current: null };
    const kvs = r.responses?.[0]?.response_range?.kvs ?? [];
    return { ok: false, current: kvs.length ? kvOf(kvs[0]) : null };
  }

  async grant(ttlSeconds: number): Promise<string> {
    const r = await this.call<{ ID: string; TTL: string }>("/v3/lease/grant", { TTL: String(ttlSeconds) });
    return r.ID;
  }

  /** Renews a lease; returns its remaining TTL, or 0 when etcd no longer has it (expired or revoked). */
  async keepAlive(id: string): Promise<number> {
    const r = await this.call<{ result?: { TTL?: string } }>("/v3/lease/keepalive", { ID: id });
    return Number(r.result?.TTL ?? 0);
  }

  async revoke(id: string): Promise<void> {
    await this.call("/v3/lease/revoke", { ID: id });
  }

  /**
   * Watches every key under `prefix` from `startRevision` on, on the endpoint that last
   * answered. Exactly one of compacted() / lost() ends a watch (never after close()).
   */
  watch(prefix: string, startRevision: number, h: WatchHandlers): Watch {
    const ep = this.endpoints[this.current];
    let done = false;
    const finish = (f: () => void): void => {
      if (done) return;
      done = true;
      req.destroy();
      f();
    };
    const body = JSON.stringify({ create_request: { key: b64(prefix), range_end: prefixEnd(prefix), start_revision: String(startRevision) } });
    const req = http.request(new URL("/v3/watch", ep), { method: "POST", headers: { "content-type": "application/json" }, agent: false }, (res) => {
      if ((res.statusCode ?? 500) >= 400) return finish(() => h.lost(`${ep}/v3/watch: HTTP ${res.statusCode}`));
      res.setEncoding("utf8");
      let buf = "";
      res.on("data", (c: string) => {
        buf += c;
        for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line === "" || done) continue;
          let msg: {
            result?: { header?: { revision?: string }; events?: Array<{ type?: string; kv?: RawKv }>; compact_revision?: string; canceled?: boolean };
            error?: unknown;
          };
          try {
            msg = JSON.parse(line);
          } catch {
            return finish(() => h.lost(`${ep}/v3/watch: unreadable message`));
          }
          const r = msg.result;
          if (!r) return finish(() => h.lost(`${ep}/v3/watch: ${JSON.stringify(msg.error ?? msg).slice(0, 200)}`));
          if (r.compact_revision !== undefined && r.compact_revision !== "0") return finish(() => h.compacted(Number(r.compact_revision)));
          if (r.canceled) return finish(() => h.lost(`${ep}/v3/watch: canceled by etcd`));
          if (r.events?.length) {
            h.events(
              r.events.map((e) => ({ type: e.type === "DELETE" ? "DELETE" : "PUT", kv: kvOf(e.kv ?? {}) })),
              Number(r.header?.revision ?? 0),
            );
          }
        }
      });
      res.on("end", () => finish(() => h.lost(`${ep}/v3/watch: the stream ended`)));
      res.on("error", (e) => finish(() => h.lost(`${ep}/v3/watch: ${e.message}`)));
    });
    req.on("error", (e) => finish(() => h.lost(`${ep}/v3/watch: ${e.message}`)));
    req.end(body);
    return {
      close: () => {
        done = true;
        req.destroy();
      },
    };
  }
}
