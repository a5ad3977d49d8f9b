/**
 * The chart as `helm` renders it: lint for every value set in ci/, what each value set produces,
 * the values it refuses, one version across chart, kustomize and package.json, and the objects of
 * the kustomize manifests for the same settings (the differences allowed are in equivalence.ts).
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml, stringify } from "yaml";
import { parseRefresherConfig } from "../../job/config.ts";
import { defaultMetricsAddress, parseMetricsAddress } from "../../job/metrics.ts";
import { cases, chartOnlyLabels, chartValues, exampleValuesFile, overlay } from "./equivalence.ts";
import { chartDir, deployDir, findTools, helm, keyOf, kustomize, objects, pinnedHelmVersion, type Manifest, type Result } from "./tools.ts";

const tools = findTools();
const inCi = ["true", "1"].includes((process.env["CI"] ?? "").toLowerCase());
if (!tools.found && inCi) throw new Error(`the chart tests cannot run in CI: ${tools.reason}`);
if (!tools.found) console.warn(`Helm chart tests skipped: ${tools.reason}`);

const read = async (path: string) => readFile(path, "utf8");
const valueSets = ["example-values.yaml", "watch-rrsa-values.yaml", "existing-configmap-values.yaml"];

interface PodSpec {
  containers: Array<{ image: string; args: string[]; resources: unknown }>;
  volumes: Array<{ name: string; projected?: { sources: Array<{ serviceAccountToken: { audience: string; path: string } }> } }>;
  nodeSelector?: Record<string, string>;
  imagePullSecrets?: Array<{ name: string }>;
}
const podOf = (object: Manifest): PodSpec => {
  const spec = object["spec"] as { template?: { spec: PodSpec }; jobTemplate?: { spec: { template: { spec: PodSpec } } } };
  return (spec.template ?? spec.jobTemplate?.spec.template)?.spec as PodSpec;
};
const audiences = (pod: PodSpec) => pod.volumes.flatMap((volume) => volume.projected?.sources.map((source) => source.serviceAccountToken.audience) ?? []);

describe("the chart tests' tools", () => {
  it("read helm's version from test/helm/go.mod and say how to build a missing helm", () => {
    expect(pinnedHelmVersion("module m\n\ntool helm.sh/helm/v4/cmd/helm\n\nrequire (\n\thelm.sh/helm/v4 v4.3.2 // indirect\n)\n")).toBe("v4.3.2");
    expect(() => pinnedHelmVersion("module m\n")).toThrow(/does not require helm\.sh\/helm\/v4/);
    expect(findTools({ HELM_BINARY: "/nonexistent/helm" })).toEqual({
      found: false,
      reason: expect.stringMatching(/no helm at \/nonexistent\/helm: run `bash test\/helm\/build\.sh`/),
    });
  });
});

describe.skipIf(!tools.found)("the Helm chart job/deploy/helm/acr-credential-refresher", () => {
  const { helm: helmBinary } = tools.found ? tools : { helm: "" };
  let dir: string;
  const run = (args: string[]): Promise<Result> => helm({ helm: helmBinary }, args);
  const template = async (values: string[] = [], extra: string[] = []): Promise<Result> =>
    run(["template", "acr-credential-refresher", chartDir, "--namespace", "kube-system", ...values.flatMap((file) => ["--values", file]), ...extra]);
  const rendered = async (values: string[] = [], extra: string[] = []): Promise<Manifest[]> => {
    const result = await template(values, extra);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    return objects(result.stdout);
  };
  const valuesFile = async (name: string, values: Record<string, unknown>): Promise<string> => {
    const path = join(dir, name);
    await writeFile(path, stringify(values));
    return path;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "chart-test-"));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("passes helm lint --strict with every value set in ci/", async () => {
    for (const file of valueSets) {
      const result = await run(["lint", "--strict", chartDir, "--namespace", "kube-system", "--values", join(chartDir, "ci", file)]);
      expect(result.stdout, file).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
      expect(result.code, `${file}: ${result.stdout}${result.stderr}`).toBe(0);
    }
  });

  it("renders the example configuration as a CronJob with the ConfigMap the refresher reads, and no Deployment", async () => {
    const manifests = await rendered([join(chartDir, "ci/example-values.yaml")]);
    expect(manifests.map(keyOf).sort()).toEqual(
      [
        "ClusterRole//acr-credential-refresher",
        "ClusterRoleBinding//acr-credential-refresher",
        "ConfigMap/kube-system/acr-configuration",
        "CronJob/kube-system/acr-credential-refresher",
        "Role/kube-system/acr-credential-refresher",
        "RoleBinding/kube-system/acr-credential-refresher",
        "ServiceAccount/kube-system/aliyun-acr-credential-helper",
        "ValidatingAdmissionPolicy/kube-system/acr-credential-refresher-own-secrets",
        "ValidatingAdmissionPolicyBinding/kube-system/acr-credential-refresher-own-secrets",
      ].sort(),
    );
    // Clusters older than 1.30 have no ValidatingAdmissionPolicy: secretPolicy=false leaves exactly it out.
    const withoutPolicy = await rendered([join(chartDir, "ci/example-values.yaml")], ["--set", "secretPolicy=false"]);
    expect(
      manifests
        .map(keyOf)
        .filter((key) => !withoutPolicy.map(keyOf).includes(key))
        .sort(),
    ).toEqual([
      "ValidatingAdmissionPolicy/kube-system/acr-credential-refresher-own-secrets",
      "ValidatingAdmissionPolicyBinding/kube-system/acr-credential-refresher-own-secrets",
    ]);
    const configMap = manifests.find((object) => object.kind === "ConfigMap") as unknown as { data: Record<string, string> };
    const example = objects(await read(join(deployDir, "examples/acr-configuration.yaml")))[0] as unknown as { data: Record<string, string> };
    const parsed = parseRefresherConfig(configMap.data);
    expect(parsed.warnings).toEqual([]);
    expect(parsed.config).toEqual(parseRefresherConfig(example.data).config);
  });

  it("renders the --watch Deployment with RRSA's second token, every namespace and an image by digest", async () => {
    const manifests = await rendered([join(chartDir, "ci/watch-rrsa-values.yaml")]);
    expect(manifests.map((object) => object.kind)).not.toContain("CronJob");
    const deployment = manifests.find((object) => object.kind === "Deployment") as Manifest;
    const pod = podOf(deployment);
    expect(pod.containers[0]?.args).toEqual(["--watch"]);
    // The probes hit the port `refresh --watch` serves by default.
    expect(pod.containers[0]).toMatchObject({
      ports: [{ name: "metrics", containerPort: parseMetricsAddress(defaultMetricsAddress)?.port }],
      livenessProbe: { httpGet: { path: "/healthz", port: "metrics" } },
      readinessProbe: { httpGet: { path: "/readyz", port: "metrics" } },
    });
    expect((deployment["spec"] as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels).toMatchObject({
      "app.kubernetes.io/part-of": "acr-credential-broker",
    });
    expect(pod.containers[0]?.image).toBe(`registry-vpc.cn-hangzhou.aliyuncs.com/platform/acr-credential-refresher:0.1.0@sha256:${"0".repeat(64)}`);
    expect(audiences(pod)).toEqual(["acr-credential-broker", "sts.aliyuncs.com"]);
    const { config, warnings } = parseRefresherConfig(
      (manifests.find((object) => object.kind === "ConfigMap") as unknown as { data: Record<string, string> }).data,
    );
    expect(warnings).toEqual([]);
    expect(config).toMatchObject({
      rrsa: true,
      watchNamespace: { kind: "all" },
      serviceAccount: { kind: "all" },
      expiringThresholdSeconds: 1800,
      notifyEmail: "ops@example.com",
    });
    expect(config.registries.map((registry) => [registry.instanceId, registry.regionId, registry.rrsaRoleArn])).toEqual([
      ["cri-abc123", "cn-hangzhou", "acs:ram::1234567890123456:role/acr-pull"],
      [undefined, "cn-shanghai", undefined],
    ]);
  });

  it("keeps an existing acr-configuration: no ConfigMap, the broker URL as a flag, and the other run settings", async () => {
    const manifests = await rendered([join(chartDir, "ci/existing-configmap-values.yaml")]);
    expect(manifests.map((object) => object.kind)).not.toContain("ConfigMap");
    const cronJob = manifests.find((object) => object.kind === "CronJob") as Manifest;
    expect((cronJob["spec"] as { schedule: string }).schedule).toBe("*/10 * * * *");
    const pod = podOf(cronJob);
    expect(pod.containers[0]?.args).toEqual(["--once", "--schedule-interval", "10m", "--broker-url=https://acr-broker.example.com"]);
    expect(audiences(pod)).toEqual(["broker.example.com"]);
    expect(pod.containers[0]?.resources).toEqual({ requests: { cpu: "20m", memory: "64Mi" }, limits: { cpu: "200m", memory: "128Mi" } });
    expect(pod.nodeSelector).toEqual({ "kubernetes.io/os": "linux" });
    expect(pod.imagePullSecrets).toEqual([{ name: "refresher-image-pull" }]);
  });

  it("tells the refresher its schedule's interval when it is not the default 5 minutes", async () => {
    const example = join(chartDir, "ci/example-values.yaml");
    const argsFor = async (extra: string[]) =>
      podOf((await rendered([example], extra)).find((object) => object.kind === "CronJob") as Manifest).containers[0]?.args;
    expect(await argsFor([])).toEqual(["--once"]);
    expect(await argsFor(["--set", "schedule=*/15 * * * *"])).toEqual(["--once", "--schedule-interval", "15m"]);
    expect(await argsFor(["--set", "schedule=0 * * * *", "--set", "scheduleInterval=1h"])).toEqual(["--once", "--schedule-interval", "1h"]);
  });

  it("refuses values it cannot install, with one line naming the value and the fix, and renders nothing", async () => {
    const example = join(chartDir, "ci/example-values.yaml");
    const refusals: Array<[string, string[], string[], RegExp]> = [
      ["no brokerUrl", [], [], /brokerUrl is not set.*--set brokerUrl=/],
      [
        "no registry",
        [await valuesFile("no-registry.yaml", { brokerUrl: "https://broker.example.com" })],
        [],
        /AcrInstanceInfo is empty.*configMap\.create=false/,
      ],
      ["another namespace", [example], ["--namespace", "acr"], /release namespace is "acr".*kube-system/],
      ["an unknown mode", [example], ["--set", "mode=daemonset"], /mode/],
      ["a misspelt value", [example], ["--set", "watchNamespaces=all"], /watchNamespaces/],
      ["a digest that is not one", [example], ["--set", "image.digest=latest"], /digest/],
      [
        "a cluster without ValidatingAdmissionPolicy",
        [example],
        ["--kube-version", "1.29.0"],
        /Kubernetes v1\.29\.0 has no .*ValidatingAdmissionPolicy.*secretPolicy=false/,
      ],
      [
        "a schedule whose interval it cannot tell",
        [example],
        ["--set", "schedule=0 * * * *"],
        /schedule "0 \* \* \* \*" is not of the form.*set scheduleInterval/,
      ],
    ];
    for (const [what, values, extra, message] of refusals) {
      const args =
        extra[0] === "--namespace" ? ["template", "acr-credential-refresher", chartDir, ...values.flatMap((file) => ["--values", file]), ...extra] : undefined;
      const result = args ? await run(args) : await template(values, extra);
      expect(result.code, what).not.toBe(0);
      expect(result.stdout, what).toBe("");
      expect(result.stderr, what).toMatch(message);
      expect(result.stderr, what).not.toMatch(/goroutine|panic/);
    }
  });

  it("packages into acr-credential-refresher-<version>.tgz without the test value sets", async () => {
    const result = await run(["package", chartDir, "--destination", dir]);
    expect(result.code, result.stderr).toBe(0);
    const { version } = parseYaml(await read(join(chartDir, "Chart.yaml"))) as { version: string };
    const listing = await new Promise<string>((resolve, reject) =>
      execFile("tar", ["-tzf", join(dir, `acr-credential-refresher-${version}.tgz`)], (error, stdout) => (error ? reject(error) : resolve(stdout))),
    );
    const files = listing.trim().split("\n").sort();
    expect(files).toContain("acr-credential-refresher/values.schema.json");
    expect(files).toContain("acr-credential-refresher/templates/_helpers.tpl");
    expect(files.filter((file) => file.includes("/ci/"))).toEqual([]);
  });

  it("carries one version: Chart.yaml's version and appVersion, the kustomize image tag and CHANGELOG.md follow package.json", async () => {
    const { version } = JSON.parse(await read(join(deployDir, "../../package.json"))) as { version: string };
    const chart = parseYaml(await read(join(chartDir, "Chart.yaml"))) as { version: string; appVersion: string };
    expect([chart.version, chart.appVersion]).toEqual([version, version]);
    for (const overlayDir of ["base", "watch"]) {
      const kustomization = parseYaml(await read(join(deployDir, overlayDir, "kustomization.yaml"))) as { images: Array<{ name: string; newTag: string }> };
      expect(kustomization.images, overlayDir).toEqual([{ name: "acr-credential-refresher", newTag: version }]);
    }
    expect(await read(join(deployDir, "../../CHANGELOG.md"))).toMatch(new RegExp(`^## ${version.replace(/\./g, "\\.")}\\b`, "m"));
  });

  describe("renders the same objects as the kustomize manifests for the same settings (test/helm/equivalence.ts)", () => {
    const { kubectl } = tools.found ? tools : { kubectl: "" };
    const withoutChartLabels = (object: Manifest): Manifest => {
      const labels = Object.fromEntries(Object.entries(object.metadata.labels ?? {}).filter(([key]) => !(chartOnlyLabels as readonly string[]).includes(key)));
      return { ...object, metadata: { ...object.metadata, ...(Object.keys(labels).length > 0 ? { labels } : {}) } };
    };
    const comparable = (manifests: Manifest[]) =>
      new Map(manifests.filter((object) => object.kind !== "ConfigMap").map((object) => [keyOf(object), withoutChartLabels(object)]));
    const configOf = (manifests: Manifest[]) => {
      const configMap = manifests.find((object) => object.kind === "ConfigMap") as unknown as {
        metadata: { name: string; namespace: string };
        data: Record<string, string>;
      };
      return { name: configMap.metadata.name, namespace: configMap.metadata.namespace, config: parseRefresherConfig(configMap.data).config };
    };

    it.each(cases)("$name", async ({ name, settings }) => {
      const folder = join(dir, name.replace(/[^a-z0-9]+/gi, "-"));
      await mkdir(folder, { recursive: true });
      await writeFile(join(folder, "kustomization.yaml"), overlay(settings, folder));
      const built = await kustomize({ kubectl }, folder);
      expect(built.stderr).toBe("");
      const fromKustomize = objects(built.stdout);
      const fromChart = await rendered([join(chartDir, exampleValuesFile), await valuesFile(`${folder.split("/").pop()}.yaml`, chartValues(settings))]);

      expect([...comparable(fromChart).keys()].sort()).toEqual([...comparable(fromKustomize).keys()].sort());
      for (const [key, object] of comparable(fromKustomize)) expect(comparable(fromChart).get(key), key).toEqual(object);
      expect(configOf(fromChart)).toEqual(configOf(fromKustomize));
    });
  });
});
