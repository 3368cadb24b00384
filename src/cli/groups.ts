/**
 * The CLI's command groups, in the order help lists them: the top-level words each
 * registers commands under (its own, and those it adds subcommands to), and how to load
 * it. `tapnet WORD …` loads only the groups that name WORD (all of them for help or an
 * unknown word): a `tapnet show …` then loads a third of the CLI's modules, and Node.js
 * loading modules is most of what a short command costs. test/cli/groups.test.ts checks
 * that each word's commands are the same either way.
 */
import type { Command } from "commander";

export type CommandGroup = [words: string[], load: (program: Command) => Promise<unknown>];

export const COMMAND_GROUPS: CommandGroup[] = [
  [["lab"], async (p) => (await import("./lab-commands.js")).registerLab(p)],
  [["show"], async (p) => (await import("./show.js")).registerShow(p)],
  [["capture"], async (p) => (await import("./capture.js")).registerCapture(p)],
  [["trace"], async (p) => (await import("./trace.js")).registerTrace(p)],
  [
    ["route", "neigh", "fdb", "addr", "link", "service", "masquerade", "conntrack", "tunnel", "router", "mesh"],
    async (p) => (await import("./verbs.js")).registerVerbs(p),
  ],
  [["cni"], async (p) => (await import("./cni.js")).registerCni(p)],
  [["stp", "security"], async (p) => (await import("./l2.js")).registerL2(p)],
  // `agent`, `lab node add|del` (nodes with their agents) and `show agent`.
  [["agent", "lab", "show"], async (p) => (await import("./agent.js")).registerAgent(p)],
  [["metrics"], async (p) => (await import("./metrics.js")).registerMetrics(p)],
];

/** Registers on `program` the groups `word` needs (every group when none names it). */
export async function loadCommandGroups(program: Command, word: string | undefined): Promise<void> {
  const wanted = COMMAND_GROUPS.filter(([words]) => word !== undefined && words.includes(word));
  for (const [, load] of wanted.length ? wanted : COMMAND_GROUPS) await load(program);
}
