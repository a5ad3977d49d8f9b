/**
 * ACS3-HMAC-SHA256, the V3 signature of Alibaba Cloud OpenAPI, as `@alicloud/openapi-core` computes it.
 * Pure functions: the verifier rebuilds the canonical request from what arrived on the wire.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";

export const ACS3_ALGORITHM = "ACS3-HMAC-SHA256";

/** A request as received: lower-cased header names with every value, decoded query pairs in wire order. */
export interface ReceivedRequest {
  method: string;
  /** The path as sent, without the query. */
  path: string;
  query: readonly (readonly [string, string])[];
  headers: Readonly<Record<string, readonly string[]>>;
  body: Buffer;
}

export interface Acs3Authorization {
  accessKeyId: string;
  signedHeaders: string[];
  signature: string;
}

export const sha256Hex = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");

/** `encodeURIComponent` plus the characters RFC 3986 reserves that it leaves alone. */
export function percentEncode(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** Splits a raw query string into decoded pairs, as Node's `querystring.parse` would read it. */
export function parseQuery(raw: string): [string, string][] {
  if (raw === "") return [];
  const decode = (text: string) => {
    const spaced = text.replace(/\+/g, " ");
    try {
      return decodeURIComponent(spaced);
    } catch {
      return spaced;
    }
  };
  return raw
    .split("&")
    .filter((part) => part !== "")
    .map((part) => {
      const eq = part.indexOf("=");
      return eq < 0 ? [decode(part), ""] : [decode(part.slice(0, eq)), decode(part.slice(eq + 1))];
    });
}

export function canonicalUri(path: string): string {
  return path.replace(/\+/g, "%20").replace(/\*/g, "%2A").replace(/%7E/g, "~");
}

/** Keys sorted and left as they are; values percent-encoded. */
export function canonicalQueryString(pairs: readonly (readonly [string, string])[]): string {
  return [...pairs]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, value]) => `${key}=${percentEncode(value)}`)
    .join("&");
}

export function canonicalHeaders(headers: Readonly<Record<string, readonly string[]>>, signedHeaders: readonly string[]): string {
  return signedHeaders
    .map(
      (name) =>
        `${name}:${[...(headers[name] ?? [])]
          .map((value) => value.trim())
          .sort()
          .join(",")}\n`,
    )
    .join("");
}

export function canonicalRequest(request: ReceivedRequest, signedHeaders: readonly string[], payloadHash: string): string {
  return [
    request.method,
    canonicalUri(request.path),
    canonicalQueryString(request.query),
    canonicalHeaders(request.headers, signedHeaders),
    signedHeaders.join(";"),
    payloadHash,
  ].join("\n");
}

export function stringToSign(canonical: string): string {
  return `${ACS3_ALGORITHM}\n${sha256Hex(canonical)}`;
}

export function acs3Signature(secret: string, toSign: string): string {
  return createHmac("sha256", secret).update(toSign).digest("hex");
}

/** Parses `ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=a;b,Signature=hex`; undefined when it is not that shape. */
export function parseAcs3Authorization(header: string): Acs3Authorization | undefined {
  const space = header.indexOf(" ");
  if (space < 0 || header.slice(0, space) !== ACS3_ALGORITHM) return undefined;
  const fields = new Map<string, string>();
  for (const part of header.slice(space + 1).split(",")) {
    const eq = part.indexOf("=");
    if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const accessKeyId = fields.get("Credential");
  const signedHeaders = fields.get("SignedHeaders");
  const signature = fields.get("Signature");
  if (!accessKeyId || !signedHeaders || !signature) return undefined;
  return { accessKeyId, signedHeaders: signedHeaders.split(";"), signature };
}

export type Acs3Failure =
  { reason: "unsignedHeader"; detail: string } | { reason: "payloadMismatch"; detail: string } | { reason: "signatureMismatch"; detail: string };

/**
 * Checks a received request against its Authorization with the key's secret: the signed-header list
 * must cover `host`, `content-type` and every `x-acs-*` header present; `x-acs-content-sha256` must be
 * the body's hash; the signature must match. Returns the first failure, or undefined.
 */
export function checkAcs3(request: ReceivedRequest, authorization: Acs3Authorization, secret: string): Acs3Failure | undefined {
  const signed = authorization.signedHeaders;
  const sortedUnique = signed.every((name, i) => name === name.toLowerCase() && (i === 0 || (signed[i - 1] as string) < name));
  if (!sortedUnique) return { reason: "unsignedHeader", detail: "SignedHeaders must be lower-case, sorted and unique" };
  const mustSign = Object.keys(request.headers).filter((name) => name === "host" || name === "content-type" || name.startsWith("x-acs-"));
  const unsigned = mustSign.filter((name) => !signed.includes(name));
  if (unsigned.length > 0) return { reason: "unsignedHeader", detail: `header ${unsigned.join(", ")} is present but not in SignedHeaders` };
  const declared = request.headers["x-acs-content-sha256"]?.[0];
  const actual = sha256Hex(request.body);
  if (declared === undefined) return { reason: "unsignedHeader", detail: "x-acs-content-sha256 is missing" };
  if (declared !== actual) return { reason: "payloadMismatch", detail: "x-acs-content-sha256 does not match the request body" };
  const expected = acs3Signature(secret, stringToSign(canonicalRequest(request, signed, declared)));
  const given = Buffer.from(authorization.signature);
  if (given.length !== expected.length || !timingSafeEqual(given, Buffer.from(expected))) {
    return { reason: "signatureMismatch", detail: "recompute the canonical request (method, path, sorted query, signed headers, body hash)" };
  }
  return undefined;
}
