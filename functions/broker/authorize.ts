/**
 * What a cluster may receive (docs/broker.md, "Rules"). An entry must match one of the cluster's configured
 * registries (instance, region, role, a duration no longer than configured), or be an RRSA entry of
 * a cluster with `allowRrsa`, where the cluster's own RAM role decides. Anything else is refused
 * as a whole: the broker must never lend its own roles to a cluster that was not given them.
 */
import type { CredentialsRequest, RegistryRequest } from "../../shared/broker-api.ts";
import { AcrCredentialError, refusal, type RefusalReason } from "../../shared/errors.ts";
import type { Cluster, ConfiguredRegistry } from "./config.ts";
import type { IdentityChain, RegistryTarget } from "./identity-chain.ts";

export interface AuthorizedEntry {
  target: RegistryTarget;
  chain: IdentityChain;
  /** Echoed in per-entry errors so the caller can tell which entry failed. */
  instanceId?: string;
  regionId: string;
}

const defaultDuration = 3600;

function describe(entry: RegionalRequest): string {
  const role = entry.assumeRoleArn ? ` as ${entry.assumeRoleArn}` : "";
  return `${entry.instanceId ?? "Personal Edition"} in ${entry.regionId}${role}`;
}

function targetOf(entry: { instanceId?: string; regionId: string }, domains: string[] | undefined): RegistryTarget {
  return {
    edition: entry.instanceId ? "enterprise" : "personal",
    ...(entry.instanceId ? { instanceId: entry.instanceId } : {}),
    regionId: entry.regionId,
    ...(domains ? { domains } : {}),
  };
}

function fromConfigured(registry: ConfiguredRegistry): AuthorizedEntry {
  return {
    target: targetOf(registry, registry.domains),
    chain: registry.assumeRoleArn ? { assumeRole: { roleArn: registry.assumeRoleArn, durationSeconds: registry.expireDuration ?? defaultDuration } } : {},
    ...(registry.instanceId ? { instanceId: registry.instanceId } : {}),
    regionId: registry.regionId,
  };
}

function authorizeConfigured(cluster: Cluster, entry: RegionalRequest): AuthorizedEntry {
  const candidates = cluster.registries.filter(
    (r) => r.instanceId === entry.instanceId && r.regionId === entry.regionId && r.assumeRoleArn === entry.assumeRoleArn,
  );
  const forbidden = (reason: RefusalReason, why: string) => refusal(reason, `cluster '${cluster.name}' may not receive ${describe(entry)}: ${why}`);
  if (candidates.length === 0) throw forbidden("registry-not-configured", "it is not one of the cluster's registries in the broker configuration");
  // Without a role there is no session whose length could be asked for; the field is ignored.
  const registry =
    entry.assumeRoleArn && entry.expireDuration !== undefined
      ? candidates.find((r) => entry.expireDuration! <= (r.expireDuration ?? defaultDuration))
      : candidates[0];
  if (!registry)
    throw forbidden(
      "duration-too-long",
      `expireDuration ${entry.expireDuration} is longer than the configured ${candidates[0]!.expireDuration ?? defaultDuration}`,
    );
  const authorized = fromConfigured(registry);
  if (entry.assumeRoleArn && entry.expireDuration !== undefined) authorized.chain.assumeRole!.durationSeconds = entry.expireDuration;
  if (entry.domains) authorized.target.domains = entry.domains;
  return authorized;
}

function authorizeRrsa(cluster: Cluster, entry: RegionalRequest, request: CredentialsRequest, subject: string): AuthorizedEntry {
  if (!cluster.allowRrsa)
    throw refusal(
      "rrsa-not-allowed",
      `cluster '${cluster.name}' may not use RRSA entries (${describe(entry)}); set allowRrsa: true for it in the broker configuration`,
    );
  if (!entry.rrsaOidcProviderArn) throw new AcrCredentialError("InvalidRequest", `the RRSA entry for ${describe(entry)} lacks rrsaOidcProviderArn`);
  if (!request.oidcToken)
    throw new AcrCredentialError(
      "InvalidRequest",
      `the RRSA entry for ${describe(entry)} needs oidcToken (the ServiceAccount's token with audience sts.aliyuncs.com)`,
    );
  const chain: IdentityChain = { rrsa: { roleArn: entry.rrsaRoleArn!, oidcProviderArn: entry.rrsaOidcProviderArn, subject } };
  if (entry.assumeRoleArn) chain.assumeRole = { roleArn: entry.assumeRoleArn, durationSeconds: entry.expireDuration ?? defaultDuration };
  return { target: targetOf(entry, entry.domains), chain, ...(entry.instanceId ? { instanceId: entry.instanceId } : {}), regionId: entry.regionId };
}

/** A request entry after the cluster's region was filled in where it named none. */
type RegionalRequest = RegistryRequest & { regionId: string };

/** An entry without `regionId` means the cluster's own region (the add-on's default), known only from the configuration. */
function withRegion(cluster: Cluster, entry: RegistryRequest): RegionalRequest {
  if (entry.regionId !== undefined) return entry as RegionalRequest;
  if (cluster.regionId !== undefined) return { ...entry, regionId: cluster.regionId };
  throw new AcrCredentialError(
    "InvalidRequest",
    `the entry for ${entry.instanceId ?? "Personal Edition"} names no regionId and cluster '${cluster.name}' has none in the broker configuration; set regionId (the cluster's region) for cluster '${cluster.name}' in the broker configuration, or regionId on the item in acr-configuration`,
  );
}

/** The entries a verified caller of `cluster` gets, or a Forbidden/InvalidRequest error for the whole request. */
export function authorize(cluster: Cluster, request: CredentialsRequest, subject: string): AuthorizedEntry[] {
  if (request.registries === undefined) return cluster.registries.map(fromConfigured);
  return request.registries.map((requested) => {
    const entry = withRegion(cluster, requested);
    if (entry.rrsaRoleArn) return authorizeRrsa(cluster, entry, request, subject);
    if (entry.rrsaOidcProviderArn)
      throw new AcrCredentialError("InvalidRequest", `the entry for ${describe(entry)} has rrsaOidcProviderArn without rrsaRoleArn`);
    return authorizeConfigured(cluster, entry);
  });
}

export const usesRrsa = (entries: AuthorizedEntry[]): boolean => entries.some((entry) => entry.chain.rrsa !== undefined);
