/**
 * The refresher's side of the broker API (docs/broker.md, "HTTP API"): POST /v1/credentials with the projected
 * ServiceAccount token, read from its file on every attempt because the kubelet rotates it. Network
 * errors, 429 and 5xx are retried with exponential backoff and full jitter (shared/retry.ts), at
 * least as long as a `Retry-After` asks, until the caller's deadline: a broker throttled during a
 * fleet's burst is waited out for as long as the run may last; anything else fails at once with
 * the broker's own code.
 */
import { readFile as readFileFromDisk } from "node:fs/promises";
import { setTimeout as waitFor } from "node:timers/promises";
import {
  credentialsResponseSchema,
  errorResponseSchema,
  type CredentialsRequest,
  type CredentialsResponse,
  type RegistryRequest,
} from "../shared/broker-api.ts";
import { AcrCredentialError, codeOf, isErrorCode, type ErrorCode } from "../shared/errors.ts";
import { retry, sleep, type BackoffPolicy, type RetryNotice } from "../shared/retry.ts";

export interface BrokerClientOptions {
  /** Base URL of the broker, e.g. `https://broker.example.com`. */
  url: string;
  /** Projected token with the broker's audience. */
  tokenFile: string;
  /** Projected token with audience `sts.aliyuncs.com`, sent as `oidcToken` for RRSA entries. */
  stsTokenFile?: string;
  fetch?: typeof fetch;
  readFile?: (path: string) => Promise<string>;
  /** Per attempt. */
  timeoutMs?: number;
  /** Attempts in total; default: as many as the deadline allows. */
  attempts?: number;
  sleep?: (milliseconds: number) => Promise<void>;
  random?: () => number;
  now?: () => number;
  userAgent?: string;
}

export interface CredentialsQuery {
  registries: RegistryRequest[];
  force?: boolean;
  /** Credentials valid at least this long; the broker refreshes its shared entry once for the fleet when needed. */
  minValiditySeconds?: number;
  /** Time (ms since the epoch, the client's `now`) after which no retry starts; the run's deadline. */
  deadlineAt?: number;
  /** Told before each wait between attempts, e.g. to say so in the status. */
  onRetry?: (retry: BrokerRetry) => void | Promise<void>;
  /** Ends the call (and its waits) early, e.g. when the refresher stops. */
  signal?: AbortSignal;
}

/** A retry about to happen: the error that caused it (its code and one-line message), attempts so far, the wait. */
export interface BrokerRetry {
  code: ErrorCode;
  message: string;
  attempts: number;
  delayMs: number;
}

export interface BrokerClient {
  fetchCredentials(query: CredentialsQuery): Promise<CredentialsResponse>;
}

const retryableStatus = new Set([429, 500, 502, 503, 504]);

async function readToken(readFile: (path: string) => Promise<string>, path: string, what: string, flag: string): Promise<string> {
  let token: string;
  try {
    token = (await readFile(path)).trim();
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? "unreadable";
    throw new AcrCredentialError(
      "FileUnreadable",
      `cannot read the ${what} at ${path} (${reason}); mount the projected token volume from job/deploy or pass ${flag}`,
    );
  }
  if (token === "") throw new AcrCredentialError("FileUnreadable", `the ${what} at ${path} is empty; check the projected token volume`);
  return token;
}

/** Seconds from a `Retry-After` header (delta-seconds or an HTTP date), if any. */
export function retryAfterMs(header: string | null, now: number): number | undefined {
  if (header === null || header.trim() === "") return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** No retry starts after this long since the call began, unless the query sets `deadlineAt` (a forced call keeps it). */
const defaultDeadlineMs = 60_000;

/** Between broker attempts: full jitter from 0.5 s, the window doubling up to 15 s. */
export const brokerBackoff: BackoffPolicy = { baseDelayMs: 500, maxDelayMs: 15_000, maxAttempts: Number.POSITIVE_INFINITY };

/** Thrown inside the retry loop for an answer worth another attempt; unwrapped before the caller sees it. */
class Retryable extends Error {
  constructor(
    readonly error: AcrCredentialError,
    readonly waitMs: number | undefined,
  ) {
    super(error.message);
  }
}

function brokerError(status: number, body: unknown, url: string): AcrCredentialError {
  const parsed = errorResponseSchema.safeParse(body);
  const code = parsed.success ? parsed.data.error.code : undefined;
  const message = parsed.success ? parsed.data.error.message.replace(/\s+/g, " ") : `HTTP ${status}`;
  const known = isErrorCode(code) ? code : undefined;
  // A refusal without the broker's error body did not come from the broker (a proxy, another service at that URL).
  if (!parsed.success && status < 500 && status !== 429) {
    return new AcrCredentialError(
      "BrokerResponseInvalid",
      `${url} answered ${status} with a body that is not the broker's API; check broker-url (a proxy or another service answers there)`,
      { details: { status } },
    );
  }
  const fix: Record<number, string> = {
    401: "the broker rejected the ServiceAccount token; check the token audience and the cluster's issuer in the broker config",
    403: "the broker does not allow this cluster, subject or registry; check the cluster's entry in the broker config",
    404: "check broker-url",
    429: "the broker is rate-limiting this cluster; the next run retries",
  };
  const hint = fix[status] ?? (status >= 500 ? "the broker or Alibaba Cloud is failing; the next run retries" : "check the refresher's configuration");
  const fallback: ErrorCode =
    status === 400
      ? "InvalidRequest"
      : status === 401
        ? "InvalidToken"
        : status === 403
          ? "Forbidden"
          : status === 404
            ? "NotFound"
            : status === 429
              ? "RateLimited"
              : "BrokerUnreachable";
  return new AcrCredentialError(known ?? fallback, `broker ${url} answered ${status}: ${message}; ${hint}`, { details: { status } });
}

export function brokerClient(options: BrokerClientOptions): BrokerClient {
  const doFetch = options.fetch ?? fetch;
  const readFile = options.readFile ?? ((path: string) => readFileFromDisk(path, "utf8"));
  const pause = options.sleep ?? sleep;
  // A wait that ends when the signal aborts; the default one clears its timer too, so a stopped refresher exits at once.
  const sleepUnless = (signal: AbortSignal) => (milliseconds: number) =>
    options.sleep === undefined ? waitFor(milliseconds, undefined, { signal }) : abortable(pause(milliseconds), signal);
  const random = options.random ?? Math.random;
  const now = options.now ?? Date.now;
  const policy: BackoffPolicy = { ...brokerBackoff, maxAttempts: options.attempts ?? brokerBackoff.maxAttempts };
  const timeoutMs = options.timeoutMs ?? 10_000;

  const endpoint = `${options.url.replace(/\/+$/, "")}/v1/credentials`;

  /** One request; an answer worth another attempt is thrown as `Retryable`. */
  async function attemptOnce(query: CredentialsQuery, needsOidcToken: boolean): Promise<CredentialsResponse> {
    const token = await readToken(readFile, options.tokenFile, "ServiceAccount token", "--token-file");
    const body: CredentialsRequest = { registries: query.registries };
    if (query.force === true) body.force = true;
    if (query.minValiditySeconds !== undefined) body.minValiditySeconds = query.minValiditySeconds;
    if (needsOidcToken) {
      if (options.stsTokenFile === undefined)
        throw new AcrCredentialError(
          "ConfigInvalid",
          "RRSA is enabled but no token with audience sts.aliyuncs.com is mounted; add the second projected token from job/deploy (or pass --sts-token-file)",
        );
      body.oidcToken = await readToken(readFile, options.stsTokenFile, "RRSA token (audience sts.aliyuncs.com)", "--sts-token-file");
    }
    let response: Response;
    let text: string;
    try {
      response = await doFetch(endpoint, {
        method: "POST",
        headers: {
          authorization: `Bearer ${token}`,
          "content-type": "application/json",
          accept: "application/json",
          "user-agent": options.userAgent ?? "acr-credential-refresher",
        },
        body: JSON.stringify(body),
        signal: query.signal === undefined ? AbortSignal.timeout(timeoutMs) : AbortSignal.any([AbortSignal.timeout(timeoutMs), query.signal]),
      });
      text = await response.text();
    } catch (error) {
      const reason = error instanceof Error ? ((error.cause as { code?: string } | undefined)?.code ?? error.name) : String(error);
      const unreachable = new AcrCredentialError(
        "BrokerUnreachable",
        `cannot reach the broker at ${endpoint} (${reason}); check broker-url and the network path from the cluster`,
        { cause: error },
      );
      // Cut off by the caller (the watcher stopping, its configuration changed): not a retry.
      if (query.signal?.aborted === true) throw unreachable;
      throw new Retryable(unreachable, undefined);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (response.ok) {
      const parsed = credentialsResponseSchema.safeParse(json);
      if (!parsed.success)
        throw new AcrCredentialError(
          "BrokerResponseInvalid",
          `broker ${endpoint} answered ${response.status} with a body that is not a credentials response; check broker-url`,
        );
      return parsed.data;
    }
    const error = brokerError(response.status, json, endpoint);
    if (!retryableStatus.has(response.status)) throw error;
    throw new Retryable(error, retryAfterMs(response.headers.get("retry-after"), now()));
  }

  return {
    async fetchCredentials(query) {
      const needsOidcToken = query.registries.some((registry) => registry.rrsaRoleArn !== undefined);
      try {
        return await retry(() => attemptOnce(query, needsOidcToken), {
          policy,
          deadline: query.deadlineAt ?? now() + defaultDeadlineMs,
          now,
          sleep: query.signal === undefined ? pause : sleepUnless(query.signal),
          random,
          classify: (error) =>
            error instanceof Retryable ? { retry: true, ...(error.waitMs === undefined ? {} : { retryAfterMs: error.waitMs }) } : { retry: false },
          ...(query.onRetry === undefined ? {} : { onRetry: (notice: RetryNotice) => query.onRetry?.(retryNotice(notice)) }),
        });
      } catch (error) {
        throw error instanceof Retryable ? error.error : error;
      }
    },
  };
}

/** Settles with `promise`, or rejects as soon as `signal` aborts. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

function retryNotice(notice: RetryNotice): BrokerRetry {
  const error = notice.error instanceof Retryable ? notice.error.error : notice.error;
  return { code: codeOf(error), message: error instanceof Error ? error.message : String(error), attempts: notice.attempts, delayMs: notice.delayMs };
}
