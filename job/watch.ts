/**
 * `--watch`: a long-running refresher. Watches on namespaces and ServiceAccounts serve a new
 * namespace or ServiceAccount within moments of its creation, from credentials held in memory; the
 * credentials themselves are renewed on a timer set from their expiry minus the threshold, not on
 * a fixed period. The configuration ConfigMap is watched (a change, or a new resync annotation,
 * applies at once), and so are the kubelet's Events about missing pull Secrets (a Secret deleted by
 * hand is written again within moments of a pod needing it); every Secret is also re-applied on a
 * heal interval. Every watch reconnects with jittered backoff for as long as the watcher runs, and
 * the watcher keeps the process alive until it is stopped.
 */
import {
  CoreV1Api,
  ListWatch,
  Watch,
  type CoreV1Event,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  type V1ConfigMap,
  type V1Namespace,
  type V1ServiceAccount,
} from "@kubernetes/client-node";
import { maxMinValiditySeconds } from "../shared/broker-api.ts";
import { AcrCredentialError } from "../shared/errors.ts";
import { backoffDelay, type BackoffPolicy } from "../shared/retry.ts";
import { apply, type ApplyResult, type Conflict, type Failure } from "./apply.ts";
import type { BrokerRetry } from "./broker-client.ts";
import { resyncAnnotation } from "./broker-need.ts";
import { formatDuration } from "./duration.ts";
import { namespaceInfo, pullSecretEvent, serviceAccountInfo } from "./cluster.ts";
import type { RefresherConfig } from "./config.ts";
import { chooseNamespace, plan, planSummary, type Plan } from "./plan.ts";
import { missingPullSecrets, missingPullSecretSelector } from "./pull-secret-events.ts";
import {
  configFromData,
  defaultConfigMap,
  defaultIntervalSeconds,
  fetchCredentials,
  readState,
  statusLabels,
  type ConfigMapRef,
  type FetchedCredentials,
  type RunDependencies,
} from "./run.ts";
import { eventRecorder, recordRunEvents, reportInvalidConfig } from "./events.ts";
import { clusterIdentity, spreadDelayMs } from "./spread.ts";
import { nextState, type RefresherState } from "./state.ts";
import { brokerRetryingKey, brokerRetryingStatus, statusConfigMap, statusData, type StatusInput } from "./status.ts";

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

type ListFunction<T extends KubernetesObject> = () => Promise<KubernetesListObject<T>>;

/** How long a watch or list request may go unanswered before it counts as failed (and is retried). */
const defaultRequestTimeoutMs = 30_000;

/**
 * client-node's Watch waits for the response to a watch request without a time limit: an API
 * server that accepts the connection but never answers (starting up, a half-open connection) would
 * hang that watch for good. This one fails the request after `timeoutMs` without an answer; a late
 * answer is closed at once and reported to no one.
 */
class AnsweringWatch extends Watch {
  constructor(
    config: KubeConfig,
    private readonly timeoutMs: number,
  ) {
    super(config);
  }

  override async watch(...[path, query, callback, done]: Parameters<Watch["watch"]>): Promise<AbortController> {
    let timedOut = false;
    let answered = false;
    const timer = setTimeout(() => {
      if (answered) return;
      timedOut = true;
      done(new Error(`the API server did not answer the watch of ${path} within ${this.timeoutMs / 1000} s`));
    }, this.timeoutMs);
    const controller = await super.watch(path, query, callback, (error: unknown) => {
      clearTimeout(timer);
      if (!timedOut) done(error);
    });
    answered = true;
    clearTimeout(timer);
    if (timedOut) controller.abort();
    return controller;
  }
}

/** One list request that fails after `timeoutMs` instead of hanging its informer's start; a late answer is dropped. */
function answered<T>(request: Promise<T>, what: string, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the API server did not answer the list of ${what} within ${timeoutMs / 1000} s`)), timeoutMs);
    request.then(
      (result) => {
        clearTimeout(timer);
        resolve(result);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

/** An informer with an optional field selector (client-node's makeInformer takes none) whose watch requests are answered or fail. */
function informer<T extends KubernetesObject>(
  kubeConfig: KubeConfig,
  timeoutMs: number,
  path: string,
  list: ListFunction<T>,
  fieldSelector?: string,
): ListWatch<T> {
  return new ListWatch<T>(path, new AnsweringWatch(kubeConfig, timeoutMs), list, false, undefined, fieldSelector);
}

const httpStatusOf = (error: unknown): number | undefined => {
  const { code, statusCode } = (error ?? {}) as { code?: unknown; statusCode?: unknown };
  return typeof statusCode === "number" ? statusCode : typeof code === "number" ? code : undefined;
};

/**
 * Paginates an informer's initial list so that 2,000 namespaces do not arrive as one response; each
 * page must be answered within `timeoutMs`.
 */
function paginated<T extends KubernetesObject>(
  what: string,
  timeoutMs: number,
  fetchPage: (continueToken: string | undefined) => Promise<KubernetesListObject<T>>,
): ListFunction<T> {
  const page = (token: string | undefined) => answered(fetchPage(token), what, timeoutMs);
  return async () => {
    const items: T[] = [];
    let token: string | undefined;
    let resourceVersion: string | undefined;
    let list: KubernetesListObject<T>;
    do {
      list = await page(token);
      items.push(...list.items);
      resourceVersion ??= list.metadata?.resourceVersion;
      token = list.metadata?._continue || undefined;
    } while (token !== undefined);
    return { ...list, items, metadata: { ...list.metadata, ...(resourceVersion === undefined ? {} : { resourceVersion }) } };
  };
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
  let config: RefresherConfig;
  let configText = "";
  let resyncSeen: string | undefined;
  let state: RefresherState;
  let fetched: FetchedCredentials;
  const since = now();
  const totals = { secretsApplied: 0, serviceAccountsPatched: 0, secretsDeleted: 0, namespacesFailed: 0 };
  const failures = new Map<string, Failure[]>();
  const conflicts = new Map<string, Conflict[]>();
  let missingNamespaces: string[] = [];
  const dirty = new Set<string>();
  /** Secrets the kubelet could not find, by namespace: applied again by the next reconcile of that namespace. */
  const reapply = new Map<string, Set<string>>();
  const timers = new Set<NodeJS.Timeout>();
  let queue: Promise<unknown> = Promise.resolve();
  let debounceTimer: NodeJS.Timeout | undefined;
  let refreshTimer: NodeJS.Timeout | undefined;
  let statusTimer: NodeJS.Timeout | undefined;
  let lastStatusAt = 0;
  let brokerFailures = 0;
  let nextRefreshAt: Date | undefined;
  // One for the watcher's life: an Event observed again is counted in its series, not re-sent.
  const events = eventRecorder(cluster, logger, { now });
  let brokerRetrying: { since: Date; retry: BrokerRetry; nextAttemptAt: Date } | undefined;
  let lastReconcileAt: Date | undefined;
  const connected: Record<string, boolean> = {};
  const shutdown = new AbortController();
  // Timers are not unref'd and this handle lives as long as the watcher: with every watch closed
  // (its API server restarting) and no timer due, the process must still wait, not end.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  const spreadWindowMs = () => (options.spreadWindowSeconds ?? config.spreadWindowSeconds) * 1000;
  const spreadMs = () => spreadDelayMs(clusterIdentity(namespaces.list().map(namespaceInfo)), spreadWindowMs());

  const later = (ms: number, task: () => void): NodeJS.Timeout => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (!stopped) task();
    }, ms);
    timers.add(timer);
    return timer;
  };
  /** Every reconcile runs alone, in order, so the plan always sees the state the previous one left. */
  const enqueue = <T>(task: () => Promise<T>): Promise<T | undefined> => {
    const next = queue
      .then(() => (stopped ? undefined : task()))
      .catch((error: unknown) => {
        logger.error({ err: error }, "reconcile failed");
        return undefined;
      });
    queue = next;
    return next;
  };

  /**
   * One reconcile: plan from the watches' caches and the credentials in hand, apply, remember. The
   * single place the watcher writes Secrets and ServiceAccounts; `scope` limits it to namespaces,
   * `resync` applies every Secret again (the heal), `reapply` the ones the kubelet found missing.
   */
  async function reconcile(
    scope: ReadonlySet<string> | undefined,
    how: { resync?: boolean; reapply?: ReadonlyMap<string, ReadonlySet<string>> } = {},
  ): Promise<ReconcileResult | undefined> {
    const nsList = namespaces.list().map(namespaceInfo);
    const saList = accounts.list().map(serviceAccountInfo);
    const thePlan: Plan = plan({
      config,
      secrets: fetched.secrets,
      namespaces: nsList,
      serviceAccounts: saList,
      state,
      ...(scope === undefined ? {} : { scope }),
      ...(how.resync === true ? { resync: true } : {}),
      ...(how.reapply === undefined ? {} : { reapply: how.reapply }),
    });
    if (thePlan.namespaces.length === 0 && thePlan.forget.length === 0 && scope !== undefined) return undefined;
    const result: ApplyResult = await apply(thePlan, {
      cluster,
      secrets: fetched.secrets,
      serviceAccounts: saList,
      logger,
      concurrency: options.concurrency ?? 16,
      events,
    });
    state = nextState(state, result.outcomes);
    for (const key of Object.keys(totals) as Array<keyof typeof totals>) totals[key] += result.counts[key];
    // Failures describe the latest attempt per namespace: a reconcile replaces those of its scope.
    if (scope === undefined) {
      failures.clear();
      conflicts.clear();
      missingNamespaces = result.missingNamespaces ?? [];
    } else {
      for (const name of scope) {
        failures.delete(name);
        conflicts.delete(name);
      }
    }
    for (const failure of result.failures) failures.set(failure.namespace, [...(failures.get(failure.namespace) ?? []), failure]);
    for (const conflict of result.conflicts) conflicts.set(conflict.namespace, [...(conflicts.get(conflict.namespace) ?? []), conflict]);
    const summary = planSummary(thePlan);
    lastReconcileAt = now();
    const reconciled: ReconcileResult = { scope: scope === undefined ? "all" : [...scope], at: lastReconcileAt, plan: summary, result };
    logger.info({ scope: reconciled.scope, ...(how.resync === true ? { resync: true } : {}), ...summary, ...result.counts }, "reconciled");
    options.onReconcile?.(reconciled);
    scheduleStatus();
    return reconciled;
  }

  function scheduleStatus(): void {
    if (statusTimer !== undefined) return;
    const wait = Math.max(0, lastStatusAt + (options.statusIntervalMs ?? 10_000) - Date.now());
    statusTimer = later(wait, () => {
      statusTimer = undefined;
      void enqueue(writeStatus);
    });
  }

  async function writeStatus(): Promise<void> {
    lastStatusAt = Date.now();
    const finished = now();
    const served = namespaces
      .list()
      .map(namespaceInfo)
      .filter((ns) => chooseNamespace(config, ns).chosen).length;
    const input: StatusInput = {
      finishedAt: finished,
      durationMs: finished.getTime() - since.getTime(),
      mode: "watch",
      registries: fetched.registries,
      ...(fetched.brokerError === undefined ? {} : { brokerError: fetched.brokerError }),
      namespacesServed: served,
      result: { outcomes: [], failures: [...failures.values()].flat(), conflicts: [...conflicts.values()].flat(), counts: { ...totals }, missingNamespaces },
      state,
    };
    const data = statusData(input);
    deps.observeStatus?.(input);
    await recordRunEvents(events, cluster, input, configMap);
    data.since = since.toISOString();
    if (nextRefreshAt !== undefined) data["next-broker-call"] = nextRefreshAt.toISOString();
    data["spread-delay"] = `${formatDuration(spreadMs())} (window ${formatDuration(spreadWindowMs())})`;
    if (brokerRetrying !== undefined) data[brokerRetryingKey] = brokerRetryingStatus(brokerRetrying);
    try {
      await cluster.applyConfigMap(statusConfigMap.namespace, statusConfigMap.name, data, statusLabels);
    } catch (error) {
      logger.error({ err: error }, "status ConfigMap not written");
    }
  }

  /** Sets the renewal timer; `failed`: the last attempt could not even be made, so it is retried as a failure. */
  function scheduleRefresh(failed = false): void {
    if (refreshTimer !== undefined) clearTimeout(refreshTimer);
    const spread = spreadMs();
    const complete = !failed && fetched.brokerError === undefined && fetched.secrets.size === config.registries.length;
    const delay = refreshDelayMs({
      complete,
      earliestExpiry: fetched.earliestExpiry,
      thresholdSeconds: config.expiringThresholdSeconds,
      failures: brokerFailures,
      now: now(),
      spreadMs: spread,
    });
    // Retries after a failure are jittered (half to all of the delay), so a fleet that failed together does not retry together.
    const wait = complete ? delay : Math.max(minRefreshMs, Math.round(delay / 2 + (random() * delay) / 2));
    nextRefreshAt = new Date(now().getTime() + wait);
    if (brokerRetrying !== undefined) brokerRetrying = { ...brokerRetrying, nextAttemptAt: nextRefreshAt };
    logger.info({ nextRefreshAt: nextRefreshAt.toISOString(), spreadDelayMs: spread }, "next credential refresh scheduled");
    refreshTimer = later(wait, () => requestRefresh());
  }

  /**
   * Asks the broker for the configuration in force, retrying a throttled or unavailable broker
   * with jittered backoff (the status says so meanwhile); outside the reconcile queue, so new
   * namespaces are served from the credentials in hand while it waits.
   */
  async function askBroker(forConfig: RefresherConfig, budgetMs: number, signal: AbortSignal, how: { force?: boolean } = {}): Promise<FetchedCredentials> {
    const onRetry = (retry: BrokerRetry) => {
      brokerRetrying = { since: brokerRetrying?.since ?? now(), retry, nextAttemptAt: new Date(now().getTime() + retry.delayMs) };
      logger.warn({ code: retry.code, err: retry, attempts: retry.attempts, delayMs: retry.delayMs }, "broker busy or unreachable; retrying");
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
    if (answer.brokerError === undefined) brokerRetrying = undefined;
    return answer;
  }

  let refreshing: { done: Promise<void>; abort: AbortController } | undefined;
  let refreshAgain: { resync: boolean } | undefined;

  /**
   * Fetches credentials (one broker call for all namespaces) and reconciles everything. Requests
   * made while one is under way are merged into one more after it; a configuration change
   * (`restart`) abandons the one under way, which asked for the previous configuration.
   */
  function requestRefresh(how: { resync?: boolean; restart?: boolean } = {}): void {
    if (stopped) return;
    if (refreshing !== undefined) {
      refreshAgain = { resync: (refreshAgain?.resync ?? false) || how.resync === true };
      if (how.restart === true) refreshing.abort.abort();
      return;
    }
    const abort = new AbortController();
    const signal = AbortSignal.any([abort.signal, shutdown.signal]);
    const done = (async () => {
      const forConfig = config;
      const answer = await askBroker(forConfig, options.brokerCallBudgetMs ?? 120_000, signal, { force: how.resync === true });
      if (signal.aborted) return;
      await enqueue(async () => {
        fetched = answer;
        brokerFailures = fetched.secrets.size === config.registries.length ? 0 : brokerFailures + 1;
        try {
          await reconcile(undefined, { resync: how.resync === true });
        } finally {
          // Whatever the reconcile met, renewals go on.
          scheduleRefresh();
        }
      });
    })()
      .catch((error: unknown) => {
        // E.g. the projected token unreadable for a moment: try again later, never stop renewing.
        logger.error({ err: error }, "credential refresh failed; retrying later");
        brokerFailures += 1;
        if (!stopped) scheduleRefresh(true);
      })
      .finally(() => {
        refreshing = undefined;
        const again = refreshAgain;
        refreshAgain = undefined;
        if (again !== undefined) requestRefresh(again);
      });
    refreshing = { done, abort };
  }

  /** The configuration ConfigMap as watched: a change of its data refreshes everything, a new resync annotation too. */
  function configurationSeen(object: V1ConfigMap): void {
    const data = object.data ?? {};
    const text = JSON.stringify(data);
    const resyncValue = object.metadata?.annotations?.[resyncAnnotation];
    const resync = resyncValue !== undefined && resyncValue !== "" && resyncValue !== resyncSeen;
    resyncSeen = resyncValue;
    if (text !== configText) {
      configText = text;
      let next: RefresherConfig;
      try {
        next = configFromData(data, configMap, logger, options.brokerUrl);
      } catch (error) {
        logger.error({ err: error }, "configuration not applied; keeping the previous one until it is fixed");
        if (error instanceof AcrCredentialError && error.code === "ConfigInvalid") void reportInvalidConfig(cluster, logger, configMap, error.message, events);
        return;
      }
      logger.info(
        { configMap: `${configMap.namespace}/${configMap.name}`, ...(resync ? { resync: resyncValue } : {}) },
        "configuration changed; refreshing everything",
      );
      // Plans made from now on use it; the one under way, if any, was made before the change.
      config = next;
      requestRefresh({ restart: true, resync });
    } else if (resync) {
      logger.info({ annotation: resyncAnnotation, value: resyncValue }, "resync asked for; asking the broker and applying every Secret again");
      requestRefresh({ resync: true });
    }
  }

  /** A kubelet Event naming the refresher's Secret as missing: write it again in that namespace. */
  function pullSecretMissing(object: CoreV1Event): void {
    const event = pullSecretEvent(object);
    // Events from before the start were answered by the first reconcile, which applied every Secret.
    const missing = missingPullSecrets(
      [event],
      config.registries.map((registry) => registry.secretName),
      since,
    );
    for (const [namespace, secrets] of missing) {
      logger.warn({ namespace, secrets: [...secrets] }, "the kubelet could not find the refresher's Secret; writing it again");
      const names = reapply.get(namespace) ?? new Set<string>();
      for (const secret of secrets) names.add(secret);
      reapply.set(namespace, names);
      markDirty(namespace);
    }
  }

  function markDirty(namespace: string | undefined): void {
    if (namespace === undefined || namespace === "" || stopped) return;
    dirty.add(namespace);
    if (debounceTimer !== undefined) return;
    debounceTimer = later(options.debounceMs ?? 150, () => {
      debounceTimer = undefined;
      const scope = new Set(dirty);
      dirty.clear();
      const again = new Map(reapply);
      reapply.clear();
      void enqueue(() => reconcile(scope, again.size > 0 ? { reapply: again } : {}));
    });
  }

  function scheduleHeal(): void {
    const every = options.healIntervalMs ?? 300_000;
    if (every <= 0) return;
    later(every, () => {
      void enqueue(() => reconcile(undefined, { resync: true }));
      scheduleHeal();
    });
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

  const everything = () => void enqueue(() => reconcile(undefined));
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
    config = configFromData(initial?.data, configMap, logger, options.brokerUrl);
    configText = JSON.stringify(initial?.data ?? {});
    resyncSeen = initial?.annotations[resyncAnnotation];
    state = await readState(cluster);
    // Until the broker first answers (it may be retried meanwhile, and the status says so): no credential.
    fetched = { secrets: new Map(), registries: config.registries.map((registry) => ({ registry })) };
    fetched = await askBroker(config, Math.min(options.brokerCallBudgetMs ?? 120_000, 30_000), shutdown.signal);
    brokerFailures = fetched.secrets.size === config.registries.length ? 0 : 1;
    // Stopped while it started (SIGTERM during the first broker call): start no watch.
    if (stopped) return;

    await startNamespaces();
    await startAccounts();
    // Registered after the initial lists: those objects are served by the full reconcile below.
    namespaces.on("add", (ns) => markDirty(ns.metadata?.name));
    namespaces.on("update", (ns) => markDirty(ns.metadata?.name));
    accounts.on("add", (sa) => markDirty(sa.metadata?.namespace));
    accounts.on("update", (sa) => markDirty(sa.metadata?.namespace));
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

    // The first reconcile applies every Secret: whatever was deleted while no refresher ran comes back.
    await enqueue(async () => {
      try {
        await reconcile(undefined, { resync: true });
      } finally {
        scheduleRefresh();
      }
    });
    scheduleHeal();
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
        ...(lastReconcileAt === undefined ? {} : { lastReconcileAt }),
        brokerRetrying: brokerRetrying !== undefined,
      };
    },
    async stop() {
      stopped = true;
      shutdown.abort();
      clearInterval(keepAlive);
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      await Promise.allSettled([namespaces.stop(), accounts.stop(), configMaps.stop(), kubeletEvents.stop()]);
      await ready.catch(() => undefined);
      await refreshing?.done;
      await queue;
      if (config !== undefined && fetched !== undefined) await writeStatus();
    },
  };
}
