/**
 * The one place that says how the Helm chart and the kustomize manifests may differ. For each
 * setting both can express, `chartValues` says it in chart values and `overlay` in a kustomization
 * over job/deploy; everything else must render to the same objects. The differences allowed:
 *
 * - Helm's own labels (`chartOnlyLabels`) on every object the chart writes;
 * - the ConfigMap: kustomize ships it as a sample to apply once (job/deploy/examples), the chart
 *   writes it from values, so it is compared as the configuration the refresher reads from it.
 *
 * Chart values with no kustomize counterpart here (configMap.create, scheduleInterval for other
 * schedules, audience, logLevel, resources,
 * nodeSelector, tolerations, affinity, imagePullSecrets) keep their defaults in these cases; test/helm/chart.test.ts
 * covers them.
 */
import { join, relative } from "node:path";
import { stringify } from "yaml";
import { deployDir } from "./tools.ts";

export interface Settings {
  mode: "cronjob" | "watch";
  rrsa: boolean;
  /** Without the Secret admission policy, for clusters before 1.30 (job/deploy/pre-1.30, CronJob only). */
  pre130?: boolean;
  image?: { repository: string; tag?: string; digest?: string };
  schedule?: string;
}

export const chartOnlyLabels = ["app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "helm.sh/chart"] as const;

/** The settings of job/deploy/examples/acr-configuration.yaml, as chart values. */
export const exampleValuesFile = "ci/example-values.yaml";

export const cases: Array<{ name: string; settings: Settings }> = [
  { name: "the CronJob with the defaults", settings: { mode: "cronjob", rrsa: false } },
  {
    name: "the CronJob with RRSA, a mirrored image and another schedule",
    settings: {
      mode: "cronjob",
      rrsa: true,
      image: { repository: "registry-vpc.cn-hangzhou.aliyuncs.com/platform/acr-credential-refresher", tag: "0.1.0" },
      schedule: "*/10 * * * *",
    },
  },
  { name: "the CronJob for a cluster before Kubernetes 1.30", settings: { mode: "cronjob", rrsa: false, pre130: true } },
  { name: "the --watch Deployment", settings: { mode: "watch", rrsa: false } },
  {
    name: "the --watch Deployment with RRSA and an image pinned by digest",
    settings: {
      mode: "watch",
      rrsa: true,
      image: { repository: "registry.example.com/acr-credential-refresher", tag: "0.1.0", digest: `sha256:${"ab".repeat(32)}` },
    },
  },
];

/** The chart values for `settings`, on top of `exampleValuesFile`. */
export function chartValues(settings: Settings): Record<string, unknown> {
  return {
    mode: settings.mode,
    enableRRSA: settings.rrsa,
    ...(settings.image ? { image: settings.image } : {}),
    ...(settings.schedule ? { schedule: settings.schedule } : {}),
    ...(settings.pre130 ? { secretPolicy: false } : {}),
  };
}

/** A kustomization.yaml for `folder` that renders `settings` from job/deploy (kustomize takes relative paths only). */
export function overlay(settings: Settings, folder: string): string {
  const from = (path: string) => relative(folder, join(deployDir, path));
  const patches: unknown[] = [];
  // Another schedule comes with the refresher's --schedule-interval (its default is the base's 5m).
  if (settings.schedule) {
    const minutes = /^\*\/(\d+) /.exec(settings.schedule)?.[1];
    if (minutes === undefined) throw new Error(`the equivalence cases use every-N-minutes schedules, not '${settings.schedule}'`);
    const args = "/spec/jobTemplate/spec/template/spec/containers/0/args/-";
    patches.push({
      target: { kind: "CronJob", name: "acr-credential-refresher" },
      patch: stringify([
        { op: "replace", path: "/spec/schedule", value: settings.schedule },
        ...(minutes === "5"
          ? []
          : [
              { op: "add", path: args, value: "--schedule-interval" },
              { op: "add", path: args, value: `${minutes}m` },
            ]),
      ]),
    });
  }
  // The add-on's "Enable RRSA" is the ConfigMap's `rrsa` block as well as the second token.
  if (settings.rrsa)
    patches.push({
      target: { kind: "ConfigMap", name: "acr-configuration" },
      patch: stringify([{ op: "replace", path: "/data/rrsa", value: "enable: true\n" }]),
    });
  const image = settings.image;
  return stringify({
    apiVersion: "kustomize.config.k8s.io/v1beta1",
    kind: "Kustomization",
    resources: [from(settings.mode === "watch" ? "watch" : settings.pre130 ? "pre-1.30" : "base"), from("examples/acr-configuration.yaml")],
    ...(settings.rrsa ? { components: [from("components/rrsa")] } : {}),
    ...(image
      ? {
          images: [
            {
              name: "acr-credential-refresher",
              newName: image.repository,
              ...(image.tag ? { newTag: image.tag } : {}),
              ...(image.digest ? { digest: image.digest } : {}),
            },
          ],
        }
      : {}),
    ...(patches.length > 0 ? { patches } : {}),
  });
}
