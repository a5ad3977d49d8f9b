import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as $Sts from "@alicloud/sts20150401";
import { generateKeyPair } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClock, startEmulator, type Emulator, type WorldInput } from "../../emulator/index.ts";
import { anonymousStsClient, crCall, failure, sessionKey } from "./clients.ts";
import { createTestIssuer, serveIssuerOverHttps, type TestIssuer } from "./oidc-issuer.ts";
import { accountA, instances, testWorld } from "./world.ts";

const inlineProvider = `acs:ram::${accountA}:oidc-provider/ack-rrsa-inline`;
const discoveredProvider = `acs:ram::${accountA}:oidc-provider/ack-rrsa-discovered`;
const brokenProvider = `acs:ram::${accountA}:oidc-provider/ack-rrsa-broken`;
const limitedProvider = `acs:ram::${accountA}:oidc-provider/ack-rrsa-limited`;
const inlineRole = `acs:ram::${accountA}:role/rrsa-inline`;
const discoveredRole = `acs:ram::${accountA}:role/rrsa-discovered`;
const brokenRole = `acs:ram::${accountA}:role/rrsa-broken`;
const limitedRole = `acs:ram::${accountA}:role/rrsa-limited`;

function rrsaTrust(provider: string, issuer: string) {
  return {
    Statement: [
      {
        Effect: "Allow" as const,
        Action: "sts:AssumeRole",
        Principal: { Federated: [provider] },
        Condition: { StringEquals: { "oidc:aud": "sts.aliyuncs.com", "oidc:iss": issuer }, StringLike: { "oidc:sub": "system:serviceaccount:kube-system:*" } },
      },
    ],
  };
}

describe("STS AssumeRoleWithOIDC", () => {
  let emulator: Emulator;
  let inline: TestIssuer;
  let discovered: Awaited<ReturnType<typeof serveIssuerOverHttps>>;
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "sts-oidc-"));
    inline = await createTestIssuer("https://oidc.test/cluster-inline");
    discovered = await serveIssuerOverHttps("/cluster-discovered", (origin) => createTestIssuer(origin, "discovered-key"));
    await writeFile(join(dir, "issuer-ca.pem"), discovered.caPem);
    const world = testWorld({
      oidcProviders: [
        { name: "ack-rrsa-inline", issuer: inline.issuer, clientIds: ["sts.aliyuncs.com"], jwks: inline.jwks },
        { name: "ack-rrsa-discovered", issuer: discovered.issuer.issuer, clientIds: ["sts.aliyuncs.com"], caFile: join(dir, "issuer-ca.pem") },
        { name: "ack-rrsa-broken", issuer: "https://127.0.0.1:1/nothing-listens-here", clientIds: ["sts.aliyuncs.com"] },
        // The same issuer, registered again with RAM's shortest IssuanceLimitTime.
        { name: "ack-rrsa-limited", issuer: inline.issuer, clientIds: ["sts.aliyuncs.com"], jwks: inline.jwks, issuanceLimitTime: 1 },
      ],
    }) as WorldInput & { accounts: { roles: unknown[] }[] };
    const pull = world.accounts[0]!.roles.find((role) => (role as { name: string }).name === "acr-pull") as { policies: unknown };
    world.accounts[0]!.roles.push(
      { name: "rrsa-inline", trustPolicy: rrsaTrust(inlineProvider, inline.issuer), policies: pull.policies },
      { name: "rrsa-discovered", trustPolicy: rrsaTrust(discoveredProvider, discovered.issuer.issuer), policies: pull.policies },
      { name: "rrsa-broken", trustPolicy: rrsaTrust(brokenProvider, "https://127.0.0.1:1/nothing-listens-here"), policies: pull.policies },
      { name: "rrsa-limited", trustPolicy: rrsaTrust(limitedProvider, inline.issuer), policies: pull.policies },
    );
    emulator = await startEmulator({ world, clock: createClock() });
  });
  afterAll(async () => {
    await emulator?.close();
    await discovered?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const exchange = (token: string, options: { provider?: string; role?: string; session?: string; duration?: number } = {}) =>
    anonymousStsClient(emulator.endpoints.sts).assumeRoleWithOIDC(
      new $Sts.AssumeRoleWithOIDCRequest({
        OIDCProviderArn: options.provider ?? inlineProvider,
        OIDCToken: token,
        roleArn: options.role ?? inlineRole,
        roleSessionName: options.session ?? "rrsa-session",
        durationSeconds: options.duration,
      }),
    );

  it("exchanges a token the provider's keys verify for the role's credentials", async () => {
    const token = await inline.sign({ sub: "system:serviceaccount:kube-system:acr-helper" });
    const body = (await exchange(token)).body!;
    expect(body.credentials?.accessKeyId).toMatch(/^STS\./);
    expect(body.assumedRoleUser?.arn).toBe(`acs:ram::${accountA}:role/rrsa-inline/rrsa-session`);
    expect(body.OIDCTokenInfo).toMatchObject({
      subject: "system:serviceaccount:kube-system:acr-helper",
      issuer: inline.issuer,
      clientIds: "sts.aliyuncs.com",
      verificationInfo: "Success",
    });
    await expect(crCall(emulator.endpoints.cr, sessionKey(body), "GetAuthorizationToken", { InstanceId: instances.demo })).resolves.toMatchObject({
      IsSuccess: true,
    });
  });

  it("fetches keys through OIDC discovery over HTTPS trusting the provider's caFile", async () => {
    const token = await discovered.issuer.sign({});
    await expect(exchange(token, { provider: discoveredProvider, role: discoveredRole })).resolves.toMatchObject({ statusCode: 200 });
  });

  it("refuses a token whose audience is not a client id of the provider: AuthenticationFail.OIDCToken.AudienceNotMatch", async () => {
    const token = await inline.sign({ aud: "acr-credential-broker" });
    expect(await failure(exchange(token))).toMatchObject({ code: "AuthenticationFail.OIDCToken.AudienceNotMatch", statusCode: 401 });
  });

  it("refuses a token from another issuer: AuthenticationFail.OIDCToken.IssuerNotMatch", async () => {
    const token = await inline.sign({ iss: "https://oidc.test/someone-else" });
    expect(await failure(exchange(token))).toMatchObject({ code: "AuthenticationFail.OIDCToken.IssuerNotMatch" });
  });

  it("refuses a subject the trust policy's oidc:sub condition does not match: AuthenticationFail.NoPermission", async () => {
    const token = await inline.sign({ sub: "system:serviceaccount:default:app" });
    expect(await failure(exchange(token))).toMatchObject({ code: "AuthenticationFail.NoPermission", statusCode: 401 });
  });

  it("refuses a token for a role whose trust policy names another provider", async () => {
    const token = await inline.sign({});
    expect(await failure(exchange(token, { role: discoveredRole }))).toMatchObject({ code: "AuthenticationFail.NoPermission" });
  });

  it("refuses an expired token: AuthenticationFail.OIDCToken.Expired", async () => {
    const past = Math.floor(Date.now() / 1000) - 7200;
    const token = await inline.sign({ iat: past, exp: past + 600 });
    expect(await failure(exchange(token))).toMatchObject({ code: "AuthenticationFail.OIDCToken.Expired" });
  });

  it("judges token expiry by the emulator clock", async () => {
    const token = await inline.sign({ expiresIn: 600 });
    emulator.clock.advance(601_000);
    try {
      expect(await failure(exchange(token))).toMatchObject({ code: "AuthenticationFail.OIDCToken.Expired" });
    } finally {
      emulator.clock.advance(-601_000);
    }
    await expect(exchange(token)).resolves.toMatchObject({ statusCode: 200 });
  });

  it("refuses a provider that is not registered: AuthenticationFail.NoPermission", async () => {
    const token = await inline.sign({});
    const error = await failure(exchange(token, { provider: `acs:ram::${accountA}:oidc-provider/unknown` }));
    expect(error).toMatchObject({ code: "AuthenticationFail.NoPermission" });
    expect(error.message).toMatch(/No such OIDC Provider/);
  });

  it("refuses a token signed by a key the provider does not publish: AuthenticationFail.OIDCToken.InvalidSignature (401)", async () => {
    const { privateKey } = await generateKeyPair("RS256");
    // Under the published key's kid, and under a kid the provider has never published.
    const forged = await inline.sign({}, { key: privateKey });
    const unknownKid = await inline.sign({}, { key: privateKey, kid: "rotated-key-2" });
    for (const token of [forged, unknownKid]) {
      const error = await failure(exchange(token));
      expect(error).toMatchObject({ name: "ClientError", code: "AuthenticationFail.OIDCToken.InvalidSignature", statusCode: 401 });
      expect(error.message).toContain(inline.issuer);
    }
    // Keys found through discovery: a kid the issuer does not serve, even after fetching its keys again.
    const rotated = await discovered.issuer.sign({}, { key: privateKey, kid: "rotated-key-2" });
    expect(await failure(exchange(rotated, { provider: discoveredProvider, role: discoveredRole }))).toMatchObject({
      code: "AuthenticationFail.OIDCToken.InvalidSignature",
      statusCode: 401,
    });
  });

  it("refuses a string that is not a JWT: AuthenticationFail.OIDCToken.Invalid (401)", async () => {
    expect(await failure(exchange("not.a.jwt"))).toMatchObject({ code: "AuthenticationFail.OIDCToken.Invalid", statusCode: 401 });
  });

  it("answers every AuthenticationFail.* with HTTP 401", async () => {
    const codes = emulator.log.filter((entry) => entry.api === "sts:AssumeRoleWithOIDC" && entry.outcome.startsWith("AuthenticationFail."));
    expect(new Set(codes.map((entry) => entry.outcome)).size).toBeGreaterThanOrEqual(5);
    expect(codes.filter((entry) => entry.status !== 401)).toEqual([]);
  });

  describe("the OIDC provider's IssuanceLimitTime", () => {
    const hoursAgo = (hours: number) => Math.floor(emulator.clock.now() / 1000) - hours * 3600;

    it("refuses a still-valid token issued longer ago than the provider's limit", async () => {
      const token = await inline.sign({ iat: hoursAgo(2), exp: hoursAgo(2) + 4 * 3600 });
      const error = await failure(exchange(token, { provider: limitedProvider, role: limitedRole }));
      expect(error).toMatchObject({ code: "AuthenticationFail.OIDCToken.Expired", statusCode: 401 });
      expect(error.message).toMatch(/issued more than 1 hours ago.*IssuanceLimitTime/);
      // The same token through a provider with RAM's default limit (12 h) is accepted.
      await expect(exchange(token)).resolves.toMatchObject({ statusCode: 200 });
    });

    it("accepts a token issued within the limit", async () => {
      const token = await inline.sign({ iat: hoursAgo(0.5), exp: hoursAgo(0.5) + 3600 });
      await expect(exchange(token, { provider: limitedProvider, role: limitedRole })).resolves.toMatchObject({ statusCode: 200 });
    });

    it("applies RAM's default of 12 hours when the world sets none", async () => {
      const token = await inline.sign({ iat: hoursAgo(13), exp: hoursAgo(13) + 24 * 3600 });
      expect(await failure(exchange(token))).toMatchObject({
        code: "AuthenticationFail.OIDCToken.Expired",
        message: expect.stringMatching(/more than 12 hours/),
      });
    });
  });

  it("refuses a token when the issuer's keys cannot be fetched: AuthenticationFail.OIDCToken.IssuerConfigurationBroken", async () => {
    const broken = await createTestIssuer("https://127.0.0.1:1/nothing-listens-here");
    expect(await failure(exchange(await broken.sign({}), { provider: brokenProvider, role: brokenRole }))).toMatchObject({
      code: "AuthenticationFail.OIDCToken.IssuerConfigurationBroken",
    });
  });

  it("refuses DurationSeconds above the role's maximum", async () => {
    expect(await failure(exchange(await inline.sign({}), { duration: 3601 }))).toMatchObject({ code: "InvalidParameter.DurationSeconds" });
  });

  it("accepts the @alicloud/credentials request shape: Format=JSON in the query, parameters in a form body", async () => {
    const token = await inline.sign({});
    const query = new URLSearchParams({ Version: "2015-04-01", Action: "AssumeRoleWithOIDC", Format: "JSON", Timestamp: new Date().toISOString() });
    const form = new URLSearchParams({
      OIDCProviderArn: inlineProvider,
      OIDCToken: token,
      RoleArn: inlineRole,
      RoleSessionName: "credentials-nodejs-1",
      DurationSeconds: "3600",
    });
    const response = await fetch(`${emulator.endpoints.http}/?${query}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: form.toString(),
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { Credentials: { AccessKeyId: string; Expiration: string } };
    expect(body.Credentials.AccessKeyId).toMatch(/^STS\./);
    expect(body.Credentials.Expiration).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
  });

  it("logs the exchange as anonymous with the role it asked for", () => {
    const entries = emulator.log.filter({ api: "sts:AssumeRoleWithOIDC" });
    expect(entries.length).toBeGreaterThan(5);
    expect(entries.every((entry) => entry.principal === "anonymous")).toBe(true);
    expect(entries.some((entry) => entry.outcome === "ok" && entry.resource === inlineRole)).toBe(true);
  });
});
