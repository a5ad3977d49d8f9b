/**
 * Clients that send slowly or stop sending: the broker's HTTP server cuts them off (headers within
 * 10 s, the whole request within 30 s) and keeps answering everyone else meanwhile.
 */
import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBrokerUnderTest, type BrokerUnderTest } from "./support/broker-under-test.ts";
import { parseAnswer, rawRequest } from "./support/raw-http.ts";

let env: BrokerUnderTest;

beforeAll(async () => {
  env = await startBrokerUnderTest();
});

afterAll(() => env?.close());

interface Dribble {
  /** Resolves with how long the server kept the connection and what it answered (0: nothing). */
  closed: Promise<{ afterMs: number; status: number }>;
  socket: Socket;
}

/** Opens a connection and sends `first`, then one byte of `rest` every `everyMs`, never finishing. */
function dribble(url: string, first: string, rest: string, everyMs: number): Dribble {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  const started = performance.now();
  let received = "";
  let sent = 0;
  const timer = setInterval(() => {
    if (sent < rest.length && !socket.destroyed) socket.write(rest[sent++]!);
  }, everyMs);
  socket.on("data", (chunk: Buffer) => (received += chunk.toString()));
  socket.on("error", () => undefined);
  socket.write(first);
  const closed = new Promise<{ afterMs: number; status: number }>((resolve) =>
    socket.on("close", () => {
      clearInterval(timer);
      resolve({ afterMs: performance.now() - started, status: parseAnswer(received).status });
    }),
  );
  return { closed, socket };
}

describe("slow clients", () => {
  it("closes connections that dribble headers after 10 s and bodies after 30 s, serving other clients throughout", async () => {
    const host = new URL(env.broker.url).host;
    const headers = Array.from({ length: 100 }, () =>
      dribble(env.broker.url, "POST /v1/credentials HTTP/1.1\r\n", `Host: ${host}\r\nX-Slow: ${"s".repeat(400)}\r\n\r\n`, 500),
    );
    const bodies = Array.from({ length: 100 }, () =>
      dribble(
        env.broker.url,
        `POST /v1/credentials HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n`,
        `{"registries":[]${" ".repeat(990)}}`,
        500,
      ),
    );
    const silent = Array.from({ length: 100 }, () => dribble(env.broker.url, "", "", 60_000));

    // Meanwhile, ordinary requests are answered at once.
    const token = await env.token();
    for (let i = 0; i < 10; i++) {
      const answer = await rawRequest(env.broker.url, { headers: [["Authorization", `Bearer ${token}`]], body: '{"registries":[]}', timeoutMs: 5_000 });
      expect(answer.status).toBe(200);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }

    const [headerOutcomes, bodyOutcomes, silentOutcomes] = await Promise.all([headers, bodies, silent].map((group) => Promise.all(group.map((d) => d.closed))));
    for (const outcome of headerOutcomes!) {
      expect(outcome.afterMs).toBeGreaterThan(9_000);
      expect(outcome.afterMs).toBeLessThan(15_000);
      expect([0, 408]).toContain(outcome.status);
    }
    for (const outcome of [...bodyOutcomes!, ...silentOutcomes!]) {
      expect(outcome.afterMs).toBeGreaterThan(9_000);
      expect(outcome.afterMs).toBeLessThan(35_000);
      expect([0, 408]).toContain(outcome.status);
    }
    expect(env.broker.alive()).toBe(true);
    expect((await fetch(`${env.broker.url}/healthz`)).status).toBe(200);
  });

  it("logged no token or secret key", async () => {
    await env.broker.stop();
    expect(env.scan.findings()).toEqual([]);
  });
});
