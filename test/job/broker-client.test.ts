import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AcrCredentialError } from "../../shared/errors.ts";
import { brokerBackoff, brokerClient, retryAfterMs } from "../../job/broker-client.ts";
import { backoffDelay } from "../../shared/retry.ts";
import { startScriptedBroker, type ScriptedBroker, type ScriptedReply } from "./scripted-broker.ts";

const ok = (password = "pw"): ScriptedReply => ({
  status: 200,
  body: {
    cluster: "c1",
    subject: "system:serviceaccount:kube-system:aliyun-acr-credential-helper",
    credentials: [
      {
        instanceId: "cri-a",
        regionId: "cn-hangzhou",
        edition: "enterprise",
        domains: ["a.example.com"],
        username: "u",
        password,
        expiresAt: "2030-01-01T00:00:00Z",
      },
    ],
    errors: [],
  },
});
const failure = (status: number, code: string, headers?: Record<string, string>): ScriptedReply => ({
  status,
  body: { error: { code, message: `${code} from the scripted broker` } },
  ...(headers === undefined ? {} : { headers }),
});

let dir: string;
let tokenFile: string;
let stsTokenFile: string;
const servers: ScriptedBroker[] = [];
const noWait = { sleep: async () => {}, random: () => 0.5 };

async function scripted(replies: ScriptedReply[]): Promise<ScriptedBroker> {
  const server = await startScriptedBroker((_request, index) => replies[Math.min(index, replies.length - 1)] as ScriptedReply);
  servers.push(server);
  return server;
}

async function rejection(promise: Promise<unknown>): Promise<AcrCredentialError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(AcrCredentialError);
    return error as AcrCredentialError;
  }
  throw new Error("expected a rejection");
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "broker-client-"));
  tokenFile = join(dir, "token");
  stsTokenFile = join(dir, "sts-token");
  await writeFile(tokenFile, "token-one\n");
  await writeFile(stsTokenFile, "sts-token-one");
});

afterAll(async () => {
  await Promise.all(servers.map((server) => server.close()));
  await rm(dir, { recursive: true, force: true });
});

describe("brokerClient", () => {
  it("posts the registries with the token from the file as a Bearer token", async () => {
    const broker = await scripted([ok()]);
    const client = brokerClient({ url: `${broker.url}/`, tokenFile, ...noWait });
    const response = await client.fetchCredentials({ registries: [{ instanceId: "cri-a", regionId: "cn-hangzhou" }] });
    expect(response.credentials[0]?.password).toBe("pw");
    expect(broker.requests).toHaveLength(1);
    expect(broker.requests[0]).toMatchObject({
      method: "POST",
      url: "/v1/credentials",
      authorization: "Bearer token-one",
      body: { registries: [{ instanceId: "cri-a", regionId: "cn-hangzhou" }] },
    });
    expect(broker.requests[0]?.body).not.toHaveProperty("oidcToken");
    expect(broker.requests[0]?.body).not.toHaveProperty("force");
  });

  it("reads the token file again on every call, so a rotated token is used", async () => {
    const broker = await scripted([ok()]);
    const rotating = join(dir, "rotating");
    await writeFile(rotating, "first");
    const client = brokerClient({ url: broker.url, tokenFile: rotating, ...noWait });
    await client.fetchCredentials({ registries: [] });
    await writeFile(rotating, "second");
    await client.fetchCredentials({ registries: [] });
    expect(broker.requests.map((r) => r.authorization)).toEqual(["Bearer first", "Bearer second"]);
  });

  it("sends the second, STS-audience token as oidcToken when an entry uses RRSA", async () => {
    const broker = await scripted([ok()]);
    const client = brokerClient({ url: broker.url, tokenFile, stsTokenFile, ...noWait });
    await client.fetchCredentials({
      registries: [{ instanceId: "cri-a", regionId: "cn-hangzhou", rrsaRoleArn: "acs:ram::1:role/r", rrsaOidcProviderArn: "acs:ram::1:oidc-provider/p" }],
      force: true,
    });
    expect(broker.requests[0]?.body).toMatchObject({ oidcToken: "sts-token-one", force: true });
  });

  it("retries 503 and a dropped connection, then succeeds", async () => {
    const broker = await scripted([failure(503, "UpstreamUnavailable"), { status: 0, body: "", hangUp: true }, ok("after-retries")]);
    const waits: number[] = [];
    const client = brokerClient({ url: broker.url, tokenFile, sleep: async (ms) => void waits.push(ms), random: () => 1 });
    const response = await client.fetchCredentials({ registries: [] });
    expect(response.credentials[0]?.password).toBe("after-retries");
    expect(broker.requests).toHaveLength(3);
    expect(waits).toEqual([500, 1000]);
  });

  it("waits as long as Retry-After says on 429", async () => {
    const broker = await scripted([failure(429, "RateLimited", { "retry-after": "7" }), ok()]);
    const waits: number[] = [];
    const client = brokerClient({ url: broker.url, tokenFile, sleep: async (ms) => void waits.push(ms), random: () => 0 });
    await client.fetchCredentials({ registries: [] });
    expect(waits).toEqual([7000]);
  });

  it("gives up after the last attempt with the broker's own code", async () => {
    const broker = await scripted([failure(503, "UpstreamThrottled")]);
    const client = brokerClient({ url: broker.url, tokenFile, attempts: 3, ...noWait });
    const error = await rejection(client.fetchCredentials({ registries: [] }));
    expect(error.code).toBe("UpstreamThrottled");
    expect(broker.requests).toHaveLength(3);
  });

  it("retries a throttled broker until the caller's deadline, not a fixed number of times, waiting at least what Retry-After asks", async () => {
    const broker = await scripted([failure(429, "RateLimited", { "retry-after": "2" })]);
    let clock = 0;
    const waits: number[] = [];
    const notices: number[] = [];
    const client = brokerClient({ url: broker.url, tokenFile, now: () => clock, random: () => 0.5, sleep: async (ms) => void (waits.push(ms), (clock += ms)) });
    const error = await rejection(client.fetchCredentials({ registries: [], deadlineAt: 60_000, onRetry: (retry) => void notices.push(retry.attempts) }));
    expect(error.code).toBe("RateLimited");
    expect(waits.every((ms) => ms >= 2000)).toBe(true);
    expect(clock).toBeLessThanOrEqual(60_000);
    expect(clock).toBeGreaterThan(45_000);
    expect(broker.requests.length).toBe(waits.length + 1);
    expect(notices).toEqual(waits.map((_, index) => index + 1));
  });

  it("stops waiting when the caller aborts (the watcher stops)", async () => {
    const broker = await scripted([failure(503, "UpstreamUnavailable")]);
    const abort = new AbortController();
    const client = brokerClient({ url: broker.url, tokenFile, random: () => 1 });
    const call = client.fetchCredentials({ registries: [], deadlineAt: Date.now() + 600_000, signal: abort.signal, onRetry: () => abort.abort() });
    await expect(call).rejects.toThrow();
    expect(broker.requests).toHaveLength(1);
  });

  it("does not count an attempt the caller cut off as a retry (no onRetry, no second attempt)", async () => {
    const abort = new AbortController();
    let attempts = 0;
    // A broker that has not answered yet when the watcher stops.
    const hanging: typeof fetch = (_url, init) =>
      new Promise((_resolve, reject) => {
        attempts += 1;
        init?.signal?.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")), { once: true });
      });
    const notices: number[] = [];
    const client = brokerClient({ url: "https://broker.example", tokenFile, fetch: hanging, random: () => 1 });
    const call = client.fetchCredentials({
      registries: [],
      deadlineAt: Date.now() + 600_000,
      signal: abort.signal,
      onRetry: (retry) => void notices.push(retry.attempts),
    });
    setTimeout(() => abort.abort(), 20);
    const error = await rejection(call);
    expect(error.code).toBe("BrokerUnreachable");
    expect(notices).toEqual([]);
    expect(attempts).toBe(1);
  });

  it("does not retry a 401 and says what to check", async () => {
    const broker = await scripted([failure(401, "InvalidToken")]);
    const client = brokerClient({ url: broker.url, tokenFile, ...noWait });
    const error = await rejection(client.fetchCredentials({ registries: [] }));
    expect(error.code).toBe("InvalidToken");
    expect(error.message).toMatch(/token audience/);
    expect(error.message).not.toMatch(/token-one/);
    expect(broker.requests).toHaveLength(1);
  });

  it("does not retry a 403", async () => {
    const broker = await scripted([failure(403, "Forbidden")]);
    const error = await rejection(brokerClient({ url: broker.url, tokenFile, ...noWait }).fetchCredentials({ registries: [] }));
    expect(error.code).toBe("Forbidden");
    expect(broker.requests).toHaveLength(1);
  });

  it("reports an answer that is not the broker's API as BrokerResponseInvalid", async () => {
    const broker = await scripted([{ status: 200, body: "<html>proxy login</html>" }]);
    const error = await rejection(brokerClient({ url: broker.url, tokenFile, ...noWait }).fetchCredentials({ registries: [] }));
    expect(error.code).toBe("BrokerResponseInvalid");
  });

  it("reports a broker nobody listens on as BrokerUnreachable", async () => {
    const broker = await scripted([ok()]);
    const url = broker.url;
    await broker.close();
    servers.splice(servers.indexOf(broker), 1);
    const error = await rejection(brokerClient({ url, tokenFile, attempts: 2, ...noWait }).fetchCredentials({ registries: [] }));
    expect(error.code).toBe("BrokerUnreachable");
    expect(error.message).toMatch(/ECONNREFUSED/);
  });

  it("reports a missing token file as FileUnreadable before calling the broker", async () => {
    const broker = await scripted([ok()]);
    const error = await rejection(brokerClient({ url: broker.url, tokenFile: join(dir, "absent"), ...noWait }).fetchCredentials({ registries: [] }));
    expect(error.code).toBe("FileUnreadable");
    expect(error.message).toMatch(/projected token/);
    expect(broker.requests).toHaveLength(0);
  });

  it("names --sts-token-file, the flag that exists, when the RRSA token cannot be read", async () => {
    const broker = await scripted([ok()]);
    const client = brokerClient({ url: broker.url, tokenFile, stsTokenFile: join(dir, "absent-sts"), ...noWait });
    const error = await rejection(
      client.fetchCredentials({
        registries: [{ instanceId: "cri-a", regionId: "cn-hangzhou", rrsaRoleArn: "acs:ram::1:role/r", rrsaOidcProviderArn: "acs:ram::1:oidc-provider/p" }],
      }),
    );
    expect(error.code).toBe("FileUnreadable");
    expect(error.message).toMatch(/RRSA token .* pass --sts-token-file$/);
    expect(error.message).not.toMatch(/ --token-file/);
    expect(broker.requests).toHaveLength(0);
  });

  it("reports a 400 that is not the broker's error body as BrokerResponseInvalid, as docs/troubleshooting.md says", async () => {
    const broker = await scripted([{ status: 400, body: "<html><h1>400 Bad Request</h1>nginx</html>" }]);
    const error = await rejection(brokerClient({ url: broker.url, tokenFile, ...noWait }).fetchCredentials({ registries: [] }));
    expect(error.code).toBe("BrokerResponseInvalid");
    expect(error.message).toMatch(/answered 400 with a body that is not the broker's API; check broker-url/);
    expect(broker.requests).toHaveLength(1);
    const docs = await readFile(new URL("../../docs/troubleshooting.md", import.meta.url), "utf8");
    expect(docs).toMatch(/\| `BrokerResponseInvalid` \| the answer was not the broker's API/);
  });

  it("keeps the broker's own code for a 400 it answered itself", async () => {
    const broker = await scripted([failure(400, "InvalidRequest")]);
    const error = await rejection(brokerClient({ url: broker.url, tokenFile, ...noWait }).fetchCredentials({ registries: [] }));
    expect(error.code).toBe("InvalidRequest");
    expect(error.message).toMatch(/InvalidRequest from the scripted broker/);
  });
});

describe("retry timing", () => {
  it("reads Retry-After as seconds or as an HTTP date", () => {
    const now = Date.parse("2030-01-01T00:00:00Z");
    expect(retryAfterMs("3", now)).toBe(3000);
    expect(retryAfterMs("Tue, 01 Jan 2030 00:00:05 GMT", now)).toBe(5000);
    expect(retryAfterMs(null, now)).toBeUndefined();
  });

  it("grows the backoff window exponentially up to a cap", () => {
    expect([0, 1, 2, 3, 4, 5].map((attempt) => backoffDelay(attempt, brokerBackoff, () => 1))).toEqual([500, 1000, 2000, 4000, 8000, 15000]);
    expect(backoffDelay(3, brokerBackoff, () => 0)).toBe(0);
  });
});
