import { randomBytes } from "node:crypto";
import { CoreV1Api, KubeConfig, KubernetesObjectApi, PatchStrategy, type KubernetesObject, type V1ServiceAccount } from "@kubernetes/client-node";
import { inject } from "vitest";
import type { KubeTestEnv } from "./global-setup.ts";
import { kubeConfigForToken as kubeConfigFor, requestToken } from "../../cli/kubeconfig.ts";

/**
 * Helpers for `*.kube.test.ts` files, which share one kube-apiserver: every test makes its own
 * namespace. There is no controller-manager, so namespaces never finish deleting and no
 * `default` ServiceAccount appears by itself; create what a test needs explicitly.
 */
export type KubeEnv = Extract<KubeTestEnv, { available: true }>;

/** False when this run has no control plane (binaries not built, outside CI); use with `describe.skipIf`. */
export function kubeAvailable(): boolean {
  return inject("kube").available;
}

export function kubeEnv(): KubeEnv {
  const env = inject("kube");
  if (!env.available) throw new Error(`no Kubernetes control plane in this run: ${env.reason}`);
  return env;
}

/** A client config for the cluster admin (system:masters). */
export function adminConfig(): KubeConfig {
  const config = new KubeConfig();
  config.loadFromString(kubeEnv().kubeconfig);
  return config;
}

/** A client config that authenticates with `token` only, to run code as a ServiceAccount would. */
export function kubeConfigForToken(token: string, namespace?: string): KubeConfig {
  const { apiserverUrl, caPem } = kubeEnv();
  return kubeConfigFor({ server: apiserverUrl, caData: Buffer.from(caPem).toString("base64"), skipTLSVerify: false }, token, namespace);
}

/** Creates a namespace named `<prefix>-<random>` and returns its name. */
export async function createNamespace(prefix: string): Promise<string> {
  const base =
    prefix
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, "-")
      .replace(/^-+|-+$/g, "")
      .slice(0, 50) || "test";
  const name = `${base}-${randomBytes(4).toString("hex")}`;
  await adminConfig()
    .makeApiClient(CoreV1Api)
    .createNamespace({ body: { metadata: { name } } });
  return name;
}

export async function createServiceAccount(namespace: string, name: string): Promise<V1ServiceAccount> {
  return adminConfig()
    .makeApiClient(CoreV1Api)
    .createNamespacedServiceAccount({ namespace, body: { metadata: { name } } });
}

/**
 * A token for the ServiceAccount through the TokenRequest API. No audiences means the apiserver's
 * own (then the token works against the apiserver); 600 s is the shortest lifetime it accepts.
 */
export async function serviceAccountToken(namespace: string, name: string, audiences: string[] = [], expirationSeconds = 600): Promise<string> {
  return (await requestToken(adminConfig().makeApiClient(CoreV1Api), { namespace, name }, audiences, expirationSeconds)).token;
}

/** Server-side applies objects as the admin (RBAC setup, fixtures), in order, taking ownership of every field. */
export async function apply<T extends KubernetesObject>(objects: T[], fieldManager = "acr-credential-broker-tests"): Promise<T[]> {
  const client = KubernetesObjectApi.makeApiClient(adminConfig());
  const applied: T[] = [];
  for (const object of objects) {
    applied.push(await client.patch(object, undefined, undefined, fieldManager, true, PatchStrategy.ServerSideApply));
  }
  return applied;
}
