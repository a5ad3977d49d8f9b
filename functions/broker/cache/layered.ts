/**
 * The broker's cache when a shared store is configured: the instance's own cache in front (its
 * fresh/due/expired policy and single flight unchanged), the fleet's shared layer behind it, which
 * only sees this instance's misses.
 */
import type { ExpiringCache } from "./local.ts";
import type { Cache, CacheResult, Expiring, Freshness, GetOptions } from "./policy.ts";
import type { SharedLayer } from "./shared.ts";

export class LayeredCache<V extends Expiring> implements Cache<V> {
  readonly #local: ExpiringCache<V>;
  readonly #shared: SharedLayer<V>;

  constructor(local: ExpiringCache<V>, shared: SharedLayer<V>) {
    this.#local = local;
    this.#shared = shared;
  }

  async get(key: string, load: () => Promise<V>, options: GetOptions = {}): Promise<CacheResult<V>> {
    try {
      return await this.#local.get(key, () => this.#shared.load(key, load, options), options);
    } catch (error) {
      // The refresh failed and this instance had nothing to fall back on, but the fleet had.
      const fallback = this.#shared.fallbackFor(error);
      if (fallback) return { value: fallback, source: "stale" };
      throw error;
    }
  }

  freshnessOf(entry: Expiring): Freshness {
    return this.#local.freshnessOf(entry);
  }
}
