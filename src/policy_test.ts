import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { DEFAULTS, desiredJob, effectiveSecurityContext } from "./desired.ts";
import { checkPolicy, DEFAULT_POLICY, imageAllowed, type Policy } from "./policy.ts";
import { script, scriptRun } from "./test_fixtures.ts";
import type { ScriptRunSpec, SecurityContext } from "./types.ts";

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
