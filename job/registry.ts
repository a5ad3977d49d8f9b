import { createHash } from "node:crypto";
import { z } from "zod";
import { instanceIdSchema, regionIdSchema, sessionSecondsSchema } from "../shared/alibaba/names.ts";
import type { Credential, EntryError, RegistryRequest } from "../shared/broker-api.ts";

/** Prefix of every Secret the refresher writes; the add-on uses the same shape of name. */
export const secretNamePrefix = "acr-credential-";

/** True for names of the shape the refresher writes; it never deletes a Secret named otherwise. */
export function isRefresherSecretName(name: string): boolean {
  return /^acr-credential-[0-9a-f]{32}$/.test(name);
}

/** One registry the refresher serves, from one item of `acr-registry-info`. */
export const registryEntrySchema = z.object({
  /** Absent for a Personal Edition registry of `regionId`. */
  instanceId: instanceIdSchema.optional(),
  /** Absent: the cluster's own region, which the broker fills in (the add-on's default). */
  regionId: regionIdSchema.optional(),
  /** Normalised (lower case, sorted, unique); empty = every domain the broker knows for the instance. */
  domains: z.array(z.string()),
  assumeRoleArn: z.string().optional(),
  expireDuration: sessionSecondsSchema.optional(),
  rrsaRoleArn: z.string().optional(),
  rrsaOidcProviderArn: z.string().optional(),
  /** `acr-credential-<32 hex>`, stable for as long as instance, region and domains stay the same. */
  secretName: z.string(),
});
export type RegistryEntry = z.infer<typeof registryEntrySchema>;

/** Lower-cased, trimmed, unique and sorted, so that the Secret name does not depend on how domains were written. */
export function normaliseDomains(domains: readonly string[]): string[] {
  return [...new Set(domains.map((domain) => domain.trim().toLowerCase()).filter((domain) => domain !== ""))].sort();
}

/** The Secret name of a registry entry: a hash of instance, region and domains, so every run and every replica agrees. */
export function secretNameFor(entry: { instanceId?: string | undefined; regionId?: string | undefined; domains: readonly string[] }): string {
  const key = JSON.stringify([entry.instanceId ?? "", entry.regionId ?? "", normaliseDomains(entry.domains)]);
  return secretNamePrefix + createHash("sha256").update(key).digest("hex").slice(0, 32);
}

/**
 * A short human label for logs and the status ConfigMap, e.g. `cri-abc@cn-hangzhou`, `personal@cn-beijing`,
 * or `personal@cluster-region` for an entry whose region the broker fills in.
 */
export function registryLabel(entry: { instanceId?: string | undefined; regionId?: string | undefined }): string {
  return `${entry.instanceId ?? "personal"}@${entry.regionId ?? "cluster-region"}`;
}

/** The broker request item for an entry (docs/broker.md, "HTTP API"); RRSA fields only when RRSA is switched on. */
export function registryRequest(entry: RegistryEntry, rrsa: boolean): RegistryRequest {
  const request: RegistryRequest = {};
  if (entry.instanceId !== undefined) request.instanceId = entry.instanceId;
  if (entry.regionId !== undefined) request.regionId = entry.regionId;
  if (entry.domains.length > 0) request.domains = [...entry.domains];
  if (entry.assumeRoleArn !== undefined) request.assumeRoleArn = entry.assumeRoleArn;
  if (entry.expireDuration !== undefined) request.expireDuration = entry.expireDuration;
  if (rrsa && entry.rrsaRoleArn !== undefined && entry.rrsaOidcProviderArn !== undefined) {
    request.rrsaRoleArn = entry.rrsaRoleArn;
    request.rrsaOidcProviderArn = entry.rrsaOidcProviderArn;
  }
  return request;
}

/** An entry without a region asked for the cluster's region, which only the broker's answer names. */
function sameRegistry(entry: RegistryEntry, item: { instanceId?: string | undefined; regionId: string }): boolean {
  return (entry.instanceId ?? "") === (item.instanceId ?? "") && (entry.regionId === undefined || entry.regionId === item.regionId);
}

/**
 * Pairs each configured entry with the broker's credential or error for it. The broker answers per
 * instance and region; when two entries share both, configured domains tell them apart.
 */
export function matchCredentials(
  entries: readonly RegistryEntry[],
  credentials: readonly Credential[],
  errors: readonly EntryError[],
): Map<string, { credential?: Credential; error?: EntryError }> {
  const unused = [...credentials];
  const result = new Map<string, { credential?: Credential; error?: EntryError }>();
  // Entries that name their region, and then those with more domains, choose first: they match fewer answers.
  const specificity = (entry: RegistryEntry) => (entry.regionId === undefined ? 0 : 1000) + entry.domains.length;
  const ordered = [...entries].sort((a, b) => specificity(b) - specificity(a));
  for (const entry of ordered) {
    const wanted = entry.domains.join(",");
    let index = unused.findIndex((c) => sameRegistry(entry, c) && wanted !== "" && normaliseDomains(c.domains).join(",") === wanted);
    if (index < 0) index = unused.findIndex((c) => sameRegistry(entry, c));
    if (index >= 0) {
      const [credential] = unused.splice(index, 1) as [Credential];
      result.set(entry.secretName, { credential });
      continue;
    }
    const error = errors.find((e) => sameRegistry(entry, e));
    result.set(entry.secretName, error === undefined ? {} : { error });
  }
  return result;
}
