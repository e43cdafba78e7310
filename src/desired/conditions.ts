/**
 * The conditions a status carries, and when two statuses are the same. Tools that follow kstatus
 * (kubectl wait, Flux, Argo CD) read Ready, Reconciling and Stalled; Complete and Failed name the
 * outcome. A condition keeps its lastTransitionTime while its status stays, so a run that did not
 * change has nothing to write. Pure.
 * @module
 */
import { canonicalJson } from "./hash.ts";
import { CONDITION, STALLED_REASONS } from "./reasons.ts";
import type { Condition, ScriptRunStatus } from "../types.ts";

/** `wanted` with its lastTransitionTime: `previous`'s of the same type and status, else `now`. */
export function condition(
  previous: Condition[] | undefined,
  wanted: Omit<Condition, "lastTransitionTime">,
  now: string,
): Condition {
  const before = previous?.find((c) => c.type === wanted.type);
  const lastTransitionTime = before && before.status === wanted.status
    ? before.lastTransitionTime
    : now;
  return { ...wanted, lastTransitionTime };
}

/** Conditions that {@linkcode readiness} decides; every other type the sub-plans set. */
const KSTATUS_TYPES: ReadonlySet<string> = new Set([
  CONDITION.Ready,
  CONDITION.Reconciling,
  CONDITION.Stalled,
]);

/** Whether the run cannot go on without a change: it failed, or it is stuck (STALLED_REASONS). */
function stalled(status: ScriptRunStatus): boolean {
  return status.phase === "Failed" || STALLED_REASONS.has(status.reason ?? "");
}

/**
 * The status' conditions with the kstatus ones in front: Ready (True once succeeded, else False),
 * then Reconciling (True while in progress) or Stalled (True while it cannot progress). kstatus
 * reads Reconciling and Stalled as "abnormal-true": they are present only while True, so a
 * succeeded run carries neither. Each keeps its lastTransitionTime while its status stays.
 */
export function readiness(
  status: ScriptRunStatus,
  previous: Condition[] | undefined,
  generation: number | undefined,
  now: string,
): Condition[] {
  const why = {
    reason: status.reason ?? status.phase ?? "",
    message: status.message ?? "",
    observedGeneration: generation,
  };
  const ready = status.phase === "Succeeded";
  const out = [
    condition(previous, { type: CONDITION.Ready, status: ready ? "True" : "False", ...why }, now),
  ];
  if (stalled(status)) {
    out.push(condition(previous, { type: CONDITION.Stalled, status: "True", ...why }, now));
  } else if (!ready) {
    out.push(condition(previous, { type: CONDITION.Reconciling, status: "True", ...why }, now));
  }
  // One condition per type: the last one set wins, in the place of the first.
  const others = new Map<string, Condition>();
  for (const c of status.conditions ?? []) if (!KSTATUS_TYPES.has(c.type)) others.set(c.type, c);
  return [...out, ...others.values()];
}

/** The outcome condition (Complete or Failed) of a finished phase, none otherwise. */
export function outcomeConditions(
  status: ScriptRunStatus,
  previous: Condition[] | undefined,
  generation: number | undefined,
  now: string,
): Condition[] {
  const type = status.phase === "Succeeded"
    ? CONDITION.Complete
    : status.phase === "Failed"
    ? CONDITION.Failed
    : undefined;
  if (!type) return [];
  return [condition(previous, {
    type,
    status: "True",
    reason: status.reason ?? "",
    message: status.message ?? "",
    observedGeneration: generation,
  }, now)];
}

/** `value` without its undefined fields. */
export function dropUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

/** True when two statuses are the same, so writing `next` would change nothing. */
export function statusEqual(a: ScriptRunStatus | undefined, b: ScriptRunStatus): boolean {
  return canonicalJson(dropUndefined(a ?? {})) === canonicalJson(dropUndefined(b));
}
