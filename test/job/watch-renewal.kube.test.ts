/**
 * The `--watch` refresher's renewal, which comes from its work queue: a registry the broker refused
 * at the start is asked for again when the renewal's time comes (30 s, the shortest renewal wait),
 * without any change in the cluster, and its Secret is then written. A real API server and the
 * stub broker; it takes those 30 s.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { brokerClient } from "../../job/broker-client.ts";
import { parseRefresherConfig } from "../../job/config.ts";
import { startWatch, type Watcher } from "../../job/watch.ts";
import { createNamespace, createServiceAccount, kubeAvailable } from "../kube/cluster.ts";
import { readStatus, resetStatus, secretOrUndefined, setConfig, startRefresherSuite, type RefresherFixture } from "./refresher-fixture.ts";
import type { StubBroker } from "./stub-broker.ts";

const registryInfo = "- instanceId: cri-renew\n  regionId: cn-hangzhou";
const [secret] = parseRefresherConfig({ "broker-url": "https://x.example", "acr-registry-info": registryInfo }).config.registries.map((r) => r.secretName) as [
  string,
];

describe.skipIf(!kubeAvailable())("--watch renewal", () => {
  let fixture: RefresherFixture;
  let broker: StubBroker;
  let close: (() => Promise<void>) | undefined;
  let watcher: Watcher | undefined;

  beforeAll(async () => {
    ({ fixture, broker, close } = await startRefresherSuite("watch-renewal.kube.test"));
  });

  afterAll(async () => {
    await watcher?.stop();
    await close?.();
  });

  it("asks the broker again when the renewal is due and serves the registry it refused before", async () => {
    await resetStatus();
    await setConfig({ "broker-url": broker.url, "watch-namespace": "renew-*", "acr-registry-info": registryInfo });
    const namespace = await createNamespace("renew-watch");
    await createServiceAccount(namespace, "default");
    broker.failFor(["cri-renew"]);
    watcher = startWatch(
      {
        kubeConfig: fixture.kubeConfig,
        cluster: fixture.cluster,
        logger: fixture.logger,
        broker: (url) => brokerClient({ url, tokenFile: fixture.tokenFile, attempts: 1 }),
      },
      { debounceMs: 100, statusIntervalMs: 200, spreadWindowSeconds: 0, healIntervalMs: 0 },
    );
    await watcher.ready;
    const asked = broker.requests.length;
    expect(await secretOrUndefined(namespace, secret)).toBeUndefined();
    const due = Date.parse((await readStatus())?.["next-broker-call"] ?? "");
    expect(due - Date.now()).toBeGreaterThan(20_000);

    broker.failFor([]);
    const started = Date.now();
    while ((await secretOrUndefined(namespace, secret)) === undefined && Date.now() - started < 45_000)
      await new Promise((resolve) => setTimeout(resolve, 250));
    console.log(`watch: refused registry served ${Date.now() - started} ms after the broker recovered (renewal due ${due - started} ms after)`);
    expect(await secretOrUndefined(namespace, secret)).toBeDefined();
    // Asked once more, when it was due (not before), and nothing else in the cluster changed meanwhile.
    expect(broker.requests.length).toBe(asked + 1);
    expect(Date.now()).toBeGreaterThanOrEqual(due);
    const registries = parseYaml((await readStatus())?.registries ?? "[]") as Array<{ secret: string; error?: string }>;
    expect(registries).toEqual([expect.objectContaining({ secret })]);
    expect(registries[0]?.error).toBeUndefined();
  }, 60_000);
});
