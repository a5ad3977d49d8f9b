/**
 * Retries with exponential backoff and full jitter inside a deadline. The schedule is a pure
 * function; the runner takes its time, sleep and randomness from the caller.
 */

export interface BackoffPolicy {
  /** Upper bound of the first retry's delay (ms). */
  baseDelayMs: number;
  /** No delay is ever longer than this (ms). */
  maxDelayMs: number;
  /** Attempts in total, the first one included; `Infinity`: as many as the deadline allows. */
  maxAttempts: number;
}

export const defaultBackoff: BackoffPolicy = { baseDelayMs: 100, maxDelayMs: 2000, maxAttempts: 5 };

/** "Full jitter": a uniform delay in [0, min(max, base·2^retry)) (retry 0 is the first retry). */
export function backoffDelay(retry: number, policy: BackoffPolicy, random: () => number): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** retry);
  return Math.floor(random() * ceiling);
}

export interface RetryDecision {
  retry: boolean;
  /** A delay the upstream asked for (e.g. a throttling response's retry-after), in ms. */
  retryAfterMs?: number;
}

export interface RetryOptions {
  policy?: BackoffPolicy;
  /** Monotonic time (ms) after which no new attempt starts. */
  deadline: number;
  /** Whether an error is worth another attempt. */
  classify: (error: unknown) => RetryDecision;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  /** Told before each wait (a status to write, a log line); awaited, so it may write before the next attempt. */
  onRetry?: (retry: RetryNotice) => void | Promise<void>;
}

/** What a retry is about to do: the error it retries, the attempts so far, how long it waits. */
export interface RetryNotice {
  error: unknown;
  /** Attempts made so far (1 after the first failure). */
  attempts: number;
  delayMs: number;
}

export const monotonicNow = (): number => performance.now();
/** Resolves after `ms` milliseconds: the one real sleep, which code that waits takes as its default. */
export const sleep = (ms: number): Promise<void> => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Runs `attempt` until it succeeds, fails with an error that is not retryable, runs out of
 * attempts, or the next attempt could not start before the deadline; then rethrows the last error.
 * `attempt` receives the time left (ms) so it can bound its own request.
 */
export async function retry<T>(attempt: (remainingMs: number, index: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const policy = options.policy ?? defaultBackoff;
  const now = options.now ?? monotonicNow;
  const wait = options.sleep ?? sleep;
  const random = options.random ?? Math.random;
  for (let index = 0; ; index++) {
    try {
      return await attempt(Math.max(0, options.deadline - now()), index);
    } catch (error) {
      const decision = options.classify(error);
      if (!decision.retry || index + 1 >= policy.maxAttempts) throw error;
      const delay = Math.max(backoffDelay(index, policy, random), decision.retryAfterMs ?? 0);
      if (now() + delay >= options.deadline) throw error;
      await options.onRetry?.({ error, attempts: index + 1, delayMs: delay });
      await wait(delay);
    }
  }
}
