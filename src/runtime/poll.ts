/**
 * The poll loop of a running operator: a full reconcile cycle every interval while it leads,
 * waiting its turn while it follows, and backing off while the API server cannot be listed (so an
 * outage is not met with a request storm). Kept apart from the wiring so the loop's pacing and its
 * effect on readiness read in one place.
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { CliOptions } from "./cli.ts";
import type { ClientNodeKube } from "../api/kube.ts";
import type { LeaderElector } from "./leader.ts";
import type { CycleResult, Reconciler } from "../controller/reconciler.ts";
import { Backoff } from "../api/backoff.ts";
import type { Readiness } from "./readiness.ts";
import { sleep, untilAborted } from "./shutdown.ts";

/** Runs reconcile cycles until `signal` aborts. */
export async function pollLoop(parts: {
  cli: Pick<CliOptions, "intervalMs" | "leaderElectionId">;
  reconciler: Reconciler;
  kube: ClientNodeKube;
  elector: LeaderElector | undefined;
  readiness: Readiness;
  log: Logger;
  signal: AbortSignal;
}): Promise<void> {
  const { cli, reconciler, kube, elector, readiness, log, signal } = parts;
  const listBackoff = new Backoff({ baseMs: 1_000, maxMs: Math.max(cli.intervalMs, 60_000) });
  let waitingLogged = false;
  while (!signal.aborted) {
    if (elector && !elector.isLeader()) {
      if (!waitingLogged) log.info("Waiting to become leader", { lease: cli.leaderElectionId });
      waitingLogged = true;
      readiness.follow();
      if (await sleep(500, signal)) break;
      continue;
    }
    waitingLogged = false;
    readiness.cycleStarted();
    const result = await reconciler.cycle();
    if (result.source === "view") {
      // The view's cycle sends nothing: one cheap request says whether the server answers.
      await untilAborted(kube.ping().catch(() => {}), signal);
    }
    readiness.cycleDone(result);
    log.debug("Cycle done", {
      scriptRuns: result.scriptRuns,
      writes: result.writes,
      errors: result.errors,
      source: result.source,
    });
    const wait = nextCycleDelay(result, listBackoff, cli.intervalMs, Date.now());
    if (result.scopeErrors.length > 0 || result.unreachable) {
      log.warn("Listing failed", {
        error: result.scopeErrors[0]?.message ?? "the API server did not answer",
        code: result.scopeErrors[0]?.code,
        retryInMs: wait,
      });
    }
    if (await sleep(wait, signal)) break;
  }
}

/**
 * How long to wait before the next cycle: the interval after a cycle that could list, otherwise a
 * jittered backoff from 1 s (doubling, capped at the larger of the interval and 1 min), never
 * shorter than a Retry-After the API server sent.
 */
export function nextCycleDelay(
  result: Pick<CycleResult, "scopeErrors" | "unreachable">,
  backoff: Backoff,
  intervalMs: number,
  nowMs: number,
): number {
  if (result.scopeErrors.length === 0 && !result.unreachable) {
    backoff.success("list");
    return intervalMs;
  }
  const retryAfterMs = Math.max(
    0,
    ...result.scopeErrors.map((e) => (e.retryAfterSeconds ?? 0) * 1000),
  );
  return backoff.failure("list", nowMs, { retryAfterMs });
}
