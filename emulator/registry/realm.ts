import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { URL } from "node:url";
import { accessOutcome, grantResourceAccess, type RegistryGrant } from "./access.ts";
import { registryTokenClaims, tokenLifetimeSeconds } from "./claims.ts";
import { formatScope, parseScopes, type ResourceAccess } from "./scope.ts";
import type { RealmSigner } from "./signer.ts";

/** One line of the realm's decision log: who asked for what, and what they got. Never a secret. */
export interface RealmDecision {
  /** The grant's subject, or "" when the caller was not authenticated. */
  subject: string;
  /** The requested scope this entry is about, "" for a request without one. */
  scope: string;
  /** `granted:ACTIONS`, `denied`, `authenticated`, or why the request was refused. */
  outcome: string;
  /** The HTTP status the realm answered with. */
  status: number;
}

export interface TokenRealmOptions {
  /** The registry's `auth.token.service`; becomes the token's audience. */
  service: string;
  /** The registry's `auth.token.issuer`. */
  issuer: string;
  signer: RealmSigner;
  /** The emulator's clock, in epoch ms; decides whether a credential has expired. */
  now(): number;
  /** The grant a username/password pair stands for; compare passwords in constant time. */
  lookup(username: string, password: string): RegistryGrant | undefined;
  onDecision?(entry: RealmDecision): void;
}

/** A token request as the realm sees it, without the HTTP plumbing. */
export interface TokenRequest {
  method: string;
  service: string | undefined;
  scopes: readonly string[];
  authorization: string | undefined;
}

/** docker distribution's error body: `{"errors":[{code,message,detail}]}`. */
interface RegistryErrorBody {
  errors: { code: string; message: string; detail: string }[];
}

export type TokenDecision =
  | {
      granted: false;
      status: 400 | 401 | 405;
      headers: Record<string, string>;
      body: RegistryErrorBody;
      log: RealmDecision[];
    }
  | {
      granted: true;
      subject: string;
      access: ResourceAccess[];
      lifetimeSeconds: number;
      log: RealmDecision[];
    };

function refusal(
  status: 400 | 401 | 405,
  code: string,
  message: string,
  detail: string,
  headers: Record<string, string>,
  log: Omit<RealmDecision, "status">,
): TokenDecision {
  return { granted: false, status, headers, body: { errors: [{ code, message, detail }] }, log: [{ ...log, status }] };
}

/** `Basic base64(user:password)`; the password may itself contain colons (ACR tokens do). */
export function parseBasicCredentials(authorization: string | undefined): { username: string; password: string } | undefined {
  const match = /^Basic[ ]+([A-Za-z0-9+/]+={0,2})[ ]*$/i.exec(authorization ?? "");
  if (match?.[1] === undefined) return undefined;
  const decoded = Buffer.from(match[1], "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon <= 0) return undefined;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/**
 * The realm's whole policy: validate the request, authenticate the Basic credentials, refuse
 * expired grants, and grant each requested resource only the actions the grant allows.
 */
export function decideTokenRequest(request: TokenRequest, policy: { service: string; now: number; lookup: TokenRealmOptions["lookup"] }): TokenDecision {
  const requested = parseScopes(request.scopes);
  const scope = requested.map(formatScope).join(" ");
  if (request.method !== "GET") {
    return refusal(
      405,
      "UNSUPPORTED",
      "the operation is unsupported",
      "the token endpoint answers GET only",
      { Allow: "GET" },
      { subject: "", scope, outcome: "method-not-allowed" },
    );
  }
  if (request.service === undefined || request.service === "") {
    return refusal(400, "MISSING_REQUIRED_FIELD", "missing required field", "missing service value", {}, { subject: "", scope, outcome: "missing-service" });
  }
  if (request.service !== policy.service) {
    return refusal(
      400,
      "UNSUPPORTED_VALUE",
      "unsupported value",
      `this realm issues tokens for service "${policy.service}" only`,
      {},
      { subject: "", scope, outcome: "unknown-service" },
    );
  }
  const challenge = { "WWW-Authenticate": `Basic realm="${policy.service.replace(/["\\]/g, "")}"` };
  const credentials = parseBasicCredentials(request.authorization);
  if (credentials === undefined) {
    const detail =
      request.authorization === undefined
        ? "send the registry username and password with HTTP Basic authentication"
        : "the Authorization header is not valid HTTP Basic credentials";
    return refusal(401, "UNAUTHORIZED", "authentication required", detail, challenge, { subject: "", scope, outcome: "missing-credentials" });
  }
  const grant = policy.lookup(credentials.username, credentials.password);
  if (grant === undefined) {
    return refusal(401, "UNAUTHORIZED", "authentication required", "invalid username or password", challenge, {
      subject: "",
      scope,
      outcome: "invalid-credentials",
    });
  }
  // Written so that a grant with no valid expiry (NaN) counts as expired.
  if (!(policy.now < grant.expiresAt)) {
    return refusal(401, "UNAUTHORIZED", "authentication required", "the registry password has expired; request a new one", challenge, {
      subject: grant.subject,
      scope,
      outcome: "expired",
    });
  }
  const decided = requested.map((asked) => ({ asked, granted: grantResourceAccess(asked, grant) }));
  const log =
    decided.length === 0
      ? [{ subject: grant.subject, scope: "", outcome: "authenticated", status: 200 }]
      : decided.map(({ asked, granted }) => ({ subject: grant.subject, scope: formatScope(asked), outcome: accessOutcome(granted), status: 200 }));
  return {
    granted: true,
    subject: grant.subject,
    access: decided.map(({ granted }) => granted),
    lifetimeSeconds: tokenLifetimeSeconds(grant.expiresAt - policy.now),
    log,
  };
}

/**
 * The docker token-auth endpoint (`auth.token.realm` of docker-registry): GET
 * `?service=S&scope=repository:NAME:ACTIONS` with HTTP Basic credentials, answering
 * `{"token","access_token","expires_in","issued_at"}`.
 */
export function createTokenRealm(options: TokenRealmOptions): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const decision = decide(req, options);
    if (decision === undefined) {
      // A failing lookup must not turn into a token; its error may name the credential, so it is not echoed.
      options.onDecision?.({ subject: "", scope: "", outcome: "lookup-failed", status: 500 });
      send(res, 500, {}, { errors: [{ code: "UNKNOWN", message: "unknown error", detail: "the realm could not check the credentials" }] });
      return;
    }
    if (!decision.granted) {
      for (const entry of decision.log) options.onDecision?.(entry);
      send(res, decision.status, decision.headers, decision.body);
      return;
    }
    // The registry checks `exp` and `nbf` against its wall clock, not the emulator's, so the
    // token is dated with real time and only its lifetime follows the credential.
    const issuedAtMs = Date.now();
    const claims = registryTokenClaims({
      issuer: options.issuer,
      service: options.service,
      subject: decision.subject,
      access: decision.access,
      issuedAt: Math.floor(issuedAtMs / 1000),
      lifetimeSeconds: decision.lifetimeSeconds,
      jwtId: randomBytes(15).toString("base64url"),
    });
    options.signer.sign(claims).then(
      (token) => {
        for (const entry of decision.log) options.onDecision?.(entry);
        send(res, 200, {}, { token, access_token: token, expires_in: decision.lifetimeSeconds, issued_at: new Date(issuedAtMs).toISOString() });
      },
      () => {
        options.onDecision?.({ subject: decision.subject, scope: "", outcome: "signing-failed", status: 500 });
        send(res, 500, {}, { errors: [{ code: "UNKNOWN", message: "unknown error", detail: "the realm could not sign the token" }] });
      },
    );
  };
}

function decide(req: IncomingMessage, options: TokenRealmOptions): TokenDecision | undefined {
  try {
    const url = new URL(req.url ?? "/", "http://realm.invalid");
    return decideTokenRequest(
      {
        method: req.method ?? "GET",
        service: url.searchParams.get("service") ?? undefined,
        scopes: url.searchParams.getAll("scope"),
        authorization: req.headers.authorization,
      },
      { service: options.service, now: options.now(), lookup: options.lookup },
    );
  } catch {
    return undefined;
  }
}

function send(res: ServerResponse, status: number, headers: Record<string, string>, body: object): void {
  res.writeHead(status, { ...headers, "Content-Type": "application/json", "Cache-Control": "no-store" });
  res.end(JSON.stringify(body));
}
