import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { observed } from "./client.ts";

Deno.test("observed(): the status an error carries is counted and means reachable; no answer means unreachable", async () => {
  const seen: string[] = [];
  const hooks = {
    observe: (verb: string, resource: string, code: string) =>
      seen.push(`${verb} ${resource} ${code}`),
    onReachability: (reachable: boolean) => seen.push(`reachable=${reachable}`),
  };
  const conflict = await observed(
    hooks,
    "PATCH",
    "scriptruns/status",
    "patch x",
    () => Promise.reject(Object.assign(new Error("HTTP-Code: 409"), { code: 409, body: "{}" })),
  )
    .then(() => undefined, (e) => e);
  assertEquals([conflict?.code, conflict?.kind], [409, "transient"]);
  const down = await observed(
    hooks,
    "GET",
    "leases",
    "get lease",
    () => Promise.reject(new TypeError("fetch failed")),
  )
    .then(() => undefined, (e) => e);
  assertEquals(down?.code, 0);
  assertEquals(seen, [
    "PATCH scriptruns/status 409",
    "reachable=true",
    "GET leases <error>",
    "reachable=false",
  ]);
});
