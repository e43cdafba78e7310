/**
 * Pure helpers of the benchmark (bench/operator.ts): percentiles and summaries, /proc parsing,
 * targets and the markdown table, and (from tests/harness/request_metrics.ts, which the tests
 * share) Prometheus text parsing and request counts. No I/O; tested in stats_test.ts.
 * @module
 */
export {
  diffCounts,
  nonWatchRequests,
  parsePrometheus,
  type PromSample,
  type RequestCounts,
  REQUESTS_METRIC,
  requestsByMethod,
  WRITE_METHODS,
  writes,
} from "../tests/harness/request_metrics.ts";

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
