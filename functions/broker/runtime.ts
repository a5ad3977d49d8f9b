import type { JWTVerifyGetKey } from "jose";
import packageJson from "../../package.json" with { type: "json" };
import { describeClusterDetail } from "../../shared/alibaba/ack.ts";
import { createAlibabaCloud, type AlibabaCloud } from "../../shared/alibaba/cloud.ts";
import type { Identity, StsSession } from "../../shared/alibaba/identity.ts";
import { createLogger, type Logger } from "../../shared/log.ts";
import type { BackoffPolicy } from "../../shared/retry.ts";
import { systemClock, type Clock } from "./clock.ts";
import { createGroupTrust, type GroupTrustDeps, type GroupTrustLimits } from "./cluster-groups.ts";
import { createClusterIndex } from "./cluster-index.ts";
import { createClusterKeys, type KeySourceOptions } from "./cluster-keys.ts";
import { readClusterCas, type BrokerConfig, type Cluster, type LoadedConfig } from "./config.ts";
import { ExpiringCache } from "./expiring-cache.ts";
import { ForceLimiter } from "./force-limit.ts";
import type { DomainList, IssueDeps, IssuedCredential } from "./issue.ts";
import { createTokenVerifier, type TokenVerifier } from "./token.ts";

/**
 * Everything the broker builds once per instance (cold start): the parsed configuration, key
 * sources, caches and clients. Requests only read from it.
 */
export interface BrokerRuntime {
  config: BrokerConfig;
  verifyToken: TokenVerifier;
  issue: IssueDeps;
  forceLimiter: ForceLimiter;
  log: Logger;
  clock: Clock;
  version: string;
  /** The broker's own identity when it is not Function Compute's `context.credentials`. */
  baseIdentity?: Identity;
}

export interface RuntimeOptions {
  loaded: LoadedConfig;
  clock?: Clock;
  log?: Logger;
  /** Alibaba Cloud client; by default the SDK clients at the configured endpoints. */
  cloud?: AlibabaCloud;
  baseIdentity?: Identity;
  keys?: Omit<KeySourceOptions, "ca">;
  backoff?: BackoffPolicy;
  sleep?: (ms: number) => Promise<void>;
  /** Cluster groups: how long confirmations and refusals are kept, and how many new ones per minute. */
  groupLimits?: Partial<GroupTrustLimits>;
}

export const brokerVersion: string = packageJson.version;

export function createRuntime(options: RuntimeOptions): BrokerRuntime {
  const { config } = options.loaded;
  const clock = options.clock ?? systemClock;
  const cas = readClusterCas(options.loaded);
  const keysFor = (cluster: Cluster): JWTVerifyGetKey => {
    const ca = cas.get(cluster.name);
    return createClusterKeys(cluster, { ...options.keys, ...(ca ? { ca } : {}) });
  };
  const refreshBeforeMs = config.refreshBeforeExpirySeconds * 1000;
  const issue: IssueDeps = {
    cloud: options.cloud ?? createAlibabaCloud(config.alibabaCloud),
    sessions: new ExpiringCache<StsSession>({ max: config.cacheMaxEntries, clock, refreshBeforeMs }),
    credentials: new ExpiringCache<IssuedCredential>({ max: config.cacheMaxEntries, clock, refreshBeforeMs }),
    // Discovered domains are re-read hourly, and kept for a day as a fallback when that fails.
    domains: new ExpiringCache<DomainList>({ max: config.cacheMaxEntries, clock, refreshBeforeMs: 23 * 3600_000 }),
    clock,
    domainsTtlMs: 24 * 3600_000,
    ...(options.backoff ? { backoff: options.backoff } : {}),
    ...(options.sleep ? { sleep: options.sleep } : {}),
  };
  const log = options.log ?? createLogger("broker");
  const groups = config.clusterGroups.length === 0 ? undefined : createGroupTrust(groupTrustDeps(config, issue, clock, log, options));
  const index = createClusterIndex({ clusters: config.clusters, keysFor, maxKeySets: config.clusterKeysMaxEntries, ...(groups ? { groups } : {}) });
  return {
    config,
    verifyToken: createTokenVerifier({ config, keysFor, index, clock }),
    issue,
    forceLimiter: new ForceLimiter(config.forceIntervalSeconds * 1000, clock),
    log,
    clock,
    version: brokerVersion,
    ...(options.baseIdentity ? { baseIdentity: options.baseIdentity } : {}),
  };
}

/** Cluster groups read ACK with the broker's identity, or a session of an account's `roleArn` (cached like the chain's). */
function groupTrustDeps(config: BrokerConfig, issue: IssueDeps, clock: Clock, log: Logger, options: RuntimeOptions): GroupTrustDeps {
  return {
    groups: config.clusterGroups,
    ackIssuer: config.alibabaCloud.ackIssuer,
    describe: (identity, target, timeoutMs) => describeClusterDetail(config.alibabaCloud, identity, target, { timeoutMs }),
    identityFor: async (account, upstream) => {
      if (!account.roleArn) return upstream.base;
      const roleArn = account.roleArn;
      const { value } = await issue.sessions.get(`ack-reader ${roleArn}`, () =>
        issue.cloud.assumeRole(upstream.base, { roleArn, durationSeconds: 3600, sessionName: "acr-credential-broker" }, { timeoutMs: Math.max(1, upstream.deadline - performance.now()) }),
      );
      return { kind: "keys", keys: value };
    },
    clock,
    log,
    ...(options.groupLimits ? { limits: options.groupLimits } : {}),
    ...(options.backoff ? { backoff: options.backoff } : {}),
    ...(options.sleep ? { sleep: options.sleep } : {}),
  };
}
