/**
 * One error type for every failure a person or a peer can cause, with a stable `code` that tests,
 * the HTTP layer and the CLI match on. The message is one line naming the problem and the fix.
 */
export const errorCodes = {
  // Caused by the person running a command: exit 2.
  UsageError: { exit: 2, status: 400 },
  FileUnreadable: { exit: 2, status: 500 },
  ConfigInvalid: { exit: 2, status: 500 },
  // Broker HTTP API (docs/broker.md, "HTTP API").
  InvalidRequest: { exit: 1, status: 400 },
  InvalidToken: { exit: 1, status: 401 },
  Forbidden: { exit: 1, status: 403 },
  NotFound: { exit: 1, status: 404 },
  MethodNotAllowed: { exit: 1, status: 405 },
  PayloadTooLarge: { exit: 1, status: 413 },
  RateLimited: { exit: 1, status: 429 },
  UpstreamThrottled: { exit: 1, status: 503 },
  UpstreamError: { exit: 1, status: 502 },
  UpstreamUnavailable: { exit: 1, status: 503 },
  UpstreamTimeout: { exit: 1, status: 504 },
  // Reaching other parts of the system.
  BrokerUnreachable: { exit: 1, status: 502 },
  KubernetesError: { exit: 1, status: 502 },
  Internal: { exit: 1, status: 500 },
  // The local docker-registry of the emulator and sandbox could not be started.
  RegistryUnavailable: { exit: 1, status: 503 },
  // The sandbox's local Kubernetes control plane (`local --with-cluster`) is not built or did not start.
  ControlPlaneUnavailable: { exit: 1, status: 503 },
  // The broker answered, but not with a response of its API (wrong URL, a proxy's error page).
  BrokerResponseInvalid: { exit: 1, status: 502 },
} as const satisfies Record<string, { exit: number; status: number }>;

export type ErrorCode = keyof typeof errorCodes;

/**
 * Why the broker refused a token or a request it authenticated (docs/broker.md, "Refusal reasons"): named
 * after what was checked, stable for tests and log queries. Logged on the request line, never answered:
 * the caller's message stays what it always was.
 */
export const refusalReasons = {
  // 401 InvalidToken: who is asking could not be established.
  "bearer-token-missing": "InvalidToken",
  "token-too-large": "InvalidToken",
  "token-not-compact-jws": "InvalidToken",
  "token-undecodable": "InvalidToken",
  "algorithm-not-allowed": "InvalidToken",
  "issuer-unknown": "InvalidToken",
  "issuer-refused-by-group": "InvalidToken",
  "jws-invalid": "InvalidToken",
  "jws-not-supported": "InvalidToken",
  "payload-invalid": "InvalidToken",
  "key-not-found": "InvalidToken",
  "key-ambiguous": "InvalidToken",
  "key-unusable": "InvalidToken",
  "signature-invalid": "InvalidToken",
  "token-expired": "InvalidToken",
  "not-yet-valid": "InvalidToken",
  "audience-mismatch": "InvalidToken",
  "issuer-mismatch": "InvalidToken",
  "claim-invalid": "InvalidToken",
  "subject-not-string": "InvalidToken",
  "issued-in-future": "InvalidToken",
  "lifetime-too-long": "InvalidToken",
  "token-invalid": "InvalidToken",
  // 403 Forbidden: a valid caller asked for something it may not have.
  "subject-not-allowed": "Forbidden",
  "registry-not-configured": "Forbidden",
  "duration-too-long": "Forbidden",
  "rrsa-not-allowed": "Forbidden",
  "rrsa-token-invalid": "Forbidden",
  "rrsa-token-mismatch": "Forbidden",
  "kubelet-provider-absent": "Forbidden",
  "not-a-service-account": "Forbidden",
  "kubelet-grant-absent": "Forbidden",
  "role-not-granted": "Forbidden",
  "registry-not-granted": "Forbidden",
} as const satisfies Record<string, "InvalidToken" | "Forbidden">;

export type RefusalReason = keyof typeof refusalReasons;

/** A Kubernetes API `Status` cause (a field the API server refused, and why). */
export interface StatusCause {
  reason?: string;
  field?: string;
  message?: string;
}

/**
 * What an error carries besides its code and message, each field for the code that sets it. Never a
 * secret: these may be logged or (the headers) answered.
 */
export interface ErrorDetails {
  /** InvalidToken, Forbidden: why, for the broker's log (never in the answer). */
  reason?: RefusalReason;
  /** RateLimited: the `Retry-After` the broker answers. */
  retryAfterSeconds?: number;
  /** MethodNotAllowed: the `Allow` the broker answers. */
  allow?: string;
  /** Upstream…: whether another attempt may help, after how long, and the Alibaba Cloud code and request id. */
  retryable?: boolean;
  retryAfterMs?: number;
  upstreamCode?: string;
  requestId?: string;
  /** The HTTP status a peer (the broker, the Kubernetes API server) answered; 0 when it did not answer. */
  status?: number;
  /** KubernetesError: the `Status` reason (or `Timeout`/`Network`) and the causes the API server gave. */
  statusReason?: string;
  causes?: StatusCause[];
  /** ConfigInvalid: one line per problem. */
  problems?: string[];
}

export class AcrCredentialError extends Error {
  override readonly name = "AcrCredentialError";
  readonly code: ErrorCode;
  readonly details: Readonly<ErrorDetails>;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: ErrorDetails } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details ?? {};
  }

  /** Why a token or request was refused, when this is such a refusal. */
  get reason(): RefusalReason | undefined {
    return this.details.reason;
  }

  get exitCode(): number {
    return errorCodes[this.code].exit;
  }

  get httpStatus(): number {
    return errorCodes[this.code].status;
  }
}

/** A refusal of a token (InvalidToken) or of what an authenticated caller asked for (Forbidden), by its reason. */
export function refusal(reason: RefusalReason, message: string): AcrCredentialError {
  return new AcrCredentialError(refusalReasons[reason], message, { details: { reason } });
}

export function isAcrCredentialError(error: unknown): error is AcrCredentialError {
  return error instanceof AcrCredentialError;
}

/** The stable code of anything thrown; `Internal` for what is not an `AcrCredentialError`. */
/** Whether a code read from elsewhere (an answer, a log) is one of ours. */
export const isErrorCode = (code: unknown): code is ErrorCode => typeof code === "string" && Object.hasOwn(errorCodes, code);

export const codeOf = (error: unknown): ErrorCode => (error instanceof AcrCredentialError ? error.code : "Internal");

/** The message of anything thrown, on one line, for places that must not print a stack. */
export function oneLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.replace(/\s*\n\s*/g, " ").trim();
}

/** At most `max` characters, ending at a sentence or word boundary with an ellipsis rather than mid-word. */
export function clipMessage(text: string, max = 300): string {
  const line = text.replace(/\s+/g, " ").trim();
  if (line.length <= max) return line;
  const head = line.slice(0, max);
  const sentence = head.lastIndexOf(". ");
  const word = head.lastIndexOf(" ");
  const end = sentence > max / 2 ? sentence + 1 : word > max / 2 ? word : max;
  return `${head.slice(0, end)} …`;
}
