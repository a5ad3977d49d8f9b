/**
 * The broker's HTTP API apart from how a request arrives: routing to the business functions, the
 * deadline of a request, error → status mapping, the response headers and the one log line per
 * request. The FC handler (middy, FC's event) and the HTTP server (node:http) both answer through it.
 */
import { AcrCredentialError, isAcrCredentialError, oneLine } from "../../shared/errors.ts";
import { redactedPaths, type Logger } from "../../shared/log.ts";
import { monotonicNow } from "../../shared/retry.ts";
import { issueCredentials, type CallerContext, type RequestAnnotations } from "./broker.ts";
import type { BrokerRuntime } from "./runtime.ts";

/** The largest `POST /v1/credentials` body (SPEC §3.1). */
export const maxBodyBytes = 64 * 1024;

/** What routes return; each transport turns it into its response shape. */
export interface HttpResult {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

/** An HTTP request as the API reads it. */
export interface ApiRequest {
  method: string;
  /** Decoded path without the query. */
  path: string;
  authorization: string | undefined;
  body: Buffer;
}

const methodNotAllowed = (allow: string) => new AcrCredentialError("MethodNotAllowed", `use ${allow} for this path`, { details: { allow } });

/** Upstream work ends within the configured request timeout, and a second before FC's own timeout. */
export function requestDeadline(runtime: BrokerRuntime, functionTimeoutSeconds: number | undefined): number {
  const functionTimeoutMs = functionTimeoutSeconds ? functionTimeoutSeconds * 1000 - 1000 : Number.POSITIVE_INFINITY;
  return monotonicNow() + Math.max(1000, Math.min(runtime.config.requestTimeoutSeconds * 1000, functionTimeoutMs));
}

/** Routes one HTTP request of the API (SPEC §3.1) to the business functions. */
export async function answerHttp(runtime: BrokerRuntime, request: ApiRequest, caller: () => CallerContext): Promise<HttpResult> {
  switch (request.path) {
    case "/healthz":
      if (request.method !== "GET" && request.method !== "HEAD") throw methodNotAllowed("GET");
      return { status: 200, body: { status: "ok", version: runtime.version } };
    case "/v1/credentials": {
      if (request.method !== "POST") throw methodNotAllowed("POST");
      return { status: 200, body: await issueCredentials(runtime, { authorization: request.authorization, body: request.body }, caller()) };
    }
    default:
      throw new AcrCredentialError("NotFound", `no such path '${request.path}'; the API is POST /v1/credentials and GET /healthz`);
  }
}

export function payloadTooLarge(bytes: number): AcrCredentialError {
  return new AcrCredentialError("PayloadTooLarge", `the body is ${bytes} bytes; the limit is ${maxBodyBytes}`);
}

/**
 * An error as the API answers it: the code's status and `{"error":{code,message}}` with the headers
 * the code calls for; anything unexpected becomes a 500 without detail, logged with the request id.
 */
export function errorResult(error: unknown, requestId: string, log: Logger): HttpResult {
  if (isAcrCredentialError(error)) {
    const headers: Record<string, string> = {};
    if (error.code === "InvalidToken") headers["www-authenticate"] = 'Bearer error="invalid_token"';
    if (error.code === "RateLimited") headers["retry-after"] = String(error.details.retryAfterSeconds ?? 60);
    if (error.code === "MethodNotAllowed" && typeof error.details.allow === "string") headers.allow = error.details.allow;
    return { status: error.httpStatus, body: { error: { code: error.code, message: oneLine(error) } }, headers };
  }
  log.error({ requestId, err: { name: error instanceof Error ? error.name : typeof error, message: oneLine(error) } }, "unexpected error");
  return { status: 500, body: { error: { code: "Internal", message: `internal error; see the broker's log for request ${requestId}` } } };
}

/** Headers of every API answer: JSON, never cached by anything in between, the request id. */
export function responseHeaders(requestId: string, extra: Record<string, string> | undefined): Record<string, string> {
  return { "content-type": "application/json; charset=utf-8", "cache-control": "no-store", "x-request-id": requestId, ...extra };
}

/**
 * The request line's logger. The line has fixed, flat fields, so top-level redaction is enough; the
 * project logger's wildcard paths cost more per line than the rest of a cached request.
 */
const flatLoggers = new WeakMap<Logger, Logger>();
function flatLogger(log: Logger): Logger {
  let flat = flatLoggers.get(log);
  if (!flat) {
    flat = log.child({}, { redact: { paths: redactedPaths.filter((path) => !path.includes("*")), censor: "[redacted]" } });
    flatLoggers.set(log, flat);
  }
  return flat;
}

export interface RequestLine {
  requestId: string;
  /** `{method, path}` of an HTTP request, `{action}` of a direct invocation. */
  what: Record<string, string>;
  annotations: RequestAnnotations;
  result: HttpResult | undefined;
  startedAt: number;
}

/** One JSON line per request: id, cluster, subject, instances, outcome, latency. Never a secret. */
export function logRequest(log: Logger, line: RequestLine): void {
  const status = line.result?.status ?? 500;
  const errorCode = (line.result?.body as { error?: { code?: string } } | undefined)?.error?.code;
  flatLogger(log)[status >= 500 ? "error" : status >= 400 ? "warn" : "info"](
    {
      requestId: line.requestId,
      ...line.what,
      ...line.annotations,
      status,
      outcome: errorCode ?? (line.annotations.failed ? "partial" : "ok"),
      latencyMs: Math.round((monotonicNow() - line.startedAt) * 10) / 10,
    },
    "request",
  );
}
