/**
 * A property over random schedules, with a clock only the test moves: time jumps, the upstream
 * going up, down, throttled or flaky, bursts of concurrent requests, forced refreshes. Against the
 * real broker handler, SDK clients and the emulator, every answer is a credential that has not
 * expired at the moment it is returned (per that clock) and, unless flagged stale, is not within
 * refreshBeforeExpiry of its expiry; or an error. Never anything else.
 */
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClock, startEmulator, type Emulator, type FaultSettings } from "../../emulator/index.ts";
import { parseConfig, type LoadedConfig } from "../../functions/broker/config.ts";
import { createHandler } from "../../functions/broker/handler.ts";
import { createRuntime } from "../../functions/broker/runtime.ts";
import type { CredentialsResponse } from "../../shared/broker-api.ts";
import { createTestCluster, defaultSubject, type TestCluster } from "../functions/broker/support/clusters.ts";
import { bearer, invokeHttp, testContext, type HttpAnswer } from "../functions/broker/support/invoke.ts";
import { captureLogs } from "../functions/broker/support/logs.ts";
import { brokerUser, brokerWorld } from "../functions/broker/support/world.ts";
import { personalEntry, platformEntry } from "./support/broker-under-test.ts";
import { createLogScan } from "./support/log-scan.ts";

const seed = 20240611;
// npm test runs a few hundred schedules; the reliability run (its vitest config) thousands.
const numRuns = Number(process.env.RELIABILITY_SCHEDULE_RUNS ?? 300);
const refreshBeforeExpirySeconds = 900;
const clock = createClock({ frozen: true });
const scan = createLogScan();
const logs = captureLogs();
let emulator: Emulator;
let prod: TestCluster;
let loaded: LoadedConfig;

beforeAll(async () => {
  prod = await createTestCluster("prod", { alg: "ES256" });
  emulator = await startEmulator({ world: brokerWorld(await createTestCluster("rrsa", { alg: "ES256" })), clock });
  const config = parseConfig(
    {
      audience: "acr-credential-broker",
      refreshBeforeExpirySeconds,
      forceIntervalSeconds: 60,
      alibabaCloud: { stsEndpoint: emulator.endpoints.sts, crEndpoint: emulator.endpoints.cr, protocol: "http" },
      clusters: [{ name: "prod", issuer: prod.issuer, jwks: prod.jwks, subjects: [defaultSubject], registries: [platformEntry, personalEntry] }],
    },
    "test",
  );
  loaded = { config, baseDir: ".", source: "test" };
  scan.secret(brokerUser.accessKeySecret);
  scan.source("broker", logs.text);
});

afterAll(() => emulator?.close());

type Upstream = "up" | "down" | "throttled" | "flaky";
const faultsOf = (upstream: Upstream, faultSeed: number): FaultSettings | undefined =>
  ({ up: undefined, down: { serverErrorRate: 1 }, throttled: { throttleRate: 1 }, flaky: { throttleRate: 0.5, serverErrorRate: 0.1, seed: faultSeed } })[
    upstream
  ];

const stepArbitrary = fc.record({
  // Mostly small steps, sometimes past a refresh point or an expiry.
  advanceMs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 300_000 }), fc.integer({ min: 0, max: 2 * 3600_000 })),
  upstream: fc.constantFrom<Upstream>("up", "up", "down", "throttled", "flaky"),
  faultSeed: fc.integer({ min: 1, max: 1_000_000 }),
  concurrent: fc.integer({ min: 1, max: 3 }),
  registries: fc.constantFrom("all", "platform", "personal"),
  force: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
});

const bodyOf = (registries: string, force: boolean) => ({
  ...(registries === "all" ? {} : { registries: [registries === "platform" ? platformEntry : personalEntry] }),
  ...(force ? { force: true } : {}),
});

/** What is wrong with one answer, judged at `now`; undefined when it is a valid credential set or an error. */
function judge(answer: HttpAnswer, now: number, requested: string, force: boolean): string | undefined {
  if (answer.status === 200) {
    const body = answer.json as unknown as CredentialsResponse;
    const expected = requested === "all" ? 2 : 1;
    if (body.credentials.length + body.errors.length !== expected)
      return `200 with ${body.credentials.length} credentials and ${body.errors.length} errors for ${expected} registries`;
    for (const credential of body.credentials) {
      scan.secret(credential.password);
      const expiresAt = Date.parse(credential.expiresAt);
      if (!(expiresAt > now))
        return `an expired credential (expiresAt ${credential.expiresAt}, now ${new Date(now).toISOString()}, stale ${String(credential.stale)})`;
      // docs/broker.md, "Configuration": an unflagged credential is never closer than refreshBeforeExpiry to its expiry.
      if (credential.stale !== true && expiresAt - now < refreshBeforeExpirySeconds * 1000)
        return `an unflagged credential within refreshBeforeExpiry (expiresAt ${credential.expiresAt}, now ${new Date(now).toISOString()})`;
      if (!credential.username || !credential.password) return "a credential without username or password";
    }
    for (const error of body.errors) if (!/^Upstream/.test(error.code)) return `an entry error with code ${error.code}`;
    return undefined;
  }
  if (answer.status === 429 && force) return undefined;
  const code = (answer.json.error as { code?: string } | undefined)?.code ?? "";
  if ([502, 503, 504].includes(answer.status) && /^Upstream/.test(code)) return undefined;
  return `status ${answer.status} with ${JSON.stringify(answer.json).slice(0, 200)}`;
}

describe("random schedules with a controlled clock", () => {
  it(`never returns an expired credential, and every answer is a credential or an error (seed ${seed}, ${numRuns} schedules)`, async () => {
    let requests = 0;
    let stale = 0;
    let errors = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(stepArbitrary, { minLength: 1, maxLength: 8 }), async (schedule) => {
        // A new broker instance per schedule: empty caches, its own force limit.
        const runtime = createRuntime({ loaded, log: logs.log, clock, sleep: async () => {}, backoff: { baseDelayMs: 1, maxDelayMs: 1, maxAttempts: 3 } });
        const handler = createHandler(() => runtime);
        for (const step of schedule) {
          clock.advance(step.advanceMs);
          const faults = faultsOf(step.upstream, step.faultSeed);
          if (faults) emulator.faults.set(faults);
          else emulator.faults.clear();
          const token = await prod.mint({ now: clock.now() });
          const answers = await Promise.all(
            Array.from({ length: step.concurrent }, () =>
              invokeHttp(handler, { headers: bearer(token), body: bodyOf(step.registries, step.force) }, testContext(brokerUser)),
            ),
          );
          for (const answer of answers) {
            requests++;
            if (answer.status !== 200) errors++;
            stale += ((answer.json as unknown as CredentialsResponse).credentials ?? []).filter((c) => c.stale === true).length;
            const problem = judge(answer, clock.now(), step.registries, step.force);
            if (problem !== undefined) throw new Error(problem);
          }
        }
        emulator.log.clear();
      }),
      { seed, numRuns, endOnFailure: true },
    );
    emulator.faults.clear();
    console.log(`schedules: ${numRuns}, requests: ${requests}, stale credentials served: ${stale}, error answers: ${errors}`);
    // The schedules did reach the interesting states, so the property was not vacuous.
    expect(stale).toBeGreaterThan(0);
    expect(errors).toBeGreaterThan(0);
  });

  it("logged no password or secret key on the way", () => {
    expect(scan.secretCount()).toBeGreaterThan(10);
    expect(scan.findings()).toEqual([]);
  });
});
