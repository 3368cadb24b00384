/**
 * `tapnet demo`: a short guided tour on scripts/labs/switch.yaml — bring the lab up,
 * ping between hosts, show what the switch learned, capture a few frames and read
 * them with tshark, take the lab down (also when a step fails).
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { request, stream } from "../control/client.js";
import { labDown, labUp } from "../lab/lab.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const FILE = path.join(ROOT, "scripts/labs/switch.yaml");

function step(title: string): void {
  console.log(`\n\x1b[1m== ${title}\x1b[0m`);
}

function sh(argv: string[]): number {
  console.log(`$ ${argv.join(" ")}`);
  const r = spawnSync(argv[0], argv.slice(1), { stdio: "inherit" });
  return r.status ?? 1;
}

const tapnet = (...args: string[]): string[] => [process.execPath, path.join(ROOT, "dist/cli/main.js"), ...args];

export async function runDemo(): Promise<void> {
  const pcap = path.join(os.tmpdir(), `tapnet-demo-${process.pid}.pcapng`);
  step(`tapnet lab up ${path.relative(process.cwd(), FILE)}`);
  const s = await labUp(FILE, (m) => console.log(m));
  let failed = false;
  try {
    step("ping across the switch");
    if (sh(tapnet("lab", "exec", "h1", "--", "ping", "-n", "-c", "3", "-i", "0.2", "10.0.0.2")) !== 0) failed = true;
    if (sh(tapnet("lab", "exec", "h2", "--", "ping", "-n", "-c", "3", "-i", "0.2", "10.0.0.3")) !== 0) failed = true;

    step("what the switch learned (tapnet show fdb)");
    sh(tapnet("show", "fdb"));
    step("port counters (tapnet show ports)");
    sh(tapnet("show", "ports"));

    step("capture 6 frames on ports h1 and h3 while h1 pings h3");
    const out = fs.createWriteStream(pcap);
    const cap = await stream(s.nodes.sw1.socket, { cmd: "capture", ports: ["h1", "h3"], count: 6 }, (c) => out.write(c));
    sh(tapnet("lab", "exec", "h1", "--", "ping", "-n", "-c", "2", "-i", "0.2", "10.0.0.3"));
    const timer = setTimeout(() => cap.abort(), 5000);
    await cap.done;
    clearTimeout(timer);
    await new Promise<void>((r) => out.end(r));
    console.log(`wrote ${pcap}`);
    sh([
      "tshark",
      "-r",
      pcap,
      "-T",
      "fields",
      "-E",
      "header=y",
      "-e",
      "frame.number",
      "-e",
      "frame.interface_name",
      "-e",
      "eth.src",
      "-e",
      "eth.dst",
      "-e",
      "_ws.col.Info",
    ]);
    console.log(`\nOpen it in Wireshark: wireshark ${pcap}`);
    console.log("Or live:            sudo npx tapnet capture sw1 h1 h2 | wireshark -k -i -");
    const st = (await request(s.nodes.sw1.socket, { cmd: "stats" })) as { switch: Record<string, number> };
    console.log(
      `\nswitch counters: ${Object.entries(st.switch)
        .filter(([, v]) => v)
        .map(([k, v]) => `${k}=${v}`)
        .join(" ")}`,
    );
  } finally {
    step(`tapnet lab down ${path.relative(process.cwd(), FILE)}`);
    const r = await labDown(FILE);
    console.log(`removed ${r.removed.join(" ")}`);
  }
  if (failed) throw new Error("the demo's pings failed");
}
