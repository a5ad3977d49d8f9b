/** Wall-clock time in epoch milliseconds; passed in so tests can move time (credential expiry, token checks). */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
