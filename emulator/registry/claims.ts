import type { ResourceAccess } from "./scope.ts";

/** The claim set docker-registry's `token` access controller reads (distribution `token.ClaimSet`). */
export interface RegistryTokenClaims {
  iss: string;
  sub: string;
  /** A string, not a list: distribution 2.8 declares `aud` as a plain string and rejects an array. */
  aud: string;
  exp: number;
  nbf: number;
  iat: number;
  jti: string;
  access: ResourceAccess[];
}

/** Registry tokens are short-lived; clients fetch a new one per operation anyway. */
export const maxTokenLifetimeSeconds = 300;

/**
 * How long a token may live: five minutes, but never past the credential it was issued for.
 * `remainingMs` is measured on the realm's clock (which tests may move), while the token's `exp` is
 * checked by the registry against the wall clock, so only the duration carries over.
 */
export function tokenLifetimeSeconds(remainingMs: number): number {
  return Math.max(1, Math.min(maxTokenLifetimeSeconds, Math.floor(remainingMs / 1000)));
}

export function registryTokenClaims(input: {
  issuer: string;
  service: string;
  subject: string;
  access: ResourceAccess[];
  /** Epoch seconds of the wall clock. */
  issuedAt: number;
  lifetimeSeconds: number;
  jwtId: string;
}): RegistryTokenClaims {
  return {
    iss: input.issuer,
    sub: input.subject,
    aud: input.service,
    exp: input.issuedAt + input.lifetimeSeconds,
    nbf: input.issuedAt,
    iat: input.issuedAt,
    jti: input.jwtId,
    access: input.access,
  };
}
