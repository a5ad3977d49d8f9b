/**
 * Runs a plan: the STS sessions of the identity chain (each cached and shared), then the CR call,
 * every upstream call retried on throttling/5xx within the request's deadline.
 */
import type { AlibabaCloud } from "../../shared/alibaba/cloud.ts";
import type { Identity, StsSession } from "../../shared/alibaba/identity.ts";
import { upstreamDetails } from "../../shared/alibaba/upstream-error.ts";
import { AcrCredentialError } from "../../shared/errors.ts";
import { retry, type BackoffPolicy, type RetryNotice } from "../../shared/retry.ts";
import type { Logger } from "../../shared/log.ts";
import type { Cache, GetOptions } from "./cache/policy.ts";
import { personalDomains, planCalls, type IdentityChain, type Plan, type RegistryTarget } from "./identity-chain.ts";

export interface IssuedCredential {
  username: string;
  password: string;
  /** Earliest of the registry password's and the identity chain's expiry (epoch ms). */
  expiresAt: number;
  /** When the call that made it began (epoch ms). */
  issuedAt?: number;
}

export interface DomainList {
  domains: string[];
  expiresAt: number;
}

export interface IssueDeps {
  cloud: AlibabaCloud;
  sessions: Cache<StsSession>;
  credentials: Cache<IssuedCredential>;
  domains: Cache<DomainList>;
  clock: { now(): number };
  /** How long a discovered domain list may be used at all (ms); the cache refreshes it earlier. */
  domainsLifetimeMs: number;
  backoff?: BackoffPolicy;
  /** Monotonic time for deadlines (ms), and how to wait between attempts; real ones unless a test swaps them. */
  monotonicNow?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

export interface IssueContext {
  /** The broker's own identity: FC execution role, default credential chain, or a sandbox key. */
  base: Identity;
  /** When the base identity itself expires (FC role credentials), if known. */
  baseExpiresAt?: number;
  /** The ServiceAccount's RRSA token, for chains that start with AssumeRoleWithOIDC. */
  oidcToken?: string;
  /** Monotonic ms after which no new upstream attempt starts. */
  deadline: number;
  force?: boolean;
  /** Every credential and session handed out must be valid this much longer (ms), else it is refreshed once for every caller. */
  minValidityMs?: number;
  /** The request's logger: upstream retries and shared-cache warnings carry its request id and cluster. */
  log?: Logger;
}

export interface IssueResult {
  credential: IssuedCredential;
  domains: string[];
  /** The upstream failed and a cached, still-valid credential was served. */
  stale: boolean;
  /** This instance's cached credential was replaced (loaded upstream or from the shared cache). */
  renewed: boolean;
}

const sessionName = "acr-credential-broker";

async function withRetry<T>(deps: IssueDeps, context: IssueContext, call: (timeoutMs: number) => Promise<T>): Promise<T> {
  const now = deps.monotonicNow ?? (() => performance.now());
  const remaining = context.deadline - now();
  if (remaining <= 0)
    throw new AcrCredentialError("UpstreamTimeout", "the request deadline passed before the upstream call could start", { details: { retryable: false } });
  return retry((remainingMs) => call(remainingMs), {
    deadline: context.deadline,
    classify: (error) => {
      const details = upstreamDetails(error);
      return { retry: details?.retryable ?? false, ...(details?.retryAfterMs ? { retryAfterMs: details.retryAfterMs } : {}) };
    },
    ...(deps.backoff ? { policy: deps.backoff } : {}),
    now,
    ...(deps.sleep ? { sleep: deps.sleep } : {}),
    ...(context.log ? { onRetry: logRetry(context.log) } : {}),
  });
}

const logRetry = (log: Logger) => (notice: RetryNotice) =>
  log.warn({ err: notice.error, attempts: notice.attempts, delayMs: notice.delayMs }, "upstream call failed; retrying");

const cacheOptions = (context: IssueContext): GetOptions => ({
  force: context.force ?? false,
  deadline: context.deadline,
  ...(context.minValidityMs === undefined ? {} : { minValidityMs: context.minValidityMs }),
  ...(context.log ? { log: context.log } : {}),
});

/**
 * Domains are cached apart from the credential, under the same chain × instance × region key: a
 * renewal reuses the list until its TTL, and `force` (a resync) asks again. `minValidity` is about
 * credentials, not endpoints, so it is not passed on.
 */
function domainOptions(context: IssueContext): GetOptions {
  const { minValidityMs: _credentialsOnly, ...options } = cacheOptions(context);
  return options;
}

/** The identity at the end of the chain and when it expires. */
async function resolveChain(deps: IssueDeps, p: Plan, context: IssueContext): Promise<{ identity: Identity; expiresAt: number }> {
  let identity = context.base;
  let expiresAt = context.baseExpiresAt ?? Number.POSITIVE_INFINITY;
  for (const step of p.sessions) {
    const caller = identity;
    const issuedAt = deps.clock.now();
    const stamped = (session: StsSession): StsSession => Object.assign(session, { issuedAt });
    const load =
      step.api === "sts:AssumeRoleWithOIDC"
        ? () => {
            if (!context.oidcToken) throw new AcrCredentialError("InvalidRequest", "an RRSA entry needs oidcToken");
            const oidcToken = context.oidcToken;
            return withRetry(deps, context, (timeoutMs) =>
              deps.cloud.assumeRoleWithOidc({ roleArn: step.roleArn, oidcProviderArn: step.oidcProviderArn, oidcToken, sessionName }, { timeoutMs }),
            ).then(stamped);
          }
        : () =>
            withRetry(deps, context, (timeoutMs) =>
              deps.cloud.assumeRole(caller, { roleArn: step.roleArn, durationSeconds: step.durationSeconds, sessionName }, { timeoutMs }),
            ).then(stamped);
    // A session that could not be renewed but has not expired is still usable to ask for a
    // password; the password's expiry is then bounded by it.
    const { value } = await deps.sessions.get(step.key, load, cacheOptions(context));
    identity = { kind: "keys", keys: value };
    expiresAt = Math.min(expiresAt, value.expiresAt);
  }
  return { identity, expiresAt };
}

/** Obtains (or reuses) the registry credential for one authorized entry. */
export async function issue(deps: IssueDeps, chain: IdentityChain, target: RegistryTarget, context: IssueContext): Promise<IssueResult> {
  const p = planCalls(chain, target);
  let last: { identity: Identity; expiresAt: number } | undefined;
  const chained = async () => (last ??= await resolveChain(deps, p, context));

  const { value: credential, source } = await deps.credentials.get(
    p.cacheKey,
    async () => {
      const issuedAt = deps.clock.now();
      const { identity, expiresAt } = await chained();
      const step = p.registry;
      const password = await withRetry(deps, context, (timeoutMs) =>
        step.api === "cr:GetAuthorizationToken"
          ? deps.cloud.getAuthorizationToken(identity, { instanceId: step.instanceId, regionId: step.regionId }, { timeoutMs })
          : deps.cloud.getPersonalAuthorizationToken(identity, { regionId: step.regionId }, { timeoutMs }),
      );
      return { username: password.username, password: password.password, expiresAt: Math.min(password.expiresAt, expiresAt), issuedAt };
    },
    cacheOptions(context),
  );

  let domains = target.domains;
  if (!domains && target.edition === "personal") domains = personalDomains(target.regionId);
  if (!domains) {
    const instanceId = target.instanceId!;
    const listed = await deps.domains.get(
      p.cacheKey,
      async () => {
        const { identity } = await chained();
        const found = await withRetry(deps, context, (timeoutMs) =>
          deps.cloud.listInstanceDomains(identity, { instanceId, regionId: target.regionId }, { timeoutMs }),
        );
        if (found.length === 0)
          throw new AcrCredentialError("UpstreamError", `instance ${instanceId} has no enabled registry endpoint; enable one, or configure domains for it`, {
            details: { retryable: false },
          });
        return { domains: found, expiresAt: deps.clock.now() + deps.domainsLifetimeMs };
      },
      domainOptions(context),
    );
    domains = listed.value.domains;
  }
  // A new password bounded by an STS session that could not be renewed is as close to expiry as
  // that session: it is a fallback too, so it is flagged like a cached one.
  const stale = source === "stale" || deps.credentials.freshnessOf(credential) !== "fresh";
  return { credential, domains, stale, renewed: source === "upstream" };
}
