/**
 * A standby node: a `node run` process its supervisor (src/lab/supervisor.ts) starts
 * ahead of need, for a node with `standby: true`. It is started exactly as the node is
 * (in the node's namespace, through nodeLauncher(): the same capabilities and
 * no_new_privs), loads the node's modules and the native addon, says so on a pipe to
 * its supervisor (until then a crash of the node is a cold start's wait), and parks:
 * it blocks in recvmsg on the socket its supervisor gave it (STANDBY_FD_ENV: "SOCK,PIPE")
 * holding nothing the live node needs — no TAP, no socket, no journal, not even the
 * configuration, which it reads only when it takes over.
 *
 * When the node dies the supervisor attaches to the hosts' TAPs as for any restart and
 * sends them here as one message (native/fdpass.c, SCM_RIGHTS): TAPNET_TAP_FDS' text,
 * with each FD the index (3 + i) of the fds that come with it. The standby rewrites it
 * to the fds it received and runs the node (runNode): ports, journal replay, control
 * socket, seccomp — what a cold start does after Node.js has started and loaded its
 * modules, which under load is most of a restart's time.
 *
 * The supervisor gone (its end closed: lab down, a crash) ends the standby; so does
 * SIGTERM or SIGKILL, which a parked process cannot catch (no handlers yet).
 */
import fs from "node:fs";
import { fdRecv, loadNative } from "../io/native.js";
import { parseTapFds } from "./ports.js";
import { runNode } from "./node.js";
import { STANDBY_FD_ENV, TAP_FDS_ENV } from "./sandbox.js";

/** TAPNET_TAP_FDS as sent ("h1=3/1500": FD is 3 + the index among `fds`) with the fds as received. */
export function mapTapFds(spec: string, fds: number[]): string {
  const out: string[] = [];
  for (const [name, { fd, mtu }] of parseTapFds(spec)) {
    const got = fds[fd - 3];
    if (got === undefined) throw new Error(`standby: ${TAP_FDS_ENV} names fd ${fd} for ${name}, but only ${fds.length} fd(s) came`);
    out.push(`${name}=${got}${mtu ? `/${mtu}` : ""}`);
  }
  return out.join(",");
}

/** Parks until the supervisor hands over the TAPs, then runs the node; exits when the supervisor is gone. */
export async function runStandby(configPath: string, fdsText: string): Promise<void> {
  const [sock, ready] = fdsText.split(",").map(Number);
  if (!(sock >= 3 && ready >= 3 && Number.isInteger(sock) && Number.isInteger(ready))) {
    throw new Error(`${STANDBY_FD_ENV}: '${fdsText}' is not SOCK,PIPE (two fds >= 3)`);
  }
  delete process.env[STANDBY_FD_ENV];
  loadNative();
  fs.writeSync(ready, "parked\n");
  fs.closeSync(ready);
  const msg = fdRecv(sock);
  fs.closeSync(sock);
  if (msg === null) process.exit(0);
  delete process.env[TAP_FDS_ENV];
  const spec = mapTapFds(msg.text.trim(), msg.fds);
  if (spec !== "") process.env[TAP_FDS_ENV] = spec;
  await runNode(configPath);
}
