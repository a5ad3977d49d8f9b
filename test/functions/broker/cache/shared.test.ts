/**
 * The shared layer's lease protocol on a real redis-server, one layer object per simulated instance:
 * what a waiter does when the holder is slow, when a refresh is forced, and that a holder only
 * ever releases its own lease.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createRedisStore } from "../../../../functions/broker/cache/redis-store.ts";
import { cacheKeyRingFromEnv, seal } from "../../../../functions/broker/cache/sealed.ts";
import { SharedLayer, type SharedLayerOptions } from "../../../../functions/broker/cache/shared.ts";
import type { SharedStore } from "../../../../functions/broker/cache/store.ts";
import { startRedisServer, type RedisServer } from "../../../support/redis-server.ts";

interface Entry {
  value: string;
  expiresAt: number;
}

const keys = cacheKeyRingFromEnv({ BROKER_CACHE_KEY: `t1:${randomBytes(32).toString("base64")}` });
const namespace = "test:credential:";
let redis: RedisServer;
const stores: SharedStore[] = [];

function layer(options: Partial<SharedLayerOptions> = {}): SharedLayer<Entry> {
  const store = createRedisStore({ url: redis.url, operationTimeoutMs: 500, breaker: { failures: 3, coolDownMs: 1000 }, now: () => performance.now() });
  stores.push(store);
  return new SharedLayer<Entry>({
    store,
    keys,
    namespace,
    clock: { now: () => Date.now() },
    refreshBeforeMs: 60_000,
    leaseMs: 5000,
    pollMs: 20,
    reserveMs: 300,
    monotonicNow: () => performance.now(),
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    warn: () => {},
    ...options,
  });
}

const entry = (value: string): Entry => ({ value, expiresAt: Date.now() + 3600_000 });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  redis = await startRedisServer();
});
beforeEach(() => redis.client.flushall());
afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await redis?.close();
});

describe("the shared layer's lease", () => {
  it("a waiter whose deadline comes first stops waiting in time and loads by itself", async () => {
    const waiter = layer();
    await redis.client.set(`${namespace}lease:k`, "a slow holder", "PX", 10_000);
    let loads = 0;
    const started = performance.now();
    const value = await waiter.load("k", async () => (loads++, entry("own")), { deadline: performance.now() + 1000 });
    const tookMs = performance.now() - started;
    expect(value.value).toBe("own");
    expect(loads).toBe(1);
    // It gave up at deadline − reserve, not at the lease's expiry 10 s later.
    expect(tookMs).toBeGreaterThanOrEqual(650);
    expect(tookMs).toBeLessThan(5000);
  });

  it("a forced refresh that finds another refresh running takes that one's new value, not the value it skipped", async () => {
    const writer = layer();
    await writer.load("k", async () => entry("old"));
    await redis.client.set(`${namespace}lease:k`, "another instance", "PX", 10_000);
    let loads = 0;
    const forced = layer().load("k", async () => (loads++, entry("forced")), { force: true, deadline: performance.now() + 5000 });
    await sleep(200);
    // The other instance's refresh lands, then it lets its lease go.
    await redis.client.set(`${namespace}k`, seal(keys, `${namespace}k`, JSON.stringify(entry("new"))), "PX", 60_000);
    await redis.client.del(`${namespace}lease:k`);
    expect((await forced).value).toBe("new");
    expect(loads).toBe(0);
  });

  it("a holder whose refresh fails lets its lease go at once and writes nothing", async () => {
    const holder = layer();
    await expect(holder.load("k", async () => Promise.reject(new Error("upstream down")))).rejects.toThrow("upstream down");
    expect(await redis.client.exists(`${namespace}lease:k`, `${namespace}k`)).toBe(0);
  });

  it("a holder whose lease expired during a slow refresh does not release the lease another instance took since", async () => {
    const holder = layer({ leaseMs: 200 });
    const slow = holder.load("k", async () => {
      await sleep(400);
      return entry("slow");
    });
    await sleep(300);
    expect(await redis.client.set(`${namespace}lease:k`, "the next holder", "PX", 10_000, "NX")).toBe("OK");
    expect((await slow).value).toBe("slow");
    expect(await redis.client.get(`${namespace}lease:k`)).toBe("the next holder");
  });

  it("writes each value with a TTL that ends at its expiry", async () => {
    const expiresAt = Date.now() + 120_000;
    await layer().load("k", async () => ({ value: "v", expiresAt }));
    const ttl = await redis.client.pttl(`${namespace}k`);
    expect(ttl).toBeGreaterThan(110_000);
    expect(ttl).toBeLessThanOrEqual(120_000);
  });
});
