/**
 * The CLI loads only the command groups of the word given (src/cli/groups.ts): for every
 * top-level word, the commands it has that way must be those it has with every group
 * loaded — a group that adds subcommands under another group's word (agent's `show
 * agent`, `lab node`) must name that word too.
 */
import { Command } from "commander";
import { describe, expect, it } from "vitest";
import { COMMAND_GROUPS, loadCommandGroups } from "../../src/cli/groups.js";

/** Every command path under `c`, as "show agent", "lab host add", … */
function paths(c: Command, prefix = ""): string[] {
  return c.commands.flatMap((s) => {
    const p = `${prefix}${s.name()}`;
    return [p, ...paths(s, `${p} `)];
  });
}

describe("command groups", () => {
  it("each word has the same commands whether only its groups or all of them are loaded", async () => {
    const all = new Command();
    await loadCommandGroups(all, undefined);
    const everything = paths(all);
    const words = all.commands.map((c) => c.name());
    expect(words.length).toBeGreaterThan(10);
    // Every top-level word is named by a group (else it would load everything).
    for (const w of words)
      expect(
        COMMAND_GROUPS.some(([ws]) => ws.includes(w)),
        w,
      ).toBe(true);
    for (const w of words) {
      const some = new Command();
      await loadCommandGroups(some, w);
      const mine = (list: string[]): string[] => list.filter((p) => p === w || p.startsWith(`${w} `));
      expect(mine(paths(some)), w).toEqual(mine(everything));
    }
  });

  it("an unknown word or none loads every group", async () => {
    const a = new Command();
    await loadCommandGroups(a, "no-such-word");
    const b = new Command();
    await loadCommandGroups(b, undefined);
    expect(paths(a)).toEqual(paths(b));
  });
});
