/**
 * A recording fake of the `Kube` interface for unit tests: an in-memory store of ScriptRuns,
 * ConfigMaps, Jobs, pods and Events that records every call as `VERB resource namespace/name`, and
 * fails calls on demand. It stands in for the operator's own interface, never for an API server's
 * behaviour: anything Kubernetes does by itself (Job progress, garbage collection) the test does.
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { KubeError } from "../../src/api/errors.ts";
import type { EventNote, Kube } from "../../src/api/port.ts";
import {
  type ConfigMap,
  type Job,
  type JobEvent,
  LABELS,
  MANAGER,
  type PodSummary,
  type ScriptRun,
  type ScriptRunStatus,
} from "../../src/types.ts";

/** A KubeError as client-node calls surface it after `classify()`. */
export function kubeError(
  code: number,
  kind: KubeError["kind"],
  message = `HTTP ${code}`,
): KubeError {
  return new KubeError(message, { code, kind, action: "test" });
}

/** The recording fake. Objects are stored by `namespace/name`. */
export class FakeKube implements Kube {
  /** Every call, in order: `LIST jobs`, `POST jobs ns/name`, `PATCH scriptruns/status ns/name`. */
  calls: string[] = [];
  runs = new Map<string, ScriptRun>();
  configMaps = new Map<string, ConfigMap>();
  jobs = new Map<string, Job>();
  pods: PodSummary[] = [];
  /** What `listJobWarnings` answers: Warning Events by Job name. */
  jobWarnings: Map<string, JobEvent[]> = new Map();
  events: (EventNote & { run: string })[] = [];
  #failures: { match: string; error: KubeError; times: number }[] = [];
  #rv = 100;

  /** Makes the next `times` calls whose record starts with `match` throw `error`. */
  failOn(match: string, error: KubeError, times = 1): void {
    this.#failures.push({ match, error, times });
  }

  /** Adds a ScriptRun as the API server would store it. */
  addRun(run: ScriptRun): ScriptRun {
    const stored = structuredClone(run);
    stored.metadata.resourceVersion = String(++this.#rv);
    this.runs.set(key(stored.metadata), stored);
    return stored;
  }

  /** Calls recorded except reads, for tests that pin the writes. */
  writes(): string[] {
    return this.calls.filter((c) => !c.startsWith("LIST") && !c.startsWith("GET"));
  }

  #record(call: string): void {
    this.calls.push(call);
    const f = this.#failures.find((f) => call.startsWith(f.match) && f.times > 0);
    if (f) {
      f.times--;
      throw f.error;
    }
  }

  listScriptRuns(namespace?: string): Promise<ScriptRun[]> {
    return this.#list("scriptruns", this.runs, namespace);
  }

  getScriptRun(namespace: string, name: string): Promise<ScriptRun | undefined> {
    return this.#do(
      `GET scriptruns ${namespace}/${name}`,
      () => structuredClone(this.runs.get(`${namespace}/${name}`)),
    );
  }

  listConfigMaps(namespace?: string): Promise<ConfigMap[]> {
    return this.#list("configmaps", this.configMaps, namespace, managed);
  }

  listJobs(namespace?: string): Promise<Job[]> {
    return this.#list("jobs", this.jobs, namespace, managed);
  }

  #list<T extends ScriptRun | ConfigMap | Job>(
    resource: string,
    store: Map<string, T>,
    namespace: string | undefined,
    filter: (o: T) => boolean = () => true,
  ): Promise<T[]> {
    try {
      this.#record(`LIST ${resource}`);
    } catch (e) {
      return Promise.reject(e);
    }
    return Promise.resolve(
      [...store.values()].filter((o) =>
        (!namespace || o.metadata.namespace === namespace) && filter(o)
      ).map((o) => structuredClone(o)),
    );
  }

  listRunPods(namespace: string, runUid: string): Promise<PodSummary[]> {
    return this.#do(`LIST pods ${namespace}/${runUid}`, () => structuredClone(this.pods));
  }

  listJobWarnings(namespace: string): Promise<Map<string, JobEvent[]>> {
    return this.#do(`LIST events ${namespace}`, () => structuredClone(this.jobWarnings));
  }

  getConfigMap(namespace: string, name: string): Promise<ConfigMap | undefined> {
    return this.#do(
      `GET configmaps ${namespace}/${name}`,
      () => structuredClone(this.configMaps.get(`${namespace}/${name}`)),
    );
  }

  getJob(namespace: string, name: string): Promise<Job | undefined> {
    return this.#do(
      `GET jobs ${namespace}/${name}`,
      () => structuredClone(this.jobs.get(`${namespace}/${name}`)),
    );
  }

  createConfigMap(object: ConfigMap): Promise<void> {
    return this.#do(`POST configmaps ${key(object.metadata)}`, () => {
      this.#create(this.configMaps, object);
    });
  }

  createJob(object: Job): Promise<void> {
    return this.#do(`POST jobs ${key(object.metadata)}`, () => {
      this.#create(this.jobs, {
        ...object,
        metadata: { ...object.metadata, creationTimestamp: new Date().toISOString() },
      });
    });
  }

  #create<T extends ConfigMap | Job>(store: Map<string, T>, object: T): void {
    if (store.has(key(object.metadata))) {
      throw kubeError(409, "alreadyExists", `${object.metadata.name} already exists`);
    }
    const stored = structuredClone(object);
    stored.metadata.uid = crypto.randomUUID();
    stored.metadata.resourceVersion = String(++this.#rv);
    store.set(key(stored.metadata), stored);
  }

  deleteJob(namespace: string, name: string): Promise<void> {
    return this.#do(`DELETE jobs ${namespace}/${name}`, () => {
      const job = this.jobs.get(`${namespace}/${name}`);
      if (!job) throw kubeError(404, "notFound");
      // Foreground: terminating until the test removes it (as the garbage collector would).
      job.metadata.deletionTimestamp ??= new Date().toISOString();
    });
  }

  deleteConfigMap(namespace: string, name: string): Promise<void> {
    return this.#do(`DELETE configmaps ${namespace}/${name}`, () => {
      if (!this.configMaps.delete(`${namespace}/${name}`)) throw kubeError(404, "notFound");
    });
  }

  relabel(
    kind: "ConfigMap" | "Job",
    namespace: string,
    name: string,
    labels: Record<string, string>,
  ): Promise<void> {
    const resource = kind === "Job" ? "jobs" : "configmaps";
    return this.#do(`PATCH ${resource} ${namespace}/${name}`, () => {
      const store: Map<string, ConfigMap | Job> = kind === "Job" ? this.jobs : this.configMaps;
      const o = store.get(`${namespace}/${name}`);
      if (!o) throw kubeError(404, "notFound");
      o.metadata.labels = { ...o.metadata.labels, ...labels };
    });
  }

  patchStatus(run: ScriptRun, status: ScriptRunStatus): Promise<ScriptRun> {
    return this.#do(`PATCH scriptruns/status ${key(run.metadata)}`, () => {
      const stored = this.runs.get(key(run.metadata));
      if (!stored) throw kubeError(404, "notFound");
      if (stored.metadata.resourceVersion !== run.metadata.resourceVersion) {
        throw kubeError(409, "transient", "the object has been modified");
      }
      stored.status = structuredClone(status);
      stored.metadata.resourceVersion = String(++this.#rv);
      return structuredClone(stored);
    });
  }

  createEvent(run: ScriptRun, note: EventNote): Promise<void> {
    return this.#do(`POST events ${key(run.metadata)} ${note.reason}`, () => {
      this.events.push({ ...note, run: run.metadata.name });
    });
  }

  #do<T>(call: string, fn: () => T): Promise<T> {
    try {
      this.#record(call);
      return Promise.resolve(fn());
    } catch (e) {
      return Promise.reject(e);
    }
  }
}

function key(m: { namespace?: string; name: string }): string {
  return `${m.namespace ?? ""}/${m.name}`;
}

function managed(o: ConfigMap | Job | ScriptRun): boolean {
  return o.metadata.labels?.[LABELS.managedBy] === MANAGER;
}

/** A log line recorded by {@linkcode recordingLogger}. */
export interface RecordedLine {
  level: "debug" | "info" | "warn" | "error";
  message: string;
  properties: Record<string, unknown>;
}

/** A Logger that keeps what is logged, for tests that pin log lines and levels. */
export function recordingLogger(): { log: Logger; lines: RecordedLine[] } {
  const lines: RecordedLine[] = [];
  const at = (level: RecordedLine["level"]) =>
  (
    message: string,
    properties: Record<string, unknown> = {},
  ) => {
    lines.push({ level, message, properties });
  };
  const log = { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
  // The reconciler calls only these four methods; the cast spares the rest of logtape's API.
  return { log: log as unknown as Logger, lines };
}
