/**
 * A brownfield cluster: Secrets and ServiceAccounts written by people, kubectl, Helm and Argo CD
 * before and between the refresher's runs. The refresher runs as its own ServiceAccount under the
 * shipped RBAC and admission policy; every check reads the cluster as the admin.
 */
import { EventsV1Api, PatchStrategy, setHeaderOptions, type V1Secret, type V1ServiceAccount } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { kubernetesCluster } from "../../job/cluster.ts";
import { parseRefresherConfig } from "../../job/config.ts";
import { annotations } from "../../job/secret.ts";
import { adminConfig, apply, createNamespace as createTestNamespace, kubeAvailable } from "../kube/cluster.ts";
import {
  core,
  startRefresherSuite,
  pullSecretNames,
  readStatus,
  resetStatus,
  secretOrUndefined,
  serviceAccount,
  setConfig,
  type RefresherFixture,
} from "./refresher-fixture.ts";
import type { StubBroker } from "./stub-broker.ts";

const registryInfo = "- instanceId: cri-bfone\n  regionId: cn-hangzhou\n- instanceId: cri-bftwo\n  regionId: cn-beijing";
const onlyOne = "- instanceId: cri-bfone\n  regionId: cn-hangzhou";
const [one, two] = parseRefresherConfig({ "broker-url": "https://x.example", "acr-registry-info": registryInfo }).config.registries.map(
  (registry) => registry.secretName,
) as [string, string];

interface ReportedConflict {
  namespace: string;
  secret: string;
  kind: string;
  serviceAccount?: string;
  managers?: string[];
  message: string;
}

const conflictsInStatus = async (namespace?: string): Promise<ReportedConflict[]> =>
  (parseYaml((await readStatus())?.conflicts ?? "[]") as ReportedConflict[]).filter((conflict) => namespace === undefined || conflict.namespace === namespace);
const dockerConfig = (auths: Record<string, unknown>) => ({ ".dockerconfigjson": Buffer.from(JSON.stringify({ auths })).toString("base64") });

/** A pull Secret a person makes with `kubectl create secret docker-registry`: no label, another field manager. */
async function userSecret(namespace: string, name: string): Promise<V1Secret> {
  await core()
    .deleteNamespacedSecret({ namespace, name })
    .catch(() => undefined);
  return core().createNamespacedSecret({
    namespace,
    fieldManager: "kubectl-create",
    body: { metadata: { name }, type: "kubernetes.io/dockerconfigjson", data: dockerConfig({ "team.example.com": { auth: "dGVhbTpzZWNyZXQ=" } }) },
  });
}

async function withServiceAccount(
  namespace: string,
  name: string,
  imagePullSecrets: string[] = [],
  extraAnnotations: Record<string, string> = {},
): Promise<void> {
  await core().createNamespacedServiceAccount({
    namespace,
    body: { metadata: { name, annotations: extraAnnotations }, imagePullSecrets: imagePullSecrets.map((secret) => ({ name: secret })) },
  });
}

/** A ServiceAccount as Helm 4 or Argo CD (ServerSideApply=true) writes it: server-side apply with their field manager. */
async function applyServiceAccount(namespace: string, name: string, imagePullSecrets: string[], manager: string, force: boolean): Promise<V1ServiceAccount> {
  const body = {
    apiVersion: "v1",
    kind: "ServiceAccount",
    metadata: { name, namespace },
    imagePullSecrets: imagePullSecrets.map((secret) => ({ name: secret })),
  };
  return core().patchNamespacedServiceAccount(
    { namespace, name, body, fieldManager: manager, force },
    setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply),
  );
}

async function eventsIn(namespace: string): Promise<Array<{ reason: string; kind: string; name: string; note: string; type: string }>> {
  const list = await adminConfig().makeApiClient(EventsV1Api).listNamespacedEvent({ namespace });
  return list.items.map((event) => ({
    reason: event.reason ?? "",
    kind: event.regarding?.kind ?? "",
    name: event.regarding?.name ?? "",
    note: event.note ?? "",
    type: event.type ?? "",
  }));
}

describe.skipIf(!kubeAvailable())("the refresher on a brownfield cluster, as its own ServiceAccount under the shipped manifests", () => {
  let fixture: RefresherFixture;
  let broker: StubBroker;
  let close: (() => Promise<void>) | undefined;
  const created: string[] = [];
  const createNamespace = async (prefix: string): Promise<string> => {
    const name = await createTestNamespace(prefix);
    created.push(name);
    return name;
  };

  beforeAll(async () => {
    ({ fixture, broker, close } = await startRefresherSuite("brownfield.kube.test"));
  });

  afterAll(async () => {
    // Their conflicts are left on purpose; terminating, the namespaces are skipped by later runs of other files.
    await Promise.all(
      created.map((name) =>
        core()
          .deleteNamespace({ name })
          .catch(() => undefined),
      ),
    );
    await close?.();
  });

  describe("deletes only Secrets it created, proven by the uid its own apply returned", () => {
    let replacedThenResynced: string;
    let replacedByKubectl: string;
    let replacedLookAlike: string;
    let copiedAnnotation: string;
    let untouched: string;
    const userSecrets = new Map<string, V1Secret>();
    const copied = "acr-credential-0123456789abcdef0123456789abcdef";
    let resyncExit: number;
    let removalExit: number;

    beforeAll(async () => {
      [replacedThenResynced, replacedByKubectl, replacedLookAlike, copiedAnnotation, untouched] = (await Promise.all(
        ["bf-resync", "bf-kubectl", "bf-lookalike", "bf-copied", "bf-clean"].map((prefix) => createNamespace(prefix)),
      )) as [string, string, string, string, string];
      for (const namespace of [replacedThenResynced, replacedByKubectl, replacedLookAlike, untouched])
        await withServiceAccount(namespace, "default", ["corp-pull"]);
      // Repro B: a manifest copied from another cluster names a user's Secret as the refresher's.
      userSecrets.set(copiedAnnotation, await userSecret(copiedAnnotation, copied));
      await withServiceAccount(copiedAnnotation, "default", [copied], { [annotations.managedPullSecrets]: copied });
      await resetStatus();
      await setConfig({
        "broker-url": broker.url,
        "watch-namespace": [replacedThenResynced, replacedByKubectl, replacedLookAlike, copiedAnnotation, untouched].join(","),
        "acr-registry-info": registryInfo,
      });
      // The copied name is reported but fails nothing: every namespace is served.
      expect((await fixture.run(broker.url)).exitCode).toBe(0);

      // Repro A: a person replaces the refresher's Secret with their own of the same name; a resync reports it.
      userSecrets.set(replacedThenResynced, await userSecret(replacedThenResynced, two));
      // Someone deletes the refresher's Secret by hand: a resync writes it anew.
      await core().deleteNamespacedSecret({ namespace: untouched, name: one });
      resyncExit = (await fixture.run(broker.url, { resync: true })).exitCode;

      // Replaced after the resync: once with kubectl, once by a look-alike that passes the admission policy
      // (the refresher's label, type and field manager, e.g. restored from a backup): only the uid tells them apart.
      userSecrets.set(replacedByKubectl, await userSecret(replacedByKubectl, two));
      await core().deleteNamespacedSecret({ namespace: replacedLookAlike, name: two });
      const [lookAlike] = await apply(
        [
          {
            apiVersion: "v1",
            kind: "Secret",
            metadata: { name: two, namespace: replacedLookAlike, labels: { "app.kubernetes.io/managed-by": "acr-credential-broker" } },
            type: "kubernetes.io/dockerconfigjson",
            data: dockerConfig({ "restored.example.com": { auth: "cmVzdG9yZWQ6eA==" } }),
          } as V1Secret,
        ],
        "acr-credential-broker",
      );
      userSecrets.set(replacedLookAlike, lookAlike as V1Secret);

      // The registry whose Secrets were replaced leaves the configuration.
      await setConfig({
        "broker-url": broker.url,
        "watch-namespace": [replacedThenResynced, replacedByKubectl, replacedLookAlike, copiedAnnotation, untouched].join(","),
        "acr-registry-info": onlyOne,
      });
      removalExit = (await fixture.run(broker.url)).exitCode;
    });

    it("leaves every user's Secret of its name byte for byte as it was", async () => {
      for (const [namespace, before] of userSecrets) {
        const after = await secretOrUndefined(namespace, before.metadata?.name ?? "");
        expect(after?.metadata?.uid, namespace).toBe(before.metadata?.uid);
        expect(after?.metadata?.resourceVersion, namespace).toBe(before.metadata?.resourceVersion);
        expect(after?.data, namespace).toEqual(before.data);
      }
    });

    it("reports each one in the status, saying why it was left alone", async () => {
      const conflicts = await conflictsInStatus();
      expect(conflicts).toEqual(
        expect.arrayContaining([
          expect.objectContaining({
            namespace: replacedThenResynced,
            secret: two,
            kind: "unrecorded",
            message: expect.stringMatching(/no record of creating it here/),
          }),
          expect.objectContaining({
            namespace: replacedByKubectl,
            secret: two,
            kind: "replaced",
            message: expect.stringMatching(/replaced by one it did not create.*not deleted/),
          }),
          expect.objectContaining({ namespace: replacedLookAlike, secret: two, kind: "replaced" }),
          expect.objectContaining({ namespace: copiedAnnotation, secret: copied, kind: "unrecorded" }),
        ]),
      );
      expect(conflicts.filter((conflict) => conflict.namespace === untouched)).toEqual([]);
      expect(removalExit).toBe(1);
    });

    it("reported the replacement found by the resync as a conflict, and wrote a Secret deleted by hand anew", async () => {
      expect(resyncExit).toBe(1);
      expect(await secretOrUndefined(untouched, one)).toBeDefined();
    });

    it("still deletes its own Secret of the removed registry, and keeps the ServiceAccount entries it cannot vouch for", async () => {
      expect(await secretOrUndefined(untouched, two)).toBeUndefined();
      expect(pullSecretNames(await serviceAccount(untouched, "default"))).toEqual(["corp-pull", one]);
      // The entry for a user's Secret stays: the annotation alone does not make it the refresher's.
      expect(pullSecretNames(await serviceAccount(copiedAnnotation, "default"))).toEqual([copied, one]);
      expect(pullSecretNames(await serviceAccount(replacedThenResynced, "default"))).toContain(two);
    });

    it("says why and what to do in a Warning Event next to each Secret left alone", async () => {
      const byKubectl = await eventsIn(replacedByKubectl);
      expect(byKubectl).toContainEqual(
        expect.objectContaining({ type: "Warning", reason: "SecretReplaced", kind: "Secret", name: two, note: expect.stringMatching(/left alone/) }),
      );
      expect(await eventsIn(copiedAnnotation)).toContainEqual(
        expect.objectContaining({
          type: "Warning",
          reason: "SecretNotRecorded",
          kind: "Secret",
          name: copied,
          note: expect.stringMatching(/remove it from the acr-credential-broker\/image-pull-secrets annotation/),
        }),
      );
      // Another run with the same conflicts adds no second Event.
      await fixture.run(broker.url);
      expect((await eventsIn(replacedByKubectl)).length).toBe(byKubectl.length);
    });
  });

  describe("after an upgrade from a version that did not record uids", () => {
    /** The state as that version wrote it: the same, without `uids`. */
    async function forgetUids(secrets: string[]): Promise<void> {
      const status = await readStatus();
      const state = JSON.parse(status?.["state.json"] ?? "{}") as { secrets: Record<string, { uids?: Record<string, string> }> };
      for (const secret of secrets) delete state.secrets[secret]?.uids;
      await core().patchNamespacedConfigMap(
        { namespace: "kube-system", name: "acr-credential-status", body: { data: { "state.json": JSON.stringify(state) } } },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      );
    }

    it("learns the uids of its configured Secrets without changing them, and never deletes one it has no uid for", async () => {
      const namespace = await createNamespace("bf-upgrade");
      await withServiceAccount(namespace, "default");
      await resetStatus();
      await setConfig({ "broker-url": broker.url, "watch-namespace": namespace, "acr-registry-info": registryInfo });
      expect((await fixture.run(broker.url)).exitCode).toBe(0);
      await forgetUids([one, two]);
      const before = await Promise.all([one, two].map(async (name) => (await secretOrUndefined(namespace, name))?.metadata?.resourceVersion));

      const adopted = await fixture.run(broker.url);
      expect(adopted.plan.namespaces.find((planned) => planned.namespace === namespace)?.apply).toEqual([
        { secret: one, reason: "adopt" },
        { secret: two, reason: "adopt" },
      ]);
      expect(await Promise.all([one, two].map(async (name) => (await secretOrUndefined(namespace, name))?.metadata?.resourceVersion))).toEqual(before);
      const state = JSON.parse((await readStatus())?.["state.json"] ?? "{}") as { secrets: Record<string, { uids?: Record<string, string> }> };
      expect(state.secrets[one]?.uids?.[namespace]).toBe((await secretOrUndefined(namespace, one))?.metadata?.uid);

      // A leftover the older version wrote is detached and reported, not deleted: nothing proves it is still the refresher's.
      await forgetUids([two]);
      await setConfig({ "broker-url": broker.url, "watch-namespace": namespace, "acr-registry-info": onlyOne });
      const removed = await fixture.run(broker.url);
      // A leftover it will not delete serves nobody less: reported, but the run succeeds.
      expect(removed.exitCode).toBe(0);
      expect(await secretOrUndefined(namespace, two)).toBeDefined();
      expect(pullSecretNames(await serviceAccount(namespace, "default"))).toEqual([one]);
      expect(await conflictsInStatus(namespace)).toEqual([expect.objectContaining({ secret: two, kind: "unrecorded" })]);
      // Reported once, then forgotten: the next run is clean.
      expect((await fixture.run(broker.url)).exitCode).toBe(0);
    });
  });

  describe("ServiceAccounts whose imagePullSecrets another manager applies", () => {
    it("leaves a Helm-applied ServiceAccount alone, so Helm's next apply does not conflict, and reports the fix", async () => {
      const namespace = await createNamespace("bf-helm");
      await resetStatus();
      await applyServiceAccount(namespace, "app", ["corp-pull"], "helm", false);
      await setConfig({ "broker-url": broker.url, "watch-namespace": namespace, "service-account": "app", "acr-registry-info": onlyOne });
      const before = await serviceAccount(namespace, "app");
      const report = await fixture.run(broker.url);
      expect(report.exitCode).toBe(1);
      expect(await secretOrUndefined(namespace, one)).toBeDefined();
      expect((await serviceAccount(namespace, "app")).metadata?.resourceVersion).toBe(before.metadata?.resourceVersion);
      expect(await conflictsInStatus(namespace)).toEqual([
        expect.objectContaining({
          namespace,
          kind: "applied",
          serviceAccount: "app",
          managers: ["helm"],
          secret: one,
          message: expect.stringMatching(/list the refresher's Secrets in that manifest/),
        }),
      ]);
      expect(await eventsIn(namespace)).toContainEqual(expect.objectContaining({ reason: "ServiceAccountApplied", kind: "ServiceAccount", name: "app" }));

      // Helm upgrades without --force-conflicts: no conflict with the refresher.
      await applyServiceAccount(namespace, "app", ["corp-pull"], "helm", false);
      // The fix: the chart lists the refresher's stable Secret name. Then nothing is left to report.
      await applyServiceAccount(namespace, "app", ["corp-pull", one], "helm", false);
      const fixed = await fixture.run(broker.url);
      expect(fixed.exitCode).toBe(0);
      expect(fixed.result).toBe("Succeeded");
      expect(pullSecretNames(await serviceAccount(namespace, "app"))).toEqual(["corp-pull", one]);
    });

    it("does not re-add its entry after Argo CD forces its own list, so the two never flap", async () => {
      const namespace = await createNamespace("bf-argo");
      await resetStatus();
      await withServiceAccount(namespace, "app", ["corp-pull"]);
      await setConfig({ "broker-url": broker.url, "watch-namespace": namespace, "service-account": "app", "acr-registry-info": onlyOne });
      expect((await fixture.run(broker.url)).exitCode).toBe(0);
      expect(pullSecretNames(await serviceAccount(namespace, "app"))).toEqual(["corp-pull", one]);

      // Argo CD's first server-side sync of a list the refresher edited conflicts, as the issue saw ...
      const refused = await applyServiceAccount(namespace, "app", ["corp-pull"], "argocd-controller", false).then(
        () => "applied",
        (error: unknown) => String((error as { body?: unknown }).body),
      );
      expect(refused).toMatch(/conflict with \\"acr-credential-broker\\".*\.imagePullSecrets/);
      // Listing the refresher's entry too goes through (equal values do not conflict) ...
      await applyServiceAccount(namespace, "app", ["corp-pull", one], "argocd-controller", false);
      // ... but a sync with force of its own list takes the list over and drops the refresher's entry.
      const forced = await applyServiceAccount(namespace, "app", ["corp-pull"], "argocd-controller", true);
      expect(pullSecretNames(forced)).toEqual(["corp-pull"]);
      for (let run = 0; run < 2; run += 1) {
        const report = await fixture.run(broker.url);
        expect(report.exitCode).toBe(1);
        expect((await serviceAccount(namespace, "app")).metadata?.resourceVersion).toBe(forced.metadata?.resourceVersion);
      }
      expect(await conflictsInStatus(namespace)).toEqual([
        expect.objectContaining({ namespace, kind: "applied", serviceAccount: "app", managers: ["argocd-controller"] }),
      ]);
      // Argo CD's next sync without force goes through.
      await applyServiceAccount(namespace, "app", ["corp-pull"], "argocd-controller", false);
    });
  });

  describe("its status", () => {
    it("counts one failed namespace when one of many concurrent namespaces conflicts", async () => {
      const namespaces = await Promise.all(Array.from({ length: 24 }, () => createNamespace("bf-many")));
      for (const namespace of namespaces) await withServiceAccount(namespace, "default");
      const conflicting = namespaces[11] as string;
      await userSecret(conflicting, one);
      await resetStatus();
      await setConfig({ "broker-url": broker.url, "watch-namespace": namespaces.join(","), "acr-registry-info": onlyOne });
      const report = await fixture.run(broker.url, { concurrency: 16 });
      expect(report.apply?.conflicts.map((conflict) => conflict.namespace)).toEqual([conflicting]);
      expect(report.apply?.counts.namespacesFailed).toBe(1);
      expect(parseYaml((await readStatus())?.summary ?? "")).toMatchObject({ namespacesFailed: 1, conflicts: 1, secretsApplied: 23 });
    });

    it("names a namespace of watch-namespace that does not exist", async () => {
      const present = await createNamespace("bf-present");
      await withServiceAccount(present, "default");
      const missing = `bf-missing-${present.slice(-8)}`;
      await setConfig({ "broker-url": broker.url, "watch-namespace": `${present},${missing}`, "acr-registry-info": onlyOne });
      const report = await fixture.run(broker.url);
      expect(report.exitCode).toBe(0);
      expect(parseYaml((await readStatus())?.["missing-namespaces"] ?? "[]")).toEqual([missing]);
      expect(fixture.logs.some((line) => line.includes("do not exist") && line.includes(missing))).toBe(true);
    });
  });

  describe("cleanup after narrowing watch-namespace", () => {
    it("lists ServiceAccounts once, cluster-wide, instead of once per namespace left behind", async () => {
      const namespaces = await Promise.all(Array.from({ length: 60 }, () => createNamespace("bf-wide")));
      for (const namespace of namespaces) await withServiceAccount(namespace, "default");
      await resetStatus();
      await setConfig({ "broker-url": broker.url, "watch-namespace": namespaces.join(","), "acr-registry-info": onlyOne });
      expect((await fixture.run(broker.url)).exitCode).toBe(0);

      // Every HTTP request the refresher's client sends, as it leaves.
      const requests: string[] = [];
      const counting = kubernetesCluster(fixture.kubeConfig, { observe: ({ method, url }) => void requests.push(`${method} ${new URL(url).pathname}`) });
      const serviceAccountLists = () => requests.filter((request) => /^GET .*\/serviceaccounts$/.test(request));
      const kept = namespaces.slice(0, 2);
      await setConfig({ "broker-url": broker.url, "watch-namespace": kept.join(","), "acr-registry-info": onlyOne });
      const allAccounts = (await core().listServiceAccountForAllNamespaces()).items.length;
      const narrowed = await fixture.run(broker.url, {}, counting);
      expect(narrowed.exitCode).toBe(0);
      // One paginated cluster-wide list (pages of 500), no list per namespace.
      expect(serviceAccountLists()).toEqual(Array.from({ length: Math.ceil(allAccounts / 500) }, () => "GET /api/v1/serviceaccounts"));
      expect(narrowed.apply?.counts.secretsDeleted).toBe(58);
      expect(await secretOrUndefined(namespaces[30] as string, one)).toBeUndefined();

      // Once cleaned up, the few named namespaces are listed one by one again.
      requests.length = 0;
      await fixture.run(broker.url, {}, counting);
      expect(serviceAccountLists().sort()).toEqual(kept.map((namespace) => `GET /api/v1/namespaces/${namespace}/serviceaccounts`).sort());
    });
  });
});
