/**
 * `acr-credential refresh --watch` as its Deployment runs it, in a child process against the real
 * API server, scraped over HTTP: the probes' endpoints and the metrics, each value checked against
 * what the stub broker and the cluster did.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CoreV1Api, EventsV1Api } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseRefresherConfig } from "../../job/config.ts";
import { adminConfig, createNamespace, createServiceAccount, kubeAvailable } from "../kube/cluster.ts";
import { start, type Running } from "../cli/commands/support.ts";
import { acquireRefresherLock } from "./kube-lock.ts";
import { installRefresher, resetStatus, setConfig, type RefresherFixture } from "./refresher-fixture.ts";
import { sample } from "./metrics-text.ts";
import { startStubBroker, type StubBroker } from "./stub-broker.ts";

const registries = "- instanceId: cri-metone\n  regionId: cn-hangzhou\n- instanceId: cri-mettwo\n  regionId: cn-hangzhou";
const [one, two] = parseRefresherConfig({ "broker-url": "https://x.example", "acr-registry-info": registries }).config.registries.map((r) => r.secretName) as [
  string,
  string,
];
const metric = "acr_credential_refresher_";

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what} not seen within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describe.skipIf(!kubeAvailable())("the --watch refresher's metrics and probes, scraped from its process", () => {
  let fixture: RefresherFixture;
  let broker: StubBroker;
  let release: () => Promise<void>;
  let refresher: Running;
  let dir: string;
  let base: string;
  let served: string[];
  let crowded: string;

  beforeAll(async () => {
    release = await acquireRefresherLock("metrics.kube.test");
    fixture = await installRefresher();
    broker = await startStubBroker();
    broker.failFor(["cri-mettwo"]);
    served = [await createNamespace("rfr-metrics-a"), await createNamespace("rfr-metrics-b")];
    crowded = served[1] as string;
    for (const namespace of served) await createServiceAccount(namespace, "default");
    // Someone else's Secret under the refresher's name: a conflict in that namespace.
    await adminConfig()
      .makeApiClient(CoreV1Api)
      .createNamespacedSecret({ namespace: crowded, body: { metadata: { name: one }, type: "Opaque", stringData: { mine: "yes" } } });
    await resetStatus();
    await setConfig({ "broker-url": broker.url, "watch-namespace": "rfr-metrics-*", "acr-registry-info": registries });
    dir = await mkdtemp(join(tmpdir(), "refresher-metrics-"));
    const kubeconfig = join(dir, "kubeconfig");
    await writeFile(kubeconfig, fixture.kubeConfig.exportConfig());
    refresher = start(["refresh", "--watch", "--kubeconfig", kubeconfig, "--token-file", fixture.tokenFile, "--metrics-addr", "127.0.0.1:0", "--no-spread"], {
      ...process.env,
      LOG_LEVEL: "info",
    });
    const [, address] = await refresher.waitFor(/"address":"(127\.0\.0\.1:\d+)"[^\n]*serving \/metrics/, "stderr");
    base = `http://${address}`;
  }, 120_000);

  afterAll(async () => {
    await refresher?.stop("SIGTERM");
    await broker?.close();
    await fixture?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    await release?.();
  });

  it("answers /healthz at once and /readyz once its first reconcile has completed", async () => {
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    await until("/readyz 200", 30_000, async () => ((await fetch(`${base}/readyz`)).status === 200 ? true : undefined));
    expect((await fetch(`${base}/nowhere`)).status).toBe(404);
  });

  it("reports the credential's expiry as the broker gave it, the refused registry, the namespaces and the conflict", async () => {
    const text = await until("the first status in the metrics", 30_000, async () => {
      const body = await (await fetch(`${base}/metrics`)).text();
      return sample(body, `${metric}namespaces_served`) === served.length ? body : undefined;
    });
    expect(sample(text, `${metric}credential_expiry_timestamp_seconds`, { registry: "cri-metone@cn-hangzhou", secret: one })).toBe(
      Date.parse(broker.credentialFor({ instanceId: "cri-metone", regionId: "cn-hangzhou" }).expiresAt) / 1000,
    );
    // The refused registry has never had a credential: no expiry to report.
    expect(sample(text, `${metric}credential_expiry_timestamp_seconds`, { secret: two })).toBeUndefined();
    expect(sample(text, `${metric}conflicts`, { kind: "exists" })).toBe(1);
    expect(sample(text, `${metric}namespaces_failed`)).toBe(1);
    expect(sample(text, `${metric}run_result`, { result: "PartiallyFailed" })).toBe(1);
    expect(sample(text, `${metric}run_result`, { result: "Succeeded" })).toBe(0);
    expect(sample(text, `${metric}last_success_timestamp_seconds`)).toBe(0);
    expect(sample(text, `${metric}last_run_timestamp_seconds`)).toBeGreaterThan(Date.now() / 1000 - 120);
    expect(text).not.toMatch(/stub-password/);
    expect(text).toMatch(/^process_cpu_user_seconds_total /m);
  });

  it("counts every broker call and every refusal the broker sent, and times the calls", async () => {
    const calls = broker.requests.length;
    const text = await (await fetch(`${base}/metrics`)).text();
    expect(broker.requests.length).toBe(calls);
    expect(calls).toBeGreaterThan(0);
    const askedForTwo = broker.requests.filter((request) => JSON.stringify(request.body).includes("cri-mettwo")).length;
    expect(sample(text, `${metric}broker_requests_total`, { outcome: "success", code: "OK" })).toBe(calls);
    expect(sample(text, `${metric}broker_refusals_total`, { registry: "cri-mettwo@cn-hangzhou", code: "UpstreamThrottled" })).toBe(askedForTwo);
    expect(sample(text, `${metric}broker_refusals_total`, { registry: "cri-metone@cn-hangzhou" })).toBeUndefined();
    expect(sample(text, `${metric}broker_request_duration_seconds_count`, { outcome: "success" })).toBe(calls);
  });

  it("raises a RegistryRefused Event on the configuration ConfigMap, where kubectl describe finds it by uid", async () => {
    const configMap = await adminConfig().makeApiClient(CoreV1Api).readNamespacedConfigMap({ namespace: "kube-system", name: "acr-configuration" });
    const events = await until("the RegistryRefused Event", 30_000, async () => {
      const list = await adminConfig().makeApiClient(EventsV1Api).listNamespacedEvent({ namespace: "kube-system" });
      const found = list.items.filter((event) => event.reason === "RegistryRefused" && event.regarding?.uid === configMap.metadata?.uid);
      return found.length > 0 ? found : undefined;
    });
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      type: "Warning",
      regarding: { kind: "ConfigMap", name: "acr-configuration" },
      note: expect.stringMatching(/registry cri-mettwo@cn-hangzhou .*UpstreamThrottled/),
    });
  });

  it("stops on SIGTERM with exit 0 and stops serving", async () => {
    expect(await refresher.stop("SIGTERM")).toBe(0);
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
  });
});
