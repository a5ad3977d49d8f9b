import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { brokerClient } from "../../job/broker-client.ts";
import { parseRefresherConfig } from "../../job/config.ts";
import { startWatch, type Watcher } from "../../job/watch.ts";
import { createNamespace, createServiceAccount, kubeAvailable } from "../kube/cluster.ts";
import { acquireRefresherLock } from "./kube-lock.ts";
import {
  installRefresher,
  pullSecretNames,
  readStatus,
  resetStatus,
  secretOrUndefined,
  serviceAccount,
  setConfig,
  type RefresherFixture,
  annotateResync,
} from "./refresher-fixture.ts";
import { startStubBroker, type StubBroker } from "./stub-broker.ts";

const oneRegistry = "- instanceId: cri-watchone\n  regionId: cn-hangzhou";
const twoRegistries = `${oneRegistry}\n- instanceId: cri-watchtwo\n  regionId: cn-shanghai`;
const [one, two] = parseRefresherConfig({ "broker-url": "https://x.example", "acr-registry-info": twoRegistries }).config.registries.map(
  (r) => r.secretName,
) as [string, string];

/** Polls until `check` passes or the time is up; returns how long it took. */
async function within(milliseconds: number, check: () => Promise<boolean>): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < milliseconds) {
    if (await check()) return Date.now() - started;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`not done within ${milliseconds} ms`);
}

describe.skipIf(!kubeAvailable())("the refresher in --watch mode", () => {
  let fixture: RefresherFixture;
  let broker: StubBroker;
  let release: () => Promise<void>;
  let watcher: Watcher;
  let existing: string;

  beforeAll(async () => {
    release = await acquireRefresherLock("watch.kube.test");
    fixture = await installRefresher();
    broker = await startStubBroker();
    existing = await createNamespace("rfr-watch-existing");
    await createServiceAccount(existing, "default");
    await resetStatus();
    await setConfig({ "broker-url": broker.url, "watch-namespace": "rfr-watch-*", "service-account": "default,late", "acr-registry-info": oneRegistry });
    watcher = startWatch(
      {
        kubeConfig: fixture.kubeConfig,
        cluster: fixture.cluster,
        logger: fixture.logger,
        broker: (url) => brokerClient({ url, tokenFile: fixture.tokenFile, attempts: 2, sleep: async () => {} }),
      },
      { debounceMs: 100, statusIntervalMs: 200 },
    );
    await watcher.ready;
  });

  afterAll(async () => {
    await watcher?.stop();
    await broker?.close();
    await fixture?.close();
    await release?.();
  });

  it("serves the namespaces that exist when it starts", async () => {
    expect(await secretOrUndefined(existing, one)).toBeDefined();
    expect(pullSecretNames(await serviceAccount(existing, "default"))).toEqual([one]);
  });

  it("gives a namespace created after the start its Secret and ServiceAccount entry within 5 s", async () => {
    const namespace = await createNamespace("rfr-watch-new");
    await createServiceAccount(namespace, "default");
    await within(
      5000,
      async () => (await secretOrUndefined(namespace, one)) !== undefined && pullSecretNames(await serviceAccount(namespace, "default")).includes(one),
    );
  });

  it("serves a burst of namespaces created at once in fewer reconciles than namespaces (those queued together are one scope)", async () => {
    const seen = fixture.logs.length;
    const burst = await Promise.all(Array.from({ length: 20 }, () => createNamespace("rfr-watch-burst")));
    await Promise.all(burst.map((namespace) => createServiceAccount(namespace, "default")));
    const served = async (namespace: string) => pullSecretNames(await serviceAccount(namespace, "default")).includes(one);
    const tookMs = await within(10_000, async () => (await Promise.all(burst.map(served))).every(Boolean));
    const reconciles = fixture.logs
      .slice(seen)
      .filter((line) => line.includes('"msg":"reconciled"') && burst.some((namespace) => line.includes(namespace))).length;
    console.log(`watch: ${burst.length} namespaces created at once served in ${tookMs} ms by ${reconciles} reconciles`);
    expect(reconciles).toBeLessThan(burst.length);
  });

  it("attaches the Secret to a chosen ServiceAccount created later in a served namespace", async () => {
    await createServiceAccount(existing, "late");
    await within(5000, async () => pullSecretNames(await serviceAccount(existing, "late")).includes(one));
    await createServiceAccount(existing, "not-chosen");
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(pullSecretNames(await serviceAccount(existing, "not-chosen"))).toEqual([]);
  });

  it("picks up a changed ConfigMap without a restart", async () => {
    await setConfig({ "broker-url": broker.url, "watch-namespace": "rfr-watch-*", "service-account": "default,late", "acr-registry-info": twoRegistries });
    // Watched, not polled: seconds at most (it was polled every minute).
    const tookMs = await within(5000, async () => pullSecretNames(await serviceAccount(existing, "default")).includes(two));
    console.log(`watch: configuration change applied in ${tookMs} ms`);
    expect(await secretOrUndefined(existing, two)).toBeDefined();
  });

  it("asks the broker for credentials that outlast the threshold by one schedule interval, without force, so that it shares the fleet's refresh", async () => {
    // Every request so far: the start and the configuration change. 15 min threshold + 5 min = 1200 s.
    expect(broker.requests.length).toBeGreaterThan(0);
    for (const request of broker.requests) expect(request.body).toMatchObject({ minValiditySeconds: 1200 });
    expect(broker.requests.some((request) => request.body["force"] === true)).toBe(false);
  });

  it("asks with force when a person sets the resync annotation", async () => {
    const before = broker.requests.length;
    await annotateResync();
    await within(5000, async () => broker.requests.length > before);
    expect(broker.requests.slice(before)[0]?.body).toMatchObject({ force: true });
    expect(broker.requests.slice(before)[0]?.body).not.toHaveProperty("minValiditySeconds");
  });

  it("keeps its status ConfigMap current", async () => {
    await within(5000, async () => (await readStatus())?.mode === "watch" && ((await readStatus())?.registries ?? "").includes(two));
    const status = await readStatus();
    expect(parseYaml(status?.summary ?? "")).toMatchObject({ failures: 0, conflicts: 0 });
    // The renewal timer, spread by this cluster's delay within the default 2m window.
    expect(status?.["spread-delay"]).toMatch(/^\d+(m\d+s|m|s) \(window 2m\)$/);
    expect(Date.parse(status?.["next-broker-call"] ?? "")).toBeGreaterThan(Date.now());
  });
});
