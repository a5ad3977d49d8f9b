import { describe, expect, it } from "vitest";
import { forceDecision, ForceLimiter } from "../../../functions/broker/force-limit.ts";
import { AcrCredentialError } from "../../../shared/errors.ts";

describe("forceDecision", () => {
  it("allows the first forced refresh and one per interval after it", () => {
    expect(forceDecision(undefined, 0, 60_000)).toEqual({ allowed: true });
    expect(forceDecision(0, 60_000, 60_000)).toEqual({ allowed: true });
  });
  it("refuses within the interval, saying how many seconds to wait (rounded up)", () => {
    expect(forceDecision(0, 10_500, 60_000)).toEqual({ allowed: false, retryAfterSeconds: 50 });
    expect(forceDecision(0, 59_999, 60_000)).toEqual({ allowed: false, retryAfterSeconds: 1 });
  });
});

describe("ForceLimiter", () => {
  it("limits each cluster separately and reports RateLimited with retryAfterSeconds", () => {
    let now = 0;
    const limiter = new ForceLimiter(60_000, { now: () => now });
    limiter.take("a");
    limiter.take("b");
    now = 30_000;
    let error: unknown;
    try {
      limiter.take("a");
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(AcrCredentialError);
    expect((error as AcrCredentialError).code).toBe("RateLimited");
    expect((error as AcrCredentialError).details.retryAfterSeconds).toBe(30);
  });
});
