/**
 * A test agent: a child process (usually `ip netns exec NS node agent.mjs`) that runs
 * real port code inside a network namespace and is driven by JSON lines: the test
 * writes `{id, op, ...args}` to its stdin, the agent answers `{id, ok, ...}` on stdout
 * and announces itself with `{ready: …}`. Used by the port tests that need a namespace
 * of their own (pcap, VXLAN, IPIP).
 */
import type { ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { createInterface } from "node:readline";
import ts from "typescript";

export class Agent<S = Record<string, unknown>> {
  stderr = "";
  private nextId = 1;
  private readonly waiting = new Map<number, (m: Record<string, unknown>) => void>();
  private readyWaiter: ((m: Record<string, unknown>) => void) | null = null;
  readonly exited: Promise<number | null>;
  exitCode: number | null | undefined = undefined;

  constructor(readonly child: ChildProcess) {
    // A dead agent shows up as `exited`; writing to its stdin must not throw EPIPE
    // into the test runner.
    child.stdin!.on("error", () => {});
    child.stderr!.on("data", (d: Buffer) => {
      this.stderr += d.toString();
    });
    createInterface({ input: child.stdout! }).on("line", (line) => {
      let m: Record<string, unknown>;
      try {
        m = JSON.parse(line) as Record<string, unknown>;
      } catch {
        this.stderr += `(stdout) ${line}\n`;
        return;
      }
      if (typeof m.id === "number") {
        this.waiting.get(m.id)?.(m);
        this.waiting.delete(m.id);
      } else if ("ready" in m) {
        this.readyWaiter?.(m);
      }
    });
    this.exited = new Promise((res) =>
      child.on("exit", (code) => {
        this.exitCode = code;
        res(code);
      }),
    );
  }

  private timed<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
    let t: NodeJS.Timeout;
    const timeout = new Promise<never>((_, rej) => {
      t = setTimeout(() => rej(new Error(`agent: ${what} timed out after ${ms} ms\n${this.stderr}`)), ms);
    });
    const died = this.exited.then((c) => {
      throw new Error(`agent exited (${c}) during ${what}\n${this.stderr}`);
    });
    return Promise.race([p, timeout, died]).finally(() => clearTimeout(t));
  }

  ready(ms = 10_000): Promise<Record<string, unknown>> {
    return this.timed(new Promise((res) => (this.readyWaiter = res)), ms, "start");
  }

  /** Sends `{id, op, ...args}` and waits for the line with that id (ok: true, or throws). */
  async call(op: string, args: Record<string, unknown> = {}, ms = 5_000): Promise<S> {
    if (this.exitCode !== undefined) throw new Error(`agent has exited (${this.exitCode})\n${this.stderr}`);
    const id = this.nextId++;
    const p = new Promise<Record<string, unknown>>((res) => this.waiting.set(id, res));
    this.child.stdin!.write(`${JSON.stringify({ id, op, ...args })}\n`);
    const m = await this.timed(p, ms, op);
    if (m.ok !== true) throw new Error(`agent: ${op} failed: ${String(m.error)}`);
    return m as unknown as S;
  }

  state(): Promise<S> {
    return this.call("state");
  }

  /** Asks the agent to exit; kills it (by its PID) if it does not within 3 s. */
  async stop(): Promise<void> {
    if (this.exitCode !== undefined) return;
    try {
      await this.call("exit", {}, 2_000);
    } catch {
      // it may already be gone
    }
    const t = await Promise.race([this.exited, new Promise((r) => setTimeout(() => r("timeout"), 3_000))]);
    if (t === "timeout") await this.kill();
  }

  /** Kills the agent (SIGKILL, by its PID) and waits up to 2 s for it to go. */
  async kill(): Promise<void> {
    if (this.exitCode === undefined && this.child.pid !== undefined) {
      try {
        process.kill(this.child.pid, "SIGKILL");
      } catch {
        // already gone
      }
      await Promise.race([this.exited, new Promise((r) => setTimeout(r, 2_000))]);
    }
  }
}

/**
 * Transpiles `entries` (paths under `root`) and the relative imports they reach into
 * `outDir`, keeping the layout under `root` (no type check): what an agent child
 * process imports, as plain JavaScript.
 */
export function transpileTree(root: string, entries: string[], outDir: string): void {
  const todo = entries.map((e) => join(root, e));
  const done = new Set<string>();
  while (todo.length > 0) {
    const file = todo.pop()!;
    if (done.has(file)) continue;
    done.add(file);
    const text = readFileSync(file, "utf8");
    const js = ts.transpileModule(text, {
      fileName: file,
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    }).outputText;
    const dest = join(outDir, relative(root, file)).replace(/\.ts$/, ".js");
    mkdirSync(dirname(dest), { recursive: true });
    writeFileSync(dest, js);
    for (const m of text.matchAll(/from\s+["'](\.{1,2}\/[^"']+)\.js["']/g)) {
      todo.push(resolve(dirname(file), `${m[1]}.ts`));
    }
  }
}
