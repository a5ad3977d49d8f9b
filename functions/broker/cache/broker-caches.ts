/**
 * The broker's three caches (STS sessions, registry credentials, discovered domains): each
 * instance's own, and with `sharedCache` configured the fleet's shared layer behind each of them,
 * one Redis connection for all three.
 */
import type { StsSession } from "../../../shared/alibaba/identity.ts";
import type { Logger } from "../../../shared/log.ts";
import { monotonicNow, sleep } from "../../../shared/retry.ts";
import type { Clock } from "../clock.ts";
import type { BrokerConfig } from "../config.ts";
import type { DomainList, IssuedCredential } from "../issue.ts";
import { LayeredCache } from "./layered.ts";
import { ExpiringCache } from "./local.ts";
import type { Cache, Expiring } from "./policy.ts";
import { createRedisStore } from "./redis-store.ts";
import { cacheKeyRingFromEnv } from "./sealed.ts";
import { SharedLayer } from "./shared.ts";
import type { SharedStore } from "./store.ts";
import { rateLimitedWarning } from "./warnings.ts";

export interface BrokerCaches {
  sessions: Cache<StsSession>;
  credentials: Cache<IssuedCredential>;
  domains: Cache<DomainList>;
  /** The shared store, when configured (closed with the runtime). */
  shared?: SharedStore;
}

export interface BrokerCachesOptions {
  config: BrokerConfig;
  clock: Clock;
  log: Logger;
  /** Where BROKER_CACHE_KEY, BROKER_CACHE_PREVIOUS_KEY and BROKER_CACHE_PASSWORD are read. */
  env: Readonly<Record<string, string | undefined>>;
  /** `sharedCache.caFile`, read by the caller. */
  sharedCa?: string;
}

/**
 * Discovered domains are re-read after `discoveredDomainsTtlSeconds`, and kept for a day beyond it as
 * a fallback while re-reading fails (an instance's endpoints outlive a failed ListInstanceEndpoint).
 */
const domainsFallbackMs = 24 * 3600_000;

/** How long a discovered domain list may be reported at all: its TTL, then the fallback day. */
export const domainsLifetimeMs = (config: Pick<BrokerConfig, "discoveredDomainsTtlSeconds">): number =>
  config.discoveredDomainsTtlSeconds * 1000 + domainsFallbackMs;
const warningIntervalMs = 60_000;
const pollMs = 50;

export function createBrokerCaches(options: BrokerCachesOptions): BrokerCaches {
  const { config, clock } = options;
  const refreshBeforeMs = config.refreshBeforeExpirySeconds * 1000;
  const local = <V extends Expiring>(refreshBefore: number) => new ExpiringCache<V>({ max: config.cacheMaxEntries, clock, refreshBeforeMs: refreshBefore });
  const shared = config.sharedCache;
  if (!shared) return { sessions: local(refreshBeforeMs), credentials: local(refreshBeforeMs), domains: local(domainsFallbackMs) };

  // A missing or malformed key is a start-up error: an instance must not run unshared by accident.
  const keys = cacheKeyRingFromEnv(options.env);
  const warn = rateLimitedWarning(options.log, warningIntervalMs, monotonicNow);
  const store = createRedisStore({
    url: shared.url,
    ...(options.env.BROKER_CACHE_PASSWORD ? { password: options.env.BROKER_CACHE_PASSWORD } : {}),
    ...(options.sharedCa ? { ca: options.sharedCa } : {}),
    operationTimeoutMs: shared.operationTimeoutMs,
    breaker: { failures: shared.breakerFailures, coolDownMs: shared.breakerCoolDownSeconds * 1000 },
    now: monotonicNow,
    onBreakerOpen: (cause) => warn("breakerOpen", { err: cause, skippedForSeconds: shared.breakerCoolDownSeconds }),
  });
  store.warmUp();
  const layered = <V extends Expiring>(kind: string, refreshBefore: number) =>
    new LayeredCache<V>(
      local<V>(refreshBefore),
      new SharedLayer<V>({
        store,
        keys,
        namespace: `${shared.keyPrefix}${kind}:`,
        clock,
        refreshBeforeMs: refreshBefore,
        leaseMs: shared.leaseSeconds * 1000,
        pollMs,
        // Enough for one upstream call of a typical chain after waiting in vain.
        reserveMs: Math.min(3000, (config.requestTimeoutSeconds * 1000) / 3),
        monotonicNow,
        sleep,
        warn,
      }),
    );
  return {
    sessions: layered<StsSession>("session", refreshBeforeMs),
    credentials: layered<IssuedCredential>("credential", refreshBeforeMs),
    domains: layered<DomainList>("domains", domainsFallbackMs),
    shared: store,
  };
}
