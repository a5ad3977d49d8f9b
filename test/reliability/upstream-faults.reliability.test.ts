/**
 * A hostile upstream in real time: half of all STS and CR calls throttled, a tenth failing with
 * 5xx, a tenth delayed by 2 s. The broker (real retry schedule, real deadline) is asked at random
 * points between a credential's refresh point and its expiry, so each request tries to refresh.
 * Every request must end within its deadline with, for every registry, either a new credential or
 * the cached one (still valid, flagged stale).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClock, startEmulator, type Emulator } from "../../emulator/index.ts";
import { parseConfig } from "../../functions/broker/config.ts";
import { createHandler } from "../../functions/broker/handler.ts";
import { createRuntime } from "../../functions/broker/runtime.ts";
import type { CredentialsResponse } from "../../shared/broker-api.ts";
import { createTestCluster, defaultSubject } from "../functions/broker/support/clusters.ts";
import { bearer, invokeHttp, testContext, type FcHandler } from "../functions/broker/support/invoke.ts";
import { captureLogs } from "../functions/broker/support/logs.ts";
import { brokerUser, brokerWorld } from "../functions/broker/support/world.ts";
import { personalEntry, platformEntry } from "./support/broker-under-test.ts";
import { createLogScan } from "./support/log-scan.ts";

const rounds = 25;
const requestTimeoutSeconds = 10;
const refreshBeforeExpirySeconds = 900;
const clock = createClock({ frozen: true });
const logs = captureLogs();
const scan = createLogScan();
let emulator: Emulator;
let handler: FcHandler;
let token: () => Promise<string>;

beforeAll(async () => {
  const prod = await createTestCluster("prod", { alg: "ES256" });
  emulator = await startEmulator({ world: brokerWorld(await createTestCluster("rrsa", { alg: "ES256" })), clock });
  const config = parseConfig(
    {
      audience: "acr-credential-broker",
      refreshBeforeExpirySeconds,
      requestTimeoutSeconds,
      alibabaCloud: { stsEndpoint: emulator.endpoints.sts, crEndpoint: emulator.endpoints.cr, protocol: "http" },
      clusters: [{ name: "prod", issuer: prod.issuer, jwks: prod.jwks, subjects: [defaultSubject], registries: [platformEntry, personalEntry] }],
    },
    "test",
  );
  const runtime = createRuntime({ loaded: { config, baseDir: ".", source: "test" }, log: logs.log, clock });
  handler = createHandler(() => runtime);
  token = async () => {
    const raw = await prod.mint({ now: clock.now() });
    scan.secret(raw);
    return raw;
  };
  scan.secret(brokerUser.accessKeySecret);
  scan.source("broker", logs.text);
});

afterAll(() => emulator?.close());

const ask = async () =>
  invokeHttp(handler, { headers: bearer(await token()), body: {} }, { ...testContext(brokerUser), function: { name: "broker", timeout: 60 } });

describe("50% throttling, 10% 5xx and 2 s latency spikes", () => {
  it(`answers every refresh within its deadline with a new or a still-valid cached credential (${rounds} rounds)`, async () => {
    const warm = await ask();
    expect(warm.status).toBe(200);
    let expiries = (warm.json as unknown as CredentialsResponse).credentials.map((c) => Date.parse(c.expiresAt));
    emulator.faults.set({ throttleRate: 0.5, serverErrorRate: 0.1, latencyMs: 2000, latencyRate: 0.1, seed: 7 });
    const tally = { fresh: 0, stale: 0, slowestMs: 0, throttled: 0, failed: 0 };
    let random = 12345;
    const next = () => (random = (random * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let round = 0; round < rounds; round++) {
      // Between the earliest refresh point and 60 s before the earliest expiry.
      const earliest = Math.min(...expiries);
      const from = Math.max(clock.now() + 1000, earliest - refreshBeforeExpirySeconds * 1000);
      clock.set(from + Math.floor(next() * Math.max(0, earliest - 60_000 - from)));
      const started = performance.now();
      const answer = await ask();
      const tookMs = performance.now() - started;
      tally.slowestMs = Math.max(tally.slowestMs, tookMs);
      expect(tookMs).toBeLessThan(requestTimeoutSeconds * 1000 + 2500);
      expect(answer.status).toBe(200);
      const body = answer.json as unknown as CredentialsResponse;
      expect(body.errors).toEqual([]);
      expect(body.credentials).toHaveLength(2);
      for (const credential of body.credentials) {
        scan.secret(credential.password);
        expect(Date.parse(credential.expiresAt)).toBeGreaterThan(clock.now());
        if (credential.stale === true) tally.stale++;
        else tally.fresh++;
      }
      expiries = body.credentials.map((c) => Date.parse(c.expiresAt));
    }
    tally.throttled = emulator.log.count((entry) => entry.outcome.startsWith("Throttling"));
    tally.failed = emulator.log.count((entry) => entry.status >= 500);
    emulator.faults.clear();
    console.log(`upstream faults: ${JSON.stringify({ ...tally, slowestMs: Math.round(tally.slowestMs), upstreamCalls: emulator.log.count() })}`);
    // The faults did bite: some refreshes fell back to the cache, some got through.
    expect(tally.stale).toBeGreaterThan(0);
    expect(tally.fresh).toBeGreaterThan(0);
  });

  it("logged no password, token or secret key", () => {
    expect(scan.findings()).toEqual([]);
  });
});
