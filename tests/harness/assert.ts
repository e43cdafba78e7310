/**
 * Assertions for the integration tests: node:assert/strict with messages of any type.
 * Without a message, node's own message (with the diff) is kept.
 * @module
 */
import { deepStrictEqual, ok } from "node:assert/strict";

/** Fails with `message` unless `condition` is truthy. */
export function assert(condition: unknown, message?: unknown): asserts condition {
  if (message === undefined) ok(condition);
  else ok(condition, String(message));
}

/** Fails unless `actual` deeply and strictly equals `expected`. */
export function assertEquals<T>(
  actual: unknown,
  expected: T,
  message?: unknown,
): asserts actual is T {
  if (message === undefined) deepStrictEqual(actual, expected);
  else deepStrictEqual(actual, expected, `${String(message)}\nactual: ${JSON.stringify(actual)}`);
}
