import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { parseBindAddress, parseDuration } from "./flags.ts";

Deno.test("parseDuration() and parseBindAddress()", () => {
  assertEquals(parseDuration("500ms"), 500);
  assertEquals(parseDuration("1.5s"), 1500);
  assertEquals(parseDuration("10"), 10_000);
  assertEquals(parseDuration("1h"), 3_600_000);
  assertEquals(parseDuration("x"), undefined);
  assertEquals(parseBindAddress(":8081"), { hostname: "0.0.0.0", port: 8081 });
  assertEquals(parseBindAddress("127.0.0.1:9"), { hostname: "127.0.0.1", port: 9 });
  assertEquals(parseBindAddress("0"), undefined);
  assertEquals(parseBindAddress("nope"), null);
});

Deno.test("parseDuration(): Go durations, and a plain number is seconds", () => {
  const cases: [string, number | undefined][] = [
    ["1m30s", 90_000],
    ["500ms", 500],
    ["1h2m3.5s", 3_723_500],
    ["15s", 15_000],
    ["2h", 7_200_000],
    ["1.5m", 90_000],
    [".5s", 500],
    ["1500us", 2],
    ["250000000ns", 250],
    ["10", 10_000],
    ["0.25", 250],
    [" 1m ", 60_000],
    ["", undefined],
    ["soon", undefined],
    ["1m30", undefined],
    ["1x", undefined],
    ["m", undefined],
    ["-1s", undefined],
    ["1 m", undefined],
    ["1d", undefined],
  ];
  for (const [text, ms] of cases) assertEquals(parseDuration(text), ms, JSON.stringify(text));
});
