/**
 * Finds the cluster a token belongs to by its issuer, at a cost that does not grow with the fleet:
 * start-up builds only a map issuer → configured cluster; a cluster's keys (inline JWKS import, or
 * discovery and JWKS fetch) are set up when a token of it first arrives, and kept in a bounded cache.
 * Explicit `clusters:` entries win over cluster groups.
 */
import { LRUCache } from "lru-cache";
import type { JWTVerifyGetKey } from "jose";
import type { Cluster } from "./config.ts";
import type { GroupTrust, UpstreamContext } from "./cluster-groups.ts";

export interface TrustedCluster {
  cluster: Cluster;
  keys: JWTVerifyGetKey;
}

export interface ClusterIndex {
  /** The trusted cluster of `issuer` with its keys; `undefined` when no entry or group trusts it. */
  lookup(issuer: string, upstream?: UpstreamContext): Promise<TrustedCluster | undefined>;
}

export interface ClusterIndexDeps {
  clusters: readonly Cluster[];
  keysFor: (cluster: Cluster) => JWTVerifyGetKey;
  groups?: GroupTrust;
  /** Bound on clusters whose keys are held at once; the least recently used are set up again on their next token. */
  maxKeySets?: number;
}

export function createClusterIndex(deps: ClusterIndexDeps): ClusterIndex {
  const byIssuer = new Map<string, Cluster>();
  for (const cluster of deps.clusters) byIssuer.set(cluster.issuer, cluster);
  // Keyed by issuer; a member of a group keeps its key set for as long as it stays in here.
  const keySets = new LRUCache<string, { cluster: Cluster; keys: JWTVerifyGetKey }>({ max: deps.maxKeySets ?? 2000 });

  const keysOf = (cluster: Cluster): JWTVerifyGetKey => {
    const held = keySets.get(cluster.issuer);
    // A group member confirmed again may come back as a new object with the same issuer: same keys.
    if (held && (held.cluster === cluster || held.cluster.name === cluster.name)) return held.keys;
    const keys = deps.keysFor(cluster);
    keySets.set(cluster.issuer, { cluster, keys });
    return keys;
  };

  return {
    async lookup(issuer, upstream) {
      const configured = byIssuer.get(issuer);
      if (configured) return { cluster: configured, keys: keysOf(configured) };
      const member = await deps.groups?.lookup(issuer, upstream);
      return member ? { cluster: member, keys: keysOf(member) } : undefined;
    },
  };
}
