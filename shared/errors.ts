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

export class AcrCredentialError extends Error {
  override readonly name = "AcrCredentialError";
  readonly code: ErrorCode;
  /** Extra fields a caller may surface (e.g. `retryAfterSeconds` for RateLimited). Never secrets. */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details ?? {};
  }

  get exitCode(): number {
    return errorCodes[this.code].exit;
  }

  get httpStatus(): number {
    return errorCodes[this.code].status;
  }
}

export function isAcrCredentialError(error: unknown): error is AcrCredentialError {
  return error instanceof AcrCredentialError;
}

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
