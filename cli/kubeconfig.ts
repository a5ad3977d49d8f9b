/**
 * How the refresher and `doctor` find their cluster: in-cluster config in a pod, else `--kubeconfig`,
 * `$KUBECONFIG` or `~/.kube/config`. `@kubernetes/client-node` falls back to `http://localhost:8080`
 * when none exists, so "nothing configured" is decided here from the files, before it loads anything.
 */
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";
import { KubeConfig, type CoreV1Api, type Cluster } from "@kubernetes/client-node";
import { AcrCredentialError } from "../shared/errors.ts";

export const inClusterTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token";

export function inCluster(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.KUBERNETES_SERVICE_HOST !== undefined && existsSync(inClusterTokenFile);
}

/** The kubeconfig files `loadFromDefault` would read, those that exist. */
export function defaultKubeConfigFiles(env: NodeJS.ProcessEnv = process.env): string[] {
  const listed = (env.KUBECONFIG ?? "").split(delimiter).filter((file) => file !== "");
  const home = env.HOME ?? userHome();
  const candidates = listed.length > 0 ? listed : home === undefined ? [] : [join(home, ".kube", "config")];
  return candidates.filter((file) => existsSync(file));
}

/** The user's home, or `undefined` for a uid without one (the image runs as 65532, with no passwd entry and no HOME). */
function userHome(): string | undefined {
  try {
    return homedir();
  } catch {
    return undefined;
  }
}

/** `--kubeconfig FILE`, else in-cluster config, else what `$KUBECONFIG` or `~/.kube/config` hold; never the library's localhost fallback. */
export function loadKubeConfig(file: string | undefined): KubeConfig {
  const notConfigured = () => new AcrCredentialError("FileUnreadable", "no Kubernetes cluster configured; run in a cluster or pass --kubeconfig");
  const kubeConfig = new KubeConfig();
  try {
    if (file !== undefined) kubeConfig.loadFromFile(file);
    else if (inCluster()) kubeConfig.loadFromCluster();
    else if (defaultKubeConfigFiles().length === 0) throw notConfigured();
    else kubeConfig.loadFromDefault();
  } catch (error) {
    if (error instanceof AcrCredentialError) throw error;
    throw new AcrCredentialError(
      "FileUnreadable",
      `cannot load the kubeconfig${file === undefined ? "" : ` ${file}`}: ${error instanceof Error ? error.message.split("\n")[0] : String(error)}; pass --kubeconfig`,
    );
  }
  if (kubeConfig.getCurrentCluster() === null) throw notConfigured();
  return kubeConfig;
}

/** A kubeconfig for `cluster` that authenticates with `token` only: how code acts as a ServiceAccount. */
export function kubeConfigForToken(cluster: Omit<Cluster, "name">, token: string, namespace?: string): KubeConfig {
  const config = new KubeConfig();
  config.loadFromOptions({
    clusters: [{ ...cluster, name: "cluster" }],
    users: [{ name: "token", token }],
    contexts: [{ name: "token", cluster: "cluster", user: "token", ...(namespace === undefined ? {} : { namespace }) }],
    currentContext: "token",
  });
  return config;
}

/** A ServiceAccount's token from the TokenRequest API; no audiences means the API server's own. */
export async function requestToken(
  core: CoreV1Api,
  account: { namespace: string; name: string },
  audiences: string[],
  expirationSeconds: number,
): Promise<{ token: string; expiresAt: number }> {
  const answer = await core.createNamespacedServiceAccountToken({ ...account, body: { spec: { audiences, expirationSeconds } } });
  const token = answer.status?.token;
  if (!token) throw new Error(`the TokenRequest for ${account.namespace}/${account.name} returned no token`);
  return { token, expiresAt: Date.parse(String(answer.status?.expirationTimestamp)) };
}
