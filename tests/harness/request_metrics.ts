/**
 * The operator's API requests as its `/metrics` counts them (`rest_client_requests_total`), for
 * tests and the benchmark alike: the Prometheus text parsed, requests summed by method, writes
 * told from reads.
 * @module
 */
import { NotYet } from "./test_env.ts";

/** One sample of a Prometheus text exposition: metric name, labels and value. */
export interface PromSample {
  /** Metric name (with any `_total`, `_bucket` suffix as written). */
  name: string;
  /** Label names and (unescaped) values. */
  labels: Record<string, string>;
  /** The value. */
  value: number;
}

const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$/;
const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?/y;

/**
 * Parses the Prometheus text format (version 0.0.4): every sample line; comments and blank lines
 * are skipped. Throws on a line that is neither, naming its line number.
 */
export function parsePrometheus(text: string): PromSample[] {
  const out: PromSample[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = SAMPLE_LINE.exec(line);
    if (!m) throw new Error(`metrics line ${i + 1} is not a Prometheus sample: ${line}`);
    const labels: Record<string, string> = {};
    const body = m[2] ?? "";
    LABEL.lastIndex = 0;
    while (LABEL.lastIndex < body.length) {
      const start = LABEL.lastIndex;
      const l = LABEL.exec(body);
      if (!l) {
        throw new Error(`metrics line ${i + 1}: bad labels at "${body.slice(start)}": ${line}`);
      }
      labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    const raw = m[3];
    const value = raw === "+Inf" ? Infinity : raw === "-Inf" ? -Infinity : Number(raw);
    if (Number.isNaN(value) && raw !== "NaN") {
      throw new Error(`metrics line ${i + 1}: value "${raw}" is not a number: ${line}`);
    }
    out.push({ name: m[1], labels, value });
  }
  return out;
}

/** Request counts by HTTP method (upper case), from `rest_client_requests_total`. */
export type RequestCounts = Record<string, number>;

/** The metric the operator counts its API requests in (as client-go names it). */
export const REQUESTS_METRIC = "rest_client_requests_total";

/**
 * Sums `rest_client_requests_total` by its `method` label (upper-cased; `verb` is accepted too).
 * Returns an empty record when the metric is absent.
 */
export function requestsByMethod(samples: readonly PromSample[]): RequestCounts {
  const out: RequestCounts = {};
  for (const s of samples) {
    if (s.name !== REQUESTS_METRIC) continue;
    const method = (s.labels.method ?? s.labels.verb ?? "?").toUpperCase();
    out[method] = (out[method] ?? 0) + s.value;
  }
  return out;
}

/** `after - before` per method (methods only in `after` count from 0). */
export function diffCounts(before: RequestCounts, after: RequestCounts): RequestCounts {
  const out: RequestCounts = {};
  for (const [method, n] of Object.entries(after)) {
    const d = n - (before[method] ?? 0);
    if (d !== 0) out[method] = d;
  }
  return out;
}

/** Methods that write. */
export const WRITE_METHODS: readonly string[] = ["POST", "PUT", "PATCH", "DELETE"];

/** Writes (POST, PUT, PATCH, DELETE) in some counts. */
export function writes(counts: RequestCounts): number {
  return WRITE_METHODS.reduce((sum, m) => sum + (counts[m] ?? 0), 0);
}

/** Every request except watches (a `WATCH` method label) in some counts. */
export function nonWatchRequests(counts: RequestCounts): number {
  return Object.entries(counts).reduce((sum, [m, n]) => sum + (m === "WATCH" ? 0 : n), 0);
}

/**
 * Requests by method so far, scraped from the `/metrics` of an operator serving them on
 * 127.0.0.1:`port`. Throws {@linkcode NotYet} while nothing answers there (a waitFor retries).
 */
export async function scrapeRequests(port: number): Promise<RequestCounts> {
  const url = `http://127.0.0.1:${port}/metrics`;
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) }).catch((e) => {
    throw new NotYet(`metrics: ${e.message}`);
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`GET ${url}: ${res.status} ${text.slice(0, 200)}`);
  return requestsByMethod(parsePrometheus(text));
}
