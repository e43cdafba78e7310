/**
 * The running operator: the wiring of the client, the watched view, the work queue, the reconciler
 * and leader election. Its parts own the rest, so each reads on its own: start-up checks
 * (startup.ts), probe and metrics endpoints (servers.ts), readiness (readiness.ts), the poll loop
 * (poll.ts), the stop and its drain (shutdown.ts). With those, the only modules with long-lived side
 * effects besides main.ts.
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { CliOptions } from "./cli.ts";
import { OPERATOR_VERSION } from "../version.ts";
import { TIMEOUTS } from "../api/client.ts";
import { ClientNodeKube } from "../api/kube.ts";
import { ClientNodeLeases } from "../api/lease.ts";
import type { LoadedConfig } from "../api/kubeconfig.ts";
import { DEFAULT_LEADER_TIMINGS, LeaderElector } from "./leader.ts";
import { Metrics } from "./metrics.ts";
import { Reconciler } from "../controller/reconciler.ts";
import type { RunResult } from "../reconcile/result.ts";
import { describePolicy } from "../desired/policy.ts";
import type { Script } from "../types.ts";
import { WorkQueue } from "../controller/queue.ts";
import { unsupportedReason } from "../api/kube_http.ts";
import { WatchedView } from "../store/view.ts";
import { EXIT, Shutdown } from "./shutdown.ts";
import { startServers } from "./servers.ts";
import { awaitStartCheck, timeoutsFromEnv } from "./startup.ts";
import { Readiness } from "./readiness.ts";
import { pollLoop } from "./poll.ts";

/** A change seen by the watched view is reconciled this long after it (coalescing bursts). */
export const WAKE_DEBOUNCE_MS = 100;

/** /readyz turns 503 while a stream of the watched view has been failing for this long. */
export const STREAM_FAILING_MS = 30_000;

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
  const metrics = new Metrics(new URL(server).host, {
    concurrency: cli.concurrency,
    scripts: scripts.keys(),
  });
  const identity = `${Deno.hostname()}_${crypto.randomUUID().slice(0, 8)}`;
  let elector: LeaderElector | undefined;
  const readiness = new Readiness();
  metrics.ready = () => readiness.ready;
  const kube = new ClientNodeKube(config.kc, {
    observe: metrics.request,
    instance: identity,
    onReachability: readiness.onReachability,
    client: {
      // Keep-alive connections (bench/http_transport.ts: 3-5x the request rate, half the memory).
      transport: "fetch",
      ...timeoutsFromEnv((name) => Deno.env.get(name)),
      // Last check before a write goes on the wire (e.g. after the process was frozen).
      writeGate: () => {
        if (!elector) return { allowed: true };
        const leader = elector.leadership();
        return { allowed: leader.leading, fields: { leader } };
      },
      log,
    },
  });
  // Shutdown order: stop taking work (the queue drops what has not started, the view stops
  // serving), let the reconciles in flight finish within SHUTDOWN_DRAIN_MS, release the Lease.
  const shutdown = new Shutdown(log, () => queue?.close(), options.signal);
  // The watched view feeds every reconcile (not with --once: one cycle of plain LISTs is cheaper
  // than a view for a single pass). A change to a ScriptRun or one of its children queues that
  // run; the periodic cycle queues every run; the queue runs them debounced and bounded. Its
  // streams retry by themselves: a failing one turns /readyz 503 only after STREAM_FAILING_MS.
  const timeouts = timeoutsFromEnv((name) => Deno.env.get(name));
  const noFetch = unsupportedReason(config.kc);
  const view = cli.once || noFetch ? undefined : new WatchedView(config.kc, {
    namespaces: cli.namespaces,
    log,
    observe: metrics.request,
    observeEvent: metrics.watchEvent,
    listTimeoutMs: timeouts.requestMs ?? TIMEOUTS.requestMs,
    probeTimeoutMs: timeouts.connectMs ?? TIMEOUTS.connectMs,
  });
  const queue = view &&
    reconcileQueue(cli, metrics, log, readiness, (key) => {
      const slash = key.indexOf("/");
      return reconciler.reconcileKey(key.slice(0, slash), key.slice(slash + 1));
    });
  // A run whose Job just finished goes ahead of the others: its outcome is what users wait for,
  // and a burst of new runs would otherwise hold it back (5,000 at once: tens of seconds).
  view?.onChange(({ namespace, name }, { finished }) => {
    reconciler.viewChanged(namespace, name);
    queue!.add(`${namespace}/${name}`, { urgent: finished });
  });
  const reconciler: Reconciler = new Reconciler({
    view,
    // The periodic pass: behind any run a change woke.
    schedule: queue && ((namespace, name) => queue.add(`${namespace}/${name}`, { low: true })),
    kube,
    scripts,
    log,
    namespaces: cli.namespaces,
    dryRun: cli.dryRun,
    concurrency: cli.concurrency,
    observer: metrics.reconcile,
    signal: shutdown.signal,
    policy: cli.policy,
    pod: { platformAssignsUid: cli.platformAssignsUid },
    // Only the leader writes, checked before every write, not only at the start of a cycle; after
    // SIGTERM, only until the drain deadline.
    canWrite: () => shutdown.mayWrite() && (elector === undefined || elector.isLeader()),
  });
  logStart(cli, config, server, scripts, log);

  const servers: Deno.HttpServer[] = [];
  try {
    if (!cli.once) {
      startServers(
        servers,
        cli,
        log,
        () => readiness.ready && (view?.failing(STREAM_FAILING_MS).length ?? 0) === 0,
        metrics.registry,
      );
    }
    // Start-up check: one LIST of ScriptRuns proves credentials, reachability, CRD and RBAC.
    const exitCode = await awaitStartCheck(kube, cli, server, log, shutdown.signal);
    if (exitCode !== undefined) return exitCode;
    if (cli.once) {
      const result = await reconciler.cycle();
      log.info("Cycle done", { ...result, scopeErrors: result.scopeErrors.map((e) => e.message) });
      return result.ok ? EXIT.ok : EXIT.runtime;
    }

    if (cli.leaderElect) {
      elector = startElector(cli, config, identity, metrics, readiness, reconciler, log);
    }
    if (noFetch && !cli.once) {
      log.warn("Deno's fetch cannot use this kubeconfig: listing every cycle instead of watching", {
        reason: noFetch,
      });
    }
    // Every stream's first LIST has ended (listed, or failed and retrying) when this resolves.
    await view?.start(shutdown.signal);
    await pollLoop({ cli, reconciler, kube, elector, readiness, log, signal: shutdown.signal });
    return EXIT.ok;
  } finally {
    await shutdown.drain();
    await elector?.stop();
    for (const s of servers) await s.shutdown();
    shutdown.removeSignalListeners();
    log.info("Stopped", {});
  }
}

/**
 * The queue that runs the reconciles the watched view and the periodic pass ask for: debounced,
 * at most --concurrency at once, each requeued after the delay its result asks for.
 */
function reconcileQueue(
  cli: Pick<CliOptions, "concurrency">,
  metrics: Metrics,
  log: Logger,
  readiness: Readiness,
  reconcileKey: (key: string) => Promise<RunResult | undefined>,
): WorkQueue {
  const queue: WorkQueue = new WorkQueue((key) =>
    metrics.queueWork(async () => {
      const result = await reconcileKey(key);
      if (result?.unreachable) readiness.onReachability(false);
      if (result?.retryAfterMs !== undefined) {
        // An error or a requeue is a retry; a success's retryAfterMs is a planned recheck.
        if (result.result !== "success") metrics.queueRetried();
        queue.addAfter(key, result.retryAfterMs);
      }
    }), {
    concurrency: cli.concurrency,
    debounceMs: WAKE_DEBOUNCE_MS,
    onError: (key, error) => log.error("Reconcile failed", { key, error: String(error) }),
    onStart: metrics.queueWaited,
    onAdd: metrics.queueAdded,
  });
  metrics.queueDepth = () => queue.depth;
  return queue;
}

/** Starts competing for the Lease --leader-election-id names; only its holder writes. */
function startElector(
  cli: Pick<CliOptions, "leaderElectionNamespace" | "leaderElectionId">,
  config: LoadedConfig,
  identity: string,
  metrics: Metrics,
  readiness: Readiness,
  reconciler: Reconciler,
  log: Logger,
): LeaderElector {
  const namespace = cli.leaderElectionNamespace ?? config.inClusterNamespace ?? "default";
  const timings = DEFAULT_LEADER_TIMINGS;
  const elector = new LeaderElector({
    // Lease requests time out well inside the renew deadline: a hung call cannot hold it.
    leases: new ClientNodeLeases(config.kc, {
      timeoutMs: Math.min(5_000, timings.renewDeadlineMs / 2),
      observe: metrics.request,
      onReachability: readiness.onReachability,
      log,
    }),
    timings,
    namespace,
    name: cli.leaderElectionId,
    identity,
    log,
    onChange: (leading) => {
      metrics.leader(cli.leaderElectionId, leading);
      // What this process expected or found settled belongs to the term that ended.
      reconciler.endTerm();
    },
  });
  metrics.leader(cli.leaderElectionId, false);
  elector.start();
  return elector;
}

/** Logs what the operator starts with: version, credentials, scope and the policy in force. */
function logStart(
  cli: CliOptions,
  config: LoadedConfig,
  server: string,
  scripts: Map<string, Script>,
  log: Logger,
): void {
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
    platformAssignsUid: cli.platformAssignsUid,
  });
}
