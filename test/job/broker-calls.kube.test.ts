import { PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import type { Credential, RegistryRequest } from "../../shared/broker-api.ts";
import { parseBrokerMemory, resyncAnnotation } from "../../job/broker-need.ts";
import type { ClusterApi } from "../../job/cluster.ts";
import { spreadDelayMs } from "../../job/spread.ts";
import { parseRefresherConfig } from "../../job/config.ts";
import type { RunOptions, RunReport } from "../../job/run.ts";
import { createNamespace, createServiceAccount, kubeAvailable } from "../kube/cluster.ts";
import { acquireRefresherLock } from "./kube-lock.ts";
import {
  core,
  dockerConfigOf,
  installRefresher,
  pullSecretNames,
  readStatus,
  resetStatus,
  secretOrUndefined,
  serviceAccount,
  setConfig,
  type RefresherFixture,
  resourceVersions,
} from "./refresher-fixture.ts";
import { startScriptedBroker, type ScriptedBroker } from "./scripted-broker.ts";

const registryInfo = "- instanceId: cri-callone\n  regionId: cn-hangzhou\n- instanceId: cri-calltwo\n  regionId: cn-beijing";
const [one, two] = parseRefresherConfig({ "broker-url": "https://x.example", "acr-registry-info": registryInfo }).config.registries.map(
  (r) => r.secretName,
) as [string, string];
const minutes = (n: number) => n * 60_000;

/**
 * A broker that behaves like the real one towards a single cluster: one-hour credentials on a clock
 * the test moves, served from its cache until 15 minutes before expiry (or before the asked
 * `minValiditySeconds`, when longer) or until asked with `force`.
 * Every request is recorded, so the tests count broker calls where they arrive.
 */
async function startOneHourBroker(clock: () => number): Promise<ScriptedBroker & { password(instanceId: string): string }> {
  const cache = new Map<string, Credential>();
  let issued = 0;
  const server = await startScriptedBroker((request) => {
    const credentials = ((request.body.registries ?? []) as RegistryRequest[]).map((registry) => {
      const key = `${registry.instanceId}@${registry.regionId}`;
      const cached = cache.get(key);
      const needMs = Math.max(minutes(15), ((request.body.minValiditySeconds as number | undefined) ?? 0) * 1000);
      if (cached !== undefined && request.body.force !== true && Date.parse(cached.expiresAt) - clock() > needMs) return cached;
      issued += 1;
      const fresh: Credential = {
        instanceId: registry.instanceId!,
        regionId: registry.regionId ?? "cn-hangzhou",
        edition: "enterprise",
        domains: [`${registry.instanceId}.example.com`],
        username: "cr_temp_user",
        password: `one-hour-${issued}`,
        expiresAt: new Date(clock() + minutes(60)).toISOString(),
      };
      cache.set(key, fresh);
      return fresh;
    });
    return { status: 200, body: { cluster: "test-cluster", subject: "s", credentials, errors: [] } };
  });
  return { ...server, password: (instanceId) => [...cache.values()].find((c) => c.instanceId === instanceId)?.password ?? "" };
}

describe.skipIf(!kubeAvailable())("the refresher asks the broker only when it needs to (real API server)", () => {
  let fixture: RefresherFixture;
  let broker: Awaited<ReturnType<typeof startOneHourBroker>>;
  let release: () => Promise<void>;
  let time = Date.now();
  let namespaces: string[];
  let config: Record<string, string>;

  /** One run at the test's clock; returns the report and how many requests reached the broker. */
  async function run(
    options: RunOptions = {},
  ): Promise<{ report: RunReport; calls: Array<{ force: boolean; minValiditySeconds?: number; registries: string[] }> }> {
    const before = broker.requests.length;
    const report = await fixture.run(broker.url, options, undefined, { now: () => new Date(time) });
    const calls = broker.requests.slice(before).map((request) => ({
      force: request.body.force === true,
      ...(request.body.minValiditySeconds === undefined ? {} : { minValiditySeconds: request.body.minValiditySeconds as number }),
      registries: (request.body.registries as RegistryRequest[]).map((r) => r.instanceId ?? ""),
    }));
    return { report, calls };
  }

  beforeAll(async () => {
    release = await acquireRefresherLock("broker-calls.kube.test");
    fixture = await installRefresher();
    broker = await startOneHourBroker(() => time);
    namespaces = await Promise.all([createNamespace("rbc-a"), createNamespace("rbc-b")]);
    for (const namespace of namespaces) await createServiceAccount(namespace, "default");
    config = { "broker-url": broker.url, "watch-namespace": "rbc-*", "service-account": "default", "acr-registry-info": registryInfo };
  });

  afterAll(async () => {
    await broker?.close();
    await fixture?.close();
    await release?.();
  });

  /** Each test starts from a served cluster whose credentials were fetched at `time`, hours after the last test's (whose credentials the broker's cache then no longer serves). */
  beforeEach(async () => {
    time += minutes(180);
    await setConfig(config);
    await resetStatus();
    const { report, calls } = await run();
    expect(report.exitCode).toBe(0);
    expect(calls).toHaveLength(1);
  });

  it("makes no broker call on a second run within validity, and writes nothing but the status", async () => {
    const before = await resourceVersions(namespaces);
    const statusBefore = await readStatus();
    time += minutes(5);
    const { report, calls } = await run();
    expect(calls).toEqual([]);
    expect(report.exitCode).toBe(0);
    expect(report.apply?.counts).toMatchObject({ secretsApplied: 0, serviceAccountsPatched: 0, secretsDeleted: 0 });
    expect(await resourceVersions(namespaces)).toEqual(before);
    const status = await readStatus();
    expect(status?.["last-run"]).not.toBe(statusBefore?.["last-run"]);
    expect(parseYaml(status?.["broker-call"] ?? "")).toEqual({ asked: false });
    // Renewal is due 15 min (threshold) + 5 min (interval) before the one-hour expiry.
    expect(Date.parse(status?.["next-broker-call"] ?? "")).toBe(Date.parse(statusBefore?.["next-broker-call"] ?? ""));
    expect(Date.parse(status?.["next-broker-call"] ?? "") - (time - minutes(5))).toBe(minutes(40));
    const registries = parseYaml(status?.registries ?? "[]") as Array<{ secret: string; expiresAt: string }>;
    expect(registries.map((r) => r.secret)).toEqual([one, two]);
    expect(registries.every((r) => Date.parse(r.expiresAt) > time)).toBe(true);
  });

  it("makes exactly one call, without force and asking for 25 minutes of validity, once a credential expires within threshold plus interval, and writes the renewed one", async () => {
    time += minutes(35);
    expect((await run()).calls).toEqual([]);
    time += minutes(5);
    const { report, calls } = await run();
    // threshold 15 min + one interval 5 min is the renewal window; one more interval so the next run does not ask again.
    expect(calls).toEqual([{ force: false, minValiditySeconds: 25 * 60, registries: ["cri-callone", "cri-calltwo"] }]);
    expect(report.apply?.counts.secretsApplied).toBe(4);
    const password = Object.values(dockerConfigOf((await secretOrUndefined(namespaces[0]!, one))!).auths)[0]?.password;
    expect(password).toBe(broker.password("cri-callone"));
    time += minutes(5);
    expect((await run()).calls).toEqual([]);
  });

  it("makes one call for a new namespace, and serves it", async () => {
    const fresh = await createNamespace("rbc-new");
    await createServiceAccount(fresh, "default");
    try {
      time += minutes(5);
      const { report, calls } = await run();
      expect(calls).toHaveLength(1);
      expect(report.need.reasons).toContainEqual({ code: "namespace-lacks-secret", subject: fresh });
      expect(pullSecretNames(await serviceAccount(fresh, "default"))).toEqual([one, two]);
      time += minutes(5);
      expect((await run()).calls).toEqual([]);
    } finally {
      await core().deleteNamespace({ name: fresh });
    }
  });

  it("makes one call when a chosen ServiceAccount lacks its entry", async () => {
    const namespace = namespaces[1]!;
    await core().patchNamespacedServiceAccount(
      { namespace, name: "default", body: [{ op: "remove", path: "/imagePullSecrets" }] },
      setHeaderOptions("Content-Type", PatchStrategy.JsonPatch),
    );
    time += minutes(5);
    const { calls } = await run();
    expect(calls).toHaveLength(1);
    expect(pullSecretNames(await serviceAccount(namespace, "default"))).toEqual([one, two]);
  });

  it("makes one call when a registry changes", async () => {
    time += minutes(5);
    await setConfig({ ...config, "acr-registry-info": `${registryInfo}\n  expireDuration: 7200` });
    const { report, calls } = await run();
    expect(calls).toHaveLength(1);
    expect(report.need.reasons.map((reason) => reason.code)).toEqual(["config-changed"]);
    time += minutes(5);
    expect((await run()).calls).toEqual([]);
  });

  it("makes one call when the status is missing, and one when its memory is corrupted", async () => {
    time += minutes(5);
    await resetStatus();
    expect((await run()).calls).toHaveLength(1);
    time += minutes(5);
    await core().patchNamespacedConfigMap(
      { namespace: "kube-system", name: "acr-credential-status", body: { data: { "broker.json": "{not json" } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    expect((await run()).calls).toHaveLength(1);
    time += minutes(5);
    expect((await run()).calls).toEqual([]);
  });

  it("makes one call after a run cut off while writing Secrets (its final status write refused by a wrapper, as a SIGKILL leaves it)", async () => {
    time += minutes(40);
    let statusWrites = 0;
    const cutOff: ClusterApi = {
      ...fixture.cluster,
      async applyConfigMap(namespace, name, data, labels) {
        statusWrites += 1;
        if (statusWrites > 1) throw new Error("the process is gone");
        return fixture.cluster.applyConfigMap(namespace, name, data, labels);
      },
    };
    const cut = await fixture.run(broker.url, {}, cutOff, { now: () => new Date(time) });
    expect(cut.apply?.counts.secretsApplied).toBe(4);
    expect(statusWrites).toBe(2);
    expect(parseBrokerMemory((await readStatus())?.["broker.json"])?.unfinished).toBe(true);
    time += minutes(5);
    const { report, calls } = await run();
    expect(calls).toHaveLength(1);
    // The cut-off run's answer was never remembered: the next one asks as if it had not happened, and says why.
    expect(report.need.reasons[0]).toEqual({ code: "interrupted" });
    expect(report.apply?.counts.secretsApplied).toBe(4);
    expect(parseBrokerMemory((await readStatus())?.["broker.json"])?.unfinished).toBeUndefined();
    time += minutes(5);
    expect((await run()).calls).toEqual([]);
  });

  it("makes one call with --resync, and one per new value of the resync annotation on the configuration", async () => {
    time += minutes(5);
    const resynced = await run({ resync: true });
    // A person asked: this cluster's credentials are refreshed with force, not taken from the broker's cache.
    expect(resynced.calls).toEqual([{ force: true, registries: ["cri-callone", "cri-calltwo"] }]);
    expect(resynced.report.apply?.counts.secretsApplied).toBe(4);
    const annotate = (value: string) =>
      core().patchNamespacedConfigMap(
        { namespace: "kube-system", name: "acr-configuration", body: { metadata: { annotations: { [resyncAnnotation]: value } } } },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      );
    await annotate("1764600000");
    time += minutes(5);
    expect((await run()).calls).toEqual([{ force: true, registries: ["cri-callone", "cri-calltwo"] }]);
    time += minutes(5);
    expect((await run()).calls).toEqual([]);
    await annotate("1764600300");
    time += minutes(5);
    expect((await run()).calls).toHaveLength(1);
  });

  it("waits this cluster's delay, the same on every run and within the window, before it asks, and shows it in the status", async () => {
    const windowSeconds = 2;
    const waits: number[] = [];
    for (let i = 0; i < 2; i++) {
      await resetStatus();
      const started = Date.now();
      const before = broker.requests.length;
      const report = await fixture.run(broker.url, { spreadWindowSeconds: windowSeconds }, undefined, { now: () => new Date(time) });
      expect(broker.requests.length - before).toBe(1);
      expect(report.spreadDelayMs).toBeGreaterThanOrEqual(0);
      expect(report.spreadDelayMs).toBeLessThan(windowSeconds * 1000);
      // The request reached the broker no sooner than the delay after the run began.
      expect(Date.now() - started).toBeGreaterThanOrEqual(report.spreadDelayMs);
      expect((await readStatus())?.["spread-delay"]).toMatch(/^\d+s \(window 2s\)$/);
      waits.push(report.spreadDelayMs);
    }
    expect(waits[1]).toBe(waits[0]);
    // Derived from this cluster's identity, the kube-system namespace's uid (another cluster's uid gives another delay: test/job/spread.test.ts).
    const uid = (await core().readNamespace({ name: "kube-system" })).metadata?.uid;
    expect(waits[0]).toBe(spreadDelayMs(uid, windowSeconds * 1000));
    // No delay at all on a run that does not ask the broker.
    const started = Date.now();
    const idle = await fixture.run(broker.url, { spreadWindowSeconds: 60 }, undefined, { now: () => new Date(time) });
    expect(idle.need.call).toBe(false);
    expect(Date.now() - started).toBeLessThan(30_000);
    expect((await readStatus())?.["spread-delay"]).toBe("0s (window 1m)");
  });
});
