/**
 * The broker's warm path against a bare node:http server. Each server runs alone in a child
 * process (`acr-credential broker` itself, and `bench/servers/bare-http.ts`); autocannon runs here.
 * Rounds alternate broker and bare with the same connections and duration; the figure is the median
 * of the per-round ratios, so a noisy neighbour hurts both sides of one ratio alike.
 */
import { mkdtemp, open, rm, writeFile, type FileHandle } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import autocannon, { type Result } from "autocannon";
import { startEmulator } from "../emulator/index.ts";
import { benchWorld, brokerKey, createFleet, credentialsBody, fleetBrokerConfig } from "./fleet.ts";
import { repoPath, startServer, type RunningServer } from "./processes.ts";
import { median } from "./results.ts";

export interface BrokerThroughputOptions {
  clusters: number;
  connections: number;
  durationSeconds: number;
  rounds: number;
  /** Warm-up load on each server before the first round (JIT, caches), in seconds. */
  warmupSeconds: number;
  log?: (line: string) => void;
}

export const brokerThroughputDefaults: BrokerThroughputOptions = { clusters: 100, connections: 20, durationSeconds: 5, rounds: 5, warmupSeconds: 3 };

export interface RoundResult {
  brokerRps: number;
  bareRps: number;
  ratio: number;
  brokerP99Ms: number;
  bareP99Ms: number;
}

export interface BrokerThroughputResult {
  throughputRatioVsBareHttp: number;
  p99Ms: number;
  rounds: RoundResult[];
  responseBytes: number;
}

function checked(result: Result, what: string): Result {
  if (result.errors > 0 || result.timeouts > 0 || result.non2xx > 0 || result["2xx"] === 0) {
    throw new Error(
      `${what}: ${result["2xx"]} answers 2xx, ${result.non2xx} not, ${result.errors} errors, ${result.timeouts} timeouts; the benchmark only counts successful requests`,
    );
  }
  return result;
}

export async function measureBrokerThroughput(options: BrokerThroughputOptions): Promise<BrokerThroughputResult> {
  const log = options.log ?? (() => {});
  const work = await mkdtemp(join(tmpdir(), "acr-bench-broker-"));
  const emulator = await startEmulator({ world: benchWorld() });
  const servers: RunningServer[] = [];
  const files: FileHandle[] = [];
  try {
    log(`broker: ${options.clusters} clusters with RS256 keys`);
    const fleet = await createFleet(options.clusters, { alg: "RS256", prefix: "warm" });
    const configFile = join(work, "broker.json");
    await writeFile(configFile, JSON.stringify(fleetBrokerConfig(fleet, emulator.endpoints)));

    // The request log goes to a file, as to a log collector: every line is still written, but the
    // process running autocannon does not also have to read them (the bare server writes none).
    const logFile = await open(join(work, "broker.log"), "w");
    files.push(logFile);
    const broker = await startServer(process.execPath, [repoPath("bin/acr-credential.mjs"), "broker", "--config", configFile, "--port", "0"], {
      env: {
        PATH: process.env.PATH,
        HOME: work,
        ALIBABA_CLOUD_ECS_METADATA_DISABLED: "true",
        ALIBABA_CLOUD_ACCESS_KEY_ID: brokerKey.accessKeyId,
        ALIBABA_CLOUD_ACCESS_KEY_SECRET: brokerKey.accessKeySecret,
      },
      ready: /listening on (http:\/\/\S+)/,
      stdoutFd: logFile.fd,
    });
    servers.push(broker);

    // Every cluster once, so the load below is the warm path: credentials cached, each token verified once.
    let responseBytes = 0;
    for (const cluster of fleet) {
      const response = await fetch(`${broker.url}/v1/credentials`, {
        method: "POST",
        headers: { authorization: `Bearer ${cluster.token}`, "content-type": "application/json" },
        body: credentialsBody,
      });
      const text = await response.text();
      if (response.status !== 200) throw new Error(`the broker refused cluster ${cluster.name} while warming up: ${response.status} ${text.slice(0, 300)}`);
      responseBytes = Math.max(responseBytes, Buffer.byteLength(text));
    }
    const upstreamCalls = emulator.log.count({ api: "sts:" }) + emulator.log.count({ api: "cr:" });
    log(`broker: warmed up with ${fleet.length} requests (${upstreamCalls} upstream calls), answers of ${responseBytes} bytes`);

    const bare = await startServer(process.execPath, ["--import", "tsx", repoPath("bench/servers/bare-http.ts"), String(responseBytes)], {
      ready: /listening on (http:\/\/\S+)/,
    });
    servers.push(bare);

    const requests = fleet.map((cluster) => ({
      method: "POST",
      path: "/v1/credentials",
      headers: { authorization: `Bearer ${cluster.token}`, "content-type": "application/json" },
      body: credentialsBody,
    }));
    const load = (url: string, seconds: number) => autocannon({ url, connections: options.connections, duration: seconds, requests });

    if (options.warmupSeconds > 0) {
      checked(await load(broker.url, options.warmupSeconds), "broker warm-up");
      checked(await load(bare.url, options.warmupSeconds), "bare warm-up");
    }

    const rounds: RoundResult[] = [];
    for (let round = 1; round <= options.rounds; round++) {
      // Alternate which server goes first, so a drift in the machine's load does not favour one side.
      const brokerFirst = round % 2 === 1;
      const first = checked(await load(brokerFirst ? broker.url : bare.url, options.durationSeconds), brokerFirst ? "broker" : "bare");
      const second = checked(await load(brokerFirst ? bare.url : broker.url, options.durationSeconds), brokerFirst ? "bare" : "broker");
      const [b, n] = brokerFirst ? [first, second] : [second, first];
      const result = {
        brokerRps: b.requests.mean,
        bareRps: n.requests.mean,
        ratio: b.requests.mean / n.requests.mean,
        brokerP99Ms: b.latency.p99,
        bareP99Ms: n.latency.p99,
      };
      rounds.push(result);
      log(
        `broker: round ${round}: broker ${result.brokerRps.toFixed(0)} req/s (p99 ${result.brokerP99Ms} ms), bare ${result.bareRps.toFixed(0)} req/s (p99 ${result.bareP99Ms} ms), ratio ${result.ratio.toFixed(3)}`,
      );
    }
    const extraUpstream = emulator.log.count({ api: "sts:" }) + emulator.log.count({ api: "cr:" }) - upstreamCalls;
    if (extraUpstream !== 0) throw new Error(`the broker made ${extraUpstream} upstream calls under load; the warm path should make none`);
    return { throughputRatioVsBareHttp: median(rounds.map((r) => r.ratio)), p99Ms: median(rounds.map((r) => r.brokerP99Ms)), rounds, responseBytes };
  } finally {
    for (const server of servers) await server.stop();
    for (const file of files) await file.close();
    await emulator.close();
    await rm(work, { recursive: true, force: true });
  }
}
