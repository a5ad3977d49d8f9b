/**
 * The cross-cutting parts of the FC handler as middy middlewares: event parsing, request id,
 * body limit, error-to-status mapping, response headers and the one log line per request.
 */
import { randomUUID } from "node:crypto";
import type { MiddlewareObj, Request } from "@middy/core";
import type { Logger } from "../../shared/log.ts";
import { monotonicNow } from "../../shared/retry.ts";
import type { RequestAnnotations } from "./broker.ts";
import { InvalidDirectInvocation, parseInvocation, type FcContext, type FcHttpResponse, type Invocation } from "./fc-event.ts";
import { errorResult, logRequest, maxBodyBytes, payloadTooLarge, responseHeaders, type HttpResult } from "./http-api.ts";

/** What the handler sees after `fcEvent`: the parsed invocation and the request's bookkeeping. */
export interface BrokerEvent {
  invocation: Invocation;
  requestId: string;
  annotations: RequestAnnotations;
}

export type { HttpResult };

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
        if (error instanceof InvalidDirectInvocation) state.direct = true;
        throw error;
      }
      request.event = { invocation: state.invocation, requestId: state.requestId, annotations: state.annotations } satisfies BrokerEvent;
    },
  };
}

/** Refuses HTTP bodies over the API's limit before anything reads them. */
export function bodyLimit(): MiddlewareObj {
  return {
    name: "bodyLimit",
    before: (request: BrokerRequest) => {
      const invocation = stateOf(request).invocation;
      if (invocation?.kind === "http" && invocation.body.length > maxBodyBytes) throw payloadTooLarge(invocation.body.length);
    },
  };
}

/** Maps errors to statuses and `{"error":{code,message}}`; unexpected errors become a 500 without detail. */
export function errorResponse(log: () => Logger): MiddlewareObj {
  return {
    name: "errorResponse",
    onError: (request: BrokerRequest) => {
      request.response = errorResult(request.error, stateOf(request).requestId, log());
    },
  };
}

function toFcResponse(result: HttpResult, requestId: string): FcHttpResponse {
  return {
    statusCode: result.status,
    headers: responseHeaders(requestId, result.headers),
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

/** One JSON line per request: id, cluster, subject, instances, outcome, latency. Never a secret. */
export function accessLog(log: () => Logger): MiddlewareObj {
  const write = (request: BrokerRequest) => {
    const state = stateOf(request);
    const invocation = state.invocation;
    logRequest(log(), {
      requestId: state.requestId,
      what: invocation?.kind === "http" ? { method: invocation.method, path: invocation.path } : invocation ? { action: invocation.kind } : {},
      annotations: state.annotations,
      result: request.response as HttpResult | undefined,
      startedAt: state.startedAt,
    });
  };
  return { name: "accessLog", before: (request: BrokerRequest) => void stateOf(request), after: write, onError: write };
}
