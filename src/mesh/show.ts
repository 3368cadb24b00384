/** `tapnet show mesh` as text: the peer, its connections, its view of the mesh, the broadcast tree. */
import type { MeshView } from "./view.js";

export function renderMesh(d: unknown): string {
  const v = d as MeshView;
  const lines = [
    `  peer ${v.name} (uid ${v.uid}) port ${v.port}${v.password ? ", password set" : ""}`,
    `  path MTU ${v.pathMtu} (smallest connection PMTU in the mesh), mesh MTU ${v.mtu} (${v.overhead} bytes of IP, UDP, sleeve and Ethernet headers)`,
    "  connections:",
  ];
  if (v.connections.length === 0) lines.push("    (none)");
  for (const c of v.connections) {
    lines.push(
      `    ${c.direction === "outbound" ? "->" : "<-"} ${c.address.padEnd(15)} ${(c.peer ?? "?").padEnd(12)} ${c.state}${c.error ? `: ${c.error}` : ""}${c.pmtu !== undefined ? `  pmtu ${c.pmtu ?? "probing"}` : ""}`,
    );
  }
  lines.push("  peers:", `    ${"NAME".padEnd(12)} ${"UID".padEnd(16)} ${"ROUTE".padEnd(16)} CONNECTIONS`);
  for (const p of v.peers) {
    lines.push(`    ${p.name.padEnd(12)} ${p.uid.padEnd(16)} ${p.via.padEnd(16)} ${p.connections.join(",") || "-"}`);
  }
  lines.push("  broadcast tree (our children per origin):");
  for (const [o, ch] of Object.entries(v.broadcast)) lines.push(`    from ${o.padEnd(12)} -> ${ch.join(",") || "-"}`);
  if (v.ipam) {
    const i = v.ipam;
    lines.push(`  address ring ${i.range}${i.ready ? "" : " (not heard yet)"}: ${i.free} free here`);
    lines.push(`    ${"PEER".padEnd(12)} ${"ADDRESSES".padStart(9)} ${"FREE".padStart(9)}  RANGES`);
    for (const p of i.peers) {
      const rs = p.ranges.map((r) => `${r.start}-${r.end}`);
      lines.push(
        `    ${p.peer.padEnd(12)} ${String(p.size).padStart(9)} ${String(p.free).padStart(9)}  ${rs.slice(0, 4).join(" ")}${rs.length > 4 ? ` (+${rs.length - 4})` : ""}`,
      );
    }
    const al = Object.entries(i.allocations);
    if (al.length) lines.push(`    allocated here: ${al.map(([o, a]) => `${o} ${a}`).join(", ")}`);
  }
  const c = Object.entries(v.counters)
    .filter(([, n]) => n !== 0)
    .map(([k, n]) => `${k} ${n}`)
    .join("  ");
  lines.push(`  counters: ${c || "(none)"}`);
  return lines.join("\n");
}
