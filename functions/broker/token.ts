/**
 * ServiceAccount token checks (docs/broker.md, "Rules"): the cluster is found by `iss` before any key is
 * fetched, the signature is checked against that cluster's keys only, and only asymmetric
 * algorithms are accepted.
 */
import { createHash } from "node:crypto";
import { LRUCache } from "lru-cache";
import { decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from "jose";
import { isAcrCredentialError, refusal, type AcrCredentialError, type RefusalReason } from "../../shared/errors.ts";
import type { Clock } from "./clock.ts";
import type { UpstreamContext } from "./cluster-groups.ts";
import { createClusterIndex, type ClusterIndex } from "./cluster-index.ts";
import type { BrokerConfig, Cluster } from "./config.ts";

/** Asymmetric JWS algorithms; `none` and every HMAC are refused before any key is looked up. */
export const allowedAlgorithms = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"];

/** Projected ServiceAccount tokens are around 1 KiB; anything near this is not one. */
export const maxTokenBytes = 16 * 1024;

export interface VerifiedToken {
  cluster: Cluster;
  subject: string;
  issuer: string;
  claims: JWTPayload;
}

export interface TokenVerifierDeps {
  config: Pick<BrokerConfig, "audience" | "clockSkewSeconds" | "maxTokenLifetimeSeconds" | "clusters">;
  keysFor: (cluster: Cluster) => JWTVerifyGetKey;
  /** Where clusters are found by issuer; by default an index of `config.clusters` with `keysFor`. */
  index?: ClusterIndex;
  clock: Clock;
}

/** Header and claims of a compact JWS (its size already checked), read without trusting them, to pick the cluster. */
function peek(raw: string): { alg: unknown; iss: unknown } {
  if (raw.split(".").length !== 3) throw refusal("token-not-compact-jws", "the token is not a compact JWS (header.payload.signature)");
  try {
    return { alg: decodeProtectedHeader(raw).alg, iss: decodeJwt(raw).iss };
  } catch {
    throw refusal("token-undecodable", "the token cannot be decoded as a JWT");
  }
}

/** What jose found wrong, as a refusal: the message is the one callers have always been answered. */
function joseRefusal(error: unknown): AcrCredentialError {
  if (error instanceof joseErrors.JWTExpired) return refusal("token-expired", "the token has expired");
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    // jose's reason tells a failed check ("check_failed") from a claim of the wrong type ("invalid").
    if (error.claim === "nbf")
      return refusal(error.reason === "check_failed" ? "not-yet-valid" : "claim-invalid", "the token is not valid yet (nbf is in the future)");
    if (error.claim === "aud") return refusal("audience-mismatch", "the token's audience (aud) is not this broker's");
    if (error.claim === "iss") return refusal("issuer-mismatch", "the token's issuer (iss) does not match its cluster");
    return refusal("claim-invalid", `the token's '${error.claim}' claim is invalid: ${error.reason}`);
  }
  if (error instanceof joseErrors.JWKSNoMatchingKey) return refusal("key-not-found", "no signing key of the cluster matches the token's kid");
  if (error instanceof joseErrors.JWSSignatureVerificationFailed)
    return refusal("signature-invalid", "the token's signature does not verify with the cluster's keys");
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return refusal("algorithm-not-allowed", "the token's algorithm is not allowed");
  if (error instanceof joseErrors.JOSEError) return refusal(joseReason(error), `the token is invalid (${error.code})`);
  // jose throws a plain TypeError for a key it will not use (an RSA key under 2048 bits).
  if (error instanceof TypeError) return refusal("key-unusable", "the token is invalid");
  return refusal("token-invalid", "the token is invalid");
}

function joseReason(error: InstanceType<typeof joseErrors.JOSEError>): RefusalReason {
  if (error instanceof joseErrors.JWSInvalid) return "jws-invalid";
  if (error instanceof joseErrors.JWTInvalid) return "payload-invalid";
  // A `crit` extension the broker does not understand.
  if (error instanceof joseErrors.JOSENotSupported) return "jws-not-supported";
  if (error instanceof joseErrors.JWKSMultipleMatchingKeys) return "key-ambiguous";
  return "token-invalid";
}

export interface VerifyOptions {
  audience?: string;
  /** Lets a cluster group confirm a cluster it has not seen yet through the ACK API. */
  upstream?: UpstreamContext;
}

export type TokenVerifier = (raw: string, options?: VerifyOptions) => Promise<VerifiedToken>;

/**
 * How long a successful verification is remembered: a token presented again within this time skips
 * the signature check (its time claims are still checked on every use). Short, so a key removed
 * from a cluster's JWKS stops being accepted soon.
 */
export const verifiedTokenTtlMs = 60_000;

interface Remembered {
  token: VerifiedToken;
  until: number;
}

/** Builds the verifier once (cold start); each call is one signature check plus claim checks. */
export function createTokenVerifier(deps: TokenVerifierDeps): TokenVerifier {
  const { config, clock } = deps;
  const index = deps.index ?? createClusterIndex({ clusters: config.clusters, keysFor: deps.keysFor });
  // Keyed by a digest, so the cache does not keep bearer tokens in memory.
  const remembered = new LRUCache<string, Remembered>({ max: 10_000 });
  // One signature check per token at a time: when a remembered token is forgotten under load, the
  // requests carrying it share one verification instead of each doing its own.
  const verifying = new Map<string, Promise<VerifiedToken>>();
  const skewMs = config.clockSkewSeconds * 1000;

  const verify: TokenVerifier = async (raw, options = {}) => {
    if (raw.length > maxTokenBytes) throw refusal("token-too-large", `the token is larger than ${maxTokenBytes} bytes`);
    const key = `${options.audience ?? ""} ${createHash("sha256").update(raw).digest("base64url")}`;
    const now = clock.now();
    const hit = remembered.get(key);
    if (hit && now < hit.until) {
      const { nbf } = hit.token.claims;
      if (nbf === undefined || nbf * 1000 - skewMs <= now) return hit.token;
    }
    let flight = verifying.get(key);
    if (!flight) {
      flight = verifyFully(raw, options)
        .then((token) => {
          remembered.set(key, { token, until: Math.min(now + verifiedTokenTtlMs, token.claims.exp! * 1000 + skewMs) });
          return token;
        })
        .finally(() => verifying.delete(key));
      verifying.set(key, flight);
    }
    return flight;
  };

  const verifyFully: TokenVerifier = async (raw, options = {}) => {
    const { alg, iss } = peek(raw);
    if (typeof alg !== "string" || !allowedAlgorithms.includes(alg))
      throw refusal("algorithm-not-allowed", `the token's algorithm '${String(alg)}' is not allowed; use one of ${allowedAlgorithms.join(", ")}`);
    const found = typeof iss === "string" ? await index.lookup(iss, options.upstream) : undefined;
    if (!found) throw refusal("issuer-unknown", "the token's issuer (iss) is not a configured cluster");
    const { cluster } = found;

    const now = clock.now();
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(raw, found.keys, {
        issuer: cluster.issuer,
        audience: options.audience ?? config.audience,
        algorithms: allowedAlgorithms,
        clockTolerance: config.clockSkewSeconds,
        currentDate: new Date(now),
        requiredClaims: ["exp", "iat", "sub"],
      }));
    } catch (error) {
      if (isAcrCredentialError(error)) throw error;
      throw joseRefusal(error);
    }

    const { exp, iat, sub } = payload as Required<Pick<JWTPayload, "exp" | "iat" | "sub">>;
    // jose checks that sub is present, not its type; an array would reach the subject check and the log as if it were a name.
    if (typeof sub !== "string") throw refusal("subject-not-string", "the token's 'sub' claim must be a string");
    if (iat > now / 1000 + config.clockSkewSeconds) throw refusal("issued-in-future", "the token was issued in the future (iat)");
    if (exp - iat > config.maxTokenLifetimeSeconds) {
      throw refusal(
        "lifetime-too-long",
        `the token lives ${exp - iat} s, longer than the allowed ${config.maxTokenLifetimeSeconds} s; use a projected token with a shorter expirationSeconds`,
      );
    }
    return { cluster, subject: sub, issuer: cluster.issuer, claims: payload };
  };
  return verify;
}

/** Subject check: a valid token of the cluster that is not one of its allowed ServiceAccounts. */
export function assertSubjectAllowed(token: VerifiedToken): void {
  if (!token.cluster.subjects.includes(token.subject)) {
    throw refusal(
      "subject-not-allowed",
      `subject '${token.subject}' may not request credentials for cluster '${token.cluster.name}'; add it to the cluster's subjects`,
    );
  }
}

/** The audience of ACK RRSA tokens (they are presented to STS, not to the broker). */
export const rrsaAudience = "sts.aliyuncs.com";

/** The second (RRSA) token must be a valid token of the same cluster for the same ServiceAccount. */
export async function verifyRrsaToken(verify: TokenVerifier, raw: string, bearer: VerifiedToken): Promise<void> {
  let second: VerifiedToken;
  try {
    second = await verify(raw, { audience: rrsaAudience });
  } catch (error) {
    if (isAcrCredentialError(error) && error.code === "InvalidToken") {
      throw refusal("rrsa-token-invalid", `oidcToken is not usable: ${error.message}; send the ServiceAccount's RRSA token (audience ${rrsaAudience})`);
    }
    throw error;
  }
  if (second.issuer !== bearer.issuer || second.subject !== bearer.subject) {
    throw refusal(
      "rrsa-token-mismatch",
      "oidcToken belongs to another issuer or ServiceAccount than the Bearer token; both must come from the same ServiceAccount",
    );
  }
}
