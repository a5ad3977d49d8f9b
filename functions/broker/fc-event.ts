/**
 * Function Compute 3.0 shapes for the built-in Node.js runtime: an HTTP-trigger event arrives as a
 * Buffer of JSON, the response is `{statusCode, headers, body, isBase64Encoded}`. A direct
 * invocation (InvokeFunction) carries whatever the caller sent: here `{"action":"renew"}`.
 */
import { AcrCredentialError } from "../../shared/errors.ts";

export interface FcHttpEvent {
  version?: string;
  rawPath?: string;
  body?: string;
  isBase64Encoded?: boolean;
  headers?: Record<string, string>;
  queryParameters?: Record<string, string>;
  requestContext?: {
    requestId?: string;
    http?: { method?: string; path?: string; protocol?: string; sourceIp?: string; userAgent?: string };
    time?: string;
    timeEpoch?: string;
  };
}

export interface FcHttpResponse {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
  isBase64Encoded: boolean;
}

export interface FcContext {
  requestId?: string;
  /** Temporary credentials of the function's execution role. */
  credentials?: { accessKeyId?: string; accessKeySecret?: string; securityToken?: string };
  function?: { name?: string; handler?: string; memory?: number; timeout?: number };
  region?: string;
  accountId?: string;
}

export interface HttpInvocation {
  kind: "http";
  method: string;
  path: string;
  /** Lower-cased names; FC joins repeated headers with commas. */
  headers: Record<string, string>;
  body: Buffer;
  sourceIp?: string;
}

export interface RenewInvocation {
  kind: "renew";
  /** Absent: every configured cluster. */
  cluster?: string;
}

export type Invocation = HttpInvocation | RenewInvocation;

/**
 * A direct invocation (`{"action":…}`) the broker cannot run: answered in the direct-invocation shape
 * (the plain JSON result), not as an HTTP response, since no HTTP trigger is waiting for it.
 */
export class InvalidDirectInvocation extends AcrCredentialError {
  constructor(message: string) {
    super("InvalidRequest", message);
  }
}

function lowerCaseKeys(headers: Record<string, unknown> | undefined): Record<string, string> {
  const result: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers ?? {})) if (typeof value === "string") result[name.toLowerCase()] = value;
  return result;
}

/** Reads what FC passed to the handler: an HTTP-trigger event or a `{"action":"renew"}` invocation. */
export function parseInvocation(raw: unknown): Invocation {
  let event: unknown = raw;
  if (Buffer.isBuffer(raw) || typeof raw === "string") {
    try {
      event = JSON.parse(raw.toString());
    } catch {
      throw new AcrCredentialError("InvalidRequest", 'the event is not JSON; expected an HTTP-trigger event or {"action":"renew","cluster":"NAME"}');
    }
  }
  if (typeof event !== "object" || event === null) throw new AcrCredentialError("InvalidRequest", "the event is not a JSON object");
  const object = event as Record<string, unknown>;
  if ("action" in object) {
    if (object.action !== "renew") throw new InvalidDirectInvocation(`unknown action '${String(object.action)}'; the only action is 'renew'`);
    if (object.cluster !== undefined && (typeof object.cluster !== "string" || object.cluster === ""))
      throw new InvalidDirectInvocation("cluster must be a non-empty string");
    return { kind: "renew", ...(typeof object.cluster === "string" ? { cluster: object.cluster } : {}) };
  }
  const http = event as FcHttpEvent;
  const method = http.requestContext?.http?.method;
  const path = http.requestContext?.http?.path ?? http.rawPath;
  if (typeof method !== "string" || typeof path !== "string")
    throw new AcrCredentialError("InvalidRequest", 'the event is neither an HTTP-trigger event nor {"action":"renew"}');
  const body = typeof http.body === "string" ? Buffer.from(http.body, http.isBase64Encoded ? "base64" : "utf8") : Buffer.alloc(0);
  const sourceIp = http.requestContext?.http?.sourceIp;
  return { kind: "http", method: method.toUpperCase(), path, headers: lowerCaseKeys(http.headers), body, ...(sourceIp ? { sourceIp } : {}) };
}
