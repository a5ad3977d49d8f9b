/** The FC instance model's placement, reclaim and billing rules on model time, without processes. */
import { describe, expect, it } from "vitest";
import { InstancePool } from "../../emulator/fc-runtime/pool.ts";

const placed = (result: ReturnType<InstancePool["acquire"]>) => {
  if ("throttled" in result) throw new Error("unexpectedly throttled");
  return result;
};

describe("InstancePool", () => {
  it("gives each overlapping request its own built-in instance and reuses one once it is free", () => {
    const pool = new InstancePool({ concurrency: 1, maxInstances: 10, idleMs: 300_000 });
    const first = placed(pool.acquire(0));
    const second = placed(pool.acquire(10));
    expect([first.cold, second.cold]).toEqual([true, true]);
    expect(second.instance.id).not.toBe(first.instance.id);
    pool.finish(first.request, 100);
    pool.finish(second.request, 50);
    const third = placed(pool.acquire(200));
    expect(third.cold).toBe(false);
    // The one that finished last is taken, so the other can go idle.
    expect(third.instance.id).toBe(first.instance.id);
    expect(pool.counters(200)).toMatchObject({ invocations: 3, coldStarts: 2, liveInstances: 2, peakInstances: 2 });
  });

  it("counts a request whose end is unknown as running, whatever the time", () => {
    const pool = new InstancePool({ concurrency: 1, maxInstances: 10, idleMs: 1000 });
    placed(pool.acquire(0));
    expect(placed(pool.acquire(60_000)).cold).toBe(true);
    expect(pool.reclaim(600_000)).toEqual([]);
  });

  it("packs a custom runtime's requests onto one instance up to its concurrency", () => {
    const pool = new InstancePool({ concurrency: 3, maxInstances: 10, idleMs: 300_000 });
    const results = [0, 1, 2, 3].map((at) => placed(pool.acquire(at)));
    expect(results.map((r) => r.cold)).toEqual([true, false, false, true]);
    expect(new Set(results.slice(0, 3).map((r) => r.instance.id)).size).toBe(1);
  });

  it("throttles a request that would need an instance beyond maxInstances", () => {
    const pool = new InstancePool({ concurrency: 1, maxInstances: 2, idleMs: 300_000 });
    placed(pool.acquire(0));
    placed(pool.acquire(0));
    expect(pool.acquire(0)).toEqual({ throttled: true });
    expect(pool.counters(0)).toMatchObject({ invocations: 2, throttled: 1, liveInstances: 2 });
  });

  it("reclaims an instance idle for idleMs, and the next request starts a new one", () => {
    const pool = new InstancePool({ concurrency: 1, maxInstances: 10, idleMs: 180_000 });
    const first = placed(pool.acquire(0));
    pool.finish(first.request, 1000);
    expect(pool.reclaim(180_999)).toEqual([]);
    expect(pool.reclaim(181_000).map((i) => i.id)).toEqual([first.instance.id]);
    expect(placed(pool.acquire(181_000)).cold).toBe(true);
    expect(pool.counters(181_000)).toMatchObject({ coldStarts: 2, liveInstances: 1, peakInstances: 1 });
  });

  it("keeps minInstances (provisioned) instances, the most recently used, however long they idle", () => {
    const pool = new InstancePool({ concurrency: 1, maxInstances: 10, idleMs: 180_000, minInstances: 1 });
    const first = placed(pool.acquire(0));
    const second = placed(pool.acquire(0));
    pool.finish(first.request, 1000);
    pool.finish(second.request, 2000);
    expect(pool.reclaim(3_600_000).map((i) => i.id)).toEqual([first.instance.id]);
    expect(pool.reclaim(7_200_000)).toEqual([]);
    const later = placed(pool.acquire(7_200_000));
    expect(later).toMatchObject({ cold: false, instance: { id: second.instance.id } });
    expect(pool.counters(7_200_000)).toMatchObject({ coldStarts: 2, liveInstances: 1 });
    expect(() => new InstancePool({ concurrency: 1, maxInstances: 2, idleMs: 1, minInstances: 3 })).toThrow(/minInstances/);
  });

  it("bills each instance for the union of its busy intervals, not for idle time", () => {
    const pool = new InstancePool({ concurrency: 2, maxInstances: 10, idleMs: 300_000 });
    const a = placed(pool.acquire(0));
    const b = placed(pool.acquire(500));
    pool.finish(a.request, 1000);
    pool.finish(b.request, 1500);
    const c = placed(pool.acquire(10_000));
    pool.finish(c.request, 12_000);
    // [0, 1.5 s] and [10 s, 12 s] on one instance: 3.5 s, the idle 8.5 s between them unbilled.
    expect(pool.counters(20_000).instanceSeconds).toBeCloseTo(3.5, 6);
    pool.reclaim(400_000);
    expect(pool.counters(400_000)).toMatchObject({ liveInstances: 0 });
    expect(pool.counters(400_000).instanceSeconds).toBeCloseTo(3.5, 6);
  });
});
