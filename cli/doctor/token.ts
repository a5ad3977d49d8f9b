/**
 * The projected token as the doctor sees it: its claims read without verifying the signature (the
 * broker verifies it), compared with the cluster's issuer, and what a broker refusal says about it.
 */
import { decodeJwt } from "jose";
import { fail, ok, type Check } from "./checklist.ts";

const title = "token issuer";

export interface TokenClaims {
  iss?: string;
  aud: string[];
  sub?: string;
  /** Seconds since the epoch. */
  exp?: number;
}

/** The claims, or `undefined` when the text is not a JWT. */
export function readClaims(raw: string): TokenClaims | undefined {
  try {
    const payload = decodeJwt(raw.trim());
    const aud = payload.aud === undefined ? [] : Array.isArray(payload.aud) ? payload.aud : [payload.aud];
    return {
      aud,
      ...(typeof payload.iss === "string" ? { iss: payload.iss } : {}),
      ...(typeof payload.sub === "string" ? { sub: payload.sub } : {}),
      ...(typeof payload.exp === "number" ? { exp: payload.exp } : {}),
    };
  } catch {
    return undefined;
  }
}

/** Issuers compare without a trailing slash, as the apiserver's discovery document and the broker's config may differ there. */
export const sameIssuer = (a: string, b: string): boolean => a.replace(/\/+$/, "") === b.replace(/\/+$/, "");

export type TokenProblem = "audience" | "issuer" | "expired" | "subject" | "signature" | undefined;

/** Which part of the token a broker refusal (its code and message) blames, if any. */
export function refusalBlames(code: string, message: string): TokenProblem {
  if (code === "InvalidToken") {
    if (/\baudience\b|\(aud\)/.test(message)) return "audience";
    if (/\bissuer\b|\(iss\)/.test(message)) return "issuer";
    if (/expired/.test(message)) return "expired";
    if (/signature|signing key|kid/.test(message)) return "signature";
  }
  if (code === "Forbidden" && /subject '/.test(message)) return "subject";
  return undefined;
}

/** The token check that needs no broker: a JWT, not expired, with an issuer, and that issuer this cluster's (when its discovery document says). */
export function assessIssuer(claims: TokenClaims | undefined, clusterIssuer: string | undefined, source: string, nowMs: number): Check {
  if (claims === undefined) return fail("issuer", title, `the token from ${source} is not a JWT`, "mount the projected ServiceAccount token from job/deploy");
  const now = nowMs / 1000;
  if (claims.exp !== undefined && claims.exp <= now) {
    return fail(
      "issuer",
      title,
      `the token from ${source} expired at ${new Date(claims.exp * 1000).toISOString()}`,
      "use the projected token the kubelet keeps fresh, not a copy",
    );
  }
  if (claims.iss === undefined) return fail("issuer", title, `the token from ${source} has no issuer (iss)`, "use a projected ServiceAccount token");
  if (clusterIssuer !== undefined && !sameIssuer(claims.iss, clusterIssuer)) {
    return fail(
      "issuer",
      title,
      `the token's issuer ${claims.iss} is not this cluster's (${clusterIssuer})`,
      "use this cluster's projected token; the broker's cluster entry must name this cluster's issuer",
    );
  }
  const minutes = claims.exp === undefined ? "" : `, expires in ${Math.max(0, Math.round((claims.exp - now) / 60))} min`;
  return ok("issuer", title, `${claims.iss}${clusterIssuer === undefined ? "" : " (this cluster's)"}, sub ${claims.sub ?? "(none)"}${minutes}`);
}
