import { ok as assert } from "node:assert/strict";
import { FLAG_NAMES } from "./flags.ts";
import { HELP } from "./help.ts";

Deno.test("HELP names every flag, says how booleans, lists and durations are written", () => {
  for (const flag of FLAG_NAMES) {
    assert(HELP.includes(`--${flag} `) || HELP.includes(`--${flag}\n`), flag);
  }
  assert(HELP.includes("--flag=true or --flag=false"));
  assert(HELP.includes("comma-separated list"));
  assert(HELP.includes("500ms, 15s, 1m30s, 1h"));
  assert(HELP.includes("--platform-assigns-uid"));
  for (const line of HELP.split("\n")) assert(line.length <= 100, line);
});
