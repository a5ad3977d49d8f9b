import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRedisStore, redisConnectionOptions } from "../../../../functions/broker/cache/redis-store.ts";
import { SharedStoreError } from "../../../../functions/broker/cache/store.ts";
import { startRedisServer, type RedisServer } from "../../../support/redis-server.ts";

const base = { operationTimeoutMs: 250 };

describe("connection options from sharedCache.url", () => {
  it("takes host, port, database, user and password from the URL", () => {
    expect(redisConnectionOptions({ ...base, url: "redis://broker:p%40ss@r-bp1.redis.rds.aliyuncs.com:6380/2" })).toMatchObject({
      host: "r-bp1.redis.rds.aliyuncs.com",
      port: 6380,
      db: 2,
      username: "broker",
      password: "p@ss",
    });
  });

  it("prefers BROKER_CACHE_PASSWORD over a password in the URL", () => {
    expect(redisConnectionOptions({ ...base, url: "redis://:inurl@host:6379", password: "fromenv" }).password).toBe("fromenv");
  });

  it("uses TLS for rediss:// with the host as server name and the configured CA, and none for redis://", () => {
    expect(redisConnectionOptions({ ...base, url: "rediss://r-bp1.redis.rds.aliyuncs.com:6380", ca: "PEM" }).tls).toEqual({
      servername: "r-bp1.redis.rds.aliyuncs.com",
      ca: "PEM",
    });
    expect(redisConnectionOptions({ ...base, url: "rediss://[::1]:6380" })).toMatchObject({ host: "::1" });
    expect(redisConnectionOptions({ ...base, url: "rediss://[::1]:6380" }).tls).toEqual({});
    expect(redisConnectionOptions({ ...base, url: "redis://host" })).toMatchObject({ port: 6379, db: 0 });
    expect(redisConnectionOptions({ ...base, url: "redis://host" }).tls).toBeUndefined();
  });

  it("never queues a command while disconnected and bounds each by the operation timeout", () => {
    expect(redisConnectionOptions({ ...base, url: "redis://host" })).toMatchObject({ enableOfflineQueue: false, commandTimeout: 250, maxRetriesPerRequest: 0 });
  });
});

describe("the Redis store against a redis-server with a password", () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedisServer({ password: "tair-account-secret" });
  });
  afterAll(() => redis?.close());

  it("authenticates with the password given apart from the URL", async () => {
    const store = createRedisStore({
      url: redis.url,
      password: "tair-account-secret",
      ...base,
      breaker: { failures: 3, coolDownMs: 1000 },
      now: () => performance.now(),
    });
    try {
      await store.set("k", "v", 10_000);
      expect(await store.get("k")).toBe("v");
      expect(await store.setIfAbsent("k", "w", 10_000)).toBe(false);
    } finally {
      await store.close();
    }
  });

  it("fails an operation without the password as a store error, not a crash", async () => {
    const store = createRedisStore({ url: redis.url, ...base, breaker: { failures: 3, coolDownMs: 1000 }, now: () => performance.now() });
    try {
      const error = await store.get("k").then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(SharedStoreError);
    } finally {
      await store.close();
    }
  });
});
