/**
 * The refresher on a real API server: one cold and one warm run over a large set of namespaces
 * (peak RSS, writes and API requests), then its cold run against a kubectl loop on the same server
 * (alternating, fresh namespaces each round). The refresher is the bundled job exactly as
 * the image runs it (`node refresher.mjs --once` with the ENV lines of job/Dockerfile), as its
 * own ServiceAccount under the shipped RBAC, asking the real broker (served here) for credentials.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { KubeConfig } from "@kubernetes/client-node";
import { pino } from "pino";
import { createClock, startEmulator } from "../emulator/index.ts";
import { parseConfig } from "../functions/broker/config.ts";
import { createHandler } from "../functions/broker/handler.ts";
import { serveBroker } from "../functions/broker/node-http.ts";
import { createRuntime } from "../functions/broker/runtime.ts";
import { brokerClient } from "../job/broker-client.ts";
import { kubernetesCluster } from "../job/cluster.ts";
import { parseRefresherConfig } from "../job/config.ts";
import { refreshOnce } from "../job/run.ts";
import { createLogger } from "../shared/log.ts";
import { identityFromKeys } from "../shared/alibaba/identity.ts";
import { startControlPlane, type ControlPlaneEndpoints } from "../test/kube/control-plane.ts";
import { audience, benchWorld, brokerKey, registries } from "./fleet.ts";
import {
  changedVersions,
  createNamespaces,
  installRefresherRbac,
  kubeTools,
  resourceRequestCount,
  resourceVersions,
  serviceAccountToken,
  setConfigMap,
  tokenKubeconfig,
} from "./kube.ts";
import { repoPath, runTimed, type TimedRun } from "./processes.ts";
import { median } from "./results.ts";

export interface RefresherBenchOptions {
  /** Namespaces per side and round of the kubectl comparison. */
  baselineNamespaces: number;
  rounds: number;
  /** Namespaces of the large cold + warm run (peak RSS, warm writes and requests). */
  largeNamespaces: number;
  /** An existing control plane (the test suite's); by default one is started and stopped here. */
  plane?: ControlPlaneEndpoints;
  /** Prepended to every namespace the benchmark creates, to keep clear of others on a shared API server. */
  namespacePrefix?: string;
  /** Simulated hours of the broker-call count (`refresher.brokerCallsPerHour`). */
  brokerCallHours?: number;
  log?: (line: string) => void;
}

export const refresherDefaults: RefresherBenchOptions = { baselineNamespaces: 200, rounds: 3, largeNamespaces: 2000, brokerCallHours: 6 };

export interface RefresherRound {
  kubectlMs: number;
  refresherMs: number;
  speedup: number;
}

export interface RefresherBenchResult {
  coldSpeedupVsKubectl: number;
  warmWrites: number;
  warmRequestsPerNamespace: number;
  peakRssMb: number;
  rounds: RefresherRound[];
  large: { namespaces: number; coldMs: number; warmMs: number; coldPeakRssMb: number; warmPeakRssMb: number; warmRequests: number; changed: string[] };
  brokerCalls: BrokerCallsResult;
}

export interface BrokerCallsOptions {
  plane: ControlPlaneEndpoints;
  /** Simulated hours; each is twelve runs of the `*\/5` schedule. */
  hours: number;
  namespacePrefix?: string;
  log?: (line: string) => void;
}

export interface BrokerCallsResult {
  hours: number;
  runs: number;
  /** Requests that reached the broker's HTTP endpoint, and how many of them asked with `force` (none: renewals ask with `minValiditySeconds`). */
  calls: number;
  forced: number;
  callsPerHour: number;
  /** Lifetime of the credentials the broker handed out, as the emulator issued them. */
  credentialLifetimeMinutes: number;
  spreadDelayMs: number;
}

/**
 * Broker calls per hour of one cluster's CronJob: the refresher (in-process, the code the bundle
 * runs) on the real API server, every five minutes of a simulated clock shared by the emulator and
 * the broker, so hours pass in seconds. Credentials live one hour (expireDuration 3600); the
 * refresher keeps its default threshold (15m), interval (5m) and spread window (2m), whose delay
 * moves the simulated clock instead of sleeping. Calls are counted where they arrive: at the broker.
 */
export async function measureBrokerCalls(options: BrokerCallsOptions): Promise<BrokerCallsResult> {
  const log = options.log ?? (() => {});
  const { plane } = options;
  const intervalMs = 5 * 60_000;
  const start = Math.ceil(Date.now() / intervalMs) * intervalMs;
  const clock = createClock({ start, frozen: true });
  const work = await mkdtemp(join(tmpdir(), "acr-bench-broker-calls-"));
  const closers: Array<() => Promise<void>> = [async () => rm(work, { recursive: true, force: true })];
  try {
    const emulator = await startEmulator({ world: benchWorld(), clock });
    closers.push(() => emulator.close());
    const registry = { ...registries[0]!, expireDuration: 3600 };
    const brokerConfig = parseConfig(
      {
        audience,
        alibabaCloud: { stsEndpoint: emulator.endpoints.sts, crEndpoint: emulator.endpoints.cr, protocol: "http" },
        clusters: [
          {
            name: "bench-cluster",
            issuer: plane.issuer,
            caFile: plane.caFile,
            subjects: ["system:serviceaccount:kube-system:aliyun-acr-credential-helper"],
            registries: [registry],
          },
        ],
      },
      "bench",
    );
    const runtime = createRuntime({
      loaded: { config: brokerConfig, baseDir: work, source: "bench" },
      log: pino({ level: "silent" }),
      baseIdentity: identityFromKeys(brokerKey),
      clock,
    });
    const handler = createHandler(() => runtime);
    let calls = 0;
    const broker = await serveBroker(
      async (event, context) => {
        calls += 1;
        return handler(event, context);
      },
      { port: 0 },
    );
    closers.push(() => broker.close());

    await installRefresherRbac(plane);
    // The broker checks the token's expiry on the simulated clock: it must outlive the simulated hours.
    const tokenFile = join(work, "broker-token");
    await writeFile(tokenFile, await serviceAccountToken(plane, "kube-system", "aliyun-acr-credential-helper", [audience], (options.hours + 1) * 3600));
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromString(tokenKubeconfig(plane, await serviceAccountToken(plane, "kube-system", "aliyun-acr-credential-helper", [])));
    const namespace = `${options.namespacePrefix ?? ""}calls-0000`;
    await createNamespaces(plane, [namespace]);
    await setConfigMap(plane, "kube-system", "acr-credential-status", undefined);
    await setConfigMap(plane, "kube-system", "acr-configuration", {
      "broker-url": broker.url,
      "watch-namespace": namespace,
      "service-account": "default",
      "acr-registry-info": `- instanceId: ${registry.instanceId}\n  regionId: ${registry.regionId}\n  assumeRoleARN: "${registry.assumeRoleArn}"\n  expireDuration: 3600\n`,
    });

    const cluster = kubernetesCluster(kubeConfig);
    const logger = createLogger("refresher", { level: "silent" });
    let forced = 0;
    const runs = options.hours * 12;
    let lifetimeMs = 0;
    let spreadDelayMs = 0;
    for (let run = 0; run < runs; run++) {
      clock.set(start + run * intervalMs);
      const before = calls;
      const report = await refreshOnce({
        cluster,
        logger,
        now: () => new Date(clock.now()),
        sleep: async (milliseconds) => clock.advance(milliseconds),
        broker: (url) => {
          const client = brokerClient({ url, tokenFile, attempts: 2, sleep: async () => {} });
          return {
            fetchCredentials: (query) => {
              if (query.force === true) forced += 1;
              return client.fetchCredentials(query);
            },
          };
        },
      });
      if (report.exitCode !== 0)
        throw new Error(`broker calls: run ${run} ended with ${report.result}: ${JSON.stringify(report.registries.map((r) => r.error))}`);
      if (calls > before) {
        spreadDelayMs = report.spreadDelayMs;
        lifetimeMs = Math.max(lifetimeMs, Date.parse(report.registries[0]?.expiresAt ?? "") - clock.now());
        log(
          `refresher: broker calls: minute ${run * 5}: ${calls - before} call(s), ${report.need.reasons.map((r) => r.code).join(", ")}; credential until minute ${Math.round((Date.parse(report.registries[0]?.expiresAt ?? "") - start) / 60_000)}`,
        );
      }
    }
    const result: BrokerCallsResult = {
      hours: options.hours,
      runs,
      calls,
      forced,
      callsPerHour: calls / options.hours,
      credentialLifetimeMinutes: Math.round(lifetimeMs / 60_000),
      spreadDelayMs,
    };
    log(
      `refresher: broker calls: ${calls} in ${options.hours} simulated hours (${runs} runs, ${result.forced} forced) = ${result.callsPerHour.toFixed(2)}/h; one-hour credentials (${result.credentialLifetimeMinutes} min on receipt), spread delay ${(spreadDelayMs / 1000).toFixed(0)} s`,
    );
    return result;
  } finally {
    for (const close of closers.reverse()) await close().catch(() => undefined);
  }
}

/** The environment the image gives the refresher, read from job/Dockerfile so the benchmark follows it. */
export function imageEnvironment(dockerfile: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const match of dockerfile.matchAll(/^ENV\s+([A-Z_]+)=(.*)$/gm)) env[match[1]!] = match[2]!.trim().replace(/^"(.*)"$/, "$1");
  if (env.NODE_OPTIONS === undefined) throw new Error("job/Dockerfile sets no NODE_OPTIONS; the benchmark runs the refresher with the image's settings");
  return env;
}

const kubectlLoop = `set -euo pipefail
for ns in "$@"; do
  kubectl create secret docker-registry "$SECRET" --docker-server="$SERVER" --docker-username="$REGISTRY_USER" --docker-password="$REGISTRY_PASSWORD" -n "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl patch serviceaccount default -n "$ns" -p "{\\"imagePullSecrets\\":[{\\"name\\":\\"$SECRET\\"}]}" >/dev/null
done
`;

const numbered = (prefix: string, count: number) => Array.from({ length: count }, (_, i) => `${prefix}-${String(i).padStart(4, "0")}`);
const mib = (kb: number) => kb / 1024;

function succeeded(run: TimedRun, what: string): TimedRun {
  if (run.code !== 0) throw new Error(`${what} exited with ${run.code}: ${run.stderr.slice(-2000)}`);
  return run;
}

export async function measureRefresher(options: RefresherBenchOptions): Promise<RefresherBenchResult> {
  const log = options.log ?? (() => {});
  const prefix = options.namespacePrefix ?? "";
  const names = (stem: string, count: number) => numbered(`${prefix}${stem}`, count);
  const tools = kubeTools(log);
  const work = await mkdtemp(join(tmpdir(), "acr-bench-refresher-"));
  const closers: Array<() => Promise<void>> = [async () => rm(work, { recursive: true, force: true })];
  try {
    let plane = options.plane;
    if (plane === undefined) {
      const started = await startControlPlane({ binaries: tools.binaries });
      closers.push(started.stop);
      plane = started;
      log(`refresher: control plane ready in ${started.startedInMs} ms`);
    }
    const emulator = await startEmulator({ world: benchWorld() });
    closers.push(() => emulator.close());

    const refresherSubject = "system:serviceaccount:kube-system:aliyun-acr-credential-helper";
    const registry = registries[0]!;
    const brokerConfig = parseConfig(
      {
        audience,
        alibabaCloud: { stsEndpoint: emulator.endpoints.sts, crEndpoint: emulator.endpoints.cr, protocol: "http" },
        clusters: [{ name: "bench-cluster", issuer: plane.issuer, caFile: plane.caFile, subjects: [refresherSubject], registries: [registry] }],
      },
      "bench",
    );
    const runtime = createRuntime({
      loaded: { config: brokerConfig, baseDir: work, source: "bench" },
      log: pino({ level: "silent" }),
      baseIdentity: identityFromKeys(brokerKey),
    });
    const broker = await serveBroker(
      createHandler(() => runtime),
      { port: 0 },
    );
    closers.push(() => broker.close());

    await installRefresherRbac(plane);
    const kubeconfig = join(work, "refresher.kubeconfig");
    const tokenFile = join(work, "broker-token");
    const adminKubeconfig = join(work, "admin.kubeconfig");
    await writeFile(kubeconfig, tokenKubeconfig(plane, await serviceAccountToken(plane, "kube-system", "aliyun-acr-credential-helper", [])));
    await writeFile(tokenFile, await serviceAccountToken(plane, "kube-system", "aliyun-acr-credential-helper", [audience]));
    await writeFile(adminKubeconfig, plane.kubeconfig, { mode: 0o600 });

    const bundle = join(work, "refresher.mjs");
    await promisify(execFile)(process.execPath, [repoPath("job/build.mjs"), bundle]);

    const registryInfo = `- instanceId: ${registry.instanceId}\n  regionId: ${registry.regionId}\n  assumeRoleARN: "${registry.assumeRoleArn}"\n`;
    const refresherConfig = (watch: string) => ({
      "broker-url": broker.url,
      "watch-namespace": watch,
      "service-account": "default",
      "acr-registry-info": registryInfo,
    });
    const secretName = parseRefresherConfig(refresherConfig("x")).config.registries[0]!.secretName;

    // The kubectl loop writes the same credential the refresher gets, fetched once beforehand.
    const token = await readFile(tokenFile, "utf8");
    const credentialResponse = await fetch(`${broker.url}/v1/credentials`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ registries: [registry] }),
    });
    const credentials = (await credentialResponse.json()) as { credentials?: Array<{ username: string; password: string; domains: string[] }> };
    const credential = credentials.credentials?.[0];
    if (credentialResponse.status !== 200 || credential === undefined)
      throw new Error(`the broker refused the refresher's token: ${credentialResponse.status} ${JSON.stringify(credentials).slice(0, 300)}`);

    const loopScript = join(work, "kubectl-loop.sh");
    await writeFile(loopScript, kubectlLoop);
    const kubectlEnv = {
      PATH: `${dirname(tools.kubectl)}:${process.env.PATH ?? ""}`,
      HOME: work,
      KUBECONFIG: adminKubeconfig,
      SECRET: secretName,
      SERVER: credential.domains[0] ?? "registry.example",
      REGISTRY_USER: credential.username,
      REGISTRY_PASSWORD: credential.password,
    };
    const refresherArgs = [bundle, "--once", "--no-spread", "--kubeconfig", kubeconfig, "--token-file", tokenFile];
    const imageEnv = imageEnvironment(await readFile(repoPath("job/Dockerfile"), "utf8"));
    const refresherEnv = { PATH: process.env.PATH, HOME: work, ...imageEnv };
    log(`refresher: the bundled job with the image's NODE_OPTIONS=${imageEnv.NODE_OPTIONS}`);
    const runRefresher = async (watch: string, peakRss: boolean) => {
      await setConfigMap(plane, "kube-system", "acr-configuration", refresherConfig(watch));
      return succeeded(await runTimed(process.execPath, refresherArgs, { env: refresherEnv, peakRss }), "the refresher");
    };
    const freshStart = () => setConfigMap(plane, "kube-system", "acr-credential-status", undefined);

    // The large runs first, on an API server holding just those namespaces (and the system ones):
    // every refresher run lists all namespaces and ServiceAccounts, so the rounds below also pay
    // for listing these 2,000, as a refresher serving part of a big cluster would.
    const large = names("big", options.largeNamespaces);
    await createNamespaces(plane, large);
    await freshStart();
    const inLarge = (ns: string) => ns.startsWith(`${prefix}big-`);
    const cold = await runRefresher(`${prefix}big-*`, true);
    const before = await resourceVersions(plane, inLarge);
    const requestsBefore = await resourceRequestCount(plane);
    const warm = await runRefresher(`${prefix}big-*`, true);
    const warmRequests = (await resourceRequestCount(plane)) - requestsBefore;
    const after = await resourceVersions(plane, inLarge);
    const changed = changedVersions(before, after);
    if ([...after.keys()].filter((key) => key.startsWith("Secret/")).length !== options.largeNamespaces)
      throw new Error(`the cold run over ${options.largeNamespaces} namespaces did not write a Secret in each`);
    const coldPeak = mib(cold.peakRssKb!);
    const warmPeak = mib(warm.peakRssKb!);
    log(
      `refresher: ${options.largeNamespaces} namespaces: cold ${(cold.wallMs / 1000).toFixed(2)} s (peak RSS ${coldPeak.toFixed(0)} MiB), warm ${(warm.wallMs / 1000).toFixed(2)} s (peak RSS ${warmPeak.toFixed(0)} MiB), ${warmRequests} API requests, ${changed.length} objects changed`,
    );

    // kubectl's first run fills its discovery cache; that is not part of any round.
    await createNamespaces(plane, [`${prefix}kubectl-warmup`]);
    succeeded(await runTimed("bash", [loopScript, `${prefix}kubectl-warmup`], { env: kubectlEnv }), "the kubectl warm-up");

    const rounds: RefresherRound[] = [];
    for (let round = 1; round <= options.rounds; round++) {
      const kubectlNamespaces = names(`k${round}`, options.baselineNamespaces);
      const refresherNamespaces = names(`r${round}`, options.baselineNamespaces);
      await createNamespaces(plane, [...kubectlNamespaces, ...refresherNamespaces]);
      await freshStart();
      const runKubectl = async () => succeeded(await runTimed("bash", [loopScript, ...kubectlNamespaces], { env: kubectlEnv }), "the kubectl loop");
      let kubectl: TimedRun;
      let refresher: TimedRun;
      if (round % 2 === 1) {
        kubectl = await runKubectl();
        refresher = await runRefresher(`${prefix}r${round}-*`, false);
      } else {
        refresher = await runRefresher(`${prefix}r${round}-*`, false);
        kubectl = await runKubectl();
      }
      const written = await resourceVersions(plane, (ns) => ns.startsWith(`${prefix}r${round}-`) || ns.startsWith(`${prefix}k${round}-`));
      const secrets = [...written.keys()].filter((key) => key.startsWith("Secret/"));
      if (secrets.length !== 2 * options.baselineNamespaces)
        throw new Error(`round ${round}: expected ${2 * options.baselineNamespaces} Secrets, found ${secrets.length}`);
      rounds.push({ kubectlMs: kubectl.wallMs, refresherMs: refresher.wallMs, speedup: kubectl.wallMs / refresher.wallMs });
      log(
        `refresher: round ${round}: kubectl loop ${(kubectl.wallMs / 1000).toFixed(1)} s, refresher ${(refresher.wallMs / 1000).toFixed(2)} s, ${(kubectl.wallMs / refresher.wallMs).toFixed(1)}×`,
      );
    }

    const brokerCalls = await measureBrokerCalls({ plane, hours: options.brokerCallHours ?? 6, namespacePrefix: prefix, log });

    return {
      brokerCalls,
      coldSpeedupVsKubectl: median(rounds.map((r) => r.speedup)),
      warmWrites: changed.length,
      warmRequestsPerNamespace: warmRequests / options.largeNamespaces,
      peakRssMb: Math.max(coldPeak, warmPeak),
      rounds,
      large: {
        namespaces: options.largeNamespaces,
        coldMs: cold.wallMs,
        warmMs: warm.wallMs,
        coldPeakRssMb: coldPeak,
        warmPeakRssMb: warmPeak,
        warmRequests,
        changed,
      },
    };
  } finally {
    for (const close of closers.reverse()) await close().catch(() => undefined);
  }
}
