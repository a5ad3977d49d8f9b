/**
 * The Kubernetes side of the refresher benchmark: the test control plane's binaries and kubectl
 * (built from the same Go module when missing), admin helpers, and the API server's own request
 * counter, which counts what any client did without instrumenting it.
 */
import { spawnSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { ApiException, CoreV1Api, KubeConfig, KubernetesObjectApi, PatchStrategy, type KubernetesObject } from "@kubernetes/client-node";
import pLimit from "p-limit";
import { Agent, fetch } from "undici";
import { parseAllDocuments } from "yaml";
import { builtBinaryDir, findPinnedKubeBinaries, isExecutableFile, pinnedVersions, type KubeBinaries } from "../test/kube/binaries.ts";
import type { ControlPlaneEndpoints } from "../test/kube/control-plane.ts";
import { requestToken } from "../cli/kubeconfig.ts";
import { repoPath, repoRoot } from "./processes.ts";

export interface KubeTools {
  binaries: KubeBinaries;
  kubectl: string;
}

/** kube-apiserver, etcd and kubectl of the pinned version; builds whatever is missing with test/kube/build.sh. */
export function kubeTools(log: (line: string) => void): KubeTools {
  const kubectl = join(builtBinaryDir(pinnedVersions().kubernetes), "kubectl");
  let lookup = findPinnedKubeBinaries();
  if (!lookup.found || !isExecutableFile(kubectl)) {
    log("refresher: building the test control plane and kubectl (bash test/kube/build.sh --with-kubectl)");
    const built = spawnSync("bash", [repoPath("test/kube/build.sh"), "--with-kubectl"], { cwd: repoRoot, stdio: "inherit" });
    if (built.status !== 0)
      throw new Error(
        "bench: kubectl and the test control plane could not be built; run `bash test/kube/build.sh --with-kubectl` (needs Go 1.26) and try again",
      );
    lookup = findPinnedKubeBinaries();
  }
  if (!lookup.found) throw new Error(`bench: ${lookup.reason}`);
  return { binaries: lookup.binaries, kubectl };
}

export function adminConfig(plane: ControlPlaneEndpoints): KubeConfig {
  const config = new KubeConfig();
  config.loadFromString(plane.kubeconfig);
  return config;
}

export function tokenKubeconfig(plane: ControlPlaneEndpoints, token: string): string {
  const config = new KubeConfig();
  config.loadFromOptions({
    clusters: [{ name: "bench", server: plane.apiserverUrl, caData: Buffer.from(plane.caPem).toString("base64"), skipTLSVerify: false }],
    users: [{ name: "refresher", token }],
    contexts: [{ name: "refresher", cluster: "bench", user: "refresher" }],
    currentContext: "refresher",
  });
  return config.exportConfig();
}

/** Server-side applies the refresher's shipped ServiceAccount and RBAC as the admin. */
export async function installRefresherRbac(plane: ControlPlaneEndpoints): Promise<void> {
  const client = KubernetesObjectApi.makeApiClient(adminConfig(plane));
  for (const file of ["serviceaccount.yaml", "rbac.yaml"]) {
    const text = await readFile(repoPath(`job/deploy/base/${file}`), "utf8");
    for (const document of parseAllDocuments(text)) {
      const object = document.toJS() as KubernetesObject | null;
      if (object !== null) await client.patch(object, undefined, undefined, "acr-credential-bench", true, PatchStrategy.ServerSideApply);
    }
  }
}

export async function serviceAccountToken(
  plane: ControlPlaneEndpoints,
  namespace: string,
  name: string,
  audiences: string[],
  expirationSeconds = 3600,
): Promise<string> {
  return (await requestToken(adminConfig(plane).makeApiClient(CoreV1Api), { namespace, name }, audiences, expirationSeconds)).token;
}

/** Creates namespaces with a `default` ServiceAccount each (there is no controller-manager to make it). */
export async function createNamespaces(plane: ControlPlaneEndpoints, names: readonly string[], concurrency = 16): Promise<void> {
  const core = adminConfig(plane).makeApiClient(CoreV1Api);
  const limit = pLimit(concurrency);
  await Promise.all(
    names.map((name) =>
      limit(async () => {
        await core.createNamespace({ body: { metadata: { name } } });
        await core.createNamespacedServiceAccount({ namespace: name, body: { metadata: { name: "default" } } });
      }),
    ),
  );
}

export async function setConfigMap(plane: ControlPlaneEndpoints, namespace: string, name: string, data: Record<string, string> | undefined): Promise<void> {
  const core = adminConfig(plane).makeApiClient(CoreV1Api);
  await core.deleteNamespacedConfigMap({ namespace, name }).catch((error: unknown) => {
    if (!(error instanceof ApiException && error.code === 404)) throw error;
  });
  if (data !== undefined) await core.createNamespacedConfigMap({ namespace, body: { metadata: { name }, data } });
}

/** resourceVersion of every Secret and ServiceAccount in the namespaces `selected` picks, read as the admin. */
export async function resourceVersions(plane: ControlPlaneEndpoints, selected: (namespace: string) => boolean): Promise<Map<string, string>> {
  const core = adminConfig(plane).makeApiClient(CoreV1Api);
  const versions = new Map<string, string>();
  const collect = async (
    kind: string,
    list: (
      _continue?: string,
    ) => Promise<{ items: Array<{ metadata?: { namespace?: string; name?: string; resourceVersion?: string } }>; metadata?: { _continue?: string } }>,
  ) => {
    let token: string | undefined;
    do {
      const page = await list(token);
      for (const item of page.items) {
        const namespace = item.metadata?.namespace ?? "";
        if (selected(namespace)) versions.set(`${kind}/${namespace}/${item.metadata?.name}`, item.metadata?.resourceVersion ?? "");
      }
      token = page.metadata?._continue || undefined;
    } while (token !== undefined);
  };
  await collect("Secret", (_continue) => core.listSecretForAllNamespaces({ limit: 500, ...(_continue ? { _continue } : {}) }));
  await collect("ServiceAccount", (_continue) => core.listServiceAccountForAllNamespaces({ limit: 500, ...(_continue ? { _continue } : {}) }));
  return versions;
}

export function changedVersions(before: ReadonlyMap<string, string>, after: ReadonlyMap<string, string>): string[] {
  const keys = new Set([...before.keys(), ...after.keys()]);
  return [...keys].filter((key) => before.get(key) !== after.get(key)).sort();
}

/** Sum of `apiserver_request_total` over resource requests (every verb, every client), from the API server's /metrics. */
export async function resourceRequestCount(plane: ControlPlaneEndpoints): Promise<number> {
  const dispatcher = new Agent({ connect: { ca: plane.caPem } });
  try {
    const response = await fetch(`${plane.apiserverUrl}/metrics`, { dispatcher, headers: { authorization: `Bearer ${plane.adminToken}` } });
    if (!response.ok) throw new Error(`GET /metrics answered ${response.status}`);
    return countResourceRequests(await response.text());
  } finally {
    await dispatcher.close();
  }
}

/** Pure: the resource-request total from Prometheus text (lines without a `resource` are /healthz, /metrics and the like). */
export function countResourceRequests(metrics: string): number {
  let total = 0;
  for (const line of metrics.split("\n")) {
    if (!line.startsWith("apiserver_request_total{")) continue;
    const resource = /[{,]resource="([^"]*)"/.exec(line)?.[1];
    if (!resource) continue;
    total += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return total;
}
