/**
 * Cluster groups (`clusterGroups` in the configuration): ACK clusters trusted by rule. A token's
 * issuer of the ACK RRSA form names a region and a cluster id; the ACK API, read with the broker's own credentials,
 * must confirm that the cluster is in an allowed account with RRSA on for exactly that issuer (and
 * carries the group's tag). The shape of a URL alone is never trusted. Confirmations and refusals are
 * cached (bounded, with TTLs) and new confirmations are rate-limited, so forged issuers cannot make
 * the broker hammer the ACK API, and no key is fetched for a cluster that was not confirmed.
 */
import { LRUCache } from "lru-cache";
import type { AckClusterDetail } from "../../shared/alibaba/ack.ts";
import type { Identity } from "../../shared/alibaba/identity.ts";
import { upstreamDetails } from "../../shared/alibaba/upstream-error.ts";
import { AcrCredentialError, isAcrCredentialError, refusal } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { monotonicNow, retry, type BackoffPolicy } from "../../shared/retry.ts";
import type { Clock } from "./clock.ts";
import type { Cluster, ClusterGroup } from "./config.ts";

export interface AckIssuer {
  regionId: string;
  clusterId: string;
}

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** A matcher for the issuer form (`…{regionId}…{clusterId}`); a repeated `{regionId}` must repeat the same region. */
export function ackIssuerMatcher(template: string): (issuer: string) => AckIssuer | undefined {
  let regionSeen = false;
  const source = template
    .split(/(\{regionId\}|\{clusterId\})/)
    .map((part) => {
      if (part === "{clusterId}") return "(?<clusterId>c[0-9a-z]{6,63})";
      if (part !== "{regionId}") return escapeRegExp(part);
      if (regionSeen) return "\\k<regionId>";
      regionSeen = true;
      return "(?<regionId>[a-z]{2,}(?:-[a-z0-9]+){1,4})";
    })
    .join("");
  const pattern = new RegExp(`^${source}$`);
  return (issuer) => {
    const groups = pattern.exec(issuer)?.groups;
    return groups ? { regionId: groups.regionId!, clusterId: groups.clusterId! } : undefined;
  };
}

/** What one allowed account's ACK API said about the cluster. */
export type AccountAnswer = { accountId: string; detail: AckClusterDetail } | { accountId: string; notFound: true };

export type Verdict = { trusted: true; cluster: Cluster } | { trusted: false; reason: string };

const accountOfArn = (arn: string | undefined) => /^acs:ram::(\d+):/.exec(arn ?? "")?.[1];

/** Pure policy: is the cluster behind `issuer` a member of `group`, given what its account's ACK API said? */
export function judge(group: ClusterGroup, issuer: string, target: AckIssuer, answer: AccountAnswer): Verdict {
  const cluster = `cluster ${target.clusterId} (${target.regionId})`;
  if ("notFound" in answer)
    return { trusted: false, reason: `${cluster} does not exist in account ${answer.accountId}; if it is another account's, add that account to the group` };
  const { detail } = answer;
  if (detail.regionId !== undefined && detail.regionId !== target.regionId)
    return { trusted: false, reason: `${cluster} is in region ${detail.regionId}, not the region its issuer names` };
  if (!detail.rrsa.enabled)
    return { trusted: false, reason: `${cluster} of account ${answer.accountId} does not have RRSA enabled; enable RRSA for the cluster in ACK` };
  const rrsaIssuer = detail.rrsa.issuer?.split(",")[0]?.trim();
  if (rrsaIssuer !== issuer) return { trusted: false, reason: `${cluster}: its RRSA issuer is ${rrsaIssuer ?? "(none)"}, not the token's issuer ${issuer}` };
  const owner = accountOfArn(detail.rrsa.oidcArn);
  if (owner !== undefined && owner !== answer.accountId)
    return { trusted: false, reason: `${cluster}: its RRSA provider belongs to account ${owner}, not ${answer.accountId}` };
  if (group.tag && !detail.tags.some((tag) => tag.key === group.tag!.key && tag.value === group.tag!.value)) {
    return {
      trusted: false,
      reason: `${cluster} of account ${answer.accountId} lacks the tag ${group.tag.key}=${group.tag.value} that cluster group '${group.name}' requires; tag the cluster in ACK`,
    };
  }
  return {
    trusted: true,
    cluster: {
      name: `${group.name}/${target.clusterId}`,
      issuer,
      subjects: group.subjects,
      registries: group.registries,
      allowRrsa: group.allowRrsa,
      regionId: target.regionId,
    },
  };
}

/** The caller's upstream context: the broker's own identity for this request, and its deadline. */
export interface UpstreamContext {
  base: Identity;
  /** Monotonic ms. */
  deadline: number;
  /** The request's logger; the request that starts a confirmation writes its outcome. */
  log?: Logger;
}

export interface GroupTrustDeps {
  groups: ClusterGroup[];
  /** The issuer form, from `alibabaCloud.ackIssuer`. */
  ackIssuer: string;
  describe: (identity: Identity, target: AckIssuer, timeoutMs: number) => Promise<AckClusterDetail>;
  /** The identity that reads `account`'s clusters: the base identity, or a session of the account's `roleArn`. */
  identityFor: (account: ClusterGroup["accounts"][number], upstream: UpstreamContext) => Promise<Identity>;
  clock: Clock;
  log: Logger;
  limits?: Partial<GroupTrustLimits>;
  backoff?: BackoffPolicy;
  sleep?: (ms: number) => Promise<void>;
}

export interface GroupTrustLimits {
  /** How long a confirmed cluster stays trusted before the ACK API is asked again (ms). */
  trustedTtlMs: number;
  /** How long a refused issuer stays refused without asking again (ms). */
  refusedTtlMs: number;
  /** Bound on remembered confirmations, and separately on remembered refusals. */
  maxEntries: number;
  /** New confirmations (ACK API lookups) per minute across all issuers; beyond, unknown issuers wait. */
  confirmationsPerMinute: number;
}

export const defaultGroupTrustLimits: GroupTrustLimits = {
  trustedTtlMs: 10 * 60_000,
  refusedTtlMs: 5 * 60_000,
  maxEntries: 10_000,
  confirmationsPerMinute: 60,
};

const notTrustedMessage = "the token's issuer (iss) is not a configured cluster";

/** The refusal a caller sees: as vague as any unknown issuer; the reason goes to the broker's log. */
const notTrusted = () => refusal("issuer-refused-by-group", notTrustedMessage);

/** A refusal decided by the groups' rules (not an upstream failure): remembered, and why logged. */
class RefusedByRule extends AcrCredentialError {
  constructor(readonly why: string) {
    super("InvalidToken", notTrustedMessage, { details: { reason: "issuer-refused-by-group" } });
  }
}

export interface GroupTrust {
  /** The member cluster for `issuer`, `undefined` when no group's issuer form matches; throws when refused. */
  lookup(issuer: string, upstream: UpstreamContext | undefined): Promise<Cluster | undefined>;
}

export function createGroupTrust(deps: GroupTrustDeps): GroupTrust {
  const limits = { ...defaultGroupTrustLimits, ...deps.limits };
  const match = ackIssuerMatcher(deps.ackIssuer);
  const trusted = new LRUCache<string, { cluster: Cluster; until: number }>({ max: limits.maxEntries });
  const refused = new LRUCache<string, { until: number }>({ max: limits.maxEntries });
  const confirming = new Map<string, Promise<Cluster>>();
  let window = { start: Number.NEGATIVE_INFINITY, used: 0 };

  const takeConfirmation = () => {
    const now = deps.clock.now();
    if (now - window.start >= 60_000) window = { start: now, used: 0 };
    if (window.used >= limits.confirmationsPerMinute) {
      throw new AcrCredentialError("RateLimited", "too many tokens of clusters the broker does not know yet; try again in a minute", {
        details: { retryAfterSeconds: Math.ceil((window.start + 60_000 - now) / 1000) },
      });
    }
    window.used++;
  };

  const ask = async (account: ClusterGroup["accounts"][number], target: AckIssuer, upstream: UpstreamContext): Promise<AccountAnswer> => {
    const identity = await deps.identityFor(account, upstream);
    const now = () => monotonicNow();
    try {
      const detail = await retry((remainingMs) => deps.describe(identity, target, remainingMs), {
        deadline: upstream.deadline,
        classify: (error) => {
          const details = upstreamDetails(error);
          return { retry: details?.retryable ?? false, ...(details?.retryAfterMs ? { retryAfterMs: details.retryAfterMs } : {}) };
        },
        now,
        ...(deps.backoff ? { policy: deps.backoff } : {}),
        ...(deps.sleep ? { sleep: deps.sleep } : {}),
      });
      return { accountId: account.id, detail };
    } catch (error) {
      const code = upstreamDetails(error)?.upstreamCode ?? "";
      // Only the cluster's absence is an answer; any other refusal (the broker's own key, its permissions) is a failure to ask.
      if (/ClusterNotFound/i.test(code)) return { accountId: account.id, notFound: true };
      throw error;
    }
  };

  const confirm = async (issuer: string, target: AckIssuer, candidates: ClusterGroup[], upstream: UpstreamContext, renewal: boolean): Promise<Cluster> => {
    // Renewing a confirmation is bounded by the clusters already trusted; only new issuers use up the budget.
    if (!renewal) takeConfirmation();
    const answers = new Map<string, AccountAnswer>();
    const reasons: string[] = [];
    for (const group of candidates) {
      for (const account of group.accounts) {
        const key = `${account.id} ${account.roleArn ?? ""}`;
        let answer = answers.get(key);
        if (!answer) {
          answer = await ask(account, target, upstream);
          answers.set(key, answer);
        }
        const verdict = judge(group, issuer, target, answer);
        if (verdict.trusted) return verdict.cluster;
        if (!reasons.includes(verdict.reason)) reasons.push(verdict.reason);
      }
    }
    const groups = candidates.map((g) => g.name).join(", ");
    throw new RefusedByRule(`${reasons.join("; ")} (cluster groups: ${groups}); fix the cluster or the group, or add the cluster to clusters:`);
  };

  return {
    async lookup(issuer, upstream) {
      const target = match(issuer);
      if (!target) return undefined;
      const candidates = deps.groups.filter((group) => !group.regions || group.regions.includes(target.regionId));
      if (candidates.length === 0) return undefined;
      const now = deps.clock.now();
      const hit = trusted.get(issuer);
      if (hit && now < hit.until) return hit.cluster;
      const no = refused.get(issuer);
      if (no && now < no.until) throw notTrusted();
      if (!upstream)
        throw new AcrCredentialError("UpstreamUnavailable", `cluster ${target.clusterId} is not confirmed yet and this request cannot reach the ACK API`);

      let flight = confirming.get(issuer);
      if (!flight) {
        const log = upstream.log ?? deps.log;
        flight = confirm(issuer, target, candidates, upstream, hit !== undefined)
          .then((cluster) => {
            trusted.set(issuer, { cluster, until: deps.clock.now() + limits.trustedTtlMs });
            refused.delete(issuer);
            log.info({ cluster: cluster.name }, "cluster confirmed by rule");
            return cluster;
          })
          .catch((error: unknown) => {
            if (error instanceof RefusedByRule) {
              refused.set(issuer, { until: deps.clock.now() + limits.refusedTtlMs });
              trusted.delete(issuer);
              log.warn({ clusterId: target.clusterId, regionId: target.regionId, reason: error.reason, detail: error.why }, "cluster refused by rule");
              throw error;
            }
            if (isAcrCredentialError(error) && error.code === "RateLimited") throw error;
            log.warn({ clusterId: target.clusterId, regionId: target.regionId, err: error }, "cluster could not be confirmed");
            // The caller learns only that the broker could not decide; the ACK API's answer stays in the log.
            throw new AcrCredentialError("UpstreamUnavailable", "the token's cluster cannot be confirmed right now; try again later", { cause: error });
          })
          .finally(() => confirming.delete(issuer));
        confirming.set(issuer, flight);
      }
      // A cluster confirmed before stays trusted while the ACK API cannot be asked again.
      if (hit)
        return flight.catch((error: unknown) => (isAcrCredentialError(error) && error.code === "UpstreamUnavailable" ? hit.cluster : Promise.reject(error)));
      return flight;
    },
  };
}
