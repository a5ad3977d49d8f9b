import { createSign, generateKeyPairSync, KeyObject, randomUUID } from "node:crypto";
import { exportJWK, generateKeyPair, SignJWT, type JWK } from "jose";
import type { RefusalReason } from "../../../shared/errors.ts";
import { b64, defaultAudience, defaultSubject, type TestCluster } from "../../functions/broker/support/clusters.ts";

/**
 * Tokens and Authorization headers a broker must refuse, beyond the broker's own token matrix:
 * each is a request a hostile or broken client could send. They are built at run time (keys
 * included), signed with the real cluster key wherever the point is that the signature is fine
 * and something else is not.
 */
export interface HostileCase {
  name: string;
  /** The headers of the request (Host, Connection and Content-Length are added by the sender). */
  headers: Array<[string, string]>;
  /** 403 for a valid token of a ServiceAccount that is not allowed; 401 for every other token problem. */
  status: 401 | 403;
  /** Why the broker refuses it (docs/broker.md, "Refusal reasons"), as its request line says; none beyond the header limit. */
  reason?: RefusalReason;
  /** Larger than node's 16 KiB header limit: the HTTP server itself answers 431 before the broker sees it. */
  beyondHeaderLimit?: boolean;
}

/** Clusters the broker must be configured with for the battery (keys an attacker might exploit). */
export interface HostileClusters {
  /** A 1024-bit RSA key, too weak to trust. */
  weak: { issuer: string; jwks: { keys: JWK[] }; sign(payload: Record<string, unknown>): string };
  /** A 512-bit RSA key. */
  weaker: { issuer: string; jwks: { keys: JWK[] }; sign(payload: Record<string, unknown>): string };
  /** Two different keys under one kid. */
  duplicateKid: { issuer: string; kid: string; jwks: { keys: JWK[] } };
}

const b64url = (bytes: Buffer | string) => Buffer.from(bytes).toString("base64url");

/** A compact JWS over exactly these payload bytes, signed RS256 with a node key (no library checks in the way). */
export function signRs256(key: KeyObject, header: Record<string, unknown>, payload: string): string {
  const input = `${b64url(JSON.stringify(header))}.${b64url(payload)}`;
  return `${input}.${b64url(createSign("RSA-SHA256").update(input).sign(key))}`;
}

function weakRsaCluster(name: string, bits: number) {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: bits });
  const kid = `${name}-key`;
  const issuer = `https://oidc.${name}.example.test/c-${name}`;
  return {
    issuer,
    jwks: { keys: [{ ...(publicKey.export({ format: "jwk" }) as JWK), kid, alg: "RS256", use: "sig" }] },
    sign: (payload: Record<string, unknown>) => signRs256(privateKey, { alg: "RS256", kid, typ: "JWT" }, JSON.stringify({ iss: issuer, ...payload })),
  };
}

export async function createHostileClusters(): Promise<HostileClusters> {
  const kid = "shared-kid";
  const [first, second] = await Promise.all([generateKeyPair("RS256", { extractable: true }), generateKeyPair("RS256", { extractable: true })]);
  return {
    weak: weakRsaCluster("weak", 1024),
    weaker: weakRsaCluster("weaker", 512),
    duplicateKid: {
      issuer: "https://oidc.dup.example.test/c-dup",
      kid,
      jwks: {
        keys: [
          { ...(await exportJWK(first.publicKey)), kid, alg: "RS256" },
          { ...(await exportJWK(second.publicKey)), kid, alg: "RS256" },
        ],
      },
    },
  };
}

/** Claims that would pass every check, for a token of `issuer`. */
export function goodClaims(issuer: string, nowMs = Date.now()): Record<string, unknown> {
  const now = Math.floor(nowMs / 1000);
  return { iss: issuer, aud: [defaultAudience], sub: defaultSubject, iat: now, nbf: now, exp: now + 600 };
}

/**
 * Every hostile request of the battery. `trapUrl` is a server that counts requests: keys or
 * certificates announced in a token must never be fetched from it.
 */
export async function hostileCases(prod: TestCluster, hostile: HostileClusters, trapUrl: string): Promise<HostileCase[]> {
  const prodKey = KeyObject.from(prod.privateKey);
  const attacker = await generateKeyPair("RS256", { extractable: true });
  const attackerJwk = { ...(await exportJWK(attacker.publicKey)), kid: "attacker", alg: "RS256" };
  const good = goodClaims(prod.issuer);
  const bearer = (token: string): Array<[string, string]> => [["Authorization", `Bearer ${token}`]];
  /** Signed by prod's real key under prod's kid: the signature verifies, only the named part is wrong. */
  const signed = (payload: unknown, header: Record<string, unknown> = {}) =>
    signRs256(prodKey, { alg: "RS256", kid: prod.kid, typ: "JWT", ...header }, typeof payload === "string" ? payload : JSON.stringify(payload));
  const withClaims = (claims: Record<string, unknown>) => signed({ ...good, ...claims });
  const attackerSigned = (header: Record<string, unknown>, claims: Record<string, unknown> = good) =>
    new SignJWT(claims).setProtectedHeader({ alg: "RS256", ...header }).sign(attacker.privateKey);
  const kidTrick = (kid: unknown) => signed(good, { kid });
  const valid = await prod.mint();
  const lookAlike = (sub: string): HostileCase => ({
    name: `look-alike sub ${JSON.stringify(sub)}`,
    headers: bearer(withClaims({ sub })),
    status: 403,
    reason: "subject-not-allowed",
  });

  const cases: HostileCase[] = [
    // kid path and injection tricks: the kid only ever selects among the cluster's configured keys.
    { name: "kid with a path traversal", headers: bearer(kidTrick("../../../../etc/passwd")), status: 401, reason: "key-not-found" },
    { name: "kid that is a URL", headers: bearer(kidTrick(`${trapUrl}/kid`)), status: 401, reason: "key-not-found" },
    { name: "kid with SQL", headers: bearer(kidTrick("' OR '1'='1' --")), status: 401, reason: "key-not-found" },
    { name: "kid with NUL and CRLF", headers: bearer(kidTrick("\u0000\r\nX-Injected: 1")), status: 401, reason: "key-not-found" },
    { name: "kid that is a number", headers: bearer(kidTrick(12345)), status: 401, reason: "key-not-found" },
    { name: "kid that is an object", headers: bearer(kidTrick({ $ne: null })), status: 401, reason: "key-not-found" },
    { name: "kid of 8 KiB", headers: bearer(kidTrick("k".repeat(8192))), status: 401, reason: "key-not-found" },
    // Keys and certificates named or embedded in the token are never used nor fetched.
    {
      name: "jku pointing at another server, signed by its key",
      headers: bearer(await attackerSigned({ kid: "attacker", jku: `${trapUrl}/jwks` })),
      status: 401,
      reason: "key-not-found",
    },
    {
      name: "jku pointing elsewhere with the cluster's own kid",
      headers: bearer(await attackerSigned({ kid: prod.kid, jku: `${trapUrl}/jwks` })),
      status: 401,
      reason: "signature-invalid",
    },
    {
      name: "x5u pointing at another server",
      headers: bearer(await attackerSigned({ kid: "attacker", x5u: `${trapUrl}/cert.pem` })),
      status: 401,
      reason: "key-not-found",
    },
    { name: "embedded jwk of the signer", headers: bearer(await attackerSigned({ jwk: attackerJwk })), status: 401, reason: "signature-invalid" },
    {
      name: "embedded x5c chain",
      headers: bearer(await attackerSigned({ kid: prod.kid, x5c: [Buffer.from("not a certificate").toString("base64")] })),
      status: 401,
      reason: "signature-invalid",
    },
    // Configured JWKS an attacker might exploit.
    {
      name: "kid shared by two keys in the cluster's JWKS, signed by neither",
      headers: bearer(await attackerSigned({ kid: hostile.duplicateKid.kid }, goodClaims(hostile.duplicateKid.issuer))),
      status: 401,
      reason: "key-ambiguous",
    },
    { name: "RSA key of 1024 bits", headers: bearer(hostile.weak.sign(goodClaims(hostile.weak.issuer))), status: 401, reason: "key-unusable" },
    { name: "RSA key of 512 bits", headers: bearer(hostile.weaker.sign(goodClaims(hostile.weaker.issuer))), status: 401, reason: "key-unusable" },
    // crit: extensions the broker does not understand must fail the token.
    { name: "crit naming an unknown extension", headers: bearer(signed(good, { crit: ["x-acr"], "x-acr": true })), status: 401, reason: "jws-not-supported" },
    { name: "crit naming a registered header", headers: bearer(signed(good, { crit: ["alg"] })), status: 401, reason: "jws-not-supported" },
    { name: "empty crit", headers: bearer(signed(good, { crit: [] })), status: 401, reason: "jws-invalid" },
    { name: "crit b64 false (unencoded payload)", headers: bearer(signed(good, { crit: ["b64"], b64: false })), status: 401, reason: "payload-invalid" },
    // Payloads that are not a JSON object, validly signed.
    { name: "payload that is not JSON", headers: bearer(signed("not json at all")), status: 401, reason: "token-undecodable" },
    { name: "payload that is a JSON array", headers: bearer(signed("[]")), status: 401, reason: "token-undecodable" },
    {
      name: "payload that is a JSON string",
      headers: bearer(signed('"system:serviceaccount:kube-system:aliyun-acr-credential-helper"')),
      status: 401,
      reason: "token-undecodable",
    },
    { name: "payload that is null", headers: bearer(signed("null")), status: 401, reason: "token-undecodable" },
    { name: "payload that is a number", headers: bearer(signed("12345")), status: 401, reason: "token-undecodable" },
    // Numeric claims as strings.
    { name: "exp as a string", headers: bearer(withClaims({ exp: String(good.exp) })), status: 401, reason: "claim-invalid" },
    { name: "iat as a string", headers: bearer(withClaims({ iat: String(good.iat) })), status: 401, reason: "claim-invalid" },
    { name: "nbf as a string", headers: bearer(withClaims({ nbf: String(good.nbf) })), status: 401, reason: "claim-invalid" },
    { name: "exp far in the future (1e20)", headers: bearer(withClaims({ exp: 1e20 })), status: 401, reason: "lifetime-too-long" },
    // aud shapes.
    { name: "empty aud array", headers: bearer(withClaims({ aud: [] })), status: 401, reason: "audience-mismatch" },
    { name: "aud nested in an array", headers: bearer(withClaims({ aud: [[defaultAudience]] })), status: 401, reason: "audience-mismatch" },
    { name: "aud array of numbers", headers: bearer(withClaims({ aud: [1, 2] })), status: 401, reason: "audience-mismatch" },
    { name: "aud with a trailing space", headers: bearer(withClaims({ aud: [`${defaultAudience} `] })), status: 401, reason: "audience-mismatch" },
    { name: "aud in upper case", headers: bearer(withClaims({ aud: defaultAudience.toUpperCase() })), status: 401, reason: "audience-mismatch" },
    { name: "aud as an object", headers: bearer(withClaims({ aud: { 0: defaultAudience } })), status: 401, reason: "audience-mismatch" },
    // Look-alike subjects and issuers, validly signed: the comparison is exact.
    lookAlike(defaultSubject.replace("s", "\u0455")),
    lookAlike(defaultSubject.replace(":", "\uFF1A")),
    lookAlike(defaultSubject.replace("kube-system", "kube\u200B-system")),
    lookAlike(`${defaultSubject}\u0000`),
    lookAlike(`${defaultSubject} `),
    lookAlike(defaultSubject.toUpperCase()),
    { name: "sub as an array", headers: bearer(withClaims({ sub: [defaultSubject] })), status: 401, reason: "subject-not-string" },
    {
      name: "iss with a Cyrillic look-alike letter",
      headers: bearer(withClaims({ iss: prod.issuer.replace("o", "\u043E") })),
      status: 401,
      reason: "issuer-unknown",
    },
    { name: "iss with a trailing slash", headers: bearer(withClaims({ iss: `${prod.issuer}/` })), status: 401, reason: "issuer-unknown" },
    // Broken structure.
    { name: "signature stripped", headers: bearer(`${valid.split(".").slice(0, 2).join(".")}.`), status: 401, reason: "signature-invalid" },
    { name: "five segments (JWE shape)", headers: bearer(`${b64({ alg: "RSA-OAEP", enc: "A256GCM" })}.a.b.c.d`), status: 401, reason: "token-not-compact-jws" },
    {
      name: "all-zero ES256 signature (psychic signature)",
      headers: bearer(`${b64({ alg: "ES256", kid: prod.kid })}.${b64(good)}.${b64url(Buffer.alloc(64))}`),
      status: 401,
      reason: "key-not-found",
    },
    {
      name: "valid token with base64 padding and '+/' characters",
      headers: bearer(`${valid}==`.replace(/-/g, "+").replace(/_/g, "/")),
      status: 401,
      reason: "jws-invalid",
    },
    // Giant headers.
    { name: "Authorization header of 20 KiB", headers: bearer(withClaims({ padding: "x".repeat(20_000) })), status: 401, beyondHeaderLimit: true },
    {
      name: "one hundred filler headers and no token",
      headers: Array.from({ length: 100 }, (_, i): [string, string] => [`X-Filler-${i}`, "f".repeat(120)]),
      status: 401,
      reason: "bearer-token-missing",
    },
    {
      name: "Cookie header of 32 KiB next to a valid token",
      headers: [...bearer(valid), ["Cookie", "c".repeat(32 * 1024)]],
      status: 401,
      beyondHeaderLimit: true,
    },
    // Many Authorization headers: an ambiguous request is refused, whatever token is among them.
    {
      name: "two Authorization headers, the first valid",
      headers: [...bearer(valid), ["Authorization", "Bearer garbage"]],
      status: 401,
      reason: "bearer-token-missing",
    },
    { name: "the same valid token in two Authorization headers", headers: [...bearer(valid), ...bearer(valid)], status: 401, reason: "bearer-token-missing" },
    {
      name: "one hundred Authorization headers",
      headers: Array.from({ length: 100 }, (_, i): [string, string] => ["Authorization", `Bearer t${i}`]),
      status: 401,
      reason: "bearer-token-missing",
    },
    // Other schemes.
    {
      name: "Basic scheme",
      headers: [["Authorization", `Basic ${Buffer.from("admin:admin").toString("base64")}`]],
      status: 401,
      reason: "bearer-token-missing",
    },
    { name: "Basic scheme carrying a valid token", headers: [["Authorization", `Basic ${valid}`]], status: 401, reason: "bearer-token-missing" },
    { name: "Token scheme carrying a valid token", headers: [["Authorization", `Token ${valid}`]], status: 401, reason: "bearer-token-missing" },
    {
      name: "Digest scheme",
      headers: [["Authorization", 'Digest username="admin", realm="broker", nonce="1", response="0"']],
      status: 401,
      reason: "bearer-token-missing",
    },
    { name: "Bearer without a token", headers: [["Authorization", "Bearer"]], status: 401, reason: "bearer-token-missing" },
    { name: "a valid token without a scheme", headers: [["Authorization", valid]], status: 401, reason: "bearer-token-missing" },
    { name: "a valid token in another header", headers: [["X-Authorization", `Bearer ${valid}`]], status: 401, reason: "bearer-token-missing" },
  ];
  return cases;
}

/** A random bad token of a kind chosen by `i`, different on every call (for long runs: no two requests alike). */
export function randomBadToken(prod: TestCluster, i: number): string {
  const nonce = randomUUID();
  const claims = { ...goodClaims(prod.issuer), jti: nonce };
  switch (i % 5) {
    case 0:
      return `${b64({ alg: "RS256", kid: nonce })}.${b64(claims)}.${b64url(nonce)}`;
    case 1:
      return `${b64({ alg: "RS256", kid: prod.kid })}.${b64({ ...claims, sub: `system:serviceaccount:ns-${nonce}:sa` })}.${b64url(nonce)}`;
    case 2:
      return `${b64({ alg: "HS256", kid: prod.kid })}.${b64(claims)}.${b64url(nonce)}`;
    case 3:
      return `${b64({ alg: "RS256", kid: prod.kid })}.${b64({ ...claims, iss: `https://oidc.${nonce}.example.test` })}.${b64url(nonce)}`;
    default:
      return `not-a-jwt-${nonce}`;
  }
}
