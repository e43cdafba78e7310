import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import {
  diffCounts,
  markdownTable,
  median,
  nonWatchRequests,
  parseProcStatTicks,
  parseProcStatus,
  parsePrometheus,
  percentile,
  requestsByMethod,
  summarize,
  verdict,
  writes,
} from "./stats.ts";

Deno.test("percentile is nearest-rank and always a sample", () => {
  const xs = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1, unsorted input
  assertEquals(percentile(xs, 50), 50);
  assertEquals(percentile(xs, 99), 99);
  assertEquals(percentile(xs, 100), 100);
  assertEquals(percentile([3, 1, 2], 50), 2);
  assertEquals(percentile([3, 1, 2], 99), 3);
  assertEquals(percentile([7], 1), 7);
  assertEquals(percentile([], 50), undefined);
  throws(() => percentile([1], 0), RangeError);
});

Deno.test("median averages the middle pair; summarize skips missing samples", () => {
  assertEquals(median([4, 1, 3, 2]), 2.5);
  assertEquals(median([5, 1, 3]), 3);
  assertEquals(summarize([30, undefined, 10, NaN, 20]), { n: 3, min: 10, median: 20, max: 30 });
  assertEquals(summarize([undefined]), undefined);
});

Deno.test("parsePrometheus reads labels with escapes, sums requests by method", () => {
  const text = `# HELP rest_client_requests_total Number of HTTP requests.
# TYPE rest_client_requests_total counter
rest_client_requests_total{code="200",method="GET",host="127.0.0.1:6443"} 12
rest_client_requests_total{code="201",method="POST",host="127.0.0.1:6443"} 5
rest_client_requests_total{code="409",method="POST",host="127.0.0.1:6443"} 1
rest_client_requests_total{code="200",method="WATCH",host="127.0.0.1:6443"} 3
rest_client_requests_total{code="200",method="PATCH",host="x"} 2 1700000000000
other_metric{msg="a \\"quoted\\", comma"} 1.5e3
up 1
`;
  const samples = parsePrometheus(text);
  assertEquals(samples.length, 7);
  assertEquals(samples[5].labels.msg, 'a "quoted", comma');
  assertEquals(samples[5].value, 1500);
  assertEquals(samples[6], { name: "up", labels: {}, value: 1 });
  const counts = requestsByMethod(samples);
  assertEquals(counts, { GET: 12, POST: 6, WATCH: 3, PATCH: 2 });
  assertEquals(writes(counts), 8);
  assertEquals(nonWatchRequests(counts), 20);
  assertEquals(diffCounts({ GET: 10, POST: 6 }, counts), { GET: 2, WATCH: 3, PATCH: 2 });
  throws(() => parsePrometheus("rest_client_requests_total{code=200} 1"), /line 1/);
});

Deno.test("parseProcStatus and parseProcStatTicks read /proc files", () => {
  const status = "Name:\tdeno\nVmHWM:\t  204800 kB\nVmRSS:\t  131072 kB\nThreads:\t9\n";
  assertEquals(parseProcStatus(status), { rssKiB: 131072, hwmKiB: 204800 });
  throws(() => parseProcStatus("Name:\tdeno\n"), /VmRSS/);
  // The command name may hold spaces and parentheses; utime=250, stime=50.
  const stat = "4242 (deno (main) x) S 1 4242 4242 0 -1 4194560 9 0 0 0 250 50 0 0 20 0 9 0";
  assertEquals(parseProcStatTicks(stat), 300);
});

Deno.test("markdownTable marks targets on the median and lines up columns", () => {
  const table = markdownTable([
    {
      measure: "idle resident memory, MiB",
      runs: "3 runs",
      summary: { n: 3, min: 120, median: 123.4, max: 130 },
      digits: 0,
      target: { op: "<=", value: 125, text: "≤ 125" },
    },
    {
      measure: "all Jobs exist, s",
      runs: "1 run",
      summary: { n: 1, min: 30, median: 30, max: 30 },
      digits: 1,
      target: { op: "<=", value: 25, text: "≤ 25" },
    },
    { measure: "a|b", runs: "0 runs", digits: 1, note: "timed out" },
  ]);
  const lines = table.split("\n");
  assertEquals(lines.length, 5);
  assertEquals(new Set(lines.map((l) => l.length)).size, 1);
  assertEquals(lines[2].split("|").map((c) => c.trim()).slice(1, -1), [
    "idle resident memory, MiB",
    "3 runs",
    "120",
    "123",
    "130",
    "≤ 125",
    "pass",
  ]);
  assertEquals(lines[3].includes("FAIL"), true);
  assertEquals(lines[4].includes("a\\|b (timed out)"), true);
  assertEquals(verdict({ op: ">=", value: 1, text: "" }, 0.5), "FAIL");
  assertEquals(verdict(undefined, 1), "-");
});
