/**
 * The running operator: start-up checks, the poll loop, probes, metrics, leader election and a
 * clean shutdown. The only module with long-lived side effects besides main.ts.
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { type CliOptions, OPERATOR_VERSION, parseBindAddress } from "./cli.ts";
import { KubeError } from "./errors.ts";
import { ClientNodeKube } from "./kube.ts";
import type { LoadedConfig } from "./kubeconfig.ts";
import { LeaderElector } from "./leader.ts";
import { Metrics } from "./metrics.ts";
import { describePolicy } from "./policy.ts";
import { Reconciler } from "./reconciler.ts";
import { GROUP, PLURAL, type Script } from "./types.ts";

/** After SIGTERM, the process exits by this time whatever is still in flight. */
export const SHUTDOWN_DEADLINE_MS = 9_000;

/** Exit codes. */
export const EXIT = { ok: 0, runtime: 1, usage: 2 } as const;

/** A start-up check that failed, with the exit code it deserves. */
interface Preflight {
  ok: boolean;
  exitCode?: number;
  message?: string;
}

/** Turns the first LIST's error into one line saying what is wrong and how to fix it. Pure. */
export function explainStartError(error: KubeError, server: string): Preflight {
  if (error.kind === "notFound") {
    return {
      ok: false,
      exitCode: EXIT.usage,
      message:
        `the ScriptRun CRD (${PLURAL}.${GROUP}) is not installed in ${server}: run 'kubectl apply -f deploy/crd.yaml' (or 'script-operator crd | kubectl apply -f -')`,
    };
  }
  if (error.kind === "forbidden") {
    return {
      ok: false,
      exitCode: EXIT.usage,
      message:
        `permission denied: ${error.message}. Grant it with deploy/rbac.yaml (kubectl apply -f deploy/rbac.yaml) or use an identity that has it`,
    };
  }
  if (error.code === 0) {
    return {
      ok: false,
      exitCode: EXIT.runtime,
      message:
        `API server ${server} unreachable: ${error.message}. Check the kubeconfig's server and your network`,
    };
  }
  return { ok: false, exitCode: EXIT.runtime, message: error.message };
}

/** Runs the operator until SIGTERM/SIGINT (or one cycle with --once); returns the exit code. */
export async function runOperator(options: {
  cli: CliOptions;
  config: LoadedConfig;
  scripts: Map<string, Script>;
  log: Logger;
  signal?: AbortSignal;
}): Promise<number> {
  const { cli, config, scripts, log } = options;
  const server = config.kc.getCurrentCluster()?.server ?? "?";
  const metrics = new Metrics(new URL(server).host);
  const identity = `${Deno.hostname()}_${crypto.randomUUID().slice(0, 8)}`;
  const kube = new ClientNodeKube(config.kc, { observe: metrics.request, instance: identity });
  const stop = new AbortController();
  options.signal?.addEventListener("abort", () => stop.abort());
  const onSignal = () => {
    if (stop.signal.aborted) return;
    log.info("Shutting down", { signal: "SIGTERM/SIGINT" });
    stop.abort();
    // In-flight writes finish and the Lease is released, but never past this deadline (the
    // kubelet's grace period is 30 s; we promise 10 s).
    const deadline = setTimeout(() => {
      log.warn("Shutdown deadline reached, exiting", { afterMs: SHUTDOWN_DEADLINE_MS });
      Deno.exit(EXIT.ok);
    }, SHUTDOWN_DEADLINE_MS);
    Deno.unrefTimer(Number(deadline));
  };
  const signals: Deno.Signal[] = ["SIGTERM", "SIGINT"];
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  let elector: LeaderElector | undefined;
  const reconciler = new Reconciler({
    kube,
    scripts,
    log,
    namespaces: cli.namespaces,
    dryRun: cli.dryRun,
    concurrency: cli.concurrency,
    observer: metrics.reconcile,
    signal: stop.signal,
    policy: cli.policy,
    // Only the leader writes, checked before every write, not only at the start of a cycle.
    canWrite: () => elector === undefined || elector.isLeader(),
  });
  log.info("Starting", {
    version: OPERATOR_VERSION,
    credentials: config.source,
    server,
    namespaces: cli.namespaces.length > 0 ? cli.namespaces : "all",
    intervalMs: cli.intervalMs,
    scripts: [...scripts.keys()],
    dryRun: cli.dryRun,
    once: cli.once,
  });
  log.info("Policy in force", {
    namespaces: cli.namespaces.length > 0 ? cli.namespaces : "all",
    ...describePolicy(cli.policy),
  });

  let ready = false;
  const servers: Deno.HttpServer[] = [];
  try {
    if (!cli.once) {
      // Probes answer from the start: alive at once, ready only after a successful cycle.
      const health = parseBindAddress(cli.healthProbeBindAddress);
      if (health) {
        servers.push(serve(health, log, "health probes", (path) => {
          if (path === "/healthz") return new Response("ok\n");
          if (path === "/readyz") {
            return ready ? new Response("ok\n") : new Response("not ready\n", { status: 503 });
          }
          return undefined;
        }));
      }
      const metricsAddress = parseBindAddress(cli.metricsBindAddress);
      if (metricsAddress) {
        servers.push(serve(metricsAddress, log, "metrics", async (path) => {
          if (path !== "/metrics") return undefined;
          return new Response(await metrics.registry.metrics(), {
            headers: { "content-type": metrics.registry.contentType },
          });
        }));
      }
    }
    // Start-up check: one LIST of ScriptRuns proves credentials, reachability, CRD and RBAC.
    for (let attempt = 1;; attempt++) {
      const check = await preflight(kube, cli.namespaces[0], server);
      if (check.ok) break;
      if (cli.once) {
        // The message holds server text: pass it as a value, never as a log template.
        log.error("{error}", { error: check.message });
        return check.exitCode!;
      }
      const wait = Math.min(cli.intervalMs, 1000 * 2 ** Math.min(attempt, 5));
      log.error("{error}", { error: check.message, retryInMs: wait });
      if (await sleep(wait, stop.signal)) return EXIT.ok;
    }
    if (cli.once) {
      const result = await reconciler.cycle();
      log.info("Cycle done", { ...result, scopeErrors: result.scopeErrors.map((e) => e.message) });
      return result.ok ? EXIT.ok : EXIT.runtime;
    }

    if (cli.leaderElect) {
      const namespace = cli.leaderElectionNamespace ?? config.inClusterNamespace ?? "default";
      elector = new LeaderElector(config.kc, {
        namespace,
        name: cli.leaderElectionId,
        identity,
        log,
        onChange: (leading) => metrics.leader(cli.leaderElectionId, leading),
      });
      metrics.leader(cli.leaderElectionId, false);
      elector.start();
    }
    let waitingLogged = false;
    while (!stop.signal.aborted) {
      if (elector && !elector.isLeader()) {
        if (!waitingLogged) log.info("Waiting to become leader", { lease: cli.leaderElectionId });
        waitingLogged = true;
        // Followers are ready: they serve probes and take over when the leader goes.
        ready = true;
        if (await sleep(500, stop.signal)) break;
        continue;
      }
      waitingLogged = false;
      const result = await reconciler.cycle();
      // Not ready while the API server cannot be listed; ready after a cycle that could.
      ready = result.scopeErrors.length === 0;
      log.debug("Cycle done", {
        scriptRuns: result.scriptRuns,
        writes: result.writes,
        errors: result.errors,
      });
      if (await sleep(cli.intervalMs, stop.signal)) break;
    }
    return EXIT.ok;
  } finally {
    await elector?.stop();
    for (const s of servers) await s.shutdown();
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
    log.info("Stopped", {});
  }
}

async function preflight(
  kube: ClientNodeKube,
  namespace: string | undefined,
  server: string,
): Promise<Preflight> {
  try {
    await kube.listScriptRuns(namespace);
    return { ok: true };
  } catch (error) {
    if (error instanceof KubeError) return explainStartError(error, server);
    return { ok: false, exitCode: EXIT.runtime, message: String(error) };
  }
}

/** Sleeps `ms`; resolves true early when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(false);
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(true);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

function serve(
  address: { hostname: string; port: number },
  log: Logger,
  what: string,
  route: (path: string) => Response | undefined | Promise<Response | undefined>,
): Deno.HttpServer {
  return Deno.serve({
    hostname: address.hostname,
    port: address.port,
    onListen: ({ hostname, port }) => log.info("Serving", { what, address: `${hostname}:${port}` }),
  }, async (req) => {
    const res = await route(new URL(req.url).pathname);
    return res ?? new Response("not found\n", { status: 404 });
  });
}
