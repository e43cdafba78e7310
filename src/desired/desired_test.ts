import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import {
  childName,
  DEFAULTS,
  defaultSecurityContext,
  desiredConfigMap,
  desiredJob,
  escapeDollar,
  MAX_CHILD_NAME,
  runHash,
  SCRIPT_FILE_MODE,
} from "./desired.ts";
import { script, scriptRun } from "../../tests/fakes/fixtures.ts";
import type { ScriptRunSpec, SecurityContext } from "../types.ts";

Deno.test("desiredConfigMap() holds exactly the script, immutable, owned by the ScriptRun", () => {
  const run = scriptRun();
  const s = script();
  const hash = runHash(run, s);
  const cm = desiredConfigMap(run, s, hash);
  assertEquals(cm.metadata.name, `demo-${hash}`);
  assertEquals(cm.data, { "task.sh": s.content });
  assertEquals(cm.immutable, true);
  assertEquals(cm.metadata.ownerReferences, [{
    apiVersion: "script-operator.dev/v1alpha1",
    kind: "ScriptRun",
    name: "demo",
    uid: "uid-1",
    controller: true,
    blockOwnerDeletion: true,
  }]);
  assertEquals(cm.metadata.labels?.["app.kubernetes.io/managed-by"], "script-operator");
});

Deno.test("desiredJob() mounts the script read-only with mode 0555 and runs it", () => {
  const run = scriptRun({ args: ["a", "b"], env: [{ name: "X", value: "1" }] });
  const s = script();
  const job = desiredJob(run, s, "abc");
  const pod = job.spec!.template.spec;
  assertEquals(pod.restartPolicy, "Never");
  assertEquals(pod.volumes, [{
    name: "script",
    configMap: { name: "demo-abc", defaultMode: 0o555 },
  }]);
  assertEquals(SCRIPT_FILE_MODE, 365);
  const c = pod.containers[0];
  assertEquals(c.command, ["/scripts/task.sh"]);
  assertEquals(c.args, ["a", "b"]);
  assertEquals(c.env, [{ name: "X", value: "1" }]);
  assertEquals(c.volumeMounts, [{ name: "script", mountPath: "/scripts", readOnly: true }]);
  assertEquals(c.image, DEFAULTS.image);
  assertEquals(c.resources, DEFAULTS.resources);
  assertEquals(c.securityContext, DEFAULTS.securityContext);
  assertEquals(pod.automountServiceAccountToken, false);
  assertEquals(job.spec!.backoffLimit, 0);
});

Deno.test("desiredJob() keeps $(VAR) literal in args and env", () => {
  const run = scriptRun({ args: ["$(HOME)", "cost $5"], env: [{ name: "A", value: "$(B)" }] });
  const c = desiredJob(run, script(), "h").spec!.template.spec.containers[0];
  assertEquals(c.args, ["$$(HOME)", "cost $$5"]);
  assertEquals(c.env, [{ name: "A", value: "$$(B)" }]);
  assertEquals(escapeDollar("$$"), "$$$$");
});

Deno.test("desiredJob() uses a given service account and security context", () => {
  const run = scriptRun({ serviceAccountName: "runner", securityContext: { runAsUser: 1000 } });
  const pod = desiredJob(run, script(), "h").spec!.template.spec;
  assertEquals(pod.serviceAccountName, "runner");
  assertEquals(pod.automountServiceAccountToken, undefined);
  // The given fields overlay the restricted default; they never replace it as a whole.
  assertEquals(pod.containers[0].securityContext, { ...DEFAULTS.securityContext, runAsUser: 1000 });
});

Deno.test("desiredJob() passes Secret and ConfigMap key references through as valueFrom", () => {
  const run = scriptRun({
    env: [
      { name: "TOKEN", valueFrom: { secretKeyRef: { name: "creds", key: "token" } } },
      {
        name: "MODE",
        valueFrom: { configMapKeyRef: { name: "cfg", key: "mode", optional: true } },
      },
      { name: "PLAIN", value: "$x" },
    ],
  });
  const c = desiredJob(run, script(), "h").spec!.template.spec.containers[0];
  assertEquals(c.env, [
    { name: "TOKEN", valueFrom: { secretKeyRef: { name: "creds", key: "token" } } },
    { name: "MODE", valueFrom: { configMapKeyRef: { name: "cfg", key: "mode", optional: true } } },
    { name: "PLAIN", value: "$$x" },
  ]);
});

Deno.test("runHash() ignores reportOutput (it shapes no Job)", () => {
  const base = runHash(scriptRun(), script());
  assertEquals(runHash(scriptRun({ reportOutput: false }), script()), base);
  assertEquals(runHash(scriptRun({ securityContext: {} }), script()), base);
});

Deno.test("runHash() changes with the script content and with job-shaping spec fields", () => {
  const run = scriptRun();
  const base = runHash(run, script());
  assertEquals(runHash(run, script()), base);
  assert(runHash(run, script("task.sh", "#!/bin/sh\necho other\n")) !== base);
  assert(runHash(scriptRun({ args: ["x"] }), script()) !== base);
  assert(runHash(scriptRun({ image: "alpine:3" }), script()) !== base);
  // Defaults written by the API server do not change the identity.
  assertEquals(runHash(scriptRun({ image: DEFAULTS.image, backoffLimit: 0 }), script()), base);
  assert(runHash(scriptRun({}, "other"), script()) !== base);
});

Deno.test("childName() stays a valid 63-character name for a 60-character ScriptRun", () => {
  const long = "a".repeat(50) + "-" + "b".repeat(9);
  assertEquals(long.length, 60);
  const name = childName(long, "0123456789");
  assert(name.length <= MAX_CHILD_NAME, name);
  assert(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name), name);
  assert(name.endsWith("-0123456789"));
  // A cut that would end in '-' drops it.
  assertEquals(childName("x".repeat(51) + "-yyy", "0123456789"), "x".repeat(51) + "-0123456789");
  assertEquals(childName("short", "0123456789"), "short-0123456789");
});

/** The pod spec of the Job of a plain ScriptRun (no spec but the script), in each mode. */
function podSpecOf(platformAssignsUid: boolean, spec: Partial<ScriptRunSpec> = {}) {
  return desiredJob(scriptRun(spec), script(), "abc", { platformAssignsUid }).spec!.template.spec;
}

/** The pod spec both modes share; `securityContext` is the container's. */
function expectedPodSpec(securityContext: SecurityContext) {
  return {
    restartPolicy: "Never",
    automountServiceAccountToken: false,
    volumes: [{ name: "script", configMap: { name: "demo-abc", defaultMode: 0o555 } }],
    containers: [{
      name: "script",
      image: "busybox:1.36",
      command: ["/scripts/task.sh"],
      args: [],
      env: [],
      resources: {
        requests: { cpu: "50m", memory: "250M" },
        limits: { cpu: "100m", memory: "500M" },
      },
      securityContext,
      volumeMounts: [{ name: "script", mountPath: "/scripts", readOnly: true }],
      terminationMessagePolicy: "FallbackToLogsOnError",
    }],
  };
}

Deno.test("desiredJob(): by default the pod runs as UID and GID 65532 under the restricted profile", () => {
  assertEquals(
    podSpecOf(false),
    expectedPodSpec({
      runAsNonRoot: true,
      runAsUser: 65532,
      runAsGroup: 65532,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
      seccompProfile: { type: "RuntimeDefault" },
    }),
  );
  assertEquals(
    desiredJob(scriptRun(), script(), "abc"),
    desiredJob(scriptRun(), script(), "abc", {}),
  );
});

Deno.test("desiredJob() with platformAssignsUid: no runAsUser, runAsGroup or fsGroup; still non-root and restricted", () => {
  // No pod-level securityContext at all (so no fsGroup); the container names no UID or GID.
  assertEquals(
    podSpecOf(true),
    expectedPodSpec({
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
      seccompProfile: { type: "RuntimeDefault" },
    }),
  );
  // A read-only root filesystem the ScriptRun asks for is kept, as in the default mode.
  assertEquals(
    podSpecOf(true, { securityContext: { readOnlyRootFilesystem: true } }),
    expectedPodSpec({
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
      seccompProfile: { type: "RuntimeDefault" },
      readOnlyRootFilesystem: true,
    }),
  );
});

Deno.test("desiredJob() with platformAssignsUid keeps a UID or GID the ScriptRun sets", () => {
  const c = podSpecOf(true, { securityContext: { runAsUser: 1000, runAsGroup: 3000 } })
    .containers[0];
  assertEquals(c.securityContext, {
    runAsNonRoot: true,
    runAsUser: 1000,
    runAsGroup: 3000,
    allowPrivilegeEscalation: false,
    capabilities: { drop: ["ALL"] },
    seccompProfile: { type: "RuntimeDefault" },
  });
  // What the CRD stores when securityContext is left out names no UID: the operator decides.
  const stored = defaultSecurityContext({ platformAssignsUid: true });
  assertEquals(podSpecOf(true, { securityContext: stored }), podSpecOf(true));
  assertEquals(podSpecOf(false, { securityContext: stored }), podSpecOf(false));
});

Deno.test("runHash(): platformAssignsUid gives another Job (and identity); off, the identity is unchanged", () => {
  const run = scriptRun();
  const base = runHash(run, script());
  assertEquals(runHash(run, script(), { platformAssignsUid: false }), base);
  assert(runHash(run, script(), { platformAssignsUid: true }) !== base);
  // A ScriptRun stored with the CRD's default (no UID) has the same identity as one without.
  const stored = scriptRun({
    securityContext: defaultSecurityContext({ platformAssignsUid: true }),
  });
  assertEquals(runHash(stored, script()), base);
  assertEquals(runHash(scriptRun({ securityContext: DEFAULTS.securityContext }), script()), base);
});
