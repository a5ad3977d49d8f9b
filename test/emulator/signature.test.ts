import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startEmulator, type Emulator } from "../../emulator/index.ts";
import { assumeRole, crCall, failure, personalToken, sessionKey, type AccessKey } from "./clients.ts";
import { startTamperProxy, type TamperProxy } from "./tamper-proxy.ts";
import { broker, instances, roles, testWorld } from "./world.ts";

/** Every way a signed request can be wrong, sent by the real SDK, and the code the SDK surfaces. */
describe("request signatures", () => {
  let emulator: Emulator;
  let proxy: TamperProxy;
  let pull: AccessKey;
  let push: AccessKey;

  beforeAll(async () => {
    emulator = await startEmulator({ world: testWorld() });
    proxy = await startTamperProxy(emulator.endpoints.cr);
    pull = sessionKey(await assumeRole(emulator.endpoints.sts, broker, { RoleArn: roles.acrPull, RoleSessionName: "signature-tests" }));
    push = sessionKey(await assumeRole(emulator.endpoints.sts, broker, { RoleArn: roles.acrPush, RoleSessionName: "signature-tests" }));
  });
  afterAll(async () => {
    await proxy?.close();
    await emulator?.close();
  });
  beforeEach(() => {
    proxy.mutate = (exchange) => exchange;
  });

  const getToken = (key: AccessKey, headers: Record<string, string> = {}, endpoint = proxy.endpoint) =>
    crCall(endpoint, key, "GetAuthorizationToken", { InstanceId: instances.demo }, headers);

  it("passes an untouched request through the proxy", async () => {
    await expect(getToken(pull)).resolves.toMatchObject({ IsSuccess: true });
  });

  it("refuses a signature made with the wrong secret: SignatureDoesNotMatch", async () => {
    const error = await failure(getToken({ ...pull, accessKeySecret: "not-the-secret" }));
    expect(error).toMatchObject({ name: "ClientError", code: "SignatureDoesNotMatch", statusCode: 400 });
  });

  it("refuses an access key it has never issued: InvalidAccessKeyId.NotFound", async () => {
    const error = await failure(getToken({ accessKeyId: "TESTAKUNKNOWN001", accessKeySecret: "whatever-secret" }));
    expect(error).toMatchObject({ code: "InvalidAccessKeyId.NotFound", statusCode: 404 });
  });

  it("refuses a signed header altered on the way: SignatureDoesNotMatch", async () => {
    proxy.mutate = (exchange) => ({ ...exchange, headers: { ...exchange.headers, "x-acs-credentials-provider": "forged" } });
    expect(await failure(getToken(pull))).toMatchObject({ code: "SignatureDoesNotMatch" });
  });

  it("refuses an x-acs-* header added without being signed: IncompleteSignature", async () => {
    proxy.mutate = (exchange) => ({ ...exchange, headers: { ...exchange.headers, "x-acs-extra": "1" } });
    expect(await failure(getToken(pull))).toMatchObject({ code: "IncompleteSignature", statusCode: 400 });
  });

  it("refuses an altered query parameter: SignatureDoesNotMatch", async () => {
    proxy.mutate = (exchange) => ({ ...exchange, path: exchange.path.replace(instances.demo, instances.other) });
    expect(await failure(getToken(pull))).toMatchObject({ code: "SignatureDoesNotMatch" });
  });

  it("refuses a query parameter appended after signing: SignatureDoesNotMatch", async () => {
    proxy.mutate = (exchange) => ({ ...exchange, path: `${exchange.path}&InstanceId=${instances.other}` });
    expect(await failure(getToken(pull))).toMatchObject({ code: "SignatureDoesNotMatch" });
  });

  it("refuses a body that does not match x-acs-content-sha256: SignatureDoesNotMatch", async () => {
    proxy.mutate = (exchange) => ({ ...exchange, body: Buffer.from("InstanceId=cri-other") });
    expect(await failure(getToken(pull))).toMatchObject({ code: "SignatureDoesNotMatch" });
  });

  it("refuses an altered path: SignatureDoesNotMatch", async () => {
    proxy.mutate = (exchange) => ({ ...exchange, path: exchange.path.replace("/tokens", "/tokens/") });
    expect(await failure(personalToken(proxy.endpoint, push))).toMatchObject({ code: "SignatureDoesNotMatch" });
    proxy.mutate = (exchange) => ({ ...exchange, path: exchange.path.replace(/^\/\?/, "/v2/?") });
    expect(await failure(getToken(pull))).toMatchObject({ code: "SignatureDoesNotMatch" });
  });

  it("refuses a request signed more than 15 minutes ago, or ahead: InvalidTimeStamp.Expired", async () => {
    const stamp = (offsetMs: number) => new Date(Date.now() + offsetMs).toISOString().replace(/\.\d{3}Z$/, "Z");
    expect(await failure(getToken(pull, { "x-acs-date": stamp(-16 * 60_000) }))).toMatchObject({ code: "InvalidTimeStamp.Expired", statusCode: 400 });
    expect(await failure(getToken(pull, { "x-acs-date": stamp(16 * 60_000) }))).toMatchObject({ code: "InvalidTimeStamp.Expired" });
    await expect(getToken(pull, { "x-acs-date": stamp(-10 * 60_000) })).resolves.toMatchObject({ IsSuccess: true });
  });

  it("refuses a malformed date: InvalidTimeStamp.Format", async () => {
    expect(await failure(getToken(pull, { "x-acs-date": "yesterday" }))).toMatchObject({ code: "InvalidTimeStamp.Format" });
  });

  it("refuses a signature nonce used before: SignatureNonceUsed", async () => {
    const nonce = "f".repeat(60) + String(Date.now()).slice(-4);
    await expect(getToken(pull, { "x-acs-signature-nonce": nonce })).resolves.toMatchObject({ IsSuccess: true });
    expect(await failure(getToken(pull, { "x-acs-signature-nonce": nonce }))).toMatchObject({ code: "SignatureNonceUsed", statusCode: 400 });
  });

  it("refuses a replayed request even when it is byte-for-byte the original", async () => {
    let captured: Parameters<TamperProxy["mutate"]>[0] | undefined;
    proxy.mutate = (exchange) => ((captured = exchange), exchange);
    await getToken(pull);
    proxy.mutate = () => captured!;
    expect(await failure(getToken(pull))).toMatchObject({ code: "SignatureNonceUsed" });
  });

  it("refuses an STS key without its security token: MissingSecurityToken", async () => {
    expect(await failure(getToken({ accessKeyId: pull.accessKeyId, accessKeySecret: pull.accessKeySecret }))).toMatchObject({ code: "MissingSecurityToken" });
  });

  it("refuses another session's security token: InvalidSecurityToken.MismatchWithAccessKey", async () => {
    expect(await failure(getToken({ ...pull, securityToken: push.securityToken! }))).toMatchObject({ code: "InvalidSecurityToken.MismatchWithAccessKey" });
  });

  it("refuses a session token after the session's Expiration on the emulator clock: InvalidSecurityToken.Expired", async () => {
    const shortLived = sessionKey(await assumeRole(emulator.endpoints.sts, broker, { RoleArn: roles.acrPull, RoleSessionName: "short", DurationSeconds: 900 }));
    await expect(getToken(shortLived, {}, emulator.endpoints.cr)).resolves.toMatchObject({ IsSuccess: true });
    emulator.clock.advance(901_000);
    try {
      expect(await failure(getToken(shortLived, {}, emulator.endpoints.cr))).toMatchObject({ code: "InvalidSecurityToken.Expired", statusCode: 400 });
    } finally {
      emulator.clock.advance(-901_000);
    }
  });

  it("logs each refusal with its code and without a principal", () => {
    const refused = emulator.log.filter({ api: "cr:GetAuthorizationToken", outcome: "SignatureDoesNotMatch" });
    expect(refused.length).toBeGreaterThanOrEqual(5);
    expect(refused.every((entry) => entry.principal === "anonymous" && entry.status === 400)).toBe(true);
  });
});
