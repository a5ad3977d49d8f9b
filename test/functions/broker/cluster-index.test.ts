/**
 * Fleet-sized trust without network: the issuer index over thousands of configured clusters and
 * its lazy, bounded key sets; the ACK issuer form; the cluster-group policy (`judge`) and the
 * confirmation cache, driven by a counting `describe` function in place of the ACK API (the real
 * API path is covered in cluster-groups.test.ts).
 */
import { pino } from "pino";
import { createLocalJWKSet, type JWTVerifyGetKey } from "jose";
import { describe, expect, it } from "vitest";
import type { AckClusterDetail } from "../../../shared/alibaba/ack.ts";
import { identityFromKeys } from "../../../shared/alibaba/identity.ts";
import { AcrCredentialError } from "../../../shared/errors.ts";
import { ackIssuerMatcher, createGroupTrust, judge, type AckIssuer } from "../../../functions/broker/cluster-groups.ts";
import { createClusterIndex } from "../../../functions/broker/cluster-index.ts";
import { parseConfig, parseConfigText, type Cluster, type ClusterGroup } from "../../../functions/broker/config.ts";
import { createTokenVerifier } from "../../../functions/broker/token.ts";
import { createTestCluster, defaultSubject } from "./support/clusters.ts";
import { rejectionOf } from "../../support/errors.ts";

async function expectAcrError(promise: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  const error = await rejectionOf(promise);
  expect(error.code).toBe(code);
  if (message) expect(error.message).toMatch(message);
}

const ackForm = "https://oidc-ack-{regionId}.oss-{regionId}.aliyuncs.com/{clusterId}";
const issuerOf = (regionId: string, clusterId: string) => `https://oidc-ack-${regionId}.oss-${regionId}.aliyuncs.com/${clusterId}`;

describe("the issuer index over thousands of configured clusters", () => {
  const fleet = 5000;

  async function fleetVerifier(maxKeySets?: number) {
    // One key shared by the whole fleet keeps the test fast; each cluster still has its own issuer.
    const signer = await createTestCluster("fleet");
    const clusters: Cluster[] = Array.from({ length: fleet }, (_, i) => ({
      name: `c${i}`,
      issuer: `https://oidc.example.test/c${i}`,
      jwks: signer.jwks as never,
      subjects: [defaultSubject],
      registries: [],
      allowRrsa: false,
    }));
    const setUp: string[] = [];
    const keysFor = (cluster: Cluster): JWTVerifyGetKey => {
      setUp.push(cluster.name);
      return createLocalJWKSet(cluster.jwks as never);
    };
    const index = createClusterIndex({ clusters, keysFor, ...(maxKeySets ? { maxKeySets } : {}) });
    const config = { audience: "acr-credential-broker", clockSkewSeconds: 60, maxTokenLifetimeSeconds: 86400, clusters };
    const verify = createTokenVerifier({ config, keysFor, index, clock: { now: () => Date.now() } });
    const tokenOf = (i: number) => signer.mint({ claims: { iss: `https://oidc.example.test/c${i}`, jti: String(Math.random()) } });
    return { verify, setUp, tokenOf };
  }

  it("imports no cluster's keys at start, and one cluster's when its first token arrives", async () => {
    const { verify, setUp, tokenOf } = await fleetVerifier();
    expect(setUp).toEqual([]);
    expect((await verify(await tokenOf(4321))).cluster.name).toBe("c4321");
    expect((await verify(await tokenOf(4321))).cluster.name).toBe("c4321");
    expect((await verify(await tokenOf(7))).cluster.name).toBe("c7");
    expect(setUp).toEqual(["c4321", "c7"]);
  });

  it("holds at most maxKeySets clusters' keys, setting up an evicted one again on its next token", async () => {
    const { verify, setUp, tokenOf } = await fleetVerifier(100);
    for (let i = 0; i < 300; i++) await verify(await tokenOf(i));
    expect(setUp).toHaveLength(300);
    await verify(await tokenOf(299));
    expect(setUp).toHaveLength(300);
    await verify(await tokenOf(0));
    expect(setUp).toHaveLength(301);
  });

  it("refuses an issuer no cluster has, among thousands", async () => {
    const { verify } = await fleetVerifier();
    const stranger = await createTestCluster("stranger");
    await expectAcrError(verify(await stranger.mint()), "InvalidToken", /not a configured cluster/);
  });
});

describe("the ACK RRSA issuer form", () => {
  const match = ackIssuerMatcher(ackForm);

  it("reads the region and cluster id of an ACK issuer", () => {
    expect(match(issuerOf("cn-hangzhou", "c532c4ce9a8f24b6e8f0d1c2b3a4f5e6d"))).toEqual({
      regionId: "cn-hangzhou",
      clusterId: "c532c4ce9a8f24b6e8f0d1c2b3a4f5e6d",
    });
    expect(match(issuerOf("ap-southeast-1", "c0123456"))).toEqual({ regionId: "ap-southeast-1", clusterId: "c0123456" });
  });

  it.each([
    ["two different regions", "https://oidc-ack-cn-hangzhou.oss-cn-beijing.aliyuncs.com/c0123456"],
    ["another host", "https://oidc-ack-cn-hangzhou.oss-cn-hangzhou.aliyuncs.com.evil.test/c0123456"],
    ["a longer path", `${issuerOf("cn-hangzhou", "c0123456")}/../c7654321`],
    ["plain http", issuerOf("cn-hangzhou", "c0123456").replace("https:", "http:")],
    ["an id that is not a cluster id", issuerOf("cn-hangzhou", "x0123456")],
    ["a trailing slash", `${issuerOf("cn-hangzhou", "c0123456")}/`],
  ])("does not match %s", (_, issuer) => {
    expect(match(issuer)).toBeUndefined();
  });
});

const group: ClusterGroup = {
  name: "ack-prod",
  accounts: [{ id: "1000000000000001" }],
  tag: { key: "acr", value: "on" },
  subjects: [defaultSubject],
  registries: [],
  allowRrsa: false,
};
const target: AckIssuer = { regionId: "cn-hangzhou", clusterId: "c0123456" };
const issuer = issuerOf(target.regionId, target.clusterId);
const detail = (over: Partial<AckClusterDetail> = {}): AckClusterDetail => ({
  clusterId: target.clusterId,
  regionId: target.regionId,
  rrsa: { enabled: true, issuer: `${issuer},https://kubernetes.default.svc`, oidcArn: `acs:ram::1000000000000001:oidc-provider/ack-rrsa-${target.clusterId}` },
  tags: [{ key: "acr", value: "on" }],
  ...over,
});

describe("cluster group membership (judge)", () => {
  const answer = (d: AckClusterDetail) => ({ accountId: "1000000000000001", detail: d });

  it("admits a cluster with RRSA on for exactly the token's issuer and the group's tag, in its region, with the group's grants", () => {
    expect(judge(group, issuer, target, answer(detail()))).toEqual({
      trusted: true,
      cluster: { name: "ack-prod/c0123456", issuer, subjects: [defaultSubject], registries: [], allowRrsa: false, regionId: "cn-hangzhou" },
    });
  });

  it.each([
    ["not found", { accountId: "1000000000000001", notFound: true as const }, /does not exist in account 1000000000000001/],
    ["RRSA off", answer(detail({ rrsa: { enabled: false, issuer: undefined, oidcArn: undefined } })), /does not have RRSA enabled/],
    [
      "another issuer",
      answer(detail({ rrsa: { enabled: true, issuer: issuerOf("cn-hangzhou", "c9999999"), oidcArn: undefined } })),
      /its RRSA issuer is .*c9999999, not the token's issuer/,
    ],
    ["another region", answer(detail({ regionId: "cn-beijing" })), /is in region cn-beijing/],
    [
      "another account's provider",
      answer(detail({ rrsa: { enabled: true, issuer, oidcArn: "acs:ram::2000000000000002:oidc-provider/x" } })),
      /belongs to account 2000000000000002/,
    ],
    ["no tag", answer(detail({ tags: [{ key: "acr", value: "off" }] })), /lacks the tag acr=on that cluster group 'ack-prod' requires/],
  ])("refuses a cluster: %s", (_, given, reason) => {
    const verdict = judge(group, issuer, target, given);
    expect(verdict.trusted).toBe(false);
    expect(!verdict.trusted && verdict.reason).toMatch(reason);
  });
});

describe("cluster group confirmations (counting describe function, no network)", () => {
  const base = identityFromKeys({ accessKeyId: "AKTEST0000000001", accessKeySecret: "not-a-secret" });
  const upstream = () => ({ base, deadline: performance.now() + 5000 });

  function trust(answers: (t: AckIssuer) => AckClusterDetail | Error, limits = {}) {
    let now = 1_000_000;
    const calls: string[] = [];
    const groups = createGroupTrust({
      groups: [group],
      ackIssuer: ackForm,
      describe: async (_identity, t) => {
        calls.push(t.clusterId);
        const result = answers(t);
        if (result instanceof Error) throw result;
        return result;
      },
      identityFor: async () => base,
      clock: { now: () => now },
      log: pino({ level: "silent" }),
      limits,
      sleep: async () => {},
    });
    return { groups, calls, advance: (ms: number) => void (now += ms) };
  }
  const notFound = () => new AcrCredentialError("UpstreamError", "not found", { details: { retryable: false, upstreamCode: "ErrorClusterNotFound" } });
  const unavailable = () => new AcrCredentialError("UpstreamUnavailable", "down", { details: { retryable: false } });

  it("asks once for concurrent tokens of a new cluster, then serves it from memory until the confirmation expires", async () => {
    const { groups, calls, advance } = trust(() => detail(), { trustedTtlMs: 60_000 });
    const found = await Promise.all(Array.from({ length: 10 }, () => groups.lookup(issuer, upstream())));
    expect(new Set(found.map((c) => c?.name))).toEqual(new Set(["ack-prod/c0123456"]));
    expect(calls).toHaveLength(1);
    advance(59_000);
    await groups.lookup(issuer, upstream());
    expect(calls).toHaveLength(1);
    advance(2_000);
    await groups.lookup(issuer, upstream());
    expect(calls).toHaveLength(2);
  });

  it("remembers a refusal for refusedTtlMs, then asks again", async () => {
    const { groups, calls, advance } = trust(() => notFound(), { refusedTtlMs: 30_000 });
    for (let i = 0; i < 5; i++) await expectAcrError(groups.lookup(issuer, upstream()), "InvalidToken", /not a configured cluster/);
    expect(calls).toHaveLength(1);
    advance(31_000);
    await expectAcrError(groups.lookup(issuer, upstream()), "InvalidToken");
    expect(calls).toHaveLength(2);
  });

  it("bounds the ACK lookups forged issuers can cause per minute", async () => {
    const { groups, calls, advance } = trust(() => notFound(), { confirmationsPerMinute: 3 });
    const forged = (i: number) => issuerOf("cn-hangzhou", `c0forged${String(i).padStart(4, "0")}`);
    for (let i = 0; i < 3; i++) await expectAcrError(groups.lookup(forged(i), upstream()), "InvalidToken");
    for (let i = 3; i < 50; i++) await expectAcrError(groups.lookup(forged(i), upstream()), "RateLimited", /try again in a minute/);
    expect(calls).toHaveLength(3);
    advance(60_000);
    await expectAcrError(groups.lookup(forged(99), upstream()), "InvalidToken");
    expect(calls).toHaveLength(4);
  });

  it("never lets forged issuers use up what known clusters need: renewing a confirmation is outside the budget", async () => {
    const { groups, calls, advance } = trust((t) => (t.clusterId === "c0123456" ? detail() : notFound()), { confirmationsPerMinute: 2, trustedTtlMs: 30_000 });
    await groups.lookup(issuer, upstream());
    const forged = (i: number) => issuerOf("cn-hangzhou", `c0forged${String(i).padStart(4, "0")}`);
    advance(60_000);
    await expectAcrError(groups.lookup(forged(1), upstream()), "InvalidToken");
    await expectAcrError(groups.lookup(forged(2), upstream()), "InvalidToken");
    await expectAcrError(groups.lookup(forged(3), upstream()), "RateLimited");
    expect((await groups.lookup(issuer, upstream()))?.name).toBe("ack-prod/c0123456");
    expect(calls).toEqual(["c0123456", "c0forged0001", "c0forged0002", "c0123456"]);
  });

  it("does not take the broker's own refused key for an absent cluster: nothing is remembered", async () => {
    const badKey = () => new AcrCredentialError("UpstreamError", "refused", { details: { retryable: false, upstreamCode: "InvalidAccessKeyId.NotFound" } });
    let broken = true;
    const { groups, calls } = trust(() => (broken ? badKey() : detail()));
    await expectAcrError(groups.lookup(issuer, upstream()), "UpstreamUnavailable");
    broken = false;
    expect((await groups.lookup(issuer, upstream()))?.name).toBe("ack-prod/c0123456");
    expect(calls).toHaveLength(2);
  });

  it("keeps at most maxEntries refusals, so a flood of forged issuers cannot grow memory", async () => {
    const { groups, calls } = trust(() => notFound(), { maxEntries: 10, confirmationsPerMinute: 1000 });
    const forged = (i: number) => issuerOf("cn-hangzhou", `c0forged${String(i).padStart(4, "0")}`);
    for (let i = 0; i < 20; i++) await expectAcrError(groups.lookup(forged(i), upstream()), "InvalidToken");
    // The oldest refusal was evicted: asking about it costs a lookup again, the newest does not.
    await expectAcrError(groups.lookup(forged(19), upstream()), "InvalidToken");
    expect(calls).toHaveLength(20);
    await expectAcrError(groups.lookup(forged(0), upstream()), "InvalidToken");
    expect(calls).toHaveLength(21);
  });

  it("keeps serving a confirmed cluster while the ACK API is down, but cannot decide about a new one", async () => {
    let down = false;
    const { groups, advance } = trust((t) => (down ? unavailable() : t.clusterId === "c0123456" ? detail() : notFound()), { trustedTtlMs: 1000 });
    await groups.lookup(issuer, upstream());
    down = true;
    advance(5_000);
    expect((await groups.lookup(issuer, upstream()))?.name).toBe("ack-prod/c0123456");
    await expectAcrError(groups.lookup(issuerOf("cn-hangzhou", "c0brandnew1"), upstream()), "UpstreamUnavailable", /cannot be confirmed right now/);
  });

  it("ignores issuers of another form or of a region no group covers", async () => {
    const { groups, calls } = trust(() => detail());
    expect(await groups.lookup("https://oidc.example.test/c0123456", upstream())).toBeUndefined();
    const regional = createGroupTrust({
      groups: [{ ...group, regions: ["cn-beijing"] }],
      ackIssuer: ackForm,
      describe: async () => detail(),
      identityFor: async () => base,
      clock: { now: () => 0 },
      log: pino({ level: "silent" }),
    });
    expect(await regional.lookup(issuer, upstream())).toBeUndefined();
    expect(calls).toHaveLength(0);
  });
});

describe("clusterGroups in the configuration", () => {
  const valid = { audience: "a", clusterGroups: [{ name: "ack", accounts: [{ id: "1000000000000001" }], subjects: ["s"] }] };

  it("is enough on its own: no clusters entry is needed", () => {
    expect(parseConfig(valid, "test").clusterGroups[0]!.name).toBe("ack");
  });

  it("refuses a configuration that trusts no cluster at all", () => {
    expect(() => parseConfig({ audience: "a" }, "test")).toThrow(/no cluster is trusted; add clusters entries or clusterGroups/);
  });

  it("refuses an ACK issuer form without its placeholders, or over plain http", () => {
    expect(() => parseConfig({ ...valid, alibabaCloud: { ackIssuer: "https://oidc.example.test/{clusterId}" } }, "test")).toThrow(
      /alibabaCloud\.ackIssuer: expected a URL form with \{regionId\} and \{clusterId\}/,
    );
    expect(() => parseConfig({ ...valid, alibabaCloud: { ackIssuer: "http://oidc.example.test/{regionId}/{clusterId}" } }, "test")).toThrow(
      /alibabaCloud\.ackIssuer: expected an https URL form/,
    );
  });

  it("refuses a reader role of another account than the one it is listed for", () => {
    const config = {
      ...valid,
      clusterGroups: [{ ...valid.clusterGroups[0], accounts: [{ id: "1000000000000001", roleArn: "acs:ram::2000000000000002:role/ack-reader" }] }],
    };
    expect(() => parseConfig(config, "test")).toThrow(/clusterGroups\[0\]\.accounts\[0\]\.roleArn: roleArn must be a role of this account/);
  });
});

describe("configuration text", () => {
  const group = { name: "ack", accounts: [{ id: "1000000000000001" }], subjects: ["s"] };

  it("reads JSON as JSON and YAML flow style, which is not JSON, as YAML", () => {
    expect(parseConfigText(JSON.stringify({ audience: "a", clusterGroups: [group] }), "json").audience).toBe("a");
    expect(
      parseConfigText('{audience: a, clusterGroups: [{name: ack, accounts: [{id: "1000000000000001"}], subjects: [s]}]}', "flow").clusterGroups[0]!.name,
    ).toBe("ack");
  });

  it("reports broken JSON as a configuration error, not a crash", () => {
    expect(() => parseConfigText('{"audience": "a", "clusterGroups": [', "broken.json")).toThrow(/^broken\.json: not valid YAML or JSON/);
  });
});
