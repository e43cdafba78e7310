/**
 * What users alert on: the operator's /metrics after real runs (finished runs by result, run
 * durations, the controller-runtime, workqueue, process and build-info series), and the alert
 * rules and Grafana dashboard of the Helm chart checked by Prometheus' own parsers
 * (tests/tools/promrules) against the metric names the operator really exposes, and the alerts
 * evaluated by Prometheus' PromQL engine on sample series.
 * @module
 */
import { assert, assertEquals } from "./harness/assert.ts";
import { applyRun, getRun, installCrd, startOperator } from "./harness/operator.ts";
import {
  clusterTest,
  freePort,
  jobsMode,
  NotYet,
  uniqueNamespace,
  waitFor,
} from "./harness/test_env.ts";
import { toolPath } from "./harness/tools.ts";
import { parse } from "yaml";
import { OPERATOR_VERSION } from "../src/version.ts";
import { Metrics } from "../src/runtime/metrics.ts";

const NO_SANITIZE = { sanitizeResources: false, sanitizeOps: false };
const FILES = new URL("../deploy/helm/script-operator/files/", import.meta.url);
const RULES = new URL("prometheus-rules.yaml", FILES).pathname;
const DASHBOARD = new URL("grafana-dashboard.json", FILES).pathname;

/** Runs the rule checker on an exposition text; its exit code and output. */
async function promrules(
  exposition: string,
  files: { rules?: string[]; dashboards?: string[] },
): Promise<{ code: number; output: string }> {
  const dir = await Deno.makeTempDir({ prefix: "promrules-" });
  try {
    const metricsFile = `${dir}/metrics.txt`;
    await Deno.writeTextFile(metricsFile, exposition);
    const args = ["-metrics", metricsFile];
    for (const f of files.rules ?? []) args.push("-rules", f);
    for (const f of files.dashboards ?? []) args.push("-dashboard", f);
    const out = await new Deno.Command(await toolPath("promrules"), {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decoder = new TextDecoder();
    return {
      code: out.code,
      output: decoder.decode(out.stdout) + decoder.decode(out.stderr),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function scrape(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  const text = await res.text();
  if (!res.ok) throw new Error(`GET /metrics: ${res.status} ${text}`);
  return text;
}

/** The value of the one sample line that starts with `series` (name and labels), if any. */
function value(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

clusterTest(
  "/metrics counts each finished run once by namespace, script and result, with durations, and serves the series the rules and dashboard use",
  { needsJobs: true, ...NO_SANITIZE },
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("metrics");
    const port = freePort();
    const args = [
      `--namespace=${ns.name}`,
      "--interval=1s",
      "--leader-elect",
      `--leader-election-namespace=${ns.name}`,
      `--metrics-bind-address=127.0.0.1:${port}`,
    ];
    const op = await startOperator(args);
    await op.waitForLog((l) => l.msg === "Became leader", "leadership");
    await applyRun(ns.name, "ok", {
      script: "task.sh",
      env: [{ name: "KWOK_DURATION", value: "2s" }],
    });
    // wait-for-endpoint.sh without a URL exits 2 for real; under kwok, KWOK_EXIT_CODE does so.
    await applyRun(ns.name, "broken", {
      script: "wait-for-endpoint.sh",
      env: jobsMode === "kwok" ? [{ name: "KWOK_EXIT_CODE", value: "2" }] : [],
    });
    await applyRun(ns.name, "typo", { script: "no-such-script.sh" });
    const expected = { ok: "Succeeded", broken: "Failed", typo: "Failed" };
    await waitFor(async () => {
      for (const [name, phase] of Object.entries(expected)) {
        const run = await getRun(ns.name, name);
        if (run.status?.phase !== phase) {
          throw new NotYet(`${name} is ${run.status?.phase ?? "new"}, not yet ${phase}`);
        }
      }
      return true;
    }, { what: "the three runs to end", timeoutMs: 90_000 });

    const n = `namespace="${ns.name}"`;
    const finished = {
      [`script_operator_runs_finished_total{${n},script="task.sh",result="succeeded"}`]: 1,
      [`script_operator_runs_finished_total{${n},script="task.sh",result="failed"}`]: 0,
      [`script_operator_runs_finished_total{${n},script="wait-for-endpoint.sh",result="succeeded"}`]:
        0,
      [`script_operator_runs_finished_total{${n},script="wait-for-endpoint.sh",result="failed"}`]:
        1,
      [`script_operator_runs_finished_total{${n},script="<unknown>",result="failed"}`]: 1,
    };
    const text = await waitFor(async () => {
      const text = await scrape(port);
      const wrong = Object.entries(finished).filter(([s, v]) => value(text, s) !== v);
      if (wrong.length > 0) throw new NotYet(`not yet: ${wrong.map(([s]) => s).join(", ")}`);
      return text;
    }, { what: "the finished-run counters" });
    // The status was written once per outcome: no other series of the counter.
    const counted = text.split("\n").filter((l) =>
      l.startsWith("script_operator_runs_finished_total{")
    );
    assertEquals(counted.length, Object.keys(finished).length, counted.join("\n"));
    // One duration per run that had a Job; none for the script that does not exist.
    assertEquals(value(text, 'script_operator_run_duration_seconds_count{script="task.sh"}'), 1);
    assertEquals(
      value(text, 'script_operator_run_duration_seconds_count{script="wait-for-endpoint.sh"}'),
      1,
    );
    assert(!text.includes('script_operator_run_duration_seconds_count{script="<unknown>"}'), text);
    const q = '{name="scriptrun",controller="scriptrun"}';
    for (
      const pattern of [
        /^controller_runtime_reconcile_total\{controller="scriptrun",result="success"\} [1-9]/m,
        /^controller_runtime_reconcile_errors_total\{controller="scriptrun"\} \d+$/m,
        /^controller_runtime_reconcile_time_seconds_count\{controller="scriptrun"\} [1-9]/m,
        /^controller_runtime_max_concurrent_reconciles\{controller="scriptrun"\} 8$/m,
        /^controller_runtime_active_workers\{controller="scriptrun"\} \d+$/m,
        new RegExp(`^workqueue_adds_total${escape(q)} [1-9]`, "m"),
        new RegExp(`^workqueue_depth${escape(q)} \\d+$`, "m"),
        new RegExp(`^workqueue_queue_duration_seconds_count${escape(q)} [1-9]`, "m"),
        new RegExp(`^workqueue_work_duration_seconds_count${escape(q)} [1-9]`, "m"),
        new RegExp(`^workqueue_retries_total${escape(q)} \\d+$`, "m"),
        new RegExp(`^workqueue_unfinished_work_seconds${escape(q)} [\\d.e-]+$`, "m"),
        new RegExp(`^workqueue_longest_running_processor_seconds${escape(q)} [\\d.e-]+$`, "m"),
        /^leader_election_master_status\{name="script-operator-leader"\} 1$/m,
        /^rest_client_requests_total\{code="200",method="PATCH",host="[^"]+"\} [1-9]/m,
        /^process_cpu_seconds_total \d+(\.\d+)?$/m,
        /^process_resident_memory_bytes [1-9]\d{6,}$/m,
        /^process_start_time_seconds 1\d{9}(\.\d+)?$/m,
        /^script_operator_ready 1$/m,
        new RegExp(
          `^script_operator_build_info\\{version="${
            escape(OPERATOR_VERSION)
          }",deno="${Deno.version.deno}",v8="[^"]+",typescript="[^"]+"\\} 1$`,
          "m",
        ),
      ]
    ) assert(pattern.test(text), `${pattern} not in /metrics:\n${text}`);

    // The chart's alerts and dashboard parse with Prometheus' own parsers and select only metrics
    // that this /metrics declares.
    const checked = await promrules(text, { rules: [RULES], dashboards: [DASHBOARD] });
    assertEquals(checked.code, 0, checked.output);
    assert(/^ok: \d+ expressions/.test(checked.output), checked.output);
    assertEquals(await op.stop(), 0);

    // A restarted operator reads the runs already ended: it counts none of them again.
    await using again = await startOperator(args);
    await again.waitForLog((l) => l.msg === "Became leader", "leadership after the restart");
    const after = await waitFor(async () => {
      const text = await scrape(port);
      const reconciled = value(
        text,
        'controller_runtime_reconcile_total{controller="scriptrun",result="success"}',
      ) ?? 0;
      const ended = (value(text, 'script_operator_scriptruns{phase="Succeeded"}') ?? 0) +
        (value(text, 'script_operator_scriptruns{phase="Failed"}') ?? 0);
      if (reconciled < 3 || ended !== 3) {
        throw new NotYet(`${reconciled} reconciles, ${ended} ended runs seen`);
      }
      return text;
    }, { what: "the restarted operator to reconcile the three runs" });
    const recounted = after.split("\n").filter((l) =>
      l.startsWith("script_operator_runs_finished_total{") && !l.endsWith(" 0")
    );
    assertEquals(recounted, []);
    assertEquals(again.otherOutput, []);
    assertEquals(await again.stop(), 0);
  },
);

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

Deno.test("promrules rejects a rule or panel that does not parse or selects a metric the operator lacks", async () => {
  const exposition = new Metrics("k:6443").registry.metrics();
  const dir = await Deno.makeTempDir({ prefix: "promrules-bad-" });
  try {
    const rules = `${dir}/rules.yaml`;
    await Deno.writeTextFile(
      rules,
      `groups:
  - name: g
    rules:
      - alert: UnknownMetric
        expr: rate(script_operator_runs_total[5m]) > 0
        labels: {severity: warning}
        annotations: {summary: s, description: d}
      - alert: Unparsable
        expr: sum(rate(script_operator_ready[5m]) >
        labels: {severity: warning}
        annotations: {summary: s, description: d}
      - alert: NoSeverity
        expr: script_operator_ready == 0
        annotations: {summary: s, description: d}
`,
    );
    const dashboard = `${dir}/dashboard.json`;
    await Deno.writeTextFile(
      dashboard,
      JSON.stringify({
        panels: [{
          title: "Queue",
          targets: [{ expr: 'workqueue_depthh{job=~"$job"}' }],
        }],
      }),
    );
    const out = await promrules(exposition, { rules: [rules], dashboards: [dashboard] });
    assertEquals(out.code, 1, out.output);
    for (
      const problem of [
        'rule "UnknownMetric": metric script_operator_runs_total is not exposed',
        'rule "Unparsable": 1:38: parse error: unclosed left parenthesis',
        'rule "NoSeverity": no severity label',
        'panel "Queue": metric workqueue_depthh is not exposed',
      ]
    ) assert(out.output.includes(problem), `"${problem}" not in:\n${out.output}`);
    // The real files pass against the same exposition (a histogram without observations yet
    // still declares its _bucket, _sum and _count).
    const real = await promrules(exposition, { rules: [RULES], dashboards: [DASHBOARD] });
    assertEquals(real.code, 0, real.output);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the alerts fire when they should and only then (Prometheus' PromQL engine on sample series)", async () => {
  // tests/tools/promrules/rules_test.go reads each alert from the rules file and evaluates it
  // with promqltest, the engine Prometheus tests PromQL with.
  const out = await new Deno.Command("go", {
    args: ["test", "./..."],
    cwd: new URL("tools/promrules/", import.meta.url).pathname,
    env: { GOFLAGS: "-mod=mod", CGO_ENABLED: "0" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  const output = decoder.decode(out.stdout) + decoder.decode(out.stderr);
  assertEquals(out.code, 0, output);
  assert(/^ok\s+script-operator\.dev\/tests\/tools\/promrules/m.test(output), output);
});

interface Panel {
  id: number;
  title: string;
  type: string;
  datasource: { type: string; uid: string };
  gridPos: { h: number; w: number; x: number; y: number };
  targets: { refId: string; expr: string; datasource: { uid: string } }[];
}

Deno.test("grafana-dashboard.json: every panel queries the chosen Prometheus data source, without overlaps", async () => {
  const dashboard = JSON.parse(await Deno.readTextFile(DASHBOARD)) as {
    uid: string;
    title: string;
    templating: { list: { name: string; type: string; query: unknown }[] };
    panels: Panel[];
  };
  assertEquals(dashboard.uid, "script-operator");
  const variables = dashboard.templating.list.map((v) => [v.name, v.type]);
  assertEquals(variables, [["datasource", "datasource"], ["job", "query"]]);
  assert(dashboard.panels.length >= 8, dashboard.panels.length);
  const ids = new Set(dashboard.panels.map((p) => p.id));
  assertEquals(ids.size, dashboard.panels.length, "panel ids are unique");
  const cells = new Set<string>();
  for (const panel of dashboard.panels) {
    assert(panel.title, `panel ${panel.id} has no title`);
    assertEquals(panel.datasource, { type: "prometheus", uid: "${datasource}" }, panel.title);
    assert(panel.targets.length > 0, `${panel.title}: no query`);
    assertEquals(
      new Set(panel.targets.map((t) => t.refId)).size,
      panel.targets.length,
      `${panel.title}: refIds are unique`,
    );
    for (const t of panel.targets) {
      assertEquals(t.datasource.uid, "${datasource}", panel.title);
      // Every query is scoped to the operator's scrape job(s).
      assert(t.expr.includes('job=~"$job"'), `${panel.title}: ${t.expr}`);
    }
    const { h, w, x, y } = panel.gridPos;
    assert(x >= 0 && w > 0 && x + w <= 24, `${panel.title}: outside the 24-column grid`);
    for (let row = y; row < y + h; row++) {
      for (let col = x; col < x + w; col++) {
        const cell = `${row},${col}`;
        assert(!cells.has(cell), `${panel.title} overlaps another panel at ${cell}`);
        cells.add(cell);
      }
    }
  }
});

Deno.test("docs/operations.md names every metric the operator serves, and no other", async () => {
  const declared = new Set(
    [...new Metrics("k:6443").registry.metrics().matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]),
  );
  const docs = await Deno.readTextFile(new URL("../docs/operations.md", import.meta.url));
  const section = docs.slice(docs.indexOf("### Metrics"), docs.indexOf("### Alerts and dashboard"));
  const tableRows = section.split("\n").filter((l) => l.startsWith("| `"));
  const documented = new Set(
    tableRows.flatMap((row) =>
      [...row.split(" | ")[0].matchAll(/`([a-z_:]+)[`{]/g)].map((m) => m[1])
    ),
  );
  assertEquals([...declared].filter((m) => !documented.has(m)), [], "served but not documented");
  assertEquals([...documented].filter((m) => !declared.has(m)), [], "documented but not served");
  // Every alert of the rule file is named where the docs list them.
  const rules = parse(await Deno.readTextFile(RULES)) as {
    groups: { rules: { alert?: string }[] }[];
  };
  const alerts = rules.groups.flatMap((g) => g.rules.map((r) => r.alert ?? ""));
  const listed = docs.slice(docs.indexOf("### Alerts and dashboard"), docs.indexOf("## Logs"));
  assertEquals(alerts.filter((a) => !listed.includes(`\`${a}\``)), [], "alerts not in the docs");
});
