/**
 * What an FC 3.0 HTTP trigger hands a built-in runtime and takes back (docs: "HTTP trigger invoking
 * a function"): the `v1` event with header names canonicalised (`Authorization`, `X-Fc-…`), repeated
 * headers and query parameters joined with commas, the body base64-encoded unless it is text; the
 * answer `{statusCode, headers, body, isBase64Encoded}`, or any other value as a 200 body. Pure.
 */

export interface TriggerRequest {
  method: string;
  /** Path and query as received, e.g. `/v1/credentials?x=1`. */
  url: string;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  sourceIp: string;
}

export interface TriggerResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** `x-fc-request-id` → `X-Fc-Request-Id`. */
export function canonicalHeaderName(name: string): string {
  return name
    .toLowerCase()
    .split("-")
    .map((word) => (word === "" ? word : word[0]!.toUpperCase() + word.slice(1)))
    .join("-");
}

const textTypes = /^(text\/|application\/(json|x-www-form-urlencoded|xml|javascript)|[^;]*\+json)/i;

export interface EventMeta {
  requestId: string;
  accountId: string;
  region: string;
  triggerId: string;
  /** Epoch ms of arrival. */
  at: number;
}

export function httpTriggerEvent(request: TriggerRequest, meta: EventMeta): Record<string, unknown> {
  const url = new URL(request.url, "http://trigger.invalid");
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers)) {
    if (value === undefined) continue;
    headers[canonicalHeaderName(name)] = Array.isArray(value) ? value.join(",") : value;
  }
  const queryParameters: Record<string, string> = {};
  for (const name of new Set(url.searchParams.keys())) queryParameters[name] = url.searchParams.getAll(name).join(",");
  const contentType = headers["Content-Type"] ?? "";
  const isText = request.body.length === 0 || textTypes.test(contentType);
  const domainName = `${meta.triggerId}.${meta.region}.fcapp.run`;
  return {
    version: "v1",
    rawPath: url.pathname,
    headers,
    queryParameters,
    body: isText ? request.body.toString("utf8") : request.body.toString("base64"),
    isBase64Encoded: !isText,
    requestContext: {
      accountId: meta.accountId,
      domainName,
      domainPrefix: meta.triggerId,
      http: {
        method: request.method.toUpperCase(),
        path: decodeURIComponent(url.pathname),
        protocol: "HTTP/1.1",
        sourceIp: request.sourceIp,
        userAgent: headers["User-Agent"] ?? "",
      },
      requestId: meta.requestId,
      time: new Date(meta.at).toISOString().replace(/\.\d{3}Z$/, "Z"),
      timeEpoch: String(meta.at),
    },
  };
}

function isResponseStruct(value: unknown): value is { statusCode: number; headers?: Record<string, unknown>; body?: unknown; isBase64Encoded?: boolean } {
  return typeof value === "object" && value !== null && typeof (value as { statusCode?: unknown }).statusCode === "number";
}

/** Turns what the handler returned into the trigger's HTTP answer. */
export function triggerResponse(result: unknown, requestId: string): TriggerResponse {
  const base = { "x-fc-request-id": requestId };
  if (!isResponseStruct(result)) {
    const body = result === undefined || result === null ? Buffer.alloc(0) : Buffer.from(typeof result === "string" ? result : JSON.stringify(result), "utf8");
    return { status: 200, headers: base, body };
  }
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(result.headers ?? {})) if (value !== undefined) headers[name.toLowerCase()] = String(value);
  const text = typeof result.body === "string" ? result.body : result.body === undefined ? "" : JSON.stringify(result.body);
  return { status: result.statusCode, headers: { ...headers, ...base }, body: Buffer.from(text, result.isBase64Encoded ? "base64" : "utf8") };
}

/** FC's own errors on the trigger, in its `{errorCode, errorMessage}` shape. */
export function fcErrorResponse(status: number, errorCode: string, errorMessage: string, requestId: string): TriggerResponse {
  return {
    status,
    headers: { "content-type": "application/json", "x-fc-request-id": requestId },
    body: Buffer.from(JSON.stringify({ errorCode, errorMessage })),
  };
}
