/**
 * Who may pull what through the kubelet image credential provider (docs/kubelet-provider.md): the
 * configuration schema of a cluster's `kubeletProvider` grants and the pure decisions on it. A pod's
 * ServiceAccount receives only registries a grant gives to a pattern it matches; a ServiceAccount
 * annotation may pick a role only from that grant's `annotationRoles`, so a workload can never make
 * the broker lend a role the configuration did not give it (no confused deputy).
 */
import { roleArnSchema } from "../../shared/alibaba/names.ts";
import { z } from "zod";
import { refusal, type RefusalReason } from "../../shared/errors.ts";
import type { AuthorizedEntry } from "./authorize.ts";
import type { ConfiguredRegistry } from "./config.ts";

/** The audience kubelets request tokens for unless the configuration names another. */
export const defaultKubeletAudience = "acr-credential-broker-kubelet";
/** The ServiceAccount annotation naming the role to pull with (passed by the kubelet when configured). */
export const defaultRoleAnnotation = "acr-credential-broker/role-arn";

const serviceAccountPattern = z.string().regex(/^system:serviceaccount:[a-z0-9*]([a-z0-9.*-]{0,251}[a-z0-9*])?:[a-z0-9*]([a-z0-9.*-]{0,251}[a-z0-9*])?$/, {
  error: "expected system:serviceaccount:<namespace>:<name>, where * stands for any characters within the namespace or name",
});
const annotationKey = z.string().regex(/^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/, {
  error: "expected an annotation key like example.com/role-arn",
});

/** Broker-wide defaults (`kubeletProvider` at the top level of the configuration). */
export const kubeletDefaultsSchema = z.strictObject({
  audience: z.string().min(1).default(defaultKubeletAudience),
  roleAnnotation: annotationKey.default(defaultRoleAnnotation),
});
export type KubeletDefaults = z.infer<typeof kubeletDefaultsSchema>;

/** A cluster's grants; `registrySchema` is the broker's registry entry (instance, region, role, domains). */
export function kubeletProviderSchema<R extends z.ZodType<ConfiguredRegistry>>(registrySchema: R) {
  return z.strictObject({
    /** The token audience this cluster's kubelets use; default the broker-wide one. */
    audience: z.string().min(1).optional(),
    grants: z
      .array(
        z.strictObject({
          serviceAccounts: z.array(serviceAccountPattern).min(1),
          registries: z.array(registrySchema).min(1).max(32),
          /** Roles a matching ServiceAccount may name in the role annotation, instead of each registry's own. */
          annotationRoles: z.array(roleArnSchema).default([]),
        }),
      )
      .min(1),
  });
}
export type KubeletProvider = z.infer<ReturnType<typeof kubeletProviderSchema<z.ZodType<ConfiguredRegistry>>>>;

/** Whether `subject` matches `pattern`; `*` stands for any characters except ':'. */
export function subjectMatches(pattern: string, subject: string): boolean {
  const source = pattern
    .split("*")
    .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
    .join("[^:]*");
  return new RegExp(`^${source}$`).test(subject);
}

/**
 * The registry host of an image reference, as the kubelet reads it: the part before the first '/'
 * when it looks like a host (has '.' or ':' or is localhost); otherwise Docker Hub.
 */
export function imageRegistry(image: string): string {
  const slash = image.indexOf("/");
  if (slash < 0) return "docker.io";
  const first = image.slice(0, slash);
  return first.includes(".") || first.includes(":") || first === "localhost" ? first : "docker.io";
}

export interface KubeletRequestFacts {
  clusterName: string;
  subject: string;
  annotations: Readonly<Record<string, string>>;
}

const defaultDuration = 3600;

function entryOf(registry: ConfiguredRegistry, roleOverride: string | undefined): AuthorizedEntry {
  const role = roleOverride ?? registry.assumeRoleArn;
  return {
    target: {
      edition: registry.instanceId ? "enterprise" : "personal",
      ...(registry.instanceId ? { instanceId: registry.instanceId } : {}),
      regionId: registry.regionId,
      ...(registry.domains ? { domains: registry.domains } : {}),
    },
    chain: role ? { assumeRole: { roleArn: role, durationSeconds: registry.expireDuration ?? defaultDuration } } : {},
    ...(registry.instanceId ? { instanceId: registry.instanceId } : {}),
    regionId: registry.regionId,
  };
}

/**
 * The registries a pod's ServiceAccount may receive, or Forbidden. With the role annotation set, a
 * grant applies only if it lists that role, and the registries are issued with it.
 */
export function kubeletEntries(provider: KubeletProvider | undefined, roleAnnotation: string, facts: KubeletRequestFacts): AuthorizedEntry[] {
  const refuse = (reason: RefusalReason, why: string) => refusal(reason, `ServiceAccount '${facts.subject}' of cluster '${facts.clusterName}' ${why}`);
  if (!provider)
    throw refuse("kubelet-provider-absent", "may not use the kubelet credential provider: the cluster has no kubeletProvider in the broker configuration");
  if (!facts.subject.startsWith("system:serviceaccount:")) throw refuse("not-a-service-account", "is not a ServiceAccount");
  const grants = provider.grants.filter((grant) => grant.serviceAccounts.some((pattern) => subjectMatches(pattern, facts.subject)));
  if (grants.length === 0)
    throw refuse("kubelet-grant-absent", "matches no kubeletProvider grant; add it to a grant's serviceAccounts in the broker configuration");
  const role = facts.annotations[roleAnnotation];
  if (role === undefined) return grants.flatMap((grant) => grant.registries.map((registry) => entryOf(registry, undefined)));
  const allowing = grants.filter((grant) => grant.annotationRoles.includes(role));
  if (allowing.length === 0)
    throw refuse("role-not-granted", `may not pull as '${role}' (annotation ${roleAnnotation}): no grant for it lists that role in annotationRoles`);
  return allowing.flatMap((grant) => grant.registries.map((registry) => entryOf(registry, role)));
}

/**
 * How long the kubelet may keep a credential: until the broker itself would refresh it (expiry minus
 * the refresh margin), in whole seconds, never negative; 0 tells the kubelet not to cache it.
 */
export function cacheDurationSeconds(expiresAtMs: number, nowMs: number, refreshBeforeExpirySeconds: number): number {
  return Math.max(0, Math.floor((expiresAtMs - nowMs) / 1000) - refreshBeforeExpirySeconds);
}
