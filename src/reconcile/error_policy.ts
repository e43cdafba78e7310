/**
 * The error policy of one reconcile, apart from the reconcile itself: what a failure means for
 * the run (retry when, how loudly), as controller-rs's `error_policy()` does.
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Backoff } from "../api/backoff.ts";
import { KubeError } from "../api/errors.ts";
import { NotLeaderError } from "../api/client.ts";
import type { RunResult } from "./result.ts";

/** The run that failed, as far as the policy needs it. */
export interface Failed {
  /** Per-run key of the backoff. */
  key: string;
  generation?: number;
  nowMs: number;
  /** Writes done before the failure. */
  writes: number;
  phase?: RunResult["phase"];
  /** The run's log fields (group, kind, namespace, name). */
  fields: Record<string, unknown>;
}

/** Decides the retry of a failed reconcile, logs it once, and records it in `backoff`. */
export function errorPolicy(
  error: unknown,
  run: Failed,
  options: { backoff: Backoff; log: Logger },
): RunResult {
  const { backoff, log } = options;
  const { key, generation, nowMs, writes, phase, fields } = run;
  if (error instanceof NotLeaderError) {
    // Leadership went while this run was being reconciled: nothing to retry here.
    log.debug("Not the leader any more, write not sent", fields);
    return { result: "requeue", writes, phase };
  }
  if (!(error instanceof KubeError)) {
    // A bug or an unexpected answer: this run backs off, the cycle goes on for the others.
    const delay = backoff.failure(key, nowMs, { generation });
    log.error("Reconcile failed", {
      ...fields,
      error: error instanceof Error ? error.message : String(error),
      retryInMs: delay,
    });
    return { result: "error", writes, phase, retryAfterMs: delay };
  }
  if (error.kind === "forbidden" && /because it is being terminated/.test(error.message)) {
    // The namespace is being deleted, this ScriptRun with it: nothing to create any more.
    log.debug("Namespace is being deleted, nothing created", fields);
    return { result: "requeue", writes, phase };
  }
  const delay = backoff.failure(key, nowMs, {
    generation,
    retryAfterMs: error.retryAfterSeconds !== undefined
      ? error.retryAfterSeconds * 1000
      : undefined,
  });
  const unreachable = error.code === 0;
  const line = { ...fields, error: error.message, code: error.code, retryInMs: delay };
  if (error.code === 429 || error.code >= 500 || unreachable) {
    // Throttling and outages are the cycle's news (one line), not one error line per run.
    log.debug("Reconcile failed, retrying", line);
  } else {
    const hint = error.kind === "forbidden"
      ? "the operator's identity lacks this permission; apply deploy/rbac.yaml or grant it"
      : undefined;
    log.error("Reconcile failed", { ...line, hint });
  }
  return { result: "error", writes, phase, retryAfterMs: delay, unreachable };
}
