/**
 * plan(), then the lookups it asks for (pods, a Job by name, Job events), then plan() again: the
 * observe half of a reconcile that needs the API server. Reads only; no writes.
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Kube } from "../api/port.ts";
import { controllerUid } from "../api/owner.ts";
import { type Observed, type Plan, plan } from "../desired/plan.ts";
import type { PodOptions } from "../desired/desired.ts";
import type { Policy } from "../desired/policy.ts";
import type { Script, ScriptRun } from "../types.ts";
import type { JobWarnings } from "./job_warnings.ts";
import { fresh, NONE, predecessorOf, withName } from "./observe.ts";

/** What the lookups need. */
export interface LookupContext {
  kube: Kube;
  log: Logger;
  /** The run's log fields. */
  fields: Record<string, unknown>;
  scripts: Map<string, Script>;
  policy: Policy;
  /** How Job pods are built beyond the spec. */
  pod: PodOptions;
  /** The time the plan is made at (RFC 3339, seconds). */
  now: () => string;
  jobWarnings: JobWarnings;
}

/** Plans `run`, looking up what the plan asks for (at most once each), and plans again. */
export async function planWithLookups(
  run: ScriptRun,
  observed: Observed,
  ctx: LookupContext,
): Promise<Plan> {
  const namespace = run.metadata.namespace ?? "default";
  const { kube, log, scripts, policy, pod, fields } = ctx;
  let p = plan(run, { scripts, observed, now: ctx.now(), policy, pod });
  for (let round = 0; round < 3 && p.needs.length > 0; round++) {
    for (const need of p.needs) {
      if (need === "job" && !observed.jobLookedUp) {
        observed.jobLookedUp = true;
        // Jobs that pods of this run name but the label-selected lists lack.
        const known = new Set(observed.jobs.map((j) => j.metadata.name));
        const missing = new Set(
          (observed.pods ?? []).map((pod) => pod.jobName).filter((n): n is string =>
            !!n && !known.has(n)
          ),
        );
        for (const name of missing) {
          const job = await kube.getJob(namespace, name);
          if (job && controllerUid(job) === run.metadata.uid) observed.jobs.push(job);
          else if (job && name === p.childName) {
            if (predecessorOf(job, run)) {
              observed.predecessors = withName(observed.predecessors ?? NONE, name);
            } else observed.foreignJobs = withName(observed.foreignJobs, name);
          }
        }
      } else if (need === "pods" && observed.pods === undefined) {
        observed.pods = await kube.listRunPods(namespace, run.metadata.uid ?? "");
      } else if (need === "jobEvents" && observed.jobEvents === undefined && p.childName) {
        try {
          observed.jobEvents = (await ctx.jobWarnings.of(namespace)).get(p.childName) ?? [];
        } catch (error) {
          // Events explain a wait; without them the status still says the pod has not started.
          log.debug("Job events not readable", {
            ...fields,
            error: (error as Error).message,
          });
          observed.jobEvents = [];
        }
      }
    }
    p = plan(run, { scripts, observed, now: ctx.now(), policy, pod });
  }
  if (
    observed.podsCached && p.actions.some((a) => a.type === "createJob") && !fresh(run, observed)
  ) {
    // The one-Job rule is checked against the cluster itself, not a cache that may lag: read
    // the run's pods before creating a Job for a run that had Jobs before.
    observed.pods = await kube.listRunPods(namespace, run.metadata.uid ?? "");
    observed.podsCached = false;
    observed.jobLookedUp = false;
    return await planWithLookups(run, observed, ctx);
  }
  return p;
}
