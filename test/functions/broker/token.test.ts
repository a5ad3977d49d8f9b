/** The verifier remembers verified tokens briefly; what must still be checked on every use. */
import { createLocalJWKSet, type JWTVerifyGetKey } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../../functions/broker/config.ts";
import { createTokenVerifier, verifiedTokenTtlMs, type TokenVerifier } from "../../../functions/broker/token.ts";
import { createTestCluster, defaultSubject, type TestCluster } from "./support/clusters.ts";

let cluster: TestCluster;
let now: number;
let keyLookups: number;
let verify: TokenVerifier;

beforeAll(async () => {
  cluster = await createTestCluster("prod");
});

function fresh() {
  now = Date.now();
  keyLookups = 0;
  const config = parseConfig(
    {
      audience: "acr-credential-broker",
      clockSkewSeconds: 60,
      clusters: [{ name: "prod", issuer: cluster.issuer, jwks: cluster.jwks, subjects: [defaultSubject] }],
    },
    "test",
  );
  const local = createLocalJWKSet(cluster.jwks as Parameters<typeof createLocalJWKSet>[0]);
  const counting: JWTVerifyGetKey = (header, token) => (keyLookups++, local(header, token));
  verify = createTokenVerifier({ config, clock: { now: () => now }, keysFor: () => counting });
}

describe("remembered verifications", () => {
  it("skip the signature check when the same token comes again", async () => {
    fresh();
    const token = await cluster.mint({ now });
    await verify(token);
    await verify(token);
    expect(keyLookups).toBe(1);
  });

  it("check the signature once when the same token arrives on many requests at once", async () => {
    fresh();
    const token = await cluster.mint({ now });
    const verified = await Promise.all(Array.from({ length: 10 }, () => verify(token)));
    expect(verified.map((v) => v.subject)).toEqual(Array.from({ length: 10 }, () => defaultSubject));
    expect(keyLookups).toBe(1);
  });

  it("reject every request that shared a failed check, and check the next one again", async () => {
    fresh();
    const token = await cluster.mint({ now, claims: { aud: ["other"] } });
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => verify(token)));
    expect(results.every((r) => r.status === "rejected")).toBe(true);
    expect(keyLookups).toBe(1);
    await expect(verify(token)).rejects.toThrow(/audience/);
    expect(keyLookups).toBe(2);
  });

  it("are forgotten after a minute, so a key removed from the cluster stops working soon", async () => {
    fresh();
    const token = await cluster.mint({ now, lifetime: 3600 });
    await verify(token);
    now += verifiedTokenTtlMs;
    await verify(token);
    expect(keyLookups).toBe(2);
  });

  it("still expire with the token", async () => {
    fresh();
    const token = await cluster.mint({ now, lifetime: 30 });
    await verify(token);
    now += 30_000 + 60_000 + 1;
    await expect(verify(token)).rejects.toThrow(/expired/);
  });

  it("are kept apart per audience (the RRSA token is checked for sts.aliyuncs.com)", async () => {
    fresh();
    const token = await cluster.mint({ now });
    await verify(token);
    await expect(verify(token, { audience: "sts.aliyuncs.com" })).rejects.toThrow(/audience/);
  });

  it("never cover a token that failed", async () => {
    fresh();
    const token = await cluster.mint({ now, claims: { aud: ["other"] } });
    await expect(verify(token)).rejects.toThrow();
    await expect(verify(token)).rejects.toThrow();
    expect(keyLookups).toBe(2);
  });
});
