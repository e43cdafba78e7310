/**
 * Classifies errors from the API server so they are handled in one place. Pure.
 * @module
 */

/** How the reconciler reacts to an error. */
export type ErrorKind =
  | "transient" // network, 5xx, 429, 409 on update: back off and retry this object only
  | "alreadyExists" // 409 AlreadyExists on create: someone else holds the name
  | "notFound" // 404
  | "forbidden" // 401/403: RBAC or credentials; retrying will not help until fixed
  | "invalid"; // 400/422: the object we built was refused; the spec must change

/** An error of a call to the API server, with what the operator needs to decide what to do. */
export class KubeError extends Error {
  override name = "KubeError";
  /** HTTP status, or 0 when no response arrived. */
  readonly code: number;
  readonly kind: ErrorKind;
  /** Seconds the server asked us to wait (429 Retry-After). */
  readonly retryAfterSeconds?: number;
  /** What was being done, e.g. "create jobs in namespace default". */
  readonly action: string;

  constructor(
    message: string,
    init: { code: number; kind: ErrorKind; action: string; retryAfterSeconds?: number },
  ) {
    super(message);
    this.code = init.code;
    this.kind = init.kind;
    this.action = init.action;
    this.retryAfterSeconds = init.retryAfterSeconds;
  }
}

interface ApiLikeError {
  code?: number;
  body?: unknown;
  headers?: Record<string, string>;
  message?: string;
  cause?: unknown;
}

function statusMessage(body: unknown): { message?: string; reason?: string } {
  let parsed = body;
  if (typeof body === "string") {
    try {
      parsed = JSON.parse(body);
    } catch {
      return { message: body.slice(0, 300) };
    }
  }
  if (parsed && typeof parsed === "object") {
    const s = parsed as { message?: string; reason?: string };
    return { message: s.message, reason: s.reason };
  }
  return {};
}

/** Turns whatever a client-node call threw into a KubeError. Pure. */
export function classify(error: unknown, action: string): KubeError {
  if (error instanceof KubeError) return error;
  const e = (error ?? {}) as ApiLikeError;
  const code = typeof e.code === "number" && e.code >= 100 ? e.code : 0;
  if (code === 0) {
    const cause = e.cause as { code?: string; message?: string } | undefined;
    const detail = cause?.code ?? cause?.message ?? e.message ?? String(error);
    return new KubeError(`cannot reach the API server to ${action}: ${detail}`, {
      code: 0,
      kind: "transient",
      action,
    });
  }
  const { message, reason } = statusMessage(e.body);
  const text = `${action}: HTTP ${code}${reason ? ` ${reason}` : ""}${
    message ? `: ${message}` : ""
  }`;
  if (code === 409 && reason === "AlreadyExists") {
    return new KubeError(text, { code, kind: "alreadyExists", action });
  }
  if (code === 404) return new KubeError(text, { code, kind: "notFound", action });
  if (code === 401 || code === 403) return new KubeError(text, { code, kind: "forbidden", action });
  if (code === 400 || code === 422) return new KubeError(text, { code, kind: "invalid", action });
  let retryAfterSeconds: number | undefined;
  const header = e.headers?.["retry-after"] ?? e.headers?.["Retry-After"];
  if (code === 429 && header !== undefined) {
    const n = Number(header);
    if (Number.isFinite(n) && n >= 0) retryAfterSeconds = n;
  }
  return new KubeError(text, { code, kind: "transient", action, retryAfterSeconds });
}
