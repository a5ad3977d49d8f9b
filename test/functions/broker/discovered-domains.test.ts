/**
 * An Enterprise instance's discovered domains (ListInstanceEndpoint) are cached apart from its
 * credential: renewals within `discoveredDomainsTtlSeconds` reuse them, `force` asks again, and
 * with `sharedCache` one instance's discovery serves every instance. Through the FC handler, the
 * real SDK clients, the emulator (whose request log counts the calls) and a real redis-server.
 */
import { randomBytes } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { instanceEndpoints } from "../../../emulator/world.ts";
import type { CredentialsResponse } from "../../../shared/broker-api.ts";
import { startRedisServer, type RedisServer } from "../../support/redis-server.ts";
import { startBrokerEnv, type BrokerEnv } from "./support/broker-env.ts";
import { createTestCluster, type TestCluster } from "./support/clusters.ts";
import { bearer, invokeHttp, type FcHandler } from "./support/invoke.ts";
import { instances, platform, roles } from "./support/world.ts";

const entry = { instanceId: instances.platform.instanceId, regionId: instances.platform.regionId, assumeRoleArn: roles.acrPull, expireDuration: 3600 };
const hour = 3600_000;
/** The default `discoveredDomainsTtlSeconds`. */
const ttlMs = 6 * hour;
const addedDomain = "pull.platform.example.com";

let prod: TestCluster;
const envs: BrokerEnv[] = [];

beforeAll(async () => {
  prod = await createTestCluster("prod", { alg: "ES256" });
});

afterEach(async () => {
  await Promise.all(envs.splice(0).map((env) => env.close()));
});

async function broker(options: { config?: Record<string, unknown>; env?: Record<string, string> } = {}): Promise<BrokerEnv> {
  const env = await startBrokerEnv({ frozenClock: true, clusters: () => [{ name: "prod", key: prod, registries: [entry] }], ...options });
  envs.push(env);
  return env;
}

/** One refresher request to one broker instance: its status, and the instance's domains and password. */
async function ask(env: BrokerEnv, body: Record<string, unknown> = {}, handler: FcHandler = env.handler) {
  const answer = await invokeHttp(handler, { headers: bearer(await prod.mint({ now: env.clock.now() })), body }, env.context());
  const [credential] = (answer.json as unknown as CredentialsResponse).credentials ?? [];
  return { status: answer.status, domains: credential?.domains, password: credential?.password, stale: credential?.stale };
}

const discoveries = (env: BrokerEnv, outcome?: "ok") => env.emulator.log.count({ api: "cr:ListInstanceEndpoint", ...(outcome ? { outcome } : {}) });
const tokens = (env: BrokerEnv) => env.emulator.log.count({ api: "cr:GetAuthorizationToken" });

/** What an operator does in the console: adds a custom domain to the instance's internet endpoint. */
function addDomain(env: BrokerEnv): void {
  const instance = env.emulator.world.accounts.find((a) => a.id === platform)!.instances.find((i) => i.id === entry.instanceId)!;
  instance.endpoints = instanceEndpoints(instance).map((endpoint) =>
    endpoint.type === "internet" ? { ...endpoint, domains: [...endpoint.domains, { domain: addedDomain, type: "USER" as const }] } : endpoint,
  );
}

describe("discovered domains, cached apart from the credential", () => {
  it("are asked once for two renewals within their TTL", async () => {
    const env = await broker();
    const start = env.clock.now();
    const first = await ask(env);
    // Each one-hour credential has expired: these are renewals, the domains are not asked again.
    env.clock.set(start + 2 * hour);
    const second = await ask(env);
    env.clock.set(start + 4 * hour);
    const third = await ask(env);
    expect([first.status, second.status, third.status]).toEqual([200, 200, 200]);
    expect(new Set([first.password, second.password, third.password]).size).toBe(3);
    expect(tokens(env)).toBe(3);
    expect(discoveries(env)).toBe(1);
    expect(third.domains).toEqual(first.domains);
    expect([...first.domains!].sort()).toEqual([...instances.platform.domains].sort());
  });

  it("are asked again after the TTL, not before", async () => {
    const env = await broker();
    const start = env.clock.now();
    await ask(env);
    addDomain(env);
    env.clock.set(start + ttlMs - 60_000);
    const before = await ask(env);
    expect(before.domains).not.toContain(addedDomain);
    expect(discoveries(env)).toBe(1);
    env.clock.set(start + ttlMs + 60_000);
    const after = await ask(env);
    expect(after.domains).toContain(addedDomain);
    expect(discoveries(env)).toBe(2);
  });

  it("follow discoveredDomainsTtlSeconds from the configuration", async () => {
    const env = await broker({ config: { discoveredDomainsTtlSeconds: 7200 } });
    const start = env.clock.now();
    await ask(env);
    env.clock.set(start + 7200_000 - 60_000);
    await ask(env);
    expect(discoveries(env)).toBe(1);
    env.clock.set(start + 7200_000 + 60_000);
    await ask(env);
    expect(discoveries(env)).toBe(2);
  });

  it("are asked again with force (the refresher's resync), which reports a domain added since", async () => {
    const env = await broker();
    const first = await ask(env);
    addDomain(env);
    const unforced = await ask(env);
    expect(unforced.domains).toEqual(first.domains);
    expect(discoveries(env)).toBe(1);
    const forced = await ask(env, { force: true });
    expect(forced.status).toBe(200);
    expect(forced.domains).toContain(addedDomain);
    expect(discoveries(env)).toBe(2);
    // The forced discovery is the cached one from now on.
    env.clock.advance(2 * hour);
    expect((await ask(env)).domains).toContain(addedDomain);
    expect(discoveries(env)).toBe(2);
  });
});

describe("a discovery that fails", () => {
  it("is not cached: the next request asks again and gets the domains", async () => {
    const env = await broker();
    env.emulator.faults.set({ serverErrorRate: 1, apis: ["cr:ListInstanceEndpoint"] });
    const failed = await ask(env);
    expect(failed.status).toBe(502);
    const attempts = discoveries(env);
    expect(attempts).toBeGreaterThanOrEqual(1);
    env.emulator.faults.clear();
    const next = await ask(env);
    expect(next.status).toBe(200);
    expect([...next.domains!].sort()).toEqual([...instances.platform.domains].sort());
    expect(discoveries(env)).toBe(attempts + 1);
  });

  it("nor is an instance without any enabled endpoint: enabling one is seen on the next request", async () => {
    const env = await broker();
    const instance = env.emulator.world.accounts.find((a) => a.id === platform)!.instances.find((i) => i.id === entry.instanceId)!;
    const enabled = instanceEndpoints(instance);
    instance.endpoints = enabled.map((endpoint) => ({ ...endpoint, enable: false }));
    const refused = await invokeHttp(env.handler, { headers: bearer(await prod.mint({ now: env.clock.now() })), body: {} }, env.context());
    expect(refused.status).toBe(502);
    expect(JSON.stringify(refused.json)).toContain("has no enabled registry endpoint; enable one, or configure domains for it");
    instance.endpoints = enabled;
    const next = await ask(env);
    expect(next.status).toBe(200);
    expect([...next.domains!].sort()).toEqual([...instances.platform.domains].sort());
    expect(discoveries(env)).toBe(2);
  });

  it("after the TTL, or forced, keeps the domains already known and tries again on the next request", async () => {
    const env = await broker();
    const start = env.clock.now();
    const first = await ask(env);
    env.emulator.faults.set({ serverErrorRate: 1, apis: ["cr:ListInstanceEndpoint"] });
    const forced = await ask(env, { force: true });
    expect(forced).toMatchObject({ status: 200, domains: first.domains });
    env.clock.set(start + ttlMs + 60_000);
    const due = await ask(env);
    expect(due).toMatchObject({ status: 200, domains: first.domains });
    expect(discoveries(env, "ok")).toBe(1);
    env.emulator.faults.clear();
    addDomain(env);
    expect((await ask(env)).domains).toContain(addedDomain);
    expect(discoveries(env, "ok")).toBe(2);
  });
});

describe("with the shared cache", () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedisServer();
  });
  afterAll(() => redis?.close());

  it("one instance's discovery serves another instance's renewal, and a forced one serves the instances after it", async () => {
    const env = await broker({
      config: { sharedCache: { url: redis.url } },
      env: { BROKER_CACHE_KEY: `domains-2026:${randomBytes(32).toString("base64")}` },
    });
    const start = env.clock.now();
    const first = await ask(env);
    // A new instance (empty memory) renews the expired credential two hours later.
    env.clock.set(start + 2 * hour);
    const second = await ask(env, {}, env.freshHandler());
    expect(second.status).toBe(200);
    expect(second.password).not.toBe(first.password);
    expect(second.domains).toEqual(first.domains);
    expect(tokens(env)).toBe(2);
    expect(discoveries(env)).toBe(1);

    addDomain(env);
    expect((await ask(env, { force: true })).domains).toContain(addedDomain);
    expect(discoveries(env)).toBe(2);
    const third = await ask(env, {}, env.freshHandler());
    expect(third.domains).toContain(addedDomain);
    expect(discoveries(env)).toBe(2);
  });
});
