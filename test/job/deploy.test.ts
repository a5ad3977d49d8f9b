import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { parse as parseYaml, parseAllDocuments } from "yaml";
import { parseRefresherConfig } from "../../job/config.ts";
import { defaultMetricsAddress, parseMetricsAddress } from "../../job/metrics.ts";
import { defaultIntervalSeconds } from "../../job/run.ts";
import { builtBinaryDir, isExecutableFile, pinnedVersions } from "../kube/binaries.ts";

const deploy = new URL("../../job/deploy/", import.meta.url);
type Manifest = { kind: string; metadata: { name: string; namespace?: string }; [key: string]: unknown };
async function documents(path: string): Promise<Manifest[]> {
  return parseAllDocuments(await readFile(new URL(path, deploy), "utf8")).map((document) => document.toJS() as Manifest);
}
const one = async <T>(path: string) => (await documents(path))[0] as unknown as T;

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}
interface PodSpec {
  serviceAccountName: string;
  securityContext: { runAsNonRoot: boolean; runAsUser: number };
  containers: Array<{
    args: string[];
    securityContext: { readOnlyRootFilesystem: boolean; allowPrivilegeEscalation: boolean };
    resources: { limits: { cpu: string; memory: string } };
  }>;
  volumes: Array<{ name: string; projected?: { sources: Array<{ serviceAccountToken: { audience: string; path: string } }> } }>;
}

describe("job/deploy", () => {
  it("lists only files that exist in each kustomization", async () => {
    for (const folder of ["base/", "watch/", "components/rrsa/"]) {
      const kustomization = parseYaml(await readFile(new URL(`${folder}kustomization.yaml`, deploy), "utf8")) as { resources?: string[] };
      for (const resource of kustomization.resources ?? []) expect(existsSync(new URL(`${folder}${resource}`, deploy)), `${folder}${resource}`).toBe(true);
    }
  });

  it("grants no get, list or watch on Secrets, and no wildcard anywhere", async () => {
    const rules = (await documents("base/rbac.yaml")).flatMap((doc) => (doc as unknown as { rules?: Rule[] }).rules ?? []);
    for (const rule of rules) {
      expect(rule.verbs).not.toContain("*");
      expect(rule.resources).not.toContain("*");
      if (rule.resources.includes("secrets")) expect(rule.verbs.filter((verb) => ["get", "list", "watch"].includes(verb))).toEqual([]);
    }
    const secretVerbs = rules
      .filter((rule) => rule.resources.includes("secrets"))
      .flatMap((rule) => rule.verbs)
      .sort();
    expect(secretVerbs).toEqual(["create", "delete", "patch"]);
  });

  it("ships the Secret admission policy in the base, bound with Deny, for the refresher's own ServiceAccount", async () => {
    const kustomization = parseYaml(await readFile(new URL("base/kustomization.yaml", deploy), "utf8")) as { resources: string[] };
    expect(kustomization.resources).toContain("secret-policy.yaml");
    const [policy, binding] = (await documents("base/secret-policy.yaml")) as unknown as [
      { kind: string; metadata: { name: string }; spec: { failurePolicy: string; matchConditions: Array<{ expression: string }> } },
      { kind: string; spec: { policyName: string; validationActions: string[] } },
    ];
    expect(policy.kind).toBe("ValidatingAdmissionPolicy");
    expect(policy.spec.failurePolicy).toBe("Fail");
    expect(policy.spec.matchConditions.map((condition) => condition.expression).join(" ")).toContain(
      '"system:serviceaccount:kube-system:aliyun-acr-credential-helper"',
    );
    expect(binding).toMatchObject({ kind: "ValidatingAdmissionPolicyBinding", spec: { policyName: policy.metadata.name, validationActions: ["Deny"] } });
    const rules = (await documents("base/rbac.yaml")).flatMap((doc) => (doc as unknown as { rules?: Rule[] }).rules ?? []);
    expect(rules).toContainEqual({ apiGroups: ["events.k8s.io"], resources: ["events"], verbs: ["create", "get", "patch"] });
  });

  it("binds the roles to the add-on's ServiceAccount in kube-system, so RRSA trust policies keep working", async () => {
    const sa = await one<Manifest>("base/serviceaccount.yaml");
    expect(sa.metadata).toMatchObject({ name: "aliyun-acr-credential-helper", namespace: "kube-system" });
    for (const binding of (await documents("base/rbac.yaml")).filter((doc) => doc.kind.endsWith("Binding"))) {
      expect((binding as unknown as { subjects: unknown[] }).subjects).toEqual([
        { kind: "ServiceAccount", name: "aliyun-acr-credential-helper", namespace: "kube-system" },
      ]);
    }
  });

  it("runs the CronJob every 5 minutes, never two at once, non-root with a read-only root and limits, with the broker token projected", async () => {
    const cronJob = await one<{ spec: { schedule: string; concurrencyPolicy: string; jobTemplate: { spec: { template: { spec: PodSpec } } } } }>(
      "base/cronjob.yaml",
    );
    expect(cronJob.spec.schedule).toBe("*/5 * * * *");
    expect(cronJob.spec.concurrencyPolicy).toBe("Forbid");
    const pod = cronJob.spec.jobTemplate.spec.template.spec;
    expectHardened(pod, "--once");
  });

  it("fits the spread window and the run within the CronJob's deadlines, and tells the refresher its schedule", async () => {
    const cronJob = await one<{
      spec: { schedule: string; startingDeadlineSeconds: number; jobTemplate: { spec: { activeDeadlineSeconds: number; template: { spec: PodSpec } } } };
    }>("base/cronjob.yaml");
    const minutes = Number(/^\*\/(\d+) \* \* \* \*$/.exec(cronJob.spec.schedule)?.[1]);
    // The refresher's default --schedule-interval is the shipped schedule's.
    expect(minutes * 60).toBe(defaultIntervalSeconds);
    const window = parseRefresherConfig({ "broker-url": "https://b.example", "acr-registry-info": "- regionId: cn-hangzhou" }).config.spreadWindowSeconds;
    const active = cronJob.spec.jobTemplate.spec.activeDeadlineSeconds;
    // The delay leaves at least two minutes for the run itself ...
    expect(window + 120).toBeLessThanOrEqual(active);
    // ... and a run that starts as late as allowed still ends before the next one is due.
    expect(cronJob.spec.startingDeadlineSeconds + active).toBeLessThanOrEqual(minutes * 60);
  });

  it("runs the --watch Deployment the same way, in place of the CronJob", async () => {
    const deployment = await one<{ spec: { template: { spec: PodSpec } } }>("watch/deployment.yaml");
    expectHardened(deployment.spec.template.spec, "--watch");
    const overlay = await readFile(new URL("watch/kustomization.yaml", deploy), "utf8");
    expect(overlay).toMatch(/\$patch: delete[\s\S]*kind: CronJob/);
  });

  it("probes the --watch Deployment on the port the refresher serves by default: /healthz for liveness, /readyz for readiness", async () => {
    const deployment = await one<{ spec: { template: { spec: { containers: Container[] } } } }>("watch/deployment.yaml");
    expectProbed(deployment.spec.template.spec.containers[0] as Container);
  });

  it("adds the sts.aliyuncs.com token only through the RRSA component", async () => {
    const component = await readFile(new URL("components/rrsa/kustomization.yaml", deploy), "utf8");
    expect(component).toMatch(/audience: sts\.aliyuncs\.com/);
    expect(await readFile(new URL("base/cronjob.yaml", deploy), "utf8")).not.toMatch(/sts\.aliyuncs\.com/);
  });

  it("ships a sample configuration that the refresher accepts without warnings", async () => {
    const configMap = await one<{ metadata: { name: string; namespace: string }; data: Record<string, string> }>("examples/acr-configuration.yaml");
    expect(configMap.metadata).toEqual({ name: "acr-configuration", namespace: "kube-system" });
    const { config, warnings } = parseRefresherConfig(configMap.data);
    expect(warnings).toEqual([]);
    expect(config.registries).toHaveLength(1);
  });
});

const kubectl = join(builtBinaryDir(pinnedVersions().kubernetes), "kubectl");

// kubectl is built by `bash test/kube/build.sh --with-kubectl` (as .ci/run does).
describe.skipIf(!isExecutableFile(kubectl))("job/deploy/watch as kubectl kustomize renders it", () => {
  it("labels every object and the refresher's pod app.kubernetes.io/part-of=acr-credential-broker, and keeps the probes", async () => {
    const { stdout } = await promisify(execFile)(kubectl, ["kustomize", new URL("watch", deploy).pathname]);
    const objects = parseAllDocuments(stdout).map((document) => document.toJS() as Manifest & { metadata: { labels?: Record<string, string> } });
    expect(objects.map((object) => object.kind)).toContain("Deployment");
    for (const object of objects)
      expect(object.metadata.labels?.["app.kubernetes.io/part-of"], `${object.kind}/${object.metadata.name}`).toBe("acr-credential-broker");
    const deployment = objects.find((object) => object.kind === "Deployment") as unknown as {
      spec: { template: { metadata: { labels: Record<string, string> }; spec: { containers: Container[] } } };
    };
    expect(deployment.spec.template.metadata.labels).toMatchObject({
      "app.kubernetes.io/name": "acr-credential-refresher",
      "app.kubernetes.io/part-of": "acr-credential-broker",
    });
    expectProbed(deployment.spec.template.spec.containers[0] as Container);
  });
});

interface Container {
  args: string[];
  ports?: Array<{ name: string; containerPort: number }>;
  livenessProbe?: { httpGet: { path: string; port: string | number } };
  readinessProbe?: { httpGet: { path: string; port: string | number } };
}

/** The probes and the port are those `refresh --watch` serves without a --metrics-addr. */
function expectProbed(container: Container): void {
  expect(container.args).not.toContainEqual(expect.stringMatching(/^--metrics-addr/));
  expect(container.ports).toEqual([expect.objectContaining({ name: "metrics", containerPort: parseMetricsAddress(defaultMetricsAddress)?.port })]);
  expect(container.livenessProbe?.httpGet).toEqual({ path: "/healthz", port: "metrics" });
  expect(container.readinessProbe?.httpGet).toEqual({ path: "/readyz", port: "metrics" });
}

function expectHardened(pod: PodSpec, mode: string): void {
  expect(pod.serviceAccountName).toBe("aliyun-acr-credential-helper");
  expect(pod.securityContext.runAsNonRoot).toBe(true);
  expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
  const [container] = pod.containers;
  expect(container?.args).toEqual([mode]);
  expect(container?.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
  expect(container?.resources.limits).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
  const audiences = pod.volumes.flatMap((volume) => volume.projected?.sources.map((source) => source.serviceAccountToken.audience) ?? []);
  expect(audiences).toEqual(["acr-credential-broker"]);
}
