import { describe, expect, it } from "vitest";
import { createClock } from "../../emulator/clock.ts";
import { createFaultInjector, seededRandom } from "../../emulator/faults.ts";
import { createRequestLog } from "../../emulator/request-log.ts";

describe("fault injection", () => {
  const kinds = (seed: number, api = "cr:GetAuthorizationToken") => {
    const faults = createFaultInjector({ throttleRate: 0.3, serverErrorRate: 0.3, seed });
    return Array.from({ length: 50 }, () => faults.decide(api).kind);
  };

  it("repeats the same sequence for the same seed and differs for another", () => {
    expect(kinds(7)).toEqual(kinds(7));
    expect(kinds(7)).not.toEqual(kinds(8));
  });

  it("restarts the sequence when settings are set again", () => {
    const faults = createFaultInjector({ throttleRate: 0.5, seed: 3 });
    const first = Array.from({ length: 20 }, () => faults.decide("sts:AssumeRole").kind);
    faults.set({ throttleRate: 0.5, seed: 3 });
    expect(Array.from({ length: 20 }, () => faults.decide("sts:AssumeRole").kind)).toEqual(first);
  });

  it("injects roughly the configured share of throttling and server errors", () => {
    const faults = createFaultInjector({ throttleRate: 0.2, serverErrorRate: 0.1, seed: 42 });
    const decisions = Array.from({ length: 5000 }, () => faults.decide("sts:AssumeRole"));
    const share = (kind: string) => decisions.filter((decision) => decision.kind === kind).length / decisions.length;
    expect(share("throttle")).toBeGreaterThan(0.17);
    expect(share("throttle")).toBeLessThan(0.23);
    // Server errors are drawn among the requests that were not throttled: 0.8 × 0.1.
    expect(share("serverError")).toBeGreaterThan(0.06);
    expect(share("serverError")).toBeLessThan(0.1);
    const statuses = new Set(decisions.flatMap((decision) => (decision.kind === "serverError" ? [`${decision.status} ${decision.code}`] : [])));
    expect(statuses).toEqual(new Set(["503 ServiceUnavailable", "500 InternalError"]));
  });

  it("touches only STS and CR, and only the APIs listed", () => {
    const faults = createFaultInjector({ throttleRate: 1, apis: ["cr:"] });
    expect(faults.decide("cr:GetAuthorizationToken").kind).toBe("throttle");
    expect(faults.decide("sts:AssumeRole").kind).toBe("none");
    expect(faults.decide("fc:InvokeFunction").kind).toBe("none");
    faults.set({ throttleRate: 1, apis: ["sts:AssumeRole"] });
    expect(faults.decide("sts:AssumeRole").kind).toBe("throttle");
    expect(faults.decide("sts:AssumeRoleWithOIDC").kind).toBe("none");
  });

  it("delays every request by latencyMs unless a latencyRate says otherwise", () => {
    expect(createFaultInjector({ latencyMs: 250 }).decide("cr:ListInstance").delayMs).toBe(250);
    const some = createFaultInjector({ latencyMs: 250, latencyRate: 0.5, seed: 9 });
    const delays = new Set(Array.from({ length: 40 }, () => some.decide("cr:ListInstance").delayMs));
    expect(delays).toEqual(new Set([0, 250]));
  });

  it("does nothing once cleared, and refuses nonsense settings with ConfigInvalid", () => {
    const faults = createFaultInjector({ throttleRate: 1 });
    faults.clear();
    expect(faults.decide("sts:AssumeRole").kind).toBe("none");
    expect(() => faults.set({ throttleRate: 2 })).toThrow(expect.objectContaining({ code: "ConfigInvalid" }));
  });

  it("draws values in [0, 1) from the seeded generator", () => {
    const random = seededRandom(1);
    const values = Array.from({ length: 1000 }, random);
    expect(Math.min(...values)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...values)).toBeLessThan(1);
  });
});

describe("the controllable clock", () => {
  it("starts at the real time and moves with advance and set", () => {
    const before = Date.now();
    const clock = createClock();
    expect(clock.now()).toBeGreaterThanOrEqual(before);
    const start = clock.now();
    clock.advance(3600_000);
    expect(clock.now() - start).toBeGreaterThanOrEqual(3600_000);
    clock.set(1_000_000);
    expect(clock.now()).toBeLessThan(1_000_000 + 60_000);
  });

  it("stands still when frozen", () => {
    const clock = createClock({ start: 5_000, frozen: true });
    expect(clock.now()).toBe(5_000);
    clock.advance(10);
    expect(clock.now()).toBe(5_010);
  });
});

describe("the request log", () => {
  it("counts entries by API pattern, principal and outcome, and clears", () => {
    const log = createRequestLog();
    const entry = { at: 0, principal: "p", status: 200, requestId: "r" };
    log.record({ ...entry, api: "sts:AssumeRole", outcome: "ok" });
    log.record({ ...entry, api: "sts:AssumeRoleWithOIDC", outcome: "ok" });
    log.record({ ...entry, api: "cr:GetAuthorizationToken", outcome: "Throttling.User", status: 400 });
    expect(log.count()).toBe(3);
    expect(log.count({ api: "sts:AssumeRole" })).toBe(1);
    expect(log.count({ api: "sts:" })).toBe(2);
    expect(log.count({ api: "cr:", outcome: "ok" })).toBe(0);
    expect(log.count((e) => e.status >= 400)).toBe(1);
    log.clear();
    expect(log.count()).toBe(0);
  });
});
