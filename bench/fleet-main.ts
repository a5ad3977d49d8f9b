/**
 * `npm run bench:fleet [-- KEY...]`: only the fleet section (bench/fleet-bench.ts), merged into
 * bench/results.json and the fleet block of docs/benchmarks.md; the other sections stay as they are.
 * Needs `npm run build` first. About 9–14 minutes on a 2-core machine for every configuration.
 */
import { readFile, writeFile } from "node:fs/promises";
import { fleetDefaults, fleetConfigs, measureFleet, type FleetResult } from "./fleet-bench.ts";
import { fleetNote, fleetSection, fleetTable, withFleetTable } from "./fleet-report.ts";
import { repoPath } from "./processes.ts";
import { benchResultsSchema } from "./results.ts";

const log = (line: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
const only = process.argv.slice(2);
const unknown = only.filter((key) => !fleetConfigs.some((c) => c.key === key));
if (unknown.length > 0) {
  console.error(`bench:fleet: unknown configuration ${unknown.join(", ")}; known: ${fleetConfigs.map((c) => c.key).join(", ")}`);
  process.exit(2);
}
const started = performance.now();
const resultsFile = repoPath("bench/results.json");
const docsFile = repoPath("docs/benchmarks.md");
const previous = benchResultsSchema.parse(JSON.parse(await readFile(resultsFile, "utf8")));

/** Writes what has been measured so far: a partial run replaces only the configurations it measured. */
async function write(result: FleetResult): Promise<string> {
  const earlier = only.length > 0 ? (previous.fleet ?? {}) : {};
  // The configuration-scale figures (bench/config-scale.ts) share the section; this run keeps them.
  const scale = { config10kInitMs: previous.fleet?.config10kInitMs, config10kRssMb: previous.fleet?.config10kRssMb };
  const results = benchResultsSchema.parse({ ...previous, fleet: { ...scale, ...earlier, ...fleetSection(result) } });
  await writeFile(resultsFile, `${JSON.stringify(results, null, 2)}\n`);
  const table = fleetTable(result, earlier);
  await writeFile(docsFile, withFleetTable(await readFile(docsFile, "utf8"), fleetNote(result, (performance.now() - started) / 60_000), table));
  return table;
}

const result = await measureFleet({ ...fleetDefaults, ...(only.length > 0 ? { only } : {}), log, onProgress: async (partial) => void (await write(partial)) });
console.log(await write(result));
log(`wrote the fleet section of bench/results.json and docs/benchmarks.md in ${((performance.now() - started) / 60_000).toFixed(1)} min`);
