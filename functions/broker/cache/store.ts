/**
 * The few operations the shared layer needs from a key-value store on the Redis protocol (Tair,
 * ApsaraDB for Redis, redis-server). Each one either answers within its timeout or throws; the
 * shared layer turns every throw into a miss.
 */

export interface SharedStore {
  get(name: string): Promise<string | null>;
  /** Stores a value that the store drops by itself after `ttlMs`. */
  set(name: string, value: string, ttlMs: number): Promise<void>;
  /** `SET name value NX PX ttlMs`: true when this call created the key (took the lease). */
  setIfAbsent(name: string, value: string, ttlMs: number): Promise<boolean>;
  exists(name: string): Promise<boolean>;
  /** Deletes `name` only while it still holds `value`, so a holder never releases a lease another instance took since. */
  deleteIfEquals(name: string, value: string): Promise<void>;
  /** Starts connecting now, ahead of the first request; never throws. */
  warmUp(): void;
  close(): Promise<void>;
}

/** Why an operation did not reach the store; `skipped` = the breaker is open and nothing was tried. */
export class SharedStoreError extends Error {
  override readonly name = "SharedStoreError";
  constructor(
    readonly reason: "skipped" | "timeout" | "unavailable" | "refused",
    message: string,
  ) {
    super(message);
  }
}
