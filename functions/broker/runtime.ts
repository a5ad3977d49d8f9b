import type { JWTVerifyGetKey } from "jose";
import packageJson from "../../package.json" with { type: "json" };
import { createAlibabaCloud, type AlibabaCloud } from "../../shared/alibaba/cloud.ts";
import type { Identity } from "../../shared/alibaba/identity.ts";
import { createLogger, type Logger } from "../../shared/log.ts";
import type { BackoffPolicy } from "../../shared/retry.ts";
import { AnswerMemo } from "./answer-memo.ts";
import { systemClock, type Clock } from "./clock.ts";
import { createGroupTrust, type GroupTrustDeps, type GroupTrustLimits } from "./cluster-groups.ts";
import { createClusterIndex } from "./cluster-index.ts";
import { createClusterKeys, type KeySourceOptions } from "./cluster-keys.ts";
import { createBrokerCaches, domainsLifetimeMs } from "./cache/broker-caches.ts";
import { readClusterCas, readSharedCacheCa, type BrokerConfig, type Cluster, type LoadedConfig } from "./config.ts";
import { ForceLimiter } from "./force-limit.ts";
import type { IssueDeps } from "./issue.ts";
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
  /** Complete answers remembered per verified token and body (answer-memo.ts). */
  answers: AnswerMemo;
  log: Logger;
  clock: Clock;
  version: string;
  /** The broker's own identity when it is not Function Compute's `context.credentials`. */
  baseIdentity?: Identity;
  /** Lets go of what the runtime holds open (the shared cache's connection). */
  close(): Promise<void>;
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
  /** Where the shared cache's key is read (BROKER_CACHE_KEY); default process.env. */
  env?: Readonly<Record<string, string | undefined>>;
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
  const log = options.log ?? createLogger("broker");
  const sharedCa = readSharedCacheCa(options.loaded);
  const { shared, ...caches } = createBrokerCaches({
    config,
    clock,
    log,
    env: options.env ?? process.env,
    ...(sharedCa ? { sharedCa } : {}),
  });
  const issue: IssueDeps = {
    cloud: options.cloud ?? createAlibabaCloud(config.alibabaCloud),
    ...caches,
    clock,
    domainsLifetimeMs: domainsLifetimeMs(config),
    ...(options.backoff ? { backoff: options.backoff } : {}),
    ...(options.sleep ? { sleep: options.sleep } : {}),
  };
  const groups = config.clusterGroups.length === 0 ? undefined : createGroupTrust(groupTrustDeps(config, issue, clock, log, options));
  const index = createClusterIndex({ clusters: config.clusters, keysFor, maxKeySets: config.clusterKeysMaxEntries, ...(groups ? { groups } : {}) });
  return {
    config,
    verifyToken: createTokenVerifier({ config, keysFor, index, clock }),
    issue,
    forceLimiter: new ForceLimiter(config.forceIntervalSeconds * 1000, clock),
    answers: new AnswerMemo(),
    log,
    clock,
    version: brokerVersion,
    ...(options.baseIdentity ? { baseIdentity: options.baseIdentity } : {}),
    close: async () => shared?.close(),
  };
}

/** Cluster groups read ACK with the broker's identity, or a session of an account's `roleArn` (cached like the chain's). */
function groupTrustDeps(config: BrokerConfig, issue: IssueDeps, clock: Clock, log: Logger, options: RuntimeOptions): GroupTrustDeps {
  return {
    groups: config.clusterGroups,
    ackIssuer: config.alibabaCloud.ackIssuer,
    // The ACK client comes with the other SDKs, on the first upstream call (build.mjs splits them off).
    describe: async (identity, target, timeoutMs) =>
      (await import("../../shared/alibaba/upstream.ts")).describeClusterDetail(config.alibabaCloud, identity, target, { timeoutMs }),
    identityFor: async (account, upstream) => {
      if (!account.roleArn) return upstream.base;
      const roleArn = account.roleArn;
      // Keyed as the identity chain keys a one-step AssumeRole, so the two share the session.
      const { value } = await issue.sessions.get(
        `broker>role(${roleArn}|3600)`,
        () =>
          issue.cloud.assumeRole(
            upstream.base,
            { roleArn, durationSeconds: 3600, sessionName: "acr-credential-broker" },
            { timeoutMs: Math.max(1, upstream.deadline - performance.now()) },
          ),
        { deadline: upstream.deadline },
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
