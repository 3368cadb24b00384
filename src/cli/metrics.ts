/** `tapnet metrics --lab LAB --listen 127.0.0.1:9423`: Prometheus metrics of a running lab (src/lab/metrics.ts). */
import type { AddressInfo } from "node:net";
import type { Command } from "commander";

export function registerMetrics(program: Command): void {
  program
    .command("metrics")
    .requiredOption("--lab <name>", "the running lab")
    .option("--listen <host:port>", "where to serve /metrics (loopback only)", "127.0.0.1:9423")
    .option("--once", "print one scrape's exposition on stdout and exit")
    .description("serve Prometheus metrics of a lab's nodes: port and element counters, table sizes, RSS, CPU")
    .action(async (o: { lab: string; listen: string; once?: boolean }) => {
      const { collectLab, parseListen, serveMetrics } = await import("../lab/metrics.js");
      if (o.once) {
        process.stdout.write((await collectLab(o.lab)).text);
        return;
      }
      const { host, port } = parseListen(o.listen);
      const server = await serveMetrics(o.lab, host, port);
      // Port 0 picks a free port: say which.
      const bound = (server.address() as AddressInfo).port;
      console.log(`serving metrics of lab ${o.lab} on http://${host.includes(":") ? `[${host}]` : host}:${bound}/metrics`);
      const stop = (): void => {
        server.close();
        server.closeAllConnections();
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
}
