/**
 * `acr-credential broker` processes sharing one real redis-server, as a fleet of instances of one
 * function: together they make one upstream refresh per chain, and one killed (SIGKILL) while it
 * holds a refresh lease only delays the others until the lease expires.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startEmulator, type Emulator } from "../../../../emulator/index.ts";
import type { CredentialsResponse } from "../../../../shared/broker-api.ts";
import { startBrokerProcess, type BrokerProcess } from "../../../reliability/support/broker-process.ts";
import { startRedisServer, type RedisServer } from "../../../support/redis-server.ts";
import { createTestCluster, defaultSubject, type TestCluster } from "../support/clusters.ts";
import { brokerUser, brokerWorld, instances, roles } from "../support/world.ts";

const leaseSeconds = 2;
const personalLease = "acr-credential-broker:credential:lease:broker#personal@cn-beijing";
let redis: RedisServer;
let emulator: Emulator;
let prod: TestCluster;
let brokers: BrokerProcess[] = [];

beforeAll(async () => {
  redis = await startRedisServer();
  prod = await createTestCluster("prod");
  emulator = await startEmulator({ world: brokerWorld(await createTestCluster("rrsa", { alg: "ES256" })) });
  const config = {
    audience: "acr-credential-broker",
    requestTimeoutSeconds: 15,
    alibabaCloud: { stsEndpoint: emulator.endpoints.sts, crEndpoint: emulator.endpoints.cr, protocol: "http" },
    clusters: [
      {
        name: "prod",
        issuer: prod.issuer,
        jwks: prod.jwks,
        subjects: [defaultSubject],
        registries: [
          { instanceId: instances.platform.instanceId, regionId: instances.platform.regionId, assumeRoleArn: roles.acrPull, expireDuration: 3600 },
          { regionId: "cn-beijing" },
        ],
      },
    ],
    sharedCache: { url: redis.url, leaseSeconds },
  };
  const env = { BROKER_CACHE_KEY: `fleet-1:${randomBytes(32).toString("base64")}` };
  brokers = await Promise.all([0, 1, 2].map(() => startBrokerProcess({ config, identity: brokerUser, env })));
}, 120_000);

afterAll(async () => {
  await Promise.all(brokers.map((b) => b.stop()));
  await emulator?.close();
  await redis?.close();
});

beforeEach(async () => {
  await redis.client.flushall();
  emulator.log.clear();
  emulator.faults.clear();
});

const enterprise = { instanceId: instances.platform.instanceId, regionId: instances.platform.regionId, assumeRoleArn: roles.acrPull };
const personal = { regionId: "cn-beijing" };

/** Each test asks for its own registry, so that no process has it in memory from an earlier test. */
async function ask(broker: BrokerProcess, registry: Record<string, string>): Promise<CredentialsResponse> {
  const response = await fetch(`${broker.url}/v1/credentials`, {
    method: "POST",
    headers: { authorization: `Bearer ${await prod.mint()}`, "content-type": "application/json" },
    body: JSON.stringify({ registries: [registry] }),
  });
  expect(response.status).toBe(200);
  return (await response.json()) as CredentialsResponse;
}

describe("broker processes sharing one Redis", () => {
  it("three processes asked at once make one STS and one CR call per chain between them", async () => {
    emulator.faults.set({ latencyMs: 300 });
    const answers = await Promise.all(brokers.map((b) => ask(b, enterprise)));
    expect(emulator.log.count({ api: "sts:AssumeRole" })).toBe(1);
    expect(emulator.log.count({ api: "cr:GetAuthorizationToken" })).toBe(1);
    expect(emulator.log.count({ api: "cr:ListInstanceEndpoint" })).toBe(1);
    expect(emulator.log.count({ api: "cr:" })).toBe(2);
    expect(new Set(answers.map((a) => a.credentials.map((c) => c.password).join()))).toHaveProperty("size", 1);
  });

  it("a process SIGKILLed while it holds the refresh lease: the next request takes over when the lease expires", async () => {
    const [holder, next, later] = brokers as [BrokerProcess, BrokerProcess, BrokerProcess];
    // The holder's Personal token call hangs upstream, so it is killed mid-refresh.
    emulator.faults.set({ latencyMs: 30_000, apis: ["cr:GetPersonalAuthorizationToken"] });
    const dying = fetch(`${holder.url}/v1/credentials`, {
      method: "POST",
      headers: { authorization: `Bearer ${await prod.mint()}` },
      body: JSON.stringify({ registries: [personal] }),
    }).catch((error: unknown) => error);
    for (let i = 0; i < 200 && (await redis.client.exists(personalLease)) === 0; i++) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await redis.client.exists(personalLease)).toBe(1);
    holder.child.kill("SIGKILL");
    expect(await dying).toBeInstanceOf(Error);
    emulator.faults.clear();

    const started = performance.now();
    const taken = await ask(next, personal);
    const waitedMs = performance.now() - started;
    const [credential] = taken.credentials;
    expect(credential!.password).toEqual(expect.any(String));
    // It waited for the dead holder's lease rather than refreshing beside it, then refreshed once.
    expect(waitedMs).toBeGreaterThan(leaseSeconds * 1000 - 800);
    const personalCalls = emulator.log.count({ api: "cr:GetPersonalAuthorizationToken", outcome: "ok" });
    const fromLater = await ask(later, personal);
    expect(fromLater.credentials[0]!.password).toBe(credential!.password);
    expect(emulator.log.count({ api: "cr:GetPersonalAuthorizationToken", outcome: "ok" })).toBe(personalCalls);
    expect(later.output() + next.output()).not.toContain(credential!.password);
  });
});
