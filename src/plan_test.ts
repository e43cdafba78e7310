import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { childName, desiredConfigMap, runHash } from "./desired.ts";
import {
  jobOutcome,
  MAX_OUTPUT,
  needsPodDetails,
  type Observed,
  plan,
  statusEqual,
} from "./plan.ts";
import { DEFAULT_POLICY, POLICY_VIOLATION } from "./policy.ts";
import { job, script, scriptRun, scripts } from "./test_fixtures.ts";
import type { ScriptRun } from "./types.ts";

const NOW = "2026-01-01T00:00:00Z";
const LATER = "2026-01-01T00:05:00Z";

function observed(part: Partial<Observed> = {}): Observed {
  return {
    configMaps: [],
    jobs: [],
    foreignConfigMaps: new Set(),
    foreignJobs: new Set(),
    ...part,
  };
}

function current(run: ScriptRun = scriptRun()) {
  const hash = runHash(run, script());
  return {
    hash,
    name: childName(run.metadata.name, hash),
    cm: desiredConfigMap(run, script(), hash),
  };
}

/** Runs plan() and writes its status back, as a cycle would. */
function settle(run: ScriptRun, obs: Observed, now = NOW): ScriptRun {
  return { ...run, status: plan(run, { scripts: scripts(), observed: obs, now }).status };
}

Deno.test("plan(): a new ScriptRun creates its ConfigMap, then its Job, and is Pending", () => {
  const run = scriptRun();
  const p = plan(run, { scripts: scripts(), observed: observed(), now: NOW });
  assertEquals(p.actions.map((a) => a.type), ["createConfigMap", "createJob"]);
  assertEquals(p.actions.map((a) => a.message), ["Creating ConfigMap", "Creating Job"]);
  assertEquals(p.status.phase, "Pending");
  assertEquals(p.status.jobName, current().name);
  assertEquals(p.status.scriptHash, script().sha256);
  assertEquals(p.status.conditions, []);
});

Deno.test("plan(): nothing changed means no actions and an equal status", () => {
  const { name, cm } = current();
  const obs = observed({ configMaps: [cm], jobs: [job(name, { active: 1, startTime: NOW })] });
  const run = settle(scriptRun(), obs);
  const p = plan(run, { scripts: scripts(), observed: obs, now: LATER });
  assertEquals(p.actions, []);
  assert(statusEqual(run.status, p.status));
  assertEquals(p.status.phase, "Running");
  assertEquals(p.waiting, true);
});

Deno.test("plan(): completion comes from the Job's conditions, not from spec.completions", () => {
  assertEquals(jobOutcome(job("j", { conditions: ["Complete"] })).phase, "Succeeded");
  assertEquals(jobOutcome(job("j", { conditions: ["SuccessCriteriaMet"] })).phase, "Succeeded");
  assertEquals(jobOutcome(job("j", { conditions: ["Failed"] })).phase, "Failed");
  assertEquals(jobOutcome(job("j", { conditions: ["FailureTarget"] })).phase, "Failed");
  assertEquals(jobOutcome(job("j", { active: 1 })).phase, "Running");
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
  assertEquals(p.status.conditions?.map((c) => [c.type, c.status]), [["Complete", "True"]]);
  assertEquals(p.actions, []);
});

Deno.test("plan(): a failed Job's message names the reason, exit code and termination message", () => {
  const { name, cm } = current();
  const failed = job(name, { conditions: ["Failed"] });
  const run = scriptRun();
  assert(needsPodDetails(run, failed));
  const obs = observed({
    configMaps: [cm],
    jobs: [failed],
    podTermination: { podName: "p-1", exitCode: 3, reason: "Error", message: "disk full" },
  });
  const p = plan(run, { scripts: scripts(), observed: obs, now: NOW });
  assertEquals(p.status.phase, "Failed");
  assertEquals(p.status.reason, "BackoffLimitExceeded");
  assert(p.status.message!.includes("BackoffLimitExceeded"), String(p.status.message));
  assert(
    p.status.message!.includes("exited with code 3; script output: disk full"),
    String(p.status.message),
  );
  assertEquals(p.status.conditions?.map((c) => [c.type, c.status]), [["Failed", "True"]]);
  // Once recorded, the next cycle keeps the message without looking at pods again.
  const after = { ...run, status: p.status };
  assert(!needsPodDetails(after, failed));
  const again = plan(after, {
    scripts: scripts(),
    observed: { ...obs, podTermination: undefined },
    now: LATER,
  });
  assert(statusEqual(after.status, again.status));
});

Deno.test("plan(): a deleted ConfigMap or Job of an unfinished run is recreated", () => {
  const { name, cm } = current();
  const running = observed({ configMaps: [cm], jobs: [job(name, { active: 1 })] });
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
    observed: observed({ jobs: [job(name, { active: 1 })] }),
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
    const run = settle(
      scriptRun(),
      observed({ configMaps: [cm], jobs: [job(name, { conditions: [outcome] })] }),
    );
    const p = plan(run, { scripts: scripts(), observed: observed(), now: LATER });
    assertEquals(p.actions, []);
    assert(statusEqual(run.status, p.status), outcome);
  }
});

Deno.test("plan(): a changed spec replaces the Job: deletes first, creates once old pods stopped", () => {
  const old = current();
  const oldJob = job(old.name, { active: 1 });
  const run = settle(scriptRun(), observed({ configMaps: [old.cm], jobs: [oldJob] }));
  const edited: ScriptRun = {
    ...run,
    metadata: { ...run.metadata, generation: 2 },
    spec: { ...run.spec, args: ["new"] },
  };
  // Cycle 1: only the deletes; the status says what it waits for.
  const p = plan(edited, {
    scripts: scripts(),
    observed: observed({ configMaps: [old.cm], jobs: [oldJob] }),
    now: LATER,
  });
  assertEquals(p.actions.map((a) => [a.type, a.message]), [
    ["deleteJob", "Replacing outdated Job"],
    ["deleteConfigMap", "Deleting outdated ConfigMap"],
  ]);
  assertEquals([p.status.phase, p.status.reason], ["Pending", "ReplacingJob"]);
  assert(p.status.jobName !== old.name);
  assertEquals(p.status.observedGeneration, 2);
  // Cycle 2: the old Job is gone; the plan asks whether its pods still run.
  const after = { ...edited, status: p.status };
  const ask = plan(after, { scripts: scripts(), observed: observed(), now: LATER });
  assertEquals([ask.actions, ask.needsOldPods], [[], true]);
  const still = plan(after, {
    scripts: scripts(),
    observed: observed({ oldPodsActive: true }),
    now: LATER,
  });
  assertEquals(still.actions, []);
  assert(statusEqual(after.status, still.status));
  const gone = plan(after, {
    scripts: scripts(),
    observed: observed({ oldPodsActive: false }),
    now: LATER,
  });
  assertEquals(gone.actions.map((a) => a.type), ["createConfigMap", "createJob"]);
  assertEquals([gone.status.phase, gone.status.reason], ["Pending", "JobCreated"]);
});

Deno.test("plan(): a new script version rolls out even after the old run finished", () => {
  const old = current();
  const done = job(old.name, { conditions: ["Complete"] });
  const run = settle(scriptRun(), observed({ configMaps: [old.cm], jobs: [done] }));
  const v2 = scripts(script("task.sh", "#!/bin/sh\necho v2\n"));
  const p = plan(run, {
    scripts: v2,
    observed: observed({ configMaps: [old.cm], jobs: [done] }),
    now: LATER,
  });
  assertEquals(p.actions.map((a) => a.type), ["deleteJob", "deleteConfigMap"]);
  assertEquals([p.status.phase, p.status.reason], ["Pending", "ReplacingJob"]);
});

Deno.test("plan(): the operator deletes a finished Job after ttlSecondsAfterFinished, never before the status has it", () => {
  const { name, cm } = current();
  const done = job(name, { conditions: ["Complete"] });
  done.status!.completionTime = "2026-01-01T00:01:00Z";
  const obs = observed({ configMaps: [cm], jobs: [done] });
  const run = scriptRun({ ttlSecondsAfterFinished: 60 });
  // Not recorded yet: record first, delete nothing, even long after the TTL.
  const first = plan(run, { scripts: scripts(), observed: obs, now: "2026-01-02T00:00:00Z" });
  assertEquals(first.actions, []);
  const recorded = { ...run, status: first.status };
  assertEquals(
    plan(recorded, { scripts: scripts(), observed: obs, now: "2026-01-01T00:01:59Z" }).actions,
    [],
  );
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
  // ttlSecondsAfterFinished is not part of the run's identity: editing it reruns nothing.
  assert(runHash(run, script()) === runHash(scriptRun({ ttlSecondsAfterFinished: 5 }), script()));
});

Deno.test("plan(): FailureTarget is Failed without a completion time; the final Failed adds it", () => {
  const { name, cm } = current();
  const target = job(name, { conditions: ["FailureTarget"] });
  const p = plan(scriptRun(), {
    scripts: scripts(),
    observed: observed({ configMaps: [cm], jobs: [target] }),
    now: NOW,
  });
  assertEquals([p.status.phase, p.status.completionTime], ["Failed", undefined]);
  const run = { ...scriptRun(), status: p.status };
  assert(!needsPodDetails(run, target));
  const final = job(name, { conditions: ["Failed"] });
  assert(needsPodDetails(run, final), "the final Failed condition should look at the pods again");
});

Deno.test("plan(): ScriptNotFound after a spec change deletes the previous spec's Job and ConfigMap", () => {
  const { name, cm } = current();
  const p = plan(scriptRun({ script: "gone.sh" }), {
    scripts: scripts(),
    observed: observed({ configMaps: [cm], jobs: [job(name, { active: 1 })] }),
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
    assertEquals(p.status.reason, "NameConflict");
    assertEquals(p.status.phase, "Pending");
    assert(p.status.message!.includes(name));
  }
});

Deno.test("plan(): an unknown script fails with ScriptNotFound, lists the scripts, creates nothing", () => {
  const p = plan(scriptRun({ script: "nope.sh" }), {
    scripts: scripts(script("a.sh"), script("b.sh")),
    observed: observed(),
    now: NOW,
  });
  assertEquals(p.actions, []);
  assertEquals(p.status.phase, "Failed");
  assertEquals(p.status.reason, "ScriptNotFound");
  assert(p.status.message!.includes("a.sh, b.sh"), String(p.status.message));
  // Fixing the spec recovers.
  const fixed = { ...scriptRun({ script: "a.sh" }), status: p.status };
  const q = plan(fixed, { scripts: scripts(script("a.sh")), observed: observed(), now: LATER });
  assertEquals(q.actions.map((a) => a.type), ["createConfigMap", "createJob"]);
  assertEquals(q.status.phase, "Pending");
});

Deno.test("plan(): condition transition times stay put while the status does not change", () => {
  const { name, cm } = current();
  const obs = observed({ configMaps: [cm], jobs: [job(name, { conditions: ["Complete"] })] });
  const run = settle(scriptRun(), obs, NOW);
  const p = plan(run, { scripts: scripts(), observed: obs, now: LATER });
  assertEquals(p.status.conditions?.[0].lastTransitionTime, NOW);
});

Deno.test("plan(): script output in a failure message is capped and labelled", () => {
  const { name, cm } = current();
  const output = "secret-ish line\n" + "x".repeat(2000) + "\nlast line";
  const obs = observed({
    configMaps: [cm],
    jobs: [job(name, { conditions: ["Failed"] })],
    podTermination: { podName: "p-1", exitCode: 1, reason: "Error", message: output },
  });
  const p = plan(scriptRun(), { scripts: scripts(), observed: obs, now: NOW });
  const message = p.status.message!;
  assert(message.includes(`script output (last ${MAX_OUTPUT} characters): `), message);
  assert(message.endsWith("last line"), message);
  assert(!message.includes("secret-ish"), message);
  assert(message.length < MAX_OUTPUT + 300, `${message.length} characters`);
});

Deno.test("plan(): reportOutput false leaves the script output out of the message", () => {
  const run = scriptRun({ reportOutput: false });
  const { name, cm } = current(run);
  const obs = observed({
    configMaps: [cm],
    jobs: [job(name, { conditions: ["Failed"] })],
    podTermination: { podName: "p-1", exitCode: 4, reason: "Error", message: "password=hunter2" },
  });
  const p = plan(run, { scripts: scripts(), observed: obs, now: NOW });
  const message = p.status.message!;
  assert(message.includes("exited with code 4"), message);
  assert(message.includes("script output not reported (spec.reportOutput: false)"), message);
  assert(!message.includes("hunter2"), message);
  assertEquals(p.status.conditions?.[0].message, message);
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
  assertEquals(p.status.conditions?.map((c) => [c.type, c.status, c.reason]), [[
    "Failed",
    "True",
    POLICY_VIOLATION,
  ]]);
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
