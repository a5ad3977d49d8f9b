import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { fcContentMd5, fcSignature, fcSignatureMatches, fcStringToSign, parseFcAuthorization, type FcRequest } from "../../emulator/signature/fc.ts";

const FcClient = createRequire(import.meta.url)("@alicloud/fc2") as {
  getSignature(id: string, secret: string, method: string, path: string, headers: Record<string, string>, queries: unknown): string;
};

const headers = {
  "content-md5": "YmI2Y2I1YzY4ZGY0NjUyOTQxY2FmNjUyYTM2NmYyZDg=",
  "content-type": "application/octet-stream",
  date: "Sat, 28 Nov 2026 22:38:43 GMT",
  "x-fc-account-id": "1234567890",
  "x-fc-invocation-type": "Sync",
  "x-fc-security-token": "TOK",
};
const request: FcRequest = { method: "POST", path: "/2016-08-15/services/svc.LATEST/functions/fn/invocations", headers, query: [] };

describe("Function Compute 2.0 signature", () => {
  it("builds the documented string to sign", () => {
    expect(fcStringToSign(request)).toBe(
      "POST\nYmI2Y2I1YzY4ZGY0NjUyOTQxY2FmNjUyYTM2NmYyZDg=\napplication/octet-stream\nSat, 28 Nov 2026 22:38:43 GMT\nx-fc-account-id:1234567890\nx-fc-invocation-type:Sync\nx-fc-security-token:TOK\n/2016-08-15/services/svc.LATEST/functions/fn/invocations",
    );
  });

  it("matches the signature @alicloud/fc2 computes", () => {
    const sdk = FcClient.getSignature("TESTAKFC", "fc-secret", "POST", request.path, headers, null);
    expect(parseFcAuthorization(sdk)).toEqual({ accessKeyId: "TESTAKFC", signature: fcSignature("fc-secret", fcStringToSign(request)) });
    expect(fcSignatureMatches(request, "fc-secret", parseFcAuthorization(sdk)!.signature)).toBe(true);
  });

  it("refuses a changed path, header or secret", () => {
    const { signature } = parseFcAuthorization(FcClient.getSignature("TESTAKFC", "fc-secret", "POST", request.path, headers, null))!;
    expect(fcSignatureMatches({ ...request, path: "/2016-08-15/services/svc.LATEST/functions/other/invocations" }, "fc-secret", signature)).toBe(false);
    expect(fcSignatureMatches({ ...request, headers: { ...headers, "x-fc-account-id": "999" } }, "fc-secret", signature)).toBe(false);
    expect(fcSignatureMatches(request, "wrong-secret", signature)).toBe(false);
  });

  it("computes content-md5 as Base64 of the hex digest, as fc2 does", () => {
    // md5("hello") = 5d41402abc4b2a76b9719d911017c592, and fc2 Base64-encodes that hex text.
    expect(fcContentMd5(Buffer.from("hello"))).toBe("NWQ0MTQwMmFiYzRiMmE3NmI5NzE5ZDkxMTAxN2M1OTI=");
  });
});
