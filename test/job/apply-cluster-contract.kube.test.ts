/**
 * The in-memory cluster API that `apply.test.ts` runs against answers as the real API server does:
 * the same calls, in the same order, against a real kube-apiserver (through `kubernetesCluster`) and
 * against `fakeCluster` give the same outcomes — the value, or the HTTP status, reason and field of
 * the failure. Whatever `apply` decides from those answers is then tested without the binaries.
 */
import { CoreV1Api, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { kubernetesCluster, statusOf, type ClusterApi } from "../../job/cluster.ts";
import { parseRefresherConfig } from "../../job/config.ts";
import { namedEvent } from "../../job/events.ts";
import { desiredSecret, type SecretManifest } from "../../job/secret.ts";
import { serviceAccountPatch } from "../../job/service-account-patch.ts";
import { adminConfig, createNamespace, createServiceAccount, kubeAvailable } from "../kube/cluster.ts";
import { fakeCluster } from "./fake-cluster.ts";

/** What another client does meanwhile, on either cluster. */
interface World {
  cluster: ClusterApi;
  namespace: string;
  /** `kubectl create secret`: an Update-operation manager owning every field it set. */
  createForeignSecret(name: string, type: string, data: Record<string, string>): Promise<void>;
  removeSecret(name: string): Promise<void>;
  /** Another writer edits the ServiceAccount (new resourceVersion). */
  touchServiceAccount(): Promise<void>;
}

const [registry] = parseRefresherConfig({
  "broker-url": "https://broker.example.com",
  "acr-registry-info": "- instanceId: cri-contract\n  regionId: cn-hangzhou",
}).config.registries;
if (registry === undefined) throw new Error("no registry parsed");
const desired = desiredSecret(
  registry,
  {
    instanceId: "cri-contract",
    regionId: "cn-hangzhou",
    edition: "enterprise",
    domains: ["cri-contract-registry.cn-hangzhou.cr.aliyuncs.com"],
    username: "cr_temp_user",
    password: "pw-1",
    expiresAt: "2030-01-01T00:00:00Z",
  },
  undefined,
);

/** A call's outcome without what differs between clusters by nature (uids, resourceVersions). */
async function outcome(call: Promise<unknown>): Promise<unknown> {
  try {
    const value = await call;
    if (typeof value === "object" && value !== null && "uid" in value)
      return { ok: typeof (value as { uid: unknown }).uid === "string" && (value as { uid: string }).uid !== "" ? "a uid" : "no uid" };
    return { ok: value ?? null };
  } catch (error) {
    const details = (error as { details?: { reason?: string; causes?: Array<{ field?: string }> } }).details ?? {};
    return {
      status: statusOf(error),
      reason: details.reason,
      fields: [...new Set((details.causes ?? []).map((cause) => cause.field))].sort(),
      vanished: String(error).includes("no existing object was found"),
    };
  }
}

async function scenario(world: World): Promise<Array<[string, unknown]>> {
  const { cluster, namespace } = world;
  const manifest: SecretManifest = desired.manifestFor(namespace);
  const steps: Array<[string, unknown]> = [];
  const step = async (label: string, call: () => Promise<unknown>) => steps.push([label, await outcome(call())]);

  let uid = "";
  await step("first apply", async () => ((uid = (await cluster.applySecret(manifest)).uid), { uid }));
  await step("re-apply with its uid", () => cluster.applySecret(manifest, uid));
  await step("re-apply with another uid", () => cluster.applySecret(manifest, randomUUID()));
  await step("delete with another uid", () => cluster.deleteSecret(namespace, manifest.metadata.name, randomUUID()));
  await step("delete with its uid", () => cluster.deleteSecret(namespace, manifest.metadata.name, uid));
  await step("delete again", () => cluster.deleteSecret(namespace, manifest.metadata.name, uid));
  await step("re-apply a Secret deleted meanwhile", () => cluster.applySecret(manifest, uid));

  await world.createForeignSecret(manifest.metadata.name, "kubernetes.io/dockerconfigjson", {
    ".dockerconfigjson": Buffer.from('{"auths":{}}').toString("base64"),
  });
  await step("apply over a foreign Secret of the same type", () => cluster.applySecret(manifest));
  await world.removeSecret(manifest.metadata.name);
  await world.createForeignSecret(manifest.metadata.name, "Opaque", { ".dockerconfigjson": manifest.data[".dockerconfigjson"] });
  await step("apply over a foreign Secret of another type", () => cluster.applySecret(manifest));

  const listed = await cluster.getServiceAccount(namespace, "default");
  if (listed === undefined) throw new Error("no default ServiceAccount");
  await world.touchServiceAccount();
  await step("patch from a stale resourceVersion", () => cluster.patchServiceAccount(namespace, "default", serviceAccountPatch(listed, ["one"], [])));
  const fresh = await cluster.getServiceAccount(namespace, "default");
  if (fresh === undefined) throw new Error("no default ServiceAccount");
  await step("patch from the current resourceVersion", () => cluster.patchServiceAccount(namespace, "default", serviceAccountPatch(fresh, ["one"], [])));
  await step("the patched entries", async () => (await cluster.getServiceAccount(namespace, "default"))?.imagePullSecrets);
  await step("patch a ServiceAccount that does not exist", () => cluster.patchServiceAccount(namespace, "nobody", serviceAccountPatch(fresh, ["one"], [])));

  const event = namedEvent({
    namespace,
    reason: "SecretNameTaken",
    action: "LeftAlone",
    note: "contract",
    regarding: { kind: "Secret", name: manifest.metadata.name },
  });
  await step("create an Event", () => cluster.createEvent(event));
  await step("create it again", () => cluster.createEvent(event));
  await step("its count", () => cluster.readEventCount(namespace, event.name));
  await step("set its series", () => cluster.patchEventSeries(namespace, event.name, { count: 3, lastObservedTime: new Date() }));
  await step("its count after", () => cluster.readEventCount(namespace, event.name));

  await step("read a ConfigMap that does not exist", () => cluster.readConfigMap(namespace, "status"));
  await step("write a ConfigMap", () => cluster.applyConfigMap(namespace, "status", { a: "1" }, { app: "x" }));
  await step("read it", () => cluster.readConfigMap(namespace, "status"));
  return steps;
}

describe.skipIf(!kubeAvailable())("the in-memory cluster API of apply's tests", () => {
  it("answers each call the refresher makes as the real API server does", async () => {
    const namespace = await createNamespace("fake-contract");
    await createServiceAccount(namespace, "default");
    const core = adminConfig().makeApiClient(CoreV1Api);
    const real = await scenario({
      cluster: kubernetesCluster(adminConfig()),
      namespace,
      createForeignSecret: async (name, type, data) =>
        void (await core.createNamespacedSecret({ namespace, body: { metadata: { name }, type, data }, fieldManager: "kubectl-create" })),
      removeSecret: async (name) => void (await core.deleteNamespacedSecret({ namespace, name })),
      touchServiceAccount: async () =>
        void (await core.patchNamespacedServiceAccount(
          { namespace, name: "default", body: { metadata: { labels: { touched: "yes" } } } },
          setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
        )),
    });

    const fake = fakeCluster();
    fake.addNamespace(namespace);
    fake.addServiceAccount(namespace, "default");
    const inMemory = await scenario({
      cluster: fake,
      namespace,
      createForeignSecret: async (name, type, data) => void fake.createForeignSecret(namespace, name, { type, data }),
      removeSecret: async (name) => fake.removeSecret(namespace, name),
      touchServiceAccount: async () => fake.editServiceAccount(namespace, "default", (sa) => (sa.annotations = { ...sa.annotations, touched: "yes" })),
    });

    // What apply relies on, as docs/decisions/005 and 003 describe it.
    const real422 = real.find(([label]) => label === "re-apply with another uid")?.[1];
    expect(real422).toMatchObject({ status: 422, fields: ["metadata.uid"] });
    expect(real.find(([label]) => label === "re-apply a Secret deleted meanwhile")?.[1]).toMatchObject({ status: 409, vanished: true });
    expect(real.find(([label]) => label === "patch from a stale resourceVersion")?.[1]).toMatchObject({ status: 422 });
    expect(inMemory).toEqual(real);
  });
});
