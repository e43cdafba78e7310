/**
 * One write of a plan, and what its refusal means: a delete of something gone is done, a create
 * that meets an existing object looks it up (ours without labels, a predecessor's, or someone
 * else's) and asks for a new plan, an invalid object is the spec's problem.
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { KubeError } from "../api/errors.ts";
import type { Kube } from "../api/port.ts";
import { controllerUid } from "../api/owner.ts";
import type { Action, Observed } from "../desired/plan.ts";
import type { ConfigMap, Job, ScriptRun } from "../types.ts";
import { NONE, predecessorOf, withName } from "./observe.ts";

/** What a write needs. */
export interface ExecuteContext {
  kube: Kube;
  log: Logger;
  run: ScriptRun;
  /** Updated with what a refused create found. */
  observed: Observed;
  /** The run's log fields. */
  fields: Record<string, unknown>;
}

/**
 * Performs one write. Returns "replan" when the cluster turned out to differ from what was
 * observed (a create met an existing object), a KubeError when the API server refused the
 * object as invalid, and throws on anything else.
 */
export async function execute(
  action: Action,
  ctx: ExecuteContext,
): Promise<void | "replan" | KubeError> {
  const { kube, log, run, observed, fields } = ctx;
  const namespace = run.metadata.namespace ?? "default";
  try {
    switch (action.type) {
      case "createConfigMap":
        return await kube.createConfigMap(action.object);
      case "createJob":
        return await kube.createJob(action.object);
      case "deleteJob":
        return await kube.deleteJob(namespace, action.name);
      case "deleteConfigMap":
        return await kube.deleteConfigMap(namespace, action.name);
      case "relabel":
        return await kube.relabel(action.kind, namespace, action.name, action.labels);
    }
  } catch (error) {
    if (!(error instanceof KubeError)) throw error;
    // Already gone is what a delete wanted.
    if (error.kind === "notFound" && action.type.startsWith("delete")) return;
    if (
      error.kind === "alreadyExists" &&
      (action.type === "createConfigMap" || action.type === "createJob")
    ) {
      // Ours with its labels removed (so our lists missed it), or someone else's.
      const name = action.object.metadata.name;
      const existing = action.type === "createJob"
        ? await kube.getJob(namespace, name)
        : await kube.getConfigMap(namespace, name);
      const ours = existing && controllerUid(existing) === run.metadata.uid;
      log.debug("Create met an existing object", { ...fields, child: name, ours });
      if (!existing) return "replan"; // gone again meanwhile: plan from scratch
      if (action.type === "createJob") {
        if (ours) observed.jobs.push(existing as Job);
        else if (predecessorOf(existing, run)) {
          observed.predecessors = withName(observed.predecessors ?? NONE, name);
        } else observed.foreignJobs = withName(observed.foreignJobs, name);
      } else {
        if (ours) observed.configMaps.push(existing as ConfigMap);
        else if (predecessorOf(existing, run)) {
          observed.predecessors = withName(observed.predecessors ?? NONE, name);
        } else observed.foreignConfigMaps = withName(observed.foreignConfigMaps, name);
      }
      return "replan";
    }
    if (error.kind === "invalid" && action.type.startsWith("create")) return error;
    throw error;
  }
}
