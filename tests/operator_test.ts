/**
 * The operator's behaviour against the real control plane (issue #3). Lifecycle tests run the
 * operator as a process (`deno run` with the start task's flags); tests that need exact control
 * over when a cycle happens drive the same Reconciler in-process, one `cycle()` at a time.
 * @module
 */
import { assert, assertEquals } from "./harness/assert.ts";
import { KubeConfig } from "@kubernetes/client-node";
import { childName, runHash } from "../src/desired/desired.ts";
import { ClientNodeKube } from "../src/api/kube.ts";
import { logger } from "../src/runtime/log.ts";
import { Reconciler } from "../src/controller/reconciler.ts";
import { loadScripts } from "../src/runtime/scripts.ts";
import type { ConfigMap, Job, ScriptRun, ScriptRunSpec } from "../src/types.ts";
import {
  clusterTest,
  jobsMode,
  kubectl,
  kubectlJson,
  kubectlOk,
  testKubeconfig,
  uniqueNamespace,
  waitFor,
} from "./harness/test_env.ts";
import {
  applyRun,
  getRun,
  installCrd,
  runManifest,
  startOperator,
  unreachableKubeconfig,
} from "./harness/operator.ts";

const SCRIPTS = await loadScripts();
const NO_SANITIZE = { sanitizeResources: false, sanitizeOps: false };

async function listOf<T>(ns: string, kind: string, selector?: string): Promise<T[]> {
  const args = ["-n", ns, "get", kind];
  if (selector) args.push("-l", selector);
  return (await kubectlJson<{ items: T[] }>(args)).items;
}

/** The in-process reconciler for one namespace, counting requests by verb and resource. */
function inProcess(ns: string) {
  const kc = new KubeConfig();
  kc.loadFromFile(testKubeconfig!);
  const requests: string[] = [];
  const kube = new ClientNodeKube(kc, {
    observe: (verb, resource) => requests.push(`${verb} ${resource}`),
  });
  const reconciler = new Reconciler({
    kube,
    scripts: SCRIPTS,
    log: logger("test"),
    namespaces: [ns],
  });
  return { reconciler, requests };
}

/** Runs cycles until `done` holds for the ScriptRun. */
async function cycleUntil(
  reconciler: Reconciler,
  ns: string,
  name: string,
  done: (run: ScriptRun) => boolean,
  what: string,
  timeoutMs = 60_000,
): Promise<ScriptRun> {
  return await waitFor(async () => {
    await reconciler.cycle();
    const run = await getRun(ns, name);
    return done(run) ? run : undefined;
  }, { what, timeoutMs, intervalMs: 500 });
}

clusterTest("a ScriptRun goes Pending → Running → Succeeded, with logs, events and kubectl wait", {
  needsJobs: true,
  ...NO_SANITIZE,
}, async () => {
  await installCrd();
  await using ns = await uniqueNamespace("lifecycle");
  await using op = await startOperator([
    `--namespace=${ns.name}`,
    "--interval=500ms",
    "--log-level=debug",
  ]);
  await op.waitForLog((l) => l.msg === "Starting", "Starting");
  // Long enough to be shown Running (RUNNING_SHOWN_AFTER_MS): a quicker script skips it.
  await applyRun(ns.name, "sample", {
    script: "task.sh",
    env: [{ name: "KWOK_DURATION", value: "8s" }],
  });
  const wait = await kubectl([
    "-n",
    ns.name,
    "wait",
    "--for=condition=Complete",
    "scriptrun/sample",
    "--timeout=90s",
  ]);
  assertEquals(wait.code, 0, wait.stderr);

  // Complete may follow SuccessCriteriaMet by a moment; the completion time comes with it.
  const run = await waitFor(async () => {
    const r = await getRun(ns.name, "sample");
    return r.status?.completionTime ? r : undefined;
  }, { what: "the completion time in the status" });
  assertEquals(run.status?.phase, "Succeeded");
  const task = SCRIPTS.get("task.sh")!;
  assertEquals(run.status?.scriptHash, task.sha256);
  assert(run.status?.startTime && run.status?.completionTime, JSON.stringify(run.status));

  // The phases the operator wrote, in order (a status may be written twice in one phase, e.g.
  // when the Job's Complete condition follows SuccessCriteriaMet and adds the completion time).
  const phases = op.logs.filter((l) => l.msg === "Updating status" && l.name === "sample")
    .map((l) => l.phase).filter((phase, i, all) => i === 0 || all[i - 1] !== phase);
  if (jobsMode === "kwok") assertEquals(phases, ["Pending", "Running", "Succeeded"]);
  else {
    // A real node runs task.sh in an instant: it is shown Running only if its pod was slow.
    assertEquals([phases[0], phases.at(-1)], ["Pending", "Succeeded"]);
  }

  // The ConfigMap holds exactly the embedded script; the Job mounts it 0555 and runs it.
  const cm = await kubectlJson<ConfigMap>([
    "-n",
    ns.name,
    "get",
    "configmap",
    run.status!.configMapName!,
  ]);
  assertEquals(cm.data, { "task.sh": task.content });
  assertEquals(cm.immutable, true);
  const job = await kubectlJson<Job>(["-n", ns.name, "get", "job", run.status!.jobName!]);
  const pod = job.spec!.template.spec;
  assertEquals(pod.volumes[0].configMap, { name: cm.metadata.name, defaultMode: 0o555 });
  assertEquals(pod.containers[0].command, ["/scripts/task.sh"]);
  assertEquals(pod.containers[0].volumeMounts[0].readOnly, true);
  assertEquals(job.metadata.ownerReferences?.[0].uid, run.metadata.uid);

  // Every step is logged with the resource's identity.
  for (
    const msg of [
      "Creating ConfigMap",
      "Creating Job",
      "Waiting for Job to complete",
      "Job succeeded",
    ]
  ) {
    const line = op.logs.find((l) => l.msg === msg && l.name === "sample");
    assert(line, `no "${msg}" log line`);
    assertEquals([line.group, line.kind, line.namespace], [
      "script-operator.dev",
      "ScriptRun",
      ns.name,
    ]);
  }
  const created = op.logs.find((l) => l.msg === "Creating Job")!;
  assertEquals([created.job, created.hash], [run.status!.jobName, run.status!.runHash]);

  // kubectl describe tells the story through Events: the outcome (the Job is in the status).
  const events = await listOf<{ reason: string; involvedObject: { name: string } }>(
    ns.name,
    "events",
  );
  const reasons = events.filter((e) => e.involvedObject.name === "sample").map((e) => e.reason);
  assertEquals(reasons, ["CompletionsReached"]);
  assertEquals(op.otherOutput, []);
  assertEquals(await op.stop(), 0);
});

clusterTest("a failing run ends Failed with the Job's reason and the container's exit code", {
  needsJobs: true,
  ...NO_SANITIZE,
}, async () => {
  await installCrd();
  await using ns = await uniqueNamespace("failing");
  await using op = await startOperator([`--namespace=${ns.name}`, "--interval=500ms"]);
  // wait-for-endpoint.sh without a URL exits 2 for real; under kwok, KWOK_EXIT_CODE does the same.
  await applyRun(ns.name, "broken", {
    script: "wait-for-endpoint.sh",
    env: jobsMode === "kwok" ? [{ name: "KWOK_EXIT_CODE", value: "2" }] : [],
  });
  const wait = await kubectl([
    "-n",
    ns.name,
    "wait",
    "--for=condition=Failed",
    "scriptrun/broken",
    "--timeout=90s",
  ]);
  assertEquals(wait.code, 0, wait.stderr);
  const run = await getRun(ns.name, "broken");
  assertEquals(run.status?.phase, "Failed");
  assertEquals(run.status?.reason, "BackoffLimitExceeded");
  assert(run.status?.message?.includes("exited with code 2"), run.status?.message);
  await op.waitForLog((l) => l.msg === "Job failed" && l.name === "broken", "Job failed");
  assertEquals(await op.stop(), 0);
});

clusterTest(
  "deleted ConfigMap and Job of an unfinished run come back; of a finished run nothing reruns",
  {
    needsJobs: true,
    ...NO_SANITIZE,
  },
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("repair");
    const { reconciler } = inProcess(ns.name);
    await applyRun(ns.name, "repair", {
      script: "task.sh",
      env: [{ name: "KWOK_DURATION", value: "2s" }],
    });
    await reconciler.cycle();
    const first = await getRun(ns.name, "repair");
    const name = first.status!.jobName!;
    assert(first.status?.phase === "Pending" || first.status?.phase === "Running");
    await kubectlOk(["-n", ns.name, "delete", "job", name, "--cascade=background"]);
    await kubectlOk(["-n", ns.name, "delete", "configmap", name]);
    await reconciler.cycle();
    await kubectlOk(["-n", ns.name, "get", "job", name]);
    const cm = await kubectlJson<ConfigMap>(["-n", ns.name, "get", "configmap", name]);
    assertEquals(cm.data, { "task.sh": SCRIPTS.get("task.sh")!.content });

    const done = await cycleUntil(
      reconciler,
      ns.name,
      "repair",
      (r) => r.status?.phase === "Succeeded",
      "Succeeded",
    );
    const jobUid = (await kubectlJson<Job>(["-n", ns.name, "get", "job", name])).metadata.uid;
    await kubectlOk(["-n", ns.name, "delete", "job", name, "--cascade=background"]);
    await reconciler.cycle();
    await reconciler.cycle();
    assertEquals(
      await listOf<Job>(ns.name, "jobs"),
      [],
      `finished run was rerun (old job uid ${jobUid})`,
    );
    const after = await getRun(ns.name, "repair");
    assertEquals(after.status, done.status);
  },
);

clusterTest(
  "changing the spec replaces the Job: old Job and ConfigMap go first, the new Job starts once old pods stopped",
  {
    needsJobs: true,
    ...NO_SANITIZE,
  },
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("rollout");
    const { reconciler } = inProcess(ns.name);
    await applyRun(ns.name, "roll", {
      script: "task.sh",
      env: [{ name: "KWOK_DURATION", value: "120s" }],
    });
    const running = await cycleUntil(
      reconciler,
      ns.name,
      "roll",
      (r) => r.status?.phase === "Running",
      "Running",
    );
    const oldName = running.status!.jobName!;
    await applyRun(ns.name, "roll", {
      script: "task.sh",
      args: ["v2"],
      env: [{ name: "KWOK_DURATION", value: "1s" }],
    });
    await reconciler.cycle();
    const replacing = await getRun(ns.name, "roll");
    assertEquals([replacing.status?.phase, replacing.status?.reason], ["Pending", "ReplacingJob"]);
    assert(replacing.status!.jobName !== oldName, "status did not move to the new hash");
    assertEquals(replacing.status?.observedGeneration, 2);
    // Foreground deletion: the old Job may still be there, terminating, until its pods are gone.
    assertEquals(
      (await listOf<Job>(ns.name, "jobs")).filter((j) => !j.metadata.deletionTimestamp),
      [],
      "a Job exists while the old one's pods may run",
    );
    assertEquals(
      await listOf(ns.name, "configmaps", "app.kubernetes.io/managed-by=script-operator"),
      [],
    );

    // The new Job appears only once no pod of the old Job is pending or running.
    await waitFor(async () => {
      await reconciler.cycle();
      const jobs = (await listOf<Job>(ns.name, "jobs")).filter((j) => j.metadata.name !== oldName);
      if (jobs.length === 0) {
        return false;
      }
      const oldPods = await listOf<{ status: { phase: string } }>(
        ns.name,
        "pods",
        `batch.kubernetes.io/job-name=${oldName}`,
      );
      assertEquals(
        oldPods.filter((p) => p.status.phase === "Running" || p.status.phase === "Pending"),
        [],
        "old pod still active",
      );
      assertEquals(
        jobs.map((j) => j.metadata.name),
        [replacing.status!.jobName],
      );
      return true;
    }, { what: "the new Job after the old pods stopped", timeoutMs: 90_000, intervalMs: 500 });
    const cms = await listOf<ConfigMap>(
      ns.name,
      "configmaps",
      "app.kubernetes.io/managed-by=script-operator",
    );
    assertEquals(cms.map((c) => c.metadata.name), [replacing.status!.configMapName]);
    await waitFor(
      async () =>
        (await listOf(ns.name, "pods", `batch.kubernetes.io/job-name=${oldName}`)).length === 0,
      {
        what: `pods of the replaced Job ${oldName} to be deleted (no orphans)`,
        timeoutMs: 60_000,
      },
    );
    await cycleUntil(
      reconciler,
      ns.name,
      "roll",
      (r) => r.status?.phase === "Succeeded",
      "new run to succeed",
    );
  },
);

clusterTest(
  "ttlSecondsAfterFinished: the operator deletes the finished Job after recording the outcome",
  {
    needsJobs: true,
    ...NO_SANITIZE,
  },
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("ttl");
    const { reconciler } = inProcess(ns.name);
    await applyRun(ns.name, "short", { script: "task.sh", ttlSecondsAfterFinished: 0 });
    const done = await cycleUntil(
      reconciler,
      ns.name,
      "short",
      (r) => r.status?.phase === "Succeeded" && r.status.completionTime !== undefined,
      "Succeeded",
    );
    await reconciler.cycle();
    // The delete is Foreground: the Job stays, terminating, until the garbage collector has
    // removed its pods. The operator's part is the delete itself; then the Job goes at the GC's pace.
    const jobs = await listOf<Job>(ns.name, "jobs");
    assert(
      jobs.every((j) => j.metadata.deletionTimestamp !== undefined),
      `a Job not being deleted: ${JSON.stringify(jobs.map((j) => j.metadata.name))}`,
    );
    await waitFor(async () => (await listOf<Job>(ns.name, "jobs")).length === 0, {
      what: "the garbage collector to remove the deleted Job",
      timeoutMs: 60_000,
    });
    await reconciler.cycle();
    assertEquals(
      await listOf<Job>(ns.name, "jobs"),
      [],
      "the run was rerun after its Job was removed",
    );
    assertEquals((await getRun(ns.name, "short")).status, done.status);
  },
);

clusterTest("an unknown script fails with ScriptNotFound and creates nothing; fixing it recovers", {
  ...NO_SANITIZE,
}, async () => {
  await installCrd();
  await using ns = await uniqueNamespace("unknown");
  const { reconciler } = inProcess(ns.name);
  await applyRun(ns.name, "typo", { script: "tsk.sh" });
  const result = await reconciler.cycle();
  assert(result.ok);
  const run = await getRun(ns.name, "typo");
  assertEquals([run.status?.phase, run.status?.reason], ["Failed", "ScriptNotFound"]);
  assert(run.status?.message?.includes("task.sh, wait-for-endpoint.sh"), run.status?.message);
  assertEquals(await listOf(ns.name, "jobs"), []);
  assertEquals(
    await listOf(ns.name, "configmaps", "app.kubernetes.io/managed-by=script-operator"),
    [],
  );
  await applyRun(ns.name, "typo", { script: "task.sh" });
  await reconciler.cycle();
  const fixed = await getRun(ns.name, "typo");
  assertEquals(fixed.status?.phase, "Pending");
  assertEquals((await listOf<Job>(ns.name, "jobs")).length, 1);
});

clusterTest(
  "a foreign ConfigMap with the needed name is reported as NameConflict and left untouched",
  {
    ...NO_SANITIZE,
  },
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("conflict");
    const { reconciler } = inProcess(ns.name);
    const spec: ScriptRunSpec = { script: "task.sh" };
    const probe: ScriptRun = { apiVersion: "", kind: "", metadata: { name: "clash" }, spec };
    const name = childName("clash", runHash(probe, SCRIPTS.get("task.sh")!));
    await kubectlOk([
      "-n",
      ns.name,
      "create",
      "configmap",
      name,
      "--from-literal=owner=someone-else",
    ]);
    const before = await kubectlJson<ConfigMap>(["-n", ns.name, "get", "configmap", name]);
    await applyRun(ns.name, "clash", spec);
    await reconciler.cycle();
    const run = await getRun(ns.name, "clash");
    assertEquals([run.status?.phase, run.status?.reason], ["Pending", "NameConflict"]);
    assert(run.status?.message?.includes(`ConfigMap ${name}`), run.status?.message);
    const after = await kubectlJson<ConfigMap>(["-n", ns.name, "get", "configmap", name]);
    assertEquals(after.metadata.resourceVersion, before.metadata.resourceVersion);
    assertEquals(after.data, { owner: "someone-else" });
    assertEquals(await listOf(ns.name, "jobs"), []);
  },
);

clusterTest("a 60-character ScriptRun name gets valid child names and runs", {
  needsJobs: true,
  ...NO_SANITIZE,
}, async () => {
  await installCrd();
  await using ns = await uniqueNamespace("longname");
  const { reconciler } = inProcess(ns.name);
  const longName = "a-very-long-scriptrun-name-that-platform-engineers-write-x60";
  assertEquals(longName.length, 60);
  await applyRun(ns.name, longName, { script: "task.sh" });
  const run = await cycleUntil(
    reconciler,
    ns.name,
    longName,
    (r) => r.status?.phase === "Succeeded",
    "Succeeded",
  );
  assert(run.status!.jobName!.length <= 63, run.status!.jobName);
});

clusterTest("deleting the ScriptRun removes its ConfigMap and Job (garbage collection)", {
  needsControllers: true,
  ...NO_SANITIZE,
}, async () => {
  await installCrd();
  await using ns = await uniqueNamespace("gc");
  const { reconciler } = inProcess(ns.name);
  await applyRun(ns.name, "gone", { script: "task.sh" });
  await reconciler.cycle();
  assertEquals((await listOf(ns.name, "jobs")).length, 1);
  await kubectlOk(["-n", ns.name, "delete", "scriptrun", "gone"]);
  await waitFor(async () =>
    (await listOf(ns.name, "jobs")).length === 0 &&
    (await listOf(ns.name, "configmaps", "app.kubernetes.io/managed-by=script-operator")).length ===
      0, {
    what: "the garbage collector to delete the ScriptRun's ConfigMap and Job",
    timeoutMs: 60_000,
  });
});

clusterTest("200 ScriptRuns converge; a steady-state cycle makes 3 LIST requests and no write", {
  needsJobs: true,
  ...NO_SANITIZE,
}, async () => {
  await installCrd();
  await using ns = await uniqueNamespace("scale");
  const { reconciler, requests } = inProcess(ns.name);
  const docs = Array.from(
    { length: 200 },
    (_, i) => runManifest(ns.name, `run-${i}`, { script: "task.sh" }),
  );
  await kubectlOk(["apply", "-f", "-"], { stdin: docs.join("---\n") });
  await waitFor(async () => {
    await reconciler.cycle();
    const runs = await listOf<ScriptRun>(ns.name, "scriptruns");
    // Converged: every run Succeeded with its completion time (the Job's final Complete seen).
    return runs.length === 200 &&
      runs.every((r) => r.status?.phase === "Succeeded" && r.status.completionTime);
  }, { what: "200 ScriptRuns to succeed", timeoutMs: 240_000, intervalMs: 1000 });
  requests.length = 0;
  const result = await reconciler.cycle();
  assertEquals([result.scriptRuns, result.writes, result.errors], [200, 0, 0]);
  assertEquals(requests.sort(), ["LIST configmaps", "LIST jobs", "LIST scriptruns"]);
});

clusterTest("start-up errors are one clear line with the fix and the right exit code", {
  ...NO_SANITIZE,
}, async () => {
  await installCrd();
  // No kubeconfig anywhere: usage/configuration error.
  const none = await startOperator(["--once"], {
    kubeconfig: null,
    clearEnv: true,
    env: { HOME: "/nonexistent", PATH: Deno.env.get("PATH") ?? "" },
  });
  assertEquals(await none.exited, 2);
  assert(
    none.otherOutput.join("\n").includes("no kubeconfig: pass --kubeconfig"),
    none.otherOutput.join("\n"),
  );

  // API server unreachable: runtime error naming the server.
  {
    await using unreachable = await unreachableKubeconfig();
    const down = await startOperator(["--once"], { kubeconfig: unreachable.path });
    assertEquals(await down.exited, 1);
    const line = down.logs.find((l) => l.level === "error");
    assert(line && String(line.msg).includes("unreachable"), JSON.stringify(down.logs));
  }

  // Permission denied: names the verb and the resource.
  await using ns = await uniqueNamespace("rbac");
  await kubectlOk(["-n", ns.name, "create", "serviceaccount", "nobody"]);
  const token = (await kubectlOk(["-n", ns.name, "create", "token", "nobody"])).trim();
  const { tokenKubeconfig } = await import("./harness/test_env.ts");
  await using kc = await tokenKubeconfig(token);
  const denied = await startOperator(["--once", `--namespace=${ns.name}`], { kubeconfig: kc.path });
  assertEquals(await denied.exited, 2);
  const err = denied.logs.find((l) => l.level === "error");
  assert(
    err && /cannot list resource "scriptruns"/.test(String(err.msg)),
    JSON.stringify(denied.logs),
  );
});
