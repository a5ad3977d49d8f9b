/**
 * The `--watch` refresher's work queue, in the manner of client-go's workqueue: what happened (a
 * namespace changed, the credentials were renewed, the heal is due) becomes a key, and one worker
 * handles the keys one at a time, so every reconcile sees the state the previous one left.
 *
 * - A key added while it waits is not added twice; added while it is being handled, it is handled
 *   once more afterwards (what changed meanwhile may have been missed).
 * - The worker takes, with the next key, every queued key `together` says goes with it: one
 *   reconcile serves a burst of namespaces with its bounded concurrency, instead of one at a time.
 * - `addAfter` waits before adding; a key already waiting keeps the earlier of the two times.
 *   `reschedule` moves a deadline instead: the key's earlier wait, or its place in the queue, is dropped.
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

export interface WorkQueueOptions<K extends string> {
  /** Handles the next key and those taken with it; a rejection adds each again after its backoff. */
  handle: (keys: readonly K[]) => Promise<void>;
  /** Whether a queued key is handled together with `first` (default: never). */
  together?: (first: K, queued: K) => boolean;
  /** Told of each failure, with the wait before the first key comes back. */
  onFailure?: (keys: readonly K[], error: unknown, retryInMs: number) => void;
  backoff?: BackoffPolicy;
  random?: () => number;
  now?: () => number;
  setTimer?: SetTimer;
}

export interface WorkQueue<K extends string> {
  add(key: K): void;
  /** Adds `key` after `ms` (at once when `ms` <= 0); a key already waiting keeps the earlier time. */
  addAfter(key: K, ms: number): void;
  /** Adds `key` after `ms` whatever was set before: its earlier wait, or its place in the queue, is dropped. */
  reschedule(key: K, ms: number): void;
  /** Starts the worker; keys added before wait until then. */
  start(): void;
  /** Stops: the key in hand finishes (awaited), everything else waiting or queued is dropped, later adds are ignored. */
  shutDown(): Promise<void>;
  /** Resolves once no key is queued or in hand (keys waiting for their time do not count), or the queue is shut down. */
  idle(): Promise<void>;
  /** Keys queued (not waiting, not in hand). */
  readonly length: number;
}

export function workQueue<K extends string>(options: WorkQueueOptions<K>): WorkQueue<K> {
  const now = options.now ?? Date.now;
  const setTimer = options.setTimer ?? realTimer;
  const random = options.random ?? Math.random;
  const backoff = options.backoff ?? requeueBackoff;

  const queue: K[] = [];
  /** Keys in `queue`, or handled now and to be handled again. */
  const dirty = new Set<K>();
  let inHand: { keys: ReadonlySet<K>; done: Promise<void> } | undefined;
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
    if (inHand?.keys.has(key) === true) return;
    queue.push(key);
    next();
  }

  function addAfter(key: K, ms: number): void {
    if (shuttingDown) return;
    if (ms <= 0) return add(key);
    const already = waiting.get(key);
    if (already !== undefined && already.at <= now() + ms) return;
    wait(key, ms);
  }

  function reschedule(key: K, ms: number): void {
    if (shuttingDown) return;
    // Queued (or to be handled again once in hand): that was for the old deadline.
    if (dirty.delete(key) && inHand?.keys.has(key) !== true) {
      const index = queue.indexOf(key);
      if (index >= 0) queue.splice(index, 1);
    }
    if (ms <= 0) {
      waiting.get(key)?.cancel();
      waiting.delete(key);
      return add(key);
    }
    wait(key, ms);
  }

  /** Adds `key` after `ms`, in place of any wait it had. */
  function wait(key: K, ms: number): void {
    const at = now() + ms;
    waiting.get(key)?.cancel();
    const cancel = setTimer(ms, () => {
      waiting.delete(key);
      add(key);
    });
    waiting.set(key, { at, cancel });
  }

  async function handle(keys: readonly K[]): Promise<void> {
    try {
      await options.handle(keys);
      for (const key of keys) failures.delete(key);
    } catch (error) {
      const delays = keys.map((key) => {
        const failed = failures.get(key) ?? 0;
        failures.set(key, failed + 1);
        return backoffDelay(failed, backoff, random);
      });
      options.onFailure?.(keys, error, delays[0] ?? 0);
      keys.forEach((key, index) => addAfter(key, Math.max(delays[index] ?? 0, 1)));
    }
  }

  /** The next key, and the queued keys that go with it. */
  function take(): K[] | undefined {
    const first = queue.shift();
    if (first === undefined) return undefined;
    const keys: K[] = [first];
    if (options.together !== undefined) {
      for (let index = 0; index < queue.length;) {
        if (options.together(first, queue[index] as K)) keys.push(...queue.splice(index, 1));
        else index += 1;
      }
    }
    return keys;
  }

  /** The one worker: takes the next keys when none are in hand. */
  function next(): void {
    if (!started || shuttingDown || inHand !== undefined) return;
    const keys = take();
    if (keys === undefined) return wake();
    for (const key of keys) dirty.delete(key);
    const done = handle(keys).finally(() => {
      inHand = undefined;
      // Added again while they were handled: to the back of the queue.
      if (!shuttingDown) for (const key of keys) if (dirty.has(key)) queue.push(key);
      next();
    });
    inHand = { keys: new Set(keys), done };
  }

  return {
    add,
    addAfter,
    reschedule,
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
