/**
 * Every kind of request the broker serves — issued, cached, stale, refused, failed, forced,
 * renewed, RRSA — with its log captured, then searched for every secret that passed through it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClock, startEmulator, type Emulator } from "../../../emulator/index.ts";
import { parseConfig } from "../../../functions/broker/config.ts";
import { createHandler } from "../../../functions/broker/handler.ts";
import { createRuntime } from "../../../functions/broker/runtime.ts";
import { createAlibabaCloud, type AlibabaCloud } from "../../../shared/alibaba/cloud.ts";
import type { CredentialsResponse } from "../../../shared/broker-api.ts";
import { createTestCluster, defaultSubject, type TestCluster } from "./support/clusters.ts";
import { bearer, invokeHttp, testContext, type FcHandler } from "./support/invoke.ts";
import { captureLogs } from "./support/logs.ts";
import { brokerUser, brokerWorld, instances, roles, rrsaProvider } from "./support/world.ts";

let emulator: Emulator;
let handler: FcHandler;
let prod: TestCluster;
let rrsa: TestCluster;
const logs = captureLogs();
const secrets = new Set<string>([brokerUser.accessKeySecret]);
const clock = createClock({ frozen: true });

/** The real SDK clients, with every STS secret and registry password they return noted. */
function observed(cloud: AlibabaCloud): AlibabaCloud {
  const note = <T>(value: T): T => {
    for (const field of ["accessKeySecret", "securityToken", "password"] as const) {
      const secret = (value as Record<string, unknown>)[field];
      if (typeof secret === "string") secrets.add(secret);
    }
    return value;
  };
  return {
    assumeRole: async (...args) => note(await cloud.assumeRole(...args)),
    assumeRoleWithOidc: async (...args) => note(await cloud.assumeRoleWithOidc(...args)),
    getAuthorizationToken: async (...args) => note(await cloud.getAuthorizationToken(...args)),
    listInstanceDomains: (...args) => cloud.listInstanceDomains(...args),
    getPersonalAuthorizationToken: async (...args) => note(await cloud.getPersonalAuthorizationToken(...args)),
  };
}

async function token(cluster: TestCluster, claims: Record<string, unknown> = {}) {
  const raw = await cluster.mint({ now: clock.now(), claims });
  secrets.add(raw);
  secrets.add(raw.split(".")[2]!);
  return raw;
}

async function ask(cluster: TestCluster, body: unknown, claims: Record<string, unknown> = {}) {
  const answer = await invokeHttp(handler, { headers: bearer(await token(cluster, claims)), body }, testContext(brokerUser));
  for (const credential of (answer.json as unknown as CredentialsResponse).credentials ?? []) secrets.add(credential.password);
  return answer;
}

beforeAll(async () => {
  [prod, rrsa] = await Promise.all([createTestCluster("prod"), createTestCluster("rrsa", { alg: "ES256" })]);
  emulator = await startEmulator({ world: brokerWorld(rrsa), clock });
  const config = parseConfig(
    {
      audience: "acr-credential-broker",
      alibabaCloud: { stsEndpoint: emulator.endpoints.sts, crEndpoint: emulator.endpoints.cr, protocol: "http" },
      clusters: [
        {
          name: "prod",
          issuer: prod.issuer,
          jwks: prod.jwks,
          subjects: [defaultSubject],
          registries: [{ instanceId: "cri-plat", regionId: "cn-hangzhou", assumeRoleArn: roles.acrPull }, { regionId: "cn-beijing" }],
        },
        { name: "rrsa", issuer: rrsa.issuer, jwks: rrsa.jwks, subjects: [defaultSubject], allowRrsa: true },
      ],
    },
    "test",
  );
  const cloud = observed(createAlibabaCloud(config.alibabaCloud));
  const runtime = createRuntime({
    loaded: { config, baseDir: ".", source: "test" },
    log: logs.log,
    clock,
    cloud,
    backoff: { baseDelayMs: 1, maxDelayMs: 5, maxAttempts: 3 },
  });
  handler = createHandler(() => runtime);
});

afterAll(() => emulator.close());

describe("the broker's logs", () => {
  it("contain no password, token, security token or access key secret after every kind of request", async () => {
    expect((await ask(prod, {})).status).toBe(200);
    expect((await ask(prod, {})).status).toBe(200);
    const oidcToken = await token(rrsa, { aud: ["sts.aliyuncs.com"] });
    expect(
      (
        await ask(rrsa, {
          oidcToken,
          registries: [{ ...instances.tenant, assumeRoleArn: roles.tenantPull, rrsaRoleArn: roles.rrsaOwn, rrsaOidcProviderArn: rrsaProvider }],
        })
      ).status,
    ).toBe(200);
    expect((await ask(prod, {}, { aud: ["other"] })).status).toBe(401);
    expect((await ask(prod, {}, { sub: "system:serviceaccount:x:y" })).status).toBe(403);
    expect((await ask(prod, { registries: [{ instanceId: "cri-x", regionId: "cn-hangzhou" }] })).status).toBe(403);
    expect((await ask(prod, { registries: [], force: true })).status).toBe(200);
    expect((await ask(prod, { registries: [], force: true })).status).toBe(429);
    expect((await ask(prod, "{oops")).status).toBe(400);
    const renewed = await handler(Buffer.from(JSON.stringify({ action: "renew", cluster: "prod" })), testContext(brokerUser));
    expect(renewed).toHaveProperty("clusters");
    clock.advance(3000_000);
    emulator.faults.set({ serverErrorRate: 1 });
    const stale = await ask(prod, {});
    expect((stale.json as unknown as CredentialsResponse).credentials.map((c) => c.stale)).toEqual([true, true]);
    clock.advance(3600_000);
    expect((await ask(prod, {})).status).toBeGreaterThanOrEqual(502);
    emulator.faults.clear();

    const text = logs.text();
    expect(logs.lines.length).toBeGreaterThanOrEqual(12);
    expect(secrets.size).toBeGreaterThan(10);
    for (const secret of secrets) expect(text, "a secret reached the log").not.toContain(secret);
    expect(text).not.toMatch(/eyJ[\w-]{10,}\.[\w-]{10,}\./);
    // The upstream retries (with the error that caused them) are among the lines searched, and no line has a stack.
    expect(logs.lines.filter((line) => line.includes('"msg":"upstream call failed; retrying"')).length).toBeGreaterThan(0);
    expect(text).not.toContain('"stack"');
  });
});
