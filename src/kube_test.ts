import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { lastTermination, toPlain } from "./kube.ts";

Deno.test("toPlain() turns client-node Dates into RFC 3339 strings without milliseconds", () => {
  const plain = toPlain<{ t: string; n: { u: string } }>({
    t: new Date(Date.UTC(2026, 0, 1, 0, 0, 5)),
    n: { u: new Date(Date.UTC(2026, 0, 1)) },
  });
  assertEquals(plain, { t: "2026-01-01T00:00:05Z", n: { u: "2026-01-01T00:00:00Z" } });
});

Deno.test("lastTermination() reads the script container of the newest terminated pod", () => {
  const pod = (name: string, created: string, exitCode?: number) => ({
    metadata: { name, creationTimestamp: created },
    status: {
      containerStatuses: exitCode === undefined ? [] : [{
        name: "script",
        state: { terminated: { exitCode, reason: "Error", message: `boom ${name}` } },
      }],
    },
  });
  assertEquals(
    lastTermination([
      pod("a", "2026-01-01T00:00:00Z", 1),
      pod("b", "2026-01-01T00:01:00Z", 2),
      pod("c", "2026-01-01T00:02:00Z"),
    ]),
    { podName: "b", exitCode: 2, reason: "Error", message: "boom b" },
  );
  assertEquals(lastTermination([]), undefined);
});
