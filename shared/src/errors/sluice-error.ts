/**
 * One error type with a closed set of codes (connect-es style). Inner layers throw it; only the
 * edges translate it: gRPC status in the control plane, SQLSTATE ErrorResponse in the data plane,
 * exit code + one line on the CLI.
 */
export type ErrorCode =
  | "invalid_argument"
  | "not_found"
  | "already_exists"
  | "failed_precondition"
  | "aborted"
  | "permission_denied"
  | "unauthenticated"
  | "unavailable"
  | "resource_exhausted"
  | "deadline_exceeded"
  | "internal";

export const ERROR_CODES: readonly ErrorCode[] = [
  "invalid_argument",
  "not_found",
  "already_exists",
  "failed_precondition",
  "aborted",
  "permission_denied",
  "unauthenticated",
  "unavailable",
  "resource_exhausted",
  "deadline_exceeded",
  "internal",
];

export class SluiceError extends Error {
  override readonly name = "SluiceError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Structured, secret-free context (problems list, rule name, …). Safe to log and to send. */
    readonly details?: unknown,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }

  static is(err: unknown, code?: ErrorCode): err is SluiceError {
    return err instanceof SluiceError && (code === undefined || err.code === code);
  }

  /** Wraps anything thrown into a SluiceError without leaking its message unless it already is one. */
  static from(err: unknown, fallback: ErrorCode = "internal"): SluiceError {
    if (err instanceof SluiceError) return err;
    const msg = err instanceof Error ? err.message : String(err);
    return new SluiceError(fallback, msg, undefined, { cause: err });
  }
}

export function isErrorCode(s: string): s is ErrorCode {
  return (ERROR_CODES as readonly string[]).includes(s);
}
