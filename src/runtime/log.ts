/**
 * Structured logging on @logtape/logtape: JSON lines for machines, readable lines for people.
 * Messages are short constants ("Creating Job"); values travel as properties.
 * @module
 */
import {
  configureSync,
  getLogger,
  type Logger,
  type LogLevel,
  type LogRecord,
} from "@logtape/logtape";

/** Log line formats. */
export type LogFormat = "json" | "text";

/** Root logger category of the operator. */
export const CATEGORY = ["script-operator"] as const;

const LEVEL_NAMES: Record<LogLevel, string> = {
  trace: "TRACE",
  debug: "DEBUG",
  info: "INFO",
  warning: "WARN",
  error: "ERROR",
  fatal: "FATAL",
};

function renderMessage(record: LogRecord): string {
  return record.message.map((part) => typeof part === "string" ? part : JSON.stringify(part))
    .join("");
}

function plainProperties(record: LogRecord): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(record.properties)) {
    out[k] = v instanceof Error ? v.message : v;
  }
  return out;
}

/** One JSON object per line: ts, level, logger, msg, then the properties. Pure. */
export function formatJson(record: LogRecord): string {
  return JSON.stringify({
    ts: new Date(record.timestamp).toISOString(),
    level: record.level,
    logger: record.category.join("."),
    msg: renderMessage(record),
    ...plainProperties(record),
  }) + "\n";
}

/** `2026-11-25T17:30:00.000Z  INFO   Creating Job  {"namespace":"default",…}` Pure. */
export function formatText(record: LogRecord): string {
  const props = plainProperties(record);
  const tail = Object.keys(props).length > 0 ? `  ${JSON.stringify(props)}` : "";
  return `${new Date(record.timestamp).toISOString()}  ${LEVEL_NAMES[record.level].padEnd(5)}  ${
    renderMessage(record)
  }${tail}\n`;
}

/** Parses a --log-level value; undefined when it is not a level. */
export function parseLevel(value: string): LogLevel | undefined {
  const v = value.toLowerCase();
  const alias: Record<string, LogLevel> = { warn: "warning" };
  const level = alias[v] ?? v;
  return (Object.keys(LEVEL_NAMES) as LogLevel[]).find((l) => l === level);
}

/** Configures logging to stderr once, at start (only main.ts calls this). */
export function setupLogging(options: { format: LogFormat; level: LogLevel }): void {
  const encoder = new TextEncoder();
  const format = options.format === "json" ? formatJson : formatText;
  configureSync({
    reset: true,
    sinks: {
      stderr: (record: LogRecord) => {
        Deno.stderr.writeSync(encoder.encode(format(record)));
      },
    },
    loggers: [
      { category: [...CATEGORY], lowestLevel: options.level, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

/** The operator's logger, or a child of it. */
export function logger(...sub: string[]): Logger {
  return getLogger([...CATEGORY, ...sub]);
}
