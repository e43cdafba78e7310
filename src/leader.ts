/**
 * Leader election on a coordination.k8s.io/v1 Lease, as client-go does it: acquire or renew every
 * `retryPeriod`, give up leadership when renewal failed for `renewDeadline`, take over a Lease
 * whose holder has not renewed it for `leaseDuration` (timed by our own clock from when we saw
 * the record change, so clock skew between nodes does not matter), release it on shutdown.
 * @module
 */
import { CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import { makeClient } from "./kube.ts";
import type { Logger } from "@logtape/logtape";
import { classify } from "./errors.ts";

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

interface Lease {
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec?: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

/** Lease times are MicroTime: RFC 3339 with exactly six fractional digits. */
export function microTime(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

/** Holds (or waits for) a Lease; `isLeader()` tells whether this process may write. */
export class LeaderElector {
  #api: CustomObjectsApi;
  #namespace: string;
  #name: string;
  #identity: string;
  #timings: LeaderTimings;
  #log: Logger;
  #onChange: (leading: boolean) => void;
  #leading = false;
  #lastRenew = 0;
  #observedRecord = "";
  #observedAt = 0;
  #stopped = false;
  #timer?: ReturnType<typeof setTimeout>;
  #wake?: () => void;
  #loop?: Promise<void>;

  /** `onChange` is told whenever leadership is gained or lost. */
  constructor(kc: KubeConfig, options: {
    namespace: string;
    name: string;
    identity: string;
    log: Logger;
    timings?: LeaderTimings;
    onChange?: (leading: boolean) => void;
  }) {
    this.#namespace = options.namespace;
    this.#name = options.name;
    this.#identity = options.identity;
    this.#timings = options.timings ?? DEFAULT_LEADER_TIMINGS;
    // Lease requests time out well inside the renew deadline, so a hung call cannot hold the lock.
    this.#api = makeClient(
      kc,
      CustomObjectsApi,
      Math.min(5_000, this.#timings.renewDeadlineMs / 2),
    );
    this.#log = options.log;
    this.#onChange = options.onChange ?? (() => {});
  }

  /** Whether this process holds the Lease and renewed it within the renew deadline. */
  isLeader(): boolean {
    return this.#leading && Date.now() - this.#lastRenew < this.#timings.renewDeadlineMs;
  }

  /** Starts trying to acquire and renew in the background. */
  start(): void {
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      await this.#tryOnce();
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

  async #tryOnce(): Promise<void> {
    const ref = {
      group: "coordination.k8s.io",
      version: "v1",
      plural: "leases",
      namespace: this.#namespace,
    };
    const now = new Date();
    try {
      let lease: Lease | undefined;
      try {
        lease = await this.#api.getNamespacedCustomObject({ ...ref, name: this.#name }) as Lease;
      } catch (error) {
        if (classify(error, "get lease").kind !== "notFound") throw error;
      }
      const spec = {
        holderIdentity: this.#identity,
        leaseDurationSeconds: Math.round(this.#timings.leaseDurationMs / 1000),
        renewTime: microTime(now),
      };
      if (!lease) {
        await this.#api.createNamespacedCustomObject({
          ...ref,
          body: {
            apiVersion: "coordination.k8s.io/v1",
            kind: "Lease",
            metadata: { name: this.#name, namespace: this.#namespace },
            spec: { ...spec, acquireTime: microTime(now), leaseTransitions: 0 },
          },
        });
      } else {
        const record = JSON.stringify(lease.spec ?? {});
        if (record !== this.#observedRecord) {
          this.#observedRecord = record;
          this.#observedAt = now.getTime();
        }
        const holder = lease.spec?.holderIdentity ?? "";
        const duration = (lease.spec?.leaseDurationSeconds ?? 0) * 1000;
        const mine = holder === this.#identity;
        if (!mine && holder !== "" && this.#observedAt + duration > now.getTime()) {
          this.#setLeading(false);
          return;
        }
        await this.#api.replaceNamespacedCustomObject({
          ...ref,
          name: this.#name,
          body: {
            ...lease,
            spec: {
              ...lease.spec,
              ...spec,
              acquireTime: mine ? lease.spec?.acquireTime ?? microTime(now) : microTime(now),
              leaseTransitions: (lease.spec?.leaseTransitions ?? 0) + (mine ? 0 : 1),
            },
          },
        });
      }
      this.#lastRenew = now.getTime();
      this.#setLeading(true);
    } catch (error) {
      const e = classify(error, `acquire or renew lease ${this.#namespace}/${this.#name}`);
      // 409: someone else wrote the Lease first; we simply are not the leader this round.
      if (e.code !== 409) this.#log.warn("Leader election failed", { error: e.message });
      if (this.#leading && Date.now() - this.#lastRenew >= this.#timings.renewDeadlineMs) {
        this.#setLeading(false);
      }
    }
  }

  /** Stops renewing and, if leading, releases the Lease so another replica takes over at once. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#wake?.();
    await this.#loop;
    if (!this.#leading) return;
    try {
      const ref = {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        namespace: this.#namespace,
        name: this.#name,
      };
      const lease = await this.#api.getNamespacedCustomObject(ref) as Lease;
      if (lease.spec?.holderIdentity === this.#identity) {
        await this.#api.replaceNamespacedCustomObject({
          ...ref,
          body: {
            ...lease,
            spec: {
              ...lease.spec,
              holderIdentity: "",
              leaseDurationSeconds: 1,
              renewTime: microTime(new Date()),
            },
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
