/**
 * Operating the operator (issue #4): leader election between two processes, probes and
 * metrics, shutdown on SIGTERM, and kubeconfigs with token and exec-plugin users.
 * @module
 */
import { assert, assertEquals } from "./harness/assert.ts";
import { installOperatorRbac } from "./harness/rbac.ts";
import {
  installCrd,
  type OperatorProcess,
  startOperator,
  unreachableKubeconfig,
} from "./harness/operator.ts";
import {
  clusterTest,
  freePort,
  kubectlJson,
  kubectlOk,
  tokenKubeconfig,
  uniqueNamespace,
  waitFor,
} from "./harness/test_env.ts";

const NO_SANITIZE = { sanitizeResources: false, sanitizeOps: false };

async function get(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.text() };
}

function writes(op: OperatorProcess): string[] {
  return op.logs.filter((l) => /^(Creating|Recreating|Replacing|Deleting)/.test(l.msg)).map((l) =>
    l.msg
  );
}

clusterTest(
  "leader election: only the leader writes; killing it hands over within the lease duration",
  {
    needsJobs: true,
    ...NO_SANITIZE,
  },
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("leader");
    const args = [
      `--namespace=${ns.name}`,
      "--interval=1s",
      "--leader-elect",
      `--leader-election-namespace=${ns.name}`,
    ];
    await using a = await startOperator(args);
    await a.waitForLog((l) => l.msg === "Became leader", "A to become leader");
    await using b = await startOperator(args);
    await b.waitForLog((l) => l.msg === "Waiting to become leader", "B to wait");
    await kubectlOk(["apply", "-f", "-"], {
      stdin:
        `{"apiVersion":"script-operator.dev/v1alpha1","kind":"ScriptRun","metadata":{"name":"one","namespace":"${ns.name}"},"spec":{"script":"task.sh"}}`,
    });
    await a.waitForLog(
      (l) => l.msg === "Job succeeded" && l.name === "one",
      "A to finish run one",
      60_000,
    );
    assertEquals(writes(b), [], "the follower wrote");
    assert(!b.logs.some((l) => l.msg === "Became leader"), "both led at once");

    // SIGKILL: the lease is not released, B must wait for it to expire (15 s).
    const killedAt = Date.now();
    Deno.kill(Number(a.pid), "SIGKILL");
    await b.waitForLog((l) => l.msg === "Became leader", "B to take over", 30_000);
    const takeover = (Date.now() - killedAt) / 1000;
    console.log(
      `takeover after SIGKILL of the leader: ${takeover.toFixed(1)}s (lease 15 s, retry 2 s)`,
    );
    assert(takeover <= 15 + 2 * 2 + 3, `takeover took ${takeover}s`);
    await kubectlOk(["apply", "-f", "-"], {
      stdin:
        `{"apiVersion":"script-operator.dev/v1alpha1","kind":"ScriptRun","metadata":{"name":"two","namespace":"${ns.name}"},"spec":{"script":"task.sh"}}`,
    });
    await b.waitForLog(
      (l) => l.msg === "Job succeeded" && l.name === "two",
      "B to finish run two",
      60_000,
    );

    // SIGTERM: B releases the lease and exits 0 within 10 s; a new replica takes over at once.
    await using c = await startOperator(args);
    await c.waitForLog((l) => l.msg === "Waiting to become leader", "C to wait");
    const termAt = Date.now();
    assertEquals(await b.stop(), 0);
    const exitSeconds = (Date.now() - termAt) / 1000;
    assert(exitSeconds < 10, `B took ${exitSeconds}s to exit`);
    assert(b.logs.some((l) => l.msg === "Released leader lease"), "B did not release the lease");
    await c.waitForLog((l) => l.msg === "Became leader", "C to take over after release", 8_000);
    const lease = await kubectlJson<{ spec: { holderIdentity: string; leaseTransitions: number } }>(
      [
        "-n",
        ns.name,
        "get",
        "lease",
        "script-operator-leader",
      ],
    );
    assert(lease.spec.holderIdentity !== "", "lease has no holder");
    assert(lease.spec.leaseTransitions >= 2, JSON.stringify(lease.spec));
  },
);

clusterTest(
  "probes and metrics: /healthz, /readyz after the first cycle, /metrics with controller-runtime names",
  {
    ...NO_SANITIZE,
  },
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("probes");
    const health = freePort();
    const metrics = freePort();
    await using op = await startOperator([
      `--namespace=${ns.name}`,
      "--interval=1s",
      `--health-probe-bind-address=127.0.0.1:${health}`,
      `--metrics-bind-address=127.0.0.1:${metrics}`,
    ]);
    await op.waitForLog((l) => l.msg === "Serving" && l.what === "metrics", "metrics server");
    assertEquals((await get(`http://127.0.0.1:${health}/healthz`)).status, 200);
    await waitFor(async () => (await get(`http://127.0.0.1:${health}/readyz`)).status === 200, {
      what: "/readyz 200",
    });
    await kubectlOk(["apply", "-f", "-"], {
      stdin:
        `{"apiVersion":"script-operator.dev/v1alpha1","kind":"ScriptRun","metadata":{"name":"m","namespace":"${ns.name}"},"spec":{"script":"nope.sh"}}`,
    });
    const body = await waitFor(async () => {
      const text = (await get(`http://127.0.0.1:${metrics}/metrics`)).body;
      return /script_operator_scriptruns\{phase="Failed"\} 1/.test(text) ? text : undefined;
    }, { what: "the Failed ScriptRun in the phase gauge" });
    for (
      const pattern of [
        /controller_runtime_reconcile_total\{controller="scriptrun",result="success"\} [1-9]/,
        /controller_runtime_reconcile_errors_total\{controller="scriptrun"\} 0/,
        /controller_runtime_reconcile_time_seconds_bucket\{le="0.005",controller="scriptrun"\}/,
        /rest_client_requests_total\{code="200",method="GET",host="127\.0\.0\.1:\d+"\} [1-9]/,
        /rest_client_requests_total\{code="200",method="PATCH",/,
        /script_operator_poll_cycle_duration_seconds_count\{result="success"\} [1-9]/,
        /process_resident_memory_bytes [1-9]\d{6,}/,
        /nodejs_heap_size_used_bytes [1-9]\d{6,}/,
        /script_operator_watch_events_total\{kind="ScriptRun",type="ADDED"\} [1-9]/,
        /workqueue_queue_duration_seconds_count\{name="scriptrun",controller="scriptrun"\} [1-9]/,
        /workqueue_depth\{name="scriptrun",controller="scriptrun"\} \d+/,
      ]
    ) {
      assert(pattern.test(body), `${pattern} not in /metrics:\n${body.slice(0, 3000)}`);
    }
    assertEquals(await op.stop(), 0);
  },
);

clusterTest("/readyz is 503 while the API server is unreachable; /healthz stays 200", {
  ...NO_SANITIZE,
}, async () => {
  await using down = await unreachableKubeconfig();
  {
    const health = freePort();
    await using op = await startOperator([
      "--interval=1s",
      `--health-probe-bind-address=127.0.0.1:${health}`,
    ], {
      kubeconfig: down.path,
    });
    await op.waitForLog(
      (l) => l.level === "error" && String(l.msg).includes("unreachable"),
      "an unreachable error",
    );
    assertEquals((await get(`http://127.0.0.1:${health}/healthz`)).status, 200);
    assertEquals((await get(`http://127.0.0.1:${health}/readyz`)).status, 503);
    assertEquals(await op.stop(), 0);
  }
});

clusterTest("kubeconfigs with a bearer token and with an exec credential plugin work", {
  ...NO_SANITIZE,
}, async () => {
  await installCrd();
  await using ns = await uniqueNamespace("auth");
  await using identity = await installOperatorRbac(ns.name);
  const { token } = await identity.token();
  await using tokenKc = await tokenKubeconfig(token);
  const byToken = await startOperator(["--once"], { kubeconfig: tokenKc.path });
  assertEquals(await byToken.exited, 0, JSON.stringify(byToken.logs.slice(-3)));

  // The same token handed out by an exec plugin (as aws, gcloud or kubelogin do).
  const dir = await Deno.makeTempDir();
  try {
    const plugin = `${dir}/token-plugin.sh`;
    await Deno.writeTextFile(
      plugin,
      `#!/bin/sh\necho '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"${token}"}}'\n`,
    );
    await Deno.chmod(plugin, 0o755);
    const kc = JSON.parse(await Deno.readTextFile(tokenKc.path));
    kc.users = [{
      name: "token",
      user: {
        exec: {
          apiVersion: "client.authentication.k8s.io/v1",
          command: plugin,
          interactiveMode: "Never",
        },
      },
    }];
    await Deno.writeTextFile(`${dir}/exec.kubeconfig`, JSON.stringify(kc));
    const byExec = await startOperator(["--once"], { kubeconfig: `${dir}/exec.kubeconfig` });
    assertEquals(
      await byExec.exited,
      0,
      JSON.stringify(byExec.logs.slice(-3)) + byExec.otherOutput.join("\n"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
