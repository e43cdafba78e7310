/**
 * Installs deploy/rbac.yaml under unique names for one test, so tests never share or fight over
 * the real `script-operator` namespace, and returns a ServiceAccount token bound to a Secret
 * (deleting the Secret revokes the token).
 * @module
 */
import { parseAllDocuments, stringify } from "yaml";
import { kubectlOk } from "./test_env.ts";

interface Doc {
  kind: string;
  metadata: { name: string; namespace?: string };
  subjects?: { kind: string; name: string; namespace?: string }[];
  roleRef?: { kind: string; name: string };
}

/** deploy/rbac.yaml with the namespace `ns` and `-<suffix>` on cluster-wide names. Pure. */
export function renameRbac(text: string, ns: string, suffix: string): Doc[] {
  return parseAllDocuments(text).map((d) => d.toJS() as Doc).filter(Boolean).map((doc) => {
    if (doc.metadata.namespace) doc.metadata.namespace = ns;
    if (doc.kind === "ClusterRole" || doc.kind === "ClusterRoleBinding") {
      doc.metadata.name += `-${suffix}`;
    }
    if (doc.roleRef?.kind === "ClusterRole") doc.roleRef.name += `-${suffix}`;
    for (const s of doc.subjects ?? []) if (s.namespace) s.namespace = ns;
    return doc;
  });
}

/** The operator's identity as installed from deploy/rbac.yaml into `ns`. */
export interface OperatorIdentity extends AsyncDisposable {
  serviceAccount: string;
  /** Issues a token bound to a new Secret; `revoke()` deletes the Secret. */
  token(): Promise<{ token: string; revoke: () => Promise<void> }>;
}

/** Applies deploy/rbac.yaml renamed for namespace `ns` (which must exist). */
export async function installOperatorRbac(ns: string): Promise<OperatorIdentity> {
  const suffix = ns;
  const docs = renameRbac(
    await Deno.readTextFile(new URL("../../deploy/rbac.yaml", import.meta.url)),
    ns,
    suffix,
  );
  const text = docs.map((d) => stringify(d)).join("---\n");
  await kubectlOk(["apply", "-f", "-"], { stdin: text });
  const sa = docs.find((d) => d.kind === "ServiceAccount")!.metadata.name;
  let n = 0;
  return {
    serviceAccount: sa,
    token: async () => {
      const secret = `token-anchor-${n++}`;
      await kubectlOk(["-n", ns, "create", "secret", "generic", secret]);
      const token = (await kubectlOk([
        "-n",
        ns,
        "create",
        "token",
        sa,
        "--duration=1h",
        "--bound-object-kind=Secret",
        `--bound-object-name=${secret}`,
      ])).trim();
      return {
        token,
        revoke: async () => {
          await kubectlOk(["-n", ns, "delete", "secret", secret]);
        },
      };
    },
    [Symbol.asyncDispose]: async () => {
      for (const d of docs.filter((d) => !d.metadata.namespace)) {
        await kubectlOk(["delete", d.kind, d.metadata.name, "--ignore-not-found"]);
      }
    },
  };
}
