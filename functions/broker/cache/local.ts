/**
 * The instance's own layer: a bounded in-memory cache of things that expire (STS sessions,
 * registry passwords), with single flight: concurrent misses for one key share one load. An entry
 * is handed out until `expiresAt − refreshBefore`; after that it is only a fallback for when the
 * refresh fails, and once expired it is never handed out.
 */
import { LRUCache } from "lru-cache";
import type { Clock } from "../clock.ts";
import { freshness, serves, type Cache, type CacheResult, type Expiring, type Freshness, type GetOptions } from "./policy.ts";

export interface ExpiringCacheOptions {
  max: number;
  clock: Clock;
  refreshBeforeMs: number;
}

export class ExpiringCache<V extends Expiring> implements Cache<V> {
  readonly #entries: LRUCache<string, V>;
  readonly #inflight = new Map<string, Promise<V>>();
  readonly #clock: Clock;
  readonly #refreshBeforeMs: number;

  constructor(options: ExpiringCacheOptions) {
    this.#entries = new LRUCache<string, V>({ max: options.max });
    this.#clock = options.clock;
    this.#refreshBeforeMs = options.refreshBeforeMs;
  }

  /**
   * Returns a fresh entry (with `minValidityMs` left, when asked), or loads one once per key at a
   * time: callers that arrive while it loads share it. `force` skips the fresh entry.
   */
  async get(key: string, load: () => Promise<V>, options: GetOptions = {}): Promise<CacheResult<V>> {
    const cached = this.#entries.get(key);
    if (!options.force && cached && serves(cached, this.#clock.now(), this.#refreshBeforeMs, options.minValidityMs)) {
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
