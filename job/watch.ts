/**
 * `--watch`: a long-running refresher. Watches on namespaces and ServiceAccounts serve a new
 * namespace or ServiceAccount within moments of its creation, from credentials held in memory; the
 * credentials themselves are renewed on a timer set from their expiry minus the threshold, not on
 * a fixed period. The configuration ConfigMap is watched (a change, or a new resync annotation,
 * applies at once), and so are the kubelet's Events about missing pull Secrets (a Secret deleted by
 * hand is written again within moments of a pod needing it); every Secret is also re-applied on a
 * heal interval. Every watch reconnects with jittered backoff for as long as the watcher runs, and
 * the watcher keeps the process alive until it is stopped.
 *
 * What happens becomes a key of one work queue (work-queue.ts) whose single worker runs the reconcile
 * both modes share (reconcile.ts); asking the broker runs beside it, and its answer adds a key.
 */
import {
  CoreV1Api,
  type CoreV1Event,
  type KubeConfig,
  type KubernetesObject,
  type ListWatch,
  type V1ConfigMap,
  type V1Namespace,
  type V1ServiceAccount,
} from "@kubernetes/client-node";
import { maxMinValiditySeconds } from "../shared/broker-api.ts";
import { AcrCredentialError } from "../shared/errors.ts";
import { backoffDelay, type BackoffPolicy } from "../shared/retry.ts";
import type { ApplyResult } from "./apply.ts";
import type { BrokerRetry } from "./broker-client.ts";
import { resyncAnnotation } from "./broker-need.ts";
import { formatDuration } from "./duration.ts";
import { namespaceInfo, pullSecretEvent, serviceAccountInfo } from "./cluster.ts";
import type { RefresherConfig } from "./config.ts";
import { planSummary } from "./plan.ts";
import { missingPullSecrets, missingPullSecretSelector } from "./pull-secret-events.ts";
import { readState, reconcile, Tally, writeStatus, type ReconcileInput, type ReconcileIo, type StatusReport } from "./reconcile.ts";
import { configFromData, defaultConfigMap, defaultIntervalSeconds, type ConfigMapRef, type RunDependencies } from "./run.ts";
import { fetchCredentials, type FetchedCredentials } from "./fetch-credentials.ts";
import { eventRecorder, reportInvalidConfig } from "./events.ts";
import { clusterIdentity, spreadDelayMs } from "./spread.ts";
import type { RefresherState } from "./state.ts";
import { brokerRetryingKey, brokerRetryingStatus, type StatusInput } from "./status.ts";
import { workQueue } from "./work-queue.ts";
import { answered, defaultRequestTimeoutMs, httpStatusOf, informer, paginated } from "./informers.ts";

/** What a run needs, plus the kubeconfig the informers watch with. */
export interface WatchDependencies extends RunDependencies {
  kubeConfig: KubeConfig;
  /** Told every status the watcher reports (the metrics read it). */
  observeStatus?: (input: StatusInput) => void;
}

export interface WatchOptions {
  configMap?: ConfigMapRef;
  brokerUrl?: string;
  concurrency?: number;
  /** How often every Secret is applied again, so that one deleted by hand comes back; 0 turns it off. Default 5 min. */
  healIntervalMs?: number;
  /** Backoff of a watch that lost its API server: full jitter from 0.5 s up to 30 s, for as long as the watcher runs. */
  reconnect?: BackoffPolicy;
  /** How long a watch request or a list page may go unanswered before it is retried (default 30 s). */
  requestTimeoutMs?: number;
  /** How long one broker call is retried before the renewal timer takes over (default 2 min). */
  brokerCallBudgetMs?: number;
  /** Told after every reconcile with its result: what metrics read. */
  onReconcile?: (result: ReconcileResult) => void;
  random?: () => number;
  /** Quiet time after an event before the affected namespaces are reconciled (events come in bursts). */
  debounceMs?: number;
  /** Minimum spacing of status ConfigMap writes. */
  statusIntervalMs?: number;
  /** Overrides the ConfigMap's `spread-window`: renewals wait this cluster's delay within it. */
  spreadWindowSeconds?: number;
}

/** What one reconcile did: the plan's counts and the apply's result (the status is built from these). */
export interface ReconcileResult {
  scope: "all" | string[];
  at: Date;
  plan: ReturnType<typeof planSummary>;
  result: ApplyResult;
}

/** The watcher's health, for probes and metrics: whether every watch is connected, when it last reconciled. */
export interface WatchHealth {
  watchConnected: boolean;
  watches: Record<string, boolean>;
  lastReconcileAt?: Date;
  brokerRetrying: boolean;
}

export interface Watcher {
  /** Resolves after the initial full reconcile. */
  ready: Promise<void>;
  stop(): Promise<void>;
  health(): WatchHealth;
}

/**
 * What the work queue holds: one namespace to reconcile, every namespace, every namespace with every
 * Secret applied again (`resync` after a start or a resync renewal, `heal` on its interval), the
 * status to write, or the credentials to renew (which starts the broker call beside the queue; its
 * answer adds `everything` or `resync`).
 */
type WatchKey = "everything" | "resync" | "heal" | "status" | "renew" | `namespace/${string}`;
const namespacePrefix = "namespace/";
const namespaceKey = (namespace: string): WatchKey => `${namespacePrefix}${namespace}`;
const isNamespaceKey = (key: WatchKey): key is `namespace/${string}` => key.startsWith(namespacePrefix);

/**
 * What the watcher holds between reconciles. Only the queue's worker writes `state` and `tally`;
 * the renewal replaces `credentials`, the configuration watch `config`. A reconcile reads them once,
 * when it starts, so a change meanwhile is for the next one.
 */
interface WatchState {
  config: RefresherConfig;
  /** The configuration's data as last seen, to tell a change from the same object delivered again. */
  configText: string;
  resyncSeen: string | undefined;
  state: RefresherState;
  credentials: FetchedCredentials;
  /** What the status reports of every reconcile since the start. */
  tally: Tally;
  /** Secrets the kubelet could not find, by namespace: applied again by the next reconcile of that namespace. */
  reapply: Map<string, Set<string>>;
  /** Renewals in a row that left some registry without a credential (the renewal backs off). */
  brokerFailures: number;
  nextRefreshAt?: Date;
  brokerRetrying?: { since: Date; retry: BrokerRetry; nextAttemptAt: Date };
  lastReconcileAt?: Date;
  lastStatusAt: number;
}

/** How often every Secret is applied again by default. */
const defaultHealIntervalMs = 300_000;

/** Reconnects: the first after up to 0.5 s, then doubling to at most 30 s, never giving up. */
export const reconnectBackoff: BackoffPolicy = { baseDelayMs: 500, maxDelayMs: 30_000, maxAttempts: Number.POSITIVE_INFINITY };

/** Bounds of the credential renewal timer: never busier than every 30 s, never idle for more than an hour. */
const minRefreshMs = 30_000;
const maxRefreshMs = 3_600_000;

/**
 * When to ask the broker again: the threshold before the earliest expiry, then this cluster's spread
 * delay (at most half the threshold, so the credential is always renewed well before it lapses);
 * while some registry has no credential, sooner, backing off from 30 s to 5 min; always between 30 s
 * and an hour. The delay comes after the threshold, not before it: by then the broker's cache renews
 * the credential for an unforced request, which the whole fleet shares.
 */
export function refreshDelayMs(input: {
  complete: boolean;
  earliestExpiry: Date | undefined;
  thresholdSeconds: number;
  failures: number;
  now: Date;
  spreadMs?: number;
}): number {
  let wait: number;
  if (!input.complete) {
    wait = Math.min(minRefreshMs * 2 ** Math.min(Math.max(input.failures - 1, 0), 4), 5 * 60_000);
  } else {
    const expiry = input.earliestExpiry?.getTime() ?? input.now.getTime() + maxRefreshMs;
    wait = expiry - input.thresholdSeconds * 1000 + Math.min(input.spreadMs ?? 0, (input.thresholdSeconds * 1000) / 2) - input.now.getTime();
  }
  return Math.min(Math.max(wait, minRefreshMs), maxRefreshMs);
}

export function startWatch(deps: WatchDependencies, options: WatchOptions = {}): Watcher {
  const { cluster, logger } = deps;
  const now = deps.now ?? (() => new Date());
  const random = options.random ?? Math.random;
  const configMap = options.configMap ?? defaultConfigMap;
  const core = deps.kubeConfig.makeApiClient(CoreV1Api);
  const timeoutMs = options.requestTimeoutMs ?? defaultRequestTimeoutMs;
  const namespaces = informer<V1Namespace>(
    deps.kubeConfig,
    timeoutMs,
    "/api/v1/namespaces",
    paginated("namespaces", timeoutMs, (_continue) => core.listNamespace({ limit: 500, _continue })),
  );
  const accounts = informer<V1ServiceAccount>(
    deps.kubeConfig,
    timeoutMs,
    "/api/v1/serviceaccounts",
    paginated("ServiceAccounts", timeoutMs, (_continue) => core.listServiceAccountForAllNamespaces({ limit: 500, _continue })),
  );
  // The configuration alone, by name: RBAC grants list and watch on that one ConfigMap only.
  const configSelector = `metadata.name=${configMap.name}`;
  const configMaps = informer<V1ConfigMap>(
    deps.kubeConfig,
    timeoutMs,
    `/api/v1/namespaces/${configMap.namespace}/configmaps`,
    () => answered(core.listNamespacedConfigMap({ namespace: configMap.namespace, fieldSelector: configSelector }), "the configuration", timeoutMs),
    configSelector,
  );
  const kubeletEvents = informer<CoreV1Event>(
    deps.kubeConfig,
    timeoutMs,
    "/api/v1/events",
    paginated("kubelet Events", timeoutMs, (_continue) => core.listEventForAllNamespaces({ fieldSelector: missingPullSecretSelector, limit: 500, _continue })),
    missingPullSecretSelector,
  );

  let stopped = false;
  const since = now();
  const shutdown = new AbortController();
  /** Whether each watch is connected (a watch RBAC does not allow is left out): the health. */
  const connected: Record<string, boolean> = {};
  /** Reconnect backoffs; every other wait is a delayed key of the queue. */
  const timers = new Set<NodeJS.Timeout>();
  // Timers are not unref'd and this handle lives as long as the watcher: with every watch closed
  // (its API server restarting) and no timer due, the process must still wait, not end.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  // One for the watcher's life: an Event observed again is counted in its series, not re-sent.
  const io: ReconcileIo = { cluster, logger, events: eventRecorder(cluster, logger, { now }), now, concurrency: options.concurrency ?? 16 };
  const statusIntervalMs = options.statusIntervalMs ?? 10_000;
  /** Set once the configuration is read; from then on, changed only by the queue's worker and the renewal. */
  let live: WatchState | undefined;
  /** The renewal in flight, and whether another was asked for meanwhile. */
  const renewal: { inFlight?: { done: Promise<void>; abort: AbortController }; again?: { resync: boolean } } = {};

  const spreadWindowMs = (config: RefresherConfig) => (options.spreadWindowSeconds ?? config.spreadWindowSeconds) * 1000;
  const spreadMs = (config: RefresherConfig) => spreadDelayMs(clusterIdentity(namespaces.list().map(namespaceInfo)), spreadWindowMs(config));

  const later = (ms: number, task: () => void): NodeJS.Timeout | undefined => {
    if (stopped) return undefined;
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (!stopped) task();
    }, ms);
    timers.add(timer);
    return timer;
  };

  const queue = workQueue<WatchKey>({
    handle: (keys) => handle(keys),
    // Namespaces that changed at about the same time are reconciled as one scope.
    together: (first, queued) => isNamespaceKey(first) && isNamespaceKey(queued),
    onFailure: (keys, error, retryInMs) => logger.error({ keys: keys.slice(0, 20), count: keys.length, err: error, retryInMs }, "reconcile failed"),
    random,
  });

  /** How the status reads in watch mode: since when it watches, when it renews, whether the broker is being retried. */
  const statusReport: StatusReport = {
    mode: "watch",
    since,
    configMap,
    extra: () => {
      const { config, nextRefreshAt, brokerRetrying } = live!;
      return {
        since: since.toISOString(),
        ...(nextRefreshAt === undefined ? {} : { "next-broker-call": nextRefreshAt.toISOString() }),
        "spread-delay": `${formatDuration(spreadMs(config))} (window ${formatDuration(spreadWindowMs(config))})`,
        ...(brokerRetrying === undefined ? {} : { [brokerRetryingKey]: brokerRetryingStatus(brokerRetrying) }),
      };
    },
    observe: (input) => {
      live!.lastStatusAt = Date.now();
      deps.observeStatus?.(input);
    },
  };
  const statusSubject = (w: WatchState) => ({
    config: w.config,
    credentials: w.credentials,
    namespaces: namespaces.list().map(namespaceInfo),
    state: w.state,
    tally: w.tally,
  });

  /** What the worker does with a key (or namespace keys taken together); one at a time, so each plan sees the state the previous reconcile left. */
  async function handle(keys: readonly WatchKey[]): Promise<void> {
    const w = live!;
    const [key] = keys;
    if (key === "status") return void (await writeStatus(io, statusSubject(w), statusReport));
    if (key === "everything") return reconcileNow(w, undefined);
    if (key === "resync") return reconcileNow(w, undefined, { resync: true });
    if (key === "renew") return requestRefresh();
    if (key === "heal") {
      queue.addAfter("heal", options.healIntervalMs ?? defaultHealIntervalMs);
      return reconcileNow(w, undefined, { resync: true });
    }
    const scope = new Set(keys.filter(isNamespaceKey).map((namespaceKey) => namespaceKey.slice(namespacePrefix.length)));
    const again = new Map([...w.reapply].filter(([namespace]) => scope.has(namespace)));
    for (const namespace of again.keys()) w.reapply.delete(namespace);
    try {
      await reconcileNow(w, scope, again.size > 0 ? { reapply: again } : {});
    } catch (error) {
      // Requeued: the Secrets the kubelet missed are still to be written then.
      for (const [namespace, secrets] of again) w.reapply.set(namespace, new Set([...secrets, ...(w.reapply.get(namespace) ?? [])]));
      throw error;
    }
  }

  /**
   * One reconcile from the watches' caches and the credentials in hand; `scope` limits it to
   * namespaces, `resync` applies every Secret again (the heal), `reapply` the ones the kubelet found
   * missing. The status is written with it when the last write is old enough, else a little later.
   */
  async function reconcileNow(
    w: WatchState,
    scope: ReadonlySet<string> | undefined,
    how: { resync?: boolean; reapply?: ReadonlyMap<string, ReadonlySet<string>> } = {},
  ): Promise<void> {
    const statusDue = Date.now() - w.lastStatusAt >= statusIntervalMs;
    const { config, credentials, state, tally } = w;
    const listed = { namespaces: namespaces.list().map(namespaceInfo), serviceAccounts: accounts.list().map(serviceAccountInfo) };
    const input: ReconcileInput = { config, credentials, state, ...listed, ...(scope === undefined ? {} : { scope }), ...how };
    const done = await reconcile(io, input, { tally, ...(statusDue ? { status: statusReport } : {}) });
    if (done === undefined) return;
    w.state = done.state;
    w.lastReconcileAt = now();
    const summary = planSummary(done.plan);
    const reconciled: ReconcileResult = { scope: scope === undefined ? "all" : [...scope], at: w.lastReconcileAt, plan: summary, result: done.result };
    logger.info({ scope: reconciled.scope, ...(how.resync === true ? { resync: true } : {}), ...summary, ...done.result.counts }, "reconciled");
    options.onReconcile?.(reconciled);
    if (!statusDue) scheduleStatus();
  }

  function scheduleStatus(): void {
    const w = live;
    if (w === undefined) return;
    queue.addAfter("status", w.lastStatusAt + statusIntervalMs - Date.now());
  }

  /** Sets the renewal timer; `failed`: the last attempt could not even be made, so it is retried as a failure. */
  function scheduleRefresh(failed = false): void {
    const w = live!;
    const spread = spreadMs(w.config);
    const complete = !failed && w.credentials.brokerError === undefined && w.credentials.secrets.size === w.config.registries.length;
    const delay = refreshDelayMs({
      complete,
      earliestExpiry: w.credentials.earliestExpiry,
      thresholdSeconds: w.config.expiringThresholdSeconds,
      failures: w.brokerFailures,
      now: now(),
      spreadMs: spread,
    });
    // Retries after a failure are jittered (half to all of the delay), so a fleet that failed together does not retry together.
    const wait = complete ? delay : Math.max(minRefreshMs, Math.round(delay / 2 + (random() * delay) / 2));
    w.nextRefreshAt = new Date(now().getTime() + wait);
    if (w.brokerRetrying !== undefined) w.brokerRetrying = { ...w.brokerRetrying, nextAttemptAt: w.nextRefreshAt };
    logger.info({ nextRefreshAt: w.nextRefreshAt.toISOString(), spreadDelayMs: spread }, "next credential refresh scheduled");
    // The renewal's deadline moves (later after an answer, earlier after a failure): set, not kept.
    queue.reschedule("renew", wait);
  }

  /**
   * Asks the broker for the configuration in force, retrying a throttled or unavailable broker
   * with jittered backoff (the status says so meanwhile); outside the work queue, so new
   * namespaces are served from the credentials in hand while it waits.
   */
  async function askBroker(forConfig: RefresherConfig, budgetMs: number, signal: AbortSignal, how: { force?: boolean } = {}): Promise<FetchedCredentials> {
    const w = live!;
    const onRetry = (retry: BrokerRetry) => {
      w.brokerRetrying = { since: w.brokerRetrying?.since ?? now(), retry, nextAttemptAt: new Date(now().getTime() + retry.delayMs) };
      scheduleStatus();
    };
    // As a CronJob run does: a renewal asks for credentials that outlast the threshold by one default
    // schedule interval, so it shares the broker's one refresh with the rest of the fleet (decision 007);
    // the resync annotation forces.
    const minValiditySeconds = Math.min(maxMinValiditySeconds, forConfig.expiringThresholdSeconds + defaultIntervalSeconds);
    const answer = await fetchCredentials(forConfig, deps.broker(forConfig.brokerUrl), logger, now(), {
      deadlineAt: Date.now() + budgetMs,
      onRetry,
      signal,
      minValiditySeconds,
      force: how.force === true,
    });
    // Still failing after the budget: the renewal timer retries, and the status keeps saying so.
    if (answer.brokerError === undefined) w.brokerRetrying = undefined;
    return answer;
  }

  /** Takes the broker's answer as the credentials in hand, and counts a renewal that left a registry without one. */
  function renewed(w: WatchState, answer: FetchedCredentials, failuresBefore: number): void {
    w.credentials = answer;
    w.brokerFailures = answer.secrets.size === w.config.registries.length ? 0 : failuresBefore + 1;
  }

  /**
   * Fetches credentials (one broker call for all namespaces), then has everything reconciled with
   * them. Requests made while one is under way are merged into one more after it; a configuration
   * change (`restart`) abandons the one under way, which asked for the previous configuration.
   */
  function requestRefresh(how: { resync?: boolean; restart?: boolean } = {}): void {
    if (stopped) return;
    if (renewal.inFlight !== undefined) {
      renewal.again = { resync: (renewal.again?.resync ?? false) || how.resync === true };
      if (how.restart === true) renewal.inFlight.abort.abort();
      return;
    }
    const w = live!;
    const abort = new AbortController();
    const signal = AbortSignal.any([abort.signal, shutdown.signal]);
    const done = (async () => {
      const answer = await askBroker(w.config, options.brokerCallBudgetMs ?? 120_000, signal, { force: how.resync === true });
      if (signal.aborted) return;
      renewed(w, answer, w.brokerFailures);
      queue.add(how.resync === true ? "resync" : "everything");
      // Whatever the reconcile meets, renewals go on.
      scheduleRefresh();
    })()
      .catch((error: unknown) => {
        // E.g. the projected token unreadable for a moment: try again later, never stop renewing.
        logger.error({ err: error }, "credential refresh failed; retrying later");
        w.brokerFailures += 1;
        if (!stopped) scheduleRefresh(true);
      })
      .finally(() => {
        renewal.inFlight = undefined;
        const again = renewal.again;
        renewal.again = undefined;
        if (again !== undefined) requestRefresh(again);
      });
    renewal.inFlight = { done, abort };
  }

  /** The configuration ConfigMap as watched: a change of its data refreshes everything, a new resync annotation too. */
  function configurationSeen(object: V1ConfigMap): void {
    const w = live!;
    const data = object.data ?? {};
    const text = JSON.stringify(data);
    const resyncValue = object.metadata?.annotations?.[resyncAnnotation];
    const resync = resyncValue !== undefined && resyncValue !== "" && resyncValue !== w.resyncSeen;
    w.resyncSeen = resyncValue;
    if (text !== w.configText) {
      w.configText = text;
      let next: RefresherConfig;
      try {
        next = configFromData(data, configMap, logger, options.brokerUrl);
      } catch (error) {
        logger.error({ err: error }, "configuration not applied; keeping the previous one until it is fixed");
        if (error instanceof AcrCredentialError && error.code === "ConfigInvalid")
          void reportInvalidConfig(cluster, logger, configMap, error.message, io.events);
        return;
      }
      logger.info(
        { configMap: `${configMap.namespace}/${configMap.name}`, ...(resync ? { resync: resyncValue } : {}) },
        "configuration changed; refreshing everything",
      );
      // Plans made from now on use it; the one under way, if any, was made before the change.
      w.config = next;
      requestRefresh({ restart: true, resync });
    } else if (resync) {
      logger.info({ annotation: resyncAnnotation, value: resyncValue }, "resync asked for; asking the broker and applying every Secret again");
      requestRefresh({ resync: true });
    }
  }

  /** A kubelet Event naming the refresher's Secret as missing: write it again in that namespace. */
  function pullSecretMissing(object: CoreV1Event): void {
    const w = live!;
    const event = pullSecretEvent(object);
    // Events from before the start were answered by the first reconcile, which applied every Secret.
    const missing = missingPullSecrets(
      [event],
      w.config.registries.map((registry) => registry.secretName),
      since,
    );
    for (const [namespace, secrets] of missing) {
      logger.warn({ namespace, secrets: [...secrets] }, "the kubelet could not find the refresher's Secret; writing it again");
      const names = w.reapply.get(namespace) ?? new Set<string>();
      for (const secret of secrets) names.add(secret);
      w.reapply.set(namespace, names);
      changed(namespace);
    }
  }

  /** Something in a namespace changed: reconcile it after the quiet time (events come in bursts). */
  function changed(namespace: string | undefined): void {
    if (namespace === undefined || namespace === "" || stopped) return;
    queue.addAfter(namespaceKey(namespace), options.debounceMs ?? 150);
  }

  /**
   * Keeps one watch running: after an error (its API server gone, the network lost) it starts it
   * again after a jittered backoff, for as long as the watcher runs; once back, it resumes from the
   * last resource version (or lists again) and `reconnected` runs. A watch the refresher's RBAC
   * does not allow (`optional`) is given up with one line instead.
   */
  function supervise(name: string, watch: ListWatch<KubernetesObject>, reconnected: () => void, optional?: string): () => Promise<void> {
    let failures = 0;
    let failed = false;
    const start = async (): Promise<void> => {
      failed = false;
      await watch.start();
      // Stopped while this (re)start was listing: the watch it just opened must not outlive the watcher.
      if (stopped) return void (await watch.stop());
      if (failed) return;
      connected[name] = true;
      if (failures > 0) {
        logger.info({ watch: name, attempts: failures }, "watch reconnected");
        reconnected();
      }
      failures = 0;
    };
    watch.on("error", (error: unknown) => {
      failed = true;
      if (stopped) return;
      if (optional !== undefined && httpStatusOf(error) === 403) {
        delete connected[name];
        logger.warn({ watch: name, err: error }, optional);
        return;
      }
      connected[name] = false;
      const delay = backoffDelay(failures, options.reconnect ?? reconnectBackoff, random);
      failures += 1;
      logger.warn({ watch: name, err: error, attempt: failures, retryInMs: delay }, "watch interrupted; reconnecting");
      later(delay, () => void start().catch((e: unknown) => logger.error({ watch: name, err: e }, "watch restart failed")));
    });
    return start;
  }

  const everything = () => queue.add("everything");
  const startNamespaces = supervise("namespaces", namespaces as ListWatch<KubernetesObject>, everything);
  const startAccounts = supervise("serviceaccounts", accounts as ListWatch<KubernetesObject>, everything);
  const startConfig = supervise("configuration", configMaps as ListWatch<KubernetesObject>, () => undefined);
  const startEvents = supervise(
    "events",
    kubeletEvents as ListWatch<KubernetesObject>,
    () => undefined,
    "kubelet Events not watched (no list/watch on events in the refresher's RBAC, job/deploy/base/rbac.yaml): a Secret deleted by hand comes back at the next heal instead",
  );

  const ready = (async () => {
    const initial = await cluster.readConfigMapWithAnnotations(configMap.namespace, configMap.name);
    const config = configFromData(initial?.data, configMap, logger, options.brokerUrl);
    live = {
      config,
      configText: JSON.stringify(initial?.data ?? {}),
      resyncSeen: initial?.annotations[resyncAnnotation],
      state: await readState(cluster),
      // Until the broker first answers (it may be retried meanwhile, and the status says so): no credential.
      credentials: { secrets: new Map(), registries: config.registries.map((registry) => ({ registry })) },
      tally: new Tally(),
      reapply: new Map(),
      brokerFailures: 0,
      lastStatusAt: 0,
    };
    // From here the status may be written (while the broker is retried); reconciles wait for the watches.
    queue.start();
    renewed(live, await askBroker(config, Math.min(options.brokerCallBudgetMs ?? 120_000, 30_000), shutdown.signal), 0);
    // Stopped while it started (SIGTERM during the first broker call): start no watch.
    if (stopped) return;

    await startNamespaces();
    await startAccounts();
    // Registered after the initial lists: those objects are served by the full reconcile below.
    namespaces.on("add", (ns) => changed(ns.metadata?.name));
    namespaces.on("update", (ns) => changed(ns.metadata?.name));
    accounts.on("add", (sa) => changed(sa.metadata?.namespace));
    accounts.on("update", (sa) => changed(sa.metadata?.namespace));
    configMaps.on("add", configurationSeen);
    configMaps.on("update", configurationSeen);
    configMaps.on("delete", () =>
      logger.error(
        { configMap: `${configMap.namespace}/${configMap.name}` },
        "configuration ConfigMap deleted; keeping the previous configuration until it is created again",
      ),
    );
    kubeletEvents.on("add", pullSecretMissing);
    kubeletEvents.on("update", pullSecretMissing);
    await startConfig();
    await startEvents();

    // Before the first reconcile, whose status says when the next renewal is due.
    scheduleRefresh();
    // The first reconcile applies every Secret: whatever was deleted while no refresher ran comes back.
    queue.add("resync");
    await queue.idle();
    if (stopped) return;
    const healEvery = options.healIntervalMs ?? defaultHealIntervalMs;
    if (healEvery > 0) queue.addAfter("heal", healEvery);
    logger.info(
      { namespaces: namespaces.list().length, serviceAccounts: accounts.list().length },
      "watching namespaces, ServiceAccounts, the configuration and kubelet Events",
    );
  })();

  return {
    ready,
    health: () => {
      const watches = { ...connected };
      return {
        watchConnected: Object.values(watches).every(Boolean),
        watches,
        ...(live?.lastReconcileAt === undefined ? {} : { lastReconcileAt: live.lastReconcileAt }),
        brokerRetrying: live?.brokerRetrying !== undefined,
      };
    },
    async stop() {
      stopped = true;
      // The reconcile in hand finishes; nothing queued or waiting starts.
      const drained = queue.shutDown();
      shutdown.abort();
      clearInterval(keepAlive);
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      await Promise.allSettled([namespaces.stop(), accounts.stop(), configMaps.stop(), kubeletEvents.stop()]);
      await ready.catch(() => undefined);
      await renewal.inFlight?.done;
      await drained;
      if (live !== undefined) await writeStatus(io, statusSubject(live), statusReport);
    },
  };
}
