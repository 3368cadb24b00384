/**
 * The pods' MTU follows the mesh MTU (Weave sets its pods' interface MTU from its own).
 *
 * A pod of a mesh node whose MTU the topology (or `lab host add --mtu`) does not set is
 * made with the mesh MTU its node has at that moment, and recorded in the lab state as
 * following it (`mtuFromMesh`). When the mesh MTU changes later (the path-MTU probe
 * found a smaller or, again, a larger path), the pods that follow take the new one.
 *
 * Who does it: the node cannot (it is sandboxed in its own namespace, the pods' eth0
 * live in theirs); its supervisor, root and beside it for the lab's life, watches the
 * node's mesh MTU (`{cmd: "mesh-mtu", watch: true}`: a line at once and one at each
 * change, src/mesh/mesh-add.ts) and sets `ip -n POD link set eth0 mtu N` (for a veth
 * pod the node's end too) on each following pod of its node. A node that restarts
 * starts with the underlay's MTU and learns the mesh's again from its peers' gossip
 * and its probes: the pods follow it there too. Pods added while it runs are set when
 * they appear in the lab state (read every few seconds while the node is a mesh peer).
 */
import { spawn } from "node:child_process";
import { stream } from "../control/client.js";
import { nsName, readState } from "../lab/state.js";

/** How often the lab state is read for pods added since the last MTU change. */
const RESCAN_MS = 3000;

export class PodMtuFollower {
  /** The mesh MTU the node reported last (0: none yet, or no mesh). */
  private mtu = 0;
  /** Pod -> the MTU set on it last. */
  private readonly applied = new Map<string, number>();
  private abort: (() => void) | null = null;
  private rescan: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    private readonly lab: string,
    private readonly node: string,
    private readonly socket: string,
    private readonly log: (msg: string) => void,
  ) {}

  /** Watches the node (again: a restarted node is a new stream). */
  async watch(): Promise<void> {
    this.abort?.();
    this.abort = null;
    if (this.stopped) return;
    let buf = "";
    try {
      const s = await stream(this.socket, { cmd: "mesh-mtu", watch: true }, (chunk) => {
        buf += chunk.toString("utf8");
        for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          let m: unknown;
          try {
            m = (JSON.parse(line) as { mtu?: unknown }).mtu;
          } catch {
            m = undefined;
          }
          if (typeof m === "number") this.changed(m);
        }
      });
      this.abort = s.abort;
    } catch (e) {
      // A node without the watch (or gone again): nothing to follow until it is ready again.
      this.log(`mesh MTU of node ${this.node} not watched: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  stop(): void {
    this.stopped = true;
    this.abort?.();
    if (this.rescan) clearInterval(this.rescan);
  }

  private changed(mtu: number): void {
    if (mtu !== this.mtu) this.log(`mesh MTU of node ${this.node}: ${mtu}; the pods that follow it take it`);
    this.mtu = mtu;
    this.rescan ??= setInterval(() => this.apply(), RESCAN_MS);
    this.apply();
  }

  /** Sets the mesh MTU on every following pod of the node that does not have it yet. */
  private apply(): void {
    const s = readState(this.lab);
    if (s === null || this.mtu === 0) return;
    // A pod that left (and may come back under its name, made with the MTU of that moment).
    for (const pod of this.applied.keys()) if (!s.hosts[pod]) this.applied.delete(pod);
    for (const [pod, h] of Object.entries(s.hosts)) {
      if (h.node !== this.node || h.mtuFromMesh !== true || this.applied.get(pod) === this.mtu) continue;
      this.applied.set(pod, this.mtu);
      const cmds = [["-n", h.namespace, "link", "set", "dev", "eth0", "mtu", String(this.mtu)]];
      if (h.link !== "tap") cmds.push(["-n", nsName(this.lab, this.node), "link", "set", "dev", pod, "mtu", String(this.mtu)]);
      for (const args of cmds) {
        const p = spawn("ip", args, { stdio: ["ignore", "ignore", "pipe"] });
        let err = "";
        p.stderr.on("data", (c: Buffer) => (err += c.toString()));
        p.on("error", (e) => this.log(`pod ${pod}: ip: ${e.message}`));
        p.on("exit", (code) => {
          if (code === 0) return;
          // Tried again at the next rescan (a pod being made or removed right now).
          this.applied.delete(pod);
          this.log(`pod ${pod}: ip ${args.join(" ")}: ${err.trim() || `exit ${code}`}`);
        });
      }
    }
  }
}
