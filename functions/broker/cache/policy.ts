/**
 * The one cache interface of the broker and its pure policy. Every layer (the instance's own
 * memory in front, the fleet's shared store behind) hands out an entry while it is fresh, refreshes
 * it once it is due, and never hands out an expired one.
 */

export interface Expiring {
  /** Epoch ms. */
  expiresAt: number;
}

export type Freshness = "fresh" | "due" | "expired";

/** Pure cache policy: fresh = serve; due = refresh, serve only as a flagged fallback; expired = never serve. */
export function freshness(expiresAt: number, now: number, refreshBeforeMs: number): Freshness {
  if (expiresAt - refreshBeforeMs > now) return "fresh";
  if (expiresAt > now) return "due";
  return "expired";
}

export interface CacheResult<V> {
  value: V;
  /** Where the value came from: `stale` = the refresh failed and a still-valid entry was served. */
  source: "cache" | "upstream" | "stale";
}

export interface GetOptions {
  /** Skip a fresh entry and refresh (a cluster's `force: true`, the renew event). */
  force?: boolean;
  /** Monotonic ms by which the caller needs an answer; a layer that waits for another instance stops waiting in time. */
  deadline?: number;
}

/** What the broker's issuing code needs from a cache, whichever layers stand behind it. */
export interface Cache<V extends Expiring> {
  /** Returns a fresh entry, or loads one (once per key at a time); `force` skips the fresh entry. */
  get(key: string, load: () => Promise<V>, options?: GetOptions): Promise<CacheResult<V>>;
  /** How an entry stands now under this cache's policy (used to flag a value bounded by a stale one). */
  freshnessOf(entry: Expiring): Freshness;
}
