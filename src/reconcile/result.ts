/**
 * What one reconcile of a run came to: the controller's queue reads it to requeue.
 * @module
 */
import type { Phase } from "../types.ts";

/** What reconciling one ScriptRun came to. */
export interface RunResult {
  result: "success" | "error" | "requeue";
  writes: number;
  phase?: Phase;
  /** Reconcile this run again after this long, even if nothing changes (ms). */
  retryAfterMs?: number;
  /** The error was that the API server could not be reached. */
  unreachable?: boolean;
}
