/**
 * Issuing credentials end to end: the FC handler, the real STS/CR SDK clients and the emulator.
 * Upstream calls are counted on the emulator's request log.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Credential, CredentialsResponse } from "../../../shared/broker-api.ts";
import type { RefusalReason } from "../../../shared/errors.ts";
import { startBrokerEnv, type BrokerEnv } from "./support/broker-env.ts";
import { createTestCluster, type TestCluster } from "./support/clusters.ts";
import { bearer, invokeHttp } from "./support/invoke.ts";
import { instances, roles, rrsaProvider } from "./support/world.ts";

const platformEntry = { ...instances.platform, assumeRoleArn: roles.acrPull, expireDuration: 3600 };
const personalEntry = { regionId: "cn-beijing" };
const tenantEntry = { instanceId: instances.tenant.instanceId, regionId: instances.tenant.regionId, assumeRoleArn: roles.tenantPull, expireDuration: 3600 };

async function request(env: BrokerEnv, cluster: TestCluster, body: unknown) {
  return invokeHttp(env.handler, { headers: bearer(await cluster.mint({ now: env.clock.now() })), body }, env.context());
}

const credentialsOf = (json: Record<string, unknown>) => (json as unknown as CredentialsResponse).credentials;

describe("identity chains", () => {
  let env: BrokerEnv;
  let prod: TestCluster;

  beforeAll(async () => {
    prod = await createTestCluster("prod");
    env = await startBrokerEnv({
      clusters: (rrsa) => [
        {
          name: "prod",
          key: prod,
          registries: [{ instanceId: "cri-plat", regionId: "cn-hangzhou", assumeRoleArn: roles.acrPull, expireDuration: 3600 }, personalEntry, tenantEntry],
        },
        { name: "rrsa", key: rrsa, allowRrsa: true, registries: [] },
      ],
    });
  });
  afterAll(() => env.close());
  afterEach(() => env.emulator.log.clear());

  it("assumes the configured role and returns the Enterprise instance's password with its discovered domains", async () => {
    const answer = await request(env, prod, { registries: [{ instanceId: "cri-plat", regionId: "cn-hangzhou", assumeRoleArn: roles.acrPull }] });
    expect(answer.status).toBe(200);
    const [credential] = credentialsOf(answer.json);
    expect(credential).toMatchObject({
      instanceId: "cri-plat",
      regionId: "cn-hangzhou",
      edition: "enterprise",
      username: expect.any(String),
      password: expect.any(String),
    });
    expect(credential!.domains.sort()).toEqual([...instances.platform.domains].sort());
    expect(env.emulator.log.filter({ api: "sts:AssumeRole" }).map((e) => [e.principal, e.resource, e.outcome])).toEqual([
      [`acs:ram::1000000000000001:user/broker`, roles.acrPull, "ok"],
    ]);
    expect(
      env.emulator.log
        .filter({ api: "cr:" })
        .map((e) => e.api)
        .sort(),
    ).toEqual(["cr:GetAuthorizationToken", "cr:ListInstanceEndpoint"]);
  });

  it("sets expiresAt to the earliest of the password's and the session's expiry", async () => {
    const answer = await request(env, prod, {
      registries: [{ instanceId: "cri-plat", regionId: "cn-hangzhou", assumeRoleArn: roles.acrPull, expireDuration: 1800 }],
    });
    const expiresAt = Date.parse(credentialsOf(answer.json)[0]!.expiresAt);
    // The password alone would live an hour; the 1800 s role session ends first.
    expect(expiresAt).toBeGreaterThan(env.clock.now() + 1700_000);
    expect(expiresAt).toBeLessThanOrEqual(env.clock.now() + 1800_000);
  });

  it("returns the Personal Edition password of a region with its default domains, as the broker itself", async () => {
    const answer = await request(env, prod, { registries: [personalEntry] });
    expect(answer.status).toBe(200);
    expect(credentialsOf(answer.json)[0]).toMatchObject({
      regionId: "cn-beijing",
      edition: "personal",
      domains: ["registry.cn-beijing.aliyuncs.com", "registry-vpc.cn-beijing.aliyuncs.com", "registry-internal.cn-beijing.aliyuncs.com"],
    });
    expect(credentialsOf(answer.json)[0]!.instanceId).toBeUndefined();
    expect(env.emulator.log.count({ api: "sts:" })).toBe(0);
    expect(env.emulator.log.filter({ api: "cr:GetPersonalAuthorizationToken" }).map((e) => e.principal)).toEqual(["acs:ram::1000000000000001:user/broker"]);
  });

  it("reaches another account's instance through its role (cross-account chain)", async () => {
    const answer = await request(env, prod, { registries: [tenantEntry] });
    expect(answer.status).toBe(200);
    expect(credentialsOf(answer.json)[0]).toMatchObject({
      instanceId: "cri-tenant",
      regionId: "cn-shanghai",
      edition: "enterprise",
      domains: ["tenant-registry.cn-shanghai.cr.aliyuncs.com", "tenant-registry-vpc.cn-shanghai.cr.aliyuncs.com"],
    });
    expect(env.emulator.log.filter({ api: "cr:GetAuthorizationToken" })[0]!.principal).toMatch(/^acs:ram::2000000000000002:assumed-role\/acr-pull-cross\//);
  });

  it("returns every configured registry when the request names none", async () => {
    const answer = await request(env, prod, {});
    expect(
      credentialsOf(answer.json)
        .map((c) => c.instanceId ?? c.regionId)
        .sort(),
    ).toEqual(["cn-beijing", "cri-plat", "cri-tenant"]);
  });

  it("runs the RRSA chain: AssumeRoleWithOIDC with the ServiceAccount's token, then the cross-account role", async () => {
    const oidcToken = await env.rrsa.mint({ now: env.clock.now(), claims: { aud: ["sts.aliyuncs.com"] } });
    const answer = await request(env, env.rrsa, { oidcToken, registries: [{ ...tenantEntry, rrsaRoleArn: roles.rrsaOwn, rrsaOidcProviderArn: rrsaProvider }] });
    expect(answer.status).toBe(200);
    expect(credentialsOf(answer.json)[0]).toMatchObject({ instanceId: "cri-tenant", edition: "enterprise" });
    expect(env.emulator.log.filter({ api: "sts:" }).map((e) => [e.api, e.outcome])).toEqual([
      ["sts:AssumeRoleWithOIDC", "ok"],
      ["sts:AssumeRole", "ok"],
    ]);
    expect(env.emulator.log.filter({ api: "sts:AssumeRole" })[0]!.principal).toMatch(/assumed-role\/rrsa-own\//);
  });

  it("refuses an RRSA token of another ServiceAccount than the Bearer token's, with no upstream call", async () => {
    const oidcToken = await env.rrsa.mint({ now: env.clock.now(), claims: { aud: ["sts.aliyuncs.com"], sub: "system:serviceaccount:kube-system:other" } });
    const answer = await request(env, env.rrsa, { oidcToken, registries: [{ ...tenantEntry, rrsaRoleArn: roles.rrsaOwn, rrsaOidcProviderArn: rrsaProvider }] });
    expect(answer.status).toBe(403);
    expect(env.logs.request(answer.headers["x-request-id"])).toMatchObject({ outcome: "Forbidden", reason: "rrsa-token-mismatch" });
    expect(env.emulator.log.count()).toBe(0);
  });

  it("refuses an RRSA token issued by another cluster, with no upstream call", async () => {
    const oidcToken = await prod.mint({ now: env.clock.now(), claims: { aud: ["sts.aliyuncs.com"] } });
    const answer = await request(env, env.rrsa, { oidcToken, registries: [{ ...tenantEntry, rrsaRoleArn: roles.rrsaOwn, rrsaOidcProviderArn: rrsaProvider }] });
    expect(answer.status).toBe(403);
    expect(env.logs.request(answer.headers["x-request-id"])).toMatchObject({ outcome: "Forbidden", reason: "rrsa-token-mismatch" });
    expect(env.emulator.log.count()).toBe(0);
  });

  it("refuses an RRSA token that is not for STS (the broker's own audience), with no upstream call", async () => {
    const oidcToken = await env.rrsa.mint({ now: env.clock.now() });
    const answer = await request(env, env.rrsa, { oidcToken, registries: [{ ...tenantEntry, rrsaRoleArn: roles.rrsaOwn, rrsaOidcProviderArn: rrsaProvider }] });
    expect(answer.status).toBe(403);
    expect(env.logs.request(answer.headers["x-request-id"])).toMatchObject({ outcome: "Forbidden", reason: "rrsa-token-invalid" });
    expect(answer.raw.body).not.toContain("rrsa-token-invalid");
    expect(env.emulator.log.count()).toBe(0);
  });

  it("refuses RRSA entries from a cluster without allowRrsa, with no upstream call", async () => {
    const oidcToken = await prod.mint({ now: env.clock.now(), claims: { aud: ["sts.aliyuncs.com"] } });
    const answer = await request(env, prod, { oidcToken, registries: [{ ...tenantEntry, rrsaRoleArn: roles.rrsaOwn, rrsaOidcProviderArn: rrsaProvider }] });
    expect(answer.status).toBe(403);
    expect(env.logs.request(answer.headers["x-request-id"])).toMatchObject({ outcome: "Forbidden", reason: "rrsa-not-allowed" });
    expect(env.emulator.log.count()).toBe(0);
  });

  describe("entries outside the cluster's registries are refused with 403 and no upstream call", () => {
    const cases: Array<[string, Record<string, unknown>, RefusalReason]> = [
      ["another instance", { instanceId: "cri-other", regionId: "cn-hangzhou", assumeRoleArn: roles.acrPull }, "registry-not-configured"],
      ["another role", { ...tenantEntry, assumeRoleArn: roles.acrPull }, "registry-not-configured"],
      ["a longer duration", { ...platformEntry, domains: undefined, expireDuration: 7200 }, "duration-too-long"],
      ["the broker's own identity instead of the role", { instanceId: "cri-plat", regionId: "cn-hangzhou" }, "registry-not-configured"],
    ];
    for (const [what, entry, reason] of cases) {
      it(`refuses ${what}`, async () => {
        const answer = await request(env, prod, { registries: [personalEntry, entry] });
        expect(answer.status).toBe(403);
        expect((answer.json.error as { code: string }).code).toBe("Forbidden");
        expect(env.logs.request(answer.headers["x-request-id"])).toMatchObject({ outcome: "Forbidden", reason });
        expect(env.emulator.log.count()).toBe(0);
      });
    }
  });

  it("reports an entry whose role refuses the broker in errors, next to the entries that worked", async () => {
    const refused = await createTestCluster("refused");
    const local = await startBrokerEnv({
      clusters: () => [
        {
          name: "refused",
          key: refused,
          registries: [personalEntry, { instanceId: "cri-plat", regionId: "cn-hangzhou", assumeRoleArn: "acs:ram::1000000000000001:role/missing" }],
        },
      ],
    });
    try {
      const answer = await request(local, refused, {});
      expect(answer.status).toBe(200);
      const body = answer.json as unknown as CredentialsResponse;
      expect(body.credentials.map((c) => c.regionId)).toEqual(["cn-beijing"]);
      expect(body.errors).toEqual([
        {
          instanceId: "cri-plat",
          regionId: "cn-hangzhou",
          code: "UpstreamError",
          message: expect.stringMatching(/AssumeRole acs:ram::1000000000000001:role\/missing.*EntityNotExist\.Role/),
        },
      ]);
    } finally {
      await local.close();
    }
  });
});

describe("the cache", () => {
  it("makes one AssumeRole and one GetAuthorizationToken for 200 concurrent requests from 50 clusters", async () => {
    const keys = await Promise.all(Array.from({ length: 50 }, (_, i) => createTestCluster(`c${i}`, { alg: "ES256" })));
    // No configured domains: the instance's domains are discovered once as well.
    const entry = { instanceId: "cri-plat", regionId: "cn-hangzhou", assumeRoleArn: roles.acrPull };
    const env = await startBrokerEnv({ clusters: () => keys.map((key, i) => ({ name: `c${i}`, key, registries: [entry] })) });
    try {
      const tokens = await Promise.all(keys.map((key) => key.mint({ now: env.clock.now() })));
      const answers = await Promise.all(
        Array.from({ length: 200 }, (_, i) => invokeHttp(env.handler, { headers: bearer(tokens[i % 50]!), body: {} }, env.context())),
      );
      expect(answers.map((a) => a.status)).toEqual(Array(200).fill(200));
      expect(new Set(answers.map((a) => credentialsOf(a.json)[0]!.password)).size).toBe(1);
      expect(env.emulator.log.count({ api: "sts:AssumeRole" })).toBe(1);
      expect(env.emulator.log.count({ api: "cr:GetAuthorizationToken" })).toBe(1);
      expect(env.emulator.log.count({ api: "cr:ListInstanceEndpoint" })).toBe(1);
    } finally {
      await env.close();
    }
  });

  describe("with a controllable clock", () => {
    let env: BrokerEnv;
    let prod: TestCluster;
    const refreshBeforeExpirySeconds = 900;

    beforeAll(async () => {
      prod = await createTestCluster("prod");
      env = await startBrokerEnv({
        frozenClock: true,
        config: { refreshBeforeExpirySeconds, forceIntervalSeconds: 60 },
        clusters: () => [{ name: "prod", key: prod, registries: [platformEntry, personalEntry] }],
      });
    });
    afterAll(() => env.close());
    afterEach(() => {
      env.emulator.faults.clear();
      env.emulator.log.clear();
    });

    const ask = async (body: unknown = { registries: [platformEntry] }) => request(env, prod, body);

    it("reuses the credential until refreshBeforeExpiry ahead of its expiry, then refreshes it", async () => {
      const first = credentialsOf((await ask()).json)[0]!;
      const refreshAt = Date.parse(first.expiresAt) - refreshBeforeExpirySeconds * 1000;
      env.clock.set(refreshAt - 1000);
      const cached = credentialsOf((await ask()).json)[0]!;
      expect(cached.password).toBe(first.password);
      expect(env.emulator.log.count({ api: "cr:GetAuthorizationToken" })).toBe(1);
      env.clock.set(refreshAt);
      const refreshed = credentialsOf((await ask()).json)[0]!;
      expect(refreshed.password).not.toBe(first.password);
      expect(Date.parse(refreshed.expiresAt)).toBeGreaterThan(Date.parse(first.expiresAt));
      expect(env.emulator.log.count({ api: "cr:GetAuthorizationToken" })).toBe(2);
      expect(env.emulator.log.count({ api: "sts:AssumeRole" })).toBe(2);
    });

    it("retries a throttled upstream within the request and succeeds", async () => {
      env.emulator.faults.set({ throttleRate: 0.7, seed: 7, apis: ["cr:GetPersonalAuthorizationToken"] });
      const answer = await ask({ registries: [personalEntry] });
      expect(answer.status).toBe(200);
      const calls = env.emulator.log.filter({ api: "cr:GetPersonalAuthorizationToken" });
      expect(calls.filter((c) => c.outcome.includes("Throttling")).length).toBeGreaterThan(0);
      expect(calls.at(-1)!.outcome).toBe("ok");
    });

    it("serves a still-valid cached credential, flagged stale, when the upstream is down", async () => {
      const first = credentialsOf((await ask()).json)[0]!;
      env.clock.set(Date.parse(first.expiresAt) - 60_000);
      env.emulator.faults.set({ serverErrorRate: 1, apis: ["sts:", "cr:"] });
      const answer = await ask();
      expect(answer.status).toBe(200);
      expect(credentialsOf(answer.json)[0]).toMatchObject({ password: first.password, expiresAt: first.expiresAt, stale: true });
      expect(env.emulator.log.count({ status: 503 }) + env.emulator.log.count({ status: 500 })).toBeGreaterThan(1);
    });

    it("flags a new password as stale when STS is down and the session bounding it is within refreshBeforeExpiry", async () => {
      const first = credentialsOf((await ask()).json)[0]!;
      env.clock.set(Date.parse(first.expiresAt) - 600_000);
      env.emulator.faults.set({ serverErrorRate: 1, apis: ["sts:"] });
      const answer = await ask();
      expect(answer.status).toBe(200);
      const second = credentialsOf(answer.json)[0]!;
      expect(env.emulator.log.count({ api: "cr:GetAuthorizationToken", outcome: "ok" })).toBe(2);
      expect(second.password).not.toBe(first.password);
      expect(second.expiresAt).toBe(first.expiresAt);
      expect(second.stale).toBe(true);
    });

    it("never hands out an expired credential: the upstream being down is a 5xx", async () => {
      const first = credentialsOf((await ask()).json)[0]!;
      env.clock.set(Date.parse(first.expiresAt) + 1000);
      env.emulator.faults.set({ serverErrorRate: 1, apis: ["sts:", "cr:"] });
      const answer = await ask();
      expect([502, 503]).toContain(answer.status);
      expect(JSON.stringify(answer.json)).not.toContain(first.password);
      expect((answer.json.error as { code: string }).code).toMatch(/^Upstream/);
    });

    it("bypasses the cache with force: true, at most once per interval per cluster", async () => {
      env.clock.advance(7200_000);
      const first = credentialsOf((await ask()).json)[0]!;
      const forced = await ask({ registries: [platformEntry], force: true });
      expect(forced.status).toBe(200);
      expect(credentialsOf(forced.json)[0]!.password).not.toBe(first.password);
      expect(env.emulator.log.count({ api: "cr:GetAuthorizationToken" })).toBe(2);
      const again = await ask({ registries: [platformEntry], force: true });
      expect(again.status).toBe(429);
      expect(again.headers["retry-after"]).toBe("60");
      expect(env.emulator.log.count({ api: "cr:GetAuthorizationToken" })).toBe(2);
      env.clock.advance(60_000);
      expect((await ask({ registries: [platformEntry], force: true })).status).toBe(200);
    });
  });
});

describe("discovered domains", () => {
  it("stay usable next to a stale credential when ListInstanceEndpoint is down too", async () => {
    const prod = await createTestCluster("prod");
    const entry = { instanceId: "cri-plat", regionId: "cn-hangzhou", assumeRoleArn: roles.acrPull };
    // Domains due for a re-read (after an hour) when the renewed credential is about to expire.
    const env = await startBrokerEnv({
      frozenClock: true,
      config: { discoveredDomainsTtlSeconds: 3600 },
      clusters: () => [{ name: "prod", key: prod, registries: [entry] }],
    });
    try {
      const start = env.clock.now();
      await request(env, prod, {});
      // The credential is renewed after 50 minutes, the domains (discovered at the start) are not.
      env.clock.set(start + 50 * 60_000);
      const refreshed = credentialsOf((await request(env, prod, {})).json)[0]!;
      env.clock.set(Date.parse(refreshed.expiresAt) - 60_000);
      env.emulator.faults.set({ serverErrorRate: 1, apis: ["sts:", "cr:"] });
      const answer = await request(env, prod, {});
      expect(answer.status).toBe(200);
      expect(credentialsOf(answer.json)[0]).toMatchObject({ password: refreshed.password, stale: true, domains: [...instances.platform.domains] });
      expect(env.emulator.log.count({ api: "cr:ListInstanceEndpoint", outcome: "ok" })).toBe(1);
      expect(env.emulator.log.count({ api: "cr:ListInstanceEndpoint" })).toBeGreaterThan(1);
    } finally {
      await env.close();
    }
  });
});

describe("the renew invocation", () => {
  it("refreshes a cluster's registries and answers without passwords", async () => {
    const prod = await createTestCluster("prod");
    const env = await startBrokerEnv({ clusters: () => [{ name: "prod", key: prod, registries: [platformEntry, personalEntry] }] });
    try {
      const first = credentialsOf((await request(env, prod, {})).json);
      const answer = (await env.handler(Buffer.from(JSON.stringify({ action: "renew", cluster: "prod" })), env.context())) as {
        clusters: Array<{ cluster: string; renewed: Credential[]; errors: unknown[] }>;
      };
      expect(answer.clusters).toHaveLength(1);
      expect(answer.clusters[0]!.renewed.map((r) => Object.keys(r).sort())).toEqual([
        ["expiresAt", "instanceId", "regionId"],
        ["expiresAt", "regionId"],
      ]);
      expect(answer.clusters[0]!.errors).toEqual([]);
      expect(env.emulator.log.count({ api: "cr:GetAuthorizationToken" })).toBe(2);
      expect(env.emulator.log.count({ api: "cr:GetPersonalAuthorizationToken" })).toBe(2);
      for (const credential of first) expect(JSON.stringify(answer)).not.toContain(credential.password);
      const after = credentialsOf((await request(env, prod, {})).json);
      // The renewed entries are the cached ones now: no further upstream call.
      expect(after.map((c) => c.password)).not.toEqual(first.map((c) => c.password));
      expect(env.emulator.log.count({ api: "cr:" })).toBe(4);
    } finally {
      await env.close();
    }
  });
});
