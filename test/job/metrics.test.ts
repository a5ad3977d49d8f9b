import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nothingApplied, type ApplyResult } from "../../job/apply.ts";
import { brokerClient } from "../../job/broker-client.ts";
import { parseRefresherConfig } from "../../job/config.ts";
import { brokerOutcome, parseMetricsAddress, startMetricsServer, statusFigures, type MetricsServer } from "../../job/metrics.ts";
import type { StatusInput } from "../../job/status.ts";
import { emptyState } from "../../job/state.ts";
import { AcrCredentialError } from "../../shared/errors.ts";
import { createLogger } from "../../shared/log.ts";
import { sample } from "./metrics-text.ts";
import { startScriptedBroker, type ScriptedBroker, type ScriptedReply } from "./scripted-broker.ts";

const [cri, personal] = parseRefresherConfig({
  "broker-url": "https://b.example",
  "acr-registry-info": "- instanceId: cri-m\n  regionId: cn-hangzhou\n- regionId: cn-shanghai",
}).config.registries;
const clean = nothingApplied;

describe("--metrics-addr", () => {
  it("takes [HOST]:PORT, an IPv6 host in brackets, and 0 to switch the server off", () => {
    expect(parseMetricsAddress(":9102")).toEqual({ host: "", port: 9102 });
    expect(parseMetricsAddress("127.0.0.1:0")).toEqual({ host: "127.0.0.1", port: 0 });
    expect(parseMetricsAddress("[::1]:9102")).toEqual({ host: "::1", port: 9102 });
    expect(parseMetricsAddress("0")).toBeUndefined();
  });

  it.each(["9102", "localhost", ":70000", "http://0.0.0.0:9102", ""])("refuses %j with a UsageError naming the form", (value) => {
    expect(() => parseMetricsAddress(value)).toThrow(
      expect.objectContaining({ code: "UsageError", message: expect.stringMatching(/--metrics-addr must be \[HOST\]:PORT such as :9102/) }),
    );
  });
});

describe("a broker call's outcome", () => {
  it("is `refused` with the broker's code for a 4xx answer, and `error` when the broker could not answer", () => {
    expect(brokerOutcome(new AcrCredentialError("Forbidden", "m", { details: { status: 403 } }))).toEqual({ outcome: "refused", code: "Forbidden" });
    expect(brokerOutcome(new AcrCredentialError("RateLimited", "m", { details: { status: 429 } }))).toEqual({ outcome: "refused", code: "RateLimited" });
    expect(brokerOutcome(new AcrCredentialError("UpstreamUnavailable", "m", { details: { status: 503 } }))).toEqual({
      outcome: "error",
      code: "UpstreamUnavailable",
    });
    expect(brokerOutcome(new AcrCredentialError("BrokerUnreachable", "m"))).toEqual({ outcome: "error", code: "BrokerUnreachable" });
    expect(brokerOutcome(new TypeError("x"))).toEqual({ outcome: "error", code: "Internal" });
  });
});

describe("the figures of a status", () => {
  it("count a namespace once however many problems it has, and leave out leftovers that serve nobody less", () => {
    const result: ApplyResult = {
      ...clean(),
      failures: [{ namespace: "a", kind: "Secret", name: "s", code: "KubernetesError", message: "m" }],
      conflicts: [
        { namespace: "a", secret: "s", kind: "exists", message: "m" },
        { namespace: "b", secret: "s", kind: "applied", serviceAccount: "app", message: "m" },
        { namespace: "c", secret: "s", kind: "unrecorded", message: "m" },
      ],
    };
    const figures = statusFigures({
      finishedAt: new Date("2030-01-01T00:00:10Z"),
      durationMs: 1,
      mode: "watch",
      registries: [],
      namespacesServed: 5,
      result,
      state: emptyState(),
    });
    expect(figures).toMatchObject({
      result: "PartiallyFailed",
      finishedAtSeconds: Date.parse("2030-01-01T00:00:10Z") / 1000,
      namespacesServed: 5,
      namespacesFailed: 2,
      conflicts: { exists: 1, applied: 1, unrecorded: 1, replaced: 0 },
    });
  });

  it("give each registry with a credential its expiry in seconds, under its label and Secret name", () => {
    const figures = statusFigures({
      finishedAt: new Date(0),
      durationMs: 1,
      mode: "watch",
      registries: [
        { registry: cri!, expiresAt: "2030-01-01T01:00:00Z" },
        { registry: personal!, error: { code: "Forbidden", message: "m" } },
      ],
      namespacesServed: 0,
      result: clean(),
      state: emptyState(),
    });
    expect(figures.expiries).toEqual([{ registry: "cri-m@cn-hangzhou", secret: cri!.secretName, seconds: Date.parse("2030-01-01T01:00:00Z") / 1000 }]);
  });
});

describe("the metrics server, scraped over HTTP", () => {
  let server: MetricsServer;
  let broker: ScriptedBroker;
  let dir: string;
  let tokenFile: string;
  // What the scripted broker answers next: a refusal, a failure or credentials, as the test says.
  let next: ScriptedReply = { status: 200, body: {} };
  const scrape = async () => (await fetch(`http://${server.address}/metrics`)).text();
  const status = (overrides: Partial<StatusInput>): StatusInput => ({
    finishedAt: new Date("2030-01-01T00:00:00Z"),
    durationMs: 1,
    mode: "watch",
    registries: [],
    namespacesServed: 1,
    result: clean(),
    state: emptyState(),
    ...overrides,
  });

  beforeAll(async () => {
    server = await startMetricsServer({ host: "127.0.0.1", port: 0 }, createLogger("test", { level: "silent" }));
    broker = await startScriptedBroker(() => next);
    dir = await mkdtemp(join(tmpdir(), "metrics-"));
    tokenFile = join(dir, "token");
    await writeFile(tokenFile, "a-token");
  });

  afterAll(async () => {
    await server?.close();
    await broker?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("says which version it is, as package.json does", async () => {
    const { version } = JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
    expect(sample(await scrape(), "acr_credential_refresher_build_info", { version })).toBe(1);
  });

  it("is not ready until told so, and live all along", async () => {
    expect((await fetch(`http://${server.address}/readyz`)).status).toBe(503);
    expect((await fetch(`http://${server.address}/healthz`)).status).toBe(200);
    server.setReady();
    expect((await fetch(`http://${server.address}/readyz`)).status).toBe(200);
  });

  it("counts a refused broker call under the broker's code, and a broker that fails every attempt as one error", async () => {
    const client = server.measure(brokerClient({ url: broker.url, tokenFile, attempts: 2, sleep: async () => {} }));
    next = { status: 403, body: { error: { code: "Forbidden", message: "this cluster may not use cri-x" } } };
    await expect(client.fetchCredentials({ registries: [] })).rejects.toMatchObject({ code: "Forbidden" });
    next = { status: 503, body: { error: { code: "UpstreamUnavailable", message: "down" } } };
    await expect(client.fetchCredentials({ registries: [] })).rejects.toMatchObject({ code: "UpstreamUnavailable" });
    next = {
      status: 200,
      body: { cluster: "c", subject: "s", credentials: [], errors: [{ instanceId: "cri-x", regionId: "cn-hangzhou", code: "Forbidden", message: "m" }] },
    };
    await client.fetchCredentials({ registries: [{ instanceId: "cri-x", regionId: "cn-hangzhou" }] });
    const text = await scrape();
    expect(broker.requests).toHaveLength(4);
    expect(sample(text, "acr_credential_refresher_broker_requests_total", { outcome: "refused", code: "Forbidden" })).toBe(1);
    // Two attempts, one call.
    expect(sample(text, "acr_credential_refresher_broker_requests_total", { outcome: "error", code: "UpstreamUnavailable" })).toBe(1);
    expect(sample(text, "acr_credential_refresher_broker_requests_total", { outcome: "success", code: "OK" })).toBe(1);
    expect(sample(text, "acr_credential_refresher_broker_refusals_total", { registry: "cri-x@cn-hangzhou", code: "Forbidden" })).toBe(1);
    expect(sample(text, "acr_credential_refresher_broker_request_duration_seconds_count", { outcome: "refused" })).toBe(1);
  });

  it("keeps the last expiry of a registry the broker stops serving, and drops a registry no longer configured", async () => {
    server.observeStatus(
      status({
        registries: [
          { registry: cri!, expiresAt: "2030-01-01T01:00:00Z" },
          { registry: personal!, expiresAt: "2030-01-01T02:00:00Z" },
        ],
      }),
    );
    server.observeStatus(status({ registries: [{ registry: cri!, error: { code: "Forbidden", message: "m" } }] }));
    const text = await scrape();
    expect(sample(text, "acr_credential_refresher_credential_expiry_timestamp_seconds", { secret: cri!.secretName })).toBe(
      Date.parse("2030-01-01T01:00:00Z") / 1000,
    );
    expect(sample(text, "acr_credential_refresher_credential_expiry_timestamp_seconds", { secret: personal!.secretName })).toBeUndefined();
  });

  it("moves the last success only with a status that says Succeeded", async () => {
    server.observeStatus(status({ finishedAt: new Date("2030-01-01T00:10:00Z"), registries: [{ registry: cri!, expiresAt: "2030-01-01T01:00:00Z" }] }));
    server.observeStatus(
      status({ finishedAt: new Date("2030-01-01T00:20:00Z"), registries: [{ registry: cri!, error: { code: "Forbidden", message: "m" } }] }),
    );
    const text = await scrape();
    expect(sample(text, "acr_credential_refresher_last_success_timestamp_seconds")).toBe(Date.parse("2030-01-01T00:10:00Z") / 1000);
    expect(sample(text, "acr_credential_refresher_last_run_timestamp_seconds")).toBe(Date.parse("2030-01-01T00:20:00Z") / 1000);
    expect(sample(text, "acr_credential_refresher_run_result", { result: "PartiallyFailed" })).toBe(1);
    expect(sample(text, "acr_credential_refresher_run_result", { result: "Succeeded" })).toBe(0);
  });
});
