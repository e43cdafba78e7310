import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { Backoff } from "../api/backoff.ts";
import { childName, runHash } from "../desired/desired.ts";
import type { KubeError } from "../api/errors.ts";
import { FakeKube, kubeError, recordingLogger } from "../../tests/fakes/fake_kube.ts";
import { NotLeaderError } from "../api/client.ts";
import { Reconciler, type ReconcilerOptions, type RunView } from "./reconciler.ts";
import { job, script, scriptRun, scripts } from "../../tests/fakes/fixtures.ts";
import { type Job, LABELS, type ScriptRun } from "../types.ts";
import { settledFor } from "../reconcile/settled.ts";

const NS = "ns";

function setup(options: Partial<ReconcilerOptions> = {}) {
  const kube = new FakeKube();
  const { log, lines } = recordingLogger();
  const reconciler = new Reconciler({
    kube,
    scripts: scripts(),
    log,
    namespaces: [NS],
    backoff: new Backoff(undefined, () => 0.5),
    ...options,
  });
  return { kube, lines, reconciler };
}

function nameOf(run: ScriptRun): string {
  return childName(run.metadata.name, runHash(run, script()));
}

Deno.test("Reconciler: a new run makes exactly these calls: lists, pods, 2 creates, 1 status", async () => {
  const { kube, reconciler } = setup();
  const run = kube.addRun(scriptRun());
  const name = nameOf(run);
  const result = await reconciler.cycle();
  assertEquals(result.writes, 3);
  assertEquals(kube.calls, [
    "LIST scriptruns",
    "LIST configmaps",
    "LIST jobs",
    `LIST pods ns/uid-1`,
    `POST configmaps ns/${name}`,
    `POST jobs ns/${name}`,
    "PATCH scriptruns/status ns/demo",
  ]);
  assertEquals(kube.runs.get("ns/demo")?.status?.reason, "JobPending");
  // A second cycle with nothing changed writes nothing and asks for nothing more.
  kube.calls = [];
  await reconciler.cycle();
  assertEquals(kube.calls, ["LIST scriptruns", "LIST configmaps", "LIST jobs"]);
});

/** Sets what the Job controller would set on the fake's Job `name`. */
function progress(kube: FakeKube, name: string, status: Job["status"]): void {
  const job = kube.jobs.get(`ns/${name}`)!;
  job.status = status;
  job.metadata.resourceVersion = String(Number(job.metadata.resourceVersion ?? 0) + 1000);
}

/** A completed Job's status, as the Job controller sets it (now: its TTL is not due). */
function completed(startTime: string): Job["status"] {
  const now = new Date().toISOString();
  return {
    ready: 0,
    succeeded: 1,
    startTime,
    completionTime: now,
    conditions: [{
      type: "Complete",
      status: "True",
      reason: "CompletionsReached",
      message: "Reached expected number of succeeded pods",
      lastTransitionTime: now,
    }],
  };
}

Deno.test("Reconciler: a happy-path run writes 5 times, Events included: 2 creates, 2 status patches, 1 Event", async () => {
  const { kube, reconciler } = setup();
  const run = kube.addRun(scriptRun());
  const name = nameOf(run);
  const startTime = new Date().toISOString();
  await reconciler.cycle();
  // The Job controller starts the Job, its pod runs (a script of a few seconds), the Job completes.
  progress(kube, name, { active: 1, startTime });
  await reconciler.cycle();
  progress(kube, name, { active: 1, ready: 1, startTime });
  await reconciler.cycle();
  progress(kube, name, completed(startTime));
  await reconciler.cycle();
  await reconciler.cycle();
  assertEquals(kube.writes(), [
    `POST configmaps ns/${name}`,
    `POST jobs ns/${name}`,
    "PATCH scriptruns/status ns/demo",
    "PATCH scriptruns/status ns/demo",
    "POST events ns/demo CompletionsReached",
  ]);
  const status = kube.runs.get("ns/demo")!.status!;
  assertEquals(status.phase, "Succeeded");
  assertEquals(status.conditions?.map((c) => [c.type, c.status]), [
    ["Ready", "True"],
    ["Complete", "True"],
  ]);
  assertEquals(kube.events.map((e) => [e.type, e.reason, e.message]), [
    ["Normal", "CompletionsReached", `Job ${name} completed`],
  ]);
});

Deno.test("Reconciler: a run whose pod runs longer than 5 s also shows Running: one status patch more", async () => {
  const { kube, reconciler } = setup();
  const run = kube.addRun(scriptRun());
  const name = nameOf(run);
  await reconciler.cycle();
  const startTime = new Date(Date.now() - 6_000).toISOString();
  progress(kube, name, { active: 1, ready: 1, startTime });
  await reconciler.cycle();
  assertEquals(kube.runs.get("ns/demo")!.status!.phase, "Running");
  progress(kube, name, completed(startTime));
  await reconciler.cycle();
  assertEquals(kube.writes().filter((c) => c.startsWith("PATCH scriptruns/status")).length, 3);
  assertEquals(kube.writes().length, 6);
});

Deno.test("Reconciler: a 409 on the guarded status patch is a quiet requeue, not an error", async () => {
  const { kube, lines, reconciler } = setup();
  kube.addRun(scriptRun());
  kube.failOn(
    "PATCH scriptruns/status",
    kubeError(409, "transient", "the object has been modified"),
  );
  const result = await reconciler.cycle();
  assertEquals([result.ok, result.errors], [true, 0]);
  assertEquals(lines.filter((l) => l.level === "error" || l.level === "warn"), []);
  // Planned again at once (no backoff): the next cycle records the status.
  kube.calls = [];
  await reconciler.cycle();
  assert(kube.calls.includes("PATCH scriptruns/status ns/demo"), kube.calls.join("\n"));
});

Deno.test("Reconciler: our Job without its managed-by label is relabelled, never a NameConflict", async () => {
  const { kube, reconciler } = setup();
  const run = kube.addRun(scriptRun());
  await reconciler.cycle();
  const name = nameOf(run);
  delete kube.jobs.get(`ns/${name}`)!.metadata.labels![LABELS.managedBy];
  const hash = runHash(run, script());
  kube.pods = [{ name: "p", hash, jobName: name, phase: "Running" }];
  kube.calls = [];
  await reconciler.cycle();
  // Its pod names it: looked up by name, found ours, relabelled; nothing created.
  assertEquals(kube.writes(), [`PATCH jobs ns/${name}`]);
  assert(kube.calls.includes(`GET jobs ns/${name}`));
  assertEquals(kube.jobs.get(`ns/${name}`)!.metadata.labels![LABELS.managedBy], "script-operator");
  assert(kube.runs.get("ns/demo")!.status!.reason !== "NameConflict");
  // Back in the lists: the next cycle writes nothing.
  kube.calls = [];
  await reconciler.cycle();
  assertEquals(kube.writes(), []);
});

Deno.test("Reconciler: our Job without its label and without pods: the create finds it", async () => {
  const { kube, reconciler } = setup();
  const run = kube.addRun(scriptRun());
  await reconciler.cycle();
  const name = nameOf(run);
  delete kube.jobs.get(`ns/${name}`)!.metadata.labels![LABELS.managedBy];
  kube.calls = [];
  await reconciler.cycle();
  assertEquals(kube.writes(), [`POST jobs ns/${name}`, `PATCH jobs ns/${name}`]);
  assert(kube.runs.get("ns/demo")!.status!.reason !== "NameConflict");
});

Deno.test("Reconciler: a foreign Job with our name is a NameConflict after one GET, and left alone", async () => {
  const { kube, reconciler } = setup();
  const run = kube.addRun(scriptRun());
  const name = nameOf(run);
  kube.jobs.set(`ns/${name}`, {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: { name, namespace: NS, uid: "someone-else" },
  });
  await reconciler.cycle();
  assertEquals(kube.runs.get("ns/demo")!.status!.reason, "NameConflict");
  assertEquals(kube.jobs.get(`ns/${name}`)!.metadata.uid, "someone-else");
  assert(kube.calls.includes(`GET jobs ns/${name}`));
});

Deno.test("Reconciler: a deposed leader sends nothing, Events included", async () => {
  let leading = true;
  const { kube, lines, reconciler } = setup({ canWrite: () => leading });
  kube.addRun(scriptRun());
  // Lose the lease between the plan and the first write.
  const original = kube.listRunPods.bind(kube);
  kube.listRunPods = (ns, uid) => {
    leading = false;
    return original(ns, uid);
  };
  await reconciler.cycle();
  assertEquals(kube.writes(), []);
  assertEquals(lines.filter((l) => l.message.startsWith("Creating")), []);
});

Deno.test("Reconciler: --dry-run logs every planned write and sends none", async () => {
  const { kube, lines, reconciler } = setup({ dryRun: true });
  kube.addRun(scriptRun());
  await reconciler.cycle();
  assertEquals(kube.writes(), []);
  const planned = lines.filter((l) => l.properties.dryRun === true).map((l) => l.message);
  assertEquals(planned, ["Creating ConfigMap", "Creating Job", "Updating status"]);
});

Deno.test("Reconciler: an unreachable API server ends the cycle early instead of trying every run", async () => {
  const { kube, reconciler } = setup({ concurrency: 1 });
  for (let i = 0; i < 5; i++) {
    kube.addRun({
      ...scriptRun({}, `run-${i}`),
      metadata: { ...scriptRun({}, `run-${i}`).metadata, uid: `u${i}` },
    });
  }
  kube.failOn("LIST pods", kubeError(0, "transient", "connect timed out"), 100);
  const result = await reconciler.cycle();
  assert(result.unreachable);
  assertEquals(kube.calls.filter((c) => c.startsWith("LIST pods")).length, 1);
});

Deno.test("Reconciler: a failed LIST stops the scope and says so; unreachable marks the cycle", async () => {
  const { kube, reconciler } = setup();
  kube.failOn("LIST jobs", kubeError(0, "transient", "ECONNREFUSED"));
  const result = await reconciler.cycle();
  assertEquals([result.ok, result.unreachable, result.scopeErrors.length], [false, true, 1]);
});

Deno.test("Reconciler: throttling (429) is not an error line per run", async () => {
  const { kube, lines, reconciler } = setup();
  for (let i = 0; i < 3; i++) {
    kube.addRun({
      ...scriptRun({}, `run-${i}`),
      metadata: { ...scriptRun({}, `run-${i}`).metadata, uid: `u${i}` },
    });
  }
  const throttled = Object.assign(kubeError(429, "transient", "Too Many Requests"), {});
  kube.failOn("POST configmaps", throttled, 3);
  await reconciler.cycle();
  assertEquals(lines.filter((l) => l.level === "error"), []);
  assertEquals(lines.filter((l) => l.level === "warn").length, 1);
});

Deno.test("Reconciler: 'Creating Job' is logged once per POST really sent", async () => {
  const { kube, lines, reconciler } = setup();
  kube.addRun(scriptRun());
  await reconciler.cycle();
  await reconciler.cycle();
  const posts = kube.calls.filter((c) => c.startsWith("POST jobs")).length;
  assertEquals(lines.filter((l) => l.message === "Creating Job").length, posts);
});

Deno.test("Reconciler: a rollout never creates the new Job while the old one exists or its pods run", async () => {
  const { kube, reconciler } = setup();
  const run = kube.addRun(scriptRun({ rerunPolicy: "OnChange" }));
  await reconciler.cycle();
  const oldName = nameOf(run);
  const oldHash = runHash(run, script());
  // The old Job runs; the spec changes; the status write after the delete is refused.
  kube.jobs.get(`ns/${oldName}`)!.status = { active: 1, ready: 1 };
  const stored = kube.runs.get("ns/demo")!;
  stored.spec = { ...stored.spec, args: ["v2"] };
  stored.metadata.generation = 2;
  kube.failOn("PATCH scriptruns/status", kubeError(409, "transient"));
  await reconciler.cycle();
  assert(kube.calls.includes(`DELETE jobs ns/${oldName}`));
  // Foreground: the Job is terminating; then gone, but its pod still runs.
  for (let i = 0; i < 2; i++) await reconciler.cycle();
  kube.jobs.delete(`ns/${oldName}`);
  kube.pods = [{ name: "old-pod", hash: oldHash, jobName: oldName, phase: "Running" }];
  for (let i = 0; i < 2; i++) await reconciler.cycle();
  assertEquals(kube.calls.filter((c) => c.startsWith("POST jobs")).length, 1);
  assertEquals(kube.runs.get("ns/demo")!.status!.reason, "ReplacingJob");
  kube.pods[0].phase = "Failed";
  await reconciler.cycle();
  assertEquals(kube.calls.filter((c) => c.startsWith("POST jobs")).length, 2);
});

Deno.test("Reconciler: an unexpected error fails that run only, loudly, and the cycle goes on", async () => {
  const { kube, lines, reconciler } = setup({ concurrency: 1 });
  for (const name of ["a", "b"]) {
    kube.addRun({
      ...scriptRun({}, name),
      metadata: { ...scriptRun({}, name).metadata, uid: name },
    });
  }
  // Not a KubeError: a bug or an unexpected answer.
  kube.failOn("POST configmaps ns/a", new TypeError("boom") as unknown as KubeError);
  const result = await reconciler.cycle();
  assertEquals([result.unreachable, result.errors], [false, 1]);
  assert(kube.calls.some((c) => c.startsWith("POST jobs ns/b-")), kube.calls.join("\n"));
  assertEquals(lines.filter((l) => l.level === "error").map((l) => l.properties.error), ["boom"]);
});

Deno.test("Reconciler: a create answered 409 whose object is gone on GET is planned again, no conflict", async () => {
  const { kube, reconciler } = setup();
  const run = kube.addRun(scriptRun());
  kube.failOn(`POST jobs ns/${nameOf(run)}`, kubeError(409, "alreadyExists"));
  await reconciler.cycle();
  assertEquals(kube.calls.filter((c) => c.startsWith("POST jobs")).length, 2);
  assertEquals(kube.runs.get("ns/demo")!.status!.reason, "JobPending");
});

Deno.test("Reconciler: during a rollout, an old Job that lost its labels is found by its pod and deleted", async () => {
  const { kube, reconciler } = setup();
  const run = kube.addRun(scriptRun({ rerunPolicy: "OnChange" }));
  await reconciler.cycle();
  const oldName = nameOf(run);
  const oldJob = kube.jobs.get(`ns/${oldName}`)!;
  oldJob.status = { active: 1, ready: 1 };
  delete oldJob.metadata.labels![LABELS.managedBy];
  kube.pods = [{
    name: "old-pod",
    hash: runHash(run, script()),
    jobName: oldName,
    phase: "Running",
  }];
  const stored = kube.runs.get("ns/demo")!;
  stored.spec = { ...stored.spec, args: ["v2"] };
  stored.metadata.generation = 2;
  kube.calls = [];
  await reconciler.cycle();
  assert(kube.calls.includes(`GET jobs ns/${oldName}`), kube.calls.join("\n"));
  assert(kube.calls.includes(`DELETE jobs ns/${oldName}`), kube.calls.join("\n"));
  assertEquals(kube.runs.get("ns/demo")!.status!.reason, "ReplacingJob");
});

Deno.test("Reconciler: a ScriptRun created again under the same name waits for the old children, no NameConflict", async () => {
  const { kube, lines, reconciler } = setup();
  const run = kube.addRun(scriptRun());
  const name = nameOf(run);
  // The children of the deleted ScriptRun (same name, other uid) are still there.
  kube.jobs.set(`ns/${name}`, {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name,
      namespace: NS,
      labels: { [LABELS.managedBy]: "script-operator" },
      ownerReferences: [{
        apiVersion: "script-operator.dev/v1alpha1",
        kind: "ScriptRun",
        name: "demo",
        uid: "deleted-uid",
        controller: true,
      }],
    },
  });
  await reconciler.cycle();
  assertEquals(kube.runs.get("ns/demo")!.status!.reason, "ReplacingJob");
  assertEquals(kube.writes().filter((c) => c.startsWith("POST jobs")), []);
  assertEquals(lines.filter((l) => l.message === "Name conflict"), []);
  // Once the garbage collector removed them, the run starts.
  kube.jobs.delete(`ns/${name}`);
  await reconciler.cycle();
  assertEquals(kube.writes().filter((c) => c.startsWith("POST jobs")).length, 1);
});

Deno.test("Reconciler: losing leadership mid-reconcile is a quiet requeue, not an outage", async () => {
  const { kube, lines, reconciler } = setup();
  kube.addRun(scriptRun());
  kube.failOn("POST configmaps", new NotLeaderError("create configmaps"));
  const result = await reconciler.cycle();
  assertEquals([result.unreachable, result.errors], [false, 0]);
  assertEquals(lines.filter((l) => l.level === "error" || l.level === "warn"), []);
});

/**
 * The resourceVersions of what a view shows of a run, as one string: a version that changes
 * whenever the run, its children or its pods change, as the view's own does.
 */
function versionOf(view: RunView, ns: string, uid: string): string {
  const run = view.scriptRuns(ns).find((r) => r.metadata.uid === uid);
  const { configMaps, jobs, pods } = view.children(ns, uid);
  const rv = (o: { metadata: { name: string; resourceVersion?: string } }) =>
    `${o.metadata.name}@${o.metadata.resourceVersion}`;
  return [
    run ? rv(run) : "",
    ...jobs.map(rv),
    ...configMaps.map(rv),
    ...pods.map((p) => `${p.name}@${(p as { resourceVersion?: string }).resourceVersion}`),
  ].join(" ");
}

/** A watched view over the fake's stores, as src/store/view.ts would hold them. */
function fakeView(kube: FakeKube): RunView {
  const ours = (o: { metadata: { ownerReferences?: { uid: string; controller?: boolean }[] } }) =>
    o.metadata.ownerReferences?.find((r) => r.controller)?.uid;
  const view: RunView = {
    version: (ns, uid) => versionOf(view, ns, uid),
    synced: () => true,
    // Copies, as the view's objects are replaced by the watch, never changed in place.
    scriptRuns: (ns) =>
      structuredClone([...kube.runs.values()].filter((r) => !ns || r.metadata.namespace === ns)),
    scriptRun: (ns, name) => structuredClone(kube.runs.get(`${ns}/${name}`)),
    children: (ns, uid) => {
      const inNs = (o: { metadata: { namespace?: string } }) => o.metadata.namespace === ns;
      return {
        configMaps: [...kube.configMaps.values()].filter((c) => inNs(c) && ours(c) === uid),
        jobs: [...kube.jobs.values()].filter((j) => inNs(j) && ours(j) === uid),
        // The fake's pods are the run's own (what listRunPods answers too).
        pods: kube.pods,
      };
    },
    names: (ns) => {
      const inNs = (o: { metadata: { namespace?: string } }) => o.metadata.namespace === ns;
      return {
        configMaps: new Map(
          [...kube.configMaps.values()].filter(inNs).map((c) => [c.metadata.name, ours(c) ?? ""]),
        ),
        jobs: new Map(
          [...kube.jobs.values()].filter(inNs).map((j) => [j.metadata.name, ours(j) ?? ""]),
        ),
      };
    },
  };
  return view;
}

/** setup() with the recording fake seen through fakeView(), as the operator runs with a view. */
function viewSetup(options: Partial<ReconcilerOptions> = {}) {
  const kube = new FakeKube();
  const { log, lines } = recordingLogger();
  const reconciler = new Reconciler({
    kube,
    scripts: scripts(),
    log,
    namespaces: [NS],
    view: fakeView(kube),
    ...options,
  });
  return { kube, lines, reconciler };
}

Deno.test("Reconciler: from the view, a run planned with nothing to do is not planned again until a version changes", async () => {
  const { kube, lines, reconciler } = viewSetup();
  const run = kube.addRun(scriptRun());
  const name = nameOf(run);
  await reconciler.reconcileKey(NS, "demo");
  assert(kube.calls.includes(`POST jobs ns/${name}`));
  // Nothing changed since: the first quiet reconcile settles, the next ones do not plan at all.
  await reconciler.reconcileKey(NS, "demo");
  const planned = lines.length;
  for (let i = 0; i < 3; i++) await reconciler.reconcileKey(NS, "demo");
  assertEquals(lines.length, planned, "planned again with nothing changed");
  // The Job's status changes (a new resourceVersion): planned again, and the status follows.
  const job = kube.jobs.get(`ns/${name}`)!;
  job.status = { active: 1, ready: 1, startTime: new Date(Date.now() - 60_000).toISOString() };
  job.metadata.resourceVersion = "9999";
  await reconciler.reconcileKey(NS, "demo");
  assertEquals(kube.runs.get("ns/demo")!.status!.reason, "JobRunning");
});

Deno.test("Reconciler: a settled finished run is planned again after 30 minutes (spread), not 5", async () => {
  let clock = 0;
  let plans = 0;
  const { kube, reconciler } = viewSetup({
    monotonic: () => clock,
    random: () => 0.5,
    observer: { reconciled: () => plans++ },
  });
  const run = kube.addRun(scriptRun());
  const name = nameOf(run);
  const startTime = new Date().toISOString();
  await reconciler.reconcileKey(NS, "demo");
  progress(kube, name, completed(startTime));
  await reconciler.reconcileKey(NS, "demo");
  assertEquals(kube.runs.get("ns/demo")!.status!.phase, "Succeeded");
  // The first quiet reconcile settles it; from then on it is not planned...
  await reconciler.reconcileKey(NS, "demo");
  const planned = plans;
  clock = 29 * 60_000;
  await reconciler.reconcileKey(NS, "demo");
  assertEquals(plans, planned, "planned again within 30 minutes");
  // ...until 30 minutes and its share of the spread (20% × 0.5) have passed.
  clock = 34 * 60_000;
  await reconciler.reconcileKey(NS, "demo");
  assertEquals(plans, planned + 1, "not planned again after 33 minutes");
});

Deno.test("settledFor: 5 minutes for a run that has not finished, 30 for a finished one, each up to 20% more", () => {
  assertEquals(settledFor("Running", 0), 5 * 60_000);
  assertEquals(settledFor(undefined, 0.5), 5.5 * 60_000);
  assertEquals(settledFor("Succeeded", 0), 30 * 60_000);
  assertEquals(settledFor("Failed", 0.999), Math.round(30 * 60_000 * 1.1998));
});

Deno.test("Reconciler: the periodic pass over the view queues only runs that are not settled", async () => {
  const scheduled: string[] = [];
  const { kube, reconciler } = viewSetup({
    schedule: (ns, name) => scheduled.push(`${ns}/${name}`),
  });
  const run = kube.addRun(scriptRun());
  const other = scriptRun({}, "other");
  other.metadata.uid = "uid-2";
  kube.addRun(other);
  await reconciler.cycle();
  assertEquals(scheduled, ["ns/demo", "ns/other"]);
  // demo is created, then found with nothing to do (settled); other was never reconciled.
  await reconciler.reconcileKey(NS, "demo");
  await reconciler.reconcileKey(NS, "demo");
  scheduled.length = 0;
  await reconciler.cycle();
  assertEquals(scheduled, ["ns/other"]);
  // A new version of demo's Job: queued again by the next pass.
  const job = kube.jobs.get(`ns/${nameOf(run)}`)!;
  job.metadata.resourceVersion = "9999";
  scheduled.length = 0;
  await reconciler.cycle();
  assertEquals(scheduled, ["ns/demo", "ns/other"]);
});

Deno.test("Reconciler: creating in a namespace being deleted is not an error (no RBAC hint)", async () => {
  const { kube, lines, reconciler } = setup();
  kube.addRun(scriptRun());
  kube.failOn(
    "POST configmaps",
    kubeError(
      403,
      "forbidden",
      'post configmaps in namespace ns: HTTP 403 Forbidden: configmaps "x" is forbidden: unable to create new content in namespace ns because it is being terminated',
    ),
  );
  const result = await reconciler.cycle();
  assertEquals([result.errors, result.unreachable], [0, false]);
  assertEquals(lines.filter((l) => l.level === "error" || l.level === "warn"), []);
});

/**
 * Runs `run-1`…`run-N` (uids `uid-1`…) whose Jobs were created long ago and have no pod: their
 * plans read the Job's Warning Events. Returns the Jobs' names.
 */
function runsWithPodlessJobs(
  kube: FakeKube,
  count: number,
  options: { configMaps?: boolean } = {},
) {
  const names: string[] = [];
  for (let i = 1; i <= count; i++) {
    const base = scriptRun({}, `run-${i}`);
    const run = kube.addRun({ ...base, metadata: { ...base.metadata, uid: `uid-${i}` } });
    const name = nameOf(run);
    names.push(name);
    const j = job(name, {}, `uid-${i}`);
    j.metadata.ownerReferences![0].name = run.metadata.name;
    j.metadata.labels = { ...j.metadata.labels, [LABELS.scriptRunUid]: `uid-${i}` };
    j.metadata.resourceVersion = `6${i}`;
    kube.jobs.set(`ns/${name}`, j);
    if (options.configMaps) {
      kube.configMaps.set(`ns/${name}`, {
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { ...j.metadata, resourceVersion: `7${i}` },
      });
    }
  }
  return names;
}

Deno.test("Reconciler: runs whose pods are late share one read of the namespace's Job warnings", async () => {
  const { kube, reconciler } = setup();
  const names = runsWithPodlessJobs(kube, 3);
  kube.jobWarnings.set(names[1], [{ reason: "FailedCreate", message: "pods is forbidden" }]);
  await reconciler.cycle();
  assertEquals(kube.calls.filter((c) => c.startsWith("LIST events")), ["LIST events ns"]);
  assertEquals(kube.runs.get("ns/run-1")?.status?.reason, "JobPending");
  assertEquals(kube.runs.get("ns/run-2")?.status?.reason, "FailedCreate");
  assert(kube.runs.get("ns/run-2")?.status?.message?.includes("pods is forbidden"));
  assertEquals(kube.runs.get("ns/run-3")?.status?.reason, "JobPending");
  // The next cycle, within 10 s, reads them from the same answer.
  kube.calls = [];
  await reconciler.cycle();
  assertEquals(kube.calls.filter((c) => c.startsWith("LIST events")), []);
});

/** fakeView() whose ScriptRuns stay as they were when `freeze()` was called (a lagging stream). */
function laggingView(kube: FakeKube) {
  const view = fakeView(kube);
  let frozen: Map<string, ScriptRun> | undefined;
  const lagging: RunView = {
    ...view,
    scriptRuns: (ns) =>
      frozen
        ? structuredClone([...frozen.values()].filter((r) => !ns || r.metadata.namespace === ns))
        : view.scriptRuns(ns),
    scriptRun: (ns, name) =>
      frozen ? structuredClone(frozen.get(`${ns}/${name}`)) : view.scriptRun(ns, name),
    version: (ns, uid) => versionOf(lagging, ns, uid),
  };
  return {
    view: lagging,
    freeze: () => frozen = structuredClone(kube.runs),
    thaw: () => frozen = undefined,
  };
}

/** A reconciler over the recording fake seen through laggingView(). */
function lagSetup() {
  const kube = new FakeKube();
  const lag = laggingView(kube);
  const { log } = recordingLogger();
  const reconciler = new Reconciler({
    kube,
    scripts: scripts(),
    log,
    namespaces: [NS],
    view: lag.view,
  });
  return { kube, lag, reconciler };
}

Deno.test("Reconciler: a finished run whose outcome the view has not shown yet is not run again when its Job is gone", async () => {
  const { kube, lag, reconciler } = lagSetup();
  const run = kube.addRun(scriptRun());
  const name = nameOf(run);
  // Another leader ran it: the view saw the run while it was Running...
  kube.configMaps.set(`ns/${name}`, {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { ...job(name).metadata, resourceVersion: "1" },
  });
  const stored = kube.runs.get("ns/demo")!;
  stored.status = {
    phase: "Running",
    reason: "JobRunning",
    jobName: name,
    configMapName: name,
    runHash: runHash(run, script()),
  };
  stored.metadata.resourceVersion = "8";
  lag.freeze();
  // ...then recorded Succeeded, and the Job's TTL removed the Job; the view has the delete only.
  stored.status = { ...stored.status, phase: "Succeeded", reason: "Completed" };
  stored.metadata.resourceVersion = "9";
  await reconciler.reconcileKey(NS, "demo");
  assertEquals(kube.calls.filter((c) => c.startsWith("POST jobs")), [], kube.calls.join("\n"));
  assert(kube.calls.includes("GET scriptruns ns/demo"), kube.calls.join("\n"));
  assertEquals(kube.runs.get("ns/demo")!.status!.phase, "Succeeded");
});

Deno.test("Reconciler: the plan sees every own status patch the view has not shown yet, not only the last one", async () => {
  const { kube, lag, reconciler } = lagSetup();
  const run = kube.addRun(scriptRun());
  const name = nameOf(run);
  // The ScriptRun stream stalls; the Job stream goes on.
  lag.freeze();
  await reconciler.reconcileKey(NS, "demo");
  assertEquals(kube.runs.get("ns/demo")!.status!.reason, "JobPending");
  const j = kube.jobs.get(`ns/${name}`)!;
  // Running for a while: worth its own status patch (RUNNING_SHOWN_AFTER_MS).
  j.status = { active: 1, ready: 1, startTime: new Date(Date.now() - 60_000).toISOString() };
  j.metadata.resourceVersion = "500";
  await reconciler.reconcileKey(NS, "demo");
  assertEquals(kube.runs.get("ns/demo")!.status!.reason, "JobRunning");
  // Two patches of ours the view has not shown: the third plans from the second.
  j.status = {
    succeeded: 1,
    conditions: job(name, { conditions: ["Complete"] }).status!.conditions,
  };
  j.metadata.resourceVersion = "501";
  const result = await reconciler.reconcileKey(NS, "demo");
  assertEquals(result?.result, "success");
  assertEquals(kube.runs.get("ns/demo")!.status!.phase, "Succeeded");
  assertEquals(kube.calls.filter((c) => c.startsWith("POST jobs")).length, 1);
});

Deno.test("Reconciler: our status patch is kept apart only until the view shows it, not until the run's next reconcile", async () => {
  const { kube, lag, reconciler } = lagSetup();
  kube.addRun(scriptRun());
  lag.freeze();
  await reconciler.reconcileKey(NS, "demo");
  assertEquals(kube.runs.get("ns/demo")!.status!.reason, "JobPending");
  // The view has not shown the patch: a change of a child keeps the copy.
  reconciler.viewChanged(NS, "demo");
  assertEquals(reconciler.stateSizes().statusCopies, 1);
  // The view catches up: the copy goes with the change that shows it, before any reconcile.
  lag.thaw();
  reconciler.viewChanged(NS, "demo");
  assertEquals(reconciler.stateSizes().statusCopies, 0);
});

Deno.test("Reconciler: a status patch refused with 409 again and again is retried later each time", async () => {
  const { kube, reconciler } = viewSetup();
  kube.addRun(scriptRun());
  kube.failOn("PATCH scriptruns/status", kubeError(409, "transient", "modified"), 5);
  const delays: number[] = [];
  for (let i = 0; i < 5; i++) {
    const result = await reconciler.reconcileKey(NS, "demo");
    assertEquals(result?.result, "requeue");
    delays.push(result!.retryAfterMs!);
  }
  // Exponential with jitter: 200 ms doubling, each within [0.5, 1.5) of its step.
  for (const [i, d] of delays.entries()) {
    const step = 200 * 2 ** i;
    assert(d >= step / 2 && d < step * 1.5, `retry ${i + 1} after ${d} ms: ${delays.join(", ")}`);
  }
  // Recorded at last: the next refusal starts from the first step again.
  await reconciler.reconcileKey(NS, "demo");
  assertEquals(kube.runs.get("ns/demo")!.status!.reason, "JobPending");
});

Deno.test("Reconciler: a run waiting for a deleted run's Job of the same name is woken by that Job's deletion", async () => {
  const { kube, reconciler } = viewSetup();
  const run = kube.addRun(scriptRun());
  const name = nameOf(run);
  const old = job(name, {}, "deleted-uid");
  old.metadata.resourceVersion = "50";
  kube.jobs.set(`ns/${name}`, old);
  await reconciler.reconcileKey(NS, "demo");
  assertEquals(kube.runs.get("ns/demo")!.status!.reason, "ReplacingJob");
  // Nothing changed: settled.
  const quiet = await reconciler.reconcileKey(NS, "demo");
  assertEquals(quiet?.writes, 0);
  // The garbage collector removes the old Job: the run's wake-up plans it, and its Job comes.
  kube.jobs.delete(`ns/${name}`);
  kube.calls = [];
  await reconciler.reconcileKey(NS, "demo");
  assertEquals(kube.calls.filter((c) => c.startsWith("POST jobs")), [`POST jobs ns/${name}`]);
});

Deno.test("Reconciler: runs whose pods are missing wait on their Job warnings; the periodic pass reads them once and wakes only the runs whose warnings changed", async () => {
  const scheduled: string[] = [];
  const { kube, reconciler } = viewSetup({
    schedule: (ns, name) => scheduled.push(`${ns}/${name}`),
  });
  // Created long ago, no pod: the plan reads the Job's Warning Events; none yet.
  runsWithPodlessJobs(kube, 3, { configMaps: true });
  for (const i of [1, 2, 3]) {
    const first = await reconciler.reconcileKey(NS, `run-${i}`);
    assertEquals(kube.runs.get(`ns/run-${i}`)!.status!.reason, "JobPending");
    // No timer per run: the wait on the warnings wakes it.
    assertEquals(first?.retryAfterMs, undefined);
    assertEquals((await reconciler.reconcileKey(NS, `run-${i}`))?.writes, 0);
  }
  assertEquals(kube.calls.filter((c) => c.startsWith("LIST events")), ["LIST events ns"]);
  // Nothing new: the pass reads the warnings once (when due) and queues no run.
  await reconciler.cycle();
  assertEquals(scheduled, []);
});

Deno.test("Reconciler: a Job warning that comes after the plan read none wakes its run within one pass", async () => {
  let clock = 0;
  const scheduled: string[] = [];
  const { kube, reconciler } = viewSetup({
    schedule: (ns, name) => scheduled.push(`${ns}/${name}`),
    monotonic: () => clock,
  });
  const names = runsWithPodlessJobs(kube, 2);
  for (const i of [1, 2]) {
    await reconciler.reconcileKey(NS, `run-${i}`);
    await reconciler.reconcileKey(NS, `run-${i}`);
  }
  kube.jobWarnings.set(names[1], [{ reason: "FailedCreate", message: "pods is forbidden" }]);
  clock += 10_000;
  kube.calls = [];
  await reconciler.cycle();
  assertEquals(kube.calls.filter((c) => c.startsWith("LIST events")), ["LIST events ns"]);
  // Only run-2's warnings changed; it is queued, and no longer settled.
  assertEquals(scheduled, ["ns/run-2"]);
  await reconciler.reconcileKey(NS, "run-2");
  assertEquals(kube.runs.get("ns/run-2")!.status!.reason, "FailedCreate");
  assertEquals(kube.runs.get("ns/run-1")!.status!.reason, "JobPending");
  // Woken once: after a quiet reconcile, the next pass, with nothing new, queues nobody.
  assertEquals((await reconciler.reconcileKey(NS, "run-2"))?.writes, 0);
  scheduled.length = 0;
  clock += 10_000;
  await reconciler.cycle();
  assertEquals(scheduled, []);
});

Deno.test("Reconciler: per-run state is pruned for runs gone from a namespace that lists, while another namespace is forbidden", async () => {
  const kube = new FakeKube();
  const { log } = recordingLogger();
  // A view that does not serve (yet): cycles LIST, and writes are remembered for it all the same.
  const view: RunView = { ...fakeView(kube), synced: () => false };
  const reconciler = new Reconciler({
    kube,
    scripts: scripts(),
    log,
    namespaces: ["a", "b"],
    view,
    backoff: new Backoff(undefined, () => 0.5),
  });
  const list = kube.listScriptRuns.bind(kube);
  kube.listScriptRuns = (ns) =>
    ns === "b" ? Promise.reject(kubeError(403, "forbidden", "scriptruns is forbidden")) : list(ns);
  for (let i = 0; i < 3; i++) {
    const base = scriptRun({}, `run-${i}`);
    kube.addRun({ ...base, metadata: { ...base.metadata, namespace: "a", uid: `u${i}` } });
  }
  const first = await reconciler.cycle();
  assertEquals(first.scopeErrors.length, 1);
  assertEquals(kube.calls.filter((c) => c.startsWith("POST jobs")).length, 3);
  assert(reconciler.stateSizes().expectations > 0);
  // The runs are deleted: the next cycle (b still forbidden) forgets them.
  kube.runs.clear();
  await reconciler.cycle();
  assertEquals(reconciler.stateSizes(), {
    expectations: 0,
    statusCopies: 0,
    settled: 0,
    jobWarnings: 0,
    busy: 0,
  });
});

Deno.test("Reconciler: a new leadership term does not act on the writes the last term expected", async () => {
  let leading = true;
  const { kube, reconciler } = viewSetup({ canWrite: () => leading });
  const run = kube.addRun(scriptRun());
  const name = nameOf(run);
  await reconciler.reconcileKey(NS, "demo");
  assertEquals(kube.calls.filter((c) => c.startsWith("POST jobs")).length, 1);
  // The Lease is lost; a wake-up comes meanwhile (nothing done). The Job goes (another leader
  // replaced it, or it was deleted) before this process leads again, well within 30 s.
  leading = false;
  assertEquals(await reconciler.reconcileKey(NS, "demo"), undefined);
  kube.jobs.delete(`ns/${name}`);
  leading = true;
  await reconciler.reconcileKey(NS, "demo");
  assertEquals(
    kube.calls.filter((c) => c.startsWith("POST jobs")).length,
    2,
    kube.calls.join("\n"),
  );
});

Deno.test("Reconciler: endTerm() forgets the expected writes and settled runs of the term", async () => {
  const { kube, reconciler } = viewSetup();
  const run = kube.addRun(scriptRun());
  const name = nameOf(run);
  await reconciler.reconcileKey(NS, "demo");
  assert(reconciler.stateSizes().expectations > 0);
  reconciler.endTerm();
  assertEquals(reconciler.stateSizes().expectations, 0);
  kube.jobs.delete(`ns/${name}`);
  await reconciler.reconcileKey(NS, "demo");
  assertEquals(
    kube.calls.filter((c) => c.startsWith("POST jobs")).length,
    2,
    kube.calls.join("\n"),
  );
});
