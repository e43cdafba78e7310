/**
 * The manifests in deploy/ agree with each other, with the operator's CLI and with the Dockerfile:
 * the Deployment's args, probes, resources and restricted Pod Security; namespace.yaml and
 * sample.yaml; policy.yaml's admission policy holding the operator's own default policy.
 * The kustomize install itself (kustomization.yaml, server dry-run, `apply -k`) is
 * tests/kustomize_test.ts.
 * @module
 */
import { assert, assertEquals } from "./harness/assert.ts";
import { parseCli } from "../src/runtime/cli.ts";
import { parseBindAddress } from "../src/runtime/flags.ts";
import { DEFAULT_POLICY, UNSAFE_ENV_NAMES, UNSAFE_ENV_PREFIXES } from "../src/desired/policy.ts";
import { loadScripts } from "../src/runtime/scripts.ts";
import { GROUP, KIND, VERSION } from "../src/types.ts";
import { type K8sObject, manifests, only, readText } from "./harness/manifests.ts";
import { dockerfile } from "./harness/dockerfile.ts";

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
