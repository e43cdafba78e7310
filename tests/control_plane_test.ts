/**
 * Proofs that the test control plane is a real Kubernetes: Jobs complete and fail, the garbage
 * collector deletes dependents, ServiceAccount tokens authenticate and RBAC denies.
 */
import {
  clusterTest,
  jobsMode,
  kubectl,
  kubectlJson,
  kubectlOk,
  tokenKubeconfig,
  uniqueNamespace,
  waitFor,
} from "./harness/test_env.ts";

interface Condition {
  type: string;
  status: string;
}

interface Job {
  status: { conditions?: Condition[]; succeeded?: number; failed?: number };
}

interface PodList {
  items: {
    status: {
      phase: string;
      containerStatuses?: {
        state: { terminated?: { exitCode: number; message?: string; reason?: string } };
      }[];
    };
  }[];
}

function assertEquals<T>(actual: T, expected: T, what: string): void {
  if (JSON.stringify(actual) !== JSON.stringify(expected)) {
    throw new Error(
      `${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`,
    );
  }
}

/** A Job manifest; `exitCode` != 0 makes it fail (kwok: env cue; real cluster: the script). */
function jobManifest(namespace: string, name: string, exitCode: number, message: string): string {
  const script = exitCode === 0
    ? "echo done"
    : `echo -n '${message}' > /dev/termination-log; exit ${exitCode}`;
  const env = exitCode === 0 ? [] : [
    { name: "KWOK_EXIT_CODE", value: String(exitCode) },
    { name: "KWOK_TERMINATION_MESSAGE", value: message },
  ];
  return JSON.stringify({
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: { name, namespace },
    spec: {
      backoffLimit: 0,
      template: {
        spec: {
          restartPolicy: "Never",
          containers: [{
            name: "script",
            image: "busybox:1.36",
            command: ["sh", "-c", script],
            env,
          }],
        },
      },
    },
  });
}

async function waitForJobCondition(namespace: string, name: string, type: string): Promise<Job> {
  return await waitFor(async () => {
    const job = await kubectlJson<Job>(["get", "job", name, "-n", namespace]);
    const conditions = job.status.conditions ?? [];
    const done = conditions.find((c) =>
      (c.type === "Complete" || c.type === "Failed") &&
      c.status === "True"
    );
    if (done && done.type !== type) {
      throw new Error(`Job ${name} ended ${done.type}, expected ${type}`);
    }
    return done ? job : undefined;
  }, { what: `Job ${namespace}/${name} to be ${type}`, timeoutMs: 60_000 });
}

async function podsOfJob(namespace: string, name: string): Promise<PodList> {
  return await kubectlJson<PodList>([
    "get",
    "pods",
    "-n",
    namespace,
    "-l",
    `batch.kubernetes.io/job-name=${name}`,
  ]);
}

clusterTest("a Job runs to Complete", { needsJobs: true }, async () => {
  await using ns = await uniqueNamespace("cp-job-ok");
  await kubectlOk(["apply", "-f", "-"], { stdin: jobManifest(ns.name, "ok", 0, "") });
  const job = await waitForJobCondition(ns.name, "ok", "Complete");
  assertEquals(job.status.succeeded, 1, "succeeded pods");
  const pods = await podsOfJob(ns.name, "ok");
  assertEquals(pods.items.map((p) => p.status.phase), ["Succeeded"], "pod phases");
  const terminated = pods.items[0].status.containerStatuses?.[0].state.terminated;
  assertEquals(terminated?.exitCode, 0, "exit code");
});

clusterTest("a Job whose container exits non-zero is Failed", { needsJobs: true }, async () => {
  await using ns = await uniqueNamespace("cp-job-fail");
  await kubectlOk(["apply", "-f", "-"], { stdin: jobManifest(ns.name, "bad", 3, "boom") });
  const job = await waitForJobCondition(ns.name, "bad", "Failed");
  assertEquals(job.status.failed, 1, "failed pods");
  const pods = await podsOfJob(ns.name, "bad");
  assertEquals(pods.items.map((p) => p.status.phase), ["Failed"], "pod phases");
  const terminated = pods.items[0].status.containerStatuses?.[0].state.terminated;
  assertEquals(terminated?.exitCode, 3, "exit code");
  assertEquals(terminated?.message?.trim(), "boom", "termination message");
});

clusterTest("deleting an owner deletes its dependents", { needsControllers: true }, async () => {
  await using ns = await uniqueNamespace("cp-gc");
  await kubectlOk(["create", "configmap", "owner", "-n", ns.name]);
  const uid = await kubectlOk([
    "get",
    "configmap",
    "owner",
    "-n",
    ns.name,
    "-o",
    "jsonpath={.metadata.uid}",
  ]);
  assertEquals(uid.length > 0, true, "owner has a uid");
  const dependent = {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: {
      name: "dependent",
      namespace: ns.name,
      ownerReferences: [{ apiVersion: "v1", kind: "ConfigMap", name: "owner", uid }],
    },
  };
  await kubectlOk(["apply", "-f", "-"], { stdin: JSON.stringify(dependent) });
  await kubectlOk(["delete", "configmap", "owner", "-n", ns.name]);
  await waitFor(async () => {
    const res = await kubectl(["get", "configmap", "dependent", "-n", ns.name]);
    return res.code !== 0 && res.stderr.includes("NotFound");
  }, { what: "the garbage collector to delete the dependent ConfigMap" });
});

clusterTest("a ServiceAccount token authenticates and RBAC limits it", {}, async () => {
  await using ns = await uniqueNamespace("cp-rbac");
  await kubectlOk(["create", "serviceaccount", "reader", "-n", ns.name]);
  await kubectlOk([
    "create",
    "role",
    "read-configmaps",
    "-n",
    ns.name,
    "--verb=get,list",
    "--resource=configmaps",
  ]);
  await kubectlOk([
    "create",
    "rolebinding",
    "reader",
    "-n",
    ns.name,
    "--role=read-configmaps",
    `--serviceaccount=${ns.name}:reader`,
  ]);
  const token = (await kubectlOk(["create", "token", "reader", "-n", ns.name])).trim();
  await using kubeconfig = await tokenKubeconfig(token);
  const as = { kubeconfig: kubeconfig.path };

  const whoami = await kubectlOk(
    ["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"],
    as,
  );
  assertEquals(whoami, `system:serviceaccount:${ns.name}:reader`, "token's user");
  // RBAC needs a moment to see a new binding.
  await waitFor(async () => (await kubectl(["get", "configmaps", "-n", ns.name], as)).code === 0, {
    what: "the token to be allowed to list configmaps",
    timeoutMs: 10_000,
  });
  const secrets = await kubectl(["get", "secrets", "-n", ns.name], as);
  assertEquals(secrets.code, 1, "exit code of listing secrets");
  if (!/Forbidden|forbidden/.test(secrets.stderr)) {
    throw new Error(`listing secrets: expected Forbidden, got: ${secrets.stderr}`);
  }
  await using tampered = await tokenKubeconfig(`${token.slice(0, -4)}AAAA`);
  const garbage = await kubectl(["get", "configmaps", "-n", ns.name], {
    kubeconfig: tampered.path,
  });
  assertEquals(garbage.code, 1, "exit code with a tampered token");
  if (!garbage.stderr.includes("Unauthorized")) {
    throw new Error(`tampered token: expected Unauthorized, got: ${garbage.stderr}`);
  }
});

if (jobsMode === "kwok") {
  clusterTest(
    "kwok: KWOK_EXIT_CODE=0 succeeds, KWOK_DURATION delays",
    { needsJobs: true },
    async () => {
      await using ns = await uniqueNamespace("cp-kwok-cues");
      const pod = {
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: "slow", namespace: ns.name },
        spec: {
          restartPolicy: "Never",
          containers: [{
            name: "c",
            image: "busybox:1.36",
            env: [{ name: "KWOK_EXIT_CODE", value: "0" }, { name: "KWOK_DURATION", value: "3s" }],
          }],
        },
      };
      await kubectlOk(["apply", "-f", "-"], { stdin: JSON.stringify(pod) });
      const started = Date.now();
      await waitFor(async () => {
        const phase = await kubectlOk([
          "get",
          "pod",
          "slow",
          "-n",
          ns.name,
          "-o",
          "jsonpath={.status.phase}",
        ]);
        return phase === "Running";
      }, { what: "pod slow to run" });
      const phase = await waitFor(async () => {
        const phase = await kubectlOk([
          "get",
          "pod",
          "slow",
          "-n",
          ns.name,
          "-o",
          "jsonpath={.status.phase}",
        ]);
        return phase === "Succeeded" || phase === "Failed" ? phase : undefined;
      }, { what: "pod slow to finish" });
      assertEquals(phase, "Succeeded", "phase");
      const elapsed = Date.now() - started;
      if (elapsed < 2500) throw new Error(`pod finished after ${elapsed}ms, expected >= 3s`);
    },
  );
}
