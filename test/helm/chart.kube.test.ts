/**
 * helm install, upgrade and uninstall against a control plane of its own: the chart owns fixed names
 * in kube-system (its ServiceAccount, ClusterRole, ConfigMap) that the refresher tests on the shared
 * control plane create without Helm, and Helm refuses to take over objects it did not create.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AdmissionregistrationV1Api,
  ApiException,
  AppsV1Api,
  BatchV1Api,
  CoreV1Api,
  KubeConfig,
  RbacAuthorizationV1Api,
  type V1Deployment,
} from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { brokerClient } from "../../job/broker-client.ts";
import { kubernetesCluster } from "../../job/cluster.ts";
import { parseRefresherConfig } from "../../job/config.ts";
import { refreshOnce } from "../../job/run.ts";
import { createLogger } from "../../shared/log.ts";
import { findPinnedKubeBinaries } from "../kube/binaries.ts";
import { kubeAvailable } from "../kube/cluster.ts";
import { startControlPlane, type ControlPlane } from "../kube/control-plane.ts";
import { startStubBroker, type StubBroker } from "../job/stub-broker.ts";
import { chartDir, findTools, helm, type Result } from "./tools.ts";

const tools = findTools();
const release = "acr-credential-refresher";
const account = { namespace: "kube-system", name: "aliyun-acr-credential-helper" };

describe.skipIf(!kubeAvailable() || !tools.found)("the Helm chart installed with the real helm on a real kube-apiserver", () => {
  let plane: ControlPlane;
  let dir: string;
  let broker: StubBroker;
  let served: string;
  const admin = () => {
    const config = new KubeConfig();
    config.loadFromString(plane.kubeconfig);
    return config;
  };
  const core = () => admin().makeApiClient(CoreV1Api);
  const helmOn = (args: string[]): Promise<Result> => helm(tools.found ? tools : { helm: "" }, [...args, "--kubeconfig", plane.kubeconfigFile]);
  const chart = (command: "install" | "upgrade", values: Record<string, unknown>, extra: string[] = []) =>
    writeFile(join(dir, "values.yaml"), stringify(values)).then(() =>
      helmOn([
        command,
        release,
        chartDir,
        "--namespace",
        "kube-system",
        "--values",
        join(chartDir, "ci/example-values.yaml"),
        "--values",
        join(dir, "values.yaml"),
        ...extra,
      ]),
    );
  const status = async () =>
    JSON.parse((await helmOn(["status", release, "--namespace", "kube-system", "--output", "json"])).stdout) as { version: number; info: { status: string } };
  const absent = async (read: () => Promise<unknown>) =>
    read().then(
      () => false,
      (error: unknown) => error instanceof ApiException && error.code === 404,
    );
  const deployment = () => admin().makeApiClient(AppsV1Api).readNamespacedDeployment({ namespace: "kube-system", name: "acr-credential-refresher" });

  beforeAll(async () => {
    const lookup = findPinnedKubeBinaries();
    if (!lookup.found) throw new Error(lookup.reason);
    plane = await startControlPlane({ binaries: lookup.binaries });
    dir = await mkdtemp(join(tmpdir(), "chart-kube-"));
    broker = await startStubBroker();
    served = "helm-served";
    await core().createNamespace({ body: { metadata: { name: served } } });
    await core().createNamespacedServiceAccount({ namespace: served, body: { metadata: { name: "default" } } });
  }, 120_000);

  afterAll(async () => {
    await broker?.close();
    await plane?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("installs the CronJob, RBAC, admission policy, ServiceAccount and ConfigMap; the refresher runs under them as the chart's ServiceAccount and cannot touch another Secret", async () => {
    const install = await chart("install", { brokerUrl: broker.url, watchNamespace: served });
    expect(install.stderr).toBe("");
    expect(install.code).toBe(0);
    expect(await status()).toMatchObject({ version: 1, info: { status: "deployed" } });

    const cronJob = await admin().makeApiClient(BatchV1Api).readNamespacedCronJob({ namespace: "kube-system", name: "acr-credential-refresher" });
    expect(cronJob.spec?.schedule).toBe("*/5 * * * *");
    expect(cronJob.metadata?.annotations).toMatchObject({ "meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": "kube-system" });
    expect((await admin().makeApiClient(RbacAuthorizationV1Api).readClusterRoleBinding({ name: "acr-credential-refresher" })).subjects).toEqual([
      { kind: "ServiceAccount", name: account.name, namespace: account.namespace },
    ]);

    // What the pod would do: authenticate with the chart's ServiceAccount, read the chart's ConfigMap.
    const token = async (audiences: string[]) =>
      (
        await core().createNamespacedServiceAccountToken({
          namespace: account.namespace,
          name: account.name,
          body: { spec: { audiences, expirationSeconds: 3600 } },
        })
      ).status?.token ?? "";
    const asRefresher = new KubeConfig();
    asRefresher.loadFromOptions({
      clusters: [{ name: "plane", server: plane.apiserverUrl, caData: Buffer.from(plane.caPem).toString("base64") }],
      users: [{ name: "refresher", token: await token([]) }],
      contexts: [{ name: "refresher", cluster: "plane", user: "refresher" }],
      currentContext: "refresher",
    });
    const tokenFile = join(dir, "broker-token");
    await writeFile(tokenFile, await token(["acr-credential-broker"]));
    const logger = createLogger("refresher", { level: "warn", destination: { write: () => undefined } });
    const report = await refreshOnce(
      { cluster: kubernetesCluster(asRefresher), logger, broker: (url) => brokerClient({ url, tokenFile, attempts: 1 }) },
      { spreadWindowSeconds: 0 },
    );
    expect(report.exitCode).toBe(0);
    const configMap = await core().readNamespacedConfigMap({ namespace: "kube-system", name: "acr-configuration" });
    const [registry] = parseRefresherConfig(configMap.data ?? {}).config.registries;
    const sa = await core().readNamespacedServiceAccount({ namespace: served, name: "default" });
    expect(sa.imagePullSecrets).toEqual([{ name: registry?.secretName }]);

    // The chart's admission policy holds the same token off a Secret that is not the refresher's
    // (the API server enforces a new policy within moments, so the dry-run delete is retried until refused).
    await core().createNamespacedSecret({
      namespace: served,
      body: { metadata: { name: "someone-elses" }, stringData: { password: "not-for-the-refresher" } },
    });
    const deleteAsRefresher = () =>
      asRefresher
        .makeApiClient(CoreV1Api)
        .deleteNamespacedSecret({ namespace: served, name: "someone-elses", dryRun: "All" })
        .then(
          () => "deleted",
          (error: unknown) => (error instanceof ApiException ? `${error.code} ${String(error.body)}` : String(error)),
        );
    await expect.poll(deleteAsRefresher, { timeout: 30_000, interval: 200 }).toMatch(/^403 .*Secret helm-served\/someone-elses is not the refresher's own/);
  });

  it("upgrades to the --watch Deployment with RRSA: the CronJob goes, the Deployment carries the second token, the ConfigMap says enable", async () => {
    const upgrade = await chart("upgrade", { brokerUrl: broker.url, watchNamespace: served, mode: "watch", enableRRSA: true });
    expect(upgrade.stderr).toBe("");
    expect(upgrade.code).toBe(0);
    expect(await status()).toMatchObject({ version: 2, info: { status: "deployed" } });

    expect(await absent(() => admin().makeApiClient(BatchV1Api).readNamespacedCronJob({ namespace: "kube-system", name: "acr-credential-refresher" }))).toBe(
      true,
    );
    const pod = (await deployment()).spec?.template.spec;
    expect(pod?.containers[0]?.args).toEqual(["--watch"]);
    expect(pod?.volumes?.[0]?.projected?.sources?.map((source) => source.serviceAccountToken?.audience)).toEqual(["acr-credential-broker", "sts.aliyuncs.com"]);
    const configMap = await core().readNamespacedConfigMap({ namespace: "kube-system", name: "acr-configuration" });
    expect(parseRefresherConfig(configMap.data ?? {}).config.rrsa).toBe(true);
  });

  it("refuses an upgrade with bad values before touching the cluster: one line, the release and its objects as they were", async () => {
    const before: V1Deployment = await deployment();
    const upgrade = await chart("upgrade", { brokerUrl: "", mode: "watch" });
    expect(upgrade.code).not.toBe(0);
    expect(upgrade.stderr.trim().split("\n")).toHaveLength(1);
    expect(upgrade.stderr).toMatch(/brokerUrl is not set/);
    expect(await status()).toMatchObject({ version: 2, info: { status: "deployed" } });
    expect((await deployment()).metadata?.resourceVersion).toBe(before.metadata?.resourceVersion);
  });

  it("uninstalls everything it installed, and nothing else", async () => {
    const uninstall = await helmOn(["uninstall", release, "--namespace", "kube-system"]);
    expect(uninstall.code).toBe(0);
    const rbac = admin().makeApiClient(RbacAuthorizationV1Api);
    const admission = admin().makeApiClient(AdmissionregistrationV1Api);
    for (const read of [
      () => deployment(),
      () => core().readNamespacedConfigMap({ namespace: "kube-system", name: "acr-configuration" }),
      () => core().readNamespacedServiceAccount({ namespace: account.namespace, name: account.name }),
      () => rbac.readClusterRole({ name: "acr-credential-refresher" }),
      () => rbac.readClusterRoleBinding({ name: "acr-credential-refresher" }),
      () => rbac.readNamespacedRole({ namespace: "kube-system", name: "acr-credential-refresher" }),
      () => rbac.readNamespacedRoleBinding({ namespace: "kube-system", name: "acr-credential-refresher" }),
      () => admission.readValidatingAdmissionPolicy({ name: "acr-credential-refresher-own-secrets" }),
      () => admission.readValidatingAdmissionPolicyBinding({ name: "acr-credential-refresher-own-secrets" }),
    ]) {
      expect(await absent(read)).toBe(true);
    }
    // The refresher's own writes are not the release's: its status and the served namespace's pull secret stay.
    expect(await absent(() => core().readNamespacedConfigMap({ namespace: "kube-system", name: "acr-credential-status" }))).toBe(false);
    expect((await core().readNamespacedServiceAccount({ namespace: served, name: "default" })).imagePullSecrets).toHaveLength(1);
  });
});
