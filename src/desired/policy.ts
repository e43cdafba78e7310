/**
 * The operator's policy: which images, ServiceAccounts, Secrets, environment variable names and
 * security contexts a ScriptRun may ask for. Creating a ScriptRun creates a pod with the operator's rights, so the operator only builds
 * pods this policy allows. Pure. No I/O.
 * @module
 */
import { REASON } from "./reasons.ts";
import {
  DEFAULTS,
  effectiveResources,
  effectiveSecurityContext,
  quantityValue,
} from "./desired.ts";
import type { ScriptRun, ScriptRunSpec } from "../types.ts";

/** What ScriptRuns may ask for; set by the operator's flags. */
export interface Policy {
  /**
   * Image patterns: an exact image, or a prefix ending in `/*` or `:*`
   * (`registry.example/tools/*`, `busybox:*`), or `*` alone for any image.
   */
  allowedImages: string[];
  /**
   * ServiceAccount names a ScriptRun may set (`*`: any but the operator's own); empty: none may
   * be set.
   */
  allowedServiceAccounts: string[];
  /**
   * Secrets whose keys `env[].valueFrom.secretKeyRef` may name: exact names, or a prefix ending
   * in `*`; empty: none.
   */
  allowedSecrets: string[];
  /**
   * Root (user or group), added capabilities, privileged, Unconfined seccomp, privilege
   * escalation, and environment variables that make an interpreter run other code.
   */
  allowPrivileged: boolean;
  /** Largest CPU request or limit (a quantity such as `2`); empty: no maximum. */
  maxCpu: string;
  /** Largest memory request or limit (a quantity such as `4Gi`); empty: no maximum. */
  maxMemory: string;
}

/**
 * The policy without flags: the default image only, no ServiceAccount, no Secret, nothing
 * privileged.
 */
export const DEFAULT_POLICY: Readonly<Policy> = Object.freeze({
  allowedImages: [DEFAULTS.image],
  allowedServiceAccounts: [],
  allowedSecrets: [],
  allowPrivileged: false,
  maxCpu: "",
  maxMemory: "",
});

/**
 * The operator's own ServiceAccount in deploy/: `--allowed-service-account='*'` does not reach
 * it (in its own namespace it would hand the script the operator's rights); only naming it does.
 */
export const OPERATOR_SERVICE_ACCOUNT = "script-operator";

/**
 * Environment variable names that make a shell, the dynamic loader or an interpreter load or run
 * other code than the script (`BASH_ENV='$(cmd)'`, `LD_PRELOAD=/lib.so`, `PATH=/tmp/evil`...).
 * Matched exactly; see UNSAFE_ENV_PREFIXES for the families.
 */
export const UNSAFE_ENV_NAMES: readonly string[] = [
  "BASH_ENV",
  "ENV",
  "PATH",
  "IFS",
  "SHELLOPTS",
  "BASHOPTS",
  "PS4",
  "PROMPT_COMMAND",
  "GCONV_PATH",
  "LOCPATH",
  "GLIBC_TUNABLES",
  "NODE_OPTIONS",
  "NODE_PATH",
  "PERLLIB",
  "RUBYOPT",
  "RUBYLIB",
  "JAVA_TOOL_OPTIONS",
  "_JAVA_OPTIONS",
  "JDK_JAVA_OPTIONS",
];

/** Prefixes of unsafe names: the loader (`LD_*`), Python, Perl 5 and exported bash functions. */
export const UNSAFE_ENV_PREFIXES: readonly string[] = ["LD_", "PYTHON", "PERL5", "BASH_FUNC_"];

/** True when an environment variable of this name can make the script's image run other code. */
export function unsafeEnvName(name: string): boolean {
  return UNSAFE_ENV_NAMES.includes(name) || UNSAFE_ENV_PREFIXES.some((p) => name.startsWith(p));
}

/** Status reason of a refused ScriptRun. */
export const POLICY_VIOLATION: string = REASON.PolicyViolation;

/** The flags that widen the policy, as the refusal messages name them. */
export const POLICY_FLAGS = {
  image: "--allowed-image",
  serviceAccount: "--allowed-service-account",
  secret: "--allowed-secret",
  maxCpu: "--max-cpu",
  maxMemory: "--max-memory",
  privileged: "--allow-privileged-scripts",
} as const;

/** Why a ScriptRun is refused: the spec field and a message naming it and the flag. */
export interface Refusal {
  field: string;
  message: string;
}

/**
 * Why an image pattern is unusable, or undefined when it is fine. A prefix must end at a
 * registry/repository boundary (`/*`) or a tag (`:*`): `busybox*` would also match
 * `busybox.attacker.example/x`.
 */
export function imagePatternProblem(pattern: string): string | undefined {
  if (pattern === "" || /\s/.test(pattern)) return "is empty or has blanks";
  const star = pattern.indexOf("*");
  if (star === -1 || pattern === "*") return undefined;
  if (star !== pattern.length - 1) return "has '*' before its end";
  if (!pattern.endsWith("/*") && !pattern.endsWith(":*")) {
    return "is a prefix that does not end in '/*' or ':*', so it also matches other registries (busybox* matches busybox.attacker.example/x)";
  }
  return undefined;
}

/**
 * True when `image` is one of `patterns`: an exact image, a prefix ending in `/*` or `:*`, or
 * `*`. A pattern imagePatternProblem() refuses matches nothing.
 */
export function imageAllowed(image: string, patterns: readonly string[]): boolean {
  return patterns.some((p) =>
    imagePatternProblem(p) === undefined &&
    (p.endsWith("*") ? image.startsWith(p.slice(0, -1)) : image === p)
  );
}

/** True when the name is one of `patterns` (exact, or a prefix ending in `*`). */
export function nameAllowed(name: string, patterns: readonly string[]): boolean {
  return patterns.some((p) => p.endsWith("*") ? name.startsWith(p.slice(0, -1)) : name === p);
}

/** True when the policy lets a ScriptRun set this `serviceAccountName`. */
export function serviceAccountAllowed(account: string, allowed: readonly string[]): boolean {
  return allowed.some((a) => a === account || (a === "*" && account !== OPERATOR_SERVICE_ACCOUNT));
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
  if (account && !serviceAccountAllowed(account, policy.allowedServiceAccounts)) {
    const allowed = policy.allowedServiceAccounts.length > 0
      ? `allowed: ${policy.allowedServiceAccounts.join(", ")}`
      : "none may be set";
    const own = account === OPERATOR_SERVICE_ACCOUNT ? "; '*' leaves out the operator's own" : "";
    return refuse(
      "spec.serviceAccountName",
      `ServiceAccount "${account}" is not allowed (${allowed}${own})`,
      `remove it (the pod then gets no API token), or start the operator with ${POLICY_FLAGS.serviceAccount}=${account}`,
    );
  }
  for (const e of spec.env ?? []) {
    const secret = e.valueFrom?.secretKeyRef?.name;
    if (secret !== undefined && !nameAllowed(secret, policy.allowedSecrets)) {
      const allowed = policy.allowedSecrets.length > 0
        ? `allowed: ${policy.allowedSecrets.join(", ")}`
        : "none may be named";
      return refuse(
        "spec.env.valueFrom.secretKeyRef",
        `variable ${e.name}: Secret "${secret}" is not allowed (${allowed}); a script's output can reveal the value`,
        `use a ConfigMap key or a value, or start the operator with ${POLICY_FLAGS.secret}=${secret}`,
      );
    }
  }
  const resources = resourcesRefusal(spec.resources, policy);
  if (resources) return resources;
  if (policy.allowPrivileged) return undefined;
  for (const e of spec.env ?? []) {
    if (unsafeEnvName(e.name)) {
      return refuse(
        "spec.env.name",
        `variable ${e.name} is not allowed: it makes the shell, the loader or an interpreter run other code than the script`,
        `rename it, or start the operator with ${POLICY_FLAGS.privileged}`,
      );
    }
  }
  const asked = spec.securityContext ?? {};
  // The default UID (65532, or none when the platform assigns one) passes either way: no rule
  // refuses an unset UID, and the default's runAsNonRoot: true keeps root out.
  const sc = effectiveSecurityContext(asked);
  const privileged = (field: string, what: string) =>
    refuse(
      `spec.securityContext.${field}`,
      what,
      `remove it, or start the operator with ${POLICY_FLAGS.privileged}`,
    );
  if (sc.privileged) return privileged("privileged", "privileged: true is not allowed");
  if (sc.runAsUser === 0) return privileged("runAsUser", "runAsUser: 0 (root) is not allowed");
  if (sc.runAsGroup === 0) {
    return privileged("runAsGroup", "runAsGroup: 0 (root group) is not allowed");
  }
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

/**
 * Every limit of the container (defaults included) must be above 0, since 0 means no limit, and
 * no request or limit above the policy's maximum.
 */
function resourcesRefusal(
  asked: ScriptRunSpec["resources"],
  policy: Readonly<Policy>,
): Refusal | undefined {
  const effective = effectiveResources(asked);
  for (const k of ["cpu", "memory"] as const) {
    const limit = effective.limits[k];
    if (limit !== undefined && !(quantityValue(limit) > 0)) {
      return refuse(
        `spec.resources.limits.${k}`,
        `${limit} is not more than 0 (0 means no limit)`,
        "remove it (the default limit applies), or give a positive quantity",
      );
    }
    const max = k === "cpu" ? policy.maxCpu : policy.maxMemory;
    if (!max) continue;
    const flag = k === "cpu" ? POLICY_FLAGS.maxCpu : POLICY_FLAGS.maxMemory;
    for (const kind of ["requests", "limits"] as const) {
      const value = effective[kind][k];
      if (value !== undefined && quantityValue(value) > quantityValue(max)) {
        return refuse(
          `spec.resources.${kind}.${k}`,
          `${value} is above the maximum ${max}`,
          `ask for at most ${max}, or start the operator with a larger ${flag}`,
        );
      }
    }
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
    allowedSecrets: policy.allowedSecrets,
    allowPrivilegedScripts: policy.allowPrivileged,
    maxCpu: policy.maxCpu || "none",
    maxMemory: policy.maxMemory || "none",
  };
}
