/**
 * The operator's HTTP endpoints: /healthz and /readyz for the kubelet's probes, /metrics for
 * Prometheus, each on the address its flag gives (0 turns it off). A port that cannot be bound is
 * the operator's configuration, so it stops the start with a UsageError naming the flag to change.
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { CliOptions } from "./cli.ts";
import { parseBindAddress, UsageError } from "./flags.ts";
import type { Registry } from "./prometheus.ts";

/**
 * Starts the probe and metrics servers the flags turn on, pushing each onto `servers` as it
 * listens (so the caller shuts down those that started when a later one fails). Probes answer
 * from the start: alive at once, ready when `isReady` says so.
 */
export function startServers(
  servers: Deno.HttpServer[],
  cli: Pick<CliOptions, "healthProbeBindAddress" | "metricsBindAddress">,
  log: Logger,
  isReady: () => boolean,
  registry: Registry,
): void {
  const health = parseBindAddress(cli.healthProbeBindAddress);
  if (health) {
    const bind = { flag: "health-probe-bind-address", text: cli.healthProbeBindAddress };
    servers.push(serve({ ...health, ...bind }, log, "health probes", (path) => {
      if (path === "/healthz") return new Response("ok\n");
      if (path === "/readyz") {
        return isReady() ? new Response("ok\n") : new Response("not ready\n", { status: 503 });
      }
      return undefined;
    }));
  }
  const metricsAddress = parseBindAddress(cli.metricsBindAddress);
  if (metricsAddress) {
    const bind = { flag: "metrics-bind-address", text: cli.metricsBindAddress };
    servers.push(serve({ ...metricsAddress, ...bind }, log, "metrics", async (path) => {
      if (path !== "/metrics") return undefined;
      return new Response(await registry.metrics(), {
        headers: { "content-type": registry.contentType },
      });
    }));
  }
}

/** An address to listen on, with the flag and the text it came from (for the error). */
export interface BindAddress {
  hostname: string;
  port: number;
  flag: string;
  text: string;
}

/**
 * Why the probe or metrics server could not listen, as one line naming the port and the flag
 * that sets it (a busy :8080 is likely on a laptop). Pure.
 */
export function explainBindError(error: unknown, address: BindAddress): UsageError {
  const { flag, text, port } = address;
  const given = `--${flag}=${text}`;
  if (error instanceof Deno.errors.AddrInUse) {
    return new UsageError(
      `port ${port} is already in use (${given}): stop what listens there, or pick another port with --${flag}=:PORT (0 turns it off)`,
    );
  }
  const why = error instanceof Error ? error.message : String(error);
  return new UsageError(
    `cannot listen on ${text} (${given}): ${why}; use :PORT for every address of this machine, or 0 to turn it off`,
  );
}

function serve(
  address: BindAddress,
  log: Logger,
  what: string,
  route: (path: string) => Response | undefined | Promise<Response | undefined>,
): Deno.HttpServer {
  try {
    return Deno.serve({
      hostname: address.hostname,
      port: address.port,
      onListen: ({ hostname, port }) =>
        log.info("Serving", { what, address: `${hostname}:${port}` }),
    }, async (req) => {
      const res = await route(new URL(req.url).pathname);
      return res ?? new Response("not found\n", { status: 404 });
    });
  } catch (error) {
    // Binding fails at once, synchronously: the address is the operator's configuration.
    throw explainBindError(error, address);
  }
}
