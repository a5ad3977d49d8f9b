/**
 * The node:http adapter hands the handler exactly what FC 3.0 would: the HTTP-trigger event, as the
 * object FC's Buffer parses into. A recording handler shows what arrives and echoes a response back.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FcContext, FcHttpEvent } from "../../../functions/broker/fc-event.ts";
import { parseInvocation } from "../../../functions/broker/fc-event.ts";
import { serveBroker, type BrokerServer } from "../../../functions/broker/node-http.ts";

const seen: Array<{ event: FcHttpEvent; context: FcContext }> = [];
let server: BrokerServer;

beforeAll(async () => {
  server = await serveBroker(
    async (event, context) => {
      // A round trip through JSON, so the test sees only what FC's Buffer could carry.
      const parsed = JSON.parse(JSON.stringify(event)) as FcHttpEvent;
      seen.push({ event: parsed, context });
      return { statusCode: 201, headers: { "x-echo": parsed.rawPath ?? "" }, body: Buffer.from("binary\u0000reply").toString("base64"), isBase64Encoded: true };
    },
    { port: 0, functionTimeoutSeconds: 30 },
  );
});

afterAll(() => server.close());

describe("serveBroker", () => {
  it("turns a request into an FC HTTP-trigger event", async () => {
    await fetch(`${server.url}/v1/credentials?a=1&a=2`, {
      method: "POST",
      headers: { Authorization: "Bearer t", "X-Multi": "one" },
      body: '{"registries":[]}',
    });
    const { event, context } = seen.at(-1)!;
    expect(event).toMatchObject({
      version: "v1",
      rawPath: "/v1/credentials",
      body: '{"registries":[]}',
      isBase64Encoded: false,
      queryParameters: { a: "1,2" },
    });
    expect(event.requestContext?.http).toMatchObject({ method: "POST", path: "/v1/credentials", protocol: "HTTP/1.1" });
    expect(event.headers?.Authorization ?? event.headers?.authorization).toBe("Bearer t");
    expect(context).toMatchObject({ requestId: event.requestContext?.requestId, function: { timeout: 30 } });
  });

  it("keeps the path as sent and normalises only what a URL parser would", async () => {
    await fetch(`${server.url}/v1/credentials`, { method: "POST" });
    expect(seen.at(-1)!.event).toMatchObject({ rawPath: "/v1/credentials", queryParameters: {}, requestContext: { http: { path: "/v1/credentials" } } });
    await fetch(`${server.url}/a/%7Eb/../c?x=%20y`);
    expect(seen.at(-1)!.event).toMatchObject({ rawPath: "/a/c", queryParameters: { x: " y" }, requestContext: { http: { path: "/a/c" } } });
    await fetch(`${server.url}/one%7Etwo`);
    expect(seen.at(-1)!.event).toMatchObject({ rawPath: "/one%7Etwo", requestContext: { http: { path: "/one~two" } } });
  });

  it("joins repeated headers under the first spelling of the name", async () => {
    const { connect } = await import("node:net");
    const url = new URL(server.url);
    await new Promise<void>((resolve, reject) => {
      const socket = connect(Number(url.port), url.hostname, () =>
        socket.end("GET /h HTTP/1.1\r\nHost: x\r\nX-Multi: one\r\nx-multi: two\r\nX-Other: 3\r\nConnection: close\r\n\r\n"),
      );
      socket.on("data", () => {});
      socket.on("close", () => resolve());
      socket.on("error", reject);
    });
    expect(seen.at(-1)!.event.headers).toMatchObject({ "X-Multi": "one,two", "X-Other": "3" });
    expect(seen.at(-1)!.event.headers).not.toHaveProperty("x-multi");
  });

  it("sends a binary body base64-encoded, as FC does", async () => {
    const bytes = Buffer.from([0xff, 0xfe, 0x00, 0x41]);
    await fetch(`${server.url}/x`, { method: "POST", body: bytes });
    const { event } = seen.at(-1)!;
    expect(event.isBase64Encoded).toBe(true);
    expect(Buffer.from(event.body!, "base64")).toEqual(bytes);
  });

  it("writes the handler's FC response back, decoding a base64 body", async () => {
    const response = await fetch(`${server.url}/echo`);
    expect(response.status).toBe(201);
    expect(response.headers.get("x-echo")).toBe("/echo");
    expect(Buffer.from(await response.arrayBuffer()).toString()).toBe("binary\u0000reply");
  });

  it("refuses a body over 1 MiB before calling the handler", async () => {
    const before = seen.length;
    const response = await fetch(`${server.url}/v1/credentials`, { method: "POST", body: Buffer.alloc(1024 * 1024 + 1) }).catch(() => undefined);
    if (response) expect(response.status).toBe(413);
    expect(seen.length).toBe(before);
  });
});

describe("parseInvocation", () => {
  it("reads an HTTP-trigger event, lower-casing header names", () => {
    const event: FcHttpEvent = { rawPath: "/healthz", headers: { "X-Acs-Date": "d" }, requestContext: { http: { method: "get", path: "/healthz" } } };
    expect(parseInvocation(Buffer.from(JSON.stringify(event)))).toEqual({
      kind: "http",
      method: "GET",
      path: "/healthz",
      headers: { "x-acs-date": "d" },
      body: Buffer.alloc(0),
    });
  });

  it("reads the event object just as the JSON Buffer FC passes", () => {
    const event: FcHttpEvent = {
      rawPath: "/v1/credentials",
      body: "e30=",
      isBase64Encoded: true,
      headers: { Authorization: "Bearer t" },
      requestContext: { http: { method: "POST", path: "/v1/credentials", sourceIp: "10.0.0.1" } },
    };
    const expected = {
      kind: "http",
      method: "POST",
      path: "/v1/credentials",
      headers: { authorization: "Bearer t" },
      body: Buffer.from("{}"),
      sourceIp: "10.0.0.1",
    };
    expect(parseInvocation(event)).toEqual(expected);
    expect(parseInvocation(Buffer.from(JSON.stringify(event)))).toEqual(expected);
  });

  it("reads a renew invocation with or without a cluster", () => {
    expect(parseInvocation(Buffer.from('{"action":"renew","cluster":"prod"}'))).toEqual({ kind: "renew", cluster: "prod" });
    expect(parseInvocation('{"action":"renew"}')).toEqual({ kind: "renew" });
  });

  it("refuses anything else as InvalidRequest", () => {
    expect(() => parseInvocation(Buffer.from("not json"))).toThrow(/not JSON/);
    expect(() => parseInvocation(Buffer.from("[]"))).toThrow(/neither an HTTP-trigger event/);
    expect(() => parseInvocation(Buffer.from('{"action":"renew","cluster":7}'))).toThrow(/cluster must be a non-empty string/);
  });
});

describe("serveBroker on a port in use", () => {
  it("fails with a one-line UsageError naming the port", async () => {
    const port = Number(new URL(server.url).port);
    await expect(serveBroker(async () => ({}), { port })).rejects.toThrow(`cannot listen on 127.0.0.1:${port} (EADDRINUSE); choose another --port`);
  });
});
