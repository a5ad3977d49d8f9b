/**
 * The one reconcile step both modes run (job/reconcile.ts), against the in-memory cluster API:
 * what it writes (Secrets, entries, the state and the status), what a scoped reconcile leaves
 * alone, and what a failure leaves behind. `refreshOnce` runs through it here too, against a
 * scripted broker over HTTP, so the status of a `--once` run and of a `--watch` reconcile compare.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import type { RegistryRequest } from "../../shared/broker-api.ts";
import { createLogger } from "../../shared/log.ts";
import { brokerClient } from "../../job/broker-client.ts";
import { brokerMemoryKey } from "../../job/broker-need.ts";
import { parseRefresherConfig, type RefresherConfig } from "../../job/config.ts";
import { eventReasons, eventRecorder } from "../../job/events.ts";
import { reconcile, Tally, type Credentials, type ReconcileInput, type ReconcileIo, type StatusReport } from "../../job/reconcile.ts";
import { refreshOnce } from "../../job/run.ts";
import { desiredSecret } from "../../job/secret.ts";
import { emptyState, parseState, type RefresherState } from "../../job/state.ts";
import { statusConfigMap } from "../../job/status.ts";
import { fakeCluster, type FakeCluster } from "./fake-cluster.ts";
import { startScriptedBroker, type ScriptedBroker } from "./scripted-broker.ts";

const logger = createLogger("refresher", { level: "silent" });
const registryInfo = "- instanceId: cri-one\n  regionId: cn-hangzhou";
const configData = { "acr-registry-info": registryInfo, "watch-namespace": "team-*", "spread-window": "0s" };
const config: RefresherConfig = parseRefresherConfig({ "broker-url": "https://broker.example.com", ...configData }).config;
const [registry] = config.registries;
const secret = registry!.secretName;
const expiresAt = "2030-01-01T01:00:00Z";
const clock = () => new Date("2030-01-01T00:00:00Z");

function credentials(password = "pw-1"): Credentials {
  const credential = {
    instanceId: "cri-one",
    regionId: "cn-hangzhou",
    edition: "enterprise" as const,
    domains: ["cri-one-registry.cn-hangzhou.cr.aliyuncs.com"],
    username: "cr_temp_user",
    password,
    expiresAt,
  };
  return { secrets: new Map([[secret, desiredSecret(registry!, credential, undefined)]]), registries: [{ registry: registry!, expiresAt }] };
}

/** A cluster with `default` in each namespace, kube-system for the status, and no Secret yet. */
function clusterWith(namespaces: readonly string[]): FakeCluster {
  const cluster = fakeCluster();
  cluster.addNamespace("kube-system");
  for (const name of namespaces) {
    cluster.addNamespace(name);
    cluster.addServiceAccount(name, "default");
  }
  return cluster;
}

const ioFor = (cluster: FakeCluster): ReconcileIo => ({ cluster, logger, events: eventRecorder(cluster, logger, { now: clock }), now: clock });

async function inputFor(cluster: FakeCluster, state: RefresherState, extra: Partial<ReconcileInput> = {}): Promise<ReconcileInput> {
  return {
    config,
    credentials: credentials(),
    namespaces: await cluster.listNamespaces(),
    serviceAccounts: await cluster.listServiceAccounts(),
    state,
    ...extra,
  };
}

const report = (mode: StatusReport["mode"]): StatusReport => ({
  mode,
  since: clock(),
  configMap: { namespace: "kube-system", name: "acr-configuration" },
  extra: () => ({}),
});
const status = (cluster: FakeCluster) => cluster.configMap(statusConfigMap.namespace, statusConfigMap.name)?.data;
const writes = (cluster: FakeCluster, namespace: string) =>
  cluster.calls.filter((call) => call.namespace === namespace && (call.operation === "applySecret" || call.operation === "patchServiceAccount"));

describe("one reconcile", () => {
  it("writes the Secrets and entries, then the state and the status that say so, in one step", async () => {
    const cluster = clusterWith(["team-a", "team-b"]);
    const done = await reconcile(ioFor(cluster), await inputFor(cluster, emptyState()), { tally: new Tally(), status: report("once") });

    expect(done?.result.counts).toMatchObject({ secretsApplied: 2, serviceAccountsPatched: 2 });
    const written = status(cluster);
    // The state written is the one returned, and records the uid the API server gave each Secret.
    expect(parseState(written?.["state.json"])).toEqual(done?.state);
    expect(done?.state.secrets[secret]?.current).toHaveProperty("team-a");
    expect(written?.result).toBe("Succeeded");
    expect(parseYaml(written?.summary ?? "")).toMatchObject({ secretsApplied: 2, serviceAccountsPatched: 2, failures: 0 });
  });

  it("touches only its namespace when scoped, and keeps the other namespaces' failures in the status", async () => {
    const cluster = clusterWith(["team-a", "team-b"]);
    const io = ioFor(cluster);
    const tally = new Tally();
    cluster.failNext("applySecret", { status: 500 }, { namespace: "team-a" });
    const first = await reconcile(io, await inputFor(cluster, emptyState()), { tally, status: report("watch") });
    expect(first?.result.failures.map((failure) => failure.namespace)).toEqual(["team-a"]);

    // New credentials, and a reconcile of team-b alone: team-a is left as it was, its failure still the latest attempt there.
    const input = { ...(await inputFor(cluster, first!.state, { scope: new Set(["team-b"]) })), credentials: credentials("pw-2") };
    const callsBefore = cluster.calls.length;
    const scoped = await reconcile(io, input, { tally, status: report("watch") });
    const after = cluster.calls.slice(callsBefore);
    expect(after.filter((call) => call.operation === "applySecret").map((call) => call.namespace)).toEqual(["team-b"]);
    expect(after.filter((call) => call.namespace === "team-a")).toEqual([]);
    expect(Object.keys(scoped?.state.secrets[secret]?.current ?? {})).toEqual(["team-b"]);
    expect(parseYaml(status(cluster)?.failures ?? "")).toEqual([expect.objectContaining({ namespace: "team-a", object: `Secret/${secret}` })]);

    // A reconcile of team-a replaces its failure.
    await reconcile(io, await inputFor(cluster, scoped!.state, { scope: new Set(["team-a"]) }), { tally, status: report("watch") });
    expect(parseYaml(status(cluster)?.failures ?? "")).toEqual([]);
    expect(writes(cluster, "team-a")).not.toHaveLength(0);
  });

  it("writes nothing, not even the status, when its scope has nothing to do", async () => {
    const cluster = clusterWith(["team-a", "team-b"]);
    const io = ioFor(cluster);
    const tally = new Tally();
    const first = await reconcile(io, await inputFor(cluster, emptyState()), { tally, status: report("watch") });
    const input = await inputFor(cluster, first!.state, { scope: new Set(["team-b"]) });
    const callsBefore = cluster.calls.length;
    const again = await reconcile(io, input, { tally, status: report("watch") });
    expect(again).toBeUndefined();
    expect(cluster.calls.slice(callsBefore)).toEqual([]);
  });

  it("does not record a namespace whose write failed as current, says so in the status and an Event, and writes it at the next reconcile", async () => {
    const cluster = clusterWith(["team-a", "team-b"]);
    const io = ioFor(cluster);
    const first = await reconcile(io, await inputFor(cluster, emptyState()), { tally: new Tally(), status: report("once") });

    // New credentials; team-a's write fails.
    cluster.failNext("applySecret", { status: 503 }, { namespace: "team-a" });
    const second = await reconcile(
      io,
      { ...(await inputFor(cluster, first!.state)), credentials: credentials("pw-2") },
      { tally: new Tally(), status: report("once") },
    );
    expect(Object.keys(second?.state.secrets[secret]?.current ?? {})).toEqual(["team-b"]);
    expect(parseState(status(cluster)?.["state.json"])).toEqual(second?.state);
    expect(status(cluster)?.result).toBe("PartiallyFailed");
    expect(cluster.events().filter((event) => event.reason === eventReasons.writesFailed)).toEqual([
      expect.objectContaining({ note: expect.stringMatching(/^writes failed in team-a /) }),
    ]);

    const input = { ...(await inputFor(cluster, second!.state)), credentials: credentials("pw-2") };
    const callsBefore = cluster.calls.length;
    const third = await reconcile(io, input, { tally: new Tally(), status: report("once") });
    expect(
      cluster.calls
        .slice(callsBefore)
        .filter((call) => call.operation === "applySecret")
        .map((call) => call.namespace),
    ).toEqual(["team-a"]);
    expect(Object.keys(third?.state.secrets[secret]?.current ?? {}).sort()).toEqual(["team-a", "team-b"]);
    expect(status(cluster)?.result).toBe("Succeeded");
  });

  it("returns a status it could not write as a failure, told in an Event, and keeps the state it had", async () => {
    const cluster = clusterWith(["team-a"]);
    const io = ioFor(cluster);
    await reconcile(io, await inputFor(cluster, emptyState()), { tally: new Tally(), status: report("once") });
    const statusBefore = status(cluster);

    cluster.addNamespace("team-b");
    cluster.addServiceAccount("team-b", "default");
    cluster.failNext("applyConfigMap", { status: 500 });
    const done = await reconcile(io, await inputFor(cluster, parseState(statusBefore?.["state.json"])), { tally: new Tally(), status: report("once") });
    expect(done?.statusFailure).toMatchObject({ namespace: "kube-system", kind: "ConfigMap", name: statusConfigMap.name });
    expect(status(cluster)).toEqual(statusBefore);
    expect(cluster.events().filter((event) => event.reason === eventReasons.writesFailed)).toEqual([
      expect.objectContaining({ note: expect.stringContaining(`ConfigMap kube-system/${statusConfigMap.name}`) }),
    ]);
  });
});

describe("the status of a --once run and of a --watch reconcile", () => {
  let dir: string;
  let broker: ScriptedBroker;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "reconcile-"));
    await writeFile(join(dir, "token"), "t");
    broker = await startScriptedBroker((request) => {
      const credentials = (request.body.registries as RegistryRequest[]).map((r) => ({
        instanceId: r.instanceId,
        regionId: r.regionId,
        edition: "enterprise",
        domains: [`${r.instanceId}.example.com`],
        username: "cr_temp_user",
        password: "pw",
        expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
      }));
      return { status: 200, body: { cluster: "c", subject: "s", credentials, errors: [] } };
    });
  });
  afterAll(async () => {
    await broker?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("have the same keys, the once run adding only what it remembers of the broker", async () => {
    const onceCluster = clusterWith(["team-a"]);
    await onceCluster.applyConfigMap("kube-system", "acr-configuration", { ...configData, "broker-url": broker.url }, {});
    const run = await refreshOnce({ cluster: onceCluster, logger, broker: (url) => brokerClient({ url, tokenFile: join(dir, "token") }) });
    expect(run.exitCode).toBe(0);
    const once = status(onceCluster) ?? {};

    const watchCluster = clusterWith(["team-a"]);
    await reconcile(ioFor(watchCluster), await inputFor(watchCluster, emptyState()), { tally: new Tally(), status: report("watch") });
    const watch = status(watchCluster) ?? {};

    expect(once.mode).toBe("once");
    expect(watch.mode).toBe("watch");
    const brokerKeys = Object.keys(once).filter((key) => !(key in watch));
    expect(brokerKeys).toContain(brokerMemoryKey);
    expect(brokerKeys.sort()).toEqual([brokerMemoryKey, "broker-call", "next-broker-call", "spread-delay"].sort());
    expect(Object.keys(watch).filter((key) => !(key in once))).toEqual([]);
    const counts = (summary: string | undefined) => ({ ...(parseYaml(summary ?? "") as object), durationMs: undefined });
    expect(counts(once.summary)).toEqual(counts(watch.summary));
  });
});
