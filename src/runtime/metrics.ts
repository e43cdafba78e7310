/**
 * Prometheus metrics (src/runtime/prometheus.ts), named and labelled as controller-runtime, client-go and
 * client_golang's process collector name them where they apply, so dashboards built for
 * controller-runtime operators work unchanged.
 * @module
 */
import process from "node:process";
import { OPERATOR_VERSION } from "../version.ts";
import { Counter, Gauge, Histogram, Registry } from "./prometheus.ts";
import type { RequestObserver } from "../api/client.ts";
import type { ReconcileObserver } from "../controller/reconciler.ts";
import type { Phase, ScriptRunStatus } from "../types.ts";

const CONTROLLER = "scriptrun";
/** The work queue's labels: controller-runtime sets both `name` and `controller` to its name. */
const QUEUE = { name: CONTROLLER, controller: CONTROLLER } as const;

/**
 * The `script` label of a run whose script this binary does not embed: spec.script is free text
 * there (a ScriptNotFound run), and each distinct value would be a new series.
 */
export const UNKNOWN_SCRIPT = "<unknown>";

/** Run durations of shell scripts: a second to an hour. */
export const RUN_DURATION_BUCKETS: readonly number[] = [
  1,
  2.5,
  5,
  10,
  30,
  60,
  120,
  300,
  600,
  1200,
  1800,
  3600,
];

/** One finished run, as the finished-runs counter and the run-duration histogram record it. */
export interface RunOutcome {
  result: "succeeded" | "failed";
  /** From the status' startTime to its completionTime; undefined when the run had no Job. */
  seconds?: number;
}

/**
 * Whether a status write records a run's end (pure): the phase becomes Succeeded or Failed from
 * another phase. A write that keeps the phase (a message, a condition) is not a second outcome;
 * a run that starts again (a new spec with runPolicy OnChange) and ends again is a new one. The
 * duration comes from the run's own times (status.startTime, when its Job was created, to
 * status.completionTime). A failure is recorded as soon as the Job says FailureTarget, before the
 * Job has a completion time: that run ends at `nowMs`, the time of the write that records it.
 */
export function runOutcome(
  before: ScriptRunStatus,
  status: ScriptRunStatus,
  nowMs: number = Date.now(),
): RunOutcome | undefined {
  if (status.phase !== "Succeeded" && status.phase !== "Failed") return undefined;
  if (before.phase === status.phase) return undefined;
  const start = Date.parse(status.startTime ?? "");
  const end = status.completionTime ? Date.parse(status.completionTime) : nowMs;
  const seconds = end - start >= 0 ? (end - start) / 1000 : undefined;
  return { result: status.phase === "Succeeded" ? "succeeded" : "failed", seconds };
}

/** The `script` label of a run: its script's name when this binary embeds it. */
export function scriptLabel(script: string, knownScripts: ReadonlySet<string>): string {
  return knownScripts.has(script) ? script : UNKNOWN_SCRIPT;
}

/** Options of {@linkcode Metrics}. */
export interface MetricsOptions {
  /** Reconciles at once (`--concurrency`): controller_runtime_max_concurrent_reconciles. */
  concurrency?: number;
  /** The embedded scripts' names: the only values the `script` label takes besides unknown. */
  scripts?: Iterable<string>;
}

/** The operator's metrics registry and the hooks that feed it. */
export class Metrics {
  /** Registry served on /metrics. */
  readonly registry: Registry = new Registry();
  #reconcileTotal: Counter<"controller" | "result">;
  #reconcileErrors: Counter<"controller">;
  #reconcileTime: Histogram<"controller">;
  #requests: Counter<"code" | "method" | "host">;
  #phases: Gauge<"phase">;
  #cycle: Histogram<"result">;
  #leader: Gauge<"name">;
  #watchEvents: Counter<"kind" | "type">;
  #queueWait: Histogram<"name" | "controller">;
  #runsFinished: Counter<"namespace" | "script" | "result">;
  #runDuration: Histogram<"script">;
  #adds: Counter<"name" | "controller">;
  #retries: Counter<"name" | "controller">;
  #workDuration: Histogram<"name" | "controller">;
  #activeWorkers = 0;
  /** Start times (performance.now()) of the work queue's items being processed. */
  #working = new Set<{ started: number }>();
  #scripts: ReadonlySet<string>;
  #host: string;

  /** `host` labels rest_client_requests_total, as client-go does. */
  constructor(host: string, options: MetricsOptions = {}) {
    this.#host = host;
    this.#scripts = new Set(options.scripts ?? []);
    const registry = this.registry;
    this.#reconcileTotal = new Counter({
      name: "controller_runtime_reconcile_total",
      help: "Total number of reconciliations per controller",
      labelNames: ["controller", "result"],
      registry,
    });
    this.#reconcileErrors = new Counter({
      name: "controller_runtime_reconcile_errors_total",
      help: "Total number of reconciliation errors per controller",
      labelNames: ["controller"],
      registry,
    });
    this.#reconcileTime = new Histogram({
      name: "controller_runtime_reconcile_time_seconds",
      help: "Length of time per reconciliation per controller",
      labelNames: ["controller"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registry,
    });
    this.#requests = new Counter({
      name: "rest_client_requests_total",
      help: "Number of HTTP requests, partitioned by status code, method, and host.",
      labelNames: ["code", "method", "host"],
      registry,
    });
    this.#phases = new Gauge({
      name: "script_operator_scriptruns",
      help: "ScriptRuns seen in the last cycle, by phase",
      labelNames: ["phase"],
      registry,
    });
    this.#cycle = new Histogram({
      name: "script_operator_poll_cycle_duration_seconds",
      help: "Duration of a whole poll cycle (list, plan, write) by result",
      labelNames: ["result"],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registry,
    });
    this.#leader = new Gauge({
      name: "leader_election_master_status",
      help: "1 while this process holds the leader Lease, 0 otherwise",
      labelNames: ["name"],
      registry,
    });
    this.#watchEvents = new Counter({
      name: "script_operator_watch_events_total",
      help: "Events received by the watched view, by kind and event type",
      labelNames: ["kind", "type"],
      registry,
    });
    new Gauge({
      name: "script_operator_ready",
      help: "1 while /readyz answers ok (the last cycle listed and reached the API server), else 0",
      registry,
      collect: (gauge) => gauge.set({}, this.ready() ? 1 : 0),
    });
    new Gauge({
      name: "controller_runtime_max_concurrent_reconciles",
      help: "Maximum number of concurrent reconciles per controller",
      labelNames: ["controller"],
      registry,
    }).set({ controller: CONTROLLER }, options.concurrency ?? 8);
    new Gauge({
      name: "controller_runtime_active_workers",
      help: "Number of currently used workers per controller",
      labelNames: ["controller"],
      registry,
      collect: (gauge) => gauge.set({ controller: CONTROLLER }, this.#activeWorkers),
    });
    this.#runsFinished = new Counter({
      name: "script_operator_runs_finished_total",
      help:
        "ScriptRuns whose outcome the operator recorded (status phase Succeeded or Failed), by namespace, script and result",
      labelNames: ["namespace", "script", "result"],
      registry,
    });
    this.#runDuration = new Histogram({
      name: "script_operator_run_duration_seconds",
      help: "Time from a run's startTime (its Job created) to its completionTime, by script",
      labelNames: ["script"],
      buckets: RUN_DURATION_BUCKETS,
      registry,
    });
    // The work queue, as client-go's workqueue metrics (controller-runtime's provider) name it.
    this.#adds = new Counter({
      name: "workqueue_adds_total",
      help: "Total number of adds handled by workqueue",
      labelNames: ["name", "controller"],
      registry,
    });
    new Gauge({
      name: "workqueue_depth",
      help: "Current depth of workqueue",
      labelNames: ["name", "controller"],
      registry,
      collect: (gauge) => gauge.set(QUEUE, this.queueDepth()),
    });
    this.#queueWait = new Histogram({
      name: "workqueue_queue_duration_seconds",
      help: "How long in seconds an item stays in workqueue before being requested",
      labelNames: ["name", "controller"],
      buckets: [0.001, 0.01, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registry,
    });
    this.#workDuration = new Histogram({
      name: "workqueue_work_duration_seconds",
      help: "How long in seconds processing an item from workqueue takes.",
      labelNames: ["name", "controller"],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registry,
    });
    new Gauge({
      name: "workqueue_unfinished_work_seconds",
      help:
        "How many seconds of work has been done that is in progress and hasn't been observed by work_duration. Large values indicate stuck threads. One can deduce the number of stuck threads by observing the rate at which this increases.",
      labelNames: ["name", "controller"],
      registry,
      collect: (gauge) => gauge.set(QUEUE, this.#unfinished().total),
    });
    new Gauge({
      name: "workqueue_longest_running_processor_seconds",
      help: "How many seconds has the longest running processor for workqueue been running.",
      labelNames: ["name", "controller"],
      registry,
      collect: (gauge) => gauge.set(QUEUE, this.#unfinished().longest),
    });
    this.#retries = new Counter({
      name: "workqueue_retries_total",
      help: "Total number of retries handled by workqueue",
      labelNames: ["name", "controller"],
      registry,
    });
    this.#adds.inc(QUEUE, 0);
    this.#retries.inc(QUEUE, 0);
    // The process, as client_golang's process collector names it. Deno lets a program read
    // /proc/self only with every permission (--allow-all), so the series that only /proc has
    // (virtual memory, open and maximum file descriptors) are not served.
    new Counter({
      name: "process_cpu_seconds_total",
      help: "Total user and system CPU time spent in seconds.",
      registry,
      collect: (counter) => {
        // getrusage(2): no file read, no permission.
        const { user, system } = process.cpuUsage();
        counter.setTotal({}, (user + system) / 1e6);
      },
    });
    new Gauge({
      name: "process_start_time_seconds",
      help: "Start time of the process since unix epoch in seconds.",
      registry,
    }).set({}, Math.round(performance.timeOrigin) / 1000);
    new Gauge({
      name: "script_operator_build_info",
      help: "The operator's version and the Deno runtime it was built with (always 1)",
      labelNames: ["version", "deno", "v8", "typescript"],
      registry,
    }).set({
      version: OPERATOR_VERSION,
      deno: Deno.version.deno,
      v8: Deno.version.v8,
      typescript: Deno.version.typescript,
    }, 1);
    // Memory, named as prom-client's default metrics name it.
    const memory: [string, string, (m: Deno.MemoryUsage) => number][] = [
      ["process_resident_memory_bytes", "Resident memory size in bytes.", (m) => m.rss],
      ["nodejs_heap_size_total_bytes", "V8 heap size (committed) in bytes.", (m) => m.heapTotal],
      ["nodejs_heap_size_used_bytes", "V8 heap size used in bytes.", (m) => m.heapUsed],
      [
        "nodejs_external_memory_bytes",
        "Memory held outside the V8 heap by JS objects.",
        (m) => m.external,
      ],
    ];
    for (const [name, help, read] of memory) {
      new Gauge({
        name,
        help,
        registry,
        collect: (gauge) => gauge.set({}, read(Deno.memoryUsage())),
      });
    }
    for (const result of ["success", "error", "requeue"]) {
      this.#reconcileTotal.inc({ controller: CONTROLLER, result }, 0);
    }
    this.#reconcileErrors.inc({ controller: CONTROLLER }, 0);
  }

  /** Hook for ClientNodeKube: counts every request. */
  readonly request: RequestObserver = (verb, _resource, code) => {
    // client-go reports HTTP methods; LIST is a GET on the wire.
    const method = verb === "LIST" ? "GET" : verb;
    this.#requests.inc({ code, method, host: this.#host });
  };

  /** Hooks for the Reconciler. */
  readonly reconcile: ReconcileObserver = {
    reconciled: (result, seconds) => {
      this.#reconcileTotal.inc({ controller: CONTROLLER, result });
      if (result === "error") this.#reconcileErrors.inc({ controller: CONTROLLER });
      this.#reconcileTime.observe({ controller: CONTROLLER }, seconds);
    },
    cycle: (seconds, ok) => this.#cycle.observe({ result: ok ? "success" : "error" }, seconds),
    phases: (counts: Record<Phase, number>) => {
      for (const [phase, n] of Object.entries(counts)) this.#phases.set({ phase }, n);
    },
    active: (delta) => {
      this.#activeWorkers += delta;
    },
    recorded: (run, before, status) => {
      const namespace = run.metadata.namespace ?? "";
      const script = scriptLabel(run.spec.script, this.#scripts);
      const outcome = runOutcome(before, status);
      if (outcome) {
        this.#runsFinished.inc({ namespace, script, result: outcome.result });
        if (outcome.seconds !== undefined) {
          this.#runDuration.observe({ script }, outcome.seconds);
        }
      } else if (status.phase === "Pending" || status.phase === "Running") {
        // Both results exist at 0 while the run is in progress, so rate() and increase() see
        // its outcome as a step up rather than as a new series.
        for (const result of ["succeeded", "failed"]) {
          this.#runsFinished.inc({ namespace, script, result }, 0);
        }
      }
    },
  };

  /** Reads whether the operator is ready when scraped (what /readyz answers). */
  ready: () => boolean = () => false;

  /** Reads the work queue's depth when scraped (0 without a queue). */
  queueDepth: () => number = () => 0;

  /** Hook for WatchedView: counts every watch event. */
  readonly watchEvent = (kind: string, type: string): void => {
    this.#watchEvents.inc({ kind, type });
  };

  /** Hook for WorkQueue: how long a due key waited for a worker. */
  readonly queueWaited = (ms: number): void => {
    this.#queueWait.observe(QUEUE, ms / 1000);
  };

  /** Hook for WorkQueue: a key became due (client-go counts an add once per key queued). */
  readonly queueAdded = (): void => {
    this.#adds.inc(QUEUE);
  };

  /** A key goes back into the work queue after an error or a requeue (not a planned recheck). */
  queueRetried(): void {
    this.#retries.inc(QUEUE);
  }

  /** Runs one work queue item, timed into workqueue_work_duration_seconds. */
  async queueWork<T>(work: () => Promise<T>): Promise<T> {
    const item = { started: performance.now() };
    this.#working.add(item);
    try {
      return await work();
    } finally {
      this.#working.delete(item);
      this.#workDuration.observe(QUEUE, (performance.now() - item.started) / 1000);
    }
  }

  /** Seconds spent so far by the items being processed: in total and by the longest one. */
  #unfinished(): { total: number; longest: number } {
    const now = performance.now();
    let total = 0;
    let longest = 0;
    for (const { started } of this.#working) {
      const seconds = (now - started) / 1000;
      total += seconds;
      longest = Math.max(longest, seconds);
    }
    return { total, longest };
  }

  /** Records whether this process leads. */
  leader(name: string, leading: boolean): void {
    this.#leader.set({ name }, leading ? 1 : 0);
  }
}
