/**
 * Cluster groups end to end: ACK clusters trusted by rule, confirmed through the real
 * `@alicloud/cs20151215` client against the emulator's ACK API, keys fetched from the emulator's
 * per-cluster issuer, credentials issued through the real STS/CR clients. Upstream and issuer
 * requests are counted on the emulator's request log.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createClock, startEmulator, type Emulator, type WorldInput } from "../../../emulator/index.ts";
import { parseConfig } from "../../../functions/broker/config.ts";
import { createHandler } from "../../../functions/broker/handler.ts";
import { createRuntime } from "../../../functions/broker/runtime.ts";
import type { CredentialsResponse } from "../../../shared/broker-api.ts";
import { createTestCluster, defaultSubject } from "./support/clusters.ts";
import { bearer, invokeHttp, testContext, type FcHandler } from "./support/invoke.ts";
import { captureLogs } from "./support/logs.ts";
import { brokerUser, brokerWorld, instances, platform, roles, tenant } from "./support/world.ts";

const tag = { "acr-credential-broker": "enabled" };
const clusters = {
  confirmed: "c0confirmed0001",
  noRrsa: "c0norrsa0000001",
  untagged: "c0untagged00001",
  tenants: "c0tenant0000001",
  tenantsShanghai: "c0tenantsh00001",
  explicit: "c0explicit00001",
  flaky: "c0flaky00000001",
};

function world(rrsaIssuer: string): WorldInput {
  const input = brokerWorld({
    issuer: rrsaIssuer,
    jwks: { keys: [{ kty: "EC", crv: "P-256", x: "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", y: "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0" }] },
  } as never);
  const [own, other] = input.accounts as [WorldInput["accounts"][number], WorldInput["accounts"][number]];
  own
    .users!.find((user) => user.name === "broker")!
    .policies!.push({ Statement: [{ Effect: "Allow", Action: "cs:DescribeClusterDetail", Resource: `acs:cs:*:${platform}:cluster/*` }] });
  own.ackClusters = [
    { id: clusters.confirmed, region: "cn-hangzhou", rrsa: { enabled: true }, tags: tag },
    { id: clusters.noRrsa, region: "cn-hangzhou", rrsa: { enabled: false }, tags: tag },
    { id: clusters.untagged, region: "cn-hangzhou", rrsa: { enabled: true }, tags: { team: "web" } },
    { id: clusters.explicit, region: "cn-hangzhou", rrsa: { enabled: false }, tags: {} },
    { id: clusters.flaky, region: "cn-hangzhou", rrsa: { enabled: true }, tags: tag },
  ];
  other.ackClusters = [
    { id: clusters.tenants, region: "cn-hangzhou", rrsa: { enabled: true }, tags: tag },
    { id: clusters.tenantsShanghai, region: "cn-shanghai", rrsa: { enabled: true }, tags: tag },
  ];
  // The tenant lets the platform's broker read its clusters through a role (cross-account groups).
  other.roles!.push({
    name: "ack-reader",
    trustPolicy: { Statement: [{ Effect: "Allow", Action: "sts:AssumeRole", Principal: { RAM: [`acs:ram::${platform}:user/broker`] } }] },
    policies: [{ Statement: [{ Effect: "Allow", Action: "cs:DescribeClusterDetail", Resource: `acs:cs:*:${tenant}:cluster/*` }] }],
  });
  return input;
}

const readerRole = `acs:ram::${tenant}:role/ack-reader`;

describe("ACK cluster groups", () => {
  let emulator: Emulator;
  let handler: FcHandler;
  /** A second broker instance on the same configuration, with a small confirmation budget. */
  let frugal: FcHandler;
  let logs: ReturnType<typeof captureLogs>;
  let explicit: Awaited<ReturnType<typeof createTestCluster>>;

  const ask = async (token: string) => invokeHttp(handler, { headers: bearer(token), body: {} }, testContext(brokerUser));
  const ackCalls = (clusterId: string) => emulator.log.count({ api: "cs:DescribeClusterDetail", resource: clusterId });
  const keyFetches = (clusterId: string) => emulator.log.count((entry) => entry.api.startsWith("oidc:") && entry.resource === clusterId);

  beforeAll(async () => {
    const clock = createClock();
    emulator = await startEmulator({ world: world("https://oidc.rrsa.example.test/c-rrsa"), clock });
    explicit = await createTestCluster("explicit", {
      issuer: emulator.endpoints.ackIssuer.replace("{regionId}", "cn-hangzhou").replace("{clusterId}", clusters.explicit),
    });
    const config = parseConfig(
      {
        audience: "acr-credential-broker",
        alibabaCloud: {
          stsEndpoint: emulator.endpoints.sts,
          crEndpoint: emulator.endpoints.cr,
          csEndpoint: emulator.endpoints.cs,
          ackIssuer: emulator.endpoints.ackIssuer,
          protocol: "http",
        },
        clusters: [{ name: "pinned", issuer: explicit.issuer, jwks: explicit.jwks, subjects: [defaultSubject], registries: [] }],
        clusterGroups: [
          {
            name: "ack-prod",
            accounts: [{ id: platform }],
            tag: { key: "acr-credential-broker", value: "enabled" },
            subjects: [defaultSubject],
            registries: [{ instanceId: instances.platform.instanceId, regionId: "cn-hangzhou", assumeRoleArn: roles.acrPull }],
          },
          {
            name: "tenants-shanghai",
            accounts: [{ id: tenant, roleArn: readerRole }],
            regions: ["cn-shanghai"],
            subjects: [defaultSubject],
            registries: [{ instanceId: instances.platform.instanceId, regionId: "cn-hangzhou", assumeRoleArn: roles.acrPull }],
          },
        ],
      },
      "test",
    );
    logs = captureLogs();
    const runtime = createRuntime({
      loaded: { config, baseDir: ".", source: "test" },
      log: logs.log,
      clock,
      backoff: { baseDelayMs: 1, maxDelayMs: 5, maxAttempts: 3 },
    });
    handler = createHandler(() => runtime);
    const frugalRuntime = createRuntime({
      loaded: { config, baseDir: ".", source: "test" },
      log: captureLogs().log,
      clock,
      groupLimits: { confirmationsPerMinute: 5 },
    });
    frugal = createHandler(() => frugalRuntime);
  });
  afterAll(() => emulator.close());
  afterEach(() => emulator.log.clear());

  const sign = (clusterId: string) => emulator.ack.sign(clusterId, { sub: defaultSubject, aud: "acr-credential-broker" });

  it("serves a cluster the ACK API confirms, with no change to the broker, and asks ACK once for it", async () => {
    const first = await ask(await sign(clusters.confirmed));
    expect(first.status).toBe(200);
    const body = first.json as unknown as CredentialsResponse;
    expect(body.cluster).toBe(`ack-prod/${clusters.confirmed}`);
    expect(body.credentials.map((c) => c.instanceId)).toEqual([instances.platform.instanceId]);
    expect(ackCalls(clusters.confirmed)).toBe(1);
    // Its keys came from its own issuer, after the confirmation.
    expect(keyFetches(clusters.confirmed)).toBeGreaterThan(0);
    const [confirmation] = emulator.log.filter({ api: "cs:DescribeClusterDetail" });
    expect(confirmation!.principal).toBe(`acs:ram::${platform}:user/broker`);

    const again = await ask(await sign(clusters.confirmed));
    expect(again.status).toBe(200);
    expect(ackCalls(clusters.confirmed)).toBe(1);
    expect(logs.text()).toContain("cluster confirmed by rule");
  });

  it("refuses an unknown cluster id without fetching any key, and does not ask ACK again while the refusal is remembered", async () => {
    const forged = await createTestCluster("forged", {
      issuer: emulator.endpoints.ackIssuer.replace("{regionId}", "cn-hangzhou").replace("{clusterId}", "c0doesnotexist1"),
    });
    for (let i = 0; i < 3; i++) {
      const answer = await ask(await forged.mint());
      expect(answer.status).toBe(401);
      expect(answer.json).toEqual({ error: { code: "InvalidToken", message: "the token's issuer (iss) is not a configured cluster" } });
      expect(logs.request(answer.headers["x-request-id"])).toMatchObject({ outcome: "InvalidToken", reason: "issuer-refused-by-group" });
    }
    expect(ackCalls("c0doesnotexist1")).toBe(1);
    expect(keyFetches("c0doesnotexist1")).toBe(0);
    expect(logs.text()).toContain(`cluster c0doesnotexist1 (cn-hangzhou) does not exist in account ${platform}`);
  });

  it("refuses a cluster of an account the group does not allow", async () => {
    const answer = await ask(await sign(clusters.tenants));
    expect(answer.status).toBe(401);
    expect(String((answer.json.error as { message: string }).message)).not.toContain(tenant);
    expect(keyFetches(clusters.tenants)).toBe(0);
    expect(logs.text()).toContain(`cluster ${clusters.tenants} (cn-hangzhou) does not exist in account ${platform}`);
  });

  it("reads another account's clusters through that account's reader role, for the regions its group covers", async () => {
    const answer = await ask(await sign(clusters.tenantsShanghai));
    expect(answer.status).toBe(200);
    expect((answer.json as unknown as CredentialsResponse).cluster).toBe(`tenants-shanghai/${clusters.tenantsShanghai}`);
    expect(emulator.log.filter({ api: "cs:DescribeClusterDetail", resource: clusters.tenantsShanghai }).map((e) => [e.principal, e.outcome])).toEqual([
      // ack-prod covers every region, so its account is asked first.
      [`acs:ram::${platform}:user/broker`, "ErrorClusterNotFound"],
      [`acs:ram::${tenant}:assumed-role/ack-reader/acr-credential-broker`, "ok"],
    ]);
    expect(emulator.log.count({ api: "sts:AssumeRole", resource: readerRole })).toBe(1);
  });

  it("refuses a cluster without RRSA, saying so in the log", async () => {
    const forged = await createTestCluster("no-rrsa", {
      issuer: emulator.endpoints.ackIssuer.replace("{regionId}", "cn-hangzhou").replace("{clusterId}", clusters.noRrsa),
    });
    const answer = await ask(await forged.mint());
    expect(answer.status).toBe(401);
    expect(keyFetches(clusters.noRrsa)).toBe(0);
    expect(logs.text()).toContain(
      `cluster ${clusters.noRrsa} (cn-hangzhou) of account ${platform} does not have RRSA enabled; enable RRSA for the cluster in ACK`,
    );
  });

  it("refuses a cluster without the group's tag, naming the tag to set", async () => {
    const answer = await ask(await sign(clusters.untagged));
    expect(answer.status).toBe(401);
    expect(keyFetches(clusters.untagged)).toBe(0);
    expect(logs.text()).toContain(`lacks the tag acr-credential-broker=enabled that cluster group 'ack-prod' requires; tag the cluster in ACK`);
  });

  it("retries a throttled ACK API, answers 503 without remembering a refusal, and confirms once ACK answers", async () => {
    emulator.faults.set({ throttleRate: 1, apis: ["cs:"] });
    try {
      const answer = await ask(await sign(clusters.flaky));
      expect(answer.status).toBe(503);
      expect(answer.json).toEqual({ error: { code: "UpstreamUnavailable", message: "the token's cluster cannot be confirmed right now; try again later" } });
      // Three attempts: the runtime's backoff policy in this suite.
      expect(ackCalls(clusters.flaky)).toBe(3);
      expect(keyFetches(clusters.flaky)).toBe(0);
      expect(logs.text()).toContain("cluster could not be confirmed");
    } finally {
      emulator.faults.clear();
    }
    const later = await ask(await sign(clusters.flaky));
    expect(later.status).toBe(200);
    expect(ackCalls(clusters.flaky)).toBe(4);
  });

  it("bounds what a flood of forged issuers costs: a few ACK calls a minute, no key fetch, 429 beyond", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) {
      const clusterId = `c0flood${String(i).padStart(8, "0")}`;
      const forged = await createTestCluster(`flood-${i}`, {
        issuer: emulator.endpoints.ackIssuer.replace("{regionId}", "cn-hangzhou").replace("{clusterId}", clusterId),
      });
      statuses.push((await invokeHttp(frugal, { headers: bearer(await forged.mint()), body: {} }, testContext(brokerUser))).status);
    }
    expect(statuses.filter((s) => s === 401)).toHaveLength(5);
    expect(statuses.filter((s) => s === 429)).toHaveLength(15);
    expect(emulator.log.count({ api: "cs:DescribeClusterDetail" })).toBe(5);
    expect(emulator.log.count({ api: "oidc:" })).toBe(0);
  });

  it("lets an explicit clusters entry win over the group, without asking ACK", async () => {
    const answer = await ask(await explicit.mint());
    expect(answer.status).toBe(200);
    expect((answer.json as unknown as CredentialsResponse).cluster).toBe("pinned");
    expect(ackCalls(clusters.explicit)).toBe(0);
  });

  it("does not consult ACK for an issuer that does not have the ACK RRSA form", async () => {
    const stranger = await createTestCluster("stranger");
    const answer = await ask(await stranger.mint());
    expect(answer.status).toBe(401);
    expect(emulator.log.count({ api: "cs:" })).toBe(0);
  });
});
