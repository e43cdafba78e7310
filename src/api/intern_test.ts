import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { intern, INTERN_MAX, internAll, internedCount } from "./intern.ts";

Deno.test("internAll: values stay equal; repeated ones share one table entry, unique ones take none", () => {
  const make = (i: number) =>
    JSON.parse(JSON.stringify({
      metadata: {
        name: `run-${i}`,
        uid: `uid-${i}`,
        resourceVersion: String(1000 + i),
        labels: { "app.kubernetes.io/managed-by": "script-operator", "controller-uid": `c-${i}` },
      },
      status: { conditions: [{ type: "Ready", reason: "JobPending" }], hash: "0a1b2c" },
      list: ["busybox:1.36", 3, null, { image: "busybox:1.36" }],
    }));
  const before = internedCount();
  const objects = Array.from({ length: 100 }, (_, i) => make(i));
  const copies = structuredClone(objects);
  for (const o of objects) internAll(o);
  assertEquals(objects, copies);
  // script-operator, Ready, JobPending, 0a1b2c, busybox:1.36 (at most: earlier tests may share).
  assert(internedCount() - before <= 5, `${internedCount() - before} new entries`);
});

Deno.test("intern: the table starts afresh at INTERN_MAX values, and long strings are left out", () => {
  for (let i = 0; i < INTERN_MAX + 10; i++) intern(`value-${i}`);
  assert(internedCount() <= INTERN_MAX, String(internedCount()));
  const before = internedCount();
  intern("x".repeat(500));
  assertEquals(internedCount(), before);
});
