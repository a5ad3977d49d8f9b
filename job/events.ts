/**
 * The Warning Events the refresher writes (`events.k8s.io/v1`) and how it keeps them from piling up.
 *
 * An Event is about one object: a Secret name someone else took, a ServiceAccount another manager
 * applies, and, on the configuration ConfigMap, a registry the broker refused or a run that failed.
 * Its name is derived from what it says, so one lasting problem is one Event. Repeats are folded
 * into that Event's `series` as client-go's events recorder does: the first observation creates it,
 * the second sets `series.count` to 2, later ones are counted in memory and written at most every
 * 30 minutes; a series not observed for 6 minutes is finished. An Event created by an earlier
 * process (the previous CronJob run) is continued: its count read back and raised by one.
 * The reasons are stable and listed in docs/refresher.md.
 */
import { createHash } from "node:crypto";
import pLimit from "p-limit";
import type { Logger } from "../shared/log.ts";
import type { ClusterApi, RefresherEvent } from "./cluster.ts";
import { registryLabel } from "./registry.ts";
import { runResult, statusConfigMap, type RegistryStatus, type StatusInput } from "./status.ts";

/** Every `reason` the refresher writes; tooling may match on them. */
export const eventReasons = {
  secretNameTaken: "SecretNameTaken",
  secretReplaced: "SecretReplaced",
  secretNotRecorded: "SecretNotRecorded",
  serviceAccountApplied: "ServiceAccountApplied",
  registryRefused: "RegistryRefused",
  refreshFailed: "RefreshFailed",
  writesFailed: "WritesFailed",
  configInvalid: "ConfigInvalid",
} as const;

/** client-go's heartbeat (`refreshTime`) and series end (`finishTime`). */
export const seriesHeartbeatMs = 30 * 60_000;
export const seriesFinishMs = 6 * 60_000;

/** At most this many Events are written per call; the status ConfigMap lists everything. */
export const eventsPerCall = 100;

/** An Event named after what it says and about which object: the same problem gives the same name in every process. */
export function namedEvent(event: Omit<RefresherEvent, "name">): RefresherEvent {
  // The uid is part of it: an object deleted and created again under its name gets Events of its own.
  const digest = createHash("sha256")
    .update(JSON.stringify([{ kind: event.regarding.kind, name: event.regarding.name, uid: event.regarding.uid ?? "" }, event.reason, event.note]))
    .digest("hex")
    .slice(0, 16);
  // events.k8s.io limits `note` to 1 kB.
  return { ...event, name: `acr-credential-broker.${digest}`, note: event.note.slice(0, 1000) };
}

/** What the recorder knows of one Event it wrote or found. */
export interface SeriesEntry {
  count: number;
  /** The count the API server has. */
  written: number;
  lastObservedMs: number;
  lastWrittenMs: number;
}

export type SeriesStep = { write: "create" } | { write: "series" } | { write: "none" };

/** One more observation of an Event: what to write now (client-go's `recordToSink`). */
export function observeSeries(entry: SeriesEntry | undefined, nowMs: number): { entry: SeriesEntry; step: SeriesStep } {
  if (entry === undefined) return { entry: { count: 1, written: 0, lastObservedMs: nowMs, lastWrittenMs: nowMs }, step: { write: "create" } };
  const next = { ...entry, count: entry.count + 1, lastObservedMs: nowMs };
  return { entry: next, step: entry.count === 1 ? { write: "series" } : { write: "none" } };
}

/** Between observations: write an unwritten count on the heartbeat or when the series ends; forget a finished one. */
export function heartbeat(entry: SeriesEntry, nowMs: number): { write: boolean; forget: boolean } {
  const finished = nowMs - entry.lastObservedMs >= seriesFinishMs;
  const pending = entry.count > entry.written && entry.count >= 2;
  return { write: pending && (finished || nowMs - entry.lastWrittenMs >= seriesHeartbeatMs), forget: finished };
}

/**
 * The Events of a run's outcome, on the configuration ConfigMap: one per registry the broker refused,
 * one when no credential came at all, one when writes failed. Conflicts have their own (apply.ts).
 */
export function runEvents(
  input: Pick<StatusInput, "registries" | "brokerError" | "result">,
  configMap: { namespace: string; name: string; uid?: string },
): RefresherEvent[] {
  const regarding = { kind: "ConfigMap", name: configMap.name, ...(configMap.uid === undefined ? {} : { uid: configMap.uid }) };
  const on = (reason: string, action: string, note: string) => namedEvent({ namespace: configMap.namespace, reason, action, note, regarding });
  const events: RefresherEvent[] = [];
  if (runResult(input) === "Failed" && input.brokerError !== undefined) {
    events.push(
      on(
        eventReasons.refreshFailed,
        "FetchCredentials",
        `no credential could be fetched: ${input.brokerError.code}: ${input.brokerError.message}; ConfigMap ${statusConfigMap.namespace}/${statusConfigMap.name} has the details`,
      ),
    );
  } else {
    for (const status of input.registries.filter((r): r is RegistryStatus & { error: { code: string; message: string } } => r.error !== undefined)) {
      events.push(
        on(
          eventReasons.registryRefused,
          "FetchCredentials",
          `the broker gave no credential for registry ${registryLabel(status.registry)} (Secret ${status.registry.secretName}): ${status.error.code}: ${status.error.message}`,
        ),
      );
    }
  }
  const [first] = input.result.failures;
  if (first !== undefined) {
    const namespaces = [...new Set(input.result.failures.map((failure) => failure.namespace))];
    const where = `${namespaces.slice(0, 5).join(", ")}${namespaces.length > 5 ? ` and ${namespaces.length - 5} more` : ""}`;
    events.push(
      on(
        eventReasons.writesFailed,
        "Apply",
        `writes failed in ${where} (first: ${first.kind} ${first.namespace}/${first.name}: ${first.code}); ConfigMap ${statusConfigMap.namespace}/${statusConfigMap.name} lists every failure`,
      ),
    );
  }
  return events;
}

/** Records a run's Events, looking up the ConfigMap's uid (for `kubectl describe`) only when there is one to write. */
export async function recordRunEvents(
  recorder: EventRecorder,
  cluster: ClusterApi,
  input: Pick<StatusInput, "registries" | "brokerError" | "result">,
  configMap: { namespace: string; name: string; uid?: string },
): Promise<void> {
  if (runEvents(input, configMap).length === 0) return;
  const uid = configMap.uid ?? (await cluster.readConfigMapWithAnnotations(configMap.namespace, configMap.name).catch(() => undefined))?.uid;
  await recorder.record(runEvents(input, { ...configMap, ...(uid === undefined ? {} : { uid }) }));
}

/**
 * A configuration the refresher refuses (exit 2, nothing written), told on that ConfigMap, where
 * `kubectl describe` shows it next to the data at fault. Nothing when the ConfigMap does not exist.
 */
export async function reportInvalidConfig(
  cluster: ClusterApi,
  logger: Logger,
  configMap: { namespace: string; name: string },
  problem: string,
  recorder = eventRecorder(cluster, logger),
): Promise<void> {
  const uid = (await cluster.readConfigMapWithAnnotations(configMap.namespace, configMap.name).catch(() => undefined))?.uid;
  if (uid === undefined) return;
  const event = namedEvent({
    namespace: configMap.namespace,
    reason: eventReasons.configInvalid,
    action: "LoadConfiguration",
    note: problem,
    regarding: { kind: "ConfigMap", name: configMap.name, uid },
  });
  await recorder.record([event]);
}

export interface EventRecorder {
  /** Records each observation; never throws (an Event that cannot be written is logged once per call). */
  record(events: readonly RefresherEvent[]): Promise<void>;
}

/**
 * A recorder over the cluster API with its own series memory: one per process (a CronJob run, a
 * `--watch` refresher). At most 8 writes are in flight.
 */
export function eventRecorder(cluster: ClusterApi, logger: Logger, options: { now?: () => Date } = {}): EventRecorder {
  const now = options.now ?? (() => new Date());
  const limit = pLimit(8);
  // Keyed by namespace and name: the same problem in two namespaces is two Events of the same name.
  const series = new Map<string, { event: RefresherEvent; entry: SeriesEntry }>();
  const keyOf = (event: RefresherEvent) => `${event.namespace}/${event.name}`;

  async function writeSeries(event: RefresherEvent, entry: SeriesEntry, at: Date): Promise<void> {
    await cluster.patchEventSeries(event.namespace, event.name, { count: entry.count, lastObservedTime: new Date(entry.lastObservedMs) });
    entry.written = entry.count;
    entry.lastWrittenMs = at.getTime();
  }

  async function observe(event: RefresherEvent, at: Date): Promise<void> {
    const known = series.get(keyOf(event));
    const { entry, step } = observeSeries(known?.entry, at.getTime());
    series.set(keyOf(event), { event, entry });
    if (step.write === "none") return;
    if (step.write === "series") return writeSeries(event, entry, at);
    if ((await cluster.createEvent(event, at)) === "created") {
      entry.written = 1;
      return;
    }
    // Written by an earlier process: this observation continues its series.
    entry.count = (await cluster.readEventCount(event.namespace, event.name)) + 1;
    await writeSeries(event, entry, at);
  }

  return {
    async record(events) {
      const at = now();
      let failed = false;
      const attempt = (what: RefresherEvent, task: () => Promise<void>) =>
        limit(async () => {
          try {
            await task();
          } catch (error) {
            // Forgotten, so that the next observation starts over: created anew, or continued if it exists.
            series.delete(keyOf(what));
            if (!failed) logger.warn({ namespace: what.namespace, reason: what.reason, err: error }, "event not written");
            failed = true;
          }
        });
      const due: Array<{ event: RefresherEvent; entry: SeriesEntry }> = [];
      for (const [name, value] of series) {
        const beat = heartbeat(value.entry, at.getTime());
        if (beat.write) due.push(value);
        if (beat.forget) series.delete(name);
      }
      await Promise.all(due.map(({ event, entry }) => attempt(event, () => writeSeries(event, entry, at))));
      if (events.length > eventsPerCall)
        logger.warn({ events: events.length, written: eventsPerCall }, "more Events than written at once; the status ConfigMap lists every problem");
      const unique = [...new Map(events.map((event) => [keyOf(event), event])).values()].slice(0, eventsPerCall);
      await Promise.all(unique.map((event) => attempt(event, () => observe(event, at))));
    },
  };
}
