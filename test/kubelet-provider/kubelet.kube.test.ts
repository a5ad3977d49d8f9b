/**
 * The kubelet's own image credential provider code (k8s.io/kubernetes/pkg/credentialprovider/plugin
 * at the pinned release, in the `keyring` harness) with a CredentialProviderConfig using
 * ServiceAccount tokens: for a pod it reads the pod's ServiceAccount from the real apiserver, gets a
 * token for the provider's audience bound to the pod (TokenRequest), executes our plugin, which asks
 * the broker over HTTPS; skopeo then pulls from a real docker-registry (behind the emulator's token
 * realm) with exactly the credential the kubelet code obtained. No Secret, no ServiceAccount patch.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { CoreV1Api, type KubernetesObject, type V1ClusterRole } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { startEmulator, type Emulator } from "../../emulator/index.ts";
import { findExecutable } from "../../emulator/registry/docker-registry.ts";
import { dockerRegistryAvailable } from "../../emulator/registry/index.ts";
import { writeOciLayout } from "../../emulator/registry/oci-layout.ts";
import { pushLayout, skopeoIn, type SkopeoResult } from "../../emulator/registry/skopeo.ts";
import { parseConfig } from "../../functions/broker/config.ts";
import { createRuntime, type BrokerRuntime } from "../../functions/broker/runtime.ts";
import { identityFromKeys } from "../../shared/alibaba/identity.ts";
import { createLogger } from "../../shared/log.ts";
import { crCall } from "../emulator/clients.ts";
import { adminConfig, apply, createNamespace, createServiceAccount, kubeAvailable, kubeConfigForToken, kubeEnv, serviceAccountToken } from "../kube/cluster.ts";
import { buildPlugin, keyringBinary, run, serveBrokerHttps, type HttpsBroker, type Run } from "./support.ts";

const missing = [
  ...(dockerRegistryAvailable() ? [] : ["docker-registry"]),
  ...(findExecutable("skopeo") === undefined ? ["skopeo"] : []),
  ...(keyringBinary() === undefined ? ["the keyring harness (bash test/kubelet-provider/build.sh)"] : []),
];
const skip = missing.length > 0 && process.env.CI !== "true";
if (skip) console.log(`skipping test/kubelet-provider/kubelet.kube.test.ts: ${missing.join(", ")} missing`);

const worldFile = new URL("../../emulator/worlds/demo.yaml", import.meta.url).pathname;
const acrPullRole = "acs:ram::1000000000000001:role/acr-pull";
const audience = "acr-credential-broker-kubelet";
const providerName = "acr-credential-kubelet-provider";
const roleAnnotation = "acr-credential-broker/role-arn";
/** A role of the demo world that exists but that no grant lists. */
const fcRole = "acs:ram::1000000000000001:role/token-broker-fc-role";

async function demoUserKey(name: string): Promise<{ accessKeyId: string; accessKeySecret: string }> {
  const world = parseYaml(await readFile(worldFile, "utf8")) as {
    accounts: Array<{ users?: Array<{ name: string; accessKeys: Array<{ id: string; secret: string }> }> }>;
  };
  const key = world.accounts.flatMap((account) => account.users ?? []).find((user) => user.name === name)?.accessKeys[0];
  if (key === undefined) throw new Error(`the demo world has no user '${name}' with an access key`);
  return { accessKeyId: key.id, accessKeySecret: key.secret };
}

interface Lookup {
  lookup: string;
  credentials: Array<{ username: string; password: string }>;
}

describe.skipIf(!kubeAvailable() || skip)("the kubelet's credential provider code → plugin → broker → skopeo pull", () => {
  let work: string;
  let emulator: Emulator;
  let runtime: BrokerRuntime;
  let broker: HttpsBroker;
  let skopeo: (args: string[]) => Promise<SkopeoResult>;
  let registry: string;
  let image: string;
  let manifestDigest: string;
  let namespace: string;
  let providerConfig: string;
  let nodeKubeconfig: string;
  let pluginDir: string;

  const keyring = async (...lookups: string[]): Promise<Run & { results: Lookup[] }> => {
    const result = await run(keyringBinary()!, ["--config", providerConfig, "--bin-dir", pluginDir, "--kubeconfig", nodeKubeconfig, ...lookups], "");
    return {
      ...result,
      results:
        result.stdout.trim() === ""
          ? []
          : result.stdout
              .trim()
              .split("\n")
              .map((line) => JSON.parse(line) as Lookup),
    };
  };
  const brokerCalls = () => broker.requests.get("/v1/kubelet-credentials") ?? 0;

  beforeAll(async () => {
    if (missing.length > 0) throw new Error(`${missing.join(", ")} missing; .ci/run installs and builds them`);
    work = await mkdtemp(join(tmpdir(), "kubelet-provider-"));
    skopeo = await skopeoIn(work);
    pluginDir = dirname(buildPlugin(join(work, "plugins")));

    // Alibaba Cloud: the demo world with a real docker-registry behind its token realm, and an image in it.
    emulator = await startEmulator({ world: await readFile(worldFile, "utf8"), registry: true });
    registry = emulator.endpoints.registry as string;
    image = `${registry}/demo/hello:v1`;
    const publisher = await crCall(emulator.endpoints.cr, await demoUserKey("publisher"), "GetAuthorizationToken", { InstanceId: "cri-demo" });
    ({ manifestDigest } = await writeOciLayout(join(work, "layout"), { tag: "v1" }));
    const login = { username: String(publisher.TempUsername), password: String(publisher.AuthorizationToken) };
    const pushed = await pushLayout(skopeo, join(work, "layout"), "v1", image, login);
    if (pushed.code !== 0) throw new Error(`could not push the test image: ${pushed.stderr}`);

    // The cluster: pods of a granted and of an ungranted ServiceAccount, and the node's identity with
    // what the kubelet's provider code needs (read pods and ServiceAccounts, request tokens for them).
    namespace = await createNamespace("kubelet-provider");
    const core = adminConfig().makeApiClient(CoreV1Api);
    for (const name of ["app", "other", "node"]) await createServiceAccount(namespace, name);
    // Accounts that name a role for their pulls: one the broker's grant lists, one it does not.
    for (const [name, role] of [
      ["team", acrPullRole],
      ["sneaky", fcRole],
    ] as const) {
      await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name, annotations: { [roleAnnotation]: role } } } });
    }
    for (const [pod, serviceAccountName] of [
      ["app-1", "app"],
      ["app-2", "app"],
      ["other-1", "other"],
      ["team-1", "team"],
      ["sneaky-1", "sneaky"],
    ] as const) {
      await core.createNamespacedPod({ namespace, body: { metadata: { name: pod }, spec: { serviceAccountName, containers: [{ name: "main", image }] } } });
    }
    await apply([
      {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "Role",
        metadata: { name: "node-image-credentials", namespace },
        rules: [
          { apiGroups: [""], resources: ["pods", "serviceaccounts"], verbs: ["get"] },
          { apiGroups: [""], resources: ["serviceaccounts/token"], verbs: ["create"] },
        ],
      },
      {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "RoleBinding",
        metadata: { name: "node-image-credentials", namespace },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "node-image-credentials" },
        subjects: [{ kind: "ServiceAccount", name: "node", namespace }],
      },
    ]);
    nodeKubeconfig = join(work, "node.kubeconfig");
    await writeFile(nodeKubeconfig, kubeConfigForToken(await serviceAccountToken(namespace, "node", [], 3600)).exportConfig());

    // The broker: this cluster's issuer, and a grant for the `app` ServiceAccount only.
    const { issuer, caFile } = kubeEnv();
    const config = parseConfig(
      {
        audience: "acr-credential-broker",
        alibabaCloud: { stsEndpoint: emulator.endpoints.sts, crEndpoint: emulator.endpoints.cr, protocol: "http" },
        clusters: [
          {
            name: "kube",
            issuer,
            caFile,
            subjects: ["system:serviceaccount:kube-system:acr-credential-refresher"],
            kubeletProvider: {
              grants: [
                {
                  serviceAccounts: [`system:serviceaccount:${namespace}:app`],
                  registries: [{ instanceId: "cri-demo", regionId: "cn-hangzhou", assumeRoleArn: acrPullRole, domains: [registry] }],
                },
                // No role of their own: without the annotation the broker's own identity, which may not pull, would ask.
                {
                  serviceAccounts: [`system:serviceaccount:${namespace}:team`, `system:serviceaccount:${namespace}:sneaky`],
                  registries: [{ instanceId: "cri-demo", regionId: "cn-hangzhou", domains: [registry] }],
                  annotationRoles: [acrPullRole],
                },
              ],
            },
          },
        ],
      },
      "test",
    );
    runtime = createRuntime({
      loaded: { config, baseDir: work, source: "test" },
      baseIdentity: identityFromKeys(await demoUserKey("broker")),
      log: createLogger("broker", { level: "silent" }),
    });
    broker = await serveBrokerHttps(runtime, work);

    // The kubelet's --image-credential-provider-config.
    providerConfig = join(work, "credential-provider.yaml");
    await writeFile(
      providerConfig,
      JSON.stringify({
        apiVersion: "kubelet.config.k8s.io/v1",
        kind: "CredentialProviderConfig",
        providers: [
          {
            name: providerName,
            matchImages: [registry],
            defaultCacheDuration: "0s",
            apiVersion: "credentialprovider.kubelet.k8s.io/v1",
            args: ["--broker-url", broker.url, "--timeout", "10s"],
            env: [{ name: "ACR_BROKER_CA_FILE", value: broker.caFile }],
            tokenAttributes: {
              serviceAccountTokenAudience: audience,
              cacheType: "ServiceAccount",
              requireServiceAccount: true,
              optionalServiceAccountAnnotationKeys: [roleAnnotation],
            },
          },
        ],
      }),
    );
  }, 180_000);

  afterAll(async () => {
    await broker?.close();
    await runtime?.close();
    await emulator?.close();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it("obtains, for a pod of a granted ServiceAccount, a credential the real registry accepts", async () => {
    const { results, code, stderr } = await keyring(`${namespace}/app-1=${image}`);
    expect(stderr).not.toMatch(/Failed to provide credentials/);
    expect(code).toBe(0);
    expect(results[0]!.credentials).toHaveLength(1);
    const { username, password } = results[0]!.credentials[0]!;
    const pulled = await skopeo([
      "copy",
      "--src-tls-verify=false",
      "--src-creds",
      `${username}:${password}`,
      `docker://${image}`,
      `oci:${join(work, "pulled")}:v1`,
    ]);
    expect(pulled.stderr).toBe("");
    expect(pulled.code).toBe(0);
    const inspected = await skopeo(["inspect", "--tls-verify=false", "--creds", `${username}:${password}`, `docker://${image}`]);
    expect((JSON.parse(inspected.stdout) as { Digest: string }).Digest).toBe(manifestDigest);
    // The broker assumed its configured role for it, through the emulator.
    expect(emulator.log.filter({ api: "cr:GetAuthorizationToken", outcome: "ok" }).map((entry) => entry.principal)).toContainEqual(
      expect.stringMatching(/^acs:ram::1000000000000001:assumed-role\/acr-pull\//),
    );
  });

  it("caches the answer for its cacheDuration per ServiceAccount: a second pod of it pulls without another broker call", async () => {
    // defaultCacheDuration is 0s in the provider's configuration: only the broker's cacheDuration makes the kubelet keep it.
    const before = brokerCalls();
    const { results } = await keyring(`${namespace}/app-1=${image}`, `${namespace}/app-2=${image}`, `${namespace}/app-1=${registry}/demo/other:v2`);
    expect(brokerCalls() - before).toBe(1);
    expect(results.map((r) => r.credentials.length)).toEqual([1, 1, 1]);
    expect(new Set(results.map((r) => r.credentials[0]!.password)).size).toBe(1);
  });

  it("gives a pod of a ServiceAccount no grant names no credential: the broker refused it", async () => {
    const before = brokerCalls();
    const { results, stderr } = await keyring(`${namespace}/other-1=${image}`);
    expect(brokerCalls() - before).toBe(1);
    expect(results[0]!.credentials).toEqual([]);
    expect(stderr).toMatch(/403 Forbidden.*matches no kubeletProvider grant/);
    const refused = await skopeo(["inspect", "--tls-verify=false", `docker://${image}`]);
    expect(refused.code).not.toBe(0);
  });

  it("passes the ServiceAccount's role annotation, and the broker pulls with a role its grant lists", async () => {
    const { results, stderr } = await keyring(`${namespace}/team-1=${image}`);
    expect(stderr).not.toMatch(/Failed to provide credentials/);
    const { username, password } = results[0]!.credentials[0]!;
    const inspected = await skopeo(["inspect", "--tls-verify=false", "--creds", `${username}:${password}`, `docker://${image}`]);
    expect((JSON.parse(inspected.stdout) as { Digest: string }).Digest).toBe(manifestDigest);
  });

  it("gets no credential for a ServiceAccount whose annotation names a role its grant does not list", async () => {
    const { results, stderr } = await keyring(`${namespace}/sneaky-1=${image}`);
    expect(results[0]!.credentials).toEqual([]);
    expect(stderr).toMatch(/403 Forbidden.*may not pull as 'acs:ram::1000000000000001:role\/token-broker-fc-role'/);
    expect(emulator.log.filter({ api: "sts:AssumeRole" }).map((entry) => entry.resource)).not.toContain(fcRole);
  });

  it("accepts the shipped CredentialProviderConfig with the kubelet's own validation, and refuses one without cacheType", async () => {
    const shipped = new URL("../../kubelet-provider/deploy/credential-provider.yaml", import.meta.url).pathname;
    const valid = await run(keyringBinary()!, ["--config", shipped, "--bin-dir", pluginDir, "--kubeconfig", nodeKubeconfig], "");
    expect(valid.stderr).toBe("");
    expect(valid.code).toBe(0);
    const withoutCacheType = join(work, "without-cache-type.yaml");
    await writeFile(withoutCacheType, (await readFile(shipped, "utf8")).replace(/^\s*cacheType:.*$/m, ""));
    const invalid = await run(keyringBinary()!, ["--config", withoutCacheType, "--bin-dir", pluginDir, "--kubeconfig", nodeKubeconfig], "");
    expect(invalid.code).toBe(2);
    expect(invalid.stderr).toMatch(/cacheType is required/);
  });

  it("takes the shipped node RBAC for the audience", async () => {
    const documents = (await readFile(new URL("../../kubelet-provider/deploy/node-audience-rbac.yaml", import.meta.url), "utf8"))
      .split(/^---$/m)
      .map((text) => parseYaml(text) as KubernetesObject);
    const [role] = await apply(documents);
    expect((role as V1ClusterRole).rules).toEqual([{ apiGroups: [""], resources: [audience], verbs: ["request-serviceaccounts-token-audience"] }]);
  });

  it("gives no credential, stale or empty, when the broker is down; the kubelet logs the plugin's error", async () => {
    await broker.close();
    const { results, stderr } = await keyring(`${namespace}/app-1=${image}`);
    expect(results[0]!.credentials).toEqual([]);
    expect(stderr).toMatch(/acr-credential-kubelet-provider: broker unreachable at 127\.0\.0\.1:\d+/);
  });
});
