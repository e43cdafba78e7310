import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { KubeError } from "../api/errors.ts";
import { Readiness } from "./readiness.ts";

const listed = { scopeErrors: [], unreachable: false };

Deno.test("Readiness: a leader is ready only after a cycle that listed and reached the server throughout", () => {
  const r = new Readiness();
  assertEquals(r.ready, false);
  r.cycleStarted();
  r.onReachability(true);
  r.cycleDone(listed);
  assertEquals(r.ready, true);
  // A request without an answer turns it not ready at once, and keeps the cycle from counting.
  r.cycleStarted();
  r.onReachability(false);
  assertEquals(r.ready, false);
  r.onReachability(true);
  assertEquals(r.ready, false);
  r.cycleDone(listed);
  assertEquals(r.ready, false);
  // The next cycle starts afresh.
  r.cycleStarted();
  r.cycleDone(listed);
  assertEquals(r.ready, true);
  const failed = new KubeError("down", { code: 0, kind: "transient", action: "list" });
  r.cycleStarted();
  r.cycleDone({ scopeErrors: [failed], unreachable: false });
  assertEquals(r.ready, false);
  r.cycleStarted();
  r.cycleDone({ scopeErrors: [], unreachable: true });
  assertEquals(r.ready, false);
});

Deno.test("Readiness: a follower is ready while its requests reach the API server", () => {
  const r = new Readiness();
  r.follow();
  assertEquals(r.ready, true);
  r.onReachability(false);
  assertEquals(r.ready, false);
  r.onReachability(true);
  assertEquals(r.ready, true);
  r.onReachability(false);
  r.follow();
  assertEquals(r.ready, false);
  // A leader's cycle ends following: an answer no longer makes it ready by itself.
  r.cycleStarted();
  r.onReachability(true);
  assertEquals(r.ready, false);
});
