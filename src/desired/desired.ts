/**
 * Desired state: the ConfigMap and Job a ScriptRun should have. Pure. No I/O, no clock.
 * @module
 */
import { canonicalJson, sha256Hex } from "./hash.ts";
import {
  ANNOTATIONS,
  type ConfigMap,
  type EnvVar,
  GROUP,
  type Job,
  KIND,
  LABELS,
  MANAGER,
  type OwnerReference,
  type ResourceList,
  type Resources,
  type Script,
  type ScriptRun,
  type ScriptRunSpec,
  type SecurityContext,
  VERSION,
} from "../types.ts";

/** Defaults applied to a ScriptRun's spec; the CRD declares the same ones. */
export const DEFAULTS = {
  image: "busybox:1.36",
  resources: {
    requests: { cpu: "50m", memory: "250M" },
    limits: { cpu: "100m", memory: "500M" },
  } satisfies Resources,
  backoffLimit: 0,
  activeDeadlineSeconds: 3600,
  ttlSecondsAfterFinished: 86400,
  /** A finished run is never run again: the safe default for one-shot scripts (migrations). */
  rerunPolicy: "Never",
  /** The restricted Pod Security profile, runnable by images that default to root (busybox). */
  securityContext: {
    runAsNonRoot: true,
    runAsUser: 65532,
    runAsGroup: 65532,
    allowPrivilegeEscalation: false,
    capabilities: { drop: ["ALL"] },
    seccompProfile: { type: "RuntimeDefault" },
  } satisfies SecurityContext,
} as const;

/** Where the script's ConfigMap is mounted in the container. */
export const SCRIPT_MOUNT_PATH = "/scripts";
/** File mode of the mounted script: read and execute for everyone, writable by no one. */
export const SCRIPT_FILE_MODE = 0o555;
/** Name of the script's container in the Job's pod. */
export const CONTAINER_NAME = "script";
/** Length of the hash suffix in child names. */
export const HASH_LENGTH = 10;
/** Longest Job name: the Job controller copies it into the `job-name` label (63 characters). */
export const MAX_CHILD_NAME = 63;

/** A spec with every default filled in (`reportOutput` shapes no Job and is left out). */
export type ResolvedSpec =
  & Required<Omit<ScriptRunSpec, "serviceAccountName" | "reportOutput">>
  & { serviceAccountName?: string };

/** How the operator builds Job pods, beyond what the ScriptRun says. */
export interface PodOptions {
  /**
   * The platform assigns each pod a UID and GID (OpenShift's restricted-v2 SCC): the default
   * security context then names none, and its `runAsNonRoot: true` keeps root out.
   */
  platformAssignsUid?: boolean;
}

/**
 * A fresh copy of the restricted default container security context: UID and GID 65532, or
 * none when the platform assigns them.
 */
export function defaultSecurityContext(options: PodOptions = {}): SecurityContext {
  // A fresh copy, not structuredClone: that took 0.55 s of CPU while 1,000 runs converged.
  const { runAsUser, runAsGroup, capabilities, seccompProfile, ...rest } = DEFAULTS.securityContext;
  return {
    ...rest,
    ...(options.platformAssignsUid ? {} : { runAsUser, runAsGroup }),
    capabilities: { ...capabilities, drop: [...capabilities.drop] },
    seccompProfile: { ...seccompProfile },
  };
}

/**
 * The container security context: the restricted default with the ScriptRun's fields laid over
 * it one by one (`capabilities` and `seccompProfile` field by field too), so an empty or pruned
 * `securityContext` keeps the whole default. Asking for UID 0 without saying `runAsNonRoot`
 * drops the default's `runAsNonRoot: true`, which would contradict it. A UID or GID the
 * ScriptRun sets is kept in either mode of {@linkcode PodOptions}.
 */
export function effectiveSecurityContext(
  overlay: SecurityContext = {},
  options: PodOptions = {},
): SecurityContext {
  const base = defaultSecurityContext(options);
  const { capabilities, seccompProfile, ...plain } = overlay;
  const merged: SecurityContext = { ...base, ...dropUndefined(plain) };
  if (capabilities) merged.capabilities = { ...base.capabilities, ...dropUndefined(capabilities) };
  if (seccompProfile?.type) {
    // A different type replaces the profile; localhostProfile only belongs to Localhost.
    merged.seccompProfile = dropUndefined({ ...seccompProfile });
  }
  if (overlay.runAsUser === 0 && overlay.runAsNonRoot === undefined) delete merged.runAsNonRoot;
  return merged;
}

/**
 * The container resources: each of requests/limits × cpu/memory the ScriptRun leaves out keeps
 * the default, so `resources: {}` still has limits. A request above the default limit raises
 * that limit to it; a limit below the default request lowers that request to it (Kubernetes
 * refuses a request above its limit). A spec with all four, or the CRD's default, is unchanged.
 */
export function effectiveResources(overlay: Resources = {}): Required<Resources> {
  const requests: ResourceList = {};
  const limits: ResourceList = {};
  for (const k of ["cpu", "memory"] as const) {
    const request = overlay.requests?.[k];
    const limit = overlay.limits?.[k];
    const defaultRequest = DEFAULTS.resources.requests[k];
    const defaultLimit = DEFAULTS.resources.limits[k];
    if (request !== undefined && limit !== undefined) {
      [requests[k], limits[k]] = [request, limit];
    } else if (request !== undefined) {
      requests[k] = request;
      limits[k] = compareQuantities(request, defaultLimit) > 0 ? request : defaultLimit;
    } else if (limit !== undefined) {
      requests[k] = compareQuantities(limit, defaultRequest) < 0 ? limit : defaultRequest;
      limits[k] = limit;
    } else {
      [requests[k], limits[k]] = [defaultRequest, defaultLimit];
    }
  }
  return { requests, limits };
}

const QUANTITY = /^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(?:([eE][+-]?\d+)|([KMGTPE]i)|([numkMGTPE]))?$/;
const DECIMAL: Record<string, number> = {
  n: -9,
  u: -6,
  m: -3,
  k: 3,
  M: 6,
  G: 9,
  T: 12,
  P: 15,
  E: 18,
};
const BINARY: Record<string, number> = { Ki: 10, Mi: 20, Gi: 30, Ti: 40, Pi: 50, Ei: 60 };

/** A resource quantity (`100m`, `1.5Gi`, `2`, `1e3`) as a number; NaN when it is not one. */
export function quantityValue(quantity: string | number): number {
  if (typeof quantity === "number") return quantity;
  const m = QUANTITY.exec(quantity.trim());
  if (!m) return NaN;
  const n = Number(m[1]);
  if (m[2]) return n * 10 ** Number(m[2].slice(1));
  if (m[3]) return n * 2 ** BINARY[m[3]];
  if (m[4]) return n * 10 ** DECIMAL[m[4]];
  return n;
}

/** Sign of a - b for two quantities; 0 when either is not a quantity. */
function compareQuantities(a: string | number, b: string | number): number {
  const d = quantityValue(a) - quantityValue(b);
  return Number.isNaN(d) ? 0 : Math.sign(d);
}

function dropUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

/** Fills the defaults into a spec (the API server does the same through the CRD). */
export function resolveSpec(spec: ScriptRunSpec, options: PodOptions = {}): ResolvedSpec {
  return {
    script: spec.script,
    image: spec.image ?? DEFAULTS.image,
    args: spec.args ?? [],
    env: spec.env ?? [],
    resources: effectiveResources(spec.resources),
    backoffLimit: spec.backoffLimit ?? DEFAULTS.backoffLimit,
    activeDeadlineSeconds: spec.activeDeadlineSeconds ?? DEFAULTS.activeDeadlineSeconds,
    ttlSecondsAfterFinished: spec.ttlSecondsAfterFinished ?? DEFAULTS.ttlSecondsAfterFinished,
    rerunPolicy: spec.rerunPolicy ?? DEFAULTS.rerunPolicy,
    securityContext: effectiveSecurityContext(spec.securityContext, options),
    ...(spec.serviceAccountName ? { serviceAccountName: spec.serviceAccountName } : {}),
  };
}

/**
 * The run's identity: a short hash of the ScriptRun's name, the script's content and every spec
 * field that shapes the Job. A new identity means a new ConfigMap and a new Job.
 * `ttlSecondsAfterFinished`, `rerunPolicy` and `reportOutput` are left out: the operator applies
 * them itself, they shape no Job (and adding them changed no existing run's identity).
 * `options` shape the Job too: turning `platformAssignsUid` on gives a run that has not
 * finished a Job the platform can run.
 */
export function runHash(run: ScriptRun, script: Script, options: PodOptions = {}): string {
  const { ttlSecondsAfterFinished: _ttl, rerunPolicy: _rerun, ...spec } = resolveSpec(
    run.spec,
    options,
  );
  const input = canonicalJson({ name: run.metadata.name, scriptSha256: script.sha256, spec });
  return sha256Hex(input).slice(0, HASH_LENGTH);
}

/** `<name>-<hash>`, shortened so it stays a valid Job name however long the ScriptRun's name is. */
export function childName(runName: string, hash: string): string {
  const room = MAX_CHILD_NAME - 1 - hash.length;
  const base = runName.slice(0, room).replace(/[-.]+$/, "");
  return `${base}-${hash}`;
}

/** The controller ownerReference that ties a child to its ScriptRun. */
export function ownerReference(run: ScriptRun): OwnerReference {
  return {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: KIND,
    name: run.metadata.name,
    uid: run.metadata.uid ?? "",
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** Labels put on every child of a run (and on its pods). */
export function childLabels(run: ScriptRun, hash: string): Record<string, string> {
  const labels: Record<string, string> = {
    [LABELS.managedBy]: MANAGER,
    [LABELS.name]: "script-operator",
    [LABELS.hash]: hash,
    // Finds the pods of every Job of this run, e.g. the old Job's pods during a rollout.
    [LABELS.scriptRunUid]: run.metadata.uid ?? "",
  };
  // Label values are limited to 63 characters; ScriptRun names may be longer. Children are
  // matched to their run by the ownerReference, the label only helps `kubectl -l`.
  if (run.metadata.name.length <= 63) labels[LABELS.scriptRun] = run.metadata.name;
  return labels;
}

/** Kubernetes expands `$(VAR)` in args and env values; `$$` stands for a literal `$`. */
export function escapeDollar(text: string): string {
  return text.replaceAll("$", "$$$$");
}

/** The immutable ConfigMap that holds the script. */
export function desiredConfigMap(run: ScriptRun, script: Script, hash: string): ConfigMap {
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: {
      name: childName(run.metadata.name, hash),
      namespace: run.metadata.namespace,
      labels: childLabels(run, hash),
      annotations: { [ANNOTATIONS.script]: script.name, [ANNOTATIONS.scriptSha256]: script.sha256 },
      ownerReferences: [ownerReference(run)],
    },
    immutable: true,
    data: { [script.name]: script.content },
  };
}

/**
 * The Job that mounts the ConfigMap read-only at /scripts and runs the script. The pod sets no
 * pod-level security context (no fsGroup): the only volume is a ConfigMap readable by any UID.
 */
export function desiredJob(
  run: ScriptRun,
  script: Script,
  hash: string,
  options: PodOptions = {},
): Job {
  const spec = resolveSpec(run.spec, options);
  const name = childName(run.metadata.name, hash);
  const labels = childLabels(run, hash);
  const env: EnvVar[] = spec.env.map((e) =>
    // A Secret or ConfigMap key is read by the kubelet in the pod's (the run's) namespace.
    e.valueFrom
      ? { name: e.name, valueFrom: e.valueFrom }
      : { name: e.name, value: escapeDollar(e.value ?? "") }
  );
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name,
      namespace: run.metadata.namespace,
      labels,
      annotations: { [ANNOTATIONS.script]: script.name, [ANNOTATIONS.scriptSha256]: script.sha256 },
      ownerReferences: [ownerReference(run)],
    },
    spec: {
      backoffLimit: spec.backoffLimit,
      activeDeadlineSeconds: spec.activeDeadlineSeconds,
      // No ttlSecondsAfterFinished: the operator deletes a finished Job itself once the run's
      // status records the outcome, so a Job can never vanish before its result is read.
      template: {
        metadata: { labels, annotations: { [ANNOTATIONS.script]: script.name } },
        spec: {
          restartPolicy: "Never",
          ...(spec.serviceAccountName
            ? { serviceAccountName: spec.serviceAccountName }
            // The script gets no API credentials unless the ScriptRun names an account.
            : { automountServiceAccountToken: false }),
          volumes: [{
            name: "script",
            configMap: { name, defaultMode: SCRIPT_FILE_MODE },
          }],
          containers: [{
            name: CONTAINER_NAME,
            image: spec.image,
            command: [`${SCRIPT_MOUNT_PATH}/${script.name}`],
            args: spec.args.map(escapeDollar),
            env,
            resources: spec.resources,
            securityContext: spec.securityContext,
            volumeMounts: [{ name: "script", mountPath: SCRIPT_MOUNT_PATH, readOnly: true }],
            // On failure without a termination message, the last log lines become the message.
            terminationMessagePolicy: "FallbackToLogsOnError",
          }],
        },
      },
    },
  };
}
