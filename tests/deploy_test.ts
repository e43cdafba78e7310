/**
 * The three ways to ship (issue #4): manifests in deploy/, the Dockerfile and the workflows.
 *
 * Without a cluster: the RBAC grants exactly what src/ calls (a table of client-node calls found
 * by regex), the manifests agree with each other, with the operator's CLI and with the
 * Dockerfile, the build context holds everything the image build needs (a "dry" Docker build:
 * the COPY steps replayed into a temp folder, then the same `deno install` and compile), and
 * every action in the workflows is pinned.
 *
 * Against the test cluster: the in-cluster permission flags run the operator with only
 * deploy/rbac.yaml, rbac-namespaced.yaml is enough for `--namespace`, and the laptop flags give
 * exec credential plugins the user's environment. The kustomize install itself (kustomization.yaml,
 * server dry-run, `apply -k`) is tests/kustomize_test.ts.
 * @module
 */
import { parse, parseAllDocuments } from "yaml";
import { assert, assertEquals } from "./harness/assert.ts";
import { installOperatorRbac } from "./harness/rbac.ts";
import { exists } from "./harness/control_plane.ts";
import { denoCacheDir, installCrd } from "./harness/operator.ts";
import {
  clusterTest,
  jobsMode,
  kubectlJson,
  kubectlOk,
  tokenKubeconfig,
  uniqueNamespace,
  waitFor,
} from "./harness/test_env.ts";
import { parseBindAddress, parseCli } from "../src/cli.ts";
import { DEFAULT_POLICY, UNSAFE_ENV_NAMES, UNSAFE_ENV_PREFIXES } from "../src/policy.ts";
import { SERVICE_ACCOUNT_DIR } from "../src/kubeconfig.ts";
import { loadScripts } from "../src/scripts.ts";
import { GROUP, KIND, PLURAL, VERSION } from "../src/types.ts";
import { defaultOutput, EXIT_CODES, NO_DENORT_MESSAGE, TARGETS } from "../deploy/compile.ts";
import { IN_CLUSTER_FLAGS, LAPTOP_FLAGS } from "../deploy/permissions.ts";
import { type K8sObject, manifests, only, readText, ROOT, type Rule } from "./harness/manifests.ts";

const NO_SANITIZE = { sanitizeResources: false, sanitizeOps: false };

// ---------------------------------------------------------------------------------------------
// RBAC: exactly what src/ calls.

/** `group/resource:verb` (group "" is the core group, written "core"). */
function grant(group: string, resource: string, verb: string): string {
  return `${group || "core"}/${resource}:${verb}`;
}

/** Why a grant is needed: a client-node call in a source file, or a pattern in one. */
interface Need {
  grant: string;
  /** Must also match the file, e.g. the plural a custom-object call is made for. */
  evidence?: RegExp[];
}

const SCRIPTRUNS = [/plural: PLURAL/, /group: GROUP/];
const LEASES = [/group: "coordination\.k8s\.io"/, /plural: "leases"/];

/**
 * Custom-object calls in src/ ("file method"): the plural they act on is not in the method's
 * name, so each is listed with the evidence that names it. Typed calls (CoreV1Api,
 * BatchV1Api...) need no entry: {@linkcode conventionGrant} reads the grant from the name.
 */
const CLIENT_CALLS: Record<string, Need> = {
  "src/kube.ts listClusterCustomObject": {
    grant: grant(GROUP, PLURAL, "list"),
    evidence: SCRIPTRUNS,
  },
  "src/kube.ts listNamespacedCustomObject": {
    grant: grant(GROUP, PLURAL, "list"),
    evidence: SCRIPTRUNS,
  },
  "src/kube.ts patchNamespacedCustomObjectStatus": {
    grant: grant(GROUP, `${PLURAL}/status`, "patch"),
    evidence: SCRIPTRUNS,
  },
  "src/kube.ts getNamespacedCustomObject": {
    grant: grant("coordination.k8s.io", "leases", "get"),
    evidence: LEASES,
  },
  "src/kube.ts createNamespacedCustomObject": {
    grant: grant("coordination.k8s.io", "leases", "create"),
    evidence: LEASES,
  },
  "src/kube.ts replaceNamespacedCustomObject": {
    grant: grant("coordination.k8s.io", "leases", "update"),
    evidence: LEASES,
  },
};

/** API group of each typed client-node API class. */
const API_GROUPS: Record<string, string> = {
  CoreV1Api: "",
  BatchV1Api: "batch",
  CoordinationV1Api: "coordination.k8s.io",
  EventsV1Api: "events.k8s.io",
  AppsV1Api: "apps",
};

/** client-node method verb → RBAC verb. */
const METHOD_VERBS: Record<string, string> = {
  list: "list",
  read: "get",
  create: "create",
  delete: "delete",
  deleteCollection: "deletecollection",
  patch: "patch",
  replace: "update",
};

/** Kind → resource where the plural is not the kind in lowercase plus "s". */
const PLURALS: Record<string, string> = { Endpoints: "endpoints" };

/**
 * The grant of a typed client-node call, from its name: `readNamespacedJob` on BatchV1Api is
 * get batch/jobs, `listPodForAllNamespaces` on CoreV1Api list pods, `patchNamespacedJobStatus`
 * patch jobs/status, `readNamespacedPodLog` get pods/log. Undefined for a name it cannot read.
 */
function conventionGrant(api: string, method: string): string | undefined {
  const group = API_GROUPS[api];
  if (group === undefined) return undefined;
  const m =
    /^(list|read|create|deleteCollection|delete|patch|replace)(Namespaced)?([A-Z]\w*?)(ForAllNamespaces)?(Status|Log)?$/
      .exec(method);
  if (!m) return undefined;
  const kind = m[3];
  const resource = (PLURALS[kind] ?? `${kind.toLowerCase()}s`) +
    (m[5] ? `/${m[5].toLowerCase()}` : "");
  return grant(group, resource, METHOD_VERBS[m[1]]);
}

/**
 * Paths a file watches with client-node's `Watch` or `makeInformer` (`/api/v1/pods`,
 * `/apis/batch/v1/namespaces/${ns}/jobs`, `/apis/${GROUP}/${VERSION}/.../${PLURAL}`): one
 * `watch` grant per resource, keyed "file watch resource".
 */
function watchGrants(file: string, text: string): Map<string, Need> {
  const out = new Map<string, Need>();
  if (!/new Watch\(|makeInformer\(|[?&]watch=(true|1)|watch: "(true|1)"/.test(text)) return out;
  const constants: Record<string, string> = { GROUP, VERSION, PLURAL };
  // A path with an optional namespace part (`/api/v1/${ns ? `namespaces/${ns}/` : ""}pods`)
  // reads as its cluster-wide form.
  const flat = text.replace(/\$\{\w+ \? `[^`]*` : ""\}/g, "");
  for (const m of flat.matchAll(/[`"'](\/apis?\/[^`"'\s]+)[`"']/g)) {
    const path = m[1].replace(/\$\{(\w+)\}/g, (_, name) => constants[name] ?? "$NS");
    const parts = path.split("/").filter(Boolean);
    const [group, rest] = parts[0] === "api" ? ["", parts.slice(2)] : [parts[1], parts.slice(3)];
    const resource = rest[0] === "namespaces" && rest.length > 2 ? rest[2] : rest[0];
    if (!resource || resource.startsWith("$")) continue;
    out.set(`${file} watch ${resource}`, { grant: grant(group, resource, "watch") });
  }
  assert(
    out.size > 0,
    `${file} watches, but no API path literal was found; extend watchGrants in tests/deploy_test.ts`,
  );
  return out;
}

/**
 * Grants that follow from what the operator writes rather than from a call: children with
 * `blockOwnerDeletion: true` need `update` on the owner's finalizers where the
 * OwnerReferencesPermissionEnforcement admission plugin runs (OpenShift and others).
 */
const DERIVED: Record<string, Need> = {
  "src/desired.ts blockOwnerDeletion: true": {
    grant: grant(GROUP, `${PLURAL}/finalizers`, "update"),
    evidence: [/blockOwnerDeletion: true/],
  },
};

/** Leader election's grants: a Role in the operator's own namespace, never cluster-wide. */
function leaseGrants(needs: Map<string, string[]>): Set<string> {
  return new Set([...needs.keys()].filter((g) => g.startsWith("coordination.k8s.io/leases:")));
}

/** "file method" of every call on a client made with makeApiClient or makeClient in src/ (tests excluded), with the API class and the file's text. */
async function clientCallsInSource(): Promise<Map<string, { api: string; text: string }>> {
  const calls = new Map<string, { api: string; text: string }>();
  for (const entry of Deno.readDirSync(`${ROOT}src`)) {
    if (!entry.name.endsWith(".ts") || entry.name.endsWith("_test.ts")) continue;
    const file = `src/${entry.name}`;
    const text = await readText(file);
    if (!/makeApiClient\(|makeClient\(/.test(text)) continue;
    const fields = [
      ...text.matchAll(
        /this\.(#?\w+)\s*=\s*(?:\w+\.makeApiClient\(|makeClient\()\s*(?:[\w.]+,\s*)?(\w+)/g,
      ),
    ].map((m) => ({ field: m[1], api: m[2] }));
    assert(
      fields.length > 0,
      `${file} calls makeApiClient in a way this test does not recognise; extend clientCallsInSource`,
    );
    for (const { field, api } of fields) {
      const call = new RegExp(`this\\.${field.replace("#", "\\#")}\\s*\\.\\s*(\\w+)\\(`, "g");
      for (const m of text.matchAll(call)) calls.set(`${file} ${m[1]}`, { api, text });
    }
  }
  return calls;
}

/** The grants src/ needs: grant → the calls ("file method") that need it. */
async function neededGrants(): Promise<Map<string, string[]>> {
  const calls = await clientCallsInSource();
  const needs = new Map<string, string[]>();
  const add = (key: string, need: Need, text: string) => {
    for (const e of need.evidence ?? []) assert(e.test(text), `${key}: ${e} not found`);
    needs.set(need.grant, [...needs.get(need.grant) ?? [], key]);
  };
  const unknown: string[] = [];
  for (const [key, { api, text }] of calls) {
    const listed = CLIENT_CALLS[key];
    const byName = conventionGrant(api, key.split(" ")[1]);
    if (listed) add(key, listed, text);
    else if (byName) add(key, { grant: byName }, text);
    else unknown.push(`${key} (${api})`);
  }
  assertEquals(
    unknown,
    [],
    "client calls this test cannot map to a grant (add them to CLIENT_CALLS)",
  );
  const stale = Object.keys(CLIENT_CALLS).filter((c) => !calls.has(c));
  assertEquals(stale, [], "CLIENT_CALLS entries no longer called in src/ (remove them)");
  for (const entry of Deno.readDirSync(`${ROOT}src`)) {
    if (!entry.name.endsWith(".ts") || entry.name.endsWith("_test.ts")) continue;
    const file = `src/${entry.name}`;
    const text = await readText(file);
    for (const [key, need] of watchGrants(file, text)) add(key, need, text);
  }
  for (const [key, need] of Object.entries(DERIVED)) {
    const file = key.split(" ")[0];
    add(key, need, await readText(file));
  }
  return needs;
}

function grantsOf(role: { rules?: Rule[] }): string[] {
  return (role.rules ?? []).flatMap((r) =>
    r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => grant(g, res, v))))
  );
}

/** The comment written above each rule of each Role/ClusterRole in `path`. */
async function ruleComments(
  path: string,
): Promise<{ role: string; rule: Rule; comment: string }[]> {
  const out: { role: string; rule: Rule; comment: string }[] = [];
  for (const doc of parseAllDocuments(await readText(path))) {
    const js = doc.toJS() as K8sObject | null;
    if (!js || !js.kind.endsWith("Role")) continue;
    const rules = doc.get("rules", true) as {
      commentBefore?: string | null;
      items: { commentBefore?: string | null }[];
    };
    rules.items.forEach((item, i) => {
      out.push({
        role: `${js.kind}/${js.metadata.name}`,
        rule: js.rules![i],
        // The first item's comment belongs to the sequence in the yaml library's tree.
        comment: item.commentBefore ?? (i === 0 ? rules.commentBefore : undefined) ?? "",
      });
    });
  }
  return out;
}

function checkBindings(objects: K8sObject[], path: string): void {
  const sa = only(objects, "ServiceAccount");
  assertEquals(sa.length, 1, `${path}: one ServiceAccount`);
  assertEquals(
    [sa[0].metadata.name, sa[0].metadata.namespace],
    ["script-operator", "script-operator"],
  );
  for (const binding of objects.filter((o) => o.kind.endsWith("Binding"))) {
    const roleKind = binding.kind.replace("Binding", "");
    const role = objects.find((o) =>
      o.kind === binding.roleRef.kind && o.metadata.name === binding.roleRef.name &&
      o.metadata.namespace === binding.metadata.namespace
    );
    assertEquals(binding.roleRef.kind, roleKind, `${path}: ${binding.metadata.name} roleRef kind`);
    assert(role, `${path}: ${binding.kind} ${binding.metadata.name} refers to a missing role`);
    assertEquals(binding.subjects, [{
      kind: "ServiceAccount",
      name: "script-operator",
      namespace: "script-operator",
    }], `${path}: ${binding.metadata.name} subjects`);
  }
  for (const role of objects.filter((o) => o.kind.endsWith("Role"))) {
    assert(
      objects.some((b) =>
        b.kind === `${role.kind}Binding` && b.roleRef.name === role.metadata.name &&
        b.metadata.namespace === role.metadata.namespace
      ),
      `${path}: ${role.kind} ${role.metadata.name} is bound by nothing`,
    );
  }
}

Deno.test("deploy: the RBAC derivation reads gets, watches and pod listings from src/", () => {
  // Calls other parts of the operator may add: each maps to its grant without a table entry.
  assertEquals(conventionGrant("CoreV1Api", "readNamespacedConfigMap"), "core/configmaps:get");
  assertEquals(conventionGrant("BatchV1Api", "readNamespacedJob"), "batch/jobs:get");
  assertEquals(conventionGrant("CoreV1Api", "readNamespacedPod"), "core/pods:get");
  assertEquals(conventionGrant("CoreV1Api", "listPodForAllNamespaces"), "core/pods:list");
  assertEquals(conventionGrant("CoreV1Api", "readNamespacedPodLog"), "core/pods/log:get");
  assertEquals(
    conventionGrant("BatchV1Api", "patchNamespacedJobStatus"),
    "batch/jobs/status:patch",
  );
  assertEquals(
    conventionGrant("CoordinationV1Api", "replaceNamespacedLease"),
    "coordination.k8s.io/leases:update",
  );
  assertEquals(conventionGrant("CustomObjectsApi", "listClusterCustomObject"), undefined);
  assertEquals(conventionGrant("CoreV1Api", "connectGetNamespacedPodExec"), undefined);
  const watcher = [
    "const w = new Watch(kc);",
    "w.watch(`/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}`, {}, on, done);",
    'w.watch("/api/v1/configmaps", {}, on, done);',
    "w.watch(`/apis/batch/v1/namespaces/${ns}/jobs`, {}, on, done);",
    "makeInformer(kc, `/api/v1/pods`, list);",
  ].join("\n");
  assertEquals(
    [...watchGrants("src/watch.ts", watcher)].map(([key, need]) => [key, need.grant]),
    [
      ["src/watch.ts watch scriptruns", `${GROUP}/${PLURAL}:watch`],
      ["src/watch.ts watch configmaps", "core/configmaps:watch"],
      ["src/watch.ts watch jobs", "batch/jobs:watch"],
      ["src/watch.ts watch pods", "core/pods:watch"],
    ],
  );
  assertEquals(watchGrants("src/plain.ts", 'get("/api/v1/pods")').size, 0);
});

Deno.test("deploy: rbac.yaml grants exactly the client calls in src/, leases only in a Role", async () => {
  const needs = await neededGrants();
  const objects = await manifests("deploy/rbac.yaml");
  checkBindings(objects, "deploy/rbac.yaml");
  const clusterRoles = only(objects, "ClusterRole");
  const roles = only(objects, "Role");
  const granted = [...clusterRoles, ...roles].flatMap(grantsOf);
  assert(!granted.some((g) => g.includes("*")), `wildcards granted: ${granted}`);
  assertEquals(new Set(granted).size, granted.length, "a grant appears twice");
  assertEquals(new Set(granted), new Set(needs.keys()), "granted vs needed by src/");
  // Least privilege: leases in the operator's own namespace only, nothing else namespaced.
  assertEquals(new Set(roles.flatMap(grantsOf)), leaseGrants(needs), "Role grants");
  for (const r of roles) assertEquals(r.metadata.namespace, "script-operator");
});

Deno.test("deploy: rbac-namespaced.yaml (the default install) grants the same, all in Roles", async () => {
  const needs = await neededGrants();
  const objects = await manifests("deploy/rbac-namespaced.yaml");
  checkBindings(objects, "deploy/rbac-namespaced.yaml");
  assertEquals(objects.filter((o) => o.kind.startsWith("Cluster")), [], "cluster-wide objects");
  const roles = only(objects, "Role");
  const granted = roles.flatMap(grantsOf);
  assert(!granted.some((g) => g.includes("*")), `wildcards granted: ${granted}`);
  assertEquals(new Set(granted).size, granted.length, "a grant appears twice");
  assertEquals(new Set(granted), new Set(needs.keys()), "granted vs needed by src/");
  const lease = leaseGrants(needs);
  const leaseRoles = roles.filter((r) => grantsOf(r).some((g) => lease.has(g)));
  assertEquals(leaseRoles.map((r) => r.metadata.namespace), ["script-operator"]);
  assertEquals(new Set(leaseRoles.flatMap(grantsOf)), lease);
  // The served namespaces' Roles grant everything but leases, and the Deployment serves exactly
  // those namespaces.
  const served = roles.filter((r) => !leaseRoles.includes(r));
  for (const r of served) {
    assertEquals(
      new Set(grantsOf(r)),
      new Set([...needs.keys()].filter((g) => !lease.has(g))),
      `Role ${r.metadata.name} in ${r.metadata.namespace}`,
    );
  }
  const [deployment] = await manifests("deploy/deployment.yaml");
  const cli = parseCli(deployment.spec.template.spec.containers[0].args);
  assertEquals(cli.namespaces, served.map((r) => r.metadata.namespace));
});

Deno.test("deploy: cluster-wide/ swaps the served namespaces' Role for a ClusterRole and serves all", async () => {
  const needs = await neededGrants();
  const component = parse(await readText("deploy/cluster-wide/kustomization.yaml"));
  assertEquals(component.kind, "Component");
  assertEquals(component.resources, ["rbac.yaml"]);
  const added = await manifests("deploy/cluster-wide/rbac.yaml");
  assertEquals(added.map((o) => o.kind), ["ClusterRole", "ClusterRoleBinding"]);
  const base = await manifests("deploy/rbac-namespaced.yaml");
  const lease = leaseGrants(needs);
  const servedRoles = only(base, "Role").filter((r) => !grantsOf(r).some((g) => lease.has(g)));
  // The component deletes exactly the served namespaces' Roles and RoleBindings.
  const deleted = (component.patches as { patch: string; target?: unknown }[])
    .filter((p) => !p.target).map((p) => parse(p.patch) as K8sObject & { $patch?: string });
  for (const d of deleted) assertEquals(d.$patch, "delete");
  const key = (o: K8sObject) => `${o.kind} ${o.metadata.namespace}/${o.metadata.name}`;
  const servedBindings = only(base, "RoleBinding").filter((b) =>
    servedRoles.some((r) => r.metadata.name === b.roleRef.name)
  );
  assertEquals(
    deleted.map(key).sort(),
    [...servedRoles, ...servedBindings].map(key).sort(),
  );
  // What remains plus the ClusterRole is exactly what src/ needs: leases in a Role, the rest
  // cluster-wide.
  const [clusterRole] = added;
  const granted = grantsOf(clusterRole);
  assertEquals(new Set(granted).size, granted.length, "a grant appears twice");
  assertEquals(new Set([...granted, ...lease]), new Set(needs.keys()), "granted vs needed by src/");
  assert(!granted.some((g) => lease.has(g)), "leases are granted cluster-wide");
  checkBindings([...only(base, "ServiceAccount"), ...added], "deploy/cluster-wide/rbac.yaml");
  // The ClusterRole is the one of the plain file deploy/rbac.yaml.
  const [plain] = only(await manifests("deploy/rbac.yaml"), "ClusterRole");
  assertEquals(clusterRole.rules, plain.rules);
  // The Deployment patch removes --namespace, so the operator serves every namespace.
  const patch = (component.patches as { patch: string; target?: { kind: string } }[])
    .find((p) => p.target?.kind === "Deployment");
  assert(patch, "no Deployment patch");
  const [deployment] = await manifests("deploy/deployment.yaml");
  const args: string[] = structuredClone(deployment.spec.template.spec.containers[0].args);
  for (const op of parse(patch.patch) as { op: string; path: string; value?: string }[]) {
    const index = Number(op.path.split("/").at(-1));
    assert(op.path.startsWith("/spec/template/spec/containers/0/args/"), op.path);
    if (op.op === "test") assertEquals(args[index], op.value, "the patch removes another arg");
    if (op.op === "remove") args.splice(index, 1);
  }
  assertEquals(parseCli(args).namespaces, []);
});

Deno.test("deploy: every RBAC rule has a comment naming the source file that needs it", async () => {
  const needs = await neededGrants();
  const files = [
    "deploy/rbac.yaml",
    "deploy/rbac-namespaced.yaml",
    "deploy/cluster-wide/rbac.yaml",
  ];
  for (const path of files) {
    for (const { role, rule, comment } of await ruleComments(path)) {
      for (const g of grantsOf({ rules: [rule] })) {
        // "src/kube.ts listNamespacedPod" → the comment names the file and the call.
        const reasons = needs.get(g) ?? [];
        assert(
          reasons.some((r) => {
            const [file, ...what] = r.split(" ");
            return comment.includes(file) && comment.includes(what.join(" "));
          }),
          `${path} ${role}: the comment above the rule granting ${g} must name one of: ${
            reasons.join("; ")
          }; it is: ${JSON.stringify(comment)}`,
        );
      }
    }
  }
});

// ---------------------------------------------------------------------------------------------
// Deployment, namespace, sample, kustomization.

/** Checks the restricted Pod Security profile on a pod spec, the rules a manifest can break. */
function restrictedViolations(spec: K8sObject["spec"]): string[] {
  const problems: string[] = [];
  const pod = spec.securityContext ?? {};
  for (const field of ["hostNetwork", "hostPID", "hostIPC"]) {
    if (spec[field]) problems.push(`${field} is set`);
  }
  for (const v of spec.volumes ?? []) {
    const types = Object.keys(v).filter((k) => k !== "name");
    if (!types.every((t) => ["emptyDir", "configMap", "secret", "projected"].includes(t))) {
      problems.push(`volume ${v.name} has type ${types}`);
    }
  }
  for (const c of spec.containers) {
    const sc = c.securityContext ?? {};
    if ((sc.runAsNonRoot ?? pod.runAsNonRoot) !== true) problems.push(`${c.name}: runAsNonRoot`);
    if ((sc.runAsUser ?? pod.runAsUser) === 0) problems.push(`${c.name}: runAsUser 0`);
    if (sc.allowPrivilegeEscalation !== false) {
      problems.push(`${c.name}: allowPrivilegeEscalation`);
    }
    if (sc.privileged) problems.push(`${c.name}: privileged`);
    if (!(sc.capabilities?.drop ?? []).includes("ALL")) problems.push(`${c.name}: drop ALL`);
    const added = (sc.capabilities?.add ?? []).filter((a: string) => a !== "NET_BIND_SERVICE");
    if (added.length > 0) problems.push(`${c.name}: adds ${added}`);
    const seccomp = (sc.seccompProfile ?? pod.seccompProfile)?.type;
    if (seccomp !== "RuntimeDefault" && seccomp !== "Localhost") {
      problems.push(`${c.name}: seccompProfile ${seccomp}`);
    }
    if ((c.ports ?? []).some((p: { hostPort?: number }) => p.hostPort)) {
      problems.push(`${c.name}: hostPort`);
    }
  }
  return problems;
}

/** Kubernetes quantity → number (cores or bytes), for comparing requests with limits. */
function quantity(q: string): number {
  const m = /^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|k|M|G)?$/.exec(q);
  assert(m, `not a quantity this test understands: ${q}`);
  const factor: Record<string, number> = {
    m: 0.001,
    Ki: 1024,
    Mi: 1024 ** 2,
    Gi: 1024 ** 3,
    k: 1e3,
    M: 1e6,
    G: 1e9,
  };
  return Number(m[1]) * (m[2] ? factor[m[2]] : 1);
}

Deno.test("deploy: deployment.yaml runs the operator as the CLI, RBAC and Dockerfile expect", async () => {
  const [deployment] = await manifests("deploy/deployment.yaml");
  const config = JSON.parse(await readText("deno.json"));
  const [sa] = only(await manifests("deploy/rbac.yaml"), "ServiceAccount");
  assertEquals(deployment.kind, "Deployment");
  assertEquals(
    [deployment.metadata.name, deployment.metadata.namespace],
    ["script-operator", "script-operator"],
  );
  assertEquals(deployment.spec.replicas, 1);
  const template = deployment.spec.template;
  for (const [k, v] of Object.entries(deployment.spec.selector.matchLabels)) {
    assertEquals(template.metadata.labels[k], v, `selector label ${k}`);
  }
  const pod = template.spec;
  assertEquals(pod.serviceAccountName, sa.metadata.name);
  assertEquals(pod.automountServiceAccountToken, true);
  assertEquals(pod.containers.length, 1);
  const [c] = pod.containers;
  assertEquals(c.image, `ghcr.io/script-operator/script-operator:${config.version}`);

  // The args are valid for the operator's own parser, and the probes hit its probe server.
  const cli = parseCli(c.args);
  assertEquals([cli.command, cli.leaderElect, cli.once, cli.dryRun], ["run", true, false, false]);
  const health = parseBindAddress(cli.healthProbeBindAddress);
  const metrics = parseBindAddress(cli.metricsBindAddress);
  assert(health && metrics, "probes and metrics must be on");
  const port = (name: string | number) =>
    typeof name === "number" ? name : c.ports.find((p: { name: string }) => p.name === name)
      ?.containerPort;
  assertEquals(port(c.livenessProbe.httpGet.port), health.port, "liveness port");
  assertEquals(c.livenessProbe.httpGet.path, "/healthz");
  assertEquals(port(c.readinessProbe.httpGet.port), health.port, "readiness port");
  assertEquals(c.readinessProbe.httpGet.path, "/readyz");
  assertEquals(port("metrics"), metrics.port, "metrics port");

  for (const r of ["cpu", "memory"]) {
    const request = quantity(c.resources.requests[r]);
    const limit = quantity(c.resources.limits[r]);
    assert(request > 0 && request <= limit, `${r}: request ${request} vs limit ${limit}`);
  }
  assertEquals(restrictedViolations(pod), []);
  assertEquals(c.securityContext.readOnlyRootFilesystem, true);
  // The uid/gid of the image's USER line.
  const user = dockerfile(await readText("Dockerfile")).stages[1].user;
  assertEquals(
    `${c.securityContext.runAsUser ?? pod.securityContext.runAsUser}:${
      c.securityContext.runAsGroup ?? pod.securityContext.runAsGroup
    }`,
    user,
  );
  // A read-only root needs a writable /tmp for the compiled binary's code cache.
  const tmp = c.volumeMounts.find((m: { mountPath: string }) => m.mountPath === "/tmp");
  assert(tmp, "no /tmp mount");
  const volume = pod.volumes.find((v: { name: string }) => v.name === tmp.name);
  assert(volume?.emptyDir, "/tmp must be an emptyDir");
});

Deno.test("deploy: namespace.yaml enforces restricted; sample.yaml runs an embedded script", async () => {
  const [ns] = await manifests("deploy/namespace.yaml");
  assertEquals([ns.kind, ns.metadata.name], ["Namespace", "script-operator"]);
  assertEquals(ns.metadata.labels?.["pod-security.kubernetes.io/enforce"], "restricted");
  const [sample] = await manifests("deploy/sample.yaml");
  assertEquals(sample.apiVersion, `${GROUP}/${VERSION}`);
  assertEquals(sample.kind, KIND);
  assertEquals([sample.metadata.name, sample.metadata.namespace], ["sample", "default"]);
  assertEquals(sample.spec, { script: "task.sh" });
  assert((await loadScripts()).has(sample.spec.script), "task.sh is not an embedded script");
});

Deno.test("deploy: policy.yaml's admission policy and the Deployment's flags hold one policy", async () => {
  const [policy, binding] = await manifests("deploy/policy.yaml");
  assertEquals([policy.kind, binding.kind], [
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
  ]);
  assertEquals(binding.spec.policyName, policy.metadata.name);
  assertEquals(binding.spec.validationActions, ["Deny"]);
  assertEquals(binding.spec.paramRef, undefined);
  assertEquals(policy.spec.failurePolicy, "Fail");
  const variable = (name: string) => {
    const v = policy.spec.variables.find((x: { name: string }) => x.name === name);
    assert(v, `variable ${name} missing`);
    // The constants are CEL list or bool literals, which read as JSON once quotes are swapped.
    return JSON.parse(v.expression.replaceAll("'", '"'));
  };
  const [deployment] = await manifests("deploy/deployment.yaml");
  const cli = parseCli(deployment.spec.template.spec.containers[0].args);
  assertEquals(cli.policy, {
    allowedImages: variable("allowedImages"),
    allowedServiceAccounts: variable("allowedServiceAccounts"),
    allowedSecrets: variable("allowedSecrets"),
    allowPrivileged: variable("allowPrivilegedScripts"),
    maxCpu: variable("maxCpu"),
    maxMemory: variable("maxMemory"),
  });
  assertEquals(cli.policy, DEFAULT_POLICY, "the shipped policy is the operator's default");
  // The env names the operator refuses are the admission policy's.
  assertEquals(variable("unsafeEnvNames"), UNSAFE_ENV_NAMES);
  assertEquals(variable("unsafeEnvPrefixes"), UNSAFE_ENV_PREFIXES);
  // Every privilege the operator refuses has a validation naming the same field.
  const messages = policy.spec.validations.map((v: { messageExpression: string }) =>
    v.messageExpression
  ).join("\n");
  for (
    const field of [
      "spec.image",
      "spec.serviceAccountName",
      "spec.env.valueFrom.secretKeyRef",
      "spec.env.name",
      "spec.resources.limits.cpu",
      "spec.resources.limits.memory",
      "spec.resources.requests.cpu",
      "spec.resources.requests.memory",
      "spec.securityContext.privileged",
      "spec.securityContext.runAsUser",
      "spec.securityContext.runAsGroup",
      "spec.securityContext.runAsNonRoot",
      "spec.securityContext.allowPrivilegeEscalation",
      "spec.securityContext.capabilities.add",
      "spec.securityContext.capabilities.drop",
      "spec.securityContext.seccompProfile.type",
    ]
  ) assert(messages.includes(`'${field}: `), `no validation names ${field}`);
});

// ---------------------------------------------------------------------------------------------
// Dockerfile and .dockerignore.

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  from: string;
  platform?: string;
  name?: string;
  instructions: Instruction[];
  user?: string;
  entrypoint?: string[];
}

/** Parses a Dockerfile into stages (line continuations, comments, FROM/USER/ENTRYPOINT). */
function dockerfile(text: string): { stages: Stage[] } {
  const lines = text.replace(/\\\n/g, " ").split("\n").map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  const stages: Stage[] = [];
  for (const line of lines) {
    const [, op, args] = /^(\w+)\s+(.*)$/.exec(line) ?? [];
    assert(op, `cannot parse Dockerfile line: ${line}`);
    const upper = op.toUpperCase();
    if (upper === "FROM") {
      const m = /^(?:--platform=(\S+)\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      assert(m, `FROM ${args}`);
      stages.push({ platform: m[1], from: m[2], name: m[3], instructions: [] });
      continue;
    }
    const stage = stages.at(-1);
    assert(stage, `${op} before FROM`);
    stage.instructions.push({ op: upper, args });
    if (upper === "USER") stage.user = args;
    if (upper === "ENTRYPOINT") stage.entrypoint = JSON.parse(args);
  }
  return { stages };
}

/** COPY/ADD of a stage: flags, sources, destination. */
function copies(stage: Stage): { from?: string; sources: string[]; dest: string }[] {
  return stage.instructions.filter((i) => i.op === "COPY" || i.op === "ADD").map((i) => {
    const words = i.args.split(/\s+/);
    const flags = words.filter((w) => w.startsWith("--"));
    const paths = words.filter((w) => !w.startsWith("--"));
    const from = flags.find((f) => f.startsWith("--from="))?.slice("--from=".length);
    return { from, sources: paths.slice(0, -1), dest: paths.at(-1)! };
  });
}

/** A .dockerignore as a predicate: is `path` (relative to the context) left out? */
function dockerignore(text: string): (path: string) => boolean {
  const rules = text.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"))
    .map((l) => {
      const negate = l.startsWith("!");
      const pattern = (negate ? l.slice(1) : l).replace(/^\.?\//, "").replace(/\/$/, "");
      // Glob tokens: "**/" any folders, "**" anything, "*" and "?" within one path segment.
      const source = pattern.split(/(\*\*\/|\*\*|\*|\?)/).map((token) =>
        ({ "**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]" })[token] ??
          token.replace(/[.+^${}()|[\]\\]/g, "\\$&")
      ).join("");
      return { negate, re: new RegExp(`^${source}$`) };
    });
  return (path: string) => {
    const parts = path.replace(/^\.?\//, "").replace(/\/$/, "").split("/");
    const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join("/"));
    let excluded = false;
    for (const r of rules) {
      if (prefixes.some((p) => r.re.test(p))) excluded = !r.negate;
    }
    return excluded;
  };
}

/** The local files of a module graph, relative to the project root. */
async function localGraph(entry: string): Promise<string[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(out.success, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    modules: { specifier: string }[];
  };
  return info.modules.map((m) => m.specifier).filter((s) => s.startsWith("file://"))
    .map((s) => new URL(s).pathname.slice(ROOT.length));
}

const REQUIRED_IGNORES = [".git", "tests", "bench", ".cluster", "dist", "node_modules", "docs"];

Deno.test("Dockerfile: compile stage on Deno, distroless nonroot runtime, binary as entrypoint", async () => {
  const { stages } = dockerfile(await readText("Dockerfile"));
  assertEquals(stages.length, 2, "two stages");
  const [build, runtime] = stages;
  assertEquals(build.from, `denoland/deno:${await pinnedDenoVersion()}`);
  assertEquals(build.platform, "$BUILDPLATFORM", "compile natively, cross-compile by --target");
  assertEquals(runtime.from, "gcr.io/distroless/cc-debian12:nonroot");
  assertEquals(runtime.user, "65532:65532");
  const compileRun = build.instructions.find((i) => i.op === "RUN" && i.args.includes("compile"));
  assert(compileRun, "no RUN that compiles");
  const m = /deno task compile --in-cluster --target "\$target" --output (\S+)/.exec(
    compileRun.args,
  );
  assert(m, `the compile step must be the in-cluster flavour: ${compileRun.args}`);
  // Every TARGETARCH the release builds maps to a linux target of deploy/compile.ts.
  for (const [, arch, target] of [...compileRun.args.matchAll(/(\w+)\) target=(\S+) ;;/g)]) {
    assert((TARGETS as readonly string[]).includes(target), `${arch} → ${target}`);
  }
  const [fromBuild] = copies(runtime).filter((c) => c.from === build.name);
  assert(fromBuild, "runtime stage copies nothing from the build stage");
  assertEquals(fromBuild.sources, [m[1]], "copies the compiled binary");
  assertEquals(runtime.entrypoint, [fromBuild.dest]);
  assertEquals(runtime.instructions.filter((i) => i.op === "RUN"), [], "no RUN in distroless");
});

Deno.test("Dockerfile: every COPY source is in the build context; .dockerignore keeps it small", async () => {
  const ignored = dockerignore(await readText(".dockerignore"));
  const { stages } = dockerfile(await readText("Dockerfile"));
  const sources = copies(stages[0]).filter((c) => !c.from).flatMap((c) => c.sources);
  for (const source of sources) {
    assert(exists(`${ROOT}${source}`), `COPY ${source}: no such file`);
    assert(!ignored(source), `COPY ${source}: excluded by .dockerignore`);
  }
  // The module graphs the build stage compiles and runs must be inside what is copied.
  const copied = (file: string) =>
    sources.some((s) => file === s.replace(/\/$/, "") || file.startsWith(s.replace(/\/?$/, "/")));
  for (const file of [...await localGraph("main.ts"), ...await localGraph("deploy/compile.ts")]) {
    assert(copied(file), `${file} is imported but the Dockerfile does not copy it`);
    assert(!ignored(file), `${file} is imported but .dockerignore excludes it`);
  }
  for (const entry of Deno.readDirSync(`${ROOT}scripts`)) {
    assert(copied(`scripts/${entry.name}`) && !ignored(`scripts/${entry.name}`), entry.name);
  }
  for (const path of REQUIRED_IGNORES) assert(ignored(path), `.dockerignore must exclude ${path}`);
  assert(ignored("src/cli_test.ts"), "tests stay out of the context");
});

Deno.test({
  name: "Dockerfile: the build stage's steps succeed on its build context (dry build)",
  ...NO_SANITIZE,
  fn: async () => {
    const ignored = dockerignore(await readText(".dockerignore"));
    const { stages } = dockerfile(await readText("Dockerfile"));
    const [build] = stages;
    const work = await Deno.makeTempDir({ prefix: "script-operator-docker-" });
    try {
      // Replay WORKDIR + COPY into a temp folder, leaving out what .dockerignore excludes.
      const copyTree = async (from: string, to: string) => {
        if (ignored(from)) return;
        const info = await Deno.stat(`${ROOT}${from}`);
        if (info.isDirectory) {
          await Deno.mkdir(to, { recursive: true });
          for await (const e of Deno.readDir(`${ROOT}${from}`)) {
            await copyTree(`${from.replace(/\/$/, "")}/${e.name}`, `${to}/${e.name}`);
          }
        } else {
          await Deno.mkdir(to.slice(0, to.lastIndexOf("/")), { recursive: true });
          await Deno.copyFile(`${ROOT}${from}`, to);
        }
      };
      for (const c of copies(build).filter((c) => !c.from)) {
        const dest = `${work}/${c.dest === "./" ? "" : c.dest}`;
        for (const s of c.sources) {
          const target = c.dest.endsWith("/") && !s.endsWith("/")
            ? `${dest}${s.split("/").at(-1)}`
            : dest.replace(/\/$/, "");
          await copyTree(s, target);
        }
      }
      const run = async (args: string[]) => {
        const out = await new Deno.Command(Deno.execPath(), {
          args,
          cwd: work,
          env: { NO_COLOR: "1" },
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).output();
        const d = new TextDecoder();
        return { code: out.code, log: d.decode(out.stdout) + d.decode(out.stderr) };
      };
      const install = await run(["install", "--frozen-lockfile"]);
      assertEquals(install.code, 0, install.log);
      const compiled = await run([
        "task",
        "compile",
        "--in-cluster",
        "--target",
        "x86_64-unknown-linux-gnu",
        "--output",
        `${work}/out/script-operator`,
      ]);
      if (compiled.code === EXIT_CODES.noDenort) {
        assert(compiled.log.includes(NO_DENORT_MESSAGE), compiled.log);
        console.log(
          "note: dry build checked up to deno compile's denort download (unavailable here)",
        );
      } else {
        assertEquals(compiled.code, 0, compiled.log);
        assert(exists(`${work}/out/script-operator`), "no binary");
      }
    } finally {
      await Deno.remove(work, { recursive: true });
    }
  },
});

// ---------------------------------------------------------------------------------------------
// Workflows.

async function workflow(name: string) {
  return parse(await readText(`.github/workflows/${name}`));
}

interface Step {
  uses?: string;
  run?: string;
  with?: Record<string, unknown>;
}

function stepsOf(wf: { jobs: Record<string, { steps: Step[] }> }): Step[] {
  return Object.values(wf.jobs).flatMap((j) => j.steps);
}

/** The Deno version CI installs; the Dockerfile and release must use the same. */
async function pinnedDenoVersion(): Promise<string> {
  const step = stepsOf(await workflow("ci.yml")).find((s) =>
    s.uses?.startsWith("denoland/setup-deno@")
  );
  assert(step, "ci.yml does not install Deno with denoland/setup-deno");
  return String(step.with?.["deno-version"]);
}

Deno.test("workflows: actions pinned to exact versions, one Deno version everywhere", async () => {
  const version = await pinnedDenoVersion();
  assert(/^\d+\.\d+\.\d+$/.test(version), `deno-version ${version} must be exact`);
  for (const name of ["ci.yml", "release.yml"]) {
    for (const step of stepsOf(await workflow(name))) {
      if (!step.uses) continue;
      assert(
        /@(v\d+\.\d+\.\d+|[0-9a-f]{40})$/.test(step.uses),
        `${name}: ${step.uses} is not pinned to an exact version`,
      );
      if (step.uses.startsWith("denoland/setup-deno@")) {
        assertEquals(String(step.with?.["deno-version"]), version, `${name} deno-version`);
      }
    }
  }
});

Deno.test("workflows: CI runs .ci/run; release compiles every target and pushes both arches", async () => {
  const ci = await workflow("ci.yml");
  assert("push" in ci.on && "pull_request" in ci.on, "CI runs on push and pull requests");
  const ciSteps = stepsOf(ci);
  assert(ciSteps.some((s) => s.uses?.startsWith("actions/setup-go@")), "CI installs Go");
  assert(ciSteps.some((s) => s.run?.trim() === "bash .ci/run"), "CI runs bash .ci/run");

  const release = await workflow("release.yml");
  assertEquals(release.on.push.tags, ["v*"]);
  const binaries = Object.values(
    release.jobs as Record<string, {
      strategy?: { matrix: { target: string[] } };
      steps: Step[];
    }>,
  ).find((j) => j.strategy?.matrix.target);
  assert(binaries, "no job with a target matrix");
  assertEquals([...binaries.strategy!.matrix.target].sort(), [...TARGETS].sort());
  const run = binaries.steps.map((s) => s.run ?? "").join("\n");
  assert(run.includes("deno task compile --target ${{ matrix.target }}"), run);
  const output = defaultOutput({ target: "x86_64-unknown-linux-gnu" }).replace(
    "x86_64-unknown-linux-gnu",
    "${{ matrix.target }}",
  );
  assert(run.includes(output.split("/").at(-1)!), `uploads ${output}: ${run}`);
  const push = stepsOf(release).find((s) => s.uses?.startsWith("docker/build-push-action@"));
  assert(push, "no image build");
  assertEquals(push.with?.platforms, "linux/amd64,linux/arm64");
  assertEquals(push.with?.push, true);
  const meta = stepsOf(release).find((s) => s.uses?.startsWith("docker/metadata-action@"));
  assert(String(meta?.with?.images).startsWith("ghcr.io/"), "image goes to ghcr.io");
});

// ---------------------------------------------------------------------------------------------
// Against the test cluster.

/** A finished `deno run` of main.ts. */
interface Finished {
  code: number;
  log: string;
}

/** Runs main.ts with `flags` and `args` (exact environment `env`), up to `timeoutMs`. */
async function runMain(
  flags: readonly string[],
  args: string[],
  env: Record<string, string>,
  timeoutMs = 60_000,
): Promise<Finished> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...flags, `${ROOT}main.ts`, "--log-format=json", ...args],
    clearEnv: true,
    env: { NO_COLOR: "1", DENO_DIR: await denoCacheDir(), ...env },
    cwd: "/",
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(timeoutMs),
  }).output();
  const d = new TextDecoder();
  return { code: out.code, log: d.decode(out.stdout) + d.decode(out.stderr) };
}

async function clusterServer(): Promise<{ server: URL; ca: Uint8Array }> {
  const view = await kubectlJson<{
    clusters: { cluster: { server: string; "certificate-authority-data": string } }[];
  }>(["config", "view", "--raw", "--minify"]);
  const cluster = view.clusters[0].cluster;
  return {
    server: new URL(cluster.server),
    ca: Uint8Array.from(atob(cluster["certificate-authority-data"]), (c) => c.charCodeAt(0)),
  };
}

async function applyRun(ns: string, name: string, extra = ""): Promise<void> {
  await kubectlOk(["apply", "-f", "-"], {
    stdin:
      `apiVersion: ${GROUP}/${VERSION}\nkind: ${KIND}\nmetadata: {name: ${name}, namespace: ${ns}}\nspec:\n  script: task.sh\n${extra}`,
  });
}

async function runStatus(ns: string, name: string) {
  return (await kubectlJson<{ status?: { phase?: string; jobName?: string; message?: string } }>(
    ["-n", ns, "get", "scriptrun", name],
  )).status;
}

clusterTest(
  "deploy: the in-cluster permission flags run the operator with only deploy/rbac.yaml",
  { needsJobs: true, ...NO_SANITIZE },
  async () => {
    await installCrd();
    await using opNs = await uniqueNamespace("operator");
    await using work = await uniqueNamespace("flags");
    await using identity = await installOperatorRbac(opNs.name);
    const { server, ca } = await clusterServer();
    const prefix = await Deno.makeTempDir({ prefix: "script-operator-sa-" });
    const dir = `${prefix}${SERVICE_ACCOUNT_DIR}`;
    let child: Deno.ChildProcess | undefined;
    try {
      await Deno.mkdir(dir, { recursive: true });
      await Deno.writeTextFile(`${dir}/token`, (await identity.token()).token);
      await Deno.writeFile(`${dir}/ca.crt`, ca);
      await Deno.writeTextFile(`${dir}/namespace`, opNs.name);
      // Test-only widening of the image's flags: a compiled binary reads its embedded scripts
      // without a flag, and the ServiceAccount folder lives under a prefix here.
      const flags = IN_CLUSTER_FLAGS.map((f) =>
        f.startsWith("--allow-read=")
          ? `${f},${dir},${ROOT}scripts`
          : f.startsWith("--allow-env=")
          ? `${f},SCRIPT_OPERATOR_SERVICEACCOUNT_PREFIX`
          : f
      );
      await applyRun(work.name, "ok");
      const failEnv = jobsMode === "kwok" ? "  env: [{name: KWOK_EXIT_CODE, value: '3'}]\n" : "";
      await applyRun(work.name, "broken", failEnv);
      const env = {
        KUBERNETES_SERVICE_HOST: server.hostname,
        KUBERNETES_SERVICE_PORT: server.port,
        SCRIPT_OPERATOR_SERVICEACCOUNT_PREFIX: prefix,
        // Must be ignored by the in-cluster flags: they would point elsewhere.
        KUBECONFIG: "/nonexistent/kubeconfig",
        HOME: prefix,
      };
      child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--no-prompt",
          ...flags,
          `${ROOT}main.ts`,
          "--log-format=json",
          "--interval=1s",
          "--leader-elect",
          "--health-probe-bind-address=0",
          "--metrics-bind-address=0",
        ],
        clearEnv: true,
        env: { NO_COLOR: "1", DENO_DIR: await denoCacheDir(), ...env },
        cwd: "/",
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      let log = "";
      const reading = (async () => {
        for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) log += chunk;
      })();
      await waitFor(async () => (await runStatus(work.name, "ok"))?.phase === "Succeeded", {
        what: "ScriptRun ok to succeed under the in-cluster flags",
        timeoutMs: 90_000,
      }).catch((e) => {
        throw new Error(`${e.message}\noperator log:\n${log.slice(-3000)}`);
      });
      const broken = await waitFor(async () => {
        const s = await runStatus(work.name, "broken");
        return s?.phase === "Failed" ? s : undefined;
      }, { what: "ScriptRun broken to fail", timeoutMs: 90_000 });
      assert(broken.message?.includes("exited with code"), broken.message);
      assert(log.includes("in-cluster ServiceAccount"), "did not use the ServiceAccount");
      assert(log.includes('"msg":"Became leader"'), `no leadership:\n${log.slice(-2000)}`);
      for (const bad of ["NotCapable", "forbidden", "PermissionDenied"]) {
        assert(!log.includes(bad), `${bad} in the operator log:\n${log.slice(-3000)}`);
      }
      child.kill("SIGKILL");
      await child.status;
      await reading;
      child = undefined;
    } finally {
      if (child) {
        child.kill("SIGKILL");
        await child.status;
      }
      await Deno.remove(prefix, { recursive: true });
    }
  },
);

clusterTest(
  "deploy: rbac-namespaced.yaml is enough for --namespace, and only for it",
  { ...NO_SANITIZE },
  async () => {
    await installCrd();
    await using opNs = await uniqueNamespace("operator");
    await using watched = await uniqueNamespace("watched");
    const docs = parseAllDocuments(await readText("deploy/rbac-namespaced.yaml"))
      .map((d) => d.toJS() as K8sObject).filter(Boolean).map((d) => {
        // The operator's own objects go to opNs, the watched-namespace Role to `watched`.
        if (d.metadata.namespace === "script-operator") d.metadata.namespace = opNs.name;
        else if (d.metadata.namespace) d.metadata.namespace = watched.name;
        for (const s of d.subjects ?? []) s.namespace = opNs.name;
        return d;
      });
    await kubectlOk(["apply", "-f", "-"], {
      stdin: JSON.stringify({ kind: "List", apiVersion: "v1", items: docs }),
    });
    const token = (await kubectlOk(["-n", opNs.name, "create", "token", "script-operator"])).trim();
    await using kc = await tokenKubeconfig(token);
    await applyRun(watched.name, "sample");
    const env = { HOME: "/nonexistent" };
    const ok = await runMain(
      LAPTOP_FLAGS,
      ["--kubeconfig", kc.path, "--namespace", watched.name, "--once"],
      env,
    );
    assertEquals(ok.code, 0, ok.log);
    assert(!/forbidden/i.test(ok.log), ok.log);
    const status = await runStatus(watched.name, "sample");
    assert(status?.jobName, `no Job recorded: ${JSON.stringify(status)}\n${ok.log}`);
    // Without --namespace the operator lists cluster-wide, which this RBAC does not allow.
    const all = await runMain(LAPTOP_FLAGS, ["--kubeconfig", kc.path, "--once"], env);
    assertEquals(all.code, 2, all.log);
    assert(all.log.includes("permission denied"), all.log);
  },
);

clusterTest(
  "deploy: laptop flags give a kubeconfig exec plugin the user's environment",
  { ...NO_SANITIZE },
  async () => {
    await using ns = await uniqueNamespace("exec");
    // A token of a ServiceAccount without RBAC: authenticated, then forbidden (403, exit 2).
    await kubectlOk(["-n", ns.name, "create", "serviceaccount", "plugin-user"]);
    const token = (await kubectlOk(["-n", ns.name, "create", "token", "plugin-user"])).trim();
    const { server, ca } = await clusterServer();
    const dir = await Deno.makeTempDir({ prefix: "script-operator-exec-" });
    try {
      const plugin = `${dir}/plugin.sh`;
      await Deno.writeTextFile(
        plugin,
        `#!/bin/sh\nprintf '%s\\n%s\\n' "$PATH" "$PLUGIN_MARKER" > '${dir}/seen'\n` +
          `printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}' '${token}'\n`,
      );
      await Deno.chmod(plugin, 0o755);
      const kubeconfig = `${dir}/kubeconfig`;
      await Deno.writeTextFile(
        kubeconfig,
        JSON.stringify({
          apiVersion: "v1",
          kind: "Config",
          clusters: [{
            name: "c",
            cluster: {
              server: server.href.replace(/\/$/, ""),
              "certificate-authority-data": btoa(String.fromCharCode(...ca)),
            },
          }],
          users: [{
            name: "u",
            user: {
              exec: {
                apiVersion: "client.authentication.k8s.io/v1",
                command: plugin,
                interactiveMode: "Never",
                env: [{ name: "FROM_KUBECONFIG", value: "1" }],
              },
            },
          }],
          contexts: [{ name: "c", context: { cluster: "c", user: "u" } }],
          "current-context": "c",
        }),
      );
      const path = "/usr/local/bin:/usr/bin:/bin:/custom/plugin/dir";
      const run = await runMain(
        LAPTOP_FLAGS,
        ["--kubeconfig", kubeconfig, "--namespace", ns.name, "--once"],
        { PATH: path, PLUGIN_MARKER: "marker-42", HOME: dir },
      );
      // The plugin's token authenticated: the API server answered 403, not 401.
      assertEquals(run.code, 2, run.log);
      assert(run.log.includes("permission denied"), run.log);
      const [seenPath, seenMarker] = (await Deno.readTextFile(`${dir}/seen`)).split("\n");
      assertEquals(
        [seenPath, seenMarker],
        [path, "marker-42"],
        "the plugin must see the operator's PATH and variables",
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
