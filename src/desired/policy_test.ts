import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import {
  DEFAULTS,
  desiredJob,
  effectiveResources,
  effectiveSecurityContext,
  quantityValue,
  runHash,
} from "./desired.ts";
import {
  checkPolicy,
  DEFAULT_POLICY,
  imageAllowed,
  imagePatternProblem,
  OPERATOR_SERVICE_ACCOUNT,
  type Policy,
  UNSAFE_ENV_NAMES,
  unsafeEnvName,
} from "./policy.ts";
import { script, scriptRun } from "../../tests/fakes/fixtures.ts";
import type { EnvVar, Resources, ScriptRunSpec, SecurityContext } from "../types.ts";

function refused(spec: Partial<ScriptRunSpec>, policy: Policy = DEFAULT_POLICY) {
  return checkPolicy(scriptRun(spec), policy);
}

Deno.test("checkPolicy(): the default spec, and the restricted default spelled out, are allowed", () => {
  assertEquals(refused({}), undefined);
  assertEquals(
    refused({ image: DEFAULTS.image, securityContext: DEFAULTS.securityContext }),
    undefined,
  );
  assertEquals(refused({ securityContext: {} }), undefined);
  assertEquals(
    refused({ securityContext: { runAsUser: 1000, readOnlyRootFilesystem: true } }),
    undefined,
  );
  assertEquals(
    refused({ securityContext: { seccompProfile: { type: "Localhost", localhostProfile: "p" } } }),
    undefined,
  );
});

Deno.test("checkPolicy(): each privilege is refused by default, naming the field and the flag", () => {
  const cases: [SecurityContext, string][] = [
    [{ runAsUser: 0 }, "spec.securityContext.runAsUser"],
    [{ runAsUser: 0, runAsNonRoot: false }, "spec.securityContext.runAsUser"],
    [{ runAsNonRoot: false }, "spec.securityContext.runAsNonRoot"],
    [{ runAsGroup: 0 }, "spec.securityContext.runAsGroup"],
    [{ runAsUser: 1000, runAsGroup: 0 }, "spec.securityContext.runAsGroup"],
    [{ privileged: true }, "spec.securityContext.privileged"],
    [{ allowPrivilegeEscalation: true }, "spec.securityContext.allowPrivilegeEscalation"],
    [
      { capabilities: { add: ["SYS_ADMIN", "NET_ADMIN"] } },
      "spec.securityContext.capabilities.add",
    ],
    [{ capabilities: { add: ["ALL"] } }, "spec.securityContext.capabilities.add"],
    [{ capabilities: { drop: [] } }, "spec.securityContext.capabilities.drop"],
    [{ seccompProfile: { type: "Unconfined" } }, "spec.securityContext.seccompProfile.type"],
  ];
  for (const [securityContext, field] of cases) {
    const r = refused({ securityContext });
    assert(r, `${JSON.stringify(securityContext)} was allowed`);
    assertEquals(r.field, field);
    assert(r.message.includes(field), r.message);
    assert(r.message.includes("--allow-privileged-scripts"), r.message);
    // With the flag, the same spec is allowed.
    const open = { ...DEFAULT_POLICY, allowPrivileged: true };
    assertEquals(refused({ securityContext }, open), undefined);
  }
});

Deno.test("checkPolicy(): images must match an exact name or a prefix ending in '*'", () => {
  const r = refused({ image: "evil.example/shell:latest" });
  assertEquals(r?.field, "spec.image");
  assert(r!.message.includes('"evil.example/shell:latest"'), r!.message);
  assert(r!.message.includes("--allowed-image=evil.example/shell:latest"), r!.message);
  assert(r!.message.includes("busybox:1.36"), r!.message);
  const policy = { ...DEFAULT_POLICY, allowedImages: ["busybox:1.36", "registry.example/tools/*"] };
  assertEquals(refused({ image: "registry.example/tools/sh:1" }, policy), undefined);
  assertEquals(refused({ image: "registry.example/toolsX" }, policy)?.field, "spec.image");
  assertEquals(refused({ image: "busybox:1.37" }, policy)?.field, "spec.image");
  assert(imageAllowed("a/b:1", ["*"]));
  assert(!imageAllowed("a/b:1", []));
});

Deno.test("checkPolicy(): serviceAccountName only when allowed", () => {
  const none = refused({ serviceAccountName: "admin" });
  assertEquals(none?.field, "spec.serviceAccountName");
  assert(none!.message.includes("none may be set"), none!.message);
  assert(none!.message.includes("--allowed-service-account=admin"), none!.message);
  const policy = { ...DEFAULT_POLICY, allowedServiceAccounts: ["runner"] };
  assertEquals(refused({ serviceAccountName: "runner" }, policy), undefined);
  assertEquals(refused({ serviceAccountName: "admin" }, policy)?.field, "spec.serviceAccountName");
  const any = { ...DEFAULT_POLICY, allowedServiceAccounts: ["*"] };
  assertEquals(refused({ serviceAccountName: "admin" }, any), undefined);
  // Privileged flags do not open images or accounts.
  const privileged = { ...DEFAULT_POLICY, allowPrivileged: true };
  assertEquals(
    refused({ serviceAccountName: "admin" }, privileged)?.field,
    "spec.serviceAccountName",
  );
  assertEquals(refused({ image: "x:1" }, privileged)?.field, "spec.image");
});

Deno.test("effectiveSecurityContext(): each call returns its own copy, changing it leaves the default alone", () => {
  const a = effectiveSecurityContext({});
  a.capabilities!.drop!.push("X");
  a.seccompProfile!.type = "Unconfined";
  a.runAsUser = 1;
  const b = effectiveSecurityContext({});
  assertEquals(b, DEFAULTS.securityContext);
  assertEquals(DEFAULTS.securityContext.capabilities.drop, ["ALL"]);
  assertEquals(DEFAULTS.securityContext.seccompProfile.type, "RuntimeDefault");
});

Deno.test("effectiveSecurityContext(): fields overlay the restricted default, {} keeps it whole", () => {
  assertEquals(effectiveSecurityContext(undefined), DEFAULTS.securityContext);
  assertEquals(effectiveSecurityContext({}), DEFAULTS.securityContext);
  assertEquals(effectiveSecurityContext({ capabilities: {} }), DEFAULTS.securityContext);
  assertEquals(effectiveSecurityContext({ runAsUser: 1000 }), {
    ...DEFAULTS.securityContext,
    runAsUser: 1000,
  });
  assertEquals(
    effectiveSecurityContext({ capabilities: { add: ["NET_BIND_SERVICE"] } }).capabilities,
    {
      add: ["NET_BIND_SERVICE"],
      drop: ["ALL"],
    },
  );
  // UID 0 without runAsNonRoot drops the default's runAsNonRoot: true, which would contradict it.
  const root = effectiveSecurityContext({ runAsUser: 0 });
  assertEquals([root.runAsUser, root.runAsNonRoot], [0, undefined]);
  // The Job gets the merged context: a pruned {} never removes the default.
  const job = desiredJob(scriptRun({ securityContext: {} }), script(), "h");
  assertEquals(job.spec!.template.spec.containers[0].securityContext, DEFAULTS.securityContext);
});

Deno.test("checkPolicy(): an image prefix must end at '/' or ':', or it matches nothing", () => {
  // The trap: busybox* also matches another registry's image.
  assert(imagePatternProblem("busybox*")?.includes("busybox.attacker.example/x"));
  assert(!imageAllowed("busybox.attacker.example/x", ["busybox*"]));
  assert(!imageAllowed("busybox:1.36", ["busybox*"]));
  for (const ok of ["busybox:*", "registry.example/tools/*", "*", "busybox:1.36"]) {
    assertEquals(imagePatternProblem(ok), undefined, ok);
  }
  assert(imageAllowed("busybox:1.37", ["busybox:*"]));
  assert(!imageAllowed("busybox.attacker.example/x", ["busybox:*"]));
  assert(imageAllowed("registry.example/tools/sh:1", ["registry.example/tools/*"]));
  assert(!imageAllowed("registry.example/tools.attacker.example/sh", ["registry.example/tools/*"]));
  assert(imagePatternProblem("a/*/b")?.includes("before its end"));
});

Deno.test("checkPolicy(): secretKeyRef only names Secrets the policy allows", () => {
  const secretEnv = (name: string): EnvVar[] => [
    { name: "PLAIN", value: "x" },
    { name: "FROM_CM", valueFrom: { configMapKeyRef: { name: "settings", key: "k" } } },
    { name: "TOKEN", valueFrom: { secretKeyRef: { name, key: "token" } } },
  ];
  const r = refused({ env: secretEnv("creds") });
  assertEquals(r?.field, "spec.env.valueFrom.secretKeyRef");
  for (
    const part of [
      "variable TOKEN",
      'Secret "creds"',
      "none may be named",
      "--allowed-secret=creds",
    ]
  ) {
    assert(r!.message.includes(part), r!.message);
  }
  // ConfigMap keys stay allowed.
  assertEquals(refused({ env: secretEnv("creds").slice(0, 2) }), undefined);
  const policy = { ...DEFAULT_POLICY, allowedSecrets: ["creds", "db-*"] };
  assertEquals(refused({ env: secretEnv("creds") }, policy), undefined);
  assertEquals(refused({ env: secretEnv("db-main") }, policy), undefined);
  assertEquals(refused({ env: secretEnv("credsX") }, policy)?.field, r!.field);
  assert(refused({ env: secretEnv("other") }, policy)!.message.includes("allowed: creds, db-*"));
  // --allow-privileged-scripts does not open Secrets.
  const privileged = { ...DEFAULT_POLICY, allowPrivileged: true };
  assertEquals(refused({ env: secretEnv("creds") }, privileged)?.field, r!.field);
});

Deno.test("checkPolicy(): env names that make an interpreter run other code are refused", () => {
  const names = [
    ...UNSAFE_ENV_NAMES,
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONWARNINGS",
    "PERL5OPT",
    "PERL5LIB",
    "BASH_FUNC_x",
  ];
  for (const name of names) {
    assert(unsafeEnvName(name), name);
    // A value or a ConfigMap key: the name is what makes it unsafe.
    for (
      const e of [{ name, value: "$(id)" }, {
        name,
        valueFrom: { configMapKeyRef: { name: "c", key: "k" } },
      }]
    ) {
      const r = refused({ env: [{ name: "OK", value: "1" }, e] });
      assertEquals(r?.field, "spec.env.name", name);
      assert(r!.message.includes(`variable ${name} is not allowed`), r!.message);
      assert(r!.message.includes("run other code"), r!.message);
      assert(r!.message.includes("--allow-privileged-scripts"), r!.message);
      assertEquals(refused({ env: [e] }, { ...DEFAULT_POLICY, allowPrivileged: true }), undefined);
    }
  }
  for (const name of ["ATTEMPTS", "DELAY", "path", "MY_PATH", "ENVIRONMENT", "LD", "PYTHO"]) {
    assert(!unsafeEnvName(name), name);
    assertEquals(refused({ env: [{ name, value: "1" }] }), undefined, name);
  }
});

Deno.test("checkPolicy(): '*' ServiceAccounts leave out the operator's own unless it is named", () => {
  const any = { ...DEFAULT_POLICY, allowedServiceAccounts: ["*"] };
  const r = refused({ serviceAccountName: OPERATOR_SERVICE_ACCOUNT }, any);
  assertEquals(r?.field, "spec.serviceAccountName");
  assert(r!.message.includes("'*' leaves out the operator's own"), r!.message);
  assert(r!.message.includes(`--allowed-service-account=${OPERATOR_SERVICE_ACCOUNT}`));
  assertEquals(refused({ serviceAccountName: "runner" }, any), undefined);
  const named = { ...DEFAULT_POLICY, allowedServiceAccounts: ["*", OPERATOR_SERVICE_ACCOUNT] };
  assertEquals(refused({ serviceAccountName: OPERATOR_SERVICE_ACCOUNT }, named), undefined);
});

Deno.test("effectiveResources(): each request and limit keeps its default unless given", () => {
  const d = DEFAULTS.resources;
  assertEquals(effectiveResources(undefined), d);
  // resources: {} used to give a BestEffort pod without limits.
  assertEquals(effectiveResources({}), d);
  assertEquals(effectiveResources({ requests: {}, limits: {} }), d);
  assertEquals(effectiveResources({ limits: { cpu: "200m" } }), {
    requests: d.requests,
    limits: { cpu: "200m", memory: d.limits.memory },
  });
  // A request above the default limit raises that limit; a limit below the request lowers it.
  assertEquals(effectiveResources({ requests: { memory: "1Gi" } }), {
    requests: { cpu: d.requests.cpu, memory: "1Gi" },
    limits: { cpu: d.limits.cpu, memory: "1Gi" },
  });
  assertEquals(effectiveResources({ limits: { cpu: "10m" } }), {
    requests: { cpu: "10m", memory: d.requests.memory },
    limits: { cpu: "10m", memory: d.limits.memory },
  });
  const full: Resources = {
    requests: { cpu: "1", memory: "1G" },
    limits: { cpu: "2", memory: "2G" },
  };
  assertEquals(effectiveResources(full), full);
  const job = desiredJob(scriptRun({ resources: {} }), script(), "h");
  assertEquals(job.spec!.template.spec.containers[0].resources, d);
  assertEquals(
    [quantityValue("100m"), quantityValue("1Gi"), quantityValue("500M"), quantityValue("1e3")],
    [0.1, 2 ** 30, 5e8, 1000],
  );
  assert(Number.isNaN(quantityValue("lots")));
});

Deno.test("runHash(): runs with the CRD's default resources, or all four given, keep their hash", () => {
  // Hashes computed before resources became a field-by-field overlay: existing runs keep their
  // ConfigMap and Job.
  const crdDefaults = scriptRun({
    image: DEFAULTS.image,
    args: [],
    env: [],
    resources: structuredClone(DEFAULTS.resources) as Resources,
    backoffLimit: DEFAULTS.backoffLimit,
    activeDeadlineSeconds: DEFAULTS.activeDeadlineSeconds,
    ttlSecondsAfterFinished: DEFAULTS.ttlSecondsAfterFinished,
    rerunPolicy: DEFAULTS.rerunPolicy,
    securityContext: structuredClone(DEFAULTS.securityContext) as SecurityContext,
    reportOutput: true,
  });
  assertEquals(runHash(crdDefaults, script()), "fd88062a0e");
  assertEquals(runHash(scriptRun(), script()), "fd88062a0e");
  const full = scriptRun({
    resources: { requests: { cpu: "1", memory: "1G" }, limits: { cpu: "2", memory: "2G" } },
  });
  assertEquals(runHash(full, script()), "20f639e39c");
  // resources: {} now resolves to the default, so it runs as the default run does.
  assertEquals(runHash(scriptRun({ resources: {} }), script()), "fd88062a0e");
});

Deno.test("checkPolicy(): limits above 0 always; requests and limits up to --max-cpu/--max-memory", () => {
  for (
    const [resources, field] of [
      [{ limits: { cpu: "0" } }, "spec.resources.limits.cpu"],
      [{ limits: { memory: "0" } }, "spec.resources.limits.memory"],
      [{ requests: { cpu: "0" }, limits: { cpu: "0" } }, "spec.resources.limits.cpu"],
    ] as [Resources, string][]
  ) {
    const r = refused({ resources });
    assertEquals(r?.field, field, JSON.stringify(resources));
    assert(r!.message.includes("0 means no limit"), r!.message);
    // No flag opens it.
    assertEquals(
      refused({ resources }, { ...DEFAULT_POLICY, allowPrivileged: true })?.field,
      field,
    );
  }
  // Requests of 0 are fine: the limits stay.
  assertEquals(refused({ resources: { requests: { cpu: "0", memory: "0" } } }), undefined);
  // Without a maximum, any positive quantity.
  assertEquals(refused({ resources: { limits: { cpu: "64", memory: "1Ti" } } }), undefined);
  const capped: Policy = { ...DEFAULT_POLICY, maxCpu: "2", maxMemory: "4Gi" };
  assertEquals(refused({}, capped), undefined);
  assertEquals(
    refused({ resources: { requests: { cpu: "2" }, limits: { cpu: "2", memory: "4Gi" } } }, capped),
    undefined,
  );
  const cases: [Resources, string][] = [
    [{ limits: { cpu: "2500m" } }, "spec.resources.limits.cpu"],
    [{ requests: { cpu: "3" } }, "spec.resources.requests.cpu"],
    [{ limits: { memory: "5G" } }, "spec.resources.limits.memory"],
    [{ requests: { memory: "8Gi" } }, "spec.resources.requests.memory"],
  ];
  for (const [resources, field] of cases) {
    const r = refused({ resources }, capped);
    assertEquals(r?.field, field, JSON.stringify(resources));
    assert(r!.message.includes("is above the maximum"), r!.message);
    assert(r!.message.includes(field.endsWith("cpu") ? "--max-cpu" : "--max-memory"), r!.message);
  }
});
