import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { parse } from "yaml";
import { scriptRunCrd } from "./crd.ts";

Deno.test("deploy/crd.yaml is what src/desired/crd.ts builds (run 'deno task gen' after editing)", async () => {
  const onDisk = parse(await Deno.readTextFile(new URL("../../deploy/crd.yaml", import.meta.url)));
  assertEquals(onDisk, scriptRunCrd());
});
