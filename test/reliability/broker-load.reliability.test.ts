/**
 * The broker process under sustained traffic: 10,000 bad tokens (every one different) must not grow
 * its heap, and a fixed high rate of valid requests for 60 s must cost no error and little memory.
 * Memory is read in the broker process after a forced garbage collection (heap) and from /proc (RSS).
 */
import autocannon from "autocannon";
import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBrokerUnderTest, type BrokerUnderTest } from "./support/broker-under-test.ts";
import { randomBadToken } from "./support/hostile-tokens.ts";

let env: BrokerUnderTest;
const mib = (bytes: number) => Math.round((bytes / 1024 / 1024) * 10) / 10;

beforeAll(async () => {
  env = await startBrokerUnderTest();
});

afterAll(() => env?.close());

/** Sends `count` bad-token requests, `concurrency` at a time over keep-alive connections; returns the statuses seen. */
async function badRequests(count: number, offset: number, concurrency = 32): Promise<Record<number, number>> {
  const dispatcher = new Agent({ connections: concurrency });
  const statuses: Record<number, number> = {};
  let sent = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (sent < count) {
        const i = offset + sent++;
        const token = randomBadToken(env.prod, i);
        const answer = await request(`${env.broker.url}/v1/credentials`, {
          method: "POST",
          dispatcher,
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: "{}",
        });
        await answer.body.dump();
        statuses[answer.statusCode] = (statuses[answer.statusCode] ?? 0) + 1;
      }
    }),
  );
  await dispatcher.close();
  return statuses;
}

describe("10,000 bad requests", () => {
  it("answer 401 every time, call nothing upstream, and leave the broker's heap where it was", async () => {
    // Warm-up: code paths compiled, caches at their working size.
    await badRequests(1000, 0);
    const before = await env.broker.memory();
    const rssBefore = env.broker.rssBytes();
    const statuses = await badRequests(10_000, 1000);
    const after = await env.broker.memory();
    const rssAfter = env.broker.rssBytes();
    console.log(`10,000 bad requests: heap ${mib(before.heapUsed)} → ${mib(after.heapUsed)} MiB, RSS ${mib(rssBefore)} → ${mib(rssAfter)} MiB`);
    expect(statuses).toEqual({ 401: 10_000 });
    expect(env.upstreamCalls()).toBe(0);
    // A leak of 200 bytes per request (a remembered kid, subject or token) would add 2 MiB.
    expect(after.heapUsed - before.heapUsed).toBeLessThan(2 * 1024 * 1024);
    expect(rssAfter).toBeLessThan(rssBefore * 1.1);
  });
});

describe("a fixed high rate for 60 s", () => {
  it("answers every request with 200, and RSS grows less than 10%", async () => {
    const token = await env.token();
    const options = {
      url: `${env.broker.url}/v1/credentials`,
      method: "POST" as const,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: "{}",
      connections: 20,
    };
    // autocannon's typings lack overallRate (requests per second across all connections), which it supports.
    const fixedRate = { overallRate: 400 };
    // Warm-up at the same rate, so the measurement starts with caches filled and code compiled.
    await autocannon({ ...options, ...fixedRate, duration: 10 });
    const rssBefore = env.broker.rssBytes();
    const heapBefore = await env.broker.memory();
    const result = await autocannon({ ...options, ...fixedRate, duration: 60 });
    const rssAfter = env.broker.rssBytes();
    const heapAfter = await env.broker.memory();
    console.log(
      `load: ${result.requests.total} requests in ${result.duration} s (${Math.round(result.requests.average)}/s), latency p50 ${result.latency.p50} ms p99 ${result.latency.p99} ms, ` +
        `non-2xx ${result.non2xx}, errors ${result.errors}, timeouts ${result.timeouts}; RSS ${mib(rssBefore)} → ${mib(rssAfter)} MiB, heap ${mib(heapBefore.heapUsed)} → ${mib(heapAfter.heapUsed)} MiB`,
    );
    expect(result.requests.total).toBeGreaterThan(400 * 60 * 0.9);
    expect(result.non2xx).toBe(0);
    expect(result.errors).toBe(0);
    expect(result.timeouts).toBe(0);
    expect(rssAfter).toBeLessThan(rssBefore * 1.1);
  });

  it("logged no token, password or secret key through all of it", async () => {
    await env.broker.stop();
    expect(env.scan.lineCount()).toBeGreaterThan(30_000);
    expect(env.scan.findings()).toEqual([]);
  });
});
