/**
 * Hostile tokens and Authorization headers against `acr-credential broker` over HTTP. The broker
 * starts with an empty cache, so a token it wrongly accepted would make it call STS/CR: the
 * emulator's request log must stay empty until the last test sends a valid token.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultSubject } from "../functions/broker/support/clusters.ts";
import { startBrokerUnderTest, type BrokerUnderTest } from "./support/broker-under-test.ts";
import { createHostileClusters, hostileCases, type HostileCase } from "./support/hostile-tokens.ts";
import { rawRequest } from "./support/raw-http.ts";
import { startTrapServer } from "./support/trap-server.ts";

let env: BrokerUnderTest;
let trap: Awaited<ReturnType<typeof startTrapServer>>;
let cases: HostileCase[];
/** The request id of each answered case, to find its line in the broker's log once it is flushed. */
const answered: Array<{ hostile: HostileCase; requestId: string | undefined; body: string }> = [];

beforeAll(async () => {
  trap = await startTrapServer();
  const hostile = await createHostileClusters();
  const registries = [{ regionId: "cn-beijing" }];
  env = await startBrokerUnderTest({
    clusters: [
      { name: "weak", issuer: hostile.weak.issuer, jwks: hostile.weak.jwks, subjects: [defaultSubject], registries },
      { name: "weaker", issuer: hostile.weaker.issuer, jwks: hostile.weaker.jwks, subjects: [defaultSubject], registries },
      { name: "dup", issuer: hostile.duplicateKid.issuer, jwks: hostile.duplicateKid.jwks, subjects: [defaultSubject], registries },
    ],
  });
  cases = await hostileCases(env.prod, hostile, trap.url);
  for (const { headers } of cases) for (const [name, value] of headers) if (name.toLowerCase() === "authorization") env.scan.secret(value.split(" ").at(-1));
});

afterAll(async () => {
  await env?.close();
  await trap?.close();
});

describe("the token battery over HTTP", () => {
  it("has at least 30 distinct hostile requests", () => {
    expect(new Set(cases.map((c) => c.name)).size).toBe(cases.length);
    expect(cases.length).toBeGreaterThanOrEqual(30);
  });

  it("refuses every hostile token or header with 401/403 (431 beyond the header limit), without an upstream call or a fetch", async () => {
    const outcomes: string[] = [];
    for (const hostile of cases) {
      const answer = await rawRequest(env.broker.url, { headers: [["Content-Type", "application/json"], ...hostile.headers], body: "{}" });
      const expected = hostile.beyondHeaderLimit ? 431 : hostile.status;
      if (answer.status !== expected) outcomes.push(`${hostile.name}: ${answer.status} ${answer.body.slice(0, 200)}`);
      if (answer.status === 401 && answer.headers["www-authenticate"] !== 'Bearer error="invalid_token"')
        outcomes.push(`${hostile.name}: 401 without WWW-Authenticate`);
      if (!hostile.beyondHeaderLimit) answered.push({ hostile, requestId: answer.headers["x-request-id"], body: answer.body });
    }
    expect(outcomes).toEqual([]);
    expect(env.upstreamCalls()).toBe(0);
    expect(trap.hits()).toBe(0);
    expect(env.broker.alive()).toBe(true);
  });

  it("still serves its health check and a valid token afterwards, which does reach the upstream", async () => {
    expect((await fetch(`${env.broker.url}/healthz`)).status).toBe(200);
    const answer = await rawRequest(env.broker.url, {
      headers: [
        ["Authorization", `Bearer ${await env.token()}`],
        ["Content-Type", "application/json"],
      ],
      body: "{}",
    });
    expect(answer.status).toBe(200);
    for (const credential of (JSON.parse(answer.body) as { credentials: Array<{ password: string }> }).credentials) env.scan.secret(credential.password);
    expect(env.upstreamCalls()).toBeGreaterThan(0);
  });

  it("wrote no token, password or secret key to the broker's or the emulator's log", async () => {
    // Stopping the broker flushes its buffered log lines.
    await env.broker.stop();
    expect(env.scan.lineCount()).toBeGreaterThan(cases.length);
    expect(env.scan.findings()).toEqual([]);
  });

  it("logged each refusal's documented reason on its request line, and answered none of them", async () => {
    // Runs after the broker was stopped above, so every line is in its output.
    const lines = env.broker
      .output()
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((line) => line.msg === "request");
    const mismatches: string[] = [];
    for (const { hostile, requestId, body } of answered) {
      const line = lines.find((l) => l.requestId === requestId);
      if (line?.reason !== hostile.reason) mismatches.push(`${hostile.name}: logged ${String(line?.reason)}, documented ${hostile.reason}`);
      if (hostile.reason && body.includes(hostile.reason)) mismatches.push(`${hostile.name}: the answer names the reason`);
    }
    expect(answered.length).toBeGreaterThanOrEqual(30);
    expect(mismatches).toEqual([]);
  });
});
