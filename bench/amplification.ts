/**
 * Upstream amplification: how many STS and CR calls the emulator records while a fleet of clusters,
 * each with its own issuer and key, fetches the same registries within one token lifetime. Once with
 * the broker as built, once with its caches disabled — every request then goes upstream by itself,
 * which is what a per-cluster or per-namespace helper holding its own keys costs.
 */
import pLimit from "p-limit";
import { pino } from "pino";
import { startEmulator, type Emulator } from "../emulator/index.ts";
import { parseConfig } from "../functions/broker/config.ts";
import { ExpiringCache } from "../functions/broker/cache/local.ts";
import type { CacheResult, Expiring } from "../functions/broker/cache/policy.ts";
import { createHandler } from "../functions/broker/handler.ts";
import { serveBroker } from "../functions/broker/node-http.ts";
import { createRuntime, type BrokerRuntime } from "../functions/broker/runtime.ts";
import { identityFromKeys } from "../shared/alibaba/identity.ts";
import { benchWorld, brokerKey, createFleet, credentialsBody, fleetBrokerConfig, registries, type FleetCluster } from "./fleet.ts";

export interface AmplificationOptions {
  clusters: number;
  concurrency: number;
  log?: (line: string) => void;
}

export const amplificationDefaults: AmplificationOptions = { clusters: 1000, concurrency: 50 };

export interface AmplificationResult {
  clusters: number;
  upstreamCalls: number;
  naiveUpstreamCalls: number;
  /** Calls per API, cached and naive, for the documentation. */
  byApi: { cached: Record<string, number>; naive: Record<string, number> };
}

/** A cache that never keeps anything: every `get` loads. Only the benchmark's "no cache" baseline uses it. */
export class DisabledCache<V extends Expiring> extends ExpiringCache<V> {
  override async get(_key: string, load: () => Promise<V>): Promise<CacheResult<V>> {
    return { value: await load(), source: "upstream" };
  }
}

function withCachesDisabled(runtime: BrokerRuntime): BrokerRuntime {
  const off = { max: 1, clock: runtime.clock, refreshBeforeMs: 0 };
  return { ...runtime, issue: { ...runtime.issue, sessions: new DisabledCache(off), credentials: new DisabledCache(off), domains: new DisabledCache(off) } };
}

function callsByApi(emulator: Emulator): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const entry of emulator.log.entries) if (entry.api.startsWith("sts:") || entry.api.startsWith("cr:")) counts[entry.api] = (counts[entry.api] ?? 0) + 1;
  return counts;
}

async function fleetFetches(runtime: BrokerRuntime, fleet: readonly FleetCluster[], concurrency: number): Promise<void> {
  const server = await serveBroker(
    createHandler(() => runtime),
    { port: 0 },
  );
  try {
    const limit = pLimit(concurrency);
    await Promise.all(
      fleet.map((cluster) =>
        limit(async () => {
          const response = await fetch(`${server.url}/v1/credentials`, {
            method: "POST",
            headers: { authorization: `Bearer ${cluster.token}`, "content-type": "application/json" },
            body: credentialsBody,
          });
          const body = (await response.json()) as { credentials?: unknown[] };
          if (response.status !== 200 || body.credentials?.length !== registries.length)
            throw new Error(`cluster ${cluster.name}: ${response.status} ${JSON.stringify(body).slice(0, 300)}`);
        }),
      ),
    );
  } finally {
    await server.close();
  }
}

export async function measureAmplification(options: AmplificationOptions): Promise<AmplificationResult> {
  const log = options.log ?? (() => {});
  const emulator = await startEmulator({ world: benchWorld() });
  try {
    // ES256: a thousand RSA keys would take minutes to generate; distinct issuers and keys is what matters here.
    const fleet = await createFleet(options.clusters, { alg: "ES256", prefix: "amp" });
    const config = parseConfig(fleetBrokerConfig(fleet, emulator.endpoints), "bench");
    const runtime = () =>
      createRuntime({ loaded: { config, baseDir: ".", source: "bench" }, log: pino({ level: "silent" }), baseIdentity: identityFromKeys(brokerKey) });

    await fleetFetches(runtime(), fleet, options.concurrency);
    const cached = callsByApi(emulator);
    log(`amplification: ${fleet.length} clusters, cache on: ${JSON.stringify(cached)}`);

    emulator.log.clear();
    await fleetFetches(withCachesDisabled(runtime()), fleet, options.concurrency);
    const naive = callsByApi(emulator);
    log(`amplification: ${fleet.length} clusters, caches disabled: ${JSON.stringify(naive)}`);

    const total = (counts: Record<string, number>) => Object.values(counts).reduce((sum, n) => sum + n, 0);
    return { clusters: fleet.length, upstreamCalls: total(cached), naiveUpstreamCalls: total(naive), byApi: { cached, naive } };
  } finally {
    await emulator.close();
  }
}
