/**
 * The HTTP server (custom runtime, `acr-credential broker`) and the FC built-in handler answer the
 * same API: one runtime behind both, the same requests through each, the same statuses, error codes
 * and headers.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serveHttp } from "../../../functions/broker/server.ts";
import type { BrokerServer } from "../../../functions/broker/node-http.ts";
import { startBrokerEnv, type BrokerEnv } from "./support/broker-env.ts";
import { createTestCluster, type TestCluster } from "./support/clusters.ts";
import { invokeHttp } from "./support/invoke.ts";
import { brokerUser } from "./support/world.ts";

let env: BrokerEnv;
let prod: TestCluster;
let server: BrokerServer;
let token: string;

beforeAll(async () => {
  prod = await createTestCluster("prod");
  env = await startBrokerEnv({ clusters: () => [{ name: "prod", key: prod, registries: [{ regionId: "cn-beijing" }] }] });
  server = await serveHttp(env.runtime, { port: 0, baseIdentity: { kind: "keys", keys: brokerUser } });
  token = await prod.mint({ now: env.clock.now() });
});

afterAll(async () => {
  await server?.close();
  await env?.close();
});

interface Case {
  name: string;
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

const cases = (): Case[] => [
  { name: "GET /healthz", method: "GET", path: "/healthz" },
  { name: "a credential request", method: "POST", path: "/v1/credentials", headers: { Authorization: `Bearer ${token}` }, body: "{}" },
  { name: "an unknown path", method: "GET", path: "/v2/anything" },
  { name: "a wrong method", method: "GET", path: "/v1/credentials" },
  { name: "a body over 64 KiB", method: "POST", path: "/v1/credentials", headers: { Authorization: `Bearer ${token}` }, body: "x".repeat(64 * 1024 + 1) },
  { name: "a body that is not JSON", method: "POST", path: "/v1/credentials", headers: { Authorization: `Bearer ${token}` }, body: "{nope" },
  { name: "a bad token", method: "POST", path: "/v1/credentials", headers: { Authorization: "Bearer not.a.jwt" }, body: "{}" },
  { name: "no token", method: "POST", path: "/v1/credentials", body: "{}" },
];

const relevant = ["content-type", "cache-control", "www-authenticate", "allow"];
const pick = (headers: Record<string, string>) =>
  Object.fromEntries(relevant.filter((name) => headers[name] !== undefined).map((name) => [name, headers[name]]));

describe("the HTTP server and the FC handler", () => {
  it.each(cases().map((c) => [c.name]))("answer %s alike", async (name) => {
    const call = cases().find((c) => c.name === name)!;
    const fc = await invokeHttp(
      env.handler,
      { method: call.method, path: call.path, headers: call.headers ?? {}, ...(call.body !== undefined ? { body: call.body } : {}) },
      env.context(brokerUser),
    );
    const http = await fetch(`${server.url}${call.path}`, {
      method: call.method,
      headers: call.headers ?? {},
      ...(call.body !== undefined ? { body: call.body } : {}),
    });
    const httpHeaders = Object.fromEntries(http.headers);
    const httpJson = (await http.json()) as Record<string, unknown>;
    expect(http.status).toBe(fc.status);
    expect(pick(httpHeaders)).toEqual(pick(fc.headers));
    expect(httpHeaders["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
    if (fc.status === 200) expect(Object.keys(httpJson).sort()).toEqual(Object.keys(fc.json).sort());
    else expect(httpJson).toEqual(fc.json);
  });

  it("answers HEAD /healthz with the headers and no body", async () => {
    const response = await fetch(`${server.url}/healthz`, { method: "HEAD" });
    expect(response.status).toBe(200);
    expect(response.headers.get("cache-control")).toBe("no-store");
    expect(await response.text()).toBe("");
  });

  it("does not take FC event invocations unless told to (only the custom runtime receives them)", async () => {
    const response = await fetch(`${server.url}/invoke`, { method: "POST", headers: { "x-fc-control-path": "/invoke" }, body: '{"action":"renew"}' });
    expect(response.status).toBe(404);
  });
});
