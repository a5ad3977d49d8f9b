import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startEmulator, type Emulator, type FcContext } from "../../emulator/index.ts";
import { assumeRole, failure, fcClient, sessionKey, stsClient } from "./clients.ts";
import { startTamperProxy, type TamperProxy } from "./tamper-proxy.ts";
import { accountA, broker, operator, roles, testWorld } from "./world.ts";

describe("Function Compute 2.0 InvokeFunction through @alicloud/fc2", () => {
  let emulator: Emulator;
  let proxy: TamperProxy;
  const calls: { event: string; context: FcContext }[] = [];

  beforeAll(async () => {
    emulator = await startEmulator({ world: testWorld() });
    proxy = await startTamperProxy(emulator.endpoints.http.replace("http://", ""));
    emulator.functions.register(
      "token-broker",
      "broker",
      async (event, context) => {
        calls.push({ event: event.toString("utf8"), context });
        return { renewed: JSON.parse(event.toString("utf8")).cluster as string };
      },
      { role: roles.fcExecution },
    );
    emulator.functions.register("token-broker", "crashes", async () => {
      throw new TypeError("cluster config is missing");
    });
  });
  afterAll(async () => {
    await proxy?.close();
    await emulator?.close();
  });
  beforeEach(() => {
    calls.length = 0;
    proxy.mutate = (exchange) => exchange;
  });

  const event = JSON.stringify({ action: "renew", cluster: "prod-hz-1" });

  it("reaches the registered handler with the event bytes and returns its result", async () => {
    const response = await fcClient(emulator.endpoints.fc, accountA, operator).invokeFunction("token-broker", "broker", event);
    expect(JSON.parse(response.data as string)).toEqual({ renewed: "prod-hz-1" });
    expect(calls).toHaveLength(1);
    expect(calls[0]?.event).toBe(event);
    expect(calls[0]?.context).toMatchObject({
      accountId: accountA,
      function: { name: "broker" },
      service: { name: "token-broker", qualifier: "LATEST" },
      requestId: response.headers["x-fc-request-id"],
    });
  });

  it("hands the function its execution role's temporary credentials", async () => {
    await fcClient(emulator.endpoints.fc, accountA, operator).invokeFunction("token-broker", "broker", event);
    const credentials = calls[0]!.context.credentials!;
    expect(credentials.accessKeyId).toMatch(/^STS\./);
    const identity = (await stsClient(emulator.endpoints.sts, credentials).getCallerIdentity()).body!;
    expect(identity.arn).toMatch(new RegExp(`^acs:ram::${accountA}:assumed-role/fc-broker/`));
  });

  it("passes a qualifier through to the context", async () => {
    await fcClient(emulator.endpoints.fc, accountA, operator).invokeFunction("token-broker", "broker", event, {}, "prod");
    expect(calls[0]?.context.service.qualifier).toBe("prod");
  });

  it("accepts STS credentials with x-fc-security-token", async () => {
    const session = sessionKey(await assumeRole(emulator.endpoints.sts, operator, { RoleArn: roles.longSession, RoleSessionName: "fc-caller" }));
    // long-session has no fc:InvokeFunction, so a valid STS signature gets as far as authorisation.
    expect(await failure(fcClient(emulator.endpoints.fc, accountA, session).invokeFunction("token-broker", "broker", event))).toMatchObject({
      code: "AccessDenied",
      name: "FCAccessDeniedError",
    });
  });

  it("refuses a signature made with the wrong secret: SignatureNotMatch", async () => {
    const error = await failure(
      fcClient(emulator.endpoints.fc, accountA, { ...operator, accessKeySecret: "wrong-secret" }).invokeFunction("token-broker", "broker", event),
    );
    expect(error).toMatchObject({ code: "SignatureNotMatch", name: "FCSignatureNotMatchError" });
    expect(error.message).toMatch(/failed with 403/);
    expect(calls).toHaveLength(0);
  });

  it("refuses a request dated more than 15 minutes from now: RequestTimeTooSkewed", async () => {
    const stale = new Date(Date.now() - 16 * 60_000).toUTCString();
    expect(await failure(fcClient(emulator.endpoints.fc, accountA, operator).invokeFunction("token-broker", "broker", event, { date: stale }))).toMatchObject({
      code: "RequestTimeTooSkewed",
    });
    expect(calls).toHaveLength(0);
  });

  it("refuses an unknown access key: InvalidAccessKeyID", async () => {
    expect(
      await failure(
        fcClient(emulator.endpoints.fc, accountA, { accessKeyId: "TESTAKNOBODY0001", accessKeySecret: "x-secret-x" }).invokeFunction(
          "token-broker",
          "broker",
          event,
        ),
      ),
    ).toMatchObject({ code: "InvalidAccessKeyID" });
  });

  it("refuses a signed header altered on the way, and an event changed under its content-md5", async () => {
    proxy.mutate = (exchange) => ({ ...exchange, headers: { ...exchange.headers, "x-fc-invocation-type": "Async" } });
    expect(await failure(fcClient(`http://${proxy.endpoint}`, accountA, operator).invokeFunction("token-broker", "broker", event))).toMatchObject({
      code: "SignatureNotMatch",
    });
    proxy.mutate = (exchange) => ({ ...exchange, body: Buffer.from(exchange.body.toString().replace("prod-hz-1", "prod-hz-2")) });
    expect(await failure(fcClient(`http://${proxy.endpoint}`, accountA, operator).invokeFunction("token-broker", "broker", event))).toMatchObject({
      code: "InvalidArgument",
    });
    expect(calls).toHaveLength(0);
  });

  it("refuses a caller without fc:InvokeFunction: AccessDenied", async () => {
    expect(await failure(fcClient(emulator.endpoints.fc, accountA, broker).invokeFunction("token-broker", "broker", event))).toMatchObject({
      code: "AccessDenied",
    });
  });

  it("answers FunctionNotFound and ServiceNotFound for what is not registered", async () => {
    expect(await failure(fcClient(emulator.endpoints.fc, accountA, operator).invokeFunction("token-broker", "absent", event))).toMatchObject({
      code: "FunctionNotFound",
    });
    expect(await failure(fcClient(emulator.endpoints.fc, accountA, operator).invokeFunction("no-service", "broker", event))).toMatchObject({
      code: "ServiceNotFound",
    });
  });

  it("reports a function that throws as an unhandled invocation error, not an API error", async () => {
    const response = await fcClient(emulator.endpoints.fc, accountA, operator).invokeFunction("token-broker", "crashes", event);
    expect(response.headers["x-fc-error-type"]).toBe("UnhandledInvocationError");
    expect(response.data).toMatchObject({ errorMessage: "cluster config is missing", errorType: "TypeError" });
  });

  it("accepts an asynchronous invocation at once and runs the handler afterwards", async () => {
    const response = await fcClient(emulator.endpoints.fc, accountA, operator).invokeFunction("token-broker", "broker", event, {
      "x-fc-invocation-type": "Async",
    });
    expect(response.data).toBe("");
    await expect.poll(() => calls.length).toBe(1);
  });

  it("logs invocations with the caller and the function", () => {
    const entries = emulator.log.filter({ api: "fc:InvokeFunction" });
    expect(
      entries.some((entry) => entry.outcome === "ok" && entry.principal === `acs:ram::${accountA}:user/operator` && entry.resource === "token-broker/broker"),
    ).toBe(true);
    expect(entries.some((entry) => entry.outcome === "SignatureNotMatch" && entry.principal === "anonymous")).toBe(true);
  });
});
