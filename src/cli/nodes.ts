/**
 * Which control socket(s) a command talks to: a node by name, or every node of a lab;
 * `--node PATH` (with a '/') names a node's control socket (a node outside any lab).
 */
import { findLab } from "../lab/lab.js";

export function nodeSocket(node: string | undefined, labName: string | undefined): { node: string; socket: string }[] {
  if (node?.includes("/")) return [{ node, socket: node }];
  const s = findLab(node, "node", labName);
  const names = node ? [node] : Object.keys(s.nodes);
  return names.map((n) => ({ node: n, socket: s.nodes[n].socket }));
}
