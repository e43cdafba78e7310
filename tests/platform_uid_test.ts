/**
 * Platforms that assign each pod a UID (OpenShift's restricted-v2), against the real control
 * plane: with `--platform-assigns-uid` the operator's Jobs name no UID or GID and stay restricted;
 * without it they run as 65532. What the API server stores for a ScriptRun without a
 * securityContext (the CRD's default) must not look like a UID the ScriptRun asked for.
 * @module
 */
import { assert, assertEquals } from "./harness/assert.ts";
import { applyRun, getRun, installCrd, startOperator } from "./harness/operator.ts";
import { clusterTest, kubectlJson, uniqueNamespace, waitFor } from "./harness/test_env.ts";
import { POLICY_VIOLATION } from "../src/desired/policy.ts";
import type { Job, ScriptRun } from "../src/types.ts";

const NO_SANITIZE = { sanitizeResources: false, sanitizeOps: false };

/** The restricted profile without a UID: what both modes share. */
const RESTRICTED = {
  runAsNonRoot: true,
  allowPrivilegeEscalation: false,
  capabilities: { drop: ["ALL"] },
  seccompProfile: { type: "RuntimeDefault" },
};

/** Waits for the run's status to name a Job or a reason; returns the run. */
function settled(ns: string, name: string): Promise<ScriptRun> {
  return waitFor(async () => {
    const r = await getRun(ns, name);
    return r.status?.jobName || r.status?.reason === POLICY_VIOLATION ? r : undefined;
  }, { what: `ScriptRun ${ns}/${name} to get a Job or be refused` });
}

/** The pod template of the run's Job, as the API server has it. */
async function podOf(ns: string, name: string) {
  const run = await settled(ns, name);
  assert(run.status?.jobName, `${name}: ${run.status?.reason}: ${run.status?.message}`);
  const job = await kubectlJson<Job>(["-n", ns, "get", "job", run.status!.jobName!]);
  return job.spec!.template.spec;
}

clusterTest(
  "--platform-assigns-uid: Job pods name no UID, GID or fsGroup and stay restricted; a UID asked for is kept, root is refused",
  NO_SANITIZE,
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("assigned-uid");
    await applyRun(ns.name, "plain", { script: "task.sh" });
    await applyRun(ns.name, "own-uid", { script: "task.sh", securityContext: { runAsUser: 1000 } });
    await applyRun(ns.name, "root", { script: "task.sh", securityContext: { runAsUser: 0 } });
    // The CRD's default, stored when the ScriptRun says nothing, names no UID.
    assertEquals((await getRun(ns.name, "plain")).spec.securityContext, RESTRICTED);

    await using op = await startOperator([
      `--namespace=${ns.name}`,
      "--interval=500ms",
      "--platform-assigns-uid",
    ]);
    const policy = await op.waitForLog((l) => l.msg === "Policy in force", "the policy");
    assertEquals(policy.platformAssignsUid, true);

    const plain = await podOf(ns.name, "plain");
    // The API server defaults a pod's securityContext to {}: no runAsUser, runAsGroup or fsGroup.
    assertEquals(plain.securityContext ?? {}, {});
    assertEquals(plain.containers.length, 1);
    assertEquals(plain.containers[0].securityContext, RESTRICTED);

    const own = await podOf(ns.name, "own-uid");
    assertEquals(own.containers[0].securityContext, { ...RESTRICTED, runAsUser: 1000 });

    const root = await settled(ns.name, "root");
    assertEquals([root.status?.phase, root.status?.reason], ["Failed", POLICY_VIOLATION]);
    assert(root.status?.message?.includes("spec.securityContext.runAsUser"), root.status?.message);
  },
);

clusterTest(
  "without --platform-assigns-uid a ScriptRun stored with the CRD's default runs as UID and GID 65532",
  NO_SANITIZE,
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("fixed-uid");
    await applyRun(ns.name, "plain", { script: "task.sh" });
    await using op = await startOperator([`--namespace=${ns.name}`, "--interval=500ms"]);
    const policy = await op.waitForLog((l) => l.msg === "Policy in force", "the policy");
    assertEquals(policy.platformAssignsUid, false);
    const pod = await podOf(ns.name, "plain");
    assertEquals(pod.containers[0].securityContext, {
      ...RESTRICTED,
      runAsUser: 65532,
      runAsGroup: 65532,
    });
  },
);
