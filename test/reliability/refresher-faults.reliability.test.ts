/**
 * The bundled refresher (the container's program) killed with SIGKILL at random points of a
 * 300-namespace run, then run again: the second run must converge — every chosen ServiceAccount
 * holds exactly the configured Secrets once, after the entries someone else put there; every
 * Secret holds the broker's current password; the Secrets users own are untouched (same bytes,
 * same resourceVersion). Then, on a control plane of its own, the kube-apiserver is killed mid-run:
 * non-zero exit, and once it is started again the rerun converges.
 * The broker is the refresher tests' stub (it is not the part under test); passwords rotate before
 * each trial so that every run has writes to be interrupted.
 */
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CoreV1Api, KubeConfig, KubernetesObjectApi, PatchStrategy, type V1Secret } from "@kubernetes/client-node";
import pLimit from "p-limit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseRefresherConfig } from "../../job/config.ts";
import type { RegistryRequest } from "../../shared/broker-api.ts";
import { findPinnedKubeBinaries } from "../kube/binaries.ts";
import { kubeAvailable, kubeEnv } from "../kube/cluster.ts";
import { startControlPlane, type ControlPlane } from "../kube/control-plane.ts";
import { acquireRefresherLock } from "../job/kube-lock.ts";
import { dockerConfigOf, manifests, refresherAccount } from "../job/refresher-fixture.ts";
import { startStubBroker, type StubBroker } from "../job/stub-broker.ts";
import { createLogScan } from "./support/log-scan.ts";

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

/** How long a refresher may take to give up once the apiserver is gone before it counts as hanging. */
const giveUpBoundMs = 60_000;

let random = seed;
const next = () => (random = (random * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;

/** A cluster the refresher runs in: the shared test control plane, or one this file starts. */
interface Cluster {
  admin: KubeConfig;
  apiserverUrl: string;
  caPem: string;
}

/** A cluster seeded with the refresher (its ServiceAccount under the shipped RBAC) and the namespaces it works on. */
interface Seeded {
  cluster: Cluster;
  core: () => CoreV1Api;
  prefix: string;
  namespaces: string[];
  userSecrets: Map<string, { resourceVersion: string; data: string }>;
  /** The refresher's kubeconfig (its own ServiceAccount's token), its broker token file, and both tokens. */
  kubeconfigFile: string;
  tokenFile: string;
  tokens: string[];
}

function clusterOf(kubeconfig: string, apiserverUrl: string, caPem: string): Cluster {
  const admin = new KubeConfig();
  admin.loadFromString(kubeconfig);
  return { admin, apiserverUrl, caPem };
}

describe.skipIf(!kubeAvailable())("the refresher under Kubernetes faults", () => {
  let release: () => Promise<void>;
  let broker: StubBroker;
  let work: string;
  let bundle: string;
  let shared: Seeded;
  let dedicated: ControlPlane | undefined;
  let fromScratchMs: number;
  const scan = createLogScan();
  let refresherLogs = "";

  const configFor = (prefix: string, set: number[]) => ({
    "broker-url": broker.url,
    "watch-namespace": `${prefix}-*`,
    "service-account": "*",
    "acr-registry-info": set
      .map((i) => {
        const r = registryPool[i]!;
        return `- instanceId: "${r.instanceId ?? ""}"\n  regionId: "${r.regionId}"\n  domains: "${r.domains!.join(",")}"\n`;
      })
      .join(""),
  });

  /** Replaces the refresher's ConfigMap as the cluster admin would with kubectl apply. */
  async function setConfig(target: Seeded, set: number[]): Promise<void> {
    await target
      .core()
      .deleteNamespacedConfigMap({ namespace: "kube-system", name: "acr-configuration" })
      .catch(() => undefined);
    await target
      .core()
      .createNamespacedConfigMap({ namespace: "kube-system", body: { metadata: { name: "acr-configuration" }, data: configFor(target.prefix, set) } });
  }

  async function resetStatus(target: Seeded): Promise<void> {
    await target
      .core()
      .deleteNamespacedConfigMap({ namespace: "kube-system", name: "acr-credential-status" })
      .catch(() => undefined);
  }

  /**
   * Installs the refresher as it runs in a cluster (job/deploy/base's ServiceAccount and RBAC, its own
   * token from the TokenRequest API, a broker token in a file) and creates `namespaceCount` namespaces,
   * each with a `default` ServiceAccount holding a foreign pull Secret, a `builder` one and a user Secret.
   */
  async function seedCluster(cluster: Cluster, prefix: string): Promise<Seeded> {
    const core = () => cluster.admin.makeApiClient(CoreV1Api);
    const objects = KubernetesObjectApi.makeApiClient(cluster.admin);
    for (const object of [...(await manifests("serviceaccount.yaml")), ...(await manifests("rbac.yaml"))]) {
      await objects.patch(object, undefined, undefined, "acr-credential-broker-tests", true, PatchStrategy.ServerSideApply);
    }
    const token = async (audiences: string[]) => {
      const request = await core().createNamespacedServiceAccountToken({ ...refresherAccount, body: { spec: { audiences, expirationSeconds: 3600 } } });
      if (!request.status?.token) throw new Error("TokenRequest for the refresher returned no token");
      return request.status.token;
    };
    const apiToken = await token([]);
    const brokerToken = await token(["acr-credential-broker"]);
    const asRefresher = new KubeConfig();
    asRefresher.loadFromOptions({
      clusters: [{ name: "acr-test", server: cluster.apiserverUrl, caData: Buffer.from(cluster.caPem).toString("base64") }],
      users: [{ name: "refresher", token: apiToken }],
      contexts: [{ name: "refresher", cluster: "acr-test", user: "refresher" }],
      currentContext: "refresher",
    });
    const dir = await mkdtemp(join(work, `${prefix}-`));
    const kubeconfigFile = join(dir, "kubeconfig");
    const tokenFile = join(dir, "token");
    await writeFile(kubeconfigFile, asRefresher.exportConfig());
    await writeFile(tokenFile, brokerToken);

    const limit = pLimit(16);
    const namespaces = await Promise.all(
      Array.from({ length: namespaceCount }, (_, i) =>
        limit(async () => {
          const namespace = `${prefix}-${i}-${randomBytes(4).toString("hex")}`;
          await core().createNamespace({ body: { metadata: { name: namespace } } });
          await core().createNamespacedServiceAccount({ namespace, body: { metadata: { name: "default" }, imagePullSecrets: [{ name: foreign }] } });
          await core().createNamespacedServiceAccount({ namespace, body: { metadata: { name: "builder" } } });
          await core().createNamespacedSecret({
            namespace,
            body: { metadata: { name: "user-secret" }, type: "Opaque", stringData: { password: `user-owned-${i}-not-a-real-secret` } },
          });
          return namespace;
        }),
      ),
    );
    const chosen = new Set(namespaces);
    const userSecrets = new Map(
      (await core().listSecretForAllNamespaces({ fieldSelector: "metadata.name=user-secret" })).items
        .filter((s) => chosen.has(s.metadata!.namespace!))
        .map((s) => [s.metadata!.namespace!, { resourceVersion: s.metadata!.resourceVersion!, data: JSON.stringify(s.data) }]),
    );
    return { cluster, core, prefix, namespaces, userSecrets, kubeconfigFile, tokenFile, tokens: [apiToken, brokerToken] };
  }

  /** Runs the bundle; with `killAfterMs`, SIGKILLs it then. Resolves with its exit code, or the signal. */
  function runRefresher(
    target: Seeded,
    options: { killAfterMs?: number; args?: string[] } = {},
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null; tookMs: number; exitedAt: number }> {
    const started = performance.now();
    const child = spawn(
      process.execPath,
      [bundle, "--once", "--no-spread", ...(options.args ?? []), "--kubeconfig", target.kubeconfigFile, "--token-file", target.tokenFile],
      { cwd: work, env: { PATH: process.env.PATH, HOME: work }, stdio: ["ignore", "ignore", "pipe"] },
    );
    child.stderr!.on("data", (chunk: Buffer) => (refresherLogs += chunk.toString()));
    const timer = options.killAfterMs === undefined ? undefined : setTimeout(() => child.kill("SIGKILL"), options.killAfterMs);
    return new Promise((resolve) =>
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        const exitedAt = performance.now();
        resolve({ code, signal, tookMs: exitedAt - started, exitedAt });
      }),
    );
  }

  /** The managed Secrets of the chosen namespaces. */
  async function managedSecrets(target: Seeded): Promise<V1Secret[]> {
    const chosen = new Set(target.namespaces);
    return (await target.core().listSecretForAllNamespaces({ labelSelector: "app.kubernetes.io/managed-by=acr-credential-broker" })).items.filter((s) =>
      chosen.has(s.metadata!.namespace!),
    );
  }

  const currentPasswords = (target: Seeded, set: number[]) => {
    const entries = parseRefresherConfig(configFor(target.prefix, set)).config.registries;
    return new Map(entries.map((entry, i) => [entry.secretName, broker.credentialFor(registryPool[set[i]!]!).password]));
  };

  /** Everything that must hold after a converged run with registry set `set`; returns the problems found. */
  async function convergenceProblems(target: Seeded, set: number[]): Promise<string[]> {
    const problems: string[] = [];
    const passwords = currentPasswords(target, set);
    const expectedNames = [...passwords.keys()].sort();
    const chosen = new Set(target.namespaces);
    const managed = await managedSecrets(target);
    const byNamespace = new Map<string, V1Secret[]>();
    for (const secret of managed) byNamespace.set(secret.metadata!.namespace!, [...(byNamespace.get(secret.metadata!.namespace!) ?? []), secret]);
    const accounts = (await target.core().listServiceAccountForAllNamespaces()).items.filter((sa) => chosen.has(sa.metadata!.namespace!));
    const users = (await target.core().listSecretForAllNamespaces({ fieldSelector: "metadata.name=user-secret" })).items.filter((s) =>
      chosen.has(s.metadata!.namespace!),
    );
    for (const namespace of target.namespaces) {
      const secrets = byNamespace.get(namespace) ?? [];
      const names = secrets.map((s) => s.metadata!.name!).sort();
      if (JSON.stringify(names) !== JSON.stringify(expectedNames))
        problems.push(`${namespace}: Secrets ${names.join(",")} instead of ${expectedNames.join(",")}`);
      for (const secret of secrets) {
        const auths = Object.values(dockerConfigOf(secret).auths);
        if (auths.length === 0 || auths.some((auth) => auth.password !== passwords.get(secret.metadata!.name!)))
          problems.push(`${namespace}/${secret.metadata!.name}: not the current password`);
      }
    }
    for (const sa of accounts) {
      const where = `${sa.metadata!.namespace}/${sa.metadata!.name}`;
      const pulls = (sa.imagePullSecrets ?? []).map((entry) => entry.name ?? "");
      const own = pulls.filter((name) => name !== foreign);
      if (sa.metadata!.name === "default" && pulls[0] !== foreign) problems.push(`${where}: the foreign entry is gone or moved (${pulls.join(",")})`);
      if (pulls.filter((name) => name === foreign).length > (sa.metadata!.name === "default" ? 1 : 0)) problems.push(`${where}: foreign entry duplicated`);
      if (JSON.stringify([...own].sort()) !== JSON.stringify(expectedNames))
        problems.push(`${where}: imagePullSecrets ${pulls.join(",")} instead of ${expectedNames.join(",")}`);
    }
    if (accounts.length !== namespaceCount * 2) problems.push(`${accounts.length} ServiceAccounts instead of ${namespaceCount * 2}`);
    if (users.length !== namespaceCount) problems.push(`${users.length} user Secrets instead of ${namespaceCount}`);
    for (const secret of users) {
      const before = target.userSecrets.get(secret.metadata!.namespace!);
      if (before?.resourceVersion !== secret.metadata!.resourceVersion || before?.data !== JSON.stringify(secret.data))
        problems.push(`${secret.metadata!.namespace}/user-secret changed`);
    }
    return problems;
  }

  /** A first run over freshly seeded namespaces, which must converge; returns how long it took. */
  async function runFromScratch(target: Seeded, set: number[]): Promise<number> {
    await resetStatus(target);
    await setConfig(target, set);
    const first = await runRefresher(target);
    expect(first.code).toBe(0);
    expect(await convergenceProblems(target, set)).toEqual([]);
    return first.tookMs;
  }

  beforeAll(async () => {
    release = await acquireRefresherLock("refresher-faults.reliability.test");
    work = await mkdtemp(join(tmpdir(), "refresher-faults-"));
    broker = await startStubBroker();
    bundle = join(work, "refresher.mjs");
    await new Promise<void>((resolve, reject) =>
      execFile(process.execPath, [new URL("../../job/build.mjs", import.meta.url).pathname, bundle], (error) => (error ? reject(error) : resolve())),
    );
    scan.secret(kubeEnv().adminToken);
    scan.source("refresher", () => refresherLogs);

    const { kubeconfig, apiserverUrl, caPem } = kubeEnv();
    shared = await seedCluster(clusterOf(kubeconfig, apiserverUrl, caPem), `rk${Math.floor(next() * 1e6).toString(36)}`);
    fromScratchMs = await runFromScratch(shared, registrySets[0]!);
    console.log(`refresher from scratch over ${namespaceCount} namespaces: ${Math.round(fromScratchMs)} ms`);
  }, 600_000);

  afterAll(async () => {
    await dedicated?.stop();
    await broker?.close();
    if (work) await rm(work, { recursive: true, force: true });
    await release?.();
  });

  it(`converges after a SIGKILL at a random point, ${trials} times (seed ${seed})`, async () => {
    const outcomes: string[] = [];
    let kills = 0;
    // A trial whose run finished before its kill time proves nothing about kills: it is repeated, within a bound.
    for (let trial = 1; kills < trials && trial <= trials * 3; trial++) {
      const set = registrySets[trial % registrySets.length]!;
      await setConfig(shared, set);
      broker.rotate();
      const killAfterMs = Math.round(fromScratchMs * (0.05 + 0.75 * next()));
      const killed = await runRefresher(shared, { killAfterMs });
      if (killed.signal === "SIGKILL") kills++;
      const rerun = await runRefresher(shared);
      outcomes.push(
        `trial ${trial}: registries ${set.join("+")}, killed at ${killAfterMs} ms (${killed.signal ?? `exited ${killed.code} first`}), rerun exit ${rerun.code} in ${Math.round(rerun.tookMs)} ms`,
      );
      expect(rerun.code).toBe(0);
      expect(await convergenceProblems(shared, set)).toEqual([]);
    }
    console.log(outcomes.join("\n"));
    expect(kills).toBe(trials);
  });

  it("exits non-zero when its kube-apiserver is killed mid-run (SIGKILL, on a control plane of its own), and converges when rerun after the apiserver is started again", async () => {
    const lookup = findPinnedKubeBinaries();
    if (!lookup.found) throw new Error(lookup.reason);
    dedicated = await startControlPlane({ binaries: lookup.binaries });
    scan.secret(dedicated.adminToken);
    const target = await seedCluster(clusterOf(dedicated.kubeconfig, dedicated.apiserverUrl, dedicated.caPem), "ra");
    for (const token of target.tokens) scan.secret(token);
    const set = registrySets[0]!;
    const scratchMs = await runFromScratch(target, set);

    // New passwords, so that the run writes every Secret; the apiserver is killed once a third of them
    // hold the new password (progress, not time, so the kill lands mid-run however busy the machine is).
    broker.rotate();
    const passwords = currentPasswords(target, set);
    const total = namespaceCount * passwords.size;
    const updated = async () =>
      (await managedSecrets(target)).filter((secret) =>
        Object.values(dockerConfigOf(secret).auths).every((auth) => auth.password === passwords.get(secret.metadata!.name!)),
      ).length;
    // Valid credentials in hand: only --resync makes the run ask for (and write) the new ones.
    const running = runRefresher(target, { args: ["--resync"] });
    let exited = false;
    void running.then(() => (exited = true));
    let written = 0;
    while (!exited && written < total / 3) written = await updated();
    const killedAt = performance.now();
    await dedicated.apiserver.stop();
    let bound: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"hung">((resolve) => (bound = setTimeout(() => resolve("hung"), giveUpBoundMs)));
    const cut = await Promise.race([running, timedOut]);
    clearTimeout(bound);
    expect(cut, `the refresher was still running ${giveUpBoundMs / 1000} s after the apiserver was killed`).not.toBe("hung");
    if (cut === "hung") return;
    const gaveUpMs = Math.round(cut.exitedAt - killedAt);
    console.log(
      `apiserver killed with ${written} of ${total} Secrets rewritten, ${Math.round(killedAt - (cut.exitedAt - cut.tookMs))} ms into the run (from scratch: ${Math.round(scratchMs)} ms): exit ${cut.code} ${gaveUpMs} ms later`,
    );
    expect(written).toBeGreaterThan(0);
    expect(cut.signal).toBeNull();
    expect(cut.code).not.toBe(0);

    const restartedAt = performance.now();
    await dedicated.apiserver.start();
    console.log(`apiserver ready again ${Math.round(performance.now() - restartedAt)} ms after start`);
    expect(await convergenceProblems(target, set)).not.toEqual([]);
    const rerun = await runRefresher(target);
    console.log(`rerun: exit ${rerun.code} in ${Math.round(rerun.tookMs)} ms`);
    expect(rerun.code).toBe(0);
    expect(await convergenceProblems(target, set)).toEqual([]);
  });

  it("logged no password or token", () => {
    for (const registry of registryPool)
      for (let generation = 1; generation <= trials * 3 + 3; generation++) scan.secret(`stub-password-${registry.instanceId ?? "personal"}-${generation}`);
    for (const token of shared.tokens) scan.secret(token);
    expect(refresherLogs.length).toBeGreaterThan(0);
    expect(scan.findings()).toEqual([]);
  });
});
