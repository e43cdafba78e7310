/**
 * One shared copy of each short string that many kept objects repeat: label and annotation
 * values, condition types and reasons, the script's hash, the image, the namespace. `JSON.parse`
 * gives every object its own copy of each; at 10,000 runs the watched view held about 14 MiB of
 * such copies. Values that are unique per object (uids, resourceVersions) are left alone, so they
 * do not crowd the table; so are names, which few objects repeat.
 *
 * The table is bounded: when it holds {@linkcode INTERN_MAX} values it starts afresh (strings
 * already shared stay shared; only later copies share a new entry). No I/O.
 * @module
 */

/** Distinct values the table holds before it starts afresh. */
export const INTERN_MAX = 50_000;

/** Longer strings (messages, scripts) are rarely repeated verbatim; they are left alone. */
const MAX_LENGTH = 128;

/** Keys whose values are unique per object. */
const UNIQUE_KEYS = new Set(["uid", "resourceVersion", "runUid", "name", "generateName"]);

let table = new Map<string, string>();

/** The shared copy of `s` (itself the first time). */
export function intern(s: string): string {
  if (s.length > MAX_LENGTH) return s;
  const shared = table.get(s);
  if (shared !== undefined) return shared;
  if (table.size >= INTERN_MAX) table = new Map();
  table.set(s, s);
  return s;
}

/** How many values the table holds (for tests). */
export function internedCount(): number {
  return table.size;
}

/**
 * Replaces, in place, every string value of `value` (objects and arrays, recursively) by its
 * shared copy, except under keys whose values are unique (uids, resourceVersions, labels that
 * hold a uid). Returns `value`.
 */
export function internAll<T>(value: T): T {
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const v = value[i];
      if (typeof v === "string") value[i] = intern(v);
      else if (v !== null && typeof v === "object") internAll(v);
    }
  } else if (value !== null && typeof value === "object") {
    const o = value as Record<string, unknown>;
    for (const k in o) {
      const v = o[k];
      if (typeof v === "string") {
        if (!UNIQUE_KEYS.has(k) && !k.endsWith("uid")) o[k] = intern(v);
      } else if (v !== null && typeof v === "object") internAll(v);
    }
  }
  return value;
}
