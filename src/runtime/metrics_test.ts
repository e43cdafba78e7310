import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { Backoff } from "../api/backoff.ts";
import { OPERATOR_VERSION } from "../version.ts";
import { childName, runHash } from "../desired/desired.ts";
import { FakeKube, kubeError, recordingLogger } from "../../tests/fakes/fake_kube.ts";
import {
  Metrics,
  RUN_DURATION_BUCKETS,
  runOutcome,
  scriptLabel,
  UNKNOWN_SCRIPT,
} from "./metrics.ts";
import { Reconciler } from "../controller/reconciler.ts";
import { job, script, scriptRun, scripts } from "../../tests/fakes/fixtures.ts";

/** The sample lines of one metric family (no HELP/TYPE), from the registry's text. */
function series(metrics: Metrics, name: string): string[] {
  return metrics.registry.metrics().split("\n").filter((l) =>
    l.startsWith(`${name}{`) || l.startsWith(`${name} `)
  );
}

const TIMES = { startTime: "2026-01-01T00:00:00Z", completionTime: "2026-01-01T00:01:30Z" };

Deno.test("runOutcome(): Succeeded and Failed count, with the Job's start-to-completion seconds", () => {
  const running = { phase: "Running" as const };
  assertEquals(runOutcome(running, { phase: "Succeeded", ...TIMES }), {
    result: "succeeded",
    seconds: 90,
  });
  assertEquals(runOutcome({}, { phase: "Failed", ...TIMES }), { result: "failed", seconds: 90 });
});

Deno.test("runOutcome(): only a change into Succeeded or Failed is an outcome", () => {
  assertEquals(runOutcome({}, { phase: "Pending" }), undefined);
  assertEquals(runOutcome({ phase: "Pending" }, { phase: "Running" }), undefined);
  // A later write that keeps the phase (a message, a condition) is not a second outcome.
  assertEquals(runOutcome({ phase: "Failed" }, { phase: "Failed", reason: "Other" }), undefined);
  assertEquals(runOutcome({ phase: "Succeeded" }, { phase: "Succeeded", ...TIMES }), undefined);
});

Deno.test("runOutcome(): a failure recorded before the Job's completion time ends at the write", () => {
  const failing = { phase: "Failed" as const, startTime: TIMES.startTime };
  const now = Date.parse(TIMES.startTime) + 12_000;
  assertEquals(runOutcome({ phase: "Pending" }, failing, now), { result: "failed", seconds: 12 });
});

Deno.test("runOutcome(): a failure without a Job has no duration, nor has a backwards one", () => {
  assertEquals(runOutcome({}, { phase: "Failed" }), { result: "failed", seconds: undefined });
  const backwards = { startTime: "2026-01-01T00:01:00Z", completionTime: "2026-01-01T00:00:00Z" };
  assertEquals(runOutcome({}, { phase: "Succeeded", ...backwards })?.seconds, undefined);
});

Deno.test("scriptLabel(): a script this binary does not embed is one label value, not free text", () => {
  const known = new Set(["task.sh"]);
  assertEquals(scriptLabel("task.sh", known), "task.sh");
  assertEquals(scriptLabel("typo-42.sh", known), UNKNOWN_SCRIPT);
});

Deno.test("Metrics: finished runs by namespace, script and result; durations by script", () => {
  const metrics = new Metrics("k:6443", { scripts: ["task.sh"] });
  const run = (namespace: string, name: string, s = "task.sh") => ({
    ...scriptRun({ script: s }, name),
    metadata: { name, namespace },
  });
  const done = (phase: "Succeeded" | "Failed", seconds: number) => ({
    phase,
    startTime: "2026-01-01T00:00:00Z",
    completionTime: new Date(Date.parse("2026-01-01T00:00:00Z") + seconds * 1000).toISOString(),
  });
  const recorded = metrics.reconcile.recorded!;
  recorded(run("a", "r1"), { phase: "Running" }, done("Succeeded", 3));
  recorded(run("a", "r2"), { phase: "Running" }, done("Succeeded", 4000));
  recorded(run("b", "r3"), { phase: "Running" }, done("Failed", 0.5));
  recorded(run("b", "r4", "nope.sh"), {}, { phase: "Failed" });
  // In progress: both results appear at 0 for its namespace and script, nothing counted.
  recorded(run("c", "r5"), {}, { phase: "Pending" });
  // The same phase written again: not a second outcome.
  recorded(run("a", "r1"), done("Succeeded", 3), { ...done("Succeeded", 3), message: "m" });
  assertEquals(series(metrics, "script_operator_runs_finished_total"), [
    'script_operator_runs_finished_total{namespace="a",script="task.sh",result="succeeded"} 2',
    'script_operator_runs_finished_total{namespace="b",script="task.sh",result="failed"} 1',
    'script_operator_runs_finished_total{namespace="b",script="<unknown>",result="failed"} 1',
    'script_operator_runs_finished_total{namespace="c",script="task.sh",result="succeeded"} 0',
    'script_operator_runs_finished_total{namespace="c",script="task.sh",result="failed"} 0',
  ]);
  const text = metrics.registry.metrics();
  assert(text.includes("# TYPE script_operator_run_duration_seconds histogram\n"), text);
  assertEquals(
    series(metrics, "script_operator_run_duration_seconds_bucket").length,
    RUN_DURATION_BUCKETS.length + 1,
  );
  for (
    const line of [
      'script_operator_run_duration_seconds_bucket{le="1",script="task.sh"} 1',
      'script_operator_run_duration_seconds_bucket{le="5",script="task.sh"} 2',
      'script_operator_run_duration_seconds_bucket{le="3600",script="task.sh"} 2',
      'script_operator_run_duration_seconds_bucket{le="+Inf",script="task.sh"} 3',
      'script_operator_run_duration_seconds_sum{script="task.sh"} 4003.5',
      'script_operator_run_duration_seconds_count{script="task.sh"} 3',
    ]
  ) assert(text.includes(line + "\n"), `missing ${line}\n${text}`);
  // No run names anywhere: a label per run would grow without bound.
  assert(!/r[1-5]"/.test(text), text);
});

Deno.test("Metrics: the controller-runtime and workqueue series, named and labelled as there", async () => {
  const metrics = new Metrics("k:6443", { concurrency: 3 });
  metrics.queueDepth = () => 5;
  metrics.queueAdded();
  metrics.queueAdded();
  metrics.queueRetried();
  metrics.reconcile.active!(1);
  metrics.reconcile.active!(1);
  metrics.reconcile.active!(-1);
  let release!: () => void;
  const inFlight = metrics.queueWork(() => new Promise<void>((r) => release = r));
  await new Promise((r) => setTimeout(r, 30));
  const during = metrics.registry.metrics();
  const value = (text: string, name: string) =>
    Number(
      text.match(new RegExp(`^${name}\\{name="scriptrun",controller="scriptrun"\\} (\\S+)$`, "m"))
        ?.[1],
    );
  assert(value(during, "workqueue_unfinished_work_seconds") >= 0.02, during);
  assert(value(during, "workqueue_longest_running_processor_seconds") >= 0.02, during);
  release();
  await inFlight;
  assertEquals(series(metrics, "controller_runtime_max_concurrent_reconciles"), [
    'controller_runtime_max_concurrent_reconciles{controller="scriptrun"} 3',
  ]);
  assertEquals(series(metrics, "controller_runtime_active_workers"), [
    'controller_runtime_active_workers{controller="scriptrun"} 1',
  ]);
  const q = '{name="scriptrun",controller="scriptrun"}';
  assertEquals(series(metrics, "workqueue_adds_total"), [`workqueue_adds_total${q} 2`]);
  assertEquals(series(metrics, "workqueue_retries_total"), [`workqueue_retries_total${q} 1`]);
  assertEquals(series(metrics, "workqueue_depth"), [`workqueue_depth${q} 5`]);
  assertEquals(series(metrics, "workqueue_work_duration_seconds_count"), [
    `workqueue_work_duration_seconds_count${q} 1`,
  ]);
  assertEquals(series(metrics, "workqueue_unfinished_work_seconds"), [
    `workqueue_unfinished_work_seconds${q} 0`,
  ]);
  assertEquals(series(metrics, "workqueue_longest_running_processor_seconds"), [
    `workqueue_longest_running_processor_seconds${q} 0`,
  ]);
  metrics.queueWaited(250);
  assertEquals(series(metrics, "workqueue_queue_duration_seconds_count"), [
    `workqueue_queue_duration_seconds_count${q} 1`,
  ]);
  metrics.reconcile.phases!({ Pending: 1, Running: 0, Succeeded: 2, Failed: 0 });
  assertEquals(series(metrics, "script_operator_scriptruns"), [
    'script_operator_scriptruns{phase="Pending"} 1',
    'script_operator_scriptruns{phase="Running"} 0',
    'script_operator_scriptruns{phase="Succeeded"} 2',
    'script_operator_scriptruns{phase="Failed"} 0',
  ]);
  metrics.leader("script-operator", true);
  assertEquals(series(metrics, "leader_election_master_status"), [
    'leader_election_master_status{name="script-operator"} 1',
  ]);
});

Deno.test("Metrics: process series and build info", () => {
  const metrics = new Metrics("k:6443");
  const text = metrics.registry.metrics();
  for (
    const [name, type] of [
      ["process_cpu_seconds_total", "counter"],
      ["process_start_time_seconds", "gauge"],
      ["process_resident_memory_bytes", "gauge"],
      ["script_operator_build_info", "gauge"],
    ]
  ) assert(text.includes(`# TYPE ${name} ${type}\n`), `${name} ${type}\n${text}`);
  const cpu = Number(series(metrics, "process_cpu_seconds_total")[0].split(" ")[1]);
  assert(cpu > 0, `cpu ${cpu}`);
  const start = Number(series(metrics, "process_start_time_seconds")[0].split(" ")[1]);
  // This process started within the last hour, and not in the future.
  assert(start <= Date.now() / 1000 && start > Date.now() / 1000 - 3600, `start ${start}`);
  assertEquals(series(metrics, "script_operator_ready"), ["script_operator_ready 0"]);
  metrics.ready = () => true;
  assertEquals(series(metrics, "script_operator_ready"), ["script_operator_ready 1"]);
  assertEquals(series(metrics, "script_operator_build_info"), [
    `script_operator_build_info{version="${OPERATOR_VERSION}",deno="${Deno.version.deno}",v8="${Deno.version.v8}",typescript="${Deno.version.typescript}"} 1`,
  ]);
});

Deno.test("Metrics via Reconciler: a finish counts once, not per reconcile, and not after a restart", async () => {
  const kube = new FakeKube();
  const { log } = recordingLogger();
  const reconcilerWith = (metrics: Metrics) =>
    new Reconciler({
      kube,
      scripts: scripts(),
      log,
      namespaces: ["ns"],
      backoff: new Backoff(undefined, () => 0.5),
      // The status' startTime is when the Job was created; the fixture Job completes at 00:01:00.
      now: () => new Date("2026-01-01T00:00:20Z"),
      observer: metrics.reconcile,
    });
  const metrics = new Metrics("k:6443", { scripts: scripts().keys() });
  const reconciler = reconcilerWith(metrics);
  const run = kube.addRun(scriptRun());
  const name = childName(run.metadata.name, runHash(run, script()));
  await reconciler.cycle();
  const zero = (result: string) =>
    `script_operator_runs_finished_total{namespace="ns",script="task.sh",result="${result}"} 0`;
  assertEquals(series(metrics, "script_operator_runs_finished_total"), [
    zero("succeeded"),
    zero("failed"),
  ]);
  // The Job completes; the first status patch recording it is refused (the run changed): a
  // write that did not happen counts nothing.
  const completed = job(name, { conditions: ["Complete"], startTime: "2026-01-01T00:00:20Z" });
  kube.jobs.get(`ns/${name}`)!.status = completed.status;
  kube.failOn("PATCH scriptruns/status", kubeError(409, "transient", "modified"));
  await reconciler.cycle();
  assertEquals(series(metrics, "script_operator_runs_finished_total"), [
    zero("succeeded"),
    zero("failed"),
  ]);
  for (let i = 0; i < 3; i++) await reconciler.cycle();
  assertEquals(kube.runs.get("ns/demo")?.status?.phase, "Succeeded");
  const once =
    'script_operator_runs_finished_total{namespace="ns",script="task.sh",result="succeeded"} 1';
  assertEquals(series(metrics, "script_operator_runs_finished_total"), [once, zero("failed")]);
  assertEquals(series(metrics, "script_operator_run_duration_seconds_sum"), [
    'script_operator_run_duration_seconds_sum{script="task.sh"} 40',
  ]);
  // A restarted operator (new process, new metrics) reads the run already Succeeded: not counted.
  const restarted = new Metrics("k:6443", { scripts: scripts().keys() });
  await reconcilerWith(restarted).cycle();
  assertEquals(series(restarted, "script_operator_runs_finished_total"), []);
  assertEquals(series(metrics, "script_operator_runs_finished_total"), [once, zero("failed")]);
});
