/**
 * The kustomize install (`kubectl apply -k deploy/`): what kustomization.yaml installs, that it
 * renders exactly what the Helm chart renders with its default values (so the two ways to install
 * cannot drift apart), that every manifest passes a server dry-run, and that `apply -k` installs
 * the operator under the "restricted" Pod Security profile with the rights it needs and no more.
 * @module
 */
import { parse } from "yaml";
import { assert, assertEquals } from "./harness/assert.ts";
import { exists } from "./harness/control_plane.ts";
import { installCrd } from "./harness/operator.ts";
import { helmTemplate, withoutHelmLabels } from "./harness/helm.ts";
import { type K8sObject, objectKey, parseManifests, readText, ROOT } from "./harness/manifests.ts";
import {
  clusterTest,
  jobsMode,
  kubectl,
  kubectlJson,
  kubectlOk,
  waitFor,
} from "./harness/test_env.ts";
import { parseCli } from "../src/runtime/cli.ts";
import { GROUP, PLURAL } from "../src/types.ts";

const NO_SANITIZE = { sanitizeResources: false, sanitizeOps: false };

/** `kubectl kustomize dir`, parsed. */
async function kustomize(dir: string): Promise<K8sObject[]> {
  return parseManifests(await kubectlOk(["kustomize", dir]));
}

/** deploy/ rendered with its one cluster-wide line uncommented (in a temporary copy). */
async function kustomizeClusterWide(): Promise<K8sObject[]> {
  const copy = await Deno.makeTempDir({ prefix: "script-operator-kustomize-" });
  try {
    await Deno.mkdir(`${copy}/deploy/cluster-wide`, { recursive: true });
    for (const e of Deno.readDirSync(`${ROOT}deploy`)) {
      if (e.isFile) await Deno.copyFile(`${ROOT}deploy/${e.name}`, `${copy}/deploy/${e.name}`);
    }
    for (const e of Deno.readDirSync(`${ROOT}deploy/cluster-wide`)) {
      await Deno.copyFile(
        `${ROOT}deploy/cluster-wide/${e.name}`,
        `${copy}/deploy/cluster-wide/${e.name}`,
      );
    }
    const k = `${copy}/deploy/kustomization.yaml`;
    const text = await Deno.readTextFile(k);
    assert(text.includes("\n# components: [cluster-wide]\n"), "the cluster-wide line is gone");
    await Deno.writeTextFile(
      k,
      text.replace("\n# components: [cluster-wide]\n", "\ncomponents: [cluster-wide]\n"),
    );
    return await kustomize(`${copy}/deploy`);
  } finally {
    await Deno.remove(copy, { recursive: true });
  }
}

/**
 * Asserts that kustomize and Helm render the same objects, field by field, but for the labels
 * only Helm sets and the Namespace (which `helm install --create-namespace` makes).
 */
function assertSameObjects(kustomized: K8sObject[], rendered: K8sObject[]): void {
  const k = new Map(kustomized.filter((o) => o.kind !== "Namespace").map((o) => [objectKey(o), o]));
  const h = new Map(rendered.map((o) => [objectKey(o), withoutHelmLabels(o)]));
  assertEquals([...h.keys()].sort(), [...k.keys()].sort(), "objects of the chart vs deploy/");
  for (const [key, o] of k) assertEquals(h.get(key), o, `${key}: chart vs deploy/`);
}

Deno.test("kustomize: kustomization.yaml installs the namespaced operator; one line turns on cluster-wide", async () => {
  const text = await readText("deploy/kustomization.yaml");
  const k = parse(text);
  assertEquals(
    [...k.resources].sort(),
    [
      "aggregate-roles.yaml",
      "crd.yaml",
      "deployment.yaml",
      "namespace.yaml",
      "policy.yaml",
      "rbac-namespaced.yaml",
      "service.yaml",
    ],
  );
  for (const r of k.resources) assert(exists(`${ROOT}deploy/${r}`), `deploy/${r} missing`);
  assertEquals(k.components, undefined, "cluster-wide mode is off by default");
  // The line the README tells users to uncomment.
  assert(text.includes("\n# components: [cluster-wide]\n"), text);
  assert(exists(`${ROOT}deploy/cluster-wide/kustomization.yaml`), "deploy/cluster-wide/ missing");
});

// kubectl comes with the test cluster's binaries, so these run under `deno task test`.
clusterTest(
  "kustomize: deploy/ renders exactly the Helm chart's default render",
  {},
  async () => {
    assertSameObjects(await kustomize(`${ROOT}deploy`), await helmTemplate());
  },
);

clusterTest(
  "kustomize: deploy/ with components: [cluster-wide] renders the chart's clusterWide: true",
  {},
  async () => {
    assertSameObjects(
      await kustomizeClusterWide(),
      await helmTemplate({ values: { clusterWide: true } }),
    );
  },
);

interface Pod {
  metadata: { name: string };
  spec: { nodeName?: string };
  status: { phase?: string };
}

clusterTest(
  "kustomize: manifests pass server dry-run; apply -k installs under restricted Pod Security",
  { ...NO_SANITIZE },
  async (t) => {
    await installCrd();
    // A previous run's namespace may still be terminating.
    await waitFor(
      async () => (await kubectl(["get", "namespace", "script-operator"])).code !== 0,
      { what: "namespace script-operator from an earlier run to be gone", timeoutMs: 60_000 },
    );
    try {
      await t.step("server dry-run of every manifest", async () => {
        const dryRun = async (args: string[], stdin?: string) => {
          const res = await kubectl(["apply", "--dry-run=server", ...args], { stdin });
          assertEquals(res.code, 0, `apply --dry-run=server ${args.join(" ")}: ${res.stderr}`);
        };
        for (
          const f of [
            "crd.yaml",
            "namespace.yaml",
            "sample.yaml",
            "policy.yaml",
            "aggregate-roles.yaml",
          ]
        ) {
          await dryRun(["-f", `${ROOT}deploy/${f}`]);
        }
        // Namespaced objects need their namespace to exist, even for a dry run.
        await kubectlOk(["apply", "-f", `${ROOT}deploy/namespace.yaml`]);
        for (const f of ["rbac.yaml", "rbac-namespaced.yaml", "deployment.yaml", "service.yaml"]) {
          await dryRun(["-f", `${ROOT}deploy/${f}`]);
        }
        const rendered = await kubectlOk(["kustomize", `${ROOT}deploy`]);
        const kinds = parseManifests(rendered).map((o) => o.kind);
        const base = [
          "Namespace",
          "CustomResourceDefinition",
          "ServiceAccount",
          "Role",
          "RoleBinding",
          "Deployment",
          "ValidatingAdmissionPolicy",
          "ValidatingAdmissionPolicyBinding",
          "Service",
          "ClusterRole",
        ];
        assertEquals(new Set(kinds), new Set(base));
        await dryRun(["-f", "-"], rendered);
        // Cluster-wide mode: the one line of kustomization.yaml uncommented, in a copy.
        {
          const wide = await kustomizeClusterWide();
          assertEquals(
            new Set(wide.map((o) => o.kind)),
            new Set([...base, "ClusterRoleBinding"]),
          );
          const roles = wide.filter((o) => o.kind === "Role" || o.kind === "RoleBinding");
          assertEquals(roles.map((r) => r.metadata.namespace), [
            "script-operator",
            "script-operator",
          ]);
          const deployment = wide.find((o) => o.kind === "Deployment")!;
          assertEquals(parseCli(deployment.spec.template.spec.containers[0].args).namespaces, []);
          // The admission policy then applies in every namespace.
          const binding = wide.find((o) => o.kind === "ValidatingAdmissionPolicyBinding")!;
          assertEquals(binding.spec.matchResources, undefined);
          await dryRun(
            ["-f", "-"],
            JSON.stringify({ apiVersion: "v1", kind: "List", items: wide }),
          );
        }
      });

      await t.step("kubectl apply -k deploy/ without Pod Security warnings", async () => {
        const res = await kubectl(["apply", "-k", `${ROOT}deploy`]);
        assertEquals(res.code, 0, res.stderr);
        // namespace.yaml sets warn=restricted: a violating pod template would be warned about.
        assert(!/PodSecurity|violate/i.test(res.stderr), res.stderr);
        const ns = await kubectlJson<K8sObject>(["get", "namespace", "script-operator"]);
        assertEquals(ns.metadata.labels?.["pod-security.kubernetes.io/enforce"], "restricted");
      });

      await t.step(
        "the namespaced operator can act in its namespaces only (auth can-i)",
        async () => {
          const as = "system:serviceaccount:script-operator:script-operator";
          const can = async (verb: string, resource: string, where: string, sub?: string) => {
            const scope = where === "*" ? ["--all-namespaces"] : ["-n", where];
            const extra = sub ? [`--subresource=${sub}`] : [];
            const res = await kubectl([
              "auth",
              "can-i",
              verb,
              resource,
              ...scope,
              ...extra,
              "--as",
              as,
            ]);
            const answer = res.stdout.trim();
            assert(answer === "yes" || answer === "no", `can-i ${verb} ${resource}: ${res.stderr}`);
            return answer === "yes";
          };
          const scriptruns = `${PLURAL}.${GROUP}`;
          // The API server's RBAC view follows the applied Roles after a moment.
          await waitFor(async () => await can("list", scriptruns, "default"), {
            what: "the applied RoleBinding to take effect",
          });
          const served: [string, string, string?][] = [
            ["list", scriptruns],
            ["patch", scriptruns, "status"],
            ["list", "configmaps"],
            ["create", "configmaps"],
            ["delete", "configmaps"],
            ["list", "jobs.batch"],
            ["create", "jobs.batch"],
            ["delete", "jobs.batch"],
            ["list", "pods"],
            ["create", "events"],
          ];
          for (const [verb, resource, sub] of served) {
            assert(
              await can(verb, resource, "default", sub),
              `cannot ${verb} ${resource} in default`,
            );
            for (const where of ["kube-system", "script-operator", "*"]) {
              assert(
                !(await can(verb, resource, where, sub)),
                `can ${verb} ${resource} in ${where}`,
              );
            }
          }
          for (const where of ["default", "kube-system", "*"]) {
            for (const [verb, resource] of [["get", "secrets"], ["create", "pods"]]) {
              assert(!(await can(verb, resource, where)), `can ${verb} ${resource} in ${where}`);
            }
          }
          assert(await can("update", "leases.coordination.k8s.io", "script-operator"), "no Lease");
          assert(
            !(await can("update", "leases.coordination.k8s.io", "default")),
            "Lease in default",
          );
        },
      );

      await t.step("the Deployment's pod is admitted (and a violating one is not)", async () => {
        const deployment = await kubectlJson<K8sObject>([
          "-n",
          "script-operator",
          "get",
          "deployment",
          "script-operator",
        ]);
        // No replicaset controller may run in the test control plane, so the pod the
        // ReplicaSet would create is created here from the Deployment's own template.
        const pod = (name: string, spec: K8sObject["spec"]) =>
          JSON.stringify({
            apiVersion: "v1",
            kind: "Pod",
            metadata: {
              name,
              namespace: "script-operator",
              labels: { "app.kubernetes.io/name": "admission-check" },
            },
            spec,
          });
        const spec = deployment.spec.template.spec;
        const admitted = await kubectl(["create", "-f", "-"], {
          stdin: pod("script-operator-admission", spec),
        });
        assertEquals(admitted.code, 0, `restricted admission rejected the pod: ${admitted.stderr}`);
        const bad = structuredClone(spec);
        bad.containers[0].securityContext.allowPrivilegeEscalation = true;
        const rejected = await kubectl(["create", "-f", "-"], {
          stdin: pod("script-operator-violating", bad),
        });
        assert(
          rejected.code !== 0 && rejected.stderr.includes("PodSecurity"),
          `a pod allowing privilege escalation was not rejected: ${rejected.stderr}`,
        );
      });

      await t.step("the pod runs on the kwok node", async () => {
        if (jobsMode !== "kwok") {
          // A real cluster would pull the placeholder image; without nodes nothing schedules.
          console.log(`note: pod start not checked (SCRIPT_OPERATOR_TEST_JOBS=${jobsMode})`);
          return;
        }
        // kwok marks the pod Running without executing the image: this proves scheduling onto
        // the node and admission, not that the binary starts.
        const running = async (name: string) => {
          const p = await kubectlJson<Pod>(["-n", "script-operator", "get", "pod", name]);
          return p.status.phase === "Running" && p.spec.nodeName ? p : undefined;
        };
        const pod = await waitFor(() => running("script-operator-admission"), {
          what: "the Deployment's pod to be Running",
          timeoutMs: 60_000,
        });
        assertEquals(pod.spec.nodeName, "kwok-node-0");
        // The deployment and replicaset controllers run here: the Deployment's own pod too.
        const own = await waitFor(async () => {
          const pods = await kubectlJson<{ items: Pod[] }>([
            "-n",
            "script-operator",
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/name=script-operator",
          ]);
          return pods.items.find((p) => p.status.phase === "Running" && p.spec.nodeName);
        }, {
          what: "the Deployment's own pod (via its ReplicaSet) to be Running",
          timeoutMs: 60_000,
        });
        assertEquals(own.spec.nodeName, "kwok-node-0");
      });
    } finally {
      await kubectl([
        "delete",
        "namespace",
        "script-operator",
        "--wait=false",
        "--ignore-not-found",
      ]);
      for (const kind of ["clusterrolebinding", "clusterrole"]) {
        await kubectl(["delete", kind, "script-operator", "--ignore-not-found"]);
      }
      await kubectl([
        "delete",
        "clusterrole",
        "script-operator-edit",
        "script-operator-view",
        "--ignore-not-found",
      ]);
      // Cluster-scoped, so not removed with the namespace; later tests must not meet it.
      await kubectl(["delete", "-f", `${ROOT}deploy/policy.yaml`, "--ignore-not-found"]);
      await kubectl([
        "delete",
        "role,rolebinding",
        "script-operator",
        "-n",
        "default",
        "--ignore-not-found",
      ]);
    }
  },
);
