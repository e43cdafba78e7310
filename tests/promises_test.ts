/**
 * Promises that must hold under faults (issue 8): an honest /readyz when the API server stops
 * answering, a shutdown deadline that says it cut work short, a frozen leader that writes nothing
 * when it wakes up, real status codes in the metrics, --dry-run writing nothing, the CRD's
 * validation (CEL and size bounds), and a CRD applied after the operator started.
 * @module
 */
import { scriptRunCrd, SPEC_LIMITS } from "../src/desired/crd.ts";
import type { Job, ScriptRun, ScriptRunSpec } from "../src/types.ts";
import { assert, assertEquals } from "./harness/assert.ts";
import {
  applyRuns,
  installCrd,
  type LogLine,
  runManifest,
  startOperator,
} from "./harness/operator.ts";
import { startPauseProxy } from "./harness/pause_proxy.ts";
import {
  clusterTest,
  freePort,
  kubectl,
  kubectlJson,
  kubectlOk,
  NotYet,
  uniqueNamespace,
  waitFor,
} from "./harness/test_env.ts";

const NO_SANITIZE = { sanitizeResources: false, sanitizeOps: false };

/** The HTTP status of a probe; "not yet" while the operator's server does not listen. */
async function status(url: string): Promise<number> {
  const res = await fetch(url).catch((e) => {
    throw new NotYet(`${url}: ${e.message}`);
  });
  await res.body?.cancel();
  return res.status;
}

/** Requests the operator sent (debug "Sending request" lines) other than GETs. */
function writesSent(lines: LogLine[]): string[] {
  return lines.filter((l) => l.msg === "Sending request" && l.method !== "GET").map((l) =>
    `${l.method} ${l.url}`
  );
}

/**
 * The writes that passed the leadership gate at or after `since` (epoch ms). A write is logged in
 * the same synchronous step as its gate check, so the line's timestamp is the check's time; when
 * the line reaches the test does not matter (a process frozen while blocked writing its log to a
 * full pipe delivers that line only after it resumes).
 */
function writesGatedSince(lines: LogLine[], since: number): string[] {
  return lines.filter((l) =>
    l.msg === "Sending request" && l.method !== "GET" && Date.parse(String(l.ts)) >= since
  ).map((l) => `${l.ts} ${l.method} ${l.url} ${JSON.stringify(l.leader)}`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether a thread of process `pid` is blocked writing to a pipe (Linux: its wchan, `pipe_write` or `anon_pipe_write`). */
async function blockedWritingPipe(pid: number): Promise<boolean> {
  for await (const task of Deno.readDir(`/proc/${pid}/task`)) {
    const wchan = await Deno.readTextFile(`/proc/${pid}/task/${task.name}/wchan`).catch(() => "");
    if (/pipe_write$/.test(wchan)) return true;
  }
  return false;
}

clusterTest(
  "/readyz turns 503 within one request timeout when the API server stops answering mid-work, and 200 once it answers again",
  { needsJobs: true, ...NO_SANITIZE },
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("unreachable");
    await using proxy = await startPauseProxy();
    const health = freePort();
    const requestTimeoutS = 20;
    await using op = await startOperator([
      `--namespace=${ns.name}`,
      "--interval=1s",
      `--health-probe-bind-address=127.0.0.1:${health}`,
    ], {
      kubeconfig: proxy.kubeconfig,
      env: { SCRIPT_OPERATOR_REQUEST_TIMEOUT: `${requestTimeoutS}s` },
    });
    const readyz = `http://127.0.0.1:${health}/readyz`;
    await waitFor(async () => await status(readyz) === 200, { what: "/readyz 200" });
    // Work in progress: runs being created and running while the server goes silent.
    await applyRuns(
      ns.name,
      Array.from({ length: 20 }, (_, i) => `run-${i}`),
      { script: "task.sh", env: [{ name: "KWOK_DURATION", value: "300s" }] },
    );
    await op.waitForLog((l) => l.msg === "Creating Job", "a Job being created");
    proxy.pause();
    const pausedAt = performance.now();
    await waitFor(async () => await status(readyz) === 503, {
      what: "/readyz 503 while the API server does not answer",
      timeoutMs: 3 * requestTimeoutS * 1000,
      intervalMs: 100,
    });
    const seconds = (performance.now() - pausedAt) / 1000;
    console.log(`/readyz 503 after ${seconds.toFixed(1)}s of a silent API server`);
    // Any request without an answer turns it 503: within the connect timeout (5 s), well inside
    // one request timeout.
    assert(seconds <= 9, `/readyz took ${seconds.toFixed(1)}s to turn 503`);
    assertEquals(await status(`http://127.0.0.1:${health}/healthz`), 200);
    proxy.resume();
    await waitFor(async () => await status(readyz) === 200, {
      what: "/readyz 200 again once the API server answers",
      timeoutMs: 60_000,
    });
    assertEquals(await op.stop(), 0);
  },
);

clusterTest(
  "the shutdown deadline exits 1 and says so when it cuts a hung request short",
  NO_SANITIZE,
  async () => {
    await installCrd();
    await using proxy = await startPauseProxy();
    proxy.pause();
    const op = await startOperator(["--interval=1s"], {
      kubeconfig: proxy.kubeconfig,
      env: { SCRIPT_OPERATOR_REQUEST_TIMEOUT: "60s", SCRIPT_OPERATOR_CONNECT_TIMEOUT: "60s" },
    });
    await op.waitForLog((l) => l.msg === "Starting", "Starting");
    await sleep(1_000); // the start-up LIST is in flight and gets no answer
    const termAt = performance.now();
    const code = await op.stop();
    const seconds = (performance.now() - termAt) / 1000;
    assertEquals(code, 1, JSON.stringify(op.logs.slice(-3)));
    assert(seconds >= 8 && seconds < 12, `exited after ${seconds.toFixed(1)}s`);
    const line = op.logs.find((l) => l.msg.startsWith("Shutdown deadline reached"));
    assert(line?.level === "error", JSON.stringify(op.logs.slice(-3)));
    assert(line.msg.includes("cut short"), line.msg);
  },
);

clusterTest(
  "a frozen leader (SIGSTOP longer than the lease) sends no write after SIGCONT; the standby took over",
  { needsJobs: true, ...NO_SANITIZE },
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("frozen");
    const args = [
      `--namespace=${ns.name}`,
      "--interval=500ms",
      "--log-level=debug",
      "--leader-elect",
      `--leader-election-namespace=${ns.name}`,
    ];
    await using a = await startOperator(args);
    await a.waitForLog((l) => l.msg === "Became leader", "A to become leader");
    await using b = await startOperator(args);
    await b.waitForLog((l) => l.msg === "Waiting to become leader", "B to wait");
    // Freeze A in the middle of its work, at the worst moment: blocked in a log write because
    // its log reader lags (a full pipe), right after deciding a request.
    const resumeLogs = a.pauseLogs();
    let stopped = false;
    let resumed = false;
    try {
      await applyRuns(
        ns.name,
        Array.from({ length: 40 }, (_, i) => `first-${i}`),
        { script: "task.sh", env: [{ name: "KWOK_DURATION", value: "2s" }] },
      );
      await waitFor(() => blockedWritingPipe(a.pid), {
        what: "A to block writing its log to the full pipe",
        timeoutMs: 30_000,
        intervalMs: 50,
      });
      const stoppedAt = Date.now();
      Deno.kill(a.pid, "SIGSTOP");
      stopped = true;
      resumeLogs();
      // Drain what A wrote before it stopped: A is frozen, so its log only grows while the pipe
      // still holds lines it wrote earlier (a backlog under load can take longer than a moment).
      let drained = -1;
      while (a.logs.length !== drained) {
        drained = a.logs.length;
        await sleep(1_000);
      }
      const before = a.logs.length;
      assert(writesSent(a.logs).length > 0, "A logged no write before it was stopped");
      await b.waitForLog((l) => l.msg === "Became leader", "B to take over", 40_000);
      // Work A would do if it believed it still led.
      await applyRuns(
        ns.name,
        Array.from({ length: 10 }, (_, i) => `second-${i}`),
        { script: "task.sh" },
      );
      await sleep(1_000);
      Deno.kill(a.pid, "SIGCONT");
      resumed = true;
      await a.waitForLog((l) => l.msg === "Lost leadership", "A to notice it lost the lease");
      await sleep(5_000);
      const after = a.logs.slice(before);
      assertEquals(
        writesGatedSince(a.logs, stoppedAt),
        [],
        "A let a write through after it resumed",
      );
      // Every write says what its gate read: leading, and the monotonic clock before the deadline.
      // (The Lease's own writes are how leadership is won: guarded by resourceVersion, not gated.)
      const gated = a.logs.filter((l) =>
        l.msg === "Sending request" && l.method !== "GET" && !String(l.url).includes("/leases")
      );
      assert(gated.length > 0, "A logged no gated write");
      for (const l of gated) {
        const leader = l.leader as { leading: boolean; nowMs: number; deadlineMs: number };
        assert(leader?.leading && leader.nowMs < leader.deadlineMs, JSON.stringify(l));
      }
      assert(
        after.some((l) => l.msg === "Sending request" && String(l.url).includes("/leases/")),
        "A did not check the Lease after it resumed",
      );
      // B does the work.
      await waitFor(async () => {
        const runs = await kubectlJson<{ items: ScriptRun[] }>([
          "-n",
          ns.name,
          "get",
          "scriptruns",
        ]);
        return runs.items.every((r) => r.status?.phase === "Succeeded");
      }, { what: "B to finish every run", timeoutMs: 120_000, intervalMs: 1_000 });
    } finally {
      resumeLogs();
      if (stopped && !resumed) Deno.kill(a.pid, "SIGCONT");
    }
  },
);

clusterTest(
  "rest_client_requests_total counts real HTTP status codes, Lease requests included",
  NO_SANITIZE,
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("codes");
    const metrics = freePort();
    await using op = await startOperator([
      `--namespace=${ns.name}`,
      "--interval=1s",
      "--leader-elect",
      `--leader-election-namespace=${ns.name}`,
      `--metrics-bind-address=127.0.0.1:${metrics}`,
    ]);
    await op.waitForLog((l) => l.msg === "Became leader", "leadership");
    await applyRuns(ns.name, ["m"], { script: "task.sh" });
    const patterns = [
      // The first Lease GET finds none: a real 404, then the Lease is created (201).
      /rest_client_requests_total\{code="404",method="GET",host="127\.0\.0\.1:\d+"\} [1-9]/,
      /rest_client_requests_total\{code="201",method="POST",/,
      // Lease renewals.
      /rest_client_requests_total\{code="200",method="PUT",/,
      /rest_client_requests_total\{code="200",method="PATCH",/,
      /rest_client_requests_total\{code="200",method="GET",/,
    ];
    await waitFor(async () => {
      const res = await fetch(`http://127.0.0.1:${metrics}/metrics`);
      const text = await res.text();
      const missing = patterns.filter((p) => !p.test(text));
      if (missing.length > 0) throw new NotYet(`missing ${missing.join(", ")}`);
      return true;
    }, { what: "the request counters", timeoutMs: 30_000 });
    assertEquals(await op.stop(), 0);
  },
);

clusterTest("--dry-run logs the planned writes and writes nothing", NO_SANITIZE, async () => {
  await installCrd();
  await using ns = await uniqueNamespace("dry-run");
  await applyRuns(ns.name, ["dry"], { script: "task.sh" });
  const before = await kubectlJson<ScriptRun>(["-n", ns.name, "get", "scriptrun", "dry"]);
  const op = await startOperator([
    "--once",
    "--dry-run",
    "--log-level=debug",
    `--namespace=${ns.name}`,
  ]);
  assertEquals(await op.exited, 0, JSON.stringify(op.logs.slice(-3)));
  for (const msg of ["Creating ConfigMap", "Creating Job"]) {
    const line = op.logs.find((l) => l.msg === msg && l.name === "dry");
    assert(line?.dryRun === true, `no dry-run "${msg}" line: ${JSON.stringify(op.logs)}`);
  }
  assertEquals(writesSent(op.logs), [], "a write was sent");
  assert(op.logs.some((l) => l.msg === "Sending request"), "no request log at all");
  const managed = "app.kubernetes.io/managed-by=script-operator";
  for (const kind of ["configmaps", "jobs"]) {
    const list = await kubectlJson<{ items: unknown[] }>([
      "-n",
      ns.name,
      "get",
      kind,
      "-l",
      managed,
    ]);
    assertEquals(list.items, [], `${kind} were created`);
  }
  const after = await kubectlJson<ScriptRun>(["-n", ns.name, "get", "scriptrun", "dry"]);
  assertEquals(after.metadata.resourceVersion, before.metadata.resourceVersion);
  assertEquals(after.status, undefined);
  const events = await kubectlJson<{ items: unknown[] }>(["-n", ns.name, "get", "events"]);
  assertEquals(events.items, [], "events were created");
});

clusterTest(
  "the CRD refuses runAsNonRoot with runAsUser 0, with the CEL rule's message",
  NO_SANITIZE,
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("cel");
    const crd = scriptRunCrd() as {
      spec: { versions: { schema: { openAPIV3Schema: Record<string, unknown> } }[] };
    };
    const text = JSON.stringify(crd.spec.versions[0].schema.openAPIV3Schema);
    const rules = [...text.matchAll(/"rule":"([^"]*runAsNonRoot[^"]*)","message":"([^"]*)"/g)];
    assertEquals(rules.length, 1, "one CEL rule on runAsNonRoot");
    const message = rules[0][2];
    const res = await kubectl(["apply", "-f", "-"], {
      stdin: runManifest(ns.name, "root", {
        script: "task.sh",
        securityContext: { runAsNonRoot: true, runAsUser: 0 },
      }),
    });
    assertEquals(res.code, 1, res.stdout);
    assert(res.stderr.includes(message), res.stderr);
    assert(res.stderr.includes("spec.securityContext"), res.stderr);
    const fine = await kubectl(["apply", "-f", "-"], {
      stdin: runManifest(ns.name, "nonroot", {
        script: "task.sh",
        securityContext: { runAsNonRoot: true, runAsUser: 1000 },
      }),
    });
    assertEquals(fine.code, 0, fine.stderr);
  },
);

clusterTest(
  "args and env are bounded in the CRD: a 1 MiB '$' argument is refused naming the limit; just under the limits a Job is created",
  NO_SANITIZE,
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("sizes");
    // Server-side apply: a client-side apply would first hit the 256 KiB annotation limit.
    const apply = (name: string, spec: ScriptRunSpec) =>
      kubectl(["apply", "--server-side", "-f", "-"], {
        stdin: JSON.stringify({
          apiVersion: "script-operator.dev/v1alpha1",
          kind: "ScriptRun",
          metadata: { name, namespace: ns.name },
          spec,
        }),
      });
    const item = SPEC_LIMITS.maxItemBytes;
    const huge = await apply("huge", { script: "task.sh", args: ["$".repeat(1024 * 1024)] });
    assertEquals(huge.code, 1);
    assert(huge.stderr.includes(`may not be more than ${item} bytes`), huge.stderr);
    assert(huge.stderr.includes("spec.args[0]"), huge.stderr);
    // Each item within bounds, the total over it: the CEL rule names the total's limit.
    const count = SPEC_LIMITS.maxTotalBytes / item;
    const total = await apply("total", {
      script: "task.sh",
      args: Array.from({ length: count }, () => "$".repeat(item)),
      env: [{ name: "ONE", value: "x" }],
    });
    assertEquals(total.code, 1);
    assert(total.stderr.includes(`limit of ${SPEC_LIMITS.maxTotalBytes}`), total.stderr);
    // One character under the total: accepted, and the operator creates its Job ($ escaped).
    const args = Array.from({ length: count }, () => "$".repeat(item));
    args[0] = args[0].slice(1);
    const ok = await apply("under", {
      script: "task.sh",
      args,
      env: [{ name: "ONE", value: "x" }],
    });
    assertEquals(ok.code, 0, ok.stderr);
    const op = await startOperator(["--once", `--namespace=${ns.name}`]);
    assertEquals(await op.exited, 0, JSON.stringify(op.logs.slice(-3)));
    const jobs = await kubectlJson<{ items: Job[] }>(["-n", ns.name, "get", "jobs"]);
    assertEquals(jobs.items.length, 1);
    const container = jobs.items[0].spec!.template.spec.containers[0];
    assertEquals(container.args?.[1]?.length, 2 * item);
    const run = await kubectlJson<ScriptRun>(["-n", ns.name, "get", "scriptrun", "under"]);
    assertEquals(run.status?.jobName, jobs.items[0].metadata.name);
  },
);

clusterTest(
  "a CRD applied after the operator started is picked up; /readyz says 503 until then",
  NO_SANITIZE,
  async () => {
    await using ns = await uniqueNamespace("late-crd");
    await kubectlOk(["delete", "crd", "scriptruns.script-operator.dev", "--ignore-not-found"]);
    try {
      const health = freePort();
      await using op = await startOperator([
        `--namespace=${ns.name}`,
        "--interval=1s",
        `--health-probe-bind-address=127.0.0.1:${health}`,
      ]);
      await op.waitForLog(
        (l) => l.level === "error" && String(l.error ?? l.msg).includes("is not installed"),
        "the missing CRD error",
      );
      const readyz = `http://127.0.0.1:${health}/readyz`;
      assertEquals(await status(readyz), 503);
      await sleep(1_500);
      assertEquals(await status(readyz), 503, "ready without the CRD");
      await installCrd();
      await applyRuns(ns.name, ["late"], { script: "task.sh" });
      await waitFor(async () => await status(readyz) === 200, {
        what: "/readyz 200 after the CRD was applied",
        timeoutMs: 30_000,
      });
      const run = await waitFor(async () => {
        const r = await kubectlJson<ScriptRun>(["-n", ns.name, "get", "scriptrun", "late"]);
        return r.status?.jobName ? r : undefined;
      }, { what: "the run to get a Job", timeoutMs: 30_000 });
      await kubectlOk(["-n", ns.name, "get", "job", run.status!.jobName!]);
      assertEquals(op.logs.filter((l) => l.msg === "Starting").length, 1, "the operator restarted");
      assertEquals(await op.stop(), 0);
    } finally {
      await installCrd();
    }
  },
);
