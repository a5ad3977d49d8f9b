/**
 * The one way every component (broker, refresher, emulator) writes JSON lines: secret fields
 * redacted, and `err` written the same way everywhere by `errorFields`.
 */
import { pino, type Logger, type DestinationStream } from "pino";
import { isAcrCredentialError, oneLine } from "./errors.ts";

export type { Logger };

/**
 * Field names that may carry a secret anywhere in a log record. pino replaces them before the
 * record is serialised, so a careless `log.info({ credential })` still cannot leak a password.
 */
export const redactedPaths = [
  "password",
  "*.password",
  "*[*].password",
  "credentials[*].password",
  "token",
  "*.token",
  "oidcToken",
  "*.oidcToken",
  "authorization",
  "*.authorization",
  "headers.authorization",
  "req.headers.authorization",
  "accessKeySecret",
  "*.accessKeySecret",
  "AccessKeySecret",
  "*.AccessKeySecret",
  "securityToken",
  "*.securityToken",
  "SecurityToken",
  "*.SecurityToken",
  "AuthorizationToken",
  "*.AuthorizationToken",
  "authorizationToken",
  "*.authorizationToken",
];

/**
 * stdout written asynchronously: a server's request lines queue behind a write in progress instead
 * of each waiting for the pipe. Whoever uses it calls `flushSync()` before exiting. With
 * `batchBytes`, lines are written once that much has gathered, and at least every second: under
 * load one write (and one wake-up of the log reader) carries a few dozen lines, not one.
 */
export function asyncStdout(options: { batchBytes?: number } = {}): ReturnType<typeof pino.destination> {
  return pino.destination({
    dest: 1,
    sync: false,
    ...(options.batchBytes ? { minLength: options.batchBytes, maxWrite: 2 * options.batchBytes, periodicFlush: 1000 } : {}),
  });
}

/** How an `err` field reads in every log line. */
export interface ErrorFields {
  /** The stable code of an AcrCredentialError (shared/errors.ts). */
  code?: string;
  /** The class of an unexpected Error (`TypeError`), so a bug is told apart from a refusal. */
  name?: string;
  message: string;
}

/** An error as the broker's API and the refresher's status report it: `{code, message}`, no Error. */
const isReported = (value: unknown): value is { code?: unknown; message: string } =>
  typeof value === "object" && value !== null && typeof (value as { message?: unknown }).message === "string";

/**
 * `err` as one line: the code and message of an AcrCredentialError, the name and message of any
 * other Error, the code and message of an error reported as `{code, message}`, the text of
 * anything else thrown. Never a stack: an expected error is the user's
 * to fix and its stack says nothing to them; an unexpected one is identified by name, message and
 * the request id. The error's own fields (`details`, `cause`, an SDK client's request with its
 * signed headers) are never written: only the message, which is the product's own wording.
 */
export function errorFields(error: unknown): ErrorFields {
  if (isAcrCredentialError(error)) return { code: error.code, message: oneLine(error) };
  if (error instanceof Error) return { name: error.name, message: oneLine(error) };
  if (isReported(error)) return { ...(typeof error.code === "string" ? { code: error.code } : {}), message: oneLine(error.message) };
  return { message: oneLine(error) };
}

/** A JSON logger for one component (`broker`, `refresher`, `emulator`). */
export function createLogger(component: string, options: { level?: string; destination?: DestinationStream } = {}): Logger {
  const level = options.level ?? process.env.LOG_LEVEL ?? "info";
  return pino(
    {
      name: component,
      level,
      base: { component },
      serializers: { err: errorFields },
      redact: { paths: redactedPaths, censor: "[redacted]" },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination,
  );
}
