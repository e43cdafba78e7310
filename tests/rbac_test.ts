/**
 * The shipped RBAC (deploy/rbac.yaml, rbac-namespaced.yaml, cluster-wide/) grants exactly what
 * src/ calls: a table of client-node calls found by regex, each grant derived from one, leases
 * only in a Role, and a comment above each rule naming the source file that needs it.
 * @module
 */
import { parse, parseAllDocuments } from "yaml";
import { assert, assertEquals } from "./harness/assert.ts";
import { parseCli } from "../src/runtime/cli.ts";
import { GROUP, PLURAL, VERSION } from "../src/types.ts";
import { type K8sObject, manifests, only, readText, ROOT, type Rule } from "./harness/manifests.ts";

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
  "src/api/kube.ts listClusterCustomObject": {
    grant: grant(GROUP, PLURAL, "list"),
    evidence: SCRIPTRUNS,
  },
  "src/api/kube.ts listNamespacedCustomObject": {
    grant: grant(GROUP, PLURAL, "list"),
    evidence: SCRIPTRUNS,
  },
  "src/api/kube.ts patchNamespacedCustomObjectStatus": {
    grant: grant(GROUP, `${PLURAL}/status`, "patch"),
    evidence: SCRIPTRUNS,
  },
  "src/api/lease.ts getNamespacedCustomObject": {
    grant: grant("coordination.k8s.io", "leases", "get"),
    evidence: LEASES,
  },
  "src/api/lease.ts createNamespacedCustomObject": {
    grant: grant("coordination.k8s.io", "leases", "create"),
    evidence: LEASES,
  },
  "src/api/lease.ts replaceNamespacedCustomObject": {
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

/** A module that opens a watch. */
const WATCHES = /new Watch\(|makeInformer\(|[?&]watch=(true|1)|watch: "(true|1)"/;

/**
 * Paths a file watches with client-node's `Watch` or `makeInformer` (`/api/v1/pods`,
 * `/apis/batch/v1/namespaces/${ns}/jobs`, `/apis/${GROUP}/${VERSION}/.../${PLURAL}`): one
 * `watch` grant per resource, keyed "file watch resource".
 */
function watchGrants(file: string, text: string): Map<string, Need> {
  const out = new Map<string, Need>();
  if (!WATCHES.test(text)) return out;
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
    `${file} watches, but no API path literal was found; extend watchGrants in tests/rbac_test.ts`,
  );
  return out;
}

/**
 * Grants that follow from what the operator writes rather than from a call: children with
 * `blockOwnerDeletion: true` need `update` on the owner's finalizers where the
 * OwnerReferencesPermissionEnforcement admission plugin runs (OpenShift and others).
 */
const DERIVED: Record<string, Need> = {
  "src/desired/desired.ts blockOwnerDeletion: true": {
    grant: grant(GROUP, `${PLURAL}/finalizers`, "update"),
    evidence: [/blockOwnerDeletion: true/],
  },
};

/** Leader election's grants: a Role in the operator's own namespace, never cluster-wide. */
function leaseGrants(needs: Map<string, string[]>): Set<string> {
  return new Set([...needs.keys()].filter((g) => g.startsWith("coordination.k8s.io/leases:")));
}

/** The operator's source files under `dir`, tests excluded, as paths from the repository root. */
function sourceFiles(dir: string): string[] {
  const files: string[] = [];
  for (const entry of Deno.readDirSync(`${ROOT}${dir}`)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) files.push(...sourceFiles(path));
    else if (path.endsWith(".ts") && !path.endsWith("_test.ts")) files.push(path);
  }
  return files.sort();
}

/** "file method" of every call on a client made with makeApiClient or makeClient in src/ (tests excluded), with the API class and the file's text. */
async function clientCallsInSource(): Promise<Map<string, { api: string; text: string }>> {
  const calls = new Map<string, { api: string; text: string }>();
  for (const file of sourceFiles("src")) {
    const text = await readText(file);
    // Doc comments that name makeApiClient are not calls.
    const code = text.replace(/^\s*(\*|\/\/).*$/gm, "");
    if (!/makeApiClient\(|makeClient\(/.test(code)) continue;
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

/** `text` followed by the text of the modules it imports from its own folder (`./x.ts`). */
async function withSiblingImports(file: string, text: string): Promise<string> {
  const dir = file.slice(0, file.lastIndexOf("/") + 1);
  const siblings = [...text.matchAll(/from "\.\/([\w.]+\.ts)"/g)].map((m) => `${dir}${m[1]}`);
  const texts = await Promise.all(siblings.map((path) => readText(path)));
  return [text, ...texts].join("\n");
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
  for (const file of sourceFiles("src")) {
    // A module that watches may take the paths it watches from a module beside it.
    const own = await readText(file);
    if (!WATCHES.test(own)) continue;
    const text = await withSiblingImports(file, own);
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
        // "src/api/kube.ts listNamespacedPod" → the comment names the file and the call.
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
