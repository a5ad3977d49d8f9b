/**
 * The `--watch` work queue without Kubernetes: keys are handled one at a time, deduplicated while
 * they wait, handled again when added during their handling, retried with backoff, dropped at
 * shutdown. Time is a manual clock, so the backoff is asserted without waiting.
 */
import { describe, expect, it } from "vitest";
import { workQueue, type SetTimer, type WorkQueueOptions } from "../../job/work-queue.ts";

/** A manual clock: timers fire only when `advance` passes their time. */
function manualClock() {
  let time = 0;
  let timers: Array<{ at: number; task: () => void }> = [];
  const setTimer: SetTimer = (ms, task) => {
    const timer = { at: time + ms, task };
    timers.push(timer);
    return () => {
      timers = timers.filter((t) => t !== timer);
    };
  };
  return {
    now: () => time,
    setTimer,
    pending: () => timers.map((t) => t.at - time).sort((a, b) => a - b),
    async advance(ms: number) {
      const until = time + ms;
      for (;;) {
        const due = timers.filter((t) => t.at <= until).sort((a, b) => a.at - b.at)[0];
        if (due === undefined) break;
        timers = timers.filter((t) => t !== due);
        time = due.at;
        due.task();
        await settle();
      }
      time = until;
      await settle();
    },
  };
}

/** Lets every promise chain that can move, move. */
const settle = async () => {
  for (let i = 0; i < 20; i += 1) await Promise.resolve();
};

/** A gate a handler waits on, opened by the test. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

function recording(options: Partial<WorkQueueOptions<string>> = {}, block?: Map<string, Promise<void>>) {
  const handled: string[] = [];
  let inFlight = 0;
  let mostInFlight = 0;
  const queue = workQueue<string>({
    handle: async (keys) => {
      inFlight += 1;
      mostInFlight = Math.max(mostInFlight, inFlight);
      // A batch reads "a+b".
      const key = keys.join("+");
      handled.push(key);
      try {
        await block?.get(key);
      } finally {
        inFlight -= 1;
      }
    },
    ...options,
  });
  return { queue, handled, mostInFlight: () => mostInFlight };
}

describe("the --watch work queue", () => {
  it("handles a key added several times while it waits once", async () => {
    const { queue, handled } = recording();
    for (const key of ["team-a", "team-b", "team-a", "team-a", "team-b"]) queue.add(key);
    expect(queue.length).toBe(2);
    queue.start();
    await settle();
    expect(handled).toEqual(["team-a", "team-b"]);
  });

  it("handles one key at a time, in the order added", async () => {
    const first = gate();
    const { queue, handled, mostInFlight } = recording({}, new Map([["team-a", first.opened]]));
    queue.start();
    queue.add("team-a");
    queue.add("team-b");
    queue.add("team-c");
    await settle();
    expect(handled).toEqual(["team-a"]);
    first.open();
    await settle();
    expect(handled).toEqual(["team-a", "team-b", "team-c"]);
    expect(mostInFlight()).toBe(1);
  });

  it("handles a key added while it is handled once more afterwards, not twice at once", async () => {
    const first = gate();
    const { queue, handled, mostInFlight } = recording({}, new Map([["team-a", first.opened]]));
    queue.start();
    queue.add("team-a");
    await settle();
    // Changed again (twice) while its reconcile runs: that reconcile may have read the old object.
    queue.add("team-a");
    queue.add("team-a");
    queue.add("team-b");
    await settle();
    expect(handled).toEqual(["team-a"]);
    first.open();
    await settle();
    expect(handled).toEqual(["team-a", "team-b", "team-a"]);
    expect(mostInFlight()).toBe(1);
  });

  it("reschedules a key to a later time, dropping its earlier wait and its place in the queue", async () => {
    const clock = manualClock();
    const first = gate();
    const { queue, handled } = recording({ now: clock.now, setTimer: clock.setTimer }, new Map([["team-a", first.opened]]));
    queue.start();
    queue.addAfter("renew", 10_000);
    queue.reschedule("renew", 40_000);
    expect(clock.pending()).toEqual([40_000]);
    // Due while the worker is busy, then moved before the worker got to it: it waits for the new time.
    queue.add("team-a");
    await settle();
    await clock.advance(40_000);
    expect(queue.length).toBe(1);
    queue.reschedule("renew", 30_000);
    expect(queue.length).toBe(0);
    first.open();
    await settle();
    expect(handled).toEqual(["team-a"]);
    await clock.advance(29_999);
    expect(handled).toEqual(["team-a"]);
    await clock.advance(1);
    expect(handled).toEqual(["team-a", "renew"]);
    // An earlier time replaces a later one too, and 0 adds at once.
    queue.reschedule("renew", 50_000);
    queue.reschedule("renew", 0);
    await settle();
    expect(clock.pending()).toEqual([]);
    expect(handled).toEqual(["team-a", "renew", "renew"]);
  });

  it("adds a key after its delay, keeping the earlier time when it is added again while it waits", async () => {
    const clock = manualClock();
    const { queue, handled } = recording({ now: clock.now, setTimer: clock.setTimer });
    queue.start();
    queue.addAfter("status", 10_000);
    queue.addAfter("status", 15_000);
    queue.addAfter("heal", 300_000);
    queue.addAfter("heal", 200_000);
    expect(clock.pending()).toEqual([10_000, 200_000]);
    await clock.advance(9_999);
    expect(handled).toEqual([]);
    await clock.advance(1);
    expect(handled).toEqual(["status"]);
    await clock.advance(200_000);
    expect(handled).toEqual(["status", "heal"]);
  });

  it("retries a failing key with a backoff that doubles with each failure, and resets it after a success", async () => {
    const clock = manualClock();
    let failuresLeft = 3;
    const retries: number[] = [];
    const handled: string[] = [];
    const queue = workQueue<string>({
      handle: async (keys) => {
        handled.push(keys.join("+"));
        if (failuresLeft > 0) {
          failuresLeft -= 1;
          throw new Error("the API server answered 500");
        }
      },
      onFailure: (_key, _error, retryInMs) => retries.push(retryInMs),
      backoff: { baseDelayMs: 1000, maxDelayMs: 60_000, maxAttempts: Number.POSITIVE_INFINITY },
      // The top of the jitter range: the delays are the backoff's ceilings.
      random: () => 0.999_999,
      now: clock.now,
      setTimer: clock.setTimer,
    });
    queue.start();
    queue.add("team-a");
    await settle();
    expect(handled).toEqual(["team-a"]);
    expect(retries).toEqual([999]);
    await clock.advance(999);
    expect(handled).toHaveLength(2);
    expect(retries).toEqual([999, 1999]);
    await clock.advance(1999);
    expect(retries).toEqual([999, 1999, 3999]);
    await clock.advance(3999);
    expect(handled).toHaveLength(4);
    expect(clock.pending()).toEqual([]);

    // Succeeded: the next failure starts from the first delay again.
    failuresLeft = 1;
    queue.add("team-a");
    await settle();
    expect(retries).toEqual([999, 1999, 3999, 999]);
  });

  it("takes the queued keys that go with the next one together, each still deduplicated and handled again if added meanwhile", async () => {
    const first = gate();
    const batch = gate();
    const namespace = (key: string) => key.startsWith("ns/");
    const { queue, handled, mostInFlight } = recording(
      { together: (a, b) => namespace(a) && namespace(b) },
      new Map([
        ["status", first.opened],
        ["ns/a+ns/b+ns/c", batch.opened],
      ]),
    );
    queue.start();
    queue.add("status");
    await settle();
    // A burst while the status is written: three namespaces (one twice) and a full reconcile between them.
    for (const key of ["ns/a", "ns/b", "everything", "ns/a", "ns/c"]) queue.add(key);
    first.open();
    await settle();
    expect(handled).toEqual(["status", "ns/a+ns/b+ns/c"]);
    // ns/b changes again while the batch is handled: handled once more, after the full reconcile.
    queue.add("ns/b");
    batch.open();
    await settle();
    expect(handled).toEqual(["status", "ns/a+ns/b+ns/c", "everything", "ns/b"]);
    expect(mostInFlight()).toBe(1);
  });

  it("holds the keys added before start until then", async () => {
    const { queue, handled } = recording();
    queue.add("everything");
    await settle();
    expect(handled).toEqual([]);
    queue.start();
    await settle();
    expect(handled).toEqual(["everything"]);
  });

  it("lets the key in hand finish at shutdown and drops what is queued, waiting, or added later", async () => {
    const clock = manualClock();
    const first = gate();
    const { queue, handled } = recording({ now: clock.now, setTimer: clock.setTimer }, new Map([["team-a", first.opened]]));
    queue.start();
    queue.add("team-a");
    await settle();
    queue.add("team-b");
    queue.add("team-a");
    queue.addAfter("heal", 1000);
    let finished = false;
    const stopping = queue.shutDown().then(() => (finished = true));
    await settle();
    expect(finished).toBe(false);
    first.open();
    await stopping;
    queue.add("team-c");
    queue.addAfter("team-d", 10);
    await clock.advance(5000);
    expect(handled).toEqual(["team-a"]);
    expect(clock.pending()).toEqual([]);
  });
});
