import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { startEmulator, type Emulator } from "../../emulator/index.ts";
import { dockerRegistryAvailable } from "../../emulator/registry/index.ts";
import { findExecutable } from "../../emulator/registry/docker-registry.ts";
import { parseRefresherConfig } from "../../job/config.ts";
import { start, type Running } from "../cli/commands/support.ts";
import { crCall } from "../emulator/clients.ts";
import { pushLayout, skopeoIn, type SkopeoResult } from "../../emulator/registry/skopeo.ts";
import { createNamespace, createServiceAccount, kubeAvailable, kubeEnv } from "../kube/cluster.ts";
import { writeOciLayout } from "../../emulator/registry/oci-layout.ts";
import { acquireRefresherLock } from "./kube-lock.ts";
import {
  dockerConfigOf,
  installRefresher,
  pullSecretNames,
  refresherAccount,
  resetStatus,
  secretOrUndefined,
  serviceAccount,
  setConfig,
  type RefresherFixture,
} from "./refresher-fixture.ts";

/**
 * The whole path with nothing stood in for: the bundled refresher (the container's command) runs as
 * its ServiceAccount under the shipped RBAC, proves itself to `acr-credential broker` with a token
 * the real API server issued, the broker verifies it against the API server's issuer and gets a
 * password from the emulator through the real SDKs, and skopeo pulls from a real docker-registry
 * with exactly the `.dockerconfigjson` the refresher wrote.
 */
const missingTools = [...(dockerRegistryAvailable() ? [] : ["docker-registry"]), ...(findExecutable("skopeo") === undefined ? ["skopeo"] : [])];
const toolsMissing = missingTools.length > 0 && process.env.CI !== "true";
if (toolsMissing) console.log(`skipping test/job/end-to-end.kube.test.ts: ${missingTools.join(" and ")} not installed`);

const worldFile = new URL("../../emulator/worlds/demo.yaml", import.meta.url).pathname;
const acrPullRole = "acs:ram::1000000000000001:role/acr-pull";

interface WorldUser {
  name: string;
  accessKeys: Array<{ id: string; secret: string }>;
}

/** A user's access key as the demo world defines it (fake keys that only the emulator knows). */
async function demoUserKey(name: string): Promise<{ accessKeyId: string; accessKeySecret: string }> {
  const world = parseYaml(await readFile(worldFile, "utf8")) as { accounts: Array<{ users?: WorldUser[] }> };
  const user = world.accounts.flatMap((account) => account.users ?? []).find((candidate) => candidate.name === name);
  const key = user?.accessKeys[0];
  if (key === undefined) throw new Error(`the demo world has no user '${name}' with an access key`);
  return { accessKeyId: key.id, accessKeySecret: key.secret };
}

describe.skipIf(!kubeAvailable() || toolsMissing)("end to end: refresher → acr-credential broker → emulator → Secret → skopeo pull", () => {
  let release: () => Promise<void>;
  let fixture: RefresherFixture;
  let emulator: Emulator;
  let broker: Running;
  let work: string;
  let skopeo: (args: string[]) => Promise<SkopeoResult>;
  let registry: string;
  let namespace: string;
  let secretName: string;
  let manifestDigest: string;
  let refresherRun: { code: number; stdout: string; stderr: string };

  beforeAll(async () => {
    if (missingTools.length > 0) throw new Error(`${missingTools.join(" and ")} not installed; CI needs the Debian packages docker-registry and skopeo`);
    release = await acquireRefresherLock("end-to-end.kube.test");
    work = await mkdtemp(join(tmpdir(), "refresher-e2e-"));
    skopeo = await skopeoIn(work);
    fixture = await installRefresher();

    // Alibaba Cloud: the demo world, with a real docker-registry behind its token realm and an image in it.
    emulator = await startEmulator({ world: await readFile(worldFile, "utf8"), registry: true });
    registry = emulator.endpoints.registry as string;
    const publisher = await crCall(emulator.endpoints.cr, await demoUserKey("publisher"), "GetAuthorizationToken", { InstanceId: "cri-demo" });
    ({ manifestDigest } = await writeOciLayout(join(work, "layout"), { tag: "v1" }));
    const login = { username: String(publisher.TempUsername), password: String(publisher.AuthorizationToken) };
    const pushed = await pushLayout(skopeo, join(work, "layout"), "v1", `${registry}/demo/hello:v1`, login);
    if (pushed.code !== 0) throw new Error(`could not push the test image: ${pushed.stderr}`);

    // The broker, as an operator runs it: a config file naming this cluster's issuer, its identity from the environment.
    const { issuer, caFile } = kubeEnv();
    await writeFile(
      join(work, "broker.yaml"),
      JSON.stringify({
        audience: "acr-credential-broker",
        alibabaCloud: { stsEndpoint: emulator.endpoints.sts, crEndpoint: emulator.endpoints.cr, protocol: "http" },
        // The cluster's region fills the ConfigMap's items that name none, as the add-on defaults to it.
        clusters: [
          {
            name: "kube-e2e",
            issuer,
            caFile,
            regionId: "cn-hangzhou",
            subjects: [`system:serviceaccount:${refresherAccount.namespace}:${refresherAccount.name}`],
            registries: [{ instanceId: "cri-demo", regionId: "cn-hangzhou", assumeRoleArn: acrPullRole }],
          },
        ],
      }),
    );
    const brokerKey = await demoUserKey("broker");
    broker = start(["broker", "--config", join(work, "broker.yaml"), "--port", "0"], {
      PATH: process.env.PATH,
      HOME: work,
      ALIBABA_CLOUD_ECS_METADATA_DISABLED: "true",
      ALIBABA_CLOUD_ACCESS_KEY_ID: brokerKey.accessKeyId,
      ALIBABA_CLOUD_ACCESS_KEY_SECRET: brokerKey.accessKeySecret,
    });
    const brokerUrl = (await broker.waitFor(/listening on (http:\/\/\S+)/, "stderr"))[1] as string;

    // The cluster: a namespace with a ServiceAccount, and the refresher's ConfigMap holding the managed
    // add-on's parameters pasted as they are — no regionId, so the broker fills in the cluster's.
    namespace = await createNamespace("rfr-e2e");
    await createServiceAccount(namespace, "default");
    const addonParameters = {
      AcrInstanceInfo: [
        {
          instanceID: "cri-demo",
          regionID: "",
          domains: registry,
          assumeRoleARN: acrPullRole,
          expireDuration: 3600,
          rrsaRoleARN: "",
          rrsaOIDCProviderRoleARN: "",
        },
      ],
      enableRRSA: false,
      watchNamespace: namespace,
      serviceAccount: "Default",
      expiringThreshold: "15m",
    };
    const configData = { "broker-url": brokerUrl, "addon-parameters": JSON.stringify(addonParameters) };
    secretName = parseRefresherConfig(configData).config.registries[0]!.secretName;
    await setConfig(configData);
    await resetStatus();

    // The refresher exactly as the container runs it: the bundle, in-cluster identity from a kubeconfig.
    const bundle = join(work, "refresher.mjs");
    await new Promise<void>((resolve, reject) =>
      execFile(process.execPath, [new URL("../../job/build.mjs", import.meta.url).pathname, bundle], (error) => (error ? reject(error) : resolve())),
    );
    const kubeconfig = join(work, "kubeconfig");
    await writeFile(kubeconfig, fixture.kubeConfig.exportConfig());
    refresherRun = await new Promise((resolve) =>
      execFile(
        process.execPath,
        [bundle, "--once", "--no-spread", "--kubeconfig", kubeconfig, "--token-file", fixture.tokenFile],
        { cwd: work, env: { PATH: process.env.PATH, HOME: work } },
        (error, stdout, stderr) => resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr }),
      ),
    );
  }, 180_000);

  afterAll(async () => {
    await broker?.stop("SIGTERM");
    await emulator?.close();
    await fixture?.close();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
    await release?.();
  });

  it("runs the bundled refresher to success", () => {
    expect(refresherRun.stderr).toMatch(/"msg":"run finished"/);
    expect(refresherRun.code).toBe(0);
  });

  it("got the credential from the broker, which used its role through the emulator", async () => {
    expect(emulator.log.filter({ api: "cr:GetAuthorizationToken", outcome: "ok" }).map((entry) => entry.principal)).toContainEqual(
      expect.stringMatching(/^acs:ram::1000000000000001:assumed-role\/acr-pull\//),
    );
    // The broker writes its request lines in batches, at least once a second.
    await expect.poll(() => broker.stdout(), { timeout: 10_000 }).toMatch(/kube-e2e/);
  });

  it("wrote the Secret for the registry and attached it to the ServiceAccount", async () => {
    const secret = await secretOrUndefined(namespace, secretName);
    expect(secret?.type).toBe("kubernetes.io/dockerconfigjson");
    expect(Object.keys(dockerConfigOf(secret!).auths)).toEqual([registry]);
    expect(secret?.metadata?.annotations?.["acr-credential-broker/registry"]).toBe("cri-demo@cn-hangzhou");
    expect(pullSecretNames(await serviceAccount(namespace, "default"))).toEqual([secretName]);
  });

  it("lets skopeo pull the image with exactly that Secret's .dockerconfigjson as its auth file", async () => {
    const secret = await secretOrUndefined(namespace, secretName);
    const authFile = join(work, "auth.json");
    await writeFile(authFile, Buffer.from(secret!.data![".dockerconfigjson"]!, "base64"));
    const pulled = await skopeo([
      "copy",
      "--src-tls-verify=false",
      "--authfile",
      authFile,
      `docker://${registry}/demo/hello:v1`,
      `oci:${join(work, "pulled")}:v1`,
    ]);
    expect(pulled.stderr).toBe("");
    expect(pulled.code).toBe(0);
    const inspected = await skopeo(["inspect", "--tls-verify=false", "--authfile", authFile, `docker://${registry}/demo/hello:v1`]);
    expect((JSON.parse(inspected.stdout) as { Digest: string }).Digest).toBe(manifestDigest);
  });

  it("is refused by the same registry without those credentials", async () => {
    const emptyAuth = join(work, "empty-auth.json");
    await writeFile(emptyAuth, JSON.stringify({ auths: {} }));
    const refused = await skopeo(["inspect", "--tls-verify=false", "--authfile", emptyAuth, `docker://${registry}/demo/hello:v1`]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/unauthorized|authentication required/i);
  });
});
