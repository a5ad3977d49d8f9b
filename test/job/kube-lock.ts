import { ApiException, CoreV1Api } from "@kubernetes/client-node";
import { adminConfig } from "../kube/cluster.ts";

/**
 * The refresher's configuration and status live at fixed names in kube-system, shared by every
 * refresher test file on the one test apiserver; this lock (a ConfigMap that only one file can
 * create at a time) keeps those files from running their refreshers at the same time.
 */
const lockName = "acr-refresher-tests-lock";

export async function acquireRefresherLock(holder: string, timeoutMs = 600_000): Promise<() => Promise<void>> {
  const core = adminConfig().makeApiClient(CoreV1Api);
  const started = Date.now();
  for (;;) {
    try {
      await core.createNamespacedConfigMap({ namespace: "kube-system", body: { metadata: { name: lockName }, data: { holder } } });
      return async () => {
        await core.deleteNamespacedConfigMap({ namespace: "kube-system", name: lockName }).catch(() => undefined);
      };
    } catch (error) {
      if (!(error instanceof ApiException && error.code === 409)) throw error;
      if (Date.now() - started > timeoutMs) throw new Error(`${holder}: the refresher test lock is still held after ${timeoutMs} ms`, { cause: error });
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}
