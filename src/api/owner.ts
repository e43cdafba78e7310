/**
 * Which ScriptRun an object belongs to: the one answer the watched view, the reconciler and its
 * caches share. Pure.
 *
 * A uid alone is not enough: a pod's `scriptrun-uid` label is set by whoever creates the pod, so a
 * pod in another namespace can carry any run's uid. An object belongs to a run only within the
 * run's namespace (ownerReferences cannot cross namespaces either).
 * @module
 */
import { KIND } from "../types.ts";

/** An ownerReference, as far as ownership needs it. */
interface OwnerReference {
  uid: string;
  controller?: boolean;
  kind: string;
  name: string;
}

/** The ownerReference of the ScriptRun that controls `obj`, if one does. */
export function controllerRef(
  obj: { metadata: { ownerReferences?: OwnerReference[] } },
): OwnerReference | undefined {
  return obj.metadata.ownerReferences?.find((o) => o.controller && o.kind === KIND);
}

/** The uid of the ScriptRun that controls `obj`, if one does. */
export function controllerUid(
  obj: { metadata: { ownerReferences?: OwnerReference[] } },
): string | undefined {
  return controllerRef(obj)?.uid;
}

/**
 * The key of a run in every per-run index and cache: its namespace and uid. Objects of one run are
 * looked up under it, so a child or pod in another namespace never matches.
 */
export function runKey(namespace: string, uid: string): string {
  return `${namespace}/${uid}`;
}

/** The namespace part of a {@linkcode runKey}. */
export function namespaceOfKey(key: string): string {
  return key.slice(0, key.indexOf("/"));
}
