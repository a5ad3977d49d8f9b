import type { FcContext, FcHttpEvent, FcHttpResponse } from "../../../../functions/broker/fc-event.ts";

export type FcHandler = (event: Buffer, context: FcContext) => Promise<unknown>;

export interface HttpCall {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: unknown;
  /** Send the body base64-encoded, as FC does for binary payloads. */
  base64?: boolean;
}

export interface HttpAnswer {
  status: number;
  headers: Record<string, string>;
  json: Record<string, unknown>;
  raw: FcHttpResponse;
}

/** A sandbox user's access key standing in for the FC execution role's credentials. */
export const testContext = (credentials?: FcContext["credentials"]): FcContext => ({
  requestId: `req-${Math.random().toString(36).slice(2)}`,
  credentials: credentials ?? { accessKeyId: "TESTAKBROKER0001", accessKeySecret: "test-secret-not-real" },
  function: { name: "broker", timeout: 30 },
});

/** Calls the handler exactly as FC 3.0 does for an HTTP trigger: a Buffer of the event JSON. */
export async function invokeHttp(handler: FcHandler, call: HttpCall, context: FcContext = testContext()): Promise<HttpAnswer> {
  const text = call.body === undefined ? "" : typeof call.body === "string" ? call.body : JSON.stringify(call.body);
  const event: FcHttpEvent = {
    version: "v1",
    rawPath: call.path ?? "/v1/credentials",
    body: call.base64 ? Buffer.from(text).toString("base64") : text,
    isBase64Encoded: call.base64 ?? false,
    headers: { "Content-Type": "application/json", ...call.headers },
    queryParameters: {},
    requestContext: {
      requestId: context.requestId ?? "r",
      http: { method: call.method ?? "POST", path: call.path ?? "/v1/credentials", protocol: "HTTP/1.1", sourceIp: "10.0.0.1", userAgent: "test" },
    },
  };
  const raw = (await handler(Buffer.from(JSON.stringify(event)), context)) as FcHttpResponse;
  return { status: raw.statusCode, headers: raw.headers, json: raw.body ? (JSON.parse(raw.body) as Record<string, unknown>) : {}, raw };
}

export const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });
