/**
 * The node's journal: every runtime change the node accepted, one JSON line each, in the
 * lab's state directory beside its config (`/run/tapnet/LAB/NODE.journal`). A node that
 * starts with a journal replays it after building its graph from the config, so a node
 * restarted after a crash ends in the state it had; `lab save` folds it into a topology.
 *
 * The file is opened once at start-up (before the seccomp filter, which forbids creating
 * files) and appended to with one write per change: a change is journaled only after it
 * took effect, so a replay never meets a change that was refused.
 */
import fs from "node:fs";

export interface JournalEntry {
  /** The change, as the control request carried it (`op` and its arguments). */
  op: string;
  args: Record<string, unknown>;
  /** Wall-clock time it was accepted (ISO 8601). */
  at: string;
}

export class Journal {
  private fd: number;

  private constructor(
    readonly path: string,
    fd: number,
  ) {
    this.fd = fd;
  }

  /** Opens (creating) the journal for appending; reads what it holds for the replay. */
  static open(path: string): { journal: Journal; entries: JournalEntry[]; bad: number } {
    const fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_APPEND | fs.constants.O_CREAT, 0o600);
    return { journal: new Journal(path, fd), ...parse(fs.readFileSync(fd, "utf8")) };
  }

  /** What a journal holds, without opening it for writing (none when it does not exist yet). */
  static read(path: string): JournalEntry[] {
    try {
      return parse(fs.readFileSync(path, "utf8")).entries;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw e;
    }
  }

  append(op: string, args: Record<string, unknown>): void {
    const e: JournalEntry = { op, args, at: new Date().toISOString() };
    fs.writeSync(this.fd, `${JSON.stringify(e)}\n`);
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}

function parse(text: string): { entries: JournalEntry[]; bad: number } {
  const entries: JournalEntry[] = [];
  let bad = 0;
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    try {
      const e = JSON.parse(line) as JournalEntry;
      if (typeof e.op === "string" && e.args !== null && typeof e.args === "object") entries.push(e);
      else bad++;
    } catch {
      // A line cut short by a crash mid-write: the change it held was never confirmed.
      bad++;
    }
  }
  return { entries, bad };
}
