/**
 * The one cache interface of the broker and its pure policy. Every layer (the instance's own
 * memory in front, the fleet's shared store behind) hands out an entry while it is fresh, refreshes
 * it once it is due, and never hands out an expired one.
 */
import type { Logger } from "../../../shared/log.ts";

export interface Expiring {
  /** Epoch ms. */
  expiresAt: number;
  /** When the upstream call that made it began (epoch ms), where known: its lifetime bounds what `minValidity` may ask of it. */
  issuedAt?: number;
}

export type Freshness = "fresh" | "due" | "expired";

/** Pure cache policy: fresh = serve; due = refresh, serve only as a flagged fallback; expired = never serve. */
export function freshness(expiresAt: number, now: number, refreshBeforeMs: number): Freshness {
  if (expiresAt - refreshBeforeMs > now) return "fresh";
  if (expiresAt > now) return "due";
  return "expired";
}

/**
 * Whether an entry serves a caller who needs it valid for `minValidityMs` more (a refresher's
 * scheduled renewal): it must be fresh and have that much left. The need is capped at half the
 * entry's lifetime (from `issuedAt`, when known), so an entry that could not meet it even when new
 * (a credential shorter than twice the need) is not refreshed again on every request.
 */
export function serves(entry: Expiring, now: number, refreshBeforeMs: number, minValidityMs: number | undefined): boolean {
  const lifetimeMs = entry.issuedAt === undefined ? Number.POSITIVE_INFINITY : entry.expiresAt - entry.issuedAt;
  const needMs = Math.min(minValidityMs ?? 0, lifetimeMs / 2);
  return freshness(entry.expiresAt, now, Math.max(refreshBeforeMs, needMs)) === "fresh";
}

export interface CacheResult<V> {
  value: V;
  /** Where the value came from: `stale` = the refresh failed and a still-valid entry was served. */
  source: "cache" | "upstream" | "stale";
}

export interface GetOptions {
  /** Skip a fresh entry and refresh (a cluster's `force: true`, the renew event). */
  force?: boolean;
  /**
   * Skip an entry with less than this much validity left (ms) and refresh it once for every
   * concurrent caller (`minValiditySeconds` of a request); see `serves`.
   */
  minValidityMs?: number;
  /** Monotonic ms by which the caller needs an answer; a layer that waits for another instance stops waiting in time. */
  deadline?: number;
  /** The request's logger, for warnings written while serving it. */
  log?: Pick<Logger, "warn">;
}

/** What the broker's issuing code needs from a cache, whichever layers stand behind it. */
export interface Cache<V extends Expiring> {
  /** Returns a fresh entry, or loads one (once per key at a time); `force` skips the fresh entry. */
  get(key: string, load: () => Promise<V>, options?: GetOptions): Promise<CacheResult<V>>;
  /** How an entry stands now under this cache's policy (used to flag a value bounded by a stale one). */
  freshnessOf(entry: Expiring): Freshness;
}
