/**
 * A circuit breaker for the shared cache: after a run of failed operations it opens, and for a
 * cool-down every operation is skipped at once instead of each request paying the timeout while the
 * store is down. Then one trial operation is let through; its success closes the breaker again.
 * Pure state over an injected monotonic clock.
 */

export interface BreakerOptions {
  /** Consecutive failures that open the breaker. */
  failures: number;
  /** How long it stays open before a trial operation (ms). */
  coolDownMs: number;
  now: () => number;
}

export type BreakerState = "closed" | "open" | "trial";

export class Breaker {
  readonly #options: BreakerOptions;
  #failures = 0;
  #openUntil = 0;
  #trialRunning = false;

  constructor(options: BreakerOptions) {
    this.#options = options;
  }

  get state(): BreakerState {
    if (this.#failures < this.#options.failures) return "closed";
    return this.#options.now() < this.#openUntil ? "open" : "trial";
  }

  /** Whether an operation may be tried now; while on trial, only one at a time. */
  allow(): boolean {
    const state = this.state;
    if (state === "closed") return true;
    if (state === "open" || this.#trialRunning) return false;
    this.#trialRunning = true;
    return true;
  }

  succeeded(): void {
    this.#failures = 0;
    this.#trialRunning = false;
  }

  /** Returns true when this failure opened (or re-opened) the breaker. */
  failed(): boolean {
    this.#trialRunning = false;
    this.#failures++;
    if (this.#failures < this.#options.failures) return false;
    this.#openUntil = this.#options.now() + this.#options.coolDownMs;
    return true;
  }
}
