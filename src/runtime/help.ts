/**
 * The text of `--help`: the one description of the commands, flags and exit codes a user reads at
 * the terminal (docs/cli.md lists the same flags; tests/docs_test.ts keeps the two in step).
 * @module
 */
import { OPERATOR_SERVICE_ACCOUNT } from "../desired/policy.ts";
import { OPERATOR_VERSION } from "../version.ts";

/** --help text. */
export const HELP =
  `script-operator ${OPERATOR_VERSION}: runs scripts embedded in this binary as Kubernetes Jobs,
one per ScriptRun resource (scriptruns.script-operator.dev).

Usage:
  script-operator [run] [flags]   reconcile ScriptRuns until stopped (or once with --once)
  script-operator scripts         list the embedded scripts with size and SHA-256
  script-operator crd             print the ScriptRun CRD as YAML (pipe to kubectl apply -f -)

Flags take a value as --flag VALUE or --flag=VALUE. Boolean flags are on with --flag and take
--flag=true or --flag=false. A flag marked "list" may be repeated, or take a comma-separated list.
A DURATION is a number with a unit, as in Go: 500ms, 15s, 1m30s, 1h.

Flags:
  --kubeconfig PATH            kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)
  --context NAME               kubeconfig context to use (default: its current-context)
  -n, --namespace NS           list: watch only these namespaces (default: all namespaces)
  --interval DURATION          time between reconcile cycles, 100ms to 24h (default 15s)
  --once                       run one reconcile cycle and exit (1 if it failed)
  --dry-run                    log what would be written, write nothing
  --concurrency N              ScriptRuns reconciled at once (default 8)
  --log-format json|text       default: text on a terminal, json otherwise
  --log-level LEVEL            trace, debug, info, warn, error (default info)
  --leader-elect               hold a Lease so only one replica writes (default off)
  --leader-election-namespace NS
                               namespace of the Lease (default: in-cluster namespace or default)
  --leader-election-id NAME    name of the Lease (default script-operator-leader)
  --health-probe-bind-address ADDR
                               address of /healthz and /readyz (default :8081; 0 = off)
  --metrics-bind-address ADDR  address of /metrics (default :8080; 0 = off)
  --platform-assigns-uid       Job pods name no runAsUser or runAsGroup: the platform assigns
                               them (OpenShift restricted-v2); they stay runAsNonRoot, without
                               capabilities or privilege escalation, RuntimeDefault seccomp
                               (default off: UID and GID 65532)

Policy (what a ScriptRun may ask for; refused runs fail with reason PolicyViolation):
  --allowed-image PATTERN      list: image a ScriptRun may use: exact, or a prefix ending in
                               '/*' or ':*' ('*' alone: any) (default: busybox:1.36 only)
  --allowed-service-account SA list: ServiceAccount a ScriptRun may set ('*': any but
                               ${OPERATOR_SERVICE_ACCOUNT}, which must be named) (default: none)
  --allowed-secret NAME        list: Secret whose keys env valueFrom.secretKeyRef may name:
                               exact, or a prefix ending in '*' (default: none)
  --max-cpu QUANTITY           largest CPU request or limit a ScriptRun may ask for, e.g. 2
                               (default: none; at least the default limit 100m)
  --max-memory QUANTITY        largest memory request or limit, e.g. 4Gi (default: none; at
                               least the default limit 500M)
  --allow-privileged-scripts   allow root user or group, privileged, added capabilities,
                               Unconfined seccomp, privilege escalation, and env names such as
                               PATH, LD_PRELOAD, BASH_ENV, PYTHON* (default off)
  -h, --help                   show this help
  --version                    print the version

Exit codes: 0 ok, 1 runtime error, 2 usage or configuration error.`;
