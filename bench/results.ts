/**
 * The shape of `bench/results.json` (numbers only, one key per figure of the benchmark issue), the
 * goals they are judged against, and the table `docs/benchmarks.md` shows. Pure: no I/O here.
 */
import { z } from "zod";

const figure = z.number().finite();

export const benchResultsSchema = z.strictObject({
  broker: z.strictObject({ throughputRatioVsBareHttp: figure, p99Ms: figure }),
  amplification: z.strictObject({ upstreamCallsPer1000Clusters: figure, naiveUpstreamCalls: figure }),
  refresher: z.strictObject({
    coldSpeedupVsKubectl: figure,
    warmWrites: figure,
    warmRequestsPerNamespace: figure,
    peakRssMb2000: figure,
    brokerCallsPerHour: figure,
  }),
  bundle: z.strictObject({ brokerBytes: figure, coldInitRatio: figure }),
  /**
   * Per fleet configuration (bench/fleet-bench.ts; goals and table in bench/fleet-report.ts), and
   * next to them the configuration-scale figures (bench/config-scale.ts).
   */
  fleet: z
    .object({ config10kInitMs: figure.optional(), config10kRssMb: figure.optional() })
    .catchall(
      z.strictObject({
        upstreamCallsPerHour: figure,
        brokerInvocationsPerClusterHour: figure,
        coldStartsPerHour: figure,
        peakInstances: figure,
        instanceSecondsPerClusterHour: figure,
        p99Ms: figure,
      }),
    )
    .optional(),
});
export type BenchResults = z.infer<typeof benchResultsSchema>;

type Section = Exclude<keyof BenchResults, "fleet">;
export type FigureKey = { [S in Section]: `${S}.${keyof BenchResults[S] & string}` }[Section] | "fleet.config10kInitMs" | "fleet.config10kRssMb";

/** A goal: `min`/`max` bound the figure; a goal without either is only reported. */
export interface Goal {
  key: FigureKey;
  what: string;
  min?: number;
  max?: number;
}

export const goals: readonly Goal[] = [
  {
    key: "broker.throughputRatioVsBareHttp",
    what: "requests/s of the broker (warm path, 100 clusters' RS256 tokens) ÷ a bare node:http server sending a JSON body of the same size",
    min: 0.5,
  },
  { key: "broker.p99Ms", what: "the broker's p99 latency in those runs (ms)" },
  { key: "amplification.upstreamCallsPer1000Clusters", what: "STS + CR calls while 1,000 clusters fetch the same 2 registries, 50 at a time", max: 8 },
  { key: "amplification.naiveUpstreamCalls", what: "the same with the broker's caches disabled (what per-cluster designs cost)" },
  { key: "refresher.coldSpeedupVsKubectl", what: "wall time of a sequential kubectl loop ÷ the refresher's, 200 namespaces", min: 20 },
  { key: "refresher.warmWrites", what: "Secrets and ServiceAccounts whose resourceVersion changed on a second run, unchanged credentials", max: 0 },
  { key: "refresher.warmRequestsPerNamespace", what: "API requests per namespace on that warm run", max: 3 },
  { key: "refresher.peakRssMb2000", what: "peak RSS (VmHWM, MB) of the bundled refresher over 2,000 namespaces", max: 150 },
  { key: "refresher.brokerCallsPerHour", what: "broker requests per hour of one cluster's `*/5` CronJob, one-hour credentials (simulated clock)", max: 1.5 },
  { key: "bundle.brokerBytes", what: "size of dist/broker: index.js, upstream.js (SDKs), ioredis.js, yaml.js (bytes)", max: 1_500_000 },
  { key: "bundle.coldInitRatio", what: "fresh node: load the bundle, parse config, answer one FC event ÷ `node -e 0`", max: 4 },
  {
    key: "fleet.config10kInitMs",
    what: "FC initializer (`index.initialize`) of dist/broker/index.js with 10,000 configured clusters, each with inline JWKS (ms)",
    max: 300,
  },
  { key: "fleet.config10kRssMb", what: "peak RSS of that process (MiB)", max: 150 },
];

export function figureOf(results: BenchResults, key: FigureKey): number {
  const [section, name] = key.split(".") as [Section, string];
  return (results[section] as Record<string, number>)[name]!;
}

export function goalMet(goal: Goal, value: number): boolean | undefined {
  if (goal.min === undefined && goal.max === undefined) return undefined;
  return (goal.min === undefined || value >= goal.min) && (goal.max === undefined || value <= goal.max);
}

export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error("median of no values");
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Rounds to `digits` significant digits, so results.json does not pretend to more precision than a noisy machine gives. */
export function significant(value: number, digits = 3): number {
  if (value === 0 || !Number.isFinite(value)) return value;
  return Number(value.toPrecision(digits));
}

const goalText = (goal: Goal): string => {
  if (goal.min !== undefined) return `≥ ${goal.min.toLocaleString("en-US")}`;
  if (goal.max !== undefined) return goal.max === 0 ? "0" : `≤ ${goal.max.toLocaleString("en-US")}`;
  return "report";
};

/** The Markdown table of every figure: key, what, goal, measured, met. */
export function resultsTable(results: BenchResults): string {
  const rows = goals.map((goal) => {
    const value = figureOf(results, goal.key);
    const met = goalMet(goal, value);
    return `| \`${goal.key}\` | ${goal.what} | ${goalText(goal)} | ${Number.isInteger(value) ? value.toLocaleString("en-US") : String(value)} | ${met === undefined ? "—" : met ? "yes" : "**no**"} |`;
  });
  return ["| key | what | goal | measured | met? |", "|---|---|---|---|---|", ...rows].join("\n");
}

export const tableStart = "<!-- bench:results:start -->";
export const tableEnd = "<!-- bench:results:end -->";

/** Replaces the generated part of docs/benchmarks.md (between the markers), keeping the prose around it. */
export function withResultsTable(document: string, table: string, note: string): string {
  const start = document.indexOf(tableStart);
  const end = document.indexOf(tableEnd);
  if (start === -1 || end === -1 || end < start) throw new Error(`docs/benchmarks.md lacks the ${tableStart} … ${tableEnd} markers`);
  return `${document.slice(0, start + tableStart.length)}\n${note}\n\n${table}\n${document.slice(end)}`;
}
