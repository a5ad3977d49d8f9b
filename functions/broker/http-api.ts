/**
 * The broker's HTTP API apart from how a request arrives: routing to the business functions, the
 * deadline of a request, error → status mapping, the response headers and the one log line per
 * request. The FC handler (middy, FC's event) and the HTTP server (node:http) both answer through it.
 */
import { AcrCredentialError, isAcrCredentialError, oneLine, type RefusalReason } from "../../shared/errors.ts";
import { pino } from "pino";
import type { Logger } from "../../shared/log.ts";
import { monotonicNow } from "../../shared/retry.ts";
import { issueCredentials, type CallerContext, type RequestAnnotations } from "./broker.ts";
import { issueKubeletCredentials } from "./kubelet-credentials.ts";
import type { BrokerRuntime } from "./runtime.ts";

/** The largest `POST /v1/credentials` body (docs/broker.md, "HTTP API"). */
export const maxBodyBytes = 64 * 1024;

/** What routes return; each transport turns it into its response shape. */
export interface HttpResult {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
  /** Why a refusal was refused: for the request line only, never part of the answer. */
  reason?: RefusalReason;
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

/** Routes one HTTP request of the API (docs/broker.md, "HTTP API") to the business functions. */
export async function answerHttp(runtime: BrokerRuntime, request: ApiRequest, caller: () => CallerContext): Promise<HttpResult> {
  switch (request.path) {
    case "/healthz":
      if (request.method !== "GET" && request.method !== "HEAD") throw methodNotAllowed("GET");
      return { status: 200, body: { status: "ok", version: runtime.version } };
    case "/v1/credentials": {
      if (request.method !== "POST") throw methodNotAllowed("POST");
      return { status: 200, body: await issueCredentials(runtime, { authorization: request.authorization, body: request.body }, caller()) };
    }
    case "/v1/kubelet-credentials":
      if (request.method !== "POST") throw methodNotAllowed("POST");
      return { status: 200, body: await issueKubeletCredentials(runtime, { authorization: request.authorization, body: request.body }, caller()) };
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
    if (error.code === "MethodNotAllowed" && error.details.allow !== undefined) headers.allow = error.details.allow;
    return {
      status: error.httpStatus,
      body: { error: { code: error.code, message: oneLine(error) } },
      headers,
      ...(error.reason ? { reason: error.reason } : {}),
    };
  }
  log.error({ requestId, err: error }, "unexpected error");
  return { status: 500, body: { error: { code: "Internal", message: `internal error; see the broker's log for request ${requestId}` } } };
}

/** Headers of every API answer: JSON, never cached by anything in between, the request id. */
export function responseHeaders(requestId: string, extra: Record<string, string> | undefined): Record<string, string> {
  return { "content-type": "application/json; charset=utf-8", "cache-control": "no-store", "x-request-id": requestId, ...extra };
}

export interface RequestLine {
  requestId: string;
  /** `{method, path}` of an HTTP request, `{action}` of a direct invocation. */
  what: Record<string, string>;
  annotations: RequestAnnotations;
  result: HttpResult | undefined;
  startedAt: number;
}

const levels = { info: 30, warn: 40, error: 50 } as const;
// pino's published symbols for a logger's destination and its bound fields (`,"component":…,"name":…`).
const { streamSym, chindingsSym } = pino.symbols as unknown as { streamSym: symbol; chindingsSym: symbol };

/**
 * One JSON line per request: id, cluster, subject, instances, outcome (and a refusal's reason), latency. Never a secret: the
 * fields are these fixed, typed ones, none of which the logger's redaction paths name. The line is
 * the one pino would write for `log[level](fields, "request")`, serialised with one JSON.stringify
 * and written to the logger's destination directly: pino's per-field serialisation and redaction
 * cost more than the rest of a remembered answer.
 */
export function logRequest(log: Logger, line: RequestLine): void {
  const status = line.result?.status ?? 500;
  const level = status >= 500 ? "error" : status >= 400 ? "warn" : "info";
  if (!log.isLevelEnabled(level)) return;
  const errorCode = (line.result?.body as { error?: { code?: string } } | undefined)?.error?.code;
  const fields = JSON.stringify({
    requestId: line.requestId,
    ...line.what,
    ...line.annotations,
    status,
    outcome: errorCode ?? (line.annotations.failed ? "partial" : "ok"),
    ...(line.result?.reason ? { reason: line.result.reason } : {}),
    latencyMs: Math.round((monotonicNow() - line.startedAt) * 10) / 10,
  });
  const record = log as unknown as Record<symbol, unknown>;
  (record[streamSym] as { write(text: string): void }).write(
    `{"level":${levels[level]},"time":"${new Date().toISOString()}"${record[chindingsSym] as string},${fields.slice(1, -1)},"msg":"request"}\n`,
  );
}
