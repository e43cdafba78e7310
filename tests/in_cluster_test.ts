/**
 * The operator in in-cluster mode (issue #4): no kubeconfig, KUBERNETES_SERVICE_HOST set, a real
 * ServiceAccount token from the TokenRequest API and the cluster CA in ServiceAccount files
 * under a temporary path prefix, and ONLY the RBAC of deploy/rbac.yaml.
 * @module
 */
import { assert, assertEquals } from "./harness/assert.ts";
import { installOperatorRbac } from "./harness/rbac.ts";
import { installCrd, startOperator } from "./harness/operator.ts";
import {
  clusterTest,
  jobsMode,
  kubectl,
  kubectlJson,
  kubectlOk,
  uniqueNamespace,
  waitFor,
} from "./harness/test_env.ts";
import { SERVICE_ACCOUNT_DIR } from "../src/api/kubeconfig.ts";
import { IN_CLUSTER_FLAGS } from "../deploy/permissions.ts";

interface Run {
  metadata: { name: string };
  status?: { phase?: string; jobName?: string; message?: string };
}

async function phaseOf(ns: string, name: string): Promise<string | undefined> {
  return (await kubectlJson<Run>(["-n", ns, "get", "scriptrun", name])).status?.phase;
}

clusterTest(
  "in-cluster mode: ServiceAccount token and CA, only deploy/rbac.yaml, full lifecycle, token rotation",
  {
    needsJobs: true,
    sanitizeResources: false,
    sanitizeOps: false,
  },
  async () => {
    await installCrd();
    await using opNs = await uniqueNamespace("operator");
    await using work = await uniqueNamespace("incluster");
    await using identity = await installOperatorRbac(opNs.name);

    const cluster = await kubectlJson<{
      clusters: { cluster: { server: string; "certificate-authority-data": string } }[];
    }>(["config", "view", "--raw", "--minify"]);
    const server = new URL(cluster.clusters[0].cluster.server);
    const prefix = await Deno.makeTempDir({ prefix: "script-operator-sa-" });
    try {
      const dir = `${prefix}${SERVICE_ACCOUNT_DIR}`;
      await Deno.mkdir(dir, { recursive: true });
      const first = await identity.token();
      await Deno.writeTextFile(`${dir}/token`, first.token);
      await Deno.writeFile(
        `${dir}/ca.crt`,
        Uint8Array.from(
          atob(cluster.clusters[0].cluster["certificate-authority-data"]),
          (c) => c.charCodeAt(0),
        ),
      );
      await Deno.writeTextFile(`${dir}/namespace`, opNs.name);

      // The image's permission flags, with the ServiceAccount folder moved under the test's
      // prefix (and the variable that moves it allowed): no --allow-run, other variables unset.
      // Under `deno run` the scripts are files on disk; the compiled binary embeds them.
      const scriptsDir = new URL("../scripts", import.meta.url).pathname;
      const flags = IN_CLUSTER_FLAGS.map((f) =>
        f.startsWith("--allow-read=")
          ? `--allow-read=${dir},${scriptsDir}`
          : f.startsWith("--allow-env=")
          ? `${f},SCRIPT_OPERATOR_SERVICEACCOUNT_PREFIX`
          : f
      );
      assert(!flags.includes("--allow-run") && flags.includes("--ignore-env"), flags.join(" "));
      await using op = await startOperator(["--interval=1s", "--leader-elect"], {
        flags,
        kubeconfig: null,
        clearEnv: true,
        env: {
          PATH: Deno.env.get("PATH") ?? "",
          HOME: prefix,
          KUBERNETES_SERVICE_HOST: server.hostname,
          KUBERNETES_SERVICE_PORT: server.port,
          SCRIPT_OPERATOR_SERVICEACCOUNT_PREFIX: prefix,
        },
      });
      const started = await op.waitForLog((l) => l.msg === "Starting", "Starting");
      assert(
        String(started.credentials).startsWith("in-cluster ServiceAccount"),
        JSON.stringify(started),
      );
      // Leader election uses the Lease in the ServiceAccount's namespace (Role in deploy/rbac.yaml).
      await op.waitForLog((l) => l.msg === "Became leader", "Became leader");
      await kubectlOk(["-n", opNs.name, "get", "lease", "script-operator-leader"]);

      const failEnv = jobsMode === "kwok" ? '\n    - {name: KWOK_EXIT_CODE, value: "2"}' : "";
      await kubectlOk(["apply", "-f", "-"], {
        stdin: `apiVersion: script-operator.dev/v1alpha1
kind: ScriptRun
metadata: {name: ok, namespace: ${work.name}}
spec: {script: task.sh}
---
apiVersion: script-operator.dev/v1alpha1
kind: ScriptRun
metadata: {name: broken, namespace: ${work.name}}
spec:
  script: wait-for-endpoint.sh
  env:
    - {name: X, value: "1"}${failEnv}
`,
      });
      await waitFor(async () => await phaseOf(work.name, "ok") === "Succeeded", {
        what: "ok to succeed",
        timeoutMs: 60_000,
      });
      await waitFor(async () => await phaseOf(work.name, "broken") === "Failed", {
        what: "broken to fail",
        timeoutMs: 60_000,
      });
      const broken = await kubectlJson<Run>(["-n", work.name, "get", "scriptrun", "broken"]);
      assert(broken.status?.message?.includes("exited with code 2"), broken.status?.message);

      // Editing the spec of a finished run with rerunPolicy OnChange replaces the Job (delete
      // verbs); deleting the run cleans up (GC).
      const before = (await kubectlJson<Run>(["-n", work.name, "get", "scriptrun", "ok"])).status
        ?.jobName;
      await kubectlOk([
        "-n",
        work.name,
        "patch",
        "scriptrun",
        "ok",
        "--type=merge",
        "-p",
        '{"spec":{"args":["again"],"rerunPolicy":"OnChange"}}',
      ]);
      await waitFor(async () => {
        const r = await kubectlJson<Run>(["-n", work.name, "get", "scriptrun", "ok"]);
        return r.status?.jobName !== before && r.status?.phase === "Succeeded";
      }, { what: "the edited run to succeed with a new Job", timeoutMs: 60_000 });
      const jobs = await kubectlJson<{ items: { metadata: { name: string } }[] }>([
        "-n",
        work.name,
        "get",
        "jobs",
      ]);
      assert(!jobs.items.some((j) => j.metadata.name === before), "old Job still there");

      // Token rotation: write a new token, revoke the old one; the operator re-reads the file
      // (client-node re-reads it every 60 s) and keeps working.
      const second = await identity.token();
      await Deno.writeTextFile(`${dir}/token`, second.token);
      await first.revoke();
      // Only go on once the API server really refuses the old token.
      const { tokenKubeconfig } = await import("./harness/test_env.ts");
      await using oldKc = await tokenKubeconfig(first.token);
      await waitFor(
        async () => (await kubectl(["auth", "whoami"], { kubeconfig: oldKc.path })).code !== 0,
        {
          what: "the API server to reject the revoked token",
          timeoutMs: 60_000,
          intervalMs: 1000,
        },
      );
      await kubectlOk(["apply", "-f", "-"], {
        stdin: `apiVersion: script-operator.dev/v1alpha1
kind: ScriptRun
metadata: {name: after-rotation, namespace: ${work.name}}
spec: {script: task.sh}
`,
      });
      await waitFor(async () => await phaseOf(work.name, "after-rotation") === "Succeeded", {
        what: "a run created after the token rotation to succeed",
        timeoutMs: 150_000,
        intervalMs: 1000,
      });

      // The RBAC was enough: no request was ever forbidden.
      const forbidden = op.logs.filter((l) =>
        String(l.error ?? l.msg).includes("forbidden") || l.code === 403
      );
      assertEquals(forbidden, []);
      assertEquals(await op.stop(), 0);
      assert(
        op.logs.some((l) => l.msg === "Released leader lease"),
        "lease not released on SIGTERM",
      );
    } finally {
      await Deno.remove(prefix, { recursive: true });
    }
    const check = await kubectl(["-n", work.name, "get", "scriptruns"]);
    assertEquals(check.code, 0);
  },
);
