/**
 * The refresher image's CMD on the Node.js LTS, read-only and as uid 65532, against the test
 * kube-apiserver with the in-cluster configuration and projected tokens a pod gets.
 */
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../emulator/fc-runtime/instances.ts";
import { parseRefresherConfig } from "../../job/config.ts";
import { createNamespace, createServiceAccount, kubeAvailable, kubeEnv, serviceAccountToken } from "../kube/cluster.ts";
import { acquireRefresherLock } from "../job/kube-lock.ts";
import {
  installRefresher,
  pullSecretNames,
  readStatus,
  refresherAccount,
  resetStatus,
  secretOrUndefined,
  serviceAccount,
  setConfig,
  type RefresherFixture,
} from "../job/refresher-fixture.ts";
import { startStubBroker, type StubBroker } from "../job/stub-broker.ts";
import { buildImage, imageRunUnavailable, runImage, startImage, type ImageFacts } from "./image.ts";

const unavailable = await imageRunUnavailable();

/** A projected volume's files as the kubelet writes them: readable by the pod's non-root user. */
async function volume(dir: string, files: Record<string, string>): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  await chmod(dir, 0o755);
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content, { mode: 0o644 });
  return dir;
}

describe.skipIf(!kubeAvailable() || unavailable !== undefined)("the refresher image on the Node.js LTS, read-only and as uid 65532, in a cluster", () => {
  let dir: string;
  let rootfs: string;
  let facts: ImageFacts;
  let fixture: RefresherFixture;
  let broker: StubBroker;
  let release: () => Promise<void>;

  beforeAll(async () => {
    release = await acquireRefresherLock("image.kube.test");
    dir = await mkdtemp(join(tmpdir(), "refresher-image-kube-"));
    ({ rootfs, facts } = await buildImage(dir));
    fixture = await installRefresher();
    broker = await startStubBroker();
  }, 120_000);

  afterAll(async () => {
    await broker?.close();
    await fixture?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
    await release?.();
  });

  /** The two projected volumes and the environment the kubelet gives the refresher's pod. */
  async function podEnvironment() {
    const { apiserverUrl, caPem } = kubeEnv();
    const apiserver = new URL(apiserverUrl);
    const { namespace: home, name } = refresherAccount;
    return {
      volumes: {
        kubernetes: await volume(join(dir, "kube-api-access"), { token: await serviceAccountToken(home, name, [], 3600), "ca.crt": caPem, namespace: home }),
        broker: await volume(join(dir, "broker-token"), { token: await serviceAccountToken(home, name, ["acr-credential-broker"], 3600) }),
      },
      env: { KUBERNETES_SERVICE_HOST: apiserver.hostname, KUBERNETES_SERVICE_PORT: apiserver.port },
    };
  }

  it("runs its CMD (--once) with the in-cluster configuration a pod gets, writes the Secret and attaches it", async () => {
    const namespace = await createNamespace("image-lts");
    await createServiceAccount(namespace, "default");
    // No fleet spread: the run asks the broker at once instead of after this cluster's delay.
    const data = {
      "broker-url": broker.url,
      "watch-namespace": namespace,
      "service-account": "default",
      "spread-window": "0",
      "acr-registry-info": "- instanceId: cri-imagelts\n  regionId: cn-hangzhou\n",
    };
    const [registry] = parseRefresherConfig(data).config.registries;
    await setConfig(data);
    await resetStatus();

    const result = await runImage(rootfs, facts, facts.cmd, await podEnvironment());

    expect(result.stderr).not.toMatch(/Warning|"level":(50|60)/);
    expect(result.code).toBe(0);
    expect(await secretOrUndefined(namespace, registry?.secretName ?? "")).toMatchObject({ type: "kubernetes.io/dockerconfigjson" });
    expect(pullSecretNames(await serviceAccount(namespace, "default"))).toEqual([registry?.secretName]);
    expect(await readStatus()).toMatchObject({ result: "Succeeded" });
  });

  it("runs --watch (the Deployment's args): answers its probes, serves a namespace created after it started, and stops on SIGTERM with exit 0", async () => {
    const data = {
      "broker-url": broker.url,
      "watch-namespace": "image-watch-*",
      "service-account": "default",
      "acr-registry-info": "- instanceId: cri-imagewatch\n  regionId: cn-beijing\n",
    };
    const [registry] = parseRefresherConfig(data).config.registries;
    await setConfig(data);
    await resetStatus();
    // The Deployment's port is 9102; a free one here, so that nothing else listening on 9102 gets in the way.
    const port = await freePort();
    const running = startImage(rootfs, facts, ["--watch", "--metrics-addr", `127.0.0.1:${port}`], { ...(await podEnvironment()), timeoutMs: 120_000 });
    try {
      // Started once its first pass has written the status.
      await expect.poll(readStatus, { timeout: 30_000, interval: 250 }).toMatchObject({ result: "Succeeded" });
      // What the kubelet's probes and Prometheus ask, from the process as the image runs it.
      await expect.poll(async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status, { timeout: 30_000, interval: 250 }).toBe(200);
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      expect(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()).toMatch(
        /^acr_credential_refresher_credential_expiry_timestamp_seconds\{registry="cri-imagewatch@cn-beijing",secret="acr-credential-[0-9a-f]{32}"\} \d+/m,
      );
      const namespace = await createNamespace("image-watch");
      await createServiceAccount(namespace, "default");
      await expect
        .poll(async () => pullSecretNames(await serviceAccount(namespace, "default")), { timeout: 30_000, interval: 250 })
        .toEqual([registry?.secretName]);
    } finally {
      running.kill("SIGTERM");
    }
    const result = await running.done;
    expect(result.stderr).not.toMatch(/Warning|"level":(50|60)/);
    expect(result.code).toBe(0);
  });
});
