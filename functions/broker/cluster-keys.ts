/**
 * Where a cluster's token-signing keys come from: inline `jwks`, a `jwksUri`, or OIDC discovery at
 * the configured issuer. Only ever the configured cluster's own locations: never a URL a token names.
 */
import { createLocalJWKSet, createRemoteJWKSet, customFetch, type FetchImplementation, type JWTVerifyGetKey } from "jose";
import { AcrCredentialError, oneLine } from "../../shared/errors.ts";
import type { Cluster } from "./config.ts";

const maxDocumentBytes = 1024 * 1024;

export interface KeySourceOptions {
  /** PEM bundle trusted for this cluster's discovery and JWKS requests. */
  ca?: string;
  /** How long fetched keys are trusted before a re-fetch (ms). */
  cacheMaxAgeMs?: number;
  /** An unknown `kid` triggers a re-fetch at most once per this interval (ms). */
  cooldownMs?: number;
  timeoutMs?: number;
  /** How long a failed discovery is remembered before it is tried again (ms). */
  discoveryRetryMs?: number;
}

/** Thrown when a cluster's keys cannot be fetched: the broker's problem, not the caller's token. */
function keysUnavailable(cluster: Cluster, what: string): AcrCredentialError {
  return new AcrCredentialError(
    "UpstreamUnavailable",
    `cannot fetch the signing keys of cluster '${cluster.name}': ${what}; check that its issuer is reachable from the broker`,
  );
}

/** GET with an optional private CA, never following redirects, size-capped; returns a fetch Response. */
export function createKeyFetch(ca: string | undefined): FetchImplementation {
  if (ca === undefined) {
    return async (url, options) => {
      const response = await fetch(url, options);
      const length = Number(response.headers.get("content-length") ?? 0);
      if (length > maxDocumentBytes) throw new Error(`response of ${length} bytes is larger than ${maxDocumentBytes}`);
      return response;
    };
  }
  return async (url, options) => {
    // node:https (and TLS) loads when a cluster with a private CA is first asked for keys, not at cold start.
    const { request: httpsRequest } = await import("node:https");
    return new Promise<Response>((resolve, reject) => {
      const headers: Record<string, string> = {};
      options.headers.forEach((value, name) => {
        headers[name] = value;
      });
      const req = httpsRequest(url, { method: "GET", headers, ca, signal: options.signal }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxDocumentBytes) {
            req.destroy(new Error(`response is larger than ${maxDocumentBytes} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on("end", () =>
          resolve(
            new Response(Buffer.concat(chunks), { status: res.statusCode ?? 500, headers: { "content-type": String(res.headers["content-type"] ?? "") } }),
          ),
        );
        res.on("error", reject);
      });
      req.on("error", reject);
      req.end();
    });
  };
}

/** Wraps a fetch so every failure to obtain a 200 becomes a clear, typed "keys unavailable" error. */
function guarded(cluster: Cluster, inner: FetchImplementation): FetchImplementation {
  return async (url, options) => {
    let response: Response;
    try {
      response = await inner(url, options);
    } catch (error) {
      throw keysUnavailable(cluster, `${url}: ${oneLine(error)}`);
    }
    if (response.status !== 200) throw keysUnavailable(cluster, `${url} answered HTTP ${response.status}`);
    return response;
  };
}

async function discoverJwksUri(cluster: Cluster, fetchImpl: FetchImplementation, timeoutMs: number): Promise<URL> {
  const url = `${cluster.issuer.replace(/\/+$/, "")}/.well-known/openid-configuration`;
  const response = await fetchImpl(url, {
    method: "GET",
    headers: new Headers({ accept: "application/json" }),
    redirect: "manual",
    signal: AbortSignal.timeout(timeoutMs),
  });
  let document: unknown;
  try {
    document = await response.json();
  } catch (error) {
    throw keysUnavailable(cluster, `${url} is not JSON: ${oneLine(error)}`);
  }
  const jwksUri = (document as { jwks_uri?: unknown } | null)?.jwks_uri;
  if (typeof jwksUri !== "string") throw keysUnavailable(cluster, `${url} has no jwks_uri`);
  let parsed: URL;
  try {
    parsed = new URL(jwksUri);
  } catch {
    throw keysUnavailable(cluster, `${url} has an invalid jwks_uri`);
  }
  // The discovery document is trusted (it comes from the configured issuer), but never downgraded to http.
  if (parsed.protocol !== "https:" && new URL(cluster.issuer).protocol === "https:") throw keysUnavailable(cluster, `${url} names a non-https jwks_uri`);
  return parsed;
}

/** The key resolver `jwtVerify` uses for one cluster; keys are cached, unknown `kid`s re-fetch at most once per cooldown. */
export function createClusterKeys(cluster: Cluster, options: KeySourceOptions = {}): JWTVerifyGetKey {
  if (cluster.jwks) return createLocalJWKSet(cluster.jwks as Parameters<typeof createLocalJWKSet>[0]);

  const timeoutMs = options.timeoutMs ?? 5000;
  const fetchImpl = guarded(cluster, createKeyFetch(options.ca));
  const remote = (url: URL) =>
    createRemoteJWKSet(url, {
      timeoutDuration: timeoutMs,
      cooldownDuration: options.cooldownMs ?? 30_000,
      cacheMaxAge: options.cacheMaxAgeMs ?? 600_000,
      [customFetch]: fetchImpl,
    });

  if (cluster.jwksUri) return remote(new URL(cluster.jwksUri));

  // Discovery happens on first use, once; a failure is remembered briefly so a burst of requests
  // against an unreachable issuer does not become a burst of discovery requests.
  const retryMs = options.discoveryRetryMs ?? 10_000;
  let keys: ReturnType<typeof remote> | undefined;
  let pending: Promise<ReturnType<typeof remote>> | undefined;
  let failure: { error: unknown; at: number } | undefined;
  return async (header, token) => {
    if (!keys) {
      if (failure && Date.now() - failure.at < retryMs) throw failure.error;
      pending ??= discoverJwksUri(cluster, fetchImpl, timeoutMs).then(remote);
      try {
        keys = await pending;
        failure = undefined;
      } catch (error) {
        failure = { error, at: Date.now() };
        throw error;
      } finally {
        pending = undefined;
      }
    }
    return keys(header, token);
  };
}
