/**
 * The running operator: start-up checks, the poll loop, probes, metrics, leader election and a
 * clean shutdown. The only module with long-lived side effects besides main.ts.
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { CliOptions } from "./cli.ts";
import { parseBindAddress, parseDuration, UsageError } from "./flags.ts";
import { KubeError } from "../api/errors.ts";
import { OPERATOR_VERSION } from "../version.ts";
import { ClientNodeKube, type ClientOptions, TIMEOUTS } from "../api/kube.ts";
import { ClientNodeLeases } from "../api/lease.ts";
import type { LoadedConfig } from "../api/kubeconfig.ts";
import { DEFAULT_LEADER_TIMINGS, LeaderElector } from "./leader.ts";
import { Metrics } from "./metrics.ts";
import { type CycleResult, Reconciler } from "../controller/reconciler.ts";
import { Backoff } from "../api/backoff.ts";
import { describePolicy } from "../desired/policy.ts";
import { GROUP, PLURAL, type Script } from "../types.ts";
import { WorkQueue } from "../controller/queue.ts";
import { unsupportedReason } from "../api/kube_http.ts";
import { WatchedView } from "../store/view.ts";

/** A change seen by the watched view is reconciled this long after it (coalescing bursts). */
export const WAKE_DEBOUNCE_MS = 100;

/** After SIGTERM, the process exits by this time whatever is still in flight. */
export const SHUTDOWN_DEADLINE_MS = 9_000;

/**
 * After SIGTERM, reconciles in flight may finish their writes for this long; then the Lease is
 * released (its two requests and the renewal in progress fit in the rest of the deadline) and
 * writes still to come are refused. The next leader redoes whatever was cut short.
 */
export const SHUTDOWN_DRAIN_MS = 3_000;

/** /readyz turns 503 while a stream of the watched view has been failing for this long. */
export const STREAM_FAILING_MS = 30_000;

/**
 * Request and connect timeouts from the environment (`SCRIPT_OPERATOR_REQUEST_TIMEOUT`,
 * `SCRIPT_OPERATOR_CONNECT_TIMEOUT`, durations such as `5s`), for tests that must not wait
 * 30 s; unset, the defaults of src/api/kube.ts apply. A bad value is a UsageError.
 */
export function timeoutsFromEnv(env: (name: string) => string | undefined): ClientOptions {
  const out: ClientOptions = {};
  for (
    const [name, key] of [
      ["SCRIPT_OPERATOR_REQUEST_TIMEOUT", "requestMs"],
      ["SCRIPT_OPERATOR_CONNECT_TIMEOUT", "connectMs"],
    ] as const
  ) {
    const text = env(name);
    if (text === undefined || text === "") continue;
    const ms = parseDuration(text);
    if (ms === undefined || ms < 100) {
      throw new UsageError(`${name}="${text}" is not a duration of at least 100ms, e.g. 5s`);
    }
    out[key] = ms;
  }
  return out;
}

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
  const metrics = new Metrics(new URL(server).host, {
    concurrency: cli.concurrency,
    scripts: scripts.keys(),
  });
  const identity = `${Deno.hostname()}_${crypto.randomUUID().slice(0, 8)}`;
  let elector: LeaderElector | undefined;
  // /readyz: ready after a cycle that could list and reached the API server throughout; any
  // request that gets no answer (connection error, timeout) makes it 503 at once.
  let ready = false;
  let following = false;
  let unreachableInCycle = false;
  let lastReachable = true;
  const onReachability = (reachable: boolean) => {
    lastReachable = reachable;
    if (!reachable) {
      ready = false;
      unreachableInCycle = true;
    } else if (following) {
      ready = true;
    }
  };
  metrics.ready = () => ready;
  const kube = new ClientNodeKube(config.kc, {
    observe: metrics.request,
    instance: identity,
    onReachability,
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
  const stop = new AbortController();
  // Shutdown order: stop taking work (the queue drops what has not started, the view stops
  // serving), let the reconciles in flight finish within SHUTDOWN_DRAIN_MS, release the Lease.
  let closing: Promise<void> | undefined;
  let drainUntil = 0;
  stop.signal.addEventListener("abort", () => {
    drainUntil = performance.now() + SHUTDOWN_DRAIN_MS;
    closing = queue?.close();
  }, { once: true });
  options.signal?.addEventListener("abort", () => stop.abort());
  const onSignal = () => {
    if (stop.signal.aborted) return;
    log.info("Shutting down", { signal: "SIGTERM/SIGINT" });
    stop.abort();
    // In-flight writes finish and the Lease is released, but never past this deadline (the
    // kubelet's grace period is 30 s; we promise 10 s).
    // Reaching it means work was cut short: not a clean exit.
    const deadline = setTimeout(() => {
      log.error("Shutdown deadline reached, in-flight work cut short", {
        afterMs: SHUTDOWN_DEADLINE_MS,
        exitCode: EXIT.runtime,
      });
      Deno.exit(EXIT.runtime);
    }, SHUTDOWN_DEADLINE_MS);
    Deno.unrefTimer(Number(deadline));
  };
  const signals: Deno.Signal[] = ["SIGTERM", "SIGINT"];
  for (const s of signals) Deno.addSignalListener(s, onSignal);
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
    new WorkQueue((key) =>
      metrics.queueWork(async () => {
        const slash = key.indexOf("/");
        const result = await reconciler.reconcileKey(key.slice(0, slash), key.slice(slash + 1));
        if (result?.unreachable) onReachability(false);
        if (result?.retryAfterMs !== undefined) {
          // An error or a requeue is a retry; a success's retryAfterMs is a planned recheck.
          if (result.result !== "success") metrics.queueRetried();
          queue!.addAfter(key, result.retryAfterMs);
        }
      }), {
      concurrency: cli.concurrency,
      debounceMs: WAKE_DEBOUNCE_MS,
      onError: (key, error) => log.error("Reconcile failed", { key, error: String(error) }),
      onStart: metrics.queueWaited,
      onAdd: metrics.queueAdded,
    });
  if (queue) metrics.queueDepth = () => queue.depth;
  // A run whose Job just finished goes ahead of the others: its outcome is what users wait for,
  // and a burst of new runs would otherwise hold it back (5,000 at once: tens of seconds).
  view?.onChange(({ namespace, name }, { finished }) =>
    queue!.add(`${namespace}/${name}`, { urgent: finished })
  );
  const reconciler = new Reconciler({
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
    signal: stop.signal,
    policy: cli.policy,
    pod: { platformAssignsUid: cli.platformAssignsUid },
    // Only the leader writes, checked before every write, not only at the start of a cycle; after
    // SIGTERM, only until the drain deadline.
    canWrite: () =>
      (!stop.signal.aborted || performance.now() < drainUntil) &&
      (elector === undefined || elector.isLeader()),
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
    platformAssignsUid: cli.platformAssignsUid,
  });

  const servers: Deno.HttpServer[] = [];
  try {
    if (!cli.once) {
      // Probes answer from the start: alive at once, ready only after a successful cycle.
      const health = parseBindAddress(cli.healthProbeBindAddress);
      if (health) {
        const bind = { flag: "health-probe-bind-address", text: cli.healthProbeBindAddress };
        servers.push(serve({ ...health, ...bind }, log, "health probes", (path) => {
          if (path === "/healthz") return new Response("ok\n");
          if (path === "/readyz") {
            const isReady = ready && (view?.failing(STREAM_FAILING_MS).length ?? 0) === 0;
            return isReady ? new Response("ok\n") : new Response("not ready\n", { status: 503 });
          }
          return undefined;
        }));
      }
      const metricsAddress = parseBindAddress(cli.metricsBindAddress);
      if (metricsAddress) {
        const bind = { flag: "metrics-bind-address", text: cli.metricsBindAddress };
        servers.push(serve({ ...metricsAddress, ...bind }, log, "metrics", async (path) => {
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
      const timings = DEFAULT_LEADER_TIMINGS;
      elector = new LeaderElector({
        // Lease requests time out well inside the renew deadline: a hung call cannot hold it.
        leases: new ClientNodeLeases(config.kc, {
          timeoutMs: Math.min(5_000, timings.renewDeadlineMs / 2),
          observe: metrics.request,
          onReachability,
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
    }
    if (noFetch && !cli.once) {
      log.warn("Deno's fetch cannot use this kubeconfig: listing every cycle instead of watching", {
        reason: noFetch,
      });
    }
    // Every stream's first LIST has ended (listed, or failed and retrying) when this resolves.
    await view?.start(stop.signal);
    const listBackoff = new Backoff({ baseMs: 1_000, maxMs: Math.max(cli.intervalMs, 60_000) });
    let waitingLogged = false;
    while (!stop.signal.aborted) {
      if (elector && !elector.isLeader()) {
        if (!waitingLogged) log.info("Waiting to become leader", { lease: cli.leaderElectionId });
        waitingLogged = true;
        // Followers are ready while they reach the API server: they take over when the leader
        // goes (set by the Lease requests' outcome).
        following = true;
        ready = lastReachable;
        if (await sleep(500, stop.signal)) break;
        continue;
      }
      waitingLogged = false;
      following = false;
      unreachableInCycle = false;
      const result = await reconciler.cycle();
      if (result.source === "view") {
        // The view's cycle sends nothing: one cheap request says whether the server answers.
        await untilAborted(kube.ping().catch(() => {}), stop.signal);
      }
      // Not ready while the API server cannot be listed or answered no request; ready after a
      // cycle that could list and got an answer to every request.
      ready = result.scopeErrors.length === 0 && !result.unreachable && !unreachableInCycle;
      log.debug("Cycle done", {
        scriptRuns: result.scriptRuns,
        writes: result.writes,
        errors: result.errors,
        source: result.source,
      });
      const wait = nextCycleDelay(result, listBackoff, cli.intervalMs, Date.now());
      if (result.scopeErrors.length > 0 || result.unreachable) {
        log.warn("Listing failed", {
          error: result.scopeErrors[0]?.message ?? "the API server did not answer",
          code: result.scopeErrors[0]?.code,
          retryInMs: wait,
        });
      }
      if (await sleep(wait, stop.signal)) break;
    }
    return EXIT.ok;
  } finally {
    closing ??= queue?.close();
    const drained = await untilAborted(
      closing?.then(() => true),
      AbortSignal.timeout(Math.max(0, drainUntil - performance.now())),
    );
    if (closing && !drained) {
      log.warn("Reconciles still in flight at the drain deadline; their next writes are refused", {
        afterMs: SHUTDOWN_DRAIN_MS,
      });
    }
    await elector?.stop();
    for (const s of servers) await s.shutdown();
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
    log.info("Stopped", {});
  }
}

/**
 * How long to wait before the next cycle: the interval after a cycle that could list, otherwise a
 * jittered backoff from 1 s (doubling, capped at the larger of the interval and 1 min), never
 * shorter than a Retry-After the API server sent.
 */
export function nextCycleDelay(
  result: Pick<CycleResult, "scopeErrors" | "unreachable">,
  backoff: Backoff,
  intervalMs: number,
  nowMs: number,
): number {
  if (result.scopeErrors.length === 0 && !result.unreachable) {
    backoff.success("list");
    return intervalMs;
  }
  const retryAfterMs = Math.max(
    0,
    ...result.scopeErrors.map((e) => (e.retryAfterSeconds ?? 0) * 1000),
  );
  return backoff.failure("list", nowMs, { retryAfterMs });
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

/** `promise`'s value, or undefined as soon as `signal` aborts. */
function untilAborted<T>(
  promise: Promise<T> | undefined,
  signal: AbortSignal,
): Promise<T | undefined> {
  if (!promise || signal.aborted) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    const onAbort = () => resolve(undefined);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then((value) => {
      signal.removeEventListener("abort", onAbort);
      resolve(value);
    });
  });
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
