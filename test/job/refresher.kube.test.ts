import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { ApiException, AuthorizationV1Api, CoreV1Api, PatchStrategy, setHeaderOptions, type V1Secret } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { parseRefresherConfig } from "../../job/config.ts";
import type { ClusterApi } from "../../job/cluster.ts";
import { annotations } from "../../job/secret.ts";
import { createNamespace, createServiceAccount, kubeAvailable } from "../kube/cluster.ts";
import {
  core,
  dockerConfigOf,
  startRefresherSuite,
  pullSecretNames,
  readStatus,
  resetStatus,
  secretOrUndefined,
  serviceAccount,
  setConfig,
  type RefresherFixture,
  resourceVersions,
} from "./refresher-fixture.ts";
import { stubExpiry, type StubBroker } from "./stub-broker.ts";

const registryInfo = `
- instanceId: cri-rfrone
  regionId: cn-hangzhou
- instanceId: cri-rfrtwo
  regionId: cn-beijing
  domains: two-registry.cn-beijing.cr.aliyuncs.com
`;
const [registryOne, registryTwo] = parseRefresherConfig({ "broker-url": "https://x.example", "acr-registry-info": registryInfo }).config.registries as [
  { secretName: string; instanceId: string; regionId: string; domains: string[] },
  { secretName: string; instanceId: string; regionId: string; domains: string[] },
];
const one = registryOne.secretName;
const two = registryTwo.secretName;
/** Ten minutes before the stub's credentials expire: a run then asks the broker to renew them. */
const nearStubExpiry = { now: () => new Date(Date.parse(stubExpiry) - 10 * 60_000) };

async function withServiceAccount(namespace: string, name: string, imagePullSecrets: string[] = []): Promise<void> {
  await core().createNamespacedServiceAccount({
    namespace,
    body: { metadata: { name }, ...(imagePullSecrets.length > 0 ? { imagePullSecrets: imagePullSecrets.map((secret) => ({ name: secret })) } : {}) },
  });
}

describe.skipIf(!kubeAvailable())("the refresher against a real API server, as its own ServiceAccount under the shipped RBAC", () => {
  let fixture: RefresherFixture;
  let broker: StubBroker;
  let close: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    ({ fixture, broker, close } = await startRefresherSuite("refresher.kube.test"));
  });

  afterAll(async () => {
    await close?.();
  });

  describe("on a seeded cluster", () => {
    let nsA: string;
    let nsB: string;
    let excluded: string;
    let terminating: string;
    let collision: V1Secret;
    let firstExit: number;

    beforeAll(async () => {
      [nsA, nsB, excluded, terminating] = await Promise.all([
        createNamespace("rfr-a"),
        createNamespace("rfr-b"),
        createNamespace("rfr-excluded"),
        createNamespace("rfr-leaving"),
      ]);
      for (const namespace of [nsA, nsB]) {
        await withServiceAccount(namespace, "default");
        await withServiceAccount(namespace, "builder", namespace === nsA ? ["corp-pull-1", "corp-pull-2"] : []);
        await withServiceAccount(namespace, "unlisted");
      }
      await withServiceAccount(excluded, "default");
      await core().patchNamespace(
        { name: excluded, body: { metadata: { annotations: { [annotations.exclude]: "true" } } } },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      );
      await withServiceAccount(terminating, "default");
      await core().deleteNamespace({ name: terminating });
      collision = await core().createNamespacedSecret({
        namespace: nsB,
        body: {
          metadata: { name: two, labels: { owner: "team-b" } },
          type: "kubernetes.io/dockerconfigjson",
          data: { ".dockerconfigjson": Buffer.from('{"auths":{"team-b.example.com":{"auth":"dGVhbTpiCg=="}}}').toString("base64") },
        },
      });
      await setConfig({
        "broker-url": broker.url,
        "watch-namespace": [nsA, nsB, excluded, terminating].join(","),
        "service-account": "default,builder",
        "notify-email": "ops@example.com",
        "acr-registry-info": registryInfo,
      });
      await resetStatus();
      firstExit = (await fixture.run(broker.url)).exitCode;
    });

    it("writes a kubernetes.io/dockerconfigjson Secret per registry with one auths entry per domain", async () => {
      for (const [namespace, registry] of [
        [nsA, registryOne],
        [nsA, registryTwo],
        [nsB, registryOne],
      ] as const) {
        const secret = await secretOrUndefined(namespace, registry.secretName);
        expect(secret, `${namespace}/${registry.secretName}`).toBeDefined();
        expect(secret?.type).toBe("kubernetes.io/dockerconfigjson");
        expect(secret?.metadata?.labels?.["app.kubernetes.io/managed-by"]).toBe("acr-credential-broker");
        expect(secret?.metadata?.annotations?.[annotations.expiresAt]).toBe(stubExpiry);
        expect(secret?.metadata?.annotations?.[annotations.notifyEmail]).toBe("ops@example.com");
        const issued = broker.credentialFor({
          instanceId: registry.instanceId,
          regionId: registry.regionId,
          ...(registry.domains.length > 0 ? { domains: registry.domains } : {}),
        });
        const auths = dockerConfigOf(secret as V1Secret).auths;
        expect(Object.keys(auths).sort()).toEqual([...issued.domains].sort());
        for (const entry of Object.values(auths)) {
          expect(entry.username).toBe(issued.username);
          expect(entry.password).toBe(issued.password);
          expect(Buffer.from(entry.auth, "base64").toString("utf8")).toBe(`${issued.username}:${issued.password}`);
        }
      }
    });

    it("lists its Secrets on every chosen ServiceAccount after the foreign entries, which all remain", async () => {
      expect(pullSecretNames(await serviceAccount(nsA, "builder"))).toEqual(["corp-pull-1", "corp-pull-2", one, two]);
      expect(pullSecretNames(await serviceAccount(nsA, "default"))).toEqual([one, two]);
      expect(pullSecretNames(await serviceAccount(nsA, "unlisted"))).toEqual([]);
      expect(pullSecretNames(await serviceAccount(nsB, "default"))).toEqual([one]);
    });

    it("leaves a user's Secret of the same name byte for byte unchanged, reports it and exits 1", async () => {
      const after = await secretOrUndefined(nsB, two);
      expect(after?.metadata?.resourceVersion).toBe(collision.metadata?.resourceVersion);
      expect(after?.data).toEqual(collision.data);
      expect(after?.metadata?.labels).toEqual(collision.metadata?.labels);
      const status = await readStatus();
      const conflicts = parseYaml(status?.conflicts ?? "[]") as Array<{ namespace: string; secret: string }>;
      expect(conflicts).toContainEqual(expect.objectContaining({ namespace: nsB, secret: two }));
      expect(status?.result).toBe("PartiallyFailed");
      expect(firstExit).toBe(1);
    });

    it("skips the excluded and the terminating namespace", async () => {
      for (const namespace of [excluded, terminating]) {
        expect(await secretOrUndefined(namespace, one)).toBeUndefined();
        expect(pullSecretNames(await serviceAccount(namespace, "default"))).toEqual([]);
      }
    });

    it("records each registry's expiry and the run in the status ConfigMap", async () => {
      const status = await readStatus();
      expect(Date.parse(status?.["last-run"] ?? "")).not.toBeNaN();
      const registries = parseYaml(status?.registries ?? "[]") as Array<{ secret: string; expiresAt: string }>;
      expect(registries.map((r) => [r.secret, r.expiresAt])).toEqual([
        [one, stubExpiry],
        [two, stubExpiry],
      ]);
      expect(parseYaml(status?.summary ?? "")).toMatchObject({ namespacesServed: 2, secretsApplied: 3 });
    });

    it("never writes a password or token to its logs", () => {
      const text = fixture.logs.join("");
      expect(fixture.logs.length).toBeGreaterThan(3);
      expect(text).not.toMatch(/stub-password/);
      expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{20,}/);
    });

    it("changes no resourceVersion of any Secret or ServiceAccount when run again with unchanged credentials", async () => {
      const before = await resourceVersions([nsA, nsB]);
      const report = await fixture.run(broker.url);
      expect(report.apply?.counts).toMatchObject({ secretsApplied: 0, serviceAccountsPatched: 0, secretsDeleted: 0 });
      expect(await resourceVersions([nsA, nsB])).toEqual(before);
    });

    it("updates the Secrets in place when the credentials rotate, without touching the ServiceAccounts", async () => {
      const before = await resourceVersions([nsA]);
      broker.rotate();
      await fixture.run(broker.url, {}, undefined, nearStubExpiry);
      const secret = await secretOrUndefined(nsA, one);
      const password = broker.credentialFor({ instanceId: registryOne.instanceId, regionId: registryOne.regionId }).password;
      expect(Object.values(dockerConfigOf(secret as V1Secret).auths)[0]?.password).toBe(password);
      const after = await resourceVersions([nsA]);
      expect(after[`${nsA}/Secret/${one}`]).not.toBe(before[`${nsA}/Secret/${one}`]);
      expect(after[`${nsA}/ServiceAccount/builder`]).toBe(before[`${nsA}/ServiceAccount/builder`]);
    });

    it("keeps serving a registry the broker fails for, and reports the failure", async () => {
      broker.failFor([registryTwo.instanceId]);
      try {
        const report = await fixture.run(broker.url, {}, undefined, nearStubExpiry);
        expect(report.exitCode).toBe(1);
        expect(await secretOrUndefined(nsA, two)).toBeDefined();
        expect(pullSecretNames(await serviceAccount(nsA, "default"))).toEqual([one, two]);
        expect((await readStatus())?.registries).toMatch(/UpstreamThrottled/);
      } finally {
        broker.failFor([]);
      }
    });

    it("when a registry is removed, deletes its Secrets and removes only its own entries", async () => {
      await setConfig({
        "broker-url": broker.url,
        "watch-namespace": [nsA, nsB].join(","),
        "service-account": "default,builder",
        "acr-registry-info": "- instanceId: cri-rfrone\n  regionId: cn-hangzhou",
      });
      const report = await fixture.run(broker.url);
      expect(report.exitCode).toBe(0);
      expect(await secretOrUndefined(nsA, two)).toBeUndefined();
      expect(await secretOrUndefined(nsA, one)).toBeDefined();
      expect(pullSecretNames(await serviceAccount(nsA, "builder"))).toEqual(["corp-pull-1", "corp-pull-2", one]);
      expect(pullSecretNames(await serviceAccount(nsA, "default"))).toEqual([one]);
      // The user's Secret that merely shares the name is not the refresher's to delete.
      expect((await secretOrUndefined(nsB, two))?.metadata?.resourceVersion).toBe(collision.metadata?.resourceVersion);
    });
  });

  /** `acr-credential refresh ARGS` in a child process, as the refresher's ServiceAccount. */
  async function cliAsRefresher(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const dir = await mkdtemp(join(tmpdir(), "refresher-cli-"));
    try {
      const kubeconfig = join(dir, "kubeconfig");
      await writeFile(kubeconfig, fixture.kubeConfig.exportConfig());
      const bin = new URL("../../bin/acr-credential.mjs", import.meta.url).pathname;
      return await promisify(execFile)(process.execPath, [bin, "refresh", "--kubeconfig", kubeconfig, "--token-file", fixture.tokenFile, ...args]).then(
        (out) => ({ code: 0, ...out }),
        (error: { code: number; stdout: string; stderr: string }) => error,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  describe("choosing namespaces and ServiceAccounts", () => {
    it("with watch-namespace all serves every namespace but the excluded ones, and cleans up when narrowed again", async () => {
      const [served, skipped] = await Promise.all([createNamespace("rfr-all"), createNamespace("rfr-skip")]);
      await withServiceAccount(served, "ci-puller");
      await withServiceAccount(skipped, "ci-puller");
      await resetStatus();
      await setConfig({
        "broker-url": broker.url,
        "watch-namespace": "all",
        "exclude-namespace": "kube-system,kube-public,kube-node-lease,rfr-skip-*",
        "service-account": "ci-puller",
        "acr-registry-info": "- instanceId: cri-rfrone\n  regionId: cn-hangzhou",
      });
      await fixture.run(broker.url);
      expect(await secretOrUndefined(served, one)).toBeDefined();
      expect(await secretOrUndefined("default", one)).toBeDefined();
      expect(pullSecretNames(await serviceAccount(served, "ci-puller"))).toEqual([one]);
      expect(await secretOrUndefined(skipped, one)).toBeUndefined();
      expect(pullSecretNames(await serviceAccount(skipped, "ci-puller"))).toEqual([]);
      expect(await secretOrUndefined("kube-system", one)).toBeUndefined();
      expect(pullSecretNames(await serviceAccount("kube-system", "aliyun-acr-credential-helper"))).toEqual([]);

      await setConfig({
        "broker-url": broker.url,
        "watch-namespace": served,
        "service-account": "ci-puller",
        "acr-registry-info": "- instanceId: cri-rfrone\n  regionId: cn-hangzhou",
      });
      await fixture.run(broker.url);
      expect(await secretOrUndefined("default", one)).toBeUndefined();
      expect(await secretOrUndefined(served, one)).toBeDefined();
    });

    it("with the managed add-on's parameters pasted and watchNamespace ALL serves the system namespaces too, as the add-on does", async () => {
      await createServiceAccount("kube-system", "rfr-system-puller");
      const elsewhere = await createNamespace("rfr-sys");
      await createServiceAccount(elsewhere, "rfr-system-puller");
      await resetStatus();
      const parameters = {
        AcrInstanceInfo: [{ instanceID: "cri-rfrone", regionID: "cn-hangzhou" }],
        enableRRSA: false,
        watchNamespace: "ALL",
        serviceAccount: "rfr-system-puller",
        expiringThreshold: "15m",
      };
      await setConfig({ "broker-url": broker.url, "addon-parameters": JSON.stringify(parameters) });
      expect((await fixture.run(broker.url)).exitCode).toBe(0);
      expect(await secretOrUndefined("kube-system", one)).toBeDefined();
      expect(pullSecretNames(await serviceAccount("kube-system", "rfr-system-puller"))).toEqual([one]);
      expect(pullSecretNames(await serviceAccount(elsewhere, "rfr-system-puller"))).toEqual([one]);

      // Narrowed again, the refresher takes its Secret and entry back out of kube-system.
      await setConfig({ "broker-url": broker.url, "addon-parameters": JSON.stringify({ ...parameters, watchNamespace: elsewhere }) });
      expect((await fixture.run(broker.url)).exitCode).toBe(0);
      expect(await secretOrUndefined("kube-system", one)).toBeUndefined();
      expect(pullSecretNames(await serviceAccount("kube-system", "rfr-system-puller"))).toEqual([]);
    });

    it("with service-account '*' attaches the Secret to every ServiceAccount of the chosen namespaces", async () => {
      const namespace = await createNamespace("rfr-star");
      for (const name of ["default", "builder", "deployer"]) await createServiceAccount(namespace, name);
      await setConfig({
        "broker-url": broker.url,
        "watch-namespace": namespace,
        "service-account": "*",
        "acr-registry-info": "- instanceId: cri-rfrone\n  regionId: cn-hangzhou",
      });
      await fixture.run(broker.url);
      for (const name of ["default", "builder", "deployer"]) expect(pullSecretNames(await serviceAccount(namespace, name))).toEqual([one]);
    });

    it("reads the managed edition's camelCase keys to the same Secrets", async () => {
      const namespace = await createNamespace("rfr-camel");
      await createServiceAccount(namespace, "builder");
      await resetStatus();
      await setConfig({
        brokerUrl: broker.url,
        watchNamespace: namespace,
        serviceAccount: "builder",
        expiringThreshold: "10m",
        AcrInstanceInfo: "- instanceID: cri-rfrone\n  regionID: cn-hangzhou",
      });
      const report = await fixture.run(broker.url);
      expect(report.exitCode).toBe(0);
      expect(await secretOrUndefined(namespace, one)).toBeDefined();
      expect(pullSecretNames(await serviceAccount(namespace, "builder"))).toEqual([one]);
    });

    it("prints a plan with --dry-run and writes nothing", async () => {
      const namespace = await createNamespace("rfr-dry");
      await createServiceAccount(namespace, "default");
      await setConfig({ "broker-url": broker.url, "watch-namespace": namespace, "acr-registry-info": "- instanceId: cri-rfrone\n  regionId: cn-hangzhou" });
      const statusBefore = await readStatus();
      const report = await fixture.run(broker.url, { dryRun: true });
      expect(report.plan.namespaces.find((planned) => planned.namespace === namespace)).toMatchObject({
        apply: [{ secret: one, reason: "new" }],
        serviceAccounts: [{ name: "default", add: [one] }],
      });
      expect(await secretOrUndefined(namespace, one)).toBeUndefined();
      expect(pullSecretNames(await serviceAccount(namespace, "default"))).toEqual([]);
      expect(await readStatus()).toEqual(statusBefore);
    });

    it("prints the plan as JSON on stdout with acr-credential refresh --dry-run, without a password", async () => {
      const namespace = await createNamespace("rfr-dry-cli");
      await createServiceAccount(namespace, "default");
      await setConfig({ "broker-url": broker.url, "watch-namespace": namespace, "acr-registry-info": "- instanceId: cri-rfrone\n  regionId: cn-hangzhou" });
      const result = await cliAsRefresher(["--dry-run"]);
      expect(result.code).toBe(0);
      const printed = JSON.parse(result.stdout) as {
        namespaces: Array<{ namespace: string; apply: Array<{ secret: string }>; serviceAccounts: Array<{ name: string; add: string[] }> }>;
        registries: Array<{ secret: string; expiresAt: string }>;
      };
      expect(printed.namespaces.find((planned) => planned.namespace === namespace)).toMatchObject({
        apply: [{ secret: one }],
        serviceAccounts: [{ name: "default", add: [one] }],
      });
      expect(printed.registries).toEqual([expect.objectContaining({ secret: one, expiresAt: stubExpiry })]);
      expect(result.stdout + result.stderr).not.toMatch(/stub-password/);
      expect(await secretOrUndefined(namespace, one)).toBeUndefined();
    });

    it("rejects an invalid ConfigMap with exit 2 naming the key, and writes nothing", async () => {
      const namespace = await createNamespace("rfr-invalid");
      await createServiceAccount(namespace, "default");
      await setConfig({
        "broker-url": broker.url,
        "watch-namespace": `${namespace},Not_A_Namespace`,
        "acr-registry-info": "- instanceId: cri-rfrone\n  regionId: cn-hangzhou",
      });
      const statusBefore = await core().readNamespacedConfigMap({ namespace: "kube-system", name: "acr-credential-status" });
      const result = await cliAsRefresher([]);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/key 'watch-namespace': 'Not_A_Namespace' is not a namespace name.*\[ConfigInvalid\]/);
      expect(result.stderr).not.toMatch(/\n\s+at /);
      expect(await secretOrUndefined(namespace, one)).toBeUndefined();
      const statusAfter = await core().readNamespacedConfigMap({ namespace: "kube-system", name: "acr-credential-status" });
      expect(statusAfter.metadata?.resourceVersion).toBe(statusBefore.metadata?.resourceVersion);
    });
  });

  describe("without a configuration", () => {
    it("stops with ConfigInvalid (exit 2) naming the missing ConfigMap and how to create it", async () => {
      await core().deleteNamespacedConfigMap({ namespace: "kube-system", name: "acr-configuration" });
      const error = await fixture.run(broker.url).then(
        () => undefined,
        (reason: unknown) => reason as { code?: string; exitCode?: number; message?: string },
      );
      expect(error).toMatchObject({ code: "ConfigInvalid", exitCode: 2 });
      expect(error?.message).toMatch(/ConfigMap kube-system\/acr-configuration does not exist; create it/);
    });
  });

  describe("with other writers", () => {
    it("two refreshers started at once converge with no duplicate entries", async () => {
      const namespace = await createNamespace("rfr-twice");
      await withServiceAccount(namespace, "default", ["corp-pull"]);
      await withServiceAccount(namespace, "builder");
      await resetStatus();
      await setConfig({ "broker-url": broker.url, "watch-namespace": namespace, "service-account": "*", "acr-registry-info": registryInfo });
      const reports = await Promise.all([fixture.run(broker.url), fixture.run(broker.url)]);
      expect(reports.map((report) => report.exitCode)).toEqual([0, 0]);
      expect(pullSecretNames(await serviceAccount(namespace, "default"))).toEqual(["corp-pull", one, two]);
      expect(pullSecretNames(await serviceAccount(namespace, "builder"))).toEqual([one, two]);
    });

    it("keeps both edits when another client changes a ServiceAccount between the refresher's read and its patch", async () => {
      const namespace = await createNamespace("rfr-race");
      await withServiceAccount(namespace, "default", ["corp-pull"]);
      await setConfig({ "broker-url": broker.url, "watch-namespace": namespace, "acr-registry-info": "- instanceId: cri-rfrone\n  regionId: cn-hangzhou" });
      let interfered = 0;
      const racing: ClusterApi = {
        ...fixture.cluster,
        async patchServiceAccount(ns, name, patch) {
          if (ns === namespace && interfered === 0) {
            interfered += 1;
            // Another controller appends its own entry after the refresher listed the ServiceAccount.
            await core().patchNamespacedServiceAccount(
              { namespace: ns, name, body: [{ op: "add", path: "/imagePullSecrets/-", value: { name: "late-pull" } }] },
              setHeaderOptions("Content-Type", PatchStrategy.JsonPatch),
            );
          }
          return fixture.cluster.patchServiceAccount(ns, name, patch);
        },
      };
      const report = await fixture.run(broker.url, {}, racing);
      expect(interfered).toBe(1);
      expect(report.exitCode).toBe(0);
      expect(pullSecretNames(await serviceAccount(namespace, "default"))).toEqual(["corp-pull", "late-pull", one]);
    });
  });

  describe("when one namespace fails", () => {
    it("still serves the others, records the failure and exits 1", async () => {
      const [doomed, healthy] = await Promise.all([createNamespace("rfr-doomed"), createNamespace("rfr-healthy")]);
      for (const namespace of [doomed, healthy]) await createServiceAccount(namespace, "default");
      await resetStatus();
      await setConfig({
        "broker-url": broker.url,
        "watch-namespace": `${doomed},${healthy}`,
        "acr-registry-info": "- instanceId: cri-rfrone\n  regionId: cn-hangzhou",
      });
      const failing: ClusterApi = {
        ...fixture.cluster,
        async applySecret(secret) {
          // The namespace starts terminating after the refresher listed it: the API server now refuses writes there.
          if (secret.metadata.namespace === doomed) await core().deleteNamespace({ name: doomed });
          return fixture.cluster.applySecret(secret);
        },
      };
      const report = await fixture.run(broker.url, {}, failing);
      expect(report.exitCode).toBe(1);
      expect(report.apply?.failures).toEqual([expect.objectContaining({ namespace: doomed, kind: "Secret", name: one, code: "KubernetesError" })]);
      expect(await secretOrUndefined(healthy, one)).toBeDefined();
      expect(pullSecretNames(await serviceAccount(healthy, "default"))).toEqual([one]);
      expect(pullSecretNames(await serviceAccount(doomed, "default"))).toEqual([]);
      const failures = parseYaml((await readStatus())?.failures ?? "[]") as Array<{ namespace: string; message: string }>;
      expect(failures).toEqual([expect.objectContaining({ namespace: doomed, message: expect.stringMatching(/terminat/) })]);
    });
  });

  describe("its permissions", () => {
    async function allowed(verb: string, resource: string, namespace?: string): Promise<boolean> {
      const review = await fixture.kubeConfig.makeApiClient(AuthorizationV1Api).createSelfSubjectAccessReview({
        body: { spec: { resourceAttributes: { verb, resource, ...(namespace === undefined ? {} : { namespace }) } } },
      });
      return review.status?.allowed === true;
    }

    it("may not get, list or watch Secrets anywhere", async () => {
      for (const verb of ["get", "list", "watch"]) {
        expect(await allowed(verb, "secrets", "default"), verb).toBe(false);
        expect(await allowed(verb, "secrets"), `${verb} cluster-wide`).toBe(false);
        expect(await allowed(verb, "secrets", "kube-system"), `${verb} in kube-system`).toBe(false);
      }
      const api = fixture.kubeConfig.makeApiClient(CoreV1Api);
      await expect(api.listNamespacedSecret({ namespace: "default" })).rejects.toSatisfy((error) => error instanceof ApiException && error.code === 403);
      await expect(api.readNamespacedSecret({ namespace: "default", name: one })).rejects.toSatisfy(
        (error) => error instanceof ApiException && error.code === 403,
      );
    });

    it("may create, patch and delete Secrets, and patch ServiceAccounts, which is all it needs", async () => {
      for (const verb of ["create", "patch", "delete"]) expect(await allowed(verb, "secrets", "default"), verb).toBe(true);
      expect(await allowed("patch", "serviceaccounts", "default")).toBe(true);
      expect(await allowed("update", "serviceaccounts", "default")).toBe(false);
      expect(await allowed("delete", "configmaps", "kube-system")).toBe(false);
    });
  });
});
