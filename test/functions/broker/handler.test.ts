/** HTTP behaviour of the FC handler that needs no upstream: routing, limits, headers, errors. */
import { beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../../functions/broker/config.ts";
import { createHandler, maxBodyBytes } from "../../../functions/broker/handler.ts";
import { createRuntime } from "../../../functions/broker/runtime.ts";
import { createAlibabaCloud } from "../../../shared/alibaba/cloud.ts";
import { createTestCluster, defaultSubject, type TestCluster } from "./support/clusters.ts";
import { bearer, invokeHttp, testContext, type FcHandler } from "./support/invoke.ts";
import { captureLogs } from "./support/logs.ts";

let cluster: TestCluster;
let handler: FcHandler;

beforeAll(async () => {
  cluster = await createTestCluster("prod");
  const config = parseConfig(
    {
      audience: "acr-credential-broker",
      forceIntervalSeconds: 60,
      clusters: [{ name: "prod", issuer: cluster.issuer, jwks: cluster.jwks, subjects: [defaultSubject], registries: [{ regionId: "cn-beijing" }] }],
    },
    "test",
  );
  // Port 9 (discard) is closed: any upstream call would fail loudly.
  const runtime = createRuntime({
    loaded: { config, baseDir: ".", source: "test" },
    log: captureLogs().log,
    cloud: createAlibabaCloud({ stsEndpoint: "127.0.0.1:9", crEndpoint: "127.0.0.1:9", protocol: "http" }),
  });
  handler = createHandler(() => runtime);
});

describe("the FC HTTP handler", () => {
  it("answers GET /healthz with status and version", async () => {
    const answer = await invokeHttp(handler, { method: "GET", path: "/healthz" });
    expect(answer.status).toBe(200);
    expect(answer.json).toEqual({ status: "ok", version: expect.stringMatching(/^\d+\.\d+\.\d+/) });
  });

  it("marks every response Cache-Control: no-store with a request id, errors included", async () => {
    for (const call of [{ method: "GET", path: "/healthz" }, { method: "GET", path: "/nope" }, { body: {} }]) {
      const context = testContext();
      const answer = await invokeHttp(handler, call, context);
      expect(answer.headers["cache-control"]).toBe("no-store");
      expect(answer.headers["x-request-id"]).toBe(context.requestId);
      expect(answer.raw.isBase64Encoded).toBe(false);
    }
  });

  it("answers an unknown path with 404 NotFound", async () => {
    const answer = await invokeHttp(handler, { method: "GET", path: "/v2/credentials" });
    expect(answer.status).toBe(404);
    expect(answer.json).toEqual({ error: { code: "NotFound", message: expect.stringContaining("POST /v1/credentials") } });
  });

  it("answers a wrong method with 405 and Allow", async () => {
    const answer = await invokeHttp(handler, { method: "GET", path: "/v1/credentials" });
    expect(answer.status).toBe(405);
    expect(answer.headers.allow).toBe("POST");
  });

  it("refuses a body over 64 KiB with 413 before looking at the token", async () => {
    const answer = await invokeHttp(handler, { body: "x".repeat(maxBodyBytes + 1) });
    expect(answer.status).toBe(413);
    expect((answer.json.error as { code: string }).code).toBe("PayloadTooLarge");
  });

  it("refuses a body that is not JSON with 400", async () => {
    const answer = await invokeHttp(handler, { headers: bearer(await cluster.mint()), body: "{not json" });
    expect(answer.status).toBe(400);
    expect((answer.json.error as { code: string }).code).toBe("InvalidRequest");
  });

  it("refuses an unknown body field with 400 naming it", async () => {
    const answer = await invokeHttp(handler, { headers: bearer(await cluster.mint()), body: { registries: [], forced: true } });
    expect(answer.status).toBe(400);
    expect((answer.json.error as { message: string }).message).toMatch(/forced/);
  });

  it("reads a base64-encoded body as FC sends binary payloads", async () => {
    const answer = await invokeHttp(handler, { headers: bearer(await cluster.mint()), body: { registries: [] }, base64: true });
    expect(answer.status).toBe(200);
  });

  it("accepts an empty body (every registry of the cluster) and header names in any case", async () => {
    const answer = await invokeHttp(handler, { headers: { AUTHORIZATION: `bearer ${await cluster.mint()}` }, body: "", path: "/v1/credentials" });
    // The Personal Edition entry then needs the (closed) upstream: the token was accepted.
    expect(answer.status).not.toBe(401);
    expect(answer.status).not.toBe(400);
  });

  it("rate-limits force per cluster: 429 RateLimited with Retry-After", async () => {
    const token = await cluster.mint();
    const first = await invokeHttp(handler, { headers: bearer(token), body: { registries: [], force: true } });
    expect(first.status).toBe(200);
    const second = await invokeHttp(handler, { headers: bearer(token), body: { registries: [], force: true } });
    expect(second.status).toBe(429);
    expect(Number(second.headers["retry-after"])).toBeGreaterThan(0);
    expect(Number(second.headers["retry-after"])).toBeLessThanOrEqual(60);
    expect((second.json.error as { code: string }).code).toBe("RateLimited");
  });

  it("refuses an event that is neither an HTTP trigger event nor a renew action", async () => {
    const answer = (await handler(Buffer.from(JSON.stringify({ hello: "world" })), testContext())) as { statusCode: number };
    expect(answer.statusCode).toBe(400);
  });

  it("answers a renew invocation for an unknown cluster with a NotFound error object", async () => {
    const answer = await handler(Buffer.from(JSON.stringify({ action: "renew", cluster: "nope" })), testContext());
    expect(answer).toEqual({ error: { code: "NotFound", message: expect.stringContaining("'nope'") } });
  });

  it("refuses an unknown action", async () => {
    const answer = await handler(Buffer.from(JSON.stringify({ action: "delete" })), testContext());
    expect(answer).toMatchObject({ error: { code: "InvalidRequest" } });
  });

  it("answers a direct invocation it cannot run as a direct invocation, and an event that is no invocation at all as HTTP", async () => {
    expect(await handler(Buffer.from('{"action":"renew","cluster":7}'), testContext())).toEqual({
      error: { code: "InvalidRequest", message: "cluster must be a non-empty string" },
    });
    expect(await handler(Buffer.from("not json"), testContext())).toMatchObject({ statusCode: 400, body: expect.stringContaining('"code":"InvalidRequest"') });
  });
});

describe("a broker whose configuration is invalid", () => {
  it("answers every request with 500 ConfigInvalid naming the problem, without a stack", async () => {
    const broken = createHandler(
      () => createRuntime({ loaded: { config: parseConfig({ audience: "a", clusters: [] }, "BROKER_CONFIG"), baseDir: ".", source: "BROKER_CONFIG" } }),
      () => captureLogs().log,
    );
    const answer = await invokeHttp(broken, { method: "GET", path: "/healthz" });
    expect(answer.status).toBe(500);
    expect(answer.json).toEqual({ error: { code: "ConfigInvalid", message: expect.stringMatching(/^BROKER_CONFIG: clusters: .*fix the configuration/) } });
  });
});
