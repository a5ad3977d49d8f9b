/**
 * The shared store on a Redis server through ioredis: one connection per instance, a short
 * per-operation timeout, no queueing while disconnected (a request must not wait for a reconnect),
 * and a breaker so that a store that is down costs nothing per request. The client is loaded on
 * first use, so a broker without `sharedCache` never evaluates it.
 */
import { isIP } from "node:net";
import type { Redis, RedisOptions } from "ioredis";
import { oneLine } from "../../../shared/errors.ts";
import { Breaker } from "./breaker.ts";
import { SharedStoreError, type SharedStore } from "./store.ts";

export interface RedisStoreOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://` for TLS. */
  url: string;
  /** Overrides a password in the URL (kept out of the configuration file). */
  password?: string;
  /** PEM bundle trusted for `rediss://` besides the system's CAs. */
  ca?: string;
  operationTimeoutMs: number;
  breaker: { failures: number; coolDownMs: number };
  /** Monotonic ms. */
  now: () => number;
  /** Told when the breaker opens (rate-limited by the caller). */
  onBreakerOpen?: (cause: string) => void;
}

const releaseScript = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/** Connection options from the URL; the URL itself (with its password) is never logged. */
export function redisConnectionOptions(options: Pick<RedisStoreOptions, "url" | "password" | "ca" | "operationTimeoutMs">): RedisOptions {
  const url = new URL(options.url);
  const db = url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0;
  const password = options.password ?? (url.password ? decodeURIComponent(url.password) : undefined);
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  return {
    host,
    port: url.port ? Number(url.port) : 6379,
    db,
    ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
    ...(password ? { password } : {}),
    ...(url.protocol === "rediss:" ? { tls: { ...(isIP(host) ? {} : { servername: host }), ...(options.ca ? { ca: options.ca } : {}) } } : {}),
    commandTimeout: options.operationTimeoutMs,
    connectTimeout: Math.max(1000, options.operationTimeoutMs * 4),
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    // Keep reconnecting in the background, never faster than every 100 ms nor slower than every 2 s.
    retryStrategy: (times) => Math.min(100 * times, 2000),
    lazyConnect: true,
  };
}

export function createRedisStore(options: RedisStoreOptions): SharedStore {
  const breaker = new Breaker({ ...options.breaker, now: options.now });
  let client: Promise<Redis> | undefined;
  let closed = false;

  const connect = async (): Promise<Redis> => {
    const { Redis } = await import("ioredis");
    const redis = new Redis(redisConnectionOptions(options));
    // Errors surface through the operations; without a listener ioredis would print them to stderr.
    redis.on("error", () => {});
    redis.connect().catch(() => {});
    return redis;
  };

  /** The first connection may still be on its way: wait for it up to one operation timeout. */
  const ready = async (): Promise<Redis> => {
    const redis = await (client ??= connect());
    if (redis.status === "ready") return redis;
    if (redis.status === "connecting" || redis.status === "connect" || redis.status === "wait") {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          redis.off("ready", done);
          reject(new SharedStoreError("unavailable", `not connected within ${options.operationTimeoutMs} ms`));
        }, options.operationTimeoutMs);
        function done() {
          clearTimeout(timer);
          resolve();
        }
        redis.once("ready", done);
      });
      return redis;
    }
    throw new SharedStoreError("unavailable", `not connected (${redis.status})`);
  };

  async function operation<T>(run: (redis: Redis) => Promise<T>): Promise<T> {
    if (closed) throw new SharedStoreError("skipped", "the store is closed");
    if (!breaker.allow()) throw new SharedStoreError("skipped", "the breaker is open after repeated failures");
    try {
      const value = await run(await ready());
      breaker.succeeded();
      return value;
    } catch (error) {
      const failure = asStoreError(error);
      // A refusal (maxmemory reached, read-only replica) comes back at once: the store is there,
      // so it does not count towards opening the breaker.
      if (failure.reason === "refused") breaker.succeeded();
      else if (breaker.failed()) options.onBreakerOpen?.(failure.message);
      throw failure;
    }
  }

  return {
    get: (name) => operation((r) => r.get(name)),
    set: (name, value, ttlMs) => operation(async (r) => void (await r.set(name, value, "PX", Math.max(1, Math.floor(ttlMs))))),
    setIfAbsent: (name, value, ttlMs) => operation(async (r) => (await r.set(name, value, "PX", Math.max(1, Math.floor(ttlMs)), "NX")) === "OK"),
    exists: (name) => operation(async (r) => (await r.exists(name)) === 1),
    deleteIfEquals: (name, value) => operation(async (r) => void (await r.eval(releaseScript, 1, name, value))),
    async close() {
      closed = true;
      const redis = await client?.catch(() => undefined);
      redis?.disconnect();
    },
    warmUp: () => void ready().catch(() => {}),
  };
}

function asStoreError(error: unknown): SharedStoreError {
  if (error instanceof SharedStoreError) return error;
  const message = oneLine(error);
  if (/timed out/i.test(message)) return new SharedStoreError("timeout", message);
  // OOM (maxmemory reached), READONLY, NOAUTH, WRONGTYPE: the store answered but would not do it.
  if (/^[A-Z]+ /.test(message) && !/^Connection|^Stream/.test(message)) return new SharedStoreError("refused", message);
  return new SharedStoreError("unavailable", message);
}
