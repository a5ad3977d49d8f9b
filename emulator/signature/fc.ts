/** The Function Compute 2.0 signature (`Authorization: FC <AccessKeyID>:<base64 HMAC-SHA256>`) as `@alicloud/fc2` computes it. */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";

export interface FcRequest {
  method: string;
  /** The signed path: `/2016-08-15/services/...`, without the query. */
  path: string;
  /** Lower-cased header names, first value of each. */
  headers: Readonly<Record<string, string | undefined>>;
  /** Query pairs; signed only for paths under `/proxy/`. */
  query: readonly (readonly [string, string])[];
}

export function fcStringToSign(request: FcRequest): string {
  const fcHeaders = Object.keys(request.headers)
    .filter((name) => name.startsWith("x-fc-"))
    .sort()
    .map((name) => `${name}:${request.headers[name] ?? ""}\n`)
    .join("");
  const h = (name: string) => request.headers[name] ?? "";
  let text = `${request.method}\n${h("content-md5")}\n${h("content-type")}\n${h("date")}\n${fcHeaders}${request.path}`;
  if (request.path.startsWith("/2016-08-15/proxy/")) {
    text += `\n${request.query
      .map(([key, value]) => `${key}=${value}`)
      .sort()
      .join("\n")}`;
  }
  return text;
}

export function fcSignature(secret: string, toSign: string): string {
  return createHmac("sha256", secret).update(toSign, "utf8").digest("base64");
}

/** `content-md5` as fc2 sends it: Base64 of the hex MD5 string, not of the raw digest. */
export function fcContentMd5(body: Buffer): string {
  return Buffer.from(createHash("md5").update(body).digest("hex"), "utf8").toString("base64");
}

export function parseFcAuthorization(header: string): { accessKeyId: string; signature: string } | undefined {
  const match = /^FC ([^:\s]+):(\S+)$/.exec(header);
  return match === null ? undefined : { accessKeyId: match[1] as string, signature: match[2] as string };
}

export function fcSignatureMatches(request: FcRequest, secret: string, signature: string): boolean {
  const expected = Buffer.from(fcSignature(secret, fcStringToSign(request)));
  const given = Buffer.from(signature);
  return expected.length === given.length && timingSafeEqual(expected, given);
}
