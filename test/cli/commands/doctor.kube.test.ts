/**
 * `acr-credential doctor` through an admin kubeconfig against the real API server, with the
 * refresher's ServiceAccount and RBAC from job/deploy/base and a broker (the real server and
 * business code) that gets passwords from the emulator: healthy, then broken one part at a time.
 */
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { AuthorizationV1Api, KubernetesObjectApi, type KubernetesObject } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { allowed, type ResourceRule } from "../../../cli/doctor/rbac.ts";
import { startEmulator, type Emulator } from "../../../emulator/index.ts";
import { parseConfig } from "../../../functions/broker/config.ts";
import { createRuntime } from "../../../functions/broker/runtime.ts";
import { serveHttp } from "../../../functions/broker/server.ts";
import { brokerClient } from "../../../job/broker-client.ts";
import { createLogger } from "../../../shared/log.ts";
import {
  adminConfig,
  apply,
  createNamespace,
  createServiceAccount,
  kubeAvailable,
  kubeConfigForToken,
  kubeEnv,
  serviceAccountToken,
} from "../../kube/cluster.ts";
import { acquireRefresherLock } from "../../job/kube-lock.ts";
import { core, installRefresher, manifests, refresherAccount, setConfig, type RefresherFixture } from "../../job/refresher-fixture.ts";
import { cli, repositoryRoot } from "./support.ts";

const worldFile = new URL("../../../emulator/worlds/demo.yaml", import.meta.url).pathname;
const acrPullRole = "acs:ram::1000000000000001:role/acr-pull";
const refresherSubject = `system:serviceaccount:${refresherAccount.namespace}:${refresherAccount.name}`;
const registryDomain = "doctor-registry.cn-hangzhou.cr.aliyuncs.com";

const run = promisify(execFile);

interface PodSpec {
  serviceAccountName: string;
  containers: Array<{ args: string[]; volumeMounts: Array<{ name: string }> }>;
  volumes: Array<{ name: string }>;
}

async function deployObjects(file: string): Promise<KubernetesObject[]> {
  const text = await readFile(new URL(`../../../job/deploy/${file}`, import.meta.url), "utf8");
  return parseAllDocuments(text).map((document) => document.toJS() as KubernetesObject);
}

interface Checked {
  code: number;
  stdout: string;
  stderr: string;
  checks: Array<{ id: string; status: "ok" | "fail" | "skip"; detail: string; fix?: string }>;
}

describe.skipIf(!kubeAvailable())("acr-credential doctor", () => {
  let release: () => Promise<void>;
  let fixture: RefresherFixture;
  let emulator: Emulator;
  let work: string;
  let namespace: string;
  const brokers: Array<{ url: string; close(): Promise<void> }> = [];
  let healthyBroker: string;
  let configData: Record<string, string>;

  async function startBroker(overrides: { audience?: string; subjects?: string[] } = {}): Promise<string> {
    const world = parseYaml(await readFile(worldFile, "utf8")) as {
      accounts: Array<{ users?: Array<{ name: string; accessKeys: Array<{ id: string; secret: string }> }> }>;
    };
    const key = world.accounts.flatMap((account) => account.users ?? []).find((user) => user.name === "broker")!.accessKeys[0]!;
    const { issuer, caFile } = kubeEnv();
    const config = parseConfig(
      {
        audience: overrides.audience ?? "acr-credential-broker",
        alibabaCloud: { stsEndpoint: emulator.endpoints.sts, crEndpoint: emulator.endpoints.cr, protocol: "http" },
        clusters: [
          {
            name: "doctor",
            issuer,
            caFile,
            regionId: "cn-hangzhou",
            subjects: overrides.subjects ?? [refresherSubject],
            registries: [{ instanceId: "cri-demo", regionId: "cn-hangzhou", assumeRoleArn: acrPullRole, domains: [registryDomain] }],
          },
        ],
      },
      "doctor test",
    );
    const runtime = createRuntime({
      loaded: { config, baseDir: work, source: "doctor test" },
      log: createLogger("broker", { level: "silent" }),
      baseIdentity: { kind: "keys", keys: { accessKeyId: key.id, accessKeySecret: key.secret } },
    });
    const server = await serveHttp(runtime, { port: 0 });
    brokers.push(server);
    return server.url;
  }

  async function doctor(...args: string[]): Promise<Checked> {
    const result = await cli(["doctor", "--kubeconfig", kubeEnv().kubeconfigFile, "--json", ...args], { env: { PATH: process.env.PATH, HOME: work } });
    const parsed = JSON.parse(result.stdout) as { ok: boolean; checks: Checked["checks"] };
    expect(parsed.ok).toBe(result.code === 0);
    return { ...result, checks: parsed.checks };
  }
  const check = (result: Checked, id: string) => result.checks.find((entry) => entry.id === id)!;

  beforeAll(async () => {
    release = await acquireRefresherLock("doctor.kube.test");
    work = await mkdtemp(join(tmpdir(), "doctor-"));
    fixture = await installRefresher();
    emulator = await startEmulator({ world: await readFile(worldFile, "utf8") });
    healthyBroker = await startBroker();
    namespace = await createNamespace("doctor");
    configData = {
      "broker-url": healthyBroker,
      "watch-namespace": namespace,
      "acr-registry-info": `- instanceId: cri-demo\n  regionId: cn-hangzhou\n  domains: ${registryDomain}\n  assumeRoleARN: ${acrPullRole}\n  expireDuration: 3600\n`,
    };
    await setConfig(configData);
  }, 180_000);

  afterAll(async () => {
    await Promise.all(brokers.map((broker) => broker.close()));
    await emulator?.close();
    await fixture?.close();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
    await release?.();
  });

  it("passes every check on a healthy setup, exit 0, and prints no password or token", async () => {
    const text = await cli(["doctor", "--kubeconfig", kubeEnv().kubeconfigFile], { env: { PATH: process.env.PATH, HOME: work } });
    expect(text.stderr).toBe("");
    expect(text.code).toBe(0);
    const lines = text.stdout.trim().split("\n");
    for (const title of ["kubernetes", "identity", "configmap", "rbac", "token issuer", "audience", "broker", "credentials"])
      expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^✓ ${title} `)));
    expect(lines.at(-1)).toBe("All checks passed.");
    expect(text.stdout).toMatch(/✓ identity +system:serviceaccount:kube-system:aliyun-acr-credential-helper/);
    expect(text.stdout).toMatch(/✓ credentials +1 received: cri-demo@cn-hangzhou until \d{4}-/);

    // The broker hands the same cached credential to the refresher's own token: its password must not appear.
    const tokenFile = join(work, "token");
    await writeFile(tokenFile, await serviceAccountToken(refresherAccount.namespace, refresherAccount.name, ["acr-credential-broker"]));
    const { credentials } = await brokerClient({ url: healthyBroker, tokenFile }).fetchCredentials({
      registries: [{ instanceId: "cri-demo", regionId: "cn-hangzhou", domains: [registryDomain], assumeRoleArn: acrPullRole, expireDuration: 3600 }],
    });
    expect(credentials[0]?.password).toBeTruthy();
    expect(text.stdout).not.toContain(credentials[0]!.password);
    expect(text.stdout).not.toMatch(/eyJ[\w-]+\.[\w-]+\./);

    const json = await doctor();
    expect(json.code).toBe(0);
    expect(json.checks.map((entry) => [entry.id, entry.status])).toEqual(
      ["kubernetes", "identity", "configmap", "rbac", "issuer", "audience", "broker", "credentials"].map((id) => [id, "ok"]),
    );
    expect(check(json, "issuer").detail).toMatch(new RegExp(`^${kubeEnv().issuer} \\(this cluster's\\), sub ${refresherSubject}, expires in \\d+ min$`));
  });

  it("runs the same checks from the image's bundle (`<image> doctor`), which carries the RBAC manifest inside", async () => {
    const bundle = join(work, "refresher.mjs");
    await run(process.execPath, [new URL("../../../job/build.mjs", import.meta.url).pathname, bundle]);
    // Outside the repository, so the manifest cannot be read from beside the code.
    const result = await run(process.execPath, [bundle, "doctor", "--kubeconfig", kubeEnv().kubeconfigFile, "--json"], {
      cwd: work,
      env: { PATH: process.env.PATH, HOME: work },
    }).then(
      (out) => ({ code: 0, ...out }),
      (error: { code: number; stdout: string; stderr: string }) => error,
    );
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    const { checks } = JSON.parse(result.stdout) as Checked;
    expect(checks.find((entry) => entry.id === "rbac")?.detail).toMatch(/^all \d+ permissions of job\/deploy\/base\/rbac\.yaml in kube-system, /);
  });

  it("ships an example Job that runs the image's doctor as the refresher, with the CronJob's token, which the API server accepts", async () => {
    const [job] = await deployObjects("examples/doctor.yaml");
    const [cronJob] = await deployObjects("base/cronjob.yaml");
    const pod = (job as unknown as { spec: { template: { spec: PodSpec } } }).spec.template.spec;
    const refresherPod = (cronJob as unknown as { spec: { jobTemplate: { spec: { template: { spec: PodSpec } } } } }).spec.jobTemplate.spec.template.spec;
    expect(pod.serviceAccountName).toBe(refresherPod.serviceAccountName);
    expect(pod.containers[0]?.args).toEqual(["doctor"]);
    expect(pod.volumes.find((volume) => volume.name === "broker-token")).toEqual(refresherPod.volumes.find((volume) => volume.name === "broker-token"));
    expect(pod.containers[0]?.volumeMounts.find((mount) => mount.name === "broker-token")).toEqual(
      refresherPod.containers[0]?.volumeMounts.find((mount) => mount.name === "broker-token"),
    );
    await KubernetesObjectApi.makeApiClient(adminConfig()).create(job!, undefined, "All");
  });

  it("names a missing ConfigMap and the sample to create it from, exit 1", async () => {
    await core().deleteNamespacedConfigMap({ namespace: "kube-system", name: "acr-configuration" });
    try {
      const result = await doctor();
      expect(result.code).toBe(1);
      expect(check(result, "configmap")).toMatchObject({
        status: "fail",
        detail: expect.stringMatching(/ConfigMap kube-system\/acr-configuration does not exist/),
      });
      const sample = /kubectl apply -f (\S+)/.exec(check(result, "configmap").fix ?? "")?.[1];
      expect(existsSync(join(repositoryRoot, sample ?? "absent"))).toBe(true);
      expect(check(result, "kubernetes").status).toBe("ok");
      expect(check(result, "credentials").status).toBe("skip");
    } finally {
      await setConfig(configData);
    }
  });

  it("passes a ConfigMap with a misspelled key and says which key it ignores", async () => {
    await setConfig({ ...configData, "watch-namspace": namespace });
    try {
      const result = await doctor();
      expect(check(result, "configmap")).toMatchObject({
        status: "ok",
        detail: expect.stringContaining("1 warning: key 'watch-namspace' is not a known"),
      });
    } finally {
      await setConfig(configData);
    }
  });

  it("names the verb the refresher's RBAC lacks, exit 1", async () => {
    const rbac = await manifests("rbac.yaml");
    const role = structuredClone(rbac.find((object) => object.kind === "Role")) as KubernetesObject & {
      rules: Array<{ resourceNames?: string[]; verbs: string[] }>;
    };
    role.rules = role.rules.filter((rule) => !(rule.verbs.includes("patch") && rule.resourceNames?.includes("acr-credential-status")));
    await apply([role]);
    try {
      // The authorizer's view follows the Role within moments.
      const authorization = fixture.kubeConfig.makeApiClient(AuthorizationV1Api);
      const statusPatch = { namespace: "kube-system", apiGroup: "", resource: "configmaps", resourceName: "acr-credential-status", verb: "patch" };
      await expect
        .poll(
          async () =>
            allowed(
              statusPatch,
              ((await authorization.createSelfSubjectRulesReview({ body: { spec: { namespace: "kube-system" } } })).status?.resourceRules ??
                []) as ResourceRule[],
            ),
          { timeout: 10_000 },
        )
        .toBe(false);
      const result = await doctor();
      expect(result.code).toBe(1);
      expect(check(result, "rbac")).toMatchObject({
        status: "fail",
        detail: "missing: patch configmaps/acr-credential-status in kube-system",
        fix: expect.stringMatching(/kubectl apply -k job\/deploy\/base/),
      });
      expect(check(result, "credentials").status).toBe("ok");
    } finally {
      await apply(rbac);
    }
  });

  it("says the broker refuses the token's audience, exit 1", async () => {
    const other = await startBroker({ audience: "another-audience" });
    const result = await doctor("--broker-url", other);
    expect(result.code).toBe(1);
    expect(check(result, "issuer").status).toBe("ok");
    expect(check(result, "broker").status).toBe("ok");
    expect(check(result, "audience")).toMatchObject({
      status: "fail",
      detail: "the broker refused the token's audience acr-credential-broker",
      fix: expect.stringMatching(/the broker's `audience` setting/),
    });
    expect(check(result, "credentials")).toMatchObject({ status: "fail", detail: expect.stringMatching(/^\[InvalidToken\]/) });
  });

  it("blames the audience of a token given with --token-file that the broker does not accept", async () => {
    const tokenFile = join(work, "wrong-audience-token");
    await writeFile(tokenFile, await serviceAccountToken(refresherAccount.namespace, refresherAccount.name, ["not-the-broker"]));
    const result = await doctor("--token-file", tokenFile);
    expect(result.code).toBe(1);
    expect(check(result, "issuer").status).toBe("ok");
    expect(check(result, "audience")).toMatchObject({ status: "fail", detail: "the broker refused the token's audience not-the-broker" });
  });

  it("says it cannot act as the refresher through a kubeconfig that may not create its tokens", async () => {
    await createServiceAccount(namespace, "powerless");
    const kubeconfig = join(work, "powerless.kubeconfig");
    await writeFile(kubeconfig, kubeConfigForToken(await serviceAccountToken(namespace, "powerless")).exportConfig());
    const result = await cli(["doctor", "--kubeconfig", kubeconfig, "--json"], { env: { PATH: process.env.PATH, HOME: work } });
    const { checks } = JSON.parse(result.stdout) as Checked;
    expect(result.code).toBe(1);
    expect(checks.find((entry) => entry.id === "identity")).toMatchObject({
      status: "fail",
      detail: expect.stringMatching(/^cannot create a token for ServiceAccount kube-system\/aliyun-acr-credential-helper: HTTP 403/),
      fix: expect.stringMatching(/a cluster admin\), or in the refresher's pod$/),
    });
    expect(checks.find((entry) => entry.id === "rbac")?.status).toBe("skip");
  });

  it("says the broker cannot be reached, exit 1", async () => {
    const closed = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo;
        server.close(() => resolve(port));
      });
    });
    const result = await doctor("--broker-url", `http://127.0.0.1:${closed}`);
    expect(result.code).toBe(1);
    expect(check(result, "broker")).toMatchObject({
      status: "fail",
      detail: `cannot reach http://127.0.0.1:${closed}/healthz (ECONNREFUSED)`,
      fix: expect.stringMatching(/broker-url/),
    });
    expect(check(result, "credentials").status).toBe("skip");
    expect(check(result, "configmap").status).toBe("ok");
  });

  it("reports the broker's refusal and what to add to its configuration, exit 1", async () => {
    const refusing = await startBroker({ subjects: ["system:serviceaccount:kube-system:someone-else"] });
    const result = await doctor("--broker-url", refusing);
    expect(result.code).toBe(1);
    expect(check(result, "audience").status).toBe("ok");
    expect(check(result, "credentials")).toMatchObject({
      status: "fail",
      detail: expect.stringMatching(/^\[Forbidden\] .*subject 'system:serviceaccount:kube-system:aliyun-acr-credential-helper' may not request credentials/),
      fix: `add ${refresherSubject} to the cluster's subjects in the broker configuration`,
    });
  });
});
