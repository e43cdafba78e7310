import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { childName, desiredConfigMap, runHash } from "./desired.ts";
import { invalidSpecStatus, type Observed, plan } from "./plan.ts";
import { statusEqual } from "./conditions.ts";
import { jobOutcome, MAX_OUTPUT } from "./job_status.ts";
import { DEFAULT_POLICY, POLICY_VIOLATION } from "./policy.ts";
import { job, script, scriptRun, scripts } from "../../tests/fakes/fixtures.ts";
import type { PodSummary, ScriptRun, ScriptRunStatus } from "../types.ts";

const NOW = "2026-01-01T00:00:00Z";
const SOON = "2026-01-01T00:00:05Z";
const LATER = "2026-01-01T00:05:00Z";

function observed(part: Partial<Observed> = {}): Observed {
  return {
    configMaps: [],
    jobs: [],
    foreignConfigMaps: new Set(),
    foreignJobs: new Set(),
    pods: [],
    ...part,
  };
}

function current(run: ScriptRun = scriptRun(), s = script()) {
  const hash = runHash(run, s);
  return { hash, name: childName(run.metadata.name, hash), cm: desiredConfigMap(run, s, hash) };
}

function pod(name: string, part: Partial<PodSummary> = {}): PodSummary {
  return { name, phase: "Running", creationTimestamp: NOW, ...part };
}

/** Runs plan() and writes its status back, as a reconcile would. */
function settle(run: ScriptRun, obs: Observed, now = NOW): ScriptRun {
  return { ...run, status: plan(run, { scripts: scripts(), observed: obs, now }).status };
}

function edited(run: ScriptRun): ScriptRun {
  return {
    ...run,
    metadata: { ...run.metadata, generation: 2 },
    spec: { ...run.spec, args: ["x"] },
  };
}

Deno.test("plan(): a new ScriptRun creates its ConfigMap and Job and is Pending", () => {
  const p = plan(scriptRun(), { scripts: scripts(), observed: observed(), now: NOW });
  assertEquals(p.actions.map((a) => a.type), ["createConfigMap", "createJob"]);
  assertEquals(p.actions.map((a) => a.message), ["Creating ConfigMap", "Creating Job"]);
  // No Event for a first Job: status.jobName names it (see RUNNING_SHOWN_AFTER_MS on writes).
  assertEquals(p.actions.map((a) => a.event), [false, false]);
  assertEquals([p.status.phase, p.status.reason], ["Pending", "JobPending"]);
  assertEquals(p.status.jobName, current().name);
  assertEquals(p.status.scriptHash, script().sha256);
});

Deno.test("plan(): no Job is created before the run's pods are known", () => {
  const p = plan(scriptRun(), {
    scripts: scripts(),
    observed: observed({ pods: undefined }),
    now: NOW,
  });
  assertEquals(p.actions, []);
  assertEquals(p.needs, ["pods"]);
});

Deno.test("plan(): nothing changed means no actions and an equal status", () => {
  const { name, cm } = current();
  const obs = observed({
    configMaps: [cm],
    jobs: [job(name, { active: 1, ready: 1, startTime: NOW })],
  });
  const run = settle(scriptRun(), obs);
  const p = plan(run, { scripts: scripts(), observed: obs, now: LATER });
  assertEquals(p.actions, []);
  assertEquals(p.needs, []);
  assert(statusEqual(run.status, p.status));
  assertEquals(p.status.phase, "Running");
});

Deno.test("plan(): completion comes from the Job's conditions; Running needs a ready pod", () => {
  assertEquals(jobOutcome(job("j", { conditions: ["Complete"] })).phase, "Succeeded");
  // SuccessCriteriaMet comes a moment before Complete, which brings the completion time.
  assertEquals(jobOutcome(job("j", { conditions: ["SuccessCriteriaMet"] })), {
    phase: "Running",
    finishing: true,
  });
  assertEquals(jobOutcome(job("j", { conditions: ["Failed"] })).phase, "Failed");
  assertEquals(jobOutcome(job("j", { conditions: ["FailureTarget"] })).phase, "Failed");
  assertEquals(jobOutcome(job("j", { active: 1, ready: 1 })).phase, "Running");
  // `active` counts a pod that is still pending (unschedulable, pulling): not Running.
  assertEquals(jobOutcome(job("j", { active: 1 })).phase, "Pending");
  const completionsZero = job("j");
  completionsZero.spec = { completions: 0 };
  assertEquals(jobOutcome(completionsZero).phase, "Pending");
});

Deno.test("plan(): a succeeded Job sets phase Succeeded and condition Complete=True", () => {
  const { name, cm } = current();
  const obs = observed({ configMaps: [cm], jobs: [job(name, { conditions: ["Complete"] })] });
  const p = plan(scriptRun(), { scripts: scripts(), observed: obs, now: NOW });
  assertEquals(p.status.phase, "Succeeded");
  assertEquals(p.status.completionTime, "2026-01-01T00:01:00Z");
  assertEquals(p.status.conditions?.map((c) => [c.type, c.status]), [
    ["Ready", "True"],
    ["Complete", "True"],
  ]);
  assertEquals(p.actions, []);
});

Deno.test("plan(): SuccessCriteriaMet writes nothing; Complete then writes Succeeded once", () => {
  const { name, cm } = current();
  for (const before of [{ active: 1, ready: 1, startTime: NOW }, { active: 1 }]) {
    const run = settle(scriptRun(), observed({ configMaps: [cm], jobs: [job(name, before)] }));
    const met = observed({
      configMaps: [cm],
      jobs: [job(name, { ...before, conditions: ["SuccessCriteriaMet"] })],
    });
    const p = plan(run, { scripts: scripts(), observed: met, now: LATER });
    assert(statusEqual(run.status, p.status), JSON.stringify(p.status));
    assertEquals(p.actions, []);
    const complete = observed({
      configMaps: [cm],
      jobs: [job(name, { ...before, conditions: ["SuccessCriteriaMet", "Complete"] })],
    });
    const done = plan(run, { scripts: scripts(), observed: complete, now: LATER });
    assertEquals(done.status.phase, "Succeeded");
    assertEquals(done.status.completionTime, "2026-01-01T00:01:00Z");
  }
  // With nothing recorded for this Job yet (a new status or an operator restart), it is Running.
  const fresh = plan(scriptRun(), {
    scripts: scripts(),
    observed: observed({
      configMaps: [cm],
      jobs: [job(name, { conditions: ["SuccessCriteriaMet"] })],
    }),
    now: NOW,
  });
  assertEquals(fresh.status.phase, "Running");
});

Deno.test("plan(): a failed Job's message names the reason, exit code and labelled, capped output", () => {
  const { name, cm, hash } = current();
  const failed = job(name, { conditions: ["Failed"] });
  const run = scriptRun();
  const ask = plan(run, {
    scripts: scripts(),
    observed: observed({ configMaps: [cm], jobs: [failed], pods: undefined }),
    now: NOW,
  });
  assertEquals(ask.needs, ["pods"]);
  const output = "x".repeat(2000) + "disk full";
  const obs = observed({
    configMaps: [cm],
    jobs: [failed],
    pods: [pod("p-1", {
      hash,
      jobName: name,
      phase: "Failed",
      terminated: { exitCode: 3, reason: "Error", message: output },
    })],
  });
  const p = plan(run, { scripts: scripts(), observed: obs, now: NOW });
  assertEquals([p.status.phase, p.status.reason], ["Failed", "BackoffLimitExceeded"]);
  const message = p.status.message!;
  assert(
    message.includes(`exited with code 3; script output (last ${MAX_OUTPUT} characters): `),
    message,
  );
  assert(message.endsWith("disk full"), message);
  assert(message.length < MAX_OUTPUT + 200, `capped: ${message.length}`);
  // Once recorded, later plans keep the message without asking for pods again.
  const after = { ...run, status: p.status };
  const again = plan(after, {
    scripts: scripts(),
    observed: { ...obs, pods: undefined },
    now: LATER,
  });
  assertEquals(again.needs, []);
  assert(statusEqual(after.status, again.status));
});

Deno.test("plan(): a deleted ConfigMap or Job of an unfinished run is recreated", () => {
  const { name, cm } = current();
  const running = observed({ configMaps: [cm], jobs: [job(name, { active: 1, ready: 1 })] });
  const run = settle(scriptRun(), running);
  const noJob = plan(run, {
    scripts: scripts(),
    observed: observed({ configMaps: [cm] }),
    now: LATER,
  });
  assertEquals(noJob.actions.map((a) => [a.type, a.message]), [[
    "createJob",
    "Recreating missing Job",
  ]]);
  const noCm = plan(run, {
    scripts: scripts(),
    observed: observed({ jobs: [job(name, { active: 1, ready: 1 })] }),
    now: LATER,
  });
  assertEquals(noCm.actions.map((a) => [a.type, a.message]), [[
    "createConfigMap",
    "Recreating missing ConfigMap",
  ]]);
});

Deno.test("plan(): a finished run whose Job was deleted or expired is not rerun; status stays", () => {
  const { name, cm } = current();
  for (const outcome of ["Complete", "Failed"]) {
    for (const rerunPolicy of ["Never", "OnChange"] as const) {
      const run = settle(
        scriptRun({ rerunPolicy }),
        observed({ configMaps: [cm], jobs: [job(name, { conditions: [outcome] })] }),
      );
      const p = plan(run, { scripts: scripts(), observed: observed(), now: LATER });
      assertEquals(p.actions, []);
      assert(statusEqual(run.status, p.status), `${outcome} ${rerunPolicy}`);
    }
  }
});

Deno.test("plan(): a changed spec replaces the Job: deletes first, creates once no old pod runs", () => {
  const old = current();
  const oldJob = job(old.name, { active: 1, ready: 1 });
  const run = settle(scriptRun(), observed({ configMaps: [old.cm], jobs: [oldJob] }));
  const next = edited(run);
  const p = plan(next, {
    scripts: scripts(),
    observed: observed({ configMaps: [old.cm], jobs: [oldJob] }),
    now: LATER,
  });
  assertEquals(p.actions.map((a) => [a.type, a.message]), [
    ["deleteJob", "Replacing outdated Job"],
    ["deleteConfigMap", "Deleting outdated ConfigMap"],
  ]);
  assertEquals([p.status.phase, p.status.reason], ["Pending", "ReplacingJob"]);
  assertEquals(p.status.observedGeneration, 2);
  // The old Job is terminating (foreground deletion): wait, delete nothing twice.
  const terminating = { ...oldJob, metadata: { ...oldJob.metadata, deletionTimestamp: LATER } };
  const waiting = plan({ ...next, status: p.status }, {
    scripts: scripts(),
    observed: observed({ jobs: [terminating] }),
    now: LATER,
  });
  assertEquals(waiting.actions, []);
  assertEquals(waiting.status.reason, "ReplacingJob");
  // The old Job is gone: create, and say so without "Recreating".
  const gone = plan({ ...next, status: waiting.status }, {
    scripts: scripts(),
    observed: observed(),
    now: LATER,
  });
  assertEquals(gone.actions.map((a) => a.message), ["Creating ConfigMap", "Creating Job"]);
});

Deno.test("plan(): never a second Job while a pod of another run hash runs, whatever the status says", () => {
  const old = current();
  const oldPod = pod("old-pod", { hash: old.hash, jobName: old.name, phase: "Running" });
  const next = edited(scriptRun());
  const statuses = [
    undefined, // lost
    { phase: "Running" as const, reason: "JobRunning", jobName: old.name }, // refused write
    { phase: "Pending" as const, reason: "JobPending", jobName: current(next).name }, // stale
    { phase: "Failed" as const, reason: "ScriptNotFound" }, // unknown script, then back
  ];
  for (const status of statuses) {
    const run = { ...next, status, spec: { ...next.spec, rerunPolicy: "OnChange" as const } };
    // Its Job is not in the lists: look it up first.
    const ask = plan(run, {
      scripts: scripts(),
      observed: observed({ pods: [oldPod] }),
      now: LATER,
    });
    assertEquals([ask.actions, ask.needs], [[], ["job"]]);
    const p = plan(run, {
      scripts: scripts(),
      observed: observed({ pods: [oldPod], jobLookedUp: true }),
      now: LATER,
    });
    assert(!p.actions.some((a) => a.type === "createJob"), JSON.stringify(status));
    assertEquals(p.status.reason, "ReplacingJob", JSON.stringify(status));
    const done = plan(run, {
      scripts: scripts(),
      observed: observed({ pods: [{ ...oldPod, phase: "Failed" }] }),
      now: LATER,
    });
    assert(done.actions.some((a) => a.type === "createJob"), JSON.stringify(status));
  }
});

Deno.test("plan(): rerunPolicy Never keeps a finished outcome when script or spec change", () => {
  const old = current();
  const done = job(old.name, { conditions: ["Complete"] });
  const run = settle(scriptRun(), observed({ configMaps: [old.cm], jobs: [done] }));
  const v2 = scripts(script("task.sh", "#!/bin/sh\necho v2\n"));
  for (const changed of [run, edited(run)]) {
    const p = plan(changed, {
      scripts: v2,
      observed: observed({ configMaps: [old.cm], jobs: [done] }),
      now: LATER,
    });
    assertEquals(p.actions, []);
    assertEquals([p.status.phase, p.status.jobName], ["Succeeded", old.name]);
    const outdated = p.status.conditions?.find((c) => c.type === "Outdated");
    assertEquals(outdated?.status, "True");
    assert(outdated?.message.includes("rerunPolicy"));
  }
  // Even with the status lost, a finished Job is the run's outcome.
  const lost = plan({ ...run, status: undefined }, {
    scripts: v2,
    observed: observed({ configMaps: [old.cm], jobs: [done] }),
    now: LATER,
  });
  assertEquals(lost.actions, []);
  assertEquals(lost.status.phase, "Succeeded");
});

Deno.test("plan(): rerunPolicy OnChange rolls out a new script version after the run finished", () => {
  const base = scriptRun({ rerunPolicy: "OnChange" });
  const old = current(base);
  const done = job(old.name, { conditions: ["Complete"] });
  const run = settle(base, observed({ configMaps: [old.cm], jobs: [done] }));
  const v2 = scripts(script("task.sh", "#!/bin/sh\necho v2\n"));
  const p = plan(run, {
    scripts: v2,
    observed: observed({ configMaps: [old.cm], jobs: [done] }),
    now: LATER,
  });
  assertEquals(p.actions.map((a) => a.type), ["deleteJob", "deleteConfigMap"]);
  assertEquals([p.status.phase, p.status.reason], ["Pending", "ReplacingJob"]);
  // rerunPolicy is not part of the run's identity: setting it reruns nothing by itself.
  assertEquals(runHash(base, script()), runHash(scriptRun(), script()));
});

Deno.test("plan(): a script removed from the build keeps finished outcomes and deletes nothing", () => {
  const { name, cm } = current();
  const done = job(name, { conditions: ["Complete"] });
  const run = settle(scriptRun(), observed({ configMaps: [cm], jobs: [done] }));
  const p = plan(run, {
    scripts: scripts(script("other.sh")),
    observed: observed({ configMaps: [cm], jobs: [done] }),
    now: LATER,
  });
  assertEquals(p.actions, []);
  assertEquals(p.status.phase, "Succeeded");
  const c = p.status.conditions?.find((c) => c.type === "ScriptAvailable");
  assertEquals([c?.status, c?.reason], ["False", "ScriptNotFound"]);
  // An unfinished run whose spec did not change keeps its running Job, and follows it.
  const running = job(name, { active: 1, ready: 1 });
  const live = settle(scriptRun(), observed({ configMaps: [cm], jobs: [running] }));
  const q = plan(live, {
    scripts: scripts(script("other.sh")),
    observed: observed({ configMaps: [cm], jobs: [running] }),
    now: LATER,
  });
  assertEquals(q.actions, []);
  assertEquals([q.status.phase, q.status.reason], ["Running", "JobRunning"]);
  assertEquals(
    q.status.conditions?.map((c) => [c.type, c.status]),
    [["Ready", "False"], ["Reconciling", "True"], ["ScriptAvailable", "False"]],
  );
  // A finished run whose spec is changed to a typo: under OnChange it is the user's mistake.
  const every = settle(
    scriptRun({ rerunPolicy: "OnChange" }),
    observed({ configMaps: [cm], jobs: [done] }),
  );
  const typo = {
    ...every,
    metadata: { ...every.metadata, generation: 2 },
    spec: { ...every.spec, script: "tsak.sh" },
  };
  const r = plan(typo, {
    scripts: scripts(),
    observed: observed({ configMaps: [cm], jobs: [done] }),
    now: LATER,
  });
  assertEquals([r.status.phase, r.status.reason], ["Failed", "ScriptNotFound"]);
  assert(r.status.message!.includes("embedded scripts: task.sh"), String(r.status.message));
  // Under Never the outcome stays, and the condition says the script is unknown.
  const once = { ...typo, spec: { ...typo.spec, rerunPolicy: "Never" as const } };
  const n = plan(once, {
    scripts: scripts(),
    observed: observed({ configMaps: [cm], jobs: [done] }),
    now: LATER,
  });
  assertEquals(n.status.phase, "Succeeded");
  const c2 = n.status.conditions?.find((c) => c.type === "ScriptAvailable");
  assert(c2?.message.includes("embedded scripts: task.sh"), String(c2?.message));
});

Deno.test("plan(): the operator deletes a finished Job after ttlSecondsAfterFinished, never before the status has it", () => {
  const { name, cm } = current();
  const done = job(name, { conditions: ["Complete"] });
  done.status!.completionTime = "2026-01-01T00:01:00Z";
  const obs = observed({ configMaps: [cm], jobs: [done] });
  const run = scriptRun({ ttlSecondsAfterFinished: 60 });
  const first = plan(run, { scripts: scripts(), observed: obs, now: "2026-01-02T00:00:00Z" });
  assertEquals(first.actions, []);
  const recorded = { ...run, status: first.status };
  const early = plan(recorded, { scripts: scripts(), observed: obs, now: "2026-01-01T00:01:59Z" });
  assertEquals(early.actions, []);
  assertEquals(early.recheckAt, "2026-01-01T00:02:00.000Z");
  const expired = plan(recorded, {
    scripts: scripts(),
    observed: obs,
    now: "2026-01-01T00:02:00Z",
  });
  assertEquals(expired.actions.map((a) => [a.type, a.reason]), [[
    "deleteJob",
    "DeletingFinishedJob",
  ]]);
  assert(statusEqual(recorded.status, expired.status));
  assert(runHash(run, script()) === runHash(scriptRun({ ttlSecondsAfterFinished: 5 }), script()));
});

Deno.test("plan(): FailureTarget is Failed without a completion time; the final Failed reads the pods again", () => {
  const { name, cm } = current();
  const target = job(name, { conditions: ["FailureTarget"] });
  const p = plan(scriptRun(), {
    scripts: scripts(),
    observed: observed({ configMaps: [cm], jobs: [target] }),
    now: NOW,
  });
  assertEquals([p.status.phase, p.status.completionTime], ["Failed", undefined]);
  const run = { ...scriptRun(), status: p.status };
  const final = job(name, { conditions: ["Failed"] });
  const q = plan(run, {
    scripts: scripts(),
    observed: observed({ configMaps: [cm], jobs: [final], pods: undefined }),
    now: NOW,
  });
  assertEquals(q.needs, ["pods"]);
});

Deno.test("plan(): ScriptNotFound after a spec change deletes the previous spec's Job and ConfigMap", () => {
  const { name, cm } = current();
  const running = job(name, { active: 1, ready: 1 });
  const run = settle(scriptRun(), observed({ configMaps: [cm], jobs: [running] }));
  const changed = {
    ...run,
    metadata: { ...run.metadata, generation: 2 },
    spec: { ...run.spec, script: "gone.sh" },
  };
  const p = plan(changed, {
    scripts: scripts(),
    observed: observed({ configMaps: [cm], jobs: [running] }),
    now: NOW,
  });
  assertEquals(p.actions.map((a) => a.type), ["deleteJob", "deleteConfigMap"]);
  assertEquals(p.status.reason, "ScriptNotFound");
});

Deno.test("plan(): an object with our name that we do not control is a NameConflict, no write", () => {
  const { name } = current();
  for (
    const obs of [
      observed({ foreignConfigMaps: new Set([name]) }),
      observed({ foreignJobs: new Set([name]) }),
    ]
  ) {
    const p = plan(scriptRun(), { scripts: scripts(), observed: obs, now: NOW });
    assertEquals(p.actions, []);
    assertEquals([p.status.phase, p.status.reason], ["Pending", "NameConflict"]);
    assert(p.status.message!.includes(name));
  }
});

Deno.test("plan(): our Job without the managed-by label is ours: relabel it, no conflict", () => {
  const { name, cm } = current();
  const unlabelled = job(name, { active: 1, ready: 1, labels: {} });
  const p = plan(scriptRun(), {
    scripts: scripts(),
    observed: observed({ configMaps: [cm], jobs: [unlabelled] }),
    now: NOW,
  });
  assertEquals(p.actions.map((a) => [a.type, a.type === "relabel" ? a.labels : {}]), [[
    "relabel",
    { "app.kubernetes.io/managed-by": "script-operator" },
  ]]);
  assertEquals(p.status.reason, "JobRunning");
});

Deno.test("plan(): pods of our child's Job but no Job in the lists: look the Job up by name", () => {
  const { name, hash } = current();
  const p = plan(scriptRun(), {
    scripts: scripts(),
    observed: observed({ pods: [pod("p", { hash, jobName: name })] }),
    now: NOW,
  });
  assertEquals([p.actions, p.needs], [[], ["job"]]);
  // Not found: its pod still runs, so wait for it.
  const q = plan(scriptRun(), {
    scripts: scripts(),
    observed: observed({ pods: [pod("p", { hash, jobName: name })], jobLookedUp: true }),
    now: NOW,
  });
  assertEquals([q.actions, q.status.reason], [[], "ReplacingJob"]);
});

Deno.test("plan(): an unknown script fails with ScriptNotFound, lists the scripts, creates nothing", () => {
  const p = plan(scriptRun({ script: "nope.sh" }), {
    scripts: scripts(script("a.sh"), script("b.sh")),
    observed: observed(),
    now: NOW,
  });
  assertEquals(p.actions, []);
  assertEquals([p.status.phase, p.status.reason], ["Failed", "ScriptNotFound"]);
  assert(p.status.message!.includes("a.sh, b.sh"), String(p.status.message));
  const fixed = { ...scriptRun({ script: "a.sh" }), status: p.status };
  const q = plan(fixed, { scripts: scripts(script("a.sh")), observed: observed(), now: LATER });
  assertEquals(q.actions.map((a) => a.type), ["createConfigMap", "createJob"]);
});

Deno.test("plan(): a pod that does not start says why, in Kubernetes' words, once it waited", () => {
  const { name, cm, hash } = current();
  const pending = job(name, { active: 1, creationTimestamp: NOW });
  const base = observed({ configMaps: [cm], jobs: [pending] });
  // Early: no lookups, a recheck when the wait becomes long.
  const early = plan(scriptRun(), {
    scripts: scripts(),
    observed: { ...base, pods: undefined },
    now: SOON,
  });
  assertEquals([early.needs, early.status.reason, early.recheckAt], [
    [],
    "JobPending",
    "2026-01-01T00:00:10.000Z",
  ]);
  // Late: ask for the pods.
  const late = plan(scriptRun(), {
    scripts: scripts(),
    observed: { ...base, pods: undefined },
    now: LATER,
  });
  assertEquals(late.needs, ["pods"]);
  const cases: [Partial<PodSummary>, string, string][] = [
    [
      { phase: "Pending", unschedulable: "0/1 nodes are available: 1 Insufficient memory." },
      "Unschedulable",
      "Insufficient memory",
    ],
    [
      {
        phase: "Pending",
        waiting: { reason: "ImagePullBackOff", message: 'Back-off pulling image "nope"' },
      },
      "ImagePullBackOff",
      "Back-off pulling image",
    ],
    [
      { phase: "Pending", waiting: { reason: "ErrImagePull", message: "failed to pull" } },
      "ErrImagePull",
      "failed to pull",
    ],
  ];
  for (const [part, reason, text] of cases) {
    const p = plan(scriptRun(), {
      scripts: scripts(),
      observed: { ...base, pods: [pod("p", { hash, jobName: name, ...part })] },
      now: LATER,
    });
    assertEquals([p.status.phase, p.status.reason], ["Pending", reason]);
    assert(p.status.message!.includes(text), String(p.status.message));
  }
  // No pod at all: the Job's events say why.
  const noPod = plan(scriptRun(), { scripts: scripts(), observed: base, now: LATER });
  assertEquals(noPod.needs, ["jobEvents"]);
  const refused = plan(scriptRun(), {
    scripts: scripts(),
    observed: {
      ...base,
      jobEvents: [{
        reason: "FailedCreate",
        message:
          'pods "x" is forbidden: error looking up service account ns/robot: serviceaccount "robot" not found',
      }],
    },
    now: LATER,
  });
  assertEquals([refused.status.phase, refused.status.reason], ["Pending", "FailedCreate"]);
  assert(refused.status.message!.includes('serviceaccount "robot" not found'));
});

Deno.test("plan(): condition transition times stay put while the status does not change", () => {
  const { name, cm } = current();
  const obs = observed({ configMaps: [cm], jobs: [job(name, { conditions: ["Complete"] })] });
  const run = settle(scriptRun(), obs, NOW);
  const p = plan(run, { scripts: scripts(), observed: obs, now: LATER });
  assertEquals(p.status.conditions?.[0].lastTransitionTime, NOW);
});

Deno.test("plan(): reportOutput false leaves the script output out of the message", () => {
  const run = scriptRun({ reportOutput: false });
  const { name, cm, hash } = current(run);
  const obs = observed({
    configMaps: [cm],
    jobs: [job(name, { conditions: ["Failed"] })],
    pods: [pod("p-1", {
      hash,
      jobName: name,
      phase: "Failed",
      terminated: { exitCode: 4, reason: "Error", message: "password=hunter2" },
    })],
  });
  const p = plan(run, { scripts: scripts(), observed: obs, now: NOW });
  const message = p.status.message!;
  assert(message.includes("exited with code 4"), message);
  assert(message.includes("script output not reported (spec.reportOutput: false)"), message);
  assert(!message.includes("hunter2"), message);
  assertEquals(p.status.conditions?.find((c) => c.type === "Failed")?.message, message);
  assertEquals(p.status.conditions?.find((c) => c.type === "Stalled")?.message, message);
});

Deno.test("plan(): a run the policy refuses creates nothing and fails naming the field", () => {
  const run = scriptRun({ securityContext: { runAsUser: 0 } });
  const p = plan(run, {
    scripts: scripts(),
    observed: observed(),
    now: NOW,
    policy: DEFAULT_POLICY,
  });
  assertEquals(p.actions, []);
  assertEquals([p.status.phase, p.status.reason], ["Failed", POLICY_VIOLATION]);
  assert(p.status.message!.includes("spec.securityContext.runAsUser"), p.status.message!);
  assert(p.status.message!.includes("--allow-privileged-scripts"), p.status.message!);
  assertEquals(p.status.conditions?.map((c) => [c.type, c.status, c.reason]), [
    ["Ready", "False", POLICY_VIOLATION],
    ["Stalled", "True", POLICY_VIOLATION],
    ["Failed", "True", POLICY_VIOLATION],
  ]);
  assertEquals(p.status.jobName, undefined);
  // Children of an earlier, allowed spec are removed; without a policy nothing is checked.
  const earlier = current();
  const withChildren = plan(run, {
    scripts: scripts(),
    observed: observed({ configMaps: [earlier.cm], jobs: [job(earlier.name, { active: 1 })] }),
    now: NOW,
    policy: DEFAULT_POLICY,
  });
  assertEquals(withChildren.actions.map((a) => a.type), ["deleteJob", "deleteConfigMap"]);
  const unchecked = plan(run, { scripts: scripts(), observed: observed(), now: NOW });
  assertEquals(unchecked.actions.map((a) => a.type), ["createConfigMap", "createJob"]);
  // Fixing the spec lets the run start.
  const fixed = plan({ ...run, spec: { script: "task.sh" }, status: p.status }, {
    scripts: scripts(),
    observed: observed(),
    now: LATER,
    policy: DEFAULT_POLICY,
  });
  assertEquals(fixed.actions.map((a) => a.type), ["createConfigMap", "createJob"]);
});

/** [type, status, reason] of each condition, in order. */
function conditionsOf(status: ScriptRunStatus): [string, string, string][] {
  return (status.conditions ?? []).map((c) => [c.type, c.status, c.reason]);
}

Deno.test("plan(): kstatus conditions per phase: Reconciling in progress, Stalled when stuck, Ready once succeeded", () => {
  const { name, cm, hash } = current();
  const created = (part: Parameters<typeof job>[1] = {}) =>
    job(name, { creationTimestamp: NOW, ...part });
  const stuckPod = (p: Partial<PodSummary>) => [pod("p", { hash, jobName: name, ...p })];
  const failedPod = stuckPod({ phase: "Failed", terminated: { exitCode: 2, reason: "Error" } });
  const rows: {
    what: string;
    run?: ScriptRun;
    obs: Observed;
    now?: string;
    phase: string;
    conditions: [string, string, string][];
    policy?: boolean;
  }[] = [
    {
      what: "Job just created",
      obs: observed(),
      phase: "Pending",
      conditions: [["Ready", "False", "JobPending"], ["Reconciling", "True", "JobPending"]],
    },
    {
      what: "pod running",
      obs: observed({ configMaps: [cm], jobs: [created({ active: 1, ready: 1, startTime: NOW })] }),
      phase: "Running",
      conditions: [["Ready", "False", "JobRunning"], ["Reconciling", "True", "JobRunning"]],
    },
    {
      what: "replacing an old Job",
      obs: observed({ configMaps: [cm], jobs: [job("demo-old", { active: 1 })] }),
      phase: "Pending",
      conditions: [["Ready", "False", "ReplacingJob"], ["Reconciling", "True", "ReplacingJob"]],
    },
    {
      what: "succeeded",
      obs: observed({ configMaps: [cm], jobs: [created({ conditions: ["Complete"] })] }),
      phase: "Succeeded",
      conditions: [["Ready", "True", "CompletionsReached"], [
        "Complete",
        "True",
        "CompletionsReached",
      ]],
    },
    {
      what: "failed (exit code)",
      obs: observed({
        configMaps: [cm],
        jobs: [created({ conditions: ["Failed"] })],
        pods: failedPod,
      }),
      phase: "Failed",
      conditions: [
        ["Ready", "False", "BackoffLimitExceeded"],
        ["Stalled", "True", "BackoffLimitExceeded"],
        ["Failed", "True", "BackoffLimitExceeded"],
      ],
    },
    ...([
      [
        "pod cannot be scheduled",
        { phase: "Pending", unschedulable: "0/1 nodes" },
        "Unschedulable",
      ],
      [
        "image pull failing",
        { phase: "Pending", waiting: { reason: "ErrImagePull" } },
        "ErrImagePull",
      ],
      ["image pull backing off", {
        phase: "Pending",
        waiting: { reason: "ImagePullBackOff" },
      }, "ImagePullBackOff"],
    ] as const).map(([what, part, reason]) => ({
      what,
      obs: observed({ configMaps: [cm], jobs: [created({ active: 1 })], pods: stuckPod(part) }),
      now: LATER,
      phase: "Pending",
      conditions: [["Ready", "False", reason], ["Stalled", "True", reason]] as [
        string,
        string,
        string,
      ][],
    })),
    {
      what: "pod cannot be created",
      obs: observed({
        configMaps: [cm],
        jobs: [created()],
        jobEvents: [{ reason: "FailedCreate", message: "forbidden" }],
      }),
      now: LATER,
      phase: "Pending",
      conditions: [["Ready", "False", "FailedCreate"], ["Stalled", "True", "FailedCreate"]],
    },
    {
      what: "name taken by a foreign Job",
      obs: observed({ foreignJobs: new Set([name]) }),
      phase: "Pending",
      conditions: [["Ready", "False", "NameConflict"], ["Stalled", "True", "NameConflict"]],
    },
    {
      what: "script not found",
      run: scriptRun({ script: "nope.sh" }),
      obs: observed(),
      phase: "Failed",
      conditions: [
        ["Ready", "False", "ScriptNotFound"],
        ["Stalled", "True", "ScriptNotFound"],
        ["Failed", "True", "ScriptNotFound"],
      ],
    },
    {
      what: "refused by policy",
      run: scriptRun({ securityContext: { runAsUser: 0 } }),
      obs: observed(),
      policy: true,
      phase: "Failed",
      conditions: [
        ["Ready", "False", POLICY_VIOLATION],
        ["Stalled", "True", POLICY_VIOLATION],
        ["Failed", "True", POLICY_VIOLATION],
      ],
    },
  ];
  for (const row of rows) {
    const run = row.run ?? scriptRun();
    run.metadata.generation = 3;
    const p = plan(run, {
      scripts: scripts(),
      observed: row.obs,
      now: row.now ?? NOW,
      policy: row.policy ? DEFAULT_POLICY : undefined,
    });
    assertEquals([row.what, p.status.phase], [row.what, row.phase]);
    assertEquals([row.what, conditionsOf(p.status)], [row.what, row.conditions]);
    assertEquals(p.status.observedGeneration, 3, row.what);
    for (const c of p.status.conditions!) {
      assertEquals([row.what, c.observedGeneration, c.lastTransitionTime], [
        row.what,
        3,
        row.now ?? NOW,
      ]);
      // The kstatus conditions say what the status says.
      if (c.type === "Ready" || c.type === "Reconciling" || c.type === "Stalled") {
        assertEquals(c.message, p.status.message, row.what);
      }
    }
  }
});

Deno.test("plan(): the API server refusing the objects (InvalidSpec) is Failed and Stalled", () => {
  const run = scriptRun();
  const planned = plan(run, { scripts: scripts(), observed: observed(), now: NOW }).status;
  const status = invalidSpecStatus({ ...run, status: planned }, planned, "bad env name", SOON);
  assertEquals([status.phase, status.reason], ["Failed", "InvalidSpec"]);
  assertEquals(conditionsOf(status), [
    ["Ready", "False", "InvalidSpec"],
    ["Stalled", "True", "InvalidSpec"],
    ["Failed", "True", "InvalidSpec"],
  ]);
  // Ready was False before too: its transition time stays; Stalled and Failed are new.
  assertEquals(status.conditions!.map((c) => c.lastTransitionTime), [NOW, SOON, SOON]);
});

Deno.test("plan(): a kstatus condition's transition time moves only when its status does", () => {
  const { name, cm, hash } = current();
  const at = (s: number) => new Date(Date.parse(NOW) + s * 1000).toISOString().replace(".000", "");
  let run = settle(scriptRun(), observed(), NOW);
  const times = (r: ScriptRun) =>
    Object.fromEntries((r.status?.conditions ?? []).map((c) => [c.type, c.lastTransitionTime]));
  assertEquals(times(run), { Ready: NOW, Reconciling: NOW });
  // Stuck: Reconciling goes, Stalled comes; Ready stays False.
  const waiting = { phase: "Pending", waiting: { reason: "ImagePullBackOff" } };
  const stuck = observed({
    configMaps: [cm],
    jobs: [job(name, { active: 1, creationTimestamp: NOW })],
    pods: [pod("p", { hash, jobName: name, ...waiting })],
  });
  run = settle(run, stuck, at(20));
  assertEquals(times(run), { Ready: NOW, Stalled: at(20) });
  // Unstuck and running: Stalled goes, Reconciling comes back with a new time, written at once.
  const running = observed({
    configMaps: [cm],
    jobs: [job(name, { active: 1, ready: 1, creationTimestamp: NOW, startTime: at(19) })],
  });
  run = settle(run, running, at(21));
  assertEquals([run.status?.phase, times(run)], ["Running", { Ready: NOW, Reconciling: at(21) }]);
  // Succeeded: Ready turns True, Reconciling goes.
  const done = observed({
    configMaps: [cm],
    jobs: [job(name, { conditions: ["Complete"], creationTimestamp: NOW })],
  });
  run = settle(run, done, at(30));
  assertEquals(times(run), { Ready: at(30), Complete: at(30) });
  run = settle(run, done, at(90));
  assertEquals(times(run), { Ready: at(30), Complete: at(30) });
});

Deno.test("plan(): a run is shown Running once its script ran 5 s; a quicker script goes Pending → outcome", () => {
  const { name, cm } = current();
  const startTime = NOW;
  const pending = settle(scriptRun(), observed(), NOW);
  assertEquals(pending.status?.reason, "JobPending");
  const runningJob = job(name, { active: 1, ready: 1, creationTimestamp: NOW, startTime });
  const obs = observed({ configMaps: [cm], jobs: [runningJob] });
  // 2 s in: nothing to write, a recheck when Running is due.
  const early = plan(pending, { scripts: scripts(), observed: obs, now: "2026-01-01T00:00:02Z" });
  assert(statusEqual(pending.status, early.status), JSON.stringify(early.status));
  assertEquals([early.actions, early.recheckAt], [[], "2026-01-01T00:00:05.000Z"]);
  // Due: Running, still Reconciling (its transition time unchanged).
  const due = plan(pending, { scripts: scripts(), observed: obs, now: SOON });
  assertEquals([due.status.phase, due.status.reason, due.recheckAt], [
    "Running",
    "JobRunning",
    undefined,
  ]);
  assertEquals(
    due.status.conditions?.find((c) => c.type === "Reconciling")?.lastTransitionTime,
    NOW,
  );
  // Done within the 5 s: Pending goes straight to Succeeded.
  const done = observed({ configMaps: [cm], jobs: [job(name, { conditions: ["Complete"] })] });
  const outcome = plan(pending, {
    scripts: scripts(),
    observed: done,
    now: "2026-01-01T00:00:03Z",
  });
  assertEquals(outcome.status.phase, "Succeeded");
  // With its pods known, the clock starts when the script did.
  const { hash } = current();
  const runs = (p: Partial<PodSummary>) =>
    observed({
      configMaps: [cm],
      jobs: [runningJob],
      pods: [pod("p", { hash, jobName: name, ...p })],
    });
  const late = plan(pending, {
    scripts: scripts(),
    observed: runs({ runningSince: "2026-01-01T00:00:04Z" }),
    now: "2026-01-01T00:00:07Z",
  });
  assertEquals([late.status.phase, late.recheckAt], ["Pending", "2026-01-01T00:00:09.000Z"]);
  // Its pod has stopped while the Job still reads ready: the outcome comes next, no recheck.
  const stopped = plan(pending, {
    scripts: scripts(),
    observed: runs({ phase: "Succeeded" }),
    now: LATER,
  });
  assertEquals([stopped.status.phase, stopped.recheckAt], ["Pending", undefined]);
  // A pod that was stuck and now runs clears Stalled at once.
  const stuck = { ...pending, status: { ...pending.status, reason: "ImagePullBackOff" } };
  const unstuck = plan(stuck, { scripts: scripts(), observed: obs, now: "2026-01-01T00:00:02Z" });
  assertEquals(unstuck.status.phase, "Running");
});

Deno.test("plan() with pod.platformAssignsUid: the Job names no UID; the policy refuses the same specs", () => {
  const pod = { platformAssignsUid: true };
  const options = { scripts: scripts(), observed: observed(), now: NOW, policy: DEFAULT_POLICY };
  const jobOf = (p: ReturnType<typeof plan>) => {
    const create = p.actions.find((a) => a.type === "createJob");
    assert(create?.type === "createJob", JSON.stringify(p.actions));
    return create.object;
  };
  const plain = plan(scriptRun(), { ...options, pod });
  const c = jobOf(plain).spec!.template.spec.containers[0];
  assertEquals([c.securityContext?.runAsUser, c.securityContext?.runAsGroup], [
    undefined,
    undefined,
  ]);
  assertEquals(c.securityContext?.runAsNonRoot, true);
  // The Job's name carries the hash of what shapes it: another mode, another Job.
  assertEquals(plain.hash, runHash(scriptRun(), script(), pod));
  assert(plain.hash !== plan(scriptRun(), options).hash);
  // A UID the ScriptRun sets is kept; root is refused as in the default mode.
  const own = plan(scriptRun({ securityContext: { runAsUser: 1000 } }), { ...options, pod });
  assertEquals(jobOf(own).spec!.template.spec.containers[0].securityContext?.runAsUser, 1000);
  for (const securityContext of [{ runAsUser: 0 }, { runAsGroup: 0 }, { runAsNonRoot: false }]) {
    const p = plan(scriptRun({ securityContext }), { ...options, pod });
    assertEquals(
      [p.actions, p.status.reason],
      [[], POLICY_VIOLATION],
      JSON.stringify(securityContext),
    );
  }
});
