/**
 * Whether the operator is ready, for /readyz and the ready metric. A leader is ready after a cycle
 * that could list and reached the API server throughout; a follower while its Lease requests reach
 * the API server, so it can take over when the leader goes. Any request that gets no answer
 * (connection error, timeout) makes it not ready at once, rather than at the end of the cycle.
 * @module
 */
import type { CycleResult } from "../controller/reconciler.ts";

/** The readiness of one operator process, fed by the poll loop and every request's outcome. */
export class Readiness {
  #ready = false;
  #following = false;
  #unreachableInCycle = false;
  #lastReachable = true;

  /** Whether the operator is ready now (before the watched view's streams are counted). */
  get ready(): boolean {
    return this.#ready;
  }

  /** Told whether each request got an answer from the API server. */
  readonly onReachability = (reachable: boolean): void => {
    this.#lastReachable = reachable;
    if (!reachable) {
      this.#ready = false;
      this.#unreachableInCycle = true;
    } else if (this.#following) {
      this.#ready = true;
    }
  };

  /**
   * Waiting to become leader: followers are ready while they reach the API server (set by the
   * Lease requests' outcome).
   */
  follow(): void {
    this.#following = true;
    this.#ready = this.#lastReachable;
  }

  /** A leader's cycle starts. */
  cycleStarted(): void {
    this.#following = false;
    this.#unreachableInCycle = false;
  }

  /**
   * A leader's cycle ended: not ready while the API server cannot be listed or answered no
   * request; ready after a cycle that could list and got an answer to every request.
   */
  cycleDone(result: Pick<CycleResult, "scopeErrors" | "unreachable">): void {
    this.#ready = result.scopeErrors.length === 0 && !result.unreachable &&
      !this.#unreachableInCycle;
  }
}
