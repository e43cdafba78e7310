/**
 * The store the watched view fills and the reconciles read: the ScriptRuns, Jobs, ConfigMaps and
 * pods the streams last saw, keyed "namespace/name", with indexes so that every read is O(1) or
 * O(k) in what it returns (a pass over every run reads each run's children without a scan). Each
 * change is told to the listeners as the ScriptRun it concerns, so only that run is woken.
 * Objects are shared, not copied: readers must not mutate them. Which namespaces are served, and
 * when, is decided by the streams that fill it (view.ts), so the store has no I/O and no timers.
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { controllerRef, controllerUid, runKey } from "../api/owner.ts";
import { type ConfigMap, type Job, LABELS, type ScriptRun } from "../types.ts";
import { jobFinished, type KindName, metaOf, type Stored, type WatchedPod } from "./kinds.ts";

/** A ScriptRun to reconcile. */
export interface ViewKey {
  namespace: string;
  name: string;
}

/** What changed, as far as the order of reconciles cares. */
export interface ViewChange {
  /** One of the run's Jobs has just reached an outcome (`jobOutcome()`): its status is due. */
  finished: boolean;
}

/** The objects of every kind the view watches, their indexes, and who is told of changes. */
export class ViewStore {
  #log: Logger;
  #listeners: ((key: ViewKey, change: ViewChange) => void)[] = [];

  // Stores, keyed "namespace/name".
  #runs = new Map<string, ScriptRun>();
  #jobs = new Map<string, Job>();
  #configMaps = new Map<string, ConfigMap>();
  #pods = new Map<string, WatchedPod>();
  // Indexes.
  #runsByNs = new Map<string, Map<string, ScriptRun>>();
  // The three below are keyed by runKey(namespace, uid): a child or pod matches a run only in
  // the run's own namespace.
  #runKeyByUid = new Map<string, string>();
  #childrenByUid = new Map<string, { configMaps: Set<string>; jobs: Set<string> }>();
  #podsByRunUid = new Map<string, Set<string>>();
  /**
   * A number per run that changes whenever the run, one of its children or one of its pods is
   * added, replaced or removed: what the reconciler's settled check compares, in O(1) instead of
   * gathering the run's objects every pass. Same keys as the three indexes above; a key goes
   * when nothing under it is held any more.
   */
  #versions = new Map<string, number>();
  #tick = 0;
  #namesByNs = new Map<string, { configMaps: Map<string, string>; jobs: Map<string, string> }>();

  /** `log` reports listeners that throw. */
  constructor(log: Logger) {
    this.#log = log;
  }

  /** The ScriptRuns in `namespace`, or in every namespace. */
  scriptRuns(namespace?: string): ScriptRun[] {
    if (namespace !== undefined) return [...this.#runsByNs.get(namespace)?.values() ?? []];
    return [...this.#runs.values()];
  }

  /** One ScriptRun, if held. */
  scriptRun(namespace: string, name: string): ScriptRun | undefined {
    return this.#runs.get(`${namespace}/${name}`);
  }

  /**
   * A token that changes whenever the ScriptRun `runUid` of `namespace`, one of the ConfigMaps or
   * Jobs it controls or one of its pods is added, replaced or removed (what {@linkcode children}
   * and {@linkcode scriptRun} would show of it). "0" when nothing of the run is held.
   */
  version(namespace: string, runUid: string): string {
    return String(this.#versions.get(runKey(namespace, runUid)) ?? 0);
  }

  /**
   * The ConfigMaps and Jobs of `namespace` whose controller is the ScriptRun `runUid`, and the
   * pods of `namespace` labelled with that uid.
   */
  children(
    namespace: string,
    runUid: string,
  ): { configMaps: ConfigMap[]; jobs: Job[]; pods: WatchedPod[] } {
    const c = this.#childrenByUid.get(runKey(namespace, runUid));
    const podKeys = this.#podsByRunUid.get(runKey(namespace, runUid));
    return {
      configMaps: c ? [...c.configMaps].map((k) => this.#configMaps.get(k)!) : [],
      jobs: c ? [...c.jobs].map((k) => this.#jobs.get(k)!) : [],
      pods: podKeys ? [...podKeys].map((k) => this.#pods.get(k)!) : [],
    };
  }

  /**
   * Name -> controller ScriptRun uid ("" if none) of every managed ConfigMap and Job in
   * `namespace` (live maps: read only).
   */
  names(
    namespace: string,
  ): { configMaps: ReadonlyMap<string, string>; jobs: ReadonlyMap<string, string> } {
    return this.#namesByNs.get(namespace) ?? { configMaps: new Map(), jobs: new Map() };
  }

  /**
   * Calls `fn` with the ScriptRun to reconcile whenever something changes: the ScriptRun itself,
   * or the owner of a changed Job, ConfigMap or pod (also for deletions and objects that a re-LIST
   * found changed or gone). Called synchronously from the watch loop: keep it cheap (queue it).
   */
  onChange(fn: (key: ViewKey, change: ViewChange) => void): void {
    this.#listeners.push(fn);
  }

  /** Object counts per kind (for metrics and tests). */
  counts(): Record<KindName, number> {
    return {
      ScriptRun: this.#runs.size,
      Job: this.#jobs.size,
      ConfigMap: this.#configMaps.size,
      Pod: this.#pods.size,
    };
  }

  /** The objects of `kind`, keyed "namespace/name" (the live map: read only). */
  objects(kind: KindName): ReadonlyMap<string, Stored> {
    return this.#store(kind);
  }

  /**
   * Tells the listeners once of every ScriptRun of `scope` ("" for all namespaces): the view
   * calls it when it starts to serve the scope, whatever woke its runs before.
   */
  notifyRuns(scope: string): void {
    const runs = scope ? this.#runsByNs.get(scope)?.values() ?? [] : this.#runs.values();
    for (const run of [...runs]) this.#notify("ScriptRun", run, { finished: false });
  }

  /** Keeps `obj` unless the same resourceVersion is held, and tells the listeners. */
  upsert(kind: KindName, obj: Stored): void {
    const m = metaOf(obj);
    const key = `${m.namespace}/${m.name}`;
    const store = this.#store(kind);
    const old = store.get(key);
    if (old && metaOf(old).resourceVersion === m.resourceVersion) return;
    if (old) this.#unindex(kind, key, old);
    store.set(key, obj);
    this.#index(kind, key, obj);
    const finished = kind === "Job" && jobFinished(obj as Job) &&
      !(old && jobFinished(old as Job));
    this.#notify(kind, obj, { finished });
  }

  /** Forgets `obj` (a held object) and tells the listeners. */
  remove(kind: KindName, obj: Stored): void {
    const m = metaOf(obj);
    const key = `${m.namespace}/${m.name}`;
    this.#store(kind).delete(key);
    this.#unindex(kind, key, obj);
    this.#notify(kind, obj, { finished: false });
  }

  #store(kind: KindName): Map<string, Stored> {
    switch (kind) {
      case "ScriptRun":
        return this.#runs;
      case "Job":
        return this.#jobs;
      case "ConfigMap":
        return this.#configMaps;
      case "Pod":
        return this.#pods;
    }
  }

  #index(kind: KindName, key: string, obj: Stored): void {
    const ns = metaOf(obj).namespace;
    if (kind === "ScriptRun") {
      const run = obj as ScriptRun;
      let byName = this.#runsByNs.get(ns);
      if (!byName) this.#runsByNs.set(ns, byName = new Map());
      byName.set(run.metadata.name, run);
      if (run.metadata.uid) {
        this.#runKeyByUid.set(runKey(ns, run.metadata.uid), key);
        this.#bump(runKey(ns, run.metadata.uid));
      }
    } else if (kind === "Job" || kind === "ConfigMap") {
      const child = obj as Job | ConfigMap;
      const uid = controllerUid(child) ?? "";
      let names = this.#namesByNs.get(ns);
      if (!names) this.#namesByNs.set(ns, names = { configMaps: new Map(), jobs: new Map() });
      (kind === "Job" ? names.jobs : names.configMaps).set(child.metadata.name, uid);
      if (uid) {
        const owner = runKey(ns, uid);
        let c = this.#childrenByUid.get(owner);
        if (!c) this.#childrenByUid.set(owner, c = { configMaps: new Set(), jobs: new Set() });
        (kind === "Job" ? c.jobs : c.configMaps).add(key);
        this.#bump(owner);
      }
    } else {
      const pod = obj as WatchedPod;
      const owner = runKey(ns, pod.runUid);
      let keys = this.#podsByRunUid.get(owner);
      if (!keys) this.#podsByRunUid.set(owner, keys = new Set());
      keys.add(key);
      this.#bump(owner);
    }
  }

  #unindex(kind: KindName, key: string, obj: Stored): void {
    const ns = metaOf(obj).namespace;
    if (kind === "ScriptRun") {
      const run = obj as ScriptRun;
      const byName = this.#runsByNs.get(ns);
      byName?.delete(run.metadata.name);
      if (byName?.size === 0) this.#runsByNs.delete(ns);
      const byUid = runKey(ns, run.metadata.uid ?? "");
      if (run.metadata.uid && this.#runKeyByUid.get(byUid) === key) this.#runKeyByUid.delete(byUid);
      if (run.metadata.uid) this.#bump(byUid);
    } else if (kind === "Job" || kind === "ConfigMap") {
      const child = obj as Job | ConfigMap;
      const uid = controllerUid(child);
      const owner = runKey(ns, uid ?? "");
      const names = this.#namesByNs.get(ns);
      if (names) {
        (kind === "Job" ? names.jobs : names.configMaps).delete(child.metadata.name);
        if (names.jobs.size === 0 && names.configMaps.size === 0) this.#namesByNs.delete(ns);
      }
      const c = uid ? this.#childrenByUid.get(owner) : undefined;
      if (c) {
        (kind === "Job" ? c.jobs : c.configMaps).delete(key);
        if (c.jobs.size === 0 && c.configMaps.size === 0) this.#childrenByUid.delete(owner);
      }
      if (uid) this.#bump(owner);
    } else {
      const pod = obj as WatchedPod;
      const owner = runKey(ns, pod.runUid);
      const keys = this.#podsByRunUid.get(owner);
      keys?.delete(key);
      if (keys?.size === 0) this.#podsByRunUid.delete(owner);
      this.#bump(owner);
    }
  }

  /** A new version for run `owner` (runKey), or none once nothing under it is held. */
  #bump(owner: string): void {
    if (
      this.#runKeyByUid.has(owner) || this.#childrenByUid.has(owner) ||
      this.#podsByRunUid.has(owner)
    ) {
      this.#versions.set(owner, ++this.#tick);
    } else {
      this.#versions.delete(owner);
    }
  }

  /** The ScriptRun a change of `obj` concerns, if known. */
  #ownerOf(kind: KindName, obj: Stored): ViewKey | undefined {
    if (kind === "ScriptRun") {
      const m = metaOf(obj);
      return { namespace: m.namespace, name: m.name };
    }
    if (kind === "Pod") {
      const pod = obj as WatchedPod;
      const key = this.#runKeyByUid.get(runKey(pod.namespace, pod.runUid));
      if (key) {
        const run = this.#runs.get(key)!;
        return { namespace: run.metadata.namespace ?? "", name: run.metadata.name };
      }
      return undefined;
    }
    const child = obj as Job | ConfigMap;
    const name = controllerRef(child)?.name ?? child.metadata.labels?.[LABELS.scriptRun];
    return name ? { namespace: child.metadata.namespace ?? "", name } : undefined;
  }

  #notify(kind: KindName, obj: Stored, change: ViewChange): void {
    if (this.#listeners.length === 0) return;
    const key = this.#ownerOf(kind, obj);
    if (!key) return;
    for (const fn of this.#listeners) {
      try {
        fn(key, change);
      } catch (error) {
        this.#log.error("Change listener failed", { ...key, error: (error as Error).message });
      }
    }
  }
}
