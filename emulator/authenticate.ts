import { openApiErrors, fcErrors } from "./api-error.ts";
import type { Clock } from "./clock.ts";
import type { Directory } from "./ram/directory.ts";
import type { Principal } from "./ram/principal.ts";
import type { SessionStore } from "./ram/sessions.ts";
import { checkAcs3, parseAcs3Authorization, type ReceivedRequest } from "./signature/acs3.ts";
import { fcContentMd5, fcSignatureMatches, parseFcAuthorization, type FcRequest } from "./signature/fc.ts";

/** The documented window for a request's signing time, in both directions. */
export const signatureWindowMs = 15 * 60_000;

export interface Authenticator {
  /** Verifies an ACS3-HMAC-SHA256 request; throws an ApiError with the platform's code. */
  acs3(request: ReceivedRequest): Principal;
  /** Verifies an `@alicloud/fc2` request. */
  fc(request: FcRequest & { body: Buffer }): Principal;
}

export interface AuthenticatorDeps {
  directory: Directory;
  sessions: SessionStore;
  /** Governs session expiry. */
  clock: Clock;
  /** Governs signature freshness: the SDKs stamp requests with real time. */
  wallClock?: () => number;
}

type KeyLookup = { kind: "user"; secret: string; principal: Principal } | { kind: "session"; secret: string; securityToken: string; principal: Principal };

function lookupKey(deps: AuthenticatorDeps, accessKeyId: string): KeyLookup | undefined {
  const key = deps.directory.accessKey(accessKeyId);
  if (key !== undefined) {
    return {
      kind: "user",
      secret: key.secret,
      principal: { kind: "user", account: key.account.id, userName: key.user.name, policies: deps.directory.policiesOf(key.account, key.user) },
    };
  }
  const session = deps.sessions.get(accessKeyId);
  return session === undefined
    ? undefined
    : { kind: "session", secret: session.accessKeySecret, securityToken: session.securityToken, principal: session.principal };
}

const acsDatePattern = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

export function createAuthenticator(deps: AuthenticatorDeps): Authenticator {
  const wallClock = deps.wallClock ?? Date.now;
  // A nonce is remembered while its request's date is still acceptable: later, the date refuses it.
  const nonces = new Map<string, number>();
  let prunedAt = 0;
  const rememberNonce = (nonce: string, signedAt: number) => {
    const now = wallClock();
    if (now - prunedAt > 1000) {
      prunedAt = now;
      for (const [seen, until] of nonces) if (until < now) nonces.delete(seen);
    }
    nonces.set(nonce, signedAt + signatureWindowMs);
  };

  /** Token checks common to both signatures, after the signature itself has been verified. */
  const checkSessionToken = (found: KeyLookup, token: string | undefined, errors: { missing: () => Error; mismatch: () => Error; expired: () => Error }) => {
    if (found.kind === "user") {
      if (token !== undefined && token !== "") throw errors.mismatch();
      return;
    }
    if (token === undefined || token === "") throw errors.missing();
    if (token !== found.securityToken) throw errors.mismatch();
    if (found.principal.kind === "assumed-role" && deps.clock.now() >= found.principal.expiresAt) throw errors.expired();
  };

  return {
    acs3(request) {
      const header = request.headers["authorization"]?.[0];
      if (header === undefined) throw openApiErrors.incompleteSignature("the Authorization header is missing");
      const authorization = parseAcs3Authorization(header);
      if (authorization === undefined)
        throw openApiErrors.incompleteSignature("the Authorization header is not 'ACS3-HMAC-SHA256 Credential=...,SignedHeaders=...,Signature=...'");
      const date = request.headers["x-acs-date"]?.[0];
      if (date === undefined) throw openApiErrors.incompleteSignature("the x-acs-date header is missing");
      if (!acsDatePattern.test(date) || Number.isNaN(Date.parse(date))) throw openApiErrors.timestampFormat(date);
      const signedAt = Date.parse(date);
      if (Math.abs(wallClock() - signedAt) > signatureWindowMs) throw openApiErrors.timestampExpired(date);
      const nonce = request.headers["x-acs-signature-nonce"]?.[0];
      if (nonce === undefined || nonce === "") throw openApiErrors.incompleteSignature("the x-acs-signature-nonce header is missing");
      const found = lookupKey(deps, authorization.accessKeyId);
      if (found === undefined) throw openApiErrors.accessKeyNotFound();
      const failure = checkAcs3(request, authorization, found.secret);
      if (failure !== undefined)
        throw failure.reason === "unsignedHeader" ? openApiErrors.incompleteSignature(failure.detail) : openApiErrors.signatureDoesNotMatch(failure.detail);
      if (nonces.has(nonce)) throw openApiErrors.nonceUsed();
      rememberNonce(nonce, signedAt);
      checkSessionToken(found, request.headers["x-acs-security-token"]?.[0], {
        missing: openApiErrors.missingSecurityToken,
        mismatch: openApiErrors.securityTokenMismatch,
        expired: openApiErrors.securityTokenExpired,
      });
      return found.principal;
    },

    fc(request) {
      const header = request.headers["authorization"];
      if (header === undefined) throw fcErrors.missingHeader("Authorization");
      const authorization = parseFcAuthorization(header);
      if (authorization === undefined) throw fcErrors.invalidArgument("the Authorization header is not 'FC <AccessKeyID>:<Signature>'");
      const date = request.headers["date"];
      if (date === undefined) throw fcErrors.missingHeader("Date");
      const signedAt = Date.parse(date);
      if (Number.isNaN(signedAt)) throw fcErrors.invalidArgument(`the Date header '${date}' is not an RFC 1123 date`);
      if (Math.abs(wallClock() - signedAt) > signatureWindowMs) throw fcErrors.timeSkewed(date);
      const found = lookupKey(deps, authorization.accessKeyId);
      if (found === undefined) throw fcErrors.invalidAccessKeyId(authorization.accessKeyId);
      if (!fcSignatureMatches(request, found.secret, authorization.signature))
        throw fcErrors.signatureNotMatch("recompute the string to sign: method, content-md5, content-type, date, x-fc-* headers, path");
      const md5 = request.headers["content-md5"];
      if (md5 !== undefined && md5 !== fcContentMd5(request.body)) throw fcErrors.invalidArgument("Content-MD5 does not match the request body");
      checkSessionToken(found, request.headers["x-fc-security-token"], {
        missing: () => fcErrors.invalidSecurityToken("an STS access key needs x-fc-security-token"),
        mismatch: () => fcErrors.invalidSecurityToken("the security token does not belong to this access key"),
        expired: () => fcErrors.invalidSecurityToken("the security token you provided has expired"),
      });
      return found.principal;
    },
  };
}
