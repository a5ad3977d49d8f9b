/**
 * A tiny run of the benchmark's own code, so `npm run bench` cannot rot: the same functions with a
 * handful of clusters, one short round and one cold start. It checks that the figures come out
 * with the right keys and sane values, never how fast anything was. The refresher's section needs
 * the Kubernetes control plane and has its own smoke test (refresher.kube.test.ts).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { measureAmplification, type AmplificationResult } from "../../bench/amplification.ts";
import { measureBrokerThroughput, type BrokerThroughputResult } from "../../bench/broker-throughput.ts";
import { measureBundle, type BundleResult } from "../../bench/bundle.ts";
import { measureConfigScale, type ConfigScaleResult } from "../../bench/config-scale.ts";
import { registries } from "../../bench/fleet.ts";
import { toResults } from "../../bench/run.ts";
import { benchResultsSchema } from "../../bench/results.ts";

let amplification: AmplificationResult;
let broker: BrokerThroughputResult;
let bundle: BundleResult;
let configScale: ConfigScaleResult;
let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "bench-smoke-"));
  // A bundle of the broker's entry point built here, so this file never races `npm run build` for dist/.
  const bundleFile = join(work, "index.js");
  await build({
    entryPoints: [new URL("../../functions/broker/index.ts", import.meta.url).pathname],
    outfile: bundleFile,
    bundle: true,
    platform: "node",
    target: "node20",
    format: "cjs",
    logLevel: "warning",
  });
  amplification = await measureAmplification({ clusters: 4, concurrency: 2 });
  bundle = await measureBundle({ runs: 1, clusters: 2, bundleFile });
  configScale = await measureConfigScale({ runs: 1, clusters: 3, bundleFile });
  broker = await measureBrokerThroughput({ clusters: 2, connections: 2, durationSeconds: 1, rounds: 1, warmupSeconds: 0 });
}, 120_000);

afterAll(async () => {
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

describe("the benchmark's sections, run small", () => {
  it("counts one shared AssumeRole and one token and domain lookup per registry when the cache is on", () => {
    expect(amplification.byApi.cached).toEqual({
      "sts:AssumeRole": 1,
      "cr:GetAuthorizationToken": registries.length,
      "cr:ListInstanceEndpoint": registries.length,
    });
  });

  it("counts every call of every cluster when the caches are disabled", () => {
    const perRegistry = amplification.clusters * registries.length;
    expect(amplification.byApi.naive).toEqual({
      "sts:AssumeRole": perRegistry,
      "cr:GetAuthorizationToken": perRegistry,
      "cr:ListInstanceEndpoint": perRegistry,
    });
    expect(amplification.naiveUpstreamCalls).toBe(3 * perRegistry);
  });

  it("loads the broker and the bare server in rounds and reports a positive ratio and latency", () => {
    expect(broker.rounds).toHaveLength(1);
    const [round] = broker.rounds;
    expect(round!.brokerRps).toBeGreaterThan(0);
    expect(round!.bareRps).toBeGreaterThan(0);
    expect(broker.throughputRatioVsBareHttp).toBeCloseTo(round!.brokerRps / round!.bareRps, 10);
    expect(broker.p99Ms).toBeGreaterThanOrEqual(0);
    expect(broker.responseBytes).toBeGreaterThan(100);
  });

  it("measures the bundle's size and a cold start that answered its event", () => {
    expect(bundle.brokerBytes).toBeGreaterThan(100_000);
    expect(bundle.coldInitMs).toBeGreaterThan(0);
    expect(bundle.nodeMs).toBeGreaterThan(0);
    expect(bundle.coldInitRatio).toBeCloseTo(bundle.coldInitMs / bundle.nodeMs, 10);
  });

  it("runs the FC initializer over a generated configuration file and reports its time and peak RSS", () => {
    expect(configScale.clusters).toBe(3);
    expect(configScale.configBytes).toBeGreaterThan(3 * 200);
    expect(configScale.initMs).toBeGreaterThan(0);
    expect(configScale.peakRssMb).toBeGreaterThan(10);
  });

  it("turns the sections into results.json with every key a finite number", () => {
    const refresher = {
      coldSpeedupVsKubectl: 30,
      warmWrites: 0,
      warmRequestsPerNamespace: 0.01,
      peakRssMb: 120,
      rounds: [],
      large: { namespaces: 5, coldMs: 1, warmMs: 1, coldPeakRssMb: 120, warmPeakRssMb: 110, warmRequests: 7, changed: [] },
      brokerCalls: { hours: 6, runs: 72, calls: 8, forced: 7, callsPerHour: 8 / 6, credentialLifetimeMinutes: 60, spreadDelayMs: 1000 },
    };
    const results = toResults({ amplification, broker, bundle, refresher, configScale });
    expect(benchResultsSchema.parse(results)).toEqual(results);
    expect(results.amplification.upstreamCallsPer1000Clusters).toBe(amplification.upstreamCalls);
    expect(results.bundle.brokerBytes).toBe(bundle.brokerBytes);
    expect(results.refresher.brokerCallsPerHour).toBe(1.33);
    expect(results.fleet?.config10kRssMb).toBeCloseTo(configScale.peakRssMb, -1);
  });
});
