/**
 * Remembered answers: the policy on its own (no network), then through the FC handler against the
 * emulator, where a remembered answer must never hide a credential that was renewed or forced.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AnswerMemo } from "../../../functions/broker/answer-memo.ts";
import type { VerifiedToken } from "../../../functions/broker/token.ts";
import type { Credential, CredentialsResponse } from "../../../shared/broker-api.ts";
import { startBrokerEnv, type BrokerEnv } from "./support/broker-env.ts";
import { createTestCluster, type TestCluster } from "./support/clusters.ts";
import { bearer, invokeHttp } from "./support/invoke.ts";
import { instances, roles } from "./support/world.ts";

const token = (): VerifiedToken => ({ cluster: { name: "prod" } as VerifiedToken["cluster"], subject: "s", issuer: "i", claims: {} });
const credential = (expiresAt: string, stale?: boolean): Credential => ({
  regionId: "cn-beijing",
  edition: "personal",
  domains: [],
  username: "u",
  password: "p",
  expiresAt,
  ...(stale ? { stale } : {}),
});
const answer = (...credentials: Credential[]): CredentialsResponse => ({ cluster: "prod", subject: "s", credentials, errors: [] });
const body = Buffer.from('{"registries":[]}');
const hour = Date.parse("2026-12-01T11:00:00Z");
const options = (now: number, generation = 0) => ({ generation, refreshBeforeMs: 900_000, now });

describe("AnswerMemo", () => {
  it("recalls an answer for the same token and body until its first credential is due for refresh", () => {
    const memo = new AnswerMemo();
    const t = token();
    memo.remember(t, body, answer(credential("2026-12-01T11:00:00Z"), credential("2026-12-01T10:50:00Z")), { cluster: "prod" }, options(hour - 3600_000));
    expect(memo.recall(t, body, hour - 3600_000)?.response.credentials).toHaveLength(2);
    // 10:50 − 15 min = 10:35: the earlier credential decides.
    expect(memo.recall(t, body, Date.parse("2026-12-01T10:34:59Z"))).toBeDefined();
    expect(memo.recall(t, body, Date.parse("2026-12-01T10:35:00Z"))).toBeUndefined();
  });

  it("keeps answers apart per token object and per body", () => {
    const memo = new AnswerMemo();
    const t = token();
    memo.remember(t, body, answer(credential("2026-12-01T11:00:00Z")), {}, options(hour - 3600_000));
    expect(memo.recall(token(), body, hour - 3600_000)).toBeUndefined();
    expect(memo.recall(t, Buffer.from("{}"), hour - 3600_000)).toBeUndefined();
  });

  it("does not keep an answer with a stale credential or a failed entry", () => {
    const memo = new AnswerMemo();
    const t = token();
    memo.remember(t, body, answer(credential("2026-12-01T11:00:00Z", true)), {}, options(hour - 3600_000));
    expect(memo.recall(t, body, hour - 3600_000)).toBeUndefined();
    memo.remember(
      t,
      body,
      { ...answer(credential("2026-12-01T11:00:00Z")), errors: [{ regionId: "cn-beijing", code: "UpstreamError", message: "m" }] },
      {},
      options(hour - 3600_000),
    );
    expect(memo.recall(t, body, hour - 3600_000)).toBeUndefined();
  });

  it("forgets everything on forget(), and drops an answer begun before a forget()", () => {
    const memo = new AnswerMemo();
    const t = token();
    memo.remember(t, body, answer(credential("2026-12-01T11:00:00Z")), {}, options(hour - 3600_000));
    const begun = memo.generation;
    memo.forget();
    expect(memo.recall(t, body, hour - 3600_000)).toBeUndefined();
    memo.remember(t, body, answer(credential("2026-12-01T11:00:00Z")), {}, options(hour - 3600_000, begun));
    expect(memo.recall(t, body, hour - 3600_000)).toBeUndefined();
  });
});

describe("remembered answers through the broker", () => {
  let env: BrokerEnv;
  let prod: TestCluster;
  let bearerToken: string;
  const platformEntry = { ...instances.platform, assumeRoleArn: roles.acrPull, expireDuration: 3600 };
  const ask = (requestBody: unknown = {}) => invokeHttp(env.handler, { headers: bearer(bearerToken), body: requestBody }, env.context());
  const passwords = (json: Record<string, unknown>) => (json as unknown as CredentialsResponse).credentials.map((c) => c.password);

  beforeAll(async () => {
    prod = await createTestCluster("prod");
    env = await startBrokerEnv({
      clusters: () => [{ name: "prod", key: prod, registries: [platformEntry, { regionId: "cn-beijing" }] }],
      config: { forceIntervalSeconds: 0 },
    });
    // One token for the whole suite, as a refresher presents the same one for its lifetime.
    bearerToken = await prod.mint({ now: env.clock.now() });
  });
  afterAll(() => env.close());

  it("answers the same request the same way, with the same request log fields", async () => {
    const first = await ask();
    const again = await ask();
    expect(again.json).toEqual(first.json);
    const lines = env.logs.lines
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((line) => line.msg === "request")
      .slice(-2);
    expect(lines.map(({ cluster, subject, instances: asked, outcome }) => ({ cluster, subject, instances: asked, outcome }))).toEqual([
      { cluster: "prod", subject: expect.any(String), instances: ["cri-plat@cn-hangzhou", "personal@cn-beijing"], outcome: "ok" },
      { cluster: "prod", subject: expect.any(String), instances: ["cri-plat@cn-hangzhou", "personal@cn-beijing"], outcome: "ok" },
    ]);
  });

  it("hands out the renewed passwords right after a renew invocation", async () => {
    const before = passwords((await ask()).json);
    await env.handler(Buffer.from(JSON.stringify({ action: "renew", cluster: "prod" })), env.context());
    const after = passwords((await ask()).json);
    expect(after).toHaveLength(2);
    for (const password of after) expect(before).not.toContain(password);
  });

  it("hands out the forced passwords to the next unforced request", async () => {
    const before = passwords((await ask()).json);
    const forced = passwords((await ask({ force: true })).json);
    expect(forced.filter((p) => before.includes(p))).toEqual([]);
    expect(passwords((await ask()).json)).toEqual(forced);
  });
});
