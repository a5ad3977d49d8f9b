import { readFile, writeFile } from "node:fs/promises";
import { fleetDefaults, fleetConfigs, measureFleet } from "./fleet-bench.ts";
import { fleetNote, fleetSection, fleetTable, withFleetTable } from "./fleet-report.ts";
import { repoPath } from "./processes.ts";
import { benchResultsSchema } from "./results.ts";

/**
 * `npm run bench:fleet [-- KEY...]`: only the fleet section (bench/fleet-bench.ts), merged into
 * bench/results.json and the fleet block of docs/benchmarks.md; the other sections stay as they are.
 * Needs `npm run build` first. About 20 minutes on a 2-core machine for every configuration.
 */

const log = (line: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
const only = process.argv.slice(2);
const unknown = only.filter((key) => !fleetConfigs.some((c) => c.key === key));
if (unknown.length > 0) {
  console.error(`bench:fleet: unknown configuration ${unknown.join(", ")}; known: ${fleetConfigs.map((c) => c.key).join(", ")}`);
  process.exit(2);
}
const started = performance.now();
const result = await measureFleet({ ...fleetDefaults, ...(only.length > 0 ? { only } : {}), log });
const minutes = (performance.now() - started) / 60_000;

const resultsFile = repoPath("bench/results.json");
const previous = benchResultsSchema.parse(JSON.parse(await readFile(resultsFile, "utf8")));
// A partial run replaces only the configurations it measured.
const results = benchResultsSchema.parse({ ...previous, fleet: { ...(only.length > 0 ? previous.fleet : {}), ...fleetSection(result) } });
await writeFile(resultsFile, `${JSON.stringify(results, null, 2)}\n`);
const docsFile = repoPath("docs/benchmarks.md");
const table = fleetTable(result, only.length > 0 ? previous.fleet : {});
await writeFile(docsFile, withFleetTable(await readFile(docsFile, "utf8"), fleetNote(result, minutes), table));
console.log(table);
log(`wrote the fleet section of bench/results.json and docs/benchmarks.md in ${minutes.toFixed(1)} min`);
