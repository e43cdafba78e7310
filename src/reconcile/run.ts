/**
 * One reconcile of one ScriptRun: observe (the lookups the plan asks for) → plan → apply → record.
 * Each write is checked against leadership just before it is sent; the status is guarded by the
 * resourceVersion it was planned from. The caller (src/controller/reconciler.ts) holds the per-run state and
 * hands it in with {@linkcode RunContext}.
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Backoff } from "../api/backoff.ts";
import { KubeError } from "../api/errors.ts";
import type { EventNote, Kube } from "../api/port.ts";
import { runKey } from "../api/owner.ts";
import { type Action, invalidSpecStatus, type Observed, type Plan } from "../desired/plan.ts";
import { statusEqual } from "../desired/conditions.ts";
import type { PodOptions } from "../desired/desired.ts";
import type { Policy } from "../desired/policy.ts";
import { REASON } from "../desired/reasons.ts";
import type { RunResult } from "./result.ts";
import { GROUP, KIND, type Script, type ScriptRun, type ScriptRunStatus } from "../types.ts";
import { errorPolicy } from "./error_policy.ts";
import { execute } from "./execute.ts";
import type { Expectations } from "./expectations.ts";
import type { JobWarnings } from "./job_warnings.ts";
import { planWithLookups } from "./lookups.ts";
import { applyToObserved, mayHaveRun } from "./observe.ts";
import { isTransition, logTransition, statusEvent } from "./record.ts";

/** What one reconcile needs: the API, the settings, and the per-run state it reads and updates. */
export interface RunContext {
  kube: Kube;
  log: Logger;
  scripts: Map<string, Script>;
  policy: Policy;
  /** How Job pods are built beyond the spec. */
  pod: PodOptions;
  dryRun: boolean;
  now: () => Date;
  /** Asked before every write: false once this process lost (or may have lost) the Lease. */
  canWrite: () => boolean;
  /** Per-run backoff of failures. */
  backoff: Backoff;
  /** Per-run backoff of status patches refused with 409. */
  conflicts: Backoff;
  expect: Expectations;
  jobWarnings: JobWarnings;
  /**
   * Queues run `name` again (its key is `key`) although nothing it watches changed: a wait on its
   * Job's warnings ended. Only a watched view has wake-ups; without one every cycle plans every
   * run.
   */
  wake?: (namespace: string, name: string, key: string) => void;
  /** Writes are remembered for a watched view to catch up with. */
  remembers: boolean;
  /** The current leadership term: what one term remembers is not trusted in the next. */
  term: () => number;
  /** Told of each status patch the API server accepted, with the status it replaced. */
  recorded?: (run: ScriptRun, before: ScriptRunStatus, status: ScriptRunStatus) => void;
}

/** One reconcile of one run: what it started from and what it did so far. */
interface Attempt {
  /** The run as planned on; replaced by its latest state when that was read. */
  run: ScriptRun;
  observed: Observed;
  fields: Fields;
  /** runKey(namespace, uid). */
  key: string;
  generation?: number;
  nowMs: number;
  /** The leadership term it began in. */
  term: number;
  writes: number;
  /** The run's latest state was read from the API server. */
  verified: boolean;
}

/** The log fields naming the run. */
interface Fields {
  group: string;
  kind: string;
  namespace: string;
  name: string;
  [key: string]: unknown;
}

export async function reconcileRun(
  viewed: ScriptRun,
  observed: Observed,
  ctx: RunContext,
): Promise<RunResult> {
  const { log, backoff } = ctx;
  const namespace = viewed.metadata.namespace ?? "default";
  const fields: Fields = { group: GROUP, kind: KIND, namespace, name: viewed.metadata.name };
  const a: Attempt = {
    run: viewed,
    observed,
    fields,
    key: runKey(viewed.metadata.namespace ?? "", viewed.metadata.uid ?? viewed.metadata.name),
    generation: viewed.metadata.generation,
    nowMs: ctx.now().getTime(),
    term: ctx.term(),
    writes: 0,
    verified: false,
  };
  if (viewed.metadata.deletionTimestamp) {
    log.debug("Skipping ScriptRun being deleted", fields);
    return { result: "success", writes: 0 };
  }
  if (!backoff.ready(a.key, a.nowMs, a.generation)) {
    log.debug("Backing off", fields);
    return { result: "requeue", writes: 0, phase: viewed.status?.phase };
  }
  try {
    const planned = await planVerified(a, ctx);
    if (!planned) {
      log.debug("ScriptRun gone or being deleted, nothing created", fields);
      return { result: "success", writes: 0 };
    }
    const applied = await apply(a, planned, ctx);
    return "result" in applied ? applied : await record(a, applied, ctx);
  } catch (error) {
    const failed = { ...a, phase: a.run.status?.phase };
    return errorPolicy(error, failed, { backoff, log });
  }
}

/**
 * plan(), with its lookups; and before a Job is created for a run that may have run before,
 * the run's latest state from the API server. Undefined when the run is gone meanwhile.
 */
async function planVerified(a: Attempt, ctx: RunContext): Promise<Plan | undefined> {
  const p = await planOf(a, ctx);
  if (a.verified || !p.actions.some((action) => action.type === "createJob")) return p;
  if (!mayHaveRun(a.run, a.observed, p.childName)) return p;
  // A view that lags (a new leader's, or ours right after a status patch) can show a run that
  // already ran as not yet run: its latest state decides, not the view.
  a.verified = true;
  const latest = await ctx.kube.getScriptRun(a.fields.namespace, a.run.metadata.name);
  if (!latest || latest.metadata.uid !== a.run.metadata.uid) return undefined;
  if (latest.metadata.deletionTimestamp) return undefined;
  if (latest.metadata.resourceVersion === a.run.metadata.resourceVersion) return p;
  a.run = latest;
  return await planOf(a, ctx);
}

/** Whether writes of this attempt are remembered: for a view, within the term they began in. */
function remembering(a: Attempt, ctx: RunContext): boolean {
  return ctx.remembers && a.term === ctx.term();
}

/**
 * Performs the plan's writes in order, planning again when the cluster turned out to differ.
 * Returns the plan whose status is to be recorded, or the result when the reconcile ends here.
 */
async function apply(a: Attempt, planned: Plan, ctx: RunContext): Promise<Plan | RunResult> {
  const { log } = ctx;
  let p = planned;
  const childFields = { ...a.fields, child: p.childName, hash: p.hash };
  let replans = 0;
  for (let i = 0; i < p.actions.length; i++) {
    const action = p.actions[i];
    if (ctx.dryRun) {
      log.info(action.message, { ...childFields, ...target(action), dryRun: true });
      continue;
    }
    if (!ctx.canWrite()) {
      return { result: "requeue", writes: a.writes, phase: a.run.status?.phase };
    }
    log.info(action.message, { ...childFields, ...target(action) });
    // Remembered before it is sent: a create that times out may still have happened.
    if (remembering(a, ctx)) ctx.expect.remember(a.key, action, stamp(ctx));
    const outcome = await execute(action, { kube: ctx.kube, log: ctx.log, ...a }).catch(
      (error) => {
        if (error instanceof KubeError && error.code >= 400) ctx.expect.forget(a.key, action);
        throw error;
      },
    );
    if (outcome instanceof KubeError || outcome === "replan") ctx.expect.forget(a.key, action);
    if (outcome === "replan") {
      if (++replans > 3) throw new Error("the cluster keeps changing under this ScriptRun");
      const again = await planVerified(a, ctx);
      if (!again) return { result: "success", writes: a.writes };
      p = again;
      i = -1;
      continue;
    }
    if (outcome instanceof KubeError) {
      p.status = invalidSpecStatus(a.run, p.status, outcome.message, stamp(ctx));
      ctx.backoff.untilChanged(a.key, a.generation);
      log.warn("Spec refused by the API server", {
        ...childFields,
        reason: REASON.InvalidSpec,
        error: outcome.message,
      });
      break;
    }
    a.writes++;
    applyToObserved(a.observed, action, stamp(ctx));
    if (action.event) {
      const message = `${action.message} ${targetName(action)}`;
      await sendEvent(a.run, { type: "Normal", reason: action.reason, message }, {
        ...ctx,
        fields: a.fields,
      });
    }
  }
  return p;
}

/** Records the plan's status (guarded by the version planned from) and when to look again. */
async function record(a: Attempt, p: Plan, ctx: RunContext): Promise<RunResult> {
  const { log, backoff } = ctx;
  const { run, key } = a;
  const childFields = { ...a.fields, child: p.childName, hash: p.hash };
  const before = run.status ?? {};
  if (isTransition(p.status, before)) logTransition(log, p.status, childFields);
  else if (p.status.phase === "Pending" || p.status.phase === "Running") {
    log.debug("Waiting for Job to complete", { ...childFields, phase: p.status.phase });
  }
  if (!statusEqual(run.status, p.status)) {
    if (ctx.dryRun) {
      const { phase, reason } = p.status;
      log.info("Updating status", { ...childFields, phase, reason, dryRun: true });
    } else {
      if (!ctx.canWrite()) {
        return { result: "requeue", writes: a.writes, phase: before.phase };
      }
      const updated = await patchStatus(run, p.status, { ...ctx, fields: childFields });
      if (!updated) {
        // The run changed since it was read: planned again soon, later each time it recurs.
        const delay = ctx.conflicts.failure(key, a.nowMs);
        return { result: "requeue", writes: a.writes, phase: before.phase, retryAfterMs: delay };
      }
      ctx.conflicts.success(key);
      if (remembering(a, ctx)) ctx.expect.wrote(key, run, updated);
      a.writes++;
      ctx.recorded?.(run, before, p.status);
      const note = statusEvent(p.status, before);
      if (note) await sendEvent(run, note, { ...ctx, fields: a.fields });
    }
  }
  if (p.status.reason === REASON.NameConflict) {
    // Retry slowly: the foreign object may go away, but creating again every cycle is noise.
    const delay = backoff.failure(key, a.nowMs, { generation: a.generation });
    return { result: "requeue", writes: a.writes, phase: p.status.phase, retryAfterMs: delay };
  }
  if (p.status.reason !== REASON.InvalidSpec) backoff.success(key);
  awaitWarnings(a, p, ctx);
  return {
    result: "success",
    writes: a.writes,
    phase: p.status.phase,
    retryAfterMs: recheck(p, ctx),
  };
}

/** When the run must be planned again even if nothing it watches changes (ms), if ever. */
function recheck(p: Plan, ctx: RunContext): number | undefined {
  return p.recheckAt ? Math.max(0, Date.parse(p.recheckAt) - ctx.now().getTime()) + 50 : undefined;
}

/**
 * A run whose pod is missing and whose plan read its Job's warnings waits for them to change
 * (Events are not watched; see JobWarnings); any other run stops waiting.
 */
function awaitWarnings(a: Attempt, p: Plan, ctx: RunContext): void {
  const events = a.observed.jobEvents;
  if (events === undefined || p.status.phase !== "Pending" || !p.childName || !ctx.wake) {
    ctx.jobWarnings.stopWaiting(a.key);
    return;
  }
  // The callback holds three strings, not the attempt: thousands of runs wait at once during a
  // burst, and each attempt holds a ScriptRun and everything observed for it.
  const { namespace, name } = a.fields;
  const { key } = a;
  const wake = ctx.wake;
  ctx.jobWarnings.wait(key, namespace, p.childName, events, () => wake(namespace, name, key));
}

/** plan(), then the lookups it asks for (pods, Job events), then plan() again. */
function planOf(a: Attempt, ctx: RunContext): Promise<Plan> {
  const { kube, log, scripts, policy, pod, jobWarnings } = ctx;
  const now = () => stamp(ctx);
  const lookups = { kube, log, fields: a.fields, scripts, policy, pod, now, jobWarnings };
  return planWithLookups(a.run, a.observed, lookups);
}

/**
 * Writes the status; returns the updated run, or undefined when the run changed since it was
 * read (409): plan again.
 */
async function patchStatus(
  run: ScriptRun,
  status: ScriptRunStatus,
  ctx: RunContext & { fields: Fields },
): Promise<ScriptRun | undefined> {
  const { fields } = ctx;
  ctx.log.debug("Updating status", { ...fields, phase: status.phase, reason: status.reason });
  try {
    return await ctx.kube.patchStatus(run, status);
  } catch (error) {
    if (error instanceof KubeError && error.code === 409) {
      // A normal race: the ScriptRun changed after we read it. Read it again and plan again.
      ctx.log.debug("Status changed meanwhile, planning again", fields);
      return undefined;
    }
    throw error;
  }
}

async function sendEvent(
  run: ScriptRun,
  note: EventNote,
  ctx: RunContext & { fields: Fields },
): Promise<void> {
  const { fields } = ctx;
  // A deposed leader records nothing, Events included.
  if (!ctx.canWrite()) return;
  try {
    await ctx.kube.createEvent(run, note);
  } catch (error) {
    // Events are best effort: a refused Event never fails the reconcile.
    ctx.log.debug("Event not recorded", { ...fields, error: (error as Error).message });
  }
}

/** The time as the API server writes it (RFC 3339, whole seconds). */
function stamp(ctx: RunContext): string {
  return ctx.now().toISOString().replace(/\.\d{3}Z$/, "Z");
}

function targetName(action: Action): string {
  return action.type === "createConfigMap" || action.type === "createJob"
    ? action.object.metadata.name
    : action.name;
}

function target(action: Action): Record<string, string> {
  const kind = action.type === "relabel"
    ? action.kind
    : action.type.endsWith("ConfigMap")
    ? "ConfigMap"
    : "Job";
  return { [kind === "ConfigMap" ? "configMap" : "job"]: targetName(action) };
}
