#!/usr/bin/env node
/**
 * The CNI plugin executable: `CNI_PATH/tapnet`, installed by `tapnet cni install` as a
 * small script that runs this file. Reads the network configuration on stdin and the
 * CNI_* environment, prints the result or the error object on stdout (src/cni/plugin.ts).
 */
import { runPlugin } from "./plugin.js";

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return "";
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

const out = await runPlugin(process.env, await readStdin());
process.stdout.write(out.stdout, () => process.exit(out.code));
