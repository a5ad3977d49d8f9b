import { describe, expect, it } from "vitest";
import { ExpiringCache } from "../../../../functions/broker/cache/local.ts";
import { freshness } from "../../../../functions/broker/cache/policy.ts";

function manualClock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

interface Item {
  value: string;
  expiresAt: number;
}

describe("freshness", () => {
  it("is fresh until refreshBefore ahead of expiry", () => {
    expect(freshness(10_000, 8_999, 1000)).toBe("fresh");
    expect(freshness(10_000, 9_000, 1000)).toBe("due");
  });
  it("is due inside the refresh window and expired at expiry", () => {
    expect(freshness(10_000, 9_999, 1000)).toBe("due");
    expect(freshness(10_000, 10_000, 1000)).toBe("expired");
  });
});

describe("ExpiringCache", () => {
  it("makes one upstream call for many concurrent misses of one key", async () => {
    const clock = manualClock();
    const cache = new ExpiringCache<Item>({ max: 10, clock, refreshBeforeMs: 1000 });
    let loads = 0;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const load = async () => (loads++, await gate, { value: "a", expiresAt: clock.now() + 60_000 });
    const all = Promise.all(Array.from({ length: 50 }, () => cache.get("k", load)));
    release();
    const results = await all;
    expect(loads).toBe(1);
    expect(new Set(results.map((r) => r.value.value))).toEqual(new Set(["a"]));
  });

  it("reuses an entry until refreshBefore ahead of its expiry, then loads a new one", async () => {
    const clock = manualClock();
    const cache = new ExpiringCache<Item>({ max: 10, clock, refreshBeforeMs: 1000 });
    let n = 0;
    const load = async () => ({ value: `v${++n}`, expiresAt: clock.now() + 10_000 });
    expect((await cache.get("k", load)).value.value).toBe("v1");
    clock.advance(8_999);
    expect(await cache.get("k", load)).toMatchObject({ value: { value: "v1" }, source: "cache" });
    clock.advance(1);
    expect(await cache.get("k", load)).toMatchObject({ value: { value: "v2" }, source: "upstream" });
  });

  it("serves a still-valid entry, flagged stale, when the refresh fails", async () => {
    const clock = manualClock();
    const cache = new ExpiringCache<Item>({ max: 10, clock, refreshBeforeMs: 1000 });
    await cache.get("k", async () => ({ value: "old", expiresAt: clock.now() + 10_000 }));
    clock.advance(9_500);
    expect(await cache.get("k", () => Promise.reject(new Error("down")))).toEqual({ value: { value: "old", expiresAt: 1_010_000 }, source: "stale" });
  });

  it("never serves an expired entry: the refresh error surfaces", async () => {
    const clock = manualClock();
    const cache = new ExpiringCache<Item>({ max: 10, clock, refreshBeforeMs: 1000 });
    await cache.get("k", async () => ({ value: "old", expiresAt: clock.now() + 10_000 }));
    clock.advance(10_000);
    await expect(cache.get("k", () => Promise.reject(new Error("down")))).rejects.toThrow("down");
  });

  it("bypasses a fresh entry when forced", async () => {
    const clock = manualClock();
    const cache = new ExpiringCache<Item>({ max: 10, clock, refreshBeforeMs: 1000 });
    let n = 0;
    const load = async () => ({ value: `v${++n}`, expiresAt: clock.now() + 10_000 });
    await cache.get("k", load);
    expect((await cache.get("k", load, { force: true })).value.value).toBe("v2");
  });

  it("keeps at most max entries, dropping the least recently used", async () => {
    const clock = manualClock();
    const cache = new ExpiringCache<Item>({ max: 2, clock, refreshBeforeMs: 0 });
    const load = (value: string) => async () => ({ value, expiresAt: clock.now() + 10_000 });
    await cache.get("a", load("a"));
    await cache.get("b", load("b"));
    await cache.get("a", load("a2"));
    await cache.get("c", load("c"));
    expect(cache.size).toBe(2);
    expect(cache.peek("b")).toBeUndefined();
    expect(cache.peek("a")?.value).toBe("a");
  });

  it("lets the next caller retry after a failed load (failures are not cached)", async () => {
    const clock = manualClock();
    const cache = new ExpiringCache<Item>({ max: 10, clock, refreshBeforeMs: 0 });
    await expect(cache.get("k", () => Promise.reject(new Error("down")))).rejects.toThrow("down");
    expect((await cache.get("k", async () => ({ value: "up", expiresAt: clock.now() + 1000 }))).value.value).toBe("up");
  });
});
