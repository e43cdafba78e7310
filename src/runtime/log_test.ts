import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import type { LogRecord } from "@logtape/logtape";
import { formatJson, formatText, parseLevel } from "./log.ts";

const record: LogRecord = {
  category: ["script-operator"],
  level: "info",
  message: ["Creating Job"],
  rawMessage: "Creating Job",
  timestamp: Date.UTC(2026, 0, 1),
  properties: { group: "script-operator.dev", kind: "ScriptRun", namespace: "ns", name: "demo" },
};

Deno.test("formatJson() writes one JSON object per line with the resource's fields", () => {
  const line = formatJson(record);
  assert(line.endsWith("\n"));
  assertEquals(JSON.parse(line), {
    ts: "2026-01-01T00:00:00.000Z",
    level: "info",
    logger: "script-operator",
    msg: "Creating Job",
    group: "script-operator.dev",
    kind: "ScriptRun",
    namespace: "ns",
    name: "demo",
  });
});

Deno.test("formatText() reads like controller-runtime's lines", () => {
  assertEquals(
    formatText(record),
    '2026-01-01T00:00:00.000Z  INFO   Creating Job  {"group":"script-operator.dev","kind":"ScriptRun","namespace":"ns","name":"demo"}\n',
  );
});

Deno.test("parseLevel() accepts level names and warn", () => {
  assertEquals(parseLevel("DEBUG"), "debug");
  assertEquals(parseLevel("warn"), "warning");
  assertEquals(parseLevel("loud"), undefined);
});
