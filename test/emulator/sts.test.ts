import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClock, startEmulator, type Emulator } from "../../emulator/index.ts";
import { assumeRole, crCall, failure, sessionKey, stsClient } from "./clients.ts";
import { accountA, accountB, broker, instances, outsider, roles, testWorld, viewer } from "./world.ts";

const utcSeconds = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

describe("STS AssumeRole", () => {
  let emulator: Emulator;
  const start = Math.floor(Date.now() / 1000) * 1000;

  beforeAll(async () => {
    emulator = await startEmulator({ world: testWorld(), clock: createClock({ start, frozen: true }) });
  });
  afterAll(async () => {
    await emulator?.close();
  });

  const assume = (request: Parameters<typeof assumeRole>[2], key = broker) => assumeRole(emulator.endpoints.sts, key, request);

  it("issues STS credentials for a role whose trust policy names the caller", async () => {
    const body = await assume({ RoleArn: roles.acrPull, RoleSessionName: "refresher@prod" });
    expect(body.credentials?.accessKeyId).toMatch(/^STS\./);
    expect(body.credentials?.accessKeySecret).toEqual(expect.any(String));
    expect(body.credentials?.securityToken).toEqual(expect.any(String));
    expect(body.credentials?.expiration).toBe(utcSeconds(start + 3600_000));
    expect(body.assumedRoleUser?.arn).toBe(`acs:ram::${accountA}:role/acr-pull/refresher@prod`);
    expect(body.assumedRoleUser?.assumedRoleId).toMatch(/^\d+:refresher@prod$/);
  });

  it("lets the issued credentials act as the role session", async () => {
    const key = sessionKey(await assume({ RoleArn: roles.acrPull, RoleSessionName: "whoami" }));
    const identity = (await stsClient(emulator.endpoints.sts, key).getCallerIdentity()).body!;
    expect(identity).toMatchObject({ accountId: accountA, arn: `acs:ram::${accountA}:assumed-role/acr-pull/whoami`, identityType: "AssumedRoleUser" });
    const self = (await stsClient(emulator.endpoints.sts, broker).getCallerIdentity()).body!;
    expect(self).toMatchObject({ arn: `acs:ram::${accountA}:user/broker`, identityType: "RAMUser" });
  });

  it("honours DurationSeconds within [900, MaxSessionDuration]", async () => {
    expect((await assume({ RoleArn: roles.acrPull, RoleSessionName: "short", DurationSeconds: 900 })).credentials?.expiration).toBe(
      utcSeconds(start + 900_000),
    );
    expect((await assume({ RoleArn: roles.longSession, RoleSessionName: "long", DurationSeconds: 7200 })).credentials?.expiration).toBe(
      utcSeconds(start + 7200_000),
    );
  });

  it.each([
    [roles.acrPull, 899],
    [roles.acrPull, 3601],
    [roles.longSession, 7201],
  ])("refuses DurationSeconds outside the role's range (%s, %i): InvalidParameter.DurationSeconds", async (role, duration) => {
    const error = await failure(assume({ RoleArn: role, RoleSessionName: "duration", DurationSeconds: duration }));
    expect(error).toMatchObject({ name: "ClientError", code: "InvalidParameter.DurationSeconds", statusCode: 400 });
  });

  it.each(["a", "has space", "x".repeat(65), "semi;colon"])("refuses the RoleSessionName %j: InvalidParameter.RoleSessionName", async (name) => {
    expect(await failure(assume({ RoleArn: roles.acrPull, RoleSessionName: name }))).toMatchObject({
      code: "InvalidParameter.RoleSessionName",
      statusCode: 400,
    });
  });

  it("refuses a role that does not exist: EntityNotExist.Role (404)", async () => {
    const error = await failure(assume({ RoleArn: `acs:ram::${accountA}:role/no-such-role`, RoleSessionName: "session" }));
    expect(error).toMatchObject({ code: "EntityNotExist.Role", statusCode: 404 });
    expect(error.message).toMatch(/no-such-role/);
  });

  it("refuses a malformed role ARN: InvalidParameter.RoleArn", async () => {
    expect(await failure(assume({ RoleArn: "arn:aws:iam::1:role/x", RoleSessionName: "session" }))).toMatchObject({ code: "InvalidParameter.RoleArn" });
  });

  it("refuses a caller the trust policy does not name: NoPermission (403)", async () => {
    expect(await failure(assume({ RoleArn: roles.acrPull, RoleSessionName: "session" }, outsider))).toMatchObject({ code: "NoPermission", statusCode: 403 });
  });

  it("refuses a trusted caller that lacks sts:AssumeRole on the role: NoPermission", async () => {
    // long-session trusts every principal of account A, but viewer has no permission policy at all.
    expect(await failure(assume({ RoleArn: roles.longSession, RoleSessionName: "session" }, viewer))).toMatchObject({ code: "NoPermission" });
    await expect(assume({ RoleArn: roles.longSession, RoleSessionName: "session" }, outsider)).resolves.toBeDefined();
  });

  it("chains user → role in account A → role in account B, and the last session acts in account B", async () => {
    const hop = sessionKey(await assume({ RoleArn: roles.hop, RoleSessionName: "hop" }));
    const cross = await assumeRole(emulator.endpoints.sts, hop, { RoleArn: roles.crossPull, RoleSessionName: "tenant" });
    expect(cross.assumedRoleUser?.arn).toBe(`acs:ram::${accountB}:role/cross-pull/tenant`);
    const tenantKey = sessionKey(cross);
    await expect(crCall(emulator.endpoints.cr, tenantKey, "GetAuthorizationToken", { InstanceId: instances.foreign })).resolves.toMatchObject({
      IsSuccess: true,
    });
    expect(await failure(crCall(emulator.endpoints.cr, hop, "GetAuthorizationToken", { InstanceId: instances.foreign }))).toMatchObject({
      code: "NoPrivilege",
    });
  });

  it("refuses the cross-account role to a principal its trust policy does not name", async () => {
    expect(await failure(assume({ RoleArn: roles.crossPull, RoleSessionName: "direct" }))).toMatchObject({ code: "NoPermission" });
    const pull = sessionKey(await assume({ RoleArn: roles.acrPull, RoleSessionName: "no-hop" }));
    expect(await failure(assumeRole(emulator.endpoints.sts, pull, { RoleArn: roles.crossPull, RoleSessionName: "chained" }))).toMatchObject({
      code: "NoPermission",
    });
  });

  it("narrows a session to its Policy: the role allows the token, the session policy does not", async () => {
    const policy = JSON.stringify({ Version: "1", Statement: [{ Effect: "Allow", Action: "cr:ListInstanceEndpoint", Resource: "*" }] });
    const narrowed = sessionKey(await assume({ RoleArn: roles.acrPull, RoleSessionName: "narrow", Policy: policy }));
    await expect(crCall(emulator.endpoints.cr, narrowed, "ListInstanceEndpoint", { InstanceId: instances.demo })).resolves.toMatchObject({ IsSuccess: true });
    expect(await failure(crCall(emulator.endpoints.cr, narrowed, "GetAuthorizationToken", { InstanceId: instances.demo }))).toMatchObject({
      code: "NoPrivilege",
    });
  });

  it("refuses a session Policy that is not a policy document: InvalidParameter.PolicyGrammar", async () => {
    expect(await failure(assume({ RoleArn: roles.acrPull, RoleSessionName: "session", Policy: "{not json" }))).toMatchObject({
      code: "InvalidParameter.PolicyGrammar",
    });
  });

  it("logs each call with the caller's ARN, the role and the outcome", async () => {
    emulator.log.clear();
    await assume({ RoleArn: roles.acrPull, RoleSessionName: "logged" });
    await failure(assume({ RoleArn: roles.acrPull, RoleSessionName: "logged" }, outsider));
    expect(
      emulator.log.filter({ api: "sts:AssumeRole" }).map(({ principal, outcome, status, resource }) => ({ principal, outcome, status, resource })),
    ).toEqual([
      { principal: `acs:ram::${accountA}:user/broker`, outcome: "ok", status: 200, resource: roles.acrPull },
      { principal: `acs:ram::${accountA}:user/outsider`, outcome: "NoPermission", status: 403, resource: roles.acrPull },
    ]);
  });
});

describe("STS role chaining cap (the world's sts.roleChainingMaxDuration)", () => {
  const start = Math.floor(Date.now() / 1000) * 1000;
  const chained = async (world: ReturnType<typeof testWorld>, duration: number) => {
    const emulator = await startEmulator({ world, clock: createClock({ start, frozen: true }) });
    try {
      const hop = sessionKey(await assumeRole(emulator.endpoints.sts, broker, { RoleArn: roles.hop, RoleSessionName: "hop" }));
      const direct = await assumeRole(emulator.endpoints.sts, broker, { RoleArn: roles.longSession, RoleSessionName: "direct", DurationSeconds: duration });
      return {
        direct,
        viaRole: await assumeRole(emulator.endpoints.sts, hop, { RoleArn: roles.longSession, RoleSessionName: "chained", DurationSeconds: duration }).catch(
          (error: unknown) => error as { code?: string; statusCode?: number; message: string },
        ),
      };
    } finally {
      await emulator.close();
    }
  };

  it("refuses a role session more than the cap for another role, as InvalidParameter.DurationSeconds; a user still gets it", async () => {
    const { direct, viaRole } = await chained({ ...testWorld(), sts: { roleChainingMaxDuration: 3600 } }, 7200);
    expect(direct.credentials?.expiration).toBe(utcSeconds(start + 7200_000));
    expect(viaRole).toMatchObject({
      code: "InvalidParameter.DurationSeconds",
      statusCode: 400,
      message: expect.stringContaining("The Min/Max value of DurationSeconds is 15min/1hr."),
    });
  });

  it("grants a chained session up to the cap", async () => {
    const { viaRole } = await chained({ ...testWorld(), sts: { roleChainingMaxDuration: 3600 } }, 3600);
    expect((viaRole as { credentials?: { expiration?: string } }).credentials?.expiration).toBe(utcSeconds(start + 3600_000));
  });

  it("does not cap chained sessions unless the world says so", async () => {
    const { viaRole } = await chained(testWorld(), 7200);
    expect((viaRole as { credentials?: { expiration?: string } }).credentials?.expiration).toBe(utcSeconds(start + 7200_000));
  });
});
