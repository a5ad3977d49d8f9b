/**
 * Several broker instances (each its own runtime: own memory cache, own Redis connection) in front
 * of one real redis-server and the emulator, as Function Compute runs a fleet of instances of one
 * function. The emulator's request log counts what the whole fleet asked upstream.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createClock, startEmulator, type Clock, type Emulator } from "../../../../emulator/index.ts";
import { open, parseCacheKey } from "../../../../functions/broker/cache/sealed.ts";
import { parseConfig, type BrokerConfig } from "../../../../functions/broker/config.ts";
import { createHandler } from "../../../../functions/broker/handler.ts";
import { createRuntime, type BrokerRuntime } from "../../../../functions/broker/runtime.ts";
import type { CredentialsResponse } from "../../../../shared/broker-api.ts";
import { startRedisServer, type RedisServer } from "../../../support/redis-server.ts";
import { createTestCluster, defaultSubject, type TestCluster } from "../support/clusters.ts";
import { bearer, invokeHttp, testContext } from "../support/invoke.ts";
import { captureLogs } from "../support/logs.ts";
import { brokerUser, brokerWorld, instances, roles } from "../support/world.ts";

const keyV1 = `v1-2026:${randomBytes(32).toString("base64")}`;
const keyV2 = `v2-2026:${randomBytes(32).toString("base64")}`;
const platform = { instanceId: instances.platform.instanceId, regionId: instances.platform.regionId, assumeRoleArn: roles.acrPull, expireDuration: 3600 };
const personal = { regionId: "cn-beijing" };

let redis: RedisServer;
let emulator: Emulator;
let clock: Clock & { advance(ms: number): void };
let prod: TestCluster;
let config: BrokerConfig;
const logs = captureLogs();
const runtimes: BrokerRuntime[] = [];

function brokerConfig(sharedCache: Record<string, unknown>): BrokerConfig {
  return parseConfig(
    {
      audience: "acr-credential-broker",
      requestTimeoutSeconds: 10,
      alibabaCloud: { stsEndpoint: emulator.endpoints.sts, crEndpoint: emulator.endpoints.cr, protocol: "http" },
      clusters: [{ name: "prod", issuer: prod.issuer, jwks: prod.jwks, subjects: [defaultSubject], registries: [platform, personal] }],
      sharedCache: { url: redis.url, operationTimeoutMs: 300, leaseSeconds: 3, breakerCoolDownSeconds: 1, ...sharedCache },
    },
    "test",
  );
}

/** A new broker instance: empty memory cache, its own connection to the shared cache. */
function instance(options: { env?: Record<string, string>; config?: BrokerConfig; baseDir?: string } = {}) {
  const runtime = createRuntime({
    loaded: { config: options.config ?? config, baseDir: options.baseDir ?? ".", source: "test" },
    log: logs.log,
    clock,
    env: options.env ?? { BROKER_CACHE_KEY: keyV1 },
    backoff: { baseDelayMs: 5, maxDelayMs: 20, maxAttempts: 3 },
  });
  runtimes.push(runtime);
  const handler = createHandler(() => runtime);
  return {
    runtime,
    async ask(body: Record<string, unknown> = {}) {
      const answer = await invokeHttp(handler, { headers: bearer(await prod.mint({ now: clock.now() })), body }, testContext(brokerUser));
      return { status: answer.status, body: answer.json as unknown as CredentialsResponse };
    },
  };
}

const upstream = () => emulator.log.count({ api: "sts:" }) + emulator.log.count({ api: "cr:" });
const warnings = (reason: string) => logs.lines.filter((l) => l.includes(`"sharedCache":"${reason}"`)).length;

beforeAll(async () => {
  redis = await startRedisServer();
  prod = await createTestCluster("prod", { alg: "ES256" });
  clock = createClock() as Clock & { advance(ms: number): void };
  emulator = await startEmulator({ world: brokerWorld(await createTestCluster("rrsa", { alg: "ES256" })), clock });
  config = brokerConfig({});
});

beforeEach(async () => {
  if (!redis.alive()) await redis.restart();
  await redis.client.flushall();
  emulator.log.clear();
  emulator.faults.clear();
  logs.lines.length = 0;
});

afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((r) => r.close()));
});

afterAll(async () => {
  await emulator?.close();
  await redis?.close();
});

describe("one cache for the fleet", () => {
  it("a second instance with an empty memory cache answers from the shared cache without any upstream call", async () => {
    const first = await instance().ask();
    expect(first.status).toBe(200);
    const calls = upstream();
    // AssumeRole + GetAuthorizationToken + ListInstanceEndpoint for the Enterprise instance, and the Personal token.
    expect(emulator.log.count({ api: "sts:AssumeRole" })).toBe(1);
    expect(emulator.log.count({ api: "cr:ListInstanceEndpoint" })).toBe(1);

    const second = await instance().ask();
    expect(second.status).toBe(200);
    expect(upstream()).toBe(calls);
    expect(second.body.credentials.map((c) => [c.password, c.expiresAt, c.domains])).toEqual(
      first.body.credentials.map((c) => [c.password, c.expiresAt, c.domains]),
    );
    expect(second.body.credentials.every((c) => !c.stale)).toBe(true);
  });

  it("three instances missing at once make one upstream refresh per chain between them", async () => {
    // Slow upstream, so that all three are in their miss at the same time.
    emulator.faults.set({ latencyMs: 400 });
    const answers = await Promise.all([instance(), instance(), instance()].map((i) => i.ask()));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    expect(emulator.log.count({ api: "sts:AssumeRole" })).toBe(1);
    expect(emulator.log.count({ api: "cr:GetAuthorizationToken" })).toBe(1);
    expect(emulator.log.count({ api: "cr:GetPersonalAuthorizationToken" })).toBe(1);
    expect(emulator.log.count({ api: "cr:ListInstanceEndpoint" })).toBe(1);
    const passwords = new Set(answers.flatMap((a) => a.body.credentials.map((c) => c.password)));
    expect(passwords.size).toBe(2);
  });

  it("an instance whose lease holder vanished takes over when the lease expires, within the request deadline", async () => {
    const name = "acr-credential-broker:credential:lease:broker#personal@cn-beijing";
    // A lease taken by an instance that then died: nobody will ever write the value or release it.
    await redis.client.set(name, "dead-instance", "PX", 1500);
    const started = performance.now();
    const answer = await instance().ask();
    expect(answer.status).toBe(200);
    expect(performance.now() - started).toBeGreaterThanOrEqual(1400);
    expect(emulator.log.count({ api: "cr:GetPersonalAuthorizationToken" })).toBe(1);
  });

  it("a dump of every key and value in Redis shows no password, secret key or security token", async () => {
    const answer = await instance().ask();
    expect(answer.status).toBe(200);
    const dump = await redis.dump();
    expect(dump.size).toBeGreaterThanOrEqual(4);
    // The secrets that went through the shared cache, read back with the key the test knows.
    const ring = { current: parseCacheKey(keyV1, "BROKER_CACHE_KEY") };
    const secrets = new Set<string>([brokerUser.accessKeySecret, ...answer.body.credentials.map((c) => c.password)]);
    for (const [name, value] of dump) {
      expect(value).toMatch(/^v1\.v1-2026\.[A-Za-z0-9_-]+$/);
      const opened = open(ring, name, value);
      expect(opened.ok).toBe(true);
      const entry = JSON.parse(opened.ok ? opened.plaintext : "{}") as Record<string, unknown>;
      for (const field of ["password", "accessKeySecret", "securityToken"]) if (typeof entry[field] === "string") secrets.add(entry[field]);
    }
    expect(secrets.size).toBeGreaterThanOrEqual(5);
    const everything = [...dump].flat().join("\n");
    secrets.add(keyV1.slice(keyV1.indexOf(":") + 1));
    for (const secret of secrets) {
      expect(logs.text()).not.toContain(secret);
      expect(everything).not.toContain(secret);
      expect(everything).not.toContain(Buffer.from(secret).toString("base64"));
      expect(everything).not.toContain(Buffer.from(secret).toString("base64url"));
    }
  });
});

describe("values that must not be served", () => {
  const personalName = "acr-credential-broker:credential:broker#personal@cn-beijing";
  const platformName = `acr-credential-broker:credential:broker>role(${roles.acrPull}|3600)#cri-plat@cn-hangzhou`;

  it("a tampered value is a miss: the next instance asks upstream and warns", async () => {
    await instance().ask();
    const sealed = (await redis.client.get(personalName))!;
    const flipped = sealed.slice(0, -5) + (sealed.at(-5) === "A" ? "B" : "A") + sealed.slice(-4);
    await redis.client.set(personalName, flipped, "PX", 60_000);
    const before = emulator.log.count({ api: "cr:GetPersonalAuthorizationToken" });
    const answer = await instance().ask();
    expect(answer.status).toBe(200);
    expect(emulator.log.count({ api: "cr:GetPersonalAuthorizationToken" })).toBe(before + 1);
    expect(logs.lines.some((l) => l.includes('"sharedCache":"unreadable"') && l.includes('"reason":"authentication"'))).toBe(true);
  });

  it("garbage under a key is a miss", async () => {
    await redis.client.set(personalName, "not a sealed value", "PX", 60_000);
    const answer = await instance().ask();
    expect(answer.status).toBe(200);
    expect(emulator.log.count({ api: "cr:GetPersonalAuthorizationToken" })).toBe(1);
    expect(logs.lines.some((l) => l.includes('"sharedCache":"unreadable"') && l.includes('"reason":"malformed"'))).toBe(true);
    // The refresh replaced the garbage with a sealed value.
    expect(await redis.client.get(personalName)).toMatch(/^v1\.v1-2026\./);
  });

  it("a value moved under another key does not open there", async () => {
    await instance().ask();
    // The Personal registry's password copied over the Enterprise instance's entry.
    await redis.client.set(platformName, (await redis.client.get(personalName))!, "PX", 60_000);
    const before = emulator.log.count({ api: "cr:GetAuthorizationToken" });
    const personalBefore = emulator.log.count({ api: "cr:GetPersonalAuthorizationToken" });
    const answer = await instance().ask();
    expect(answer.status).toBe(200);
    expect(emulator.log.count({ api: "cr:GetAuthorizationToken" })).toBe(before + 1);
    // The value under its own name still serves the fleet.
    expect(emulator.log.count({ api: "cr:GetPersonalAuthorizationToken" })).toBe(personalBefore);
    expect(logs.lines.some((l) => l.includes('"sharedCache":"unreadable"') && l.includes('"reason":"authentication"'))).toBe(true);
    const [enterprise, personalCredential] = [answer.body.credentials.find((c) => c.instanceId), answer.body.credentials.find((c) => !c.instanceId)];
    expect(enterprise!.password).not.toBe(personalCredential!.password);
  });

  it("a value past its expiry is never served, even while Redis still holds it", async () => {
    await instance().ask();
    clock.advance(3 * 3600_000);
    try {
      const before = upstream();
      const answer = await instance().ask();
      expect(answer.status).toBe(200);
      expect(upstream()).toBeGreaterThan(before);
      for (const c of answer.body.credentials) expect(Date.parse(c.expiresAt)).toBeGreaterThan(clock.now());
    } finally {
      clock.advance(-3 * 3600_000);
    }
  });
});

describe("a refresh that fails", () => {
  it("serves the fleet's still-valid value, flagged stale, to an instance that has none of its own", async () => {
    const warm = await instance().ask();
    // Inside the refresh window (due) but not expired, with every CR call failing.
    const due = Math.min(...warm.body.credentials.map((c) => Date.parse(c.expiresAt))) - clock.now() - 600_000;
    clock.advance(due);
    emulator.faults.set({ serverErrorRate: 1, apis: ["cr:"] });
    try {
      const answer = await instance().ask();
      expect(answer.status).toBe(200);
      expect(answer.body.credentials.map((c) => [c.password, c.stale])).toEqual(warm.body.credentials.map((c) => [c.password, true]));
      expect(emulator.log.count({ api: "cr:GetPersonalAuthorizationToken", outcome: "ok" })).toBe(1);
    } finally {
      clock.advance(-due);
    }
  });
});

describe("key rotation", () => {
  it("a value sealed under the previous key is served by instances that already use the new one", async () => {
    await instance({ env: { BROKER_CACHE_KEY: keyV1 } }).ask();
    const calls = upstream();
    const rotated = await instance({ env: { BROKER_CACHE_KEY: keyV2, BROKER_CACHE_PREVIOUS_KEY: keyV1 } }).ask();
    expect(rotated.status).toBe(200);
    expect(upstream()).toBe(calls);
  });

  it("without the previous key, old values are misses and new ones are sealed under the new key id", async () => {
    await instance({ env: { BROKER_CACHE_KEY: keyV1 } }).ask();
    const calls = upstream();
    expect((await instance({ env: { BROKER_CACHE_KEY: keyV2 } }).ask()).status).toBe(200);
    expect(upstream()).toBeGreaterThan(calls);
    const values = [...(await redis.dump()).values()];
    expect(values.some((v) => v.startsWith("v1.v2-2026."))).toBe(true);
  });
});

describe("the cache never takes the broker down", () => {
  it("with Redis killed, every request is answered from upstream and the warning is logged once, not per request", async () => {
    const one = instance();
    await redis.kill();
    const statuses: number[] = [];
    try {
      for (let i = 0; i < 8; i++) {
        // Past every credential's expiry: each request refreshes, through the shared layer.
        clock.advance(3 * 3600_000);
        statuses.push((await one.ask()).status);
      }
    } finally {
      clock.advance(-8 * 3 * 3600_000);
    }
    expect(statuses).toEqual(Array(8).fill(200));
    expect(emulator.log.count({ api: "cr:GetPersonalAuthorizationToken" })).toBe(8);
    expect(warnings("unavailable")).toBe(1);
    expect(warnings("breakerOpen")).toBe(1);
  });

  it("one instance through Redis killed, restarted empty and flushed: every answer 200, sharing resumes", async () => {
    const one = instance();
    expect((await one.ask()).status).toBe(200);
    await redis.kill();
    // Memory cache in front: still answered without upstream.
    const calls = upstream();
    expect((await one.ask()).status).toBe(200);
    expect(upstream()).toBe(calls);
    // A new instance while Redis is down goes upstream by itself.
    expect((await instance().ask()).status).toBe(200);
    expect(upstream()).toBeGreaterThan(calls);

    await redis.restart();
    // After the breaker's cool-down and the reconnect, a new instance fills the shared cache and the next shares it.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect((await instance().ask()).status).toBe(200);
    const afterRestart = upstream();
    expect((await instance().ask()).status).toBe(200);
    expect(upstream()).toBe(afterRestart);

    await redis.client.flushall();
    expect((await instance().ask()).status).toBe(200);
    const afterFlush = upstream();
    expect(afterFlush).toBeGreaterThan(afterRestart);
    expect((await instance().ask()).status).toBe(200);
    expect(upstream()).toBe(afterFlush);
  });

  it("with Redis hung (SIGSTOP), the breaker opens and later requests stop paying the operation timeout", async () => {
    const slow = instance({ config: brokerConfig({ operationTimeoutMs: 800, breakerCoolDownSeconds: 60 }) });
    const child = redis.pid();
    process.kill(child, "SIGSTOP");
    try {
      const durations: number[] = [];
      for (let i = 0; i < 6; i++) {
        const started = performance.now();
        expect((await slow.ask()).status).toBe(200);
        durations.push(performance.now() - started);
        clock.advance(3 * 3600_000);
      }
      expect(warnings("breakerOpen")).toBe(1);
      // Three timed-out operations open the breaker during the first request; after that none is tried.
      expect(Math.max(...durations.slice(2))).toBeLessThan(800);
    } finally {
      clock.advance(-6 * 3 * 3600_000);
      process.kill(child, "SIGCONT");
    }
  });
});

describe("a full Redis (maxmemory, noeviction)", () => {
  let full: RedisServer;
  beforeAll(async () => {
    full = await startRedisServer({ maxmemory: "2mb" });
    const filler = "x".repeat(10_000);
    for (let i = 0; ; i++) {
      try {
        await full.client.set(`filler:${i}`, filler);
      } catch {
        break;
      }
    }
  });
  afterAll(() => full?.close());

  it("refuses the broker's writes and leases, and every request is still answered", async () => {
    const fullConfig = brokerConfig({ url: full.url });
    const answers = await Promise.all([instance({ config: fullConfig }), instance({ config: fullConfig })].map((i) => i.ask()));
    expect(answers.map((a) => a.status)).toEqual([200, 200]);
    expect(warnings("refused")).toBeGreaterThanOrEqual(1);
    expect([...(await full.client.keys("acr-credential-broker:*"))]).toEqual([]);
  });
});

describe("rediss:// (TLS)", () => {
  it("shares credentials over TLS with the CA from sharedCache.caFile", async () => {
    const tls = await startRedisServer({ tls: true });
    const dir = await mkdtemp(join(tmpdir(), "shared-cache-ca-"));
    try {
      await writeFile(join(dir, "tair-ca.pem"), tls.caPem!);
      const tlsConfig = brokerConfig({ url: tls.url, caFile: "tair-ca.pem" });
      expect((await instance({ config: tlsConfig, baseDir: dir }).ask()).status).toBe(200);
      const calls = upstream();
      expect((await instance({ config: tlsConfig, baseDir: dir }).ask()).status).toBe(200);
      expect(upstream()).toBe(calls);
      expect((await tls.client.keys("acr-credential-broker:credential:*")).length).toBe(2);
    } finally {
      await Promise.all(runtimes.splice(0).map((r) => r.close()));
      await tls.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
