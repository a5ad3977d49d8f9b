/**
 * The fleet's layer, behind each instance's own: values sealed in a store on the Redis protocol,
 * and a lease (`SET NX PX`) so that one instance at a time refreshes a key for the whole fleet while
 * the others wait for its value, within their request's deadline. A holder that dies loses the
 * lease when it expires. Whatever goes wrong with the store is a miss: the value is loaded upstream
 * as if there were no shared layer, and a warning is logged once in a while.
 */
import { randomUUID } from "node:crypto";
import type { Clock } from "../clock.ts";
import { freshness, serves, type Expiring, type GetOptions } from "./policy.ts";
import { open, seal, type CacheKeyRing } from "./sealed.ts";
import { SharedStoreError, type SharedStore } from "./store.ts";
import type { Warn } from "./warnings.ts";

/** The request's logger for warnings while serving it; the instance's when there is none. */
type WarnVia = Parameters<Warn>[2];

export interface SharedLayerOptions {
  store: SharedStore;
  keys: CacheKeyRing;
  /** Names of this layer's values start with it (`<keyPrefix>credential:`); leases with `<namespace>lease:`. */
  namespace: string;
  clock: Clock;
  refreshBeforeMs: number;
  /** How long a refresh may hold the lease before another instance takes over. */
  leaseMs: number;
  /** How often a waiting instance looks for the value. */
  pollMs: number;
  /** Kept back from the deadline: a waiter stops waiting in time to load upstream itself. */
  reserveMs: number;
  monotonicNow: () => number;
  sleep: (ms: number) => Promise<void>;
  warn: Warn;
}

interface Read<V> {
  raw?: string;
  value?: V;
  /** The store could not be read. */
  failed?: boolean;
}

type Waited<V> = { kind: "landed"; value: V } | { kind: "released" } | { kind: "giveUp" };

export class SharedLayer<V extends Expiring> {
  readonly #o: SharedLayerOptions;
  /** A still-valid shared value seen before a refresh failed, by the error the caller sees. */
  readonly #fallbacks = new WeakMap<object, V>();

  constructor(options: SharedLayerOptions) {
    this.#o = options;
  }

  /** Full store name of a cache key's value (the additional authenticated data of its seal). */
  nameOf(key: string): string {
    return `${this.#o.namespace}${key}`;
  }

  leaseOf(key: string): string {
    return `${this.#o.namespace}lease:${key}`;
  }

  /** A shared value still valid when loading failed, to be served flagged stale. */
  fallbackFor(error: unknown): V | undefined {
    const value = typeof error === "object" && error !== null ? this.#fallbacks.get(error) : undefined;
    return value && this.#freshness(value, 0) !== "expired" ? value : undefined;
  }

  /**
   * A fresh shared value (with `minValidityMs` left, when asked), or the value of the fleet's one
   * refresh, or (store unusable) `load()` itself. A value that lands while waiting is taken as it
   * is: it is the newest there is, so waiting callers never start a second refresh.
   */
  async load(key: string, load: () => Promise<V>, options: GetOptions = {}): Promise<V> {
    const name = this.nameOf(key);
    const lease = this.leaseOf(key);
    const log = options.log;
    const seen = await this.#read(name, log);
    if (!options.force && seen.value && serves(seen.value, this.#o.clock.now(), this.#o.refreshBeforeMs, options.minValidityMs)) return seen.value;
    if (seen.failed) return this.#refresh(name, undefined, load, seen.value, log);
    const deadline = options.deadline ?? this.#o.monotonicNow() + this.#o.leaseMs;
    for (;;) {
      const token = randomUUID();
      const taken = await this.#attempt("lease", () => this.#o.store.setIfAbsent(lease, token, this.#o.leaseMs), log);
      if (taken !== false) return this.#refresh(name, taken ? { lease, token } : undefined, load, seen.value, log);
      const waited = await this.#wait(name, lease, seen.raw, deadline, log);
      if (waited.kind === "landed") return waited.value;
      if (waited.kind === "giveUp") return this.#refresh(name, undefined, load, seen.value, log);
    }
  }

  async #refresh(name: string, held: { lease: string; token: string } | undefined, load: () => Promise<V>, previous: V | undefined, log: WarnVia): Promise<V> {
    let value: V;
    try {
      value = await load();
    } catch (error) {
      if (held) await this.#attempt("release", () => this.#o.store.deleteIfEquals(held.lease, held.token), log);
      if (previous && typeof error === "object" && error !== null) this.#fallbacks.set(error, previous);
      throw error;
    }
    const ttlMs = value.expiresAt - this.#o.clock.now();
    if (ttlMs > 0) await this.#attempt("write", () => this.#o.store.set(name, seal(this.#o.keys, name, JSON.stringify(value)), ttlMs), log);
    if (held) await this.#attempt("release", () => this.#o.store.deleteIfEquals(held.lease, held.token), log);
    return value;
  }

  /** Polls for a value newer than `seenRaw` until it lands, the lease is let go, or it is time to stop waiting. */
  async #wait(name: string, lease: string, seenRaw: string | undefined, deadline: number, log: WarnVia): Promise<Waited<V>> {
    for (;;) {
      const left = deadline - this.#o.reserveMs - this.#o.monotonicNow();
      if (left <= 0) return { kind: "giveUp" };
      await this.#o.sleep(Math.min(this.#o.pollMs, left));
      const landed = await this.#landed(name, seenRaw, log);
      if (landed) return landed;
      const held = await this.#attempt("lease", () => this.#o.store.exists(lease), log);
      if (held === undefined) return { kind: "giveUp" };
      // The holder writes the value before it lets the lease go: look once more.
      if (!held) return (await this.#landed(name, seenRaw, log)) ?? { kind: "released" };
    }
  }

  async #landed(name: string, seenRaw: string | undefined, log: WarnVia): Promise<Waited<V> | undefined> {
    const current = await this.#read(name, log);
    if (current.failed) return { kind: "giveUp" };
    if (current.value && current.raw !== seenRaw && this.#freshness(current.value) === "fresh") return { kind: "landed", value: current.value };
    return undefined;
  }

  async #read(name: string, log: WarnVia): Promise<Read<V>> {
    const raw = await this.#attempt("read", () => this.#o.store.get(name), log);
    if (raw === undefined) return { failed: true };
    if (raw === null) return {};
    const opened = open(this.#o.keys, name, raw);
    if (!opened.ok) {
      this.#o.warn("unreadable", { name, reason: opened.reason }, log);
      return { raw };
    }
    const value = parseValue<V>(opened.plaintext);
    if (!value) {
      this.#o.warn("unreadable", { name, reason: "notAnEntry" }, log);
      return { raw };
    }
    // Never hand out an expired value, whatever the store's own expiry did.
    return this.#freshness(value, 0) === "expired" ? { raw } : { raw, value };
  }

  /** Runs a store operation; a failure is logged (rate-limited) and answered with `undefined`. */
  async #attempt<T>(operation: string, run: () => Promise<T>, log: WarnVia): Promise<T | undefined> {
    try {
      return await run();
    } catch (error) {
      const reason = error instanceof SharedStoreError ? error.reason : "unavailable";
      if (reason !== "skipped") this.#o.warn(reason, { operation, err: error }, log);
      return undefined;
    }
  }

  #freshness(value: Expiring, refreshBeforeMs = this.#o.refreshBeforeMs) {
    return freshness(value.expiresAt, this.#o.clock.now(), refreshBeforeMs);
  }
}

function parseValue<V extends Expiring>(text: string): V | undefined {
  try {
    const value = JSON.parse(text) as unknown;
    if (typeof value === "object" && value !== null && typeof (value as Expiring).expiresAt === "number") return value as V;
  } catch {
    // Sealed by us, so this does not happen unless the key leaked; it is a miss either way.
  }
  return undefined;
}
