import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startEmulator, type Emulator } from "../../emulator/index.ts";
import { assumeRole, crCall, failure, sessionKey, type AccessKey } from "./clients.ts";
import { accountA, broker, instances, roles, testWorld } from "./world.ts";

/** Fault injection as the real SDK experiences it. */
describe("injected faults", () => {
  let emulator: Emulator;
  let pull: AccessKey;

  beforeAll(async () => {
    emulator = await startEmulator({ world: testWorld() });
    pull = sessionKey(await assumeRole(emulator.endpoints.sts, broker, { RoleArn: roles.acrPull, RoleSessionName: "faults" }));
  });
  afterAll(async () => {
    await emulator?.close();
  });
  beforeEach(() => {
    emulator.faults.clear();
    emulator.log.clear();
  });

  const getToken = () => crCall(emulator.endpoints.cr, pull, "GetAuthorizationToken", { InstanceId: instances.demo });

  it("throttles with Throttling.User (HTTP 400), which the SDK raises as a ThrottlingError", async () => {
    emulator.faults.set({ throttleRate: 1, apis: ["cr:"] });
    const error = await failure(getToken());
    expect(error).toMatchObject({ name: "ThrottlingError", code: "Throttling.User", statusCode: 400 });
    expect(emulator.log.filter({ api: "cr:GetAuthorizationToken" })).toMatchObject([
      { outcome: "Throttling.User", status: 400, principal: `acs:ram::${accountA}:assumed-role/acr-pull/faults` },
    ]);
  });

  it("answers CR with HTTP 200, IsSuccess: false and the chosen Code, which the SDK hands back as a body", async () => {
    emulator.faults.set({ unsuccessful: { code: "SYSTEM_ERROR", message: "system busy" }, apis: ["cr:GetAuthorizationToken"] });
    const body = await getToken();
    expect(body).toMatchObject({ IsSuccess: false, Code: "SYSTEM_ERROR", Message: "system busy", RequestId: expect.any(String) });
    expect(body["AuthorizationToken"]).toBeUndefined();
    expect(emulator.log.filter({ api: "cr:GetAuthorizationToken" })).toMatchObject([{ outcome: "SYSTEM_ERROR", status: 200 }]);
    // Other APIs answer as usual.
    await expect(crCall(emulator.endpoints.cr, pull, "ListInstanceEndpoint", { InstanceId: instances.demo })).resolves.toMatchObject({ IsSuccess: true });
  });

  it("answers only a rate share of requests unsuccessfully, reproducibly for a seed", async () => {
    const outcomes = async () => {
      emulator.faults.set({ unsuccessful: { code: "INSTANCE_NOT_EXIST", rate: 0.5 }, seed: 11, apis: ["cr:"] });
      return Promise.all(Array.from({ length: 20 }, async () => (await getToken())["IsSuccess"]));
    };
    const first = await outcomes();
    expect(first.filter((ok) => ok === false).length).toBeGreaterThan(2);
    expect(first.filter((ok) => ok === true).length).toBeGreaterThan(2);
    expect(await outcomes()).toEqual(first);
  });

  it("can be turned on by the world file", async () => {
    const local = await startEmulator({ world: { ...testWorld(), faults: { unsuccessful: { code: "SYSTEM_ERROR" }, apis: ["cr:GetAuthorizationToken"] } } });
    try {
      const session = sessionKey(await assumeRole(local.endpoints.sts, broker, { RoleArn: roles.acrPull, RoleSessionName: "world-faults" }));
      await expect(crCall(local.endpoints.cr, session, "GetAuthorizationToken", { InstanceId: instances.demo })).resolves.toMatchObject({
        IsSuccess: false,
        Code: "SYSTEM_ERROR",
      });
    } finally {
      await local.close();
    }
  });

  it("fails with ServiceUnavailable (503) or InternalError (500), which the SDK raises as a ServerError", async () => {
    emulator.faults.set({ serverErrorRate: 1, seed: 5 });
    const errors = await Promise.all(Array.from({ length: 8 }, () => failure(getToken())));
    for (const error of errors) {
      expect(error.name).toBe("ServerError");
      expect(["503 ServiceUnavailable", "500 InternalError"]).toContain(`${error.statusCode} ${error.code}`);
    }
  });

  it("leaves APIs outside the listed patterns alone", async () => {
    emulator.faults.set({ throttleRate: 1, apis: ["cr:"] });
    await expect(assumeRole(emulator.endpoints.sts, broker, { RoleArn: roles.acrPull, RoleSessionName: "unaffected" })).resolves.toBeDefined();
  });

  it("produces the same outcomes in the same order for the same seed", async () => {
    const outcomes = async () => {
      emulator.faults.set({ throttleRate: 0.4, serverErrorRate: 0.2, seed: 1234 });
      const results: string[] = [];
      for (let i = 0; i < 12; i += 1)
        results.push(
          await getToken().then(
            () => "ok",
            (error: { code: string }) => error.code,
          ),
        );
      return results;
    };
    const first = await outcomes();
    expect(await outcomes()).toEqual(first);
    expect(new Set(first).size).toBeGreaterThan(1);
  });

  it("delays requests by latencyMs, enough to trip a client's read timeout", async () => {
    emulator.faults.set({ latencyMs: 1500, apis: ["cr:GetAuthorizationToken"] });
    const impatient = crCall(emulator.endpoints.cr, pull, "GetAuthorizationToken", { InstanceId: instances.demo }, {}, { readTimeout: 200 });
    expect((await failure(impatient)).message).toMatch(/timeout/i);
  });
});
