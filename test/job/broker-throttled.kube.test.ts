/**
 * A broker that throttles (429 with Retry-After, as Function Compute at its instance limit during
 * a fleet's burst) or is unavailable (503) is retried with jittered backoff — within the run's
 * deadline for a CronJob run, for as long as it runs with --watch — and the status ConfigMap says
 * so while it lasts. The scripted broker produces the fault; the API server is the real one.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import type { RegistryRequest } from "../../shared/broker-api.ts";
import { brokerClient } from "../../job/broker-client.ts";
import { refreshOnce } from "../../job/run.ts";
import { startWatch } from "../../job/watch.ts";
import { createNamespace, createServiceAccount, kubeAvailable } from "../kube/cluster.ts";
import { acquireRefresherLock } from "./kube-lock.ts";
import { installRefresher, readStatus, resetStatus, secretOrUndefined, setConfig, type RefresherFixture } from "./refresher-fixture.ts";
import { startScriptedBroker, type ScriptedBroker, type ScriptedReply } from "./scripted-broker.ts";
import { startStubBroker, type StubBroker } from "./stub-broker.ts";

const registryInfo = "- instanceId: cri-throttled\n  regionId: cn-hangzhou";

describe.skipIf(!kubeAvailable())("the refresher and a throttled broker", () => {
  let fixture: RefresherFixture;
  let stub: StubBroker;
  let release: () => Promise<void>;
  const brokers: ScriptedBroker[] = [];

  /** Fails the first `failures` requests with `fault`, then answers as the broker does. */
  const throttledBroker = async (failures: number, fault: ScriptedReply): Promise<ScriptedBroker> => {
    const broker = await startScriptedBroker((request, index) =>
      index < failures
        ? fault
        : {
            status: 200,
            body: {
              cluster: "test-cluster",
              subject: "system:serviceaccount:kube-system:aliyun-acr-credential-helper",
              credentials: ((request.body.registries ?? []) as RegistryRequest[]).map(stub.credentialFor),
              errors: [],
            },
          },
    );
    brokers.push(broker);
    return broker;
  };

  /** Every value `broker-retrying` takes in the status ConfigMap while `during` runs. */
  const retryingSeen = async <T>(during: Promise<T>): Promise<{ result: T; seen: string[] }> => {
    const seen: string[] = [];
    let done = false;
    const watching = (async () => {
      while (!done) {
        const value = (await readStatus().catch(() => undefined))?.["broker-retrying"];
        if (value !== undefined && !seen.includes(value)) seen.push(value);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();
    try {
      return { result: await during, seen };
    } finally {
      done = true;
      await watching;
    }
  };

  beforeAll(async () => {
    release = await acquireRefresherLock("broker-throttled.kube.test");
    fixture = await installRefresher();
    stub = await startStubBroker();
  });

  afterAll(async () => {
    await Promise.all(brokers.map((broker) => broker.close()));
    await stub?.close();
    await fixture?.close();
    await release?.();
  });

  it("once: waits out 429s as Retry-After asks, says so in the status meanwhile, and then succeeds", async () => {
    const broker = await throttledBroker(2, {
      status: 429,
      headers: { "retry-after": "1" },
      body: { error: { code: "RateLimited", message: "the broker is at its instance limit" } },
    });
    await resetStatus();
    await setConfig({ "broker-url": broker.url, "watch-namespace": "thr-once-*", "acr-registry-info": registryInfo });
    const namespace = await createNamespace("thr-once");
    await createServiceAccount(namespace, "default");

    const started = Date.now();
    const { result: report, seen } = await retryingSeen(
      refreshOnce(
        { cluster: fixture.cluster, logger: fixture.logger, broker: (url) => brokerClient({ url, tokenFile: fixture.tokenFile }) },
        { spreadWindowSeconds: 0, deadlineSeconds: 120 },
      ),
    );
    const tookMs = Date.now() - started;

    expect(report.exitCode).toBe(0);
    expect(broker.requests).toHaveLength(3);
    // Retry-After: 1 twice: at least two seconds, and well within the deadline.
    expect(tookMs).toBeGreaterThanOrEqual(2000);
    expect(await secretOrUndefined(namespace, report.registries[0]?.registry.secretName ?? "")).toBeDefined();
    expect(seen.length).toBeGreaterThanOrEqual(1);
    expect(parseYaml(seen[0] as string)).toMatchObject({ attempts: 1, lastError: expect.stringMatching(/^RateLimited: /) });
    expect(Date.parse((parseYaml(seen[0] as string) as { until: string }).until)).toBeGreaterThan(Date.now());
    const status = await readStatus();
    expect(status?.["broker-retrying"]).toBeUndefined();
    expect(status?.result).toBe("Succeeded");
  });

  it("once: gives up at the run's deadline, not after a fixed number of attempts", async () => {
    const broker = await throttledBroker(Number.POSITIVE_INFINITY, { status: 503, body: { error: { code: "UpstreamThrottled", message: "throttled" } } });
    await resetStatus();
    await setConfig({ "broker-url": broker.url, "watch-namespace": "thr-once-*", "acr-registry-info": registryInfo });
    // 60 s budget, 30 s of it kept for applying: about 30 s of retries.
    const started = Date.now();
    const report = await refreshOnce(
      { cluster: fixture.cluster, logger: fixture.logger, broker: (url) => brokerClient({ url, tokenFile: fixture.tokenFile }) },
      { spreadWindowSeconds: 0, deadlineSeconds: 60 },
    );
    const tookMs = Date.now() - started;
    expect(report.exitCode).toBe(1);
    expect(report.result).toBe("Failed");
    expect(broker.requests.length).toBeGreaterThan(4);
    expect(tookMs).toBeGreaterThan(15_000);
    expect(tookMs).toBeLessThan(45_000);
    expect((await readStatus())?.["broker-error"]).toMatch(/^UpstreamThrottled: /);
  }, 60_000);

  it("--watch: retries an unavailable broker, says so in the status meanwhile, and serves once it answers", async () => {
    const broker = await throttledBroker(3, { status: 503, body: { error: { code: "UpstreamUnavailable", message: "Function Compute has no instance" } } });
    await resetStatus();
    await setConfig({ "broker-url": broker.url, "watch-namespace": "thr-watch-*", "acr-registry-info": registryInfo });
    const namespace = await createNamespace("thr-watch");
    await createServiceAccount(namespace, "default");
    const watcher = startWatch(
      {
        kubeConfig: fixture.kubeConfig,
        cluster: fixture.cluster,
        logger: fixture.logger,
        broker: (url) => brokerClient({ url, tokenFile: fixture.tokenFile }),
      },
      { debounceMs: 100, statusIntervalMs: 100, spreadWindowSeconds: 0, healIntervalMs: 0 },
    );
    try {
      const { seen } = await retryingSeen(watcher.ready);
      expect(broker.requests).toHaveLength(4);
      expect(seen.length).toBeGreaterThanOrEqual(1);
      expect(parseYaml(seen[0] as string)).toMatchObject({ lastError: expect.stringMatching(/^UpstreamUnavailable: /) });
      expect(watcher.health()).toMatchObject({ watchConnected: true, brokerRetrying: false });
      const [secret] = (await readStatus().then((status) => parseYaml(status?.registries ?? "[]") as Array<{ secret: string }>)).map((entry) => entry.secret);
      expect(await secretOrUndefined(namespace, secret ?? "")).toBeDefined();
    } finally {
      await watcher.stop();
    }
    const status = await readStatus();
    expect(status?.["broker-retrying"]).toBeUndefined();
  });
});
