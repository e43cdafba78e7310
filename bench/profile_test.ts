import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { type CpuProfile, heapByConstructor, startedAt, sumProfile } from "./profile.ts";

const frame = (functionName: string, url = "file:///x/src/a.ts", lineNumber = 0) => ({
  functionName,
  url,
  lineNumber,
});

Deno.test("sumProfile: self time per function, inclusive time once per stack, by file", () => {
  // root → outer → inner (recursing into itself), root → (idle)
  const profile: CpuProfile = {
    nodes: [
      { id: 1, callFrame: frame("(root)", ""), children: [2, 5] },
      { id: 2, callFrame: frame("outer"), children: [3] },
      { id: 3, callFrame: frame("inner", "file:///x/src/b.ts", 9), children: [4] },
      { id: 4, callFrame: frame("inner", "file:///x/src/b.ts", 9) },
      { id: 5, callFrame: frame("(idle)", "") },
    ],
    startTime: 0,
    endTime: 4000,
    // A sample's time is the delta to the next one.
    samples: [4, 3, 2, 5, 5],
    timeDeltas: [0, 1000, 1000, 1000, 500],
  };
  const s = sumProfile(profile);
  assertEquals(s.total, 3500);
  assertEquals(s.self.get("inner src/b.ts:10"), 2000);
  assertEquals(s.self.get("outer src/a.ts:1"), 1000);
  assertEquals(s.self.get("(idle)"), 500);
  // The recursive frame counts once per sample.
  assertEquals(s.inclusive.get("inner src/b.ts:10"), 2000);
  assertEquals(s.inclusive.get("outer src/a.ts:1"), 3000);
  assertEquals(s.byFile.get("src/b.ts"), 2000);
  // Summing a second profile adds to the same totals.
  assertEquals(sumProfile(profile, s).total, 7000);
});

Deno.test("startedAt: the epoch milliseconds in a recorded profile's name", () => {
  assertEquals(startedAt("out/p123-1-1796698007170.cpuprofile"), 1796698007170);
  assertEquals(startedAt("pass-10000.cpuprofile"), undefined);
});

Deno.test("heapByConstructor: self sizes summed by type and name, largest first", () => {
  const snapshot = {
    snapshot: {
      meta: {
        node_fields: ["type", "name", "id", "self_size", "edge_count"],
        node_types: [["hidden", "object", "string"]],
      },
    },
    strings: ["Foo", "abc", "Bar"],
    nodes: [1, 0, 1, 10, 0, 1, 0, 2, 30, 0, 2, 1, 3, 5, 0, 1, 2, 4, 20, 0],
  };
  assertEquals(heapByConstructor(snapshot), {
    total: 65,
    rows: [
      { type: "object", name: "Foo", bytes: 40, count: 2 },
      { type: "object", name: "Bar", bytes: 20, count: 1 },
      { type: "string", name: "", bytes: 5, count: 1 },
    ],
  });
});
