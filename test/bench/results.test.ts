import { describe, expect, it } from "vitest";
import {
  benchResultsSchema,
  goalMet,
  goals,
  median,
  resultsTable,
  significant,
  tableEnd,
  tableStart,
  withResultsTable,
  type BenchResults,
} from "../../bench/results.ts";

const sample: BenchResults = {
  broker: { throughputRatioVsBareHttp: 0.42, p99Ms: 12 },
  amplification: { upstreamCallsPer1000Clusters: 5, naiveUpstreamCalls: 6000 },
  refresher: { coldSpeedupVsKubectl: 31, warmWrites: 0, warmRequestsPerNamespace: 0.0035, peakRssMb2000: 160, brokerCallsPerHour: 1.33 },
  bundle: { brokerBytes: 1_364_045, coldInitRatio: 10 },
  // The configuration-scale figures; the per-configuration ones are optional.
  fleet: benchResultsSchema.shape.fleet.parse({ config10kInitMs: 210, config10kRssMb: 126 }),
};

describe("bench/results.json", () => {
  it("accepts exactly the issue's keys, numbers only", () => {
    expect(benchResultsSchema.parse(sample)).toEqual(sample);
    expect(() => benchResultsSchema.parse({ ...sample, extra: {} })).toThrow();
    expect(() => benchResultsSchema.parse({ ...sample, broker: { ...sample.broker, p99Ms: "12" } })).toThrow();
    expect(() => benchResultsSchema.parse({ ...sample, refresher: { ...sample.refresher, warmWrites: Number.NaN } })).toThrow();
    const { bundle: _bundle, ...withoutBundle } = sample;
    expect(() => benchResultsSchema.parse(withoutBundle)).toThrow();
  });

  it("has a goal row for every key of the results", () => {
    const keys = Object.entries(sample).flatMap(([section, figures]) => Object.keys(figures).map((name) => `${section}.${name}`));
    expect(goals.map((goal) => goal.key).sort()).toEqual(keys.sort());
  });
});

describe("goals", () => {
  const goal = (key: string) => goals.find((g) => g.key === key)!;

  it("judges a minimum, a maximum and a zero goal, and leaves report-only figures unjudged", () => {
    expect(goalMet(goal("broker.throughputRatioVsBareHttp"), 0.5)).toBe(true);
    expect(goalMet(goal("broker.throughputRatioVsBareHttp"), 0.49)).toBe(false);
    expect(goalMet(goal("refresher.peakRssMb2000"), 150)).toBe(true);
    expect(goalMet(goal("refresher.peakRssMb2000"), 150.5)).toBe(false);
    expect(goalMet(goal("refresher.warmWrites"), 0)).toBe(true);
    expect(goalMet(goal("refresher.warmWrites"), 1)).toBe(false);
    expect(goalMet(goal("broker.p99Ms"), 1e9)).toBeUndefined();
  });
});

describe("median and rounding", () => {
  it("takes the middle value, or the mean of the two middle ones", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(() => median([])).toThrow();
  });

  it("keeps three significant digits", () => {
    expect(significant(0.123456)).toBe(0.123);
    expect(significant(31.49)).toBe(31.5);
    expect(significant(0)).toBe(0);
  });
});

describe("docs/benchmarks.md table", () => {
  it("shows each figure with its goal and whether it was met", () => {
    const table = resultsTable(sample);
    expect(table).toMatch(/\| `broker.throughputRatioVsBareHttp` \| .* \| ≥ 0.5 \| 0.42 \| \*\*no\*\* \|/);
    expect(table).toMatch(/\| `amplification.upstreamCallsPer1000Clusters` \| .* \| ≤ 8 \| 5 \| yes \|/);
    expect(table).toMatch(/\| `refresher.warmWrites` \| .* \| 0 \| 0 \| yes \|/);
    expect(table).toMatch(/\| `bundle.coldInitRatio` \| .* \| ≤ 4 \| 10 \| \*\*no\*\* \|/);
    expect(table).toMatch(/\| `broker.p99Ms` \| .* \| report \| 12 \| — \|/);
    expect(table.split("\n")).toHaveLength(goals.length + 2);
  });

  it("replaces only the generated part of the document", () => {
    const document = `# Benchmarks\n\nintro\n\n${tableStart}\nold table\n${tableEnd}\n\n## Why\n\nprose\n`;
    const updated = withResultsTable(document, "NEW TABLE", "note");
    expect(updated).toBe(`# Benchmarks\n\nintro\n\n${tableStart}\nnote\n\nNEW TABLE\n${tableEnd}\n\n## Why\n\nprose\n`);
    expect(() => withResultsTable("no markers", "t", "n")).toThrow(/markers/);
  });
});
