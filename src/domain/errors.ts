/**
 * The one error type of posko. Every failure that reaches a user or a device carries a stable
 * code (documented in README, never renamed) and a human message; HTTP and MQTT map it in one
 * place each. Pure: no I/O.
 */

/** Stable error codes and the HTTP status each maps to. */
export const ERROR_STATUS = {
  // 400: the request itself is malformed
  BAD_JSON: 400,
  BAD_REQUEST: 400,
  SYNC_MALFORMED: 400,
  SYNC_NOT_FOR_US: 400,
  // 401/403: authentication and authorisation
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  SYNC_BAD_SIGNATURE: 401,
  SYNC_UNKNOWN_PEER: 403,
  ENROLLMENT_PENDING: 403,
  // 404
  NOT_FOUND: 404,
  // 409
  CONFLICT: 409,
  IDEMPOTENCY_CONFLICT: 409,
  SYNC_REPLAYED: 409,
  // 413
  PAYLOAD_TOO_LARGE: 413,
  BATCH_TOO_LARGE: 413,
  // 422: well-formed but invalid content
  VALIDATION: 422,
  GS1_CHECK_DIGIT: 422,
  GS1_INVALID_DATE: 422,
  GS1_UNKNOWN_AI: 422,
  GS1_BAD_LENGTH: 422,
  GS1_INVALID_CHARACTER: 422,
  GS1_EMPTY_VALUE: 422,
  EAN_CHECK_DIGIT: 422,
  UNKNOWN_EVENT: 422,
  // sync: one document's chunk refused (reported inside a reply; the rest of the exchange applies)
  CHUNK_CORRUPT: 422,
  CHUNK_INCOMPLETE: 422,
  NOT_OWNER: 422,
  BAD_DOCUMENT: 422,
  // 502/504: a sync peer answered wrongly or not at all
  SYNC_PEER_ERROR: 502,
  SYNC_UNREACHABLE: 504,
  // 503: the gateway cannot take writes right now
  STORAGE_FULL: 503,
  STORAGE_UNAVAILABLE: 503,
  // 500: our fault, never for bad input
  INTERNAL: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

/** A failure with a stable code, a clear message and optional structured details. */
export class PoskoError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'PoskoError';
    this.code = code;
    this.details = details;
  }

  /** The HTTP status this error maps to. */
  get status(): number {
    return ERROR_STATUS[this.code];
  }

  /** The JSON body sent to clients: code, message, details; never a stack. */
  toJSON(): { code: ErrorCode; message: string; details?: Record<string, unknown> } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

/** True when the value is a PoskoError. */
export function isPoskoError(e: unknown): e is PoskoError {
  return e instanceof PoskoError;
}
