/** IpPlan (src/lab/ip-plan.ts): many namespaces' ip commands in one ip -batch, in order, failures named. */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { IpPlan } from "../../src/lab/ip-plan.js";
import { canRunLabs } from "../integration/harness.js";

const A = "tnt-plan-a";
const B = "tnt-plan-b";

function ip(args: string[]): string {
  return spawnSync("ip", args, { encoding: "utf8" }).stdout;
}

describe.skipIf(!canRunLabs())("IpPlan", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tapnet-ip-plan-"));
  afterAll(() => {
    for (const n of [A, B]) spawnSync("ip", ["netns", "del", n]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("runs commands for several namespaces in order, programs too, and leaves no batch file", () => {
    const plan = new IpPlan(dir);
    plan
      .ip(undefined, `netns add ${A}`)
      .ip(undefined, `netns add ${B}`)
      .exec(A, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
      .ip(A, "link add v0 type veth peer name v1")
      .ip(A, `link set v1 netns ${B} name eth0`)
      .ip(A, "address add 10.9.0.1/24 dev v0")
      .ip(A, "link set v0 up")
      .ip(B, "link set eth0 up");
    expect(plan.empty).toBe(false);
    plan.run();
    expect(plan.empty).toBe(true);
    expect(ip(["-n", A, "-o", "-4", "addr", "show", "v0"])).toContain("10.9.0.1/24");
    expect(ip(["-n", B, "-o", "link", "show", "eth0"])).toMatch(/eth0@/);
    expect(spawnSync("ip", ["netns", "exec", A, "sysctl", "-n", "net.ipv6.conf.all.disable_ipv6"], { encoding: "utf8" }).stdout.trim()).toBe("1");
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it("stops at the first failure and names the command and its namespace", () => {
    const plan = new IpPlan(dir);
    plan.ip(B, "link set lo up").ip(B, "link set nosuchdev up").ip(B, "address add 10.9.1.1/24 dev eth0");
    expect(() => plan.run()).toThrow(/'ip link set nosuchdev up' \(netns exec tnt-plan-b ip -batch .*\) failed: Cannot find device "nosuchdev"/);
    expect(ip(["-n", B, "-o", "-4", "addr", "show", "eth0"])).not.toContain("10.9.1.1");
    expect(fs.readdirSync(dir)).toEqual([]);
    const one = new IpPlan(dir).ip(A, "link set nosuchdev up");
    expect(() => one.run()).toThrow(/'netns exec tnt-plan-a ip link set nosuchdev up' failed: Cannot find device/);
  });
});
