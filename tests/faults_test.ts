/**
 * Promises kept under faults (issue #8), against the real control plane with the operator as a
 * process. Old pods are held alive by pausing the fake node (SIGSTOP of kwok): a deleted pod then
 * stays Running, as a pod that takes its time to stop on a real node does.
 * @module
 */
import { assert, assertEquals } from "./harness/assert.ts";
import type { Job, ScriptRun } from "../src/types.ts";
import {
  clusterTest,
  kubectl,
  kubectlJson,
  kubectlOk,
  testKubeconfig,
  uniqueNamespace,
  waitFor,
} from "./harness/test_env.ts";
import {
  applyRun,
  copyBuild,
  getRun,
  installCrd,
  type OperatorProcess,
  startOperator,
} from "./harness/operator.ts";

const NO_SANITIZE = { sanitizeResources: false, sanitizeOps: false };

interface PodLike {
  metadata: { name: string; labels?: Record<string, string>; deletionTimestamp?: string };
  status?: { phase?: string };
}

/** The kwok process of the test control plane (its kubeconfig sits beside the admin one). */
function kwokPid(): number {
  const dir = testKubeconfig!.slice(0, testKubeconfig!.lastIndexOf("/"));
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).split("\0");
      if (cmdline.includes(`--kubeconfig=${dir}/kwok.kubeconfig`)) return Number(entry.name);
    } catch { /* gone meanwhile */ }
  }
  throw new Error(`no kwok process for the control plane in ${dir}`);
}

/** Pauses the fake node: pods neither start nor stop until the returned resume(). */
function pauseNode(): { resume(): void } & Disposable {
  const pid = kwokPid();
  Deno.kill(pid, "SIGSTOP");
  let resumed = false;
  const resume = () => {
    if (resumed) return;
    resumed = true;
    Deno.kill(pid, "SIGCONT");
  };
  return { resume, [Symbol.dispose]: resume };
}

/**
 * Samples the run's pods every 150 ms until stopped; `stop()` fails if pods of two different Jobs
 * were ever pending or running together (and `check()` fails as soon as that was seen).
 */
function watchOverlap(ns: string, runUid: string) {
  let stop = false;
  let samples = 0;
  let violation: string | undefined;
  const seen = new Set<string>();
  const done = (async () => {
    while (!stop && !violation) {
      const pods = (await kubectlJson<{ items: PodLike[] }>([
        "-n",
        ns,
        "get",
        "pods",
        "-l",
        `script-operator.dev/scriptrun-uid=${runUid}`,
      ])).items;
      samples++;
      const active = pods.filter((p) =>
        p.status?.phase !== "Succeeded" && p.status?.phase !== "Failed"
      );
      const uid = (p: PodLike) => p.metadata.labels?.["batch.kubernetes.io/controller-uid"] ?? "";
      const jobs = new Set(active.map(uid));
      for (const p of pods) seen.add(uid(p));
      if (jobs.size > 1) {
        violation = `pods of ${jobs.size} Jobs active at once: ${
          active.map((p) => `${p.metadata.name}:${p.status?.phase}`).join(", ")
        }`;
      }
      await new Promise((r) => setTimeout(r, 150));
    }
  })();
  return {
    check(): void {
      assert(!violation, violation);
    },
    async stop(): Promise<{ samples: number; jobs: number }> {
      stop = true;
      await done;
      assert(!violation, violation);
      return { samples, jobs: seen.size };
    },
  };
}

async function running(ns: string, name: string): Promise<ScriptRun> {
  return await waitFor(async () => {
    const r = await getRun(ns, name);
    return r.status?.phase === "Running" ? r : undefined;
  }, { what: `${name} Running`, timeoutMs: 60_000 });
}

function noErrors(op: OperatorProcess): void {
  const bad = op.logs.filter((l) => l.level === "error");
  assertEquals(bad.map((l) => `${l.msg}: ${l.error}`), [], "error lines in the operator's log");
}

clusterTest(
  "six spec edits 0.3 s apart while the old pod cannot stop: never two Jobs' pods at once",
  { needsJobs: true, ...NO_SANITIZE },
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("edits");
    await using op = await startOperator([`--namespace=${ns.name}`, "--interval=500ms"]);
    const long = [{ name: "KWOK_DURATION", value: "600s" }];
    await applyRun(ns.name, "edits", { script: "task.sh", rerunPolicy: "OnChange", env: long });
    const first = await running(ns.name, "edits");
    const watch = watchOverlap(ns.name, first.metadata.uid!);
    {
      using node = pauseNode();
      for (let i = 1; i <= 6; i++) {
        await applyRun(ns.name, "edits", {
          script: "task.sh",
          rerunPolicy: "OnChange",
          args: [`edit-${i}`],
          env: long,
        });
        await new Promise((r) => setTimeout(r, 300));
      }
      // The old pod is still Running (the node is paused): no new Job may start, however long.
      await new Promise((r) => setTimeout(r, 4_000));
      const jobs = (await kubectlJson<{ items: Job[] }>(["-n", ns.name, "get", "jobs"])).items;
      assertEquals(
        jobs.filter((j) => !j.metadata.deletionTimestamp).map((j) => j.metadata.name),
        [],
        "a new Job exists while the old pod runs",
      );
      const waiting = await getRun(ns.name, "edits");
      assertEquals([waiting.status?.phase, waiting.status?.reason], ["Pending", "ReplacingJob"]);
      // A pod stuck terminating holds the rollout until it is gone: force-deleting it (as on a
      // lost node) releases it, and the new Job is created while the node is still paused.
      await kubectlOk([
        "-n",
        ns.name,
        "delete",
        "pods",
        "-l",
        `script-operator.dev/scriptrun-uid=${first.metadata.uid}`,
        "--force",
        "--grace-period=0",
      ]);
      await waitFor(async () => {
        const all = (await kubectlJson<{ items: Job[] }>(["-n", ns.name, "get", "jobs"])).items;
        return all.some((j) => !j.metadata.deletionTimestamp);
      }, { what: "the new Job after the stuck pod was force-deleted", timeoutMs: 30_000 });
      node.resume();
      // The last spec runs, once.
      const last = await running(ns.name, "edits");
      assertEquals(last.metadata.generation, 7);
      assertEquals(last.status?.observedGeneration, 7);
    }
    const { samples, jobs } = await watch.stop();
    assert(samples > 10, `only ${samples} samples`);
    assertEquals(jobs, 2, "the first Job and the last spec's Job, nothing in between");
    // The status races (409) are normal: no error lines.
    noErrors(op);
    const created = op.logs.filter((l) => l.msg === "Creating Job").length;
    assertEquals(created, 2);
    assertEquals(op.logs.filter((l) => l.msg === "Recreating missing Job"), []);
  },
);

clusterTest(
  "spec changed to an unknown script and back while the pod cannot stop: no second Job meanwhile",
  { needsJobs: true, ...NO_SANITIZE },
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("flip");
    await using _op = await startOperator([`--namespace=${ns.name}`, "--interval=500ms"]);
    const long = [{ name: "KWOK_DURATION", value: "600s" }];
    await applyRun(ns.name, "flip", { script: "task.sh", env: long });
    const first = await running(ns.name, "flip");
    const watch = watchOverlap(ns.name, first.metadata.uid!);
    {
      using node = pauseNode();
      await applyRun(ns.name, "flip", { script: "nope.sh", env: long });
      await waitFor(
        async () => (await getRun(ns.name, "flip")).status?.reason === "ScriptNotFound",
        {
          what: "ScriptNotFound",
        },
      );
      await applyRun(ns.name, "flip", { script: "task.sh", env: long });
      await new Promise((r) => setTimeout(r, 4_000));
      const r = await getRun(ns.name, "flip");
      assertEquals([r.status?.phase, r.status?.reason], ["Pending", "ReplacingJob"]);
      node.resume();
      await running(ns.name, "flip");
    }
    await watch.stop();
  },
);

clusterTest(
  "a Job that lost its managed-by label is still ours: relabelled, never a NameConflict",
  { needsJobs: true, ...NO_SANITIZE },
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("relabel");
    await using op = await startOperator([`--namespace=${ns.name}`, "--interval=500ms"]);
    await applyRun(ns.name, "mine", {
      script: "task.sh",
      env: [{ name: "KWOK_DURATION", value: "600s" }],
    });
    const run = await running(ns.name, "mine");
    await kubectlOk([
      "-n",
      ns.name,
      "label",
      "job",
      run.status!.jobName!,
      "app.kubernetes.io/managed-by-",
    ]);
    await waitFor(async () => {
      const job = await kubectlJson<Job>(["-n", ns.name, "get", "job", run.status!.jobName!]);
      return job.metadata.labels?.["app.kubernetes.io/managed-by"] === "script-operator";
    }, { what: "the label to be repaired" });
    await new Promise((r) => setTimeout(r, 2_000));
    const after = await getRun(ns.name, "mine");
    assertEquals([after.status?.phase, after.status?.reason], ["Running", "JobRunning"]);
    assertEquals(op.logs.filter((l) => l.reason === "NameConflict"), []);
    assertEquals(op.logs.filter((l) => l.msg === "Name conflict"), []);
  },
);

clusterTest(
  "pod-level problems get their own reason in Kubernetes' words: Unschedulable, FailedCreate",
  { needsJobs: true, ...NO_SANITIZE },
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("podproblems");
    await using _op = await startOperator([
      `--namespace=${ns.name}`,
      "--interval=1s",
      "--allowed-service-account=robot",
    ]);
    await applyRun(ns.name, "huge", {
      script: "task.sh",
      resources: { requests: { memory: "1E" }, limits: { memory: "1E" } },
    });
    await applyRun(ns.name, "nosa", { script: "task.sh", serviceAccountName: "robot" });
    const huge = await waitFor(async () => {
      const r = await getRun(ns.name, "huge");
      return r.status?.reason === "Unschedulable" ? r : undefined;
    }, { what: "huge: Unschedulable", timeoutMs: 40_000 });
    assertEquals(huge.status?.phase, "Pending");
    assert(/nodes are available/.test(huge.status!.message!), huge.status!.message);
    const nosa = await waitFor(async () => {
      const r = await getRun(ns.name, "nosa");
      return r.status?.reason === "FailedCreate" ? r : undefined;
    }, { what: "nosa: FailedCreate", timeoutMs: 40_000 });
    assertEquals(nosa.status?.phase, "Pending");
    assert(/serviceaccount "robot" not found/.test(nosa.status!.message!), nosa.status!.message);
    // Events say it too (kubectl describe).
    const events = await kubectl(["-n", ns.name, "get", "events", "-o", "json"]);
    assert(events.stdout.includes('"reason": "Unschedulable"'), "no Unschedulable event");
  },
);

clusterTest(
  "a script leaving the build keeps finished outcomes; a new script version reruns only OnChange runs",
  { needsJobs: true, ...NO_SANITIZE },
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("history");
    const args = [`--namespace=${ns.name}`, "--interval=500ms"];
    const succeeded = async (name: string) =>
      await waitFor(async () => {
        const r = await getRun(ns.name, name);
        return r.status?.phase === "Succeeded" && r.status.completionTime ? r : undefined;
      }, { what: `${name} Succeeded`, timeoutMs: 60_000 });
    {
      await using _op = await startOperator(args);
      await applyRun(ns.name, "once", { script: "task.sh" });
      await applyRun(ns.name, "every", { script: "task.sh", rerunPolicy: "OnChange" });
      await succeeded("once");
      await succeeded("every");
    }
    const before = await getRun(ns.name, "once");
    // Rebuilt without task.sh: history stays, nothing is deleted, a condition says why.
    {
      await using build = await copyBuild({ "task.sh": null });
      await using op = await startOperator(args, { root: build.root });
      await waitFor(async () => {
        const r = await getRun(ns.name, "once");
        const c = r.status?.conditions?.find((c) => c.type === "ScriptAvailable");
        return c?.status === "False" ? r : undefined;
      }, { what: "condition ScriptAvailable=False" });
      for (const name of ["once", "every"]) {
        const r = await getRun(ns.name, name);
        assertEquals(
          [r.status?.phase, r.status?.reason],
          ["Succeeded", "CompletionsReached"],
          name,
        );
      }
      const job = await kubectl(["-n", ns.name, "get", "job", before.status!.jobName!]);
      assertEquals(job.code, 0, "the finished Job was deleted");
      assertEquals(op.logs.filter((l) => l.msg.startsWith("Deleting")), []);
    }
    // Rebuilt with a new version: only the OnChange run runs again.
    {
      await using build = await copyBuild({
        "task.sh": '#!/bin/sh\necho "Starting task script, v2."\necho "Task complete."\n',
      });
      await using op = await startOperator(args, { root: build.root });
      await waitFor(async () => {
        const r = await getRun(ns.name, "every");
        return r.status?.phase === "Succeeded" && r.status.jobName !== before.status?.jobName &&
          r.status.scriptHash !== before.status?.scriptHash;
      }, { what: "the OnChange run to run v2", timeoutMs: 60_000 });
      const once = await getRun(ns.name, "once");
      assertEquals(once.status?.jobName, before.status?.jobName);
      assertEquals(once.status?.scriptHash, before.status?.scriptHash);
      const outdated = once.status?.conditions?.find((c) => c.type === "Outdated");
      assertEquals(outdated?.status, "True");
      const created = op.logs.filter((l) => l.msg === "Creating Job").map((l) => l.name);
      assertEquals(created, ["every"]);
    }
  },
);
