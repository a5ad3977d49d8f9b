/**
 * A tiny run of the fleet benchmark (bench/fleet-bench.ts) so `npm run bench` cannot rot: four
 * clusters, twenty simulated minutes, through the FC model with real instance processes (and a real
 * redis-server for the shared cache). It checks the counts the schedule and the FC rules fix, never
 * how fast anything was.
 */
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fleetDefaults, measureFleet, type FleetResult } from "../../bench/fleet-bench.ts";
import { fleetSection, fleetTable } from "../../bench/fleet-report.ts";
import { benchResultsSchema } from "../../bench/results.ts";

let work: string;
let result: FleetResult;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "bench-fleet-smoke-"));
  // The broker's built-in bundle and custom-runtime server built here, so this file never races `npm run build` for dist/.
  await build({
    entryPoints: [new URL("../../functions/broker/index.ts", import.meta.url).pathname],
    outfile: join(work, "broker/index.js"),
    bundle: true,
    platform: "node",
    target: "node20",
    format: "cjs",
    logLevel: "warning",
  });
  const banner = "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);";
  await build({
    entryPoints: [new URL("../../functions/broker/server-main.ts", import.meta.url).pathname],
    outfile: join(work, "broker-server/index.mjs"),
    bundle: true,
    platform: "node",
    target: "node20",
    format: "esm",
    banner: { js: banner },
    logLevel: "warning",
  });
  result = await measureFleet({
    ...fleetDefaults,
    clusters: 4,
    warmupMinutes: 0,
    measuredMinutes: 20,
    brokerRenewalMeasuredMinutes: 20,
    economyMeasuredMinutes: 20,
    burstSeconds: 2,
    spreadWindowSeconds: 20,
    parallel: 2,
    bundleDir: join(work, "broker"),
    serverDir: join(work, "broker-server"),
    only: [
      "builtIn",
      "builtInEconomy",
      "custom",
      "customEconomy",
      "builtInSharedCache",
      "customSharedCache",
      "customProvisionedSharedCacheEconomy",
      "customProvisionedSharedCacheEconomy3Registries",
    ],
  });
}, 240_000);

afterAll(async () => {
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

const config = (key: string) => {
  const found = result.configs.find((c) => c.config.key === key);
  if (found === undefined) throw new Error(`no ${key} in the run`);
  return found;
};

describe("the fleet section, run small", () => {
  it("calls the broker once per cluster and cycle without the economy, every call answered", () => {
    expect(config("builtIn").brokerInvocationsPerClusterHour).toBe(12);
    expect(config("custom").brokerInvocationsPerClusterHour).toBe(12);
    expect(config("builtIn").throttledPerHour).toBe(0);
    expect(config("builtIn").failedPerHour).toBe(0);
  });

  it("calls only the first time with the economy, within one credential lifetime", () => {
    // 20 minutes: every cluster's first credential is far from expiry after its first call.
    expect(config("builtInEconomy").brokerInvocationsPerClusterHour).toBe(3);
    expect(config("customEconomy").brokerInvocationsPerClusterHour).toBe(3);
  });

  it("starts new built-in instances every cycle (idle reclaim before the next */5 run), one custom instance for all", () => {
    const builtIn = config("builtIn");
    // Four cycles of 20 minutes, 3 per quarter hour: at least one cold start per cycle.
    expect(builtIn.coldStartsPerHour).toBeGreaterThanOrEqual(12);
    expect(builtIn.peakInstances).toBeGreaterThanOrEqual(1);
    expect(config("custom").peakInstances).toBe(1);
    expect(config("custom").coldStartsPerHour).toBe(12);
    expect(builtIn.upstreamCallsPerHour).toBeGreaterThan(0);
    expect(builtIn.instanceSecondsPerClusterHour).toBeGreaterThan(0);
    expect(builtIn.p99Ms).toBeGreaterThan(0);
  });

  it("measures the shared cache on a real redis-server: new instances read what the fleet fetched", () => {
    expect(result.pending).toEqual([]);
    expect(config("builtInSharedCache").failedPerHour).toBe(0);
    expect(config("builtInSharedCache").coldStartsPerHour).toBeGreaterThanOrEqual(12);
    // One fill for the whole run instead of one per instance started: FC's one request per built-in
    // instance starts a dozen instances here, and one of them asks upstream for all.
    expect(config("builtInSharedCache").upstreamCallsPerHour).toBeLessThan(config("builtIn").upstreamCallsPerHour);
    expect(config("builtInSharedCache").byApi["sts:AssumeRole"]).toBe(1);
    expect(config("builtIn").byApi["sts:AssumeRole"]).toBeGreaterThan(1);
    expect(config("customSharedCache").upstreamCallsPerHour).toBeLessThan(config("custom").upstreamCallsPerHour);
  });

  it("serves the custom runtime with the custom-runtime artefact, and keeps the provisioned instance between cycles", () => {
    expect(result.customArtefact).toBe("dist/broker-server");
    const provisioned = config("customProvisionedSharedCacheEconomy");
    expect(provisioned.failedPerHour).toBe(0);
    // Started once, at the first call, and kept: one cold start in 20 minutes, however idle.
    expect(provisioned.coldStartsPerHour).toBe(3);
    expect(provisioned.peakInstances).toBe(1);
  });

  it("makes one refresh for the whole fleet with the chosen deployment: one session, one token per registry, domains discovered unless configured", () => {
    // 20 minutes from an empty cache: every cluster's first call, no renewal yet.
    expect(config("customProvisionedSharedCacheEconomy").byApi).toEqual({ "sts:AssumeRole": 1, "cr:GetAuthorizationToken": 2, "cr:ListInstanceEndpoint": 2 });
    expect(config("customProvisionedSharedCacheEconomy3Registries").byApi).toEqual({ "sts:AssumeRole": 1, "cr:GetAuthorizationToken": 3 });
  });

  it("reports each window with the refresh periods the run showed: every cycle cold, or one fill and no renewal yet in 20 minutes", () => {
    expect(config("builtIn").window).toEqual({ follows: "coldStarts", minutes: 20, refreshGapsMinutes: [5, 5, 5], periods: 4 });
    expect(config("customSharedCache").window).toEqual({ follows: "brokerRenewals", minutes: 20, refreshGapsMinutes: [], periods: undefined });
    expect(config("customProvisionedSharedCacheEconomy").window.follows).toBe("refresherRenewals");
    // No warm-up here: the discovery falls in the window and nothing is added for it.
    expect(config("customProvisionedSharedCacheEconomy").discoveriesBeforeWindow).toBe(0);
    expect(config("customProvisionedSharedCacheEconomy").upstreamCallsPerHour).toBe(5 * 3);
  });

  it("turns the run into the results.json fleet section and the documentation table", () => {
    const section = fleetSection(result);
    expect(Object.keys(section).sort()).toEqual([
      "builtIn",
      "builtInEconomy",
      "builtInSharedCache",
      "custom",
      "customEconomy",
      "customProvisionedSharedCacheEconomy",
      "customProvisionedSharedCacheEconomy3Registries",
      "customSharedCache",
    ]);
    // The other sections as the committed results.json has them.
    const committed = benchResultsSchema.parse(JSON.parse(readFileSync(new URL("../../bench/results.json", import.meta.url), "utf8")));
    expect(benchResultsSchema.parse({ ...committed, fleet: section }).fleet).toEqual(section);
    const table = fleetTable(result);
    for (const key of Object.keys(section)) expect(table).toContain(`\`${key}\``);
  });
});
