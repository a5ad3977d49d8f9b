/**
 * `--watch` through a network that fails: the refresher reaches the real API server through a TCP
 * relay that can drop every connection and then accept new ones without ever answering (a
 * middlebox or an API server that takes connections and hangs), which the API server itself cannot
 * be made to do on demand. Once the network is back the watcher must serve again by itself.
 */
import { createServer, connect, type AddressInfo, type Server, type Socket } from "node:net";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { brokerClient } from "../../job/broker-client.ts";
import { kubernetesCluster } from "../../job/cluster.ts";
import { parseRefresherConfig } from "../../job/config.ts";
import { startWatch, type Watcher } from "../../job/watch.ts";
import { createNamespace, createServiceAccount, kubeAvailable, kubeEnv } from "../kube/cluster.ts";
import { acquireRefresherLock } from "./kube-lock.ts";
import { installRefresher, pullSecretNames, resetStatus, secretOrUndefined, serviceAccount, setConfig, type RefresherFixture } from "./refresher-fixture.ts";
import { startStubBroker, type StubBroker } from "./stub-broker.ts";

interface Relay {
  url: string;
  /** Resets every open connection and holds new ones unanswered until `restore`. */
  partition(): void;
  restore(): void;
  close(): Promise<void>;
}

async function startRelay(target: URL): Promise<Relay> {
  let partitioned = false;
  const open = new Set<Socket>();
  const held = new Set<Socket>();
  const server: Server = createServer((client) => {
    client.on("error", () => undefined);
    if (partitioned) {
      held.add(client);
      return;
    }
    const upstream = connect(Number(target.port), target.hostname);
    upstream.on("error", () => client.destroy());
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    client.pipe(upstream).pipe(client);
    open.add(client).add(upstream);
    client.on("close", () => open.delete(client));
    upstream.on("close", () => open.delete(upstream));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    partition: () => {
      partitioned = true;
      for (const socket of open) socket.resetAndDestroy();
    },
    // Connections held during the partition stay unanswered, as a lost SYN-ACK's would: only new ones get through.
    restore: () => void (partitioned = false),
    close: async () => {
      for (const socket of [...open, ...held]) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const registryInfo = "- instanceId: cri-network\n  regionId: cn-hangzhou";
const [secret] = parseRefresherConfig({ "broker-url": "https://x.example", "acr-registry-info": registryInfo }).config.registries.map((r) => r.secretName) as [
  string,
];

async function within(milliseconds: number, check: () => Promise<boolean>): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < milliseconds) {
    if (await check().catch(() => false)) return Date.now() - started;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`not done within ${milliseconds} ms`);
}

describe.skipIf(!kubeAvailable())("--watch when the network to its API server fails", () => {
  let fixture: RefresherFixture;
  let broker: StubBroker;
  let relay: Relay;
  let release: () => Promise<void>;
  let watcher: Watcher;

  beforeAll(async () => {
    release = await acquireRefresherLock("watch-network.kube.test");
    fixture = await installRefresher();
    broker = await startStubBroker();
    relay = await startRelay(new URL(kubeEnv().apiserverUrl));
    await resetStatus();
    await setConfig({ "broker-url": broker.url, "watch-namespace": "net-*", "acr-registry-info": registryInfo });
    // The refresher's own credentials, through the relay.
    const exported = JSON.parse(fixture.kubeConfig.exportConfig()) as { clusters: Array<{ cluster: { server: string } }> };
    for (const entry of exported.clusters) entry.cluster.server = relay.url;
    const throughRelay = new KubeConfig();
    throughRelay.loadFromString(JSON.stringify(exported));
    watcher = startWatch(
      {
        kubeConfig: throughRelay,
        cluster: kubernetesCluster(throughRelay, { requestTimeoutMs: 3000 }),
        logger: fixture.logger,
        broker: (url) => brokerClient({ url, tokenFile: fixture.tokenFile, attempts: 2 }),
      },
      {
        debounceMs: 100,
        statusIntervalMs: 200,
        spreadWindowSeconds: 0,
        healIntervalMs: 0,
        requestTimeoutMs: 2000,
        reconnect: { baseDelayMs: 200, maxDelayMs: 1000, maxAttempts: Number.POSITIVE_INFINITY },
      },
    );
    await watcher.ready;
  });

  afterAll(async () => {
    await watcher?.stop();
    await relay?.close();
    await broker?.close();
    await fixture?.close();
    await release?.();
  });

  const served = async (namespace: string) =>
    (await secretOrUndefined(namespace, secret)) !== undefined && pullSecretNames(await serviceAccount(namespace, "default")).includes(secret);

  it("serves a namespace created after the network came back, reconnecting watches whose requests went unanswered", async () => {
    const before = await createNamespace("net-before");
    await createServiceAccount(before, "default");
    await within(5000, () => served(before));

    relay.partition();
    await within(5000, async () => !watcher.health().watchConnected);
    // Long enough for reconnects to be made, and held unanswered, during the partition.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    relay.restore();
    const backAt = Date.now();

    const after = await createNamespace("net-after");
    await createServiceAccount(after, "default");
    const tookMs = await within(20_000, () => served(after));
    await within(10_000, async () => watcher.health().watchConnected);
    console.log(
      `watch: a namespace created after the network came back was served in ${tookMs} ms (unanswered requests time out after 2 s here, 30 s by default)`,
    );
    expect(Date.now() - backAt).toBeLessThan(30_000);
  }, 60_000);
});
