/**
 * The emulator's ACK: `DescribeClusterDetail` through the real `@alicloud/cs20151215` client with its
 * ACS3 signature checked, ACK's errors, and the OIDC issuer it hosts for each cluster with RRSA on.
 */
import * as CsPackage from "@alicloud/cs20151215";
import { $OpenApiUtil } from "@alicloud/openapi-core";
import { createLocalJWKSet, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseWorldText, startEmulator, type Emulator } from "../../emulator/index.ts";
import { describeClusterDetail } from "../../shared/alibaba/ack.ts";
import { identityFromKeys } from "../../shared/alibaba/identity.ts";
import { cjsDefault } from "../../shared/alibaba/sdk.ts";
import { upstreamDetails } from "../../shared/alibaba/upstream-error.ts";
import { accountA, broker, testWorld, viewer } from "./world.ts";

const own = "c0own000000001";
const off = "c0rrsaoff00001";
const foreign = "c0foreign00001";

describe("ACK DescribeClusterDetail and cluster issuers", () => {
  let emulator: Emulator;
  const describeAs = (key: { accessKeyId: string; accessKeySecret: string }, clusterId: string) =>
    describeClusterDetail(
      { csEndpoint: emulator.endpoints.cs, protocol: "http" },
      identityFromKeys(key),
      { clusterId, regionId: "cn-shenzhen" },
      { timeoutMs: 5000 },
    );
  const failureOf = (promise: Promise<unknown>) =>
    promise.then(
      () => undefined,
      (error: unknown) => upstreamDetails(error),
    );

  beforeAll(async () => {
    const world = testWorld();
    const [a, b] = world.accounts as [(typeof world.accounts)[number], (typeof world.accounts)[number]];
    a.users!.find((user) => user.name === "broker")!.policies!.push({
      Statement: [{ Effect: "Allow", Action: "cs:DescribeClusterDetail", Resource: `acs:cs:*:${accountA}:cluster/*` }],
    });
    a.ackClusters = [
      { id: own, name: "prod", region: "cn-shenzhen", rrsa: { enabled: true }, tags: { env: "prod" } },
      { id: off, region: "cn-shenzhen", rrsa: { enabled: false } },
    ];
    b.ackClusters = [{ id: foreign, region: "cn-shenzhen", rrsa: { enabled: true } }];
    emulator = await startEmulator({ world });
  });
  afterAll(() => emulator?.close());

  it("answers with the cluster's region, tags and RRSA issuer, in the SDK's response model", async () => {
    const detail = await describeAs(broker, own);
    expect(detail).toEqual({
      clusterId: own,
      regionId: "cn-shenzhen",
      rrsa: { enabled: true, issuer: `${emulator.endpoints.http}/oidc-ack-cn-shenzhen/${own}`, oidcArn: `acs:ram::${accountA}:oidc-provider/ack-rrsa-${own}` },
      tags: [{ key: "env", value: "prod" }],
    });
    expect(emulator.log.filter({ api: "cs:DescribeClusterDetail", resource: own }).at(-1)).toMatchObject({
      principal: `acs:ram::${accountA}:user/broker`,
      outcome: "ok",
      status: 200,
    });
  });

  it("serves the generated @alicloud/cs20151215 client itself", async () => {
    const Cs = cjsDefault<typeof CsPackage.default.default>(CsPackage.default);
    const client = new Cs(new $OpenApiUtil.Config({ ...broker, endpoint: emulator.endpoints.cs, protocol: "http", regionId: "cn-shenzhen" }));
    const response = await client.describeClusterDetail(own);
    expect(response.statusCode).toBe(200);
    expect(response.body?.rrsaConfig?.enabled).toBe(true);
    expect(response.body?.rrsaConfig?.issuer).toBe(emulator.ack.issuerOf(own));
    expect(response.body?.tags?.map((t) => [t.key, t.value])).toEqual([["env", "prod"]]);
  });

  it("says RRSA is off for a cluster without it", async () => {
    expect((await describeAs(broker, off)).rrsa).toEqual({ enabled: false, issuer: undefined, oidcArn: undefined });
  });

  it("does not find a cluster of another account", async () => {
    expect(await failureOf(describeAs(broker, foreign))).toMatchObject({ upstreamCode: "ErrorClusterNotFound", retryable: false });
    expect(await failureOf(describeAs(broker, "c0nosuchcluster"))).toMatchObject({ upstreamCode: "ErrorClusterNotFound" });
  });

  it("forbids a caller without cs:DescribeClusterDetail", async () => {
    expect(await failureOf(describeAs(viewer, own))).toMatchObject({ upstreamCode: "StatusForbidden", retryable: false });
  });

  it("refuses a request signed with the wrong secret", async () => {
    expect(await failureOf(describeAs({ ...broker, accessKeySecret: "not-the-secret" }, own))).toMatchObject({ upstreamCode: "SignatureDoesNotMatch" });
    expect(emulator.log.count({ api: "cs:DescribeClusterDetail", outcome: "SignatureDoesNotMatch" })).toBe(1);
  });

  it("hosts the issuer's discovery and keys, which verify the tokens it signs", async () => {
    const issuer = emulator.ack.issuerOf(own);
    const discovery = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as { issuer: string; jwks_uri: string };
    expect(discovery.issuer).toBe(issuer);
    const jwks = (await (await fetch(discovery.jwks_uri)).json()) as Parameters<typeof createLocalJWKSet>[0];
    const token = await emulator.ack.sign(own, { sub: "system:serviceaccount:kube-system:refresher", aud: "acr-credential-broker" });
    const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), { issuer, audience: "acr-credential-broker" });
    expect(payload.sub).toBe("system:serviceaccount:kube-system:refresher");
    expect(emulator.log.count({ api: "oidc:GetJwks", resource: own })).toBe(1);
  });

  it("hosts no issuer for a cluster without RRSA or an unknown one", async () => {
    expect((await fetch(`${emulator.endpoints.http}/oidc-ack-cn-shenzhen/${off}/.well-known/openid-configuration`)).status).toBe(404);
    expect((await fetch(`${emulator.endpoints.http}/oidc-ack-cn-shenzhen/c0nosuchcluster/keys.json`)).status).toBe(404);
  });
});

describe("ACK clusters in the world file", () => {
  const world = (clusters: string) => `accounts:\n  - id: "${accountA}"\n    ackClusters:\n${clusters}`;

  it("reads a cluster with RRSA, tags and defaults", () => {
    const parsed = parseWorldText(
      world(
        "      - { id: c0123456789abc, region: cn-hangzhou, rrsa: { enabled: true }, tags: { env: prod } }\n      - { id: c0123456789abd, region: cn-beijing }\n",
      ),
      { source: "w.yaml" },
    );
    expect(parsed.accounts[0]!.ackClusters).toEqual([
      { id: "c0123456789abc", region: "cn-hangzhou", rrsa: { enabled: true }, tags: { env: "prod" } },
      { id: "c0123456789abd", region: "cn-beijing", rrsa: { enabled: false }, tags: {} },
    ]);
  });

  it("refuses a malformed or repeated cluster id in one line naming the field", () => {
    expect(() => parseWorldText(world("      - { id: cluster-1, region: cn-hangzhou }\n"), { source: "w.yaml" })).toThrow(
      /^world w\.yaml: accounts\[0\]\.ackClusters\[0\]\.id: an ACK cluster id looks like c0123456789abcdef/,
    );
    expect(() =>
      parseWorldText(world("      - { id: c0123456789abc, region: cn-hangzhou }\n      - { id: c0123456789abc, region: cn-beijing }\n"), { source: "w.yaml" }),
    ).toThrow(/accounts\[0\]\.ackClusters\[1\]\.id: cluster c0123456789abc appears twice/);
  });
});
