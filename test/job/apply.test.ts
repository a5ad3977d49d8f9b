/**
 * `apply`'s logic against the in-memory cluster API (fake-cluster.ts), with the faults a real API
 * server cannot produce on demand: a race lost at the exact moment, a Secret replaced between two
 * runs, a 5xx or a request that never answers in one namespace. Each run is planned from what the
 * fake lists, as `run` does, so the plan and the apply meet as they do in production; the real API
 * server covers the same paths end to end in the `*.kube.test.ts` suites.
 */
import { describe, expect, it } from "vitest";
import { createLogger } from "../../shared/log.ts";
import { apply, type ApplyResult } from "../../job/apply.ts";
import { parseRefresherConfig, type RefresherConfig } from "../../job/config.ts";
import { eventReasons } from "../../job/events.ts";
import { plan, type Plan } from "../../job/plan.ts";
import { annotations } from "../../job/secret.ts";
import { emptyState, nextState, type RefresherState } from "../../job/state.ts";
import { runResult } from "../../job/status.ts";
import { secretsOf } from "./desired-secrets.ts";
import { fakeCluster, type FakeCluster } from "./fake-cluster.ts";

const logger = createLogger("refresher", { level: "silent" });
const twoRegistries = "- instanceId: cri-one\n  regionId: cn-hangzhou\n- instanceId: cri-two\n  regionId: cn-beijing";
const oneRegistry = "- instanceId: cri-one\n  regionId: cn-hangzhou";

const configOf = (registryInfo = twoRegistries): RefresherConfig =>
  parseRefresherConfig({ "broker-url": "https://broker.example.com", "acr-registry-info": registryInfo, "watch-namespace": "all" }).config;

const [firstSecret, secondSecret] = configOf().registries.map((registry) => registry.secretName) as [string, string];

/** A cluster with `default` in each namespace, and no Secret yet. */
function clusterWith(namespaces: readonly string[], options: Parameters<typeof fakeCluster>[0] = {}): FakeCluster {
  const cluster = fakeCluster(options);
  for (const name of namespaces) {
    cluster.addNamespace(name);
    cluster.addServiceAccount(name, "default");
  }
  return cluster;
}

interface Run {
  plan: Plan;
  result: ApplyResult;
  state: RefresherState;
}

/** One reconcile as `run` does it: list, plan against the remembered state, apply, remember. */
async function reconcile(
  cluster: FakeCluster,
  options: { state?: RefresherState; config?: RefresherConfig; password?: string; concurrency?: number; beforeApply?: () => void } = {},
): Promise<Run> {
  const config = options.config ?? configOf();
  const state = options.state ?? emptyState();
  const secrets = secretsOf(config, options.password ?? "pw-1");
  const namespaces = await cluster.listNamespaces();
  const serviceAccounts = await cluster.listServiceAccounts();
  const thePlan = plan({ config, secrets, namespaces, serviceAccounts, state });
  options.beforeApply?.();
  const result = await apply(thePlan, {
    cluster,
    secrets,
    serviceAccounts,
    logger,
    concurrency: options.concurrency ?? 16,
    sleep: async () => {},
    random: () => 0.5,
  });
  return { plan: thePlan, result, state: nextState(state, result.outcomes) };
}

const pullSecrets = (cluster: FakeCluster, namespace: string, name = "default") =>
  (cluster.serviceAccount(namespace, name)?.imagePullSecrets ?? []).map((entry) => entry.name);
const patchCalls = (cluster: FakeCluster, namespace: string) =>
  cluster.calls.filter((call) => call.operation === "patchServiceAccount" && call.namespace === namespace).length;

describe("apply against an in-memory cluster API", () => {
  it("writes each Secret once per namespace, lists it on the ServiceAccount and counts what it did; a second run changes nothing", async () => {
    const cluster = clusterWith(["default", "team-a"]);
    const first = await reconcile(cluster);

    expect(first.result.counts).toEqual({ secretsApplied: 4, serviceAccountsPatched: 2, secretsDeleted: 0, namespacesFailed: 0 });
    expect(first.result.failures).toEqual([]);
    for (const namespace of ["default", "team-a"]) {
      expect(pullSecrets(cluster, namespace)).toEqual([firstSecret, secondSecret]);
      // The uid recorded is the one the API server gave the Secret.
      for (const secret of [firstSecret, secondSecret]) {
        const written = first.result.outcomes.find((outcome) => outcome.kind === "applied" && outcome.namespace === namespace && outcome.secret === secret);
        expect(written && "secretUid" in written ? written.secretUid : undefined).toBe(cluster.secret(namespace, secret)?.uid);
      }
    }

    const second = await reconcile(cluster, { state: first.state });
    expect(second.result.counts).toEqual({ secretsApplied: 0, serviceAccountsPatched: 0, secretsDeleted: 0, namespacesFailed: 0 });
  });

  it("retries a ServiceAccount patch that lost a race (failed resourceVersion test, 422) and keeps both writers' entries", async () => {
    const cluster = clusterWith(["default"]);
    // Planned from the listing; another writer adds its entry before the patch lands.
    const run = await reconcile(cluster, {
      beforeApply: () => cluster.editServiceAccount("default", "default", (sa) => sa.imagePullSecrets.push({ name: "team-registry" })),
    });

    expect(run.result.failures).toEqual([]);
    expect(run.result.counts.serviceAccountsPatched).toBe(1);
    expect(pullSecrets(cluster, "default")).toEqual(["team-registry", firstSecret, secondSecret]);
    expect(patchCalls(cluster, "default")).toBe(2);
  });

  it("retries a ServiceAccount patch refused with 409 (fault injected) against a fresh read, keeping the other writer's entry", async () => {
    const cluster = clusterWith(["default"]);
    cluster.failNext("patchServiceAccount", {
      status: 409,
      reason: "Conflict",
      message:
        'Operation cannot be fulfilled on serviceaccounts "default": the object has been modified; please apply your changes to the latest version and try again',
    });
    const run = await reconcile(cluster, {
      beforeApply: () => cluster.editServiceAccount("default", "default", (sa) => sa.imagePullSecrets.push({ name: "team-registry" })),
    });

    expect(run.result.failures).toEqual([]);
    expect(pullSecrets(cluster, "default")).toEqual(["team-registry", firstSecret, secondSecret]);
    expect(cluster.calls.filter((call) => call.operation === "getServiceAccount")).toHaveLength(1);
  });

  it("gives up on a ServiceAccount that keeps losing races, records it as that namespace's failure, and then deletes nothing there", async () => {
    const cluster = clusterWith(["default", "team-a"]);
    const first = await reconcile(cluster);
    cluster.failNext("patchServiceAccount", { status: 409, reason: "Conflict" }, { namespace: "default", times: 6 });
    // The second registry leaves the configuration: its entry is detached, then its Secret deleted.
    const second = await reconcile(cluster, { state: first.state, config: configOf(oneRegistry) });

    expect(second.result.failures).toEqual([
      expect.objectContaining({ namespace: "default", kind: "ServiceAccount", name: "default", code: "KubernetesError" }),
    ]);
    expect(patchCalls(cluster, "default")).toBe(1 + 6);
    expect(cluster.secret("default", secondSecret)).toBeDefined();
    expect(cluster.secret("team-a", secondSecret)).toBeUndefined();
    expect(pullSecrets(cluster, "team-a")).toEqual([firstSecret]);
    expect(second.result.counts).toMatchObject({ secretsDeleted: 1, serviceAccountsPatched: 1, namespacesFailed: 1 });
  });

  it("leaves a Secret replaced under the same name (another uid) alone on re-apply, reports it and writes a SecretReplaced Event", async () => {
    const cluster = clusterWith(["default", "team-a"]);
    const first = await reconcile(cluster);
    cluster.removeSecret("team-a", firstSecret);
    const theirs = cluster.createForeignSecret("team-a", firstSecret, { data: { ".dockerconfigjson": "eyJhdXRocyI6e319" } });

    const second = await reconcile(cluster, { state: first.state, password: "pw-2" });

    expect(second.result.conflicts).toEqual([expect.objectContaining({ namespace: "team-a", secret: firstSecret, kind: "replaced" })]);
    expect(second.result.failures).toEqual([]);
    expect(cluster.secret("team-a", firstSecret)).toMatchObject({ uid: theirs.uid, data: { ".dockerconfigjson": "eyJhdXRocyI6e319" } });
    expect(second.result.counts).toEqual({ secretsApplied: 3, serviceAccountsPatched: 0, secretsDeleted: 0, namespacesFailed: 1 });
    expect(cluster.events()).toEqual([
      expect.objectContaining({ namespace: "team-a", reason: eventReasons.secretReplaced, regarding: { kind: "Secret", name: firstSecret } }),
    ]);
  });

  it("does not delete a Secret replaced under the same name (the uid precondition fails with 409) and reports it", async () => {
    const cluster = clusterWith(["default"]);
    const first = await reconcile(cluster);
    cluster.removeSecret("default", secondSecret);
    const theirs = cluster.createForeignSecret("default", secondSecret);

    const second = await reconcile(cluster, { state: first.state, config: configOf(oneRegistry) });

    expect(cluster.secret("default", secondSecret)?.uid).toBe(theirs.uid);
    expect(second.result.conflicts).toEqual([expect.objectContaining({ namespace: "default", secret: secondSecret, kind: "replaced" })]);
    expect(second.result.counts).toMatchObject({ secretsDeleted: 0, namespacesFailed: 1 });
    expect(pullSecrets(cluster, "default")).toEqual([firstSecret]);
  });

  it("reports a Secret of its name created by someone else before its first write as `exists`, and lists only its own on the ServiceAccount", async () => {
    const cluster = clusterWith(["default"]);
    cluster.createForeignSecret("default", firstSecret);
    const run = await reconcile(cluster);

    expect(run.result.conflicts).toEqual([expect.objectContaining({ namespace: "default", secret: firstSecret, kind: "exists" })]);
    expect(pullSecrets(cluster, "default")).toEqual([secondSecret]);
    expect(cluster.events()).toEqual([expect.objectContaining({ reason: eventReasons.secretNameTaken })]);
  });

  it("continues the Event of a conflict the next run sees again (the create answers 409) instead of writing a second one", async () => {
    const cluster = clusterWith(["default"]);
    cluster.createForeignSecret("default", firstSecret);
    const first = await reconcile(cluster);
    await reconcile(cluster, { state: first.state });

    expect(cluster.events()).toEqual([expect.objectContaining({ reason: eventReasons.secretNameTaken, series: expect.objectContaining({ count: 2 }) })]);
  });

  it("does not fail the run when a conflict's Event cannot be written (500 injected)", async () => {
    const cluster = clusterWith(["default"]);
    cluster.createForeignSecret("default", firstSecret);
    cluster.failNext("createEvent", { status: 500 });
    const run = await reconcile(cluster);

    expect(run.result.failures).toEqual([]);
    expect(run.result.conflicts).toEqual([expect.objectContaining({ kind: "exists" })]);
    expect(cluster.events()).toEqual([]);
    expect(pullSecrets(cluster, "default")).toEqual([secondSecret]);
  });

  it("writes a Secret deleted by hand anew (409 'no existing object was found' on the uid precondition) and remembers its new uid", async () => {
    const cluster = clusterWith(["default"]);
    const first = await reconcile(cluster);
    const oldUid = cluster.secret("default", firstSecret)?.uid;
    cluster.removeSecret("default", firstSecret);

    const second = await reconcile(cluster, { state: first.state, password: "pw-2" });

    const recreated = cluster.secret("default", firstSecret);
    expect(recreated?.uid).not.toBe(oldUid);
    expect(second.result.conflicts).toEqual([]);
    expect(second.result.counts.secretsApplied).toBe(2);
    expect(second.result.outcomes).toContainEqual(
      expect.objectContaining({ kind: "applied", namespace: "default", secret: firstSecret, secretUid: recreated?.uid }),
    );
  });

  it("takes the delete of a Secret already gone (404) as done: no failure, not counted as deleted, forgotten", async () => {
    const cluster = clusterWith(["default"]);
    const first = await reconcile(cluster);
    cluster.removeSecret("default", secondSecret);

    const second = await reconcile(cluster, { state: first.state, config: configOf(oneRegistry) });

    expect(second.result.failures).toEqual([]);
    expect(second.result.conflicts).toEqual([]);
    expect(second.result.counts).toEqual({ secretsApplied: 0, serviceAccountsPatched: 1, secretsDeleted: 0, namespacesFailed: 0 });
    expect(second.result.outcomes).toContainEqual({ kind: "deleted", secret: secondSecret, namespace: "default" });
    expect(pullSecrets(cluster, "default")).toEqual([firstSecret]);
    // Nothing left to do: the next run neither deletes nor patches again.
    const third = await reconcile(cluster, { state: second.state, config: configOf(oneRegistry) });
    expect(third.result.counts).toEqual({ secretsApplied: 0, serviceAccountsPatched: 0, secretsDeleted: 0, namespacesFailed: 0 });
    expect(cluster.calls.filter((call) => call.operation === "deleteSecret")).toHaveLength(1);
  });

  it("counts a 503 in one namespace and a request that never answers in another as those namespaces' failures only (fault injected)", async () => {
    const cluster = clusterWith(["default", "team-a", "team-b"], { requestTimeoutMs: 20 });
    cluster.failNext(
      "applySecret",
      { status: 503, reason: "ServiceUnavailable", message: "the server is currently unable to handle the request" },
      { namespace: "team-a" },
    );
    cluster.failNext("applySecret", "hang", { namespace: "team-b" });

    const run = await reconcile(cluster);

    expect(run.result.failures).toEqual([
      expect.objectContaining({
        namespace: "team-a",
        kind: "Secret",
        name: firstSecret,
        code: "KubernetesError",
        message: expect.stringContaining("HTTP 503"),
      }),
      expect.objectContaining({
        namespace: "team-b",
        kind: "Secret",
        name: firstSecret,
        code: "KubernetesError",
        message: expect.stringContaining("did not answer in time"),
      }),
    ]);
    expect(run.result.counts).toEqual({ secretsApplied: 4, serviceAccountsPatched: 3, secretsDeleted: 0, namespacesFailed: 2 });
    expect(pullSecrets(cluster, "default")).toEqual([firstSecret, secondSecret]);
    // A Secret that could not be written is not listed (a pod would fail on it); the other one is.
    expect(pullSecrets(cluster, "team-a")).toEqual([secondSecret]);
    expect(pullSecrets(cluster, "team-b")).toEqual([secondSecret]);
    // The failed Secret is not remembered as written: the next run tries it again and succeeds.
    const next = await reconcile(cluster, { state: run.state });
    expect(next.result.failures).toEqual([]);
    expect(next.result.counts).toMatchObject({ secretsApplied: 2, serviceAccountsPatched: 2, namespacesFailed: 0 });
  });

  it("counts a timeout (fault injected) while detaching an entry as the namespace's failure and keeps the Secret it still lists", async () => {
    const cluster = clusterWith(["default", "team-a"]);
    const first = await reconcile(cluster);
    cluster.failNext("patchServiceAccount", "timeout", { namespace: "team-a" });

    const second = await reconcile(cluster, { state: first.state, config: configOf(oneRegistry) });

    expect(second.result.failures).toEqual([
      expect.objectContaining({ namespace: "team-a", kind: "ServiceAccount", message: expect.stringContaining("did not answer in time") }),
    ]);
    expect(cluster.secret("team-a", secondSecret)).toBeDefined();
    expect(pullSecrets(cluster, "team-a")).toEqual([firstSecret, secondSecret]);
    expect(cluster.secret("default", secondSecret)).toBeUndefined();
    expect(second.result.counts).toMatchObject({ secretsDeleted: 1, namespacesFailed: 1 });
  });

  it("reports a Secret named only on a ServiceAccount's annotation as `unrecorded`: not deleted, no failed namespace", async () => {
    const cluster = fakeCluster();
    cluster.addNamespace("default");
    // A ServiceAccount manifest copied from another cluster: it names the refresher's Secret, which was never written here.
    cluster.addServiceAccount("default", "default", {
      imagePullSecrets: [{ name: secondSecret }],
      annotations: { [annotations.managedPullSecrets]: secondSecret },
    });
    cluster.createForeignSecret("default", secondSecret);

    const run = await reconcile(cluster, { config: configOf(oneRegistry) });

    expect(run.result.conflicts).toEqual([expect.objectContaining({ namespace: "default", secret: secondSecret, kind: "unrecorded" })]);
    expect(cluster.secret("default", secondSecret)).toBeDefined();
    expect(cluster.calls.filter((call) => call.operation === "deleteSecret")).toEqual([]);
    expect(run.result.counts.namespacesFailed).toBe(0);
    expect(runResult({ registries: [], result: run.result })).toBe("Succeeded");
  });

  it("makes a run with one namespace's failure PartiallyFailed, not Failed (503 injected)", async () => {
    const cluster = clusterWith(["default", "team-a"]);
    cluster.failNext("applySecret", { status: 503, reason: "ServiceUnavailable" }, { namespace: "team-a", times: 2 });
    const run = await reconcile(cluster);

    expect(run.result.counts).toEqual({ secretsApplied: 2, serviceAccountsPatched: 1, secretsDeleted: 0, namespacesFailed: 1 });
    expect(runResult({ registries: [], result: run.result })).toBe("PartiallyFailed");
  });

  it.each([1, 3])("keeps at most %i namespaces in flight", async (concurrency) => {
    const cluster = clusterWith(
      Array.from({ length: 10 }, (_, index) => `team-${index}`),
      { latencyMs: 5 },
    );
    const run = await reconcile(cluster, { concurrency });

    expect(run.result.counts.secretsApplied).toBe(20);
    expect(cluster.maxInFlight()).toBe(concurrency);
  });
});
