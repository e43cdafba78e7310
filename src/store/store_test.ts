import {
  deepStrictEqual as assertEquals,
  notDeepStrictEqual as assertNotEquals,
  ok as assert,
} from "node:assert/strict";
import { recordingLogger } from "../../tests/fakes/fake_kube.ts";
import { job, scriptRun } from "../../tests/fakes/fixtures.ts";
import type { ConfigMap, Job, ScriptRun } from "../types.ts";
import type { WatchedPod } from "./kinds.ts";
import { ViewStore } from "./store.ts";

function run(name: string, uid: string, rv: string): ScriptRun {
  const base = scriptRun({}, name);
  return { ...base, metadata: { ...base.metadata, uid, resourceVersion: rv } };
}

function childJob(name: string, ownerUid: string, rv: string): Job {
  const j = job(name, {}, ownerUid);
  j.metadata.resourceVersion = rv;
  return j;
}

function configMap(name: string, ownerUid: string, rv: string): ConfigMap {
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { ...childJob(name, ownerUid, rv).metadata },
  };
}

function pod(name: string, runUid: string, rv: string): WatchedPod {
  return {
    name,
    namespace: "ns",
    uid: `pod-${name}`,
    resourceVersion: rv,
    runUid,
    phase: "Pending",
  };
}

Deno.test("ViewStore.version: changes with the run, its children and its pods, and only with them", () => {
  const store = new ViewStore(recordingLogger().log);
  store.upsert("ScriptRun", run("a", "uid-a", "1"));
  store.upsert("ScriptRun", run("b", "uid-b", "2"));
  const versions: string[] = [];
  const changed = (what: string) => {
    const v = store.version("ns", "uid-a");
    assert(!versions.includes(v), `${what}: version ${v} seen before`);
    versions.push(v);
  };
  changed("run added");
  const steps: [string, () => void][] = [
    ["run replaced", () => store.upsert("ScriptRun", run("a", "uid-a", "3"))],
    ["ConfigMap added", () => store.upsert("ConfigMap", configMap("a-1", "uid-a", "4"))],
    ["Job added", () => store.upsert("Job", childJob("a-1", "uid-a", "5"))],
    ["Job replaced", () => store.upsert("Job", childJob("a-1", "uid-a", "6"))],
    ["pod added", () => store.upsert("Pod", pod("a-1-x", "uid-a", "7"))],
    ["pod replaced", () => store.upsert("Pod", pod("a-1-x", "uid-a", "8"))],
    ["pod removed", () => store.remove("Pod", pod("a-1-x", "uid-a", "8"))],
    ["Job removed", () => store.remove("Job", childJob("a-1", "uid-a", "6"))],
  ];
  for (const [what, step] of steps) {
    step();
    changed(what);
  }
  // The same version again, and changes of another run's objects, leave it as it is.
  const before = store.version("ns", "uid-a");
  store.upsert("ScriptRun", run("a", "uid-a", "3"));
  store.upsert("ScriptRun", run("b", "uid-b", "9"));
  store.upsert("Job", childJob("b-1", "uid-b", "10"));
  store.upsert("Pod", pod("b-1-x", "uid-b", "11"));
  assertEquals(store.version("ns", "uid-a"), before);
  // Another namespace's objects with the same uid are not the run's.
  const elsewhere = childJob("a-2", "uid-a", "12");
  elsewhere.metadata.namespace = "other";
  store.upsert("Job", elsewhere);
  assertEquals(store.version("ns", "uid-a"), before);
  assertNotEquals(store.version("other", "uid-a"), before);
});

Deno.test("ViewStore.version: a run whose objects are all gone keeps no version", () => {
  const store = new ViewStore(recordingLogger().log);
  store.upsert("ScriptRun", run("a", "uid-a", "1"));
  store.upsert("ConfigMap", configMap("a-1", "uid-a", "2"));
  store.upsert("Pod", pod("a-1-x", "uid-a", "3"));
  store.remove("ScriptRun", run("a", "uid-a", "1"));
  // Its ConfigMap and pod are still held (garbage collection follows): still versioned.
  assertNotEquals(store.version("ns", "uid-a"), "0");
  store.remove("ConfigMap", configMap("a-1", "uid-a", "2"));
  store.remove("Pod", pod("a-1-x", "uid-a", "3"));
  assertEquals(store.version("ns", "uid-a"), "0");
});
