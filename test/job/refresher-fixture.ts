import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ApiException, CoreV1Api, type KubeConfig, type V1Secret, type V1ServiceAccount } from "@kubernetes/client-node";
import { createLogger, type Logger } from "../../shared/log.ts";
import { brokerClient } from "../../job/broker-client.ts";
import { kubernetesCluster, type ClusterApi } from "../../job/cluster.ts";
import { deployManifests } from "../../cli/sandbox/cluster.ts";
import { refreshOnce, refresherServiceAccount, type RunDependencies, type RunOptions, type RunReport } from "../../job/run.ts";
import { adminConfig, apply, kubeConfigForToken, serviceAccountToken } from "../kube/cluster.ts";
import { acquireRefresherLock } from "./kube-lock.ts";
import { startStubBroker, type StubBroker } from "./stub-broker.ts";

/**
 * The refresher as it runs in a cluster: its ServiceAccount and RBAC applied from job/deploy/base,
 * its own token from the TokenRequest API, a broker token in a file, its ConfigMap in kube-system.
 */
export const refresherAccount = refresherServiceAccount;
export const manifests = deployManifests;

export interface RefresherFixture {
  kubeConfig: KubeConfig;
  cluster: ClusterApi;
  tokenFile: string;
  /** Every log line the refresher wrote in this fixture, to check that none carries a secret. */
  logs: string[];
  logger: Logger;
  /** One run without the fleet spread's delay (unless `options` sets a window), at `clock` when given. */
  run(brokerUrl: string, options?: RunOptions, cluster?: ClusterApi, clock?: Pick<RunDependencies, "now" | "sleep">): Promise<RunReport>;
  close(): Promise<void>;
}

export async function installRefresher(): Promise<RefresherFixture> {
  await apply([...(await manifests("serviceaccount.yaml")), ...(await manifests("rbac.yaml")), ...(await manifests("secret-policy.yaml"))]);
  const token = await serviceAccountToken(refresherAccount.namespace, refresherAccount.name, [], 3600);
  const kubeConfig = kubeConfigForToken(token);
  await untilSecretPolicyEnforced(kubeConfig);
  const dir = await mkdtemp(join(tmpdir(), "refresher-"));
  const tokenFile = join(dir, "token");
  await writeFile(tokenFile, await serviceAccountToken(refresherAccount.namespace, refresherAccount.name, ["acr-credential-broker"], 3600));
  const logs: string[] = [];
  const logger = createLogger("refresher", { level: "debug", destination: { write: (line: string) => void logs.push(line) } });
  const cluster = kubernetesCluster(kubeConfig);
  return {
    kubeConfig,
    cluster,
    tokenFile,
    logs,
    logger,
    run: (brokerUrl, options = {}, override, clock = {}) =>
      refreshOnce(
        { cluster: override ?? cluster, logger, broker: (url) => brokerClient({ url, tokenFile, attempts: 2, sleep: async () => {} }), ...clock },
        { brokerUrl, spreadWindowSeconds: 0, ...options },
      ),
    close: () => rm(dir, { recursive: true, force: true }),
  };
}

/**
 * The API server picks up a new admission policy within moments, not at once: wait until it refuses
 * the refresher a Secret that is not its own (a dry-run create, so nothing is stored either way).
 */
export async function untilSecretPolicyEnforced(kubeConfig: KubeConfig, timeoutMs = 30_000): Promise<void> {
  const api = kubeConfig.makeApiClient(CoreV1Api);
  const started = Date.now();
  for (;;) {
    const refused = await api
      .createNamespacedSecret({
        namespace: refresherAccount.namespace,
        dryRun: "All",
        body: { metadata: { name: "policy-probe" }, stringData: { probe: "x" } },
      })
      .then(
        () => false,
        (error: unknown) => error instanceof ApiException && error.code === 403 && String(error.body).includes("acr-credential-refresher-own-secrets"),
      );
    if (refused) return;
    if (Date.now() - started > timeoutMs) throw new Error(`the Secret admission policy was not enforced within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

export const core = () => adminConfig().makeApiClient(CoreV1Api);

/** Replaces the refresher's ConfigMap data as the cluster admin would with kubectl apply. */
export async function setConfig(data: Record<string, string>): Promise<void> {
  await core()
    .deleteNamespacedConfigMap({ namespace: "kube-system", name: "acr-configuration" })
    .catch(() => undefined);
  await core().createNamespacedConfigMap({ namespace: "kube-system", body: { metadata: { name: "acr-configuration" }, data } });
}

/** Forgets what the refresher remembers, so a test starts from a clean slate. */
export async function resetStatus(): Promise<void> {
  await core()
    .deleteNamespacedConfigMap({ namespace: "kube-system", name: "acr-credential-status" })
    .catch(() => undefined);
}

export async function readStatus(): Promise<Record<string, string> | undefined> {
  try {
    return (await core().readNamespacedConfigMap({ namespace: "kube-system", name: "acr-credential-status" })).data ?? {};
  } catch (error) {
    if (error instanceof ApiException && error.code === 404) return undefined;
    throw error;
  }
}

/** Every Secret and ServiceAccount resourceVersion in these namespaces, read as the admin. */
export async function resourceVersions(namespaces: string[]): Promise<Record<string, string>> {
  const versions: Record<string, string> = {};
  for (const namespace of namespaces) {
    for (const secret of (await core().listNamespacedSecret({ namespace })).items)
      versions[`${namespace}/Secret/${secret.metadata?.name}`] = secret.metadata?.resourceVersion ?? "";
    for (const sa of (await core().listNamespacedServiceAccount({ namespace })).items)
      versions[`${namespace}/ServiceAccount/${sa.metadata?.name}`] = sa.metadata?.resourceVersion ?? "";
  }
  return versions;
}

/** What `kubectl annotate configmap acr-configuration acr-credential-broker/resync=<now> --overwrite` does. */
export async function annotateResync(): Promise<void> {
  const current = await core().readNamespacedConfigMap({ namespace: "kube-system", name: "acr-configuration" });
  await core().replaceNamespacedConfigMap({
    namespace: "kube-system",
    name: "acr-configuration",
    body: {
      ...current,
      metadata: { ...current.metadata, annotations: { ...current.metadata?.annotations, "acr-credential-broker/resync": `${Date.now()}` } },
    },
  });
}

export async function secretOrUndefined(namespace: string, name: string): Promise<V1Secret | undefined> {
  try {
    return await core().readNamespacedSecret({ namespace, name });
  } catch (error) {
    if (error instanceof ApiException && error.code === 404) return undefined;
    throw error;
  }
}

export async function serviceAccount(namespace: string, name: string): Promise<V1ServiceAccount> {
  return core().readNamespacedServiceAccount({ namespace, name });
}

export const pullSecretNames = (sa: V1ServiceAccount): string[] => (sa.imagePullSecrets ?? []).map((entry) => entry.name ?? "");

/** The decoded `.dockerconfigjson` of a Secret. */
export function dockerConfigOf(secret: V1Secret): { auths: Record<string, { username: string; password: string; auth: string }> } {
  const encoded = secret.data?.[".dockerconfigjson"];
  if (encoded === undefined) throw new Error(`Secret ${secret.metadata?.name} has no .dockerconfigjson`);
  return JSON.parse(Buffer.from(encoded, "base64").toString("utf8"));
}

export interface RefresherSuite {
  fixture: RefresherFixture;
  broker: StubBroker;
  /** Stops the broker, removes the fixture and releases the lock, in that order. */
  close(): Promise<void>;
}

/** What a refresher suite on the shared API server starts with: the suite lock, the refresher installed, a stub broker. */
export async function startRefresherSuite(holder: string): Promise<RefresherSuite> {
  const release = await acquireRefresherLock(holder);
  let fixture: RefresherFixture | undefined;
  try {
    fixture = await installRefresher();
    const broker = await startStubBroker();
    const installed = fixture;
    return {
      fixture: installed,
      broker,
      async close() {
        await broker.close();
        await installed.close();
        await release();
      },
    };
  } catch (error) {
    await fixture?.close();
    await release();
    throw error;
  }
}
