/**
 * The operator's policy: which images, ServiceAccounts and security contexts a ScriptRun may ask
 * for. Creating a ScriptRun creates a pod with the operator's rights, so the operator only builds
 * pods this policy allows. Pure. No I/O.
 * @module
 */
import { DEFAULTS, effectiveSecurityContext } from "./desired.ts";
import type { ScriptRun } from "./types.ts";

/** What ScriptRuns may ask for; set by the operator's flags. */
export interface Policy {
  /** Image patterns: an exact image, or a prefix ending in `*` (`registry.example/tools/*`). */
  allowedImages: string[];
  /** ServiceAccount names a ScriptRun may set (`*`: any); empty: none may be set. */
  allowedServiceAccounts: string[];
  /** Root, added capabilities, privileged, Unconfined seccomp, privilege escalation. */
  allowPrivileged: boolean;
}

/** The policy without flags: the default image only, no ServiceAccount, nothing privileged. */
export const DEFAULT_POLICY: Readonly<Policy> = Object.freeze({
  allowedImages: [DEFAULTS.image],
  allowedServiceAccounts: [],
  allowPrivileged: false,
});

/** Status reason of a refused ScriptRun. */
export const POLICY_VIOLATION = "PolicyViolation";

/** The flags that widen the policy, as the refusal messages name them. */
export const POLICY_FLAGS = {
  image: "--allowed-image",
  serviceAccount: "--allowed-service-account",
  privileged: "--allow-privileged-scripts",
} as const;

/** Why a ScriptRun is refused: the spec field and a message naming it and the flag. */
export interface Refusal {
  field: string;
  message: string;
}

/** True when `image` is one of `patterns` (exact, or a prefix ending in `*`). */
export function imageAllowed(image: string, patterns: readonly string[]): boolean {
  return patterns.some((p) => p.endsWith("*") ? image.startsWith(p.slice(0, -1)) : image === p);
}

/** Checks a ScriptRun against the policy: the first refusal, or undefined when it is allowed. */
export function checkPolicy(run: ScriptRun, policy: Readonly<Policy>): Refusal | undefined {
  const spec = run.spec;
  const image = spec.image ?? DEFAULTS.image;
  if (!imageAllowed(image, policy.allowedImages)) {
    const allowed = policy.allowedImages.length > 0 ? policy.allowedImages.join(", ") : "none";
    return refuse(
      "spec.image",
      `image "${image}" is not allowed (allowed: ${allowed})`,
      `use an allowed image, or start the operator with ${POLICY_FLAGS.image}=${image}`,
    );
  }
  const account = spec.serviceAccountName;
  if (account && !policy.allowedServiceAccounts.some((a) => a === "*" || a === account)) {
    const allowed = policy.allowedServiceAccounts.length > 0
      ? `allowed: ${policy.allowedServiceAccounts.join(", ")}`
      : "none may be set";
    return refuse(
      "spec.serviceAccountName",
      `ServiceAccount "${account}" is not allowed (${allowed})`,
      `remove it (the pod then gets no API token), or start the operator with ${POLICY_FLAGS.serviceAccount}=${account}`,
    );
  }
  if (policy.allowPrivileged) return undefined;
  const asked = spec.securityContext ?? {};
  const sc = effectiveSecurityContext(asked);
  const privileged = (field: string, what: string) =>
    refuse(
      `spec.securityContext.${field}`,
      what,
      `remove it, or start the operator with ${POLICY_FLAGS.privileged}`,
    );
  if (sc.privileged) return privileged("privileged", "privileged: true is not allowed");
  if (sc.runAsUser === 0) return privileged("runAsUser", "runAsUser: 0 (root) is not allowed");
  if (sc.runAsNonRoot === false) {
    return privileged("runAsNonRoot", "runAsNonRoot: false (may run as root) is not allowed");
  }
  if (sc.allowPrivilegeEscalation !== false) {
    return privileged(
      "allowPrivilegeEscalation",
      "allowPrivilegeEscalation must stay false",
    );
  }
  const added = sc.capabilities?.add ?? [];
  if (added.length > 0) {
    return privileged(
      "capabilities.add",
      `adding capabilities (${added.join(", ")}) is not allowed`,
    );
  }
  if (!(sc.capabilities?.drop ?? []).includes("ALL")) {
    return privileged("capabilities.drop", 'capabilities.drop must include "ALL"');
  }
  const seccomp = sc.seccompProfile?.type;
  if (seccomp !== "RuntimeDefault" && seccomp !== "Localhost") {
    return privileged(
      "seccompProfile.type",
      `seccompProfile ${seccomp ?? "unset"} is not allowed (RuntimeDefault or Localhost)`,
    );
  }
  return undefined;
}

function refuse(field: string, what: string, fix: string): Refusal {
  return {
    field,
    message: `refused by the operator's policy: ${field}: ${what}; ${fix}`,
  };
}

/** The policy as log fields, for the start-up line. */
export function describePolicy(policy: Readonly<Policy>): Record<string, unknown> {
  return {
    allowedImages: policy.allowedImages,
    allowedServiceAccounts: policy.allowedServiceAccounts,
    allowPrivilegedScripts: policy.allowPrivileged,
  };
}
