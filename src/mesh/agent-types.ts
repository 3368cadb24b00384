/** The mesh agent's (agent.ts) configuration, counters, connections and connection targets. */
import type net from "node:net";
import type { IpamConfig } from "./ipam.js";
import type { PmtuOptions } from "./pmtu.js";
import type { MessageReader } from "./wire.js";

export interface MeshAgentConfig {
  /** The peer's name (the node's). */
  name: string;
  /** TCP and UDP port (6783). */
  port: number;
  password?: string;
  /** Addresses to connect to at start. */
  peers: string[];
  /** Our underlay addresses (announced, never connected to). */
  addresses: string[];
  /** Timers (tests shorten them). */
  heartbeatMs?: number;
  deadMs?: number;
  gossipMs?: number;
  /** The address ring (ipam.ts); none: no IPAM. */
  ipam?: IpamConfig;
  /** Path-MTU probe timers (pmtu.ts; tests shorten them). */
  pmtu?: Omit<PmtuOptions, "max">;
  log?: (line: string) => void;
}

export const COUNTER_NAMES = [
  "accepted",
  "connected",
  "handshakes",
  "refused",
  "authFailures",
  "badMessages",
  "malformedEntries",
  "tooLong",
  "gossipReceived",
  "gossipSent",
  "unknownHeartbeats",
  "strayProbeAcks",
] as const;
export type AgentCounter = (typeof COUNTER_NAMES)[number];

type ConnState = "handshake" | "pending" | "established";

export interface Conn {
  sock: net.Socket;
  outbound: boolean;
  addr: string;
  remotePort: number;
  state: ConnState;
  nonce: string;
  peerNonce: string;
  peer: { name: string; uid: string; short: number } | null;
  helloSeen: boolean;
  reader: MessageReader;
  since: number;
  lastAck: number;
  target: Target | null;
  closed: boolean;
  /** Closed as the second connection to a peer (quietly). */
  duplicate: boolean;
}

export interface Target {
  addr: string;
  configured: boolean;
  conn: Conn | null;
  state: "idle" | "connecting" | "connected" | "failed";
  lastError: string;
  failures: number;
  retryAt: number;
}
