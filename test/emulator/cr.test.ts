import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClock, startEmulator, type Emulator } from "../../emulator/index.ts";
import type { WorldInput } from "../../emulator/index.ts";
import { assumeRole, crCall, failure, personalToken, sessionKey, type AccessKey } from "./clients.ts";
import { accountA, broker, instances, roles, testWorld, viewer } from "./world.ts";

describe("Container Registry APIs", () => {
  let emulator: Emulator;
  let pull: AccessKey;
  let pullExpiresAt: number;
  let push: AccessKey;
  const start = Math.floor(Date.now() / 1000) * 1000;

  beforeAll(async () => {
    emulator = await startEmulator({ world: testWorld(), clock: createClock({ start, frozen: true }) });
    const assumed = await assumeRole(emulator.endpoints.sts, broker, { RoleArn: roles.acrPull, RoleSessionName: "cr-tests", DurationSeconds: 1800 });
    pull = sessionKey(assumed);
    pullExpiresAt = Date.parse(assumed.credentials!.expiration!);
    push = sessionKey(await assumeRole(emulator.endpoints.sts, broker, { RoleArn: roles.acrPush, RoleSessionName: "cr-push" }));
  });
  afterAll(async () => {
    await emulator?.close();
  });

  const call = (key: AccessKey, action: string, query: Record<string, unknown>) => crCall(emulator.endpoints.cr, key, action, query);

  describe("GetAuthorizationToken (2018-12-01)", () => {
    it("issues a temporary registry login for an instance the caller may use", async () => {
      const body = await call(pull, "GetAuthorizationToken", { InstanceId: instances.demo });
      expect(body).toMatchObject({ Code: "success", IsSuccess: true, TempUsername: "cr_temp_user", RequestId: expect.any(String) });
      expect(body["AuthorizationToken"]).toEqual(expect.any(String));
      expect(typeof body["ExpireTime"]).toBe("number");
    });

    it("never lets the registry password outlive the caller's STS session", async () => {
      const body = await call(pull, "GetAuthorizationToken", { InstanceId: instances.demo });
      // The session was asked for 30 minutes, shorter than the token's own hour.
      expect(body["ExpireTime"]).toBe(pullExpiresAt);
      expect(body["ExpireTime"]).toBeLessThanOrEqual(start + 3600_000);
    });

    it("gives a RAM user's password an hour", async () => {
      const user = { accessKeyId: "TESTAKCRUSER0001", accessKeySecret: "test-secret-cr-user-01" };
      const local = await startEmulator({
        world: {
          accounts: [
            {
              id: accountA,
              users: [
                {
                  name: "ci",
                  accessKeys: [{ id: user.accessKeyId, secret: user.accessKeySecret }],
                  policies: [{ Statement: [{ Effect: "Allow", Action: "cr:GetAuthorizationToken", Resource: "*" }] }],
                },
              ],
              instances: [{ id: "cri-solo", name: "solo", region: "cn-hangzhou" }],
            },
          ],
        },
        clock: createClock({ start, frozen: true }),
      });
      try {
        expect((await crCall(local.endpoints.cr, user, "GetAuthorizationToken", { InstanceId: "cri-solo" }))["ExpireTime"]).toBe(start + 3600_000);
      } finally {
        await local.close();
      }
    });

    it("refuses an instance the caller's policies do not cover: NoPrivilege (403)", async () => {
      expect(await failure(call(pull, "GetAuthorizationToken", { InstanceId: instances.other }))).toMatchObject({
        name: "ClientError",
        code: "NoPrivilege",
        statusCode: 403,
      });
      expect(await failure(call(viewer, "GetAuthorizationToken", { InstanceId: instances.demo }))).toMatchObject({ code: "NoPrivilege" });
    });

    it("refuses an instance of another account, or none at all, with NoPrivilege", async () => {
      expect(await failure(call(push, "GetAuthorizationToken", { InstanceId: instances.foreign }))).toMatchObject({ code: "NoPrivilege" });
      expect(await failure(call(pull, "GetAuthorizationToken", { InstanceId: "cri-nonexistent" }))).toMatchObject({ code: "NoPrivilege" });
    });

    it("asks for InstanceId: MissingInstanceId", async () => {
      expect(await failure(call(pull, "GetAuthorizationToken", {}))).toMatchObject({ code: "MissingInstanceId", statusCode: 400 });
    });
  });

  describe("ListInstanceEndpoint", () => {
    it("lists the instance's endpoints and domains", async () => {
      const body = await call(pull, "ListInstanceEndpoint", { InstanceId: instances.demo });
      expect(body["Endpoints"]).toEqual([
        {
          EndpointType: "internet",
          Enable: true,
          Status: "RUNNING",
          AclEnable: false,
          Domains: [{ Domain: "demo-registry.cn-hangzhou.cr.aliyuncs.com", Type: "SYSTEM" }],
          AclEntries: [],
          LinkedVpcs: [],
        },
        {
          EndpointType: "vpc",
          Enable: true,
          Status: "RUNNING",
          AclEnable: false,
          Domains: [{ Domain: "demo-registry-vpc.cn-hangzhou.cr.aliyuncs.com", Type: "SYSTEM" }],
          AclEntries: [],
          LinkedVpcs: [],
        },
      ]);
    });

    it("reports disabled endpoints and user domains as configured, and omits ACLs with Summary=true", async () => {
      const body = await call(push, "ListInstanceEndpoint", { InstanceId: instances.other, Summary: true });
      expect(body["Endpoints"]).toEqual([
        {
          EndpointType: "internet",
          Enable: false,
          Status: "NOT_OPENED",
          AclEnable: false,
          Domains: [{ Domain: "other-registry.cn-beijing.cr.aliyuncs.com", Type: "SYSTEM" }],
        },
        {
          EndpointType: "vpc",
          Enable: true,
          Status: "RUNNING",
          AclEnable: false,
          Domains: [
            { Domain: "other-registry-vpc.cn-beijing.cr.aliyuncs.com", Type: "SYSTEM" },
            { Domain: "registry.example.com", Type: "USER" },
          ],
        },
      ]);
    });

    it("needs cr:ListInstanceEndpoint on the instance", async () => {
      expect(await failure(call(pull, "ListInstanceEndpoint", { InstanceId: instances.other }))).toMatchObject({ code: "NoPrivilege" });
    });
  });

  describe("GetInstance and ListInstance", () => {
    it("describes an instance with CreateTime as a number of milliseconds", async () => {
      const body = await call(pull, "GetInstance", { InstanceId: instances.demo });
      expect(body).toMatchObject({
        InstanceId: instances.demo,
        InstanceName: "demo",
        InstanceSpecification: "Enterprise_Basic",
        InstanceStatus: "RUNNING",
        IsSuccess: true,
      });
      expect(typeof body["CreateTime"]).toBe("number");
    });

    it("lists the account's instances the caller may see, with times as strings", async () => {
      const body = await call(pull, "ListInstance", {});
      expect(body).toMatchObject({ PageNo: 1, PageSize: 30, TotalCount: 2 });
      const listed = body["Instances"] as { InstanceId: string; RegionId: string; CreateTime: unknown }[];
      expect(listed.map((instance) => [instance.InstanceId, instance.RegionId])).toEqual([
        [instances.demo, "cn-hangzhou"],
        [instances.other, "cn-beijing"],
      ]);
      expect(listed.every((instance) => typeof instance.CreateTime === "string")).toBe(true);
    });

    it("filters by name and pages", async () => {
      expect((await call(pull, "ListInstance", { InstanceName: "other" }))["TotalCount"]).toBe(1);
      const page = await call(pull, "ListInstance", { PageNo: 2, PageSize: 1 });
      expect((page["Instances"] as { InstanceId: string }[]).map((instance) => instance.InstanceId)).toEqual([instances.other]);
    });

    it("refuses a caller without cr:ListInstance", async () => {
      expect(await failure(call(viewer, "ListInstance", {}))).toMatchObject({ code: "NoPrivilege" });
    });
  });

  describe("Personal Edition GET /tokens (2016-06-07)", () => {
    it("returns the account's Personal registry login in a string body the client parses", async () => {
      const raw = await personalToken(emulator.endpoints.cr, push);
      expect(typeof raw).toBe("string");
      const body = JSON.parse(raw as string) as { requestId: string; data: { authorizationToken: string; tempUserName: string; expireDate: number } };
      expect(body.requestId).toEqual(expect.any(String));
      expect(body.data.tempUserName).toBe("cr_temp_user");
      expect(body.data.authorizationToken).toEqual(expect.any(String));
      expect(body.data.expireDate).toBe(start + 3600_000);
    });

    it("needs cr:GetAuthorizationToken on the account's Personal registries", async () => {
      expect(await failure(personalToken(emulator.endpoints.cr, pull))).toMatchObject({ code: "NoPrivilege", statusCode: 403 });
    });
  });

  it("answers InvalidAction.NotFound (404) for an action it does not serve", async () => {
    expect(await failure(call(pull, "DeleteInstance", { InstanceId: instances.demo }))).toMatchObject({ code: "InvalidAction.NotFound", statusCode: 404 });
  });

  it("logs CR calls under the session's ARN with the instance", () => {
    const entries = emulator.log.filter({ api: "cr:GetAuthorizationToken", outcome: "ok" });
    expect(entries[0]).toMatchObject({ principal: `acs:ram::${accountA}:assumed-role/acr-pull/cr-tests`, resource: instances.demo, status: 200 });
    expect(emulator.log.count({ api: "cr:GetPersonalAuthorizationToken" })).toBe(2);
  });
});

/** What CR checks, per its RAM authentication rules (docs/emulator.md), as the real SDK sees it. */
describe("Container Registry authorisation scope", () => {
  const user = { accessKeyId: "TESTAKSCOPEUSER01", accessKeySecret: "test-secret-scope-user-01" };
  const instance = `acs:cr:cn-hangzhou:${accountA}:instance/cri-solo`;
  const worldWith = (resource: string): WorldInput => ({
    accounts: [
      {
        id: accountA,
        users: [
          {
            name: "ci",
            accessKeys: [{ id: user.accessKeyId, secret: user.accessKeySecret }],
            policies: [
              { Statement: [{ Effect: "Allow", Action: ["cr:GetAuthorizationToken", "cr:ListInstanceEndpoint", "cr:GetInstance"], Resource: resource }] },
            ],
          },
        ],
        instances: [{ id: "cri-solo", name: "solo", region: "cn-hangzhou" }],
      },
    ],
  });
  const withWorld = async (resource: string, run: (emulator: Emulator) => Promise<void>) => {
    const local = await startEmulator({ world: worldWith(resource) });
    try {
      await run(local);
    } finally {
      await local.close();
    }
  };

  it("refuses GetAuthorizationToken to a policy scoped to the instance: NoPrivilege (403) in CR's error body", async () => {
    await withWorld(instance, async (local) => {
      const error = await failure(crCall(local.endpoints.cr, user, "GetAuthorizationToken", { InstanceId: "cri-solo" }));
      expect(error).toMatchObject({ name: "ClientError", code: "NoPrivilege", statusCode: 403 });
      expect(error.message).toMatch(/cr:GetAuthorizationToken is not allowed on acs:cr:cn-hangzhou:1000000000000001:\*/);
      expect(error.data).toMatchObject({
        Code: "NoPrivilege",
        HostId: "cr.aliyuncs.com",
        RequestId: expect.any(String),
        Recommend: expect.stringContaining("NoPrivilege"),
      });
      // The instance-scoped actions are still allowed by the same policy.
      await expect(crCall(local.endpoints.cr, user, "ListInstanceEndpoint", { InstanceId: "cri-solo" })).resolves.toMatchObject({ IsSuccess: true });
      await expect(crCall(local.endpoints.cr, user, "GetInstance", { InstanceId: "cri-solo" })).resolves.toMatchObject({ IsSuccess: true });
    });
  });

  it.each([["*"], [`acs:cr:cn-hangzhou:${accountA}:*`], [`acs:cr:*:*:*`]])("grants GetAuthorizationToken on all resources (%s)", async (resource) => {
    await withWorld(resource, async (local) => {
      await expect(crCall(local.endpoints.cr, user, "GetAuthorizationToken", { InstanceId: "cri-solo" })).resolves.toMatchObject({
        IsSuccess: true,
        TempUsername: "cr_temp_user",
      });
    });
  });

  it("refuses GetAuthorizationToken when the policy's region is another", async () => {
    await withWorld(`acs:cr:cn-beijing:${accountA}:*`, async (local) => {
      expect(await failure(crCall(local.endpoints.cr, user, "GetAuthorizationToken", { InstanceId: "cri-solo" }))).toMatchObject({
        code: "NoPrivilege",
        statusCode: 403,
      });
    });
  });
});

describe("Personal Edition before the first registry password", () => {
  const first = { accessKeyId: "TESTAKFIRSTUSE001", accessKeySecret: "test-secret-first-use-01" };
  const ready = { accessKeyId: "TESTAKREADYUSER01", accessKeySecret: "test-secret-ready-user-01" };
  const tokens = { Statement: [{ Effect: "Allow" as const, Action: ["cr:GetAuthorizationToken", "sts:AssumeRole"], Resource: "*" }] };
  let emulator: Emulator;

  beforeAll(async () => {
    emulator = await startEmulator({
      world: {
        accounts: [
          {
            id: accountA,
            users: [
              { name: "first-use", registryPasswordSet: false, accessKeys: [{ id: first.accessKeyId, secret: first.accessKeySecret }], policies: [tokens] },
              { name: "ready", accessKeys: [{ id: ready.accessKeyId, secret: ready.accessKeySecret }], policies: [tokens] },
            ],
            roles: [
              {
                name: "fresh-role",
                registryPasswordSet: false,
                trustPolicy: { Statement: [{ Effect: "Allow", Action: "sts:AssumeRole", Principal: { RAM: [`acs:ram::${accountA}:root`] } }] },
                policies: [tokens],
              },
            ],
            personal: [{ region: "cn-hangzhou" }],
          },
        ],
      },
    });
  });
  afterAll(async () => {
    await emulator?.close();
  });

  it("answers GET /tokens of a user that never set a registry password with USER_NOT_EXIST (404)", async () => {
    const error = await failure(personalToken(emulator.endpoints.cr, first));
    expect(error).toMatchObject({ name: "ClientError", code: "USER_NOT_EXIST", statusCode: 404 });
    // The 2016-06-07 API spells its error fields in lower case.
    expect(error.data).toMatchObject({ code: "USER_NOT_EXIST", message: "user is not exist.", requestId: expect.any(String) });
    await expect(personalToken(emulator.endpoints.cr, ready)).resolves.toEqual(expect.stringContaining("authorizationToken"));
  });

  it("answers a session of a role marked the same way with USER_NOT_EXIST", async () => {
    const session = sessionKey(
      await assumeRole(emulator.endpoints.sts, ready, { RoleArn: `acs:ram::${accountA}:role/fresh-role`, RoleSessionName: "first-use" }),
    );
    expect(await failure(personalToken(emulator.endpoints.cr, session))).toMatchObject({ code: "USER_NOT_EXIST", statusCode: 404 });
  });
});
