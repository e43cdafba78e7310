/**
 * The Helm chart (deploy/helm/script-operator) with the real Helm CLI, built from Go modules
 * (tests/tools/helm pins the version).
 *
 * Without a cluster: `helm lint --strict` is clean for every values set of the matrix, each
 * render holds what its values ask for (a Role per listed namespace or a ClusterRole, the policy
 * flags and the admission policy's constants from the same values, no fixed UID when the
 * platform assigns one, the monitoring objects), bad values fail with a message naming the
 * value, and crds/ is deploy/crd.yaml.
 *
 * Against the test cluster: every render of the matrix passes `kubectl apply --dry-run=server`
 * (the ServiceMonitor and PrometheusRule kinds come from minimal CRDs installed by the test:
 * the server checks their metadata only, and their specs are checked here, client-side), and
 * `helm install` then `helm uninstall` on the control plane. No image can be built or pulled
 * here, so the chart's Deployment is installed with replicas: 0 and the operator runs as a local
 * process in its place: the image binary's permission flags, the Deployment's own args, and the
 * chart's ServiceAccount token and CA in a ServiceAccount folder, as a pod would see them. What
 * runs the ScriptRun is thus the chart's RBAC, admission policy and flags. `helm upgrade` with one
 * more allowed image then changes both the flags and the admission policy.
 * @module
 */
import { parse } from "yaml";
import { assert, assertEquals } from "./harness/assert.ts";
import { CHART, helm, helmOk, helmTemplate, valuesFile } from "./harness/helm.ts";
import {
  type K8sObject,
  objectKey,
  only,
  parseManifests,
  readText,
  ROOT,
} from "./harness/manifests.ts";
import { startOperator } from "./harness/operator.ts";
import {
  clusterTest,
  kubectl,
  kubectlJson,
  kubectlOk,
  testKubeconfig,
  uniqueNamespace,
  waitFor,
} from "./harness/test_env.ts";
import { parseCli } from "../src/runtime/cli.ts";
import { SERVICE_ACCOUNT_DIR } from "../src/api/kubeconfig.ts";
import { IN_CLUSTER_FLAGS } from "../deploy/permissions.ts";

const NO_SANITIZE = { sanitizeResources: false, sanitizeOps: false };
const CRD_NAME = "scriptruns.script-operator.dev";

/** Values sets the chart is linted, rendered and dry-run with. */
function matrix(namespaces: string[]): Record<string, Record<string, unknown>> {
  return {
    default: {},
    "listed namespaces": { namespaces },
    "cluster-wide": { clusterWide: true },
    monitoring: {
      metrics: {
        serviceMonitor: { enabled: true, labels: { release: "prometheus" } },
        prometheusRule: { enabled: true },
        grafanaDashboard: { enabled: true },
      },
    },
    "platform assigns uid": { platformAssignsUid: true },
    "custom policy, no leader election": {
      policy: CUSTOM_POLICY,
      leaderElection: { enabled: false },
      admissionPolicy: { name: "scriptruns-custom.script-operator.dev" },
    },
  };
}

const CUSTOM_POLICY = {
  allowedImages: ["busybox:1.36", "registry.example/tools/*"],
  allowedServiceAccounts: ["runner", "*"],
  allowedSecrets: ["db-password", "shared-*"],
  allowPrivilegedScripts: true,
  maxCpu: "2",
  maxMemory: "4Gi",
};

function deploymentOf(objects: K8sObject[]): K8sObject {
  const [d] = only(objects, "Deployment");
  assert(d, "no Deployment rendered");
  return d;
}

function argsOf(objects: K8sObject[]): string[] {
  return deploymentOf(objects).spec.template.spec.containers[0].args;
}

/** The policy constants of the rendered admission policy, read as JSON. */
function celConstants(objects: K8sObject[]) {
  const [policy] = only(objects, "ValidatingAdmissionPolicy");
  assert(policy, "no ValidatingAdmissionPolicy rendered");
  const variable = (name: string) => {
    const v = policy.spec.variables.find((x: { name: string }) => x.name === name);
    assert(v, `variable ${name} missing`);
    // CEL list, string and bool literals read as JSON once the quotes are swapped.
    return JSON.parse(v.expression.replaceAll("'", '"'));
  };
  return {
    allowedImages: variable("allowedImages"),
    allowedServiceAccounts: variable("allowedServiceAccounts"),
    allowedSecrets: variable("allowedSecrets"),
    allowPrivileged: variable("allowPrivilegedScripts"),
    maxCpu: variable("maxCpu"),
    maxMemory: variable("maxMemory"),
  };
}

/**
 * A copy of the chart with files/prometheus-rules.yaml and files/grafana-dashboard.json: the
 * chart's own when it has them, else small stand-ins (so the templates are exercised either
 * way). `withFiles: false` removes files/ instead.
 */
async function chartCopy(withFiles: boolean): Promise<{ dir: string } & AsyncDisposable> {
  const parent = await Deno.makeTempDir({ prefix: "script-operator-chart-" });
  const dir = `${parent}/script-operator`;
  const cp = await new Deno.Command("cp", { args: ["-r", CHART, dir] }).output();
  assert(cp.success, new TextDecoder().decode(cp.stderr));
  await Deno.remove(`${dir}/files`, { recursive: true }).catch(() => {});
  if (withFiles) {
    await Deno.mkdir(`${dir}/files`);
    const own = (name: string) => Deno.readTextFile(`${CHART}/files/${name}`).catch(() => null);
    await Deno.writeTextFile(
      `${dir}/files/prometheus-rules.yaml`,
      await own("prometheus-rules.yaml") ??
        "groups:\n  - name: script-operator\n    rules:\n      - alert: ScriptOperatorDown\n" +
          '        expr: up{job="script-operator-metrics"} == 0\n        for: 5m\n' +
          '        annotations:\n          summary: "{{ $labels.instance }} is down"\n',
    );
    await Deno.writeTextFile(
      `${dir}/files/grafana-dashboard.json`,
      await own("grafana-dashboard.json") ?? '{"title": "script-operator", "panels": []}\n',
    );
  }
  return {
    dir,
    [Symbol.asyncDispose]: () => Deno.remove(parent, { recursive: true }),
  };
}

Deno.test("helm: crds/ is deploy/crd.yaml; appVersion and the image tag are deno.json's version", async () => {
  assertEquals(
    await readText("deploy/helm/script-operator/crds/scriptruns.yaml"),
    await readText("deploy/crd.yaml"),
    "crds/scriptruns.yaml differs from deploy/crd.yaml: run `deno task gen`",
  );
  const chart = parse(await readText("deploy/helm/script-operator/Chart.yaml"));
  const { version } = JSON.parse(await readText("deno.json"));
  assertEquals(chart.appVersion, version);
  const c = deploymentOf(await helmTemplate()).spec.template.spec.containers[0];
  assertEquals(c.image, `ghcr.io/script-operator/script-operator:${version}`);
});

Deno.test("helm: lint --strict is clean for every values set", async () => {
  for (const [name, values] of Object.entries(matrix(["team-a", "team-b"]))) {
    await using chart = await chartCopy(true);
    await using file = await valuesFile(values);
    const res = await helm(["lint", "--strict", chart.dir, "-f", file.path]);
    assertEquals(res.code, 0, `${name}: ${res.stdout}${res.stderr}`);
    assert(!/\[(WARNING|ERROR)\]/.test(res.stdout), `${name}: ${res.stdout}`);
  }
});

Deno.test("helm: the Deployment's policy flags and the admission policy's constants come from one value", async () => {
  for (const policy of [{}, CUSTOM_POLICY]) {
    const objects = await helmTemplate({ values: { policy } });
    const cli = parseCli(argsOf(objects));
    assertEquals(cli.policy, celConstants(objects));
    if (policy === CUSTOM_POLICY) {
      assertEquals(cli.policy, {
        allowedImages: CUSTOM_POLICY.allowedImages,
        allowedServiceAccounts: CUSTOM_POLICY.allowedServiceAccounts,
        allowedSecrets: CUSTOM_POLICY.allowedSecrets,
        allowPrivileged: true,
        maxCpu: "2",
        maxMemory: "4Gi",
      });
    }
  }
});

Deno.test("helm: a Role per listed namespace, or one ClusterRole; the policy binds where it serves", async () => {
  const listed = await helmTemplate({
    release: "ops",
    namespace: "tools",
    values: { namespaces: ["team-a", "team-b", "team-a"] },
  });
  assertEquals(only(listed, "ClusterRoleBinding"), []);
  const served = only(listed, "Role").filter((r) => r.metadata.name === "ops-script-operator");
  assertEquals(served.map((r) => r.metadata.namespace), ["team-a", "team-b"]);
  for (const b of only(listed, "RoleBinding")) {
    assertEquals(b.subjects, [{
      kind: "ServiceAccount",
      name: "ops-script-operator",
      namespace: "tools",
    }]);
  }
  const lease = only(listed, "Role").find((r) => r.metadata.name.endsWith("-leader-election"));
  assertEquals(lease?.metadata.namespace, "tools");
  assertEquals(parseCli(argsOf(listed)).namespaces, ["team-a", "team-b"]);
  // Each release its own Lease (the default release name keeps the operator's default id).
  assertEquals(parseCli(argsOf(listed)).leaderElectionId, "ops-script-operator-leader");
  assertEquals(parseCli(argsOf(await helmTemplate())).leaderElectionId, "script-operator-leader");
  const [binding] = only(listed, "ValidatingAdmissionPolicyBinding");
  assertEquals(binding.spec.matchResources.namespaceSelector.matchExpressions, [
    { key: "kubernetes.io/metadata.name", operator: "In", values: ["team-a", "team-b"] },
  ]);
  // The admission policy spares the operator's own ServiceAccount from '*' by its real name.
  const [policy] = only(listed, "ValidatingAdmissionPolicy");
  assert(JSON.stringify(policy.spec.validations).includes("'ops-script-operator'"));

  for (const values of [{ clusterWide: true }, { namespaces: [] }]) {
    const wide = await helmTemplate({ values });
    assertEquals(only(wide, "ClusterRole").map((r) => r.metadata.name).sort(), [
      "script-operator",
      "script-operator-edit",
      "script-operator-view",
    ]);
    assertEquals(only(wide, "Role").map((r) => r.metadata.name), [
      "script-operator-leader-election",
    ]);
    assertEquals(parseCli(argsOf(wide)).namespaces, []);
    assertEquals(only(wide, "ValidatingAdmissionPolicyBinding")[0].spec.matchResources, undefined);
  }
});

Deno.test("helm: aggregated roles give edit/admin users ScriptRuns and view users read access", async () => {
  const objects = await helmTemplate();
  const role = (suffix: string) =>
    only(objects, "ClusterRole").find((r) => r.metadata.name === `script-operator-${suffix}`)!;
  const labels = (suffix: string) =>
    Object.entries(role(suffix).metadata.labels ?? {}).filter(([k]) => k.includes("aggregate-to"));
  assertEquals(labels("edit"), [
    ["rbac.authorization.k8s.io/aggregate-to-edit", "true"],
    ["rbac.authorization.k8s.io/aggregate-to-admin", "true"],
  ]);
  assertEquals(labels("view"), [["rbac.authorization.k8s.io/aggregate-to-view", "true"]]);
  assert(role("edit").rules![0].verbs.includes("create"));
  assert(
    !role("view").rules!.some((r) => r.verbs.some((v) => !["get", "list", "watch"].includes(v))),
  );
  const off = await helmTemplate({ values: { rbac: { aggregateToDefaultRoles: false } } });
  assertEquals(only(off, "ClusterRole"), []);
});

Deno.test("helm: platformAssignsUid passes --platform-assigns-uid and sets no UID or GID", async () => {
  const objects = await helmTemplate({ values: { platformAssignsUid: true } });
  const pod = deploymentOf(objects).spec.template.spec;
  assertEquals(parseCli(argsOf(objects)).platformAssignsUid, true);
  for (const sc of [pod.securityContext, pod.containers[0].securityContext]) {
    assertEquals([sc.runAsUser, sc.runAsGroup, sc.runAsNonRoot], [undefined, undefined, true]);
  }
  const fixed = deploymentOf(await helmTemplate()).spec.template.spec;
  assertEquals(fixed.securityContext.runAsUser, 65532);
  assertEquals(parseCli(argsOf(await helmTemplate())).platformAssignsUid, false);
});

Deno.test("helm: monitoring renders a ServiceMonitor on the metrics Service, the rule file's groups and the dashboard", async () => {
  const values = matrix([]).monitoring;
  await using chart = await chartCopy(true);
  const objects = await helmTemplate({ chart: chart.dir, values });
  const [service] = only(objects, "Service");
  const [monitor] = only(objects, "ServiceMonitor");
  assertEquals(monitor.apiVersion, "monitoring.coreos.com/v1");
  for (const [k, v] of Object.entries(monitor.spec.selector.matchLabels)) {
    assertEquals(service.metadata.labels?.[k], v, `the ServiceMonitor selects ${k}=${v}`);
  }
  assertEquals(monitor.metadata.labels?.release, "prometheus");
  assertEquals(
    monitor.spec.endpoints.map((
      e: { port: string; honorLabels: boolean },
    ) => [e.port, e.honorLabels]),
    [["metrics", true]],
  );
  assertEquals(service.spec.ports.map((p: { name: string }) => p.name), ["metrics"]);
  // The metrics Service reaches the Deployment's pods on the port the operator serves /metrics on.
  const d = deploymentOf(objects);
  for (const [k, v] of Object.entries(service.spec.selector)) {
    assertEquals(d.spec.template.metadata.labels[k], v, `the Service selects ${k}=${v}`);
  }
  const port = d.spec.template.spec.containers[0].ports.find((p: { name: string }) =>
    p.name === service.spec.ports[0].targetPort
  );
  assert(port, "the Service's targetPort names no container port");
  assertEquals(`:${port.containerPort}`, parseCli(argsOf(objects)).metricsBindAddress);
  const [rule] = only(objects, "PrometheusRule");
  const file = parse(await Deno.readTextFile(`${chart.dir}/files/prometheus-rules.yaml`));
  assertEquals(rule.spec.groups, file.groups);
  const [dashboard] = only(objects, "ConfigMap");
  assertEquals(dashboard.metadata.labels?.grafana_dashboard, "1");
  assertEquals(
    JSON.parse(Object.values(dashboard.data as Record<string, string>)[0]),
    JSON.parse(await Deno.readTextFile(`${chart.dir}/files/grafana-dashboard.json`)),
  );
  // Without the files, the same values render neither (and nothing fails).
  await using bare = await chartCopy(false);
  const kinds = (await helmTemplate({ chart: bare.dir, values })).map((o) => o.kind);
  assert(!kinds.includes("PrometheusRule") && !kinds.includes("ConfigMap"), kinds.join(" "));
  // Off by default: only the Service.
  const byDefault = (await helmTemplate({ chart: chart.dir })).map((o) => o.kind);
  assert(byDefault.includes("Service"));
  for (const k of ["ServiceMonitor", "PrometheusRule", "ConfigMap"]) {
    assert(!byDefault.includes(k), k);
  }
});

Deno.test("helm: bad values fail with a message naming the value and the fix", async () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ policy: { allowedImages: [] } }, "policy.allowedImages is empty"],
    [{ policy: { allowedImages: ["busybox:1.36'"] } }, "policy.allowedImages"],
    [{ policy: { maxCpu: "1'" } }, "policy.maxCpu"],
    [{ replicas: 2, leaderElection: { enabled: false } }, "leaderElection.enabled"],
    [{ logFormat: "yaml" }, "logFormat"],
    // values.schema.json: a misspelt value or a wrong type is refused, not ignored.
    [{ namespace: ["team-a"] }, "additional properties 'namespace' not allowed"],
    [{ namespaces: "team-a" }, "/namespaces"],
    [{ namespaces: ["Team_A"] }, "/namespaces/0"],
  ];
  for (const [values, message] of cases) {
    await using file = await valuesFile(values);
    const res = await helm(["template", "x", CHART, "-f", file.path]);
    assert(res.code !== 0, `${JSON.stringify(values)} rendered`);
    assert(res.stderr.includes(message), `${JSON.stringify(values)}: ${res.stderr}`);
  }
});

// ---------------------------------------------------------------------------------------------
// Against the test cluster.

/** `Kind.version.group` (or `Kind` for the core group), what `kubectl get` takes. */
function resourceOf(o: K8sObject): string {
  const [group, version] = o.apiVersion.includes("/")
    ? o.apiVersion.split("/")
    : ["", o.apiVersion];
  return group ? `${o.kind}.${version}.${group}` : o.kind;
}

/** Minimal CRDs for the Prometheus Operator's kinds: the server knows the kind, not its schema. */
function monitoringCrd(kind: string, plural: string): Record<string, unknown> {
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${plural}.monitoring.coreos.com` },
    spec: {
      group: "monitoring.coreos.com",
      scope: "Namespaced",
      names: { kind, plural, singular: kind.toLowerCase(), listKind: `${kind}List` },
      versions: [{
        name: "v1",
        served: true,
        storage: true,
        schema: {
          openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true },
        },
      }],
    },
  };
}

clusterTest(
  "helm: every render of the matrix passes a server-side dry-run",
  { ...NO_SANITIZE },
  async () => {
    await using release = await uniqueNamespace("helm-dry");
    await using a = await uniqueNamespace("helm-a");
    await using b = await uniqueNamespace("helm-b");
    const added: string[] = [];
    try {
      for (
        const [kind, plural] of [["ServiceMonitor", "servicemonitors"], [
          "PrometheusRule",
          "prometheusrules",
        ]]
      ) {
        const crd = monitoringCrd(kind, plural);
        const name = (crd.metadata as { name: string }).name;
        if ((await kubectl(["get", "crd", name])).code !== 0) {
          await kubectlOk(["create", "-f", "-"], { stdin: JSON.stringify(crd) });
          added.push(name);
        }
        await kubectlOk(["wait", "--for=condition=Established", `crd/${name}`, "--timeout=30s"]);
      }
      await kubectlOk([
        "label",
        "namespace",
        release.name,
        "pod-security.kubernetes.io/enforce=restricted",
      ]);
      await using chart = await chartCopy(true);
      for (const [name, values] of Object.entries(matrix([a.name, b.name]))) {
        const objects = await helmTemplate({
          chart: chart.dir,
          release: "dry",
          namespace: release.name,
          values,
        });
        const res = await kubectl(["apply", "--dry-run=server", "-f", "-"], {
          stdin: JSON.stringify({ apiVersion: "v1", kind: "List", items: objects }),
        });
        assertEquals(res.code, 0, `${name}: ${res.stderr}`);
        // Pod Security "restricted" (labelled above) admits a pod of the Deployment's template.
        // (The ServiceAccount admission plugin wants the pod's ServiceAccount to exist.)
        await kubectlOk(["apply", "-f", "-"], {
          stdin: JSON.stringify(only(objects, "ServiceAccount")[0]),
        });
        const pod = {
          apiVersion: "v1",
          kind: "Pod",
          metadata: { name: "restricted-check", namespace: release.name },
          spec: deploymentOf(objects).spec.template.spec,
        };
        const admitted = await kubectl(["create", "--dry-run=server", "-f", "-"], {
          stdin: JSON.stringify(pod),
        });
        assertEquals(admitted.code, 0, `${name}: restricted Pod Security: ${admitted.stderr}`);
      }
    } finally {
      for (const name of added) await kubectl(["delete", "crd", name, "--wait=false"]);
    }
  },
);

clusterTest(
  "helm: install, a ScriptRun succeeds with the chart's RBAC, policy and flags; upgrade; uninstall keeps only the CRD",
  { needsJobs: true, needsControllers: true, ...NO_SANITIZE },
  async () => {
    await using opNs = await uniqueNamespace("helm-operator");
    await using work = await uniqueNamespace("helm-work");
    const release = `so-${opNs.name.slice(-8)}`;
    const fullname = `${release}-script-operator`;
    const policyName = `scriptruns-${release}.script-operator.dev`;
    await using values = await valuesFile({
      namespaces: [work.name],
      // No image here: the operator runs as a local process instead (see the module doc).
      replicas: 0,
      admissionPolicy: { name: policyName },
    });
    // Helm installs crds/ only when the CRD is absent; take it away so the install must create
    // it (test files run one at a time, and each installs the CRD it needs).
    await kubectlOk(["delete", "crd", CRD_NAME, "--ignore-not-found", "--timeout=120s"]);
    const helmCluster = ["--kubeconfig", testKubeconfig!, "-n", opNs.name];
    let installed = false;
    try {
      await helmOk(["install", release, CHART, ...helmCluster, "-f", values.path]);
      installed = true;
      await kubectlOk(["wait", "--for=condition=Established", `crd/${CRD_NAME}`, "--timeout=30s"]);
      let objects = parseManifests(await helmOk(["get", "manifest", release, ...helmCluster]));
      const deployment = deploymentOf(objects);
      assertEquals(deployment.spec.replicas, 0);

      // The operator's process stands in for the pod: the image binary's flags, the Deployment's
      // args (ports moved off the fixed ones), and the chart ServiceAccount's identity.
      const cluster = await kubectlJson<{
        clusters: { cluster: { server: string; "certificate-authority-data": string } }[];
      }>(["config", "view", "--raw", "--minify"]);
      const server = new URL(cluster.clusters[0].cluster.server);
      const prefix = await Deno.makeTempDir({ prefix: "script-operator-sa-" });
      try {
        const dir = `${prefix}${SERVICE_ACCOUNT_DIR}`;
        await Deno.mkdir(dir, { recursive: true });
        const sa = deployment.spec.template.spec.serviceAccountName;
        assertEquals(sa, fullname);
        const token = (await kubectlOk(["-n", opNs.name, "create", "token", sa, "--duration=1h"]))
          .trim();
        await Deno.writeTextFile(`${dir}/token`, token);
        await Deno.writeFile(
          `${dir}/ca.crt`,
          Uint8Array.from(
            atob(cluster.clusters[0].cluster["certificate-authority-data"]),
            (c) => c.charCodeAt(0),
          ),
        );
        await Deno.writeTextFile(`${dir}/namespace`, opNs.name);
        const scriptsDir = `${ROOT}scripts`;
        const flags = IN_CLUSTER_FLAGS.map((f) =>
          f.startsWith("--allow-read=")
            ? `--allow-read=${dir},${scriptsDir}`
            : f.startsWith("--allow-env=")
            ? `${f},SCRIPT_OPERATOR_SERVICEACCOUNT_PREFIX`
            : f
        );
        const args = (deployment.spec.template.spec.containers[0].args as string[]).filter((a) =>
          !a.startsWith("--health-probe-bind-address=") && !a.startsWith("--metrics-bind-address=")
        );
        assert(
          args.includes(`--namespace=${work.name}`) && args.includes("--leader-elect"),
          args.join(" "),
        );
        await using op = await startOperator(args, {
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
        // Leader election in the release namespace: the chart's leader-election Role.
        await op.waitForLog((l) => l.msg === "Became leader", "Became leader");

        // The chart's admission policy refuses an image its values do not allow, naming itself.
        const refused = await waitFor(async () => {
          const res = await kubectl(["apply", "--dry-run=server", "-f", "-"], {
            stdin: JSON.stringify({
              apiVersion: "script-operator.dev/v1alpha1",
              kind: "ScriptRun",
              metadata: { name: "other-image", namespace: work.name },
              spec: { script: "task.sh", image: "alpine:3" },
            }),
          });
          return res.code !== 0 && res.stderr;
        }, { what: "the chart's admission policy to refuse image alpine:3" });
        assert(refused.includes(`spec.image`) && refused.includes(policyName), refused);

        await kubectlOk(["apply", "-f", "-"], {
          stdin: JSON.stringify({
            apiVersion: "script-operator.dev/v1alpha1",
            kind: "ScriptRun",
            metadata: { name: "sample", namespace: work.name },
            spec: { script: "task.sh" },
          }),
        });
        await waitFor(async () => {
          const run = await kubectlJson<{ status?: { phase?: string } }>([
            "-n",
            work.name,
            "get",
            "scriptrun",
            "sample",
          ]);
          return run.status?.phase === "Succeeded";
        }, { what: "ScriptRun sample to succeed", timeoutMs: 90_000 });
        assertEquals(op.logs.filter((l) => l.level === "error"), []);
      } finally {
        await Deno.remove(prefix, { recursive: true });
      }

      // helm upgrade with one more allowed image changes the flags and the admission policy.
      await using more = await valuesFile({
        namespaces: [work.name],
        replicas: 0,
        admissionPolicy: { name: policyName },
        policy: { allowedImages: ["busybox:1.36", "alpine:3"] },
      });
      await helmOk(["upgrade", release, CHART, ...helmCluster, "-f", more.path]);
      const upgraded = await kubectlJson<K8sObject>([
        "-n",
        opNs.name,
        "get",
        "deployment",
        fullname,
      ]);
      assert(argsOf([upgraded]).includes("--allowed-image=alpine:3"), argsOf([upgraded]).join(" "));
      await waitFor(async () => {
        const res = await kubectl(["apply", "--dry-run=server", "-f", "-"], {
          stdin: JSON.stringify({
            apiVersion: "script-operator.dev/v1alpha1",
            kind: "ScriptRun",
            metadata: { name: "other-image", namespace: work.name },
            spec: { script: "task.sh", image: "alpine:3" },
          }),
        });
        return res.code === 0;
      }, { what: "the upgraded admission policy to admit image alpine:3" });

      // The aggregated roles: a user bound to the built-in edit role may create ScriptRuns,
      // one bound to view may only read them.
      await kubectlOk([
        "-n",
        work.name,
        "create",
        "rolebinding",
        "alice-edit",
        "--clusterrole=edit",
        "--user=alice",
      ]);
      await kubectlOk([
        "-n",
        work.name,
        "create",
        "rolebinding",
        "bob-view",
        "--clusterrole=view",
        "--user=bob",
      ]);
      const can = async (user: string, verb: string) =>
        (await kubectl([
          "-n",
          work.name,
          "auth",
          "can-i",
          verb,
          "scriptruns.script-operator.dev",
          "--as",
          user,
        ])).stdout.trim() === "yes";
      await waitFor(() => can("alice", "create"), {
        what: "edit to include ScriptRuns (aggregation)",
      });
      await waitFor(() => can("bob", "list"), { what: "view to include ScriptRuns (aggregation)" });
      assert(!(await can("bob", "create")), "a view user may create ScriptRuns");

      // Uninstall removes every object of the release but the CRD, and so keeps the ScriptRun.
      objects = parseManifests(await helmOk(["get", "manifest", release, ...helmCluster]));
      await helmOk(["uninstall", release, ...helmCluster]);
      installed = false;
      for (const o of objects) {
        const where = o.metadata.namespace ? ["-n", o.metadata.namespace] : [];
        await waitFor(async () => {
          const res = await kubectl(["get", resourceOf(o), o.metadata.name, ...where]);
          return res.code !== 0 && res.stderr.includes("NotFound");
        }, { what: `${objectKey(o)} to be removed by helm uninstall` });
      }
      await kubectlOk(["get", "crd", CRD_NAME]);
      const kept = await kubectlJson<{ status?: { phase?: string } }>([
        "-n",
        work.name,
        "get",
        "scriptrun",
        "sample",
      ]);
      assertEquals(kept.status?.phase, "Succeeded");
    } finally {
      if (installed) await helm(["uninstall", release, ...helmCluster]);
      await kubectl([
        "delete",
        "validatingadmissionpolicybinding,validatingadmissionpolicy",
        policyName,
        "--ignore-not-found",
      ]);
      // Later tests expect the CRD: it stays (helm made it, nothing removes it).
      await kubectlOk(["apply", "--server-side", "-f", `${ROOT}deploy/crd.yaml`]);
    }
  },
);
