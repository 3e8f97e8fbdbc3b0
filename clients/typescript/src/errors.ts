import type { Problem } from "./types.js";

/**
 * An error answered by Tether's API (RFC 9457 problem+json), with its stable `code`
 * (`connection_not_found`, `needs_reauth`, `rate_limited`, ...) to branch on.
 */
export class TetherError extends Error {
  readonly status: number;
  readonly code: string;
  readonly title: string;
  readonly detail: string;
  /** The response's `x-request-id`: quote it to the operator. */
  readonly requestId: string | null;
  /** Seconds to wait, from `Retry-After` (429). */
  readonly retryAfter: number | null;

  constructor(problem: Problem, requestId: string | null, retryAfter: number | null) {
    super(`${problem.status} ${problem.code}: ${problem.detail}`);
    this.name = "TetherError";
    this.status = problem.status;
    this.code = problem.code;
    this.title = problem.title;
    this.detail = problem.detail;
    this.requestId = requestId;
    this.retryAfter = retryAfter;
  }

  /** Builds the error from a failed response, whatever its body turned out to be. */
  static async from(response: Response): Promise<TetherError> {
    const requestId = response.headers.get("x-request-id");
    const retry = Number(response.headers.get("retry-after"));
    const retryAfter = Number.isFinite(retry) && retry > 0 ? retry : null;
    const text = await response.text();
    let problem: Problem | null = null;
    try {
      const parsed = JSON.parse(text) as Partial<Problem>;
      if (typeof parsed.code === "string") {
        problem = {
          type: String(parsed.type ?? ""),
          title: String(parsed.title ?? response.statusText),
          status: Number(parsed.status ?? response.status),
          detail: String(parsed.detail ?? ""),
          code: parsed.code,
        };
      }
    } catch {
      // Not JSON: a proxy in front of Tether answered. Described below.
    }
    problem ??= {
      type: "about:blank",
      title: response.statusText,
      status: response.status,
      detail: text.slice(0, 200),
      code: "unexpected_response",
    };
    return new TetherError(problem, requestId, retryAfter);
  }
}

/** The Connect popup ended without a connection. */
export class ConnectError extends Error {
  /** `access_denied`, `session_expired`, `provider_error`, `popup_closed`, `popup_blocked`, ... */
  readonly code: string;
  /** A reference the person can quote to support, when Tether logged the failure. */
  readonly reference: string | null;

  constructor(code: string, reference: string | null = null) {
    super(`connecting failed: ${code}${reference ? ` (reference ${reference})` : ""}`);
    this.name = "ConnectError";
    this.code = code;
    this.reference = reference;
  }
}
