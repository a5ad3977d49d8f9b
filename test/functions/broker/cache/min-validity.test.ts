/**
 * `minValiditySeconds`: a fleet of clusters renewing on schedule shares one upstream refresh. Broker
 * instances (each its own runtime and memory cache) in front of one real redis-server and the
 * emulator, whose request log counts what the whole fleet asked upstream; the emulator's clock moves
 * the credentials towards their expiry.
 */
import { randomBytes } from "node:crypto";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createClock, startEmulator, type Clock, type Emulator } from "../../../../emulator/index.ts";
import { serves } from "../../../../functions/broker/cache/policy.ts";
import { parseConfig, type BrokerConfig } from "../../../../functions/broker/config.ts";
import { createHandler } from "../../../../functions/broker/handler.ts";
import { createRuntime, type BrokerRuntime } from "../../../../functions/broker/runtime.ts";
import type { CredentialsResponse } from "../../../../shared/broker-api.ts";
import { startRedisServer, type RedisServer } from "../../../support/redis-server.ts";
import { createTestCluster, defaultSubject, type TestCluster } from "../support/clusters.ts";
import { bearer, invokeHttp, testContext } from "../support/invoke.ts";
import { captureLogs } from "../support/logs.ts";
import { brokerUser, brokerWorld, instances, roles } from "../support/world.ts";

const cacheKey = `k1:${randomBytes(32).toString("base64")}`;
const platform = { instanceId: instances.platform.instanceId, regionId: instances.platform.regionId, assumeRoleArn: roles.acrPull, expireDuration: 3600 };
const personal = { regionId: "cn-beijing" };
const registries = [platform, personal];
const clusterCount = 12;
const minute = 60_000;

let redis: RedisServer;
let emulator: Emulator;
let clock: Clock & { advance(ms: number): void };
let fleet: TestCluster[];
const logs = captureLogs();
const runtimes: BrokerRuntime[] = [];

function brokerConfig(shared: boolean, extra: Record<string, unknown> = {}): BrokerConfig {
  return parseConfig(
    {
      audience: "acr-credential-broker",
      requestTimeoutSeconds: 10,
      ...extra,
      alibabaCloud: { stsEndpoint: emulator.endpoints.sts, crEndpoint: emulator.endpoints.cr, protocol: "http" },
      clusters: fleet.map((cluster) => ({ name: cluster.name, issuer: cluster.issuer, jwks: cluster.jwks, subjects: [defaultSubject], registries })),
      ...(shared ? { sharedCache: { url: redis.url, operationTimeoutMs: 300, leaseSeconds: 3 } } : {}),
    },
    "test",
  );
}

/** A new broker instance: empty memory cache, with or without the shared cache. */
function instance(shared = true, extra: Record<string, unknown> = {}) {
  const runtime = createRuntime({
    loaded: { config: brokerConfig(shared, extra), baseDir: ".", source: "test" },
    log: logs.log,
    clock,
    env: { BROKER_CACHE_KEY: cacheKey },
    backoff: { baseDelayMs: 5, maxDelayMs: 20, maxAttempts: 3 },
  });
  runtimes.push(runtime);
  const handler = createHandler(() => runtime);
  return async (cluster: TestCluster, body: Record<string, unknown> = {}, token?: string) => {
    const answer = await invokeHttp(handler, { headers: bearer(token ?? (await cluster.mint({ now: clock.now() }))), body }, testContext(brokerUser));
    return { status: answer.status, body: answer.json as unknown as CredentialsResponse & { error?: { code: string; message: string } } };
  };
}

const upstream = () => emulator.log.count({ api: "sts:" }) + emulator.log.count({ api: "cr:" });
const remainingMinutes = (answer: { body: CredentialsResponse }) =>
  Math.min(...answer.body.credentials.map((c) => (Date.parse(c.expiresAt) - clock.now()) / minute));

beforeAll(async () => {
  redis = await startRedisServer();
  fleet = await Promise.all(Array.from({ length: clusterCount }, (_, i) => createTestCluster(`c${i}`, { alg: "ES256" })));
  clock = createClock() as Clock & { advance(ms: number): void };
  emulator = await startEmulator({ world: brokerWorld(await createTestCluster("rrsa", { alg: "ES256" })), clock });
});

beforeEach(async () => {
  await redis.client.flushall();
  emulator.log.clear();
  emulator.faults.clear();
});

afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((r) => r.close()));
});

afterAll(async () => {
  await emulator?.close();
  await redis?.close();
});

/** Every cluster asks once through one of the instances, all at once. */
const everyone = (asks: ReturnType<typeof instance>[], body: Record<string, unknown>) =>
  Promise.all(fleet.map((cluster, i) => asks[i % asks.length]!(cluster, body)));

describe("minValiditySeconds across a fleet", () => {
  it("a whole fleet renewing with minValiditySeconds through three instances makes one upstream refresh per credential", async () => {
    const asks = [instance(), instance(), instance()];
    expect((await asks[0]!(fleet[0]!)).status).toBe(200);
    // 40 minutes on, the one-hour credentials have 20 minutes left: fresh for the broker (15), due for the refresher.
    clock.advance(40 * minute);
    emulator.log.clear();
    // Slow upstream, so that every instance is in its miss at the same time.
    emulator.faults.set({ latencyMs: 300 });

    const answers = await everyone(asks, { registries, minValiditySeconds: 25 * 60 });
    expect(answers.map((a) => a.status)).toEqual(fleet.map(() => 200));
    expect(emulator.log.count({ api: "sts:AssumeRole" })).toBe(1);
    expect(emulator.log.count({ api: "cr:GetAuthorizationToken" })).toBe(1);
    expect(emulator.log.count({ api: "cr:GetPersonalAuthorizationToken" })).toBe(1);
    // Every cluster holds the same new credentials, valid for about an hour again.
    expect(new Set(answers.flatMap((a) => a.body.credentials.map((c) => c.password))).size).toBe(2);
    for (const answer of answers) expect(remainingMinutes(answer)).toBeGreaterThan(55);
  });

  it("clusters arriving one after another (a spread fleet) share one refresh with minValiditySeconds, and pay one each with force", async () => {
    const asks = [instance(), instance(), instance()];
    expect((await asks[0]!(fleet[0]!)).status).toBe(200);
    clock.advance(40 * minute);
    const renewOneByOne = async (body: Record<string, unknown>) => {
      emulator.log.clear();
      for (const [i, cluster] of fleet.entries()) {
        expect((await asks[i % asks.length]!(cluster, body)).status).toBe(200);
        clock.advance(5_000);
      }
      return {
        credentials: emulator.log.count({ api: "cr:GetAuthorizationToken" }) + emulator.log.count({ api: "cr:GetPersonalAuthorizationToken" }),
        sessions: emulator.log.count({ api: "sts:AssumeRole" }),
      };
    };
    expect(await renewOneByOne({ registries, minValiditySeconds: 25 * 60 })).toEqual({ credentials: 2, sessions: 1 });
    // The same renewal with force, 40 minutes later again.
    clock.advance(40 * minute);
    expect(await renewOneByOne({ registries, force: true })).toEqual({ credentials: 2 * clusterCount, sessions: clusterCount });
  });

  it("a credential with enough validity left is answered from the cache, with no upstream call", async () => {
    const ask = instance();
    expect((await ask(fleet[0]!)).status).toBe(200);
    clock.advance(30 * minute);
    const calls = upstream();
    const answers = await Promise.all(fleet.map((cluster) => ask(cluster, { registries, minValiditySeconds: 25 * 60 })));
    expect(answers.every((a) => a.status === 200)).toBe(true);
    expect(upstream()).toBe(calls);
    for (const answer of answers) expect(remainingMinutes(answer)).toBeCloseTo(30, 0);
  });

  it("without the shared cache, one instance's concurrent askers share one refresh", async () => {
    const ask = instance(false);
    expect((await ask(fleet[0]!)).status).toBe(200);
    clock.advance(40 * minute);
    emulator.log.clear();
    emulator.faults.set({ latencyMs: 300 });
    const answers = await Promise.all(fleet.map((cluster) => ask(cluster, { registries, minValiditySeconds: 25 * 60 })));
    expect(answers.every((a) => a.status === 200)).toBe(true);
    expect(emulator.log.count({ api: "cr:GetAuthorizationToken" })).toBe(1);
    expect(emulator.log.count({ api: "sts:AssumeRole" })).toBe(1);
    // The refreshed credentials are remembered: asking again costs nothing.
    const again = await ask(fleet[1]!, { registries, minValiditySeconds: 25 * 60 });
    expect(again.status).toBe(200);
    expect(emulator.log.count({ api: "cr:GetAuthorizationToken" })).toBe(1);
  });

  it("an unforced request without minValiditySeconds still gets the cached credential with 20 minutes left", async () => {
    const ask = instance();
    expect((await ask(fleet[0]!)).status).toBe(200);
    clock.advance(40 * minute);
    const calls = upstream();
    const answer = await ask(fleet[1]!, { registries });
    expect(answer.status).toBe(200);
    expect(upstream()).toBe(calls);
    expect(remainingMinutes(answer)).toBeCloseTo(20, 0);
  });

  it("a renewal for minValiditySeconds ends the instance's remembered answers: the same token and body then get the new credential", async () => {
    const ask = instance(false);
    expect((await ask(fleet[0]!)).status).toBe(200);
    clock.advance(40 * minute);
    const token = await fleet[1]!.mint({ now: clock.now() });
    const before = await ask(fleet[1]!, { registries }, token);
    // Remembered: asked again, the same answer (the old credential, 20 minutes left and still fresh for the broker).
    expect((await ask(fleet[1]!, { registries }, token)).body.credentials).toEqual(before.body.credentials);
    const renewed = await ask(fleet[2]!, { registries, minValiditySeconds: 25 * 60 });
    expect(remainingMinutes(renewed)).toBeGreaterThan(55);
    const after = await ask(fleet[1]!, { registries }, token);
    expect(after.body.credentials.map((c) => c.password)).toEqual(renewed.body.credentials.map((c) => c.password));
  });

  it("a credential shorter than twice the asked validity is refreshed at half its life, not on every request", async () => {
    // 15-minute sessions (so 15-minute passwords), asked for 25 minutes: more than a new one ever has.
    const ask = instance(false, { refreshBeforeExpirySeconds: 120 });
    const body = { registries: [{ ...platform, expireDuration: 900 }], minValiditySeconds: 25 * 60 };
    expect((await ask(fleet[0]!, body)).status).toBe(200);
    emulator.log.clear();
    for (let i = 0; i < 6; i++) {
      expect((await ask(fleet[i]!, body)).status).toBe(200);
      clock.advance(minute);
    }
    // Six requests over six minutes, with more than half of the 15 minutes left: no refresh.
    expect(emulator.log.count({ api: "cr:GetAuthorizationToken" })).toBe(0);
    clock.advance(2 * minute);
    for (let i = 0; i < 3; i++) expect((await ask(fleet[i]!, body)).status).toBe(200);
    // Past half its life: refreshed once, then served.
    expect(emulator.log.count({ api: "cr:GetAuthorizationToken" })).toBe(1);
  });

  it.each([
    [1801, "minValiditySeconds: is at most 1800 seconds"],
    [-1, "minValiditySeconds: must not be negative"],
    [90.5, "minValiditySeconds: must be a whole number of seconds"],
    ["1500", "minValiditySeconds: must be a whole number of seconds"],
  ])("minValiditySeconds %j is refused with InvalidRequest, before any upstream call", async (value, message) => {
    const ask = instance();
    const answer = await ask(fleet[0]!, { registries, minValiditySeconds: value });
    expect(answer.status).toBe(400);
    expect(answer.body.error?.code).toBe("InvalidRequest");
    expect(answer.body.error?.message).toContain(message);
    expect(upstream()).toBe(0);
  });
});

describe("serves (pure policy)", () => {
  const issuedAt = 0;
  const hour = { issuedAt, expiresAt: 60 * minute };
  it("serves an entry with at least the asked validity left, and never one past the refresh threshold", () => {
    expect(serves(hour, 34 * minute, 15 * minute, 25 * 60_000)).toBe(true);
    expect(serves(hour, 35 * minute, 15 * minute, 25 * 60_000)).toBe(false);
    expect(serves(hour, 45 * minute, 15 * minute, 0)).toBe(false);
    expect(serves(hour, 44 * minute, 15 * minute, undefined)).toBe(true);
  });

  it("asks no more than half an entry's lifetime, so a short credential is not refreshed on every request", () => {
    const short = { issuedAt, expiresAt: 20 * minute };
    // Need 25 min of a 20-minute credential: capped at 10 min left.
    expect(serves(short, 9 * minute, 0, 25 * 60_000)).toBe(true);
    expect(serves(short, 10 * minute, 0, 25 * 60_000)).toBe(false);
    // Lifetime unknown (a value written before issuedAt existed): the need as asked.
    expect(serves({ expiresAt: 60 * minute }, 35 * minute, 0, 25 * 60_000)).toBe(false);
  });
});
