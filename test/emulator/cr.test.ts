import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClock, startEmulator, type Emulator } from "../../emulator/index.ts";
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
        world: { accounts: [{ id: accountA, users: [{ name: "ci", accessKeys: [{ id: user.accessKeyId, secret: user.accessKeySecret }], policies: [{ Statement: [{ Effect: "Allow", Action: "cr:GetAuthorizationToken", Resource: "*" }] }] }], instances: [{ id: "cri-solo", name: "solo", region: "cn-hangzhou" }] }] },
        clock: createClock({ start, frozen: true }),
      });
      try {
        expect((await crCall(local.endpoints.cr, user, "GetAuthorizationToken", { InstanceId: "cri-solo" }))["ExpireTime"]).toBe(start + 3600_000);
      } finally {
        await local.close();
      }
    });

    it("refuses an instance the caller's policies do not cover: NoPrivilege (403)", async () => {
      expect(await failure(call(pull, "GetAuthorizationToken", { InstanceId: instances.other }))).toMatchObject({ name: "ClientError", code: "NoPrivilege", statusCode: 403 });
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
        { EndpointType: "internet", Enable: true, Status: "RUNNING", AclEnable: false, Domains: [{ Domain: "demo-registry.cn-hangzhou.cr.aliyuncs.com", Type: "SYSTEM" }], AclEntries: [], LinkedVpcs: [] },
        { EndpointType: "vpc", Enable: true, Status: "RUNNING", AclEnable: false, Domains: [{ Domain: "demo-registry-vpc.cn-hangzhou.cr.aliyuncs.com", Type: "SYSTEM" }], AclEntries: [], LinkedVpcs: [] },
      ]);
    });

    it("reports disabled endpoints and user domains as configured, and omits ACLs with Summary=true", async () => {
      const body = await call(push, "ListInstanceEndpoint", { InstanceId: instances.other, Summary: true });
      expect(body["Endpoints"]).toEqual([
        { EndpointType: "internet", Enable: false, Status: "NOT_OPENED", AclEnable: false, Domains: [{ Domain: "other-registry.cn-beijing.cr.aliyuncs.com", Type: "SYSTEM" }] },
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
      expect(body).toMatchObject({ InstanceId: instances.demo, InstanceName: "demo", InstanceSpecification: "Enterprise_Basic", InstanceStatus: "RUNNING", IsSuccess: true });
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
