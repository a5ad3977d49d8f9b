/**
 * Turns what the Alibaba Cloud SDKs throw into an `AcrCredentialError` with a stable code and a
 * one-line message, and says whether another attempt may help (throttling, 5xx, network).
 */
import { AcrCredentialError, type ErrorCode } from "../errors.ts";

export interface UpstreamErrorDetails {
  retryable: boolean;
  retryAfterMs?: number;
  /** The Alibaba Cloud error code, e.g. `EntityNotExist.Role`. */
  upstreamCode?: string;
  requestId?: string;
}

/** What the Alibaba Cloud SDKs throw, read field by field (none is guaranteed). */
export interface SdkError {
  name?: string;
  code?: unknown;
  /** Set by Node for a network failure. */
  syscall?: unknown;
  statusCode?: unknown;
  requestId?: unknown;
  retryAfter?: unknown;
  message?: unknown;
  data?: { Message?: unknown; message?: unknown } | null;
}

const networkCodes = new Set(["ECONNREFUSED", "ECONNRESET", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "EPIPE", "ETIMEDOUT", "UND_ERR_SOCKET"]);

/** A JWT or anything token-like must never reach a log or a response through an upstream message. */
export const redactTokens = (text: string): string => text.replace(/eyJ[\w-]+\.[\w-]+\.[\w-]*/g, "[token]");

function scrub(text: string): string {
  return redactTokens(text)
    .replace(/\s*\n\s*/g, " ")
    .slice(0, 300);
}

export function upstreamDetails(error: unknown): UpstreamErrorDetails | undefined {
  if (!(error instanceof AcrCredentialError)) return undefined;
  const { retryable, retryAfterMs, upstreamCode, requestId } = error.details;
  if (retryable === undefined) return undefined;
  return {
    retryable,
    ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    ...(upstreamCode !== undefined ? { upstreamCode } : {}),
    ...(requestId !== undefined ? { requestId } : {}),
  };
}

/**
 * What to change for a refusal of one operation, when the caller knows better than the generic
 * hint (`upstreamCode` is the Alibaba Cloud code, e.g. `NoPrivilege`); undefined keeps the generic one.
 */
export type RefusalHint = (upstreamCode: string | undefined) => string | undefined;

/** Classifies an SDK error from `operation` (e.g. "STS AssumeRole acs:ram::1:role/x"). */
export function toUpstreamError(error: unknown, operation: string, hintFor?: RefusalHint): AcrCredentialError {
  if (error instanceof AcrCredentialError) return error;
  const e = (error ?? {}) as SdkError;
  const status = typeof e.statusCode === "number" ? e.statusCode : undefined;
  const upstreamCode = typeof e.code === "string" ? e.code : undefined;
  const requestId = typeof e.requestId === "string" ? e.requestId : undefined;
  const upstreamMessage = scrub(String(e.data?.Message ?? e.data?.message ?? e.message ?? error));
  const make = (code: ErrorCode, retryable: boolean, message: string, extra: Partial<UpstreamErrorDetails> = {}) =>
    new AcrCredentialError(code, `${operation}: ${message}`, { cause: error, details: { retryable, upstreamCode, requestId, ...extra } });

  if (e.name === "ThrottlingError" || (upstreamCode !== undefined && upstreamCode.includes("Throttling"))) {
    const retryAfterMs = typeof e.retryAfter === "number" && e.retryAfter > 0 ? e.retryAfter : undefined;
    return make("UpstreamThrottled", true, `throttled (${upstreamCode ?? status}); retried within the request deadline without success`, { retryAfterMs });
  }
  if (e.name === "RequestTimeoutError") return make("UpstreamTimeout", true, `no answer in time (${upstreamMessage})`);
  if (upstreamCode !== undefined && networkCodes.has(upstreamCode)) return make("UpstreamUnavailable", true, `unreachable (${upstreamCode})`);
  if (status !== undefined && status >= 500) {
    return make(
      status === 503 ? "UpstreamUnavailable" : "UpstreamError",
      true,
      `server error ${status} ${upstreamCode ?? ""}: ${upstreamMessage}`.replace(/\s+:/, ":"),
    );
  }
  if (status !== undefined && status >= 400) {
    const specific = hintFor?.(upstreamCode);
    const hint =
      specific !== undefined
        ? `; ${specific}`
        : /NoPermission|NoPrivilege|NotAuthorized|Forbidden|AccessDenied/i.test(upstreamCode ?? "")
          ? "; grant the broker's identity this permission (see docs/deploy.md)"
          : /EntityNotExist|NOT_?EXIST|NotFound/i.test(upstreamCode ?? "")
            ? "; check the ARN or instance id in the broker configuration"
            : "";
    return make("UpstreamError", false, `refused with ${status} ${upstreamCode ?? ""}: ${upstreamMessage}${hint}`.replace(/\s+:/, ":"));
  }
  return make("UpstreamError", false, `failed: ${upstreamMessage}`);
}

/** CR codes in an `IsSuccess: false` answer that say "try again", not "you asked for something wrong". */
const transientCode = /SYSTEM|INTERNAL|UNAVAILABLE|BUSY|TIMEOUT|TIMED_OUT|THROTTL|FLOW_CONTROL/i;

/**
 * CR 2018-12-01 can answer HTTP 200 with `IsSuccess: false` and a `Code`. Classified like the HTTP
 * error it stands for: a transient code as a server error (retried), throttling as throttling, a
 * permission or missing-entity code as that refusal (not retried).
 */
export function unsuccessfulAnswer(body: Record<string, unknown>, operation: string, hintFor?: RefusalHint): AcrCredentialError {
  const code = typeof body.Code === "string" && body.Code !== "" ? body.Code : "Unknown";
  const message = typeof body.Message === "string" && body.Message !== "" ? body.Message : "IsSuccess=false in an HTTP 200 answer";
  const status = /Throttl/i.test(code)
    ? 400
    : /UNAVAILABLE|BUSY/i.test(code)
      ? 503
      : transientCode.test(code)
        ? 500
        : /NoPermission|NoPrivilege|NotAuthorized|Forbidden|AccessDenied/i.test(code)
          ? 403
          : /NOT_?EXIST|NotFound/i.test(code)
            ? 404
            : 400;
  const name = /Throttl/i.test(code) ? "ThrottlingError" : status >= 500 ? "ServerError" : "ClientError";
  const requestId = typeof body.RequestId === "string" ? body.RequestId : undefined;
  // Shaped like what openapi-core throws, so one classifier serves both.
  const shaped = Object.assign(new Error(`${code}: ${message}`), {
    name,
    code,
    statusCode: status,
    requestId,
    data: { Message: `${message} (HTTP 200, IsSuccess=false)` },
  });
  return toUpstreamError(shaped, operation, hintFor);
}
