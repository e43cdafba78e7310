/**
 * Least privilege (issue #9) against the real control plane: creating a ScriptRun must not be a
 * back door to creating any pod. Each unsafe spec is refused twice: at `kubectl apply` by the
 * ValidatingAdmissionPolicy of deploy/policy.yaml, and, with that policy removed, by the
 * operator itself (phase Failed, reason PolicyViolation, no Job). What the policy allows still
 * runs, and the flags widen it.
 * @module
 */
import { parseAllDocuments, stringify } from "yaml";
import { assert, assertEquals } from "./harness/assert.ts";
import { getRun, installCrd, startOperator } from "./harness/operator.ts";
import {
  clusterTest,
  jobsMode,
  kubectl,
  kubectlJson,
  kubectlOk,
  uniqueNamespace,
  waitFor,
} from "./harness/test_env.ts";
import { DEFAULTS } from "../src/desired/desired.ts";
import { MAX_OUTPUT } from "../src/desired/job_status.ts";
import { POLICY_VIOLATION } from "../src/desired/policy.ts";
import type { Job, ScriptRun, ScriptRunSpec } from "../src/types.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const NO_SANITIZE = { sanitizeResources: false, sanitizeOps: false };

/** A ScriptRun spec the default policy refuses, and the field the refusal must name. */
interface UnsafeCase {
  name: string;
  spec: Record<string, unknown>;
  field: string;
  /** Created with `kubectl create --validate=false` (unknown fields are pruned, not refused). */
  unvalidated?: boolean;
  /** What the operator's message says to do, when no flag opens it (default: an --allow flag). */
  fix?: string;
}

/** Every hole of issue #9. */
const UNSAFE: UnsafeCase[] = [
  { name: "root", spec: { securityContext: { runAsUser: 0 } }, field: "runAsUser" },
  { name: "root-group", spec: { securityContext: { runAsGroup: 0 } }, field: "runAsGroup" },
  {
    name: "capabilities",
    spec: { securityContext: { capabilities: { add: ["SYS_ADMIN", "NET_ADMIN", "ALL"] } } },
    field: "capabilities.add",
  },
  {
    name: "unconfined",
    spec: { securityContext: { seccompProfile: { type: "Unconfined" } } },
    field: "seccompProfile.type",
  },
  {
    name: "escalation",
    spec: { securityContext: { allowPrivilegeEscalation: true } },
    field: "allowPrivilegeEscalation",
  },
  {
    name: "privileged",
    spec: { securityContext: { privileged: true } },
    field: "privileged",
    unvalidated: true,
  },
].map((c) => ({ ...c, field: `spec.securityContext.${c.field}` }));
UNSAFE.push(
  { name: "image", spec: { image: "evil.example/shell:latest" }, field: "spec.image" },
  // Every namespace has a "default" ServiceAccount, token included.
  { name: "account", spec: { serviceAccountName: "default" }, field: "spec.serviceAccountName" },
  // A script's error output can print a Secret's value (busybox sleep echoes a bad number).
  {
    name: "secret",
    spec: {
      script: "wait-for-endpoint.sh",
      env: [{ name: "DELAY", valueFrom: { secretKeyRef: { name: "creds", key: "token" } } }],
    },
    field: "spec.env.valueFrom.secretKeyRef",
  },
  // A limit of 0 is no limit.
  {
    name: "unlimited",
    spec: { resources: { limits: { memory: 0 } } },
    field: "spec.resources.limits.memory",
    fix: "give a positive quantity",
  },
  // BASH_ENV with a command substitution, LD_PRELOAD...: other code than the script runs.
  {
    name: "bash-env",
    spec: { env: [{ name: "BASH_ENV", value: "$(id)" }] },
    field: "spec.env.name",
  },
  {
    name: "ld-preload",
    spec: {
      env: [{ name: "LD_PRELOAD", valueFrom: { configMapKeyRef: { name: "c", key: "k" } } }],
    },
    field: "spec.env.name",
  },
);

function manifest(ns: string, name: string, spec: Record<string, unknown>): string {
  return stringify({
    apiVersion: "script-operator.dev/v1alpha1",
    kind: "ScriptRun",
    metadata: { name, namespace: ns },
    spec: { script: "task.sh", ...spec },
  });
}

/** Sets a constant of the admission policy (a CEL literal) by its variable's name. */
async function setVariable(
  admission: { name: string; variable: (name: string) => number },
  name: string,
  value: string,
) {
  const index = admission.variable(name);
  assert(index >= 0, `no variable ${name} in deploy/policy.yaml`);
  await kubectlOk([
    "patch",
    "validatingadmissionpolicy",
    admission.name,
    "--type=json",
    "-p",
    JSON.stringify([{ op: "replace", path: `/spec/variables/${index}/expression`, value }]),
  ]);
}

/** `kubectl apply` (or `create --validate=false`) of a ScriptRun. */
function submit(ns: string, c: UnsafeCase, dryRun = false) {
  const args = c.unvalidated ? ["create", "--validate=false"] : ["apply"];
  if (dryRun) args.push("--dry-run=server");
  return kubectl([...args, "-f", "-"], { stdin: manifest(ns, c.name, c.spec) });
}

async function jobs(ns: string): Promise<Job[]> {
  return (await kubectlJson<{ items: Job[] }>(["-n", ns, "get", "jobs"])).items;
}

/**
 * deploy/policy.yaml, renamed for one test and its binding limited to namespace `ns`, so no other
 * test's ScriptRuns meet it.
 */
async function installAdmissionPolicy(ns: string) {
  const docs = parseAllDocuments(await Deno.readTextFile(`${ROOT}deploy/policy.yaml`))
    .map((d) => d.toJS());
  assertEquals(docs.map((d) => d.kind), [
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
  ]);
  const [policy, binding] = docs;
  policy.metadata.name += `-${ns}`;
  binding.metadata.name += `-${ns}`;
  binding.spec.policyName = policy.metadata.name;
  binding.spec.matchResources = {
    namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": ns } },
  };
  await kubectlOk(["apply", "-f", "-"], {
    stdin: JSON.stringify({ apiVersion: "v1", kind: "List", items: [policy, binding] }),
  });
  const remove = async () => {
    await kubectl(["delete", "validatingadmissionpolicybinding", binding.metadata.name]);
    await kubectl(["delete", "validatingadmissionpolicy", policy.metadata.name]);
  };
  const variable = (name: string) =>
    (policy.spec.variables as { name: string }[]).findIndex((v) => v.name === name);
  return { name: policy.metadata.name as string, variable, remove };
}

clusterTest(
  "security: each unsafe ScriptRun is refused at admission, then by the operator with the admission policy removed",
  { ...NO_SANITIZE },
  async (t) => {
    await installCrd();
    await using ns = await uniqueNamespace("unsafe");
    const admission = await installAdmissionPolicy(ns.name);
    try {
      // The binding takes effect once the API server has loaded it.
      const root = UNSAFE[0];
      await waitFor(async () => (await submit(ns.name, root, true)).stderr.includes(root.field), {
        what: "the admission policy to refuse a root ScriptRun",
      });

      await t.step("admission: refused at kubectl apply, naming the field", async () => {
        for (const c of UNSAFE) {
          const res = await submit(ns.name, c);
          assert(res.code !== 0, `${c.name}: admitted: ${res.stdout}`);
          assert(res.stderr.includes(`denied request: ${c.field}:`), `${c.name}: ${res.stderr}`);
        }
        // resources: {} is admitted: the operator keeps every default request and limit.
        const safe = await kubectl(["apply", "-f", "-"], {
          stdin: manifest(ns.name, "safe", {
            securityContext: { runAsUser: 1000 },
            resources: {},
            env: [{ name: "FROM_CM", valueFrom: { configMapKeyRef: { name: "c", key: "k" } } }],
          }),
        });
        assertEquals(safe.code, 0, safe.stderr);
        const stored = (await kubectlJson<{ items: ScriptRun[] }>(["-n", ns.name, "get", "sr"]))
          .items.map((r) => r.metadata.name);
        assertEquals(stored, ["safe"]);
      });

      await t.step(
        "admission: allowedImages, allowedServiceAccounts, allowedSecrets, maxCpu, maxMemory",
        async () => {
          // busybox* is not a usable prefix (it would match another registry): it matches nothing.
          await setVariable(
            admission,
            "allowedImages",
            "['busybox*', 'busybox:1.36', 'registry.example/tools/*']",
          );
          await setVariable(admission, "allowedServiceAccounts", "['*']");
          await setVariable(admission, "allowedSecrets", "['cred*']");
          await setVariable(admission, "maxCpu", "'2'");
          await setVariable(admission, "maxMemory", "'1Gi'");
          const secret = UNSAFE.find((c) => c.name === "secret")!;
          const admitted = async (spec: Record<string, unknown>) => {
            const res = await submit(ns.name, { name: "probe", spec, field: "" }, true);
            return res.code === 0 ? "" : res.stderr;
          };
          // Each variable is its own update of the policy: wait until the last one (maxMemory) is
          // in force, which holds every earlier one too.
          await waitFor(
            async () =>
              (await submit(ns.name, secret, true)).code === 0 &&
              (await admitted({ resources: { limits: { memory: "2Gi" } } })) !== "",
            { what: "the changed policy (every variable) to be in force" },
          );
          assertEquals(await admitted({ image: "registry.example/tools/sh:1" }), "");
          for (const image of ["busybox.attacker.example/x", "busybox:1.37"]) {
            assert((await admitted({ image })).includes("denied request: spec.image:"), image);
          }
          assertEquals(await admitted({ serviceAccountName: "default" }), "");
          const own = await admitted({ serviceAccountName: "script-operator" });
          assert(own.includes("denied request: spec.serviceAccountName:"), own);
          assert(own.includes("leaves out the operator's own"), own);
          const other = await admitted({
            env: [{ name: "T", valueFrom: { secretKeyRef: { name: "other", key: "k" } } }],
          });
          assert(
            other.includes('variable T: Secret "other" is not allowed (allowed: cred*)'),
            other,
          );
          const big = await admitted({ resources: { limits: { cpu: "3" } } });
          assert(
            big.includes("denied request: spec.resources.limits.cpu: 3 is above the maximum 2"),
            big,
          );
          assertEquals(
            await admitted({ resources: { requests: { cpu: 2 }, limits: { cpu: "2" } } }),
            "",
          );
          const large = await admitted({ resources: { requests: { memory: "2Gi" } } });
          assert(
            large.includes(
              "denied request: spec.resources.requests.memory: 2Gi is above the maximum 1Gi",
            ),
            large,
          );
          await setVariable(admission, "maxCpu", "''");
          await setVariable(admission, "maxMemory", "''");
          await setVariable(admission, "allowedImages", "['busybox:1.36']");
          await setVariable(admission, "allowedServiceAccounts", "[]");
          await setVariable(admission, "allowedSecrets", "[]");
        },
      );

      await t.step("admission: allowPrivilegedScripts opens privileges only", async () => {
        await setVariable(admission, "allowPrivilegedScripts", "true");
        const root = UNSAFE.find((c) => c.name === "root")!;
        await waitFor(async () => (await submit(ns.name, root, true)).code === 0, {
          what: "the changed policy to admit a root ScriptRun",
        });
        for (const name of ["root-group", "bash-env", "ld-preload"]) {
          const res = await submit(ns.name, UNSAFE.find((c) => c.name === name)!, true);
          assertEquals(res.code, 0, `${name}: ${res.stderr}`);
        }
        for (const name of ["image", "secret"]) {
          const c = UNSAFE.find((c) => c.name === name)!;
          const res = await submit(ns.name, c, true);
          assert(res.code !== 0 && res.stderr.includes(`${c.field}:`), res.stderr);
        }
      });
    } finally {
      await admission.remove();
    }

    await t.step("operator: Failed, PolicyViolation, the field named, no Job", async () => {
      // A case no policy variable opens: root was already admitted by allowPrivilegedScripts.
      const unlimited = UNSAFE.find((c) => c.name === "unlimited")!;
      await waitFor(async () => (await submit(ns.name, unlimited, true)).code === 0, {
        what: "the removed admission policy to stop refusing",
      });
      for (const c of UNSAFE) {
        const res = await submit(ns.name, c);
        assertEquals(res.code, 0, `${c.name}: ${res.stderr}`);
      }
      // A field Kubernetes does not know is pruned on the way in: securityContext becomes {}.
      const pruned = await kubectl(["create", "--validate=false", "-f", "-"], {
        stdin: manifest(ns.name, "pruned", { securityContext: { procMount: "Unmasked" } }),
      });
      assertEquals(pruned.code, 0, pruned.stderr);
      assertEquals((await getRun(ns.name, "pruned")).spec.securityContext, {});
      // What the pruning used to hide is now kept and refused by name.
      assertEquals((await getRun(ns.name, "privileged")).spec.securityContext, {
        privileged: true,
      });

      await using op = await startOperator([`--namespace=${ns.name}`, "--interval=500ms"]);
      const policyLine = await op.waitForLog((l) => l.msg === "Policy in force", "the policy");
      assertEquals(policyLine.allowedImages, [DEFAULTS.image]);
      assertEquals(policyLine.allowedServiceAccounts, []);
      assertEquals(policyLine.allowedSecrets, []);
      assertEquals(policyLine.allowPrivilegedScripts, false);
      assertEquals(policyLine.namespaces, [ns.name]);

      for (const c of UNSAFE) {
        const run = await waitFor(async () => {
          const r = await getRun(ns.name, c.name);
          return r.status?.phase ? r : undefined;
        }, { what: `ScriptRun ${c.name} to get a status` });
        assertEquals([run.status?.phase, run.status?.reason], ["Failed", POLICY_VIOLATION], c.name);
        const message = run.status?.message ?? "";
        assert(message.includes(`${c.field}:`), `${c.name}: ${message}`);
        assert(
          message.includes(c.fix ?? "--allow"),
          `${c.name}: the message must name the flag or the fix: ${message}`,
        );
        assertEquals(run.status?.jobName, undefined);
        const failed = run.status?.conditions?.find((x) => x.type === "Failed");
        assertEquals(failed?.reason, POLICY_VIOLATION);
      }
      // The allowed runs got their Jobs; the pruned one runs with the whole restricted default.
      const created = await waitFor(async () => {
        const list = await jobs(ns.name);
        return list.length >= 2 ? list : undefined;
      }, { what: "Jobs of the allowed runs safe and pruned" });
      const owners = created.map((j) => j.metadata.ownerReferences?.[0]?.name).sort();
      assertEquals(owners, ["pruned", "safe"]);
      const prunedJob = created.find((j) => j.metadata.ownerReferences?.[0]?.name === "pruned")!;
      assertEquals(
        prunedJob.spec!.template.spec.containers[0].securityContext,
        DEFAULTS.securityContext,
      );
      const safeJob = created.find((j) => j.metadata.ownerReferences?.[0]?.name === "safe")!;
      assertEquals(safeJob.spec!.template.spec.containers[0].securityContext, {
        ...DEFAULTS.securityContext,
        runAsUser: 1000,
      });
      // resources: {} is stored as given, and the Job still gets every default limit.
      assertEquals((await getRun(ns.name, "safe")).spec.resources, {});
      assertEquals(safeJob.spec!.template.spec.containers[0].resources, DEFAULTS.resources);
      await op.waitForLog(
        (l) => l.msg === "Refused by policy" && l.name === "root",
        "the refusal of root",
      );
      // Still nothing for a refused run a few cycles later.
      await new Promise((r) => setTimeout(r, 1500));
      assertEquals((await jobs(ns.name)).length, 2);
      const configMaps = await kubectlJson<{ items: { metadata: { name: string } }[] }>([
        "-n",
        ns.name,
        "get",
        "configmaps",
        "-l",
        "app.kubernetes.io/managed-by=script-operator",
      ]);
      assertEquals(configMaps.items.length, 2);
      assertEquals(await op.stop(), 0);
    });

    await t.step("admission: a stored unsafe run can be labelled, not edited", async () => {
      const again = await installAdmissionPolicy(ns.name);
      try {
        const root = UNSAFE[0];
        // A new name: for the stored "root", an apply with the same spec is not checked.
        const probe = { ...root, name: "probe" };
        await waitFor(
          async () => (await submit(ns.name, probe, true)).stderr.includes(root.field),
          {
            what: "the re-applied admission policy to refuse a root ScriptRun",
          },
        );
        const same = await submit(ns.name, root);
        assertEquals(same.code, 0, `re-applying an unchanged spec: ${same.stderr}`);
        // Updates that leave the spec alone pass (matchConditions), so cleanup stays possible.
        const label = await kubectl(["-n", ns.name, "label", "scriptrun", "root", "checked=yes"]);
        assertEquals(label.code, 0, label.stderr);
        const edit = await kubectl([
          "-n",
          ns.name,
          "patch",
          "scriptrun",
          "root",
          "--type=merge",
          "-p",
          '{"spec":{"args":["x"]}}',
        ]);
        assert(edit.code !== 0 && edit.stderr.includes(`${root.field}:`), edit.stderr);
      } finally {
        await again.remove();
      }
    });
  },
);

clusterTest(
  "security: what the policy allows still runs; the flags widen it; secrets come by reference",
  { needsJobs: true, ...NO_SANITIZE },
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("allowed");
    await kubectlOk(["-n", ns.name, "create", "serviceaccount", "runner"]);
    await kubectlOk([
      "-n",
      ns.name,
      "create",
      "secret",
      "generic",
      "creds",
      "--from-literal=token=s3cr3t",
    ]);
    const kwok = jobsMode === "kwok";
    const fail = (message: string) =>
      kwok
        ? [
          { name: "KWOK_EXIT_CODE", value: "2" },
          { name: "KWOK_TERMINATION_MESSAGE", value: message },
        ]
        : [];
    const runs: Record<string, Partial<ScriptRunSpec>> = {
      plain: {},
      widened: {
        image: "registry.example/tools/sh:1",
        serviceAccountName: "runner",
        securityContext: { runAsUser: 0, capabilities: { add: ["NET_ADMIN"] } },
        env: [{ name: "PYTHONPATH", value: "/scripts" }],
      },
      // '*' does not reach the operator's own ServiceAccount.
      own: { serviceAccountName: "script-operator" },
      big: { resources: { requests: { cpu: "3" } } },
      secret: {
        env: [{ name: "TOKEN", valueFrom: { secretKeyRef: { name: "creds", key: "token" } } }],
      },
      loud: { script: "wait-for-endpoint.sh", env: fail("x".repeat(3000) + "the end") },
      quiet: {
        script: "wait-for-endpoint.sh",
        env: fail("password=hunter2"),
        reportOutput: false,
      },
    };
    for (const [name, spec] of Object.entries(runs)) {
      await kubectlOk(["apply", "-f", "-"], {
        stdin: manifest(ns.name, name, spec as Record<string, unknown>),
      });
    }
    await using op = await startOperator([
      `--namespace=${ns.name}`,
      "--interval=500ms",
      "--allowed-image=busybox:1.36,registry.example/tools/*",
      "--allowed-service-account=*",
      "--allowed-secret=cred*",
      "--allow-privileged-scripts",
      "--max-cpu=2",
    ]);
    const policyLine = await op.waitForLog((l) => l.msg === "Policy in force", "the policy");
    assertEquals(policyLine.allowedImages, ["busybox:1.36", "registry.example/tools/*"]);
    assertEquals(policyLine.allowedServiceAccounts, ["*"]);
    assertEquals(policyLine.allowedSecrets, ["cred*"]);
    assertEquals(policyLine.allowPrivilegedScripts, true);
    assertEquals([policyLine.maxCpu, policyLine.maxMemory], ["2", "none"]);

    const jobOf = async (name: string) => {
      const run = await waitFor(async () => {
        const r = await getRun(ns.name, name);
        return r.status?.jobName ? r : undefined;
      }, { what: `a Job for ScriptRun ${name}` });
      assert(run.status?.reason !== POLICY_VIOLATION, run.status?.message);
      return kubectlJson<Job>(["-n", ns.name, "get", "job", run.status!.jobName!]);
    };
    const widened = (await jobOf("widened")).spec!.template.spec;
    assertEquals(widened.serviceAccountName, "runner");
    assertEquals(widened.containers[0].image, "registry.example/tools/sh:1");
    const { runAsNonRoot: _, ...rootDefault } = DEFAULTS.securityContext;
    assertEquals(widened.containers[0].securityContext, {
      ...rootDefault,
      runAsUser: 0,
      capabilities: { add: ["NET_ADMIN"], drop: ["ALL"] },
    });
    assertEquals(widened.containers[0].env, [{ name: "PYTHONPATH", value: "/scripts" }]);
    const refusedRun = async (name: string, ...parts: string[]) => {
      const run = await waitFor(async () => {
        const r = await getRun(ns.name, name);
        return r.status?.phase ? r : undefined;
      }, { what: `ScriptRun ${name} to get a status` });
      assertEquals([run.status?.phase, run.status?.reason], ["Failed", POLICY_VIOLATION], name);
      for (const part of parts) assert(run.status?.message?.includes(part), run.status?.message);
      assertEquals(run.status?.jobName, undefined);
    };
    await refusedRun(
      "own",
      "spec.serviceAccountName:",
      "--allowed-service-account=script-operator",
    );
    await refusedRun("big", "spec.resources.requests.cpu: 3 is above the maximum 2", "--max-cpu");
    const secret = (await jobOf("secret")).spec!.template.spec;
    assertEquals(secret.containers[0].env, [
      { name: "TOKEN", valueFrom: { secretKeyRef: { name: "creds", key: "token" } } },
    ]);
    assert(!JSON.stringify(secret).includes("s3cr3t"), "the secret's value is in the Job");

    for (const name of ["plain", "secret"]) {
      await waitFor(async () => (await getRun(ns.name, name)).status?.phase === "Succeeded", {
        what: `ScriptRun ${name} to succeed`,
        timeoutMs: 90_000,
      });
    }
    const failed = async (name: string) =>
      await waitFor(async () => {
        const r = await getRun(ns.name, name);
        return r.status?.phase === "Failed" && r.status.message?.includes("exited with code")
          ? r.status.message
          : undefined;
      }, { what: `ScriptRun ${name} to fail with its exit code`, timeoutMs: 90_000 });
    const quiet = await failed("quiet");
    assert(quiet.includes("script output not reported (spec.reportOutput: false)"), quiet);
    assert(!quiet.includes("hunter2"), quiet);
    const loud = await failed("loud");
    if (kwok) {
      assert(loud.includes(`script output (last ${MAX_OUTPUT} characters): `), loud);
      assert(loud.endsWith("the end"), loud);
      assert(loud.length < MAX_OUTPUT + 300, `${loud.length} characters: ${loud}`);
      // The Events carry the same capped, labelled text (written just after the status).
      type Events = { items: { involvedObject: { name: string }; message: string }[] };
      const events = await waitFor(async () => {
        const list = await kubectlJson<Events>(["-n", ns.name, "get", "events"]);
        const has = (name: string, message: string) =>
          list.items.some((e) => e.involvedObject.name === name && e.message === message);
        return has("quiet", quiet) && has("loud", loud) ? list : undefined;
      }, { what: "the Events of the failed runs quiet and loud" });
      assert(
        !events.items.some((e) => e.message.includes("hunter2")),
        "script output in an Event",
      );
    } else {
      assert(/script output/.test(loud), loud);
    }
    assertEquals(await op.stop(), 0);
  },
);
