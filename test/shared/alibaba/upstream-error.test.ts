/** Classification of what the SDKs throw, from the error shapes openapi-core produces. */
import { describe, expect, it } from "vitest";
import { toUpstreamError, unsuccessfulAnswer, upstreamDetails } from "../../../shared/alibaba/upstream-error.ts";

const sdkError = (fields: Record<string, unknown>) => Object.assign(new Error(String(fields.message ?? "x")), fields);

describe("toUpstreamError", () => {
  it("turns a ThrottlingError into UpstreamThrottled with the upstream's retry-after", () => {
    const error = toUpstreamError(
      sdkError({ name: "ThrottlingError", code: "Throttling.User", statusCode: 400, retryAfter: 1500 }),
      "CR GetAuthorizationToken cri-a",
    );
    expect(error.code).toBe("UpstreamThrottled");
    expect(upstreamDetails(error)).toMatchObject({ retryable: true, retryAfterMs: 1500, upstreamCode: "Throttling.User" });
  });

  it("treats any code containing Throttling as throttling", () => {
    expect(toUpstreamError(sdkError({ name: "ClientError", code: "Throttling.Api", statusCode: 400 }), "op").code).toBe("UpstreamThrottled");
  });

  it("makes 503 UpstreamUnavailable and other 5xx UpstreamError, both retryable", () => {
    const unavailable = toUpstreamError(sdkError({ name: "ServerError", code: "ServiceUnavailable", statusCode: 503 }), "op");
    const internal = toUpstreamError(sdkError({ name: "ServerError", code: "InternalError", statusCode: 500 }), "op");
    expect([unavailable.code, internal.code]).toEqual(["UpstreamUnavailable", "UpstreamError"]);
    expect([upstreamDetails(unavailable)?.retryable, upstreamDetails(internal)?.retryable]).toEqual([true, true]);
  });

  it("does not retry a 4xx refusal and hints at the permission", () => {
    const error = toUpstreamError(
      sdkError({ name: "ClientError", code: "NoPermission", statusCode: 403, data: { Message: "You are not authorized" } }),
      "STS AssumeRole r",
    );
    expect(error.message).toBe(
      "STS AssumeRole r: refused with 403 NoPermission: You are not authorized; grant the broker's identity this permission (see docs/deploy.md)",
    );
    expect(upstreamDetails(error)?.retryable).toBe(false);
  });

  it("retries network failures and timeouts", () => {
    expect(toUpstreamError(sdkError({ code: "ECONNRESET" }), "op").code).toBe("UpstreamUnavailable");
    expect(toUpstreamError(sdkError({ name: "RequestTimeoutError", message: "ReadTimeout: 300" }), "op").code).toBe("UpstreamTimeout");
  });

  it("never carries a JWT from an upstream message", () => {
    const token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
    const error = toUpstreamError(
      sdkError({ name: "ClientError", code: "AuthenticationFail.OIDCToken.Invalid", statusCode: 400, data: { Message: `bad token ${token}` } }),
      "op",
    );
    expect(error.message).not.toContain(token);
    expect(error.message).toContain("[token]");
  });

  it("keeps the message on one line", () => {
    expect(toUpstreamError(new Error("line one\n   line two"), "op").message).toBe("op: failed: line one line two");
  });
});

describe("unsuccessfulAnswer (CR's HTTP 200 with IsSuccess: false)", () => {
  const answer = (Code: string) => unsuccessfulAnswer({ RequestId: "R1", Code, IsSuccess: false }, "CR GetAuthorizationToken cri-a (cn-hangzhou)");

  it("retries the codes that say the service failed, as the 5xx they stand for", () => {
    expect([answer("SYSTEM_ERROR"), answer("InternalError")].map((error) => [error.code, upstreamDetails(error)?.retryable])).toEqual([
      ["UpstreamError", true],
      ["UpstreamError", true],
    ]);
    expect([answer("SERVICE_UNAVAILABLE").code, upstreamDetails(answer("SERVICE_UNAVAILABLE"))?.retryable]).toEqual(["UpstreamUnavailable", true]);
    expect(answer("Throttling.User").code).toBe("UpstreamThrottled");
  });

  it("does not retry a refusal, and gives the hint of the HTTP error it stands for", () => {
    const denied = answer("NoPrivilege");
    expect([denied.code, upstreamDetails(denied)?.retryable, upstreamDetails(denied)?.upstreamCode, upstreamDetails(denied)?.requestId]).toEqual([
      "UpstreamError",
      false,
      "NoPrivilege",
      "R1",
    ]);
    expect(denied.message).toMatch(/refused with 403 NoPrivilege: .*IsSuccess=false.*; grant the broker's identity this permission/);
    expect(answer("REPO_NOT_EXIST").message).toMatch(/refused with 404 REPO_NOT_EXIST.*check the ARN or instance id/);
    expect(upstreamDetails(answer("PARAM_INVALID"))?.retryable).toBe(false);
  });

  it("lets the caller's hint replace the generic one", () => {
    const error = unsuccessfulAnswer({ Code: "NoPrivilege", IsSuccess: false }, "op", (code) =>
      code === "NoPrivilege" ? 'grant it on Resource "*"' : undefined,
    );
    expect(error.message).toMatch(/; grant it on Resource "\*"$/);
  });
});
