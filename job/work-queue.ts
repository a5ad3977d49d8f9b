/**
 * The `--watch` refresher's work queue, in the manner of client-go's workqueue: what happened (a
 * namespace changed, the credentials were renewed, the heal is due) becomes a key, and one worker
 * handles the keys one at a time, so every reconcile sees the state the previous one left.
 *
 * - A key added while it waits is not added twice; added while it is being handled, it is handled
 *   once more afterwards (what changed meanwhile may have been missed).
 * - `addAfter` waits before adding; a key already waiting keeps the earlier of the two times.
 * - A key whose handling fails is added again after a jittered backoff (`shared/retry.ts`), longer
 *   with each consecutive failure of that key; a success resets it.
 * - Nothing is handled before `start()`; `shutDown()` lets the key in hand finish and drops the rest.
 *
 * Time is passed in (`now`, `setTimer`), so the behaviour is tested without waiting.
 */
import { backoffDelay, type BackoffPolicy } from "../shared/retry.ts";

/** Schedules `task` after `ms`; returns what cancels it. */
export type SetTimer = (ms: number, task: () => void) => () => void;

export const realTimer: SetTimer = (ms, task) => {
  const timer = setTimeout(task, ms);
  return () => clearTimeout(timer);
};

/** A failed key is retried after up to 0.5 s, doubling to at most 5 min, for as long as the queue runs. */
export const requeueBackoff: BackoffPolicy = { baseDelayMs: 500, maxDelayMs: 5 * 60_000, maxAttempts: Number.POSITIVE_INFINITY };

export interface WorkQueueOptions<K> {
  /** Handles one key; a rejection adds it again after the backoff. */
  handle: (key: K) => Promise<void>;
  /** Told of each failure, with the wait before the key comes back. */
  onFailure?: (key: K, error: unknown, retryInMs: number) => void;
  backoff?: BackoffPolicy;
  random?: () => number;
  now?: () => number;
  setTimer?: SetTimer;
}

export interface WorkQueue<K> {
  add(key: K): void;
  /** Adds `key` after `ms` (at once when `ms` <= 0); a key already waiting keeps the earlier time. */
  addAfter(key: K, ms: number): void;
  /** Starts the worker; keys added before wait until then. */
  start(): void;
  /** Stops: the key in hand finishes (awaited), everything else waiting or queued is dropped, later adds are ignored. */
  shutDown(): Promise<void>;
  /** Resolves once no key is queued or in hand (keys waiting for their time do not count), or the queue is shut down. */
  idle(): Promise<void>;
  /** Keys queued (not waiting, not in hand). */
  readonly length: number;
}

export function workQueue<K>(options: WorkQueueOptions<K>): WorkQueue<K> {
  const now = options.now ?? Date.now;
  const setTimer = options.setTimer ?? realTimer;
  const random = options.random ?? Math.random;
  const backoff = options.backoff ?? requeueBackoff;

  const queue: K[] = [];
  /** Keys in `queue`, or handled now and to be handled again. */
  const dirty = new Set<K>();
  let inHand: { key: K; done: Promise<void> } | undefined;
  const waiting = new Map<K, { at: number; cancel: () => void }>();
  const failures = new Map<K, number>();
  let started = false;
  let shuttingDown = false;
  let idlers: Array<() => void> = [];
  const wake = () => {
    for (const resolve of idlers) resolve();
    idlers = [];
  };

  function add(key: K): void {
    if (shuttingDown || dirty.has(key)) return;
    dirty.add(key);
    // In hand: queued again when it is done.
    if (inHand?.key === key) return;
    queue.push(key);
    next();
  }

  function addAfter(key: K, ms: number): void {
    if (shuttingDown) return;
    if (ms <= 0) return add(key);
    const at = now() + ms;
    const already = waiting.get(key);
    if (already !== undefined && already.at <= at) return;
    already?.cancel();
    const cancel = setTimer(ms, () => {
      waiting.delete(key);
      add(key);
    });
    waiting.set(key, { at, cancel });
  }

  async function handle(key: K): Promise<void> {
    try {
      await options.handle(key);
      failures.delete(key);
    } catch (error) {
      const failed = failures.get(key) ?? 0;
      failures.set(key, failed + 1);
      const delay = backoffDelay(failed, backoff, random);
      options.onFailure?.(key, error, delay);
      addAfter(key, Math.max(delay, 1));
    }
  }

  /** The one worker: takes the next key when none is in hand. */
  function next(): void {
    if (!started || shuttingDown || inHand !== undefined) return;
    const key = queue.shift();
    if (key === undefined) return wake();
    dirty.delete(key);
    const done = handle(key).finally(() => {
      inHand = undefined;
      // Added again while it was handled: to the back of the queue.
      if (dirty.has(key) && !shuttingDown) queue.push(key);
      next();
    });
    inHand = { key, done };
  }

  return {
    add,
    addAfter,
    start() {
      started = true;
      next();
    },
    async shutDown() {
      shuttingDown = true;
      for (const { cancel } of waiting.values()) cancel();
      waiting.clear();
      queue.length = 0;
      dirty.clear();
      await inHand?.done;
      wake();
    },
    idle() {
      if (shuttingDown || (started && inHand === undefined && queue.length === 0)) return Promise.resolve();
      return new Promise<void>((resolve) => idlers.push(resolve));
    },
    get length() {
      return queue.length;
    },
  };
}
