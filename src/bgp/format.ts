/** `tapnet show bgp` as text: birdc's `show protocols` and calicoctl's `node status` in one table. */
import { table } from "../cli/format.js";

interface PeerRow {
  name: string;
  address: string;
  asn: number;
  type: string;
  state: string;
  since: string | null;
  uptime: number | null;
  received: number;
  accepted: number;
  best: number;
  sent: number;
  treatAsWithdraw: number;
  lastError: string | null;
  lastUpdateError: string | null;
}

export interface BgpStatusView {
  asn: number;
  routerId: string;
  localAddress: string;
  port: number;
  listening: true | string;
  announced: string[];
  locRib: number;
  installed: number;
  fibRefused: Record<string, string>;
  peers: PeerRow[];
}

function age(s: number | null): string {
  if (s === null) return "-";
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
}

export function renderBgp(d: unknown): string {
  const s = d as BgpStatusView;
  const head =
    `BGP AS ${s.asn}, router id ${s.routerId}, ${s.listening === true ? `listening on ${s.localAddress}:${s.port}` : `not listening (${s.listening})`}, ` +
    `announces ${s.announced.join(" ") || "nothing"}; Loc-RIB ${s.locRib} prefixes, ${s.installed} installed in the FIB`;
  const refused = Object.entries(s.fibRefused).map(([p, why]) => `  not installed: ${p}: ${why}`);
  const rows = s.peers.map((p) => [
    p.name,
    p.address,
    p.asn,
    p.type,
    p.state,
    age(p.uptime),
    `${p.received}/${p.accepted}/${p.best}`,
    p.sent,
    p.lastError ?? p.lastUpdateError ?? "",
  ]);
  return [head, table(["PEER", "ADDRESS", "AS", "TYPE", "STATE", "UP", "RCVD/ACCEPTED/BEST", "SENT", "LAST ERROR"], rows), ...refused].join("\n");
}
