/**
 * A Secret of the refresher's deleted by hand comes back, although the refresher may not read
 * Secrets: from the kubelet's Event about it (once and watch), from the resync annotation and the
 * heal interval (watch). No kubelet runs in the test cluster, so the Event is written as the
 * kubelet writes it (k8s.io/kubernetes pkg/kubelet/kubelet_pods.go).
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { brokerClient } from "../../job/broker-client.ts";
import { parseRefresherConfig } from "../../job/config.ts";
import { missingPullSecretReason } from "../../job/pull-secret-events.ts";
import { startWatch, type Watcher, type WatchOptions } from "../../job/watch.ts";
import { createNamespace, createServiceAccount, kubeAvailable } from "../kube/cluster.ts";
import {
  core,
  startRefresherSuite,
  pullSecretNames,
  resetStatus,
  secretOrUndefined,
  serviceAccount,
  setConfig,
  type RefresherFixture,
  annotateResync,
} from "./refresher-fixture.ts";
import type { StubBroker } from "./stub-broker.ts";

const registryInfo = "- instanceId: cri-heal\n  regionId: cn-hangzhou";
const [secret] = parseRefresherConfig({ "broker-url": "https://x.example", "acr-registry-info": registryInfo }).config.registries.map((r) => r.secretName) as [
  string,
];

async function within(milliseconds: number, check: () => Promise<boolean>): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < milliseconds) {
    if (await check()) return Date.now() - started;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`not done within ${milliseconds} ms`);
}

/** The Warning Event the kubelet records on a pod whose pull Secret it cannot find. */
async function kubeletCannotFind(namespace: string, name: string): Promise<void> {
  const now = new Date();
  await core().createNamespacedEvent({
    namespace,
    body: {
      metadata: { name: `app.${randomBytes(6).toString("hex")}` },
      involvedObject: { apiVersion: "v1", kind: "Pod", namespace, name: "app" },
      reason: missingPullSecretReason,
      message: `Unable to retrieve some image pull secrets (${name}); attempting to pull the image may not succeed.`,
      type: "Warning",
      source: { component: "kubelet", host: "node-1" },
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    },
  });
}

const deleteByHand = (namespace: string) => core().deleteNamespacedSecret({ namespace, name: secret });
const exists = async (namespace: string) => (await secretOrUndefined(namespace, secret)) !== undefined;

describe.skipIf(!kubeAvailable())("a Secret deleted by hand comes back", () => {
  let fixture: RefresherFixture;
  let broker: StubBroker;
  let close: (() => Promise<void>) | undefined;
  let watcher: Watcher | undefined;
  const config = () => ({ "broker-url": broker.url, "watch-namespace": "heal-*", "acr-registry-info": registryInfo });

  beforeAll(async () => {
    ({ fixture, broker, close } = await startRefresherSuite("secret-healing.kube.test"));
  });

  afterAll(async () => {
    await watcher?.stop();
    await close?.();
  });

  const watch = async (options: WatchOptions) => {
    await watcher?.stop();
    watcher = startWatch(
      {
        kubeConfig: fixture.kubeConfig,
        cluster: fixture.cluster,
        logger: fixture.logger,
        broker: (url) => brokerClient({ url, tokenFile: fixture.tokenFile, attempts: 2 }),
      },
      { debounceMs: 100, statusIntervalMs: 200, spreadWindowSeconds: 0, ...options },
    );
    await watcher.ready;
  };

  describe("once: the next run, when the kubelet says it is missing", () => {
    it("writes it again with one unforced broker request, and then asks no more", async () => {
      await resetStatus();
      await setConfig(config());
      const namespace = await createNamespace("heal-once");
      await createServiceAccount(namespace, "default");
      expect((await fixture.run(broker.url)).exitCode).toBe(0);
      expect(await exists(namespace)).toBe(true);

      await deleteByHand(namespace);
      // Event times have whole seconds: the kubelet's comes in a later second than the run that wrote the Secret.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      await kubeletCannotFind(namespace, secret);
      const asked = broker.requests.length;
      const run = await fixture.run(broker.url);
      expect(run.exitCode).toBe(0);
      expect(run.need.reasons).toContainEqual({ code: "secret-missing", subject: namespace });
      expect(await exists(namespace)).toBe(true);
      // One request, served from the broker's cache (no force): the refresher holds no password between runs.
      expect(broker.requests.slice(asked).map((request) => request.body.force)).toEqual([undefined]);

      // The Event was answered: the run after asks nothing.
      const after = await fixture.run(broker.url);
      expect(after.need.call).toBe(false);
      expect(broker.requests.length).toBe(asked + 1);
    });
  });

  describe("--watch", () => {
    let namespace: string;

    beforeAll(async () => {
      await resetStatus();
      await setConfig(config());
      namespace = await createNamespace("heal-watch");
      await createServiceAccount(namespace, "default");
      await watch({ healIntervalMs: 0 });
      expect(await exists(namespace)).toBe(true);
      expect(pullSecretNames(await serviceAccount(namespace, "default"))).toEqual([secret]);
    });

    it("writes it again within seconds of the kubelet's Event, without asking the broker", async () => {
      await deleteByHand(namespace);
      const asked = broker.requests.length;
      await new Promise((resolve) => setTimeout(resolve, 1000));
      await kubeletCannotFind(namespace, secret);
      const tookMs = await within(5000, () => exists(namespace));
      console.log(`watch: Secret back ${tookMs} ms after the kubelet's Event`);
      expect(broker.requests.length).toBe(asked);
    });

    it("writes every Secret again at once when the resync annotation changes (the manual fix)", async () => {
      await deleteByHand(namespace);
      const asked = broker.requests.length;
      await annotateResync();
      const tookMs = await within(5000, () => exists(namespace));
      console.log(`watch: Secret back ${tookMs} ms after the resync annotation`);
      expect(broker.requests.length).toBe(asked + 1);
    });

    it("writes it again at the next heal when nothing else says it is missing", async () => {
      await watch({ healIntervalMs: 1000 });
      await deleteByHand(namespace);
      const tookMs = await within(5000, () => exists(namespace));
      console.log(`watch: Secret back ${tookMs} ms after its deletion with a 1 s heal interval`);
    });
  });
});
