/**
 * What the cluster holds for one ScriptRun, as the plan reads it (`Observed`): from one cycle's
 * plain LISTs, or from the watched view. Pure: the view is read, never changed.
 * @module
 */
import type { Action, NameLookup, Observed } from "../desired/plan.ts";
import { controllerRef, controllerUid } from "../api/owner.ts";
import type { ConfigMap, Job, PodSummary, ScriptRun } from "../types.ts";
import type { Lookup, Reads } from "./settled.ts";

/** The watched view, as far as the reconciler reads it (see src/store/view.ts). */
export interface RunView {
  /** True while the view serves reads (started, not stopped); it then stays current by itself. */
  synced(): boolean;
  scriptRuns(namespace?: string): ScriptRun[];
  scriptRun(namespace: string, name: string): ScriptRun | undefined;
  /**
   * A token that changes whenever the run `runUid`, its children or its pods (as
   * {@linkcode RunView.scriptRun} and {@linkcode RunView.children} show them) change.
   */
  version(namespace: string, runUid: string): string;
  /**
   * The run's children (by controller ownerReference uid) and pods (by the run-uid label), both
   * within the run's namespace.
   */
  children(
    namespace: string,
    runUid: string,
  ): { configMaps: ConfigMap[]; jobs: Job[]; pods: PodSummary[] };
  /** name → controller ScriptRun uid ("" for none) of every managed object in a namespace. */
  names(
    namespace: string,
  ): { configMaps: ReadonlyMap<string, string>; jobs: ReadonlyMap<string, string> };
}

/** Children by controller uid, and names by namespace, of one cycle's LISTs. */
export interface Listed {
  byOwner: Map<string, { configMaps: ConfigMap[]; jobs: Job[] }>;
  names: Map<string, { configMaps: Map<string, string>; jobs: Map<string, string> }>;
  alive: (uid: string) => boolean;
}

/** Indexes one scope's LISTs. */
export function indexLists(runs: ScriptRun[], configMaps: ConfigMap[], jobs: Job[]): Listed {
  const uids = new Set(runs.map((run) => run.metadata.uid ?? ""));
  return {
    byOwner: groupByController(configMaps, jobs),
    names: namesByNamespace(configMaps, jobs),
    alive: (uid) => uids.has(uid),
  };
}

/** A run as one cycle's LISTs show it (pods are read when the plan asks). */
export function observeFromLists(run: ScriptRun, listed: Listed): Observed {
  const uid = run.metadata.uid ?? "";
  const namespace = run.metadata.namespace ?? "";
  const inNs = listed.names.get(namespace);
  // Children by uid are matched within the run's namespace too: ownerReferences cannot cross
  // namespaces, but a cluster-wide LIST holds every namespace's objects.
  const inNamespace = <T extends ConfigMap | Job>(o: T) => o.metadata.namespace === namespace;
  const mine = listed.byOwner.get(uid) ?? { configMaps: [], jobs: [] };
  return withPredecessors({
    configMaps: mine.configMaps.filter(inNamespace),
    jobs: mine.jobs.filter(inNamespace),
    foreignConfigMaps: new ForeignNames((n) => inNs?.configMaps.get(n), uid, listed.alive),
    foreignJobs: new ForeignNames((n) => inNs?.jobs.get(n), uid, listed.alive),
  });
}

/**
 * The lookups a plan makes in the view's shared indexes of a namespace, by name: `job/NAME` and
 * `configMap/NAME` (the controller uid of the object holding that name, "" for none) and
 * `alive/UID` ("1" while the ScriptRun exists).
 */
export function viewLookup(view: RunView, namespace: string): Lookup {
  return (what) => {
    const slash = what.indexOf("/");
    const kind = what.slice(0, slash);
    const key = what.slice(slash + 1);
    if (kind === "job") return view.names(namespace).jobs.get(key);
    if (kind === "configMap") return view.names(namespace).configMaps.get(key);
    return view.scriptRuns(namespace).some((r) => r.metadata.uid === key) ? "1" : undefined;
  };
}

/**
 * A run as the watched view shows it. Lookups in the namespace's shared indexes go through
 * `reads`, which records them for the settled check.
 */
export function observeFromView(view: RunView, run: ScriptRun, reads: Reads): Observed {
  const uid = run.metadata.uid ?? "";
  const namespace = run.metadata.namespace ?? "";
  const children = view.children(namespace, uid);
  const alive = (owner: string) => reads.read(`alive/${owner}`) === "1";
  return withPredecessors({
    configMaps: [...children.configMaps],
    jobs: [...children.jobs],
    foreignConfigMaps: new ForeignNames((n) => reads.read(`configMap/${n}`), uid, alive),
    foreignJobs: new ForeignNames((n) => reads.read(`job/${n}`), uid, alive),
    pods: children.pods,
    podsCached: true,
  });
}

/**
 * A run that can have had no Job yet: its spec never changed, no status recorded one, and nothing
 * of it is seen. Its first Job needs no live look at pods (there can be none of another Job).
 */
export function fresh(run: ScriptRun, observed: Observed): boolean {
  return (run.metadata.generation ?? 1) <= 1 && !run.status?.runHash && !run.status?.jobName &&
    observed.jobs.length === 0 && (observed.pods?.length ?? 0) === 0;
}

/**
 * A run that may have had a Job before: then a view that lags (a new leader's, or our own just
 * after a status patch) could show it as not yet run, and its latest state is read before a Job
 * is created for it.
 */
export function mayHaveRun(run: ScriptRun, observed: Observed, childName?: string): boolean {
  return !fresh(run, observed) || run.status?.phase !== undefined ||
    (childName !== undefined && !!observed.predecessors?.has(childName));
}

/**
 * Whether an object is controlled by an earlier ScriptRun of the same name (deleted and created
 * again): its children are on their way out, not someone else's.
 */
export function predecessorOf(
  obj: {
    metadata: {
      ownerReferences?: { uid: string; controller?: boolean; kind: string; name: string }[];
    };
  },
  run: ScriptRun,
): boolean {
  const owner = controllerRef(obj);
  return !!owner && owner.name === run.metadata.name && owner.uid !== run.metadata.uid;
}

/** `lookup` with one more name. */
export function withName(lookup: NameLookup, name: string): NameLookup {
  return { has: (n: string) => n === name || lookup.has(n) };
}

/** A lookup that holds no name. */
export const NONE: NameLookup = { has: (_name: string) => false };

/** What a successful write changed, so a replan in the same reconcile sees it. */
export function applyToObserved(observed: Observed, action: Action, now: string): void {
  if (action.type === "createJob") {
    observed.jobs.push({
      ...action.object,
      metadata: { ...action.object.metadata, creationTimestamp: now },
    });
  } else if (action.type === "createConfigMap") {
    observed.configMaps.push(action.object);
  } else if (action.type === "deleteJob") {
    observed.jobs = observed.jobs.map((j) =>
      j.metadata.name === action.name
        ? {
          ...j,
          metadata: { ...j.metadata, deletionTimestamp: j.metadata.deletionTimestamp ?? now },
        }
        : j
    );
  } else if (action.type === "deleteConfigMap") {
    observed.configMaps = observed.configMaps.filter((c) => c.metadata.name !== action.name);
  } else {
    // Copies: the observed objects may be the watched view's own.
    const relabel = <T extends ConfigMap | Job>(o: T): T =>
      o.metadata.name === action.name
        ? { ...o, metadata: { ...o.metadata, labels: { ...o.metadata.labels, ...action.labels } } }
        : o;
    if (action.kind === "Job") observed.jobs = observed.jobs.map(relabel);
    else observed.configMaps = observed.configMaps.map(relabel);
  }
}

/** Names held by children of a deleted ScriptRun, read from the foreign-name lookups. */
function withPredecessors(observed: Observed): Observed {
  const configMaps = observed.foreignConfigMaps as ForeignNames;
  const jobs = observed.foreignJobs as ForeignNames;
  observed.predecessors = {
    has: (name: string) => configMaps.predecessor(name) || jobs.predecessor(name),
  };
  return observed;
}

function groupByController(
  configMaps: ConfigMap[],
  jobs: Job[],
): Map<string, { configMaps: ConfigMap[]; jobs: Job[] }> {
  const out = new Map<string, { configMaps: ConfigMap[]; jobs: Job[] }>();
  const slot = (uid: string) => {
    let s = out.get(uid);
    if (!s) out.set(uid, s = { configMaps: [], jobs: [] });
    return s;
  };
  for (const cm of configMaps) {
    const uid = controllerUid(cm);
    if (uid) slot(uid).configMaps.push(cm);
  }
  for (const job of jobs) {
    const uid = controllerUid(job);
    if (uid) slot(uid).jobs.push(job);
  }
  return out;
}

/** namespace → (object name → controller uid or "") for conflict detection. */
function namesByNamespace(
  configMaps: ConfigMap[],
  jobs: Job[],
): Map<string, { configMaps: Map<string, string>; jobs: Map<string, string> }> {
  const out = new Map<string, { configMaps: Map<string, string>; jobs: Map<string, string> }>();
  const slot = (ns: string) => {
    let s = out.get(ns);
    if (!s) out.set(ns, s = { configMaps: new Map(), jobs: new Map() });
    return s;
  };
  for (const cm of configMaps) {
    slot(cm.metadata.namespace ?? "").configMaps.set(cm.metadata.name, controllerUid(cm) ?? "");
  }
  for (const job of jobs) {
    slot(job.metadata.namespace ?? "").jobs.set(job.metadata.name, controllerUid(job) ?? "");
  }
  return out;
}

/** Names in a namespace held by objects this ScriptRun does not control; O(1) per lookup. */
class ForeignNames {
  #owner: (name: string) => string | undefined;
  #uid: string | undefined;
  #ownerAlive: (uid: string) => boolean;

  /**
   * `owner(name)`: the controller uid of the object holding `name` ("" for none, undefined when
   * no object does). `ownerAlive` is asked only for a name held by another ScriptRun's child.
   */
  constructor(
    owner: (name: string) => string | undefined,
    uid: string | undefined,
    ownerAlive: (uid: string) => boolean,
  ) {
    this.#owner = owner;
    this.#uid = uid;
    this.#ownerAlive = ownerAlive;
  }

  /** Held by someone else: not ours, and not a child of a deleted ScriptRun on its way out. */
  has(name: string): boolean {
    const owner = this.#owner(name);
    return owner !== undefined && owner !== this.#uid && (owner === "" || this.#ownerAlive(owner));
  }

  /** Held by a child of a ScriptRun that no longer exists: the garbage collector removes it. */
  predecessor(name: string): boolean {
    const owner = this.#owner(name);
    return !!owner && owner !== this.#uid && !this.#ownerAlive(owner);
  }
}
