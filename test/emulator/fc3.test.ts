/**
 * Function Compute 3.0 InvokeFunction (`POST /2023-03-30/functions/<name>/invocations`) through the
 * real `@alicloud/fc20230330` client, whose ACS3-HMAC-SHA256 signature covers the x-acs-* headers
 * and the SHA-256 of the event: the emulator checks it as the service does.
 */
import { Readable } from "node:stream";
import * as Fc3Package from "@alicloud/fc20230330";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startEmulator, type Emulator, type FcContext } from "../../emulator/index.ts";
import { cjsDefault, runtimeOptions, sdkConfig } from "../../shared/alibaba/sdk.ts";
import { failure, stsClient, type AccessKey } from "./clients.ts";
import { startTamperProxy, type TamperProxy } from "./tamper-proxy.ts";
import { accountA, broker, operator, roles, testWorld } from "./world.ts";

const Fc3 = cjsDefault<typeof Fc3Package.default.default>(Fc3Package.default);

async function invoke(endpoint: string, key: AccessKey, functionName: string, event: string, options: { qualifier?: string; async?: boolean } = {}) {
  const config = sdkConfig(endpoint, "http", { kind: "keys", keys: key });
  config.regionId = "cn-hangzhou";
  const request = new Fc3Package.InvokeFunctionRequest({
    body: Readable.from([Buffer.from(event)]),
    ...(options.qualifier ? { qualifier: options.qualifier } : {}),
  });
  const headers = new Fc3Package.InvokeFunctionHeaders(options.async ? { xFcInvocationType: "Async" } : {});
  const response = await new Fc3(config).invokeFunctionWithOptions(functionName, request, headers, runtimeOptions({ timeoutMs: 10_000 }));
  const chunks: Buffer[] = [];
  for await (const chunk of response.body ?? Readable.from([])) chunks.push(Buffer.from(chunk as Buffer));
  return { status: response.statusCode, headers: response.headers ?? {}, body: Buffer.concat(chunks).toString("utf8") };
}

describe("Function Compute 3.0 InvokeFunction through @alicloud/fc20230330", () => {
  let emulator: Emulator;
  let proxy: TamperProxy;
  let endpoint: string;
  const calls: { event: string; context: FcContext }[] = [];
  const event = JSON.stringify({ action: "renew", cluster: "prod-hz-1" });

  beforeAll(async () => {
    emulator = await startEmulator({ world: testWorld() });
    endpoint = emulator.endpoints.http.replace("http://", "");
    proxy = await startTamperProxy(endpoint);
    emulator.functions.registerFunction(
      accountA,
      "token-broker",
      async (received, context) => {
        calls.push({ event: received.toString("utf8"), context });
        return { renewed: JSON.parse(received.toString("utf8")).cluster as string };
      },
      { role: roles.fcExecution },
    );
  });
  afterAll(async () => {
    await proxy?.close();
    await emulator?.close();
  });
  beforeEach(() => {
    calls.length = 0;
    proxy.mutate = (exchange) => exchange;
  });

  it("reaches the function with the event bytes, its qualifier and its execution role's credentials", async () => {
    const response = await invoke(endpoint, operator, "token-broker", event, { qualifier: "prod" });
    expect(response.status).toBe(200);
    expect(JSON.parse(response.body)).toEqual({ renewed: "prod-hz-1" });
    expect(calls.map((c) => c.event)).toEqual([event]);
    expect(calls[0]!.context).toMatchObject({
      accountId: accountA,
      function: { name: "token-broker" },
      service: { qualifier: "prod" },
      requestId: response.headers["x-fc-request-id"],
    });
    const identity = (await stsClient(emulator.endpoints.sts, calls[0]!.context.credentials!).getCallerIdentity()).body!;
    expect(identity.arn).toMatch(new RegExp(`^acs:ram::${accountA}:assumed-role/fc-broker/`));
    expect(emulator.log.filter({ api: "fc:InvokeFunction" }).at(-1)).toMatchObject({
      principal: `acs:ram::${accountA}:user/operator`,
      resource: "functions/token-broker",
      outcome: "ok",
    });
  });

  it("refuses an event changed on the way, a signed header changed, and the wrong secret, before the function runs", async () => {
    proxy.mutate = (exchange) => ({ ...exchange, body: Buffer.from(exchange.body.toString().replace("prod-hz-1", "prod-hz-2")) });
    expect(await failure(invoke(proxy.endpoint, operator, "token-broker", event))).toMatchObject({ statusCode: 400 });
    proxy.mutate = (exchange) => ({ ...exchange, headers: { ...exchange.headers, "x-fc-invocation-type": "Async", "x-acs-action": "DeleteFunction" } });
    expect(await failure(invoke(proxy.endpoint, operator, "token-broker", event))).toMatchObject({ code: "SignatureDoesNotMatch" });
    expect(await failure(invoke(endpoint, { ...operator, accessKeySecret: "wrong-secret" }, "token-broker", event))).toMatchObject({
      code: "SignatureDoesNotMatch",
    });
    expect(calls).toHaveLength(0);
  });

  it("checks fc:InvokeFunction on acs:fc:<region>:<account>:functions/<name>", async () => {
    expect(await failure(invoke(endpoint, broker, "token-broker", event))).toMatchObject({ code: "AccessDenied", statusCode: 403 });
    expect(calls).toHaveLength(0);
  });

  it("answers FunctionNotFound for a name that is not registered", async () => {
    expect(await failure(invoke(endpoint, operator, "absent", event))).toMatchObject({ code: "FunctionNotFound", statusCode: 404 });
  });

  it("accepts an asynchronous invocation at once and runs the function afterwards", async () => {
    const response = await invoke(endpoint, operator, "token-broker", event, { async: true });
    expect(response.status).toBe(202);
    await expect.poll(() => calls.length).toBe(1);
  });
});
