/**
 * `npm run bench`: every section with its default settings, then bench/results.json and the
 * generated parts of docs/benchmarks.md. Takes about ten minutes on a 2-core machine, and about
 * about ten more for the fleet section (bench/fleet-bench.ts).
 */
import { readFile, writeFile } from "node:fs/promises";
import { availableParallelism, cpus, totalmem } from "node:os";
import { amplificationDefaults } from "./amplification.ts";
import { brokerThroughputDefaults } from "./broker-throughput.ts";
import { bundleDefaults } from "./bundle.ts";
import { configScaleDefaults } from "./config-scale.ts";
import { fleetDefaults } from "./fleet-bench.ts";
import { fleetNote, fleetTable, withFleetTable } from "./fleet-report.ts";
import { repoPath } from "./processes.ts";
import { refresherDefaults } from "./refresher.ts";
import { resultsTable, withResultsTable } from "./results.ts";
import { runBench, type BenchDetails } from "./run.ts";

const log = (line: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
const fixed = (value: number, digits = 0) => value.toFixed(digits);

function runNotes(details: BenchDetails, minutes: number): string {
  const { broker, amplification, refresher, bundle } = details;
  const cpu = cpus()[0]?.model ?? "unknown CPU";
  return [
    `Measured ${new Date().toISOString().slice(0, 10)} on ${availableParallelism()} cores (${cpu}), ${fixed(totalmem() / 2 ** 30)} GiB, Node.js ${process.version}; the whole run took ${fixed(minutes, 1)} min.`,
    "",
    `- broker rounds (broker ÷ bare req/s): ${broker.rounds.map((r) => `${fixed(r.brokerRps)} ÷ ${fixed(r.bareRps)} = ${fixed(r.ratio, 3)}`).join("; ")}; answers of ${broker.responseBytes} bytes.`,
    `- amplification, ${amplification.clusters} clusters: cached ${JSON.stringify(amplification.byApi.cached)}; caches disabled ${JSON.stringify(amplification.byApi.naive)}.`,
    `- refresher rounds (kubectl loop ÷ refresher, ${refresherDefaults.baselineNamespaces} namespaces): ${refresher.rounds.map((r) => `${fixed(r.kubectlMs / 1000, 1)} s ÷ ${fixed(r.refresherMs / 1000, 2)} s = ${fixed(r.speedup, 1)}×`).join("; ")}.`,
    `- refresher, ${refresher.large.namespaces} namespaces: cold ${fixed(refresher.large.coldMs / 1000, 2)} s, peak RSS ${fixed(refresher.large.coldPeakRssMb)} MiB; warm ${fixed(refresher.large.warmMs / 1000, 2)} s, peak RSS ${fixed(refresher.large.warmPeakRssMb)} MiB, ${refresher.large.warmRequests} API requests, ${refresher.large.changed.length} objects changed.`,
    `- refresher, broker calls: ${refresher.brokerCalls.calls} in ${refresher.brokerCalls.hours} simulated hours of a \`*/5\` schedule (${refresher.brokerCalls.runs} runs, ${refresher.brokerCalls.forced} forced renewals), ${refresher.brokerCalls.credentialLifetimeMinutes}-minute credentials, spread delay ${fixed(refresher.brokerCalls.spreadDelayMs / 1000)} s.`,
    `- bundle: cold init ${fixed(bundle.coldInitMs)} ms vs \`node -e 0\` ${fixed(bundle.nodeMs)} ms (medians of ${bundleDefaults.runs}).`,
    `- configuration at scale: ${details.configScale.clusters.toLocaleString("en-US")} clusters in a ${fixed(details.configScale.configBytes / 1e6, 1)} MB JSON file: initializer ${fixed(details.configScale.initMs)} ms, peak RSS ${fixed(details.configScale.peakRssMb)} MiB (medians of ${configScaleDefaults.runs}).`,
  ].join("\n");
}

const started = performance.now();
const { results, details } = await runBench(
  {
    broker: brokerThroughputDefaults,
    amplification: amplificationDefaults,
    refresher: refresherDefaults,
    bundle: bundleDefaults,
    fleet: fleetDefaults,
    configScale: configScaleDefaults,
  },
  log,
);
const minutes = (performance.now() - started) / 60_000;

await writeFile(repoPath("bench/results.json"), `${JSON.stringify(results, null, 2)}\n`);
const docsFile = repoPath("docs/benchmarks.md");
const document = withResultsTable(await readFile(docsFile, "utf8"), resultsTable(results), runNotes(details, minutes));
await writeFile(
  docsFile,
  details.fleet
    ? withFleetTable(document, fleetNote(details.fleet, details.fleet.configs.reduce((sum, c) => sum + c.realSeconds, 0) / 60), fleetTable(details.fleet))
    : document,
);
console.log(resultsTable(results));
log(`wrote bench/results.json and docs/benchmarks.md in ${fixed(minutes, 1)} min`);
