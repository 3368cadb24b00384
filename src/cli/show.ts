/** `tapnet show …`: inspect running nodes over their control sockets. */
import { type Command, Option } from "commander";
import { request, requestRows } from "../control/client.js";
import type { Request } from "../control/protocol.js";
import type { ConnEntryView } from "../elements/conntrack-list.js";
import type { InterfaceRow, NeighbourRow, RouteRow } from "../elements/router/ipv4-router.js";
import type { GraphDescription } from "../node/graph.js";
import type { SandboxReport } from "../node/sandbox.js";
import { findLab } from "../lab/lab.js";
import { indentedTable, table, vlanList } from "./format.js";
import { nodeSocket } from "./nodes.js";
import type { DropsReport } from "../node/drops.js";

export function registerShow(program: Command): void {
  const show = program
    .command("show")
    .description("inspect running nodes")
    .addOption(new Option("--node <name>", "only this node (default: every node of the lab)"))
    .option("--lab <name>", "the lab, when several are up")
    .option("--json", "machine-readable output");

  interface ShowOpts {
    node?: string;
    lab?: string;
    json?: boolean;
  }

  function showCommand(what: string, description: string, render: (data: unknown) => string | Promise<string>): void {
    show
      .command(what)
      .description(description)
      .option("--node <name>", "only this node")
      .option("--lab <name>", "the lab, when several are up")
      .option("--json", "machine-readable output")
      .action(async (o: ShowOpts, cmd: Command) => {
        const opts = { ...(cmd.parent?.opts() as ShowOpts), ...o };
        const results: Record<string, unknown> = {};
        for (const { node, socket } of nodeSocket(opts.node, opts.lab)) {
          results[node] = await request(socket, { cmd: what });
        }
        if (opts.json) return console.log(JSON.stringify(opts.node ? results[opts.node] : results, null, 2));
        const parts = await Promise.all(Object.entries(results).map(async ([node, data]) => `node ${node}\n${await render(data)}`));
        console.log(parts.join("\n\n"));
      });
  }

  /**
   * Output for listings: lines gathered and handed to stdout 64 KiB at a time. Writes
   * to a pipe, a file or a terminal are synchronous on Linux, so while stdout is slow
   * the control socket is not read and the node, its socket full, waits.
   */
  class Out {
    private buf = "";
    constructor() {
      // `| head`: the reader left; stop quietly like other tools.
      process.stdout.on("error", (e: NodeJS.ErrnoException) => {
        if (e.code === "EPIPE") process.exit(0);
        throw e;
      });
    }
    write(s: string): void {
      this.buf += s;
      if (this.buf.length >= 65536) this.flush();
    }
    flush(): void {
      if (this.buf !== "") process.stdout.write(this.buf);
      this.buf = "";
    }
  }

  /** Prints one node's rows as text as they come; `end` gets the end line's totals. */
  interface RowPrinter {
    row(json: string): void;
    end(totals: Record<string, unknown>): void;
  }

  /**
   * A `show` subcommand answered with rows (protocol.ts): printed as they arrive,
   * never gathered. `--json`: one JSON array of the rows (an object of arrays keyed
   * by node without --node), one row per line.
   */
  function showRows(
    what: string,
    description: string,
    printer: (out: Out) => RowPrinter,
    extra?: {
      options: (c: Command) => void;
      request: (o: Record<string, unknown>) => Promise<Record<string, unknown>>;
      /** Answers the command another way when it returns true (conntrack --count). */
      instead?: (req: Record<string, unknown>, opts: ShowOpts) => Promise<boolean>;
    },
  ): Command {
    const c = show
      .command(what)
      .description(description)
      .option("--node <name>", "only this node")
      .option("--lab <name>", "the lab, when several are up")
      .option("--json", "machine-readable output");
    extra?.options(c);
    c.action(async (o: ShowOpts & Record<string, unknown>, cmd: Command) => {
      const opts = { ...(cmd.parent?.opts() as ShowOpts), ...o };
      const req = { cmd: what, ...(await extra?.request(o)) };
      if (extra?.instead !== undefined && (await extra.instead(req, opts))) return;
      const nodes = nodeSocket(opts.node, opts.lab);
      const out = new Out();
      const one = opts.node !== undefined;
      if (opts.json && !one) out.write("{\n");
      for (const [k, { node, socket }] of nodes.entries()) {
        if (opts.json) {
          if (!one) out.write(`${JSON.stringify(node)}: `);
          out.write("[");
          let n = 0;
          await requestRows(socket, req, (row) => out.write((n++ === 0 ? "\n" : ",\n") + row));
          out.write(n === 0 ? "]" : "\n]");
          out.write(!one && k < nodes.length - 1 ? ",\n" : "\n");
        } else {
          out.write(`${k > 0 ? "\n" : ""}node ${node}\n`);
          const p = printer(out);
          const r = await requestRows(socket, req, (row) => p.row(row));
          p.end(r.end);
        }
      }
      if (opts.json && !one) out.write("}\n");
      out.flush();
    });
    return c;
  }

  /**
   * Aligned text tables for listings: the first TABLE_BUFFER rows are gathered so the
   * columns fit them (and, when that is all there is, sorted); past that, rows are
   * printed as they come with those widths (a longer cell pushes its line right).
   */
  const TABLE_BUFFER = 1000;
  function streamTable<T>(
    out: Out,
    headers: string[],
    cells: (r: T) => Array<string | number | null>,
    sort?: (a: T, b: T) => number,
    empty = "  (empty)",
  ): RowPrinter {
    let first: T[] | null = [];
    let widths: number[] = [];
    const fmt = (row: Array<string | number | null>): string =>
      row
        .map((c, i) => {
          const t = c === null ? "-" : String(c);
          return i === row.length - 1 ? t : t.padEnd(widths[i]);
        })
        .join("  ")
        .trimEnd();
    const flushFirst = (rows: T[]): void => {
      const all = rows.map(cells);
      widths = headers.map((h, i) => Math.max(h.length, ...all.map((r) => (r[i] === null ? 1 : String(r[i]).length))));
      out.write(`${table(headers, all)}\n`);
    };
    return {
      row(json) {
        const r = JSON.parse(json) as T;
        if (first === null) return out.write(`${fmt(cells(r))}\n`);
        first.push(r);
        if (first.length >= TABLE_BUFFER) {
          flushFirst(first);
          first = null;
        }
      },
      end(t) {
        if (first !== null) {
          if (first.length === 0) out.write(`${empty}\n`);
          else flushFirst(sort ? first.sort(sort) : first);
        }
        if (t.resized === true) process.stderr.write("tapnet: the table grew during the listing: entries may be missing\n");
      },
    };
  }
  interface StatusReply {
    lab: string;
    node: string;
    pid: number;
    uptime: number;
    ports: string[];
    sandbox: SandboxReport;
  }
  showCommand("graph", "the node's data path: ports, elements (inputs, outputs, counters) and the edges between them", (d) => {
    const g = d as GraphDescription;
    const lines = [`  offloads ${g.offload ? "on (virtio-net headers)" : "off"}`, "  ports"];
    lines.push(
      ...indentedTable(
        ["PORT", "KIND", "IFNAME", "MODE"],
        g.ports.map((p) => [p.name, p.kind, p.ifname, p.mode]),
      ),
    );
    lines.push("  elements");
    for (const e of g.elements) {
      const io = e.hooks ? `hooks ${e.hooks.join(", ")}` : `in/out ${e.inputs.join(", ")}`;
      lines.push(`    ${e.name} (${e.kind}): ${io}; ${e.counters.length} counters`);
    }
    lines.push("  edges");
    for (const e of g.edges) lines.push(`    ${e.from} -> ${e.to}${e.via ? ` (${e.via})` : ""}`);
    return lines.join("\n");
  });

  showCommand("status", "the node process: PID, uptime, ports, and what it runs with (uid, capabilities, seccomp)", (d) => {
    const s = d as StatusReply;
    return table(
      ["FIELD", "VALUE"],
      [
        ["pid", s.pid],
        ["uptime", `${s.uptime}s`],
        ["ports", s.ports.join(",")],
        ["uid", s.sandbox.uid],
        ["capabilities", s.sandbox.capabilities.join(",") || "none"],
        ["no_new_privs", s.sandbox.noNewPrivs ? "yes" : "no"],
        ["seccomp", s.sandbox.seccompAllowed !== null ? `${s.sandbox.seccomp}, ${s.sandbox.seccompAllowed} system calls allowed` : s.sandbox.seccomp],
      ],
    );
  });

  interface FdbRow {
    mac: string;
    vlan: number | null;
    port: string;
    static: boolean;
    age: number | null;
    /** For a VXLAN port's entries: the remote VTEP's underlay address. */
    dst: string | null;
  }
  showRows("fdb", "the switch's forwarding table and remote VTEPs (like 'bridge fdb show'; sorted when at most 1000 entries, else in table order)", (out) =>
    streamTable<FdbRow>(
      out,
      ["MAC", "VLAN", "PORT", "TYPE", "AGE", "DST"],
      (r) => [r.mac, r.vlan, r.port, r.static ? "static" : "dynamic", r.age === null ? "-" : `${r.age}s`, r.dst],
      (a, b) => (a.vlan ?? 1e9) - (b.vlan ?? 1e9) || a.port.localeCompare(b.port) || a.mac.localeCompare(b.mac),
    ),
  );

  interface ConntrackOpts {
    proto?: string;
    src?: string;
    dst?: string;
    sport?: string;
    dport?: string;
    state?: string;
    limit?: string;
    count?: boolean;
  }
  // Loaded by the command's request step, before any row is printed.
  let ct: typeof import("../elements/conntrack-list.js");
  showRows(
    "conntrack",
    "tracked connections (like 'conntrack -L'; with --count like 'conntrack -C'); filters select on the original direction",
    (out) => {
      let n = 0;
      return {
        row(json) {
          out.write(`${ct.conntrackLine(JSON.parse(json) as ConnEntryView)}\n`);
          n++;
        },
        end() {
          if (n === 0) out.write("  (no connections)\n");
          out.write(`conntrack: ${n} flow entries\n`);
        },
      };
    },
    {
      options: (c) =>
        c
          .option("-p, --proto <proto>", "tcp, udp or icmp")
          .option("-s, --src <addr>", "original source address or prefix (ADDR or ADDR/LEN)")
          .option("-d, --dst <addr>", "original destination address or prefix")
          .option("--sport <port>", "original source port (tcp, udp)")
          .option("--dport <port>", "original destination port (tcp, udp)")
          .option("--state <state>", "TCP state: SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE")
          .option("--limit <n>", "list at most n entries")
          .option("--count", "print only how many entries match (like 'conntrack -C')"),
      request: async (o) => {
        ct = await import("../elements/conntrack-list.js");
        const c = o as ConntrackOpts;
        const r = { proto: c.proto, src: c.src, dst: c.dst, sport: c.sport, dport: c.dport, state: c.state, limit: c.limit, count: c.count === true };
        ct.parseConntrackQuery(r); // bad arguments fail here, before any node is asked
        return r;
      },
      // --count: one number per node (conntrack -C), from the end line's `matched`.
      instead: async (req, opts) => {
        if (req.count !== true) return false;
        const counts: Array<[string, number]> = [];
        for (const { node, socket } of nodeSocket(opts.node, opts.lab)) {
          counts.push([node, Number((await requestRows(socket, req as Request, () => undefined)).end.matched)]);
        }
        if (opts.json) {
          console.log(JSON.stringify(opts.node !== undefined ? { count: counts[0][1] } : Object.fromEntries(counts.map(([k, v]) => [k, { count: v }]))));
        } else {
          console.log(opts.node !== undefined ? String(counts[0][1]) : counts.map(([k, v]) => `${k}: ${v}`).join("\n"));
        }
        return true;
      },
    },
  );

  interface ServiceRow {
    name: string;
    vip: string;
    proto: string;
    port: number;
    backends: string[];
    algorithm: string;
    connections: number[];
  }
  showCommand("services", "services: VIP:port -> backends, with live connections per backend", (d) => {
    const rows = d as ServiceRow[];
    if (rows.length === 0) return "  (no services)";
    return table(
      ["SERVICE", "VIP", "PROTO", "BACKENDS (connections)", "ALGORITHM"],
      rows.map((s) => [
        s.name,
        `${s.vip}:${s.port}`,
        s.proto,
        s.backends.length ? s.backends.map((b, i) => `${b} (${s.connections[i] ?? 0})`).join(" ") : "none: REJECT",
        s.algorithm,
      ]),
    );
  });

  interface TunnelRow {
    port: string;
    kind: string;
    local: string;
    vni?: number;
    dstPort?: number;
    remotes?: string[];
    peers?: string[];
    mtu: number;
    counters: Record<string, number>;
  }
  showCommand("mesh", "the mesh peer's view: connections, peers and routes (direct or relay), broadcast tree", async (d) =>
    (await import("../mesh/show.js")).renderMesh(d),
  );

  showCommand("tunnels", "tunnel endpoints (VXLAN, IPIP) and their counters", (d) => {
    const rows = d as TunnelRow[];
    if (rows.length === 0) return "  (no tunnels)";
    return rows
      .map((t) => {
        const head =
          t.kind === "vxlan"
            ? `${t.port}: vxlan vni ${t.vni} local ${t.local} dstport ${t.dstPort} mtu ${t.mtu}${t.remotes?.length ? ` remotes ${t.remotes.join(",")}` : ""}`
            : `${t.port}: ipip local ${t.local} peers ${t.peers?.join(",")} mtu ${t.mtu}`;
        const c = Object.entries(t.counters)
          .filter(([, v]) => v !== 0)
          .map(([k, v]) => `${k} ${v}`)
          .join("  ");
        return `${head}\n    ${c || "(no traffic)"}`;
      })
      .join("\n");
  });

  interface PortRow {
    name: string;
    kind: string;
    ifname: string;
    mac: string;
    mtu: number;
    mode: string;
    pvid: number | null;
    tagged: number[];
    untagged: number[];
    routed: string | null;
    rxFrames: number;
    rxBytes: number;
    rxDrops: number;
    txFrames: number;
    txBytes: number;
    txDrops: number;
    impair: { out?: { text: string }; in?: { text: string } } | null;
  }
  showCommand("ports", "ports with their VLANs and counters (like 'ip -s link')", (d) =>
    table(
      ["PORT", "KIND", "MAC", "MTU", "MODE", "VLANS", "RX-FRAMES", "RX-BYTES", "RX-DROPS", "TX-FRAMES", "TX-BYTES", "TX-DROPS", "IMPAIR"],
      (d as PortRow[]).map((p) => [
        p.name,
        p.kind,
        p.mac,
        p.mtu,
        p.mode,
        p.mode === "trunk" ? `${vlanList(p.tagged)}${p.pvid ? ` native ${p.pvid}` : ""}` : p.mode === "routed" ? `(${p.routed})` : String(p.pvid),
        p.rxFrames,
        p.rxBytes,
        p.rxDrops,
        p.txFrames,
        p.txBytes,
        p.txDrops,
        p.impair ? [p.impair.out ? `out: ${p.impair.out.text}` : "", p.impair.in ? `in: ${p.impair.in.text}` : ""].filter(Boolean).join("; ") : "-",
      ]),
    ),
  );

  // Spanning tree: tapnet nodes over their sockets, kernel bridges from sysfs, in one form.
  show
    .command("stp")
    .description("spanning tree: bridge id, root, and each port's role, state and cost (like 'bridge -d link', 'mstpctl showport'); kernel bridges too")
    .option("--node <name>", "only this node")
    .option("--lab <name>", "the lab, when several are up")
    .option("--json", "machine-readable output")
    .action(async (o: ShowOpts, cmd: Command) => {
      const opts = { ...(cmd.parent?.opts() as ShowOpts), ...o };
      const { kernelStpView, renderStp } = await import("./l2.js");
      const s = findLab(undefined, "node", opts.lab);
      const kernel = s.kernel ?? {};
      if (opts.node !== undefined && !s.nodes[opts.node] && !kernel[opts.node]) throw new Error(`lab ${s.lab} has no node '${opts.node}'`);
      const results: Record<string, unknown> = {};
      for (const n of [...Object.keys(s.nodes), ...Object.keys(kernel)].sort()) {
        if (opts.node !== undefined && opts.node !== n) continue;
        results[n] = kernel[n] ? kernelStpView(kernel[n].namespace) : await request(s.nodes[n].socket, { cmd: "stp" });
      }
      if (opts.json) return console.log(JSON.stringify(opts.node ? results[opts.node] : results, null, 2));
      console.log(
        Object.entries(results)
          .map(([n, v]) => `node ${n}\n${renderStp(v as Parameters<typeof renderStp>[0])}`)
          .join("\n\n"),
      );
    });

  showCommand("security", "storm control, port security and ARP inspection: per port limits, state and drops; ARP bindings", async (d) =>
    (await import("./l2.js")).renderSecurity(d),
  );

  showCommand("drops", "every drop counter that moved, by element and reason, with the time of the last drop", async (d) =>
    (await import("../node/drops.js")).renderDrops(d as DropsReport),
  );

  showCommand("stats", "element and engine counters; drops by reason", (d) => {
    const s = d as {
      switch: Record<string, number>;
      router: Record<string, number> | null;
      nat: Record<string, number> | null;
      fdbEntries: number;
      engine: Record<string, unknown>;
      offloads?: Record<string, Record<string, number>>;
      stp?: Record<string, number> | null;
      drops?: Array<{ counter: string; value: number; help: string }>;
    };
    const rows: Array<[string, string | number]> = [];
    for (const [k, v] of Object.entries(s.switch)) rows.push([`switch.${k}`, v]);
    for (const [k, v] of Object.entries(s.stp ?? {})) rows.push([`stp.${k}`, v]);
    rows.push(["switch.fdbEntries", s.fdbEntries]);
    for (const [k, v] of Object.entries(s.router ?? {})) rows.push([`router.${k}`, v]);
    for (const [k, v] of Object.entries(s.nat ?? {})) rows.push([`nat.${k}`, v]);
    for (const k of ["passes", "internalErrors", "roundsExceeded"]) rows.push([`engine.${k}`, String(s.engine[k])]);
    // Busy polling (the node's busyPoll setting): shown when it is or was on.
    const bp = s.engine.busyPoll as { windowUs: number; windows: number; turns: number } | undefined;
    if (bp !== undefined && (bp.windowUs > 0 || bp.windows > 0))
      for (const k of ["windowUs", "windows", "turns"] as const) rows.push([`engine.busyPoll.${k}`, bp[k]]);
    for (const [port, c] of Object.entries(s.offloads ?? {})) for (const [k, v] of Object.entries(c)) rows.push([`port.${port}.${k}`, v]);
    const drops = s.drops ?? [];
    const why = drops.length
      ? table(
          ["DROPPED", "FRAMES", "WHY"],
          drops.map((x) => [x.counter, x.value, x.help]),
        )
      : "(no frame dropped)";
    return `${table(["COUNTER", "VALUE"], rows)}\n\n${why}`;
  });

  showRows("neigh", "the router's neighbour (ARP) cache (like 'ip neigh')", (out) => {
    let n = 0;
    return {
      row(json) {
        const r = JSON.parse(json) as NeighbourRow;
        n++;
        // `ip neigh` style: ADDRESS dev IF lladdr MAC STATE
        out.write(
          `${r.address} dev ${r.dev}${r.mac ? ` lladdr ${r.mac}` : ""} ${r.state}${r.age !== null ? ` (${r.age}s)` : ""}${r.queued ? ` queued ${r.queued}` : ""}\n`,
        );
      },
      end() {
        if (n === 0) out.write("  (empty)\n");
      },
    };
  });

  showRows("route", "the router's routing table (like 'ip route')", (out) => ({
    row(json) {
      const r = JSON.parse(json) as RouteRow;
      const dst = r.prefix === "0.0.0.0/0" ? "default" : r.prefix;
      if (r.kind === "connected") out.write(`${dst} dev ${r.dev} proto kernel scope link src ${r.src}\n`);
      else out.write(`${dst}${r.via ? ` via ${r.via}` : ""} dev ${r.dev} proto ${r.kind}\n`);
    },
    end() {},
  }));

  showCommand("dhcp", "the routers' DHCP leases and servers", (d) => {
    const { leases, servers } = d as {
      leases: Array<{ interface: string; mac: string; ip: string; state: string; expiresInS: number }>;
      servers: Array<Record<string, string | number>>;
    };
    return [
      table(
        ["INTERFACE", "IP", "MAC", "STATE", "EXPIRES-IN"],
        leases.map((l) => [l.interface, l.ip, l.mac, l.state, `${l.expiresInS}s`]),
      ),
      ...servers.map(
        (v) =>
          `${v.interface} ${v.range}: ${v.received} received, ${v.offers} offers, ${v.acks} acks, ${v.naks} naks, ${v.releases} releases, ${v.declines} declines, ${v.malformed} malformed`,
      ),
    ].join("\n");
  });
  showCommand("bgp", "the BGP speaker's sessions and routes (like 'birdc show protocols')", async (d) => (await import("../bgp/format.js")).renderBgp(d));

  showCommand("interfaces", "the router's interfaces (like 'ip -br addr')", (d) =>
    table(
      ["INTERFACE", "MAC", "MTU", "ADDRESSES", "PROXY-ARP"],
      (d as InterfaceRow[]).map((i) => [i.name, i.mac, i.mtu, i.addresses.join(" "), i.proxyArp ? "on" : "off"]),
    ),
  );
}
