/**
 * Builders shared by the unit tests. Pure.
 * @module
 */
import { sha256Hex } from "../../src/desired/hash.ts";
import type { Job, JobCondition, Script, ScriptRun, ScriptRunSpec } from "../../src/types.ts";

/** A script as loadScripts() would return it. */
export function script(name = "task.sh", content = "#!/bin/sh\necho hi\n"): Script {
  return { name, content, sha256: sha256Hex(content), size: content.length };
}

/** A map of scripts by name. */
export function scripts(...list: Script[]): Map<string, Script> {
  return new Map((list.length ? list : [script()]).map((s) => [s.name, s]));
}

/** A ScriptRun as read from the API server. */
export function scriptRun(spec: Partial<ScriptRunSpec> = {}, name = "demo"): ScriptRun {
  return {
    apiVersion: "script-operator.dev/v1alpha1",
    kind: "ScriptRun",
    metadata: { name, namespace: "ns", uid: "uid-1", generation: 1, resourceVersion: "7" },
    spec: { script: "task.sh", ...spec },
  };
}

/** A Job with the given name, status counters and true conditions. */
export function job(
  name: string,
  status: {
    active?: number;
    ready?: number;
    conditions?: string[];
    startTime?: string;
    creationTimestamp?: string;
    labels?: Record<string, string>;
  } = {},
  ownerUid = "uid-1",
): Job {
  const conditions: JobCondition[] = (status.conditions ?? []).map((type) => ({
    type,
    status: "True",
    reason: type === "Failed" ? "BackoffLimitExceeded" : "CompletionsReached",
    message: type === "Failed"
      ? "Job has reached the specified backoff limit"
      : "Reached expected number of succeeded pods",
    lastTransitionTime: "2026-01-01T00:01:00Z",
  }));
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name,
      namespace: "ns",
      creationTimestamp: status.creationTimestamp ?? "2026-01-01T00:00:00Z",
      labels: status.labels ?? { "app.kubernetes.io/managed-by": "script-operator" },
      ownerReferences: [{
        apiVersion: "script-operator.dev/v1alpha1",
        kind: "ScriptRun",
        name: "demo",
        uid: ownerUid,
        controller: true,
      }],
    },
    status: {
      active: status.active,
      ready: status.ready,
      startTime: status.startTime,
      conditions,
    },
  };
}
