import { execFile, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CoreV1Api, type V1Secret } from "@kubernetes/client-node";
import pLimit from "p-limit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseRefresherConfig } from "../../job/config.ts";
import type { RegistryRequest } from "../../shared/broker-api.ts";
import { adminConfig, createNamespace, kubeAvailable, kubeEnv } from "../kube/cluster.ts";
import { acquireRefresherLock } from "../job/kube-lock.ts";
import { dockerConfigOf, installRefresher, resetStatus, setConfig, type RefresherFixture } from "../job/refresher-fixture.ts";
import { startStubBroker, type StubBroker } from "../job/stub-broker.ts";
import { createLogScan } from "./support/log-scan.ts";
import { startTcpProxy } from "./support/tcp-proxy.ts";

/**
 * The bundled refresher (the container's program) killed with SIGKILL at random points of a
 * 300-namespace run, then run again: the second run must converge — every chosen ServiceAccount
 * holds exactly the configured Secrets once, after the entries someone else put there; every
 * Secret holds the broker's current password; the Secrets users own are untouched (same bytes,
 * same resourceVersion). Then the apiserver vanishes mid-run: non-zero exit, and the rerun converges.
 * The broker is the refresher tests' stub (it is not the part under test); passwords rotate before
 * each trial so that every run has writes to be interrupted.
 */

const namespaceCount = 300;
const trials = 10;
const seed = 424242;
const foreign = "user-pull";
const registryPool: RegistryRequest[] = [
  { instanceId: "cri-killa", regionId: "cn-hangzhou", domains: ["killa-registry.cn-hangzhou.cr.aliyuncs.com"] },
  { instanceId: "cri-killb", regionId: "cn-shanghai", domains: ["killb-registry.cn-shanghai.cr.aliyuncs.com"] },
  { regionId: "cn-beijing", domains: ["registry.cn-beijing.aliyuncs.com"] },
];
/** Which registries each trial configures: entries come and go between trials. */
const registrySets = [[0, 1, 2], [0], [1, 2], [0, 2], [2], [0, 1]];

let random = seed;
const next = () => ((random = (random * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);

describe.skipIf(!kubeAvailable())("the refresher under Kubernetes faults", () => {
  let release: () => Promise<void>;
  let fixture: RefresherFixture;
  let broker: StubBroker;
  let work: string;
  let bundle: string;
  let kubeconfig: string;
  let prefix: string;
  let namespaces: string[];
  let userSecrets: Map<string, { resourceVersion: string; data: string }>;
  let fromScratchMs: number;
  const scan = createLogScan();
  let refresherLogs = "";
  const core = () => adminConfig().makeApiClient(CoreV1Api);

  const configFor = (set: number[]) => ({
    "broker-url": broker.url,
    "watch-namespace": `${prefix}-*`,
    "service-account": "*",
    "acr-registry-info": set.map((i) => { const r = registryPool[i]!; return `- instanceId: "${r.instanceId ?? ""}"\n  regionId: "${r.regionId}"\n  domains: "${r.domains!.join(",")}"\n`; }).join(""),
  });

  /** Runs the bundle; with `killAfterMs`, SIGKILLs it then. Resolves with its exit code, or the signal. */
  function runRefresher(options: { killAfterMs?: number; kubeconfigFile?: string } = {}): Promise<{ code: number | null; signal: NodeJS.Signals | null; tookMs: number }> {
    const started = performance.now();
    const child = spawn(process.execPath, [bundle, "--once", "--kubeconfig", options.kubeconfigFile ?? kubeconfig, "--token-file", fixture.tokenFile], { cwd: work, env: { PATH: process.env.PATH, HOME: work }, stdio: ["ignore", "ignore", "pipe"] });
    child.stderr!.on("data", (chunk: Buffer) => (refresherLogs += chunk.toString()));
    const timer = options.killAfterMs === undefined ? undefined : setTimeout(() => child.kill("SIGKILL"), options.killAfterMs);
    return new Promise((resolve) =>
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, tookMs: performance.now() - started });
      }),
    );
  }

  /** Everything that must hold after a converged run with registry set `set`; returns the problems found. */
  async function convergenceProblems(set: number[]): Promise<string[]> {
    const problems: string[] = [];
    const entries = parseRefresherConfig(configFor(set)).config.registries;
    const expectedNames = entries.map((entry) => entry.secretName).sort();
    const passwords = new Map(entries.map((entry, i) => [entry.secretName, broker.credentialFor(registryPool[set[i]!]!).password]));
    const chosen = new Set(namespaces);
    const managed = (await core().listSecretForAllNamespaces({ labelSelector: "app.kubernetes.io/managed-by=acr-credential-broker" })).items.filter((s) => chosen.has(s.metadata!.namespace!));
    const byNamespace = new Map<string, V1Secret[]>();
    for (const secret of managed) byNamespace.set(secret.metadata!.namespace!, [...(byNamespace.get(secret.metadata!.namespace!) ?? []), secret]);
    const accounts = (await core().listServiceAccountForAllNamespaces()).items.filter((sa) => chosen.has(sa.metadata!.namespace!));
    const users = (await core().listSecretForAllNamespaces({ fieldSelector: "metadata.name=user-secret" })).items.filter((s) => chosen.has(s.metadata!.namespace!));
    for (const namespace of namespaces) {
      const secrets = byNamespace.get(namespace) ?? [];
      const names = secrets.map((s) => s.metadata!.name!).sort();
      if (JSON.stringify(names) !== JSON.stringify(expectedNames)) problems.push(`${namespace}: Secrets ${names.join(",")} instead of ${expectedNames.join(",")}`);
      for (const secret of secrets) {
        const auths = Object.values(dockerConfigOf(secret).auths);
        if (auths.length === 0 || auths.some((auth) => auth.password !== passwords.get(secret.metadata!.name!))) problems.push(`${namespace}/${secret.metadata!.name}: not the current password`);
      }
    }
    for (const sa of accounts) {
      const where = `${sa.metadata!.namespace}/${sa.metadata!.name}`;
      const pulls = (sa.imagePullSecrets ?? []).map((entry) => entry.name ?? "");
      const own = pulls.filter((name) => name !== foreign);
      if (sa.metadata!.name === "default" && pulls[0] !== foreign) problems.push(`${where}: the foreign entry is gone or moved (${pulls.join(",")})`);
      if (pulls.filter((name) => name === foreign).length > (sa.metadata!.name === "default" ? 1 : 0)) problems.push(`${where}: foreign entry duplicated`);
      if (JSON.stringify([...own].sort()) !== JSON.stringify(expectedNames)) problems.push(`${where}: imagePullSecrets ${pulls.join(",")} instead of ${expectedNames.join(",")}`);
    }
    if (accounts.length !== namespaceCount * 2) problems.push(`${accounts.length} ServiceAccounts instead of ${namespaceCount * 2}`);
    if (users.length !== namespaceCount) problems.push(`${users.length} user Secrets instead of ${namespaceCount}`);
    for (const secret of users) {
      const before = userSecrets.get(secret.metadata!.namespace!);
      if (before?.resourceVersion !== secret.metadata!.resourceVersion || before?.data !== JSON.stringify(secret.data)) problems.push(`${secret.metadata!.namespace}/user-secret changed`);
    }
    return problems;
  }

  beforeAll(async () => {
    release = await acquireRefresherLock("refresher-faults.reliability.test");
    work = await mkdtemp(join(tmpdir(), "refresher-faults-"));
    fixture = await installRefresher();
    broker = await startStubBroker();
    bundle = join(work, "refresher.mjs");
    await new Promise<void>((resolve, reject) => execFile(process.execPath, [new URL("../../job/build.mjs", import.meta.url).pathname, bundle], (error) => (error ? reject(error) : resolve())));
    kubeconfig = join(work, "kubeconfig");
    await writeFile(kubeconfig, fixture.kubeConfig.exportConfig());
    scan.secret(kubeEnv().adminToken);
    scan.source("refresher", () => refresherLogs);

    prefix = `rk${Math.floor(next() * 1e6).toString(36)}`;
    const limit = pLimit(16);
    namespaces = await Promise.all(
      Array.from({ length: namespaceCount }, (_, i) =>
        limit(async () => {
          const namespace = await createNamespace(`${prefix}-${i}`);
          await core().createNamespacedServiceAccount({ namespace, body: { metadata: { name: "default" }, imagePullSecrets: [{ name: foreign }] } });
          await core().createNamespacedServiceAccount({ namespace, body: { metadata: { name: "builder" } } });
          await core().createNamespacedSecret({ namespace, body: { metadata: { name: "user-secret" }, type: "Opaque", stringData: { password: `user-owned-${i}-not-a-real-secret` } } });
          return namespace;
        }),
      ),
    );
    userSecrets = new Map(
      (await core().listSecretForAllNamespaces({ fieldSelector: "metadata.name=user-secret" })).items.map((s) => [s.metadata!.namespace!, { resourceVersion: s.metadata!.resourceVersion!, data: JSON.stringify(s.data) }]),
    );
    await resetStatus();
    await setConfig(configFor(registrySets[0]!));
    const first = await runRefresher();
    expect(first.code).toBe(0);
    fromScratchMs = first.tookMs;
    console.log(`refresher from scratch over ${namespaceCount} namespaces: ${Math.round(fromScratchMs)} ms`);
    expect(await convergenceProblems(registrySets[0]!)).toEqual([]);
  }, 600_000);

  afterAll(async () => {
    await broker?.close();
    await fixture?.close();
    if (work) await rm(work, { recursive: true, force: true });
    await release?.();
  });

  it(`converges after a SIGKILL at a random point, ${trials} times (seed ${seed})`, async () => {
    const outcomes: string[] = [];
    let kills = 0;
    // A trial whose run finished before its kill time proves nothing about kills: it is repeated, within a bound.
    for (let trial = 1; kills < trials && trial <= trials * 3; trial++) {
      const set = registrySets[trial % registrySets.length]!;
      await setConfig(configFor(set));
      broker.rotate();
      const killAfterMs = Math.round(fromScratchMs * (0.05 + 0.75 * next()));
      const killed = await runRefresher({ killAfterMs });
      if (killed.signal === "SIGKILL") kills++;
      const rerun = await runRefresher();
      outcomes.push(`trial ${trial}: registries ${set.join("+")}, killed at ${killAfterMs} ms (${killed.signal ?? `exited ${killed.code} first`}), rerun exit ${rerun.code} in ${Math.round(rerun.tookMs)} ms`);
      expect(rerun.code).toBe(0);
      expect(await convergenceProblems(set)).toEqual([]);
    }
    console.log(outcomes.join("\n"));
    expect(kills).toBe(trials);
  });

  it("exits non-zero when the apiserver becomes unreachable mid-run (a TCP relay in front of it stops), and the rerun converges", async () => {
    const set = registrySets[0]!;
    await setConfig(configFor(set));
    const through = async (cutAtBytes?: number) => {
      broker.rotate();
      const proxy = await startTcpProxy(new URL(kubeEnv().apiserverUrl));
      const proxied = join(work, "kubeconfig-proxied");
      await writeFile(proxied, fixture.kubeConfig.exportConfig().replace(new URL(kubeEnv().apiserverUrl).host, `127.0.0.1:${proxy.port}`));
      const running = runRefresher({ kubeconfigFile: proxied });
      let done = false;
      void running.then(() => (done = true));
      // Cut by progress rather than by time, so the cut lands mid-run however busy the machine is.
      if (cutAtBytes === undefined) await running;
      while (!done && proxy.forwardedBytes() < (cutAtBytes ?? 0)) await new Promise((resolve) => setTimeout(resolve, 5));
      await proxy.stop();
      return { ...(await running), bytes: proxy.forwardedBytes() };
    };
    // A whole run through the relay first, to know how many bytes a run with writes takes.
    const whole = await through();
    expect(whole.code).toBe(0);
    const cut = await through(Math.round(whole.bytes / 2));
    console.log(`apiserver cut after ${Math.round(whole.bytes / 2)} of ${whole.bytes} bytes: exit ${cut.code} after ${Math.round(cut.tookMs)} ms`);
    expect(cut.signal).toBeNull();
    expect(cut.code).not.toBe(0);
    expect(await convergenceProblems(set)).not.toEqual([]);
    const rerun = await runRefresher();
    expect(rerun.code).toBe(0);
    expect(await convergenceProblems(set)).toEqual([]);
  });

  it("logged no password or token", () => {
    for (const registry of registryPool) for (let generation = 1; generation <= trials * 3 + 3; generation++) scan.secret(`stub-password-${registry.instanceId ?? "personal"}-${generation}`);
    scan.secret(fixture.kubeConfig.getCurrentUser()?.token);
    expect(refresherLogs.length).toBeGreaterThan(0);
    expect(scan.findings()).toEqual([]);
  });
});
