import { describe, expect, it } from "vitest";
import { backoffDelay, retry, type BackoffPolicy } from "../../shared/retry.ts";

const policy: BackoffPolicy = { baseDelayMs: 100, maxDelayMs: 1000, maxAttempts: 5 };

/** A fake monotonic clock that only moves when the runner sleeps. */
function fakeTime() {
  let now = 0;
  const sleeps: number[] = [];
  return { now: () => now, sleep: async (ms: number) => void (sleeps.push(ms), (now += ms)), sleeps };
}

describe("backoffDelay (full jitter)", () => {
  it("stays below base·2^retry", () => {
    expect(backoffDelay(0, policy, () => 0.999)).toBeLessThan(100);
    expect(backoffDelay(2, policy, () => 0.999)).toBeLessThan(400);
    expect(backoffDelay(2, policy, () => 0.5)).toBe(200);
  });

  it("never exceeds the maximum delay", () => {
    expect(backoffDelay(20, policy, () => 0.999)).toBeLessThan(1000);
  });

  it("can be zero (full jitter spreads retries over the whole window)", () => {
    expect(backoffDelay(3, policy, () => 0)).toBe(0);
  });
});

describe("retry", () => {
  const retryable = () => ({ retry: true });

  it("returns the first success after retryable failures", async () => {
    const time = fakeTime();
    let calls = 0;
    const result = await retry(async () => (++calls < 3 ? Promise.reject(new Error("busy")) : "ok"), {
      policy,
      deadline: 10_000,
      classify: retryable,
      ...time,
      random: () => 0.5,
    });
    expect(result).toBe("ok");
    expect(calls).toBe(3);
    expect(time.sleeps).toEqual([50, 100]);
  });

  it("does not retry an error that is not retryable", async () => {
    let calls = 0;
    await expect(
      retry(async () => Promise.reject(new Error(`refused ${++calls}`)), { policy, deadline: 10_000, classify: () => ({ retry: false }), ...fakeTime() }),
    ).rejects.toThrow("refused 1");
  });

  it("gives up after maxAttempts with the last error", async () => {
    let calls = 0;
    await expect(
      retry(async () => Promise.reject(new Error(`busy ${++calls}`)), { policy, deadline: 1e9, classify: retryable, ...fakeTime(), random: () => 0.1 }),
    ).rejects.toThrow("busy 5");
  });

  it("does not start an attempt that could not begin before the deadline", async () => {
    const time = fakeTime();
    let calls = 0;
    await expect(
      retry(async () => Promise.reject(new Error(`busy ${++calls}`)), { policy, deadline: 120, classify: retryable, ...time, random: () => 0.99 }),
    ).rejects.toThrow("busy 2");
    expect(time.now()).toBeLessThan(120);
  });

  it("waits at least as long as the upstream asked", async () => {
    const time = fakeTime();
    let calls = 0;
    await retry(async () => (++calls < 2 ? Promise.reject(new Error("throttled")) : "ok"), {
      policy,
      deadline: 10_000,
      classify: () => ({ retry: true, retryAfterMs: 700 }),
      ...time,
      random: () => 0,
    });
    expect(time.sleeps).toEqual([700]);
  });

  it("tells each attempt how much time is left", async () => {
    const time = fakeTime();
    const seen: number[] = [];
    let calls = 0;
    await retry(async (remaining) => (seen.push(remaining), ++calls < 2 ? Promise.reject(new Error("x")) : "ok"), {
      policy,
      deadline: 1000,
      classify: retryable,
      ...time,
      random: () => 0.5,
    });
    expect(seen).toEqual([1000, 950]);
  });
});
