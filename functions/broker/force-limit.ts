/**
 * `force: true` skips the cache, so it costs upstream calls; each cluster may use it once per
 * interval. The limit is per broker instance (Function Compute may run several).
 */
import { LRUCache } from "lru-cache";
import { AcrCredentialError } from "../../shared/errors.ts";
import type { Clock } from "./clock.ts";

/** Pure rule: allowed, or how many whole seconds until it is. */
export function forceDecision(lastAt: number | undefined, now: number, intervalMs: number): { allowed: true } | { allowed: false; retryAfterSeconds: number } {
  if (lastAt === undefined || now - lastAt >= intervalMs) return { allowed: true };
  return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((lastAt + intervalMs - now) / 1000)) };
}

export class ForceLimiter {
  readonly #last = new LRUCache<string, number>({ max: 10_000 });

  constructor(
    private readonly intervalMs: number,
    private readonly clock: Clock,
  ) {}

  /** Records a forced refresh for `cluster`, or throws RateLimited with `retryAfterSeconds`. */
  take(cluster: string): void {
    const now = this.clock.now();
    const decision = forceDecision(this.#last.get(cluster), now, this.intervalMs);
    if (!decision.allowed) {
      throw new AcrCredentialError(
        "RateLimited",
        `cluster '${cluster}' forced a refresh less than ${this.intervalMs / 1000} s ago; retry after ${decision.retryAfterSeconds} s or drop force`,
        {
          details: { retryAfterSeconds: decision.retryAfterSeconds },
        },
      );
    }
    this.#last.set(cluster, now);
  }
}
