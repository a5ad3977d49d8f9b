/**
 * The commands docs/troubleshooting.md tells a person to paste, run as written against the real API
 * server with the real kubectl (only the namespace is this test's own).
 */
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { BatchV1Api } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { builtBinaryDir, isExecutableFile, pinnedVersions } from "../kube/binaries.ts";
import { adminConfig, createNamespace, kubeAvailable, kubeEnv } from "../kube/cluster.ts";

const kubectlDir = builtBinaryDir(pinnedVersions().kubernetes);
const run = promisify(execFile);

/** The `$(...)` of the "last run's log" line: the command that picks the Job. */
async function documentedJobPicker(): Promise<string> {
  const docs = await readFile(new URL("../../docs/troubleshooting.md", import.meta.url), "utf8");
  const line = docs.split("\n").find((candidate) => candidate.startsWith("kubectl -n kube-system logs job/$("));
  if (line === undefined) throw new Error("docs/troubleshooting.md has no `kubectl -n kube-system logs job/$(…)` line");
  return line.slice(line.indexOf("$(") + 2, line.lastIndexOf(")"));
}

async function createRefresherJob(namespace: string, name: string): Promise<void> {
  const labels = { "app.kubernetes.io/name": "acr-credential-refresher" };
  await adminConfig()
    .makeApiClient(BatchV1Api)
    .createNamespacedJob({
      namespace,
      body: {
        metadata: { name },
        spec: { template: { metadata: { labels }, spec: { restartPolicy: "Never", containers: [{ name: "refresher", image: "acr-credential-refresher" }] } } },
      },
    });
}

describe.skipIf(!kubeAvailable() || !isExecutableFile(join(kubectlDir, "kubectl")))("docs/troubleshooting.md", () => {
  it("picks the newest refresher Job for its logs, not the last by name", async () => {
    const namespace = await createNamespace("docs-logs");
    // A Job created by hand (`kubectl create job --from=cronjob/…`) whose name sorts after the scheduled ones that follow it.
    await createRefresherJob(namespace, "acr-credential-refresher-manual");
    await new Promise((resolve) => setTimeout(resolve, 1_100)); // creationTimestamp has one-second resolution
    await createRefresherJob(namespace, "acr-credential-refresher-29100001");

    const picker = (await documentedJobPicker()).replace("-n kube-system", `-n ${namespace}`);
    const { stdout } = await run("sh", ["-c", picker], {
      env: { PATH: `${kubectlDir}:${process.env.PATH}`, KUBECONFIG: kubeEnv().kubeconfigFile, HOME: kubectlDir },
    });
    expect(stdout.trim()).toBe("acr-credential-refresher-29100001");
  });
});
