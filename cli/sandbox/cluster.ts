/**
 * The sandbox's cluster (`acr-credential local --with-cluster`): the refresher installed into the
 * local control plane the way job/deploy/base installs it (ServiceAccount, RBAC, Secret policy; no
 * CronJob, since no controller-manager runs one), a demo namespace whose `default` ServiceAccount
 * gets the pull Secret, the configuration ConfigMap pointing at the sandbox broker, and the refresher
 * running `--watch` in this process as its ServiceAccount, with tokens the API server issues for it.
 */
import { readFile } from "node:fs/promises";
import { CoreV1Api, KubeConfig, KubernetesObjectApi, PatchStrategy, type KubernetesObject } from "@kubernetes/client-node";
import { parseAllDocuments, stringify } from "yaml";
import { brokerClient } from "../../job/broker-client.ts";
import { kubernetesCluster } from "../../job/cluster.ts";
import { parseRefresherConfig } from "../../job/config.ts";
import { defaultConfigMap, refresherServiceAccount } from "../../job/run.ts";
import { kubeConfigForToken, requestToken } from "../kubeconfig.ts";
import { startWatch } from "../../job/watch.ts";
import type { Logger } from "../../shared/log.ts";
import type { ControlPlane } from "./control-plane.ts";

export const refresherAccount = refresherServiceAccount;
export const refresherSubject = `system:serviceaccount:${refresherAccount.namespace}:${refresherAccount.name}`;
export const demoNamespace = "demo";
const brokerAudience = "acr-credential-broker";
/** Long enough for a sandbox session; within the broker's default maxTokenLifetimeSeconds (a day). */
const apiTokenSeconds = 12 * 3600;
/** The broker token is minted again before this much of it is left, as the kubelet rotates a projected one. */
const brokerTokenSeconds = 3600;
const deployBase = new URL("../../job/deploy/base/", import.meta.url);

export interface SandboxRegistry {
  instanceId: string;
  regionId: string;
  /** The registry's host in the sandbox; absent without docker-registry (the broker then names the instance's domains). */
  domain?: string;
  assumeRoleArn: string;
}

export interface SandboxRefresher {
  /** The pull Secret's name in the demo namespace. */
  secretName: string;
  /** Whether the first reconcile wrote it (it fails, for one, when the broker refuses). */
  written: boolean;
  stop(): Promise<void>;
}

/** The objects of a job/deploy/base manifest, as `kubectl apply -f` reads them. */
export async function deployManifests(file: string): Promise<KubernetesObject[]> {
  const text = await readFile(new URL(file, deployBase), "utf8");
  return parseAllDocuments(text)
    .map((document) => document.toJS() as KubernetesObject | null)
    .filter((object): object is KubernetesObject => object !== null);
}

/** Installs the refresher into the control plane as the cluster admin and starts it; resolves after its first reconcile. */
export async function startSandboxRefresher(plane: ControlPlane, brokerUrl: string, registry: SandboxRegistry, logger: Logger): Promise<SandboxRefresher> {
  const admin = new KubeConfig();
  admin.loadFromString(plane.kubeconfig);
  const objects = KubernetesObjectApi.makeApiClient(admin);
  const core = admin.makeApiClient(CoreV1Api);
  for (const object of [
    ...(await deployManifests("serviceaccount.yaml")),
    ...(await deployManifests("rbac.yaml")),
    ...(await deployManifests("secret-policy.yaml")),
  ]) {
    await objects.patch(object, undefined, undefined, "acr-credential-sandbox", true, PatchStrategy.ServerSideApply);
  }
  await core.createNamespace({ body: { metadata: { name: demoNamespace } } });
  // No controller-manager creates `default` ServiceAccounts here.
  await core.createNamespacedServiceAccount({ namespace: demoNamespace, body: { metadata: { name: "default" } } });

  const data = {
    "broker-url": brokerUrl,
    "watch-namespace": demoNamespace,
    "service-account": "default",
    "acr-registry-info": stringify([
      {
        instanceId: registry.instanceId,
        regionId: registry.regionId,
        ...(registry.domain === undefined ? {} : { domains: registry.domain }),
        assumeRoleARN: registry.assumeRoleArn,
        expireDuration: 3600,
      },
    ]),
  };
  const secretName = parseRefresherConfig(data).config.registries[0]?.secretName ?? "";
  await core.createNamespacedConfigMap({ namespace: defaultConfigMap.namespace, body: { metadata: { name: defaultConfigMap.name }, data } });

  const mint = (audiences: string[], expirationSeconds: number) => requestToken(core, refresherAccount, audiences, expirationSeconds);
  const apiServer = { server: plane.apiserverUrl, caData: Buffer.from(plane.caPem).toString("base64"), skipTLSVerify: false };
  const kubeConfig = kubeConfigForToken(apiServer, (await mint([], apiTokenSeconds)).token);
  let brokerToken = await mint([brokerAudience], brokerTokenSeconds);
  const readToken = async () => {
    if (brokerToken.expiresAt - Date.now() < (brokerTokenSeconds * 1000) / 5) brokerToken = await mint([brokerAudience], brokerTokenSeconds);
    return brokerToken.token;
  };

  const cluster = kubernetesCluster(kubeConfig);
  const watcher = startWatch(
    { kubeConfig, cluster, logger, broker: (url) => brokerClient({ url, tokenFile: "projected token", readFile: readToken }) },
    { configMap: defaultConfigMap, spreadWindowSeconds: 0 },
  );
  await watcher.ready;
  const written = await core.readNamespacedSecret({ namespace: demoNamespace, name: secretName }).then(
    () => true,
    () => false,
  );
  return { secretName, written, stop: () => watcher.stop() };
}
