/**
 * What wakes a run and what belongs to it, against the real control plane with the operator as a
 * process: a run gated by a deleted predecessor's Job starts as soon as that Job is gone, and a
 * pod in another namespace carrying a run's uid label is not that run's pod.
 * @module
 */
import { assert, assertEquals } from "./harness/assert.ts";
import type { Job, ScriptRun } from "../src/types.ts";
import {
  clusterTest,
  kubectlJson,
  kubectlOk,
  NotYet,
  uniqueNamespace,
  waitFor,
} from "./harness/test_env.ts";
import { applyRun, getRun, installCrd, startOperator } from "./harness/operator.ts";

const NO_SANITIZE = { sanitizeResources: false, sanitizeOps: false };
const HOLD = "script-operator.dev/test-hold";

/** The run once its status names a Job; the Job is returned too. */
async function withJob(ns: string, name: string): Promise<{ run: ScriptRun; job: Job }> {
  return await waitFor(async () => {
    const run = await getRun(ns, name);
    const jobName = run.status?.jobName;
    if (!jobName) throw new NotYet(`no Job in the status yet (${run.status?.reason})`);
    const job = await kubectlJson<Job>(["-n", ns, "get", "job", jobName]);
    return { run, job };
  }, { what: `${ns}/${name} to have its Job` });
}

/** The Job controlled by the ScriptRun of `uid`, once there is one. */
function jobOf(ns: string, uid: string, timeoutMs: number): Promise<Job> {
  return waitFor(async () => {
    const jobs = (await kubectlJson<{ items: Job[] }>(["-n", ns, "get", "jobs"])).items;
    return jobs.find((j) => j.metadata.ownerReferences?.some((o) => o.uid === uid));
  }, { what: `a Job of ScriptRun ${uid}`, timeoutMs });
}

clusterTest(
  "a run created again under the same name gets its Job within seconds of the old Job's removal",
  NO_SANITIZE,
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("predecessor");
    // A long interval: only a wake-up can start the new Job in time.
    await using op = await startOperator([`--namespace=${ns.name}`, "--interval=60s"]);
    await applyRun(ns.name, "again", { script: "task.sh" });
    const { run: first, job: old } = await withJob(ns.name, "again");
    const name = old.metadata.name;
    // The old Job is held by a finalizer; its run is deleted, then created again.
    await kubectlOk([
      "-n",
      ns.name,
      "patch",
      "job",
      name,
      "--type=merge",
      "-p",
      JSON.stringify({ metadata: { finalizers: [HOLD] } }),
    ]);
    await kubectlOk(["-n", ns.name, "delete", "scriptrun", "again", "--wait=true"]);
    await kubectlOk(["-n", ns.name, "delete", "configmap", name, "--ignore-not-found"]);
    await kubectlOk(["-n", ns.name, "delete", "job", name, "--wait=false"]);
    await applyRun(ns.name, "again", { script: "task.sh" });
    const second = await waitFor(async () => {
      const run = await getRun(ns.name, "again");
      return run.metadata.uid !== first.metadata.uid && run.status?.reason === "ReplacingJob" &&
        run;
    }, { what: "the new run to wait for the old Job" });
    // Long enough for the wake-ups of its own status patch to find nothing more to do.
    await new Promise((r) => setTimeout(r, 3_000));
    const stillOld = await kubectlJson<Job>(["-n", ns.name, "get", "job", name]);
    assert(stillOld.metadata.deletionTimestamp, "the old Job is being deleted");
    assertEquals(stillOld.metadata.ownerReferences?.[0]?.uid, first.metadata.uid);
    // The finalizer goes: the old Job is removed, and the new run's Job comes.
    const t0 = Date.now();
    await kubectlOk([
      "-n",
      ns.name,
      "patch",
      "job",
      name,
      "--type=json",
      "-p",
      JSON.stringify([{ op: "remove", path: "/metadata/finalizers" }]),
    ]);
    const created = await jobOf(ns.name, second.metadata.uid!, 15_000);
    const seconds = (Date.now() - t0) / 1000;
    assertEquals(created.metadata.name, name);
    assert(seconds < 10, `the new Job came ${seconds} s after the old one went`);
    assertEquals(op.logs.filter((l) => l.level === "error"), []);
  },
);

clusterTest(
  "a pending pod in another namespace labelled with a running run's uid does not hold that run's rollout",
  { needsJobs: true, ...NO_SANITIZE },
  async () => {
    await installCrd();
    await using a = await uniqueNamespace("owner");
    await using b = await uniqueNamespace("forger");
    await using op = await startOperator([
      `--namespace=${a.name}`,
      `--namespace=${b.name}`,
      "--interval=60s",
    ]);
    const long = [{ name: "KWOK_DURATION", value: "600s" }];
    await applyRun(a.name, "r", { script: "task.sh", rerunPolicy: "OnChange", env: long });
    const { run } = await waitFor(async () => {
      const found = await withJob(a.name, "r");
      return found.run.status?.phase === "Running" && found;
    }, { what: "r Running" });
    // A pod in another namespace with r's uid label, that never starts (no node matches it).
    await kubectlOk(["-n", b.name, "create", "-f", "-"], {
      stdin: JSON.stringify({
        apiVersion: "v1",
        kind: "Pod",
        metadata: {
          name: "forged",
          labels: { "script-operator.dev/scriptrun-uid": run.metadata.uid },
        },
        spec: {
          nodeSelector: { "script-operator.dev/no-such-node": "true" },
          containers: [{ name: "c", image: "busybox" }],
        },
      }),
    });
    await new Promise((r) => setTimeout(r, 2_000));
    // A new spec: the old Job is replaced, and the new one starts when the old pod has stopped.
    await applyRun(a.name, "r", {
      script: "task.sh",
      rerunPolicy: "OnChange",
      env: long,
      args: ["v2"],
    });
    const replaced = await waitFor(async () => {
      const now = await getRun(a.name, "r");
      if (now.status?.message?.includes("forged")) {
        throw new Error(`r waits for the other namespace's pod: ${now.status.message}`);
      }
      return now.status?.jobName !== run.status?.jobName && now.status?.phase === "Running" &&
        now;
    }, { what: "r's new Job Running", timeoutMs: 45_000 });
    assert(replaced.status?.jobName, "a new Job");
    assertEquals(op.logs.filter((l) => String(l.message ?? "").includes("forged")), []);
  },
);
