/**
 * Packages a lab needs only when it uses them (etcd for a lab with an `etcd:` cluster,
 * BIRD for a BGP lab, podman for a container walkthrough): checked when such a lab comes
 * up and installed with apt-get then, so `npm run setup` stays quick for everyone else.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";

export interface Need {
  /** A command on PATH (sbin included), or an absolute path to a file. */
  what: string;
  /** The Debian package that provides it. */
  pkg: string;
}

const PATHS = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

export function present(what: string): boolean {
  if (what.startsWith("/")) return fs.existsSync(what);
  const dirs = [...(process.env.PATH ?? "").split(":"), ...PATHS];
  return dirs.some((d) => d !== "" && fs.existsSync(`${d}/${what}`));
}

/** Installs the packages of what is missing (as root, with apt-get); throws saying why not. */
export function ensurePackages(needs: Need[], forWhat: string, log: (m: string) => void = () => undefined): void {
  const missing = [...new Set(needs.filter((n) => !present(n.what)).map((n) => n.pkg))];
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) throw new Error(`${forWhat} needs the Debian packages ${missing.join(" ")}: run as root so tapnet can install them`);
  if (!present("apt-get")) throw new Error(`${forWhat} needs the packages ${missing.join(" ")} and there is no apt-get here: install them by hand`);
  log(`installing ${missing.join(" ")} (${forWhat})`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  let r = spawnSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...missing], { encoding: "utf8", env });
  if (r.status !== 0) {
    // The package lists may be missing on a fresh image: update once and try again.
    spawnSync("apt-get", ["update", "-qq"], { encoding: "utf8", env });
    r = spawnSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...missing], { encoding: "utf8", env });
  }
  if (r.status !== 0)
    throw new Error(`${forWhat}: apt-get install ${missing.join(" ")} failed: ${(r.stderr || r.stdout).trim().split("\n").slice(-3).join(" ")}`);
  const still = needs.filter((n) => !present(n.what));
  if (still.length) throw new Error(`${forWhat}: after installing ${missing.join(" ")}, still missing ${still.map((n) => n.what).join(", ")}`);
}
