import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { measureAmplification, type AmplificationOptions, type AmplificationResult } from "./amplification.ts";
import { measureBrokerThroughput, type BrokerThroughputOptions, type BrokerThroughputResult } from "./broker-throughput.ts";
import { measureBundle, type BundleOptions, type BundleResult } from "./bundle.ts";
import { measureConfigScale, type ConfigScaleOptions, type ConfigScaleResult } from "./config-scale.ts";
import { measureFleet, type FleetOptions, type FleetResult } from "./fleet-bench.ts";
import { fleetSection } from "./fleet-report.ts";
import { measureRefresher, type RefresherBenchOptions, type RefresherBenchResult } from "./refresher.ts";
import { repoPath, repoRoot } from "./processes.ts";
import { benchResultsSchema, significant, type BenchResults } from "./results.ts";

/** Every section of the benchmark with its settings; `npm run bench` uses the defaults of each. */
export interface BenchOptions {
  broker: BrokerThroughputOptions;
  amplification: AmplificationOptions;
  refresher: RefresherBenchOptions;
  bundle: BundleOptions;
  configScale: ConfigScaleOptions;
  fleet: FleetOptions;
}

export interface BenchDetails {
  broker: BrokerThroughputResult;
  amplification: AmplificationResult;
  refresher: RefresherBenchResult;
  bundle: BundleResult;
  configScale: ConfigScaleResult;
  fleet?: FleetResult;
}

/**
 * The results.json figures from the sections' measurements (validated, ratios rounded to 3
 * significant digits). Call counts are as measured for the configured fleet (1,000 clusters by
 * default), not scaled: upstream calls do not grow with the number of clusters.
 */
export function toResults(details: BenchDetails): BenchResults {
  return benchResultsSchema.parse({
    broker: { throughputRatioVsBareHttp: significant(details.broker.throughputRatioVsBareHttp), p99Ms: significant(details.broker.p99Ms) },
    amplification: { upstreamCallsPer1000Clusters: details.amplification.upstreamCalls, naiveUpstreamCalls: details.amplification.naiveUpstreamCalls },
    refresher: {
      coldSpeedupVsKubectl: significant(details.refresher.coldSpeedupVsKubectl),
      warmWrites: details.refresher.warmWrites,
      warmRequestsPerNamespace: significant(details.refresher.warmRequestsPerNamespace),
      peakRssMb2000: significant(details.refresher.peakRssMb),
      brokerCallsPerHour: significant(details.refresher.brokerCalls.callsPerHour),
    },
    bundle: { brokerBytes: details.bundle.brokerBytes, coldInitRatio: significant(details.bundle.coldInitRatio) },
    fleet: {
      ...(details.fleet ? fleetSection(details.fleet) : {}),
      config10kInitMs: significant(details.configScale.initMs),
      config10kRssMb: significant(details.configScale.peakRssMb),
    },
  });
}

/** Runs the sections one after the other (never two at once: they would measure each other). */
export async function runBench(options: BenchOptions, log: (line: string) => void): Promise<{ results: BenchResults; details: BenchDetails }> {
  const amplification = await measureAmplification({ ...options.amplification, log });
  const bundle = await measureBundle({ ...options.bundle, log });
  // The bundle was just built: measure that one.
  const configScale = await measureConfigScale({ ...options.configScale, bundleFile: options.configScale.bundleFile ?? repoPath("dist/broker/index.js"), log });
  const broker = await measureBrokerThroughput({ ...options.broker, log });
  const refresher = await measureRefresher({ ...options.refresher, log });
  // After the bundle section, which builds dist/broker the fleet runs; the custom rows run dist/broker-server.
  if (options.fleet.serverDir === undefined) await promisify(execFile)(process.execPath, [repoPath("build.mjs"), "broker-server"], { cwd: repoRoot });
  const fleet = await measureFleet({ ...options.fleet, log });
  const details = { broker, amplification, refresher, bundle, configScale, fleet };
  return { results: toResults(details), details };
}
