import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { compactConfigMap, compactJob, compactScriptRun } from "./compact.ts";
import { compactPod } from "./view.ts";

const managedFields = [{ manager: "kubectl", operation: "Update", fieldsV1: { "f:data": {} } }];
const owner = {
  apiVersion: "script-operator.dev/v1alpha1",
  kind: "ScriptRun",
  name: "demo",
  uid: "u1",
  controller: true,
  blockOwnerDeletion: true,
};

Deno.test("compactScriptRun() keeps metadata, spec and status; drops managedFields and last-applied", () => {
  const raw = {
    apiVersion: "script-operator.dev/v1alpha1",
    kind: "ScriptRun",
    metadata: {
      name: "demo",
      namespace: "ns",
      uid: "u1",
      generation: 2,
      resourceVersion: "9",
      creationTimestamp: "2026-01-01T00:00:00Z",
      labels: { a: "b" },
      annotations: { "kubectl.kubernetes.io/last-applied-configuration": "{...}", keep: "me" },
      managedFields,
      finalizers: ["x"],
    },
    spec: { script: "task.sh" },
    status: { phase: "Running" },
  };
  assertEquals(compactScriptRun(raw), {
    apiVersion: "script-operator.dev/v1alpha1",
    kind: "ScriptRun",
    metadata: {
      name: "demo",
      namespace: "ns",
      uid: "u1",
      generation: 2,
      resourceVersion: "9",
      creationTimestamp: "2026-01-01T00:00:00Z",
      labels: { a: "b" },
      annotations: { keep: "me" },
    },
    spec: { script: "task.sh" },
    status: { phase: "Running" },
  });
});

Deno.test("compactJob() drops the spec and managedFields, keeps the status the plan reads", () => {
  const raw = {
    metadata: {
      name: "demo-abc",
      namespace: "ns",
      uid: "j1",
      resourceVersion: "5",
      labels: { l: "v" },
      ownerReferences: [owner],
      managedFields,
    },
    spec: { template: { spec: { containers: [{ name: "script" }] } } },
    status: { active: 1, ready: 0, startTime: "2026-01-01T00:00:00Z", uncountedTerminatedPods: {} },
  };
  assertEquals(compactJob(raw), {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name: "demo-abc",
      namespace: "ns",
      uid: "j1",
      resourceVersion: "5",
      labels: { l: "v" },
      ownerReferences: [{
        apiVersion: "script-operator.dev/v1alpha1",
        kind: "ScriptRun",
        name: "demo",
        uid: "u1",
        controller: true,
      }],
    },
    status: { active: 1, ready: 0, startTime: "2026-01-01T00:00:00Z" },
  });
});

Deno.test("compactConfigMap() keeps metadata only, even from a full object", () => {
  const cm = compactConfigMap({
    kind: "ConfigMap",
    metadata: { name: "c", namespace: "ns", resourceVersion: "3", managedFields },
    data: { "task.sh": "echo" },
  });
  assertEquals(cm, {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name: "c", namespace: "ns", resourceVersion: "3" },
  });
});

Deno.test("compactPod() summarises scheduling and the script container's state", () => {
  const pod = compactPod({
    metadata: {
      name: "demo-abc-x",
      namespace: "ns",
      uid: "p1",
      resourceVersion: "11",
      creationTimestamp: "2026-01-01T00:00:00Z",
      labels: {
        "script-operator.dev/scriptrun-uid": "u1",
        "script-operator.dev/hash": "abc",
        "batch.kubernetes.io/job-name": "demo-abc",
      },
      managedFields,
    },
    spec: { containers: [{ name: "script" }] },
    status: {
      phase: "Pending",
      conditions: [{
        type: "PodScheduled",
        status: "False",
        reason: "Unschedulable",
        message: "0/1",
      }],
      containerStatuses: [
        { name: "sidecar", state: { running: {} } },
        { name: "script", state: { waiting: { reason: "ImagePullBackOff", message: "no" } } },
      ],
    },
  });
  assertEquals(pod, {
    name: "demo-abc-x",
    namespace: "ns",
    uid: "p1",
    resourceVersion: "11",
    runUid: "u1",
    hash: "abc",
    jobName: "demo-abc",
    phase: "Pending",
    creationTimestamp: "2026-01-01T00:00:00Z",
    unschedulable: "0/1",
    waiting: { reason: "ImagePullBackOff", message: "no" },
  });
});
