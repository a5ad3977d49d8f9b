/**
 * Which Alibaba Cloud calls produce a registry credential, in which order, as which identity
 * (docs/broker.md, "Rules"): [AssumeRoleWithOIDC] → [AssumeRole] → CR. Pure data; `issue.ts` runs it.
 */

/** Where a credential is for. No `instanceId` means the Personal Edition registry of the region. */
export interface RegistryTarget {
  edition: "enterprise" | "personal";
  instanceId?: string;
  regionId: string;
  /** Domains to report; when absent they are discovered (Enterprise) or the region's defaults (Personal). */
  domains?: string[];
}

/** The identities between the broker's own and the one that asks CR for the password. */
export interface IdentityChain {
  /** ACK RRSA: the cluster's own RAM role, assumed with its ServiceAccount's OIDC token. */
  rrsa?: { roleArn: string; oidcProviderArn: string; subject: string };
  /** Then (or directly from the broker's identity) a role, typically in the registry's account. */
  assumeRole?: { roleArn: string; durationSeconds: number };
}

export type SessionStep =
  | { api: "sts:AssumeRoleWithOIDC"; roleArn: string; oidcProviderArn: string; subject: string; key: string }
  | { api: "sts:AssumeRole"; roleArn: string; durationSeconds: number; key: string };

export type RegistryStep =
  { api: "cr:GetAuthorizationToken"; instanceId: string; regionId: string } | { api: "cr:GetAuthorizationToken(personal)"; regionId: string };

export interface Plan {
  /** STS sessions to obtain in order; each step runs as the previous step's session (the first as the broker). */
  sessions: SessionStep[];
  registry: RegistryStep;
  /** Enterprise registries without configured domains: ask `ListInstanceEndpoint` as the last session. */
  discoverDomains: boolean;
  /** Cache key of the credential: identity chain × instance × region, never the cluster. */
  cacheKey: string;
}

/** Each step's key names the whole chain up to it, so sessions are shared wherever chains share a prefix. */
export function planSessions(chain: IdentityChain): SessionStep[] {
  const steps: SessionStep[] = [];
  let key = "broker";
  if (chain.rrsa) {
    key = `${key}>oidc(${chain.rrsa.roleArn}|${chain.rrsa.oidcProviderArn}|${chain.rrsa.subject})`;
    steps.push({ api: "sts:AssumeRoleWithOIDC", ...chain.rrsa, key });
  }
  if (chain.assumeRole) {
    key = `${key}>role(${chain.assumeRole.roleArn}|${chain.assumeRole.durationSeconds})`;
    steps.push({ api: "sts:AssumeRole", ...chain.assumeRole, key });
  }
  return steps;
}

const keyOf = (sessions: SessionStep[]): string => sessions.at(-1)?.key ?? "broker";

export function chainKey(chain: IdentityChain): string {
  return keyOf(planSessions(chain));
}

export function planCalls(chain: IdentityChain, target: RegistryTarget): Plan {
  const registry: RegistryStep = target.instanceId
    ? { api: "cr:GetAuthorizationToken", instanceId: target.instanceId, regionId: target.regionId }
    : { api: "cr:GetAuthorizationToken(personal)", regionId: target.regionId };
  const sessions = planSessions(chain);
  return {
    sessions,
    registry,
    discoverDomains: target.edition === "enterprise" && target.domains === undefined,
    cacheKey: `${keyOf(sessions)}#${target.instanceId ?? "personal"}@${target.regionId}`,
  };
}

/** Personal Edition (legacy instances): public, VPC and classic-network domains of the region. */
export function personalDomains(regionId: string): string[] {
  return [`registry.${regionId}.aliyuncs.com`, `registry-vpc.${regionId}.aliyuncs.com`, `registry-internal.${regionId}.aliyuncs.com`];
}
