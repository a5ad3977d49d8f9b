import { LRUCache } from "lru-cache";
import type { Clock } from "./clock.ts";

/**
 * A bounded cache of things that expire (STS sessions, registry passwords), with single flight:
 * concurrent misses for one key share one upstream call. An entry is handed out until
 * `expiresAt − refreshBefore`; after that it is only a fallback for when the refresh fails, and
 * once expired it is never handed out.
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

export interface ExpiringCacheOptions {
  max: number;
  clock: Clock;
  refreshBeforeMs: number;
}

export class ExpiringCache<V extends Expiring> {
  readonly #entries: LRUCache<string, V>;
  readonly #inflight = new Map<string, Promise<V>>();
  readonly #clock: Clock;
  readonly #refreshBeforeMs: number;

  constructor(options: ExpiringCacheOptions) {
    this.#entries = new LRUCache<string, V>({ max: options.max });
    this.#clock = options.clock;
    this.#refreshBeforeMs = options.refreshBeforeMs;
  }

  /** Returns a fresh entry, or loads one (once per key at a time); `force` skips the fresh entry. */
  async get(key: string, load: () => Promise<V>, options: { force?: boolean } = {}): Promise<CacheResult<V>> {
    const cached = this.#entries.get(key);
    if (!options.force && cached && freshness(cached.expiresAt, this.#clock.now(), this.#refreshBeforeMs) === "fresh") {
      return { value: cached, source: "cache" };
    }
    try {
      return { value: await this.#load(key, load), source: "upstream" };
    } catch (error) {
      // Re-read: another caller may have stored a newer entry meanwhile.
      const fallback = this.#entries.get(key);
      if (fallback && freshness(fallback.expiresAt, this.#clock.now(), 0) !== "expired") return { value: fallback, source: "stale" };
      throw error;
    }
  }

  #load(key: string, load: () => Promise<V>): Promise<V> {
    let pending = this.#inflight.get(key);
    if (!pending) {
      pending = load()
        .then((value) => {
          if (freshness(value.expiresAt, this.#clock.now(), 0) !== "expired") this.#entries.set(key, value);
          return value;
        })
        .finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, pending);
    }
    return pending;
  }

  /** How an entry stands now under this cache's policy (used to flag a value bounded by a stale one). */
  freshnessOf(entry: Expiring): Freshness {
    return freshness(entry.expiresAt, this.#clock.now(), this.#refreshBeforeMs);
  }

  peek(key: string): V | undefined {
    return this.#entries.peek(key);
  }

  get size(): number {
    return this.#entries.size;
  }
}
