import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { Counter, Gauge, Histogram, Registry } from "./prometheus.ts";

Deno.test("prometheus: counters, gauges and histograms in the text format", () => {
  const registry = new Registry();
  const requests = new Counter({
    name: "requests_total",
    help: "Requests.\nBy code",
    labelNames: ["code", "method"],
    registry,
  });
  requests.inc({ code: "200", method: "GET" });
  requests.inc({ code: "200", method: "GET" }, 2);
  requests.inc({ method: "PATCH", code: 409 });
  let reads = 0;
  new Gauge({ name: "rss_bytes", help: "Memory.", registry, collect: (g) => g.set({}, ++reads) });
  const h = new Histogram({
    name: "seconds",
    help: "Time.",
    labelNames: ["controller"],
    buckets: [1, 0.5],
    registry,
  });
  h.observe({ controller: 'a"b\\c\nd' }, 0.7);
  h.observe({ controller: 'a"b\\c\nd' }, 3);
  assertEquals(
    registry.metrics(),
    [
      "# HELP requests_total Requests.\\nBy code",
      "# TYPE requests_total counter",
      'requests_total{code="200",method="GET"} 3',
      'requests_total{code="409",method="PATCH"} 1',
      "# HELP rss_bytes Memory.",
      "# TYPE rss_bytes gauge",
      "rss_bytes 1",
      "# HELP seconds Time.",
      "# TYPE seconds histogram",
      'seconds_bucket{le="0.5",controller="a\\"b\\\\c\\nd"} 0',
      'seconds_bucket{le="1",controller="a\\"b\\\\c\\nd"} 1',
      'seconds_bucket{le="+Inf",controller="a\\"b\\\\c\\nd"} 2',
      'seconds_sum{controller="a\\"b\\\\c\\nd"} 3.7',
      'seconds_count{controller="a\\"b\\\\c\\nd"} 2',
      "",
    ].join("\n"),
  );
  // collect() runs on every scrape.
  assertEquals(registry.metrics().includes("rss_bytes 2\n"), true);
});

Deno.test("prometheus: mistakes throw at once", () => {
  const registry = new Registry();
  const c = new Counter({ name: "c_total", help: "c", labelNames: ["a"], registry });
  throws(() => c.inc({ b: "1" } as never), /no label "b"/);
  throws(() => c.inc({}, -1), /cannot go down/);
  throws(() => new Counter({ name: "c_total", help: "again", registry }), /registered twice/);
  throws(() => new Gauge({ name: "bad-name", help: "x", registry }), /invalid metric name/);
});

Deno.test("prometheus: a counter kept elsewhere is read at each scrape and never negative", () => {
  const registry = new Registry();
  let cpu = 1.5;
  const c = new Counter({
    name: "cpu_seconds_total",
    help: "CPU.",
    registry,
    collect: (counter) => counter.setTotal({}, cpu),
  });
  assertEquals(registry.metrics().split("\n")[2], "cpu_seconds_total 1.5");
  cpu = 2.25;
  assertEquals(registry.metrics().split("\n")[2], "cpu_seconds_total 2.25");
  throws(() => c.setTotal({}, -1), /cannot be negative/);
});
