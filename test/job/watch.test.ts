import { describe, expect, it } from "vitest";
import { refreshDelayMs } from "../../job/watch.ts";

const now = new Date("2030-01-01T00:00:00Z");
const minutes = (n: number) => n * 60_000;

describe("refreshDelayMs", () => {
  it("renews the threshold before the earliest expiry", () => {
    expect(refreshDelayMs({ complete: true, earliestExpiry: new Date(now.getTime() + minutes(60)), thresholdSeconds: 15 * 60, failures: 0, now })).toBe(
      minutes(45),
    );
  });

  it("never waits less than 30 s, even for credentials already inside the threshold", () => {
    expect(refreshDelayMs({ complete: true, earliestExpiry: new Date(now.getTime() + minutes(10)), thresholdSeconds: 15 * 60, failures: 0, now })).toBe(30_000);
  });

  it("never waits more than an hour, even for 12 h credentials", () => {
    expect(refreshDelayMs({ complete: true, earliestExpiry: new Date(now.getTime() + minutes(12 * 60)), thresholdSeconds: 15 * 60, failures: 0, now })).toBe(
      minutes(60),
    );
  });

  it("backs off from 30 s to at most 5 min while some registry has no credential", () => {
    const delays = [1, 2, 3, 4, 5, 9].map((failures) => refreshDelayMs({ complete: false, earliestExpiry: undefined, thresholdSeconds: 900, failures, now }));
    expect(delays).toEqual([30_000, 60_000, 120_000, 240_000, 300_000, 300_000]);
  });

  it("renews this cluster's spread delay after the threshold, at most half the threshold, so it never lapses", () => {
    const base = { complete: true, earliestExpiry: new Date(now.getTime() + minutes(60)), thresholdSeconds: 15 * 60, failures: 0, now };
    expect(refreshDelayMs({ ...base, spreadMs: 37_000 })).toBe(minutes(45) + 37_000);
    expect(refreshDelayMs({ ...base, thresholdSeconds: 60, spreadMs: 100_000 })).toBe(minutes(59) + 30_000);
  });
});
