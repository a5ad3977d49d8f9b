import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RegistryRequest } from "../../shared/broker-api.ts";
import { createLogger } from "../../shared/log.ts";
import { brokerClient } from "../../job/broker-client.ts";
import { parseRefresherConfig } from "../../job/config.ts";
import { fetchCredentials } from "../../job/fetch-credentials.ts";
import { startScriptedBroker, type RecordedRequest, type ScriptedBroker, type ScriptedReply } from "./scripted-broker.ts";

const now = new Date("2030-01-01T00:00:00Z");
const at = (minutes: number) => new Date(now.getTime() + minutes * 60_000).toISOString();
const { config } = parseRefresherConfig({
  "broker-url": "https://b.example",
  "expiring-threshold": "15m",
  "acr-registry-info":
    "- instanceId: cri-fresh\n  regionId: cn-hangzhou\n- instanceId: cri-soon\n  regionId: cn-hangzhou\n- instanceId: cri-dead\n  regionId: cn-hangzhou",
});
const silent = createLogger("refresher", { level: "silent" });

let dir: string;
let tokenFile: string;
const servers: ScriptedBroker[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "fetch-credentials-"));
  tokenFile = join(dir, "token");
  await writeFile(tokenFile, "t");
});
afterAll(async () => {
  await Promise.all(servers.map((server) => server.close()));
  await rm(dir, { recursive: true, force: true });
});

/** A broker whose credentials expire at the given minutes from `now`, per instance, first call and forced call. */
async function broker(expiry: Record<string, [first: number, forced: number]>): Promise<ScriptedBroker> {
  const server = await startScriptedBroker((request) => {
    const forced = request.body.force === true;
    const registries = request.body.registries as RegistryRequest[];
    const credentials = registries.map((r) => {
      const [first, again] = expiry[r.instanceId ?? ""] ?? [60, 60];
      return {
        instanceId: r.instanceId,
        regionId: r.regionId,
        edition: "enterprise",
        domains: [`${r.instanceId}.example.com`],
        username: "u",
        password: `${r.instanceId}-${forced ? "forced" : "first"}`,
        expiresAt: at(forced ? again : first),
      };
    });
    return { status: 200, body: { cluster: "c", subject: "s", credentials, errors: [] } };
  });
  servers.push(server);
  return server;
}

/** The broker's answer: a credential for every registry asked for, expiring `minutes` from `now`. */
function answerAll(request: RecordedRequest, minutes: number): ScriptedReply {
  const credentials = (request.body.registries as RegistryRequest[]).map((r) => ({
    instanceId: r.instanceId,
    regionId: r.regionId,
    edition: "enterprise",
    domains: ["d.example.com"],
    username: "u",
    password: "p",
    expiresAt: at(minutes),
  }));
  return { status: 200, body: { cluster: "c", subject: "s", credentials, errors: [] } };
}

describe("fetchCredentials", () => {
  it("asks again with force for credentials inside the expiring threshold, and never hands out an expired one", async () => {
    const server = await broker({ "cri-fresh": [60, 60], "cri-soon": [10, 55], "cri-dead": [-1, -1] });
    const fetched = await fetchCredentials(config, brokerClient({ url: server.url, tokenFile }), silent, now);
    expect(server.requests).toHaveLength(2);
    expect(server.requests[1]?.body).toMatchObject({ force: true, registries: [{ instanceId: "cri-soon" }, { instanceId: "cri-dead" }] });
    const byInstance = new Map([...fetched.secrets.values()].map((secret) => [secret.registry.instanceId, secret]));
    expect(byInstance.get("cri-fresh")?.expiresAt).toBe(at(60));
    expect(byInstance.get("cri-soon")?.expiresAt).toBe(at(55));
    expect(byInstance.has("cri-dead")).toBe(false);
    expect(fetched.registries.find((r) => r.registry.instanceId === "cri-dead")?.error?.message).toMatch(/expired/);
    expect(fetched.earliestExpiry?.toISOString()).toBe(at(55));
  });

  it("reports every registry as failed, without throwing, when the broker cannot be reached", async () => {
    const server = await broker({});
    const url = server.url;
    await server.close();
    servers.splice(servers.indexOf(server), 1);
    const fetched = await fetchCredentials(config, brokerClient({ url, tokenFile, attempts: 1 }), silent, now);
    expect(fetched.secrets.size).toBe(0);
    expect(fetched.brokerError?.code).toBe("BrokerUnreachable");
    expect(fetched.registries.map((r) => r.error?.code)).toEqual(["BrokerUnreachable", "BrokerUnreachable", "BrokerUnreachable"]);
  });

  it("logs the failed broker request with err as the shared serializer writes it: code and message, no stack", async () => {
    const server = await broker({});
    const url = server.url;
    await server.close();
    servers.splice(servers.indexOf(server), 1);
    const lines: string[] = [];
    const logger = createLogger("refresher", { destination: { write: (line: string) => void lines.push(line) } });
    await fetchCredentials(config, brokerClient({ url, tokenFile, attempts: 1 }), logger, now);
    const failed = lines.map((line) => JSON.parse(line) as Record<string, unknown>).find((line) => line.msg === "broker request failed");
    expect(failed?.err).toEqual({ code: "BrokerUnreachable", message: expect.stringContaining(url) });
    expect(JSON.stringify(failed)).not.toContain("stack");
  });

  it("asks with force at once, in one request, for the credentials known to be expiring, and without force for the others", async () => {
    const server = await broker({ "cri-fresh": [60, 60], "cri-soon": [18, 60], "cri-dead": [60, 60] });
    const soon = config.registries.find((r) => r.instanceId === "cri-soon")!.secretName;
    const fetched = await fetchCredentials(config, brokerClient({ url: server.url, tokenFile }), silent, now, {
      renewWithinSeconds: 20 * 60,
      renew: new Set([soon]),
    });
    expect(server.requests.map((r) => [r.body.force === true, (r.body.registries as RegistryRequest[]).map((x) => x.instanceId)])).toEqual([
      [false, ["cri-fresh", "cri-dead"]],
      [true, ["cri-soon"]],
    ]);
    expect(fetched.secrets.get(soon)?.expiresAt).toBe(at(60));
  });

  it("makes a single forced request when every credential is expiring", async () => {
    const server = await broker({});
    const all = new Set(config.registries.map((r) => r.secretName));
    const fetched = await fetchCredentials(config, brokerClient({ url: server.url, tokenFile }), silent, now, { renewWithinSeconds: 20 * 60, renew: all });
    expect(server.requests).toHaveLength(1);
    expect(server.requests[0]?.body.force).toBe(true);
    expect(fetched.secrets.size).toBe(3);
  });

  it("falls back to asking without force when the broker refuses force (RateLimited), keeping the cached credentials", async () => {
    const server = await startScriptedBroker((request) => {
      if (request.body.force === true)
        return { status: 429, headers: { "retry-after": "60" }, body: { error: { code: "RateLimited", message: "forced a refresh less than 60 s ago" } } };
      return answerAll(request, 19);
    });
    servers.push(server);
    const all = new Set(config.registries.map((r) => r.secretName));
    const fetched = await fetchCredentials(config, brokerClient({ url: server.url, tokenFile, attempts: 1 }), silent, now, {
      renewWithinSeconds: 20 * 60,
      renew: all,
    });
    expect(server.requests.map((r) => r.body.force === true)).toEqual([true, false]);
    expect(fetched.brokerError).toBeUndefined();
    expect([...fetched.secrets.values()].map((secret) => secret.expiresAt)).toEqual([at(19), at(19), at(19)]);
  });

  it("a scheduled renewal asks for every registry in one request with minValiditySeconds and without force", async () => {
    const server = await broker({ "cri-fresh": [60, 60], "cri-soon": [58, 58], "cri-dead": [59, 59] });
    const soon = config.registries.find((r) => r.instanceId === "cri-soon")!.secretName;
    const fetched = await fetchCredentials(config, brokerClient({ url: server.url, tokenFile }), silent, now, {
      renewWithinSeconds: 20 * 60,
      renew: new Set([soon]),
      minValiditySeconds: 25 * 60,
    });
    expect(server.requests.map((r) => r.body)).toEqual([
      { registries: config.registries.map((r) => ({ instanceId: r.instanceId, regionId: r.regionId })), minValiditySeconds: 1500 },
    ]);
    expect(fetched.secrets.size).toBe(3);
  });

  it("against a broker that refuses minValiditySeconds as unknown, renews as before: unforced, then forced for the expiring one", async () => {
    const server = await startScriptedBroker((request) => {
      if ("minValiditySeconds" in request.body)
        return { status: 400, body: { error: { code: "InvalidRequest", message: 'body (top level): Unrecognized key: "minValiditySeconds"' } } };
      return answerAll(request, request.body.force === true ? 60 : 50);
    });
    servers.push(server);
    const soon = config.registries.find((r) => r.instanceId === "cri-soon")!.secretName;
    const fetched = await fetchCredentials(config, brokerClient({ url: server.url, tokenFile, attempts: 1 }), silent, now, {
      renewWithinSeconds: 20 * 60,
      renew: new Set([soon]),
      minValiditySeconds: 25 * 60,
    });
    expect(
      server.requests.map((r) => [r.body.force === true, "minValiditySeconds" in r.body, (r.body.registries as RegistryRequest[]).map((x) => x.instanceId)]),
    ).toEqual([
      [false, true, ["cri-fresh", "cri-soon", "cri-dead"]],
      [false, false, ["cri-fresh", "cri-dead"]],
      [true, false, ["cri-soon"]],
    ]);
    expect(fetched.secrets.get(soon)?.expiresAt).toBe(at(60));
    expect(fetched.brokerError).toBeUndefined();
  });

  it("a resync asks for every registry with force in one request, and falls back to asking without force when force is refused", async () => {
    const server = await startScriptedBroker((request) => {
      if (request.body.force === true)
        return { status: 429, headers: { "retry-after": "60" }, body: { error: { code: "RateLimited", message: "forced a refresh less than 60 s ago" } } };
      return answerAll(request, 40);
    });
    servers.push(server);
    const fetched = await fetchCredentials(config, brokerClient({ url: server.url, tokenFile, attempts: 1 }), silent, now, {
      renewWithinSeconds: 20 * 60,
      renew: new Set(),
      minValiditySeconds: 25 * 60,
      force: true,
    });
    expect(server.requests.map((r) => [r.body.force === true, "minValiditySeconds" in r.body, (r.body.registries as RegistryRequest[]).length])).toEqual([
      [true, false, 3],
      [false, false, 3],
    ]);
    expect(fetched.secrets.size).toBe(3);
  });

  it("a renewal the broker fails (not a refusal of the field or of force) is reported at once, not asked again the old way", async () => {
    const server = await startScriptedBroker(() => ({ status: 503, body: { error: { code: "UpstreamUnavailable", message: "STS is down" } } }));
    servers.push(server);
    for (const options of [{ minValiditySeconds: 25 * 60 }, { minValiditySeconds: 25 * 60, force: true }]) {
      const before = server.requests.length;
      const fetched = await fetchCredentials(config, brokerClient({ url: server.url, tokenFile, attempts: 1 }), silent, now, {
        renewWithinSeconds: 20 * 60,
        renew: new Set(),
        ...options,
      });
      expect(server.requests.length - before).toBe(1);
      expect(fetched.brokerError?.code).toBe("UpstreamUnavailable");
      expect(fetched.secrets.size).toBe(0);
    }
  });
});
