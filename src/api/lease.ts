/**
 * The Lease port of leader election (src/runtime/leader.ts) and its client-node implementation.
 * @module
 */
import { CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import type { Logger } from "@logtape/logtape";
import { KubeError } from "./errors.ts";
import {
  CONNECT_TIMEOUT_MS,
  makeClient,
  observed,
  type RequestHooks,
  type RequestObserver,
} from "./client.ts";

/** A coordination.k8s.io/v1 Lease, as far as leader election reads and writes it. */
export interface Lease {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec?: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

/** The Lease requests the elector makes (implemented below over client-node). */
export interface LeaseClient {
  /** The Lease, or undefined if it does not exist. */
  get(namespace: string, name: string): Promise<Lease | undefined>;
  /** Creates the Lease; fails (409) if it exists. */
  create(lease: Lease): Promise<void>;
  /** Replaces the Lease, guarded by its resourceVersion (409 if it changed). */
  replace(lease: Lease): Promise<void>;
}

const LEASES = { group: "coordination.k8s.io", version: "v1", plural: "leases" } as const;

/** The leader election's Lease requests over client-node, counted like every other request. */
export class ClientNodeLeases implements LeaseClient {
  #api: CustomObjectsApi;
  #hooks: RequestHooks;

  /** Lease requests time out after `timeoutMs` (inside the renew deadline). */
  constructor(kc: KubeConfig, options: {
    timeoutMs: number;
    observe?: RequestObserver;
    onReachability?: (reachable: boolean) => void;
    log?: Logger;
  }) {
    this.#api = makeClient(kc, CustomObjectsApi, {
      requestMs: options.timeoutMs,
      connectMs: Math.min(CONNECT_TIMEOUT_MS, options.timeoutMs / 2),
      log: options.log,
    });
    this.#hooks = { observe: options.observe, onReachability: options.onReachability };
  }

  async get(namespace: string, name: string): Promise<Lease | undefined> {
    try {
      return await observed(
        this.#hooks,
        "GET",
        "leases",
        `get lease ${namespace}/${name}`,
        () => this.#api.getNamespacedCustomObject({ ...LEASES, namespace, name }),
      ) as Lease;
    } catch (error) {
      if (error instanceof KubeError && error.kind === "notFound") return undefined;
      throw error;
    }
  }

  async create(lease: Lease): Promise<void> {
    const namespace = lease.metadata.namespace;
    await observed(
      this.#hooks,
      "POST",
      "leases",
      `create lease ${namespace}/${lease.metadata.name}`,
      () => this.#api.createNamespacedCustomObject({ ...LEASES, namespace, body: lease }),
    );
  }

  async replace(lease: Lease): Promise<void> {
    const { namespace, name } = lease.metadata;
    await observed(
      this.#hooks,
      "PUT",
      "leases",
      `replace lease ${namespace}/${name}`,
      () => this.#api.replaceNamespacedCustomObject({ ...LEASES, namespace, name, body: lease }),
    );
  }
}
