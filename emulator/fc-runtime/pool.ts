/**
 * Function Compute 3.0's scheduling rules for one function, as pure bookkeeping on model time (epoch
 * ms): a request takes an instance with spare capacity (a built-in runtime has a capacity of one,
 * a custom runtime `instanceConcurrency`), else a new instance (a cold start) while fewer than
 * `maxInstances` live, else it is throttled. An instance idle for `idleMs` is reclaimed, except that
 * `minInstances` stay (FC 3.0's provisioned instances / scaling `minInstances`). Billing is
 * per instance: the union of the intervals in which it served at least one request, cold start
 * included (on-demand instances are not billed while idle).
 *
 * A request whose end is not known yet counts as running at every later time, so the same rules
 * serve a real-time trigger and a simulation that only learns a request's duration once it ran.
 */

export interface PoolLimits {
  /** Requests one instance serves at once: 1 for built-in runtimes. */
  concurrency: number;
  maxInstances: number;
  idleMs: number;
  /** Instances never reclaimed once started (provisioned); default 0. */
  minInstances?: number;
}

export interface Span {
  start: number;
  /** Infinity while the request runs. */
  end: number;
}

export interface PoolInstance {
  readonly id: number;
  readonly startedAt: number;
  /** Requests that may still be running at the latest time asked about. */
  readonly active: Span[];
  /** Requests that ended; kept for billing. */
  readonly done: Span[];
  /** The latest end among `done`. */
  endedAt: number;
}

export interface PoolCounters {
  invocations: number;
  coldStarts: number;
  throttled: number;
  liveInstances: number;
  peakInstances: number;
  /** Billed instance time in seconds (requests still running count up to `at`). */
  instanceSeconds: number;
}

export type Acquired = { instance: PoolInstance; cold: boolean; request: Span } | { throttled: true };

/** Moves the requests that ended by `at` to `done` (times asked about never go back). */
function settle(instance: PoolInstance, at: number): void {
  for (let i = instance.active.length - 1; i >= 0; i -= 1) {
    const span = instance.active[i]!;
    if (span.end <= at) {
      instance.active.splice(i, 1);
      instance.done.push(span);
      instance.endedAt = Math.max(instance.endedAt, span.end);
    }
  }
}
const running = (instance: PoolInstance, at: number) => instance.active.filter((r) => r.start <= at && r.end > at).length;
const lastEnd = (instance: PoolInstance) => instance.active.reduce((latest, r) => Math.max(latest, r.end), instance.endedAt);
const spans = (instance: PoolInstance) => [...instance.done, ...instance.active];

/** Sum of the union of the intervals, each clipped at `at`. */
function busySeconds(requests: readonly Span[], at: number): number {
  const clipped = requests
    .map((r) => [r.start, Math.min(r.end, at)] as const)
    .filter(([start, end]) => end > start)
    .sort((x, y) => x[0] - y[0]);
  let total = 0;
  let from = Number.NEGATIVE_INFINITY;
  let to = Number.NEGATIVE_INFINITY;
  for (const [start, end] of clipped) {
    if (start > to) {
      if (to > from) total += to - from;
      from = start;
      to = end;
    } else to = Math.max(to, end);
  }
  if (to > from) total += to - from;
  return total / 1000;
}

export class InstancePool {
  readonly #limits: PoolLimits;
  readonly #live: PoolInstance[] = [];
  #nextId = 1;
  #reclaimedSeconds = 0;
  #counters = { invocations: 0, coldStarts: 0, throttled: 0, peakInstances: 0 };

  constructor(limits: PoolLimits) {
    if (limits.concurrency < 1 || limits.maxInstances < 1) throw new Error("concurrency and maxInstances must be at least 1");
    if ((limits.minInstances ?? 0) < 0 || (limits.minInstances ?? 0) > limits.maxInstances) throw new Error("minInstances must be between 0 and maxInstances");
    this.#limits = limits;
  }

  /** Instances idle for at least `idleMs` at `at`: removed from the pool and returned, for their processes to be stopped. */
  reclaim(at: number): PoolInstance[] {
    for (const instance of this.#live) settle(instance, at);
    // The instances kept are the most recently used, as the others would be reclaimed first anyway.
    const keep = Math.max(0, this.#limits.minInstances ?? 0);
    const idle = this.#live
      .filter((instance) => instance.active.length === 0 && lastEnd(instance) + this.#limits.idleMs <= at)
      .sort((a, b) => lastEnd(a) - lastEnd(b))
      .slice(0, Math.max(0, this.#live.length - keep));
    for (const instance of idle) {
      this.#live.splice(this.#live.indexOf(instance), 1);
      this.#reclaimedSeconds += busySeconds(spans(instance), Number.POSITIVE_INFINITY);
    }
    return idle;
  }

  /**
   * Places a request arriving at `at`: on the instance with spare capacity that finished a request
   * most recently (so surplus instances go idle and are reclaimed), else on a new instance. Call
   * `reclaim(at)` first: an instance past its idle time is gone, not available.
   */
  acquire(at: number): Acquired {
    for (const instance of this.#live) settle(instance, at);
    const candidates = this.#live.filter((instance) => running(instance, at) < this.#limits.concurrency);
    let instance = candidates.sort((a, b) => lastEnd(b) - lastEnd(a))[0];
    let cold = false;
    if (instance === undefined) {
      if (this.#live.length >= this.#limits.maxInstances) {
        this.#counters.throttled += 1;
        return { throttled: true };
      }
      instance = { id: this.#nextId++, startedAt: at, active: [], done: [], endedAt: at };
      this.#live.push(instance);
      cold = true;
      this.#counters.coldStarts += 1;
      this.#counters.peakInstances = Math.max(this.#counters.peakInstances, this.#live.length);
    }
    const request: Span = { start: at, end: Number.POSITIVE_INFINITY };
    instance.active.push(request);
    this.#counters.invocations += 1;
    return { instance, cold, request };
  }

  /** Records when a request placed by `acquire` ended (model time). */
  finish(request: Span, at: number): void {
    request.end = Math.max(request.start, at);
  }

  /** Drops an instance whose process failed to start or died: it serves nothing more. */
  discard(instance: PoolInstance): void {
    const index = this.#live.indexOf(instance);
    if (index === -1) return;
    this.#live.splice(index, 1);
    this.#reclaimedSeconds += busySeconds(spans(instance), Number.POSITIVE_INFINITY);
  }

  get live(): readonly PoolInstance[] {
    return this.#live;
  }

  counters(at: number): PoolCounters {
    const liveSeconds = this.#live.reduce((sum, instance) => sum + busySeconds(spans(instance), at), 0);
    return { ...this.#counters, liveInstances: this.#live.length, instanceSeconds: this.#reclaimedSeconds + liveSeconds };
  }
}
