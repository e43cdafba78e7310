/**
 * The ScriptRun CustomResourceDefinition, built from the same defaults the operator uses.
 * `deploy/crd.yaml` is generated from it (`deno task gen`) and a test checks that they agree.
 * Pure. No I/O.
 * @module
 */
import { DEFAULTS, defaultSecurityContext } from "./desired.ts";
import { GROUP, KIND, PLURAL, VERSION } from "../types.ts";

type Schema = Record<string, unknown>;

/**
 * Size bounds of args and env: `$` is escaped as `$$` in the Job, so the script's
 * arguments and values take up to twice their size there, and again in the pod. With these
 * bounds a Job stays near 0.5 MiB, far below the API server's 1.5 MiB request limit.
 */
export const SPEC_LIMITS = {
  /** Most arguments, and most env variables. */
  maxItems: 256,
  /** Longest single argument or env value, in characters (bytes for ASCII). */
  maxItemBytes: 65_536,
  /** Most characters of all arguments and env values together. */
  maxTotalBytes: 262_144,
} as const;

// As controller-gen writes resource quantities: int or string, the string matching Quantity.
const quantity: Schema = {
  anyOf: [{ type: "integer" }, { type: "string" }],
  pattern:
    "^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$",
  "x-kubernetes-int-or-string": true,
};

const resourceList: Schema = {
  type: "object",
  properties: { cpu: quantity, memory: quantity },
};

const securityContext: Schema = {
  type: "object",
  // No UID or GID: the operator sets 65532 unless the platform assigns one
  // (--platform-assigns-uid); stored here, it would read as the ScriptRun asking for it.
  default: defaultSecurityContext({ platformAssignsUid: true }),
  description:
    "Container security context of the script. Each field set here overlays the default (restricted profile, UID and GID 65532, or none when the operator runs with --platform-assigns-uid and the platform assigns them); fields left out keep it. Root user or group, privileged, added capabilities, Unconfined seccomp and privilege escalation are refused unless the operator runs with --allow-privileged-scripts.",
  properties: {
    runAsUser: { type: "integer", format: "int64", minimum: 0 },
    runAsGroup: { type: "integer", format: "int64", minimum: 0 },
    runAsNonRoot: { type: "boolean" },
    allowPrivilegeEscalation: { type: "boolean" },
    // Declared so that `privileged: true` is kept and refused by name, not silently pruned.
    privileged: { type: "boolean" },
    readOnlyRootFilesystem: { type: "boolean" },
    capabilities: {
      type: "object",
      properties: {
        add: { type: "array", items: { type: "string" } },
        drop: { type: "array", items: { type: "string" } },
      },
    },
    seccompProfile: {
      type: "object",
      required: ["type"],
      properties: {
        type: { type: "string", enum: ["RuntimeDefault", "Localhost", "Unconfined"] },
        localhostProfile: { type: "string" },
      },
    },
  },
  "x-kubernetes-validations": [{
    rule:
      "!has(self.runAsNonRoot) || !self.runAsNonRoot || !has(self.runAsUser) || self.runAsUser != 0",
    message:
      "runAsNonRoot is true but runAsUser is 0: set a non-zero runAsUser or drop runAsNonRoot",
  }],
};

/** A key of a Secret or ConfigMap; no namespace field: always the ScriptRun's namespace. */
function keyRef(what: string): Schema {
  return {
    type: "object",
    description: `A key of a ${what} in the ScriptRun's namespace.`,
    required: ["name", "key"],
    properties: {
      name: {
        type: "string",
        minLength: 1,
        maxLength: 253,
        pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
      },
      key: { type: "string", minLength: 1, maxLength: 253, pattern: "^[-._a-zA-Z0-9]+$" },
      optional: { type: "boolean" },
    },
  };
}

const spec: Schema = {
  type: "object",
  required: ["script"],
  properties: {
    script: {
      type: "string",
      description:
        "File name of a script embedded in the operator (see `script-operator scripts`).",
      minLength: 1,
      maxLength: 253,
      pattern: "^[-._a-zA-Z0-9]+$",
    },
    image: {
      type: "string",
      description: "Container image that runs the script; it needs the script's interpreter.",
      minLength: 1,
      default: DEFAULTS.image,
    },
    args: {
      type: "array",
      description:
        `Arguments passed to the script. $(VAR) is not expanded. At most ${SPEC_LIMITS.maxItems} arguments of ${SPEC_LIMITS.maxItemBytes} characters each; arguments and env values together at most ${SPEC_LIMITS.maxTotalBytes} characters.`,
      maxItems: SPEC_LIMITS.maxItems,
      items: { type: "string", maxLength: SPEC_LIMITS.maxItemBytes },
      default: [],
    },
    env: {
      type: "array",
      description:
        `Environment variables of the script: a value ($(VAR) is not expanded), or valueFrom a key of a Secret (only one the operator's --allowed-secret names) or ConfigMap in the ScriptRun's namespace. Names that make an interpreter run other code (PATH, LD_*, BASH_ENV, PYTHON*...) are refused unless the operator runs with --allow-privileged-scripts. At most ${SPEC_LIMITS.maxItems} variables, values of ${SPEC_LIMITS.maxItemBytes} characters each; arguments and env values together at most ${SPEC_LIMITS.maxTotalBytes} characters.`,
      default: [],
      maxItems: SPEC_LIMITS.maxItems,
      "x-kubernetes-list-type": "map",
      "x-kubernetes-list-map-keys": ["name"],
      items: {
        type: "object",
        required: ["name"],
        properties: {
          name: {
            type: "string",
            minLength: 1,
            maxLength: 253,
            pattern: "^[-._a-zA-Z][-._a-zA-Z0-9]*$",
          },
          value: { type: "string", maxLength: SPEC_LIMITS.maxItemBytes },
          valueFrom: {
            type: "object",
            properties: {
              secretKeyRef: keyRef("Secret"),
              configMapKeyRef: keyRef("ConfigMap"),
            },
            "x-kubernetes-validations": [{
              rule: "has(self.secretKeyRef) != has(self.configMapKeyRef)",
              message: "valueFrom takes exactly one of secretKeyRef or configMapKeyRef",
            }],
          },
        },
        "x-kubernetes-validations": [{
          rule: "!(has(self.value) && has(self.valueFrom))",
          message: "set value or valueFrom, not both",
        }],
      },
    },
    resources: {
      type: "object",
      description:
        "CPU and memory requests and limits of the script's container. Each of the four left out keeps its default (a request above the default limit raises that limit), so the container always has limits.",
      properties: { requests: resourceList, limits: resourceList },
      default: DEFAULTS.resources,
    },
    backoffLimit: {
      type: "integer",
      format: "int32",
      description: "Retries of a failed pod before the run fails.",
      minimum: 0,
      maximum: 100,
      default: DEFAULTS.backoffLimit,
    },
    activeDeadlineSeconds: {
      type: "integer",
      format: "int64",
      description: "Seconds the run may take before it is stopped and fails.",
      minimum: 1,
      default: DEFAULTS.activeDeadlineSeconds,
    },
    ttlSecondsAfterFinished: {
      type: "integer",
      format: "int32",
      description:
        "Seconds the finished Job (and its pod logs) is kept once the status records the outcome; then the operator deletes it. The ScriptRun's status stays.",
      minimum: 0,
      default: DEFAULTS.ttlSecondsAfterFinished,
    },
    serviceAccountName: {
      type: "string",
      description: "ServiceAccount of the script's pod; without it the pod gets no API token.",
      maxLength: 253,
      pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    },
    securityContext,
    rerunPolicy: {
      type: "string",
      enum: ["Never", "OnChange"],
      default: DEFAULTS.rerunPolicy,
      description:
        "Never (default): once the run finished (its Job succeeded or failed), a change of spec or script is reported in condition Outdated and not run. OnChange: a new spec or script version runs again.",
    },
    reportOutput: {
      type: "boolean",
      description:
        "When false, a failed run's script output (termination message or last log lines) is left out of status.message and Events.",
      default: true,
    },
  },
  "x-kubernetes-validations": [{
    rule: "(has(self.args) ? self.args.map(a, size(a)).sum() : 0) + " +
      "(has(self.env) ? self.env.map(e, has(e.value) ? size(e.value) : 0).sum() : 0) <= " +
      String(SPEC_LIMITS.maxTotalBytes),
    message:
      `args and env values together are longer than the limit of ${SPEC_LIMITS.maxTotalBytes} characters (256 Ki): pass large data another way, e.g. a ConfigMap or Secret the script reads`,
  }],
};

const status: Schema = {
  type: "object",
  properties: {
    phase: { type: "string", enum: ["Pending", "Running", "Succeeded", "Failed"] },
    reason: { type: "string" },
    message: { type: "string" },
    scriptHash: { type: "string", description: "SHA-256 of the script that ran." },
    runHash: {
      type: "string",
      description: "Hash of script and spec naming the ConfigMap and Job.",
    },
    configMapName: { type: "string" },
    jobName: { type: "string" },
    startTime: { type: "string", format: "date-time" },
    completionTime: { type: "string", format: "date-time" },
    observedGeneration: {
      type: "integer",
      format: "int64",
      description: "metadata.generation of the spec this status describes.",
    },
    conditions: {
      type: "array",
      description:
        "Ready (True once succeeded), Reconciling (True while in progress) or Stalled (True when it cannot go on without a change), as kstatus reads them; Complete or Failed once finished; ScriptAvailable and Outdated.",
      "x-kubernetes-list-type": "map",
      "x-kubernetes-list-map-keys": ["type"],
      items: {
        type: "object",
        required: ["type", "status", "lastTransitionTime"],
        properties: {
          type: { type: "string" },
          status: { type: "string", enum: ["True", "False", "Unknown"] },
          reason: { type: "string" },
          message: { type: "string" },
          lastTransitionTime: { type: "string", format: "date-time" },
          observedGeneration: { type: "integer", format: "int64" },
        },
      },
    },
  },
};

/** The CustomResourceDefinition object for ScriptRun. */
export function scriptRunCrd(): Record<string, unknown> {
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: {
      name: `${PLURAL}.${GROUP}`,
      labels: { "app.kubernetes.io/name": "script-operator" },
    },
    spec: {
      group: GROUP,
      names: {
        kind: KIND,
        listKind: `${KIND}List`,
        plural: PLURAL,
        singular: KIND.toLowerCase(),
        shortNames: ["sr"],
      },
      scope: "Namespaced",
      versions: [{
        name: VERSION,
        served: true,
        storage: true,
        subresources: { status: {} },
        additionalPrinterColumns: [
          { name: "Script", type: "string", jsonPath: ".spec.script" },
          { name: "Phase", type: "string", jsonPath: ".status.phase" },
          {
            name: "Ready",
            type: "string",
            jsonPath: '.status.conditions[?(@.type=="Ready")].status',
          },
          { name: "Job", type: "string", jsonPath: ".status.jobName" },
          { name: "Reason", type: "string", jsonPath: ".status.reason", priority: 1 },
          { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
        ],
        schema: {
          openAPIV3Schema: {
            type: "object",
            description: "Runs a script embedded in script-operator as a Kubernetes Job.",
            required: ["spec"],
            properties: {
              apiVersion: { type: "string" },
              kind: { type: "string" },
              metadata: { type: "object" },
              spec,
              status,
            },
          },
        },
      }],
    },
  };
}
