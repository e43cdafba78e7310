/**
 * Leader election on a coordination.k8s.io/v1 Lease, as client-go does it: acquire or renew every
 * `retryPeriod`, give up leadership when renewal failed for `renewDeadline`, take over a Lease
 * whose holder has not renewed it for `leaseDuration` (timed by our own clock from when we saw
 * the record change, so clock skew between nodes does not matter), release it on shutdown.
 *
 * Every duration is measured on a monotonic clock (`performance.now()`), never the wall clock: a
 * wall clock step cannot extend or cut a lease. `leadership()` reads that clock at each call and
 * says "not leading" as soon as the renew deadline has passed since the last successful renewal
 * started, so a process that was frozen (SIGSTOP, a long GC pause) longer than that does not
 * believe it still leads when it wakes up, whatever order its timers then fire in.
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { classify } from "../api/errors.ts";
import type { LeaseClient } from "../api/lease.ts";

/** Timings, in milliseconds. */
export interface LeaderTimings {
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

/** controller-runtime's defaults: 15 s lease, 10 s renew deadline, 2 s retry. */
export const DEFAULT_LEADER_TIMINGS: LeaderTimings = {
  leaseDurationMs: 15_000,
  renewDeadlineMs: 10_000,
  retryPeriodMs: 2_000,
};

/** Time sources: `now()` is monotonic milliseconds, `wallNow()` only fills the Lease's fields. */
export interface Clock {
  now(): number;
  wallNow(): Date;
}

/** `performance.now()` for durations, `new Date()` for the timestamps written in the Lease. */
export const SYSTEM_CLOCK: Clock = {
  now: () => performance.now(),
  wallNow: () => new Date(),
};

/** Lease times are MicroTime: RFC 3339 with exactly six fractional digits. */
export function microTime(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

/** What a leadership check read: the monotonic clock now, the last renewal and its deadline. */
export interface Leadership {
  /** Holds the Lease and `nowMs` is before `deadlineMs`: writes may go out. */
  leading: boolean;
  /** The monotonic clock at the check, in milliseconds. */
  nowMs: number;
  /** Monotonic time at which the last successful acquire or renew started. */
  renewedAtMs: number;
  /** `renewedAtMs` plus the renew deadline: leadership ends there unless renewed. */
  deadlineMs: number;
}

/** Options of {@linkcode LeaderElector}. */
export interface LeaderElectorOptions {
  leases: LeaseClient;
  namespace: string;
  name: string;
  identity: string;
  log: Logger;
  timings?: LeaderTimings;
  clock?: Clock;
  /** Told whenever leadership is gained or lost. */
  onChange?: (leading: boolean) => void;
}

/** Holds (or waits for) a Lease; `isLeader()` tells whether this process may write. */
export class LeaderElector {
  #leases: LeaseClient;
  #namespace: string;
  #name: string;
  #identity: string;
  #timings: LeaderTimings;
  #clock: Clock;
  #log: Logger;
  #onChange: (leading: boolean) => void;
  #leading = false;
  /** Monotonic time at which the last successful acquire or renew started. */
  #renewedAt = 0;
  #observedRecord = "";
  #observedAt = 0;
  #stopped = false;
  #timer?: ReturnType<typeof setTimeout>;
  #wake?: () => void;
  #loop?: Promise<void>;

  /** An elector for Lease `namespace/name`; nothing happens before `start()`. */
  constructor(options: LeaderElectorOptions) {
    this.#leases = options.leases;
    this.#namespace = options.namespace;
    this.#name = options.name;
    this.#identity = options.identity;
    this.#timings = options.timings ?? DEFAULT_LEADER_TIMINGS;
    this.#clock = options.clock ?? SYSTEM_CLOCK;
    this.#log = options.log;
    this.#onChange = options.onChange ?? (() => {});
  }

  /**
   * Whether this process holds the Lease and its last successful renewal started less than the
   * renew deadline ago (monotonic clock). Turns false by itself when renewals stop.
   */
  isLeader(): boolean {
    return this.leadership().leading;
  }

  /**
   * {@linkcode isLeader} with what it read, computed from the monotonic clock at this call (never
   * from a flag a timer updates), so the write gate can log why it let a write through.
   */
  leadership(): Leadership {
    const nowMs = this.#clock.now();
    const deadlineMs = this.#renewedAt + this.#timings.renewDeadlineMs;
    return {
      leading: this.#leading && nowMs < deadlineMs,
      nowMs,
      renewedAtMs: this.#renewedAt,
      deadlineMs,
    };
  }

  #withinDeadline(): boolean {
    const { nowMs, deadlineMs } = this.leadership();
    return nowMs < deadlineMs;
  }

  /** Starts trying to acquire and renew in the background, every retry period. */
  start(): void {
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      await this.tick();
      if (this.#stopped) break;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        this.#timer = setTimeout(resolve, this.#timings.retryPeriodMs);
      });
    }
  }

  #setLeading(leading: boolean): void {
    if (leading === this.#leading) return;
    this.#leading = leading;
    const fields = { lease: `${this.#namespace}/${this.#name}`, identity: this.#identity };
    if (leading) this.#log.info("Became leader", fields);
    else this.#log.warn("Lost leadership", fields);
    this.#onChange(leading);
  }

  /** One attempt to acquire or renew the Lease (the loop calls it every retry period). */
  async tick(): Promise<void> {
    // A renew deadline that passed (e.g. while the process was stopped) ends leadership first.
    if (this.#leading && !this.#withinDeadline()) this.#setLeading(false);
    const started = this.#clock.now();
    try {
      const lease = await this.#leases.get(this.#namespace, this.#name);
      const wall = this.#clock.wallNow();
      const spec = {
        holderIdentity: this.#identity,
        leaseDurationSeconds: Math.round(this.#timings.leaseDurationMs / 1000),
        renewTime: microTime(wall),
      };
      if (!lease) {
        await this.#leases.create({
          apiVersion: "coordination.k8s.io/v1",
          kind: "Lease",
          metadata: { name: this.#name, namespace: this.#namespace },
          spec: { ...spec, acquireTime: microTime(wall), leaseTransitions: 0 },
        });
      } else {
        const observed = this.#clock.now();
        const record = JSON.stringify(lease.spec ?? {});
        if (record !== this.#observedRecord) {
          this.#observedRecord = record;
          this.#observedAt = observed;
        }
        const holder = lease.spec?.holderIdentity ?? "";
        const duration = (lease.spec?.leaseDurationSeconds ?? 0) * 1000;
        const mine = holder === this.#identity;
        if (!mine && holder !== "" && this.#observedAt + duration > observed) {
          this.#setLeading(false);
          return;
        }
        await this.#leases.replace({
          ...lease,
          spec: {
            ...lease.spec,
            ...spec,
            acquireTime: mine ? lease.spec?.acquireTime ?? microTime(wall) : microTime(wall),
            leaseTransitions: (lease.spec?.leaseTransitions ?? 0) + (mine ? 0 : 1),
          },
        });
      }
      this.#renewedAt = started;
      this.#setLeading(this.#withinDeadline());
    } catch (error) {
      const e = classify(error, `acquire or renew lease ${this.#namespace}/${this.#name}`);
      // 409: someone else wrote the Lease first; we simply are not the leader this round.
      if (e.code !== 409) this.#log.warn("Leader election failed", { error: e.message });
      if (this.#leading && !this.#withinDeadline()) this.#setLeading(false);
    }
  }

  /** Stops renewing and, if leading, releases the Lease so another replica takes over at once. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#wake?.();
    await this.#loop;
    if (!this.isLeader()) {
      this.#setLeading(false);
      return;
    }
    try {
      const lease = await this.#leases.get(this.#namespace, this.#name);
      // Checked again after the GET: a process frozen in between may have been deposed. (The
      // replace is also guarded by the resourceVersion just read: a new holder's write makes it 409.)
      if (lease?.spec?.holderIdentity === this.#identity && this.isLeader()) {
        await this.#leases.replace({
          ...lease,
          spec: {
            ...lease.spec,
            holderIdentity: "",
            leaseDurationSeconds: 1,
            renewTime: microTime(this.#clock.wallNow()),
          },
        });
        this.#log.info("Released leader lease", { lease: `${this.#namespace}/${this.#name}` });
      }
    } catch (error) {
      this.#log.warn("Could not release leader lease", { error: (error as Error).message });
    }
    this.#setLeading(false);
  }
}
