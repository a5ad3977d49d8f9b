/**
 * Bodies, content types, methods, paths and framing a client should never send, then a thousand
 * connections at once, against `acr-credential broker` over HTTP. None may cost a 5xx, an upstream
 * call or the process.
 */
import { request as httpRequest } from "node:http";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBrokerUnderTest, type BrokerUnderTest } from "./support/broker-under-test.ts";
import { rawRequest, type RawAnswer } from "./support/raw-http.ts";

let env: BrokerUnderTest;
let token: string;

beforeAll(async () => {
  env = await startBrokerUnderTest();
  token = await env.token();
});

afterAll(() => env?.close());

const post = (body: string | Buffer, headers: Array<[string, string]> = [["Content-Type", "application/json"]]): Promise<RawAnswer> =>
  rawRequest(env.broker.url, { headers: [["Authorization", `Bearer ${token}`], ...headers], body });

const errorCode = (answer: RawAnswer): string => (JSON.parse(answer.body) as { error: { code: string } }).error.code;

describe("hostile bodies with a valid token", () => {
  const cases: Array<[string, string | Buffer, number, string]> = [
    ["one byte over the API's 64 KiB", `{"registries":[],"pad":"${"x".repeat(64 * 1024)}"}`, 413, "PayloadTooLarge"],
    ["truncated JSON", '{"registries":[', 400, "InvalidRequest"],
    ["a JSON array", "[]", 400, "InvalidRequest"],
    ["JSON null", "null", 400, "InvalidRequest"],
    ["a JSON string", '"registries"', 400, "InvalidRequest"],
    ["a number beyond double range", "1e999", 400, "InvalidRequest"],
    ["arrays nested 30,000 deep", `{"registries":${"[".repeat(30_000)}${"]".repeat(30_000)}}`, 400, "InvalidRequest"],
    ["objects nested 10,000 deep", `{"registries":[${'{"a":'.repeat(10_000)}1${"}".repeat(10_000)}]}`, 400, "InvalidRequest"],
    ["random binary", randomBytes(4096), 400, "InvalidRequest"],
    ["UTF-16 with a byte-order mark", Buffer.from('\uFEFF{"registries":[]}', "utf16le"), 400, "InvalidRequest"],
    ["an operator object where a string belongs", '{"registries":[{"instanceId":{"$gt":""},"regionId":"cn-hangzhou"}]}', 400, "InvalidRequest"],
    ["an unknown field in an entry", '{"registries":[{"regionId":"cn-beijing","endpoint":"http://127.0.0.1:1"}]}', 400, "InvalidRequest"],
    ["force as a string", '{"registries":[],"force":"true"}', 400, "InvalidRequest"],
    ["two thousand entries", JSON.stringify({ registries: Array.from({ length: 2000 }, () => ({ regionId: "cn-beijing" })) }), 400, "InvalidRequest"],
    ["a registry the cluster may not receive", '{"registries":[{"instanceId":"cri-other","regionId":"cn-hangzhou"}]}', 403, "Forbidden"],
  ];

  it.each(cases)("answers %s with a 4xx and calls nothing upstream", async (_name, body, status, code) => {
    const answer = await post(body);
    expect(answer.status).toBe(status);
    expect(errorCode(answer)).toBe(code);
    expect(env.upstreamCalls()).toBe(0);
  });

  it("does not let __proto__ in the body turn on force", async () => {
    const answer = await post('{"registries":[],"__proto__":{"force":true},"constructor":{"prototype":{"force":true}}}');
    expect([200, 400]).toContain(answer.status);
    // A forced request would have used the cluster's one force per interval: a real one still may.
    expect((await post('{"registries":[],"force":true}')).status).toBe(200);
  });

  it("refuses a body over the transport's 1 MiB without reading it (413 or a closed connection)", async () => {
    const answer = await post(Buffer.alloc(2 * 1024 * 1024, 0x20));
    expect([0, 413]).toContain(answer.status);
    expect(env.broker.alive()).toBe(true);
  });
});

describe("content types", () => {
  it.each(["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json; charset=utf-16", "application/xml"])(
    "reads the body as JSON whatever %s says, and refuses what is not JSON",
    async (contentType) => {
      expect((await post('{"registries":[]}', [["Content-Type", contentType]])).status).toBe(200);
      expect((await post("registries=cri-abc&force=true", [["Content-Type", contentType]])).status).toBe(400);
    },
  );

  it("accepts a request without a Content-Type", async () => {
    expect((await post('{"registries":[]}', [])).status).toBe(200);
  });
});

describe("methods, paths and framing", () => {
  it.each(["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])("answers %s /v1/credentials with 405", async (method) => {
    expect((await rawRequest(env.broker.url, { method, headers: [["Authorization", `Bearer ${token}`]] })).status).toBe(405);
  });

  it.each([
    "//v1/credentials",
    "/v1/credentials/../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/v1/credentials%00",
    "/v1/credentials?x=%ZZ",
    `/${"a".repeat(8000)}`,
    "/v1/%C0%AE%C0%AE/credentials",
  ])("answers the path %s without a 5xx", async (path) => {
    const answer = await rawRequest(env.broker.url, { path, headers: [["Authorization", `Bearer ${token}`]], body: "{}" });
    expect(answer.status).toBeGreaterThanOrEqual(200);
    expect(answer.status).toBeLessThan(500);
  });

  it.each<[string, Array<[string, string]>, string]>([
    ["a broken chunked body", [["Transfer-Encoding", "chunked"]], "zz\r\nnot a chunk\r\n0\r\n\r\n"],
    [
      "both Content-Length and Transfer-Encoding (request smuggling)",
      [
        ["Content-Length", "4"],
        ["Transfer-Encoding", "chunked"],
      ],
      "0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ["a negative Content-Length", [["Content-Length", "-1"]], "{}"],
    [
      "two different Content-Lengths",
      [
        ["Content-Length", "2"],
        ["Content-Length", "3"],
      ],
      "{}",
    ],
    ["a header name with a space", [["Bad Header", "x"]], "{}"],
  ])("answers %s with 400 from the HTTP layer", async (_name, headers, body) => {
    expect((await rawRequest(env.broker.url, { headers, body })).status).toBe(400);
  });
});

describe("a thousand concurrent connections", () => {
  it("answers every one (valid tokens 200, bad ones 401) and keeps serving", async () => {
    const connections = 1000;
    const statuses = await Promise.all(
      Array.from(
        { length: connections },
        (_, i) =>
          new Promise<number | string>((resolve) => {
            const body = '{"registries":[]}';
            const req = httpRequest(
              `${env.broker.url}/v1/credentials`,
              {
                method: "POST",
                agent: false,
                headers: {
                  authorization: `Bearer ${i % 2 === 0 ? token : `bad-${i}`}`,
                  "content-type": "application/json",
                  "content-length": String(body.length),
                },
              },
              (res) => {
                res.resume();
                res.on("end", () => resolve(res.statusCode ?? 0));
              },
            );
            req.setTimeout(60_000, () => req.destroy(new Error("timeout")));
            req.on("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
            req.end(body);
          }),
      ),
    );
    const tally = statuses.reduce<Record<string, number>>((counts, status) => ({ ...counts, [String(status)]: (counts[String(status)] ?? 0) + 1 }), {});
    expect(tally).toEqual({ 200: connections / 2, 401: connections / 2 });
    expect((await fetch(`${env.broker.url}/healthz`)).status).toBe(200);
    expect(env.broker.alive()).toBe(true);
  });
});

describe("the logs of all that", () => {
  it("hold no token, password or secret key", async () => {
    // Stopping the broker flushes its buffered log lines.
    await env.broker.stop();
    expect(env.scan.lineCount()).toBeGreaterThan(1000);
    expect(env.scan.findings()).toEqual([]);
  });
});
