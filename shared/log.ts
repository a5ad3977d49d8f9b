import { pino, type Logger, type DestinationStream } from "pino";

export type { Logger };

/**
 * Field names that may carry a secret anywhere in a log record. pino replaces them before the
 * record is serialised, so a careless `log.info({ credential })` still cannot leak a password.
 */
export const redactedPaths = [
  "password", "*.password", "*[*].password", "credentials[*].password",
  "token", "*.token", "oidcToken", "*.oidcToken",
  "authorization", "*.authorization", "headers.authorization", "req.headers.authorization",
  "accessKeySecret", "*.accessKeySecret", "AccessKeySecret", "*.AccessKeySecret",
  "securityToken", "*.securityToken", "SecurityToken", "*.SecurityToken",
  "AuthorizationToken", "*.AuthorizationToken", "authorizationToken", "*.authorizationToken",
];

/**
 * stdout written asynchronously: a server's request lines queue behind a write in progress instead
 * of each waiting for the pipe. Whoever uses it calls `flushSync()` before exiting. With
 * `batchBytes`, lines are written once that much has gathered, and at least every second: under
 * load one write (and one wake-up of the log reader) carries a few dozen lines, not one.
 */
export function asyncStdout(options: { batchBytes?: number } = {}): ReturnType<typeof pino.destination> {
  return pino.destination({ dest: 1, sync: false, ...(options.batchBytes ? { minLength: options.batchBytes, maxWrite: 2 * options.batchBytes, periodicFlush: 1000 } : {}) });
}

/** A JSON logger for one component (`broker`, `refresher`, `emulator`). */
export function createLogger(component: string, options: { level?: string; destination?: DestinationStream } = {}): Logger {
  const level = options.level ?? process.env.LOG_LEVEL ?? "info";
  return pino(
    { name: component, level, base: { component }, redact: { paths: redactedPaths, censor: "[redacted]" }, timestamp: pino.stdTimeFunctions.isoTime },
    options.destination,
  );
}
