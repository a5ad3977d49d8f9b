/**
 * Every line a broker request writes carries that request's id, and its cluster once the token
 * named it: not only the access line, but an upstream retry and a shared-cache warning written deep
 * in the issuing code. Real parts: the emulator's SDK endpoints (with injected server errors), a
 * real redis-server holding an entry sealed with a key this instance does not have.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createClock, startEmulator, type Emulator } from "../../../emulator/index.ts";
import { parseConfig } from "../../../functions/broker/config.ts";
import { createHandler } from "../../../functions/broker/handler.ts";
import { createRuntime, type BrokerRuntime } from "../../../functions/broker/runtime.ts";
import { serveHttp } from "../../../functions/broker/server.ts";
import { identityFromKeys } from "../../../shared/alibaba/identity.ts";
import { startRedisServer, type RedisServer } from "../../support/redis-server.ts";
import { createTestCluster, defaultSubject, type TestCluster } from "./support/clusters.ts";
import { bearer, invokeHttp, testContext } from "./support/invoke.ts";
import { captureLogs } from "./support/logs.ts";
import { brokerUser, brokerWorld } from "./support/world.ts";

const personal = { regionId: "cn-beijing" };
const clock = createClock({ frozen: true });
const logs = captureLogs();
let emulator: Emulator;
let redis: RedisServer;
let prod: TestCluster;
const runtimes: BrokerRuntime[] = [];

type Line = Record<string, unknown> & { msg: string };
const parsed = (): Line[] => logs.lines.map((line) => JSON.parse(line) as Line);

function broker(options: { sharedCacheKey?: string } = {}) {
  const config = parseConfig(
    {
      audience: "acr-credential-broker",
      alibabaCloud: { stsEndpoint: emulator.endpoints.sts, crEndpoint: emulator.endpoints.cr, protocol: "http" },
      clusters: [{ name: "prod", issuer: prod.issuer, jwks: prod.jwks, subjects: [defaultSubject], registries: [personal] }],
      ...(options.sharedCacheKey ? { sharedCache: { url: redis.url, operationTimeoutMs: 500 } } : {}),
    },
    "test",
  );
  const runtime = createRuntime({
    loaded: { config, baseDir: ".", source: "test" },
    log: logs.log,
    clock,
    backoff: { baseDelayMs: 1, maxDelayMs: 5, maxAttempts: 3 },
    env: options.sharedCacheKey ? { BROKER_CACHE_KEY: options.sharedCacheKey } : {},
  });
  runtimes.push(runtime);
  const handler = createHandler(() => runtime);
  const ask = async () => {
    const answer = await invokeHttp(handler, { headers: bearer(await prod.mint({ now: clock.now() })), body: {} }, testContext(brokerUser));
    return { status: answer.status, requestId: answer.headers["x-request-id"]! };
  };
  return Object.assign(ask, { runtime });
}

beforeAll(async () => {
  [prod, redis] = await Promise.all([createTestCluster("prod"), startRedisServer()]);
  emulator = await startEmulator({ world: brokerWorld(await createTestCluster("rrsa", { alg: "ES256" })), clock });
});

beforeEach(async () => {
  emulator.faults.clear();
  logs.lines.length = 0;
  await Promise.all(runtimes.splice(0).map((r) => r.close()));
});

afterAll(async () => {
  await Promise.all(runtimes.splice(0).map((r) => r.close()));
  await emulator?.close();
  await redis?.close();
});

describe("a broker request's log lines", () => {
  it("an upstream retry is logged with the request id and cluster of the request that made it, and each request's with its own", async () => {
    const ask = broker();
    emulator.faults.set({ serverErrorRate: 1, apis: ["cr:GetPersonalAuthorizationToken"] });
    const first = await ask();
    const second = await ask();
    expect([first.status, second.status].every((s) => s >= 500)).toBe(true);
    expect(first.requestId).not.toBe(second.requestId);

    const retries = parsed().filter((l) => l.msg === "upstream call failed; retrying");
    // Three attempts each: two retries per request.
    expect(retries.map((l) => l.requestId)).toEqual([first.requestId, first.requestId, second.requestId, second.requestId]);
    for (const line of retries) {
      expect(line.cluster).toBe("prod");
      expect(line.err).toMatchObject({ code: expect.stringMatching(/^Upstream/) });
      expect(line.err).not.toHaveProperty("stack");
    }
    // Every line but the broker-wide ones belongs to a request.
    expect(parsed().filter((l) => l.requestId === undefined)).toEqual([]);
  });

  it("the broker's own HTTP server (custom runtime, local) binds the request id the same way", async () => {
    const { runtime } = broker();
    const server = await serveHttp(runtime, { port: 0, baseIdentity: identityFromKeys(brokerUser) });
    try {
      emulator.faults.set({ serverErrorRate: 1, apis: ["cr:GetPersonalAuthorizationToken"] });
      const response = await fetch(`${server.url}/v1/credentials`, { method: "POST", headers: bearer(await prod.mint({ now: clock.now() })), body: "{}" });
      expect(response.status).toBeGreaterThanOrEqual(500);
      const retries = parsed().filter((l) => l.msg === "upstream call failed; retrying");
      expect(retries.length).toBe(2);
      for (const line of retries) expect(line).toMatchObject({ requestId: response.headers.get("x-request-id"), cluster: "prod" });
    } finally {
      await server.close();
    }
  });

  it("a shared-cache warning written while serving a request carries that request's id and cluster", async () => {
    // One instance fills the shared cache under its key; an instance with another key cannot open the entry.
    expect((await broker({ sharedCacheKey: `a-2026:${randomBytes(32).toString("base64")}` })()).status).toBe(200);
    logs.lines.length = 0;
    const answer = await broker({ sharedCacheKey: `b-2026:${randomBytes(32).toString("base64")}` })();
    expect(answer.status).toBe(200);

    const warnings = parsed().filter((l) => l.sharedCache === "unreadable");
    expect(warnings.length).toBeGreaterThan(0);
    for (const line of warnings) expect(line).toMatchObject({ requestId: answer.requestId, cluster: "prod" });
  });
});
