import { randomUUID } from "node:crypto";
import type { MiddlewareObj, Request } from "@middy/core";
import { AcrCredentialError, isAcrCredentialError, oneLine } from "../../shared/errors.ts";
import { redactedPaths, type Logger } from "../../shared/log.ts";
import { monotonicNow } from "../../shared/retry.ts";
import type { RequestAnnotations } from "./broker.ts";
import { parseInvocation, type FcContext, type FcHttpResponse, type Invocation } from "./fc-event.ts";

/**
 * The cross-cutting parts of the FC handler as middy middlewares: event parsing, request id,
 * body limit, error-to-status mapping, response headers and the one log line per request.
 */

/** What the handler sees after `fcEvent`: the parsed invocation and the request's bookkeeping. */
export interface BrokerEvent {
  invocation: Invocation;
  requestId: string;
  annotations: RequestAnnotations;
}

/** What routes return; `httpResponse` turns it into FC's response shape. */
export interface HttpResult {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

interface State {
  requestId: string;
  startedAt: number;
  annotations: RequestAnnotations;
  invocation?: Invocation;
  /** A direct (non-HTTP) invocation whose event could not be parsed. */
  direct?: boolean;
}

type BrokerRequest = Request<unknown, unknown, Error, FcContext, { state?: State }>;

function stateOf(request: BrokerRequest): State {
  return (request.internal.state ??= { requestId: request.context?.requestId ?? randomUUID(), startedAt: monotonicNow(), annotations: {} });
}

/** Parses the FC event (Buffer) into an invocation; the handler receives a `BrokerEvent`. */
export function fcEvent(): MiddlewareObj {
  return {
    name: "fcEvent",
    before: (request: BrokerRequest) => {
      const state = stateOf(request);
      try {
        state.invocation = parseInvocation(request.event);
      } catch (error) {
        if (isAcrCredentialError(error) && error.details.direct === true) state.direct = true;
        throw error;
      }
      request.event = { invocation: state.invocation, requestId: state.requestId, annotations: state.annotations } satisfies BrokerEvent;
    },
  };
}

/** Refuses HTTP bodies over `maxBytes` before anything reads them. */
export function bodyLimit(maxBytes: number): MiddlewareObj {
  return {
    name: "bodyLimit",
    before: (request: BrokerRequest) => {
      const invocation = stateOf(request).invocation;
      if (invocation?.kind === "http" && invocation.body.length > maxBytes) {
        throw new AcrCredentialError("PayloadTooLarge", `the body is ${invocation.body.length} bytes; the limit is ${maxBytes}`);
      }
    },
  };
}

/** Maps errors to statuses and `{"error":{code,message}}`; unexpected errors become a 500 without detail. */
export function errorResponse(log: () => Logger): MiddlewareObj {
  return {
    name: "errorResponse",
    onError: (request: BrokerRequest) => {
      const error = request.error;
      if (isAcrCredentialError(error)) {
        const headers: Record<string, string> = {};
        if (error.code === "InvalidToken") headers["www-authenticate"] = 'Bearer error="invalid_token"';
        if (error.code === "RateLimited") headers["retry-after"] = String(error.details.retryAfterSeconds ?? 60);
        if (error.code === "MethodNotAllowed" && typeof error.details.allow === "string") headers.allow = error.details.allow;
        request.response = { status: error.httpStatus, body: { error: { code: error.code, message: oneLine(error) } }, headers } satisfies HttpResult;
        return;
      }
      log().error({ requestId: stateOf(request).requestId, err: { name: error instanceof Error ? error.name : typeof error, message: oneLine(error) } }, "unexpected error");
      request.response = { status: 500, body: { error: { code: "Internal", message: `internal error; see the broker's log for request ${stateOf(request).requestId}` } } } satisfies HttpResult;
    },
  };
}

function toFcResponse(result: HttpResult, requestId: string): FcHttpResponse {
  return {
    statusCode: result.status,
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store", "x-request-id": requestId, ...result.headers },
    body: JSON.stringify(result.body),
    isBase64Encoded: false,
  };
}

/**
 * HTTP invocations get FC's response shape with `Cache-Control: no-store` and the request id;
 * direct (renew) invocations get the plain JSON result.
 */
export function httpResponse(): MiddlewareObj {
  const finish = (request: BrokerRequest) => {
    const state = stateOf(request);
    const result = request.response as HttpResult;
    if (state.invocation?.kind === "renew" || state.direct) {
      request.response = result.body;
      return;
    }
    request.response = toFcResponse(result, state.requestId);
  };
  return { name: "httpResponse", after: finish, onError: finish };
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

/** One JSON line per request: id, cluster, subject, instances, outcome, latency. Never a secret. */
export function accessLog(log: () => Logger): MiddlewareObj {
  const write = (request: BrokerRequest) => {
    const state = stateOf(request);
    const result = request.response as HttpResult | undefined;
    const status = result?.status ?? 500;
    const errorCode = (result?.body as { error?: { code?: string } } | undefined)?.error?.code;
    const invocation = state.invocation;
    flatLogger(log())[status >= 500 ? "error" : status >= 400 ? "warn" : "info"](
      {
        requestId: state.requestId,
        ...(invocation?.kind === "http" ? { method: invocation.method, path: invocation.path } : invocation ? { action: invocation.kind } : {}),
        ...state.annotations,
        status,
        outcome: errorCode ?? (state.annotations.failed ? "partial" : "ok"),
        latencyMs: Math.round((monotonicNow() - state.startedAt) * 10) / 10,
      },
      "request",
    );
  };
  return { name: "accessLog", before: (request: BrokerRequest) => void stateOf(request), after: write, onError: write };
}
