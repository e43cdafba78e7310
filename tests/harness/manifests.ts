/**
 * Reading the shipped manifests (deploy/ and the Helm chart's renders) as plain objects.
 * @module
 */
import { parseAllDocuments } from "yaml";

/** The repository root, with a trailing slash. */
export const ROOT: string = new URL("../../", import.meta.url).pathname;

/** One RBAC rule. */
export interface Rule {
  /** API groups ("" is core). */
  apiGroups: string[];
  /** Resources, with subresources as `resource/sub`. */
  resources: string[];
  /** Verbs. */
  verbs: string[];
}

/** A Kubernetes object as far as the tests look at it. */
export interface K8sObject {
  /** group/version. */
  apiVersion: string;
  /** Kind. */
  kind: string;
  /** Name, namespace and labels. */
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  /** RBAC rules of a Role or ClusterRole. */
  rules?: Rule[];
  // deno-lint-ignore no-explicit-any -- manifests are checked field by field by the tests
  [key: string]: any;
}

/** A file of the repository as text (`path` relative to the root). */
export function readText(path: string): Promise<string> {
  return Deno.readTextFile(`${ROOT}${path}`);
}

/** Every object of a multi-document YAML text (empty documents left out). */
export function parseManifests(text: string): K8sObject[] {
  return parseAllDocuments(text).map((d) => d.toJS() as K8sObject).filter(Boolean);
}

/** Every object of a YAML file of the repository (`path` relative to the root). */
export async function manifests(path: string): Promise<K8sObject[]> {
  return parseManifests(await readText(path));
}

/** The objects of one kind. */
export function only(objects: K8sObject[], kind: string): K8sObject[] {
  return objects.filter((o) => o.kind === kind);
}

/** `Kind namespace/name` (or `Kind name` when cluster-scoped), to name an object in messages. */
export function objectKey(o: K8sObject): string {
  return `${o.kind} ${o.metadata.namespace ? `${o.metadata.namespace}/` : ""}${o.metadata.name}`;
}
