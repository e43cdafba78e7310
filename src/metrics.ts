/**
 * Prometheus metrics (src/prometheus.ts), named as controller-runtime names them where they apply.
 * @module
 */
import { Counter, Gauge, Histogram, Registry } from "./prometheus.ts";
import type { RequestObserver } from "./kube.ts";
import type { ReconcileObserver } from "./reconciler.ts";
import type { Phase } from "./types.ts";

const CONTROLLER = "scriptrun";

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
  #queueWait: Histogram<"name">;
  #host: string;

  /** `host` labels rest_client_requests_total, as client-go does. */
  constructor(host: string) {
    this.#host = host;
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
    this.#queueWait = new Histogram({
      name: "workqueue_queue_duration_seconds",
      help: "How long in seconds an item stays in workqueue before being requested",
      labelNames: ["name"],
      buckets: [0.001, 0.01, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registry,
    });
    new Gauge({
      name: "workqueue_depth",
      help: "Current depth of workqueue",
      labelNames: ["name"],
      registry,
      collect: (gauge) => gauge.set({ name: CONTROLLER }, this.queueDepth()),
    });
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
  };

  /** Reads the work queue's depth when scraped (0 without a queue). */
  queueDepth: () => number = () => 0;

  /** Hook for WatchedView: counts every watch event. */
  readonly watchEvent = (kind: string, type: string): void => {
    this.#watchEvents.inc({ kind, type });
  };

  /** Hook for WorkQueue: how long a due key waited for a worker. */
  readonly queueWaited = (ms: number): void => {
    this.#queueWait.observe({ name: CONTROLLER }, ms / 1000);
  };

  /** Records whether this process leads. */
  leader(name: string, leading: boolean): void {
    this.#leader.set({ name }, leading ? 1 : 0);
  }
}
