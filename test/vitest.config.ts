import path from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

export default defineConfig({
  root: path.resolve(path.dirname(fileURLToPath(import.meta.url)), ".."),
  test: {
    include: ["test/**/*.test.ts"],
    // Native handles and namespaces belong to processes, not worker threads.
    pool: "forks",
    // Integration tests build labs of namespaces and processes; one file at a time
    // keeps two cores from being oversubscribed and names from colliding.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
