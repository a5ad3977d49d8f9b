/**
 * The fleet on Function Compute 3.0: N clusters whose refreshers fire on aligned `*\/5` schedules,
 * replayed through the FC instance model (emulator/fc-runtime) against the built artefacts, in
 * model time. Each request is placed on an instance at its scheduled time, then run for real; its
 * end is that time plus what it really took, so hours of fleet life pass in minutes while every
 * placement (new instance, reuse, reclaim, throttling) follows from measured durations. A request
 * is dispatched only once every earlier one has either ended or run past its arrival (until then
 * it is not known whether an instance would be free), at most `parallel` running at once.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pLimit from "p-limit";
import { createFcFunction, type FcFunction, type FunctionSpec } from "../emulator/fc-runtime/function.ts";
import { startEmulator, type Emulator } from "../emulator/index.ts";
import { brokerConfigSchema } from "../functions/broker/config.ts";
import { customServer } from "./fleet-configs.ts";
import { spreadDelayMs } from "../job/spread.ts";
import { cycleArrivals, economyWantsCall, percentile, seededRandom, type Arrival } from "./fleet-schedule.ts";
import { benchWorld, createFleet, executionRole, fleetBrokerConfig, fleetRegistries, type FleetCluster } from "./fleet.ts";
import { repoPath, repoRoot } from "./processes.ts";
import { startRedisServer } from "../test/support/redis-server.ts";
import { sleep } from "../shared/retry.ts";

export interface FleetOptions {
  clusters: number;
  /**
   * Model minutes before the measured window, so caches, instances and refreshers settle. Skipped
   * for a configuration that carries nothing from one cycle to the next: no economy, no shared
   * cache, and instances reclaimed before the next cycle.
   */
  warmupMinutes: number;
  measuredMinutes: number;
  /**
   * The measured window with the call economy: a cluster's calls then come every 40-45 minutes, in
   * step across the fleet, so an hour's window would count one or two of them depending on its
   * phase; three hours average that out.
   */
  economyMeasuredMinutes: number;
  intervalMinutes: number;
  /** Arrivals of one cycle spread over this many seconds after the minute. */
  burstSeconds: number;
  /** FC reclaims idle on-demand instances after "usually 3 to 5 minutes". */
  idleSeconds: number;
  maxInstances: number;
  /** instanceConcurrency of the custom runtime. */
  customConcurrency: number;
  /**
   * The refresher's spread window (job/spread.ts, `spread-window`, default 120 s): with the call
   * economy each cluster asks after a delay of its own within it, as the shipped refresher does.
   */
  spreadWindowSeconds: number;
  /** What the shipped refresher asks for on a scheduled renewal: threshold + two intervals (job/run.ts). */
  minValiditySeconds: number;
  /** Requests really running at once on this machine (model time is unaffected). */
  parallel: number;
  /** The built-in runtime's code package; default dist/broker. */
  bundleDir?: string;
  /** The custom runtime's code (index.mjs); default dist/broker-server. */
  serverDir?: string;
  /** Only these configurations (keys of `fleetConfigs`); default all. */
  only?: string[];
  seed?: number;
  log?: (line: string) => void;
  /** Called after each configuration with the results so far (so a long run keeps what it measured). */
  onProgress?: (partial: FleetResult) => Promise<void>;
}

// maxInstances 50, not the account's default regional quota of 100: every instance is a real
// process of about 130 MB here (the 1,000-cluster configuration), and the machine is shared.
// instanceConcurrency 100 as s.yaml deploys it. With the economy a cluster renews every 40 minutes
// (a one-hour credential, renewed 20 minutes before expiry), so its window is a multiple of 40.
export const fleetDefaults: FleetOptions = {
  clusters: 1000,
  warmupMinutes: 60,
  measuredMinutes: 60,
  economyMeasuredMinutes: 240,
  intervalMinutes: 5,
  burstSeconds: 10,
  idleSeconds: 180,
  maxInstances: 50,
  customConcurrency: 100,
  spreadWindowSeconds: 120,
  minValiditySeconds: 25 * 60,
  parallel: 2,
};

/** Whether a configuration's cycles depend on earlier ones (so it needs the warm-up). */
export function carriesState(config: FleetConfig, options: Pick<FleetOptions, "idleSeconds" | "intervalMinutes">): boolean {
  return config.economy || config.sharedCache || (config.provisioned ?? 0) > 0 || options.idleSeconds >= options.intervalMinutes * 60;
}

export interface FleetConfig {
  key: string;
  runtime: "builtin" | "custom";
  sharedCache: boolean;
  /** The refresher as shipped: calls only when a credential is due, after its spread delay, with `minValiditySeconds`. */
  economy: boolean;
  /** Instances FC keeps started (s.yaml `provisionConfig.defaultTarget`); default 0. */
  provisioned?: number;
  /** Registries every cluster fetches through the one role chain (bench/fleet.ts `fleetRegistries`); default 2. */
  registries?: 2 | 3;
  what: string;
}

export const fleetConfigs: readonly FleetConfig[] = [
  ...[
    { key: "builtIn", runtime: "builtin", sharedCache: false, economy: false, what: "(a) built-in runtime as shipped" },
    { key: "builtInSharedCache", runtime: "builtin", sharedCache: true, economy: false, what: "(b) built-in runtime + shared cache" },
    { key: "custom", runtime: "custom", sharedCache: false, economy: false, what: "custom runtime with instance concurrency, no shared cache" },
    { key: "customSharedCache", runtime: "custom", sharedCache: true, economy: false, what: "(c) custom runtime with concurrency + shared cache" },
    { key: "customProvisionedSharedCache", runtime: "custom", sharedCache: true, economy: false, provisioned: 1, what: "(c) + one provisioned instance" },
  ].flatMap((config) => [
    config as FleetConfig,
    { ...config, key: `${config.key}Economy`, economy: true, what: `${config.what}, refresher call economy` } as FleetConfig,
  ]),
  // The chosen deployment with a third registry behind the same chain: the upstream bound grows with
  // the registries (2 per registry and chain), the floor less fast (1.5 renewals × (1 AssumeRole + r)).
  {
    key: "customProvisionedSharedCacheEconomy3Registries",
    runtime: "custom",
    sharedCache: true,
    economy: true,
    provisioned: 1,
    registries: 3,
    what: "(c) + one provisioned instance, refresher call economy, three registries (domains configured)",
  },
];

export interface FleetFigures {
  upstreamCallsPerHour: number;
  brokerInvocationsPerClusterHour: number;
  coldStartsPerHour: number;
  peakInstances: number;
  instanceSecondsPerClusterHour: number;
  p99Ms: number;
}

export interface FleetConfigResult extends FleetFigures {
  config: FleetConfig;
  throttledPerHour: number;
  failedPerHour: number;
  byApi: Record<string, number>;
  /** Median model duration of a request that started an instance. */
  coldRequestMedianMs: number;
  warmRequestMedianMs: number;
  realSeconds: number;
}

export interface FleetResult {
  options: FleetOptions;
  /** Which program served the custom runtime. */
  customArtefact: string;
  configs: FleetConfigResult[];
  /** Configurations not measured because what they need is not in the product yet. */
  pending: { key: string; reason: string }[];
}

/** Clusters that call during a light warm-up (see `runConfig`). */
const warmupClusters = 10;

/** Whether the broker's configuration has `sharedCache` (issue 14) yet. */
export function sharedCacheSupported(): boolean {
  const probe = {
    audience: "a",
    clusters: [{ name: "c", issuer: "https://i.example", jwks: { keys: [{ kty: "EC" }] }, subjects: ["s"] }],
    sharedCache: { url: "redis://127.0.0.1:6379" },
  };
  return brokerConfigSchema.safeParse(probe).success;
}

const countUpstream = (emulator: Emulator, from: number) => {
  const counts: Record<string, number> = {};
  for (const entry of emulator.log.entries.slice(from))
    if (entry.api.startsWith("sts:") || entry.api.startsWith("cr:")) counts[entry.api] = (counts[entry.api] ?? 0) + 1;
  return counts;
};

interface Tracked {
  at: number;
  startedReal?: number;
  done: boolean;
  settled: Promise<void>;
}

/** Replays one configuration's schedule through a fresh function; returns its figures over the measured window. */
async function runConfig(
  config: FleetConfig,
  setup: { emulator: Emulator; fleet: readonly FleetCluster[]; spec: FunctionSpec; options: FleetOptions },
): Promise<FleetConfigResult> {
  const { emulator, fleet, options } = setup;
  const started = performance.now();
  const fn: FcFunction = createFcFunction(setup.spec, {
    clock: emulator.clock,
    roleCredentials: (role, session) => emulator.assumeRoleForService(role, "fc.aliyuncs.com", session, 36 * 3600),
  });
  const intervalMs = options.intervalMinutes * 60_000;
  const rule = { thresholdMs: 15 * 60_000, intervalMs };
  const random = seededRandom(options.seed ?? 13);
  // Every configuration starts at the real time its fleet's tokens were signed near.
  emulator.clock.set(Date.now());
  const start = emulator.clock.now();
  const warmupMinutes = carriesState(config, options) ? options.warmupMinutes : 0;
  const lightWarmup = !config.economy && options.idleSeconds < options.intervalMinutes * 60;
  const measuredMinutes = config.economy ? options.economyMeasuredMinutes : options.measuredMinutes;
  const measureFrom = start + warmupMinutes * 60_000;
  const cycles = Math.ceil((warmupMinutes + measuredMinutes) / options.intervalMinutes);
  const expiry = new Map<number, number>();
  const limit = pLimit(options.parallel);
  const inflight = new Set<Tracked>();
  const measured = { invocations: 0, throttled: 0, failed: 0, latencies: [] as number[], cold: [] as number[], warm: [] as number[], peak: 0 };
  let baseline: { log: number; coldStarts: number; instanceSeconds: number } | undefined;

  // The shipped refresher (economy) asks for credentials that outlast its next run's window; each
  // cluster after its own spread delay, derived as job/spread.ts derives it (from a stable identity).
  const registries = fleetRegistries(config.registries ?? 2);
  const body = Buffer.from(JSON.stringify(config.economy ? { registries, minValiditySeconds: options.minValiditySeconds } : { registries }));
  const delays = config.economy ? fleet.map((cluster) => spreadDelayMs(cluster.name, options.spreadWindowSeconds * 1000)) : undefined;
  const dispatch = (arrival: Arrival) => {
    const cluster = fleet[arrival.cluster]!;
    const request = {
      method: "POST",
      url: "/v1/credentials",
      headers: { authorization: `Bearer ${cluster.token}`, "content-type": "application/json", "user-agent": "acr-credential-refresher" },
      body,
      sourceIp: "10.0.0.1",
    };
    const tracked: Tracked = { at: arrival.at, done: false, settled: Promise.resolve() };
    tracked.settled = limit(async () => {
      tracked.startedReal = performance.now();
      const outcome = await fn.invoke(request, arrival.at);
      const inWindow = arrival.at >= measureFrom;
      if (inWindow) measured.peak = Math.max(measured.peak, fn.liveInstances());
      if (outcome.throttled) {
        if (inWindow) measured.throttled += 1;
        return;
      }
      if (inWindow) {
        measured.invocations += 1;
        measured.latencies.push(outcome.endAt - arrival.at);
        (outcome.cold ? measured.cold : measured.warm).push(outcome.endAt - arrival.at);
      }
      if (outcome.response.status !== 200) {
        if (inWindow) measured.failed += 1;
        return;
      }
      const body = JSON.parse(outcome.response.body.toString("utf8")) as { credentials: { expiresAt: string }[] };
      expiry.set(arrival.cluster, Math.min(...body.credentials.map((c) => Date.parse(c.expiresAt))));
    }).finally(() => {
      tracked.done = true;
      inflight.delete(tracked);
    });
    inflight.add(tracked);
  };

  /** Waits until no running request could still end before `at` (each is done, or has run past it). */
  const untilDecidable = async (at: number) => {
    for (;;) {
      const now = performance.now();
      const open = [...inflight].filter((r) => !r.done && (r.startedReal === undefined || r.at + (now - r.startedReal) <= at));
      if (open.length === 0) return;
      const soonest = Math.min(...open.map((r) => (r.startedReal === undefined ? 50 : at - r.at - (now - r.startedReal) + 1)));
      await Promise.race([...open.map((r) => r.settled), sleep(Math.max(1, Math.min(50, soonest)))]);
    }
  };

  try {
    for (let cycle = 0; cycle < cycles; cycle += 1) {
      const cycleStart = start + cycle * intervalMs;
      const all = cycleArrivals(fleet.length, cycleStart, options.burstSeconds * 1000, random, delays);
      // Without the economy, and with instances reclaimed between cycles, only the shared cache
      // carries over: a few clusters keep it moving through the warm-up as the whole fleet would.
      const arrivals = cycleStart < measureFrom && lightWarmup ? all.filter((a) => a.cluster < warmupClusters) : all;
      // Nothing runs between bursts: the model (and the emulator's STS and CR) jump to the next one.
      await Promise.all([...inflight].map((r) => r.settled));
      emulator.clock.set(cycleStart);
      if (cycleStart >= measureFrom && baseline === undefined) {
        await fn.sweep(cycleStart);
        const counters = fn.counters(cycleStart);
        baseline = { log: emulator.log.entries.length, coldStarts: counters.coldStarts, instanceSeconds: counters.instanceSeconds };
      }
      for (const arrival of arrivals) {
        if (config.economy && !economyWantsCall(expiry.get(arrival.cluster), arrival.at, rule)) continue;
        await untilDecidable(arrival.at);
        dispatch(arrival);
      }
    }
    await Promise.all([...inflight].map((r) => r.settled));
    const end = start + cycles * intervalMs;
    await fn.sweep(end);
    const counters = fn.counters(end);
    const base = baseline ?? { log: 0, coldStarts: 0, instanceSeconds: 0 };
    const byApi = countUpstream(emulator, base.log);
    const perHour = 60 / measuredMinutes;
    const clusters = fleet.length;
    return {
      config,
      upstreamCallsPerHour: Object.values(byApi).reduce((sum, n) => sum + n, 0) * perHour,
      brokerInvocationsPerClusterHour: (measured.invocations * perHour) / clusters,
      coldStartsPerHour: (counters.coldStarts - base.coldStarts) * perHour,
      peakInstances: measured.peak,
      instanceSecondsPerClusterHour: ((counters.instanceSeconds - base.instanceSeconds) * perHour) / clusters,
      p99Ms: percentile(measured.latencies, 0.99),
      throttledPerHour: measured.throttled * perHour,
      failedPerHour: measured.failed * perHour,
      byApi,
      coldRequestMedianMs: percentile(measured.cold, 0.5),
      warmRequestMedianMs: percentile(measured.warm, 0.5),
      realSeconds: (performance.now() - started) / 1000,
    };
  } finally {
    await Promise.all([...inflight].map((r) => r.settled));
    await fn.close();
  }
}

export async function measureFleet(options: FleetOptions): Promise<FleetResult> {
  const log = options.log ?? (() => {});
  const bundleDir = options.bundleDir ?? repoPath("dist/broker");
  if (!existsSync(join(bundleDir, "index.js"))) throw new Error(`${bundleDir}/index.js is missing; run \`npm run build\` (or \`node build.mjs broker\`) first`);
  const shared = sharedCacheSupported();
  // In the order asked for, so a short run can measure what matters most first.
  const configs = options.only === undefined ? fleetConfigs : options.only.flatMap((key) => fleetConfigs.filter((c) => c.key === key));
  const pending = shared
    ? []
    : configs.filter((c) => c.sharedCache).map((c) => ({ key: c.key, reason: "the broker has no sharedCache configuration yet (issue 14)" }));
  const runnable = configs.filter((c) => shared || !c.sharedCache);
  const server = runnable.some((c) => c.runtime === "custom") ? customServer(repoRoot, options.serverDir) : undefined;
  const emulator = await startEmulator({ world: benchWorld() });
  const work = await mkdtemp(join(tmpdir(), "acr-bench-fleet-"));
  const redis = shared && runnable.some((c) => c.sharedCache) ? await startRedisServer() : undefined;
  try {
    // Tokens outlive the simulated hours (model time runs ahead of the real time they were signed at).
    const lifetimeSeconds = (options.warmupMinutes + Math.max(options.measuredMinutes, options.economyMeasuredMinutes)) * 60 + 3600;
    const fleet = await createFleet(options.clusters, { alg: "ES256", prefix: "fleet", lifetimeSeconds });
    const results: FleetConfigResult[] = [];
    for (const config of runnable) {
      const configFile = join(work, `${config.key}.json`);
      const extra = config.sharedCache && redis ? { sharedCache: { url: redis.url, keyPrefix: `${config.key}:` } } : {};
      await writeFile(configFile, JSON.stringify(fleetBrokerConfig(fleet, emulator.endpoints, extra, fleetRegistries(config.registries ?? 2))));
      const environmentVariables: Record<string, string> = { BROKER_CONFIG_FILE: configFile };
      if (config.sharedCache) environmentVariables.BROKER_CACHE_KEY = `bench:${randomBytes(32).toString("base64")}`;
      const common = { role: executionRole, environmentVariables, idleSeconds: options.idleSeconds, maxInstances: options.maxInstances, timeout: 10 };
      const spec: FunctionSpec =
        config.runtime === "builtin"
          ? { functionName: "acr-credential-broker", runtime: "nodejs20", codeDir: bundleDir, ...common }
          : {
              functionName: "acr-credential-broker-server",
              runtime: "custom.debian12",
              codeDir: server!.codeDir,
              customRuntimeConfig: server!.customRuntimeConfig,
              instanceConcurrency: options.customConcurrency,
              minInstances: config.provisioned ?? 0,
              ...common,
            };
      const result = await runConfig(config, { emulator, fleet, spec, options });
      log(
        `fleet ${config.key}: ${result.upstreamCallsPerHour} upstream calls/h ${JSON.stringify(result.byApi)}, ${result.brokerInvocationsPerClusterHour.toFixed(2)} invocations/cluster-h, ${result.coldStartsPerHour} cold starts/h, peak ${result.peakInstances} instances, ${result.instanceSecondsPerClusterHour.toFixed(3)} instance-s/cluster-h, p99 ${result.p99Ms.toFixed(0)} ms, ${result.throttledPerHour} throttled/h; cold request median ${result.coldRequestMedianMs.toFixed(0)} ms, warm ${result.warmRequestMedianMs.toFixed(0)} ms (${result.realSeconds.toFixed(0)} s)`,
      );
      results.push(result);
      await options.onProgress?.({
        options: { ...options, log: undefined, onProgress: undefined },
        customArtefact: server?.artefact ?? "none",
        configs: [...results],
        pending,
      });
    }
    return { options: { ...options, log: undefined, onProgress: undefined }, customArtefact: server?.artefact ?? "none", configs: results, pending };
  } finally {
    await redis?.close();
    await emulator.close();
    await rm(work, { recursive: true, force: true });
  }
}
