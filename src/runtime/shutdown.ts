/**
 * How the process ends: its exit codes, the signals that stop it, and the drain after them. Work in
 * flight may finish its writes for a while, then writes are refused, and the process exits by a
 * deadline whatever is left: the kubelet's grace period is 30 s, and the next leader redoes what
 * was cut short. Kept apart from the wiring so the order of the steps reads in one place.
 * @module
 */
import type { Logger } from "@logtape/logtape";

/** Exit codes. */
export const EXIT = { ok: 0, runtime: 1, usage: 2 } as const;

/** After SIGTERM, the process exits by this time whatever is still in flight. */
export const SHUTDOWN_DEADLINE_MS = 9_000;

/**
 * After SIGTERM, reconciles in flight may finish their writes for this long; then the Lease is
 * released (its two requests and the renewal in progress fit in the rest of the deadline) and
 * writes still to come are refused. The next leader redoes whatever was cut short.
 */
export const SHUTDOWN_DRAIN_MS = 3_000;

/**
 * The stop of a running operator: SIGTERM, SIGINT or the caller's signal abort `signal`, which
 * stops taking work (`close`: the queue drops what has not started, the view stops serving) and
 * starts the drain; a signal also arms the deadline that exits the process.
 */
export class Shutdown {
  readonly #stop = new AbortController();
  readonly #log: Logger;
  readonly #close: () => Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  #drainUntil = 0;
  readonly #signals: Deno.Signal[] = ["SIGTERM", "SIGINT"];

  /**
   * Listens for SIGTERM and SIGINT until `removeSignalListeners`. `close` stops taking work and
   * resolves when the work in flight has finished (undefined: nothing to wait for).
   */
  constructor(log: Logger, close: () => Promise<void> | undefined, signal?: AbortSignal) {
    this.#log = log;
    this.#close = close;
    this.#stop.signal.addEventListener("abort", () => {
      this.#drainUntil = performance.now() + SHUTDOWN_DRAIN_MS;
      this.#closing = this.#close();
    }, { once: true });
    signal?.addEventListener("abort", () => this.#stop.abort());
    for (const s of this.#signals) Deno.addSignalListener(s, this.#onSignal);
  }

  /** Aborts when the operator is to stop. */
  get signal(): AbortSignal {
    return this.#stop.signal;
  }

  /** Whether writes may still go: until the stop, then only until the drain deadline. */
  mayWrite(): boolean {
    return !this.#stop.signal.aborted || performance.now() < this.#drainUntil;
  }

  /**
   * Stops taking work (if the stop has not already) and waits for the work in flight until the
   * drain deadline; warns when some is still running then.
   */
  async drain(): Promise<void> {
    this.#closing ??= this.#close();
    const closing = this.#closing;
    const drained = await untilAborted(
      closing?.then(() => true),
      AbortSignal.timeout(Math.max(0, this.#drainUntil - performance.now())),
    );
    if (closing && !drained) {
      this.#log.warn(
        "Reconciles still in flight at the drain deadline; their next writes are refused",
        { afterMs: SHUTDOWN_DRAIN_MS },
      );
    }
  }

  /** Stops listening for SIGTERM and SIGINT. */
  removeSignalListeners(): void {
    for (const s of this.#signals) Deno.removeSignalListener(s, this.#onSignal);
  }

  readonly #onSignal = () => {
    if (this.#stop.signal.aborted) return;
    this.#log.info("Shutting down", { signal: "SIGTERM/SIGINT" });
    this.#stop.abort();
    // In-flight writes finish and the Lease is released, but never past this deadline (the
    // kubelet's grace period is 30 s; we promise 10 s).
    // Reaching it means work was cut short: not a clean exit.
    const deadline = setTimeout(() => {
      this.#log.error("Shutdown deadline reached, in-flight work cut short", {
        afterMs: SHUTDOWN_DEADLINE_MS,
        exitCode: EXIT.runtime,
      });
      Deno.exit(EXIT.runtime);
    }, SHUTDOWN_DEADLINE_MS);
    Deno.unrefTimer(Number(deadline));
  };
}

/** `promise`'s value, or undefined as soon as `signal` aborts. */
export function untilAborted<T>(
  promise: Promise<T> | undefined,
  signal: AbortSignal,
): Promise<T | undefined> {
  if (!promise || signal.aborted) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    const onAbort = () => resolve(undefined);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then((value) => {
      signal.removeEventListener("abort", onAbort);
      resolve(value);
    });
  });
}

/** Sleeps `ms`; resolves true early when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(false);
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(true);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
