/**
 * The add-on's default region: an `acr-registry-info` item without `regionId` (or no item at all)
 * means the cluster's own region. The refresher cannot see it, so it sends no region and the broker
 * fills in the cluster's `regionId` from its configuration — through the FC handler, the real SDK
 * clients and the emulator.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseRefresherConfig } from "../../../job/config.ts";
import { matchCredentials, registryRequest } from "../../../job/registry.ts";
import type { CredentialsResponse } from "../../../shared/broker-api.ts";
import { parseConfig } from "../../../functions/broker/config.ts";
import { startBrokerEnv, type BrokerEnv } from "./support/broker-env.ts";
import { createTestCluster, type TestCluster } from "./support/clusters.ts";
import { bearer, invokeHttp } from "./support/invoke.ts";
import { instances, roles } from "./support/world.ts";

async function request(env: BrokerEnv, cluster: TestCluster, body: unknown) {
  return invokeHttp(env.handler, { headers: bearer(await cluster.mint({ now: env.clock.now() })), body }, env.context());
}

describe("the cluster's region in the broker configuration", () => {
  let env: BrokerEnv;
  let hangzhou: TestCluster;
  let unplaced: TestCluster;

  beforeAll(async () => {
    hangzhou = await createTestCluster("hangzhou");
    unplaced = await createTestCluster("unplaced");
    const registries = [{ instanceId: "cri-plat", regionId: "cn-hangzhou", assumeRoleArn: roles.acrPull, expireDuration: 3600 }, { regionId: "cn-hangzhou" }];
    env = await startBrokerEnv({
      clusters: () => [
        { name: "hangzhou", key: hangzhou, regionId: "cn-hangzhou", registries },
        { name: "unplaced", key: unplaced, registries },
      ],
    });
  });
  afterAll(() => env.close());
  afterEach(() => env.emulator.log.clear());

  it("fills it into entries that name no region, for Enterprise and Personal Edition alike", async () => {
    const answer = await request(env, hangzhou, { registries: [{ instanceId: "cri-plat", assumeRoleArn: roles.acrPull }, {}] });
    expect(answer.status).toBe(200);
    const { credentials, errors } = answer.json as unknown as CredentialsResponse;
    expect(errors).toEqual([]);
    expect(credentials.map((c) => [c.instanceId ?? "personal", c.regionId, c.edition])).toEqual([
      ["cri-plat", "cn-hangzhou", "enterprise"],
      ["personal", "cn-hangzhou", "personal"],
    ]);
    expect(credentials[0]!.domains.sort()).toEqual([...instances.platform.domains].sort());
    expect(credentials[1]!.domains).toEqual([
      "registry.cn-hangzhou.aliyuncs.com",
      "registry-vpc.cn-hangzhou.aliyuncs.com",
      "registry-internal.cn-hangzhou.aliyuncs.com",
    ]);
    expect(env.emulator.log.filter({ api: "cr:GetAuthorizationToken" }).map((e) => e.resource)).toEqual(["cri-plat"]);
  });

  it("serves a ConfigMap with no acr-registry-info (the add-on's Personal Edition default) from refresher to broker and back", async () => {
    const { config } = parseRefresherConfig({ "broker-url": "https://broker.example.com", "watch-namespace": "all" });
    const answer = await request(env, hangzhou, { registries: config.registries.map((entry) => registryRequest(entry, config.rrsa)) });
    expect(answer.status).toBe(200);
    const { credentials, errors } = answer.json as unknown as CredentialsResponse;
    const matched = matchCredentials(config.registries, credentials, errors);
    const [entry] = config.registries;
    expect(matched.get(entry!.secretName)?.credential).toMatchObject({ regionId: "cn-hangzhou", edition: "personal" });
  });

  it("still authorizes the filled-in entry against the cluster's registries", async () => {
    const answer = await request(env, hangzhou, { registries: [{ instanceId: "cri-tenant", assumeRoleArn: roles.tenantPull }] });
    expect(answer.status).toBe(403);
    expect((answer.json.error as { message: string }).message).toMatch(/may not receive cri-tenant in cn-hangzhou/);
    expect(env.emulator.log.count()).toBe(0);
  });

  it("refuses an entry without a region when nobody knows the cluster's, saying where to set it, with no upstream call", async () => {
    const answer = await request(env, unplaced, { registries: [{ regionId: "cn-hangzhou" }, { instanceId: "cri-plat", assumeRoleArn: roles.acrPull }] });
    expect(answer.status).toBe(400);
    const error = answer.json.error as { code: string; message: string };
    expect(error.code).toBe("InvalidRequest");
    expect(error.message).toBe(
      "the entry for cri-plat names no regionId and cluster 'unplaced' has none in the broker configuration; set regionId (the cluster's region) for cluster 'unplaced' in the broker configuration, or regionId on the item in acr-configuration",
    );
    expect(env.emulator.log.count()).toBe(0);
  });

  it("leaves entries that name their region alone", async () => {
    const answer = await request(env, unplaced, { registries: [{ regionId: "cn-hangzhou" }] });
    expect(answer.status).toBe(200);
    expect((answer.json as unknown as CredentialsResponse).credentials.map((c) => c.regionId)).toEqual(["cn-hangzhou"]);
  });
});

describe("the cluster's regionId field", () => {
  it("must be a region id, named by its path", () => {
    const cluster = {
      name: "c1",
      issuer: "https://issuer.example.com",
      subjects: ["system:serviceaccount:kube-system:aliyun-acr-credential-helper"],
      regionId: "Hangzhou",
    };
    expect(() => parseConfig({ audience: "a", clusters: [cluster] }, "broker.yaml")).toThrow(
      "broker.yaml: clusters[0].regionId: expected a region id like cn-hangzhou; fix the configuration and restart",
    );
  });
});
