import { readFile } from "node:fs/promises";
import { createLocalJWKSet, createRemoteJWKSet, customFetch, decodeJwt, jwtVerify, type JWTVerifyGetKey, type FetchImplementation } from "jose";
import { Agent, fetch as undiciFetch } from "undici";
import { ApiError } from "./api-error.ts";
import type { OidcProvider } from "./world.ts";

/** What STS learned from a verified OIDC token (and echoes in `OIDCTokenInfo`). */
export interface OidcTokenInfo {
  subject: string;
  issuer: string;
  audiences: string[];
  /** Epoch seconds. */
  issuedAt: number | undefined;
  expiresAt: number | undefined;
}

const allowedAlgorithms = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"];

/** Every `AuthenticationFail.*` is HTTP 401, as STS answers authentication failures. */
const tokenError = (code: string, message: string) => new ApiError(401, `AuthenticationFail.OIDCToken.${code}`, message);

/** jose's codes for a token no published key verifies: none matches its `kid`/`alg`, or the one that does fails. */
const signatureCodes = new Set(["ERR_JWKS_NO_MATCHING_KEY", "ERR_JWS_SIGNATURE_VERIFICATION_FAILED", "ERR_JWKS_MULTIPLE_MATCHING_KEYS"]);

type Fetch = (url: string, init?: { headers?: Headers; signal?: AbortSignal; redirect?: "manual" | "follow"; method?: string }) => Promise<Response>;

async function fetchFor(provider: OidcProvider): Promise<Fetch> {
  if (provider.caFile === undefined) return fetch;
  const ca = await readFile(provider.caFile, "utf8");
  const dispatcher = new Agent({ connect: { ca } });
  return (url, init) => undiciFetch(url, { ...init, dispatcher }) as unknown as Promise<Response>;
}

async function discoverJwksUri(provider: OidcProvider, fetchImpl: Fetch): Promise<string> {
  const url = `${provider.issuer.replace(/\/+$/, "")}/.well-known/openid-configuration`;
  const response = await fetchImpl(url, { signal: AbortSignal.timeout(5000) });
  if (!response.ok) throw new Error(`discovery at ${url} answered ${response.status}`);
  const document = (await response.json()) as { issuer?: unknown; jwks_uri?: unknown };
  if (typeof document.jwks_uri !== "string") throw new Error(`discovery at ${url} has no jwks_uri`);
  return document.jwks_uri;
}

export interface OidcVerifier {
  /** Verifies a token for a registered provider: issuer, audience (the provider's client ids), signature, lifetime. */
  verify(provider: OidcProvider, token: string): Promise<OidcTokenInfo>;
}

/** Key sets are built once per provider and cached, as STS caches a provider's keys. */
export function createOidcVerifier(options: { now: () => number }): OidcVerifier {
  const keySets = new Map<OidcProvider, Promise<JWTVerifyGetKey>>();

  const keySetFor = (provider: OidcProvider): Promise<JWTVerifyGetKey> => {
    let keySet = keySets.get(provider);
    if (keySet === undefined) {
      keySet = (async () => {
        if (provider.jwks !== undefined) return createLocalJWKSet(provider.jwks as Parameters<typeof createLocalJWKSet>[0]);
        const fetchImpl = await fetchFor(provider);
        const uri = provider.jwksUri ?? (await discoverJwksUri(provider, fetchImpl));
        return createRemoteJWKSet(new URL(uri), { [customFetch]: fetchImpl as unknown as FetchImplementation, cooldownDuration: 0 });
      })();
      // A failed discovery is retried on the next token rather than cached.
      keySet.catch(() => keySets.delete(provider));
      keySets.set(provider, keySet);
    }
    return keySet;
  };

  return {
    async verify(provider, token) {
      let claims: ReturnType<typeof decodeJwt>;
      try {
        claims = decodeJwt(token);
      } catch {
        throw tokenError("Invalid", "The OIDC token is not a well-formed JWT.");
      }
      if (claims.iss !== provider.issuer)
        throw tokenError("IssuerNotMatch", `The issuer of the OIDC token does not match the OIDC provider: ${String(claims.iss)}.`);
      const audiences = claims.aud === undefined ? [] : Array.isArray(claims.aud) ? claims.aud : [claims.aud];
      if (!audiences.some((audience) => provider.clientIds.includes(audience))) throw tokenError("AudienceNotMatch", "Invalid audience.");
      if (typeof claims.sub !== "string" || claims.sub === "") throw tokenError("Invalid", "The OIDC token has no subject.");
      let getKey: JWTVerifyGetKey;
      try {
        getKey = await keySetFor(provider);
      } catch (error) {
        throw tokenError("IssuerConfigurationBroken", `The keys of issuer ${provider.issuer} cannot be fetched: ${(error as Error).message}.`);
      }
      try {
        await jwtVerify(token, getKey, { algorithms: allowedAlgorithms, currentDate: new Date(options.now()) });
      } catch (error) {
        const code = (error as { code?: string }).code;
        if (code === "ERR_JWT_EXPIRED") throw tokenError("Expired", "This JsonWebToken is expired.");
        if (code !== undefined && signatureCodes.has(code))
          throw tokenError("InvalidSignature", `The signature of the OIDC token cannot be verified with the keys of issuer ${provider.issuer}.`);
        if (code === "ERR_JWKS_TIMEOUT" || code === "ERR_JWKS_INVALID" || code === "ERR_JOSE_GENERIC" || code === undefined) {
          throw tokenError("IssuerConfigurationBroken", `The keys of issuer ${provider.issuer} cannot be fetched.`);
        }
        throw tokenError("Invalid", `The OIDC token cannot be verified: ${(error as Error).message}.`);
      }
      // IssuanceLimitTime: RAM refuses a token issued longer ago than the provider allows (1-168 h).
      // The real error code is not documented; see docs/emulator.md.
      const limitSeconds = provider.issuanceLimitTime * 3600;
      if (typeof claims.iat === "number" && options.now() / 1000 - claims.iat > limitSeconds) {
        throw tokenError(
          "Expired",
          `The OIDC token was issued more than ${provider.issuanceLimitTime} hours ago, beyond the OIDC provider's IssuanceLimitTime.`,
        );
      }
      return { subject: claims.sub, issuer: provider.issuer, audiences, issuedAt: claims.iat, expiresAt: claims.exp };
    },
  };
}
