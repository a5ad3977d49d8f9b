/**
 * The fleet section of results.json and docs/benchmarks.md: the figures per configuration, the
 * issue's goals for the best configuration and which configuration meets them. Pure.
 */
import type { BenchResults } from "./results.ts";
import { significant } from "./results.ts";
import { fleetConfigs, type FleetFigures, type FleetResult } from "./fleet-bench.ts";

export type FleetSection = NonNullable<BenchResults["fleet"]>;

export const fleetFigureKeys = [
  "upstreamCallsPerHour",
  "brokerInvocationsPerClusterHour",
  "coldStartsPerHour",
  "peakInstances",
  "instanceSecondsPerClusterHour",
  "p99Ms",
] as const satisfies readonly (keyof FleetFigures)[];

/** Identity chains × registries of a fleet configuration: one role chain (execution role → acr-pull) for its registries (2 unless it says). */
export function chainsTimesRegistries(key: string): number {
  return 1 * (fleetConfigs.find((c) => c.key === key)?.registries ?? 2);
}

export interface FleetGoal {
  what: string;
  /** `chainsTimesRegistries`: of the configuration the figures are of. */
  met(figures: FleetFigures, chainsTimesRegistries: number): boolean;
  text: string;
}

export const fleetGoals: readonly FleetGoal[] = [
  {
    what: "upstream STS + CR calls per hour",
    text: "≤ 2 × chains × registries = 4 (6 with three registries)",
    met: (f, chainsTimesRegistries) => f.upstreamCallsPerHour <= 2 * chainsTimesRegistries,
  },
  { what: "broker invocations per cluster-hour", text: "≤ 1.5", met: (f) => f.brokerInvocationsPerClusterHour <= 1.5 },
  { what: "p99 during the aligned burst", text: "≤ 1,000 ms", met: (f) => f.p99Ms <= 1000 },
  { what: "cold starts per hour", text: "≤ 2 × peak instances", met: (f) => f.coldStartsPerHour <= 2 * f.peakInstances },
];

export function fleetSection(result: FleetResult): FleetSection {
  const section: FleetSection = {};
  for (const measured of result.configs) {
    section[measured.config.key] = {
      upstreamCallsPerHour: significant(measured.upstreamCallsPerHour),
      brokerInvocationsPerClusterHour: significant(measured.brokerInvocationsPerClusterHour),
      coldStartsPerHour: significant(measured.coldStartsPerHour),
      peakInstances: measured.peakInstances,
      instanceSecondsPerClusterHour: significant(measured.instanceSecondsPerClusterHour),
      p99Ms: significant(measured.p99Ms),
    };
  }
  return section;
}

const cell = (value: number) => (Number.isInteger(value) ? value.toLocaleString("en-US") : String(value));

/**
 * One row per configuration (pending ones say why), then the goals and which configurations meet
 * all of them. `earlier` adds the figures of configurations measured by an earlier partial run.
 */
export function fleetTable(result: FleetResult, earlier: FleetSection = {}): string {
  const section = { ...earlier, ...fleetSection(result) };
  const measured = new Map(result.configs.map((c) => [c.config.key, c]));
  const keys = fleetConfigs.map((c) => c.key).filter((key) => section[key] !== undefined);
  const header = [
    "| configuration | key | upstream calls / h | invocations / cluster-h | cold starts / h | peak instances | instance-s / cluster-h | p99 ms | throttled / h |",
    "|---|---|---|---|---|---|---|---|---|",
  ];
  const rows = keys.map((key) => {
    const figures = section[key]!;
    const run = measured.get(key);
    const what = fleetConfigs.find((c) => c.key === key)!.what;
    return `| ${what} | \`${key}\` | ${fleetFigureKeys.map((name) => cell(figures[name])).join(" | ")} | ${run ? cell(significant(run.throttledPerHour)) : "(earlier run)"} |`;
  });
  const pending = result.pending.filter((p) => section[p.key] === undefined).map((p) => `| — | \`${p.key}\` | pending: ${p.reason} |||||||`);
  const meets = (goal: FleetGoal, key: string) => goal.met(section[key]!, chainsTimesRegistries(key));
  const meeting = (goal: FleetGoal) => keys.filter((key) => meets(goal, key)).map((key) => `\`${key}\``);
  const goalRows = fleetGoals.map((goal) => `| ${goal.what} | ${goal.text} | ${meeting(goal).length > 0 ? meeting(goal).join(", ") : "**none**"} |`);
  const all = keys.filter((key) => fleetGoals.every((goal) => meets(goal, key))).map((key) => `\`${key}\``);
  return [
    ...header,
    ...rows,
    ...pending,
    "",
    "| goal (best configuration) | bound | configurations meeting it |",
    "|---|---|---|",
    ...goalRows,
    `| all four | | ${all.length > 0 ? all.join(", ") : "**none**"} |`,
  ].join("\n");
}

export const fleetStart = "<!-- bench:fleet:start -->";
export const fleetEnd = "<!-- bench:fleet:end -->";

/** Replaces the generated fleet block of docs/benchmarks.md, keeping the prose around it. */
export function withFleetTable(document: string, note: string, table: string): string {
  const start = document.indexOf(fleetStart);
  const end = document.indexOf(fleetEnd);
  if (start === -1 || end === -1 || end < start) throw new Error(`docs/benchmarks.md lacks the ${fleetStart} … ${fleetEnd} markers`);
  return `${document.slice(0, start + fleetStart.length)}\n${note}\n\n${table}\n${document.slice(end)}`;
}

/** The run's settings and per-configuration details, for the line above the table. */
export function fleetNote(result: FleetResult, realMinutes: number): string {
  const o = result.options;
  const details = result.configs.map(
    (c) =>
      `\`${c.config.key}\` ${JSON.stringify(c.byApi)}, cold-start request median ${c.coldRequestMedianMs.toFixed(0)} ms, warm ${c.warmRequestMedianMs.toFixed(0)} ms`,
  );
  return [
    `${o.clusters.toLocaleString("en-US")} clusters, refreshers every ${o.intervalMinutes} min arriving within ${o.burstSeconds} s of the minute; ${o.warmupMinutes} simulated min of warm-up where needed, then ${o.measuredMinutes} measured (${o.economyMeasuredMinutes} with the call economy); idle reclaim ${o.idleSeconds} s, maxInstances ${o.maxInstances}, custom-runtime instanceConcurrency ${o.customConcurrency} (served by \`${result.customArtefact}\`); with the call economy each cluster asks after its spread delay (window ${o.spreadWindowSeconds} s) with minValiditySeconds ${o.minValiditySeconds}; ${realMinutes.toFixed(1)} min of real time.`,
    "",
    ...details.map((line) => `- ${line}`),
  ].join("\n");
}
