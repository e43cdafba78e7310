import { assertEquals } from "../tests/harness/assert.ts";
import { flagValues } from "./flags.ts";

Deno.test("flagValues: --name=value by name, a bare --name is true, other words left out", () => {
  assertEquals(flagValues(["--n=500", "--child", "positional", "--roots=/a/,/b/"]), {
    n: "500",
    child: "true",
    roots: "/a/,/b/",
  });
  assertEquals(flagValues([]), {});
});
