/**
 * The refresher's Warning Events on the real API server, under its shipped RBAC: on the object
 * concerned (with its uid where it can be read, so `kubectl describe` lists them), and folded into
 * one Event with a series when the same problem is seen again, by the next CronJob run or by the
 * same `--watch` process.
 */
import { EventsV1Api, PatchStrategy, setHeaderOptions, type EventsV1Event } from "@kubernetes/client-node";
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { brokerClient } from "../../job/broker-client.ts";
import { kubernetesCluster, type ClusterApi } from "../../job/cluster.ts";
import { parseRefresherConfig } from "../../job/config.ts";
import { eventRecorder, namedEvent } from "../../job/events.ts";
import { startWatch } from "../../job/watch.ts";
import { builtBinaryDir, isExecutableFile, pinnedVersions } from "../kube/binaries.ts";
import { adminConfig, createNamespace, createServiceAccount, kubeAvailable, kubeEnv } from "../kube/cluster.ts";
import { cli } from "../cli/commands/support.ts";
import { core, startRefresherSuite, resetStatus, setConfig, type RefresherFixture } from "./refresher-fixture.ts";
import type { StubBroker } from "./stub-broker.ts";

const registry = "- instanceId: cri-evone\n  regionId: cn-hangzhou";
const [one] = parseRefresherConfig({ "broker-url": "https://x.example", "acr-registry-info": registry }).config.registries.map((r) => r.secretName) as [string];

async function eventsIn(namespace: string, reason: string): Promise<EventsV1Event[]> {
  const list = await adminConfig().makeApiClient(EventsV1Api).listNamespacedEvent({ namespace });
  return list.items.filter((event) => event.reason === reason);
}

// Built by `bash test/kube/build.sh --with-kubectl` (as .ci/run does).
const kubectl = join(builtBinaryDir(pinnedVersions().kubernetes), "kubectl");

const takeName = (namespace: string) =>
  core().createNamespacedSecret({ namespace, body: { metadata: { name: one }, type: "Opaque", stringData: { mine: "yes" } } });

describe.skipIf(!kubeAvailable())("the refresher's Events", () => {
  let fixture: RefresherFixture;
  let broker: StubBroker;
  let close: (() => Promise<void>) | undefined;
  let configMapUid: string;

  beforeAll(async () => {
    ({ fixture, broker, close } = await startRefresherSuite("events.kube.test"));
  });

  afterAll(async () => {
    await close?.();
  });

  const configure = async (data: Record<string, string>) => {
    await resetStatus();
    await setConfig({ "broker-url": broker.url, "acr-registry-info": registry, ...data });
    configMapUid = (await core().readNamespacedConfigMap({ namespace: "kube-system", name: "acr-configuration" })).metadata?.uid ?? "";
  };

  it("keeps one SecretNameTaken Event for a lasting conflict, its series counting the CronJob runs that saw it", async () => {
    const namespace = await createNamespace("rfr-ev-taken");
    await createServiceAccount(namespace, "default");
    await takeName(namespace);
    await configure({ "watch-namespace": namespace });
    for (let run = 1; run <= 3; run += 1) expect((await fixture.run(broker.url)).exitCode).toBe(1);
    const events = await eventsIn(namespace, "SecretNameTaken");
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      type: "Warning",
      action: "LeftAlone",
      regarding: { kind: "Secret", name: one },
      series: { count: 3 },
      note: expect.stringMatching(/rename or delete it/),
    });
    expect(events[0]?.series?.lastObservedTime).toBeDefined();
  });

  it("puts ServiceAccountApplied on the ServiceAccount by uid, where kubectl describe looks", async () => {
    const namespace = await createNamespace("rfr-ev-helm");
    const body = { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "app", namespace }, imagePullSecrets: [{ name: "corp-pull" }] };
    const account = await core().patchNamespacedServiceAccount(
      { namespace, name: "app", body, fieldManager: "helm", force: false },
      setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply),
    );
    await configure({ "watch-namespace": namespace, "service-account": "app" });
    await fixture.run(broker.url);
    expect(await eventsIn(namespace, "ServiceAccountApplied")).toEqual([
      expect.objectContaining({ regarding: expect.objectContaining({ kind: "ServiceAccount", name: "app", uid: account.metadata?.uid }) }),
    ]);
  });

  it("says RefreshFailed on the configuration ConfigMap when the broker cannot be reached, and RegistryRefused for a registry it refuses", async () => {
    const namespace = await createNamespace("rfr-ev-broker");
    await configure({ "watch-namespace": namespace });
    const before = (await eventsIn("kube-system", "RefreshFailed")).length;
    const unreachable = "http://127.0.0.1:9";
    expect((await fixture.run(unreachable)).result).toBe("Failed");
    const failed = await eventsIn("kube-system", "RefreshFailed");
    expect(failed.length).toBe(before + 1);
    expect(failed.find((event) => event.regarding?.uid === configMapUid)).toMatchObject({
      regarding: { kind: "ConfigMap", name: "acr-configuration" },
      note: expect.stringMatching(/^no credential could be fetched: BrokerUnreachable: cannot reach the broker at http:\/\/127\.0\.0\.1:9\//),
    });

    broker.failFor(["cri-evone"]);
    try {
      await fixture.run(broker.url);
    } finally {
      broker.failFor([]);
    }
    expect((await eventsIn("kube-system", "RegistryRefused")).filter((event) => event.regarding?.uid === configMapUid)).toEqual([
      expect.objectContaining({ note: expect.stringMatching(/cri-evone@cn-hangzhou .*: UpstreamThrottled: throttled by the stub/) }),
    ]);
  });

  it.skipIf(!isExecutableFile(kubectl))(
    "are what `kubectl describe configmap acr-configuration` shows under Events, and what the refresher's listing of Events shows",
    async () => {
      // configure() creates the ConfigMap again (a new uid): the Events earlier tests wrote are about its predecessor.
      await configure({ "watch-namespace": await createNamespace("rfr-ev-describe") });
      broker.failFor(["cri-evone"]);
      try {
        await fixture.run(broker.url);
      } finally {
        broker.failFor([]);
      }
      const dir = await mkdtemp(join(tmpdir(), "events-describe-"));
      try {
        await writeFile(join(dir, "kubeconfig"), kubeEnv().kubeconfig);
        const { stdout } = await promisify(execFile)(kubectl, [
          "--kubeconfig",
          join(dir, "kubeconfig"),
          "describe",
          "configmap",
          "-n",
          "kube-system",
          "acr-configuration",
        ]);
        expect(stdout).toMatch(/Events:[\s\S]*Warning\s+RegistryRefused\s[\s\S]*cri-evone@cn-hangzhou/);
        // The listing docs/refresher.md gives.
        const listed = await promisify(execFile)(kubectl, [
          "--kubeconfig",
          join(dir, "kubeconfig"),
          "get",
          "events",
          "-A",
          "--field-selector",
          "reportingComponent=acr-credential-broker.io/refresher",
        ]);
        expect(listed.stdout).toMatch(/RegistryRefused\s+configmap\/acr-configuration/);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );

  it("says WritesFailed on the ConfigMap, naming the namespace, when a write fails there", async () => {
    const [doomed, healthy] = [await createNamespace("rfr-ev-doomed"), await createNamespace("rfr-ev-healthy")];
    for (const namespace of [doomed, healthy]) await createServiceAccount(namespace, "default");
    await configure({ "watch-namespace": `${doomed},${healthy}` });
    // The namespace starts terminating after the refresher listed it: the API server then refuses writes there.
    const terminating: ClusterApi = {
      ...fixture.cluster,
      async applySecret(secret, uid) {
        if (secret.metadata.namespace === doomed) await core().deleteNamespace({ name: doomed });
        return fixture.cluster.applySecret(secret, uid);
      },
    };
    expect((await fixture.run(broker.url, {}, terminating)).exitCode).toBe(1);
    const events = (await eventsIn("kube-system", "WritesFailed")).filter((event) => event.regarding?.uid === configMapUid);
    expect(events).toEqual([
      expect.objectContaining({ note: expect.stringContaining(`writes failed in ${doomed} (first: Secret ${doomed}/${one}: KubernetesError)`) }),
    ]);
  });

  it("says ConfigInvalid on the ConfigMap a CronJob run refuses (exit 2, one line), and counts the runs that refused it", async () => {
    await configure({ "watch-namespace": "default", "expiring-threshold": "soon" });
    const dir = await mkdtemp(join(tmpdir(), "events-cli-"));
    try {
      await writeFile(join(dir, "kubeconfig"), fixture.kubeConfig.exportConfig());
      const args = ["refresh", "--once", "--kubeconfig", join(dir, "kubeconfig"), "--token-file", fixture.tokenFile, "--broker-url", broker.url];
      for (let run = 1; run <= 2; run += 1) {
        const result = await cli(args);
        expect(result.code).toBe(2);
        expect(result.stderr.trim().split("\n")).toHaveLength(1);
        expect(result.stderr).toMatch(/expiring-threshold.*\[ConfigInvalid\]$/m);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    const events = (await eventsIn("kube-system", "ConfigInvalid")).filter((event) => event.regarding?.uid === configMapUid);
    expect(events).toEqual([
      expect.objectContaining({
        type: "Warning",
        series: expect.objectContaining({ count: 2 }),
        note: expect.stringMatching(/^ConfigMap kube-system\/acr-configuration is invalid: .*expiring-threshold/),
      }),
    ]);
  });

  it("in --watch mode, says ConfigInvalid once for a configuration edited into a mistake, however often it sees the ConfigMap again", async () => {
    const namespace = await createNamespace("rfr-ev-edit");
    await configure({ "watch-namespace": namespace });
    const watcher = startWatch(
      {
        kubeConfig: fixture.kubeConfig,
        cluster: fixture.cluster,
        logger: fixture.logger,
        broker: (url) => brokerClient({ url, tokenFile: fixture.tokenFile, attempts: 2, sleep: async () => {} }),
      },
      { debounceMs: 50, statusIntervalMs: 100 },
    );
    try {
      await watcher.ready;
      await configure({ "watch-namespace": namespace, "acr-registry-info": "- instanceId: [not, a, string]" });
      const refused = () =>
        fixture.logs.filter((line) => line.includes('"msg":"configuration not applied; keeping the previous one until it is fixed"')).length;
      for (let waited = 0; refused() === 0 && waited < 10_000; waited += 50) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(refused()).toBe(1);
      // The watch delivers the ConfigMap again at every change of its metadata (and after every reconnect).
      for (let touch = 0; touch < 4; touch += 1) {
        await core().patchNamespacedConfigMap(
          { namespace: "kube-system", name: "acr-configuration", body: { metadata: { labels: { touched: String(touch) } } } },
          setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
      expect(refused()).toBe(1);
    } finally {
      await watcher.stop();
    }
    const events = (await eventsIn("kube-system", "ConfigInvalid")).filter((event) => event.regarding?.uid === configMapUid);
    expect(events).toEqual([expect.objectContaining({ note: expect.stringMatching(/acr-registry-info/) })]);
  });

  it("writes the same problem in two namespaces as an Event in each", async () => {
    const [first, second] = [await createNamespace("rfr-ev-twin"), await createNamespace("rfr-ev-twin")];
    const recorder = eventRecorder(fixture.cluster, fixture.logger);
    const about = (namespace: string) =>
      namedEvent({ namespace, reason: "SecretReplaced", action: "LeftAlone", note: "the same sentence", regarding: { kind: "Secret", name: one } });
    await recorder.record([about(first), about(second)]);
    for (const namespace of [first, second]) expect(await eventsIn(namespace, "SecretReplaced"), namespace).toHaveLength(1);
  });

  it("writes an Event again when it vanished (the API server's TTL) while its series was running", async () => {
    const namespace = await createNamespace("rfr-ev-ttl");
    let time = Date.parse("2030-01-01T00:00:00Z");
    const recorder = eventRecorder(fixture.cluster, fixture.logger, { now: () => new Date(time) });
    const event = namedEvent({
      namespace,
      reason: "SecretNameTaken",
      action: "LeftAlone",
      note: "a lasting problem",
      regarding: { kind: "Secret", name: one },
    });
    await recorder.record([event]);
    expect(await eventsIn(namespace, "SecretNameTaken")).toHaveLength(1);
    await adminConfig().makeApiClient(EventsV1Api).deleteNamespacedEvent({ namespace, name: event.name });
    time += 60_000;
    // The series write finds no Event: logged, and the recorder forgets it ...
    await recorder.record([event]);
    expect(await eventsIn(namespace, "SecretNameTaken")).toHaveLength(0);
    expect(fixture.logs.some((line) => line.includes('"msg":"event not written"') && line.includes(namespace))).toBe(true);
    // ... so the next observation writes it anew.
    time += 60_000;
    await recorder.record([event]);
    expect(await eventsIn(namespace, "SecretNameTaken")).toEqual([
      expect.objectContaining({ metadata: expect.objectContaining({ name: event.name }), note: "a lasting problem" }),
    ]);
  });

  it("in --watch mode, folds a conflict seen by every reconcile into one Event, written twice, not once per reconcile", async () => {
    const namespace = await createNamespace("rfr-ev-watch");
    await createServiceAccount(namespace, "default");
    await takeName(namespace);
    await configure({ "watch-namespace": namespace });
    const eventWrites: string[] = [];
    const cluster = kubernetesCluster(fixture.kubeConfig, { observe: ({ method, url }) => void (url.includes("/events") && eventWrites.push(method)) });
    const watcher = startWatch(
      {
        kubeConfig: fixture.kubeConfig,
        cluster,
        logger: fixture.logger,
        broker: (url) => brokerClient({ url, tokenFile: fixture.tokenFile, attempts: 2, sleep: async () => {} }),
      },
      { debounceMs: 50, statusIntervalMs: 100 },
    );
    try {
      await watcher.ready;
      const reconciles = () => fixture.logs.filter((line) => line.includes('"msg":"reconciled"') && line.includes(namespace)).length;
      // Every ServiceAccount change reconciles the namespace again, and each reconcile meets the conflict.
      for (let change = 0; change < 6; change += 1) {
        const seen = reconciles();
        await core().patchNamespacedServiceAccount(
          { namespace, name: "default", body: { metadata: { labels: { change: String(change) } } } },
          setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
        );
        for (let waited = 0; reconciles() === seen && waited < 5000; waited += 50) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(reconciles()).toBeGreaterThanOrEqual(6);
    } finally {
      await watcher.stop();
    }
    const events = await eventsIn(namespace, "SecretNameTaken");
    expect(events).toHaveLength(1);
    // Created, then its series started (count 2); later observations wait for the 30-minute heartbeat.
    expect(events[0]?.series?.count).toBe(2);
    expect(eventWrites).toEqual(["POST", "PATCH"]);
  });
});
