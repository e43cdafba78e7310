import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { explainBindError } from "./servers.ts";
import { UsageError } from "./flags.ts";

Deno.test("explainBindError(): a busy port is one line naming the port and the flag that sets it", () => {
  const address = { hostname: "0.0.0.0", port: 8080, flag: "metrics-bind-address", text: ":8080" };
  const e = explainBindError(new Deno.errors.AddrInUse("Address already in use"), address);
  assert(e instanceof UsageError);
  assertEquals(
    e.message,
    "port 8080 is already in use (--metrics-bind-address=:8080): stop what listens there, or pick another port with --metrics-bind-address=:PORT (0 turns it off)",
  );
  const other = explainBindError(
    new Deno.errors.AddrNotAvailable("Cannot assign requested address (os error 99)"),
    { hostname: "10.9.9.9", port: 8081, flag: "health-probe-bind-address", text: "10.9.9.9:8081" },
  );
  assertEquals(
    other.message,
    "cannot listen on 10.9.9.9:8081 (--health-probe-bind-address=10.9.9.9:8081): Cannot assign requested address (os error 99); use :PORT for every address of this machine, or 0 to turn it off",
  );
  for (const m of [e.message, other.message]) assert(!m.includes("\n"), m);
});
