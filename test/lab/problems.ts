/** What the topology checker says of a file: one line a problem (without the header line), or none. */
import { parseTopology, TopologyError } from "../../src/lab/topology.js";

export function problems(yaml: string): string[] {
  try {
    parseTopology(yaml, "lab.yaml");
  } catch (e) {
    if (e instanceof TopologyError)
      return e.message
        .split("\n")
        .slice(1)
        .map((l) => l.trim());
    throw e;
  }
  return [];
}
