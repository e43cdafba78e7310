/**
 * Pure helpers of the benchmark (bench/operator.ts): percentiles and summaries, Prometheus text
 * parsing, /proc parsing, targets and the markdown table. No I/O; tested in stats_test.ts.
 * @module
 */

/** Sorted copy of `values` (ascending). */
function sorted(values: readonly number[]): number[] {
  return [...values].sort((a, b) => a - b);
}

/**
 * The p-th percentile (0 < p ≤ 100) by the nearest-rank method: the smallest sample such that at
 * least p % of the samples are ≤ it. Always one of the samples. Undefined for no samples.
 */
export function percentile(values: readonly number[], p: number): number | undefined {
  if (!(p > 0 && p <= 100)) throw new RangeError(`percentile ${p} is not in (0, 100]`);
  if (values.length === 0) return undefined;
  const s = sorted(values);
  return s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)];
}

/** Median: the middle sample, or the mean of the two middle ones. Undefined for no samples. */
export function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  const s = sorted(values);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Min, median and max of some samples, and how many there were. */
export interface Summary {
  /** Number of samples. */
  n: number;
  /** Smallest sample. */
  min: number;
  /** {@linkcode median} of the samples. */
  median: number;
  /** Largest sample. */
  max: number;
}

/** Summary of the finite samples in `values`; undefined when there is none. */
export function summarize(values: readonly (number | undefined)[]): Summary | undefined {
  const xs = values.filter((v): v is number => typeof v === "number" && Number.isFinite(v));
  if (xs.length === 0) return undefined;
  const s = sorted(xs);
  return { n: s.length, min: s[0], median: median(s)!, max: s[s.length - 1] };
}

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

/** Resident memory of a process from `/proc/<pid>/status`, in KiB. */
export interface Memory {
  /** VmRSS: resident now. */
  rssKiB: number;
  /** VmHWM: the peak resident size of the process's life. */
  hwmKiB: number;
}

/** Parses VmRSS and VmHWM out of `/proc/<pid>/status`. Throws if either is missing. */
export function parseProcStatus(text: string): Memory {
  const kib = (key: string) => {
    const m = new RegExp(`^${key}:\\s+(\\d+)\\s+kB$`, "m").exec(text);
    if (!m) throw new Error(`/proc status has no ${key} line`);
    return Number(m[1]);
  };
  return { rssKiB: kib("VmRSS"), hwmKiB: kib("VmHWM") };
}

/**
 * User plus system CPU time of a process, in clock ticks, from `/proc/<pid>/stat` (fields 14 and
 * 15; the command name in parentheses may contain spaces, so fields are counted after the last `)`).
 */
export function parseProcStatTicks(text: string): number {
  const rest = text.slice(text.lastIndexOf(")") + 1).trim().split(/\s+/);
  // rest[0] is field 3 (state), so field k is rest[k - 3].
  const utime = Number(rest[14 - 3]);
  const stime = Number(rest[15 - 3]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) {
    throw new Error(`/proc stat has no utime/stime: ${text.slice(0, 80)}`);
  }
  return utime + stime;
}

/** A target: the measured median must be at most (`<=`) or at least (`>=`) `value`. */
export interface Target {
  /** Comparison the median must satisfy. */
  op: "<=" | ">=";
  /** Bound, in the row's unit. */
  value: number;
  /** How it reads in the table, e.g. `≤ 25 s`. */
  text: string;
}

/** `pass`, `FAIL` or `-` (no target or no measurement). */
export function verdict(target: Target | undefined, measured: number | undefined): string {
  if (!target || measured === undefined || !Number.isFinite(measured)) return "-";
  const ok = target.op === "<=" ? measured <= target.value : measured >= target.value;
  return ok ? "pass" : "FAIL";
}

/** One row of the results table. */
export interface Row {
  /** What was measured, with its unit. */
  measure: string;
  /** How many samples, and what a sample is (e.g. `3 runs`, `10 samples`). */
  runs: string;
  /** The samples' summary; undefined when nothing was measured (see `note`). */
  summary?: Summary;
  /** Digits after the point. */
  digits: number;
  /** Target on the median, if the issue sets one. */
  target?: Target;
  /** Why there is no value, or a remark. */
  note?: string;
}

/** Formats a number with `digits` after the point; `-` for undefined. */
export function fmt(value: number | undefined, digits: number): string {
  return value === undefined || !Number.isFinite(value) ? "-" : value.toFixed(digits);
}

/** Escapes `|` so a cell cannot break the markdown table. */
function cell(text: string): string {
  return text.replaceAll("|", "\\|");
}

/** The rows as a markdown table, columns padded to line up. */
export function markdownTable(rows: readonly Row[]): string {
  const header = ["measure", "runs", "min", "median", "max", "target", "result"];
  const body = rows.map((r) =>
    [
      r.measure + (r.note ? ` (${r.note})` : ""),
      r.runs,
      fmt(r.summary?.min, r.digits),
      fmt(r.summary?.median, r.digits),
      fmt(r.summary?.max, r.digits),
      r.target?.text ?? "-",
      verdict(r.target, r.summary?.median),
    ].map(cell)
  );
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  const numeric = [false, false, true, true, true, false, false];
  const line = (cells: string[]) =>
    "| " +
    cells.map((c, i) => (numeric[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join(" | ") +
    " |";
  const rule = "|" +
    widths.map((w, i) => (numeric[i] ? "-".repeat(w + 1) + ":" : "-".repeat(w + 2))).join("|") +
    "|";
  return [line(header), rule, ...body.map(line)].join("\n");
}
