import { OpenApiUtil } from "@alicloud/openapi-core";
import { describe, expect, it } from "vitest";
import { canonicalQueryString, checkAcs3, parseAcs3Authorization, parseQuery, sha256Hex, type ReceivedRequest } from "../../emulator/signature/acs3.ts";

const secret = "test-secret-acs3";
const emptyBodyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/** Signs a request with the SDK's own signer and returns what the emulator would receive. */
function signedBySdk(
  options: { method?: string; pathname?: string; query?: Record<string, string>; headers?: Record<string, string>; body?: string } = {},
): ReceivedRequest {
  const body = Buffer.from(options.body ?? "");
  const headers: Record<string, string> = {
    host: "127.0.0.1:18080",
    "x-acs-action": "GetAuthorizationToken",
    "x-acs-version": "2018-12-01",
    "x-acs-date": "2026-11-28T22:00:00Z",
    "x-acs-signature-nonce": "a".repeat(64),
    "x-acs-content-sha256": sha256Hex(body),
    ...options.headers,
  };
  const query = options.query ?? { InstanceId: "cri-abc" };
  const authorization = OpenApiUtil.getAuthorization(
    { pathname: options.pathname ?? "/", method: options.method ?? "POST", query, headers } as never,
    "ACS3-HMAC-SHA256",
    headers["x-acs-content-sha256"] as string,
    "TESTAKACS3",
    secret,
  );
  // What arrives: the query re-serialised by Node's querystring, header names lower-cased.
  const wireQuery = new URLSearchParams(query).toString().replace(/\+/g, "%20");
  return {
    method: options.method ?? "POST",
    path: options.pathname ?? "/",
    query: parseQuery(wireQuery),
    headers: Object.fromEntries(Object.entries({ ...headers, authorization }).map(([name, value]) => [name.toLowerCase(), [value]])),
    body,
  };
}

const authorizationOf = (request: ReceivedRequest) => parseAcs3Authorization(request.headers["authorization"]?.[0] ?? "")!;

describe("ACS3-HMAC-SHA256 verification", () => {
  it("accepts a request signed by @alicloud/openapi-core's own signer", () => {
    const request = signedBySdk();
    expect(checkAcs3(request, authorizationOf(request), secret)).toBeUndefined();
  });

  it("re-encodes the decoded query the way the SDK canonicalises it (reserved characters, ~, UTF-8)", () => {
    expect(
      canonicalQueryString([
        ["Summary", "false"],
        ["InstanceId", "cri-abc* ~(x)'!é"],
      ]),
    ).toBe("InstanceId=cri-abc%2A%20~%28x%29%27%21%C3%A9&Summary=false");
    const request = signedBySdk({ query: { InstanceId: "cri-abc* ~(x)'!é", Summary: "false" } });
    expect(checkAcs3(request, authorizationOf(request), secret)).toBeUndefined();
  });

  it("accepts a signed ROA GET with an empty body hash", () => {
    const request = signedBySdk({ method: "GET", pathname: "/tokens", query: {} });
    expect(request.headers["x-acs-content-sha256"]).toEqual([emptyBodyHash]);
    expect(checkAcs3(request, authorizationOf(request), secret)).toBeUndefined();
  });

  it("refuses the right request checked with the wrong secret", () => {
    const request = signedBySdk();
    expect(checkAcs3(request, authorizationOf(request), "another-secret")?.reason).toBe("signatureMismatch");
  });

  it.each([
    ["a query value", (r: ReceivedRequest) => ({ ...r, query: [["InstanceId", "cri-other"]] as [string, string][] })],
    ["an added query parameter", (r: ReceivedRequest) => ({ ...r, query: [...r.query, ["Extra", "1"]] as [string, string][] })],
    ["the path", (r: ReceivedRequest) => ({ ...r, path: "/tokens" })],
    ["the method", (r: ReceivedRequest) => ({ ...r, method: "GET" })],
    ["a signed header", (r: ReceivedRequest) => ({ ...r, headers: { ...r.headers, "x-acs-action": ["ListInstance"] } })],
    ["the host", (r: ReceivedRequest) => ({ ...r, headers: { ...r.headers, host: ["127.0.0.1:18081"] } })],
  ])("refuses a request whose %s changed after signing", (_what, mutate) => {
    const request = signedBySdk();
    expect(checkAcs3(mutate(request), authorizationOf(request), secret)?.reason).toBe("signatureMismatch");
  });

  it("refuses a body that does not hash to x-acs-content-sha256", () => {
    const request = signedBySdk({ body: "a=1" });
    expect(checkAcs3(request, authorizationOf(request), secret)).toBeUndefined();
    expect(checkAcs3({ ...request, body: Buffer.from("a=2") }, authorizationOf(request), secret)?.reason).toBe("payloadMismatch");
  });

  it("refuses an x-acs-* header that was added without being signed", () => {
    const request = signedBySdk();
    const tampered = { ...request, headers: { ...request.headers, "x-acs-security-token": ["CAISforged"] } };
    expect(checkAcs3(tampered, authorizationOf(request), secret)).toMatchObject({ reason: "unsignedHeader" });
  });

  it("reads the Authorization header's three fields and rejects other schemes", () => {
    expect(parseAcs3Authorization("ACS3-HMAC-SHA256 Credential=AK1,SignedHeaders=host;x-acs-date,Signature=abc")).toEqual({
      accessKeyId: "AK1",
      signedHeaders: ["host", "x-acs-date"],
      signature: "abc",
    });
    expect(parseAcs3Authorization("acs AK1:signature")).toBeUndefined();
    expect(parseAcs3Authorization("ACS3-HMAC-SHA256 Credential=AK1,Signature=abc")).toBeUndefined();
  });

  it("decodes a wire query like Node's querystring (percent escapes and '+')", () => {
    expect(parseQuery("RoleArn=acs%3Aram%3A%3A1%3Arole%2Fr&RoleSessionName=s%401&Empty=&Flag")).toEqual([
      ["RoleArn", "acs:ram::1:role/r"],
      ["RoleSessionName", "s@1"],
      ["Empty", ""],
      ["Flag", ""],
    ]);
    expect(parseQuery("a=b+c")).toEqual([["a", "b c"]]);
  });
});
